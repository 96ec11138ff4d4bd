/*
 * ws.h — a server-side WebSocket connection (RFC 6455) on the worker's libev loop.
 *
 * Framing, masking, fragmentation, control frames, automatic pong and the close
 * handshake are wslay's (a packaged, well-kept RFC 6455 implementation); this file
 * glues its event API to a non-blocking fd and an ev_io pair, and adds what wslay
 * leaves to the application: the opening handshake (Sec-WebSocket-Accept with
 * OpenSSL SHA-1 + base64), UTF-8 validation of text messages (1007), the message
 * size limit (1009, limits.ws_message), a bound on queued output (a slow reader is
 * cut off with 1008 instead of growing the worker's memory), a deadline for the
 * peer's close reply, and one "closed" callback.
 *
 * The fd is not owned: it comes from an HTTP connection takeover (http_conn.h) and
 * is closed by http_conn when the owner finishes the exchange in on_closed.
 */
#ifndef SVCD_WS_H
#define SVCD_WS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "http_request.h"

#define WS_ACCEPT_LEN 29 /* base64(SHA-1) + NUL */

struct ws_conn;

struct ws_handler {
    /* A complete message. The data is valid during the call only. */
    void (*on_message)(void *ud, int binary, const uint8_t *data, size_t len);
    /* The connection is over (close handshake done, peer gone, I/O error or a
     * protocol violation); `code` is the close code received, or 1006. Always
     * called from a libev callback, never from inside a ws_* call; the owner
     * calls ws_free() (and ends its takeover) here. */
    void (*on_closed)(void *ud, int code);
};

/* Check the upgrade request (GET, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version: 13, a valid key). Returns 0 and fills `accept`, or the
 * HTTP status to answer (400, 426) with `why` set to a message for people. */
int ws_handshake_check(const struct http_request *req, char accept[WS_ACCEPT_LEN],
                       const char **why);
/* Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2). */
void ws_accept_key(const char *key, size_t len, char accept[WS_ACCEPT_LEN]);

/*
 * Start a WebSocket on `fd`: `head` (the 101 response, may be NULL) is written
 * before any frame, `in` holds bytes already read from the peer (frames sent
 * right after the handshake). `max_msg` bounds one received message (0: none).
 */
struct ws_conn *ws_new(struct ev_loop *loop, int fd, const char *head, size_t head_len,
                       const char *in, size_t in_len, uint64_t max_msg, const struct ws_handler *h,
                       void *ud);

/* Queue a text (binary = 0) or binary message. Returns 0, or -1 when the
 * connection is closing or the output bound is exceeded (it is then closed). */
int ws_send(struct ws_conn *ws, int binary, const void *data, size_t len);
/* Start the close handshake with `code`; on_closed follows once the peer
 * answered (or after a short deadline). Idempotent. */
void ws_close(struct ws_conn *ws, uint16_t code, const char *reason);
/* A ping control frame (liveness; wslay answers the peer's pings itself). */
void ws_ping(struct ws_conn *ws);
/* Stop the watchers and free; the fd is left open. */
void ws_free(struct ws_conn *ws);

int ws_closing(const struct ws_conn *ws);
unsigned long long ws_bytes_out(const struct ws_conn *ws);
size_t ws_queued_bytes(const struct ws_conn *ws);

/* Is this valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF)? */
int ws_utf8_valid(const uint8_t *s, size_t len);

#endif
