/*
 * tls.h — TLS termination for `listen: [{ tls: {cert, key} }]` listeners.
 *
 * Design: a TLS connection is terminated by a small byte shuttle in the worker
 * that accepted it, and the plaintext is handed to the ordinary HTTP core over a
 * socketpair, as if it were a plain connection (see tls.c for why). Everything
 * above the socket — keep-alive, the proxy's takeover, WebSocket, the Socket.IO
 * hand-off of a socket to another worker — works unchanged over TLS.
 *
 * The certificate and key are loaded by each child before it drops privileges
 * (keys are usually readable by root only), from the configuration of its
 * generation: a reload (SIGHUP, `svc reload`) therefore picks up renewed
 * certificates with no restart.
 */
#ifndef SVCD_TLS_H
#define SVCD_TLS_H

#include <stddef.h>
#include <sys/socket.h>

#include "../common/config.h"

struct worker_ctx;
struct tls_server;

/* One SSL_CTX per TLS listener of cfg (TLS >= 1.2, ALPN http/1.1). Returns NULL with
 * err filled on failure, NULL with err[0] == '\0' when cfg has no TLS listener. */
struct tls_server *tls_server_load(const struct svcd_config *cfg, char *err, size_t errlen);
void tls_server_free(struct tls_server *ts);

/* Does listener i terminate TLS? */
int tls_listener(const struct tls_server *ts, int i);

/* Take an accepted socket of TLS listener i: handshake (bounded by
 * timeouts.headers), then serve it through http_conn. Closes fd on failure. */
void tls_accept(struct worker_ctx *w, int listener, int fd, const struct sockaddr *sa,
                socklen_t salen);

/* Drain: connections still in their handshake close now; established ones end
 * when their HTTP side does. */
void tls_drain_all(struct worker_ctx *w);

/* Free every TLS connection now (worker exit). */
void tls_close_all(struct worker_ctx *w);

#endif
