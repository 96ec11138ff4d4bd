/*
 * svc.c — `svc`, the control client: start, stop, reload, restart, status, logs,
 * check — what `pm2` and `nginx -s` do, over svcd's unix control socket.
 *
 * Exit statuses: 0 ok, 1 failure, 3 not running, 4 no permission (LSB), 64 usage,
 * 78 bad config.
 */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_NOT_RUNNING 3
#define EXIT_NOPERM      4 /* LSB: insufficient privilege */
#define EXIT_USAGE       64
#define EXIT_CONFIG      78

static void usage(FILE *fp)
{
    fprintf(fp, "usage: svc [-c FILE] COMMAND\n"
                "  start               start svcd in the background; returns once it is READY\n"
                "  stop                graceful stop (drain), waits until svcd has exited\n"
                "  reload              re-read the configuration; new workers, old ones drained\n"
                "  restart             stop, then start\n"
                "  status [--json]     master and children: pid, state, uptime, restarts, ...\n"
                "  logs [-f] [-n N]    last N lines of the log (default 20), -f to follow\n"
                "  check               validate the configuration (same as svcd -t)\n"
                "FILE defaults to $SVCD_CONFIG or /etc/svcd/svcd.yaml\n");
}

static int run_svcd(const char *cfg_path, const char *flag)
{
    char bin[CONFIG_PATH_MAX];
    ctl_svcd_path(bin, sizeof(bin));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        execlp(bin, "svcd", flag, "-c", cfg_path, (char *)NULL);
        fprintf(stderr, "svc: cannot run %s: %s (set SVCD_BIN)\n", bin, strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int reply_ok(const struct buf *reply, char *msg, size_t len)
{
    json_t *doc = json_loads(reply->data, 0, NULL);
    int ok = doc && json_is_true(json_object_get(doc, "ok"));
    const char *code = json_string_value(json_object_get(doc, "code"));
    if (!ok && code && strcmp(code, "CONFIG") == 0) ok = -1;
    const char *m = json_string_value(json_object_get(doc, ok > 0 ? "message" : "error"));
    snprintf(msg, len, "%s", m ? m : (reply->data ? reply->data : ""));
    json_decref(doc);
    return ok;
}

/* The control socket kept this user out: say so (never "not running"). */
static int denied_exit(void)
{
    const char *why = ctl_denied();
    fprintf(stderr, "svc: %s\n", why ? why : "permission denied on the control socket");
    return EXIT_NOPERM;
}

static int cmd_stop(const struct svcd_config *cfg)
{
    long pid = ctl_running_pid(cfg);
    struct buf reply;
    buf_init(&reply);
    if (pid <= 0 || ctl_request(cfg, "stop", &reply, 5000) < 0) {
        buf_free(&reply);
        if (pid > 0 && ctl_denied()) return denied_exit();
        if (pid > 0) {
            fprintf(stderr,
                    "svc: svcd (pid %ld) does not answer on its control socket; "
                    "sending SIGTERM\n",
                    pid);
            kill((pid_t)pid, SIGTERM);
        } else {
            fprintf(stderr, "svc: svcd is not running (no live pidfile in %s)\n", cfg->run_dir);
            return EXIT_NOT_RUNNING;
        }
    }
    buf_free(&reply);
    /* Wait for the drain: timeouts.shutdown plus a margin for the final kill. */
    long long waited = 0, limit = (long long)cfg->timeouts.shutdown_ms + 5000;
    while (ctl_running_pid(cfg) > 0 && waited < limit) {
        usleep(50 * 1000);
        waited += 50;
    }
    if (ctl_running_pid(cfg) > 0) {
        fprintf(stderr, "svc: svcd (pid %ld) is still running after %lld ms\n", pid, limit);
        return 1;
    }
    printf("svcd stopped\n");
    return 0;
}

static int cmd_reload(const struct svcd_config *cfg)
{
    struct buf reply;
    buf_init(&reply);
    int timeout = (int)(cfg->timeouts.worker_ms + 15000);
    if (ctl_request(cfg, "reload", &reply, timeout) < 0) {
        buf_free(&reply);
        if (ctl_denied()) return denied_exit();
        if (ctl_running_pid(cfg) <= 0) {
            fprintf(stderr, "svc: svcd is not running\n");
            return EXIT_NOT_RUNNING;
        }
        fprintf(stderr, "svc: no answer to reload: %s\n", strerror(errno));
        return 1;
    }
    char msg[8192];
    int ok = reply_ok(&reply, msg, sizeof(msg));
    buf_free(&reply);
    if (ok > 0) {
        printf("reloaded: %s\n", msg);
        return 0;
    }
    fprintf(stderr, "svc: reload rejected:\n%s\n", msg);
    return ok < 0 ? EXIT_CONFIG : 1;
}

static int cmd_status(const struct svcd_config *cfg, int as_json)
{
    struct buf reply;
    buf_init(&reply);
    if (ctl_request(cfg, "status", &reply, 5000) < 0) {
        buf_free(&reply);
        if (ctl_denied()) return denied_exit();
        long pid = ctl_running_pid(cfg);
        if (pid > 0) {
            fprintf(stderr, "svc: svcd (pid %ld) does not answer on its control socket\n", pid);
            return 1;
        }
        if (as_json)
            printf("{\"master\":null,\"children\":[]}\n");
        else
            printf("svcd is not running\n");
        return EXIT_NOT_RUNNING;
    }
    int rc = status_render(reply.data, as_json);
    buf_free(&reply);
    return rc;
}

int main(int argc, char **argv)
{
    const char *cfg_path = getenv("SVCD_CONFIG");
    if (!cfg_path || !*cfg_path) cfg_path = "/etc/svcd/svcd.yaml";
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            cfg_path = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("svc %s\n", SVCD_VERSION);
            return 0;
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    int as_json = 0, follow = 0;
    long lines = 20;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && strcmp(cmd, "status") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "-f") == 0 && strcmp(cmd, "logs") == 0)
            follow = 1;
        else if (strcmp(argv[i], "-n") == 0 && strcmp(cmd, "logs") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            char *end = NULL;
            errno = 0;
            lines = strtol(v, &end, 10);
            if (!*v || *end || errno || lines < 0 || lines > 1000000) {
                fprintf(stderr,
                        "svc: logs -n needs a whole number of lines from 0 to 1000000, not "
                        "'%s'\n",
                        v);
                return EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            cfg_path = argv[++i];
        else {
            fprintf(stderr, "svc: unexpected argument '%s' for '%s'\n", argv[i], cmd);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (strcmp(cmd, "check") == 0) return run_svcd(cfg_path, "-t");
    if (strcmp(cmd, "start") == 0) return run_svcd(cfg_path, "-d");

    static struct svcd_config cfg; /* large; not on the stack */
    struct config_errors errs = {0};
    if (config_load(cfg_path, NULL, &cfg, &errs) < 0) {
        /* The file on disk may be broken while svcd runs on the last good one:
         * `status`, `stop`, `logs` and `reload` still work as long as run_dir is
         * known (reload then shows the master's own report of the errors). */
        int usable = cfg.run_dir[0] && strcmp(cmd, "restart") != 0;
        if (!usable || strcmp(cmd, "reload") != 0) config_errors_print(&errs, stderr);
        config_errors_free(&errs);
        if (!usable) return EXIT_CONFIG;
        if (strcmp(cmd, "reload") != 0)
            fprintf(stderr, "svc: note: %s has errors; using run_dir %s\n", cfg_path, cfg.run_dir);
    }
    config_errors_free(&errs);

    if (strcmp(cmd, "stop") == 0) return cmd_stop(&cfg);
    if (strcmp(cmd, "reload") == 0) return cmd_reload(&cfg);
    if (strcmp(cmd, "status") == 0) return cmd_status(&cfg, as_json);
    if (strcmp(cmd, "logs") == 0) return logs_show(&cfg, lines, follow);
    if (strcmp(cmd, "restart") == 0) {
        int rc = cmd_stop(&cfg);
        if (rc != 0 && rc != EXIT_NOT_RUNNING) return rc;
        return run_svcd(cfg_path, "-d");
    }
    fprintf(stderr, "svc: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
