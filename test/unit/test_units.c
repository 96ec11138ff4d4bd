/*
 * test_units.c — the duration and size grammar of common/units.c: every unit, decimals,
 * case, spacing, and every malformed shape (sign, empty, unknown unit, overflow).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../common/units.h"

struct good {
    const char *text;
    uint64_t value;
};

static void test_durations_good(void **state)
{
    static const struct good cases[] = {
        {"66s", 66000},
        {"500ms", 500},
        {"2m", 120000},
        {"1h", 3600000},
        {"30", 30000},
        {"0", 0},
        {"1.5s", 1500},
        {"0.25m", 15000},
        {"10 s", 10000},
        {"10S", 10000},
        {"250MS", 250},
        {"1.0001s", 1000},
        {"  5s  ", 5000},
        {"1.5ms", 1},
        {"0.000000001h", 0},
        {"48h", 172800000},
        {"1.123456789123s", 1123},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 12345;
        assert_int_equal(units_parse_duration(cases[i].text, &ms), 0);
        assert_int_equal(ms, cases[i].value);
    }
}

static void test_durations_bad(void **state)
{
    static const char *const cases[] = {
        "",
        "s",
        "-1s",
        "+1s",
        ".5s",
        "1.s",
        "1x",
        "1sec",
        "10 seconds",
        "1s2",
        "1 s s",
        "abc",
        "1,5s",
        "0x10",
        "18446744073709551616",
        "99999999999999999h",
        "1d",
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 7;
        assert_int_equal(units_parse_duration(cases[i], &ms), -1);
        assert_int_equal(ms, 7); /* untouched on failure */
    }
    uint64_t ms;
    assert_int_equal(units_parse_duration(NULL, &ms), -1);
    assert_int_equal(units_parse_duration("1s", NULL), -1);
}

static void test_sizes_good(void **state)
{
    static const struct good cases[] = {
        {"1MiB", 1048576},
        {"16KiB", 16384},
        {"10k", 10240},
        {"10K", 10240},
        {"10KB", 10240},
        {"10kb", 10240},
        {"512", 512},
        {"512B", 512},
        {"512b", 512},
        {"1M", 1048576},
        {"1MB", 1048576},
        {"2G", 2147483648ULL},
        {"1GiB", 1073741824},
        {"1.5MiB", 1572864},
        {"0.5KiB", 512},
        {"8 MiB", 8388608},
        {"0", 0},
        {"16384", 16384},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t b = 1;
        assert_int_equal(units_parse_size(cases[i].text, &b), 0);
        assert_int_equal(b, cases[i].value);
    }
}

static void test_sizes_bad(void **state)
{
    static const char *const cases[] = {
        "",
        "MiB",
        "-1MiB",
        "1TiB",
        "1 MiBs",
        "1Mi",
        "one",
        "1.5.5K",
        "1e6",
        "18446744073709551616",
        "99999999999GiB",
        "1 0K",
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t b = 3;
        assert_int_equal(units_parse_size(cases[i], &b), -1);
        assert_int_equal(b, 3);
    }
}

static void test_limits(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(units_parse_size("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(units_parse_size("17179869183GiB", &v), 0); /* (2^64-1)/2^30 rounded down */
    assert_int_equal(units_parse_size("17179869184GiB", &v), -1);
    assert_int_equal(units_parse_duration("18446744073709551615ms", &v), 0);
    assert_int_equal(units_parse_duration("18446744073709551615s", &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations_good), cmocka_unit_test(test_durations_bad),
        cmocka_unit_test(test_sizes_good),     cmocka_unit_test(test_sizes_bad),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
