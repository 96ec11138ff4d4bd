/*
 * store_pool.c — storage thread pool, job processor and database health (see
 * store_pool.h for why the loop never calls the store itself).
 *
 * Booking jobs are pumped by store/job_queue.c (the one lease implementation:
 * lease -> complete, with a renewer extending the lease of the job being run, so
 * a slow database cannot let a live job's lease expire and be leased again). The
 * pool's own health thread pings on a schedule — the background reconnect — and
 * the loop reads its last verdict to refuse storage calls at once while the
 * database is known to be down.
 */
#include "store_pool.h"
#include "worker_ctx.h"
#include "../common/log.h"
#include "../store/job_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX_THREADS  8
#define JOB_LEASE_MS      10000
#define HEALTHY_CHECK_MS  2000
#define PROCESSOR_IDLE_MS 250
#define JOB_PROCESSORS    1

struct decided_task {
    struct store_task task;
    struct store_pool *pool;
    struct store_job job;
};

struct store_pool {
    struct worker_ctx *w;
    struct store *s;
    pthread_t threads[POOL_MAX_THREADS];
    int nthreads;
    pthread_t health;
    int health_started;
    struct job_queue *jobs;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* request threads wait here */
    pthread_cond_t proc_cv; /* the processor waits here */
    struct store_task *head, *tail;
    struct store_task *done_head, *done_tail;
    int stopping;
    int kicked;

    ev_async wake;

    /* health, guarded by mu */
    int checked;
    int connected;
    double check_ms;
    char worker_id[64];
};

/* Hand a finished task back to the loop thread. */
static void post_done(struct store_pool *p, struct store_task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->done_tail)
        p->done_tail->next = t;
    else
        p->done_head = t;
    p->done_tail = t;
    pthread_mutex_unlock(&p->mu);
    ev_async_send(p->w->loop, &p->wake);
}

static void run_done(struct store_pool *p)
{
    pthread_mutex_lock(&p->mu);
    struct store_task *t = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (t) {
        struct store_task *next = t->next;
        t->done(t);
        t = next;
    }
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop, (void)revents;
    run_done(a->data);
}

static void *request_thread(void *arg)
{
    struct store_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stopping) pthread_cond_wait(&p->work_cv, &p->mu);
        struct store_task *t = p->head;
        if (!t) {
            pthread_mutex_unlock(&p->mu);
            break; /* stopping and nothing left */
        }
        p->head = t->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        t->run(t, p->s);
        post_done(p, t);
    }
    return NULL;
}

static void decided_done(struct store_task *t)
{
    struct decided_task *d = (struct decided_task *)t;
    booking_job_decided(d->pool->w, &d->job);
    free(d);
}

static void set_health(struct store_pool *p, int connected, double ms)
{
    pthread_mutex_lock(&p->mu);
    if (p->checked && p->connected != connected) {
        if (connected)
            log_info("database reachable again (%.1f ms); storage-backed endpoints resume", ms);
        else
            log_warn("database unreachable; storage-backed endpoints answer 503 DB_UNAVAILABLE "
                     "and svcd keeps retrying");
    }
    p->checked = 1;
    p->connected = connected;
    p->check_ms = ms;
    pthread_mutex_unlock(&p->mu);
}

/* Wait up to `ms` or until kicked/stopping. Returns non-zero when stopping. */
static int processor_wait(struct store_pool *p, int64_t ms)
{
    if (ms < 0) ms = 0; /* a slow check may overrun the deadline it was given */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping && !p->kicked) {
        if (pthread_cond_timedwait(&p->proc_cv, &p->mu, &until) != 0) break;
    }
    p->kicked = 0;
    int stop = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static int is_stopping(struct store_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/*
 * The health thread: one ping on a schedule — every HEALTHY_CHECK_MS while the
 * database answers, and while it does not, the background reconnect with back-off
 * from storage.connect.backoff doubling up to max_backoff. Its first ping (which
 * on MongoDB also creates the indexes) runs here, never on the loop thread.
 */
static void *health_thread(void *arg)
{
    struct store_pool *p = arg;
    const struct svcd_config *cfg = p->w->cfg;
    int64_t backoff = (int64_t)cfg->storage.connect_backoff_ms;
    while (!is_stopping(p)) {
        struct store_err err = {0};
        double ms = 0;
        int healthy = store_ping(p->s, &ms, &err) == STORE_OK;
        set_health(p, healthy, ms);
        int64_t wait;
        if (healthy) {
            backoff = (int64_t)cfg->storage.connect_backoff_ms;
            wait = HEALTHY_CHECK_MS;
        } else {
            wait = backoff;
            log_debug("database check failed (%s); next check in %lld ms", err.msg,
                      (long long)wait);
            backoff *= 2;
            if (backoff > (int64_t)cfg->storage.connect_max_backoff_ms)
                backoff = (int64_t)cfg->storage.connect_max_backoff_ms;
        }
        if (processor_wait(p, wait)) break;
    }
    return NULL;
}

/* job_queue callbacks, on a processor thread. */
static void job_decided(void *arg, const struct store_job *job)
{
    struct store_pool *p = arg;
    struct decided_task *d = calloc(1, sizeof(*d));
    if (!d) return; /* the job is decided in the database; only the push is lost */
    d->pool = p;
    d->job = *job;
    d->task.done = decided_done;
    post_done(p, &d->task);
}

static void job_error(void *arg, const struct store_err *err)
{
    struct store_pool *p = arg;
    if (err->rc == STORE_UNAVAILABLE)
        store_pool_note_unavailable(p);
    else
        log_warn("job processor: %s (a leased job is retried after its lease)", err->msg);
}

static uint64_t lease_ms(void)
{
    /* Test hook: a short lease makes lease expiry and renewal observable. */
    const char *v = getenv("SVCD_TEST_JOB_LEASE_MS");
    long long n = v ? atoll(v) : 0;
    return n > 0 ? (uint64_t)n : JOB_LEASE_MS;
}

struct store_pool *store_pool_start(struct worker_ctx *w, int nthreads, char *err, size_t errlen)
{
    struct store_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->w = w;
    struct store_err serr = {0};
    /* DEFER: no round trip on the loop thread (server selection alone may take
     * seconds while MongoDB is down); the health thread makes the first one. */
    p->s = store_open(w->cfg, STORE_OPEN_LAZY | STORE_OPEN_DEFER, &serr);
    if (!p->s) {
        snprintf(err, errlen, "%s", serr.msg);
        free(p);
        return NULL;
    }
    char host[40] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(p->worker_id, sizeof(p->worker_id), "%s:%d", host, (int)getpid());
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->proc_cv, NULL);
    ev_async_init(&p->wake, on_wake);
    p->wake.data = p;
    ev_async_start(w->loop, &p->wake);
    if (nthreads > POOL_MAX_THREADS) nthreads = POOL_MAX_THREADS;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&p->threads[p->nthreads], NULL, request_thread, p) == 0) p->nthreads++;
    if (pthread_create(&p->health, NULL, health_thread, p) == 0) p->health_started = 1;
    struct job_queue_config qc = {
        .store = p->s,
        .worker_id = p->worker_id,
        .threads = JOB_PROCESSORS,
        .lease_ms = lease_ms(),
        .poll_ms = PROCESSOR_IDLE_MS,
        .max_backoff_ms = w->cfg->storage.connect_max_backoff_ms,
        .on_done = job_decided,
        .on_error = job_error,
        .arg = p,
    };
    p->jobs = job_queue_start(&qc, &serr);
    if (!p->jobs) log_error("booking job processor not started: %s", serr.msg);
    if (!p->nthreads) {
        snprintf(err, errlen, "cannot start storage threads");
        store_pool_stop(p);
        return NULL;
    }
    return p;
}

int store_pool_submit(struct store_pool *p, struct store_task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void store_pool_kick(struct store_pool *p)
{
    if (p->jobs) job_queue_notify(p->jobs);
}

void store_pool_note_unavailable(struct store_pool *p)
{
    /* Not a verdict by itself (an SQLite busy timeout is one request's bad luck):
     * have the health thread check now rather than at its next turn; its ping
     * decides whether storage-backed endpoints fail fast. */
    pthread_mutex_lock(&p->mu);
    if (!p->checked || p->connected) {
        p->kicked = 1;
        pthread_cond_signal(&p->proc_cv);
    }
    pthread_mutex_unlock(&p->mu);
}

bool store_pool_db_down(struct store_pool *p)
{
    if (!p) return false;
    pthread_mutex_lock(&p->mu);
    bool down = p->checked && !p->connected;
    pthread_mutex_unlock(&p->mu);
    return down;
}

void store_pool_db_state(struct store_pool *p, struct db_state *out)
{
    memset(out, 0, sizeof(*out));
    if (!p) {
        out->state = "not_configured";
        return;
    }
    out->configured = true;
    pthread_mutex_lock(&p->mu);
    out->connected = p->connected;
    out->check_ms = p->check_ms;
    out->state = !p->checked ? "connecting" : p->connected ? "connected" : "disconnected";
    pthread_mutex_unlock(&p->mu);
    store_describe(p->s, &out->info);
}

unsigned long long store_pool_jobs_done(struct store_pool *p)
{
    if (!p || !p->jobs) return 0;
    struct job_queue_stats st;
    job_queue_get_stats(p->jobs, &st);
    return st.succeeded + st.failed + st.already;
}

void store_pool_stop(struct store_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_cond_broadcast(&p->proc_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    job_queue_stop(p->jobs); /* a running job finishes first */
    if (p->health_started) pthread_join(p->health, NULL);
    run_done(p);
    ev_async_stop(p->w->loop, &p->wake);
    store_close(p->s);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->proc_cv);
    free(p);
}
