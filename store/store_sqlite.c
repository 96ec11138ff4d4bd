/*
 * store_sqlite.c — the embedded default backend: one SQLite file in WAL mode.
 *
 * Concurrency model. Any number of threads and processes (workers, a restarted
 * svcd, the tests' forked processors) open the same file. Each concurrent call
 * borrows its own sqlite3 connection from a small per-handle pool, so a connection
 * is only ever used by one thread at a time (SQLITE_OPEN_NOMUTEX). Every write
 * that must be atomic runs inside BEGIN IMMEDIATE: it takes the database's single
 * write lock up front, so two writers never interleave and never need to upgrade a
 * read lock (no SQLITE_BUSY_SNAPSHOT). Reads never take it (WAL readers do not
 * block writers nor wait for them).
 *
 * Waiting for the write lock, fairly. SQLite's own busy timeout retries with sleeps
 * growing to 100 ms: under write load a writer that has waited long sleeps longest
 * and keeps losing the lock to newcomers (a convoy), so one unlucky request could
 * wait the whole timeout and fail although the lock was free most of the time.
 * Instead (a) the writers of one handle queue in FIFO order on an in-process lock
 * (handed over directly, no polling), so per process only one thread at a time asks
 * SQLite for the file lock, and (b) that thread's busy handler retries every
 * 100-400 us (never growing) until the call's deadline. Every call has one deadline,
 * BUSY_TIMEOUT_MS from its start, covering both waits; a lock still held after it
 * (another process holding a write transaction open) is STORE_UNAVAILABLE.
 * Transactions are short: each holds the lock for a few index lookups and row
 * writes, never for work outside the database, and never for a checkpoint (the WAL
 * is checkpointed by a thread of its own, see checkpoint_thread).
 *
 * Double booking. A seat is one row of `seats` (primary key event_id+seat) with one
 * `job_id` column: a seat cannot hold two bookings by construction. A job books its
 * seats in one transaction — read the job (already decided? return that), read every
 * seat, then either set all of them (`UPDATE ... WHERE job_id IS NULL`, each must
 * change exactly one row) and mark the job success, or mark it failed naming the
 * taken seats — and commits once. A process killed mid-way (kill -9) leaves nothing
 * behind: SQLite rolls the open transaction back, the lease expires, and another
 * processor runs the job again from scratch.
 *
 * Durability: WAL with synchronous=NORMAL. A COMMIT appends to the WAL through the
 * OS page cache and returns without fsync; the WAL is fsynced at each checkpoint.
 * A committed transaction (so every job a 202 announced) survives the crash or
 * kill -9 of any svcd process and a restart — SPEC §5's guarantee, which the tests
 * check — because the kernel holds the data; it cannot be torn or half-applied
 * (WAL frames are checksummed). Only a power loss or kernel crash may roll back the
 * last transactions committed since the last checkpoint; the database stays
 * consistent (never a seat held twice, never a half-booked job). synchronous=FULL
 * would also cover power loss but puts an fsync (1-30 ms on this class of disk)
 * inside every write transaction, that is inside the write lock every booking and
 * every job completion serialise on.
 */
#include "store_backend.h"
#include "../common/config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX_IDLE   16
#define BUSY_TIMEOUT_MS 5000
/* Checkpoints: see checkpoint_thread. */
#define CHECKPOINT_PAGES         1000 /* wake the thread at this WAL size (SQLite's default) */
#define CHECKPOINT_RESTART_PAGES 4000 /* WAL size that makes it start the WAL over */
#define CHECKPOINT_RESTART_MS    50   /* how long it waits for the lock to do that */
#define CHECKPOINT_PAUSE_MS      20   /* at least this long between two of its rounds */

/* One writer waiting for the handle's write lock (lives on its stack). */
struct wwait {
    struct wwait *next;
    pthread_cond_t cv;
    bool granted;
};

struct sqlite_store {
    struct store base;
    char path[CONFIG_PATH_MAX];
    pthread_mutex_t mu;
    sqlite3 *idle[POOL_MAX_IDLE];
    int nidle, nopen;
    bool schema_ok;
    /* The in-process write lock: FIFO, handed over to the next waiter. */
    pthread_mutex_t wmu;
    pthread_condattr_t wattr;
    bool wheld;
    struct wwait *whead, *wtail;
    /* the checkpoint thread, guarded by mu */
    pthread_t ck_thread;
    pthread_cond_t ck_cv;
    bool ck_started, ck_want, ck_stop;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS events("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  nseats INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    /* one row per seat: the row is the seat, job_id the one booking it can hold */
    "CREATE TABLE IF NOT EXISTS seats("
    "  event_id TEXT NOT NULL REFERENCES events(id),"
    "  seat TEXT NOT NULL,"
    "  pos INTEGER NOT NULL,"
    "  job_id TEXT,"
    "  booked_at INTEGER,"
    "  PRIMARY KEY(event_id, seat)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS jobs("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  user TEXT NOT NULL,"
    "  event_id TEXT NOT NULL REFERENCES events(id),"
    "  seats TEXT NOT NULL," /* labels joined with ',' (labels never hold one) */
    "  idem TEXT UNIQUE,"    /* user '\n' key, NULL without a key */
    "  status TEXT NOT NULL CHECK(status IN ('queued','processing','success','failed')),"
    "  error_code TEXT,"
    "  error_message TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  lease_owner TEXT,"
    "  lease_until INTEGER);"
    "CREATE INDEX IF NOT EXISTS jobs_open ON jobs(seq) WHERE status IN ('queued','processing');"
    "CREATE TABLE IF NOT EXISTS messages("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  room TEXT NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  ts INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS messages_room ON messages(room, id);";

#define JOB_COLS                                                                                   \
    "id, user, event_id, seats, status, error_code, error_message, created_at, finished_at, "      \
    "attempt, lease_until, lease_owner"

/* ---- errors ------------------------------------------------------------------------ */

static bool code_unavailable(int code)
{
    switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return true;
    }
    return false;
}

static enum store_rc db_fail(struct sqlite_store *ss, sqlite3 *db, int code, const char *what,
                             struct store_err *err)
{
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(code);
    if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
        return store_fail(err, STORE_UNAVAILABLE,
                          "SQLite database %s is locked by another process for more than %d ms "
                          "(%s); retry later",
                          ss->path, BUSY_TIMEOUT_MS, what);
    if (code_unavailable(code))
        return store_fail(err, STORE_UNAVAILABLE, "SQLite database %s is unusable (%s: %s)",
                          ss->path, what, msg);
    return store_fail(err, STORE_INTERNAL, "SQLite error on %s (%s: %s)", ss->path, what, msg);
}

/* ---- waiting for the write lock ------------------------------------------------------ */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The running call's deadline (CLOCK_MONOTONIC us). A connection is used by one
 * thread at a time and the busy handler runs on that thread, so thread-local. */
static _Thread_local int64_t tl_deadline_us;
static _Thread_local unsigned tl_rand;

/* Retry every 100-400 us until the deadline: a constant short period (with jitter so
 * two processes do not poll in step) keeps a long waiter as likely to get the lock as
 * a newcomer, unlike SQLite's growing sleeps. */
static int busy_handler(void *arg, int n)
{
    (void)arg, (void)n;
    int64_t left = tl_deadline_us - mono_us();
    if (left <= 0) return 0;
    tl_rand = tl_rand * 1103515245u + 12345u;
    int64_t us = 100 + (int64_t)((tl_rand >> 16) % 300);
    if (us > left) us = left;
    struct timespec ts = {0, (long)us * 1000L};
    nanosleep(&ts, NULL);
    return 1;
}

/* Take the handle's write lock, waiting in FIFO order until the call's deadline. */
static bool writer_lock(struct sqlite_store *ss)
{
    pthread_mutex_lock(&ss->wmu);
    if (!ss->wheld && !ss->whead) {
        ss->wheld = true;
        pthread_mutex_unlock(&ss->wmu);
        return true;
    }
    struct wwait me = {.next = NULL, .granted = false};
    pthread_cond_init(&me.cv, &ss->wattr);
    if (ss->wtail)
        ss->wtail->next = &me;
    else
        ss->whead = &me;
    ss->wtail = &me;
    struct timespec until = {(time_t)(tl_deadline_us / 1000000),
                             (long)(tl_deadline_us % 1000000) * 1000L};
    while (!me.granted) {
        if (pthread_cond_timedwait(&me.cv, &ss->wmu, &until) == ETIMEDOUT && !me.granted) {
            /* give up our place in the queue */
            struct wwait **pp = &ss->whead, *prev = NULL;
            while (*pp != &me) prev = *pp, pp = &(*pp)->next;
            *pp = me.next;
            if (ss->wtail == &me) ss->wtail = prev;
            break;
        }
    }
    bool ok = me.granted;
    pthread_mutex_unlock(&ss->wmu);
    pthread_cond_destroy(&me.cv);
    return ok;
}

static void writer_unlock(struct sqlite_store *ss)
{
    pthread_mutex_lock(&ss->wmu);
    struct wwait *w = ss->whead;
    if (w) { /* hand it over: wheld stays true */
        ss->whead = w->next;
        if (!ss->whead) ss->wtail = NULL;
        w->granted = true;
        pthread_cond_signal(&w->cv);
    } else {
        ss->wheld = false;
    }
    pthread_mutex_unlock(&ss->wmu);
}

/* Commits only note the WAL's size (the hook replaces SQLite's auto-checkpoint,
 * which would run inside COMMIT while we hold the write lock); call_end checkpoints
 * after letting the lock go. */
static _Thread_local int tl_wal_pages;

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)arg, (void)db, (void)name;
    tl_wal_pages = pages;
    return SQLITE_OK;
}

/* ---- connections ------------------------------------------------------------------ */

static int mkdir_parents(const char *path)
{
    char dir[CONFIG_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0750) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(dir, 0750) && errno != EEXIST) return -1;
    return 0;
}

static enum store_rc open_conn(struct sqlite_store *ss, sqlite3 **out, struct store_err *err)
{
    sqlite3 *db = NULL;
    if (mkdir_parents(ss->path))
        return store_fail(err, STORE_UNAVAILABLE,
                          "cannot open SQLite database at %s: cannot create its directory: %s",
                          ss->path, strerror(errno));
    int rc = sqlite3_open_v2(
        ss->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        store_fail(err, STORE_UNAVAILABLE, "cannot open SQLite database at %s: %s", ss->path,
                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return STORE_UNAVAILABLE;
    }
    sqlite3_busy_handler(db, busy_handler, NULL);
    sqlite3_extended_result_codes(db, 1);
    char *emsg = NULL;
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                      NULL, NULL, &emsg);
    if (rc == SQLITE_OK) sqlite3_wal_hook(db, wal_hook, NULL);
    if (rc != SQLITE_OK) {
        store_fail(err, STORE_UNAVAILABLE, "cannot open SQLite database at %s: %s", ss->path,
                   emsg ? emsg : sqlite3_errstr(rc));
        sqlite3_free(emsg);
        sqlite3_close(db);
        return STORE_UNAVAILABLE;
    }
    pthread_mutex_lock(&ss->mu);
    bool need_schema = !ss->schema_ok;
    pthread_mutex_unlock(&ss->mu);
    if (need_schema) {
        /* IF NOT EXISTS makes this safe to race between processes; IMMEDIATE makes
         * the racers queue on the write lock instead of failing. */
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &emsg);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, SCHEMA, NULL, NULL, &emsg);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &emsg);
        if (rc != SQLITE_OK) {
            enum store_rc r = code_unavailable(rc) ? STORE_UNAVAILABLE : STORE_INTERNAL;
            store_fail(err, r, "cannot create the schema in SQLite database %s: %s", ss->path,
                       emsg ? emsg : sqlite3_errstr(rc));
            sqlite3_free(emsg);
            sqlite3_close(db);
            return r;
        }
        pthread_mutex_lock(&ss->mu);
        ss->schema_ok = true;
        pthread_mutex_unlock(&ss->mu);
    }
    pthread_mutex_lock(&ss->mu);
    ss->nopen++;
    pthread_mutex_unlock(&ss->mu);
    *out = db;
    return STORE_OK;
}

static enum store_rc acquire(struct sqlite_store *ss, sqlite3 **out, struct store_err *err)
{
    pthread_mutex_lock(&ss->mu);
    if (ss->nidle > 0) {
        *out = ss->idle[--ss->nidle];
        pthread_mutex_unlock(&ss->mu);
        return STORE_OK;
    }
    pthread_mutex_unlock(&ss->mu);
    return open_conn(ss, out, err);
}

/* `broken`: the connection saw an I/O-class error; drop it, the next call reopens. */
static void release(struct sqlite_store *ss, sqlite3 *db, bool broken)
{
    if (!db) return;
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&ss->mu);
    if (!broken && ss->nidle < POOL_MAX_IDLE) {
        ss->idle[ss->nidle++] = db;
        db = NULL;
    } else {
        ss->nopen--;
    }
    pthread_mutex_unlock(&ss->mu);
    if (db) sqlite3_close(db);
}

/* One call's connection and its outcome. */
struct call {
    struct sqlite_store *ss;
    sqlite3 *db;
    struct store_err *err;
    enum store_rc rc;
    bool wlocked; /* holds the handle's write lock */
};

static bool call_begin(struct call *c, struct sqlite_store *ss, struct store_err *err)
{
    c->ss = ss;
    c->db = NULL;
    c->err = err;
    c->wlocked = false;
    tl_deadline_us = mono_us() + (int64_t)BUSY_TIMEOUT_MS * 1000;
    if (!tl_rand) tl_rand = (unsigned)getpid() ^ (unsigned)(uintptr_t)&tl_rand;
    tl_wal_pages = 0;
    c->rc = acquire(ss, &c->db, err);
    return c->rc == STORE_OK;
}

/*
 * The checkpoint thread (one per handle, started when the WAL first needs one)
 * copies the WAL back into the database so that no request pays for it; SQLite's
 * own auto-checkpoint would run inside the COMMIT of whichever call crossed the
 * threshold, adding 10-300 ms of copying and fsync to that request (the wal_hook
 * replaces it). A PASSIVE checkpoint neither waits for nor blocks anyone, but under
 * steady writes it never catches up with the end of the WAL, so the WAL is never
 * started over and grows without bound (~100 MB/s at full booking load). So when it
 * still holds CHECKPOINT_RESTART_PAGES after a passive round, the thread takes the
 * write lock (the handle's, then SQLite's, for at most CHECKPOINT_RESTART_MS) and
 * runs a RESTART checkpoint: it copies only the few frames written since the passive
 * round, and the next writer starts the WAL from its beginning. Writers wait for it
 * a few ms, every few hundred ms at most.
 */
static void *checkpoint_thread(void *arg)
{
    struct sqlite_store *ss = arg;
    pthread_mutex_lock(&ss->mu);
    for (;;) {
        while (!ss->ck_want && !ss->ck_stop) pthread_cond_wait(&ss->ck_cv, &ss->mu);
        if (ss->ck_stop) break;
        ss->ck_want = false;
        pthread_mutex_unlock(&ss->mu);
        tl_deadline_us = mono_us() + (int64_t)BUSY_TIMEOUT_MS * 1000;
        sqlite3 *db = NULL;
        struct store_err err;
        if (acquire(ss, &db, &err) == STORE_OK) {
            int log = 0;
            int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, NULL);
            if (rc == SQLITE_OK && log >= CHECKPOINT_RESTART_PAGES) {
                tl_deadline_us = mono_us() + (int64_t)CHECKPOINT_RESTART_MS * 1000;
                if (writer_lock(ss)) {
                    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
                    writer_unlock(ss);
                }
            }
            release(ss, db, false);
        }
        struct timespec pause = {0, CHECKPOINT_PAUSE_MS * 1000000L};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&ss->mu);
    }
    pthread_mutex_unlock(&ss->mu);
    return NULL;
}

/* Our commit left the WAL at CHECKPOINT_PAGES or more: wake the checkpoint thread
 * (started on first need; if it cannot start, checkpoint here as SQLite would). */
static void want_checkpoint(struct sqlite_store *ss, sqlite3 *db)
{
    pthread_mutex_lock(&ss->mu);
    if (!ss->ck_started && !ss->ck_stop)
        ss->ck_started = pthread_create(&ss->ck_thread, NULL, checkpoint_thread, ss) == 0;
    bool threaded = ss->ck_started;
    if (threaded) {
        ss->ck_want = true;
        pthread_cond_signal(&ss->ck_cv);
    }
    pthread_mutex_unlock(&ss->mu);
    if (!threaded) sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

static enum store_rc call_end(struct call *c)
{
    if (c->db && !sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    if (c->wlocked) writer_unlock(c->ss);
    c->wlocked = false;
    if (c->db && tl_wal_pages >= CHECKPOINT_PAGES && c->rc != STORE_UNAVAILABLE)
        want_checkpoint(c->ss, c->db);
    tl_wal_pages = 0;
    release(c->ss, c->db, c->rc == STORE_UNAVAILABLE);
    return c->rc;
}

/* Take the handle's write lock for a write outside a transaction (one statement). */
static bool write_lock(struct call *c)
{
    if (c->rc != STORE_OK) return false;
    if (!writer_lock(c->ss)) {
        c->rc = store_fail(c->err, STORE_UNAVAILABLE,
                           "SQLite database %s is locked by another process for more than %d ms "
                           "(waiting to write); retry later",
                           c->ss->path, BUSY_TIMEOUT_MS);
        return false;
    }
    c->wlocked = true;
    return true;
}

/* Record a SQLite failure on the call (first failure wins). */
static bool call_sqlerr(struct call *c, int code, const char *what)
{
    if (c->rc == STORE_OK) c->rc = db_fail(c->ss, c->db, code, what, c->err);
    return false;
}

static sqlite3_stmt *prep(struct call *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (c->rc != STORE_OK) return NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        call_sqlerr(c, rc, "prepare");
        return NULL;
    }
    return st;
}

static bool exec_sql(struct call *c, const char *sql)
{
    if (c->rc != STORE_OK) return false;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) return call_sqlerr(c, rc, sql);
    return true;
}

/* Start a write transaction: the handle's write lock, then SQLite's. */
static bool write_begin(struct call *c)
{
    return write_lock(c) && exec_sql(c, "BEGIN IMMEDIATE");
}

/* Step a statement that returns no row (or whose rows we ignore). */
static bool step_done(struct call *c, sqlite3_stmt *st, const char *what)
{
    if (!st) return false;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return call_sqlerr(c, rc, what);
    return true;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (st) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

/* ---- jobs -------------------------------------------------------------------------- */

static void seats_join(const struct store_job *job, char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < job->nseats && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? "," : "", job->seats[i]);
}

static void seats_split(const char *s, struct store_job *job)
{
    job->nseats = 0;
    while (*s && job->nseats < STORE_JOB_MAX_SEATS) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= STORE_SEAT_LEN) n = STORE_SEAT_LEN - 1;
        memcpy(job->seats[job->nseats], s, n);
        job->seats[job->nseats][n] = '\0';
        job->nseats++;
        if (!e) break;
        s = e + 1;
    }
}

static enum store_job_status status_parse(const char *s)
{
    if (!strcmp(s, "processing")) return STORE_JOB_PROCESSING;
    if (!strcmp(s, "success")) return STORE_JOB_SUCCESS;
    if (!strcmp(s, "failed")) return STORE_JOB_FAILED;
    return STORE_JOB_QUEUED;
}

/* Row (JOB_COLS) to struct. A processing job whose lease has expired is shown as
 * queued: it waits for the next processor, exactly like a new one. */
static void job_from_row(sqlite3_stmt *st, struct store_job *job, int64_t now)
{
    memset(job, 0, sizeof *job);
    snprintf(job->id, sizeof job->id, "%s", col_text(st, 0));
    snprintf(job->user, sizeof job->user, "%s", col_text(st, 1));
    snprintf(job->event_id, sizeof job->event_id, "%s", col_text(st, 2));
    seats_split(col_text(st, 3), job);
    job->status = status_parse(col_text(st, 4));
    snprintf(job->error_code, sizeof job->error_code, "%s", col_text(st, 5));
    snprintf(job->error_message, sizeof job->error_message, "%s", col_text(st, 6));
    job->created_at = sqlite3_column_int64(st, 7);
    job->finished_at = sqlite3_column_int64(st, 8);
    job->attempt = sqlite3_column_int(st, 9);
    job->lease_until = sqlite3_column_int64(st, 10);
    snprintf(job->lease_owner, sizeof job->lease_owner, "%s", col_text(st, 11));
    if (job->status == STORE_JOB_PROCESSING && job->lease_until <= now)
        job->status = STORE_JOB_QUEUED;
}

/* Load job `id` into `job`; false + NOT_FOUND when absent. */
static bool load_job(struct call *c, const char *id, struct store_job *job)
{
    sqlite3_stmt *st = prep(c, "SELECT " JOB_COLS " FROM jobs WHERE id = ?");
    if (!st) return false;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    bool ok = false;
    if (rc == SQLITE_ROW) {
        job_from_row(st, job, store_now_ms());
        ok = true;
    } else if (rc == SQLITE_DONE) {
        c->rc = store_fail(c->err, STORE_NOT_FOUND, "job '%s' not found", id);
    } else {
        call_sqlerr(c, rc, "read job");
    }
    sqlite3_finalize(st);
    return ok;
}

/* ---- operations -------------------------------------------------------------------- */

static void sq_close(struct store *s)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    pthread_mutex_lock(&ss->mu);
    ss->ck_stop = true;
    bool join = ss->ck_started;
    pthread_cond_signal(&ss->ck_cv);
    pthread_mutex_unlock(&ss->mu);
    if (join) pthread_join(ss->ck_thread, NULL);
    pthread_cond_destroy(&ss->ck_cv);
    for (int i = 0; i < ss->nidle; i++) sqlite3_close(ss->idle[i]);
    pthread_mutex_destroy(&ss->mu);
    pthread_mutex_destroy(&ss->wmu);
    pthread_condattr_destroy(&ss->wattr);
    free(ss);
}

static enum store_rc sq_ping(struct store *s, struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    sqlite3_stmt *st = prep(&c, "SELECT count(*) FROM sqlite_master");
    step_done(&c, st, "ping");
    sqlite3_finalize(st);
    return call_end(&c);
}

static void sq_describe(struct store *s, struct store_info *out)
{
    struct sqlite_store *ss = (struct sqlite_store *)s;
    snprintf(out->driver, sizeof out->driver, "sqlite");
    snprintf(out->target, sizeof out->target, "%s", ss->path);
    snprintf(out->host, sizeof out->host, "local file");
    pthread_mutex_lock(&ss->mu);
    out->pool_open = ss->nopen;
    pthread_mutex_unlock(&ss->mu);
    out->pool_max = POOL_MAX_IDLE;
}

static enum store_rc sq_event_create(struct store *s, const char *id, const char *name,
                                     const char *const *seats, int nseats, int64_t now,
                                     struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (write_begin(&c)) {
        sqlite3_stmt *st =
            prep(&c, "INSERT INTO events(id, name, nseats, created_at) VALUES(?,?,?,?)");
        bind_text(st, 1, id);
        bind_text(st, 2, name);
        if (st) sqlite3_bind_int(st, 3, nseats), sqlite3_bind_int64(st, 4, now);
        step_done(&c, st, "insert event");
        sqlite3_finalize(st);
        st = prep(&c, "INSERT INTO seats(event_id, seat, pos) VALUES(?,?,?)");
        for (int i = 0; st && i < nseats && c.rc == STORE_OK; i++) {
            sqlite3_reset(st);
            bind_text(st, 1, id);
            bind_text(st, 2, seats[i]);
            sqlite3_bind_int(st, 3, i);
            step_done(&c, st, "insert seat");
        }
        sqlite3_finalize(st);
        if (c.rc == STORE_OK) exec_sql(&c, "COMMIT");
    }
    return call_end(&c);
}

static enum store_rc sq_event_get(struct store *s, const char *event_id, struct store_event *out,
                                  struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    sqlite3_stmt *st = prep(&c, "SELECT id, name, nseats, created_at FROM events WHERE id = ?");
    if (st) {
        bind_text(st, 1, event_id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            snprintf(out->id, sizeof out->id, "%s", col_text(st, 0));
            snprintf(out->name, sizeof out->name, "%s", col_text(st, 1));
            out->nseats = sqlite3_column_int(st, 2);
            out->created_at = sqlite3_column_int64(st, 3);
        } else if (rc == SQLITE_DONE) {
            c.rc = store_fail(err, STORE_NOT_FOUND, "event '%s' not found", event_id);
        } else {
            call_sqlerr(&c, rc, "read event");
        }
    }
    sqlite3_finalize(st);
    return call_end(&c);
}

static enum store_rc sq_event_seats(struct store *s, const char *event_id, store_seat_cb cb,
                                    void *arg, struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    /* One read transaction: a consistent snapshot of the whole map. */
    if (exec_sql(&c, "BEGIN")) {
        sqlite3_stmt *st = prep(&c, "SELECT 1 FROM events WHERE id = ?");
        bind_text(st, 1, event_id);
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        if (st && rc == SQLITE_DONE)
            c.rc = store_fail(err, STORE_NOT_FOUND, "event '%s' not found", event_id);
        else if (st && rc != SQLITE_ROW)
            call_sqlerr(&c, rc, "read event");
        sqlite3_finalize(st);
        st = prep(&c, "SELECT seat, job_id FROM seats WHERE event_id = ? ORDER BY pos");
        if (st) {
            bind_text(st, 1, event_id);
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *job = (const char *)sqlite3_column_text(st, 1);
                if (cb(arg, col_text(st, 0), job != NULL, job)) {
                    rc = SQLITE_DONE;
                    break;
                }
            }
            if (rc != SQLITE_DONE) call_sqlerr(&c, rc, "read seats");
        }
        sqlite3_finalize(st);
        exec_sql(&c, "COMMIT");
    }
    return call_end(&c);
}

/* Which of the job's seats are missing from its event; fills a BAD_INPUT message. */
static bool check_seats_exist(struct call *c, const struct store_job *job)
{
    sqlite3_stmt *st = prep(c, "SELECT 1 FROM seats WHERE event_id = ? AND seat = ?");
    char missing[400] = "";
    size_t len = 0;
    int nmissing = 0;
    for (int i = 0; st && i < job->nseats && c->rc == STORE_OK; i++) {
        sqlite3_reset(st);
        bind_text(st, 1, job->event_id);
        bind_text(st, 2, job->seats[i]);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            if (len < sizeof missing)
                len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%s",
                                        nmissing ? ", " : "", job->seats[i]);
            nmissing++;
        } else if (rc != SQLITE_ROW) {
            call_sqlerr(c, rc, "read seat");
        }
    }
    sqlite3_finalize(st);
    if (c->rc == STORE_OK && nmissing)
        c->rc = store_fail(c->err, STORE_BAD_INPUT, "event '%s' has no seat%s %s", job->event_id,
                           nmissing > 1 ? "s" : "", missing);
    return c->rc == STORE_OK;
}

static bool same_request(const struct store_job *a, const struct store_job *b)
{
    if (strcmp(a->event_id, b->event_id) || a->nseats != b->nseats) return false;
    for (int i = 0; i < a->nseats; i++)
        if (strcmp(a->seats[i], b->seats[i])) return false;
    return true;
}

static enum store_rc sq_job_submit(struct store *s, struct store_job *job, const char *idem_key,
                                   bool *created_new, struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    char idem[STORE_USER_LEN + STORE_KEY_LEN + 2];
    if (idem_key) snprintf(idem, sizeof idem, "%s\n%s", job->user, idem_key);
    if (!write_begin(&c)) return call_end(&c);

    if (idem_key) {
        sqlite3_stmt *st = prep(&c, "SELECT id FROM jobs WHERE idem = ?");
        bind_text(st, 1, idem);
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        char existing[STORE_ID_LEN] = "";
        if (rc == SQLITE_ROW)
            snprintf(existing, sizeof existing, "%s", col_text(st, 0));
        else if (st && rc != SQLITE_DONE)
            call_sqlerr(&c, rc, "read idempotency key");
        sqlite3_finalize(st);
        if (existing[0] && c.rc == STORE_OK) {
            struct store_job old;
            if (load_job(&c, existing, &old)) {
                if (!same_request(&old, job))
                    c.rc = store_fail(err, STORE_CONFLICT,
                                      "Idempotency-Key '%.64s' was already used for job %s with "
                                      "other seats or another event; use a new key for a new "
                                      "booking",
                                      idem_key, old.id);
                else
                    *job = old;
            }
            exec_sql(&c, "COMMIT");
            return call_end(&c);
        }
    }

    sqlite3_stmt *st = prep(&c, "SELECT 1 FROM events WHERE id = ?");
    bind_text(st, 1, job->event_id);
    int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
    if (st && rc == SQLITE_DONE)
        c.rc = store_fail(err, STORE_NOT_FOUND, "event '%s' not found", job->event_id);
    else if (st && rc != SQLITE_ROW)
        call_sqlerr(&c, rc, "read event");
    sqlite3_finalize(st);
    if (c.rc == STORE_OK && check_seats_exist(&c, job)) {
        char seats[STORE_JOB_MAX_SEATS * STORE_SEAT_LEN];
        seats_join(job, seats, sizeof seats);
        st = prep(&c, "INSERT INTO jobs(id, user, event_id, seats, idem, status, created_at) "
                      "VALUES(?,?,?,?,?,'queued',?)");
        bind_text(st, 1, job->id);
        bind_text(st, 2, job->user);
        bind_text(st, 3, job->event_id);
        bind_text(st, 4, seats);
        if (st) {
            if (idem_key)
                bind_text(st, 5, idem);
            else
                sqlite3_bind_null(st, 5);
            sqlite3_bind_int64(st, 6, job->created_at);
        }
        step_done(&c, st, "insert job");
        sqlite3_finalize(st);
        if (exec_sql(&c, "COMMIT")) *created_new = true;
    }
    return call_end(&c);
}

static enum store_rc sq_job_get(struct store *s, const char *job_id, struct store_job *job,
                                struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    load_job(&c, job_id, job);
    return call_end(&c);
}

static enum store_rc sq_job_lease(struct store *s, const char *worker_id, uint64_t lease_ms,
                                  struct store_job *job, struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (!write_begin(&c)) return call_end(&c);
    int64_t now = store_now_ms();
    bool found = false;
    while (c.rc == STORE_OK && !found) {
        sqlite3_stmt *st = prep(&c, "SELECT seq, attempt FROM jobs "
                                    "WHERE status IN ('queued','processing') "
                                    "AND (status = 'queued' OR lease_until <= ?) "
                                    "ORDER BY seq LIMIT 1");
        if (!st) break;
        sqlite3_bind_int64(st, 1, now);
        int rc = sqlite3_step(st);
        int64_t seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        int attempt = rc == SQLITE_ROW ? sqlite3_column_int(st, 1) : 0;
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            call_sqlerr(&c, rc, "find ready job");
            break;
        }
        if (attempt >= STORE_JOB_MAX_ATTEMPTS) {
            /* Its processors died this many times: a poison job. Fail it for good. */
            st = prep(&c, "UPDATE jobs SET status = 'failed', error_code = 'ATTEMPTS_EXHAUSTED', "
                          "error_message = ?, finished_at = ?, lease_until = NULL WHERE seq = ?");
            char msg[160];
            snprintf(msg, sizeof msg,
                     "the booking was interrupted %d times (its processor stopped); no seat "
                     "was booked, submit it again",
                     attempt);
            bind_text(st, 1, msg);
            if (st) sqlite3_bind_int64(st, 2, now), sqlite3_bind_int64(st, 3, seq);
            step_done(&c, st, "fail exhausted job");
            sqlite3_finalize(st);
            continue;
        }
        st = prep(&c, "UPDATE jobs SET status = 'processing', attempt = attempt + 1, "
                      "lease_owner = ?, lease_until = ? WHERE seq = ? RETURNING " JOB_COLS);
        bind_text(st, 1, worker_id);
        if (st) {
            sqlite3_bind_int64(st, 2, now + (int64_t)lease_ms);
            sqlite3_bind_int64(st, 3, seq);
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                job_from_row(st, job, now);
                found = true;
                rc = sqlite3_step(st);
            }
            if (rc != SQLITE_DONE) call_sqlerr(&c, rc, "lease job");
        }
        sqlite3_finalize(st);
    }
    if (c.rc == STORE_OK) exec_sql(&c, "COMMIT");
    if (c.rc == STORE_OK && !found) c.rc = store_fail(err, STORE_NOT_FOUND, "no job is ready");
    return call_end(&c);
}

static enum store_rc sq_job_renew(struct store *s, struct store_job *job, uint64_t lease_ms,
                                  struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (!write_lock(&c)) return call_end(&c);
    int64_t until = store_now_ms() + (int64_t)lease_ms;
    sqlite3_stmt *st = prep(&c, "UPDATE jobs SET lease_until = ? WHERE id = ? AND "
                                "status = 'processing' AND attempt = ?");
    if (st) {
        sqlite3_bind_int64(st, 1, until);
        bind_text(st, 2, job->id);
        sqlite3_bind_int(st, 3, job->attempt);
        if (step_done(&c, st, "renew lease")) {
            if (sqlite3_changes(c.db) == 1)
                job->lease_until = until;
            else
                c.rc = store_fail(err, STORE_CONFLICT,
                                  "lease %d of job %s was lost (expired and taken over, or the "
                                  "job finished)",
                                  job->attempt, job->id);
        }
    }
    sqlite3_finalize(st);
    return call_end(&c);
}

static enum store_rc sq_job_release(struct store *s, const struct store_job *job,
                                    struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (!write_lock(&c)) return call_end(&c);
    sqlite3_stmt *st = prep(&c, "UPDATE jobs SET status = 'queued', lease_until = NULL, "
                                "lease_owner = NULL WHERE id = ? AND status = 'processing' "
                                "AND attempt = ?");
    bind_text(st, 1, job->id);
    if (st) sqlite3_bind_int(st, 2, job->attempt);
    step_done(&c, st, "release job");
    sqlite3_finalize(st);
    return call_end(&c);
}

static enum store_rc sq_job_complete(struct store *s, struct store_job *job, bool *decided_here,
                                     struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (!write_begin(&c)) return call_end(&c);
    struct store_job cur;
    if (!load_job(&c, job->id, &cur)) return call_end(&c);
    if (cur.status == STORE_JOB_SUCCESS || cur.status == STORE_JOB_FAILED) {
        /* decided before (by us in an earlier call, or by a racing processor) */
        exec_sql(&c, "COMMIT");
        if (c.rc == STORE_OK) *job = cur;
        return call_end(&c);
    }

    const char *taken[STORE_JOB_MAX_SEATS];
    int ntaken = 0;
    sqlite3_stmt *st = prep(&c, "SELECT job_id FROM seats WHERE event_id = ? AND seat = ?");
    for (int i = 0; st && i < cur.nseats && c.rc == STORE_OK; i++) {
        sqlite3_reset(st);
        bind_text(st, 1, cur.event_id);
        bind_text(st, 2, cur.seats[i]);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *holder = (const char *)sqlite3_column_text(st, 0);
            if (holder && strcmp(holder, cur.id)) taken[ntaken++] = cur.seats[i];
        } else if (rc == SQLITE_DONE) {
            taken[ntaken++] = cur.seats[i]; /* cannot happen: validated at submit */
        } else {
            call_sqlerr(&c, rc, "read seat");
        }
    }
    sqlite3_finalize(st);
    if (c.rc != STORE_OK) return call_end(&c);

    int64_t now = store_now_ms();
    if (ntaken == 0) {
        st = prep(&c, "UPDATE seats SET job_id = ?, booked_at = ? "
                      "WHERE event_id = ? AND seat = ? AND (job_id IS NULL OR job_id = ?)");
        for (int i = 0; st && i < cur.nseats && c.rc == STORE_OK; i++) {
            sqlite3_reset(st);
            bind_text(st, 1, cur.id);
            sqlite3_bind_int64(st, 2, now);
            bind_text(st, 3, cur.event_id);
            bind_text(st, 4, cur.seats[i]);
            bind_text(st, 5, cur.id);
            if (step_done(&c, st, "book seat") && sqlite3_changes(c.db) != 1)
                c.rc = store_fail(err, STORE_INTERNAL,
                                  "seat %s of event %s changed under a "
                                  "write lock; nothing was booked",
                                  cur.seats[i], cur.event_id);
        }
        sqlite3_finalize(st);
        store_fault_kill("sqlite-complete-before-commit");
        st = prep(&c, "UPDATE jobs SET status = 'success', error_code = NULL, "
                      "error_message = NULL, finished_at = ?, lease_until = NULL WHERE id = ?");
        if (st) sqlite3_bind_int64(st, 1, now);
        bind_text(st, 2, cur.id);
        step_done(&c, st, "finish job");
        sqlite3_finalize(st);
        cur.status = STORE_JOB_SUCCESS;
    } else {
        store_taken_message(cur.error_message, sizeof cur.error_message, taken, ntaken);
        snprintf(cur.error_code, sizeof cur.error_code, "SEATS_TAKEN");
        st = prep(&c, "UPDATE jobs SET status = 'failed', error_code = 'SEATS_TAKEN', "
                      "error_message = ?, finished_at = ?, lease_until = NULL WHERE id = ?");
        bind_text(st, 1, cur.error_message);
        if (st) sqlite3_bind_int64(st, 2, now);
        bind_text(st, 3, cur.id);
        step_done(&c, st, "finish job");
        sqlite3_finalize(st);
        cur.status = STORE_JOB_FAILED;
    }
    if (c.rc == STORE_OK && exec_sql(&c, "COMMIT")) {
        cur.finished_at = now;
        cur.lease_until = 0;
        *job = cur;
        *decided_here = true;
    }
    return call_end(&c);
}

/* ---- messages ---------------------------------------------------------------------- */

static enum store_rc sq_message_add(struct store *s, const char *room, const char *from,
                                    const char *text, size_t text_len, char *id, int64_t ts,
                                    struct store_err *err)
{
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (!write_lock(&c)) return call_end(&c);
    sqlite3_stmt *st = prep(&c, "INSERT INTO messages(room, sender, text, ts) VALUES(?,?,?,?)");
    if (st) {
        bind_text(st, 1, room);
        bind_text(st, 2, from);
        sqlite3_bind_text(st, 3, text, (int)text_len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, ts);
        if (step_done(&c, st, "insert message"))
            snprintf(id, STORE_ID_LEN, "%lld", (long long)sqlite3_last_insert_rowid(c.db));
    }
    sqlite3_finalize(st);
    return call_end(&c);
}

static enum store_rc sq_messages(struct store *s, const char *room, const char *before, int limit,
                                 store_message_cb cb, void *arg, struct store_err *err)
{
    long long before_id = LLONG_MAX;
    if (before) {
        char *end;
        errno = 0;
        before_id = strtoll(before, &end, 10);
        if (errno || *end || before_id <= 0)
            return store_fail(err, STORE_BAD_INPUT,
                              "before='%.40s' is not a message id of room "
                              "'%.60s'",
                              before, room);
    }
    struct call c;
    if (!call_begin(&c, (struct sqlite_store *)s, err)) return c.rc;
    if (!exec_sql(&c, "BEGIN")) return call_end(&c);
    if (before) {
        sqlite3_stmt *st = prep(&c, "SELECT 1 FROM messages WHERE id = ? AND room = ?");
        if (st) {
            sqlite3_bind_int64(st, 1, before_id);
            bind_text(st, 2, room);
            int rc = sqlite3_step(st);
            if (rc == SQLITE_DONE)
                c.rc = store_fail(err, STORE_BAD_INPUT,
                                  "before='%s' is not a message id of room '%.60s'", before, room);
            else if (rc != SQLITE_ROW)
                call_sqlerr(&c, rc, "read message");
        }
        sqlite3_finalize(st);
    }
    /* newest `limit` older than `before`, then delivered oldest first */
    sqlite3_stmt *st = prep(&c, "SELECT id, sender, text, ts FROM ("
                                "  SELECT id, sender, text, ts FROM messages"
                                "  WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?"
                                ") ORDER BY id ASC");
    if (st) {
        bind_text(st, 1, room);
        sqlite3_bind_int64(st, 2, before_id);
        sqlite3_bind_int(st, 3, limit);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct store_message m;
            memset(&m, 0, sizeof m);
            snprintf(m.id, sizeof m.id, "%lld", (long long)sqlite3_column_int64(st, 0));
            snprintf(m.room, sizeof m.room, "%s", room);
            snprintf(m.from, sizeof m.from, "%s", col_text(st, 1));
            m.text = col_text(st, 2);
            m.text_len = (size_t)sqlite3_column_bytes(st, 2);
            m.ts = sqlite3_column_int64(st, 3);
            if (cb(arg, &m)) {
                rc = SQLITE_DONE;
                break;
            }
        }
        if (rc != SQLITE_DONE) call_sqlerr(&c, rc, "read messages");
    }
    sqlite3_finalize(st);
    exec_sql(&c, "COMMIT");
    return call_end(&c);
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .ping = sq_ping,
    .describe = sq_describe,
    .event_create = sq_event_create,
    .event_get = sq_event_get,
    .event_seats = sq_event_seats,
    .job_submit = sq_job_submit,
    .job_get = sq_job_get,
    .job_lease = sq_job_lease,
    .job_renew = sq_job_renew,
    .job_release = sq_job_release,
    .job_complete = sq_job_complete,
    .message_add = sq_message_add,
    .messages = sq_messages,
};

struct store *store_sqlite_open(const struct svcd_config *cfg, unsigned flags,
                                struct store_err *err)
{
    if (!cfg->storage.path[0]) {
        store_fail(err, STORE_BAD_INPUT,
                   "storage.path is empty; set it to the SQLite file, "
                   "e.g. var/svcd.db");
        return NULL;
    }
    if (!sqlite3_threadsafe()) {
        store_fail(err, STORE_INTERNAL, "this SQLite library was built without thread support");
        return NULL;
    }
    struct sqlite_store *ss = calloc(1, sizeof *ss);
    if (!ss) {
        store_fail(err, STORE_INTERNAL, "out of memory");
        return NULL;
    }
    ss->base.ops = &sqlite_ops;
    snprintf(ss->path, sizeof ss->path, "%s", cfg->storage.path);
    pthread_mutex_init(&ss->mu, NULL);
    pthread_mutex_init(&ss->wmu, NULL);
    pthread_condattr_init(&ss->wattr);
    pthread_condattr_setclock(&ss->wattr, CLOCK_MONOTONIC);
    pthread_cond_init(&ss->ck_cv, NULL);
    /* Open one connection now: creates the file and schema, and proves it works. */
    tl_deadline_us = mono_us() + (int64_t)BUSY_TIMEOUT_MS * 1000;
    sqlite3 *db = NULL;
    enum store_rc rc = open_conn(ss, &db, err);
    if (rc == STORE_OK) {
        release(ss, db, false);
    } else if (!(flags & STORE_OPEN_LAZY)) {
        sq_close(&ss->base);
        return NULL;
    }
    return &ss->base;
}
