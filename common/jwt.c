/*
 * jwt.c — HS256 JSON Web Token verification with OpenSSL's HMAC (see jwt.h).
 */
#include "jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWT_MAX_LEN 8192

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decode unpadded base64url; returns the decoded length or -1. */
static long b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 == 1) return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return -1;
            out[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    /* leftover bits must be zero (canonical encoding) */
    if (bits && (acc & ((1u << bits) - 1))) return -1;
    return (long)o;
}

static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tab[(acc >> bits) & 63];
        }
    }
    if (bits) out[o++] = tab[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

static json_t *decode_json_part(const char *p, size_t len)
{
    unsigned char raw[JWT_MAX_LEN];
    long n = b64url_decode(p, len, raw, sizeof(raw));
    if (n <= 0) return NULL;
    json_t *j = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int numeric_claim(json_t *claims, const char *name, int64_t *out)
{
    json_t *v = json_object_get(claims, name);
    if (!v) return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        *out = (int64_t)json_real_value(v);
        return 1;
    }
    return -1;
}

enum jwt_rc jwt_verify(const char *token, size_t len, const char *secret, int64_t now_s, char *user)
{
    if (!secret || !*secret) return JWT_NO_SECRET;
    if (!token || len == 0 || len > JWT_MAX_LEN) return JWT_MALFORMED;
    const char *d1 = memchr(token, '.', len);
    if (!d1) return JWT_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return JWT_MALFORMED;

    json_t *hdr = decode_json_part(token, (size_t)(d1 - token));
    if (!hdr) return JWT_MALFORMED;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    int alg_ok = alg && strcmp(alg, "HS256") == 0;
    json_decref(hdr);
    if (!alg_ok) return JWT_BAD_ALG;

    unsigned char sig[64];
    long siglen = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof(sig));
    if (siglen != 32) return JWT_BAD_SIG;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)token,
              (size_t)(d2 - token), mac, &maclen) ||
        maclen != 32)
        return JWT_BAD_SIG;
    if (CRYPTO_memcmp(mac, sig, 32) != 0) return JWT_BAD_SIG;

    json_t *claims = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!claims) return JWT_MALFORMED;
    enum jwt_rc rc = JWT_OK;
    int64_t exp = 0, nbf = 0;
    int has_exp = numeric_claim(claims, "exp", &exp);
    int has_nbf = numeric_claim(claims, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0)
        rc = JWT_MALFORMED;
    else if (has_exp && now_s > exp + JWT_SKEW_S)
        rc = JWT_EXPIRED;
    else if (has_nbf && now_s + JWT_SKEW_S < nbf)
        rc = JWT_NOT_YET;
    if (rc == JWT_OK) {
        json_t *sub = json_object_get(claims, "sub");
        if (!sub) sub = json_object_get(claims, "userId");
        char tmp[JWT_USER_MAX];
        if (json_is_string(sub) && json_string_length(sub) > 0 &&
            json_string_length(sub) < JWT_USER_MAX)
            snprintf(tmp, sizeof(tmp), "%s", json_string_value(sub));
        else if (json_is_integer(sub))
            snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(sub));
        else
            rc = JWT_NO_SUBJECT;
        if (rc == JWT_OK) {
            /* user ids become keys and log fields: printable ASCII only */
            for (const char *p = tmp; *p; p++)
                if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) rc = JWT_NO_SUBJECT;
            if (rc == JWT_OK) memcpy(user, tmp, strlen(tmp) + 1);
        }
    }
    json_decref(claims);
    return rc;
}

const char *jwt_reason(enum jwt_rc rc)
{
    switch (rc) {
    case JWT_OK:
        return "ok";
    case JWT_MALFORMED:
        return "malformed token";
    case JWT_BAD_ALG:
        return "token algorithm must be HS256";
    case JWT_BAD_SIG:
        return "invalid token signature";
    case JWT_EXPIRED:
        return "token expired";
    case JWT_NOT_YET:
        return "token not valid yet";
    case JWT_NO_SUBJECT:
        return "token has no usable sub or userId claim";
    case JWT_NO_SECRET:
        return "server has no JWT secret configured";
    }
    return "invalid token";
}

char *jwt_sign(const char *user, const char *secret, int64_t now_s, int64_t ttl_s)
{
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    json_t *claims = json_pack("{s:s,s:I,s:I}", "sub", user, "iat", (json_int_t)now_s, "exp",
                               (json_int_t)(now_s + ttl_s));
    char *body = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(claims);
    if (!body) return NULL;
    size_t blen = strlen(body);
    char *out = malloc(4 * (strlen(hdr) + blen + 64) / 3 + 16);
    if (!out) {
        free(body);
        return NULL;
    }
    size_t n = b64url_encode((const unsigned char *)hdr, strlen(hdr), out);
    out[n++] = '.';
    n += b64url_encode((const unsigned char *)body, blen, out + n);
    free(body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out, n, mac, &maclen);
    out[n++] = '.';
    b64url_encode(mac, maclen, out + n);
    return out;
}
