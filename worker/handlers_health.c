/*
 * handlers_health.c — liveness, readiness and metrics endpoints (SPEC §4).
 *
 * Everything here is read from the shared scoreboard (every child's counters)
 * and this process's own /proc entries, so answering never blocks the loop and
 * never asks another process anything: a health check must keep working when
 * the rest of the system is in trouble.
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/config.h"
#include "../common/scoreboard.h"
#include "handlers.h"
#include "handlers_preview.h"
#include "store_pool.h"
#include "response.h"
#include "worker_ctx.h"

/* ---- shared helpers -------------------------------------------------------- */

static double master_uptime_s(const struct worker_ctx *w)
{
    int64_t start = w->sb->master_started_ms ? w->sb->master_started_ms : w->self->started_ms;
    int64_t d = now_wall_ms() - start;
    return d > 0 ? (double)d / 1000.0 : 0.0;
}

static void timestamp(char *out, size_t len)
{
    resp_iso8601(now_wall_ms(), out, len);
}

static const char *state_name(int state)
{
    switch (state) {
    case SB_STARTING:
        return "starting";
    case SB_READY:
        return "ready";
    case SB_DRAINING:
        return "draining";
    case SB_EXITED:
        return "exited";
    default:
        return "unknown";
    }
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/*
 * The database state as health endpoints report it: the storage pool's last
 * background check (never a query on the loop).
 */
struct db_health {
    bool connected, responsive;
    const char *state; /* "connected", "disconnected", "connecting", "not_configured" */
    double check_ms;   /* how long the last check took */
    struct store_info info;
};

static void health_db_probe(const struct worker_ctx *w, struct db_health *out)
{
    struct db_state st;
    store_pool_db_state(w->pool, &st);
    out->connected = st.connected;
    out->responsive = st.connected;
    out->state = st.state;
    out->check_ms = st.check_ms;
    out->info = st.info;
}

static bool db_is_healthy(const struct db_health *db)
{
    return db->connected;
}

/* ---- GET /health ----------------------------------------------------------- */

void handle_health(struct http_request *req)
{
    char ts[40];
    timestamp(ts, sizeof(ts));
    buf_printf(resp_body(req),
               "{\"status\":\"OK\",\"service\":\"alive\",\"uptime\":%.3f,\"timestamp\":\"%s\"}",
               master_uptime_s(req->w), ts);
    resp_send(req, 200, CT_JSON);
}

/* ---- GET /api/health ------------------------------------------------------- */

void handle_api_health(struct http_request *req)
{
    struct db_health db;
    health_db_probe(req->w, &db);
    bool ok = db_is_healthy(&db);
    char ts[40];
    timestamp(ts, sizeof(ts));
    struct buf *b = resp_body(req);
    buf_printf(b, "{\"status\":\"%s\",\"database\":{\"connected\":%s,\"responsive\":%s,\"state\":",
               ok ? "healthy" : "unhealthy", db.connected ? "true" : "false",
               db.responsive ? "true" : "false");
    buf_json_str(b, db.state);
    buf_printf(b, "},\"uptime\":%.3f,\"timestamp\":\"%s\"}", master_uptime_s(req->w), ts);
    resp_send(req, ok ? 200 : 503, CT_JSON);
}

/* ---- GET /api/health/detailed (admin) -------------------------------------- */

static double rss_mb(void)
{
    char text[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0.0;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0) return 0.0;
    text[n] = '\0';
    unsigned long size = 0, resident = 0;
    if (sscanf(text, "%lu %lu", &size, &resident) != 2) return 0.0;
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static double heap_mb(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (double)(mi.uordblks + mi.hblkhd) / (1024.0 * 1024.0);
}

void handle_api_health_detailed(struct http_request *req)
{
    const struct worker_ctx *w = req->w;
    const struct svcd_config *cfg = w->cfg;
    const struct scoreboard *sb = w->sb;
    struct db_health db;
    health_db_probe(w, &db);
    bool ok = db_is_healthy(&db);
    char ts[40];
    timestamp(ts, sizeof(ts));
    int64_t now = now_wall_ms();

    struct buf *b = resp_body(req);
    buf_printf(b, "{\"status\":\"%s\",\"database\":{\"driver\":\"%s\",\"host\":",
               ok ? "healthy" : "unhealthy",
               cfg->storage.driver == STORE_MONGODB ? "mongodb" : "sqlite");
    buf_json_str(b, db.info.host[0] ? db.info.host : "-");
    buf_puts(b, ",\"target\":");
    buf_json_str(b, db.info.target); /* passwords redacted by the store */
    buf_puts(b, ",\"name\":");
    buf_json_str(b, db.info.database);
    buf_printf(b, ",\"pool\":{\"max\":%d,\"open\":%d}", db.info.pool_max, db.info.pool_open);
    buf_printf(b, ",\"connected\":%s,\"responsive\":%s,\"state\":", db.connected ? "true" : "false",
               db.responsive ? "true" : "false");
    buf_json_str(b, db.state);
    buf_printf(b, ",\"checkTime\":%.3f,\"jobsProcessed\":%llu},", db.check_ms,
               store_pool_jobs_done(w->pool));
    buf_printf(b, "\"environment\":\"%s\",",
               cfg->env == ENV_PRODUCTION ? "production" : "development");
    buf_printf(b,
               "\"server\":{\"pid\":%d,\"masterPid\":%d,\"worker\":%d,\"generation\":%d,"
               "\"uptime\":%.3f,\"memory\":{\"rssMB\":%.2f,\"heapMB\":%.2f}},",
               (int)getpid(), (int)sb->master_pid, w->index, w->generation, master_uptime_s(w),
               rss_mb(), heap_mb());
    buf_puts(b, "\"children\":[");
    int first = 1;
    for (int i = 0; i < SB_SLOTS; i++) {
        const struct sb_slot *s = &sb->slot[i];
        int role = LOAD(s->role);
        if (role == SB_FREE) continue;
        int64_t started = LOAD(s->started_ms);
        double up = started > 0 && now > started ? (double)(now - started) / 1000.0 : 0.0;
        char last_exit[sizeof(s->last_exit)];
        memcpy(last_exit, s->last_exit, sizeof(last_exit));
        last_exit[sizeof(last_exit) - 1] = '\0';
        buf_printf(b,
                   "%s{\"role\":\"%s\",\"index\":%d,\"generation\":%d,\"pid\":%d,\"state\":\"%s\","
                   "\"uptime\":%.3f,\"restarts\":%d,\"lastExit\":",
                   first ? "" : ",", scoreboard_role_name(role), (int)LOAD(s->index),
                   (int)LOAD(s->generation), (int)LOAD(s->pid), state_name(LOAD(s->state)), up,
                   (int)LOAD(s->restarts));
        buf_json_str(b, last_exit);
        if (role == SB_APP) {
            char name[sizeof(s->name)];
            memcpy(name, s->name, sizeof(name));
            name[sizeof(name) - 1] = '\0';
            buf_puts(b, ",\"name\":");
            buf_json_str(b, name);
        }
        buf_printf(b, ",\"connections\":%lld,\"requests\":%llu}", (long long)LOAD(s->connections),
                   (unsigned long long)LOAD(s->requests));
        first = 0;
    }
    buf_printf(b, "],\"timestamp\":\"%s\"}", ts);
    resp_send(req, 200, CT_JSON);
}

/* ---- GET /metrics (admin) -------------------------------------------------- */

static void metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void handle_metrics(struct http_request *req)
{
    const struct scoreboard *sb = req->w->sb;
    struct buf *b = resp_body(req);
    uint64_t classes[6] = {0}, buckets[SB_LAT_BUCKETS] = {0}, lat_sum = 0, accepted = 0;

    for (int i = 0; i <= SB_SLOTS; i++) {
        /* every live worker slot, then the totals of workers that are gone */
        const struct sb_slot *s = i < SB_SLOTS ? &sb->slot[i] : &sb->retired;
        if (i < SB_SLOTS && LOAD(s->role) != SB_WORKER) continue;
        for (int k = 1; k <= 5; k++) classes[k] += LOAD(s->status_class[k]);
        for (int k = 0; k < SB_LAT_BUCKETS; k++) buckets[k] += LOAD(s->lat_bucket[k]);
        lat_sum += LOAD(s->lat_sum_us);
        accepted += LOAD(s->accepted);
    }

    metric_head(b, "svcd_http_requests_total", "counter",
                "HTTP requests answered by the workers, by status class.");
    for (int k = 1; k <= 5; k++)
        buf_printf(b, "svcd_http_requests_total{code=\"%dxx\"} %llu\n", k,
                   (unsigned long long)classes[k]);

    metric_head(b, "svcd_http_request_duration_seconds", "histogram",
                "Time from the first byte of a request to its response being queued.");
    uint64_t cum = 0;
    for (int k = 0; k < SB_LAT_BUCKETS; k++) {
        cum += buckets[k];
        if (scoreboard_lat_bounds_us[k] == INT64_MAX)
            buf_printf(b, "svcd_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                       (unsigned long long)cum);
        else
            buf_printf(b, "svcd_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       (double)scoreboard_lat_bounds_us[k] / 1e6, (unsigned long long)cum);
    }
    buf_printf(b, "svcd_http_request_duration_seconds_sum %.6f\n", (double)lat_sum / 1e6);
    buf_printf(b, "svcd_http_request_duration_seconds_count %llu\n", (unsigned long long)cum);

    metric_head(b, "svcd_connections", "gauge", "Open client connections, per worker.");
    for (int i = 0; i <= SB_SLOTS; i++) {
        /* every live worker slot, then the totals of workers that are gone */
        const struct sb_slot *s = i < SB_SLOTS ? &sb->slot[i] : &sb->retired;
        if (i < SB_SLOTS && LOAD(s->role) != SB_WORKER) continue;
        buf_printf(b, "svcd_connections{worker=\"%d\",generation=\"%d\"} %lld\n",
                   (int)LOAD(s->index), (int)LOAD(s->generation), (long long)LOAD(s->connections));
    }

    metric_head(b, "svcd_connections_accepted_total", "counter",
                "Client connections accepted by the live workers.");
    buf_printf(b, "svcd_connections_accepted_total %llu\n", (unsigned long long)accepted);

    metric_head(b, "svcd_child_restarts_total", "counter",
                "Restarts of each supervised child since the master started.");
    for (int i = 0; i < SB_SLOTS; i++) {
        const struct sb_slot *s = &sb->slot[i];
        int role = LOAD(s->role);
        if (role == SB_FREE) continue;
        buf_printf(b, "svcd_child_restarts_total{role=\"%s\",index=\"%d\",generation=\"%d\"} %d\n",
                   scoreboard_role_name(role), (int)LOAD(s->index), (int)LOAD(s->generation),
                   (int)LOAD(s->restarts));
    }

    metric_head(b, "svcd_child_up", "gauge",
                "1 while the child is running and serving (ready or draining).");
    for (int i = 0; i < SB_SLOTS; i++) {
        const struct sb_slot *s = &sb->slot[i];
        int role = LOAD(s->role);
        if (role == SB_FREE) continue;
        int state = LOAD(s->state);
        int pid = (int)LOAD(s->pid);
        buf_printf(b, "svcd_child_up{role=\"%s\",index=\"%d\",generation=\"%d\",pid=\"%d\"} %d\n",
                   scoreboard_role_name(role), (int)LOAD(s->index), (int)LOAD(s->generation), pid,
                   pid > 0 && (state == SB_READY || state == SB_DRAINING) ? 1 : 0);
    }

    uint64_t jobs[3] = {0};
    for (int i = 0; i <= SB_SLOTS; i++) {
        const struct sb_slot *s = i < SB_SLOTS ? &sb->slot[i] : &sb->retired;
        if (i < SB_SLOTS && LOAD(s->role) != SB_WORKER) continue;
        for (int k = 0; k < 3; k++) jobs[k] += LOAD(s->jobs[k]);
    }
    metric_head(b, "svcd_booking_jobs_total", "counter",
                "Booking jobs accepted (202) and decided by this host's job processors.");
    static const char *const job_ev[3] = {"accepted", "success", "failed"};
    for (int k = 0; k < 3; k++)
        buf_printf(b, "svcd_booking_jobs_total{event=\"%s\"} %llu\n", job_ev[k],
                   (unsigned long long)jobs[k]);
    struct db_state dbs;
    store_pool_db_state(req->w->pool, &dbs);
    metric_head(b, "svcd_database_up", "gauge",
                "1 while the answering worker's last database check succeeded.");
    buf_printf(b, "svcd_database_up{driver=\"%s\"} %d\n",
               req->w->cfg->storage.driver == STORE_MONGODB ? "mongodb" : "sqlite",
               dbs.configured && dbs.connected ? 1 : 0);

    handlers_preview_metrics(req->w, b); /* preview up/down, proxy counters (issue 4) */

    metric_head(b, "svcd_uptime_seconds", "gauge", "Seconds since the master started.");
    buf_printf(b, "svcd_uptime_seconds %.3f\n", master_uptime_s(req->w));
    resp_send(req, 200, CT_PROMETHEUS);
}
