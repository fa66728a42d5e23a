
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include "ngx_http_flashsale_page.h"
#include "ngx_http_flashsale_room.h"


#define NGX_HTTP_FLASHSALE_PAGE_MAX       (256 * 1024)


static char *ngx_http_flashsale_page_compile(ngx_conf_t *cf, ngx_str_t *src,
    ngx_str_t *name, ngx_http_flashsale_page_t *page);
static ngx_int_t ngx_http_flashsale_page_render(ngx_http_request_t *r,
    ngx_http_flashsale_page_t *page, ngx_http_flashsale_page_values_t *v,
    ngx_str_t *out);
static void ngx_http_flashsale_page_eta_text(ngx_int_t eta, ngx_str_t *out,
    u_char *buf);
static ngx_int_t ngx_http_flashsale_page_header(ngx_http_request_t *r,
    char *key, ngx_str_t *value);


static ngx_str_t  ngx_http_flashsale_page_vars[] = {
    ngx_null_string,
    ngx_string("position"),
    ngx_string("eta"),
    ngx_string("eta_text"),
    ngx_string("retry_after"),
    ngx_string("zone"),
    ngx_string("progress"),
};


static ngx_str_t  ngx_http_flashsale_page_names[] = {
    ngx_string("waiting"),
    ngx_string("sold_out"),
    ngx_string("retry"),
};


#define NGX_HTTP_FLASHSALE_PAGE_HEAD                                          \
"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"     \
"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"  \
"<meta name=\"robots\" content=\"noindex\">\n"

#define NGX_HTTP_FLASHSALE_PAGE_STYLE                                         \
"<style>\n"                                                                   \
"body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\","           \
"Roboto,sans-serif;background:#f4f4f6;color:#1b1b1f}\n"                       \
"main{max-width:32rem;margin:12vh auto 0;padding:2rem;background:#fff;"       \
"border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.12)}\n"                  \
"h1{font-size:1.5rem;margin:0 0 1rem}\n"                                      \
".big{font-size:2.5rem;font-weight:700;margin:0}\n"                           \
"dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;"             \
"align-items:baseline}\n"                                                      \
"dt{color:#4a4a55}dd{margin:0;font-weight:600}\n"                             \
"small{color:#4a4a55}\n"                                                      \
"label{display:block;margin-top:1rem;color:#4a4a55}\n"                        \
"progress{width:100%;height:1rem;accent-color:#3a5bd9}\n"                     \
"a{color:#2743b8}\n"                                                          \
"@media (max-width:36rem){main{margin:0;border-radius:0;box-shadow:none;"     \
"min-height:100vh;box-sizing:border-box;padding:1.5rem}}\n"                   \
"</style>\n</head>\n<body>\n<main>\n"

static char  ngx_http_flashsale_builtin_waiting[] =
    NGX_HTTP_FLASHSALE_PAGE_HEAD
    "<meta http-equiv=\"refresh\" content=\"{{retry_after}}\">\n"
    "<title>You are in line</title>\n"
    NGX_HTTP_FLASHSALE_PAGE_STYLE
    "<h1>You are in line</h1>\n"
    "<p>So many people are shopping right now that we let them in a few "
    "at a time, in the order they arrived. Keep this page open: it "
    "refreshes by itself and takes you to the store when it is your "
    "turn.</p>\n"
    "<dl>\n"
    "<dt>Your place in line</dt><dd class=\"big\" id=\"position\">"
    "{{position}}</dd>\n"
    "<dt>Estimated wait</dt><dd id=\"eta\">{{eta_text}}</dd>\n"
    "</dl>\n"
    "<label for=\"progress\">Progress through the line</label>\n"
    "<progress id=\"progress\" max=\"100\" value=\"{{progress}}\">"
    "{{progress}}%</progress>\n"
    "<p><small>Refreshing this page will not lose your place. Next check "
    "in {{retry_after}} s.</small></p>\n"
    "</main>\n</body>\n</html>\n";

static char  ngx_http_flashsale_builtin_sold_out[] =
    NGX_HTTP_FLASHSALE_PAGE_HEAD
    "<title>Sold out</title>\n"
    NGX_HTTP_FLASHSALE_PAGE_STYLE
    "<h1>Sold out</h1>\n"
    "<p>Sorry, this item has just sold out: every one left is in a "
    "shopper's cart. Items held in carts come back if they are not "
    "bought, so it may be worth trying again in a few minutes.</p>\n"
    "<p><a href=\"/\">Back to the store</a></p>\n"
    "</main>\n</body>\n</html>\n";

static char  ngx_http_flashsale_builtin_retry[] =
    NGX_HTTP_FLASHSALE_PAGE_HEAD
    "<meta http-equiv=\"refresh\" content=\"{{retry_after}}\">\n"
    "<title>Please try again shortly</title>\n"
    NGX_HTTP_FLASHSALE_PAGE_STYLE
    "<h1>Please try again shortly</h1>\n"
    "<p>The store is very busy. This page tries again by itself in "
    "{{retry_after}} seconds; your place is kept.</p>\n"
    "</main>\n</body>\n</html>\n";

static char  *ngx_http_flashsale_builtin[] = {
    ngx_http_flashsale_builtin_waiting,
    ngx_http_flashsale_builtin_sold_out,
    ngx_http_flashsale_builtin_retry,
};


static ngx_str_t  ngx_http_flashsale_html_type =
    ngx_string("text/html; charset=utf-8");
static ngx_str_t  ngx_http_flashsale_json_type =
    ngx_string("application/json");


char *
ngx_http_flashsale_page_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_http_flashsale_page_t **page)
{
    char             *rv;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         src;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_page \"%V\" cannot be opened", file);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_page \"%V\": " ngx_fd_info_n " failed",
                           file);
        goto done;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_FLASHSALE_PAGE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_page \"%V\" is larger than %d bytes",
                           file, NGX_HTTP_FLASHSALE_PAGE_MAX);
        goto done;
    }

    src.len = (size_t) ngx_file_size(&fi);
    src.data = ngx_pnalloc(cf->pool, src.len + 1);
    if (src.data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, src.data, src.len);
    if (n == -1 || (size_t) n != src.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_page \"%V\": " ngx_read_fd_n " failed",
                           file);
        goto done;
    }

    *page = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_page_t));
    if (*page == NULL) {
        goto done;
    }

    rv = ngx_http_flashsale_page_compile(cf, &src, file, *page);

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    return rv;
}


ngx_http_flashsale_page_t *
ngx_http_flashsale_page_builtin(ngx_conf_t *cf, ngx_uint_t which)
{
    ngx_str_t                   src;
    ngx_http_flashsale_page_t  *page;

    page = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_page_t));
    if (page == NULL) {
        return NULL;
    }

    src.data = (u_char *) ngx_http_flashsale_builtin[which];
    src.len = ngx_strlen(src.data);

    if (ngx_http_flashsale_page_compile(cf, &src,
                                        &ngx_http_flashsale_page_names[which],
                                        page)
        != NGX_CONF_OK)
    {
        return NULL;
    }

    return page;
}


ngx_int_t
ngx_http_flashsale_page_waiting(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_http_flashsale_ctx_t *ctx)
{
    u_char                            *p;
    u_char                             pos[NGX_INT64_LEN], eta[NGX_INT_T_LEN];
    u_char                             retry[NGX_INT_T_LEN], eta_text[64];
    u_char                             progress[NGX_INT_T_LEN];
    ngx_str_t                          body;
    ngx_http_flashsale_page_values_t   v;

    if (ngx_http_flashsale_page_wants_json(r)) {
        body.len = sizeof("{\"state\":\"waiting\",\"position\":,\"eta\":,"
                          "\"retry_after\":,\"token\":\"\"}") - 1
                   + NGX_INT64_LEN + 2 * NGX_INT_T_LEN + ctx->token.len;

        body.data = ngx_pnalloc(r->pool, body.len);
        if (body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(body.data, "{\"state\":\"waiting\",\"position\":%uL,",
                        ctx->position);

        if (ctx->eta < 0) {
            p = ngx_cpymem(p, "\"eta\":null,", sizeof("\"eta\":null,") - 1);

        } else {
            p = ngx_sprintf(p, "\"eta\":%i,", ctx->eta);
        }

        p = ngx_sprintf(p, "\"retry_after\":%ui", ctx->retry_after);

        if (ctx->token.len) {
            /* API clients without a cookie jar keep their place with this */
            p = ngx_sprintf(p, ",\"token\":\"%V\"", &ctx->token);
        }

        *p++ = '}';
        body.len = p - body.data;

        return ngx_http_flashsale_page_send(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                            &ngx_http_flashsale_json_type,
                                            &body, ctx->retry_after, 0);
    }

    v.values[NGX_HTTP_FLASHSALE_VAR_POSITION].data = pos;
    v.values[NGX_HTTP_FLASHSALE_VAR_POSITION].len =
                                  ngx_sprintf(pos, "%uL", ctx->position) - pos;

    v.values[NGX_HTTP_FLASHSALE_VAR_ETA].data = eta;

    if (ctx->eta < 0) {
        v.values[NGX_HTTP_FLASHSALE_VAR_ETA].len =
                                  ngx_cpymem(eta, "unknown", 7) - eta;

    } else {
        v.values[NGX_HTTP_FLASHSALE_VAR_ETA].len =
                                  ngx_sprintf(eta, "%i", ctx->eta) - eta;
    }

    ngx_http_flashsale_page_eta_text(ctx->eta,
                                 &v.values[NGX_HTTP_FLASHSALE_VAR_ETA_TEXT],
                                 eta_text);

    v.values[NGX_HTTP_FLASHSALE_VAR_RETRY_AFTER].data = retry;
    v.values[NGX_HTTP_FLASHSALE_VAR_RETRY_AFTER].len =
                              ngx_sprintf(retry, "%ui", ctx->retry_after)
                              - retry;

    v.values[NGX_HTTP_FLASHSALE_VAR_ZONE] = lcf->zone->name;

    v.values[NGX_HTTP_FLASHSALE_VAR_PROGRESS].data = progress;
    v.values[NGX_HTTP_FLASHSALE_VAR_PROGRESS].len =
                      ngx_sprintf(progress, "%ui", ctx->progress) - progress;

    if (ngx_http_flashsale_page_render(r,
                                 lcf->pages[NGX_HTTP_FLASHSALE_PAGE_WAITING],
                                 &v, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flashsale_page_send(r, NGX_HTTP_OK,
                                        &ngx_http_flashsale_html_type,
                                        &body, ctx->retry_after, 1);
}


ngx_uint_t
ngx_http_flashsale_page_wants_json(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

#if (NGX_HTTP_HEADERS)
    h = r->headers_in.accept;
#else
    h = NULL;
#endif

    if (h == NULL) {
        return 0;
    }

    return ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                            (u_char *) "application/json",
                            sizeof("application/json") - 2)
           != NULL;
}


static char *
ngx_http_flashsale_page_compile(ngx_conf_t *cf, ngx_str_t *src,
    ngx_str_t *name, ngx_http_flashsale_page_t *page)
{
    u_char                          *p, *last, *open, *close;
    ngx_str_t                        var;
    ngx_uint_t                       i;
    ngx_http_flashsale_page_part_t  *part;

    if (ngx_array_init(&page->parts, cf->pool, 8,
                       sizeof(ngx_http_flashsale_page_part_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    p = src->data;
    last = p + src->len;

    while (p < last) {
        open = ngx_strlcasestrn(p, last, (u_char *) "{{", 1);

        if (open == NULL) {
            open = last;
        }

        if (open > p) {
            part = ngx_array_push(&page->parts);
            if (part == NULL) {
                return NGX_CONF_ERROR;
            }

            part->var = NGX_HTTP_FLASHSALE_VAR_TEXT;
            part->text.data = p;
            part->text.len = open - p;
            page->text_len += part->text.len;
        }

        if (open == last) {
            break;
        }

        close = ngx_strlcasestrn(open + 2, last, (u_char *) "}}", 1);
        if (close == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_page \"%V\": \"{{\" without "
                               "\"}}\"", name);
            return NGX_CONF_ERROR;
        }

        var.data = open + 2;
        var.len = close - var.data;

        for (i = 1; i < NGX_HTTP_FLASHSALE_VAR_N; i++) {
            if (var.len == ngx_http_flashsale_page_vars[i].len
                && ngx_strncmp(var.data, ngx_http_flashsale_page_vars[i].data,
                               var.len)
                   == 0)
            {
                break;
            }
        }

        if (i == NGX_HTTP_FLASHSALE_VAR_N) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_page \"%V\": unknown placeholder "
                               "\"{{%V}}\"; known are {{position}}, {{eta}}, "
                               "{{eta_text}}, {{retry_after}}, {{zone}}, "
                               "{{progress}}",
                               name, &var);
            return NGX_CONF_ERROR;
        }

        part = ngx_array_push(&page->parts);
        if (part == NULL) {
            return NGX_CONF_ERROR;
        }

        part->var = i;
        ngx_str_null(&part->text);

        p = close + 2;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_flashsale_page_render(ngx_http_request_t *r,
    ngx_http_flashsale_page_t *page, ngx_http_flashsale_page_values_t *v,
    ngx_str_t *out)
{
    u_char                          *p;
    size_t                           len;
    ngx_uint_t                       i;
    ngx_http_flashsale_page_part_t  *part;

    part = page->parts.elts;
    len = page->text_len;

    for (i = 0; i < page->parts.nelts; i++) {
        if (part[i].var != NGX_HTTP_FLASHSALE_VAR_TEXT) {
            len += v->values[part[i].var].len;
        }
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;

    for (i = 0; i < page->parts.nelts; i++) {
        if (part[i].var == NGX_HTTP_FLASHSALE_VAR_TEXT) {
            p = ngx_cpymem(p, part[i].text.data, part[i].text.len);

        } else if (v->values[part[i].var].len) {
            /* a placeholder a page does not fill is empty, data NULL */
            p = ngx_cpymem(p, v->values[part[i].var].data,
                           v->values[part[i].var].len);
        }
    }

    return NGX_OK;
}


static void
ngx_http_flashsale_page_eta_text(ngx_int_t eta, ngx_str_t *out, u_char *buf)
{
    ngx_int_t  n;

    out->data = buf;

    if (eta < 0) {
        out->len = ngx_sprintf(buf, "unknown: the sale is paused") - buf;

    } else if (eta < 60) {
        out->len = ngx_sprintf(buf, "less than a minute") - buf;

    } else if (eta < 3600) {
        n = (eta + 59) / 60;
        out->len = ngx_sprintf(buf, "about %i minute%s", n,
                               n == 1 ? "" : "s")
                   - buf;

    } else {
        n = (eta + 1799) / 3600;
        out->len = ngx_sprintf(buf, "about %i hour%s", n, n == 1 ? "" : "s")
                   - buf;
    }
}


ngx_int_t
ngx_http_flashsale_page_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body, ngx_uint_t retry_after,
    ngx_uint_t refresh)
{
    u_char       *p;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     value;
    ngx_chain_t   out;

    static ngx_str_t  no_store = ngx_string("no-store");

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /*
     * our pages are made for this request and have no validators: an
     * If-Unmodified-Since or If-Match must not turn a waiting page into
     * a 412 (and an operator's error_page for it into a second answer)
     */
    r->disable_not_modified = 1;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_length_n = body->len;

    if (ngx_http_flashsale_page_header(r, "Cache-Control", &no_store)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (retry_after) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.data = p;
        value.len = ngx_sprintf(p, "%ui", retry_after) - p;

        if (ngx_http_flashsale_page_header(r, "Retry-After", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* browsers follow "Refresh" with JavaScript off and whatever the
         * page template holds */
        if (refresh
            && ngx_http_flashsale_page_header(r, "Refresh", &value)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = body->len ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_flashsale_page_header(ngx_http_request_t *r, char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return NGX_OK;
}



ngx_int_t
ngx_http_flashsale_page_sold_out(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_str_t *sku)
{
    u_char                            *p;
    ngx_str_t                          body;
    ngx_http_flashsale_page_values_t   v;

    /* SKUs reaching here were checked: [A-Za-z0-9._:-], nothing to escape */
    if (ngx_http_flashsale_page_wants_json(r)) {
        body.len = sizeof("{\"state\":\"sold_out\",\"sku\":\"\"}") - 1
                   + sku->len;
        body.data = ngx_pnalloc(r->pool, body.len);
        if (body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(body.data, "{\"state\":\"sold_out\",\"sku\":\"%V\"}",
                        sku);
        body.len = p - body.data;

        return ngx_http_flashsale_page_send(r, NGX_HTTP_CONFLICT,
                                            &ngx_http_flashsale_json_type,
                                            &body, 0, 0);
    }

    ngx_memzero(&v, sizeof(ngx_http_flashsale_page_values_t));
    v.values[NGX_HTTP_FLASHSALE_VAR_ZONE] = lcf->zone->name;

    if (ngx_http_flashsale_page_render(r,
                                lcf->pages[NGX_HTTP_FLASHSALE_PAGE_SOLD_OUT],
                                &v, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flashsale_page_send(r, NGX_HTTP_CONFLICT,
                                        &ngx_http_flashsale_html_type,
                                        &body, 0, 0);
}


ngx_int_t
ngx_http_flashsale_page_retry(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_uint_t retry_after)
{
    u_char                            *p, retry[NGX_INT_T_LEN];
    ngx_str_t                          body;
    ngx_http_flashsale_page_values_t   v;

    if (ngx_http_flashsale_page_wants_json(r)) {
        body.len = sizeof("{\"state\":\"retry\",\"retry_after\":}") - 1
                   + NGX_INT_T_LEN;
        body.data = ngx_pnalloc(r->pool, body.len);
        if (body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(body.data, "{\"state\":\"retry\",\"retry_after\":%ui}",
                        retry_after);
        body.len = p - body.data;

        return ngx_http_flashsale_page_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            &ngx_http_flashsale_json_type,
                                            &body, retry_after, 0);
    }

    ngx_memzero(&v, sizeof(ngx_http_flashsale_page_values_t));
    v.values[NGX_HTTP_FLASHSALE_VAR_ZONE] = lcf->zone->name;
    v.values[NGX_HTTP_FLASHSALE_VAR_RETRY_AFTER].data = retry;
    v.values[NGX_HTTP_FLASHSALE_VAR_RETRY_AFTER].len =
                              ngx_sprintf(retry, "%ui", retry_after) - retry;

    if (ngx_http_flashsale_page_render(r,
                                   lcf->pages[NGX_HTTP_FLASHSALE_PAGE_RETRY],
                                   &v, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flashsale_page_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        &ngx_http_flashsale_html_type,
                                        &body, retry_after, 0);
}


ngx_int_t
ngx_http_flashsale_page_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message, ngx_str_t *sku)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   body;

    len = ngx_strlen(message) + (sku ? sku->len : 0);

    if (ngx_http_flashsale_page_wants_json(r)) {
        body.data = ngx_pnalloc(r->pool,
                                sizeof("{\"error\":\"\",\"sku\":\"\"}") + len);
        if (body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(body.data, "{\"error\":\"%s\"", message);

        if (sku) {
            p = ngx_sprintf(p, ",\"sku\":\"%V\"", sku);
        }

        *p++ = '}';
        body.len = p - body.data;

        return ngx_http_flashsale_page_send(r, status,
                                            &ngx_http_flashsale_json_type,
                                            &body, 0, 0);
    }

    /* the message is written up to three times: title, heading, text */
    body.data = ngx_pnalloc(r->pool,
                            sizeof(NGX_HTTP_FLASHSALE_PAGE_HEAD) - 1
                            + sizeof("<title></title>\n") - 1
                            + sizeof(NGX_HTTP_FLASHSALE_PAGE_STYLE) - 1
                            + sizeof("<h1></h1>\n<p>: </p>\n"
                                     "</main>\n</body>\n</html>\n")
                            + 3 * len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, NGX_HTTP_FLASHSALE_PAGE_HEAD,
                   sizeof(NGX_HTTP_FLASHSALE_PAGE_HEAD) - 1);
    p = ngx_sprintf(p, "<title>%s</title>\n", message);
    p = ngx_cpymem(p, NGX_HTTP_FLASHSALE_PAGE_STYLE,
                   sizeof(NGX_HTTP_FLASHSALE_PAGE_STYLE) - 1);
    p = ngx_sprintf(p, "<h1>%s</h1>\n", message);

    if (sku) {
        p = ngx_sprintf(p, "<p>%s: %V</p>\n", message, sku);
    }

    p = ngx_cpymem(p, "</main>\n</body>\n</html>\n",
                   sizeof("</main>\n</body>\n</html>\n") - 1);
    body.len = p - body.data;

    return ngx_http_flashsale_page_send(r, status,
                                        &ngx_http_flashsale_html_type,
                                        &body, 0, 0);
}


ngx_int_t
ngx_http_flashsale_page_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    return ngx_http_flashsale_page_send(r, status,
                                        &ngx_http_flashsale_json_type,
                                        body, 0, 0);
}


ngx_int_t
ngx_http_flashsale_page_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    u_char     *p;
    ngx_str_t   body;

    body.data = ngx_pnalloc(r->pool, sizeof("{\"error\":\"\"}")
                                     + ngx_strlen(message));
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body.data, "{\"error\":\"%s\"}", message);
    body.len = p - body.data;

    return ngx_http_flashsale_page_json(r, status, &body);
}
