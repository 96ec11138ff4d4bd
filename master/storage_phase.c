/*
 * storage_phase.c — the start-up "storage connect" phase (SPEC §3, seed 002).
 *
 * The master proves the database answers before it forks anything, so a wrong
 * MONGODB_URI is one clear line at start, not a stream of ECONNREFUSED from every
 * worker later. It tries `storage.connect.attempts` times with exponential
 * back-off. Production refuses to start without its database; development warns,
 * starts degraded and lets the workers reconnect in the background. The master
 * closes its handle before forking: it holds no database connection afterwards.
 */
#include "master.h"
#include "../common/log.h"
#include "../store/store.h"

#include <stdio.h>
#include <time.h>

/* Sleep, serving start-up signals; 1 when a stop signal cut it short. */
static int sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        if (startup_signals_poll()) return 1;
    return startup_signals_poll() ? 1 : 0;
}

int storage_phase(const struct svcd_config *cfg)
{
    uint64_t backoff = cfg->storage.connect_backoff_ms;
    struct store_err err = {0};
    for (int attempt = 1; attempt <= cfg->storage.connect_attempts; attempt++) {
        char status[96];
        snprintf(status, sizeof(status), "connecting to the database (attempt %d of %d)", attempt,
                 cfg->storage.connect_attempts);
        notify_status(status);
        if (startup_signals_poll()) return -2;
        struct store *s = store_open(cfg, 0, &err);
        if (s) {
            double ms = 0;
            enum store_rc rc = store_ping(s, &ms, &err);
            struct store_info info;
            store_describe(s, &info);
            store_close(s);
            if (rc == STORE_OK) {
                log_info("phase storage: %s at %s answered in %.1f ms", info.driver, info.host, ms);
                return 0;
            }
        }
        if (attempt < cfg->storage.connect_attempts) {
            log_warn("phase storage: attempt %d of %d failed: %s; retrying in %llu ms", attempt,
                     cfg->storage.connect_attempts, err.msg, (unsigned long long)backoff);
            if (sleep_ms(backoff)) return -2;
            backoff *= 2;
            if (backoff > cfg->storage.connect_max_backoff_ms)
                backoff = cfg->storage.connect_max_backoff_ms;
        }
    }
    if (cfg->env == ENV_PRODUCTION) {
        log_error("phase storage: %s (after %d attempts); production does not start without its "
                  "database — check storage.uri / MONGODB_URI and that the server runs",
                  err.msg, cfg->storage.connect_attempts);
        return -1;
    }
    log_warn("phase storage: %s (after %d attempts); development: starting DEGRADED — workers "
             "reconnect in the background, /api/health reports the database state and "
             "storage-backed endpoints answer 503 DB_UNAVAILABLE until it is back",
             err.msg, cfg->storage.connect_attempts);
    return 0;
}
