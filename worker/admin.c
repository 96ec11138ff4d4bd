/*
 * admin.c — glue between a request and the pure admin rule in
 * common/admin_check.c (which the unit tests exercise directly): it only picks
 * the peer address, the Authorization header and the configured token.
 */
#include "admin.h"

#include "../common/admin_check.h"
#include "http_conn.h"

int http_is_admin(const struct http_request *req)
{
    socklen_t len = 0;
    const struct sockaddr *sa = http_conn_peer(req->conn, &len);
    return admin_check(sa, len, http_request_header(req, "Authorization"),
                       req->w->cfg->auth.admin_token);
}
