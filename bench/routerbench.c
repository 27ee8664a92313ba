/*
 * routerbench: the cost of one router_match (dataplane/router.c) as the routing table grows,
 * the micro-benchmark of issue 7's target ("10,000 routes add under 1 us per request over 10
 * routes"). It builds snapshots in memory with N routes spread over N/10 hosts (each host:
 * one Exact, and Prefix paths of one to three segments, in controller match order), plus a
 * "*.wild.test" wildcard and a catch-all host, then times router_match over a fixed request
 * mix (hits on exact, prefix and wildcard routes, misses that fall to the catch-all) and
 * prints nanoseconds per match for each N, and the difference to the smallest table.
 * Mixed matches beyond Exact/Prefix (regex, headers, query, method) join the mix when the
 * snapshot carries them (issue 7); until then this is the baseline they are measured against.
 *
 *   make bench-router            (build/routerbench, then runs it)
 *   build/routerbench [ITERATIONS]   default 2,000,000 matches per table size
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router.h"
#include "snapwire.h"

struct table {
    struct snapwire_snapshot s;
    char *strings;
};

/* n routes over max(1, n/10) hosts "hK.test", 10 routes each (fewer in the last one). */
static int build(struct table *t, uint32_t n)
{
    uint32_t hosts = n / 10 ? n / 10 : 1, r = 0, h;
    size_t slen = (size_t)(n + 2) * 64 + (size_t)(hosts + 2) * 32;
    char *p;

    memset(t, 0, sizeof(*t));
    t->strings = p = malloc(slen);
    t->s.vhosts = calloc(hosts + 2, sizeof(*t->s.vhosts));
    t->s.routes = calloc(n + 2, sizeof(*t->s.routes));
    t->s.clusters = calloc(1, sizeof(*t->s.clusters));
    if (!p || !t->s.vhosts || !t->s.routes || !t->s.clusters) return -1;
    t->s.clusters[0].name = "bench/svc:80";
    t->s.clusters[0].lb = SNAPWIRE_LB_ROUND_ROBIN;
    t->s.clusters[0].tls_ca = SNAPWIRE_NONE;
    t->s.n_clusters = 1;
    t->s.meta.default_cluster = SNAPWIRE_NONE;
    t->s.meta.default_cert = SNAPWIRE_NONE;
    for (h = 0; h < hosts && r < n; h++) {
        struct snapwire_vhost *v = &t->s.vhosts[t->s.n_vhosts++];
        uint32_t k, here = n - r < 10 ? n - r : 10;
        v->host = p;
        p += sprintf(p, "h%u.test", h) + 1;
        v->first_route = r;
        v->route_count = here;
        /* match order as the controller sends it: longest first, Exact before Prefix */
        for (k = 0; k < here; k++, r++) {
            struct snapwire_route *rt = &t->s.routes[r];
            rt->path = p;
            if (k == 0) {
                p += sprintf(p, "/api/v1/items/%u/details", h) + 1;
                rt->match = SNAPWIRE_MATCH_EXACT;
            } else if (k < 9) {
                p += sprintf(p, "/svc%u/part%u", 9 - k, k) + 1;
                rt->match = SNAPWIRE_MATCH_PREFIX;
            } else {
                p += sprintf(p, "/") + 1;
                rt->match = SNAPWIRE_MATCH_PREFIX;
            }
            rt->source = "bench/ing";
            rt->hsts = "";
        }
    }
    /* the wildcard and catch-all hosts, one Prefix "/" route each */
    for (h = 0; h < 2; h++) {
        struct snapwire_vhost *v = &t->s.vhosts[t->s.n_vhosts++];
        struct snapwire_route *rt = &t->s.routes[r];
        v->host = h ? "" : "*.wild.test";
        v->first_route = r++;
        v->route_count = 1;
        rt->path = "/";
        rt->match = SNAPWIRE_MATCH_PREFIX;
        rt->source = "bench/other";
        rt->hsts = "";
    }
    t->s.n_routes = r;
    return 0;
}

static void table_free(struct table *t)
{
    free(t->strings);
    free(t->s.vhosts);
    free(t->s.routes);
    free(t->s.clusters);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ns per router_match over a request mix that touches the whole table. */
static double run(uint32_t n, long iters, unsigned long *hits)
{
    struct table t;
    struct router *r;
    char err[256], host[64], target[128];
    uint32_t hosts = n / 10 ? n / 10 : 1, x = 2463534242u;
    double t0, t1;
    long i;

    if (build(&t, n) < 0 || !(r = router_build(&t.s, err, sizeof(err)))) {
        fprintf(stderr, "routerbench: cannot build %u routes\n", n);
        exit(1);
    }
    *hits = 0;
    t0 = now();
    for (i = 0; i < iters; i++) {
        uint32_t h, kind;
        size_t hl, tl;
        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32: no libc call in the loop */
        h = x % hosts;
        kind = (x >> 24) % 6;
        switch (kind) {
        case 0:
            tl = (size_t)sprintf(target, "/api/v1/items/%u/details", h);
            break;
        case 1:
        case 2:
            tl = (size_t)sprintf(target, "/svc%u/part%u/x?q=1", 1 + (x >> 8) % 8, 8 - (x >> 8) % 8);
            break;
        case 3:
            tl = (size_t)sprintf(target, "/nothing/here");
            break;
        default:
            tl = (size_t)sprintf(target, "/svc1/part8");
        }
        if (kind == 4)
            hl = (size_t)sprintf(host, "a.wild.test");
        else if (kind == 5)
            hl = (size_t)sprintf(host, "unknown.test");
        else
            hl = (size_t)sprintf(host, "h%u.test", h);
        *hits += router_match(r, host, hl, target, tl) != NULL;
    }
    t1 = now();
    router_free(r);
    table_free(&t);
    return (t1 - t0) * 1e9 / (double)iters;
}

int main(int argc, char **argv)
{
    static const uint32_t sizes[] = {10, 100, 1000, 10000, 100000};
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    double base = 0;
    unsigned long hits;

    if (iters <= 0) {
        fprintf(stderr, "usage: routerbench [ITERATIONS]\n");
        return 2;
    }
    /* the loop's own cost (sprintf of the request) is in every figure alike; the
     * differences between sizes are the router's */
    printf("# routerbench: %ld matches per table size; ns per router_match incl. request setup\n",
           iters);
    printf("%-8s %10s %12s %10s\n", "routes", "ns/match", "vs_10_ns", "hits");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        double ns = run(sizes[i], iters, &hits);
        if (i == 0) base = ns;
        printf("%-8u %10.1f %+12.1f %10lu\n", sizes[i], ns, ns - base, hits);
    }
    return 0;
}
