/*
 * worker: the proxy threads.
 *
 * Does: one thread per worker running its own ev_loop with its own SO_REUSEPORT listener
 * (the kernel spreads connections); receives snapshots from the main thread through a
 * mutex-protected "pending" slot plus ev_async, swaps its current pointer and drops its
 * reference to the old one; owns the worker's idle upstream pool (upstream.c) and, on a swap,
 * closes the idle connections to endpoints the new snapshot no longer has ready; drains
 * gracefully on stop (listener closed at once, idle clients and pooled upstreams closed,
 * busy clients finish with Connection: close, everything closed after the grace period).
 * Does not: parse HTTP (conn.c) or talk to the controller (snapshot.c).
 * Invariants: a worker's loop, connections, upstream pool and current pointer are touched
 * only by its own thread; the main thread touches only mu/pending/stop_req and the async watcher.
 * Requests hold their own snapshot reference, so swapping current never disturbs one in flight.
 */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "containerof.h"
#include "listener.h"
#include "log.h"
#include "mesh.h"
#include "metrics.h"
#include "mirror.h"
#include "regex.h"
#include "upstream.h"

struct worker_pool {
    unsigned n;
    struct worker *w;
};

void worker_config_defaults(struct worker_config *cfg)
{
    cfg->client_header_timeout = 10.;
    cfg->client_idle_timeout = 60.;
    cfg->upstream_connect_timeout = 5.;
    cfg->upstream_response_timeout = 60.;
    cfg->idle_body_timeout = 60.;
    cfg->pool_max_idle = UPSTREAM_POOL_MAX_IDLE;
    cfg->pool_idle_timeout = UPSTREAM_POOL_IDLE_TIMEOUT;
    cfg->client_max_body = UINT64_MAX;
    cfg->https_port = 443;
}

static struct worker *worker_check(struct worker *w)
{
    if (w->magic != WORKER_MAGIC) abort();
    return w;
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker_lsn *l = container_of(io, struct worker_lsn, io);
    struct worker *w = worker_check(l->w);
    struct sockaddr_storage peer;
    socklen_t pl;
    int i, fd;

    (void)loop;
    (void)revents;
    /*
     * A TLS connection's first step is a handshake (~0.5 ms of CPU): a few per wake-up, so
     * the handshakes already under way are not queued behind a whole batch of new ones (the
     * loop comes back for the rest at once, level-triggered).
     */
    for (i = 0; i < (l->tls ? 4 : 64); i++) {
        pl = sizeof(peer);
        fd = accept4(l->fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept_failed", "worker=%u reason=\"%s\"", w->id, strerror(errno));
            return;
        }
        conn_accept(w, fd, (struct sockaddr *)&peer, pl, l->tls, l->mesh);
    }
}

/* Stops and closes the worker's listening sockets (its loop's thread, or before it runs). */
static void close_listeners(struct worker *w)
{
    unsigned i;

    for (i = 0; i < w->n_lsn; i++) {
        struct worker_lsn *l = &w->lsn[i];
        if (w->loop) ev_io_stop(w->loop, &l->io);
        if (l->fd >= 0) close(l->fd);
        l->fd = -1;
    }
}

static void drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = worker_check(container_of(t, struct worker, drain_w));

    (void)revents;
    conn_close_all(w);
    ev_break(loop, EVBREAK_ALL);
}

void worker_conn_gone(struct worker *w)
{
    if (w->stopping && w->n_conns == 0) ev_break(w->loop, EVBREAK_ALL);
}

static int keep_ready(const struct sockaddr *sa, socklen_t salen, uint64_t tag, void *set)
{
    (void)salen;
    if (tag == MESH_DIRECT_TAG) return 1; /* a sidecar's app or passthrough: no endpoint */
    return snapshot_epset_has(set, sa, tag);
}

static void free_epset(void *set)
{
    snapshot_epset_free(set);
}

/*
 * Connection draining on a swap to s: idle pooled connections to endpoints that are no
 * longer ready in s (removed, or serving/terminating) are closed now rather than at their
 * idle timeout, and one in use now (a request of the old snapshot finishing) is closed
 * instead of parked when it is done. No new request picks such an endpoint: s has only ready
 * ones. The set is built once per swap, O(endpoints), and the prune is O(pool entries); the
 * pool keeps the set until the next swap. Out of memory: no filter (the idle timeout still
 * applies).
 */
static void prune_pool(struct worker *w, struct snapshot *s)
{
    struct snapshot_epset *set;
    unsigned n;

    if (!w->pool) return;
    set = snapshot_epset_new(s);
    n = upstream_pool_prune(w->pool, set ? keep_ready : NULL, set, set ? free_epset : NULL);
    if (n) {
        metrics_pool_pruned(n);
        log_debug("upstream_pool_pruned", "worker=%u closed=%u", w->id, n);
    }
}

static void async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = worker_check(container_of(a, struct worker, async_w));
    struct snapshot *s;
    double grace;
    int stop;

    (void)revents;
    pthread_mutex_lock(&w->mu);
    s = w->pending;
    w->pending = NULL;
    stop = w->stop_req;
    grace = w->grace;
    pthread_mutex_unlock(&w->mu);
    if (s) {
        snapshot_unref(w->current);
        w->current = s; /* the reference taken by worker_pool_publish moves here */
        prune_pool(w, s);
        conn_snapshot_swapped(w);
    }
    if (stop && !w->stopping) {
        w->stopping = 1;
        close_listeners(w);
        upstream_pool_free(w->pool); /* idle upstreams now; busy ones are not parked again */
        w->pool = NULL;
        conn_shutdown_all(w);
        if (w->n_conns == 0)
            ev_break(loop, EVBREAK_ALL);
        else {
            ev_timer_set(&w->drain_w, grace, 0.);
            ev_timer_start(loop, &w->drain_w);
        }
    }
}

static void reap_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct worker *w = worker_check(container_of(p, struct worker, reap_w));

    (void)loop;
    (void)revents;
    conn_reap(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = worker_check(arg);

    metrics_worker_init(w->id);
    ev_run(w->loop, 0);
    conn_close_all(w);
    mirror_close_all(w->loop); /* copies still in flight are cut with the worker */
    conn_reap(w);
    upstream_pool_free(w->pool);
    w->pool = NULL;
    conn_thread_end();
    regex_thread_end();
    return NULL;
}

static void worker_cleanup(struct worker *w)
{
    close_listeners(w);
    if (w->loop) {
        ev_async_stop(w->loop, &w->async_w);
        ev_prepare_stop(w->loop, &w->reap_w);
        ev_timer_stop(w->loop, &w->drain_w);
        upstream_pool_free(w->pool); /* only left when the thread never ran */
        w->pool = NULL;
        ev_loop_destroy(w->loop);
        w->loop = NULL;
    }
    snapshot_unref(w->pending);
    snapshot_unref(w->current);
    w->pending = w->current = NULL;
    pthread_mutex_destroy(&w->mu);
}

static int worker_init(struct worker *w, unsigned id, const struct worker_listen *ls, unsigned nls,
                       const struct worker_config *cfg, char *err, size_t errlen)
{
    unsigned i;

    w->magic = WORKER_MAGIC;
    w->id = id;
    w->cfg = *cfg;
    pthread_mutex_init(&w->mu, NULL);
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->loop) {
        snprintf(err, errlen, "ev_loop_new failed");
        return -1;
    }
    w->pool = upstream_pool_new(w->loop, cfg->pool_max_idle, cfg->pool_idle_timeout);
    if (!w->pool) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < nls; i++) {
        struct worker_lsn *l = &w->lsn[i];
        l->w = w;
        l->tls = ls[i].tls;
        l->mesh = ls[i].mesh;
        l->fd = listener_open((const struct sockaddr *)&ls[i].addr, ls[i].addrlen, 1, err, errlen);
        if (l->fd < 0) return -1;
        /*
         * an intercepted connection may be server-first (SMTP, MySQL): never held back
         * waiting for client bytes (listener.c defers accept)
         */
        if (l->mesh) {
            int zero = 0;
            setsockopt(l->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &zero, sizeof(zero));
        }
        w->n_lsn = i + 1;
        ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
        ev_io_start(w->loop, &l->io);
    }
    ev_async_init(&w->async_w, async_cb);
    ev_async_start(w->loop, &w->async_w);
    ev_prepare_init(&w->reap_w, reap_cb);
    ev_prepare_start(w->loop, &w->reap_w);
    ev_timer_init(&w->drain_w, drain_cb, 1., 0.);
    return 0;
}

int worker_pool_start(struct worker_pool **out, unsigned n, const struct sockaddr *sa,
                      socklen_t salen, const struct worker_config *cfg, char *err, size_t errlen)
{
    struct worker_listen l;

    memset(&l, 0, sizeof(l));
    memcpy(&l.addr, sa, salen);
    l.addrlen = salen;
    return worker_pool_start_listeners(out, n, &l, 1, cfg, err, errlen);
}

int worker_pool_start_listeners(struct worker_pool **out, unsigned n, struct worker_listen *ls,
                                unsigned nls, const struct worker_config *cfg, char *err,
                                size_t errlen)
{
    struct worker_config defaults;
    struct worker_pool *p;
    unsigned i, j, inited = 0, started = 0;
    char a[80];

    if (nls == 0 || nls > WORKER_MAX_LISTENERS) {
        snprintf(err, errlen, "1 to %d listening addresses", WORKER_MAX_LISTENERS);
        return -1;
    }
    if (!cfg) {
        worker_config_defaults(&defaults);
        cfg = &defaults;
    }
    p = calloc(1, sizeof(*p));
    if (!p) goto fail_oom;
    p->n = n;
    p->w = calloc(n, sizeof(*p->w));
    if (!p->w) goto free_pool;
    for (i = 0; i < n; i++, inited++) {
        if (worker_init(&p->w[i], i, ls, nls, cfg, err, errlen) < 0) {
            inited++;
            goto cleanup_workers;
        }
        for (j = 0; i == 0 && j < nls; j++) {
            /* port 0: every later socket must join the port the kernel picked */
            struct sockaddr_storage bound;
            socklen_t bl = sizeof(bound);
            if (getsockname(p->w[0].lsn[j].fd, (struct sockaddr *)&bound, &bl) == 0) {
                ls[j].addr = bound;
                ls[j].addrlen = bl;
            }
        }
    }
    for (i = 0; i < n; i++, started++) {
        if (pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]) != 0) {
            snprintf(err, errlen, "pthread_create failed");
            goto stop_threads;
        }
        p->w[i].started = 1;
    }
    for (j = 0; j < nls; j++)
        log_info("listening", "addr=%s workers=%u%s%s",
                 listener_format((struct sockaddr *)&ls[j].addr, a, sizeof(a)), n,
                 ls[j].tls ? " tls=1" : "",
                 ls[j].mesh == 1   ? " mesh=inbound"
                 : ls[j].mesh == 2 ? " mesh=outbound"
                                   : "");
    *out = p;
    return 0;

stop_threads:
    for (i = 0; i < started; i++) {
        pthread_mutex_lock(&p->w[i].mu);
        p->w[i].stop_req = 1;
        pthread_mutex_unlock(&p->w[i].mu);
        ev_async_send(p->w[i].loop, &p->w[i].async_w);
        pthread_join(p->w[i].thread, NULL);
    }
cleanup_workers:
    for (i = 0; i < inited; i++)
        worker_cleanup(&p->w[i]);
    free(p->w);
free_pool:
    free(p);
    return -1;
fail_oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void worker_pool_publish(struct worker_pool *p, struct snapshot *s)
{
    unsigned i;

    for (i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        struct snapshot *old;

        pthread_mutex_lock(&w->mu);
        old = w->pending;
        w->pending = snapshot_ref(s);
        pthread_mutex_unlock(&w->mu);
        snapshot_unref(old); /* superseded before the worker picked it up */
        ev_async_send(w->loop, &w->async_w);
    }
}

void worker_pool_stop(struct worker_pool *p, double grace)
{
    unsigned i;

    if (!p) return;
    for (i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        pthread_mutex_lock(&w->mu);
        w->stop_req = 1;
        w->grace = grace;
        pthread_mutex_unlock(&w->mu);
        ev_async_send(w->loop, &w->async_w);
    }
    for (i = 0; i < p->n; i++) {
        if (p->w[i].started) pthread_join(p->w[i].thread, NULL);
        worker_cleanup(&p->w[i]);
    }
    free(p->w);
    free(p);
}
