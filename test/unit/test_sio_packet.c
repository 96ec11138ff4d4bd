/* test_sio_packet.c — unit tests of common/sio_packet.c: Engine.IO v4 and Socket.IO v5
 * packets, polling payload framing, base64, and strict rejection of malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../common/sio_packet.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static void test_eio_text(void **state)
{
    (void)state;
    struct eio_packet p;
    assert_int_equal(eio_decode_text(S("2probe"), &p), SIO_OK);
    assert_int_equal(p.type, EIO_PING);
    assert_int_equal(p.len, 5);
    assert_memory_equal(p.data, "probe", 5);
    assert_int_equal(eio_decode_text(S("6"), &p), SIO_OK);
    assert_int_equal(p.type, EIO_NOOP);
    assert_int_equal(p.len, 0);
    assert_int_equal(eio_decode_text("", 0, &p), SIO_E_EMPTY);
    assert_int_equal(eio_decode_text(S("7x"), &p), SIO_E_TYPE);
    assert_int_equal(eio_decode_text(S("b"), &p), SIO_E_TYPE);

    struct buf b;
    buf_init(&b);
    eio_encode(&b, EIO_MESSAGE, S("2[\"x\"]"));
    assert_string_equal(b.data, "42[\"x\"]");
    buf_free(&b);
}

static void test_eio_payload(void **state)
{
    (void)state;
    struct buf out, scratch;
    buf_init(&out);
    buf_init(&scratch);
    eio_payload_add(&out, EIO_MESSAGE, S("hello"), 0);
    eio_payload_add(&out, EIO_PING, NULL, 0, 0);
    eio_payload_add(&out, EIO_MESSAGE, "\x01\x02\x03\xff", 4, 1);
    assert_string_equal(out.data, "4hello\x1e"
                                  "2\x1e"
                                  "bAQID/w==");

    size_t pos = 0;
    struct eio_packet p;
    assert_int_equal(eio_payload_next(out.data, out.len, &pos, &p, &scratch), 1);
    assert_int_equal(p.type, EIO_MESSAGE);
    assert_memory_equal(p.data, "hello", 5);
    assert_int_equal(eio_payload_next(out.data, out.len, &pos, &p, &scratch), 1);
    assert_int_equal(p.type, EIO_PING);
    assert_int_equal(eio_payload_next(out.data, out.len, &pos, &p, &scratch), 1);
    assert_true(p.binary);
    assert_int_equal(p.len, 4);
    assert_memory_equal(p.data, "\x01\x02\x03\xff", 4);
    assert_int_equal(eio_payload_next(out.data, out.len, &pos, &p, &scratch), 0);

    /* malformed payloads */
    pos = 0;
    assert_int_equal(eio_payload_next("", 0, &pos, &p, &scratch), SIO_E_EMPTY);
    pos = 0;
    assert_int_equal(eio_payload_next(S("4a\x1e\x1e"), &pos, &p, &scratch), 1);
    assert_int_equal(eio_payload_next(S("4a\x1e\x1e"), &pos, &p, &scratch), SIO_E_EMPTY);
    pos = 0;
    assert_int_equal(eio_payload_next(S("4a\x1e"), &pos, &p, &scratch), SIO_E_EMPTY);
    pos = 0;
    assert_int_equal(eio_payload_next(S("bAQID"), &pos, &p, &scratch), 1);
    pos = 0;
    assert_int_equal(eio_payload_next(S("bAQ"), &pos, &p, &scratch), SIO_E_BASE64);
    pos = 0;
    assert_int_equal(eio_payload_next(S("bA=QI"), &pos, &p, &scratch), SIO_E_BASE64);
    pos = 0;
    assert_int_equal(eio_payload_next(S("b!!!!"), &pos, &p, &scratch), SIO_E_BASE64);
    pos = 0;
    assert_int_equal(eio_payload_next(S("9"), &pos, &p, &scratch), SIO_E_TYPE);
    buf_free(&out);
    buf_free(&scratch);
}

static void test_base64(void **state)
{
    (void)state;
    const char *v[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *e[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        struct buf b;
        buf_init(&b);
        sio_base64_encode(&b, (const unsigned char *)v[i], strlen(v[i]));
        assert_string_equal(b.data ? b.data : "", e[i]);
        unsigned char dec[16];
        long n = sio_base64_decode(e[i], strlen(e[i]), dec, sizeof(dec));
        assert_int_equal(n, (long)strlen(v[i]));
        assert_memory_equal(dec, v[i], (size_t)n);
        buf_free(&b);
    }
    unsigned char d[4];
    assert_int_equal(sio_base64_decode("Zm9vYmFy", 8, d, sizeof(d)), -1); /* too small */
    assert_int_equal(sio_base64_decode("Z===", 4, d, sizeof(d)), -1);
}

static void test_sio_decode_ok(void **state)
{
    (void)state;
    struct sio_packet p;
    assert_int_equal(sio_decode(S("0"), &p), SIO_OK);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_string_equal(p.nsp, "/");
    assert_null(p.data);

    assert_int_equal(sio_decode(S("0{\"token\":\"abc\"}"), &p), SIO_OK);
    assert_string_equal(json_string_value(json_object_get(p.data, "token")), "abc");
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("0/admin,{\"token\":\"abc\"}"), &p), SIO_OK);
    assert_string_equal(p.nsp, "/admin");
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("2[\"message\",{\"room\":\"r\",\"text\":\"hi\"}]"), &p), SIO_OK);
    assert_int_equal(p.type, SIO_EVENT);
    assert_int_equal(p.ack_id, -1);
    assert_string_equal(json_string_value(json_array_get(p.data, 0)), "message");
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("213[\"join\",\"room1\"]"), &p), SIO_OK);
    assert_int_equal(p.ack_id, 13);
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("2/chat,7[\"x\"]"), &p), SIO_OK);
    assert_string_equal(p.nsp, "/chat");
    assert_int_equal(p.ack_id, 7);
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("37[\"ok\"]"), &p), SIO_OK);
    assert_int_equal(p.type, SIO_ACK);
    assert_int_equal(p.ack_id, 7);
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("1"), &p), SIO_OK);
    assert_int_equal(p.type, SIO_DISCONNECT);
    assert_int_equal(sio_decode(S("1/admin,"), &p), SIO_OK);
    assert_string_equal(p.nsp, "/admin");

    assert_int_equal(sio_decode(S("4{\"message\":\"nope\"}"), &p), SIO_OK);
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("51-[\"up\",{\"_placeholder\":true,\"num\":0}]"), &p), SIO_OK);
    assert_int_equal(p.type, SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 1);
    json_t *part = json_string("AQID");
    assert_int_equal(sio_fill_placeholders(p.data, &part, 1), 0);
    assert_string_equal(json_string_value(json_array_get(p.data, 1)), "AQID");
    json_decref(part);
    sio_packet_clear(&p);

    assert_int_equal(sio_decode(S("51-[\"up\",{\"_placeholder\":true,\"num\":3}]"), &p), SIO_OK);
    part = json_string("x");
    assert_int_equal(sio_fill_placeholders(p.data, &part, 1), SIO_E_ATTACHMENTS);
    json_decref(part);
    sio_packet_clear(&p);
}

static void test_sio_decode_bad(void **state)
{
    (void)state;
    struct sio_packet p;
    assert_int_equal(sio_decode("", 0, &p), SIO_E_EMPTY);
    assert_int_equal(sio_decode(S("9"), &p), SIO_E_TYPE);
    assert_int_equal(sio_decode(S("x"), &p), SIO_E_TYPE);
    assert_int_equal(sio_decode(S("2"), &p), SIO_E_SHAPE);          /* event without data */
    assert_int_equal(sio_decode(S("2[]"), &p), SIO_E_SHAPE);        /* no event name */
    assert_int_equal(sio_decode(S("2{\"a\":1}"), &p), SIO_E_SHAPE); /* not an array */
    assert_int_equal(sio_decode(S("2[{}]"), &p), SIO_E_SHAPE);
    assert_int_equal(sio_decode(S("2[\"x\""), &p), SIO_E_JSON);
    assert_int_equal(sio_decode(S("2[\"x\"]garbage"), &p), SIO_E_JSON);
    assert_int_equal(sio_decode(S("0[1]"), &p), SIO_E_SHAPE);
    assert_int_equal(sio_decode(S("1{}"), &p), SIO_E_SHAPE);
    assert_int_equal(sio_decode(S("3[\"no id\"]"), &p), SIO_E_SHAPE);
    assert_int_equal(sio_decode(S("4"), &p), SIO_E_SHAPE);
    assert_int_equal(sio_decode(S("2999999999999999999999[\"x\"]"), &p), SIO_E_ACK_ID);
    assert_int_equal(sio_decode(S("5[\"x\"]"), &p), SIO_E_ATTACHMENTS);
    assert_int_equal(sio_decode(S("599-[\"x\"]"), &p), SIO_E_ATTACHMENTS);
    assert_int_equal(sio_decode(S("51"), &p), SIO_E_ATTACHMENTS);
    assert_int_equal(sio_decode(S("2/a\x01,[\"x\"]"), &p), SIO_E_NSP);
    char longnsp[400];
    memset(longnsp, 'a', sizeof(longnsp));
    longnsp[0] = '2';
    longnsp[1] = '/';
    assert_int_equal(sio_decode(longnsp, sizeof(longnsp), &p), SIO_E_NSP);
    /* deep nesting is refused by jansson's depth limit, not a stack overflow */
    size_t n = 100000;
    char *deep = malloc(n + 2);
    deep[0] = '2';
    memset(deep + 1, '[', n);
    assert_int_equal(sio_decode(deep, n + 1, &p), SIO_E_JSON);
    free(deep);
}

static void test_sio_encode(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    json_t *d = json_pack("[s,{s:s}]", "session:replaced", "reason", "x");
    assert_int_equal(sio_encode(&b, SIO_EVENT, "/", -1, d), SIO_OK);
    assert_string_equal(b.data, "2[\"session:replaced\",{\"reason\":\"x\"}]");
    buf_reset(&b);
    assert_int_equal(sio_encode(&b, SIO_ACK, "/chat", 12, d), SIO_OK);
    assert_string_equal(b.data, "3/chat,12[\"session:replaced\",{\"reason\":\"x\"}]");
    buf_reset(&b);
    assert_int_equal(sio_encode(&b, SIO_DISCONNECT, "/", -1, NULL), SIO_OK);
    assert_string_equal(b.data, "1");
    buf_reset(&b);
    sio_encode_raw(&b, SIO_CONNECT, "/", -1, S("{\"sid\":\"abc\"}"));
    assert_string_equal(b.data, "0{\"sid\":\"abc\"}");
    /* round trip */
    struct sio_packet p;
    buf_reset(&b);
    sio_encode(&b, SIO_EVENT, "/x", 5, d);
    assert_int_equal(sio_decode(b.data, b.len, &p), SIO_OK);
    assert_string_equal(p.nsp, "/x");
    assert_int_equal(p.ack_id, 5);
    assert_true(json_equal(p.data, d));
    sio_packet_clear(&p);
    json_decref(d);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eio_text),       cmocka_unit_test(test_eio_payload),
        cmocka_unit_test(test_base64),         cmocka_unit_test(test_sio_decode_ok),
        cmocka_unit_test(test_sio_decode_bad), cmocka_unit_test(test_sio_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
