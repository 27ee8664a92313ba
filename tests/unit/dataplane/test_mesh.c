/*
 * mesh.c: the Service directory index (by ClusterIP:port, v4-mapped folded, IPv6; by name in
 * every form a pod's resolver accepts), HTTP detection as a table, and SO_ORIGINAL_DST on a
 * connection nothing redirected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mesh.c"

static struct snapwire_mesh_service svcs[] = {
    {"shop", "backend", "10.96.0.10", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 0, 1},
    {"shop", "backend", "10.96.0.10", 8080, 1, SNAPWIRE_MESH_PROTO_DETECT, 0, 0, 0},
    {"shop", "db", "10.96.0.2", 5432, 2, SNAPWIRE_MESH_PROTO_OPAQUE, 0, 0, 0},
    {"other", "backend", "10.96.1.10", 80, 3, SNAPWIRE_MESH_PROTO_HTTP, 0, 0, 0},
    {"shop", "backend", "fd00:96::10", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 0, 1}, /* dual stack */
};

static struct mesh_index *build(const char *cluster_domain)
{
    struct snapwire_snapshot sw;
    struct mesh_index *m = NULL;
    char err[128];

    static struct snapwire_cluster empty[5];

    memset(&sw, 0, sizeof(sw));
    sw.meta.cluster_domain = cluster_domain;
    sw.n_clusters = 5;
    sw.clusters = empty;
    sw.n_mesh_services = sizeof(svcs) / sizeof(svcs[0]);
    sw.mesh_services = svcs;
    assert_int_equal(mesh_index_build(&sw, &m, err, sizeof(err)), 0);
    assert_non_null(m);
    return m;
}

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    return ss;
}

static uint32_t addr_cluster(const struct mesh_index *m, struct sockaddr_storage ss)
{
    const struct snapwire_mesh_service *s = mesh_find_addr(m, (struct sockaddr *)&ss);
    return s ? s->cluster : 99;
}

static void test_find_addr(void **state)
{
    struct mesh_index *m = build(NULL);

    (void)state;
    assert_int_equal(addr_cluster(m, v4("10.96.0.10", 80)), 0);
    assert_int_equal(addr_cluster(m, v4("10.96.0.10", 8080)), 1);
    assert_int_equal(addr_cluster(m, v4("10.96.0.2", 5432)), 2);
    assert_int_equal(addr_cluster(m, v4("10.96.0.10", 81)), 99);        /* port matters */
    assert_int_equal(addr_cluster(m, v4("10.96.0.11", 80)), 99);        /* not a Service */
    assert_int_equal(addr_cluster(m, v6("::ffff:10.96.0.2", 5432)), 2); /* dual-stack socket */
    {
        struct sockaddr_storage ss = v6("fd00:96::10", 80);
        const struct snapwire_mesh_service *s = mesh_find_addr(m, (struct sockaddr *)&ss);
        assert_non_null(s);
        assert_string_equal(s->address, "fd00:96::10");
    }
    assert_int_equal(addr_cluster(m, v6("fd00:96::11", 80)), 99);
    assert_null(mesh_find_addr(NULL, (struct sockaddr *)&(struct sockaddr_storage){0}));
    mesh_index_free(m);
}

static const struct {
    const char *ns, *host, *domain;
    uint16_t port;
    uint32_t want; /* cluster, 99 = none */
} host_cases[] = {
    {"shop", "backend", NULL, 80, 0},
    {"shop", "backend", NULL, 8080, 1},
    {"other", "backend", NULL, 80, 3}, /* a bare name is the pod's own namespace */
    {"", "backend", NULL, 80, 99},     /* no namespace known: a bare name names nothing */
    {"other", "backend.shop", NULL, 80, 0},
    {"other", "backend.shop.svc", NULL, 80, 0},
    {"other", "backend.shop.svc.cluster.local", NULL, 80, 0},
    {"other", "backend.shop.svc.cluster.local.", NULL, 80, 0},
    {"other", "backend.shop.svc.example.org", NULL, 80, 99},
    {"other", "backend.shop.svc.example.org", "example.org", 80, 0},
    {"other", "backend.shop.svc.cluster.local", "example.org", 80, 99},
    {"other", "backend.shop.example.com", NULL, 80, 99},
    {"shop", "db.shop", NULL, 5432, 2},
    {"shop", "db.shop", NULL, 80, 99},
    {"shop", "backend.nowhere", NULL, 80, 99},
    {"shop", "back", NULL, 80, 99}, /* a prefix of a name is not the name */
    {"shop", "backends", NULL, 80, 99},
    {"shop", "10.96.0.10", NULL, 80, 99}, /* an address is looked up by address */
};

static void test_find_host(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
        struct mesh_index *m = build(host_cases[i].domain);
        const struct snapwire_mesh_service *s;
        mesh_configure(host_cases[i].ns, 0);
        s = mesh_find_host(m, host_cases[i].host, strlen(host_cases[i].host), host_cases[i].port);
        if ((s ? s->cluster : 99) != host_cases[i].want)
            fail_msg("case %zu: %s in %s port %u: got %u want %u", i, host_cases[i].host,
                     host_cases[i].ns, host_cases[i].port, s ? s->cluster : 99, host_cases[i].want);
        mesh_index_free(m);
    }
    mesh_configure(NULL, 0);
}

/* The discovery feed's keys of Hosts, and whether a snapshot has a Service by key. */
static void test_host_key(void **state)
{
    struct mesh_index *m = build(NULL);
    char key[130];

    (void)state;
    mesh_configure("shop", 0);
    assert_int_equal(mesh_host_key(m, "backend", 7, key, sizeof(key)), 0);
    assert_string_equal(key, "shop/backend");
    assert_int_equal(mesh_host_key(m, "backend.other.svc.cluster.local.", 32, key, sizeof(key)), 0);
    assert_string_equal(key, "other/backend");
    assert_int_equal(mesh_host_key(NULL, "db.shop.svc", 11, key, sizeof(key)), 0);
    assert_string_equal(key, "shop/db");
    /* not a Service's name: an address, another domain, not DNS labels, too small a buffer */
    assert_int_equal(mesh_host_key(m, "10.96.0.10", 10, key, sizeof(key)), -1);
    assert_int_equal(mesh_host_key(m, "www.example.com", 15, key, sizeof(key)), -1);
    assert_int_equal(mesh_host_key(m, "a_b.shop", 8, key, sizeof(key)), -1);
    assert_int_equal(mesh_host_key(m, "[fd00::1]", 9, key, sizeof(key)), -1);
    assert_int_equal(mesh_host_key(m, "backend.shop", 12, key, 8), -1);
    assert_true(mesh_has_service(m, "shop/backend")); /* any of its ports */
    assert_true(mesh_has_service(m, "other/backend"));
    assert_true(mesh_has_service(m, "shop/db"));
    assert_false(mesh_has_service(m, "shop/back"));
    assert_false(mesh_has_service(m, "shop/backends"));
    assert_false(mesh_has_service(m, "nowhere/backend"));
    assert_false(mesh_has_service(m, "backend"));
    assert_false(mesh_has_service(NULL, "shop/backend"));
    mesh_configure(NULL, 0);
    mesh_index_free(m);
}

static void test_looks_http(void **state)
{
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        {"GET / HTTP/1.1\r\n", 1},
        {"POST /x", 1},
        {"M-SEARCH * HTTP/1.1", 1},
        {"GET", -2},
        {"", -2},
        {"\x16\x03\x01\x02\x00", 0}, /* a TLS ClientHello */
        {" GET /", 0},
        {"SSH-2.0-OpenSSH_9.2\r\n", 0},
        {"\x00\x00\x00\x08\x04\xd2\x16\x2f", 0}, /* PostgreSQL SSLRequest */
        {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0},  /* no space within a method's length */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in);
        if (i == 8) len = 8;
        if (mesh_looks_http(cases[i].in, len) != cases[i].want)
            fail_msg("case %zu: got %d want %d", i, mesh_looks_http(cases[i].in, len),
                     cases[i].want);
    }
}

static void test_original_dst_not_redirected(void **state)
{
    struct sockaddr_storage orig;
    socklen_t ol = sizeof(orig);
    int sv[2];

    (void)state;
    /* a socket no NAT rule touched has no original destination */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mesh_original_dst(sv[0], &orig, &ol), -1);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(netaddr_port((struct sockaddr *)&(struct sockaddr_storage){0}), 0);
}

/*
 * Authorization: pod 10.1.0.5:8080 is behind backend:80, 10.1.0.5:9000 behind admin:80 and
 * db:5432 (two Services, one endpoint), 10.1.0.9:8080 behind nothing.
 */
static struct snapwire_endpoint az_eps[] = {
    {"10.1.0.5", 8080, 1, 1}, {"10.1.0.5", 9000, 1, 1}, {"10.1.0.5", 9000, 1, 1}};
static struct snapwire_cluster az_clusters[3];
static struct snapwire_mesh_service az_svcs[] = {
    {"shop", "admin", "10.96.0.3", 80, 1, SNAPWIRE_MESH_PROTO_HTTP, 0, 0, 0},
    {"shop", "db", "10.96.0.4", 5432, 2, SNAPWIRE_MESH_PROTO_OPAQUE, 0, 0, 0},
    {"shop", "backend", "10.96.0.5", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 0, 0, 0},
};
#define ID(sa) "spiffe://cluster.local/ns/shop/sa/" sa
static struct snapwire_principal az_principals[] = {
    {SNAPWIRE_PRINCIPAL_IDENTITY, ID("frontend")},  /* 0: admin allow */
    {SNAPWIRE_PRINCIPAL_NAMESPACE, "ops"},          /* 1: admin allow */
    {SNAPWIRE_PRINCIPAL_UNAUTHENTICATED, ""},       /* 2: backend deny */
    {SNAPWIRE_PRINCIPAL_IDENTITY, ID("intruder")},  /* 3: db deny */
    {SNAPWIRE_PRINCIPAL_IDENTITY, ID("db-client")}, /* 4: db allow, port 5432 */
    {SNAPWIRE_PRINCIPAL_AUTHENTICATED, ""},         /* 5: admin allow, port 81 only */
};
static struct snapwire_authz az_policies[] = {
    {"shop", "admin", 80, SNAPWIRE_AUTHZ_ALLOW, "shop/admin-allow", 0, 2},
    {"shop", "admin", 81, SNAPWIRE_AUTHZ_ALLOW, "shop/admin-81", 5, 1},
    {"shop", "backend", 0, SNAPWIRE_AUTHZ_DENY, "shop/no-plain", 2, 1},
    {"shop", "db", 0, SNAPWIRE_AUTHZ_DENY, "shop/db-deny", 3, 1},
    {"shop", "db", 5432, SNAPWIRE_AUTHZ_ALLOW, "shop/db-allow", 4, 1},
};

static struct mesh_index *az_build(int default_deny)
{
    static struct snapwire_snapshot sw;
    struct mesh_index *m = NULL;
    char err[128];

    memset(&sw, 0, sizeof(sw));
    az_clusters[0].first_endpoint = 0, az_clusters[0].endpoint_count = 1;
    az_clusters[1].first_endpoint = 1, az_clusters[1].endpoint_count = 1;
    az_clusters[2].first_endpoint = 2, az_clusters[2].endpoint_count = 1;
    sw.meta.trust_domain = "cluster.local";
    sw.meta.authz_default_deny = (uint8_t)default_deny;
    sw.n_clusters = 3, sw.clusters = az_clusters;
    sw.n_endpoints = 3, sw.endpoints = az_eps;
    sw.n_mesh_services = 3, sw.mesh_services = az_svcs;
    sw.n_authz = 5, sw.authz = az_policies;
    sw.n_principals = 6, sw.principals = az_principals;
    assert_int_equal(mesh_index_build(&sw, &m, err, sizeof(err)), 0);
    return m;
}

static void test_authorize(void **state)
{
    static const struct {
        int default_deny;
        const char *ip;
        uint16_t port;
        const char *uri; /* NULL: plaintext */
        int want;
        const char *policy;
    } cases[] = {
        {0, "10.1.0.5", 8080, ID("anyone"), 1, "default"},            /* backend: no allow */
        {0, "10.1.0.5", 8080, NULL, 0, "shop/no-plain"},              /* backend deny */
        {1, "10.1.0.5", 8080, ID("anyone"), 0, "default"},            /* default deny */
        {0, "10.1.0.5", 9000, ID("frontend"), 1, "shop/admin-allow"}, /* admin allow */
        {0, "10.1.0.5", 9000, "spiffe://cluster.local/ns/ops/sa/x", 1, "shop/admin-allow"},
        {0, "10.1.0.5", 9000, "spiffe://cluster.local/ns/opsx/sa/x", 0, "no-allow-policy-matched"},
        {0, "10.1.0.5", 9000, ID("other-port"), 0, "no-allow-policy-matched"},
        /* db is on the same endpoint: its allow admits what admin's does not; its deny
           refuses the intruder whatever the allows say */
        {0, "10.1.0.5", 9000, ID("db-client"), 1, "shop/db-allow"},
        {0, "10.1.0.5", 9000, ID("intruder"), 0, "shop/db-deny"},
        {0, "10.1.0.9", 8080, NULL, 1, "default"}, /* behind no Service */
        {1, "10.1.0.9", 8080, ID("frontend"), 0, "default"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mesh_index *m = az_build(cases[i].default_deny);
        struct sockaddr_storage ss = v4(cases[i].ip, cases[i].port);
        const char *policy = NULL;
        int got = mesh_authorize(m, (struct sockaddr *)&ss, cases[i].uri, &policy);
        if (got != cases[i].want || strcmp(policy, cases[i].policy) != 0)
            fail_msg("case %zu: got %d (%s) want %d (%s)", i, got, policy, cases[i].want,
                     cases[i].policy);
        mesh_index_free(m);
    }
}

static void test_permissive_setting(void **state)
{
    (void)state;
    mesh_configure("shop", 1);
    assert_int_equal(mesh_permissive(), 1);
    mesh_configure("shop", 0);
    assert_int_equal(mesh_permissive(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_addr),
        cmocka_unit_test(test_find_host),
        cmocka_unit_test(test_host_key),
        cmocka_unit_test(test_looks_http),
        cmocka_unit_test(test_original_dst_not_redirected),
        cmocka_unit_test(test_permissive_setting),
        cmocka_unit_test(test_authorize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
