/*
 * handlers_preview.c — proxy and preview-server endpoints (SPEC §6, seeds 001/002).
 *
 * The proxying itself is proxy.c; this file decides where a request goes and
 * what a client sees when the answer is "not there right now": a browser gets
 * a 503 "starting…" page that polls preview-status and reloads itself when the
 * server is back, an API client gets the JSON error. That page replaces the
 * seeds' stream of "proxy error" lines and the iframe that never recovers.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "handlers_preview.h"
#include "preview.h"
#include "proxy.h"
#include "response.h"

#define CT_HTML "text/html; charset=utf-8"

/* ---- "starting…" page ---------------------------------------------------------- */

static int wants_html(const struct http_request *req)
{
    const char *accept = http_request_header(req, "Accept");
    return accept && strstr(accept, "text/html") != NULL;
}

/* 503 for a preview that is not registered or not answering. */
static void preview_unavailable(struct http_request *req, const char *project, const char *user,
                                const struct preview_entry *e)
{
    char why[256];
    if (!e)
        snprintf(why, sizeof(why), "no preview server is registered for %s/%s", project, user);
    else
        snprintf(why, sizeof(why), "the preview server for %s/%s (port %d) is not answering",
                 project, user, e->port);
    resp_header(req, "Retry-After", "2");
    resp_header(req, "Cache-Control", "no-store");
    if (!wants_html(req)) {
        resp_error(req, 503, "PREVIEW_UNAVAILABLE",
                   "%s; it is marked available again as soon as its port answers (poll "
                   "/api/preview-status/%s/%s)",
                   why, project, user);
        return;
    }
    struct buf *b = resp_body(req);
    buf_reset(b);
    buf_printf(
        b,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<title>Starting preview…</title>\n"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
        "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\n"
        "<style>body{font:16px system-ui,sans-serif;display:flex;align-items:center;"
        "justify-content:center;height:100vh;margin:0;color:#333;background:#fafafa}"
        ".box{text-align:center}.spin{width:28px;height:28px;border:3px solid #ddd;"
        "border-top-color:#666;border-radius:50%%;animation:s 1s linear infinite;"
        "margin:0 auto 16px}@keyframes s{to{transform:rotate(360deg)}}"
        "small{color:#888}</style></head>\n<body><div class=\"box\"><div class=\"spin\">"
        "</div><h1 id=\"svcd-preview-starting\">Starting preview…</h1>\n"
        "<p>The development server for <b>%s</b> / <b>%s</b> is not running yet.</p>\n"
        "<p><small>This page reloads itself as soon as it answers.</small></p></div>\n"
        "<script>\n(function(){var url='/api/preview-status/%s/%s';\n"
        "function poll(){fetch(url,{cache:'no-store'}).then(function(r){return r.json()})"
        ".then(function(s){if(s&&s.available){location.reload();}else{setTimeout(poll,1000);}"
        "}).catch(function(){setTimeout(poll,2000);});}\nsetTimeout(poll,1000);})();\n"
        "</script></body></html>\n",
        project, user, project, user);
    resp_send(req, 503, CT_HTML);
}

/* The {projectId, userId} of the path, checked; false when it answered 400. */
static bool path_ids(struct http_request *req, const char **project, const char **user)
{
    *project = http_request_param(req, "projectId");
    *user = http_request_param(req, "userId");
    if (*project && *user && preview_id_ok(*project) && preview_id_ok(*user)) return true;
    resp_error(req, 400, "BAD_REQUEST",
               "projectId and userId must be 1-127 characters of A-Z a-z 0-9 . _ -");
    return false;
}

/* ---- /preview/:projectId/:userId/... -------------------------------------------- */

static void preview_refused(struct http_request *req, const struct proxy_target *t)
{
    int port = ntohs(((const struct sockaddr_in *)&t->addr)->sin_port);
    preview_mark_down(req->w, t->project, t->user, port);
    preview_unavailable(req, t->project, t->user, preview_find(req->w, t->project, t->user));
}

void handle_preview_proxy(struct http_request *req)
{
    const char *project, *user;
    if (!path_ids(req, &project, &user)) return;
    const struct preview_entry *e = preview_find(req->w, project, user);
    if (!e || !e->up) {
        preview_unavailable(req, project, user, e);
        return;
    }
    struct proxy_target t;
    memset(&t, 0, sizeof(t));
    struct sockaddr_in *sin = (struct sockaddr_in *)&t.addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)e->port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t.addrlen = sizeof(*sin);
    snprintf(t.hostport, sizeof(t.hostport), "127.0.0.1:%d", e->port);
    snprintf(t.name, sizeof(t.name), "preview %s_%s (port %d)", project, user, e->port);
    snprintf(t.track_key, sizeof(t.track_key), "%s_%s", project, user);
    snprintf(t.owner, sizeof(t.owner), "%s", user);
    snprintf(t.project, sizeof(t.project), "%s", project);
    snprintf(t.user, sizeof(t.user), "%s", user);
    t.on_refused = preview_refused;
    proxy_forward(req, &t);
}

/* ---- proxy.routes ------------------------------------------------------------------ */

void handle_proxy_route(struct http_request *req)
{
    const struct proxy_target *t = proxy_route_for(req->w, req->path);
    if (!t) {
        resp_error(req, 404, "NOT_FOUND", "no route for %s %s", req->method_str, req->path);
        return;
    }
    const char *err = "";
    if (!proxy_route_ok(req->w, t, &err)) {
        resp_error(req, 502, "UPSTREAM_UNAVAILABLE", "%s: %s", t->name, err);
        return;
    }
    proxy_forward(req, t);
}

/* ---- preview registry API --------------------------------------------------------- */

void handle_preview_status(struct http_request *req)
{
    const char *project, *user;
    if (!path_ids(req, &project, &user)) return;
    const struct preview_entry *e = preview_find(req->w, project, user);
    struct buf *b = resp_body(req);
    buf_printf(b, "{\"available\":%s,\"server\":", e && e->up ? "true" : "false");
    if (e)
        preview_status_json(e, b);
    else
        buf_puts(b, "null");
    buf_puts(b, "}");
    resp_header(req, "Cache-Control", "no-store");
    resp_send(req, 200, CT_JSON);
}

void handle_preview_register(struct http_request *req)
{
    json_error_t jerr;
    json_t *o = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        resp_error(req, 400, "BAD_REQUEST",
                   "body must be a JSON object {\"projectId\",\"userId\",\"port\",\"type\"}: %s",
                   jerr.text);
        return;
    }
    const char *project = json_string_value(json_object_get(o, "projectId"));
    const char *user = json_string_value(json_object_get(o, "userId"));
    json_t *jport = json_object_get(o, "port");
    const char *type = json_string_value(json_object_get(o, "type"));
    char msg[256] = "";
    if (!project || !preview_id_ok(project))
        snprintf(msg, sizeof(msg),
                 "projectId must be a string of 1-127 characters of "
                 "A-Z a-z 0-9 . _ -");
    else if (!user || !preview_id_ok(user))
        snprintf(msg, sizeof(msg),
                 "userId must be a string of 1-127 characters of "
                 "A-Z a-z 0-9 . _ -");
    else if (!json_is_integer(jport) || json_integer_value(jport) < 1 ||
             json_integer_value(jport) > 65535)
        snprintf(msg, sizeof(msg),
                 "port must be an integer 1-65535 (the preview server's "
                 "port on 127.0.0.1)");
    else if (json_object_get(o, "type") && !type)
        snprintf(msg, sizeof(msg), "type must be a string, e.g. \"vite\"");
    int port = msg[0] ? 0 : (int)json_integer_value(jport);
    for (int i = 0; !msg[0] && i < req->w->cfg->nlisten; i++)
        if (req->w->cfg->listen[i].port == port)
            snprintf(msg, sizeof(msg),
                     "port %d is svcd's own listener (listen[%d]); a preview "
                     "must be another server",
                     port, i);
    if (msg[0]) {
        json_decref(o);
        resp_error(req, 400, "BAD_REQUEST", "%s", msg);
        return;
    }
    struct preview_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.project, sizeof(e.project), "%s", project);
    snprintf(e.user, sizeof(e.user), "%s", user);
    snprintf(e.type, sizeof(e.type), "%s", type ? type : "vite");
    e.port = port;
    e.started_ms = now_wall_ms();
    e.up = 1; /* until the coordinator's first check says otherwise */
    snprintf(e.source, sizeof(e.source), "api");
    json_decref(o);
    int existed = preview_find(req->w, e.project, e.user) != NULL;
    if (preview_set(req->w, &e) < 0) {
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    log_info("preview %s_%s registered on port %d (%s) through the API", e.project, e.user, port,
             e.type);
    struct buf *b = resp_body(req);
    buf_printf(b, "{\"key\":\"%s_%s\",\"server\":", e.project, e.user);
    preview_entry_json(&e, b);
    buf_puts(b, "}");
    resp_header(req, "Location", "/api/preview-status/%s/%s", e.project, e.user);
    resp_send(req, existed ? 200 : 201, CT_JSON);
}

void handle_preview_unregister(struct http_request *req)
{
    const char *project, *user;
    if (!path_ids(req, &project, &user)) return;
    if (!preview_del(req->w, project, user, "unregistered through the API")) {
        resp_error(req, 404, "NOT_FOUND", "no preview server is registered for %s/%s", project,
                   user);
        return;
    }
    log_info("preview %s_%s unregistered through the API", project, user);
    buf_printf(resp_body(req), "{\"removed\":true,\"key\":\"%s_%s\"}", project, user);
    resp_send(req, 200, CT_JSON);
}

void handle_preview_list(struct http_request *req)
{
    struct buf *b = resp_body(req);
    buf_puts(b, "{\"servers\":");
    preview_list_json(req->w, b);
    buf_puts(b, "}");
    resp_send(req, 200, CT_JSON);
}

void handle_debug_connections(struct http_request *req)
{
    preview_debug_connections(req);
}

/* ---- /metrics ---------------------------------------------------------------------- */

static void help(struct buf *b, const char *name, const char *type, const char *text)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

void handlers_preview_metrics(struct worker_ctx *w, struct buf *b)
{
    struct buf list;
    buf_init(&list);
    preview_list_json(w, &list);
    json_error_t jerr;
    json_t *arr = buf_failed(&list) ? NULL : json_loadb(list.data, list.len, 0, &jerr);
    help(b, "svcd_preview_up", "gauge",
         "1 while the preview server answers its health check (registry of the host).");
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        buf_printf(b, "svcd_preview_up{project=\"%s\",user=\"%s\",port=\"%lld\"} %d\n",
                   json_string_value(json_object_get(e, "projectId")),
                   json_string_value(json_object_get(e, "userId")),
                   json_integer_value(json_object_get(e, "port")),
                   json_is_true(json_object_get(e, "up")) ? 1 : 0);
    }
    json_decref(arr);
    buf_free(&list);
    struct proxy_stats st;
    proxy_get_stats(w, &st);
    help(b, "svcd_proxy_requests_total", "counter", "Proxied requests, answering worker.");
    buf_printf(b, "svcd_proxy_requests_total{worker=\"%d\"} %llu\n", w->index, st.requests);
    help(b, "svcd_proxy_upstream_errors_total", "counter",
         "Upstream failures (refused, reset, timeout, invalid), answering worker.");
    buf_printf(b, "svcd_proxy_upstream_errors_total{worker=\"%d\"} %llu\n", w->index,
               st.upstream_errors);
    help(b, "svcd_proxy_upstream_connects_total", "counter",
         "New upstream connections (the rest reused the keep-alive pool), answering worker.");
    buf_printf(b, "svcd_proxy_upstream_connects_total{worker=\"%d\"} %llu\n", w->index,
               st.upstream_connects);
    help(b, "svcd_proxy_pool_reused_total", "counter",
         "Requests sent on a pooled upstream connection, answering worker.");
    buf_printf(b, "svcd_proxy_pool_reused_total{worker=\"%d\"} %llu\n", w->index, st.pool_reused);
    help(b, "svcd_proxy_pool_idle", "gauge", "Idle pooled upstream connections, answering worker.");
    buf_printf(b, "svcd_proxy_pool_idle{worker=\"%d\"} %llu\n", w->index, st.pool_idle);
    help(b, "svcd_proxy_websockets_open", "gauge",
         "Open proxied WebSocket tunnels, answering worker.");
    buf_printf(b, "svcd_proxy_websockets_open{worker=\"%d\"} %llu\n", w->index, st.tunnels_open);
}
