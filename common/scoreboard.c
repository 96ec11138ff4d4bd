/*
 * scoreboard.c — the shared-memory table of children (see scoreboard.h).
 */
#include "scoreboard.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>

const int64_t scoreboard_lat_bounds_us[SB_LAT_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 10000000, INT64_MAX};

struct scoreboard *scoreboard_create(void)
{
    void *p = mmap(NULL, sizeof(struct scoreboard), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    memset(p, 0, sizeof(struct scoreboard));
    return p;
}

void scoreboard_destroy(struct scoreboard *sb)
{
    if (sb) munmap(sb, sizeof(*sb));
}

int scoreboard_alloc(struct scoreboard *sb, enum sb_role role)
{
    for (int i = 0; i < SB_SLOTS; i++) {
        if (sb->slot[i].role == SB_FREE) {
            memset(&sb->slot[i], 0, sizeof(sb->slot[i]));
            sb->slot[i].role = role;
            sb->slot[i].state = SB_STARTING;
            return i;
        }
    }
    return -1;
}

void scoreboard_release(struct scoreboard *sb, int slot)
{
    if (slot >= 0 && slot < SB_SLOTS) memset(&sb->slot[slot], 0, sizeof(sb->slot[slot]));
}

void scoreboard_retire(struct scoreboard *sb, int slot)
{
    if (slot < 0 || slot >= SB_SLOTS) return;
    struct sb_slot *s = &sb->slot[slot], *r = &sb->retired;
    __atomic_add_fetch(&r->accepted, s->accepted, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->requests, s->requests, __ATOMIC_RELAXED);
    for (int k = 0; k < 6; k++)
        __atomic_add_fetch(&r->status_class[k], s->status_class[k], __ATOMIC_RELAXED);
    for (int k = 0; k < SB_LAT_BUCKETS; k++)
        __atomic_add_fetch(&r->lat_bucket[k], s->lat_bucket[k], __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->lat_sum_us, s->lat_sum_us, __ATOMIC_RELAXED);
    for (int k = 0; k < 3; k++) __atomic_add_fetch(&r->jobs[k], s->jobs[k], __ATOMIC_RELAXED);
    scoreboard_release(sb, slot);
}

void scoreboard_record(struct sb_slot *s, int status, int64_t latency_us)
{
    int cls = status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    __atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->status_class[cls], 1, __ATOMIC_RELAXED);
    if (latency_us < 0) latency_us = 0;
    int b = 0;
    while (b < SB_LAT_BUCKETS - 1 && latency_us > scoreboard_lat_bounds_us[b]) b++;
    __atomic_add_fetch(&s->lat_bucket[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->lat_sum_us, (uint64_t)latency_us, __ATOMIC_RELAXED);
}

const char *scoreboard_role_name(int role)
{
    switch (role) {
    case SB_WORKER:
        return "worker";
    case SB_COORDINATOR:
        return "coordinator";
    case SB_APP:
        return "app";
    default:
        return "child";
    }
}

int64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
