/*
 * bal_roundrobin: smooth weighted round robin (nginx's algorithm) over a cluster's endpoints.
 * Does: weights normalised by their gcd; the smooth-WRR sequence of one full cycle (sum of the
 * weights, at most RR_MAX_SLOTS: larger sums are scaled down, each endpoint keeping >= 1 slot)
 * is computed at create and indexed by one atomic counter shared by every worker, so the
 * rotation is global and lock-free. Equal weights: plain rotation, no schedule.
 * Does not: health, slow start, feedback.
 * Invariant: pick never returns an index >= n.
 */
#include "balancer.h"

#include <stdatomic.h>
#include <stdlib.h>

#define RR_MAX_SLOTS 65536u

struct rr_state {
    atomic_uint next;
    uint32_t n;
    uint32_t len;    /* schedule length; 0: plain rotation over n */
    uint32_t *sched; /* endpoint index per slot */
};

static uint32_t gcd32(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int rr_schedule(struct rr_state *s, const struct balancer_endpoints *eps)
{
    uint32_t i, k, g = 0, *w;
    uint64_t sum = 0;
    int64_t *cur;
    int equal = 1;

    for (i = 0; i < eps->n; i++) {
        g = gcd32(g, balancer_ep_weight(eps, i));
        if (balancer_ep_weight(eps, i) != balancer_ep_weight(eps, 0)) equal = 0;
    }
    if (equal) return 0;
    w = malloc(eps->n * sizeof(*w));
    cur = calloc(eps->n, sizeof(*cur));
    if (!w || !cur) goto oom;
    for (i = 0; i < eps->n; i++)
        sum += (w[i] = balancer_ep_weight(eps, i) / g);
    if (sum > RR_MAX_SLOTS) {
        uint64_t scaled = 0;
        for (i = 0; i < eps->n; i++) {
            uint64_t v = (uint64_t)w[i] * RR_MAX_SLOTS / sum;
            scaled += (w[i] = v ? (uint32_t)v : 1);
        }
        sum = scaled;
    }
    s->sched = malloc(sum * sizeof(*s->sched));
    if (!s->sched) goto oom;
    s->len = (uint32_t)sum;
    for (k = 0; k < s->len; k++) {
        uint32_t best = 0;
        for (i = 0; i < eps->n; i++) {
            cur[i] += w[i];
            if (cur[i] > cur[best]) best = i;
        }
        cur[best] -= (int64_t)sum;
        s->sched[k] = best;
    }
    free(w);
    free(cur);
    return 0;
oom:
    free(w);
    free(cur);
    return -1;
}

static void *rr_create(const struct balancer_endpoints *eps, const void *prev_state)
{
    const struct rr_state *prev = prev_state;
    struct rr_state *s = calloc(1, sizeof(*s));

    if (!s) return NULL;
    s->n = eps->n;
    atomic_init(&s->next, prev ? atomic_load_explicit(&prev->next, memory_order_relaxed) : 0);
    if (eps->n && rr_schedule(s, eps) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static uint32_t rr_pick(void *state, const struct balancer_input *in)
{
    struct rr_state *s = state;
    uint32_t c = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);

    (void)in;
    return s->len ? s->sched[c % s->len] : c % s->n;
}

static void rr_destroy(void *state)
{
    struct rr_state *s = state;

    if (!s) return;
    free(s->sched);
    free(s);
}

const struct balancer_ops bal_roundrobin_ops = {
    .name = "round_robin",
    .create = rr_create,
    .pick = rr_pick,
    .destroy = rr_destroy,
};
