/*
 * admin.h — is this request allowed on an admin endpoint?
 */
#ifndef SVCD_WORKER_ADMIN_H
#define SVCD_WORKER_ADMIN_H

#include "http_request.h"

/* Loopback peer, or "Authorization: Bearer <auth.admin_token>" (SPEC §4). */
int http_is_admin(const struct http_request *req);

#endif
