/*
 * store_pool.h — running blocking storage calls off the event loop.
 *
 * A worker's libev loop must never wait on the database (a slow or dead MongoDB
 * would freeze every connection of that worker). Handlers package a storage call
 * as a task: `run` executes on one of a few pool threads with the worker's store
 * handle, `done` runs back on the loop thread (woken through ev_async) to answer
 * the client. The same pool owns the booking job processor (store/job_queue.c:
 * lease, renew while running, complete) and a health thread, and keeps the last known database
 * health for /api/health without ever querying on the loop.
 */
#ifndef SVCD_STORE_POOL_H
#define SVCD_STORE_POOL_H

#include <stdbool.h>

#include "../store/store.h"

struct worker_ctx;
struct store_pool;

struct store_task {
    void (*run)(struct store_task *t, struct store *s); /* pool thread */
    void (*done)(struct store_task *t);                 /* loop thread; frees t */
    struct store_task *next;
};

/* The last database check as the health endpoints report it. */
struct db_state {
    bool configured;   /* a store is open (it may still be unreachable) */
    bool connected;    /* the last check reached the database */
    const char *state; /* "connected", "disconnected", "connecting" */
    double check_ms;   /* duration of the last check */
    struct store_info info;
};

/* Open the worker's store (lazily: an unreachable database is not an error) and
 * start `nthreads` request threads plus the job processor. NULL with `err` filled
 * when the store cannot even be set up (e.g. a bad SQLite path). */
struct store_pool *store_pool_start(struct worker_ctx *w, int nthreads, char *err, size_t errlen);
/* Queue a task. Returns -1 (task untouched) once the pool is stopping. */
int store_pool_submit(struct store_pool *p, struct store_task *t);
/* Wake the job processor now (a job was just queued by this worker). */
void store_pool_kick(struct store_pool *p);
/* A storage call just answered STORE_UNAVAILABLE (any thread): check the database
 * now instead of at the next scheduled check. */
void store_pool_note_unavailable(struct store_pool *p);
/* The last check said the database is unreachable (loop thread; no I/O). While it
 * does, storage-backed endpoints answer 503 at once instead of queueing behind
 * server-selection timeouts. False while the first check is still running. */
bool store_pool_db_down(struct store_pool *p);
void store_pool_db_state(struct store_pool *p, struct db_state *out);
/* Number of booking jobs this worker's processor completed / is holding. */
unsigned long long store_pool_jobs_done(struct store_pool *p);
/* Finish queued tasks, let the processor finish (or release) its job, join the
 * threads, close the store. Runs the remaining `done` callbacks. */
void store_pool_stop(struct store_pool *p);

/* Called by the processor (on the loop thread) when it decided a job: the chat
 * feature pushes `booking:update` to the user's Socket.IO connection. */
void booking_job_decided(struct worker_ctx *w, const struct store_job *job);

#endif
