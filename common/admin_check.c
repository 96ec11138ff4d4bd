/*
 * admin_check.c — the pure admin rule (see admin_check.h for why it lives here).
 *
 * The token comparison hashes both sides with SHA-256 and compares the digests
 * with CRYPTO_memcmp, so neither the content nor the length of the configured
 * token leaks through response timing.
 */
#include "admin_check.h"

#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

bool admin_is_loopback(const struct sockaddr *sa, socklen_t len)
{
    if (!sa) return false;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

bool admin_bearer_ok(const char *authorization, const char *token)
{
    if (!authorization || !token || !*token) return false;
    const char *p = authorization;
    while (*p == ' ' || *p == '\t') p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) return false;
    p += 6;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n == 0) return false;

    unsigned char got[SHA256_DIGEST_LENGTH], want[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)p, n, got);
    SHA256((const unsigned char *)token, strlen(token), want);
    return CRYPTO_memcmp(got, want, sizeof(got)) == 0;
}

bool admin_check(const struct sockaddr *sa, socklen_t len, const char *authorization,
                 const char *token)
{
    /* Evaluate both so the answer's timing does not tell which rule matched. */
    bool local = admin_is_loopback(sa, len);
    bool bearer = admin_bearer_ok(authorization, token);
    return local || bearer;
}
