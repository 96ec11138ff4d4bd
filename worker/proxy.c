/*
 * proxy.c — reverse proxy exchanges, WebSocket tunnels and the upstream pool.
 *
 * Why it looks like this: the worker must never buffer a whole body (uploads
 * and downloads of any size) nor block its loop (connect, slow peers), and a
 * dead upstream must turn into an answer, never a hang. So each proxied request
 * is one `struct pxy` that owns the client socket (taken over from http_conn),
 * one upstream socket, and four bounded buffers:
 *
 *     client --cin--> [request body framer] --uout--> upstream
 *     client <--cout-- [response head + body framer] <--uin-- upstream
 *
 * A side is read only while the buffer it feeds is below PX_HIGH, so memory
 * per exchange is bounded and the slower peer sets the pace (back-pressure).
 * Bodies are forwarded as they are framed on the wire: Content-Length bodies
 * byte for byte, chunked bodies chunk for chunk (a scanner finds their end
 * without decoding), and a response delimited by the upstream's EOF is
 * re-chunked so the client connection can stay alive.
 *
 * States of an exchange (px->state):
 *
 *   CONNECTING  non-blocking connect()          timer: proxy.health.timeout -> 504
 *   ACTIVE      request head+body going up, response coming down
 *               timer (idle, re-armed on progress): timeouts.request -> 504 before
 *               the response head, abort after it
 *   TUNNEL      101 Switching Protocols forwarded: raw bytes both ways, half-closes
 *               propagated; no idle timer (WebSocket pings are the app's business)
 *
 * and it ends in exactly one of: release (client keep-alive, upstream back to
 * the pool when clean), return (answer an error page before any byte went to
 * the client), finish (close the client: error after the head, tunnel end).
 * px_run() is the one driver every callback ends in; it frees nothing while on
 * the stack, like conn_run() in http_conn.c.
 */
#include "proxy.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "http_conn.h"
#include "preview.h"
#include "response.h"

#define PX_HIGH         (256 * 1024) /* buffered bytes per direction before reading pauses */
#define PX_READ         (64 * 1024)
#define PX_HEAD_MAX     PROXY_HEAD_MAX /* upstream response head */
#define PX_MAX_HEADERS  128
#define POOL_MAX_IDLE   256  /* idle upstream connections per worker, all upstreams */
#define POOL_IDLE_S     30.0 /* an idle pooled connection is closed after this */
#define TUNNEL_LINGER_S 10.0 /* after one side of a tunnel closed, the other gets this long */

/* ---- chunked framing, scanned without decoding (RFC 9112 §7.1) -------------- */

enum {
    CK_SIZE,
    CK_EXT,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_BOL,
    CK_TRAILER,
    CK_END_LF,
    CK_DONE
};

struct chunk_scan {
    int st;
    int digits;
    uint64_t left;
    int error;
};

/*
 * Consume up to n bytes of a chunked body; append them to `out` as they are
 * (decode == 0) or only the chunk data (decode == 1). Returns bytes consumed;
 * stops at the end of the body (s->st == CK_DONE) or on a framing error.
 */
static size_t chunk_scan(struct chunk_scan *s, const char *p, size_t n, struct buf *out, int decode)
{
    size_t i = 0;
    while (i < n && s->st != CK_DONE && !s->error) {
        if (s->st == CK_DATA) {
            size_t k = n - i;
            if (k > s->left) k = (size_t)s->left;
            if (decode) buf_append(out, p + i, k);
            i += k;
            s->left -= k;
            if (s->left == 0) s->st = CK_DATA_CR;
            continue;
        }
        char ch = p[i];
        switch (s->st) {
        case CK_SIZE: {
            int v = -1;
            if (ch >= '0' && ch <= '9')
                v = ch - '0';
            else if (ch >= 'a' && ch <= 'f')
                v = ch - 'a' + 10;
            else if (ch >= 'A' && ch <= 'F')
                v = ch - 'A' + 10;
            if (v >= 0) {
                if (++s->digits > 15) s->error = 1;
                s->left = s->left * 16 + (uint64_t)v;
            } else if (s->digits && (ch == ';' || ch == ' ' || ch == '\t')) {
                s->st = CK_EXT;
            } else if (s->digits && ch == '\r') {
                s->st = CK_SIZE_LF;
            } else {
                s->error = 1;
            }
            break;
        }
        case CK_EXT:
            if (ch == '\r')
                s->st = CK_SIZE_LF;
            else if (ch == '\n')
                s->error = 1;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                s->error = 1;
            else
                s->st = s->left ? CK_DATA : CK_TRAILER_BOL;
            break;
        case CK_DATA_CR:
            if (ch != '\r')
                s->error = 1;
            else
                s->st = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                s->error = 1;
            else
                s->st = CK_SIZE, s->digits = 0, s->left = 0;
            break;
        case CK_TRAILER_BOL:
            s->st = ch == '\r' ? CK_END_LF : CK_TRAILER;
            break;
        case CK_TRAILER:
            if (ch == '\n') s->st = CK_TRAILER_BOL;
            break;
        case CK_END_LF:
            if (ch != '\n')
                s->error = 1;
            else
                s->st = CK_DONE;
            break;
        default:
            break;
        }
        i++;
    }
    if (!decode) buf_append(out, p, i);
    return i;
}

/* ---- per-worker state ---------------------------------------------------------- */

struct upconn {
    struct upconn *next; /* idle list */
    struct proxy_ctx *pc;
    int fd;
    char hostport[300];
    unsigned uses;
    ev_io io;       /* idle: EOF or stray bytes mean the upstream closed it */
    ev_timer timer; /* idle: POOL_IDLE_S */
};

struct route_target {
    struct proxy_target t;
    int ok;        /* upstream address resolved */
    char err[256]; /* why not */
    size_t plen;
};

struct pxy;

struct proxy_ctx {
    struct worker_ctx *w;
    struct upconn *idle;
    int nidle;
    struct pxy *xs; /* every live exchange and tunnel */
    unsigned long long seq;
    struct route_target routes[CONFIG_MAX_ROUTES];
    int nroutes;
    struct proxy_stats st;
};

enum px_state { PX_CONNECTING, PX_ACTIVE, PX_TUNNEL };
enum body_mode { BM_NONE, BM_LENGTH, BM_CHUNKED, BM_EOF };

struct hdr_off {
    uint32_t name_off, name_len, value_off, value_len;
};

struct pxy {
    struct pxy *prev, *next;
    struct proxy_ctx *pc;
    struct worker_ctx *w;
    struct http_request *req;
    struct proxy_target t;
    enum px_state state;
    int in_run, dead; /* dead: end it once px_run unwinds */

    /* client */
    int cfd;
    struct buf *cin; /* the connection's read buffer (takeover) */
    struct buf cout;
    size_t cout_pos;
    int c_eof, c_shut;
    ev_io c_r, c_w;

    /* upstream */
    struct upconn *u;
    int ufd;
    int reused; /* u came from the pool */
    int retried;
    struct buf uhead; /* the request head, kept for one retry on a stale pooled connection */
    struct buf uout;
    size_t uout_pos;
    struct buf uin;
    int u_eof, u_shut;
    int u_got_bytes; /* anything at all came back */
    ev_io u_r, u_w;
    ev_timer timer;

    /* request body, client -> upstream */
    enum body_mode req_mode;
    uint64_t req_left;
    struct chunk_scan req_ck;
    int req_done;

    /* response, upstream -> client */
    http_parser rp;
    struct buf rhead; /* reason phrase, then header names and values */
    struct hdr_off rh[PX_MAX_HEADERS];
    int nrh, rh_state, rh_overflow, rh_toolarge;
    uint32_t reason_off, reason_len;
    int head_done; /* final response head parsed */
    int head_sent; /* something went to the client: no error page possible any more */
    enum body_mode resp_mode;
    uint64_t resp_left;
    struct chunk_scan resp_ck;
    int resp_decode, resp_rechunk;
    int resp_done;
    int client_keep;
    int status;
    unsigned long long bytes_out;

    /* tunnel */
    char id[48];
    int64_t since_ms;
};

static void px_run(struct pxy *px);
static void px_end(struct pxy *px);

static int64_t wall_ms(void)
{
    return now_wall_ms();
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- upstream pool --------------------------------------------------------------- */

static void upconn_free(struct upconn *u)
{
    struct proxy_ctx *pc = u->pc;
    ev_io_stop(pc->w->loop, &u->io);
    ev_timer_stop(pc->w->loop, &u->timer);
    if (u->fd >= 0) close(u->fd);
    free(u);
}

static void pool_unlink(struct proxy_ctx *pc, struct upconn *u)
{
    for (struct upconn **pp = &pc->idle; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            pc->nidle--;
            break;
        }
    }
    u->next = NULL;
    ev_io_stop(pc->w->loop, &u->io);
    ev_timer_stop(pc->w->loop, &u->timer);
}

static void on_idle_event(struct ev_loop *loop, ev_io *io, int revents)
{
    /* An idle upstream connection said something: EOF (it closed) or bytes we
     * never asked for. Either way it cannot carry another request. */
    struct upconn *u = io->data;
    pool_unlink(u->pc, u);
    upconn_free(u);
}

static void on_idle_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct upconn *u = t->data;
    pool_unlink(u->pc, u);
    upconn_free(u);
}

static struct upconn *pool_get(struct proxy_ctx *pc, const char *hostport)
{
    for (struct upconn *u = pc->idle; u; u = u->next) {
        if (strcmp(u->hostport, hostport) != 0) continue;
        pool_unlink(pc, u);
        pc->st.pool_reused++;
        return u;
    }
    return NULL;
}

static void pool_put(struct proxy_ctx *pc, struct upconn *u)
{
    if (pc->nidle >= POOL_MAX_IDLE || pc->w->draining) {
        upconn_free(u);
        return;
    }
    ev_io_init(&u->io, on_idle_event, u->fd, EV_READ);
    u->io.data = u;
    ev_io_start(pc->w->loop, &u->io);
    ev_timer_init(&u->timer, on_idle_timer, POOL_IDLE_S, 0.);
    u->timer.data = u;
    ev_timer_start(pc->w->loop, &u->timer);
    u->next = pc->idle;
    pc->idle = u;
    pc->nidle++;
}

/* ---- response head parsing (http_parser, head only) ------------------------------ */

enum { RH_NONE, RH_FIELD, RH_VALUE };

static int rp_on_status(http_parser *p, const char *at, size_t len)
{
    struct pxy *px = p->data;
    if (px->rhead.len + len > PX_HEAD_MAX) {
        px->rh_toolarge = 1;
        return -1;
    }
    if (!px->reason_len) px->reason_off = (uint32_t)px->rhead.len;
    buf_append(&px->rhead, at, len);
    px->reason_len += (uint32_t)len;
    return 0;
}

static int rp_on_field(http_parser *p, const char *at, size_t len)
{
    struct pxy *px = p->data;
    if (px->rhead.len + len > PX_HEAD_MAX) {
        px->rh_toolarge = 1;
        return -1;
    }
    if (px->rh_state != RH_FIELD) {
        if (px->nrh == PX_MAX_HEADERS) {
            px->rh_overflow = 1;
            return -1;
        }
        struct hdr_off *h = &px->rh[px->nrh++];
        memset(h, 0, sizeof(*h));
        h->name_off = (uint32_t)px->rhead.len;
        px->rh_state = RH_FIELD;
    }
    buf_append(&px->rhead, at, len);
    px->rh[px->nrh - 1].name_len += (uint32_t)len;
    return 0;
}

static int rp_on_value(http_parser *p, const char *at, size_t len)
{
    struct pxy *px = p->data;
    if (px->rhead.len + len > PX_HEAD_MAX) {
        px->rh_toolarge = 1;
        return -1;
    }
    struct hdr_off *h = &px->rh[px->nrh - 1];
    if (px->rh_state != RH_VALUE) {
        h->value_off = (uint32_t)px->rhead.len;
        px->rh_state = RH_VALUE;
    }
    buf_append(&px->rhead, at, len);
    h->value_len += (uint32_t)len;
    return 0;
}

static int rp_on_headers_complete(http_parser *p)
{
    return 1; /* "no body": the parser stops at the end of the head; we frame the body */
}

static int rp_on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings rp_settings = {
    .on_status = rp_on_status,
    .on_header_field = rp_on_field,
    .on_header_value = rp_on_value,
    .on_headers_complete = rp_on_headers_complete,
    .on_message_complete = rp_on_message_complete,
};

static void rp_reset(struct pxy *px)
{
    http_parser_init(&px->rp, HTTP_RESPONSE);
    px->rp.data = px;
    buf_reset(&px->rhead);
    px->nrh = 0;
    px->rh_state = RH_NONE;
    px->rh_overflow = 0;
    px->rh_toolarge = 0;
    px->reason_off = px->reason_len = 0;
}

/* ---- header filtering (RFC 9110 §7.6.1: hop-by-hop fields) ----------------------- */

static int name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(name, lit, len) == 0;
}

/* Is `name` one of the comma-separated tokens of a Connection header value
 * (conn[0..clen))? */
static int in_tokens(const char *conn, size_t clen, const char *name, size_t len)
{
    if (!conn) return 0;
    const char *p = conn, *end = conn + clen;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        const char *s = p;
        while (p < end && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if (e > s && (size_t)(e - s) == len && strncasecmp(s, name, len) == 0) return 1;
    }
    return 0;
}

/* Is `name` listed in any of the request's Connection header lines? */
static int req_connection_lists(const struct http_request *r, const char *name, size_t len)
{
    for (int i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];
        if (name_is(h->name, h->name_len, "connection") &&
            in_tokens(h->value, h->value_len, name, len))
            return 1;
    }
    return 0;
}

static int hop_by_hop(const char *name, size_t len)
{
    return name_is(name, len, "connection") || name_is(name, len, "keep-alive") ||
           name_is(name, len, "proxy-connection") || name_is(name, len, "te") ||
           name_is(name, len, "transfer-encoding") || name_is(name, len, "upgrade");
}

/* Append "Name: value\r\n" with CR/LF in the value neutralised. */
static void put_header(struct buf *b, const char *name, size_t nlen, const char *val, size_t vlen)
{
    buf_append(b, name, nlen);
    buf_puts(b, ": ");
    size_t start = b->len;
    buf_append(b, val, vlen);
    if (!buf_failed(b))
        for (size_t i = start; i < b->len; i++)
            if (b->data[i] == '\r' || b->data[i] == '\n') b->data[i] = ' ';
    buf_puts(b, "\r\n");
}

/* The request head sent upstream. */
static void build_upstream_head(struct pxy *px)
{
    struct http_request *r = px->req;
    struct buf *b = &px->uhead;
    const char *host = http_request_header(r, "Host");
    buf_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r->method_str, r->url, px->t.hostport);
    for (int i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];
        if (hop_by_hop(h->name, h->name_len) || name_is(h->name, h->name_len, "host") ||
            name_is(h->name, h->name_len, "x-forwarded-for") ||
            name_is(h->name, h->name_len, "x-forwarded-proto") ||
            name_is(h->name, h->name_len, "x-forwarded-host") ||
            req_connection_lists(r, h->name, h->name_len))
            continue;
        put_header(b, h->name, h->name_len, h->value, h->value_len);
    }
    /* every X-Forwarded-For line, in order, then this hop (RFC 9110 §5.3: repeated
     * lines are one comma-separated list) */
    const char *remote = http_conn_remote(r->conn);
    buf_puts(b, "X-Forwarded-For: ");
    for (int i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];
        if (!name_is(h->name, h->name_len, "x-forwarded-for")) continue;
        size_t vl = h->value_len;
        while (vl && (h->value[vl - 1] == ' ' || h->value[vl - 1] == '\t')) vl--;
        if (!vl) continue;
        size_t start = b->len;
        buf_append(b, h->value, vl);
        if (!buf_failed(b))
            for (size_t k = start; k < b->len; k++)
                if (b->data[k] == '\r' || b->data[k] == '\n') b->data[k] = ' ';
        buf_puts(b, ", ");
    }
    buf_printf(b, "%s\r\n", remote);
    buf_puts(b, http_conn_is_tls(r->conn) ? "X-Forwarded-Proto: https\r\n"
                                          : "X-Forwarded-Proto: http\r\n");
    if (host) put_header(b, "X-Forwarded-Host", 16, host, strlen(host));
    if (px->req_mode == BM_CHUNKED) buf_puts(b, "Transfer-Encoding: chunked\r\n");
    if (r->upgrade) {
        const char *up = http_request_header(r, "Upgrade");
        buf_puts(b, "Connection: Upgrade\r\n");
        if (up) put_header(b, "Upgrade", 7, up, strlen(up));
    }
    buf_puts(b, "\r\n");
}

/* ---- the exchange ------------------------------------------------------------------ */

static void px_timer_again(struct pxy *px)
{
    if (px->state == PX_TUNNEL) return;
    double s = (double)px->w->cfg->timeouts.request_ms / 1000.0;
    if (px->state == PX_CONNECTING) s = (double)px->w->cfg->proxy.health_timeout_ms / 1000.0;
    if (s <= 0) s = 1;
    px->timer.repeat = s;
    ev_timer_again(px->w->loop, &px->timer);
}

static void px_stop_io(struct pxy *px)
{
    struct ev_loop *loop = px->w->loop;
    ev_io_stop(loop, &px->c_r);
    ev_io_stop(loop, &px->c_w);
    ev_io_stop(loop, &px->u_r);
    ev_io_stop(loop, &px->u_w);
    ev_timer_stop(loop, &px->timer);
}

static void px_close_upstream(struct pxy *px)
{
    struct ev_loop *loop = px->w->loop;
    ev_io_stop(loop, &px->u_r);
    ev_io_stop(loop, &px->u_w);
    if (px->u) {
        upconn_free(px->u);
        px->u = NULL;
    }
    px->ufd = -1;
}

/* Unlink and free; the client connection is no longer ours when this runs. */
static void px_free(struct pxy *px)
{
    struct proxy_ctx *pc = px->pc;
    px_stop_io(px);
    px_close_upstream(px);
    if (px->prev)
        px->prev->next = px->next;
    else if (pc->xs == px)
        pc->xs = px->next;
    if (px->next) px->next->prev = px->prev;
    if (px->state == PX_TUNNEL && px->id[0]) {
        pc->st.tunnels_open--;
        preview_tunnel_closed(px->w, px->id);
    }
    buf_free(&px->cout);
    buf_free(&px->uhead);
    buf_free(&px->uout);
    buf_free(&px->uin);
    buf_free(&px->rhead);
    free(px);
}

static void log_failure(struct pxy *px, const char *msg)
{
    log_warn("proxy %s %s -> %s: %s", px->req->method_str, px->req->path, px->t.name, msg);
}

/*
 * Fail the exchange. Before anything went to the client: hand the exchange back
 * and answer status/code as JSON (or the target's on_refused page). After: close
 * the client connection; a truncated body is all it can be told.
 */
static void px_fail(struct pxy *px, int refused, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void px_fail(struct pxy *px, int refused, int status, const char *code, const char *fmt, ...)
{
    if (px->dead) return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_failure(px, msg);
    px->pc->st.upstream_errors++;
    px->dead = 1;
    px_stop_io(px);
    px_close_upstream(px);
    struct http_request *req = px->req;
    if (!px->head_sent && px->cout.len == 0) {
        struct proxy_target t = px->t;
        px->req = NULL; /* px_end: nothing left to end */
        http_conn_return(req);
        if (refused && t.on_refused) {
            t.on_refused(req, &t);
        } else {
            if (status == 503 || status == 502) resp_header(req, "Retry-After", "1");
            resp_error(req, status, code, "%s", msg);
        }
    }
}

/* The tunnel report the coordinator keeps for /debug/connections. */
static void tunnel_json(struct pxy *px, struct buf *b)
{
    char since[40];
    resp_iso8601(px->since_ms, since, sizeof(since));
    buf_puts(b, "{\"id\":");
    buf_json_str(b, px->id);
    buf_puts(b, ",\"key\":");
    buf_json_str(b, px->t.track_key);
    buf_puts(b, ",\"owner\":");
    buf_json_str(b, px->t.owner);
    buf_puts(b, ",\"projectId\":");
    buf_json_str(b, px->t.project);
    buf_puts(b, ",\"userId\":");
    buf_json_str(b, px->t.user);
    buf_puts(b, ",\"upstream\":");
    buf_json_str(b, px->t.hostport);
    buf_puts(b, ",\"path\":");
    buf_json_str(b, px->req ? px->req->path : "");
    buf_puts(b, ",\"remote\":");
    buf_json_str(b, px->req ? http_conn_remote(px->req->conn) : "");
    buf_printf(b, ",\"worker\":%d,\"pid\":%d,\"since\":\"%s\"}", px->w->index, (int)getpid(),
               since);
}

static void px_start_tunnel(struct pxy *px)
{
    struct proxy_ctx *pc = px->pc;
    px->state = PX_TUNNEL;
    ev_timer_stop(px->w->loop, &px->timer);
    snprintf(px->id, sizeof(px->id), "%d-%d-%llu", px->w->index, (int)getpid(), ++pc->seq);
    px->since_ms = wall_ms();
    pc->st.tunnels_open++;
    pc->st.tunnels_total++;
    struct buf j;
    buf_init(&j);
    tunnel_json(px, &j);
    if (!buf_failed(&j)) preview_tunnel_opened(px->w, px->id, j.data);
    buf_free(&j);
    /* A pooled connection can be reused for a tunnel, but never returned. */
}

/* Is `name` listed in any of the response's Connection header lines? */
static int resp_connection_lists(const struct pxy *px, const char *name, size_t len)
{
    const char *base = px->rhead.data ? px->rhead.data : "";
    for (int i = 0; i < px->nrh; i++) {
        const struct hdr_off *h = &px->rh[i];
        if (name_is(base + h->name_off, h->name_len, "connection") &&
            in_tokens(base + h->value_off, h->value_len, name, len))
            return 1;
    }
    return 0;
}

/* The final response head arrived: decide its framing and queue the client's head. */
static int px_on_head(struct pxy *px)
{
    struct http_request *r = px->req;
    int status = px->rp.status_code;
    const char *base = px->rhead.data ? px->rhead.data : "";

    if (status >= 100 && status < 200 && status != 101) {
        /* Interim (100 Continue, 103 Early Hints): pass to HTTP/1.1 clients, then
         * wait for the final head. */
        if (r->http_minor >= 1 && r->http_major == 1) {
            buf_printf(&px->cout, "HTTP/1.1 %d %.*s\r\n", status, (int)px->reason_len,
                       base + px->reason_off);
            for (int i = 0; i < px->nrh; i++) {
                struct hdr_off *h = &px->rh[i];
                if (hop_by_hop(base + h->name_off, h->name_len)) continue;
                put_header(&px->cout, base + h->name_off, h->name_len, base + h->value_off,
                           h->value_len);
            }
            buf_puts(&px->cout, "\r\n");
            px->head_sent = 1;
        }
        rp_reset(px);
        return 0;
    }
    px->head_done = 1;
    px->status = status;
    int upgraded = 0;
    if (status == 101) {
        if (!r->upgrade) {
            px_fail(px, 0, 502, "UPSTREAM_INVALID_RESPONSE",
                    "upstream switched protocols (101) on a request that did not ask for it");
            return -1;
        }
        upgraded = 1;
        px->resp_mode = BM_NONE;
    } else if (r->head || status == 204 || status == 304) {
        px->resp_mode = BM_NONE;
    } else if (px->rp.flags & F_CHUNKED) {
        px->resp_mode = BM_CHUNKED;
        px->resp_decode = !(r->http_major == 1 && r->http_minor >= 1);
    } else if (px->rp.content_length != ULLONG_MAX) {
        px->resp_mode = BM_LENGTH;
        px->resp_left = px->rp.content_length;
    } else {
        px->resp_mode = BM_EOF;
        px->resp_rechunk = r->http_major == 1 && r->http_minor >= 1;
    }
    px->client_keep = r->keep_alive && !r->upgrade && !px->w->draining &&
                      !(px->resp_mode == BM_EOF && !px->resp_rechunk) &&
                      !(px->resp_mode == BM_CHUNKED && px->resp_decode);

    struct buf *b = &px->cout;
    buf_printf(b, "HTTP/1.1 %d ", status);
    if (px->reason_len) {
        size_t start = b->len;
        buf_append(b, base + px->reason_off, px->reason_len);
        if (!buf_failed(b))
            for (size_t i = start; i < b->len; i++)
                if (b->data[i] == '\r' || b->data[i] == '\n') b->data[i] = ' ';
    } else {
        const char *reason = http_status_str((enum http_status)status);
        buf_puts(b, reason && reason[0] != '<' ? reason : "Unknown");
    }
    buf_puts(b, "\r\n");
    for (int i = 0; i < px->nrh; i++) {
        struct hdr_off *h = &px->rh[i];
        const char *name = base + h->name_off;
        if (upgraded && name_is(name, h->name_len, "upgrade")) {
            /* kept: the client needs to see what it switched to */
        } else if (hop_by_hop(name, h->name_len) || resp_connection_lists(px, name, h->name_len)) {
            continue;
        }
        /* a framed body keeps its Content-Length; a decoded/rechunked one must not */
        if (name_is(name, h->name_len, "content-length") &&
            (px->resp_mode == BM_CHUNKED || px->resp_mode == BM_EOF))
            continue;
        put_header(b, name, h->name_len, base + h->value_off, h->value_len);
    }
    if ((px->resp_mode == BM_CHUNKED && !px->resp_decode) ||
        (px->resp_mode == BM_EOF && px->resp_rechunk))
        buf_puts(b, "Transfer-Encoding: chunked\r\n");
    if (upgraded)
        buf_puts(b, "Connection: Upgrade\r\n");
    else
        buf_puts(b, px->client_keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    buf_puts(b, "\r\n");
    px->head_sent = 1;
    if (px->resp_mode == BM_NONE && !upgraded) px->resp_done = 1;
    if (px->resp_mode == BM_LENGTH && px->resp_left == 0) px->resp_done = 1;
    if (upgraded) px_start_tunnel(px);
    return 0;
}

/* Move what uin holds through the response side. Returns -1 when px failed. */
static int px_pump_response(struct pxy *px)
{
    while (px->uin.len > 0 && !px->dead) {
        if (px->state == PX_TUNNEL) {
            buf_append(&px->cout, px->uin.data, px->uin.len);
            buf_reset(&px->uin);
            break;
        }
        if (!px->head_done) {
            size_t n = http_parser_execute(&px->rp, &rp_settings, px->uin.data, px->uin.len);
            enum http_errno e = HTTP_PARSER_ERRNO(&px->rp);
            buf_consume(&px->uin, n);
            if (e == HPE_PAUSED) {
                http_parser_pause(&px->rp, 0);
                if (px_on_head(px) < 0) return -1;
                continue;
            }
            if (e != HPE_OK) {
                px_fail(px, 0, 502, "UPSTREAM_INVALID_RESPONSE",
                        "upstream sent an invalid HTTP response (%s%s)",
                        px->rh_overflow ? "too many header fields" : http_errno_description(e),
                        px->rh_toolarge || e == HPE_HEADER_OVERFLOW ? ", head larger than 64 KiB"
                                                                    : "");
                return -1;
            }
            break; /* need more bytes */
        }
        if (px->resp_done) break; /* stray bytes after the body: upstream not reusable */
        if (px->resp_mode == BM_LENGTH) {
            size_t k = px->uin.len;
            if (k > px->resp_left) k = (size_t)px->resp_left;
            buf_append(&px->cout, px->uin.data, k);
            buf_consume(&px->uin, k);
            px->resp_left -= k;
            if (px->resp_left == 0) px->resp_done = 1;
        } else if (px->resp_mode == BM_CHUNKED) {
            size_t k =
                chunk_scan(&px->resp_ck, px->uin.data, px->uin.len, &px->cout, px->resp_decode);
            buf_consume(&px->uin, k);
            if (px->resp_ck.error) {
                /* the head went out already: all the client can get is a close */
                log_failure(px, "upstream sent a malformed chunked body; closing the client "
                                "connection");
                px->dead = 1;
                return -1;
            }
            if (px->resp_ck.st == CK_DONE) px->resp_done = 1;
        } else if (px->resp_mode == BM_EOF) {
            if (px->resp_rechunk) buf_printf(&px->cout, "%zx\r\n", px->uin.len);
            buf_append(&px->cout, px->uin.data, px->uin.len);
            if (px->resp_rechunk) buf_puts(&px->cout, "\r\n");
            buf_reset(&px->uin);
        } else {
            break;
        }
    }
    return px->dead ? -1 : 0;
}

/* Move client bytes (request body, or tunnel data) toward the upstream. */
static int px_pump_request(struct pxy *px)
{
    struct buf *in = px->cin;
    if (px->state == PX_TUNNEL) {
        if (in->len) {
            buf_append(&px->uout, in->data, in->len);
            buf_consume(in, in->len);
        }
        return 0;
    }
    while (!px->req_done && in->len > 0 && px->uout.len - px->uout_pos < PX_HIGH) {
        if (px->req_mode == BM_LENGTH) {
            size_t k = in->len;
            if (k > px->req_left) k = (size_t)px->req_left;
            buf_append(&px->uout, in->data, k);
            buf_consume(in, k);
            px->req_left -= k;
            if (px->req_left == 0) px->req_done = 1;
        } else if (px->req_mode == BM_CHUNKED) {
            size_t k = chunk_scan(&px->req_ck, in->data, in->len, &px->uout, 0);
            buf_consume(in, k);
            if (px->req_ck.error) {
                px_fail(px, 0, 400, "BAD_REQUEST", "malformed chunked request body");
                return -1;
            }
            if (px->req_ck.st == CK_DONE) px->req_done = 1;
        } else {
            px->req_done = 1;
        }
    }
    return 0;
}

/* Non-blocking writes; -1 on a dead peer. */
static int flush_to(int fd, struct buf *b, size_t *pos, int *progress)
{
    while (*pos < b->len) {
        ssize_t n = send(fd, b->data + *pos, b->len - *pos, MSG_NOSIGNAL);
        if (n > 0) {
            *pos += (size_t)n;
            *progress = 1;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1;
    }
    if (*pos) {
        buf_reset(b);
        *pos = 0;
    }
    return 0;
}

/* Read once into b (bounded); returns bytes, 0 at EOF, -1 on EAGAIN, -2 on error. */
static ssize_t read_into(int fd, struct buf *b, int *err)
{
    if (buf_reserve(b, PX_READ) < 0) {
        *err = ENOMEM;
        return -2;
    }
    ssize_t n;
    do {
        n = recv(fd, b->data + b->len, b->cap - b->len - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        b->len += (size_t)n;
        b->data[b->len] = '\0';
        return n;
    }
    if (n == 0) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
    *err = errno;
    return -2;
}

static void px_connect(struct pxy *px);

/* The upstream failed before answering anything: retry a stale pooled
 * connection once (bodiless requests only), else fail. */
static void px_upstream_lost(struct pxy *px, int err)
{
    if (px->reused && !px->retried && !px->u_got_bytes && px->req_mode == BM_NONE &&
        px->state == PX_ACTIVE) {
        px->retried = 1;
        px_close_upstream(px);
        buf_reset(&px->uout);
        px->uout_pos = 0;
        px->u_eof = 0;
        px_connect(px);
        return;
    }
    if (!px->head_done) {
        if (px->u_got_bytes)
            px_fail(px, 0, 502, "UPSTREAM_INVALID_RESPONSE",
                    "upstream closed the connection in the middle of its response head");
        else
            px_fail(px, 0, 502, "UPSTREAM_UNAVAILABLE",
                    "upstream closed the connection without answering (%s)",
                    err ? strerror(err) : "EOF");
        return;
    }
    log_failure(px, "upstream closed the connection in the middle of the response body; "
                    "closing the client connection");
    px->pc->st.upstream_errors++;
    px->dead = 1;
}

static void on_c_read(struct ev_loop *loop, ev_io *io, int revents);
static void on_c_write(struct ev_loop *loop, ev_io *io, int revents);
static void on_u_read(struct ev_loop *loop, ev_io *io, int revents);
static void on_u_write(struct ev_loop *loop, ev_io *io, int revents);

static void px_attach_upstream(struct pxy *px, int fd)
{
    px->ufd = fd;
    ev_io_init(&px->u_r, on_u_read, fd, EV_READ);
    ev_io_init(&px->u_w, on_u_write, fd, EV_WRITE);
    px->u_r.data = px->u_w.data = px;
}

static void px_connect(struct pxy *px)
{
    struct proxy_ctx *pc = px->pc;
    buf_append(&px->uout, px->uhead.data, px->uhead.len);
    struct upconn *u = px->retried ? NULL : pool_get(pc, px->t.hostport);
    if (u) {
        px->u = u;
        px->reused = 1;
        u->uses++;
        px_attach_upstream(px, u->fd);
        px->state = PX_ACTIVE;
        px_timer_again(px);
        return;
    }
    px->reused = 0;
    u = calloc(1, sizeof(*u));
    int fd = u ? socket(px->t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
    if (fd < 0) {
        int e = errno;
        free(u);
        px_fail(px, 0, 502, "UPSTREAM_UNAVAILABLE", "cannot create a socket: %s", strerror(e));
        return;
    }
    u->fd = fd;
    u->pc = pc;
    snprintf(u->hostport, sizeof(u->hostport), "%s", px->t.hostport);
    u->uses = 1;
    px->u = u;
    set_nodelay(fd);
    px_attach_upstream(px, fd);
    pc->st.upstream_connects++;
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&px->t.addr, px->t.addrlen);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        px->state = PX_ACTIVE;
        px_timer_again(px);
        return;
    }
    if (errno == EINPROGRESS) {
        px->state = PX_CONNECTING;
        px_timer_again(px);
        return;
    }
    int e = errno;
    px_fail(px, e == ECONNREFUSED, 502, "UPSTREAM_UNAVAILABLE", "cannot connect to %s: %s",
            px->t.hostport, strerror(e));
}

/* Exchange complete on both sides: client back to keep-alive, upstream to the pool. */
static void px_complete(struct pxy *px)
{
    struct http_request *req = px->req;
    int reusable = px->u && px->resp_mode != BM_EOF && px->req_done && !px->u_eof &&
                   px->uin.len == 0 && px->uout_pos >= px->uout.len &&
                   (px->rp.http_major == 1 && px->rp.http_minor >= 1
                        ? !(px->rp.flags & F_CONNECTION_CLOSE)
                        : (px->rp.flags & F_CONNECTION_KEEP_ALIVE) != 0);
    if (reusable) {
        struct upconn *u = px->u;
        px->u = NULL;
        ev_io_stop(px->w->loop, &px->u_r);
        ev_io_stop(px->w->loop, &px->u_w);
        px->ufd = -1;
        pool_put(px->pc, u);
    }
    int keep = px->client_keep && px->req_done && !px->c_eof;
    unsigned long long bytes = px->bytes_out;
    int status = px->status;
    px->req = NULL;
    px->dead = 1;
    px_stop_io(px);
    http_conn_release(req, status, bytes, keep);
}

/* The driver: move bytes until nothing moves, then arm watchers. */
static void px_run(struct pxy *px)
{
    if (px->in_run) return;
    px->in_run = 1;
    struct ev_loop *loop = px->w->loop;
    for (int guard = 0; guard < 64 && !px->dead; guard++) {
        int progress = 0;
        if (px->state != PX_CONNECTING) {
            if (px_pump_request(px) < 0) break;
            size_t before = px->uout_pos;
            if (px->ufd >= 0 && flush_to(px->ufd, &px->uout, &px->uout_pos, &progress) < 0) {
                int e = errno;
                if (px->state == PX_TUNNEL) {
                    px->dead = 1;
                    break;
                }
                px_upstream_lost(px, e);
                if (px->dead) break;
                continue;
            }
            (void)before;
            if (px_pump_response(px) < 0) break;
        }
        size_t cpos = px->cout_pos, clen = px->cout.len;
        if (flush_to(px->cfd, &px->cout, &px->cout_pos, &progress) < 0) {
            /* the client went away */
            px->dead = 1;
            break;
        }
        if (px->cout.len == 0 && clen)
            px->bytes_out += (unsigned long long)(clen - cpos);
        else
            px->bytes_out += (unsigned long long)(px->cout_pos - cpos);

        if (px->state == PX_TUNNEL) {
            /* half-closes travel once the data before them did */
            if (px->c_eof && !px->u_shut && px->cin->len == 0 && px->uout.len == 0) {
                shutdown(px->ufd, SHUT_WR);
                px->u_shut = 1;
            }
            if (px->u_eof && !px->c_shut && px->uin.len == 0 && px->cout.len == 0) {
                shutdown(px->cfd, SHUT_WR);
                px->c_shut = 1;
            }
            if (px->u_shut && px->c_shut) {
                px->dead = 1;
                break;
            }
            if ((px->u_shut || px->c_shut) && !ev_is_active(&px->timer)) {
                ev_timer_set(&px->timer, TUNNEL_LINGER_S, 0.);
                ev_timer_start(loop, &px->timer);
            }
        } else if (px->head_done && px->resp_done && px->cout.len == 0) {
            if (!px->req_done && !px->c_eof && px->req_mode != BM_NONE) {
                /* answered before the whole body came: the rest is unread */
                px->client_keep = 0;
                px->req_done = 0;
            }
            px->in_run = 0;
            px_complete(px);
            px_free(px);
            return;
        } else if (px->u_eof && px->head_done && !px->resp_done && px->resp_mode == BM_EOF &&
                   px->uin.len == 0) {
            /* EOF delimits this body */
            if (px->resp_rechunk) buf_puts(&px->cout, "0\r\n\r\n");
            px->resp_done = 1;
            continue;
        } else if (px->u_eof && px->uin.len == 0 && !px->resp_done) {
            px_upstream_lost(px, 0);
            if (px->dead) break;
            continue;
        }
        if (!progress) break;
        px_timer_again(px);
    }
    px->in_run = 0;
    if (px->dead) {
        px_end(px);
        return;
    }

    /* watchers */
    size_t up_pending = px->uout.len - px->uout_pos;
    size_t down_pending = px->cout.len - px->cout_pos;
    int tunnel = px->state == PX_TUNNEL;
    int want_c_read = !px->c_eof && px->cin->len < PX_HIGH && up_pending < PX_HIGH &&
                      (tunnel || !px->req_done || px->head_done == 0);
    int want_c_write = down_pending > 0;
    int connected = px->state != PX_CONNECTING && px->ufd >= 0;
    int want_u_read = connected && !px->u_eof && down_pending < PX_HIGH && px->uin.len < PX_HIGH &&
                      (tunnel || !px->resp_done);
    int want_u_write = px->ufd >= 0 && (px->state == PX_CONNECTING || up_pending > 0);
    if (want_c_read != ev_is_active(&px->c_r))
        (want_c_read ? ev_io_start : ev_io_stop)(loop, &px->c_r);
    if (want_c_write != ev_is_active(&px->c_w))
        (want_c_write ? ev_io_start : ev_io_stop)(loop, &px->c_w);
    if (want_u_read != ev_is_active(&px->u_r))
        (want_u_read ? ev_io_start : ev_io_stop)(loop, &px->u_r);
    if (want_u_write != ev_is_active(&px->u_w))
        (want_u_write ? ev_io_start : ev_io_stop)(loop, &px->u_w);
}

/* End a dead exchange: the client connection closes (or was answered already). */
static void px_end(struct pxy *px)
{
    struct http_request *req = px->req;
    if (req && px->cout_pos < px->cout.len) {
        /* best effort, non-blocking: what was framed before the failure (a head
         * and valid body bytes) still goes out before the close */
        int progress = 0;
        (void)flush_to(px->cfd, &px->cout, &px->cout_pos, &progress);
    }
    int status = px->status ? px->status : 502;
    unsigned long long bytes = px->bytes_out;
    px->req = NULL;
    px_stop_io(px);
    px_free(px); /* reports a tunnel's end first */
    if (req) http_conn_finish(req, status, bytes);
}

static void on_c_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pxy *px = io->data;
    int err = 0;
    ssize_t n = read_into(px->cfd, px->cin, &err);
    if (n == 0) {
        px->c_eof = 1;
        if (px->state != PX_TUNNEL && !px->req_done) {
            /* the client gave up in the middle of its request */
            px->dead = 1;
            px->status = px->status ? px->status : 499;
        }
    } else if (n == -2) {
        px->dead = 1;
        px->status = px->status ? px->status : 499;
    }
    px_run(px);
}

static void on_c_write(struct ev_loop *loop, ev_io *io, int revents)
{
    px_run(io->data);
}

static void on_u_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pxy *px = io->data;
    int err = 0;
    ssize_t n = read_into(px->ufd, &px->uin, &err);
    if (n > 0) {
        px->u_got_bytes = 1;
    } else if (n == 0) {
        px->u_eof = 1;
    } else if (n == -2) {
        if (px->state == PX_TUNNEL)
            px->u_eof = 1; /* a reset ends the tunnel like an EOF, after the data before it */
        else
            px_upstream_lost(px, err);
    }
    px_run(px);
}

static void on_u_write(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pxy *px = io->data;
    if (px->state == PX_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(px->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            px_fail(px, err == ECONNREFUSED, 502, "UPSTREAM_UNAVAILABLE",
                    "cannot connect to %s: %s", px->t.hostport, strerror(err));
            if (px->dead) px_end(px);
            return;
        }
        px->state = PX_ACTIVE;
        px_timer_again(px);
    }
    px_run(px);
}

static void on_px_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pxy *px = t->data;
    if (px->state == PX_TUNNEL) {
        px->dead = 1; /* one side closed long ago; the other never followed */
        px_end(px);
        return;
    }
    if (px->state == PX_CONNECTING) {
        px_fail(px, 0, 504, "UPSTREAM_TIMEOUT",
                "%s did not accept a connection within %llu ms (proxy.health.timeout)",
                px->t.hostport, (unsigned long long)px->w->cfg->proxy.health_timeout_ms);
    } else if (!px->head_done) {
        px_fail(px, 0, 504, "UPSTREAM_TIMEOUT",
                "upstream did not answer within %llu ms (timeouts.request)",
                (unsigned long long)px->w->cfg->timeouts.request_ms);
    } else {
        log_failure(px, "no progress within timeouts.request in the middle of the response; "
                        "closing the client connection");
        px->dead = 1;
    }
    if (px->dead) px_end(px);
}

/* takeover ops */
static void px_on_drain(void *owner)
{
    struct pxy *px = owner;
    if (px->state == PX_TUNNEL) {
        px->dead = 1;
        px_end(px);
    }
    /* exchanges finish their response; http_conn closes them after it (draining) */
}

static void px_on_destroy(void *owner)
{
    struct pxy *px = owner;
    px->req = NULL;
    px_free(px);
}

static const struct http_takeover_ops px_ops = {px_on_drain, px_on_destroy};

void proxy_forward(struct http_request *req, const struct proxy_target *t)
{
    struct worker_ctx *w = req->w;
    struct proxy_ctx *pc = w->proxy;
    struct pxy *px = pc ? calloc(1, sizeof(*px)) : NULL;
    if (!px) {
        resp_error(req, 500, "INTERNAL", "out of memory starting a proxied request");
        return;
    }
    px->pc = pc;
    px->w = w;
    px->req = req;
    px->t = *t;
    px->ufd = -1;
    struct http_takeover tk;
    if (http_conn_takeover(req, &px_ops, px, &tk) < 0) {
        free(px);
        resp_error(req, 500, "INTERNAL", "the connection cannot be proxied");
        return;
    }
    pc->st.requests++;
    px->cfd = tk.fd;
    px->cin = tk.in;
    if (tk.body_chunked)
        px->req_mode = BM_CHUNKED;
    else if (tk.body_length)
        px->req_mode = BM_LENGTH, px->req_left = tk.body_length;
    else
        px->req_mode = BM_NONE, px->req_done = 1;
    if (!tk.body_unread && px->req_mode != BM_NONE) {
        /* (not a ROUTE_STREAM request: the body was read already) */
        px->req_mode = BM_NONE;
        px->req_done = 1;
    }
    rp_reset(px);
    px->next = pc->xs;
    if (pc->xs) pc->xs->prev = px;
    pc->xs = px;

    ev_io_init(&px->c_r, on_c_read, px->cfd, EV_READ);
    ev_io_init(&px->c_w, on_c_write, px->cfd, EV_WRITE);
    px->c_r.data = px->c_w.data = px;
    ev_init(&px->timer, on_px_timer);
    px->timer.data = px;

    build_upstream_head(px);
    if (buf_failed(&px->uhead)) {
        px_fail(px, 0, 500, "INTERNAL", "out of memory building the upstream request");
        px_end(px);
        return;
    }
    px_connect(px);
    if (px->dead) {
        px_end(px);
        return;
    }
    px_run(px);
}

/* ---- static routes ------------------------------------------------------------------ */

/* "http://HOST:PORT[/]" (validated by config.c) -> address, resolved once at start. */
static int resolve_upstream(const char *url, struct proxy_target *t, char *err, size_t errlen)
{
    const char *h = url + 7;
    char host[256], port[16];
    const char *end = h + strlen(h);
    if (end > h && end[-1] == '/') end--;
    const char *colon;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close) return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(close - h - 1), h + 1);
        colon = close + 1;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        if (!colon) return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - h), h);
    }
    snprintf(port, sizeof(port), "%.*s", (int)(end - colon - 1), colon + 1);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve %.100s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(t->hostport, sizeof(t->hostport), "%.*s", (int)(end - (url + 7)), url + 7);
    return 0;
}

static int claims(struct worker_ctx *w, const char *path)
{
    return proxy_route_for(w, path) != NULL;
}

int proxy_init(struct worker_ctx *w)
{
    struct proxy_ctx *pc = calloc(1, sizeof(*pc));
    if (!pc) return -1;
    pc->w = w;
    w->proxy = pc;
    w->fallback_claims = claims;
    const struct svcd_config *cfg = w->cfg;
    for (int i = 0; i < cfg->proxy.nroutes && i < CONFIG_MAX_ROUTES; i++) {
        struct route_target *rt = &pc->routes[pc->nroutes++];
        const struct config_route *cr = &cfg->proxy.routes[i];
        rt->plen = strlen(cr->prefix);
        snprintf(rt->t.name, sizeof(rt->t.name), "proxy.routes[%d] (%.300s)", i, cr->upstream);
        snprintf(rt->t.track_key, sizeof(rt->t.track_key), "%s", cr->prefix);
        snprintf(rt->t.owner, sizeof(rt->t.owner), "route:%.100s", cr->prefix);
        if (resolve_upstream(cr->upstream, &rt->t, rt->err, sizeof(rt->err)) == 0) {
            rt->ok = 1;
        } else {
            if (!rt->err[0])
                snprintf(rt->err, sizeof(rt->err), "invalid upstream %.200s", cr->upstream);
            log_error("proxy.routes[%d] %s: %s; requests under it answer 502", i, cr->prefix,
                      rt->err);
        }
    }
    return 0;
}

void proxy_shutdown(struct worker_ctx *w)
{
    struct proxy_ctx *pc = w->proxy;
    if (!pc) return;
    while (pc->xs) {
        struct pxy *px = pc->xs;
        /* normally gone with their connections already */
        struct http_request *req = px->req;
        px->req = NULL;
        px_free(px);
        if (req) http_conn_finish(req, 0, 0);
    }
    while (pc->idle) {
        struct upconn *u = pc->idle;
        pool_unlink(pc, u);
        upconn_free(u);
    }
    free(pc);
    w->proxy = NULL;
}

const struct proxy_target *proxy_route_for(struct worker_ctx *w, const char *path)
{
    struct proxy_ctx *pc = w->proxy;
    if (!pc) return NULL;
    const struct route_target *best = NULL;
    size_t plen = strlen(path);
    for (int i = 0; i < pc->nroutes; i++) {
        const struct route_target *rt = &pc->routes[i];
        const char *prefix = w->cfg->proxy.routes[i].prefix;
        size_t n = rt->plen;
        int match = plen >= n && strncmp(path, prefix, n) == 0;
        /* "/api/legacy/" also serves "/api/legacy" */
        if (!match && n > 1 && prefix[n - 1] == '/' && plen == n - 1 &&
            strncmp(path, prefix, n - 1) == 0)
            match = 1;
        if (match && (!best || n > best->plen)) best = rt;
    }
    return best ? &best->t : NULL;
}

int proxy_route_ok(struct worker_ctx *w, const struct proxy_target *t, const char **err)
{
    struct proxy_ctx *pc = w->proxy;
    for (int i = 0; i < pc->nroutes; i++) {
        if (&pc->routes[i].t == t) {
            *err = pc->routes[i].err;
            return pc->routes[i].ok;
        }
    }
    *err = "";
    return 1;
}

int proxy_close_tunnels(struct worker_ctx *w, const char *key, const char *why)
{
    struct proxy_ctx *pc = w->proxy;
    if (!pc) return 0;
    int n = 0;
    for (;;) {
        struct pxy *px = pc->xs;
        while (px && !(px->state == PX_TUNNEL && strcmp(px->t.track_key, key) == 0)) px = px->next;
        if (!px) break;
        log_info("closing WebSocket tunnel %s (%s -> %s): %s", px->id, px->req ? px->req->path : "",
                 px->t.hostport, why);
        px->dead = 1;
        px_end(px);
        n++;
    }
    return n;
}

int proxy_tunnels_json(struct worker_ctx *w, struct buf *out)
{
    struct proxy_ctx *pc = w->proxy;
    int n = 0;
    if (!pc) return 0;
    for (struct pxy *px = pc->xs; px; px = px->next) {
        if (px->state != PX_TUNNEL) continue;
        if (n) buf_puts(out, ",");
        tunnel_json(px, out);
        n++;
    }
    return n;
}

void proxy_tunnels_each(struct worker_ctx *w,
                        void (*fn)(struct worker_ctx *w, const char *id, const char *json))
{
    struct proxy_ctx *pc = w->proxy;
    if (!pc) return;
    for (struct pxy *px = pc->xs; px; px = px->next) {
        if (px->state != PX_TUNNEL) continue;
        struct buf j;
        buf_init(&j);
        tunnel_json(px, &j);
        if (!buf_failed(&j)) fn(w, px->id, j.data);
        buf_free(&j);
    }
}

void proxy_get_stats(struct worker_ctx *w, struct proxy_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!w->proxy) return;
    *out = w->proxy->st;
    out->pool_idle = (unsigned long long)w->proxy->nidle;
}
