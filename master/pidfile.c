/*
 * pidfile.c — one svcd per run_dir, with stale pidfiles detected, not trusted.
 *
 * The running master holds an exclusive flock(2) on the pidfile for its whole
 * life. A pidfile nobody holds a lock on is stale (the master was kill -9'd or the
 * machine rebooted) and is simply taken over; one that is locked names the
 * running master: "already running (pid N)".
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

pid_t pidfile_read_running(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    pid_t pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
        char text[32] = {0};
        ssize_t n = read(fd, text, sizeof(text) - 1);
        if (n > 0) pid = (pid_t)strtol(text, NULL, 10);
        if (pid <= 0) pid = -1; /* locked but unreadable: someone is starting up */
    }
    close(fd);
    return pid;
}

int pidfile_acquire(struct master *m, char *err, size_t errlen)
{
    int fd = open(m->pidfile, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open pidfile %s: %s; check run_dir and its permissions",
                 m->pidfile, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char text[32] = {0};
        ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
        long pid = n > 0 ? strtol(text, NULL, 10) : 0;
        if (pid > 0)
            snprintf(err, errlen, "already running (pid %ld); use `svc stop` or `svc reload`", pid);
        else
            snprintf(err, errlen, "already running (another svcd is starting with %s)", m->pidfile);
        close(fd);
        return -1;
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        snprintf(err, errlen, "cannot write pidfile %s: %s", m->pidfile, strerror(errno));
        close(fd);
        return -1;
    }
    m->pidfile_fd = fd;
    return 0;
}

void pidfile_release(struct master *m)
{
    if (m->pidfile_fd < 0) return;
    unlink(m->pidfile);
    close(m->pidfile_fd);
    m->pidfile_fd = -1;
}
