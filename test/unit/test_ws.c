/*
 * test_ws.c — regression test for worker/ws.c found by test/fuzz/fuzz_ws.c: a
 * client's close frame whose reason is not UTF-8, arriving in pieces, used to be
 * echoed back verbatim (wslay queues the reply itself; it checks the reason only
 * when the frame comes in one read); RFC 6455 5.5.1/8.1 make that a failed
 * connection. A valid close is still answered with the same code and reason.
 *
 * worker/ws.c is compiled in here directly (unit tests link common/ only) and
 * runs on a real libev loop with the client on a socketpair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../worker/http_request.c"
#include "../../worker/ws.c"

static struct {
    struct ws_conn *ws;
    int closed, code;
} S;

static void on_message(void *ud, int binary, const uint8_t *data, size_t len)
{
    (void)ud, (void)binary, (void)data, (void)len;
}

static void on_closed(void *ud, int code)
{
    (void)ud;
    S.closed++;
    S.code = code;
    ws_free(S.ws);
    S.ws = NULL;
}

static const struct ws_handler handler = {on_message, on_closed};

/* A masked client close frame with `payload`; the server's bytes in *out. */
static size_t close_with(const uint8_t *payload, size_t n, int bytewise, uint8_t *out, size_t cap)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    uint8_t frame[64] = {0x88, (uint8_t)(0x80 | n), 1, 2, 3, 4};
    for (size_t i = 0; i < n; i++) frame[6 + i] = payload[i] ^ frame[2 + i % 4];
    memset(&S, 0, sizeof(S));
    S.ws = ws_new(loop, sv[0], NULL, 0, NULL, 0, 0, &handler, NULL);
    assert_non_null(S.ws);
    size_t got = 0, sent = 0;
    if (!bytewise) {
        assert_int_equal(send(sv[1], frame, 6 + n, 0), (ssize_t)(6 + n));
        sent = 6 + n;
    }
    for (int round = 0; round < 200 && !S.closed; round++) {
        if (sent < 6 + n) {
            assert_int_equal(send(sv[1], frame + sent, 1, 0), 1);
            sent++;
        }
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t r = recv(sv[1], out + got, cap - got, MSG_DONTWAIT);
        if (r > 0) got += (size_t)r;
        if (round == 40) shutdown(sv[1], SHUT_WR); /* then the peer goes away */
    }
    ssize_t r = recv(sv[1], out + got, cap - got, MSG_DONTWAIT);
    if (r > 0) got += (size_t)r;
    assert_int_equal(S.closed, 1);
    close(sv[0]);
    close(sv[1]);
    ev_loop_destroy(loop);
    return got;
}

static void test_close_reason_invalid_utf8(void **state)
{
    (void)state;
    const uint8_t bad[] = {0x03, 0xe8, 'b', 0xc6, '+'}; /* 1000, "b\xc6+" */
    const uint8_t close_1007[] = {0x88, 0x02, 0x03, 0xef};
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        uint8_t out[256];
        size_t n = close_with(bad, sizeof(bad), bytewise, out, sizeof(out));
        /* wslay answers 1007 itself when the frame comes in one read; byte by
         * byte it used to echo the invalid reason: now the connection fails */
        if (n) {
            assert_int_equal(n, sizeof(close_1007));
            assert_memory_equal(out, close_1007, n);
        }
        assert_int_equal(S.code, 1007);
    }
}

static void test_close_valid_echoed(void **state)
{
    (void)state;
    const uint8_t ok[] = {0x03, 0xe8, 'b', 'y', 'e'};
    const uint8_t want[] = {0x88, 0x05, 0x03, 0xe8, 'b', 'y', 'e'};
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        uint8_t out[256];
        size_t n = close_with(ok, sizeof(ok), bytewise, out, sizeof(out));
        assert_int_equal(n, sizeof(want));
        assert_memory_equal(out, want, sizeof(want));
        assert_int_equal(S.code, 1000);
    }
}

int main(void)
{
    log_open(NULL, LOG_FORMAT_TEXT, LOG_ERROR, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_reason_invalid_utf8),
        cmocka_unit_test(test_close_valid_echoed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
