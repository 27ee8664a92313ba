/*
 * AuthorizationPolicy: authzdecode (a table of specs, valid ones with what they decode to,
 * invalid ones with the reason and its field path) and authzbuild through snapbuild --mesh
 * (records sorted, principals sorted and unique, serviceAccounts as SPIFFE IDs, status
 * conditions for valid, invalid, outside-the-trust-domain and missing-target policies, the
 * snapshot encodes, nothing without --mesh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "authzdecode.h"
#include "filesource.h"
#include "kobj.h"
#include "kube_decode.h"
#include "log.h"
#include "model.h"
#include "snapbuild.h"
#include "snapwire.h"

#define POL(spec)                                                                                  \
    "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\n"                                 \
    "metadata: {name: p, namespace: shop}\nspec: " spec "\n"
#define TGT "targetRef: {kind: Service, name: backend}"
#define ID(ns, sa) "spiffe://cluster.local/ns/" ns "/sa/" sa

struct decode_case {
    const char *yaml;
    const char *want; /* the error (substring), or NULL: valid */
};

static const struct decode_case decode_cases[] = {
    {POL("{" TGT ", from: [{namespaces: [shop]}]}"), NULL},
    {POL("{targetRef: {kind: Service, group: \"\", name: backend}, port: 65535, action: Deny, "
         "from: [{authenticated: true}, {unauthenticated: true}]}"),
     NULL},
    {POL("{" TGT
         ", from: [{identities: [\"" ID("a", "b") "\"], serviceAccounts: [{name: "
                                                  "front.end}, {name: x, namespace: ops}]}]}"),
     NULL},
    {"apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: "
     "shop}\n",
     "spec is required"},
    {POL("{from: [{namespaces: [shop]}]}"), "spec: targetRef is required"},
    {POL("[]"), "spec: must be an object"},
    {POL("{targetRef: {name: backend}, from: [{namespaces: [shop]}]}"),
     "spec.targetRef: kind is required"},
    {POL("{targetRef: {kind: Pod, name: backend}, from: [{namespaces: [shop]}]}"),
     "spec.targetRef: kind \"Pod\" is not one of \"Service\""},
    {POL("{targetRef: {kind: Service, group: apps, name: b}, from: [{namespaces: [shop]}]}"),
     "spec.targetRef: group \"apps\" is not \"\""},
    {POL("{targetRef: {kind: Service}, from: [{namespaces: [shop]}]}"),
     "spec.targetRef: name is required"},
    {POL("{targetRef: {kind: Service, name: Backend}, from: [{namespaces: [shop]}]}"),
     "spec.targetRef: name \"Backend\" is not a Service name"},
    {POL("{" TGT ", port: 0, from: [{namespaces: [shop]}]}"),
     "spec: port 0 is out of range 1..65535"},
    {POL("{" TGT ", port: 65536, from: [{namespaces: [shop]}]}"),
     "spec: port 65536 is out of range 1..65535"},
    {POL("{" TGT ", port: \"80\", from: [{namespaces: [shop]}]}"), "spec: port must be an integer"},
    {POL("{" TGT ", action: allow, from: [{namespaces: [shop]}]}"),
     "spec: action \"allow\" is not one of \"Allow\", \"Deny\""},
    {POL("{" TGT "}"), "spec: from is required"},
    {POL("{" TGT ", from: []}"), "spec: from must have at least 1 item(s)"},
    {POL("{" TGT ", from: {namespaces: [shop]}}"), "spec: from must be a list"},
    {POL("{" TGT ", from: [{}]}"), "spec.from[0]: must set identities, serviceAccounts"},
    {POL("{" TGT ", from: [{namespaces: [shop]}, {authenticated: false}]}"),
     "spec.from[1]: must set identities"},
    {POL("{" TGT ", from: [shop]}"), "spec.from[0]: must be an object"},
    {POL("{" TGT ", from: [{namespaces: []}]}"),
     "spec.from[0]: namespaces must have at least 1 item(s)"},
    {POL("{" TGT ", from: [{namespaces: [shop, Shop]}]}"),
     "spec.from[0].namespaces[1]: \"Shop\" is not a namespace name"},
    {POL("{" TGT ", from: [{identities: [\"spiffe://cluster.local\"]}]}"),
     "spec.from[0].identities[0]: \"spiffe://cluster.local\" is not a spiffe:// URI"},
    {POL("{" TGT ", from: [{identities: [\"https://cluster.local/ns/a/sa/b\"]}]}"),
     "spec.from[0].identities[0]: \"https://cluster.local/ns/a/sa/b\" is not a spiffe://"},
    {POL("{" TGT ", from: [{identities: [\"spiffe://cluster.local/ns/../sa/b\"]}]}"),
     "spec.from[0].identities[0]"},
    {POL("{" TGT ", from: [{identities: [\"spiffe://Cluster.local/ns/a/sa/b\"]}]}"),
     "spec.from[0].identities[0]"},
    {POL("{" TGT ", from: [{serviceAccounts: [{namespace: shop}]}]}"),
     "spec.from[0].serviceAccounts[0]: name is required"},
    {POL("{" TGT ", from: [{serviceAccounts: [{name: Front}]}]}"),
     "spec.from[0].serviceAccounts[0]: name \"Front\" is not a DNS-1123 subdomain"},
    {POL("{" TGT ", from: [{serviceAccounts: [{name: f, namespace: a.b}]}]}"),
     "spec.from[0].serviceAccounts[0]: namespace \"a.b\" is not a DNS-1123 label"},
    {POL("{" TGT ", from: [{serviceAccounts: [frontend]}]}"),
     "spec.from[0].serviceAccounts[0]: must be an object"},
    {POL("{" TGT ", from: [{authenticated: yes please}]}"),
     "spec.from[0]: authenticated must be a boolean"},
    {POL("{" TGT ", from: [{unauthenticated: \"true\"}]}"),
     "spec.from[0]: unauthenticated must be a boolean"},
    {POL("{" TGT ", from: [{namespaces: [\"a\\tb\"]}]}"),
     "spec.from[0].namespaces[0]: value contains control characters"},
};

/* Decodes the one document of yaml; returns kube_decode_keep's result and sets *out. */
static int decode(const char *yaml, struct model_authz_policy **out, char *err, size_t errlen)
{
    struct kobj_docs d;
    struct model_meta *m = NULL;
    struct kube_ident id;
    int rc;

    if (kobj_parse_yaml(yaml, strlen(yaml), &d, err, errlen)) fail_msg("YAML: %s\n%s", err, yaml);
    assert_int_equal(d.n, 1);
    rc = kube_decode_keep(d.docs[0], NULL, NULL, "t.yaml", &m, &id, err, errlen);
    kobj_docs_free(&d);
    *out = (struct model_authz_policy *)m;
    if (m) assert_int_equal(m->kind, MODEL_KIND_AUTHZ_POLICY);
    return rc;
}

static void test_decode_table(void **state)
{
    (void)state;
    char err[512];

    for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
        const struct decode_case *c = &decode_cases[i];
        struct model_authz_policy *p;
        int rc = decode(c->yaml, &p, err, sizeof(err));
        if (!c->want) {
            if (rc != 1) fail_msg("case %zu refused: %s", i, err);
            assert_null(p->invalid);
        } else {
            /* kept (2) with its reason for its status */
            if (rc != 2) fail_msg("case %zu: rc %d (%s), want kept invalid", i, rc, err);
            if (!strstr(p->invalid, c->want))
                fail_msg("case %zu: reason \"%s\", want \"%s\"", i, p->invalid, c->want);
            assert_int_equal(p->n_from, 0);
        }
        model_object_free(&p->meta);
    }
}

/* What the valid cases decode to: defaults (Allow, all ports, the policy's namespace). */
static void test_decode_values(void **state)
{
    (void)state;
    struct model_authz_policy *p;
    char err[512];

    assert_int_equal(decode(decode_cases[0].yaml, &p, err, sizeof(err)), 1);
    assert_string_equal(p->target, "backend");
    assert_int_equal(p->port, 0);
    assert_int_equal(p->action, MODEL_AUTHZ_ALLOW);
    assert_int_equal(p->n_from, 1);
    assert_int_equal(p->from[0].n_namespaces, 1);
    assert_string_equal(p->from[0].namespaces[0], "shop");
    model_object_free(&p->meta);
    assert_int_equal(decode(decode_cases[1].yaml, &p, err, sizeof(err)), 1);
    assert_int_equal(p->port, 65535);
    assert_int_equal(p->action, MODEL_AUTHZ_DENY);
    assert_int_equal(p->n_from, 2);
    assert_true(p->from[0].authenticated && !p->from[0].unauthenticated);
    assert_true(!p->from[1].authenticated && p->from[1].unauthenticated);
    model_object_free(&p->meta);
    assert_int_equal(decode(decode_cases[2].yaml, &p, err, sizeof(err)), 1);
    assert_int_equal(p->from[0].n_service_accounts, 2);
    assert_string_equal(p->from[0].service_accounts[0].ns, "shop");
    assert_string_equal(p->from[0].service_accounts[0].name, "front.end");
    assert_string_equal(p->from[0].service_accounts[1].ns, "ops");
    model_object_free(&p->meta);
    assert_int_equal(authzdecode_spiffe_id(ID("a", "b")), 1);
    assert_int_equal(authzdecode_spiffe_id("spiffe://td_1.x/a"), 1);
    assert_int_equal(authzdecode_spiffe_id("spiffe:///a"), 0);
    assert_int_equal(authzdecode_spiffe_id("spiffe://td/a/"), 0);
}

#define SVC(name, ports)                                                                           \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: shop}\n"            \
    "spec: {clusterIP: 10.96.0.20, ports: " ports "}\n"
#define NPOL(name, spec)                                                                           \
    "---\napiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\n"                            \
    "metadata: {name: " name ", namespace: shop}\nspec: " spec "\n"

static const char build_yaml[] = SVC("backend", "[{port: 80}]")
    /* the union of its sources, duplicates (identity = serviceAccount) once, sorted */
    NPOL("allow-frontend",
         "{" TGT ", port: 80, from: [{namespaces: [shop, ops], identities: [\"" ID(
             "shop", "frontend") "\"]}, {serviceAccounts: [{name: frontend}, {name: admin, "
                                 "namespace: ops}]}, {authenticated: true, namespaces: [shop]}]}")
    /* Deny on every port: sorts before port 80 */
    NPOL("deny-plain", "{" TGT ", action: Deny, from: [{unauthenticated: true}]}")
    /* a missing Service: served, ResolvedRefs False */
    NPOL("missing", "{targetRef: {kind: Service, name: nothere}, from: [{namespaces: [shop]}]}")
    /* a missing port of an existing Service: served, ResolvedRefs False */
    NPOL("noport", "{" TGT ", port: 81, from: [{namespaces: [shop]}]}")
    /* invalid: not served */
    NPOL("bad", "{targetRef: {kind: Pod, name: backend}, from: [{namespaces: [shop]}]}")
    /* outside the trust domain: not served */
    NPOL("othertd", "{" TGT ", from: [{identities: [\"spiffe://other.org/ns/a/sa/b\"]}]}");

static void build(const char *yaml, int mesh, int deny, struct model_cache *cache,
                  struct snapbuild_result *r)
{
    struct snapbuild_opts o = {.ingress_class = "strait",
                               .source = "file:test",
                               .mesh = mesh,
                               .trust_domain = "cluster.local",
                               .authz_default_deny = deny};
    char err[256];

    model_cache_init(cache);
    assert_true(filesource_load_buffer("case.yaml", yaml, strlen(yaml), cache) >= 0);
    model_cache_seal(cache);
    if (snapbuild_build_opts(cache, &o, r, err, sizeof(err))) fail_msg("build: %s", err);
}

/* The records as text: "ns/name:port action source [kind=value ...]". */
static void render(const struct snapwire_snapshot *s, char *out, size_t len)
{
    static const char *kind[] = {"", "id", "ns", "authn", "unauthn"};
    size_t n = 0;

    out[0] = '\0';
    for (uint32_t i = 0; i < s->n_authz; i++) {
        const struct snapwire_authz *a = &s->authz[i];
        n += (size_t)snprintf(out + n, len - n, "%s%s/%s:%u %s %s [", i ? "\n" : "", a->ns, a->name,
                              a->port, a->action == SNAPWIRE_AUTHZ_DENY ? "deny" : "allow",
                              a->source);
        for (uint32_t k = 0; k < a->principal_count; k++) {
            const struct snapwire_principal *p = &s->principals[a->first_principal + k];
            n += (size_t)snprintf(out + n, len - n, "%s%s%s%s", k ? " " : "", kind[p->kind],
                                  *p->value ? "=" : "", p->value);
        }
        n += (size_t)snprintf(out + n, len - n, "]");
        assert_true(n < len);
    }
}

static const struct authzbuild_policy *find(const struct snapbuild_result *r, const char *name)
{
    for (size_t i = 0; i < r->n_authz_policies; i++)
        if (!strcmp(r->authz_policies[i].name, name)) return &r->authz_policies[i];
    fail_msg("no status for %s", name);
    return NULL;
}

static void want_conds(const struct snapbuild_result *r, const char *name, const char *accepted,
                       const char *resolved, const char *msg)
{
    const struct authzbuild_policy *p = find(r, name);
    char got[128];

    snprintf(got, sizeof(got), "%s:%s %s:%s", p->conds[0].status, p->conds[0].reason,
             p->conds[1].status, p->conds[1].reason);
    char want[128];
    snprintf(want, sizeof(want), "%s %s", accepted, resolved);
    if (strcmp(got, want)) fail_msg("%s: conditions %s, want %s", name, got, want);
    assert_string_equal(p->conds[0].type, "Accepted");
    assert_string_equal(p->conds[1].type, "ResolvedRefs");
    if (msg && !strstr(p->conds[0].message, msg) && !strstr(p->conds[1].message, msg))
        fail_msg("%s: messages \"%s\" / \"%s\", want \"%s\"", name, p->conds[0].message,
                 p->conds[1].message, msg);
}

static void test_build(void **state)
{
    (void)state;
    static const char want[] =
        "shop/backend:0 deny shop/deny-plain [unauthn]\n"
        "shop/backend:80 allow shop/allow-frontend [id=" ID("ops", "admin") " id=" ID(
            "shop", "frontend") " ns=ops ns=shop authn]\n"
                                "shop/backend:81 allow shop/noport [ns=shop]\n"
                                "shop/nothere:0 allow shop/missing [ns=shop]";
    struct model_cache cache;
    struct snapbuild_result r;
    struct snapwire_snapshot d;
    uint8_t *f = NULL;
    size_t len;
    char got[2048], err[256];

    build(build_yaml, 1, 1, &cache, &r);
    render(&r.snap, got, sizeof(got));
    if (strcmp(got, want)) fail_msg("got:\n%s\nwant:\n%s", got, want);
    assert_int_equal(r.snap.meta.authz_default_deny, 1);
    assert_int_equal(r.n_authz_policies, 6);
    assert_int_equal(r.n_authz_rejected, 2);
    want_conds(&r, "allow-frontend", "True:Accepted", "True:ResolvedRefs", NULL);
    want_conds(&r, "deny-plain", "True:Accepted", "True:ResolvedRefs", NULL);
    want_conds(&r, "missing", "True:Accepted", "False:TargetNotFound",
               "Service shop/nothere not found");
    want_conds(&r, "noport", "True:Accepted", "False:PortNotFound",
               "Service shop/backend has no port 81");
    want_conds(&r, "bad", "False:Invalid", "False:Invalid", "spec.targetRef: kind \"Pod\"");
    want_conds(&r, "othertd", "False:Invalid", "False:Invalid",
               "spec.from[0].identities[0]: \"spiffe://other.org/ns/a/sa/b\" is not in the trust "
               "domain cluster.local");
    assert_int_equal(find(&r, "missing")->served, 1);
    assert_int_equal(find(&r, "bad")->served, 0);
    /* the snapshot passes snapwire's checks, both ways */
    if (snapwire_encode(&r.snap, 1, &f, &len, err, sizeof(err))) fail_msg("encode: %s", err);
    assert_int_equal(snapwire_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_authz, 4);
    snapwire_free(&d);
    free(f);
    snapbuild_free(&r);
    model_cache_free(&cache);
    /* default allow, and no policies at all */
    build(SVC("backend", "[{port: 80}]"), 1, 0, &cache, &r);
    assert_int_equal(r.snap.n_authz, 0);
    assert_int_equal(r.snap.meta.authz_default_deny, 0);
    assert_int_equal(r.n_authz_policies, 0);
    snapbuild_free(&r);
    model_cache_free(&cache);
}

/* Without --mesh the policies are not used: no records, no statuses, the plain snapshot. */
static void test_off(void **state)
{
    (void)state;
    struct model_cache cache;
    struct snapbuild_result r;

    build(build_yaml, 0, 1, &cache, &r);
    assert_int_equal(r.snap.n_authz, 0);
    assert_int_equal(r.snap.n_principals, 0);
    assert_int_equal(r.snap.meta.authz_default_deny, 0);
    assert_int_equal(r.n_authz_policies, 0);
    snapbuild_free(&r);
    model_cache_free(&cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_table),
        cmocka_unit_test(test_decode_values),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_off),
    };
    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
