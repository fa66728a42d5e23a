
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * Tickets and passes: HS256 JWTs made and checked with libjwt, read from
 * "Authorization: Bearer" or the module's cookie.
 */


#ifndef _NGX_HTTP_FLASHSALE_TOKEN_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_TOKEN_H_INCLUDED_


#include "ngx_http_flashsale.h"


#define NGX_HTTP_FLASHSALE_KEY_MIN        32
#define NGX_HTTP_FLASHSALE_TOKEN_MAX      16384
#define NGX_HTTP_FLASHSALE_TICKET_TTL     3600
#define NGX_HTTP_FLASHSALE_LEEWAY         5


typedef struct {
    ngx_str_t                     raw;         /* the token as read */
    ngx_str_t                     visitor;
    uint64_t                      ticket;
    uint64_t                      start;       /* position when issued */
    time_t                        iat;
    time_t                        exp;
    ngx_uint_t                    admitted;
} ngx_http_flashsale_claims_t;


char *ngx_http_flashsale_keys_load(ngx_conf_t *cf,
    ngx_http_flashsale_keys_t *keys);
char *ngx_http_flashsale_cookie_attrs(ngx_conf_t *cf,
    ngx_http_flashsale_cookie_t *cookie, ngx_str_t *domain, ngx_str_t *path,
    ngx_uint_t secure, ngx_str_t *samesite);

ngx_int_t ngx_http_flashsale_token_read(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_str_t *zone,
    ngx_http_flashsale_claims_t *claims, u_char *visitor_buf);
ngx_int_t ngx_http_flashsale_token_issue(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_str_t *zone,
    ngx_http_flashsale_claims_t *claims, ngx_str_t *token);
ngx_int_t ngx_http_flashsale_token_cookie(ngx_http_request_t *r,
    ngx_http_flashsale_cookie_t *cookie, ngx_str_t *token, time_t max_age,
    ngx_str_t *value);
void ngx_http_flashsale_visitor_new(u_char *buf);
ngx_int_t ngx_http_flashsale_token_init_process(ngx_cycle_t *cycle);
void ngx_http_flashsale_token_exit_process(void);


#endif /* _NGX_HTTP_FLASHSALE_TOKEN_H_INCLUDED_ */
