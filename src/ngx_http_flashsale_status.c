
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include "ngx_http_flashsale_status.h"
#include "ngx_http_flashsale_room.h"
#include "ngx_http_flashsale_breaker.h"
#include "ngx_http_flashsale_reserve.h"
#include "ngx_http_flashsale_dashboard.h"
#include "ngx_http_flashsale_page.h"


/* sold-out SKUs listed per zone; Prometheus counts them all */
#define NGX_HTTP_FLASHSALE_STATUS_SKUS  100
#define NGX_HTTP_FLASHSALE_SKU_LEN      64


#define NGX_HTTP_FLASHSALE_STATUS_HTML  2


typedef struct {
    ngx_http_flashsale_zone_t           *zone;
    ngx_http_flashsale_room_stats_t      room;
    ngx_http_flashsale_breaker_stats_t   breaker;
    ngx_uint_t                           nskus;
    ngx_uint_t                           skus_total;
    ngx_str_t                            skus[NGX_HTTP_FLASHSALE_STATUS_SKUS];
    ngx_int_t                            sku_holders[
                                             NGX_HTTP_FLASHSALE_STATUS_SKUS];
    u_char                               sku_data[NGX_HTTP_FLASHSALE_STATUS_SKUS
                                                  * NGX_HTTP_FLASHSALE_SKU_LEN];
    ngx_uint_t                           nsamples;
    ngx_http_flashsale_sample_t          samples[NGX_HTTP_FLASHSALE_SAMPLES];
} ngx_http_flashsale_snapshot_t;


/* the longest one zone can print as JSON, every number at its widest */
#define NGX_HTTP_FLASHSALE_JSON_ZONE_LEN                                      \
    (sizeof("{\"zone\":\"\",\"rate\":.,\"burst\":,\"session\":,"              \
            "\"tickets_issued\":,\"admitted\":,\"waiting\":,\"eta_new\":,"    \
            "\"breaker\":{\"state\":\"half_open\",\"window_calls\":,"         \
            "\"window_failures\":,\"trips\":,\"retry_after\":},"              \
            "\"reservations\":{\"reserved\":,\"sold_out\":,\"released\":,"    \
            "\"confirmed\":,\"errors\":,\"bad_requests\":},"                  \
            "\"redis\":{\"calls\":,\"errors\":,\"timeouts\":,"                \
            "\"latency_ms_avg\":.},\"sold_out_skus\":[],"                     \
            "\"sold_out_holders\":{},\"shm\":{\"size\":,\"used\":}},")       \
     + 8 * NGX_INT_T_LEN + 3 + 3 * NGX_INT64_LEN + 2 * NGX_SIZE_T_LEN      \
     + 10 * NGX_ATOMIC_T_LEN + 3                                           \
     + NGX_HTTP_FLASHSALE_STATUS_SKUS * (NGX_HTTP_FLASHSALE_SKU_LEN + 3)   \
     + NGX_HTTP_FLASHSALE_STATUS_SKUS * (NGX_HTTP_FLASHSALE_SKU_LEN + 4    \
                                         + NGX_INT_T_LEN)                  \
     + sizeof(",\"history\":[]")                                           \
     + NGX_HTTP_FLASHSALE_SAMPLES * (sizeof("[,,,,,,],") + NGX_TIME_T_LEN   \
                                     + 6 * NGX_INT32_LEN))


static ngx_uint_t ngx_http_flashsale_status_format(ngx_http_request_t *r);
static ngx_int_t ngx_http_flashsale_status_dashboard(ngx_http_request_t *r);
static u_char *ngx_http_flashsale_status_json(u_char *p,
    ngx_http_flashsale_snapshot_t *s, ngx_uint_t history);
static size_t ngx_http_flashsale_status_prometheus_len(
    ngx_http_flashsale_snapshot_t *s, ngx_uint_t n);
static u_char *ngx_http_flashsale_status_prometheus(u_char *p,
    ngx_http_flashsale_snapshot_t *s, ngx_uint_t n);


typedef struct {
    const char                  *name;
    const char                  *type;
    const char                  *help;
} ngx_http_flashsale_metric_t;


static ngx_http_flashsale_metric_t  ngx_http_flashsale_metrics[] = {
    { "rate", "gauge", "Admissions per second set for the zone" },
    { "burst", "gauge", "Admissions allowed ahead of the rate" },
    { "tickets_issued_total", "counter", "Queue tickets issued" },
    { "admitted_total", "counter", "Passes granted" },
    { "waiting", "gauge", "Tickets issued but not yet admitted" },
    { "eta_new_seconds", "gauge",
      "Estimated wait for a new arrival (-1 when paused)" },
    { "breaker_state", "gauge",
      "Breaker state: 0 off, 1 closed, 2 open, 3 half_open" },
    { "breaker_window_calls", "gauge", "Calls in the breaker window" },
    { "breaker_window_failures", "gauge", "Failures in the breaker window" },
    { "breaker_trips_total", "counter", "Times the breaker opened" },
    { "reserved_total", "counter", "Reservations made" },
    { "sold_out_total", "counter", "Sold-out answers" },
    { "released_total", "counter", "Holds released by the back end" },
    { "confirmed_total", "counter", "Holds confirmed by the back end" },
    { "reservation_errors_total", "counter",
      "Reservations answered with the retry page" },
    { "bad_requests_total", "counter", "Malformed sku or qty" },
    { "redis_calls_total", "counter", "Redis script calls answered" },
    { "redis_errors_total", "counter", "Redis errors and lost connections" },
    { "redis_timeouts_total", "counter", "Redis calls that timed out" },
    { "redis_latency_ms_avg", "gauge", "Average Redis call latency" },
    { "sold_out_skus", "gauge", "SKUs latched as sold out" },
    { "shm_size_bytes", "gauge", "Size of the zone's shared memory" },
    { "shm_used_bytes", "gauge", "Shared memory in use" },
    { NULL, NULL, NULL }
};


ngx_int_t
ngx_http_flashsale_status_handler(ngx_http_request_t *r)
{
    size_t                            len;
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_str_t                         arg, type, body;
    ngx_uint_t                        i, format, history;
    ngx_http_flashsale_zone_t       **zones;
    ngx_http_flashsale_snapshot_t    *snap;
    ngx_http_flashsale_main_conf_t   *fmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    format = ngx_http_flashsale_status_format(r);

    if (format == NGX_HTTP_FLASHSALE_STATUS_HTML) {
        return ngx_http_flashsale_status_dashboard(r);
    }

    history = (ngx_http_arg(r, (u_char *) "history", 7, &arg) == NGX_OK
               && arg.len == 1 && arg.data[0] == '1');

    fmcf = ngx_http_get_module_main_conf(r, ngx_http_flashsale_module);
    zones = fmcf->zones.elts;

    snap = ngx_palloc(r->pool, (fmcf->zones.nelts + 1)
                               * sizeof(ngx_http_flashsale_snapshot_t));
    if (snap == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* one snapshot per zone, each part taken under the zone's lock */
    for (i = 0; i < fmcf->zones.nelts; i++) {
        snap[i].zone = zones[i];
        ngx_http_flashsale_room_stats(zones[i], &snap[i].room);
        ngx_http_flashsale_breaker_stats(zones[i], &snap[i].breaker);
        snap[i].nskus = ngx_http_flashsale_latch_list(zones[i], snap[i].skus,
                                           snap[i].sku_holders,
                                           snap[i].sku_data,
                                           NGX_HTTP_FLASHSALE_STATUS_SKUS,
                                           &snap[i].skus_total);
        snap[i].nsamples = history
                           ? ngx_http_flashsale_room_history(zones[i],
                                                             snap[i].samples)
                           : 0;
    }

    if (format == NGX_HTTP_FLASHSALE_STATUS_PROMETHEUS) {
        len = ngx_http_flashsale_status_prometheus_len(snap,
                                                       fmcf->zones.nelts);

    } else {
        len = sizeof("{\"zones\":[]}\n") - 1;

        for (i = 0; i < fmcf->zones.nelts; i++) {
            len += NGX_HTTP_FLASHSALE_JSON_ZONE_LEN + zones[i]->name.len;
        }
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (format == NGX_HTTP_FLASHSALE_STATUS_PROMETHEUS) {
        b->last = ngx_http_flashsale_status_prometheus(b->last, snap,
                                                       fmcf->zones.nelts);
        ngx_str_set(&type, "text/plain; version=0.0.4; charset=utf-8");

    } else {
        b->last = ngx_cpymem(b->last, "{\"zones\":[", 10);

        for (i = 0; i < fmcf->zones.nelts; i++) {
            if (i) {
                *b->last++ = ',';
            }

            b->last = ngx_http_flashsale_status_json(b->last, &snap[i],
                                                     history);
        }

        b->last = ngx_cpymem(b->last, "]}\n", 3);
        ngx_str_set(&type, "application/json");
    }

    body.data = b->pos;
    body.len = b->last - b->pos;

    return ngx_http_flashsale_page_send(r, NGX_HTTP_OK, &type, &body, 0, 0);
}


static ngx_uint_t
ngx_http_flashsale_status_format(ngx_http_request_t *r)
{
    ngx_str_t                       format;
    ngx_table_elt_t                *h;
    ngx_http_flashsale_loc_conf_t  *lcf;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        if (format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            return NGX_HTTP_FLASHSALE_STATUS_PROMETHEUS;
        }

        if (format.len == 4 && ngx_strncmp(format.data, "json", 4) == 0) {
            return NGX_HTTP_FLASHSALE_STATUS_JSON;
        }

        if (format.len == 4 && ngx_strncmp(format.data, "html", 4) == 0) {
            return NGX_HTTP_FLASHSALE_STATUS_HTML;
        }
    }

#if (NGX_HTTP_HEADERS)
    h = r->headers_in.accept;
#else
    h = NULL;
#endif

    /* a browser gets the dashboard; scrapers and scripts do not ask
     * for text/html */
    if (h && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                              (u_char *) "text/html", sizeof("text/html") - 2)
             != NULL)
    {
        return NGX_HTTP_FLASHSALE_STATUS_HTML;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_flashsale_module);

    return lcf->status_format;
}


static ngx_int_t
ngx_http_flashsale_status_dashboard(ngx_http_request_t *r)
{
    ngx_str_t  body;

    static ngx_str_t  type = ngx_string("text/html; charset=utf-8");

    body.data = (u_char *) ngx_http_flashsale_dashboard;
    body.len = sizeof(ngx_http_flashsale_dashboard) - 1;

    return ngx_http_flashsale_page_send(r, NGX_HTTP_OK, &type, &body, 0, 0);
}


static u_char *
ngx_http_flashsale_status_json(u_char *p, ngx_http_flashsale_snapshot_t *s,
    ngx_uint_t history)
{
    ngx_http_flashsale_sample_t         *h;
    ngx_uint_t                           i;
    ngx_atomic_uint_t                    avg;
    ngx_http_flashsale_stats_t          *c;
    ngx_http_flashsale_room_stats_t     *st;
    ngx_http_flashsale_breaker_stats_t  *bs;

    st = &s->room;
    bs = &s->breaker;
    c = &st->counters;

    p = ngx_sprintf(p, "{\"zone\":\"%V\",\"rate\":%ui.%03ui,\"burst\":%ui,"
                    "\"session\":%T,\"tickets_issued\":%uL,\"admitted\":%uL,"
                    "\"waiting\":%uL,\"eta_new\":",
                    &s->zone->name, st->rate / NGX_HTTP_FLASHSALE_RATE_ONE,
                    st->rate % NGX_HTTP_FLASHSALE_RATE_ONE / 1000,
                    st->burst, st->session, st->tickets, st->admitted,
                    st->waiting);

    if (st->eta_new < 0) {
        p = ngx_cpymem(p, "null", 4);

    } else {
        p = ngx_sprintf(p, "%i", st->eta_new);
    }

    p = ngx_sprintf(p, ",\"breaker\":{\"state\":\"%V\",\"window_calls\":%ui,"
                    "\"window_failures\":%ui,\"trips\":%ui,"
                    "\"retry_after\":%ui}",
                    ngx_http_flashsale_breaker_state_name(bs->state),
                    bs->window_calls, bs->window_failures, bs->trips,
                    bs->retry_after);

    p = ngx_sprintf(p, ",\"reservations\":{\"reserved\":%uA,\"sold_out\":%uA,"
                    "\"released\":%uA,\"confirmed\":%uA,\"errors\":%uA,"
                    "\"bad_requests\":%uA}",
                    c->reserved, c->sold_out, c->released, c->confirmed,
                    c->errors, c->bad_requests);

    /* thousandths of a millisecond, printed as a decimal */
    avg = c->redis_calls ? c->redis_latency_ms * 1000 / c->redis_calls : 0;

    p = ngx_sprintf(p, ",\"redis\":{\"calls\":%uA,\"errors\":%uA,"
                    "\"timeouts\":%uA,\"latency_ms_avg\":%uA.%03uA}",
                    c->redis_calls, c->redis_errors, c->redis_timeouts,
                    avg / 1000, avg % 1000);

    p = ngx_cpymem(p, ",\"sold_out_skus\":[",
                   sizeof(",\"sold_out_skus\":[") - 1);

    for (i = 0; i < s->nskus; i++) {
        p = ngx_sprintf(p, "%s\"%V\"", i ? "," : "", &s->skus[i]);
    }

    /* the holders each latch knows; null: the holders filter decides */
    p = ngx_cpymem(p, "],\"sold_out_holders\":{",
                   sizeof("],\"sold_out_holders\":{") - 1);

    for (i = 0; i < s->nskus; i++) {
        p = ngx_sprintf(p, "%s\"%V\":", i ? "," : "", &s->skus[i]);

        if (s->sku_holders[i] < 0) {
            p = ngx_cpymem(p, "null", 4);

        } else {
            p = ngx_sprintf(p, "%i", s->sku_holders[i]);
        }
    }

    p = ngx_sprintf(p, "},\"shm\":{\"size\":%uz,\"used\":%uz}",
                    st->shm_size, st->shm_used);

    if (history) {
        /* [time, tickets, admitted, waiting, reserved, sold_out, errors] */
        p = ngx_cpymem(p, ",\"history\":[", sizeof(",\"history\":[") - 1);

        for (i = 0; i < s->nsamples; i++) {
            h = &s->samples[i];
            p = ngx_sprintf(p, "%s[%T,%uD,%uD,%uD,%uD,%uD,%uD]", i ? "," : "",
                            h->time, h->tickets, h->admitted, h->waiting,
                            h->reserved, h->sold_out, h->errors);
        }

        *p++ = ']';
    }

    *p++ = '}';

    return p;
}


static size_t
ngx_http_flashsale_status_prometheus_len(ngx_http_flashsale_snapshot_t *s,
    ngx_uint_t n)
{
    size_t                        len;
    ngx_uint_t                    i;
    ngx_http_flashsale_metric_t  *m;

    len = 0;

    for (m = ngx_http_flashsale_metrics; m->name; m++) {
        len += sizeof("# HELP flashsale_ \n# TYPE flashsale_  \n") - 1
               + 2 * ngx_strlen(m->name) + ngx_strlen(m->help)
               + ngx_strlen(m->type);

        for (i = 0; i < n; i++) {
            len += sizeof("flashsale_{zone=\"\"} \n") - 1
                   + ngx_strlen(m->name) + s[i].zone->name.len
                   + NGX_INT64_LEN + 4;
        }
    }

    return len;
}


static u_char *
ngx_http_flashsale_status_prometheus(u_char *p,
    ngx_http_flashsale_snapshot_t *s, ngx_uint_t n)
{
    int64_t                       v[32];
    ngx_uint_t                    i, k;
    ngx_atomic_uint_t             avg;
    ngx_http_flashsale_stats_t   *c;
    ngx_http_flashsale_metric_t  *m;

    for (k = 0, m = ngx_http_flashsale_metrics; m->name; k++, m++) {

        p = ngx_sprintf(p, "# HELP flashsale_%s %s\n# TYPE flashsale_%s %s\n",
                        m->name, m->help, m->name, m->type);

        for (i = 0; i < n; i++) {
            c = &s[i].room.counters;
            avg = c->redis_calls
                  ? c->redis_latency_ms * 1000 / c->redis_calls : 0;

            /* the order of ngx_http_flashsale_metrics[]; values in
             * thousandths where a fraction is shown */
            v[0] = s[i].room.rate / 1000;
            v[1] = s[i].room.burst;
            v[2] = s[i].room.tickets;
            v[3] = s[i].room.admitted;
            v[4] = s[i].room.waiting;
            v[5] = s[i].room.eta_new;
            v[6] = s[i].breaker.state;
            v[7] = s[i].breaker.window_calls;
            v[8] = s[i].breaker.window_failures;
            v[9] = s[i].breaker.trips;
            v[10] = c->reserved;
            v[11] = c->sold_out;
            v[12] = c->released;
            v[13] = c->confirmed;
            v[14] = c->errors;
            v[15] = c->bad_requests;
            v[16] = c->redis_calls;
            v[17] = c->redis_errors;
            v[18] = c->redis_timeouts;
            v[19] = avg;
            v[20] = s[i].skus_total;
            v[21] = s[i].room.shm_size;
            v[22] = s[i].room.shm_used;

            p = ngx_sprintf(p, "flashsale_%s{zone=\"%V\"} ", m->name,
                            &s[i].zone->name);

            if (k == 0 || k == 19) {
                p = ngx_sprintf(p, "%L.%03L\n", v[k] / 1000, v[k] % 1000);

            } else {
                p = ngx_sprintf(p, "%L\n", v[k]);
            }
        }
    }

    return p;
}
