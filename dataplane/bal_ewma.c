/*
 * bal_ewma: power of two choices over peak-EWMA latency (Finagle's PeakEwma, Linkerd's
 * peak_ewma balancer).
 * Does: per endpoint an estimate in ns that a slower sample raises at once (peak) and faster
 * samples pull down with weight 1 - exp(-dt / tau), tau = 10 s; read, it decays towards 0 with
 * the time since its last sample, so an endpoint that was avoided is tried again. Cost of a
 * candidate = estimate * (weight + inflight) / weight (never below EWMA_FLOOR_NS, so in-flight
 * still counts for an estimate near 0). Candidates are drawn in proportion to weight and the
 * cheaper wins (ties: the first). A failed request counts as a sample of at least EWMA_FAIL_NS.
 * Carry-over: an endpoint of the previous state with the same identity keeps its estimate and
 * timestamp; a new one starts at the median of those carried (EWMA_DEFAULT_NS when none).
 * Does not: lock. Samples racing on one endpoint may lose one update (last writer wins; values
 * are never torn).
 * Invariant: pick never returns an index >= n.
 */
#include "balancer.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EWMA_TAU_NS 10e9
#define EWMA_DEFAULT_NS 1000000ull   /* 1 ms */
#define EWMA_FAIL_NS 1000000000ull   /* 1 s */
#define EWMA_FLOOR_NS 1000.0         /* 1 us */
#define EWMA_DECAY_MIN_NS 1000000ull /* ignore read decay under 1 ms since the last sample */

struct ewma_ep {
    _Atomic uint64_t est_ns;
    _Atomic uint64_t stamp_ns;
    atomic_uint inflight;
    uint32_t w;
    uint64_t id;
};

struct ewma_state {
    uint32_t n;
    struct bal_alias draw;
    struct ewma_ep *ep;
};

static void ewma_destroy(void *state)
{
    struct ewma_state *s = state;

    if (!s) return;
    bal_alias_free(&s->draw);
    free(s->ep);
    free(s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int cmp_id(const void *a, const void *b)
{
    const struct ewma_ep *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* Every timestamp of this file: CLOCK_MONOTONIC_COARSE (a vDSO read, no TSC). */
static uint64_t coarse_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *ewma_create(const struct balancer_endpoints *eps, const void *prev_state)
{
    const struct ewma_state *prev = prev_state;
    struct ewma_state *s = calloc(1, sizeof(*s));
    struct ewma_ep *sorted = NULL;
    uint64_t now = coarse_now_ns(), *carried = NULL, dflt = EWMA_DEFAULT_NS;
    uint32_t i, n = eps->n, nc = 0, *w = NULL;
    unsigned char *have = NULL;

    if (!s) return NULL;
    s->n = n;
    s->ep = calloc(n ? n : 1, sizeof(*s->ep));
    w = malloc((n ? n : 1) * sizeof(*w));
    have = calloc(n ? n : 1, 1);
    carried = malloc((n ? n : 1) * sizeof(*carried));
    if (!s->ep || !w || !have || !carried) goto oom;
    if (prev && prev->n) {
        sorted = malloc(prev->n * sizeof(*sorted));
        if (!sorted) goto oom;
        for (i = 0; i < prev->n; i++) {
            sorted[i].id = prev->ep[i].id;
            sorted[i].w = i; /* index into prev */
        }
        qsort(sorted, prev->n, sizeof(*sorted), cmp_id);
    }
    for (i = 0; i < n; i++) {
        struct ewma_ep *e = &s->ep[i], key, *hit;

        e->id = balancer_ep_id(eps, i);
        e->w = w[i] = balancer_ep_weight(eps, i);
        atomic_init(&e->inflight, 0);
        key.id = e->id;
        hit = sorted ? bsearch(&key, sorted, prev->n, sizeof(*sorted), cmp_id) : NULL;
        if (hit) {
            const struct ewma_ep *p = &prev->ep[hit->w];
            uint64_t est = atomic_load_explicit(&p->est_ns, memory_order_relaxed);

            atomic_init(&e->est_ns, est);
            atomic_init(&e->stamp_ns, atomic_load_explicit(&p->stamp_ns, memory_order_relaxed));
            carried[nc++] = est;
            have[i] = 1;
        }
    }
    if (nc) {
        qsort(carried, nc, sizeof(*carried), cmp_u64);
        dflt = carried[nc / 2];
    }
    for (i = 0; i < n; i++)
        if (!have[i]) {
            atomic_init(&s->ep[i].est_ns, dflt);
            atomic_init(&s->ep[i].stamp_ns, now);
        }
    if (bal_alias_build(&s->draw, w, n) < 0) goto oom;
    free(sorted);
    free(w);
    free(have);
    free(carried);
    return s;
oom:
    free(sorted);
    free(w);
    free(have);
    free(carried);
    ewma_destroy(s);
    return NULL;
}

/*
 * exp(-dt / tau). Under load dt is micro- to milliseconds (x below 1e-3), where the Taylor
 * polynomial 1 - x + x^2/2 is within x^3/6 (< 2e-10) of exp(-x): no libm call per request.
 */
static double ewma_decay(uint64_t dt_ns)
{
    double x = (double)dt_ns / EWMA_TAU_NS;

    return x < 1e-3 ? 1.0 - x + 0.5 * x * x : exp(-x);
}

static double ewma_cost(const struct ewma_ep *e, uint64_t now)
{
    double est = (double)atomic_load_explicit(&e->est_ns, memory_order_relaxed);
    uint64_t stamp = atomic_load_explicit(&e->stamp_ns, memory_order_relaxed);
    unsigned inflight = atomic_load_explicit(&e->inflight, memory_order_relaxed);

    if (now > stamp + EWMA_DECAY_MIN_NS) est *= ewma_decay(now - stamp);
    if (est < EWMA_FLOOR_NS) est = EWMA_FLOOR_NS;
    /* est * (w + inflight) / w, exact when idle so equal estimates tie */
    return inflight ? est + est * inflight / e->w : est;
}

static uint32_t ewma_pick(void *state, const struct balancer_input *in)
{
    struct ewma_state *s = state;
    uint64_t now;
    uint32_t a, b;

    (void)in;
    if (s->n == 1) return 0;
    if (bal_p2c_candidates(&s->draw, &a, &b)) return a;
    now = coarse_now_ns();
    return ewma_cost(&s->ep[b], now) < ewma_cost(&s->ep[a], now) ? b : a;
}

static void ewma_start(void *state, uint32_t idx)
{
    struct ewma_state *s = state;

    if (idx < s->n) atomic_fetch_add_explicit(&s->ep[idx].inflight, 1, memory_order_relaxed);
}

static void ewma_done(void *state, uint32_t idx, uint64_t latency_ns, int ok)
{
    struct ewma_state *s = state;
    struct ewma_ep *e;
    uint64_t now, stamp, est;
    unsigned v;

    if (idx >= s->n) return;
    e = &s->ep[idx];
    v = atomic_load_explicit(&e->inflight, memory_order_relaxed);
    while (v && !atomic_compare_exchange_weak_explicit(&e->inflight, &v, v - 1,
                                                       memory_order_relaxed, memory_order_relaxed))
        ;
    if (!ok && latency_ns < EWMA_FAIL_NS) latency_ns = EWMA_FAIL_NS;
    now = coarse_now_ns(); /* the pick's clock: 1-4 ms resolution is plenty against tau */
    stamp = atomic_load_explicit(&e->stamp_ns, memory_order_relaxed);
    est = atomic_load_explicit(&e->est_ns, memory_order_relaxed);
    if (latency_ns > est) {
        est = latency_ns;
    } else {
        double wd = now > stamp ? ewma_decay(now - stamp) : 1.0;
        est = (uint64_t)((double)est * wd + (double)latency_ns * (1.0 - wd));
    }
    atomic_store_explicit(&e->est_ns, est, memory_order_relaxed);
    atomic_store_explicit(&e->stamp_ns, now, memory_order_relaxed);
}

uint64_t bal_ewma_estimate(const void *state, uint32_t idx)
{
    const struct ewma_state *s = state;

    return idx < s->n ? atomic_load_explicit(&s->ep[idx].est_ns, memory_order_relaxed) : 0;
}

const struct balancer_ops bal_ewma_ops = {
    .name = "ewma",
    .create = ewma_create,
    .pick = ewma_pick,
    .start = ewma_start,
    .done = ewma_done,
    .destroy = ewma_destroy,
};
