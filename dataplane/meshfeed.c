/*
 * meshfeed: the sidecar's discovery feed (see meshfeed.h).
 *
 * Invariants: the destination table (feed.keys) is touched only under feed.mu; a key's seq
 * says which request first named it, so an answer resolves exactly the keys its request
 * carried (seq <= the request's). The thread is the only one that talks to the controller;
 * the loop is the only one that builds snapshots and owns f->current. The hand-off between
 * them is one slot (the newest answer wins) under feed.mu and an ev_async.
 */
#include "meshfeed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "jsongen.h"
#include "log.h"
#include "mesh.h"
#include "metrics.h"
#include "netaddr.h"
#include "tls_mesh.h"

#define MESHFEED_MAGIC 0x46454544u /* "FEED" */
#define BACKOFF_MAX 30.0
#define BUDGET_EXTRA 15.0 /* seconds beyond the wait before a held request counts as lost */
#define MAX_ADDRESSES 16

enum key_state { KEY_PENDING = 0, KEY_SERVICE = 1, KEY_NONE = 2 };

struct key {
    struct sockaddr_storage sa; /* an IPv4 or IPv6 address with its port (v4-mapped: IPv4) */
    socklen_t len;              /* 0 for a Service name */
    char name[MESH_KEY_MAX];    /* "ns/name" ("" for an address) */
    uint8_t state;
    uint64_t seq;
    double used; /* monotonic seconds */
};

/* what the thread hands to the loop */
struct answer {
    char *frame;
    size_t len;
    uint64_t seq; /* the request named the keys with seq <= this one */
};

struct meshfeed {
    uint32_t magic;
    struct ev_loop *loop;
    snapclient_apply_fn apply;
    void *arg;
    ev_async async;
    struct snapshot *current;
    pthread_t thread;
};

static struct {
    pthread_mutex_t mu;
    atomic_int on, stop;
    int wake[2];  /* a new destination: the thread abandons a held request */
    int stopw[2]; /* meshfeed_stop */
    double idle;
    struct key *keys; /* under mu */
    size_t n, cap;
    uint64_t seq;
    uint64_t answered;  /* under mu: the keys with seq <= this one have an answer */
    struct answer slot; /* under mu: the newest answer not yet applied */
    int slot_full;
    int kick; /* under mu: pending destinations were given up: resume what waits on them */
} feed = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = {-1, -1}, .stopw = {-1, -1}};

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Updates the destinations gauge (feed.mu held). */
static void count_locked(void)
{
    unsigned n[3] = {0, 0, 0};

    for (size_t i = 0; i < feed.n; i++)
        n[feed.keys[i].state == KEY_SERVICE ? 0 : feed.keys[i].state == KEY_NONE ? 1 : 2]++;
    metrics_mesh_feed_destinations(n[0], n[1], n[2]);
}

/* The key of address sa (name NULL) or of Service name, or NULL. */
static struct key *key_find(const struct sockaddr_storage *sa, const char *name)
{
    for (size_t i = 0; i < feed.n; i++) {
        const struct key *e = &feed.keys[i];
        if (name ? e->len == 0 && strcmp(e->name, name) == 0
                 : e->len &&
                       netaddr_equal((const struct sockaddr *)&e->sa, (const struct sockaddr *)sa))
            return &feed.keys[i];
    }
    return NULL;
}

int meshfeed_on(void)
{
    return atomic_load_explicit(&feed.on, memory_order_relaxed);
}

/* meshfeed_want for the address k (klen bytes) or, with klen 0, the Service name. */
static int want(const struct sockaddr_storage *k, socklen_t klen, const char *name)
{
    struct key *e;
    int rc = MESHFEED_NONE, wake = 0;

    pthread_mutex_lock(&feed.mu);
    if ((e = key_find(k, klen ? NULL : name))) {
        e->used = mono_now();
        rc = e->state == KEY_NONE ? MESHFEED_NONE : MESHFEED_PENDING;
    } else if (feed.n < MESHFEED_MAX_KEYS) {
        if (feed.n == feed.cap) {
            size_t cap = feed.cap ? feed.cap * 2 : 16;
            struct key *nk = realloc(feed.keys, cap * sizeof(*nk));
            if (!nk) goto out;
            feed.keys = nk;
            feed.cap = cap;
        }
        e = &feed.keys[feed.n++];
        memset(e, 0, sizeof(*e));
        if (klen) e->sa = *k;
        e->len = klen;
        if (!klen) snprintf(e->name, sizeof(e->name), "%s", name);
        e->state = KEY_PENDING;
        e->seq = ++feed.seq;
        e->used = mono_now();
        rc = MESHFEED_PENDING;
        wake = 1;
        count_locked();
    }
out:
    pthread_mutex_unlock(&feed.mu);
    if (wake) {
        char b = 1;
        if (write(feed.wake[1], &b, 1) < 0 && errno != EAGAIN)
            log_debug("mesh_feed_wake", "reason=\"%s\"", strerror(errno));
    }
    return rc;
}

int meshfeed_want(const struct sockaddr *sa)
{
    struct sockaddr_storage k;
    socklen_t kl;

    if (!meshfeed_on() || netaddr_unmap(sa, &k, &kl) < 0) return MESHFEED_NONE;
    return want(&k, kl, NULL);
}

int meshfeed_want_name(const char *key)
{
    if (!meshfeed_on() || !key[0] || strlen(key) >= MESH_KEY_MAX) return MESHFEED_NONE;
    return want(NULL, 0, key);
}

/* Drains a non-blocking pipe. */
static void drain(int fd)
{
    char buf[64];

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* Sleeps secs or until meshfeed_stop; 1 when stopping. */
static int nap(double secs)
{
    struct pollfd p = {.fd = feed.stopw[0], .events = POLLIN};

    if (secs > 0 && !atomic_load(&feed.stop)) (void)poll(&p, 1, (int)ceil(secs * 1000));
    return atomic_load(&feed.stop);
}

/* The pod's own addresses (not loopback, not link-local) into the generator, as strings. */
static void gen_addresses(yajl_gen g)
{
    struct ifaddrs *ifa = NULL, *i;
    int n = 0;

    yajl_gen_array_open(g);
    if (getifaddrs(&ifa) == 0) {
        for (i = ifa; i && n < MAX_ADDRESSES; i = i->ifa_next) {
            char text[64];
            const struct sockaddr *sa = i->ifa_addr;
            if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) continue;
            if (sa->sa_family == AF_INET &&
                (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127)
                continue;
            if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                if (IN6_IS_ADDR_LOOPBACK(a6) || IN6_IS_ADDR_LINKLOCAL(a6)) continue;
            }
            if (!inet_ntop(sa->sa_family,
                           sa->sa_family == AF_INET
                               ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                               : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr,
                           text, sizeof(text)))
                continue;
            jsongen_str(g, text);
            n++;
        }
        freeifaddrs(ifa);
    }
    yajl_gen_array_close(g);
}

/*
 * The next request's body (malloc'd): drops the keys unused for feed.idle (never a pending
 * one), names the rest. *seq: the newest key named; *wait: how long the controller may hold
 * it (0 with a pending key, else until the next key would expire, at most MESHFEED_WAIT).
 */
static char *request_body(const char *version, uint64_t *seq, double *wait)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *out;
    double now = mono_now(), next = MESHFEED_WAIT;
    char *body = NULL, text[80];
    size_t olen, i, kept = 0;
    int pending = 0;

    if (!g) return NULL;
    pthread_mutex_lock(&feed.mu);
    for (i = 0; i < feed.n; i++) {
        struct key *e = &feed.keys[i];
        double left = e->used + feed.idle - now;
        if (e->state != KEY_PENDING && left <= 0) {
            log_info("mesh_feed_dropped", "destination=%s reason=\"idle\"",
                     e->len ? netaddr_format((const struct sockaddr *)&e->sa, text, sizeof(text))
                            : e->name);
            continue;
        }
        /* pending and never answered (an answer may be on its way to the loop) */
        if (e->state == KEY_PENDING && e->seq > feed.answered) pending = 1;
        if (e->state != KEY_PENDING && left + 1 < next) next = left + 1;
        feed.keys[kept++] = *e;
    }
    feed.n = kept;
    count_locked();
    *seq = feed.seq;
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "version", version);
    *wait = pending ? 0 : floor(next < 1 ? 1 : next);
    jsongen_str(g, "wait");
    yajl_gen_integer(g, (long long)*wait);
    jsongen_str(g, "services");
    yajl_gen_array_open(g);
    for (i = 0; i < feed.n; i++)
        jsongen_str(g, feed.keys[i].len ? netaddr_format((const struct sockaddr *)&feed.keys[i].sa,
                                                         text, sizeof(text))
                                        : feed.keys[i].name);
    yajl_gen_array_close(g);
    pthread_mutex_unlock(&feed.mu);
    jsongen_str(g, "addresses");
    gen_addresses(g);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &out, &olen) == yajl_gen_status_ok)
        body = strndup((const char *)out, olen);
    yajl_gen_free(g);
    return body;
}

/* Resolves the keys a request named (seq <= seq): Service when s has it, else not one. */
static void resolve(const struct snapshot *s, uint64_t seq)
{
    pthread_mutex_lock(&feed.mu);
    for (size_t i = 0; i < feed.n; i++) {
        struct key *e = &feed.keys[i];
        if (e->seq > seq) continue;
        if (e->len)
            e->state = s && mesh_find_addr(s->mesh, (const struct sockaddr *)&e->sa) ? KEY_SERVICE
                                                                                     : KEY_NONE;
        else
            e->state = s && mesh_has_service(s->mesh, e->name) ? KEY_SERVICE : KEY_NONE;
    }
    count_locked();
    pthread_mutex_unlock(&feed.mu);
}

/*
 * The controller did not answer: the destinations still pending are not Services for now,
 * and the connections waiting on them need not wait any longer (the loop republishes the
 * current snapshot: every worker's swap resumes them).
 */
static void give_up_pending(struct meshfeed *f)
{
    int any = 0;

    pthread_mutex_lock(&feed.mu);
    for (size_t i = 0; i < feed.n; i++)
        if (feed.keys[i].state == KEY_PENDING) {
            feed.keys[i].state = KEY_NONE;
            any = 1;
        }
    feed.kick |= any;
    count_locked();
    pthread_mutex_unlock(&feed.mu);
    if (any) ev_async_send(f->loop, &f->async);
}

static void hand_over(struct meshfeed *f, struct tls_mesh_answer *a, uint64_t seq)
{
    pthread_mutex_lock(&feed.mu);
    if (feed.slot_full) free(feed.slot.frame);
    feed.slot.frame = a->body;
    feed.slot.len = a->len;
    feed.slot.seq = seq;
    feed.slot_full = 1;
    if (seq > feed.answered) feed.answered = seq;
    pthread_mutex_unlock(&feed.mu);
    a->body = NULL;
    ev_async_send(f->loop, &f->async);
}

static void *feed_thread(void *arg)
{
    struct meshfeed *f = arg;
    char version[sizeof(((struct tls_mesh_answer *)0)->version)] = "";
    char why[512], q[600];
    double backoff = 1;
    int waiting_id = 0;

    while (!atomic_load(&feed.stop)) {
        struct tls_mesh_answer a;
        uint64_t seq;
        double wait;
        char *body;
        int rc;

        if (!tls_mesh_status(NULL, 0, NULL)) {
            if (!waiting_id) log_debug("mesh_feed_waiting", "reason=\"no workload certificate\"");
            waiting_id = 1;
            if (nap(0.2)) break;
            continue;
        }
        waiting_id = 0;
        drain(feed.wake[0]);
        if (!(body = request_body(version, &seq, &wait))) {
            if (nap(1)) break;
            continue;
        }
        rc = tls_mesh_feed_post(MESHFEED_PATH, body, wait + BUDGET_EXTRA, feed.wake[0],
                                SNAPWIRE_MAX_FRAME, &a, why, sizeof(why));
        free(body);
        if (rc == -2) continue; /* a new destination: ask again at once */
        if (rc == 0 && (a.status == 200 || a.status == 204)) {
            backoff = 1;
            metrics_mesh_feed_request(a.status == 200 ? METRICS_FEED_UPDATE
                                                      : METRICS_FEED_UNCHANGED);
            if (a.status == 200) {
                /* kept even if the frame is refused: the long poll then waits for news */
                snprintf(version, sizeof(version), "%s", a.version);
                log_debug("mesh_feed_answer", "bytes=%zu version=%s", a.len, version);
                hand_over(f, &a, seq);
            }
            free(a.body);
            continue;
        }
        if (atomic_load(&feed.stop)) {
            free(a.body);
            break;
        }
        if (rc == 0) {
            char ex[161];
            size_t i;
            for (i = 0; a.body && i < a.len && i < sizeof(ex) - 1; i++)
                ex[i] = (unsigned char)a.body[i] >= 0x20 && (unsigned char)a.body[i] < 0x7f
                            ? a.body[i]
                            : ' ';
            ex[i] = '\0';
            snprintf(why, sizeof(why), "the controller answered %d: %s", a.status, ex);
        }
        free(a.body);
        metrics_mesh_feed_request(METRICS_FEED_ERROR);
        give_up_pending(f);
        log_warn("mesh_feed_failed", "reason=%s retry_in=%.0fs", log_quote(q, sizeof(q), why),
                 backoff);
        if (nap(backoff)) break;
        if (backoff < BACKOFF_MAX) backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
    return NULL;
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct meshfeed *f = container_of(w, struct meshfeed, async);
    struct answer an = {0};
    struct snapshot *s;
    char err[256];
    int full, kick;

    (void)loop;
    (void)revents;
    if (f->magic != MESHFEED_MAGIC) abort();
    pthread_mutex_lock(&feed.mu);
    full = feed.slot_full;
    an = feed.slot;
    feed.slot_full = 0;
    feed.slot.frame = NULL;
    kick = feed.kick;
    feed.kick = 0;
    pthread_mutex_unlock(&feed.mu);
    if (!full) {
        if (kick && f->current && f->apply) f->apply(f->current, f->arg);
        return;
    }
    s = snapshot_from_frame(an.frame, an.len, f->current, err, sizeof(err));
    free(an.frame);
    if (!s) {
        resolve(NULL, an.seq); /* what it asked for stays unknown: not Services for now */
        return;
    }
    snapshot_unref(f->current);
    f->current = s;
    resolve(s, an.seq); /* before the workers see s: they resume what waited on these */
    if (f->apply) f->apply(s, f->arg);
}

struct meshfeed *meshfeed_start(struct ev_loop *loop, double idle, snapclient_apply_fn apply,
                                void *arg, char *err, size_t errlen)
{
    struct meshfeed *f;

    if (meshfeed_on()) {
        snprintf(err, errlen, "the discovery feed is already running");
        return NULL;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->magic = MESHFEED_MAGIC;
    f->loop = loop;
    f->apply = apply;
    f->arg = arg;
    feed.idle = idle >= 1 ? idle : 1;
    if (pipe2(feed.wake, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pipe2(feed.stopw, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    ev_async_init(&f->async, async_cb);
    ev_async_start(loop, &f->async);
    atomic_store(&feed.stop, 0);
    metrics_mesh_feed_destinations(0, 0, 0);
    atomic_store(&feed.on, 1);
    if ((errno = pthread_create(&f->thread, NULL, feed_thread, f)) != 0) {
        snprintf(err, errlen, "feed thread: %s", strerror(errno));
        atomic_store(&feed.on, 0);
        ev_async_stop(loop, &f->async);
        goto fail;
    }
    log_info("mesh_feed_started", "path=%s idle=%.0fs", MESHFEED_PATH, feed.idle);
    return f;
fail:
    for (int i = 0; i < 2; i++) {
        if (feed.wake[i] >= 0) close(feed.wake[i]);
        if (feed.stopw[i] >= 0) close(feed.stopw[i]);
        feed.wake[i] = feed.stopw[i] = -1;
    }
    free(f);
    return NULL;
}

struct snapshot *meshfeed_current(struct meshfeed *f)
{
    return f ? f->current : NULL;
}

void meshfeed_stop(struct meshfeed *f)
{
    char b = 1;

    if (!f) return;
    atomic_store(&feed.stop, 1);
    if (write(feed.stopw[1], &b, 1) < 0 || write(feed.wake[1], &b, 1) < 0)
        log_debug("mesh_feed_stop", "reason=\"%s\"", strerror(errno));
    pthread_join(f->thread, NULL);
    ev_async_stop(f->loop, &f->async);
    atomic_store(&feed.on, 0);
    pthread_mutex_lock(&feed.mu);
    if (feed.slot_full) free(feed.slot.frame);
    feed.slot_full = 0;
    free(feed.keys);
    feed.keys = NULL;
    feed.n = feed.cap = 0;
    pthread_mutex_unlock(&feed.mu);
    for (int i = 0; i < 2; i++) {
        close(feed.wake[i]);
        close(feed.stopw[i]);
        feed.wake[i] = feed.stopw[i] = -1;
    }
    snapshot_unref(f->current);
    f->magic = 0;
    free(f);
}
