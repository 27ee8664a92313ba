/*
 * clusterstats: per-cluster and per-endpoint numbers (see clusterstats.h).
 *
 * Does: read the snapshot's cluster records (clusterstate.h), endpoint records (outlier.h)
 * and health check targets (healthcheck.h) and render them. Does not: count anything.
 * Invariant: runs on the main loop, on the controller client's current snapshot (which only
 * that loop swaps), so it needs no reference.
 */
#include "clusterstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"
#include "clusterstate.h"
#include "healthcheck.h"
#include "jsongen.h"
#include "metrics.h"
#include "outlier.h"
#include "snapshot.h"

/* One endpoint's facts at now (monotonic ms). */
struct ep_view {
    char key[64]; /* "address:port" ([v6]:port) */
    struct outlier_ep_stats st;
    int ejected, has_hc, healthy, slow;
    struct hc_info hc;
};

static void ep_view(const struct snapshot_cluster *c, uint32_t i, uint64_t now, struct ep_view *v)
{
    const struct snapshot_endpoint *e = &c->ready[i];

    memset(v, 0, sizeof(*v));
    snprintf(v->key, sizeof(v->key), strchr(e->address, ':') ? "[%s]:%u" : "%s:%u", e->address,
             (unsigned)e->port);
    outlier_stats(c->outlier, i, &v->st);
    v->ejected = v->st.ejected_until_ms > now;
    v->healthy = 1;
    if (c->hc && c->hc[i]) {
        v->has_hc = 1;
        healthcheck_info(c->hc[i], &v->hc);
        v->healthy = v->hc.healthy;
    }
    v->slow = c->sw->slow_start_ms && v->st.added_ms && now - v->st.added_ms < c->sw->slow_start_ms;
}

static const char *ep_state(const struct ep_view *v)
{
    if (v->ejected) return "ejected";
    if (!v->healthy) return "unhealthy";
    if (v->slow) return "slow_start";
    return "healthy";
}

static const char *lb_name(uint8_t lb)
{
    static const char *const names[] = {"?",    "round_robin", "least_request",
                                        "ewma", "ring_hash",   "maglev"};

    return lb < sizeof(names) / sizeof(names[0]) ? names[lb] : "?";
}

static void cluster_label(FILE *f, const struct snapshot_cluster *c)
{
    fputs("{cluster=\"", f);
    metrics_label_value(f, c->sw->name);
    fputc('"', f);
}

/* One gauge or counter family over every cluster; get returns cluster c's value. */
static void cluster_family(FILE *f, const struct snapshot *s, const char *name, const char *type,
                           const char *help, uint64_t (*get)(const struct snapshot_cluster *c))
{
    uint32_t i;

    metrics_family(f, name, type, help);
    for (i = 0; i < s->sw.n_clusters; i++) {
        fputs(name, f);
        cluster_label(f, &s->clusters[i]);
        fprintf(f, "} %llu\n", (unsigned long long)get(&s->clusters[i]));
    }
}

static uint64_t get_active(const struct snapshot_cluster *c)
{
    return clusterstate_gauge(c->cs, CLUSTERSTATE_REQUESTS);
}
static uint64_t get_pending(const struct snapshot_cluster *c)
{
    return clusterstate_gauge(c->cs, CLUSTERSTATE_PENDING);
}
static uint64_t get_conns(const struct snapshot_cluster *c)
{
    return clusterstate_gauge(c->cs, CLUSTERSTATE_CONNECTIONS);
}
static uint64_t get_exhausted(const struct snapshot_cluster *c)
{
    return atomic_load_explicit(&c->cs->budget_exhausted, memory_order_relaxed);
}

/* Per endpoint families: what picks a value of a view, and how it prints. */
enum ep_field {
    EP_REQUESTS,
    EP_ERRORS,
    EP_LATENCY,
    EP_EJECTIONS,
    EP_EJECTED,
    EP_HEALTHY,
    EP_WEIGHT
};

/*
 * One family over every endpoint of s; v holds each endpoint's view, in cluster order (made
 * once per render: a view reads counters and takes the health check lock).
 */
static void endpoint_family(FILE *f, const struct snapshot *s, const struct ep_view *v,
                            const char *name, const char *type, const char *help,
                            enum ep_field what)
{
    uint32_t i, j;

    metrics_family(f, name, type, help);
    for (i = 0; i < s->sw.n_clusters; i++) {
        const struct snapshot_cluster *c = &s->clusters[i];
        for (j = 0; j < c->n_ready; j++, v++) {
            fputs(name, f);
            cluster_label(f, c);
            fputs(",endpoint=\"", f);
            metrics_label_value(f, v->key);
            fputs("\"} ", f);
            switch (what) {
            case EP_REQUESTS:
                fprintf(f, "%llu\n", (unsigned long long)v->st.requests);
                break;
            case EP_ERRORS:
                fprintf(f, "%llu\n", (unsigned long long)v->st.errors);
                break;
            case EP_LATENCY:
                fprintf(f, "%.6f\n", (double)v->st.latency_ewma_ns / 1e9);
                break;
            case EP_EJECTIONS:
                fprintf(f, "%u\n", v->st.ejections);
                break;
            case EP_EJECTED:
                fprintf(f, "%d\n", v->ejected);
                break;
            case EP_HEALTHY:
                fprintf(f, "%d\n", v->healthy);
                break;
            case EP_WEIGHT:
                fprintf(f, "%u\n", c->ready[j].weight);
                break;
            }
        }
    }
}

/* The families of s into f; -1 when out of memory. */
static int render(FILE *f, const struct snapshot *s)
{
    uint64_t now = outlier_now_ms();
    struct ep_view *v;
    size_t n = 0, e = 0;
    uint32_t i, j;
    int k;

    for (i = 0; i < s->sw.n_clusters; i++)
        n += s->clusters[i].n_ready;
    if (!(v = calloc(n ? n : 1, sizeof(*v)))) return -1;
    for (i = 0; i < s->sw.n_clusters; i++)
        for (j = 0; j < s->clusters[i].n_ready; j++)
            ep_view(&s->clusters[i], j, now, &v[e++]);

    cluster_family(f, s, "strait_cluster_requests_active", "gauge",
                   "Requests in flight to the cluster (circuit breaking: strait.dev/max-requests).",
                   get_active);
    cluster_family(
        f, s, "strait_cluster_requests_pending", "gauge",
        "Requests waiting for a new upstream connection (strait.dev/max-pending-requests).",
        get_pending);
    cluster_family(f, s, "strait_cluster_upstream_connections", "gauge",
                   "Upstream connections in use by the cluster: connecting or carrying a request "
                   "(strait.dev/max-connections).",
                   get_conns);
    metrics_family(f, "strait_cluster_overflow_total", "counter",
                   "Requests answered 503 with x-strait-overflow: 1, by the limit they hit.");
    for (i = 0; i < s->sw.n_clusters; i++)
        for (k = 0; k < CLUSTERSTATE_N_LIMITS; k++) {
            fputs("strait_cluster_overflow_total", f);
            cluster_label(f, &s->clusters[i]);
            fprintf(f, ",limit=\"%s\"} %llu\n", clusterstate_limit_name((enum clusterstate_limit)k),
                    (unsigned long long)atomic_load_explicit(&s->clusters[i].cs->overflows[k],
                                                             memory_order_relaxed));
        }
    cluster_family(f, s, "strait_cluster_retry_budget_exhausted_total", "counter",
                   "Retries refused because the cluster's retry budget was spent.", get_exhausted);
    endpoint_family(f, s, v, "strait_endpoint_requests_total", "counter",
                    "Attempts completed by the endpoint.", EP_REQUESTS);
    endpoint_family(f, s, v, "strait_endpoint_errors_total", "counter",
                    "Attempts that failed (connect error, reset, timeout, 5xx).", EP_ERRORS);
    endpoint_family(f, s, v, "strait_endpoint_latency_ewma_seconds", "gauge",
                    "Exponentially weighted mean latency of the endpoint's attempts.", EP_LATENCY);
    endpoint_family(f, s, v, "strait_endpoint_ejections_total", "counter",
                    "Times outlier detection ejected the endpoint.", EP_EJECTIONS);
    endpoint_family(f, s, v, "strait_endpoint_ejected", "gauge",
                    "1 while outlier detection keeps the endpoint out of rotation.", EP_EJECTED);
    endpoint_family(f, s, v, "strait_endpoint_healthy", "gauge",
                    "0 while the endpoint fails its active health checks, else 1.", EP_HEALTHY);
    endpoint_family(f, s, v, "strait_endpoint_weight", "gauge", "The endpoint's balancing weight.",
                    EP_WEIGHT);
    free(v);
    return 0;
}

char *clusterstats_append(char *metrics, struct snapshot *s)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f;

    if (!metrics || !s || !s->sw.n_clusters) return metrics;
    if (!(f = open_memstream(&out, &len))) {
        free(metrics);
        return NULL;
    }
    fputs(metrics, f);
    free(metrics);
    if (render(f, s) < 0) {
        fclose(f);
        free(out);
        return NULL;
    }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static void ep_json(yajl_gen g, const struct snapshot_cluster *c, uint32_t i, uint64_t now)
{
    struct ep_view v;

    ep_view(c, i, now, &v);
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "address", c->ready[i].address);
    jsongen_kv_uint(g, "port", c->ready[i].port);
    jsongen_kv_uint(g, "weight", c->ready[i].weight);
    jsongen_kv_str(g, "state", ep_state(&v));
    jsongen_kv_uint(g, "requests", v.st.requests);
    jsongen_kv_uint(g, "errors", v.st.errors);
    jsongen_kv_double(g, "latency_ewma_ms", (double)v.st.latency_ewma_ns / 1e6);
    if (c->bal == &bal_ewma_ops)
        jsongen_kv_double(g, "balancer_ewma_ms", (double)bal_ewma_estimate(c->bal_state, i) / 1e6);
    jsongen_kv_uint(g, "ejections", v.st.ejections);
    jsongen_kv_uint(g, "ejected_for_ms", v.ejected ? v.st.ejected_until_ms - now : 0);
    if (v.slow)
        jsongen_kv_uint(g, "slow_start_left_ms", c->sw->slow_start_ms - (now - v.st.added_ms));
    if (v.has_hc) {
        jsongen_str(g, "health_check");
        yajl_gen_map_open(g);
        jsongen_str(g, "healthy");
        yajl_gen_bool(g, v.hc.healthy);
        jsongen_kv_uint(g, "checks", v.hc.checks);
        jsongen_kv_uint(g, "failures", v.hc.failures);
        jsongen_kv_uint(g, "consecutive_ok", v.hc.consecutive_ok);
        jsongen_kv_uint(g, "consecutive_fail", v.hc.consecutive_fail);
        jsongen_kv_uint(g, "last_status", v.hc.last_status);
        jsongen_kv_str(g, "last_error", v.hc.last_error);
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
}

void clusterstats_json(yajl_gen g, struct snapshot *s)
{
    uint64_t now = outlier_now_ms();
    uint32_t i, j;
    int k;

    yajl_gen_array_open(g);
    for (i = 0; s && i < s->sw.n_clusters; i++) {
        const struct snapshot_cluster *c = &s->clusters[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", c->sw->name);
        jsongen_kv_str(g, "lb", lb_name(c->sw->lb));
        jsongen_kv_uint(g, "requests_active", clusterstate_gauge(c->cs, CLUSTERSTATE_REQUESTS));
        jsongen_kv_uint(g, "requests_pending", clusterstate_gauge(c->cs, CLUSTERSTATE_PENDING));
        jsongen_kv_uint(g, "upstream_connections",
                        clusterstate_gauge(c->cs, CLUSTERSTATE_CONNECTIONS));
        jsongen_str(g, "overflows");
        yajl_gen_map_open(g);
        for (k = 0; k < CLUSTERSTATE_N_LIMITS; k++)
            jsongen_kv_uint(g, clusterstate_limit_name((enum clusterstate_limit)k),
                            atomic_load_explicit(&c->cs->overflows[k], memory_order_relaxed));
        yajl_gen_map_close(g);
        jsongen_kv_uint(g, "retry_budget_exhausted", get_exhausted(c));
        jsongen_str(g, "endpoints");
        yajl_gen_array_open(g);
        for (j = 0; j < c->n_ready; j++)
            ep_json(g, c, j, now);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}
