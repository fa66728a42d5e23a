
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include "ngx_http_flashsale_reserve.h"
#include "ngx_http_flashsale_redis.h"
#include "ngx_http_flashsale_room.h"
#include "ngx_http_flashsale_page.h"
#include "ngx_http_flashsale_breaker.h"


#define NGX_HTTP_FLASHSALE_SKU_MAX        64
#define NGX_HTTP_FLASHSALE_QTY_MAX        1000000

/* expired holds given back per call: bounded so no call runs long */
#define NGX_HTTP_FLASHSALE_RECLAIM_BATCH  "100"

/* the largest number the script's answers are taken to hold: 2^53 */
#define NGX_HTTP_FLASHSALE_INT_MAX        9007199254740992LL

/* how long a shopper is asked to wait when Redis failed */
#define NGX_HTTP_FLASHSALE_REDIS_RETRY    2

/*
 * The most live holders a sold-out answer lists for the latch; beyond it
 * the answer counts them and the latch falls back on the holders filter.
 * A SKU's live holders hold its units, so this covers a drop of up to
 * 4096 units whole.  The list is asked once per latch period, SKU and
 * node: at most 4096 ids of up to 64 characters, about 290 KB of reply
 * and a millisecond of Redis (160 KB for the module's own 32-character
 * ids), and 32 KB of hashes in the zone while the latch lasts.
 */
#define NGX_HTTP_FLASHSALE_LATCH_HOLDERS  4096

/* what the latch says of a reservation */
#define NGX_HTTP_FLASHSALE_LATCH_NONE     0   /* not latched */
#define NGX_HTTP_FLASHSALE_LATCH_HOLDER   1   /* latched, may hold some */
#define NGX_HTTP_FLASHSALE_LATCH_SOLD_OUT 2
#define NGX_HTTP_FLASHSALE_LATCH_REFRESH  3   /* expired: ask Redis anew */

/*
 * How long an expired latch keeps answering while one request asks Redis
 * whether the SKU is still sold out.  Without it every reservation in
 * flight when a hot SKU's latch ran out went to Redis, each bringing back
 * the list of up to 4096 holders.  The refresh normally takes one round
 * trip; this bounds a refresh that never comes back (its shopper left,
 * Redis timed out), after which another request asks.
 */
#define NGX_HTTP_FLASHSALE_LATCH_REFRESH_MAX  1000


typedef struct {
    ngx_http_request_t           *request;
    ngx_http_flashsale_loc_conf_t  *lcf;
    ngx_http_flashsale_redis_cmd_t *cmd;
    ngx_str_t                     sku;
    ngx_str_t                     visitor;
} ngx_http_flashsale_backend_ctx_t;


/* a sold-out answer's holders, built in the request's pool */
typedef struct {
    uint64_t                     *hash;       /* sorted */
    ngx_uint_t                    n;
} ngx_http_flashsale_holders_t;


static ngx_int_t ngx_http_flashsale_reserve_call(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_zone_t *zone,
    const char *op, ngx_str_t *sku, ngx_str_t *visitor, ngx_str_t *qty,
    ngx_msec_t hold, ngx_uint_t holders,
    ngx_http_flashsale_redis_handler_pt handler, void *data,
    ngx_http_flashsale_redis_cmd_t **cmdp);
static void ngx_http_flashsale_reserve_done(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency);
static void ngx_http_flashsale_reserve_cleanup(void *data);
static void ngx_http_flashsale_reserve_orphan(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency);
static void ngx_http_flashsale_reserve_count(ngx_http_flashsale_zone_t *zone,
    ngx_int_t rc, long long *res);
static ngx_int_t ngx_http_flashsale_reserve_result(ngx_log_t *log,
    ngx_http_flashsale_zone_t *zone, redisReply *reply, ngx_uint_t status,
    ngx_msec_t latency, long long *res, ngx_uint_t n, redisReply **list);
static ngx_int_t ngx_http_flashsale_holders_read(ngx_http_request_t *r,
    ngx_http_flashsale_ctx_t *ctx, redisReply *reply, redisReply *list,
    long long *res, ngx_http_flashsale_holders_t *set);
static int ngx_libc_cdecl ngx_http_flashsale_holders_cmp(const void *one,
    const void *two);
static uint64_t ngx_http_flashsale_visitor_hash(u_char *data, size_t len);
static void ngx_http_flashsale_backend_done(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency);
static void ngx_http_flashsale_backend_cleanup(void *data);
static void ngx_http_flashsale_backend_orphan(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency);
static void ngx_http_flashsale_backend_count(
    ngx_http_flashsale_loc_conf_t *lcf, long long *res);
static ngx_uint_t ngx_http_flashsale_latch_test(
    ngx_http_flashsale_zone_t *zone, ngx_str_t *sku, ngx_str_t *visitor);
static void ngx_http_flashsale_latch_set(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *sku, ngx_msec_t latch, ngx_http_flashsale_holders_t *set,
    ngx_log_t *log);
static void ngx_http_flashsale_latch_drop(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_latch_t *l);
static void ngx_http_flashsale_latch_clear(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *sku);
static void ngx_http_flashsale_holders_hash(ngx_str_t *visitor,
    ngx_str_t *sku, uint32_t *h);
static void ngx_http_flashsale_holders_add(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *visitor, ngx_str_t *sku);
static ngx_uint_t ngx_http_flashsale_holders_test(
    ngx_http_flashsale_zone_t *zone, ngx_str_t *visitor, ngx_str_t *sku);
static void ngx_http_flashsale_reserve_outcome(ngx_http_flashsale_ctx_t *ctx,
    ngx_log_t *log, ngx_uint_t failed, ngx_msec_t latency);
static ngx_int_t ngx_http_flashsale_check_sku(ngx_str_t *sku);
static ngx_int_t ngx_http_flashsale_check_visitor(ngx_str_t *visitor);
static ngx_int_t ngx_http_flashsale_check_qty(ngx_str_t *qty,
    ngx_uint_t max);


/*
 * KEYS: stock, holds (visitor -> expiry ms), qty (visitor -> quantity)
 * ARGV: op, visitor, qty, hold ms, reclaim batch, holders cap (0: none)
 *
 * Redis' own clock decides expiry, so nginx nodes with skewed clocks
 * agree.  Every op first gives a bounded batch of expired holds back;
 * past the batch, an expired hold is still expired to every op, and
 * "get" counts live holds only.
 * Replies: reserve {3 new | 2 existing, qty, expiry, stock} | {0, stock}
 * (sold out) | {-1} (no stock key: unknown SKU, never unlimited);
 * release/confirm {1, qty} | {0}; get {1, stock, holds}; set {1, stock}.
 * A sold-out reserve with no unit left and a cap above 0 adds the number
 * of live holds (expiry > now), and their visitors when there are no more
 * than the cap: {0, stock, n, {visitor, ...}} or {0, stock, n}.
 */
static ngx_http_flashsale_redis_script_t  ngx_http_flashsale_script = {
    ngx_string(
"local op = ARGV[1]\n"
"if op == 'set' then\n"
"  redis.call('SET', KEYS[1], ARGV[3])\n"
"  return {1, tonumber(ARGV[3])}\n"
"end\n"
"local stock = redis.call('GET', KEYS[1])\n"
"if not stock then return {-1} end\n"
"stock = tonumber(stock)\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local back = 0\n"
"local function drop(v)\n"
"  local q = tonumber(redis.call('HGET', KEYS[3], v) or '0')\n"
"  redis.call('ZREM', KEYS[2], v)\n"
"  redis.call('HDEL', KEYS[3], v)\n"
"  return q\n"
"end\n"
"local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now,\n"
"                       'LIMIT', 0, tonumber(ARGV[5]))\n"
"for _, v in ipairs(old) do back = back + drop(v) end\n"
"if back > 0 then stock = redis.call('INCRBY', KEYS[1], back) end\n"
"if op == 'get' then\n"
"  return {1, stock, redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')}\n"
"end\n"
"local exp = redis.call('ZSCORE', KEYS[2], ARGV[2])\n"
"if op == 'reserve' then\n"
"  if exp then\n"
"    exp = tonumber(exp)\n"
"    if exp > now then\n"
"      return {2, tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0'),\n"
"              exp, stock}\n"
"    end\n"
"    stock = redis.call('INCRBY', KEYS[1], drop(ARGV[2]))\n"
"  end\n"
"  local q = tonumber(ARGV[3])\n"
"  if stock < q then\n"
"    local cap = tonumber(ARGV[6]) or 0\n"
"    if stock > 0 or cap <= 0 then return {0, stock} end\n"
"    local live = '(' .. now\n"
"    local n = redis.call('ZCOUNT', KEYS[2], live, '+inf')\n"
"    if n > cap then return {0, stock, n} end\n"
"    return {0, stock, n, redis.call('ZRANGEBYSCORE', KEYS[2], live, '+inf')}\n"
"  end\n"
"  stock = redis.call('DECRBY', KEYS[1], q)\n"
"  local e = now + tonumber(ARGV[4])\n"
"  redis.call('ZADD', KEYS[2], e, ARGV[2])\n"
"  redis.call('HSET', KEYS[3], ARGV[2], q)\n"
"  return {3, q, e, stock}\n"
"end\n"
"if not exp then return {0} end\n"
"if tonumber(exp) <= now then\n"
"  redis.call('INCRBY', KEYS[1], drop(ARGV[2]))\n"
"  return {0}\n"
"end\n"
"local q = drop(ARGV[2])\n"
"if op == 'release' then redis.call('INCRBY', KEYS[1], q) end\n"
"return {1, q}\n"),
    { 0 }
};


static ngx_str_t  ngx_http_flashsale_ops[] = {
    ngx_string("reserve"),
    ngx_string("release"),
    ngx_string("confirm"),
    ngx_string("stock"),
};


char *
ngx_http_flashsale_reserve_conf(ngx_conf_t *cf,
    ngx_http_flashsale_reserve_t **reservep)
{
    ngx_int_t                           n;
    ngx_str_t                          *value, s;
    ngx_uint_t                          i;
    ngx_http_flashsale_reserve_t       *reserve;
    ngx_http_compile_complex_value_t    ccv;

    value = cf->args->elts;

    reserve = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_reserve_t));
    if (reserve == NULL) {
        return NGX_CONF_ERROR;
    }

    reserve->hold = 10 * 60 * 1000;
    reserve->latch = 5000;
    reserve->max_qty = 10;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "sku=", 4) == 0
            || ngx_strncmp(value[i].data, "qty=", 4) == 0)
        {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (s.len == 0) {
                goto invalid;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &s;
            ccv.complex_value = ngx_palloc(cf->pool,
                                        sizeof(ngx_http_complex_value_t));
            if (ccv.complex_value == NULL) {
                return NGX_CONF_ERROR;
            }

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            if (value[i].data[0] == 's') {
                reserve->sku = ccv.complex_value;

            } else {
                reserve->qty = ccv.complex_value;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "hold=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            reserve->hold = ngx_parse_time(&s, 0);
            if (reserve->hold == (ngx_msec_t) NGX_ERROR
                || reserve->hold == 0)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "latch=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            /* latch=0 turns the sold-out latch off */
            reserve->latch = ngx_parse_time(&s, 0);
            if (reserve->latch == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_qty=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);
            if (n == NGX_ERROR || n < 1 || n > NGX_HTTP_FLASHSALE_QTY_MAX) {
                goto invalid;
            }

            reserve->max_qty = n;
            continue;
        }

        goto invalid;
    }

    if (reserve->sku == NULL || reserve->qty == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_reserve needs sku= and qty=, e.g. "
                           "\"flashsale_reserve sku=$arg_sku qty=$arg_qty;\"");
        return NGX_CONF_ERROR;
    }

    *reservep = reserve;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "flashsale_reserve: invalid parameter \"%V\"; known "
                       "are sku=value, qty=value, hold=10m, max_qty=10, "
                       "latch=5s",
                       &value[i]);

    return NGX_CONF_ERROR;
}


char *
ngx_http_flashsale_reserve_merge(ngx_conf_t *cf,
    ngx_http_flashsale_loc_conf_t *conf)
{
    if (ngx_http_flashsale_script.sha[0] == '\0'
        && ngx_http_flashsale_redis_script(cf, &ngx_http_flashsale_script)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->reserve && conf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_reserve needs \"flashsale zone=...\" "
                           "in the same location: only admitted shoppers "
                           "reserve");
        return NGX_CONF_ERROR;
    }

    if (conf->redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s needs \"flashsale_redis host:port;\"",
                           conf->reserve ? "flashsale_reserve"
                                         : "flashsale_release, "
                                           "flashsale_confirm and "
                                           "flashsale_stock");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_flashsale_redis_add_script(conf->redis,
                                            &ngx_http_flashsale_script)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_flashsale_reserve_handler(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                      qty;
    ngx_uint_t                     latched;
    ngx_pool_cleanup_t            *cln;
    ngx_http_flashsale_zone_t     *zone;
    ngx_http_flashsale_reserve_t  *reserve;

    reserve = lcf->reserve;
    zone = lcf->zone;

    if (ngx_http_complex_value(r, reserve->sku, &ctx->sku) != NGX_OK
        || ngx_http_complex_value(r, reserve->qty, &qty) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* bad input is answered here and never reaches Redis */
    if (ngx_http_flashsale_check_sku(&ctx->sku) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&zone->sh->stats.bad_requests, 1);
        ngx_str_null(&ctx->sku);
        return ngx_http_flashsale_page_error(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid sku: use 1 to 64 of "
                                    "A-Z a-z 0-9 . _ : -", NULL);
    }

    if (ngx_http_flashsale_check_qty(&qty, reserve->max_qty) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&zone->sh->stats.bad_requests, 1);
        return ngx_http_flashsale_page_error(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid qty: use a whole number from "
                                    "1 to the location's max_qty, with no "
                                    "leading zero", &ctx->sku);
    }

    /* a SKU Redis just called sold out is answered from memory, except
     * to a shopper who may hold some of it: a retry returns the hold */
    if (reserve->latch) {
        latched = ngx_http_flashsale_latch_test(zone, &ctx->sku,
                                                &ctx->visitor);

        if (latched == NGX_HTTP_FLASHSALE_LATCH_SOLD_OUT) {
            (void) ngx_atomic_fetch_add(&zone->sh->stats.sold_out, 1);
            ctx->state = NGX_HTTP_FLASHSALE_STATE_SOLD_OUT;
            return ngx_http_flashsale_page_sold_out(r, lcf, &ctx->sku);
        }

        /* the answer that latches the SKU brings its holders along */
        ctx->ask_holders = (latched == NGX_HTTP_FLASHSALE_LATCH_NONE
                            || latched == NGX_HTTP_FLASHSALE_LATCH_REFRESH);
        ctx->refresher = (latched == NGX_HTTP_FLASHSALE_LATCH_REFRESH);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;

    rc = ngx_http_flashsale_reserve_call(r, lcf, zone, "reserve", &ctx->sku,
                                         &ctx->visitor, &qty, reserve->hold,
                                         ctx->ask_holders
                                         ? NGX_HTTP_FLASHSALE_LATCH_HOLDERS
                                         : 0,
                                         ngx_http_flashsale_reserve_done,
                                         ctx, &ctx->cmd);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* every connection is down or backing off */
        (void) ngx_atomic_fetch_add(&zone->sh->stats.redis_errors, 1);
        (void) ngx_atomic_fetch_add(&zone->sh->stats.errors, 1);

        ngx_http_flashsale_reserve_outcome(ctx, r->connection->log, 1, 0);

        ctx->state = NGX_HTTP_FLASHSALE_STATE_RETRY;

        return ngx_http_flashsale_page_retry(r, lcf,
                                             NGX_HTTP_FLASHSALE_REDIS_RETRY);
    }

    cln->handler = ngx_http_flashsale_reserve_cleanup;
    cln->data = ctx;

    ctx->reserving = NGX_HTTP_FLASHSALE_RESERVE_WAITING;

    /* a shopper who leaves now is noticed, and the command detached */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_flashsale_reserve_call(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_zone_t *zone,
    const char *op, ngx_str_t *sku, ngx_str_t *visitor, ngx_str_t *qty,
    ngx_msec_t hold, ngx_uint_t holders,
    ngx_http_flashsale_redis_handler_pt handler, void *data,
    ngx_http_flashsale_redis_cmd_t **cmdp)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   argv[12];

    static u_char  *suffix[] = { (u_char *) "stock", (u_char *) "holds",
                                 (u_char *) "qty" };
    ngx_uint_t  i;

    len = sizeof("fs:{:}:stock") - 1 + zone->name.len + sku->len;

    p = ngx_pnalloc(r->pool, 3 * len + NGX_TIME_T_LEN + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&argv[0], "EVALSHA");
    argv[1].data = ngx_http_flashsale_script.sha;
    argv[1].len = 40;
    ngx_str_set(&argv[2], "3");

    /* one hash tag per SKU keeps a script's keys in one cluster slot */
    for (i = 0; i < 3; i++) {
        argv[3 + i].data = p;
        p = ngx_sprintf(p, "fs:{%V:%V}:%s", &zone->name, sku, suffix[i]);
        argv[3 + i].len = p - argv[3 + i].data;
    }

    argv[6].data = (u_char *) op;
    argv[6].len = ngx_strlen(op);
    argv[7] = *visitor;
    argv[8] = *qty;

    argv[9].data = p;
    p = ngx_sprintf(p, "%M", hold);
    argv[9].len = p - argv[9].data;

    ngx_str_set(&argv[10], NGX_HTTP_FLASHSALE_RECLAIM_BATCH);

    argv[11].data = p;
    p = ngx_sprintf(p, "%ui", holders);
    argv[11].len = p - argv[11].data;

    return ngx_http_flashsale_redis_send(lcf->redis, r->connection->log, 12,
                                         argv, handler, data, cmdp);
}


static void
ngx_http_flashsale_reserve_done(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency)
{
    ngx_http_flashsale_ctx_t  *ctx = data;

    u_char                         *p;
    long long                       res[4];
    ngx_int_t                       rc, known;
    redisReply                     *list;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_flashsale_zone_t      *zone;
    ngx_http_flashsale_holders_t    set;
    ngx_http_flashsale_loc_conf_t  *lcf;

    r = ctx->request;
    c = r->connection;
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_flashsale_module);
    zone = lcf->zone;

    ctx->cmd = NULL;
    ctx->reserving = NGX_HTTP_FLASHSALE_RESERVE_DONE;

    known = NGX_DECLINED;

    rc = ngx_http_flashsale_reserve_result(c->log, zone, reply, status,
                                           latency, res, 4, &list);

    if (rc == NGX_OK) {
        known = ngx_http_flashsale_holders_read(r, ctx, reply, list, res,
                                                &set);

        if (known == NGX_ERROR) {
            (void) ngx_atomic_fetch_add(&zone->sh->stats.redis_errors, 1);
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "flashsale: redis answered the script with "
                          "holders that do not fit the answer");
            rc = NGX_ERROR;
        }
    }

    /*
     * The request that refreshes an expired latch: anything but "still
     * none left" (which renews it below) ends the latch, errors too, so
     * nobody is told "sold out" on the strength of an answer not given.
     */
    if (ctx->refresher && !(rc == NGX_OK && res[0] == 0 && res[1] <= 0)) {
        ngx_http_flashsale_latch_clear(zone, &ctx->sku);
    }

    /* a sold-out or unknown answer is Redis working */
    ngx_http_flashsale_reserve_outcome(ctx, c->log, rc != NGX_OK, latency);

    ngx_http_flashsale_reserve_count(zone, rc, res);

    if (rc != NGX_OK) {
        ctx->state = NGX_HTTP_FLASHSALE_STATE_RETRY;
        rc = ngx_http_flashsale_page_retry(r, lcf,
                                           NGX_HTTP_FLASHSALE_REDIS_RETRY);
        goto finalize;
    }

    if (res[0] == 3 || res[0] == 2) {
        if (lcf->reserve->latch) {
            ngx_http_flashsale_holders_add(zone, &ctx->visitor, &ctx->sku);
        }

        /*
         * A new hold means units came back (expired holds, a release, an
         * INCRBY): a latch of the SKU is stale, and its holders may miss
         * this shopper.  The latch goes; the next sold-out answer sets it
         * again with the holders of then.  latch_n is only a hint, read
         * without the lock, that saves the lock when nothing is latched.
         */
        if (res[0] == 3 && zone->sh->latch_n) {
            ngx_http_flashsale_latch_clear(zone, &ctx->sku);
        }

        /* the store reads it as a query string */
        p = ngx_pnalloc(r->pool, sizeof("sku=&qty=&visitor=&expires=") - 1
                                 + ctx->sku.len + ctx->visitor.len
                                 + 2 * NGX_INT64_LEN);
        if (p == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto finalize;
        }

        ctx->reservation.data = p;
        ctx->reservation.len = ngx_sprintf(p, "sku=%V&qty=%L&visitor=%V"
                                           "&expires=%L", &ctx->sku, res[1],
                                           &ctx->visitor, res[2])
                               - p;

        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (res[0] == 0) {
        /*
         * Latched only when none is left (a smaller qty may still fit),
         * and only by an answer that was asked for the holders: one that
         * was not (a holder's retry of a latched SKU) leaves the latch
         * and its holders as they are, to run out.
         */
        if (res[1] <= 0 && lcf->reserve->latch && ctx->ask_holders) {
            ngx_http_flashsale_latch_set(zone, &ctx->sku, lcf->reserve->latch,
                                         known == NGX_OK ? &set : NULL,
                                         c->log);
        }

        ctx->state = NGX_HTTP_FLASHSALE_STATE_SOLD_OUT;
        rc = ngx_http_flashsale_page_sold_out(r, lcf, &ctx->sku);
        goto finalize;
    }

    if (res[0] == -1) {
        rc = ngx_http_flashsale_page_error(r, NGX_HTTP_NOT_FOUND,
                                           "unknown sku", &ctx->sku);
        goto finalize;
    }

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "flashsale: the reservation script answered %L", res[0]);

    ctx->state = NGX_HTTP_FLASHSALE_STATE_RETRY;
    rc = ngx_http_flashsale_page_retry(r, lcf, NGX_HTTP_FLASHSALE_REDIS_RETRY);

finalize:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_flashsale_reserve_outcome(ngx_http_flashsale_ctx_t *ctx,
    ngx_log_t *log, ngx_uint_t failed, ngx_msec_t latency)
{
    ngx_http_flashsale_zone_t  *zone;

    zone = ctx->zone;

    if (zone->breaker == NULL
        || !(zone->breaker->watch & NGX_HTTP_FLASHSALE_WATCH_REDIS))
    {
        return;
    }

    ngx_http_flashsale_breaker_report(zone, log, ctx->probe, ctx->probe_stamp,
                        ngx_http_flashsale_breaker_outcome(zone, failed,
                                                           latency));

    /* the probe is spent; the upstream, if watched, reports on its own */
    ctx->probe = 0;

    if (!(zone->breaker->watch & NGX_HTTP_FLASHSALE_WATCH_UPSTREAM)) {
        ctx->reported = 1;
    }
}


static void
ngx_http_flashsale_reserve_cleanup(void *data)
{
    ngx_http_flashsale_ctx_t  *ctx = data;

    if (ctx->cmd) {
        ngx_http_flashsale_redis_detach(ctx->cmd,
                                        ngx_http_flashsale_reserve_orphan,
                                        ctx->zone);
        ctx->cmd = NULL;
    }
}


/*
 * The shopper left while the call was in flight: Redis made the hold (or
 * said sold out) all the same, and the status counts what it did.
 */
static void
ngx_http_flashsale_reserve_orphan(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency)
{
    ngx_http_flashsale_zone_t *zone = data;

    long long    res[4];
    ngx_int_t    rc;
    redisReply  *list;

    rc = ngx_http_flashsale_reserve_result(ngx_cycle->log, zone, reply, status,
                                           latency, res, 4, &list);

    ngx_http_flashsale_reserve_count(zone, rc, res);
}


/* the counter of a reservation's answer, whether anyone reads it or not */
static void
ngx_http_flashsale_reserve_count(ngx_http_flashsale_zone_t *zone,
    ngx_int_t rc, long long *res)
{
    ngx_http_flashsale_stats_t  *st;

    st = &zone->sh->stats;

    if (rc != NGX_OK) {
        (void) ngx_atomic_fetch_add(&st->errors, 1);
        return;
    }

    switch (res[0]) {

    case 3:     /* a new hold; 2, the hold a retry found, is not counted */
        (void) ngx_atomic_fetch_add(&st->reserved, 1);
        break;

    case 2:
        break;

    case 0:
        (void) ngx_atomic_fetch_add(&st->sold_out, 1);
        break;

    case -1:
        (void) ngx_atomic_fetch_add(&st->bad_requests, 1);
        break;

    default:
        (void) ngx_atomic_fetch_add(&st->errors, 1);
        break;
    }
}


/*
 * Counts the call and checks the reply is an array of n integers or
 * fewer; what is missing reads as 0.  With "list", a last element that
 * is an array (a sold-out answer's holders) is handed back there instead,
 * and reads as 0 too: the caller checks it.
 */
static ngx_int_t
ngx_http_flashsale_reserve_result(ngx_log_t *log,
    ngx_http_flashsale_zone_t *zone, redisReply *reply, ngx_uint_t status,
    ngx_msec_t latency, long long *res, ngx_uint_t n, redisReply **list)
{
    size_t                       last;
    ngx_uint_t                   i;
    ngx_http_flashsale_stats_t  *st;

    st = &zone->sh->stats;

    if (list) {
        *list = NULL;
    }

    (void) ngx_atomic_fetch_add(&st->redis_calls, 1);
    (void) ngx_atomic_fetch_add(&st->redis_latency_ms, latency);

    if (status == NGX_HTTP_FLASHSALE_REDIS_TIMEOUT) {
        (void) ngx_atomic_fetch_add(&st->redis_timeouts, 1);
        return NGX_ERROR;
    }

    if (status != NGX_HTTP_FLASHSALE_REDIS_OK) {
        (void) ngx_atomic_fetch_add(&st->redis_errors, 1);
        return NGX_ERROR;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(&st->redis_errors, 1);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "flashsale: redis answered the script with \"%*s\"",
                      ngx_min((size_t) reply->len, 200), reply->str);
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->elements > n)
    {
        (void) ngx_atomic_fetch_add(&st->redis_errors, 1);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "flashsale: redis answered the script with an "
                      "unexpected reply of type %d", reply->type);
        return NGX_ERROR;
    }

    last = reply->elements;

    if (list && last > 1
        && reply->element[last - 1]->type == REDIS_REPLY_ARRAY)
    {
        *list = reply->element[--last];
    }

    for (i = 0; i < n; i++) {
        if (i >= last) {
            res[i] = 0;
            continue;
        }

        /* stock, quantities and milliseconds: far from either end, so
         * printing and arithmetic on them cannot overflow */
        if (reply->element[i]->type != REDIS_REPLY_INTEGER
            || reply->element[i]->integer < -NGX_HTTP_FLASHSALE_INT_MAX
            || reply->element[i]->integer > NGX_HTTP_FLASHSALE_INT_MAX)
        {
            (void) ngx_atomic_fetch_add(&st->redis_errors, 1);
            return NGX_ERROR;
        }

        res[i] = reply->element[i]->integer;
    }

    return NGX_OK;
}


/*
 * What a reservation's answer says of the SKU's live holders, checked
 * against what was asked: NGX_OK when it listed them (then "set" holds
 * their hashes, sorted, in the request's pool: the zone's lock is only
 * held to copy them in), NGX_DECLINED when there is nothing to know or it
 * only counted them (more than the cap), NGX_ERROR when the script cannot
 * have given this answer.
 */
static ngx_int_t
ngx_http_flashsale_holders_read(ngx_http_request_t *r,
    ngx_http_flashsale_ctx_t *ctx, redisReply *reply, redisReply *list,
    long long *res, ngx_http_flashsale_holders_t *set)
{
    size_t       i;
    redisReply  *e;

    if (!(ctx->ask_holders && res[0] == 0 && res[1] <= 0)) {
        /* only a sold-out answer that was asked lists them */
        return list ? NGX_ERROR : NGX_DECLINED;
    }

    /* {0, stock, n} when n is over the cap, else {0, stock, n, {...}} */

    if (list == NULL) {
        return (reply->elements == 3
                && res[2] > NGX_HTTP_FLASHSALE_LATCH_HOLDERS)
               ? NGX_DECLINED : NGX_ERROR;
    }

    if (reply->elements != 4
        || list->elements > NGX_HTTP_FLASHSALE_LATCH_HOLDERS
        || res[2] != (long long) list->elements)
    {
        return NGX_ERROR;
    }

    set->n = list->elements;
    set->hash = NULL;

    if (set->n == 0) {
        return NGX_OK;
    }

    set->hash = ngx_palloc(r->pool, set->n * sizeof(uint64_t));
    if (set->hash == NULL) {
        /* the holders filter decides, as when there are too many */
        return NGX_DECLINED;
    }

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            return NGX_ERROR;
        }

        set->hash[i] = ngx_http_flashsale_visitor_hash((u_char *) e->str,
                                                       e->len);
    }

    ngx_qsort(set->hash, set->n, sizeof(uint64_t),
              ngx_http_flashsale_holders_cmp);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_flashsale_holders_cmp(const void *one, const void *two)
{
    uint64_t  a, b;

    a = *(const uint64_t *) one;
    b = *(const uint64_t *) two;

    return (a > b) - (a < b);
}


/*
 * 64-bit FNV-1a: two visitors share a hash with a chance of about 2^-64,
 * and then the second is only sent to Redis, which tells them apart.
 * Visitor ids come from signed passes, so nobody picks them to collide.
 * Not ngx_murmur_hash2(): it shifts bytes into an int, which is undefined
 * for a byte above 127, and the ids here come from Redis' reply.
 */
static uint64_t
ngx_http_flashsale_visitor_hash(u_char *data, size_t len)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}


ngx_int_t
ngx_http_flashsale_backend_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_str_t                          visitor, qty;
    ngx_uint_t                         op;
    ngx_pool_cleanup_t                *cln;
    ngx_http_flashsale_zone_t         *zone;
    ngx_http_flashsale_loc_conf_t     *lcf;
    ngx_http_flashsale_backend_ctx_t  *bctx;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_flashsale_module);
    zone = lcf->backend_zone;
    op = lcf->backend;

    if (op == NGX_HTTP_FLASHSALE_OP_STOCK) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT))) {
            return NGX_HTTP_NOT_ALLOWED;
        }

    } else if (r->method != NGX_HTTP_POST) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    bctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flashsale_backend_ctx_t));
    if (bctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bctx->request = r;
    bctx->lcf = lcf;

    if (ngx_http_arg(r, (u_char *) "sku", 3, &bctx->sku) != NGX_OK
        || ngx_http_flashsale_check_sku(&bctx->sku) != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&zone->sh->stats.bad_requests, 1);
        return ngx_http_flashsale_page_json_error(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid or missing sku: use 1 to 64 of "
                                    "A-Z a-z 0-9 . _ : -");
    }

    ngx_str_set(&visitor, "-");
    ngx_str_set(&qty, "0");

    if (op == NGX_HTTP_FLASHSALE_OP_RELEASE
        || op == NGX_HTTP_FLASHSALE_OP_CONFIRM)
    {
        if (ngx_http_arg(r, (u_char *) "visitor", 7, &visitor) != NGX_OK
            || ngx_http_flashsale_check_visitor(&visitor) != NGX_OK)
        {
            (void) ngx_atomic_fetch_add(&zone->sh->stats.bad_requests, 1);
            return ngx_http_flashsale_page_json_error(r,
                                    NGX_HTTP_BAD_REQUEST,
                                    "invalid or missing visitor");
        }

    } else if (r->method == NGX_HTTP_PUT) {
        /* a missing qty must never read as 0 and empty a sale */
        if (ngx_http_arg(r, (u_char *) "qty", 3, &qty) != NGX_OK
            || !((qty.len == 1 && qty.data[0] == '0')
                 || ngx_http_flashsale_check_qty(&qty, NGX_MAX_INT32_VALUE)
                    == NGX_OK))
        {
            (void) ngx_atomic_fetch_add(&zone->sh->stats.bad_requests, 1);
            return ngx_http_flashsale_page_json_error(r,
                                    NGX_HTTP_BAD_REQUEST,
                                    "invalid or missing qty: use a whole "
                                    "number from 0 to 2147483647, with no "
                                    "leading zero");
        }
    }

    bctx->visitor = visitor;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_flashsale_reserve_call(r, lcf, zone,
                 op == NGX_HTTP_FLASHSALE_OP_STOCK
                 ? (r->method == NGX_HTTP_PUT ? "set" : "get")
                 : (char *) ngx_http_flashsale_ops[op].data,
                 &bctx->sku, &visitor, &qty, 0, 0,
                 ngx_http_flashsale_backend_done, bctx, &bctx->cmd);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        (void) ngx_atomic_fetch_add(&zone->sh->stats.redis_errors, 1);
        return ngx_http_flashsale_page_json_error(r,
                                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                                  "redis is unavailable");
    }

    cln->handler = ngx_http_flashsale_backend_cleanup;
    cln->data = bctx;

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_flashsale_backend_done(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency)
{
    ngx_http_flashsale_backend_ctx_t  *bctx = data;

    u_char                     *p;
    long long                   res[3];
    ngx_int_t                   rc;
    ngx_str_t                   body;
    ngx_uint_t                  op;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_flashsale_zone_t  *zone;

    r = bctx->request;
    c = r->connection;
    zone = bctx->lcf->backend_zone;
    op = bctx->lcf->backend;

    bctx->cmd = NULL;

    rc = ngx_http_flashsale_reserve_result(c->log, zone, reply, status,
                                           latency, res, 3, NULL);
    if (rc != NGX_OK) {
        rc = ngx_http_flashsale_page_json_error(r,
                                                NGX_HTTP_SERVICE_UNAVAILABLE,
                                                "redis failed, try again");
        goto finalize;
    }

    if (res[0] == -1) {
        rc = ngx_http_flashsale_page_json_error(r, NGX_HTTP_NOT_FOUND,
                                                "unknown sku");
        goto finalize;
    }

    if (res[0] == 0) {
        rc = ngx_http_flashsale_page_json_error(r, NGX_HTTP_NOT_FOUND,
                                                "no live hold for this "
                                                "visitor and sku");
        goto finalize;
    }

    body.data = ngx_pnalloc(r->pool, sizeof("{\"sku\":\"\",\"stock\":,"
                                            "\"holds\":}")
                                     + bctx->sku.len + 3 * NGX_INT64_LEN
                                     + bctx->visitor.len + 32);
    if (body.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto finalize;
    }

    p = body.data;

    if (op == NGX_HTTP_FLASHSALE_OP_STOCK) {
        if (r->method == NGX_HTTP_PUT && res[1] > 0) {
            /* restocked: shoppers need not wait out the latch */
            ngx_http_flashsale_latch_clear(zone, &bctx->sku);
        }

        p = ngx_sprintf(p, "{\"sku\":\"%V\",\"stock\":%L", &bctx->sku,
                        res[1]);

        if (r->method != NGX_HTTP_PUT) {
            p = ngx_sprintf(p, ",\"holds\":%L", res[2]);
        }

    } else {
        ngx_http_flashsale_backend_count(bctx->lcf, res);

        p = ngx_sprintf(p, "{\"sku\":\"%V\",\"visitor\":\"%V\",\"%s\":%L",
                        &bctx->sku, &bctx->visitor,
                        op == NGX_HTTP_FLASHSALE_OP_RELEASE ? "released"
                                                            : "confirmed",
                        res[1]);
    }

    *p++ = '}';
    body.len = p - body.data;

    rc = ngx_http_flashsale_page_json(r, NGX_HTTP_OK, &body);

finalize:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_flashsale_backend_cleanup(void *data)
{
    ngx_http_flashsale_backend_ctx_t  *bctx = data;

    /* the location's configuration outlives the request, as the zone does */
    if (bctx->cmd) {
        ngx_http_flashsale_redis_detach(bctx->cmd,
                                        ngx_http_flashsale_backend_orphan,
                                        bctx->lcf);
        bctx->cmd = NULL;
    }
}


/*
 * The store's back end left while its call was in flight: a confirmation
 * or release Redis made is counted all the same (retrying it gets 404).
 */
static void
ngx_http_flashsale_backend_orphan(void *data, redisReply *reply,
    ngx_uint_t status, ngx_msec_t latency)
{
    ngx_http_flashsale_loc_conf_t *lcf = data;

    long long  res[3];

    if (ngx_http_flashsale_reserve_result(ngx_cycle->log, lcf->backend_zone,
                                          reply, status, latency, res, 3,
                                          NULL)
        == NGX_OK)
    {
        ngx_http_flashsale_backend_count(lcf, res);
    }
}


/* a release or confirmation Redis made: res[0] > 0 */
static void
ngx_http_flashsale_backend_count(ngx_http_flashsale_loc_conf_t *lcf,
    long long *res)
{
    ngx_http_flashsale_stats_t  *st;

    if (res[0] <= 0) {
        return;
    }

    st = &lcf->backend_zone->sh->stats;

    if (lcf->backend == NGX_HTTP_FLASHSALE_OP_RELEASE) {
        (void) ngx_atomic_fetch_add(&st->released, 1);

    } else if (lcf->backend == NGX_HTTP_FLASHSALE_OP_CONFIRM) {
        (void) ngx_atomic_fetch_add(&st->confirmed, 1);
    }
}


static ngx_int_t
ngx_http_flashsale_check_sku(ngx_str_t *sku)
{
    u_char      c;
    ngx_uint_t  i;

    if (sku->len == 0 || sku->len > NGX_HTTP_FLASHSALE_SKU_MAX) {
        return NGX_DECLINED;
    }

    for (i = 0; i < sku->len; i++) {
        c = sku->data[i];

        if (!(ngx_http_flashsale_name_char(c) || c == '.' || c == ':')) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_check_visitor(ngx_str_t *visitor)
{
    ngx_uint_t  i;

    if (visitor->len == 0 || visitor->len > NGX_HTTP_FLASHSALE_VISITOR_MAX) {
        return NGX_DECLINED;
    }

    for (i = 0; i < visitor->len; i++) {
        if (!ngx_http_flashsale_name_char(visitor->data[i])) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_check_qty(ngx_str_t *qty, ngx_uint_t max)
{
    ngx_int_t  n;

    /*
     * ngx_atoi() takes digits only: no sign, space or exponent.  A leading
     * zero is refused too: the stock is stored as sent, and Redis will not
     * count down from "05"
     */
    if (qty->len == 0 || qty->len > 10 || qty->data[0] == '0') {
        return NGX_DECLINED;
    }

    n = ngx_atoi(qty->data, qty->len);

    if (n == NGX_ERROR || n < 1 || (ngx_uint_t) n > max) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


void
ngx_http_flashsale_latch_init(ngx_http_flashsale_zone_t *zone)
{
    ngx_rbtree_init(&zone->sh->latch, &zone->sh->latch_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&zone->sh->latch_queue);
}


/* the latched SKUs, most recent first, each with the number of holders
 * its latch knows (-1: the holders filter decides) */
ngx_uint_t
ngx_http_flashsale_latch_list(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *skus, ngx_int_t *holders, u_char *buf, ngx_uint_t max,
    ngx_uint_t *total)
{
    ngx_uint_t                   n, live;
    ngx_msec_t                   now;
    ngx_queue_t                 *q;
    ngx_http_flashsale_latch_t  *l;

    now = ngx_current_msec;
    n = 0;
    live = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->latch_queue);
         q != ngx_queue_sentinel(&zone->sh->latch_queue);
         q = ngx_queue_next(q))
    {
        l = ngx_queue_data(q, ngx_http_flashsale_latch_t, queue);

        /* in force: not expired, or still answering while refreshed */
        if ((ngx_msec_int_t) (l->expires - now) <= 0
            && !(l->refreshing
                 && now - l->refresh < NGX_HTTP_FLASHSALE_LATCH_REFRESH_MAX))
        {
            continue;
        }

        if (live++ >= max) {
            continue;
        }

        skus[n].data = buf;
        skus[n].len = l->sn.str.len;
        buf = ngx_cpymem(buf, l->sn.str.data, l->sn.str.len);
        holders[n] = l->known ? (ngx_int_t) l->nholders : -1;
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    *total = live;

    return n;
}


/*
 * Whether a reservation may be answered from the latch: the SKU is not
 * latched, or it is and this visitor may hold some (both go to Redis),
 * or it is sold out to them.  A latch that knows the SKU's holders is
 * authoritative; one that does not leaves it to the holders filter.
 * Every doubt goes to Redis: a hash two visitors share costs a call,
 * never a wrong 409.
 */
static ngx_uint_t
ngx_http_flashsale_latch_test(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *sku, ngx_str_t *visitor)
{
    uint32_t                     hash;
    uint64_t                     vh, *h;
    ngx_uint_t                   rc, filter, lo, hi, mid;
    ngx_http_flashsale_latch_t  *l;

    /* nothing latched in the zone: no lock (a stale 0 only costs the
     * Redis call a latch would have saved) */
    if (zone->sh->latch_n == 0) {
        return NGX_HTTP_FLASHSALE_LATCH_NONE;
    }

    hash = ngx_crc32_short(sku->data, sku->len);
    vh = ngx_http_flashsale_visitor_hash(visitor->data, visitor->len);
    rc = NGX_HTTP_FLASHSALE_LATCH_NONE;
    filter = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    l = (ngx_http_flashsale_latch_t *)
            ngx_str_rbtree_lookup(&zone->sh->latch, sku, hash);

    if (l == NULL) {
        /* void */

    } else if ((ngx_msec_int_t) (l->expires - ngx_current_msec) <= 0
               && (!l->refreshing
                   || ngx_current_msec - l->refresh
                      >= NGX_HTTP_FLASHSALE_LATCH_REFRESH_MAX))
    {
        /* this request asks Redis; the others keep the old answer */
        l->refreshing = 1;
        l->refresh = ngx_current_msec;
        rc = NGX_HTTP_FLASHSALE_LATCH_REFRESH;

    } else if (!l->known) {
        filter = 1;

    } else {
        h = l->holders;
        lo = 0;
        hi = l->nholders;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            if (h[mid] < vh) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        rc = (lo < l->nholders && h[lo] == vh)
             ? NGX_HTTP_FLASHSALE_LATCH_HOLDER
             : NGX_HTTP_FLASHSALE_LATCH_SOLD_OUT;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (filter) {
        rc = ngx_http_flashsale_holders_test(zone, visitor, sku)
             ? NGX_HTTP_FLASHSALE_LATCH_HOLDER
             : NGX_HTTP_FLASHSALE_LATCH_SOLD_OUT;
    }

    return rc;
}


/* latches the SKU for "latch", with its holders when "set" is given;
 * an existing latch is renewed and its holders replaced */
static void
ngx_http_flashsale_latch_set(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *sku, ngx_msec_t latch, ngx_http_flashsale_holders_t *set,
    ngx_log_t *log)
{
    size_t                       size;
    time_t                       now;
    uint32_t                     hash;
    uint64_t                    *h;
    ngx_uint_t                   i, nomem, holders_nomem;
    ngx_queue_t                 *q;
    ngx_http_flashsale_sh_t     *sh;
    ngx_http_flashsale_latch_t  *l, *stale;

    sh = zone->sh;
    hash = ngx_crc32_short(sku->data, sku->len);
    size = offsetof(ngx_http_flashsale_latch_t, data) + sku->len;
    nomem = 0;
    holders_nomem = 0;
    now = ngx_time();

    ngx_shmtx_lock(&zone->shpool->mutex);

    l = (ngx_http_flashsale_latch_t *)
            ngx_str_rbtree_lookup(&sh->latch, sku, hash);

    /*
     * Latches nobody asked for since they expired stay for their refresh;
     * a few of the oldest of them go whenever a SKU is latched, so that a
     * zone whose sale moved on finds latch_n at 0 and takes no lock.
     */
    for (i = 0; i < 4 && !ngx_queue_empty(&sh->latch_queue); i++) {
        q = ngx_queue_last(&sh->latch_queue);
        stale = ngx_queue_data(q, ngx_http_flashsale_latch_t, queue);

        if (stale == l
            || (ngx_msec_int_t) (stale->expires - ngx_current_msec) > 0
            || (stale->refreshing
                && ngx_current_msec - stale->refresh
                   < NGX_HTTP_FLASHSALE_LATCH_REFRESH_MAX))
        {
            break;
        }

        ngx_http_flashsale_latch_drop(zone, stale);
    }

    if (l) {
        ngx_queue_remove(&l->queue);
        ngx_queue_insert_head(&sh->latch_queue, &l->queue);
        goto holders;
    }

    /* the oldest latches make room, expired or not: a full zone must
     * still answer, it only remembers less */
    for (i = 0; i < 3; i++) {
        l = ngx_slab_alloc_locked(zone->shpool, size);
        if (l) {
            break;
        }

        if (ngx_queue_empty(&sh->latch_queue)) {
            break;
        }

        q = ngx_queue_last(&sh->latch_queue);
        ngx_http_flashsale_latch_drop(zone,
                        ngx_queue_data(q, ngx_http_flashsale_latch_t, queue));
    }

    if (l == NULL) {
        if (now - sh->nomem_logged >= 60) {
            sh->nomem_logged = now;
            nomem = 1;
        }

        goto done;
    }

    ngx_memcpy(l->data, sku->data, sku->len);
    l->sn.str.data = l->data;
    l->sn.str.len = sku->len;
    l->sn.node.key = hash;
    l->holders = NULL;
    l->nholders = 0;
    l->known = 0;
    l->refresh = 0;

    ngx_rbtree_insert(&sh->latch, &l->sn.node);
    ngx_queue_insert_head(&sh->latch_queue, &l->queue);
    sh->latch_n++;

holders:

    l->expires = ngx_current_msec + latch;
    l->refreshing = 0;

    /* the holders are those of the answer that latches, never older */
    if (l->holders) {
        ngx_slab_free_locked(zone->shpool, l->holders);
        l->holders = NULL;
    }

    l->nholders = 0;
    l->known = 0;

    if (set == NULL) {
        goto done;
    }

    if (set->n) {
        h = ngx_slab_alloc_locked(zone->shpool, set->n * sizeof(uint64_t));
        if (h == NULL) {
            /* the holders filter decides, as before the holders were
             * known: slower, still correct */
            if (now - sh->holders_nomem_logged >= 60) {
                sh->holders_nomem_logged = now;
                holders_nomem = 1;
            }

            goto done;
        }

        ngx_memcpy(h, set->hash, set->n * sizeof(uint64_t));
        l->holders = h;
        l->nholders = set->n;
    }

    l->known = 1;

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (nomem) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "flashsale: could not allocate a sold-out latch in "
                      "flashsale zone \"%V\"; SKUs are asked of Redis "
                      "instead (a larger flashsale_zone size helps; logged "
                      "at most once a minute)", &zone->name);
    }

    if (holders_nomem) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "flashsale: could not allocate the %ui holders of "
                      "sold-out SKU \"%V\" in flashsale zone \"%V\"; the "
                      "holders filter tells them apart instead (a larger "
                      "flashsale_zone size helps; logged at most once a "
                      "minute)", set->n, sku, &zone->name);
    }
}


static void
ngx_http_flashsale_latch_drop(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_latch_t *l)
{
    ngx_queue_remove(&l->queue);
    ngx_rbtree_delete(&zone->sh->latch, &l->sn.node);

    if (l->holders) {
        ngx_slab_free_locked(zone->shpool, l->holders);
    }

    ngx_slab_free_locked(zone->shpool, l);
    zone->sh->latch_n--;
}


static void
ngx_http_flashsale_latch_clear(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *sku)
{
    ngx_http_flashsale_latch_t  *l;

    ngx_shmtx_lock(&zone->shpool->mutex);

    l = (ngx_http_flashsale_latch_t *)
            ngx_str_rbtree_lookup(&zone->sh->latch, sku,
                                  ngx_crc32_short(sku->data, sku->len));
    if (l) {
        ngx_http_flashsale_latch_drop(zone, l);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * Who holds what, as a Bloom filter of (visitor, SKU) in the zone: sized
 * with the zone, no lock (atomic OR), never cleared.  It decides only for
 * a latch that does not know its holders (more than the cap of them, or
 * no room in the zone).  A false positive only costs a Redis call; once
 * it fills up every such latched request goes to Redis, which is correct,
 * only slower.
 */

static void
ngx_http_flashsale_holders_hash(ngx_str_t *visitor, ngx_str_t *sku,
    uint32_t *h)
{
    uint32_t  crc;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, visitor->data, visitor->len);
    ngx_crc32_update(&crc, (u_char *) "/", 1);
    ngx_crc32_update(&crc, sku->data, sku->len);
    ngx_crc32_final(crc);

    h[0] = crc;
    h[1] = ngx_murmur_hash2(visitor->data, visitor->len)
           ^ ngx_murmur_hash2(sku->data, sku->len) * 31;
}


static void
ngx_http_flashsale_holders_add(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *visitor, ngx_str_t *sku)
{
    uint32_t    h[2], bit;
    ngx_uint_t  i;

    ngx_http_flashsale_holders_hash(visitor, sku, h);

    for (i = 0; i < 2; i++) {
        bit = h[i] & zone->sh->holders_mask;
        (void) __sync_fetch_and_or(&zone->sh->holders[bit / 32],
                                   (uint32_t) 1 << (bit % 32));
    }
}


static ngx_uint_t
ngx_http_flashsale_holders_test(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *visitor, ngx_str_t *sku)
{
    uint32_t    h[2], bit;
    ngx_uint_t  i;

    ngx_http_flashsale_holders_hash(visitor, sku, h);

    for (i = 0; i < 2; i++) {
        bit = h[i] & zone->sh->holders_mask;

        if (!(zone->sh->holders[bit / 32] & ((uint32_t) 1 << (bit % 32)))) {
            return 0;
        }
    }

    return 1;
}
