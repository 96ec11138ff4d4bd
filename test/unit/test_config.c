/*
 * test_config.c — common/config.c against SPEC §2: defaults, YAML → .env → environment
 * precedence, every validation rule with its file:line:column, all errors reported in one
 * call, "did you mean", TLS key/cert checks with real OpenSSL-generated files, and no
 * secret ever appearing in a message.
 *
 * Each test gets a fresh mkdtemp directory holding svcd.yaml (and .env, PEM files, ...);
 * environ_override keeps the real environment out of every load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/config.h"

struct fx {
    char dir[64];
    char yaml[128];
    struct svcd_config cfg;
    struct config_errors errs;
};

static char *no_env[] = {NULL};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/svcd-test-config-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->yaml, sizeof f->yaml, "%s/svcd.yaml", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) return -1;
    config_errors_free(&f->errs);
    free(f);
    return 0;
}

static void write_file(struct fx *f, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int load(struct fx *f, const char *yaml, char **env)
{
    config_errors_free(&f->errs);
    write_file(f, "svcd.yaml", yaml);
    return config_load(f->yaml, env ? env : no_env, &f->cfg, &f->errs);
}

static void dump(const struct fx *f)
{
    config_errors_print(&f->errs, stderr);
}

/* The index of the error whose where contains `where` and message contains `text`. */
static int find_error(const struct fx *f, const char *where, const char *text)
{
    for (size_t i = 0; i < f->errs.count; i++)
        if (strstr(f->errs.items[i].where, where) && strstr(f->errs.items[i].message, text))
            return (int)i;
    return -1;
}

static void expect_error(const struct fx *f, const char *where, const char *text)
{
    if (find_error(f, where, text) < 0) {
        fprintf(stderr, "expected an error at '%s' containing '%s'; got:\n", where, text);
        dump(f);
        fail();
    }
}

static void expect_ok(struct fx *f, int rc)
{
    if (rc != 0 || f->errs.count) dump(f);
    assert_int_equal(rc, 0);
    assert_int_equal(f->errs.count, 0);
}

/* ------------------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
    struct svcd_config *c = &((struct fx *)*state)->cfg;
    config_defaults(c);
    assert_int_equal(c->env, ENV_DEVELOPMENT);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0].address, "127.0.0.1:8080");
    assert_string_equal(c->listen[0].host, "127.0.0.1");
    assert_int_equal(c->listen[0].port, 8080);
    assert_false(c->listen[0].tls);
    assert_true(c->workers >= 1 && c->workers <= 256);
    assert_int_equal(c->timeouts.headers_ms, 66000);
    assert_int_equal(c->timeouts.keepalive_ms, 65000);
    assert_int_equal(c->timeouts.request_ms, 60000);
    assert_int_equal(c->timeouts.shutdown_ms, 10000);
    assert_int_equal(c->timeouts.worker_ms, 30000);
    assert_int_equal(c->limits.body, 1048576);
    assert_int_equal(c->limits.header, 16384);
    assert_int_equal(c->limits.ws_message, 1048576);
    assert_int_equal(c->limits.connections, 10000);
    assert_int_equal(c->storage.driver, STORE_SQLITE);
    assert_int_equal(c->storage.connect_attempts, 3);
    assert_int_equal(c->storage.connect_backoff_ms, 2000);
    assert_int_equal(c->storage.connect_max_backoff_ms, 10000);
    assert_int_equal(c->proxy.health_interval_ms, 5000);
    assert_int_equal(c->proxy.health_timeout_ms, 1000);
    assert_int_equal(c->proxy.nroutes, 0);
    assert_int_equal(c->napps, 0);
    assert_int_equal(c->log.format, LOG_FORMAT_TEXT);
    assert_int_equal(c->log.level, LOG_INFO);
    assert_string_equal(c->user, "");
    assert_string_equal(c->auth.jwt_secret, "");
}

/* An empty file is all defaults, with every relative path made absolute beside it. */
static void test_empty_file_resolves_paths(void **state)
{
    struct fx *f = *state;
    char want[256];
    expect_ok(f, load(f, "", NULL));
    assert_string_equal(f->cfg.path, f->yaml);
    assert_string_equal(f->cfg.dir, f->dir);
    snprintf(want, sizeof want, "%s/var/run", f->dir);
    assert_string_equal(f->cfg.run_dir, want);
    snprintf(want, sizeof want, "%s/var/svcd.db", f->dir);
    assert_string_equal(f->cfg.storage.path, want);
    snprintf(want, sizeof want, "%s/var/log/svcd.log", f->dir);
    assert_string_equal(f->cfg.log.file, want);
}

static void test_spec_example(void **state)
{
    struct fx *f = *state;
    char want[256];
    assert_int_equal(mkdir(strcat(strcpy(want, f->dir), "/frontend"), 0755), 0);
    int rc = load(f,
                  "env: development\n"
                  "listen:\n"
                  "  - address: 127.0.0.1:8080\n"
                  "  - \"[::1]:8081\"\n"
                  "  - 8082\n"
                  "workers: 3\n"
                  "user: root\n"
                  "run_dir: ../run/./svcd/\n"
                  "timeouts: { headers: 2m, keepalive: 90s, request: 1.5s, shutdown: 500ms, "
                  "worker: 1h }\n"
                  "limits:   { body: 2MiB, header: 8k, ws_message: 64KiB, connections: 500 }\n"
                  "storage:\n"
                  "  driver: mongodb\n"
                  "  path: /var/lib/svcd/svcd.db\n"
                  "  uri: mongodb://127.0.0.1:27017/svcd\n"
                  "  connect: { attempts: 4, backoff: 1s, max_backoff: 8s }\n"
                  "auth: { jwt_secret: abc, client_url: http://localhost:5173/, admin_token: t }\n"
                  "proxy:\n"
                  "  routes: [ { prefix: /api/legacy/, upstream: http://127.0.0.1:5000 } ]\n"
                  "  health: { interval: 10s, timeout: 2s }\n"
                  "apps:\n"
                  "  - { name: web, cwd: ./frontend, command: \"npm run dev -- --port {port}\", "
                  "port: 5173,\n"
                  "      project: demo, owner: alice, restart: always }\n"
                  "  - { name: api.v2, command: node server.js, port: 5174 }\n"
                  "log: { file: '', format: json, level: debug }\n",
                  NULL);
    expect_ok(f, rc);
    struct svcd_config *c = &f->cfg;
    assert_int_equal(c->nlisten, 3);
    assert_string_equal(c->listen[1].host, "::1");
    assert_int_equal(c->listen[1].port, 8081);
    assert_string_equal(c->listen[2].host, "127.0.0.1");
    assert_int_equal(c->listen[2].port, 8082);
    assert_int_equal(c->workers, 3);
    assert_string_equal(c->user, "root");
    assert_string_equal(c->run_dir, "/tmp/run/svcd");
    assert_int_equal(c->timeouts.headers_ms, 120000);
    assert_int_equal(c->timeouts.request_ms, 1500);
    assert_int_equal(c->timeouts.shutdown_ms, 500);
    assert_int_equal(c->timeouts.worker_ms, 3600000);
    assert_int_equal(c->limits.body, 2097152);
    assert_int_equal(c->limits.header, 8192);
    assert_int_equal(c->limits.ws_message, 65536);
    assert_int_equal(c->limits.connections, 500);
    assert_int_equal(c->storage.driver, STORE_MONGODB);
    assert_string_equal(c->storage.path, "/var/lib/svcd/svcd.db");
    assert_string_equal(c->storage.uri, "mongodb://127.0.0.1:27017/svcd");
    assert_int_equal(c->storage.connect_attempts, 4);
    assert_int_equal(c->storage.connect_max_backoff_ms, 8000);
    assert_string_equal(c->auth.client_url, "http://localhost:5173"); /* trailing / dropped */
    assert_string_equal(c->auth.jwt_secret, "abc");
    assert_string_equal(c->auth.admin_token, "t");
    assert_int_equal(c->proxy.nroutes, 1);
    assert_string_equal(c->proxy.routes[0].prefix, "/api/legacy/");
    assert_string_equal(c->proxy.routes[0].upstream, "http://127.0.0.1:5000");
    assert_int_equal(c->proxy.health_interval_ms, 10000);
    assert_int_equal(c->napps, 2);
    assert_string_equal(c->apps[0].name, "web");
    snprintf(want, sizeof want, "%s/frontend", f->dir);
    assert_string_equal(c->apps[0].cwd, want);
    assert_string_equal(c->apps[0].command, "npm run dev -- --port {port}");
    assert_int_equal(c->apps[0].port, 5173);
    assert_string_equal(c->apps[0].project, "demo");
    assert_string_equal(c->apps[0].owner, "alice");
    assert_int_equal(c->apps[0].restart, APP_RESTART_ALWAYS);
    assert_string_equal(c->apps[1].cwd, f->dir); /* default: the config's directory */
    assert_int_equal(c->apps[1].restart, APP_RESTART_ON_FAILURE);
    assert_string_equal(c->log.file, "");
    assert_int_equal(c->log.format, LOG_FORMAT_JSON);
    assert_int_equal(c->log.level, LOG_DEBUG);
}

static void test_workers_auto(void **state)
{
    struct fx *f = *state;
    expect_ok(f, load(f, "workers: auto\n", NULL));
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(f->cfg.workers, n > 256 ? 256 : n);
}

static void test_port_overrides_first_listener(void **state)
{
    struct fx *f = *state;
    char *env[] = {"PORT=9090", "UNRELATED=1", NULL};
    expect_ok(f, load(f, "listen: [ 0.0.0.0:8080, 127.0.0.1:8443 ]\n", env));
    assert_int_equal(f->cfg.listen[0].port, 9090);
    assert_string_equal(f->cfg.listen[0].host, "0.0.0.0");
    assert_string_equal(f->cfg.listen[0].address, "0.0.0.0:9090");
    assert_int_equal(f->cfg.listen[1].port, 8443);

    expect_ok(f, load(f, "listen: [ \"[::]:8080\" ]\n", env));
    assert_string_equal(f->cfg.listen[0].address, "[::]:9090");

    expect_ok(f, load(f, "", env)); /* the default listener too */
    assert_string_equal(f->cfg.listen[0].address, "127.0.0.1:9090");
}

/* YAML < .env < environment, per name; .env syntax: export, quotes, comments. */
static void test_precedence_yaml_dotenv_env(void **state)
{
    struct fx *f = *state;
    write_file(f, ".env",
               "# a MERN .env\n"
               "\n"
               "export PORT=7000\n"
               "NODE_ENV=\"production\"   # quoted, then a comment\n"
               "JWT_SECRET='0123456789abcdef0123456789abcdef # not a comment'\n"
               "CLIENT_URL = http://dotenv.example:3000 # comment\n"
               "MONGODB_URI=\n"
               "OTHER_APP_SETTING=ignored\n"
               "SVCD_ADMIN_TOKEN=\"tok\\\"en-0123456789abcdef\"\n");
    char *env[] = {"PORT=7001", "CLIENT_URL=https://env.example", NULL};
    const char *yaml = "storage: { uri: mongodb://yaml/db }\n"
                       "auth: { client_url: http://yaml.example, jwt_secret: from-yaml }\n";
    expect_ok(f, load(f, yaml, env));
    assert_int_equal(f->cfg.listen[0].port, 7001);                      /* env wins */
    assert_string_equal(f->cfg.auth.client_url, "https://env.example"); /* env wins */
    assert_int_equal(f->cfg.env, ENV_PRODUCTION);                       /* from .env */
    assert_string_equal(f->cfg.auth.jwt_secret,
                        "0123456789abcdef0123456789abcdef # not a comment"); /* .env over yaml */
    assert_string_equal(f->cfg.storage.uri, "mongodb://yaml/db"); /* empty .env value ignored */
    assert_string_equal(f->cfg.auth.admin_token, "tok\"en-0123456789abcdef");

    /* Without the environment, .env's values stand. */
    expect_ok(f, load(f, yaml, NULL));
    assert_int_equal(f->cfg.listen[0].port, 7000);
    assert_string_equal(f->cfg.auth.client_url, "http://dotenv.example:3000");

    /* A bad value in the environment is reported as such; .env's good one is kept. */
    char *bad[] = {"PORT=http", NULL};
    assert_int_equal(load(f, yaml, bad), -1);
    expect_error(f, "env PORT", "1 to 65535");
    assert_int_equal(f->cfg.listen[0].port, 7000);
}

static void test_env_errors(void **state)
{
    struct fx *f = *state;
    write_file(f, ".env",
               "PORT=8080\n"
               "PORT=99999\n"
               "this is not an assignment\n"
               "JWT_SECRET=\"never closed\n"
               "NODE_ENV=test\n"
               "CLIENT_URL='x' trailing\n");
    assert_int_equal(load(f, "", NULL), -1);
    expect_error(f, ".env:2 PORT", "1 to 65535");
    expect_error(f, ".env:3", "not KEY=VALUE");
    expect_error(f, ".env:4", "closing");
    expect_error(f, ".env:5 NODE_ENV", "development or production");
    expect_error(f, ".env:6", "after its closing quote");
    assert_int_equal(f->errs.count, 5);

    unlink(strcat(strcpy((char[128]){0}, f->dir), "/.env"));
    char *env[] = {"NODE_ENV=staging", "PORT=0", NULL};
    assert_int_equal(load(f, "", env), -1);
    expect_error(f, "env NODE_ENV", "'staging'");
    expect_error(f, "env PORT", "PORT is '0'");
}

struct rule {
    const char *yaml;
    const char *where; /* a substring of the finding's where: ":LINE:COL" or "env NAME" */
    const char *text;  /* a substring of its message */
    const char *env[3];
};

/* One finding per rule, at the right place. */
static const struct rule rules[] = {
    {"workers: 0\n", ":1:10", "between 1 and 256", {NULL}},
    {"workers: 257\n", ":1:10", "between 1 and 256", {NULL}},
    {"workers: many\n", ":1:10", "neither a number nor auto", {NULL}},
    {"workers: [1, 2]\n", ":1:10", "must be a single value, not a list", {NULL}},
    {"env: staging\n", ":1:6", "development or production", {NULL}},
    {"env: prod\n", ":1:6", "use development or production", {NULL}},
    {"listen:\n  - address: 127.0.0.1:0\n", ":2:14", "1 to 65535", {NULL}},
    {"listen:\n  - address: 127.0.0.1:70000\n", ":2:14", "1 to 65535", {NULL}},
    {"listen:\n  - address: example.com:80\n", ":2:14", "IP address", {NULL}},
    {"listen:\n  - address: ::1:80\n", ":2:14", "without brackets", {NULL}},
    {"listen:\n  - address: '[fe80::zz]:80'\n", ":2:14", "invalid IPv6", {NULL}},
    {"listen:\n  - address: 127.0.0.1\n", ":2:14", "no valid port", {NULL}},
    {"listen:\n  - { tls: { cert: a, key: b } }\n", ":2:5", "no address", {NULL}},
    {"listen: 127.0.0.1:8080\n", ":1:9", "must be a list", {NULL}},
    {"listen: []\n", ":1:9", "no entries", {NULL}},
    {"listen:\n  - 127.0.0.1:8080\n  - address: 127.0.0.1:8080\n", ":3:5", "duplicates", {NULL}},
    {"listen: [ '0.0.0.0:9000', '127.0.0.1:9000' ]\n", ":1:27", "overlaps", {NULL}},
    {"listen: [ 127.0.0.1:9000, 127.0.0.1:9001 ]\n",
     ":1:27",
     "(its port comes from env PORT)",
     {"PORT=9001"}},
    {"listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: c.pem }\n", ":3:10", "no key", {NULL}},
    {"listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: nope.pem, key: nope.key }\n",
     ":3:18",
     "No such file or directory",
     {NULL}},
    {"listen:\n  - address: 127.0.0.1:8443\n    tls: { cert: nope.pem, key: nope.key }\n",
     ":3:33",
     "No such file or directory",
     {NULL}},
    {"listen:\n  - address: 127.0.0.1:8443\n    tls: yes\n", ":3:10", "must be a mapping", {NULL}},
    {"timeouts:\n  headers: 10\n  keepalive: 20s\n",
     ":2:3",
     "headers > keepalive > request",
     {NULL}},
    {"timeouts:\n  request: 65s\n", ":2:3", "keepalive 65s and request 65s", {NULL}},
    {"timeouts: { headers: 65s }\n",
     ":1:11",
     "headers is 65s, keepalive 65s and request 60s",
     {NULL}},
    {"timeouts: { keepalive: 60s, headers: 1h }\n",
     ":1:11",
     "headers is 1h, keepalive 60s and request 60s",
     {NULL}},
    {"timeouts: { keepalive: 10m, request: 20m }\n",
     ":1:11",
     "headers is 66s, keepalive 10m and request 20m",
     {NULL}},
    {"timeouts: { request: soon }\n", ":1:22", "not a duration", {NULL}},
    {"timeouts: { shutdown: 0s }\n", ":1:23", "greater than 0", {NULL}},
    {"timeouts:\n  headers:\n", ":2:11", "has no value", {NULL}},
    {"timeouts: 5s\n", ":1:11", "must be a mapping", {NULL}},
    {"limits:\n  body: 1TB\n", ":2:9", "not a size", {NULL}},
    {"limits:\n  header: 0\n", ":2:11", "greater than 0", {NULL}},
    {"limits:\n  connections: -5\n", ":2:16", "between 1 and", {NULL}},
    {"limits:\n  connections: 10k\n", ":2:16", "not a whole number", {NULL}},
    {"storage:\n  driver: postgres\n", ":2:11", "sqlite or mongodb", {NULL}},
    {"storage:\n  driver: mongodb\n", ":2:11", "no URI", {NULL}},
    {"storage:\n  driver: mongodb\n  uri: mysql://h/db\n", ":3:8", "mongodb+srv://", {NULL}},
    {"storage:\n  driver: mongodb\n", "env MONGODB_URI", "must start with", {"MONGODB_URI=h:1"}},
    {"storage:\n  path: ''\n", ":2:9", "storage.path is empty", {NULL}},
    {"storage:\n  connect: { attempts: 0 }\n", ":2:24", "between 1 and 100", {NULL}},
    {"storage:\n  connect: { backoff: 20s, max_backoff: 10s }\n",
     ":2:23",
     "max_backoff (10s)",
     {NULL}},
    {"env: production\n", "env JWT_SECRET", "at least 32", {NULL}},
    {"env: production\n", "env CLIENT_URL", "production needs CLIENT_URL", {NULL}},
    {"env: production\nauth:\n  jwt_secret: short\n  client_url: http://x.example\n",
     ":3:15",
     "JWT_SECRET is 5 characters",
     {NULL}},
    {"auth: { client_url: http://a.b }\n",
     "env JWT_SECRET",
     "at least 32",
     {"NODE_ENV=production"}},
    {"auth:\n  client_url: localhost:5173\n", ":2:15", "http:// or https://", {NULL}},
    {"auth: { client_url: 'http://a.com/path' }\n", ":1:21", "no path", {NULL}},
    {"", "env CLIENT_URL", "http:// or https://", {"CLIENT_URL=ftp://x"}},
    {"auth: { admin_token: short, client_url: http://a.b }\n",
     ":1:22",
     "admin token is 5",
     {"NODE_ENV=production", "JWT_SECRET=0123456789abcdef0123456789abcdef"}},
    {"proxy:\n  routes:\n    - { prefix: api, upstream: http://127.0.0.1:5000 }\n",
     ":3:17",
     "start with '/'",
     {NULL}},
    {"proxy:\n  routes:\n    - { prefix: /a/, upstream: https://x:1 }\n",
     ":3:32",
     "http://HOST:PORT",
     {NULL}},
    {"proxy:\n  routes:\n    - { prefix: /a/, upstream: http://x }\n",
     ":3:32",
     "http://HOST:PORT",
     {NULL}},
    {"proxy:\n  routes:\n    - { prefix: /a/ }\n", ":3:7", "no upstream", {NULL}},
    {"proxy:\n  routes:\n    - { prefix: /a/, upstream: http://h:1 }\n"
     "    - { prefix: /a/, upstream: http://h:2 }\n",
     ":4:17",
     "repeats the prefix",
     {NULL}},
    {"proxy: { health: { interval: 1s, timeout: 2s } }\n",
     ":1:43",
     "shorter than interval",
     {NULL}},
    {"apps:\n  - { command: x, port: 3000 }\n", ":2:5", "no name", {NULL}},
    {"apps:\n  - { name: a, port: 3000 }\n", ":2:5", "no command", {NULL}},
    {"apps:\n  - { name: a, command: x }\n", ":2:5", "no port", {NULL}},
    {"apps:\n  - { name: a, command: x, port: 3000, restart: sometimes }\n",
     ":2:49",
     "always or never",
     {NULL}},
    {"apps:\n  - { name: a, command: x, port: 3000 }\n  - { name: a, command: y, port: 3001 }\n",
     ":3:13",
     "same name",
     {NULL}},
    {"apps:\n  - { name: a, command: x, port: 3000 }\n  - { name: b, command: y, port: 3000 }\n",
     ":3:34",
     "like apps[0]",
     {NULL}},
    {"apps:\n  - { name: a, command: x, port: 0 }\n", ":2:34", "between 1 and 65535", {NULL}},
    {"apps:\n  - { name: a, command: x, port: 8080 }\n", ":2:34", "listen[0] binds", {NULL}},
    {"apps:\n  - { name: a, command: x, port: 3000, cwd: nowhere }\n",
     ":2:45",
     "not a directory",
     {NULL}},
    {"apps:\n  - { name: 'my app', command: x, port: 3000 }\n", ":2:13", "letters, digits", {NULL}},
    {"apps:\n  - just-a-string\n", ":2:5", "must be a mapping", {NULL}},
    {"log: { format: xml }\n", ":1:16", "text or json", {NULL}},
    {"log: { level: warning }\n", ":1:15", "did you mean 'warn'?", {NULL}},
    {"user: no_such_user_svcd_test\n", ":1:7", "does not exist", {NULL}},
    {"run_dir: ''\n", ":1:10", "run_dir is empty", {NULL}},
    {"wrokers: 2\n", ":1:1", "did you mean 'workers'?", {NULL}},
    {"Workers: 2\n", ":1:1", "did you mean 'workers'?", {NULL}},
    {"storage:\n  max-backoff: 1s\n", ":2:3", "unknown key", {NULL}},
    {"storage:\n  connect: { max-backoff: 1s }\n", ":2:14", "did you mean 'max_backoff'?", {NULL}},
    {"storage:\n  flavour: x\n", ":2:3", "use one of: driver, path, uri, connect", {NULL}},
    {"workers: 1\nworkers: 2\n", ":2:1", "repeated (first at line 1)", {NULL}},
    {"- a\n- b\n", ":1:1", "must be a mapping", {NULL}},
    {"workers: 2\n  bad: [\n", ":2:6", "YAML syntax error", {NULL}},
    {"listen:\n\t- 1\n", ":2:1", "tabs are not allowed", {NULL}},
    {"workers: 1\n---\nworkers: 2\n", ":3:1", "second YAML document", {NULL}},
};

static void test_rules(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        char *env[4] = {NULL};
        for (int k = 0; k < 3 && rules[i].env[k]; k++) env[k] = (char *)rules[i].env[k];
        int rc = load(f, rules[i].yaml, env);
        if (rc != -1 || find_error(f, rules[i].where, rules[i].text) < 0) {
            fprintf(stderr, "rule %zu: yaml <<%s>> expected '%s' at '%s', got rc %d:\n", i,
                    rules[i].yaml, rules[i].text, rules[i].where, rc);
            dump(f);
            fail();
        }
        /* where is "FILE:LINE:COL" with the file as given, or an env name */
        const char *w = f->errs.items[find_error(f, rules[i].where, rules[i].text)].where;
        if (rules[i].where[0] == ':') assert_true(strncmp(w, f->yaml, strlen(f->yaml)) == 0);
    }
}

static void test_too_many_entries(void **state)
{
    struct fx *f = *state;
    char yaml[2048] = "listen:\n";
    for (int i = 0; i < CONFIG_MAX_LISTEN + 1; i++)
        snprintf(yaml + strlen(yaml), sizeof yaml - strlen(yaml), "  - 127.0.0.1:%d\n", 9000 + i);
    assert_int_equal(load(f, yaml, NULL), -1);
    expect_error(f, ":18:5", "at most 16");
    assert_int_equal(f->cfg.nlisten, CONFIG_MAX_LISTEN);
}

/* Every finding in one call, and the print format. */
static void test_all_errors_at_once(void **state)
{
    struct fx *f = *state;
    int rc = load(f,
                  "env: production\n"                       /* 1: needs JWT_SECRET, CLIENT_URL */
                  "workers: 0\n"                            /* 2 */
                  "listen:\n"                               /* 3 */
                  "  - address: 127.0.0.1:99999\n"          /* 4 */
                  "timeouts: { headers: 1s, request: x }\n" /* 5 */
                  "limits: { body: huge }\n"                /* 6 */
                  "storage: { driver: mongodb }\n"          /* 7 */
                  "logs: { level: info }\n",                /* 8 */
                  NULL);
    assert_int_equal(rc, -1);
    expect_error(f, ":2:10", "between 1 and 256");
    expect_error(f, ":4:14", "1 to 65535");
    expect_error(f, ":5:35", "not a duration");
    expect_error(f, ":5:11", "headers > keepalive > request");
    expect_error(f, ":6:17", "not a size");
    expect_error(f, ":7:20", "no URI");
    expect_error(f, ":8:1", "did you mean 'log'?");
    expect_error(f, "env JWT_SECRET", "at least 32");
    expect_error(f, "env CLIENT_URL", "CLIENT_URL");
    assert_int_equal(f->errs.count, 9);

    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_non_null(mem);
    config_errors_print(&f->errs, mem);
    fclose(mem);
    char line[256];
    snprintf(line, sizeof line, "svcd: %s:2:10: workers is 0;", f->yaml);
    assert_non_null(strstr(text, line));
    assert_non_null(strstr(text, "svcd: env JWT_SECRET: production needs"));
    assert_non_null(strstr(text, "\nsvcd: 9 configuration error(s)\n"));
    free(text);
}

static void test_missing_file(void **state)
{
    struct fx *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/absent.yaml", f->dir);
    assert_int_equal(config_load(path, no_env, &f->cfg, &f->errs), -1);
    assert_int_equal(f->errs.count, 1);
    assert_string_equal(f->errs.items[0].where, path);
    assert_string_equal(f->errs.items[0].message, "cannot open configuration file: No such file or "
                                                  "directory; create it or pass -c FILE");
    config_errors_free(&f->errs);
    assert_int_equal(config_load(f->dir, no_env, &f->cfg, &f->errs), -1);
    assert_non_null(strstr(f->errs.items[0].message, "directory"));
}

/* Secrets from YAML, .env and the environment, each in a failing setting: none may leak. */
static void test_secrets_never_printed(void **state)
{
    struct fx *f = *state;
    static const char *const secrets[] = {"JwtS3cretInYaml", "Adm1nT0kenZ",  "Pa55w0rdQ",
                                          "UpstreamPw9",     "DotenvJwtXyz", "EnvUriPw7",
                                          "SecretInTypo",    "LongSecretAAA"};
    char longsecret[700];
    memset(longsecret, 'A', sizeof longsecret - 1);
    longsecret[sizeof longsecret - 1] = '\0';
    memcpy(longsecret, "LongSecretAAA", 13);
    write_file(f, ".env", "JWT_SECRET=\"DotenvJwtXyz\n"); /* unterminated: an error */
    char envuri[] = "MONGODB_URI=mongo://admin:EnvUriPw7@db:27017/x?authSource=admin";
    char envtok[720];
    snprintf(envtok, sizeof envtok, "SVCD_ADMIN_TOKEN=%s", longsecret);
    char *env[] = {"NODE_ENV=production", envuri, envtok, NULL};
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "auth:\n"
             "  jwt_secret: JwtS3cretInYaml\n"
             "  jwt_secrett: SecretInTypo\n"
             "  admin_token: [ Adm1nT0kenZ ]\n"
             "storage:\n"
             "  driver: mongodb\n"
             "  uri: mongo://alice:Pa55w0rdQ@db:27017/svcd\n"
             "proxy:\n"
             "  routes: [ { prefix: /x/, upstream: 'https://bob:UpstreamPw9@h:1' } ]\n");
    assert_int_equal(load(f, yaml, env), -1);
    assert_true(f->errs.count >= 6);
    expect_error(f, ":2:15", "JWT_SECRET is 15 characters");
    expect_error(f, "env MONGODB_URI", "mongo://admin:***@db:27017/x");
    expect_error(f, ":9:", "https://bob:***@h:1");
    expect_error(f, "env SVCD_ADMIN_TOKEN", "699 characters");
    expect_error(f, ".env:1", "closing");
    expect_error(f, ":3:3", "did you mean 'jwt_secret'?");

    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    config_errors_print(&f->errs, mem);
    fclose(mem);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        if (strstr(text, secrets[i])) {
            fprintf(stderr, "secret '%s' leaked:\n%s", secrets[i], text);
            fail();
        }
    }
    free(text);
}

static void test_redact_uri(void **state)
{
    static const char *const cases[][2] = {
        {"mongodb://u:p@h:27017/db", "mongodb://u:***@h:27017/db"},
        {"mongodb+srv://user:p%40ss@cluster0.x.net/app?retryWrites=true",
         "mongodb+srv://user:***@cluster0.x.net/app?retryWrites=true"},
        {"mongodb://u:pa@ss/w@h1,h2/db", "mongodb://u:***@h1,h2/db"},
        {"mongodb://h:27017/db", "mongodb://h:27017/db"},
        {"mongodb://user@h/db", "mongodb://user@h/db"},
        {"mongodb://h/db?authMechanismProperties=AWS_SESSION_TOKEN:abc&w=1",
         "mongodb://h/db?authMechanismProperties=***&w=1"},
        {"mongodb://h/db?password=abc", "mongodb://h/db?password=***"},
        {"u:secret@h", "u:***@h"},
        {"", ""},
    };
    char out[128];
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_redact_uri(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
    /* truncation never exposes the password */
    config_redact_uri("mongodb://user:topsecret@host/db", out, 20);
    assert_string_equal(out, "mongodb://user:***@");
    config_redact_uri("mongodb://u:p@h", out, 1);
    assert_string_equal(out, "");
}

/* Real PEM files made by the openssl tool: a good pair, a foreign key, junk, an
 * encrypted key (must not prompt). */
static void test_tls(void **state)
{
    struct fx *f = *state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 "
             "-keyout key.pem -out cert.pem 2>/dev/null && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.pem "
             "2>/dev/null && "
             "openssl pkey -in key.pem -aes256 -passout pass:pw -out enc.pem 2>/dev/null && "
             "echo junk > junk.pem",
             f->dir);
    assert_int_equal(system(cmd), 0);

    expect_ok(f, load(f,
                      "listen:\n"
                      "  - address: 127.0.0.1:8443\n"
                      "    tls: { cert: cert.pem, key: ./key.pem }\n",
                      NULL));
    char want[256];
    assert_true(f->cfg.listen[0].tls);
    snprintf(want, sizeof want, "%s/cert.pem", f->dir);
    assert_string_equal(f->cfg.listen[0].tls_cert, want);
    snprintf(want, sizeof want, "%s/key.pem", f->dir);
    assert_string_equal(f->cfg.listen[0].tls_key, want);

    assert_int_equal(load(f,
                          "listen:\n"
                          "  - address: 127.0.0.1:8443\n"
                          "    tls: { cert: cert.pem, key: other.pem }\n"
                          "  - address: 127.0.0.1:8444\n"
                          "    tls: { cert: junk.pem, key: key.pem }\n"
                          "  - address: 127.0.0.1:8445\n"
                          "    tls: { cert: cert.pem, key: enc.pem }\n"
                          "  - address: 127.0.0.1:8446\n"
                          "    tls: { cert: cert.pem, key: junk.pem }\n",
                          NULL),
                     -1);
    expect_error(f, ":3:33", "does not match the certificate");
    expect_error(f, ":5:18", "not a PEM certificate");
    expect_error(f, ":7:33", "not an unencrypted PEM private key");
    expect_error(f, ":9:33", "not an unencrypted PEM private key");
    assert_int_equal(f->errs.count, 4);

    if (geteuid() != 0) { /* root reads anything: only meaningful for other users */
        snprintf(cmd, sizeof cmd, "%s/key.pem", f->dir);
        chmod(cmd, 0);
        assert_int_equal(
            load(f, "listen: [ { address: 8443, tls: { cert: cert.pem, key: key.pem } } ]\n", NULL),
            -1);
        expect_error(f, ":1:", "Permission denied");
    }
}

/* The shipped samples: development loads clean; production needs only its secrets (and
 * the svcd user, which the Debian package creates). */
static void test_shipped_samples(void **state)
{
    struct fx *f = *state;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    *strrchr(dir, '/') = '\0'; /* test/unit */
    snprintf(path, sizeof path, "%s/../../etc/svcd.yaml", dir);
    expect_ok(f, config_load(path, no_env, &f->cfg, &f->errs));
    assert_int_equal(f->cfg.workers, 2);
    assert_string_equal(f->cfg.auth.client_url, "http://localhost:5173");
    assert_non_null(strstr(f->cfg.run_dir, "/var/run"));
    assert_null(strstr(f->cfg.run_dir, ".."));

    snprintf(path, sizeof path, "%s/../../etc/svcd.production.yaml", dir);
    char *env[] = {"JWT_SECRET=0123456789abcdef0123456789abcdef",
                   "MONGODB_URI=mongodb://svcd:pw@127.0.0.1:27017/svcd",
                   "CLIENT_URL=https://app.example.com", NULL};
    config_load(path, env, &f->cfg, &f->errs);
    for (size_t i = 0; i < f->errs.count; i++)
        assert_non_null(strstr(f->errs.items[i].message, "user 'svcd' does not exist"));
    assert_int_equal(f->cfg.env, ENV_PRODUCTION);
    assert_int_equal(f->cfg.storage.driver, STORE_MONGODB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_resolves_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_example, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_auto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_overrides_first_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence_yaml_dotenv_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_errors_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_never_printed, setup, teardown),
        cmocka_unit_test(test_redact_uri),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_samples, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
