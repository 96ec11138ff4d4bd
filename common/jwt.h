/*
 * jwt.h — verifying the JSON Web Tokens that identify users (HS256 only).
 *
 * The algorithm is pinned: a token whose header says anything but HS256 ("none",
 * RS256, ...) is refused, so the classic alg-confusion attacks do not apply. The
 * signature is compared in constant time; `exp` and `nbf` are enforced with a small
 * clock-skew allowance. The user id is the `sub` claim, or `userId` (the seeds'
 * Express apps sign `{ userId }`).
 */
#ifndef SVCD_JWT_H
#define SVCD_JWT_H

#include <stddef.h>
#include <stdint.h>

#define JWT_USER_MAX 128
#define JWT_SKEW_S   30

enum jwt_rc {
    JWT_OK = 0,
    JWT_MALFORMED,  /* not three base64url parts of JSON */
    JWT_BAD_ALG,    /* header alg is not HS256 */
    JWT_BAD_SIG,    /* signature does not match the secret */
    JWT_EXPIRED,    /* exp in the past */
    JWT_NOT_YET,    /* nbf in the future */
    JWT_NO_SUBJECT, /* neither sub nor userId, or not a usable string */
    JWT_NO_SECRET   /* the server has no secret configured */
};

/* Verify `token` with `secret` at time `now_s` (seconds since epoch); on JWT_OK the
 * user id is copied into `user` (JWT_USER_MAX bytes). */
enum jwt_rc jwt_verify(const char *token, size_t len, const char *secret, int64_t now_s,
                       char *user);

/* A short, fixed, user-presentable reason ("token expired", ...). */
const char *jwt_reason(enum jwt_rc rc);

/* Sign `{"sub":user,"iat":now,"exp":now+ttl}` (for tools and tests); returns a
 * malloc'd token or NULL. */
char *jwt_sign(const char *user, const char *secret, int64_t now_s, int64_t ttl_s);

#endif
