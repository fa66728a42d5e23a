
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * The /flashsale_status handler: one snapshot per zone, rendered once.
 */


#ifndef _NGX_HTTP_FLASHSALE_STATUS_H_INCLUDED_
#define _NGX_HTTP_FLASHSALE_STATUS_H_INCLUDED_


#include "ngx_http_flashsale.h"


ngx_int_t ngx_http_flashsale_status_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_FLASHSALE_STATUS_H_INCLUDED_ */
