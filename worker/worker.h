/*
 * worker.h — entry point of the traffic process.
 *
 * The master forks a worker with everything it needs already open: the listening
 * sockets (shared by every worker; each worker's libev loop accepts on them), its
 * channel to the master, its link to the coordinator and its scoreboard slot. The
 * worker never touches the master's state; it returns an exit status.
 *
 * Signals a worker obeys (the master sends them):
 *   SIGTERM  graceful drain: stop accepting, close idle keep-alive connections,
 *            finish in-flight requests (answering with "Connection: close"), exit 0
 *            when no connection is left. The master enforces timeouts.shutdown.
 *   SIGUSR1  reopen the log file.
 *   SIGINT, SIGHUP, SIGPIPE  ignored (the master owns them).
 */
#ifndef SVCD_WORKER_H
#define SVCD_WORKER_H

#include "../common/config.h"
#include "../common/scoreboard.h"

struct worker_args {
    const struct svcd_config *cfg;
    const int *listen_fds; /* non-blocking, CLOEXEC cleared; one per cfg->listen[i] */
    int nlisten;
    struct scoreboard *sb;
    int slot;  /* index into sb->slot[] this worker owns */
    int index; /* worker number within its generation, 0-based */
    int generation;
    int master_fd;          /* ipc channel to the master (frames, see ipc.h) */
    int coord_fd;           /* ipc link to the coordinator, -1 if none yet */
    struct tls_server *tls; /* TLS contexts of cfg's TLS listeners, or NULL (tls.h) */
};

/* Run the worker until drained; returns the process exit status. */
int worker_main(const struct worker_args *args);

#endif
