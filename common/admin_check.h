/*
 * admin_check.h — who may call the admin endpoints (/metrics, /api/health/detailed, ...).
 *
 * SPEC §4: admin = a request from loopback, or one carrying
 * `Authorization: Bearer <auth.admin_token>`. The rule is a pure function of the
 * peer address, the header and the configured token, kept here in common/ (not in
 * worker/) so the unit tests can link it and check the non-loopback path, which
 * the integration tests (always on 127.0.0.1) cannot reach. X-Forwarded-For is
 * deliberately not an input: a client can write anything there.
 */
#ifndef SVCD_ADMIN_CHECK_H
#define SVCD_ADMIN_CHECK_H

#include <stdbool.h>
#include <sys/socket.h>

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (v4-mapped loopback). */
bool admin_is_loopback(const struct sockaddr *sa, socklen_t len);

/* True when `authorization` is "Bearer <token>" (scheme case-insensitive) and
 * `token` is non-empty. The comparison takes the same time whatever the input. */
bool admin_bearer_ok(const char *authorization, const char *token);

/* The whole rule: loopback peer OR a valid bearer token. NULL arguments mean absent. */
bool admin_check(const struct sockaddr *sa, socklen_t len, const char *authorization,
                 const char *token);

#endif
