/* test_scoreboard.c — unit tests of common/scoreboard.c: slots, histogram, sharing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../common/scoreboard.h"

static void test_alloc_release(void **state)
{
    (void)state;
    struct scoreboard *sb = scoreboard_create();
    assert_non_null(sb);
    int a = scoreboard_alloc(sb, SB_WORKER);
    int b = scoreboard_alloc(sb, SB_COORDINATOR);
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(sb->slot[a].role, SB_WORKER);
    scoreboard_release(sb, a);
    assert_int_equal(sb->slot[a].role, SB_FREE);
    for (int i = 0; i < SB_SLOTS - 1; i++) assert_true(scoreboard_alloc(sb, SB_WORKER) >= 0);
    assert_int_equal(scoreboard_alloc(sb, SB_WORKER), -1);
    scoreboard_destroy(sb);
}

static void test_record_buckets(void **state)
{
    (void)state;
    struct scoreboard *sb = scoreboard_create();
    struct sb_slot *s = &sb->slot[0];
    scoreboard_record(s, 200, 500);      /* <= 1ms */
    scoreboard_record(s, 404, 1000);     /* boundary is inclusive */
    scoreboard_record(s, 503, 20000000); /* +Inf */
    scoreboard_record(s, 999, 3000);     /* nonsense status counts as 5xx */
    assert_int_equal(s->requests, 4);
    assert_int_equal(s->status_class[2], 1);
    assert_int_equal(s->status_class[4], 1);
    assert_int_equal(s->status_class[5], 2);
    assert_int_equal(s->lat_bucket[0], 2);
    assert_int_equal(s->lat_bucket[SB_LAT_BUCKETS - 1], 1);
    assert_int_equal(s->lat_sum_us, 500 + 1000 + 20000000 + 3000);
    scoreboard_destroy(sb);
}

static void test_shared_across_fork(void **state)
{
    (void)state;
    struct scoreboard *sb = scoreboard_create();
    pid_t pid = fork();
    if (pid == 0) {
        sb->slot[3].connections = 77;
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(sb->slot[3].connections, 77);
    scoreboard_destroy(sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_release),
        cmocka_unit_test(test_record_buckets),
        cmocka_unit_test(test_shared_across_fork),
    };
    return cmocka_run_group_tests_name("scoreboard", tests, NULL, NULL);
}
