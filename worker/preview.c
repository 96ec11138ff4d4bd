/*
 * preview.c — the worker's copy of the preview registry (see preview.h).
 *
 * A flat array: a host runs a handful of preview servers, so a linear scan is
 * both the simplest and the fastest structure here. Frames to the coordinator
 * are fire-and-forget; when the link is down (coordinator restarting) the local
 * copy still changes, and the re-announce on the next link carries it over.
 */
#include "preview.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/ipc.h"
#include "../common/log.h"
#include "proxy.h"
#include "response.h"

#define CONNS_QUERY_TIMEOUT_S 1.0

struct conns_query {
    struct conns_query *next;
    struct preview_ctx *pv;
    struct http_request *req;
    unsigned q;
    ev_timer timer;
};

struct preview_ctx {
    struct worker_ctx *w;
    struct preview_entry *e;
    size_t n, cap;
    struct conns_query *queries;
    unsigned qseq;
};

int preview_id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n > 0 && n < PREVIEW_ID_MAX;
}

int preview_init(struct worker_ctx *w)
{
    struct preview_ctx *pv = calloc(1, sizeof(*pv));
    if (!pv) return -1;
    pv->w = w;
    w->preview = pv;
    return 0;
}

static void query_free(struct conns_query *cq)
{
    struct preview_ctx *pv = cq->pv;
    for (struct conns_query **pp = &pv->queries; *pp; pp = &(*pp)->next) {
        if (*pp == cq) {
            *pp = cq->next;
            break;
        }
    }
    ev_timer_stop(pv->w->loop, &cq->timer);
    free(cq);
}

void preview_shutdown(struct worker_ctx *w)
{
    struct preview_ctx *pv = w->preview;
    if (!pv) return;
    while (pv->queries) query_free(pv->queries);
    free(pv->e);
    free(pv);
    w->preview = NULL;
}

static struct preview_entry *find(struct preview_ctx *pv, const char *project, const char *user)
{
    for (size_t i = 0; i < pv->n; i++)
        if (strcmp(pv->e[i].project, project) == 0 && strcmp(pv->e[i].user, user) == 0)
            return &pv->e[i];
    return NULL;
}

const struct preview_entry *preview_find(struct worker_ctx *w, const char *project,
                                         const char *user)
{
    return w->preview ? find(w->preview, project, user) : NULL;
}

static struct preview_entry *upsert(struct preview_ctx *pv, const struct preview_entry *e)
{
    struct preview_entry *x = find(pv, e->project, e->user);
    if (!x) {
        if (pv->n == pv->cap) {
            size_t cap = pv->cap ? pv->cap * 2 : 8;
            struct preview_entry *ne = realloc(pv->e, cap * sizeof(*ne));
            if (!ne) return NULL;
            pv->e = ne;
            pv->cap = cap;
        }
        x = &pv->e[pv->n++];
    }
    *x = *e;
    return x;
}

static void key_of(const char *project, const char *user, char *out, size_t len)
{
    snprintf(out, len, "%s_%s", project, user);
}

/* ---- frames to the coordinator ------------------------------------------------- */

static void coord_send(struct worker_ctx *w, uint8_t type, const struct buf *b)
{
    if (w->coord_fd < 0 || buf_failed(b)) return;
    if (ipc_send(w->coord_fd, type, b->data, b->len, -1) < 0)
        log_warn("cannot send a preview frame (type %d) to the coordinator: %s", type,
                 strerror(errno));
}

static void entry_frame(const struct preview_entry *e, struct buf *b, int reannounce)
{
    buf_puts(b, "{\"projectId\":");
    buf_json_str(b, e->project);
    buf_puts(b, ",\"userId\":");
    buf_json_str(b, e->user);
    buf_printf(b, ",\"port\":%d,\"type\":", e->port);
    buf_json_str(b, e->type);
    buf_printf(b, ",\"startedAt\":%lld,\"up\":%s,\"source\":", (long long)e->started_ms,
               e->up ? "true" : "false");
    buf_json_str(b, e->source);
    buf_puts(b, reannounce ? ",\"reannounce\":true}" : "}");
}

static void send_entry(struct worker_ctx *w, uint8_t type, const struct preview_entry *e,
                       int reannounce)
{
    struct buf b;
    buf_init(&b);
    entry_frame(e, &b, reannounce);
    coord_send(w, type, &b);
    buf_free(&b);
}

int preview_set(struct worker_ctx *w, const struct preview_entry *e)
{
    struct preview_ctx *pv = w->preview;
    if (!pv || !upsert(pv, e)) return -1;
    send_entry(w, IPC_PREVIEW_SET, e, 0);
    return 0;
}

int preview_del(struct worker_ctx *w, const char *project, const char *user, const char *reason)
{
    struct preview_ctx *pv = w->preview;
    if (!pv) return 0;
    struct preview_entry *x = find(pv, project, user);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"projectId\":");
    buf_json_str(&b, project);
    buf_puts(&b, ",\"userId\":");
    buf_json_str(&b, user);
    buf_puts(&b, ",\"reason\":");
    buf_json_str(&b, reason);
    buf_puts(&b, "}");
    coord_send(w, IPC_PREVIEW_DEL, &b);
    buf_free(&b);
    if (!x) return 0;
    char key[2 * PREVIEW_ID_MAX + 2];
    key_of(project, user, key, sizeof(key));
    *x = pv->e[--pv->n];
    proxy_close_tunnels(w, key, "preview server unregistered");
    return 1;
}

void preview_mark_down(struct worker_ctx *w, const char *project, const char *user, int port)
{
    struct preview_ctx *pv = w->preview;
    struct preview_entry *x = pv ? find(pv, project, user) : NULL;
    char key[2 * PREVIEW_ID_MAX + 2];
    key_of(project, user, key, sizeof(key));
    if (x && x->port == port && x->up) {
        x->up = 0;
        log_warn("preview %s: connection to port %d refused; marked down until the health check "
                 "sees it again",
                 key, port);
        proxy_close_tunnels(w, key, "preview server refused connections");
    }
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"projectId\":");
    buf_json_str(&b, project);
    buf_puts(&b, ",\"userId\":");
    buf_json_str(&b, user);
    buf_printf(&b, ",\"port\":%d}", port);
    coord_send(w, IPC_PREVIEW_DOWN, &b);
    buf_free(&b);
}

void preview_tunnel_opened(struct worker_ctx *w, const char *id, const char *json)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, json);
    coord_send(w, IPC_TUNNEL_OPEN, &b);
    buf_free(&b);
}

void preview_tunnel_closed(struct worker_ctx *w, const char *id)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"id\":");
    buf_json_str(&b, id);
    buf_puts(&b, "}");
    coord_send(w, IPC_TUNNEL_CLOSE, &b);
    buf_free(&b);
}

static void reannounce_tunnel(struct worker_ctx *w, const char *id, const char *json)
{
    preview_tunnel_opened(w, id, json);
}

void preview_on_link(struct worker_ctx *w)
{
    struct preview_ctx *pv = w->preview;
    if (!pv) return;
    for (size_t i = 0; i < pv->n; i++) send_entry(w, IPC_PREVIEW_SET, &pv->e[i], 1);
    proxy_tunnels_each(w, reannounce_tunnel);
}

/* ---- frames from the coordinator ------------------------------------------------- */

static int entry_from_json(json_t *o, struct preview_entry *e)
{
    memset(e, 0, sizeof(*e));
    const char *p = json_string_value(json_object_get(o, "projectId"));
    const char *u = json_string_value(json_object_get(o, "userId"));
    if (!p || !u || !preview_id_ok(p) || !preview_id_ok(u)) return -1;
    snprintf(e->project, sizeof(e->project), "%s", p);
    snprintf(e->user, sizeof(e->user), "%s", u);
    e->port = (int)json_integer_value(json_object_get(o, "port"));
    const char *t = json_string_value(json_object_get(o, "type"));
    snprintf(e->type, sizeof(e->type), "%s", t ? t : "");
    e->started_ms = (int64_t)json_integer_value(json_object_get(o, "startedAt"));
    e->up = json_is_true(json_object_get(o, "up"));
    const char *s = json_string_value(json_object_get(o, "source"));
    snprintf(e->source, sizeof(e->source), "%s", s ? s : "");
    return 0;
}

static void conns_reply(struct worker_ctx *w, json_t *o, const char *payload, size_t len)
{
    struct preview_ctx *pv = w->preview;
    unsigned q = (unsigned)json_integer_value(json_object_get(o, "q"));
    for (struct conns_query *cq = pv->queries; cq; cq = cq->next) {
        if (cq->q != q) continue;
        struct http_request *req = cq->req;
        req->on_abort = NULL;
        query_free(cq);
        json_object_del(o, "q");
        char *s = json_dumps(o, JSON_COMPACT);
        if (!s) {
            resp_error(req, 500, "INTERNAL", "out of memory");
            return;
        }
        buf_puts(resp_body(req), s);
        free(s);
        resp_send(req, 200, CT_JSON);
        return;
    }
}

void preview_on_frame(struct worker_ctx *w, uint8_t type, const char *payload, size_t len)
{
    struct preview_ctx *pv = w->preview;
    if (!pv) return;
    json_error_t jerr;
    json_t *o = json_loadb(payload, len, 0, &jerr);
    if (!json_is_object(o)) {
        log_warn("unreadable preview frame (type %d) from the coordinator: %s", type, jerr.text);
        json_decref(o);
        return;
    }
    struct preview_entry e;
    char key[2 * PREVIEW_ID_MAX + 2];
    switch (type) {
    case IPC_PREVIEW_STATE: {
        if (entry_from_json(o, &e) < 0) break;
        key_of(e.project, e.user, key, sizeof(key));
        struct preview_entry *x = find(pv, e.project, e.user);
        int was_up = x ? x->up : 0;
        int old_port = x ? x->port : 0;
        upsert(pv, &e);
        if ((was_up && !e.up) || (x && old_port != e.port))
            proxy_close_tunnels(w, key, e.up ? "preview server moved" : "preview server is down");
        break;
    }
    case IPC_PREVIEW_GONE: {
        const char *p = json_string_value(json_object_get(o, "projectId"));
        const char *u = json_string_value(json_object_get(o, "userId"));
        if (!p || !u) break;
        struct preview_entry *x = find(pv, p, u);
        key_of(p, u, key, sizeof(key));
        if (x) *x = pv->e[--pv->n];
        proxy_close_tunnels(w, key, "preview server unregistered");
        break;
    }
    case IPC_CONNS_REPLY:
        conns_reply(w, o, payload, len);
        break;
    case IPC_ROOM_EVENT:
        /* Socket.IO rooms arrive with the chat feature; the contract is the frame. */
        break;
    default:
        break;
    }
    json_decref(o);
}

/* ---- JSON views ------------------------------------------------------------------- */

/* "port":..,"type":..,"url":..,"iframeUrl":..,"startedAt":.. (no braces) */
static void entry_core(const struct preview_entry *e, struct buf *b)
{
    char started[40];
    resp_iso8601(e->started_ms, started, sizeof(started));
    buf_printf(b, "\"port\":%d,\"type\":", e->port);
    buf_json_str(b, e->type);
    buf_printf(b, ",\"url\":\"/preview/%s/%s/\",\"iframeUrl\":\"/preview/%s/%s/\",", e->project,
               e->user, e->project, e->user);
    buf_printf(b, "\"startedAt\":\"%s\"", started);
}

void preview_status_json(const struct preview_entry *e, struct buf *b)
{
    buf_puts(b, "{");
    entry_core(e, b);
    buf_puts(b, "}");
}

void preview_entry_json(const struct preview_entry *e, struct buf *b)
{
    buf_puts(b, "{");
    entry_core(e, b);
    buf_printf(b, ",\"up\":%s,\"projectId\":", e->up ? "true" : "false");
    buf_json_str(b, e->project);
    buf_puts(b, ",\"userId\":");
    buf_json_str(b, e->user);
    buf_puts(b, ",\"source\":");
    buf_json_str(b, e->source);
    buf_puts(b, "}");
}

void preview_list_json(struct worker_ctx *w, struct buf *b)
{
    struct preview_ctx *pv = w->preview;
    buf_puts(b, "[");
    for (size_t i = 0; pv && i < pv->n; i++) {
        if (i) buf_puts(b, ",");
        preview_entry_json(&pv->e[i], b);
    }
    buf_puts(b, "]");
}

/* ---- /debug/connections --------------------------------------------------------- */

static void answer_local(struct http_request *req, const char *why)
{
    struct worker_ctx *w = req->w;
    struct buf conns;
    buf_init(&conns);
    int n = proxy_tunnels_json(w, &conns);
    struct buf *b = resp_body(req);
    buf_printf(b, "{\"totalConnections\":%d,\"owners\":[", n);
    /* owners of this worker's tunnels, distinct */
    json_error_t jerr;
    struct buf arr;
    buf_init(&arr);
    buf_puts(&arr, "[");
    if (conns.len) buf_append(&arr, conns.data, conns.len);
    buf_puts(&arr, "]");
    json_t *list = buf_failed(&arr) ? NULL : json_loadb(arr.data, arr.len, 0, &jerr);
    int first = 1;
    size_t i;
    json_t *c;
    json_t *seen = json_object();
    json_array_foreach(list, i, c)
    {
        const char *o = json_string_value(json_object_get(c, "owner"));
        if (!o || json_object_get(seen, o)) continue;
        json_object_set_new(seen, o, json_true());
        if (!first) buf_puts(b, ",");
        buf_json_str(b, o);
        first = 0;
    }
    json_decref(seen);
    json_decref(list);
    buf_puts(b, "],\"connections\":[");
    if (conns.len) buf_append(b, conns.data, conns.len);
    buf_puts(b, "],\"partial\":true,\"note\":");
    buf_json_str(b, why);
    buf_puts(b, "}");
    buf_free(&arr);
    buf_free(&conns);
    resp_send(req, 200, CT_JSON);
}

static void on_query_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conns_query *cq = t->data;
    struct http_request *req = cq->req;
    req->on_abort = NULL;
    query_free(cq);
    answer_local(req, "the coordinator did not answer within 1s; this worker's connections only");
}

static void on_query_abort(struct http_request *req, void *arg)
{
    query_free(arg);
}

void preview_debug_connections(struct http_request *req)
{
    struct worker_ctx *w = req->w;
    struct preview_ctx *pv = w->preview;
    if (!pv || w->coord_fd < 0) {
        answer_local(req, "the coordinator is not linked; this worker's connections only");
        return;
    }
    struct conns_query *cq = calloc(1, sizeof(*cq));
    if (!cq) {
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    cq->pv = pv;
    cq->req = req;
    cq->q = ++pv->qseq;
    char payload[64];
    int n = snprintf(payload, sizeof(payload), "{\"q\":%u}", cq->q);
    if (ipc_send(w->coord_fd, IPC_CONNS_QUERY, payload, (size_t)n, -1) < 0) {
        free(cq);
        answer_local(req, "the coordinator link is busy; this worker's connections only");
        return;
    }
    cq->next = pv->queries;
    pv->queries = cq;
    ev_timer_init(&cq->timer, on_query_timeout, CONNS_QUERY_TIMEOUT_S, 0.);
    cq->timer.data = cq;
    ev_timer_start(w->loop, &cq->timer);
    req->on_abort = on_query_abort;
    req->abort_arg = cq;
}
