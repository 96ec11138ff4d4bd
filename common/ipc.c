/*
 * ipc.c — frames over SOCK_SEQPACKET socketpairs, optionally carrying one fd.
 *
 * Header: 4-byte big-endian payload length, 1-byte type. SEQPACKET keeps message
 * boundaries, so header and payload travel in one sendmsg and arrive together.
 */
#include "ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int ipc_pair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
}

int ipc_send(int sock, uint8_t type, const void *payload, size_t len, int fd)
{
    if (len > IPC_MAX_FRAME) {
        errno = EMSGSIZE;
        return -1;
    }
    unsigned char hdr[5] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                            (unsigned char)(len >> 8), (unsigned char)len, type};
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)payload, len}};
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = len ? 2 : 1;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl;
    if (fd >= 0) {
        memset(&ctrl, 0, sizeof(ctrl));
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = sizeof(ctrl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

long ipc_recv(int sock, uint8_t *type, void *payload, size_t cap, int *fd)
{
    unsigned char hdr[5];
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {payload, cap}};
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl;
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof(ctrl.buf);
    *fd = -1;
    *type = 0;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(fd, CMSG_DATA(c), sizeof(int));
    }
    if (n == 0) return 0; /* EOF */
    if (n < 5 || (msg.msg_flags & MSG_TRUNC)) {
        if (*fd >= 0) close(*fd), *fd = -1;
        errno = EPROTO;
        return -1;
    }
    size_t len = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) | ((size_t)hdr[2] << 8) | hdr[3];
    if (len != (size_t)n - 5) {
        if (*fd >= 0) close(*fd), *fd = -1;
        errno = EPROTO;
        return -1;
    }
    *type = hdr[4];
    return (long)len;
}
