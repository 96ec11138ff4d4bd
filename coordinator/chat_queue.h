/*
 * chat_queue.h — an outgoing frame queue on a SOCK_SEQPACKET link.
 *
 * ipc_send() on a non-blocking link fails with EAGAIN when the peer is slow (a
 * fan-out burst, thousands of re-announcements after a coordinator restart). The
 * chat must neither block its loop nor lose frames then, so frames that cannot go
 * out at once wait here, in order, and an EV_WRITE watcher sends them when the
 * link drains. A passed fd is dup()ed while it waits. Used on both ends of the
 * worker <-> coordinator links (the link's reader stays with its owner; this only
 * writes).
 */
#ifndef SVCD_CHAT_QUEUE_H
#define SVCD_CHAT_QUEUE_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#define CHAT_QUEUE_MAX (64u * 1024 * 1024) /* bytes waiting before frames are dropped */

struct chatq_frame;

struct chatq {
    struct ev_loop *loop;
    int fd; /* -1: detached, frames are dropped */
    ev_io wio;
    struct chatq_frame *head, *tail;
    size_t bytes;
    unsigned long long dropped;
};

void chatq_init(struct chatq *q, struct ev_loop *loop);
/* Point the queue at a (new) link; anything queued for the old one is dropped. */
void chatq_attach(struct chatq *q, int fd);
void chatq_detach(struct chatq *q);
/* Send now or queue. `fd` >= 0 is passed with SCM_RIGHTS (the caller keeps its
 * own copy). Returns 0, or -1 when detached, over the bound or out of memory. */
int chatq_send(struct chatq *q, uint8_t type, const void *payload, size_t len, int fd);

#endif
