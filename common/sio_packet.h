/*
 * sio_packet.h — the Engine.IO v4 and Socket.IO v5 wire formats, as a pure codec.
 *
 * No I/O and no session state here: bytes in, packets out, and back. The worker's
 * Engine.IO server (worker/eio_*.c) and Socket.IO layer (worker/sio_*.c) are the
 * only users; the fuzz target test/fuzz/fuzz_sio.c drives every decoder with
 * arbitrary input. Every decoder is strict and total: malformed input returns a
 * negative SIO_E_* code (never a crash, never a partial packet to free).
 *
 * Engine.IO v4 (https://socket.io/docs/v4/engine-io-protocol/):
 *   packet   = type digit '0'..'6' (open close ping pong message upgrade noop) + data
 *   polling  = packets joined by the record separator 0x1e; a binary packet travels
 *              as 'b' + base64(data)
 *   websocket= one packet per frame; a binary frame is a binary message packet
 * Socket.IO v5 (https://socket.io/docs/v4/socket-io-protocol/), inside a message:
 *   type digit '0'..'6' (CONNECT DISCONNECT EVENT ACK CONNECT_ERROR BINARY_EVENT
 *   BINARY_ACK) [attachments '-'] [namespace ','] [ack id] [JSON]
 */
#ifndef SVCD_SIO_PACKET_H
#define SVCD_SIO_PACKET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SIO_NSP_MAX         128 /* bytes of a namespace name, NUL included */
#define SIO_MAX_ATTACHMENTS 16  /* binary attachments of one packet */
#define SIO_ACK_ID_MAX      ((int64_t)1 << 53)

enum sio_err {
    SIO_OK = 0,
    SIO_E_EMPTY = -1,       /* no byte where a packet was expected */
    SIO_E_TYPE = -2,        /* unknown packet type */
    SIO_E_BASE64 = -3,      /* bad base64 in a 'b' polling packet */
    SIO_E_NSP = -4,         /* namespace not terminated, too long or not printable */
    SIO_E_ACK_ID = -5,      /* ack id too large */
    SIO_E_JSON = -6,        /* payload is not valid JSON */
    SIO_E_ATTACHMENTS = -7, /* bad or too many binary attachments */
    SIO_E_SHAPE = -8,       /* valid JSON of the wrong shape for this packet type */
    SIO_E_NOMEM = -9
};

/* A short, fixed description ("invalid JSON payload"). */
const char *sio_strerror(int err);

/* ---- Engine.IO ------------------------------------------------------------ */

enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6
};

struct eio_packet {
    enum eio_type type;
    int binary;       /* data is binary (a base64 'b' packet or a binary frame) */
    const char *data; /* into the input, or into the caller's scratch buffer (binary) */
    size_t len;
};

/* One packet of a WebSocket text frame. */
int eio_decode_text(const char *in, size_t len, struct eio_packet *out);

/*
 * The next packet of a polling payload (packets separated by 0x1e). *pos starts
 * at 0; returns 1 and advances *pos while packets remain, 0 at the end, or a
 * SIO_E_* code. Base64 packets are decoded into `scratch` (reset first), so
 * out->data is valid until the next call.
 */
int eio_payload_next(const char *in, size_t len, size_t *pos, struct eio_packet *out,
                     struct buf *scratch);

/* Append one packet: as a WebSocket text frame body (type digit + data). */
void eio_encode(struct buf *out, enum eio_type type, const char *data, size_t len);
/* Append one packet to a polling payload (0x1e first when `out` is not empty). */
void eio_payload_add(struct buf *out, enum eio_type type, const char *data, size_t len, int binary);

/* Standard base64 with padding. decode returns the length, or -1 when invalid. */
void sio_base64_encode(struct buf *out, const unsigned char *in, size_t len);
long sio_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/* ---- Socket.IO ------------------------------------------------------------ */

enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6
};

struct sio_packet {
    enum sio_type type;
    char nsp[SIO_NSP_MAX]; /* "/" when absent */
    int64_t ack_id;        /* -1: none */
    int attachments;       /* binary packets: how many binary messages follow */
    json_t *data;          /* owned; NULL when absent */
};

/*
 * Decode a Socket.IO packet (the data of an Engine.IO message). Validates the
 * payload shape per type as the reference parser does: CONNECT data is an object
 * or absent, DISCONNECT has none, EVENT is a non-empty array starting with a
 * string (the event name), ACK is an array with an id, CONNECT_ERROR an object or
 * a string. On success free with sio_packet_clear(); on error nothing is held.
 */
int sio_decode(const char *in, size_t len, struct sio_packet *out);
void sio_packet_clear(struct sio_packet *p);

/* Append the text form of a packet; `data` may be NULL; `json_text` (already
 * serialized JSON, may be NULL) is used instead of `data` when given. */
int sio_encode(struct buf *out, enum sio_type type, const char *nsp, int64_t ack_id,
               const json_t *data);
void sio_encode_raw(struct buf *out, enum sio_type type, const char *nsp, int64_t ack_id,
                    const char *json_text, size_t json_len);

/* Replace every {"_placeholder":true,"num":k} in `data` by a new reference to
 * parts[k] (binary attachments, k < n). Returns 0, or SIO_E_ATTACHMENTS when a
 * placeholder is malformed or points past n. */
int sio_fill_placeholders(json_t *data, json_t *const *parts, int n);

#endif
