/*
 * config.h — the one configuration model every svcd process shares.
 *
 * The master loads it from YAML, then a `.env` file beside the YAML, then the
 * process environment (later wins), validates every rule of SPEC §2 at once and
 * hands the frozen result to the children it forks. Keeping the parsed struct
 * plain (no pointers into libyaml) lets children use it after fork without any
 * parser state, and lets a reload build a second one side by side.
 */
#ifndef SVCD_CONFIG_H
#define SVCD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_ROUTES 64
#define CONFIG_MAX_APPS   32
#define CONFIG_PATH_MAX   1024

enum config_env { ENV_DEVELOPMENT = 0, ENV_PRODUCTION = 1 };
enum store_driver { STORE_SQLITE = 0, STORE_MONGODB = 1 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };
enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };
enum app_restart { APP_RESTART_ON_FAILURE = 0, APP_RESTART_ALWAYS = 1, APP_RESTART_NEVER = 2 };

struct config_listen {
    char address[256]; /* as written, e.g. "127.0.0.1:8080" or "[::1]:8080" */
    char host[256];    /* "127.0.0.1", "0.0.0.0", "::1" (no brackets) */
    int port;          /* 1..65535 */
    bool tls;
    char tls_cert[CONFIG_PATH_MAX]; /* absolute after load */
    char tls_key[CONFIG_PATH_MAX];
};

struct config_route {
    char prefix[256];   /* "/api/legacy/" */
    char upstream[512]; /* "http://127.0.0.1:5000" */
};

struct config_app {
    char name[64];
    char cwd[CONFIG_PATH_MAX]; /* absolute after load */
    char command[1024];        /* "{port}" not yet substituted */
    int port;
    char project[128];
    char owner[128];
    enum app_restart restart;
};

struct svcd_config {
    char path[CONFIG_PATH_MAX]; /* absolute path of the YAML file */
    char dir[CONFIG_PATH_MAX];  /* its directory: base of every relative path */

    enum config_env env;
    struct config_listen listen[CONFIG_MAX_LISTEN];
    int nlisten;
    int workers;                   /* resolved: "auto" -> number of online CPUs */
    char user[64];                 /* empty: no privilege drop */
    char run_dir[CONFIG_PATH_MAX]; /* absolute; pidfile svcd.pid and socket svcd.sock live here */

    struct {
        uint64_t headers_ms, keepalive_ms, request_ms, shutdown_ms, worker_ms;
    } timeouts;
    struct {
        uint64_t body, header, ws_message; /* bytes */
        uint64_t connections;              /* per worker */
    } limits;
    struct {
        enum store_driver driver;
        char path[CONFIG_PATH_MAX]; /* sqlite file, absolute */
        char uri[1024];             /* mongodb URI (secret: may hold a password) */
        int connect_attempts;
        uint64_t connect_backoff_ms, connect_max_backoff_ms;
    } storage;
    struct {
        char jwt_secret[512]; /* secret */
        char client_url[512];
        char admin_token[512]; /* secret; empty: loopback-only admin */
    } auth;
    struct {
        struct config_route routes[CONFIG_MAX_ROUTES];
        int nroutes;
        uint64_t health_interval_ms, health_timeout_ms;
    } proxy;
    struct config_app apps[CONFIG_MAX_APPS];
    int napps;
    struct {
        char file[CONFIG_PATH_MAX]; /* absolute; empty: stderr only */
        enum log_format format;
        enum log_level level;
    } log;
};

/* One validation finding: where it is (file:line:column, or the environment
 * variable's name), what is wrong and how to fix it. */
struct config_error {
    char where[CONFIG_PATH_MAX + 64]; /* "etc/svcd.yaml:12:7" or "env JWT_SECRET" */
    char message[512];                /* "what is wrong; how to fix it" */
};

struct config_errors {
    struct config_error *items;
    size_t count, cap;
};

/* Fill `out` with every default of SPEC §2 (development, 127.0.0.1:8080, ...). */
void config_defaults(struct svcd_config *out);

/*
 * Load `path` (YAML), then `.env` beside it, then `environ`, into `out`, and
 * validate. Returns 0 when valid; otherwise -1 with every finding appended to
 * `errs` (the struct is still filled as far as possible). `environ_override`
 * may be NULL (use the real environment) — tests pass their own array of
 * "KEY=VALUE" strings terminated by NULL.
 */
int config_load(const char *path, char *const *environ_override, struct svcd_config *out,
                struct config_errors *errs);

/* Print the findings, one per line, "svcd: <where>: <message>", to `fp`. */
void config_errors_print(const struct config_errors *errs, FILE *fp);
void config_errors_free(struct config_errors *errs);

/* Never print a secret: copy `uri` to `out` with any password replaced by "***". */
void config_redact_uri(const char *uri, char *out, size_t outlen);

#endif
