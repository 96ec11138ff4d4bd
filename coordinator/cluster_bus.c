/*
 * cluster_bus.c — the MongoDB-backed event bus between hosts (see cluster_bus.h).
 *
 * One thread per coordinator owns a mongoc_client_t (clients are not
 * thread-safe; this one never leaves its thread). It loops: publish what the
 * loop queued, read what is new, now and then delete old events, then sleep
 * until the next poll (25 ms) or until something is queued. Received events go
 * back to the loop through a mutex-protected list and an ev_async.
 *
 * Why a polled, sequence-numbered collection rather than a tailable cursor or
 * change streams: both need a capped collection or a replica set, which
 * FerretDB (the MongoDB-wire server the tests use) does not offer; an insert
 * under the unique _id index and a range query work on every MongoDB and on
 * FerretDB alike.
 */
#include "cluster_bus.h"

#include <bson/bson.h>
#include <errno.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/config.h"
#include "../common/log.h"

#define BUS_COLLECTION "svcd_bus"
#define POLL_MS        25    /* read cadence: the cross-host latency floor */
#define BATCH          256   /* events read per query */
#define GAP_WAIT_MS    1000  /* how long a hole in the sequence is waited for */
#define KEEP_MS        60000 /* events older than this are deleted */
#define CLEAN_EVERY_MS 10000
#define QUEUE_TTL_MS   10000 /* an event that could not be published by then is dropped */
#define QUEUE_MAX      100000
#define DUP_TRIES      64

struct bus_event {
    struct bus_event *next;
    char type[32];
    char *key;
    char *data;
    size_t len;
    int64_t at_ms;
    int64_t queued_mono;
    char host[40];
};

struct cluster_bus {
    struct ev_loop *loop;
    ev_async wake;
    cluster_recv_fn fn;
    void *arg;
    char host[40];
    char shown[512]; /* the URI with its password replaced, for logs */
    mongoc_uri_t *uri;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct bus_event *out_head, *out_tail; /* to publish (loop → thread) */
    size_t nout;
    struct bus_event *in_head, *in_tail; /* received (thread → loop) */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ev_free(struct bus_event *e)
{
    if (!e) return;
    free(e->key);
    free(e->data);
    free(e);
}

static void list_free(struct bus_event *e)
{
    while (e) {
        struct bus_event *n = e->next;
        ev_free(e);
        e = n;
    }
}

/* ---- the loop side -------------------------------------------------------------- */

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    struct cluster_bus *b = a->data;
    pthread_mutex_lock(&b->mu);
    struct bus_event *e = b->in_head;
    b->in_head = b->in_tail = NULL;
    pthread_mutex_unlock(&b->mu);
    while (e) {
        struct bus_event *n = e->next;
        b->fn(b->arg, e->type, e->key, e->data, e->len, e->at_ms, e->host);
        ev_free(e);
        e = n;
    }
}

void cluster_bus_publish(struct cluster_bus *b, const char *type, const char *key, const char *data,
                         size_t len, int64_t at_ms)
{
    if (!b) return;
    struct bus_event *e = calloc(1, sizeof(*e));
    if (!e) return;
    snprintf(e->type, sizeof(e->type), "%s", type);
    e->key = strdup(key ? key : "");
    e->data = malloc(len ? len : 1);
    if (!e->key || !e->data) {
        ev_free(e);
        return;
    }
    if (len) memcpy(e->data, data, len);
    e->len = len;
    e->at_ms = at_ms;
    e->queued_mono = mono_ms();
    pthread_mutex_lock(&b->mu);
    if (b->nout >= QUEUE_MAX) {
        pthread_mutex_unlock(&b->mu);
        log_warn("cluster: %d events wait for MongoDB; dropping a %s event", QUEUE_MAX, type);
        ev_free(e);
        return;
    }
    if (b->out_tail)
        b->out_tail->next = e;
    else
        b->out_head = e;
    b->out_tail = e;
    b->nout++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

const char *cluster_bus_host(const struct cluster_bus *b)
{
    return b ? b->host : "";
}

/* ---- the thread side ------------------------------------------------------------- */

struct bus_thread {
    struct cluster_bus *b;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    int64_t last; /* highest _id delivered (or skipped) */
    int64_t hi;   /* highest _id seen anywhere: where the next insert starts */
    int64_t gap_since;
    int64_t last_clean;
    int connected;
    int64_t backoff_ms;
    unsigned long long dropped;
};

static int query_max(struct bus_thread *t, int64_t *out, bson_error_t *err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "limit", BCON_INT64(1),
                            "projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(t->coll, &filter, opts, NULL);
    const bson_t *doc;
    *out = 0;
    while (mongoc_cursor_next(c, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_NUMBER(&it))
            *out = bson_iter_as_int64(&it);
    }
    int ok = !mongoc_cursor_error(c, err);
    mongoc_cursor_destroy(c);
    bson_destroy(opts);
    bson_destroy(&filter);
    return ok ? 0 : -1;
}

static void set_connected(struct bus_thread *t, int up, const char *why)
{
    if (up && !t->connected) {
        log_info("cluster: chat events shared with the other hosts through MongoDB at %s "
                 "(host id %s)",
                 t->b->shown, t->b->host);
        t->backoff_ms = 0;
    } else if (!up && t->connected) {
        log_warn("cluster: MongoDB at %s unreachable for chat events: %s; other hosts see this "
                 "host's chat late (retrying)",
                 t->b->shown, why);
    }
    t->connected = up;
}

/* Publish one event: insert it as _id hi+1, moving on past ids other hosts took. */
static int publish_one(struct bus_thread *t, struct bus_event *e, bson_error_t *err)
{
    for (int tries = 0; tries < DUP_TRIES; tries++) {
        int64_t id = t->hi + 1;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t ts = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000; /* for clean_old */
        bson_t *doc = BCON_NEW("_id", BCON_INT64(id), "host", BCON_UTF8(t->b->host), "type",
                               BCON_UTF8(e->type), "key", BCON_UTF8(e->key), "at",
                               BCON_INT64(e->at_ms), "ts", BCON_INT64(ts));
        BSON_APPEND_BINARY(doc, "data", BSON_SUBTYPE_BINARY, (const uint8_t *)e->data,
                           (uint32_t)e->len);
        bool ok = mongoc_collection_insert_one(t->coll, doc, NULL, NULL, err);
        bson_destroy(doc);
        if (ok) {
            t->hi = id;
            return 0;
        }
        if (err->code != 11000) return -1; /* not a duplicate key: the database is the problem */
        t->hi = id;                        /* taken by another host: try the next one */
        if (tries % 8 == 7) {
            int64_t m;
            if (query_max(t, &m, err) < 0) return -1;
            if (m > t->hi) t->hi = m;
        }
    }
    snprintf(err->message, sizeof(err->message), "no free sequence number after %d tries",
             DUP_TRIES);
    return -1;
}

static void deliver(struct cluster_bus *b, const bson_t *doc, int64_t id)
{
    bson_iter_t it;
    const char *host = "", *type = "", *key = "";
    const uint8_t *data = NULL;
    uint32_t dlen = 0;
    int64_t at = 0;
    if (bson_iter_init(&it, doc)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (!strcmp(k, "host") && BSON_ITER_HOLDS_UTF8(&it))
                host = bson_iter_utf8(&it, NULL);
            else if (!strcmp(k, "type") && BSON_ITER_HOLDS_UTF8(&it))
                type = bson_iter_utf8(&it, NULL);
            else if (!strcmp(k, "key") && BSON_ITER_HOLDS_UTF8(&it))
                key = bson_iter_utf8(&it, NULL);
            else if (!strcmp(k, "at") && BSON_ITER_HOLDS_NUMBER(&it))
                at = bson_iter_as_int64(&it);
            else if (!strcmp(k, "data") && BSON_ITER_HOLDS_BINARY(&it)) {
                bson_subtype_t st;
                bson_iter_binary(&it, &st, &dlen, &data);
            }
        }
    }
    if (!strcmp(host, b->host)) return; /* our own */
    struct bus_event *e = calloc(1, sizeof(*e));
    if (!e) return;
    snprintf(e->type, sizeof(e->type), "%s", type);
    snprintf(e->host, sizeof(e->host), "%s", host);
    e->key = strdup(key);
    e->data = malloc(dlen ? dlen : 1);
    if (!e->key || !e->data) {
        ev_free(e);
        return;
    }
    if (dlen) memcpy(e->data, data, dlen);
    e->len = dlen;
    e->at_ms = at;
    (void)id;
    pthread_mutex_lock(&b->mu);
    if (b->in_tail)
        b->in_tail->next = e;
    else
        b->in_head = e;
    b->in_tail = e;
    pthread_mutex_unlock(&b->mu);
}

/* Read what is new; returns the number of events seen, -1 on a database error. */
static int poll_once(struct bus_thread *t, bson_error_t *err)
{
    bson_t *filter = BCON_NEW("_id", "{", "$gt", BCON_INT64(t->last), "}");
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(BATCH));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(t->coll, filter, opts, NULL);
    const bson_t *doc;
    int n = 0, woke = 0;
    while (mongoc_cursor_next(c, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_NUMBER(&it)) continue;
        int64_t id = bson_iter_as_int64(&it);
        if (id <= t->last) continue;
        if (id > t->hi) t->hi = id;
        if (id != t->last + 1) {
            int64_t now = mono_ms();
            if (!t->gap_since) t->gap_since = now;
            if (now - t->gap_since < GAP_WAIT_MS) break; /* wait for the hole to fill */
            log_debug("cluster: sequence hole %lld..%lld skipped", (long long)t->last + 1,
                      (long long)id - 1);
        }
        t->gap_since = 0;
        t->last = id;
        deliver(t->b, doc, id);
        n++;
        woke = 1;
    }
    int ok = !mongoc_cursor_error(c, err);
    mongoc_cursor_destroy(c);
    bson_destroy(opts);
    bson_destroy(filter);
    if (woke) ev_async_send(t->b->loop, &t->b->wake);
    return ok ? n : -1;
}

static void clean_old(struct bus_thread *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t cutoff = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - KEEP_MS;
    bson_t *filter = BCON_NEW("ts", "{", "$lt", BCON_INT64(cutoff), "}");
    bson_error_t err;
    if (!mongoc_collection_delete_many(t->coll, filter, NULL, NULL, &err))
        log_debug("cluster: deleting old events failed: %s", err.message);
    bson_destroy(filter);
}

static void *bus_main(void *arg)
{
    struct cluster_bus *b = arg;
    struct bus_thread t = {.b = b};
    t.client = mongoc_client_new_from_uri(b->uri);
    if (!t.client) {
        log_error("cluster: cannot create a MongoDB client for %s", b->shown);
        return NULL;
    }
    mongoc_client_set_appname(t.client, "svcd-coordinator");
    const char *db = mongoc_uri_get_database(b->uri);
    t.coll = mongoc_client_get_collection(t.client, db && *db ? db : "svcd", BUS_COLLECTION);
    int started = 0;

    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        struct bus_event *batch = b->out_head;
        b->out_head = b->out_tail = NULL;
        b->nout = 0;
        pthread_mutex_unlock(&b->mu);

        bson_error_t err = {0};
        int failed = 0;
        if (!started) {
            /* join at the present: older events were for the hosts of their time */
            int64_t m;
            if (query_max(&t, &m, &err) == 0) {
                t.last = t.hi = m;
                started = 1;
                set_connected(&t, 1, NULL);
            } else {
                failed = 1;
            }
        }
        struct bus_event *keep = NULL, *keep_last = NULL;
        size_t nkeep = 0;
        while (batch) {
            struct bus_event *e = batch;
            batch = e->next;
            e->next = NULL;
            if (!failed && started && publish_one(&t, e, &err) == 0) {
                ev_free(e);
                continue;
            }
            failed = 1;
            if (mono_ms() - e->queued_mono > QUEUE_TTL_MS) {
                t.dropped++;
                ev_free(e);
                continue;
            }
            if (keep_last)
                keep_last->next = e;
            else
                keep = e;
            keep_last = e;
            nkeep++;
        }
        if (!failed && started && poll_once(&t, &err) < 0) failed = 1;
        if (!failed && started && mono_ms() - t.last_clean > CLEAN_EVERY_MS) {
            t.last_clean = mono_ms();
            clean_old(&t);
        }
        if (failed) {
            set_connected(&t, 0, err.message[0] ? err.message : "unknown error");
            t.backoff_ms = t.backoff_ms ? t.backoff_ms * 2 : 250;
            if (t.backoff_ms > 5000) t.backoff_ms = 5000;
        } else if (started) {
            set_connected(&t, 1, NULL);
            if (t.dropped) {
                log_warn("cluster: %llu chat event(s) could not reach the other hosts in time "
                         "and were dropped",
                         t.dropped);
                t.dropped = 0;
            }
        }

        pthread_mutex_lock(&b->mu);
        if (keep) { /* put the unpublished ones back in front, in order */
            keep_last->next = b->out_head;
            if (!b->out_head) b->out_tail = keep_last;
            b->out_head = keep;
            b->nout += nkeep;
        }
        if (b->stop) break;
        if (!b->out_head || failed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait = failed ? t.backoff_ms : POLL_MS;
            ts.tv_nsec += (wait % 1000) * 1000000;
            ts.tv_sec += wait / 1000 + ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
    }
    pthread_mutex_unlock(&b->mu);
    mongoc_collection_destroy(t.coll);
    mongoc_client_destroy(t.client);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

struct cluster_bus *cluster_bus_start(struct ev_loop *loop, const char *uri, cluster_recv_fn fn,
                                      void *arg, char *err, size_t errlen)
{
    mongoc_init(); /* once per process; the storage code calls it too */
    bson_error_t e;
    mongoc_uri_t *u = mongoc_uri_new_with_error(uri, &e);
    char shown[512];
    config_redact_uri(uri, shown, sizeof(shown));
    if (!u) {
        snprintf(err, errlen, "storage.uri '%s' is not a MongoDB URI: %s", shown, e.message);
        return NULL;
    }
    if (!mongoc_uri_has_option(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 1000);
    if (!mongoc_uri_has_option(u, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_CONNECTTIMEOUTMS, 1000);
    struct cluster_bus *b = calloc(1, sizeof(*b));
    if (!b) {
        mongoc_uri_destroy(u);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->loop = loop;
    b->fn = fn;
    b->arg = arg;
    b->uri = u;
    snprintf(b->shown, sizeof(b->shown), "%s", shown);
    unsigned char rnd[8];
    FILE *fp = fopen("/dev/urandom", "rb");
    if (!fp || fread(rnd, 1, sizeof(rnd), fp) != sizeof(rnd)) {
        for (size_t i = 0; i < sizeof(rnd); i++) rnd[i] = (unsigned char)(rand() ^ getpid() ^ i);
    }
    if (fp) fclose(fp);
    char hn[16] = "";
    gethostname(hn, sizeof(hn) - 1);
    hn[sizeof(hn) - 1] = '\0';
    snprintf(b->host, sizeof(b->host), "%s-%02x%02x%02x%02x%02x%02x%02x%02x", hn[0] ? hn : "h",
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    ev_async_init(&b->wake, on_wake);
    b->wake.data = b;
    ev_async_start(loop, &b->wake);
    if (pthread_create(&b->thread, NULL, bus_main, b) != 0) {
        snprintf(err, errlen, "cannot start the cluster thread: %s", strerror(errno));
        ev_async_stop(loop, &b->wake);
        mongoc_uri_destroy(u);
        free(b);
        return NULL;
    }
    return b;
}

void cluster_bus_stop(struct cluster_bus *b)
{
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    ev_async_stop(b->loop, &b->wake);
    list_free(b->out_head);
    list_free(b->in_head);
    mongoc_uri_destroy(b->uri);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}
