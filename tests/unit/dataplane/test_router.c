/*
 * Router semantics as data tables: the Kubernetes Ingress path table, route order (longest
 * wins, Exact over Prefix), vhost specificity (exact > one-label wildcard > catch-all, no
 * fallback) and Host normalisation.
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
static struct snapwire_route routes[] = {
    {"/aaa/bbb", P, 1, "t/1", 0, 0, ""}, {"/foo", E, 2, "t/2", 0, 0, ""},
    {"/foo", P, 3, "t/3", 0, 0, ""},     {"/aaa", P, 4, "t/4", 0, 0, ""},
    {"/", P, 5, "t/5", 0, 0, ""},        {"/", P, 6, "t/6", 0, 0, ""},
    {"/", P, 7, "t/7", 0, 0, ""},        {"/api", P, 8, "t/8", 0, 0, ""},
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),     cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_no_catch_all),   cmocka_unit_test(test_duplicate_vhost),
        cmocka_unit_test(test_normalize_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
