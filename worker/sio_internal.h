/*
 * sio_internal.h — what the Engine.IO transport (eio_server.c) and the Socket.IO
 * chat layer (sio_chat.c) share: the session and the per-worker context.
 */
#ifndef SVCD_SIO_INTERNAL_H
#define SVCD_SIO_INTERNAL_H

#include <ev.h>
#include <jansson.h>

#include "../common/buf.h"
#include "../common/jwt.h"
#include "../common/sio_packet.h"
#include "../coordinator/chat_map.h"
#include "../coordinator/chat_queue.h"
#include "http_request.h"
#include "worker_ctx.h"

#define EIO_SID_LEN 24 /* "0a" (owning slot, hex) + 21 random characters + NUL */

enum eio_transport { EIO_T_POLLING, EIO_T_WS };

struct msg_task;
struct eio_ws; /* eio_server.c: one WebSocket (active transport or upgrade probe) */

struct eio_session {
    struct sio_ctx *ctx;
    struct eio_session *prev, *next; /* ctx->all */
    char sid[EIO_SID_LEN];
    enum eio_transport transport;
    int dead;                      /* torn down; freed from the reap timer */
    int closing;                   /* close packet queued: the next poll ends the session */
    struct buf outq;               /* polling: packets waiting for the next GET (0x1e-joined) */
    struct http_request *poll_req; /* the held GET */
    struct eio_ws *ws, *probe;
    ev_timer ping, reap;
    int awaiting_pong;

    /* Socket.IO, namespace "/" */
    int connected;
    int64_t connected_at_ms; /* wall clock: which of two logins is newer, across hosts */
    char sio_sid[EIO_SID_LEN];
    char user[JWT_USER_MAX];
    char **rooms;
    int nrooms, caprooms;
    char partner[JWT_USER_MAX]; /* random connect */
    char pair_room[96];
    int random_waiting;
    struct sio_packet pending; /* a binary packet waiting for its attachments */
    int pending_left, nparts;
    json_t *parts[SIO_MAX_ATTACHMENTS]; /* raw attachment bytes (json_stringn_nocheck) */
    int bin_relay; /* dispatching a BINARY_EVENT whose attachments are relayed as binary */
    struct msg_task *mq_head, *mq_tail; /* messages waiting for the storage pool */
    int mq_inflight, mq_len;
    double tokens; /* flood control: packets allowed now */
    ev_tstamp tokens_at;
};

struct sio_ctx {
    struct worker_ctx *w;
    struct chat_map sessions; /* sid -> session (live ones) */
    struct eio_session *all;  /* live sessions */
    struct eio_session *dead; /* killed, waiting for their reap timer */
    struct chat_map users;    /* user -> connected session on this worker */
    struct chat_map rooms;    /* room -> struct sio_room */
    struct chatq q;           /* frames to the coordinator */
    int linked;
    unsigned long long msg_seq, qid_seq;
    struct chat_map waiting;            /* history query id -> struct hist_wait */
    double ping_interval, ping_timeout; /* seconds */
    struct buf tmp;
};

struct sio_room {
    struct eio_session **m;
    size_t n, cap;
};

/* eio_server.c */
void eio_send(struct eio_session *s, const char *sio_packet, size_t len);
/* A Socket.IO attachment: raw bytes as an Engine.IO binary message. */
void eio_send_binary(struct eio_session *s, const void *data, size_t len);
/* Flush what is queued, then end the session (ws close `code`, or the Engine.IO
 * close packet on polling). */
void eio_close(struct eio_session *s, int code, const char *why);
struct eio_session *eio_find(struct sio_ctx *ctx, const char *sid);

/* sio_chat.c */
/* A complete Engine.IO message. Returns 0, or -1 on a protocol violation (the
 * caller ends the session). */
int sio_on_message(struct eio_session *s, int binary, const char *data, size_t len);
/* The session ended: leave rooms, unregister the user, random connect. */
void sio_on_close(struct eio_session *s);
void sio_reannounce(struct sio_ctx *ctx);
void sio_chat_frame(struct sio_ctx *ctx, uint8_t type, const char *payload, size_t len, int fd);
void sio_ctx_free_chat(struct sio_ctx *ctx);
/* eio_server.c frees a session: drop its messages not yet handed to storage */
void sio_session_freed(struct eio_session *s);

#endif
