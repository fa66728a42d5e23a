
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * The waiting room: ticket numbers and the admission watermark of one
 * zone, kept in shared memory so every worker sees one queue.
 */


#ifndef _NGX_HTTP_FLASHSALE_ROOM_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_ROOM_H_INCLUDED_


#include "ngx_http_flashsale.h"
#include "ngx_http_flashsale_breaker.h"


/*
 * Rates are kept in millionths of an admission per second, so "1r/m" is
 * 16667 and off by 0.002% rather than limit_req's 4%.  The watermark
 * counts billionths of a ticket: rate times elapsed milliseconds adds up
 * exactly, however often the room is entered.
 */
#define NGX_HTTP_FLASHSALE_RATE_ONE  1000000
#define NGX_HTTP_FLASHSALE_WM_ONE    1000000000


/* a ring of samples for the status dashboard's charts: 5 minutes */
#define NGX_HTTP_FLASHSALE_SAMPLES          60
#define NGX_HTTP_FLASHSALE_SAMPLE_EVERY     5

/* who may hold stock: a Bloom filter that lets holders past the latch,
 * an eighth of the zone (a power of two, at most 2 MB) */
#define NGX_HTTP_FLASHSALE_HOLDERS_MAX      (2 * 1024 * 1024)


typedef struct {
    time_t                        time;
    uint32_t                      tickets;
    uint32_t                      admitted;
    uint32_t                      waiting;
    uint32_t                      reserved;
    uint32_t                      sold_out;
    uint32_t                      errors;
} ngx_http_flashsale_sample_t;


typedef struct {
    uint64_t                      tickets;     /* last ticket issued */
    uint64_t                      watermark;   /* in millionths */
    uint64_t                      admitted;    /* passes granted */
    ngx_msec_t                    last;        /* watermark advanced at */
    time_t                        started;     /* zone created at */
    ngx_http_flashsale_stats_t    stats;
    ngx_http_flashsale_breaker_sh_t  breaker;
    ngx_rbtree_t                  latch;       /* sold-out SKUs */
    ngx_rbtree_node_t             latch_sentinel;
    ngx_queue_t                   latch_queue; /* oldest first */
    ngx_uint_t                    latch_n;
    time_t                        nomem_logged;
    time_t                        holders_nomem_logged;
    ngx_uint_t                    sample_next;
    ngx_http_flashsale_sample_t   samples[NGX_HTTP_FLASHSALE_SAMPLES];
    volatile uint32_t            *holders;
    uint32_t                      holders_mask;  /* bits - 1 */
} ngx_http_flashsale_sh_t;


struct ngx_http_flashsale_zone_s {
    ngx_str_t                     name;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_flashsale_sh_t      *sh;
    ngx_slab_pool_t              *shpool;

    ngx_uint_t                    rate;        /* millionths per second */
    ngx_uint_t                    burst;
    time_t                        session;
    ngx_http_flashsale_breaker_conf_t  *breaker;

    /* what every location of the zone reads tokens with */
    ngx_http_flashsale_keys_t    *keys;
    ngx_http_flashsale_cookie_t  *cookie;

    /* where the zone was declared, given its rate, first used */
    u_char                       *rate_file;
    ngx_uint_t                    rate_line;
    u_char                       *used_file;
    ngx_uint_t                    used_line;

    unsigned                      declared:1;
    unsigned                      rate_set:1;
};


typedef struct {
    uint64_t                      ticket;      /* in: 0 for a newcomer */
    ngx_uint_t                    admitted;    /* out */
    ngx_uint_t                    issued;      /* out: ticket is new */
    uint64_t                      position;    /* out */
    ngx_int_t                     eta;         /* out: seconds, -1 paused */
} ngx_http_flashsale_entry_t;


typedef struct {
    ngx_uint_t                    rate;
    ngx_uint_t                    burst;
    time_t                        session;
    uint64_t                      tickets;
    uint64_t                      admitted;
    uint64_t                      waiting;
    ngx_int_t                     eta_new;
    size_t                        shm_size;
    size_t                        shm_used;
    ngx_http_flashsale_stats_t    counters;
} ngx_http_flashsale_room_stats_t;


ngx_int_t ngx_http_flashsale_room_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
time_t ngx_http_flashsale_room_started(ngx_http_flashsale_zone_t *zone);
void ngx_http_flashsale_room_enter(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_entry_t *e);
void ngx_http_flashsale_room_stats(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_room_stats_t *st);
ngx_uint_t ngx_http_flashsale_room_history(ngx_http_flashsale_zone_t *zone,
    ngx_http_flashsale_sample_t *out);
ngx_int_t ngx_http_flashsale_room_eta(uint64_t ticket, uint64_t watermark,
    ngx_uint_t rate);
ngx_int_t ngx_http_flashsale_room_handler(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_ctx_t *ctx);


#endif /* _NGX_HTTP_FLASHSALE_ROOM_H_INCLUDED_ */
