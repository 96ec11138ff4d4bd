/*
 * worker_ctx.h — the one per-process context of a worker, and what its files share.
 *
 * Everything a worker owns hangs off this struct (the house style allows exactly
 * one per-process context): configuration, scoreboard slot, the libev loop and
 * its watchers, the list of open client connections and the drain flag. It is
 * created on worker_main's stack and passed by pointer, so the connection,
 * router and handler code can be driven without hidden globals.
 */
#ifndef SVCD_WORKER_CTX_H
#define SVCD_WORKER_CTX_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../common/config.h"
#include "../common/scoreboard.h"

struct http_conn;
struct store_pool;
struct proxy_ctx;
struct preview_ctx;
struct sio_ctx;
struct tls_server;
struct tls_conn;

struct worker_ctx {
    const struct svcd_config *cfg;
    struct scoreboard *sb;
    struct sb_slot *self; /* &sb->slot[slot] */
    int slot, index, generation;
    struct ev_loop *loop;

    /* listeners: one accept watcher per inherited listening socket */
    int nlisten;
    int listen_fds[CONFIG_MAX_LISTEN];
    ev_io accept_io[CONFIG_MAX_LISTEN];
    int accepting;         /* accept watchers started */
    ev_timer accept_retry; /* re-enable accepting after EMFILE/ENFILE */

    /* channels */
    int master_fd, coord_fd;
    ev_io master_io, coord_io;

    ev_signal sig_term, sig_usr1;
    ev_timer heartbeat;

    struct store_pool *pool; /* storage threads + job processor; NULL if none */

    /* connections */
    struct http_conn *conns; /* doubly-linked list of every open connection */
    size_t nconns;
    int draining; /* SIGTERM seen: stop accepting, answer "Connection: close" */

    /* reverse proxy (proxy.c: upstream pool, exchanges, tunnels) and the local copy
     * of the coordinator's preview registry (preview.c) */
    struct proxy_ctx *proxy;
    struct preview_ctx *preview;
    /* Does a ROUTE_FALLBACK|ROUTE_STREAM row really serve this path (a proxy.routes
     * prefix)? If not, the request is read whole like any other (limits, 404). */
    int (*fallback_claims)(struct worker_ctx *w, const char *path);

    /* Socket.IO / Engine.IO sessions and the chat (sio.h, issue 5) */
    struct sio_ctx *sio;

    /* TLS termination (tls.h): contexts per TLS listener, loaded before the
     * privilege drop; the shuttles of open TLS connections */
    struct tls_server *tls;
    struct tls_conn *tls_conns;
    size_t ntls, ntls_handshake;

    /* cached IMF-fixdate for the Date header, refreshed once per second */
    time_t date_sec;
    char date[40];
};

/* worker.c: a connection was freed; resumes accepting below the limit and ends
 * the loop once a drain has no connection left. */
void worker_conn_closed(struct worker_ctx *w);

#endif
