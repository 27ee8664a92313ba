/*
 * metrics: the counters behind GET /metrics.
 * Does: relaxed atomic increments callable from any thread, one text rendering with HELP
 * and TYPE for every family (the Prometheus text format, version 0.0.4).
 * Does not: histograms, per-route labels (later issues).
 * Invariant: counters (the *_total families) only grow; the gauges are the generation and
 * the active-connection count.
 */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_uint_fast64_t m_generation;
static atomic_uint_fast64_t m_swaps;
static atomic_uint_fast64_t m_nacks;
static atomic_uint_fast64_t m_requests[6]; /* index 1..5 for 1xx..5xx */
static atomic_int_fast64_t m_conns;
static atomic_uint_fast64_t m_conns_total;
static atomic_uint_fast64_t m_connect_errors;

void metrics_snapshot_applied(uint64_t generation)
{
    atomic_store_explicit(&m_generation, generation, memory_order_relaxed);
    atomic_fetch_add_explicit(&m_swaps, 1, memory_order_relaxed);
}

void metrics_snapshot_nacked(void)
{
    atomic_fetch_add_explicit(&m_nacks, 1, memory_order_relaxed);
}

void metrics_response(int status)
{
    int cls = status / 100;

    if (cls >= 1 && cls <= 5) atomic_fetch_add_explicit(&m_requests[cls], 1, memory_order_relaxed);
}

void metrics_conn_opened(void)
{
    atomic_fetch_add_explicit(&m_conns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m_conns_total, 1, memory_order_relaxed);
}

void metrics_conn_closed(void)
{
    atomic_fetch_sub_explicit(&m_conns, 1, memory_order_relaxed);
}

void metrics_upstream_connect_error(void)
{
    atomic_fetch_add_explicit(&m_connect_errors, 1, memory_order_relaxed);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static unsigned long long load(atomic_uint_fast64_t *v)
{
    return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

char *metrics_render(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    int i;

    if (!f) return NULL;
    family(f, "strait_snapshot_generation", "gauge", "Generation of the snapshot in use.");
    fprintf(f, "strait_snapshot_generation %llu\n", load(&m_generation));
    family(f, "strait_snapshot_swaps_total", "counter", "Snapshots applied.");
    fprintf(f, "strait_snapshot_swaps_total %llu\n", load(&m_swaps));
    family(f, "strait_snapshot_nacks_total", "counter", "Snapshot frames rejected (NACKed).");
    fprintf(f, "strait_snapshot_nacks_total %llu\n", load(&m_nacks));
    family(f, "strait_requests_total", "counter", "Responses sent to clients, by status class.");
    for (i = 1; i <= 5; i++)
        fprintf(f, "strait_requests_total{code=\"%dxx\"} %llu\n", i, load(&m_requests[i]));
    family(f, "strait_connections_total", "counter", "Client connections accepted.");
    fprintf(f, "strait_connections_total %llu\n", load(&m_conns_total));
    family(f, "strait_connections_active", "gauge", "Client connections open now.");
    fprintf(f, "strait_connections_active %lld\n",
            (long long)atomic_load_explicit(&m_conns, memory_order_relaxed));
    family(f, "strait_upstream_connect_errors_total", "counter",
           "Upstream connects that failed (error or timeout).");
    fprintf(f, "strait_upstream_connect_errors_total %llu\n", load(&m_connect_errors));
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
