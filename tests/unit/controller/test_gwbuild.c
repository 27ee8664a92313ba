/*
 * Gateway routes in snapbuild (gwbuild.c + snapbuild.c): a data-driven precedence table over
 * Ingresses and Gateways decoded from YAML by the real file source, then backends, filters,
 * timeouts and retries, and status conditions.
 *
 * Table rows render the snapshot as
 *   "V<host>: <E|R|P><path>[~<flags>]><target> ... | V<host>: ... # <reports>"
 * flags: p PLAIN_ONLY, t TLS_ONLY, w WILD_ANY, s SSL_REDIRECT; target: the Service of
 * route.cluster ("-" for none) or, with BACKENDS, "svc*weight,..."; reports: "C<gateway>/
 * <listener>" for each Conflicted listener and "R<ingress>:<reason>" for each rejection.
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
#include "gwbuild.h"
#include "log.h"
#include "model.h"
#include "snapbuild.h"
#include "snapwire.h"

#define SVC(ns, name)                                                                              \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: " ns "}\n"          \
    "spec: {ports: [{name: http, port: 80}]}\n"
#define SVCS                                                                                       \
    SVC("default", "a")                                                                            \
    SVC("default", "b")                                                                            \
    SVC("default", "c")                                                                            \
    SVC("default", "d") SVC("default", "e") SVC("default", "f") SVC("default", "g")
/* a Gateway: metadata extra (flow entries after name/namespace), spec in flow YAML */
#define GW(ns, name, meta, spec)                                                                   \
    "---\napiVersion: strait.dev/v1alpha1\nkind: Gateway\nmetadata: {name: " name                  \
    ", namespace: " ns meta "}\nspec: " spec "\n"
#define HTTP "{name: http, port: 80, protocol: HTTP}"
#define OLD ", creationTimestamp: \"2020-01-01T00:00:00Z\""
#define NEW ", creationTimestamp: \"2024-01-01T00:00:00Z\""
/* one HTTP listener, one route on hosts H (flow list) with rules R (flow list items) */
#define GW1(ns, name, meta, hosts, rules)                                                          \
    GW(ns, name, meta,                                                                             \
       "{listeners: [" HTTP "], routes: [{hostnames: " hosts ", rules: [" rules "]}]}")
#define PFX(p) "{path: {type: PathPrefix, value: \"" p "\"}}"
#define EXA(p) "{path: {type: Exact, value: \"" p "\"}}"
#define REX(p) "{path: {type: RegularExpression, value: \"" p "\"}}"
#define TO(svc) "backendRefs: [{name: " svc ", port: 80}]"
#define RULE(matches, svc) "{matches: [" matches "], " TO(svc) "}"
#define ING(ns, name, meta, host, path, type, svc)                                                 \
    "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: " name                 \
    ", namespace: " ns meta "}\nspec:\n  ingressClassName: strait\n  rules:\n  - host: " host      \
    "\n    http:\n      paths:\n      - path: " path "\n        pathType: " type                   \
    "\n        backend: {service: {name: " svc ", port: {number: 80}}}\n"

static void build(const char *yaml, struct model_cache *c, struct snapbuild_result *r)
{
    char err[256];

    model_cache_init(c);
    assert_true(filesource_load_buffer("t.yaml", yaml, strlen(yaml), c) >= 0);
    model_cache_seal(c);
    assert_int_equal(snapbuild_build(c, "strait", "file:test", r, err, sizeof(err)), 0);
}

static const char *short_name(const struct snapwire_snapshot *s, uint32_t cl, char *buf, size_t n)
{
    const char *name, *sl, *co;

    if (cl == SNAPWIRE_NONE) return "-";
    assert_true(cl < s->n_clusters);
    name = s->clusters[cl].name;
    sl = strchr(name, '/');
    co = strchr(name, ':');
    snprintf(buf, n, "%.*s", (int)(co - sl - 1), sl + 1);
    return buf;
}

static void render(const struct snapbuild_result *r, char *buf, size_t n)
{
    const struct snapwire_snapshot *s = &r->snap;
    size_t w = 0, i, j, k;
    uint32_t v, x;
    char nb[100];

#define OUT(...)                                                                                   \
    do {                                                                                           \
        if (w < n) w += (size_t)snprintf(buf + w, n - w, __VA_ARGS__);                             \
    } while (0)
    buf[0] = '\0';
    for (v = 0; v < s->n_vhosts; v++) {
        OUT("%sV%s:", v ? " | " : "", s->vhosts[v].host);
        for (x = 0; x < s->vhosts[v].route_count; x++) {
            const struct snapwire_route *rt = &s->routes[s->vhosts[v].first_route + x];
            char fl[8] = "";
            size_t f = 0;
            if (rt->flags & SNAPWIRE_ROUTE_PLAIN_ONLY) fl[f++] = 'p';
            if (rt->flags & SNAPWIRE_ROUTE_TLS_ONLY) fl[f++] = 't';
            if (rt->flags & SNAPWIRE_ROUTE_WILD_ANY) fl[f++] = 'w';
            if (rt->flags & SNAPWIRE_ROUTE_SSL_REDIRECT) fl[f++] = 's';
            fl[f] = '\0';
            OUT(" %c%s%s%s>",
                rt->match == SNAPWIRE_MATCH_EXACT   ? 'E'
                : rt->match == SNAPWIRE_MATCH_REGEX ? 'R'
                                                    : 'P',
                rt->path, f ? "~" : "", fl);
            if (!rt->backend_count) {
                OUT("%s", short_name(s, rt->cluster, nb, sizeof(nb)));
            } else {
                for (k = 0; k < rt->backend_count; k++) {
                    const struct snapwire_backend *b = &s->backends[rt->first_backend + k];
                    OUT("%s%s*%u", k ? "," : "", short_name(s, b->cluster, nb, sizeof(nb)),
                        b->weight);
                }
            }
        }
    }
    OUT(" #");
    for (i = 0; i < r->n_gateways; i++)
        for (j = 0; j < r->gateways[i].n_listeners; j++)
            if (!strcmp(r->gateways[i].listeners[j].conds[3].status, "True"))
                OUT(" C%s/%s", r->gateways[i].name, r->gateways[i].listeners[j].name);
    for (i = 0; i < r->n_rejections; i++)
        OUT(" R%s:%s", r->rejections[i].name, r->rejections[i].reason);
#undef OUT
}

struct gw_case {
    const char *name;
    const char *yaml;
    const char *want;
};

static const struct gw_case cases[] = {
    {"Exact, then RegularExpression, then the longest PathPrefix",
     SVCS GW1("default", "g", "", "[h.test]",
              RULE(PFX("/a"), "a") "," RULE(PFX("/a/b"), "b") "," RULE(EXA("/a"), "c") "," RULE(
                  REX("/a/[0-9]+"), "d")),
     "Vh.test: E/a~p>c R/a/[0-9]+~p>d P/a/b~p>b P/a~p>a #"},
    {"no REGEX in the vhost: Exact and Prefix by length as Ingress orders them",
     SVCS GW1("default", "g", "", "[h.test]", RULE(EXA("/a"), "b") "," RULE(PFX("/abc"), "a")),
     "Vh.test: P/abc~p>a E/a~p>b #"},
    {"REGEX among themselves: object order (older first), not length",
     SVCS GW1("default", "z", OLD, "[h.test]", RULE(REX("/x.*"), "a"))
         GW1("default", "a", NEW, "[h.test]", RULE(REX("/xyz/[a-z]+/long"), "b")),
     "Vh.test: R/x.*~p>a R/xyz/[a-z]+/long~p>b #"},
    {"same path: method, then more headers, then more query parameters, then none",
     SVCS GW1("default", "g", "", "[h.test]",
              RULE(PFX("/x"), "a") "," RULE(
                  "{path: {type: PathPrefix, value: /x}, queryParams: [{name: q, value: '1'}]}",
                  "e") "," RULE("{path: {type: PathPrefix, value: /x}, headers: [{name: x-a, "
                                "value: '1'}]}",
                                "d") "," RULE("{path: {type: PathPrefix, value: /x}, headers: "
                                              "[{name: x-a, value: '1'}, {name: x-b, value: "
                                              "'2'}]}",
                                              "c") "," RULE("{path: {type: PathPrefix, value: "
                                                            "/x}, method: GET}",
                                                            "b")),
     "Vh.test: P/x~p>b P/x~p>c P/x~p>d P/x~p>e P/x~p>a #"},
    {"equal counts: the older object first, whatever its name",
     SVCS GW1(
         "default", "z", OLD, "[h.test]",
         RULE("{path: {type: PathPrefix, value: /y}, headers: [{name: x-a, value: '1'}]}", "a"))
         GW1("default", "a", NEW, "[h.test]",
             RULE("{path: {type: PathPrefix, value: /y}, headers: [{name: x-b, value: '1'}]}",
                  "b")),
     "Vh.test: P/y~p>a P/y~p>b #"},
    {"no timestamps: namespace/name decides (and the conflict on the same match)",
     SVC("bb", "a") SVC("aa", "b") GW1("bb", "a", "", "[h.test]", RULE(PFX("/n"), "a"))
         GW1("aa", "z", "", "[h.test]", RULE(PFX("/n"), "b")),
     "Vh.test: P/n~p>b # Ca/http"},
    {"rule index, then match index, inside one Gateway (a repeated match keeps its first use)",
     SVCS GW1("default", "g", "", "[h.test]",
              RULE(PFX("/r") "," PFX("/r"), "a") "," RULE(PFX("/r"), "b")),
     "Vh.test: P/r~p>a #"},
    {"Ingress older than the Gateway: the Ingress keeps the match, the Gateway is Conflicted",
     SVCS ING("default", "i", OLD, "h.test", "/s", "Prefix", "a")
         GW1("default", "g", NEW, "[h.test]", RULE(PFX("/s"), "b") "," RULE(PFX("/s/t"), "c")),
     "Vh.test: P/s/t~p>c P/s>a # Cg/http"},
    {"an older plain-HTTP Gateway route wins plain HTTP; the Ingress keeps HTTPS, reported",
     SVCS ING("default", "i", NEW, "h.test", "/s", "Prefix", "a")
         GW1("default", "g", OLD, "[h.test]", RULE(PFX("/s"), "b")),
     "Vh.test: P/s~p>b P/s>a # Ri:Conflict"},
    {"an older Gateway route on HTTP and HTTPS listeners takes the match from the Ingress",
     SVCS ING("default", "i", NEW, "h.test", "/s", "Prefix", "a")
         GW("default", "g", OLD,
            "{listeners: [" HTTP ", {name: https, port: 443, protocol: HTTPS, tls: "
            "{certificateRefs: [{name: nope}]}}], routes: [{hostnames: [h.test], rules: [" RULE(
                PFX("/s"), "b") "]}]}"),
     "Vh.test: P/s>b # Ri:Conflict"},
    {"Ingress Exact and Gateway Exact on one path conflict; Prefix does not",
     SVCS ING("default", "i", OLD, "h.test", "/e", "Exact", "a")
         GW1("default", "g", NEW, "[h.test]", RULE(EXA("/e"), "b") "," RULE(PFX("/e"), "c")),
     "Vh.test: E/e>a P/e~p>c # Cg/http"},
    {"hostname intersection: listener wildcard with route names and wildcards",
     SVCS GW("default", "g", "",
             "{listeners: [{name: http, port: 80, protocol: HTTP, hostname: \"*.ex.test\"}], "
             "routes: [{hostnames: [foo.ex.test, other.test, \"*.ex.test\", \"*.a.ex.test\", "
             "ex.test], rules: [" RULE(PFX("/"), "a") "]}]}"),
     "V*.a.ex.test: P/~pw>a | V*.ex.test: P/~pw>a | Vfoo.ex.test: P/~p>a #"},
    {"hostname intersection: a route wildcard narrowed to the listener's name",
     SVCS GW("default", "g", "",
             "{listeners: [{name: http, port: 80, protocol: HTTP, hostname: foo.ex.test}, "
             "{name: other, port: 81, protocol: HTTP, hostname: bar.test}], routes: [{hostnames: "
             "[\"*.ex.test\"], rules: [" RULE(PFX("/"), "a") "]}]}"),
     "Vfoo.ex.test: P/~p>a #"},
    {"no hostname on either side: the catch-all vhost; route hostnames are lower case",
     SVCS GW("default", "g", "",
             "{listeners: [" HTTP "], routes: [{rules: [" RULE(
                 PFX("/"), "a") "]}, {hostnames: "
                                "[\"*.w.test\"], rules: [" RULE(PFX("/"), "b") "]}]}"),
     "V: P/~p>a | V*.w.test: P/~pw>b #"},
    {"listenerNames and listener kinds: PLAIN_ONLY, TLS_ONLY, both",
     SVCS GW("default", "g", "",
             "{listeners: [" HTTP ", {name: https, port: 443, protocol: HTTPS, tls: "
             "{certificateRefs: [{name: nope}]}}], routes: [{listenerNames: [http], hostnames: "
             "[h.test], rules: [" RULE(
                 PFX("/p"), "a") "]}, {listenerNames: [https], hostnames: "
                                 "[h.test], rules: [" RULE(
                                     PFX("/t"),
                                     "b") "]}, {hostnames: [h.test], rules: [" RULE(PFX("/both"),
                                                                                    "c") "]}]}"),
     "Vh.test: P/both>c P/p~p>a P/t~t>b #"},
    {"an older TLS_ONLY Gateway route takes HTTPS; the Ingress keeps plain HTTP behind it",
     SVCS ING("default", "i", NEW, "h.test", "/k", "Prefix", "a") GW(
         "default", "g", OLD,
         "{listeners: [{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: "
         "[{name: nope}]}}], routes: [{hostnames: [h.test], rules: [" RULE(PFX("/k"), "b") "]}]}"),
     "Vh.test: P/k~t>b P/k>a # Ri:Conflict"},
    {"a newer TLS_ONLY Gateway route behind an Ingress: dropped",
     SVCS ING("default", "i", OLD, "h.test", "/k", "Prefix", "a") GW(
         "default", "g", NEW,
         "{listeners: [{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: "
         "[{name: nope}]}}], routes: [{hostnames: [h.test], rules: [" RULE(PFX("/k"), "b") "]}]}"),
     "Vh.test: P/k>a # Cg/https"},
    {"Gateway WILD_ANY and Ingress one-label wildcard on one vhost: the older Ingress keeps "
     "one-label hosts, the Gateway route stays behind for deeper ones",
     SVCS ING("default", "i", OLD, "\"*.w.test\"", "/", "Prefix", "a")
         GW1("default", "g", NEW, "[\"*.w.test\"]", RULE(PFX("/"), "b")),
     "V*.w.test: P/>a P/~pw>b # Cg/http"},
};

static void test_precedence_table(void **state)
{
    char got[4096];
    size_t i;
    int bad = 0;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct model_cache c;
        struct snapbuild_result r;
        uint8_t *frame;
        size_t len;
        char err[256];
        build(cases[i].yaml, &c, &r);
        render(&r, got, sizeof(got));
        if (strcmp(got, cases[i].want)) {
            print_error("case %zu \"%s\":\n  want %s\n  got  %s\n", i, cases[i].name, cases[i].want,
                        got);
            bad++;
        }
        /* every case is a snapshot the codec takes */
        if (snapwire_encode(&r.snap, 1, &frame, &len, err, sizeof(err))) {
            print_error("case %zu: encode: %s\n", i, err);
            fail();
        }
        free(frame);
        snapbuild_free(&r);
        model_cache_free(&c);
    }
    assert_int_equal(bad, 0);
}

/* A route of vhost host (its index-th), failing the test when absent. */
static const struct snapwire_route *route_of(const struct snapbuild_result *r, const char *host,
                                             uint32_t index)
{
    uint32_t v;

    for (v = 0; v < r->snap.n_vhosts; v++)
        if (!strcmp(r->snap.vhosts[v].host, host)) {
            assert_true(index < r->snap.vhosts[v].route_count);
            return &r->snap.routes[r->snap.vhosts[v].first_route + index];
        }
    fail_msg("no vhost %s", host);
    return NULL;
}

static const struct snapbuild_gateway *gw_of(const struct snapbuild_result *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->n_gateways; i++)
        if (!strcmp(r->gateways[i].name, name)) return &r->gateways[i];
    fail_msg("no Gateway %s", name);
    return NULL;
}

static void assert_cond(const struct snapbuild_condition *c, const char *type, const char *status,
                        const char *reason, const char *msg_part)
{
    assert_string_equal(c->type, type);
    if (strcmp(c->status, status) || strcmp(c->reason, reason) ||
        (msg_part && !strstr(c->message, msg_part)))
        fail_msg("%s: got %s/%s \"%s\", want %s/%s \"%s\"", type, c->status, c->reason, c->message,
                 status, reason, msg_part ? msg_part : "");
}

static void test_backends(void **state)
{
    static const char y[] = SVCS SVC(
        "other",
        "x") "---\napiVersion: v1\nkind: Service\nmetadata: {name: secure}\nspec: {ports: "
             "[{port: 443, appProtocol: https}]}\n" ING("default", "i", "", "i.test", "/", "Prefix",
                                                        "a")
                 GW1("default", "g", "", "[h.test]",
                     "{matches: [" PFX(
                         "/w") "], backendRefs: [{name: a, port: 80, weight: 90}, "
                               "{name: b, port: 80, weight: 10}, {name: c, port: 80, weight: 0}]},"
                               "{matches: [" PFX("/one") "], " TO(
                                   "a") "},"
                                        "{matches: [" PFX(
                                            "/missing") "], backendRefs: [{name: a, port: 80}, "
                                                        "{name: "
                                                        "nosuch, port: 80}, {name: a, port: 81}]},"
                                                        "{matches: [" PFX(
                                                            "/xns") "], backendRefs: [{name: x, "
                                                                    "namespace: other, port: "
                                                                    "80}]},"
                                                                    "{matches: [" PFX(
                                                                        "/none") "]},"
                                                                                 "{matches: [" PFX(
                                                                                     "/tls") "], "
                                                                                             "backe"
                                                                                             "ndRef"
                                                                                             "s: "
                                                                                             "[{"
                                                                                             "name:"
                                                                                             " secu"
                                                                                             "re, "
                                                                                             "port:"
                                                                                             " 443}"
                                                                                             "]}");
    struct model_cache c;
    struct snapbuild_result r;
    const struct snapwire_route *rt;
    const struct snapbuild_gateway *g;
    char nb[64];

    (void)state;
    build(y, &c, &r);
    /* 90/10/0: all kept, in order */
    rt = route_of(&r, "h.test", 0); /* /missing is the longest */
    assert_string_equal(rt->path, "/missing");
    assert_int_equal(rt->backend_count, 3);
    assert_string_equal(short_name(&r.snap, r.snap.backends[rt->first_backend].cluster, nb, 64),
                        "a");
    assert_int_equal(r.snap.backends[rt->first_backend + 1].cluster, SNAPWIRE_NONE);
    assert_int_equal(r.snap.backends[rt->first_backend + 2].cluster, SNAPWIRE_NONE);
    assert_int_equal(rt->cluster, SNAPWIRE_NONE);
    rt = route_of(&r, "h.test", 1);
    assert_string_equal(rt->path, "/none");
    assert_int_equal(rt->backend_count, 0);
    assert_int_equal(rt->cluster, SNAPWIRE_NONE);
    rt = route_of(&r, "h.test", 2);
    assert_string_equal(rt->path, "/one");
    assert_int_equal(rt->backend_count, 0); /* one backend: straight in route.cluster */
    assert_string_equal(short_name(&r.snap, rt->cluster, nb, 64), "a");
    /* the Ingress's cluster is the same one */
    assert_int_equal(route_of(&r, "i.test", 0)->cluster, rt->cluster);
    rt = route_of(&r, "h.test", 4);
    assert_string_equal(rt->path, "/xns");
    assert_int_equal(rt->backend_count, 1); /* kept in BACKENDS so that the dump shows it */
    assert_int_equal(r.snap.backends[rt->first_backend].cluster, SNAPWIRE_NONE);
    assert_int_equal(rt->cluster, SNAPWIRE_NONE);
    rt = route_of(&r, "h.test", 3);
    assert_string_equal(rt->path, "/tls");
    assert_string_equal(r.snap.clusters[rt->cluster].name, "default/secure:443+tls");
    assert_int_equal(r.snap.clusters[rt->cluster].tls, 1);
    assert_string_equal(r.snap.clusters[rt->cluster].tls_sni, "secure.default.svc");
    rt = route_of(&r, "h.test", 5);
    assert_string_equal(rt->path, "/w");
    assert_int_equal(rt->backend_count, 3);
    assert_int_equal(r.snap.backends[rt->first_backend].weight, 90);
    assert_int_equal(r.snap.backends[rt->first_backend + 1].weight, 10);
    assert_int_equal(r.snap.backends[rt->first_backend + 2].weight, 0);
    assert_string_equal(short_name(&r.snap, r.snap.backends[rt->first_backend + 2].cluster, nb, 64),
                        "c");
    assert_string_equal(route_of(&r, "h.test", 5)->source, "gateway:default/g");
    g = gw_of(&r, "g");
    assert_cond(&g->conds[0], "Accepted", "True", "Accepted", NULL);
    assert_cond(&g->conds[1], "Programmed", "True", "Programmed", NULL);
    /* the first problem in field order, the count of the others */
    assert_cond(&g->conds[2], "ResolvedRefs", "False", "BackendNotFound",
                "spec.routes[0].rules[2].backendRefs[1]: service default/nosuch not found");
    assert_non_null(strstr(g->conds[2].message, "(and 2 more)"));
    assert_int_equal(g->n_listeners, 1);
    assert_int_equal(g->listeners[0].attached_routes, 1);
    assert_cond(&g->listeners[0].conds[2], "ResolvedRefs", "True", "ResolvedRefs", NULL);
    assert_cond(&g->listeners[0].conds[3], "Conflicted", "False", "NoConflicts", NULL);
    snapbuild_free(&r);
    model_cache_free(&c);

    /* only the cross-namespace reference: RefNotPermitted */
    build(SVC("other", "x") GW1("default", "g", "", "[h.test]",
                                "{backendRefs: [{name: x, namespace: other, port: 80}]}"),
          &c, &r);
    assert_cond(&gw_of(&r, "g")->conds[2], "ResolvedRefs", "False", "RefNotPermitted",
                "spec.routes[0].rules[0].backendRefs[0]");
    snapbuild_free(&r);
    model_cache_free(&c);
}

/*
 * backendRefs[].policy overrides the Service's annotations field by field, as an Ingress's
 * annotations do: each distinct resolved policy is its own cluster, named as for Ingress
 * overrides, shared with an Ingress (or another backendRef) that resolves to the same; no
 * policy and mirrors keep the Service's cluster.
 */
static void test_backend_policy(void **state)
{
    static const char y[] =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\n"
        "    strait.dev/health-check-path: /h\n    strait.dev/max-requests: \"5\"\n"
        "spec: {ports: [{port: 80}]}\n" ING(
            "default", "i", "", "i.test", "/", "Prefix",
            "a") "---\napiVersion: strait.dev/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
                 "  listeners: [{name: http, port: 80, protocol: HTTP}]\n"
                 "  routes:\n  - hostnames: [h.test]\n    rules:\n"
                 "    - matches: [{path: {value: /w}}]\n"
                 "      filters: [{type: RequestMirror, requestMirror: {backendRef: {name: a, "
                 "port: 80}}}]\n"
                 "      backendRefs:\n"
                 "      - {name: a, port: 80}\n"
                 "      - {name: a, port: 80, policy: {loadBalancer: {type: round_robin}}}\n"
                 "      - {name: a, port: 80, policy: {circuitBreaker: {maxRequests: 7}}}\n"
                 "      - {name: a, port: 80, policy: {healthCheck: {interval: 1s}}}\n"
                 "    - matches: [{path: {value: /one}}]\n"
                 "      backendRefs: [{name: a, port: 80, policy: {loadBalancer: {type: "
                 "round_robin}}}]\n"
                 "    - matches: [{path: {value: /hash}}]\n"
                 "      backendRefs: [{name: a, port: 80, policy: {loadBalancer: {hashBy: "
                 "\"header:X-User\"}}}]\n";
    static const char ing_rr[] =
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: rr\n"
        "  annotations: {strait.dev/load-balance: round_robin}\nspec:\n"
        "  ingressClassName: strait\n  rules:\n  - host: rr.test\n    http:\n      paths:\n"
        "      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n";
    char yaml[4096];
    struct model_cache c;
    struct snapbuild_result r;
    const struct snapwire_route *rt;
    const struct snapwire_cluster *cl;
    uint32_t plain, rr, cb, hc;

    (void)state;
    snprintf(yaml, sizeof(yaml), "%s%s", y, ing_rr);
    build(yaml, &c, &r);
    assert_int_equal(r.snap.n_clusters, 5);
    rt = route_of(&r, "h.test", 2);
    assert_string_equal(rt->path, "/w");
    assert_int_equal(rt->backend_count, 4);
    plain = r.snap.backends[rt->first_backend].cluster;
    rr = r.snap.backends[rt->first_backend + 1].cluster;
    cb = r.snap.backends[rt->first_backend + 2].cluster;
    hc = r.snap.backends[rt->first_backend + 3].cluster;
    /* no policy: the Service's, in the Service's cluster (shared with the plain Ingress) */
    cl = &r.snap.clusters[plain];
    assert_string_equal(cl->name, "default/a:80");
    assert_int_equal(cl->lb, SNAPWIRE_LB_EWMA);
    assert_string_equal(cl->hc_path, "/h");
    assert_int_equal(cl->cb_max_requests, 5);
    assert_int_equal(route_of(&r, "i.test", 0)->cluster, plain);
    assert_int_equal(r.snap.filters[rt->first_filter].type, SNAPWIRE_FILTER_MIRROR);
    assert_int_equal(r.snap.filters[rt->first_filter].cluster, plain);
    /* the algorithm: named, the Service's other settings kept; shared with the Ingress that
     * asks for the same, and with the other backendRef that does */
    cl = &r.snap.clusters[rr];
    assert_string_equal(cl->name, "default/a:80+round_robin");
    assert_int_equal(cl->lb, SNAPWIRE_LB_ROUND_ROBIN);
    assert_string_equal(cl->hc_path, "/h");
    assert_int_equal(cl->cb_max_requests, 5);
    assert_int_equal(route_of(&r, "rr.test", 0)->cluster, rr);
    rt = route_of(&r, "h.test", 1);
    assert_string_equal(rt->path, "/one");
    assert_int_equal(rt->cluster, rr);
    /* resilience overrides: "+p=" clusters, one per distinct result */
    cl = &r.snap.clusters[cb];
    assert_true(!strncmp(cl->name, "default/a:80+p=", 15) && strlen(cl->name) == 23);
    assert_int_equal(cl->lb, SNAPWIRE_LB_EWMA);
    assert_string_equal(cl->hc_path, "/h");
    assert_int_equal(cl->hc_interval_ms, SNAPWIRE_HC_INTERVAL_MS_DEFAULT);
    assert_int_equal(cl->cb_max_requests, 7);
    cl = &r.snap.clusters[hc];
    assert_true(!strncmp(cl->name, "default/a:80+p=", 15));
    assert_string_not_equal(cl->name, r.snap.clusters[cb].name);
    assert_string_equal(cl->hc_path, "/h");
    assert_int_equal(cl->hc_interval_ms, 1000);
    assert_int_equal(cl->cb_max_requests, 5);
    /* hashBy alone: ring_hash */
    rt = route_of(&r, "h.test", 0);
    assert_string_equal(rt->path, "/hash");
    cl = &r.snap.clusters[rt->cluster];
    assert_string_equal(cl->name, "default/a:80+ring_hash+hash=header:x-user");
    assert_int_equal(cl->lb, SNAPWIRE_LB_RING_HASH);
    assert_int_equal(cl->hash_on, SNAPWIRE_HASH_HEADER);
    assert_string_equal(cl->hash_name, "x-user");
    assert_cond(&gw_of(&r, "g")->conds[0], "Accepted", "True", "Accepted", NULL);
    snapbuild_free(&r);
    model_cache_free(&c);
}

static void test_filters_timeouts_retry(void **state)
{
    static const char y[] = SVCS GW1(
        "default", "g", "", "[h.test]",
        "{matches: [" PFX(
            "/f") "], filters: ["
                  "{type: RequestHeaderModifier, requestHeaderModifier: {remove: [x-r], add: "
                  "[{name: X-Add, value: a}], set: [{name: X-Set, value: s}]}},"
                  "{type: URLRewrite, urlRewrite: {hostname: new.test, path: {type: "
                  "ReplacePrefixMatch, replacePrefixMatch: /n}}},"
                  "{type: RequestMirror, requestMirror: {backendRef: {name: g, port: 80}, "
                  "percent: 25}},"
                  "{type: RequestMirror, requestMirror: {backendRef: {name: nosuch, port: 80}}},"
                  "{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: a, value: "
                  "b}]}}], " TO(
                      "a") ", timeouts: {request: 10s, backendRequest: 0s}, retry: "
                           "{attempts: 3, codes: [500, 502, 563, 564, 599], backoff: 100ms}},"
                           "{matches: [" EXA(
                               "/r") "], filters: [{type: RequestRedirect, requestRedirect: "
                                     "{scheme: https, hostname: r.test, port: 8443, statusCode: "
                                     "301, path: {type: "
                                     "ReplaceFullPath, replaceFullPath: /full}}}]},"
                                     "{matches: [{path: {type: Exact, value: /c}, method: POST, "
                                     "headers: [{name: "
                                     "X-Up, value: v}, {type: RegularExpression, name: x-re, "
                                     "value: \"a.*\"}], "
                                     "queryParams: [{name: Q, value: V}]}], " TO("b") "}");
    struct model_cache c;
    struct snapbuild_result r;
    const struct snapwire_route *rt;
    const struct snapwire_filter *f;
    const struct snapwire_hdr_edit *e;
    const struct snapwire_cond *cd;
    char nb[64];
    uint32_t i;

    (void)state;
    build(y, &c, &r);
    rt = route_of(&r, "h.test", 2);
    assert_string_equal(rt->path, "/f");
    assert_int_equal(rt->filter_count, 5);
    f = &r.snap.filters[rt->first_filter];
    assert_int_equal(f[0].type, SNAPWIRE_FILTER_REQUEST_HEADERS);
    assert_int_equal(f[0].edit_count, 3);
    assert_int_equal(f[0].cluster, SNAPWIRE_NONE);
    e = &r.snap.hdr_edits[f[0].first_edit];
    /* set, add, remove whatever the order written */
    assert_int_equal(e[0].op, SNAPWIRE_HDR_SET);
    assert_string_equal(e[0].name, "X-Set");
    assert_string_equal(e[0].value, "s");
    assert_int_equal(e[1].op, SNAPWIRE_HDR_ADD);
    assert_string_equal(e[1].name, "X-Add");
    assert_int_equal(e[2].op, SNAPWIRE_HDR_REMOVE);
    assert_string_equal(e[2].name, "x-r");
    assert_int_equal(f[1].type, SNAPWIRE_FILTER_REWRITE);
    assert_string_equal(f[1].hostname, "new.test");
    assert_int_equal(f[1].path_mod, SNAPWIRE_PATH_PREFIX);
    assert_string_equal(f[1].path, "/n");
    assert_int_equal(f[2].type, SNAPWIRE_FILTER_MIRROR);
    assert_int_equal(f[2].mirror_permille, 250);
    /* a mirror cluster is emitted although no route sends traffic to it */
    assert_string_equal(short_name(&r.snap, f[2].cluster, nb, 64), "g");
    assert_int_equal(f[3].type, SNAPWIRE_FILTER_MIRROR);
    assert_int_equal(f[3].cluster, SNAPWIRE_NONE);
    assert_int_equal(f[3].mirror_permille, 1000);
    assert_int_equal(f[4].type, SNAPWIRE_FILTER_RESPONSE_HEADERS);
    assert_int_equal(r.snap.hdr_edits[f[4].first_edit].op, SNAPWIRE_HDR_SET);
    assert_int_equal(rt->request_timeout_ms, 10000);
    assert_int_equal(rt->backend_timeout_ms, SNAPWIRE_TIMEOUT_NONE);
    assert_int_equal(rt->retry_attempts, 3);
    assert_true(rt->retry_codes_lo == ((1ull << 0) | (1ull << 2) | (1ull << 63)));
    assert_true(rt->retry_codes_hi == ((1ull << 0) | (1ull << 35)));
    assert_int_equal(rt->retry_backoff_ms, 100);
    assert_cond(&gw_of(&r, "g")->conds[2], "ResolvedRefs", "False", "BackendNotFound",
                "spec.routes[0].rules[0].filters[3].requestMirror.backendRef: service "
                "default/nosuch not found");

    /* Exact /c and /r: by length, then text */
    rt = route_of(&r, "h.test", 0);
    assert_string_equal(rt->path, "/c");
    assert_int_equal(rt->method, SNAPWIRE_METHOD_POST);
    assert_int_equal(rt->cond_count, 3);
    cd = &r.snap.conds[rt->first_cond];
    assert_int_equal(cd[0].kind, SNAPWIRE_COND_HEADER_EXACT);
    assert_string_equal(cd[0].name, "x-up"); /* lower case */
    assert_string_equal(cd[0].value, "v");
    assert_int_equal(cd[1].kind, SNAPWIRE_COND_HEADER_REGEX);
    assert_string_equal(cd[1].value, "a.*");
    assert_int_equal(cd[2].kind, SNAPWIRE_COND_QUERY_EXACT);
    assert_string_equal(cd[2].name, "Q"); /* query names as written */
    assert_int_equal(rt->request_timeout_ms, SNAPWIRE_TIMEOUT_DEFAULT);
    assert_int_equal(rt->retry_attempts, 0);
    rt = route_of(&r, "h.test", 1);
    assert_string_equal(rt->path, "/r");
    assert_int_equal(rt->cluster, SNAPWIRE_NONE);
    assert_int_equal(rt->backend_count, 0);
    f = &r.snap.filters[rt->first_filter];
    assert_int_equal(f->type, SNAPWIRE_FILTER_REDIRECT);
    assert_string_equal(f->scheme, "https");
    assert_string_equal(f->hostname, "r.test");
    assert_int_equal(f->port, 8443);
    assert_int_equal(f->status, 301);
    assert_int_equal(f->path_mod, SNAPWIRE_PATH_FULL);
    assert_string_equal(f->path, "/full");
    for (i = 0; i < r.snap.n_filters; i++)
        if (r.snap.filters[i].type != SNAPWIRE_FILTER_MIRROR)
            assert_int_equal(r.snap.filters[i].cluster, SNAPWIRE_NONE);
    snapbuild_free(&r);
    model_cache_free(&c);
}

/* Several hostnames share one rule's backends, filters and conditions. */
static void test_shared_sections(void **state)
{
    struct model_cache c;
    struct snapbuild_result r;

    (void)state;
    build(SVCS GW1("default", "g", "", "[a.test, b.test]",
                   "{matches: [{headers: [{name: x, value: '1'}]}], filters: [{type: "
                   "ResponseHeaderModifier, responseHeaderModifier: {add: [{name: a, value: "
                   "b}]}}], backendRefs: [{name: a, port: 80}, {name: b, port: 80}]}"),
          &c, &r);
    assert_int_equal(r.snap.n_routes, 2);
    assert_int_equal(r.snap.n_conds, 1);
    assert_int_equal(r.snap.n_backends, 2);
    assert_int_equal(r.snap.n_filters, 1);
    assert_int_equal(r.snap.n_hdr_edits, 1);
    assert_int_equal(r.snap.routes[0].first_backend, r.snap.routes[1].first_backend);
    snapbuild_free(&r);
    model_cache_free(&c);
}

static void test_invalid_regex(void **state)
{
    static const char y[] = SVCS ING("default", "i", "", "i.test", "/", "Prefix", "a")
        GW1("default", "good", "", "[good.test]", RULE(REX("/ok/[0-9]+"), "a"))
            GW1("default", "bad", "", "[bad.test]",
                RULE(PFX("/fine"), "a") "," RULE(REX("/(unclosed"), "b"))
                GW1("default", "badh", "", "[badh.test]",
                    RULE("{headers: [{type: RegularExpression, name: x, value: \"[z-a]\"}]}", "a"));
    struct model_cache c;
    struct snapbuild_result r;
    const struct snapbuild_gateway *g;
    char got[2048];

    (void)state;
    build(y, &c, &r);
    render(&r, got, sizeof(got));
    assert_string_equal(got, "Vgood.test: R/ok/[0-9]+~p>a | Vi.test: P/>a #");
    g = gw_of(&r, "bad");
    assert_cond(&g->conds[0], "Accepted", "False", "InvalidRegex",
                "spec.routes[0].rules[1].matches[0].path.value: regular expression \"/(unclosed\" "
                "does not compile: missing closing parenthesis at offset 10");
    assert_cond(&g->conds[1], "Programmed", "False", "Invalid", NULL);
    assert_cond(&g->listeners[0].conds[1], "Programmed", "False", "Invalid", NULL);
    assert_int_equal(g->listeners[0].attached_routes, 0);
    g = gw_of(&r, "badh");
    assert_cond(&g->conds[0], "Accepted", "False", "InvalidRegex",
                "spec.routes[0].rules[0].matches[0].headers[0].value");
    g = gw_of(&r, "good");
    assert_cond(&g->conds[0], "Accepted", "True", "Accepted", NULL);
    assert_cond(&g->conds[2], "ResolvedRefs", "True", "ResolvedRefs", NULL);
    assert_int_equal(r.n_gateways_served, 1);
    assert_int_equal(r.n_gateways_rejected, 2);
    assert_int_equal(r.n_ingresses, 1);
    snapbuild_free(&r);
    model_cache_free(&c);
}

static void test_schema_invalid(void **state)
{
    static const char y[] = SVCS GW1("default", "good", "", "[good.test]", RULE(PFX("/"), "a"))
        GW("default", "bad", ", generation: 4",
           "{listeners: [" HTTP "], routes: [{rules: [{filters: [{type: RequestRedirect, "
           "requestRedirect: {scheme: https}}, {type: URLRewrite, urlRewrite: {hostname: "
           "x.test}}]}]}]}");
    struct model_cache c;
    struct snapbuild_result r;
    const struct snapbuild_gateway *g;

    (void)state;
    build(y, &c, &r);
    assert_int_equal(c.n_rejected, 1);
    assert_int_equal(r.n_gateways, 2);
    g = gw_of(&r, "bad");
    assert_int_equal(g->generation, 4);
    assert_cond(&g->conds[0], "Accepted", "False", "Invalid", "spec.routes[0].rules[0]");
    assert_cond(&g->conds[1], "Programmed", "False", "Invalid", NULL);
    assert_cond(&g->conds[2], "ResolvedRefs", "False", "Invalid", NULL);
    assert_int_equal(g->n_listeners, 0);
    assert_int_equal(r.n_gateways_served, 1);
    assert_int_equal(r.n_gateways_rejected, 0); /* the file source counted it */
    assert_int_equal(r.snap.n_vhosts, 1);
    snapbuild_free(&r);
    model_cache_free(&c);
}

static void test_listener_problems(void **state)
{
    static const char y[] = SVCS GW(
        "default", "g", "",
        "{listeners: [" HTTP ", {name: https, port: 443, protocol: HTTPS, hostname: "
        "s.test, tls: {certificateRefs: [{name: missing}, {name: c, namespace: other}]}}], "
        "routes: [{listenerNames: [http, nope], hostnames: [h.test], rules: [" RULE(
            PFX("/"), "a") "]}, {hostnames: [elsewhere.test], rules: [" RULE(PFX("/"), "a") "]}]}");
    struct model_cache c;
    struct snapbuild_result r;
    const struct snapbuild_gateway *g;
    char got[2048];

    (void)state;
    build(y, &c, &r);
    render(&r, got, sizeof(got));
    /* elsewhere.test: the HTTP listener has no hostname, so it attaches there */
    assert_string_equal(got, "Velsewhere.test: P/~p>a | Vh.test: P/~p>a #");
    g = gw_of(&r, "g");
    assert_cond(&g->conds[0], "Accepted", "True", "Accepted", NULL);
    /* listeners first (field order) */
    assert_cond(&g->conds[2], "ResolvedRefs", "False", "InvalidCertificateRef",
                "spec.listeners[1].tls.certificateRefs[0]: secret default/missing not found");
    assert_cond(&g->listeners[1].conds[2], "ResolvedRefs", "False", "InvalidCertificateRef",
                "(and 1 more)");
    assert_cond(&g->listeners[0].conds[2], "ResolvedRefs", "True", "ResolvedRefs", NULL);
    assert_int_equal(g->listeners[0].attached_routes, 2);
    assert_int_equal(g->listeners[1].attached_routes, 0);
    /* the listener's hostname is a TLS host (default certificate: the Secret is missing) */
    assert_int_equal(r.snap.n_tls_hosts, 0); /* no default certificate either */
    snapbuild_free(&r);
    model_cache_free(&c);

    /* the unknown listener name and the route without a matching hostname */
    build(SVCS GW("default", "g", "",
                  "{listeners: [{name: http, port: 80, protocol: HTTP, hostname: a.test}], routes: "
                  "[{listenerNames: [nope], rules: [" RULE(
                      PFX("/"), "a") "]}, {hostnames: "
                                     "[b.test], rules: [" RULE(PFX("/"), "a") "]}]}"),
          &c, &r);
    g = gw_of(&r, "g");
    assert_cond(&g->conds[2], "ResolvedRefs", "False", "NoMatchingParent",
                "spec.routes[0].listenerNames[0]: no listener named nope (and 1 more)");
    assert_int_equal(r.snap.n_routes, 0);
    snapbuild_free(&r);
    model_cache_free(&c);
}

static void test_intersect(void **state)
{
    static const struct {
        const char *route, *listener, *want; /* want NULL: no overlap */
    } rows[] = {
        {"", "", ""},
        {"a.test", "", "a.test"},
        {"", "*.test", "*.test"},
        {"foo.example.com", "*.example.com", "foo.example.com"},
        {"a.b.example.com", "*.example.com", "a.b.example.com"},
        {"example.com", "*.example.com", NULL},
        {"*.example.com", "foo.example.com", "foo.example.com"},
        {"*.example.com", "example.com", NULL},
        {"*.a.example.com", "*.example.com", "*.a.example.com"},
        {"*.example.com", "*.a.example.com", "*.a.example.com"},
        {"*.example.com", "*.example.org", NULL},
        {"foo.test", "bar.test", NULL},
        {"foo.test", "foo.test", "foo.test"},
        {"xexample.com", "*.example.com", NULL},
    };
    char out[256];
    size_t i;
    int ok;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ok = gwbuild_intersect(rows[i].route, rows[i].listener, out, sizeof(out));
        if (ok != (rows[i].want != NULL) || (ok && strcmp(out, rows[i].want)))
            fail_msg("row %zu: %s x %s: got %d %s", i, rows[i].route, rows[i].listener, ok,
                     ok ? out : "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence_table),
        cmocka_unit_test(test_intersect),
        cmocka_unit_test(test_backends),
        cmocka_unit_test(test_backend_policy),
        cmocka_unit_test(test_filters_timeouts_retry),
        cmocka_unit_test(test_shared_sections),
        cmocka_unit_test(test_invalid_regex),
        cmocka_unit_test(test_schema_invalid),
        cmocka_unit_test(test_listener_problems),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
