/*
 * test_booking_input.c — common/booking_input.c: the JSON bodies of POST /api/events
 * and POST /api/seats/book, seat labels and Idempotency-Key, with the exact status,
 * code and message of every rejection (the server answers with these verbatim).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../common/booking_input.h"

static void expect_book_error(const char *body, int status, const char *code, const char *msg)
{
    struct booking_book_input in;
    struct booking_error err;
    assert_int_equal(booking_parse_book(body, strlen(body), &in, &err), -1);
    assert_int_equal(err.status, status);
    assert_string_equal(err.code, code);
    if (msg) assert_string_equal(err.message, msg);
    assert_null(in.seats.v);
}

static void expect_event_error(const char *body, const char *code, const char *msg)
{
    struct booking_event_input in;
    struct booking_error err;
    assert_int_equal(booking_parse_event(body, strlen(body), &in, &err), -1);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, code);
    if (msg) assert_string_equal(err.message, msg);
    assert_null(in.seats.v);
}

static void test_labels(void **state)
{
    (void)state;
    assert_true(booking_valid_label("A1"));
    assert_true(booking_valid_label("z.9_-"));
    assert_true(booking_valid_label("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"));   /* 31 */
    assert_false(booking_valid_label("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")); /* 32 */
    assert_false(booking_valid_label(""));
    assert_false(booking_valid_label("A 1"));
    assert_false(booking_valid_label("A1\xc3\xa9"));
    assert_false(booking_valid_label("A/1"));
}

static void test_idem_key(void **state)
{
    (void)state;
    char k[300];
    assert_true(booking_valid_idem_key(NULL));
    assert_true(booking_valid_idem_key("abc-123_!~"));
    memset(k, 'x', 255);
    k[255] = '\0';
    assert_true(booking_valid_idem_key(k));
    k[255] = 'x';
    k[256] = '\0';
    assert_false(booking_valid_idem_key(k));
    assert_false(booking_valid_idem_key(""));
    assert_false(booking_valid_idem_key("has space"));
    assert_false(booking_valid_idem_key("tab\there"));
    assert_false(booking_valid_idem_key("caf\xc3\xa9"));
}

static void test_book_ok(void **state)
{
    (void)state;
    const char *body = "{\"eventId\":\"ev1\",\"seats\":[\"A1\",\"B2\"],\"extra\":1}";
    struct booking_book_input in;
    struct booking_error err;
    assert_int_equal(booking_parse_book(body, strlen(body), &in, &err), 0);
    assert_string_equal(in.event_id, "ev1");
    assert_int_equal(in.seats.n, 2);
    assert_string_equal(in.seats.v[0], "A1");
    assert_string_equal(in.seats.v[1], "B2");
    booking_seats_free(&in.seats);
    assert_null(in.seats.v);
    /* not NUL-terminated: only `len` bytes are read */
    char raw[] = "{\"eventId\":\"e\",\"seats\":[\"C3\"]}GARBAGE";
    assert_int_equal(booking_parse_book(raw, strlen(raw) - 7, &in, &err), 0);
    assert_int_equal(in.seats.n, 1);
    booking_seats_free(&in.seats);
}

static void test_book_bad_json(void **state)
{
    (void)state;
    struct booking_book_input in;
    struct booking_error err;
    assert_int_equal(booking_parse_book(NULL, 0, &in, &err), -1);
    assert_string_equal(err.code, "BAD_JSON");
    assert_string_equal(err.message, "request body is empty; send a JSON object");
    expect_book_error("{", 400, "BAD_JSON", NULL);
    expect_book_error("not json", 400, "BAD_JSON", NULL);
    expect_book_error("{\"eventId\":\"x\",\"eventId\":\"y\",\"seats\":[\"A1\"]}", 400, "BAD_JSON",
                      NULL);
    expect_book_error("[1, 2]", 400, "BAD_JSON", "the body must be a JSON object");
    expect_book_error("\"A1\"", 400, "BAD_JSON", NULL); /* jansson: not an array/object */
    struct booking_error e2;
    assert_int_equal(booking_parse_book("{\"a\":}", 6, &in, &e2), -1);
    assert_non_null(strstr(e2.message, "invalid JSON at line 1 column"));
}

static void test_book_bad_fields(void **state)
{
    (void)state;
    const char *ev = "`eventId` must be the id of an event";
    expect_book_error("{\"seats\":[\"A1\"]}", 400, "BAD_REQUEST", ev);
    expect_book_error("{\"eventId\":5,\"seats\":[\"A1\"]}", 400, "BAD_REQUEST", ev);
    expect_book_error("{\"eventId\":\"\",\"seats\":[\"A1\"]}", 400, "BAD_REQUEST", ev);
    expect_book_error(
        "{\"eventId\":\"ffffffffffffffffffffffffffffffffffffffff\",\"seats\":[\"A1\"]}", 400,
        "BAD_REQUEST", ev); /* 40 bytes */
    expect_book_error("{\"eventId\":\"e\"}", 400, "BAD_REQUEST",
                      "`seats` must be an array of seat labels like \"A1\"");
    expect_book_error("{\"eventId\":\"e\",\"seats\":\"A1\"}", 400, "BAD_REQUEST",
                      "`seats` must be an array of seat labels like \"A1\"");
    expect_book_error("{\"eventId\":\"e\",\"seats\":[]}", 400, "BAD_REQUEST",
                      "`seats` is empty; list at least one seat");
    expect_book_error("{\"eventId\":\"e\",\"seats\":[\"A1\",\"B2\",\"A1\"]}", 400, "BAD_REQUEST",
                      "seat A1 is listed twice");
    expect_book_error("{\"eventId\":\"e\",\"seats\":[\"A1\",7]}", 400, "BAD_REQUEST",
                      "seat #2 is not a valid label (1-31 of A-Z a-z 0-9 . _ -)");
    expect_book_error("{\"eventId\":\"e\",\"seats\":[\"A 1\"]}", 400, "BAD_REQUEST",
                      "seat #1 is not a valid label (1-31 of A-Z a-z 0-9 . _ -)");
    /* 65 seats */
    char body[2048];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"eventId\":\"e\",\"seats\":[");
    for (int i = 1; i <= 65; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"S%d\"", i > 1 ? "," : "", i);
    snprintf(body + n, sizeof(body) - n, "]}");
    expect_book_error(body, 400, "BAD_REQUEST", "65 seats requested; at most 64 per request");
}

static void test_event_ok(void **state)
{
    (void)state;
    struct booking_event_input in;
    struct booking_error err;
    const char *b1 = "{\"name\":\"show\",\"seats\":[\"X1\",\"X2\",\"X3\"]}";
    assert_int_equal(booking_parse_event(b1, strlen(b1), &in, &err), 0);
    assert_string_equal(in.name, "show");
    assert_int_equal(in.seats.n, 3);
    booking_seats_free(&in.seats);
    /* rows/cols: A.., Z.., then AA.. AZ.. */
    const char *b2 = "{\"name\":\"grid\",\"rows\":52,\"cols\":2}";
    assert_int_equal(booking_parse_event(b2, strlen(b2), &in, &err), 0);
    assert_int_equal(in.seats.n, 104);
    assert_string_equal(in.seats.v[0], "A1");
    assert_string_equal(in.seats.v[1], "A2");
    assert_string_equal(in.seats.v[51], "Z2");
    assert_string_equal(in.seats.v[52], "AA1");
    assert_string_equal(in.seats.v[103], "AZ2");
    booking_seats_free(&in.seats);
    /* `seats` wins over rows/cols */
    const char *b3 = "{\"name\":\"s\",\"rows\":2,\"cols\":2,\"seats\":[\"Q\"]}";
    assert_int_equal(booking_parse_event(b3, strlen(b3), &in, &err), 0);
    assert_int_equal(in.seats.n, 1);
    booking_seats_free(&in.seats);
}

static void test_event_bad(void **state)
{
    (void)state;
    const char *nm = "`name` must be a non-empty string (< 256 bytes)";
    const char *rc = "`rows` must be 1..52 and `cols` 1..200 (at most 10000 seats)";
    const char *either = "give either `seats` (an array of labels) or integer `rows` and `cols`";
    expect_event_error("{", "BAD_JSON", NULL);
    expect_event_error("{\"seats\":[\"A1\"]}", "BAD_REQUEST", nm);
    expect_event_error("{\"name\":\"\",\"seats\":[\"A1\"]}", "BAD_REQUEST", nm);
    expect_event_error("{\"name\":\"x\"}", "BAD_REQUEST", either);
    expect_event_error("{\"name\":\"x\",\"rows\":\"2\",\"cols\":2}", "BAD_REQUEST", either);
    expect_event_error("{\"name\":\"x\",\"rows\":0,\"cols\":5}", "BAD_REQUEST", rc);
    expect_event_error("{\"name\":\"x\",\"rows\":2,\"cols\":201}", "BAD_REQUEST", rc);
    expect_event_error("{\"name\":\"x\",\"rows\":53,\"cols\":1}", "BAD_REQUEST", rc);
    expect_event_error("{\"name\":\"x\",\"rows\":-9223372036854775807,\"cols\":-2}", "BAD_REQUEST",
                       rc);
    expect_event_error("{\"name\":\"x\",\"seats\":[]}", "BAD_REQUEST",
                       "`seats` is empty; list at least one seat");
    expect_event_error("{\"name\":\"x\",\"seats\":[\"A1\",\"A1\"]}", "BAD_REQUEST",
                       "seat A1 is listed twice");
    char big[400];
    memset(big, 'n', sizeof(big));
    memcpy(big, "{\"name\":\"", 9);
    memcpy(big + 9 + 256, "\",\"seats\":[\"A1\"]}", 18);
    expect_event_error(big, "BAD_REQUEST", nm); /* a 256-byte name */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels),          cmocka_unit_test(test_idem_key),
        cmocka_unit_test(test_book_ok),         cmocka_unit_test(test_book_bad_json),
        cmocka_unit_test(test_book_bad_fields), cmocka_unit_test(test_event_ok),
        cmocka_unit_test(test_event_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
