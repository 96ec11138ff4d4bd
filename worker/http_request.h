/*
 * http_request.h — the types of one HTTP exchange: a parsed request and the
 * response being built for it.
 *
 * Handlers only see these (never the socket): they read the request, fill
 * `resp` through response.h and send it, now or later. Keeping the exchange
 * apart from the connection is what lets a handler answer asynchronously (after
 * a storage call, a coordinator round-trip, an upstream reply) while the
 * connection keeps pipelined requests waiting in order.
 *
 * Every string here is NUL-terminated and lives in buffers owned by the
 * request; they stay valid until the response has been sent.
 */
#ifndef SVCD_HTTP_REQUEST_H
#define SVCD_HTTP_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_PARAMS  8

struct http_conn;
struct worker_ctx;

struct http_header {
    const char *name, *value;
    size_t name_len, value_len;
};

struct http_param {
    const char *name;  /* from the route pattern, without ':'; "*" for a prefix rest */
    const char *value; /* raw (still percent-encoded) path segment(s) */
};

struct http_response {
    int status;
    const char *content_type; /* NULL: no Content-Type header */
    struct buf headers;       /* extra "Name: value\r\n" lines */
    struct buf body;
    int sent;
};

struct http_request {
    struct http_conn *conn;
    struct worker_ctx *w;

    /* request line; valid once headers_done */
    int method;             /* enum http_method */
    const char *method_str; /* "GET"; "-" before the request line was parsed */
    const char *url;        /* request-target as sent */
    const char *path;       /* path part of url, raw */
    const char *query;      /* query part without '?', "" when none */
    int http_major, http_minor;
    struct http_header *headers; /* nheaders of them (allocated as parsed, <= HTTP_MAX_HEADERS) */
    int nheaders;
    int headers_done;

    struct buf body;  /* de-chunked request body */
    int keep_alive;   /* client allows keep-alive (the response may still close) */
    int head;         /* HEAD: the response carries headers only */
    int upgrade;      /* Upgrade/CONNECT request: the connection closes after the answer */
    int64_t start_us; /* monotonic, first byte of the request */

    /* set by the router */
    struct http_param params[HTTP_MAX_PARAMS];
    int nparams;
    unsigned route_flags;

    struct http_response resp;

    /* Called if the connection goes away while the handler still owes the
     * response (asynchronous handlers cancel their work here). */
    void (*on_abort)(struct http_request *req, void *arg);
    void *abort_arg;

    /* private to http_conn.c / router.c */
    struct buf raw;     /* url, header names and values, path, query, each NUL-terminated */
    struct buf scratch; /* route parameter values */
    struct http_hoff {
        uint32_t name_off, name_len, value_off, value_len;
    } * hoff; /* where each header is in raw while the head is parsed */
    int hcap; /* room in headers[] and hoff[] */
    uint32_t url_len;
    int hstate; /* which part the parser is appending to */
    int in_trailers;
    uint64_t header_bytes;
};

/* Case-insensitive header lookup; the first match, or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);
/* A route parameter (":id" -> "id"), or NULL. */
const char *http_request_param(const struct http_request *req, const char *name);

#endif
