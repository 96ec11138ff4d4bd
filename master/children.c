/*
 * children.c — forking, reaping, respawning and watching the children.
 *
 * Every child is a "logical child" (worker i of generation g, the coordinator)
 * that survives its processes: when a process dies the record stays, counts the
 * restart, remembers why, and is respawned at once — or, when it keeps dying
 * young, after an exponential back-off (100 ms doubling to 30 s), never a fork
 * storm. The master's periodic tick does the time-based work: pending respawns,
 * readiness, heart-beat watchdog, and SIGKILL for drains that overstay.
 */
#include "master.h"
#include "../common/ipc.h"
#include "../common/log.h"
#include "../coordinator/coordinator.h"
#include "../worker/tls.h"
#include "../worker/worker.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CRASH_YOUNG_MS   5000
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   30000

static struct child *find_coordinator(struct master *m)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++)
        if (m->children[i].used && m->children[i].role == SB_COORDINATOR) return &m->children[i];
    return NULL;
}

static struct child *new_child(struct master *m, int role, int index, int generation)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (c->used) continue;
        memset(c, 0, sizeof(*c));
        c->used = 1;
        c->role = role;
        c->index = index;
        c->generation = generation;
        c->slot = -1;
        c->chan = -1;
        return c;
    }
    return NULL;
}

static void free_child(struct master *m, struct child *c)
{
    if (c->chan >= 0) close(c->chan);
    if (c->slot >= 0) scoreboard_retire(m->sb, c->slot);
    memset(c, 0, sizeof(*c));
    c->slot = -1;
    c->chan = -1;
}

static void child_log_role(struct child *c)
{
    char role[32];
    if (c->role == SB_WORKER)
        snprintf(role, sizeof(role), "worker %d", c->index);
    else
        snprintf(role, sizeof(role), "%s", scoreboard_role_name(c->role));
    log_set_role(role);
}

/*
 * Fork one process for `c`. `links`/`link_slots` are coordinator ends of fresh
 * worker links (coordinator spawn only); `worker_link` is the worker's end of its
 * coordinator link (worker spawn only). Never returns in the child.
 */
static int fork_child(struct master *m, struct child *c, int *links, int *link_slots, int nlinks,
                      int worker_link, const int *close_in_child, int nclose)
{
    if (c->slot < 0) {
        c->slot = scoreboard_alloc(m->sb, c->role);
        if (c->slot < 0) {
            log_error("scoreboard full: cannot start another %s", scoreboard_role_name(c->role));
            return -1;
        }
    }
    struct sb_slot *s = &m->sb->slot[c->slot];
    int chan[2];
    if (ipc_pair(chan) < 0) {
        log_error("cannot create channel for %s: %s", scoreboard_role_name(c->role),
                  strerror(errno));
        return -1;
    }
    s->role = c->role;
    s->index = c->index;
    s->generation = c->generation;
    s->restarts = c->restarts;
    s->state = SB_STARTING;
    s->heartbeat_ms = now_mono_ms();
    s->started_ms = now_wall_ms();
    s->connections = 0;
    snprintf(s->last_exit, sizeof(s->last_exit), "%s", c->last_exit);

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork of %s failed: %s", scoreboard_role_name(c->role), strerror(errno));
        close(chan[0]);
        close(chan[1]);
        return -1;
    }
    if (pid == 0) {
        close(chan[0]);
        for (int i = 0; i < nclose; i++)
            if (close_in_child[i] >= 0) close(close_in_child[i]);
        master_child_after_fork(m, chan[1]);
        child_log_role(c);
        s->pid = (int32_t)getpid();
        /* TLS contexts: the master's, loaded for this generation at start-up or
         * reload (keys may be readable only by the user svcd was started as). */
        struct tls_server *tls = m->tls;
        m->tls = NULL;
        if (c->role != SB_WORKER) {
            tls_server_free(tls);
            tls = NULL;
        }
        char perr[256];
        if (privileges_drop_child(m->cfg, perr, sizeof(perr)) < 0) {
            log_error("%s", perr);
            exit(1);
        }
        int rc;
        if (c->role == SB_WORKER) {
            struct worker_args a = {.cfg = m->cfg,
                                    .listen_fds = m->listen_fds,
                                    .nlisten = m->nlisten,
                                    .sb = m->sb,
                                    .slot = c->slot,
                                    .index = c->index,
                                    .generation = c->generation,
                                    .master_fd = chan[1],
                                    .coord_fd = worker_link,
                                    .tls = tls};
            rc = worker_main(&a);
        } else {
            for (int i = 0; i < m->nlisten; i++) close(m->listen_fds[i]);
            struct coordinator_args a = {.cfg = m->cfg,
                                         .sb = m->sb,
                                         .slot = c->slot,
                                         .master_fd = chan[1],
                                         .worker_fds = links,
                                         .worker_slots = link_slots,
                                         .nworkers = nlinks};
            rc = coordinator_main(&a);
        }
        log_close();
        exit(rc);
    }
    close(chan[1]);
    c->chan = chan[0];
    c->pid = pid;
    s->pid = (int32_t)pid;
    c->ready = 0;
    c->draining = 0;
    c->watchdog_killed = 0;
    c->respawn_at = 0;
    c->kill_at = 0;
    c->started_mono = now_mono_ms();
    log_info("started %s %d (pid %d, generation %d)", scoreboard_role_name(c->role), c->index,
             (int)pid, c->generation);
    return 0;
}

static int spawn_worker(struct master *m, struct child *c)
{
    struct child *co = find_coordinator(m);
    int link[2] = {-1, -1};
    if (co && co->pid > 0 && co->chan >= 0 && ipc_pair(link) < 0) link[0] = link[1] = -1;
    int rc = fork_child(m, c, NULL, NULL, 0, link[1], &link[0], 1);
    if (link[1] >= 0) close(link[1]);
    if (link[0] >= 0) {
        if (rc == 0) {
            char slot[16];
            int n = snprintf(slot, sizeof(slot), "%d", c->slot);
            if (ipc_send(co->chan, IPC_WORKER_LINK, slot, (size_t)n, link[0]) < 0)
                log_warn("cannot hand worker %d's link to the coordinator: %s", c->index,
                         strerror(errno));
        }
        close(link[0]);
    }
    return rc;
}

static int spawn_coordinator(struct master *m, struct child *c)
{
    int links[MASTER_MAX_CHILDREN], slots[MASTER_MAX_CHILDREN], peers[MASTER_MAX_CHILDREN];
    int n = 0;
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *w = &m->children[i];
        if (!w->used || w->role != SB_WORKER || w->pid <= 0 || w->chan < 0) continue;
        int sv[2];
        if (ipc_pair(sv) < 0) continue;
        links[n] = sv[0];
        peers[n] = sv[1];
        slots[n] = w->slot;
        n++;
    }
    int rc = fork_child(m, c, links, slots, n, -1, peers, n);
    int k = 0;
    for (int i = 0; i < MASTER_MAX_CHILDREN && k < n; i++) {
        struct child *w = &m->children[i];
        if (!w->used || w->role != SB_WORKER || w->pid <= 0 || w->chan < 0) continue;
        if (rc == 0 && ipc_send(w->chan, IPC_COORD_LINK, NULL, 0, peers[k]) < 0)
            log_warn("cannot hand worker %d its coordinator link: %s", w->index, strerror(errno));
        close(peers[k]);
        close(links[k]);
        k++;
    }
    return rc;
}

static int spawn(struct master *m, struct child *c)
{
    return c->role == SB_COORDINATOR ? spawn_coordinator(m, c) : spawn_worker(m, c);
}

int children_spawn_coordinator(struct master *m)
{
    struct child *c = new_child(m, SB_COORDINATOR, 0, m->generation);
    if (!c) return -1;
    if (spawn(m, c) < 0) {
        free_child(m, c);
        return -1;
    }
    return 0;
}

int children_spawn_workers(struct master *m, int generation, int count)
{
    for (int i = 0; i < count; i++) {
        struct child *c = new_child(m, SB_WORKER, i, generation);
        if (!c || spawn(m, c) < 0) {
            if (c) free_child(m, c);
            return -1;
        }
    }
    return 0;
}

static void describe_status(int status, char *out, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(out, len, "exit status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(out, len, "killed by signal %d (SIG%s)%s", sig, abbrev ? abbrev : "?",
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(out, len, "status 0x%x", status);
    }
}

void children_on_exit(struct master *m, pid_t pid, int status)
{
    if (apps_on_exit(m, pid, status)) return; /* a managed app (apps.c) */
    struct child *c = NULL;
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++)
        if (m->children[i].used && m->children[i].pid == pid) c = &m->children[i];
    if (!c) return;

    char reason[96];
    describe_status(status, reason, sizeof(reason));
    if (c->watchdog_killed) {
        char tmp[96];
        snprintf(tmp, sizeof(tmp), "killed by watchdog (no heart-beat for %llus)",
                 (unsigned long long)(m->cfg->timeouts.worker_ms / 1000));
        snprintf(reason, sizeof(reason), "%s", tmp);
    }
    snprintf(c->last_exit, sizeof(c->last_exit), "%s", reason);
    if (c->slot >= 0) {
        struct sb_slot *s = &m->sb->slot[c->slot];
        snprintf(s->last_exit, sizeof(s->last_exit), "%s", reason);
        s->state = SB_EXITED;
        s->pid = 0;
        s->connections = 0;
    }
    if (c->chan >= 0) close(c->chan);
    c->chan = -1;
    c->pid = 0;

    int expected = c->draining || m->state == M_STOPPING ||
                   (c->role == SB_WORKER && c->generation != m->generation);
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (expected) {
        if (clean)
            log_info("%s %d (pid %d, generation %d) exited: %s", scoreboard_role_name(c->role),
                     c->index, (int)pid, c->generation, reason);
        else
            log_warn("%s %d (pid %d, generation %d) exited while draining: %s",
                     scoreboard_role_name(c->role), c->index, (int)pid, c->generation, reason);
        free_child(m, c);
        return;
    }

    int64_t now = now_mono_ms();
    c->restarts++;
    c->crash_streak = (now - c->started_mono < CRASH_YOUNG_MS) ? c->crash_streak + 1 : 1;
    int64_t delay = 0;
    if (c->crash_streak > 1) {
        delay = BACKOFF_FIRST_MS;
        for (int i = 2; i < c->crash_streak && delay < BACKOFF_MAX_MS; i++) delay *= 2;
        if (delay > BACKOFF_MAX_MS) delay = BACKOFF_MAX_MS;
    }
    if (delay == 0)
        log_error("%s %d (pid %d) died: %s; respawning now (restart %d)",
                  scoreboard_role_name(c->role), c->index, (int)pid, reason, c->restarts);
    else
        log_error("%s %d (pid %d) died: %s; crash loop (%d quick deaths in a row), respawning in "
                  "%lld ms",
                  scoreboard_role_name(c->role), c->index, (int)pid, reason, c->crash_streak,
                  (long long)delay);
    if (c->slot >= 0) m->sb->slot[c->slot].restarts = c->restarts;
    c->respawn_at = now + delay;
    if (delay == 0 && spawn(m, c) < 0) c->respawn_at = now + BACKOFF_FIRST_MS;
}

void children_tick(struct master *m)
{
    int64_t now = now_mono_ms();
    int64_t hb_limit = (int64_t)m->cfg->timeouts.worker_ms;
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used) continue;
        if (c->pid == 0) {
            if (c->respawn_at && now >= c->respawn_at && m->state != M_STOPPING) {
                if (spawn(m, c) < 0) c->respawn_at = now + BACKOFF_MAX_MS / 10;
            }
            continue;
        }
        struct sb_slot *s = &m->sb->slot[c->slot];
        if (!c->ready && s->state == SB_READY) {
            c->ready = 1;
            log_info("%s %d (pid %d) ready", scoreboard_role_name(c->role), c->index, (int)c->pid);
        }
        if (c->draining) {
            if (c->kill_at && now >= c->kill_at) {
                log_warn("%s %d (pid %d) still draining after timeouts.shutdown with %lld "
                         "connection(s); killing it",
                         scoreboard_role_name(c->role), c->index, (int)c->pid,
                         (long long)s->connections);
                kill(c->pid, SIGKILL);
                c->kill_at = 0;
            }
            continue;
        }
        if (!c->watchdog_killed && now - s->heartbeat_ms > hb_limit) {
            log_error("%s %d (pid %d) %s for %lld ms (timeouts.worker); killing and replacing it",
                      scoreboard_role_name(c->role), c->index, (int)c->pid,
                      c->ready ? "missed its heart-beat" : "did not become ready",
                      (long long)(now - s->heartbeat_ms));
            c->watchdog_killed = 1;
            kill(c->pid, SIGKILL);
        }
    }
}

int children_count(struct master *m, int role, int generation, int only_alive)
{
    int n = 0;
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used || (role && c->role != role)) continue;
        if (generation >= 0 && c->generation != generation) continue;
        if (only_alive && c->pid <= 0) continue;
        n++;
    }
    return n;
}

int children_all_ready(struct master *m, int generation)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used) continue;
        if (c->role == SB_WORKER && c->generation != generation) continue;
        if (c->pid <= 0 || !c->ready) return 0;
    }
    return 1;
}

void children_signal_generation(struct master *m, int generation, int sig, int drain)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used || c->role != SB_WORKER || c->generation != generation) continue;
        if (drain) {
            c->draining = 1;
            c->respawn_at = 0;
            c->kill_at = now_mono_ms() + (int64_t)m->cfg->timeouts.shutdown_ms;
            if (c->pid <= 0) {
                free_child(m, c);
                continue;
            }
        }
        if (c->pid > 0) kill(c->pid, sig);
    }
}

void children_signal_role(struct master *m, int role, int sig, int drain)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used || (role && c->role != role)) continue;
        if (drain) {
            c->draining = 1;
            c->respawn_at = 0;
            if (c->pid <= 0) {
                free_child(m, c);
                continue;
            }
        }
        if (c->pid > 0) kill(c->pid, sig);
    }
}

void children_kill_all(struct master *m, struct buf *killed)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used || c->pid <= 0) continue;
        long long conns = c->slot >= 0 ? (long long)m->sb->slot[c->slot].connections : 0;
        buf_printf(killed, "%s%s %d (pid %d, %lld connection(s) open)", killed->len ? ", " : "",
                   scoreboard_role_name(c->role), c->index, (int)c->pid, conns);
        kill(c->pid, SIGKILL);
    }
}

void children_close_in_child(struct master *m, int keep_chan)
{
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (c->used && c->chan >= 0 && c->chan != keep_chan) close(c->chan);
    }
}

/* Resident set size (bytes) and lifetime-average CPU percent of a process. */
static void proc_usage(pid_t pid, long long *rss, double *cpu, double uptime_s)
{
    *rss = 0;
    *cpu = 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        long long size, res;
        if (fscanf(f, "%lld %lld", &size, &res) == 2) *rss = res * sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f) {
        char line[1024];
        if (fgets(line, sizeof(line), f)) {
            char *p = strrchr(line, ')');
            unsigned long long ut = 0, st = 0;
            if (p &&
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) ==
                    2 &&
                uptime_s > 0)
                *cpu = 100.0 * (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) / uptime_s;
        }
        fclose(f);
    }
}

void children_status_json(struct master *m, struct buf *out)
{
    int64_t now = now_wall_ms();
    buf_puts(out, "[");
    int first = 1;
    for (int i = 0; i < MASTER_MAX_CHILDREN; i++) {
        struct child *c = &m->children[i];
        if (!c->used) continue;
        struct sb_slot *s = c->slot >= 0 ? &m->sb->slot[c->slot] : NULL;
        const char *state = "waiting";
        if (c->pid > 0) {
            if (c->draining)
                state = "draining";
            else if (c->ready)
                state = "online";
            else
                state = "starting";
        } else if (c->respawn_at) {
            state = "backoff";
        }
        double up = (c->pid > 0 && s) ? (double)(now - s->started_ms) / 1000.0 : 0;
        long long rss = 0;
        double cpu = 0;
        if (c->pid > 0) proc_usage(c->pid, &rss, &cpu, up);
        buf_printf(out,
                   "%s{\"role\":\"%s\",\"index\":%d,\"generation\":%d,\"pid\":%d,\"state\":\"%s\","
                   "\"uptime\":%.1f,\"restarts\":%d,\"last_exit\":",
                   first ? "" : ",", scoreboard_role_name(c->role), c->index, c->generation,
                   (int)c->pid, state, up, c->restarts);
        buf_json_str(out, c->last_exit);
        buf_printf(out, ",\"rss\":%lld,\"cpu\":%.1f,\"connections\":%lld,\"requests\":%llu}", rss,
                   cpu, s ? (long long)s->connections : 0LL,
                   s ? (unsigned long long)s->requests : 0ULL);
        first = 0;
    }
    apps_status_json(m, out, first);
    buf_puts(out, "]");
}
