/*
 * chat_proto.h — the chat frames between workers and the coordinator (issue 5).
 *
 * Frame types live in IPC_CHAT_FIRST..IPC_CHAT_LAST (common/ipc.h). A payload is a
 * list of fields, each but the last NUL-terminated; the last one runs to the end of
 * the frame (so it may hold JSON or raw HTTP bytes). Field lists are given as
 * "a | b | c" below.
 *
 * The coordinator holds only what workers can rebuild: after a coordinator restart
 * every worker sends HELLO and re-announces its users (USER_ADD), the rooms it has
 * members in (JOIN) and its random-connect state (RANDOM restore/queue).
 *
 *   worker -> coordinator
 *     HELLO        generation           forget everything this slot announced before
 *     USER_ADD     user | sid | at      a user connected here (at: wall-clock ms of the
 *                                       login); an older connection of the same user
 *                                       anywhere (any worker, any host) gets KICK
 *     USER_DEL     user | sid           that connection ended
 *     JOIN         room                 this worker has (now) members in room
 *     LEAVE        room                 ... no longer
 *     ROOM_EMIT    room | store | event | json
 *                                       deliver 2["event",json] to room members on the
 *                                       other workers; store "1": keep json in the
 *                                       room's history (in-memory fallback, see
 *                                       chat_coord.c)
 *     USER_EMIT    user | event | json  deliver to that user's connection
 *     RANDOM       op | user [| partner | room]
 *                                       op: join, leave, next, pair (restore a pair
 *                                       after a coordinator restart)
 *     SIGNAL       from | to | json     relayed as "signal" only when from and to
 *                                       are matched partners
 *     HISTORY_REQ  qid | room | before | limit
 *     HANDOFF      slot | bytes  + fd   an HTTP request for a session owned by slot,
 *                                       with the client socket (see eio_server.c)
 *   coordinator -> worker
 *     KICK         user | sid           that connection was replaced: disconnect it
 *     ROOM_EMIT    room | event | json
 *     USER_EMIT    user | event | json
 *     MATCHED      user | partner | room
 *     PARTNER_LEFT user | partner | room
 *     HISTORY_RES  qid | json           {"messages":[...]} or {"error":...}
 *     HANDOFF      bytes  + fd
 */
#ifndef SVCD_CHAT_PROTO_H
#define SVCD_CHAT_PROTO_H

#include <stddef.h>

#include "../common/buf.h"
#include "../common/ipc.h"

enum chat_frame {
    CHAT_HELLO = IPC_CHAT_FIRST,
    CHAT_USER_ADD,
    CHAT_USER_DEL,
    CHAT_JOIN,
    CHAT_LEAVE,
    CHAT_ROOM_EMIT,
    CHAT_USER_EMIT,
    CHAT_RANDOM,
    CHAT_SIGNAL,
    CHAT_HISTORY_REQ,
    CHAT_HISTORY_RES,
    CHAT_HANDOFF,
    CHAT_KICK,
    CHAT_MATCHED,
    CHAT_PARTNER_LEFT,
};

#define CHAT_MAX_FIELDS 6
/* The largest frame the chat sends: below IPC_MAX_FRAME and a unix socket's
 * default send buffer. */
#define CHAT_FRAME_MAX (192 * 1024)

struct chat_fields {
    int n;
    const char *f[CHAT_MAX_FIELDS];
    size_t len[CHAT_MAX_FIELDS];
};

/* Split `payload` into exactly `want` fields (the last takes the rest). Returns 0,
 * or -1 when the frame has fewer. Fields but the last are NUL-terminated in place. */
int chat_fields_split(const char *payload, size_t len, int want, struct chat_fields *out);
/* Append n fields, each given as two arguments (const char *, size_t length;
 * length (size_t)-1: strlen); every field but the last gets a NUL after it. */
void chat_fields_build(struct buf *out, int n, ...);
/*
 * A relayed Socket.IO event with binary attachments travels as one field:
 *   "B<n>,<len0>,...,<len n-1>;" + json + the n attachments back to back
 * (n 1..CHAT_BINARY_MAX_PARTS, lengths in decimal digits only). JSON text never
 * starts with 'B', so plain and binary payloads share the frame types.
 */
#define CHAT_BINARY_MAX_PARTS 16 /* = SIO_MAX_ATTACHMENTS */

struct chat_binary {
    const char *json;
    size_t json_len;
    int n;
    const char *part[CHAT_BINARY_MAX_PARTS];
    size_t part_len[CHAT_BINARY_MAX_PARTS];
};

/* Append the field for json + n attachments. */
void chat_binary_build(struct buf *out, const char *json, size_t json_len, int n,
                       const char *const *part, const size_t *part_len);
/* Parse a field of `len` bytes (need not be NUL-terminated; nothing past `len` is
 * read). Returns 1 with *out pointing into `f`, 0 when it is plain JSON (not
 * starting with 'B'), -1 when it starts with 'B' but is malformed. */
int chat_binary_parse(const char *f, size_t len, struct chat_binary *out);

#define CF(s)     (const char *)(s), (size_t)-1
#define CFN(s, n) (const char *)(s), (size_t)(n)

#endif
