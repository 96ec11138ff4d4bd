/*
 * apps.c — managed apps: the programs svcd runs for the user (PM2's core).
 *
 * An `apps:` entry is started by the master once every worker is ready, as
 * `/bin/sh -c COMMAND` in its cwd, in a process group of its own (so that
 * `npm run dev` and the node it spawns stop together), with `{port}` replaced
 * and PORT (plus SVCD_PREVIEW_BASE=/preview/<project>/<owner>/) in its
 * environment, stdout and stderr appended to <logdir>/app-<name>.log.
 *
 * Lifecycle of one app, driven by the master's 50 ms tick and child reaping:
 *
 *   starting  forked; its port is probed (non-blocking connect) every 250 ms
 *   online    the port answered: registered as the preview project/owner with
 *             the coordinator (if both are set)
 *   exited    reaped: unregistered (the coordinator emits previewServerStopped),
 *             leftovers of its group get SIGTERM, then SIGKILL after
 *             timeouts.shutdown; restarted per policy (always | on-failure |
 *             never), after an exponential back-off when it keeps dying young
 *   stopping  svcd shuts down (or a reload removed it): SIGTERM to the group,
 *             SIGKILL to the group after timeouts.shutdown
 *
 * Apps are not in the children table (they have no heart-beat and no ready
 * phase of svcd's own); they have a scoreboard slot (SB_APP) so status pages
 * and `svc status` list them.
 */
#include "master.h"
#include "../common/ipc.h"
#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROBE_EVERY_MS  250
#define APP_YOUNG_MS    10000
#define APP_BACKOFF_MIN 250
#define APP_BACKOFF_MAX 30000

struct app {
    struct config_app a; /* a copy: survives config reloads */
    pid_t pid;           /* group leader (sh); 0 when not running */
    pid_t pgid;          /* group still to be cleaned up (also after the leader exited) */
    int slot;
    int restarts, streak;
    int64_t started_mono, respawn_at, kill_at, next_probe;
    int probe_fd;
    int online;      /* port answered since this start */
    int registered;  /* preview announced to the coordinator */
    pid_t reg_coord; /* ... to this coordinator process */
    int stopping;    /* we asked it to stop: no restart */
    int removed;     /* gone from the configuration: forget once stopped */
    char last_exit[96];
};

struct apps {
    struct app app[CONFIG_MAX_APPS];
    int n;
    int started; /* apps_start ran */
};

static struct apps *apps_of(struct master *m)
{
    if (!m->apps) m->apps = calloc(1, sizeof(struct apps));
    return m->apps;
}

static pid_t coordinator_chan(struct master *m, int *chan)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (c->used && c->role == SB_COORDINATOR && c->pid > 0 && c->chan >= 0) {
            *chan = c->chan;
            return c->pid;
        }
    }
    *chan = -1;
    return 0;
}

static int has_preview(const struct app *p)
{
    return p->a.project[0] && p->a.owner[0];
}

static void send_preview(struct master *m, struct app *p, int set, const char *reason,
                         int reannounce)
{
    int chan;
    pid_t cpid = coordinator_chan(m, &chan);
    if (chan < 0 || !has_preview(p)) return;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"projectId\":");
    buf_json_str(&b, p->a.project);
    buf_puts(&b, ",\"userId\":");
    buf_json_str(&b, p->a.owner);
    if (set) {
        buf_printf(&b, ",\"port\":%d,\"type\":\"app\",\"startedAt\":%lld,\"up\":true,\"source\":",
                   p->a.port, (long long)now_wall_ms());
        char src[96];
        snprintf(src, sizeof(src), "app:%s", p->a.name);
        buf_json_str(&b, src);
        if (reannounce) buf_puts(&b, ",\"reannounce\":true");
    } else {
        buf_puts(&b, ",\"reason\":");
        buf_json_str(&b, reason ? reason : "app stopped");
    }
    buf_puts(&b, "}");
    if (!buf_failed(&b) &&
        ipc_send(chan, set ? IPC_PREVIEW_SET : IPC_PREVIEW_DEL, b.data, b.len, -1) < 0)
        log_warn("app %s: cannot tell the coordinator: %s", p->a.name, strerror(errno));
    else if (set)
        p->reg_coord = cpid;
    buf_free(&b);
}

/* <logdir>/app-<name>.log: beside the svcd log file, else in run_dir. */
static void log_path(const struct svcd_config *cfg, const char *name, char *out, size_t len)
{
    char dir[CONFIG_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", cfg->log.file[0] ? cfg->log.file : "");
    char *slash = strrchr(dir, '/');
    if (cfg->log.file[0] && slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), "%s", cfg->run_dir);
    snprintf(out, len, "%.900s/app-%.64s.log", dir, name);
}

/* COMMAND with every "{port}" replaced. */
static void substitute(const char *cmd, int port, char *out, size_t len)
{
    size_t o = 0;
    char num[16];
    int nl = snprintf(num, sizeof(num), "%d", port);
    for (const char *s = cmd; *s && o + 1 < len;) {
        if (strncmp(s, "{port}", 6) == 0 && o + (size_t)nl + 1 < len) {
            memcpy(out + o, num, (size_t)nl);
            o += (size_t)nl;
            s += 6;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
}

/* In the child: never returns. */
static void exec_app(struct master *m, struct app *p, const char *logfile)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the master died: do not linger */
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    const struct svcd_config *cfg = m->cfg;
    char perr[256];
    if (privileges_drop_child(cfg, perr, sizeof(perr)) < 0) {
        dprintf(2, "svcd: app %s: %s\n", p->a.name, perr);
        _exit(126);
    }
    const char *cwd = p->a.cwd[0] ? p->a.cwd : cfg->dir;
    if (chdir(cwd) < 0) {
        dprintf(2, "svcd: app %s: cannot enter cwd %s: %s\n", p->a.name, cwd, strerror(errno));
        _exit(126);
    }
    char cmd[2048], port[16], base[300];
    substitute(p->a.command, p->a.port, cmd, sizeof(cmd));
    snprintf(port, sizeof(port), "%d", p->a.port);
    setenv("PORT", port, 1);
    setenv("SVCD_APP_NAME", p->a.name, 1);
    if (has_preview(p)) {
        snprintf(base, sizeof(base), "/preview/%.128s/%.128s/", p->a.project, p->a.owner);
        setenv("SVCD_PREVIEW_BASE", base, 1);
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    char ts[40];
    int64_t ms = now_wall_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    dprintf(1, "---- %s svcd: starting app %s (pid %d) in %s: %s\n", ts, p->a.name, (int)getpid(),
            cwd, cmd);
    /* nothing of svcd's (listeners, channels, the log) leaks into the app */
    if (close_range(3, ~0U, 0) < 0)
        for (int f = 3; f < 1024; f++) close(f);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    dprintf(2, "svcd: app %s: cannot run /bin/sh: %s\n", p->a.name, strerror(errno));
    _exit(127);
}

static void app_spawn(struct master *m, struct app *p)
{
    char logfile[CONFIG_PATH_MAX + 80];
    log_path(m->cfg, p->a.name, logfile, sizeof(logfile));
    if (p->slot < 0) {
        p->slot = scoreboard_alloc(m->sb, SB_APP);
        if (p->slot >= 0) {
            struct sb_slot *s = &m->sb->slot[p->slot];
            s->role = SB_APP;
            s->index = (int)(p - apps_of(m)->app);
            snprintf(s->name, sizeof(s->name), "%s", p->a.name);
        }
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("app %s: fork failed: %s; retrying in %d ms", p->a.name, strerror(errno),
                  APP_BACKOFF_MAX / 10);
        p->respawn_at = now_mono_ms() + APP_BACKOFF_MAX / 10;
        return;
    }
    if (pid == 0) exec_app(m, p, logfile);
    setpgid(pid, pid); /* also here: no race with the first kill(-pgid) */
    p->pid = pid;
    p->pgid = pid;
    p->started_mono = now_mono_ms();
    p->respawn_at = 0;
    p->online = p->registered = 0;
    p->next_probe = p->started_mono + 50;
    if (p->slot >= 0) {
        struct sb_slot *s = &m->sb->slot[p->slot];
        s->pid = (int32_t)pid;
        s->started_ms = now_wall_ms();
        s->restarts = p->restarts;
        s->state = SB_STARTING;
        snprintf(s->last_exit, sizeof(s->last_exit), "%s", p->last_exit);
    }
    char cmd[2048];
    substitute(p->a.command, p->a.port, cmd, sizeof(cmd));
    log_info("app %s: started pid %d on port %d: %s (output: %s)", p->a.name, (int)pid, p->a.port,
             cmd, logfile);
}

static void app_init(struct app *p, const struct config_app *a)
{
    memset(p, 0, sizeof(*p));
    p->a = *a;
    p->slot = -1;
    p->probe_fd = -1;
}

static void probe_close(struct app *p)
{
    if (p->probe_fd >= 0) close(p->probe_fd);
    p->probe_fd = -1;
}

void apps_start(struct master *m)
{
    struct apps *as = apps_of(m);
    if (!as || as->started) return;
    as->started = 1;
    for (int i = 0; i < m->cfg->napps && as->n < CONFIG_MAX_APPS; i++) {
        struct app *p = &as->app[as->n++];
        app_init(p, &m->cfg->apps[i]);
        app_spawn(m, p);
    }
    if (m->cfg->napps) log_info("phase apps: started %d managed app(s)", m->cfg->napps);
}

/* Port probe: non-blocking connect, result read on a later tick. */
static void app_probe(struct master *m, struct app *p, int64_t now)
{
    if (now < p->next_probe) return;
    p->next_probe = now + PROBE_EVERY_MS;
    int ok = 0;
    if (p->probe_fd >= 0) {
        struct pollfd pfd = {p->probe_fd, POLLOUT, 0};
        if (poll(&pfd, 1, 0) <= 0) return; /* still connecting: next tick */
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(p->probe_fd, SOL_SOCKET, SO_ERROR, &err, &len);
        ok = err == 0;
        probe_close(p);
    } else {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return;
        struct sockaddr_in sin = {0};
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)p->a.port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
            ok = 1;
            close(fd);
        } else if (errno == EINPROGRESS) {
            p->probe_fd = fd;
            return;
        } else {
            close(fd);
        }
    }
    if (!ok) return;
    p->online = 1;
    if (p->slot >= 0) m->sb->slot[p->slot].state = SB_READY;
    log_info("app %s (pid %d) answers on port %d after %lld ms%s", p->a.name, (int)p->pid,
             p->a.port, (long long)(now - p->started_mono),
             has_preview(p) ? "; registering its preview" : "");
    if (has_preview(p)) {
        send_preview(m, p, 1, NULL, 0);
        p->registered = 1;
    }
}

static int group_alive(pid_t pgid)
{
    return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM);
}

void apps_tick(struct master *m)
{
    struct apps *as = m->apps;
    if (!as) return;
    int64_t now = now_mono_ms();
    int chan;
    pid_t cpid = coordinator_chan(m, &chan);
    for (int i = 0; i < as->n; i++) {
        struct app *p = &as->app[i];
        if (p->pid > 0 && !p->online && !p->stopping) app_probe(m, p, now);
        /* a new coordinator: the workers re-announce, and so do we */
        if (p->registered && cpid && p->reg_coord != cpid) send_preview(m, p, 1, NULL, 1);
        if (p->pgid && p->kill_at && now >= p->kill_at) {
            if (group_alive(p->pgid)) {
                log_warn("app %s: process group %d still running %llu ms after SIGTERM "
                         "(timeouts.shutdown); sending SIGKILL",
                         p->a.name, (int)p->pgid, (unsigned long long)m->cfg->timeouts.shutdown_ms);
                kill(-p->pgid, SIGKILL);
            }
            p->kill_at = 0;
        }
        if (p->pgid && !p->pid && !p->kill_at && !group_alive(p->pgid)) p->pgid = 0;
        if (!p->pid && p->respawn_at && now >= p->respawn_at && m->state != M_STOPPING &&
            !p->stopping && !p->removed) {
            if (p->pgid && group_alive(p->pgid)) continue; /* leftovers first */
            app_spawn(m, p);
        }
    }
    /* forget removed apps once they are fully gone */
    for (int i = 0; i < as->n;) {
        struct app *p = &as->app[i];
        if (p->removed && !p->pid && !p->pgid) {
            if (p->slot >= 0) scoreboard_release(m->sb, p->slot);
            as->app[i] = as->app[--as->n];
        } else {
            i++;
        }
    }
}

static void describe(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d (SIG%s)", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(out, len, "status 0x%x", status);
}

int apps_on_exit(struct master *m, pid_t pid, int status)
{
    struct apps *as = m->apps;
    if (!as) return 0;
    struct app *p = NULL;
    for (int i = 0; i < as->n && !p; i++)
        if (as->app[i].pid == pid) p = &as->app[i];
    if (!p) return 0;
    char reason[96];
    describe(status, reason, sizeof(reason));
    snprintf(p->last_exit, sizeof(p->last_exit), "%s", reason);
    probe_close(p);
    p->pid = 0;
    if (p->slot >= 0) {
        struct sb_slot *s = &m->sb->slot[p->slot];
        s->pid = 0;
        s->state = SB_EXITED;
        snprintf(s->last_exit, sizeof(s->last_exit), "%s", reason);
    }
    if (p->registered) {
        char why[256];
        snprintf(why, sizeof(why), "app %s exited (%s)", p->a.name, reason);
        send_preview(m, p, 0, why, 0);
        p->registered = 0;
    }
    /* whatever the shell left behind in its group goes too */
    if (group_alive(p->pgid)) {
        kill(-p->pgid, SIGTERM);
        if (!p->kill_at) p->kill_at = now_mono_ms() + (int64_t)m->cfg->timeouts.shutdown_ms;
    }
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (p->stopping || p->removed || m->state == M_STOPPING) {
        log_info("app %s (pid %d) stopped: %s", p->a.name, (int)pid, reason);
        return 1;
    }
    int restart =
        p->a.restart == APP_RESTART_ALWAYS || (p->a.restart == APP_RESTART_ON_FAILURE && !clean);
    if (!restart) {
        log_warn("app %s (pid %d) exited: %s; not restarted (restart: %s)", p->a.name, (int)pid,
                 reason, p->a.restart == APP_RESTART_NEVER ? "never" : "on-failure");
        return 1;
    }
    int64_t now = now_mono_ms();
    p->streak = (now - p->started_mono < APP_YOUNG_MS) ? p->streak + 1 : 1;
    int64_t delay = 0;
    if (p->streak > 1) {
        delay = APP_BACKOFF_MIN;
        for (int i = 2; i < p->streak && delay < APP_BACKOFF_MAX; i++) delay *= 2;
        if (delay > APP_BACKOFF_MAX) delay = APP_BACKOFF_MAX;
    }
    p->restarts++;
    p->respawn_at = now + (delay ? delay : 1);
    if (p->slot >= 0) m->sb->slot[p->slot].restarts = p->restarts;
    log_warn("app %s (pid %d) exited: %s; restarting in %lld ms (restart %d)", p->a.name, (int)pid,
             reason, (long long)delay, p->restarts);
    return 1;
}

static void app_stop(struct master *m, struct app *p, const char *why)
{
    p->stopping = 1;
    p->respawn_at = 0;
    probe_close(p);
    if (!p->pgid || !group_alive(p->pgid)) return;
    log_info("app %s: stopping process group %d (%s)", p->a.name, (int)p->pgid, why);
    kill(-p->pgid, SIGTERM);
    p->kill_at = now_mono_ms() + (int64_t)m->cfg->timeouts.shutdown_ms;
    if (p->registered) {
        char r[256];
        snprintf(r, sizeof(r), "app %s stopped (%s)", p->a.name, why);
        send_preview(m, p, 0, r, 0);
        p->registered = 0;
    }
}

void apps_stop(struct master *m, const char *why)
{
    struct apps *as = m->apps;
    if (!as) return;
    for (int i = 0; i < as->n; i++)
        if (!as->app[i].stopping) app_stop(m, &as->app[i], why);
}

int apps_running(struct master *m)
{
    struct apps *as = m->apps;
    int n = 0;
    if (!as) return 0;
    for (int i = 0; i < as->n; i++)
        if (as->app[i].pid > 0 || (as->app[i].pgid && group_alive(as->app[i].pgid))) n++;
    return n;
}

void apps_kill_all(struct master *m, struct buf *killed)
{
    struct apps *as = m->apps;
    if (!as) return;
    for (int i = 0; i < as->n; i++) {
        struct app *p = &as->app[i];
        if (!p->pgid || !group_alive(p->pgid)) continue;
        buf_printf(killed, "%sapp %s (process group %d)", killed->len ? ", " : "", p->a.name,
                   (int)p->pgid);
        kill(-p->pgid, SIGKILL);
    }
}

/* After a reload: stop apps that are gone or changed, start new ones. */
void apps_reload(struct master *m)
{
    struct apps *as = apps_of(m);
    if (!as || !as->started) return;
    for (int i = 0; i < as->n; i++) {
        struct app *p = &as->app[i];
        if (p->removed) continue;
        int keep = 0;
        for (int j = 0; j < m->cfg->napps; j++)
            if (memcmp(&m->cfg->apps[j], &p->a, sizeof(p->a)) == 0) keep = 1;
        if (!keep) {
            p->removed = 1;
            app_stop(m, p, "removed or changed by the reload");
        }
    }
    for (int j = 0; j < m->cfg->napps && as->n < CONFIG_MAX_APPS; j++) {
        int have = 0;
        for (int i = 0; i < as->n; i++)
            if (!as->app[i].removed &&
                memcmp(&m->cfg->apps[j], &as->app[i].a, sizeof(struct config_app)) == 0)
                have = 1;
        if (have) continue;
        struct app *p = &as->app[as->n++];
        app_init(p, &m->cfg->apps[j]);
        log_info("reload: starting app %s", p->a.name);
        app_spawn(m, p);
    }
}

void apps_status_json(struct master *m, struct buf *out, int first)
{
    struct apps *as = m->apps;
    if (!as) return;
    int64_t now = now_mono_ms();
    for (int i = 0; i < as->n; i++) {
        struct app *p = &as->app[i];
        const char *state = p->pid > 0      ? (p->stopping ? "stopping"
                                               : p->online ? "online"
                                                           : "starting")
                            : p->respawn_at ? "backoff"
                                            : "stopped";
        long long rss = 0;
        if (p->pid > 0) {
            char path[64];
            snprintf(path, sizeof(path), "/proc/%d/statm", (int)p->pid);
            FILE *f = fopen(path, "r");
            long long size, res;
            if (f && fscanf(f, "%lld %lld", &size, &res) == 2) rss = res * sysconf(_SC_PAGESIZE);
            if (f) fclose(f);
        }
        buf_printf(out, "%s{\"role\":\"app\",\"name\":", first ? "" : ",");
        buf_json_str(out, p->a.name);
        buf_printf(out,
                   ",\"index\":%d,\"generation\":0,\"pid\":%d,\"state\":\"%s\",\"uptime\":%.1f,"
                   "\"restarts\":%d,\"last_exit\":",
                   i, (int)p->pid, state,
                   p->pid > 0 ? (double)(now - p->started_mono) / 1000.0 : 0.0, p->restarts);
        buf_json_str(out, p->last_exit);
        buf_printf(out,
                   ",\"rss\":%lld,\"cpu\":0,\"connections\":0,\"requests\":0,\"port\":%d,"
                   "\"registered\":%s,\"project\":",
                   rss, p->a.port, p->registered ? "true" : "false");
        buf_json_str(out, p->a.project);
        buf_puts(out, ",\"owner\":");
        buf_json_str(out, p->a.owner);
        buf_puts(out, "}");
        first = 0;
    }
}

void apps_free(struct master *m)
{
    struct apps *as = m->apps;
    if (!as) return;
    for (int i = 0; i < as->n; i++) probe_close(&as->app[i]);
    free(as);
    m->apps = NULL;
}
