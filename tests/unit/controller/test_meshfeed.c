/*
 * meshfeed: the discovery request body as a table (accepted bodies with their canonical,
 * sorted, deduplicated keys and addresses; refused ones with the reason's gist), the key
 * forms, what the version covers, and which claimed addresses count as the caller's pod's
 * (a table over Pods loaded from manifests, through meshpods).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "filesource.h"
#include "meshfeed.h"
#include "meshpods.h"
#include "model.h"
#include "snapwire.h"

static void test_bodies(void **state)
{
    static const struct {
        const char *body;
        const char *want; /* "version|wait|key,key|addr,addr", or NULL: refused */
        const char *why;  /* a part of the reason (refused rows) */
    } rows[] = {
        {"{}", "|0||", NULL},
        {"{\"version\": null, \"wait\": 0}", "|0||", NULL},
        {"{\"version\": \"ab12\", \"wait\": 300, \"extra\": {\"x\": [1]}}", "ab12|300||", NULL},
        {"{\"services\": [\"shop/backend\", \"10.96.0.10:80\", \"[FD00:10:0::1]:80\", "
         "\"shop/backend\", \"10.96.0.10:80\"]}",
         "|0|10.96.0.10:80,[fd00:10::1]:80,shop/backend|", NULL},
        {"{\"addresses\": [\"fd00:0::5\", \"10.0.1.5\", \"fd00::5\"]}", "|0||10.0.1.5,fd00::5",
         NULL},
        {"{\"services\": []}", "|0||", NULL},
        /* refused */
        {"", NULL, ""},
        {"{\"services\": ", NULL, ""},
        {"[]", NULL, "object"},
        {"\"x\"", NULL, "object"},
        {"{\"version\": 5}", NULL, "version"},
        {"{\"wait\": 301}", NULL, "wait"},
        {"{\"wait\": -1}", NULL, "wait"},
        {"{\"wait\": \"5\"}", NULL, "wait"},
        {"{\"wait\": 1.5}", NULL, "wait"},
        {"{\"services\": \"shop/a\"}", NULL, "services"},
        {"{\"services\": [5]}", NULL, "services"},
        {"{\"services\": [\"backend\"]}", NULL, "\"backend\""},
        {"{\"services\": [\"Shop/backend\"]}", NULL, "Shop/backend"},
        {"{\"services\": [\"shop/a/b\"]}", NULL, "shop/a/b"},
        {"{\"services\": [\"/a\"]}", NULL, "/a"},
        {"{\"services\": [\"localhost:80\"]}", NULL, "localhost:80"},
        {"{\"services\": [\":80\"]}", NULL, ":80"},
        {"{\"services\": [\"10.96.0.10:0\"]}", NULL, "10.96.0.10:0"},
        {"{\"services\": [\"10.96.0.10:65536\"]}", NULL, "65536"},
        {"{\"services\": [\"fd00::1:80\"]}", NULL, "fd00::1:80"},
        {"{\"services\": [\"10.96.0.10\"]}", NULL, "10.96.0.10"},
        {"{\"addresses\": [\"10.0.0\"]}", NULL, "10.0.0"},
        {"{\"addresses\": \"10.0.0.1\"}", NULL, "addresses"},
        {"{\"addresses\": [\"[::1]\"]}", NULL, "[::1]"},
    };
    struct meshfeed_query q;
    char err[400], got[2048];
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = meshfeed_parse(rows[i].body, strlen(rows[i].body), &q, err, sizeof(err));
        if (!rows[i].want) {
            if (rc != -1) fail_msg("row %zu (%s): accepted", i, rows[i].body);
            if (!strstr(err, rows[i].why)) fail_msg("row %zu: reason \"%s\"", i, err);
            assert_int_equal(q.n_keys + q.n_addresses, 0);
            continue;
        }
        if (rc) fail_msg("row %zu (%s): %s", i, rows[i].body, err);
        snprintf(got, sizeof(got), "%s|%u|", q.version, q.wait);
        for (j = 0; j < q.n_keys; j++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", j ? "," : "",
                     q.key_text[j]);
        strcat(got, "|");
        for (j = 0; j < q.n_addresses; j++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", j ? "," : "",
                     q.addresses[j]);
        if (strcmp(got, rows[i].want)) fail_msg("row %zu: got %s want %s", i, got, rows[i].want);
        meshfeed_query_free(&q);
    }
}

/* The subset keys point at the parts: a name split, an address canonical without its port. */
static void test_key_parts(void **state)
{
    const char *b = "{\"services\": [\"shop/db\", \"[fd00:0:0::1]:8080\", \"10.96.0.1:53\"]}";
    struct meshfeed_query q;
    char err[200];

    (void)state;
    assert_int_equal(meshfeed_parse(b, strlen(b), &q, err, sizeof(err)), 0);
    assert_int_equal(q.n_keys, 3);
    /* sorted by text: "10.96.0.1:53" < "[fd00::1]:8080" < "shop/db" */
    assert_string_equal(q.keys[0].address, "10.96.0.1");
    assert_int_equal(q.keys[0].port, 53);
    assert_null(q.keys[0].ns);
    assert_string_equal(q.keys[1].address, "fd00::1");
    assert_int_equal(q.keys[1].port, 8080);
    assert_string_equal(q.keys[2].ns, "shop");
    assert_string_equal(q.keys[2].name, "db");
    assert_null(q.keys[2].address);
    meshfeed_query_free(&q);
}

/* The limits: 1024 services and 16 addresses are fine, one more is not. */
static void test_limits(void **state)
{
    size_t cap = 64 * 1024, i, n;
    char *b = malloc(cap), err[200];
    struct meshfeed_query q;

    (void)state;
    assert_non_null(b);
    for (n = MESHFEED_MAX_SERVICES; n <= MESHFEED_MAX_SERVICES + 1; n++) {
        size_t len = (size_t)snprintf(b, cap, "{\"services\": [");
        for (i = 0; i < n; i++)
            len += (size_t)snprintf(b + len, cap - len, "%s\"10.0.%zu.%zu:80\"", i ? "," : "",
                                    i / 250, i % 250);
        len += (size_t)snprintf(b + len, cap - len, "]}");
        assert_int_equal(meshfeed_parse(b, len, &q, err, sizeof(err)),
                         n > MESHFEED_MAX_SERVICES ? -1 : 0);
        if (n <= MESHFEED_MAX_SERVICES) assert_int_equal(q.n_keys, n);
        meshfeed_query_free(&q);
    }
    for (n = MESHFEED_MAX_ADDRESSES; n <= MESHFEED_MAX_ADDRESSES + 1; n++) {
        size_t len = (size_t)snprintf(b, cap, "{\"addresses\": [");
        for (i = 0; i < n; i++)
            len += (size_t)snprintf(b + len, cap - len, "%s\"10.1.0.%zu\"", i ? "," : "", i);
        len += (size_t)snprintf(b + len, cap - len, "]}");
        assert_int_equal(meshfeed_parse(b, len, &q, err, sizeof(err)),
                         n > MESHFEED_MAX_ADDRESSES ? -1 : 0);
        meshfeed_query_free(&q);
    }
    free(b);
}

/* The version: the payload and the canonical keys, not the generation nor the key spelling. */
static void test_version(void **state)
{
    struct snapwire_snapshot s = {0};
    uint8_t *f1, *f2;
    size_t l1, l2;
    char err[200], v[6][17];
    struct meshfeed_query q;
    const char *bodies[] = {
        "{\"services\": [\"shop/db\", \"[fd00::1]:80\"]}",
        "{\"services\": [\"[fd00:0::1]:80\", \"shop/db\", \"shop/db\"]}",
        "{\"services\": [\"shop/db\", \"[fd00::1]:80\", \"10.1.1.1:80\"]}",
        "{\"services\": [\"shop/db\", \"[fd00::1]:80\"], \"addresses\": [\"10.0.0.1\"]}",
    };
    int i;

    (void)state;
    s.meta.default_cluster = s.meta.default_cert = SNAPWIRE_NONE;
    s.meta.trust_domain = "cluster.local";
    assert_int_equal(snapwire_encode(&s, 1, &f1, &l1, err, sizeof(err)), 0);
    assert_int_equal(snapwire_encode(&s, 2, &f2, &l2, err, sizeof(err)), 0);
    for (i = 0; i < 4; i++) {
        assert_int_equal(meshfeed_parse(bodies[i], strlen(bodies[i]), &q, err, sizeof(err)), 0);
        meshfeed_version(f1, l1, &q, v[i]);
        if (i == 0) meshfeed_version(f2, l2, &q, v[4]);
        meshfeed_query_free(&q);
    }
    assert_int_equal(strlen(v[0]), 16);
    assert_string_equal(v[0], v[1]); /* spelling, order, duplicates */
    assert_string_equal(v[0], v[4]); /* generation */
    assert_string_not_equal(v[0], v[2]);
    assert_string_not_equal(v[0], v[3]);
    assert_string_not_equal(v[2], v[3]);
    s.meta.source = "file:/other"; /* a payload change */
    free(f2);
    assert_int_equal(snapwire_encode(&s, 1, &f2, &l2, err, sizeof(err)), 0);
    assert_int_equal(meshfeed_parse(bodies[0], strlen(bodies[0]), &q, err, sizeof(err)), 0);
    meshfeed_version(f2, l2, &q, v[5]);
    meshfeed_query_free(&q);
    assert_string_not_equal(v[0], v[5]);
    free(f1);
    free(f2);
}

#define POD(ns, name, sa, status)                                                                  \
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: " name ", namespace: " ns "}\n"              \
    "spec: {" sa "containers: [{name: app}, {name: strait-proxy}]}\nstatus: " status "\n"
#define SA(sa) "serviceAccountName: " sa ", "
#define HOSTNET "hostNetwork: true, "
#define ID(ns, sa) "spiffe://cluster.local/ns/" ns "/sa/" sa

/* one document per string: loaded one after the other into one cache */
static const char *const pods_yaml[] = {
    POD("default", "a-1", SA("a"),
        "{phase: Running, podIPs: [{ip: 10.0.0.1}, {ip: \"FD00:0::1\"}]}"),
    POD("default", "b-1", SA("b"), "{phase: Running, podIP: 10.0.0.2}"),
    /* no serviceAccountName: "default", as Kubernetes says */
    POD("shop", "d-1", "", "{phase: Running, podIP: 10.0.1.1}"),
    /* the same account name in another namespace is another identity */
    POD("shop", "a-2", SA("a"), "{phase: Running, podIP: 10.0.1.2}"),
    /* a finished pod's IP is its successor's */
    POD("default", "a-old", SA("a"), "{phase: Succeeded, podIP: 10.0.0.9}"),
    POD("default", "a-fail", SA("a"), "{phase: Failed, podIP: 10.0.0.8}"),
    POD("default", "b-2", SA("b"), "{phase: Pending, podIP: 10.0.0.9}"),
    POD("default", "b-3", SA("b"), "{phase: Pending}"),
    /* hostNetwork pods share the node's IP: it proves none of their identities */
    POD("default", "a-host", SA("a") HOSTNET, "{phase: Running, podIP: 192.168.1.1}"),
    POD("default", "c-host", SA("c") HOSTNET, "{phase: Running, podIP: 192.168.1.1}"),
    /* hostNetwork false is a pod network like no field at all */
    POD("default", "e-1", SA("e") "hostNetwork: false, ", "{phase: Running, podIP: 10.0.0.5}"),
    /* two live pods showing one IP (reused before the old one's status caught up): either */
    POD("default", "f-1", SA("f"), "{phase: Running, podIP: 10.0.0.6}"),
    POD("default", "g-1", SA("g"), "{phase: Running, podIP: 10.0.0.6}"),
    /* no certificate can name a service account with a capital letter */
    POD("default", "bad", SA("Bad"), "{phase: Running, podIP: 10.0.0.7}"),
    NULL,
};

static struct meshpods *load_pods(const char *const *docs)
{
    struct model_cache cache;
    struct meshpods *t;
    char err[200];

    model_cache_init(&cache);
    for (; *docs; docs++)
        assert_true(filesource_load_buffer("pods.yaml", *docs, strlen(*docs), &cache) == 1);
    model_cache_seal(&cache);
    t = meshpods_build(&cache, "cluster.local", err, sizeof(err));
    if (!t) fail_msg("meshpods_build: %s", err);
    model_cache_free(&cache); /* the table owns its strings */
    return t;
}

/* Of the addresses a caller claims, those where a Pod of its identity runs. */
static void test_own_addresses(void **state)
{
    static const struct {
        const char *identity, *addresses, *want; /* JSON array; kept, comma-separated */
    } rows[] = {
        {ID("default", "a"), "[\"10.0.0.1\", \"fd00::1\"]", "10.0.0.1,fd00::1"},
        /* another pod's IP (sa b) is dropped, the caller's own kept */
        {ID("default", "a"), "[\"10.0.0.2\", \"10.0.0.1\"]", "10.0.0.1"},
        {ID("default", "b"), "[\"10.0.0.2\", \"10.0.0.1\"]", "10.0.0.2"},
        /* spellings: IPv6 compared canonically, IPv4-mapped IPv6 as IPv4 */
        {ID("default", "a"), "[\"FD00::0:1\", \"::ffff:10.0.0.1\"]", "10.0.0.1,fd00::1"},
        {ID("shop", "default"), "[\"10.0.1.1\"]", "10.0.1.1"},
        {ID("shop", "a"), "[\"10.0.1.2\", \"10.0.0.1\"]", "10.0.1.2"},
        {ID("default", "a"), "[\"10.0.1.2\"]", ""},
        {ID("default", "default"), "[\"10.0.1.1\"]", ""},
        /* finished pods claim nothing; their IP's new pod does */
        {ID("default", "a"), "[\"10.0.0.9\", \"10.0.0.8\"]", ""},
        {ID("default", "b"), "[\"10.0.0.9\"]", "10.0.0.9"},
        {ID("default", "a"), "[\"192.168.1.1\"]", ""},
        {ID("default", "c"), "[\"192.168.1.1\"]", ""},
        {ID("default", "b"), "[\"192.168.1.1\"]", ""},
        {ID("default", "e"), "[\"10.0.0.5\"]", "10.0.0.5"},
        {ID("default", "f"), "[\"10.0.0.6\"]", "10.0.0.6"},
        {ID("default", "g"), "[\"10.0.0.6\"]", "10.0.0.6"},
        {ID("default", "a"), "[\"10.0.0.6\"]", ""},
        {ID("default", "Bad"), "[\"10.0.0.7\"]", ""},
        /* an IP no pod has (yet) */
        {ID("default", "a"), "[\"10.0.0.99\"]", ""},
        {"spiffe://other.domain/ns/default/sa/a", "[\"10.0.0.1\"]", ""},
    };
    struct meshpods *t = load_pods(pods_yaml);
    struct meshfeed_query q;
    char body[300], err[200], got[300], *own[MESHFEED_MAX_ADDRESSES];
    size_t i, k, n;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(body, sizeof(body), "{\"addresses\": %s}", rows[i].addresses);
        assert_int_equal(meshfeed_parse(body, strlen(body), &q, err, sizeof(err)), 0);
        n = meshfeed_own_addresses(t, rows[i].identity, &q, own);
        got[0] = '\0';
        for (k = 0; k < n; k++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", k ? "," : "", own[k]);
        if (strcmp(got, rows[i].want))
            fail_msg("row %zu (%s %s): kept \"%s\", want \"%s\"", i, rows[i].identity,
                     rows[i].addresses, got, rows[i].want);
        /* no table yet (before the first build): nothing is anyone's */
        assert_int_equal(meshfeed_own_addresses(NULL, rows[i].identity, &q, own), 0);
        meshfeed_query_free(&q);
    }
    meshpods_free(t);
}

/* Tables compare by their pairs: a new pod IP is a change, the same Pods loaded again not. */
static void test_pods_equal(void **state)
{
    static const char *const none[] = {NULL};
    static const char *const z[] = {
        POD("default", "z", SA("z"), "{phase: Running, podIP: 10.9.9.9}"), NULL};
    struct meshpods *a = load_pods(pods_yaml), *b = load_pods(pods_yaml), *e = load_pods(none);
    struct meshpods *c = load_pods(z);

    (void)state;
    assert_true(meshpods_equal(a, b));
    assert_false(meshpods_equal(a, c));
    assert_false(meshpods_equal(a, e));
    assert_true(meshpods_equal(e, NULL));
    assert_true(meshpods_equal(NULL, NULL));
    assert_true(meshpods_has(c, "10.9.9.9", ID("default", "z")));
    meshpods_free(a);
    meshpods_free(b);
    meshpods_free(c);
    meshpods_free(e);
}

/*
 * A pod change leaves a held request alone unless it changes which of the request's addresses
 * are the caller's (meshfeed_publish rebuilds only those answers).
 */
static void test_own_same(void **state)
{
    static const char *const z[] = {
        POD("default", "z", SA("z"), "{phase: Running, podIP: 10.9.9.9}"),
        POD("default", "a-9", SA("a"), "{phase: Running, podIP: 10.0.0.1}"), NULL};
    static const struct {
        const char *identity, *addresses;
        int same_as_z, same_as_none;
    } rows[] = {
        /* a keeps 10.0.0.1 (pod a-9 in z), loses fd00::1 */
        {ID("default", "a"), "[\"10.0.0.1\"]", 1, 0},
        {ID("default", "a"), "[\"10.0.0.1\", \"fd00::1\"]", 0, 0},
        /* z gains 10.9.9.9 */
        {ID("default", "z"), "[\"10.9.9.9\"]", 0, 1},
        /* never a's, in any table */
        {ID("default", "a"), "[\"10.9.9.9\", \"10.0.0.2\"]", 1, 1},
        /* no addresses: nothing can change */
        {ID("default", "b"), "[]", 1, 1},
        /* b loses 10.0.0.2 */
        {ID("default", "b"), "[\"10.0.0.2\"]", 0, 0},
    };
    struct meshpods *a = load_pods(pods_yaml), *b = load_pods(pods_yaml), *c = load_pods(z);
    struct meshfeed_query q;
    char body[300], err[200];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(body, sizeof(body), "{\"addresses\": %s}", rows[i].addresses);
        assert_int_equal(meshfeed_parse(body, strlen(body), &q, err, sizeof(err)), 0);
        if (!meshfeed_own_same(a, b, rows[i].identity, &q) ||
            meshfeed_own_same(a, c, rows[i].identity, &q) != rows[i].same_as_z ||
            meshfeed_own_same(c, a, rows[i].identity, &q) != rows[i].same_as_z ||
            meshfeed_own_same(NULL, a, rows[i].identity, &q) != rows[i].same_as_none)
            fail_msg("row %zu (%s %s)", i, rows[i].identity, rows[i].addresses);
        meshfeed_query_free(&q);
    }
    meshpods_free(a);
    meshpods_free(b);
    meshpods_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies),        cmocka_unit_test(test_key_parts),
        cmocka_unit_test(test_limits),        cmocka_unit_test(test_version),
        cmocka_unit_test(test_own_addresses), cmocka_unit_test(test_pods_equal),
        cmocka_unit_test(test_own_same),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
