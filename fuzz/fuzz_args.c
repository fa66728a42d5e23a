
/*
 * SKU, quantity and visitor as they arrive, through the module's own
 * handlers: ngx_http_flashsale_reserve_handler() with the values of
 * "flashsale_reserve sku=... qty=..." and ngx_http_flashsale_backend_handler()
 * (release, confirm, stock) with the query string; check_sku(), check_qty()
 * and check_visitor() themselves; the 400 pages they answer with; the keys
 * and arguments of the Redis command built from what passed (formatted by
 * hiredis in the stub of ngx_http_flashsale_redis_send()).
 *
 * fuzz-includes: ngx_http_flashsale_reserve.c
 *
 * Input: a flags byte, a max_qty byte, then
 *   reserve:  "sku\nqty"          (what the complex values give)
 *   backend:  the query string    (sku=..&qty=..&visitor=..)
 * flags: bits 0-1 method (GET, HEAD, PUT, POST), bits 2-3 handler
 * (reserve, release, confirm, stock), bit 4 Accept: application/json,
 * bit 5 the sold-out latch on, bit 6 Redis unavailable.
 *
 * A command reaches "Redis" only for a SKU of 1..64 [A-Za-z0-9._:-], a
 * quantity of digits in 1..max_qty (stock: 0..2^31-1), a visitor of 1..64
 * [A-Za-z0-9_-]; anything else gets an answer and no command.
 */


#include "fuzz_common.h"
#include "ngx_http_flashsale_reserve.c"


static ngx_http_flashsale_zone_t      *fz_z;
static ngx_http_flashsale_loc_conf_t   fz_lcf;
static ngx_http_flashsale_reserve_t    fz_reserve;
static ngx_http_complex_value_t        fz_sku_cv, fz_qty_cv;
static u_char                          fz_redis_dummy[64];

static ngx_uint_t  fz_max_qty[] = { 1, 10, 99, 1000000 };


static void
fz_args_init(void)
{
    static ngx_uint_t                     done;
    static ngx_http_flashsale_holders_t   nobody;
    ngx_str_t                             sku;
    ngx_conf_t                           *cf;
    ngx_uint_t                            i;

    fz_init();

    if (done) {
        return;
    }

    done = 1;

    fz_z = fz_zone("z");
    cf = fz_conf(fz_cycle.pool);

    for (i = 0; i < NGX_HTTP_FLASHSALE_PAGE_N; i++) {
        fz_lcf.pages[i] = ngx_http_flashsale_page_builtin(cf, i);
        if (fz_lcf.pages[i] == NULL) {
            abort();
        }
    }

    fz_reserve.sku = &fz_sku_cv;
    fz_reserve.qty = &fz_qty_cv;
    fz_reserve.hold = 600000;
    fz_reserve.latch = 5000;
    fz_reserve.max_qty = 10;

    fz_lcf.zone = fz_z;
    fz_lcf.reserve = &fz_reserve;
    fz_lcf.redis = (ngx_http_flashsale_redis_t *) fz_redis_dummy;
    fz_lcf.backend_zone = fz_z;

    /* two SKUs latched sold out for good: one whose holders are known
     * (nobody), one left to the holders filter */
    ngx_str_set(&sku, "SOLD");
    ngx_http_flashsale_latch_set(fz_z, &sku, 86400000, &nobody, &fz_log);
    ngx_str_set(&sku, "A1");
    ngx_http_flashsale_latch_set(fz_z, &sku, 86400000, NULL, &fz_log);
}


static ngx_uint_t
fz_ok_sku(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    if (s->len < 1 || s->len > 64) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!(isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-')) {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
fz_ok_visitor(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    if (s->len < 1 || s->len > 64) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!(isalnum(c) || c == '_' || c == '-')) {
            return 0;
        }
    }

    return 1;
}


/* digits only, min..max; at most 10 of them, as the module has it (so
 * "00000000001" is refused although it is 1) */
static ngx_uint_t
fz_ok_qty(ngx_str_t *s, uint64_t min, uint64_t max)
{
    size_t    i;
    uint64_t  v;

    if (s->len < 1 || s->len > 10) {
        return 0;
    }

    v = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return 0;
        }

        if (v > max) {
            return 0;
        }

        v = v * 10 + (s->data[i] - '0');
    }

    return v >= min && v <= max;
}


static void
fz_expect(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "%s\n", what);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  sku, qty, visitor, args;
    ngx_uint_t                 flags, which, sent, i, hs;
    ngx_pool_t                *pool;
    fz_input_t                 in;
    const u_char              *s;
    ngx_table_elt_t           *accept;
    ngx_http_request_t        *r;
    ngx_http_flashsale_ctx_t  *ctx;

    static ngx_uint_t  methods[] = {
        NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_PUT, NGX_HTTP_POST
    };

    fz_args_init();

    in.p = data;
    in.last = data + size;
    flags = fz_byte(&in);
    fz_reserve.max_qty = fz_max_qty[fz_byte(&in) & 3];
    fz_reserve.latch = (flags & 0x20) ? 5000 : 0;
    which = (flags >> 2) & 3;

    pool = ngx_create_pool(4096, &fz_log);
    if (pool == NULL) {
        abort();
    }

    r = fz_request(pool, &fz_lcf);
    r->method = methods[flags & 3];

    if (flags & 0x10) {
        accept = fz_header(r, "Accept", (u_char *) "application/json", 16);

    } else {
        accept = fz_header(r, "Accept", (u_char *) "text/html,*/*", 13);
    }

    r->headers_in.accept = accept;

    fz_send_rc = (flags & 0x40) ? NGX_DECLINED : NGX_OK;
    sent = fz_sent;
    hs = fz_headers_sent;

    if (which == 0) {
        len = fz_until(&in, '\n', &s);
        sku.data = fz_copy(pool, s, len);
        sku.len = len;
        len = in.last - in.p;
        qty.data = fz_copy(pool, in.p, len);
        qty.len = len;

        /* what "sku=$arg_sku qty=$arg_qty" would evaluate to */
        ngx_memzero(&fz_sku_cv, sizeof(ngx_http_complex_value_t));
        ngx_memzero(&fz_qty_cv, sizeof(ngx_http_complex_value_t));
        fz_sku_cv.value = sku;
        fz_qty_cv.value = qty;

        ctx = ngx_pcalloc(pool, sizeof(ngx_http_flashsale_ctx_t));
        if (ctx == NULL) {
            abort();
        }

        ctx->zone = fz_z;
        ngx_str_set(&ctx->visitor, "0123456789abcdef0123456789abcdef");
        ctx->state = NGX_HTTP_FLASHSALE_STATE_ADMITTED;
        ngx_http_set_ctx(r, ctx, ngx_http_flashsale_module);

        rc = ngx_http_flashsale_reserve_handler(r, &fz_lcf, ctx);

        if (fz_sent != sent) {
            fz_expect(fz_ok_sku(&sku), "a bad sku reached redis");
            fz_expect(fz_ok_qty(&qty, 1, fz_reserve.max_qty),
                      "a bad qty reached redis");
            fz_expect(rc == NGX_AGAIN, "a command in flight but no NGX_AGAIN");
            fz_expect(fz_sent_argc == 12, "EVALSHA with 12 arguments");
            fz_expect(fz_sent_argv[11].len == (ctx->ask_holders ? 4 : 1),
                      "holders asked for exactly when the SKU is not "
                      "latched");

            for (i = 3; i < 6; i++) {
                /* fs:{zone:sku}:suffix */
                fz_expect(fz_sent_argv[i].len > 7 + sku.len
                          && ngx_strncmp(fz_sent_argv[i].data, "fs:{z:", 6)
                             == 0
                          && ngx_strncmp(fz_sent_argv[i].data + 6, sku.data,
                                         sku.len) == 0
                          && fz_sent_argv[i].data[6 + sku.len] == '}',
                          "a key that is not fs:{z:SKU}:...");
            }

        } else if (!fz_ok_sku(&sku)
                   || !fz_ok_qty(&qty, 1, fz_reserve.max_qty))
        {
            fz_expect(rc == NGX_OK && fz_headers_sent == hs + 1,
                      "bad input was not answered at once");
        }

        /* the request goes: the cleanup detaches the command */

    } else {
        len = in.last - in.p;
        args.data = fz_copy(pool, in.p, len);
        args.len = len;
        r->args = args;

        fz_lcf.backend = which;

        rc = ngx_http_flashsale_backend_handler(r);

        if (fz_sent != sent) {
            fz_expect(ngx_http_arg(r, (u_char *) "sku", 3, &sku) == NGX_OK
                      && fz_ok_sku(&sku), "a bad sku reached redis");

            if (which == NGX_HTTP_FLASHSALE_OP_STOCK) {
                if (r->method == NGX_HTTP_PUT) {
                    fz_expect(ngx_http_arg(r, (u_char *) "qty", 3, &qty)
                              == NGX_OK
                              && fz_ok_qty(&qty, 0, NGX_MAX_INT32_VALUE),
                              "a bad stock qty reached redis");
                }

            } else {
                fz_expect(ngx_http_arg(r, (u_char *) "visitor", 7, &visitor)
                          == NGX_OK && fz_ok_visitor(&visitor),
                          "a bad visitor reached redis");
            }

            fz_expect(rc == NGX_DONE, "a command in flight but no NGX_DONE");
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
