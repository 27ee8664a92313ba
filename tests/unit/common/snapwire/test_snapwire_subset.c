/*
 * snapwire_subset unit tests: which records a query keeps (by ClusterIP:port in any IPv6
 * spelling, by name, by the pod's own addresses), what they drag along (clusters, endpoints,
 * identities, CA bundles, the own Services' policies) and that every index is rewritten: each
 * subset is encoded and decoded (the decoder checks every range) and read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "snapwire.h"
#include "snapwire_subset.h"

#define ID_API "spiffe://cluster.local/ns/default/sa/api"
#define ID_DB "spiffe://cluster.local/ns/shop/sa/db"
#define ID_WEB "spiffe://cluster.local/ns/default/sa/web"
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n"

static struct snapwire_listener L[] = {{"http", "", 8080, SNAPWIRE_PROTO_HTTP}};
static struct snapwire_route R[] = {{.path = "/",
                                     .match = SNAPWIRE_MATCH_PREFIX,
                                     .cluster = 3,
                                     .source = "default/edge",
                                     .hsts = ""}};
static struct snapwire_vhost V[] = {{"edge.example", 0, 1}};
static struct snapwire_cert K[] = {
    {"default/ca", "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n", "", "aa", 1},
    {"default/edge-tls", "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n", KEY_PEM,
     "bb", 2},
};
static struct snapwire_tls_host T[] = {
    {"edge.example", 1, SNAPWIRE_NONE, SNAPWIRE_NONE, SNAPWIRE_CLIENT_VERIFY_OFF}};
/* api: 0-1, web: 2 (v6), db: 3, edge (Ingress only): 4 */
static struct snapwire_endpoint E[] = {{"10.0.0.1", 8080, 1, 1},
                                       {"10.0.0.2", 8080, 1, 1},
                                       {"fd00::1", 8080, 1, 1},
                                       {"10.0.1.1", 5432, 1, 1},
                                       {"10.9.9.9", 80, 1, 1}};
#define CL(n, first, count, ca)                                                                    \
    {                                                                                              \
        .name = n, .lb = SNAPWIRE_LB_ROUND_ROBIN, .first_endpoint = first,                         \
        .endpoint_count = count, .tls = ca != SNAPWIRE_NONE, .tls_sni = "", .tls_ca = ca,          \
        .hash_name = "", .affinity_cookie = ""                                                     \
    }
static struct snapwire_cluster C[] = {
    CL("default/api:80", 0, 2, SNAPWIRE_NONE), CL("default/web:80", 2, 1, 0u),
    CL("shop/db:5432", 3, 1, SNAPWIRE_NONE), CL("default/edge:80", 4, 1, SNAPWIRE_NONE)};
static struct snapwire_mesh_id MI[] = {{ID_API}, {ID_DB}, {ID_WEB}};
/* sorted by (address text, port) */
static struct snapwire_mesh_service M[] = {
    {"default", "api", "10.96.0.10", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 0, 1},
    {"shop", "db", "10.96.0.20", 5432, 2, SNAPWIRE_MESH_PROTO_OPAQUE, 1, 1, 1},
    {"default", "other", "10.96.0.30", 80, SNAPWIRE_NONE, SNAPWIRE_MESH_PROTO_DETECT, 0, 0, 0},
    {"default", "api", "fd00:10::1", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 0, 1},
    {"default", "web", "fd00:10::2", 80, 1, SNAPWIRE_MESH_PROTO_HTTP, 1, 2, 1},
};
static struct snapwire_principal P[] = {{SNAPWIRE_PRINCIPAL_AUTHENTICATED, ""},
                                        {SNAPWIRE_PRINCIPAL_UNAUTHENTICATED, ""},
                                        {SNAPWIRE_PRINCIPAL_IDENTITY, ID_API},
                                        {SNAPWIRE_PRINCIPAL_NAMESPACE, "default"}};
/* sorted by (ns, name, port, source) */
static struct snapwire_authz A[] = {
    {"default", "api", 0, SNAPWIRE_AUTHZ_ALLOW, "default/p-api", 0, 1},
    {"default", "web", 80, SNAPWIRE_AUTHZ_DENY, "default/p-web", 1, 1},
    {"shop", "db", 0, SNAPWIRE_AUTHZ_ALLOW, "shop/p-db", 2, 2},
};

static struct snapwire_snapshot full(void)
{
    struct snapwire_snapshot s = {0};

    s.meta.default_cluster = 3;
    s.meta.default_cert = 1;
    s.meta.source = "file:/m";
    s.meta.trust_domain = "cluster.local";
    s.meta.cluster_domain = "cluster.local";
    s.meta.authz_default_deny = 1;
    s.n_listeners = 1, s.listeners = L;
    s.n_vhosts = 1, s.vhosts = V;
    s.n_routes = 1, s.routes = R;
    s.n_clusters = 4, s.clusters = C;
    s.n_endpoints = 5, s.endpoints = E;
    s.n_certs = 2, s.certs = K;
    s.n_tls_hosts = 1, s.tls_hosts = T;
    s.n_mesh_services = 5, s.mesh_services = M;
    s.n_mesh_ids = 3, s.mesh_ids = MI;
    s.n_authz = 3, s.authz = A;
    s.n_principals = 4, s.principals = P;
    return s;
}

/*
 * The subset of full() for keys and addresses, through the wire: encoded, then decoded. Cut
 * twice, with an index made for the call and with one made beforehand: the same bytes.
 */
static void subset(const struct snapwire_subset_key *keys, size_t n_keys, const char *const *addrs,
                   size_t n_addrs, struct snapwire_snapshot *d)
{
    struct snapwire_snapshot s = full(), out;
    struct snapwire_subset_query q = {keys, n_keys, addrs, n_addrs, NULL};
    struct snapwire_subset_index *ix;
    uint8_t *f[2];
    size_t len[2];
    char err[256];
    int i;

    assert_non_null(ix = snapwire_subset_index_new(&s));
    for (i = 0; i < 2; i++) {
        q.index = i ? ix : NULL;
        if (snapwire_mesh_subset(&s, &q, &out, err, sizeof(err))) fail_msg("subset: %s", err);
        if (snapwire_encode(&out, 5, &f[i], &len[i], err, sizeof(err))) fail_msg("encode: %s", err);
        snapwire_subset_free(&out);
    }
    snapwire_subset_index_free(ix);
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(f[0], f[1], len[0]);
    if (snapwire_decode(f[0], len[0], d, err, sizeof(err))) fail_msg("decode: %s", err);
    free(f[0]);
    free(f[1]);
}

/* Nothing of the edge survives, whatever the query. */
static void assert_no_edge(const struct snapwire_snapshot *d)
{
    uint32_t i;

    assert_int_equal(d->n_listeners, 0);
    assert_int_equal(d->n_vhosts, 0);
    assert_int_equal(d->n_routes, 0);
    assert_int_equal(d->n_tls_hosts, 0);
    assert_int_equal(d->n_conds + d->n_backends + d->n_filters + d->n_hdr_edits, 0);
    assert_int_equal(d->meta.default_cluster, SNAPWIRE_NONE);
    assert_int_equal(d->meta.default_cert, SNAPWIRE_NONE);
    for (i = 0; i < d->n_certs; i++)
        assert_string_equal(d->certs[i].key_pem, "");
    assert_string_equal(d->meta.trust_domain, "cluster.local");
    assert_string_equal(d->meta.source, "file:/m");
    assert_int_equal(d->meta.authz_default_deny, 1);
}

static void test_by_address_v4(void **state)
{
    struct snapwire_subset_key k[] = {{NULL, NULL, "10.96.0.10", 80}, /* api */
                                      {NULL, NULL, "10.96.0.10", 81}, /* no such port */
                                      {NULL, NULL, "10.96.0.99", 80}};
    struct snapwire_snapshot d;

    (void)state;
    subset(k, 3, NULL, 0, &d);
    assert_no_edge(&d);
    assert_int_equal(d.n_mesh_services, 1);
    assert_string_equal(d.mesh_services[0].address, "10.96.0.10");
    assert_int_equal(d.mesh_services[0].cluster, 0);
    assert_int_equal(d.n_clusters, 1);
    assert_string_equal(d.clusters[0].name, "default/api:80");
    assert_int_equal(d.clusters[0].first_endpoint, 0);
    assert_int_equal(d.clusters[0].endpoint_count, 2);
    assert_string_equal(d.endpoints[1].address, "10.0.0.2");
    assert_int_equal(d.n_mesh_ids, 1);
    assert_string_equal(d.mesh_ids[d.mesh_services[0].first_id].uri, ID_API);
    assert_int_equal(d.n_authz, 0); /* not the pod's own Service */
    assert_int_equal(d.n_principals, 0);
    assert_int_equal(d.n_certs, 0);
    snapwire_free(&d);
}

static void test_by_address_v6_spellings(void **state)
{
    /* fd00:10::2 written two other ways */
    struct snapwire_subset_key k1[] = {{NULL, NULL, "fd00:10:0:0::2", 80}};
    struct snapwire_subset_key k2[] = {{NULL, NULL, "FD00:0010::0:2", 80}};
    struct snapwire_snapshot d;
    int i;

    (void)state;
    for (i = 0; i < 2; i++) {
        subset(i ? k2 : k1, 1, NULL, 0, &d);
        assert_no_edge(&d);
        assert_int_equal(d.n_mesh_services, 1);
        assert_string_equal(d.mesh_services[0].name, "web");
        assert_string_equal(d.mesh_services[0].address, "fd00:10::2");
        /* web is cluster 1, its endpoint 2, its identity 2, its CA cert 0: all re-indexed */
        assert_int_equal(d.mesh_services[0].cluster, 0);
        assert_int_equal(d.n_clusters, 1);
        assert_int_equal(d.clusters[0].first_endpoint, 0);
        assert_int_equal(d.n_endpoints, 1);
        assert_string_equal(d.endpoints[0].address, "fd00::1");
        assert_int_equal(d.mesh_services[0].first_id, 0);
        assert_string_equal(d.mesh_ids[0].uri, ID_WEB);
        assert_int_equal(d.n_certs, 1); /* the CA bundle, never the edge's key */
        assert_int_equal(d.clusters[0].tls_ca, 0);
        assert_string_equal(d.certs[0].name, "default/ca");
        snapwire_free(&d);
    }
}

static void test_by_name(void **state)
{
    struct snapwire_subset_key k[] = {{"default", "api", NULL, 0}, {"shop", "nope", NULL, 0}};
    struct snapwire_snapshot d;

    (void)state;
    subset(k, 2, NULL, 0, &d);
    /* every port and ClusterIP of default/api, still in (address, port) order */
    assert_int_equal(d.n_mesh_services, 2);
    assert_string_equal(d.mesh_services[0].address, "10.96.0.10");
    assert_string_equal(d.mesh_services[1].address, "fd00:10::1");
    assert_int_equal(d.mesh_services[0].cluster, d.mesh_services[1].cluster);
    assert_int_equal(d.n_clusters, 1);
    assert_int_equal(d.n_mesh_ids, 1);
    snapwire_free(&d);
}

static void test_own_addresses_and_authz(void **state)
{
    /* the pod is db's endpoint (v4) and web's (v6, another spelling) */
    const char *own[] = {"10.0.1.1", "fd00:0::1"};
    struct snapwire_subset_key k[] = {{NULL, NULL, "10.96.0.10", 80}};
    struct snapwire_snapshot d;

    (void)state;
    subset(k, 1, own, 2, &d);
    assert_no_edge(&d);
    assert_int_equal(d.n_mesh_services, 3); /* api (asked for), db, web (its own) */
    assert_string_equal(d.mesh_services[0].name, "api");
    assert_string_equal(d.mesh_services[1].name, "db");
    assert_string_equal(d.mesh_services[2].name, "web");
    /* clusters in the full order: api, web, db -> 0, 1, 2; endpoints api 0-1, web 2, db 3 */
    assert_int_equal(d.n_clusters, 3);
    assert_string_equal(d.clusters[d.mesh_services[1].cluster].name, "shop/db:5432");
    assert_string_equal(d.clusters[d.mesh_services[2].cluster].name, "default/web:80");
    assert_string_equal(d.endpoints[d.clusters[d.mesh_services[1].cluster].first_endpoint].address,
                        "10.0.1.1");
    assert_int_equal(d.n_endpoints, 4);
    assert_string_equal(d.mesh_ids[d.mesh_services[1].first_id].uri, ID_DB);
    assert_string_equal(d.mesh_ids[d.mesh_services[2].first_id].uri, ID_WEB);
    /* the policies of web and db (not api's: the pod does not back api) */
    assert_int_equal(d.n_authz, 2);
    assert_string_equal(d.authz[0].source, "default/p-web");
    assert_string_equal(d.authz[1].source, "shop/p-db");
    assert_int_equal(d.n_principals, 3);
    assert_int_equal(d.principals[d.authz[0].first_principal].kind,
                     SNAPWIRE_PRINCIPAL_UNAUTHENTICATED);
    assert_int_equal(d.authz[1].principal_count, 2);
    assert_string_equal(d.principals[d.authz[1].first_principal].value, ID_API);
    assert_string_equal(d.principals[d.authz[1].first_principal + 1].value, "default");
    snapwire_free(&d);
}

static void test_empty_query(void **state)
{
    struct snapwire_snapshot d;

    (void)state;
    subset(NULL, 0, NULL, 0, &d);
    assert_no_edge(&d);
    assert_int_equal(d.n_mesh_services + d.n_clusters + d.n_endpoints + d.n_mesh_ids, 0);
    assert_int_equal(d.n_authz + d.n_principals + d.n_certs, 0);
    assert_int_equal(d.generation, 5);
    snapwire_free(&d);
}

static void test_bad_addresses(void **state)
{
    struct snapwire_snapshot s = full(), out;
    struct snapwire_subset_key k[] = {{NULL, NULL, "10.96.0", 80}};
    const char *own[] = {"fd00::1::2"};
    struct snapwire_subset_query q1 = {k, 1, NULL, 0, NULL}, q2 = {NULL, 0, own, 1, NULL};
    char err[256];

    (void)state;
    assert_int_equal(snapwire_mesh_subset(&s, &q1, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "10.96.0"));
    assert_int_equal(out.n_mesh_services, 0);
    assert_int_equal(snapwire_mesh_subset(&s, &q2, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fd00::1::2"));
    snapwire_subset_free(&out); /* zeroed: fine */
}

/* A snapshot without mesh data gives an empty subset. */
static void test_not_a_mesh_snapshot(void **state)
{
    struct snapwire_snapshot s = full(), out;
    struct snapwire_subset_key k[] = {{NULL, NULL, "10.96.0.10", 80}};
    struct snapwire_subset_query q = {k, 1, NULL, 0, NULL};
    uint8_t *f;
    size_t len;
    char err[256];

    (void)state;
    s.meta.trust_domain = "";
    s.meta.authz_default_deny = 0;
    s.n_mesh_services = s.n_mesh_ids = s.n_authz = s.n_principals = 0;
    assert_int_equal(snapwire_mesh_subset(&s, &q, &out, err, sizeof(err)), 0);
    assert_int_equal(out.n_mesh_services + out.n_clusters, 0);
    assert_int_equal(snapwire_encode(&out, 1, &f, &len, err, sizeof(err)), 0);
    free(f);
    snapwire_subset_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_address_v4),
        cmocka_unit_test(test_by_address_v6_spellings),
        cmocka_unit_test(test_by_name),
        cmocka_unit_test(test_own_addresses_and_authz),
        cmocka_unit_test(test_empty_query),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_not_a_mesh_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
