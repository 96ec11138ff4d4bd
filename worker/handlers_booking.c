/*
 * handlers_booking.c — SPEC §5: events, seat maps and the durable booking queue.
 *
 * Everything that can be checked without the database (JSON shape, seat labels,
 * duplicates, counts, the JWT) is checked on the loop and answered at once with a
 * precise 4xx. What needs the database runs as a store_pool task; the client gets
 * 202 + Location as soon as the job row exists, whatever the queue depth — seed
 * 003's ECONNRESET came from holding the request open while seats were booked.
 */
#include "handlers.h"
#include "response.h"
#include "sio.h"
#include "store_pool.h"
#include "worker_ctx.h"
#include "../common/booking_input.h"
#include "../common/jwt.h"
#include "../common/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_AFTER_S 5

enum booking_op { OP_EVENT_CREATE, OP_EVENT_SEATS, OP_BOOK, OP_STATUS };

struct booking_task {
    struct store_task task;
    struct http_request *req;
    int aborted;
    enum booking_op op;
    /* inputs */
    char user[JWT_USER_MAX];
    char id[STORE_ID_LEN];
    char name[STORE_NAME_LEN];
    char idem[STORE_KEY_LEN];
    char **seats;
    int nseats;
    /* outputs */
    enum store_rc rc;
    struct store_err err;
    struct store_job job;
    bool created_new;
    struct buf out;
};

static void task_free(struct booking_task *t)
{
    for (int i = 0; i < t->nseats; i++) free(t->seats[i]);
    free(t->seats);
    buf_free(&t->out);
    free(t);
}

static void on_abort(struct http_request *req, void *arg)
{
    (void)req;
    ((struct booking_task *)arg)->aborted = 1;
}

static void db_unavailable(struct http_request *req, const char *why)
{
    resp_header(req, "Retry-After", "%d", RETRY_AFTER_S);
    resp_error(req, 503, "DB_UNAVAILABLE", "the database is unavailable (%s); retry later", why);
}

/* Map a store failure to the HTTP answer. */
static void store_failure(struct http_request *req, const struct booking_task *t)
{
    switch (t->rc) {
    case STORE_NOT_FOUND:
        resp_error(req, 404, "NOT_FOUND", "%s", t->err.msg);
        break;
    case STORE_BAD_INPUT:
        resp_error(req, 400, "BAD_REQUEST", "%s", t->err.msg);
        break;
    case STORE_CONFLICT:
        resp_error(req, 409, "CONFLICT", "%s", t->err.msg);
        break;
    case STORE_UNAVAILABLE:
        db_unavailable(req, t->err.msg);
        break;
    default:
        resp_error(req, 500, "INTERNAL", "storage error: %s", t->err.msg);
        break;
    }
}

static void job_json(struct buf *b, const struct store_job *j)
{
    char ts[40];
    buf_puts(b, "{\"jobId\":");
    buf_json_str(b, j->id);
    buf_printf(b, ",\"status\":\"%s\",\"eventId\":", store_job_status_name(j->status));
    buf_json_str(b, j->event_id);
    buf_puts(b, ",\"seats\":[");
    for (int i = 0; i < j->nseats; i++) {
        if (i) buf_puts(b, ",");
        buf_json_str(b, j->seats[i]);
    }
    buf_puts(b, "]");
    if (j->status == STORE_JOB_FAILED) {
        buf_puts(b, ",\"error\":{\"code\":");
        buf_json_str(b, j->error_code);
        buf_puts(b, ",\"message\":");
        buf_json_str(b, j->error_message);
        buf_puts(b, "}");
    }
    store_format_time(j->created_at, ts, sizeof(ts));
    buf_puts(b, ",\"createdAt\":");
    buf_json_str(b, ts);
    if (j->finished_at) {
        store_format_time(j->finished_at, ts, sizeof(ts));
        buf_puts(b, ",\"finishedAt\":");
        buf_json_str(b, ts);
    } else {
        buf_puts(b, ",\"finishedAt\":null");
    }
    buf_puts(b, "}");
}

/* ---- the pool side ---------------------------------------------------------- */

static int seat_cb(void *arg, const char *seat, bool booked, const char *job_id)
{
    (void)job_id;
    struct booking_task *t = arg;
    if (t->out.len && t->out.data[t->out.len - 1] != '[') buf_puts(&t->out, ",");
    buf_puts(&t->out, "{\"seat\":");
    buf_json_str(&t->out, seat);
    buf_printf(&t->out, ",\"status\":\"%s\"}", booked ? "booked" : "available");
    return 0;
}

static void task_run(struct store_task *st, struct store *s)
{
    struct booking_task *t = (struct booking_task *)st;
    switch (t->op) {
    case OP_EVENT_CREATE:
        t->rc = store_event_create(s, t->name, (const char *const *)t->seats, t->nseats, t->id,
                                   &t->err);
        break;
    case OP_EVENT_SEATS: {
        struct store_event ev;
        t->rc = store_event_get(s, t->id, &ev, &t->err);
        if (t->rc != STORE_OK) break;
        buf_puts(&t->out, "{\"eventId\":");
        buf_json_str(&t->out, ev.id);
        buf_puts(&t->out, ",\"name\":");
        buf_json_str(&t->out, ev.name);
        buf_puts(&t->out, ",\"seats\":[");
        t->rc = store_event_seats(s, t->id, seat_cb, t, &t->err);
        buf_puts(&t->out, "]}");
        break;
    }
    case OP_BOOK:
        t->rc = store_job_submit(s, t->user, t->id, (const char *const *)t->seats, t->nseats,
                                 t->idem[0] ? t->idem : NULL, &t->job, &t->created_new, &t->err);
        break;
    case OP_STATUS:
        t->rc = store_job_get(s, t->id, &t->job, &t->err);
        break;
    }
}

/* ---- back on the loop ----------------------------------------------------------- */

static void task_done(struct store_task *st)
{
    struct booking_task *t = (struct booking_task *)st;
    if (t->aborted) {
        task_free(t);
        return;
    }
    struct http_request *req = t->req;
    req->on_abort = NULL;
    if (t->rc != STORE_OK) {
        if (t->rc == STORE_UNAVAILABLE && req->w->pool) store_pool_note_unavailable(req->w->pool);
        store_failure(req, t);
        task_free(t);
        return;
    }
    struct buf *b = resp_body(req);
    switch (t->op) {
    case OP_EVENT_CREATE:
        buf_puts(b, "{\"id\":");
        buf_json_str(b, t->id);
        buf_puts(b, ",\"name\":");
        buf_json_str(b, t->name);
        buf_printf(b, ",\"seats\":%d}", t->nseats);
        resp_header(req, "Location", "/api/events/%s/seats", t->id);
        resp_send(req, 201, CT_JSON);
        break;
    case OP_EVENT_SEATS:
        buf_append(b, t->out.data, t->out.len);
        resp_send(req, 200, CT_JSON);
        break;
    case OP_BOOK:
        job_json(b, &t->job);
        resp_header(req, "Location", "/api/seats/booking-status/%s", t->job.id);
        if (!t->created_new) resp_header(req, "Idempotent-Replayed", "true");
        resp_send(req, 202, CT_JSON);
        if (t->created_new) __atomic_add_fetch(&req->w->self->jobs[0], 1, __ATOMIC_RELAXED);
        if (t->created_new && req->w->pool) store_pool_kick(req->w->pool);
        break;
    case OP_STATUS:
        if (strcmp(t->job.user, t->user) != 0) {
            /* someone else's job: indistinguishable from a missing one */
            resp_error(req, 404, "NOT_FOUND", "job '%s' not found", t->id);
            break;
        }
        job_json(b, &t->job);
        resp_send(req, 200, CT_JSON);
        break;
    }
    task_free(t);
}

static void submit(struct http_request *req, struct booking_task *t)
{
    struct store_pool *pool = req->w->pool;
    t->task.run = task_run;
    t->task.done = task_done;
    t->req = req;
    if (store_pool_db_down(pool)) {
        /* Known down: answer now rather than queue behind server-selection waits
         * (a couple of seconds each, on a few threads). The health thread keeps
         * checking; the first good check lets requests through again. */
        task_free(t);
        db_unavailable(req, "the last check could not reach it");
        return;
    }
    if (!pool || store_pool_submit(pool, &t->task) < 0) {
        task_free(t);
        db_unavailable(req, pool ? "svcd is shutting down" : "storage is not open");
        return;
    }
    req->on_abort = on_abort;
    req->abort_arg = t;
}

/* ---- checks done at once --------------------------------------------------------- */

static int authenticate(struct http_request *req, char *user)
{
    const char *secret = req->w->cfg->auth.jwt_secret;
    if (!secret[0]) {
        resp_error(req, 503, "AUTH_NOT_CONFIGURED",
                   "no JWT secret is configured; set auth.jwt_secret or JWT_SECRET");
        return -1;
    }
    const char *h = http_request_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        resp_header(req, "WWW-Authenticate", "Bearer");
        resp_error(req, 401, "UNAUTHORIZED", "missing `Authorization: Bearer <JWT>` header");
        return -1;
    }
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    enum jwt_rc rc = jwt_verify(tok, strlen(tok), secret, (int64_t)time(NULL), user);
    if (rc != JWT_OK) {
        resp_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        resp_error(req, 401, "UNAUTHORIZED", "%s", jwt_reason(rc));
        return -1;
    }
    return 0;
}

/* A rejected body or header (common/booking_input.c): the one error shape. */
static void input_error(struct http_request *req, const struct booking_error *err)
{
    resp_error(req, err->status, err->code, "%s", err->message);
}

static struct booking_task *new_task(enum booking_op op)
{
    struct booking_task *t = calloc(1, sizeof(*t));
    if (t) {
        t->op = op;
        buf_init(&t->out);
    }
    return t;
}

/* ---- handlers --------------------------------------------------------------------- */

void handle_event_create(struct http_request *req)
{
    struct booking_event_input in;
    struct booking_error err;
    if (booking_parse_event(req->body.data, req->body.len, &in, &err) < 0) {
        input_error(req, &err);
        return;
    }
    struct booking_task *t = new_task(OP_EVENT_CREATE);
    if (!t) {
        booking_seats_free(&in.seats);
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    snprintf(t->name, sizeof(t->name), "%s", in.name);
    t->seats = in.seats.v;
    t->nseats = in.seats.n;
    submit(req, t);
}

static int take_id(struct http_request *req, const char *param, char *out)
{
    const char *id = http_request_param(req, param);
    if (!id || !*id || strlen(id) >= STORE_ID_LEN) {
        resp_error(req, 404, "NOT_FOUND", "no such id");
        return -1;
    }
    snprintf(out, STORE_ID_LEN, "%s", id);
    return 0;
}

void handle_event_seats(struct http_request *req)
{
    struct booking_task *t = new_task(OP_EVENT_SEATS);
    if (!t) {
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    if (take_id(req, "id", t->id) < 0) {
        task_free(t);
        return;
    }
    submit(req, t);
}

void handle_book(struct http_request *req)
{
    struct booking_task *t = new_task(OP_BOOK);
    if (!t) {
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    if (authenticate(req, t->user) < 0) {
        task_free(t);
        return;
    }
    const char *key = http_request_header(req, "Idempotency-Key");
    if (!booking_valid_idem_key(key)) {
        task_free(t);
        resp_error(req, 400, "BAD_REQUEST",
                   "Idempotency-Key must be 1-255 printable ASCII characters");
        return;
    }
    if (key) snprintf(t->idem, sizeof(t->idem), "%s", key);
    struct booking_book_input in;
    struct booking_error err;
    if (booking_parse_book(req->body.data, req->body.len, &in, &err) < 0) {
        task_free(t);
        input_error(req, &err);
        return;
    }
    snprintf(t->id, sizeof(t->id), "%s", in.event_id);
    t->seats = in.seats.v;
    t->nseats = in.seats.n;
    submit(req, t);
}

void handle_booking_status(struct http_request *req)
{
    struct booking_task *t = new_task(OP_STATUS);
    if (!t) {
        resp_error(req, 500, "INTERNAL", "out of memory");
        return;
    }
    if (authenticate(req, t->user) < 0 || take_id(req, "jobId", t->id) < 0) {
        task_free(t);
        return;
    }
    submit(req, t);
}

void booking_job_decided(struct worker_ctx *w, const struct store_job *job)
{
    /* SPEC §5: the result is pushed to the user's Socket.IO connection, on whatever
     * worker or coordinator link it lives. */
    __atomic_add_fetch(&w->self->jobs[job->status == STORE_JOB_FAILED ? 2 : 1], 1,
                       __ATOMIC_RELAXED);
    struct buf b;
    buf_init(&b);
    job_json(&b, job);
    if (!buf_failed(&b)) chat_push_user(w, job->user, "booking:update", b.data);
    buf_free(&b);
    log_info("booking job %s for user %s: %s%s%s", job->id, job->user,
             store_job_status_name(job->status), job->status == STORE_JOB_FAILED ? " — " : "",
             job->status == STORE_JOB_FAILED ? job->error_message : "");
}
