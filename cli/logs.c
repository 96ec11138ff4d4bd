/*
 * logs.c — `svc logs [-n N] [-f]`: the tail of svcd's log file, optionally followed.
 *
 * Follow mode notices logrotate (the path then names a new inode, or the file
 * shrank) and continues in the new file, like `tail -F`.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop_following;
static void on_sigint(int sig)
{
    (void)sig, stop_following = 1;
}

/* Offset where the last `lines` lines of fd start. */
static off_t tail_offset(int fd, long lines)
{
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0 || lines <= 0) return end < 0 ? 0 : end;
    char block[4096];
    off_t pos = end;
    long seen = 0;
    int first = 1;
    while (pos > 0) {
        size_t chunk = pos > (off_t)sizeof(block) ? sizeof(block) : (size_t)pos;
        pos -= (off_t)chunk;
        if (pread(fd, block, chunk, pos) != (ssize_t)chunk) return 0;
        for (size_t i = chunk; i-- > 0;) {
            if (block[i] != '\n') continue;
            if (first && pos + (off_t)i == end - 1) continue; /* the final newline */
            if (++seen == lines) return pos + (off_t)i + 1;
        }
        first = 0;
    }
    return 0;
}

static void copy_out(int fd, off_t *off)
{
    char tmp[8192];
    ssize_t n;
    while ((n = pread(fd, tmp, sizeof(tmp), *off)) > 0) {
        fwrite(tmp, 1, (size_t)n, stdout);
        *off += n;
    }
    fflush(stdout);
}

int logs_show(const struct svcd_config *cfg, long lines, int follow)
{
    if (!cfg->log.file[0]) {
        fprintf(stderr, "svc: log.file is not set in %s; svcd logs to stderr only\n", cfg->path);
        return 1;
    }
    int fd = open(cfg->log.file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "svc: cannot open %s: %s\n", cfg->log.file, strerror(errno));
        return 1;
    }
    off_t off = tail_offset(fd, lines);
    copy_out(fd, &off);
    if (!follow) {
        close(fd);
        return 0;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    struct stat cur;
    fstat(fd, &cur);
    while (!stop_following) {
        usleep(200 * 1000);
        copy_out(fd, &off);
        struct stat now;
        if (stat(cfg->log.file, &now) == 0 && (now.st_ino != cur.st_ino || now.st_size < off)) {
            int nfd = open(cfg->log.file, O_RDONLY | O_CLOEXEC);
            if (nfd >= 0) {
                copy_out(fd, &off);
                close(fd);
                fd = nfd;
                fstat(fd, &cur);
                off = 0;
            }
        }
    }
    close(fd);
    return 0;
}
