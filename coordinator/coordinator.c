/*
 * coordinator.c — the cross-worker process: links to every worker, heart-beat.
 *
 * At this stage it keeps one SOCK_SEQPACKET link per worker (handed over by the
 * master at fork, or later with IPC_WORKER_LINK when a worker is (re)spawned),
 * answers pings, drops links that reach EOF, and heart-beats into its scoreboard
 * slot so the master's watchdog can replace it if its loop wedges. Features that
 * need shared state (user registry, rooms, preview registry) add frame types here.
 */
#include "coordinator.h"
#include "../common/ipc.h"
#include "../common/log.h"
#include "preview_registry.h"
#include "chat_coord.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct link {
    int fd;
    int slot;
    ev_io io;
};

struct coordinator {
    struct ev_loop *loop;
    struct scoreboard *sb;
    int slot;
    int master_fd;
    ev_io master_io;
    ev_timer heartbeat;
    ev_signal sig_term, sig_usr1;
    struct link *links[COORD_MAX_LINKS];
    char *frame;
    struct preview_registry *preg; /* preview servers, health checks, tunnels (issue 4) */
    struct chat_coord *chat;       /* users, rooms, random connect (issue 5) */
};

static void link_close(struct coordinator *co, struct link *l)
{
    if (co->preg) preg_link_closed(co->preg, l->slot);
    chat_coord_link_down(co->chat, l->slot);
    for (int i = 0; i < COORD_MAX_LINKS; i++)
        if (co->links[i] == l) co->links[i] = NULL;
    ev_io_stop(co->loop, &l->io);
    close(l->fd);
    free(l);
}

static void on_link(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct link *l = w->data;
    struct coordinator *co = ev_userdata(loop);
    uint8_t type;
    int fd;
    long n = ipc_recv(l->fd, &type, co->frame, IPC_MAX_FRAME, &fd);
    if (fd >= 0 && (n < 0 || type < IPC_CHAT_FIRST || type > IPC_CHAT_LAST)) {
        close(fd); /* only chat hand-offs carry a descriptor */
        fd = -1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0 || (n == 0 && type == 0)) {
        log_debug("worker link (slot %d) closed", l->slot);
        link_close(co, l);
        return;
    }
    if (type == IPC_PING)
        ipc_send(l->fd, IPC_PONG, NULL, 0, -1);
    else if (type >= IPC_PREVIEW_SET && type <= IPC_ROOM_EVENT && co->preg)
        preg_on_frame(co->preg, l->fd, l->slot, type, co->frame, (size_t)n);
    else if (type >= IPC_CHAT_FIRST && type <= IPC_CHAT_LAST)
        chat_coord_frame(co->chat, l->slot, type, co->frame, (size_t)n, fd); /* owns fd */
}

static int link_add(struct coordinator *co, int fd, int slot)
{
    for (int i = 0; i < COORD_MAX_LINKS; i++) {
        if (co->links[i]) continue;
        struct link *l = calloc(1, sizeof(*l));
        if (!l) return -1;
        l->fd = fd;
        l->slot = slot;
        ev_io_init(&l->io, on_link, fd, EV_READ);
        l->io.data = l;
        ev_io_start(co->loop, &l->io);
        co->links[i] = l;
        if (co->preg) preg_on_link(co->preg, fd);
        chat_coord_link_up(co->chat, slot, fd);
        return 0;
    }
    return -1;
}

static void on_master(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents, (void)w;
    struct coordinator *co = ev_userdata(loop);
    uint8_t type;
    int fd;
    char *payload = co->frame;
    long n = ipc_recv(co->master_fd, &type, payload, IPC_MAX_FRAME - 1, &fd);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0 || (n == 0 && type == 0)) {
        log_warn("master channel closed; coordinator exiting");
        if (fd >= 0) close(fd);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    payload[n] = '\0';
    if (type >= IPC_PREVIEW_SET && type <= IPC_ROOM_EVENT && co->preg) {
        /* managed apps: the master registers and unregisters their previews */
        if (fd >= 0) close(fd);
        preg_on_frame(co->preg, co->master_fd, -1, type, payload, (size_t)n);
    } else if (type == IPC_WORKER_LINK && fd >= 0) {
        if (link_add(co, fd, atoi(payload)) < 0) close(fd);
    } else if (fd >= 0) {
        close(fd);
    }
}

/* preview registry hook: one frame to every linked worker */
static void broadcast(void *arg, uint8_t type, const void *payload, size_t len)
{
    struct coordinator *co = arg;
    for (int i = 0; i < COORD_MAX_LINKS; i++) {
        struct link *l = co->links[i];
        if (l && ipc_send(l->fd, type, payload, len, -1) < 0)
            log_warn("cannot send frame type %d to worker slot %d: %s", type, l->slot,
                     strerror(errno));
    }
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    struct coordinator *co = ev_userdata(loop);
    co->sb->slot[co->slot].heartbeat_ms = now_mono_ms();
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    log_reopen();
}

int coordinator_main(const struct coordinator_args *a)
{
    struct coordinator co = {0};
    co.loop = ev_loop_new(EVFLAG_AUTO);
    if (!co.loop) return 1;
    ev_set_userdata(co.loop, &co);
    co.sb = a->sb;
    co.slot = a->slot;
    co.master_fd = a->master_fd;
    co.frame = malloc(IPC_MAX_FRAME);
    if (!co.frame) return 1;
    struct preg_hooks hooks = {&co, broadcast};
    co.preg = preg_create(co.loop, a->cfg, &hooks);
    if (!co.preg) return 1;
    co.chat = chat_coord_new(co.loop);
    if (co.chat && a->cfg->storage.driver == STORE_MONGODB) {
        /* several hosts on one MongoDB: chat crosses hosts through it */
        char err[512];
        if (chat_coord_cluster_start(co.chat, a->cfg->storage.uri, err, sizeof(err)) < 0)
            log_error("cluster: %s; chat stays on this host", err);
    }
    if (!co.chat) return 1;
    for (int i = 0; i < a->nworkers; i++)
        if (link_add(&co, a->worker_fds[i], a->worker_slots[i]) < 0) close(a->worker_fds[i]);
    ev_io_init(&co.master_io, on_master, co.master_fd, EV_READ);
    ev_io_start(co.loop, &co.master_io);
    ev_timer_init(&co.heartbeat, on_heartbeat, 0., 1.);
    ev_timer_again(co.loop, &co.heartbeat);
    ev_signal_init(&co.sig_term, on_term, SIGTERM);
    ev_signal_start(co.loop, &co.sig_term);
    ev_signal_init(&co.sig_usr1, on_usr1, SIGUSR1);
    ev_signal_start(co.loop, &co.sig_usr1);
    co.sb->slot[co.slot].heartbeat_ms = now_mono_ms();
    co.sb->slot[co.slot].state = SB_READY;
    log_info("coordinator ready with %d worker link(s)", a->nworkers);

    ev_run(co.loop, 0);

    co.sb->slot[co.slot].state = SB_DRAINING;
    for (int i = 0; i < COORD_MAX_LINKS; i++)
        if (co.links[i]) link_close(&co, co.links[i]);
    preg_destroy(co.preg);
    co.preg = NULL;
    chat_coord_free(co.chat);
    co.chat = NULL;
    ev_io_stop(co.loop, &co.master_io);
    ev_timer_stop(co.loop, &co.heartbeat);
    ev_signal_stop(co.loop, &co.sig_term);
    ev_signal_stop(co.loop, &co.sig_usr1);
    close(co.master_fd);
    free(co.frame);
    ev_loop_destroy(co.loop);
    return 0;
}
