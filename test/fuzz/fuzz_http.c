/*
 * fuzz_http.c — libFuzzer target for the worker's real HTTP connection code.
 *
 * What runs is the server's own worker/http_conn.c (http_parser callbacks, limits,
 * keep-alive, pipelining, chunked bodies, Expect: 100-continue, lingering close,
 * connection takeover), worker/response.c (status line and framing headers),
 * worker/router.c (404/405 + Allow, ROUTE_ADMIN 403 via worker/admin.c and
 * common/admin_check.c, ROUTE_STREAM, ROUTE_FALLBACK) on a real libev loop, with the
 * client on the other end of a socketpair. Only the route table and its handlers
 * are the harness's (echo, asynchronous answer, 204/304, a streaming owner that
 * takes the connection over, reads the body itself and releases or returns it):
 * the application handlers (booking, chat, proxy) have their own targets or none.
 * http_parser and libev are the system libraries and are not instrumented, so
 * coverage guidance comes from svcd's code only.
 *
 * Input: byte 0 picks the limits (small header/body limits make 413/431 likely)
 * and the peer address (loopback or not, for the admin check), bytes 1..4 seed
 * how the rest is cut into pieces written one by one; the rest is the byte stream
 * a client sends, after which it shuts down its write side.
 *
 * Invariants checked (abort() on violation):
 *   - everything the server writes parses as a sequence of HTTP/1.1 responses
 *     (optional "100 Continue" interim ones first): status line, "Name: value"
 *     header lines without stray CR/LF, exactly one Content-Length on responses
 *     that carry one, equal to the body length, a body of exactly that length
 *     unless HEAD/1xx/204/304, nothing left over;
 *   - the responses are those the server queued (-Wl,--wrap=resp_serialize_head
 *     records each one http_conn_respond() queues: same count, order, status and body length);
 *   - every request a handler sees is sane: path starts with '/', header lengths
 *     agree with their NUL-terminated strings, body within limits.body;
 *   - split invariance: the same input written whole and written in pieces gives
 *     the same handler-visible requests and the same bytes out (Date aside) —
 *     except that a last request both malformed and over a limit may be refused
 *     as 400 or as 413/431 depending on where a piece ends;
 *   - after the client's EOF the connection is freed (no connection leaks),
 *     and ASan/UBSan see no memory error or leak.
 */
#include <errno.h>
#include <ev.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/config.h"
#include "../../common/log.h"
#include "../../common/scoreboard.h"
#include "../../worker/http_conn.h"
#include "../../worker/response.h"
#include "../../worker/router.h"
#include "../../worker/worker_ctx.h"

#define MAX_EXPECT 512

struct expect {
    int status;
    size_t body_len;
    int has_body;
};

static struct {
    struct expect ex[MAX_EXPECT];
    int nex;
    struct buf trace; /* what handlers saw */
    /* the one asynchronous answer a connection can owe at a time */
    ev_timer async_timer;
    struct http_request *async_req;
    /* the streaming owner */
    struct http_request *st_req;
    struct http_takeover tk;
    ev_io st_io;
    uint64_t st_left, st_got;
    int st_active;
} H;

static struct worker_ctx W;
static struct svcd_config *CFG;
static struct sb_slot SLOT;

void worker_conn_closed(struct worker_ctx *w)
{
    (void)w;
}

/* ---- every queued response is recorded ------------------------------------ */

/* http_conn_respond() calls this exactly when it queues a response. */
void __real_resp_serialize_head(struct worker_ctx *w, const struct http_request *req,
                                size_t body_len, int keep_alive, uint64_t keepalive_s,
                                struct buf *out);
void __wrap_resp_serialize_head(struct worker_ctx *w, const struct http_request *req,
                                size_t body_len, int keep_alive, uint64_t keepalive_s,
                                struct buf *out)
{
    if (H.nex < MAX_EXPECT)
        H.ex[H.nex++] = (struct expect){req->resp.status, body_len, resp_has_body(req)};
    __real_resp_serialize_head(w, req, body_len, keep_alive, keepalive_s, out);
}

/* ---- handlers --------------------------------------------------------------- */

static void check_request(const struct http_request *req)
{
    if (!req->headers_done || req->path[0] != '/') abort();
    if (req->nheaders < 0 || req->nheaders > HTTP_MAX_HEADERS) abort();
    for (int i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (strlen(h->name) != h->name_len || strlen(h->value) > h->value_len) abort();
    }
    if (req->body.len > CFG->limits.body) abort();
    /* the trace: what the request looked like to a handler */
    buf_printf(&H.trace, "%s %s ? %s v%d.%d ka%d h%d n%d b%zu|", req->method_str, req->path,
               req->query, req->http_major, req->http_minor, req->keep_alive, req->head,
               req->nheaders, req->body.len);
    for (int i = 0; i < req->nheaders; i++)
        buf_printf(&H.trace, "%s=%s|", req->headers[i].name, req->headers[i].value);
    buf_append(&H.trace, req->body.data, req->body.len);
    buf_puts(&H.trace, "\n");
}

static void h_echo(struct http_request *req)
{
    check_request(req);
    struct buf *b = resp_body(req);
    buf_printf(b, "%s %s %d %zu\n", req->method_str, req->path, req->nheaders, req->body.len);
    buf_append(b, req->body.data, req->body.len);
    const char *x = http_request_header(req, "X-Echo");
    if (x) resp_header(req, "X-Echo", "%s", x);
    resp_header(req, "X-Query", "%s", req->query);
    resp_send(req, 200, CT_TEXT);
}

static void h_status(struct http_request *req)
{
    check_request(req);
    const char *p = http_request_param(req, "code");
    int code = p ? atoi(p) : 200;
    if (code < 100 || code > 599 || (code >= 100 && code < 200)) code = 200;
    buf_puts(resp_body(req), "status body");
    resp_send(req, code, CT_TEXT);
}

static void async_fire(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct http_request *req = H.async_req;
    H.async_req = NULL;
    if (!req) return;
    req->on_abort = NULL;
    buf_printf(resp_body(req), "later %s", req->path);
    resp_send(req, 200, CT_TEXT);
}

static void async_abort(struct http_request *req, void *arg)
{
    ev_timer_stop(W.loop, &H.async_timer);
    H.async_req = NULL;
}

static void h_async(struct http_request *req)
{
    check_request(req);
    if (H.async_req) abort(); /* pipelining must wait for the answer */
    H.async_req = req;
    req->on_abort = async_abort;
    ev_timer_set(&H.async_timer, 0., 0.);
    ev_timer_start(W.loop, &H.async_timer);
}

static void st_stop(void)
{
    if (H.st_active) ev_io_stop(W.loop, &H.st_io);
    H.st_active = 0;
    H.st_req = NULL;
}

static void st_drain_owner(void *owner) {}

static void st_destroy(void *owner)
{
    st_stop();
}

static const struct http_takeover_ops st_ops = {st_drain_owner, st_destroy};

/* Body consumed: answer on the fd ourselves and hand the connection back. */
static void st_done(void)
{
    struct http_request *req = H.st_req;
    char head[128];
    char body[64];
    int bl = snprintf(body, sizeof(body), "streamed %llu", (unsigned long long)H.st_got);
    int hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", bl);
    st_stop();
    if (H.nex < MAX_EXPECT) H.ex[H.nex++] = (struct expect){200, (size_t)bl, !req->head};
    struct buf out;
    buf_init(&out);
    buf_append(&out, head, (size_t)hl);
    if (!req->head) buf_append(&out, body, (size_t)bl);
    ssize_t n = send(H.tk.fd, out.data, out.len, MSG_NOSIGNAL);
    if (n != (ssize_t)out.len) abort(); /* the client drains; a short write is not expected */
    buf_free(&out);
    http_conn_release(req, 200, (unsigned long long)n, 1);
}

static void st_take_buffered(void)
{
    struct buf *in = H.tk.in;
    size_t n = in->len < H.st_left ? in->len : (size_t)H.st_left;
    buf_consume(in, n);
    H.st_left -= n;
    H.st_got += n;
}

static void st_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct buf *in = H.tk.in;
    if (buf_reserve(in, 4096) < 0) abort();
    ssize_t n = recv(H.tk.fd, in->data + in->len, in->cap - in->len - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        struct http_request *req = H.st_req;
        st_stop();
        http_conn_finish(req, 0, 0); /* the client went away mid-body */
        return;
    }
    in->len += (size_t)n;
    in->data[in->len] = '\0';
    st_take_buffered();
    if (H.st_left == 0) st_done();
}

static void h_stream(struct http_request *req)
{
    check_request(req);
    if (H.st_req) abort();
    if (http_conn_takeover(req, &st_ops, NULL, &H.tk) < 0) abort();
    if (H.tk.body_chunked || H.tk.body_length > 65536) {
        /* nothing written yet: give it back and answer as an error page */
        http_conn_return(req);
        resp_error(req, 502, "BAD_GATEWAY", "the fuzz owner does not stream %s",
                   H.tk.body_chunked ? "chunked bodies" : "large bodies");
        return;
    }
    H.st_req = req;
    H.st_left = H.tk.body_length;
    H.st_got = 0;
    st_take_buffered();
    if (H.st_left == 0) {
        st_done();
        return;
    }
    ev_io_init(&H.st_io, st_readable, H.tk.fd, EV_READ);
    ev_io_start(W.loop, &H.st_io);
    H.st_active = 1;
}

static int claims(struct worker_ctx *w, const char *path)
{
    return strncmp(path, "/proxy/", 7) == 0;
}

const struct route route_table[] = {
    {HTTP_GET, "/", h_echo, 0},
    {ROUTE_ANY_METHOD, "/echo", h_echo, 0},
    {HTTP_POST, "/echo/:a/:b", h_echo, 0},
    {HTTP_GET, "/status/:code", h_status, 0},
    {ROUTE_ANY_METHOD, "/async/*", h_async, 0},
    {HTTP_POST, "/admin", h_echo, ROUTE_ADMIN},
    {ROUTE_ANY_METHOD, "/stream/*", h_stream, ROUTE_STREAM},
    {ROUTE_ANY_METHOD, "/*", h_stream, ROUTE_STREAM | ROUTE_FALLBACK},
};
const size_t route_count = sizeof(route_table) / sizeof(route_table[0]);

/* ---- the response checker ------------------------------------------------------ */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Parse everything the server wrote; abort on anything malformed. */
static size_t last_start; /* where the last final response began */

static void check_output(const char *o, size_t len)
{
    size_t pos = 0;
    last_start = 0;
    int k = 0;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    while (pos < len) {
        if (len - pos >= sizeof(cont) - 1 && memcmp(o + pos, cont, sizeof(cont) - 1) == 0) {
            pos += sizeof(cont) - 1;
            continue;
        }
        if (k >= H.nex) abort(); /* bytes nobody queued */
        last_start = pos;
        const struct expect *e = &H.ex[k++];
        const char *end = memmem(o + pos, len - pos, "\r\n\r\n", 4);
        if (!end) abort();
        size_t hend = (size_t)(end - o) + 2; /* after the last header line's CRLF */
        if (len - pos < 13 || memcmp(o + pos, "HTTP/1.1 ", 9) != 0) abort();
        int st = 0;
        for (int i = 9; i < 12; i++) {
            if (o[pos + i] < '0' || o[pos + i] > '9') abort();
            st = st * 10 + (o[pos + i] - '0');
        }
        if (o[pos + 12] != ' ' || st != e->status) abort();
        const char *eol = memmem(o + pos, hend - pos, "\r\n", 2);
        size_t lp = (size_t)(eol - o) + 2;
        int ncl = 0;
        unsigned long long cl = 0;
        while (lp < hend) {
            const char *le = memmem(o + lp, hend - lp, "\r\n", 2);
            if (!le) abort();
            size_t ll = (size_t)(le - (o + lp));
            const char *colon = memchr(o + lp, ':', ll);
            if (!colon || colon == o + lp) abort();
            for (const char *c = o + lp; c < colon; c++)
                if (!is_tchar((unsigned char)*c)) abort();
            for (const char *c = colon; c < le; c++)
                if (*c == '\r' || *c == '\n' || *c == '\0') abort();
            if ((size_t)(colon - (o + lp)) == 14 &&
                strncasecmp(o + lp, "Content-Length", 14) == 0) {
                ncl++;
                cl = strtoull(colon + 1, NULL, 10);
            }
            lp += ll + 2;
        }
        int framed = st >= 200 && st != 204 && st != 304;
        if (framed && (ncl != 1 || cl != e->body_len)) abort();
        if (!framed && ncl != 0) abort();
        pos = hend + 2;
        if (e->has_body) {
            if (len - pos < e->body_len) abort();
            pos += e->body_len;
        }
    }
    if (k != H.nex) abort(); /* queued but never written */
}

/* ---- driving one connection ----------------------------------------------------- */

static uint32_t rng;
static uint32_t next_rand(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static int pump(int cfd, struct buf *out)
{
    int got = 0;
    for (;;) {
        char tmp[8192];
        ssize_t n = recv(cfd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0) {
            buf_append(out, tmp, (size_t)n);
            got = 1;
            continue;
        }
        break;
    }
    return got;
}

/* Run the loop until nothing moves any more. */
static void settle(int cfd, struct buf *out)
{
    int quiet = 0;
    for (int i = 0; i < 10000 && quiet < 3; i++) {
        ev_run(W.loop, EVRUN_NOWAIT);
        int got = pump(cfd, out);
        quiet = (got || H.async_req || ev_is_active(&H.async_timer)) ? 0 : quiet + 1;
    }
}

/* One connection: returns the normalized output (Date lines dropped) in *norm. */
static void run_once(const uint8_t *in, size_t len, int pieces, int admin_peer, struct buf *norm,
                     struct buf *trace, size_t *norm_last, int *last_status, int *nresp)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(admin_peer ? 0x7f000001 : 0x0a000001);
    H.nex = 0;
    buf_reset(&H.trace);
    if (http_conn_accept(&W, sv[0], (struct sockaddr *)&sa, sizeof(sa)) < 0) abort();
    struct buf out;
    buf_init(&out);
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos;
        if (pieces) {
            size_t want = 1 + next_rand() % 64;
            if (want < n) n = want;
        }
        ssize_t w = send(sv[1], in + pos, n, MSG_NOSIGNAL);
        if (w <= 0) break; /* the server closed: the rest is never read */
        pos += (size_t)w;
        settle(sv[1], &out);
    }
    shutdown(sv[1], SHUT_WR);
    settle(sv[1], &out);
    if (W.nconns != 0) abort(); /* a connection outlived its client's EOF */
    close(sv[1]);
    check_output(out.data, out.len);
    *nresp = H.nex;
    *last_status = H.nex ? H.ex[H.nex - 1].status : 0;
    *norm_last = 0;
    /* normalize: drop Date header lines */
    buf_reset(norm);
    for (size_t p = 0; p < out.len;) {
        const char *nl = memchr(out.data + p, '\n', out.len - p);
        size_t l = nl ? (size_t)(nl - (out.data + p)) + 1 : out.len - p;
        if (p < last_start && p + l > last_start) l = last_start - p; /* body, then HTTP/ */
        if (p == last_start) *norm_last = norm->len;
        if (!(l >= 6 && memcmp(out.data + p, "Date: ", 6) == 0)) buf_append(norm, out.data + p, l);
        p += l;
    }
    buf_reset(trace);
    buf_append(trace, H.trace.data, H.trace.len);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!W.loop) {
        log_open(NULL, LOG_FORMAT_TEXT, LOG_ERROR, 0);
        CFG = calloc(1, sizeof(*CFG));
        W.cfg = CFG;
        W.self = &SLOT;
        W.loop = ev_loop_new(EVFLAG_AUTO);
        W.fallback_claims = claims;
        ev_init(&H.async_timer, async_fire);
        buf_init(&H.trace);
    }
    if (size < 5) return 0;
    uint8_t mode = data[0];
    static const uint64_t header_lim[4] = {8192, 256, 1024, 100};
    static const uint64_t body_lim[4] = {1024 * 1024, 16, 300, 0};
    CFG->limits.header = header_lim[mode & 3];
    CFG->limits.body = body_lim[(mode >> 2) & 3];
    CFG->timeouts.headers_ms = CFG->timeouts.request_ms = CFG->timeouts.keepalive_ms = 60000;
    int admin_peer = (mode >> 4) & 1;
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                    (uint32_t)data[4] << 24;
    const uint8_t *in = data + 5;
    size_t len = size - 5;

    struct buf whole, split, t1, t2;
    buf_init(&whole);
    buf_init(&split);
    buf_init(&t1);
    buf_init(&t2);
    size_t wl, sl;
    int ws, ss, wn, sn;
    run_once(in, len, 0, admin_peer, &whole, &t1, &wl, &ws, &wn);
    rng = seed;
    run_once(in, len, 1, admin_peer, &split, &t2, &sl, &ss, &sn);
    int same_trace = t1.len == t2.len && (!t1.len || memcmp(t1.data, t2.data, t1.len) == 0);
    int same_out =
        whole.len == split.len && (!whole.len || !memcmp(whole.data, split.data, whole.len));
    /* One exception: a request both malformed and over a limit may be refused for
     * either reason first, depending on where the pieces end (the parser reports a
     * bad byte only once it sees it). Everything before that last answer must agree. */
    if (!same_out && wn == sn && wl == sl && (!wl || !memcmp(whole.data, split.data, wl)) &&
        (ws == 400 || ws == 413 || ws == 431) && (ss == 400 || ss == 413 || ss == 431))
        same_out = 1;
    if (!same_trace || !same_out) {
        if (getenv("FUZZ_HTTP_DEBUG"))
            fprintf(stderr,
                    "--- whole trace:\n%.*s\n--- split trace:\n%.*s\n--- whole out:\n%.*s\n--- "
                    "split out:\n%.*s\n",
                    (int)t1.len, t1.data ? t1.data : "", (int)t2.len, t2.data ? t2.data : "",
                    (int)whole.len, whole.data ? whole.data : "", (int)split.len,
                    split.data ? split.data : "");
        abort();
    }
    buf_free(&whole);
    buf_free(&split);
    buf_free(&t1);
    buf_free(&t2);
    return 0;
}
