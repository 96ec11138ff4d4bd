/*
 * fuzz_json_body.c — libFuzzer target for the booking API's JSON bodies.
 *
 * Drives common/booking_input.c, the validation worker/handlers_booking.c runs for
 * POST /api/events and POST /api/seats/book (and its Idempotency-Key check), with
 * arbitrary bytes as the body. Checked (abort() on violation):
 *   - a rejection has status 400 (or 500 out of memory), a SPEC §4 code and a
 *     non-empty message, and leaves nothing allocated;
 *   - an accepted body gives 1..max distinct labels, each valid by an independent
 *     reimplementation of the label rule, and a non-empty name/eventId within its
 *     store bound;
 *   - what was accepted, serialized again as JSON, is accepted again with the same
 *     result (round trip);
 *   - the label and key rules agree with the reference rules on the raw input.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/booking_input.h"

static int ref_label(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 31) return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int ref_key(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 255) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

static void check_error(const struct booking_error *e)
{
    if (e->status != 400 && e->status != 500) abort();
    if (!e->code || (strcmp(e->code, "BAD_JSON") && strcmp(e->code, "BAD_REQUEST") &&
                     strcmp(e->code, "INTERNAL")))
        abort();
    if (!e->message[0] || strlen(e->message) >= sizeof(e->message)) abort();
}

static void check_seats(const struct booking_seats *s, int max)
{
    if (s->n < 1 || s->n > max || !s->v) abort();
    for (int i = 0; i < s->n; i++) {
        if (!ref_label(s->v[i]) || !booking_valid_label(s->v[i])) abort();
        for (int k = 0; k < i; k++)
            if (strcmp(s->v[i], s->v[k]) == 0) abort();
    }
}

static int same_seats(const struct booking_seats *a, const struct booking_seats *b)
{
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0) return 0;
    return 1;
}

static char *dump_with_seats(const char *key, const char *value, const struct booking_seats *s)
{
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, key, json_string(value));
    for (int i = 0; i < s->n; i++) json_array_append_new(arr, json_string(s->v[i]));
    json_object_set_new(o, "seats", arr);
    char *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!out) abort();
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct booking_error err;

    struct booking_book_input bk;
    if (booking_parse_book(body, size, &bk, &err) == 0) {
        size_t n = strlen(bk.event_id);
        if (n < 1 || n >= STORE_ID_LEN) abort();
        check_seats(&bk.seats, STORE_JOB_MAX_SEATS);
        char *again = dump_with_seats("eventId", bk.event_id, &bk.seats);
        struct booking_book_input b2;
        if (booking_parse_book(again, strlen(again), &b2, &err) != 0) abort();
        if (strcmp(b2.event_id, bk.event_id) || !same_seats(&b2.seats, &bk.seats)) abort();
        booking_seats_free(&b2.seats);
        free(again);
        booking_seats_free(&bk.seats);
    } else {
        check_error(&err);
        if (bk.seats.v || bk.seats.n) abort();
    }

    struct booking_event_input ev;
    if (booking_parse_event(body, size, &ev, &err) == 0) {
        size_t n = strlen(ev.name);
        if (n < 1 || n >= STORE_NAME_LEN) abort();
        check_seats(&ev.seats, STORE_EVENT_MAX_SEATS);
        char *again = dump_with_seats("name", ev.name, &ev.seats);
        struct booking_event_input e2;
        if (booking_parse_event(again, strlen(again), &e2, &err) != 0) abort();
        if (strcmp(e2.name, ev.name) || !same_seats(&e2.seats, &ev.seats)) abort();
        booking_seats_free(&e2.seats);
        free(again);
        booking_seats_free(&ev.seats);
    } else {
        check_error(&err);
        if (ev.seats.v || ev.seats.n) abort();
    }

    /* the raw input as a label and as an Idempotency-Key header value */
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (booking_valid_label(s) != ref_label(s)) abort();
    if (booking_valid_idem_key(s) != ref_key(s)) abort();
    free(s);
    return 0;
}
