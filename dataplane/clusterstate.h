/*
 * clusterstate: what every request to one cluster shares, over all workers and across
 * snapshot swaps: the circuit breaker's gauges (upstream connections, requests waiting for
 * one, requests in flight), the cluster's retry budget and its overflow counts.
 *
 * A snapshot's cluster holds one reference; the next snapshot's cluster of the same name
 * shares the record (clusterstate_carry), so a request started before a swap is still
 * counted, and ends, on the record its successors check. Upstream connections in use point
 * at it without a reference (their request's snapshot holds one); an idle pooled connection
 * does not count against max connections: with one pool per worker, an idle connection in
 * one worker's pool must not starve the others.
 *
 * Limits come from the snapshot (snapwire cluster cb_*): each check takes the limit of the
 * snapshot the request runs on; 0 means unlimited. A check that would exceed the limit does
 * not count and says so; the caller answers 503 with x-strait-overflow: 1 (Envoy's circuit
 * breakers, which answer with x-envoy-overloaded).
 *
 * Threads: everything here is lock-free (relaxed atomics) and callable from any worker.
 */
#ifndef STRAIT_CLUSTERSTATE_H
#define STRAIT_CLUSTERSTATE_H

#include <stdatomic.h>
#include <stdint.h>

#include "retrybudget.h"

enum clusterstate_limit {
    CLUSTERSTATE_CONNECTIONS = 0, /* upstream connections in use (connecting or carrying one) */
    CLUSTERSTATE_PENDING = 1,     /* requests waiting for a new upstream connection */
    CLUSTERSTATE_REQUESTS = 2,    /* requests (attempts) in flight */
    CLUSTERSTATE_N_LIMITS = 3,
};

struct clusterstate {
    atomic_uint refs;
    atomic_uint gauge[CLUSTERSTATE_N_LIMITS];
    atomic_uint_fast64_t overflows[CLUSTERSTATE_N_LIMITS]; /* refused for each limit */
    struct retry_budget budget; /* the cluster's (strait.dev/retry-budget-*) */
    atomic_uint_fast64_t budget_exhausted;
    char name[];
};

/*
 * The record for cluster name: prev (the previous snapshot's record of the same cluster:
 * shared, one more reference) when not NULL, else a new one. NULL on allocation failure.
 */
struct clusterstate *clusterstate_carry(const char *name, struct clusterstate *prev);
struct clusterstate *clusterstate_ref(struct clusterstate *cs);
void clusterstate_unref(struct clusterstate *cs); /* NULL is fine */

/*
 * Counts one more of what (a connection, a pending request, a request) against limit
 * (0: unlimited): 0, or -1 without counting it when that would go above limit (the
 * overflow is counted in cs->overflows, which /metrics shows per cluster).
 */
int clusterstate_acquire(struct clusterstate *cs, enum clusterstate_limit what, uint32_t limit);
/* Ends one counted by clusterstate_acquire. */
void clusterstate_release(struct clusterstate *cs, enum clusterstate_limit what);

static inline uint32_t clusterstate_gauge(const struct clusterstate *cs,
                                          enum clusterstate_limit what)
{
    return atomic_load_explicit(&cs->gauge[what], memory_order_relaxed);
}

/* The limit's name in metrics and logs: "connections", "pending", "requests". */
const char *clusterstate_limit_name(enum clusterstate_limit what);

#endif
