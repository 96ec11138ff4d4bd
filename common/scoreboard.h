/*
 * scoreboard.h — one shared-memory page set, written by each child, read by all.
 *
 * The master maps it (MAP_SHARED|MAP_ANONYMOUS) before forking, so every child
 * inherits the same memory without a file or a socket round-trip. Each process
 * writes only its own slot (heart-beat, connections, request counters, latency
 * histogram); the master writes identity fields (role, pid, restarts, last exit)
 * when it forks or reaps. Readers (/metrics, /api/health/detailed, `svc status`)
 * sum over slots. Fields are plain integers updated with relaxed atomics: a
 * reader may see one counter a request behind another, never a torn value.
 */
#ifndef SVCD_SCOREBOARD_H
#define SVCD_SCOREBOARD_H

#include <stdint.h>
#include <sys/types.h>

#define SB_SLOTS       128
#define SB_LAT_BUCKETS 12 /* upper bounds in scoreboard.c: 1ms .. 10s, +Inf */

enum sb_role { SB_FREE = 0, SB_WORKER = 1, SB_COORDINATOR = 2, SB_APP = 3 };
enum sb_state {
    SB_STARTING = 0, /* forked, not ready yet */
    SB_READY = 1,    /* accepting / serving */
    SB_DRAINING = 2, /* stopped accepting, finishing in-flight work */
    SB_EXITED = 3
};

struct sb_slot {
    /* written by the master */
    int32_t role;       /* enum sb_role */
    int32_t index;      /* worker number 0..n-1 (per generation); app index */
    int32_t generation; /* reload generation the child belongs to */
    int32_t pid;
    int64_t started_ms; /* wall clock, ms since epoch */
    int32_t restarts;   /* of this logical child since the master started */
    char last_exit[96]; /* "killed by signal 9 (SIGKILL)", "exit status 1", "" */
    char name[64];      /* app name for SB_APP, else "" */
    /* written by the child */
    int32_t state;                       /* enum sb_state */
    int64_t heartbeat_ms;                /* monotonic clock, ms; refreshed by the child's loop */
    int64_t connections;                 /* open client connections now */
    uint64_t accepted;                   /* connections accepted, total */
    uint64_t requests;                   /* HTTP requests completed, total */
    uint64_t status_class[6];            /* [1]=1xx .. [5]=5xx */
    uint64_t lat_bucket[SB_LAT_BUCKETS]; /* request latency histogram (non-cumulative) */
    uint64_t lat_sum_us;
    uint64_t jobs[3]; /* booking jobs: [0] accepted (202, new), [1] succeeded, [2] failed */
};

struct scoreboard {
    int64_t master_started_ms;
    int32_t master_pid;
    int32_t generation; /* current generation */
    struct sb_slot slot[SB_SLOTS];
    /* Counters of workers that are gone (old generations), carried forward so the
     * totals in /metrics never go down across reloads. Written by the master. */
    struct sb_slot retired;
};

/* Map a fresh zeroed scoreboard; NULL with errno on failure. */
struct scoreboard *scoreboard_create(void);
void scoreboard_destroy(struct scoreboard *sb);
/* Find a free slot and mark it used by `role`; -1 when all are taken. */
int scoreboard_alloc(struct scoreboard *sb, enum sb_role role);
void scoreboard_release(struct scoreboard *sb, int slot);
/* Add the slot's counters to sb->retired, then release it. */
void scoreboard_retire(struct scoreboard *sb, int slot);
/* Bucket upper bounds in microseconds, SB_LAT_BUCKETS entries, last is INT64_MAX. */
extern const int64_t scoreboard_lat_bounds_us[SB_LAT_BUCKETS];
/* Record one finished request in `s` (the caller's own slot). */
void scoreboard_record(struct sb_slot *s, int status, int64_t latency_us);

/* "worker", "coordinator", "app", or "child". */
const char *scoreboard_role_name(int role);

int64_t now_mono_ms(void); /* CLOCK_MONOTONIC in ms */
int64_t now_wall_ms(void); /* CLOCK_REALTIME in ms */

#endif
