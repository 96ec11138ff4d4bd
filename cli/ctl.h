/*
 * ctl.h — what `svc` needs to talk to a running master and to find svcd.
 */
#ifndef SVCD_CTL_H
#define SVCD_CTL_H

#include "../common/buf.h"
#include "../common/config.h"

/* Send `cmd` over <run_dir>/svcd.sock and read the whole reply into `reply`.
 * Returns 0, or -1 when no master answers (errno from connect). errno EACCES: the
 * socket's mode or the master refused this user; ctl_denied() then says why. */
int ctl_request(const struct svcd_config *cfg, const char *cmd, struct buf *reply, int timeout_ms);
/* Why the last ctl_request() was denied (permission), or NULL. */
const char *ctl_denied(void);
/* Pid of the master holding the pidfile lock: >0 running, 0 not running. */
long ctl_running_pid(const struct svcd_config *cfg);
/* Path of the svcd binary: $SVCD_BIN, next to this svc, /usr/sbin/svcd, or "svcd". */
void ctl_svcd_path(char *out, size_t len);

int logs_show(const struct svcd_config *cfg, long lines, int follow);
int status_render(const char *json, int as_json);

#endif
