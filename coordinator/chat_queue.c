/*
 * chat_queue.c — ordered, non-blocking frame output on a link (see chat_queue.h).
 */
#include "chat_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/ipc.h"
#include "../common/log.h"

struct chatq_frame {
    struct chatq_frame *next;
    uint8_t type;
    int fd;
    size_t len;
    char data[];
};

static void drop_all(struct chatq *q)
{
    struct chatq_frame *f = q->head, *n;
    for (; f; f = n) {
        n = f->next;
        if (f->fd >= 0) close(f->fd);
        free(f);
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

/* Send queued frames in order until the link is full. */
static int pump(struct chatq *q)
{
    while (q->head) {
        struct chatq_frame *f = q->head;
        if (ipc_send(q->fd, f->type, f->data, f->len, f->fd) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
            log_debug("chat link: send failed: %s; dropping %zu queued bytes", strerror(errno),
                      q->bytes);
            drop_all(q);
            return -1;
        }
        q->head = f->next;
        if (!q->head) q->tail = NULL;
        q->bytes -= f->len;
        if (f->fd >= 0) close(f->fd);
        free(f);
    }
    return 0;
}

static void on_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct chatq *q = io->data;
    pump(q);
    if (!q->head) ev_io_stop(loop, io);
}

void chatq_init(struct chatq *q, struct ev_loop *loop)
{
    memset(q, 0, sizeof(*q));
    q->loop = loop;
    q->fd = -1;
    ev_init(&q->wio, on_writable);
    q->wio.data = q;
}

void chatq_detach(struct chatq *q)
{
    ev_io_stop(q->loop, &q->wio);
    drop_all(q);
    q->fd = -1;
}

void chatq_attach(struct chatq *q, int fd)
{
    chatq_detach(q);
    q->fd = fd;
    if (fd >= 0) ev_io_set(&q->wio, fd, EV_WRITE);
}

int chatq_send(struct chatq *q, uint8_t type, const void *payload, size_t len, int fd)
{
    if (q->fd < 0) return -1;
    if (!q->head) {
        if (ipc_send(q->fd, type, payload, len, fd) == 0) return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) return -1;
    }
    if (q->bytes + len > CHAT_QUEUE_MAX) {
        if (q->dropped++ % 1000 == 0)
            log_warn("chat link: peer not reading, %zu bytes queued; dropping frames", q->bytes);
        return -1;
    }
    struct chatq_frame *f = malloc(sizeof(*f) + len);
    if (!f) return -1;
    f->next = NULL;
    f->type = type;
    f->len = len;
    f->fd = fd >= 0 ? dup(fd) : -1;
    if (fd >= 0 && f->fd < 0) {
        free(f);
        return -1;
    }
    if (len) memcpy(f->data, payload, len);
    if (q->tail)
        q->tail->next = f;
    else
        q->head = f;
    q->tail = f;
    q->bytes += len;
    if (!ev_is_active(&q->wio)) ev_io_start(q->loop, &q->wio);
    return 0;
}
