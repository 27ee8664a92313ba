/*
 * bal_leastreq: least request by power of two choices.
 * Does: two distinct candidates drawn in proportion to weight (alias table), the one with the
 * lower in-flight / weight wins (ties: the first drawn, so an idle cluster is shared by weight).
 * In-flight counts are per-endpoint relaxed atomics moved by start/done.
 * Does not: carry in-flight counts to a new snapshot's state (requests started on the old
 * state finish on it).
 * Invariant: pick never returns an index >= n; done never takes a count below 0.
 */
#include "balancer.h"

#include <stdatomic.h>
#include <stdlib.h>

struct lr_state {
    uint32_t n;
    struct bal_alias draw;
    uint32_t *w;
    atomic_uint *inflight;
};

static void lr_destroy(void *state)
{
    struct lr_state *s = state;

    if (!s) return;
    bal_alias_free(&s->draw);
    free(s->w);
    free(s->inflight);
    free(s);
}

static void *lr_create(const struct balancer_endpoints *eps, const void *prev_state)
{
    struct lr_state *s = calloc(1, sizeof(*s));
    uint32_t i, n = eps->n;

    (void)prev_state;
    if (!s) return NULL;
    s->n = n;
    s->w = malloc((n ? n : 1) * sizeof(*s->w));
    s->inflight = malloc((n ? n : 1) * sizeof(*s->inflight));
    if (!s->w || !s->inflight) goto oom;
    for (i = 0; i < n; i++) {
        s->w[i] = balancer_ep_weight(eps, i);
        atomic_init(&s->inflight[i], 0);
    }
    if (bal_alias_build(&s->draw, s->w, n) < 0) goto oom;
    return s;
oom:
    lr_destroy(s);
    return NULL;
}

static uint32_t lr_pick(void *state, const struct balancer_input *in)
{
    struct lr_state *s = state;
    uint32_t a, b;
    uint64_t la, lb;

    (void)in;
    if (s->n == 1) return 0;
    if (bal_p2c_candidates(&s->draw, &a, &b)) return a;
    la = (uint64_t)atomic_load_explicit(&s->inflight[a], memory_order_relaxed) * s->w[b];
    lb = (uint64_t)atomic_load_explicit(&s->inflight[b], memory_order_relaxed) * s->w[a];
    return lb < la ? b : a;
}

static void lr_start(void *state, uint32_t idx)
{
    struct lr_state *s = state;

    if (idx < s->n) atomic_fetch_add_explicit(&s->inflight[idx], 1, memory_order_relaxed);
}

static void lr_done(void *state, uint32_t idx, uint64_t latency_ns, int ok)
{
    struct lr_state *s = state;
    unsigned v;

    (void)latency_ns;
    (void)ok;
    if (idx >= s->n) return;
    v = atomic_load_explicit(&s->inflight[idx], memory_order_relaxed);
    while (v && !atomic_compare_exchange_weak_explicit(&s->inflight[idx], &v, v - 1,
                                                       memory_order_relaxed, memory_order_relaxed))
        ;
}

const struct balancer_ops bal_leastreq_ops = {
    .name = "least_request",
    .create = lr_create,
    .pick = lr_pick,
    .start = lr_start,
    .done = lr_done,
    .destroy = lr_destroy,
};
