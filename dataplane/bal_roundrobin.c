/*
 * bal_roundrobin: round robin over a cluster's ready endpoints.
 * Does: one atomic counter per cluster shared by every worker, so the rotation is global.
 * Does not: weights, health, or slow start.
 * Invariant: pick never returns an index >= n.
 */
#include "balancer.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "snapwire.h"

struct rr_state {
    atomic_uint next;
};

static void *rr_create(uint32_t n)
{
    struct rr_state *s = calloc(1, sizeof(*s));

    (void)n;
    if (s) atomic_init(&s->next, 0);
    return s;
}

static uint32_t rr_pick(void *state, uint32_t n)
{
    struct rr_state *s = state;

    return atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed) % n;
}

static void rr_destroy(void *state)
{
    free(state);
}

const struct balancer_ops bal_roundrobin_ops = {
    .name = "round_robin",
    .create = rr_create,
    .pick = rr_pick,
    .destroy = rr_destroy,
};

const struct balancer_ops *balancer_find(uint8_t lb)
{
    switch (lb) {
    case SNAPWIRE_LB_ROUND_ROBIN:
        return &bal_roundrobin_ops;
    default:
        return NULL;
    }
}
