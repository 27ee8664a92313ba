/*
 * tp_tls: the TLS transport - an OpenSSL session over a non-blocking socket.
 *
 * Does: SSL_read/SSL_write/SSL_do_handshake with OpenSSL's WANT_READ/WANT_WRITE turned
 * into EAGAIN plus transport.want bits (a read that must write first, a write that must
 * read first), so the owner's watchers can follow either need and back-pressure never
 * deadlocks; reports decrypted-but-unread bytes (read-ahead may hold whole records while
 * the socket is empty); counts handshakes (full, resumed, failed) and logs failures at
 * debug; sends one close_notify (never waiting for the peer's) before the socket closes;
 * builds the client-certificate headers of a verified connection. Accepted and client
 * (tls_upstream.c) sessions alike read with read-ahead (one recv per record, not a header
 * read and a body read) through its own socket BIO (send/recv without libc's wrappers,
 * MSG_MORE where more follows at once), which puts the TLS 1.3 session ticket, owed from the
 * handshake, in the first response's segment, and a last response in the segment of the
 * close_notify; the record buffers are given back while the connection idles (transport
 * idle op) instead of around every read and write.
 * Does not: choose certificates (tls.c's servername callback does) or time the handshake
 * (conn.c bounds it with the header timeout).
 * Invariants:
 *   - a write that returned EAGAIN is repeated with the same bytes first (the conn's output
 *     buffer only grows at its end; SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the move);
 *   - after a fatal error no close_notify is attempted (quiet shutdown), as OpenSSL requires;
 *   - a connection is counted in exactly one handshake result.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "metrics.h"
#include "snapshot.h"
#include "tls.h"
#include "transport.h"

/* transport.priv */
#define TP_DRY 0x01     /* the last read found only a partial record: nothing pending */
#define TP_COUNTED 0x02 /* the handshake's result is counted */
#define TP_FATAL 0x04   /* a fatal error: no close_notify */
#define TP_TICKET 0x08  /* a TLS 1.3 session ticket is owed: it goes with the first write */
#define TP_MORE 0x10    /* this SSL_write's records go with MSG_MORE (more follows at once) */
/* records written while the session is back in its handshake (the owed ticket) go with
 * MSG_MORE: the application data follows */
#define TP_CORK 0x20
#define TP_EOF 0x40 /* the socket read returned end of stream */

static SSL *sess(const struct transport *t)
{
    return (SSL *)t->sess;
}

/*
 * ---- the socket BIO ----
 * OpenSSL's socket BIO, with two differences: send(2)/recv(2) without libc's cancellation
 * wrappers (transport.h), and MSG_MORE on the records the transport knows are followed at
 * once by more (the deferred ticket before the first response, a last response before
 * close_notify), so they leave in one TCP segment instead of one each.
 */
static BIO_METHOD *sock_method;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

static int sock_write(BIO *b, const char *buf, int len)
{
    struct transport *t = BIO_get_data(b);
    int flags = MSG_NOSIGNAL;
    ssize_t n;

    if ((t->priv & TP_MORE) || ((t->priv & TP_CORK) && SSL_in_init(sess(t)))) flags |= MSG_MORE;
    BIO_clear_retry_flags(b);
    n = transport_sock_send(t->fd, buf, (size_t)len, flags);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    struct transport *t = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    n = transport_sock_recv(t->fd, buf, (size_t)len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    else if (n == 0)
        t->priv |= TP_EOF;
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct transport *t = BIO_get_data(b);

    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* every write went to the socket already */
    case BIO_CTRL_DUP:
        return 1;
    case BIO_CTRL_EOF: /* OpenSSL tells an unexpected EOF from a failed read by it */
        return (t->priv & TP_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr) *(int *)ptr = t->fd;
        return t->fd;
    default: /* the socket is the transport's to close; no kTLS, no pending bytes */
        return 0;
    }
}

static void sock_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "strait socket");

    if (m && BIO_meth_set_write(m, sock_write) == 1 && BIO_meth_set_read(m, sock_read) == 1 &&
        BIO_meth_set_ctrl(m, sock_ctrl) == 1) {
        sock_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* A BIO for t's socket, or NULL. */
static BIO *sock_bio(struct transport *t)
{
    BIO *b;

    if (pthread_once(&sock_once, sock_method_make) != 0 || !sock_method) return NULL;
    if (!(b = BIO_new(sock_method))) return NULL;
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    return b;
}

/* Maps a failed SSL call to -1 with errno; sets want bits for cross-direction needs. */
static ssize_t fail(struct transport *t, int rc, int is_read)
{
    int e = SSL_get_error(sess(t), rc), saved = errno;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (is_read)
            t->priv |= TP_DRY;
        else
            t->want |= TRANSPORT_SEND_WANTS_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (is_read) t->want |= TRANSPORT_RECV_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        if (is_read) return 0; /* close_notify (or, ignored, an unexpected EOF) */
        errno = EPIPE;
        break;
    case SSL_ERROR_SYSCALL:
        errno = saved ? saved : ECONNRESET;
        break;
    default:
        errno = EPROTO;
        break;
    }
    t->priv |= TP_FATAL;
    SSL_set_quiet_shutdown(sess(t), 1);
    ERR_clear_error();
    return -1;
}

static ssize_t tls_send(struct transport *t, const void *buf, size_t len, int flags)
{
    int n;

    t->want &= (uint8_t)~TRANSPORT_SEND_WANTS_READ;
    if (len > INT_MAX) len = INT_MAX;
    ERR_clear_error();
    if (t->priv & TP_TICKET) {
        /* the ticket is written by this SSL_write, in front of the data, in one segment */
        t->priv &= (uint8_t)~TP_TICKET;
        if (SSL_new_session_ticket(sess(t)) == 1) t->priv |= TP_CORK;
        ERR_clear_error();
    }
    if (flags & MSG_MORE) t->priv |= TP_MORE;
    n = SSL_write(sess(t), buf, (int)len);
    t->priv &= (uint8_t) ~(TP_MORE | TP_CORK);
    if (n > 0) return n;
    return fail(t, n, 0);
}

static ssize_t tls_recv(struct transport *t, void *buf, size_t len)
{
    int n;

    t->want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
    t->priv &= (uint8_t)~TP_DRY;
    if (len > INT_MAX) len = INT_MAX;
    ERR_clear_error();
    n = SSL_read(sess(t), buf, (int)len);
    if (n > 0) return n;
    return fail(t, n, 1);
}

static void count(struct transport *t, int result)
{
    /* the metric is about clients' handshakes; upstream sessions (tls_upstream.c) are not */
    if ((t->priv & TP_COUNTED) || !SSL_is_server(sess(t))) return;
    /* a connection closed before it sent a byte (a port probe) was no handshake at all */
    if (result == METRICS_TLS_FAILED && BIO_number_read(SSL_get_rbio(sess(t))) == 0) return;
    t->priv |= TP_COUNTED;
    metrics_tls_handshake(result);
}

/* The handshake ended (either way): the snapshot was only needed to pick a certificate. */
static void drop_snapshot(SSL *ssl)
{
    struct snapshot *s = SSL_get_app_data(ssl);

    if (s) {
        SSL_set_app_data(ssl, NULL);
        snapshot_unref(s);
    }
}

static int tls_handshake(struct transport *t)
{
    SSL *ssl = sess(t);
    int rc;

    t->want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
    ERR_clear_error();
    rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        /* no ticket was sent (num_tickets 0, tls.c): TLS 1.3 sends it with the first write */
        if (SSL_is_server(ssl) && SSL_version(ssl) == TLS1_3_VERSION &&
            !(SSL_get_options(ssl) & SSL_OP_NO_TICKET)) /* mesh contexts: no resumption */
            t->priv |= TP_TICKET;
        drop_snapshot(ssl);
        count(t, SSL_session_reused(ssl) ? METRICS_TLS_RESUMED : METRICS_TLS_FULL);
        return 1;
    }
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        t->want |= TRANSPORT_RECV_WANTS_WRITE;
        return 0;
    default: {
        char why[256];
        unsigned long e = ERR_peek_error();
        if (e)
            ERR_error_string_n(e, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", errno ? strerror(errno) : "connection closed");
        log_debug("tls_handshake_failed", "reason=\"%s\"", why);
    }
        t->priv |= TP_FATAL;
        SSL_set_quiet_shutdown(ssl, 1);
        /* a client session's owner reads the reason next (tls_upstream_error clears it) */
        if (SSL_is_server(ssl)) ERR_clear_error();
        drop_snapshot(ssl);
        count(t, METRICS_TLS_FAILED);
        return -1;
    }
}

static int tls_pending(const struct transport *t)
{
    SSL *ssl = sess(t);

    /* a partial record left by a read that hit the empty socket is not worth a read */
    return SSL_pending(ssl) > 0 || (!(t->priv & TP_DRY) && SSL_has_pending(ssl));
}

/*
 * One close_notify, if the session is up and none went yet; never waits for the peer's.
 * It goes with MSG_MORE: the caller's shutdown(SHUT_WR) pushes it (and a last response
 * written with MSG_MORE before it) out with the FIN, in one segment. Returns 1 if it went.
 */
static int notify(struct transport *t)
{
    SSL *ssl = sess(t);

    if ((t->priv & (TP_FATAL | TRANSPORT_PRIV_ABORT)) || !SSL_is_init_finished(ssl) ||
        (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        return 0;
    ERR_clear_error();
    t->priv |= TP_MORE;
    (void)SSL_shutdown(ssl);
    t->priv &= (uint8_t)~TP_MORE;
    ERR_clear_error();
    return 1;
}

static int tls_shutdown_write(struct transport *t)
{
    notify(t);
    return shutdown(t->fd, SHUT_WR);
}

static void tls_close(struct transport *t)
{
    SSL *ssl = sess(t);

    if (ssl) {
        /* FIN now, with the close_notify, not a segment of its own from close() (and no
         * close_notify left corked in the socket if close() has to reset it) */
        if (notify(t) && t->fd >= 0) (void)shutdown(t->fd, SHUT_WR);
        if (!SSL_is_init_finished(ssl)) count(t, METRICS_TLS_FAILED); /* timeout, EOF */
        drop_snapshot(ssl);
        SSL_free(ssl);
        t->sess = NULL;
    }
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
}

/*
 * Instead of SSL_MODE_RELEASE_BUFFERS (which frees and allocates the 17 KiB record buffers
 * around every read and write, ~6 % of a handshake): kept while the connection works, given
 * back while it idles. OpenSSL refuses (and keeps them) while they hold unread bytes.
 */
static void tls_idle(struct transport *t)
{
    if (!(t->priv & TP_FATAL)) (void)SSL_free_buffers(sess(t));
}

const struct transport_ops transport_tls_ops = {
    .name = "tls",
    .send = tls_send,
    .recv = tls_recv,
    .handshake = tls_handshake,
    .pending = tls_pending,
    .shutdown_write = tls_shutdown_write,
    .close = tls_close,
    .idle = tls_idle,
};

int tls_transport_accept(struct transport *t, int fd, struct snapshot *snap)
{
    return tls_transport_accept_ctx(t, fd, tls_base_ctx(), snap);
}

/*
 * Puts ssl on socket fd as t's session: the socket BIO above, and read-ahead (one recv per
 * record, not a header read and a body read; tls_pending reports what it holds). Returns 0,
 * or -1 with t as it was.
 */
static int attach(struct transport *t, int fd, SSL *ssl)
{
    struct transport save = *t;
    BIO *b;

    t->fd = fd;
    t->want = t->priv = 0;
    if (!(b = sock_bio(t))) {
        *t = save;
        ERR_clear_error();
        return -1;
    }
    SSL_set_bio(ssl, b, b); /* frees a BIO an earlier SSL_set_fd made */
    SSL_set_read_ahead(ssl, 1);
    t->ops = &transport_tls_ops;
    t->sess = ssl;
    return 0;
}

int tls_transport_accept_ctx(struct transport *t, int fd, SSL_CTX *ctx, struct snapshot *snap)
{
    SSL *ssl;

    if (!ctx || !(ssl = SSL_new(ctx))) return -1;
    if (attach(t, fd, ssl) < 0) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, snapshot_ref(snap)); /* for the servername callback */
    return 0;
}

int tls_transport_connect(struct transport *t, int fd, SSL *ssl)
{
    return attach(t, fd, ssl);
}

/* The first spiffe:// URI SAN of x into out (empty when none). */
static void spiffe_uri(X509 *x, char *out, size_t outlen)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i;

    out[0] = '\0';
    if (!sans) return;
    for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        const unsigned char *u;
        int len, k, ok = 1;
        if (g->type != GEN_URI) continue;
        u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (len < 9 || len >= (int)outlen || strncmp((const char *)u, "spiffe://", 9) != 0)
            continue;
        for (k = 0; k < len; k++) /* printable ASCII only: it goes into a header */
            if (u[k] <= 0x20 || u[k] >= 0x7f || u[k] == '"' || u[k] == ';' || u[k] == ',') ok = 0;
        if (!ok) continue;
        memcpy(out, u, (size_t)len);
        out[len] = '\0';
        break;
    }
    GENERAL_NAMES_free(sans);
}

/* x's subject as an RFC 2253 string (specials, controls and non-ASCII escaped). */
static char *subject_dn(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long n;

    if (!b) return NULL;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_get_mem_data(b, &data);
        if (n >= 0 && (out = malloc((size_t)n + 1))) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

char *tls_client_headers(const struct transport *t)
{
    SSL *ssl = t->sess;
    X509 *x;
    char *dn, *out = NULL, spiffe[2048], fp[65];
    unsigned char md[32];
    unsigned int mdlen = sizeof(md), i;
    size_t cap;

    if (!ssl || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) return NULL;
    x = SSL_get0_peer_certificate(ssl);
    if (!x || SSL_get_verify_result(ssl) != X509_V_OK) return strdup("X-Client-Verify: NONE\r\n");
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) return NULL;
    for (i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", md[i]);
    if (!(dn = subject_dn(x))) return NULL;
    spiffe_uri(x, spiffe, sizeof(spiffe));
    cap = 2 * strlen(dn) + 2 * strlen(spiffe) + 256;
    if ((out = malloc(cap))) {
        int n = snprintf(out, cap, "X-Client-Verify: SUCCESS\r\nX-Client-Subject: %s\r\n", dn);
        if (spiffe[0]) n += snprintf(out + n, cap - (size_t)n, "X-Client-SPIFFE: %s\r\n", spiffe);
        n += snprintf(out + n, cap - (size_t)n, "X-Forwarded-Client-Cert: Hash=%s;Subject=\"%s\"",
                      fp, dn);
        if (spiffe[0]) n += snprintf(out + n, cap - (size_t)n, ";URI=%s", spiffe);
        snprintf(out + n, cap - (size_t)n, "\r\n");
    }
    free(dn);
    return out;
}
