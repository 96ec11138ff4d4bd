/*
 * tls.c — TLS termination: handshake, then a shuttle between the TLS socket and
 * a socketpair whose other end the HTTP core serves as a plain connection.
 *
 * Why a shuttle rather than SSL_read/SSL_write inside http_conn.c: the HTTP core,
 * the reverse proxy and the WebSocket/Socket.IO code all drive raw file
 * descriptors (the proxy splices a client socket to an upstream, the Socket.IO
 * server passes a client socket to the worker that owns its session with
 * SCM_RIGHTS). A TLS session cannot cross processes, but the plaintext end of a
 * socketpair can: the shuttle stays in the worker that accepted the connection
 * and every layer above works unchanged over TLS. The price is one extra copy
 * through a unix socket per byte, measured in bench/ against nginx.
 *
 * Per connection: the TCP socket (net), our end of the socketpair (app), one
 * 16 KiB buffer each way. Back-pressure is end to end: a buffer that cannot be
 * written stops reading from the other side, so neither a slow client nor a
 * slow handler makes the shuttle grow.
 *
 * States: HANDSHAKE (no HTTP connection exists yet; bounded by
 * timeouts.headers; a plain-HTTP request on a TLS port gets a clear 400) →
 * OPEN (bytes both ways) → closed, when the HTTP side closes (its last bytes are
 * flushed, then close_notify) or the client goes away (EOF is passed on as a
 * half-close so an in-flight answer can still be written).
 */
#include "tls.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "http_conn.h"
#include "worker_ctx.h"

#define TLS_BUF 16384

struct tls_server {
    int n;
    SSL_CTX *ctx[CONFIG_MAX_LISTEN];
};

struct tls_conn {
    struct tls_conn *prev, *next;
    struct worker_ctx *w;
    SSL *ssl;
    int net_fd, app_fd; /* app_fd: -1 until the handshake is done */
    ev_io net_io, app_io;
    ev_timer timer; /* handshake deadline */
    struct sockaddr_storage peer;
    socklen_t peerlen;
    int handshaking;
    int net_eof;          /* the client finished sending (close_notify or EOF) */
    int app_eof;          /* the HTTP side closed or shut down its sending side */
    int ssl_want_wr;      /* the last SSL call needs the socket writable */
    int ssl_want_rd;      /* ... or readable (SSL_write during a key update) */
    int probed;           /* first byte looked at (plain HTTP on a TLS port?) */
    char to_app[TLS_BUF]; /* plaintext from the client for the HTTP side */
    size_t to_app_len, to_app_off;
    char to_net[TLS_BUF]; /* plaintext from the HTTP side for SSL_write */
    size_t to_net_len, to_net_off;
};

/* ---- contexts ------------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, h11, sizeof(h11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = sel_len;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK; /* a client without http/1.1 in its list: no ALPN */
}

static void ssl_errors(char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, err, errlen);
    else
        snprintf(err, errlen, "unknown OpenSSL error");
    ERR_clear_error();
}

struct tls_server *tls_server_load(const struct svcd_config *cfg, char *err, size_t errlen)
{
    err[0] = '\0';
    int any = 0;
    for (int i = 0; i < cfg->nlisten; i++) any |= cfg->listen[i].tls;
    if (!any) return NULL;
    struct tls_server *ts = calloc(1, sizeof(*ts));
    if (!ts) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ts->n = cfg->nlisten < CONFIG_MAX_LISTEN ? cfg->nlisten : CONFIG_MAX_LISTEN;
    for (int i = 0; i < ts->n; i++) {
        const struct config_listen *l = &cfg->listen[i];
        if (!l->tls) continue;
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        char why[256];
        if (!ctx) {
            ssl_errors(why, sizeof(why));
            snprintf(err, errlen, "listen %s: cannot create a TLS context: %s", l->address, why);
            tls_server_free(ts);
            return NULL;
        }
        ts->ctx[i] = ctx;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     SSL_OP_NO_COMPRESSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
        static const unsigned char sid_ctx[] = "svcd";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
        if (SSL_CTX_use_certificate_chain_file(ctx, l->tls_cert) != 1) {
            ssl_errors(why, sizeof(why));
            snprintf(err, errlen, "listen %s: cannot load the certificate %s: %s", l->address,
                     l->tls_cert, why);
            tls_server_free(ts);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, l->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            ssl_errors(why, sizeof(why));
            snprintf(err, errlen, "listen %s: cannot use the key %s with %s: %s", l->address,
                     l->tls_key, l->tls_cert, why);
            tls_server_free(ts);
            return NULL;
        }
    }
    return ts;
}

void tls_server_free(struct tls_server *ts)
{
    if (!ts) return;
    for (int i = 0; i < ts->n; i++)
        if (ts->ctx[i]) SSL_CTX_free(ts->ctx[i]);
    free(ts);
}

int tls_listener(const struct tls_server *ts, int i)
{
    return ts && i >= 0 && i < ts->n && ts->ctx[i] != NULL;
}

/* ---- connections ----------------------------------------------------------------- */

static void set_io(struct ev_loop *loop, ev_io *io, int fd, int events)
{
    if (fd < 0) events = 0;
    int cur = ev_is_active(io) ? (io->events & (EV_READ | EV_WRITE)) : 0;
    if (cur == events) return;
    ev_io_stop(loop, io);
    if (!events) return;
    ev_io_set(io, fd, events);
    ev_io_start(loop, io);
}

/* Stop the watchers, free the TLS session, close both sockets. */
static void tc_release(struct tls_conn *t)
{
    struct worker_ctx *w = t->w;
    ev_io_stop(w->loop, &t->net_io);
    ev_io_stop(w->loop, &t->app_io);
    ev_timer_stop(w->loop, &t->timer);
    if (t->ssl) SSL_free(t->ssl);
    if (t->net_fd >= 0) close(t->net_fd);
    if (t->app_fd >= 0) close(t->app_fd);
}

static void tc_free(struct tls_conn *t)
{
    struct worker_ctx *w = t->w;
    tc_release(t);
    if (t->prev)
        t->prev->next = t->next;
    else
        w->tls_conns = t->next;
    if (t->next) t->next->prev = t->prev;
    if (t->handshaking) w->ntls_handshake--;
    w->ntls--;
    free(t);
    worker_conn_closed(w);
}

/* A client that speaks plain HTTP to a TLS port (the usual http:// vs https://
 * mistake) gets an answer it can read instead of a handshake alert. */
static int plain_http_probe(struct tls_conn *t)
{
    unsigned char c;
    ssize_t n = recv(t->net_fd, &c, 1, MSG_PEEK);
    if (n != 1 || c < 'A' || c > 'Z') return 0; /* a TLS record starts with 0x16 */
    static const char body[] =
        "{\"error\":{\"code\":\"TLS_REQUIRED\",\"message\":\"this port speaks TLS: use "
        "https:// for this address\"}}";
    char resp[512];
    int len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       sizeof(body) - 1, body);
    /* Consume what the client sent so far: closing a socket with unread bytes
     * sends a reset, which may destroy the answer before the client reads it. */
    char sink[8192];
    while (recv(t->net_fd, sink, sizeof(sink), 0) > 0) {
    }
    ssize_t wn = send(t->net_fd, resp, (size_t)len, MSG_NOSIGNAL);
    (void)wn;
    shutdown(t->net_fd, SHUT_WR);
    log_debug("tls: plain HTTP sent to a TLS listener; answered 400");
    return 1;
}

static int start_http(struct tls_conn *t)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0) {
        log_warn("tls: cannot create a socketpair: %s", strerror(errno));
        return -1;
    }
    t->app_fd = sp[0];
    t->handshaking = 0;
    t->w->ntls_handshake--;
    ev_timer_stop(t->w->loop, &t->timer);
    if (http_conn_accept_tls(t->w, sp[1], (struct sockaddr *)&t->peer, t->peerlen) < 0)
        return -1; /* sp[1] closed by http_conn_accept_tls */
    return 0;
}

/* SSL result → what to wait for; returns 0 to go on waiting, -1 when the
 * connection is finished (error or the peer's close_notify, see *eof). */
static int ssl_status(struct tls_conn *t, int rc, const char *what, int *eof)
{
    int e = SSL_get_error(t->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        t->ssl_want_rd = 1;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        t->ssl_want_wr = 1;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        if (eof) *eof = 1;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (eof && (errno == 0 || errno == ECONNRESET || errno == EPIPE)) *eof = 1;
        log_debug("tls: %s: connection lost (%s)", what, errno ? strerror(errno) : "EOF");
        ERR_clear_error();
        return -1;
    default: {
        char why[256];
        ssl_errors(why, sizeof(why));
        log_debug("tls: %s failed: %s", what, why);
        return -1;
    }
    }
}

/* Move every byte that can move now, then arm the watchers for what is blocked. */
static void pump(struct tls_conn *t)
{
    struct worker_ctx *w = t->w;
    t->ssl_want_rd = t->ssl_want_wr = 0;

    if (t->handshaking) {
        if (!t->probed) {
            unsigned char c;
            ssize_t n = recv(t->net_fd, &c, 1, MSG_PEEK);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                t->ssl_want_rd = 1;
                goto arm;
            }
            t->probed = 1;
            if (n <= 0 || plain_http_probe(t)) {
                tc_free(t);
                return;
            }
        }
        ERR_clear_error();
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            if (ssl_status(t, rc, "handshake", NULL) == 0) goto arm;
            tc_free(t);
            return;
        }
        if (start_http(t) < 0) {
            tc_free(t);
            return;
        }
    }

    for (int progress = 1; progress;) {
        progress = 0;
        /* client → HTTP side */
        if (t->to_app_off < t->to_app_len) {
            ssize_t n = send(t->app_fd, t->to_app + t->to_app_off, t->to_app_len - t->to_app_off,
                             MSG_NOSIGNAL);
            if (n > 0) {
                t->to_app_off += (size_t)n;
                progress = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                /* the HTTP side is gone: nothing more to deliver */
                t->to_app_off = t->to_app_len;
                t->net_eof = 1;
                t->app_eof = 1;
            }
        }
        if (t->to_app_off >= t->to_app_len && !t->net_eof) {
            t->to_app_off = t->to_app_len = 0;
            ERR_clear_error();
            int n = SSL_read(t->ssl, t->to_app, sizeof(t->to_app));
            if (n > 0) {
                t->to_app_len = (size_t)n;
                progress = 1;
            } else {
                int eof = 0;
                if (ssl_status(t, n, "read", &eof) < 0) {
                    if (!eof) {
                        tc_free(t);
                        return;
                    }
                    t->net_eof = 1; /* pass the client's half-close on */
                    shutdown(t->app_fd, SHUT_WR);
                }
            }
        }
        /* HTTP side → client */
        if (t->to_net_off < t->to_net_len) {
            ERR_clear_error();
            int n =
                SSL_write(t->ssl, t->to_net + t->to_net_off, (int)(t->to_net_len - t->to_net_off));
            if (n > 0) {
                t->to_net_off += (size_t)n;
                progress = 1;
            } else if (ssl_status(t, n, "write", NULL) < 0) {
                tc_free(t);
                return;
            }
        }
        if (t->to_net_off >= t->to_net_len && !t->app_eof) {
            t->to_net_off = t->to_net_len = 0;
            ssize_t n = recv(t->app_fd, t->to_net, sizeof(t->to_net), 0);
            if (n > 0) {
                t->to_net_len = (size_t)n;
                progress = 1;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                t->app_eof = 1;
            }
        }
    }

    if (t->app_eof && t->to_net_off >= t->to_net_len) {
        /* The HTTP side is done and everything it wrote is out: close_notify
         * (best effort, one try: the socket is closed right after). */
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        tc_free(t);
        return;
    }
    if (t->net_eof && t->app_eof) {
        tc_free(t);
        return;
    }

arm:;
    int net_ev = 0, app_ev = 0;
    if (t->ssl_want_wr) net_ev |= EV_WRITE;
    if (t->ssl_want_rd) net_ev |= EV_READ;
    if (t->handshaking) net_ev = net_ev ? net_ev : EV_READ;
    if (!t->handshaking) {
        if (t->to_app_off < t->to_app_len) app_ev |= EV_WRITE;
        if (t->to_net_off >= t->to_net_len && !t->app_eof) app_ev |= EV_READ;
    }
    set_io(w->loop, &t->net_io, t->net_fd, net_ev);
    set_io(w->loop, &t->app_io, t->app_fd, app_ev);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    pump(io->data);
}

static void on_handshake_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    struct tls_conn *t = tm->data;
    log_debug("tls: handshake not finished within timeouts.headers; closing");
    tc_free(t);
}

void tls_accept(struct worker_ctx *w, int listener, int fd, const struct sockaddr *sa,
                socklen_t salen)
{
    if (!tls_listener(w->tls, listener)) {
        close(fd);
        return;
    }
    struct tls_conn *t = calloc(1, sizeof(*t));
    SSL *ssl = t ? SSL_new(w->tls->ctx[listener]) : NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        log_warn("tls: out of memory for a new connection");
        if (ssl) SSL_free(ssl);
        free(t);
        close(fd);
        ERR_clear_error();
        return;
    }
    SSL_set_accept_state(ssl);
    t->w = w;
    t->ssl = ssl;
    t->net_fd = fd;
    t->app_fd = -1;
    if (salen > sizeof(t->peer)) salen = sizeof(t->peer);
    memcpy(&t->peer, sa, salen);
    t->peerlen = salen;
    t->handshaking = 1;
    ev_io_init(&t->net_io, on_io, fd, EV_READ);
    ev_io_init(&t->app_io, on_io, 0, EV_READ);
    t->net_io.data = t->app_io.data = t;
    ev_timer_init(&t->timer, on_handshake_timeout, (double)w->cfg->timeouts.headers_ms / 1000., 0.);
    t->timer.data = t;
    ev_timer_start(w->loop, &t->timer);

    t->next = w->tls_conns;
    if (w->tls_conns) w->tls_conns->prev = t;
    w->tls_conns = t;
    w->ntls++;
    w->ntls_handshake++;
    pump(t);
}

void tls_drain_all(struct worker_ctx *w)
{
    struct tls_conn *t = w->tls_conns, *next;
    for (; t; t = next) {
        next = t->next;
        if (t->handshaking) tc_free(t);
    }
}

void tls_close_all(struct worker_ctx *w)
{
    while (w->tls_conns) {
        struct tls_conn *t = w->tls_conns;
        tc_release(t);
        w->tls_conns = t->next;
        free(t);
    }
    w->ntls = w->ntls_handshake = 0;
}
