/*
 * outlier: passive outlier detection (Envoy's consecutive_5xx), and the per-endpoint record
 * that carries an endpoint's counters and join time across snapshots. Per cluster, per endpoint:
 * OUTLIER_CONSECUTIVE failures in a row (connect error, reset, timeout, 5xx: whatever the
 * caller reports with ok = 0) eject the endpoint for OUTLIER_BASE_EJECTION_MS times the number
 * of times it has been ejected (at most OUTLIER_MAX_EJECTION_MS); a success resets the run.
 * Never more than OUTLIER_MAX_EJECTION_PERCENT of the cluster's endpoints are ejected at once
 * (floor(n * percent / 100), so a cluster of one endpoint never ejects it, and never all of
 * them): an ejection that would exceed that is not made (the run continues, the next failure
 * tries again).
 *
 * State: one struct outlier_state per cluster of a snapshot, holding a refcounted record per
 * endpoint. A state built with the previous snapshot's state of the same cluster shares the
 * records of endpoints whose identity ("address:port") did not change, so an ejection, its
 * count and the failure run survive a snapshot swap, and workers still on the old snapshot
 * update the same records.
 *
 * Threads: report and ejected run concurrently on every worker (relaxed atomics; an ejection
 * is decided under a per-state try-lock, a report that does not get it leaves the run for the
 * next failure). create and destroy run on one thread at a time per state.
 *
 * Restoration is lazy: the first ejected() check (a pick) or ejection decision after the time
 * is up restores the endpoint (logs event=outlier_restored, counts it in metrics).
 */
#ifndef STRAIT_OUTLIER_H
#define STRAIT_OUTLIER_H

#include <stdint.h>

#include "balancer.h"

/* Defaults (a snapshot cluster carries its own settings: strait.dev/outlier-* annotations). */
#define OUTLIER_CONSECUTIVE 5            /* failures in a row that eject */
#define OUTLIER_BASE_EJECTION_MS 30000u  /* first ejection; the nth lasts n times this */
#define OUTLIER_MAX_EJECTION_MS 300000u  /* cap on one ejection's length */
#define OUTLIER_MAX_EJECTION_PERCENT 50u /* share of a cluster's endpoints ejected at once */

struct outlier_config {
    uint32_t consecutive; /* 0: detection off (records and counters still kept) */
    uint64_t base_ms, max_ms;
    uint32_t max_percent;
};

/* The defaults above. */
extern const struct outlier_config outlier_defaults;

struct outlier_state;

/*
 * State for the endpoints eps (keys identify them; eps->n may be 0) of cluster name (copied,
 * for logs), sharing the records of prev (NULL, or the previous state of this cluster) for
 * endpoints with the same key. cfg NULL: outlier_defaults. NULL on allocation failure.
 */
struct outlier_state *outlier_create(const char *name, const struct balancer_endpoints *eps,
                                     const struct outlier_state *prev,
                                     const struct outlier_config *cfg);
void outlier_destroy(struct outlier_state *st);

/*
 * The outcome of one attempt on endpoint idx (ok 0: failure) at now_ms (CLOCK_MONOTONIC ms;
 * 0 reads the clock). Returns 1 when this report ejected the endpoint, else 0. Reports for an
 * endpoint that is ejected are ignored (requests sent before the ejection finishing).
 */
int outlier_report(struct outlier_state *st, uint32_t idx, int ok, uint64_t now_ms);

/* Whether endpoint idx is ejected at now_ms (0 reads the clock only when it may be). */
int outlier_ejected(struct outlier_state *st, uint32_t idx, uint64_t now_ms);

/* Introspection (tests, admin): endpoints ejected now; times endpoint idx was ejected. */
uint32_t outlier_n_ejected(struct outlier_state *st, uint64_t now_ms);
uint32_t outlier_ejections(const struct outlier_state *st, uint32_t idx);
/* The time endpoint idx's ejection ends (monotonic ms), 0 when it is not ejected. */
uint64_t outlier_ejected_until(const struct outlier_state *st, uint32_t idx);

/*
 * The endpoint's counters, kept in its record (so across snapshots): every completed attempt
 * (ok 0: failure) with its latency. Counted even while ejected (requests already sent).
 */
void outlier_observe(struct outlier_state *st, uint32_t idx, int ok, uint64_t latency_ns);

struct outlier_ep_stats {
    uint64_t requests, errors;
    uint64_t latency_ewma_ns; /* exponentially weighted (1/8) mean latency, 0: no sample yet */
    uint32_t ejections;
    uint64_t ejected_until_ms; /* 0: not ejected (or its time is up and not yet restored) */
    uint64_t added_ms;         /* see outlier_added_ms */
};
void outlier_stats(const struct outlier_state *st, uint32_t idx, struct outlier_ep_stats *out);

/*
 * When endpoint idx joined its cluster (monotonic ms): the time its record was made for a
 * state built on a previous one (an endpoint added to a running cluster); 0 for the
 * endpoints a cluster starts with, which slow start leaves alone.
 */
uint64_t outlier_added_ms(const struct outlier_state *st, uint32_t idx);

/* CLOCK_MONOTONIC in ms (never 0). */
uint64_t outlier_now_ms(void);

#endif
