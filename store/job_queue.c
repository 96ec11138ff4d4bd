/*
 * job_queue.c — processor threads over the store's durable job queue (job_queue.h).
 *
 * Each processor loops: lease → complete → report. When nothing is ready it sleeps
 * on a condition variable for poll_ms (job_queue_notify wakes it early); when the
 * database is unavailable it backs off exponentially. One renewer thread extends the
 * leases of running jobs. Stopping lets every running job finish first, so a
 * graceful shutdown never leaves a job to wait for its lease to expire.
 */
#include "job_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64

struct slot {
    struct job_queue *q;
    pthread_t th;
    bool started;
    bool busy;
    struct store_job job; /* the running job, for the renewer */
};

struct job_queue {
    struct job_queue_config cfg;
    char worker_id[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* processors wait here (notify, stop) */
    pthread_cond_t renew_cv; /* the renewer waits here (stop) */
    bool stopping;
    unsigned pending_notify;
    struct slot slots[MAX_THREADS];
    pthread_t renewer;
    bool renewer_started;
    struct job_queue_stats stats;
};

enum store_rc job_queue_run_one(struct store *s, const char *worker_id, uint64_t lease_ms,
                                struct store_job *job, bool *decided_here, struct store_err *err)
{
    enum store_rc rc = store_job_lease(s, worker_id, lease_ms, job, err);
    if (rc != STORE_OK) return rc;
    return store_job_complete(s, job, decided_here, err);
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

/* Sleep up to `ms` unless stopped or notified (when `wake_on_notify`). Locked. */
static void wait_locked(struct job_queue *q, pthread_cond_t *cv, uint64_t ms, bool wake_on_notify)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    while (!q->stopping && !(wake_on_notify && q->pending_notify)) {
        if (pthread_cond_timedwait(cv, &q->mu, &ts) == ETIMEDOUT) break;
    }
    if (wake_on_notify && q->pending_notify) q->pending_notify--;
}

static void report_error(struct job_queue *q, const struct store_err *err)
{
    pthread_mutex_lock(&q->mu);
    q->stats.errors++;
    pthread_mutex_unlock(&q->mu);
    if (q->cfg.on_error) q->cfg.on_error(q->cfg.arg, err);
}

static void *processor(void *arg)
{
    struct slot *sl = arg;
    struct job_queue *q = sl->q;
    uint64_t backoff = 0;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        bool stop = q->stopping;
        pthread_mutex_unlock(&q->mu);
        if (stop) break;

        struct store_job job;
        struct store_err err = {0};
        enum store_rc rc = store_job_lease(q->cfg.store, q->worker_id, q->cfg.lease_ms, &job, &err);
        if (rc == STORE_NOT_FOUND) {
            backoff = 0;
            pthread_mutex_lock(&q->mu);
            wait_locked(q, &q->cv, q->cfg.poll_ms, true);
            pthread_mutex_unlock(&q->mu);
            continue;
        }
        if (rc != STORE_OK) {
            report_error(q, &err);
            backoff = backoff ? backoff * 2 : 100;
            if (backoff > q->cfg.max_backoff_ms) backoff = q->cfg.max_backoff_ms;
            pthread_mutex_lock(&q->mu);
            wait_locked(q, &q->cv, backoff, false);
            pthread_mutex_unlock(&q->mu);
            continue;
        }
        backoff = 0;
        pthread_mutex_lock(&q->mu);
        q->stats.leased++;
        q->stats.busy++;
        sl->busy = true;
        sl->job = job;
        pthread_mutex_unlock(&q->mu);

        bool decided = false;
        rc = store_job_complete(q->cfg.store, &job, &decided, &err);

        pthread_mutex_lock(&q->mu);
        sl->busy = false;
        q->stats.busy--;
        if (rc == STORE_OK) {
            if (!decided)
                q->stats.already++;
            else if (job.status == STORE_JOB_SUCCESS)
                q->stats.succeeded++;
            else
                q->stats.failed++;
        }
        pthread_mutex_unlock(&q->mu);
        if (rc != STORE_OK) {
            /* The lease stays; it expires and the job is run again. */
            report_error(q, &err);
            continue;
        }
        if (decided && q->cfg.on_done) q->cfg.on_done(q->cfg.arg, &job);
    }
    return NULL;
}

static void *renewer(void *arg)
{
    struct job_queue *q = arg;
    uint64_t every = q->cfg.lease_ms / 3 ? q->cfg.lease_ms / 3 : 1;
    pthread_mutex_lock(&q->mu);
    while (!q->stopping) {
        wait_locked(q, &q->renew_cv, every, false);
        if (q->stopping) break;
        for (int i = 0; i < q->cfg.threads; i++) {
            if (!q->slots[i].busy) continue;
            struct store_job job = q->slots[i].job;
            pthread_mutex_unlock(&q->mu);
            struct store_err err = {0};
            enum store_rc rc = store_job_renew(q->cfg.store, &job, q->cfg.lease_ms, &err);
            pthread_mutex_lock(&q->mu);
            if (rc == STORE_OK) q->stats.renewals++;
            /* CONFLICT: the job finished meanwhile (the usual case) or was taken
             * over; UNAVAILABLE: the processor's own call will report it. */
        }
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

struct job_queue *job_queue_start(const struct job_queue_config *cfg, struct store_err *err)
{
    struct job_queue *q = calloc(1, sizeof *q);
    if (!q) {
        if (err) err->rc = STORE_INTERNAL, snprintf(err->msg, sizeof err->msg, "out of memory");
        return NULL;
    }
    q->cfg = *cfg;
    if (q->cfg.threads <= 0) q->cfg.threads = 2;
    if (q->cfg.threads > MAX_THREADS) q->cfg.threads = MAX_THREADS;
    if (!q->cfg.lease_ms) q->cfg.lease_ms = 30000;
    if (!q->cfg.poll_ms) q->cfg.poll_ms = 250;
    if (!q->cfg.max_backoff_ms) q->cfg.max_backoff_ms = 5000;
    snprintf(q->worker_id, sizeof q->worker_id, "%s", cfg->worker_id ? cfg->worker_id : "?");
    q->cfg.worker_id = q->worker_id;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_cond_init(&q->renew_cv, &ca);
    pthread_condattr_destroy(&ca);

    int e = 0;
    for (int i = 0; i < q->cfg.threads && !e; i++) {
        q->slots[i].q = q;
        e = pthread_create(&q->slots[i].th, NULL, processor, &q->slots[i]);
        q->slots[i].started = !e;
    }
    if (!e) {
        e = pthread_create(&q->renewer, NULL, renewer, q);
        q->renewer_started = !e;
    }
    if (e) {
        if (err) {
            err->rc = STORE_INTERNAL;
            snprintf(err->msg, sizeof err->msg, "cannot start job processor threads: %s",
                     strerror(e));
        }
        job_queue_stop(q);
        return NULL;
    }
    return q;
}

void job_queue_notify(struct job_queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (q->pending_notify < (unsigned)q->cfg.threads) q->pending_notify++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void job_queue_stop(struct job_queue *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_cond_broadcast(&q->renew_cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->cfg.threads; i++)
        if (q->slots[i].started) pthread_join(q->slots[i].th, NULL);
    if (q->renewer_started) pthread_join(q->renewer, NULL);
    pthread_cond_destroy(&q->cv);
    pthread_cond_destroy(&q->renew_cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

void job_queue_get_stats(struct job_queue *q, struct job_queue_stats *out)
{
    pthread_mutex_lock(&q->mu);
    *out = q->stats;
    pthread_mutex_unlock(&q->mu);
}
