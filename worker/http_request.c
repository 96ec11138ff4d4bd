/*
 * http_request.c — read-only accessors handlers use on a parsed request.
 */
#include "http_request.h"

#include <string.h>
#include <strings.h>

const char *http_request_header(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) return h->value;
    }
    return NULL;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0) return req->params[i].value;
    return NULL;
}
