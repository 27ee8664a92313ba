/*
 * Router semantics as data tables: the Kubernetes Ingress path table, route order (longest
 * wins, Exact over Prefix), vhost specificity (exact > one-label wildcard > catch-all, no
 * fallback) and Host normalisation; Gateway routes (method, header and query conditions,
 * regex paths, listener kinds, WILD_ANY wildcards), regex compile errors, weighted backend
 * picks, and the first-segment index cross-checked against a linear scan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "router.c"

#define E SNAPWIRE_MATCH_EXACT
#define P SNAPWIRE_MATCH_PREFIX

static const struct {
    uint8_t match;
    const char *rule, *path;
    int want;
} path_cases[] = {
    /* https://kubernetes.io/docs/concepts/services-networking/ingress/#examples */
    {P, "/", "/", 1},
    {P, "/", "/anything/at/all", 1},
    {E, "/foo", "/foo", 1},
    {E, "/foo", "/bar", 0},
    {E, "/foo", "/foo/", 0},
    {E, "/foo/", "/foo", 0},
    {P, "/foo", "/foo", 1},
    {P, "/foo", "/foo/", 1},
    {P, "/foo/", "/foo", 1},
    {P, "/foo/", "/foo/", 1},
    {P, "/aaa/bb", "/aaa/bbb", 0},
    {P, "/aaa/bbb", "/aaa/bbb", 1},
    {P, "/aaa/bbb/", "/aaa/bbb", 1},
    {P, "/aaa/bbb", "/aaa/bbb/", 1},
    {P, "/aaa/bbb", "/aaa/bbb/ccc", 1},
    {P, "/aaa/bbb", "/aaa/bbbxyz", 0},
    {P, "/foo", "/foobar", 0},
    {P, "/foo", "/foo/bar", 1},
    {P, "/foo", "/fo", 0},
    {E, "/", "/", 1},
    {E, "/", "/a", 0},
};

static void test_path_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        int got = router_path_match(path_cases[i].match, path_cases[i].rule, path_cases[i].path,
                                    strlen(path_cases[i].path));
        if (got != path_cases[i].want)
            fail_msg("case %zu: %s %s vs %s: got %d", i,
                     path_cases[i].match == E ? "Exact" : "Prefix", path_cases[i].rule,
                     path_cases[i].path, got);
    }
}

/*
 * Snapshot: routes already in controller match order. Cluster numbers identify the route.
 *   foo.com:    Prefix /aaa/bbb (1), Exact /foo (2), Prefix /foo (3), Prefix /aaa (4), Prefix / (5)
 *   *.foo.com:  Prefix / (6)
 *   "":         Prefix / (7)
 *   bar.com:    Prefix /api (8)
 */
#define R(p, m, c)                                                                                 \
    {                                                                                              \
        .path = p, .match = m, .cluster = c, .source = "t/" #c, .hsts = ""                         \
    }
static struct snapwire_route routes[] = {
    R("/aaa/bbb", P, 1), R("/foo", E, 2), R("/foo", P, 3), R("/aaa", P, 4),
    R("/", P, 5),        R("/", P, 6),    R("/", P, 7),    R("/api", P, 8),
};
static struct snapwire_vhost vhosts[] = {
    /* deliberately unsorted: router_build sorts its own index */
    {"foo.com", 0, 5},
    {"*.foo.com", 5, 1},
    {"bar.com", 7, 1},
    {"", 6, 1},
};

static struct snapwire_snapshot snap = {
    .n_vhosts = 4, .n_routes = 8, .vhosts = vhosts, .routes = routes};

static const struct {
    const char *host, *target;
    int want; /* cluster, or -1 for no route */
} match_cases[] = {
    {"foo.com", "/foo", 2},     /* Exact beats Prefix */
    {"foo.com", "/foo?x=1", 2}, /* query ignored */
    {"foo.com", "/foo/", 3},
    {"foo.com", "/foo/bar", 3},
    {"foo.com", "/foobar", 5},
    {"foo.com", "/aaa/bbb/c", 1}, /* longest wins */
    {"foo.com", "/aaa/bb", 4},
    {"foo.com", "/", 5},
    {"FOO.COM", "/foo", 2},      /* case-insensitive host */
    {"foo.com:8080", "/foo", 2}, /* port stripped */
    {"foo.com.", "/foo", 2},     /* trailing dot */
    {"a.foo.com", "/x", 6},      /* wildcard: one label */
    {"A.Foo.Com:443", "/x", 6},
    {"a.b.foo.com", "/x", 7}, /* two labels: not the wildcard */
    {".foo.com", "/x", 7},    /* empty label: not the wildcard */
    {"other.com", "/x", 7},   /* catch-all */
    {"[::1]:8080", "/x", 7},
    {"127.0.0.1:80", "/x", 7},
    {"", "/x", 7},
    {"bar.com", "/api/v1", 8},
    {"bar.com", "/other", -1},              /* no fallback to the catch-all vhost */
    {"foo.com", "http://foo.com/foo?q", 2}, /* absolute-form target */
    /* the path is normalised before matching (RFC 3986 6.2.2, as nginx does) */
    {"foo.com", "/aaa/../foo", 2}, /* dot segments removed */
    {"foo.com", "/aaa/./bbb/x", 1},
    {"foo.com", "/aaa/bbb/..", 4}, /* "/aaa/" */
    {"foo.com", "//foo", 2},       /* slashes merged */
    {"foo.com", "/aaa//bbb", 1},
    {"foo.com", "/%66oo", 2},      /* escaped unreserved character decoded */
    {"foo.com", "/%2E%2E/foo", 2}, /* escaped dot segment */
    {"foo.com", "/../../foo", 2},  /* cannot climb above the root */
    {"foo.com", "/aaa%2Fbbb", 5},  /* escaped "/" is not a separator: one segment */
    {"foo.com", "/foo/%2e", 3},    /* "/foo/" */
    {"foo.com", "/foo/..bar", 3},  /* not a dot segment */
};

static void test_match_table(void **state)
{
    char err[128], host[ROUTER_MAX_HOST];
    struct router *r = router_build(&snap, err, sizeof(err));
    size_t i;

    (void)state;
    assert_non_null(r);
    for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct snapwire_route *rt;
        int hl = router_normalize_host(match_cases[i].host, strlen(match_cases[i].host), host,
                                       sizeof(host));
        int got;

        assert_true(hl >= 0);
        rt =
            router_match(r, host, (size_t)hl, match_cases[i].target, strlen(match_cases[i].target));
        got = rt ? (int)rt->cluster : -1;
        if (got != match_cases[i].want)
            fail_msg("case %zu: host %s target %s: got %d want %d", i, match_cases[i].host,
                     match_cases[i].target, got, match_cases[i].want);
    }
    router_free(r);
}

static void test_no_catch_all(void **state)
{
    struct snapwire_snapshot s = {
        .n_vhosts = 1, .n_routes = 1, .vhosts = vhosts + 2, .routes = routes};
    struct snapwire_vhost vh = {"bar.com", 0, 1};
    char err[128];
    struct router *r;

    (void)state;
    s.vhosts = &vh;
    r = router_build(&s, err, sizeof(err));
    assert_non_null(r);
    assert_null(router_match(r, "foo.com", 7, "/", 1));
    assert_non_null(router_match(r, "bar.com", 7, "/aaa/bbb", 8));
    router_free(r);
}

static void test_duplicate_vhost(void **state)
{
    struct snapwire_vhost dup[] = {{"a.com", 0, 1}, {"a.com", 1, 1}};
    struct snapwire_snapshot s = {.n_vhosts = 2, .n_routes = 8, .vhosts = dup, .routes = routes};
    char err[128];

    (void)state;
    assert_null(router_build(&s, err, sizeof(err)));
    assert_non_null(strstr(err, "duplicate"));
}

static const struct {
    const char *in, *out; /* out NULL: rejected */
} host_cases[] = {
    {"Example.COM", "example.com"},
    {"example.com:8080", "example.com"},
    {"[::1]:8080", "[::1]"},
    {"[2001:DB8::1]", "[2001:db8::1]"},
    {"10.0.0.1:80", "10.0.0.1"},
    {"example.com.", "example.com"},
    {"", ""},
    {"a b", NULL},
    {"foo:bar", NULL},
    {"[::1", NULL},
    {"[::1]x", NULL},
    {"::1", NULL},
    {"a/b", NULL},
    {"user@host", NULL},
};

static void test_normalize_host(void **state)
{
    char out[ROUTER_MAX_HOST];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
        int n = router_normalize_host(host_cases[i].in, strlen(host_cases[i].in), out, sizeof(out));
        if (!host_cases[i].out) {
            if (n >= 0) fail_msg("case %zu: %s accepted as %s", i, host_cases[i].in, out);
            continue;
        }
        if (n < 0 || strcmp(out, host_cases[i].out) != 0 || (size_t)n != strlen(out))
            fail_msg("case %zu: %s -> %d %s", i, host_cases[i].in, n, n >= 0 ? out : "");
    }
}

/* ---- Gateway routes: method, conditions, regex paths, listener kinds, wildcards ---- */

#define X SNAPWIRE_MATCH_REGEX
#define HX SNAPWIRE_COND_HEADER_EXACT
#define HR SNAPWIRE_COND_HEADER_REGEX
#define QX SNAPWIRE_COND_QUERY_EXACT
#define WILD SNAPWIRE_ROUTE_WILD_ANY
#define PLAIN SNAPWIRE_ROUTE_PLAIN_ONLY
#define TLSO SNAPWIRE_ROUTE_TLS_ONLY
#define MAXR 8
#define MAXV 10
#define MAXQ 40

struct tcond {
    uint8_t kind;
    const char *name, *value;
};
struct troute {
    int id; /* 0 ends the list; becomes route.cluster */
    const char *path;
    uint8_t match, method, flags;
    struct tcond conds[4];
};
struct tvhost {
    const char *host; /* NULL ends the list */
    struct troute routes[MAXR];
};
struct treq {
    const char *method, *host, *target; /* target NULL ends the list */
    const char *hdrs[8];                /* "name", "value", ..., NULL */
    int tls;
    int want; /* route id, -1: none */
};
struct tset {
    const char *name;
    struct tvhost vhosts[MAXV];
    struct treq reqs[MAXQ];
};

#define GET SNAPWIRE_METHOD_GET
#define POST SNAPWIRE_METHOD_POST

static const struct tset gw_sets[] = {
    {"conditions",
     {{"gw.test",
       {{1, "/a", E, GET, 0, {{HX, "x-env", "prod"}, {QX, "v", "1"}}},
        {2, "/a", E, 0, 0, {{HX, "x-env", "prod"}}},
        {3, "/a.*", X, 0, 0, {{0, NULL, NULL}}},
        {4, "/", P, POST, 0, {{0, NULL, NULL}}},
        {5, "/", P, 0, 0, {{HR, "user-agent", "Mozilla/.* Firefox/[0-9.]+"}}},
        {6, "/q", P, 0, 0, {{QX, "k", ""}}},
        {7, "/", P, 0, 0, {{0, NULL, NULL}}}}}},
     {
         {"GET", "gw.test", "/a?v=1", {"x-env", "prod", NULL}, 0, 1},
         {"GET", "gw.test", "/a?v=2", {"x-env", "prod", NULL}, 0, 2},
         {"GET", "gw.test", "/a?v=1", {"X-Env", "prod", NULL}, 0, 1},  /* name: any case */
         {"GET", "gw.test", "/a?v=1", {"x-env", "Prod", NULL}, 0, 3},  /* value: exact */
         {"GET", "gw.test", "/a?v=1", {"x-envx", "prod", NULL}, 0, 3}, /* another header */
         {"POST", "gw.test", "/a?v=1", {"x-env", "prod", NULL}, 0, 2}, /* method */
         {"get", "gw.test", "/a?v=1", {"x-env", "prod", NULL}, 0, 2},  /* case-sensitive */
         {"BREW", "gw.test", "/a?v=1", {"x-env", "prod", NULL}, 0, 2}, /* unknown: ANY only */
         {"GET", "gw.test", "/a?w=0&v=1&v=2", {"x-env", "prod", NULL}, 0, 1}, /* first v */
         {"GET", "gw.test", "/a?v=2&v=1", {"x-env", "prod", NULL}, 0, 2},
         {"GET", "gw.test", "/a?V=1", {"x-env", "prod", NULL}, 0, 2},   /* name: exact case */
         {"GET", "gw.test", "/a?v=%31", {"x-env", "prod", NULL}, 0, 2}, /* no decoding */
         {"GET", "gw.test", "/a?v=1#f", {"x-env", "prod", NULL}, 0, 1},
         {"GET", "gw.test", "/a#?v=1", {"x-env", "prod", NULL}, 0, 2}, /* fragment, no query */
         {"GET", "gw.test", "/a?v=1", {"x-env", "dev", "x-env", "prod", NULL}, 0, 1}, /* some */
         {"GET", "gw.test", "/a/../a?v=1", {"x-env", "prod", NULL}, 0, 1}, /* normalised */
         {"GET", "gw.test", "http://gw.test/a?v=1", {"x-env", "prod", NULL}, 0, 1},
         {"GET", "gw.test", "/a", {NULL}, 0, 3},
         {"GET", "gw.test", "/abc/d", {NULL}, 0, 3},
         {"GET", "gw.test", "/b/a", {NULL}, 0, 7}, /* regex anchored at the start */
         {"POST", "gw.test", "/b/a", {NULL}, 0, 4},
         {"GET", "gw.test", "/b", {"user-agent", "Mozilla/5.0 (X11) Firefox/121.0", NULL}, 0, 5},
         {"GET", "gw.test", "/b", {"User-Agent", "Mozilla/5.0 Firefox/121.0 x", NULL}, 0, 7},
         {"GET", "gw.test", "/q?k", {NULL}, 0, 6}, /* no '=': value "" */
         {"GET", "gw.test", "/q?k=", {NULL}, 0, 6},
         {"GET", "gw.test", "/q?k=1", {NULL}, 0, 7},
         {"GET", "gw.test", "/q?kk&k", {NULL}, 0, 6},
         {"GET", "gw.test", "/q?&k", {NULL}, 0, 6},
         {"GET", "gw.test", "/q?k=1&k", {NULL}, 0, 7}, /* the first k decides */
         {"GET", "gw.test", "/q", {NULL}, 0, 7},       /* no query at all */
         {"GET", "gw.test", "/q?", {NULL}, 0, 7},
         {"GET", "gw.test", "http://gw.test?k", {NULL}, 0, 7}, /* path "/": not /q */
         {"GET", "gw.test", "http://gw.test/q?k#x", {NULL}, 0, 6},
         {NULL, NULL, NULL, {NULL}, 0, 0},
     }},
    {"regex paths",
     {{"re.test",
       {{1, "/api/v[0-9]+/users", X, 0, 0, {{0, NULL, NULL}}},
        {2, "/api/(v1|v2)/.*", X, 0, 0, {{0, NULL, NULL}}},
        {3, "/x|/y/.*", X, 0, 0, {{0, NULL, NULL}}},
        {4, "/caf\xc3\xa9", X, 0, 0, {{0, NULL, NULL}}}}}},
     {
         {"GET", "re.test", "/api/v12/users", {NULL}, 0, 1},
         {"GET", "re.test", "/api/v12/users/", {NULL}, 0, -1}, /* anchored at the end */
         {"GET", "re.test", "/api/v2/users/7", {NULL}, 0, 2},
         {"GET", "re.test", "/api/v3/users/7", {NULL}, 0, -1},
         {"GET", "re.test", "/x", {NULL}, 0, 3},
         {"GET", "re.test", "/y/z", {NULL}, 0, 3},
         {"GET", "re.test", "/%78", {NULL}, 0, 3},        /* on the normalised path */
         {"GET", "re.test", "/caf%C3%A9", {NULL}, 0, -1}, /* reserved escapes stay */
         {"GET", "re.test", "/caf\xc3\xa9", {NULL}, 0, 4},
         {"GET", "re.test", "/caf\xe9", {NULL}, 0, -1}, /* not UTF-8: no match */
         {NULL, NULL, NULL, {NULL}, 0, 0},
     }},
    {"listeners and wildcards",
     {{"foo.com", {{10, "/", P, 0, PLAIN, {{0}}}, {11, "/", P, 0, TLSO, {{0}}}}},
      {"*.foo.com", {{12, "/one", P, 0, 0, {{0}}}, {13, "/", P, 0, WILD, {{0}}}}},
      {"*.bar.com", {{14, "/", P, 0, 0, {{0}}}}},
      {"tls.com", {{16, "/", P, 0, TLSO, {{0}}}}},
      {"strict.com", {{17, "/only", E, 0, 0, {{0}}}}},
      {"*.w.com", {{18, "/x", E, 0, WILD, {{0}}}}},
      {"*.c.w.com", {{19, "/z", P, 0, 0, {{0}}}}},
      {"*.t.com", {{20, "/", P, 0, TLSO | WILD, {{0}}}, {21, "/", P, 0, PLAIN, {{0}}}}},
      {"", {{15, "/", P, 0, 0, {{0}}}}}},
     {
         {"GET", "foo.com", "/", {NULL}, 0, 10},
         {"GET", "foo.com", "/", {NULL}, 1, 11},
         {"GET", "a.foo.com", "/one", {NULL}, 0, 12},
         {"GET", "a.foo.com", "/x", {NULL}, 1, 13},
         {"GET", "a.b.foo.com", "/one", {NULL}, 0, 13}, /* only WILD_ANY routes that deep */
         {"GET", "x.a.b.foo.com", "/x", {NULL}, 0, 13},
         {"GET", "a.bar.com", "/", {NULL}, 0, 14},
         {"GET", "a.b.bar.com", "/", {NULL}, 0, 15}, /* Ingress wildcard: one label */
         {"GET", "tls.com", "/", {NULL}, 0, 15},     /* no route for plain listeners */
         {"GET", "tls.com", "/", {NULL}, 1, 16},
         {"GET", "strict.com", "/other", {NULL}, 0, -1}, /* no fallback to "" */
         {"GET", "a.b.w.com", "/x", {NULL}, 0, 18},
         {"GET", "a.b.w.com", "/y", {NULL}, 0, -1}, /* chosen, no match, no fallback */
         {"GET", "a.c.w.com", "/z", {NULL}, 0, 19},
         {"GET", "a.c.w.com", "/x", {NULL}, 0, -1}, /* the one-label wildcard wins */
         {"GET", "a.b.c.w.com", "/x", {NULL}, 0, 18},
         {"GET", "a.b.c.w.com", "/z", {NULL}, 0, -1},
         {"GET", "a..w.com", "/x", {NULL}, 0, 15}, /* empty label: no wildcard */
         {"GET", "a.t.com", "/", {NULL}, 0, 21},
         {"GET", "a.b.t.com", "/", {NULL}, 1, 20},
         {"GET", "a.b.t.com", "/", {NULL}, 0, 15}, /* WILD_ANY route is TLS only */
         {"GET", "", "/", {NULL}, 1, 15},
         {NULL, NULL, NULL, {NULL}, 0, 0},
     }},
};

/* A snapshot built from a tset (routes and conds in table order). */
struct tsnap {
    struct snapwire_snapshot s;
    struct snapwire_vhost vh[MAXV];
    struct snapwire_route rt[MAXV * MAXR];
    struct snapwire_cond cd[MAXV * MAXR * 4];
};

static void tsnap_build(struct tsnap *t, const struct tset *set)
{
    memset(t, 0, sizeof(*t));
    t->s.vhosts = t->vh;
    t->s.routes = t->rt;
    t->s.conds = t->cd;
    for (int v = 0; v < MAXV && set->vhosts[v].host; v++) {
        struct snapwire_vhost *vh = &t->vh[t->s.n_vhosts++];
        vh->host = set->vhosts[v].host;
        vh->first_route = t->s.n_routes;
        for (int k = 0; k < MAXR && set->vhosts[v].routes[k].id; k++) {
            const struct troute *tr = &set->vhosts[v].routes[k];
            struct snapwire_route *rt = &t->rt[t->s.n_routes++];
            rt->path = tr->path;
            rt->match = tr->match;
            rt->method = tr->method;
            rt->flags = tr->flags;
            rt->cluster = (uint32_t)tr->id;
            rt->source = "t/gw";
            rt->hsts = "";
            rt->first_cond = t->s.n_conds;
            for (int c = 0; c < 4 && tr->conds[c].kind; c++) {
                t->cd[t->s.n_conds].kind = tr->conds[c].kind;
                t->cd[t->s.n_conds].name = tr->conds[c].name;
                t->cd[t->s.n_conds].value = tr->conds[c].value;
                t->s.n_conds++;
                rt->cond_count++;
            }
            vh->route_count++;
        }
    }
}

static void test_gateway_tables(void **state)
{
    (void)state;
    for (size_t si = 0; si < sizeof(gw_sets) / sizeof(gw_sets[0]); si++) {
        static struct tsnap t;
        char err[256];
        struct router *r;

        tsnap_build(&t, &gw_sets[si]);
        r = router_build(&t.s, err, sizeof(err));
        if (!r) fail_msg("%s: %s", gw_sets[si].name, err);
        for (int q = 0; q < MAXQ && gw_sets[si].reqs[q].target; q++) {
            const struct treq *tq = &gw_sets[si].reqs[q];
            struct http1_header h[4];
            size_t nh = 0;
            struct router_request req;
            const struct snapwire_route *rt;
            int got;

            for (int k = 0; tq->hdrs[k]; k += 2, nh++) {
                h[nh].name = tq->hdrs[k];
                h[nh].name_len = strlen(tq->hdrs[k]);
                h[nh].value = tq->hdrs[k + 1];
                h[nh].value_len = strlen(tq->hdrs[k + 1]);
            }
            req = (struct router_request){.host = tq->host,
                                          .host_len = strlen(tq->host),
                                          .target = tq->target,
                                          .target_len = strlen(tq->target),
                                          .method = tq->method,
                                          .method_len = strlen(tq->method),
                                          .headers = h,
                                          .n_headers = nh,
                                          .tls = tq->tls};
            rt = router_route(r, &req);
            got = rt ? (int)rt->cluster : -1;
            if (got != tq->want)
                fail_msg("%s, request %d: %s %s%s%s: got %d want %d", gw_sets[si].name, q,
                         tq->method, tq->host, tq->target, tq->tls ? " (tls)" : "", got, tq->want);
        }
        router_free(r);
    }
}

static void test_match_is_route(void **state)
{
    /* router_match: no method (only ANY routes), no headers, a plain listener */
    static struct tsnap t;
    char err[256];
    struct router *r;
    const struct snapwire_route *rt;

    (void)state;
    tsnap_build(&t, &gw_sets[2]);
    r = router_build(&t.s, err, sizeof(err));
    assert_non_null(r);
    rt = router_match(r, "foo.com", 7, "/", 1);
    assert_non_null(rt);
    assert_int_equal(rt->cluster, 10);
    router_free(r);
    tsnap_build(&t, &gw_sets[0]);
    r = router_build(&t.s, err, sizeof(err));
    assert_non_null(r);
    rt = router_match(r, "gw.test", 7, "/a?v=1", 6);
    assert_non_null(rt);
    assert_int_equal(rt->cluster, 3);
    router_free(r);
}

static void test_invalid_regex(void **state)
{
    static const struct {
        uint8_t match;
        const char *path, *hdr_re, *want;
    } rows[] = {
        {X, "/a(", NULL, "route 1 (t/bad): invalid regular expression \"/a(\": missing closing"},
        {P, "/", "[z-a]", "route 1 (t/bad): invalid regular expression \"[z-a]\": range out"},
        {X, "/ok/.*", "(?<n", "route 1 (t/bad): invalid regular expression \"(?<n\": "},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct snapwire_cond cd = {.kind = HR, .name = "x-h", .value = rows[i].hdr_re};
        struct snapwire_route rt[2] = {{.path = "/", .match = P, .source = "t/ok", .hsts = ""},
                                       {.path = rows[i].path,
                                        .match = rows[i].match,
                                        .source = "t/bad",
                                        .hsts = "",
                                        .cond_count = rows[i].hdr_re ? 1 : 0}};
        struct snapwire_vhost vh = {"a", 0, 2};
        struct snapwire_snapshot s = {
            .n_vhosts = 1, .n_routes = 2, .n_conds = 1, .vhosts = &vh, .routes = rt, .conds = &cd};
        char err[256] = "";

        assert_null(router_build(&s, err, sizeof(err)));
        if (strncmp(err, rows[i].want, strlen(rows[i].want)) != 0)
            fail_msg("row %zu: err \"%s\", want \"%s...\"", i, err, rows[i].want);
    }
}

static uint32_t xs32(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void test_pick_cluster(void **state)
{
    static const struct {
        uint32_t w[4];      /* weights of backends to clusters 0..3 (cluster NONE if bit) */
        unsigned none_mask; /* backends whose cluster is SNAPWIRE_NONE */
        unsigned n;
        double want[5]; /* share per cluster 0..3, then NONE */
    } rows[] = {
        {{90, 10}, 0, 2, {0.90, 0.10, 0, 0, 0}},
        {{0, 5, 0, 5}, 0, 4, {0, 0.5, 0, 0.5, 0}}, /* weight 0: never */
        {{50, 50}, 0x1, 2, {0, 0.5, 0, 0, 0.5}},   /* unresolved share: NONE */
        {{0, 0, 0}, 0, 3, {0, 0, 0, 0, 1}},        /* all zero: NONE */
        {{1, 0}, 0, 2, {1, 0, 0, 0, 0}},
        {{UINT32_MAX, 0}, 0, 2, {1, 0, 0, 0, 0}},
        {{0, UINT32_MAX - 1, 1}, 0, 3, {0, 1, 0, 0, 0}},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct snapwire_backend be[4];
        struct snapwire_route rt = {.path = "/",
                                    .match = P,
                                    .cluster = SNAPWIRE_NONE,
                                    .source = "t/w",
                                    .hsts = "",
                                    .first_backend = 0,
                                    .backend_count = rows[i].n};
        struct snapwire_vhost vh = {"", 0, 1};
        struct snapwire_snapshot s = {.n_vhosts = 1,
                                      .n_routes = 1,
                                      .n_backends = rows[i].n,
                                      .vhosts = &vh,
                                      .routes = &rt,
                                      .backends = be};
        char err[128];
        struct router *r;
        unsigned long count[5] = {0};
        uint32_t x = 2463534242u;
        const int draws = 100000;

        for (unsigned k = 0; k < rows[i].n; k++) {
            be[k].cluster = (rows[i].none_mask >> k) & 1 ? SNAPWIRE_NONE : k;
            be[k].weight = rows[i].w[k];
        }
        r = router_build(&s, err, sizeof(err));
        assert_non_null(r);
        for (int d = 0; d < draws; d++) {
            uint32_t c = router_pick_cluster(r, &rt, xs32(&x));
            count[c == SNAPWIRE_NONE ? 4 : c]++;
        }
        for (int c = 0; c < 5; c++) {
            double share = (double)count[c] / draws;
            if (rows[i].want[c] == 0
                    ? count[c] != 0
                    : (share < rows[i].want[c] - 0.01 || share > rows[i].want[c] + 0.01))
                fail_msg("row %zu: cluster %d share %.4f, want %.2f", i, c, share, rows[i].want[c]);
        }
        /* the ends of the draw range land on the first and last backends with weight */
        if (rows[i].n == 4) {
            assert_int_equal(router_pick_cluster(r, &rt, 0), 1);
            assert_int_equal(router_pick_cluster(r, &rt, UINT32_MAX), 3);
        }
        router_free(r);
    }
}

/*
 * Backend ranges that start anywhere and overlap (the format allows it): each route draws
 * only from its own range, and the table stays one entry per backend - 20,000 routes all
 * naming the same 20,000 backends build at once (a table per route would need 400 million
 * entries).
 */
static void test_pick_cluster_shared_ranges(void **state)
{
    enum { N = 20000 };
    struct snapwire_backend *be = calloc(N, sizeof(*be));
    struct snapwire_route *rt = calloc(N, sizeof(*rt));
    struct snapwire_vhost vh = {"", 0, N};
    struct snapwire_snapshot s = {
        .n_vhosts = 1, .n_routes = N, .n_backends = N, .vhosts = &vh, .routes = rt, .backends = be};
    char err[128];
    struct router *r;
    uint32_t x = 88172645u;
    unsigned k;

    (void)state;
    assert_non_null(be);
    assert_non_null(rt);
    for (k = 0; k < N; k++) {
        be[k].cluster = k;
        be[k].weight = 1;
        rt[k].path = "/";
        rt[k].match = P;
        rt[k].cluster = SNAPWIRE_NONE;
        rt[k].source = "t/s";
        rt[k].hsts = "";
        /* even routes: the whole table; odd ones: the two backends k-1, k */
        rt[k].first_backend = k % 2 ? k - 1 : 0;
        rt[k].backend_count = k % 2 ? 2 : N;
    }
    r = router_build(&s, err, sizeof(err));
    assert_non_null(r);
    for (k = 1; k < N; k += 1999) {
        unsigned d, hits[2] = {0, 0};
        for (d = 0; d < 2000; d++) {
            uint32_t c = router_pick_cluster(r, &rt[k], xs32(&x));
            if (k % 2) {
                assert_true(c == k - 1 || c == k);
                hits[c - (k - 1)]++;
            } else {
                assert_true(c < N);
            }
        }
        if (k % 2) assert_true(hits[0] > 800 && hits[1] > 800);
    }
    router_free(r);
    free(rt);
    free(be);
}

static void test_pick_cluster_plain(void **state)
{
    struct snapwire_route rt[2] = {
        {.path = "/", .match = P, .cluster = 7, .source = "t/a", .hsts = ""},
        {.path = "/", .match = P, .cluster = SNAPWIRE_NONE, .source = "t/b", .hsts = ""}};
    struct snapwire_vhost vh = {"", 0, 2};
    struct snapwire_snapshot s = {.n_vhosts = 1, .n_routes = 2, .vhosts = &vh, .routes = rt};
    char err[128];
    struct router *r = router_build(&s, err, sizeof(err));

    (void)state;
    assert_non_null(r);
    assert_int_equal(router_pick_cluster(r, &rt[0], 12345), 7);
    assert_int_equal(router_pick_cluster(r, &rt[1], 12345), SNAPWIRE_NONE);
    assert_int_equal(router_pick_cluster(r, NULL, 12345), SNAPWIRE_NONE);
    router_free(r);
}

static void test_request_path(void **state)
{
    static const struct {
        const char *target, *path;
    } rows[] = {
        {"/a/b?q=1", "/a/b"},         {"/a/../b", "/b"},    {"//a//b/", "/a/b/"},
        {"http://h/x/%7e?y", "/x/~"}, {"http://h", "/"},    {"*", "*"},
        {"http://h?x=/y", "/"},       {"http://h#/y", "/"}, {"/a?b/../c", "/a"},
    };
    char buf[ROUTER_MAX_PATH + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *p;
        size_t n = router_request_path(rows[i].target, strlen(rows[i].target), buf, &p);
        if (n != strlen(rows[i].path) || memcmp(p, rows[i].path, n) != 0)
            fail_msg("row %zu: %s -> %.*s", i, rows[i].target, (int)n, p);
    }
}

/*
 * The first-segment index gives exactly what a linear scan gives: random route sets in one
 * vhost (paths over a small segment alphabet so that routes collide, regex patterns that
 * are and are not bucketable, methods, listener flags, conditions), random requests, the
 * linear router (bucket_min UINT32_MAX) against indexed ones (0 and the default).
 */
static const char *const segs[] = {"a", "b", "ab", "c-d", "x", ""};
static const char *const pats[] = {
    "/a/.*",     "/a",         "/b/[0-9]+", "/a/?x",     "/a.*",        "/ab|/b",
    "/(a|b)/.*", "/a/(x|y)",   ".*",        "/b/\\|",    "/[ab]/c",     "/x/(?#(|)|/a",
    "/a/[|]x",   "/a/\\Q|\\E", "/c-d",      "/x/[^]|]*", "/b/(?:x)|/a", "/x/[[:alpha:]|]+",
    "/a/b",      "/",          "/ab/.+",    "/%41",      "/b/x{2}",     "/b/{2}",
};

static void rnd_path(uint32_t *x, char *out, int allow_empty)
{
    int depth = (int)(xs32(x) % 4), o = 0;

    if (!depth && !allow_empty) depth = 1;
    for (int i = 0; i < depth; i++)
        o += sprintf(out + o, "/%s", segs[xs32(x) % 6]);
    if (o == 0 || xs32(x) % 5 == 0) o += sprintf(out + o, "/");
    out[o] = '\0';
}

static void test_index_equals_linear(void **state)
{
    static char paths[400][64];
    static struct snapwire_route rt[400];
    static struct snapwire_cond cd[400];
    uint32_t x = 88172645u;
    unsigned long checked = 0, matched = 0;

    (void)state;
    for (int round = 0; round < 60; round++) {
        uint32_t n = 33 + xs32(&x) % 360, nc = 0;
        struct snapwire_vhost vh = {"h", 0, n};
        struct snapwire_snapshot s = {.n_vhosts = 1, .vhosts = &vh, .routes = rt, .conds = cd};
        struct router *lin, *idx0, *idx;
        char err[256];

        for (uint32_t i = 0; i < n; i++) {
            uint32_t kind = xs32(&x) % 10;
            memset(&rt[i], 0, sizeof(rt[i]));
            rt[i].source = "t/rnd";
            rt[i].hsts = "";
            rt[i].cluster = i;
            if (kind < 3) {
                rt[i].match = X;
                rt[i].path = pats[xs32(&x) % (sizeof(pats) / sizeof(pats[0]))];
            } else {
                rt[i].match = kind < 6 ? E : P;
                rnd_path(&x, paths[i], 0);
                rt[i].path = paths[i];
            }
            if (xs32(&x) % 4 == 0) rt[i].method = (uint8_t)(1 + xs32(&x) % 3);
            if (xs32(&x) % 5 == 0) rt[i].flags = xs32(&x) % 2 ? PLAIN : TLSO;
            rt[i].first_cond = nc;
            if (xs32(&x) % 4 == 0 && nc < 400) {
                static const struct snapwire_cond pool[] = {
                    {HX, "x-a", "1"}, {HR, "x-a", "[0-2]"}, {QX, "q", "1"}, {QX, "r", ""}};
                cd[nc++] = pool[xs32(&x) % 4];
                rt[i].cond_count = 1;
            }
        }
        s.n_routes = n;
        s.n_conds = nc;
        lin = build(&s, UINT32_MAX, err, sizeof(err));
        if (!lin) fail_msg("round %d: %s", round, err);
        idx0 = build(&s, 0, err, sizeof(err));
        idx = router_build(&s, err, sizeof(err));
        assert_non_null(idx0);
        assert_non_null(idx);
        assert_null(lin->vh[0].buckets);
        assert_non_null(idx->vh[0].buckets);
        for (int q = 0; q < 400; q++) {
            static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "BREW"};
            static const char *const queries[] = {"", "?q=1", "?r", "?q=2&q=1", "?x=1&r="};
            static const char *const odd[] = {"*",      "",       "//a//b",       "/a/../ab/x",
                                              "/%61/b", "/a%2fb", "http://h/a/b", "/c-d/"};
            char target[128], path[64];
            struct http1_header h = {"X-A", 3, "1", 1};
            const struct snapwire_route *a, *b, *c;
            struct router_request req;
            uint32_t hv = xs32(&x) % 4;

            if (xs32(&x) % 8 == 0) {
                snprintf(target, sizeof(target), "%s", odd[xs32(&x) % 8]);
            } else {
                rnd_path(&x, path, 1);
                snprintf(target, sizeof(target), "%s%s", path, queries[xs32(&x) % 5]);
            }
            h.value = hv == 0 ? "1" : hv == 1 ? "2" : "7";
            req = (struct router_request){.host = "h",
                                          .host_len = 1,
                                          .target = target,
                                          .target_len = strlen(target),
                                          .method = methods[xs32(&x) % 5],
                                          .headers = &h,
                                          .n_headers = hv == 3 ? 0 : 1,
                                          .tls = (int)(xs32(&x) % 2)};
            req.method_len = strlen(req.method);
            a = router_route(lin, &req);
            b = router_route(idx0, &req);
            c = router_route(idx, &req);
            if (a != b || a != c)
                fail_msg("round %d: %s %s: linear %d, index %d / %d", round, req.method, target,
                         a ? (int)a->cluster : -1, b ? (int)b->cluster : -1,
                         c ? (int)c->cluster : -1);
            checked++;
            matched += a != NULL;
        }
        router_free(lin);
        router_free(idx0);
        router_free(idx);
    }
    /* the cross-check must exercise hits, not only misses */
    assert_true(matched > checked / 4);
}

static void test_bucketable_patterns(void **state)
{
    static const struct {
        const char *pat, *key; /* key NULL: the any list */
    } rows[] = {
        {"/a/.*", "a"},
        {"/a", "a"},
        {"/api/v[0-9]+", "api"},
        {"/a/?x", NULL},
        {"/a.*", NULL},
        {"/ab|/b", NULL},
        {"/(a|b)/.*", NULL},
        {"/a/(x|y)", "a"},
        {".*", NULL},
        {"/b/\\|", "b"},
        {"/x/(?#(|)|/a", NULL},
        {"/a/[|]x", "a"},
        {"/a/\\Q|\\E", "a"},
        {"/a/\\Q|", "a"},
        {"/x/[^]|]*", "x"},
        {"/", ""},
        {"/b/x{2}", "b"},
        {"/b/{2}", NULL},
        {"/b/*", NULL},
        {"/b/+", NULL},
        {"(?i)/a/.*", NULL},
        {"/a$", NULL},
        {"/a\\/b", NULL},
        {"/a/b|c", NULL},
        {"/x/[[:alpha:]|]+", "x"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct rent e = {.path = rows[i].pat, .match = X};
        const char *key;
        uint32_t klen;
        int got = route_segment(&e, &key, &klen);
        if (got != (rows[i].key != NULL) ||
            (got && (klen != strlen(rows[i].key) || memcmp(key, rows[i].key, klen) != 0)))
            fail_msg("row %zu: %s -> %d %.*s", i, rows[i].pat, got, got ? (int)klen : 0,
                     got ? key : "");
    }
}

static int teardown_regex(void **state)
{
    (void)state;
    regex_thread_end();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_no_catch_all),
        cmocka_unit_test(test_duplicate_vhost),
        cmocka_unit_test(test_normalize_host),
        cmocka_unit_test(test_gateway_tables),
        cmocka_unit_test(test_match_is_route),
        cmocka_unit_test(test_invalid_regex),
        cmocka_unit_test(test_pick_cluster),
        cmocka_unit_test(test_pick_cluster_plain),
        cmocka_unit_test(test_request_path),
        cmocka_unit_test(test_index_equals_linear),
        cmocka_unit_test(test_bucketable_patterns),
        cmocka_unit_test(test_pick_cluster_shared_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_regex);
}
