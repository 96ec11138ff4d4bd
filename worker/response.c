/*
 * response.c — response building and the status line + header block.
 *
 * The header block is written here, in one place, so every response of the
 * worker (handler answers and the connection's own 400/408/413/431) carries the
 * same framing: Date, Server, Content-Type, Content-Length, Connection.
 */
#include "response.h"
#include "http_conn.h"

#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef SVCD_VERSION
#define SVCD_VERSION "0"
#endif

struct buf *resp_body(struct http_request *req)
{
    return &req->resp.body;
}

void resp_header(struct http_request *req, const char *name, const char *fmt, ...)
{
    struct buf *h = &req->resp.headers;
    size_t start;
    buf_puts(h, name);
    buf_puts(h, ": ");
    start = h->len;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(h, fmt, ap);
    va_end(ap);
    if (buf_failed(h)) return;
    for (size_t i = start; i < h->len; i++)
        if (h->data[i] == '\r' || h->data[i] == '\n') h->data[i] = ' ';
    buf_puts(h, "\r\n");
}

void resp_send(struct http_request *req, int status, const char *content_type)
{
    req->resp.status = status;
    req->resp.content_type = content_type;
    http_conn_respond(req);
}

const char *resp_error_code(int status)
{
    switch (status) {
    case 400:
        return "BAD_REQUEST";
    case 401:
        return "UNAUTHORIZED";
    case 403:
        return "FORBIDDEN";
    case 404:
        return "NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 408:
        return "REQUEST_TIMEOUT";
    case 409:
        return "CONFLICT";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 415:
        return "UNSUPPORTED_MEDIA_TYPE";
    case 422:
        return "UNPROCESSABLE_ENTITY";
    case 429:
        return "TOO_MANY_REQUESTS";
    case 431:
        return "HEADERS_TOO_LARGE";
    case 501:
        return "NOT_IMPLEMENTED";
    case 502:
        return "BAD_GATEWAY";
    case 503:
        return "SERVICE_UNAVAILABLE";
    case 504:
        return "GATEWAY_TIMEOUT";
    default:
        return status >= 500 ? "INTERNAL" : "BAD_REQUEST";
    }
}

void resp_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct buf *b = &req->resp.body;
    buf_reset(b);
    buf_puts(b, "{\"error\":{\"code\":");
    buf_json_str(b, code ? code : resp_error_code(status));
    buf_puts(b, ",\"message\":");
    buf_json_str(b, msg);
    buf_puts(b, "}}");
    resp_send(req, status, CT_JSON);
}

int resp_has_body(const struct http_request *req)
{
    int s = req->resp.status;
    if (req->head) return 0;
    return !(s < 200 || s == 204 || s == 304);
}

/* IMF-fixdate, computed at most once per second per worker. */
static const char *http_date(struct worker_ctx *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec || !w->date[0]) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    return w->date;
}

void resp_serialize_head(struct worker_ctx *w, const struct http_request *req, size_t body_len,
                         int keep_alive, uint64_t keepalive_s, struct buf *out)
{
    const struct http_response *r = &req->resp;
    const char *reason = http_status_str((enum http_status)r->status);
    if (!reason || reason[0] == '<') reason = "Unknown";
    buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: svcd/%s\r\n", r->status, reason,
               http_date(w), SVCD_VERSION);
    if (r->content_type) buf_printf(out, "Content-Type: %s\r\n", r->content_type);
    if (r->status >= 200 && r->status != 204 && r->status != 304)
        buf_printf(out, "Content-Length: %zu\r\n", body_len);
    if (keep_alive) {
        buf_puts(out, "Connection: keep-alive\r\n");
        if (keepalive_s > 0)
            buf_printf(out, "Keep-Alive: timeout=%llu\r\n", (unsigned long long)keepalive_s);
    } else {
        buf_puts(out, "Connection: close\r\n");
    }
    if (r->headers.len) buf_append(out, r->headers.data, r->headers.len);
    buf_puts(out, "\r\n");
}

void resp_iso8601(int64_t wall_ms, char *out, size_t outlen)
{
    time_t sec = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03dZ", (int)(wall_ms % 1000));
}
