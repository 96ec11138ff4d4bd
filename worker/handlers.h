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

/* handlers_booking.c — SPEC §5 */
void handle_event_create(struct http_request *req);
void handle_event_seats(struct http_request *req);
void handle_book(struct http_request *req);
void handle_booking_status(struct http_request *req);

#endif
