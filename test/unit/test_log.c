/* test_log.c — unit tests of common/log.c: levels, JSON lines, reopen, no forged lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

/* Run `fn` with stderr redirected to `path`. */
static void with_stderr_to(const char *path, void (*fn)(void))
{
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    dup2(fileno(f), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
}

static void say_info_and_warn(void)
{
    log_info("an info line");
    log_warn("a warning line");
}

static void test_foreground_mirror_with_and_without_file(void **state)
{
    (void)state;
    char err[160];
    snprintf(err, sizeof(err), "%s/stderr", dir);
    /* a log file: it gets every line, stderr only the problems */
    assert_int_equal(log_open(file, LOG_FORMAT_TEXT, LOG_INFO, 1), 0);
    with_stderr_to(err, say_info_and_warn);
    char *t = slurp(err);
    assert_null(strstr(t, "an info line"));
    assert_non_null(strstr(t, "a warning line"));
    t = slurp(file);
    assert_non_null(strstr(t, "an info line"));
    assert_non_null(strstr(t, "a warning line"));
    /* no log file: stderr is the log, every line */
    assert_int_equal(log_open("", LOG_FORMAT_TEXT, LOG_INFO, 1), 0);
    with_stderr_to(err, say_info_and_warn);
    t = slurp(err);
    assert_non_null(strstr(t, "an info line"));
    assert_non_null(strstr(t, "a warning line"));
    unlink(err);
}

static void test_pid_is_the_writers_after_fork(void **state)
{
    (void)state;
    assert_int_equal(log_open(file, LOG_FORMAT_TEXT, LOG_INFO, 0), 0);
    log_set_role("master");
    log_info("parent line");
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        log_set_role("worker 0");
        log_info("child line");
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    char want[96], *t = slurp(file);
    snprintf(want, sizeof(want), "[master %d] parent line", (int)getpid());
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof(want), "[worker 0 %d] child line", (int)child);
    assert_non_null(strstr(t, want));
}

static void test_access_text_line_shape(void **state)
{
    (void)state;
    assert_int_equal(log_open(file, LOG_FORMAT_TEXT, LOG_INFO, 0), 0);
    log_set_role("worker 1");
    log_access("10.0.0.1", "POST", "/api/x?a=1", 201, 42, 1.25, "agent \"q\"");
    char want[160], *t = slurp(file);
    snprintf(want, sizeof(want),
             " info  [worker 1 %d] access 10.0.0.1 \"POST /api/x?a=1\" 201 42 1.250ms "
             "\"agent ?q?\"\n",
             (int)getpid());
    assert_non_null(strstr(t, want));
    /* 2026-12-01T22:58:11.182Z: the cached date part and the milliseconds */
    assert_int_equal(strlen(t) > 24 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z',
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_levels_and_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_and_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_line_cannot_be_forged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreground_mirror_with_and_without_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pid_is_the_writers_after_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_text_line_shape, setup, teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
