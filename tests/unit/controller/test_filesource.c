/*
 * kobj + kube_decode + filesource: YAML streams, JSON, Lists, broken input, folder walking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "filesource.h"
#include "kobj.h"
#include "kube_decode.h"
#include "log.h"
#include "model.h"

#define SVC_YAML(name)                                                                             \
    "apiVersion: v1\nkind: Service\nmetadata: {name: " name "}\nspec: {ports: [{port: 80}]}\n"

static size_t count(const struct model_cache *c, enum model_kind k)
{
    return c->kinds[k].n;
}

static void test_kobj_yaml_multidoc(void **state)
{
    static const char y[] = "# comment only\n---\na: 1\nb: [x, \"y\", {c: true}]\n---\n---\n"
                            "- 1\n- ~\n...\n";
    struct kobj_docs d;
    char err[256];
    long v;

    (void)state;
    assert_int_equal(kobj_parse_yaml(y, strlen(y), &d, err, sizeof(err)), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(kobj_int(kobj_get(d.docs[0], "a"), &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(kobj_get(d.docs[0], "b")->n, 3);
    assert_string_equal(kobj_text(kobj_get(d.docs[0], "b")->items[1]), "y");
    assert_int_equal(kobj_get(d.docs[0], "b")->items[1]->style, KOBJ_QUOTED);
    assert_int_equal(kobj_bool(kobj_get(kobj_get(d.docs[0], "b")->items[2], "c")), 1);
    assert_null(kobj_get(d.docs[0], "b", "c")); /* not a map */
    assert_int_equal(d.docs[1]->type, KOBJ_SEQ);
    assert_null(kobj_text(d.docs[1]->items[1])); /* ~ is null */
    kobj_docs_free(&d);
}

static void test_kobj_yaml_errors(void **state)
{
    static const char broken[] = "a: 1\n---\nb: [1, 2\n---\nc: 3\n";
    static const char dup[] = "a: 1\na: 2\n";
    static const char alias[] = "a: &x {b: 1}\nc: *x\n";
    struct kobj_docs d;
    char err[256];

    (void)state;
    assert_int_equal(kobj_parse_yaml(broken, strlen(broken), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 4"));
    assert_int_equal(d.n, 1); /* the document before the error is kept */
    assert_string_equal(kobj_str(d.docs[0], "a"), "1");
    kobj_docs_free(&d);
    assert_int_equal(kobj_parse_yaml(dup, strlen(dup), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate"));
    kobj_docs_free(&d);
    assert_int_equal(kobj_parse_yaml(alias, strlen(alias), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "alias"));
    kobj_docs_free(&d);
}

static void test_kobj_json(void **state)
{
    static const char j[] = "{\"a\":{\"b\":[1,\"two\",null,false]},\"n\":-12}";
    struct kobj_docs d;
    char err[256];
    long v;

    (void)state;
    assert_int_equal(kobj_parse_json(j, strlen(j), &d, err, sizeof(err)), 0);
    assert_int_equal(d.n, 1);
    assert_int_equal(kobj_int(kobj_get(d.docs[0], "n"), &v), 0);
    assert_int_equal(v, -12);
    assert_string_equal(kobj_text(kobj_get(d.docs[0], "a", "b")->items[1]), "two");
    assert_null(kobj_text(kobj_get(d.docs[0], "a", "b")->items[2]));
    assert_int_equal(kobj_bool(kobj_get(d.docs[0], "a", "b")->items[3]), 0);
    kobj_docs_free(&d);
    assert_int_equal(kobj_parse_json("{\"a\":", 5, &d, err, sizeof(err)), -1);
    assert_int_equal(d.n, 0);
    kobj_docs_free(&d);
}

static void test_decode_basics(void **state)
{
    static const char y[] =
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
        "metadata: {name: x, creationTimestamp: \"2024-01-02T03:04:05.5Z\"}\nspec: {}\n";
    struct kobj_docs d;
    struct model_meta *m;
    struct kube_ident id;
    char err[256];
    int64_t sec;
    long nsec;

    (void)state;
    assert_int_equal(kobj_parse_yaml(y, strlen(y), &d, err, sizeof(err)), 0);
    assert_int_equal(kube_decode(d.docs[0], "f.yaml", &m, &id, err, sizeof(err)), 1);
    assert_string_equal(m->ns, "default");
    assert_string_equal(id.object, "default/x");
    assert_true(m->has_created);
    assert_int_equal(m->created_sec, 1704164645);
    assert_int_equal(m->created_nsec, 500000000);
    model_object_free(m);
    kobj_docs_free(&d);
    assert_int_equal(kube_decode_time("2024-01-02T04:04:05+01:00", &sec, &nsec), 0);
    assert_int_equal(sec, 1704164645);
    assert_int_equal(kube_decode_time("2024-01-02 nope", &sec, &nsec), -1);
}

/* strait.dev/proxy-body-size: value syntax and encoding (snapwire's: 0 absent, ~0 "0"). */
static void test_decode_body_size(void **state)
{
    static const struct {
        const char *annotations; /* YAML flow map, or "" for none */
        int rc;
        uint64_t want;
    } rows[] = {
        {"", 1, 0},
        {"{strait.dev/proxy-body-size: \"1k\"}", 1, 1024},
        {"{strait.dev/proxy-body-size: 8K}", 1, 8192},
        {"{strait.dev/proxy-body-size: 10M}", 1, 10u << 20},
        {"{strait.dev/proxy-body-size: \"2g\"}", 1, 2ull << 30},
        {"{strait.dev/proxy-body-size: 2000}", 1, 2000},
        {"{strait.dev/proxy-body-size: \"0\"}", 1, UINT64_MAX},
        {"{strait.dev/proxy-body-size: 0}", 1, UINT64_MAX},
        {"{nginx.ingress.kubernetes.io/proxy-body-size: 1k}", 1, 0}, /* not ours */
        {"{strait.dev/proxy-body-size: \"1.5m\"}", -1, 0},
        {"{strait.dev/proxy-body-size: \"-1\"}", -1, 0},
        {"{strait.dev/proxy-body-size: \"1kb\"}", -1, 0},
        {"{strait.dev/proxy-body-size: \"\"}", -1, 0},
        {"{strait.dev/proxy-body-size: \" 1k\"}", -1, 0},
        {"{strait.dev/proxy-body-size: lots}", -1, 0},
        {"{strait.dev/proxy-body-size: 99999999999999999999}", -1, 0},
        {"{strait.dev/proxy-body-size: null}", -1, 0},
        {"{strait.dev/proxy-body-size: [1k]}", -1, 0},
    };
    char y[512], err[256];
    struct kobj_docs d;
    struct model_meta *m;
    struct kube_ident id;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(y, sizeof(y),
                 "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n"
                 "%s%s\nspec: {}\n",
                 rows[i].annotations[0] ? "  annotations: " : "", rows[i].annotations);
        assert_int_equal(kobj_parse_yaml(y, strlen(y), &d, err, sizeof(err)), 0);
        err[0] = '\0';
        int rc = kube_decode(d.docs[0], "f.yaml", &m, &id, err, sizeof(err));
        if (rc != rows[i].rc) fail_msg("row %zu (%s): rc %d (%s)", i, rows[i].annotations, rc, err);
        if (rc == 1) {
            assert_true(((struct model_ingress *)m)->max_body == rows[i].want);
            model_object_free(m);
        } else {
            assert_non_null(strstr(err, "strait.dev/proxy-body-size"));
            assert_string_equal(id.object, "default/x"); /* the rejection names the Ingress */
        }
        kobj_docs_free(&d);
    }
}

static void test_buffer_kinds_and_lists(void **state)
{
    static const char y[] =
        SVC_YAML("a") "---\napiVersion: apps/v1\nkind: Deployment\n"
                      "metadata: {name: d}\n---\n"
                      "apiVersion: v1\nkind: List\nitems:\n"
                      "- "
                      "apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n"
                      "- apiVersion: networking.k8s.io/v1beta1\n  kind: Ingress\n"
                      "  metadata: {name: old}\n"
                      "- apiVersion: v1\n  kind: Service\n  metadata: {name: c}\n"
                      "  spec: {ports: [{port: 0}]}\n";
    static const char j[] =
        "{\"apiVersion\":\"v1\",\"kind\":\"ServiceList\",\"items\":[{\"apiVersion\":\"v1\","
        "\"kind\":\"Service\",\"metadata\":{\"name\":\"j\",\"namespace\":\"n\"}}]}";
    struct model_cache c;

    (void)state;
    model_cache_init(&c);
    /* a, b kept; Deployment and v1beta1 ignored; c rejected for its port */
    assert_int_equal(filesource_load_buffer("x.yaml", y, strlen(y), &c), 2);
    assert_int_equal(filesource_load_buffer("x.json", j, strlen(j), &c), 1);
    /* the same JSON read as YAML works too (JSON is YAML flow syntax) */
    assert_int_equal(filesource_load_buffer("x.yml", j, strlen(j), &c), 1);
    assert_int_equal(filesource_load_buffer("bad.yaml", "a: [", 4, &c), 0);
    model_cache_seal(&c);
    assert_int_equal(count(&c, MODEL_KIND_SERVICE), 3); /* the duplicate n/j was dropped */
    assert_non_null(model_cache_find(&c, MODEL_KIND_SERVICE, "n", "j"));
    assert_string_equal(model_cache_find(&c, MODEL_KIND_SERVICE, "n", "j")->source, "x.json");
    assert_non_null(model_cache_find(&c, MODEL_KIND_SERVICE, "default", "b"));
    assert_null(model_cache_find(&c, MODEL_KIND_SERVICE, "default", "c"));
    model_cache_free(&c);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

static void test_load_folder(void **state)
{
    char dir[] = "/tmp/strait-fs-XXXXXX", sub[600], path[600], err[256];
    struct model_cache c;
    struct model_meta *m;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/z", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/..data", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_file(dir, "b.yaml", SVC_YAML("dup"));
    write_file(dir, "a.yml", SVC_YAML("dup") "---\n" SVC_YAML("one"));
    write_file(dir, "z/deep.json",
               "{\"apiVersion\":\"v1\",\"kind\":\"Service\","
               "\"metadata\":{\"name\":\"deep\"}}");
    write_file(dir, "..data/hidden.yaml", SVC_YAML("hidden"));
    write_file(dir, "notes.txt", SVC_YAML("txt"));
    write_file(dir, "broken.yaml", "::: [\n");

    assert_int_equal(filesource_load(dir, -1, &c, err, sizeof(err)), 0);
    assert_int_equal(count(&c, MODEL_KIND_SERVICE), 3); /* dup, one, deep */
    assert_non_null(m = model_cache_find(&c, MODEL_KIND_SERVICE, "default", "dup"));
    snprintf(path, sizeof(path), "%s/a.yml", dir); /* first in sorted path order wins */
    assert_string_equal(m->source, path);
    assert_non_null(model_cache_find(&c, MODEL_KIND_SERVICE, "default", "deep"));
    assert_null(model_cache_find(&c, MODEL_KIND_SERVICE, "default", "hidden"));
    model_cache_free(&c);

    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(filesource_load(path, -1, &c, err, sizeof(err)), -1);
    model_cache_free(&c);

    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kobj_yaml_multidoc), cmocka_unit_test(test_kobj_yaml_errors),
        cmocka_unit_test(test_kobj_json),          cmocka_unit_test(test_decode_basics),
        cmocka_unit_test(test_decode_body_size),   cmocka_unit_test(test_buffer_kinds_and_lists),
        cmocka_unit_test(test_load_folder),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
