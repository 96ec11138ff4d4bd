/*
 * master.c — the supervisor's event loop: signals, phases, reload, drain.
 *
 * Everything the master does over time happens in one 50 ms tick or in a signal
 * or child-exit callback on libev's default loop. State moves
 * STARTING -> RUNNING <-> RELOADING -> STOPPING; each transition is logged and
 * told to systemd. A reload forks a new generation of workers and drains the old
 * one only once every new worker reports ready, so requests always find an
 * accepting worker on the shared listening sockets (nginx's model).
 */
#include "master.h"
#include "../common/log.h"
#include "../worker/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TICK_SECONDS 0.05

static void announce_ready(struct master *m, const char *what)
{
    char status[256];
    snprintf(status, sizeof(status), "%s: %d worker(s), generation %d", what,
             children_count(m, SB_WORKER, m->generation, 1), m->generation);
    notify_ready(status);
    if (m->ready_fd >= 0) {
        ssize_t r = write(m->ready_fd, "R", 1);
        (void)r;
        close(m->ready_fd);
        m->ready_fd = -1;
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            if (null > 2) close(null);
        }
        log_set_stderr(0);
    }
}

static void finish_reload(struct master *m, int ok, const char *text)
{
    control_reload_done(m, ok, text);
    if (ok) {
        log_info("reload: %s", text);
    } else {
        log_error("reload failed: %s", text);
    }
}

/* Close listening sockets of an old configuration once no old worker needs them. */
static void close_old_listeners(struct master *m)
{
    if (!m->nold_listen) return;
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (c->used && c->role == SB_WORKER && c->generation != m->generation && c->pid > 0) return;
    }
    for (int i = 0; i < m->nold_listen; i++) close(m->old_listen_fds[i]);
    m->nold_listen = 0;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents, (void)w;
    struct master *m = ev_userdata(loop);
    int64_t now = now_mono_ms();
    children_tick(m);
    apps_tick(m);
    close_old_listeners(m);

    switch (m->state) {
    case M_STARTING:
        if (children_all_ready(m, m->generation)) {
            m->state = M_RUNNING;
            log_info("phase ready: READY — %d worker(s) and the coordinator serve; pid %d",
                     children_count(m, SB_WORKER, m->generation, 1), (int)getpid());
            announce_ready(m, "serving");
            apps_start(m); /* managed apps start once the workers serve */
        } else if (now > m->phase_deadline) {
            log_error("startup failed: children did not report ready within %llu ms "
                      "(timeouts.worker); see the errors above",
                      (unsigned long long)m->cfg->timeouts.worker_ms);
            m->exit_code = 1;
            master_request_stop(m, "startup failure");
        }
        break;
    case M_RELOADING:
        if (children_all_ready(m, m->generation)) {
            for (int g = 0; g < m->generation; g++) children_signal_generation(m, g, SIGTERM, 1);
            m->state = M_RUNNING;
            free(m->prev_cfg);
            m->prev_cfg = NULL;
            tls_server_free(m->prev_tls);
            m->prev_tls = NULL;
            char text[128];
            snprintf(text, sizeof(text), "generation %d serving; older workers draining",
                     m->generation);
            announce_ready(m, "reloaded");
            apps_reload(m);
            finish_reload(m, 1, text);
        } else if (now > m->phase_deadline) {
            /* The new generation cannot serve: keep the old one. */
            children_signal_generation(m, m->generation, SIGKILL, 1);
            m->generation--;
            m->sb->generation = m->generation;
            free(m->cfg);
            m->cfg = m->prev_cfg;
            m->prev_cfg = NULL;
            tls_server_free(m->tls);
            m->tls = m->prev_tls;
            m->prev_tls = NULL;
            log_open(m->cfg->log.file, m->cfg->log.format, m->cfg->log.level,
                     m->ready_fd >= 0 || m->foreground);
            m->state = M_RUNNING;
            announce_ready(m, "reload rolled back");
            finish_reload(m, 0,
                          "new workers did not become ready in time; the previous "
                          "generation keeps serving");
        }
        break;
    case M_STOPPING:
        if (children_count(m, SB_WORKER, -1, 1) == 0 &&
            children_count(m, SB_COORDINATOR, -1, 1) > 0)
            children_signal_role(m, SB_COORDINATOR, SIGTERM, 1);
        if (children_count(m, SB_WORKER, -1, 1) == 0)
            apps_stop(m, "svcd is shutting down"); /* after the workers: no request in flight */
        if (children_count(m, 0, -1, 1) == 0 && apps_running(m) == 0) {
            ev_break(loop, EVBREAK_ALL);
        } else if (m->stop_deadline && now > m->stop_deadline) {
            struct buf killed;
            buf_init(&killed);
            children_kill_all(m, &killed);
            apps_kill_all(m, &killed);
            log_error("shutdown: timeouts.shutdown (%llu ms) exceeded; killed %s",
                      (unsigned long long)m->cfg->timeouts.shutdown_ms,
                      killed.data ? killed.data : "nothing");
            buf_free(&killed);
            m->exit_code = 1;
            m->stop_deadline = 0; /* the SIGKILLed children are reaped next */
        }
        break;
    case M_RUNNING:
        break;
    }
}

void master_request_stop(struct master *m, const char *why)
{
    if (m->state == M_STOPPING) {
        log_info("shutdown already in progress (%s ignored)", why);
        return;
    }
    if (m->state == M_RELOADING) finish_reload(m, 0, "svcd is shutting down");
    m->state = M_STOPPING;
    notify_stopping();
    log_info("shutdown (%s): stop accepting, draining for up to %llu ms", why,
             (unsigned long long)m->cfg->timeouts.shutdown_ms);
    m->stop_deadline = now_mono_ms() + (int64_t)m->cfg->timeouts.shutdown_ms;
    children_signal_role(m, SB_WORKER, SIGTERM, 1);
}

/* Same host:port as an already open listener? Then reuse its socket. */
static int find_listener(struct master *m, const struct config_listen *l)
{
    for (int i = 0; i < m->cfg->nlisten; i++)
        if (m->cfg->listen[i].port == l->port && strcmp(m->cfg->listen[i].host, l->host) == 0)
            return i;
    return -1;
}

int master_request_reload(struct master *m, struct buf *errors)
{
    if (m->state != M_RUNNING) {
        buf_puts(errors, m->state == M_RELOADING  ? "a reload is already in progress"
                         : m->state == M_STOPPING ? "svcd is shutting down"
                                                  : "svcd is still starting");
        log_warn("reload refused: %s", errors->data);
        return -1;
    }
    notify_reloading();
    log_info("reload: re-reading %s", m->cfg->path);
    struct svcd_config *nc = calloc(1, sizeof(*nc));
    if (!nc) {
        buf_puts(errors, "out of memory");
        return -1;
    }
    struct config_errors errs = {0};
    if (config_load(m->cfg->path, NULL, nc, &errs) < 0) {
        for (size_t i = 0; i < errs.count; i++) {
            buf_printf(errors, "%s: %s\n", errs.items[i].where, errs.items[i].message);
            log_error("reload: %s: %s", errs.items[i].where, errs.items[i].message);
        }
        buf_printf(errors,
                   "%zu configuration error(s); svcd keeps running with the previous "
                   "configuration",
                   errs.count);
        config_errors_free(&errs);
        free(nc);
        notify_ready("running; reload rejected (invalid configuration)");
        return -2;
    }
    config_errors_free(&errs);
    struct tls_server *nts = NULL;
    {
        /* renewed certificates: loaded here, for the new generation; what OpenSSL
         * refuses is refused now */
        char terr[512];
        nts = tls_server_load(nc, terr, sizeof(terr));
        if (!nts && terr[0]) {
            buf_printf(errors, "%s; svcd keeps running with the previous configuration", terr);
            log_error("reload: %s", terr);
            free(nc);
            notify_ready("running; reload rejected (TLS)");
            return -2;
        }
    }
    if (strcmp(nc->run_dir, m->cfg->run_dir) != 0 || strcmp(nc->user, m->cfg->user) != 0) {
        log_warn("reload: run_dir and user changes take effect only after a restart");
        snprintf(nc->run_dir, sizeof(nc->run_dir), "%s", m->cfg->run_dir);
        snprintf(nc->user, sizeof(nc->user), "%s", m->cfg->user);
    }
    /* New listener set: reuse sockets for unchanged addresses, bind new ones. */
    int fds[CONFIG_MAX_LISTEN], used[CONFIG_MAX_LISTEN] = {0};
    for (int i = 0; i < nc->nlisten; i++) {
        int k = find_listener(m, &nc->listen[i]);
        if (k >= 0) {
            fds[i] = m->listen_fds[k];
            used[k] = 1;
            continue;
        }
        char err[512];
        fds[i] = listen_open(&nc->listen[i], nc->path, err, sizeof(err));
        if (fds[i] < 0) {
            for (int j = 0; j < i; j++)
                if (find_listener(m, &nc->listen[j]) < 0) close(fds[j]);
            buf_puts(errors, err);
            log_error("reload: %s", err);
            tls_server_free(nts);
            free(nc);
            notify_ready("running; reload rejected (bind failed)");
            return -1;
        }
        log_info("reload: listening on %s", nc->listen[i].address);
    }
    for (int k = 0; k < m->nlisten; k++)
        if (!used[k] && m->nold_listen < CONFIG_MAX_LISTEN)
            m->old_listen_fds[m->nold_listen++] = m->listen_fds[k];
    memcpy(m->listen_fds, fds, sizeof(int) * (size_t)nc->nlisten);
    m->nlisten = nc->nlisten;

    if (log_open(nc->log.file, nc->log.format, nc->log.level, m->foreground || m->ready_fd >= 0) <
        0)
        log_warn("reload: cannot open log file %s: %s (keeping the old one)", nc->log.file,
                 strerror(errno));
    m->prev_cfg = m->cfg;
    m->cfg = nc;
    m->prev_tls = m->tls;
    m->tls = nts;
    m->generation++;
    m->sb->generation = m->generation;
    m->state = M_RELOADING;
    m->phase_deadline = now_mono_ms() + (int64_t)nc->timeouts.worker_ms + 5000;
    log_info("reload: configuration valid; starting generation %d with %d worker(s)", m->generation,
             nc->workers);
    if (children_spawn_workers(m, m->generation, nc->workers) < 0) {
        log_error("reload: could not fork every new worker; retrying through respawn");
    }
    return 0;
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct master *m = ev_userdata(loop);
    master_request_stop(m, w->signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents, (void)w;
    struct master *m = ev_userdata(loop);
    struct buf errors;
    buf_init(&errors);
    if (master_request_reload(m, &errors) < 0)
        log_error("SIGHUP reload rejected: %s", errors.data ? errors.data : "?");
    buf_free(&errors);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents, (void)w;
    struct master *m = ev_userdata(loop);
    if (log_reopen() < 0)
        log_error("SIGUSR1: cannot reopen log file %s: %s", m->cfg->log.file, strerror(errno));
    else
        log_info("SIGUSR1: log file reopened");
    children_signal_role(m, 0, SIGUSR1, 0);
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct master *m = ev_userdata(loop);
    if (WIFSTOPPED(w->rstatus) || WIFCONTINUED(w->rstatus)) return;
    children_on_exit(m, w->rpid, w->rstatus);
}

void master_child_after_fork(struct master *m, int keep_chan)
{
    struct ev_loop *loop = m->loop;
    ev_signal_stop(loop, &m->sig_term);
    ev_signal_stop(loop, &m->sig_int);
    ev_signal_stop(loop, &m->sig_hup);
    ev_signal_stop(loop, &m->sig_usr1);
    ev_child_stop(loop, &m->child_watch);
    ev_timer_stop(loop, &m->tick);
    ev_timer_stop(loop, &m->watchdog);
    if (m->control_fd >= 0) {
        ev_io_stop(loop, &m->control_io);
        close(m->control_fd);
        m->control_fd = -1;
    }
    for (int i = 0; i < MASTER_MAX_CONTROL; i++) {
        if (!m->clients[i]) continue;
        ev_io_stop(loop, &m->clients[i]->io);
        close(m->clients[i]->fd);
        buf_free(&m->clients[i]->in);
        free(m->clients[i]);
        m->clients[i] = NULL;
    }
    ev_loop_fork(loop);
    if (m->pidfile_fd >= 0) close(m->pidfile_fd);
    m->pidfile_fd = -1;
    if (m->ready_fd >= 0) {
        /* Daemon mode: the waiting `svcd -d` parent (and whoever captured its output)
         * must see EOF once the master is READY, so children must not hold stdio. */
        close(m->ready_fd);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            if (null > 2) close(null);
        }
        log_set_stderr(0);
    }
    m->ready_fd = -1;
    for (int i = 0; i < m->nold_listen; i++) close(m->old_listen_fds[i]);
    m->nold_listen = 0;
    children_close_in_child(m, keep_chan);
    free(m->prev_cfg);
    m->prev_cfg = NULL;
    tls_server_free(m->prev_tls);
    m->prev_tls = NULL;
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

int master_run(struct master *m)
{
    m->loop = EV_DEFAULT;
    ev_set_userdata(m->loop, m);
    signal(SIGPIPE, SIG_IGN);
    ev_signal_init(&m->sig_term, on_stop_signal, SIGTERM);
    ev_signal_init(&m->sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&m->sig_hup, on_hup, SIGHUP);
    ev_signal_init(&m->sig_usr1, on_usr1, SIGUSR1);
    ev_signal_start(m->loop, &m->sig_term);
    ev_signal_start(m->loop, &m->sig_int);
    ev_signal_start(m->loop, &m->sig_hup);
    ev_signal_start(m->loop, &m->sig_usr1);
    /* a TERM/INT that arrived after the last start-up check is not lost */
    int early = startup_signals_take_stop();
    if (early) ev_feed_signal(early);
    ev_child_init(&m->child_watch, on_child, 0, 0);
    ev_child_start(m->loop, &m->child_watch);
    ev_timer_init(&m->tick, on_tick, TICK_SECONDS, TICK_SECONDS);
    ev_timer_start(m->loop, &m->tick);
    ev_init(&m->watchdog, NULL);
    notify_watchdog_start(m);

    char err[512];
    if (control_open(m, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    m->state = M_STARTING;
    m->generation = 1;
    m->sb->generation = 1;
    m->phase_deadline = now_mono_ms() + (int64_t)m->cfg->timeouts.worker_ms + 5000;
    log_info("phase fork: starting the coordinator and %d worker(s)", m->cfg->workers);
    notify_status("starting children");
    if (children_spawn_coordinator(m) < 0 ||
        children_spawn_workers(m, m->generation, m->cfg->workers) < 0) {
        log_error("startup failed: cannot fork children");
        m->exit_code = 1;
        master_request_stop(m, "startup failure");
    }
    ev_run(m->loop, 0);

    control_close(m);
    ev_timer_stop(m->loop, &m->tick);
    ev_timer_stop(m->loop, &m->watchdog);
    ev_child_stop(m->loop, &m->child_watch);
    ev_signal_stop(m->loop, &m->sig_term);
    ev_signal_stop(m->loop, &m->sig_int);
    ev_signal_stop(m->loop, &m->sig_hup);
    ev_signal_stop(m->loop, &m->sig_usr1);
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++)
        if (m->children[i].used && m->children[i].chan >= 0) close(m->children[i].chan);
    free(m->prev_cfg);
    m->prev_cfg = NULL;
    tls_server_free(m->prev_tls);
    m->prev_tls = NULL;
    apps_free(m);
    return m->exit_code;
}
