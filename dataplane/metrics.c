/*
 * metrics: the counters behind GET /metrics.
 * Does: relaxed atomic increments callable from any thread, one text rendering.
 * Does not: histograms, per-route labels (later issues).
 * Invariant: counters only grow, except the active-connection gauge.
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
}

void metrics_conn_closed(void)
{
    atomic_fetch_sub_explicit(&m_conns, 1, memory_order_relaxed);
}

char *metrics_render(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    int i;

    if (!f) return NULL;
    fprintf(f, "# TYPE strait_snapshot_generation gauge\nstrait_snapshot_generation %llu\n",
            (unsigned long long)atomic_load(&m_generation));
    fprintf(f, "# TYPE strait_snapshot_swaps_total counter\nstrait_snapshot_swaps_total %llu\n",
            (unsigned long long)atomic_load(&m_swaps));
    fprintf(f, "# TYPE strait_snapshot_nacks_total counter\nstrait_snapshot_nacks_total %llu\n",
            (unsigned long long)atomic_load(&m_nacks));
    fprintf(f, "# TYPE strait_requests_total counter\n");
    for (i = 1; i <= 5; i++)
        fprintf(f, "strait_requests_total{code=\"%dxx\"} %llu\n", i,
                (unsigned long long)atomic_load(&m_requests[i]));
    fprintf(f, "# TYPE strait_connections_active gauge\nstrait_connections_active %lld\n",
            (long long)atomic_load(&m_conns));
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
