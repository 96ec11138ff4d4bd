/*
 * proxy.h — the worker's reverse proxy: one HTTP/1.1 exchange or WebSocket
 * tunnel per client request, to a static route's upstream or a preview server.
 *
 * A proxied request arrives as a ROUTE_STREAM request (router.h); the handler
 * picks a target and calls proxy_forward(), which takes the client connection
 * over (http_conn.h) and streams both ways through bounded buffers. Upstream
 * connections come from a per-worker keep-alive pool. Every failure answers:
 * 502 (refused, reset, invalid response), 504 (connect or response timeout) as
 * SPEC §4 JSON errors, or the target's own on_refused answer (the preview
 * loading page); once the response head went out, a failure closes the client
 * connection (a truncated body is then visible to the client).
 */
#ifndef SVCD_PROXY_H
#define SVCD_PROXY_H

#include <sys/socket.h>

#include "http_request.h"
#include "worker_ctx.h"

/* Largest upstream response head accepted (status line and fields); larger -> 502. */
#define PROXY_HEAD_MAX (64 * 1024)

struct proxy_target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char hostport[300];  /* Host header sent upstream and pool key: "127.0.0.1:5000" */
    char name[400];      /* in messages: "proxy.routes[0] (http://127.0.0.1:5000)" */
    char track_key[300]; /* tunnels are tracked under it: "demo_alice", "/api/legacy/" */
    char owner[128];     /* owner shown by /debug/connections */
    char project[128];   /* preview targets: projectId and userId; "" otherwise */
    char user[128];
    /* Called instead of the 502 when the upstream refuses the connection (nothing
     * was written to the client yet); it must answer req. NULL: the JSON 502. */
    void (*on_refused)(struct http_request *req, const struct proxy_target *t);
};

int proxy_init(struct worker_ctx *w);
/* Worker exit: close pooled upstream connections (exchanges die with their
 * client connections in http_conn_close_all). */
void proxy_shutdown(struct worker_ctx *w);

/* Proxy req to t; always answers (see above). t is copied. */
void proxy_forward(struct http_request *req, const struct proxy_target *t);

/* The proxy.routes entry whose prefix is the longest match for path, or NULL. */
const struct proxy_target *proxy_route_for(struct worker_ctx *w, const char *path);

/* Was t's upstream address resolved at start? If not, *err says why. */
int proxy_route_ok(struct worker_ctx *w, const struct proxy_target *t, const char **err);

/* Close every WebSocket tunnel tracked under key (its preview went down);
 * returns how many. */
int proxy_close_tunnels(struct worker_ctx *w, const char *key, const char *why);

/* Append this worker's tunnels as JSON objects separated by commas (no
 * brackets); returns how many were written. */
int proxy_tunnels_json(struct worker_ctx *w, struct buf *out);

/* Let the tunnel tracker re-announce every open tunnel (coordinator re-link). */
void proxy_tunnels_each(struct worker_ctx *w,
                        void (*fn)(struct worker_ctx *w, const char *id, const char *json));

/* Counters for /metrics-style output. */
struct proxy_stats {
    unsigned long long requests, tunnels_open, tunnels_total, pool_idle, pool_reused,
        upstream_connects, upstream_errors;
};
void proxy_get_stats(struct worker_ctx *w, struct proxy_stats *out);

#endif
