/*
 * worker.c — the traffic process: its loop, listeners, signals and channels.
 *
 * The master forks a worker with the listening sockets and channels already
 * open (worker.h). This file wires them into one libev loop: accept watchers
 * hand sockets to http_conn.c, a 1 s timer heart-beats into the scoreboard so the
 * master can tell a stuck loop from a busy one, SIGTERM (or the master's death)
 * starts a drain, and the loop ends when the drain has no connection left.
 * Nothing here blocks: a worker that stops turning its loop gets killed.
 */
#include "worker.h"
#include "store_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/ipc.h"
#include "../common/log.h"
#include "http_conn.h"
#include "worker_ctx.h"
#include "preview.h"
#include "proxy.h"
#include "sio.h"
#include "tls.h"

#define ACCEPT_BATCH     64  /* accepts per wakeup: fairness between workers and conns */
#define ACCEPT_RETRY_S   0.1 /* after EMFILE/ENFILE: let connections close first */
#define HEARTBEAT_S      1.0
#define BALANCE_SLACK    8     /* connections more than the least loaded worker before deferring */
#define BALANCE_PAUSE_S  0.005 /* ... for this long, then look again */
#define BALANCE_FRESH_MS 2000  /* a worker whose heart-beat is older is not counted on */
#define STORE_THREADS    2     /* storage request threads per worker (plus the job processor) */
#define IPC_FRAME_CAP    IPC_MAX_FRAME /* chat hand-offs carry whole HTTP requests */

static void set_state(struct worker_ctx *w, enum sb_state st)
{
    __atomic_store_n(&w->self->state, (int32_t)st, __ATOMIC_RELAXED);
}

static void heartbeat_now(struct worker_ctx *w)
{
    __atomic_store_n(&w->self->heartbeat_ms, now_mono_ms(), __ATOMIC_RELAXED);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- accepting --------------------------------------------------------------- */

static void accept_start(struct worker_ctx *w)
{
    if (w->draining || w->accepting) return;
    for (int i = 0; i < w->nlisten; i++) ev_io_start(w->loop, &w->accept_io[i]);
    w->accepting = 1;
}

static void accept_stop(struct worker_ctx *w)
{
    if (!w->accepting) return;
    for (int i = 0; i < w->nlisten; i++) ev_io_stop(w->loop, &w->accept_io[i]);
    w->accepting = 0;
}

static int at_limit(const struct worker_ctx *w)
{
    return w->cfg->limits.connections &&
           w->nconns + w->ntls_handshake >= w->cfg->limits.connections;
}

/* Is another worker that accepts (ready, heart-beating) holding clearly fewer
 * connections? Then this one leaves new connections to it for a moment. Every
 * worker is woken for each new connection on the shared listening socket, and
 * the first to wake would otherwise take a whole burst (seen: 221 vs 36 of 256
 * wrk connections), leaving the other worker idle: the same remedy as nginx's
 * ngx_accept_disabled. The least loaded worker never defers, so some worker
 * always accepts. */
static int over_share(const struct worker_ctx *w)
{
    int64_t mine = (int64_t)w->nconns, now = now_mono_ms();
    for (int i = 0; i < SB_SLOTS; i++) {
        const struct sb_slot *s = &w->sb->slot[i];
        if (s == w->self || __atomic_load_n(&s->role, __ATOMIC_RELAXED) != SB_WORKER) continue;
        if (__atomic_load_n(&s->state, __ATOMIC_RELAXED) != SB_READY) continue;
        if (now - __atomic_load_n(&s->heartbeat_ms, __ATOMIC_RELAXED) > BALANCE_FRESH_MS) continue;
        if (__atomic_load_n(&s->connections, __ATOMIC_RELAXED) + BALANCE_SLACK < mine) return 1;
    }
    return 0;
}

static void pause_accepting(struct worker_ctx *w, double seconds)
{
    accept_stop(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    ev_timer_set(&w->accept_retry, seconds, 0.);
    ev_timer_start(w->loop, &w->accept_retry);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker_ctx *w = io->data;
    for (int n = 0; n < ACCEPT_BATCH; n++) {
        if (at_limit(w)) {
            /* Leave the rest in the shared backlog for the other workers. */
            accept_stop(w);
            return;
        }
        if (over_share(w)) {
            pause_accepting(w, BALANCE_PAUSE_S);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                return;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                log_warn("cannot accept a connection: %s; pausing accepts for %.0f ms "
                         "(raise the open-file limit or lower limits.connections)",
                         strerror(errno), ACCEPT_RETRY_S * 1000);
                pause_accepting(w, ACCEPT_RETRY_S);
                return;
            default:
                log_error("accept on listener %d failed: %s", io->fd, strerror(errno));
                return;
            }
        }
        int one = 1;
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int li = (int)(io - w->accept_io);
        if (tls_listener(w->tls, li))
            tls_accept(w, li, fd, (struct sockaddr *)&ss, len);
        else
            http_conn_accept(w, fd, (struct sockaddr *)&ss, len);
    }
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker_ctx *w = t->data;
    if (!at_limit(w)) accept_start(w);
}

void worker_conn_closed(struct worker_ctx *w)
{
    if (w->draining) {
        if (w->nconns == 0 && w->ntls == 0) ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    if (!w->accepting && !ev_is_active(&w->accept_retry) && !at_limit(w)) accept_start(w);
}

/* ---- drain ------------------------------------------------------------------- */

static void begin_drain(struct worker_ctx *w, const char *why)
{
    if (w->draining) return;
    w->draining = 1;
    set_state(w, SB_DRAINING);
    accept_stop(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    log_info("draining (%s): %zu connection(s) open", why, w->nconns);
    sio_drain(w); /* Socket.IO clients: WebSocket close 1001 / Engine.IO close */
    http_conn_drain_all(w);
    tls_drain_all(w); /* handshakes in progress close; open ones end with their HTTP side */
    if (w->nconns == 0 && w->ntls == 0) ev_break(w->loop, EVBREAK_ALL);
}

static void on_sigterm(struct ev_loop *loop, ev_signal *s, int revents)
{
    begin_drain(s->data, "SIGTERM");
}

static void on_sigusr1(struct ev_loop *loop, ev_signal *s, int revents)
{
    if (log_reopen() < 0) log_error("cannot reopen the log file: %s", strerror(errno));
}

/*
 * Test-only fault (like SVCD_STORE_FAULT): with SVCD_TEST_SPIN=/path set, a worker
 * whose pid is written in that file busy-loops on its loop thread at the next
 * heart-beat — "a worker stuck in a loop" for the watchdog test. Without the
 * variable this costs one pointer test per second.
 */
static const char *test_spin_path;

static void test_spin_check(void)
{
    if (!test_spin_path) return;
    FILE *f = fopen(test_spin_path, "r");
    if (!f) return;
    long pid = 0;
    int n = fscanf(f, "%ld", &pid);
    fclose(f);
    if (n != 1 || pid != (long)getpid()) return;
    log_warn("SVCD_TEST_SPIN: test fault: busy-looping on the event loop thread");
    volatile unsigned long spin = 0;
    for (;;) spin++;
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
    test_spin_check();
    heartbeat_now(t->data);
}

/* ---- channels ---------------------------------------------------------------- */

static void coord_close(struct worker_ctx *w)
{
    if (w->coord_fd < 0) return;
    sio_coord_unlinked(w);
    ev_io_stop(w->loop, &w->coord_io);
    close(w->coord_fd);
    w->coord_fd = -1;
}

static void coord_attach(struct worker_ctx *w, int fd)
{
    coord_close(w);
    w->coord_fd = fd;
    if (fd < 0) return;
    set_nonblock(fd);
    ev_io_set(&w->coord_io, fd, EV_READ);
    ev_io_start(w->loop, &w->coord_io);
    preview_on_link(w);  /* a new coordinator rebuilds its registry from the workers */
    sio_coord_linked(w); /* ... and its chat state (users, rooms, random connect) */
}

/*
 * Read every frame waiting on `fd`. Returns 1 at EOF (peer gone), else 0.
 * PING is answered here; `on_frame` sees everything else and owns any passed fd
 * (it must close or keep it).
 */
static int read_frames(struct worker_ctx *w, int fd,
                       void (*on_frame)(struct worker_ctx *, uint8_t, int, const char *, size_t))
{
    static char payload[IPC_FRAME_CAP]; /* one loop thread: one buffer */
    for (;;) {
        uint8_t type;
        int passed = -1;
        long n = ipc_recv(fd, &type, payload, sizeof(payload), &passed);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EPROTO) continue; /* oversized or malformed frame, dropped */
            return 1;
        }
        if (n == 0 && type == 0) return 1;
        if (type == IPC_PING) {
            if (ipc_send(fd, IPC_PONG, NULL, 0, -1) < 0 && errno != EAGAIN)
                log_debug("cannot answer a ping: %s", strerror(errno));
            if (passed >= 0) close(passed);
            continue;
        }
        on_frame(w, type, passed, payload, (size_t)n);
    }
}

static void master_frame(struct worker_ctx *w, uint8_t type, int fd, const char *payload,
                         size_t len)
{
    if (type == IPC_COORD_LINK && fd >= 0) {
        coord_attach(w, fd);
        return;
    }
    if (fd >= 0) close(fd);
}

static void on_master(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker_ctx *w = io->data;
    if (read_frames(w, w->master_fd, master_frame)) {
        ev_io_stop(loop, io);
        close(w->master_fd);
        w->master_fd = -1;
        log_warn("the master went away; draining and exiting");
        begin_drain(w, "master gone");
    }
}

static void coord_frame(struct worker_ctx *w, uint8_t type, int fd, const char *payload, size_t len)
{
    if (type >= IPC_CHAT_FIRST && type <= IPC_CHAT_LAST) {
        sio_coord_frame(w, type, payload, len, fd); /* owns fd (Socket.IO hand-offs) */
        return;
    }
    if (fd >= 0) close(fd);
    if (type >= IPC_PREVIEW_SET && type <= IPC_ROOM_EVENT) preview_on_frame(w, type, payload, len);
    if (type == IPC_ROOM_EVENT) sio_room_event(w, payload, len);
}

static void on_coord(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker_ctx *w = io->data;
    if (read_frames(w, w->coord_fd, coord_frame)) {
        log_info("coordinator link closed; waiting for the master to pass a new one");
        coord_close(w);
    }
}

/* ---- entry ------------------------------------------------------------------- */

int worker_main(const struct worker_args *a)
{
    struct worker_ctx ctx;
    struct worker_ctx *w = &ctx;
    memset(w, 0, sizeof(*w));
    w->cfg = a->cfg;
    w->sb = a->sb;
    w->slot = a->slot;
    w->self = &a->sb->slot[a->slot];
    w->index = a->index;
    w->generation = a->generation;
    w->loop = EV_DEFAULT;
    w->master_fd = a->master_fd;
    w->coord_fd = -1;
    w->nlisten = a->nlisten < CONFIG_MAX_LISTEN ? a->nlisten : CONFIG_MAX_LISTEN;
    w->tls = a->tls;
    heartbeat_now(w);
    test_spin_path = getenv("SVCD_TEST_SPIN");
    if (test_spin_path && !*test_spin_path) test_spin_path = NULL;

    /* The master owns these signals; a worker must not die of them. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &mask, NULL);

    /* http_parser's own head limit (one global for every parser) backs up the
     * byte count in http_conn.c for requests and the one in proxy.c for upstream
     * response heads: the larger of the two. */
    uint64_t hlimit = w->cfg->limits.header;
    if (hlimit > 0 && hlimit < PROXY_HEAD_MAX + 1024) hlimit = PROXY_HEAD_MAX + 1024;
    http_parser_set_max_header_size(hlimit > 0 && hlimit < UINT32_MAX ? (uint32_t)hlimit
                                                                      : UINT32_MAX);

    ev_signal_init(&w->sig_term, on_sigterm, SIGTERM);
    ev_signal_init(&w->sig_usr1, on_sigusr1, SIGUSR1);
    w->sig_term.data = w->sig_usr1.data = w;
    ev_signal_start(w->loop, &w->sig_term);
    ev_signal_start(w->loop, &w->sig_usr1);

    ev_timer_init(&w->heartbeat, on_heartbeat, HEARTBEAT_S, HEARTBEAT_S);
    w->heartbeat.data = w;
    ev_timer_start(w->loop, &w->heartbeat);
    ev_timer_init(&w->accept_retry, on_accept_retry, ACCEPT_RETRY_S, 0.);
    w->accept_retry.data = w;

    ev_io_init(&w->master_io, on_master, w->master_fd, EV_READ);
    ev_io_init(&w->coord_io, on_coord, -1, EV_READ);
    w->master_io.data = w->coord_io.data = w;
    if (w->master_fd >= 0) {
        set_nonblock(w->master_fd);
        ev_io_start(w->loop, &w->master_io);
    }
    if (proxy_init(w) < 0 || preview_init(w) < 0) {
        log_error("out of memory initialising the proxy");
        return 1;
    }
    if (sio_init(w) < 0) {
        log_error("out of memory initialising the Socket.IO server");
        return 1;
    }
    coord_attach(w, a->coord_fd);

    for (int i = 0; i < w->nlisten; i++) {
        w->listen_fds[i] = a->listen_fds[i];
        set_nonblock(w->listen_fds[i]);
        ev_io_init(&w->accept_io[i], on_accept, w->listen_fds[i], EV_READ);
        w->accept_io[i].data = w;
    }
    /* Storage threads and the booking job processor, opened in this process (a
     * database handle never crosses fork). An unreachable database is not an
     * error here: the pool reconnects in the background. */
    char serr[512];
    w->pool = store_pool_start(w, STORE_THREADS, serr, sizeof(serr));
    if (!w->pool)
        log_error("storage unavailable in this worker: %s; storage-backed endpoints answer "
                  "503 DB_UNAVAILABLE",
                  serr);

    accept_start(w);
    set_state(w, SB_READY);
    log_debug("worker %d (generation %d) ready on %d listener(s)", w->index, w->generation,
              w->nlisten);

    ev_run(w->loop, 0);

    /* Drained (or the loop ran out of watchers): release everything. */
    http_conn_close_all(w);
    tls_close_all(w);
    tls_server_free(w->tls);
    w->tls = NULL;
    proxy_shutdown(w);
    preview_shutdown(w);
    store_pool_stop(w->pool); /* running jobs finish or stay leased for a retry */
    w->pool = NULL;
    sio_shutdown(w); /* after the pool: its last callbacks may still emit */
    accept_stop(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    ev_timer_stop(w->loop, &w->heartbeat);
    /* Block SIGTERM before its watcher goes: stopping the watcher restores SIG_DFL,
     * and a late SIGTERM (the master's, after a process-group one) must not turn a
     * clean exit into "killed by signal 15". */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    ev_signal_stop(w->loop, &w->sig_term);
    ev_signal_stop(w->loop, &w->sig_usr1);
    if (w->master_fd >= 0) {
        ev_io_stop(w->loop, &w->master_io);
        close(w->master_fd);
        w->master_fd = -1;
    }
    coord_close(w);
    signal(SIGTERM, SIG_IGN); /* already drained: a late SIGTERM changes nothing */
    log_info("worker %d (generation %d) drained, exiting", w->index, w->generation);
    return 0;
}
