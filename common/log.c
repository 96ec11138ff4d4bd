/*
 * log.c — the logger every process shares (see log.h).
 *
 * One process-wide logger state: this is the "one per-process context" the style
 * guide allows, since log calls come from every layer and threading a handle
 * through all of them would add noise without adding safety. Each line is built
 * in memory and written with a single write(2) to an O_APPEND descriptor, so lines
 * from several processes never interleave mid-line.
 */
#include "log.h"
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct {
    int fd;
    int to_stderr;
    enum log_format format;
    enum log_level level;
    char file[CONFIG_PATH_MAX];
    char role[32];
} L = {.fd = -1, .to_stderr = 1, .level = LOG_INFO, .role = "svcd"};

static const char *level_name[] = {"debug", "info", "warn", "error"};

static int open_file(const char *file)
{
    return open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_open(const char *file, enum log_format format, enum log_level level, int to_stderr)
{
    L.format = format;
    L.level = level;
    L.to_stderr = to_stderr;
    if (!file || !*file) {
        if (L.fd >= 0) close(L.fd);
        L.fd = -1;
        L.file[0] = '\0';
        return 0;
    }
    int fd = open_file(file);
    if (fd < 0) return -1;
    if (L.fd >= 0) close(L.fd);
    L.fd = fd;
    snprintf(L.file, sizeof(L.file), "%s", file);
    return 0;
}

int log_reopen(void)
{
    if (!L.file[0]) return 0;
    int fd = open_file(L.file);
    if (fd < 0) return -1;
    if (L.fd >= 0) close(L.fd);
    L.fd = fd;
    return 0;
}

void log_close(void)
{
    if (L.fd >= 0) close(L.fd);
    L.fd = -1;
}

void log_set_role(const char *role)
{
    snprintf(L.role, sizeof(L.role), "%s", role);
}
void log_set_stderr(int on)
{
    L.to_stderr = on;
}

static void timestamp(char *out, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(struct buf *b, enum log_level level)
{
    if (buf_failed(b)) return;
    int saved = errno;
    if (L.fd >= 0) {
        ssize_t r = write(L.fd, b->data, b->len);
        (void)r;
    }
    if (L.to_stderr == 1 || (L.to_stderr == 2 && level >= LOG_WARN)) {
        ssize_t r = write(STDERR_FILENO, b->data, b->len);
        (void)r;
    }
    errno = saved;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < L.level) return;
    char ts[40], msg[2048];
    timestamp(ts, sizeof(ts));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct buf b;
    buf_init(&b);
    if (L.format == LOG_FORMAT_JSON) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"role\":", ts,
                   level_name[level], (int)getpid());
        buf_json_str(&b, L.role);
        buf_puts(&b, ",\"msg\":");
        buf_json_str(&b, msg);
        buf_puts(&b, "}\n");
    } else {
        buf_printf(&b, "%s %-5s [%s %d] %s\n", ts, level_name[level], L.role, (int)getpid(), msg);
    }
    emit(&b, level);
    buf_free(&b);
}

void log_access(const char *remote, const char *method, const char *path, int status,
                unsigned long long bytes, double ms, const char *user_agent)
{
    if (LOG_INFO < L.level) return;
    char ts[40];
    timestamp(ts, sizeof(ts));
    struct buf b;
    buf_init(&b);
    if (L.format == LOG_FORMAT_JSON) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"pid\":%d,\"role\":", ts, (int)getpid());
        buf_json_str(&b, L.role);
        buf_puts(&b, ",\"kind\":\"access\",\"remote\":");
        buf_json_str(&b, remote);
        buf_puts(&b, ",\"method\":");
        buf_json_str(&b, method);
        buf_puts(&b, ",\"path\":");
        buf_json_str(&b, path);
        buf_printf(&b, ",\"status\":%d,\"bytes\":%llu,\"ms\":%.3f,\"ua\":", status, bytes, ms);
        buf_json_str(&b, user_agent ? user_agent : "");
        buf_puts(&b, "}\n");
    } else {
        /* Control characters in client-supplied text are replaced so a hostile
         * request cannot forge extra log lines. */
        struct buf p;
        buf_init(&p);
        buf_puts(&p, path);
        for (size_t i = 0; i < p.len; i++)
            if ((unsigned char)p.data[i] < 0x20 || p.data[i] == 0x7f) p.data[i] = '?';
        struct buf u;
        buf_init(&u);
        buf_puts(&u, user_agent ? user_agent : "-");
        for (size_t i = 0; i < u.len; i++)
            if ((unsigned char)u.data[i] < 0x20 || u.data[i] == '"' || u.data[i] == 0x7f)
                u.data[i] = '?';
        buf_printf(&b, "%s info  [%s %d] access %s \"%s %s\" %d %llu %.3fms \"%s\"\n", ts, L.role,
                   (int)getpid(), remote, method, p.data ? p.data : "", status, bytes, ms,
                   u.data ? u.data : "-");
        buf_free(&p);
        buf_free(&u);
    }
    emit(&b, LOG_INFO);
    buf_free(&b);
}
