/*
 * fuzz_sio.c — libFuzzer target for common/sio_packet.c.
 *
 * Feeds arbitrary bytes to every decoder the Socket.IO server exposes to clients:
 * a WebSocket text frame (Engine.IO packet), a polling payload (0x1e-separated,
 * base64 binary packets) and a Socket.IO packet, including binary placeholders.
 * Whatever decodes is encoded again and must decode to an equal packet.
 * Build and run: `make -f test/fuzz/fuzz.mk fuzz` (clang, -fsanitize=fuzzer,address).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sio_packet.h"

static void roundtrip(const struct sio_packet *p)
{
    struct buf b;
    buf_init(&b);
    if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) return;
    if (sio_encode(&b, p->type, p->nsp, p->ack_id, p->data) == SIO_OK && !buf_failed(&b)) {
        struct sio_packet q;
        if (sio_decode(b.data, b.len, &q) != SIO_OK) abort();
        if (q.type != p->type || q.ack_id != p->ack_id || strcmp(q.nsp, p->nsp) != 0) abort();
        if ((p->data == NULL) != (q.data == NULL)) abort();
        if (p->data && !json_equal(p->data, q.data)) abort();
        sio_packet_clear(&q);
    }
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct eio_packet ep;
    if (eio_decode_text(in, size, &ep) == SIO_OK && ep.type == EIO_MESSAGE) {
        struct sio_packet p;
        if (sio_decode(ep.data, ep.len, &p) == SIO_OK) {
            roundtrip(&p);
            if (p.attachments > 0 && p.data) {
                json_t *parts[SIO_MAX_ATTACHMENTS];
                for (int i = 0; i < p.attachments; i++) parts[i] = json_string("x");
                sio_fill_placeholders(p.data, parts, p.attachments);
                for (int i = 0; i < p.attachments; i++) json_decref(parts[i]);
            }
            sio_packet_clear(&p);
        }
    }

    struct buf scratch, again;
    buf_init(&scratch);
    buf_init(&again);
    size_t pos = 0;
    int n = 0;
    while (n++ < 1000 && eio_payload_next(in, size, &pos, &ep, &scratch) == 1)
        eio_payload_add(&again, ep.type, ep.data, ep.len, ep.binary);
    buf_free(&scratch);
    buf_free(&again);

    unsigned char out[256];
    sio_base64_decode(in, size, out, sizeof(out));
    return 0;
}
