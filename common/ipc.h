/*
 * ipc.h — framing for the unix socketpairs between svcd processes.
 *
 * Every process pair talks in frames: a 4-byte big-endian payload length, a 1-byte
 * type, then the payload. A frame may carry one file descriptor (SCM_RIGHTS), which
 * is how the master hands a worker the new coordinator link after either side is
 * replaced. Sockets are SOCK_SEQPACKET, so one sendmsg is one frame and a reader
 * never sees half of one; the length prefix still guards against a short read.
 */
#ifndef SVCD_IPC_H
#define SVCD_IPC_H

#include <stddef.h>
#include <stdint.h>

#define IPC_MAX_FRAME (256 * 1024)

enum ipc_type {
    IPC_PING = 1, /* heart-beat / liveness probe, empty payload */
    IPC_PONG = 2,
    IPC_COORD_LINK = 3,  /* master -> worker: fd attached is the new coordinator link */
    IPC_WORKER_LINK = 4, /* master -> coordinator: fd attached is a worker link; payload "slot" */
    IPC_APP = 16         /* first type owned by application features (chat, preview, ...) */
};

/* Create a SOCK_SEQPACKET|SOCK_CLOEXEC socketpair. */
int ipc_pair(int sv[2]);
/* Send one frame; `fd` < 0 means none. Returns 0, or -1 with errno (EAGAIN on a full
 * non-blocking socket). */
int ipc_send(int sock, uint8_t type, const void *payload, size_t len, int fd);
/* Receive one frame into `payload` (capacity `cap`). Returns payload length (>= 0)
 * and sets *type and *fd (-1 if none), 0 with *type == 0 at EOF, -1 with errno. */
long ipc_recv(int sock, uint8_t *type, void *payload, size_t cap, int *fd);

#endif
