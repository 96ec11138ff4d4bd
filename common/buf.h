/*
 * buf.h — a growable byte buffer, the only string builder svcd uses.
 *
 * Responses, JSON documents, IPC frames and log lines are all built by appending
 * into a buf; growth is geometric and failure (out of memory) is sticky, checked
 * once at the end with buf_failed() instead of after every append.
 */
#ifndef SVCD_BUF_H
#define SVCD_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len, cap;
    int failed;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, memory kept */
int buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_consume(struct buf *b, size_t n); /* drop n bytes from the front */
/* Append `s` as a JSON string literal, quotes included, escaping as RFC 8259 says. */
void buf_json_str(struct buf *b, const char *s);
void buf_json_strn(struct buf *b, const char *s, size_t n);
static inline int buf_failed(const struct buf *b)
{
    return b->failed;
}

#endif
