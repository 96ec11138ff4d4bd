/*
 * router.c — matching a request against the route table (see router.h).
 *
 * Matching walks pattern and path segment by segment without allocating;
 * parameter values are copied into req->scratch only for the row being tried.
 * A path that matches some row but not for this method gets 405 with an
 * Allow header listing the methods that would have matched.
 */
#include "router.h"

#include <http_parser.h>
#include <stdint.h>
#include <string.h>

#include "../common/log.h"
#include "admin.h"
#include "response.h"

static int add_param(struct http_request *req, const char *name, size_t name_len, const char *val,
                     size_t val_len)
{
    if (req->nparams == HTTP_MAX_PARAMS) return -1;
    /* "name\0value\0"; pointers are fixed up once the whole match succeeded */
    struct http_param *p = &req->params[req->nparams++];
    p->name = (const char *)(uintptr_t)req->scratch.len;
    buf_append(&req->scratch, name, name_len);
    buf_append(&req->scratch, "", 1);
    p->value = (const char *)(uintptr_t)req->scratch.len;
    buf_append(&req->scratch, val, val_len);
    buf_append(&req->scratch, "", 1);
    return buf_failed(&req->scratch) ? -1 : 0;
}

int router_match(const char *pattern, const char *path, struct http_request *req)
{
    if (req) {
        req->nparams = 0;
        buf_reset(&req->scratch);
    }
    const char *p = pattern, *s = path;
    for (;;) {
        if (*p == '\0') {
            if (*s != '\0') return 0;
            break;
        }
        /* both stand on a '/' */
        if (*p != '/' || *s != '/') {
            /* a final "/" + "*" also matches the bare prefix: "/x/" "*" ~ "/x" */
            if (p[0] == '/' && p[1] == '*' && p[2] == '\0' && *s == '\0') {
                if (req && add_param(req, "*", 1, "", 0) < 0) return 0;
                break;
            }
            return 0;
        }
        p++, s++;
        if (p[0] == '*' && p[1] == '\0') {
            if (req && add_param(req, "*", 1, s, strlen(s)) < 0) return 0;
            break;
        }
        const char *pe = strchr(p, '/');
        if (!pe) pe = p + strlen(p);
        const char *se = strchr(s, '/');
        if (!se) se = s + strlen(s);
        if (*p == ':') {
            if (se == s) return 0; /* parameters are never empty */
            if (req && add_param(req, p + 1, (size_t)(pe - p - 1), s, (size_t)(se - s)) < 0)
                return 0;
        } else if (pe - p != se - s || memcmp(p, s, (size_t)(pe - p)) != 0) {
            return 0;
        }
        p = pe, s = se;
    }
    if (req) {
        for (int i = 0; i < req->nparams; i++) {
            req->params[i].name = req->scratch.data + (uintptr_t)req->params[i].name;
            req->params[i].value = req->scratch.data + (uintptr_t)req->params[i].value;
        }
    }
    return 1;
}

static int method_matches(const struct route *r, int method)
{
    if (r->method == ROUTE_ANY_METHOD || r->method == method) return 1;
    return r->method == HTTP_GET && method == HTTP_HEAD;
}

/* Call r's handler for req (parameters kept, admin rows checked). */
static void route_call(struct http_request *req, const struct route *r)
{
    router_match(r->pattern, req->path, req); /* again, now keeping the parameters */
    req->route_flags = r->flags;
    if ((r->flags & ROUTE_ADMIN) && !http_is_admin(req)) {
        resp_error(req, 403, "FORBIDDEN",
                   "%s is an admin endpoint: call it from loopback or send "
                   "'Authorization: Bearer <auth.admin_token>'",
                   req->path);
        return;
    }
    r->handler(req);
}

/* Ordinary rows first; ROUTE_FALLBACK rows only when no ordinary row matched
 * the path at all (whatever the method). */
const struct route *router_lookup(const struct http_request *req)
{
    int path_seen = 0;
    for (size_t i = 0; i < route_count; i++) {
        const struct route *r = &route_table[i];
        if ((r->flags & ROUTE_FALLBACK) || !router_match(r->pattern, req->path, NULL)) continue;
        path_seen = 1;
        if (method_matches(r, req->method)) return r;
    }
    if (path_seen) return NULL;
    for (size_t i = 0; i < route_count; i++) {
        const struct route *r = &route_table[i];
        if ((r->flags & ROUTE_FALLBACK) && method_matches(r, req->method) &&
            router_match(r->pattern, req->path, NULL))
            return r;
    }
    return NULL;
}

void router_dispatch(struct http_request *req)
{
    uint64_t allow = 0;
    for (size_t i = 0; i < route_count; i++) {
        const struct route *r = &route_table[i];
        if (r->flags & ROUTE_FALLBACK) continue;
        if (!router_match(r->pattern, req->path, NULL)) continue;
        if (!method_matches(r, req->method)) {
            if (r->method >= 0 && r->method < 64) allow |= (uint64_t)1 << r->method;
            if (r->method == HTTP_GET) allow |= (uint64_t)1 << HTTP_HEAD;
            continue;
        }
        route_call(req, r);
        return;
    }
    if (allow) {
        struct buf list;
        buf_init(&list);
        for (int m = 0; m < 64; m++) {
            if (!(allow & ((uint64_t)1 << m))) continue;
            if (list.len) buf_puts(&list, ", ");
            buf_puts(&list, http_method_str((enum http_method)m));
        }
        resp_header(req, "Allow", "%s", list.data ? list.data : "");
        resp_error(req, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on %s; allowed: %s",
                   req->method_str, req->path, list.data ? list.data : "");
        buf_free(&list);
        return;
    }
    const struct route *fb = router_lookup(req); /* a ROUTE_FALLBACK row, if any */
    if (fb) {
        route_call(req, fb);
        return;
    }
    resp_error(req, 404, "NOT_FOUND", "no route for %s %s", req->method_str, req->path);
}
