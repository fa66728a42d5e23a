
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * Types shared by every part of the module: the configuration and the
 * per-request context.  Each concern's own header declares its functions.
 */


#ifndef _NGX_HTTP_FLASHSALE_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_FLASHSALE_STATE_NONE      0
#define NGX_HTTP_FLASHSALE_STATE_ADMITTED  1
#define NGX_HTTP_FLASHSALE_STATE_WAITING   2
#define NGX_HTTP_FLASHSALE_STATE_SOLD_OUT  3
#define NGX_HTTP_FLASHSALE_STATE_RETRY     4

#define NGX_HTTP_FLASHSALE_STATUS_JSON        0
#define NGX_HTTP_FLASHSALE_STATUS_PROMETHEUS  1

#define NGX_HTTP_FLASHSALE_PAGE_WAITING    0
#define NGX_HTTP_FLASHSALE_PAGE_SOLD_OUT   1
#define NGX_HTTP_FLASHSALE_PAGE_RETRY      2
#define NGX_HTTP_FLASHSALE_PAGE_N          3

/* visitor ids are 16 random bytes written as lowercase hex */
#define NGX_HTTP_FLASHSALE_VISITOR_LEN     32
#define NGX_HTTP_FLASHSALE_VISITOR_MAX     64


typedef struct ngx_http_flashsale_zone_s       ngx_http_flashsale_zone_t;
typedef struct ngx_http_flashsale_page_s       ngx_http_flashsale_page_t;
typedef struct ngx_http_flashsale_redis_s      ngx_http_flashsale_redis_t;
typedef struct ngx_http_flashsale_redis_cmd_s  ngx_http_flashsale_redis_cmd_t;
typedef struct ngx_http_flashsale_reserve_s    ngx_http_flashsale_reserve_t;
typedef struct ngx_http_flashsale_breaker_conf_s
    ngx_http_flashsale_breaker_conf_t;


/* counters in the zone, changed with atomic adds and no lock */
typedef struct {
    ngx_atomic_t                  reserved;
    ngx_atomic_t                  sold_out;
    ngx_atomic_t                  released;
    ngx_atomic_t                  confirmed;
    ngx_atomic_t                  errors;
    ngx_atomic_t                  bad_requests;
    ngx_atomic_t                  redis_calls;
    ngx_atomic_t                  redis_errors;
    ngx_atomic_t                  redis_timeouts;
    ngx_atomic_t                  redis_latency_ms;   /* sum over calls */
} ngx_http_flashsale_stats_t;


typedef struct {
    ngx_array_t                   keys;       /* of ngx_str_t; [0] signs */
    ngx_array_t                   macs;       /* of EVP_MAC_CTX *, keyed */
    ngx_str_t                     file;
    ngx_uint_t                    generation; /* one per load of a file */
} ngx_http_flashsale_keys_t;


typedef struct {
    ngx_str_t                     name;
    ngx_str_t                     attrs;      /* "; Path=/; HttpOnly..." */
} ngx_http_flashsale_cookie_t;


typedef struct {
    ngx_array_t                   zones;      /* of zone pointers */
    ngx_array_t                   redis;      /* of redis pointers */

    /* defaults, built once per configuration */
    ngx_http_flashsale_cookie_t  *cookie;
    ngx_http_flashsale_page_t    *pages[NGX_HTTP_FLASHSALE_PAGE_N];
} ngx_http_flashsale_main_conf_t;


typedef struct {
    ngx_http_flashsale_zone_t    *zone;
    ngx_http_flashsale_keys_t    *keys;
    ngx_http_flashsale_cookie_t  *cookie;
    ngx_http_flashsale_page_t    *pages[NGX_HTTP_FLASHSALE_PAGE_N];
    ngx_http_flashsale_redis_t   *redis;
    ngx_http_flashsale_reserve_t *reserve;
    ngx_http_flashsale_breaker_conf_t  *breaker;
    ngx_uint_t                    status_format;

    /* flashsale_release, _confirm, _stock: the script's op and zone */
    ngx_uint_t                    backend;
    ngx_http_flashsale_zone_t    *backend_zone;
} ngx_http_flashsale_loc_conf_t;


typedef struct {
    ngx_uint_t                    state;
    uint64_t                      ticket;
    uint64_t                      position;
    ngx_int_t                     eta;        /* seconds, -1: paused */
    ngx_uint_t                    progress;   /* percent of the way */
    ngx_uint_t                    retry_after;

    ngx_str_t                     visitor;
    ngx_str_t                     token;      /* issued by this request */
    ngx_str_t                     set_cookie; /* whole header value */

    ngx_http_request_t           *request;
    ngx_http_flashsale_zone_t    *zone;
    ngx_http_flashsale_redis_cmd_t  *cmd;     /* in flight */
    ngx_uint_t                    reserving;  /* NGX_HTTP_FLASHSALE_RESERVE_* */
    ngx_uint_t                    ask_holders; /* the SKU was not latched */
    ngx_uint_t                    refresher;  /* of the SKU's old latch */
    ngx_str_t                     sku;
    ngx_str_t                     reservation;

    ngx_uint_t                    probe;      /* breaker slot + 1 */
    ngx_msec_t                    probe_stamp;
    ngx_uint_t                    reported;   /* outcome given */

    u_char                        visitor_data[NGX_HTTP_FLASHSALE_VISITOR_MAX];
} ngx_http_flashsale_ctx_t;


extern ngx_module_t  ngx_http_flashsale_module;


/*
 * Zone, cookie and visitor names go into pages, JSON, logs and Redis keys
 * unescaped, so they are held to letters, digits, "_" and "-" everywhere.
 */
static ngx_inline ngx_uint_t
ngx_http_flashsale_name_char(u_char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
}


#endif /* _NGX_HTTP_FLASHSALE_H_INCLUDED_ */
