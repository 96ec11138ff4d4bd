/*
 * booking_input.c — the booking API's input checks (see booking_input.h).
 *
 * Moved here from worker/handlers_booking.c unchanged in behaviour and wording
 * (test/integration/test_booking.py checks the messages), so that the unit test
 * and the fuzzer exercise exactly what the server runs. Checks happen in the
 * order the handlers always did them; the first failing one is reported.
 */
#include "booking_input.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(struct booking_error *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct booking_error *err, int status, const char *code, const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

void booking_seats_free(struct booking_seats *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

int booking_valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= STORE_SEAT_LEN) return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int booking_valid_idem_key(const char *key)
{
    if (!key) return 1;
    size_t n = strlen(key);
    int ok = n > 0 && n < STORE_KEY_LEN;
    for (size_t i = 0; ok && i < n; i++) ok = key[i] >= 0x21 && key[i] <= 0x7e;
    return ok;
}

/* The body as a JSON object (duplicate keys refused), or NULL with *err set. */
static json_t *parse_object(const char *body, size_t len, struct booking_error *err)
{
    json_error_t jerr;
    if (len == 0) {
        fail(err, 400, "BAD_JSON", "request body is empty; send a JSON object");
        return NULL;
    }
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        fail(err, 400, "BAD_JSON", "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
             jerr.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        fail(err, 400, "BAD_JSON", "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

/* A JSON array of 1..max distinct valid labels, copied into *out. */
static int take_seats(json_t *arr, int max, struct booking_seats *out, struct booking_error *err)
{
    if (!json_is_array(arr))
        return fail(err, 400, "BAD_REQUEST", "`seats` must be an array of seat labels like \"A1\"");
    size_t n = json_array_size(arr);
    if (n == 0) return fail(err, 400, "BAD_REQUEST", "`seats` is empty; list at least one seat");
    if (n > (size_t)max)
        return fail(err, 400, "BAD_REQUEST", "%zu seats requested; at most %d per request", n, max);
    out->v = calloc(n, sizeof(char *));
    out->n = 0;
    if (!out->v) return fail(err, 500, "INTERNAL", "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || !booking_valid_label(s)) {
            booking_seats_free(out);
            return fail(err, 400, "BAD_REQUEST",
                        "seat #%zu is not a valid label (1-31 of A-Z a-z 0-9 . _ -)", i + 1);
        }
        for (int k = 0; k < out->n; k++)
            if (strcmp(out->v[k], s) == 0) {
                fail(err, 400, "BAD_REQUEST", "seat %s is listed twice", s);
                booking_seats_free(out);
                return -1;
            }
        out->v[out->n] = strdup(s);
        if (!out->v[out->n]) {
            booking_seats_free(out);
            return fail(err, 500, "INTERNAL", "out of memory");
        }
        out->n++;
    }
    return 0;
}

/* rows x cols seats labelled A1.., B1.., ..., Z.., then AA1.. AZ.. */
static int grid_seats(json_int_t r, json_int_t c, struct booking_seats *out,
                      struct booking_error *err)
{
    out->v = calloc((size_t)(r * c), sizeof(char *));
    out->n = 0;
    if (!out->v) return fail(err, 500, "INTERNAL", "out of memory");
    for (json_int_t i = 0; i < r; i++)
        for (json_int_t j = 0; j < c; j++) {
            char label[32];
            if (i < 26)
                snprintf(label, sizeof(label), "%c%lld", (char)('A' + i), (long long)j + 1);
            else
                snprintf(label, sizeof(label), "A%c%lld", (char)('A' + i - 26), (long long)j + 1);
            out->v[out->n] = strdup(label);
            if (!out->v[out->n]) {
                booking_seats_free(out);
                return fail(err, 500, "INTERNAL", "out of memory");
            }
            out->n++;
        }
    return 0;
}

int booking_parse_event(const char *body, size_t len, struct booking_event_input *out,
                        struct booking_error *err)
{
    memset(out, 0, sizeof(*out));
    json_t *doc = parse_object(body, len, err);
    if (!doc) return -1;
    const char *name = json_string_value(json_object_get(doc, "name"));
    json_t *seats = json_object_get(doc, "seats");
    json_t *rows = json_object_get(doc, "rows"), *cols = json_object_get(doc, "cols");
    int rc = -1;
    if (!name || !*name || strlen(name) >= STORE_NAME_LEN) {
        fail(err, 400, "BAD_REQUEST", "`name` must be a non-empty string (< 256 bytes)");
    } else if (seats) {
        rc = take_seats(seats, STORE_EVENT_MAX_SEATS, &out->seats, err);
    } else if (json_is_integer(rows) && json_is_integer(cols)) {
        json_int_t r = json_integer_value(rows), c = json_integer_value(cols);
        if (r < 1 || r > BOOKING_MAX_ROWS || c < 1 || c > BOOKING_MAX_COLS ||
            r * c > STORE_EVENT_MAX_SEATS)
            fail(err, 400, "BAD_REQUEST",
                 "`rows` must be 1..%d and `cols` 1..%d (at most %d seats)", BOOKING_MAX_ROWS,
                 BOOKING_MAX_COLS, STORE_EVENT_MAX_SEATS);
        else
            rc = grid_seats(r, c, &out->seats, err);
    } else {
        fail(err, 400, "BAD_REQUEST",
             "give either `seats` (an array of labels) or integer `rows` and `cols`");
    }
    if (rc == 0) snprintf(out->name, sizeof(out->name), "%s", name);
    json_decref(doc);
    return rc;
}

int booking_parse_book(const char *body, size_t len, struct booking_book_input *out,
                       struct booking_error *err)
{
    memset(out, 0, sizeof(*out));
    json_t *doc = parse_object(body, len, err);
    if (!doc) return -1;
    const char *event = json_string_value(json_object_get(doc, "eventId"));
    int rc = -1;
    if (!event || !*event || strlen(event) >= STORE_ID_LEN)
        fail(err, 400, "BAD_REQUEST", "`eventId` must be the id of an event");
    else
        rc = take_seats(json_object_get(doc, "seats"), STORE_JOB_MAX_SEATS, &out->seats, err);
    if (rc == 0) snprintf(out->event_id, sizeof(out->event_id), "%s", event);
    json_decref(doc);
    return rc;
}
