/*
 * handlers.h — every request handler of the worker, by feature; routes.c maps
 * them to methods and paths.
 */
#ifndef SVCD_HANDLERS_H
#define SVCD_HANDLERS_H

#include "http_request.h"

/* handlers_health.c — SPEC §4 */
void handle_health(struct http_request *req);
void handle_api_health(struct http_request *req);
void handle_api_health_detailed(struct http_request *req);
void handle_metrics(struct http_request *req);

#endif
