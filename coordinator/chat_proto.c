/*
 * chat_proto.c — field lists of the chat frames (see chat_proto.h).
 */
#include "chat_proto.h"

#include <stdarg.h>
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
