/*
 * log.h — the one logger of every svcd process.
 *
 * Lines go to the configured file (O_APPEND, so processes can share it; each line
 * is one write(2) and stays whole) and, in the foreground, to stderr. Text or JSON
 * lines, a level filter, and a role tag ("master", "worker 1", ...) so one file
 * tells which process said what. log_reopen() serves SIGUSR1 after logrotate.
 */
#ifndef SVCD_LOG_H
#define SVCD_LOG_H

#include "config.h"

/* Configure from the loaded config. `to_stderr` mirrors lines to stderr. Returns
 * 0, or -1 with errno when the file cannot be opened. */
int log_open(const char *file, enum log_format format, enum log_level level, int to_stderr);
int log_reopen(void);
void log_close(void);
void log_set_role(const char *role); /* "master", "worker 2", "coordinator" */
void log_set_stderr(int on);         /* 0 never, 1 every line, 2 warnings and errors only */

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* One access-log line (level info, kind "access"): method path status bytes ms addr. */
void log_access(const char *remote, const char *method, const char *path, int status,
                unsigned long long bytes, double ms, const char *user_agent);

#endif
