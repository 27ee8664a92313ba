/*
 * mirror: request copies sent to a mirror cluster, their responses read and dropped.
 *
 * Does: open a fresh non-blocking connection per mirrored request (upstream_conn_open,
 * never the pool: a mirror connection ends with its exchange), run the TLS client
 * handshake after the connect for a TLS cluster (tls_upstream_start, the same set-up and
 * session resumption as the primary's upstream connections), send the caller's head and
 * then the body bytes as they are fed - straight from the caller's buffer when the socket
 * takes them, else queued - and read the response far enough to know where it ends (head
 * parsed; Content-Length, chunked framing, or the connection's end), dropping every byte.
 * Cut a mirror whose queue would pass MIRROR_MAX_PENDING, or that outlives its total
 * timeout; count every mirror once in strait_mirror_requests_total.
 * Does not: retry, pool, follow redirects, keep the response, or report anything to the
 * primary beyond mirror_feed's -1 (which only means "stop feeding").
 * Invariants:
 *   - nothing blocks: sends and reads are non-blocking, a feed costs at most one pass of
 *     sends plus a copy of what the socket did not take;
 *   - a mirror has two owners: the caller until mirror_end/mirror_abort (released), and the
 *     exchange until it ends (ended: counted, connection closed, timer stopped, buffers
 *     freed). It is freed when both let go - at once from finish() when released, else by
 *     mirror_end/mirror_abort - so a callback never frees a mirror the caller still holds,
 *     and a callback returns at once after finish();
 *   - the write watcher runs only while something waits for writability (connect, a
 *     handshake or read that wants to write, queued bytes); the read watcher runs from the
 *     connect's completion to the end (responses may come early);
 *   - every mirror of a thread is on that thread's list until freed (mirror_close_all).
 */
#include "mirror.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "containerof.h"
#include "dbuf.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "tls_upstream.h"
#include "transport.h"
#include "upstream.h"

#define MIRROR_MAGIC 0x4d495252u /* "MIRR" */
#define READS_PER_WAKE 16        /* then the loop runs others; TLS leftovers are re-fed */

/* What the response reader waits for. */
enum { RS_HEAD, RS_LENGTH, RS_CHUNKED, RS_CLOSE };

struct mirror {
    uint32_t magic;
    struct ev_loop *loop;
    struct upstream_conn *u; /* NULL once ended */
    ev_timer timer;          /* the total timeout */
    struct dbuf out;         /* request bytes not yet sent */
    struct dbuf in;          /* response head bytes, until the head parsed */
    uint8_t connecting;      /* TCP connect under way */
    uint8_t handshaking;     /* TLS handshake under way (after the connect) */
    uint8_t released;        /* the caller is done with it (mirror_end/mirror_abort) */
    uint8_t ended;           /* the exchange is over and counted */
    uint8_t head_request;    /* a HEAD request: the response has no body */
    uint8_t rs;              /* RS_* */
    uint64_t remaining;      /* RS_LENGTH: body bytes still to come */
    struct http1_chunked chunked;
    struct mirror *prev, *next;
};

static __thread struct mirror *live_list;

static struct mirror *mirror_check(struct mirror *m)
{
    if (m->magic != MIRROR_MAGIC) abort();
    return m;
}

static void mirror_free(struct mirror *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        live_list = m->next;
    if (m->next) m->next->prev = m->prev;
    dbuf_free(&m->out);
    dbuf_free(&m->in);
    m->magic = 0;
    free(m);
}

/* The exchange is over: counts result, closes the connection; frees m when released. */
static void finish(struct mirror *m, int result, const char *why)
{
    if (m->ended) return;
    m->ended = 1;
    metrics_mirror(result);
    if (result != METRICS_MIRROR_COMPLETED) log_debug("mirror_end", "reason=\"%s\"", why);
    ev_timer_stop(m->loop, &m->timer);
    if (m->u) upstream_conn_close(m->u); /* stops its watchers */
    m->u = NULL;
    dbuf_free(&m->out);
    dbuf_free(&m->in);
    if (m->released) mirror_free(m);
}

static struct transport *tp(struct mirror *m)
{
    return &m->u->tp;
}

/* Starts or stops the write watcher to match what waits for writability. */
static void update_wio(struct mirror *m)
{
    uint8_t want = tp(m)->want;
    int need = m->connecting || (want & TRANSPORT_RECV_WANTS_WRITE) ||
               (!m->handshaking && m->out.len && !(want & TRANSPORT_SEND_WANTS_READ));

    if (need && !ev_is_active(&m->u->wio))
        ev_io_start(m->loop, &m->u->wio);
    else if (!need && ev_is_active(&m->u->wio))
        ev_io_stop(m->loop, &m->u->wio);
}

/*
 * Body bytes of the response: returns 1 when the response ended inside them, 0 when more
 * are to come, -1 on a framing error.
 */
static int body_bytes(struct mirror *m, const char *p, size_t n)
{
    ssize_t r;

    switch (m->rs) {
    case RS_LENGTH:
        if (n >= m->remaining) return 1;
        m->remaining -= n;
        return 0;
    case RS_CHUNKED:
        r = http1_chunked_feed(&m->chunked, p, n);
        return r >= 0 ? 1 : r == -2 ? 0 : -1;
    default: /* RS_CLOSE: the connection's end ends it */
        return 0;
    }
}

/* Response bytes: 1 when the response is complete, 0 for more, -1 when it is not HTTP. */
static int response_bytes(struct mirror *m, const char *p, size_t n)
{
    struct http1_response res;
    struct http1_msginfo info;
    int hl, st, rc;

    if (m->rs != RS_HEAD) return body_bytes(m, p, n);
    if (dbuf_append(&m->in, p, n) < 0) return -1;
    for (;;) {
        hl = http1_parse_response(dbuf_data(&m->in), m->in.len, &res, &st);
        if (hl == -2) return m->in.len > HTTP1_MAX_HEAD ? -1 : 0;
        if (hl < 0 || http1_response_info(&res, m->head_request, &info) < 0) return -1;
        if (res.status == 101) return 1; /* nothing we asked for: the exchange is over */
        dbuf_consume(&m->in, (size_t)hl);
        if (res.status >= 200) break;
        /* an interim response (100 Continue, 103): the final one follows */
    }
    switch (info.body) {
    case HTTP1_BODY_NONE:
        return 1;
    case HTTP1_BODY_LENGTH:
        m->rs = RS_LENGTH;
        m->remaining = info.content_length;
        break;
    case HTTP1_BODY_CHUNKED:
        m->rs = RS_CHUNKED;
        http1_chunked_init(&m->chunked);
        break;
    default:
        m->rs = RS_CLOSE;
        break;
    }
    rc = m->in.len ? body_bytes(m, dbuf_data(&m->in), m->in.len) : 0;
    dbuf_free(&m->in);
    return rc;
}

/* Reads and drops what the mirror sent. Returns 0, or -1 when m ended (maybe freed). */
static int read_some(struct mirror *m)
{
    char buf[16 * 1024];
    ssize_t n;
    int i, rc;

    for (i = 0; i < READS_PER_WAKE; i++) {
        n = transport_recv(tp(m), buf, sizeof(buf));
        if (n > 0) {
            rc = response_bytes(m, buf, (size_t)n);
            if (rc == 0) continue;
            finish(m, rc > 0 ? METRICS_MIRROR_COMPLETED : METRICS_MIRROR_FAILED, "bad response");
            return -1;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        /* the end (or a reset): complete only for a response delimited by it */
        if (m->rs == RS_CLOSE)
            finish(m, METRICS_MIRROR_COMPLETED, "");
        else
            finish(m, METRICS_MIRROR_FAILED,
                   n == 0 ? "closed before the response ended" : strerror(errno));
        return -1;
    }
    if (transport_pending(tp(m))) ev_feed_event(m->loop, &m->u->rio, EV_READ);
    return 0;
}

/* A send failed for good: an early response may still be readable, else it failed. */
static int send_failed(struct mirror *m, int err)
{
    if (read_some(m) < 0) return -1;
    finish(m, METRICS_MIRROR_FAILED, strerror(err));
    return -1;
}

/* Sends from p[0..n); returns the bytes sent (the socket took no more), or -1 when m ended. */
static ssize_t send_some(struct mirror *m, const char *p, size_t n)
{
    size_t done = 0;
    ssize_t k;

    while (done < n) {
        k = transport_send(tp(m), p + done, n - done, MSG_NOSIGNAL);
        if (k > 0) {
            done += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return send_failed(m, k < 0 ? errno : EPIPE);
    }
    return (ssize_t)done;
}

/* Sends what is queued. Returns 0, or -1 when m ended. */
static int flush(struct mirror *m)
{
    ssize_t k;

    if (m->connecting || m->handshaking || !m->out.len) return 0;
    if ((k = send_some(m, dbuf_data(&m->out), m->out.len)) < 0) return -1;
    dbuf_consume(&m->out, (size_t)k);
    if (!m->out.len) dbuf_free(&m->out); /* an idle mirror holds no block */
    return 0;
}

/* Moves the TLS handshake on. Returns 0, or -1 when m ended. */
static int handshake(struct mirror *m)
{
    char why[256];
    int rc;

    tp(m)->want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
    rc = tp(m)->ops->handshake(tp(m));
    if (rc < 0) {
        finish(m, METRICS_MIRROR_FAILED, tls_upstream_error(tp(m), why, sizeof(why)));
        return -1;
    }
    if (rc == 0) return 0;
    m->handshaking = 0;
    return flush(m);
}

/* The TCP connect completed. Returns 0, or -1 when m ended. */
static int connected(struct mirror *m)
{
    m->connecting = 0;
    ev_io_start(m->loop, &m->u->rio);
    return m->handshaking ? handshake(m) : flush(m);
}

static void mirror_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct mirror *m = mirror_check(io->data);

    (void)loop;
    (void)revents;
    if (m->handshaking) {
        if (handshake(m) < 0) return;
    } else {
        if (tp(m)->want & TRANSPORT_SEND_WANTS_READ) {
            tp(m)->want &= (uint8_t)~TRANSPORT_SEND_WANTS_READ;
            if (flush(m) < 0) return;
        }
        if (read_some(m) < 0) return;
    }
    update_wio(m);
}

static void mirror_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct mirror *m = mirror_check(io->data);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);

    (void)loop;
    (void)revents;
    if (m->connecting) {
        if (getsockopt(m->u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        if (soerr) {
            finish(m, METRICS_MIRROR_FAILED, strerror(soerr));
            return;
        }
        if (connected(m) < 0) return;
    } else if (m->handshaking) {
        if (handshake(m) < 0) return;
    } else {
        if (tp(m)->want & TRANSPORT_RECV_WANTS_WRITE) {
            tp(m)->want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
            if (read_some(m) < 0) return;
        }
        if (flush(m) < 0) return;
    }
    update_wio(m);
}

static void mirror_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct mirror *m = mirror_check(container_of(t, struct mirror, timer));

    (void)loop;
    (void)revents;
    if (m->connecting || m->handshaking)
        finish(m, METRICS_MIRROR_FAILED, m->connecting ? "connect timeout" : "TLS timeout");
    else
        finish(m, METRICS_MIRROR_CUT, "timeout");
}

struct mirror *mirror_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                            const struct tls_upstream *tls_up, uint32_t cluster, const char *head,
                            size_t head_len, double timeout)
{
    uint64_t tag = tls_upstream_tag(tls_up, cluster);
    struct upstream_conn *u = NULL;
    struct mirror *m = NULL;
    int in_progress = 0;

    if (head_len > MIRROR_MAX_PENDING) goto fail;
    if (!(u = upstream_conn_open(loop, sa, salen, &in_progress))) goto fail;
    if (tag) {
        if (tls_upstream_start(tls_up, cluster, &u->tp, sa, salen) < 0) goto fail;
        u->tag = tag; /* never pooled, but the transport says what it is */
    }
    if (!(m = calloc(1, sizeof(*m)))) goto fail;
    m->magic = MIRROR_MAGIC;
    m->loop = loop;
    m->u = u;
    if (dbuf_append(&m->out, head, head_len) < 0) goto fail;
    m->head_request = head_len >= 5 && memcmp(head, "HEAD ", 5) == 0;
    m->connecting = (uint8_t)in_progress;
    m->handshaking = tag != 0;
    upstream_conn_attach(u, mirror_read_cb, mirror_write_cb, m);
    m->next = live_list;
    if (live_list) live_list->prev = m;
    live_list = m;
    ev_timer_init(&m->timer, mirror_timer_cb, timeout > 0 ? timeout : MIRROR_DEFAULT_TIMEOUT, 0.);
    ev_timer_start(loop, &m->timer);
    /* ended already (a send failed at once): the caller still gets m, to end it */
    if (!in_progress && connected(m) < 0) return m;
    update_wio(m);
    return m;

fail:
    if (m) {
        dbuf_free(&m->out);
        free(m);
    }
    if (u) upstream_conn_close(u);
    metrics_mirror(METRICS_MIRROR_FAILED);
    log_debug("mirror_end", "reason=\"cannot start: %s\"", strerror(errno));
    return NULL;
}

int mirror_feed(struct mirror *m, const char *data, size_t n)
{
    ssize_t k = 0;

    mirror_check(m);
    if (m->released) abort(); /* fed after mirror_end/mirror_abort */
    if (m->ended) return -1;
    if (!n) return 0;
    if (!m->connecting && !m->handshaking && !m->out.len) {
        /* nothing queued: straight from the caller's buffer, no copy */
        if ((k = send_some(m, data, n)) < 0) return -1;
        if ((size_t)k == n) {
            update_wio(m);
            return 0;
        }
    }
    if (m->out.len + (n - (size_t)k) > MIRROR_MAX_PENDING) {
        finish(m, METRICS_MIRROR_CUT, "mirror cannot keep up");
        return -1;
    }
    if (dbuf_append(&m->out, data + k, n - (size_t)k) < 0) {
        finish(m, METRICS_MIRROR_CUT, "out of memory");
        return -1;
    }
    update_wio(m);
    return 0;
}

void mirror_end(struct mirror *m)
{
    mirror_check(m);
    if (m->released) abort();
    m->released = 1;
    if (m->ended) mirror_free(m);
}

void mirror_abort(struct mirror *m)
{
    mirror_check(m);
    if (m->released) abort();
    m->released = 1;
    if (m->ended)
        mirror_free(m);
    else
        finish(m, METRICS_MIRROR_CUT, "primary request gave up"); /* frees m */
}

void mirror_close_all(struct ev_loop *loop)
{
    struct mirror *m, *next;

    for (m = live_list; m; m = next) {
        next = m->next;
        if (m->loop == loop) finish(m, METRICS_MIRROR_CUT, "worker stopping");
    }
}

unsigned mirror_live(struct ev_loop *loop)
{
    struct mirror *m;
    unsigned n = 0;

    for (m = live_list; m; m = m->next)
        if (m->loop == loop) n++;
    return n;
}
