/*
 * routerbench: the cost of one routing decision (dataplane/router.c) as the routing table
 * grows, the micro-benchmark of issue 7's target ("routing 10,000 routes with mixed matches
 * adds under 1 us per request over routing 10 routes"). Two scenarios:
 *
 * ingress: router_match over N routes spread over N/10 hosts (each host: one Exact, and
 *   Prefix paths of one to three segments, in controller match order), plus a "*.wild.test"
 *   wildcard and a catch-all host; a request mix of hits on exact, prefix and wildcard
 *   routes and misses that fall to the catch-all; requests built with sprintf in the loop
 *   (the issue 7 baseline, unchanged).
 * mixed: router_route over N Gateway-style routes in groups of ten per first path segment
 *   "/gK" (Exact with method + header, Exact, RegularExpression with method, a regex with
 *   alternation, Prefix with a header regex, Prefix with a query condition, Prefix with
 *   method, Prefix with a header, plain Prefixes), in two layouts: "hosts" (one vhost per
 *   group, plus a WILD_ANY wildcard hit two labels deep and a catch-all) and "onehost" (all N
 *   routes in one vhost, ordered as the controller does: Exact, then regex, then Prefix, with
 *   a regex and "/" that apply to every path). The requests (16,384, built before timing,
 *   cycled) hit every kind with realistic headers (host, user-agent, accept, ...); each
 *   request's expected route is checked, so "ok" must equal the number of calls.
 * Both print nanoseconds per call for each N and the difference to N = 10.
 *
 *   make bench-router                       (build/routerbench, then runs it)
 *   build/routerbench [ITERATIONS [ingress|mixed]]   default 2,000,000 calls per table size
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http1.h"
#include "regex.h"
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

/* ---- mixed: Gateway routes ---- */

#define GROUP 10 /* routes per first segment */
#define NREQ 16384
#define MAXH 6

struct mtable {
    struct snapwire_snapshot s;
    char *strings;
};

/* Route kind k of group g (k = 0..9), in the precedence order within a group. */
static void mixed_route(struct mtable *t, struct snapwire_route *rt, uint32_t g, uint32_t k,
                        char **p)
{
    struct snapwire_cond *c = &t->s.conds[t->s.n_conds];

    memset(rt, 0, sizeof(*rt));
    rt->source = "bench/gw";
    rt->hsts = "";
    rt->cluster = k;
    rt->first_cond = t->s.n_conds;
    rt->path = *p;
    switch (k) {
    case 0: /* Exact + method + header */
        *p += sprintf(*p, "/g%u/api/v1/items", g) + 1;
        rt->match = SNAPWIRE_MATCH_EXACT;
        rt->method = SNAPWIRE_METHOD_GET;
        *c = (struct snapwire_cond){SNAPWIRE_COND_HEADER_EXACT, "x-tenant", "t3"};
        rt->cond_count = 1;
        break;
    case 1:
        *p += sprintf(*p, "/g%u/api/v1/items", g) + 1;
        rt->match = SNAPWIRE_MATCH_EXACT;
        break;
    case 2: /* RegularExpression + method */
        *p += sprintf(*p, "/g%u/users/[0-9]+", g) + 1;
        rt->match = SNAPWIRE_MATCH_REGEX;
        rt->method = SNAPWIRE_METHOD_GET;
        break;
    case 3:
        *p += sprintf(*p, "/g%u/static/.*\\.(css|js)", g) + 1;
        rt->match = SNAPWIRE_MATCH_REGEX;
        break;
    case 4: /* Prefix + header regex */
        *p += sprintf(*p, "/g%u/api/v2/orders", g) + 1;
        rt->match = SNAPWIRE_MATCH_PREFIX;
        *c = (struct snapwire_cond){SNAPWIRE_COND_HEADER_REGEX, "x-version", "v2\\.[0-9]+"};
        rt->cond_count = 1;
        break;
    case 5: /* Prefix + query */
        *p += sprintf(*p, "/g%u/api/v2", g) + 1;
        rt->match = SNAPWIRE_MATCH_PREFIX;
        *c = (struct snapwire_cond){SNAPWIRE_COND_QUERY_EXACT, "beta", "1"};
        rt->cond_count = 1;
        break;
    case 6: /* Prefix + method */
        *p += sprintf(*p, "/g%u/api", g) + 1;
        rt->match = SNAPWIRE_MATCH_PREFIX;
        rt->method = SNAPWIRE_METHOD_POST;
        break;
    case 7: /* Prefix + header */
        *p += sprintf(*p, "/g%u/api", g) + 1;
        rt->match = SNAPWIRE_MATCH_PREFIX;
        *c = (struct snapwire_cond){SNAPWIRE_COND_HEADER_EXACT, "x-canary", "true"};
        rt->cond_count = 1;
        break;
    case 8:
        *p += sprintf(*p, "/g%u/api", g) + 1;
        rt->match = SNAPWIRE_MATCH_PREFIX;
        break;
    default:
        *p += sprintf(*p, "/g%u", g) + 1;
        rt->match = SNAPWIRE_MATCH_PREFIX;
    }
    t->s.n_conds += rt->cond_count;
}

/* Cluster numbers of the routes that are not one of a group's ten kinds. */
#define C_ANY_RE 10 /* onehost: ".*\.php" */
#define C_ROOT 11   /* onehost: Prefix "/"; hosts: the catch-all vhost */
#define C_WILD 12   /* hosts: "*.wild.test", WILD_ANY */

static int mixed_build(struct mtable *t, uint32_t n, int onehost)
{
    uint32_t groups = (n + GROUP - 1) / GROUP, g, k, r = 0;
    char *p;

    memset(t, 0, sizeof(*t));
    t->strings = p = malloc((size_t)(n + 4) * 48 + (size_t)(groups + 4) * 24);
    t->s.vhosts = calloc(groups + 3, sizeof(*t->s.vhosts));
    t->s.routes = calloc(n + 3, sizeof(*t->s.routes));
    t->s.conds = calloc(n + 3, sizeof(*t->s.conds));
    if (!p || !t->s.vhosts || !t->s.routes || !t->s.conds) return -1;
    t->s.meta.default_cluster = SNAPWIRE_NONE;
    t->s.meta.default_cert = SNAPWIRE_NONE;
    if (onehost) {
        struct snapwire_vhost *v = &t->s.vhosts[t->s.n_vhosts++];
        v->host = "one.test";
        /* controller order over the whole vhost: Exact, regex, then Prefix */
        for (k = 0; k < GROUP; k++) {
            if (k == 4) { /* a regex on every path, after the group regexes */
                struct snapwire_route *rt = &t->s.routes[r++];
                memset(rt, 0, sizeof(*rt));
                *rt = (struct snapwire_route){.path = ".*\\.php",
                                              .match = SNAPWIRE_MATCH_REGEX,
                                              .cluster = C_ANY_RE,
                                              .source = "bench/any",
                                              .hsts = ""};
            }
            for (g = 0; g < groups; g++)
                if (g * GROUP + k < n) mixed_route(t, &t->s.routes[r++], g, k, &p);
        }
        t->s.routes[r++] = (struct snapwire_route){.path = "/",
                                                   .match = SNAPWIRE_MATCH_PREFIX,
                                                   .cluster = C_ROOT,
                                                   .source = "bench/root",
                                                   .hsts = ""};
        v->route_count = r;
    } else {
        for (g = 0; g < groups; g++) {
            struct snapwire_vhost *v = &t->s.vhosts[t->s.n_vhosts++];
            v->host = p;
            p += sprintf(p, "h%u.test", g) + 1;
            v->first_route = r;
            for (k = 0; k < GROUP && g * GROUP + k < n; k++)
                mixed_route(t, &t->s.routes[r++], g, k, &p);
            v->route_count = r - v->first_route;
        }
        for (k = 0; k < 2; k++) {
            struct snapwire_vhost *v = &t->s.vhosts[t->s.n_vhosts++];
            v->host = k ? "" : "*.wild.test";
            v->first_route = r;
            v->route_count = 1;
            t->s.routes[r++] = (struct snapwire_route){.path = "/",
                                                       .match = SNAPWIRE_MATCH_PREFIX,
                                                       .cluster = k ? C_ROOT : C_WILD,
                                                       .source = "bench/other",
                                                       .flags = k ? 0 : SNAPWIRE_ROUTE_WILD_ANY,
                                                       .hsts = ""};
        }
    }
    t->s.n_routes = r;
    return 0;
}

static void mtable_free(struct mtable *t)
{
    free(t->strings);
    free(t->s.vhosts);
    free(t->s.routes);
    free(t->s.conds);
}

struct mreq {
    struct router_request req;
    struct http1_header h[MAXH];
    char host[32], target[64];
    int want; /* route cluster, -1: no route */
};

static void hdr(struct mreq *m, const char *name, const char *value)
{
    struct http1_header *h = &m->h[m->req.n_headers++];
    h->name = name;
    h->name_len = strlen(name);
    h->value = value;
    h->value_len = strlen(value);
}

/* The request pool: each kind of the group, a wildcard or catch-all host, an "any" regex. */
static struct mreq *mixed_requests(uint32_t n, int onehost)
{
    uint32_t groups = (n + GROUP - 1) / GROUP, x = 2463534242u;
    struct mreq *rq = calloc(NREQ, sizeof(*rq));

    if (!rq) return NULL;
    for (uint32_t i = 0; i < NREQ; i++) {
        struct mreq *m = &rq[i];
        uint32_t g, kind;
        const char *method = "GET";
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        g = x % groups;
        kind = (x >> 20) % 12;
        if (g * GROUP + (kind < GROUP ? kind : 0) >= n) kind = 1; /* a short last group */
        m->want = (int)kind;
        hdr(m, "Host", "h.test");
        hdr(m, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0");
        hdr(m, "Accept", "*/*");
        switch (kind) {
        case 0:
            sprintf(m->target, "/g%u/api/v1/items", g);
            hdr(m, "X-Tenant", "t3");
            break;
        case 1:
            sprintf(m->target, "/g%u/api/v1/items", g);
            break;
        case 2:
            sprintf(m->target, "/g%u/users/12345", g);
            break;
        case 3:
            sprintf(m->target, "/g%u/static/css/site.css", g);
            break;
        case 4:
            sprintf(m->target, "/g%u/api/v2/orders/7", g);
            method = "PUT";
            hdr(m, "X-Version", "v2.3");
            break;
        case 5:
            sprintf(m->target, "/g%u/api/v2/list?page=2&beta=1", g);
            break;
        case 6:
            sprintf(m->target, "/g%u/api/cart", g);
            method = "POST";
            break;
        case 7:
            sprintf(m->target, "/g%u/api/cart", g);
            hdr(m, "X-Canary", "true");
            break;
        case 8:
            sprintf(m->target, "/g%u/api/cart?id=9", g);
            break;
        case 9:
            sprintf(m->target, "/g%u/about", g);
            break;
        case 10: /* onehost: the "any" regex; hosts: a WILD_ANY host two labels deep */
            sprintf(m->target, onehost ? "/g%u/x/index.php" : "/g%u/x", g);
            m->want = onehost ? C_ANY_RE : C_WILD;
            break;
        default: /* onehost: nothing specific, "/"; hosts: an unknown host, the catch-all */
            sprintf(m->target, "/nothing/here");
            m->want = C_ROOT;
        }
        if (onehost)
            sprintf(m->host, "one.test");
        else if (kind == 10)
            sprintf(m->host, "a.b.wild.test");
        else if (kind == 11)
            sprintf(m->host, "unknown.test");
        else
            sprintf(m->host, "h%u.test", g);
        m->req.host = m->host;
        m->req.host_len = strlen(m->host);
        m->req.target = m->target;
        m->req.target_len = strlen(m->target);
        m->req.method = method;
        m->req.method_len = strlen(method);
        m->req.headers = m->h;
    }
    return rq;
}

/* ns per router_route over the request pool; *ok counts answers equal to the expected route */
static double mixed_run(uint32_t n, int onehost, long iters, unsigned long *ok)
{
    struct mtable t;
    struct router *r;
    struct mreq *rq;
    char err[256];
    double t0, t1;
    long i;

    if (mixed_build(&t, n, onehost) < 0 || !(rq = mixed_requests(n, onehost)) ||
        !(r = router_build(&t.s, err, sizeof(err)))) {
        fprintf(stderr, "routerbench: cannot build %u mixed routes\n", n);
        exit(1);
    }
    *ok = 0;
    t0 = now();
    for (i = 0; i < iters; i++) {
        const struct mreq *m = &rq[i & (NREQ - 1)];
        const struct snapwire_route *rt = router_route(r, &m->req);
        *ok += (rt ? (int)rt->cluster : -1) == m->want;
    }
    t1 = now();
    router_free(r);
    free(rq);
    mtable_free(&t);
    return (t1 - t0) * 1e9 / (double)iters;
}

int main(int argc, char **argv)
{
    static const uint32_t sizes[] = {10, 100, 1000, 10000, 100000};
    static const uint32_t msizes[] = {10, 100, 1000, 10000};
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    const char *only = argc > 2 ? argv[2] : "";
    double base = 0;
    unsigned long hits;

    if (iters <= 0 || (*only && strcmp(only, "ingress") && strcmp(only, "mixed"))) {
        fprintf(stderr, "usage: routerbench [ITERATIONS [ingress|mixed]]\n");
        return 2;
    }
    if (!*only || !strcmp(only, "ingress")) {
        /* the loop's own cost (sprintf of the request) is in every figure alike; the
         * differences between sizes are the router's */
        printf("# ingress: %ld matches per table size; ns per router_match incl. request "
               "setup\n",
               iters);
        printf("%-8s %10s %12s %10s\n", "routes", "ns/match", "vs_10_ns", "hits");
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            double ns = run(sizes[i], iters, &hits);
            if (i == 0) base = ns;
            printf("%-8u %10.1f %+12.1f %10lu\n", sizes[i], ns, ns - base, hits);
        }
    }
    if (!*only || !strcmp(only, "mixed")) {
        char err[128];
        struct regex *re = regex_compile("/a/[0-9]+", err, sizeof(err));
        printf("# mixed: %ld router_route calls per table size, requests prebuilt; regex JIT "
               "%s\n",
               iters, re && regex_is_jit(re) ? "on" : "off");
        regex_free(re);
        for (int onehost = 0; onehost < 2; onehost++) {
            printf("%-8s %-8s %10s %12s %10s\n", "layout", "routes", "ns/route", "vs_10_ns", "ok");
            for (size_t i = 0; i < sizeof(msizes) / sizeof(msizes[0]); i++) {
                double ns = mixed_run(msizes[i], onehost, iters, &hits);
                if (i == 0) base = ns;
                printf("%-8s %-8u %10.1f %+12.1f %10lu%s\n", onehost ? "onehost" : "hosts",
                       msizes[i], ns, ns - base, hits,
                       hits == (unsigned long)iters ? "" : "  WRONG ROUTES");
            }
        }
        regex_thread_end();
    }
    return 0;
}
