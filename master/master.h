/*
 * master.h — the supervisor's one context struct and the functions its files share.
 *
 * The master only supervises (nginx's rule): it owns the configuration, the
 * listening sockets, the scoreboard, the child table, signals and the control
 * socket. It serves no traffic and holds no database connection, so nothing a
 * client does can crash it.
 */
#ifndef SVCD_MASTER_H
#define SVCD_MASTER_H

#include <ev.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/buf.h"
#include "../common/config.h"
#include "../common/scoreboard.h"

#define MASTER_MAX_CHILDREN SB_SLOTS
#define MASTER_MAX_CONTROL  16

enum master_state { M_STARTING, M_RUNNING, M_RELOADING, M_STOPPING };

struct child {
    int used;
    int role;       /* enum sb_role */
    int index;      /* worker number within its generation */
    int generation; /* workers: the generation they serve */
    pid_t pid;      /* 0 while waiting to be (re)spawned */
    int slot;       /* scoreboard slot, -1 when none */
    int chan;       /* master's end of the ipc channel, -1 when none */
    int ready;      /* reported SB_READY at least once since this spawn */
    int draining;   /* sent SIGTERM on purpose (reload/stop): exit is expected */
    int watchdog_killed;
    int restarts;
    int crash_streak;     /* consecutive short-lived crashes */
    int64_t started_mono; /* when this incarnation was forked */
    int64_t respawn_at;   /* monotonic ms; 0 = not pending */
    int64_t kill_at;      /* monotonic ms; SIGKILL a draining child after this */
    char last_exit[96];
};

struct control_client {
    int fd;
    ev_io io;
    struct buf in;
    int waiting_reload; /* reply when the reload finishes */
};

struct tls_server;

struct master {
    struct svcd_config *cfg;
    struct svcd_config *prev_cfg; /* what a reload in progress falls back to */
    /* TLS contexts of cfg / prev_cfg, loaded by the master (keys may be readable only
     * by the user the master was started as); workers inherit them through fork */
    struct tls_server *tls, *prev_tls;
    char cfg_arg[CONFIG_PATH_MAX]; /* the -c path as given */
    int foreground;
    int ready_fd; /* daemon mode: pipe to the waiting parent, -1 otherwise */
    int pidfile_fd;
    char pidfile[CONFIG_PATH_MAX + 32];
    char sockpath[CONFIG_PATH_MAX + 32];

    int listen_fds[CONFIG_MAX_LISTEN];
    int nlisten;
    int old_listen_fds[CONFIG_MAX_LISTEN]; /* to close once the old generation is gone */
    int nold_listen;

    struct scoreboard *sb;
    struct child children[MASTER_MAX_CHILDREN];
    int generation;
    enum master_state state;
    int64_t started_mono;
    int64_t phase_deadline; /* startup/reload readiness deadline */
    int64_t stop_deadline;
    int exit_code;
    int announced_ready;

    struct ev_loop *loop;
    ev_signal sig_term, sig_int, sig_hup, sig_usr1, sig_pipe;
    ev_child child_watch;
    ev_timer tick;
    ev_timer watchdog;
    ev_io control_io;
    int control_fd;
    gid_t control_gid; /* the control socket's group: its members may use it */
    struct control_client *clients[MASTER_MAX_CONTROL];

    struct apps *apps; /* managed apps (apps.c), NULL until they start */
};

/* listen.c */
int listen_open(const struct config_listen *l, const char *cfg_path, char *err, size_t errlen);
void port_owner(int port, char *out, size_t outlen);

/* pidfile.c */
int pidfile_acquire(struct master *m, char *err, size_t errlen);
void pidfile_release(struct master *m);
pid_t pidfile_read_running(const char *path);

/* notify.c */
void notify_ready(const char *status);
void notify_status(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_watchdog_start(struct master *m);

/* privileges.c — the privileges phase: 0, or -1 with a message in err. `fresh` says
 * which paths this start created (only those, and the pidfile, are handed to the
 * user: a run_dir or log file that was already there is never chowned). */
struct privileges_fresh {
    int run_dir, log_file, db;
};
int privileges_drop_master(const struct svcd_config *cfg, const struct privileges_fresh *fresh,
                           char *err, size_t errlen);
int privileges_drop_child(const struct svcd_config *cfg, char *err, size_t errlen);

/* children.c */
int children_spawn_coordinator(struct master *m);
int children_spawn_workers(struct master *m, int generation, int count);
void children_on_exit(struct master *m, pid_t pid, int status);
void children_tick(struct master *m);
int children_count(struct master *m, int role, int generation, int only_alive);
int children_all_ready(struct master *m, int generation);
void children_signal_generation(struct master *m, int generation, int sig, int drain);
void children_signal_role(struct master *m, int role, int sig, int drain);
void children_kill_all(struct master *m, struct buf *killed);
void children_close_in_child(struct master *m, int keep_chan);
void children_status_json(struct master *m, struct buf *out);

/* apps.c — managed apps (PM2-style): started once the workers are ready */
void apps_start(struct master *m);
void apps_tick(struct master *m);
/* A reaped pid: 1 when it was an app's (handled), 0 otherwise. */
int apps_on_exit(struct master *m, pid_t pid, int status);
/* SIGTERM to every app's process group; SIGKILL after timeouts.shutdown (apps_tick). */
void apps_stop(struct master *m, const char *why);
int apps_running(struct master *m);
void apps_kill_all(struct master *m, struct buf *killed);
void apps_reload(struct master *m);
/* Append the apps to a children JSON array (`first`: nothing written before). */
void apps_status_json(struct master *m, struct buf *out, int first);
void apps_free(struct master *m);

/* control.c */
int control_open(struct master *m, char *err, size_t errlen);
void control_close(struct master *m);
void control_reload_done(struct master *m, int ok, const char *text);

/* storage_phase.c: 0 connected or degraded (development), -1 fatal (production),
 * -2 interrupted by SIGTERM/SIGINT (startup_signals_poll()). */
int storage_phase(const struct svcd_config *cfg);

/* main.c: signals that arrive during start-up, before master_run()'s watchers
 * exist. HUP is ignored (the configuration was just read), USR1 reopens the log,
 * TERM/INT abort the start-up. Returns the pending stop signal or 0. */
int startup_signals_poll(void);
/* master.c hands a stop signal still pending at that point to its own watchers. */
int startup_signals_take_stop(void);

/* master.c */
int master_run(struct master *m);
void master_request_stop(struct master *m, const char *why);
/* 0 started; -1 refused in this state or failed to bind; -2 invalid configuration. */
int master_request_reload(struct master *m, struct buf *errors);
void master_child_after_fork(struct master *m, int keep_chan);

#endif
