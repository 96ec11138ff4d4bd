/*
 * response.h — building HTTP responses: bodies, extra headers, JSON errors.
 *
 * A handler appends its body to resp_body(req), adds headers with resp_header()
 * and finishes with resp_send() (or resp_error() for the one JSON error shape
 * of SPEC §4: {"error":{"code":"...","message":"..."}}). The connection adds the
 * framing headers itself (Date, Server, Content-Length, Connection), so no
 * handler can get them wrong.
 */
#ifndef SVCD_RESPONSE_H
#define SVCD_RESPONSE_H

#include <stdint.h>

#include "http_request.h"
#include "worker_ctx.h"

#define CT_JSON       "application/json; charset=utf-8"
#define CT_TEXT       "text/plain; charset=utf-8"
#define CT_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

struct buf *resp_body(struct http_request *req);

/* Add "Name: value"; CR and LF in the value are replaced by spaces. */
void resp_header(struct http_request *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Send what was built with `status` and `content_type` (NULL: none). */
void resp_send(struct http_request *req, int status, const char *content_type);

/* Discard any body built so far and send {"error":{"code":..,"message":..}}. */
void resp_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The error code name SPEC §4 uses for a status (404 -> "NOT_FOUND"). */
const char *resp_error_code(int status);

/* Append the status line and every header of req->resp to `out`; `keep_alive`
 * chooses the Connection header, `keepalive_s` (> 0) adds Keep-Alive: timeout. */
void resp_serialize_head(struct worker_ctx *w, const struct http_request *req, size_t body_len,
                         int keep_alive, uint64_t keepalive_s, struct buf *out);

/* Does this response carry a body on the wire (not HEAD, 1xx, 204, 304)? */
int resp_has_body(const struct http_request *req);

/* "2026-11-22T04:20:00.123Z" */
void resp_iso8601(int64_t wall_ms, char *out, size_t outlen);

#endif
