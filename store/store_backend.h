/*
 * store_backend.h — what a storage backend implements, and the helpers store.c
 * shares with them. Private to store/: callers include store.h only.
 *
 * store.c validates every input once (labels, counts, duplicates, lengths) and
 * makes ids and timestamps, so each backend only speaks to its database and may
 * assume well-formed arguments.
 */
#ifndef SVCD_STORE_BACKEND_H
#define SVCD_STORE_BACKEND_H

#include "store.h"

#include <stdarg.h>

struct store_ops {
    const char *name;
    void (*close)(struct store *s);
    enum store_rc (*ping)(struct store *s, struct store_err *err);
    void (*describe)(struct store *s, struct store_info *out);

    enum store_rc (*event_create)(struct store *s, const char *id, const char *name,
                                  const char *const *seats, int nseats, int64_t now,
                                  struct store_err *err);
    enum store_rc (*event_get)(struct store *s, const char *event_id, struct store_event *out,
                               struct store_err *err);
    enum store_rc (*event_seats)(struct store *s, const char *event_id, store_seat_cb cb, void *arg,
                                 struct store_err *err);

    /* `job` arrives filled (new id, user, event, seats, created_at, status queued). */
    enum store_rc (*job_submit)(struct store *s, struct store_job *job, const char *idem_key,
                                bool *created_new, struct store_err *err);
    enum store_rc (*job_get)(struct store *s, const char *job_id, struct store_job *job,
                             struct store_err *err);
    enum store_rc (*job_lease)(struct store *s, const char *worker_id, uint64_t lease_ms,
                               struct store_job *job, struct store_err *err);
    enum store_rc (*job_renew)(struct store *s, struct store_job *job, uint64_t lease_ms,
                               struct store_err *err);
    enum store_rc (*job_release)(struct store *s, const struct store_job *job,
                                 struct store_err *err);
    enum store_rc (*job_complete)(struct store *s, struct store_job *job, bool *decided_here,
                                  struct store_err *err);

    /* `id` and `ts` arrive made; the backend may replace id (sqlite: its rowid). */
    enum store_rc (*message_add)(struct store *s, const char *room, const char *from,
                                 const char *text, size_t text_len, char *id, int64_t ts,
                                 struct store_err *err);
    enum store_rc (*messages)(struct store *s, const char *room, const char *before, int limit,
                              store_message_cb cb, void *arg, struct store_err *err);
};

/* Every backend's handle starts with this. */
struct store {
    const struct store_ops *ops;
};

struct store *store_sqlite_open(const struct svcd_config *cfg, unsigned flags,
                                struct store_err *err);
struct store *store_mongo_open(const struct svcd_config *cfg, unsigned flags,
                               struct store_err *err);

/* Fill err (if not NULL) and return rc. */
enum store_rc store_fail(struct store_err *err, enum store_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int64_t store_now_ms(void);
void store_new_id(char out[STORE_ID_LEN]); /* 24 random lowercase hex characters */
bool store_seat_label_ok(const char *seat);

/* "seats already booked: A1, B2" (as many as fit, then ", and N more"). */
void store_taken_message(char *out, size_t outlen, const char *const *taken, int ntaken);

/* Test-only fault injection: true when the environment variable SVCD_STORE_FAULT
 * equals `point`. Backends call it at crash points the contract tests exercise
 * (the test then SIGKILLs itself there, like `kill -9` mid-transaction). */
bool store_fault(const char *point);
void store_fault_kill(const char *point); /* raise SIGKILL if store_fault(point) */

#endif
