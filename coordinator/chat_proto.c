/*
 * chat_proto.c — field lists of the chat frames (see chat_proto.h).
 */
#include "chat_proto.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

int chat_fields_split(const char *payload, size_t len, int want, struct chat_fields *out)
{
    if (want < 1 || want > CHAT_MAX_FIELDS) return -1;
    size_t pos = 0;
    out->n = want;
    for (int i = 0; i < want - 1; i++) {
        const char *nul = memchr(payload + pos, '\0', len - pos);
        if (!nul) return -1;
        out->f[i] = payload + pos;
        out->len[i] = (size_t)(nul - (payload + pos));
        pos += out->len[i] + 1;
    }
    out->f[want - 1] = payload + pos;
    out->len[want - 1] = len - pos;
    return 0;
}

void chat_fields_build(struct buf *out, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap, const char *);
        size_t l = va_arg(ap, size_t);
        if (l == (size_t)-1) l = s ? strlen(s) : 0;
        if (l) buf_append(out, s, l);
        if (i < n - 1) buf_append(out, "", 1);
    }
    va_end(ap);
}

void chat_binary_build(struct buf *out, const char *json, size_t json_len, int n,
                       const char *const *part, const size_t *part_len)
{
    buf_printf(out, "B%d", n);
    for (int i = 0; i < n; i++) buf_printf(out, ",%zu", part_len[i]);
    buf_append(out, ";", 1);
    buf_append(out, json, json_len);
    for (int i = 0; i < n; i++) buf_append(out, part[i], part_len[i]);
}

/* Decimal digits at *p (before end), at most `max`; advances *p. -1 if none/too big. */
static int64_t read_count(const char **p, const char *end, uint64_t max)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9') return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max) return -1;
    }
    *p = s;
    return (int64_t)v;
}

int chat_binary_parse(const char *f, size_t len, struct chat_binary *out)
{
    if (len == 0 || f[0] != 'B') return 0;
    const char *p = f + 1, *end = f + len;
    int64_t n = read_count(&p, end, CHAT_BINARY_MAX_PARTS);
    if (n < 1) return -1;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p >= end || *p != ',') return -1;
        p++;
        int64_t l = read_count(&p, end, len);
        if (l < 0) return -1;
        out->part_len[i] = (size_t)l;
        total += (size_t)l; /* <= n * len: no overflow */
    }
    if (p >= end || *p != ';') return -1;
    p++;
    if (total > (size_t)(end - p)) return -1;
    out->n = (int)n;
    out->json = p;
    out->json_len = (size_t)(end - p) - total;
    const char *q = p + out->json_len;
    for (int64_t i = 0; i < n; i++) {
        out->part[i] = q;
        q += out->part_len[i];
    }
    return 1;
}
