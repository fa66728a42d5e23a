
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


/* nginx's headers first: they set _GNU_SOURCE, which memmem() needs */
#include "ngx_http_flashsale_token.h"

#include <sys/random.h>
#include <errno.h>
#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>


#define NGX_HTTP_FLASHSALE_KEYS_FILE_MAX  65536
#define NGX_HTTP_FLASHSALE_KEYS_MAX       16

/* HS256 signatures are 32 bytes: 43 base64url characters, no padding */
#define NGX_HTTP_FLASHSALE_SIG_LEN        43
#define NGX_HTTP_FLASHSALE_SIG_RAW        32

/* libjwt's header for HS256, base64url: {"alg":"HS256","typ":"JWT"} */
#define NGX_HTTP_FLASHSALE_HS256_HEADER  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

/* our claims take about 200 bytes; longer ones are left to libjwt */
#define NGX_HTTP_FLASHSALE_JSON_MAX       512

/* verified tokens remembered per worker: 2^12 sets of 4 (3 MB) */
#define NGX_HTTP_FLASHSALE_CACHE_SETS     4096
#define NGX_HTTP_FLASHSALE_CACHE_WAYS     4

/* cookies of our name checked in one request, the rest ignored */
#define NGX_HTTP_FLASHSALE_COOKIES_MAX    4


/*
 * A pass is sent with every request of an admitted shopper; checking it
 * each time (HMAC, then libjwt's base64 and JSON with their mallocs) is
 * the module's main cost.  A worker remembers the claims of tokens it
 * verified, found by their signature, and the expiry is still checked
 * every time.  The signed part must be the one that was verified: a good
 * signature copied onto other bytes would otherwise pass, and those bytes
 * go on to the store in the Cookie or Authorization header and back to
 * the client in a waiting page's "token".  Its length and a SipHash-2-4
 * of it under a key drawn when the worker starts stand in for the bytes
 * (a copy would be 250 bytes an entry): without the key a forger cannot
 * aim at a tag, and a blind guess matches once in 2^64.
 */
typedef struct {
    u_char                        sig[NGX_HTTP_FLASHSALE_SIG_LEN];
    ngx_uint_t                    generation; /* of the keys */
    u_char                       *zone;       /* name it was checked for */
    uint64_t                      tag;        /* of the signed part */
    size_t                        signed_len;
    uint64_t                      ticket;
    uint64_t                      start;
    time_t                        iat;
    time_t                        exp;
    ngx_uint_t                    admitted;
    size_t                        visitor_len;
    u_char                        visitor[NGX_HTTP_FLASHSALE_VISITOR_MAX];
} ngx_http_flashsale_token_cached_t;


/*
 * The claims this module reads, as libjwt gives them: a string whose data
 * is NULL was absent or not a string; an integer claim of another type is
 * there with the value 0, only an absent one has no has_ flag.
 */
typedef struct {
    ngx_str_t                     iss;
    ngx_str_t                     aud;
    ngx_str_t                     sub;
    long                          exp;
    long                          nbf;
    long                          iat;
    long                          tkt;
    long                          pos;
    unsigned                      has_exp:1;
    unsigned                      has_nbf:1;
    unsigned                      has_iat:1;
    unsigned                      has_tkt:1;
    unsigned                      has_pos:1;
    unsigned                      adm:1;
} ngx_http_flashsale_token_fields_t;


/* where the search for the next cookie of our name goes on */
typedef struct {
    ngx_uint_t                    line;        /* Cookie header */
    u_char                       *p;           /* NULL: its start */
} ngx_http_flashsale_cookie_iter_t;


static ngx_http_flashsale_token_cached_t  *ngx_http_flashsale_token_cache;
static uint64_t  ngx_http_flashsale_token_cache_key[2];
static ngx_uint_t  ngx_http_flashsale_keys_generation;


static ngx_int_t ngx_http_flashsale_token_bearer(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_http_flashsale_token_cookie_next(ngx_http_request_t *r,
    ngx_str_t *name, ngx_http_flashsale_cookie_iter_t *it, ngx_str_t *token);
static const char *ngx_http_flashsale_token_check(ngx_http_request_t *r,
    ngx_http_flashsale_keys_t *keys, ngx_str_t *zone, ngx_str_t *token,
    ngx_http_flashsale_claims_t *claims, u_char *visitor_buf);
static ngx_str_t *ngx_http_flashsale_token_key(ngx_http_flashsale_keys_t *keys,
    ngx_str_t *token, size_t signed_len, u_char *raw);
static ngx_http_flashsale_token_cached_t *ngx_http_flashsale_token_cached(
    u_char *sig, ngx_http_flashsale_token_cached_t **victim);
static uint64_t ngx_http_flashsale_siphash(const uint64_t *k,
    const u_char *p, size_t len);
static ngx_int_t ngx_http_flashsale_token_parse(u_char *p, u_char *last,
    ngx_http_flashsale_token_fields_t *f);
static u_char *ngx_http_flashsale_token_string(u_char *p, u_char *last,
    ngx_str_t *s);
static const char *ngx_http_flashsale_token_libjwt(ngx_http_request_t *r,
    ngx_str_t *token, ngx_str_t *key, ngx_str_t *zone,
    ngx_http_flashsale_claims_t *claims, u_char *visitor_buf);
static void ngx_http_flashsale_token_fields(jwt_t *jwt,
    ngx_http_flashsale_token_fields_t *f);
static const char *ngx_http_flashsale_token_claims(
    ngx_http_flashsale_token_fields_t *f, ngx_str_t *zone,
    ngx_http_flashsale_claims_t *claims, u_char *visitor_buf);
static ngx_int_t ngx_http_flashsale_token_grant_int(jwt_t *jwt,
    const char *name, long *value);
static ngx_int_t ngx_http_flashsale_keys_macs(ngx_conf_t *cf,
    ngx_http_flashsale_keys_t *keys);
static void ngx_http_flashsale_keys_cleanup(void *data);


char *
ngx_http_flashsale_keys_load(ngx_conf_t *cf, ngx_http_flashsale_keys_t *keys)
{
    u_char           *buf, *p, *last, *eol, *end;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *key;
    ngx_uint_t        line;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, &keys->file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(keys->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_secret_file \"%V\" cannot be opened; "
                           "create it with one key of at least %d bytes "
                           "per line", &keys->file, NGX_HTTP_FLASHSALE_KEY_MIN);
        return NGX_CONF_ERROR;
    }

    buf = NULL;
    n = 0;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_secret_file \"%V\": "
                           ngx_fd_info_n " failed", &keys->file);
        goto failed;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_FLASHSALE_KEYS_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_secret_file \"%V\" is larger than "
                           "%d bytes", &keys->file,
                           NGX_HTTP_FLASHSALE_KEYS_FILE_MAX);
        goto failed;
    }

    buf = ngx_pnalloc(cf->pool, (size_t) ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));
    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_secret_file \"%V\": "
                           ngx_read_fd_n " failed", &keys->file);
        goto failed;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", &keys->file);
    }

    if (ngx_array_init(&keys->keys, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    last = buf + n;
    line = 0;

    for (p = buf; p < last; p = eol + 1) {
        line++;

        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        end = eol;
        while (end > p && (end[-1] == '\r' || end[-1] == ' '
                           || end[-1] == '\t'))
        {
            end--;
        }

        if (end == p || *p == '#') {
            continue;
        }

        if (end - p < NGX_HTTP_FLASHSALE_KEY_MIN) {
            /* the key itself is never logged, only where it is */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_secret_file \"%V\": the key on "
                               "line %ui is %z bytes, keys must be at least "
                               "%d bytes (e.g. \"openssl rand -base64 48\")",
                               &keys->file, line, (size_t) (end - p),
                               NGX_HTTP_FLASHSALE_KEY_MIN);
            return NGX_CONF_ERROR;
        }

        if (keys->keys.nelts == NGX_HTTP_FLASHSALE_KEYS_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_secret_file \"%V\" has more than "
                               "%d keys", &keys->file,
                               NGX_HTTP_FLASHSALE_KEYS_MAX);
            return NGX_CONF_ERROR;
        }

        key = ngx_array_push(&keys->keys);
        if (key == NULL) {
            return NGX_CONF_ERROR;
        }

        key->len = end - p;
        key->data = p;
    }

    /* tokens a worker verified with other keys are not taken as checked */
    keys->generation = ++ngx_http_flashsale_keys_generation;

    if (keys->keys.nelts && ngx_http_flashsale_keys_macs(cf, keys) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (keys->keys.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_secret_file \"%V\" holds no key; "
                           "put one key of at least %d bytes per line",
                           &keys->file, NGX_HTTP_FLASHSALE_KEY_MIN);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

failed:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", &keys->file);
    }

    return NGX_CONF_ERROR;
}


char *
ngx_http_flashsale_cookie_attrs(ngx_conf_t *cf,
    ngx_http_flashsale_cookie_t *cookie, ngx_str_t *domain, ngx_str_t *path,
    ngx_uint_t secure, ngx_str_t *samesite)
{
    size_t   len;
    u_char  *p;

    len = sizeof("; Domain=") - 1 + domain->len
          + sizeof("; Path=") - 1 + path->len
          + sizeof("; Secure") - 1
          + sizeof("; HttpOnly") - 1
          + sizeof("; SameSite=") - 1 + samesite->len;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    cookie->attrs.data = p;

    if (domain->len) {
        p = ngx_sprintf(p, "; Domain=%V", domain);
    }

    p = ngx_sprintf(p, "; Path=%V", path);

    if (secure) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    p = ngx_sprintf(p, "; HttpOnly; SameSite=%V", samesite);

    cookie->attrs.len = p - cookie->attrs.data;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_flashsale_token_read(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_str_t *zone,
    ngx_http_flashsale_claims_t *claims, u_char *visitor_buf)
{
    u_char                             buf[NGX_HTTP_FLASHSALE_VISITOR_MAX];
    const char                        *err;
    ngx_str_t                          token;
    ngx_uint_t                         n;
    ngx_http_flashsale_claims_t        ticket;
    ngx_http_flashsale_cookie_iter_t   it;

    /* an API client's bearer token first */
    if (ngx_http_flashsale_token_bearer(r, &token) == NGX_OK) {
        err = ngx_http_flashsale_token_check(r, lcf->keys, zone, &token,
                                             claims, visitor_buf);
        if (err == NULL) {
            claims->raw = token;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flashsale: bearer token refused: %s", err);
    }

    /*
     * Then the browser's cookies of our name: more than one comes when an
     * old one with another path or domain lingers (a changed
     * flashsale_cookie, a cookie set from a sibling domain), and it comes
     * first.  Reading the first only would put a shopper at the back of
     * the line on every visit, so the first pass wins, else the first
     * ticket; only a few are checked, each costing a signature check.
     */
    ticket.raw.len = 0;
    it.line = 0;
    it.p = NULL;

    for (n = 0; n < NGX_HTTP_FLASHSALE_COOKIES_MAX; n++) {

        if (ngx_http_flashsale_token_cookie_next(r, &lcf->cookie->name, &it,
                                                 &token)
            != NGX_OK)
        {
            break;
        }

        err = ngx_http_flashsale_token_check(r, lcf->keys, zone, &token,
                                             claims,
                                             ticket.raw.len ? buf
                                                            : visitor_buf);
        if (err != NULL) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "flashsale: cookie token refused: %s", err);
            continue;
        }

        claims->raw = token;

        if (claims->admitted) {
            if (ticket.raw.len) {
                ngx_memcpy(visitor_buf, buf, claims->visitor.len);
                claims->visitor.data = visitor_buf;
            }

            return NGX_OK;
        }

        if (ticket.raw.len == 0) {
            ticket = *claims;
        }
    }

    if (ticket.raw.len) {
        *claims = ticket;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_flashsale_token_issue(ngx_http_request_t *r,
    ngx_http_flashsale_loc_conf_t *lcf, ngx_str_t *zone,
    ngx_http_flashsale_claims_t *claims, ngx_str_t *token)
{
    int         rc;
    char       *s;
    u_char      sub[NGX_HTTP_FLASHSALE_VISITOR_MAX + 1];
    jwt_t      *jwt;
    ngx_str_t  *key;

    if (jwt_new(&jwt) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "flashsale: jwt_new() failed");
        return NGX_ERROR;
    }

    ngx_memcpy(sub, claims->visitor.data, claims->visitor.len);
    sub[claims->visitor.len] = '\0';

    /* zone names are kept null-terminated for libjwt */
    rc = jwt_add_grant(jwt, "iss", "flashsale")
         | jwt_add_grant(jwt, "aud", (char *) zone->data)
         | jwt_add_grant(jwt, "sub", (char *) sub)
         | jwt_add_grant_int(jwt, "tkt", (long) claims->ticket)
         | jwt_add_grant_int(jwt, "iat", (long) claims->iat)
         | jwt_add_grant_int(jwt, "exp", (long) claims->exp);

    if (rc == 0 && claims->admitted) {
        rc = jwt_add_grant_bool(jwt, "adm", 1);
    }

    /* where the waiter started, for the waiting page's progress bar */
    if (rc == 0 && !claims->admitted && claims->start) {
        rc = jwt_add_grant_int(jwt, "pos", (long) claims->start);
    }

    key = lcf->keys->keys.elts;

    if (rc == 0) {
        rc = jwt_set_alg(jwt, JWT_ALG_HS256, key[0].data, (int) key[0].len);
    }

    if (rc != 0) {
        jwt_free(jwt);
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "flashsale: cannot build a token: %s", strerror(rc));
        return NGX_ERROR;
    }

    s = jwt_encode_str(jwt);
    jwt_free(jwt);

    if (s == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                      "flashsale: jwt_encode_str() failed");
        return NGX_ERROR;
    }

    token->len = ngx_strlen(s);
    token->data = ngx_pnalloc(r->pool, token->len);

    if (token->data != NULL) {
        ngx_memcpy(token->data, s, token->len);
    }

    free(s);

    return token->data ? NGX_OK : NGX_ERROR;
}


ngx_int_t
ngx_http_flashsale_token_cookie(ngx_http_request_t *r,
    ngx_http_flashsale_cookie_t *cookie, ngx_str_t *token, time_t max_age,
    ngx_str_t *value)
{
    size_t   len;
    u_char  *p;

    len = cookie->name.len + 1 + token->len
          + sizeof("; Max-Age=") - 1 + NGX_TIME_T_LEN + cookie->attrs.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;

    p = ngx_sprintf(p, "%V=%V; Max-Age=%T%V", &cookie->name, token, max_age,
                    &cookie->attrs);

    value->len = p - value->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_flashsale_token_init_process(ngx_cycle_t *cycle)
{
    size_t  size;

    size = NGX_HTTP_FLASHSALE_CACHE_SETS * NGX_HTTP_FLASHSALE_CACHE_WAYS
           * sizeof(ngx_http_flashsale_token_cached_t);

    /*
     * Once per worker, for its life, and not from a pool a reload frees.
     * Written through now, so the worker's memory does not creep up
     * during the sale as the cache fills.
     */
    if (getrandom(ngx_http_flashsale_token_cache_key,
                  sizeof(ngx_http_flashsale_token_cache_key), 0)
        != (ssize_t) sizeof(ngx_http_flashsale_token_cache_key))
    {
        /* a guessable key would let forged bytes through: no cache */
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "flashsale: getrandom() failed, every token will be "
                      "verified in full");
        return NGX_OK;
    }

    ngx_http_flashsale_token_cache = ngx_alloc(size, cycle->log);
    if (ngx_http_flashsale_token_cache == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ngx_http_flashsale_token_cache, size);

    return NGX_OK;
}


void
ngx_http_flashsale_token_exit_process(void)
{
    if (ngx_http_flashsale_token_cache) {
        ngx_free(ngx_http_flashsale_token_cache);
        ngx_http_flashsale_token_cache = NULL;
    }
}


void
ngx_http_flashsale_visitor_new(u_char *buf)
{
    u_char      rnd[NGX_HTTP_FLASHSALE_VISITOR_LEN / 2];
    ngx_uint_t  i;
    uint32_t    v;

    /* getrandom() does not block once the kernel pool is ready, which it
     * is long before nginx starts; GRND_NONBLOCK makes sure of it */
    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t) sizeof(rnd)) {
        for (i = 0; i < sizeof(rnd); i += sizeof(uint32_t)) {
            v = (uint32_t) ngx_random() ^ (uint32_t) ngx_current_msec;
            ngx_memcpy(&rnd[i], &v, sizeof(uint32_t));
        }
    }

    ngx_hex_dump(buf, rnd, sizeof(rnd));
}


/*
 * The next "name=value" pair of our name, as
 * ngx_http_parse_multi_header_lines() would find it, but with memmem(): it
 * runs for every request of every shopper and the generic parser was a
 * third of our cost.  An empty value is passed over.
 */
static ngx_int_t
ngx_http_flashsale_token_cookie_next(ngx_http_request_t *r, ngx_str_t *name,
    ngx_http_flashsale_cookie_iter_t *it, ngx_str_t *token)
{
    u_char           *p, *last, *start, *end;
    size_t            n;
    ngx_table_elt_t **cookies;

    cookies = r->headers_in.cookies.elts;

    for ( /* void */ ; it->line < r->headers_in.cookies.nelts; it->line++) {
        start = cookies[it->line]->value.data;
        end = start + cookies[it->line]->value.len;
        p = it->p ? it->p : start;

        while ((size_t) (end - p) > name->len) {
            p = memmem(p, end - p, name->data, name->len);

            if (p == NULL || (size_t) (end - p) <= name->len) {
                break;
            }

            if ((p == start || p[-1] == ' ' || p[-1] == ';' || p[-1] == '\t')
                && p[name->len] == '=')
            {
                p += name->len + 1;
                last = memchr(p, ';', end - p);
                n = (last ? last : end) - p;
                it->p = p + n;

                while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
                    n--;
                }

                if (n) {
                    token->data = p;
                    token->len = n;
                    return NGX_OK;
                }

                p = it->p;
                continue;
            }

            p++;
        }

        it->p = NULL;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_flashsale_token_bearer(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h == NULL) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    last = p + h->value.len;

    while (p < last && *p == ' ') {
        p++;
    }

    if (last - p < (ssize_t) sizeof("Bearer ") - 1
        || ngx_strncasecmp(p, (u_char *) "Bearer ", sizeof("Bearer ") - 1)
           != 0)
    {
        return NGX_DECLINED;
    }

    p += sizeof("Bearer ") - 1;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    token->data = p;
    token->len = last - p;

    return token->len ? NGX_OK : NGX_DECLINED;
}


static const char *
ngx_http_flashsale_token_check(ngx_http_request_t *r,
    ngx_http_flashsale_keys_t *keys, ngx_str_t *zone, ngx_str_t *token,
    ngx_http_flashsale_claims_t *claims, u_char *visitor_buf)
{
    u_char                             *p, *dot1, *dot2, *last;
    u_char                              raw[48];
    uint64_t                            tag;
    u_char                              json[NGX_HTTP_FLASHSALE_JSON_MAX];
    ngx_str_t                          *key, sig, dec, body;
    const char                         *err;
    ngx_http_flashsale_token_fields_t   fields;
    ngx_http_flashsale_token_cached_t  *c, *victim;

    if (token->len > NGX_HTTP_FLASHSALE_TOKEN_MAX) {
        return "too long";
    }

    p = token->data;
    last = p + token->len;

    /* memchr() rather than a byte loop: this runs for every pass */
    dot1 = memchr(p, '.', token->len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', last - (dot1 + 1)) : NULL;

    if (dot1 == NULL || dot2 == NULL || dot1 == p || dot2 == dot1 + 1
        || memchr(dot2 + 1, '.', last - (dot2 + 1)) != NULL)
    {
        return "not a JWT";
    }

    if (last - (dot2 + 1) != NGX_HTTP_FLASHSALE_SIG_LEN) {
        return "not an HS256 signature";
    }

    sig.data = dot2 + 1;
    sig.len = NGX_HTTP_FLASHSALE_SIG_LEN;

    /* the cache is keyed by the signature as sent: no decoding on a hit */
    c = ngx_http_flashsale_token_cached(sig.data, &victim);

    tag = ngx_http_flashsale_siphash(ngx_http_flashsale_token_cache_key, p,
                                     dot2 - p);

    if (c && c->generation == keys->generation && c->zone == zone->data
        && c->signed_len == (size_t) (dot2 - p) && c->tag == tag)
    {
        if (c->exp <= ngx_time() - NGX_HTTP_FLASHSALE_LEEWAY) {
            return "expired";
        }

        ngx_memcpy(visitor_buf, c->visitor, c->visitor_len);

        claims->visitor.data = visitor_buf;
        claims->visitor.len = c->visitor_len;
        claims->ticket = c->ticket;
        claims->start = c->start;
        claims->iat = c->iat;
        claims->exp = c->exp;
        claims->admitted = c->admitted;

        return NULL;
    }

    dec.data = raw;

    if (ngx_decode_base64url(&dec, &sig) != NGX_OK
        || dec.len != NGX_HTTP_FLASHSALE_SIG_RAW)
    {
        return "not an HS256 signature";
    }

    key = ngx_http_flashsale_token_key(keys, token, dot2 - p, raw);
    if (key == NULL) {
        return "bad signature";
    }

    /*
     * The signature is good, so these bytes come from a holder of the key.
     * The header and claims our issuer writes (libjwt's compact JSON) are
     * read here without libjwt, whose jwt_decode() checked the HMAC again
     * and parsed both parts with mallocs: two thirds of the cost of a pass
     * seen for the first time.  Anything else a key holder may have
     * written goes to libjwt, and a claim read here reads as libjwt reads
     * it (fuzz_token compares the two).
     */
    body.data = dot1 + 1;
    body.len = dot2 - body.data;
    dec.data = json;

    if (dot1 - p == sizeof(NGX_HTTP_FLASHSALE_HS256_HEADER) - 1
        && ngx_strncmp(p, NGX_HTTP_FLASHSALE_HS256_HEADER, dot1 - p) == 0
        && body.len <= ngx_base64_encoded_length(sizeof(json)) - 2
        && ngx_decode_base64url(&dec, &body) == NGX_OK
        && ngx_http_flashsale_token_parse(json, json + dec.len, &fields)
           == NGX_OK)
    {
        err = ngx_http_flashsale_token_claims(&fields, zone, claims,
                                              visitor_buf);

    } else {
        err = ngx_http_flashsale_token_libjwt(r, token, key, zone, claims,
                                              visitor_buf);
    }

    /* the same signature checked for another zone or keys is replaced */
    c = c ? c : victim;

    if (err == NULL && c) {
        ngx_memcpy(c->sig, sig.data, NGX_HTTP_FLASHSALE_SIG_LEN);
        c->tag = tag;
        c->signed_len = dot2 - p;
        c->generation = keys->generation;
        c->zone = zone->data;
        c->ticket = claims->ticket;
        c->start = claims->start;
        c->iat = claims->iat;
        c->exp = claims->exp;
        c->admitted = claims->admitted;
        c->visitor_len = claims->visitor.len;
        ngx_memcpy(c->visitor, claims->visitor.data, claims->visitor.len);
    }

    return err;
}


/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012), written from the paper: a
 * keyed hash made for short inputs.  A pass's signed part of about 230
 * bytes costs about 1 000 instructions (callgrind), where the HMAC and
 * the claims' parse the cache saves cost about 20 000.
 */
#define ngx_http_flashsale_rotl(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_flashsale_sipround(v0, v1, v2, v3)                          \
    v0 += v1; v1 = ngx_http_flashsale_rotl(v1, 13); v1 ^= v0;                 \
    v0 = ngx_http_flashsale_rotl(v0, 32);                                     \
    v2 += v3; v3 = ngx_http_flashsale_rotl(v3, 16); v3 ^= v2;                 \
    v0 += v3; v3 = ngx_http_flashsale_rotl(v3, 21); v3 ^= v0;                 \
    v2 += v1; v1 = ngx_http_flashsale_rotl(v1, 17); v1 ^= v2;                 \
    v2 = ngx_http_flashsale_rotl(v2, 32)


static uint64_t
ngx_http_flashsale_siphash(const uint64_t *k, const u_char *p, size_t len)
{
    uint64_t       v0, v1, v2, v3, m;
    ngx_uint_t     i;
    const u_char  *last;

    v0 = k[0] ^ 0x736f6d6570736575ULL;
    v1 = k[1] ^ 0x646f72616e646f6dULL;
    v2 = k[0] ^ 0x6c7967656e657261ULL;
    v3 = k[1] ^ 0x7465646279746573ULL;

    last = p + (len & ~(size_t) 7);

    for ( /* void */ ; p < last; p += 8) {
#if (NGX_HAVE_LITTLE_ENDIAN)
        ngx_memcpy(&m, p, sizeof(uint64_t));
#else
        m = (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
            | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
            | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
            | (uint64_t) p[7] << 56;
#endif

        v3 ^= m;
        ngx_http_flashsale_sipround(v0, v1, v2, v3);
        ngx_http_flashsale_sipround(v0, v1, v2, v3);
        v0 ^= m;
    }

    /* the last 0-7 bytes, and the length in the top byte */
    m = (uint64_t) len << 56;

    for (i = 0; i < (len & 7); i++) {
        m |= (uint64_t) p[i] << (8 * i);
    }

    v3 ^= m;
    ngx_http_flashsale_sipround(v0, v1, v2, v3);
    ngx_http_flashsale_sipround(v0, v1, v2, v3);
    v0 ^= m;

    v2 ^= 0xff;

    for (i = 0; i < 4; i++) {
        ngx_http_flashsale_sipround(v0, v1, v2, v3);
    }

    return v0 ^ v1 ^ v2 ^ v3;
}


/*
 * In constant time, as CRYPTO_memcmp() is (a cached signature must not
 * leak byte by byte), but a word at a time: CRYPTO_memcmp()'s byte loop
 * over four ways was 2.7% of a worker's time.  The sixth word overlaps
 * the fifth to cover the 43rd byte.
 */
static ngx_inline ngx_uint_t
ngx_http_flashsale_sig_equal(const u_char *a, const u_char *b)
{
    uint64_t           x, y, d;
    ngx_uint_t         i;

    static const size_t  at[] = { 0, 8, 16, 24, 32,
                                   NGX_HTTP_FLASHSALE_SIG_LEN - 8 };

    d = 0;

    for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        ngx_memcpy(&x, a + at[i], sizeof(uint64_t));
        ngx_memcpy(&y, b + at[i], sizeof(uint64_t));
        d |= x ^ y;
    }

    return d == 0;
}


static ngx_http_flashsale_token_cached_t *
ngx_http_flashsale_token_cached(u_char *sig,
    ngx_http_flashsale_token_cached_t **victim)
{
    uint64_t                            v;
    ngx_uint_t                          i;
    ngx_http_flashsale_token_cached_t  *set;

    static ngx_uint_t  turn;

    *victim = NULL;

    if (ngx_http_flashsale_token_cache == NULL) {
        return NULL;
    }

    /* an HMAC in base64: its first characters are as good as a hash,
     * mixed only so that every bit of them counts */
    ngx_memcpy(&v, sig, sizeof(uint64_t));
    v *= 0x9e3779b97f4a7c15ULL;

    set = &ngx_http_flashsale_token_cache[(v >> 52)
                                          * NGX_HTTP_FLASHSALE_CACHE_WAYS];

    for (i = 0; i < NGX_HTTP_FLASHSALE_CACHE_WAYS; i++) {
        if (ngx_http_flashsale_sig_equal(set[i].sig, sig)) {
            return &set[i];
        }

        if (*victim == NULL && set[i].generation == 0) {
            *victim = &set[i];
        }
    }

    /* a full set gives up its entries in turn */
    if (*victim == NULL) {
        *victim = &set[turn++ % NGX_HTTP_FLASHSALE_CACHE_WAYS];
    }

    return NULL;
}


static ngx_str_t *
ngx_http_flashsale_token_key(ngx_http_flashsale_keys_t *keys,
    ngx_str_t *token, size_t signed_len, u_char *raw)
{
    u_char         md[EVP_MAX_MD_SIZE];
    size_t         md_len;
    ngx_str_t     *key, *found;
    ngx_uint_t     i;
    EVP_MAC_CTX  **mac;

    key = keys->keys.elts;
    mac = keys->macs.elts;
    found = NULL;

    /* every key is tried, so the time taken does not tell which matched;
     * a NULL key restarts each keyed context without redoing the key */
    for (i = 0; i < keys->keys.nelts; i++) {
        if (EVP_MAC_init(mac[i], NULL, 0, NULL) != 1
            || EVP_MAC_update(mac[i], token->data, signed_len) != 1
            || EVP_MAC_final(mac[i], md, &md_len, sizeof(md)) != 1
            || md_len != NGX_HTTP_FLASHSALE_SIG_RAW)
        {
            continue;
        }

        if (CRYPTO_memcmp(md, raw, NGX_HTTP_FLASHSALE_SIG_RAW) == 0
            && found == NULL)
        {
            found = &key[i];
        }
    }

    return found;
}


/*
 * A flat JSON object of strings without escapes, integers of up to 18
 * digits, true, false and null, as libjwt writes our claims.  NGX_DECLINED
 * is "not sure", never "refused": libjwt then reads the token.  A repeated
 * name keeps its last value, as jansson does.
 */
static ngx_int_t
ngx_http_flashsale_token_parse(u_char *p, u_char *last,
    ngx_http_flashsale_token_fields_t *f)
{
    long        n, *num;
    u_char      c;
    unsigned    neg, digits, has;
    ngx_str_t   name, str, *sp;

    ngx_memzero(f, sizeof(ngx_http_flashsale_token_fields_t));

#define ngx_http_flashsale_json_ws(p, last)                                   \
    while (p < last && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) \
        p++

    ngx_http_flashsale_json_ws(p, last);

    if (p == last || *p++ != '{') {
        return NGX_DECLINED;
    }

    ngx_http_flashsale_json_ws(p, last);

    if (p < last && *p == '}') {
        p++;
        goto done;
    }

    for ( ;; ) {
        p = ngx_http_flashsale_token_string(p, last, &name);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        ngx_http_flashsale_json_ws(p, last);

        if (p == last || *p++ != ':') {
            return NGX_DECLINED;
        }

        ngx_http_flashsale_json_ws(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        sp = NULL;
        num = NULL;
        has = 0;

        if (name.len == 3) {
            if (ngx_strncmp(name.data, "iss", 3) == 0) {
                sp = &f->iss;
            } else if (ngx_strncmp(name.data, "aud", 3) == 0) {
                sp = &f->aud;
            } else if (ngx_strncmp(name.data, "sub", 3) == 0) {
                sp = &f->sub;
            } else if (ngx_strncmp(name.data, "exp", 3) == 0) {
                num = &f->exp;
            } else if (ngx_strncmp(name.data, "nbf", 3) == 0) {
                num = &f->nbf;
            } else if (ngx_strncmp(name.data, "iat", 3) == 0) {
                num = &f->iat;
            } else if (ngx_strncmp(name.data, "tkt", 3) == 0) {
                num = &f->tkt;
            } else if (ngx_strncmp(name.data, "pos", 3) == 0) {
                num = &f->pos;
            } else if (ngx_strncmp(name.data, "adm", 3) == 0) {
                f->adm = 0;
            }
        }

        /*
         * As libjwt 1.10 reads a claim of another type: a string claim is
         * absent, an integer claim is 0 (its jwt_get_grant_int() sets no
         * errno then), and adm is false.
         */
        if (sp) {
            ngx_str_null(sp);
        }

        if (num) {
            *num = 0;
            has = 1;
        }

        c = *p;

        if (c == '"') {
            p = ngx_http_flashsale_token_string(p, last, &str);
            if (p == NULL) {
                return NGX_DECLINED;
            }

            if (sp) {
                *sp = str;
            }

        } else if (c == '-' || (c >= '0' && c <= '9')) {
            neg = (c == '-');
            p += neg;
            n = 0;
            digits = 0;

            while (p < last && *p >= '0' && *p <= '9') {
                if (++digits > 18 || (digits == 2 && n == 0)) {
                    return NGX_DECLINED;
                }

                n = n * 10 + (*p++ - '0');
            }

            /* fractions and exponents are left to libjwt */
            if (digits == 0
                || (p < last && (*p == '.' || *p == 'e' || *p == 'E')))
            {
                return NGX_DECLINED;
            }

            if (num) {
                *num = neg ? -n : n;
            }

        } else if (last - p >= 4 && ngx_strncmp(p, "true", 4) == 0) {
            p += 4;

            if (name.len == 3 && ngx_strncmp(name.data, "adm", 3) == 0) {
                f->adm = 1;
            }

        } else if (last - p >= 5 && ngx_strncmp(p, "false", 5) == 0) {
            p += 5;

        } else if (last - p >= 4 && ngx_strncmp(p, "null", 4) == 0) {
            p += 4;

        } else {
            /* objects, arrays, anything else */
            return NGX_DECLINED;
        }

        if (has) {
            if (num == &f->exp) {
                f->has_exp = 1;
            } else if (num == &f->nbf) {
                f->has_nbf = 1;
            } else if (num == &f->iat) {
                f->has_iat = 1;
            } else if (num == &f->tkt) {
                f->has_tkt = 1;
            } else {
                f->has_pos = 1;
            }
        }

        ngx_http_flashsale_json_ws(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        c = *p++;

        if (c == '}') {
            break;
        }

        if (c != ',') {
            return NGX_DECLINED;
        }

        ngx_http_flashsale_json_ws(p, last);
    }

done:

    ngx_http_flashsale_json_ws(p, last);

#undef ngx_http_flashsale_json_ws

    return p == last ? NGX_OK : NGX_DECLINED;
}


/* a JSON string of printable ASCII without escapes; NULL: not sure */
static u_char *
ngx_http_flashsale_token_string(u_char *p, u_char *last, ngx_str_t *s)
{
    u_char  *start;

    if (p == last || *p++ != '"') {
        return NULL;
    }

    start = p;

    while (p < last && *p != '"') {
        if (*p < 0x20 || *p > 0x7e || *p == '\\') {
            return NULL;
        }

        p++;
    }

    if (p == last) {
        return NULL;
    }

    s->data = start;
    s->len = p - start;

    return p + 1;
}


/* what our own reader is not sure of: libjwt decodes it and checks it */
static const char *
ngx_http_flashsale_token_libjwt(ngx_http_request_t *r, ngx_str_t *token,
    ngx_str_t *key, ngx_str_t *zone, ngx_http_flashsale_claims_t *claims,
    u_char *visitor_buf)
{
    int                                 rc;
    u_char                             *s;
    jwt_t                              *jwt;
    const char                         *err;
    ngx_http_flashsale_token_fields_t   f;

    s = ngx_pnalloc(r->pool, token->len + 1);
    if (s == NULL) {
        return "no memory";
    }

    (void) ngx_cpystrn(s, token->data, token->len + 1);

    rc = jwt_decode(&jwt, (char *) s, key->data, (int) key->len);
    if (rc != 0) {
        return "cannot be decoded";
    }

    /* the signature matched as HS256 already; the header must agree */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        jwt_free(jwt);
        return "algorithm is not HS256";
    }

    ngx_http_flashsale_token_fields(jwt, &f);

    /* the strings are libjwt's until jwt_free() */
    err = ngx_http_flashsale_token_claims(&f, zone, claims, visitor_buf);

    jwt_free(jwt);

    return err;
}


static void
ngx_http_flashsale_token_fields(jwt_t *jwt,
    ngx_http_flashsale_token_fields_t *f)
{
    const char  *v;

    ngx_memzero(f, sizeof(ngx_http_flashsale_token_fields_t));

    v = jwt_get_grant(jwt, "iss");
    if (v) {
        f->iss.data = (u_char *) v;
        f->iss.len = ngx_strlen(v);
    }

    v = jwt_get_grant(jwt, "aud");
    if (v) {
        f->aud.data = (u_char *) v;
        f->aud.len = ngx_strlen(v);
    }

    v = jwt_get_grant(jwt, "sub");
    if (v) {
        f->sub.data = (u_char *) v;
        f->sub.len = ngx_strlen(v);
    }

    f->has_exp = (ngx_http_flashsale_token_grant_int(jwt, "exp", &f->exp)
                 == NGX_OK);
    f->has_nbf = (ngx_http_flashsale_token_grant_int(jwt, "nbf", &f->nbf)
                 == NGX_OK);
    f->has_iat = (ngx_http_flashsale_token_grant_int(jwt, "iat", &f->iat)
                 == NGX_OK);
    f->has_tkt = (ngx_http_flashsale_token_grant_int(jwt, "tkt", &f->tkt)
                 == NGX_OK);
    f->has_pos = (ngx_http_flashsale_token_grant_int(jwt, "pos", &f->pos)
                 == NGX_OK);

    errno = 0;
    f->adm = (jwt_get_grant_bool(jwt, "adm") == 1 && errno == 0);
}


static const char *
ngx_http_flashsale_token_claims(ngx_http_flashsale_token_fields_t *f,
    ngx_str_t *zone, ngx_http_flashsale_claims_t *claims, u_char *visitor_buf)
{
    time_t      now;
    ngx_uint_t  i;

    now = ngx_time();

    if (f->iss.data == NULL || f->iss.len != sizeof("flashsale") - 1
        || ngx_strncmp(f->iss.data, "flashsale", f->iss.len) != 0)
    {
        return "wrong or missing iss";
    }

    if (f->aud.data == NULL || f->aud.len != zone->len
        || ngx_strncmp(f->aud.data, zone->data, zone->len) != 0)
    {
        return "wrong or missing aud";
    }

    if (!f->has_exp) {
        return "no integer exp";
    }

    /* written so that an exp near LONG_MAX cannot overflow */
    if (f->exp <= now - NGX_HTTP_FLASHSALE_LEEWAY) {
        return "expired";
    }

    if (f->has_nbf && f->nbf > now + NGX_HTTP_FLASHSALE_LEEWAY) {
        return "not yet valid";
    }

    if (!f->has_iat || f->iat > now + NGX_HTTP_FLASHSALE_LEEWAY) {
        return "no or future iat";
    }

    if (!f->has_tkt || f->tkt < 1) {
        return "no ticket number";
    }

    if (f->sub.data == NULL || f->sub.len == 0
        || f->sub.len > NGX_HTTP_FLASHSALE_VISITOR_MAX)
    {
        return "no valid sub";
    }

    for (i = 0; i < f->sub.len; i++) {
        if (!ngx_http_flashsale_name_char(f->sub.data[i])) {
            return "no valid sub";
        }
    }

    ngx_memcpy(visitor_buf, f->sub.data, f->sub.len);

    claims->visitor.data = visitor_buf;
    claims->visitor.len = f->sub.len;
    claims->ticket = (uint64_t) f->tkt;
    claims->start = (f->has_pos && f->pos > 0) ? (uint64_t) f->pos : 0;
    claims->iat = f->iat;
    claims->exp = f->exp;
    claims->admitted = f->adm;

    return NULL;
}


static ngx_int_t
ngx_http_flashsale_token_grant_int(jwt_t *jwt, const char *name, long *value)
{
    /* libjwt reports a missing grant through errno only */
    errno = 0;
    *value = jwt_get_grant_int(jwt, name);

    if (errno != 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * One HMAC-SHA256 context per key, keyed once at configuration: a
 * one-shot HMAC() fetched the digest, allocated a context and hashed the
 * key's pads again for every token, over half of its cost.
 */
static ngx_int_t
ngx_http_flashsale_keys_macs(ngx_conf_t *cf, ngx_http_flashsale_keys_t *keys)
{
    EVP_MAC             *hmac;
    ngx_str_t           *key;
    ngx_uint_t           i;
    OSSL_PARAM           params[2];
    EVP_MAC_CTX        **mac;
    ngx_pool_cleanup_t  *cln;

    if (ngx_array_init(&keys->macs, cf->pool, keys->keys.nelts,
                       sizeof(EVP_MAC_CTX *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_flashsale_keys_cleanup;
    cln->data = keys;

    hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (hmac == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_secret_file \"%V\": OpenSSL has no "
                           "HMAC", &keys->file);
        return NGX_ERROR;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    key = keys->keys.elts;

    for (i = 0; i < keys->keys.nelts; i++) {
        mac = ngx_array_push(&keys->macs);
        if (mac == NULL) {
            EVP_MAC_free(hmac);
            return NGX_ERROR;
        }

        *mac = EVP_MAC_CTX_new(hmac);

        if (*mac == NULL
            || EVP_MAC_init(*mac, key[i].data, key[i].len, params) != 1)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flashsale_secret_file \"%V\": cannot set "
                               "up HMAC-SHA256 for key number %ui",
                               &keys->file, i + 1);
            EVP_MAC_free(hmac);
            return NGX_ERROR;
        }
    }

    /* each context holds its own reference */
    EVP_MAC_free(hmac);

    return NGX_OK;
}


static void
ngx_http_flashsale_keys_cleanup(void *data)
{
    ngx_http_flashsale_keys_t  *keys = data;

    ngx_uint_t     i;
    EVP_MAC_CTX  **mac;

    mac = keys->macs.elts;

    for (i = 0; i < keys->macs.nelts; i++) {
        EVP_MAC_CTX_free(mac[i]);
    }
}
