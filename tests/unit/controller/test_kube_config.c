/*
 * kube_config: kubeconfig fixtures (tests/unit/controller/kubeconfig/) resolved the way
 * client-go does (current or named context, relative paths, -data over files, tokenFile),
 * a table of documents it must refuse with a useful message, token files, and the
 * in-cluster configuration from environment variables and a service account folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kube_config.h"

static char fixtures[512];

static const char *fixture(const char *name)
{
    static char path[700];

    snprintf(path, sizeof(path), "%s/%s", fixtures, name);
    return path;
}

static void test_current_context(void **state)
{
    struct kube_config c;
    char err[512], want[700];

    (void)state;
    assert_int_equal(kube_config_load(fixture("multi.yaml"), NULL, &c, err, sizeof(err)), 0);
    assert_string_equal(c.context, "dev");
    assert_string_equal(c.server, "https://127.0.0.1:6443");
    assert_string_equal(c.ns, "team-a");
    snprintf(want, sizeof(want), "%s/certs/ca.crt", fixtures);
    assert_string_equal(c.ca_file, want);
    snprintf(want, sizeof(want), "%s/certs/alice.crt", fixtures);
    assert_string_equal(c.cert_file, want);
    assert_string_equal(c.key_file, "/abs/alice.key");
    assert_null(c.token);
    assert_null(c.token_file);
    assert_int_equal(c.insecure, 0);
    kube_config_free(&c);
}

static void test_named_context(void **state)
{
    static const char ca[] = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
    struct kube_config c;
    char err[512], want[700];

    (void)state;
    assert_int_equal(kube_config_load(fixture("multi.yaml"), "prod", &c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://prod.example.com:6443"); /* trailing '/' dropped */
    assert_null(c.ns);
    assert_null(c.ca_file);
    assert_int_equal(c.ca_data_len, strlen(ca));
    assert_memory_equal(c.ca_data, ca, strlen(ca));
    assert_string_equal(c.token, "static-token");
    snprintf(want, sizeof(want), "%s/token", fixtures);
    assert_string_equal(c.token_file, want);
    kube_config_free(&c);
    assert_int_equal(kube_config_load(fixture("multi.yaml"), "nope", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "context \"nope\" not found"));
    assert_null(c.server);
}

static void test_data_forms(void **state)
{
    struct kube_config c;
    char err[512];

    (void)state;
    assert_int_equal(kube_config_load(fixture("data.yaml"), NULL, &c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "http://localhost:8001");
    assert_null(c.cert_file); /* -data wins */
    assert_int_equal(c.cert_data_len, 4);
    assert_memory_equal(c.cert_data, "CERT", 4);
    assert_int_equal(c.key_data_len, 3);
    assert_memory_equal(c.key_data, "KEY", 3);
    kube_config_free(&c);
}

static void test_exec_refused(void **state)
{
    struct kube_config c;
    char err[512];

    (void)state;
    assert_int_equal(kube_config_load(fixture("exec.yaml"), NULL, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exec.yaml: user \"gke\": user field exec is not supported"));
    assert_int_equal(kube_config_load(fixture("missing.yaml"), NULL, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing.yaml"));
}

#define KC_HEAD "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
#define KC_CTX "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"

static void test_bad_documents(void **state)
{
    static const struct {
        const char *doc, *want;
    } cases[] = {
        {"", "not a kubeconfig"},
        {"- a\n- b\n", "not a kubeconfig"},
        {"apiVersion: v1\nclusters: []\n", "no current-context"},
        {KC_HEAD "clusters: []\n" KC_CTX, "cluster \"k\" not found"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {}\n" KC_CTX, "cluster has no server"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"ftp://x\"}\n" KC_CTX,
         "not an http:// or https:// URL"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\", "
                 "insecure-skip-tls-verify: maybe}\n" KC_CTX,
         "insecure-skip-tls-verify must be true or false"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\", "
                 "insecure-skip-tls-verify: true, certificate-authority: ca}\n" KC_CTX,
         "cannot be combined"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\", "
                 "certificate-authority-data: \"%%%\"}\n" KC_CTX,
         "certificate-authority-data is not valid base64"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\"}\n"
                 "users:\n- name: u\n  user: {client-certificate: a.crt}\n" KC_CTX,
         "client-certificate and client-key must be given together"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\"}\n"
                 "users:\n- name: u\n  user: {username: a, password: b}\n" KC_CTX,
         "user field username is not supported"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\", proxy-url: "
                 "\"http://p\"}\n" KC_CTX,
         "proxy-url is not supported"},
        {KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x\"}\n"
                 "users:\n- name: u\n  user: {token: \"a\\nb\"}\n" KC_CTX,
         "token contains control characters"},
        {"a: [1, 2\n", "line"},
    };
    struct kube_config c;
    char err[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        if (kube_config_parse(cases[i].doc, strlen(cases[i].doc), "/d", NULL, &c, err,
                              sizeof(err)) != -1)
            fail_msg("case %zu accepted", i);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].want);
        assert_null(c.server);
    }
}

static void test_anonymous_and_insecure(void **state)
{
    static const char doc[] = KC_HEAD "clusters:\n- name: k\n  cluster: {server: \"https://x/\", "
                                      "insecure-skip-tls-verify: true}\n" KC_CTX;
    struct kube_config c;
    char err[512];

    (void)state;
    assert_int_equal(kube_config_parse(doc, strlen(doc), "/d", NULL, &c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://x");
    assert_int_equal(c.insecure, 1);
    assert_null(c.token);
    assert_null(c.cert_file);
    kube_config_free(&c);
}

static char tmpdir[] = "/tmp/strait-kc-XXXXXX";

static void write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

static void test_token_file(void **state)
{
    char path[256], err[256], *t;

    (void)state;
    write_file("tok", "  abc.def \n\n");
    snprintf(path, sizeof(path), "%s/tok", tmpdir);
    assert_non_null(t = kube_config_read_token(path, err, sizeof(err)));
    assert_string_equal(t, "abc.def");
    free(t);
    write_file("tok", " \n");
    assert_null(kube_config_read_token(path, err, sizeof(err)));
    assert_non_null(strstr(err, "empty token file"));
    write_file("tok", "abc\r\nX-Evil: 1\n");
    assert_null(kube_config_read_token(path, err, sizeof(err)));
    assert_non_null(strstr(err, "control characters"));
}

static void test_in_cluster(void **state)
{
    struct kube_config c;
    char err[256], want[300];

    (void)state;
    unsetenv("KUBERNETES_SERVICE_HOST");
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kube_config_in_cluster_available(), 0);
    assert_int_equal(kube_config_in_cluster(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("STRAIT_SERVICEACCOUNT_DIR", tmpdir, 1);
    snprintf(want, sizeof(want), "%s/token", tmpdir);
    unlink(want);
    assert_int_equal(kube_config_in_cluster(&c, err, sizeof(err)), -1); /* no token yet */
    assert_non_null(strstr(err, "token"));

    write_file("token", "sa-token\n");
    assert_int_equal(kube_config_in_cluster(&c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://10.96.0.1:443");
    assert_string_equal(c.token_file, want);
    assert_null(c.ca_file); /* no ca.crt: system roots */
    assert_null(c.ns);
    assert_string_equal(c.context, "in-cluster");
    kube_config_free(&c);

    write_file("ca.crt", "PEM\n");
    write_file("namespace", "strait-system\n");
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    assert_int_equal(kube_config_in_cluster(&c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://[fd00::1]:443");
    snprintf(want, sizeof(want), "%s/ca.crt", tmpdir);
    assert_string_equal(c.ca_file, want);
    assert_string_equal(c.ns, "strait-system");
    kube_config_free(&c);
}

static int teardown(void **state)
{
    static const char *names[] = {"tok", "token", "ca.crt", "namespace"};
    char path[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_current_context), cmocka_unit_test(test_named_context),
        cmocka_unit_test(test_data_forms),      cmocka_unit_test(test_exec_refused),
        cmocka_unit_test(test_bad_documents),   cmocka_unit_test(test_anonymous_and_insecure),
        cmocka_unit_test(test_token_file),      cmocka_unit_test(test_in_cluster),
    };
    const char *slash;

    /* the fixtures sit next to this source file, whatever the current folder */
    slash = strrchr(__FILE__, '/');
    snprintf(fixtures, sizeof(fixtures), "%.*s/kubeconfig", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".");
    if (!mkdtemp(tmpdir)) return 1;
    return cmocka_run_group_tests(tests, NULL, teardown);
}
