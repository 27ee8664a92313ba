/*
 * conn: the client connection state machine of a worker, and the upstream leg of each
 * request.
 *
 * Does: read and parse a request head (http1.c), route it with the worker's current
 * snapshot (taking a reference held until the request ends), take an idle upstream
 * connection to the chosen endpoint from the worker's pool (upstream.c) or open a fresh
 * one, forward a rewritten head (origin-form target, Host from the absolute-form authority
 * when there is one, hop-by-hop headers dropped, X-Forwarded-For/-Proto/-Host and Via
 * added, Max-Forwards of OPTIONS/TRACE decremented; persistent for HTTP/1.1, "Connection:
 * close" for 1.0) and stream the request body (Content-Length or chunked, verbatim); then
 * parse the response head, rewrite its hop-by-hop headers and Connection for the client (and
 * drop Content-Length/Transfer-Encoding from 1xx and 204), add Date if missing, and stream the
 * response body (Content-Length, chunked verbatim, or until upstream close - then the client
 * connection closes after it, no chunked re-encoding). A cleanly finished exchange parks
 * the upstream connection in the pool; a reused one that dies before the first response
 * byte is retried once on a fresh connection when the request is idempotent and only its
 * head was sent. An Upgrade request is forwarded with Upgrade + "Connection: upgrade"; a
 * 101 answer turns the connection into a byte tunnel (CS_TUNNEL) until either side closes.
 * A body larger than the route's limit (snapshot_route_max_body) is answered 413.
 * Timeouts (worker_config): whole request head, keep-alive idle, upstream connect,
 * response head, and no progress during a body or tunnel. Answers 400/404/405/408/413/414/
 * 431/501/502/503/504/505 itself with a short text/plain body, Date and Connection, and
 * OPTIONS with Max-Forwards: 0 with an empty 200 and Allow. Empty lines before a request
 * line are dropped without starting the header timer.
 * On a TLS listener the connection first runs its handshake (bounded by the header
 * timeout, closed silently when it fails or expires); then requests go over the session
 * exactly as over plain TCP, with X-Forwarded-Proto https, the client-certificate headers of
 * a verified connection, HSTS on responses of routes that have it; plain listeners answer
 * routes flagged ssl-redirect with a 308 to https (ACME challenge paths excepted). All
 * socket I/O, both sides, goes through the connection's transport (transport.h).
 * Does not: TLS itself (tls.c, tp_tls.c), HTTP/2, transform bodies, or retry a request
 * whose body was sent; the heads it writes are built by conn_head.c, its own answers
 * (errors, redirects) by conn_local.c, a sidecar's parts by conn_mesh.c.
 *
 * Cost model: a keep-alive request costs four system calls (read the request, send it
 * upstream, read the response, send it to the client) and no epoll_ctl: output is written
 * at once and a write watcher is started only when the kernel pushes back; read watchers
 * stay active between requests (a client's read watcher only stops for back-pressure or
 * EOF; an upstream connection's watchers travel with it, see upstream.h); buffers come
 * from the per-thread block list (dbuf.c). An idle keep-alive connection holds only its
 * struct conn: the per-request state (struct conn_req) comes from a per-thread free list
 * when a request starts and goes back when it ends.
 * Invariants:
 *   - one request at a time per client connection: the next request is not parsed before
 *     the current response is complete (bytes read meanwhile stay buffered in cin, at most
 *     HTTP1_MAX_HEAD of them, so pipelining is safe and in order);
 *   - c->r is non-NULL exactly while a request is being answered (state CS_PROXY or
 *     CS_TUNNEL, or inside start_request/conn_local_response);
 *   - back-pressure: a side is read only while the buffer it feeds holds < CONN_BUF_HIGH
 *     bytes, so memory per connection stays bounded whatever the body sizes;
 *   - watchers are recomputed from state by conn_update() at the end of every event, after
 *     conn_run() has tried to write what is buffered;
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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "clusterstate.h"
#include "containerof.h"
#include "dbuf.h"
#include "filters.h"
#include "http1.h"
#include "httpmsg.h"
#include "log.h"
#include "mesh.h"
#include "meshfeed.h"
#include "metrics.h"
#include "mirror.h"
#include "netaddr.h"
#include "retrybudget.h"
#include "router.h"
#include "tls.h"
#include "tls_mesh.h"
#include "tls_upstream.h"
#include "transport.h"
#include "upstream.h"

#include "conn_int.h"

static void upstream_read_cb(struct ev_loop *loop, ev_io *io, int revents);

static void upstream_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void upstream_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void deadline_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* This thread's random numbers (xorshift64*): backend weights, mirror shares, jitter. */
static __thread uint64_t rng_state;

static uint32_t conn_random(void)
{
    uint64_t x = rng_state;

    if (!x) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&rng_state;
        if (!x) x = 0x9e3779b97f4a7c15ull;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

/* ---- lifecycle ---- */

static struct conn *conn_check(struct conn *c)
{
    if (c->magic != CONN_MAGIC) abort();
    return c;
}

static struct conn_req *req_check(struct conn_req *r)
{
    if (r->magic != REQ_MAGIC) abort();
    return r;
}

static __thread struct conn_req *free_reqs;
static __thread unsigned n_free_reqs;

/* A cleared request object for c (from this thread's free list when it has one), or NULL. */
struct conn_req *conn_req_new(struct conn *c)
{
    struct conn_req *r = free_reqs;
    struct conn_reqlog *keep = NULL;

    if (r) {
        free_reqs = r->next_free;
        n_free_reqs--;
        keep = r->reqlog;
    } else if (!(r = malloc(sizeof(*r)))) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->magic = REQ_MAGIC;
    r->c = c;
    r->reqlog = keep;
    r->req_done = 1;
    r->max_body = UINT64_MAX;
    ev_timer_init(&r->utimer, upstream_timer_cb, 1., 0.);
    ev_timer_init(&r->dtimer, deadline_timer_cb, 1., 0.);
    return r;
}

/* Gives r's buffers back and r to the free list; its upstream must be gone already. */
static void req_free(struct conn_req *r)
{
    dbuf_free(&r->uin);
    dbuf_free(&r->uout);
    dbuf_free(&r->replay);
    r->magic = 0;
    if (n_free_reqs >= REQ_POOL_MAX) {
        free(r->reqlog);
        free(r);
        return;
    }
    r->next_free = free_reqs;
    free_reqs = r;
    n_free_reqs++;
}

void conn_thread_end(void)
{
    while (free_reqs) {
        struct conn_req *r = free_reqs;
        free_reqs = r->next_free;
        free(r->reqlog);
        free(r);
    }
    n_free_reqs = 0;
    dbuf_pool_release();
}

const char *conn_route_name(const struct conn_req *r)
{
    return r && r->route_src ? r->route_src : "";
}

/*
 * Balancer feedback (least_request, ewma): bal_begin when an attempt goes to ep, bal_finish
 * when it ends (ok: a response below 500); exactly one finish per begin.
 */
static void bal_finish(struct conn *c, int ok)
{
    struct conn_req *r = c->r;
    double lat;

    if (!r || !r->bal_ep) return;
    lat = ev_now(c->w->loop) - r->bal_t0;
    snapshot_balancer_done(r->snap, r->ucluster, r->bal_ep, lat > 0 ? (uint64_t)(lat * 1e9) : 0,
                           ok);
    r->bal_ep = NULL;
}

static void bal_begin(struct conn *c, const struct snapshot_endpoint *ep)
{
    struct conn_req *r = c->r;

    bal_finish(c, 0);
    r->bal_ep = ep;
    r->bal_t0 = ev_now(c->w->loop);
    snapshot_balancer_start(r->snap, r->ucluster, ep);
}

/* The shared state (circuit breaker gauges, retry budget) of r's cluster. */
static struct clusterstate *req_cs(const struct conn_req *r)
{
    /* a sidecar's direct hand-off (no cluster) has none: clusterstate takes NULL */
    return r->ucluster == SNAPWIRE_NONE ? NULL : r->snap->clusters[r->ucluster].cs;
}

/* The request no longer waits for a new upstream connection (it has one, or none). */
static void cb_pending_end(struct conn_req *r)
{
    if (!r->cb_pending) return;
    r->cb_pending = 0;
    clusterstate_release(req_cs(r), CLUSTERSTATE_PENDING);
}

/* Closes the request's upstream connection (if any) and stops its timer. */
void conn_upstream_release(struct conn *c)
{
    struct conn_req *r = c->r;

    if (!r) return;
    bal_finish(c, 0); /* an attempt that ends here did not complete */
    cb_pending_end(r);
    if (r->u) {
        upstream_conn_close(r->u);
        r->u = NULL;
    }
    ev_timer_stop(c->w->loop, &r->utimer);
    r->uin.len = r->uin.off = 0;
    r->uout.len = r->uout.off = 0;
    r->replay.len = r->replay.off = 0;
    r->replay_ok = 0;
}

/* Access-log facts copied from the request head (it lives in cin, which moves on). */
struct conn_reqlog {
    char method[16], target[ACCESSLOG_MAX_FIELD], host[256], upstream[64];
};

/* Request start: remember when, and with --access-log what, for conn_request_log(). */
void conn_request_begin(struct conn *c, const struct http1_request *req)
{
    struct conn_req *r = c->r;

    r->logged = 0;
    r->req_start = ev_now(c->w->loop); /* the loop's time: no clock read per request */
    r->out_mark = c->out_total + c->cout.len;
    if (!accesslog_enabled()) return;
    if (!r->reqlog && !(r->reqlog = malloc(sizeof(*r->reqlog)))) return;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->req_wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    snprintf(r->reqlog->method, sizeof(r->reqlog->method), "%.*s", req ? (int)req->method_len : 0,
             req ? req->method : "");
    snprintf(r->reqlog->target, sizeof(r->reqlog->target), "%.*s", req ? (int)req->target_len : 0,
             req ? req->target : "");
    r->reqlog->host[0] = r->reqlog->upstream[0] = '\0';
}

/*
 * The current request is answered with status: counts it once in the metrics (by route,
 * status class and duration) and writes its access log line. Must run before the request
 * is released (route_src points into its snapshot).
 */
void conn_request_log(struct conn *c, int status)
{
    struct conn_req *r = c->r;
    double dur;

    if (!r || r->logged) return;
    r->logged = 1;
    dur = r->req_start ? ev_now(c->w->loop) - r->req_start : 0;
    metrics_request_done(conn_route_name(r), status, dur);
    if (r->reqlog && accesslog_enabled()) {
        struct accesslog_entry e = {
            .time = r->req_wall,
            .client = c->peer,
            .method = r->reqlog->method[0] ? r->reqlog->method : NULL,
            .target = r->reqlog->method[0] ? r->reqlog->target : NULL,
            .host = r->reqlog->host[0] ? r->reqlog->host : NULL,
            .http_minor = r->client_minor,
            .status = status,
            .bytes_sent = c->out_total + c->cout.len - r->out_mark,
            .duration = dur,
            .upstream = r->reqlog->upstream[0] ? r->reqlog->upstream : NULL,
            .route = r->route_src && r->route_src[0] ? r->route_src : NULL,
        };
        accesslog_write(&e);
    }
}

/* Ends the current request: upstream closed, snapshot reference dropped, state freed. */
void conn_request_release(struct conn *c)
{
    struct conn_req *r = c->r;

    if (!r) return;
    conn_upstream_release(c);
    ev_timer_stop(c->w->loop, &r->dtimer);
    /* a request that ends before its body was all read leaves its mirrors incomplete */
    while (r->n_mirrors) {
        struct mirror *m = r->mirrors[--r->n_mirrors];
        if (r->req_done)
            mirror_end(m);
        else
            mirror_abort(m);
    }
    if (r->cb_req) {
        r->cb_req = 0;
        clusterstate_release(req_cs(r), CLUSTERSTATE_REQUESTS);
    }
    snapshot_unref(r->snap);
    c->r = NULL;
    req_free(r);
}

void conn_close(struct conn *c)
{
    struct worker *w = c->w;

    if (c->dead) return;
    c->dead = 1;
    if (c->r && c->r->resp_started) conn_request_log(c, c->r->resp_status); /* cut short */
    conn_request_release(c);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    /* counted before the socket goes: a peer that has seen it close never scrapes it open */
    metrics_conn_closed();
    c->tp.ops->close(&c->tp);
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
    worker_conn_gone(w);
}

/* Closes c with a reset (RST) instead of a FIN: a tunnel's way of saying it failed. */
void conn_reset(struct conn *c)
{
    struct linger lg = {1, 0};

    if (c->dead) return;
    setsockopt(c->tp.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    c->tp.priv |= TRANSPORT_PRIV_ABORT; /* no close_notify before the reset */
    conn_close(c);
}

void conn_reap(struct worker *w)
{
    while (w->dead) {
        struct conn *c = w->dead;
        w->dead = c->next;
        dbuf_free(&c->cin);
        dbuf_free(&c->cout);
        free(c->client_hdrs);
        free(c->peer_uri);
        c->magic = 0;
        free(c);
    }
}

/*
 * (Re)starts a timer to fire after the given seconds. ev_timer_again moves an active timer
 * in libev's heap in one step (stop + start would be two); the timers are repeating ones
 * only in name: every callback closes, or re-arms, or releases what owns the timer.
 */
void conn_arm_timer(struct conn *c, double after)
{
    c->timer.repeat = after;
    ev_timer_again(c->w->loop, &c->timer);
}

/*
 * The upstream timer is lazy (libev's "let the timer run" pattern): progress only moves the
 * deadline (u_due); the heap is touched when the timer must fire earlier than it is set
 * to, or when it fires early and re-arms itself for the rest (upstream_timer_cb). A body or
 * a busy tunnel thus costs no timer work per read or write.
 */
static void arm_utimer(struct conn *c, double after)
{
    struct conn_req *r = c->r;
    double due = ev_now(c->w->loop) + after;

    r->u_due = due;
    if (ev_is_active(&r->utimer) && r->u_fire_at <= due + 1e-3) return;
    r->u_fire_at = due;
    r->utimer.repeat = after;
    ev_timer_again(c->w->loop, &r->utimer);
}

/* Recomputes which watchers should be active from the connection's state. */
static void conn_update(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;
    struct conn_req *r = c->r;
    int rd;

    if (c->dead) return;
    if (c->close_after_flush && c->cout.len == 0 && !c->lingering) {
        if (!c->linger && c->cin.len == 0) {
            conn_close(c);
            return;
        }
        /*
         * The client may still be sending (a body we refused, pipelined requests): a close
         * now would make the kernel answer those bytes with RST, which can destroy the
         * response before the client reads it. Send FIN instead and drain what comes until
         * the client's EOF or CONN_LINGER (nginx's lingering close).
         */
        if (c->c_eof || c->tp.ops->shutdown_write(&c->tp) < 0) {
            conn_close(c);
            return;
        }
        c->lingering = 1;
        dbuf_free(&c->cin);
        conn_arm_timer(c, CONN_LINGER);
    }
    if (c->lingering) {
        io_want(loop, &c->rio, 1);
        io_want(loop, &c->wio, 0);
        return;
    }
    rd = !c->c_eof && !c->close_after_flush &&
         ((c->state == CS_HEAD && c->cin.len <= HTTP1_MAX_HEAD) ||
          (c->state == CS_PROXY && !r->req_done && !r->u_write_failed &&
           r->uout.len < CONN_BUF_HIGH) ||
          /*
           * request complete: a running watcher goes on taking what a pipelining client
           * sends next, up to a head; one not started yet (the first request, read at
           * accept) waits for the response, so a Connection: close exchange never
           * registers the socket with epoll at all
           */
          (c->state == CS_PROXY && r->req_done && c->cin.len < HTTP1_MAX_HEAD &&
           ev_is_active(&c->rio)) ||
          (c->state == CS_TUNNEL && r->uout.len < CONN_BUF_HIGH));
    /*
     * A session that must read before it can send (or write before it can read) waits on
     * the other direction's watcher; a plain transport never sets want.
     */
    io_want(loop, &c->rio, rd || (c->tp.want & TRANSPORT_SEND_WANTS_READ));
    io_want(loop, &c->wio,
            (c->cout.len > 0 && !(c->tp.want & TRANSPORT_SEND_WANTS_READ)) ||
                (c->tp.want & TRANSPORT_RECV_WANTS_WRITE));
    /* level-triggered loop: bytes a TLS session already decrypted never wake it up */
    if (rd && transport_pending(&c->tp)) ev_feed_event(loop, &c->rio, EV_READ);
    if (r && r->u) {
        struct transport *ut = up_tp(r);
        int urd = !r->u_connecting && !r->u_eof && (!r->resp_done || c->state == CS_TUNNEL) &&
                  c->cout.len < CONN_BUF_HIGH;
        io_want(loop, &r->u->rio, urd || (ut->want & TRANSPORT_SEND_WANTS_READ));
        io_want(loop, &r->u->wio,
                r->u_connecting ||
                    (r->uout.len > 0 && !r->u_write_failed && !r->u_handshaking &&
                     !(ut->want & TRANSPORT_SEND_WANTS_READ)) ||
                    (ut->want & TRANSPORT_RECV_WANTS_WRITE));
        if (urd && transport_pending(ut)) ev_feed_event(loop, &r->u->rio, EV_READ);
    }
}

static int upstream_retry(struct conn *c, const char *why);
static int route_retry(struct conn *c, const char *why);

/*
 * Upstream failed: a reused connection that died before answering is retried once on a
 * fresh one when that is safe; then the route's retry policy may try another attempt;
 * otherwise 502/504 if the client has not seen a response head yet, else abort.
 */
static void upstream_failed(struct conn *c, int status, const char *why)
{
    struct conn_req *r = c->r;

    if (c->opaque) {
        /* a TCP tunnel has no way to say it but a reset (a clean end would pass for EOF) */
        log_warn("upstream_error", "peer=%s route=%s reason=\"%s\"", c->peer, conn_route_name(r),
                 why);
        conn_reset(c);
        return;
    }
    if (!r->resp_started && status == 502 && upstream_retry(c, why) == 0) return;
    if (!r->resp_started && route_retry(c, why) == 0) return;
    log_warn("upstream_error", "peer=%s route=%s reason=\"%s\"", c->peer, conn_route_name(r), why);
    if (r->resp_started) {
        conn_request_log(c, r->resp_status);
        conn_request_release(c);
        c->close_after_flush = 1; /* truncated response: closing is the only signal */
        c->state = CS_HEAD;
        conn_arm_timer(c, c->w->cfg.client_idle_timeout);
        return;
    }
    conn_local_response(c, status, NULL, 0);
}

/*
 * (Re)arms the upstream timer after progress, for the phase the request is in: a body
 * moving either way (or a tunnel) gets idle_body_timeout, waiting for the response head
 * upstream_response_timeout. A running connect keeps its own timer.
 */
static void arm_progress(struct conn *c)
{
    const struct worker_config *cfg = &c->w->cfg;
    struct conn_req *r = c->r;

    if (!r || !r->u || r->u_connecting || r->u_handshaking || c->state == CS_HEAD) return;
    if (c->opaque) {
        /* an opaque connection (a database's) may idle for hours: no timer once connected */
        ev_timer_stop(c->w->loop, &r->utimer);
        return;
    }
    arm_utimer(c, r->resp_started || c->state == CS_TUNNEL || !r->req_done
                      ? cfg->idle_body_timeout
                      : cfg->upstream_response_timeout);
}

/*
 * Gives the request an upstream connection to r->uaddr: an idle one from the worker's pool
 * when allow_pool, else a fresh connect. Returns 0, or -1 with errno (connect failed).
 */
int conn_upstream_open(struct conn *c, int allow_pool)
{
    struct conn_req *r = c->r;
    const struct sockaddr *sa = (const struct sockaddr *)&r->uaddr;
    struct upstream_conn *u = NULL;
    int in_progress = 0;

    int direct = r->ucluster == SNAPWIRE_NONE; /* sidecar hand-off: no cluster, plain TCP */
    uint64_t tag = direct ? MESH_DIRECT_TAG : tls_upstream_tag(r->snap->tls_up, r->ucluster);
    const struct snapwire_cluster *swc = direct ? NULL : &r->snap->sw.clusters[r->ucluster];
    struct clusterstate *cs = req_cs(r);

    if (allow_pool) u = upstream_pool_take(c->w->pool, sa, r->uaddrlen, tag);
    r->u_reused = u != NULL;
    if (u) {
        metrics_pool_reused();
        /* an idle connection taken back into use: counted, never refused (it exists) */
        clusterstate_acquire(cs, CLUSTERSTATE_CONNECTIONS, 0);
        u->cs = cs;
    } else {
        /* circuit breaking: a new connection is one more pending request and connection */
        if (clusterstate_acquire(cs, CLUSTERSTATE_PENDING, swc ? swc->cb_max_pending : 0) < 0) {
            errno = EBUSY;
            return -1;
        }
        if (clusterstate_acquire(cs, CLUSTERSTATE_CONNECTIONS, swc ? swc->cb_max_connections : 0) <
            0) {
            clusterstate_release(cs, CLUSTERSTATE_PENDING);
            errno = EBUSY;
            return -1;
        }
        u = upstream_conn_open(c->w->loop, sa, r->uaddrlen, &in_progress);
        if (!u) {
            int e = errno;
            clusterstate_release(cs, CLUSTERSTATE_PENDING);
            clusterstate_release(cs, CLUSTERSTATE_CONNECTIONS);
            errno = e;
            return -1;
        }
        u->cs = cs;
        r->cb_pending = 1;
        if (!in_progress) metrics_upstream_connected();
        if (c->mesh == MESH_LISTENER_OUTBOUND)
            metrics_mesh_conn(direct ? METRICS_MESH_OUT_PASSTHROUGH
                              : tls_upstream_mesh_cluster(r->snap->tls_up, r->ucluster)
                                  ? METRICS_MESH_OUT_MTLS
                                  : METRICS_MESH_OUT_PLAIN);
    }
    upstream_conn_attach(u, upstream_read_cb, upstream_write_cb, c);
    r->u = u;
    r->u_connecting = (uint8_t)in_progress;
    r->u_handshaking = 0;
    r->u_got_bytes = 0;
    if (direct) u->tag = tag; /* pooled apart, and kept across swaps (worker.c) */
    if (!r->u_reused && tag && !direct) {
        /* a fresh connection to a TLS cluster: the handshake follows the TCP connect */
        int trc = c->opaque && tls_upstream_mesh_cluster(r->snap->tls_up, r->ucluster)
                      ? tls_upstream_start_mesh(r->snap->tls_up, r->ucluster, &u->tp, u->fd, 1)
                      : tls_upstream_start(r->snap->tls_up, r->ucluster, &u->tp, sa, r->uaddrlen);
        if (trc < 0) {
            upstream_conn_close(u);
            r->u = NULL;
            errno = ENOMEM;
            return -1;
        }
        u->tag = tag;
        r->u_handshaking = 1;
    }
    if (in_progress || r->u_handshaking) {
        arm_utimer(c, c->w->cfg.upstream_connect_timeout); /* covers the handshake too */
    } else {
        cb_pending_end(r);
        arm_progress(c);
    }
    return 0;
}

/*
 * Moves the upstream TLS handshake on. Returns 1 when it is done (the request may go), 0
 * while it waits for the socket, -1 when it failed (answered 502, or retried).
 */
static int upstream_handshake(struct conn *c)
{
    struct conn_req *r = c->r;
    struct transport *ut = up_tp(r);
    char why[256];
    int rc = ut->ops->handshake(ut);

    if (rc == 0) return 0;
    if (rc < 0) {
        metrics_upstream_connect_error();
        upstream_failed(c, 502, tls_upstream_error(ut, why, sizeof(why)));
        return -1;
    }
    r->u_handshaking = 0;
    cb_pending_end(r);
    arm_progress(c);
    return 1;
}

/*
 * After a reused connection failed before any response byte (the server closed it while
 * it idled in the pool - a race no client can avoid): if the request is idempotent and
 * nothing but its head was sent, sends the head again on a fresh connection. Returns 0
 * when the retry is under way, -1 when the failure stands.
 */
static int upstream_retry(struct conn *c, const char *why)
{
    struct conn_req *r = c->r;

    if (!r->u_reused || r->u_got_bytes || !r->replay_ok || !r->u) return -1;
    log_debug("upstream_retry", "peer=%s route=%s reason=\"%s\"", c->peer, conn_route_name(r), why);
    cb_pending_end(r);
    upstream_conn_close(r->u);
    r->u = NULL;
    r->u_eof = r->u_write_failed = 0;
    r->uin.len = r->uin.off = 0;
    r->uout.len = r->uout.off = 0;
    if (dbuf_append(&r->uout, dbuf_data(&r->replay), r->replay.len) < 0) return -1;
    r->replay_ok = 0; /* once only */
    if (conn_upstream_open(c, 0) < 0) {
        metrics_upstream_connect_error();
        return -1;
    }
    return 0;
}

/* Monotonic milliseconds from the loop's clock, for the retry budgets. */
static int64_t loop_ms(struct conn *c)
{
    return (int64_t)(ev_now(c->w->loop) * 1000.0);
}

/* (Re)arms dtimer for the nearer of the request's deadlines (none: stopped). */
static void arm_deadline(struct conn *c)
{
    struct conn_req *r = c->r;
    double due = r->req_deadline, left;

    if (r->try_deadline && (!due || r->try_deadline < due)) due = r->try_deadline;
    if (!due) {
        ev_timer_stop(c->w->loop, &r->dtimer);
        return;
    }
    left = due - ev_now(c->w->loop);
    r->dtimer.repeat = left > 1e-3 ? left : 1e-3;
    ev_timer_again(c->w->loop, &r->dtimer);
}

/*
 * Starts one upstream attempt to r->uaddr (pooled connection allowed), with the route's
 * backend timeout from now. Returns 0, or -1 with errno (connect failed; EBUSY: a circuit
 * breaker limit).
 */
static int attempt_open(struct conn *c)
{
    struct conn_req *r = c->r;
    uint32_t ms = r->rt ? r->rt->backend_timeout_ms : SNAPWIRE_TIMEOUT_DEFAULT;

    r->attempt++;
    r->try_deadline = ms != SNAPWIRE_TIMEOUT_DEFAULT && ms != SNAPWIRE_TIMEOUT_NONE
                          ? ev_now(c->w->loop) + ms / 1000.0
                          : 0;
    arm_deadline(c);
    return conn_upstream_open(c, 1);
}

/* attempt_open failed with errno: 503 overflow (circuit breaking, EBUSY), else 502. */
static void attempt_open_failed(struct conn *c)
{
    if (errno == EBUSY) {
        conn_upstream_overflow(c);
        return;
    }
    metrics_upstream_connect_error();
    upstream_failed(c, 502, strerror(errno));
}

/* True when the route retries a response with this status (retry codes, 500..599). */
static int retry_code(const struct snapwire_route *rt, int status)
{
    unsigned i;

    if (!rt || status < 500 || status > 599) return 0;
    i = (unsigned)(status - 500);
    return (int)(i < 64 ? (rt->retry_codes_lo >> i) & 1 : (rt->retry_codes_hi >> (i - 64)) & 1);
}

/* Points r->uaddr at an endpoint of r's cluster, another one than now when there is one. */
static int pick_other_endpoint(struct conn *c)
{
    struct conn_req *r = c->r;
    const struct snapshot_endpoint *ep = NULL;
    int tries;

    for (tries = 0; tries < 4; tries++) {
        ep = snapshot_pick(r->snap, r->ucluster);
        if (!ep) return -1;
        if (ep->addrlen != r->uaddrlen || memcmp(&ep->addr, &r->uaddr, ep->addrlen) != 0) break;
    }
    memcpy(&r->uaddr, &ep->addr, ep->addrlen);
    r->uaddrlen = ep->addrlen;
    if (r->reqlog)
        netaddr_format((const struct sockaddr *)&ep->addr, r->reqlog->upstream,
                       sizeof(r->reqlog->upstream));
    bal_begin(c, ep);
    return 0;
}

/*
 * The route's retry policy (Gateway retry): after a failed attempt (no response head, or a
 * response status in the route's codes, not yet passed on), another attempt to another
 * endpoint of the cluster when the route allows one more, everything sent so far is in
 * replay (an idempotent request, or one whose body had not started), the request's own
 * deadline has not passed and the route's retry budget has one; after the route's backoff
 * (doubling per retry, jittered to 50..100 %, at most CONN_BACKOFF_MAX) when it has one.
 * Returns 0 when the retry is under way (or waiting), -1 when the failure stands.
 */
static int route_retry(struct conn *c, const char *why)
{
    struct conn_req *r = c->r;
    const struct snapwire_route *rt = r->rt;
    struct retry_budget *budget;
    double delay = 0;

    if (!rt || !rt->retry_attempts || r->attempt > rt->retry_attempts || !r->replay_ok ||
        r->resp_started || c->state != CS_PROXY || r->upgrade)
        return -1;
    if (r->req_deadline && ev_now(c->w->loop) >= r->req_deadline) return -1;
    budget = snapshot_route_budget(r->snap, rt);
    if (budget && !retry_budget_take(budget, loop_ms(c))) {
        metrics_retry_budget_exhausted();
        log_info("retry_budget_exhausted", "peer=%s route=%s reason=\"%s\"", c->peer,
                 conn_route_name(r), why);
        return -1;
    }
    /* and the cluster's budget (strait.dev/retry-budget-*), shared by every route to it */
    if (!retry_budget_take_rate(&req_cs(r)->budget, loop_ms(c),
                                r->snap->sw.clusters[r->ucluster].rb_min_per_sec)) {
        metrics_retry_budget_exhausted();
        atomic_fetch_add_explicit(&req_cs(r)->budget_exhausted, 1, memory_order_relaxed);
        log_info("retry_budget_exhausted", "peer=%s route=%s cluster=%s reason=\"%s\"", c->peer,
                 conn_route_name(r), r->snap->sw.clusters[r->ucluster].name, why);
        return -1;
    }
    metrics_retry();
    bal_finish(c, 0);
    log_debug("route_retry", "peer=%s route=%s attempt=%u reason=\"%s\"", c->peer,
              conn_route_name(r), (unsigned)r->attempt + 1, why);
    cb_pending_end(r);
    if (r->u) {
        upstream_conn_close(r->u);
        r->u = NULL;
    }
    ev_timer_stop(c->w->loop, &r->utimer);
    r->u_eof = r->u_write_failed = r->u_connecting = r->u_handshaking = 0;
    r->uin.len = r->uin.off = 0;
    r->uout.len = r->uout.off = 0;
    r->try_deadline = 0;
    arm_deadline(c);
    if (dbuf_append(&r->uout, dbuf_data(&r->replay), r->replay.len) < 0) return -1;
    if (pick_other_endpoint(c) < 0) return -1;
    if (rt->retry_backoff_ms) {
        unsigned shift = r->attempt > 1 ? (unsigned)r->attempt - 1 : 0;
        delay = rt->retry_backoff_ms / 1000.0 * (double)(1u << (shift < 16 ? shift : 16));
        if (delay > CONN_BACKOFF_MAX) delay = CONN_BACKOFF_MAX;
        delay *= 0.5 + 0.5 * (conn_random() / 4294967296.0);
    }
    if (delay > 0) {
        r->u_backoff = 1;
        arm_utimer(c, delay);
        return 0;
    }
    if (attempt_open(c) < 0) {
        if (errno == EBUSY) {
            conn_upstream_overflow(c);
            return 0;
        }
        metrics_upstream_connect_error();
        /* this attempt failed at once: the next one (if any) decides */
        return route_retry(c, strerror(errno));
    }
    return 0;
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

static void mirrors_start(struct conn *c, struct snapshot *snap);
static void mirrors_feed(struct conn *c, const char *data, size_t n);

/* The value of cookie name in the request's Cookie headers (RFC 6265 5.4), or NULL. */
static const char *cookie_value(const struct http1_request *req, const char *name, size_t *len)
{
    size_t nl = strlen(name), i, p;

    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];
        if (!http1_name_is(h, "cookie")) continue;
        for (p = 0; p < h->value_len;) {
            size_t b, e;
            while (p < h->value_len && (h->value[p] == ' ' || h->value[p] == ';'))
                p++;
            b = p;
            while (p < h->value_len && h->value[p] != ';')
                p++;
            e = p;
            if (e - b > nl && h->value[b + nl] == '=' && memcmp(h->value + b, name, nl) == 0) {
                const char *v = h->value + b + nl + 1;
                size_t vl = e - (b + nl + 1);
                if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                    v++;
                    vl -= 2;
                }
                *len = vl;
                return v;
            }
        }
    }
    return NULL;
}

/*
 * The endpoint of cluster for this request: the one its affinity cookie names when the
 * cluster has cookie affinity and that endpoint is still ready; else the cluster's balancer,
 * given the request's hash key when the cluster hashes on one (header, cookie, client
 * address, path).
 */
static const struct snapshot_endpoint *pick_endpoint(struct conn *c, struct snapshot *snap,
                                                     uint32_t cluster,
                                                     const struct http1_request *req,
                                                     const struct http1_msginfo *info)
{
    const struct snapwire_cluster *swc = &snap->sw.clusters[cluster];
    struct conn_req *r = c->r;
    struct balancer_input in = {0};
    const struct balancer_input *inp = NULL;
    const struct snapshot_endpoint *ep;
    size_t len = 0;
    const char *v;

    if (swc->affinity_cookie && swc->affinity_cookie[0]) {
        r->aff_want = 1;
        if ((v = cookie_value(req, swc->affinity_cookie, &len)) &&
            (ep = snapshot_affinity_find(snap, cluster, v, len))) {
            r->aff_ep = ep;
            return ep;
        }
    }
    switch (swc->hash_on) {
    case SNAPWIRE_HASH_HEADER: {
        const struct http1_header *h = header_find(req->headers, req->num_headers, swc->hash_name);
        if (h) {
            in.key = h->value;
            in.key_len = h->value_len;
        }
        break;
    }
    case SNAPWIRE_HASH_COOKIE:
        if ((v = cookie_value(req, swc->hash_name, &len))) {
            in.key = v;
            in.key_len = len;
        }
        break;
    case SNAPWIRE_HASH_SOURCE_IP:
        in.key = c->peer;
        in.key_len = strlen(c->peer);
        break;
    case SNAPWIRE_HASH_PATH: {
        const char *q = memchr(info->path, '?', info->path_len);
        in.key = info->path;
        in.key_len = q ? (size_t)(q - info->path) : info->path_len;
        break;
    }
    default:
        break;
    }
    if (in.key) inp = &in;
    return snapshot_pick_ex(snap, cluster, inp);
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
    struct conn_req *r;
    char host[ROUTER_MAX_HOST];
    int n, status, hl = 0, direct = 0;
    uint32_t cluster;

    if (c->cin.len == 0) return 0;
    if (dbuf_data(&c->cin)[0] == '\r' || dbuf_data(&c->cin)[0] == '\n') {
        /*
         * RFC 9112 2.2: empty lines before a request line are ignored (old clients send a
         * CRLF after a POST body). They are dropped here rather than left to the parser, so
         * that alone they do not count as a started head: no header timer, no 408 on an
         * idle keep-alive connection - the idle timer, which they do not re-arm, bounds them.
         */
        const char *d = dbuf_data(&c->cin);
        size_t k = 0;
        while (k < c->cin.len && (d[k] == '\r' || d[k] == '\n'))
            k++;
        dbuf_consume(&c->cin, k);
        if (c->cin.len == 0) return 0;
    }
    if (c->feed_park) return 0;
    n = http1_parse_request(dbuf_data(&c->cin), c->cin.len, &req, &status);
    if (n == -2) {
        if (!c->head_timer) {
            c->head_timer = 1;
            conn_arm_timer(c, c->w->cfg.client_header_timeout);
        }
        return 0;
    }
    if (n > 0 && conn_feed_must_wait(c, c->w->current, &req)) {
        /* a Service the Host names that is not here yet, or one dropped while idle */
        conn_feed_park(c, FEED_PARK_REQUEST);
        return 0;
    }
    if (!(r = c->r = conn_req_new(c))) {
        conn_close(c);
        return 1;
    }
    if (n == -1) {
        conn_request_begin(c, NULL);
        conn_local_response(c, status, NULL, 1);
        return 1;
    }
    conn_request_begin(c, &req);
    c->head_timer = 0; /* c->timer runs on; client_timer_cb ignores it while a request is on */
    r->client_minor = (uint8_t)req.minor_version;
    r->is_head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    if (http1_request_info(&req, &info, &status) < 0) {
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, status, NULL, 1);
        return 1;
    }
    r->keep_alive =
        !info.conn_close && (req.minor_version >= 1 || info.conn_keep_alive) && !c->w->stopping;
    r->req_body = info.body;
    r->req_remaining = info.content_length;
    r->req_done = info.body == HTTP1_BODY_NONE;
    /* RFC 9110 7.8: a 1.0 client cannot be switched; Upgrade without the option is ignored */
    r->upgrade = req.minor_version >= 1 &&
                 header_find(req.headers, req.num_headers, "upgrade") != NULL &&
                 conn_header_has_token(req.headers, req.num_headers, "connection", "upgrade");
    r->idempotent = (uint8_t)method_idempotent(&req);
    if (r->reqlog && info.host)
        snprintf(r->reqlog->host, sizeof(r->reqlog->host), "%.*s", (int)info.host_len, info.host);
    if (info.host &&
        (hl = router_normalize_host(info.host, info.host_len, host, sizeof(host))) < 0) {
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, 400, NULL, 1);
        return 1;
    }
    snap = c->w->current;
    if (!snap) {
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, 503, "no snapshot\n", 0);
        return 1;
    }
    if (c->mesh == MESH_LISTENER_INBOUND && !conn_mesh_authorized(c, snap, 1)) {
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, 403, "forbidden by authorization policy\n", 0);
        return 1;
    }
    if (c->mesh) {
        /* a sidecar: the app on loopback (inbound), or the Service Host names (outbound) */
        int rc = conn_mesh_target(c, snap, host, hl, router_host_port(info.host, info.host_len),
                                  &r->uaddr, &r->uaddrlen, &r->route_src, &cluster);
        rt = NULL;
        if (rc < 0) {
            dbuf_consume(&c->cin, (size_t)n);
            conn_local_response(c, 503, "no endpoint for this service\n", 0);
            return 1;
        }
        direct = rc == 1;
        goto routed;
    }
    if (c->tls && hl > 0) {
        host[hl] = '\0';
        if (!tls_policy_allows(snap->tls, host, &c->tp)) {
            /* SNI named a host without the client certificate check Host's host has */
            dbuf_consume(&c->cin, (size_t)n);
            conn_local_response(c, 421, NULL, 0);
            return 1;
        }
    }
    {
        struct router_request rq = {host,           (size_t)hl,      req.target,
                                    req.target_len, req.method,      req.method_len,
                                    req.headers,    req.num_headers, c->tls};
        rt = router_route(snap->router, &rq);
    }
    if (rt && (rt->flags & SNAPWIRE_ROUTE_SSL_REDIRECT) && !c->tls && hl > 0 &&
        !conn_is_acme_challenge(info.path, info.path_len)) {
        const char *t = info.target_form == HTTP1_TARGET_ABSOLUTE ? info.path : req.target;
        size_t tl = info.target_form == HTTP1_TARGET_ABSOLUTE ? info.path_len : req.target_len;
        host[hl] = '\0';
        r->route_src = rt->source;
        conn_redirect_https(c, host, t, tl, (size_t)n);
        return 1;
    }
    if (rt) r->route_src = rt->source;
    r->hsts = c->tls && rt && rt->hsts && rt->hsts[0] ? rt->hsts : NULL;
    r->rt = rt;
    if (rt && rt->filter_count) {
        uint32_t i;
        for (i = 0; i < rt->filter_count; i++) {
            const struct snapwire_filter *f = &snap->sw.filters[rt->first_filter + i];
            if (f->type == SNAPWIRE_FILTER_REDIRECT) {
                conn_gw_redirect(c, f, host, hl, &req, &info, (size_t)n);
                return 1;
            }
            if (f->type == SNAPWIRE_FILTER_REWRITE) r->rewrite = f;
            if (f->type == SNAPWIRE_FILTER_REQUEST_HEADERS) r->req_edit = f;
            if (f->type == SNAPWIRE_FILTER_RESPONSE_HEADERS) r->resp_edit = f;
        }
    }
    /* a random draw only for weighted backends: an Ingress route names its cluster */
    if (!rt)
        cluster = snap->sw.meta.default_cluster;
    else if (rt->backend_count)
        cluster = router_pick_cluster(snap->router, rt, conn_random());
    else
        cluster = rt->cluster;
    if (cluster == SNAPWIRE_NONE) {
        /* Gateway API: a rule whose backend does not resolve answers 500 for its share */
        dbuf_consume(&c->cin, (size_t)n);
        if (rt)
            conn_local_response(c, 500, "no backend for this route\n", 0);
        else
            conn_local_response(c, 404, "no route\n", 0);
        return 1;
    }
    if (!rt) r->route_src = "default";
routed:
    r->max_body = snapshot_route_max_body(snap, rt, &c->w->cfg);
    if (info.body == HTTP1_BODY_LENGTH && info.content_length > r->max_body) {
        /* RFC 9110 15.5.14: refused before any upstream sees it; the body is not read */
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, 413, NULL, 1);
        return 1;
    }
    if (info.max_forwards && info.max_forwards_value == 0) {
        /*
         * RFC 9110 7.6.2: not forwarded, answered as the final recipient would: OPTIONS with
         * what we allow; TRACE, which we do not echo (it would reflect credentials), 405
         */
        int options = req.method[0] == 'O'; /* max_forwards is only set for OPTIONS/TRACE */
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, options ? 200 : 405, options ? "" : NULL, 0);
        return 1;
    }
    ep = direct ? NULL : pick_endpoint(c, snap, cluster, &req, &info);
    if (!ep && !direct) {
        dbuf_consume(&c->cin, (size_t)n);
        conn_local_response(c, 503, "no healthy endpoint\n", 0);
        return 1;
    }
    if (!direct && clusterstate_acquire(snap->clusters[cluster].cs, CLUSTERSTATE_REQUESTS,
                                        snap->sw.clusters[cluster].cb_max_requests) < 0) {
        dbuf_consume(&c->cin, (size_t)n);
        conn_upstream_overflow(c);
        return 1;
    }
    r->snap = snapshot_ref(snap);
    r->ucluster = direct ? SNAPWIRE_NONE : cluster;
    r->cb_req = !direct;
    if (rt) {
        double now = ev_now(c->w->loop);
        if (rt->request_timeout_ms != SNAPWIRE_TIMEOUT_DEFAULT &&
            rt->request_timeout_ms != SNAPWIRE_TIMEOUT_NONE)
            r->req_deadline = r->req_start + rt->request_timeout_ms / 1000.0;
        if (rt->retry_attempts) {
            const struct snapwire_cluster *swc = &snap->sw.clusters[cluster];
            struct retry_budget *b = snapshot_route_budget(snap, rt);
            if (b) retry_budget_deposit(b, (int64_t)(now * 1000.0));
            /* the cluster's budget earns from the requests that may retry */
            retry_budget_deposit_rate(&snap->clusters[cluster].cs->budget, (int64_t)(now * 1000.0),
                                      (int64_t)swc->rb_percent * 10, swc->rb_min_per_sec);
            r->replay_body = r->idempotent;
        }
    }
    if (conn_build_upstream_head(c, &req, &info) < 0) {
        conn_close(c);
        return 1;
    }
    if (rt && rt->filter_count) mirrors_start(c, snap);
    dbuf_consume(&c->cin, (size_t)n); /* req points into cin: consume only now */
    c->state = CS_PROXY;
    if (ep) {
        memcpy(&r->uaddr, &ep->addr, ep->addrlen);
        r->uaddrlen = ep->addrlen;
    }
    if (r->reqlog)
        netaddr_format((const struct sockaddr *)&r->uaddr, r->reqlog->upstream,
                       sizeof(r->reqlog->upstream));
    if (ep) bal_begin(c, ep);
    if (rt && rt->retry_attempts) {
        /* route retries: keep what is sent (the head; body bytes per pump_request_body) */
        if (dbuf_append(&r->replay, dbuf_data(&r->uout), r->uout.len) < 0) {
            conn_close(c);
            return 1;
        }
        r->replay_ok = 1;
    }
    if (attempt_open(c) < 0) {
        attempt_open_failed(c);
        return 1;
    }
    if (r->u_reused && r->idempotent && !r->replay_ok) {
        /* keep the head until the first body or response byte, to retry a stale reuse */
        if (dbuf_append(&r->replay, dbuf_data(&r->uout), r->uout.len) < 0) {
            conn_close(c);
            return 1;
        }
        r->replay_ok = 1;
    }
    return 1;
}

/*
 * RequestMirror filters of the route: for each one's share of requests, a copy of the
 * upstream head just built (with "Connection: close") goes to an endpoint of the mirror
 * cluster; the body follows as it streams (mirrors_feed). Never fails the request.
 */
static void mirrors_start(struct conn *c, struct snapshot *snap)
{
    struct conn_req *r = c->r;
    const struct snapwire_route *rt = r->rt;
    struct dbuf head = {0};
    uint32_t i;

    if (!rt || r->upgrade) return;
    for (i = 0; i < rt->filter_count && r->n_mirrors < CONN_MAX_MIRRORS; i++) {
        const struct snapwire_filter *f = &snap->sw.filters[rt->first_filter + i];
        const struct snapshot_endpoint *ep;
        struct mirror *m;
        if (f->type != SNAPWIRE_FILTER_MIRROR || f->cluster == SNAPWIRE_NONE) continue;
        if (f->mirror_permille < 1000 && conn_random() % 1000 >= f->mirror_permille) continue;
        if (!(ep = snapshot_pick(snap, f->cluster))) {
            metrics_mirror(METRICS_MIRROR_SKIPPED); /* no ready endpoint to copy to */
            continue;
        }
        if (!head.len) {
            /* the head ends "\r\n\r\n"; a persistent one gets the close option first */
            if (dbuf_append(&head, dbuf_data(&r->uout), r->uout.len - (r->u_keep ? 2 : 0)) < 0 ||
                (r->u_keep && dbuf_str(&head, "Connection: close\r\n\r\n") < 0)) {
                dbuf_free(&head);
                return;
            }
        }
        m = mirror_start(c->w->loop, (const struct sockaddr *)&ep->addr, ep->addrlen, snap->tls_up,
                         f->cluster, dbuf_data(&head), head.len,
                         c->w->cfg.upstream_response_timeout);
        if (!m) continue;
        if (r->req_done)
            mirror_end(m); /* nothing more to send */
        else
            r->mirrors[r->n_mirrors++] = m;
    }
    dbuf_free(&head);
}

/* Body bytes to the request's mirrors; one that takes no more is let go. */
static void mirrors_feed(struct conn *c, const char *data, size_t n)
{
    struct conn_req *r = c->r;
    unsigned i = 0;

    while (i < r->n_mirrors) {
        if (mirror_feed(r->mirrors[i], data, n) < 0) {
            mirror_end(r->mirrors[i]);
            r->mirrors[i] = r->mirrors[--r->n_mirrors];
            continue;
        }
        i++;
    }
    if (r->req_done) {
        while (r->n_mirrors)
            mirror_end(r->mirrors[--r->n_mirrors]);
    }
}

/* Moves request body bytes from cin to uout. Returns 0, or -1 if the conn was closed. */
static int pump_request_body(struct conn *c)
{
    struct conn_req *r = c->r;
    size_t take;
    ssize_t n;

    while (!r->req_done && c->cin.len > 0 && r->uout.len < CONN_BUF_HIGH) {
        if (r->u_write_failed) {
            /* upstream stopped listening: swallow; the connection closes after the answer */
            dbuf_consume(&c->cin, c->cin.len);
            break;
        }
        if (r->req_body == HTTP1_BODY_LENGTH) {
            take = c->cin.len;
            if (take > r->req_remaining) take = (size_t)r->req_remaining;
            r->req_remaining -= take;
            if (r->req_remaining == 0) r->req_done = 1;
        } else {
            n = http1_chunked_feed(&r->req_chunk, dbuf_data(&c->cin), c->cin.len);
            if (n == -1 || r->req_chunk.data_total > r->max_body) {
                int too_large = n != -1;
                log_info(too_large ? "request_body_too_large" : "bad_request_body", "peer=%s",
                         c->peer);
                if (r->resp_started) {
                    conn_close(c);
                    return -1;
                }
                conn_local_response(c, too_large ? 413 : 400, NULL, 1);
                return 0;
            }
            take = n == -2 ? c->cin.len : (size_t)n;
            if (n >= 0) r->req_done = 1;
        }
        if (take > 0 && r->replay_ok) {
            /* body bytes are kept for a replay only for route retries of idempotent requests */
            if (!r->replay_body || r->replay.len + take > CONN_REPLAY_MAX ||
                dbuf_append(&r->replay, dbuf_data(&c->cin), take) < 0) {
                r->replay_ok = 0;
                dbuf_free(&r->replay);
            }
        }
        if (dbuf_append(&r->uout, dbuf_data(&c->cin), take) < 0) {
            conn_close(c);
            return -1;
        }
        if (r->n_mirrors) mirrors_feed(c, dbuf_data(&c->cin), take);
        dbuf_consume(&c->cin, take);
    }
    if (!r->req_done && c->c_eof && c->cin.len == 0) {
        /* client went away mid-body: nothing sensible left to do */
        conn_close(c);
        return -1;
    }
    return 0;
}

/* ---- response side ---- */

/* Parses response heads from uin. Returns 1 when the final head is done, 0 for more, -1 if
 * the request was ended (error answered or conn closed). */
static int parse_response_head(struct conn *c)
{
    struct conn_req *r = c->r;
    struct http1_response res;
    struct http1_msginfo info;
    int n, status;

    for (;;) {
        if (r->uin.len == 0 && !r->u_eof) return 0;
        n = http1_parse_response(dbuf_data(&r->uin), r->uin.len, &res, &status);
        if (n == -2 && !r->u_eof) return 0;
        if (n < 0) {
            upstream_failed(c, 502, r->uin.len ? "bad response head" : "closed before response");
            return -1;
        }
        if (http1_response_info(&res, r->is_head, &info) < 0 ||
            (res.status == 101 && !r->upgrade)) {
            upstream_failed(c, 502, "ambiguous response framing");
            return -1;
        }
        if (res.status == 101) {
            /* switched: from here on both sides are raw bytes (RFC 9110 15.2.2) */
            if (conn_write_client_head(c, &res) < 0) goto oom;
            dbuf_consume(&r->uin, (size_t)n);
            r->resp_started = r->resp_done = 1;
            r->resp_status = 101;
            r->keep_alive = 0;
            c->state = CS_TUNNEL;
            bal_finish(c, 1); /* the exchange is the switch; the tunnel is not a request */
            /* route timeouts end with the exchange: a tunnel lives by its idle timeout */
            r->req_deadline = r->try_deadline = 0;
            ev_timer_stop(c->w->loop, &r->dtimer);
            conn_request_log(c, 101);
            log_debug("request", "peer=%s status=101 route=%s", c->peer, conn_route_name(r));
            arm_progress(c);
            return 1;
        }
        if (res.status < 200) {
            /* interim (100 Continue, 103): pass on to HTTP/1.1 clients, keep waiting */
            if (r->client_minor >= 1 && conn_write_client_head(c, &res) < 0) goto oom;
            dbuf_consume(&r->uin, (size_t)n);
            continue;
        }
        if (info.body == HTTP1_BODY_CHUNKED && r->uin.len > (size_t)n) {
            /*
             * Check the chunk lines that came with the head before committing the head, so
             * a malformed body start is still a 502; later errors can only abort.
             */
            struct http1_chunked probe;
            http1_chunked_init(&probe);
            if (http1_chunked_feed(&probe, dbuf_data(&r->uin) + n, r->uin.len - (size_t)n) == -1) {
                upstream_failed(c, 502, "bad chunked response body");
                return -1;
            }
        }
        if (retry_code(r->rt, res.status) && route_retry(c, "retry status") == 0) return 0;
        r->resp_body = info.body;
        r->resp_remaining = info.content_length;
        r->resp_status = res.status;
        r->resp_close = info.conn_close || (res.minor_version == 0 && !info.conn_keep_alive);
        if (info.body == HTTP1_BODY_UNTIL_CLOSE || c->w->stopping) r->keep_alive = 0;
        if (conn_write_client_head(c, &res) < 0) goto oom;
        dbuf_consume(&r->uin, (size_t)n);
        r->resp_started = 1;
        r->resp_done = info.body == HTTP1_BODY_NONE;
        log_debug("request", "peer=%s status=%d route=%s", c->peer, res.status, conn_route_name(r));
        return 1;
    }
oom:
    conn_close(c);
    return -1;
}

/* Moves response body bytes from uin to cout. Returns 0, or -1 if the request ended. */
static int pump_response_body(struct conn *c)
{
    struct conn_req *r = c->r;
    size_t take = r->uin.len;
    ssize_t n;

    if (!r->resp_done && take > 0) {
        if (r->resp_body == HTTP1_BODY_LENGTH) {
            if (take > r->resp_remaining) take = (size_t)r->resp_remaining;
            r->resp_remaining -= take;
            r->resp_done = r->resp_remaining == 0;
        } else if (r->resp_body == HTTP1_BODY_CHUNKED) {
            n = http1_chunked_feed(&r->resp_chunk, dbuf_data(&r->uin), r->uin.len);
            if (n == -1) {
                upstream_failed(c, 502, "bad chunked response body");
                return -1;
            }
            if (n >= 0) {
                take = (size_t)n;
                r->resp_done = 1;
            }
        }
        if (dbuf_append(&c->cout, dbuf_data(&r->uin), take) < 0) {
            conn_close(c);
            return -1;
        }
        dbuf_consume(&r->uin, take);
    }
    if (!r->resp_done && r->u_eof && r->uin.len == 0) {
        if (r->resp_body == HTTP1_BODY_UNTIL_CLOSE) {
            r->resp_done = 1;
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
    const struct conn_req *r = c->r;

    return r->u && !r->u_connecting && r->u_keep && !r->resp_close &&
           r->resp_body != HTTP1_BODY_UNTIL_CLOSE && r->resp_done && r->req_done &&
           r->uout.len == 0 && r->uin.len == 0 && !r->u_eof && !r->u_write_failed &&
           !c->w->stopping && c->state == CS_PROXY;
}

/* The response is complete: end the request and get ready for the next one. */
static void finish_request(struct conn *c)
{
    struct conn_req *r = c->r;
    int keep;

    conn_request_log(c, r->resp_status);
    bal_finish(c, r->resp_status < 500);
    keep = r->keep_alive && r->req_done && !r->u_write_failed && !c->w->stopping;
    if (upstream_reusable(c)) {
        upstream_pool_put(c->w->pool, (const struct sockaddr *)&r->uaddr, r->uaddrlen, r->u);
        r->u = NULL; /* the pool owns it now */
    }
    conn_request_release(c);
    c->state = CS_HEAD;
    if (!keep) c->close_after_flush = 1;
    conn_arm_timer(c, c->w->cfg.client_idle_timeout);
}

/*
 * Relays raw bytes both ways after a 101. When either side has closed and what it sent has
 * been passed on, closes both. Returns 0, or -1 when the connection was closed.
 */
static int tunnel_pump(struct conn *c)
{
    struct conn_req *r = c->r;

    if (c->cin.len && !r->u_write_failed) {
        if (dbuf_append(&r->uout, dbuf_data(&c->cin), c->cin.len) < 0) goto close;
        dbuf_consume(&c->cin, c->cin.len);
    }
    if (r->uin.len) {
        if (dbuf_append(&c->cout, dbuf_data(&r->uin), r->uin.len) < 0) goto close;
        dbuf_consume(&r->uin, r->uin.len);
    }
    if (c->opaque) {
        /*
         * TCP semantics end to end: each side's end (FIN) is passed on once what it sent
         * is delivered, and the tunnel closes when both directions are done (a client
         * that sends a query and shuts its side still gets the answer).
         */
        if (c->c_eof && !r->u_shut && r->uout.len == 0 && r->u && !r->u_connecting &&
            !r->u_handshaking) {
            r->u_shut = 1;
            if (up_tp(r)->ops->shutdown_write(up_tp(r)) < 0) goto reset; /* it was reset */
        }
        if (r->u_eof && !c->c_shut && c->cout.len == 0) {
            c->c_shut = 1;
            if (c->tp.ops->shutdown_write(&c->tp) < 0) goto reset;
        }
        if (r->u_write_failed) goto reset; /* the upstream went away: so does the client's end */
        if (r->u_shut && c->c_shut) goto close;
        return 0;
    }
    if (r->u_write_failed || (c->c_eof && r->uout.len == 0) || (r->u_eof && c->cout.len == 0))
        goto close;
    return 0;
close:
    conn_close(c);
    return -1;
reset:
    conn_reset(c);
    return -1;
}

/*
 * An idle keep-alive connection (between requests, nothing buffered either way) gives its
 * buffers back, so thousands of idle clients cost little more than their struct conn.
 */
static void conn_trim(struct conn *c)
{
    if (c->state != CS_HEAD || c->r || c->cin.len || c->cout.len) return;
    dbuf_free(&c->cin);
    dbuf_free(&c->cout);
    if (!c->close_after_flush) transport_idle(&c->tp); /* a closing one still writes close_notify */
}

/*
 * Sends what uout holds to the upstream now (the watcher is only for when the kernel
 * pushes back). Returns 1 if bytes moved, else 0.
 */
static int flush_upstream(struct conn *c)
{
    struct conn_req *r = c->r;
    int moved = 0;
    ssize_t n;

    while (r && r->u && !r->u_connecting && !r->u_handshaking && r->uout.len > 0 &&
           !r->u_write_failed) {
        n = transport_send(up_tp(r), dbuf_data(&r->uout), r->uout.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (c->state == CS_PROXY && upstream_retry(c, strerror(errno)) == 0) continue;
            /* upstream may still have answered (e.g. 413): keep reading its response */
            r->u_write_failed = 1;
            r->keep_alive = 0;
            dbuf_consume(&r->uout, r->uout.len);
            break;
        }
        dbuf_consume(&r->uout, (size_t)n);
        moved = 1;
    }
    if (moved) arm_progress(c);
    return moved;
}

/* Sends what cout holds to the client now. Returns 1 if bytes moved, 0 if not, -1 if closed. */
static int flush_client(struct conn *c)
{
    int moved = 0;
    ssize_t n;

    /*
     * The last bytes before a close go with MSG_MORE: the close (or lingering shutdown)
     * that follows at once pushes them with the FIN in one segment instead of two.
     */
    int flags = MSG_NOSIGNAL | (c->close_after_flush && !c->r ? MSG_MORE : 0);

    while (c->cout.len > 0) {
        n = transport_send(&c->tp, dbuf_data(&c->cout), c->cout.len, flags);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            conn_close(c);
            return -1;
        }
        c->out_total += (uint64_t)n;
        dbuf_consume(&c->cout, (size_t)n);
        moved = 1;
    }
    if (moved) arm_progress(c);
    return moved;
}

/* Runs the state machine as far as buffered data allows. Returns 0, or -1 if c is dead. */
static int conn_step(struct conn *c)
{
    for (;;) {
        if (c->dead) return -1;
        if (c->detect) {
            /* a sidecar's connection of unknown protocol: HTTP/1, or else opaque TCP */
            int d = c->cin.len ? mesh_looks_http(dbuf_data(&c->cin), c->cin.len) : -2;
            if (d == -2 && !c->c_eof) return 0;
            if (d == -2 && c->cin.len == 0) {
                conn_close(c);
                return -1;
            }
            c->detect = 0;
            if (d != 1 && conn_mesh_tunnel_start(c) < 0) return -1;
            continue;
        }
        if (c->state == CS_HEAD) {
            if (c->close_after_flush) return 0;
            if (!start_request(c)) {
                if (c->c_eof) c->close_after_flush = 1; /* client gone, no full request left */
                return 0;
            }
            continue;
        }
        if (c->state == CS_TUNNEL) return tunnel_pump(c);
        /* CS_PROXY */
        if (pump_request_body(c) < 0) return -1;
        if (c->state != CS_PROXY) continue;
        if (!c->r->resp_started) {
            int n = parse_response_head(c);
            if (n < 0) {
                if (c->dead) return -1;
                continue;
            }
            if (n == 0) return 0;
            if (c->state == CS_TUNNEL) continue;
        }
        if (pump_response_body(c) < 0) {
            if (c->dead) return -1;
            continue;
        }
        if (c->r->resp_done) {
            finish_request(c);
            continue;
        }
        return 0;
    }
}

/*
 * Runs the state machine, writes what it produced straight away (a side whose write
 * watcher is active is waiting for the kernel and is left to it), and repeats while
 * writing made room for buffered input; then updates the watchers.
 */
void conn_run(struct conn *c)
{
    for (;;) {
        int moved = 0, m;

        if (conn_step(c) < 0) return;
        if (c->r && c->r->u && !ev_is_active(&c->r->u->wio)) moved |= flush_upstream(c);
        if (c->dead) return;
        if (c->cout.len && !ev_is_active(&c->wio)) {
            if ((m = flush_client(c)) < 0) return;
            moved |= m;
        }
        if (c->opaque && moved && c->state == CS_TUNNEL && tunnel_pump(c) < 0) return;
        if (!moved || !(c->cin.len || (c->r && c->r->uin.len))) break;
    }
    conn_trim(c);
    conn_update(c);
}

/* ---- callbacks ---- */

/* Reads what the client sent into cin. Returns 1 if there is news (bytes or EOF), 0 if
 * nothing was there, -1 if the connection was closed. */
static int client_read(struct conn *c)
{
    ssize_t n;

    if (dbuf_reserve(&c->cin, CONN_READ_MIN) < 0) {
        conn_close(c);
        return -1;
    }
    n = transport_recv(&c->tp, dbuf_tail(&c->cin), dbuf_room(&c->cin));
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        conn_close(c);
        return -1;
    }
    if (n == 0) {
        c->c_eof = 1;
    } else {
        c->cin.len += (uint32_t)n;
        /* body or tunnel bytes are progress; pipelined bytes must not hold off a timeout */
        if (c->state == CS_TUNNEL || (c->state == CS_PROXY && !c->r->req_done)) arm_progress(c);
    }
    return 1;
}

/* Lingering close: drops what the client still sends; closes on its EOF or an error. */
static void linger_read(struct conn *c)
{
    static __thread char sink[DBUF_BLOCK];
    ssize_t n;
    int i;

    for (i = 0; i < 4; i++) {
        n = transport_sock_recv(c->tp.fd, sink, sizeof(sink)); /* raw: only dropped */
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        break;
    }
    if (i < 4) conn_close(c);
}

/*
 * Reads what a new connection already sent (deferred accept; after a TLS handshake, what
 * came with the client's Finished) and runs it, or waits for the first bytes.
 */
void conn_first_read(struct conn *c)
{
    switch (client_read(c)) {
    case 1:
        conn_run(c);
        break;
    case 0:
        conn_trim(c);
        conn_update(c); /* the read watcher on, nothing to write */
        break;
    default:
        break;
    }
}

/*
 * Moves a TLS handshake on. While it runs only the client socket is watched, in the
 * direction the session needs; c->timer (the header timeout) bounds it and closes silently.
 * Once done, the idle timer takes over and whatever the client already sent is read.
 */
void conn_handshake(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int rc = c->tp.ops->handshake(&c->tp);

    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (rc == 0) {
        io_want(loop, &c->rio, !(c->tp.want & TRANSPORT_RECV_WANTS_WRITE));
        io_want(loop, &c->wio, c->tp.want & TRANSPORT_RECV_WANTS_WRITE);
        return;
    }
    c->handshaking = 0;
    io_want(loop, &c->wio, 0);
    if (c->mesh) {
        conn_mesh_handshake_done(c);
        return;
    }
    c->client_hdrs = tls_client_headers(&c->tp);
    conn_arm_timer(c, c->w->cfg.client_idle_timeout);
    conn_first_read(c);
}

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(container_of(io, struct conn, rio));

    (void)loop;
    (void)revents;
    if (c->handshaking) {
        conn_handshake(c);
        return;
    }
    if (c->mesh_peek) {
        conn_mesh_inbound_start(c, 0);
        return;
    }
    if (c->lingering) {
        linger_read(c);
        return;
    }
    if (c->tp.want & TRANSPORT_SEND_WANTS_READ) {
        /* the session needs input before the pending write can go on: retry that write */
        c->tp.want &= (uint8_t)~TRANSPORT_SEND_WANTS_READ;
        conn_run(c);
        return;
    }
    /* news, or a session that now waits for writability: recompute the watchers */
    if (client_read(c) > 0 || c->tp.want) conn_run(c);
}

static void client_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(container_of(io, struct conn, wio));

    (void)loop;
    (void)revents;
    ev_io_stop(c->w->loop, &c->wio); /* conn_run writes; conn_update restarts it if needed */
    if (c->handshaking) {
        conn_handshake(c);
        return;
    }
    if (c->tp.want & TRANSPORT_RECV_WANTS_WRITE) {
        /* a read stopped until the session could write: repeat it now */
        c->tp.want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
        if (client_read(c) < 0) return;
    }
    conn_run(c);
}

static void client_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = conn_check(container_of(t, struct conn, timer));

    (void)loop;
    (void)revents;
    if (c->lingering || c->handshaking) {
        conn_close(c); /* a handshake over its time: closed silently */
        return;
    }
    if (c->feed_park) {
        conn_feed_resume(c, 1); /* no answer for its destination: what is known stands */
        return;
    }
    if (c->mesh_peek) {
        conn_mesh_inbound_start(c, 1); /* a silent client: plaintext server-first, or nothing */
        return;
    }
    if (c->detect) {
        /* no bytes to tell: a server-first protocol (SMTP, MySQL) is opaque */
        c->detect = 0;
        if (conn_mesh_tunnel_start(c) == 0) conn_run(c);
        return;
    }
    if (c->state != CS_HEAD) return; /* a request is being answered: its own timers apply */
    if (c->state == CS_HEAD && c->cin.len > 0 && c->cout.len == 0 && !c->close_after_flush) {
        /*
         * a started head that never completed: say so, then close - lingering, since the
         * client is still sending its head and a plain close would answer those bytes
         * with a reset that can destroy the 408 before it is read (RFC 9112 9.6)
         */
        dbuf_consume(&c->cin, c->cin.len);
        c->linger = 1;
        conn_local_response(c, 408, "request timeout\n", 1);
        conn_run(c);
        return;
    }
    conn_close(c);
}

static void upstream_read(struct conn *c);

static void upstream_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(io->data);
    struct conn_req *r = c->r;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);

    (void)loop;
    (void)revents;
    if (r->u_connecting) {
        if (getsockopt(r->u->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        if (soerr) {
            metrics_upstream_connect_error();
            upstream_failed(c, 502, strerror(soerr));
            conn_run(c);
            return;
        }
        r->u_connecting = 0;
        metrics_upstream_connected();
        if (!r->u_handshaking) cb_pending_end(r);
        arm_progress(c);
    }
    if (r->u_handshaking) {
        up_tp(r)->want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
        ev_io_stop(c->w->loop, &r->u->wio);
        if (upstream_handshake(c) != 0)
            conn_run(c);
        else
            conn_update(c);
        return;
    }
    ev_io_stop(c->w->loop, &r->u->wio); /* conn_run writes; conn_update restarts it if needed */
    if (up_tp(r)->want & TRANSPORT_RECV_WANTS_WRITE) {
        up_tp(r)->want &= (uint8_t)~TRANSPORT_RECV_WANTS_WRITE;
        upstream_read(c); /* runs the connection too */
        return;
    }
    conn_run(c);
}

/*
 * Reads what the upstream sent into uin, then runs the connection (also when the session
 * now waits for writability, so the watchers follow).
 */
static void upstream_read(struct conn *c)
{
    struct conn_req *r = c->r;
    ssize_t n;

    if (dbuf_reserve(&r->uin, CONN_READ_MIN) < 0) {
        conn_close(c);
        return;
    }
    n = transport_recv(up_tp(r), dbuf_tail(&r->uin), dbuf_room(&r->uin));
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            if (up_tp(r)->want) conn_run(c);
            return;
        }
        if (c->opaque) {
            conn_reset(c); /* the upstream reset its end of a tunnel: so does the client's */
            return;
        }
        r->u_eof = 1; /* reset: handled like a close, the framing decides if it is an error */
    } else if (n == 0) {
        r->u_eof = 1;
    } else {
        r->uin.len += (uint32_t)n;
        r->u_got_bytes = 1;
        arm_progress(c);
        if (!r->resp_started && r->uin.len > HTTP1_MAX_HEAD + DBUF_BLOCK) {
            upstream_failed(c, 502, "response head too large");
            conn_run(c);
            return;
        }
    }
    conn_run(c);
}

static void upstream_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = conn_check(io->data);
    struct transport *ut = up_tp(c->r);

    (void)loop;
    (void)revents;
    if (c->r->u_handshaking) {
        if (upstream_handshake(c) != 0)
            conn_run(c);
        else
            conn_update(c);
        return;
    }
    if (ut->want & TRANSPORT_SEND_WANTS_READ) {
        ut->want &= (uint8_t)~TRANSPORT_SEND_WANTS_READ;
        conn_run(c); /* retries the write that waited for input */
        return;
    }
    upstream_read(c);
}

static void upstream_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn_req *r = req_check(container_of(t, struct conn_req, utimer));
    struct conn *c = conn_check(r->c);
    double left = r->u_due - ev_now(loop);

    (void)revents;
    if (left > 1e-3) {
        /* progress since it was set: not due yet, sleep for the rest */
        r->u_fire_at = r->u_due;
        t->repeat = left;
        ev_timer_again(loop, t);
        return;
    }
    if (r->u_backoff) {
        /* a route retry waited its backoff: the next attempt */
        r->u_backoff = 0;
        if (attempt_open(c) < 0) attempt_open_failed(c);
        conn_run(c);
        return;
    }
    if (r->u_connecting || r->u_handshaking) {
        /* no timely answer from the upstream, as for a response timeout (nginx does too) */
        metrics_upstream_connect_error();
        upstream_failed(c, 504, r->u_connecting ? "connect timeout" : "TLS handshake timeout");
    } else if (!r->resp_started && r->req_done && c->state == CS_PROXY) {
        metrics_upstream_timeout();
        upstream_failed(c, 504, "response timeout");
    } else {
        /* a body or tunnel made no progress either way: nothing useful can follow */
        log_warn("upstream_error", "peer=%s route=%s reason=\"idle body timeout\"", c->peer,
                 conn_route_name(r));
        conn_close(c);
        return;
    }
    conn_run(c);
}

/*
 * A route deadline passed: the request timeout answers 504 (no retry) or, once the response
 * has started, cuts the connection; the backend timeout fails the attempt (504, or a retry).
 */
static void deadline_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn_req *r = req_check(container_of(t, struct conn_req, dtimer));
    struct conn *c = conn_check(r->c);
    double now = ev_now(loop) + 1e-3;
    int whole = r->req_deadline && now >= r->req_deadline;

    (void)revents;
    if (!whole && !(r->try_deadline && now >= r->try_deadline)) {
        arm_deadline(c); /* woke early (the deadline moved later): sleep on */
        return;
    }
    metrics_route_timeout(!whole);
    if (r->resp_started || c->state != CS_PROXY) {
        log_warn("upstream_error", "peer=%s route=%s reason=\"%s timeout\"", c->peer,
                 conn_route_name(r), whole ? "request" : "backend");
        conn_close(c); /* a response cut short: closing is the only signal */
        return;
    }
    r->try_deadline = 0;
    if (whole) {
        log_warn("upstream_error", "peer=%s route=%s reason=\"request timeout\"", c->peer,
                 conn_route_name(r));
        r->req_deadline = 0;
        conn_local_response(c, 504, NULL, 0);
    } else {
        upstream_failed(c, 504, "backend timeout");
    }
    conn_run(c);
}

/* ---- worker interface ---- */

/*
 * On a TLS listener: the client's first bytes (there already, deferred accept) look like an
 * HTTP/1 request line rather than a TLS record (a handshake record starts with 0x16).
 */
static int plain_http_on_tls(int fd)
{
    char b[8];
    ssize_t n = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);

    if (n < 4) return 0;
    for (ssize_t i = 0; i < n; i++) {
        if (b[i] == ' ') return i > 0;
        if (b[i] < 'A' || b[i] > 'Z') return 0; /* methods are upper-case tokens here */
    }
    return 1;
}

void conn_accept(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen, int tls,
                 int mesh)
{
    struct conn *c;
    int plain_on_tls = 0;

    (void)peerlen;
    if (tls && plain_http_on_tls(fd)) {
        /* answered in plain text, as nginx does ("plain HTTP request sent to HTTPS port") */
        tls = 0;
        plain_on_tls = 1;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->magic = CONN_MAGIC;
    c->w = w;
    c->mesh = (uint8_t)mesh;
    transport_plain_init(&c->tp, fd);
    /* the handshake picks certificates from the snapshot current at accept */
    if (tls && tls_transport_accept(&c->tp, fd, w->current) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->tls = c->handshaking = (uint8_t)(tls != 0);
    c->state = CS_HEAD;
    /* TCP_NODELAY comes from the listening socket (listener.c): accepted sockets inherit it */
    if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->peer, sizeof(c->peer));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &s4->sin_addr, c->peer, sizeof(c->peer));
    }
    ev_io_init(&c->rio, client_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, client_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, client_timer_cb,
                  c->tls ? w->cfg.client_header_timeout : w->cfg.client_idle_timeout, 0.);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    metrics_conn_opened();
    ev_timer_start(w->loop, &c->timer);
    if (c->mesh) {
        conn_mesh_accept(c);
        return;
    }
    if (c->tls) {
        conn_handshake(c); /* the ClientHello is there already (deferred accept) */
        return;
    }
    if (plain_on_tls) {
        c->linger = 1; /* its request is still unread: FIN and drain, not RST */
        conn_local_response(c, 400, "plain HTTP request sent to the HTTPS port\n", 1);
        conn_run(c);
        return;
    }
    /* the listener defers accept until data came (listener.c): read it now */
    conn_first_read(c);
}

void conn_shutdown_all(struct worker *w)
{
    struct conn *c, *next;

    for (c = w->conns; c; c = next) {
        next = c->next;
        if (c->state == CS_HEAD && c->cin.len == 0 && !c->r) {
            c->close_after_flush = 1;
            conn_update(c);
        } else if (c->r) {
            c->r->keep_alive = 0;
        }
    }
}

void conn_close_all(struct worker *w)
{
    while (w->conns)
        conn_close(w->conns);
}
