
/*
 * Copyright (C) ngx_http_flashsale_module authors
 *
 * Directives, phase handlers and variables.  Everything the module does
 * lives in src/, one file per concern.
 */


#include "ngx_http_flashsale.h"
#include "ngx_http_flashsale_room.h"
#include "ngx_http_flashsale_token.h"
#include "ngx_http_flashsale_page.h"
#include "ngx_http_flashsale_status.h"
#include "ngx_http_flashsale_redis.h"
#include "ngx_http_flashsale_reserve.h"
#include "ngx_http_flashsale_breaker.h"


#define NGX_HTTP_FLASHSALE_ZONE_NAME_MAX   32
#define NGX_HTTP_FLASHSALE_RATE_MAX        1000000


static ngx_int_t ngx_http_flashsale_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_flashsale_reserve_phase(ngx_http_request_t *r);
static ngx_int_t ngx_http_flashsale_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_flashsale_header_filter(ngx_http_request_t *r);
static ngx_http_flashsale_ctx_t *ngx_http_flashsale_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_flashsale_ctx_cleanup(void *data);

static ngx_int_t ngx_http_flashsale_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_flashsale_init_process(ngx_cycle_t *cycle);
static void ngx_http_flashsale_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_flashsale_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_flashsale_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_flashsale_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_flashsale_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_flashsale_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static ngx_http_flashsale_zone_t *ngx_http_flashsale_zone_get(ngx_conf_t *cf,
    ngx_str_t *name);
static char *ngx_http_flashsale_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flashsale(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_flashsale_parse_rate(ngx_str_t *value,
    ngx_uint_t *rate);
static char *ngx_http_flashsale_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_flashsale_cookie(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_flashsale_cookie_value(ngx_str_t *value);
static char *ngx_http_flashsale_zone_tokens(ngx_conf_t *cf,
    ngx_http_flashsale_main_conf_t *fmcf,
    ngx_http_flashsale_loc_conf_t *conf);
static char *ngx_http_flashsale_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flashsale_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flashsale_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flashsale_reserve(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flashsale_backend(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flashsale_breaker(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_flashsale_commands[] = {

    { ngx_string("flashsale_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_flashsale_zone,
      0,
      0,
      NULL },

    { ngx_string("flashsale_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flashsale_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_flashsale,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_flashsale_cookie,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_page"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_flashsale_page,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_breaker"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_flashsale_breaker,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_flashsale_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_flashsale_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_reserve"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_flashsale_reserve,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flashsale_release"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_flashsale_backend,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_FLASHSALE_OP_RELEASE,
      NULL },

    { ngx_string("flashsale_confirm"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_flashsale_backend,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_FLASHSALE_OP_CONFIRM,
      NULL },

    { ngx_string("flashsale_stock"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_flashsale_backend,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_FLASHSALE_OP_STOCK,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_flashsale_module_ctx = {
    ngx_http_flashsale_preconfiguration,   /* preconfiguration */
    ngx_http_flashsale_postconfiguration,  /* postconfiguration */

    ngx_http_flashsale_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_flashsale_create_loc_conf,    /* create location configuration */
    ngx_http_flashsale_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_flashsale_module = {
    NGX_MODULE_V1,
    &ngx_http_flashsale_module_ctx,        /* module context */
    ngx_http_flashsale_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_flashsale_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_flashsale_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_FLASHSALE_VAR_STATE       0
#define NGX_HTTP_FLASHSALE_VAR_VISITOR     1
#define NGX_HTTP_FLASHSALE_VAR_TICKET      2
#define NGX_HTTP_FLASHSALE_VAR_POS         3
#define NGX_HTTP_FLASHSALE_VAR_ETA_SECS    4
#define NGX_HTTP_FLASHSALE_VAR_RESERVATION 5


static ngx_http_variable_t  ngx_http_flashsale_vars[] = {

    { ngx_string("flashsale_state"), NULL, ngx_http_flashsale_variable,
      NGX_HTTP_FLASHSALE_VAR_STATE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flashsale_visitor"), NULL, ngx_http_flashsale_variable,
      NGX_HTTP_FLASHSALE_VAR_VISITOR, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flashsale_ticket"), NULL, ngx_http_flashsale_variable,
      NGX_HTTP_FLASHSALE_VAR_TICKET, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flashsale_position"), NULL, ngx_http_flashsale_variable,
      NGX_HTTP_FLASHSALE_VAR_POS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flashsale_eta"), NULL, ngx_http_flashsale_variable,
      NGX_HTTP_FLASHSALE_VAR_ETA_SECS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flashsale_reservation"), NULL, ngx_http_flashsale_variable,
      NGX_HTTP_FLASHSALE_VAR_RESERVATION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_flashsale_states[] = {
    ngx_null_string,
    ngx_string("admitted"),
    ngx_string("waiting"),
    ngx_string("sold_out"),
    ngx_string("retry"),
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_int_t
ngx_http_flashsale_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_uint_t                      retry_after;
    ngx_pool_cleanup_t             *cln;
    ngx_http_flashsale_ctx_t       *ctx;
    ngx_http_flashsale_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_flashsale_module);

    if (lcf->zone == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_flashsale_get_ctx(r);

    /*
     * decided once per request, by the first sale it reaches: an internal
     * redirect keeps that decision, and the cookie, probe and outcome it
     * holds (see the reservation phase for another sale's location)
     */
    if (ctx != NULL) {
        /* post_action runs after the answer went out, whatever it was */
        if (ctx->state == NGX_HTTP_FLASHSALE_STATE_ADMITTED
            || r->post_action)
        {
            return NGX_DECLINED;
        }

        /*
         * only a failure after the answer was chosen (a request body that
         * cannot be discarded, say) and the operator's error_page bring a
         * request that was not let in here: it must not be served
         */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flashsale: request not admitted by zone \"%V\" "
                      "refused after an internal redirect",
                      &ctx->zone->name);

        return NGX_HTTP_FORBIDDEN;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flashsale_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* an internal redirect clears module contexts; the cleanup finds
     * ours again, as the realip module does */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_flashsale_ctx_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_flashsale_module);

    ctx->zone = lcf->zone;

    rc = ngx_http_flashsale_room_handler(r, lcf, ctx);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    /* an open breaker keeps admitted shoppers off Redis and the store */
    if (lcf->zone->breaker
        && ngx_http_flashsale_breaker_enter(lcf->zone, &ctx->probe,
                                            &ctx->probe_stamp, &retry_after)
           == NGX_BUSY)
    {
        ctx->state = NGX_HTTP_FLASHSALE_STATE_RETRY;
        ctx->reported = 1;

        rc = ngx_http_flashsale_page_retry(r, lcf, retry_after);

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    return NGX_DECLINED;
}


/*
 * Stock is reserved in the precontent phase: after allow/deny,
 * auth_request and the other access checks have let the request in,
 * so a request they refuse never holds stock.
 */
static ngx_int_t
ngx_http_flashsale_reserve_phase(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_http_flashsale_ctx_t       *ctx;
    ngx_http_flashsale_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_flashsale_module);

    if (lcf->reserve == NULL) {
        return NGX_DECLINED;
    }

    /*
     * a subrequest (SSI, mirror, auth_request) is neither queued nor
     * reserved for: it must not reach the add-to-cart behind this
     * location without a hold
     */
    if (r != r->main) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flashsale_reserve: subrequest refused in a location "
                      "of zone \"%V\"", &lcf->zone->name);
        return NGX_HTTP_FORBIDDEN;
    }

    ctx = ngx_http_flashsale_get_ctx(r);

    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    /*
     * try_files or error_page from another sale's location: its decision
     * is not this sale's, and must not take this sale's stock past its
     * queue and breaker
     */
    if (ctx->zone != lcf->zone) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flashsale_reserve: request decided by zone \"%V\" "
                      "refused in a location of zone \"%V\"; keep "
                      "try_files and error_page within one zone",
                      &ctx->zone->name, &lcf->zone->name);

        rc = ngx_http_flashsale_page_error(r, NGX_HTTP_FORBIDDEN,
                                           "not admitted to this sale", NULL);

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    if (ctx->state != NGX_HTTP_FLASHSALE_STATE_ADMITTED) {
        return NGX_DECLINED;
    }

    if (ctx->reserving == NGX_HTTP_FLASHSALE_RESERVE_WAITING) {
        return NGX_AGAIN;
    }

    if (ctx->reserving == NGX_HTTP_FLASHSALE_RESERVE_DONE) {
        return NGX_DECLINED;
    }

    rc = ngx_http_flashsale_reserve_handler(r, lcf, ctx);

    if (rc == NGX_AGAIN || rc == NGX_DECLINED) {
        return rc;
    }

    /* an answer was sent, or rc is the status of one to send */
    ctx->reserving = NGX_HTTP_FLASHSALE_RESERVE_DONE;

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_flashsale_log_handler(ngx_http_request_t *r)
{
    ngx_http_flashsale_ctx_t  *ctx;

    /*
     * with log_subrequest on, a subrequest (auth_request, SSI, mirror)
     * would find the main request's context through the pool and report
     * its own upstream in place of the main request's
     */
    if (r != r->main) {
        return NGX_OK;
    }

    /* upstream outcomes and half-open probes report to the breaker */
    ctx = ngx_http_flashsale_get_ctx(r);

    if (ctx) {
        ngx_http_flashsale_breaker_log(r, ctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_header_filter(ngx_http_request_t *r)
{
    ngx_table_elt_t           *h;
    ngx_http_flashsale_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_flashsale_get_ctx(r);

    if (ctx == NULL || ctx->set_cookie.len == 0) {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Set-Cookie");
    h->value = ctx->set_cookie;

    /* an error page sent after this one must not carry it twice */
    ctx->set_cookie.len = 0;

    return ngx_http_next_header_filter(r);
}


static ngx_http_flashsale_ctx_t *
ngx_http_flashsale_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_flashsale_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_flashsale_module);

    if (ctx || !r->internal) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_flashsale_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_flashsale_module);
            return ctx;
        }
    }

    return NULL;
}


static void
ngx_http_flashsale_ctx_cleanup(void *data)
{
    /* only a marker for ngx_http_flashsale_get_ctx() */
}


static ngx_int_t
ngx_http_flashsale_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    ngx_http_flashsale_ctx_t  *ctx;

    ctx = ngx_http_flashsale_get_ctx(r);

    if (ctx == NULL || ctx->state == NGX_HTTP_FLASHSALE_STATE_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    switch (data) {

    case NGX_HTTP_FLASHSALE_VAR_STATE:
        v->len = ngx_http_flashsale_states[ctx->state].len;
        v->data = ngx_http_flashsale_states[ctx->state].data;
        return NGX_OK;

    case NGX_HTTP_FLASHSALE_VAR_VISITOR:
        v->len = ctx->visitor.len;
        v->data = ctx->visitor.data;
        return NGX_OK;

    case NGX_HTTP_FLASHSALE_VAR_RESERVATION:
        v->len = ctx->reservation.len;
        v->data = ctx->reservation.data;
        v->not_found = (v->len == 0);
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    switch (data) {

    case NGX_HTTP_FLASHSALE_VAR_TICKET:
        p = ngx_sprintf(p, "%uL", ctx->ticket);
        break;

    case NGX_HTTP_FLASHSALE_VAR_POS:
        p = ngx_sprintf(p, "%uL", ctx->position);
        break;

    default: /* NGX_HTTP_FLASHSALE_VAR_ETA_SECS */
        if (ctx->eta >= 0) {
            p = ngx_sprintf(p, "%i", ctx->eta);
        }
        break;
    }

    v->len = p - v->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_init_process(ngx_cycle_t *cycle)
{
    ngx_http_flashsale_main_conf_t  *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_flashsale_module);

    /* a worker of an nginx that holds no sale keeps no cache */
    if (fmcf == NULL || fmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    return ngx_http_flashsale_token_init_process(cycle);
}


static void
ngx_http_flashsale_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_flashsale_redis_t      **redis;
    ngx_http_flashsale_main_conf_t   *fmcf;

    /* what a worker allocated for its life, given back so that nothing
     * is left open or lost when it exits */
    ngx_http_flashsale_token_exit_process();

    fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_flashsale_module);
    if (fmcf == NULL) {
        return;
    }

    redis = fmcf->redis.elts;

    for (i = 0; i < fmcf->redis.nelts; i++) {
        ngx_http_flashsale_redis_exit_process(redis[i]);
    }
}


static ngx_int_t
ngx_http_flashsale_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_flashsale_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    ngx_http_handler_pt              *h;
    ngx_http_flashsale_zone_t       **zones;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_flashsale_main_conf_t   *fmcf;

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flashsale_module);
    zones = fmcf->zones.elts;

    for (i = 0; i < fmcf->zones.nelts; i++) {

        if (!zones[i]->declared && zones[i]->used_file == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "flashsale zone=%V is unknown: declare it with "
                          "\"flashsale_zone %V:10m;\" in the http block",
                          &zones[i]->name, &zones[i]->name);
            return NGX_ERROR;
        }

        if (!zones[i]->declared) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "flashsale zone=%V in %s:%ui is unknown: declare "
                          "it with \"flashsale_zone %V:10m;\" in the http "
                          "block", &zones[i]->name, zones[i]->used_file,
                          zones[i]->used_line, &zones[i]->name);
            return NGX_ERROR;
        }

        if (zones[i]->used_file && !zones[i]->rate_set) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "flashsale zone=%V in %s:%ui has no rate: add "
                          "rate= (e.g. \"rate=50r/s\") to one \"flashsale "
                          "zone=%V\" directive", &zones[i]->name,
                          zones[i]->used_file, zones[i]->used_line,
                          &zones[i]->name);
            return NGX_ERROR;
        }
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_flashsale_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_flashsale_reserve_phase;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_flashsale_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_flashsale_header_filter;

    return NGX_OK;
}


static void *
ngx_http_flashsale_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_flashsale_main_conf_t  *fmcf;

    fmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_main_conf_t));
    if (fmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&fmcf->zones, cf->pool, 2,
                       sizeof(ngx_http_flashsale_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&fmcf->redis, cf->pool, 1,
                       sizeof(ngx_http_flashsale_redis_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return fmcf;
}


static void *
ngx_http_flashsale_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_flashsale_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->zone = NULL;
     *     conf->keys = NULL;
     *     conf->cookie = NULL;
     *     conf->pages[] = NULL;
     *     conf->redis = NULL;
     *     conf->reserve = NULL;
     *     conf->backend = 0;
     *     conf->backend_zone = NULL;
     *     conf->breaker = NULL;
     *     conf->status_format = 0;
     */

    return conf;
}


static char *
ngx_http_flashsale_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_flashsale_loc_conf_t *prev = parent;
    ngx_http_flashsale_loc_conf_t *conf = child;

    ngx_uint_t                       i;
    ngx_str_t                        domain, path, samesite;
    ngx_http_flashsale_main_conf_t  *fmcf;

    if (conf->zone == NULL) {
        conf->zone = prev->zone;
    }

    if (conf->keys == NULL) {
        conf->keys = prev->keys;
    }

    if (conf->cookie == NULL) {
        conf->cookie = prev->cookie;
    }

    if (conf->redis == NULL) {
        conf->redis = prev->redis;
    }

    if (conf->breaker == NULL) {
        conf->breaker = prev->breaker;
    }

    for (i = 0; i < NGX_HTTP_FLASHSALE_PAGE_N; i++) {
        if (conf->pages[i] == NULL) {
            conf->pages[i] = prev->pages[i];
        }
    }

    /* the defaults are built once per configuration and shared */
    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flashsale_module);

    if (conf->backend && conf->backend_zone == NULL) {
        if (fmcf->zones.nelts != 1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_release, flashsale_confirm and "
                               "flashsale_stock need \"zone=name\" when "
                               "there is not exactly one flashsale_zone");
            return NGX_CONF_ERROR;
        }

        conf->backend_zone = ((ngx_http_flashsale_zone_t **)
                              fmcf->zones.elts)[0];
    }

    if ((conf->reserve || conf->backend)
        && ngx_http_flashsale_reserve_merge(cf, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->zone == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->breaker
        && ngx_http_flashsale_breaker_zone(cf, conf->zone, conf->breaker)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale zone=%V needs keys: add "
                           "\"flashsale_secret_file /path/to/keys;\" "
                           "(flashsale_secret_file is required)",
                           &conf->zone->name);
        return NGX_CONF_ERROR;
    }

    if (conf->cookie == NULL) {
        if (fmcf->cookie == NULL) {
            fmcf->cookie = ngx_palloc(cf->pool,
                                      sizeof(ngx_http_flashsale_cookie_t));
            if (fmcf->cookie == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_str_set(&fmcf->cookie->name, "flashsale");
            ngx_str_null(&domain);
            ngx_str_set(&path, "/");
            ngx_str_set(&samesite, "Lax");

            if (ngx_http_flashsale_cookie_attrs(cf, fmcf->cookie, &domain,
                                                &path, 0, &samesite)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
        }

        conf->cookie = fmcf->cookie;
    }

    if (ngx_http_flashsale_zone_tokens(cf, fmcf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < NGX_HTTP_FLASHSALE_PAGE_N; i++) {
        if (conf->pages[i]) {
            continue;
        }

        if (fmcf->pages[i] == NULL) {
            fmcf->pages[i] = ngx_http_flashsale_page_builtin(cf, i);
            if (fmcf->pages[i] == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        conf->pages[i] = fmcf->pages[i];
    }

    return NGX_CONF_OK;
}


/*
 * A pass admits in every location of its zone: they must all verify with
 * the same keys and read the same cookie.  Two zones with one cookie take
 * each other's tokens: a shopper in both sales keeps one place only.
 */
static char *
ngx_http_flashsale_zone_tokens(ngx_conf_t *cf,
    ngx_http_flashsale_main_conf_t *fmcf, ngx_http_flashsale_loc_conf_t *conf)
{
    ngx_uint_t                    i;
    ngx_http_flashsale_zone_t    *zone, *z, **zones;
    ngx_http_flashsale_cookie_t  *a, *b;

    zone = conf->zone;

    if (zone->keys == NULL) {
        zone->keys = conf->keys;

    } else if (zone->keys != conf->keys
               && (zone->keys->file.len != conf->keys->file.len
                   || ngx_strncmp(zone->keys->file.data, conf->keys->file.data,
                                  conf->keys->file.len)
                      != 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale zone=%V has one key file: every "
                           "location of the zone must see the same "
                           "flashsale_secret_file (\"%V\" here, \"%V\" in "
                           "another location); set it once, e.g. in the "
                           "http block", &zone->name, &conf->keys->file,
                           &zone->keys->file);
        return NGX_CONF_ERROR;
    }

    a = conf->cookie;

    if (zone->cookie) {
        b = zone->cookie;

        if (a == b
            || (a->name.len == b->name.len && a->attrs.len == b->attrs.len
                && ngx_strncmp(a->name.data, b->name.data, a->name.len) == 0
                && ngx_strncmp(a->attrs.data, b->attrs.data, a->attrs.len)
                   == 0))
        {
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale zone=%V has one cookie: every location "
                           "of the zone must see the same flashsale_cookie "
                           "(\"%V%V\" here, \"%V%V\" in another location); "
                           "set it once, e.g. in the http block",
                           &zone->name, &a->name, &a->attrs, &b->name,
                           &b->attrs);
        return NGX_CONF_ERROR;
    }

    zone->cookie = a;

    zones = fmcf->zones.elts;

    for (i = 0; i < fmcf->zones.nelts; i++) {
        z = zones[i];

        if (z == zone || z->cookie == NULL
            || z->cookie->name.len != a->name.len
            || ngx_strncmp(z->cookie->name.data, a->name.data, a->name.len)
               != 0)
        {
            continue;
        }

        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "flashsale zones \"%V\" and \"%V\" share the "
                           "cookie \"%V\": a shopper in both sales keeps "
                           "the token of one only and queues again in the "
                           "other; give each zone its own "
                           "\"flashsale_cookie name\"", &z->name,
                           &zone->name, &a->name);
        break;
    }

    return NGX_CONF_OK;
}


static ngx_http_flashsale_zone_t *
ngx_http_flashsale_zone_get(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                        i;
    ngx_http_flashsale_zone_t        *zone, **zones, **zp;
    ngx_http_flashsale_main_conf_t   *fmcf;

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flashsale_module);
    zones = fmcf->zones.elts;

    for (i = 0; i < fmcf->zones.nelts; i++) {
        if (zones[i]->name.len == name->len
            && ngx_strncmp(zones[i]->name.data, name->data, name->len) == 0)
        {
            return zones[i];
        }
    }

    if (name->len == 0 || name->len > NGX_HTTP_FLASHSALE_ZONE_NAME_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale zone name \"%V\" must be 1 to %d "
                           "characters", name,
                           NGX_HTTP_FLASHSALE_ZONE_NAME_MAX);
        return NULL;
    }

    /* zone names go into pages, JSON and Redis keys unescaped */
    for (i = 0; i < name->len; i++) {
        if (!ngx_http_flashsale_name_char(name->data[i]))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale zone name \"%V\" may only hold "
                               "letters, digits, \"_\" and \"-\"", name);
            return NULL;
        }
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_zone_t));
    if (zone == NULL) {
        return NULL;
    }

    /* null-terminated: libjwt takes it as the "aud" claim */
    zone->name.data = ngx_pnalloc(cf->pool, name->len + 1);
    if (zone->name.data == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(zone->name.data, name->data, name->len + 1);
    zone->name.len = name->len;
    zone->session = 15 * 60;

    zp = ngx_array_push(&fmcf->zones);
    if (zp == NULL) {
        return NULL;
    }

    *zp = zone;

    return zone;
}


static char *
ngx_http_flashsale_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                     *p;
    ssize_t                     size;
    ngx_str_t                  *value, name, s;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_flashsale_zone_t  *zone;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_zone \"%V\" needs a size, "
                           "e.g. \"flashsale_zone %V:10m\"",
                           &value[1], &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - name.data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_zone \"%V\" has an invalid size \"%V\"",
                           &name, &s);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_zone \"%V\" is too small: %V, the "
                           "minimum is %uzk", &name, &s,
                           8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    zone = ngx_http_flashsale_zone_get(cf, &name);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (zone->declared) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_zone \"%V\" is already declared",
                           &name);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_flashsale_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_zone \"%V\": the shared memory name "
                           "is already used by this module", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_flashsale_room_init_zone;
    shm_zone->data = zone;

    zone->shm_zone = shm_zone;
    zone->declared = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_flashsale(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    u_char                     *eq;
    time_t                      session;
    ngx_int_t                   burst;
    ngx_str_t                  *value, s, name;
    ngx_uint_t                  i, j, rate, rate_set;
    ngx_http_flashsale_zone_t  *zone;

    if (lcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* "rate=50r/s ... rate=0r/s" would quietly be a paused sale */
    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
        if (eq == NULL) {
            continue;
        }

        for (j = i + 1; j < cf->args->nelts; j++) {
            if (value[j].len > (size_t) (eq - value[i].data)
                && ngx_strncmp(value[j].data, value[i].data,
                               eq - value[i].data + 1) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "flashsale: \"%*s\" is given twice; "
                                   "give each parameter once",
                                   eq - value[i].data + 1, value[i].data);
                return NGX_CONF_ERROR;
            }
        }
    }

    ngx_str_null(&name);
    rate = 0;
    rate_set = 0;
    burst = NGX_CONF_UNSET;
    session = NGX_CONF_UNSET;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (ngx_http_flashsale_parse_rate(&s, &rate) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "flashsale: invalid rate \"%V\"; use "
                                   "e.g. \"rate=50r/s\" or \"rate=30r/m\" "
                                   "(0 to %d per second)", &value[i],
                                   NGX_HTTP_FLASHSALE_RATE_MAX);
                return NGX_CONF_ERROR;
            }

            rate_set = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (burst == NGX_ERROR || burst > NGX_HTTP_FLASHSALE_RATE_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "flashsale: invalid burst \"%V\"; use a "
                                   "whole number, e.g. \"burst=100\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "session=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            session = ngx_parse_time(&s, 1);

            if (session == (time_t) NGX_ERROR || session == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "flashsale: invalid session \"%V\"; use "
                                   "a time, e.g. \"session=15m\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale: invalid parameter \"%V\"; known are "
                           "zone=, rate=, burst=, session=", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale needs \"zone=name\"");
        return NGX_CONF_ERROR;
    }

    zone = ngx_http_flashsale_zone_get(cf, &name);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (zone->used_file == NULL) {
        zone->used_file = cf->conf_file->file.name.data;
        zone->used_line = cf->conf_file->line;
    }

    if (!rate_set) {
        if (burst != NGX_CONF_UNSET || session != NGX_CONF_UNSET) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale zone=%V: burst= and session= go "
                               "with rate=, in the one location that sets "
                               "the zone's rate", &name);
            return NGX_CONF_ERROR;
        }

        lcf->zone = zone;
        return NGX_CONF_OK;
    }

    if (zone->rate_set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale zone=%V: a second rate= for the zone; "
                           "its rate is already set in %s:%ui. Give rate= in "
                           "one location only, other locations use "
                           "\"flashsale zone=%V;\"", &name, zone->rate_file,
                           zone->rate_line, &name);
        return NGX_CONF_ERROR;
    }

    zone->rate_set = 1;
    zone->rate = rate;
    zone->burst = (burst == NGX_CONF_UNSET) ? 0 : (ngx_uint_t) burst;

    if (session != NGX_CONF_UNSET) {
        zone->session = session;
    }

    zone->rate_file = cf->conf_file->file.name.data;
    zone->rate_line = cf->conf_file->line;

    lcf->zone = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_flashsale_parse_rate(ngx_str_t *value, ngx_uint_t *rate)
{
    size_t     len;
    ngx_int_t  n, scale;
    u_char    *p;

    len = value->len;
    p = value->data + len - 3;

    if (len < 4) {
        return NGX_ERROR;
    }

    if (ngx_strncmp(p, "r/s", 3) == 0) {
        scale = 1;

    } else if (ngx_strncmp(p, "r/m", 3) == 0) {
        scale = 60;

    } else {
        return NGX_ERROR;
    }

    n = ngx_atoi(value->data, len - 3);

    if (n == NGX_ERROR || n / scale > NGX_HTTP_FLASHSALE_RATE_MAX) {
        return NGX_ERROR;
    }

    /* millionths per second, rounded to the nearest so that 1r/m is
     * not a hair slow (60.003 s, an ETA of 61): see room.h */
    *rate = ((ngx_uint_t) n * NGX_HTTP_FLASHSALE_RATE_ONE + scale / 2) / scale;

    return NGX_OK;
}


static char *
ngx_http_flashsale_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    ngx_str_t  *value;

    if (lcf->keys) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lcf->keys = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_keys_t));
    if (lcf->keys == NULL) {
        return NGX_CONF_ERROR;
    }

    lcf->keys->file = value[1];

    return ngx_http_flashsale_keys_load(cf, lcf->keys);
}


static char *
ngx_http_flashsale_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    ngx_str_t   *value, domain, path, samesite;
    ngx_uint_t   i, secure;

    if (lcf->cookie) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lcf->cookie = ngx_palloc(cf->pool, sizeof(ngx_http_flashsale_cookie_t));
    if (lcf->cookie == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the token takes most of a browser's 4 KB for one cookie */
    if (value[1].len == 0 || value[1].len > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_cookie: invalid cookie name \"%V\"; "
                           "use 1 to 64 letters, digits, \"_\" and \"-\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!ngx_http_flashsale_name_char(value[1].data[i]))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_cookie: invalid cookie name "
                               "\"%V\"; use letters, digits, \"_\" and "
                               "\"-\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    lcf->cookie->name = value[1];

    ngx_str_null(&domain);
    ngx_str_set(&path, "/");
    ngx_str_set(&samesite, "Lax");
    secure = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "domain=", 7) == 0
            && value[i].len > 7)
        {
            domain.data = value[i].data + 7;
            domain.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "path=", 5) == 0
            && value[i].len > 5 && value[i].data[5] == '/')
        {
            path.data = value[i].data + 5;
            path.len = value[i].len - 5;
            continue;
        }

        if (ngx_strcmp(value[i].data, "secure") == 0) {
            secure = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "samesite=lax") == 0) {
            ngx_str_set(&samesite, "Lax");
            continue;
        }

        if (ngx_strcmp(value[i].data, "samesite=strict") == 0) {
            ngx_str_set(&samesite, "Strict");
            continue;
        }

        if (ngx_strcmp(value[i].data, "samesite=none") == 0) {
            ngx_str_set(&samesite, "None");
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_cookie: invalid parameter \"%V\"; "
                           "known are domain=, path=/..., secure, "
                           "samesite=lax|strict|none", &value[i]);
        return NGX_CONF_ERROR;
    }

    /* they go into the Set-Cookie header as they are */
    if (ngx_http_flashsale_cookie_value(&domain) != NGX_OK
        || ngx_http_flashsale_cookie_value(&path) != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_cookie: invalid domain= or path= "
                           "\"%V%V\"; no spaces, control characters, "
                           "\";\" or \",\"", &domain, &path);
        return NGX_CONF_ERROR;
    }

    if (samesite.data[0] == 'N' && !secure) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_cookie: samesite=none needs "
                           "\"secure\", browsers drop such cookies "
                           "otherwise");
        return NGX_CONF_ERROR;
    }

    return ngx_http_flashsale_cookie_attrs(cf, lcf->cookie, &domain, &path,
                                           secure, &samesite);
}


static ngx_int_t
ngx_http_flashsale_cookie_value(ngx_str_t *value)
{
    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < value->len; i++) {
        c = value->data[i];

        if (c <= ' ' || c >= 0x7f || c == ';' || c == ',') {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static char *
ngx_http_flashsale_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   which;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "waiting") == 0) {
        which = NGX_HTTP_FLASHSALE_PAGE_WAITING;

    } else if (ngx_strcmp(value[1].data, "sold_out") == 0) {
        which = NGX_HTTP_FLASHSALE_PAGE_SOLD_OUT;

    } else if (ngx_strcmp(value[1].data, "retry") == 0) {
        which = NGX_HTTP_FLASHSALE_PAGE_RETRY;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_page: unknown page \"%V\"; known are "
                           "waiting, sold_out, retry", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (lcf->pages[which]) {
        return "is duplicate";
    }

    return ngx_http_flashsale_page_load(cf, &value[2], &lcf->pages[which]);
}


static char *
ngx_http_flashsale_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (ngx_strcmp(value[1].data, "format=json") == 0) {
            lcf->status_format = NGX_HTTP_FLASHSALE_STATUS_JSON;

        } else if (ngx_strcmp(value[1].data, "format=prometheus") == 0) {
            lcf->status_format = NGX_HTTP_FLASHSALE_STATUS_PROMETHEUS;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_status: invalid parameter \"%V\"; "
                               "use format=json or format=prometheus",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_flashsale_status_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_flashsale_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    ngx_http_flashsale_redis_t       **rp;
    ngx_http_flashsale_main_conf_t    *fmcf;

    if (lcf->redis) {
        return "is duplicate";
    }

    if (ngx_http_flashsale_redis_conf(cf, &lcf->redis) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flashsale_module);

    rp = ngx_array_push(&fmcf->redis);
    if (rp == NULL) {
        return NGX_CONF_ERROR;
    }

    *rp = lcf->redis;

    return NGX_CONF_OK;
}


static char *
ngx_http_flashsale_reserve(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    if (lcf->reserve) {
        return "is duplicate";
    }

    return ngx_http_flashsale_reserve_conf(cf, &lcf->reserve);
}


static char *
ngx_http_flashsale_backend(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    ngx_str_t                 *value, name;
    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->backend) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (ngx_strncmp(value[1].data, "zone=", 5) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: invalid parameter \"%V\"; the only one "
                               "is zone=name", &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }

        name.data = value[1].data + 5;
        name.len = value[1].len - 5;

        lcf->backend_zone = ngx_http_flashsale_zone_get(cf, &name);
        if (lcf->backend_zone == NULL) {
            return NGX_CONF_ERROR;
        }

    }

    lcf->backend = cmd->offset;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_flashsale_backend_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_flashsale_breaker(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flashsale_loc_conf_t  *lcf = conf;

    if (lcf->breaker) {
        return "is duplicate";
    }

    return ngx_http_flashsale_breaker_conf(cf, &lcf->breaker);
}
