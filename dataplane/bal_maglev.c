/*
 * bal_maglev: consistent hashing with Google's Maglev lookup table (NSDI 2016).
 * Does: a table of prime size M (the smallest of maglev_primes >= 100 * n: 65537 for up to
 * 655 endpoints), filled by each endpoint's permutation (offset = h1 % M, skip = h2 % (M-1) + 1
 * from its identity) in rounds, endpoints visited in identity order so the table does not
 * depend on the snapshot's order. Weighted fill: in round r an endpoint takes a slot while
 * filled * max_weight < r * weight, so shares follow weights. Lookup: table[hash mapped onto
 * M] (multiply-shift). An endpoint set identical to the previous state's copies its table.
 * Does not: more endpoints than the largest prime (create fails).
 * Invariant: pick never returns an index >= n; the table is immutable after create.
 */
#include "balancer.h"

#include <stdlib.h>
#include <string.h>

static const uint32_t maglev_primes[] = {65537,   131071,  262139,  524287,  1048573,
                                         2097143, 4194301, 8388593, 16777213};

struct maglev_state {
    uint32_t n;
    uint32_t m;
    uint32_t *table;
    uint64_t *ids;
    uint32_t *w;
};

struct mg_perm {
    uint64_t id;
    uint32_t idx;
    uint32_t pos, skip, filled;
};

static void maglev_destroy(void *state)
{
    struct maglev_state *s = state;

    if (!s) return;
    free(s->table);
    free(s->ids);
    free(s->w);
    free(s);
}

static int cmp_perm(const void *a, const void *b)
{
    const struct mg_perm *x = a, *y = b;

    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int maglev_build(struct maglev_state *s)
{
    struct mg_perm *p = malloc(s->n * sizeof(*p));
    uint32_t i, wmax = 0, left = s->m;
    uint64_t r;

    if (!p) return -1;
    for (i = 0; i < s->m; i++)
        s->table[i] = UINT32_MAX;
    for (i = 0; i < s->n; i++) {
        p[i].id = s->ids[i];
        p[i].idx = i;
        p[i].pos = (uint32_t)(balancer_mix64(s->ids[i] ^ 0x243f6a8885a308d3ull) % s->m);
        p[i].skip = (uint32_t)(balancer_mix64(s->ids[i] ^ 0x13198a2e03707344ull) % (s->m - 1)) + 1;
        p[i].filled = 0;
        if (s->w[i] > wmax) wmax = s->w[i];
    }
    qsort(p, s->n, sizeof(*p), cmp_perm);
    for (r = 1; left; r++) {
        for (i = 0; i < s->n && left; i++) {
            struct mg_perm *e = &p[i];
            uint32_t w = s->w[e->idx];

            if ((uint64_t)e->filled * wmax >= r * w) continue;
            while (s->table[e->pos] != UINT32_MAX) {
                e->pos += e->skip;
                if (e->pos >= s->m) e->pos -= s->m;
            }
            s->table[e->pos] = e->idx;
            e->filled++;
            left--;
        }
    }
    free(p);
    return 0;
}

static void *maglev_create(const struct balancer_endpoints *eps, const void *prev_state)
{
    const struct maglev_state *prev = prev_state;
    struct maglev_state *s = calloc(1, sizeof(*s));
    uint32_t i, n = eps->n;
    size_t k;

    if (!s) return NULL;
    s->n = n;
    s->ids = malloc((n ? n : 1) * sizeof(*s->ids));
    s->w = malloc((n ? n : 1) * sizeof(*s->w));
    if (!s->ids || !s->w) goto fail;
    for (i = 0; i < n; i++) {
        s->ids[i] = balancer_ep_id(eps, i);
        s->w[i] = balancer_ep_weight(eps, i);
    }
    if (!n) return s;
    for (k = 0; k < sizeof(maglev_primes) / sizeof(maglev_primes[0]) - 1; k++)
        if (maglev_primes[k] >= 100ull * n) break;
    s->m = maglev_primes[k];
    if (n > s->m) goto fail;
    s->table = malloc(s->m * sizeof(*s->table));
    if (!s->table) goto fail;
    if (prev && prev->n == n && prev->m == s->m &&
        memcmp(prev->ids, s->ids, n * sizeof(*s->ids)) == 0 &&
        memcmp(prev->w, s->w, n * sizeof(*s->w)) == 0) {
        memcpy(s->table, prev->table, s->m * sizeof(*s->table));
        return s;
    }
    if (maglev_build(s) < 0) goto fail;
    return s;
fail:
    maglev_destroy(s);
    return NULL;
}

static uint32_t maglev_pick(void *state, const struct balancer_input *in)
{
    struct maglev_state *s = state;
    uint64_t x = balancer_input_hash(in);

    return s->table[balancer_range((uint32_t)(x >> 32), s->m)];
}

const struct balancer_ops bal_maglev_ops = {
    .name = "maglev",
    .create = maglev_create,
    .pick = maglev_pick,
    .destroy = maglev_destroy,
};
