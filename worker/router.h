/*
 * router.h — the route table and how a request finds its handler.
 *
 * Routes are data (nginx's rule: directives as tables, not if-chains): one row
 * per method + path pattern, in worker/routes.c. Patterns are literal segments,
 * ":name" segments (one non-empty segment, available as a parameter) and a final
 * "*" segment that matches the rest of the path, empty included (the pattern
 * /preview/:projectId/:userId/ followed by "*" matches "/preview/p/u",
 * "/preview/p/u/" and "/preview/p/u/src/main.js"). The first matching row wins, so list literal
 * routes before parameterised ones that overlap them.
 */
#ifndef SVCD_ROUTER_H
#define SVCD_ROUTER_H

#include <stddef.h>

#include "http_request.h"

#define ROUTE_ANY_METHOD (-1)

enum route_flags {
    ROUTE_ADMIN = 1 << 0, /* loopback peer or admin bearer token, else 403 */
    /* Dispatched at the end of the request head, body unread: the handler streams
     * it through a connection takeover (http_conn.h), e.g. the reverse proxy. */
    ROUTE_STREAM = 1 << 1,
    /* Tried only when no ordinary row matches the path (so 404/405 of svcd's own
     * endpoints stay exact): catch-alls such as proxy.routes prefixes. */
    ROUTE_FALLBACK = 1 << 2,
};

/* A handler answers through response.h, now or later (asynchronously). */
typedef void (*route_handler_fn)(struct http_request *req);

struct route {
    int method;          /* enum http_method, or ROUTE_ANY_METHOD; GET rows also serve HEAD */
    const char *pattern; /* "/api/events/:id/seats" */
    route_handler_fn handler;
    unsigned flags; /* enum route_flags */
};

/* worker/routes.c */
extern const struct route route_table[];
extern const size_t route_count;

/* Find the route for req (404/405/403 answered here) and call its handler. */
void router_dispatch(struct http_request *req);

/* The row router_dispatch would call for req (method and path), or NULL when it
 * would answer 404/405 itself. No side effect on req. */
const struct route *router_lookup(const struct http_request *req);

/* Does `path` match `pattern`? On a match, and when `req` is not NULL, its
 * parameters are stored in req->params. */
int router_match(const char *pattern, const char *path, struct http_request *req);

#endif
