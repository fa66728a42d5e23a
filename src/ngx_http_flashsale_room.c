
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include "ngx_http_flashsale_room.h"
#include "ngx_http_flashsale_token.h"
#include "ngx_http_flashsale_page.h"
#include "ngx_http_flashsale_reserve.h"


static void ngx_http_flashsale_room_advance(ngx_http_flashsale_zone_t *zone,
    ngx_msec_t now);
static void ngx_http_flashsale_room_sample(ngx_http_flashsale_zone_t *zone);


ngx_int_t
ngx_http_flashsale_room_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_flashsale_zone_t  *ozone = data;

    size_t                      len, size;
    ngx_http_flashsale_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* a reload with the same name and size: the queue goes on */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_alloc(zone->shpool, sizeof(ngx_http_flashsale_sh_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_memzero(zone->sh, sizeof(ngx_http_flashsale_sh_t));

    ngx_http_flashsale_latch_init(zone);

    /* sized with the zone: a big sale has many holders to tell apart */
    for (size = 4096;
         size * 2 <= shm_zone->shm.size / 8
         && size * 2 <= NGX_HTTP_FLASHSALE_HOLDERS_MAX;
         size *= 2)
    { /* void */ }

    zone->sh->holders = ngx_slab_calloc(zone->shpool, size);
    if (zone->sh->holders == NULL) {
        return NGX_ERROR;
    }

    zone->sh->holders_mask = (uint32_t) (size * 8 - 1);

    zone->sh->breaker.state = NGX_HTTP_FLASHSALE_BREAKER_CLOSED;
    zone->sh->last = ngx_current_msec;
    zone->sh->started = ngx_time();

    /* a new zone starts as after a quiet period: burst + 1 admissions;
     * a paused one admits nobody, so it starts with nobody ahead */
    zone->sh->watermark = zone->rate ? (uint64_t) (1 + zone->burst)
                                       * NGX_HTTP_FLASHSALE_WM_ONE
                                     : 0;

    len = sizeof(" in flashsale zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in flashsale zone \"%V\"%Z",
                &shm_zone->shm.name);

    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


time_t
ngx_http_flashsale_room_started(ngx_http_flashsale_zone_t *zone)
{
    /* written once when the zone is created, never changed after */
    return zone->sh->started;
}


void
ngx_http_flashsale_room_enter(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_entry_t *e)
{
    uint64_t                  wm, front;
    ngx_msec_t                now;
    ngx_http_flashsale_sh_t  *sh;

    sh = zone->sh;
    now = ngx_current_msec;

    e->issued = 0;
    e->admitted = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_flashsale_room_advance(zone, now);
    ngx_http_flashsale_room_sample(zone);

    if (e->ticket == 0 || e->ticket > sh->tickets) {
        e->ticket = ++sh->tickets;
        e->issued = 1;
    }

    wm = sh->watermark;

    if (zone->rate && e->ticket * NGX_HTTP_FLASHSALE_WM_ONE <= wm) {
        e->admitted = 1;
        sh->admitted++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (e->admitted) {
        e->position = 0;
        e->eta = 0;
        return;
    }

    /* a ticket under the watermark of a paused zone is at the front */
    front = wm / NGX_HTTP_FLASHSALE_WM_ONE;
    e->position = e->ticket > front ? e->ticket - front : 1;
    e->eta = ngx_http_flashsale_room_eta(e->ticket, wm, zone->rate);
}


void
ngx_http_flashsale_room_stats(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_room_stats_t *st)
{
    uint64_t                  wm, front;
    ngx_http_flashsale_sh_t  *sh;

    sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* advancing is a pure function of time, so reading may do it too */
    ngx_http_flashsale_room_advance(zone, ngx_current_msec);
    ngx_http_flashsale_room_sample(zone);

    st->tickets = sh->tickets;
    st->admitted = sh->admitted;
    wm = sh->watermark;

    st->shm_used = zone->shm_zone->shm.size
                   - zone->shpool->pfree * ngx_pagesize;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    /* atomics: read without the lock, each value whole */
    st->counters = sh->stats;

    front = wm / NGX_HTTP_FLASHSALE_WM_ONE;

    st->rate = zone->rate;
    st->burst = zone->burst;
    st->session = zone->session;
    st->shm_size = zone->shm_zone->shm.size;
    st->waiting = st->tickets > front ? st->tickets - front : 0;
    st->eta_new = ngx_http_flashsale_room_eta(st->tickets + 1, wm,
                                              zone->rate);
}


ngx_uint_t
ngx_http_flashsale_room_history(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_sample_t *out)
{
    ngx_uint_t                i, n, k;
    ngx_http_flashsale_sh_t  *sh;

    sh = zone->sh;
    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* oldest first */
    for (i = 0; i < NGX_HTTP_FLASHSALE_SAMPLES; i++) {
        k = (sh->sample_next + i) % NGX_HTTP_FLASHSALE_SAMPLES;

        if (sh->samples[k].time) {
            out[n++] = sh->samples[k];
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}


ngx_int_t
ngx_http_flashsale_room_eta(uint64_t ticket, uint64_t watermark,
    ngx_uint_t rate)
{
    uint64_t  need, ms;

    if (rate == 0) {
        return -1;
    }

    if (ticket * NGX_HTTP_FLASHSALE_WM_ONE <= watermark) {
        return 0;
    }

    need = ticket * NGX_HTTP_FLASHSALE_WM_ONE - watermark;

    /* billionths over millionths per second gives milliseconds */
    ms = (need + rate - 1) / rate;

    return (ngx_int_t) ((ms + 999) / 1000);
}


/* called under the lock; a sample at most every few seconds, taken by
 * whichever request or status poll comes first */
static void
ngx_http_flashsale_room_sample(ngx_http_flashsale_zone_t *zone)
{
    time_t                        now;
    uint64_t                      front;
    ngx_http_flashsale_sh_t      *sh;
    ngx_http_flashsale_sample_t  *last, *s;

    sh = zone->sh;
    now = ngx_time();

    last = &sh->samples[(sh->sample_next + NGX_HTTP_FLASHSALE_SAMPLES - 1)
                        % NGX_HTTP_FLASHSALE_SAMPLES];

    if (now - last->time < NGX_HTTP_FLASHSALE_SAMPLE_EVERY) {
        return;
    }

    s = &sh->samples[sh->sample_next];
    sh->sample_next = (sh->sample_next + 1) % NGX_HTTP_FLASHSALE_SAMPLES;

    front = sh->watermark / NGX_HTTP_FLASHSALE_WM_ONE;

    s->time = now;
    s->tickets = (uint32_t) sh->tickets;
    s->admitted = (uint32_t) sh->admitted;
    s->waiting = sh->tickets > front ? (uint32_t) (sh->tickets - front) : 0;
    s->reserved = (uint32_t) sh->stats.reserved;
    s->sold_out = (uint32_t) sh->stats.sold_out;
    s->errors = (uint32_t) sh->stats.errors;
}


static void
ngx_http_flashsale_room_advance(ngx_http_flashsale_zone_t *zone,
    ngx_msec_t now)
{
    uint64_t                  cap, add;
    ngx_msec_int_t            elapsed;
    ngx_http_flashsale_sh_t  *sh;

    sh = zone->sh;

    /* workers cache the time separately; one may be a little behind */
    elapsed = (ngx_msec_int_t) (now - sh->last);
    if (elapsed <= 0) {
        return;
    }

    sh->last = now;

    cap = (sh->tickets + 1 + zone->burst) * NGX_HTTP_FLASHSALE_WM_ONE;

    if (sh->watermark >= cap) {
        /* a reload that lowered burst takes back the admissions nobody
         * holds a ticket for yet, or they would all go at once */
        sh->watermark = cap;
        return;
    }

    if (zone->rate == 0) {
        return;
    }

    /* compared before multiplying: a long quiet spell must not wrap */
    if ((uint64_t) elapsed >= (cap - sh->watermark) / zone->rate + 1) {
        sh->watermark = cap;
        return;
    }

    add = (uint64_t) zone->rate * (uint64_t) elapsed;

    sh->watermark = ngx_min(sh->watermark + add, cap);
}


ngx_int_t
ngx_http_flashsale_room_handler(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_ctx_t *ctx)
{
    time_t                       now, max_age;
    ngx_int_t                    rc;
    ngx_http_flashsale_zone_t   *zone;
    ngx_http_flashsale_entry_t   e;
    ngx_http_flashsale_claims_t  claims;

    zone = lcf->zone;
    now = ngx_time();

    rc = ngx_http_flashsale_token_read(r, lcf, &zone->name, &claims,
                                       ctx->visitor_data);

    if (rc == NGX_OK && claims.admitted) {
        ctx->state = NGX_HTTP_FLASHSALE_STATE_ADMITTED;
        ctx->visitor = claims.visitor;
        ctx->ticket = claims.ticket;
        return NGX_DECLINED;
    }

    e.ticket = 0;

    /* a ticket from before this zone existed numbers another queue */
    if (rc == NGX_OK
        && claims.iat >= ngx_http_flashsale_room_started(zone)
                         - NGX_HTTP_FLASHSALE_LEEWAY)
    {
        e.ticket = claims.ticket;

    } else {
        ngx_http_flashsale_visitor_new(ctx->visitor_data);
        claims.visitor.data = ctx->visitor_data;
        claims.visitor.len = NGX_HTTP_FLASHSALE_VISITOR_LEN;
        claims.exp = 0;
    }

    ngx_http_flashsale_room_enter(zone, &e);

    if (e.issued) {
        claims.iat = now;
        claims.exp = 0;
        claims.start = e.position;
    }

    ctx->visitor = claims.visitor;
    ctx->ticket = e.ticket;
    ctx->position = e.position;
    ctx->eta = e.eta;

    if (claims.start > e.position) {
        ctx->progress = (claims.start - e.position) * 100 / claims.start;
    }

    claims.ticket = e.ticket;
    claims.admitted = e.admitted;

    if (e.admitted) {
        ctx->state = NGX_HTTP_FLASHSALE_STATE_ADMITTED;
        claims.iat = now;
        claims.exp = now + zone->session;
        max_age = zone->session;

    } else {
        ctx->state = NGX_HTTP_FLASHSALE_STATE_WAITING;
        max_age = NGX_HTTP_FLASHSALE_TICKET_TTL;

        /* a ticket is signed again only when half its life is gone, so
         * most returning waiters cost no signature at all */
        if (claims.exp - now < NGX_HTTP_FLASHSALE_TICKET_TTL / 2) {
            claims.exp = now + NGX_HTTP_FLASHSALE_TICKET_TTL;

        } else {
            /* API clients read their place from the body every time */
            max_age = 0;
            ctx->token = claims.raw;
        }
    }

    if (max_age) {
        if (ngx_http_flashsale_token_issue(r, lcf, &zone->name, &claims,
                                           &ctx->token)
            != NGX_OK
            || ngx_http_flashsale_token_cookie(r, lcf->cookie, &ctx->token,
                                               max_age, &ctx->set_cookie)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (e.admitted) {
        return NGX_DECLINED;
    }

    if (e.eta < 0) {
        ctx->retry_after = NGX_HTTP_FLASHSALE_RETRY_MAX;

    } else {
        ctx->retry_after = ngx_min(ngx_max((ngx_uint_t) e.eta, 1),
                                   NGX_HTTP_FLASHSALE_RETRY_MAX);
    }

    rc = ngx_http_flashsale_page_waiting(r, lcf, ctx);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}
