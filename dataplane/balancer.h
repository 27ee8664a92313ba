/*
 * balancer: endpoint selection behind a const ops table, one file per algorithm (bal_*.c).
 *
 * Lifecycle: a state is created per cluster when a snapshot is built (off the hot path) from
 * the cluster's ready endpoints, optionally carrying over what it learned from the previous
 * snapshot's state for the same cluster (prev_state, created by the same ops). States remember
 * each endpoint's identity (a 64-bit hash of its key) and weight, so carry-over matches
 * endpoints by identity, not by index: EWMA scores of unchanged endpoints survive, and a hash
 * table whose endpoint set did not change is copied instead of rebuilt.
 *
 * Threads: pick, start and done run concurrently on every worker against the one shared state
 * (relaxed atomics, no locks). create and destroy run on one thread, with no pick in progress
 * on the state being destroyed (the snapshot's refcount guarantees that).
 *
 * Feedback: start(idx) when a request is sent to the endpoint picked, done(idx, latency, ok)
 * when it completes, both on the same state (snapshot) that pick ran on. Either may be NULL
 * (algorithms that need no feedback); balancer_start/balancer_done below check for that.
 *
 * Algorithms:
 *   round_robin    smooth weighted round robin (nginx): a precomputed schedule indexed by one
 *                  atomic counter; with equal weights a plain rotation.
 *   least_request  power of two choices over in-flight / weight; candidates drawn in proportion
 *                  to weight (alias table), so an idle cluster is shared by weight.
 *   ewma           power of two choices over peak-EWMA latency (Finagle / Linkerd):
 *                  cost = ewma * (weight + inflight) / weight, ewma decays towards 0 with a
 *                  10 s time constant, a slower sample raises it at once, a failure counts as a
 *                  1 s sample; new endpoints start at the median of the carried-over scores.
 *   ring_hash      ketama: 160 points per unit of weight (gcd-normalised; 16384 to 2^20 points),
 *                  lookup = first point >= hash, via a bucket index then bisection.
 *   maglev         Maglev lookup table of prime size M >= 100 * n (65537 up to 655 endpoints),
 *                  weighted fill; lookup = table[hash mapped onto M].
 * ring_hash and maglev hash on the request's key (balancer_input); with no key they pick at
 * random. Everything hashed is mixed again, so a weak caller hash does no harm.
 */
#ifndef STRAIT_BALANCER_H
#define STRAIT_BALANCER_H

#include <stddef.h>
#include <stdint.h>

struct balancer_endpoint {
    /* Stable identity, e.g. "10.0.0.1:8080"; NULL: the endpoint's index stands in. */
    const char *key;
    size_t key_len;
    uint32_t weight; /* 0 counts as 1 */
};

struct balancer_endpoints {
    uint32_t n;
    const struct balancer_endpoint *ep;
};

/*
 * Per-request input (NULL is fine for every algorithm). The caller extracts the key bytes
 * (header, cookie, source ip, path) and passes either a ready 64-bit hash (has_hash) or the
 * bytes (key, key_len), which are hashed with balancer_hash.
 */
struct balancer_input {
    int has_hash;
    uint64_t hash;
    const void *key;
    size_t key_len;
};

struct balancer_ops {
    const char *name;
    /*
     * A state for eps (eps->n may be 0; pick is then never called), or NULL on allocation
     * failure. prev_state: NULL, or a state created by these same ops for the previous snapshot
     * of this cluster; it is only read (and is destroyed by its owner later).
     */
    void *(*create)(const struct balancer_endpoints *eps, const void *prev_state);
    /* An index in [0, n). Only called when n > 0. */
    uint32_t (*pick)(void *state, const struct balancer_input *in);
    /* Optional feedback (NULL when unused). idx < n. */
    void (*start)(void *state, uint32_t idx);
    void (*done)(void *state, uint32_t idx, uint64_t latency_ns, int ok);
    void (*destroy)(void *state);
};

extern const struct balancer_ops bal_roundrobin_ops;
extern const struct balancer_ops bal_leastreq_ops;
extern const struct balancer_ops bal_ewma_ops;
extern const struct balancer_ops bal_ringhash_ops;
extern const struct balancer_ops bal_maglev_ops;

/* ewma only: endpoint idx's current estimate in ns (no read decay); 0 when out of range. */
uint64_t bal_ewma_estimate(const void *state, uint32_t idx);

/* Ops for an enum snapwire_lb value, or NULL if unknown. */
const struct balancer_ops *balancer_find(uint8_t lb);
/* Ops by name ("round_robin", "least_request", "ewma", "ring_hash", "maglev"), or NULL. */
const struct balancer_ops *balancer_find_name(const char *name);

static inline void balancer_start(const struct balancer_ops *ops, void *state, uint32_t idx)
{
    if (ops->start) ops->start(state, idx);
}

static inline void balancer_done(const struct balancer_ops *ops, void *state, uint32_t idx,
                                 uint64_t latency_ns, int ok)
{
    if (ops->done) ops->done(state, idx, latency_ns, ok);
}

/* ---- helpers shared by the bal_*.c files (bal_common.c) ---- */

/* 64-bit hash of n bytes (multiply-xorshift rounds, splitmix64 finaliser). */
uint64_t balancer_hash(const void *p, size_t n, uint64_t seed);
/* splitmix64's finaliser: a bijective 64-bit mixer. */
uint64_t balancer_mix64(uint64_t x);
/* Per-thread xorshift64* generator, seeded on first use in each thread. */
uint64_t balancer_rand64(void);
/* The request's hash, mixed; a random value when in carries no key. */
uint64_t balancer_input_hash(const struct balancer_input *in);
/* Identity hash of endpoint i of eps (its key, or its index when it has none). */
uint64_t balancer_ep_id(const struct balancer_endpoints *eps, uint32_t i);
/* Weight of endpoint i (>= 1). */
uint32_t balancer_ep_weight(const struct balancer_endpoints *eps, uint32_t i);
/* Maps a 32-bit random value onto [0, n) (Lemire's multiply-shift). */
static inline uint32_t balancer_range(uint32_t r, uint32_t n)
{
    return (uint32_t)(((uint64_t)r * n) >> 32);
}
/* CLOCK_MONOTONIC in ns. */
uint64_t balancer_now_ns(void);

/* Weighted random draw in O(1) (Vose's alias method); uniform when all weights are equal. */
struct bal_alias {
    uint32_t n;
    uint32_t *prob; /* NULL: uniform */
    uint32_t *alias;
};
int bal_alias_build(struct bal_alias *a, const uint32_t *w, uint32_t n);
void bal_alias_free(struct bal_alias *a);
static inline uint32_t bal_alias_pick(const struct bal_alias *a, uint64_t r)
{
    uint32_t i = balancer_range((uint32_t)(r >> 32), a->n);

    if (!a->prob || (uint32_t)r < a->prob[i]) return i;
    return a->alias[i];
}

/*
 * The two candidates of a power-of-two-choices pick over a->n >= 2 endpoints, drawn in
 * proportion to weight: *x first, *y another one (uniform weights: any other endpoint).
 * Returns 0, or 1 when a heavily weighted draw gave the same endpoint twice: *x is then the
 * pick.
 */
static inline int bal_p2c_candidates(const struct bal_alias *a, uint32_t *x, uint32_t *y)
{
    uint64_t r = balancer_rand64();

    *x = bal_alias_pick(a, r);
    if (!a->prob) {
        *y = *x + 1 + balancer_range((uint32_t)r, a->n - 1);
        if (*y >= a->n) *y -= a->n;
        return 0;
    }
    *y = bal_alias_pick(a, balancer_rand64());
    if (*y == *x) *y = bal_alias_pick(a, balancer_rand64());
    return *y == *x;
}

#endif
