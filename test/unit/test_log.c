/* test_log.c — unit tests of common/log.c: levels, JSON lines, reopen, no forged lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../common/log.h"

static char dir[64];
static char file[128];

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/svcd-logtest-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(file, sizeof(file), "%s/svcd.log", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_close();
    unlink(file);
    char rotated[160];
    snprintf(rotated, sizeof(rotated), "%s.1", file);
    unlink(rotated);
    rmdir(dir);
    return 0;
}

static void test_levels_and_text(void **state)
{
    (void)state;
    assert_int_equal(log_open(file, LOG_FORMAT_TEXT, LOG_WARN, 0), 0);
    log_set_role("worker 3");
    log_info("hidden %d", 1);
    log_warn("shown %d", 2);
    char *t = slurp(file);
    assert_non_null(t);
    assert_null(strstr(t, "hidden"));
    assert_non_null(strstr(t, "shown 2"));
    assert_non_null(strstr(t, "[worker 3 "));
}

static void test_json_and_access(void **state)
{
    (void)state;
    assert_int_equal(log_open(file, LOG_FORMAT_JSON, LOG_INFO, 0), 0);
    log_access("127.0.0.1", "GET", "/x\"y", 200, 12, 0.5, "curl");
    char *t = slurp(file);
    assert_non_null(strstr(t, "\"kind\":\"access\""));
    assert_non_null(strstr(t, "\"path\":\"/x\\\"y\""));
}

static void test_access_line_cannot_be_forged(void **state)
{
    (void)state;
    assert_int_equal(log_open(file, LOG_FORMAT_TEXT, LOG_INFO, 0), 0);
    log_access("127.0.0.1", "GET", "/a\nFAKE LINE", 404, 0, 1.0, "ua\r\nX");
    char *t = slurp(file);
    assert_null(strstr(t, "\nFAKE LINE"));
    assert_non_null(strstr(t, "/a?FAKE LINE"));
}

static void test_reopen_after_rotate(void **state)
{
    (void)state;
    assert_int_equal(log_open(file, LOG_FORMAT_TEXT, LOG_INFO, 0), 0);
    log_info("before");
    char rotated[160];
    snprintf(rotated, sizeof(rotated), "%s.1", file);
    assert_int_equal(rename(file, rotated), 0);
    log_info("still old");
    assert_int_equal(log_reopen(), 0);
    log_info("after");
    char *t = slurp(file);
    assert_non_null(strstr(t, "after"));
    assert_null(strstr(t, "before"));
    t = slurp(rotated);
    assert_non_null(strstr(t, "still old"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_levels_and_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_and_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_line_cannot_be_forged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rotate, setup, teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
