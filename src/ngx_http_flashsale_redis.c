
/*
 * Copyright (C) ngx_http_flashsale_module authors
 */


#include <openssl/sha.h>

#include "ngx_http_flashsale_redis.h"


#define NGX_HTTP_FLASHSALE_REDIS_CLOSED       0
#define NGX_HTTP_FLASHSALE_REDIS_CONNECTING   1
#define NGX_HTTP_FLASHSALE_REDIS_READY        2

/* a connection this far behind is not given more work */
#define NGX_HTTP_FLASHSALE_REDIS_INFLIGHT_MAX 1024

/* in flight on a connection before another one is opened */
#define NGX_HTTP_FLASHSALE_REDIS_BATCH        8

/* command buffers grow in steps of 256 and are kept up to 4 KB */
#define NGX_HTTP_FLASHSALE_REDIS_CMD_ALIGN    256
#define NGX_HTTP_FLASHSALE_REDIS_CMD_KEEP     4096

#define NGX_HTTP_FLASHSALE_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_FLASHSALE_REDIS_BACKOFF_MAX  2000


typedef struct {
    ngx_http_flashsale_redis_t   *redis;
    ngx_peer_connection_t         peer;
    redisReader                  *reader;

    ngx_queue_t                   inflight;
    ngx_uint_t                    ninflight;

    u_char                       *out;
    size_t                        out_pos;
    size_t                        out_len;
    size_t                        out_size;

    ngx_uint_t                    state;
    ngx_uint_t                    failures;
    ngx_msec_t                    retry_at;
} ngx_http_flashsale_redis_conn_t;


struct ngx_http_flashsale_redis_cmd_s {
    ngx_queue_t                   queue;
    ngx_http_flashsale_redis_handler_pt  handler;
    void                         *data;
    ngx_msec_t                    start;

    /*
     * The command's RESP, in a buffer the record keeps when it goes back
     * to the free list: a reservation mallocs nothing for its command.
     * A scripted command's bytes are sent again after NOSCRIPT.
     */
    u_char                       *buf;
    size_t                        size;
    size_t                        len;
    unsigned                      script:1;

    const char                   *what;      /* internal commands */
    unsigned                      internal:1;
    unsigned                      retried:1;
};


struct ngx_http_flashsale_redis_s {
    ngx_str_t                     address;   /* as configured */
    ngx_addr_t                   *addr;
    ngx_str_t                     password;
    ngx_int_t                     db;
    ngx_msec_t                    connect_timeout;
    ngx_msec_t                    timeout;
    ngx_uint_t                    pool;
    ngx_array_t                   scripts;   /* of script * */

    /* per worker, made on first use */
    ngx_http_flashsale_redis_conn_t  *conns;
    ngx_uint_t                    next;
    ngx_msec_t                    probe_at;
    ngx_queue_t                   free;
};


static ngx_http_flashsale_redis_conn_t *ngx_http_flashsale_redis_pick(
    ngx_http_flashsale_redis_t *redis);
static ngx_int_t ngx_http_flashsale_redis_connect(
    ngx_http_flashsale_redis_conn_t *cn);
static ngx_int_t ngx_http_flashsale_redis_load_scripts(
    ngx_http_flashsale_redis_conn_t *cn);
static ngx_int_t ngx_http_flashsale_redis_internal(
    ngx_http_flashsale_redis_conn_t *cn, const char *what, ngx_uint_t argc,
    ngx_str_t *argv);
static ngx_int_t ngx_http_flashsale_redis_append(
    ngx_http_flashsale_redis_conn_t *cn, char *data, size_t len);
static void ngx_http_flashsale_redis_queue(ngx_http_flashsale_redis_conn_t *cn,
    ngx_http_flashsale_redis_cmd_t *cmd);
static ngx_http_flashsale_redis_cmd_t *ngx_http_flashsale_redis_cmd_alloc(
    ngx_http_flashsale_redis_t *redis);
static void ngx_http_flashsale_redis_cmd_free(ngx_http_flashsale_redis_t *redis,
    ngx_http_flashsale_redis_cmd_t *cmd);
static ngx_int_t ngx_http_flashsale_redis_format(
    ngx_http_flashsale_redis_cmd_t *cmd, ngx_uint_t argc, ngx_str_t *argv);
static void ngx_http_flashsale_redis_write_handler(ngx_event_t *wev);
static void ngx_http_flashsale_redis_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_flashsale_redis_reply(
    ngx_http_flashsale_redis_conn_t *cn, redisReply *reply);
static void ngx_http_flashsale_redis_timer(ngx_http_flashsale_redis_conn_t *cn);
static void ngx_http_flashsale_redis_close(ngx_http_flashsale_redis_conn_t *cn,
    ngx_uint_t status);
static ngx_int_t ngx_http_flashsale_redis_read_password(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *password);


char *
ngx_http_flashsale_redis_conf(ngx_conf_t *cf,
    ngx_http_flashsale_redis_t **redisp)
{
    ngx_int_t                        n;
    ngx_str_t                       *value, s, file;
    ngx_url_t                        u;
    ngx_uint_t                       i;
    ngx_http_flashsale_redis_t      *redis;

    value = cf->args->elts;

    redis = ngx_pcalloc(cf->pool, sizeof(ngx_http_flashsale_redis_t));
    if (redis == NULL) {
        return NGX_CONF_ERROR;
    }

    redis->address = value[1];
    redis->db = 0;
    redis->connect_timeout = 100;
    redis->timeout = 250;
    redis->pool = 16;

    if (ngx_array_init(&redis->scripts, cf->pool, 1,
                       sizeof(ngx_http_flashsale_redis_script_t *))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (n == NGX_ERROR || n > 65535) {
                goto invalid;
            }

            redis->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            file.data = value[i].data + 14;
            file.len = value[i].len - 14;

            if (file.len == 0) {
                goto invalid;
            }

            if (ngx_http_flashsale_redis_read_password(cf, &file,
                                                       &redis->password)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;

            redis->connect_timeout = ngx_parse_time(&s, 0);
            if (redis->connect_timeout == (ngx_msec_t) NGX_ERROR
                || redis->connect_timeout == 0)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            redis->timeout = ngx_parse_time(&s, 0);
            if (redis->timeout == (ngx_msec_t) NGX_ERROR
                || redis->timeout == 0)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n == NGX_ERROR || n < 1 || n > 1024) {
                goto invalid;
            }

            redis->pool = n;
            continue;
        }

        goto invalid;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    /* resolved here, once: a worker never waits on a name lookup */
    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_redis \"%V\": %s; use host:port or "
                           "unix:/path", &value[1],
                           u.err ? u.err : "invalid address");
        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_redis \"%V\" resolves to no address",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    redis->addr = &u.addrs[0];

    *redisp = redis;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "flashsale_redis: invalid parameter \"%V\"; known are "
                       "db=N, password_file=path, connect_timeout=100ms, "
                       "timeout=250ms, pool=16 (1..1024)", &value[i]);

    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_flashsale_redis_script(ngx_conf_t *cf,
    ngx_http_flashsale_redis_script_t *script)
{
    u_char  md[SHA_DIGEST_LENGTH];

    /* the digest Redis will give it, so EVALSHA needs no round trip */
    if (SHA1(script->text.data, script->text.len, md) == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale: SHA1() of the Lua script failed");
        return NGX_ERROR;
    }

    ngx_hex_dump(script->sha, md, SHA_DIGEST_LENGTH);

    return NGX_OK;
}


ngx_int_t
ngx_http_flashsale_redis_add_script(ngx_http_flashsale_redis_t *redis,
    ngx_http_flashsale_redis_script_t *script)
{
    ngx_uint_t                           i;
    ngx_http_flashsale_redis_script_t  **s;

    s = redis->scripts.elts;

    for (i = 0; i < redis->scripts.nelts; i++) {
        if (s[i] == script) {
            return NGX_OK;
        }
    }

    s = ngx_array_push(&redis->scripts);
    if (s == NULL) {
        return NGX_ERROR;
    }

    *s = script;

    return NGX_OK;
}


ngx_int_t
ngx_http_flashsale_redis_send(ngx_http_flashsale_redis_t *redis,
    ngx_log_t *log, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_flashsale_redis_handler_pt handler, void *data,
    ngx_http_flashsale_redis_cmd_t **cmdp)
{
    ngx_http_flashsale_redis_cmd_t   *cmd;
    ngx_http_flashsale_redis_conn_t  *cn;

    cn = ngx_http_flashsale_redis_pick(redis);
    if (cn == NULL) {
        return NGX_DECLINED;
    }

    /* ngx_alloc() has logged a failure */
    cmd = ngx_http_flashsale_redis_cmd_alloc(redis);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_flashsale_redis_format(cmd, argc, argv) != NGX_OK
        || ngx_http_flashsale_redis_append(cn, (char *) cmd->buf, cmd->len)
           != NGX_OK)
    {
        ngx_http_flashsale_redis_cmd_free(redis, cmd);
        return NGX_ERROR;
    }

    cmd->handler = handler;
    cmd->data = data;

    /* an EVALSHA's bytes are sent once more after NOSCRIPT */
    cmd->script = (argc && argv[0].len == 7
                   && ngx_strncasecmp(argv[0].data, (u_char *) "EVALSHA", 7)
                      == 0);

    ngx_http_flashsale_redis_queue(cn, cmd);

    *cmdp = cmd;

    return NGX_OK;
}


/*
 * The request went away: its reply is still read (pipelining needs it),
 * and goes to a handler whose data outlives requests, or nowhere (NULL).
 */
void
ngx_http_flashsale_redis_detach(ngx_http_flashsale_redis_cmd_t *cmd,
    ngx_http_flashsale_redis_handler_pt handler, void *data)
{
    cmd->handler = handler;
    cmd->data = data;
}


ngx_uint_t
ngx_http_flashsale_redis_noscript(redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && reply->len >= 8
           && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0;
}


static ngx_http_flashsale_redis_conn_t *
ngx_http_flashsale_redis_pick(ngx_http_flashsale_redis_t *redis)
{
    ngx_uint_t                        i, n;
    ngx_http_flashsale_redis_conn_t  *cn, *best;

    if (redis->conns == NULL) {
        redis->conns = ngx_pcalloc(ngx_cycle->pool, redis->pool
                                   * sizeof(ngx_http_flashsale_redis_conn_t));
        if (redis->conns == NULL) {
            return NULL;
        }

        for (i = 0; i < redis->pool; i++) {
            redis->conns[i].redis = redis;
            ngx_queue_init(&redis->conns[i].inflight);
        }

        ngx_queue_init(&redis->free);
    }

    /*
     * The first open connection with fewer than BATCH in flight takes the
     * command: the commands of one event loop turn then share one write,
     * and Redis reads them in one go.  Spreading them over every open
     * connection (the least busy first) split a turn's batch into as
     * many writes as connections were open.  Another connection is
     * opened only when every open one is that busy.
     */
    best = NULL;

    for (i = 0; i < redis->pool; i++) {
        cn = &redis->conns[i];

        if (cn->state == NGX_HTTP_FLASHSALE_REDIS_CLOSED) {
            continue;
        }

        if (cn->ninflight < NGX_HTTP_FLASHSALE_REDIS_BATCH) {
            return cn;
        }

        if (best == NULL || cn->ninflight < best->ninflight) {
            best = cn;
        }
    }

    for (n = 0; n < redis->pool; n++) {
        i = redis->next++ % redis->pool;
        cn = &redis->conns[i];

        if (cn->state != NGX_HTTP_FLASHSALE_REDIS_CLOSED) {
            continue;
        }

        if (ngx_exiting || ngx_terminate) {
            break;
        }

        /* a failed connection is tried again only after its backoff */
        if (cn->failures
            && (ngx_msec_int_t) (cn->retry_at - ngx_current_msec) > 0)
        {
            continue;
        }

        if (ngx_http_flashsale_redis_connect(cn) == NGX_OK) {
            return cn;
        }
    }

    if (best && best->ninflight < NGX_HTTP_FLASHSALE_REDIS_INFLIGHT_MAX) {
        return best;
    }

    /*
     * Every slot is backing off.  One of them may still try now and then
     * (every BACKOFF_MIN per worker), so a Redis that is back is found by
     * the next request rather than when the longest backoff ends, and a
     * Redis that is down sees at most a few connects a second.
     */
    if (ngx_exiting || ngx_terminate
        || (ngx_msec_int_t) (ngx_current_msec - redis->probe_at) < 0)
    {
        return NULL;
    }

    redis->probe_at = ngx_current_msec + NGX_HTTP_FLASHSALE_REDIS_BACKOFF_MIN;

    cn = NULL;

    for (i = 0; i < redis->pool; i++) {
        if (redis->conns[i].state == NGX_HTTP_FLASHSALE_REDIS_CLOSED
            && (cn == NULL
                || (ngx_msec_int_t) (redis->conns[i].retry_at - cn->retry_at)
                   < 0))
        {
            cn = &redis->conns[i];
        }
    }

    if (cn && ngx_http_flashsale_redis_connect(cn) == NGX_OK) {
        return cn;
    }

    return NULL;
}


static ngx_int_t
ngx_http_flashsale_redis_connect(ngx_http_flashsale_redis_conn_t *cn)
{
    u_char                       db[NGX_INT_T_LEN];
    ngx_int_t                    rc;
    ngx_str_t                    argv[2];
    ngx_connection_t            *c;
    ngx_http_flashsale_redis_t  *redis;

    redis = cn->redis;

    ngx_memzero(&cn->peer, sizeof(ngx_peer_connection_t));

    cn->peer.sockaddr = redis->addr->sockaddr;
    cn->peer.socklen = redis->addr->socklen;
    cn->peer.name = &redis->address;
    cn->peer.get = ngx_event_get_peer;
    cn->peer.log = ngx_cycle->log;
    cn->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&cn->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (cn->peer.connection) {
            ngx_close_connection(cn->peer.connection);
            cn->peer.connection = NULL;
        }

        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);
        return NGX_ERROR;
    }

    c = cn->peer.connection;
    c->data = cn;
    c->read->handler = ngx_http_flashsale_redis_read_handler;
    c->write->handler = ngx_http_flashsale_redis_write_handler;
    c->idle = 1;

    cn->reader = redisReaderCreate();
    if (cn->reader == NULL) {
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);
        return NGX_ERROR;
    }

    cn->out_pos = 0;
    cn->out_len = 0;

    if (rc == NGX_AGAIN) {
        cn->state = NGX_HTTP_FLASHSALE_REDIS_CONNECTING;
        ngx_add_timer(c->write, redis->connect_timeout);

    } else {
        cn->state = NGX_HTTP_FLASHSALE_REDIS_READY;
    }

    /* the handshake goes first in the pipeline, ahead of any request */
    if (redis->password.len) {
        ngx_str_set(&argv[0], "AUTH");
        argv[1] = redis->password;

        if (ngx_http_flashsale_redis_internal(cn, "AUTH", 2, argv)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (redis->db) {
        ngx_str_set(&argv[0], "SELECT");
        argv[1].data = db;
        argv[1].len = ngx_sprintf(db, "%i", redis->db) - db;

        if (ngx_http_flashsale_redis_internal(cn, "SELECT", 2, argv)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (ngx_http_flashsale_redis_load_scripts(cn) != NGX_OK) {
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);

    return NGX_ERROR;
}


/* a new connection, and one that got NOSCRIPT, loads every script */
static ngx_int_t
ngx_http_flashsale_redis_load_scripts(ngx_http_flashsale_redis_conn_t *cn)
{
    ngx_str_t                            argv[3];
    ngx_uint_t                           i;
    ngx_http_flashsale_redis_script_t  **script;

    ngx_str_set(&argv[0], "SCRIPT");
    ngx_str_set(&argv[1], "LOAD");

    script = cn->redis->scripts.elts;

    for (i = 0; i < cn->redis->scripts.nelts; i++) {
        argv[2] = script[i]->text;

        if (ngx_http_flashsale_redis_internal(cn, "SCRIPT LOAD", 3, argv)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_redis_internal(ngx_http_flashsale_redis_conn_t *cn,
    const char *what, ngx_uint_t argc, ngx_str_t *argv)
{
    ngx_http_flashsale_redis_cmd_t  *cmd;

    cmd = ngx_http_flashsale_redis_cmd_alloc(cn->redis);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_flashsale_redis_format(cmd, argc, argv) != NGX_OK
        || ngx_http_flashsale_redis_append(cn, (char *) cmd->buf, cmd->len)
           != NGX_OK)
    {
        ngx_http_flashsale_redis_cmd_free(cn->redis, cmd);
        return NGX_ERROR;
    }

    cmd->internal = 1;
    cmd->what = what;

    ngx_http_flashsale_redis_queue(cn, cmd);

    return NGX_OK;
}


static ngx_int_t
ngx_http_flashsale_redis_append(ngx_http_flashsale_redis_conn_t *cn,
    char *data, size_t len)
{
    u_char  *p;
    size_t   size;

    if (cn->out_pos == cn->out_len) {
        cn->out_pos = 0;
        cn->out_len = 0;
    }

    if (cn->out_len + len > cn->out_size) {
        size = ngx_max(cn->out_size * 2, cn->out_len + len);
        size = ngx_max(size, 4096);

        p = ngx_alloc(size, ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (cn->out) {
            ngx_memcpy(p, cn->out + cn->out_pos, cn->out_len - cn->out_pos);
            ngx_free(cn->out);
        }

        cn->out_len -= cn->out_pos;
        cn->out_pos = 0;
        cn->out = p;
        cn->out_size = size;
    }

    ngx_memcpy(cn->out + cn->out_len, data, len);
    cn->out_len += len;

    /* commands of one event loop turn go out in one write */
    if (cn->state == NGX_HTTP_FLASHSALE_REDIS_READY
        && !cn->peer.connection->write->posted)
    {
        ngx_post_event(cn->peer.connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_flashsale_redis_queue(ngx_http_flashsale_redis_conn_t *cn,
    ngx_http_flashsale_redis_cmd_t *cmd)
{
    cmd->start = ngx_current_msec;

    ngx_queue_insert_tail(&cn->inflight, &cmd->queue);
    cn->ninflight++;

    cn->peer.connection->idle = 0;

    if (cn->ninflight == 1) {
        ngx_http_flashsale_redis_timer(cn);
    }
}


static ngx_http_flashsale_redis_cmd_t *
ngx_http_flashsale_redis_cmd_alloc(ngx_http_flashsale_redis_t *redis)
{
    u_char                          *buf;
    size_t                           size;
    ngx_queue_t                     *q;
    ngx_http_flashsale_redis_cmd_t  *cmd;

    if (!ngx_queue_empty(&redis->free)) {
        q = ngx_queue_head(&redis->free);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_flashsale_redis_cmd_t, queue);

        buf = cmd->buf;
        size = cmd->size;

    } else {
        /* not from a request pool: a command outlives a request that
         * goes away while it is in flight */
        cmd = ngx_alloc(sizeof(ngx_http_flashsale_redis_cmd_t),
                        ngx_cycle->log);
        if (cmd == NULL) {
            return NULL;
        }

        buf = NULL;
        size = 0;
    }

    ngx_memzero(cmd, sizeof(ngx_http_flashsale_redis_cmd_t));

    cmd->buf = buf;
    cmd->size = size;

    return cmd;
}


static void
ngx_http_flashsale_redis_cmd_free(ngx_http_flashsale_redis_t *redis,
    ngx_http_flashsale_redis_cmd_t *cmd)
{
    /* a big command's buffer (SCRIPT LOAD) is not kept for small ones */
    if (cmd->size > NGX_HTTP_FLASHSALE_REDIS_CMD_KEEP) {
        ngx_free(cmd->buf);
        cmd->buf = NULL;
        cmd->size = 0;
    }

    ngx_queue_insert_head(&redis->free, &cmd->queue);
}


static ngx_int_t
ngx_http_flashsale_redis_format(ngx_http_flashsale_redis_cmd_t *cmd,
    ngx_uint_t argc, ngx_str_t *argv)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    /*
     * RESP written by hand: hiredis 0.14's redisFormatCommandArgv() spent
     * 9 500 instructions of a reservation in sprintf() for the lengths,
     * and malloc()ed every command.
     */
    len = sizeof("*\r\n") - 1 + NGX_SIZE_T_LEN;

    for (i = 0; i < argc; i++) {
        len += sizeof("$\r\n\r\n") - 1 + NGX_SIZE_T_LEN + argv[i].len;
    }

    if (len > cmd->size) {
        len = ngx_align(len, NGX_HTTP_FLASHSALE_REDIS_CMD_ALIGN);

        p = ngx_alloc(len, ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (cmd->buf) {
            ngx_free(cmd->buf);
        }

        cmd->buf = p;
        cmd->size = len;
    }

    p = ngx_sprintf(cmd->buf, "*%ui\r\n", argc);

    for (i = 0; i < argc; i++) {
        p = ngx_sprintf(p, "$%uz\r\n", argv[i].len);
        p = ngx_cpymem(p, argv[i].data, argv[i].len);
        *p++ = '\r';
        *p++ = '\n';
    }

    cmd->len = p - cmd->buf;

    return NGX_OK;
}


static void
ngx_http_flashsale_redis_write_handler(ngx_event_t *wev)
{
    int                               err;
    ssize_t                           n;
    socklen_t                         len;
    ngx_connection_t                 *c;
    ngx_http_flashsale_redis_conn_t  *cn;

    c = wev->data;
    cn = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                      "flashsale: redis %V connect timed out",
                      &cn->redis->address);
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_TIMEOUT);
        return;
    }

    if (cn->state == NGX_HTTP_FLASHSALE_REDIS_CONNECTING) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_ERR, c->log, err,
                          "flashsale: redis %V connect failed",
                          &cn->redis->address);
            ngx_http_flashsale_redis_close(cn,
                                           NGX_HTTP_FLASHSALE_REDIS_ERROR);
            return;
        }

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        cn->state = NGX_HTTP_FLASHSALE_REDIS_READY;
    }

    while (cn->out_pos < cn->out_len) {
        n = c->send(c, cn->out + cn->out_pos, cn->out_len - cn->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_http_flashsale_redis_close(cn,
                                           NGX_HTTP_FLASHSALE_REDIS_ERROR);
            return;
        }

        cn->out_pos += n;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);
    }
}


static void
ngx_http_flashsale_redis_read_handler(ngx_event_t *rev)
{
    void                             *reply;
    u_char                            buf[16384];
    ssize_t                           n;
    ngx_connection_t                 *c;
    ngx_http_flashsale_redis_conn_t  *cn;

    c = rev->data;
    cn = c->data;

    if (c->close) {
        /* an idle connection of a worker that is shutting down */
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);
        return;
    }

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                      "flashsale: redis %V timed out with %ui commands in "
                      "flight", &cn->redis->address, cn->ninflight);
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_TIMEOUT);
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (cn->ninflight) {
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "flashsale: redis %V closed the connection "
                              "with %ui commands in flight",
                              &cn->redis->address, cn->ninflight);
            }

            ngx_http_flashsale_redis_close(cn,
                                           NGX_HTTP_FLASHSALE_REDIS_ERROR);
            return;
        }

        if (redisReaderFeed(cn->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_http_flashsale_redis_close(cn,
                                           NGX_HTTP_FLASHSALE_REDIS_ERROR);
            return;
        }

        for ( ;; ) {
            if (redisReaderGetReply(cn->reader, &reply) != REDIS_OK) {
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "flashsale: redis %V sent a reply that cannot "
                              "be parsed: %s", &cn->redis->address,
                              cn->reader->errstr);
                ngx_http_flashsale_redis_close(cn,
                                               NGX_HTTP_FLASHSALE_REDIS_ERROR);
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (ngx_http_flashsale_redis_reply(cn, reply) != NGX_OK) {
                ngx_http_flashsale_redis_close(cn,
                                               NGX_HTTP_FLASHSALE_REDIS_ERROR);
                return;
            }
        }

        if (n < (ssize_t) sizeof(buf) && !rev->ready) {
            break;
        }
    }

    /* a worker shutting down closed its idle connections once, at the
     * start; one that falls idle later is closed here, or the worker
     * would exit with its socket open */
    if (cn->ninflight == 0 && (ngx_exiting || ngx_terminate)) {
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);
        return;
    }

    ngx_http_flashsale_redis_timer(cn);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_flashsale_redis_close(cn, NGX_HTTP_FLASHSALE_REDIS_ERROR);
    }
}


static ngx_int_t
ngx_http_flashsale_redis_reply(ngx_http_flashsale_redis_conn_t *cn,
    redisReply *reply)
{
    ngx_queue_t                     *q;
    ngx_http_flashsale_redis_cmd_t  *cmd;

    if (ngx_queue_empty(&cn->inflight)) {
        ngx_log_error(NGX_LOG_ERR, cn->peer.connection->log, 0,
                      "flashsale: redis %V sent a reply nobody asked for",
                      &cn->redis->address);
        freeReplyObject(reply);
        return NGX_ERROR;
    }

    q = ngx_queue_head(&cn->inflight);
    ngx_queue_remove(q);
    cn->ninflight--;

    cmd = ngx_queue_data(q, ngx_http_flashsale_redis_cmd_t, queue);

    if (cmd->internal) {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, cn->peer.connection->log, 0,
                          "flashsale: redis %V refused %s: %*s",
                          &cn->redis->address, cmd->what,
                          (size_t) reply->len, reply->str);
        }

        freeReplyObject(reply);
        ngx_http_flashsale_redis_cmd_free(cn->redis, cmd);
        return NGX_OK;
    }

    /* the script cache was flushed or Redis restarted: load it again
     * and repeat the call once, right behind the load */
    if (cmd->script && !cmd->retried
        && ngx_http_flashsale_redis_noscript(reply))
    {
        if (ngx_http_flashsale_redis_load_scripts(cn) != NGX_OK) {
            goto deliver;
        }

        if (ngx_http_flashsale_redis_append(cn, (char *) cmd->buf, cmd->len)
            != NGX_OK)
        {
            goto deliver;
        }

        cmd->retried = 1;
        ngx_queue_insert_tail(&cn->inflight, &cmd->queue);
        cn->ninflight++;

        freeReplyObject(reply);
        return NGX_OK;
    }

deliver:

    if (cn->failures) {
        cn->failures = 0;
    }

    if (cmd->handler) {
        cmd->handler(cmd->data, reply, NGX_HTTP_FLASHSALE_REDIS_OK,
                     ngx_current_msec - cmd->start);
    }

    freeReplyObject(reply);
    ngx_http_flashsale_redis_cmd_free(cn->redis, cmd);

    return NGX_OK;
}


static void
ngx_http_flashsale_redis_timer(ngx_http_flashsale_redis_conn_t *cn)
{
    ngx_msec_t                       deadline;
    ngx_event_t                     *rev;
    ngx_queue_t                     *q;
    ngx_msec_int_t                   left;
    ngx_http_flashsale_redis_cmd_t  *cmd;

    rev = cn->peer.connection->read;

    if (ngx_queue_empty(&cn->inflight)) {
        if (rev->timer_set) {
            ngx_del_timer(rev);
        }

        /* lets a reloading worker close it and exit */
        cn->peer.connection->idle = 1;
        return;
    }

    /* replies come in order, so only the oldest command can be late */
    q = ngx_queue_head(&cn->inflight);
    cmd = ngx_queue_data(q, ngx_http_flashsale_redis_cmd_t, queue);

    deadline = cmd->start + cn->redis->timeout;
    left = (ngx_msec_int_t) (deadline - ngx_current_msec);

    ngx_add_timer(rev, left > 0 ? (ngx_msec_t) left : 1);
}


static void
ngx_http_flashsale_redis_close(ngx_http_flashsale_redis_conn_t *cn,
    ngx_uint_t status)
{
    ngx_msec_t                       backoff;
    ngx_queue_t                     *q, failed;
    ngx_http_flashsale_redis_cmd_t  *cmd;

    /* an idle connection closed by Redis is reopened on demand; losing
     * commands or failing to connect backs off before the next try */
    if (cn->ninflight || cn->state != NGX_HTTP_FLASHSALE_REDIS_READY) {
        cn->failures++;

        backoff = NGX_HTTP_FLASHSALE_REDIS_BACKOFF_MIN
                  << ngx_min(cn->failures - 1, 5);
        backoff = ngx_min(backoff, NGX_HTTP_FLASHSALE_REDIS_BACKOFF_MAX);

        /* jitter keeps the workers from reconnecting in step */
        backoff = backoff * 3 / 4 + (ngx_msec_t) ngx_random() % (backoff / 2);

        cn->retry_at = ngx_current_msec + backoff;
    }

    if (cn->peer.connection) {
        ngx_close_connection(cn->peer.connection);
        cn->peer.connection = NULL;
    }

    if (cn->reader) {
        redisReaderFree(cn->reader);
        cn->reader = NULL;
    }

    cn->state = NGX_HTTP_FLASHSALE_REDIS_CLOSED;
    cn->out_pos = 0;
    cn->out_len = 0;

    /* handlers may send new commands; they must not find these */
    ngx_queue_init(&failed);

    if (!ngx_queue_empty(&cn->inflight)) {
        failed = cn->inflight;
        failed.next->prev = &failed;
        failed.prev->next = &failed;
    }

    ngx_queue_init(&cn->inflight);
    cn->ninflight = 0;

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_http_flashsale_redis_cmd_t, queue);

        if (cmd->handler) {
            cmd->handler(cmd->data, NULL, status,
                         ngx_current_msec - cmd->start);
        }

        ngx_http_flashsale_redis_cmd_free(cn->redis, cmd);
    }
}


void
ngx_http_flashsale_redis_exit_process(ngx_http_flashsale_redis_t *redis)
{
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_flashsale_redis_cmd_t   *cmd;
    ngx_http_flashsale_redis_conn_t  *cn;

    if (redis->conns == NULL) {
        return;
    }

    /* no request is left to answer: commands are dropped, not failed */
    for (i = 0; i < redis->pool; i++) {
        cn = &redis->conns[i];

        while (!ngx_queue_empty(&cn->inflight)) {
            q = ngx_queue_head(&cn->inflight);
            ngx_queue_remove(q);
            cmd = ngx_queue_data(q, ngx_http_flashsale_redis_cmd_t, queue);
            ngx_http_flashsale_redis_cmd_free(redis, cmd);
        }

        cn->ninflight = 0;

        if (cn->peer.connection) {
            ngx_close_connection(cn->peer.connection);
            cn->peer.connection = NULL;
        }

        if (cn->reader) {
            redisReaderFree(cn->reader);
            cn->reader = NULL;
        }

        if (cn->out) {
            ngx_free(cn->out);
            cn->out = NULL;
            cn->out_size = 0;
        }

        cn->state = NGX_HTTP_FLASHSALE_REDIS_CLOSED;
    }

    while (!ngx_queue_empty(&redis->free)) {
        q = ngx_queue_head(&redis->free);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_flashsale_redis_cmd_t, queue);

        if (cmd->buf) {
            ngx_free(cmd->buf);
        }

        ngx_free(cmd);
    }
}


static ngx_int_t
ngx_http_flashsale_redis_read_password(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *password)
{
    u_char           *p, *last;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_redis password_file \"%V\" cannot be "
                           "opened", file);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_redis password_file \"%V\" cannot be "
                           "read or is larger than 4k", file);
        goto done;
    }

    p = ngx_pnalloc(cf->pool, (size_t) ngx_file_size(&fi) + 1);
    if (p == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, p, (size_t) ngx_file_size(&fi));
    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flashsale_redis password_file \"%V\": "
                           ngx_read_fd_n " failed", file);
        goto done;
    }

    last = ngx_strlchr(p, p + n, '\n');
    if (last == NULL) {
        last = p + n;
    }

    while (last > p && (last[-1] == '\r' || last[-1] == ' ')) {
        last--;
    }

    if (last == p) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flashsale_redis password_file \"%V\" is empty",
                           file);
        goto done;
    }

    password->data = p;
    password->len = last - p;
    rc = NGX_OK;

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    return rc;
}
