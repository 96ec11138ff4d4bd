/*
 * sio.h — the worker's Socket.IO server (SPEC §7): Engine.IO v4 at /socket.io/
 * (long-polling, WebSocket, the upgrade between them), the Socket.IO v5 layer
 * (namespace "/", JWT handshake, acks) and the chat on top (rooms, messages,
 * random connect, one connection per user), shared across workers through the
 * coordinator (coordinator/chat_coord.c). Design: docs/socketio.md.
 */
#ifndef SVCD_SIO_H
#define SVCD_SIO_H

#include <stddef.h>
#include <stdint.h>

#include "http_request.h"
#include "worker_ctx.h"

int sio_init(struct worker_ctx *w);
/* Worker exit: every session is freed (their connections are gone already). */
void sio_shutdown(struct worker_ctx *w);
/* SIGTERM / reload: every client gets a clean close (WebSocket 1001, or the
 * Engine.IO close packet on its pending poll) and reconnects elsewhere. */
void sio_drain(struct worker_ctx *w);

/* The coordinator link changed (worker.c coord_attach / coord_close). On a new
 * link the worker re-announces its users, rooms and random-connect state. */
void sio_coord_linked(struct worker_ctx *w);
void sio_coord_unlinked(struct worker_ctx *w);
/* A chat frame (IPC_CHAT_FIRST..IPC_CHAT_LAST) from the coordinator; owns fd. */
void sio_coord_frame(struct worker_ctx *w, uint8_t type, const char *payload, size_t len, int fd);
/* IPC_ROOM_EVENT {"room","event","data"} (preview registry): deliver to the
 * room's members on this worker. */
void sio_room_event(struct worker_ctx *w, const char *payload, size_t len);

/* Routes (routes.c): ANY /socket.io/ and GET /api/rooms/:room/messages */
void handle_socketio(struct http_request *req);
void handle_room_messages(struct http_request *req);

/* Emit `event` with one argument (`json`: serialized JSON) to `user`'s live
 * connection, wherever it is (booking:update). No-op when not connected. */
void chat_push_user(struct worker_ctx *w, const char *user, const char *event, const char *json);
/* Emit `event` with one argument to every member of `room` on every worker. */
void chat_emit_room(struct worker_ctx *w, const char *room, const char *event, const char *json);

#endif
