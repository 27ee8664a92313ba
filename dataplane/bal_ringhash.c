/*
 * bal_ringhash: consistent hashing on a ketama-style ring.
 * Does: RING_POINTS_PER_WEIGHT points per unit of weight (weights normalised by their gcd; at
 * least RING_MIN_POINTS in all: small clusters get a power of two >= 256 per weight; the
 * ring holds RING_MAX_POINTS at most, each endpoint >= 1 point), point i of an endpoint at
 * mix64(identity ^ i * golden), so an endpoint's points do not depend on the others and
 * removing one endpoint remaps only the keys it owned. Lookup: the first point >= the request
 * hash (wrapping), found through a bucket index on the hash's top bits then bisection within
 * the bucket. An endpoint set identical to the previous state's (identities, weights, order)
 * copies its ring.
 * Does not: bounded loads.
 * Invariant: pick never returns an index >= n; the ring is immutable after create.
 */
#include "balancer.h"

#include <stdlib.h>
#include <string.h>

#define RING_POINTS_PER_WEIGHT 160u
#define RING_MIN_POINTS 16384u /* small clusters: more points per weight, shares within ~1 % */
#define RING_MAX_POINTS (1u << 20)

struct ring_point {
    uint64_t h;
    uint32_t owner;
};

struct ring_state {
    uint32_t n;
    uint32_t npoints;
    uint32_t bits; /* bucket index: top bits of the hash */
    uint64_t *h;   /* sorted point hashes */
    uint32_t *own; /* endpoint index per point */
    uint32_t *lut; /* (1 << bits) + 1 entries: first point of each bucket */
    uint64_t *ids; /* identities, for carry-over */
    uint32_t *w;
};

static void ring_destroy(void *state)
{
    struct ring_state *s = state;

    if (!s) return;
    free(s->h);
    free(s->own);
    free(s->lut);
    free(s->ids);
    free(s->w);
    free(s);
}

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;

    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return x->owner < y->owner ? -1 : x->owner > y->owner;
}

static uint32_t gcd32(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int same_set(const struct ring_state *s, const struct ring_state *p)
{
    return p && p->n == s->n && memcmp(p->ids, s->ids, s->n * sizeof(*s->ids)) == 0 &&
           memcmp(p->w, s->w, s->n * sizeof(*s->w)) == 0;
}

static int ring_alloc(struct ring_state *s)
{
    size_t nl = ((size_t)1 << s->bits) + 1;

    s->h = malloc(s->npoints * sizeof(*s->h));
    s->own = malloc(s->npoints * sizeof(*s->own));
    s->lut = malloc(nl * sizeof(*s->lut));
    return s->h && s->own && s->lut ? 0 : -1;
}

static int ring_build(struct ring_state *s)
{
    struct ring_point *pts;
    uint64_t sum = 0, ppw = RING_POINTS_PER_WEIGHT, total = 0;
    uint32_t i, j, g = 0, k, p;
    size_t nl;

    for (i = 0; i < s->n; i++)
        g = gcd32(g, s->w[i]);
    for (i = 0; i < s->n; i++)
        sum += s->w[i] / g;
    /* a power of two, so one endpoint more or less rarely changes the points of the others */
    if (sum * ppw < RING_MIN_POINTS)
        for (ppw = 256; sum * ppw < RING_MIN_POINTS; ppw *= 2)
            ;
    for (i = 0; i < s->n; i++) {
        uint64_t c = (uint64_t)(s->w[i] / g) * ppw;
        if (sum * ppw > RING_MAX_POINTS) c = (uint64_t)(s->w[i] / g) * RING_MAX_POINTS / sum;
        total += c ? c : 1;
    }
    s->npoints = (uint32_t)total;
    for (s->bits = 1; s->bits < 20 && (1u << s->bits) < s->npoints; s->bits++)
        ;
    if (ring_alloc(s) < 0) return -1;
    pts = malloc(total * sizeof(*pts));
    if (!pts) return -1;
    for (i = 0, p = 0; i < s->n; i++) {
        uint64_t c = (uint64_t)(s->w[i] / g) * ppw;
        if (sum * ppw > RING_MAX_POINTS) c = (uint64_t)(s->w[i] / g) * RING_MAX_POINTS / sum;
        if (!c) c = 1;
        for (j = 0; j < c; j++, p++) {
            pts[p].h = balancer_mix64(s->ids[i] ^ ((uint64_t)(j + 1) * 0x9e3779b97f4a7c15ull));
            pts[p].owner = i;
        }
    }
    qsort(pts, total, sizeof(*pts), cmp_point);
    for (p = 0; p < s->npoints; p++) {
        s->h[p] = pts[p].h;
        s->own[p] = pts[p].owner;
    }
    free(pts);
    nl = ((size_t)1 << s->bits);
    for (k = 0, p = 0; k < nl; k++) {
        while (p < s->npoints && (s->h[p] >> (64 - s->bits)) < k)
            p++;
        s->lut[k] = p;
    }
    s->lut[nl] = s->npoints;
    return 0;
}

static void *ring_create(const struct balancer_endpoints *eps, const void *prev_state)
{
    const struct ring_state *prev = prev_state;
    struct ring_state *s = calloc(1, sizeof(*s));
    uint32_t i, n = eps->n;

    if (!s) return NULL;
    s->n = n;
    s->ids = malloc((n ? n : 1) * sizeof(*s->ids));
    s->w = malloc((n ? n : 1) * sizeof(*s->w));
    if (!s->ids || !s->w) goto oom;
    for (i = 0; i < n; i++) {
        s->ids[i] = balancer_ep_id(eps, i);
        s->w[i] = balancer_ep_weight(eps, i);
    }
    if (!n) return s;
    if (same_set(s, prev)) {
        s->npoints = prev->npoints;
        s->bits = prev->bits;
        if (ring_alloc(s) < 0) goto oom;
        memcpy(s->h, prev->h, s->npoints * sizeof(*s->h));
        memcpy(s->own, prev->own, s->npoints * sizeof(*s->own));
        memcpy(s->lut, prev->lut, (((size_t)1 << s->bits) + 1) * sizeof(*s->lut));
        return s;
    }
    if (ring_build(s) < 0) goto oom;
    return s;
oom:
    ring_destroy(s);
    return NULL;
}

static uint32_t ring_pick(void *state, const struct balancer_input *in)
{
    struct ring_state *s = state;
    uint64_t x = balancer_input_hash(in);
    uint32_t k = (uint32_t)(x >> (64 - s->bits)), lo = s->lut[k], hi = s->lut[k + 1];

    /* first point >= x in [lo, hi); every point from hi on is >= x */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->h[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return s->own[lo == s->npoints ? 0 : lo];
}

const struct balancer_ops bal_ringhash_ops = {
    .name = "ring_hash",
    .create = ring_create,
    .pick = ring_pick,
    .destroy = ring_destroy,
};
