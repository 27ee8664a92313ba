/*
 * conn: the client connection state machine of a worker, and the upstream leg of each
 * request.
 *
 * Does: read and parse a request head (http1.c), route it with the worker's current
 * snapshot (taking a reference held until the request ends), take an idle upstream
 * connection to the chosen endpoint from the worker's pool (upstream.c) or open a fresh
 * one, forward a rewritten head (origin-form target, Host from the absolute-form authority
 * when there is one, hop-by-hop headers dropped, X-Forwarded-For/-Proto/-Host and Via
 * added; persistent for HTTP/1.1, "Connection: close" for 1.0) and stream the request body
 * (Content-Length or chunked, verbatim); then parse the response head, rewrite its
 * hop-by-hop headers and Connection for the client, add Date if missing, and stream the
 * response body (Content-Length, chunked verbatim, or until upstream close - then the client
 * connection closes after it, no chunked re-encoding). A cleanly finished exchange parks
 * the upstream connection in the pool; a reused one that dies before the first response
 * byte is retried once on a fresh connection when the request is idempotent and only its
 * head was sent. An Upgrade request is forwarded with Upgrade + "Connection: upgrade"; a
 * 101 answer turns the connection into a byte tunnel (CS_TUNNEL) until either side closes.
 * Timeouts (worker_config): whole request head, keep-alive idle, upstream connect,
 * response head, and no progress during a body or tunnel. Answers 400/404/405/408/414/431/
 * 501/502/503/504/505 itself with a short text/plain body, Date and Connection.
 * Does not: TLS, HTTP/2, transform bodies, or retry a request whose body was sent.
 * Invariants:
 *   - one request at a time per client connection: the next request is not parsed before
 *     the current response is complete (bytes already read stay buffered, so pipelining is
 *     safe and in order);
 *   - back-pressure: a side is read only while the buffer it feeds holds < CONN_BUF_HIGH
 *     bytes, so memory per connection stays bounded whatever the body sizes;
 *   - watchers are recomputed from state by conn_update() at the end of every event;
 *   - an upstream connection goes back to the pool only at a message boundary on both
 *     sides (request fully sent, response framed and complete, no extra bytes, no close
 *     asked); an upgraded or until-close connection never does;
 *   - closing from a callback only marks the conn dead and moves it to the worker's dead
 *     list; it is freed by conn_reap() before the loop blocks again.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "http1.h"
#include "log.h"
#include "httpmsg.h"
#include "metrics.h"
#include "netaddr.h"
#include "router.h"
#include "upstream.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define CONN_MAGIC 0x434f4e4eu /* "CONN" */
#define CONN_BUF_HIGH (64 * 1024)
#define CONN_READ_CHUNK (16 * 1024)

struct dbuf {
    char *p;
    size_t off, len, cap; /* data is p[off .. off+len) */
};

enum conn_state {
    CS_HEAD,  /* waiting for / parsing a request head */
    CS_PROXY, /* a request is being proxied */
    CS_TUNNEL /* after a 101: raw bytes both ways until either side closes */
};

struct conn {
    uint32_t magic;
    struct worker *w;
    struct conn *prev, *next;
    int fd;
    ev_io rio, wio;
    ev_timer timer; /* idle / header timeout, only in CS_HEAD */
    char peer[INET6_ADDRSTRLEN];
    struct dbuf cin, cout;
    enum conn_state state;
    int dead;
    int c_eof;             /* client closed its side */
    int close_after_flush; /* no more requests: close once cout is written */
    int head_timer;        /* header timer armed for the partial head in cin */

    /* current request */
    struct snapshot *snap;
    int keep_alive; /* client connection persists after this response */
    int is_head;
    int client_minor;
    enum http1_body_kind req_body;
    uint64_t req_remaining;
    struct http1_chunked req_chunk;
    int req_done;
    int upgrade;    /* request asked for a protocol upgrade (Connection: upgrade + Upgrade) */
    int idempotent; /* RFC 9110 9.2.2: may be retried automatically */
    char route_src[128];
    int logged;                 /* counted in metrics (and the access log) already */
    double req_start;           /* ev_time() when the request head was parsed */
    double req_wall;            /* wall clock at the same moment, for the access log */
    uint64_t out_total;         /* bytes sent to the client over the connection */
    uint64_t out_mark;          /* out_total + cout.len when the request started */
    struct conn_reqlog *reqlog; /* only with --access-log: what a log line needs */

    /* upstream leg of the current request */
    int ufd;
    ev_io urio, uwio;
    ev_timer utimer;
    int u_connecting, u_eof, u_write_failed;
    struct sockaddr_storage uaddr; /* endpoint of the current request (the pool key) */
    socklen_t uaddrlen;
    int u_keep;      /* upstream head asked for a persistent connection */
    int u_reused;    /* ufd came from the idle pool */
    int u_got_bytes; /* any response byte arrived on ufd */
    int replay_ok;   /* replay holds all that was sent: a failed reuse may be retried */
    struct dbuf replay;
    struct dbuf uin, uout;
    int resp_started; /* final response head sent to the client */
    int resp_status;
    enum http1_body_kind resp_body;
    uint64_t resp_remaining;
    struct http1_chunked resp_chunk;
    int resp_done;
    int resp_close; /* upstream will not keep the connection (Connection: close, 1.0) */
};

/* ---- buffers ---- */

static int dbuf_reserve(struct dbuf *b, size_t n)
{
    char *np;
    size_t want;

    if (b->cap - b->off - b->len >= n) return 0;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
        if (b->cap - b->len >= n) return 0;
    }
    want = b->cap ? b->cap : 4096;
    while (want - b->len < n)
        want *= 2;
    np = realloc(b->p, want);
    if (!np) return -1;
    b->p = np;
    b->cap = want;
    return 0;
}

static int dbuf_append(struct dbuf *b, const void *d, size_t n)
{
    if (dbuf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->off + b->len, d, n);
    b->len += n;
    return 0;
}

static int dbuf_str(struct dbuf *b, const char *s)
{
    return dbuf_append(b, s, strlen(s));
}

static int dbuf_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dbuf_printf(struct dbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || dbuf_reserve(b, (size_t)n + 1) < 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->off + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

static char *dbuf_data(struct dbuf *b)
{
    return b->p + b->off;
}

static void dbuf_consume(struct dbuf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0) b->off = 0;
}

static void dbuf_free(struct dbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- lifecycle ---- */

static struct conn *conn_check(struct conn *c)
{
    if (c->magic != CONN_MAGIC) abort();
    return c;
}

static void io_want(struct ev_loop *loop, ev_io *io, int want)
{
    if (want && !ev_is_active(io))
        ev_io_start(loop, io);
    else if (!want && ev_is_active(io))
        ev_io_stop(loop, io);
}

static void upstream_release(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;

    if (c->ufd >= 0) {
        ev_io_stop(loop, &c->urio);
        ev_io_stop(loop, &c->uwio);
        close(c->ufd);
        c->ufd = -1;
    }
    ev_timer_stop(loop, &c->utimer);
    c->uin.len = c->uin.off = 0;
    c->uout.len = c->uout.off = 0;
    c->replay.len = c->replay.off = 0;
    c->replay_ok = 0;
}

/* Access-log facts copied from the request head (it lives in cin, which moves on). */
struct conn_reqlog {
    char method[16], target[ACCESSLOG_MAX_FIELD], host[256], upstream[64];
};

/* Request start: remember when, and with --access-log what, for request_log(). */
static void request_begin(struct conn *c, const struct http1_request *req)
{
    c->logged = 0;
    c->req_start = ev_time();
    c->out_mark = c->out_total + c->cout.len;
    if (!accesslog_enabled()) return;
    if (!c->reqlog && !(c->reqlog = malloc(sizeof(*c->reqlog)))) return;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c->req_wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    snprintf(c->reqlog->method, sizeof(c->reqlog->method), "%.*s", req ? (int)req->method_len : 0,
             req ? req->method : "");
    snprintf(c->reqlog->target, sizeof(c->reqlog->target), "%.*s", req ? (int)req->target_len : 0,
             req ? req->target : "");
    c->reqlog->host[0] = c->reqlog->upstream[0] = '\0';
}

/*
 * The current request is answered with status: counts it once in the metrics (by route,
 * status class and duration) and writes its access log line.
 */
static void request_log(struct conn *c, int status)
{
    double dur;

    if (c->logged) return;
    c->logged = 1;
    dur = c->req_start ? ev_time() - c->req_start : 0;
    metrics_request_done(c->route_src, status, dur);
    if (c->reqlog && accesslog_enabled()) {
        struct accesslog_entry e = {
            .time = c->req_wall,
            .client = c->peer,
            .method = c->reqlog->method[0] ? c->reqlog->method : NULL,
            .target = c->reqlog->method[0] ? c->reqlog->target : NULL,
            .host = c->reqlog->host[0] ? c->reqlog->host : NULL,
            .http_minor = c->client_minor,
            .status = status,
            .bytes_sent = c->out_total + c->cout.len - c->out_mark,
            .duration = dur,
            .upstream = c->reqlog->upstream[0] ? c->reqlog->upstream : NULL,
            .route = c->route_src[0] ? c->route_src : NULL,
        };
        accesslog_write(&e);
    }
}

/* Ends the current request: upstream closed, snapshot reference dropped. */
static void request_release(struct conn *c)
{
    upstream_release(c);
    snapshot_unref(c->snap);
    c->snap = NULL;
}

static void conn_close(struct conn *c)
{
    struct worker *w = c->w;

    if (c->dead) return;
    c->dead = 1;
    if (c->resp_started) request_log(c, c->resp_status); /* cut short: log what was sent */
    request_release(c);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    /* move from the live list to the dead list */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = NULL;
    c->next = w->dead;
    w->dead = c;
    w->n_conns--;
    metrics_conn_closed();
    worker_conn_gone(w);
}

void conn_reap(struct worker *w)
{
    while (w->dead) {
        struct conn *c = w->dead;
        w->dead = c->next;
        dbuf_free(&c->cin);
        dbuf_free(&c->cout);
        dbuf_free(&c->uin);
        dbuf_free(&c->uout);
        dbuf_free(&c->replay);
        free(c->reqlog);
        c->magic = 0;
        free(c);
    }
}

static void arm_timer(struct conn *c, double after)
{
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_set(&c->timer, after, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

static void arm_utimer(struct conn *c, double after)
{
    ev_timer_stop(c->w->loop, &c->utimer);
    ev_timer_set(&c->utimer, after, 0.);
    ev_timer_start(c->w->loop, &c->utimer);
}

/* Recomputes which watchers should be active from the connection's state. */
static void conn_update(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int rd;

    if (c->dead) return;
    if (c->close_after_flush && c->cout.len == 0) {
        conn_close(c);
        return;
    }
    rd = !c->c_eof && !c->close_after_flush &&
         ((c->state == CS_HEAD && c->cin.len <= HTTP1_MAX_HEAD) ||
          (c->state == CS_PROXY && !c->req_done && !c->u_write_failed &&
           c->uout.len < CONN_BUF_HIGH) ||
          (c->state == CS_TUNNEL && c->uout.len < CONN_BUF_HIGH));
    io_want(loop, &c->rio, rd);
    io_want(loop, &c->wio, c->cout.len > 0);
    if (c->ufd >= 0) {
        io_want(loop, &c->urio,
                !c->u_connecting && !c->u_eof && (!c->resp_done || c->state == CS_TUNNEL) &&
                    c->cout.len < CONN_BUF_HIGH);
        io_want(loop, &c->uwio, c->u_connecting || (c->uout.len > 0 && !c->u_write_failed));
    }
}

/* ---- responses generated here ---- */

static const char *status_body(int status)
{
    switch (status) {
    case 400:
        return "bad request\n";
    case 404:
        return "no route\n";
    case 405:
        return "method not allowed\n";
    case 413:
        return "content too large\n";
    case 414:
        return "uri too long\n";
    case 431:
        return "headers too large\n";
    case 501:
        return "not implemented\n";
    case 502:
        return "bad gateway\n";
    case 504:
        return "gateway timeout\n";
    case 505:
        return "http version not supported\n";
    default:
        return "error\n";
    }
}

/*
 * The current time as an IMF-fixdate (RFC 9110 5.6.7) for Date headers, formatted at most
 * once per second per worker thread (the cache is thread-local; ev_now is the loop's time).
 */
static const char *http_date(struct conn *c)
{
    static __thread time_t cached_sec = -1;
    static __thread char cached[HTTPMSG_DATE_LEN];
    time_t now = (time_t)ev_now(c->w->loop);

    if (now != cached_sec) {
        httpmsg_date(now, cached);
        cached_sec = now;
    }
    return cached;
}

/*
 * Answers the current request with status and body (NULL: the default for status), ends
 * the request, and closes after the response when close_conn or the request body was not
 * fully read.
 */
static void local_response(struct conn *c, int status, const char *body, int close_conn)
{
    if (!body) body = status_body(status);
    if (!c->req_done || c->c_eof) close_conn = 1;
    if (!c->keep_alive || c->w->stopping) close_conn = 1;
    request_release(c);
    if (dbuf_printf(&c->cout,
                    "HTTP/1.1 %d %s\r\nDate: %s\r\n%sContent-Type: text/plain\r\n"
                    "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                    status, httpmsg_reason(status), http_date(c),
                    /* RFC 9110 15.5.6: a 405 lists what is allowed; only CONNECT is not */
                    status == 405 ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" : "",
                    strlen(body), close_conn ? "close" : "keep-alive",
                    c->is_head ? "" : body) < 0) {
        conn_close(c);
        return;
    }
    request_log(c, status);
    log_debug("request", "peer=%s status=%d local=1", c->peer, status);
    c->state = CS_HEAD;
    c->head_timer = 0;
    if (close_conn) c->close_after_flush = 1;
    arm_timer(c, c->w->cfg.client_idle_timeout); /* also bounds the flush of a closing connection */
}

static int upstream_retry(struct conn *c, const char *why);

/*
 * Upstream failed: a reused connection that died before answering is retried once on a
 * fresh one when that is safe; otherwise 502/504 if the client has not seen a response
 * head yet, else abort.
 */
static void upstream_failed(struct conn *c, int status, const char *why)
{
    if (!c->resp_started && status == 502 && upstream_retry(c, why) == 0) return;
    log_warn("upstream_error", "peer=%s route=%s reason=\"%s\"", c->peer, c->route_src, why);
    if (c->resp_started) {
        request_log(c, c->resp_status);
        request_release(c);
        c->close_after_flush = 1; /* truncated response: closing is the only signal */
        c->state = CS_HEAD;
        arm_timer(c, c->w->cfg.client_idle_timeout);
        return;
    }
    local_response(c, status, NULL, 0);
}

/* ---- request side ---- */

static int is_xf_header(const struct http1_header *h)
{
    return http1_name_is(h, "x-forwarded-for") || http1_name_is(h, "x-forwarded-proto") ||
           http1_name_is(h, "x-forwarded-host");
}

/*
 * Appends "Name: v1, v2, ..., extra\r\n" to b: the values of every header called name in
 * req (empty ones skipped), then extra. Returns 0 or -1 (out of memory).
 */
static int append_joined(struct dbuf *b, const struct http1_request *req, const char *name,
                         const char *extra)
{
    size_t i;

    if (dbuf_str(b, name) < 0 || dbuf_str(b, ": ") < 0) return -1;
    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];
        if (!http1_name_is(h, name) || h->value_len == 0) continue;
        if (dbuf_append(b, h->value, h->value_len) < 0 || dbuf_str(b, ", ") < 0) return -1;
    }
    return dbuf_str(b, extra) < 0 || dbuf_str(b, "\r\n") < 0 ? -1 : 0;
}

/* True when a header called name in hdrs[0..n) lists token (comma-separated, any case). */
static int header_has_token(const struct http1_header *hdrs, size_t n, const char *name,
                            const char *token)
{
    size_t i, p, tl = strlen(token);

    for (i = 0; i < n; i++) {
        const struct http1_header *h = &hdrs[i];
        if (!http1_name_is(h, name)) continue;
        for (p = 0; p < h->value_len;) {
            size_t b, e;
            while (p < h->value_len &&
                   (h->value[p] == ' ' || h->value[p] == '\t' || h->value[p] == ','))
                p++;
            b = p;
            while (p < h->value_len && h->value[p] != ',')
                p++;
            e = p;
            while (e > b && (h->value[e - 1] == ' ' || h->value[e - 1] == '\t'))
                e--;
            if (e - b == tl && strncasecmp(h->value + b, token, tl) == 0) return 1;
        }
    }
    return 0;
}

/* The value of the first header called name in hdrs[0..n), or NULL. */
static const struct http1_header *header_find(const struct http1_header *hdrs, size_t n,
                                              const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (http1_name_is(&hdrs[i], name)) return &hdrs[i];
    return NULL;
}

/*
 * Writes the upstream request head into uout: the request line in origin-form with the
 * client's HTTP/1.x version (a 1.0 client must not get a chunked answer relayed), Host
 * first and from info->host (the target's authority for absolute-form, RFC 9112 3.2.2),
 * end-to-end headers, then our own: X-Forwarded-*, Via (RFC 9110 7.6.3: a gateway MUST
 * add it to requests it forwards) and the connection options: none for HTTP/1.1 (persistent
 * by default, so the connection can be pooled), "Connection: close" for 1.0, and for an
 * upgrade request the client's Upgrade with "Connection: upgrade" (RFC 9110 7.8: Upgrade is
 * hop-by-hop, so the proxy re-sends it deliberately). Returns 0 or -1 (out of memory).
 */
static int build_upstream_head(struct conn *c, const struct http1_request *req,
                               const struct http1_msginfo *info)
{
    struct dbuf *b = &c->uout;
    size_t i;
    int slash =
        info->target_form == HTTP1_TARGET_ABSOLUTE && (info->path_len == 0 || info->path[0] == '?');

    if (dbuf_append(b, req->method, req->method_len) < 0 || dbuf_str(b, slash ? " /" : " ") < 0 ||
        dbuf_append(b, info->path, info->path_len) < 0 ||
        dbuf_str(b, req->minor_version ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n") < 0)
        return -1;
    if (info->host && (dbuf_str(b, "Host: ") < 0 ||
                       dbuf_append(b, info->host, info->host_len) < 0 || dbuf_str(b, "\r\n") < 0))
        return -1;
    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];
        if (http1_is_hop_header(req->headers, req->num_headers, h) || is_xf_header(h) ||
            http1_name_is(h, "host") || http1_name_is(h, "via"))
            continue;
        if (dbuf_append(b, h->name, h->name_len) < 0 || dbuf_str(b, ": ") < 0 ||
            dbuf_append(b, h->value, h->value_len) < 0 || dbuf_str(b, "\r\n") < 0)
            return -1;
    }
    if (append_joined(b, req, "X-Forwarded-For", c->peer) < 0 ||
        dbuf_str(b, "X-Forwarded-Proto: http\r\n") < 0)
        return -1;
    if (info->host && (dbuf_str(b, "X-Forwarded-Host: ") < 0 ||
                       dbuf_append(b, info->host, info->host_len) < 0 || dbuf_str(b, "\r\n") < 0))
        return -1;
    if (append_joined(b, req, "Via", req->minor_version ? "1.1 strait" : "1.0 strait") < 0)
        return -1;
    if (c->upgrade) {
        const struct http1_header *up = header_find(req->headers, req->num_headers, "upgrade");
        c->u_keep = 0;
        return dbuf_str(b, "Upgrade: ") < 0 || dbuf_append(b, up->value, up->value_len) < 0 ||
                       dbuf_str(b, "\r\nConnection: upgrade\r\n\r\n") < 0
                   ? -1
                   : 0;
    }
    c->u_keep = req->minor_version >= 1;
    return dbuf_str(b, c->u_keep ? "\r\n" : "Connection: close\r\n\r\n");
}

/*
 * (Re)arms the upstream timer after progress, for the phase the request is in: a body
 * moving either way (or a tunnel) gets idle_body_timeout, waiting for the response head
 * upstream_response_timeout. A running connect keeps its own timer.
 */
static void arm_progress(struct conn *c)
{
    const struct worker_config *cfg = &c->w->cfg;

    if (c->ufd < 0 || c->u_connecting || c->state == CS_HEAD) return;
    arm_utimer(c, c->resp_started || c->state == CS_TUNNEL || !c->req_done
                      ? cfg->idle_body_timeout
                      : cfg->upstream_response_timeout);
}

/*
 * Gives the request an upstream connection to c->uaddr: an idle one from the worker's pool
 * when allow_pool, else a fresh connect. Returns 0, or -1 with errno (connect failed).
 */
static int upstream_open(struct conn *c, int allow_pool)
{
    const struct sockaddr *sa = (const struct sockaddr *)&c->uaddr;
    int in_progress = 0, fd = -1;

    if (allow_pool) fd = upstream_pool_take(c->w->pool, sa, c->uaddrlen);
    c->u_reused = fd >= 0;
    if (fd >= 0) {
        metrics_pool_reused();
    } else {
        fd = upstream_connect(sa, c->uaddrlen, &in_progress);
        if (fd < 0) return -1;
        if (!in_progress) metrics_upstream_connected();
    }
    c->ufd = fd;
    c->u_connecting = in_progress;
    c->u_got_bytes = 0;
    ev_io_set(&c->urio, fd, EV_READ);
    ev_io_set(&c->uwio, fd, EV_WRITE);
    if (in_progress)
        arm_utimer(c, c->w->cfg.upstream_connect_timeout);
    else
        arm_progress(c);
    return 0;
}

/*
 * After a reused connection failed before any response byte (the server closed it while
 * it idled in the pool - a race no client can avoid): if the request is idempotent and
 * nothing but its head was sent, sends the head again on a fresh connection. Returns 0
 * when the retry is under way, -1 when the failure stands.
 */
static int upstream_retry(struct conn *c, const char *why)
{
    struct ev_loop *loop = c->w->loop;

    if (!c->u_reused || c->u_got_bytes || !c->replay_ok || c->ufd < 0) return -1;
    log_debug("upstream_retry", "peer=%s route=%s reason=\"%s\"", c->peer, c->route_src, why);
    ev_io_stop(loop, &c->urio);
    ev_io_stop(loop, &c->uwio);
    close(c->ufd);
    c->ufd = -1;
    c->u_eof = c->u_write_failed = 0;
    c->uin.len = c->uin.off = 0;
    c->uout.len = c->uout.off = 0;
    if (dbuf_append(&c->uout, dbuf_data(&c->replay), c->replay.len) < 0) return -1;
    c->replay_ok = 0; /* once only */
    if (upstream_open(c, 0) < 0) {
        metrics_upstream_connect_error();
        return -1;
    }
    return 0;
}

static void reset_request(struct conn *c)
{
    c->snap = NULL;
    c->is_head = 0;
    c->req_body = HTTP1_BODY_NONE;
    c->req_remaining = 0;
    http1_chunked_init(&c->req_chunk);
    c->req_done = 1;
    c->route_src[0] = '\0';
    c->upgrade = c->idempotent = 0;
    c->u_connecting = c->u_eof = c->u_write_failed = 0;
    c->u_keep = c->u_reused = c->u_got_bytes = c->replay_ok = 0;
    c->resp_close = 0;
    c->resp_started = 0;
    c->resp_status = 0;
    c->resp_body = HTTP1_BODY_NONE;
    c->resp_remaining = 0;
    http1_chunked_init(&c->resp_chunk);
    c->resp_done = 0;
}

static int method_idempotent(const struct http1_request *req)
{
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    size_t i;

    for (i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (req->method_len == strlen(safe[i]) &&
            memcmp(req->method, safe[i], req->method_len) == 0)
            return 1;
    return 0;
}

/*
 * Tries to start the next request from cin. Returns 1 if a request was started or answered
 * locally, 0 if more bytes are needed.
 */
static int start_request(struct conn *c)
{
    struct http1_request req;
    struct http1_msginfo info;
    struct snapshot *snap;
    const struct snapwire_route *rt;
    const struct snapshot_endpoint *ep;
    char host[ROUTER_MAX_HOST];
    int r, status, hl = 0;
    uint32_t cluster;

    reset_request(c);
    c->keep_alive = 0;
    if (c->cin.len == 0) return 0;
    r = http1_parse_request(dbuf_data(&c->cin), c->cin.len, &req, &status);
    if (r == -2) {
        if (!c->head_timer) {
            c->head_timer = 1;
            arm_timer(c, c->w->cfg.client_header_timeout);
        }
        return 0;
    }
    if (r == -1) {
        request_begin(c, NULL);
        local_response(c, status, NULL, 1);
        return 1;
    }
    request_begin(c, &req);
    ev_timer_stop(c->w->loop, &c->timer);
    c->head_timer = 0;
    c->client_minor = req.minor_version;
    c->is_head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    if (http1_request_info(&req, &info, &status) < 0) {
        dbuf_consume(&c->cin, (size_t)r);
        local_response(c, status, NULL, 1);
        return 1;
    }
    c->keep_alive =
        !info.conn_close && (req.minor_version >= 1 || info.conn_keep_alive) && !c->w->stopping;
    c->req_body = info.body;
    c->req_remaining = info.content_length;
    c->req_done = info.body == HTTP1_BODY_NONE;
    /* RFC 9110 7.8: a 1.0 client cannot be switched; Upgrade without the option is ignored */
    c->upgrade = req.minor_version >= 1 &&
                 header_find(req.headers, req.num_headers, "upgrade") != NULL &&
                 header_has_token(req.headers, req.num_headers, "connection", "upgrade");
    c->idempotent = method_idempotent(&req);
    if (c->reqlog && info.host)
        snprintf(c->reqlog->host, sizeof(c->reqlog->host), "%.*s", (int)info.host_len, info.host);
    if (info.host &&
        (hl = router_normalize_host(info.host, info.host_len, host, sizeof(host))) < 0) {
        dbuf_consume(&c->cin, (size_t)r);
        local_response(c, 400, NULL, 1);
        return 1;
    }
    snap = c->w->current;
    if (!snap) {
        dbuf_consume(&c->cin, (size_t)r);
        local_response(c, 503, "no snapshot\n", 0);
        return 1;
    }
    rt = router_match(snap->router, host, (size_t)hl, req.target, req.target_len);
    cluster = rt ? rt->cluster : snap->sw.meta.default_cluster;
    if (cluster == SNAPWIRE_NONE) {
        dbuf_consume(&c->cin, (size_t)r);
        local_response(c, 404, "no route\n", 0);
        return 1;
    }
    snprintf(c->route_src, sizeof(c->route_src), "%s", rt ? rt->source : "default");
    ep = snapshot_pick(snap, cluster);
    if (!ep) {
        dbuf_consume(&c->cin, (size_t)r);
        local_response(c, 503, "no healthy endpoint\n", 0);
        return 1;
    }
    c->snap = snapshot_ref(snap);
    if (build_upstream_head(c, &req, &info) < 0) {
        conn_close(c);
        return 1;
    }
    dbuf_consume(&c->cin, (size_t)r); /* req points into cin: consume only now */
    c->state = CS_PROXY;
    memcpy(&c->uaddr, &ep->addr, ep->addrlen);
    c->uaddrlen = ep->addrlen;
    if (c->reqlog)
        netaddr_format((const struct sockaddr *)&ep->addr, c->reqlog->upstream,
                       sizeof(c->reqlog->upstream));
    if (upstream_open(c, 1) < 0) {
        metrics_upstream_connect_error();
        upstream_failed(c, 502, strerror(errno));
        return 1;
    }
    if (c->u_reused && c->idempotent) {
        /* keep the head until the first body or response byte, to retry a stale reuse */
        if (dbuf_append(&c->replay, dbuf_data(&c->uout), c->uout.len) < 0) {
            conn_close(c);
            return 1;
        }
        c->replay_ok = 1;
    }
    return 1;
}

/* Moves request body bytes from cin to uout. Returns 0, or -1 if the conn was closed. */
static int pump_request_body(struct conn *c)
{
    size_t take;
    ssize_t r;

    while (!c->req_done && c->cin.len > 0 && c->uout.len < CONN_BUF_HIGH) {
        if (c->u_write_failed) {
            /* upstream stopped listening: swallow; the connection closes after the answer */
            dbuf_consume(&c->cin, c->cin.len);
            break;
        }
        if (c->req_body == HTTP1_BODY_LENGTH) {
            take = c->cin.len;
            if (take > c->req_remaining) take = (size_t)c->req_remaining;
            c->req_remaining -= take;
            if (c->req_remaining == 0) c->req_done = 1;
        } else {
            r = http1_chunked_feed(&c->req_chunk, dbuf_data(&c->cin), c->cin.len);
            if (r == -1) {
                log_info("bad_request_body", "peer=%s", c->peer);
                if (c->resp_started) {
                    conn_close(c);
                    return -1;
                }
                local_response(c, 400, NULL, 1);
                return 0;
            }
            take = r == -2 ? c->cin.len : (size_t)r;
            if (r >= 0) c->req_done = 1;
        }
        if (take > 0) c->replay_ok = 0; /* body bytes are not kept for a replay */
        if (dbuf_append(&c->uout, dbuf_data(&c->cin), take) < 0) {
            conn_close(c);
            return -1;
        }
        dbuf_consume(&c->cin, take);
    }
    if (!c->req_done && c->c_eof && c->cin.len == 0) {
        /* client went away mid-body: nothing sensible left to do */
        conn_close(c);
        return -1;
    }
    return 0;
}

/* ---- response side ---- */

static int write_client_head(struct conn *c, const struct http1_response *res)
{
    struct dbuf *b = &c->cout;
    size_t i;
    int have_date = 0;

    /* the parser guarantees a three-digit status; no printf on the hot path */
    char status[14] = "HTTP/1.1 000 ";
    status[9] = (char)('0' + res->status / 100 % 10);
    status[10] = (char)('0' + res->status / 10 % 10);
    status[11] = (char)('0' + res->status % 10);
    if (dbuf_append(b, status, 13) < 0 || dbuf_append(b, res->reason, res->reason_len) < 0 ||
        dbuf_str(b, "\r\n") < 0)
        return -1;
    for (i = 0; i < res->num_headers; i++) {
        const struct http1_header *h = &res->headers[i];
        if (http1_is_hop_header(res->headers, res->num_headers, h)) continue;
        have_date |= http1_name_is(h, "date");
        if (dbuf_append(b, h->name, h->name_len) < 0 || dbuf_str(b, ": ") < 0 ||
            dbuf_append(b, h->value, h->value_len) < 0 || dbuf_str(b, "\r\n") < 0)
            return -1;
    }
    /* RFC 9110 6.6.1: a recipient with a clock MUST add Date to a response it forwards */
    if (res->status >= 200 && !have_date &&
        (dbuf_str(b, "Date: ") < 0 || dbuf_str(b, http_date(c)) < 0 || dbuf_str(b, "\r\n") < 0))
        return -1;
    if (res->status == 101) {
        /* the switch the client asked for: Upgrade and the option travel hop by hop */
        const struct http1_header *up = header_find(res->headers, res->num_headers, "upgrade");
        if (up && (dbuf_str(b, "Upgrade: ") < 0 || dbuf_append(b, up->value, up->value_len) < 0 ||
                   dbuf_str(b, "\r\n") < 0))
            return -1;
        if (dbuf_str(b, "Connection: upgrade\r\n") < 0) return -1;
    } else if (res->status >= 200 && dbuf_str(b, c->keep_alive ? "Connection: keep-alive\r\n"
                                                               : "Connection: close\r\n") < 0)
        return -1;
    return dbuf_str(b, "\r\n");
}

/* Parses response heads from uin. Returns 1 when the final head is done, 0 for more, -1 if
 * the request was ended (error answered or conn closed). */
static int parse_response_head(struct conn *c)
{
    struct http1_response res;
    struct http1_msginfo info;
    int r, status;

    for (;;) {
        if (c->uin.len == 0 && !c->u_eof) return 0;
        r = http1_parse_response(dbuf_data(&c->uin), c->uin.len, &res, &status);
        if (r == -2 && !c->u_eof) return 0;
        if (r < 0) {
            upstream_failed(c, 502, c->uin.len ? "bad response head" : "closed before response");
            return -1;
        }
        if (http1_response_info(&res, c->is_head, &info) < 0 ||
            (res.status == 101 && !c->upgrade)) {
            upstream_failed(c, 502, "ambiguous response framing");
            return -1;
        }
        if (res.status == 101) {
            /* switched: from here on both sides are raw bytes (RFC 9110 15.2.2) */
            if (write_client_head(c, &res) < 0) goto oom;
            dbuf_consume(&c->uin, (size_t)r);
            c->resp_started = c->resp_done = 1;
            c->resp_status = 101;
            c->keep_alive = 0;
            c->state = CS_TUNNEL;
            request_log(c, 101);
            log_debug("request", "peer=%s status=101 route=%s", c->peer, c->route_src);
            arm_progress(c);
            return 1;
        }
        if (res.status < 200) {
            /* interim (100 Continue, 103): pass on to HTTP/1.1 clients, keep waiting */
            if (c->client_minor >= 1 && write_client_head(c, &res) < 0) goto oom;
            dbuf_consume(&c->uin, (size_t)r);
            continue;
        }
        if (info.body == HTTP1_BODY_CHUNKED && c->uin.len > (size_t)r) {
            /*
             * Check the chunk lines that came with the head before committing the head, so
             * a malformed body start is still a 502; later errors can only abort.
             */
            struct http1_chunked probe;
            http1_chunked_init(&probe);
            if (http1_chunked_feed(&probe, dbuf_data(&c->uin) + r, c->uin.len - (size_t)r) == -1) {
                upstream_failed(c, 502, "bad chunked response body");
                return -1;
            }
        }
        c->resp_body = info.body;
        c->resp_remaining = info.content_length;
        c->resp_status = res.status;
        c->resp_close = info.conn_close || (res.minor_version == 0 && !info.conn_keep_alive);
        if (info.body == HTTP1_BODY_UNTIL_CLOSE || c->w->stopping) c->keep_alive = 0;
        if (write_client_head(c, &res) < 0) goto oom;
        dbuf_consume(&c->uin, (size_t)r);
        c->resp_started = 1;
        c->resp_done = info.body == HTTP1_BODY_NONE;
        log_debug("request", "peer=%s status=%d route=%s", c->peer, res.status, c->route_src);
        return 1;
    }
oom:
    conn_close(c);
    return -1;
}

/* Moves response body bytes from uin to cout. Returns 0, or -1 if the request ended. */
static int pump_response_body(struct conn *c)
{
    size_t take = c->uin.len;
    ssize_t r;

    if (!c->resp_done && take > 0) {
        if (c->resp_body == HTTP1_BODY_LENGTH) {
            if (take > c->resp_remaining) take = (size_t)c->resp_remaining;
            c->resp_remaining -= take;
            c->resp_done = c->resp_remaining == 0;
        } else if (c->resp_body == HTTP1_BODY_CHUNKED) {
            r = http1_chunked_feed(&c->resp_chunk, dbuf_data(&c->uin), c->uin.len);
            if (r == -1) {
                upstream_failed(c, 502, "bad chunked response body");
                return -1;
            }
            if (r >= 0) {
                take = (size_t)r;
                c->resp_done = 1;
            }
        }
        if (dbuf_append(&c->cout, dbuf_data(&c->uin), take) < 0) {
            conn_close(c);
            return -1;
        }
        dbuf_consume(&c->uin, take);
    }
    if (!c->resp_done && c->u_eof && c->uin.len == 0) {
        if (c->resp_body == HTTP1_BODY_UNTIL_CLOSE) {
            c->resp_done = 1;
        } else {
            upstream_failed(c, 502, "upstream closed mid-body");
            return -1;
        }
    }
    return 0;
}

/*
 * True when the upstream connection ended at a clean message boundary and may carry the
 * next request: both messages framed and complete, nothing left unsent or unread, and
 * neither side asked to close.
 */
static int upstream_reusable(const struct conn *c)
{
    return c->ufd >= 0 && !c->u_connecting && c->u_keep && !c->resp_close &&
           c->resp_body != HTTP1_BODY_UNTIL_CLOSE && c->resp_done && c->req_done &&
           c->uout.len == 0 && c->uin.len == 0 && !c->u_eof && !c->u_write_failed &&
           !c->w->stopping && c->state == CS_PROXY;
}

/* The response is complete: end the request and get ready for the next one. */
static void finish_request(struct conn *c)
{
    request_log(c, c->resp_status);
    if (!c->req_done || c->u_write_failed || c->w->stopping) c->keep_alive = 0;
    if (upstream_reusable(c)) {
        ev_io_stop(c->w->loop, &c->urio);
        ev_io_stop(c->w->loop, &c->uwio);
        upstream_pool_put(c->w->pool, (const struct sockaddr *)&c->uaddr, c->uaddrlen, c->ufd);
        c->ufd = -1; /* the pool owns it now */
    }
    request_release(c);
    c->state = CS_HEAD;
    if (!c->keep_alive) c->close_after_flush = 1;
    arm_timer(c, c->w->cfg.client_idle_timeout);
}

/*
 * Relays raw bytes both ways after a 101. When either side has closed and what it sent has
 * been passed on, closes both. Returns 0, or -1 when the connection was closed.
 */
static int tunnel_pump(struct conn *c)
{
    if (c->cin.len && !c->u_write_failed) {
        if (dbuf_append(&c->uout, dbuf_data(&c->cin), c->cin.len) < 0) goto close;
        dbuf_consume(&c->cin, c->cin.len);
    }
    if (c->uin.len) {
        if (dbuf_append(&c->cout, dbuf_data(&c->uin), c->uin.len) < 0) goto close;
        dbuf_consume(&c->uin, c->uin.len);
    }
    if (c->u_write_failed || (c->c_eof && c->uout.len == 0) || (c->u_eof && c->cout.len == 0))
        goto close;
    return 0;
close:
    conn_close(c);
    return -1;
}

/* Runs the state machine as far as buffered data allows, then updates watchers. */
/*
 * An idle keep-alive connection (between requests, nothing buffered either way) gives its
 * buffers back, so thousands of idle clients cost little more than their struct conn. Reads
 * go through a per-thread scratch buffer (client_read_cb), so the next request allocates
 * only what it needs.
 */
static void conn_trim(struct conn *c)
{
    if (c->state != CS_HEAD || c->snap || c->cin.len || c->cout.len || c->uin.len || c->uout.len ||
        c->replay.len)
        return;
    dbuf_free(&c->cin);
    dbuf_free(&c->cout);
    dbuf_free(&c->uin);
    dbuf_free(&c->uout);
    dbuf_free(&c->replay);
}

static void conn_run(struct conn *c)
{
    for (;;) {
        if (c->dead) return;
        if (c->state == CS_HEAD) {
            if (c->close_after_flush) break;
            if (!start_request(c)) {
                if (c->c_eof) {
                    c->close_after_flush = 1; /* client is gone and no full request left */
                    break;
                }
                break;
            }
            continue;
        }
        if (c->state == CS_TUNNEL) {
            if (tunnel_pump(c) < 0) return;
            break;
        }
        /* CS_PROXY */
        if (pump_request_body(c) < 0) return;
        if (c->state != CS_PROXY) continue;
        if (!c->resp_started) {
            int r = parse_response_head(c);
            if (r < 0) {
                if (c->dead) return;
                continue;
            }
            if (r == 0) break;
            if (c->state == CS_TUNNEL) continue;
        }
        if (pump_response_body(c) < 0) {
            if (c->dead) return;
            continue;
        }
        if (c->resp_done) {
            finish_request(c);
            continue;
        }
        break;
    }
    conn_trim(c);
    conn_update(c);
}

/* ---- callbacks ---- */

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(container_of(io, struct conn, rio));
    ssize_t n;

    (void)loop;
    (void)revents;
    if (c->cin.len == 0) {
        /* nothing pending: read into the thread's scratch buffer, keep only what came */
        static __thread char scratch[CONN_READ_CHUNK];
        n = read(c->fd, scratch, sizeof(scratch));
        if (n > 0 && dbuf_append(&c->cin, scratch, (size_t)n) < 0) {
            conn_close(c);
            return;
        }
    } else {
        if (dbuf_reserve(&c->cin, CONN_READ_CHUNK) < 0) {
            conn_close(c);
            return;
        }
        n = read(c->fd, c->cin.p + c->cin.off + c->cin.len, CONN_READ_CHUNK);
        if (n > 0) c->cin.len += (size_t)n;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        conn_close(c);
        return;
    }
    if (n == 0)
        c->c_eof = 1;
    else
        arm_progress(c);
    conn_run(c);
}

static void client_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(container_of(io, struct conn, wio));
    ssize_t n;

    (void)loop;
    (void)revents;
    while (c->cout.len > 0) {
        n = send(c->fd, dbuf_data(&c->cout), c->cout.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            conn_close(c);
            return;
        }
        c->out_total += (uint64_t)n;
        dbuf_consume(&c->cout, (size_t)n);
        arm_progress(c);
    }
    conn_run(c);
}

static void client_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = conn_check(container_of(t, struct conn, timer));

    (void)loop;
    (void)revents;
    if (c->state == CS_HEAD && c->cin.len > 0 && c->cout.len == 0 && !c->close_after_flush) {
        /* a started head that never completed: say so, then close */
        reset_request(c);
        c->keep_alive = 0;
        dbuf_consume(&c->cin, c->cin.len);
        local_response(c, 408, "request timeout\n", 1);
        conn_update(c);
        return;
    }
    conn_close(c);
}

static void upstream_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(container_of(io, struct conn, uwio));
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    ssize_t n;

    (void)loop;
    (void)revents;
    if (c->u_connecting) {
        if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        if (soerr) {
            metrics_upstream_connect_error();
            upstream_failed(c, 502, strerror(soerr));
            conn_run(c);
            return;
        }
        c->u_connecting = 0;
        metrics_upstream_connected();
        arm_progress(c);
    }
    while (c->uout.len > 0 && !c->u_write_failed) {
        n = send(c->ufd, dbuf_data(&c->uout), c->uout.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (c->state == CS_PROXY && upstream_retry(c, strerror(errno)) == 0) break;
            /* upstream may still have answered (e.g. 413): keep reading its response */
            c->u_write_failed = 1;
            c->keep_alive = 0;
            dbuf_consume(&c->uout, c->uout.len);
            break;
        }
        dbuf_consume(&c->uout, (size_t)n);
        arm_progress(c);
    }
    conn_run(c);
}

static void upstream_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(container_of(io, struct conn, urio));
    ssize_t n;

    (void)loop;
    (void)revents;
    if (dbuf_reserve(&c->uin, CONN_READ_CHUNK) < 0) {
        conn_close(c);
        return;
    }
    n = read(c->ufd, c->uin.p + c->uin.off + c->uin.len, CONN_READ_CHUNK);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        c->u_eof = 1; /* reset: handled like a close, the framing decides if it is an error */
    } else if (n == 0) {
        c->u_eof = 1;
    } else {
        c->uin.len += (size_t)n;
        c->u_got_bytes = 1;
        c->replay_ok = 0;
        arm_progress(c);
        if (!c->resp_started && c->uin.len > HTTP1_MAX_HEAD + CONN_READ_CHUNK) {
            upstream_failed(c, 502, "response head too large");
            conn_run(c);
            return;
        }
    }
    conn_run(c);
}

static void upstream_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = conn_check(container_of(t, struct conn, utimer));

    (void)loop;
    (void)revents;
    if (c->u_connecting) {
        /* no timely answer from the upstream, as for a response timeout (nginx does too) */
        metrics_upstream_connect_error();
        upstream_failed(c, 504, "connect timeout");
    } else if (!c->resp_started && c->req_done && c->state == CS_PROXY) {
        metrics_upstream_timeout();
        upstream_failed(c, 504, "response timeout");
    } else {
        /* a body or tunnel made no progress either way: nothing useful can follow */
        log_warn("upstream_error", "peer=%s route=%s reason=\"idle body timeout\"", c->peer,
                 c->route_src);
        conn_close(c);
        return;
    }
    conn_run(c);
}

/* ---- worker interface ---- */

void conn_accept(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen)
{
    struct conn *c;
    int one = 1;

    (void)peerlen;
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->magic = CONN_MAGIC;
    c->w = w;
    c->fd = fd;
    c->ufd = -1;
    c->state = CS_HEAD;
    c->req_done = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->peer, sizeof(c->peer));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &s4->sin_addr, c->peer, sizeof(c->peer));
    }
    ev_io_init(&c->rio, client_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, client_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, client_timer_cb, w->cfg.client_idle_timeout, 0.);
    ev_io_init(&c->urio, upstream_read_cb, -1, EV_READ);
    ev_io_init(&c->uwio, upstream_write_cb, -1, EV_WRITE);
    ev_timer_init(&c->utimer, upstream_timer_cb, 1., 0.);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    metrics_conn_opened();
    ev_timer_start(w->loop, &c->timer);
    ev_io_start(w->loop, &c->rio);
}

void conn_shutdown_all(struct worker *w)
{
    struct conn *c, *next;

    for (c = w->conns; c; c = next) {
        next = c->next;
        if (c->state == CS_HEAD && c->cin.len == 0) {
            c->close_after_flush = 1;
            conn_update(c);
        } else {
            c->keep_alive = 0;
        }
    }
}

void conn_close_all(struct worker *w)
{
    while (w->conns)
        conn_close(w->conns);
}
