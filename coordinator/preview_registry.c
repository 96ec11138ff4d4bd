/*
 * preview_registry.c — preview registry, health checks, room events, tunnel list.
 *
 * Why central: the seeds ran one health-check loop per process and each
 * process had its own idea of which preview was alive; here one loop probes
 * each port once per interval and every worker learns the verdict at once.
 * A probe is a non-blocking TCP connect on the coordinator's libev loop, so a
 * hanging port costs a timer, never a blocked loop.
 */
#include "preview_registry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/buf.h"
#include "../common/ipc.h"
#include "../common/log.h"
#include "../common/scoreboard.h"

#define ID_MAX      128
#define MAX_TUNNELS 100000

struct entry {
    struct preview_registry *r;
    char project[ID_MAX], user[ID_MAX];
    int port;
    char type[32];
    int64_t started_ms;
    int up;
    char source[96];
    /* probe in flight */
    int pfd;
    ev_io pio;
    ev_timer ptimer;
};

struct tunnel {
    char id[64];
    int slot;
    char owner[128];
    char *json;
};

struct preview_registry {
    struct ev_loop *loop;
    const struct svcd_config *cfg;
    struct preg_hooks hooks;
    struct entry **e;
    size_t n, cap;
    struct tunnel *t;
    size_t nt, tcap;
    ev_timer tick;
};

static void key_of(const struct entry *e, char *out, size_t len)
{
    snprintf(out, len, "%s_%s", e->project, e->user);
}

static struct entry *find(struct preview_registry *r, const char *project, const char *user)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->e[i]->project, project) == 0 && strcmp(r->e[i]->user, user) == 0)
            return r->e[i];
    return NULL;
}

/* ---- frames out ------------------------------------------------------------------ */

static void entry_json(const struct entry *e, struct buf *b)
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
    buf_puts(b, "}");
}

static void broadcast_buf(struct preview_registry *r, uint8_t type, struct buf *b)
{
    if (!buf_failed(b)) r->hooks.broadcast(r->hooks.arg, type, b->data, b->len);
}

static void broadcast_state(struct preview_registry *r, const struct entry *e)
{
    struct buf b;
    buf_init(&b);
    entry_json(e, &b);
    broadcast_buf(r, IPC_PREVIEW_STATE, &b);
    buf_free(&b);
}

/*
 * A Socket.IO room event. The chat feature will deliver IPC_ROOM_EVENT to the
 * room's sockets on every worker; the contract (room, event name, data) is
 * fixed here and logged so operators see it today.
 */
static void emit_event(struct preview_registry *r, const struct entry *e, const char *event,
                       const char *message)
{
    char key[2 * ID_MAX + 2];
    key_of(e, key, sizeof(key));
    struct buf data;
    buf_init(&data);
    buf_puts(&data, "{\"serverKey\":");
    buf_json_str(&data, key);
    buf_puts(&data, ",\"projectId\":");
    buf_json_str(&data, e->project);
    buf_puts(&data, ",\"userId\":");
    buf_json_str(&data, e->user);
    buf_printf(&data, ",\"port\":%d,\"type\":", e->port);
    buf_json_str(&data, e->type);
    buf_printf(&data, ",\"url\":\"/preview/%s/%s/\",\"message\":", e->project, e->user);
    buf_json_str(&data, message);
    buf_puts(&data, "}");
    char room[ID_MAX + 16];
    snprintf(room, sizeof(room), "project-%s", e->project);
    log_info("event %s -> room %s: %s", event, room, data.data ? data.data : "");
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"room\":");
    buf_json_str(&b, room);
    buf_puts(&b, ",\"event\":");
    buf_json_str(&b, event);
    buf_puts(&b, ",\"data\":");
    if (data.data) buf_append(&b, data.data, data.len);
    buf_puts(&b, "}");
    broadcast_buf(r, IPC_ROOM_EVENT, &b);
    buf_free(&b);
    buf_free(&data);
}

static void set_up(struct preview_registry *r, struct entry *e, int up, const char *why)
{
    if (e->up == up) return;
    e->up = up;
    char key[2 * ID_MAX + 2];
    key_of(e, key, sizeof(key));
    if (up)
        log_info("preview %s (port %d) is up again: %s", key, e->port, why);
    else
        log_warn("preview %s (port %d) is down: %s", key, e->port, why);
    broadcast_state(r, e);
    emit_event(r, e, up ? "previewServerStarted" : "previewServerStopped",
               up ? "Dev server is running" : "Dev server has stopped");
}

/* ---- health probes ---------------------------------------------------------------- */

static void probe_stop(struct entry *e)
{
    if (e->pfd < 0) return;
    ev_io_stop(e->r->loop, &e->pio);
    ev_timer_stop(e->r->loop, &e->ptimer);
    close(e->pfd);
    e->pfd = -1;
}

static void probe_done(struct entry *e, int err)
{
    probe_stop(e);
    char why[160];
    if (err == 0)
        snprintf(why, sizeof(why), "port %d accepts connections", e->port);
    else if (err == ETIMEDOUT)
        snprintf(why, sizeof(why),
                 "no TCP connect to port %d within %llu ms (proxy.health.timeout)", e->port,
                 (unsigned long long)e->r->cfg->proxy.health_timeout_ms);
    else
        snprintf(why, sizeof(why), "TCP connect to port %d: %s", e->port, strerror(err));
    set_up(e->r, e, err == 0, why);
}

static void on_probe_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct entry *e = io->data;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(e->pfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    probe_done(e, err);
}

static void on_probe_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    probe_done(t->data, ETIMEDOUT);
}

static void probe_start(struct entry *e)
{
    if (e->pfd >= 0) return;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)e->port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    e->pfd = fd;
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0 || errno != EINPROGRESS) {
        probe_done(e, rc == 0 ? 0 : errno);
        return;
    }
    ev_io_init(&e->pio, on_probe_io, fd, EV_WRITE);
    e->pio.data = e;
    ev_io_start(e->r->loop, &e->pio);
    ev_timer_init(&e->ptimer, on_probe_timeout, (double)e->r->cfg->proxy.health_timeout_ms / 1000.0,
                  0.);
    e->ptimer.data = e;
    ev_timer_start(e->r->loop, &e->ptimer);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct preview_registry *r = t->data;
    for (size_t i = 0; i < r->n; i++) probe_start(r->e[i]);
}

/* ---- registry changes ------------------------------------------------------------- */

static void entry_remove(struct preview_registry *r, struct entry *e)
{
    probe_stop(e);
    for (size_t i = 0; i < r->n; i++) {
        if (r->e[i] == e) {
            r->e[i] = r->e[--r->n];
            break;
        }
    }
    free(e);
}

static void on_set(struct preview_registry *r, json_t *o)
{
    const char *p = json_string_value(json_object_get(o, "projectId"));
    const char *u = json_string_value(json_object_get(o, "userId"));
    int port = (int)json_integer_value(json_object_get(o, "port"));
    if (!p || !u || !*p || !*u || strlen(p) >= ID_MAX || strlen(u) >= ID_MAX || port < 1 ||
        port > 65535)
        return;
    int reannounce = json_is_true(json_object_get(o, "reannounce"));
    json_t *jup = json_object_get(o, "up");
    struct entry *e = find(r, p, u);
    int fresh = !e;
    if (fresh) {
        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 8;
            struct entry **ne = realloc(r->e, cap * sizeof(*ne));
            if (!ne) return;
            r->e = ne;
            r->cap = cap;
        }
        e = calloc(1, sizeof(*e));
        if (!e) return;
        e->r = r;
        e->pfd = -1;
        snprintf(e->project, sizeof(e->project), "%s", p);
        snprintf(e->user, sizeof(e->user), "%s", u);
        r->e[r->n++] = e;
        e->up = jup ? json_is_true(jup) : 1;
    } else if (reannounce) {
        return; /* another worker announced it already; the coordinator's view wins */
    }
    int moved = !fresh && e->port != port;
    if (moved) probe_stop(e);
    e->port = port;
    const char *type = json_string_value(json_object_get(o, "type"));
    snprintf(e->type, sizeof(e->type), "%s", type ? type : "");
    const char *source = json_string_value(json_object_get(o, "source"));
    snprintf(e->source, sizeof(e->source), "%s", source ? source : "");
    int64_t started = (int64_t)json_integer_value(json_object_get(o, "startedAt"));
    e->started_ms = started > 0 ? started : now_wall_ms();
    if (!fresh && !reannounce && jup) e->up = json_is_true(jup);
    char key[2 * ID_MAX + 2];
    key_of(e, key, sizeof(key));
    if (!reannounce)
        log_info("preview %s registered: port %d, type %s, source %s", key, e->port, e->type,
                 e->source);
    broadcast_state(r, e);
    if (!reannounce && e->up) emit_event(r, e, "previewServerStarted", "Dev server is running");
    probe_start(e); /* verify now rather than at the next tick */
}

static void on_del(struct preview_registry *r, json_t *o)
{
    const char *p = json_string_value(json_object_get(o, "projectId"));
    const char *u = json_string_value(json_object_get(o, "userId"));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    if (!p || !u) return;
    struct entry *e = find(r, p, u);
    if (!e) return;
    char key[2 * ID_MAX + 2];
    key_of(e, key, sizeof(key));
    log_info("preview %s (port %d) unregistered: %s", key, e->port, reason ? reason : "");
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"projectId\":");
    buf_json_str(&b, e->project);
    buf_puts(&b, ",\"userId\":");
    buf_json_str(&b, e->user);
    buf_puts(&b, "}");
    broadcast_buf(r, IPC_PREVIEW_GONE, &b);
    buf_free(&b);
    emit_event(r, e, "previewServerStopped", reason && *reason ? reason : "Dev server has stopped");
    entry_remove(r, e);
}

static void on_down(struct preview_registry *r, json_t *o)
{
    const char *p = json_string_value(json_object_get(o, "projectId"));
    const char *u = json_string_value(json_object_get(o, "userId"));
    int port = (int)json_integer_value(json_object_get(o, "port"));
    if (!p || !u) return;
    struct entry *e = find(r, p, u);
    if (!e || e->port != port) return;
    set_up(r, e, 0, "a worker's connection was refused (passive check)");
}

/* ---- tunnels ------------------------------------------------------------------------ */

static void tunnel_del_at(struct preview_registry *r, size_t i)
{
    free(r->t[i].json);
    r->t[i] = r->t[--r->nt];
}

static void on_tunnel_open(struct preview_registry *r, int slot, json_t *o, const char *payload,
                           size_t len)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    if (!id || r->nt >= MAX_TUNNELS) return;
    for (size_t i = 0; i < r->nt; i++)
        if (strcmp(r->t[i].id, id) == 0) {
            tunnel_del_at(r, i);
            break;
        }
    if (r->nt == r->tcap) {
        size_t cap = r->tcap ? r->tcap * 2 : 16;
        struct tunnel *nt = realloc(r->t, cap * sizeof(*nt));
        if (!nt) return;
        r->t = nt;
        r->tcap = cap;
    }
    struct tunnel *t = &r->t[r->nt];
    memset(t, 0, sizeof(*t));
    t->json = strndup(payload, len);
    if (!t->json) return;
    snprintf(t->id, sizeof(t->id), "%s", id);
    const char *owner = json_string_value(json_object_get(o, "owner"));
    snprintf(t->owner, sizeof(t->owner), "%s", owner ? owner : "");
    t->slot = slot;
    r->nt++;
}

static void on_tunnel_close(struct preview_registry *r, json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    if (!id) return;
    for (size_t i = 0; i < r->nt; i++)
        if (strcmp(r->t[i].id, id) == 0) {
            tunnel_del_at(r, i);
            return;
        }
}

static void on_conns_query(struct preview_registry *r, int fd, json_t *o)
{
    long long q = json_integer_value(json_object_get(o, "q"));
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"q\":%lld,\"totalConnections\":%zu,\"owners\":[", q, r->nt);
    int first = 1;
    for (size_t i = 0; i < r->nt; i++) {
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++) dup = strcmp(r->t[j].owner, r->t[i].owner) == 0;
        if (dup) continue;
        if (!first) buf_puts(&b, ",");
        buf_json_str(&b, r->t[i].owner);
        first = 0;
    }
    buf_puts(&b, "],\"connections\":[");
    /* the frame has a size limit: list as many as fit, the count stays exact */
    size_t listed = 0;
    for (size_t i = 0; i < r->nt; i++) {
        size_t n = strlen(r->t[i].json);
        if (b.len + n + 64 > 60 * 1024) break;
        if (listed) buf_puts(&b, ",");
        buf_append(&b, r->t[i].json, n);
        listed++;
    }
    buf_printf(&b, "],\"listed\":%zu}", listed);
    if (!buf_failed(&b) && ipc_send(fd, IPC_CONNS_REPLY, b.data, b.len, -1) < 0)
        log_warn("cannot answer a /debug/connections query: %s", strerror(errno));
    buf_free(&b);
}

/* ---- public --------------------------------------------------------------------------- */

void preg_on_frame(struct preview_registry *r, int fd, int slot, uint8_t type, const char *payload,
                   size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(payload, len, 0, &jerr);
    if (!json_is_object(o)) {
        log_warn("unreadable preview frame (type %d) from %s: %s", type,
                 slot < 0 ? "the master" : "a worker", jerr.text);
        json_decref(o);
        return;
    }
    switch (type) {
    case IPC_PREVIEW_SET:
        on_set(r, o);
        break;
    case IPC_PREVIEW_DEL:
        on_del(r, o);
        break;
    case IPC_PREVIEW_DOWN:
        on_down(r, o);
        break;
    case IPC_TUNNEL_OPEN:
        on_tunnel_open(r, slot, o, payload, len);
        break;
    case IPC_TUNNEL_CLOSE:
        on_tunnel_close(r, o);
        break;
    case IPC_CONNS_QUERY:
        on_conns_query(r, fd, o);
        break;
    default:
        break;
    }
    json_decref(o);
}

void preg_on_link(struct preview_registry *r, int fd)
{
    for (size_t i = 0; i < r->n; i++) {
        struct buf b;
        buf_init(&b);
        entry_json(r->e[i], &b);
        if (!buf_failed(&b)) ipc_send(fd, IPC_PREVIEW_STATE, b.data, b.len, -1);
        buf_free(&b);
    }
}

void preg_link_closed(struct preview_registry *r, int slot)
{
    for (size_t i = 0; i < r->nt;) {
        if (r->t[i].slot == slot)
            tunnel_del_at(r, i);
        else
            i++;
    }
}

struct preview_registry *preg_create(struct ev_loop *loop, const struct svcd_config *cfg,
                                     const struct preg_hooks *hooks)
{
    struct preview_registry *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->loop = loop;
    r->cfg = cfg;
    r->hooks = *hooks;
    double iv = (double)cfg->proxy.health_interval_ms / 1000.0;
    if (iv <= 0) iv = 5;
    ev_timer_init(&r->tick, on_tick, iv, iv);
    r->tick.data = r;
    ev_timer_start(loop, &r->tick);
    return r;
}

void preg_destroy(struct preview_registry *r)
{
    if (!r) return;
    ev_timer_stop(r->loop, &r->tick);
    while (r->n) entry_remove(r, r->e[r->n - 1]);
    free(r->e);
    for (size_t i = 0; i < r->nt; i++) free(r->t[i].json);
    free(r->t);
    free(r);
}
