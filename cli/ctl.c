/*
 * ctl.c — the control-socket client of `svc`, and locating svcd and its pid.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char denied[640];

const char *ctl_denied(void)
{
    return denied[0] ? denied : NULL;
}

/* connect() said EACCES: the file mode (0660) kept us out; say who may get in. */
static void explain_eacces(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(denied, sizeof(denied), "permission denied on the control socket %s", path);
        return;
    }
    struct group *gr = getgrgid(st.st_gid);
    char gname[64];
    if (gr)
        snprintf(gname, sizeof(gname), "%s", gr->gr_name);
    else
        snprintf(gname, sizeof(gname), "%d", (int)st.st_gid);
    snprintf(denied, sizeof(denied),
             "permission denied on the control socket %s (mode %04o, owner uid %d, group %s): "
             "run svc as root, as svcd's user, or as a member of group '%s'",
             path, (unsigned)(st.st_mode & 07777), (int)st.st_uid, gname, gname);
}

/* The master refused our credentials: {"ok":false,"code":"PERMISSION","error":...}. */
static int refused(const struct buf *reply)
{
    json_t *doc = json_loadb(reply->data, reply->len, 0, NULL);
    const char *code = json_string_value(json_object_get(doc, "code"));
    int is = code && strcmp(code, "PERMISSION") == 0;
    if (is) {
        const char *e = json_string_value(json_object_get(doc, "error"));
        snprintf(denied, sizeof(denied), "svcd refused this user: %s", e ? e : "permission denied");
    }
    json_decref(doc);
    return is;
}

int ctl_request(const struct svcd_config *cfg, const char *cmd, struct buf *reply, int timeout_ms)
{
    denied[0] = '\0';
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/svcd.sock", cfg->run_dir);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        if (e == EACCES || e == EPERM) {
            explain_eacces(sa.sun_path);
            e = EACCES;
        }
        close(fd);
        errno = e;
        return -1;
    }
    char line[128];
    int len = snprintf(line, sizeof(line), "%s\n", cmd);
    /* A master refusing our credentials answers and closes without reading: the
     * send may then fail with EPIPE while its reply is still there to read. */
    if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len && errno != EPIPE && errno != ECONNRESET) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            errno = ETIMEDOUT;
            return -1;
        }
        char tmp[4096];
        ssize_t got = read(fd, tmp, sizeof(tmp));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        buf_append(reply, tmp, (size_t)got);
    }
    close(fd);
    if (reply->len && refused(reply)) {
        errno = EACCES;
        return -1;
    }
    return reply->len ? 0 : -1;
}

long ctl_running_pid(const struct svcd_config *cfg)
{
    char path[CONFIG_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/svcd.pid", cfg->run_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    long pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
        char text[32] = {0};
        if (read(fd, text, sizeof(text) - 1) > 0) pid = strtol(text, NULL, 10);
        if (pid <= 0) pid = -1;
    }
    close(fd);
    return pid;
}

void ctl_svcd_path(char *out, size_t len)
{
    const char *env = getenv("SVCD_BIN");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[CONFIG_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, len, "%s/svcd", self);
            if (access(out, X_OK) == 0) return;
            snprintf(out, len, "%s/../sbin/svcd", self);
            if (access(out, X_OK) == 0) return;
        }
    }
    snprintf(out, len, "%s", access("/usr/sbin/svcd", X_OK) == 0 ? "/usr/sbin/svcd" : "svcd");
}
