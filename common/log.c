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
#include <pthread.h>
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
    int pid; /* getpid() is a system call; a line per request should not cost one */
} L = {.fd = -1, .to_stderr = 1, .level = LOG_INFO, .role = "svcd"};

static void after_fork_child(void)
{
    L.pid = (int)getpid();
}

static void pid_init(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
    L.pid = (int)getpid();
}

static int my_pid(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pid_init);
    return L.pid;
}

static const char *level_name[] = {"debug", "info", "warn", "error"};

static int open_file(const char *file)
{
    return open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_open(const char *file, enum log_format format, enum log_level level, int to_stderr)
{
    L.format = format;
    L.level = level;
    /* With a log file, the foreground mirror carries only problems: the file has
     * every line, and under systemd the journal should not hold a second copy of
     * each access line (nginx behaves the same way). */
    L.to_stderr = (to_stderr == 1 && file && *file) ? 2 : to_stderr;
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

/* ISO 8601 UTC with milliseconds; the date and time of day are formatted once per
 * second per thread (a busy worker logs thousands of lines a second). */
static void timestamp(char *out, size_t len)
{
    static _Thread_local time_t last = (time_t)-1;
    static _Thread_local char head[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        if (!strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm)) head[0] = '\0';
        last = ts.tv_sec;
    }
    snprintf(out, len, "%s.%03ldZ", head, ts.tv_nsec / 1000000);
}

/* Append `s` with control characters (and `also`, when not NUL) replaced by '?', so
 * client-supplied text cannot forge extra log lines. */
static void put_clean(struct buf *b, const char *s, char also)
{
    size_t start = b->len;
    buf_puts(b, s);
    if (buf_failed(b)) return;
    for (size_t i = start; i < b->len; i++) {
        unsigned char ch = (unsigned char)b->data[i];
        if (ch < 0x20 || ch == 0x7f || (also && ch == (unsigned char)also)) b->data[i] = '?';
    }
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
                   level_name[level], my_pid());
        buf_json_str(&b, L.role);
        buf_puts(&b, ",\"msg\":");
        buf_json_str(&b, msg);
        buf_puts(&b, "}\n");
    } else {
        buf_printf(&b, "%s %-5s [%s %d] %s\n", ts, level_name[level], L.role, my_pid(), msg);
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
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"pid\":%d,\"role\":", ts, my_pid());
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
        buf_printf(&b, "%s info  [%s %d] access %s \"%s ", ts, L.role, my_pid(), remote, method);
        put_clean(&b, path, 0);
        buf_printf(&b, "\" %d %llu %.3fms \"", status, bytes, ms);
        put_clean(&b, user_agent ? user_agent : "-", '"');
        buf_puts(&b, "\"\n");
    }
    emit(&b, LOG_INFO);
    buf_free(&b);
}
