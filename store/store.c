/*
 * store.c — the storage interface's front door: picks the backend from the
 * configuration, validates every argument once, makes ids and timestamps, then
 * hands over to the backend (store_sqlite.c / store_mongo.c).
 *
 * Validation lives here, not in the backends, so both answer the same bad input
 * with the same class and message — the contract tests depend on that.
 */
#include "store_backend.h"
#include "../common/config.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum store_rc store_fail(struct store_err *err, enum store_rc rc, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->rc = rc;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_new_id(char out[STORE_ID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[12];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            /* getrandom cannot fail on Linux >= 3.17 once the pool is initialised;
             * fall back to time and pid rather than aborting a request. */
            uint64_t x = (uint64_t)store_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)clock();
            for (; got < sizeof r; got++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
                r[got] = (unsigned char)(x >> 56);
        }
    }
    for (size_t i = 0; i < sizeof r; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[2 * sizeof r] = '\0';
}

bool store_seat_label_ok(const char *seat)
{
    size_t n = strlen(seat);
    if (n == 0 || n >= STORE_SEAT_LEN) return false;
    for (const char *c = seat; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-') return false;
    return true;
}

void store_taken_message(char *out, size_t outlen, const char *const *taken, int ntaken)
{
    size_t len = (size_t)snprintf(out, outlen, "seat%s already booked: ", ntaken == 1 ? "" : "s");
    for (int i = 0; i < ntaken && len < outlen; i++) {
        /* keep room for ", and NN more" */
        if (len + strlen(taken[i]) + 2 + 20 >= outlen) {
            snprintf(out + len, outlen - len, "and %d more", ntaken - i);
            return;
        }
        len +=
            (size_t)snprintf(out + len, outlen - len, "%s%s", taken[i], i + 1 < ntaken ? ", " : "");
    }
}

bool store_fault(const char *point)
{
    const char *v = getenv("SVCD_STORE_FAULT");
    return v && !strcmp(v, point);
}

void store_fault_kill(const char *point)
{
    if (store_fault(point)) raise(SIGKILL);
}

const char *store_rc_name(enum store_rc rc)
{
    switch (rc) {
    case STORE_OK:
        return "OK";
    case STORE_NOT_FOUND:
        return "NOT_FOUND";
    case STORE_BAD_INPUT:
        return "BAD_INPUT";
    case STORE_CONFLICT:
        return "CONFLICT";
    case STORE_UNAVAILABLE:
        return "DB_UNAVAILABLE";
    case STORE_INTERNAL:
        return "INTERNAL";
    }
    return "INTERNAL";
}

const char *store_job_status_name(enum store_job_status st)
{
    switch (st) {
    case STORE_JOB_QUEUED:
        return "queued";
    case STORE_JOB_PROCESSING:
        return "processing";
    case STORE_JOB_SUCCESS:
        return "success";
    case STORE_JOB_FAILED:
        return "failed";
    }
    return "queued";
}

void store_format_time(int64_t ms, char *out, size_t outlen)
{
    if (ms <= 0) {
        if (outlen) out[0] = '\0';
        return;
    }
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03dZ", base, (int)(ms % 1000));
}

/* ---- validation ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Labels well-formed and pairwise distinct. `what` is "seat" in messages. */
static enum store_rc check_seats(const char *const *seats, int nseats, int max,
                                 struct store_err *err)
{
    if (!seats || nseats <= 0)
        return store_fail(err, STORE_BAD_INPUT, "no seats given; list at least one seat");
    if (nseats > max)
        return store_fail(err, STORE_BAD_INPUT, "%d seats given; at most %d are allowed at once",
                          nseats, max);
    for (int i = 0; i < nseats; i++) {
        if (!seats[i] || !store_seat_label_ok(seats[i]))
            return store_fail(err, STORE_BAD_INPUT,
                              "seat label '%.40s' is invalid; use 1 to %d of A-Z a-z 0-9 . _ -",
                              seats[i] ? seats[i] : "(null)", STORE_SEAT_LEN - 1);
    }
    const char **sorted = malloc(sizeof *sorted * (size_t)nseats);
    if (!sorted) return store_fail(err, STORE_INTERNAL, "out of memory");
    memcpy(sorted, seats, sizeof *sorted * (size_t)nseats);
    qsort(sorted, (size_t)nseats, sizeof *sorted, cmp_str);
    for (int i = 1; i < nseats; i++) {
        if (!strcmp(sorted[i - 1], sorted[i])) {
            store_fail(err, STORE_BAD_INPUT, "seat '%s' is listed twice; list each seat once",
                       sorted[i]);
            free(sorted);
            return STORE_BAD_INPUT;
        }
    }
    free(sorted);
    return STORE_OK;
}

static bool text_ok(const char *s, size_t maxlen, bool allow_space)
{
    if (!s) return false;
    size_t n = strlen(s);
    if (n == 0 || n > maxlen) return false;
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u < 0x20 || u == 0x7f) return false;
        if (!allow_space && u == ' ') return false;
    }
    return true;
}

static bool id_ok(const char *id)
{
    return text_ok(id, STORE_ID_LEN - 1, false);
}

/* ---- the interface --------------------------------------------------------------- */

struct store *store_open(const struct svcd_config *cfg, unsigned flags, struct store_err *err)
{
    if (err) err->rc = STORE_OK, err->msg[0] = '\0';
    if (cfg->storage.driver == STORE_MONGODB) return store_mongo_open(cfg, flags, err);
    return store_sqlite_open(cfg, flags, err);
}

void store_close(struct store *s)
{
    if (s) s->ops->close(s);
}

const char *store_driver_name(const struct store *s)
{
    return s->ops->name;
}

enum store_rc store_ping(struct store *s, double *ms, struct store_err *err)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    enum store_rc rc = s->ops->ping(s, err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (ms) *ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    return rc;
}

void store_describe(struct store *s, struct store_info *out)
{
    memset(out, 0, sizeof *out);
    s->ops->describe(s, out);
}

enum store_rc store_event_create(struct store *s, const char *name, const char *const *seats,
                                 int nseats, char *id_out, struct store_err *err)
{
    if (!text_ok(name, STORE_NAME_LEN - 1, true))
        return store_fail(err, STORE_BAD_INPUT,
                          "event name must be 1 to %d characters without control characters",
                          STORE_NAME_LEN - 1);
    enum store_rc rc = check_seats(seats, nseats, STORE_EVENT_MAX_SEATS, err);
    if (rc) return rc;
    char id[STORE_ID_LEN];
    store_new_id(id);
    rc = s->ops->event_create(s, id, name, seats, nseats, store_now_ms(), err);
    if (rc == STORE_OK && id_out) memcpy(id_out, id, STORE_ID_LEN);
    return rc;
}

enum store_rc store_event_get(struct store *s, const char *event_id, struct store_event *out,
                              struct store_err *err)
{
    if (!id_ok(event_id))
        return store_fail(err, STORE_NOT_FOUND, "event '%.40s' not found",
                          event_id ? event_id : "");
    char id[STORE_ID_LEN];
    snprintf(id, sizeof id, "%s", event_id);
    memset(out, 0, sizeof *out);
    return s->ops->event_get(s, id, out, err);
}

enum store_rc store_event_seats(struct store *s, const char *event_id, store_seat_cb cb, void *arg,
                                struct store_err *err)
{
    if (!id_ok(event_id))
        return store_fail(err, STORE_NOT_FOUND, "event '%.40s' not found",
                          event_id ? event_id : "");
    return s->ops->event_seats(s, event_id, cb, arg, err);
}

enum store_rc store_job_submit(struct store *s, const char *user, const char *event_id,
                               const char *const *seats, int nseats, const char *idem_key,
                               struct store_job *job, bool *created_new, struct store_err *err)
{
    bool dummy;
    if (!created_new) created_new = &dummy;
    *created_new = false;
    if (!text_ok(user, STORE_USER_LEN - 1, true))
        return store_fail(err, STORE_BAD_INPUT, "user id must be 1 to %d printable characters",
                          STORE_USER_LEN - 1);
    if (!id_ok(event_id))
        return store_fail(err, STORE_NOT_FOUND, "event '%.40s' not found",
                          event_id ? event_id : "");
    enum store_rc rc = check_seats(seats, nseats, STORE_JOB_MAX_SEATS, err);
    if (rc) return rc;
    if (idem_key && *idem_key && !text_ok(idem_key, STORE_KEY_LEN - 1, true))
        return store_fail(err, STORE_BAD_INPUT,
                          "Idempotency-Key must be 1 to %d printable ASCII characters",
                          STORE_KEY_LEN - 1);

    memset(job, 0, sizeof *job);
    store_new_id(job->id);
    snprintf(job->user, sizeof job->user, "%s", user);
    snprintf(job->event_id, sizeof job->event_id, "%s", event_id);
    for (int i = 0; i < nseats; i++) snprintf(job->seats[i], sizeof job->seats[i], "%s", seats[i]);
    job->nseats = nseats;
    job->status = STORE_JOB_QUEUED;
    job->created_at = store_now_ms();
    return s->ops->job_submit(s, job, idem_key && *idem_key ? idem_key : NULL, created_new, err);
}

enum store_rc store_job_get(struct store *s, const char *job_id, struct store_job *job,
                            struct store_err *err)
{
    if (!id_ok(job_id))
        return store_fail(err, STORE_NOT_FOUND, "job '%.40s' not found", job_id ? job_id : "");
    char id[STORE_ID_LEN]; /* job_id may point into *job (refreshing a job in place) */
    snprintf(id, sizeof id, "%s", job_id);
    memset(job, 0, sizeof *job);
    return s->ops->job_get(s, id, job, err);
}

enum store_rc store_job_lease(struct store *s, const char *worker_id, uint64_t lease_ms,
                              struct store_job *job, struct store_err *err)
{
    if (lease_ms == 0 || lease_ms > 24ULL * 3600 * 1000)
        return store_fail(err, STORE_BAD_INPUT, "lease of %llu ms; use 1 ms to 24 h",
                          (unsigned long long)lease_ms);
    memset(job, 0, sizeof *job);
    return s->ops->job_lease(s, worker_id && *worker_id ? worker_id : "?", lease_ms, job, err);
}

enum store_rc store_job_renew(struct store *s, struct store_job *job, uint64_t lease_ms,
                              struct store_err *err)
{
    if (lease_ms == 0 || lease_ms > 24ULL * 3600 * 1000)
        return store_fail(err, STORE_BAD_INPUT, "lease of %llu ms; use 1 ms to 24 h",
                          (unsigned long long)lease_ms);
    return s->ops->job_renew(s, job, lease_ms, err);
}

enum store_rc store_job_release(struct store *s, const struct store_job *job, struct store_err *err)
{
    return s->ops->job_release(s, job, err);
}

enum store_rc store_job_complete(struct store *s, struct store_job *job, bool *decided_here,
                                 struct store_err *err)
{
    bool dummy;
    if (!decided_here) decided_here = &dummy;
    *decided_here = false;
    if (!id_ok(job->id)) return store_fail(err, STORE_NOT_FOUND, "job without an id");
    if (store_fault("slow-complete")) {
        /* Test-only: a database that takes SVCD_STORE_FAULT_MS to run a job. */
        const char *v = getenv("SVCD_STORE_FAULT_MS");
        long ms = v ? atol(v) : 0;
        if (ms > 0) {
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
        }
    }
    return s->ops->job_complete(s, job, decided_here, err);
}

enum store_rc store_message_add(struct store *s, const char *room, const char *from,
                                const char *text, size_t text_len, char *id_out, int64_t *ts,
                                struct store_err *err)
{
    if (!text_ok(room, STORE_ROOM_LEN - 1, true))
        return store_fail(err, STORE_BAD_INPUT, "room name must be 1 to %d printable characters",
                          STORE_ROOM_LEN - 1);
    if (!text_ok(from, STORE_USER_LEN - 1, true))
        return store_fail(err, STORE_BAD_INPUT, "sender must be 1 to %d printable characters",
                          STORE_USER_LEN - 1);
    if (!text || text_len > STORE_MESSAGE_MAX)
        return store_fail(err, STORE_BAD_INPUT, "message text of %zu bytes; at most %d allowed",
                          text_len, STORE_MESSAGE_MAX);
    if (memchr(text, '\0', text_len))
        return store_fail(err, STORE_BAD_INPUT, "message text contains a NUL byte");
    if (store_fault("message-add-unavailable")) /* test hook: the chat's DB_UNAVAILABLE ack */
        return store_fail(err, STORE_UNAVAILABLE, "the database is unavailable (fault injected)");
    char id[STORE_ID_LEN];
    store_new_id(id);
    int64_t now = store_now_ms();
    enum store_rc rc = s->ops->message_add(s, room, from, text, text_len, id, now, err);
    if (rc == STORE_OK) {
        if (id_out) memcpy(id_out, id, STORE_ID_LEN);
        if (ts) *ts = now;
    }
    return rc;
}

enum store_rc store_messages(struct store *s, const char *room, const char *before, int limit,
                             store_message_cb cb, void *arg, struct store_err *err)
{
    if (!text_ok(room, STORE_ROOM_LEN - 1, true))
        return store_fail(err, STORE_BAD_INPUT, "room name must be 1 to %d printable characters",
                          STORE_ROOM_LEN - 1);
    if (limit < 1 || limit > STORE_MESSAGES_MAX_PAGE)
        return store_fail(err, STORE_BAD_INPUT, "limit %d; use 1 to %d", limit,
                          STORE_MESSAGES_MAX_PAGE);
    if (before && *before && !id_ok(before))
        return store_fail(err, STORE_BAD_INPUT, "before='%.40s' is not a message id", before);
    return s->ops->messages(s, room, before && *before ? before : NULL, limit, cb, arg, err);
}
