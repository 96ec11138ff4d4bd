/*
 * chat_coord.h — the coordinator's half of the chat (issue 5): which worker holds
 * each user's one live connection, which workers have members in each room (for
 * fan-out), the random-connect queue and pairs, and, until the storage pool is
 * wired in, an in-memory room history. Frames are described in chat_proto.h.
 */
#ifndef SVCD_CHAT_COORD_H
#define SVCD_CHAT_COORD_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

struct chat_coord;

struct chat_coord *chat_coord_new(struct ev_loop *loop);
void chat_coord_free(struct chat_coord *cc);

/* Share chat with the other hosts on the same MongoDB (cluster_bus.h): room
 * broadcasts, one login per user, pushes to users connected elsewhere. */
int chat_coord_cluster_start(struct chat_coord *cc, const char *mongodb_uri, char *err,
                             size_t errlen);

/* A worker link was added / closed (the worker died or exited). */
void chat_coord_link_up(struct chat_coord *cc, int slot, int fd);
void chat_coord_link_down(struct chat_coord *cc, int slot);

/* A frame in IPC_CHAT_FIRST..IPC_CHAT_LAST from the worker in `slot`; owns `fd`. */
void chat_coord_frame(struct chat_coord *cc, int slot, uint8_t type, const char *payload,
                      size_t len, int fd);

#endif
