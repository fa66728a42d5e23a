
/*
 * Tickets and passes as they arrive: the Authorization header and the
 * Cookie headers of a request, through ngx_http_flashsale_token_read()
 * (bearer extraction, cookie parsing, JWT shape, signature, libjwt decode,
 * claim checks, the per-worker cache of verified tokens).
 *
 * Input: one mode byte, then
 *   mode % 4 == 0  raw header values: "Authorization\n" then Cookie lines
 *   mode % 4 == 1  "header JSON\npayload JSON": signed with a configured
 *                  key (bit 2 picks which), so the claim checks run
 *   mode % 4 == 2  "payload JSON": a {"alg":"HS256","typ":"JWT"} header
 *   mode % 4 == 3  as 2, then the same request again: the answer from the
 *                  cache must be the answer of the full check
 * Bit 3 sends a signed token as a bearer token instead of the cookie,
 * bit 4 adds noise around it, bit 5 sets a second zone name.
 *
 * Every accepted token must give a visitor of 1..64 [A-Za-z0-9_-] and a
 * ticket >= 1; a token issued again from those claims must read back to
 * the same claims.  A payload the module's own claims reader takes must be
 * one libjwt decodes to the same claims (the reader only takes what it is
 * sure of and hands the rest to libjwt).
 *
 * fuzz-includes: ngx_http_flashsale_token.c
 */


#include "fuzz_common.h"
#include "ngx_http_flashsale_token.c"

#include <openssl/evp.h>
#include <openssl/hmac.h>


static ngx_http_flashsale_keys_t       fz_keys;
static ngx_http_flashsale_cookie_t     fz_cookie;
static ngx_http_flashsale_loc_conf_t   fz_lcf;
static ngx_str_t                       fz_zones[2] = {
    ngx_string("z"), ngx_string("drop")
};

static u_char  fz_key0[] = "0123456789abcdef0123456789abcdef-fuzz-key-0";
static u_char  fz_key1[] = "another key of at least thirty-two bytes: 1";


/* the keys as "flashsale_secret_file" loads them, through the module's
 * own loader (it keys an HMAC context per key, and so on) */
static void
fz_token_init(void)
{
    int                 fd;
    char                path[] = "/tmp/fuzz-token-keys-XXXXXX";
    ngx_conf_t         *cf;
    static ngx_uint_t   done;

    fz_init();

    if (done) {
        return;
    }

    done = 1;

    /* the cache's tag, against the SipHash-2-4 paper's test vectors (key
     * 00..0f, message 00..len-1): a wrong one would still be consistent,
     * so nothing else here would notice */
    {
        u_char          msg[64];
        ngx_uint_t      i;
        static const uint64_t  kat_key[2] = {
            0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL
        };
        static const struct { size_t len; uint64_t tag; }  kat[] = {
            { 0, 0x726fdb47dd0e0e31ULL }, { 1, 0x74f839c593dc67fdULL },
            { 15, 0xa129ca6149be45e5ULL }, { 63, 0x958a324ceb064572ULL }
        };

        for (i = 0; i < sizeof(msg); i++) {
            msg[i] = (u_char) i;
        }

        for (i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
            if (ngx_http_flashsale_siphash(kat_key, msg, kat[i].len)
                != kat[i].tag)
            {
                fprintf(stderr, "SipHash-2-4 of %zu bytes is wrong\n",
                        kat[i].len);
                abort();
            }
        }
    }

    fd = mkstemp(path);
    if (fd == -1
        || write(fd, fz_key0, sizeof(fz_key0) - 1) != sizeof(fz_key0) - 1
        || write(fd, "\n# a comment\n", 14) != 14
        || write(fd, fz_key1, sizeof(fz_key1) - 1) != sizeof(fz_key1) - 1
        || write(fd, "\n", 1) != 1
        || close(fd) != 0)
    {
        abort();
    }

    cf = fz_conf(fz_cycle.pool);

    fz_keys.file.len = ngx_strlen(path);
    fz_keys.file.data = ngx_pnalloc(fz_cycle.pool, fz_keys.file.len + 1);
    if (fz_keys.file.data == NULL) {
        abort();
    }

    ngx_memcpy(fz_keys.file.data, path, fz_keys.file.len + 1);

    if (ngx_http_flashsale_keys_load(cf, &fz_keys) != NGX_CONF_OK
        || fz_keys.keys.nelts != 2)
    {
        fprintf(stderr, "the keys did not load\n");
        abort();
    }

    unlink(path);

    ngx_str_set(&fz_cookie.name, "flashsale");
    ngx_str_set(&fz_cookie.attrs, "; Path=/; HttpOnly; SameSite=Lax");

    fz_lcf.keys = &fz_keys;
    fz_lcf.cookie = &fz_cookie;

    /* the worker's cache of verified tokens, as a worker starts it */
    if (ngx_http_flashsale_token_init_process(&fz_cycle) != NGX_OK) {
        abort();
    }
}


static size_t
fz_b64u(u_char *dst, const u_char *src, size_t len)
{
    ngx_str_t  d, s;

    d.data = dst;
    s.data = (u_char *) src;
    s.len = len;

    ngx_encode_base64url(&d, &s);

    return d.len;
}


/* header.payload.signature, HS256 with key k */
static ngx_str_t
fz_sign(ngx_pool_t *pool, const u_char *hdr, size_t hlen, const u_char *pl,
    size_t plen, ngx_str_t *k)
{
    u_char        *p, md[EVP_MAX_MD_SIZE];
    ngx_str_t      t;
    unsigned int   md_len;

    t.data = ngx_pnalloc(pool, ngx_base64_encoded_length(hlen)
                               + ngx_base64_encoded_length(plen)
                               + ngx_base64_encoded_length(32) + 2);
    if (t.data == NULL) {
        abort();
    }

    p = t.data;
    p += fz_b64u(p, hdr, hlen);
    *p++ = '.';
    p += fz_b64u(p, pl, plen);

    if (HMAC(EVP_sha256(), k->data, (int) k->len, t.data, p - t.data, md,
             &md_len)
        == NULL)
    {
        abort();
    }

    *p++ = '.';
    p += fz_b64u(p, md, md_len);

    t.len = p - t.data;

    return t;
}


static void
fz_check_claims(ngx_http_flashsale_claims_t *c)
{
    size_t  i;
    u_char  ch;

    if (c->visitor.len == 0 || c->visitor.len > NGX_HTTP_FLASHSALE_VISITOR_MAX
        || c->ticket < 1)
    {
        abort();
    }

    for (i = 0; i < c->visitor.len; i++) {
        ch = c->visitor.data[i];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z')
              || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_'))
        {
            abort();
        }
    }
}


static ngx_int_t
fz_read(ngx_pool_t *pool, ngx_str_t *zone, ngx_table_elt_t *auth,
    ngx_array_t *cookie_lines, ngx_http_flashsale_claims_t *claims,
    u_char *visitor)
{
    ngx_uint_t           i;
    ngx_table_elt_t    **ch, **lines;
    ngx_http_request_t  *r;

    r = fz_request(pool, &fz_lcf);

    r->headers_in.authorization = auth;

    lines = cookie_lines->elts;

    for (i = 0; i < cookie_lines->nelts; i++) {
        ch = ngx_array_push(&r->headers_in.cookies);
        if (ch == NULL) {
            abort();
        }

        *ch = lines[i];
    }

    ngx_memzero(claims, sizeof(ngx_http_flashsale_claims_t));

    return ngx_http_flashsale_token_read(r, &fz_lcf, zone, claims, visitor);
}


static void
fz_same_str(const char *what, ngx_str_t *a, ngx_str_t *b)
{
    if ((a->data == NULL) != (b->data == NULL)
        || (a->data && (a->len != b->len
                        || ngx_memcmp(a->data, b->data, a->len) != 0)))
    {
        fprintf(stderr, "claims reader and libjwt differ on %s\n", what);
        abort();
    }
}


static void
fz_same_int(const char *what, unsigned ha, long a, unsigned hb, long b)
{
    if (ha != hb || (ha && a != b)) {
        fprintf(stderr, "claims reader and libjwt differ on %s\n", what);
        abort();
    }
}


/* what the module's claims reader takes, libjwt reads the same way */
static void
fz_compare_readers(ngx_pool_t *pool, const u_char *json, size_t len)
{
    char                               *s;
    jwt_t                              *jwt;
    ngx_str_t                           token, *keys;
    ngx_http_flashsale_token_fields_t   ours, theirs;

    static u_char  hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

    if (ngx_http_flashsale_token_parse((u_char *) json, (u_char *) json + len,
                                       &ours)
        != NGX_OK)
    {
        return;
    }

    keys = fz_keys.keys.elts;
    token = fz_sign(pool, hdr, sizeof(hdr) - 1, json, len, &keys[0]);

    s = (char *) ngx_pnalloc(pool, token.len + 1);
    if (s == NULL) {
        abort();
    }

    (void) ngx_cpystrn((u_char *) s, token.data, token.len + 1);

    if (jwt_decode(&jwt, s, keys[0].data, (int) keys[0].len) != 0) {
        fprintf(stderr, "the claims reader took what libjwt refuses\n");
        abort();
    }

    ngx_http_flashsale_token_fields(jwt, &theirs);

    fz_same_str("iss", &ours.iss, &theirs.iss);
    fz_same_str("aud", &ours.aud, &theirs.aud);
    fz_same_str("sub", &ours.sub, &theirs.sub);
    fz_same_int("exp", ours.has_exp, ours.exp, theirs.has_exp, theirs.exp);
    fz_same_int("nbf", ours.has_nbf, ours.nbf, theirs.has_nbf, theirs.nbf);
    fz_same_int("iat", ours.has_iat, ours.iat, theirs.has_iat, theirs.iat);
    fz_same_int("tkt", ours.has_tkt, ours.tkt, theirs.has_tkt, theirs.tkt);
    fz_same_int("pos", ours.has_pos, ours.pos, theirs.has_pos, theirs.pos);
    fz_same_int("adm", 1, ours.adm, 1, theirs.adm);

    jwt_free(jwt);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                       *p, c;
    u_char                        visitor[NGX_HTTP_FLASHSALE_VISITOR_MAX];
    u_char                        visitor2[NGX_HTTP_FLASHSALE_VISITOR_MAX];
    size_t                        len, hlen;
    ngx_int_t                     rc, rc2;
    ngx_str_t                     token, *zone, *keys, cookie;
    ngx_uint_t                    mode, i;
    ngx_pool_t                   *pool;
    fz_input_t                    in;
    ngx_array_t                   lines;
    const u_char                 *s, *hdr;
    ngx_table_elt_t              *auth, **line;
    ngx_http_request_t           *hr;
    ngx_http_flashsale_claims_t   claims, claims2;

    static u_char  std_hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

    fz_token_init();

    if (size == 0) {
        return 0;
    }

    in.p = data;
    in.last = data + size;
    mode = fz_byte(&in);
    zone = &fz_zones[(mode >> 5) & 1];

    pool = ngx_create_pool(4096, &fz_log);
    if (pool == NULL) {
        abort();
    }

    /* headers live in a request of their own: fz_read() makes fresh ones */
    hr = fz_request(pool, &fz_lcf);
    auth = NULL;

    if (ngx_array_init(&lines, pool, 2, sizeof(ngx_table_elt_t *)) != NGX_OK) {
        abort();
    }

    if ((mode & 3) == 0) {
        len = fz_until(&in, '\n', &s);
        if (len || (mode & 0x40)) {
            auth = fz_header(hr, "Authorization", s, len);
        }

        while (in.p < in.last) {
            len = fz_until(&in, '\n', &s);
            line = ngx_array_push(&lines);
            if (line == NULL) {
                abort();
            }

            *line = fz_header(hr, "Cookie", s, len);
        }

    } else {
        if ((mode & 3) == 1) {
            hlen = fz_until(&in, '\n', &hdr);

        } else {
            hdr = std_hdr;
            hlen = sizeof(std_hdr) - 1;
        }

        fz_compare_readers(pool, in.p, in.last - in.p);

        keys = fz_keys.keys.elts;
        token = fz_sign(pool, hdr, hlen, in.p, in.last - in.p,
                        &keys[(mode >> 2) & 1]);

        cookie.data = ngx_pnalloc(pool, token.len + 32);
        if (cookie.data == NULL) {
            abort();
        }

        if (mode & 0x10) {
            /* the cookie among others, the bearer with extra spaces */
            p = (mode & 8)
                ? ngx_sprintf(cookie.data, "  Bearer   %V ", &token)
                : ngx_sprintf(cookie.data, "a=b; flashsale=%V; c=\"d\"",
                              &token);

        } else {
            p = (mode & 8) ? ngx_sprintf(cookie.data, "Bearer %V", &token)
                           : ngx_sprintf(cookie.data, "flashsale=%V", &token);
        }

        cookie.len = p - cookie.data;

        if (mode & 8) {
            auth = fz_header(hr, "Authorization", cookie.data, cookie.len);

        } else {
            line = ngx_array_push(&lines);
            if (line == NULL) {
                abort();
            }

            *line = fz_header(hr, "Cookie", cookie.data, cookie.len);
        }
    }

    rc = fz_read(pool, zone, auth, &lines, &claims, visitor);

    if (rc == NGX_OK) {
        fz_check_claims(&claims);

        if ((mode & 3) == 3) {
            /* the cache's answer is the full check's answer */
            rc2 = fz_read(pool, zone, auth, &lines, &claims2, visitor2);

            if (rc2 != NGX_OK
                || claims2.ticket != claims.ticket
                || claims2.start != claims.start
                || claims2.iat != claims.iat
                || claims2.exp != claims.exp
                || claims2.admitted != claims.admitted
                || claims2.visitor.len != claims.visitor.len
                || ngx_memcmp(claims2.visitor.data, claims.visitor.data,
                              claims.visitor.len) != 0)
            {
                fprintf(stderr, "a cached token reads differently\n");
                abort();
            }

            /* its signature, cached now, on a signed part one character
             * off, at the start or in the middle: the full check's "no" */
            for (i = 0; i < 2; i++) {
                p = claims.raw.data
                    + (i ? (claims.raw.len - NGX_HTTP_FLASHSALE_SIG_LEN) / 2
                         : 0);
                c = *p;
                *p = (c == 'A') ? 'B' : 'A';

                rc2 = fz_read(pool, zone, auth, &lines, &claims2, visitor2);

                *p = c;

                if (rc2 == NGX_OK) {
                    fprintf(stderr, "a cached signature passed other bytes\n");
                    abort();
                }
            }
        }

        /* issued again from its claims, it reads back the same */
        if (claims.exp > ngx_time() && claims.iat <= ngx_time()) {
            hr = fz_request(pool, &fz_lcf);

            if (ngx_http_flashsale_token_issue(hr, &fz_lcf, zone, &claims,
                                               &token)
                != NGX_OK)
            {
                abort();
            }

            cookie.data = ngx_pnalloc(pool, sizeof("Bearer ") + token.len);
            if (cookie.data == NULL) {
                abort();
            }

            p = ngx_sprintf(cookie.data, "Bearer %V", &token);
            auth = fz_header(hr, "Authorization", cookie.data,
                             p - cookie.data);

            lines.nelts = 0;

            rc2 = fz_read(pool, zone, auth, &lines, &claims2, visitor2);

            if (rc2 != NGX_OK || claims2.ticket != claims.ticket
                || claims2.admitted != claims.admitted
                || claims2.visitor.len != claims.visitor.len
                || ngx_memcmp(claims2.visitor.data, claims.visitor.data,
                              claims.visitor.len) != 0)
            {
                fprintf(stderr, "a re-issued token reads differently\n");
                abort();
            }
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
