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
    IPC_APP = 16,        /* first type owned by application features (chat, preview, ...) */

    /* ---- preview registry, proxied WebSocket tracking, room events (issue 4) ------
     * Types 32..47. Payloads are JSON objects (UTF-8, no NUL). The coordinator owns
     * the registry; workers keep a copy and re-announce it (and their open tunnels)
     * on every new coordinator link, so a restarted coordinator is rebuilt from them.
     *   PREVIEW_SET    worker|master -> coord  {"projectId","userId","port","type",
     *                  "startedAt","source","up"?}: register or replace an entry
     *   PREVIEW_DEL    worker|master -> coord  {"projectId","userId","reason"}
     *   PREVIEW_DOWN   worker -> coord  {"projectId","userId","port"}: passive mark,
     *                  the worker saw ECONNREFUSED on that port
     *   PREVIEW_STATE  coord -> workers  full entry incl. "up": upsert (sent to every
     *                  worker on change, and the whole table to a newly linked one)
     *   PREVIEW_GONE   coord -> workers  {"projectId","userId"}: entry removed
     *   TUNNEL_OPEN    worker -> coord  {"id",...}: a proxied WebSocket opened
     *   TUNNEL_CLOSE   worker -> coord  {"id"}
     *   CONNS_QUERY    worker -> coord  {"q":n}: /debug/connections asks
     *   CONNS_REPLY    coord -> worker  {"q":n,"totalConnections",...}
     *   ROOM_EVENT     coord -> workers {"room","event","data"}: a Socket.IO room
     *                  event (previewServerStopped/Started to "project-<id>"); the
     *                  chat feature delivers it, until then workers ignore it */
    IPC_PREVIEW_SET = 32,
    IPC_PREVIEW_DEL = 33,
    IPC_PREVIEW_DOWN = 34,
    IPC_PREVIEW_STATE = 35,
    IPC_PREVIEW_GONE = 36,
    IPC_TUNNEL_OPEN = 37,
    IPC_TUNNEL_CLOSE = 38,
    IPC_CONNS_QUERY = 39,
    IPC_CONNS_REPLY = 40,
    IPC_ROOM_EVENT = 41,

    /* ---- chat: Socket.IO across workers (issue 5) -----------------------------
     * Types IPC_APP+32 .. IPC_APP+63 (48..79); layout and meaning in
     * coordinator/chat_proto.h. Payloads are NUL-separated fields. */
    IPC_CHAT_FIRST = IPC_APP + 32,
    IPC_CHAT_LAST = IPC_APP + 63,
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
