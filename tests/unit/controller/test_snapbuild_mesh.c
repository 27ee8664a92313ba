/*
 * snapbuild with --mesh: the mesh directory (meshbuild.c) from manifests, as data-table cases.
 * Each case renders the directory as "address:port>cluster proto mtls [ids]" records and checks
 * that the snapshot encodes (snapwire's checks: sorted, unique, canonical addresses, ids).
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
#include "log.h"
#include "meshbuild.h"
#include "model.h"
#include "snapbuild.h"
#include "snapwire.h"

#define SVC(ns, name, meta, spec)                                                                  \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: " ns meta "}\n"     \
    "spec: " spec "\n"
#define SLICE(ns, name, svc, ports, eps)                                                           \
    "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " name          \
    "\n  namespace: " ns "\n  labels: {kubernetes.io/service-name: " svc "}\n"                     \
    "addressType: IPv4\nports: " ports "\nendpoints: " eps "\n"
#define POD(ns, name, meta, spec, status)                                                          \
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: " name ", namespace: " ns meta "}\n"         \
    "spec: " spec "\nstatus: " status "\n"
#define MESHED ", annotations: {strait.dev/inject: enabled}"
#define SIDECAR "{containers: [{name: app}, {name: strait-proxy}]}"
#define INIT_SIDECAR "{initContainers: [{name: strait-proxy}], containers: [{name: app}]}"
#define PLAIN "{containers: [{name: app}]}"
#define SA(sa) "{serviceAccountName: " sa ", containers: [{name: app}]}"
#define RUNNING(ip) "{phase: Running, podIP: " ip "}"
#define EP(ip, pod) "{addresses: [" ip "], targetRef: {kind: Pod, name: " pod "}}"
#define ID(ns, sa) "spiffe://cluster.local/ns/" ns "/sa/" sa

/* Service "web" (10.96.0.1, port http 80 -> 8080) with two meshed pods of one account */
#define WEB                                                                                        \
    SVC("default", "web", "", "{clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}")           \
    SLICE("default", "web-a", "web", "[{name: http, port: 8080}]",                                 \
          "[" EP("10.0.0.1", "web-1") ", " EP("10.0.0.2", "web-2") "]")                            \
    POD("default", "web-1", MESHED, SA("web"), RUNNING("10.0.0.1"))                                \
    POD("default", "web-2", MESHED, SA("web"), RUNNING("10.0.0.2"))

struct mesh_case {
    const char *name;
    const char *yaml;
    const char *want;
};

static const struct mesh_case cases[] = {
    {"no Service: empty directory", POD("default", "p", MESHED, PLAIN, RUNNING("10.0.0.9")), ""},
    {"meshed pods: mtls with their identity, cluster made without an Ingress", WEB,
     "10.96.0.1:80>default/web:80 http mtls [" ID("default", "web") "]"},
    {"dual stack: one record per ClusterIP, IPv6 canonical, sorted by address text",
     SVC("default", "ds", "",
         "{clusterIP: 10.96.0.2, clusterIPs: [10.96.0.2, \"FD00:0::B\"], ports: [{name: a, port: "
         "81}, {name: b, port: 7}]}"),
     "10.96.0.2:7>default/ds:7 detect plain [] 10.96.0.2:81>default/ds:81 detect plain [] "
     "fd00::b:7>default/ds:7 detect plain [] fd00::b:81>default/ds:81 detect plain []"},
    {"headless and ExternalName Services and a bad ClusterIP are skipped",
     SVC("default", "hl", "", "{clusterIP: None, ports: [{name: http, port: 80}]}") SVC(
         "default", "ext", "", "{type: ExternalName, externalName: x.example, ports: [{port: 80}]}")
         SVC("default", "bad", "", "{clusterIP: 10.96.0.300, ports: [{port: 80}]}"),
     ""},
    {"one unmeshed pod makes the port plain",
     WEB POD("default", "web-3", "", PLAIN, RUNNING("10.0.0.3")) SLICE(
         "default", "web-b", "web", "[{name: http, port: 8080}]", "[" EP("10.0.0.3", "web-3") "]"),
     "10.96.0.1:80>default/web:80 http plain []"},
    {"identities sorted and deduplicated; sidecar container or init container means meshed; "
     "default service account",
     SVC("shop", "cart", "", "{clusterIP: 10.96.0.5, ports: [{name: tcp, port: 9000}]}")
         SLICE("shop", "cart-a", "cart", "[{name: tcp, port: 9000}]",
               "[" EP("10.0.1.1", "c1") ", " EP("10.0.1.2", "c2") ", " EP("10.0.1.3", "c3") ", " EP(
                   "10.0.1.4", "c4") "]") POD("shop", "c1", MESHED, SA("zeta"), RUNNING("10.0.1.1"))
             POD("shop", "c2", "", SIDECAR, RUNNING("10.0.1.2"))
                 POD("shop", "c3", MESHED, SA("zeta"), RUNNING("10.0.1.3"))
                     POD("shop", "c4", "", INIT_SIDECAR, RUNNING("10.0.1.4")),
     "10.96.0.5:9000>shop/cart:9000 detect mtls [" ID("shop", "default") " " ID("shop",
                                                                                "zeta") "]"},
    {"a hostNetwork pod is never meshed (it is not injected), whatever its annotation",
     WEB POD("default", "web-3", MESHED,
             "{hostNetwork: true, serviceAccountName: web, containers: [{name: app}]}",
             RUNNING("192.168.0.3")) SLICE("default", "web-b", "web", "[{name: http, port: 8080}]",
                                           "[" EP("192.168.0.3", "web-3") "]"),
     "10.96.0.1:80>default/web:80 http plain []"},
    {"hostNetwork false is a pod network: meshed as without it",
     WEB POD("default", "web-3", MESHED,
             "{hostNetwork: false, serviceAccountName: web, containers: [{name: app}]}",
             RUNNING("10.0.0.3")) SLICE("default", "web-b", "web", "[{name: http, port: 8080}]",
                                        "[" EP("10.0.0.3", "web-3") "]"),
     "10.96.0.1:80>default/web:80 http mtls [" ID("default", "web") "]"},
    {"an account no certificate can name (capital letter) leaves nothing to verify: plain",
     WEB POD("default", "web-3", MESHED, SA("Web"), RUNNING("10.0.0.3")) SLICE(
         "default", "web-b", "web", "[{name: http, port: 8080}]", "[" EP("10.0.0.3", "web-3") "]"),
     "10.96.0.1:80>default/web:80 http plain []"},
    {"endpoints without a targetRef are matched by pod IP; unready ones do not count",
     SVC("default", "db", "", "{clusterIP: 10.96.0.6, ports: [{name: pg, port: 5432}]}")
         SLICE("default", "db-a", "db", "[{name: pg, port: 5432}]",
               "[{addresses: [10.0.2.1]}, {addresses: [10.0.2.2], conditions: {ready: false}}]")
             POD("default", "db-0", MESHED, SA("db"), RUNNING("10.0.2.1"))
                 POD("default", "old", MESHED, SA("old"), "{phase: Succeeded, podIP: 10.0.2.1}"),
     "10.96.0.6:5432>default/db:5432 detect mtls [" ID("default", "db") "]"},
    {"an endpoint whose pod is unknown, or a port without endpoints, is plain",
     SVC("default", "a", "",
         "{clusterIP: 10.96.0.7, ports: [{name: x, port: 1}, {name: y, port: 2}]}")
         SLICE("default", "a-1", "a", "[{name: x, port: 11}]", "[" EP("10.0.3.1", "gone") "]"),
     "10.96.0.7:1>default/a:1 detect plain [] 10.96.0.7:2>default/a:2 detect plain []"},
    {"protocol: opaque-ports (list, range), appProtocol, port name",
     SVC("default", "p", ", annotations: {strait.dev/opaque-ports: \"8080, 9000-9001,x\"}",
         "{clusterIP: 10.96.0.8, ports: [{name: http, port: 8080}, {name: http-alt, port: 9001}, "
         "{name: web, port: 81, appProtocol: http}, {name: h1, port: 82, appProtocol: "
         "kubernetes.io/h1c}, {name: http-2, port: 83, appProtocol: kubernetes.io/h2c}, {name: t, "
         "port: 84, appProtocol: tcp}, {name: https, port: 443}, {name: http-x, port: 85}, {name: "
         "httpx, port: 86}]}"),
     "10.96.0.8:81>default/p:81 http plain [] 10.96.0.8:82>default/p:82 http plain [] "
     "10.96.0.8:83>default/p:83 opaque plain [] 10.96.0.8:84>default/p:84 opaque plain [] "
     "10.96.0.8:85>default/p:85 http plain [] 10.96.0.8:86>default/p:86 detect plain [] "
     "10.96.0.8:443>default/p:443 detect plain [] 10.96.0.8:8080>default/p:8080 opaque plain [] "
     "10.96.0.8:9001>default/p:9001 opaque plain []"},
    {"UDP and SCTP ports get no record (kube-dns: 53 over UDP and TCP)",
     SVC("kube-system", "kube-dns", "",
         "{clusterIP: 10.96.0.53, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, "
         "port: 53, protocol: TCP}, {name: s, port: 99, protocol: SCTP}]}"),
     "10.96.0.53:53>kube-system/kube-dns:53 detect plain []"},
    {"endpoints from several slices of the Service, other Services' slices ignored",
     WEB SLICE("default", "web-b", "web", "[{name: http, port: 8080}]",
               "[" EP("10.0.0.3", "web-3") "]")
         POD("default", "web-3", MESHED, SA("api"), RUNNING("10.0.0.3"))
             SLICE("default", "other-a", "other", "[{name: http, port: 8080}]",
                   "[" EP("10.0.0.9", "nope") "]"),
     "10.96.0.1:80>default/web:80 http mtls [" ID("default", "api") " " ID("default", "web") "]"},
    {"a ClusterIP:port claimed twice goes to the first Service by namespace/name",
     SVC("b", "s", "", "{clusterIP: 10.96.0.9, ports: [{port: 80}]}")
         SVC("a", "s", "", "{clusterIP: 10.96.0.9, ports: [{port: 80}, {port: 81}]}"),
     "10.96.0.9:80>a/s:80 detect plain [] 10.96.0.9:81>a/s:81 detect plain []"},
};

/* The directory as text: "address:port>cluster proto mtls|plain [id id]" records. */
static void render(const struct snapwire_snapshot *s, char *out, size_t len)
{
    static const char *proto[] = {"detect", "http", "opaque"};
    size_t n = 0;

    out[0] = '\0';
    for (uint32_t i = 0; i < s->n_mesh_services; i++) {
        const struct snapwire_mesh_service *m = &s->mesh_services[i];
        n += (size_t)snprintf(out + n, len - n, "%s%s:%u>%s %s %s [", i ? " " : "", m->address,
                              m->port,
                              m->cluster == SNAPWIRE_NONE ? "none" : s->clusters[m->cluster].name,
                              proto[m->proto], m->mtls ? "mtls" : "plain");
        for (uint32_t k = 0; k < m->id_count; k++)
            n += (size_t)snprintf(out + n, len - n, "%s%s", k ? " " : "",
                                  s->mesh_ids[m->first_id + k].uri);
        n += (size_t)snprintf(out + n, len - n, "]");
        assert_true(n < len);
    }
}

static void build(const char *yaml, int mesh, struct model_cache *cache, struct snapbuild_result *r)
{
    struct snapbuild_opts o = {.ingress_class = "strait",
                               .source = "file:test",
                               .mesh = mesh,
                               .trust_domain = "cluster.local"};
    char err[256];

    model_cache_init(cache);
    assert_true(filesource_load_buffer("case.yaml", yaml, strlen(yaml), cache) >= 0);
    model_cache_seal(cache);
    if (snapbuild_build_opts(cache, &o, r, err, sizeof(err))) fail_msg("build: %s", err);
}

static void test_cases(void **state)
{
    (void)state;
    char got[4096], err[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct model_cache cache;
        struct snapbuild_result r;
        uint8_t *f = NULL;
        size_t len;
        build(cases[i].yaml, 1, &cache, &r);
        render(&r.snap, got, sizeof(got));
        if (strcmp(got, cases[i].want))
            fail_msg("case \"%s\":\n got: %s\nwant: %s", cases[i].name, got, cases[i].want);
        assert_string_equal(r.snap.meta.trust_domain, "cluster.local");
        assert_string_equal(r.snap.meta.cluster_domain, "cluster.local");
        if (snapwire_encode(&r.snap, 1, &f, &len, err, sizeof(err)))
            fail_msg("case \"%s\": encode: %s", cases[i].name, err);
        free(f);
        snapbuild_free(&r);
        model_cache_free(&cache);
    }
}

/* Without --mesh: no mesh records, no trust domain, and the clusters only Ingresses make. */
static void test_off(void **state)
{
    (void)state;
    struct model_cache cache;
    struct snapbuild_result r;

    build(WEB, 0, &cache, &r);
    assert_int_equal(r.snap.n_mesh_services, 0);
    assert_int_equal(r.snap.n_mesh_ids, 0);
    assert_null(r.snap.meta.trust_domain);
    assert_int_equal(r.snap.n_clusters, 0);
    snapbuild_free(&r);
    model_cache_free(&cache);
}

/* An Ingress on the same port shares the cluster; the build is deterministic. */
static void test_shared_cluster_and_deterministic(void **state)
{
    (void)state;
    static const char yaml[] =
        WEB "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: "
            "default}\nspec:\n  ingressClassName: strait\n  defaultBackend: {service: {name: web, "
            "port: {number: 80}}}\n"
            "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: strait}\n"
            "spec: {controller: strait.dev/c}\n";
    struct model_cache c1, c2;
    struct snapbuild_result r1, r2;
    uint8_t *f1 = NULL, *f2 = NULL;
    size_t l1, l2;
    char err[256];

    build(yaml, 1, &c1, &r1);
    build(yaml, 1, &c2, &r2);
    assert_int_equal(r1.snap.n_clusters, 1);
    assert_int_equal(r1.snap.meta.default_cluster, 0);
    assert_int_equal(r1.snap.mesh_services[0].cluster, 0);
    assert_int_equal(snapwire_encode(&r1.snap, 1, &f1, &l1, err, sizeof(err)), 0);
    assert_int_equal(snapwire_encode(&r2.snap, 1, &f2, &l2, err, sizeof(err)), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    free(f1);
    free(f2);
    snapbuild_free(&r1);
    snapbuild_free(&r2);
    model_cache_free(&c1);
    model_cache_free(&c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_shared_cluster_and_deterministic),
    };
    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
