
/*
 * Redis replies to the reservation script, as the handlers get them: the
 * fuzz bytes go through a hiredis redisReader (as the Redis layer feeds
 * it), and every reply it parses is handed to one of
 *   ngx_http_flashsale_reserve_done()   (a shopper's reservation)
 *   ngx_http_flashsale_backend_done()   (release, confirm, stock GET/PUT)
 * with a request waiting for it; ngx_http_flashsale_reserve_result() (the
 * checks of the reply's shape), the answers built from the numbers in it,
 * the sold-out latch (with the holders a sold-out answer lists, hashed,
 * sorted and copied into the zone's slab) and the breaker's outcome all
 * run for real.  Also
 * ngx_http_flashsale_redis_noscript() on every reply.
 *
 * fuzz-includes: ngx_http_flashsale_reserve.c
 *
 * Input: 8 selector bytes (one per reply, cycled), then the RESP stream.
 * selector: bits 0-2 handler (0-3 reserve: bit 0 the sold-out latch on,
 * bit 1 the reservation asked for the SKU's holders; 4 release, 5 confirm,
 * 6 stock GET, 7 stock PUT), bit 3 JSON, bits 4-5 status (ok, ok, error,
 * timeout: the latter two without the reply, as the Redis layer calls
 * them), bit 6 the breaker watches Redis, bit 7 a second SKU.
 */


#include "fuzz_common.h"
#include "ngx_http_flashsale_breaker.h"
#include "ngx_http_flashsale_reserve.c"


static ngx_http_flashsale_zone_t          *fz_z;
static ngx_http_flashsale_loc_conf_t       fz_lcf, fz_blcf;
static ngx_http_flashsale_reserve_t        fz_reserve;
static ngx_http_flashsale_breaker_conf_t   fz_breaker;
static u_char                              fz_redis_dummy[64];

static ngx_str_t  fz_skus[2] = { ngx_string("A1"),
    ngx_string("sku.with-all_the:chars.0123456789.abcdefghij.ABCDEFGHIJ.xyzz.64c")
};


static void
fz_reply_init(void)
{
    static ngx_uint_t  done;
    ngx_conf_t        *cf;
    ngx_uint_t         i;

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

    fz_reserve.hold = 600000;
    fz_reserve.latch = 5000;
    fz_reserve.max_qty = 10;

    fz_lcf.zone = fz_z;
    fz_lcf.reserve = &fz_reserve;
    fz_lcf.redis = (ngx_http_flashsale_redis_t *) fz_redis_dummy;

    fz_blcf = fz_lcf;
    fz_blcf.reserve = NULL;
    fz_blcf.backend_zone = fz_z;

    fz_breaker.failures = 30;
    fz_breaker.window = 10;
    fz_breaker.min_calls = 5;
    fz_breaker.slow = 500;
    fz_breaker.open = 1000;
    fz_breaker.half_open = 2;
    fz_breaker.watch = NGX_HTTP_FLASHSALE_WATCH_REDIS;
}


/* a holder that a sold-out answer listed is never told "sold out" by the
 * latch that answer set: every doubt goes to Redis */
static void
fz_check_holders(ngx_http_flashsale_ctx_t *ctx, redisReply *reply)
{
    size_t                       i;
    ngx_str_t                    v;
    redisReply                  *list;
    ngx_http_flashsale_latch_t  *l;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4
        || reply->element[3]->type != REDIS_REPLY_ARRAY
        || !ctx->ask_holders
        || ctx->state != NGX_HTTP_FLASHSALE_STATE_SOLD_OUT)
    {
        return;
    }

    list = reply->element[3];

    for (i = 0; i < list->elements; i++) {
        if (list->element[i]->type != REDIS_REPLY_STRING) {
            return;
        }
    }

    l = (ngx_http_flashsale_latch_t *)
            ngx_str_rbtree_lookup(&fz_z->sh->latch, &ctx->sku,
                                  ngx_crc32_short(ctx->sku.data,
                                                  ctx->sku.len));

    /* not latched by this answer (no room in the zone, say) */
    if (l == NULL || !l->known || l->nholders != list->elements) {
        return;
    }

    for (i = 0; i < list->elements; i++) {
        v.data = (u_char *) list->element[i]->str;
        v.len = list->element[i]->len;

        if (ngx_http_flashsale_latch_test(fz_z, &ctx->sku, &v)
            != NGX_HTTP_FLASHSALE_LATCH_HOLDER)
        {
            fprintf(stderr, "a listed holder was answered by the latch\n");
            abort();
        }
    }
}


static void
fz_deliver(redisReply *reply, ngx_uint_t sel)
{
    ngx_uint_t                         which, status, fin, ph, body;
    ngx_pool_t                        *pool;
    ngx_http_request_t                *r;
    ngx_http_flashsale_ctx_t          *ctx;
    ngx_http_flashsale_backend_ctx_t  *bctx;

    static ngx_uint_t  statuses[] = {
        NGX_HTTP_FLASHSALE_REDIS_OK, NGX_HTTP_FLASHSALE_REDIS_OK,
        NGX_HTTP_FLASHSALE_REDIS_ERROR, NGX_HTTP_FLASHSALE_REDIS_TIMEOUT
    };

    which = sel & 7;
    status = statuses[(sel >> 4) & 3];

    fz_z->breaker = (sel & 0x40) ? &fz_breaker : NULL;

    pool = ngx_create_pool(4096, &fz_log);
    if (pool == NULL) {
        abort();
    }

    fin = fz_finalized;
    ph = fz_phases_run;
    body = fz_body_sent;

    if (which < 4) {
        r = fz_request(pool, &fz_lcf);

        ctx = ngx_pcalloc(pool, sizeof(ngx_http_flashsale_ctx_t));
        if (ctx == NULL) {
            abort();
        }

        ctx->zone = fz_z;
        ctx->request = r;
        ctx->sku = fz_skus[sel >> 7];

        ngx_str_set(&ctx->visitor, "0123456789abcdef0123456789abcdef");
        ctx->state = NGX_HTTP_FLASHSALE_STATE_ADMITTED;
        ctx->reserving = NGX_HTTP_FLASHSALE_RESERVE_WAITING;
        ngx_http_set_ctx(r, ctx, ngx_http_flashsale_module);

        fz_reserve.latch = (which & 1) ? 5000 : 0;

        /* as the handler asks: only with the latch on */
        ctx->ask_holders = (which & 1) && (which & 2);

    } else {
        r = fz_request(pool, &fz_blcf);

        bctx = ngx_pcalloc(pool, sizeof(ngx_http_flashsale_backend_ctx_t));
        if (bctx == NULL) {
            abort();
        }

        bctx->request = r;
        bctx->lcf = &fz_blcf;
        bctx->sku = fz_skus[sel >> 7];
        ngx_str_set(&bctx->visitor, "0123456789abcdef0123456789abcdef");

        fz_blcf.backend = which == 4 ? NGX_HTTP_FLASHSALE_OP_RELEASE
                        : which == 5 ? NGX_HTTP_FLASHSALE_OP_CONFIRM
                        : NGX_HTTP_FLASHSALE_OP_STOCK;

        if (which == 7) {
            r->method = NGX_HTTP_PUT;

        } else if (which != 6) {
            r->method = NGX_HTTP_POST;
        }

        ctx = NULL;
    }

    if (sel & 8) {
        r->headers_in.accept = fz_header(r, "Accept",
                                         (u_char *) "application/json", 16);
    }

    if (ctx) {
        ngx_http_flashsale_reserve_done(ctx, status == NGX_HTTP_FLASHSALE_REDIS_OK
                                             ? reply : NULL,
                                        status, sel & 0x3f);

        /* the request went on to the content, or was answered */
        if (fz_phases_run == ph
            && (fz_finalized != fin + 1 || fz_body_sent != body + 1))
        {
            fprintf(stderr, "a reservation was neither answered nor let "
                    "through\n");
            abort();
        }

        if (fz_phases_run != ph && ctx->reservation.len == 0) {
            fprintf(stderr, "let through without $flashsale_reservation\n");
            abort();
        }

        fz_check_holders(ctx, status == NGX_HTTP_FLASHSALE_REDIS_OK
                              ? reply : NULL);

    } else {
        ngx_http_flashsale_backend_done(bctx,
                                        status == NGX_HTTP_FLASHSALE_REDIS_OK
                                        ? reply : NULL, status, 0);

        if (fz_finalized != fin + 1) {
            fprintf(stderr, "a back-end request was not answered\n");
            abort();
        }
    }

    ngx_destroy_pool(pool);
}


static ngx_uint_t
fz_huge_multibulk(const uint8_t *data, size_t size)
{
    size_t  i, n;

    for (i = 0; i < size; i++) {
        if (data[i] != '*') {
            continue;
        }

        for (n = 0; i + 1 + n < size && n < 6 && data[i + 1 + n] >= '0'
                    && data[i + 1 + n] <= '9'; n++) { /* void */ }

        if (n == 6) {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void         *reply;
    u_char        sel[8];
    ngx_uint_t    n;
    redisReader  *reader;

    fz_reply_init();

    if (size < sizeof(sel)) {
        return 0;
    }

    /* hiredis 0.14 allocates a multi-bulk reply's element array for the
     * count it announces and walks all of it to free it: "*100000000" is
     * seconds of work and gigabytes inside the library, not the module */
    if (fz_huge_multibulk(data, size)) {
        return 0;
    }

    ngx_memcpy(sel, data, sizeof(sel));
    data += sizeof(sel);
    size -= sizeof(sel);

    reader = redisReaderCreate();
    if (reader == NULL) {
        abort();
    }

    if (redisReaderFeed(reader, (const char *) data, size) != REDIS_OK) {
        redisReaderFree(reader);
        return 0;
    }

    for (n = 0; n < 64; n++) {
        if (redisReaderGetReply(reader, &reply) != REDIS_OK
            || reply == NULL)
        {
            break;
        }

        (void) ngx_http_flashsale_redis_noscript(reply);

        fz_deliver(reply, sel[n % sizeof(sel)]);

        freeReplyObject(reply);
    }

    redisReaderFree(reader);

    return 0;
}
