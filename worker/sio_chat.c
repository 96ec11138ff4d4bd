/*
 * sio_chat.c — the Socket.IO v5 layer and the chat on one worker (SPEC §7).
 *
 * Engine.IO messages (eio_server.c) arrive here as Socket.IO packets: CONNECT
 * with the JWT in auth.token, events with optional acks. The chat keeps local
 * indexes (user -> session, room -> member sessions) and mirrors what other
 * workers need to know to the coordinator (chat_proto.h): users (one live
 * connection per user), rooms this worker has members in (fan-out), random
 * connect. Deliveries from other workers come back as frames and go to local
 * members only, so every member receives each room message exactly once.
 *
 * Storage: a message is stored with store_message_add() on the worker's storage
 * pool (never on the loop), and only then broadcast and acked with the stored id,
 * so history and deliveries agree; one connection's messages are stored one at a
 * time, so they arrive in the order they were sent. GET /api/rooms/:room/messages
 * reads store_messages(). A worker without a storage pool (storage could not even
 * be set up) falls back to the coordinator's IN-MEMORY history
 * (coordinator/chat_coord.c), which a coordinator restart loses.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../coordinator/chat_proto.h"
#include "response.h"
#include "sio.h"
#include "sio_internal.h"
#include "store_pool.h"

#define ROOM_MAX       128         /* bytes of a room name */
#define TEXT_MAX       (64 * 1024) /* bytes of one chat message's text */
#define ROOMS_PER_CONN 64
#define FLOOD_RATE     100.0 /* packets per second a client may send, sustained */
#define FLOOD_BURST    200.0
#define HISTORY_WAIT_S 5.0

/* One message on its way through the storage pool. */
struct msg_task {
    struct store_task task;
    struct msg_task *next; /* the session's FIFO */
    struct sio_ctx *ctx;
    char sid[EIO_SID_LEN];
    int64_t ack_id;
    char room[ROOM_MAX];
    char from[JWT_USER_MAX];
    char *text;
    size_t tlen;
    enum store_rc rc;
    struct store_err err;
    char id[STORE_ID_LEN];
    int64_t ts;
};

/* A history page read through the storage pool. */
struct hist_task {
    struct store_task task;
    struct http_request *req;
    int aborted;
    char room[ROOM_MAX];
    char before[STORE_ID_LEN];
    int limit;
    enum store_rc rc;
    struct store_err err;
    struct buf out;
};

struct hist_wait {
    struct sio_ctx *ctx;
    struct http_request *req;
    ev_timer timer;
    char qid[24];
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- to the coordinator ------------------------------------------------------ */

static void coord_send(struct sio_ctx *ctx, uint8_t type, const struct buf *b)
{
    if (!ctx->linked) return;
    if (b->len > CHAT_FRAME_MAX || chatq_send(&ctx->q, type, b->data, b->len, -1) < 0)
        log_debug("chat: frame %d to the coordinator dropped", type);
}

static void coord_fields(struct sio_ctx *ctx, uint8_t type, int n, const char *a, const char *b,
                         const char *c, const char *d)
{
    struct buf f;
    buf_init(&f);
    chat_fields_build(&f, n, CF(a), CF(b), CF(c), CF(d));
    if (!buf_failed(&f)) coord_send(ctx, type, &f);
    buf_free(&f);
}

/* ---- emitting ------------------------------------------------------------------ */

/* 2["event",json] to one session (json: serialized JSON, NULL: no argument) */
static void emit_raw(struct eio_session *s, const char *event, const char *json, size_t jlen)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "2[");
    buf_json_str(&b, event);
    if (json) {
        buf_append(&b, ",", 1);
        buf_append(&b, json, jlen);
    }
    buf_append(&b, "]", 1);
    if (!buf_failed(&b)) eio_send(s, b.data, b.len);
    buf_free(&b);
}

static void emit_json(struct eio_session *s, const char *event, json_t *arg)
{
    char *j = json_dumps(arg, JSON_COMPACT | JSON_ENCODE_ANY);
    if (j) emit_raw(s, event, j, strlen(j));
    free(j);
}

/* 5<n>-["event",json] then the n attachments as binary messages: json keeps its
 * {"_placeholder":true,"num":i} objects, parts[i] are the raw bytes. */
static void emit_binary(struct eio_session *s, const char *event, const char *json, size_t jlen,
                        const char *const *parts, const size_t *plen, int n)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "5%d-[", n);
    buf_json_str(&b, event);
    buf_append(&b, ",", 1);
    buf_append(&b, json, jlen);
    buf_append(&b, "]", 1);
    if (!buf_failed(&b)) {
        eio_send(s, b.data, b.len);
        for (int i = 0; i < n && !s->dead; i++) eio_send_binary(s, parts[i], plen[i]);
    }
    buf_free(&b);
}

/* A relayed event with attachments travels between workers as one field
 * (chat_binary_build, coordinator/chat_proto.h). */
_Static_assert(CHAT_BINARY_MAX_PARTS == SIO_MAX_ATTACHMENTS, "one bound for both");

static void binary_field(struct buf *out, const char *json, json_t *const *parts, int n)
{
    const char *p[SIO_MAX_ATTACHMENTS];
    size_t l[SIO_MAX_ATTACHMENTS];
    for (int i = 0; i < n; i++) {
        p[i] = json_string_value(parts[i]);
        l[i] = json_string_length(parts[i]);
    }
    chat_binary_build(out, json, strlen(json), n, p, l);
}

/* Emit `event` with a payload from binary_field() (or plain JSON). The field is
 * the frame's last: not NUL-terminated, so it is parsed within its length only. */
static void emit_field(struct eio_session *s, const char *event, const char *f, size_t len)
{
    struct chat_binary cb;
    int rc = chat_binary_parse(f, len, &cb);
    if (rc == 0) {
        emit_raw(s, event, f, len);
        return;
    }
    if (rc < 0) return;
    emit_binary(s, event, cb.json, cb.json_len, cb.part, cb.part_len, cb.n);
}

static void ack(struct eio_session *s, int64_t id, json_t *arg)
{
    if (id < 0) {
        json_decref(arg);
        return;
    }
    json_t *args = json_array();
    json_array_append_new(args, arg);
    struct buf b;
    buf_init(&b);
    if (sio_encode(&b, SIO_ACK, "/", id, args) == SIO_OK) eio_send(s, b.data, b.len);
    buf_free(&b);
    json_decref(args);
}

static void ack_error(struct eio_session *s, int64_t id, const char *code, const char *msg)
{
    ack(s, id, json_pack("{s:b,s:s,s:s}", "ok", 0, "error", code, "message", msg));
}

/* ---- rooms (local membership) -------------------------------------------------------- */

static int in_room(const struct eio_session *s, const char *room)
{
    for (int i = 0; i < s->nrooms; i++)
        if (strcmp(s->rooms[i], room) == 0) return 1;
    return 0;
}

static int room_join(struct eio_session *s, const char *room)
{
    struct sio_ctx *ctx = s->ctx;
    if (in_room(s, room)) return 0;
    if (s->nrooms >= ROOMS_PER_CONN) return -1;
    if (s->nrooms == s->caprooms) {
        int cap = s->caprooms ? s->caprooms * 2 : 4;
        char **r = realloc(s->rooms, (size_t)cap * sizeof(*r));
        if (!r) return -1;
        s->rooms = r;
        s->caprooms = cap;
    }
    struct sio_room *lr = chat_map_get(&ctx->rooms, room);
    if (!lr) {
        lr = calloc(1, sizeof(*lr));
        int failed;
        if (!lr || (chat_map_put(&ctx->rooms, room, lr, &failed), failed)) {
            free(lr);
            return -1;
        }
    }
    if (lr->n == lr->cap) {
        size_t cap = lr->cap ? lr->cap * 2 : 8;
        struct eio_session **m = realloc(lr->m, cap * sizeof(*m));
        if (!m) return -1;
        lr->m = m;
        lr->cap = cap;
    }
    char *name = strdup(room);
    if (!name) return -1;
    s->rooms[s->nrooms++] = name;
    lr->m[lr->n++] = s;
    if (lr->n == 1) coord_fields(ctx, CHAT_JOIN, 1, room, NULL, NULL, NULL);
    return 0;
}

static void room_leave(struct eio_session *s, const char *room)
{
    struct sio_ctx *ctx = s->ctx;
    int idx = -1;
    for (int i = 0; i < s->nrooms; i++)
        if (strcmp(s->rooms[i], room) == 0) idx = i;
    if (idx < 0) return;
    struct sio_room *lr = chat_map_get(&ctx->rooms, room);
    if (lr) {
        for (size_t k = 0; k < lr->n; k++) {
            if (lr->m[k] != s) continue;
            lr->m[k] = lr->m[--lr->n];
            break;
        }
        if (lr->n == 0) {
            coord_fields(ctx, CHAT_LEAVE, 1, room, NULL, NULL, NULL);
            chat_map_del(&ctx->rooms, room);
            free(lr->m);
            free(lr);
        }
    }
    free(s->rooms[idx]);
    s->rooms[idx] = s->rooms[--s->nrooms];
}

/* Deliver 2["event",json] to this worker's members of room. */
static void room_deliver(struct sio_ctx *ctx, const char *room, const char *event, const char *json,
                         size_t jlen)
{
    struct sio_room *lr = chat_map_get(&ctx->rooms, room);
    if (!lr || lr->n == 0) return;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "2[");
    buf_json_str(&b, event);
    buf_append(&b, ",", 1);
    buf_append(&b, json, jlen);
    buf_append(&b, "]", 1);
    if (!buf_failed(&b)) {
        /* a member may be cut off (slow consumer) while we iterate: copy first */
        size_t n = lr->n;
        struct eio_session **m = malloc(n * sizeof(*m));
        if (m) {
            memcpy(m, lr->m, n * sizeof(*m));
            for (size_t i = 0; i < n; i++)
                if (!m[i]->dead) eio_send(m[i], b.data, b.len);
            free(m);
        }
    }
    buf_free(&b);
}

static int valid_room(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n >= ROOM_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)r[i] < 0x20 || r[i] == 0x7f) return 0;
    return 1;
}

/* join("room") or join({room:"room"}) */
static const char *room_arg(json_t *args)
{
    json_t *a = json_array_get(args, 1);
    if (json_is_object(a)) a = json_object_get(a, "room");
    const char *r = json_string_value(a);
    return r && valid_room(r) ? r : NULL;
}

/* ---- users ------------------------------------------------------------------------------ */

/* The older connection of a user is replaced: tell it, then disconnect it at the
 * Socket.IO level (so the client does not reconnect and replace the new one). */
static void kick(struct eio_session *s)
{
    if (s->dead || !s->connected) return;
    log_info("socket.io: user %s connected again elsewhere; closing the older connection %s",
             s->user, s->sid);
    json_t *arg = json_pack("{s:s,s:s}", "reason", "replaced", "message",
                            "this account connected from another session");
    emit_json(s, "session:replaced", arg);
    json_decref(arg);
    eio_send(s, "1", 1); /* DISCONNECT "/" */
    eio_close(s, 1000, "session replaced");
}

static void random_forget(struct eio_session *s)
{
    if (s->pair_room[0]) room_leave(s, s->pair_room);
    s->partner[0] = '\0';
    s->pair_room[0] = '\0';
    s->random_waiting = 0;
}

void sio_on_close(struct eio_session *s)
{
    struct sio_ctx *ctx = s->ctx;
    if (!s->connected) return;
    s->connected = 0;
    while (s->nrooms > 0) room_leave(s, s->rooms[s->nrooms - 1]);
    if (chat_map_get(&ctx->users, s->user) == s) chat_map_del(&ctx->users, s->user);
    coord_fields(ctx, CHAT_USER_DEL, 2, s->user, s->sid, NULL, NULL);
    s->partner[0] = s->pair_room[0] = '\0';
    s->random_waiting = 0;
}

static void on_connect(struct eio_session *s, json_t *auth)
{
    struct sio_ctx *ctx = s->ctx;
    const struct svcd_config *cfg = ctx->w->cfg;
    if (s->connected) return;
    const char *token = json_string_value(json_object_get(auth, "token"));
    char user[JWT_USER_MAX];
    const char *reason = NULL;
    if (!token) {
        reason = "authentication required: connect with auth: { token: \"<JWT>\" }";
    } else {
        enum jwt_rc rc =
            jwt_verify(token, strlen(token), cfg->auth.jwt_secret, wall_ms() / 1000, user);
        if (rc != JWT_OK) reason = jwt_reason(rc);
    }
    if (reason) {
        log_info("socket.io: connection %s refused: %s", s->sid, reason);
        json_t *err = json_pack("{s:s,s:{s:s}}", "message", reason, "data", "code", "UNAUTHORIZED");
        struct buf b;
        buf_init(&b);
        sio_encode(&b, SIO_CONNECT_ERROR, "/", -1, err);
        eio_send(s, b.data, b.len);
        buf_free(&b);
        json_decref(err);
        return;
    }
    snprintf(s->user, sizeof(s->user), "%s", user);
    struct eio_session *old = chat_map_get(&ctx->users, user);
    if (old && old != s) kick(old);
    int failed;
    chat_map_put(&ctx->users, user, s, &failed);
    s->connected = 1;
    s->connected_at_ms = now_wall_ms();
    char at[24];
    snprintf(at, sizeof(at), "%lld", (long long)s->connected_at_ms);
    coord_fields(ctx, CHAT_USER_ADD, 3, user, s->sid, at, NULL);
    char pkt[64];
    int n = snprintf(pkt, sizeof(pkt), "0{\"sid\":\"%s\"}", s->sio_sid);
    eio_send(s, pkt, (size_t)n);
}

/* ---- events -------------------------------------------------------------------------------- */

/* {id,room,from,text,ts} to the room on every worker, then the sender's ack. */
static void broadcast_message(struct sio_ctx *ctx, struct eio_session *s, int64_t ack_id,
                              const char *id, const char *room, const char *from, const char *text,
                              size_t tlen, int64_t ts, int keep_history)
{
    json_t *msg = json_pack("{s:s,s:s,s:s,s:s#,s:I}", "id", id, "room", room, "from", from, "text",
                            text, tlen, "ts", (json_int_t)ts);
    char *j = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!j) {
        if (s) ack_error(s, ack_id, "INTERNAL", "out of memory");
        return;
    }
    size_t jl = strlen(j);
    struct buf f;
    buf_init(&f);
    chat_fields_build(&f, 4, CF(room), CF(keep_history ? "1" : "0"), CF("message"), CFN(j, jl));
    coord_send(ctx, CHAT_ROOM_EMIT, &f);
    buf_free(&f);
    room_deliver(ctx, room, "message", j, jl);
    free(j);
    if (s) ack(s, ack_id, json_pack("{s:b,s:s,s:I}", "ok", 1, "id", id, "ts", (json_int_t)ts));
}

static void msg_task_free(struct msg_task *t)
{
    free(t->text);
    free(t);
}

static void msg_run(struct store_task *st, struct store *store)
{
    struct msg_task *t = (struct msg_task *)st;
    t->rc = store_message_add(store, t->room, t->from, t->text, t->tlen, t->id, &t->ts, &t->err);
}

static void msg_submit_next(struct eio_session *s);

static void msg_done(struct store_task *st)
{
    struct msg_task *t = (struct msg_task *)st;
    struct sio_ctx *ctx = t->ctx;
    struct eio_session *s = eio_find(ctx, t->sid);
    if (s && s->mq_head == t) {
        s->mq_head = t->next;
        if (!s->mq_head) s->mq_tail = NULL;
        s->mq_inflight = 0;
        s->mq_len--;
    } else {
        s = NULL; /* the session ended meanwhile: broadcast, nobody to ack */
    }
    if (t->rc == STORE_OK) {
        broadcast_message(ctx, s, t->ack_id, t->id, t->room, t->from, t->text, t->tlen, t->ts, 0);
    } else if (s) {
        log_warn("chat: cannot store a message to room %s: %s", t->room, t->err.msg);
        ack_error(s, t->ack_id, t->rc == STORE_UNAVAILABLE ? "DB_UNAVAILABLE" : "STORE_ERROR",
                  t->err.msg[0] ? t->err.msg : "the message could not be stored");
    }
    msg_task_free(t);
    if (s) msg_submit_next(s);
}

static void msg_submit_next(struct eio_session *s)
{
    struct msg_task *t = s->mq_head;
    if (!t || s->mq_inflight) return;
    s->mq_inflight = 1;
    if (store_pool_submit(s->ctx->w->pool, &t->task) < 0) {
        s->mq_inflight = 0;
        s->mq_head = t->next;
        if (!s->mq_head) s->mq_tail = NULL;
        s->mq_len--;
        ack_error(s, t->ack_id, "DB_UNAVAILABLE", "svcd is shutting down");
        msg_task_free(t);
        msg_submit_next(s);
    }
}

/* Queue a message for storage; one connection's messages are stored in order. */
static void store_message(struct eio_session *s, const char *room, const char *text, size_t tlen,
                          int64_t ack_id)
{
    struct msg_task *t = calloc(1, sizeof(*t));
    if (t) t->text = malloc(tlen + 1);
    if (!t || !t->text) {
        free(t);
        ack_error(s, ack_id, "INTERNAL", "out of memory");
        return;
    }
    if (s->mq_len >= 64) {
        msg_task_free(t);
        ack_error(s, ack_id, "BUSY", "too many messages waiting to be stored; slow down");
        return;
    }
    t->task.run = msg_run;
    t->task.done = msg_done;
    t->ctx = s->ctx;
    snprintf(t->sid, sizeof(t->sid), "%s", s->sid);
    t->ack_id = ack_id;
    snprintf(t->room, sizeof(t->room), "%s", room);
    snprintf(t->from, sizeof(t->from), "%s", s->user);
    memcpy(t->text, text, tlen);
    t->text[tlen] = '\0';
    t->tlen = tlen;
    if (s->mq_tail)
        s->mq_tail->next = t;
    else
        s->mq_head = t;
    s->mq_tail = t;
    s->mq_len++;
    msg_submit_next(s);
}

void sio_session_freed(struct eio_session *s)
{
    /* the one in flight is owned by the pool; its done callback finds no session */
    struct msg_task *t = s->mq_inflight && s->mq_head ? s->mq_head->next : s->mq_head;
    while (t) {
        struct msg_task *n = t->next;
        msg_task_free(t);
        t = n;
    }
    s->mq_head = s->mq_tail = NULL;
}

static void ev_message(struct eio_session *s, json_t *args, int64_t ack_id)
{
    struct sio_ctx *ctx = s->ctx;
    json_t *a = json_array_get(args, 1);
    const char *room = json_string_value(json_object_get(a, "room"));
    const char *text = json_string_value(json_object_get(a, "text"));
    if (!room || !valid_room(room) || !text) {
        ack_error(s, ack_id, "BAD_REQUEST", "message needs {room: string, text: string}");
        return;
    }
    size_t tlen = json_string_length(json_object_get(a, "text"));
    if (tlen == 0 || tlen > TEXT_MAX) {
        ack_error(s, ack_id, "BAD_REQUEST", "text must be 1 to 65536 bytes");
        return;
    }
    if (!in_room(s, room)) {
        ack_error(s, ack_id, "NOT_IN_ROOM", "join the room before sending to it");
        return;
    }
    if (ctx->w->pool) {
        store_message(s, room, text, tlen, ack_id);
        return;
    }
    /* IN-MEMORY FALLBACK (no storage pool): the coordinator keeps the history */
    int64_t ts = wall_ms();
    char id[40];
    snprintf(id, sizeof(id), "%013llx%02x%08llx", (unsigned long long)ts,
             (unsigned)ctx->w->slot & 0xff, (unsigned long long)(++ctx->msg_seq & 0xffffffffu));
    broadcast_message(ctx, s, ack_id, id, room, s->user, text, tlen, ts, 1);
}

static void ev_random(struct eio_session *s, const char *op, int64_t ack_id)
{
    struct sio_ctx *ctx = s->ctx;
    if (strcmp(op, "join") == 0) {
        if (s->partner[0]) {
            ack(s, ack_id,
                json_pack("{s:b,s:s,s:s}", "ok", 1, "status", "matched", "partnerId", s->partner));
            return;
        }
        s->random_waiting = 1;
    } else {
        random_forget(s);
        if (strcmp(op, "next") == 0) s->random_waiting = 1;
    }
    coord_fields(ctx, CHAT_RANDOM, 2, op, s->user, NULL, NULL);
    ack(s, ack_id,
        json_pack("{s:b,s:s}", "ok", 1, "status", s->random_waiting ? "waiting" : "left"));
}

static void ev_signal_relay(struct eio_session *s, json_t *args, int64_t ack_id)
{
    json_t *a = json_array_get(args, 1);
    const char *to = json_string_value(json_object_get(a, "to"));
    json_t *data = json_object_get(a, "data");
    if (!to || !data) {
        ack_error(s, ack_id, "BAD_REQUEST", "signal needs {to: partnerId, data}");
        return;
    }
    if (!s->partner[0] || strcmp(s->partner, to) != 0) {
        ack_error(s, ack_id, "NOT_PARTNER", "signals go only to your matched partner");
        return;
    }
    json_t *out = json_pack("{s:s,s:O}", "from", s->user, "data", data);
    char *j = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    /* binary data: the placeholders stay, the attachments go along as binary */
    int nb = s->bin_relay ? s->nparts : 0;
    size_t size = j ? strlen(j) : 0;
    for (int i = 0; i < nb; i++) size += json_string_length(s->parts[i]) + 24;
    if (!j || size > CHAT_FRAME_MAX - 1024) {
        free(j);
        ack_error(s, ack_id, "TOO_LARGE", "signal data too large");
        return;
    }
    struct buf f;
    buf_init(&f);
    if (nb)
        binary_field(&f, j, s->parts, nb);
    else
        buf_puts(&f, j);
    free(j);
    if (buf_failed(&f)) {
        buf_free(&f);
        ack_error(s, ack_id, "TOO_LARGE", "signal data too large");
        return;
    }
    struct eio_session *peer = chat_map_get(&s->ctx->users, to);
    if (peer && !peer->dead && strcmp(peer->partner, s->user) == 0) {
        emit_field(peer, "signal", f.data, f.len); /* same worker */
    } else {
        struct buf fr;
        buf_init(&fr);
        chat_fields_build(&fr, 3, CF(s->user), CF(to), CFN(f.data, f.len));
        if (!buf_failed(&fr)) coord_send(s->ctx, CHAT_SIGNAL, &fr);
        buf_free(&fr);
    }
    buf_free(&f);
    ack(s, ack_id, json_pack("{s:b}", "ok", 1));
}

static void on_event(struct eio_session *s, json_t *args, int64_t ack_id)
{
    const char *name = json_string_value(json_array_get(args, 0));
    if (!name) {
        ack_error(s, ack_id, "BAD_REQUEST", "unknown event");
        return;
    }
    if (strcmp(name, "message") == 0) {
        ev_message(s, args, ack_id);
    } else if (strcmp(name, "join") == 0 || strcmp(name, "leave") == 0) {
        const char *room = room_arg(args);
        if (!room) {
            ack_error(s, ack_id, "BAD_REQUEST", "expected a room name (1 to 127 bytes)");
            return;
        }
        if (name[0] == 'j') {
            if (room_join(s, room) < 0) {
                ack_error(s, ack_id, "TOO_MANY_ROOMS", "too many rooms for one connection");
                return;
            }
        } else {
            room_leave(s, room);
        }
        ack(s, ack_id, json_pack("{s:b,s:s}", "ok", 1, "room", room));
    } else if (strcmp(name, "random:join") == 0) {
        ev_random(s, "join", ack_id);
    } else if (strcmp(name, "random:leave") == 0) {
        ev_random(s, "leave", ack_id);
    } else if (strcmp(name, "random:next") == 0) {
        ev_random(s, "next", ack_id);
    } else if (strcmp(name, "signal") == 0) {
        ev_signal_relay(s, args, ack_id);
    } else {
        ack_error(s, ack_id, "UNKNOWN_EVENT", "this server does not handle that event");
    }
}

static int dispatch(struct eio_session *s, struct sio_packet *p)
{
    if (strcmp(p->nsp, "/") != 0) {
        if (p->type == SIO_CONNECT) {
            struct buf b;
            buf_init(&b);
            json_t *e = json_pack("{s:s}", "message", "Invalid namespace");
            sio_encode(&b, SIO_CONNECT_ERROR, p->nsp, -1, e);
            eio_send(s, b.data, b.len);
            json_decref(e);
            buf_free(&b);
        }
        return 0;
    }
    switch (p->type) {
    case SIO_CONNECT:
        on_connect(s, p->data);
        return 0;
    case SIO_DISCONNECT:
        sio_on_close(s);
        return 0;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        if (s->connected) on_event(s, p->data, p->ack_id);
        return 0;
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return 0; /* the server asks for no acks */
    case SIO_CONNECT_ERROR:
    default:
        return -1;
    }
}

static int flood_ok(struct eio_session *s)
{
    ev_tstamp now = ev_now(s->ctx->w->loop);
    s->tokens += (now - s->tokens_at) * FLOOD_RATE;
    if (s->tokens > FLOOD_BURST) s->tokens = FLOOD_BURST;
    s->tokens_at = now;
    if (s->tokens < 1.0) return 0;
    s->tokens -= 1.0;
    return 1;
}

int sio_on_message(struct eio_session *s, int binary, const char *data, size_t len)
{
    if (!flood_ok(s)) {
        log_info("socket.io session %s (user %s) sends faster than %.0f packets/s; closing it",
                 s->sid, s->user[0] ? s->user : "-", FLOOD_RATE);
        eio_close(s, 1008, "flood");
        return 0;
    }
    if (binary) {
        if (s->pending_left <= 0) return -1; /* an attachment nobody announced */
        json_t *raw = json_stringn_nocheck(len ? data : "", len);
        if (!raw) return -1;
        s->parts[s->nparts++] = raw;
        if (--s->pending_left > 0) return 0;
        int rc;
        const char *ev = json_string_value(json_array_get(s->pending.data, 0));
        if (s->pending.type == SIO_BINARY_EVENT && ev && strcmp(ev, "signal") == 0) {
            /* relayed as it came: placeholders checked (on a copy) and kept */
            json_t *chk = json_deep_copy(s->pending.data);
            rc = chk ? sio_fill_placeholders(chk, s->parts, s->nparts) : -1;
            json_decref(chk);
            s->bin_relay = 1;
            if (rc == 0) rc = dispatch(s, &s->pending);
            s->bin_relay = 0;
        } else {
            /* events the server reads itself: attachments become base64 strings */
            for (int i = 0; i < s->nparts; i++) {
                struct buf b64;
                buf_init(&b64);
                sio_base64_encode(&b64, (const unsigned char *)json_string_value(s->parts[i]),
                                  json_string_length(s->parts[i]));
                json_t *str = json_stringn(b64.data ? b64.data : "", b64.len);
                buf_free(&b64);
                json_decref(s->parts[i]);
                s->parts[i] = str ? str : json_null();
            }
            rc = sio_fill_placeholders(s->pending.data, s->parts, s->nparts);
            if (rc == 0) rc = dispatch(s, &s->pending);
        }
        for (int i = 0; i < s->nparts; i++) json_decref(s->parts[i]);
        s->nparts = 0;
        sio_packet_clear(&s->pending);
        return rc;
    }
    if (s->pending_left > 0) return -1; /* attachments were due first */
    struct sio_packet p;
    int rc = sio_decode(data, len, &p);
    if (rc != SIO_OK) {
        log_info("socket.io session %s: %s", s->sid, sio_strerror(rc));
        return -1;
    }
    if (p.attachments > 0) {
        s->pending = p;
        s->pending_left = p.attachments;
        s->nparts = 0;
        return 0;
    }
    rc = dispatch(s, &p);
    sio_packet_clear(&p);
    return rc;
}

/* ---- frames from the coordinator ----------------------------------------------------------- */

static struct eio_session *user_session(struct sio_ctx *ctx, const char *user)
{
    struct eio_session *s = chat_map_get(&ctx->users, user);
    return s && !s->dead && s->connected ? s : NULL;
}

static void history_done(struct hist_wait *hw, int status, const char *json, size_t len)
{
    struct sio_ctx *ctx = hw->ctx;
    ev_timer_stop(ctx->w->loop, &hw->timer);
    chat_map_del(&ctx->waiting, hw->qid);
    struct http_request *req = hw->req;
    if (req) {
        req->on_abort = NULL;
        if (status == 200) {
            buf_append(resp_body(req), json, len);
            resp_send(req, 200, CT_JSON);
        } else {
            resp_header(req, "Retry-After", "1");
            resp_error(req, 503, "UNAVAILABLE", "the chat history is unavailable right now");
        }
    }
    free(hw);
}

void sio_chat_frame(struct sio_ctx *ctx, uint8_t type, const char *payload, size_t len, int fd)
{
    struct chat_fields f;
    struct eio_session *s;
    switch (type) {
    case CHAT_ROOM_EMIT:
        if (chat_fields_split(payload, len, 3, &f) == 0)
            room_deliver(ctx, f.f[0], f.f[1], f.f[2], f.len[2]);
        break;
    case CHAT_USER_EMIT:
        if (chat_fields_split(payload, len, 3, &f) == 0 && (s = user_session(ctx, f.f[0])))
            emit_field(s, f.f[1], f.f[2], f.len[2]);
        break;
    case CHAT_KICK:
        if (chat_fields_split(payload, len, 2, &f) == 0) {
            char sid[EIO_SID_LEN];
            if (f.len[1] >= sizeof(sid)) break;
            memcpy(sid, f.f[1], f.len[1]);
            sid[f.len[1]] = '\0';
            s = eio_find(ctx, sid);
            if (s && strcmp(s->user, f.f[0]) == 0) kick(s);
        }
        break;
    case CHAT_MATCHED:
    case CHAT_PARTNER_LEFT:
        if (chat_fields_split(payload, len, 3, &f) == 0 && (s = user_session(ctx, f.f[0]))) {
            char room[96];
            snprintf(room, sizeof(room), "%.*s", (int)f.len[2], f.f[2]);
            if (type == CHAT_MATCHED) {
                random_forget(s);
                snprintf(s->partner, sizeof(s->partner), "%s", f.f[1]);
                snprintf(s->pair_room, sizeof(s->pair_room), "%s", room);
                room_join(s, room);
                json_t *a = json_pack("{s:s,s:s}", "partnerId", f.f[1], "room", room);
                emit_json(s, "random:matched", a);
                json_decref(a);
            } else if (strcmp(s->partner, f.f[1]) == 0) {
                random_forget(s);
                json_t *a = json_pack("{s:s,s:s}", "partnerId", f.f[1], "room", room);
                emit_json(s, "random:partner-left", a);
                json_decref(a);
            }
        }
        break;
    case CHAT_HISTORY_RES:
        if (chat_fields_split(payload, len, 2, &f) == 0) {
            struct hist_wait *hw = chat_map_get(&ctx->waiting, f.f[0]);
            if (hw) history_done(hw, 200, f.f[1], f.len[1]);
        }
        break;
    default:
        break;
    }
    if (fd >= 0) close(fd);
}

void sio_reannounce(struct sio_ctx *ctx)
{
    char gen[16];
    snprintf(gen, sizeof(gen), "%d", ctx->w->generation);
    coord_fields(ctx, CHAT_HELLO, 1, gen, NULL, NULL, NULL);
    size_t i;
    for (struct chat_map_ent *e = chat_map_first(&ctx->users, &i); e;
         e = chat_map_next(&ctx->users, e, &i)) {
        struct eio_session *s = e->value;
        char at[24];
        snprintf(at, sizeof(at), "%lld", (long long)s->connected_at_ms);
        coord_fields(ctx, CHAT_USER_ADD, 3, s->user, s->sid, at, NULL);
    }
    for (struct chat_map_ent *e = chat_map_first(&ctx->rooms, &i); e;
         e = chat_map_next(&ctx->rooms, e, &i))
        coord_fields(ctx, CHAT_JOIN, 1, e->key, NULL, NULL, NULL);
    for (struct chat_map_ent *e = chat_map_first(&ctx->users, &i); e;
         e = chat_map_next(&ctx->users, e, &i)) {
        struct eio_session *s = e->value;
        if (s->partner[0])
            coord_fields(ctx, CHAT_RANDOM, 4, "pair", s->user, s->partner, s->pair_room);
        else if (s->random_waiting)
            coord_fields(ctx, CHAT_RANDOM, 2, "join", s->user, NULL, NULL);
    }
    if (ctx->users.n || ctx->rooms.n)
        log_info("coordinator linked: re-announced %zu user(s) and %zu room(s)", ctx->users.n,
                 ctx->rooms.n);
}

void sio_ctx_free_chat(struct sio_ctx *ctx)
{
    size_t i;
    for (struct chat_map_ent *e = chat_map_first(&ctx->rooms, &i); e;
         e = chat_map_next(&ctx->rooms, e, &i)) {
        struct sio_room *lr = e->value;
        free(lr->m);
        free(lr);
    }
    chat_map_free(&ctx->rooms);
    chat_map_init(&ctx->rooms);
    struct chat_map_ent *e;
    while ((e = chat_map_first(&ctx->waiting, &i))) history_done(e->value, 503, NULL, 0);
}

/* ---- public hooks -------------------------------------------------------------------------- */

void chat_push_user(struct worker_ctx *w, const char *user, const char *event, const char *json)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx || !user || !event) return;
    if (!json) json = "null";
    struct eio_session *s = user_session(ctx, user);
    if (s) {
        emit_raw(s, event, json, strlen(json));
        return;
    }
    coord_fields(ctx, CHAT_USER_EMIT, 3, user, event, json, NULL);
}

void chat_emit_room(struct worker_ctx *w, const char *room, const char *event, const char *json)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx || !room || !event) return;
    if (!json) json = "null";
    struct buf f;
    buf_init(&f);
    chat_fields_build(&f, 4, CF(room), CF("0"), CF(event), CF(json));
    coord_send(ctx, CHAT_ROOM_EMIT, &f);
    buf_free(&f);
    room_deliver(ctx, room, event, json, strlen(json));
}

void sio_room_event(struct worker_ctx *w, const char *payload, size_t len)
{
    struct sio_ctx *ctx = w->sio;
    if (!ctx) return;
    json_t *o = json_loadb(payload, len, 0, NULL);
    const char *room = json_string_value(json_object_get(o, "room"));
    const char *event = json_string_value(json_object_get(o, "event"));
    json_t *data = json_object_get(o, "data");
    if (room && event) {
        char *j = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        if (j) room_deliver(ctx, room, event, j, strlen(j));
        free(j);
    }
    json_decref(o);
}

/* ---- GET /api/rooms/:room/messages ---------------------------------------------------------- */

static void hist_abort(struct http_request *req, void *arg)
{
    struct hist_wait *hw = arg;
    hw->req = NULL;
    history_done(hw, 503, NULL, 0);
}

static void hist_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    history_done(t->data, 503, NULL, 0);
}

static void url_decode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < cap; i++) {
        if (in[i] == '%' && isxdigit((unsigned char)in[i + 1]) &&
            isxdigit((unsigned char)in[i + 2])) {
            char hex[3] = {in[i + 1], in[i + 2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = in[i] == '+' ? ' ' : in[i];
        }
    }
    out[o] = '\0';
}

static void query_param(const char *query, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            char raw[256];
            size_t vl = seg - nl - 1 < sizeof(raw) - 1 ? seg - nl - 1 : sizeof(raw) - 1;
            memcpy(raw, p + nl + 1, vl);
            raw[vl] = '\0';
            url_decode(raw, out, cap);
            return;
        }
        p = amp ? amp + 1 : NULL;
    }
}

static int hist_row(void *arg, const struct store_message *m)
{
    struct hist_task *t = arg;
    if (t->out.len && t->out.data[t->out.len - 1] != '[') buf_append(&t->out, ",", 1);
    buf_puts(&t->out, "{\"id\":");
    buf_json_str(&t->out, m->id);
    buf_puts(&t->out, ",\"room\":");
    buf_json_str(&t->out, m->room);
    buf_puts(&t->out, ",\"from\":");
    buf_json_str(&t->out, m->from);
    buf_puts(&t->out, ",\"text\":");
    buf_json_strn(&t->out, m->text, m->text_len);
    buf_printf(&t->out, ",\"ts\":%lld}", (long long)m->ts);
    return buf_failed(&t->out) ? -1 : 0;
}

static void hist_run(struct store_task *st, struct store *store)
{
    struct hist_task *t = (struct hist_task *)st;
    buf_puts(&t->out, "{\"room\":");
    buf_json_str(&t->out, t->room);
    buf_puts(&t->out, ",\"messages\":[");
    t->rc = store_messages(store, t->room, t->before[0] ? t->before : NULL, t->limit, hist_row, t,
                           &t->err);
    buf_puts(&t->out, "]}");
}

static void hist_task_done(struct store_task *st)
{
    struct hist_task *t = (struct hist_task *)st;
    if (!t->aborted) {
        struct http_request *req = t->req;
        req->on_abort = NULL;
        if (t->rc == STORE_OK && !buf_failed(&t->out)) {
            buf_append(resp_body(req), t->out.data, t->out.len);
            resp_send(req, 200, CT_JSON);
        } else if (t->rc == STORE_BAD_INPUT) {
            resp_error(req, 400, "BAD_REQUEST", "%s", t->err.msg);
        } else if (t->rc == STORE_UNAVAILABLE) {
            resp_header(req, "Retry-After", "5");
            resp_error(req, 503, "DB_UNAVAILABLE", "%s", t->err.msg);
        } else {
            resp_error(req, 500, "INTERNAL", "%s",
                       t->err.msg[0] ? t->err.msg : "cannot read the history");
        }
    }
    buf_free(&t->out);
    free(t);
}

static void hist_task_abort(struct http_request *req, void *arg)
{
    ((struct hist_task *)arg)->aborted = 1;
}

static void history_from_store(struct http_request *req, const char *room, const char *before,
                               int limit)
{
    struct hist_task *t = calloc(1, sizeof(*t));
    if (!t) {
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    t->task.run = hist_run;
    t->task.done = hist_task_done;
    t->req = req;
    snprintf(t->room, sizeof(t->room), "%.127s", room);
    snprintf(t->before, sizeof(t->before), "%.39s", before);
    t->limit = limit;
    buf_init(&t->out);
    if (store_pool_db_down(req->w->pool)) { /* known down: answer at once */
        buf_free(&t->out);
        free(t);
        resp_header(req, "Retry-After", "5");
        resp_error(req, 503, "DB_UNAVAILABLE", "the database is unavailable; retry later");
        return;
    }
    if (store_pool_submit(req->w->pool, &t->task) < 0) {
        free(t);
        resp_header(req, "Retry-After", "5");
        resp_error(req, 503, "DB_UNAVAILABLE", "svcd is shutting down");
        return;
    }
    req->on_abort = hist_task_abort;
    req->abort_arg = t;
}

void handle_room_messages(struct http_request *req)
{
    struct sio_ctx *ctx = req->w->sio;
    char room[ROOM_MAX * 3], before[64], limit[16];
    const char *raw = http_request_param(req, "room");
    url_decode(raw ? raw : "", room, sizeof(room));
    if (!valid_room(room)) {
        resp_error(req, 400, "BAD_REQUEST", "room must be 1 to 127 bytes");
        return;
    }
    query_param(req->query, "before", before, sizeof(before));
    query_param(req->query, "limit", limit, sizeof(limit));
    if (limit[0]) {
        char *end;
        long l = strtol(limit, &end, 10);
        if (*end || l < 1 || l > 200) {
            resp_error(req, 400, "BAD_REQUEST", "limit must be an integer from 1 to 200");
            return;
        }
    } else {
        snprintf(limit, sizeof(limit), "50");
    }
    if (req->w->pool) {
        history_from_store(req, room, before, atoi(limit));
        return;
    }
    if (!ctx || !ctx->linked) {
        resp_header(req, "Retry-After", "1");
        resp_error(req, 503, "UNAVAILABLE", "the chat history is unavailable right now");
        return;
    }
    struct hist_wait *hw = calloc(1, sizeof(*hw));
    int failed = 1;
    if (hw) {
        hw->ctx = ctx;
        hw->req = req;
        snprintf(hw->qid, sizeof(hw->qid), "%llu", ++ctx->qid_seq);
        chat_map_put(&ctx->waiting, hw->qid, hw, &failed);
    }
    if (failed) {
        free(hw);
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    ev_timer_init(&hw->timer, hist_timeout, HISTORY_WAIT_S, 0.);
    hw->timer.data = hw;
    ev_timer_start(ctx->w->loop, &hw->timer);
    req->on_abort = hist_abort;
    req->abort_arg = hw;
    coord_fields(ctx, CHAT_HISTORY_REQ, 4, hw->qid, room, before, limit);
}
