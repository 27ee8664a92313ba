/*
 * healthcheck: active HTTP health checks (see healthcheck.h).
 *
 * Does: keep the live targets in a hash table keyed by (cluster, key, config, TLS tag) so
 * snapshots share them; run every probe of the process on one checker thread (its own ev
 * loop, one ev_timer and one ev_io per target, so thousands of targets cost a timer heap, not
 * a scan); move the probe's bytes through a struct transport (plain, or a TLS client session
 * from the target's tls_upstream_client, following its want bits); count pass/fail runs and
 * flip the target's atomic healthy flag at the thresholds.
 * Does not: pick endpoints (the snapshot side reads healthcheck_healthy), call OpenSSL (TLS
 * is tls_upstream's, which may live in a separately loaded module), or read more than the
 * status line (HC_BUF bytes at most).
 * Invariants:
 *   - a target is in the table iff refs > 0 and the checker has not been stopped; a target
 *     whose refs reach 0 leaves the table at once (no new sharer can find it) and is queued
 *     for the checker, which frees it; after healthcheck_stop the last release frees it;
 *   - hc.mu guards refs, the table, the queues and each target's info; the probe state
 *     (transport, phase, watchers) belongs to the checker thread alone (or to healthcheck_stop
 *     once the thread has been joined);
 *   - at most one probe per target is in flight: the next is scheduled when one ends;
 *   - every transition to unhealthy is undone once in metrics: a transition to healthy, or
 *     metrics_health_freed_unhealthy when the target is freed unhealthy.
 */
#include "healthcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "containerof.h"
#include "log.h"
#include "metrics.h"
#include "tls_upstream.h"
#include "transport.h"

#define HC_MAGIC 0x48434b54u  /* "HCKT" */
#define HC_BUF 1024           /* enough for any sane status line */
#define HC_FIRST_MAX_MS 1000u /* the first probe comes within min(interval, this) */
#define HC_TABLE_MIN 64       /* hash buckets at start (a power of two) */

enum hc_phase { PH_IDLE, PH_CONNECT, PH_HANDSHAKE, PH_SEND, PH_READ };

struct hc_target {
    uint32_t magic;
    atomic_int healthy;
    /* under hc.mu */
    unsigned refs;
    int detached;            /* the checker was stopped: the last release frees it */
    struct hc_target *hnext; /* hash chain of live targets */
    struct hc_target *anext; /* queue of targets for the checker to adopt */
    struct hc_target *dnext; /* queue of released targets for the checker to free */
    struct hc_info info;     /* healthy unused: the atomic above */
    /* identity, immutable after acquire */
    uint64_t hash;
    char *cluster, *key;
    struct hc_config cfg; /* path and host point at copies owned by the target, tls NULL */
    uint64_t tls_tag;     /* tls_upstream_tag of the cluster, 0: plain */
    struct tls_upstream_client *tls; /* the cluster's TLS settings, NULL: plain */
    struct sockaddr_storage sa;
    socklen_t salen;
    char *req;
    size_t req_len;
    /* the checker thread's */
    struct hc_target *prev, *next; /* targets adopted by the loop */
    int on_loop;
    struct transport tp; /* fd -1 between probes */
    enum hc_phase phase;
    ev_timer timer; /* next probe when idle, the probe's timeout otherwise */
    ev_io io;
    size_t sent, got;
    char buf[HC_BUF];
};

static struct {
    pthread_mutex_t mu;
    int running, stopping;
    int enabled; /* healthcheck_enable: the first acquire starts the checker */
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    struct hc_target **tab;
    size_t nb, n;                   /* buckets (power of two), live targets */
    struct hc_target *adds, *deads; /* queues for the checker */
    struct hc_target *all;          /* checker only: adopted targets */
    uint64_t rng;                   /* checker only */
} hc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct hc_target *target_check(struct hc_target *t)
{
    if (t->magic != HC_MAGIC) abort();
    return t;
}

/* xorshift64*: a uniform double in [0, 1). Checker thread only. */
static double rand01(void)
{
    hc.rng ^= hc.rng >> 12;
    hc.rng ^= hc.rng << 25;
    hc.rng ^= hc.rng >> 27;
    return (double)((hc.rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static uint64_t target_hash(const char *cluster, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *p;

    for (p = cluster; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    h = (h ^ 0xff) * 0x100000001b3ull; /* no byte of a C string: separates the two */
    for (p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    return h;
}

static int cfg_equal(const struct hc_config *a, const struct hc_config *b)
{
    return a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           a->status_lo == b->status_lo && a->status_hi == b->status_hi &&
           a->healthy == b->healthy && a->unhealthy == b->unhealthy && !strcmp(a->path, b->path) &&
           !strcmp(a->host, b->host);
}

/* "address:port" of sa ("[v6]:port"), into buf (n bytes). */
static void format_addr(const struct sockaddr_storage *sa, char *buf, size_t n)
{
    char a[INET6_ADDRSTRLEN] = "";

    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        snprintf(buf, n, "[%s]:%u", a, (unsigned)ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        snprintf(buf, n, "%s:%u", a, (unsigned)ntohs(s4->sin_port));
    }
}

static void target_free(struct hc_target *t)
{
    if (!atomic_load_explicit(&t->healthy, memory_order_relaxed)) metrics_health_freed_unhealthy();
    t->magic = 0;
    free(t->cluster);
    free(t->key);
    free((char *)t->cfg.path);
    free((char *)t->cfg.host);
    free(t->req);
    tls_upstream_client_release(t->tls);
    free(t);
}

static struct hc_target *target_new(const char *cluster, const char *key, const struct sockaddr *sa,
                                    socklen_t len, const struct hc_config *cfg, uint64_t hash,
                                    uint64_t tls_tag)
{
    struct hc_target *t = calloc(1, sizeof(*t));
    char hostbuf[INET6_ADDRSTRLEN + 16];
    const char *host;
    int n;

    if (!t) return NULL;
    t->magic = HC_MAGIC;
    atomic_init(&t->healthy, 1);
    t->refs = 1;
    transport_plain_init(&t->tp, -1);
    t->hash = hash;
    t->cfg = *cfg;
    t->cfg.path = NULL;
    t->cfg.host = NULL;
    t->cfg.tls = NULL; /* the snapshot's: only read here */
    t->tls_tag = tls_tag;
    memcpy(&t->sa, sa, len);
    t->salen = len;
    t->cluster = strdup(cluster);
    t->key = strdup(key);
    t->cfg.path = strdup(cfg->path);
    t->cfg.host = strdup(cfg->host);
    if (!t->cluster || !t->key || !t->cfg.path || !t->cfg.host) goto free_target;
    if (tls_tag && !(t->tls = tls_upstream_client_get(cfg->tls, cfg->tls_cluster)))
        goto free_target;
    host = cfg->host;
    if (!host[0]) {
        format_addr(&t->sa, hostbuf, sizeof(hostbuf));
        host = hostbuf;
    }
    n = asprintf(&t->req,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: strait-healthcheck\r\n"
                 "Connection: close\r\n\r\n",
                 cfg->path[0] ? cfg->path : "/", host);
    if (n < 0) {
        t->req = NULL;
        goto free_target;
    }
    t->req_len = (size_t)n;
    return t;

free_target:
    target_free(t);
    return NULL;
}

/* Doubles the table when it is full (a failed allocation keeps the old one). Under hc.mu. */
static void table_grow(void)
{
    size_t nb = hc.nb * 2, i;
    struct hc_target **tab;

    if (hc.n < hc.nb || !(tab = calloc(nb, sizeof(*tab)))) return;
    for (i = 0; i < hc.nb; i++)
        while (hc.tab[i]) {
            struct hc_target *t = hc.tab[i];
            hc.tab[i] = t->hnext;
            t->hnext = tab[t->hash & (nb - 1)];
            tab[t->hash & (nb - 1)] = t;
        }
    free(hc.tab);
    hc.tab = tab;
    hc.nb = nb;
}

static void table_remove(struct hc_target *t)
{
    struct hc_target **p;

    for (p = &hc.tab[t->hash & (hc.nb - 1)]; *p; p = &(*p)->hnext)
        if (*p == t) {
            *p = t->hnext;
            t->hnext = NULL;
            hc.n--;
            return;
        }
}

/* ---- the checker thread ---- */

static void probe_start(struct hc_target *t);

/* Stops t's watchers and closes its probe socket, if any. */
static void probe_close(struct hc_target *t)
{
    ev_io_stop(hc.loop, &t->io);
    ev_timer_stop(hc.loop, &t->timer);
    if (t->tp.fd >= 0) t->tp.ops->close(&t->tp); /* frees a TLS session too */
    transport_plain_init(&t->tp, -1);
    t->phase = PH_IDLE;
}

/* Waits for events (EV_READ or EV_WRITE) on the probe's socket. */
static void watch(struct hc_target *t, int events)
{
    if (ev_is_active(&t->io) && t->io.fd == t->tp.fd &&
        (t->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(hc.loop, &t->io);
    ev_io_set(&t->io, t->tp.fd, events);
    ev_io_start(hc.loop, &t->io);
}

/* Whether errno e from the transport means "try again once the socket is ready". */
static int is_again(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/*
 * The probe of t ended: pass or not, status the parsed status (0: none), reason why (for
 * the log and last_error). Counts it, flips t at the thresholds and schedules the next.
 */
static void probe_end(struct hc_target *t, int pass, unsigned status, const char *reason)
{
    unsigned need;
    int was, now;
    double next;

    probe_close(t);
    metrics_health_check(pass);
    pthread_mutex_lock(&hc.mu);
    t->info.checks++;
    if (status) t->info.last_status = (uint16_t)status;
    was = now = atomic_load_explicit(&t->healthy, memory_order_relaxed);
    if (pass) {
        t->info.consecutive_ok++;
        t->info.consecutive_fail = 0;
        t->info.last_error[0] = '\0';
        need = t->cfg.healthy ? t->cfg.healthy : 1;
        if (!was && t->info.consecutive_ok >= need) now = 1;
    } else {
        t->info.failures++;
        t->info.consecutive_fail++;
        t->info.consecutive_ok = 0;
        snprintf(t->info.last_error, sizeof(t->info.last_error), "%s", reason);
        need = t->cfg.unhealthy ? t->cfg.unhealthy : 1;
        if (was && t->info.consecutive_fail >= need) now = 0;
    }
    if (now != was) {
        atomic_store_explicit(&t->healthy, now, memory_order_relaxed);
        /* counted under the lock: whoever reads the new state through healthcheck_info sees
         * the transition counted too */
        metrics_health_transition(now);
    }
    pthread_mutex_unlock(&hc.mu);
    if (now != was)
        log_info("health_changed", "cluster=%s endpoint=%s healthy=%d reason=\"%s\"", t->cluster,
                 t->key, now, reason);
    next = (double)t->cfg.interval_ms * (0.9 + 0.2 * rand01()) / 1000.0;
    ev_timer_set(&t->timer, next, 0.);
    ev_timer_start(hc.loop, &t->timer);
}

/* A failure named after errno e: "what: strerror". */
static void probe_fail_errno(struct hc_target *t, const char *what, int e)
{
    char reason[sizeof(t->info.last_error)];

    if (e == ECONNREFUSED)
        snprintf(reason, sizeof(reason), "connection refused");
    else if (e == ECONNRESET)
        snprintf(reason, sizeof(reason), "connection reset");
    else
        snprintf(reason, sizeof(reason), "%s: %s", what, strerror(e));
    probe_end(t, 0, 0, reason);
}

/*
 * The status line at the start of b (n bytes): "HTTP/1.x NNN" then a space or the end of
 * the line. Returns the bytes it took (13) with *status, -2 when more bytes are needed, -1
 * when it is malformed.
 */
static int hc_parse_status(const char *b, size_t n, unsigned *status)
{
    static const char pre[] = "HTTP/1.";
    size_t i;

    for (i = 0; i < 13; i++) {
        char c;
        int ok;
        if (i >= n) return -2;
        c = b[i];
        if (i < 7)
            ok = c == pre[i];
        else if (i == 8)
            ok = c == ' ';
        else if (i == 12)
            ok = c == ' ' || c == '\r' || c == '\n';
        else
            ok = c >= '0' && c <= '9'; /* the minor version, the status code */
        if (!ok) return -1;
    }
    *status =
        (unsigned)(b[9] - '0') * 100u + (unsigned)(b[10] - '0') * 10u + (unsigned)(b[11] - '0');
    return 13;
}

static void probe_read(struct hc_target *t)
{
    unsigned status = 0;
    char reason[sizeof(t->info.last_error)];
    ssize_t n;
    int r;

    do { /* a TLS session may hold decrypted bytes the socket no longer signals */
        n = transport_recv(&t->tp, t->buf + t->got, sizeof(t->buf) - t->got);
        if (n < 0) {
            if (!is_again(errno))
                probe_fail_errno(t, "recv", errno);
            else
                watch(t, t->tp.want & TRANSPORT_RECV_WANTS_WRITE ? EV_WRITE : EV_READ);
            return;
        }
        t->got += (size_t)n;
        r = hc_parse_status(t->buf, t->got, &status);
        if ((r == -2 && (n == 0 || t->got == sizeof(t->buf))) || r == -1) {
            probe_end(t, 0, 0,
                      r == -2 && !t->got ? "closed before status line" : "malformed status line");
            return;
        }
        if (r > 0) {
            snprintf(reason, sizeof(reason), "status %u", status);
            probe_end(t, status >= t->cfg.status_lo && status <= t->cfg.status_hi, status, reason);
            return;
        }
    } while (transport_pending(&t->tp));
    watch(t, EV_READ);
}

/* Sends what is left of the request; once it is all out, waits for the status line. */
static void probe_send(struct hc_target *t)
{
    ssize_t n = transport_send(&t->tp, t->req + t->sent, t->req_len - t->sent, MSG_NOSIGNAL);

    if (n < 0) {
        if (!is_again(errno))
            probe_fail_errno(t, "send", errno);
        else
            watch(t, t->tp.want & TRANSPORT_SEND_WANTS_READ ? EV_READ : EV_WRITE);
        return;
    }
    t->sent += (size_t)n;
    if (t->sent < t->req_len) {
        watch(t, EV_WRITE);
        return;
    }
    t->phase = PH_READ;
    watch(t, EV_READ);
}

/*
 * Moves t's TLS handshake on; once done, sends the request. A failed handshake fails the
 * probe with the reason tls_upstream_error gives (the certificate's verification error).
 */
static void probe_handshake(struct hc_target *t)
{
    char reason[sizeof(t->info.last_error)];
    int r = t->tp.ops->handshake(&t->tp);

    if (r < 0) {
        probe_end(t, 0, 0, tls_upstream_error(&t->tp, reason, sizeof(reason)));
    } else if (r == 0) {
        watch(t, t->tp.want & TRANSPORT_RECV_WANTS_WRITE ? EV_WRITE : EV_READ);
    } else {
        t->phase = PH_SEND;
        probe_send(t);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct hc_target *t = target_check(container_of(w, struct hc_target, io));
    int e = 0;
    socklen_t el = sizeof(e);

    (void)loop;
    (void)revents;
    switch (t->phase) {
    case PH_CONNECT:
        if (getsockopt(t->tp.fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0) e = errno;
        if (e) {
            probe_fail_errno(t, "connect", e);
            return;
        }
        if (!t->tls) {
            t->phase = PH_SEND;
            probe_send(t);
            return;
        }
        if (tls_upstream_client_start(t->tls, &t->tp, (struct sockaddr *)&t->sa, t->salen) < 0) {
            probe_end(t, 0, 0, "TLS set-up failed");
            return;
        }
        t->phase = PH_HANDSHAKE;
        probe_handshake(t);
        return;
    case PH_HANDSHAKE:
        probe_handshake(t);
        return;
    case PH_SEND:
        probe_send(t);
        return;
    case PH_READ:
        probe_read(t);
        return;
    case PH_IDLE:
        ev_io_stop(hc.loop, &t->io);
        return;
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct hc_target *t = target_check(container_of(w, struct hc_target, timer));

    (void)loop;
    (void)revents;
    if (t->phase == PH_IDLE)
        probe_start(t);
    else
        probe_end(t, 0, 0,
                  t->phase == PH_READ        ? "timeout waiting for status line"
                  : t->phase == PH_HANDSHAKE ? "timeout in TLS handshake"
                                             : "timeout");
}

static void probe_start(struct hc_target *t)
{
    double timeout = (double)(t->cfg.timeout_ms ? t->cfg.timeout_ms : t->cfg.interval_ms) / 1000.0;

    int fd;

    t->sent = t->got = 0;
    fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_fail_errno(t, "socket", errno);
        return;
    }
    transport_plain_init(&t->tp, fd);
    t->phase = PH_CONNECT;
    ev_timer_set(&t->timer, timeout, 0.);
    ev_timer_start(hc.loop, &t->timer);
    if (connect(fd, (struct sockaddr *)&t->sa, t->salen) < 0 && errno != EINPROGRESS) {
        probe_fail_errno(t, "connect", errno);
        return;
    }
    watch(t, EV_WRITE);
}

/* t joins the loop: its first probe after a random delay in [0, min(interval, 1 s)). */
static void adopt(struct hc_target *t)
{
    uint32_t first = t->cfg.interval_ms < HC_FIRST_MAX_MS ? t->cfg.interval_ms : HC_FIRST_MAX_MS;

    t->on_loop = 1;
    t->prev = NULL;
    t->next = hc.all;
    if (hc.all) hc.all->prev = t;
    hc.all = t;
    ev_io_init(&t->io, io_cb, -1, EV_WRITE);
    ev_timer_init(&t->timer, timer_cb, (double)first * rand01() / 1000.0, 0.);
    ev_timer_start(hc.loop, &t->timer);
}

/* Takes t (released, or the checker stopping) off the loop. */
static void unadopt(struct hc_target *t)
{
    if (!t->on_loop) return;
    probe_close(t);
    if (t->prev)
        t->prev->next = t->next;
    else
        hc.all = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    t->on_loop = 0;
}

/* Adopts the queued new targets, then frees the released ones (which may be among them). */
static void drain_queues(struct hc_target *adds, struct hc_target *deads)
{
    while (adds) {
        struct hc_target *t = adds;
        adds = t->anext;
        t->anext = NULL;
        adopt(t);
    }
    while (deads) {
        struct hc_target *t = deads;
        deads = t->dnext;
        unadopt(t);
        target_free(t);
    }
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct hc_target *adds, *deads;
    int stopping;

    (void)w;
    (void)revents;
    pthread_mutex_lock(&hc.mu);
    adds = hc.adds;
    deads = hc.deads;
    hc.adds = hc.deads = NULL;
    stopping = hc.stopping;
    pthread_mutex_unlock(&hc.mu);
    drain_queues(adds, deads);
    if (stopping) ev_break(loop, EVBREAK_ALL);
}

static void *checker_main(void *arg)
{
    (void)arg;
    ev_run(hc.loop, 0);
    return NULL;
}

/* ---- the API ---- */

/* healthcheck_start with hc.mu held. */
static int start_locked(char *err, size_t errlen)
{
    sigset_t all, old;
    struct timespec ts;
    int rc = -1;

    if (hc.running) return 0;
    if (!(hc.tab = calloc(HC_TABLE_MIN, sizeof(*hc.tab)))) {
        snprintf(err, errlen, "health checks: out of memory");
        return -1;
    }
    hc.nb = HC_TABLE_MIN;
    hc.n = 0;
    if (!(hc.loop = ev_loop_new(EVFLAG_AUTO))) {
        snprintf(err, errlen, "health checks: ev_loop_new failed");
        goto free_table;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    hc.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
             0x9e3779b97f4a7c15ull;
    if (!hc.rng) hc.rng = 1;
    ev_async_init(&hc.wake, wake_cb);
    ev_async_start(hc.loop, &hc.wake);
    /* signals stay with the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&hc.thread, NULL, checker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "health checks: pthread_create failed");
        rc = -1;
        goto destroy_loop;
    }
    hc.running = 1;
    hc.stopping = 0;
    return 0;

destroy_loop:
    ev_async_stop(hc.loop, &hc.wake);
    ev_loop_destroy(hc.loop);
    hc.loop = NULL;
free_table:
    free(hc.tab);
    hc.tab = NULL;
    hc.nb = 0;
    return rc;
}

int healthcheck_start(char *err, size_t errlen)
{
    int rc;

    pthread_mutex_lock(&hc.mu);
    rc = start_locked(err, errlen);
    pthread_mutex_unlock(&hc.mu);
    return rc;
}

void healthcheck_enable(void)
{
    pthread_mutex_lock(&hc.mu);
    hc.enabled = 1;
    pthread_mutex_unlock(&hc.mu);
}

void healthcheck_stop(void)
{
    struct hc_target *t, *adds, *deads;
    size_t i;

    pthread_mutex_lock(&hc.mu);
    if (!hc.running || hc.stopping) {
        pthread_mutex_unlock(&hc.mu);
        return;
    }
    hc.stopping = 1;
    ev_async_send(hc.loop, &hc.wake);
    pthread_mutex_unlock(&hc.mu);
    pthread_join(hc.thread, NULL);

    /* the loop is ours now: finish the queues, then detach the targets still referenced */
    pthread_mutex_lock(&hc.mu);
    adds = hc.adds;
    deads = hc.deads;
    hc.adds = hc.deads = NULL;
    drain_queues(adds, deads);
    while ((t = hc.all))
        unadopt(t);
    for (i = 0; i < hc.nb; i++)
        while ((t = hc.tab[i])) {
            hc.tab[i] = t->hnext;
            t->hnext = NULL;
            t->detached = 1;
        }
    free(hc.tab);
    hc.tab = NULL;
    hc.nb = hc.n = 0;
    ev_async_stop(hc.loop, &hc.wake);
    ev_loop_destroy(hc.loop);
    hc.loop = NULL;
    hc.running = hc.stopping = 0;
    hc.enabled = 0; /* a later start is explicit again */
    pthread_mutex_unlock(&hc.mu);
}

struct hc_target *healthcheck_acquire(const char *cluster, const char *key,
                                      const struct sockaddr *sa, socklen_t len,
                                      const struct hc_config *cfg)
{
    struct hc_config c;
    struct hc_target *t;
    uint64_t h, tag = 0;

    if (!cfg || !sa || len > sizeof(struct sockaddr_storage)) return NULL;
    if (!(sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) &&
        !(sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)))
        return NULL;
    if (!cluster) cluster = "";
    if (!key) key = "";
    c = *cfg;
    if (!c.path) c.path = "";
    if (!c.host) c.host = "";
    if (c.tls && !(tag = tls_upstream_tag(c.tls, c.tls_cluster))) return NULL;
    h = target_hash(cluster, key);

    pthread_mutex_lock(&hc.mu);
    if (!hc.running && hc.enabled && !hc.stopping) {
        char err[128];
        if (start_locked(err, sizeof(err)) < 0) {
            hc.enabled = 0; /* not retried for every endpoint: checks stay off */
            log_error("health_checks_off", "reason=\"%s\"", err);
        }
    }
    if (!hc.running || hc.stopping) {
        t = NULL;
        goto unlock;
    }
    for (t = hc.tab[h & (hc.nb - 1)]; t; t = t->hnext)
        if (t->hash == h && !strcmp(t->cluster, cluster) && !strcmp(t->key, key) &&
            t->tls_tag == tag && cfg_equal(&t->cfg, &c)) {
            t->refs++;
            goto unlock;
        }
    if (!(t = target_new(cluster, key, sa, len, &c, h, tag))) goto unlock;
    table_grow();
    t->hnext = hc.tab[h & (hc.nb - 1)];
    hc.tab[h & (hc.nb - 1)] = t;
    hc.n++;
    t->anext = hc.adds;
    hc.adds = t;
    ev_async_send(hc.loop, &hc.wake);
unlock:
    pthread_mutex_unlock(&hc.mu);
    return t;
}

void healthcheck_release(struct hc_target *t)
{
    int free_now = 0;

    if (!t) return;
    target_check(t);
    pthread_mutex_lock(&hc.mu);
    if (--t->refs == 0) {
        if (t->detached) {
            free_now = 1;
        } else {
            table_remove(t);
            t->dnext = hc.deads;
            hc.deads = t;
            ev_async_send(hc.loop, &hc.wake);
        }
    }
    pthread_mutex_unlock(&hc.mu);
    if (free_now) target_free(t);
}

int healthcheck_healthy(const struct hc_target *t)
{
    return !t || atomic_load_explicit(&((struct hc_target *)t)->healthy, memory_order_relaxed);
}

void healthcheck_info(const struct hc_target *t, struct hc_info *out)
{
    memset(out, 0, sizeof(*out));
    out->healthy = 1;
    if (!t) return;
    pthread_mutex_lock(&hc.mu); /* the flag changes under it too: one consistent view */
    *out = t->info;
    out->healthy = healthcheck_healthy(t);
    pthread_mutex_unlock(&hc.mu);
}
