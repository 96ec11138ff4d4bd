/*
 * store.h — svcd's one storage interface: events and seat maps, the durable booking
 * job queue, chat history. Two backends implement it: SQLite (the embedded default,
 * store_sqlite.c) and MongoDB through libmongoc (store_mongo.c); one contract test
 * suite (test/store/contract.c) runs unchanged against both.
 *
 * Rules every caller can rely on:
 *  - Every call BLOCKS (disk or network). Never call one on an event-loop thread:
 *    the worker runs them on its small storage thread pool.
 *  - A `struct store` is thread-safe: any number of threads may use one handle at
 *    once. Each call borrows a connection from the handle's pool (SQLite: one
 *    sqlite3 connection per concurrent call; MongoDB: mongoc_client_pool_t).
 *  - A handle never crosses fork(): open it in the process that uses it. The master
 *    closes its start-up handle before it forks.
 *  - Calls return an enum store_rc and, when `err` is not NULL, fill it on failure.
 *    STORE_UNAVAILABLE always means "the database, not the request": answer 503
 *    DB_UNAVAILABLE; the handle recovers by itself when the database returns.
 *  - Input is validated here too (the HTTP layer may check first for nicer errors):
 *    seat labels 1..31 of [A-Za-z0-9._-], no duplicates, 1..STORE_JOB_MAX_SEATS seats
 *    per booking, every seat must exist in the event.
 *
 * The double-booking guarantee lives in the database, never in memory: SQLite books
 * all seats or none inside one BEGIN IMMEDIATE transaction with a conditional update
 * per seat row; MongoDB claims seats by inserting per-seat documents under a unique
 * index on {eventId, seat} and decides each job exactly once by inserting its result
 * document (unique _id). See the top comments of the two backends.
 */
#ifndef SVCD_STORE_H
#define SVCD_STORE_H

#include "store_types.h"

struct svcd_config;
struct store;

/* --- lifecycle ----------------------------------------------------------------- */

/*
 * Open the store cfg->storage describes (driver sqlite: cfg->storage.path, its
 * directory created if missing; driver mongodb: cfg->storage.uri, database from the
 * URI path or "svcd"). Creates the schema / indexes. Without STORE_OPEN_LAZY it
 * checks the database answers and fails fast (one try: retries with backoff are the
 * caller's, SPEC §3) with e.g.
 *   "cannot connect to MongoDB at 127.0.0.1:27017: connection refused"
 * and err->rc STORE_UNAVAILABLE. With STORE_OPEN_LAZY an unreachable database is not
 * an error; the schema is created on the first call that reaches it.
 * Returns NULL only on failure (err filled).
 */
struct store *store_open(const struct svcd_config *cfg, unsigned flags, struct store_err *err);
void store_close(struct store *s);

/* Health: one round trip to the database. `*ms` gets the time it took (also on
 * failure, the time until the failure). STORE_OK means connected and responsive. */
enum store_rc store_ping(struct store *s, double *ms, struct store_err *err);

/* Driver, target and host for /api/health/detailed; never a password. */
void store_describe(struct store *s, struct store_info *out);

/* "sqlite" / "mongodb" */
const char *store_driver_name(const struct store *s);

/* --- events and seat maps -------------------------------------------------------- */

/* Create an event with `nseats` distinct seat labels (1..STORE_EVENT_MAX_SEATS).
 * `id_out` (STORE_ID_LEN) gets its id. */
enum store_rc store_event_create(struct store *s, const char *name, const char *const *seats,
                                 int nseats, char *id_out, struct store_err *err);

enum store_rc store_event_get(struct store *s, const char *event_id, struct store_event *out,
                              struct store_err *err);

/* Every seat of the event in creation order, booked or available. A seat counts as
 * booked while it is held by a successful job or by a job being processed right now.
 * STORE_NOT_FOUND for an unknown event. */
enum store_rc store_event_seats(struct store *s, const char *event_id, store_seat_cb cb, void *arg,
                                struct store_err *err);

/* --- booking jobs ------------------------------------------------------------------ */

/*
 * Accept a booking job (status queued) at once; processing happens later through
 * store_job_lease + store_job_complete. Validates the event and seats (STORE_NOT_FOUND
 * for an unknown event, STORE_BAD_INPUT for the rest) but not availability: a taken
 * seat makes the job fail later, naming it.
 * `idem_key` (may be NULL or ""): per user. A second submit with the same user and
 * key returns the first job (`*created_new` false) instead of queueing another; if
 * the event or seats differ from the first request it is STORE_CONFLICT.
 */
enum store_rc store_job_submit(struct store *s, const char *user, const char *event_id,
                               const char *const *seats, int nseats, const char *idem_key,
                               struct store_job *job, bool *created_new, struct store_err *err);

/* The job as it is now. The owner check (job->user) is the caller's. */
enum store_rc store_job_get(struct store *s, const char *job_id, struct store_job *job,
                            struct store_err *err);

/*
 * Claim the oldest job that is queued, or processing with an expired lease (its
 * processor died or hangs), for `lease_ms`; `worker_id` is recorded for diagnosis.
 * STORE_NOT_FOUND when no job is ready. Atomic across threads, processes and hosts:
 * one lease of one job is given to one caller. A job leased STORE_JOB_MAX_ATTEMPTS
 * times without finishing fails with ATTEMPTS_EXHAUSTED instead of being leased again.
 */
enum store_rc store_job_lease(struct store *s, const char *worker_id, uint64_t lease_ms,
                              struct store_job *job, struct store_err *err);

/* Extend a lease this caller holds (job from store_job_lease) by `lease_ms` from now.
 * STORE_CONFLICT when the lease was lost (expired and re-leased, or the job finished). */
enum store_rc store_job_renew(struct store *s, struct store_job *job, uint64_t lease_ms,
                              struct store_err *err);

/* Give a leased job back to the queue untouched (graceful shutdown). */
enum store_rc store_job_release(struct store *s, const struct store_job *job,
                                struct store_err *err);

/*
 * Run the job: book all of its seats or none. On return `job` holds the final state
 * (success, or failed with SEATS_TAKEN naming every seat some other job holds).
 * Idempotent and safe to race: any number of processors may complete the same job
 * (a stale one whose lease expired included); the job is decided exactly once and
 * every call returns that one decision. `*decided_here` (may be NULL) is true only
 * for the call that made it — use it to push `booking:update` once.
 */
enum store_rc store_job_complete(struct store *s, struct store_job *job, bool *decided_here,
                                 struct store_err *err);

/* --- chat history ---------------------------------------------------------------- */

/* Store one message; `id_out` (STORE_ID_LEN) and `*ts` (ms) get its id and time. */
enum store_rc store_message_add(struct store *s, const char *room, const char *from,
                                const char *text, size_t text_len, char *id_out, int64_t *ts,
                                struct store_err *err);

/* The `limit` (1..STORE_MESSAGES_MAX_PAGE) newest messages of `room` older than
 * message `before` (NULL or "": the newest), delivered oldest first. An unknown
 * `before` id is STORE_BAD_INPUT. */
enum store_rc store_messages(struct store *s, const char *room, const char *before, int limit,
                             store_message_cb cb, void *arg, struct store_err *err);

/* --- helpers --------------------------------------------------------------------- */

const char *store_rc_name(enum store_rc rc);              /* "UNAVAILABLE", ... */
const char *store_job_status_name(enum store_job_status); /* "queued", ... */
/* "2024-05-01T12:00:00.123Z" into out (>= 25 bytes); "" for 0. */
void store_format_time(int64_t ms, char *out, size_t outlen);

#endif
