/*
 * ws.c — WebSocket connections over wslay's event API (see ws.h for the why).
 *
 * One ev_io per direction on the taken-over fd. Reads go through wslay_event_recv
 * (which calls recv_cb: first the bytes http_conn had already buffered, then the
 * socket), writes through wslay_event_send, after the 101 response head. After
 * every event ws_update() derives the watchers from wslay's want_read/want_write;
 * when wslay wants neither, the connection is over and on_closed is delivered
 * from a zero-delay timer, so no owner callback ever runs inside a ws_* call the
 * owner made itself.
 */
#include "ws.h"

#include <errno.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#include "../common/log.h"

#define WS_CLOSE_WAIT_S 3.0               /* the peer's close reply, then we cut */
#define WS_OUT_MIN      (8 * 1024 * 1024) /* queued output bound: max(this, 4 x max_msg) */

struct ws_conn {
    struct ev_loop *loop;
    int fd;
    wslay_event_context_ptr ctx;
    const struct ws_handler *h;
    void *ud;
    ev_io rio, wio;
    ev_timer timer; /* close deadline, and the deferred on_closed */
    char *head;     /* 101 response still to write */
    size_t head_len, head_pos;
    char *in; /* bytes read before the takeover */
    size_t in_len, in_pos;
    uint64_t max_msg;
    size_t out_bound;
    size_t queued; /* bytes of messages queued and not yet sent (approx.) */
    unsigned long long bytes_out;
    int failed;   /* I/O error or EOF: the connection is dead */
    int finished; /* on_closed scheduled */
    int closing;  /* a close frame was queued by us */
    int peer_eof;
    int code; /* close code to report */
    /* wslay sends control frames before queued messages: our close waits until
     * the messages queued before it are out */
    int close_pending;
    uint16_t close_code;
    char close_reason[124];
};

static void ws_update(struct ws_conn *ws);

/* ---- handshake --------------------------------------------------------------- */

void ws_accept_key(const char *key, size_t len, char accept[WS_ACCEPT_LEN])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    char in[128 + sizeof(guid)];
    if (len > 128) len = 128;
    memcpy(in, key, len);
    memcpy(in + len, guid, sizeof(guid) - 1);
    SHA1((const unsigned char *)in, len + sizeof(guid) - 1, md);
    EVP_EncodeBlock((unsigned char *)accept, md, SHA_DIGEST_LENGTH);
}

/* Does the comma-separated header value contain `token` (case-insensitive)? */
static int has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',') v++;
        const char *e = v;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0) return 1;
        v = e;
    }
    return 0;
}

int ws_handshake_check(const struct http_request *req, char accept[WS_ACCEPT_LEN], const char **why)
{
    const char *up = http_request_header(req, "Upgrade");
    const char *conn = http_request_header(req, "Connection");
    const char *ver = http_request_header(req, "Sec-WebSocket-Version");
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    if (req->method_str == NULL || strcmp(req->method_str, "GET") != 0) {
        *why = "a WebSocket handshake must be a GET request";
        return 400;
    }
    if (!up || !has_token(up, "websocket") || !conn || !has_token(conn, "upgrade")) {
        *why = "expected 'Upgrade: websocket' and 'Connection: Upgrade'";
        return 400;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        *why = "unsupported Sec-WebSocket-Version: only 13 (RFC 6455) is spoken";
        return 426;
    }
    unsigned char raw[32];
    if (!key || strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 ||
        key[22] != '=' || key[23] != '=') {
        *why = "Sec-WebSocket-Key must be 16 random bytes in base64";
        return 400;
    }
    ws_accept_key(key, 24, accept);
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

int ws_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n) return 0; /* truncated sequence */
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* ---- wslay callbacks ----------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws_conn *ws = user;
    if (ws->in_pos < ws->in_len) {
        size_t n = ws->in_len - ws->in_pos;
        if (n > len) n = len;
        memcpy(buf, ws->in + ws->in_pos, n);
        ws->in_pos += n;
        if (ws->in_pos == ws->in_len) {
            free(ws->in);
            ws->in = NULL;
            ws->in_len = ws->in_pos = 0;
        }
        return (ssize_t)n;
    }
    ssize_t r;
    do {
        r = recv(ws->fd, buf, len, 0);
    } while (r < 0 && errno == EINTR);
    if (r > 0) return r;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ws->peer_eof = 1;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct ws_conn *ws = user;
    ssize_t r;
    do {
        r = send(ws->fd, data, len, MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0));
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
        ws->bytes_out += (unsigned long long)r;
        ws->queued = ws->queued > (size_t)r ? ws->queued - (size_t)r : 0;
        return r;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ws->failed = 1;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *user)
{
    struct ws_conn *ws = user;
    if (ws->closing || ws->finished) return;
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
        int binary = a->opcode == WSLAY_BINARY_FRAME;
        if (!binary && !ws_utf8_valid(a->msg, a->msg_length)) {
            ws_close(ws, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message");
            return;
        }
        ws->h->on_message(ws->ud, binary, a->msg, a->msg_length);
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        ws->code = a->status_code ? a->status_code : WSLAY_CODE_NO_STATUS_RCVD;
        /* The close reason is UTF-8 too (RFC 6455 5.5.1). wslay checks it only
         * when the frame came in one read; in pieces it has queued a reply echoing
         * it as is. An invalid one fails the connection (8.1): dropped without
         * that echo. Found by test/fuzz/fuzz_ws.c. */
        if (a->msg_length > 2 && !ws_utf8_valid(a->msg + 2, a->msg_length - 2)) {
            ws->code = WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA;
            ws->failed = 1;
        }
    }
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_msg_recv_callback = on_msg,
};

/* ---- driving ------------------------------------------------------------------- */

static int flush_head(struct ws_conn *ws)
{
    while (ws->head_pos < ws->head_len) {
        ssize_t r =
            send(ws->fd, ws->head + ws->head_pos, ws->head_len - ws->head_pos, MSG_NOSIGNAL);
        if (r > 0) {
            ws->head_pos += (size_t)r;
            ws->bytes_out += (unsigned long long)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        ws->failed = 1;
        return -1;
    }
    free(ws->head);
    ws->head = NULL;
    ws->head_len = ws->head_pos = 0;
    return 0;
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct ws_conn *ws = t->data;
    if (ws->finished) {
        ev_io_stop(loop, &ws->rio);
        ev_io_stop(loop, &ws->wio);
        ws->h->on_closed(ws->ud, ws->code);
        return;
    }
    /* the peer did not answer our close in time */
    ws->failed = 1;
    ws_update(ws);
}

static void finish(struct ws_conn *ws)
{
    if (ws->finished) return;
    ws->finished = 1;
    if (!wslay_event_get_close_received(ws->ctx) && wslay_event_get_close_sent(ws->ctx))
        ws->code = wslay_event_get_status_code_sent(ws->ctx);
    ev_io_stop(ws->loop, &ws->rio);
    ev_io_stop(ws->loop, &ws->wio);
    ev_timer_stop(ws->loop, &ws->timer);
    ev_timer_set(&ws->timer, 0., 0.);
    ev_timer_start(ws->loop, &ws->timer);
}

static void queue_close_now(struct ws_conn *ws)
{
    ws->close_pending = 0;
    if (!wslay_event_get_close_sent(ws->ctx))
        wslay_event_queue_close(ws->ctx, ws->close_code, (const uint8_t *)ws->close_reason,
                                strlen(ws->close_reason));
}

static void ws_update(struct ws_conn *ws)
{
    if (ws->finished) return;
    if (!ws->failed && ws->head_len) flush_head(ws);
    if (!ws->failed && !ws->head_len && wslay_event_want_write(ws->ctx)) {
        if (wslay_event_send(ws->ctx) != 0) ws->failed = 1;
    }
    if (!ws->failed && !ws->head_len && ws->close_pending &&
        wslay_event_get_queued_msg_count(ws->ctx) == 0) {
        queue_close_now(ws);
        if (wslay_event_send(ws->ctx) != 0) ws->failed = 1;
    }
    int want_read = !ws->failed && wslay_event_want_read(ws->ctx);
    int want_write = !ws->failed && (ws->head_len || wslay_event_want_write(ws->ctx));
    if (ws->failed || (!want_read && !want_write)) {
        finish(ws);
        return;
    }
    /* Input already buffered is handed to wslay without waiting for readiness. */
    if (want_read && ws->in_len && !ws->head_len) {
        if (wslay_event_recv(ws->ctx) != 0) ws->failed = 1;
        ws_update(ws);
        return;
    }
    if (want_read && !ev_is_active(&ws->rio)) ev_io_start(ws->loop, &ws->rio);
    if (!want_read && ev_is_active(&ws->rio)) ev_io_stop(ws->loop, &ws->rio);
    if (want_write && !ev_is_active(&ws->wio)) ev_io_start(ws->loop, &ws->wio);
    if (!want_write && ev_is_active(&ws->wio)) ev_io_stop(ws->loop, &ws->wio);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct ws_conn *ws = io->data;
    if ((revents & EV_READ) && !ws->failed && !ws->finished) {
        if (wslay_event_recv(ws->ctx) != 0) ws->failed = 1;
    }
    ws_update(ws);
}

struct ws_conn *ws_new(struct ev_loop *loop, int fd, const char *head, size_t head_len,
                       const char *in, size_t in_len, uint64_t max_msg, const struct ws_handler *h,
                       void *ud)
{
    struct ws_conn *ws = calloc(1, sizeof(*ws));
    if (!ws) return NULL;
    ws->loop = loop;
    ws->fd = fd;
    ws->h = h;
    ws->ud = ud;
    ws->code = WSLAY_CODE_ABNORMAL_CLOSURE;
    ws->max_msg = max_msg;
    ws->out_bound = max_msg * 4 > WS_OUT_MIN ? (size_t)max_msg * 4 : WS_OUT_MIN;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
        free(ws);
        return NULL;
    }
    if (max_msg) wslay_event_config_set_max_recv_msg_length(ws->ctx, max_msg);
    if (head_len) {
        ws->head = malloc(head_len);
        if (!ws->head) goto fail;
        memcpy(ws->head, head, head_len);
        ws->head_len = head_len;
    }
    if (in_len) {
        ws->in = malloc(in_len);
        if (!ws->in) goto fail;
        memcpy(ws->in, in, in_len);
        ws->in_len = in_len;
    }
    ev_io_init(&ws->rio, on_io, fd, EV_READ);
    ev_io_init(&ws->wio, on_io, fd, EV_WRITE);
    ev_init(&ws->timer, on_timer);
    ws->rio.data = ws->wio.data = ws->timer.data = ws;
    ev_io_start(loop, &ws->wio); /* the head goes out first; ws_update takes it from there */
    return ws;
fail:
    free(ws->head);
    wslay_event_context_free(ws->ctx);
    free(ws);
    return NULL;
}

int ws_send(struct ws_conn *ws, int binary, const void *data, size_t len)
{
    if (ws->closing || ws->finished || ws->failed) return -1;
    if (ws->queued + len > ws->out_bound) {
        log_info("websocket peer is not reading (%zu bytes queued); closing it", ws->queued);
        ws_close(ws, WSLAY_CODE_POLICY_VIOLATION, "slow consumer");
        return -1;
    }
    struct wslay_event_msg m = {binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, data, len};
    if (wslay_event_queue_msg(ws->ctx, &m) != 0) return -1;
    ws->queued += len;
    if (!ev_is_active(&ws->wio) && !ws->head_len) ev_io_start(ws->loop, &ws->wio);
    return 0;
}

void ws_close(struct ws_conn *ws, uint16_t code, const char *reason)
{
    if (ws->closing || ws->finished) return;
    ws->closing = 1;
    ws->close_code = code;
    snprintf(ws->close_reason, sizeof(ws->close_reason), "%.120s", reason ? reason : "");
    if (!wslay_event_get_close_received(ws->ctx)) ws->code = code;
    if (wslay_event_get_queued_msg_count(ws->ctx) == 0 && !ws->head_len)
        queue_close_now(ws);
    else
        ws->close_pending = 1;
    ev_timer_stop(ws->loop, &ws->timer);
    ev_timer_set(&ws->timer, WS_CLOSE_WAIT_S, 0.);
    ev_timer_start(ws->loop, &ws->timer);
    if (!ev_is_active(&ws->wio)) ev_io_start(ws->loop, &ws->wio);
}

void ws_ping(struct ws_conn *ws)
{
    if (ws->closing || ws->finished) return;
    struct wslay_event_msg m = {WSLAY_PING, NULL, 0};
    if (wslay_event_queue_msg(ws->ctx, &m) == 0 && !ev_is_active(&ws->wio))
        ev_io_start(ws->loop, &ws->wio);
}

void ws_free(struct ws_conn *ws)
{
    if (!ws) return;
    ev_io_stop(ws->loop, &ws->rio);
    ev_io_stop(ws->loop, &ws->wio);
    ev_timer_stop(ws->loop, &ws->timer);
    wslay_event_context_free(ws->ctx);
    free(ws->head);
    free(ws->in);
    free(ws);
}

int ws_closing(const struct ws_conn *ws)
{
    return ws->closing || ws->finished || ws->failed;
}

unsigned long long ws_bytes_out(const struct ws_conn *ws)
{
    return ws->bytes_out;
}

size_t ws_queued_bytes(const struct ws_conn *ws)
{
    return ws->queued;
}
