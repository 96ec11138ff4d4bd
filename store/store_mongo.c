/*
 * store_mongo.c — the MongoDB backend (libmongoc, mongoc_client_pool_t), for one or
 * many svcd hosts sharing a replica set / Atlas. Tested on FerretDB v1 (SQLite
 * handler), which speaks the wire protocol but not all of MongoDB's guarantees.
 *
 * Why no conditional update or findAndModify decides anything here. On real MongoDB
 * a single-document update is atomic, so `update {seat, status:'available'} ->
 * 'booked'` would be enough. FerretDB v1 implements update and findAndModify as "query
 * the matching documents, then rewrite each by its record id" in two steps that do
 * not re-check the filter (internal/handler/msg_update.go, backends/sqlite
 * collection.go UpdateAll): two racing conditional updates can both match and both
 * "win". It has no multi-document transactions either. What FerretDB does enforce
 * atomically is a unique index (a real SQLite UNIQUE index): an insert that would
 * duplicate a key fails with E11000, whatever the concurrency. So every decision in
 * this file is an INSERT under a unique key, which is exactly as strong on MongoDB:
 *
 *  - seat claim: collection `claims`, one document per (event, seat, job), unique
 *    index {eventId, seat}. Whoever inserts the claim holds the seat. A job claims its
 *    seats in sorted order with one ordered insertMany; on E11000 it looks at the
 *    holder: a successful job means "taken"; a job still being processed is waited
 *    for (no deadlock: see claim_seats), or finished here if its processor died.
 *  - decision: collection `results`, _id = job id. The first processor to insert a
 *    job's result decides it (success only if it holds every seat at that moment);
 *    every other processor of the same job reads that result. So a job is decided
 *    exactly once even when an expired lease's processor is still running.
 *  - lease: collection `leases`, _id = "<job>:<attempt>". Inserting attempt n+1 is
 *    the lease; two processors cannot both get the same attempt.
 *  - Idempotency-Key: jobs carry `idem` = "k:<user>\n<key>" (or "j:<job id>" without
 *    a key), unique index — the second submit hits E11000 and returns the first job.
 *
 * Seat never booked twice: claims of a job are deleted only after that job was
 * decided failed, so a successful job's claims stay forever, and the unique index
 * lets at most one claim per seat exist at a time. A claim whose job was decided
 * failed is dead: the seat map shows the seat available and the next claimer deletes
 * it (by its own _id, which names that job, so a delete never hits a live claim).
 * kill -9 anywhere leaves at worst claims of an undecided job; its lease expires, a
 * processor re-runs it, finds its own claims (holder = itself), and decides.
 *
 * Real MongoDB runs the same queries unchanged (only insert, delete, find and
 * hint updates are used); FerretDB gaps met: no `endSessions` (a pool shutdown
 * warning, silenced below) and non-atomic updates (avoided as above).
 *
 * The `state`/`leaseUntil` fields of a job document are only a hint that lets the
 * lease query use an index; a lost update of the hint (FerretDB) makes a job look
 * ready again, and the lease step repairs it from `results`/`leases`, the truth.
 */
#include "store_backend.h"
#include "../common/config.h"

#include <errno.h>
#include <mongoc/mongoc.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX           32
#define DEFAULT_DB         "svcd"
#define SELECT_TIMEOUT_MS  2000
#define CONNECT_TIMEOUT_MS 2000
#define LEASE_CANDIDATES   16
#define CLAIM_WAIT_MS      20000 /* longest wait for a booking in progress to decide */
#define HELP_DEPTH         4     /* chain of dead processors' jobs one call finishes */
#define DUP_KEY            11000

struct mongo_store {
    struct store base;
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    char db[128];
    char target[1024]; /* redacted URI */
    char host[256];    /* first host:port */
    pthread_mutex_t mu;
    bool indexes_ok;
};

/*
 * libmongoc logs to stdout/stderr by itself, at every level. Keep warnings and worse
 * on stderr (the svcd log collects children's stderr), drop the rest, and drop the
 * one warning FerretDB causes on every pool shutdown: it has no `endSessions`
 * command (harmless: the server side has no sessions to end).
 */
static void log_to_stderr(mongoc_log_level_t level, const char *domain, const char *message,
                          void *arg)
{
    if (level > MONGOC_LOG_LEVEL_WARNING) return;
    if (strstr(message, "endSessions")) return;
    fprintf(stderr, "svcd: mongoc %s: %s: %s\n", mongoc_log_level_str(level), domain, message);
}

static pthread_once_t mongoc_once = PTHREAD_ONCE_INIT;
static void mongoc_init_once(void)
{
    mongoc_init();
    mongoc_log_set_handler(log_to_stderr, NULL);
}

/* ---- errors ------------------------------------------------------------------------ */

/* Server error codes that mean "the server, not the request": shutting down, not
 * primary, network trouble on the server side. */
static bool server_code_unavailable(uint32_t code)
{
    switch (code) {
    case 6:     /* HostUnreachable */
    case 7:     /* HostNotFound */
    case 89:    /* NetworkTimeout */
    case 91:    /* ShutdownInProgress */
    case 189:   /* PrimarySteppedDown */
    case 9001:  /* SocketException */
    case 10107: /* NotWritablePrimary */
    case 11600: /* InterruptedAtShutdown */
    case 11602: /* InterruptedDueToReplStateChange */
    case 13435: /* NotPrimaryNoSecondaryOk */
    case 13436: /* NotPrimaryOrSecondary */
    case 262:   /* ExceededTimeLimit */
    case 50:    /* MaxTimeMSExpired */
        return true;
    }
    return false;
}

/* The short reason in "cannot connect to MongoDB at HOST:PORT: REASON", from the
 * driver's message where it says it. */
static const char *reason_of(const bson_error_t *e)
{
    const char *m = e->message;
    if (strstr(m, "onnection refused")) return "connection refused";
    if (strstr(m, "Failed to resolve") || strstr(m, "getaddrinfo")) return "host name not found";
    if (strstr(m, "uthentication failed") || strstr(m, "Authentication"))
        return "authentication failed (check the user and password in the URI)";
    if (strstr(m, "reset")) return "connection reset";
    if (strstr(m, "timed out") || strstr(m, "timeout") || strstr(m, "Timeout"))
        return "connection timed out";
    return m;
}

/*
 * libmongoc 1.23 reports a refused or unreachable server only as "Failed to connect
 * to target host" after the server selection timeout. For the start-up and health
 * messages, ask the network directly: one TCP connect to the first host says
 * refused / timed out / unreachable / unknown host. Only used on failure paths.
 */
static void probe_reason(const char *host, uint16_t port, const bson_error_t *e, char *out,
                         size_t outlen)
{
    snprintf(out, outlen, "%s", reason_of(e));
    if (!strstr(e->message, "Failed to connect") && !strstr(e->message, "No suitable servers"))
        return;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, portstr, &hints, &ai);
    if (g) {
        snprintf(out, outlen, "host name not found (%s)", gai_strerror(g));
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
    int so = r == 0 ? 0 : errno;
    if (r < 0 && so == EINPROGRESS) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, CONNECT_TIMEOUT_MS);
        socklen_t sl = sizeof so;
        if (pr == 0)
            so = ETIMEDOUT;
        else if (pr < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl))
            so = errno;
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    switch (so) {
    case 0:
        snprintf(out, outlen,
                 "the port accepts connections but does not answer as MongoDB (%.300s)",
                 e->message);
        break;
    case ECONNREFUSED:
        snprintf(out, outlen, "connection refused");
        break;
    case ETIMEDOUT:
        snprintf(out, outlen, "connection timed out");
        break;
    case EHOSTUNREACH:
    case ENETUNREACH:
        snprintf(out, outlen, "host unreachable (%s)", strerror(so));
        break;
    default:
        snprintf(out, outlen, "%s", strerror(so));
        break;
    }
}

static bool error_unavailable(const bson_error_t *e)
{
    switch (e->domain) {
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_PROTOCOL:
        return true;
    case MONGOC_ERROR_CLIENT:
        return e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE ||
               e->code == MONGOC_ERROR_CLIENT_NO_ACCEPTABLE_PEER ||
               e->code == MONGOC_ERROR_CLIENT_SESSION_FAILURE;
    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_WRITE_CONCERN:
    case MONGOC_ERROR_COLLECTION:
    case MONGOC_ERROR_QUERY:
    case MONGOC_ERROR_COMMAND:
        return server_code_unavailable(e->code);
    }
    return false;
}

static enum store_rc mongo_fail(struct mongo_store *ms, const bson_error_t *e, const char *what,
                                struct store_err *err)
{
    if (error_unavailable(e))
        return store_fail(err, STORE_UNAVAILABLE, "MongoDB at %s is unavailable (%s): %s", ms->host,
                          what, reason_of(e));
    return store_fail(err, STORE_INTERNAL, "MongoDB error at %s (%s): %s", ms->host, what,
                      e->message);
}

static bool is_dup(const bson_error_t *e)
{
    return e->code == DUP_KEY;
}

/* ---- bson helpers ------------------------------------------------------------------- */

static int64_t get_i64(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key)) return 0;
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_INT32:
        return bson_iter_int32(&it);
    case BSON_TYPE_INT64:
        return bson_iter_int64(&it);
    case BSON_TYPE_DOUBLE:
        return (int64_t)bson_iter_double(&it);
    default:
        return 0;
    }
}

static void get_str(const bson_t *doc, const char *key, char *out, size_t outlen)
{
    bson_iter_t it;
    out[0] = '\0';
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(out, outlen, "%s", bson_iter_utf8(&it, NULL));
}

static void append_str_array(bson_t *doc, const char *key, const char *const *v, int n)
{
    bson_t arr;
    char idx[16];
    const char *k;
    bson_append_array_begin(doc, key, -1, &arr);
    for (int i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
        bson_append_utf8(&arr, k, -1, v[i], -1);
    }
    bson_append_array_end(doc, &arr);
}

static void job_seat_ptrs(const struct store_job *job, const char **out)
{
    for (int i = 0; i < job->nseats; i++) out[i] = job->seats[i];
}

static void claim_id(char *out, size_t outlen, const char *event_id, const char *seat,
                     const char *job_id)
{
    snprintf(out, outlen, "%s/%s/%s", event_id, seat, job_id);
}

/* ---- calls ---------------------------------------------------------------------------- */

struct mcall {
    struct mongo_store *ms;
    mongoc_client_t *cl;
    mongoc_database_t *db;
    struct store_err *err;
    enum store_rc rc;
};

static bool ensure_indexes(struct mcall *c);

static bool mcall_begin(struct mcall *c, struct store *s, struct store_err *err)
{
    c->ms = (struct mongo_store *)s;
    c->err = err;
    c->rc = STORE_OK;
    c->cl = mongoc_client_pool_pop(c->ms->pool);
    c->db = mongoc_client_get_database(c->cl, c->ms->db);
    return ensure_indexes(c);
}

static enum store_rc mcall_end(struct mcall *c)
{
    mongoc_database_destroy(c->db);
    mongoc_client_pool_push(c->ms->pool, c->cl);
    return c->rc;
}

static bool mfail(struct mcall *c, const bson_error_t *e, const char *what)
{
    if (c->rc == STORE_OK) c->rc = mongo_fail(c->ms, e, what, c->err);
    return false;
}

static mongoc_collection_t *coll(struct mcall *c, const char *name)
{
    return mongoc_database_get_collection(c->db, name);
}

/* Find one document (opts may be NULL) into *out (caller destroys). false + rc
 * unchanged when there is none; false + rc set on error. */
static bool find_one(struct mcall *c, const char *collection, const bson_t *filter,
                     const bson_t *opts_in, bson_t *out)
{
    if (c->rc != STORE_OK) return false;
    mongoc_collection_t *col = coll(c, collection);
    bson_t opts = BSON_INITIALIZER;
    if (opts_in) bson_copy_to_excluding_noinit(opts_in, &opts, "limit", NULL);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, filter, &opts, NULL);
    const bson_t *doc;
    bool found = false;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_copy_to(doc, out);
        found = true;
    }
    bson_error_t e;
    if (!found && mongoc_cursor_error(cur, &e)) mfail(c, &e, collection);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(col);
    bson_destroy(&opts);
    return found;
}

static bool find_by_id(struct mcall *c, const char *collection, const char *id, bson_t *out)
{
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "_id", id);
    bool found = find_one(c, collection, &filter, NULL, out);
    bson_destroy(&filter);
    return found;
}

/* Insert one document. Returns 1 inserted, 0 duplicate key, -1 error (rc set). */
static int insert_one(struct mcall *c, const char *collection, const bson_t *doc)
{
    if (c->rc != STORE_OK) return -1;
    mongoc_collection_t *col = coll(c, collection);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(col, doc, NULL, NULL, &e);
    mongoc_collection_destroy(col);
    if (ok) return 1;
    if (is_dup(&e)) return 0;
    mfail(c, &e, collection);
    return -1;
}

/* Best-effort hint update of a job document (see the top comment). */
static void set_hint(struct mcall *c, const char *job_id, const char *state, int64_t lease_until,
                     int attempt)
{
    if (c->rc != STORE_OK) return;
    mongoc_collection_t *col = coll(c, "jobs");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(job_id));
    bson_t *upd = BCON_NEW("$set", "{", "state", BCON_UTF8(state), "leaseUntil",
                           BCON_INT64(lease_until), "attempt", BCON_INT32(attempt), "}");
    bson_error_t e;
    if (!mongoc_collection_update_one(col, filter, upd, NULL, NULL, &e)) mfail(c, &e, "jobs");
    bson_destroy(filter);
    bson_destroy(upd);
    mongoc_collection_destroy(col);
}

/* ---- indexes -------------------------------------------------------------------------- */

static bool create_index(struct mcall *c, const char *collection, const bson_t *keys,
                         const char *name, bool unique)
{
    bson_t cmd = BSON_INITIALIZER, arr, idx;
    BSON_APPEND_UTF8(&cmd, "createIndexes", collection);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &idx);
    BSON_APPEND_DOCUMENT(&idx, "key", keys);
    BSON_APPEND_UTF8(&idx, "name", name);
    if (unique) BSON_APPEND_BOOL(&idx, "unique", true);
    bson_append_document_end(&arr, &idx);
    bson_append_array_end(&cmd, &arr);
    bson_error_t e;
    bool ok = mongoc_database_write_command_with_opts(c->db, &cmd, NULL, NULL, &e);
    bson_destroy(&cmd);
    if (!ok) {
        if (c->rc == STORE_OK) {
            enum store_rc r = mongo_fail(c->ms, &e, "createIndexes", c->err);
            if (r == STORE_INTERNAL)
                store_fail(c->err, r, "cannot create index %s on %s.%s at %s: %s", name, c->ms->db,
                           collection, c->ms->host, e.message);
            c->rc = r;
        }
    }
    return ok;
}

/* Create the indexes the guarantees rest on, once per handle (retried by later
 * calls while the database is unreachable). Creating an existing index is a no-op. */
static bool ensure_indexes(struct mcall *c)
{
    pthread_mutex_lock(&c->ms->mu);
    bool done = c->ms->indexes_ok;
    pthread_mutex_unlock(&c->ms->mu);
    if (done) return true;
    bson_t *k;
    bool ok = true;
    k = BCON_NEW("eventId", BCON_INT32(1), "seat", BCON_INT32(1));
    ok = ok && create_index(c, "claims", k, "eventId_1_seat_1", true);
    bson_destroy(k);
    k = BCON_NEW("idem", BCON_INT32(1));
    ok = ok && create_index(c, "jobs", k, "idem_1", true);
    bson_destroy(k);
    k = BCON_NEW("state", BCON_INT32(1), "createdAt", BCON_INT32(1));
    ok = ok && create_index(c, "jobs", k, "state_1_createdAt_1", false);
    bson_destroy(k);
    k = BCON_NEW("jobId", BCON_INT32(1), "attempt", BCON_INT32(-1));
    ok = ok && create_index(c, "leases", k, "jobId_1_attempt_-1", false);
    bson_destroy(k);
    k = BCON_NEW("room", BCON_INT32(1), "ts", BCON_INT32(-1));
    ok = ok && create_index(c, "messages", k, "room_1_ts_-1", false);
    bson_destroy(k);
    if (ok) {
        pthread_mutex_lock(&c->ms->mu);
        c->ms->indexes_ok = true;
        pthread_mutex_unlock(&c->ms->mu);
    }
    return ok;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void mg_close(struct store *s)
{
    struct mongo_store *ms = (struct mongo_store *)s;
    if (ms->pool) mongoc_client_pool_destroy(ms->pool);
    if (ms->uri) mongoc_uri_destroy(ms->uri);
    pthread_mutex_destroy(&ms->mu);
    free(ms);
}

static enum store_rc ping_client(struct mongo_store *ms, mongoc_client_t *cl, struct store_err *err)
{
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t e;
    bool ok = mongoc_client_command_simple(cl, "admin", cmd, NULL, NULL, &e);
    bson_destroy(cmd);
    if (ok) return STORE_OK;
    if (error_unavailable(&e)) {
        char reason[512];
        const mongoc_host_list_t *h = mongoc_uri_get_hosts(ms->uri);
        if (h)
            probe_reason(h->host, h->port, &e, reason, sizeof reason);
        else
            snprintf(reason, sizeof reason, "%s", reason_of(&e));
        return store_fail(err, STORE_UNAVAILABLE, "cannot connect to MongoDB at %s: %s", ms->host,
                          reason);
    }
    return mongo_fail(ms, &e, "ping", err);
}

/* A successful ping also creates the indexes if this handle has not yet (a handle
 * opened with STORE_OPEN_DEFER: the worker's health thread does it at start-up). */
static enum store_rc mg_ping(struct store *s, struct store_err *err)
{
    struct mcall c;
    c.ms = (struct mongo_store *)s;
    c.err = err;
    c.cl = mongoc_client_pool_pop(c.ms->pool);
    c.db = mongoc_client_get_database(c.cl, c.ms->db);
    c.rc = ping_client(c.ms, c.cl, err);
    if (c.rc == STORE_OK) ensure_indexes(&c);
    return mcall_end(&c);
}

static void mg_describe(struct store *s, struct store_info *out)
{
    struct mongo_store *ms = (struct mongo_store *)s;
    snprintf(out->driver, sizeof out->driver, "mongodb");
    snprintf(out->target, sizeof out->target, "%s", ms->target);
    snprintf(out->host, sizeof out->host, "%s", ms->host);
    snprintf(out->database, sizeof out->database, "%s", ms->db);
    out->pool_max = POOL_MAX;
    out->pool_open = POOL_MAX;
}

/* ---- events ----------------------------------------------------------------------------- */

static enum store_rc mg_event_create(struct store *s, const char *id, const char *name,
                                     const char *const *seats, int nseats, int64_t now,
                                     struct store_err *err)
{
    struct mcall c;
    if (mcall_begin(&c, s, err)) {
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "_id", id);
        BSON_APPEND_UTF8(&doc, "name", name);
        append_str_array(&doc, "seats", seats, nseats);
        BSON_APPEND_INT32(&doc, "nseats", nseats);
        BSON_APPEND_INT64(&doc, "createdAt", now);
        if (insert_one(&c, "events", &doc) == 0)
            c.rc = store_fail(err, STORE_INTERNAL, "event id %s collided; retry", id);
        bson_destroy(&doc);
    }
    return mcall_end(&c);
}

/* Load the event document; NOT_FOUND when absent. */
static bool load_event(struct mcall *c, const char *event_id, bson_t *out)
{
    if (find_by_id(c, "events", event_id, out)) return true;
    if (c->rc == STORE_OK)
        c->rc = store_fail(c->err, STORE_NOT_FOUND, "event '%s' not found", event_id);
    return false;
}

static enum store_rc mg_event_get(struct store *s, const char *event_id, struct store_event *out,
                                  struct store_err *err)
{
    struct mcall c;
    bson_t ev;
    if (mcall_begin(&c, s, err) && load_event(&c, event_id, &ev)) {
        get_str(&ev, "_id", out->id, sizeof out->id);
        get_str(&ev, "name", out->name, sizeof out->name);
        out->nseats = (int)get_i64(&ev, "nseats");
        out->created_at = get_i64(&ev, "createdAt");
        bson_destroy(&ev);
    }
    return mcall_end(&c);
}

/* Result status of each job in `ids` (status: 0 none, 1 success, 2 failed). */
struct job_state {
    char id[STORE_ID_LEN];
    int status;
};

static int cmp_state(const void *a, const void *b)
{
    return strcmp(((const struct job_state *)a)->id, ((const struct job_state *)b)->id);
}

/* Look the results of `n` jobs up in one query; `v` sorted by id on return. */
static bool load_results(struct mcall *c, struct job_state *v, size_t n)
{
    if (n == 0) return true;
    qsort(v, n, sizeof *v, cmp_state);
    mongoc_collection_t *col = coll(c, "results");
    bson_t filter = BSON_INITIALIZER, idf, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &idf);
    BSON_APPEND_ARRAY_BEGIN(&idf, "$in", &arr);
    char idx[16];
    const char *k;
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
        bson_append_utf8(&arr, k, -1, v[i].id, -1);
    }
    bson_append_array_end(&idf, &arr);
    bson_append_document_end(&filter, &idf);
    bson_t *opts = BCON_NEW("projection", "{", "status", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &filter, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        struct job_state key;
        char st[16];
        get_str(doc, "_id", key.id, sizeof key.id);
        get_str(doc, "status", st, sizeof st);
        struct job_state *hit = bsearch(&key, v, n, sizeof *v, cmp_state);
        if (hit) hit->status = !strcmp(st, "success") ? 1 : 2;
    }
    bson_error_t e;
    bool ok = true;
    if (mongoc_cursor_error(cur, &e)) ok = mfail(c, &e, "results");
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(col);
    return ok;
}

/* The holders of every claim of an event (or of `seats` only, when not NULL):
 * seat + job, with dead claims (job decided failed) left out. */
struct holder {
    char seat[STORE_SEAT_LEN];
    char job[STORE_ID_LEN];
    int status; /* 0: job undecided (being processed), 1: job succeeded */
};

static int cmp_holder(const void *a, const void *b)
{
    return strcmp(((const struct holder *)a)->seat, ((const struct holder *)b)->seat);
}

static bool load_holders(struct mcall *c, const char *event_id, const char *const *seats,
                         int nseats, struct holder **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (c->rc != STORE_OK) return false;
    mongoc_collection_t *col = coll(c, "claims");
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "eventId", event_id);
    if (seats) {
        bson_t sf;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "seat", &sf);
        append_str_array(&sf, "$in", seats, nseats);
        bson_append_document_end(&filter, &sf);
    }
    bson_t *opts = BCON_NEW("projection", "{", "seat", BCON_INT32(1), "jobId", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &filter, opts, NULL);
    const bson_t *doc;
    size_t n = 0, cap = 0;
    struct holder *v = NULL;
    bool ok = true;
    while (mongoc_cursor_next(cur, &doc)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct holder *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                ok = false;
                c->rc = store_fail(c->err, STORE_INTERNAL, "out of memory");
                break;
            }
            v = nv;
        }
        get_str(doc, "seat", v[n].seat, sizeof v[n].seat);
        get_str(doc, "jobId", v[n].job, sizeof v[n].job);
        n++;
    }
    bson_error_t e;
    if (ok && mongoc_cursor_error(cur, &e)) ok = mfail(c, &e, "claims");
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(col);

    /* drop dead claims: their job was decided failed */
    struct job_state *js = ok && n ? calloc(n, sizeof *js) : NULL;
    if (ok && n && !js) ok = false, c->rc = store_fail(c->err, STORE_INTERNAL, "out of memory");
    if (ok && n) {
        for (size_t i = 0; i < n; i++) snprintf(js[i].id, sizeof js[i].id, "%s", v[i].job);
        ok = load_results(c, js, n);
        size_t m = 0;
        for (size_t i = 0; ok && i < n; i++) {
            struct job_state key;
            snprintf(key.id, sizeof key.id, "%s", v[i].job);
            struct job_state *hit = bsearch(&key, js, n, sizeof *js, cmp_state);
            if (!hit || hit->status != 2) {
                v[i].status = hit ? hit->status : 0;
                v[m++] = v[i];
            }
        }
        n = m;
        qsort(v, n, sizeof *v, cmp_holder);
    }
    free(js);
    if (!ok) {
        free(v);
        return false;
    }
    *out = v;
    *nout = n;
    return true;
}

static enum store_rc mg_event_seats(struct store *s, const char *event_id, store_seat_cb cb,
                                    void *arg, struct store_err *err)
{
    struct mcall c;
    bson_t ev;
    if (!mcall_begin(&c, s, err) || !load_event(&c, event_id, &ev)) return mcall_end(&c);
    struct holder *h = NULL;
    size_t nh = 0;
    if (load_holders(&c, event_id, NULL, 0, &h, &nh)) {
        bson_iter_t it, ai;
        if (bson_iter_init_find(&it, &ev, "seats") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &ai)) {
            while (bson_iter_next(&ai)) {
                if (!BSON_ITER_HOLDS_UTF8(&ai)) continue;
                struct holder key;
                snprintf(key.seat, sizeof key.seat, "%s", bson_iter_utf8(&ai, NULL));
                struct holder *hit = nh ? bsearch(&key, h, nh, sizeof *h, cmp_holder) : NULL;
                if (cb(arg, key.seat, hit != NULL, hit ? hit->job : NULL)) break;
            }
        }
    }
    free(h);
    bson_destroy(&ev);
    return mcall_end(&c);
}

/* ---- jobs -------------------------------------------------------------------------------- */

static void job_from_doc(const bson_t *doc, struct store_job *job)
{
    memset(job, 0, sizeof *job);
    get_str(doc, "_id", job->id, sizeof job->id);
    get_str(doc, "user", job->user, sizeof job->user);
    get_str(doc, "eventId", job->event_id, sizeof job->event_id);
    bson_iter_t it, ai;
    if (bson_iter_init_find(&it, doc, "seats") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &ai)) {
        while (bson_iter_next(&ai) && job->nseats < STORE_JOB_MAX_SEATS)
            if (BSON_ITER_HOLDS_UTF8(&ai))
                snprintf(job->seats[job->nseats++], STORE_SEAT_LEN, "%s",
                         bson_iter_utf8(&ai, NULL));
    }
    job->created_at = get_i64(doc, "createdAt");
    job->status = STORE_JOB_QUEUED;
}

static void apply_result(const bson_t *res, struct store_job *job)
{
    char st[16];
    get_str(res, "status", st, sizeof st);
    job->status = !strcmp(st, "success") ? STORE_JOB_SUCCESS : STORE_JOB_FAILED;
    get_str(res, "errorCode", job->error_code, sizeof job->error_code);
    get_str(res, "errorMessage", job->error_message, sizeof job->error_message);
    job->finished_at = get_i64(res, "finishedAt");
    job->lease_until = 0;
}

/* The newest lease of a job into *out; false when it never had one (or on error). */
static bool latest_lease(struct mcall *c, const char *job_id, bson_t *out)
{
    bson_t *filter = BCON_NEW("jobId", BCON_UTF8(job_id));
    bson_t *opts = BCON_NEW("sort", "{", "attempt", BCON_INT32(-1), "}");
    bool found = find_one(c, "leases", filter, opts, out);
    bson_destroy(filter);
    bson_destroy(opts);
    return found;
}

/* Full current state of a job: document + result + newest lease. */
static bool load_job(struct mcall *c, const char *job_id, struct store_job *job)
{
    bson_t doc, res, lease;
    if (!find_by_id(c, "jobs", job_id, &doc)) {
        if (c->rc == STORE_OK)
            c->rc = store_fail(c->err, STORE_NOT_FOUND, "job '%s' not found", job_id);
        return false;
    }
    job_from_doc(&doc, job);
    bson_destroy(&doc);
    if (latest_lease(c, job_id, &lease)) {
        job->attempt = (int)get_i64(&lease, "attempt");
        job->lease_until = get_i64(&lease, "until");
        get_str(&lease, "owner", job->lease_owner, sizeof job->lease_owner);
        if (job->lease_until > store_now_ms()) job->status = STORE_JOB_PROCESSING;
        bson_destroy(&lease);
    }
    if (find_by_id(c, "results", job_id, &res)) {
        apply_result(&res, job);
        bson_destroy(&res);
    }
    return c->rc == STORE_OK;
}

static bool same_request(const struct store_job *a, const struct store_job *b)
{
    if (strcmp(a->event_id, b->event_id) || a->nseats != b->nseats) return false;
    for (int i = 0; i < a->nseats; i++)
        if (strcmp(a->seats[i], b->seats[i])) return false;
    return true;
}

/* The first job submitted under `idem`, if any; conflict if it asked for other seats. */
static bool idem_lookup(struct mcall *c, const char *idem, const char *key, struct store_job *job,
                        bool *found)
{
    bson_t *filter = BCON_NEW("idem", BCON_UTF8(idem));
    bson_t doc;
    *found = find_one(c, "jobs", filter, NULL, &doc);
    bson_destroy(filter);
    if (!*found) return c->rc == STORE_OK;
    char id[STORE_ID_LEN];
    get_str(&doc, "_id", id, sizeof id);
    bson_destroy(&doc);
    struct store_job old;
    if (!load_job(c, id, &old)) return false;
    if (!same_request(&old, job)) {
        c->rc = store_fail(c->err, STORE_CONFLICT,
                           "Idempotency-Key '%.64s' was already used for job %s with other seats "
                           "or another event; use a new key for a new booking",
                           key, old.id);
        return false;
    }
    *job = old;
    return true;
}

static enum store_rc mg_job_submit(struct store *s, struct store_job *job, const char *idem_key,
                                   bool *created_new, struct store_err *err)
{
    struct mcall c;
    if (!mcall_begin(&c, s, err)) return mcall_end(&c);
    char idem[STORE_USER_LEN + STORE_KEY_LEN + 4];
    if (idem_key)
        snprintf(idem, sizeof idem, "k:%s\n%s", job->user, idem_key);
    else
        snprintf(idem, sizeof idem, "j:%s", job->id);
    bool found = false;
    if (idem_key && (!idem_lookup(&c, idem, idem_key, job, &found) || found)) return mcall_end(&c);

    /* the event and every seat must exist */
    bson_t ev;
    if (!load_event(&c, job->event_id, &ev)) return mcall_end(&c);
    bool present[STORE_JOB_MAX_SEATS] = {false};
    bson_iter_t it, ai;
    if (bson_iter_init_find(&it, &ev, "seats") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &ai)) {
        while (bson_iter_next(&ai)) {
            if (!BSON_ITER_HOLDS_UTF8(&ai)) continue;
            const char *seat = bson_iter_utf8(&ai, NULL);
            for (int i = 0; i < job->nseats; i++)
                if (!present[i] && !strcmp(seat, job->seats[i])) present[i] = true;
        }
    }
    bson_destroy(&ev);
    char missing[400] = "";
    size_t len = 0;
    int nmissing = 0;
    for (int i = 0; i < job->nseats; i++) {
        if (present[i]) continue;
        if (len < sizeof missing)
            len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%s",
                                    nmissing ? ", " : "", job->seats[i]);
        nmissing++;
    }
    if (nmissing) {
        c.rc = store_fail(err, STORE_BAD_INPUT, "event '%s' has no seat%s %s", job->event_id,
                          nmissing > 1 ? "s" : "", missing);
        return mcall_end(&c);
    }

    const char *seats[STORE_JOB_MAX_SEATS];
    job_seat_ptrs(job, seats);
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "_id", job->id);
    BSON_APPEND_UTF8(&doc, "user", job->user);
    BSON_APPEND_UTF8(&doc, "eventId", job->event_id);
    append_str_array(&doc, "seats", seats, job->nseats);
    BSON_APPEND_UTF8(&doc, "idem", idem);
    BSON_APPEND_INT64(&doc, "createdAt", job->created_at);
    BSON_APPEND_UTF8(&doc, "state", "queued");
    BSON_APPEND_INT64(&doc, "leaseUntil", 0);
    BSON_APPEND_INT32(&doc, "attempt", 0);
    int r = insert_one(&c, "jobs", &doc);
    bson_destroy(&doc);
    if (r == 1) {
        *created_new = true;
    } else if (r == 0 && idem_key) {
        /* a concurrent submit with the same key won the unique index: return its job */
        if (idem_lookup(&c, idem, idem_key, job, &found) && !found)
            c.rc = store_fail(err, STORE_INTERNAL,
                              "Idempotency-Key '%.64s' collided but no "
                              "job holds it; retry",
                              idem_key);
    } else if (r == 0) {
        c.rc = store_fail(err, STORE_INTERNAL, "job id %s collided; retry", job->id);
    }
    return mcall_end(&c);
}

static enum store_rc mg_job_get(struct store *s, const char *job_id, struct store_job *job,
                                struct store_err *err)
{
    struct mcall c;
    if (mcall_begin(&c, s, err)) load_job(&c, job_id, job);
    return mcall_end(&c);
}

/* Delete the claims this job may hold (only ever called once the job is decided
 * failed): by _id, which names the job, so no other job's claim can be hit. */
static bool drop_claims(struct mcall *c, const struct store_job *job)
{
    if (c->rc != STORE_OK) return false;
    const char *ids[STORE_JOB_MAX_SEATS];
    char buf[STORE_JOB_MAX_SEATS][STORE_ID_LEN * 2 + STORE_SEAT_LEN + 4];
    for (int i = 0; i < job->nseats; i++) {
        claim_id(buf[i], sizeof buf[i], job->event_id, job->seats[i], job->id);
        ids[i] = buf[i];
    }
    bson_t filter = BSON_INITIALIZER, idf;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &idf);
    append_str_array(&idf, "$in", ids, job->nseats);
    bson_append_document_end(&filter, &idf);
    mongoc_collection_t *col = coll(c, "claims");
    bson_error_t e;
    bool ok = mongoc_collection_delete_many(col, &filter, NULL, NULL, &e);
    if (!ok) mfail(c, &e, "claims");
    mongoc_collection_destroy(col);
    bson_destroy(&filter);
    return ok;
}

/*
 * Insert the job's result unless one exists: the decision. Afterwards `job` holds
 * the result that stands (ours or the earlier one) and *ours says whose it is. A
 * failed decision then drops the job's claims.
 */
static bool decide(struct mcall *c, struct store_job *job, bool success, const char *code,
                   const char *message, bool *ours)
{
    *ours = false;
    int64_t now = store_now_ms();
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "_id", job->id);
    BSON_APPEND_UTF8(&doc, "status", success ? "success" : "failed");
    if (!success) {
        BSON_APPEND_UTF8(&doc, "errorCode", code);
        BSON_APPEND_UTF8(&doc, "errorMessage", message);
    }
    BSON_APPEND_INT64(&doc, "finishedAt", now);
    BSON_APPEND_INT32(&doc, "attempt", job->attempt);
    int r = insert_one(c, "results", &doc);
    bson_destroy(&doc);
    if (r < 0) return false;
    bson_t res;
    if (r == 1) {
        *ours = true;
        job->status = success ? STORE_JOB_SUCCESS : STORE_JOB_FAILED;
        snprintf(job->error_code, sizeof job->error_code, "%s", success ? "" : code);
        snprintf(job->error_message, sizeof job->error_message, "%s", success ? "" : message);
        job->finished_at = now;
        job->lease_until = 0;
    } else if (find_by_id(c, "results", job->id, &res)) {
        apply_result(&res, job);
        bson_destroy(&res);
    } else {
        if (c->rc == STORE_OK)
            c->rc = store_fail(c->err, STORE_INTERNAL, "result of job %s vanished", job->id);
        return false;
    }
    if (job->status == STORE_JOB_FAILED && !drop_claims(c, job)) return false;
    set_hint(c, job->id, "done", 0, job->attempt);
    return c->rc == STORE_OK;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static bool complete_job(struct mcall *c, struct store_job *job, int depth, bool *decided_here);

/*
 * Try to hold every seat of the job. Returns false on a database error (rc set).
 * Otherwise *all says the job holds every seat; if not, `taken` lists the seats that
 * successful jobs hold (at least one).
 *
 * Seats are claimed in sorted label order, one ordered insertMany, so the claims a
 * job holds are always a prefix of its sorted seats. A seat held by a job that is
 * still undecided is waited for, not reported taken — that job may yet fail, and a
 * booking must only fail for seats that really are booked. Waiting cannot deadlock:
 * a job waits only for a seat above every seat it holds, and the holder holds that
 * seat, so it holds no seat the waiter holds (it would have claimed it first); the
 * waits-for graph follows strictly increasing seats and has no cycle. A holder whose
 * lease has expired (its processor died) is completed right here instead of waited
 * for (`depth` bounds that chain). A claim of a job decided failed is dead: removed.
 */
static bool claim_seats(struct mcall *c, const struct store_job *job, int depth, bool *all,
                        const char **taken, int *ntaken)
{
    *ntaken = 0;
    *all = false;
    const char *order[STORE_JOB_MAX_SEATS];
    job_seat_ptrs(job, order);
    qsort(order, (size_t)job->nseats, sizeof *order, cmp_strp);
    int i = 0, pause = 2;
    int64_t deadline = store_now_ms() + CLAIM_WAIT_MS;
    mongoc_collection_t *col = coll(c, "claims");
    int64_t now = store_now_ms();
    bool conflict = false;
    while (i < job->nseats && c->rc == STORE_OK && !conflict) {
        if (store_now_ms() > deadline) {
            c->rc = store_fail(c->err, STORE_UNAVAILABLE,
                               "seat %s of job %s stayed held by a booking in progress for %d s; "
                               "the job will be retried",
                               order[i], job->id, CLAIM_WAIT_MS / 1000);
            break;
        }
        int n = job->nseats - i;
        bson_t *docs[STORE_JOB_MAX_SEATS];
        for (int j = 0; j < n; j++) {
            char id[STORE_ID_LEN * 2 + STORE_SEAT_LEN + 4];
            claim_id(id, sizeof id, job->event_id, order[i + j], job->id);
            docs[j] = BCON_NEW("_id", BCON_UTF8(id), "eventId", BCON_UTF8(job->event_id), "seat",
                               BCON_UTF8(order[i + j]), "jobId", BCON_UTF8(job->id), "at",
                               BCON_INT64(now));
        }
        bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
        bson_t reply;
        bson_error_t e;
        bool ok =
            mongoc_collection_insert_many(col, (const bson_t **)docs, (size_t)n, opts, &reply, &e);
        for (int j = 0; j < n; j++) bson_destroy(docs[j]);
        bson_destroy(opts);
        if (ok) {
            bson_destroy(&reply);
            i = job->nseats;
            break;
        }
        /* ordered: the documents before writeErrors[0].index were inserted */
        int at = -1;
        bson_iter_t it, we;
        if (is_dup(&e) && bson_iter_init_find(&it, &reply, "writeErrors") &&
            BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &we) && bson_iter_next(&we) &&
            BSON_ITER_HOLDS_DOCUMENT(&we)) {
            bson_iter_t wi;
            if (bson_iter_recurse(&we, &wi) && bson_iter_find(&wi, "index"))
                at = (int)bson_iter_as_int64(&wi);
        }
        bson_destroy(&reply);
        if (at < 0 || at >= n) {
            mfail(c, &e, "claims");
            break;
        }
        i += at;
        /* who holds seat order[i]? */
        bson_t *filter = BCON_NEW("eventId", BCON_UTF8(job->event_id), "seat", BCON_UTF8(order[i]));
        bson_t claim;
        bool held = find_one(c, "claims", filter, NULL, &claim);
        bson_destroy(filter);
        if (!held) continue; /* released meanwhile (or an error, which ends the loop) */
        char holder[STORE_ID_LEN], cid[STORE_ID_LEN * 2 + STORE_SEAT_LEN + 4];
        get_str(&claim, "jobId", holder, sizeof holder);
        get_str(&claim, "_id", cid, sizeof cid);
        bson_destroy(&claim);
        if (!strcmp(holder, job->id)) {
            i++; /* ours, from an earlier attempt of this job */
            continue;
        }
        struct store_job other;
        if (!load_job(c, holder, &other)) {
            if (c->rc != STORE_NOT_FOUND) break;
            c->rc = STORE_OK; /* a claim without a job cannot be made; treat as dead */
            other.status = STORE_JOB_FAILED;
        }
        if (other.status == STORE_JOB_SUCCESS) {
            conflict = true;
        } else if (other.status == STORE_JOB_FAILED) {
            /* dead claim: remove exactly that one, then retry the seat */
            bson_t *df = BCON_NEW("_id", BCON_UTF8(cid));
            if (!mongoc_collection_delete_one(col, df, NULL, NULL, &e)) mfail(c, &e, "claims");
            bson_destroy(df);
        } else if (other.status == STORE_JOB_PROCESSING) {
            sleep_ms(pause); /* its processor is on it: wait for the decision */
            pause = pause < 100 ? pause * 2 : 100;
        } else if (depth < HELP_DEPTH) {
            bool d;
            complete_job(c, &other, depth + 1, &d); /* its processor died: finish it */
        } else {
            sleep_ms(pause);
            pause = pause < 100 ? pause * 2 : 100;
        }
    }
    mongoc_collection_destroy(col);
    if (c->rc != STORE_OK) return false;
    if (!conflict) {
        *all = true;
        return true;
    }

    /* Name every seat a successful job holds, not just the first one met. */
    const char *seats[STORE_JOB_MAX_SEATS];
    job_seat_ptrs(job, seats);
    struct holder *h = NULL;
    size_t nh = 0;
    if (!load_holders(c, job->event_id, seats, job->nseats, &h, &nh)) return false;
    for (int k = 0; k < job->nseats; k++) {
        struct holder key;
        snprintf(key.seat, sizeof key.seat, "%s", job->seats[k]);
        struct holder *hit = nh ? bsearch(&key, h, nh, sizeof *h, cmp_holder) : NULL;
        if (hit && hit->status == 1 && strcmp(hit->job, job->id))
            taken[(*ntaken)++] = job->seats[k];
    }
    free(h);
    if (*ntaken == 0) taken[(*ntaken)++] = order[i]; /* its holder succeeded: keep that one */
    return true;
}

/* Decide `job` (any state): see the top comment. `job` gets the final state. */
static bool complete_job(struct mcall *c, struct store_job *job, int depth, bool *decided_here)
{
    *decided_here = false;
    int attempt = job->attempt;
    struct store_job cur;
    if (!load_job(c, job->id, &cur)) return false;
    if (cur.status == STORE_JOB_SUCCESS || cur.status == STORE_JOB_FAILED) {
        *job = cur;
        return true;
    }
    cur.attempt = attempt > cur.attempt ? attempt : cur.attempt;
    const char *taken[STORE_JOB_MAX_SEATS];
    int ntaken = 0;
    bool all;
    if (!claim_seats(c, &cur, depth, &all, taken, &ntaken)) return false;
    if (all) {
        store_fault_kill("mongo-complete-after-claims");
        if (!decide(c, &cur, true, NULL, NULL, decided_here)) return false;
    } else {
        char msg[sizeof cur.error_message];
        store_taken_message(msg, sizeof msg, taken, ntaken);
        if (!decide(c, &cur, false, "SEATS_TAKEN", msg, decided_here)) return false;
    }
    *job = cur;
    return true;
}

static enum store_rc mg_job_complete(struct store *s, struct store_job *job, bool *decided_here,
                                     struct store_err *err)
{
    struct mcall c;
    if (mcall_begin(&c, s, err)) complete_job(&c, job, 0, decided_here);
    return mcall_end(&c);
}

static enum store_rc mg_job_lease(struct store *s, const char *worker_id, uint64_t lease_ms,
                                  struct store_job *job, struct store_err *err)
{
    struct mcall c;
    if (!mcall_begin(&c, s, err)) return mcall_end(&c);
    int64_t now = store_now_ms();
    bson_t filter = BSON_INITIALIZER, sf, arr, lf;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "state", &sf);
    BSON_APPEND_ARRAY_BEGIN(&sf, "$in", &arr);
    BSON_APPEND_UTF8(&arr, "0", "queued");
    BSON_APPEND_UTF8(&arr, "1", "processing");
    bson_append_array_end(&sf, &arr);
    bson_append_document_end(&filter, &sf);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "leaseUntil", &lf);
    BSON_APPEND_INT64(&lf, "$lte", now);
    bson_append_document_end(&filter, &lf);
    bson_t *opts =
        BCON_NEW("sort", "{", "createdAt", BCON_INT32(1), "_id", BCON_INT32(1), "}", "limit",
                 BCON_INT64(LEASE_CANDIDATES), "projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_collection_t *col = coll(&c, "jobs");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &filter, opts, NULL);
    char ids[LEASE_CANDIDATES][STORE_ID_LEN];
    int n = 0;
    const bson_t *doc;
    while (n < LEASE_CANDIDATES && mongoc_cursor_next(cur, &doc))
        get_str(doc, "_id", ids[n++], STORE_ID_LEN);
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e)) mfail(&c, &e, "jobs");
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(col);
    bson_destroy(opts);
    bson_destroy(&filter);

    bool got = false;
    for (int i = 0; i < n && !got && c.rc == STORE_OK; i++) {
        struct store_job cand;
        if (!load_job(&c, ids[i], &cand)) {
            if (c.rc == STORE_NOT_FOUND) c.rc = STORE_OK; /* vanished: skip */
            continue;
        }
        if (cand.status == STORE_JOB_SUCCESS || cand.status == STORE_JOB_FAILED) {
            set_hint(&c, cand.id, "done", 0, cand.attempt); /* repair a lost hint */
            continue;
        }
        if (cand.status == STORE_JOB_PROCESSING) { /* live lease elsewhere */
            set_hint(&c, cand.id, "processing", cand.lease_until, cand.attempt);
            continue;
        }
        int attempt = cand.attempt + 1;
        if (attempt > STORE_JOB_MAX_ATTEMPTS) {
            char msg[160];
            bool ours;
            snprintf(msg, sizeof msg,
                     "the booking was interrupted %d times (its processor stopped); no seat "
                     "was booked, submit it again",
                     cand.attempt);
            decide(&c, &cand, false, "ATTEMPTS_EXHAUSTED", msg, &ours);
            continue;
        }
        char lid[STORE_ID_LEN + 16];
        snprintf(lid, sizeof lid, "%s:%d", cand.id, attempt);
        int64_t until = store_now_ms() + (int64_t)lease_ms;
        bson_t *ldoc = BCON_NEW("_id", BCON_UTF8(lid), "jobId", BCON_UTF8(cand.id), "attempt",
                                BCON_INT32(attempt), "owner", BCON_UTF8(worker_id), "until",
                                BCON_INT64(until), "at", BCON_INT64(now));
        int r = insert_one(&c, "leases", ldoc);
        bson_destroy(ldoc);
        if (r != 1) continue; /* another processor took this attempt */
        set_hint(&c, cand.id, "processing", until, attempt);
        cand.status = STORE_JOB_PROCESSING;
        cand.attempt = attempt;
        cand.lease_until = until;
        snprintf(cand.lease_owner, sizeof cand.lease_owner, "%s", worker_id);
        *job = cand;
        got = true;
    }
    if (c.rc == STORE_OK && !got) c.rc = store_fail(err, STORE_NOT_FOUND, "no job is ready");
    return mcall_end(&c);
}

/* Is `job`'s lease still the newest one of an undecided job? */
static bool lease_current(struct mcall *c, const struct store_job *job)
{
    struct store_job cur;
    if (!load_job(c, job->id, &cur)) return false;
    if (cur.status == STORE_JOB_SUCCESS || cur.status == STORE_JOB_FAILED ||
        cur.attempt != job->attempt) {
        c->rc = store_fail(c->err, STORE_CONFLICT,
                           "lease %d of job %s was lost (expired and taken over, or the job "
                           "finished)",
                           job->attempt, job->id);
        return false;
    }
    return true;
}

static bool set_lease_until(struct mcall *c, const struct store_job *job, int64_t until)
{
    char lid[STORE_ID_LEN + 16];
    snprintf(lid, sizeof lid, "%s:%d", job->id, job->attempt);
    mongoc_collection_t *col = coll(c, "leases");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(lid));
    bson_t *upd = BCON_NEW("$set", "{", "until", BCON_INT64(until), "}");
    bson_error_t e;
    bool ok = mongoc_collection_update_one(col, filter, upd, NULL, NULL, &e);
    if (!ok) mfail(c, &e, "leases");
    bson_destroy(filter);
    bson_destroy(upd);
    mongoc_collection_destroy(col);
    return ok;
}

static enum store_rc mg_job_renew(struct store *s, struct store_job *job, uint64_t lease_ms,
                                  struct store_err *err)
{
    struct mcall c;
    int64_t until = store_now_ms() + (int64_t)lease_ms;
    if (mcall_begin(&c, s, err) && lease_current(&c, job) && set_lease_until(&c, job, until)) {
        set_hint(&c, job->id, "processing", until, job->attempt);
        job->lease_until = until;
    }
    return mcall_end(&c);
}

static enum store_rc mg_job_release(struct store *s, const struct store_job *job,
                                    struct store_err *err)
{
    struct mcall c;
    if (mcall_begin(&c, s, err) && lease_current(&c, job) && set_lease_until(&c, job, 0))
        set_hint(&c, job->id, "queued", 0, job->attempt);
    if (c.rc == STORE_CONFLICT) c.rc = STORE_OK; /* nothing of ours to give back */
    return mcall_end(&c);
}

/* ---- messages -------------------------------------------------------------------------- */

static enum store_rc mg_message_add(struct store *s, const char *room, const char *from,
                                    const char *text, size_t text_len, char *id, int64_t ts,
                                    struct store_err *err)
{
    struct mcall c;
    if (mcall_begin(&c, s, err)) {
        /* ObjectId: time-ordered, so (ts, _id) orders messages of the same millisecond */
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "_id", id);
        BSON_APPEND_UTF8(&doc, "room", room);
        BSON_APPEND_UTF8(&doc, "from", from);
        bson_append_utf8(&doc, "text", -1, text, (int)text_len);
        BSON_APPEND_INT64(&doc, "ts", ts);
        if (insert_one(&c, "messages", &doc) == 0)
            c.rc = store_fail(err, STORE_INTERNAL, "message id %s collided; retry", id);
        bson_destroy(&doc);
    }
    return mcall_end(&c);
}

static enum store_rc mg_messages(struct store *s, const char *room, const char *before, int limit,
                                 store_message_cb cb, void *arg, struct store_err *err)
{
    struct mcall c;
    if (!mcall_begin(&c, s, err)) return mcall_end(&c);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "room", room);
    if (before) {
        bson_t *bf = BCON_NEW("_id", BCON_UTF8(before), "room", BCON_UTF8(room));
        bson_t b;
        bool found = find_one(&c, "messages", bf, NULL, &b);
        bson_destroy(bf);
        if (!found) {
            if (c.rc == STORE_OK)
                c.rc = store_fail(err, STORE_BAD_INPUT,
                                  "before='%s' is not a message id of room '%.60s'", before, room);
            bson_destroy(&filter);
            return mcall_end(&c);
        }
        int64_t bts = get_i64(&b, "ts");
        bson_destroy(&b);
        /* strictly older: ts < bts, or same ts and smaller id */
        bson_t or, o0, o1, t0, t1, i1;
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", & or);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &o0);
        BSON_APPEND_DOCUMENT_BEGIN(&o0, "ts", &t0);
        BSON_APPEND_INT64(&t0, "$lt", bts);
        bson_append_document_end(&o0, &t0);
        bson_append_document_end(& or, &o0);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &o1);
        BSON_APPEND_DOCUMENT_BEGIN(&o1, "ts", &t1);
        BSON_APPEND_INT64(&t1, "$eq", bts);
        bson_append_document_end(&o1, &t1);
        BSON_APPEND_DOCUMENT_BEGIN(&o1, "_id", &i1);
        BSON_APPEND_UTF8(&i1, "$lt", before);
        bson_append_document_end(&o1, &i1);
        bson_append_document_end(& or, &o1);
        bson_append_array_end(&filter, & or);
    }
    bson_t *opts = BCON_NEW("sort", "{", "ts", BCON_INT32(-1), "_id", BCON_INT32(-1), "}", "limit",
                            BCON_INT64(limit));
    mongoc_collection_t *col = coll(&c, "messages");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &filter, opts, NULL);
    bson_t **page = calloc((size_t)limit, sizeof *page);
    int n = 0;
    const bson_t *doc;
    if (!page) c.rc = store_fail(err, STORE_INTERNAL, "out of memory");
    while (page && n < limit && mongoc_cursor_next(cur, &doc)) page[n++] = bson_copy(doc);
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e)) mfail(&c, &e, "messages");
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(col);
    bson_destroy(opts);
    bson_destroy(&filter);
    for (int i = n - 1; i >= 0 && c.rc == STORE_OK; i--) {
        struct store_message m;
        memset(&m, 0, sizeof m);
        get_str(page[i], "_id", m.id, sizeof m.id);
        snprintf(m.room, sizeof m.room, "%s", room);
        get_str(page[i], "from", m.from, sizeof m.from);
        bson_iter_t it;
        uint32_t tl = 0;
        m.text = "";
        if (bson_iter_init_find(&it, page[i], "text") && BSON_ITER_HOLDS_UTF8(&it))
            m.text = bson_iter_utf8(&it, &tl);
        m.text_len = tl;
        m.ts = get_i64(page[i], "ts");
        if (cb(arg, &m)) break;
    }
    for (int i = 0; i < n; i++) bson_destroy(page[i]);
    free(page);
    return mcall_end(&c);
}

static const struct store_ops mongo_ops = {
    .name = "mongodb",
    .close = mg_close,
    .ping = mg_ping,
    .describe = mg_describe,
    .event_create = mg_event_create,
    .event_get = mg_event_get,
    .event_seats = mg_event_seats,
    .job_submit = mg_job_submit,
    .job_get = mg_job_get,
    .job_lease = mg_job_lease,
    .job_renew = mg_job_renew,
    .job_release = mg_job_release,
    .job_complete = mg_job_complete,
    .message_add = mg_message_add,
    .messages = mg_messages,
};

struct store *store_mongo_open(const struct svcd_config *cfg, unsigned flags, struct store_err *err)
{
    pthread_once(&mongoc_once, mongoc_init_once);
    char shown[1024];
    config_redact_uri(cfg->storage.uri, shown, sizeof shown);
    if (!cfg->storage.uri[0]) {
        store_fail(err, STORE_BAD_INPUT,
                   "storage.uri is empty; set it (or MONGODB_URI) to e.g. "
                   "mongodb://127.0.0.1:27017/svcd");
        return NULL;
    }
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg->storage.uri, &e);
    if (!uri) {
        store_fail(err, STORE_BAD_INPUT, "storage.uri '%s' is not a MongoDB URI: %s", shown,
                   e.message);
        return NULL;
    }
    struct mongo_store *ms = calloc(1, sizeof *ms);
    if (!ms) {
        mongoc_uri_destroy(uri);
        store_fail(err, STORE_INTERNAL, "out of memory");
        return NULL;
    }
    ms->base.ops = &mongo_ops;
    ms->uri = uri;
    pthread_mutex_init(&ms->mu, NULL);
    snprintf(ms->target, sizeof ms->target, "%s", shown);
    const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri);
    snprintf(ms->host, sizeof ms->host, "%.200s", h ? h->host_and_port : "(no host)");
    const char *db = mongoc_uri_get_database(uri);
    snprintf(ms->db, sizeof ms->db, "%s", db && *db ? db : DEFAULT_DB);

    /* Requests must fail fast (503) rather than hang when the server is gone; a URI
     * that sets these itself wins. Retryable writes: on by default, kept explicit. */
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, SELECT_TIMEOUT_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, CONNECT_TIMEOUT_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_RETRYWRITES))
        mongoc_uri_set_option_as_bool(uri, MONGOC_URI_RETRYWRITES, true);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_RETRYREADS))
        mongoc_uri_set_option_as_bool(uri, MONGOC_URI_RETRYREADS, true);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_option_as_utf8(uri, MONGOC_URI_APPNAME, "svcd");

    ms->pool = mongoc_client_pool_new_with_error(uri, &e);
    if (!ms->pool) {
        store_fail(err, STORE_BAD_INPUT, "cannot use MongoDB URI '%s': %s", shown, e.message);
        mg_close(&ms->base);
        return NULL;
    }
    mongoc_client_pool_set_error_api(ms->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(ms->pool, POOL_MAX);

    /* Deferred (a worker's loop thread): no network round trip here; the first call
     * that reaches the server creates the indexes (mcall_begin). */
    if ((flags & STORE_OPEN_LAZY) && (flags & STORE_OPEN_DEFER)) return &ms->base;

    /* One round trip now: fail fast with the reason, and create the indexes. */
    struct mcall c;
    c.ms = ms;
    c.err = err;
    c.rc = STORE_OK;
    c.cl = mongoc_client_pool_pop(ms->pool);
    c.db = mongoc_client_get_database(c.cl, ms->db);
    c.rc = ping_client(ms, c.cl, err);
    if (c.rc == STORE_OK) ensure_indexes(&c);
    enum store_rc rc = mcall_end(&c);
    if (rc != STORE_OK && !(flags & STORE_OPEN_LAZY)) {
        mg_close(&ms->base);
        return NULL;
    }
    return &ms->base;
}
