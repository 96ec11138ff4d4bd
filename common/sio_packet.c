/*
 * sio_packet.c — Engine.IO v4 / Socket.IO v5 codec (see sio_packet.h).
 *
 * Written to be fuzzed: every index is checked against the end of the input
 * before it is read, numbers are bounded before they can overflow, and JSON goes
 * through jansson (strict RFC 8259, with a depth limit), never a home-made parser.
 */
#include "sio_packet.h"

#include <string.h>

const char *sio_strerror(int err)
{
    switch (err) {
    case SIO_OK:
        return "ok";
    case SIO_E_EMPTY:
        return "empty packet";
    case SIO_E_TYPE:
        return "unknown packet type";
    case SIO_E_BASE64:
        return "invalid base64 in a binary packet";
    case SIO_E_NSP:
        return "invalid namespace";
    case SIO_E_ACK_ID:
        return "invalid acknowledgement id";
    case SIO_E_JSON:
        return "invalid JSON payload";
    case SIO_E_ATTACHMENTS:
        return "invalid binary attachments";
    case SIO_E_SHAPE:
        return "payload of the wrong shape for its packet type";
    case SIO_E_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

/* ---- base64 ----------------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void sio_base64_encode(struct buf *out, const unsigned char *in, size_t len)
{
    if (buf_reserve(out, (len + 2) / 3 * 4) < 0) return;
    char *o = out->data + out->len;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = b64chars[v >> 6 & 63];
        *o++ = b64chars[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long sio_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 != 0) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) return -1; /* data after padding */
            v[k] = b64val(c);
            if (v[k] < 0) return -1;
        }
        unsigned bits =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        size_t n = 3 - (size_t)pad;
        if (o + n > cap) return -1;
        out[o++] = (unsigned char)(bits >> 16);
        if (n > 1) out[o++] = (unsigned char)(bits >> 8);
        if (n > 2) out[o++] = (unsigned char)bits;
    }
    return (long)o;
}

/* ---- Engine.IO ---------------------------------------------------------------- */

int eio_decode_text(const char *in, size_t len, struct eio_packet *out)
{
    if (len == 0) return SIO_E_EMPTY;
    if (in[0] < '0' || in[0] > '6') return SIO_E_TYPE;
    out->type = (enum eio_type)(in[0] - '0');
    out->binary = 0;
    out->data = in + 1;
    out->len = len - 1;
    return SIO_OK;
}

int eio_payload_next(const char *in, size_t len, size_t *pos, struct eio_packet *out,
                     struct buf *scratch)
{
    if (*pos > len) return SIO_E_EMPTY;
    if (*pos == len) return *pos == 0 ? SIO_E_EMPTY : 0;
    const char *start = in + *pos;
    size_t rest = len - *pos;
    const char *sep = memchr(start, 0x1e, rest);
    size_t plen = sep ? (size_t)(sep - start) : rest;
    *pos += plen + (sep ? 1 : 0);
    if (sep && *pos == len) return SIO_E_EMPTY; /* trailing separator: an empty packet */
    if (plen == 0) return SIO_E_EMPTY;
    if (start[0] == 'b') {
        size_t blen = plen - 1;
        buf_reset(scratch);
        if (buf_reserve(scratch, blen / 4 * 3 + 3) < 0) return SIO_E_NOMEM;
        long n =
            sio_base64_decode(start + 1, blen, (unsigned char *)scratch->data, scratch->cap - 1);
        if (n < 0) return SIO_E_BASE64;
        scratch->len = (size_t)n;
        scratch->data[n] = '\0';
        out->type = EIO_MESSAGE;
        out->binary = 1;
        out->data = scratch->data;
        out->len = (size_t)n;
        return 1;
    }
    int rc = eio_decode_text(start, plen, out);
    return rc < 0 ? rc : 1;
}

void eio_encode(struct buf *out, enum eio_type type, const char *data, size_t len)
{
    char t = (char)('0' + (int)type);
    buf_append(out, &t, 1);
    if (len) buf_append(out, data, len);
}

void eio_payload_add(struct buf *out, enum eio_type type, const char *data, size_t len, int binary)
{
    if (out->len) buf_append(out, "\x1e", 1);
    if (binary) {
        buf_append(out, "b", 1);
        sio_base64_encode(out, (const unsigned char *)data, len);
        return;
    }
    eio_encode(out, type, data, len);
}

/* ---- Socket.IO ------------------------------------------------------------------ */

static int valid_shape(const struct sio_packet *p)
{
    const json_t *d = p->data;
    switch (p->type) {
    case SIO_CONNECT:
        return d == NULL || json_is_object(d);
    case SIO_DISCONNECT:
        return d == NULL;
    case SIO_CONNECT_ERROR:
        return json_is_object(d) || json_is_string(d);
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        return json_is_array(d) && json_array_size(d) > 0 &&
               (json_is_string(json_array_get(d, 0)) || json_is_integer(json_array_get(d, 0)));
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return json_is_array(d) && p->ack_id >= 0;
    }
    return 0;
}

int sio_decode(const char *in, size_t len, struct sio_packet *out)
{
    memset(out, 0, sizeof(*out));
    out->ack_id = -1;
    strcpy(out->nsp, "/");
    if (len == 0) return SIO_E_EMPTY;
    if (in[0] < '0' || in[0] > '6') return SIO_E_TYPE;
    out->type = (enum sio_type)(in[0] - '0');
    size_t i = 1;

    if (out->type == SIO_BINARY_EVENT || out->type == SIO_BINARY_ACK) {
        long n = 0;
        size_t start = i;
        while (i < len && in[i] >= '0' && in[i] <= '9') {
            n = n * 10 + (in[i] - '0');
            if (n > SIO_MAX_ATTACHMENTS) return SIO_E_ATTACHMENTS;
            i++;
        }
        if (i == start || i >= len || in[i] != '-') return SIO_E_ATTACHMENTS;
        i++;
        out->attachments = (int)n;
    }

    if (i < len && in[i] == '/') {
        size_t start = i;
        while (i < len && in[i] != ',') {
            unsigned char c = (unsigned char)in[i];
            if (c < 0x20 || c == 0x7f) return SIO_E_NSP;
            i++;
        }
        size_t n = i - start;
        if (n >= SIO_NSP_MAX) return SIO_E_NSP;
        memcpy(out->nsp, in + start, n);
        out->nsp[n] = '\0';
        if (i < len) i++; /* the ',' */
    }

    if (i < len && in[i] >= '0' && in[i] <= '9') {
        int64_t id = 0;
        while (i < len && in[i] >= '0' && in[i] <= '9') {
            id = id * 10 + (in[i] - '0');
            if (id >= SIO_ACK_ID_MAX) return SIO_E_ACK_ID;
            i++;
        }
        out->ack_id = id;
    }

    if (i < len) {
        json_error_t jerr;
        out->data = json_loadb(in + i, len - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!out->data) return SIO_E_JSON;
    }
    if (!valid_shape(out)) {
        sio_packet_clear(out);
        return SIO_E_SHAPE;
    }
    return SIO_OK;
}

void sio_packet_clear(struct sio_packet *p)
{
    if (p->data) json_decref(p->data);
    p->data = NULL;
}

static void encode_head(struct buf *out, enum sio_type type, const char *nsp, int64_t ack_id,
                        int attachments)
{
    buf_printf(out, "%d", (int)type);
    if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) buf_printf(out, "%d-", attachments);
    if (nsp && strcmp(nsp, "/") != 0 && nsp[0]) {
        buf_puts(out, nsp);
        buf_append(out, ",", 1);
    }
    if (ack_id >= 0) buf_printf(out, "%lld", (long long)ack_id);
}

void sio_encode_raw(struct buf *out, enum sio_type type, const char *nsp, int64_t ack_id,
                    const char *json_text, size_t json_len)
{
    encode_head(out, type, nsp, ack_id, 0);
    if (json_text && json_len) buf_append(out, json_text, json_len);
}

static int dump_cb(const char *chunk, size_t size, void *arg)
{
    struct buf *b = arg;
    buf_append(b, chunk, size);
    return buf_failed(b) ? -1 : 0;
}

int sio_encode(struct buf *out, enum sio_type type, const char *nsp, int64_t ack_id,
               const json_t *data)
{
    encode_head(out, type, nsp, ack_id, 0);
    if (data && json_dump_callback(data, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
        return SIO_E_NOMEM;
    return buf_failed(out) ? SIO_E_NOMEM : SIO_OK;
}

static int is_placeholder(json_t *v, int *num)
{
    if (!json_is_object(v)) return 0;
    json_t *ph = json_object_get(v, "_placeholder");
    if (!json_is_true(ph)) return 0;
    json_t *n = json_object_get(v, "num");
    *num = json_is_integer(n) ? (int)json_integer_value(n) : -1;
    if (json_is_integer(n) && (json_integer_value(n) < 0 || json_integer_value(n) > 1 << 20))
        *num = -1;
    return 1;
}

static int fill(json_t *v, json_t *const *parts, int n, int depth)
{
    if (depth > 64) return SIO_E_ATTACHMENTS;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            int num;
            if (is_placeholder(e, &num)) {
                if (num < 0 || num >= n) return SIO_E_ATTACHMENTS;
                json_array_set(v, i, parts[num]);
            } else if (fill(e, parts, n, depth + 1) < 0) {
                return SIO_E_ATTACHMENTS;
            }
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, e)
        {
            int num;
            if (is_placeholder(e, &num)) {
                if (num < 0 || num >= n) return SIO_E_ATTACHMENTS;
                json_object_set(v, k, parts[num]);
            } else if (fill(e, parts, n, depth + 1) < 0) {
                return SIO_E_ATTACHMENTS;
            }
        }
    }
    return 0;
}

int sio_fill_placeholders(json_t *data, json_t *const *parts, int n)
{
    return fill(data, parts, n, 0);
}
