
/*
 * The Redis connection layer reading what a Redis server sends: pipelined
 * commands in flight on pooled connections, the bytes of the replies in
 * chunks of any size through ngx_http_flashsale_redis_read_handler()
 * (hiredis reader, replies matched to commands in order, the handshake's
 * AUTH/SELECT/SCRIPT LOAD answers, NOSCRIPT and the one retry behind a new
 * SCRIPT LOAD, replies nobody asked for, unparsable bytes, closed
 * connections, timeouts, connects that fail or finish later).
 *
 * fuzz-includes: ngx_http_flashsale_redis.c
 *
 * Input: a config byte, then a program of one-byte operations, each maybe
 * followed by its data:
 *   0 send a command (next byte: bit 0 EVALSHA or GET, bit 1 detach it,
 *     bit 2 with bit 0: its last argument is the next 40 bytes or less);
 *     its RESP must be the bytes hiredis would write
 *   1 feed a chunk to a connection (next byte: connection and length;
 *     that many bytes follow)
 *   2 the connection's peer closes (recv returns 0)
 *   3 the read timer fires
 *   4 run posted events (the writes)
 *   5 the next send() writes part of its buffer / nothing
 *   6 the next connect fails / is in progress
 *   7 a connect in progress completes (its write event)
 * At the end every connection is closed: every command that was not
 * detached must have had its handler called exactly once, with a reply
 * only when the status is OK.
 */


#include "fuzz_common.h"
#include "ngx_http_flashsale_redis.c"


#define FZ_CMDS  64


typedef struct {
    ngx_uint_t                        calls;
    ngx_uint_t                        detached;
} fz_slot_t;


/* our RESP is byte for byte what hiredis would have written */
static void
fz_check_format(ngx_uint_t argc, ngx_str_t *argv)
{
    int                              n;
    char                            *theirs;
    size_t                           lens[8];
    ngx_uint_t                       i;
    const char                      *args[8];
    ngx_http_flashsale_redis_cmd_t   cmd;

    for (i = 0; i < argc; i++) {
        args[i] = (const char *) argv[i].data;
        lens[i] = argv[i].len;
    }

    ngx_memzero(&cmd, sizeof(ngx_http_flashsale_redis_cmd_t));

    n = redisFormatCommandArgv(&theirs, (int) argc, args, lens);

    if (ngx_http_flashsale_redis_format(&cmd, argc, argv) != NGX_OK
        || n < 0 || cmd.len != (size_t) n
        || memcmp(cmd.buf, theirs, n) != 0)
    {
        fprintf(stderr, "RESP differs from hiredis's\n");
        abort();
    }

    ngx_free(cmd.buf);
    redisFreeCommand(theirs);
}


static ngx_http_flashsale_redis_script_t  fz_script = {
    ngx_string("return {1, 2, 3}"), { 0 }
};

static fz_input_t   fz_in;
static ngx_pool_t  *fz_pool;
static ngx_cycle_t  fz_exec_cycle;
static ngx_int_t    fz_connect_rc;
static ngx_int_t    fz_send_mode;
static ngx_uint_t   fz_peer_closed;
static size_t       fz_chunk_left;     /* of the chunk being delivered */


static ssize_t
fz_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  n;

    if (fz_peer_closed) {
        fz_peer_closed = 0;
        c->read->ready = 0;
        c->read->eof = 1;
        return 0;
    }

    n = fz_chunk_left;

    if (n == 0) {
        c->read->ready = 0;
        return NGX_AGAIN;
    }

    n = ngx_min(n, size);
    n = ngx_min(n, (size_t) (fz_in.last - fz_in.p));

    if (n == 0) {
        c->read->ready = 0;
        fz_chunk_left = 0;
        return NGX_AGAIN;
    }

    ngx_memcpy(buf, fz_in.p, n);
    fz_in.p += n;
    fz_chunk_left -= n;

    if (fz_chunk_left == 0) {
        c->read->ready = 0;
    }

    return n;
}


static ssize_t
fz_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  i;

    for (i = 0; i < size; i++) {
        fz_sink ^= buf[i];
    }

    switch (fz_send_mode) {

    case 1:
        fz_send_mode = 0;
        return size > 1 ? (ssize_t) size / 2 : (ssize_t) size;

    case 2:
        fz_send_mode = 0;
        c->write->ready = 0;
        return NGX_AGAIN;

    case 3:
        fz_send_mode = 0;
        return NGX_ERROR;
    }

    return size;
}


static ngx_int_t
fz_connect_peer(ngx_peer_connection_t *pc)
{
    ngx_int_t          rc;
    ngx_event_t       *rev, *wev;
    ngx_connection_t  *c;

    rc = fz_connect_rc;
    fz_connect_rc = NGX_OK;

    if (rc == NGX_ERROR || rc == NGX_DECLINED) {
        return rc;
    }

    c = ngx_pcalloc(fz_pool, sizeof(ngx_connection_t));
    rev = ngx_pcalloc(fz_pool, sizeof(ngx_event_t));
    wev = ngx_pcalloc(fz_pool, sizeof(ngx_event_t));
    if (c == NULL || rev == NULL || wev == NULL) {
        abort();
    }

    c->fd = fz_sock[0];
    c->read = rev;
    c->write = wev;
    c->log = &fz_log;
    c->pool = NULL;
    c->recv = fz_recv;
    c->send = fz_send;

    rev->data = c;
    rev->log = &fz_log;
    rev->active = 1;
    wev->data = c;
    wev->log = &fz_log;
    wev->write = 1;
    wev->active = 1;
    wev->ready = (rc == NGX_OK);

    pc->connection = c;

    return rc;
}


static void
fz_handler(void *data, redisReply *reply, ngx_uint_t status,
    ngx_msec_t latency)
{
    fz_slot_t  *slot = data;

    slot->calls++;

    if (slot->detached) {
        fprintf(stderr, "a detached command's handler was called\n");
        abort();
    }

    if ((status == NGX_HTTP_FLASHSALE_REDIS_OK) != (reply != NULL)) {
        fprintf(stderr, "status %lu with reply %p\n", (unsigned long) status,
                (void *) reply);
        abort();
    }

    if (reply && (reply->type == REDIS_REPLY_STRING
                  || reply->type == REDIS_REPLY_ERROR
                  || reply->type == REDIS_REPLY_STATUS)
        && reply->len)
    {
        fz_sink ^= reply->str[0] ^ reply->str[reply->len - 1];
    }
}


static void
fz_posted(void)
{
    ngx_uint_t  n;

    /* bounded: a handler that posts itself again must not spin */
    for (n = 0; n < 64 && !ngx_queue_empty(&ngx_posted_events); n++) {
        ngx_event_t  *ev;

        ev = ngx_queue_data(ngx_queue_head(&ngx_posted_events), ngx_event_t,
                            queue);
        ngx_delete_posted_event(ev);
        ev->handler(ev);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                           rc;
    ngx_str_t                           argv[4];
    ngx_uint_t                          conf, op, b, i, nslots;
    ngx_queue_t                        *q;
    fz_slot_t                           slots[FZ_CMDS];
    ngx_connection_t                   *c;
    ngx_http_flashsale_redis_t         *redis;
    ngx_http_flashsale_redis_cmd_t     *cmd;
    ngx_http_flashsale_redis_conn_t    *cn;
    ngx_http_flashsale_redis_script_t **sp;
    struct sockaddr_in                 *sin;

    fz_init();

    if (fz_script.sha[0] == 0) {
        if (ngx_http_flashsale_redis_script(fz_conf(fz_cycle.pool),
                                            &fz_script)
            != NGX_OK)
        {
            abort();
        }
    }

    /* hiredis 0.14 allocates a multi-bulk reply's element array for the
     * count it announces (see fuzz_redis_reply.c) */
    for (i = 0; i + 6 < size; i++) {
        if (data[i] == '*' && isdigit(data[i + 1]) && isdigit(data[i + 2])
            && isdigit(data[i + 3]) && isdigit(data[i + 4])
            && isdigit(data[i + 5]) && isdigit(data[i + 6]))
        {
            return 0;
        }
    }

    fz_in.p = data;
    fz_in.last = data + size;
    conf = fz_byte(&fz_in);

    fz_pool = ngx_create_pool(4096, &fz_log);
    if (fz_pool == NULL) {
        abort();
    }

    /* what the layer allocates "for the worker's life" goes here */
    fz_exec_cycle = fz_cycle;
    fz_exec_cycle.pool = fz_pool;
    ngx_cycle = &fz_exec_cycle;
    fz_connect = fz_connect_peer;
    fz_connect_rc = NGX_OK;
    fz_send_mode = 0;
    fz_peer_closed = 0;

    redis = ngx_pcalloc(fz_pool, sizeof(ngx_http_flashsale_redis_t));
    if (redis == NULL) {
        abort();
    }

    ngx_str_set(&redis->address, "127.0.0.1:6379");

    redis->addr = ngx_pcalloc(fz_pool, sizeof(ngx_addr_t));
    sin = ngx_pcalloc(fz_pool, sizeof(struct sockaddr_in));
    if (redis->addr == NULL || sin == NULL) {
        abort();
    }

    sin->sin_family = AF_INET;
    sin->sin_port = htons(6379);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    redis->addr->sockaddr = (struct sockaddr *) sin;
    redis->addr->socklen = sizeof(struct sockaddr_in);
    redis->addr->name = redis->address;
    redis->connect_timeout = 100;
    redis->timeout = 250;
    redis->pool = 1 + (conf & 1);
    redis->db = (conf & 2) ? 3 : 0;

    if (conf & 4) {
        ngx_str_set(&redis->password, "secret");
    }

    if (ngx_array_init(&redis->scripts, fz_pool, 1,
                       sizeof(ngx_http_flashsale_redis_script_t *))
        != NGX_OK)
    {
        abort();
    }

    sp = ngx_array_push(&redis->scripts);
    *sp = &fz_script;

    nslots = 0;
    ngx_memzero(slots, sizeof(slots));

    for (op = 0; op < 256 && fz_in.p < fz_in.last; op++) {

        switch (fz_byte(&fz_in) & 7) {

        case 0:
            if (nslots == FZ_CMDS) {
                break;
            }

            b = fz_byte(&fz_in);

            if (b & 1) {
                ngx_str_set(&argv[0], "EVALSHA");
                argv[1].data = fz_script.sha;
                argv[1].len = 40;
                ngx_str_set(&argv[2], "0");
                ngx_str_set(&argv[3], "x");

            } else {
                ngx_str_set(&argv[0], "GET");
                ngx_str_set(&argv[1], "fs:{z:A1}:stock");
            }

            if ((b & 5) == 5) {
                /* an argument of any bytes, of the input's choosing */
                argv[3].len = fz_in.last - fz_in.p < 40
                              ? (size_t) (fz_in.last - fz_in.p) : 40;
                argv[3].data = (u_char *) fz_in.p;
                fz_in.p += argv[3].len;
            }

            fz_check_format((b & 1) ? 4 : 2, argv);

            rc = ngx_http_flashsale_redis_send(redis, &fz_log,
                                               (b & 1) ? 4 : 2, argv,
                                               fz_handler, &slots[nslots],
                                               &cmd);
            if (rc == NGX_OK) {
                if (b & 2) {
                    ngx_http_flashsale_redis_detach(cmd, NULL, NULL);
                    slots[nslots].detached = 1;
                }

                nslots++;
            }

            break;

        case 1:
            b = fz_byte(&fz_in);

            if (redis->conns == NULL) {
                break;
            }

            cn = &redis->conns[b % redis->pool];
            if (cn->peer.connection == NULL
                || cn->state != NGX_HTTP_FLASHSALE_REDIS_READY)
            {
                break;
            }

            c = cn->peer.connection;
            fz_chunk_left = 1 + (b >> 1) * 4;
            c->read->ready = 1;
            c->read->handler(c->read);
            fz_chunk_left = 0;
            break;

        case 2:
            if (redis->conns == NULL) {
                break;
            }

            cn = &redis->conns[fz_byte(&fz_in) % redis->pool];
            if (cn->peer.connection == NULL) {
                break;
            }

            c = cn->peer.connection;
            fz_peer_closed = 1;
            c->read->ready = 1;
            c->read->handler(c->read);
            fz_peer_closed = 0;
            break;

        case 3:
            if (redis->conns == NULL) {
                break;
            }

            cn = &redis->conns[fz_byte(&fz_in) % redis->pool];
            if (cn->peer.connection == NULL) {
                break;
            }

            c = cn->peer.connection;

            if (c->read->timer_set) {
                ngx_del_timer(c->read);
                c->read->timedout = 1;
                c->read->handler(c->read);

            } else if (c->write->timer_set) {
                ngx_del_timer(c->write);
                c->write->timedout = 1;
                c->write->handler(c->write);
            }

            break;

        case 4:
            fz_posted();
            break;

        case 5:
            fz_send_mode = 1 + fz_byte(&fz_in) % 3;
            break;

        case 6:
            b = fz_byte(&fz_in) % 3;
            fz_connect_rc = b == 0 ? NGX_ERROR : b == 1 ? NGX_AGAIN : NGX_OK;
            break;

        case 7:
            if (redis->conns == NULL) {
                break;
            }

            cn = &redis->conns[fz_byte(&fz_in) % redis->pool];
            if (cn->peer.connection == NULL
                || cn->state != NGX_HTTP_FLASHSALE_REDIS_CONNECTING)
            {
                break;
            }

            c = cn->peer.connection;
            c->write->ready = 1;
            c->write->handler(c->write);
            break;
        }
    }

    fz_posted();

    /* the end: every connection goes, and with it what is in flight */
    if (redis->conns) {
        for (i = 0; i < redis->pool; i++) {
            cn = &redis->conns[i];

            if (cn->state != NGX_HTTP_FLASHSALE_REDIS_CLOSED
                || !ngx_queue_empty(&cn->inflight))
            {
                ngx_http_flashsale_redis_close(cn,
                                               NGX_HTTP_FLASHSALE_REDIS_ERROR);
            }
        }
    }

    fz_posted();

    for (i = 0; i < nslots; i++) {
        if (slots[i].calls != (slots[i].detached ? 0 : 1)) {
            fprintf(stderr, "command %lu: handler called %lu times\n",
                    (unsigned long) i, (unsigned long) slots[i].calls);
            abort();
        }
    }

    /* what the layer keeps for the worker's life, given back */
    if (redis->conns) {
        for (i = 0; i < redis->pool; i++) {
            if (redis->conns[i].out) {
                ngx_free(redis->conns[i].out);
            }

            if (redis->conns[i].reader) {
                redisReaderFree(redis->conns[i].reader);
            }
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

    ngx_cycle = &fz_cycle;
    fz_connect = NULL;
    ngx_destroy_pool(fz_pool);

    return 0;
}
