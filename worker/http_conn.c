/*
 * http_conn.c — the per-connection state machine of the worker.
 *
 * http_parser turns bytes into callbacks; this file turns those into requests,
 * hands each complete request to the router and writes the answers back in
 * order. It exists separately from the router and the handlers so that framing
 * rules (keep-alive, pipelining, limits, timeouts, drain) live in one place.
 *
 * States (one ev_timer serves whichever deadline the state has):
 *
 *   IDLE      keep-alive, waiting for the first byte    timer: timeouts.keepalive -> close
 *   HEADERS   request line + headers arriving           timer: timeouts.headers   -> 408
 *   BODY      headers done, body arriving               timer: timeouts.request   -> 408
 *   HANDLING  request complete, the handler owes the response; the parser is
 *             paused and reading stops, so pipelined requests wait in order
 *   FLUSHING  response queued, being written           timer: timeouts.request   -> close
 *   LINGER    "Connection: close" answer sent; write side shut down, input is
 *             read and dropped until EOF so the client sees the answer, not a
 *             reset caused by its unread bytes                  timer: 1s -> close
 *   TAKEN     a handler took the connection over (http_conn.h, "takeover"): this
 *             file stops reading, writing and timing it; the owner drives the fd
 *             until it hands it back (-> IDLE/LINGER) or ends it (-> closed)
 *
 * Routes flagged ROUTE_STREAM are dispatched at the end of the request head,
 * before any body byte is consumed (the parser is told the message has no
 * body): the handler either takes the connection over and streams the body
 * itself, or answers normally, and then the connection closes when a body was
 * announced, since its bytes were never read.
 *
 * After FLUSHING the connection goes back to IDLE (or straight to HEADERS when
 * pipelined bytes are already buffered), or to LINGER when it must close.
 * conn_run() is the one driver loop; every event (readable, writable, timer, an
 * asynchronous response) ends in it, and it is the only place a connection is
 * freed, so no callback ever touches freed memory.
 */
#include "http_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "response.h"
#include "router.h"

#define READ_CHUNK     (16 * 1024)
#define LINGER_MS      1000
#define DRAIN_GRACE_MS 300
#define KEEP_BUF_CAP   (64 * 1024) /* larger per-request buffers are freed between requests */
#define HDR_CAP_MIN    16 /* header slots allocated first; doubled up to HTTP_MAX_HEADERS */

enum conn_state {
    CS_IDLE,
    CS_HEADERS,
    CS_BODY,
    CS_HANDLING,
    CS_FLUSHING,
    CS_LINGER,
    CS_TAKEN,
    CS_CLOSED
};

/* which part of the request head the parser is appending to */
enum { HS_URL, HS_FIELD, HS_VALUE };

struct http_conn {
    struct http_conn *prev, *next;
    struct worker_ctx *w;
    int fd;
    enum conn_state state;
    ev_io rio, wio;
    ev_timer timer;
    http_parser parser;
    struct buf rbuf; /* received bytes; [rpos, len) not yet parsed */
    size_t rpos;
    struct buf wbuf; /* bytes to send; [wpos, len) not yet written */
    size_t wpos;
    struct http_request req;

    struct sockaddr_storage peer;
    socklen_t peerlen;
    char remote[INET6_ADDRSTRLEN];
    int tls; /* the plaintext end of a TLS connection (tls.c) */

    int close_after; /* close once the queued response is written */
    int peer_eof;    /* the client shut down its side */
    int in_run;      /* conn_run is on the stack */
    int drain_armed; /* IDLE while draining: grace timer running */
    int err_status;  /* set by a parser callback that rejected the request */
    char err_msg[192];

    /* ROUTE_STREAM requests: dispatched at the end of the head, body unread */
    int stream;
    int body_chunked;                       /* Transfer-Encoding: chunked */
    uint64_t body_len;                      /* Content-Length, 0 when none */
    const struct http_takeover_ops *tk_ops; /* CS_TAKEN: the owner's hooks */
    void *tk_owner;
};

static void conn_run(struct http_conn *c);

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void conn_arm(struct http_conn *c, uint64_t ms)
{
    ev_timer_stop(c->w->loop, &c->timer);
    if (ms == 0) return;
    ev_timer_set(&c->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

static void shrink(struct buf *b)
{
    if (b->cap > KEEP_BUF_CAP)
        buf_free(b);
    else
        buf_reset(b);
}

/* The header arrays: allocated with the first header, grown as headers come. */
static int grow_headers(struct http_request *r)
{
    int cap = r->hcap ? r->hcap * 2 : HDR_CAP_MIN;
    if (cap > HTTP_MAX_HEADERS) cap = HTTP_MAX_HEADERS;
    struct http_hoff *o = realloc(r->hoff, (size_t)cap * sizeof(*o));
    if (!o) return -1;
    r->hoff = o;
    struct http_header *h = realloc(r->headers, (size_t)cap * sizeof(*h));
    if (!h) return -1;
    r->headers = h;
    r->hcap = cap;
    return 0;
}

static void free_headers(struct http_request *r)
{
    free(r->headers);
    free(r->hoff);
    r->headers = NULL;
    r->hoff = NULL;
    r->hcap = 0;
    r->nheaders = 0;
}

static void request_reset(struct http_conn *c)
{
    struct http_request *r = &c->req;
    if (r->hcap > HDR_CAP_MIN) free_headers(r); /* a rare large head keeps nothing big */
    shrink(&r->raw);
    shrink(&r->scratch);
    shrink(&r->body);
    shrink(&r->resp.headers);
    shrink(&r->resp.body);
    r->method = -1;
    r->method_str = "-";
    r->url = r->path = "-";
    r->query = "";
    r->http_major = 1;
    r->http_minor = 1;
    r->nheaders = 0;
    r->headers_done = 0;
    r->keep_alive = 0;
    r->head = 0;
    r->upgrade = 0;
    r->start_us = 0;
    r->nparams = 0;
    r->route_flags = 0;
    r->resp.status = 0;
    r->resp.content_type = NULL;
    r->resp.sent = 0;
    r->on_abort = NULL;
    r->abort_arg = NULL;
    r->url_len = 0;
    r->hstate = HS_URL;
    r->in_trailers = 0;
    r->header_bytes = 0;
    c->err_status = 0;
    c->err_msg[0] = '\0';
    c->stream = 0;
    c->body_chunked = 0;
    c->body_len = 0;
}

/* ---- parser callbacks: bytes -> request ------------------------------------ */

static int reject_cb(struct http_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reject_cb(struct http_conn *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
    va_end(ap);
    c->err_status = status;
    return -1; /* stops the parser with HPE_CB_* */
}

static int too_large_body(struct http_conn *c)
{
    return reject_cb(c, 413, "request body is larger than limits.body (%llu bytes)",
                     (unsigned long long)c->w->cfg->limits.body);
}

static int too_large_head(struct http_conn *c)
{
    return reject_cb(c, 431, "request line and headers are larger than limits.header (%llu bytes)",
                     (unsigned long long)c->w->cfg->limits.header);
}

static int count_header_bytes(struct http_conn *c, size_t len)
{
    c->req.header_bytes += len;
    if (c->req.header_bytes > c->w->cfg->limits.header) return too_large_head(c);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    int64_t start = c->req.start_us;
    request_reset(c);
    c->req.start_us = start ? start : now_us();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (count_header_bytes(c, len)) return -1;
    buf_append(&c->req.raw, at, len);
    c->req.url_len += (uint32_t)len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_request *r = &c->req;
    /* ": " and CRLF count once per field, however many pieces its name came in
     * (the limit must not depend on how the client's bytes were cut) */
    int new_field = r->hstate != HS_FIELD;
    if (count_header_bytes(c, len + (new_field ? 4 : 0))) return -1;
    if (r->in_trailers) { /* trailers are counted, not kept */
        r->hstate = HS_FIELD;
        return 0;
    }
    if (new_field) {
        buf_append(&r->raw, "", 1); /* terminate the url or the previous value */
        if (r->nheaders == HTTP_MAX_HEADERS)
            return reject_cb(c, 431, "more than %d request header fields", HTTP_MAX_HEADERS);
        if (r->nheaders == r->hcap && grow_headers(r) < 0)
            return reject_cb(c, 500, "out of memory");
        r->hoff[r->nheaders].name_off = (uint32_t)r->raw.len;
        r->hoff[r->nheaders].name_len = 0;
        r->hoff[r->nheaders].value_off = 0;
        r->hoff[r->nheaders].value_len = 0;
        r->nheaders++;
        r->hstate = HS_FIELD;
    }
    buf_append(&r->raw, at, len);
    r->hoff[r->nheaders - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_request *r = &c->req;
    if (count_header_bytes(c, len)) return -1;
    if (r->in_trailers) {
        r->hstate = HS_VALUE;
        return 0;
    }
    if (r->hstate != HS_VALUE) {
        buf_append(&r->raw, "", 1); /* terminate the name */
        r->hoff[r->nheaders - 1].value_off = (uint32_t)r->raw.len;
        r->hstate = HS_VALUE;
    }
    buf_append(&r->raw, at, len);
    r->hoff[r->nheaders - 1].value_len += (uint32_t)len;
    return 0;
}

/* Split the request-target into path and query, and turn offsets into pointers
 * (only now: until the head is complete the buffer may still move). */
static int finish_head(struct http_conn *c, http_parser *p)
{
    struct http_request *r = &c->req;
    buf_append(&r->raw, "", 1);
    struct http_parser_url u;
    http_parser_url_init(&u);
    size_t path_off = 0, path_len = 0, query_off = 0, query_len = 0;
    int is_connect = p->method == HTTP_CONNECT;
    if (r->url_len && http_parser_parse_url(r->raw.data, r->url_len, is_connect, &u) == 0) {
        if (u.field_set & (1 << UF_PATH)) {
            path_off = u.field_data[UF_PATH].off;
            path_len = u.field_data[UF_PATH].len;
        }
        if (u.field_set & (1 << UF_QUERY)) {
            query_off = u.field_data[UF_QUERY].off;
            query_len = u.field_data[UF_QUERY].len;
        }
    } else if (!is_connect) {
        return reject_cb(c, 400, "invalid request target");
    }
    /* Reserve first: the copies below read from the buffer they append to. */
    if (buf_reserve(&r->raw, path_len + query_len + 4) < 0)
        return reject_cb(c, 500, "out of memory");
    size_t path_at = r->raw.len;
    if (path_len)
        buf_append(&r->raw, r->raw.data + path_off, path_len);
    else
        buf_append(&r->raw, "/", 1);
    buf_append(&r->raw, "", 1);
    size_t query_at = r->raw.len;
    buf_append(&r->raw, r->raw.data + query_off, query_len);
    buf_append(&r->raw, "", 1);
    if (buf_failed(&r->raw)) return reject_cb(c, 500, "out of memory");

    char *base = r->raw.data;
    r->url = base;
    r->path = base + path_at;
    r->query = base + query_at;
    for (int i = 0; i < r->nheaders; i++) {
        struct http_header *h = &r->headers[i];
        h->name = base + r->hoff[i].name_off;
        h->name_len = r->hoff[i].name_len;
        if (r->hoff[i].value_off) {
            char *v = base + r->hoff[i].value_off;
            size_t n = r->hoff[i].value_len;
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
            v[n] = '\0';
            h->value = v;
            h->value_len = n;
        } else {
            h->value = base + r->hoff[i].name_off + r->hoff[i].name_len; /* its NUL */
            h->value_len = 0;
        }
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_request *r = &c->req;
    const struct svcd_config *cfg = c->w->cfg;
    if (finish_head(c, p)) return -1;
    r->headers_done = 1;
    r->in_trailers = 1;
    r->hstate = HS_VALUE; /* the first trailer field, if any, starts a new field */
    r->method = p->method;
    r->method_str = http_method_str((enum http_method)p->method);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->keep_alive = http_should_keep_alive(p);
    r->head = p->method == HTTP_HEAD;
    r->upgrade = p->upgrade;

    int chunked = (p->flags & F_CHUNKED) != 0;
    int has_length = p->content_length != ULLONG_MAX && p->content_length > 0;
    const struct route *route = router_lookup(r);
    if (route && (route->flags & ROUTE_STREAM) &&
        (!(route->flags & ROUTE_FALLBACK) ||
         (c->w->fallback_claims && c->w->fallback_claims(c->w, r->path)))) {
        /* The handler gets the head now and the body bytes through a takeover;
         * no limit on the body here (the owner streams it), no 100 Continue (the
         * owner decides). "No body" makes the parser stop right after the head. */
        c->stream = 1;
        c->body_chunked = chunked;
        c->body_len = has_length ? p->content_length : 0;
        return 1;
    }
    if (has_length && p->content_length > cfg->limits.body) return too_large_body(c);
    if (chunked || has_length) {
        const char *expect = http_request_header(r, "Expect");
        if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1)
            buf_puts(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
        c->state = CS_BODY;
        conn_arm(c, cfg->timeouts.request_ms);
    }
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    struct http_conn *c = p->data;
    if (p->content_length > c->w->cfg->limits.body ||
        c->req.body.len + p->content_length > c->w->cfg->limits.body)
        return too_large_body(c);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->req.body.len + len > c->w->cfg->limits.body) return too_large_body(c);
    buf_append(&c->req.body, at, len);
    if (buf_failed(&c->req.body)) return reject_cb(c, 500, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    c->state = CS_HANDLING;
    /* Pipelining: stop here; the bytes after this request wait in rbuf until its
     * response has been written. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---- responses ------------------------------------------------------------- */

/* One access-log line and the scoreboard counters for the request that ends. */
static void conn_log(struct http_conn *c, int status, unsigned long long bytes)
{
    struct http_request *req = &c->req;
    int64_t lat = now_us() - req->start_us;
    if (lat < 0) lat = 0;
    const char *ua = req->headers_done ? http_request_header(req, "User-Agent") : NULL;
    log_access(c->remote, req->method_str, req->headers_done ? req->path : "-", status, bytes,
               (double)lat / 1000.0, ua);
    scoreboard_record(c->w->self, status, lat);
}

void http_conn_respond(struct http_request *req)
{
    struct http_conn *c = req->conn;
    struct worker_ctx *w = c->w;
    if (c->state != CS_HANDLING || req->resp.sent) return;
    req->resp.sent = 1;

    int keep = req->keep_alive && !req->upgrade && !c->close_after && !w->draining &&
               !c->peer_eof && req->resp.status >= 200 &&
               !(c->stream && (c->body_chunked || c->body_len)); /* body left unread */
    if (!keep) c->close_after = 1;

    struct http_response *r = &req->resp;
    size_t head_at = c->wbuf.len;
    int body = resp_has_body(req);
    resp_serialize_head(w, req, r->body.len, keep, keep ? w->cfg->timeouts.keepalive_ms / 1000 : 0,
                        &c->wbuf);
    if (body && r->body.len) buf_append(&c->wbuf, r->body.data, r->body.len);
    if (buf_failed(&c->wbuf)) {
        log_error("out of memory writing a response to %s; closing the connection", c->remote);
        c->close_after = 1;
        c->wbuf.len = head_at;
    }
    conn_log(c, r->status, (unsigned long long)(c->wbuf.len - head_at));

    c->state = CS_FLUSHING;
    conn_arm(c, w->cfg->timeouts.request_ms);
    if (!c->in_run) conn_run(c);
}

/* The connection itself answers (parse error, limit, timeout) and then closes. */
static void conn_reject(struct http_conn *c, int status, const char *msg)
{
    c->state = CS_HANDLING;
    c->close_after = 1;
    if (!c->req.start_us) c->req.start_us = now_us();
    if (!c->req.headers_done) c->req.head = 0;
    resp_error(&c->req, status, resp_error_code(status), "%s", msg);
}

static void conn_parse_error(struct http_conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    char msg[256];
    if (c->err_status) {
        conn_reject(c, c->err_status, c->err_msg[0] ? c->err_msg : "request rejected");
    } else if (e == HPE_HEADER_OVERFLOW) {
        too_large_head(c);
        conn_reject(c, 431, c->err_msg);
    } else {
        snprintf(msg, sizeof(msg), "malformed HTTP request: %s (%s)", http_errno_description(e),
                 http_errno_name(e));
        conn_reject(c, 400, msg);
    }
}

/* ---- the state machine ----------------------------------------------------- */

static void conn_dispatch(struct http_conn *c)
{
    conn_arm(c, 0);
    c->req.conn = c;
    c->req.w = c->w;
    router_dispatch(&c->req);
}

/* Feed buffered input to the parser once. */
static void conn_parse(struct http_conn *c)
{
    if (c->state == CS_IDLE) {
        c->state = CS_HEADERS;
        c->drain_armed = 0;
        c->req.start_us = now_us();
        conn_arm(c, c->w->cfg->timeouts.headers_ms);
    }
    size_t avail = c->rbuf.len - c->rpos;
    size_t n = http_parser_execute(&c->parser, &parser_settings, c->rbuf.data + c->rpos, avail);
    c->rpos += n;
    if (c->rpos >= c->rbuf.len) {
        buf_reset(&c->rbuf);
        c->rpos = 0;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&c->parser, 0);
        if (c->req.upgrade) c->close_after = 1; /* the rest is another protocol */
        conn_dispatch(c);
    } else if (e != HPE_OK) {
        conn_parse_error(c);
    } else if (n < avail) {
        conn_reject(c, 400, "malformed HTTP request: unexpected data");
    }
}

static void conn_close(struct http_conn *c)
{
    if (c->state == CS_CLOSED) return;
    c->state = CS_CLOSED;
    if (!c->in_run) conn_run(c); /* frees it */
}

/* Write what is queued. Returns -1 when the peer is gone. */
static int conn_flush(struct http_conn *c)
{
    while (c->wpos < c->wbuf.len) {
        ssize_t n = send(c->fd, c->wbuf.data + c->wpos, c->wbuf.len - c->wpos, MSG_NOSIGNAL);
        if (n > 0) {
            c->wpos += (size_t)n;
            if (c->state == CS_FLUSHING) conn_arm(c, c->w->cfg->timeouts.request_ms);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n < 0 && errno != EPIPE && errno != ECONNRESET)
            log_debug("write to %s failed: %s", c->remote, strerror(errno));
        return -1;
    }
    c->wpos = 0;
    shrink(&c->wbuf);
    return 0;
}

/* The response is on the wire: next request, or close. */
static void conn_response_done(struct http_conn *c)
{
    request_reset(c);
    if (c->close_after) {
        if (c->peer_eof) {
            c->state = CS_CLOSED;
            return;
        }
        /* Lingering close: a client still sending (a rejected body, pipelined
         * requests) would otherwise get a RST that can destroy our answer. */
        shutdown(c->fd, SHUT_WR);
        buf_free(&c->rbuf);
        c->rpos = 0;
        c->state = CS_LINGER;
        conn_arm(c, LINGER_MS);
        return;
    }
    c->state = CS_IDLE;
    conn_arm(c, c->w->cfg->timeouts.keepalive_ms);
    if (c->rpos >= c->rbuf.len) {
        /* An idle keep-alive connection holds no buffer: thousands of them
         * should cost little more than their struct. */
        struct http_request *r = &c->req;
        buf_free(&c->rbuf);
        c->rpos = 0;
        buf_free(&c->wbuf);
        buf_free(&r->raw);
        buf_free(&r->scratch);
        buf_free(&r->body);
        buf_free(&r->resp.headers);
        buf_free(&r->resp.body);
        free_headers(r);
    }
}

static void conn_sync_io(struct http_conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int want_read = !c->peer_eof && (c->state == CS_IDLE || c->state == CS_HEADERS ||
                                     c->state == CS_BODY || c->state == CS_LINGER);
    int want_write = c->wpos < c->wbuf.len;
    if (want_read && !ev_is_active(&c->rio)) ev_io_start(loop, &c->rio);
    if (!want_read && ev_is_active(&c->rio)) ev_io_stop(loop, &c->rio);
    if (want_write && !ev_is_active(&c->wio)) ev_io_start(loop, &c->wio);
    if (!want_write && ev_is_active(&c->wio)) ev_io_stop(loop, &c->wio);
}

static void conn_free(struct http_conn *c)
{
    struct worker_ctx *w = c->w;
    if (c->tk_ops) {
        const struct http_takeover_ops *ops = c->tk_ops;
        c->tk_ops = NULL;
        if (ops->destroy) ops->destroy(c->tk_owner);
    } else if (c->req.on_abort && !c->req.resp.sent) {
        c->req.on_abort(&c->req, c->req.abort_arg);
    }
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    close(c->fd);
    buf_free(&c->rbuf);
    buf_free(&c->wbuf);
    buf_free(&c->req.raw);
    buf_free(&c->req.scratch);
    buf_free(&c->req.body);
    buf_free(&c->req.resp.headers);
    buf_free(&c->req.resp.body);
    free_headers(&c->req);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    __atomic_store_n(&w->self->connections, (int64_t)w->nconns, __ATOMIC_RELAXED);
    free(c);
    worker_conn_closed(w);
}

/*
 * The driver: advance the connection as far as it can go without waiting, then
 * set the watchers for what it waits on. Re-entrant calls (a handler answering
 * synchronously from inside conn_dispatch) return at once; the outer loop picks
 * up the new state.
 */
static void conn_run(struct http_conn *c)
{
    if (c->in_run) return;
    c->in_run = 1;
    while (c->state != CS_CLOSED) {
        if (c->wpos < c->wbuf.len && conn_flush(c) < 0) {
            c->state = CS_CLOSED;
            break;
        }
        int pending = c->wpos < c->wbuf.len;
        if (c->state == CS_FLUSHING) {
            if (pending) break;
            conn_response_done(c);
            continue;
        }
        if (c->state == CS_IDLE || c->state == CS_HEADERS || c->state == CS_BODY) {
            if (c->rpos < c->rbuf.len) {
                conn_parse(c);
                continue;
            }
            if (c->peer_eof) {
                /* nothing more will come: an unfinished request is abandoned */
                c->state = CS_CLOSED;
                break;
            }
            if (c->state == CS_IDLE && c->w->draining && !c->drain_armed) {
                c->drain_armed = 1;
                conn_arm(c, DRAIN_GRACE_MS);
            }
            break;
        }
        if (c->state == CS_LINGER && c->peer_eof) {
            c->state = CS_CLOSED;
            continue;
        }
        break; /* HANDLING, LINGER, TAKEN */
    }
    c->in_run = 0;
    if (c->state == CS_CLOSED)
        conn_free(c);
    else
        conn_sync_io(c);
}

/* ---- libev callbacks ------------------------------------------------------- */

static void on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct http_conn *c = io->data;
    if (c->state == CS_LINGER) {
        char sink[4096];
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_close(c);
        return;
    }
    if (c->rpos > 0) {
        buf_consume(&c->rbuf, c->rpos);
        c->rpos = 0;
    }
    if (buf_reserve(&c->rbuf, READ_CHUNK) < 0) {
        log_error("out of memory reading from %s; closing the connection", c->remote);
        conn_close(c);
        return;
    }
    ssize_t n = recv(c->fd, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len - 1, 0);
    if (n > 0) {
        c->rbuf.len += (size_t)n;
        c->rbuf.data[c->rbuf.len] = '\0';
    } else if (n == 0) {
        c->peer_eof = 1;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return;
    } else {
        if (errno != ECONNRESET) log_debug("read from %s failed: %s", c->remote, strerror(errno));
        conn_close(c);
        return;
    }
    conn_run(c);
}

static void on_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    conn_run(io->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct http_conn *c = t->data;
    char msg[128];
    switch (c->state) {
    case CS_HEADERS:
        snprintf(msg, sizeof(msg), "request headers not received within %llu ms",
                 (unsigned long long)c->w->cfg->timeouts.headers_ms);
        conn_reject(c, 408, msg);
        break;
    case CS_BODY:
        snprintf(msg, sizeof(msg), "request body not received within %llu ms",
                 (unsigned long long)c->w->cfg->timeouts.request_ms);
        conn_reject(c, 408, msg);
        break;
    case CS_IDLE:     /* keep-alive expired, or the drain grace ended */
    case CS_FLUSHING: /* the client stopped reading */
    case CS_LINGER:
        conn_close(c);
        break;
    default:
        break;
    }
}

/* ---- public ---------------------------------------------------------------- */

int http_conn_accept(struct worker_ctx *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
    struct http_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -1;
    }
    c->w = w;
    c->fd = fd;
    if (salen > sizeof(c->peer)) salen = sizeof(c->peer);
    memcpy(&c->peer, sa, salen);
    c->peerlen = salen;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->remote,
                  sizeof(c->remote));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->remote,
                  sizeof(c->remote));
    else
        snprintf(c->remote, sizeof(c->remote), "local");

    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->req.conn = c;
    c->req.w = w;
    request_reset(c);
    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    c->rio.data = c->wio.data = c->timer.data = c;

    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    __atomic_store_n(&w->self->connections, (int64_t)w->nconns, __ATOMIC_RELAXED);
    __atomic_add_fetch(&w->self->accepted, 1, __ATOMIC_RELAXED);

    c->state = CS_IDLE;
    conn_arm(c, w->cfg->timeouts.keepalive_ms);
    conn_run(c);
    return 0;
}

int http_conn_accept_tls(struct worker_ctx *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
    if (http_conn_accept(w, fd, sa, salen) < 0) return -1;
    struct http_conn *c = w->conns; /* accept puts the new connection first */
    if (c && c->fd == fd) c->tls = 1;
    return 0;
}

int http_conn_is_tls(const struct http_conn *c)
{
    return c->tls;
}

int http_conn_adopt(struct worker_ctx *w, int fd, const void *bytes, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) sl = sizeof(sa_family_t);
    if (http_conn_accept(w, fd, (struct sockaddr *)&ss, sl) < 0) return -1;
    struct http_conn *c = w->conns; /* accept puts the new connection first */
    if (!c || c->fd != fd || c->state != CS_IDLE) return 0; /* already gone */
    buf_append(&c->rbuf, bytes, len);
    if (buf_failed(&c->rbuf)) {
        conn_close(c);
        return -1;
    }
    conn_run(c);
    return 0;
}

void http_conn_drain_all(struct worker_ctx *w)
{
    struct http_conn *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CS_TAKEN) {
            /* may release or finish c (and free it): `next` was read first, and an
             * owner only ever ends its own connection from here */
            if (c->tk_ops && c->tk_ops->drain) c->tk_ops->drain(c->tk_owner);
            continue;
        }
        conn_run(c); /* IDLE ones arm their grace timer */
    }
}

void http_conn_close_all(struct worker_ctx *w)
{
    while (w->conns) {
        struct http_conn *c = w->conns;
        c->state = CS_CLOSED;
        conn_free(c);
    }
}

const struct sockaddr *http_conn_peer(const struct http_conn *c, socklen_t *len)
{
    if (len) *len = c->peerlen;
    return (const struct sockaddr *)&c->peer;
}

const char *http_conn_remote(const struct http_conn *c)
{
    return c->remote;
}

/* ---- takeover (see http_conn.h) -------------------------------------------- */

int http_conn_takeover(struct http_request *req, const struct http_takeover_ops *ops, void *owner,
                       struct http_takeover *out)
{
    struct http_conn *c = req->conn;
    if (c->state != CS_HANDLING || req->resp.sent) return -1;
    /* A "100 Continue" queued at the end of the head may still be unsent when the
     * body came in the same read: write it now (a few bytes on an idle socket), so
     * whether a takeover works does not depend on how the client's bytes were cut. */
    if (c->wpos < c->wbuf.len && conn_flush(c) < 0) return -1;
    if (c->wpos < c->wbuf.len) return -1;
    /* Keep only the unparsed bytes, at the front of the buffer the owner gets. */
    if (c->rpos > 0) {
        buf_consume(&c->rbuf, c->rpos);
        c->rpos = 0;
    }
    conn_arm(c, 0);
    ev_io_stop(c->w->loop, &c->rio);
    ev_io_stop(c->w->loop, &c->wio);
    c->state = CS_TAKEN;
    c->tk_ops = ops;
    c->tk_owner = owner;
    out->fd = c->fd;
    out->in = &c->rbuf;
    out->body_chunked = c->stream ? c->body_chunked : 0;
    out->body_length = c->stream ? c->body_len : 0;
    out->body_unread = c->stream && (c->body_chunked || c->body_len);
    return 0;
}

void http_conn_release(struct http_request *req, int status, unsigned long long bytes_out,
                       int keep_alive)
{
    struct http_conn *c = req->conn;
    if (c->state != CS_TAKEN) return;
    c->tk_ops = NULL;
    c->tk_owner = NULL;
    req->resp.sent = 1;
    conn_log(c, status, bytes_out);
    if (!keep_alive || !req->keep_alive || c->w->draining) c->close_after = 1;
    c->state = CS_FLUSHING; /* nothing queued: conn_run moves on to the next request */
    if (!c->in_run) conn_run(c);
}

void http_conn_return(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (c->state != CS_TAKEN) return;
    c->tk_ops = NULL;
    c->tk_owner = NULL;
    c->state = CS_HANDLING;
}

void http_conn_finish(struct http_request *req, int status, unsigned long long bytes_out)
{
    struct http_conn *c = req->conn;
    if (c->state != CS_TAKEN) return;
    c->tk_ops = NULL;
    c->tk_owner = NULL;
    req->resp.sent = 1;
    if (status > 0) conn_log(c, status, bytes_out);
    c->state = CS_CLOSED;
    if (!c->in_run) conn_run(c);
}

void http_conn_compact(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (c->state != CS_TAKEN) return;
    /* What conn_log still reads: method (static), path, User-Agent. url and query
     * are kept too, so every documented string stays valid. */
    const char *ua = req->headers_done ? http_request_header(req, "User-Agent") : NULL;
    struct buf keep;
    buf_init(&keep);
    if (buf_reserve(&keep, strlen(req->url) + strlen(req->path) + strlen(req->query) +
                               (ua ? strlen(ua) + sizeof("User-Agent") : 0) + 3) < 0)
        return; /* out of memory: nothing is freed, nothing breaks */
    size_t path_at, query_at, name_at = 0, ua_at = 0;
    buf_puts(&keep, req->url);
    buf_append(&keep, "", 1);
    path_at = keep.len;
    buf_puts(&keep, req->path);
    buf_append(&keep, "", 1);
    query_at = keep.len;
    buf_puts(&keep, req->query);
    buf_append(&keep, "", 1);
    if (ua) {
        name_at = keep.len;
        buf_puts(&keep, "User-Agent");
        buf_append(&keep, "", 1);
        ua_at = keep.len;
        buf_puts(&keep, ua);
    }
    struct http_header *h = NULL;
    if (ua && !(h = malloc(sizeof(*h)))) {
        buf_free(&keep);
        return;
    }
    free_headers(req);
    buf_free(&req->raw);
    req->raw = keep;
    char *base = keep.data;
    req->url = base;
    req->path = base + path_at;
    req->query = base + query_at;
    if (h) {
        h->name = base + name_at;
        h->name_len = sizeof("User-Agent") - 1;
        h->value = base + ua_at;
        h->value_len = strlen(h->value);
        req->headers = h; /* hcap stays 0: the next request's parser grows a fresh pair */
        req->nheaders = 1;
    }
    req->nparams = 0; /* their values live in scratch */
    buf_free(&req->scratch);
    buf_free(&req->body);
    buf_free(&req->resp.headers);
    buf_free(&req->resp.body);
    if (c->wpos >= c->wbuf.len) {
        buf_free(&c->wbuf);
        c->wpos = 0;
    }
    if (c->rbuf.len == 0) buf_free(&c->rbuf); /* the owner's `in` stays a valid, empty buf */
}
