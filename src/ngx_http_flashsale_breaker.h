
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * The circuit breaker of a zone: outcomes of Redis calls and upstream
 * responses in a sliding window of one-second buckets in shared memory.
 */


#ifndef _NGX_HTTP_FLASHSALE_BREAKER_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_BREAKER_H_INCLUDED_


#include "ngx_http_flashsale.h"


#define NGX_HTTP_FLASHSALE_BREAKER_OFF        0
#define NGX_HTTP_FLASHSALE_BREAKER_CLOSED     1
#define NGX_HTTP_FLASHSALE_BREAKER_OPEN       2
#define NGX_HTTP_FLASHSALE_BREAKER_HALF_OPEN  3

#define NGX_HTTP_FLASHSALE_WATCH_REDIS        1
#define NGX_HTTP_FLASHSALE_WATCH_UPSTREAM     2

#define NGX_HTTP_FLASHSALE_WINDOW_MAX         60
#define NGX_HTTP_FLASHSALE_PROBES_MAX         32

#define NGX_HTTP_FLASHSALE_OUTCOME_OK         0
#define NGX_HTTP_FLASHSALE_OUTCOME_FAILED     1
#define NGX_HTTP_FLASHSALE_OUTCOME_NONE       2   /* a probe that saw nothing */


struct ngx_http_flashsale_breaker_conf_s {
    ngx_uint_t                    failures;    /* percent */
    ngx_uint_t                    window;      /* seconds */
    ngx_uint_t                    min_calls;
    ngx_msec_t                    slow;
    ngx_msec_t                    open;
    ngx_uint_t                    half_open;
    ngx_uint_t                    watch;
};


typedef struct {
    ngx_uint_t                    state;
    ngx_msec_t                    until;       /* open: half-open from */
    ngx_uint_t                    trips;
    ngx_uint_t                    probes_ok;
    ngx_msec_t                    probe[NGX_HTTP_FLASHSALE_PROBES_MAX];
    time_t                        sec[NGX_HTTP_FLASHSALE_WINDOW_MAX];
    uint32_t                      calls[NGX_HTTP_FLASHSALE_WINDOW_MAX];
    uint32_t                      fails[NGX_HTTP_FLASHSALE_WINDOW_MAX];
} ngx_http_flashsale_breaker_sh_t;


typedef struct {
    ngx_uint_t                    state;
    ngx_uint_t                    window_calls;
    ngx_uint_t                    window_failures;
    ngx_uint_t                    trips;
    ngx_uint_t                    retry_after;
} ngx_http_flashsale_breaker_stats_t;


char *ngx_http_flashsale_breaker_conf(ngx_conf_t *cf,
    ngx_http_flashsale_breaker_conf_t **bcf);
char *ngx_http_flashsale_breaker_zone(ngx_conf_t *cf,
    ngx_http_flashsale_zone_t *zone, ngx_http_flashsale_breaker_conf_t *bcf);
ngx_int_t ngx_http_flashsale_breaker_enter(ngx_http_flashsale_zone_t *zone,
    ngx_uint_t *probe, ngx_msec_t *stamp, ngx_uint_t *retry_after);
void ngx_http_flashsale_breaker_report(ngx_http_flashsale_zone_t *zone,
    ngx_log_t *log, ngx_uint_t probe, ngx_msec_t stamp, ngx_uint_t outcome);
ngx_uint_t ngx_http_flashsale_breaker_outcome(ngx_http_flashsale_zone_t *zone,
    ngx_uint_t failed, ngx_msec_t latency);
void ngx_http_flashsale_breaker_stats(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_breaker_stats_t *st);
ngx_str_t *ngx_http_flashsale_breaker_state_name(ngx_uint_t state);
void ngx_http_flashsale_breaker_log(ngx_http_request_t *r,
    ngx_http_flashsale_ctx_t *ctx);


#endif /* _NGX_HTTP_FLASHSALE_BREAKER_H_INCLUDED_ */
