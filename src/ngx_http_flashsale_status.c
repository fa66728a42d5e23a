
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include "ngx_http_flashsale_status.h"
#include "ngx_http_flashsale_room.h"


/* the longest one zone can print, with every number at its widest */
#define NGX_HTTP_FLASHSALE_STATUS_ZONE_LEN                                    \
    (sizeof("{\"zone\":\"\",\"rate\":.,\"burst\":,\"session\":,"              \
            "\"tickets_issued\":,\"admitted\":,\"waiting\":,\"eta_new\":,"    \
            "\"reservations\":{\"reserved\":,\"sold_out\":,\"released\":,"    \
            "\"confirmed\":,\"errors\":,\"bad_requests\":},"                  \
            "\"redis\":{\"calls\":,\"errors\":,\"timeouts\":,"                \
            "\"latency_ms_avg\":.},"                                         \
            "\"shm\":{\"size\":,\"used\":}},")                                \
     + 4 * NGX_INT_T_LEN + 3 + 3 * NGX_INT64_LEN + 2 * NGX_SIZE_T_LEN      \
     + 10 * NGX_ATOMIC_T_LEN + 3)


static u_char *ngx_http_flashsale_status_json(u_char *p,
    ngx_http_flashsale_zone_t *zone, ngx_http_flashsale_room_stats_t *st);


ngx_int_t
ngx_http_flashsale_status_handler(ngx_http_request_t *r)
{
    size_t                            len;
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_uint_t                        i;
    ngx_chain_t                       out;
    ngx_table_elt_t                  *h;
    ngx_http_flashsale_zone_t       **zones;
    ngx_http_flashsale_room_stats_t   st;
    ngx_http_flashsale_main_conf_t   *fmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    fmcf = ngx_http_get_module_main_conf(r, ngx_http_flashsale_module);
    zones = fmcf->zones.elts;

    len = sizeof("{\"zones\":[]}\n") - 1;

    for (i = 0; i < fmcf->zones.nelts; i++) {
        len += NGX_HTTP_FLASHSALE_STATUS_ZONE_LEN + zones[i]->name.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{\"zones\":[", sizeof("{\"zones\":[") - 1);

    for (i = 0; i < fmcf->zones.nelts; i++) {
        if (zones[i]->sh == NULL) {
            continue;
        }

        ngx_http_flashsale_room_stats(zones[i], &st);

        if (b->last[-1] == '}') {
            *b->last++ = ',';
        }

        b->last = ngx_http_flashsale_status_json(b->last, zones[i], &st);
    }

    b->last = ngx_cpymem(b->last, "]}\n", 3);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_flashsale_status_json(u_char *p, ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_room_stats_t *st)
{
    ngx_atomic_uint_t            avg;
    ngx_http_flashsale_stats_t  *c;

    p = ngx_sprintf(p, "{\"zone\":\"%V\",\"rate\":%ui.%03ui,\"burst\":%ui,"
                    "\"session\":%T,\"tickets_issued\":%uL,\"admitted\":%uL,"
                    "\"waiting\":%uL,\"eta_new\":",
                    &zone->name, st->rate / 1000, st->rate % 1000, st->burst,
                    st->session, st->tickets, st->admitted, st->waiting);

    if (st->eta_new < 0) {
        p = ngx_cpymem(p, "null", 4);

    } else {
        p = ngx_sprintf(p, "%i", st->eta_new);
    }

    c = &st->counters;

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

    return ngx_sprintf(p, ",\"shm\":{\"size\":%uz,\"used\":%uz}}",
                       st->shm_size, st->shm_used);
}
