
/*
 * Page templates and the answers built from them: a template as
 * "flashsale_page waiting|sold_out|retry FILE" would read it, through
 * ngx_http_flashsale_page_compile(); when it compiles, the waiting,
 * sold-out and retry pages rendered from it (HTML, and JSON when the
 * Accept header asks), and the error pages, through the real send path
 * up to the stubbed header and body filters, which check that
 * Content-Length is the body's length.
 *
 * fuzz-includes: ngx_http_flashsale_page.c
 *
 * Input: 8 bytes of numbers (position, eta, progress, retry_after, which
 * page, flags), an Accept header line, then the template.
 */


#include "fuzz_common.h"
#include "ngx_http_flashsale_page.c"


static ngx_http_flashsale_zone_t  *fz_z;

static ngx_str_t  fz_skus[3] = {
    ngx_string("A1"),
    ngx_string("x"),
    ngx_string("sku.with-all_the:chars.0123456789.abcdefghij.ABCDEFGHIJ.xyzz.64c")
};

static const char  *fz_messages[] = {
    "unknown sku",
    "invalid sku: use 1 to 64 of A-Z a-z 0-9 . _ : -",
    "invalid qty: use a whole number from 1 to the location's max_qty",
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                          len;
    ngx_str_t                       src, name;
    ngx_uint_t                      i, k, body;
    ngx_pool_t                     *pool;
    fz_input_t                      in;
    ngx_conf_t                     *cf;
    const u_char                   *s;
    ngx_http_request_t             *r;
    ngx_http_flashsale_ctx_t        ctx;
    ngx_http_flashsale_page_t      *page;
    ngx_http_flashsale_loc_conf_t   lcf;
    u_char                          num[8];

    fz_init();

    if (fz_z == NULL) {
        fz_z = fz_zone("drop");
    }

    if (size < sizeof(num)) {
        return 0;
    }

    ngx_memcpy(num, data, sizeof(num));

    in.p = data + sizeof(num);
    in.last = data + size;

    pool = ngx_create_pool(4096, &fz_log);
    if (pool == NULL) {
        abort();
    }

    cf = fz_conf(pool);

    len = fz_until(&in, '\n', &s);

    /* the file as ngx_http_flashsale_page_load() reads it: len + 1 */
    src.len = in.last - in.p;
    src.data = ngx_pnalloc(pool, src.len + 1);
    if (src.data == NULL) {
        abort();
    }

    ngx_memcpy(src.data, in.p, src.len);
    ngx_str_set(&name, "fuzz.html");

    page = ngx_pcalloc(pool, sizeof(ngx_http_flashsale_page_t));
    if (page == NULL) {
        abort();
    }

    ngx_memzero(&lcf, sizeof(lcf));
    lcf.zone = fz_z;

    if (ngx_http_flashsale_page_compile(cf, &src, &name, page)
        != NGX_CONF_OK)
    {
        ngx_destroy_pool(pool);
        return 0;
    }

    for (i = 0; i < NGX_HTTP_FLASHSALE_PAGE_N; i++) {
        lcf.pages[i] = ngx_http_flashsale_page_builtin(cf, i);
        if (lcf.pages[i] == NULL) {
            abort();
        }
    }

    /* the fuzzed template takes the place of one page, or of all three */
    if (num[4] & 0x80) {
        lcf.pages[0] = lcf.pages[1] = lcf.pages[2] = page;

    } else {
        lcf.pages[num[4] % NGX_HTTP_FLASHSALE_PAGE_N] = page;
    }

    for (k = 0; k < 2; k++) {
        r = fz_request(pool, &lcf);

        if (k == 1 || len) {
            r->headers_in.accept = fz_header(r, "Accept", s,
                                             k == 1 ? 0 : len);
        }

        ngx_memzero(&ctx, sizeof(ctx));
        ctx.state = NGX_HTTP_FLASHSALE_STATE_WAITING;
        ctx.position = ((uint64_t) num[0] << 40) + num[1];
        ctx.eta = (num[5] & 1) ? -1 : ((ngx_int_t) num[1] << (num[2] & 31));
        ctx.progress = num[2] % 101;
        ctx.retry_after = num[3] % 31;
        ngx_str_set(&ctx.token, "eyJhbGciOiJIUzI1NiJ9.eyJ0a3QiOjF9.sig");

        body = fz_body_sent;

        (void) ngx_http_flashsale_page_waiting(r, &lcf, &ctx);

        r = fz_request(pool, &lcf);
        r->headers_in.accept = k ? fz_header(r, "Accept", s, len) : NULL;
        (void) ngx_http_flashsale_page_sold_out(r, &lcf,
                                                &fz_skus[num[6] % 3]);

        r = fz_request(pool, &lcf);
        r->headers_in.accept = k ? fz_header(r, "Accept", s, len) : NULL;
        (void) ngx_http_flashsale_page_retry(r, &lcf, num[3]);

        r = fz_request(pool, &lcf);
        r->headers_in.accept = k ? fz_header(r, "Accept", s, len) : NULL;
        (void) ngx_http_flashsale_page_error(r, 400 + (num[7] & 0x1f),
                                             fz_messages[num[7] % 3],
                                             (num[6] & 0x80)
                                             ? NULL : &fz_skus[num[6] % 3]);

        r = fz_request(pool, &lcf);
        (void) ngx_http_flashsale_page_json_error(r, 503,
                                                  fz_messages[num[7] % 3]);

        if (fz_body_sent != body + 5) {
            fprintf(stderr, "a page without a body\n");
            abort();
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
