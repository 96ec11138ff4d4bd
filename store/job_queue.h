/*
 * job_queue.h — the booking job processors: threads that lease a job from the store,
 * run it (store_job_complete: all seats or none) and report the outcome.
 *
 * The queue itself is the database (store.h); this is only the pump. Any number of
 * pumps may run on one database — threads of one worker, several workers, several
 * hosts — because leasing and deciding are atomic in the store. A pump that dies
 * (kill -9) loses nothing: its leases expire and another pump re-runs those jobs.
 *
 * Lease handling: every job is leased for `lease_ms`; a renewer thread extends the
 * leases of the jobs being run every lease_ms/3, so a slow database does not let a
 * live job's lease expire, while a dead process's leases expire after at most
 * lease_ms. Even if a lease does expire under a live processor, nothing is booked
 * twice: the store decides each job exactly once.
 */
#ifndef SVCD_JOB_QUEUE_H
#define SVCD_JOB_QUEUE_H

#include "store.h"

struct job_queue;

struct job_queue_config {
    struct store *store;
    const char *worker_id;   /* recorded in leases for diagnosis, e.g. "host:pid" */
    int threads;             /* processors; 1..64 (default 2) */
    uint64_t lease_ms;       /* default 30000 */
    uint64_t poll_ms;        /* idle wait between lease attempts; default 250 */
    uint64_t max_backoff_ms; /* wait after STORE_UNAVAILABLE doubles up to this; default 5000 */
    /* Called on a processor thread for every job this pump decided (once per job
     * across all pumps: use it to push `booking:update`). May be NULL. */
    void (*on_done)(void *arg, const struct store_job *job);
    /* Called on a processor thread when a store call fails (for the log). May be NULL. */
    void (*on_error)(void *arg, const struct store_err *err);
    void *arg;
};

struct job_queue_stats {
    uint64_t leased;    /* leases obtained */
    uint64_t succeeded; /* jobs this pump decided success */
    uint64_t failed;    /* jobs this pump decided failed */
    uint64_t already;   /* jobs another processor had decided first */
    uint64_t errors;    /* store calls that failed */
    uint64_t renewals;  /* leases extended */
    int busy;           /* processors running a job now */
};

/* Start the processors. NULL + err on failure (thread creation). */
struct job_queue *job_queue_start(const struct job_queue_config *cfg, struct store_err *err);

/* A job was just submitted: wake an idle processor now instead of at its next poll. */
void job_queue_notify(struct job_queue *q);

/* Stop leasing, let running jobs finish, join every thread, free. Blocks. */
void job_queue_stop(struct job_queue *q);

void job_queue_get_stats(struct job_queue *q, struct job_queue_stats *out);

/*
 * One step for callers that bring their own thread: lease the oldest ready job and
 * complete it. STORE_NOT_FOUND when nothing was ready. On STORE_OK `job` holds the
 * final state and *decided_here says whether this call decided it.
 */
enum store_rc job_queue_run_one(struct store *s, const char *worker_id, uint64_t lease_ms,
                                struct store_job *job, bool *decided_here, struct store_err *err);

#endif
