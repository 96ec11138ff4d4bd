/*
 * contract.c — the storage contract: one cmocka suite that every backend must pass
 * unchanged. The backend comes from the environment:
 *
 *   SVCD_TEST_STORE=sqlite            (default) files under SVCD_TEST_DIR or a temp dir
 *   SVCD_TEST_STORE=mongodb           SVCD_TEST_MONGODB_URI=mongodb://127.0.0.1:PORT
 *                                     (FerretDB in tests; one fresh database per test)
 *
 * It proves what SPEC §5 promises of the store: seat maps, accepted jobs, idempotency,
 * leases that expire and are retried, all-or-nothing bookings whose failures name
 * the taken seats, no seat booked twice with many threads AND processes racing (one
 * of them killed with SIGKILL mid-booking), the "database unavailable" error class,
 * and chat history paging. test/store/run.sh runs it against both backends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../common/config.h"
#include "../../store/job_queue.h"
#include "../../store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool mongo;
static char base_uri[512];
static char tmpdir[512];
static int test_no;

/* ---- fixtures --------------------------------------------------------------------- */

/* A fresh database for one test: its own SQLite file / MongoDB database. */
static void make_cfg(struct svcd_config *cfg, const char *tag)
{
    config_defaults(cfg);
    test_no++;
    if (mongo) {
        cfg->storage.driver = STORE_MONGODB;
        snprintf(cfg->storage.uri, sizeof cfg->storage.uri, "%s/t%d_%d_%s", base_uri, (int)getpid(),
                 test_no, tag);
    } else {
        cfg->storage.driver = STORE_SQLITE;
        snprintf(cfg->storage.path, sizeof cfg->storage.path, "%s/%d_%s/svcd.db", tmpdir, test_no,
                 tag);
    }
}

static struct store *open_ok(const struct svcd_config *cfg)
{
    struct store_err err = {0};
    struct store *s = store_open(cfg, 0, &err);
    if (!s) fail_msg("store_open: %s: %s", store_rc_name(err.rc), err.msg);
    return s;
}

static void seat_names(char names[][STORE_SEAT_LEN], const char **ptrs, int n, const char *row)
{
    for (int i = 0; i < n; i++) {
        snprintf(names[i], STORE_SEAT_LEN, "%s%d", row, i + 1);
        ptrs[i] = names[i];
    }
}

static void make_event(struct store *s, int nseats, char *id)
{
    char names[256][STORE_SEAT_LEN];
    const char *ptrs[256];
    assert_true(nseats <= 256);
    seat_names(names, ptrs, nseats, "A");
    struct store_err err = {0};
    enum store_rc rc = store_event_create(s, "Concert", ptrs, nseats, id, &err);
    if (rc) fail_msg("event_create: %s", err.msg);
}

static void submit(struct store *s, const char *user, const char *event, const char *seats_csv,
                   const char *key, struct store_job *job)
{
    char buf[512];
    const char *seats[STORE_JOB_MAX_SEATS];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", seats_csv);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) seats[n++] = t;
    struct store_err err = {0};
    bool created;
    enum store_rc rc = store_job_submit(s, user, event, seats, n, key, job, &created, &err);
    if (rc) fail_msg("job_submit(%s): %s: %s", seats_csv, store_rc_name(rc), err.msg);
}

/* Seat map snapshot: seat -> holding job ("" when available). */
struct seat_map {
    int n;
    char seat[512][STORE_SEAT_LEN];
    char job[512][STORE_ID_LEN];
};

static int map_cb(void *arg, const char *seat, bool booked, const char *job_id)
{
    struct seat_map *m = arg;
    assert_true(m->n < 512);
    assert_int_equal(booked, job_id != NULL);
    snprintf(m->seat[m->n], STORE_SEAT_LEN, "%s", seat);
    snprintf(m->job[m->n], STORE_ID_LEN, "%s", job_id ? job_id : "");
    m->n++;
    return 0;
}

static void load_map(struct store *s, const char *event, struct seat_map *m)
{
    memset(m, 0, sizeof *m);
    struct store_err err = {0};
    enum store_rc rc = store_event_seats(s, event, map_cb, m, &err);
    if (rc) fail_msg("event_seats: %s", err.msg);
}

static const char *holder_of(const struct seat_map *m, const char *seat)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->seat[i], seat)) return m->job[i];
    fail_msg("seat %s not in map", seat);
    return NULL;
}

static void lease_ok(struct store *s, const char *worker, uint64_t ms, struct store_job *job)
{
    struct store_err err = {0};
    enum store_rc rc = store_job_lease(s, worker, ms, job, &err);
    if (rc) fail_msg("job_lease: %s: %s", store_rc_name(rc), err.msg);
}

static void complete_ok(struct store *s, struct store_job *job, bool *decided)
{
    struct store_err err = {0};
    enum store_rc rc = store_job_complete(s, job, decided, &err);
    if (rc) fail_msg("job_complete: %s: %s", store_rc_name(rc), err.msg);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* ---- events ------------------------------------------------------------------------- */

static void test_event_seat_map(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "event");
    struct store *s = open_ok(&cfg);
    char id[STORE_ID_LEN];
    const char *seats[] = {"B2", "A1", "A-10", "vip.1"};
    struct store_err err = {0};
    assert_int_equal(store_event_create(s, "Opera night", seats, 4, id, &err), STORE_OK);
    assert_int_equal(strlen(id), 24);

    struct store_event ev;
    assert_int_equal(store_event_get(s, id, &ev, &err), STORE_OK);
    assert_string_equal(ev.name, "Opera night");
    assert_int_equal(ev.nseats, 4);
    assert_true(ev.created_at > 0);

    struct seat_map m;
    load_map(s, id, &m);
    assert_int_equal(m.n, 4);
    for (int i = 0; i < 4; i++) { /* creation order, all available */
        assert_string_equal(m.seat[i], seats[i]);
        assert_string_equal(m.job[i], "");
    }

    assert_int_equal(store_event_seats(s, "000000000000000000000000", map_cb, &m, &err),
                     STORE_NOT_FOUND);
    assert_non_null(strstr(err.msg, "not found"));
    assert_int_equal(store_event_get(s, "nope", &ev, &err), STORE_NOT_FOUND);

    const char *dup[] = {"A1", "A2", "A1"};
    assert_int_equal(store_event_create(s, "x", dup, 3, id, &err), STORE_BAD_INPUT);
    assert_non_null(strstr(err.msg, "'A1' is listed twice"));
    assert_int_equal(store_event_create(s, "x", dup, 0, id, &err), STORE_BAD_INPUT);
    const char *bad[] = {"A 1"};
    assert_int_equal(store_event_create(s, "x", bad, 1, id, &err), STORE_BAD_INPUT);
    assert_non_null(strstr(err.msg, "'A 1' is invalid"));
    assert_int_equal(store_event_create(s, "", seats, 1, id, &err), STORE_BAD_INPUT);
    store_close(s);
}

/* ---- jobs --------------------------------------------------------------------------- */

static void test_job_submit_get(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "submit");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 10, ev);

    struct store_job job, got;
    submit(s, "alice", ev, "A3,A1", NULL, &job);
    assert_int_equal(job.status, STORE_JOB_QUEUED);
    assert_int_equal(strlen(job.id), 24);
    assert_true(job.created_at > 0);

    struct store_err err = {0};
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_string_equal(got.id, job.id);
    assert_string_equal(got.user, "alice");
    assert_string_equal(got.event_id, ev);
    assert_int_equal(got.nseats, 2);
    assert_string_equal(got.seats[0], "A3"); /* request order kept */
    assert_string_equal(got.seats[1], "A1");
    assert_int_equal(got.status, STORE_JOB_QUEUED);
    assert_int_equal(got.created_at, job.created_at);
    assert_int_equal(got.finished_at, 0);
    assert_string_equal(store_job_status_name(got.status), "queued");

    assert_int_equal(store_job_get(s, "ffffffffffffffffffffffff", &got, &err), STORE_NOT_FOUND);

    bool created;
    const char *unknown[] = {"A1", "Z9", "Q7"};
    assert_int_equal(store_job_submit(s, "alice", ev, unknown, 3, NULL, &job, &created, &err),
                     STORE_BAD_INPUT);
    assert_non_null(strstr(err.msg, "Z9, Q7"));
    assert_int_equal(store_job_submit(s, "alice", "aaaaaaaaaaaaaaaaaaaaaaaa", unknown, 1, NULL,
                                      &job, &created, &err),
                     STORE_NOT_FOUND);
    assert_non_null(strstr(err.msg, "event 'aaaaaaaaaaaaaaaaaaaaaaaa' not found"));
    const char *dups[] = {"A1", "A1"};
    assert_int_equal(store_job_submit(s, "alice", ev, dups, 2, NULL, &job, &created, &err),
                     STORE_BAD_INPUT);
    assert_int_equal(store_job_submit(s, "alice", ev, dups, 0, NULL, &job, &created, &err),
                     STORE_BAD_INPUT);
    const char *many[STORE_JOB_MAX_SEATS + 1];
    char names[STORE_JOB_MAX_SEATS + 1][STORE_SEAT_LEN];
    seat_names(names, many, STORE_JOB_MAX_SEATS + 1, "A");
    assert_int_equal(
        store_job_submit(s, "alice", ev, many, STORE_JOB_MAX_SEATS + 1, NULL, &job, &created, &err),
        STORE_BAD_INPUT);
    assert_non_null(strstr(err.msg, "at most"));
    assert_int_equal(store_job_submit(s, "", ev, dups, 1, NULL, &job, &created, &err),
                     STORE_BAD_INPUT);
    store_close(s);
}

struct idem_race {
    const struct svcd_config *cfg;
    const char *event;
    char id[STORE_ID_LEN];
    bool created;
    enum store_rc rc;
    char msg[512];
};

static void *idem_thread(void *arg)
{
    struct idem_race *r = arg;
    struct store_err err = {0};
    struct store *s = store_open(r->cfg, 0, &err);
    if (!s) {
        r->rc = err.rc;
        snprintf(r->msg, sizeof r->msg, "%s", err.msg);
        return NULL;
    }
    const char *seats[] = {"A5", "A6"};
    struct store_job job;
    r->rc = store_job_submit(s, "bob", r->event, seats, 2, "retry-key-1", &job, &r->created, &err);
    snprintf(r->id, sizeof r->id, "%s", job.id);
    snprintf(r->msg, sizeof r->msg, "%s", err.msg);
    store_close(s);
    return NULL;
}

static void test_idempotency_key(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "idem");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 10, ev);
    struct store_err err = {0};
    const char *seats[] = {"A1", "A2"};
    struct store_job a, b, c;
    bool created;
    assert_int_equal(store_job_submit(s, "alice", ev, seats, 2, "key-1", &a, &created, &err),
                     STORE_OK);
    assert_true(created);
    /* the retry after ECONNRESET: same job, not a second one */
    assert_int_equal(store_job_submit(s, "alice", ev, seats, 2, "key-1", &b, &created, &err),
                     STORE_OK);
    assert_false(created);
    assert_string_equal(a.id, b.id);
    assert_int_equal(a.created_at, b.created_at);
    /* keys are per user */
    assert_int_equal(store_job_submit(s, "carol", ev, seats, 2, "key-1", &c, &created, &err),
                     STORE_OK);
    assert_true(created);
    assert_string_not_equal(c.id, a.id);
    /* same key, different request: refused, not silently mapped */
    const char *other[] = {"A3"};
    assert_int_equal(store_job_submit(s, "alice", ev, other, 1, "key-1", &c, &created, &err),
                     STORE_CONFLICT);
    assert_non_null(strstr(err.msg, a.id));
    /* the retry still returns the job after it ran */
    lease_ok(s, "w", 5000, &c);
    bool decided;
    complete_ok(s, &c, &decided);
    assert_int_equal(store_job_submit(s, "alice", ev, seats, 2, "key-1", &b, &created, &err),
                     STORE_OK);
    assert_false(created);
    assert_string_equal(b.id, a.id);
    assert_int_equal(b.status, STORE_JOB_SUCCESS);

    /* 8 concurrent retries with one key (separate handles): one job */
    struct idem_race r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].cfg = &cfg;
        r[i].event = ev;
        assert_int_equal(pthread_create(&th[i], NULL, idem_thread, &r[i]), 0);
    }
    int ncreated = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (r[i].rc) fail_msg("concurrent submit: %s: %s", store_rc_name(r[i].rc), r[i].msg);
        ncreated += r[i].created;
        assert_string_equal(r[i].id, r[0].id);
    }
    assert_int_equal(ncreated, 1);
    store_close(s);
}

static void test_lease_complete_success(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "lease");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 6, ev);
    struct store_job job, leased, got;
    struct store_err err = {0};
    assert_int_equal(store_job_lease(s, "w1", 10000, &leased, &err), STORE_NOT_FOUND);
    submit(s, "alice", ev, "A1,A2", NULL, &job);
    lease_ok(s, "w1", 10000, &leased);
    assert_string_equal(leased.id, job.id);
    assert_int_equal(leased.status, STORE_JOB_PROCESSING);
    assert_int_equal(leased.attempt, 1);
    assert_string_equal(leased.lease_owner, "w1");
    assert_true(leased.lease_until > job.created_at);
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_PROCESSING);
    /* leased: nobody else gets it */
    assert_int_equal(store_job_lease(s, "w2", 10000, &got, &err), STORE_NOT_FOUND);
    assert_int_equal(store_job_renew(s, &leased, 20000, &err), STORE_OK);

    bool decided;
    complete_ok(s, &leased, &decided);
    assert_true(decided);
    assert_int_equal(leased.status, STORE_JOB_SUCCESS);
    assert_true(leased.finished_at >= leased.created_at);
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_SUCCESS);
    assert_string_equal(got.error_code, "");
    assert_true(got.finished_at > 0);

    struct seat_map m;
    load_map(s, ev, &m);
    assert_string_equal(holder_of(&m, "A1"), job.id);
    assert_string_equal(holder_of(&m, "A2"), job.id);
    assert_string_equal(holder_of(&m, "A3"), "");

    /* completing again: same decision, not decided here */
    complete_ok(s, &leased, &decided);
    assert_false(decided);
    assert_int_equal(leased.status, STORE_JOB_SUCCESS);
    assert_int_equal(store_job_lease(s, "w1", 10000, &got, &err), STORE_NOT_FOUND);
    assert_int_equal(store_job_renew(s, &leased, 1000, &err), STORE_CONFLICT);
    store_close(s);
}

/* Seats named in "seats already booked: A1, A2". */
static int taken_seats(const char *msg, char out[][STORE_SEAT_LEN], int max)
{
    const char *p = strstr(msg, ": ");
    if (!p) return 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", p + 2);
    int n = 0;
    for (char *t = strtok(buf, ", "); t && n < max; t = strtok(NULL, ", "))
        snprintf(out[n++], STORE_SEAT_LEN, "%s", t);
    return n;
}

static void test_overlap_all_or_nothing(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "overlap");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 8, ev);
    struct store_job j1, j2, j3, l;
    submit(s, "alice", ev, "A1,A2", NULL, &j1);
    submit(s, "bob", ev, "A3,A2,A4", NULL, &j2);
    submit(s, "carol", ev, "A5,A1,A2,A6", NULL, &j3);
    bool decided;
    /* oldest first */
    lease_ok(s, "w", 10000, &l);
    assert_string_equal(l.id, j1.id);
    complete_ok(s, &l, &decided);
    assert_int_equal(l.status, STORE_JOB_SUCCESS);
    lease_ok(s, "w", 10000, &l);
    assert_string_equal(l.id, j2.id);
    complete_ok(s, &l, &decided);
    assert_true(decided);
    assert_int_equal(l.status, STORE_JOB_FAILED);
    assert_string_equal(l.error_code, "SEATS_TAKEN");
    assert_string_equal(l.error_message, "seat already booked: A2");
    lease_ok(s, "w", 10000, &l);
    assert_string_equal(l.id, j3.id);
    complete_ok(s, &l, &decided);
    assert_int_equal(l.status, STORE_JOB_FAILED);
    assert_string_equal(l.error_message, "seats already booked: A1, A2");

    struct store_job got;
    struct store_err err = {0};
    assert_int_equal(store_job_get(s, j2.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_FAILED);
    assert_string_equal(got.error_code, "SEATS_TAKEN");
    assert_string_equal(got.error_message, "seat already booked: A2");
    assert_true(got.finished_at > 0);

    /* all or nothing: the failed jobs' free seats stay free */
    struct seat_map m;
    load_map(s, ev, &m);
    assert_string_equal(holder_of(&m, "A1"), j1.id);
    assert_string_equal(holder_of(&m, "A2"), j1.id);
    assert_string_equal(holder_of(&m, "A3"), "");
    assert_string_equal(holder_of(&m, "A4"), "");
    assert_string_equal(holder_of(&m, "A5"), "");
    assert_string_equal(holder_of(&m, "A6"), "");
    /* and can be booked afterwards */
    submit(s, "dave", ev, "A3,A4,A5,A6", NULL, &j1);
    lease_ok(s, "w", 10000, &l);
    complete_ok(s, &l, &decided);
    assert_int_equal(l.status, STORE_JOB_SUCCESS);
    store_close(s);
}

static void test_lease_expiry_retry(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "expiry");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 4, ev);
    struct store_job job, first, second, got;
    struct store_err err = {0};
    submit(s, "alice", ev, "A1,A2", NULL, &job);
    lease_ok(s, "dead-worker", 400, &first);
    assert_int_equal(store_job_lease(s, "w2", 10000, &second, &err), STORE_NOT_FOUND);
    sleep_ms(600);
    /* the first processor "died": after expiry the job is queued again */
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_QUEUED);
    lease_ok(s, "w2", 10000, &second);
    assert_string_equal(second.id, job.id);
    assert_int_equal(second.attempt, 2);
    assert_string_equal(second.lease_owner, "w2");
    /* the stale lease cannot be renewed */
    assert_int_equal(store_job_renew(s, &first, 10000, &err), STORE_CONFLICT);
    bool decided;
    complete_ok(s, &second, &decided);
    assert_true(decided);
    assert_int_equal(second.status, STORE_JOB_SUCCESS);
    /* the stale processor wakes up and completes too: same decision, no second booking */
    complete_ok(s, &first, &decided);
    assert_false(decided);
    assert_int_equal(first.status, STORE_JOB_SUCCESS);
    struct seat_map m;
    load_map(s, ev, &m);
    assert_string_equal(holder_of(&m, "A1"), job.id);
    assert_string_equal(holder_of(&m, "A2"), job.id);

    /* release (graceful shutdown) puts a job back at once */
    submit(s, "bob", ev, "A3", NULL, &job);
    lease_ok(s, "w3", 60000, &first);
    assert_int_equal(store_job_release(s, &first, &err), STORE_OK);
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_QUEUED);
    lease_ok(s, "w4", 60000, &second);
    assert_string_equal(second.id, job.id);
    assert_int_equal(second.attempt, 2);
    complete_ok(s, &second, &decided);
    assert_int_equal(second.status, STORE_JOB_SUCCESS);
    store_close(s);
}

static void test_attempts_exhausted(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "poison");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 2, ev);
    struct store_job job, l, got;
    struct store_err err = {0};
    submit(s, "alice", ev, "A1", NULL, &job);
    for (int i = 1; i <= STORE_JOB_MAX_ATTEMPTS; i++) {
        lease_ok(s, "crashy", 1, &l);
        assert_int_equal(l.attempt, i);
        sleep_ms(5);
    }
    assert_int_equal(store_job_lease(s, "w", 1000, &l, &err), STORE_NOT_FOUND);
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_FAILED);
    assert_string_equal(got.error_code, "ATTEMPTS_EXHAUSTED");
    struct seat_map m;
    load_map(s, ev, &m);
    assert_string_equal(holder_of(&m, "A1"), "");
    store_close(s);
}

/* kill -9 in the middle of booking (SQLite: inside the transaction, seats written, not
 * committed; MongoDB: every seat claimed, job not decided). */
static void test_kill9_mid_booking(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "kill9");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 6, ev);
    struct store_job job, rival, l, got;
    struct store_err err = {0};
    submit(s, "alice", ev, "A1,A2,A3", NULL, &job);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("SVCD_STORE_FAULT",
               mongo ? "mongo-complete-after-claims" : "sqlite-complete-before-commit", 1);
        struct store *cs = store_open(&cfg, 0, &err);
        struct store_job cj;
        bool d;
        if (!cs || store_job_lease(cs, "doomed", 700, &cj, &err)) _exit(3);
        store_job_complete(cs, &cj, &d, &err); /* SIGKILLed inside */
        _exit(4);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("the processor was not killed at the fault point (status 0x%x)", st);

    /* while the dead processor's lease runs, a rival asks for an overlapping seat */
    submit(s, "bob", ev, "A3,A4", NULL, &rival);
    assert_int_equal(store_job_get(s, job.id, &got, &err), STORE_OK);
    assert_int_equal(got.status, STORE_JOB_PROCESSING);
    sleep_ms(900);
    /* the lease expired: the same job comes back first (oldest), attempt 2 */
    lease_ok(s, "w2", 10000, &l);
    assert_string_equal(l.id, job.id);
    assert_int_equal(l.attempt, 2);
    bool decided;
    complete_ok(s, &l, &decided);
    assert_true(decided);
    assert_int_equal(l.status, STORE_JOB_SUCCESS);
    lease_ok(s, "w2", 10000, &l);
    assert_string_equal(l.id, rival.id);
    complete_ok(s, &l, &decided);
    assert_int_equal(l.status, STORE_JOB_FAILED);
    assert_string_equal(l.error_message, "seat already booked: A3");
    struct seat_map m;
    load_map(s, ev, &m);
    assert_string_equal(holder_of(&m, "A1"), job.id);
    assert_string_equal(holder_of(&m, "A3"), job.id);
    assert_string_equal(holder_of(&m, "A4"), "");
    store_close(s);
}

/* ---- many processors ------------------------------------------------------------------ */

/* SVCD_TEST_RACE_JOBS / SVCD_TEST_RACE_SEATS make it a longer stress run. */
#define RACE_MAX_JOBS  4000
#define RACE_MAX_SEATS 256

static int env_int(const char *name, int def, int max)
{
    const char *v = getenv(name);
    int n = v ? atoi(v) : 0;
    return n > 0 && n <= max ? n : def;
}

static void child_pump(const struct svcd_config *cfg, int threads, int stop_fd, uint64_t lease_ms)
{
    struct store_err err = {0};
    struct store *s = store_open(cfg, 0, &err);
    if (!s) _exit(10);
    char id[64];
    snprintf(id, sizeof id, "child-%d", (int)getpid());
    struct job_queue_config qc = {
        .store = s, .worker_id = id, .threads = threads, .lease_ms = lease_ms, .poll_ms = 20};
    struct job_queue *q = job_queue_start(&qc, &err);
    if (!q) _exit(11);
    char c;
    while (read(stop_fd, &c, 1) < 0 && errno == EINTR) {
    }
    job_queue_stop(q);
    store_close(s);
    _exit(0);
}

struct done_count {
    pthread_mutex_t mu;
    int n;
};

static void count_done(void *arg, const struct store_job *job)
{
    struct done_count *d = arg;
    pthread_mutex_lock(&d->mu);
    d->n++;
    pthread_mutex_unlock(&d->mu);
}

static void test_many_processors_no_double_booking(void **state)
{
    const int RACE_JOBS = env_int("SVCD_TEST_RACE_JOBS", 80, RACE_MAX_JOBS);
    const int RACE_SEATS = env_int("SVCD_TEST_RACE_SEATS", 30, RACE_MAX_SEATS);
    struct svcd_config cfg;
    make_cfg(&cfg, "race");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, RACE_SEATS, ev);

    /* processors first, so jobs race from the first submit on */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(pipefd[1]);
            child_pump(&cfg, 2, pipefd[0], k == 3 ? 300 : 5000);
        }
    }
    close(pipefd[0]);
    struct done_count dc = {PTHREAD_MUTEX_INITIALIZER, 0};
    struct store_err err = {0};
    struct job_queue_config qc = {.store = s,
                                  .worker_id = "parent",
                                  .threads = 4,
                                  .lease_ms = 5000,
                                  .poll_ms = 20,
                                  .on_done = count_done,
                                  .arg = &dc};
    struct job_queue *q = job_queue_start(&qc, &err);
    assert_non_null(q);

    static struct store_job jobs[RACE_MAX_JOBS];
    unsigned seed = 12345;
    for (int i = 0; i < RACE_JOBS; i++) {
        int n = 1 + (int)(rand_r(&seed) % 4);
        char csv[128] = "";
        size_t len = 0;
        int picked[4];
        for (int j = 0; j < n; j++) {
            int seat, dup;
            do {
                seat = 1 + (int)(rand_r(&seed) % RACE_SEATS);
                dup = 0;
                for (int k = 0; k < j; k++) dup |= picked[k] == seat;
            } while (dup);
            picked[j] = seat;
            len += (size_t)snprintf(csv + len, sizeof csv - len, "%sA%d", j ? "," : "", seat);
        }
        char user[32];
        snprintf(user, sizeof user, "user%d", i);
        submit(s, user, ev, csv, NULL, &jobs[i]);
        job_queue_notify(q);
        if (i == RACE_JOBS / 3) kill(kids[3], SIGKILL); /* a processor dies mid-run */
    }

    /* every accepted job ends success or failed */
    time_t deadline = time(NULL) + 120 + RACE_JOBS / 10;
    int pending;
    do {
        pending = 0;
        for (int i = 0; i < RACE_JOBS; i++) {
            if (jobs[i].status == STORE_JOB_SUCCESS || jobs[i].status == STORE_JOB_FAILED) continue;
            enum store_rc rc = store_job_get(s, jobs[i].id, &jobs[i], &err);
            if (rc) fail_msg("job_get: %s", err.msg);
            if (jobs[i].status != STORE_JOB_SUCCESS && jobs[i].status != STORE_JOB_FAILED)
                pending++;
        }
        if (pending) sleep_ms(100);
    } while (pending && time(NULL) < deadline);
    close(pipefd[1]);
    job_queue_stop(q);
    for (int k = 0; k < 4; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        if (k < 3 && (!WIFEXITED(st) || WEXITSTATUS(st)))
            fail_msg("processor process %d ended with status 0x%x", k, st);
    }
    assert_int_equal(pending, 0);

    /* the two views agree: seat map holder == the one successful job with that seat */
    struct seat_map m;
    load_map(s, ev, &m);
    int nsuccess = 0, booked_by_jobs = 0, booked_in_map = 0;
    for (int i = 0; i < RACE_JOBS; i++) {
        const struct store_job *j = &jobs[i];
        if (j->status == STORE_JOB_SUCCESS) {
            nsuccess++;
            for (int k = 0; k < j->nseats; k++) {
                booked_by_jobs++;
                if (strcmp(holder_of(&m, j->seats[k]), j->id))
                    fail_msg("job %s succeeded with %s but the seat map says holder '%s'", j->id,
                             j->seats[k], holder_of(&m, j->seats[k]));
            }
        } else {
            assert_string_equal(j->error_code, "SEATS_TAKEN");
            char taken[STORE_JOB_MAX_SEATS][STORE_SEAT_LEN];
            int nt = taken_seats(j->error_message, taken, STORE_JOB_MAX_SEATS);
            assert_true(nt >= 1);
            for (int k = 0; k < nt; k++) {
                const char *h = holder_of(&m, taken[k]);
                if (!h[0] || !strcmp(h, j->id))
                    fail_msg("job %s failed naming %s, which is not booked by another job", j->id,
                             taken[k]);
            }
            for (int k = 0; k < j->nseats; k++) /* nothing of a failed job stays booked */
                assert_string_not_equal(holder_of(&m, j->seats[k]), j->id);
        }
    }
    for (int i = 0; i < m.n; i++) booked_in_map += m.job[i][0] != '\0';
    /* each booked seat belongs to exactly one successful job: no seat twice */
    assert_int_equal(booked_in_map, booked_by_jobs);
    assert_true(nsuccess >= 1);
    print_message("      %d jobs: %d success, %d failed; %d/%d seats booked; parent pump "
                  "decided %d\n",
                  RACE_JOBS, nsuccess, RACE_JOBS - nsuccess, booked_in_map, RACE_SEATS, dc.n);
    store_close(s);
}

/* ---- database down ---------------------------------------------------------------------- */

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* nothing listens there now */
    return ntohs(a.sin_port);
}

static void test_database_unavailable(void **state)
{
    struct svcd_config cfg;
    config_defaults(&cfg);
    char expect[256];
    if (mongo) {
        int port = closed_port();
        cfg.storage.driver = STORE_MONGODB;
        snprintf(cfg.storage.uri, sizeof cfg.storage.uri,
                 "mongodb://svcd:s3cret-pw@127.0.0.1:%d/svcd", port);
        snprintf(expect, sizeof expect,
                 "cannot connect to MongoDB at 127.0.0.1:%d: connection "
                 "refused",
                 port);
    } else {
        cfg.storage.driver = STORE_SQLITE;
        /* a directory that cannot exist: its parent is a regular file */
        snprintf(cfg.storage.path, sizeof cfg.storage.path, "/dev/null/svcd/svcd.db");
        snprintf(expect, sizeof expect, "cannot open SQLite database at /dev/null/svcd/svcd.db");
    }
    struct store_err err = {0};
    time_t t0 = time(NULL);
    struct store *s = store_open(&cfg, 0, &err);
    assert_null(s);
    assert_int_equal(err.rc, STORE_UNAVAILABLE);
    if (!strstr(err.msg, expect)) fail_msg("message '%s' lacks '%s'", err.msg, expect);
    assert_null(strstr(err.msg, "s3cret"));
    assert_true(time(NULL) - t0 <= 5); /* fails fast */

    /* degraded handle: every call is DB_UNAVAILABLE, nothing crashes */
    s = store_open(&cfg, STORE_OPEN_LAZY, &err);
    assert_non_null(s);
    double ms = -1;
    assert_int_equal(store_ping(s, &ms, &err), STORE_UNAVAILABLE);
    assert_true(ms >= 0);
    assert_null(strstr(err.msg, "s3cret"));
    char id[STORE_ID_LEN];
    const char *seats[] = {"A1"};
    assert_int_equal(store_event_create(s, "x", seats, 1, id, &err), STORE_UNAVAILABLE);
    struct store_job job;
    bool created;
    assert_int_equal(
        store_job_submit(s, "u", "aaaaaaaaaaaaaaaaaaaaaaaa", seats, 1, "k", &job, &created, &err),
        STORE_UNAVAILABLE);
    assert_int_equal(store_job_lease(s, "w", 1000, &job, &err), STORE_UNAVAILABLE);
    assert_string_equal(store_rc_name(err.rc), "DB_UNAVAILABLE");
    struct store_info info;
    store_describe(s, &info);
    assert_string_equal(info.driver, mongo ? "mongodb" : "sqlite");
    assert_null(strstr(info.target, "s3cret"));
    if (mongo) assert_string_equal(info.database, "svcd");
    store_close(s);

    /* LAZY|DEFER (a worker's loop thread): no round trip at all in store_open, so it
     * returns at once even while server selection would wait; calls still fail
     * cleanly. SQLite opens its local file either way (and fails on this path). */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    s = store_open(&cfg, STORE_OPEN_LAZY | STORE_OPEN_DEFER, &err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(s);
    double open_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    if (mongo && open_ms > 500) fail_msg("deferred open took %.0f ms", open_ms);
    assert_int_equal(store_ping(s, &ms, &err), STORE_UNAVAILABLE);
    store_close(s);
}

/* A deferred handle is a full one once the database answers: its first call that
 * reaches the server (here the ping) creates the indexes, and the unique claim index
 * the double-booking guarantee rests on holds for the bookings after it. */
static void test_deferred_open_creates_indexes(void **state)
{
    (void)state;
    struct svcd_config cfg;
    make_cfg(&cfg, "defer");
    struct store_err err = {0};
    struct store *s = store_open(&cfg, STORE_OPEN_LAZY | STORE_OPEN_DEFER, &err);
    assert_non_null(s);
    double ms = 0;
    assert_int_equal(store_ping(s, &ms, &err), STORE_OK);
    char id[STORE_ID_LEN];
    const char *seats[] = {"A1", "A2"};
    assert_int_equal(store_event_create(s, "deferred", seats, 2, id, &err), STORE_OK);
    struct store_job j1, j2;
    bool created;
    assert_int_equal(store_job_submit(s, "u1", id, seats, 1, NULL, &j1, &created, &err), STORE_OK);
    assert_int_equal(store_job_submit(s, "u2", id, seats, 1, NULL, &j2, &created, &err), STORE_OK);
    bool here = false;
    assert_int_equal(store_job_complete(s, &j2, &here, &err), STORE_OK);
    assert_int_equal(store_job_complete(s, &j1, &here, &err), STORE_OK);
    assert_int_equal(j2.status, STORE_JOB_SUCCESS);
    assert_int_equal(j1.status, STORE_JOB_FAILED);
    assert_string_equal(j1.error_code, "SEATS_TAKEN");
    store_close(s);
}

static void test_ping_describe(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "ping");
    struct store *s = open_ok(&cfg);
    double ms = -1;
    struct store_err err = {0};
    assert_int_equal(store_ping(s, &ms, &err), STORE_OK);
    assert_true(ms >= 0 && ms < 5000);
    struct store_info info;
    store_describe(s, &info);
    assert_string_equal(info.driver, store_driver_name(s));
    assert_true(info.pool_max > 0);
    assert_true(info.host[0] != '\0');
    char t[32];
    store_format_time(1714564800123, t, sizeof t);
    assert_string_equal(t, "2024-05-01T12:00:00.123Z");
    store_close(s);
}

/* ---- job queue pump ----------------------------------------------------------------------- */

static void test_job_queue_pump(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "pump");
    struct store *s = open_ok(&cfg);
    char ev[STORE_ID_LEN];
    make_event(s, 20, ev);
    struct done_count dc = {PTHREAD_MUTEX_INITIALIZER, 0};
    struct store_err err = {0};
    struct job_queue_config qc = {.store = s,
                                  .worker_id = "pump",
                                  .threads = 3,
                                  .lease_ms = 300,
                                  .poll_ms = 1000,
                                  .on_done = count_done,
                                  .arg = &dc};
    struct job_queue *q = job_queue_start(&qc, &err);
    assert_non_null(q);
    struct store_job jobs[10];
    for (int i = 0; i < 10; i++) {
        char csv[32];
        snprintf(csv, sizeof csv, "A%d,A%d", i + 1, i + 2); /* overlapping pairs */
        submit(s, "alice", ev, csv, NULL, &jobs[i]);
        job_queue_notify(q); /* picked up well before poll_ms */
    }
    for (int t = 0; t < 300; t++) {
        pthread_mutex_lock(&dc.mu);
        int n = dc.n;
        pthread_mutex_unlock(&dc.mu);
        if (n == 10) break;
        sleep_ms(20);
    }
    struct job_queue_stats st;
    job_queue_get_stats(q, &st);
    job_queue_stop(q);
    assert_int_equal(dc.n, 10);
    assert_int_equal(st.succeeded + st.failed, 10);
    /* The successes form a maximal independent set of the path A1A2 - A2A3 - ... -
     * A10A11 (a job fails only because a neighbour won): at least ceil(10/3) = 4,
     * whatever order three processors take the jobs in (e.g. 2, 5, 8, 10). */
    assert_true(st.succeeded >= 4);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(store_job_get(s, jobs[i].id, &jobs[i], &err), STORE_OK);
        assert_true(jobs[i].status == STORE_JOB_SUCCESS || jobs[i].status == STORE_JOB_FAILED);
    }
    store_close(s);
}

/* ---- chat history ------------------------------------------------------------------------ */

struct page {
    int n;
    char id[STORE_MESSAGES_MAX_PAGE][STORE_ID_LEN];
    char text[STORE_MESSAGES_MAX_PAGE][64];
    int64_t ts[STORE_MESSAGES_MAX_PAGE];
};

static int page_cb(void *arg, const struct store_message *m)
{
    struct page *p = arg;
    snprintf(p->id[p->n], STORE_ID_LEN, "%s", m->id);
    snprintf(p->text[p->n], 64, "%.*s", (int)m->text_len, m->text);
    p->ts[p->n] = m->ts;
    p->n++;
    return 0;
}

static void get_page(struct store *s, const char *room, const char *before, int limit,
                     struct page *p)
{
    memset(p, 0, sizeof *p);
    struct store_err err = {0};
    enum store_rc rc = store_messages(s, room, before, limit, page_cb, p, &err);
    if (rc) fail_msg("messages: %s", err.msg);
}

static void test_messages_paging(void **state)
{
    struct svcd_config cfg;
    make_cfg(&cfg, "chat");
    struct store *s = open_ok(&cfg);
    struct store_err err = {0};
    char id[STORE_ID_LEN];
    int64_t ts;
    for (int i = 1; i <= 25; i++) {
        char text[32];
        snprintf(text, sizeof text, "hello %d", i);
        assert_int_equal(store_message_add(s, "lobby", "alice", text, strlen(text), id, &ts, &err),
                         STORE_OK);
        assert_true(ts > 0);
        assert_true(id[0] != '\0');
        if (i <= 3) {
            snprintf(text, sizeof text, "other %d", i);
            assert_int_equal(
                store_message_add(s, "room-2", "bob", text, strlen(text), id, &ts, &err), STORE_OK);
        }
    }
    const char *utf8 = "h\xc3\xa9llo \xe2\x9c\x93";
    assert_int_equal(store_message_add(s, "utf", "bob", utf8, strlen(utf8), id, &ts, &err),
                     STORE_OK);

    struct page p;
    get_page(s, "lobby", NULL, 10, &p);
    assert_int_equal(p.n, 10);
    assert_string_equal(p.text[0], "hello 16"); /* newest 10, oldest first */
    assert_string_equal(p.text[9], "hello 25");
    char before[STORE_ID_LEN];
    snprintf(before, sizeof before, "%s", p.id[0]);
    get_page(s, "lobby", before, 10, &p);
    assert_int_equal(p.n, 10);
    assert_string_equal(p.text[0], "hello 6");
    assert_string_equal(p.text[9], "hello 15");
    for (int i = 1; i < p.n; i++) assert_true(p.ts[i] >= p.ts[i - 1]);
    snprintf(before, sizeof before, "%s", p.id[0]);
    get_page(s, "lobby", before, 10, &p);
    assert_int_equal(p.n, 5);
    assert_string_equal(p.text[0], "hello 1");
    assert_string_equal(p.text[4], "hello 5");
    snprintf(before, sizeof before, "%s", p.id[0]);
    get_page(s, "lobby", before, 10, &p);
    assert_int_equal(p.n, 0);

    get_page(s, "room-2", NULL, 50, &p);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.text[0], "other 1");
    get_page(s, "utf", NULL, 1, &p);
    assert_string_equal(p.text[0], utf8);
    get_page(s, "empty-room", NULL, 5, &p);
    assert_int_equal(p.n, 0);

    struct page q;
    assert_int_equal(store_messages(s, "lobby", "999999", 5, page_cb, &q, &err), STORE_BAD_INPUT);
    assert_int_equal(store_messages(s, "lobby", NULL, 0, page_cb, &q, &err), STORE_BAD_INPUT);
    assert_int_equal(
        store_messages(s, "lobby", NULL, STORE_MESSAGES_MAX_PAGE + 1, page_cb, &q, &err),
        STORE_BAD_INPUT);
    assert_int_equal(store_message_add(s, "", "a", "x", 1, id, &ts, &err), STORE_BAD_INPUT);
    store_close(s);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(void)
{
    const char *kind = getenv("SVCD_TEST_STORE");
    mongo = kind && !strcmp(kind, "mongodb");
    if (mongo) {
        const char *u = getenv("SVCD_TEST_MONGODB_URI");
        if (!u || !*u) {
            fprintf(stderr, "contract: SVCD_TEST_STORE=mongodb needs SVCD_TEST_MONGODB_URI="
                            "mongodb://127.0.0.1:PORT (test/store/run.sh starts FerretDB)\n");
            return 2;
        }
        snprintf(base_uri, sizeof base_uri, "%s", u);
        size_t n = strlen(base_uri);
        if (n && base_uri[n - 1] == '/') base_uri[n - 1] = '\0';
    } else {
        const char *d = getenv("SVCD_TEST_DIR");
        if (d && *d) {
            snprintf(tmpdir, sizeof tmpdir, "%s", d);
        } else {
            snprintf(tmpdir, sizeof tmpdir, "/tmp/svcd-store-XXXXXX");
            if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 2;
        }
    }
    fprintf(stderr, "contract: backend %s\n", mongo ? base_uri : tmpdir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_seat_map),
        cmocka_unit_test(test_job_submit_get),
        cmocka_unit_test(test_idempotency_key),
        cmocka_unit_test(test_lease_complete_success),
        cmocka_unit_test(test_overlap_all_or_nothing),
        cmocka_unit_test(test_lease_expiry_retry),
        cmocka_unit_test(test_attempts_exhausted),
        cmocka_unit_test(test_kill9_mid_booking),
        cmocka_unit_test(test_many_processors_no_double_booking),
        cmocka_unit_test(test_job_queue_pump),
        cmocka_unit_test(test_database_unavailable),
        cmocka_unit_test(test_deferred_open_creates_indexes),
        cmocka_unit_test(test_ping_describe),
        cmocka_unit_test(test_messages_paging),
    };
    return cmocka_run_group_tests_name(
        mongo ? "store contract (mongodb)" : "store contract (sqlite)", tests, NULL, NULL);
}
