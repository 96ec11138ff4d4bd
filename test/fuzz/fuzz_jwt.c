/*
 * fuzz_jwt.c — libFuzzer target: arbitrary bytes as a bearer token.
 *
 * Exercises base64url decoding, the JSON header/claims parsing and the claim
 * checks; a crash or an accepted token (nobody can forge the HMAC) is a bug.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char user[JWT_USER_MAX];
    enum jwt_rc rc = jwt_verify((const char *)data, size, "fuzz-secret-fuzz-secret-fuzz-secret",
                                1800000000, user);
    if (rc == JWT_OK) abort(); /* a forged token was accepted */
    return 0;
}
