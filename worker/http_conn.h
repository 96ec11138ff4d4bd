/*
 * http_conn.h — one client connection: socket, buffers, parser, timers.
 *
 * The connection owns the bytes; requests (http_request.h) own the meaning.
 * worker.c hands every accepted socket to http_conn_accept(); handlers answer
 * through response.h, which ends in http_conn_respond().
 */
#ifndef SVCD_HTTP_CONN_H
#define SVCD_HTTP_CONN_H

#include <sys/socket.h>

#include "http_request.h"
#include "worker_ctx.h"

/* Take ownership of an accepted, non-blocking socket. Returns 0, or -1 (the fd is
 * closed) when out of memory. */
int http_conn_accept(struct worker_ctx *w, int fd, const struct sockaddr *sa, socklen_t salen);

/* The same for the plaintext end of a TLS connection (tls.c): sa is the TLS
 * client's address; the request is marked as arriving over TLS. */
int http_conn_accept_tls(struct worker_ctx *w, int fd, const struct sockaddr *sa, socklen_t salen);

/* Did this connection arrive over TLS (X-Forwarded-Proto, logs)? */
int http_conn_is_tls(const struct http_conn *c);

/* A client socket handed over by another worker (Socket.IO hand-off, see
 * docs/socketio.md) with the request bytes that worker had already read: served
 * as if accepted here and those bytes had just arrived. Returns 0 or -1. */
int http_conn_adopt(struct worker_ctx *w, int fd, const void *bytes, size_t len);

/* Queue the response built in req->resp (status, headers, body) and move the
 * connection on; callable from inside the handler or any time later. */
void http_conn_respond(struct http_request *req);

/* SIGTERM: idle keep-alive connections close after a short grace; busy ones
 * finish their request and close. */
void http_conn_drain_all(struct worker_ctx *w);

/* Free every connection now (worker exit). */
void http_conn_close_all(struct worker_ctx *w);

/* The peer, as a socket address and as printable text ("127.0.0.1"). */
const struct sockaddr *http_conn_peer(const struct http_conn *c, socklen_t *len);
const char *http_conn_remote(const struct http_conn *c);

/*
 * Connection takeover — a handler becomes the owner of the client socket.
 *
 * For what does not fit "request in, response out": the reverse proxy (bodies
 * streamed both ways without buffering, WebSocket tunnels) and, later, the
 * WebSocket/Socket.IO server. A route flagged ROUTE_STREAM (router.h) is
 * dispatched as soon as the request head is parsed, before any body byte is
 * consumed; its handler may then call http_conn_takeover() (so may any handler
 * that still owes its response, e.g. after a WebSocket handshake check).
 *
 * What the owner gets (struct http_takeover):
 *   fd     the non-blocking client socket. The connection's own watchers and
 *          timer are stopped; the owner runs its own ev_io/ev_timer on the fd
 *          (it must stop them before it ends or releases the connection).
 *   in     the bytes already read beyond the request head (the start of the body,
 *          WebSocket frames sent early, a pipelined next request), at in->data,
 *          in->len bytes. The owner consumes from the front (buf_consume) and may
 *          append what it reads itself; whatever is left in it when the owner
 *          hands the connection back is parsed as the next request.
 *   body_* the request body framing the parser saw (ROUTE_STREAM requests only;
 *          for other handlers the body was already read into req->body).
 * The request (req: method, url, headers, params) stays valid while owned.
 *
 * How it ends — exactly one of:
 *   http_conn_release(req, status, bytes, keep_alive)
 *          the exchange is complete and the client connection is clean (the
 *          whole request body consumed, a framed response written): one access
 *          line is logged and the connection goes back to HTTP keep-alive, or
 *          closes (lingering) when keep_alive is 0, the client asked for close or
 *          the worker drains.
 *   http_conn_finish(req, status, bytes)
 *          close the connection now (status <= 0: log no access line).
 *   http_conn_return(req)
 *          nothing was written to the client yet: hand the exchange back and
 *          answer it with response.h (error pages).
 * All may be called from the owner's own callbacks. The connection object
 * stays in the worker's list while owned, so it is counted (scoreboard,
 * limits.connections) and the worker's drain waits for it. The ops are how the
 * worker reaches the owner:
 *   drain(owner)    SIGTERM: finish what is in flight, then release/finish
 *                   (a long-lived tunnel ends itself here; the worker's drain
 *                   deadline is the master's timeouts.shutdown).
 *   destroy(owner)  the connection is being freed under the owner (worker exit):
 *                   stop watchers and free owner state; do not call back into
 *                   http_conn; the fd is closed by http_conn afterwards.
 */
struct http_takeover_ops {
    void (*drain)(void *owner);
    void (*destroy)(void *owner);
};

struct http_takeover {
    int fd;
    struct buf *in;
    int body_chunked;     /* Transfer-Encoding: chunked */
    uint64_t body_length; /* Content-Length (0 when none or chunked) */
    int body_unread;      /* a body was announced and none of it is consumed yet */
};

/* Returns 0, or -1 when the request can no longer be taken over (answered already). */
int http_conn_takeover(struct http_request *req, const struct http_takeover_ops *ops, void *owner,
                       struct http_takeover *out);
void http_conn_release(struct http_request *req, int status, unsigned long long bytes_out,
                       int keep_alive);
void http_conn_finish(struct http_request *req, int status, unsigned long long bytes_out);
/* Give the exchange back before the owner wrote anything to the client: the
 * handler then answers through response.h as if it had never taken over (the
 * proxy's 502/503/504 and the preview loading page). The connection closes after
 * that answer when a request body was announced (its bytes may be half read). */
void http_conn_return(struct http_request *req);

/* For a long-lived owner (a WebSocket) that needs nothing more of the request than
 * its access line: frees the header arrays, the request and response buffers and
 * the connection's empty I/O buffers, keeping method, url, path, query and the
 * User-Agent header (the only header left). Route params are dropped. Only while
 * taken over; on out of memory it leaves everything as it was. */
void http_conn_compact(struct http_request *req);

#endif
