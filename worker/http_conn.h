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

#endif
