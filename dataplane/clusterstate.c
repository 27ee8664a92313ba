/*
 * clusterstate: per-cluster shared gauges and budget (see clusterstate.h).
 *
 * Does: refcount, count against limits, remember overflows. Does not: decide what a limit
 * is (the snapshot does) or answer requests (conn.c does).
 * Invariants: a gauge is the number of acquires not yet released; it never wraps (every
 * release follows its acquire).
 */
#include "clusterstate.h"

#include <stdlib.h>
#include <string.h>

struct clusterstate *clusterstate_carry(const char *name, struct clusterstate *prev)
{
    struct clusterstate *cs;
    size_t n;
    int i;

    if (prev) return clusterstate_ref(prev);
    n = strlen(name ? name : "");
    if (!(cs = calloc(1, sizeof(*cs) + n + 1))) return NULL;
    atomic_init(&cs->refs, 1);
    for (i = 0; i < CLUSTERSTATE_N_LIMITS; i++) {
        atomic_init(&cs->gauge[i], 0);
        atomic_init(&cs->overflows[i], 0);
    }
    atomic_init(&cs->budget.milli, 0);
    atomic_init(&cs->budget.last_ms, 0);
    atomic_init(&cs->budget_exhausted, 0);
    memcpy(cs->name, name ? name : "", n + 1);
    return cs;
}

struct clusterstate *clusterstate_ref(struct clusterstate *cs)
{
    if (cs) atomic_fetch_add_explicit(&cs->refs, 1, memory_order_relaxed);
    return cs;
}

void clusterstate_unref(struct clusterstate *cs)
{
    if (cs && atomic_fetch_sub_explicit(&cs->refs, 1, memory_order_acq_rel) == 1) free(cs);
}

int clusterstate_acquire(struct clusterstate *cs, enum clusterstate_limit what, uint32_t limit)
{
    unsigned prev;

    if (!cs) return 0; /* no cluster (a sidecar's hand-off to its app): nothing to limit */
    prev = atomic_fetch_add_explicit(&cs->gauge[what], 1, memory_order_relaxed);

    if (!limit || prev < limit) return 0;
    atomic_fetch_sub_explicit(&cs->gauge[what], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cs->overflows[what], 1, memory_order_relaxed);
    return -1;
}

void clusterstate_release(struct clusterstate *cs, enum clusterstate_limit what)
{
    if (cs) atomic_fetch_sub_explicit(&cs->gauge[what], 1, memory_order_relaxed);
}

const char *clusterstate_limit_name(enum clusterstate_limit what)
{
    static const char *const names[] = {"connections", "pending", "requests"};

    return (unsigned)what < CLUSTERSTATE_N_LIMITS ? names[what] : "?";
}
