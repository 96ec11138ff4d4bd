/*
 * store_types.h — the data the storage interface speaks (types only; the functions
 * are in store.h).
 *
 * Everything is fixed-size and plain so a result can be copied between the storage
 * thread pool and the event loop without ownership questions. Times are milliseconds
 * since the Unix epoch (UTC); 0 means "not set". Identifiers are short printable
 * strings (24 lowercase hex characters for ids the store makes).
 */
#ifndef SVCD_STORE_TYPES_H
#define SVCD_STORE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ID_LEN            40  /* job, event and message ids, NUL included */
#define STORE_SEAT_LEN          32  /* a seat label: 1..31 of [A-Za-z0-9._-] */
#define STORE_USER_LEN          128 /* user id (JWT sub/userId): 1..127 bytes */
#define STORE_ROOM_LEN          128 /* chat room name: 1..127 bytes */
#define STORE_KEY_LEN           256 /* Idempotency-Key: 1..255 printable ASCII */
#define STORE_NAME_LEN          256 /* event name: 1..255 bytes */
#define STORE_JOB_MAX_SEATS     64  /* seats one booking may ask for */
#define STORE_EVENT_MAX_SEATS   10000
#define STORE_JOB_MAX_ATTEMPTS  5             /* leases of one job before it fails for good */
#define STORE_MESSAGE_MAX       (1024 * 1024) /* bytes of one chat message */
#define STORE_MESSAGES_MAX_PAGE 500

/*
 * The outcome class of every call. The caller maps it to HTTP:
 *   STORE_NOT_FOUND   404 (no such event or job; store_job_lease: nothing ready)
 *   STORE_BAD_INPUT   400/422 (unknown seat, duplicates, empty, too many, bad label...)
 *   STORE_CONFLICT    409 (an Idempotency-Key reused for a different booking)
 *   STORE_UNAVAILABLE 503 DB_UNAVAILABLE + Retry-After (server down, unreachable,
 *                     not answering, SQLite file locked beyond the busy timeout or
 *                     not openable): retrying later can succeed
 *   STORE_INTERNAL    500 (anything else; the message says what)
 */
enum store_rc {
    STORE_OK = 0,
    STORE_NOT_FOUND,
    STORE_BAD_INPUT,
    STORE_CONFLICT,
    STORE_UNAVAILABLE,
    STORE_INTERNAL,
};

/* Filled by every call that fails: the class again and a message for people that
 * names the thing, the cause and (where there is one) the fix. Never holds a secret. */
struct store_err {
    enum store_rc rc;
    char msg[512];
};

enum store_job_status {
    STORE_JOB_QUEUED = 0, /* accepted, waiting for a processor (or for a retry) */
    STORE_JOB_PROCESSING, /* a processor holds a live lease on it */
    STORE_JOB_SUCCESS,    /* every seat booked by this job */
    STORE_JOB_FAILED,     /* no seat booked by this job; error_* says why */
};

/* A booking job as the status endpoint shows it, plus the lease fields the
 * processors need. `seats` keeps the order of the request. */
struct store_job {
    char id[STORE_ID_LEN];
    char user[STORE_USER_LEN];
    char event_id[STORE_ID_LEN];
    char seats[STORE_JOB_MAX_SEATS][STORE_SEAT_LEN];
    int nseats;
    enum store_job_status status;
    /* failed only: code is "SEATS_TAKEN" (message "seats already booked: A1, B2")
     * or "ATTEMPTS_EXHAUSTED" (its processors died STORE_JOB_MAX_ATTEMPTS times). */
    char error_code[32];
    char error_message[1024];
    int64_t created_at;  /* ms */
    int64_t finished_at; /* ms; 0 until success/failed */
    /* lease: set by store_job_lease; meaningful while status is processing */
    int attempt;         /* 1 for the first lease, 2 after one expiry, ... */
    int64_t lease_until; /* ms */
    char lease_owner[64];
};

struct store_event {
    char id[STORE_ID_LEN];
    char name[STORE_NAME_LEN];
    int nseats;
    int64_t created_at;
};

/* One chat message; `text` points into the store's memory and is valid only
 * during the callback that receives it. */
struct store_message {
    char id[STORE_ID_LEN]; /* opaque, orderable only through store_messages() */
    char room[STORE_ROOM_LEN];
    char from[STORE_USER_LEN];
    const char *text;
    size_t text_len;
    int64_t ts; /* ms */
};

/* For /api/health/detailed: never a password (URIs go through config_redact_uri). */
struct store_info {
    char driver[16];    /* "sqlite" | "mongodb" */
    char target[1024];  /* sqlite: the file path; mongodb: the URI, password redacted */
    char host[256];     /* sqlite: "local file"; mongodb: first "host:port" of the URI */
    char database[128]; /* mongodb: database name; sqlite: "" */
    int pool_max;       /* connections the store may open */
    int pool_open;      /* connections open now (sqlite; mongodb reports pool_max) */
};

/* Seat map callback: `job_id` is the booking job holding the seat, NULL when the
 * seat is available. Return non-zero to stop the iteration early. */
typedef int (*store_seat_cb)(void *arg, const char *seat, bool booked, const char *job_id);

/* Chat history callback, called oldest first. Return non-zero to stop early. */
typedef int (*store_message_cb)(void *arg, const struct store_message *m);

/* store_open flags */
#define STORE_OPEN_LAZY                                                                            \
    0x1 /* return a handle even if the database cannot be reached                                  \
         * now; calls answer STORE_UNAVAILABLE until it can */
#define STORE_OPEN_DEFER                                                                           \
    0x2 /* with LAZY: no round trip at all in store_open (MongoDB: no ping,                        \
         * no index creation; the first call that reaches the database does                        \
         * them). For a caller on an event-loop thread, which must not wait for                    \
         * server selection. SQLite opens its local file either way. */

#endif
