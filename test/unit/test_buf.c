/* test_buf.c — unit tests of common/buf.c: growth, printf, consume, JSON escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../common/buf.h"

static void test_append_and_grow(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 10000; i++) buf_puts(&b, "x");
    assert_int_equal(b.len, 10000);
    assert_int_equal(strlen(b.data), 10000);
    assert_false(buf_failed(&b));
    buf_free(&b);
}

static void test_printf_long(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_printf(&b, "<%s>%d", big, 42);
    assert_int_equal(b.len, 999 + 4);
    assert_memory_equal(b.data + 1000, ">42", 3);
    buf_free(&b);
}

static void test_consume(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "hello world");
    buf_consume(&b, 6);
    assert_string_equal(b.data, "world");
    buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_json_escape(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_json_str(&b, "a\"b\\c\nd\x01\x7f");
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\nd\\u0001\\u007f\"");
    buf_reset(&b);
    buf_json_str(&b, NULL);
    assert_string_equal(b.data, "\"\"");
    buf_reset(&b);
    buf_json_strn(&b, "ab\0cd", 5);
    assert_string_equal(b.data, "\"ab\\u0000cd\"");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_grow),
        cmocka_unit_test(test_printf_long),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_json_escape),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
