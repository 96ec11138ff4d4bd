/*
 * control.c — the unix control socket that `svc` talks to.
 *
 * One request line per connection ("status", "reload", "stop", "ping"), one JSON
 * reply, then close: trivially scriptable (`socat`), nothing to keep in sync.
 * The socket is created mode 0660 (umask 0117 around bind(), so it is never
 * briefly wider) and owned by the master's uid and the configured `user:`'s
 * group. Every peer's credentials (SO_PEERCRED, SO_PEERGROUPS) are checked too:
 * root, the master's own uid, or a member of the socket's group may talk to it —
 * the same rule as the file mode, enforced again should the mode be widened.
 * A reload reply is held back until the new generation is ready (or failed), so
 * `svc reload` reports the real outcome.
 */
#include "master.h"
#include "../common/log.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_MAX_LINE 256

static void client_close(struct master *m, struct control_client *cl)
{
    for (int i = 0; i < MASTER_MAX_CONTROL; i++)
        if (m->clients[i] == cl) m->clients[i] = NULL;
    ev_io_stop(m->loop, &cl->io);
    close(cl->fd);
    buf_free(&cl->in);
    free(cl);
}

/* Replies are small; a blocking write with a short send timeout is enough. */
static void client_reply(struct master *m, struct control_client *cl, struct buf *reply)
{
    buf_puts(reply, "\n");
    size_t off = 0;
    while (off < reply->len) {
        ssize_t n = write(cl->fd, reply->data + off, reply->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    client_close(m, cl);
}

static void reply_error(struct master *m, struct control_client *cl, const char *msg)
{
    struct buf r;
    buf_init(&r);
    buf_puts(&r, "{\"ok\":false,\"error\":");
    buf_json_str(&r, msg);
    buf_puts(&r, "}");
    client_reply(m, cl, &r);
    buf_free(&r);
}

static void handle(struct master *m, struct control_client *cl, const char *cmd)
{
    struct buf r;
    buf_init(&r);
    if (strcmp(cmd, "ping") == 0) {
        buf_printf(&r, "{\"ok\":true,\"pid\":%d}", (int)getpid());
        client_reply(m, cl, &r);
    } else if (strcmp(cmd, "status") == 0) {
        const char *st = m->state == M_RUNNING     ? "running"
                         : m->state == M_RELOADING ? "reloading"
                         : m->state == M_STOPPING  ? "stopping"
                                                   : "starting";
        buf_printf(&r,
                   "{\"ok\":true,\"master\":{\"pid\":%d,\"version\":\"%s\",\"uptime\":%.1f,"
                   "\"generation\":%d,\"state\":\"%s\",\"config\":",
                   (int)getpid(), SVCD_VERSION, (double)(now_mono_ms() - m->started_mono) / 1000.0,
                   m->generation, st);
        buf_json_str(&r, m->cfg->path);
        buf_puts(&r, ",\"log\":");
        buf_json_str(&r, m->cfg->log.file);
        buf_puts(&r, "},\"children\":");
        children_status_json(m, &r);
        buf_puts(&r, "}");
        client_reply(m, cl, &r);
    } else if (strcmp(cmd, "stop") == 0) {
        buf_printf(&r, "{\"ok\":true,\"message\":\"stopping\",\"pid\":%d}", (int)getpid());
        client_reply(m, cl, &r);
        master_request_stop(m, "svc stop");
    } else if (strcmp(cmd, "reload") == 0) {
        struct buf errors;
        buf_init(&errors);
        int rc = master_request_reload(m, &errors);
        if (rc < 0) {
            struct buf r2;
            buf_init(&r2);
            buf_printf(&r2,
                       "{\"ok\":false,\"code\":\"%s\",\"error\":", rc == -2 ? "CONFIG" : "REFUSED");
            buf_json_str(&r2, errors.data ? errors.data : "reload failed");
            buf_puts(&r2, "}");
            client_reply(m, cl, &r2);
            buf_free(&r2);
        } else {
            cl->waiting_reload = 1; /* answered by control_reload_done() */
        }
        buf_free(&errors);
    } else {
        reply_error(m, cl, "unknown command; use status, reload, stop or ping");
    }
    buf_free(&r);
}

static void on_client(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct control_client *cl = w->data;
    struct master *m = ev_userdata(loop);
    char tmp[CONTROL_MAX_LINE];
    ssize_t n = read(cl->fd, tmp, sizeof(tmp));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        client_close(m, cl);
        return;
    }
    buf_append(&cl->in, tmp, (size_t)n);
    char *nl = cl->in.data ? memchr(cl->in.data, '\n', cl->in.len) : NULL;
    if (!nl) {
        if (cl->in.len >= CONTROL_MAX_LINE) reply_error(m, cl, "request line too long");
        return;
    }
    *nl = '\0';
    if (nl > cl->in.data && nl[-1] == '\r') nl[-1] = '\0';
    ev_io_stop(loop, &cl->io);
    handle(m, cl, cl->in.data);
}

/* Is `gid` the primary or a supplementary group of the peer? */
static int peer_in_group(int fd, const struct ucred *cred, gid_t gid)
{
    if (cred->gid == gid) return 1;
    gid_t groups[256];
    socklen_t glen = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
        for (size_t i = 0; i < glen / sizeof(gid_t); i++)
            if (groups[i] == gid) return 1;
        return 0;
    }
    /* Kernels before 4.13: the peer user's groups from the group database. */
    struct passwd *pw = getpwuid(cred->uid);
    if (!pw) return 0;
    int n = (int)(sizeof(groups) / sizeof(groups[0]));
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0) return 0;
    for (int i = 0; i < n; i++)
        if (groups[i] == gid) return 1;
    return 0;
}

/* 1 allowed; 0 refused (`who` then describes the peer for the log). */
static int peer_allowed(struct master *m, int fd, char *who, size_t wholen)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        snprintf(who, wholen, "a peer whose credentials cannot be read (%s)", strerror(errno));
        return 0;
    }
    if (cred.uid == 0 || cred.uid == geteuid()) return 1;
    if (peer_in_group(fd, &cred, m->control_gid)) return 1;
    snprintf(who, wholen, "pid %d uid %d gid %d", (int)cred.pid, (int)cred.uid, (int)cred.gid);
    return 0;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct master *m = w->data;
    for (int burst = 0; burst < 16; burst++) {
        int fd = accept4(m->control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        char who[128];
        if (!peer_allowed(m, fd, who, sizeof(who))) {
            struct group *gr = getgrgid(m->control_gid);
            char text[512];
            snprintf(text, sizeof(text),
                     "permission denied: only root, uid %d (svcd's user) or members of group "
                     "'%s' may control svcd",
                     (int)geteuid(), gr ? gr->gr_name : "?");
            struct buf r;
            buf_init(&r);
            buf_puts(&r, "{\"ok\":false,\"code\":\"PERMISSION\",\"error\":");
            buf_json_str(&r, text);
            buf_puts(&r, "}\n");
            ssize_t wr = write(fd, r.data, r.len);
            (void)wr;
            buf_free(&r);
            log_warn("control socket: refused %s: not root, uid %d or a member of gid %d", who,
                     (int)geteuid(), (int)m->control_gid);
            close(fd);
            continue;
        }
        int slot = -1;
        for (int i = 0; i < MASTER_MAX_CONTROL; i++)
            if (!m->clients[i]) slot = i;
        if (slot < 0) {
            close(fd);
            continue;
        }
        struct control_client *cl = calloc(1, sizeof(*cl));
        if (!cl) {
            close(fd);
            continue;
        }
        cl->fd = fd;
        buf_init(&cl->in);
        ev_io_init(&cl->io, on_client, fd, EV_READ);
        cl->io.data = cl;
        m->clients[slot] = cl;
        ev_io_start(loop, &cl->io);
    }
}

int control_open(struct master *m, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(m->sockpath) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "control socket path %s is too long; choose a shorter run_dir",
                 m->sockpath);
        return -1;
    }
    strcpy(sa.sun_path, m->sockpath);
    unlink(m->sockpath); /* we hold the pidfile lock: any socket file here is stale */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create control socket %s: %s", m->sockpath, strerror(errno));
        return -1;
    }
    /* bind() creates the file with 0777 & ~umask: 0117 gives 0660 from the start. */
    mode_t old_mask = umask(0117);
    int brc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int berr = errno;
    umask(old_mask);
    if (brc < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "cannot create control socket %s: %s", m->sockpath,
                 strerror(brc < 0 ? berr : errno));
        close(fd);
        if (brc == 0) unlink(m->sockpath);
        return -1;
    }
    if (m->cfg->user[0] && geteuid() == 0) {
        struct passwd *pw = getpwnam(m->cfg->user);
        if (!pw) {
            snprintf(err, errlen, "cannot give control socket %s to user '%s': no such user",
                     m->sockpath, m->cfg->user);
            goto fail;
        }
        if (chown(m->sockpath, 0, pw->pw_gid) < 0) {
            snprintf(err, errlen, "cannot chown control socket %s to group %d: %s", m->sockpath,
                     (int)pw->pw_gid, strerror(errno));
            goto fail;
        }
    }
    struct stat st;
    if (stat(m->sockpath, &st) < 0) {
        snprintf(err, errlen, "cannot stat control socket %s: %s", m->sockpath, strerror(errno));
        goto fail;
    }
    /* A default ACL on run_dir overrides the umask: force the mode and check it held. */
    if ((st.st_mode & 07777) != 0660 &&
        (chmod(m->sockpath, 0660) < 0 || stat(m->sockpath, &st) < 0 ||
         (st.st_mode & 07777) != 0660)) {
        snprintf(err, errlen,
                 "control socket %s cannot be made mode 0660 (it is %04o): %s; check run_dir "
                 "%s's permissions and ACLs",
                 m->sockpath, (unsigned)(st.st_mode & 07777), strerror(errno), m->cfg->run_dir);
        goto fail;
    }
    m->control_gid = st.st_gid; /* `user:`'s group, else ours (or a setgid run_dir's) */
    m->control_fd = fd;
    ev_io_init(&m->control_io, on_accept, fd, EV_READ);
    m->control_io.data = m;
    ev_io_start(m->loop, &m->control_io);
    return 0;

fail:
    close(fd);
    unlink(m->sockpath);
    return -1;
}

void control_close(struct master *m)
{
    for (int i = 0; i < MASTER_MAX_CONTROL; i++)
        if (m->clients[i]) client_close(m, m->clients[i]);
    if (m->control_fd >= 0) {
        ev_io_stop(m->loop, &m->control_io);
        close(m->control_fd);
        unlink(m->sockpath);
        m->control_fd = -1;
    }
}

void control_reload_done(struct master *m, int ok, const char *text)
{
    for (int i = 0; i < MASTER_MAX_CONTROL; i++) {
        struct control_client *cl = m->clients[i];
        if (!cl || !cl->waiting_reload) continue;
        struct buf r;
        buf_init(&r);
        buf_printf(&r, "{\"ok\":%s,\"%s\":", ok ? "true" : "false", ok ? "message" : "error");
        buf_json_str(&r, text);
        buf_puts(&r, "}");
        client_reply(m, cl, &r);
        buf_free(&r);
    }
}
