/*
 * main.c — `svcd`: parse the command line and run the startup phases in order.
 *
 * config -> (daemonize) -> pidfile -> bind -> privileges -> fork children ->
 * every child ready -> READY. Each phase logs its outcome; a failing phase exits
 * 1 with a message naming the thing, the cause and the fix, and leaves nothing
 * behind (no children, no pidfile, no socket file).
 */
#include "master.h"
#include "../common/log.h"
#include "../worker/tls.h"

#include <errno.h>
#include <libgen.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_USAGE     64
#define EXIT_CONFIG    78
#define DEFAULT_CONFIG "/etc/svcd/svcd.yaml"

static void usage(FILE *fp)
{
    fprintf(fp, "usage: svcd [-c FILE] [-t] [-d] [-v] [-h]\n"
                "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
                "  -t       test the configuration and exit (0 OK, 78 errors)\n"
                "  -d       daemonize; return once svcd is READY, or print the startup error\n"
                "  -v, -V   print the version and exit\n"
                "  -h       this help\n"
                "signals: TERM/INT graceful stop, HUP reload, USR1 reopen logs\n");
}

/* ---- signals during start-up ----------------------------------------------------
 * Until master_run() starts its libev signal watchers, the default actions would
 * kill the master: a logrotate SIGUSR1 or a stray SIGHUP during a slow storage
 * phase must not. The handlers only record; the phases poll. */
static volatile sig_atomic_t pending_stop, pending_usr1, pending_hup;

static void on_startup_signal(int sig)
{
    if (sig == SIGUSR1)
        pending_usr1 = 1;
    else if (sig == SIGHUP)
        pending_hup = 1;
    else
        pending_stop = sig;
}

static void startup_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_startup_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: a stop cuts a back-off short */
    sigaction(SIGINT, &sa, NULL);
    sa.sa_flags = SA_RESTART; /* nanosleep() still returns early and re-polls */
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int startup_signals_poll(void)
{
    if (pending_usr1) {
        pending_usr1 = 0;
        if (log_reopen() < 0)
            log_error("SIGUSR1: cannot reopen the log file: %s", strerror(errno));
        else
            log_info("SIGUSR1 during start-up: log file reopened");
    }
    if (pending_hup) {
        pending_hup = 0;
        log_warn("SIGHUP during start-up ignored: the configuration was just read; reload once "
                 "svcd is READY");
    }
    return pending_stop;
}

int startup_signals_take_stop(void)
{
    startup_signals_poll();
    int sig = pending_stop;
    pending_stop = 0;
    return sig;
}

/* mkdir -p for run_dir and the log file's directory. */
static int mkdirs(const char *path, mode_t mode)
{
    char tmp[CONFIG_PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
    return 0;
}

/*
 * Fork; the parent waits on a pipe until the daemon says READY ('R'), then exits
 * 0 — or sees EOF (the daemon failed and already printed why) and exits 1.
 */
static int daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) {
        /* the waiting parent keeps the default actions (killing `svcd -d` works) */
        signal(SIGTERM, SIG_DFL), signal(SIGINT, SIG_DFL), signal(SIGHUP, SIG_DFL);
        signal(SIGUSR1, SIG_DFL);
        close(p[1]);
        char c = 0;
        ssize_t n;
        do {
            n = read(p[0], &c, 1);
        } while (n < 0 && errno == EINTR);
        if (n == 1 && c == 'R') exit(0);
        int st;
        waitpid(pid, &st, 0);
        exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
    }
    close(p[0]);
    setsid();
    umask(022);
    if (chdir("/") < 0) { /* every configured path is absolute already */
    }
    return p[1];
}

int main(int argc, char **argv)
{
    const char *cfg_path = DEFAULT_CONFIG;
    int test_only = 0, daemon_mode = 0, opt;
    while ((opt = getopt(argc, argv, "c:tdvVh")) != -1) {
        switch (opt) {
        case 'c':
            cfg_path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'd':
            daemon_mode = 1;
            break;
        case 'v':
        case 'V':
            printf("svcd %s\n", SVCD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "svcd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }

    startup_signals_install();

    /* phase: config */
    struct svcd_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) return 1;
    struct config_errors errs = {0};
    if (config_load(cfg_path, NULL, cfg, &errs) < 0) {
        config_errors_print(&errs, stderr);
        config_errors_free(&errs);
        free(cfg);
        return EXIT_CONFIG;
    }
    config_errors_free(&errs);
    if (test_only) {
        printf("configuration OK\n");
        free(cfg);
        return 0;
    }

    /* TLS: the loader checked the files and that the key matches the certificate;
     * build the contexts once here too, so what OpenSSL itself refuses (a chain it
     * cannot parse, a key type it will not use) stops start-up with its reason
     * instead of a crash-looping worker. The master keeps them (master.h) for the
     * workers it forks: they are built here, while svcd may still be root. */
    struct tls_server *startup_tls = NULL;
    {
        char terr[512];
        startup_tls = tls_server_load(cfg, terr, sizeof(terr));
        if (!startup_tls && terr[0]) {
            fprintf(stderr, "svcd: %s: %s\n", cfg->path, terr);
            free(cfg);
            return 1;
        }
    }

    if (cfg->log.file[0]) {
        char copy[CONFIG_PATH_MAX];
        snprintf(copy, sizeof(copy), "%s", cfg->log.file);
        mkdirs(dirname(copy), 0755);
    }
    struct privileges_fresh fresh = {0};
    fresh.log_file = cfg->log.file[0] && access(cfg->log.file, F_OK) != 0;
    if (log_open(cfg->log.file, cfg->log.format, cfg->log.level, 1) < 0) {
        fprintf(stderr,
                "svcd: cannot open log file %s: %s; fix log.file or its directory's "
                "permissions\n",
                cfg->log.file, strerror(errno));
        tls_server_free(startup_tls);
        free(cfg);
        return 1;
    }
    log_set_role("master");

    struct master *m = calloc(1, sizeof(*m));
    if (!m) {
        tls_server_free(startup_tls);
        free(cfg);
        return 1;
    }
    m->cfg = cfg;
    m->tls = startup_tls;
    m->ready_fd = -1;
    m->pidfile_fd = -1;
    m->control_fd = -1;
    m->foreground = !daemon_mode;
    m->started_mono = now_mono_ms();
    snprintf(m->cfg_arg, sizeof(m->cfg_arg), "%s", cfg->path);
    snprintf(m->pidfile, sizeof(m->pidfile), "%s/svcd.pid", cfg->run_dir);
    snprintf(m->sockpath, sizeof(m->sockpath), "%s/svcd.sock", cfg->run_dir);

    fresh.run_dir = access(cfg->run_dir, F_OK) != 0;
    if (mkdirs(cfg->run_dir, 0755) < 0) {
        log_error("cannot create run_dir %s: %s; create it or fix its permissions", cfg->run_dir,
                  strerror(errno));
        goto fail;
    }
    /* Refuse a second instance before forking, so `svcd -d` reports it directly. */
    pid_t running = pidfile_read_running(m->pidfile);
    if (running > 0) {
        log_error("already running (pid %d); use `svc stop` or `svc reload`", (int)running);
        goto fail;
    }
    if (daemon_mode) {
        log_set_stderr(2); /* `svcd -d` / `svc start` print only problems */
        m->ready_fd = daemonize();
        if (m->ready_fd < 0) {
            log_error("cannot daemonize: %s", strerror(errno));
            goto fail;
        }
    }
    char err[1024];
    if (pidfile_acquire(m, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto fail;
    }
    log_info("phase config: OK — %s (env %s, %d worker(s), pid %d)", cfg->path,
             cfg->env == ENV_PRODUCTION ? "production" : "development", cfg->workers,
             (int)getpid());

    /* phase: storage — before anything listens, so a dead database is one clear line */
    fresh.db = cfg->storage.driver == STORE_SQLITE && access(cfg->storage.path, F_OK) != 0;
    int src = storage_phase(cfg);
    if (src == -2) goto interrupted;
    if (src < 0) {
        log_error("startup failed: storage unavailable; nothing was started");
        goto fail;
    }

    /* phase: bind — every listener, every failure reported */
    int failed = 0;
    for (int i = 0; i < cfg->nlisten; i++) {
        m->listen_fds[i] = listen_open(&cfg->listen[i], cfg->path, err, sizeof(err));
        if (m->listen_fds[i] < 0) {
            log_error("phase bind: %s", err);
            failed = 1;
        } else {
            log_info("phase bind: listening on %s", cfg->listen[i].address);
        }
    }
    m->nlisten = cfg->nlisten;
    if (failed) {
        for (int i = 0; i < cfg->nlisten; i++)
            if (m->listen_fds[i] >= 0) close(m->listen_fds[i]);
        log_error("startup failed: cannot bind; nothing was started");
        goto fail;
    }
    if (startup_signals_poll()) {
        for (int i = 0; i < cfg->nlisten; i++) close(m->listen_fds[i]);
        goto interrupted;
    }

    /* phase: privileges — started as root with `user:`, the master becomes that user
     * (keeping only CAP_NET_BIND_SERVICE, for listeners a reload adds); see
     * privileges.c. Children drop what is left right after fork. */
    uid_t was = geteuid();
    if (privileges_drop_master(cfg, &fresh, err, sizeof(err)) < 0) {
        for (int i = 0; i < cfg->nlisten; i++) close(m->listen_fds[i]);
        log_error("phase privileges: %s", err);
        log_error("startup failed: cannot drop privileges; nothing was started");
        goto fail;
    }
    if (cfg->user[0] && was == 0 && geteuid() != 0)
        log_info("phase privileges: running as user '%s' (uid %d), keeping only "
                 "CAP_NET_BIND_SERVICE; children keep nothing",
                 cfg->user, (int)geteuid());
    else if (cfg->user[0] && was != 0)
        log_info("phase privileges: not started as root; running as uid %d ('%s' ignored)",
                 (int)geteuid(), cfg->user);
    else
        log_info("phase privileges: no user configured; running as uid %d", (int)geteuid());

    m->sb = scoreboard_create();
    if (!m->sb) {
        log_error("cannot map the scoreboard: %s", strerror(errno));
        goto fail;
    }
    m->sb->master_pid = (int32_t)getpid();
    m->sb->master_started_ms = now_wall_ms();

    int rc = master_run(m);

    for (int i = 0; i < m->nlisten; i++) close(m->listen_fds[i]);
    for (int i = 0; i < m->nold_listen; i++) close(m->old_listen_fds[i]);
    pidfile_release(m);
    log_info("stopped (exit %d)", rc);
    if (m->ready_fd >= 0) close(m->ready_fd);
    scoreboard_destroy(m->sb);
    tls_server_free(m->tls);
    free(m->cfg);
    free(m);
    log_close();
    return rc;

interrupted:
    log_warn("start-up interrupted by %s; nothing was started",
             pending_stop == SIGINT ? "SIGINT" : "SIGTERM");
    pidfile_release(m);
    if (m->ready_fd >= 0) close(m->ready_fd);
    tls_server_free(m->tls);
    free(m->cfg);
    free(m);
    log_close();
    return 0;

fail:
    pidfile_release(m);
    if (m->ready_fd >= 0) close(m->ready_fd);
    tls_server_free(m->tls);
    free(m->cfg);
    free(m);
    log_close();
    return 1;
}
