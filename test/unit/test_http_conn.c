/*
 * test_http_conn.c — regression tests for worker/http_conn.c found by the
 * libFuzzer target test/fuzz/fuzz_http.c: the same bytes must get the same answer
 * whether they arrive in one read or byte by byte.
 *
 * The worker's connection code (with response.c, router.c, http_request.c and
 * admin.c) is compiled in here directly — unit tests link common/ only — and run
 * on a real libev loop with the client on a socketpair; the route table is the
 * test's own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../worker/admin.c"
#include "../../worker/http_conn.c"
#include "../../worker/http_request.c"
#include "../../worker/response.c"
#include "../../worker/router.c"

static struct worker_ctx W;
static struct svcd_config CFG;
static struct sb_slot SLOT;

void worker_conn_closed(struct worker_ctx *w)
{
    (void)w;
}

static void h_echo(struct http_request *req)
{
    buf_printf(resp_body(req), "%d headers", req->nheaders);
    resp_send(req, 200, CT_TEXT);
}

/* Takes the connection over (as the proxy and Socket.IO do), answers on the fd. */
static void tk_destroy(void *owner)
{
    (void)owner;
}
static const struct http_takeover_ops tk_ops = {NULL, tk_destroy};

static void h_take(struct http_request *req)
{
    struct http_takeover tk;
    if (http_conn_takeover(req, &tk_ops, NULL, &tk) < 0) {
        resp_error(req, 500, "INTERNAL", "takeover refused");
        return;
    }
    buf_consume(tk.in, tk.in->len < 2 ? tk.in->len : 2); /* the body, read with the head */
    static const char ans[] = "HTTP/1.1 204 No Content\r\n\r\n";
    ssize_t n = send(tk.fd, ans, sizeof(ans) - 1, MSG_NOSIGNAL);
    http_conn_release(req, 204, (unsigned long long)(n > 0 ? n : 0), 1);
}

const struct route route_table[] = {
    {ROUTE_ANY_METHOD, "/echo", h_echo, 0},
    {HTTP_POST, "/take", h_take, 0},
};
const size_t route_count = sizeof(route_table) / sizeof(route_table[0]);

/* Send `in` in pieces of `piece` bytes (0: at once), then EOF; all the answer. */
static char *serve(const char *in, size_t piece)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    assert_int_equal(http_conn_accept(&W, sv[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct buf out;
    buf_init(&out);
    size_t len = strlen(in), pos = 0;
    int after = 0; /* rounds since the last byte went out */
    for (int round = 0; round < 100000 && after < 50; round++) {
        if (pos == len) after++;
        if (pos < len) {
            size_t n = piece && piece < len - pos ? piece : len - pos;
            ssize_t w = send(sv[1], in + pos, n, MSG_NOSIGNAL);
            assert_true(w > 0);
            pos += (size_t)w;
            if (pos == len) shutdown(sv[1], SHUT_WR);
        }
        ev_run(W.loop, EVRUN_NOWAIT);
        char tmp[4096];
        ssize_t r;
        while ((r = recv(sv[1], tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
            buf_append(&out, tmp, (size_t)r);
    }
    assert_int_equal(W.nconns, 0); /* closed after the client's EOF */
    close(sv[1]);
    buf_append(&out, "", 1);
    return out.data;
}

static int setup(void **state)
{
    (void)state;
    log_open(NULL, LOG_FORMAT_TEXT, LOG_ERROR, 0);
    CFG.limits.body = 1024;
    CFG.limits.header = 8192;
    CFG.timeouts.headers_ms = CFG.timeouts.request_ms = CFG.timeouts.keepalive_ms = 60000;
    W.cfg = &CFG;
    W.self = &SLOT;
    W.loop = ev_loop_new(EVFLAG_AUTO);
    return W.loop ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ev_loop_destroy(W.loop);
    return 0;
}

/* limits.header counts ": " + CRLF once per field. It used to add them on every
 * parser callback, so a header name arriving in pieces (one per read) counted
 * 4 bytes per piece: a request exactly at the limit passed in one read and got
 * 431 byte by byte. */
static void test_header_limit_independent_of_reads(void **state)
{
    (void)state;
    /* url 5 + "Aaaaaaaaaa" 10 + 4 + "b" 1 = 20 bytes of head */
    const char *req = "GET /echo HTTP/1.1\r\nAaaaaaaaaa: b\r\n\r\n";
    CFG.limits.header = 20;
    for (size_t piece = 0; piece <= 3; piece++) {
        char *out = serve(req, piece);
        assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
        assert_non_null(strstr(out, "1 headers"));
        free(out);
    }
    CFG.limits.header = 19; /* one byte less: 431 however it arrives */
    for (size_t piece = 0; piece <= 3; piece++) {
        char *out = serve(req, piece);
        assert_non_null(strstr(out, "HTTP/1.1 431 "));
        free(out);
    }
    /* trailers count the same way (and are not kept) */
    CFG.limits.header = 8192;
    const char *chunked = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "1\r\nx\r\n0\r\nTrailer-Field: v\r\n\r\n";
    for (size_t piece = 0; piece <= 1; piece++) {
        char *out = serve(chunked, piece);
        assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
        assert_non_null(strstr(out, "1 headers"));
        free(out);
    }
    CFG.limits.header = 8192;
}

/* A takeover used to be refused while the "100 Continue" queued at the end of the
 * head was unsent, i.e. whenever the body came in the same read as the head. */
static void test_takeover_after_100_continue(void **state)
{
    (void)state;
    CFG.limits.header = 8192;
    const char *req = "POST /take HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok";
    for (size_t piece = 0; piece <= 1; piece++) {
        char *out = serve(req, piece);
        assert_string_equal(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_limit_independent_of_reads),
        cmocka_unit_test(test_takeover_after_100_continue),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
