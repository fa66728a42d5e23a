
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * Redis inside the event loop.  nginx owns the sockets (connect, timers,
 * a pool of connections per worker); hiredis only formats commands and
 * parses replies.  Commands from many requests are pipelined on one
 * connection and their replies come back in order.
 */


#ifndef _NGX_HTTP_FLASHSALE_REDIS_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_REDIS_H_INCLUDED_


#include "ngx_http_flashsale.h"

#include <hiredis/hiredis.h>


#define NGX_HTTP_FLASHSALE_REDIS_OK        0
#define NGX_HTTP_FLASHSALE_REDIS_ERROR     1   /* no connection, closed */
#define NGX_HTTP_FLASHSALE_REDIS_TIMEOUT   2


/*
 * Called once per command: with the reply (which may be an error reply)
 * and NGX_HTTP_FLASHSALE_REDIS_OK, or with NULL and _ERROR or _TIMEOUT.
 * The reply is freed after the call returns.
 */
typedef void (*ngx_http_flashsale_redis_handler_pt)(void *data,
    redisReply *reply, ngx_uint_t status, ngx_msec_t latency);


typedef struct {
    ngx_str_t                     text;
    u_char                        sha[40];
} ngx_http_flashsale_redis_script_t;


char *ngx_http_flashsale_redis_conf(ngx_conf_t *cf,
    ngx_http_flashsale_redis_t **redis);
ngx_int_t ngx_http_flashsale_redis_script(ngx_conf_t *cf,
    ngx_http_flashsale_redis_script_t *script);

ngx_int_t ngx_http_flashsale_redis_send(ngx_http_flashsale_redis_t *redis,
    ngx_log_t *log, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_flashsale_redis_handler_pt handler, void *data,
    ngx_http_flashsale_redis_cmd_t **cmdp);
ngx_int_t ngx_http_flashsale_redis_add_script(
    ngx_http_flashsale_redis_t *redis,
    ngx_http_flashsale_redis_script_t *script);
void ngx_http_flashsale_redis_detach(ngx_http_flashsale_redis_cmd_t *cmd,
    ngx_http_flashsale_redis_handler_pt handler, void *data);
void ngx_http_flashsale_redis_exit_process(ngx_http_flashsale_redis_t *redis);
ngx_uint_t ngx_http_flashsale_redis_noscript(redisReply *reply);


#endif /* _NGX_HTTP_FLASHSALE_REDIS_H_INCLUDED_ */
