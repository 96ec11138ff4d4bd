/*
 * preview.h — the worker's copy of the preview registry, and its coordinator link.
 *
 * The coordinator owns the registry (coordinator/preview_registry.c): entries
 * keyed projectId_userId -> {port, type, startedAt, up}. Each worker keeps a
 * copy, updated by PREVIEW_STATE/GONE frames, so routing a /preview/... request
 * never waits on another process. Changes a worker makes (the REST API, passive
 * "down" marks) apply to its copy at once and go to the coordinator, which
 * broadcasts them. On every new coordinator link the worker re-announces its
 * whole copy and its open WebSocket tunnels: that is how a restarted
 * coordinator is rebuilt (common/ipc.h, types 32..47).
 */
#ifndef SVCD_PREVIEW_H
#define SVCD_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "http_request.h"
#include "worker_ctx.h"

#define PREVIEW_ID_MAX 128

struct preview_entry {
    char project[PREVIEW_ID_MAX];
    char user[PREVIEW_ID_MAX];
    int port;
    char type[32];
    int64_t started_ms; /* wall clock */
    int up;
    char source[96]; /* "api", "app:web" */
};

int preview_init(struct worker_ctx *w);
void preview_shutdown(struct worker_ctx *w);

/* A frame of types 32..47 from the coordinator. */
void preview_on_frame(struct worker_ctx *w, uint8_t type, const char *payload, size_t len);
/* A new coordinator link is attached: re-announce entries and tunnels. */
void preview_on_link(struct worker_ctx *w);

/* Valid projectId / userId: 1..127 characters of [A-Za-z0-9._-]. */
int preview_id_ok(const char *s);

const struct preview_entry *preview_find(struct worker_ctx *w, const char *project,
                                         const char *user);
/* Register or replace (local copy now, coordinator after); 0 or -1 (no memory). */
int preview_set(struct worker_ctx *w, const struct preview_entry *e);
/* Unregister; 1 when it existed. */
int preview_del(struct worker_ctx *w, const char *project, const char *user, const char *reason);
/* Passive liveness: a proxied connect to its port was refused. */
void preview_mark_down(struct worker_ctx *w, const char *project, const char *user, int port);

/* The proxy's tunnel tracker reports here (forwarded to the coordinator). */
void preview_tunnel_opened(struct worker_ctx *w, const char *id, const char *json);
void preview_tunnel_closed(struct worker_ctx *w, const char *id);

/* Entry as the admin API shows it (GET/POST /api/preview-servers):
 * {"port","type","url","iframeUrl","startedAt","up","projectId","userId","source"} */
void preview_entry_json(const struct preview_entry *e, struct buf *out);
/* Exactly SPEC §6's preview-status server: {"port","type","url","iframeUrl","startedAt"} */
void preview_status_json(const struct preview_entry *e, struct buf *out);
/* Every entry as a JSON array. */
void preview_list_json(struct worker_ctx *w, struct buf *out);

/* GET /debug/connections: ask the coordinator for every worker's tunnels and
 * answer req (this worker's own list when the coordinator does not answer). */
void preview_debug_connections(struct http_request *req);

#endif
