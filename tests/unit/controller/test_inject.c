/*
 * inject: which pods get the sidecar and what is added (a table of manifests), the order of
 * existing init containers and volumes, idempotence, JSON Patch pointer escaping, and the
 * admission answer (its patch applied to the pod gives what inject_documents gives). The
 * patch is applied by an independent RFC 6902 applier in tests/e2e/test_mesh_inject.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../controller/inject.c"

static const struct inject_opts OPTS = {
    "img:1", "id.example:8443", "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"};

/* Injects in (expecting want_rc) and parses the result back; messages into msgs. */
static struct kobj_docs run(const char *in, enum inject_format fmt, int want_rc, char *msgs,
                            size_t msgs_len)
{
    struct kobj_docs d = {0};
    char *out = NULL, err[512] = "";
    size_t outlen = 0;
    FILE *m = fmemopen(msgs, msgs_len, "w");
    int rc;

    assert_non_null(m);
    rc = inject_documents(in, strlen(in), &OPTS, fmt, m, &out, &outlen, err, sizeof(err));
    fclose(m);
    if (rc != want_rc) fail_msg("rc %d: %s", rc, err);
    if (rc) {
        assert_true(err[0] != '\0');
        return d;
    }
    assert_int_equal(strlen(out), outlen);
    if (ij_looks_json(out, outlen))
        assert_int_equal(kobj_parse_json(out, outlen, &d, err, sizeof(err)), 0);
    else
        assert_int_equal(kobj_parse_yaml(out, outlen, &d, err, sizeof(err)), 0);
    free(out);
    return d;
}

static const char *name_at(const struct kobj *seq, size_t i)
{
    assert_non_null(seq);
    assert_true(i < seq->n);
    return kobj_str(seq->items[i], "name");
}

/* Checks that pod (metadata + spec) was injected, keeping own_init / own_vols of its own. */
static void assert_injected(const struct kobj *pod, size_t own_init, size_t own_vols)
{
    const struct kobj *init = kobj_get(pod, "spec", "initContainers");
    const struct kobj *vols = kobj_get(pod, "spec", "volumes"), *proxy, *c;
    size_t i;

    assert_string_equal(kobj_str(pod, "metadata", "annotations", "strait.dev/injected"), "true");
    assert_string_equal(kobj_str(pod, "metadata", "annotations", "strait.dev/proxy-version"),
                        INJECT_PROXY_VERSION);
    assert_int_equal(init->n, own_init + 2);
    assert_string_equal(name_at(init, 0), "strait-init");
    assert_string_equal(name_at(init, 1), "strait-proxy");
    proxy = init->items[1];
    assert_string_equal(kobj_str(proxy, "restartPolicy"), "Always");
    assert_string_equal(kobj_str(proxy, "image"), "img:1");
    c = kobj_get(init->items[0], "securityContext", "capabilities", "add");
    assert_int_equal(c->n, 1);
    assert_string_equal(kobj_text(c->items[0]), "NET_ADMIN");
    c = kobj_get(proxy, "env");
    assert_string_equal(name_at(c, 4), "STRAIT_MESH_IDENTITY_ADDR");
    assert_string_equal(kobj_str(c->items[4], "value"), "id.example:8443");
    assert_string_equal(name_at(c, 5), "STRAIT_MESH_TRUST_ANCHORS");
    assert_string_equal(kobj_str(c->items[3], "valueFrom", "fieldRef", "fieldPath"),
                        "spec.serviceAccountName");
    assert_string_equal(kobj_str(proxy, "securityContext", "runAsUser"), "2102");
    assert_int_equal(kobj_get(proxy, "securityContext", "runAsUser")->style, KOBJ_PLAIN);
    assert_string_equal(kobj_str(proxy, "readinessProbe", "httpGet", "path"), "/ready");
    assert_string_equal(kobj_str(proxy, "livenessProbe", "httpGet", "path"), "/live");
    assert_non_null(kobj_get(proxy, "startupProbe"));
    assert_int_equal(vols->n, own_vols + 2);
    assert_string_equal(name_at(vols, own_vols), "strait-identity-token");
    c = kobj_get(vols->items[own_vols], "projected", "sources");
    assert_string_equal(kobj_str(c->items[0], "serviceAccountToken", "audience"), "strait");
    assert_string_equal(kobj_str(c->items[0], "serviceAccountToken", "expirationSeconds"), "86400");
    for (i = 0; i < own_init; i++)
        assert_true(strcmp(name_at(init, i + 2), "strait-proxy"));
}

static void test_pod_json(void **state)
{
    const char *in = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
                     "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"x\","
                     "\"ports\":[{\"containerPort\":8080}]}]}}";
    char msgs[512];
    struct kobj_docs d;
    const struct kobj *app;

    (void)state;
    d = run(in, INJECT_AUTO, 0, msgs, sizeof(msgs));
    assert_int_equal(d.n, 1);
    assert_injected(d.docs[0], 0, 0);
    app = kobj_get(d.docs[0], "spec", "containers")->items[0];
    assert_string_equal(kobj_str(app, "name"), "app"); /* the app container untouched */
    assert_int_equal(app->n, 3);
    assert_int_equal(kobj_get(app, "ports")->items[0]->items[0]->style, KOBJ_PLAIN);
    assert_non_null(strstr(msgs, "Pod p: injected"));
    kobj_docs_free(&d);
}

static const char DEPLOY[] = "apiVersion: apps/v1\n"
                             "kind: Deployment\n"
                             "metadata: {name: web, namespace: shop}\n"
                             "spec:\n"
                             "  template:\n"
                             "    metadata:\n"
                             "      annotations:\n"
                             "        strait.dev/skip-outbound-ports: \"443,5432\"\n"
                             "        strait.dev/skip-outbound-cidrs: 10.96.0.1/32\n"
                             "    spec:\n"
                             "      initContainers: [{name: a, image: x}, {name: b, image: x}]\n"
                             "      volumes: [{name: data, emptyDir: {}}]\n"
                             "      containers: [{name: app, image: x, args: [\"123\", yes]}]\n"
                             "---\n"
                             "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n";

static void test_deployment_yaml_order(void **state)
{
    char msgs[512];
    struct kobj_docs d;
    const struct kobj *pod, *init, *args;
    size_t i;
    int found = 0;

    (void)state;
    d = run(DEPLOY, INJECT_AUTO, 0, msgs, sizeof(msgs));
    assert_int_equal(d.n, 2);
    pod = kobj_get(d.docs[0], "spec", "template");
    assert_injected(pod, 2, 1);
    init = kobj_get(pod, "spec", "initContainers");
    assert_string_equal(name_at(init, 2), "a");
    assert_string_equal(name_at(init, 3), "b");
    assert_string_equal(name_at(kobj_get(pod, "spec", "volumes"), 0), "data");
    args = kobj_get(init->items[0], "args");
    for (i = 0; i + 1 < args->n; i++) {
        if (!strcmp(args->items[i]->str, "--exclude-outbound-ports")) {
            assert_string_equal(args->items[i + 1]->str, "443,5432");
            found++;
        }
        if (!strcmp(args->items[i]->str, "--exclude-outbound-cidrs")) {
            assert_string_equal(args->items[i + 1]->str, "10.96.0.1/32");
            found++;
        }
        if (!strcmp(args->items[i]->str, "--exclude-inbound-ports")) {
            assert_string_equal(args->items[i + 1]->str, "4191");
            found++;
        }
    }
    assert_int_equal(found, 3);
    /* strings stay strings and booleans booleans across the YAML round trip */
    args = kobj_get(kobj_get(pod, "spec", "containers")->items[0], "args");
    assert_int_equal(args->items[0]->style, KOBJ_QUOTED);
    assert_int_equal(args->items[1]->style, KOBJ_PLAIN);
    assert_string_equal(kobj_str(d.docs[1], "kind"), "Service");
    assert_non_null(strstr(msgs, "Deployment shop/web: injected"));
    kobj_docs_free(&d);

    /* -o json of a stream: a v1 List */
    d = run(DEPLOY, INJECT_JSON, 0, msgs, sizeof(msgs));
    assert_int_equal(d.n, 1);
    assert_string_equal(kobj_str(d.docs[0], "kind"), "List");
    assert_int_equal(kobj_get(d.docs[0], "items")->n, 2);
    kobj_docs_free(&d);
}

static void test_cronjob_list_idempotent(void **state)
{
    const char *in =
        "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":["
        "{\"apiVersion\":\"batch/v1\",\"kind\":\"CronJob\",\"metadata\":{\"name\":\"c\"},"
        "\"spec\":{\"schedule\":\"* * * * *\",\"jobTemplate\":{\"spec\":{\"template\":{"
        "\"spec\":{\"restartPolicy\":\"Never\",\"containers\":[{\"name\":\"j\"}]}}}}}},"
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":{\"name\":\"s\"},"
        "\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"a/b\":\"c\"}},"
        "\"spec\":{\"containers\":[{\"name\":\"x\"}]}}}}]}";
    char msgs[512], *once = NULL, *twice = NULL, err[256];
    size_t n1, n2;
    struct kobj_docs d;
    const struct kobj *items;

    (void)state;
    d = run(in, INJECT_AUTO, 0, msgs, sizeof(msgs));
    items = kobj_get(d.docs[0], "items");
    assert_injected(kobj_get(items->items[0], "spec", "jobTemplate", "spec", "template"), 0, 0);
    assert_injected(kobj_get(items->items[1], "spec", "template"), 0, 0);
    assert_string_equal(
        kobj_str(items->items[1], "spec", "template", "metadata", "annotations", "a/b"), "c");
    kobj_docs_free(&d);

    assert_int_equal(
        inject_documents(in, strlen(in), &OPTS, INJECT_AUTO, NULL, &once, &n1, err, sizeof(err)),
        0);
    assert_int_equal(
        inject_documents(once, n1, &OPTS, INJECT_AUTO, NULL, &twice, &n2, err, sizeof(err)), 0);
    assert_string_equal(once, twice);
    free(once);
    free(twice);
}

/* Pods left alone: output equals the input re-written. */
static void test_skipped(void **state)
{
    static const struct {
        const char *pod_extra; /* inside "metadata" then "spec" */
        const char *spec_extra;
        const char *msg;
    } cases[] = {
        {"\"annotations\":{\"strait.dev/inject\":\"disabled\"}", "", "inject is disabled"},
        {"\"labels\":{\"strait.dev/inject\":\"disabled\"}", "", "inject is disabled"},
        {"\"annotations\":{\"strait.dev/injected\":\"true\"}", "", "already injected"},
        {"\"name\":\"p\"", ",\"initContainers\":[{\"name\":\"strait-proxy\"}]", "already injected"},
        {"\"name\":\"p\"", ",\"hostNetwork\":true", "hostNetwork"},
    };
    char in[1024], msgs[512], *out, *plain, err[256];
    size_t i, n, pn;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(in, sizeof(in),
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{%s},"
                 "\"spec\":{\"containers\":[{\"name\":\"a\"}]%s}}",
                 cases[i].pod_extra, cases[i].spec_extra);
        FILE *m = fmemopen(msgs, sizeof(msgs), "w");
        assert_int_equal(
            inject_documents(in, strlen(in), &OPTS, INJECT_AUTO, m, &out, &n, err, sizeof(err)), 0);
        fclose(m);
        assert_non_null(strstr(msgs, cases[i].msg));
        /* unchanged: the same as writing the parsed input back */
        struct kobj_docs d = {0};
        assert_int_equal(kobj_parse_json(in, strlen(in), &d, err, sizeof(err)), 0);
        assert_int_equal(ij_write_json(d.docs, d.n, &plain, &pn, err, sizeof(err)), 0);
        assert_string_equal(out, plain);
        kobj_docs_free(&d);
        free(out);
        free(plain);
    }
}

static void test_invalid(void **state)
{
    static const char *bad[] = {
        "{\"kind\":",
        "a: [1,\n",
        "",
        "- just\n- a list\n",
        "kind: Deployment\nmetadata: {name: x}\nspec: {}\n",
        "kind: Pod\nmetadata: {annotations: {strait.dev/skip-inbound-ports: \"80,x\"}}\n"
        "spec: {containers: []}\n",
        "kind: Pod\nmetadata: {annotations: {strait.dev/skip-inbound-ports: \"4143\"}}\n"
        "spec: {containers: []}\n",
        "kind: Pod\nmetadata: {annotations: {strait.dev/skip-outbound-cidrs: 10.96.0.1/12}}\n"
        "spec: {containers: []}\n",
        "kind: Pod\nmetadata: {name: x}\n",
    };
    char msgs[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        run(bad[i], INJECT_AUTO, -1, msgs, sizeof(msgs));
}

static void test_pointer_escaping(void **state)
{
    char path[64] = "/metadata/annotations";
    struct kobj_docs d = {0};
    struct ij_op op;
    char err[128], *out;
    size_t n;
    const char *in = "{\"metadata\":{\"annotations\":{\"x\":\"1\"}},\"l\":[1,2]}";

    (void)state;
    ij_ptr_append(path, sizeof(path), "a/b~c");
    assert_string_equal(path, "/metadata/annotations/a~1b~0c");
    assert_int_equal(kobj_parse_json(in, strlen(in), &d, err, sizeof(err)), 0);
    op.path = path;
    op.value = ij_str("v");
    assert_int_equal(ij_apply(d.docs[0], &op, err, sizeof(err)), 0);
    assert_string_equal(kobj_str(d.docs[0], "metadata", "annotations", "a/b~c"), "v");
    op.path = "/l/1";
    op.value = ij_num(9);
    assert_int_equal(ij_apply(d.docs[0], &op, err, sizeof(err)), 0);
    op.path = "/l/-";
    op.value = ij_num(3);
    assert_int_equal(ij_apply(d.docs[0], &op, err, sizeof(err)), 0);
    op.path = "/l/7";
    op.value = ij_num(3);
    assert_int_equal(ij_apply(d.docs[0], &op, err, sizeof(err)), -1);
    kobj_free(op.value);
    op.path = "/nope/x";
    op.value = ij_num(3);
    assert_int_equal(ij_apply(d.docs[0], &op, err, sizeof(err)), -1);
    kobj_free(op.value);
    assert_int_equal(ij_write_json(d.docs, 1, &out, &n, err, sizeof(err)), 0);
    assert_non_null(strstr(out, "\"l\": [\n    1,\n    9,\n    2,\n    3\n  ]"));
    free(out);
    kobj_docs_free(&d);
}

/* Decodes the response's patch and applies it with ij_apply. */
static void apply_patch(struct kobj *pod, const char *b64)
{
    unsigned char *raw = malloc(strlen(b64));
    struct kobj_docs p = {0};
    struct ij_op op;
    char err[256];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)strlen(b64));
    size_t i;

    assert_true(n > 0);
    while (n > 0 && !raw[n - 1]) /* EVP_DecodeBlock counts the padding as zero bytes */
        n--;
    assert_int_equal(kobj_parse_json((char *)raw, (size_t)n, &p, err, sizeof(err)), 0);
    assert_int_equal(p.docs[0]->type, KOBJ_SEQ);
    for (i = 0; i < p.docs[0]->n; i++) {
        struct kobj *o = p.docs[0]->items[i];
        assert_string_equal(kobj_str(o, "op"), "add");
        op.path = (char *)kobj_str(o, "path");
        op.value = o->items[2]; /* op, path, value */
        o->items[2] = ij_str("");
        assert_int_equal(ij_apply(pod, &op, err, sizeof(err)), 0);
    }
    kobj_docs_free(&p);
    free(raw);
}

static void test_admission(void **state)
{
    static const char *pods[] = {
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"generateName\":\"w-\"},"
        "\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"x\"}]}}",
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"annotations\":"
        "{\"strait.dev/inject\":\"enabled\",\"x~y/z\":\"1\"}},\"spec\":{\"initContainers\":"
        "[{\"name\":\"i\"}],\"volumes\":[{\"name\":\"v\",\"emptyDir\":{}}],\"containers\":"
        "[{\"name\":\"a\"}]}}",
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"spec\":{\"containers\":[]}}",
    };
    char review[4096], *out = NULL, *want = NULL, *got = NULL, err[256];
    size_t i, n, wn, gn;

    (void)state;
    for (i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        struct kobj_docs r = {0}, pod = {0};
        snprintf(review, sizeof(review),
                 "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                 "\"request\":{\"uid\":\"u-%zu\",\"kind\":{\"group\":\"\",\"version\":\"v1\","
                 "\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"namespace\":\"ns\",\"object\":%s}}",
                 i, pods[i]);
        assert_int_equal(
            inject_admission(review, strlen(review), &OPTS, &out, &n, err, sizeof(err)), 0);
        assert_int_equal(kobj_parse_json(out, n, &r, err, sizeof(err)), 0);
        assert_string_equal(kobj_str(r.docs[0], "kind"), "AdmissionReview");
        assert_string_equal(kobj_str(r.docs[0], "response", "allowed"), "true");
        assert_string_equal(kobj_str(r.docs[0], "response", "patchType"), "JSONPatch");
        snprintf(err, sizeof(err), "u-%zu", i);
        assert_string_equal(kobj_str(r.docs[0], "response", "uid"), err);
        assert_int_equal(kobj_parse_json(pods[i], strlen(pods[i]), &pod, err, sizeof(err)), 0);
        apply_patch(pod.docs[0], kobj_str(r.docs[0], "response", "patch"));
        assert_int_equal(ij_write_json(pod.docs, 1, &got, &gn, err, sizeof(err)), 0);
        assert_int_equal(inject_documents(pods[i], strlen(pods[i]), &OPTS, INJECT_JSON, NULL, &want,
                                          &wn, err, sizeof(err)),
                         0);
        assert_string_equal(got, want);
        free(got);
        free(want);
        free(out);
        kobj_docs_free(&r);
        kobj_docs_free(&pod);
    }
}

static void test_admission_no_patch_and_errors(void **state)
{
    static const struct {
        const char *review;
        int rc;
        const char *allowed; /* NULL: no response */
        int warning;
    } cases[] = {
        {"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
         "\"uid\":\"1\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{"
         "\"metadata\":{\"annotations\":{\"strait.dev/inject\":\"disabled\"}},\"spec\":{}}}}",
         0, "true", 0},
        {"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
         "\"uid\":\"1\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{"
         "\"spec\":{\"hostNetwork\":true}}}}",
         0, "true", 1},
        {"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
         "\"uid\":\"1\",\"kind\":{\"kind\":\"Pod\"},\"operation\":\"CREATE\",\"object\":{"
         "\"metadata\":{\"annotations\":{\"strait.dev/skip-inbound-ports\":\"x\"}},"
         "\"spec\":{}}}}",
         0, "false", 0},
        {"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
         "\"uid\":\"1\",\"kind\":{\"kind\":\"Service\"},\"operation\":\"CREATE\",\"object\":{}}}",
         0, "true", 0},
        {"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
         "\"kind\":{\"kind\":\"Pod\"},\"object\":{}}}",
         -1, NULL, 0},
        {"{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\"}", -1, NULL, 0},
        {"not json", -1, NULL, 0},
        {"", -1, NULL, 0},
    };
    char *out, err[256];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kobj_docs r = {0};
        int rc = inject_admission(cases[i].review, strlen(cases[i].review), &OPTS, &out, &n, err,
                                  sizeof(err));
        assert_int_equal(rc, cases[i].rc);
        if (rc) {
            assert_true(err[0] != '\0');
            continue;
        }
        assert_int_equal(kobj_parse_json(out, n, &r, err, sizeof(err)), 0);
        assert_string_equal(kobj_str(r.docs[0], "response", "allowed"), cases[i].allowed);
        assert_null(kobj_get(r.docs[0], "response", "patch"));
        assert_true(!!kobj_get(r.docs[0], "response", "warnings") == cases[i].warning);
        if (!strcmp(cases[i].allowed, "false"))
            assert_non_null(
                strstr(kobj_str(r.docs[0], "response", "status", "message"), "skip-inbound"));
        kobj_docs_free(&r);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_json),
        cmocka_unit_test(test_deployment_yaml_order),
        cmocka_unit_test(test_cronjob_list_idempotent),
        cmocka_unit_test(test_skipped),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_pointer_escaping),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_admission_no_patch_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
