/*
 * handlers_preview.h — the proxy and preview endpoints (SPEC §6); routes.c maps them.
 */
#ifndef SVCD_HANDLERS_PREVIEW_H
#define SVCD_HANDLERS_PREVIEW_H

#include "../common/buf.h"
#include "http_request.h"
#include "worker_ctx.h"

/* ROUTE_STREAM: /preview/:projectId/:userId/... -> the registered preview server */
void handle_preview_proxy(struct http_request *req);
/* ROUTE_STREAM | ROUTE_FALLBACK: proxy.routes prefixes; 404 for anything else */
void handle_proxy_route(struct http_request *req);

void handle_preview_status(struct http_request *req);     /* GET /api/preview-status/:p/:u */
void handle_preview_register(struct http_request *req);   /* POST /api/preview-servers */
void handle_preview_unregister(struct http_request *req); /* DELETE .../:projectId/:userId */
void handle_preview_list(struct http_request *req);       /* GET /api/preview-servers */
void handle_debug_connections(struct http_request *req);  /* GET /debug/connections */

/* Prometheus lines for /metrics: every preview's up state (the registry copy) and
 * the answering worker's proxy counters. */
void handlers_preview_metrics(struct worker_ctx *w, struct buf *b);

#endif
