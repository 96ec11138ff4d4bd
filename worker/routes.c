/*
 * routes.c — the route table: what the worker serves, in one place.
 *
 * One row per method and path pattern (syntax in router.h). Features add their
 * rows here; order matters only where patterns overlap (first match wins).
 */
#include <http_parser.h>

#include "handlers.h"
#include "router.h"

const struct route route_table[] = {
    /* health and observability (SPEC §4) */
    {HTTP_GET, "/health", handle_health, 0},
    {HTTP_GET, "/api/health", handle_api_health, 0},
    {HTTP_GET, "/api/health/detailed", handle_api_health_detailed, ROUTE_ADMIN},
    {HTTP_GET, "/metrics", handle_metrics, ROUTE_ADMIN},

    /* seat booking (SPEC §5) */
    {HTTP_POST, "/api/events", handle_event_create, ROUTE_ADMIN},
    {HTTP_GET, "/api/events/:id/seats", handle_event_seats, 0},
    {HTTP_POST, "/api/seats/book", handle_book, 0},
    {HTTP_GET, "/api/seats/booking-status/:jobId", handle_booking_status, 0},
};

const size_t route_count = sizeof(route_table) / sizeof(route_table[0]);
