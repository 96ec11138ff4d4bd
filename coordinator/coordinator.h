/*
 * coordinator.h — entry point of the cross-worker process.
 *
 * One coordinator per host holds state that must be shared between workers
 * (user registry, room fan-out, preview registry in later features). It only
 * holds what workers can rebuild: after a crash the master forks a new one,
 * hands it fresh links to every live worker, and workers re-announce.
 */
#ifndef SVCD_COORDINATOR_H
#define SVCD_COORDINATOR_H

#include "../common/config.h"
#include "../common/scoreboard.h"

#define COORD_MAX_LINKS 128

struct coordinator_args {
    const struct svcd_config *cfg;
    struct scoreboard *sb;
    int slot;
    int master_fd;           /* ipc channel to the master */
    const int *worker_fds;   /* links to the workers alive at fork time */
    const int *worker_slots; /* their scoreboard slots */
    int nworkers;
};

int coordinator_main(const struct coordinator_args *args);

#endif
