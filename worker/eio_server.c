/*
 * eio_server.c — Engine.IO v4 server at /socket.io/: sessions, long-polling,
 * WebSocket transport, the polling -> WebSocket upgrade, heart-beat, and the
 * hand-off of requests to the worker that owns a session.
 *
 * Sessions live in one worker. Several workers accept on the same socket, so
 * consecutive polling requests of one client land on any of them; the session id
 * names its owner (its first two characters are the owner's scoreboard slot, in
 * hex). A worker that receives a request for a session it does not own passes the
 * client socket itself, plus the request bytes it has already read, to the owner
 * through the coordinator (SCM_RIGHTS), and forgets the connection; the owner
 * serves it as if it had accepted it (http_conn_adopt). The client sees one
 * ordinary HTTP exchange. Why this and not sticky sessions: docs/socketio.md.
 *
 * Lifetimes: a session is torn down by sess_kill() (idempotent), which detaches
 * every transport and frees the session from a zero-delay timer, so no callback
 * further up the stack ever sees freed memory. A WebSocket (struct eio_ws) lives
 * until its own close handshake ends, possibly after its session.
 */
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../coordinator/chat_proto.h"
#include "http_conn.h"
#include "response.h"
#include "sio.h"
#include "sio_internal.h"
#include "ws.h"

#define CT_EIO           "text/plain; charset=UTF-8"
#define OUTQ_MAX         (16u * 1024 * 1024) /* polling backlog before the client is cut */
#define OUTQ_KEEP        4096                /* a larger emptied backlog buffer is freed */
#define DEFAULT_INTERVAL 25.0
#define DEFAULT_TIMEOUT  20.0

struct eio_ws {
    struct ws_conn *ws;
    struct http_request *req;
    struct eio_session *s; /* NULL once the session is gone */
    struct sio_ctx *ctx;
};

static void sess_kill(struct eio_session *s, int ws_code, const char *why);
static void flush_poll(struct eio_session *s);

/* ---- small helpers ------------------------------------------------------------ */

static int query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = seg - nl - 1;
            if (vl >= cap) return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

static void random_id(char *out, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[64];
    if (n > sizeof(r)) n = sizeof(r);
    if (getrandom(r, n, 0) != (ssize_t)n) {
        for (size_t i = 0; i < n; i++) r[i] = (unsigned char)rand();
    }
    for (size_t i = 0; i < n; i++) out[i] = al[r[i] & 63];
    out[n] = '\0';
}

/* Engine.IO's own error bodies ({"code":1,"message":"Session ID unknown"}): the
 * clients read them; SPEC §4's JSON error shape would not be understood. */
static void eio_error(struct http_request *req, int status, int code, const char *msg)
{
    struct buf *b = resp_body(req);
    buf_reset(b);
    buf_printf(b, "{\"code\":%d,\"message\":", code);
    buf_json_str(b, msg);
    buf_append(b, "}", 1);
    resp_send(req, status, CT_JSON);
}

static void cors(struct http_request *req)
{
    const char *origin = http_request_header(req, "Origin");
    if (!origin) return;
    resp_header(req, "Access-Control-Allow-Origin", "%s", origin);
    resp_header(req, "Access-Control-Allow-Credentials", "true");
}

static int origin_allowed(const struct sio_ctx *ctx, const struct http_request *req)
{
    const char *origin = http_request_header(req, "Origin");
    const char *allowed = ctx->w->cfg->auth.client_url;
    if (!origin || !allowed[0]) return 1; /* non-browser clients send none */
    size_t al = strlen(allowed);
    while (al > 0 && allowed[al - 1] == '/') al--;
    return strlen(origin) == al && strncasecmp(origin, allowed, al) == 0;
}

/* ---- sessions ------------------------------------------------------------------ */

struct eio_session *eio_find(struct sio_ctx *ctx, const char *sid)
{
    struct eio_session *s = chat_map_get(&ctx->sessions, sid);
    return s && !s->dead ? s : NULL;
}

static void arm_ping(struct eio_session *s, double after)
{
    s->ping.repeat = after;
    ev_timer_again(s->ctx->w->loop, &s->ping);
}

/* `binary`: an Engine.IO binary message (a Socket.IO attachment): a binary frame
 * on the WebSocket, 'b' + base64 in a polling payload (Engine.IO v4). */
static void send_packet(struct eio_session *s, enum eio_type type, const char *data, size_t len,
                        int binary)
{
    if (s->dead) return;
    if (s->transport == EIO_T_WS && s->ws) {
        int rc;
        if (binary) {
            rc = ws_send(s->ws->ws, 1, data, len);
        } else {
            struct buf *t = &s->ctx->tmp;
            buf_reset(t);
            eio_encode(t, type, data, len);
            if (buf_failed(t)) return;
            rc = ws_send(s->ws->ws, 0, t->data, t->len);
        }
        if (rc < 0 && ws_closing(s->ws->ws)) sess_kill(s, 1008, "websocket output bound exceeded");
        return;
    }
    if (s->outq.len + len > OUTQ_MAX) {
        log_info("socket.io session %s is not polling (%zu bytes waiting); closing it", s->sid,
                 s->outq.len);
        sess_kill(s, 1008, "polling backlog");
        return;
    }
    eio_payload_add(&s->outq, type, data, len, binary);
    flush_poll(s);
}

void eio_send(struct eio_session *s, const char *pkt, size_t len)
{
    send_packet(s, EIO_MESSAGE, pkt, len, 0);
}

void eio_send_binary(struct eio_session *s, const void *data, size_t len)
{
    send_packet(s, EIO_MESSAGE, data, len, 1);
}

static void on_ping_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct eio_session *s = t->data;
    if (s->closing) {
        sess_kill(s, 1000, "close not collected");
        return;
    }
    if (s->awaiting_pong) {
        log_debug("socket.io session %s: no pong within pingTimeout", s->sid);
        sess_kill(s, 1000, "ping timeout");
        return;
    }
    s->awaiting_pong = 1;
    send_packet(s, EIO_PING, NULL, 0, 0);
    if (!s->dead) arm_ping(s, s->ctx->ping_timeout);
}

static void on_pong(struct eio_session *s)
{
    s->awaiting_pong = 0;
    if (!s->closing) arm_ping(s, s->ctx->ping_interval);
}

static void sess_free(struct eio_session *s)
{
    struct sio_ctx *ctx = s->ctx;
    struct ev_loop *loop = ctx->w->loop;
    if (s->prev)
        s->prev->next = s->next;
    else
        ctx->dead = s->next;
    if (s->next) s->next->prev = s->prev;
    ev_timer_stop(loop, &s->reap);
    ev_timer_stop(loop, &s->ping);
    sio_session_freed(s);
    buf_free(&s->outq);
    sio_packet_clear(&s->pending);
    for (int i = 0; i < s->nparts; i++) json_decref(s->parts[i]);
    for (int i = 0; i < s->nrooms; i++) free(s->rooms[i]);
    free(s->rooms);
    free(s);
}

static void on_reap(struct ev_loop *loop, ev_timer *t, int revents)
{
    sess_free(t->data);
}

static struct eio_session *sess_new(struct sio_ctx *ctx, enum eio_transport t,
                                    const struct http_request *req)
{
    struct eio_session *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->ctx = ctx;
    s->transport = t;
    snprintf(s->sid, 3, "%02x", (unsigned)ctx->w->slot & 0xff);
    random_id(s->sid + 2, EIO_SID_LEN - 3);
    random_id(s->sio_sid, 20);
    int failed;
    chat_map_put(&ctx->sessions, s->sid, s, &failed);
    if (failed) {
        free(s);
        return NULL;
    }
    buf_init(&s->outq);
    s->pending.ack_id = -1;
    s->tokens = 200;
    s->tokens_at = ev_now(ctx->w->loop);
    ev_init(&s->ping, on_ping_timer);
    ev_init(&s->reap, on_reap);
    s->ping.data = s->reap.data = s;
    arm_ping(s, ctx->ping_interval);
    s->next = ctx->all;
    if (ctx->all) ctx->all->prev = s;
    ctx->all = s;
    return s;
}

static void open_packet(struct eio_session *s, struct buf *out, int upgrades)
{
    const struct svcd_config *cfg = s->ctx->w->cfg;
    buf_printf(out,
               "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%.0f,\"pingTimeout\":%.0f,"
               "\"maxPayload\":%llu}",
               s->sid, upgrades ? "\"websocket\"" : "", s->ctx->ping_interval * 1000,
               s->ctx->ping_timeout * 1000, (unsigned long long)cfg->limits.body);
}

static void poll_abort(struct http_request *req, void *arg)
{
    struct eio_session *s = arg;
    if (s->poll_req == req) s->poll_req = NULL;
}

/* Answer the held GET with everything queued. */
static void flush_poll(struct eio_session *s)
{
    struct http_request *req = s->poll_req;
    if (!req || s->outq.len == 0) return;
    s->poll_req = NULL;
    req->on_abort = NULL;
    struct buf *b = resp_body(req);
    buf_reset(b);
    buf_append(b, s->outq.data, s->outq.len);
    if (s->outq.cap > OUTQ_KEEP)
        buf_free(&s->outq); /* a burst does not stay with a polling session */
    else
        buf_reset(&s->outq);
    cors(req);
    resp_send(req, 200, CT_EIO);
    if (s->closing) sess_kill(s, 1000, "closed");
}

static void ws_detach(struct eio_ws *e, int code, const char *why)
{
    if (!e) return;
    e->s = NULL;
    ws_close(e->ws, (uint16_t)code, why);
}

/* End the session now: chat cleanup, transports closed, freed from a timer. */
static void sess_kill(struct eio_session *s, int ws_code, const char *why)
{
    if (s->dead) return;
    s->dead = 1;
    struct sio_ctx *ctx = s->ctx;
    sio_on_close(s);
    chat_map_del(&ctx->sessions, s->sid);
    if (s->prev)
        s->prev->next = s->next;
    else
        ctx->all = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = NULL; /* now on the dead list until the reap timer frees it */
    s->next = ctx->dead;
    if (ctx->dead) ctx->dead->prev = s;
    ctx->dead = s;
    ev_timer_stop(ctx->w->loop, &s->ping);
    if (s->poll_req) {
        /* the pending poll carries what was queued and the close packet */
        eio_payload_add(&s->outq, EIO_CLOSE, NULL, 0, 0);
        s->dead = 0; /* let flush_poll send */
        s->closing = 0;
        flush_poll(s);
        s->dead = 1;
    }
    ws_detach(s->ws, ws_code, why);
    ws_detach(s->probe, ws_code, why);
    s->ws = s->probe = NULL;
    ev_timer_set(&s->reap, 0., 0.);
    ev_timer_start(ctx->w->loop, &s->reap);
}

void eio_close(struct eio_session *s, int code, const char *why)
{
    if (s->dead || s->closing) return;
    if (s->transport == EIO_T_WS || s->poll_req) {
        /* WebSocket: queued frames go out before the close frame */
        sess_kill(s, code, why);
        return;
    }
    /* polling without a pending GET: the next one collects the close packet */
    sio_on_close(s);
    s->closing = 1;
    eio_payload_add(&s->outq, EIO_CLOSE, NULL, 0, 0);
    s->awaiting_pong = 0;
    arm_ping(s, s->ctx->ping_timeout);
}

/* ---- packets from the client ------------------------------------------------------ */

/* One Engine.IO packet from the active transport. Returns -1 on a protocol error. */
static int on_packet(struct eio_session *s, const struct eio_packet *p)
{
    switch (p->type) {
    case EIO_MESSAGE:
        return sio_on_message(s, p->binary, p->data, p->len);
    case EIO_PONG:
        on_pong(s);
        return 0;
    case EIO_CLOSE:
        sess_kill(s, 1000, "client closed");
        return 0;
    case EIO_PING: /* v3 clients ping; v4 ones answer ours */
    case EIO_NOOP:
    case EIO_UPGRADE:
        return 0;
    case EIO_OPEN:
    default:
        return -1;
    }
}

/* ---- WebSocket transport ------------------------------------------------------------ */

static void ws_on_message(void *ud, int binary, const uint8_t *data, size_t len)
{
    struct eio_ws *e = ud;
    struct eio_session *s = e->s;
    if (!s || s->dead) return;
    struct eio_packet p;
    if (binary) {
        p.type = EIO_MESSAGE;
        p.binary = 1;
        p.data = (const char *)data;
        p.len = len;
    } else if (eio_decode_text((const char *)data, len, &p) != SIO_OK) {
        log_info("socket.io session %s: malformed Engine.IO packet; closing it (1002)", s->sid);
        sess_kill(s, 1002, "malformed Engine.IO packet");
        return;
    }
    if (e == s->probe) {
        if (p.type == EIO_PING && p.len == 5 && memcmp(p.data, "probe", 5) == 0) {
            ws_send(e->ws, 0, "3probe", 6);
            /* let the client's pending poll return so it can pause polling */
            if (s->poll_req && s->outq.len == 0) eio_payload_add(&s->outq, EIO_NOOP, NULL, 0, 0);
            flush_poll(s);
        } else if (p.type == EIO_UPGRADE) {
            s->probe = NULL;
            s->ws = e;
            s->transport = EIO_T_WS;
            if (s->poll_req) {
                if (s->outq.len == 0) eio_payload_add(&s->outq, EIO_NOOP, NULL, 0, 0);
                flush_poll(s); /* the last poll response; the rest goes over the WebSocket */
            }
            /* packets queued for polling move to the WebSocket, in order */
            if (s->outq.len) {
                struct buf q = s->outq, scratch;
                buf_init(&s->outq);
                buf_init(&scratch);
                size_t pos = 0;
                struct eio_packet qp;
                while (eio_payload_next(q.data, q.len, &pos, &qp, &scratch) == 1)
                    send_packet(s, qp.type, qp.data, qp.len, qp.binary);
                buf_free(&q);
                buf_free(&scratch);
            }
            if (s->closing) sess_kill(s, 1000, "closed");
        } else if (p.type != EIO_NOOP) {
            sess_kill(s, 1002, "unexpected packet during the upgrade");
        }
        return;
    }
    if (on_packet(s, &p) < 0 && !s->dead) {
        log_info("socket.io session %s: protocol error; closing it (1002)", s->sid);
        sess_kill(s, 1002, "protocol error");
    }
}

static void ws_on_closed(void *ud, int code)
{
    struct eio_ws *e = ud;
    struct eio_session *s = e->s;
    unsigned long long out = ws_bytes_out(e->ws);
    ws_free(e->ws);
    e->ws = NULL;
    if (s) {
        if (s->probe == e) s->probe = NULL; /* a failed upgrade: polling goes on */
        if (s->ws == e) {
            s->ws = NULL;
            sess_kill(s, code, "transport closed");
        }
    }
    struct http_request *req = e->req;
    free(e);
    /* A lingering close (http_conn: shutdown for writing, read and drop until EOF
     * or LINGER_MS), not close(): a peer still sending (the rest of an oversize
     * message, a flood) would get a RST that can destroy our close frame before it
     * is read, and see 1006 instead of 1009/1008. */
    http_conn_release(req, 101, out, 0);
}

static const struct ws_handler ws_handler = {ws_on_message, ws_on_closed};

static void tk_drain(void *owner)
{
    struct eio_ws *e = owner;
    if (e->s)
        sess_kill(e->s, 1001, "server going away");
    else if (e->ws)
        ws_close(e->ws, 1001, "server going away");
}

static void tk_destroy(void *owner)
{
    struct eio_ws *e = owner;
    if (e->s) {
        if (e->s->ws == e) e->s->ws = NULL;
        if (e->s->probe == e) e->s->probe = NULL;
        sess_kill(e->s, 1001, "worker exiting");
    }
    ws_free(e->ws);
    free(e);
}

static const struct http_takeover_ops tk_ops = {tk_drain, tk_destroy};

/* Upgrade req to a WebSocket bound to s (a probe when s polls), or to a new
 * session when s is NULL. */
static void ws_upgrade(struct sio_ctx *ctx, struct http_request *req, struct eio_session *s)
{
    char accept[WS_ACCEPT_LEN];
    const char *why = NULL;
    int st = ws_handshake_check(req, accept, &why);
    if (st) {
        if (st == 426) resp_header(req, "Sec-WebSocket-Version", "13");
        eio_error(req, st, 3, why);
        return;
    }
    struct eio_ws *e = calloc(1, sizeof(*e));
    if (!e) {
        eio_error(req, 500, 3, "out of memory");
        return;
    }
    e->ctx = ctx;
    e->req = req;
    struct http_takeover tk;
    if (http_conn_takeover(req, &tk_ops, e, &tk) < 0) {
        free(e);
        eio_error(req, 500, 3, "cannot take the connection over");
        return;
    }
    struct buf head;
    buf_init(&head);
    buf_printf(&head,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n",
               accept);
    int fresh = s == NULL;
    if (fresh) {
        s = sess_new(ctx, EIO_T_WS, req);
        if (!s) goto fail;
    }
    e->ws = ws_new(ctx->w->loop, tk.fd, head.data, head.len, tk.in->data, tk.in->len,
                   ctx->w->cfg->limits.ws_message, &ws_handler, e);
    if (!e->ws) goto fail;
    buf_free(tk.in); /* copied: an idle WebSocket keeps no read buffer of http_conn's */
    buf_free(&head);
    http_conn_compact(req); /* nor the parsed request head (only its access line) */
    e->s = s;
    if (fresh) {
        s->ws = e;
        struct buf *t = &ctx->tmp;
        buf_reset(t);
        open_packet(s, t, 0);
        ws_send(e->ws, 0, t->data, t->len);
    } else {
        s->probe = e;
    }
    return;
fail:
    buf_free(&head);
    if (fresh && s) sess_kill(s, 1011, "out of memory");
    free(e);
    http_conn_finish(req, 500, 0);
}

/* ---- polling ------------------------------------------------------------------------- */

static void poll_get(struct eio_session *s, struct http_request *req)
{
    if (s->transport == EIO_T_WS) {
        eio_error(req, 400, 3, "Bad request: this session was upgraded to websocket");
        return;
    }
    if (s->poll_req) {
        eio_error(req, 400, 3, "Bad request: overlapping polling requests");
        sess_kill(s, 1002, "overlapping polls");
        return;
    }
    s->poll_req = req;
    req->on_abort = poll_abort;
    req->abort_arg = s;
    if (s->probe && s->outq.len == 0) eio_payload_add(&s->outq, EIO_NOOP, NULL, 0, 0);
    flush_poll(s);
}

static void poll_post(struct eio_session *s, struct http_request *req)
{
    if (s->transport == EIO_T_WS) {
        eio_error(req, 400, 3, "Bad request: this session was upgraded to websocket");
        return;
    }
    struct buf scratch;
    buf_init(&scratch);
    size_t pos = 0;
    struct eio_packet p;
    int rc;
    while (!s->dead && (rc = eio_payload_next(req->body.data ? req->body.data : "", req->body.len,
                                              &pos, &p, &scratch)) == 1) {
        if (on_packet(s, &p) < 0) {
            rc = -1;
            break;
        }
    }
    buf_free(&scratch);
    if (rc < 0 && !s->dead) {
        log_info("socket.io session %s: malformed polling payload; closing it", s->sid);
        sess_kill(s, 1002, "malformed payload");
        eio_error(req, 400, 3, "Bad request: malformed payload");
        return;
    }
    cors(req);
    buf_puts(resp_body(req), "ok");
    resp_send(req, 200, "text/html");
}

/* ---- hand-off to the owning worker ------------------------------------------------------ */

static const struct http_takeover_ops handoff_ops = {NULL, NULL};

static void handoff(struct sio_ctx *ctx, struct http_request *req, const char *slot)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, slot);
    buf_append(&b, "", 1);
    buf_printf(&b, "%s %s HTTP/%d.%d\r\n", req->method_str, req->url, req->http_major,
               req->http_minor);
    for (int i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (strcasecmp(h->name, "Content-Length") == 0 ||
            strcasecmp(h->name, "Transfer-Encoding") == 0)
            continue;
        buf_printf(&b, "%s: %s\r\n", h->name, h->value);
    }
    if (req->body.len) buf_printf(&b, "Content-Length: %zu\r\n", req->body.len);
    buf_puts(&b, "\r\n");
    if (req->body.len) buf_append(&b, req->body.data, req->body.len);
    struct http_takeover tk;
    if (buf_failed(&b) || b.len > CHAT_FRAME_MAX ||
        http_conn_takeover(req, &handoff_ops, NULL, &tk) < 0) {
        buf_free(&b);
        eio_error(req, 413, 3, "request too large to hand to the session's worker");
        return;
    }
    if (tk.in->len) buf_append(&b, tk.in->data, tk.in->len); /* pipelined bytes */
    if (!ctx->linked || b.len > CHAT_FRAME_MAX ||
        chatq_send(&ctx->q, CHAT_HANDOFF, b.data, b.len, tk.fd) < 0) {
        buf_free(&b);
        http_conn_return(req);
        eio_error(req, 400, 1, "Session ID unknown");
        return;
    }
    buf_consume(tk.in, tk.in->len);
    buf_free(&b);
    http_conn_finish(req, 0, 0); /* the owner logs the exchange */
}

/* ---- the route ------------------------------------------------------------------------- */

void handle_socketio(struct http_request *req)
{
    struct sio_ctx *ctx = req->w->sio;
    char eio[8], transport[16], sid[EIO_SID_LEN + 8];
    if (!ctx) {
        resp_error(req, 503, "UNAVAILABLE", "the Socket.IO server is not running");
        return;
    }
    if (req->method == HTTP_OPTIONS) {
        const char *origin = http_request_header(req, "Origin");
        if (!origin_allowed(ctx, req)) {
            resp_error(req, 403, "FORBIDDEN", "origin not allowed");
            return;
        }
        cors(req);
        if (origin) {
            resp_header(req, "Access-Control-Allow-Methods", "GET, POST");
            resp_header(req, "Access-Control-Allow-Headers", "content-type");
        }
        resp_send(req, 204, NULL);
        return;
    }
    if (query_get(req->query, "EIO", eio, sizeof(eio)) < 0 || strcmp(eio, "4") != 0) {
        eio_error(req, 400, 5, "Unsupported protocol version");
        return;
    }
    if (query_get(req->query, "transport", transport, sizeof(transport)) < 0 ||
        (strcmp(transport, "polling") != 0 && strcmp(transport, "websocket") != 0)) {
        eio_error(req, 400, 0, "Transport unknown");
        return;
    }
    int has_sid = query_get(req->query, "sid", sid, sizeof(sid)) == 0;
    if (has_sid) {
        unsigned owner;
        if (strlen(sid) != EIO_SID_LEN - 1 || sscanf(sid, "%2x", &owner) != 1) {
            eio_error(req, 400, 1, "Session ID unknown");
            return;
        }
        if ((int)owner != req->w->slot) {
            char slot[8];
            snprintf(slot, sizeof(slot), "%u", owner);
            handoff(ctx, req, slot);
            return;
        }
    }
    if (!origin_allowed(ctx, req)) {
        log_info("socket.io: refused Origin %s (auth.client_url is %s)",
                 http_request_header(req, "Origin"), req->w->cfg->auth.client_url);
        resp_error(req, 403, "FORBIDDEN",
                   "Origin %s is not allowed: only auth.client_url (CLIENT_URL) may connect",
                   http_request_header(req, "Origin"));
        return;
    }
    int websocket = strcmp(transport, "websocket") == 0;
    if (!has_sid) {
        if (req->w->draining) {
            eio_error(req, 503, 3, "server shutting down");
            return;
        }
        if (websocket) {
            ws_upgrade(ctx, req, NULL);
            return;
        }
        if (req->method != HTTP_GET) {
            eio_error(req, 400, 3, "Bad handshake method");
            return;
        }
        struct eio_session *s = sess_new(ctx, EIO_T_POLLING, req);
        if (!s) {
            eio_error(req, 500, 3, "out of memory");
            return;
        }
        struct buf *b = resp_body(req);
        open_packet(s, b, 1);
        cors(req);
        resp_send(req, 200, CT_EIO);
        return;
    }
    struct eio_session *s = eio_find(ctx, sid);
    if (!s) {
        eio_error(req, 400, 1, "Session ID unknown");
        return;
    }
    if (websocket) {
        if (s->transport != EIO_T_POLLING || s->probe || s->closing) {
            eio_error(req, 400, 3, "Bad request: upgrade not possible now");
            return;
        }
        ws_upgrade(ctx, req, s);
        return;
    }
    if (req->method == HTTP_GET)
        poll_get(s, req);
    else if (req->method == HTTP_POST)
        poll_post(s, req);
    else
        eio_error(req, 400, 2, "Bad HTTP method");
}

/* ---- worker hooks ------------------------------------------------------------------------ */

static double env_seconds(const char *name, double dflt)
{
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    double ms = strtod(v, NULL);
    return ms >= 10 ? ms / 1000.0 : dflt;
}

int sio_init(struct worker_ctx *w)
{
    struct sio_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return -1;
    ctx->w = w;
    chat_map_init(&ctx->sessions);
    chat_map_init(&ctx->users);
    chat_map_init(&ctx->rooms);
    chat_map_init(&ctx->waiting);
    chatq_init(&ctx->q, w->loop);
    buf_init(&ctx->tmp);
    /* Engine.IO defaults; the environment overrides exist for tests of dead-peer
     * detection, which would otherwise take 45 s (values in ms). */
    ctx->ping_interval = env_seconds("SVCD_SIO_PING_INTERVAL", DEFAULT_INTERVAL);
    ctx->ping_timeout = env_seconds("SVCD_SIO_PING_TIMEOUT", DEFAULT_TIMEOUT);
    w->sio = ctx;
    return 0;
}

void sio_drain(struct worker_ctx *w)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx) return;
    struct eio_session *s = ctx->all, *next;
    for (; s; s = next) {
        next = s->next;
        if (s->transport == EIO_T_POLLING && !s->poll_req) {
            /* nothing to answer: the next poll (to whichever worker) ends it */
            eio_close(s, 1001, "server going away");
            continue;
        }
        sess_kill(s, 1001, "server going away");
    }
}

void sio_shutdown(struct worker_ctx *w)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx) return;
    while (ctx->all) sess_kill(ctx->all, 1001, "worker exiting");
    while (ctx->dead) sess_free(ctx->dead); /* the loop is not turning any more */
    sio_ctx_free_chat(ctx);
    chatq_detach(&ctx->q);
    chat_map_free(&ctx->sessions);
    chat_map_free(&ctx->users);
    chat_map_free(&ctx->rooms);
    chat_map_free(&ctx->waiting);
    buf_free(&ctx->tmp);
    free(ctx);
    w->sio = NULL;
}

void sio_coord_linked(struct worker_ctx *w)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx) return;
    chatq_attach(&ctx->q, w->coord_fd);
    ctx->linked = w->coord_fd >= 0;
    if (ctx->linked) {
        /* room fan-out bursts: room for more than the default ~200 KiB in flight */
        int sz = 4 * 1024 * 1024;
        setsockopt(w->coord_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    if (ctx->linked) sio_reannounce(ctx);
}

void sio_coord_unlinked(struct worker_ctx *w)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx) return;
    chatq_detach(&ctx->q);
    ctx->linked = 0;
}

void sio_coord_frame(struct worker_ctx *w, uint8_t type, const char *payload, size_t len, int fd)
{
    struct sio_ctx *ctx = w->sio;
    if (type == CHAT_HANDOFF && fd >= 0) {
        if (http_conn_adopt(w, fd, payload, len) < 0)
            log_warn("cannot adopt a handed-over Socket.IO connection");
        return;
    }
    if (fd >= 0) close(fd);
    if (ctx) sio_chat_frame(ctx, type, payload, len, -1);
}
