
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include "ngx_http_flashsale_breaker.h"
#include "ngx_http_flashsale_room.h"


/* a probe that never reports back (worker killed) frees its slot after
 * this many times "slow", and never sooner than a second */
#define NGX_HTTP_FLASHSALE_PROBE_SLOW_FACTOR  10


static ngx_uint_t ngx_http_flashsale_breaker_upstreams(ngx_http_request_t *r,
    ngx_uint_t *failed, ngx_msec_t *latency);
static void ngx_http_flashsale_breaker_trip(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_breaker_sh_t *b, ngx_msec_t now);
static void ngx_http_flashsale_breaker_window(
    ngx_http_flashsale_breaker_conf_t *bcf,
    ngx_http_flashsale_breaker_sh_t *b, time_t now, ngx_uint_t *calls,
    ngx_uint_t *fails);


static ngx_str_t  ngx_http_flashsale_breaker_states[] = {
    ngx_string("off"),
    ngx_string("closed"),
    ngx_string("open"),
    ngx_string("half_open"),
};


char *
ngx_http_flashsale_breaker_conf(ngx_conf_t *cf,
    ngx_http_flashsale_breaker_conf_t **bcfp)
{
    ngx_int_t                           n;
    ngx_str_t                          *value, s;
    ngx_uint_t                          i;
    ngx_http_flashsale_breaker_conf_t  *bcf;

    value = cf->args->elts;

    bcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_breaker_conf_t));
    if (bcf == NULL) {
        return NGX_CONF_ERROR;
    }

    bcf->failures = 30;
    bcf->window = 10;
    bcf->min_calls = 20;
    bcf->slow = 500;
    bcf->open = 30000;
    bcf->half_open = 5;
    bcf->watch = NGX_HTTP_FLASHSALE_WATCH_REDIS;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "failures=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            if (s.len && s.data[s.len - 1] == '%') {
                s.len--;
            }

            n = ngx_atoi(s.data, s.len);
            if (n == NGX_ERROR || n < 1 || n > 100) {
                goto invalid;
            }

            bcf->failures = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            n = ngx_parse_time(&s, 1);
            if (n == NGX_ERROR || n < 1 || n > NGX_HTTP_FLASHSALE_WINDOW_MAX) {
                goto invalid;
            }

            bcf->window = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "min_calls=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);
            if (n == NGX_ERROR || n < 1) {
                goto invalid;
            }

            bcf->min_calls = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "slow=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            bcf->slow = ngx_parse_time(&s, 0);
            if (bcf->slow == (ngx_msec_t) NGX_ERROR || bcf->slow == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "open=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            bcf->open = ngx_parse_time(&s, 0);
            if (bcf->open == (ngx_msec_t) NGX_ERROR || bcf->open == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "half_open=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);
            if (n == NGX_ERROR || n < 1 || n > NGX_HTTP_FLASHSALE_PROBES_MAX) {
                goto invalid;
            }

            bcf->half_open = n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "watch=redis") == 0) {
            bcf->watch = NGX_HTTP_FLASHSALE_WATCH_REDIS;
            continue;
        }

        if (ngx_strcmp(value[i].data, "watch=upstream") == 0) {
            bcf->watch = NGX_HTTP_FLASHSALE_WATCH_UPSTREAM;
            continue;
        }

        if (ngx_strcmp(value[i].data, "watch=both") == 0) {
            bcf->watch = NGX_HTTP_FLASHSALE_WATCH_REDIS
                         |NGX_HTTP_FLASHSALE_WATCH_UPSTREAM;
            continue;
        }

        goto invalid;
    }

    *bcfp = bcf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "flashsale_breaker: invalid parameter \"%V\"; known "
                       "are failures=1..100%%, window=1s..60s, min_calls=N, "
                       "slow=500ms, open=30s, half_open=1..%d, "
                       "watch=redis|upstream|both", &value[i],
                       NGX_HTTP_FLASHSALE_PROBES_MAX);

    return NGX_CONF_ERROR;
}


char *
ngx_http_flashsale_breaker_zone(ngx_conf_t *cf,
    ngx_http_flashsale_zone_t *zone, ngx_http_flashsale_breaker_conf_t *bcf)
{
    if (zone->breaker == NULL || zone->breaker == bcf) {
        zone->breaker = bcf;
        return NGX_CONF_OK;
    }

    if (ngx_memcmp(zone->breaker, bcf,
                   sizeof(ngx_http_flashsale_breaker_conf_t))
        == 0)
    {
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "flashsale zone=%V has one breaker: every location "
                       "of the zone must see the same flashsale_breaker "
                       "parameters (set it once, e.g. in the http block)",
                       &zone->name);

    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_flashsale_breaker_enter(ngx_http_flashsale_zone_t *zone,
    ngx_uint_t *probe, ngx_msec_t *stamp, ngx_uint_t *retry_after)
{
    ngx_int_t                           rc;
    ngx_uint_t                          i, free;
    ngx_msec_t                          now, stale;
    ngx_msec_int_t                      left;
    ngx_http_flashsale_breaker_sh_t    *b;
    ngx_http_flashsale_breaker_conf_t  *bcf;

    bcf = zone->breaker;
    b = &zone->sh->breaker;
    now = ngx_current_msec;

    *probe = 0;

    /* closed is the common case and is read without the lock */
    if (b->state != NGX_HTTP_FLASHSALE_BREAKER_OPEN
        && b->state != NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN)
    {
        return NGX_OK;
    }

    stale = ngx_max(bcf->slow * NGX_HTTP_FLASHSALE_PROBE_SLOW_FACTOR, 1000);
    rc = NGX_BUSY;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (b->state == NGX_HTTP_FLASHSALE_BREAKER_OPEN
        && (ngx_msec_int_t) (now - b->until) >= 0)
    {
        b->state = NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN;
        b->probes_ok = 0;
        ngx_memzero(b->probe, sizeof(b->probe));
    }

    if (b->state == NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN) {
        free = NGX_HTTP_FLASHSALE_PROBES_MAX;

        for (i = 0; i < bcf->half_open; i++) {
            if (b->probe[i]
                && now - (b->probe[i] - 1) > stale
                && (ngx_msec_int_t) (now - (b->probe[i] - 1)) > 0)
            {
                b->probe[i] = 0;
            }

            if (b->probe[i] == 0 && free == NGX_HTTP_FLASHSALE_PROBES_MAX) {
                free = i;
            }
        }

        if (free != NGX_HTTP_FLASHSALE_PROBES_MAX
            && b->probes_ok < bcf->half_open)
        {
            /* + 1: a start time of 0 must not read as a free slot */
            b->probe[free] = now + 1;
            *probe = free + 1;
            *stamp = b->probe[free];
            rc = NGX_OK;
        }

        *retry_after = 1;

    } else if (b->state == NGX_HTTP_FLASHSALE_BREAKER_OPEN) {
        left = (ngx_msec_int_t) (b->until - now);
        *retry_after = (ngx_uint_t) (left + 999) / 1000;

    } else {
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (*retry_after == 0) {
        *retry_after = 1;
    }

    return rc;
}


ngx_uint_t
ngx_http_flashsale_breaker_outcome(ngx_http_flashsale_zone_t *zone,
    ngx_uint_t failed, ngx_msec_t latency)
{
    if (failed || latency > zone->breaker->slow) {
        return NGX_HTTP_FLASHSALE_OUTCOME_FAILED;
    }

    return NGX_HTTP_FLASHSALE_OUTCOME_OK;
}


void
ngx_http_flashsale_breaker_report(ngx_http_flashsale_zone_t *zone,
    ngx_log_t *log, ngx_uint_t probe, ngx_msec_t stamp, ngx_uint_t outcome)
{
    time_t                              sec;
    ngx_uint_t                          i, calls, fails, from, to;
    ngx_msec_t                          now;
    ngx_http_flashsale_breaker_sh_t    *b;
    ngx_http_flashsale_breaker_conf_t  *bcf;

    bcf = zone->breaker;
    b = &zone->sh->breaker;
    now = ngx_current_msec;
    sec = ngx_time();

    from = b->state;
    calls = 0;
    fails = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (probe) {
        /* a probe from before a reopen, or one whose slot was reclaimed
         * and handed on, is not this round's probe */
        if (b->state == NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN
            && b->probe[probe - 1] == stamp)
        {
            b->probe[probe - 1] = 0;

            if (outcome == NGX_HTTP_FLASHSALE_OUTCOME_FAILED) {
                ngx_http_flashsale_breaker_trip(zone, b, now);

            } else if (outcome == NGX_HTTP_FLASHSALE_OUTCOME_OK
                       && ++b->probes_ok >= bcf->half_open)
            {
                b->state = NGX_HTTP_FLASHSALE_BREAKER_CLOSED;
                ngx_memzero(b->sec, sizeof(b->sec));
                ngx_memzero(b->calls, sizeof(b->calls));
                ngx_memzero(b->fails, sizeof(b->fails));
            }
        }

    } else if (outcome != NGX_HTTP_FLASHSALE_OUTCOME_NONE
               && b->state == NGX_HTTP_FLASHSALE_BREAKER_CLOSED)
    {
        i = sec % bcf->window;

        if (b->sec[i] != sec) {
            b->sec[i] = sec;
            b->calls[i] = 0;
            b->fails[i] = 0;
        }

        b->calls[i]++;

        if (outcome == NGX_HTTP_FLASHSALE_OUTCOME_FAILED) {
            b->fails[i]++;

            ngx_http_flashsale_breaker_window(bcf, b, sec, &calls, &fails);

            if (calls >= bcf->min_calls
                && fails * 100 >= bcf->failures * calls)
            {
                ngx_http_flashsale_breaker_trip(zone, b, now);
            }
        }
    }

    to = b->state;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (from == to) {
        return;
    }

    if (to == NGX_HTTP_FLASHSALE_BREAKER_OPEN) {
        if (from == NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "flashsale zone \"%V\": breaker open again for "
                          "%M ms: a half-open probe failed",
                          &zone->name, bcf->open);

        } else {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "flashsale zone \"%V\": breaker open for %M ms: "
                          "%ui of %ui calls failed in the last %ui s",
                          &zone->name, bcf->open, fails, calls,
                          bcf->window);
        }

    } else if (to == NGX_HTTP_FLASHSALE_BREAKER_CLOSED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "flashsale zone \"%V\": breaker closed: half-open "
                      "probes succeeded: %ui of %ui", &zone->name,
                      bcf->half_open, bcf->half_open);
    }
}


void
ngx_http_flashsale_breaker_stats(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_breaker_stats_t *st)
{
    ngx_msec_int_t                      left;
    ngx_http_flashsale_breaker_sh_t    *b;
    ngx_http_flashsale_breaker_conf_t  *bcf;

    ngx_memzero(st, sizeof(ngx_http_flashsale_breaker_stats_t));

    bcf = zone->breaker;

    if (bcf == NULL) {
        st->state = NGX_HTTP_FLASHSALE_BREAKER_OFF;
        return;
    }

    b = &zone->sh->breaker;

    ngx_shmtx_lock(&zone->shpool->mutex);

    st->state = b->state;
    st->trips = b->trips;

    ngx_http_flashsale_breaker_window(bcf, b, ngx_time(), &st->window_calls,
                                      &st->window_failures);

    left = (ngx_msec_int_t) (b->until - ngx_current_msec);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (st->state == NGX_HTTP_FLASHSALE_BREAKER_OPEN) {
        if (left <= 0) {
            /* becomes half-open with the next request */
            st->state = NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN;

        } else {
            st->retry_after = ((ngx_uint_t) left + 999) / 1000;
        }
    }
}


ngx_str_t *
ngx_http_flashsale_breaker_state_name(ngx_uint_t state)
{
    return &ngx_http_flashsale_breaker_states[state];
}


void
ngx_http_flashsale_breaker_log(ngx_http_request_t *r,
    ngx_http_flashsale_ctx_t *ctx)
{
    ngx_uint_t                  outcome, failed, tries;
    ngx_msec_t                  latency;
    ngx_http_flashsale_zone_t  *zone;

    zone = ctx->zone;

    if (ctx->reported || zone == NULL || zone->breaker == NULL) {
        return;
    }

    ctx->reported = 1;

    outcome = NGX_HTTP_FLASHSALE_OUTCOME_NONE;

    if (ctx->state == NGX_HTTP_FLASHSALE_STATE_ADMITTED
        && (zone->breaker->watch & NGX_HTTP_FLASHSALE_WATCH_UPSTREAM)
        && r->upstream != NULL)
    {
        tries = ngx_http_flashsale_breaker_upstreams(r, &failed, &latency);

        if (r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            failed = 1;
        }

        /*
         * a request that never got to try an upstream (its body could
         * not be read, a cache hit) says nothing of the store: counted
         * as a success it would close a half-open breaker on a dead one
         */
        if (failed || tries) {
            outcome = ngx_http_flashsale_breaker_outcome(zone, failed,
                                                         latency);
        }
    }

    /* a probe that touched nothing watched (a static page, a bad sku, a
     * latched SKU) gives its slot back with no verdict */
    if (outcome != NGX_HTTP_FLASHSALE_OUTCOME_NONE || ctx->probe) {
        ngx_http_flashsale_breaker_report(zone, r->connection->log,
                                          ctx->probe, ctx->probe_stamp,
                                          outcome);
    }
}


/*
 * Every upstream the request reached is judged by its last try: an
 * error_page into another location's upstream must not hide the first
 * one's 502 behind its own 200, while a try that proxy_next_upstream made
 * good on another peer is no failure.  As in $upstream_status, an entry
 * with no peer starts the next upstream.  The latency is what the shopper
 * waited for upstreams: every try, a slow peer retried included.
 */
static ngx_uint_t
ngx_http_flashsale_breaker_upstreams(ngx_http_request_t *r,
    ngx_uint_t *failed, ngx_msec_t *latency)
{
    ngx_uint_t                  i, n, tries;
    ngx_http_upstream_state_t  *st;

    *failed = 0;
    *latency = 0;

    if (r->upstream_states == NULL) {
        return 0;
    }

    st = r->upstream_states->elts;
    n = r->upstream_states->nelts;
    tries = 0;

    for (i = 0; i < n; i++) {

        if (st[i].peer != NULL) {
            tries++;
        }

        if (st[i].response_time != (ngx_msec_t) -1) {
            *latency += st[i].response_time;
        }

        if (i + 1 < n && st[i + 1].peer != NULL) {
            continue;
        }

        if (st[i].status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
            *failed = 1;
        }
    }

    return tries;
}


static void
ngx_http_flashsale_breaker_trip(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_breaker_sh_t *b, ngx_msec_t now)
{
    b->state = NGX_HTTP_FLASHSALE_BREAKER_OPEN;
    b->until = now + zone->breaker->open;
    b->trips++;
    b->probes_ok = 0;
    ngx_memzero(b->probe, sizeof(b->probe));
}


static void
ngx_http_flashsale_breaker_window(ngx_http_flashsale_breaker_conf_t *bcf,
    ngx_http_flashsale_breaker_sh_t *b, time_t now, ngx_uint_t *calls,
    ngx_uint_t *fails)
{
    ngx_uint_t  i;

    *calls = 0;
    *fails = 0;

    for (i = 0; i < bcf->window; i++) {
        if (now - b->sec[i] < (time_t) bcf->window) {
            *calls += b->calls[i];
            *fails += b->fails[i];
        }
    }
}
