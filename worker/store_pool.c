/*
 * store_pool.c — storage thread pool, job processor and database health (see
 * store_pool.h for why the loop never calls the store itself).
 */
#include "store_pool.h"
#include "worker_ctx.h"
#include "../common/log.h"

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
    pthread_t processor;
    int processor_started;

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
    unsigned long long jobs_done;
    char worker_id[64];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
 * The job processor: health check on a schedule (the background reconnect, with
 * back-off from storage.connect.backoff up to max_backoff while the database is
 * down), and while healthy, lease -> complete, one job at a time. A job whose
 * processor dies mid-way keeps its lease until it expires; then any processor of
 * any worker or host leases it again (store_job_complete is idempotent).
 */
static void *processor_thread(void *arg)
{
    struct store_pool *p = arg;
    const struct svcd_config *cfg = p->w->cfg;
    int64_t backoff = (int64_t)cfg->storage.connect_backoff_ms;
    int64_t next_check = 0;
    int healthy = 0;
    while (!is_stopping(p)) {
        int64_t now = mono_ms();
        if (now >= next_check) {
            struct store_err err = {0};
            double ms = 0;
            healthy = store_ping(p->s, &ms, &err) == STORE_OK;
            set_health(p, healthy, ms);
            if (healthy) {
                backoff = (int64_t)cfg->storage.connect_backoff_ms;
                next_check = now + HEALTHY_CHECK_MS;
            } else {
                next_check = now + backoff;
                backoff *= 2;
                if (backoff > (int64_t)cfg->storage.connect_max_backoff_ms)
                    backoff = (int64_t)cfg->storage.connect_max_backoff_ms;
            }
        }
        if (!healthy) {
            if (processor_wait(p, next_check - mono_ms())) break;
            continue;
        }
        struct decided_task *d = calloc(1, sizeof(*d));
        if (!d) {
            processor_wait(p, PROCESSOR_IDLE_MS);
            continue;
        }
        struct store_err err = {0};
        enum store_rc rc = store_job_lease(p->s, p->worker_id, JOB_LEASE_MS, &d->job, &err);
        if (rc != STORE_OK) {
            free(d);
            if (rc == STORE_UNAVAILABLE) {
                set_health(p, 0, 0);
                healthy = 0;
                next_check = mono_ms() + backoff;
            } else if (rc != STORE_NOT_FOUND) {
                log_warn("job processor: cannot lease a job: %s", err.msg);
            }
            if (processor_wait(p, PROCESSOR_IDLE_MS)) break;
            continue;
        }
        bool decided_here = false;
        rc = store_job_complete(p->s, &d->job, &decided_here, &err);
        if (rc != STORE_OK) {
            /* The lease runs out and another processor retries it. */
            log_warn("job processor: job %s not completed (%s); it will be retried after its "
                     "lease",
                     d->job.id, err.msg);
            free(d);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        p->jobs_done++;
        pthread_mutex_unlock(&p->mu);
        if (decided_here) {
            d->pool = p;
            d->task.done = decided_done;
            post_done(p, &d->task);
        } else {
            free(d);
        }
    }
    return NULL;
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
    p->s = store_open(w->cfg, STORE_OPEN_LAZY, &serr);
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
    if (pthread_create(&p->processor, NULL, processor_thread, p) == 0) p->processor_started = 1;
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
    pthread_mutex_lock(&p->mu);
    p->kicked = 1;
    pthread_cond_signal(&p->proc_cv);
    pthread_mutex_unlock(&p->mu);
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
    if (!p) return 0;
    pthread_mutex_lock(&p->mu);
    unsigned long long n = p->jobs_done;
    pthread_mutex_unlock(&p->mu);
    return n;
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
    if (p->processor_started) pthread_join(p->processor, NULL);
    run_done(p);
    ev_async_stop(p->w->loop, &p->wake);
    store_close(p->s);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->proc_cv);
    free(p);
}
