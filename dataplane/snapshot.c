/*
 * snapshot: runtime snapshots and the controller client.
 *
 * Does: turn a decoded snapwire snapshot into everything the hot path needs (router index,
 * sockaddrs for ready endpoints, balancer state, TLS certificate contexts and the SNI
 * table) before anything is swapped; answer the
 * per-route questions the hot path asks of it (effective body limit); keep the last
 * good snapshot; speak the socket protocol of docs/contract.md (frames in, one ACK/NACK line
 * out per frame) with a non-blocking Unix socket on the main loop, reconnecting with
 * exponential backoff (100 ms doubling to 5 s).
 * Does not: hand snapshots to workers (the apply callback does), or touch raw snapshot
 * bytes beyond snapwire_frame_size / snapwire_decode.
 * Invariants: a struct snapshot is immutable once built except for its refcount and its
 * balancer counters (atomics), so workers read it without locks; a failed build or decode
 * never disturbs the current snapshot (nginx ngx_init_cycle); the stream is resynchronised
 * only by reconnecting (a bad header NACKs generation 0 and drops the connection).
 */
#include "snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clusterstate.h"
#include "containerof.h"
#include "healthcheck.h"
#include "log.h"
#include "mesh.h"
#include "metrics.h"
#include "outlier.h"
#include "retrybudget.h"
#include "tls.h"
#include "tls_upstream.h"
#include "worker.h"

#define SNAPCLIENT_MAGIC 0x53434c49u /* "SCLI" */
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
#define READ_CHUNK (64 * 1024)

/* ---- runtime snapshot ---- */

static void snapshot_free(struct snapshot *s)
{
    uint32_t i, j;

    if (s->clusters) {
        for (i = 0; i < s->sw.n_clusters; i++) {
            struct snapshot_cluster *c = &s->clusters[i];
            if (c->bal && c->bal_state) c->bal->destroy(c->bal_state);
            outlier_destroy(c->outlier);
            clusterstate_unref(c->cs);
            for (j = 0; c->hc && j < c->n_ready; j++)
                healthcheck_release(c->hc[j]);
            free(c->hc);
            free(c->ready);
        }
        free(s->clusters);
    }
    router_free(s->router);
    free(s->budgets);
    tls_upstream_free(s->tls_up);
    tls_snap_free(s->tls);
    mesh_index_free(s->mesh);
    snapwire_free(&s->sw);
    s->magic = 0;
    free(s);
}

static int resolve_endpoint(const struct snapwire_endpoint *e, struct snapshot_endpoint *out)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;

    char key[64];
    int kl;

    memset(out, 0, sizeof(*out));
    out->address = e->address;
    out->port = e->port;
    out->weight = e->weight ? e->weight : 1;
    /* the cookie affinity value: the same for an endpoint in every snapshot */
    kl = snprintf(key, sizeof(key), "%s:%u", e->address, (unsigned)e->port);
    out->affinity_id = balancer_hash(key,
                                     kl < 0                   ? 0
                                     : kl >= (int)sizeof(key) ? sizeof(key) - 1
                                                              : (size_t)kl,
                                     0x5354524149544146ull) |
                       1;
    if (inet_pton(AF_INET, e->address, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(e->port);
        out->addrlen = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, e->address, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(e->port);
        out->addrlen = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/* The cluster of prev named name with the same balancer, or NULL (balancer carry-over). */
static const struct snapshot_cluster *
snapshot_prev_cluster(const struct snapshot *prev, const char *name, const struct balancer_ops *bal)
{
    uint32_t i;

    for (i = 0; prev && prev->clusters && i < prev->sw.n_clusters; i++)
        if (prev->clusters[i].bal == bal && prev->clusters[i].bal_state &&
            strcmp(prev->sw.clusters[i].name, name) == 0)
            return &prev->clusters[i];
    return NULL;
}

/* The cluster of prev named name, or NULL (outlier detection and clusterstate carry-over). */
static const struct snapshot_cluster *snapshot_prev_named(const struct snapshot *prev,
                                                          const char *name)
{
    uint32_t i;

    for (i = 0; prev && prev->clusters && i < prev->sw.n_clusters; i++)
        if (prev->clusters[i].outlier && strcmp(prev->sw.clusters[i].name, name) == 0)
            return &prev->clusters[i];
    return NULL;
}

/* The cluster's outlier detection settings (snapwire v6 od_*; od_consecutive 0 is off). */
static struct outlier_config outlier_config_of(const struct snapwire_cluster *sw)
{
    struct outlier_config cfg = {
        .consecutive = sw->od_consecutive,
        .base_ms = sw->od_base_ms,
        .max_ms = sw->od_max_ms,
        .max_percent = sw->od_max_percent,
    };

    return cfg;
}

/*
 * Active health check targets for c's ready endpoints (keys[i] their "address:port"), when
 * the cluster asks for checks; a TLS cluster (index ci of tls_up) is probed over TLS with
 * its traffic's settings. 0, or -1 when out of memory; c->hc stays NULL when there is
 * nothing to check or no checker runs.
 */
static int hc_create(struct snapshot_cluster *c, const char *keys,
                     const struct tls_upstream *tls_up, uint32_t ci)
{
    const struct snapwire_cluster *sw = c->sw;
    struct hc_config cfg = {
        .path = sw->hc_path,
        .host = sw->hc_host ? sw->hc_host : "",
        .interval_ms = sw->hc_interval_ms,
        .timeout_ms = sw->hc_timeout_ms,
        .status_lo = sw->hc_status_lo,
        .status_hi = sw->hc_status_hi,
        .healthy = sw->hc_healthy,
        .unhealthy = sw->hc_unhealthy,
        .tls = sw->tls ? tls_up : NULL,
        .tls_cluster = ci,
    };
    uint32_t i;

    if (!sw->hc_path || !sw->hc_path[0] || !c->n_ready) return 0;
    if (!(c->hc = calloc(c->n_ready, sizeof(*c->hc)))) return -1;
    for (i = 0; i < c->n_ready; i++) {
        c->hc[i] = healthcheck_acquire(sw->name, keys + (size_t)i * 64,
                                       (const struct sockaddr *)&c->ready[i].addr,
                                       c->ready[i].addrlen, &cfg);
        if (!c->hc[i]) break;
    }
    if (i == c->n_ready) return 0;
    /* no checker (healthcheck_start not called: unit tests, tools) or no memory: no checks */
    while (i > 0)
        healthcheck_release(c->hc[--i]);
    free(c->hc);
    c->hc = NULL;
    return 0;
}

/*
 * Balancer state, outlier detection state and health check targets for c's ready endpoints,
 * identified by "address:port" and weighted by their snapwire weight, carrying over from
 * prev's (balancer: same lb; outlier, clusterstate: same name) when there is one; c is
 * cluster ci of the snapshot whose upstream TLS contexts are tls_up. -1 when out of memory.
 */
static int bal_create(struct snapshot_cluster *c, const struct snapshot_cluster *prev,
                      const struct snapshot_cluster *prev_named, const struct tls_upstream *tls_up,
                      uint32_t ci)
{
    struct balancer_endpoint *ep = calloc(c->n_ready ? c->n_ready : 1, sizeof(*ep));
    char *keys = malloc((size_t)(c->n_ready ? c->n_ready : 1) * 64);
    struct balancer_endpoints eps = {.n = c->n_ready, .ep = ep};
    uint32_t i;
    int ok = 0;

    if (ep && keys) {
        for (i = 0; i < c->n_ready; i++) {
            int n = snprintf(keys + (size_t)i * 64, 64, "%s:%u", c->ready[i].address,
                             (unsigned)c->ready[i].port);
            ep[i].key = keys + (size_t)i * 64;
            ep[i].key_len = n < 0 ? 0 : n >= 64 ? 63 : (size_t)n;
            ep[i].weight = c->ready[i].weight;
        }
        struct outlier_config ocfg = outlier_config_of(c->sw);
        c->bal_state = c->bal->create(&eps, prev ? prev->bal_state : NULL);
        c->outlier =
            outlier_create(c->sw->name, &eps, prev_named ? prev_named->outlier : NULL, &ocfg);
        c->cs = clusterstate_carry(c->sw->name, prev_named ? prev_named->cs : NULL);
        ok = c->bal_state && c->outlier && c->cs && hc_create(c, keys, tls_up, ci) == 0;
    }
    free(ep);
    free(keys);
    return ok ? 0 : -1;
}

struct snapshot *snapshot_build(struct snapwire_snapshot *sw, char *err, size_t errlen)
{
    return snapshot_build_prev(sw, NULL, err, errlen);
}

struct snapshot *snapshot_build_prev(struct snapwire_snapshot *sw, const struct snapshot *prev,
                                     char *err, size_t errlen)
{
    struct snapshot *s;
    uint32_t i, j;

    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        snapwire_free(sw);
        return NULL;
    }
    s->magic = SNAPSHOT_MAGIC;
    atomic_init(&s->refs, 1);
    s->sw = *sw; /* ownership moves here; snapshot_free releases it on any failure */
    memset(sw, 0, sizeof(*sw));
    s->router = router_build(&s->sw, err, errlen);
    if (!s->router) goto free_snapshot;
    /* before the clusters: their health checks take TLS settings from it */
    if (tls_upstream_build(&s->sw, &s->tls_up, err, errlen) < 0) goto free_snapshot;
    if (mesh_index_build(&s->sw, &s->mesh, err, errlen) < 0) goto free_snapshot;
    s->clusters = calloc(s->sw.n_clusters ? s->sw.n_clusters : 1, sizeof(*s->clusters));
    if (!s->clusters) goto fail_oom;
    for (i = 0; i < s->sw.n_clusters; i++) {
        struct snapshot_cluster *c = &s->clusters[i];
        const struct snapwire_cluster *swc = &s->sw.clusters[i];

        c->sw = swc;
        c->bal = balancer_find(swc->lb);
        if (!c->bal) {
            snprintf(err, errlen, "cluster %s: unknown lb %u", swc->name, swc->lb);
            goto free_snapshot;
        }
        c->ready = calloc(swc->endpoint_count ? swc->endpoint_count : 1, sizeof(*c->ready));
        if (!c->ready) goto fail_oom;
        for (j = 0; j < swc->endpoint_count; j++) {
            const struct snapwire_endpoint *e = &s->sw.endpoints[swc->first_endpoint + j];
            if (!e->ready) continue;
            if (resolve_endpoint(e, &c->ready[c->n_ready]) < 0) {
                snprintf(err, errlen, "cluster %s: bad endpoint address %s", swc->name, e->address);
                goto free_snapshot;
            }
            c->n_ready++;
        }
        if (bal_create(c, snapshot_prev_cluster(prev, swc->name, c->bal),
                       snapshot_prev_named(prev, swc->name), s->tls_up, i) < 0)
            goto fail_oom;
    }
    for (i = 0; i < s->sw.n_routes && !s->budgets; i++)
        if (s->sw.routes[i].retry_attempts &&
            !(s->budgets = calloc(s->sw.n_routes, sizeof(*s->budgets))))
            goto fail_oom;
    /* certificates load here, off the hot path: a PEM that does not load refuses the lot */
    if (tls_snap_build(&s->sw, &s->tls, err, errlen) < 0) goto free_snapshot;
    return s;

fail_oom:
    snprintf(err, errlen, "out of memory");
free_snapshot:
    snapshot_free(s);
    return NULL;
}

struct retry_budget *snapshot_route_budget(struct snapshot *s, const struct snapwire_route *rt)
{
    if (!s->budgets || !rt->retry_attempts || rt < s->sw.routes ||
        rt >= s->sw.routes + s->sw.n_routes)
        return NULL;
    return &s->budgets[rt - s->sw.routes];
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    if (s) {
        if (s->magic != SNAPSHOT_MAGIC) abort();
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    }
    return s;
}

void snapshot_unref(struct snapshot *s)
{
    if (!s) return;
    if (s->magic != SNAPSHOT_MAGIC) abort();
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) snapshot_free(s);
}

/* Slow start share of endpoint i (snapshot.h): 1 when it takes this pick, else 0. */
static int slow_start_takes(const struct snapshot_cluster *c, uint32_t i)
{
    uint64_t added = outlier_added_ms(c->outlier, i), age, now;
    uint32_t window = c->sw->slow_start_ms;

    if (!added) return 1;
    now = outlier_now_ms();
    age = now > added ? now - added : 0;
    if (age >= window) return 1;
    if (age * 10 < window) age = window / 10; /* at least 10 % of its share */
    return (balancer_rand64() >> 32) * window < age << 32;
}

/*
 * Whether endpoint i of c may take a request: not ejected, healthy (unless health is
 * ignored: fail open), and, with slow, past its slow start or chosen for its share.
 */
static int ep_usable(const struct snapshot_cluster *c, uint32_t i, int health, int slow)
{
    if (outlier_ejected(c->outlier, i, 0)) return 0;
    if (health && c->hc && !healthcheck_healthy(c->hc[i])) return 0;
    return !slow || !c->sw->slow_start_ms || slow_start_takes(c, i);
}

/* The balancer's pick for c, skipping endpoints that are not usable (snapshot.h). */
static uint32_t pick_live(struct snapshot_cluster *c, const struct balancer_input *in)
{
    uint32_t i = c->bal->pick(c->bal_state, in), first = i, t, n = c->n_ready;

    for (t = 1; !ep_usable(c, i, 1, 1); t++) {
        if (t < SNAPSHOT_PICK_TRIES) {
            i = c->bal->pick(c->bal_state, in);
            continue;
        }
        for (t = 0; t < n; t++)
            if (ep_usable(c, (first + t) % n, 1, 0)) return (first + t) % n;
        if (!c->hc) return first;
        /* every endpoint fails its health checks (or is ejected): fail open */
        metrics_health_fail_open();
        for (t = 0; t < n; t++)
            if (ep_usable(c, (first + t) % n, 0, 0)) return (first + t) % n;
        return first;
    }
    return i;
}

const struct snapshot_endpoint *snapshot_pick_ex(struct snapshot *s, uint32_t idx,
                                                 const struct balancer_input *in)
{
    struct snapshot_cluster *c;

    if (idx >= s->sw.n_clusters) return NULL;
    c = &s->clusters[idx];
    if (c->n_ready == 0) return NULL;
    return &c->ready[pick_live(c, in)];
}

const struct snapshot_endpoint *snapshot_pick(struct snapshot *s, uint32_t idx)
{
    return snapshot_pick_ex(s, idx, NULL);
}

/* c's index of ep, or UINT32_MAX when ep is not one of c's ready endpoints. */
static uint32_t bal_ep_index(const struct snapshot *s, uint32_t idx,
                             const struct snapshot_endpoint *ep)
{
    const struct snapshot_cluster *c;

    if (!ep || idx >= s->sw.n_clusters) return UINT32_MAX;
    c = &s->clusters[idx];
    if (ep < c->ready || ep >= c->ready + c->n_ready) return UINT32_MAX;
    return (uint32_t)(ep - c->ready);
}

void snapshot_balancer_start(struct snapshot *s, uint32_t idx, const struct snapshot_endpoint *ep)
{
    uint32_t i = bal_ep_index(s, idx, ep);

    if (i != UINT32_MAX) balancer_start(s->clusters[idx].bal, s->clusters[idx].bal_state, i);
}

void snapshot_balancer_done(struct snapshot *s, uint32_t idx, const struct snapshot_endpoint *ep,
                            uint64_t latency_ns, int ok)
{
    uint32_t i = bal_ep_index(s, idx, ep);

    if (i == UINT32_MAX) return;
    balancer_done(s->clusters[idx].bal, s->clusters[idx].bal_state, i, latency_ns, ok);
    outlier_report(s->clusters[idx].outlier, i, ok, 0);
    outlier_observe(s->clusters[idx].outlier, i, ok, latency_ns);
}

uint64_t snapshot_route_max_body(const struct snapshot *s, const struct snapwire_route *rt,
                                 const struct worker_config *cfg)
{
    uint64_t v = rt ? rt->max_body : s->sw.meta.default_max_body;

    if (v != SNAPWIRE_BODY_DEFAULT) return v;
    return cfg ? cfg->client_max_body : SNAPWIRE_BODY_UNLIMITED;
}

/* ---- controller client ---- */

struct snapclient {
    uint32_t magic;
    struct ev_loop *loop;
    struct sockaddr_un sun;
    snapclient_apply_fn apply;
    void *arg;
    int fd;
    int connecting;
    double backoff;
    ev_io rio, wio;
    ev_timer retry;
    char *rbuf;
    size_t rlen, rcap;
    char wbuf[4096];
    size_t wlen;
    struct snapshot *current;
};

static void sc_connect(struct snapclient *sc);

static void sc_disconnect(struct snapclient *sc, const char *why)
{
    if (sc->fd >= 0) {
        log_info("controller_disconnected", "reason=\"%s\"", why);
        ev_io_stop(sc->loop, &sc->rio);
        ev_io_stop(sc->loop, &sc->wio);
        close(sc->fd);
        sc->fd = -1;
    }
    sc->connecting = 0;
    sc->rlen = 0;
    sc->wlen = 0;
    ev_timer_set(&sc->retry, sc->backoff, 0.);
    ev_timer_start(sc->loop, &sc->retry);
    sc->backoff *= 2;
    if (sc->backoff > BACKOFF_MAX) sc->backoff = BACKOFF_MAX;
}

/* Sends what is queued in wbuf; returns 0, or -1 after disconnecting. */
static int sc_flush(struct snapclient *sc)
{
    while (sc->wlen) {
        ssize_t n = send(sc->fd, sc->wbuf, sc->wlen, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            sc_disconnect(sc, strerror(errno));
            return -1;
        }
        memmove(sc->wbuf, sc->wbuf + n, sc->wlen - (size_t)n);
        sc->wlen -= (size_t)n;
    }
    if (sc->wlen)
        ev_io_start(sc->loop, &sc->wio);
    else
        ev_io_stop(sc->loop, &sc->wio);
    return 0;
}

static int sc_reply(struct snapclient *sc, int ack, uint64_t gen, const char *reason)
{
    char line[1024];
    size_t n = snapwire_reply_format(line, sizeof(line), ack, gen, reason);

    if (n > sizeof(sc->wbuf) - sc->wlen) {
        sc_disconnect(sc, "controller not reading replies");
        return -1;
    }
    memcpy(sc->wbuf + sc->wlen, line, n);
    sc->wlen += n;
    return sc_flush(sc);
}

struct snapshot *snapshot_from_frame(const void *buf, size_t len, const struct snapshot *prev,
                                     char *err, size_t errlen)
{
    struct snapwire_snapshot sw;
    struct snapshot *s = NULL;
    uint64_t gen = len >= SNAPWIRE_HEADER_SIZE ? snapwire_frame_generation(buf) : 0;
    char q[300];
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (snapwire_decode(buf, len, &sw, err, errlen) == 0)
        s = snapshot_build_prev(&sw, prev, err, errlen);
    if (!s) {
        metrics_snapshot_nacked();
        log_warn("snapshot_rejected", "generation=%llu reason=%s", (unsigned long long)gen,
                 log_quote(q, sizeof(q), err));
        return NULL;
    }
    metrics_snapshot_applied(gen);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* apply_ms: decode and index build, off the workers (what a swap costs the main thread) */
    log_info("snapshot_applied",
             "generation=%llu vhosts=%u routes=%u clusters=%u endpoints=%u bytes=%zu apply_ms=%.3f",
             (unsigned long long)gen, s->sw.n_vhosts, s->sw.n_routes, s->sw.n_clusters,
             s->sw.n_endpoints, len,
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return s;
}

/* Handles one complete frame; returns 0, or -1 after disconnecting. */
static int sc_frame(struct snapclient *sc, const char *buf, size_t len)
{
    uint64_t gen = snapwire_frame_generation(buf);
    char err[256];
    struct snapshot *s = snapshot_from_frame(buf, len, sc->current, err, sizeof(err));

    if (!s) return sc_reply(sc, 0, gen, err);
    snapshot_unref(sc->current);
    sc->current = s;
    if (sc->apply) sc->apply(s, sc->arg);
    return sc_reply(sc, 1, gen, NULL);
}

/* Consumes every complete frame in rbuf. Returns 0, or -1 after disconnecting. */
static int sc_frames(struct snapclient *sc)
{
    char err[256], q[300];
    size_t off = 0;

    while (sc->rlen - off >= SNAPWIRE_HEADER_SIZE) {
        long fs = snapwire_frame_size(sc->rbuf + off, sc->rlen - off, err, sizeof(err));
        if (fs < 0) {
            metrics_snapshot_nacked();
            log_warn("snapshot_rejected", "generation=0 reason=%s", log_quote(q, sizeof(q), err));
            if (sc_reply(sc, 0, 0, err) == 0) sc_disconnect(sc, "bad frame header");
            return -1;
        }
        if (sc->rlen - off < (size_t)fs) {
            if ((size_t)fs > sc->rcap) {
                char *nb = realloc(sc->rbuf, (size_t)fs);
                if (!nb) {
                    sc_disconnect(sc, "out of memory");
                    return -1;
                }
                sc->rbuf = nb;
                sc->rcap = (size_t)fs;
            }
            break;
        }
        if (sc_frame(sc, sc->rbuf + off, (size_t)fs) < 0) return -1;
        off += (size_t)fs;
    }
    memmove(sc->rbuf, sc->rbuf + off, sc->rlen - off);
    sc->rlen -= off;
    return 0;
}

static void sc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct snapclient *sc = container_of(w, struct snapclient, rio);
    ssize_t n;

    (void)loop;
    (void)revents;
    if (sc->magic != SNAPCLIENT_MAGIC) abort();
    if (sc->rcap - sc->rlen < READ_CHUNK) {
        char *nb = realloc(sc->rbuf, sc->rlen + READ_CHUNK);
        if (!nb) {
            sc_disconnect(sc, "out of memory");
            return;
        }
        sc->rbuf = nb;
        sc->rcap = sc->rlen + READ_CHUNK;
    }
    n = read(sc->fd, sc->rbuf + sc->rlen, sc->rcap - sc->rlen);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        sc_disconnect(sc, n == 0 ? "closed by controller" : strerror(errno));
        return;
    }
    sc->rlen += (size_t)n;
    sc_frames(sc);
}

static void sc_connected(struct snapclient *sc)
{
    sc->connecting = 0;
    sc->backoff = BACKOFF_MIN;
    ev_io_stop(sc->loop, &sc->wio);
    ev_io_start(sc->loop, &sc->rio);
    log_info("controller_connected", "socket=%s", sc->sun.sun_path);
}

static void sc_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct snapclient *sc = container_of(w, struct snapclient, wio);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);

    (void)loop;
    (void)revents;
    if (sc->magic != SNAPCLIENT_MAGIC) abort();
    if (sc->connecting) {
        if (getsockopt(sc->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        if (soerr) {
            sc_disconnect(sc, strerror(soerr));
            return;
        }
        sc_connected(sc);
    }
    sc_flush(sc);
}

static void sc_connect(struct snapclient *sc)
{
    sc->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sc->fd < 0) {
        log_warn("controller_connect_failed", "reason=\"%s\"", strerror(errno));
        sc_disconnect(sc, "socket");
        return;
    }
    ev_io_set(&sc->rio, sc->fd, EV_READ);
    ev_io_set(&sc->wio, sc->fd, EV_WRITE);
    if (connect(sc->fd, (struct sockaddr *)&sc->sun, sizeof(sc->sun)) == 0) {
        sc_connected(sc);
        return;
    }
    if (errno == EINPROGRESS || errno == EAGAIN) {
        sc->connecting = 1;
        ev_io_start(sc->loop, &sc->wio);
        return;
    }
    log_debug("controller_connect_failed", "socket=%s reason=\"%s\"", sc->sun.sun_path,
              strerror(errno));
    close(sc->fd);
    sc->fd = -1;
    sc_disconnect(sc, strerror(errno));
}

static void sc_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct snapclient *sc = container_of(w, struct snapclient, retry);

    (void)loop;
    (void)revents;
    if (sc->magic != SNAPCLIENT_MAGIC) abort();
    sc_connect(sc);
}

struct snapclient *snapclient_start(struct ev_loop *loop, const char *path, snapclient_apply_fn fn,
                                    void *arg, char *err, size_t errlen)
{
    struct snapclient *sc;

    if (strlen(path) >= sizeof(sc->sun.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return NULL;
    }
    sc = calloc(1, sizeof(*sc));
    if (!sc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sc->magic = SNAPCLIENT_MAGIC;
    sc->loop = loop;
    sc->sun.sun_family = AF_UNIX;
    strcpy(sc->sun.sun_path, path);
    sc->apply = fn;
    sc->arg = arg;
    sc->fd = -1;
    sc->backoff = BACKOFF_MIN;
    ev_io_init(&sc->rio, sc_read_cb, -1, EV_READ);
    ev_io_init(&sc->wio, sc_write_cb, -1, EV_WRITE);
    ev_timer_init(&sc->retry, sc_retry_cb, 0., 0.);
    sc_connect(sc);
    return sc;
}

struct snapshot *snapclient_current(struct snapclient *sc)
{
    return sc ? sc->current : NULL;
}

void snapclient_stop(struct snapclient *sc)
{
    if (!sc) return;
    ev_timer_stop(sc->loop, &sc->retry);
    if (sc->fd >= 0) {
        ev_io_stop(sc->loop, &sc->rio);
        ev_io_stop(sc->loop, &sc->wio);
        close(sc->fd);
    }
    snapshot_unref(sc->current);
    free(sc->rbuf);
    sc->magic = 0;
    free(sc);
}

/* ---- ready endpoint set (pruning a worker's idle upstream pool on a swap) ---- */

struct snapshot_epset_slot {
    uint8_t used, family;
    uint16_t port; /* network order */
    uint32_t scope;
    unsigned char addr[16];
    uint64_t tag;
};

struct snapshot_epset {
    size_t mask; /* number of slots - 1, slots a power of two */
    struct snapshot_epset_slot *slot;
};

/* sa as a key (slot with used = 1); 0 for a family other than IPv4/IPv6. */
static int epset_key(const struct sockaddr *sa, uint64_t tag, struct snapshot_epset_slot *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)sa;
        memcpy(k->addr, &x->sin_addr, sizeof(x->sin_addr));
        k->port = x->sin_port;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)sa;
        memcpy(k->addr, &x->sin6_addr, sizeof(x->sin6_addr));
        k->port = x->sin6_port;
        k->scope = x->sin6_scope_id;
    } else
        return 0;
    k->used = 1;
    k->family = (uint8_t)sa->sa_family;
    k->tag = tag;
    return 1;
}

static int epset_same(const struct snapshot_epset_slot *a, const struct snapshot_epset_slot *b)
{
    return a->family == b->family && a->port == b->port && a->scope == b->scope &&
           a->tag == b->tag && !memcmp(a->addr, b->addr, sizeof(a->addr));
}

/* The slot holding k, or the empty one where it would go (the table is never full). */
static struct snapshot_epset_slot *epset_find(const struct snapshot_epset *set,
                                              const struct snapshot_epset_slot *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the key's fields */
    const unsigned char *b = k->addr;
    size_t i;

    for (i = 0; i < sizeof(k->addr); i++)
        h = (h ^ b[i]) * 1099511628211ull;
    h = (h ^ k->port ^ ((uint64_t)k->family << 16) ^ ((uint64_t)k->scope << 24)) * 1099511628211ull;
    h = (h ^ k->tag) * 1099511628211ull;
    h ^= h >> 29;
    for (i = (size_t)h & set->mask;; i = (i + 1) & set->mask)
        if (!set->slot[i].used || epset_same(&set->slot[i], k)) return &set->slot[i];
}

struct snapshot_epset *snapshot_epset_new(const struct snapshot *s)
{
    struct snapshot_epset *set;
    struct snapshot_epset_slot k, *sl;
    size_t n = 0, slots = 8;
    uint32_t i, j;

    for (i = 0; i < s->sw.n_clusters; i++)
        n += s->clusters[i].n_ready;
    while (slots < 2 * n)
        slots *= 2;
    if (!(set = malloc(sizeof(*set)))) return NULL;
    if (!(set->slot = calloc(slots, sizeof(*set->slot)))) {
        free(set);
        return NULL;
    }
    set->mask = slots - 1;
    for (i = 0; i < s->sw.n_clusters; i++) {
        const struct snapshot_cluster *c = &s->clusters[i];
        uint64_t tag = tls_upstream_tag(s->tls_up, i);
        for (j = 0; j < c->n_ready; j++) {
            if (!epset_key((const struct sockaddr *)&c->ready[j].addr, tag, &k)) continue;
            sl = epset_find(set, &k);
            if (!sl->used) *sl = k; /* else the same endpoint in another cluster */
        }
    }
    return set;
}

int snapshot_epset_has(const struct snapshot_epset *set, const struct sockaddr *sa, uint64_t tag)
{
    struct snapshot_epset_slot k;

    return epset_key(sa, tag, &k) && epset_find(set, &k)->used;
}

void snapshot_epset_free(struct snapshot_epset *set)
{
    if (!set) return;
    free(set->slot);
    free(set);
}

const struct snapshot_endpoint *snapshot_affinity_find(struct snapshot *s, uint32_t idx,
                                                       const char *val, size_t len)
{
    const struct snapshot_cluster *c;
    uint64_t id = 0;
    size_t i;

    if (idx >= s->sw.n_clusters || len != 16) return NULL;
    for (i = 0; i < len; i++) {
        char ch = val[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return NULL;
        id = id << 4 | (uint64_t)d;
    }
    c = &s->clusters[idx];
    for (i = 0; i < c->n_ready; i++)
        if (c->ready[i].affinity_id == id)
            return ep_usable(c, (uint32_t)i, 1, 0) ? &c->ready[i] : NULL;
    return NULL;
}

void snapshot_affinity_value(const struct snapshot_endpoint *ep, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)ep->affinity_id);
}
