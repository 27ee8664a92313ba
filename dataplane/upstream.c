/*
 * upstream: upstream connections and the per-worker pool of idle keep-alive ones.
 *
 * Does: start non-blocking connects; give each connection a struct upstream_conn whose read
 * and write watchers stay with it for its whole life, so moving it between the pool and a
 * request (and back) only swaps callback and data pointers - the read watcher stays active
 * and the kernel's epoll set is not touched per request; its transport (plain, or the TLS
 * session its owner started) travels with it too. Park connections that ended a response
 * cleanly in a per-worker pool keyed by endpoint address (family, address, port) and
 * transport tag (a TLS connection is only reused for the same server name and CA),
 * hand the most recently parked one (LIFO: the warmest, least likely to have been closed by
 * the server) back out, and drop an idle connection when it becomes readable (the server
 * closed it or sent bytes nobody asked for), when it has been parked for idle_timeout (one
 * timer per pool, for the oldest), or beyond max_idle per endpoint.
 * Does not: know about HTTP or snapshots. The key is the address, so a snapshot swap that
 * keeps an endpoint keeps its idle connections; on one that removes it (or makes it not
 * ready) the worker prunes them (upstream_pool_prune with the snapshot's endpoint set), and
 * the same filter stops a connection that was in use across the swap from being parked.
 * Invariants:
 *   - a pool belongs to one worker thread and its loop: no locks;
 *   - a connection has exactly one owner: the pool while parked (ep != NULL, idle
 *     callbacks, in the pool's parking order, write watcher stopped) or one request; nothing else
 * points at a parked entry, so it is freed at once, even from its own callback;
 *   - an endpoint entry exists only while it has idle connections.
 */
#include "containerof.h"
#include "netaddr.h"
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UPSTREAM_CONN_MAGIC 0x55434f4eu /* "UCON" */

struct upstream_ep {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t tag;               /* transport: 0 plain, else the TLS set-up (tls_upstream_tag) */
    struct upstream_conn *idle; /* most recently parked first */
    unsigned n_idle;
    struct upstream_ep *prev, *next;
};

struct upstream_pool {
    struct ev_loop *loop;
    unsigned max_idle;
    double idle_timeout;
    unsigned n_idle;
    struct upstream_ep *eps;
    upstream_keep_fn keep; /* filter from the last prune (NULL: keep everything) */
    void *keep_arg;
    void (*keep_free)(void *arg);
    unsigned epoch; /* bumped by each prune, never 0 */
    /*
     * Every parked connection in parking order (newest first), across endpoints, and one
     * timer for the oldest: parking and unparking touch no timer (libev's heap) unless the
     * pool was empty, and the timer, when it fires, drops what has expired and re-arms for
     * the new oldest.
     */
    struct upstream_conn *lru_new, *lru_old;
    ev_timer timer;
};

static struct upstream_conn *uconn_check(struct upstream_conn *u)
{
    if (u->magic != UPSTREAM_CONN_MAGIC) abort();
    return u;
}

static struct upstream_ep *ep_find(struct upstream_pool *p, const struct sockaddr *sa, uint64_t tag)
{
    struct upstream_ep *e;

    for (e = p->eps; e; e = e->next)
        if (e->tag == tag && netaddr_equal(sa, (const struct sockaddr *)&e->addr)) return e;
    return NULL;
}

static void ep_free_if_empty(struct upstream_pool *p, struct upstream_ep *e)
{
    if (e->n_idle) return;
    if (e->prev)
        e->prev->next = e->next;
    else
        p->eps = e->next;
    if (e->next) e->next->prev = e->prev;
    free(e);
}

/* Unlinks parked u from its endpoint and the pool's parking order; the read watcher runs on. */
static void idle_unlink(struct upstream_conn *u)
{
    struct upstream_pool *p = u->pool;
    struct upstream_ep *e = u->ep;

    if (u->lru_prev)
        u->lru_prev->lru_next = u->lru_next;
    else
        p->lru_new = u->lru_next;
    if (u->lru_next)
        u->lru_next->lru_prev = u->lru_prev;
    else
        p->lru_old = u->lru_prev;
    u->lru_prev = u->lru_next = NULL;
    if (u->prev)
        u->prev->next = u->next;
    else
        e->idle = u->next;
    if (u->next) u->next->prev = u->prev;
    u->prev = u->next = NULL;
    u->ep = NULL;
    e->n_idle--;
    p->n_idle--;
    ep_free_if_empty(p, e);
}

static void idle_drop(struct upstream_conn *u)
{
    idle_unlink(u);
    upstream_conn_close(u);
}

/* Readable while idle: EOF, reset or unsolicited bytes - the connection is unusable. */
static void idle_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    idle_drop(uconn_check(io->data));
}

/* The oldest parked connection may be due: drops all that are, sleeps until the next one. */
static void idle_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct upstream_pool *p = container_of(t, struct upstream_pool, timer);
    double now = ev_now(loop);

    (void)revents;
    while (p->lru_old && p->lru_old->parked_at + p->idle_timeout <= now + 1e-3)
        idle_drop(uconn_check(p->lru_old));
    if (p->lru_old) {
        ev_timer_set(t, p->lru_old->parked_at + p->idle_timeout - now, 0.);
        ev_timer_start(loop, t);
    }
}

struct upstream_pool *upstream_pool_new(struct ev_loop *loop, unsigned max_idle,
                                        double idle_timeout)
{
    struct upstream_pool *p = calloc(1, sizeof(*p));

    if (!p) return NULL;
    p->loop = loop;
    p->max_idle = max_idle;
    p->idle_timeout = idle_timeout;
    p->epoch = 1;
    ev_timer_init(&p->timer, idle_timer_cb, idle_timeout, 0.);
    return p;
}

void upstream_pool_free(struct upstream_pool *p)
{
    if (!p) return;
    while (p->eps)
        idle_drop(p->eps->idle); /* frees the endpoint with its last connection */
    ev_timer_stop(p->loop, &p->timer);
    if (p->keep_free) p->keep_free(p->keep_arg);
    free(p);
}

struct upstream_conn *upstream_pool_take(struct upstream_pool *p, const struct sockaddr *sa,
                                         socklen_t salen, uint64_t tag)
{
    struct upstream_ep *e;
    struct upstream_conn *u;

    (void)salen;
    if (!p || !(e = ep_find(p, sa, tag))) return NULL;
    u = uconn_check(e->idle);
    idle_unlink(u);
    u->epoch = p->epoch; /* parked, so the current filter keeps it */
    return u;
}

void upstream_pool_put(struct upstream_pool *p, const struct sockaddr *sa, socklen_t salen,
                       struct upstream_conn *u)
{
    struct upstream_ep *e;

    uconn_check(u);
    if (u->cs) {
        /* idle, it no longer counts against its cluster's max connections */
        clusterstate_release(u->cs, CLUSTERSTATE_CONNECTIONS);
        u->cs = NULL;
    }
    if (!p || p->max_idle == 0 || salen > sizeof(e->addr)) goto close_conn;
    if (p->keep && u->epoch != p->epoch) {
        /* fresh, or in use across a prune: its endpoint may have left the snapshot */
        if (!p->keep(sa, salen, u->tag, p->keep_arg)) goto close_conn;
        u->epoch = p->epoch;
    }
    e = ep_find(p, sa, u->tag);
    if (e && e->n_idle >= p->max_idle) goto close_conn;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e) goto close_conn;
        memcpy(&e->addr, sa, salen);
        e->addrlen = salen;
        e->tag = u->tag;
        e->next = p->eps;
        if (p->eps) p->eps->prev = e;
        p->eps = e;
    }
    u->pool = p;
    u->ep = e;
    u->prev = NULL;
    u->next = e->idle;
    if (e->idle) e->idle->prev = u;
    e->idle = u;
    e->n_idle++;
    p->n_idle++;
    ev_io_stop(u->loop, &u->wio);
    upstream_conn_attach(u, idle_read_cb, idle_read_cb, u);
    if (!ev_is_active(&u->rio)) ev_io_start(u->loop, &u->rio);
    u->parked_at = ev_now(p->loop);
    u->lru_prev = NULL;
    u->lru_next = p->lru_new;
    if (p->lru_new)
        p->lru_new->lru_prev = u;
    else
        p->lru_old = u;
    p->lru_new = u;
    /* running: it fires for an older one, then re-arms for whatever is oldest by then */
    if (!ev_is_active(&p->timer)) {
        ev_timer_set(&p->timer, p->idle_timeout, 0.);
        ev_timer_start(p->loop, &p->timer);
    }
    return;

close_conn:
    upstream_conn_close(u);
}

unsigned upstream_pool_prune(struct upstream_pool *p, upstream_keep_fn keep, void *arg,
                             void (*free_arg)(void *arg))
{
    struct upstream_ep *e, *next;
    unsigned closed = 0, n;

    if (!p) {
        if (free_arg) free_arg(arg);
        return 0;
    }
    if (p->keep_free) p->keep_free(p->keep_arg);
    p->keep = keep;
    p->keep_arg = arg;
    p->keep_free = free_arg;
    if (++p->epoch == 0) p->epoch = 1;
    if (!keep) return 0;
    for (e = p->eps; e; e = next) {
        next = e->next; /* e is freed with its last connection */
        if (keep((const struct sockaddr *)&e->addr, e->addrlen, e->tag, arg)) continue;
        for (n = e->n_idle; n; n--, closed++)
            idle_drop(e->idle);
    }
    return closed;
}

unsigned upstream_pool_idle(const struct upstream_pool *p)
{
    return p ? p->n_idle : 0;
}

struct upstream_conn *upstream_conn_open(struct ev_loop *loop, const struct sockaddr *sa,
                                         socklen_t salen, int *in_progress)
{
    struct upstream_conn *u;
    int one = 1, fd, saved;

    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, salen) == 0)
        *in_progress = 0;
    else if (errno == EINPROGRESS)
        *in_progress = 1;
    else
        goto close_fd;
    u = calloc(1, sizeof(*u));
    if (!u) goto close_fd;
    u->magic = UPSTREAM_CONN_MAGIC;
    u->fd = fd;
    u->loop = loop;
    transport_plain_init(&u->tp, fd);
    ev_io_init(&u->rio, idle_read_cb, fd, EV_READ);
    ev_io_init(&u->wio, idle_read_cb, fd, EV_WRITE);
    return u;

close_fd:
    saved = errno;
    close(fd);
    errno = saved;
    return NULL;
}

void upstream_conn_attach(struct upstream_conn *u, upstream_io_cb rcb, upstream_io_cb wcb,
                          void *data)
{
    ev_set_cb(&u->rio, rcb);
    ev_set_cb(&u->wio, wcb);
    u->rio.data = u->wio.data = data;
}

void upstream_conn_close(struct upstream_conn *u)
{
    uconn_check(u);
    ev_io_stop(u->loop, &u->rio);
    ev_io_stop(u->loop, &u->wio);
    u->tp.ops->close(&u->tp); /* closes the socket too */
    if (u->cs) clusterstate_release(u->cs, CLUSTERSTATE_CONNECTIONS);
    u->magic = 0;
    free(u);
}
