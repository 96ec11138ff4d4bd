/* test_ipc.c — unit tests of common/ipc.c: frames, fd passing, EOF, bad frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../common/ipc.h"

static void test_roundtrip(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(ipc_pair(sv), 0);
    assert_int_equal(ipc_send(sv[0], IPC_PING, "abc", 3, -1), 0);
    char payload[16];
    uint8_t type;
    int fd;
    assert_int_equal(ipc_recv(sv[1], &type, payload, sizeof(payload), &fd), 3);
    assert_int_equal(type, IPC_PING);
    assert_int_equal(fd, -1);
    assert_memory_equal(payload, "abc", 3);
    close(sv[0]);
    close(sv[1]);
}

static void test_fd_passing(void **state)
{
    (void)state;
    int sv[2], p[2];
    assert_int_equal(ipc_pair(sv), 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(ipc_send(sv[0], IPC_COORD_LINK, NULL, 0, p[1]), 0);
    uint8_t type;
    int fd;
    char payload[4];
    assert_int_equal(ipc_recv(sv[1], &type, payload, sizeof(payload), &fd), 0);
    assert_int_equal(type, IPC_COORD_LINK);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "z", 1), 1);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, 'z');
    close(fd), close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
}

static void test_eof_and_garbage(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(ipc_pair(sv), 0);
    /* A frame whose length prefix lies is rejected, not trusted. */
    unsigned char bad[7] = {0, 0, 0, 9, IPC_PING, 'x', 'y'};
    assert_int_equal(send(sv[0], bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
    uint8_t type;
    int fd;
    char payload[16];
    assert_int_equal(ipc_recv(sv[1], &type, payload, sizeof(payload), &fd), -1);
    close(sv[0]);
    assert_int_equal(ipc_recv(sv[1], &type, payload, sizeof(payload), &fd), 0);
    assert_int_equal(type, 0);
    close(sv[1]);
}

static void test_oversize_refused(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(ipc_pair(sv), 0);
    static char big[IPC_MAX_FRAME + 1];
    assert_int_equal(ipc_send(sv[0], IPC_PING, big, sizeof(big), -1), -1);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_fd_passing),
        cmocka_unit_test(test_eof_and_garbage),
        cmocka_unit_test(test_oversize_refused),
    };
    return cmocka_run_group_tests_name("ipc", tests, NULL, NULL);
}
