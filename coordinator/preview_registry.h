/*
 * preview_registry.h — the host's preview-server registry and its health checks.
 *
 * Lives in the coordinator: one registry per host, keyed projectId_userId ->
 * {port, type, startedAt, up}, filled by workers (REST API) and the master
 * (managed apps), broadcast to every worker, which keeps a copy. One central
 * active check (a TCP connect every proxy.health.interval, proxy.health.timeout)
 * plus passive marks from workers that saw ECONNREFUSED decide `up`; each
 * change is broadcast and emitted as a room event (previewServerStopped /
 * previewServerStarted to "project-<projectId>"). It also keeps the list of
 * proxied WebSocket connections every worker reports, for /debug/connections.
 * Nothing here is durable: after a restart, workers re-announce it all.
 */
#ifndef SVCD_PREVIEW_REGISTRY_H
#define SVCD_PREVIEW_REGISTRY_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"

struct preview_registry;

struct preg_hooks {
    void *arg;
    /* send one frame to every linked worker */
    void (*broadcast)(void *arg, uint8_t type, const void *payload, size_t len);
};

struct preview_registry *preg_create(struct ev_loop *loop, const struct svcd_config *cfg,
                                     const struct preg_hooks *hooks);
void preg_destroy(struct preview_registry *r);

/* A frame of types 32..47 from a worker link (`slot` its scoreboard slot) or
 * from the master (slot -1); replies go to `fd`. */
void preg_on_frame(struct preview_registry *r, int fd, int slot, uint8_t type, const char *payload,
                   size_t len);
/* A worker link was added: send it the whole table. */
void preg_on_link(struct preview_registry *r, int fd);
/* A worker link closed: its tunnels are gone with it. */
void preg_link_closed(struct preview_registry *r, int slot);

#endif
