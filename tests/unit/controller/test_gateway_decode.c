/*
 * kube_decode + gwdecode: strait.dev/v1alpha1 Gateway objects. Every example under
 * manifests/examples/gateway/ decodes (with the CRD's defaults applied), a table of bad
 * Gateways is refused with a reason naming the field, Durations convert to milliseconds, and
 * file mode keeps Gateways without counting them as rejected.
 * Run from the repository root (as make unit does): the examples are read from there.
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
#include "gwdecode.h"
#include "kobj.h"
#include "kube_decode.h"
#include "model.h"
#include "snapbuild.h"
#include "snapwire.h"

#define EXAMPLES "manifests/examples/gateway/"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/*
 * Decodes the first Gateway document of a YAML text. Returns kube_decode's result; *gw is set
 * when it is 1 (free with model_object_free).
 */
static int decode_text(const char *yaml, size_t len, struct model_gateway **gw, char *err,
                       size_t errlen)
{
    struct kobj_docs d;
    struct model_meta *m = NULL;
    struct kube_ident id;
    size_t i;
    int rc = -2;

    *gw = NULL;
    if (kobj_parse_yaml(yaml, len, &d, err, errlen)) {
        fprintf(stderr, "YAML: %s\n%s", err, yaml);
        kobj_docs_free(&d);
        return -3;
    }
    for (i = 0; i < d.n; i++) {
        const char *kind = kobj_str(d.docs[i], "kind");
        if (!kind || strcmp(kind, "Gateway")) continue;
        rc = kube_decode(d.docs[i], "t.yaml", &m, &id, err, errlen);
        break;
    }
    kobj_docs_free(&d);
    if (rc == 1) {
        assert_int_equal(m->kind, MODEL_KIND_GATEWAY);
        *gw = (struct model_gateway *)m;
    }
    return rc;
}

static struct model_gateway *decode_example(const char *file)
{
    struct model_gateway *gw;
    char path[256], err[512];
    size_t len;
    char *buf;
    int rc;

    snprintf(path, sizeof(path), EXAMPLES "%s", file);
    buf = read_file(path, &len);
    assert_non_null(buf);
    rc = decode_text(buf, len, &gw, err, sizeof(err));
    if (rc != 1) fprintf(stderr, "%s: rc %d: %s\n", path, rc, err);
    assert_int_equal(rc, 1);
    free(buf);
    return gw;
}

static void test_canary_weights(void **state)
{
    struct model_gateway *gw = decode_example("canary-weights.yaml");
    const struct model_gw_rule *r;

    (void)state;
    assert_string_equal(gw->meta.ns, "default");
    assert_string_equal(gw->meta.name, "canary");
    assert_int_equal(gw->generation, 0);
    assert_int_equal(gw->n_listeners, 1);
    assert_string_equal(gw->listeners[0].name, "http");
    assert_int_equal(gw->listeners[0].port, 80);
    assert_int_equal(gw->listeners[0].protocol, MODEL_GW_HTTP);
    assert_string_equal(gw->listeners[0].hostname, "");
    assert_int_equal(gw->listeners[0].n_cert_refs, 0);
    assert_int_equal(gw->n_routes, 1);
    assert_string_equal(gw->routes[0].name, "shop");
    assert_int_equal(gw->routes[0].n_hostnames, 1);
    assert_string_equal(gw->routes[0].hostnames[0], "shop.example.com");
    assert_int_equal(gw->routes[0].n_listener_names, 0);
    r = &gw->routes[0].rules[0];
    /* no matches: the CRD's default, one PathPrefix "/" */
    assert_int_equal(r->n_matches, 1);
    assert_int_equal(r->matches[0].path_type, MODEL_GW_PATH_PREFIX);
    assert_string_equal(r->matches[0].path, "/");
    assert_int_equal(r->matches[0].method, MODEL_GW_METHOD_ANY);
    assert_int_equal(r->n_backends, 2);
    assert_string_equal(r->backends[0].name, "shop-stable");
    assert_string_equal(r->backends[0].ns, "default");
    assert_int_equal(r->backends[0].port, 80);
    assert_int_equal(r->backends[0].weight, 90);
    assert_int_equal(r->backends[1].weight, 10);
    assert_int_equal(r->request_timeout_ms, -1);
    assert_int_equal(r->backend_timeout_ms, -1);
    assert_false(r->has_retry);
    model_object_free(&gw->meta);
}

static void test_header_routing(void **state)
{
    struct model_gateway *gw = decode_example("header-routing.yaml");
    const struct model_gw_route *rt = &gw->routes[0];
    const struct model_gw_match *m;

    (void)state;
    assert_string_equal(gw->listeners[0].hostname, "api.example.com");
    assert_int_equal(rt->n_rules, 3);
    m = &rt->rules[0].matches[0];
    assert_int_equal(rt->rules[0].n_matches, 2);
    /* a match without path gets PathPrefix "/"; header type Exact by default */
    assert_int_equal(m->path_type, MODEL_GW_PATH_PREFIX);
    assert_string_equal(m->path, "/");
    assert_int_equal(m->n_headers, 1);
    assert_int_equal(m->headers[0].type, MODEL_GW_VALUE_EXACT);
    assert_string_equal(m->headers[0].name, "x-version");
    assert_string_equal(m->headers[0].value, "v2");
    m = &rt->rules[0].matches[1];
    assert_string_equal(m->path, "/beta");
    assert_int_equal(m->headers[0].type, MODEL_GW_VALUE_REGEX);
    assert_string_equal(m->headers[0].name, "User-Agent");
    assert_string_equal(m->headers[0].value, ".*(Chrome|Firefox)/.*");
    m = &rt->rules[1].matches[0];
    assert_int_equal(m->path_type, MODEL_GW_PATH_EXACT);
    assert_string_equal(m->path, "/status");
    assert_int_equal(m->method, MODEL_GW_METHOD_GET);
    assert_int_equal(m->n_query, 1);
    assert_int_equal(m->query[0].type, MODEL_GW_VALUE_EXACT);
    assert_string_equal(m->query[0].name, "verbose");
    assert_string_equal(m->query[0].value, "1");
    assert_int_equal(rt->rules[2].backends[0].weight, 1); /* default weight */
    model_object_free(&gw->meta);
}

static void test_https(void **state)
{
    struct model_gateway *gw = decode_example("https.yaml");
    const struct model_gw_listener *l = &gw->listeners[0];
    const struct model_gw_filter *f;

    (void)state;
    assert_int_equal(l->protocol, MODEL_GW_HTTPS);
    assert_int_equal(l->port, 443);
    assert_string_equal(l->hostname, "*.example.com");
    assert_int_equal(l->n_cert_refs, 2);
    assert_string_equal(l->cert_refs[0].name, "wildcard-example-com");
    assert_string_equal(l->cert_refs[0].ns, "default"); /* the Gateway's own */
    assert_string_equal(l->cert_refs[1].ns, "certs");
    assert_int_equal(gw->routes[0].rules[0].n_filters, 2);
    f = &gw->routes[0].rules[0].filters[0];
    assert_int_equal(f->type, MODEL_GW_FILTER_REQUEST_HEADER);
    assert_int_equal(f->headers.n_set, 1);
    assert_string_equal(f->headers.set[0].name, "x-forwarded-proto");
    assert_string_equal(f->headers.set[0].value, "https");
    assert_int_equal(f->headers.n_add, 1);
    assert_string_equal(f->headers.add[0].value, "strait");
    assert_int_equal(f->headers.n_remove, 1);
    assert_string_equal(f->headers.remove[0], "x-debug");
    f = &gw->routes[0].rules[0].filters[1];
    assert_int_equal(f->type, MODEL_GW_FILTER_RESPONSE_HEADER);
    assert_string_equal(f->headers.set[0].value, "max-age=31536000");
    model_object_free(&gw->meta);
}

static void test_mirror(void **state)
{
    struct model_gateway *gw = decode_example("mirror.yaml");
    const struct model_gw_filter *f = &gw->routes[0].rules[0].filters[0];

    (void)state;
    assert_int_equal(f->type, MODEL_GW_FILTER_MIRROR);
    assert_string_equal(f->mirror.name, "app-shadow");
    assert_string_equal(f->mirror.ns, "default");
    assert_int_equal(f->mirror.port, 80);
    assert_int_equal(f->mirror_percent, 25);
    assert_string_equal(gw->routes[0].rules[0].backends[0].name, "app");
    model_object_free(&gw->meta);
}

static void test_redirect(void **state)
{
    struct model_gateway *gw = decode_example("redirect.yaml");
    const struct model_gw_filter *f;

    (void)state;
    assert_int_equal(gw->n_listeners, 2);
    assert_int_equal(gw->listeners[1].n_cert_refs, 1);
    assert_int_equal(gw->routes[0].n_listener_names, 1);
    assert_string_equal(gw->routes[0].listener_names[0], "http");
    f = &gw->routes[0].rules[0].filters[0];
    assert_int_equal(f->type, MODEL_GW_FILTER_REDIRECT);
    assert_string_equal(f->scheme, "https");
    assert_string_equal(f->hostname, "");
    assert_int_equal(f->port, 0);
    assert_int_equal(f->status_code, 301);
    assert_int_equal(f->path_mod, MODEL_GW_PATH_KEEP);
    assert_int_equal(gw->routes[0].rules[0].n_backends, 0);
    f = &gw->routes[1].rules[0].filters[0];
    assert_int_equal(f->path_mod, MODEL_GW_PATH_PREFIX_MATCH);
    assert_string_equal(f->path, "/new");
    assert_int_equal(f->status_code, 302); /* default */
    assert_string_equal(f->scheme, "");
    f = &gw->routes[1].rules[1].filters[0];
    assert_int_equal(f->path_mod, MODEL_GW_PATH_FULL);
    assert_string_equal(f->path, "/home");
    assert_string_equal(f->hostname, "home.example.com");
    assert_int_equal(f->status_code, 308);
    model_object_free(&gw->meta);
}

static void test_retries_timeouts(void **state)
{
    struct model_gateway *gw = decode_example("retries-timeouts.yaml");
    const struct model_gw_rule *r = gw->routes[0].rules;

    (void)state;
    assert_int_equal(r[0].matches[0].method, MODEL_GW_METHOD_POST);
    assert_int_equal(r[0].request_timeout_ms, 60000);
    assert_int_equal(r[0].backend_timeout_ms, -1);
    assert_false(r[0].has_retry);
    assert_int_equal(r[1].request_timeout_ms, 10000);
    assert_int_equal(r[1].backend_timeout_ms, 2000);
    assert_true(r[1].has_retry);
    assert_int_equal(r[1].retry_attempts, 2);
    assert_int_equal(r[1].n_retry_codes, 3);
    assert_int_equal(r[1].retry_codes[0], 502);
    assert_int_equal(r[1].retry_codes[2], 504);
    assert_int_equal(r[1].retry_backoff_ms, 100);
    model_object_free(&gw->meta);
}

static void test_rewrite(void **state)
{
    struct model_gateway *gw = decode_example("rewrite.yaml");
    const struct model_gw_rule *r = gw->routes[0].rules;

    (void)state;
    assert_int_equal(r[0].filters[0].type, MODEL_GW_FILTER_URL_REWRITE);
    assert_string_equal(r[0].filters[0].hostname, "legacy.internal");
    assert_int_equal(r[0].filters[0].path_mod, MODEL_GW_PATH_PREFIX_MATCH);
    assert_string_equal(r[0].filters[0].path, "/");
    /* regular expressions are kept as written; snapbuild compiles them */
    assert_int_equal(r[1].matches[0].path_type, MODEL_GW_PATH_REGEX);
    assert_string_equal(r[1].matches[0].path, "/api/v[0-9]+/health");
    assert_int_equal(r[1].filters[0].path_mod, MODEL_GW_PATH_FULL);
    assert_string_equal(r[1].filters[0].path, "/healthz");
    assert_string_equal(r[1].filters[0].hostname, "");
    model_object_free(&gw->meta);
}

/* balancing.yaml: each backendRef's policy, only the fields it gives */
static void test_balancing(void **state)
{
    struct model_gateway *gw = decode_example("balancing.yaml");
    const struct model_gw_rule *r = gw->routes[0].rules;
    const struct model_policy *p;

    (void)state;
    assert_int_equal(gw->routes[0].n_rules, 2);
    p = &r[0].backends[0].policy;
    assert_string_equal(r[0].backends[0].name, "checkout");
    assert_int_equal(p->set, MODEL_POL_LB | MODEL_POL_HASH | MODEL_POL_HC_PATH |
                                 MODEL_POL_HC_INTERVAL | MODEL_POL_HC_TIMEOUT |
                                 MODEL_POL_HC_STATUS | MODEL_POL_HC_UNHEALTHY |
                                 MODEL_POL_OD_CONSECUTIVE | MODEL_POL_OD_BASE | MODEL_POL_OD_MAX |
                                 MODEL_POL_RB_PERCENT | MODEL_POL_RB_MIN);
    assert_int_equal(p->lb, SNAPWIRE_LB_MAGLEV);
    assert_string_equal(p->hash_name, "x-user");
    assert_int_equal(p->hc_status_lo, 200);
    assert_int_equal(p->hc_status_hi, 200);
    assert_int_equal(p->od_max_ms, 120000);
    p = &r[1].backends[0].policy;
    assert_int_equal(p->set, MODEL_POL_LB | MODEL_POL_SLOW_START);
    assert_int_equal(p->slow_start_ms, 30000);
    p = &r[1].backends[1].policy;
    assert_int_equal(p->set, MODEL_POL_LB | MODEL_POL_CB_REQUESTS | MODEL_POL_CB_PENDING);
    assert_int_equal(p->cb_max_requests, 50);
    assert_int_equal(p->cb_max_pending, 10);
    model_object_free(&gw->meta);
}

static void load_examples(struct model_cache *c)
{
    static const char *files[] = {
        "balancing.yaml", "canary-weights.yaml", "header-routing.yaml",   "https.yaml",
        "mirror.yaml",    "redirect.yaml",       "retries-timeouts.yaml", "rewrite.yaml"};
    static const char ing[] = "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
                              "metadata: {name: i}\nspec: {ingressClassName: strait, rules: "
                              "[{host: shop.example.com, http: {paths: [{path: /, pathType: "
                              "Prefix, backend: {service: {name: shop-stable, port: {number: "
                              "80}}}}]}}]}\n";
    char path[256];
    size_t i, len;
    char *buf;

    model_cache_init(c);
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), EXAMPLES "%s", files[i]);
        assert_non_null(buf = read_file(path, &len));
        assert_true(filesource_load_buffer(path, buf, len, c) >= 2);
        free(buf);
    }
    assert_int_equal(filesource_load_buffer("ing.yaml", ing, strlen(ing), c), 1);
    model_cache_seal(c);
}

/*
 * Every example builds and encodes with every Gateway Accepted and Programmed; the only
 * unresolved references are the HTTPS examples' Secrets (not in the folder) and https.yaml's
 * certificate in another namespace. The Ingress on shop.example.com "/" loses to the canary
 * Gateway (neither has a creationTimestamp: default/canary before default/i).
 */
static void test_examples_build(void **state)
{
    struct model_cache c;
    struct snapbuild_result r;
    uint8_t *frame;
    size_t len, i;
    char err[256];

    (void)state;
    load_examples(&c);
    assert_int_equal(snapbuild_build(&c, "strait", "file:test", &r, err, sizeof(err)), 0);
    assert_int_equal(snapwire_encode(&r.snap, 1, &frame, &len, err, sizeof(err)), 0);
    free(frame);
    assert_int_equal(r.n_gateways, 8);
    assert_int_equal(r.n_gateways_served, 8);
    for (i = 0; i < r.n_gateways; i++) {
        const struct snapbuild_gateway *g = &r.gateways[i];
        int tls = !strcmp(g->name, "https") || !strcmp(g->name, "redirect");
        assert_string_equal(g->conds[0].type, "Accepted");
        assert_string_equal(g->conds[0].status, "True");
        assert_string_equal(g->conds[1].status, "True");
        assert_string_equal(g->conds[2].status, tls ? "False" : "True");
        if (tls) assert_string_equal(g->conds[2].reason, "InvalidCertificateRef");
    }
    assert_int_equal(r.n_rejections, 1);
    assert_string_equal(r.rejections[0].name, "i");
    assert_string_equal(r.rejections[0].reason, "Conflict");
    assert_non_null(strstr(r.rejections[0].message, "Gateway default/canary"));
    snapbuild_free(&r);
    model_cache_free(&c);
}

/* File mode keeps every example's objects, rejects none, and routes no Gateway yet. */
static void test_examples_in_file_mode(void **state)
{
    static const char *files[] = {
        "balancing.yaml", "canary-weights.yaml", "header-routing.yaml",   "https.yaml",
        "mirror.yaml",    "redirect.yaml",       "retries-timeouts.yaml", "rewrite.yaml"};
    struct model_cache c;
    char path[256];
    size_t i, len;
    char *buf;

    (void)state;
    model_cache_init(&c);
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), EXAMPLES "%s", files[i]);
        assert_non_null(buf = read_file(path, &len));
        assert_true(filesource_load_buffer(path, buf, len, &c) >= 2);
        free(buf);
    }
    model_cache_seal(&c);
    assert_int_equal(c.n_rejected, 0);
    assert_int_equal(c.kinds[MODEL_KIND_GATEWAY].n, 8);
    assert_non_null(model_cache_find(&c, MODEL_KIND_GATEWAY, "default", "redirect"));
    assert_string_equal(model_kind_name(MODEL_KIND_GATEWAY), "Gateway");
    model_cache_free(&c);
}

#define GW0 "apiVersion: strait.dev/v1alpha1\nkind: Gateway\n"
#define GW GW0 "metadata: {name: g}\n"
#define L80 "listeners: [{name: http, port: 80, protocol: HTTP}]"
/* a Gateway with one HTTP listener and one route whose single rule is RULE (flow YAML) */
#define RULE(rule) GW "spec: {" L80 ", routes: [{rules: [" rule "]}]}\n"
#define B80 "backendRefs: [{name: s, port: 80}]"

/* Valid corner cases: defaults and conversions. */
static void test_good_corners(void **state)
{
    struct model_gateway *gw;
    char err[512];
    int64_t ms;
    const char *y;

    (void)state;
    y = GW0 "metadata: {name: g, namespace: team, generation: 7}\n"
            "spec: {" L80 ", routes: [{rules: [{matches: [], timeouts: {request: 0s, "
            "backendRequest: 1h30m}, retry: {attempts: 0}, backendRefs: [{name: s, port: 80, "
            "weight: 0}]}, {matches: [{method: PATCH}], filters: [{type: URLRewrite, urlRewrite: "
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}]}]}]}\n";
    assert_int_equal(decode_text(y, strlen(y), &gw, err, sizeof(err)), 1);
    assert_int_equal(gw->generation, 7);
    assert_string_equal(gw->meta.ns, "team");
    assert_int_equal(gw->routes[0].rules[0].n_matches, 1); /* [] gets the default match too */
    assert_string_equal(gw->routes[0].rules[0].matches[0].path, "/");
    assert_int_equal(gw->routes[0].rules[0].request_timeout_ms, 0); /* "0s": no limit */
    assert_int_equal(gw->routes[0].rules[0].backend_timeout_ms, 5400000);
    assert_true(gw->routes[0].rules[0].has_retry);
    assert_int_equal(gw->routes[0].rules[0].retry_attempts, 0);
    assert_int_equal(gw->routes[0].rules[0].n_retry_codes, 0);
    assert_int_equal(gw->routes[0].rules[0].retry_backoff_ms, 0);
    assert_string_equal(gw->routes[0].rules[0].backends[0].ns, "team");
    assert_int_equal(gw->routes[0].rules[0].backends[0].weight, 0);
    /* a match without path is PathPrefix "/", so ReplacePrefixMatch is allowed */
    assert_int_equal(gw->routes[0].rules[1].matches[0].method, MODEL_GW_METHOD_PATCH);
    assert_int_equal(gw->routes[0].rules[1].n_backends, 0);
    model_object_free(&gw->meta);

    assert_int_equal(gwdecode_duration("100ms", &ms), 0);
    assert_int_equal(ms, 100);
    assert_int_equal(gwdecode_duration("1m1ms", &ms), 0);
    assert_int_equal(ms, 60001);
    assert_int_equal(gwdecode_duration("1h1m1s1ms", &ms), 0);
    assert_int_equal(ms, 3661001);
    assert_int_equal(gwdecode_duration("99999h", &ms), 0);
    assert_int_equal(ms, 99999LL * 3600000);
    assert_int_equal(gwdecode_duration("0s", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(gwdecode_duration("1s1s", &ms), 0); /* the pattern allows repeats */
    assert_int_equal(ms, 2000);
    assert_int_equal(gwdecode_duration("", &ms), -1);
    assert_int_equal(gwdecode_duration("1", &ms), -1);
    assert_int_equal(gwdecode_duration("s", &ms), -1);
    assert_int_equal(gwdecode_duration("1d", &ms), -1);
    assert_int_equal(gwdecode_duration("1.5s", &ms), -1);
    assert_int_equal(gwdecode_duration("123456s", &ms), -1);
    assert_int_equal(gwdecode_duration("1h1m1s1ms1s", &ms), -1);
    assert_int_equal(gwdecode_duration("-1s", &ms), -1);
    assert_int_equal(gwdecode_duration("1S", &ms), -1);
    assert_int_equal(gwdecode_duration(" 1s", &ms), -1);
}

/* a rule with one backendRef whose policy is P (flow YAML), and that policy's field path */
#define PRULE(p) RULE("{backendRefs: [{name: s, port: 80, policy: " p "}]}")
#define BP "spec.routes[0].rules[0].backendRefs[0].policy"

/*
 * backendRefs[].policy: every field into model_policy with its MODEL_POL_* bit, in the
 * annotations' units (ms, lower-case header and host names); no policy (or an empty one) and
 * a mirror's backendRef set nothing.
 */
static void test_backend_policy(void **state)
{
    const struct model_policy *p;
    struct model_gateway *gw;
    char err[512];
    const char *y;

    (void)state;
    y = RULE("{backendRefs: [{name: s, port: 80, policy: {loadBalancer: {type: maglev, hashBy: "
             "\"header:X-User\", affinity: cookie, sessionCookieName: route}, healthCheck: {path: "
             "/healthz, host: \"Api.Example.com:8080\", interval: 2s, timeout: 500ms, "
             "expectedStatus: \"200-299\", healthyThreshold: 1, unhealthyThreshold: 4}, "
             "outlierDetection: {consecutiveFailures: 0, baseEjectionTime: 1m, maxEjectionTime: "
             "1h, maxEjectionPercent: 100}, circuitBreaker: {maxConnections: 10, "
             "maxPendingRequests: 20, maxRequests: 30}, retryBudget: {percent: 50, "
             "minRetriesPerSecond: 0}, slowStart: 1m30s}}, {name: s, port: 80}, {name: s, port: "
             "80, policy: {}}, {name: s, port: 80, policy: {circuitBreaker: {maxRequests: 1}}}], "
             "filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}}}]}");
    assert_int_equal(decode_text(y, strlen(y), &gw, err, sizeof(err)), 1);
    p = &gw->routes[0].rules[0].backends[0].policy;
    assert_int_equal(p->set, MODEL_POL_LB | MODEL_POL_HASH | MODEL_POL_AFFINITY | MODEL_POL_COOKIE |
                                 MODEL_POL_HC_PATH | MODEL_POL_HC_HOST | MODEL_POL_HC_INTERVAL |
                                 MODEL_POL_HC_TIMEOUT | MODEL_POL_HC_STATUS | MODEL_POL_HC_HEALTHY |
                                 MODEL_POL_HC_UNHEALTHY | MODEL_POL_OD_CONSECUTIVE |
                                 MODEL_POL_OD_BASE | MODEL_POL_OD_MAX | MODEL_POL_OD_PERCENT |
                                 MODEL_POL_CB_CONNECTIONS | MODEL_POL_CB_PENDING |
                                 MODEL_POL_CB_REQUESTS | MODEL_POL_RB_PERCENT | MODEL_POL_RB_MIN |
                                 MODEL_POL_SLOW_START);
    assert_int_equal(p->lb, SNAPWIRE_LB_MAGLEV);
    assert_int_equal(p->hash_on, SNAPWIRE_HASH_HEADER);
    assert_string_equal(p->hash_name, "x-user");
    assert_int_equal(p->affinity, 1);
    assert_string_equal(p->cookie, "route");
    assert_string_equal(p->hc_path, "/healthz");
    assert_string_equal(p->hc_host, "api.example.com:8080");
    assert_int_equal(p->hc_interval_ms, 2000);
    assert_int_equal(p->hc_timeout_ms, 500);
    assert_int_equal(p->hc_status_lo, 200);
    assert_int_equal(p->hc_status_hi, 299);
    assert_int_equal(p->hc_healthy, 1);
    assert_int_equal(p->hc_unhealthy, 4);
    assert_int_equal(p->od_consecutive, 0);
    assert_int_equal(p->od_base_ms, 60000);
    assert_int_equal(p->od_max_ms, 3600000);
    assert_int_equal(p->od_max_percent, 100);
    assert_int_equal(p->cb_max_connections, 10);
    assert_int_equal(p->cb_max_pending, 20);
    assert_int_equal(p->cb_max_requests, 30);
    assert_int_equal(p->rb_percent, 50);
    assert_int_equal(p->rb_min_per_sec, 0);
    assert_int_equal(p->slow_start_ms, 90000);
    assert_int_equal(gw->routes[0].rules[0].backends[1].policy.set, 0);
    assert_int_equal(gw->routes[0].rules[0].backends[2].policy.set, 0);
    p = &gw->routes[0].rules[0].backends[3].policy;
    assert_int_equal(p->set, MODEL_POL_CB_REQUESTS);
    assert_int_equal(p->cb_max_requests, 1);
    assert_int_equal(gw->routes[0].rules[0].filters[0].mirror.policy.set, 0);
    model_object_free(&gw->meta);

    /* hashBy alone is allowed (it means ring_hash when resolved), as on an Ingress */
    y = RULE("{backendRefs: [{name: s, port: 80, policy: {loadBalancer: {hashBy: source-ip}}}]}");
    assert_int_equal(decode_text(y, strlen(y), &gw, err, sizeof(err)), 1);
    p = &gw->routes[0].rules[0].backends[0].policy;
    assert_int_equal(p->set, MODEL_POL_HASH);
    assert_int_equal(p->hash_on, SNAPWIRE_HASH_SOURCE_IP);
    assert_string_equal(p->hash_name, "");
    model_object_free(&gw->meta);
}

/* Each document is rejected; the reason must contain want (field path included). */
static const struct {
    const char *yaml, *want;
} bad[] = {
    {GW "spec: {}\n", "spec: listeners is required"},
    {GW, "spec is required"},
    {GW "spec: [1]\n", "spec: must be an object"},
    {GW "spec: {listeners: []}\n", "spec: listeners must have at least 1 item(s)"},
    {GW "spec: {listeners: [x]}\n", "spec.listeners[0]: must be an object"},
    {GW "spec: {listeners: [{port: 80, protocol: HTTP}]}\n", "spec.listeners[0]: name is required"},
    {GW "spec: {listeners: [{name: Http, port: 80, protocol: HTTP}]}\n",
     "spec.listeners[0]: name \"Http\" must be lower case letters, digits and '-'"},
    {GW "spec: {listeners: [{name: a, port: 0, protocol: HTTP}]}\n",
     "spec.listeners[0]: port 0 is out of range 1..65535"},
    {GW "spec: {listeners: [{name: a, port: \"80\", protocol: HTTP}]}\n",
     "spec.listeners[0]: port must be an integer"},
    {GW "spec: {listeners: [{name: a, port: 80, protocol: TCP}]}\n",
     "spec.listeners[0]: protocol \"TCP\" is not one of \"HTTP\", \"HTTPS\""},
    {GW "spec: {listeners: [{name: a, port: 80}]}\n", "spec.listeners[0]: protocol is required"},
    {GW "spec: {listeners: [{name: a, port: 80, protocol: HTTP, hostname: Foo.example.com}]}\n",
     "spec.listeners[0]: hostname \"Foo.example.com\" is not a valid lower case DNS name"},
    {GW "spec: {listeners: [{name: a, port: 443, protocol: HTTPS}]}\n",
     "spec.listeners[0]: tls must be specified for protocol HTTPS"},
    {GW "spec: {listeners: [{name: a, port: 80, protocol: HTTP, tls: {certificateRefs: "
        "[{name: c}]}}]}\n",
     "spec.listeners[0]: tls must not be specified for protocol HTTP"},
    {GW "spec: {listeners: [{name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: []}}]}\n",
     "spec.listeners[0].tls: certificateRefs must have at least 1 item(s)"},
    {GW "spec: {listeners: [{name: a, port: 443, protocol: HTTPS, tls: {}}]}\n",
     "spec.listeners[0].tls: certificateRefs is required"},
    {GW "spec: {listeners: [{name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: "
        "[{name: c, kind: ConfigMap}]}}]}\n",
     "spec.listeners[0].tls.certificateRefs[0]: kind \"ConfigMap\" is not one of \"Secret\""},
    {GW "spec: {listeners: [{name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: "
        "[{name: c, group: apps}]}}]}\n",
     "spec.listeners[0].tls.certificateRefs[0]: group \"apps\" is not one of \"\""},
    {GW "spec: {listeners: [{name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: "
        "[{kind: Secret}]}}]}\n",
     "spec.listeners[0].tls.certificateRefs[0]: name is required"},
    {GW "spec: {listeners: [{name: a, port: 80, protocol: HTTP}, {name: a, port: 81, protocol: "
        "HTTP}]}\n",
     "spec.listeners[1]: name \"a\" is also the name of spec.listeners[0]"},
    {GW "spec: {listeners: [{name: a, port: 80, protocol: HTTP}, {name: b, port: 80, protocol: "
        "HTTP}]}\n",
     "spec.listeners[1]: port, protocol and hostname are the same as spec.listeners[0]'s"},
    {GW "spec: {" L80 ", routes: [{name: r}]}\n", "spec.routes[0]: rules is required"},
    {GW "spec: {" L80 ", routes: [{rules: []}]}\n",
     "spec.routes[0]: rules must have at least 1 item(s)"},
    {GW "spec: {" L80 ", routes: {rules: [{}]}}\n", "spec: routes must be a list"},
    {GW "spec: {" L80 ", routes: [{name: r, rules: [{}]}, {name: r, rules: [{}]}]}\n",
     "spec.routes[1]: name \"r\" is also the name of spec.routes[0]"},
    {GW "spec: {" L80 ", routes: [{name: R, rules: [{}]}]}\n",
     "spec.routes[0]: name \"R\" must be lower case"},
    {GW "spec: {" L80 ", routes: [{hostnames: [a.*.com], rules: [{}]}]}\n",
     "spec.routes[0].hostnames[0]: the hostname \"a.*.com\" is not a valid lower case DNS name"},
    {GW "spec: {" L80 ", routes: [{listenerNames: [http, http], rules: [{}]}]}\n",
     "spec.routes[0].listenerNames[1]: \"http\" is repeated"},
    {RULE("{matches: [{}, {}, {}, {}, {}, {}, {}, {}, {}]}"),
     "spec.routes[0].rules[0]: matches must have at most 8 items, not 9"},
    {RULE("{matches: [{path: {type: Glob, value: /}}]}"),
     "spec.routes[0].rules[0].matches[0].path: type \"Glob\" is not one of \"Exact\", "
     "\"PathPrefix\", \"RegularExpression\""},
    {RULE("{matches: [{path: {type: Exact, value: foo}}]}"),
     "spec.routes[0].rules[0].matches[0].path: value \"foo\" must be an absolute path"},
    {RULE("{matches: [{path: {value: /a//b}}]}"),
     "spec.routes[0].rules[0].matches[0].path: value \"/a//b\" must not contain '//'"},
    {RULE("{matches: [{path: {value: /a/../b}}]}"), "must not contain '/../'"},
    {RULE("{matches: [{path: {value: /a/..}}]}"), "must not end with '/..'"},
    {RULE("{matches: [{path: {value: \"/a b\"}}]}"), "must only contain valid characters"},
    {RULE("{matches: [{path: {value: \"/a?b\"}}]}"), "must only contain valid characters"},
    {RULE("{matches: [{path: {value: \"/a%zz\"}}]}"), "must only contain valid characters"},
    {RULE("{matches: [{headers: [{name: \"x y\", value: v}]}]}"),
     "spec.routes[0].rules[0].matches[0].headers[0]: name \"x y\" is not a valid header name"},
    {RULE("{matches: [{headers: [{name: x, value: v, type: Prefix}]}]}"),
     "spec.routes[0].rules[0].matches[0].headers[0]: type \"Prefix\" is not one of"},
    {RULE("{matches: [{headers: [{name: x}]}]}"),
     "spec.routes[0].rules[0].matches[0].headers[0]: value is required"},
    {RULE("{matches: [{headers: [{name: X-A, value: v}, {name: x-a, value: w}]}]}"),
     "spec.routes[0].rules[0].matches[0].headers[1]: name \"x-a\" is repeated"},
    {RULE("{matches: [{headers: [{name: x, value: \"a\\x01\"}]}]}"),
     "spec.routes[0].rules[0].matches[0].headers[0]: value contains control characters"},
    {RULE("{matches: [{queryParams: [{name: q, value: v, type: RegularExpression}]}]}"),
     "spec.routes[0].rules[0].matches[0].queryParams[0]: type \"RegularExpression\" is not one "
     "of \"Exact\""},
    {RULE("{matches: [{method: FETCH}]}"),
     "spec.routes[0].rules[0].matches[0]: method \"FETCH\" is not one of \"GET\""},
    {RULE("{filters: [{requestMirror: {backendRef: {name: m, port: 80}}}]}"),
     "spec.routes[0].rules[0].filters[0]: type is required"},
    {RULE("{filters: [{type: Cors}]}"), "spec.routes[0].rules[0].filters[0]: type \"Cors\" is not "
                                        "one of"},
    {RULE("{filters: [{type: URLRewrite}]}"),
     "spec.routes[0].rules[0].filters[0]: urlRewrite must be specified for type URLRewrite"},
    {RULE("{filters: [{type: URLRewrite, urlRewrite: {}, requestRedirect: {}}]}"),
     "spec.routes[0].rules[0].filters[0]: requestRedirect must not be set when type is "
     "URLRewrite"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {}}, {type: URLRewrite, "
          "urlRewrite: {}}]}"),
     "spec.routes[0].rules[0].filters[1]: RequestRedirect and URLRewrite cannot be combined"},
    {RULE("{filters: [{type: URLRewrite, urlRewrite: {}}, {type: RequestRedirect, "
          "requestRedirect: {}}]}"),
     "spec.routes[0].rules[0].filters[1]: RequestRedirect and URLRewrite cannot be combined"},
    {RULE("{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}}, {type: "
          "RequestHeaderModifier, requestHeaderModifier: {}}]}"),
     "spec.routes[0].rules[0].filters[1]: RequestHeaderModifier filter cannot be repeated"},
    {RULE("{filters: [{type: URLRewrite, urlRewrite: {}}, {type: URLRewrite, urlRewrite: {}}]}"),
     "spec.routes[0].rules[0].filters[1]: URLRewrite filter cannot be repeated"},
    {RULE("{matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, urlRewrite: "
          "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}"),
     "spec.routes[0].rules[0]: ReplacePrefixMatch (filters[0]) needs exactly one match, of type "
     "PathPrefix"},
    {RULE("{matches: [{path: {value: /a}}, {path: {value: /c}}], filters: [{type: "
          "RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, "
          "replacePrefixMatch: /b}}}]}"),
     "spec.routes[0].rules[0]: ReplacePrefixMatch (filters[0]) needs exactly one match"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}], " B80 "}"),
     "spec.routes[0].rules[0]: a RequestRedirect filter must not be used together with "
     "backendRefs"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]}"),
     "spec.routes[0].rules[0].filters[0].requestRedirect: statusCode 304 is not one of 301, 302, "
     "303, 307, 308"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]}"),
     "spec.routes[0].rules[0].filters[0].requestRedirect: scheme \"ftp\" is not one of"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {hostname: \"*.a.com\"}}]}"),
     "spec.routes[0].rules[0].filters[0].requestRedirect: hostname \"*.a.com\" is not a valid "
     "lower case DNS name"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {port: 65536}}]}"),
     "spec.routes[0].rules[0].filters[0].requestRedirect: port 65536 is out of range 1..65535"},
    {RULE("{filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath}}}]}"),
     "spec.routes[0].rules[0].filters[0].requestRedirect.path: replaceFullPath must be specified"},
    {RULE("{filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, "
          "replaceFullPath: /a, replacePrefixMatch: /b}}}]}"),
     "spec.routes[0].rules[0].filters[0].urlRewrite.path: type must be 'ReplacePrefixMatch' when "
     "replacePrefixMatch is set"},
    {RULE("{filters: [{type: URLRewrite, urlRewrite: {path: {replaceFullPath: /a}}}]}"),
     "spec.routes[0].rules[0].filters[0].urlRewrite.path: type is required"},
    {RULE("{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [\"a:b\"]}}]}"),
     "spec.routes[0].rules[0].filters[0].requestHeaderModifier.remove[0]: \"a:b\" is not a valid "
     "header name"},
    {RULE("{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: a, "
          "value: \"x\\r\\ny: z\"}]}}]}"),
     "spec.routes[0].rules[0].filters[0].responseHeaderModifier.set[0]: value contains control "
     "characters"},
    {RULE("{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: a, "
          "value: x}, {name: A, value: y}]}}]}"),
     "spec.routes[0].rules[0].filters[0].responseHeaderModifier.add[1]: name \"A\" is repeated"},
    {RULE("{filters: [{type: RequestMirror, requestMirror: {percent: 10}}]}"),
     "spec.routes[0].rules[0].filters[0].requestMirror: backendRef is required"},
    {RULE("{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
          "percent: 101}}]}"),
     "spec.routes[0].rules[0].filters[0].requestMirror: percent 101 is out of range 0..100"},
    {RULE("{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m}}}]}"),
     "spec.routes[0].rules[0].filters[0].requestMirror.backendRef: port is required"},
    {RULE("{backendRefs: [{name: s, port: 80, weight: 1000001}]}"),
     "spec.routes[0].rules[0].backendRefs[0]: weight 1000001 is out of range 0..1000000"},
    {RULE("{backendRefs: [{name: s, port: 80, weight: -1}]}"),
     "spec.routes[0].rules[0].backendRefs[0]: weight -1 is out of range 0..1000000"},
    {RULE("{backendRefs: [{name: s, port: 80}, {name: t}]}"),
     "spec.routes[0].rules[0].backendRefs[1]: port is required"},
    {RULE("{backendRefs: [{name: s.x, port: 80}]}"),
     "spec.routes[0].rules[0].backendRefs[0]: name \"s.x\" must be lower case letters"},
    {RULE("{backendRefs: [{name: s, namespace: Team, port: 80}]}"),
     "spec.routes[0].rules[0].backendRefs[0]: namespace \"Team\" must be lower case"},
    {RULE("{timeouts: {request: 1d}}"),
     "spec.routes[0].rules[0].timeouts: request \"1d\" is not a duration"},
    {RULE("{timeouts: {backendRequest: 123456s}}"),
     "spec.routes[0].rules[0].timeouts: backendRequest \"123456s\" is not a duration"},
    {RULE("{timeouts: {request: 1s, backendRequest: 2s}}"),
     "spec.routes[0].rules[0].timeouts: backendRequest timeout cannot be longer than request "
     "timeout"},
    {RULE("{retry: {codes: [502]}}"), "spec.routes[0].rules[0].retry: attempts is required"},
    {RULE("{retry: {attempts: 11}}"),
     "spec.routes[0].rules[0].retry: attempts 11 is out of range 0..10"},
    {RULE("{retry: {attempts: 1, codes: [404]}}"),
     "spec.routes[0].rules[0].retry.codes[0]: 404 is out of range 500..599"},
    {RULE("{retry: {attempts: 1, codes: [502, 502]}}"),
     "spec.routes[0].rules[0].retry.codes[1]: 502 is repeated"},
    {RULE("{retry: {attempts: 1, backoff: 1.5s}}"),
     "spec.routes[0].rules[0].retry: backoff \"1.5s\" is not a duration"},
    {GW0 "metadata: {name: g, generation: x}\nspec: {" L80 "}\n",
     "metadata: generation must be a non-negative integer"}, /* backendRefs[].policy: the
                                                                annotations' parsers, named by field
                                                                path */
    {PRULE("x"), BP ": must be an object"},
    {PRULE("{loadBalancer: round_robin}"), BP ".loadBalancer: must be an object"},
    {PRULE("{healthCheck: [1]}"), BP ".healthCheck: must be an object"},
    {PRULE("{loadBalancer: {type: random}}"),
     BP ".loadBalancer.type: \"random\" is not round_robin, least_request, ewma, ring_hash or "
        "maglev"},
    {PRULE("{loadBalancer: {type: {a: b}}}"), BP ".loadBalancer.type: must be a string"},
    {PRULE("{loadBalancer: {hashBy: ip}}"),
     BP ".loadBalancer.hashBy: \"ip\" is not header:NAME, cookie:NAME, source-ip or path"},
    {PRULE("{loadBalancer: {hashBy: \"header:a b\"}}"),
     BP ".loadBalancer.hashBy: \"header:a b\": \"a b\" is not a header name"},
    {PRULE("{loadBalancer: {type: round_robin, hashBy: path}}"),
     BP ".loadBalancer.hashBy: needs loadBalancer.type ring_hash or maglev, not \"round_robin\""},
    {PRULE("{loadBalancer: {affinity: yes}}"),
     BP ".loadBalancer.affinity: \"yes\" is not \"cookie\" or \"none\""},
    {PRULE("{loadBalancer: {sessionCookieName: \"a;b\"}}"),
     BP ".loadBalancer.sessionCookieName: \"a;b\" is not a cookie name"},
    {PRULE("{healthCheck: {path: healthz}}"), BP ".healthCheck.path: \"healthz\" is not a path"},
    {PRULE("{healthCheck: {host: \"a_b:80\"}}"), BP ".healthCheck.host: \"a_b:80\" is not a host"},
    {PRULE("{healthCheck: {interval: 50ms}}"),
     BP ".healthCheck.interval: \"50ms\" is not a duration from 100ms to 1h"},
    {PRULE("{healthCheck: {interval: 1s, timeout: 2s}}"),
     BP ".healthCheck.timeout: \"2s\" is longer than the interval (1000ms)"},
    {PRULE("{healthCheck: {timeout: 6s}}"),
     BP ".healthCheck.timeout: \"6s\" is longer than the interval (5000ms)"},
    {PRULE("{healthCheck: {expectedStatus: 2xx}}"),
     BP ".healthCheck.expectedStatus: \"2xx\" is not a status"},
    {PRULE("{healthCheck: {expectedStatus: 399-200}}"),
     BP ".healthCheck.expectedStatus: \"399-200\" is not a status"},
    {PRULE("{healthCheck: {healthyThreshold: 0}}"),
     BP ".healthCheck.healthyThreshold: \"0\" is not a whole number from 1 to 100"},
    {PRULE("{healthCheck: {unhealthyThreshold: \"3\"}}"),
     BP ".healthCheck.unhealthyThreshold: must be an integer"},
    {PRULE("{outlierDetection: {consecutiveFailures: 1001}}"),
     BP ".outlierDetection.consecutiveFailures: \"1001\" is not a whole number from 0 to 1000"},
    {PRULE("{outlierDetection: {baseEjectionTime: 500ms}}"),
     BP ".outlierDetection.baseEjectionTime: \"500ms\" is not a duration from 1s to 1h"},
    {PRULE("{outlierDetection: {baseEjectionTime: 1m, maxEjectionTime: 59s}}"),
     BP ".outlierDetection.maxEjectionTime: \"59s\" is shorter than the base ejection time "
        "(60000ms)"},
    {PRULE("{outlierDetection: {maxEjectionPercent: -1}}"),
     BP ".outlierDetection.maxEjectionPercent: \"-1\" is not a whole number from 0 to 100"},
    {PRULE("{circuitBreaker: {maxConnections: 1000001}}"),
     BP ".circuitBreaker.maxConnections: \"1000001\" is not a whole number from 0 to 1000000"},
    {PRULE("{circuitBreaker: {maxPendingRequests: 1.5}}"),
     BP ".circuitBreaker.maxPendingRequests: \"1.5\" is not a whole number"},
    {PRULE("{circuitBreaker: {maxRequests: [1]}}"),
     BP ".circuitBreaker.maxRequests: must be an integer"},
    {PRULE("{retryBudget: {percent: 1001}}"),
     BP ".retryBudget.percent: \"1001\" is not a whole number from 0 to 1000"},
    {PRULE("{retryBudget: {minRetriesPerSecond: 100001}}"),
     BP ".retryBudget.minRetriesPerSecond: \"100001\" is not a whole number from 0 to 100000"},
    {PRULE("{slowStart: 2h}"), BP ".slowStart: \"2h\" is not a duration from 0s (off) to 1h"},
    {RULE("{backendRefs: [{name: s, port: 80}, {name: t, port: 80, policy: {slowStart: 1d}}]}"),
     "spec.routes[0].rules[0].backendRefs[1].policy.slowStart: \"1d\" is not a duration"},
};

static void test_bad_gateways(void **state)
{
    struct model_gateway *gw;
    char err[512];
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        rc = decode_text(bad[i].yaml, strlen(bad[i].yaml), &gw, err, sizeof(err));
        if (rc != -1 || !strstr(err, bad[i].want)) {
            fprintf(stderr, "case %zu: rc %d, err \"%s\"\n  want \"%s\"\n", i, rc, err,
                    bad[i].want);
            if (gw) model_object_free(&gw->meta);
            fail();
        }
    }
}

/*
 * A bad Gateway in a file is an object_rejected like any other kind, and is kept (reduced to
 * its identity and the reason) so that snapbuild reports it: Accepted False, reason Invalid.
 */
static void test_bad_gateway_in_file(void **state)
{
    static const char y[] =
        RULE("{retry: {attempts: 11}}") "---\n"
                                        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
                                        "spec: {ports: [{port: 80}]}\n";
    struct model_cache c;

    (void)state;
    model_cache_init(&c);
    struct snapbuild_result r;
    const struct model_gateway *gw;
    char err[256];

    assert_int_equal(filesource_load_buffer("g.yaml", y, strlen(y), &c), 2);
    assert_int_equal(c.n_rejected, 1);
    assert_int_equal(c.kinds[MODEL_KIND_GATEWAY].n, 1);
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 1);
    model_cache_seal(&c);
    gw = (const struct model_gateway *)c.kinds[MODEL_KIND_GATEWAY].items[0];
    assert_non_null(gw->invalid);
    assert_non_null(strstr(gw->invalid, "spec.routes[0].rules[0].retry: attempts 11"));
    assert_int_equal(gw->n_listeners, 0);
    assert_int_equal(gw->n_routes, 0);
    assert_int_equal(snapbuild_build(&c, "strait", "file:test", &r, err, sizeof(err)), 0);
    assert_int_equal(r.n_gateways, 1);
    assert_int_equal(r.n_gateways_served, 0);
    assert_string_equal(r.gateways[0].conds[0].status, "False");
    assert_string_equal(r.gateways[0].conds[0].reason, "Invalid");
    assert_string_equal(r.gateways[0].conds[0].message, gw->invalid);
    assert_string_equal(r.gateways[0].conds[1].status, "False");
    assert_int_equal(r.snap.n_routes, 0);
    snapbuild_free(&r);
    model_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_balancing),
        cmocka_unit_test(test_canary_weights),
        cmocka_unit_test(test_header_routing),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_mirror),
        cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_retries_timeouts),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_examples_in_file_mode),
        cmocka_unit_test(test_good_corners),
        cmocka_unit_test(test_backend_policy),
        cmocka_unit_test(test_bad_gateways),
        cmocka_unit_test(test_bad_gateway_in_file),
        cmocka_unit_test(test_examples_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
