/*
 * chat_coord.c — cross-worker chat state in the coordinator (see chat_coord.h).
 *
 * Everything here is rebuilt from the workers after a coordinator restart (HELLO +
 * re-announcements), except the in-memory history fallback, which is lost then:
 * it stands in for store_message_add()/store_messages() until the worker's storage
 * pool carries chat messages (MARKED: IN-MEMORY FALLBACK).
 *
 * Ordering: one coordinator loop serialises every registration, so when two
 * workers register the same user at once, the later USER_ADD wins and the earlier
 * connection is the one kicked — on every worker the same way.
 */
#include "chat_coord.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/scoreboard.h"
#include "chat_map.h"
#include "chat_proto.h"
#include "chat_queue.h"
#include "cluster_bus.h"

#define HISTORY_KEEP 1000 /* messages per room kept by the in-memory fallback */
#define ID_MAX       64

struct cuser {
    int slot;
    char sid[ID_MAX];
    int64_t at; /* wall-clock ms of the login: the newer login wins, across hosts */
};

struct croom {
    unsigned char slot[SB_SLOTS];
    int nslots;
};

struct cpair {
    char *partner;
    char room[ID_MAX + 16];
    char phost[48]; /* the partner's host when it is another one ("" here/unknown) */
};

/* A partner left a pair this host has not been told of yet (bus only): across hosts
 * the leader's "match" for one user can arrive after its partner has already gone
 * (a "pleft" from another host, or a local disconnect). Kept LEFT_KEEP_MS, then
 * dropped; match_deliver() of the same room turns it into matched + partner-left. */
struct cleft {
    char partner[ID_MAX];
    char room[ID_MAX + 16];
    int64_t at; /* mono ms */
};

/* IN-MEMORY FALLBACK for store_message_add()/store_messages(): a ring of the
 * newest messages per room (JSON objects {id,room,from,text,ts}). */
struct chist {
    char **msg;
    char **ids;
    size_t head, n;
};

struct cslot {
    int linked;
    struct chatq q;
};

struct chat_coord {
    struct ev_loop *loop;
    struct cslot slots[SB_SLOTS];
    struct chat_map users; /* user -> struct cuser */
    struct chat_map rooms; /* room -> struct croom */
    struct chat_map hist;  /* room -> struct chist */
    struct chat_map pairs; /* user -> struct cpair */
    char **queue;          /* random-connect waiting users, FIFO */
    size_t nqueue, capqueue;
    unsigned long long pair_seq;
    struct buf out;
    struct cluster_bus *bus; /* other hosts on the same MongoDB (cluster_bus.h), or NULL */
    /* random connect across hosts (bus only): one host, the leader (the smallest
     * live host id), keeps the waiting queue; the others forward to it */
    struct chat_map hosts;   /* other live hosts: id -> int64_t* last heart-beat (mono ms) */
    struct chat_map waiting; /* local users waiting for a partner: user -> (void *)1 */
    struct chat_map qhost;   /* leader: queued user -> strdup(host id) */
    struct chat_map left;    /* user -> struct cleft: its partner left before the match came */
    char leader[48];
    ev_timer hb;
};

#define HOST_HB_S    1.0   /* heart-beat on the bus */
#define HOST_TTL_MS  3500  /* a host silent that long is gone */
#define LEFT_KEEP_MS 60000 /* a "left before matched" note outlives any bus delay */

static void random_route(struct chat_coord *cc, const char *op, const char *user, const char *host);

/* ---- sending ----------------------------------------------------------------- */

static void send_slot(struct chat_coord *cc, int slot, uint8_t type, const struct buf *b, int fd)
{
    if (slot < 0 || slot >= SB_SLOTS || !cc->slots[slot].linked) return;
    if (chatq_send(&cc->slots[slot].q, type, b->data, b->len, fd) < 0)
        log_debug("chat: frame %d to slot %d dropped", type, slot);
}

/* ---- random connect ------------------------------------------------------------ */

static int queue_index(struct chat_coord *cc, const char *user)
{
    for (size_t i = 0; i < cc->nqueue; i++)
        if (strcmp(cc->queue[i], user) == 0) return (int)i;
    return -1;
}

static void queue_remove(struct chat_coord *cc, const char *user)
{
    int i = queue_index(cc, user);
    if (i < 0) return;
    free(cc->queue[i]);
    memmove(&cc->queue[i], &cc->queue[i + 1], (cc->nqueue - (size_t)i - 1) * sizeof(char *));
    cc->nqueue--;
}

static int queue_push(struct chat_coord *cc, const char *user)
{
    if (cc->nqueue == cc->capqueue) {
        size_t cap = cc->capqueue ? cc->capqueue * 2 : 64;
        char **q = realloc(cc->queue, cap * sizeof(*q));
        if (!q) return -1;
        cc->queue = q;
        cc->capqueue = cap;
    }
    char *s = strdup(user);
    if (!s) return -1;
    cc->queue[cc->nqueue++] = s;
    return 0;
}

static void notify_pair(struct chat_coord *cc, uint8_t type, const char *user, const char *partner,
                        const char *room)
{
    struct cuser *u = chat_map_get(&cc->users, user);
    if (!u) return;
    buf_reset(&cc->out);
    chat_fields_build(&cc->out, 3, CF(user), CF(partner), CF(room));
    send_slot(cc, u->slot, type, &cc->out, -1);
}

static int set_pair(struct chat_coord *cc, const char *user, const char *partner, const char *room)
{
    struct cpair *p = calloc(1, sizeof(*p));
    if (!p) return -1;
    p->partner = strdup(partner);
    snprintf(p->room, sizeof(p->room), "%s", room);
    int failed;
    struct cpair *old = chat_map_put(&cc->pairs, user, p, &failed);
    if (old) {
        free(old->partner);
        free(old);
    }
    if (failed || !p->partner) {
        if (!failed) chat_map_del(&cc->pairs, user);
        free(p->partner);
        free(p);
        return -1;
    }
    return 0;
}

/* Tell the host holding `partner` (another one) that `user` left their pair `room`. */
static void publish_left(struct chat_coord *cc, const char *partner, const char *user,
                         const char *room)
{
    buf_reset(&cc->out);
    chat_fields_build(&cc->out, 2, CF(user), CF(room));
    if (!buf_failed(&cc->out))
        cluster_bus_publish(cc->bus, "pleft", partner, cc->out.data, cc->out.len, 0);
}

/*
 * `partner` (a user on this host) is told that `user` left their pair `room`. If this
 * host does not hold that pair yet (its match is still on the bus), the news waits
 * in cc->left for it.
 */
static void partner_left_here(struct chat_coord *cc, const char *partner, const char *user,
                              const char *room)
{
    struct cpair *q = chat_map_get(&cc->pairs, partner);
    if (q && strcmp(q->partner, user) == 0 && strcmp(q->room, room) == 0) {
        chat_map_del(&cc->pairs, partner);
        notify_pair(cc, CHAT_PARTNER_LEFT, partner, user, room);
        free(q->partner);
        free(q);
        return;
    }
    if (!cc->bus || !chat_map_get(&cc->users, partner)) return;
    struct cleft *l = malloc(sizeof(*l));
    if (!l) return;
    snprintf(l->partner, sizeof(l->partner), "%s", user);
    snprintf(l->room, sizeof(l->room), "%s", room);
    l->at = now_mono_ms();
    int failed;
    free(chat_map_put(&cc->left, partner, l, &failed));
    if (failed) free(l);
}

/* Forget "left before matched" notes older than LEFT_KEEP_MS. */
static void left_expire(struct chat_coord *cc)
{
    int64_t now = now_mono_ms();
    size_t i, n = 0;
    char *old[256];
    for (struct chat_map_ent *e = chat_map_first(&cc->left, &i); e && n < 256;
         e = chat_map_next(&cc->left, e, &i))
        if (now - ((struct cleft *)e->value)->at > LEFT_KEEP_MS) old[n++] = strdup(e->key);
    for (size_t k = 0; k < n; k++) {
        if (old[k]) free(chat_map_del(&cc->left, old[k]));
        free(old[k]);
    }
}

/* `user` leaves random connect: out of the queue, and its partner (if any) is told. */
static void random_leave(struct chat_coord *cc, const char *user)
{
    queue_remove(cc, user);
    if (cc->bus && chat_map_del(&cc->waiting, user))
        random_route(cc, "leave", user, cluster_bus_host(cc->bus));
    free(chat_map_del(&cc->left, user));
    struct cpair *p = chat_map_del(&cc->pairs, user);
    if (!p) return;
    if (!p->phost[0]) /* the partner is here (with the bus: maybe its match not yet) */
        partner_left_here(cc, p->partner, user, p->room);
    else /* on another host: tell whoever holds it */
        publish_left(cc, p->partner, user, p->room);
    free(p->partner);
    free(p);
}

static void random_join(struct chat_coord *cc, const char *user)
{
    if (cc->bus) {
        /* several hosts: the leader matches (random_route) */
        if (chat_map_get(&cc->pairs, user) || chat_map_get(&cc->waiting, user)) return;
        if (!chat_map_get(&cc->users, user)) return;
        int failed;
        chat_map_put(&cc->waiting, user, (void *)1, &failed);
        if (!failed) random_route(cc, "join", user, cluster_bus_host(cc->bus));
        return;
    }
    if (chat_map_get(&cc->pairs, user) || queue_index(cc, user) >= 0) return;
    if (!chat_map_get(&cc->users, user)) return; /* not connected (any more) */
    /* the longest-waiting user that is still connected */
    while (cc->nqueue > 0) {
        char *other = cc->queue[0];
        memmove(&cc->queue[0], &cc->queue[1], (cc->nqueue - 1) * sizeof(char *));
        cc->nqueue--;
        if (!chat_map_get(&cc->users, other) || strcmp(other, user) == 0) {
            free(other);
            continue;
        }
        char room[ID_MAX + 16];
        snprintf(room, sizeof(room), "random-%llu", ++cc->pair_seq);
        if (set_pair(cc, user, other, room) < 0 || set_pair(cc, other, user, room) < 0) {
            log_error("chat: out of memory pairing users");
            free(other);
            return;
        }
        notify_pair(cc, CHAT_MATCHED, user, other, room);
        notify_pair(cc, CHAT_MATCHED, other, user, room);
        free(other);
        return;
    }
    if (queue_push(cc, user) < 0) log_error("chat: out of memory queueing a user");
}

/* ---- users, rooms ------------------------------------------------------------------ */

static void user_remove(struct chat_coord *cc, const char *user)
{
    struct cuser *u = chat_map_del(&cc->users, user);
    free(u);
    random_leave(cc, user);
}

static void room_clear_slot(struct chat_coord *cc, const char *name, int slot)
{
    struct croom *r = chat_map_get(&cc->rooms, name);
    if (!r || !r->slot[slot]) return;
    r->slot[slot] = 0;
    if (--r->nslots == 0) free(chat_map_del(&cc->rooms, name));
}

/* Forget everything `slot` announced (it restarted its announcements, or died). */
static void purge_slot(struct chat_coord *cc, int slot)
{
    size_t i, n = 0, cap = cc->users.n + cc->rooms.n + 1;
    char **keys = calloc(cap, sizeof(char *));
    if (!keys) return;
    for (struct chat_map_ent *e = chat_map_first(&cc->users, &i); e;
         e = chat_map_next(&cc->users, e, &i))
        if (((struct cuser *)e->value)->slot == slot && n < cap) keys[n++] = strdup(e->key);
    for (size_t k = 0; k < n; k++) {
        if (keys[k]) user_remove(cc, keys[k]);
        free(keys[k]);
    }
    n = 0;
    for (struct chat_map_ent *e = chat_map_first(&cc->rooms, &i); e;
         e = chat_map_next(&cc->rooms, e, &i))
        if (((struct croom *)e->value)->slot[slot] && n < cap) keys[n++] = strdup(e->key);
    for (size_t k = 0; k < n; k++) {
        if (keys[k]) room_clear_slot(cc, keys[k], slot);
        free(keys[k]);
    }
    free(keys);
}

static void user_add(struct chat_coord *cc, int slot, const char *user, const char *sid, int64_t at)
{
    struct cuser *u = chat_map_get(&cc->users, user);
    /* other hosts: "user logged in here at `at`"; the older login anywhere goes.
     * Re-announcements after a coordinator restart carry their original time, so
     * they never kick a newer login elsewhere. */
    if (cc->bus && !(u && u->slot == slot && strcmp(u->sid, sid) == 0))
        cluster_bus_publish(cc->bus, "user", user, sid, strlen(sid), at);
    if (u) {
        if (u->slot == slot && strcmp(u->sid, sid) == 0) return;
        /* one live connection per user: the older one is replaced */
        buf_reset(&cc->out);
        chat_fields_build(&cc->out, 2, CF(user), CF(u->sid));
        send_slot(cc, u->slot, CHAT_KICK, &cc->out, -1);
        random_leave(cc, user);
    } else {
        u = calloc(1, sizeof(*u));
        int failed;
        if (!u || (chat_map_put(&cc->users, user, u, &failed), failed)) {
            free(u);
            log_error("chat: out of memory registering a user");
            return;
        }
    }
    u->slot = slot;
    u->at = at;
    snprintf(u->sid, sizeof(u->sid), "%s", sid);
}

/* ---- history (IN-MEMORY FALLBACK) ------------------------------------------------- */

static void history_add(struct chat_coord *cc, const char *room, const char *json, size_t len)
{
    struct chist *h = chat_map_get(&cc->hist, room);
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h) return;
        h->msg = calloc(HISTORY_KEEP, sizeof(char *));
        h->ids = calloc(HISTORY_KEEP, sizeof(char *));
        int failed;
        if (!h->msg || !h->ids || (chat_map_put(&cc->hist, room, h, &failed), failed)) {
            free(h->msg);
            free(h->ids);
            free(h);
            return;
        }
    }
    json_t *m = json_loadb(json, len, 0, NULL);
    const char *id = m ? json_string_value(json_object_get(m, "id")) : NULL;
    if (!id) {
        json_decref(m);
        return;
    }
    size_t at = (h->head + h->n) % HISTORY_KEEP;
    if (h->n == HISTORY_KEEP) {
        free(h->msg[h->head]);
        free(h->ids[h->head]);
        h->head = (h->head + 1) % HISTORY_KEEP;
        h->n--;
        at = (h->head + h->n) % HISTORY_KEEP;
    }
    h->msg[at] = strndup(json, len);
    h->ids[at] = strdup(id);
    json_decref(m);
    if (!h->msg[at] || !h->ids[at]) {
        free(h->msg[at]);
        free(h->ids[at]);
        return;
    }
    h->n++;
}

static void history_reply(struct chat_coord *cc, int slot, const char *qid, const char *room,
                          const char *before, int limit)
{
    struct chist *h = chat_map_get(&cc->hist, room);
    struct buf json;
    buf_init(&json);
    buf_puts(&json, "{\"messages\":[");
    if (h && h->n) {
        /* ids are fixed-width and time-ordered: find the newest `limit` before `before` */
        size_t end = h->n; /* exclusive, in ring order */
        if (before && before[0]) {
            while (end > 0 && strcmp(h->ids[(h->head + end - 1) % HISTORY_KEEP], before) >= 0)
                end--;
        }
        size_t start = end > (size_t)limit ? end - (size_t)limit : 0;
        for (size_t k = start; k < end; k++) {
            if (k > start) buf_append(&json, ",", 1);
            buf_puts(&json, h->msg[(h->head + k) % HISTORY_KEEP]);
        }
    }
    buf_puts(&json, "]}");
    buf_reset(&cc->out);
    chat_fields_build(&cc->out, 2, CF(qid), CFN(json.data, json.len));
    if (cc->out.len > CHAT_FRAME_MAX) {
        buf_reset(&cc->out);
        chat_fields_build(&cc->out, 2, CF(qid),
                          CF("{\"error\":\"history page too large; ask for fewer messages\"}"));
    }
    send_slot(cc, slot, CHAT_HISTORY_RES, &cc->out, -1);
    buf_free(&json);
}

/* cc->out holds a ROOM_EMIT for the workers (room | event | json): send it to every
 * worker with members in `room` but `except` (the one that already delivered it). */
static void room_fanout(struct chat_coord *cc, const char *room, int except)
{
    struct croom *r = chat_map_get(&cc->rooms, room);
    if (!r) return;
    for (int s = 0; s < SB_SLOTS; s++)
        if (r->slot[s] && s != except) send_slot(cc, s, CHAT_ROOM_EMIT, &cc->out, -1);
}

/* ---- random connect across hosts ------------------------------------------------- */

/* A user `host` holds got a partner: tell it (here: set the pair, notify the worker). */
static void match_deliver(struct chat_coord *cc, const char *user, const char *host,
                          const char *partner, const char *phost, const char *room)
{
    const char *me = cluster_bus_host(cc->bus);
    if (strcmp(host, me) != 0) {
        buf_reset(&cc->out);
        chat_fields_build(&cc->out, 4, CF(user), CF(partner), CF(phost), CF(room));
        if (!buf_failed(&cc->out))
            cluster_bus_publish(cc->bus, "match", host, cc->out.data, cc->out.len, 0);
        return;
    }
    chat_map_del(&cc->waiting, user);
    if (!chat_map_get(&cc->users, user)) {
        /* gone in the meantime: the partner is told at once */
        if (strcmp(phost, me) == 0)
            partner_left_here(cc, partner, user, room);
        else
            publish_left(cc, partner, user, room);
        return;
    }
    if (set_pair(cc, user, partner, room) < 0) return;
    struct cpair *p = chat_map_get(&cc->pairs, user);
    if (p) snprintf(p->phost, sizeof(p->phost), "%s", strcmp(phost, me) ? phost : "");
    notify_pair(cc, CHAT_MATCHED, user, partner, room);
    /* the partner may have left already, its news here before this match */
    struct cleft *l = chat_map_get(&cc->left, user);
    if (l && strcmp(l->room, room) == 0 && strcmp(l->partner, partner) == 0) {
        chat_map_del(&cc->left, user);
        free(l);
        partner_left_here(cc, user, partner, room);
    }
}

static void qhost_drop(struct chat_coord *cc, const char *user)
{
    free(chat_map_del(&cc->qhost, user));
}

/* The leader's half: the one queue of every host's waiting users. */
static void leader_op(struct chat_coord *cc, const char *op, const char *user, const char *host)
{
    const char *me = cluster_bus_host(cc->bus);
    if (strcmp(op, "leave") == 0) {
        queue_remove(cc, user);
        qhost_drop(cc, user);
        return;
    }
    if (strcmp(op, "join") != 0 || queue_index(cc, user) >= 0) return;
    while (cc->nqueue > 0) {
        char *other = cc->queue[0];
        memmove(&cc->queue[0], &cc->queue[1], (cc->nqueue - 1) * sizeof(char *));
        cc->nqueue--;
        char *ohost = chat_map_del(&cc->qhost, other);
        int stale = strcmp(other, user) == 0 || !ohost ||
                    (strcmp(ohost, me) == 0 && !chat_map_get(&cc->users, other));
        if (stale) {
            free(other);
            free(ohost);
            continue;
        }
        char room[ID_MAX + 16];
        snprintf(room, sizeof(room), "random-%.8s-%llu", me, ++cc->pair_seq);
        match_deliver(cc, user, host, other, ohost, room);
        match_deliver(cc, other, ohost, user, host, room);
        free(other);
        free(ohost);
        return;
    }
    char *h = strdup(host);
    int failed = 1;
    if (h && queue_push(cc, user) == 0) chat_map_put(&cc->qhost, user, h, &failed);
    if (failed) {
        free(h);
        queue_remove(cc, user);
        log_error("chat: out of memory queueing a user");
    }
}

static void random_route(struct chat_coord *cc, const char *op, const char *user, const char *host)
{
    if (strcmp(cc->leader, cluster_bus_host(cc->bus)) == 0) {
        leader_op(cc, op, user, host);
        return;
    }
    buf_reset(&cc->out);
    chat_fields_build(&cc->out, 3, CF(op), CF(user), CF(host));
    if (!buf_failed(&cc->out))
        cluster_bus_publish(cc->bus, "rnd", cc->leader, cc->out.data, cc->out.len, 0);
}

/* Which hosts are alive, who leads; a host that went silent takes its queue
 * entries with it and its users' partners here are told they left. */
static void hosts_check(struct chat_coord *cc)
{
    const char *me = cluster_bus_host(cc->bus);
    int64_t now = now_mono_ms();
    size_t i, n = 0;
    char *dead[64];
    const char *best = me;
    for (struct chat_map_ent *e = chat_map_first(&cc->hosts, &i); e;
         e = chat_map_next(&cc->hosts, e, &i)) {
        if (now - *(int64_t *)e->value > HOST_TTL_MS) {
            if (n < 64) dead[n++] = strdup(e->key);
        } else if (strcmp(e->key, best) < 0) {
            best = e->key;
        }
    }
    char newleader[48];
    snprintf(newleader, sizeof(newleader), "%s", best);
    for (size_t k = 0; k < n; k++) {
        if (!dead[k]) continue;
        log_info("cluster: host %s went silent", dead[k]);
        free(chat_map_del(&cc->hosts, dead[k]));
        /* its users' queue entries (the leader's) */
        for (size_t q = 0; q < cc->nqueue;) {
            const char *h = chat_map_get(&cc->qhost, cc->queue[q]);
            if (h && strcmp(h, dead[k]) == 0) {
                char *u = strdup(cc->queue[q]);
                queue_remove(cc, u);
                qhost_drop(cc, u);
                free(u);
            } else {
                q++;
            }
        }
        /* pairs with a partner there */
        size_t np = 0, j;
        char *lone[256];
        for (struct chat_map_ent *e = chat_map_first(&cc->pairs, &j); e;
             e = chat_map_next(&cc->pairs, e, &j))
            if (!strcmp(((struct cpair *)e->value)->phost, dead[k]) && np < 256)
                lone[np++] = strdup(e->key);
        for (size_t q = 0; q < np; q++) {
            struct cpair *p = lone[q] ? chat_map_del(&cc->pairs, lone[q]) : NULL;
            if (p) {
                notify_pair(cc, CHAT_PARTNER_LEFT, lone[q], p->partner, p->room);
                free(p->partner);
                free(p);
            }
            free(lone[q]);
        }
        free(dead[k]);
    }
    if (strcmp(newleader, cc->leader) == 0) return;
    int was_me = strcmp(cc->leader, me) == 0;
    log_info("cluster: random-connect leader is now %s%s", newleader,
             strcmp(newleader, me) == 0 ? " (this host)" : "");
    snprintf(cc->leader, sizeof(cc->leader), "%s", newleader);
    if (was_me && strcmp(newleader, me) != 0) {
        /* hand the queue over, oldest first */
        while (cc->nqueue > 0) {
            char *u = cc->queue[0];
            memmove(&cc->queue[0], &cc->queue[1], (cc->nqueue - 1) * sizeof(char *));
            cc->nqueue--;
            char *h = chat_map_del(&cc->qhost, u);
            if (h && strcmp(h, me) != 0) random_route(cc, "join", u, h);
            free(h);
            free(u);
        }
    }
    /* a new leader may not know this host's waiting users: say them again */
    char *again[1024];
    size_t na = 0;
    for (struct chat_map_ent *e = chat_map_first(&cc->waiting, &i); e;
         e = chat_map_next(&cc->waiting, e, &i))
        if (na < 1024) again[na++] = strdup(e->key);
    for (size_t k = 0; k < na; k++) {
        if (again[k]) random_route(cc, "join", again[k], me);
        free(again[k]);
    }
}

static void on_host_hb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct chat_coord *cc = t->data;
    cluster_bus_publish(cc->bus, "hb", "", "", 0, now_wall_ms());
    hosts_check(cc);
    left_expire(cc);
}

/* ---- other hosts (cluster_bus.h) ---------------------------------------------------- */

static void on_bus_event(void *arg, const char *type, const char *key, const char *data, size_t len,
                         int64_t at, const char *host)
{
    struct chat_coord *cc = arg;
    if (strcmp(type, "room") == 0) {
        buf_reset(&cc->out);
        buf_append(&cc->out, data, len);
        if (!buf_failed(&cc->out)) room_fanout(cc, key, -1);
    } else if (strcmp(type, "user") == 0) {
        struct cuser *u = chat_map_get(&cc->users, key);
        if (!u) return;
        /* the newer login wins; equal times are ordered by host id, the same way
         * on every host */
        int remote_newer =
            at > u->at || (at == u->at && strcmp(host, cluster_bus_host(cc->bus)) > 0);
        if (!remote_newer) return;
        log_info("chat: user %s logged in on another host; replacing the connection here", key);
        buf_reset(&cc->out);
        chat_fields_build(&cc->out, 2, CF(key), CF(u->sid));
        send_slot(cc, u->slot, CHAT_KICK, &cc->out, -1);
        user_remove(cc, key);
    } else if (strcmp(type, "hb") == 0) {
        int64_t *seen = chat_map_get(&cc->hosts, host);
        if (!seen) {
            seen = malloc(sizeof(*seen));
            int failed;
            if (!seen || (chat_map_put(&cc->hosts, host, seen, &failed), failed)) {
                free(seen);
                return;
            }
            log_info("cluster: host %s is on the bus", host);
        }
        *seen = now_mono_ms();
        hosts_check(cc);
    } else if (strcmp(type, "rnd") == 0 || strcmp(type, "match") == 0) {
        if (strcmp(key, cluster_bus_host(cc->bus)) != 0) return; /* for another host */
        struct chat_fields f;
        char tmp[2048];
        if (len >= sizeof(tmp)) return;
        memcpy(tmp, data, len);
        tmp[len] = '\0';
        if (type[0] == 'r') {
            if (chat_fields_split(tmp, len, 3, &f) == 0) random_route(cc, f.f[0], f.f[1], f.f[2]);
        } else if (chat_fields_split(tmp, len, 4, &f) == 0) {
            match_deliver(cc, f.f[0], cluster_bus_host(cc->bus), f.f[1], f.f[2], f.f[3]);
        }
    } else if (strcmp(type, "pleft") == 0) {
        struct chat_fields f;
        char tmp[1024];
        if (len >= sizeof(tmp)) return;
        memcpy(tmp, data, len);
        tmp[len] = '\0';
        if (chat_fields_split(tmp, len, 2, &f) < 0) return;
        partner_left_here(cc, key, f.f[0], f.f[1]);
    } else if (strcmp(type, "user_emit") == 0) {
        struct cuser *u = chat_map_get(&cc->users, key);
        if (!u) return;
        buf_reset(&cc->out);
        buf_append(&cc->out, data, len);
        if (!buf_failed(&cc->out)) send_slot(cc, u->slot, CHAT_USER_EMIT, &cc->out, -1);
    }
}

int chat_coord_cluster_start(struct chat_coord *cc, const char *mongodb_uri, char *err,
                             size_t errlen)
{
    cc->bus = cluster_bus_start(cc->loop, mongodb_uri, on_bus_event, cc, err, errlen);
    if (!cc->bus) return -1;
    snprintf(cc->leader, sizeof(cc->leader), "%s", cluster_bus_host(cc->bus));
    ev_timer_start(cc->loop, &cc->hb);
    return 0;
}

/* ---- frames ------------------------------------------------------------------------ */

static void handoff(struct chat_coord *cc, const char *target_s, const char *bytes, size_t len,
                    int fd)
{
    int target = atoi(target_s);
    if (fd < 0) return;
    if (target >= 0 && target < SB_SLOTS && cc->slots[target].linked) {
        buf_reset(&cc->out);
        buf_append(&cc->out, bytes, len);
        if (chatq_send(&cc->slots[target].q, CHAT_HANDOFF, cc->out.data, cc->out.len, fd) == 0) {
            close(fd);
            return;
        }
    }
    /* the owning worker is gone: the session is too (Engine.IO error 1) */
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                               "Content-Length: 42\r\nConnection: close\r\n\r\n"
                               "{\"code\":1,\"message\":\"Session ID unknown\"}";
    ssize_t n = send(fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    close(fd);
}

void chat_coord_frame(struct chat_coord *cc, int slot, uint8_t type, const char *payload,
                      size_t len, int fd)
{
    struct chat_fields f;
    if (slot < 0 || slot >= SB_SLOTS) {
        if (fd >= 0) close(fd);
        return;
    }
    if (type != CHAT_HANDOFF && fd >= 0) {
        close(fd);
        fd = -1;
    }
    switch (type) {
    case CHAT_HELLO:
        purge_slot(cc, slot);
        break;
    case CHAT_USER_ADD:
        if (chat_fields_split(payload, len, 3, &f) == 0 && f.len[1] < ID_MAX) {
            char at[24];
            snprintf(at, sizeof(at), "%.*s", (int)(f.len[2] < 23 ? f.len[2] : 23), f.f[2]);
            user_add(cc, slot, f.f[0], f.f[1], strtoll(at, NULL, 10));
        }
        break;
    case CHAT_USER_DEL:
        if (chat_fields_split(payload, len, 2, &f) == 0) {
            struct cuser *u = chat_map_get(&cc->users, f.f[0]);
            if (u && u->slot == slot && f.len[1] == strlen(u->sid) &&
                memcmp(u->sid, f.f[1], f.len[1]) == 0)
                user_remove(cc, f.f[0]);
        }
        break;
    case CHAT_JOIN:
    case CHAT_LEAVE: {
        char room[512];
        if (len == 0 || len >= sizeof(room)) break;
        memcpy(room, payload, len);
        room[len] = '\0';
        if (type == CHAT_LEAVE) {
            room_clear_slot(cc, room, slot);
            break;
        }
        struct croom *r = chat_map_get(&cc->rooms, room);
        if (!r) {
            r = calloc(1, sizeof(*r));
            int failed;
            if (!r || (chat_map_put(&cc->rooms, room, r, &failed), failed)) {
                free(r);
                break;
            }
        }
        if (!r->slot[slot]) {
            r->slot[slot] = 1;
            r->nslots++;
        }
        break;
    }
    case CHAT_ROOM_EMIT:
        if (chat_fields_split(payload, len, 4, &f) == 0) {
            if (f.f[1][0] == '1') history_add(cc, f.f[0], f.f[3], f.len[3]);
            buf_reset(&cc->out);
            chat_fields_build(&cc->out, 3, CF(f.f[0]), CF(f.f[2]), CFN(f.f[3], f.len[3]));
            if (cc->bus && !buf_failed(&cc->out))
                cluster_bus_publish(cc->bus, "room", f.f[0], cc->out.data, cc->out.len, 0);
            room_fanout(cc, f.f[0], slot);
        }
        break;
    case CHAT_USER_EMIT:
        if (chat_fields_split(payload, len, 3, &f) == 0) {
            struct cuser *u = chat_map_get(&cc->users, f.f[0]);
            if (!u) {
                /* not connected on this host: maybe on another one */
                if (cc->bus) cluster_bus_publish(cc->bus, "user_emit", f.f[0], payload, len, 0);
                break;
            }
            buf_reset(&cc->out);
            buf_append(&cc->out, payload, len);
            send_slot(cc, u->slot, CHAT_USER_EMIT, &cc->out, -1);
        }
        break;
    case CHAT_RANDOM:
        if (chat_fields_split(payload, len, 2, &f) == 0) {
            const char *op = f.f[0];
            char user[512];
            const char *rest = f.f[1];
            size_t ul = strnlen(rest, f.len[1]);
            if (ul >= sizeof(user)) break;
            memcpy(user, rest, ul);
            user[ul] = '\0';
            if (strcmp(op, "join") == 0) {
                random_join(cc, user);
            } else if (strcmp(op, "leave") == 0) {
                random_leave(cc, user);
            } else if (strcmp(op, "next") == 0) {
                random_leave(cc, user);
                random_join(cc, user);
            } else if (strcmp(op, "pair") == 0 && chat_fields_split(payload, len, 4, &f) == 0) {
                char room[ID_MAX + 16];
                snprintf(room, sizeof(room), "%.*s", (int)f.len[3], f.f[3]);
                set_pair(cc, f.f[1], f.f[2], room);
            }
        }
        break;
    case CHAT_SIGNAL:
        if (chat_fields_split(payload, len, 3, &f) == 0) {
            struct cpair *p = chat_map_get(&cc->pairs, f.f[0]);
            if (!p || strcmp(p->partner, f.f[1]) != 0) break; /* partners only */
            struct cuser *u = chat_map_get(&cc->users, f.f[1]);
            buf_reset(&cc->out);
            chat_fields_build(&cc->out, 3, CF(f.f[1]), CF("signal"), CFN(f.f[2], f.len[2]));
            if (u)
                send_slot(cc, u->slot, CHAT_USER_EMIT, &cc->out, -1);
            else if (cc->bus && !buf_failed(&cc->out)) /* the partner is on another host */
                cluster_bus_publish(cc->bus, "user_emit", f.f[1], cc->out.data, cc->out.len, 0);
        }
        break;
    case CHAT_HISTORY_REQ:
        if (chat_fields_split(payload, len, 4, &f) == 0) {
            char lim[16];
            snprintf(lim, sizeof(lim), "%.*s", (int)(f.len[3] < 15 ? f.len[3] : 15), f.f[3]);
            int limit = atoi(lim);
            if (limit < 1) limit = 50;
            if (limit > 200) limit = 200;
            history_reply(cc, slot, f.f[0], f.f[1], f.f[2], limit);
        }
        break;
    case CHAT_HANDOFF:
        if (chat_fields_split(payload, len, 2, &f) == 0)
            handoff(cc, f.f[0], f.f[1], f.len[1], fd);
        else if (fd >= 0)
            close(fd);
        break;
    default:
        break;
    }
}

/* ---- lifecycle ------------------------------------------------------------------------ */

struct chat_coord *chat_coord_new(struct ev_loop *loop)
{
    struct chat_coord *cc = calloc(1, sizeof(*cc));
    if (!cc) return NULL;
    cc->loop = loop;
    for (int i = 0; i < SB_SLOTS; i++) chatq_init(&cc->slots[i].q, loop);
    chat_map_init(&cc->users);
    chat_map_init(&cc->rooms);
    chat_map_init(&cc->hist);
    chat_map_init(&cc->pairs);
    chat_map_init(&cc->hosts);
    chat_map_init(&cc->waiting);
    chat_map_init(&cc->qhost);
    chat_map_init(&cc->left);
    ev_timer_init(&cc->hb, on_host_hb, HOST_HB_S, HOST_HB_S);
    cc->hb.data = cc;
    buf_init(&cc->out);
    return cc;
}

void chat_coord_link_up(struct chat_coord *cc, int slot, int fd)
{
    if (!cc || slot < 0 || slot >= SB_SLOTS) return;
    int sz = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    chatq_attach(&cc->slots[slot].q, fd);
    cc->slots[slot].linked = 1;
}

void chat_coord_link_down(struct chat_coord *cc, int slot)
{
    if (!cc || slot < 0 || slot >= SB_SLOTS) return;
    chatq_detach(&cc->slots[slot].q);
    cc->slots[slot].linked = 0;
    purge_slot(cc, slot);
}

void chat_coord_free(struct chat_coord *cc)
{
    if (!cc) return;
    ev_timer_stop(cc->loop, &cc->hb);
    cluster_bus_stop(cc->bus);
    cc->bus = NULL;
    size_t i;
    for (struct chat_map_ent *e = chat_map_first(&cc->hosts, &i); e;
         e = chat_map_next(&cc->hosts, e, &i))
        free(e->value);
    for (struct chat_map_ent *e = chat_map_first(&cc->qhost, &i); e;
         e = chat_map_next(&cc->qhost, e, &i))
        free(e->value);
    for (struct chat_map_ent *e = chat_map_first(&cc->left, &i); e;
         e = chat_map_next(&cc->left, e, &i))
        free(e->value);
    chat_map_free(&cc->left);
    chat_map_free(&cc->hosts);
    chat_map_free(&cc->waiting);
    chat_map_free(&cc->qhost);
    for (int s = 0; s < SB_SLOTS; s++) chatq_detach(&cc->slots[s].q);
    for (struct chat_map_ent *e = chat_map_first(&cc->users, &i); e;
         e = chat_map_next(&cc->users, e, &i))
        free(e->value);
    for (struct chat_map_ent *e = chat_map_first(&cc->rooms, &i); e;
         e = chat_map_next(&cc->rooms, e, &i))
        free(e->value);
    for (struct chat_map_ent *e = chat_map_first(&cc->pairs, &i); e;
         e = chat_map_next(&cc->pairs, e, &i)) {
        struct cpair *p = e->value;
        free(p->partner);
        free(p);
    }
    for (struct chat_map_ent *e = chat_map_first(&cc->hist, &i); e;
         e = chat_map_next(&cc->hist, e, &i)) {
        struct chist *h = e->value;
        for (size_t k = 0; k < h->n; k++) {
            free(h->msg[(h->head + k) % HISTORY_KEEP]);
            free(h->ids[(h->head + k) % HISTORY_KEEP]);
        }
        free(h->msg);
        free(h->ids);
        free(h);
    }
    chat_map_free(&cc->users);
    chat_map_free(&cc->rooms);
    chat_map_free(&cc->hist);
    chat_map_free(&cc->pairs);
    for (size_t k = 0; k < cc->nqueue; k++) free(cc->queue[k]);
    free(cc->queue);
    buf_free(&cc->out);
    free(cc);
}
