
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * Stock reservation for admitted shoppers, and the back-end and operator
 * handlers (release, confirm, stock), all through one Lua script.
 */


#ifndef _NGX_HTTP_FLASHSALE_RESERVE_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_RESERVE_H_INCLUDED_


#include "ngx_http_flashsale.h"


#define NGX_HTTP_FLASHSALE_RESERVE_NONE      0
#define NGX_HTTP_FLASHSALE_RESERVE_WAITING   1
#define NGX_HTTP_FLASHSALE_RESERVE_DONE      2

#define NGX_HTTP_FLASHSALE_OP_RELEASE        1
#define NGX_HTTP_FLASHSALE_OP_CONFIRM        2
#define NGX_HTTP_FLASHSALE_OP_STOCK          3


struct ngx_http_flashsale_reserve_s {
    ngx_http_complex_value_t     *sku;
    ngx_http_complex_value_t     *qty;
    ngx_msec_t                    hold;
    ngx_msec_t                    latch;
    ngx_uint_t                    max_qty;
};


/*
 * A SKU found sold out, remembered in the zone for "latch".  When Redis
 * listed the SKU's live holders with the answer that set it ("known"),
 * "holders" is their visitor ids' 64-bit hashes, sorted, in a slab block
 * of its own (NULL when there are none): only they are let through to
 * Redis.  Otherwise the holders filter decides.  Once expired, one
 * request asks Redis again ("refreshing") while the others are still
 * answered from it, for at most LATCH_REFRESH.
 */
typedef struct {
    ngx_str_node_t                sn;
    ngx_queue_t                   queue;
    ngx_msec_t                    expires;
    ngx_msec_t                    refresh;    /* a refresh asked since */
    ngx_uint_t                    refreshing;
    uint64_t                     *holders;
    ngx_uint_t                    nholders;
    ngx_uint_t                    known;
    u_char                        data[1];
} ngx_http_flashsale_latch_t;


char *ngx_http_flashsale_reserve_conf(ngx_conf_t *cf,
    ngx_http_flashsale_reserve_t **reserve);
char *ngx_http_flashsale_backend_conf(ngx_conf_t *cf,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_uint_t op);
char *ngx_http_flashsale_reserve_merge(ngx_conf_t *cf,
    ngx_http_flashsale_loc_conf_t *conf);
ngx_int_t ngx_http_flashsale_reserve_handler(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_ctx_t *ctx);
ngx_int_t ngx_http_flashsale_backend_handler(ngx_http_request_t *r);
void ngx_http_flashsale_latch_init(ngx_http_flashsale_zone_t *zone);
ngx_uint_t ngx_http_flashsale_latch_list(ngx_http_flashsale_zone_t *zone,
    ngx_str_t *skus, ngx_int_t *holders, u_char *buf, ngx_uint_t max,
    ngx_uint_t *total);


#endif /* _NGX_HTTP_FLASHSALE_RESERVE_H_INCLUDED_ */
