/*
 * routes.c — the route table: what the worker serves, in one place.
 *
 * One row per method and path pattern (syntax in router.h). Features add their
 * rows here; order matters only where patterns overlap (first match wins).
 */
#include <http_parser.h>

#include "handlers.h"
#include "handlers_preview.h"
#include "router.h"
#include "sio.h"

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

    /* chat over Socket.IO (SPEC §7) */
    {ROUTE_ANY_METHOD, "/socket.io/*", handle_socketio, 0},
    {HTTP_GET, "/api/rooms/:room/messages", handle_room_messages, 0},

    /* reverse proxy and preview servers (SPEC §6) */
    {ROUTE_ANY_METHOD, "/preview/:projectId/:userId/*", handle_preview_proxy, ROUTE_STREAM},
    {HTTP_GET, "/api/preview-status/:projectId/:userId", handle_preview_status, 0},
    {HTTP_GET, "/api/preview-servers", handle_preview_list, ROUTE_ADMIN},
    {HTTP_POST, "/api/preview-servers", handle_preview_register, ROUTE_ADMIN},
    {HTTP_DELETE, "/api/preview-servers/:projectId/:userId", handle_preview_unregister,
     ROUTE_ADMIN},
    {HTTP_GET, "/debug/connections", handle_debug_connections, ROUTE_ADMIN},
    /* proxy.routes prefixes: whatever no row above serves (keeps their 404/405 exact) */
    {ROUTE_ANY_METHOD, "/*", handle_proxy_route, ROUTE_STREAM | ROUTE_FALLBACK},
};

const size_t route_count = sizeof(route_table) / sizeof(route_table[0]);
