/*
 * fuzz_chat_fields.c — libFuzzer target for the chat frames between workers and
 * the coordinator (coordinator/chat_proto.h).
 *
 * Three parts, each on every input:
 *   1. chat_fields_split() for 1..6 fields on an exact-size copy (ASan sees any
 *      read past the frame): fields lie inside the payload, the non-last ones hold
 *      no NUL and are followed by one, and chat_fields_build() gives the same bytes.
 *   2. chat_binary_parse(), the binary-attachment field a relayed Socket.IO event
 *      carries (worker/sio_chat.c emit_field): parts and JSON lie inside the field
 *      and cover it exactly; chat_binary_build() of what was parsed parses back to
 *      the same JSON and parts.
 *   3. The coordinator itself: the input is cut into frames (slot, type, length,
 *      payload; some carry a real fd) and fed to the real chat_coord_frame() on a
 *      real libev loop, with slots 0..2 linked to SOCK_SEQPACKET socketpairs the
 *      harness reads like workers do. Every frame the coordinator sends must be a
 *      coordinator->worker chat type whose payload splits into that type's fields,
 *      HISTORY_RES must carry a JSON object, a passed fd is always consumed (closed
 *      or forwarded), and chat_coord_free() leaves no leak. The MongoDB cluster bus
 *      is linked but never started (no server here): cross-host paths are not
 *      covered.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/ipc.h"
#include "../../common/log.h"
#include "../../coordinator/chat_coord.h"
#include "../../coordinator/chat_proto.h"

#define NLINKED 3

static struct ev_loop *loop;
static char *rbuf;

static void fields_part(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (!p) return;
    memcpy(p, data, size);
    for (int want = 1; want <= CHAT_MAX_FIELDS; want++) {
        struct chat_fields f;
        if (chat_fields_split(p, size, want, &f) != 0) {
            /* fewer than want-1 NULs */
            size_t nuls = 0;
            for (size_t i = 0; i < size; i++) nuls += p[i] == '\0';
            if (nuls >= (size_t)(want - 1)) abort();
            continue;
        }
        if (f.n != want) abort();
        size_t total = 0;
        for (int i = 0; i < want; i++) {
            if (f.f[i] < p || f.f[i] + f.len[i] > p + size) abort();
            if (i < want - 1) {
                if (memchr(f.f[i], '\0', f.len[i]) || f.f[i][f.len[i]] != '\0') abort();
                total += f.len[i] + 1;
            } else {
                total += f.len[i];
            }
        }
        if (total != size) abort();
        struct buf b;
        buf_init(&b);
        switch (want) {
        case 1:
            chat_fields_build(&b, 1, CFN(f.f[0], f.len[0]));
            break;
        case 2:
            chat_fields_build(&b, 2, CFN(f.f[0], f.len[0]), CFN(f.f[1], f.len[1]));
            break;
        case 3:
            chat_fields_build(&b, 3, CFN(f.f[0], f.len[0]), CFN(f.f[1], f.len[1]),
                              CFN(f.f[2], f.len[2]));
            break;
        default:
            buf_free(&b);
            continue;
        }
        if (b.len != size || (size && memcmp(b.data, p, size) != 0)) abort();
        buf_free(&b);
    }
    free(p);
}

static void binary_part(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (!p) return;
    memcpy(p, data, size);
    struct chat_binary cb;
    int rc = chat_binary_parse(p, size, &cb);
    if (rc == 0 && size && p[0] == 'B') abort();
    if (rc == 1) {
        if (cb.n < 1 || cb.n > CHAT_BINARY_MAX_PARTS) abort();
        if (cb.json < p || cb.json + cb.json_len > p + size) abort();
        const char *q = cb.json + cb.json_len;
        for (int i = 0; i < cb.n; i++) {
            if (cb.part[i] != q) abort();
            q += cb.part_len[i];
        }
        if (q != p + size) abort();
        struct buf b;
        buf_init(&b);
        chat_binary_build(&b, cb.json, cb.json_len, cb.n, cb.part, cb.part_len);
        struct chat_binary c2;
        if (chat_binary_parse(b.data, b.len, &c2) != 1 || c2.n != cb.n ||
            c2.json_len != cb.json_len || memcmp(c2.json, cb.json, cb.json_len) != 0)
            abort();
        for (int i = 0; i < cb.n; i++)
            if (c2.part_len[i] != cb.part_len[i] ||
                memcmp(c2.part[i], cb.part[i], cb.part_len[i]) != 0)
                abort();
        buf_free(&b);
    }
    free(p);
}

/* Read every frame the coordinator sent to a linked slot and check it. */
static void drain_links(const int *wfd)
{
    for (int s = 0; s < NLINKED; s++) {
        for (;;) {
            uint8_t type;
            int passed = -1;
            long n = ipc_recv(wfd[s], &type, rbuf, IPC_MAX_FRAME, &passed);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                abort();
            }
            if (n == 0 && type == 0) abort(); /* the coordinator closed a link */
            struct chat_fields f;
            int want;
            switch (type) {
            case CHAT_KICK:
            case CHAT_HISTORY_RES:
                want = 2;
                break;
            case CHAT_ROOM_EMIT:
            case CHAT_USER_EMIT:
            case CHAT_MATCHED:
            case CHAT_PARTNER_LEFT:
                want = 3;
                break;
            case CHAT_HANDOFF:
                want = 1;
                if (passed < 0) abort(); /* a hand-off always carries the client fd */
                break;
            default:
                abort(); /* not a coordinator -> worker frame */
            }
            if (type != CHAT_HANDOFF && passed >= 0) abort();
            if (passed >= 0) close(passed);
            if (chat_fields_split(rbuf, (size_t)n, want, &f) != 0) abort();
            if (type == CHAT_HISTORY_RES) {
                json_t *j = json_loadb(f.f[1], f.len[1], 0, NULL);
                if (!json_is_object(j)) abort();
                json_decref(j);
            }
            if (type == CHAT_USER_EMIT) {
                struct chat_binary cb;
                (void)chat_binary_parse(f.f[2], f.len[2], &cb);
            }
        }
    }
}

static void coord_part(const uint8_t *data, size_t size)
{
    struct chat_coord *cc = chat_coord_new(loop);
    if (!cc) return;
    int wfd[NLINKED], cfd[NLINKED];
    for (int s = 0; s < NLINKED; s++) {
        int sv[2];
        if (ipc_pair(sv) < 0) abort();
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
        cfd[s] = sv[0];
        wfd[s] = sv[1];
        chat_coord_link_up(cc, s, cfd[s]);
    }
    size_t pos = 0;
    int frames = 0;
    while (pos + 4 <= size && frames++ < 256) {
        uint8_t b0 = data[pos], b1 = data[pos + 1];
        size_t len = (size_t)data[pos + 2] | (size_t)data[pos + 3] << 8;
        pos += 4;
        if (len > size - pos) len = size - pos;
        int slot = b0 & 3;         /* 3: a slot without a link */
        if (b0 & 0x40) slot = 200; /* out of range */
        if ((b0 & 0x30) == 0x30 && slot < NLINKED) {
            /* the worker died: its announcements go, its link is re-added */
            chat_coord_link_down(cc, slot);
            chat_coord_link_up(cc, slot, cfd[slot]);
        }
        uint8_t type = (uint8_t)(CHAT_HELLO + b1 % 15);
        int fd = -1;
        if (b0 & 0x80) {
            int pp[2];
            if (pipe(pp) < 0) abort();
            close(pp[1]);
            fd = pp[0];
        }
        char *payload = malloc(len ? len : 1);
        if (!payload) abort();
        memcpy(payload, data + pos, len);
        pos += len;
        chat_coord_frame(cc, slot, type, payload, len, fd);
        free(payload);
        if (fd >= 0 && (fcntl(fd, F_GETFD) != -1 || errno != EBADF)) abort(); /* fd leaked */
        ev_run(loop, EVRUN_NOWAIT);
        drain_links(wfd);
    }
    for (int i = 0; i < 3; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        drain_links(wfd);
    }
    chat_coord_free(cc);
    for (int s = 0; s < NLINKED; s++) {
        close(cfd[s]);
        close(wfd[s]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop) {
        log_open(NULL, LOG_FORMAT_TEXT, LOG_ERROR, 0);
        loop = ev_loop_new(EVFLAG_AUTO);
        rbuf = malloc(IPC_MAX_FRAME);
    }
    fields_part(data, size);
    binary_part(data, size);
    coord_part(data, size);
    return 0;
}
