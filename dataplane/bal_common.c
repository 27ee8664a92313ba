/*
 * bal_common: what the balancers share: the ops lookup, a 64-bit hash, the per-thread random
 * source for power-of-two choices, endpoint identity and weights, and the alias table.
 * Invariant: balancer_ep_weight never returns 0; bal_alias_pick never returns an index >= n.
 */
#include "balancer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snapwire.h"

const struct balancer_ops *balancer_find(uint8_t lb)
{
    switch (lb) {
    case SNAPWIRE_LB_ROUND_ROBIN:
        return &bal_roundrobin_ops;
    case SNAPWIRE_LB_LEAST_REQUEST:
        return &bal_leastreq_ops;
    case SNAPWIRE_LB_EWMA:
        return &bal_ewma_ops;
    case SNAPWIRE_LB_RING_HASH:
        return &bal_ringhash_ops;
    case SNAPWIRE_LB_MAGLEV:
        return &bal_maglev_ops;
    default:
        return NULL;
    }
}

const struct balancer_ops *balancer_find_name(const char *name)
{
    static const struct balancer_ops *const all[] = {
        &bal_roundrobin_ops, &bal_leastreq_ops, &bal_ewma_ops, &bal_ringhash_ops, &bal_maglev_ops};
    size_t i;

    for (i = 0; name && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

uint64_t balancer_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

uint64_t balancer_hash(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull), k;

    while (n >= 8) {
        memcpy(&k, b, 8);
        h ^= k * 0x87c37b91114253d5ull;
        h = rotl64(h, 29) * 0x4cf5ad432745937full + 0x52dce729u;
        b += 8;
        n -= 8;
    }
    if (n) {
        k = 0;
        memcpy(&k, b, n);
        h ^= k * 0x87c37b91114253d5ull;
        h = rotl64(h, 29) * 0x4cf5ad432745937full + 0x52dce729u;
    }
    return balancer_mix64(h);
}

uint64_t balancer_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static __thread uint64_t rng_state;

uint64_t balancer_rand64(void)
{
    uint64_t x = rng_state;

    if (__builtin_expect(x == 0, 0)) {
        x = balancer_mix64((uint64_t)(uintptr_t)&rng_state ^ balancer_now_ns());
        if (!x) x = 0x9e3779b97f4a7c15ull;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint64_t balancer_input_hash(const struct balancer_input *in)
{
    if (in && in->has_hash) return balancer_mix64(in->hash ^ 0x6a09e667f3bcc909ull);
    if (in && in->key) return balancer_hash(in->key, in->key_len, 0);
    return balancer_rand64();
}

uint64_t balancer_ep_id(const struct balancer_endpoints *eps, uint32_t i)
{
    const struct balancer_endpoint *e = &eps->ep[i];

    if (e->key) return balancer_hash(e->key, e->key_len, 0x5bd1e995u);
    return balancer_mix64((uint64_t)i + 1);
}

uint32_t balancer_ep_weight(const struct balancer_endpoints *eps, uint32_t i)
{
    return eps->ep[i].weight ? eps->ep[i].weight : 1;
}

void bal_alias_free(struct bal_alias *a)
{
    free(a->prob);
    free(a->alias);
    a->prob = a->alias = NULL;
}

int bal_alias_build(struct bal_alias *a, const uint32_t *w, uint32_t n)
{
    uint32_t i, ns = 0, nl = 0, *small = NULL, *large = NULL;
    double sum = 0, *p = NULL;
    int uniform = 1;

    memset(a, 0, sizeof(*a));
    a->n = n;
    for (i = 0; i < n; i++) {
        sum += w[i];
        if (w[i] != w[0]) uniform = 0;
    }
    if (uniform || n < 2) return 0;
    a->prob = malloc(n * sizeof(*a->prob));
    a->alias = malloc(n * sizeof(*a->alias));
    p = malloc(n * sizeof(*p));
    small = malloc(n * sizeof(*small));
    large = malloc(n * sizeof(*large));
    if (!a->prob || !a->alias || !p || !small || !large) goto oom;
    for (i = 0; i < n; i++) {
        p[i] = (double)w[i] * n / sum;
        a->alias[i] = i;
        if (p[i] < 1.0)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t s = small[--ns], l = large[nl - 1];

        a->prob[s] = (uint32_t)(p[s] * 4294967296.0);
        a->alias[s] = l;
        p[l] -= 1.0 - p[s];
        if (p[l] < 1.0) {
            nl--;
            small[ns++] = l;
        }
    }
    while (nl)
        a->prob[large[--nl]] = UINT32_MAX;
    while (ns)
        a->prob[small[--ns]] = UINT32_MAX; /* rounding leftovers */
    free(p);
    free(small);
    free(large);
    return 0;
oom:
    free(p);
    free(small);
    free(large);
    bal_alias_free(a);
    return -1;
}
