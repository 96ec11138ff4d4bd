/* test_jwt.c — unit tests of common/jwt.c: valid, forged, expired, alg confusion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../common/jwt.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define NOW    1800000000

static void test_roundtrip(void **state)
{
    (void)state;
    char *t = jwt_sign("alice", SECRET, NOW, 3600);
    assert_non_null(t);
    char user[JWT_USER_MAX];
    assert_int_equal(jwt_verify(t, strlen(t), SECRET, NOW + 10, user), JWT_OK);
    assert_string_equal(user, "alice");
    free(t);
}

static void test_wrong_secret_and_tamper(void **state)
{
    (void)state;
    char *t = jwt_sign("alice", SECRET, NOW, 3600);
    char user[JWT_USER_MAX];
    assert_int_equal(jwt_verify(t, strlen(t), "another-secret-another-secret-xx", NOW, user),
                     JWT_BAD_SIG);
    /* flip one character of the payload */
    char *dot = strchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_int_not_equal(jwt_verify(t, strlen(t), SECRET, NOW, user), JWT_OK);
    free(t);
}

static void test_expired_and_skew(void **state)
{
    (void)state;
    char *t = jwt_sign("bob", SECRET, NOW, 60);
    char user[JWT_USER_MAX];
    assert_int_equal(jwt_verify(t, strlen(t), SECRET, NOW + 60 + JWT_SKEW_S, user), JWT_OK);
    assert_int_equal(jwt_verify(t, strlen(t), SECRET, NOW + 61 + JWT_SKEW_S, user), JWT_EXPIRED);
    free(t);
}

static void test_alg_none_refused(void **state)
{
    (void)state;
    /* {"alg":"none"} . {"sub":"mallory"} . (empty) */
    const char *t = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.";
    char user[JWT_USER_MAX];
    assert_int_equal(jwt_verify(t, strlen(t), SECRET, NOW, user), JWT_BAD_ALG);
}

static void test_malformed(void **state)
{
    (void)state;
    char user[JWT_USER_MAX];
    assert_int_equal(jwt_verify("abc", 3, SECRET, NOW, user), JWT_MALFORMED);
    assert_int_equal(jwt_verify("a.b.c.d", 7, SECRET, NOW, user), JWT_MALFORMED);
    assert_int_equal(jwt_verify("!!.??.**", 8, SECRET, NOW, user), JWT_MALFORMED);
    assert_int_equal(jwt_verify("", 0, SECRET, NOW, user), JWT_MALFORMED);
    assert_int_equal(jwt_verify("a.b.c", 5, "", NOW, user), JWT_NO_SECRET);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),        cmocka_unit_test(test_wrong_secret_and_tamper),
        cmocka_unit_test(test_expired_and_skew), cmocka_unit_test(test_alg_none_refused),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
