/*
 * test_admin.c — the admin rule of SPEC §4 (common/admin_check.c).
 *
 * The integration tests always talk over loopback, so this is where the
 * non-loopback paths (remote address, bearer token, bad tokens) are checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "../../common/admin_check.h"

static socklen_t v4(struct sockaddr_storage *ss, const char *ip)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    in->sin_family = AF_INET;
    in->sin_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return sizeof(*in);
}

static socklen_t v6(struct sockaddr_storage *ss, const char *ip)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    return sizeof(*in6);
}

static void test_loopback_addresses(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    len = v4(&ss, "127.0.0.1");
    assert_true(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v4(&ss, "127.255.3.4");
    assert_true(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v6(&ss, "::1");
    assert_true(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v6(&ss, "::ffff:127.0.0.1");
    assert_true(admin_is_loopback((struct sockaddr *)&ss, len));
}

static void test_remote_addresses(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    len = v4(&ss, "10.0.0.1");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v4(&ss, "128.0.0.1");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v4(&ss, "0.0.0.0");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v6(&ss, "::ffff:10.1.2.3");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v6(&ss, "2001:db8::1");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, len));
    len = v6(&ss, "::");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, len));
    /* truncated address length, NULL address */
    len = v4(&ss, "127.0.0.1");
    assert_false(admin_is_loopback((struct sockaddr *)&ss, 2));
    assert_false(admin_is_loopback(NULL, 0));
}

static void test_bearer(void **state)
{
    (void)state;
    const char *tok = "s3cret-token";
    assert_true(admin_bearer_ok("Bearer s3cret-token", tok));
    assert_true(admin_bearer_ok("bearer s3cret-token", tok));
    assert_true(admin_bearer_ok("  BEARER   s3cret-token  ", tok));
    assert_false(admin_bearer_ok("Bearer s3cret-toke", tok));
    assert_false(admin_bearer_ok("Bearer s3cret-token2", tok));
    assert_false(admin_bearer_ok("Bearer", tok));
    assert_false(admin_bearer_ok("Bearer ", tok));
    assert_false(admin_bearer_ok("Bearers3cret-token", tok));
    assert_false(admin_bearer_ok("Basic s3cret-token", tok));
    assert_false(admin_bearer_ok("s3cret-token", tok));
    assert_false(admin_bearer_ok(NULL, tok));
    /* an empty configured token never matches, whatever the client sends */
    assert_false(admin_bearer_ok("Bearer ", ""));
    assert_false(admin_bearer_ok("Bearer x", ""));
    assert_false(admin_bearer_ok("Bearer x", NULL));
}

static void test_check_combines(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t remote = v4(&ss, "203.0.113.9");
    assert_false(admin_check((struct sockaddr *)&ss, remote, NULL, "tok"));
    assert_false(admin_check((struct sockaddr *)&ss, remote, "Bearer nope", "tok"));
    assert_true(admin_check((struct sockaddr *)&ss, remote, "Bearer tok", "tok"));
    assert_false(admin_check((struct sockaddr *)&ss, remote, "Bearer tok", ""));
    socklen_t local = v4(&ss, "127.0.0.1");
    assert_true(admin_check((struct sockaddr *)&ss, local, NULL, ""));
    assert_true(admin_check((struct sockaddr *)&ss, local, "Bearer wrong", "tok"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_addresses),
        cmocka_unit_test(test_remote_addresses),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_check_combines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
