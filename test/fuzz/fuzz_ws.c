/*
 * fuzz_ws.c — libFuzzer target for the WebSocket input path of worker/ws.c.
 *
 * The real ws_new() runs on a libev loop with the client on a socketpair: some
 * input bytes are handed over as "already read with the upgrade request" (the
 * takeover's leftover), the rest is written in pieces, then the client shuts
 * down its side. Framing, masking, fragmentation and control frames are wslay's
 * (the system library, not instrumented); what is svcd's — the glue, UTF-8
 * validation (1007), the message limit (1009), the close handshake and the one
 * on_closed — is what this checks:
 *   - every message delivered is binary or valid UTF-8 (by an independent
 *     validator) and within max_msg; messages are echoed back with ws_send();
 *   - everything the server writes is the 101 head, then well-formed server
 *     frames: unmasked, known opcodes, control frames FIN and <= 125 bytes, a
 *     close payload empty or a 2-byte code (+ UTF-8 reason);
 *   - on_closed comes exactly once after the client's EOF, and ws_free() leaks
 *     nothing;
 *   - ws_utf8_valid() agrees with the reference validator on the raw input.
 */
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/buf.h"
#include "../../common/log.h"
#include "../../worker/ws.h"

static struct ev_loop *loop;
static struct {
    struct ws_conn *ws;
    int closed;
    uint64_t max_msg;
    int echo;
} S;

/* RFC 3629 / Unicode Table 3-7, written as byte ranges (not as code points). */
static int ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t a = s[i];
        if (a <= 0x7f) {
            i++;
            continue;
        }
        uint8_t lo = 0x80, hi = 0xbf;
        size_t k;
        if (a >= 0xc2 && a <= 0xdf) {
            k = 1;
        } else if (a >= 0xe0 && a <= 0xef) {
            k = 2;
            if (a == 0xe0) lo = 0xa0;
            if (a == 0xed) hi = 0x9f;
        } else if (a >= 0xf0 && a <= 0xf4) {
            k = 3;
            if (a == 0xf0) lo = 0x90;
            if (a == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i < k + 1) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf) return 0;
        i += k + 1;
    }
    return 1;
}

static void on_message(void *ud, int binary, const uint8_t *data, size_t len)
{
    if (!binary && !ref_utf8(data, len)) abort();
    if (S.max_msg && len > S.max_msg) abort();
    if (S.echo) ws_send(S.ws, binary, data, len);
}

static void on_closed(void *ud, int code)
{
    if (S.closed) abort(); /* twice */
    S.closed = 1;
    ws_free(S.ws);
    S.ws = NULL;
}

static const struct ws_handler handler = {on_message, on_closed};

static void check_output(const uint8_t *o, size_t len, size_t head_len)
{
    if (len < head_len) return; /* the peer went away before the head was out */
    size_t p = head_len;
    while (p < len) {
        if (len - p < 2) abort();
        uint8_t b0 = o[p], b1 = o[p + 1];
        int fin = b0 >> 7, op = b0 & 0x0f;
        if (b0 & 0x70) abort(); /* no extensions negotiated */
        if (b1 & 0x80) abort(); /* server frames are never masked */
        uint64_t pl = b1 & 0x7f;
        p += 2;
        if (pl == 126) {
            if (len - p < 2) abort();
            pl = (uint64_t)o[p] << 8 | o[p + 1];
            p += 2;
        } else if (pl == 127) {
            if (len - p < 8) abort();
            pl = 0;
            for (int i = 0; i < 8; i++) pl = pl << 8 | o[p + i];
            p += 8;
        }
        if (len - p < pl) abort();
        if (op >= 8) {
            if (op > 10 || !fin || pl > 125) abort();
            if (op == 8 && pl) {
                if (pl < 2) abort();
                int code = o[p] << 8 | o[p + 1];
                if (code < 1000 || code == 1004 || code == 1005 || code == 1006 || code >= 5000)
                    abort();
                if (!ref_utf8(o + p + 2, (size_t)pl - 2)) abort();
            }
        } else if (op > 2) {
            abort();
        }
        p += (size_t)pl;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop) {
        log_open(NULL, LOG_FORMAT_TEXT, LOG_ERROR, 0);
        loop = ev_loop_new(EVFLAG_AUTO);
    }
    if (ws_utf8_valid(data, size) != ref_utf8(data, size)) abort();
    if (size < 3) return 0;
    uint8_t mode = data[0];
    size_t pre = data[1];
    data += 2, size -= 2;
    if (pre > size) pre = size;
    static const uint64_t limits[4] = {0, 16, 200, 1 << 20};
    S.max_msg = limits[mode & 3];
    S.echo = (mode >> 2) & 1;
    size_t piece = 1 + ((mode >> 3) & 31);
    S.closed = 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    S.ws = ws_new(loop, sv[0], head, sizeof(head) - 1, (const char *)data, pre, S.max_msg, &handler,
                  NULL);
    if (!S.ws) abort();
    struct buf out;
    buf_init(&out);
    size_t pos = pre;
    int after = 0;
    for (int round = 0; round < 20000 && !S.closed && after < 50; round++) {
        if (pos < size) {
            size_t n = size - pos < piece ? size - pos : piece;
            ssize_t w = send(sv[1], data + pos, n, MSG_NOSIGNAL);
            if (w > 0) pos += (size_t)w;
            if (w <= 0 || pos == size) pos = size;
            if (pos == size) shutdown(sv[1], SHUT_WR);
        } else {
            if (after == 0) shutdown(sv[1], SHUT_WR);
            after++;
        }
        ev_run(loop, EVRUN_NOWAIT);
        char tmp[8192];
        ssize_t r;
        while ((r = recv(sv[1], tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
            buf_append(&out, tmp, (size_t)r);
    }
    if (!S.closed) abort(); /* the client's EOF must end the connection */
    char tmp[8192];
    ssize_t r;
    while ((r = recv(sv[1], tmp, sizeof(tmp), MSG_DONTWAIT)) > 0) buf_append(&out, tmp, (size_t)r);
    if (getenv("FUZZ_WS_DEBUG"))
        for (size_t i = 0; i < out.len; i++)
            fprintf(stderr, "%02x%s", (uint8_t)out.data[i], i + 1 < out.len ? " " : "\n");
    check_output((const uint8_t *)out.data, out.len, sizeof(head) - 1);
    if (out.len < sizeof(head) - 1 || memcmp(out.data, head, sizeof(head) - 1) != 0) {
        if (out.len) abort(); /* whatever was written starts with the head */
    }
    buf_free(&out);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
