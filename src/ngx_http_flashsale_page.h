
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * Page templates, read and split at config load so that serving one is
 * a single exact-size copy, and the answers built from them.
 */


#ifndef _NGX_HTTP_FLASHSALE_PAGE_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_PAGE_H_INCLUDED_


#include "ngx_http_flashsale.h"


/* waiting shoppers come back at their turn, but at least this often */
#define NGX_HTTP_FLASHSALE_RETRY_MAX        30

#define NGX_HTTP_FLASHSALE_VAR_TEXT         0
#define NGX_HTTP_FLASHSALE_VAR_POSITION     1
#define NGX_HTTP_FLASHSALE_VAR_ETA          2
#define NGX_HTTP_FLASHSALE_VAR_ETA_TEXT     3
#define NGX_HTTP_FLASHSALE_VAR_RETRY_AFTER  4
#define NGX_HTTP_FLASHSALE_VAR_ZONE         5
#define NGX_HTTP_FLASHSALE_VAR_PROGRESS     6
#define NGX_HTTP_FLASHSALE_VAR_N            7


typedef struct {
    ngx_uint_t                    var;
    ngx_str_t                     text;
} ngx_http_flashsale_page_part_t;


struct ngx_http_flashsale_page_s {
    ngx_array_t                   parts;
    size_t                        text_len;
};


typedef struct {
    ngx_str_t                     values[NGX_HTTP_FLASHSALE_VAR_N];
} ngx_http_flashsale_page_values_t;


char *ngx_http_flashsale_page_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_http_flashsale_page_t **page);
ngx_http_flashsale_page_t *ngx_http_flashsale_page_builtin(ngx_conf_t *cf,
    ngx_uint_t which);
ngx_int_t ngx_http_flashsale_page_waiting(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_ctx_t *ctx);
ngx_uint_t ngx_http_flashsale_page_wants_json(ngx_http_request_t *r);
ngx_int_t ngx_http_flashsale_page_sold_out(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_str_t *sku);
ngx_int_t ngx_http_flashsale_page_retry(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_uint_t retry_after);
ngx_int_t ngx_http_flashsale_page_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message, ngx_str_t *sku);
ngx_int_t ngx_http_flashsale_page_json(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body);
ngx_int_t ngx_http_flashsale_page_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_str_t *body,
    ngx_uint_t retry_after, ngx_uint_t refresh);
ngx_int_t ngx_http_flashsale_page_json_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);


#endif /* _NGX_HTTP_FLASHSALE_PAGE_H_INCLUDED_ */
