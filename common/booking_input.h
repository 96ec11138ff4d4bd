/*
 * booking_input.h — validation of the booking API's request input (SPEC §5), pure
 * and without a request: the JSON bodies of POST /api/events and POST
 * /api/seats/book, seat labels and the Idempotency-Key header.
 *
 * worker/handlers_booking.c calls these and answers a failure with
 * resp_error(status, code, "%s", message); test/unit/test_booking_input.c and the
 * libFuzzer target test/fuzz/fuzz_json_body.c drive the very same code.
 */
#ifndef SVCD_BOOKING_INPUT_H
#define SVCD_BOOKING_INPUT_H

#include <stddef.h>

#include "../store/store_types.h"

#define BOOKING_MAX_ROWS 52 /* rows/cols form of an event: A..Z, AA..AZ */
#define BOOKING_MAX_COLS 200

/* A rejected input: the HTTP status (400, or 500 when out of memory), the error
 * code of SPEC §4 ("BAD_JSON", "BAD_REQUEST", "INTERNAL") and a message. */
struct booking_error {
    int status;
    const char *code;
    char message[320];
};

/* Seat labels, each malloc'd; owned by the caller (booking_seats_free). */
struct booking_seats {
    char **v;
    int n;
};
void booking_seats_free(struct booking_seats *s);

/* 1..31 of A-Z a-z 0-9 . _ - */
int booking_valid_label(const char *s);

/* NULL (no header) is valid; else 1..255 printable ASCII (0x21..0x7e). */
int booking_valid_idem_key(const char *key);

/* POST /api/events: {"name": "...", "seats": ["A1", ...]} or {"name", "rows", "cols"}. */
struct booking_event_input {
    char name[STORE_NAME_LEN];
    struct booking_seats seats;
};

/* POST /api/seats/book: {"eventId": "...", "seats": ["A1", ...]} (at most
 * STORE_JOB_MAX_SEATS). */
struct booking_book_input {
    char event_id[STORE_ID_LEN];
    struct booking_seats seats;
};

/* Return 0 with *out filled (the caller frees out->seats), or -1 with *err set and
 * nothing to free. `body` need not be NUL-terminated. */
int booking_parse_event(const char *body, size_t len, struct booking_event_input *out,
                        struct booking_error *err);
int booking_parse_book(const char *body, size_t len, struct booking_book_input *out,
                       struct booking_error *err);

#endif
