/*
 * metrics: the counters behind GET /metrics and GET /stats.
 *
 * Does: lock-free recording from any thread into per-worker shards (a worker is its shard's
 * only writer: relaxed loads and stores, no locked adds and no cache line bounces on the
 * hot path; threads without a shard add atomically to a shared one); a bounded
 * table of route labels; summing of all shards at scrape time; the Prometheus text format
 * (0.0.4) with HELP and TYPE before every family.
 * Does not: take locks, allocate on the hot path, or forget route labels (a label, once
 * seen, keeps its slot for the life of the process; past METRICS_MAX_ROUTES distinct
 * labels, new ones count under "other").
 * Invariants:
 *   - counters only grow; the gauges are the generation and the active connections
 *     (opened - closed, summed over shards, so a connection may open and close on
 *     different threads);
 *   - a route slot goes EMPTY -> BUSY (one thread won the CAS and is copying the name) ->
 *     READY, never back; a thread that meets a BUSY slot probes on instead of waiting, so
 *     two slots may carry the same name: collect() merges them.
 */
#include "metrics.h"

#include "snapwire.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARED_SHARD METRICS_MAX_WORKERS
#define OTHER_SLOT METRICS_MAX_ROUTES

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY };

typedef atomic_uint_fast64_t counter;

struct shard {
    counter requests[METRICS_MAX_ROUTES + 1][5]; /* [route slot][status class - 1] */
    counter buckets[METRICS_N_BUCKETS + 1];      /* not cumulative; last is +Inf */
    counter duration_ns;
    counter conns_opened, conns_closed;
    counter upstream_connections, connect_errors, upstream_timeouts, pool_reused;
    counter tls_handshakes[METRICS_TLS_N];
    counter mirror[METRICS_MIRROR_N];
    counter retries, retry_budget_exhausted;
    counter route_timeouts[2];
    counter pool_pruned;
    counter outlier_ejections, outlier_restorations;
    /* active health checks: [0] fail / to unhealthy, [1] pass / to healthy */
    counter health_checks[2], health_to[2], health_freed_unhealthy, health_fail_open;
    counter mesh_conns[METRICS_MESH_N];
    counter mesh_authz[2][2];
} __attribute__((aligned(64)));

struct route_slot {
    atomic_int state;
    char name[METRICS_ROUTE_LEN];
};

const double metrics_bucket_bounds[METRICS_N_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                         0.25,  0.5,   1,    2.5,   5,    10};

static struct shard shards[METRICS_MAX_WORKERS + 1];
static struct route_slot routes[METRICS_MAX_ROUTES];
static atomic_uint n_shards_used; /* highest worker id + 1 seen by metrics_worker_init */
static atomic_uint n_workers;
static counter m_generation, m_swaps, m_nacks;
static atomic_int m_tls_module;
static atomic_int m_mesh_identity;
static atomic_int m_mesh_feed;
static counter m_feed_requests[METRICS_FEED_N], m_feed_dest[3], m_feed_waits[2];
static counter m_mesh_requests[2], m_mesh_expiry;
static __thread struct shard *my_shard;

static struct shard *shard(void)
{
    return my_shard ? my_shard : &shards[SHARED_SHARD];
}

static void inc(counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/*
 * Adds to a counter of shard(): a worker is the only writer of its own shard, so a relaxed
 * load and store do (no locked add on the request path; readers still never see a torn
 * value); threads without a shard share one and add atomically.
 */
static void sinc(counter *c, uint64_t n)
{
    if (my_shard)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t load(counter *c)
{
    return (uint64_t)atomic_load_explicit(c, memory_order_relaxed);
}

void metrics_worker_init(unsigned id)
{
    unsigned seen;

    if (id >= METRICS_MAX_WORKERS) return;
    my_shard = &shards[id];
    atomic_fetch_add_explicit(&n_workers, 1, memory_order_relaxed);
    seen = atomic_load_explicit(&n_shards_used, memory_order_relaxed);
    while (seen < id + 1 &&
           !atomic_compare_exchange_weak_explicit(&n_shards_used, &seen, id + 1,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void metrics_snapshot_applied(uint64_t generation)
{
    atomic_store_explicit(&m_generation, generation, memory_order_relaxed);
    inc(&m_swaps, 1);
}

void metrics_snapshot_nacked(void)
{
    inc(&m_nacks, 1);
}

/* FNV-1a over at most METRICS_ROUTE_LEN - 1 bytes, the part a slot can hold. */
static size_t route_hash(const char *s, size_t *len)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; s[i] && i < METRICS_ROUTE_LEN - 1; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    *len = i;
    return h % METRICS_MAX_ROUTES;
}

/* The slot for a label: found, claimed, or OTHER_SLOT when the table is full. */
static size_t route_slot(const char *name)
{
    size_t len, i, probe, start = route_hash(name, &len);

    for (probe = 0; probe < METRICS_MAX_ROUTES; probe++) {
        struct route_slot *s = &routes[(start + probe) % METRICS_MAX_ROUTES];
        int st = atomic_load_explicit(&s->state, memory_order_acquire);

        if (st == SLOT_EMPTY) {
            if (!atomic_compare_exchange_strong_explicit(
                    &s->state, &st, SLOT_BUSY, memory_order_acquire, memory_order_acquire)) {
                if (st != SLOT_READY) continue; /* someone else is filling it */
            } else {
                memcpy(s->name, name, len);
                s->name[len] = '\0';
                atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
                return (start + probe) % METRICS_MAX_ROUTES;
            }
        }
        if (st != SLOT_READY) continue;
        for (i = 0; i < len && s->name[i] == name[i]; i++)
            ;
        if (i == len && s->name[len] == '\0') return (start + probe) % METRICS_MAX_ROUTES;
    }
    return OTHER_SLOT;
}

void metrics_request_done(const char *route, int status, double seconds)
{
    struct shard *sh = shard();
    int cls = status / 100;
    size_t b;

    if (cls < 1 || cls > 5) return; /* nothing was answered: not a request to count */
    if (!route || !*route) route = "none";
    sinc(&sh->requests[route_slot(route)][cls - 1], 1);
    if (!(seconds >= 0)) return; /* negative or NaN: no duration to observe */
    for (b = 0; b < METRICS_N_BUCKETS && seconds > metrics_bucket_bounds[b]; b++)
        ;
    sinc(&sh->buckets[b], 1);
    sinc(&sh->duration_ns, (uint64_t)(seconds * 1e9));
}

void metrics_conn_opened(void)
{
    sinc(&shard()->conns_opened, 1);
}

void metrics_conn_closed(void)
{
    sinc(&shard()->conns_closed, 1);
}

void metrics_upstream_connect_error(void)
{
    sinc(&shard()->connect_errors, 1);
}

void metrics_upstream_timeout(void)
{
    sinc(&shard()->upstream_timeouts, 1);
}

void metrics_tls_handshake(int result)
{
    if (result >= 0 && result < METRICS_TLS_N) sinc(&shard()->tls_handshakes[result], 1);
}

void metrics_mesh_conn(int kind)
{
    if (kind >= 0 && kind < METRICS_MESH_N) sinc(&shard()->mesh_conns[kind], 1);
}

void metrics_mesh_authz(int http, int allowed)
{
    sinc(&shard()->mesh_authz[http != 0][allowed != 0], 1);
}

void metrics_tls_module_loaded(void)
{
    atomic_store_explicit(&m_tls_module, 1, memory_order_relaxed);
}

void metrics_mesh_identity_request(int ok)
{
    atomic_store_explicit(&m_mesh_identity, 1, memory_order_relaxed);
    inc(&m_mesh_requests[ok ? 1 : 0], 1);
}

void metrics_mesh_identity_expiry(double not_after)
{
    atomic_store_explicit(&m_mesh_expiry, not_after > 0 ? (uint64_t)not_after : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&m_mesh_identity, 1, memory_order_relaxed);
}

void metrics_mesh_feed_request(int result)
{
    if (result >= 0 && result < METRICS_FEED_N) inc(&m_feed_requests[result], 1);
}

void metrics_mesh_feed_destinations(unsigned service, unsigned none, unsigned pending)
{
    atomic_store_explicit(&m_feed_dest[0], service, memory_order_relaxed);
    atomic_store_explicit(&m_feed_dest[1], none, memory_order_relaxed);
    atomic_store_explicit(&m_feed_dest[2], pending, memory_order_relaxed);
    atomic_store_explicit(&m_mesh_feed, 1, memory_order_relaxed);
}

void metrics_mesh_feed_wait(int timed_out)
{
    inc(&m_feed_waits[timed_out ? 1 : 0], 1);
}

void metrics_mirror(int result)
{
    if (result >= 0 && result < METRICS_MIRROR_N) sinc(&shard()->mirror[result], 1);
}

void metrics_retry(void)
{
    sinc(&shard()->retries, 1);
}

void metrics_retry_budget_exhausted(void)
{
    sinc(&shard()->retry_budget_exhausted, 1);
}

void metrics_route_timeout(int backend)
{
    sinc(&shard()->route_timeouts[backend ? 1 : 0], 1);
}

void metrics_outlier_ejected(void)
{
    sinc(&shard()->outlier_ejections, 1);
}

void metrics_outlier_restored(void)
{
    sinc(&shard()->outlier_restorations, 1);
}

/* --- active health checks (healthcheck.c; fail-open from snapshot picks) --- */
void metrics_health_check(int pass)
{
    sinc(&shard()->health_checks[pass ? 1 : 0], 1);
}

void metrics_health_transition(int to_healthy)
{
    sinc(&shard()->health_to[to_healthy ? 1 : 0], 1);
}

void metrics_health_freed_unhealthy(void)
{
    sinc(&shard()->health_freed_unhealthy, 1);
}

void metrics_health_fail_open(void)
{
    sinc(&shard()->health_fail_open, 1);
}
/* --- end of active health checks --- */

void metrics_pool_reused(void)
{
    sinc(&shard()->pool_reused, 1);
}

void metrics_pool_pruned(unsigned n)
{
    sinc(&shard()->pool_pruned, n);
}

void metrics_upstream_connected(void)
{
    sinc(&shard()->upstream_connections, 1);
}

static int route_cmp(const void *a, const void *b)
{
    return strcmp(((const struct metrics_route *)a)->name, ((const struct metrics_route *)b)->name);
}

/* Adds slot's counts over the shards in use into r. */
static void add_slot(struct metrics_route *r, size_t slot, unsigned n_sh)
{
    unsigned s;
    int k;

    for (s = 0; s < n_sh; s++) {
        struct shard *sh = &shards[s == n_sh - 1 ? SHARED_SHARD : s];
        for (k = 0; k < 5; k++)
            r->by_class[k] += load(&sh->requests[slot][k]);
    }
}

void metrics_collect(struct metrics_totals *t)
{
    /* shards 0..used-1 plus the shared one, which add_slot maps to the last index */
    unsigned n_sh = atomic_load_explicit(&n_shards_used, memory_order_relaxed) + 1, s;
    uint64_t opened = 0, closed = 0, ns = 0, hc_freed = 0;
    size_t i, j, b;
    int k;

    memset(t, 0, sizeof(*t));
    t->generation = load(&m_generation);
    t->tls_module = atomic_load_explicit(&m_tls_module, memory_order_relaxed);
    t->mesh_identity = atomic_load_explicit(&m_mesh_identity, memory_order_relaxed);
    t->mesh_identity_requests[0] = load(&m_mesh_requests[0]);
    t->mesh_identity_requests[1] = load(&m_mesh_requests[1]);
    t->mesh_identity_expiry = load(&m_mesh_expiry);
    t->mesh_feed = atomic_load_explicit(&m_mesh_feed, memory_order_relaxed);
    for (k = 0; k < METRICS_FEED_N; k++)
        t->mesh_feed_requests[k] = load(&m_feed_requests[k]);
    for (k = 0; k < 3; k++)
        t->mesh_feed_dest[k] = load(&m_feed_dest[k]);
    for (k = 0; k < 2; k++)
        t->mesh_feed_waits[k] = load(&m_feed_waits[k]);
    t->swaps = load(&m_swaps);
    t->nacks = load(&m_nacks);
    t->workers = atomic_load_explicit(&n_workers, memory_order_relaxed);
    for (s = 0; s < n_sh; s++) {
        struct shard *sh = &shards[s == n_sh - 1 ? SHARED_SHARD : s];
        opened += load(&sh->conns_opened);
        closed += load(&sh->conns_closed);
        t->upstream_connections += load(&sh->upstream_connections);
        t->upstream_connect_errors += load(&sh->connect_errors);
        t->upstream_timeouts += load(&sh->upstream_timeouts);
        t->pool_reused += load(&sh->pool_reused);
        t->pool_pruned += load(&sh->pool_pruned);
        t->outlier_ejections += load(&sh->outlier_ejections);
        t->outlier_restorations += load(&sh->outlier_restorations);
        for (k = 0; k < 2; k++) { /* active health checks */
            t->health_checks[k] += load(&sh->health_checks[k]);
            t->health_transitions[k] += load(&sh->health_to[k]);
        }
        hc_freed += load(&sh->health_freed_unhealthy);
        t->health_fail_open += load(&sh->health_fail_open);
        for (k = 0; k < METRICS_TLS_N; k++)
            t->tls_handshakes[k] += load(&sh->tls_handshakes[k]);
        for (k = 0; k < METRICS_MESH_N; k++)
            t->mesh_conns[k] += load(&sh->mesh_conns[k]);
        for (k = 0; k < 4; k++)
            t->mesh_authz[k / 2][k % 2] += load(&sh->mesh_authz[k / 2][k % 2]);
        for (k = 0; k < METRICS_MIRROR_N; k++)
            t->mirror[k] += load(&sh->mirror[k]);
        t->retries += load(&sh->retries);
        t->retry_budget_exhausted += load(&sh->retry_budget_exhausted);
        t->route_timeouts[0] += load(&sh->route_timeouts[0]);
        t->route_timeouts[1] += load(&sh->route_timeouts[1]);
        for (b = 0; b <= METRICS_N_BUCKETS; b++)
            t->buckets[b] += load(&sh->buckets[b]);
        ns += load(&sh->duration_ns);
    }
    /* active health checks: shards are read one by one, so never below 0 */
    if (t->health_transitions[0] > t->health_transitions[1] + hc_freed)
        t->health_unhealthy = t->health_transitions[0] - t->health_transitions[1] - hc_freed;
    t->conns_total = opened;
    t->conns_active = opened > closed ? opened - closed : 0; /* shards are read one by one */
    for (b = 1; b <= METRICS_N_BUCKETS; b++)
        t->buckets[b] += t->buckets[b - 1];
    t->duration_count = t->buckets[METRICS_N_BUCKETS];
    t->duration_sum = (double)ns / 1e9;

    for (i = 0; i < METRICS_MAX_ROUTES; i++) {
        struct metrics_route *r = NULL;
        if (atomic_load_explicit(&routes[i].state, memory_order_acquire) != SLOT_READY) continue;
        for (j = 0; j < t->n_routes && !r; j++) /* a duplicate slot folds into the first */
            if (!strcmp(t->routes[j].name, routes[i].name)) r = &t->routes[j];
        if (!r) {
            r = &t->routes[t->n_routes++];
            memcpy(r->name, routes[i].name, sizeof(r->name));
        }
        add_slot(r, i, n_sh);
    }
    {
        struct metrics_route other = {.name = "other"};
        add_slot(&other, OTHER_SLOT, n_sh);
        for (k = 0; k < 5 && !other.by_class[k]; k++)
            ;
        if (k < 5) t->routes[t->n_routes++] = other;
    }
    qsort(t->routes, t->n_routes, sizeof(t->routes[0]), route_cmp);
    for (i = 0; i < t->n_routes; i++)
        for (k = 0; k < 5; k++)
            t->requests_by_class[k] += t->routes[i].by_class[k];
}

void metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter_line(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    metrics_family(f, name, type, help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

void metrics_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void render(FILE *f, const struct metrics_totals *t)
{
    size_t i;
    int k;

    counter_line(f, "strait_snapshot_generation", "gauge", "Generation of the snapshot in use.",
                 t->generation);
    counter_line(f, "strait_snapshot_swaps_total", "counter", "Snapshots applied.", t->swaps);
    counter_line(f, "strait_snapshot_nacks_total", "counter", "Snapshot frames rejected (NACKed).",
                 t->nacks);
    metrics_family(f, "strait_requests_total", "counter",
                   "Responses sent to clients, by route and status class.");
    for (i = 0; i < t->n_routes; i++)
        for (k = 0; k < 5; k++) {
            fputs("strait_requests_total{route=\"", f);
            metrics_label_value(f, t->routes[i].name);
            fprintf(f, "\",code=\"%dxx\"} %llu\n", k + 1,
                    (unsigned long long)t->routes[i].by_class[k]);
        }
    metrics_family(f, "strait_request_duration_seconds", "histogram",
                   "Time from request head to the end of the response.");
    for (i = 0; i < METRICS_N_BUCKETS; i++)
        fprintf(f, "strait_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                metrics_bucket_bounds[i], (unsigned long long)t->buckets[i]);
    fprintf(f, "strait_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)t->buckets[METRICS_N_BUCKETS]);
    fprintf(f, "strait_request_duration_seconds_sum %.9f\n", t->duration_sum);
    fprintf(f, "strait_request_duration_seconds_count %llu\n",
            (unsigned long long)t->duration_count);
    counter_line(f, "strait_connections_total", "counter", "Client connections accepted.",
                 t->conns_total);
    counter_line(f, "strait_connections_active", "gauge", "Client connections open now.",
                 t->conns_active);
    counter_line(f, "strait_upstream_connections_total", "counter",
                 "Upstream connections established.", t->upstream_connections);
    counter_line(f, "strait_upstream_connect_errors_total", "counter",
                 "Upstream connects that failed (error or connect timeout).",
                 t->upstream_connect_errors);
    counter_line(f, "strait_upstream_timeouts_total", "counter",
                 "Established upstream connections that timed out.", t->upstream_timeouts);
    counter_line(f, "strait_upstream_pool_reused_total", "counter",
                 "Requests sent on a reused pooled upstream connection.", t->pool_reused);
    counter_line(f, "strait_upstream_pool_pruned_total", "counter",
                 "Idle pooled upstream connections closed because a new snapshot no longer has "
                 "their endpoint ready.",
                 t->pool_pruned);
    counter_line(f, "strait_tls_module_loaded", "gauge",
                 "1 once the TLS module (strait-tls.so) is loaded: at start-up with --listen-tls, "
                 "else with the first snapshot that has certificates or upstream TLS.",
                 t->tls_module);
    metrics_family(f, "strait_tls_handshakes_total", "counter",
                   "TLS handshakes on the HTTPS listeners, by result.");
    for (k = 0; k < METRICS_TLS_N; k++) {
        static const char *const results[METRICS_TLS_N] = {"full", "resumed", "failed"};
        fprintf(f, "strait_tls_handshakes_total{result=\"%s\"} %llu\n", results[k],
                (unsigned long long)t->tls_handshakes[k]);
    }
    if (t->mesh_feed) {
        static const char *const results[METRICS_FEED_N] = {"update", "unchanged", "error"};
        static const char *const states[3] = {"service", "none", "pending"};
        metrics_family(f, "strait_mesh_feed_requests_total", "counter",
                       "Requests of the sidecar to the controller's discovery feed, by outcome: a "
                       "new snapshot, the long poll ran out unchanged, or an error.");
        for (k = 0; k < METRICS_FEED_N; k++)
            fprintf(f, "strait_mesh_feed_requests_total{result=\"%s\"} %llu\n", results[k],
                    (unsigned long long)t->mesh_feed_requests[k]);
        metrics_family(f, "strait_mesh_feed_destinations", "gauge",
                       "Destinations (ClusterIP:port) the sidecar's pod uses, by what the feed "
                       "said: a Service, no Service, or not answered yet.");
        for (k = 0; k < 3; k++)
            fprintf(f, "strait_mesh_feed_destinations{state=\"%s\"} %llu\n", states[k],
                    (unsigned long long)t->mesh_feed_dest[k]);
        metrics_family(f, "strait_mesh_feed_waits_total", "counter",
                       "Connections that waited for their destination's answer, by outcome.");
        fprintf(f, "strait_mesh_feed_waits_total{outcome=\"answered\"} %llu\n",
                (unsigned long long)t->mesh_feed_waits[0]);
        fprintf(f, "strait_mesh_feed_waits_total{outcome=\"timed_out\"} %llu\n",
                (unsigned long long)t->mesh_feed_waits[1]);
    }
    if (t->mesh_identity) {
        metrics_family(f, "strait_mesh_identity_requests_total", "counter",
                       "Requests of the sidecar to the controller's identity endpoint, by result.");
        fprintf(f, "strait_mesh_identity_requests_total{result=\"ok\"} %llu\n",
                (unsigned long long)t->mesh_identity_requests[1]);
        fprintf(f, "strait_mesh_identity_requests_total{result=\"error\"} %llu\n",
                (unsigned long long)t->mesh_identity_requests[0]);
        counter_line(f, "strait_mesh_identity_expiry_seconds", "gauge",
                     "notAfter (UNIX time) of the sidecar's workload certificate; 0 before the "
                     "first.",
                     t->mesh_identity_expiry);
        metrics_family(f, "strait_mesh_connections_total", "counter",
                       "Sidecar connections: inbound by how the peer came (mTLS, plaintext in "
                       "permissive mode, refused), outbound by how the sidecar went on (mTLS to a "
                       "meshed Service, plain to an unmeshed one, passthrough to a non-Service).");
        for (k = 0; k < METRICS_MESH_N; k++) {
            static const char *const kinds[METRICS_MESH_N] = {
                "inbound_mtls",  "inbound_plaintext", "inbound_refused",
                "outbound_mtls", "outbound_plain",    "outbound_passthrough"};
            fprintf(f, "strait_mesh_connections_total{kind=\"%s\"} %llu\n", kinds[k],
                    (unsigned long long)t->mesh_conns[k]);
        }
        metrics_family(f, "strait_mesh_authz_total", "counter",
                       "Inbound authorization decisions (AuthorizationPolicy): HTTP requests "
                       "denied get 403, TCP connections denied are reset.");
        for (k = 0; k < 4; k++)
            fprintf(f, "strait_mesh_authz_total{protocol=\"%s\",decision=\"%s\"} %llu\n",
                    k / 2 ? "http" : "tcp", k % 2 ? "allow" : "deny",
                    (unsigned long long)t->mesh_authz[k / 2][k % 2]);
    }
    metrics_family(f, "strait_mirror_requests_total", "counter",
                   "Mirrored request copies (RequestMirror), by how they ended.");
    for (k = 0; k < METRICS_MIRROR_N; k++) {
        static const char *const results[METRICS_MIRROR_N] = {"completed", "cut", "failed",
                                                              "skipped"};
        fprintf(f, "strait_mirror_requests_total{result=\"%s\"} %llu\n", results[k],
                (unsigned long long)t->mirror[k]);
    }
    counter_line(f, "strait_retries_total", "counter", "Requests retried on another attempt.",
                 t->retries);
    counter_line(f, "strait_retry_budget_exhausted_total", "counter",
                 "Retries not made because the route's retry budget was spent.",
                 t->retry_budget_exhausted);
    metrics_family(f, "strait_route_timeouts_total", "counter",
                   "Route timeouts that fired, by kind (whole request or one backend attempt).");
    fprintf(f, "strait_route_timeouts_total{kind=\"request\"} %llu\n",
            (unsigned long long)t->route_timeouts[0]);
    fprintf(f, "strait_route_timeouts_total{kind=\"backend\"} %llu\n",
            (unsigned long long)t->route_timeouts[1]);
    counter_line(f, "strait_outlier_ejections_total", "counter",
                 "Endpoints ejected by outlier detection (consecutive failures).",
                 t->outlier_ejections);
    counter_line(f, "strait_outlier_ejected", "gauge",
                 "Endpoints ejected by outlier detection now (restored lazily, on the next pick "
                 "after the ejection time).",
                 t->outlier_ejections > t->outlier_restorations
                     ? t->outlier_ejections - t->outlier_restorations
                     : 0);
    /* --- active health checks --- */
    metrics_family(f, "strait_health_checks_total", "counter",
                   "Active health check probes, by result (pass: status in the cluster's range).");
    fprintf(f, "strait_health_checks_total{result=\"pass\"} %llu\n",
            (unsigned long long)t->health_checks[1]);
    fprintf(f, "strait_health_checks_total{result=\"fail\"} %llu\n",
            (unsigned long long)t->health_checks[0]);
    metrics_family(f, "strait_health_transitions_total", "counter",
                   "Endpoints that active health checks turned healthy or unhealthy.");
    fprintf(f, "strait_health_transitions_total{to=\"healthy\"} %llu\n",
            (unsigned long long)t->health_transitions[1]);
    fprintf(f, "strait_health_transitions_total{to=\"unhealthy\"} %llu\n",
            (unsigned long long)t->health_transitions[0]);
    counter_line(f, "strait_health_unhealthy_endpoints", "gauge",
                 "Endpoints active health checks consider unhealthy now.", t->health_unhealthy);
    counter_line(f, "strait_health_fail_open_total", "counter",
                 "Picks made while every endpoint of the cluster was unhealthy, so all were used.",
                 t->health_fail_open);
    /* --- end of active health checks --- */
}

/* strait_tls_certificate_expiry_seconds: not_after of every server certificate of sw. */
static void render_certs(FILE *f, const struct snapwire_snapshot *sw)
{
    uint32_t i;

    metrics_family(f, "strait_tls_certificate_expiry_seconds", "gauge",
                   "Expiry (Unix seconds) of the server certificates in the current snapshot.");
    for (i = 0; sw && i < sw->n_certs; i++) {
        if (!sw->certs[i].key_pem || !sw->certs[i].key_pem[0]) continue; /* a CA bundle */
        fputs("strait_tls_certificate_expiry_seconds{cert=\"", f);
        metrics_label_value(f, sw->certs[i].name ? sw->certs[i].name : "");
        fprintf(f, "\"} %llu\n", (unsigned long long)sw->certs[i].not_after);
    }
}

char *metrics_render(void)
{
    return metrics_render_snapshot(NULL);
}

char *metrics_render_snapshot(const struct snapwire_snapshot *sw)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    char *out = NULL;
    size_t len = 0;
    FILE *f;

    if (!t) return NULL;
    metrics_collect(t);
    f = open_memstream(&out, &len);
    if (!f) goto free_totals;
    render(f, t);
    render_certs(f, sw);
    if (fclose(f) != 0) {
        free(out);
        out = NULL;
    }
free_totals:
    free(t);
    return out;
}
