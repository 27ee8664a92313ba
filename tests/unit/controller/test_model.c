/*
 * model's incremental cache operations (put/remove/replace-kind keep a sealed cache sorted
 * and duplicate-free, and free what they drop: ASan checks), and the kube_decode additions
 * cluster mode needs: typed-List items without kind/apiVersion, TLS Secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kobj.h"
#include "kube_decode.h"
#include "log.h"
#include "model.h"

static struct model_meta *svc(const char *ns, const char *name, long port)
{
    struct model_service *s = model_object_new(sizeof(*s), MODEL_KIND_SERVICE);

    assert_non_null(s);
    s->meta.ns = model_strdup(&s->meta, ns);
    s->meta.name = model_strdup(&s->meta, name);
    s->ports = model_alloc(&s->meta, sizeof(*s->ports));
    s->ports[0].name = "";
    s->ports[0].port = port;
    s->n_ports = 1;
    return &s->meta;
}

static void assert_sorted(const struct model_cache *c, enum model_kind k)
{
    size_t i;

    for (i = 1; i < c->kinds[k].n; i++) {
        const struct model_meta *a = c->kinds[k].items[i - 1], *b = c->kinds[k].items[i];
        int r = strcmp(a->ns, b->ns);
        assert_true(r < 0 || (r == 0 && strcmp(a->name, b->name) < 0));
    }
}

static long port_of(const struct model_cache *c, const char *ns, const char *name)
{
    const struct model_service *s =
        (const struct model_service *)model_cache_find(c, MODEL_KIND_SERVICE, ns, name);
    return s ? s->ports[0].port : -1;
}

static void test_put_remove(void **state)
{
    static const char *names[] = {"m", "c", "x", "a", "q", "b", "z", "d"};
    struct model_cache c;
    size_t i;

    (void)state;
    model_cache_init(&c);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(model_cache_put(&c, svc(i % 2 ? "ns1" : "ns0", names[i], 80)), 0);
        assert_sorted(&c, MODEL_KIND_SERVICE);
    }
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 8);
    /* same identity: replaced, old one freed (leak check under ASan) */
    assert_int_equal(model_cache_put(&c, svc("ns1", "c", 8080)), 1);
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 8);
    assert_int_equal(port_of(&c, "ns1", "c"), 8080);
    assert_int_equal(model_cache_remove(&c, MODEL_KIND_SERVICE, "ns1", "c"), 1);
    assert_int_equal(model_cache_remove(&c, MODEL_KIND_SERVICE, "ns1", "c"), 0);
    assert_int_equal(model_cache_remove(&c, MODEL_KIND_INGRESS, "ns0", "m"), 0);
    assert_int_equal(port_of(&c, "ns1", "c"), -1);
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 7);
    assert_sorted(&c, MODEL_KIND_SERVICE);
    /* the first of ns1 and the last of ns0 */
    assert_int_equal(model_cache_remove(&c, MODEL_KIND_SERVICE, "ns1", "a"), 1);
    assert_int_equal(model_cache_remove(&c, MODEL_KIND_SERVICE, "ns0", "z"), 1);
    assert_sorted(&c, MODEL_KIND_SERVICE);
    assert_int_equal(port_of(&c, "ns0", "m"), 80);
    model_cache_free(&c);
}

static void test_replace_kind(void **state)
{
    struct model_cache c, from;

    (void)state;
    model_cache_init(&c);
    model_cache_init(&from);
    model_cache_put(&c, svc("default", "gone", 1));
    model_cache_put(&c, svc("default", "kept", 2));
    model_cache_add(&from, svc("default", "kept", 3));
    model_cache_add(&from, svc("default", "new", 4));
    model_cache_seal(&from);
    model_cache_replace_kind(&c, MODEL_KIND_SERVICE, &from);
    assert_int_equal(from.kinds[MODEL_KIND_SERVICE].n, 0);
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 2);
    assert_int_equal(port_of(&c, "default", "gone"), -1);
    assert_int_equal(port_of(&c, "default", "kept"), 3);
    assert_int_equal(port_of(&c, "default", "new"), 4);
    /* an empty list empties the kind */
    model_cache_replace_kind(&c, MODEL_KIND_SERVICE, &from);
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 0);
    model_cache_free(&from);
    model_cache_free(&c);
}

static int decode_json(const char *json, const char *kind, const char *api, struct model_meta **out,
                       char *err, size_t errlen)
{
    struct kobj_docs docs;
    struct kube_ident id;
    int rc;

    assert_int_equal(kobj_parse_json(json, strlen(json), &docs, err, errlen), 0);
    assert_int_equal(docs.n, 1);
    rc = kube_decode_as(docs.docs[0], kind, api, "api", out, &id, err, errlen);
    kobj_docs_free(&docs);
    return rc;
}

static void test_decode_typed_list_item(void **state)
{
    struct model_meta *m;
    char err[256];

    (void)state;
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"web\",\"namespace\":\"a\"},"
                                 "\"spec\":{\"ports\":[{\"port\":80}]}}",
                                 "Service", "v1", &m, err, sizeof(err)),
                     1);
    assert_int_equal(m->kind, MODEL_KIND_SERVICE);
    assert_string_equal(m->ns, "a");
    assert_string_equal(m->source, "api");
    model_object_free(m);
    /* a document's own kind wins over the default */
    assert_int_equal(decode_json("{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":"
                                 "{\"name\":\"web\"}}",
                                 "Ingress", "networking.k8s.io/v1", &m, err, sizeof(err)),
                     1);
    assert_int_equal(m->kind, MODEL_KIND_SERVICE);
    model_object_free(m);
    /* without a default, no kind is an error */
    assert_int_equal(
        decode_json("{\"metadata\":{\"name\":\"web\"}}", NULL, NULL, &m, err, sizeof(err)), -1);
}

static void test_decode_secret(void **state)
{
    const struct model_secret *s;
    struct model_meta *m;
    char err[256];

    (void)state;
    /* "-----BEGIN X-----\n" and "key" */
    assert_int_equal(decode_json("{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":"
                                 "{\"name\":\"tls\",\"namespace\":\"a\"},\"type\":"
                                 "\"kubernetes.io/tls\",\"data\":{\"tls.crt\":"
                                 "\"LS0tLS1CRUdJTiBYLS0tLS0K\",\"tls.key\":\"a2V5\"}}",
                                 NULL, NULL, &m, err, sizeof(err)),
                     1);
    assert_int_equal(m->kind, MODEL_KIND_SECRET);
    s = (const struct model_secret *)m;
    assert_string_equal(s->type, "kubernetes.io/tls");
    assert_int_equal(s->tls_crt_len, 18);
    assert_memory_equal(s->tls_crt, "-----BEGIN X-----\n", 18);
    assert_int_equal(s->tls_key_len, 3);
    assert_memory_equal(s->tls_key, "key", 3);
    model_object_free(m);
    /* one and two padding characters, a line break inside */
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"p\"},\"type\":\"kubernetes.io/tls\","
                                 "\"data\":{\"tls.crt\":\"YQ==\",\"tls.key\":\"YW\\nI=\"}}",
                                 "Secret", "v1", &m, err, sizeof(err)),
                     1);
    s = (const struct model_secret *)m;
    assert_int_equal(s->tls_crt_len, 1);
    assert_int_equal(s->tls_key_len, 2);
    assert_memory_equal(s->tls_key, "ab", 2);
    model_object_free(m);
    /* stringData, as a manifest file may have it */
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"p\"},\"type\":\"kubernetes.io/tls\","
                                 "\"stringData\":{\"tls.crt\":\"C\",\"tls.key\":\"K\"}}",
                                 "Secret", "v1", &m, err, sizeof(err)),
                     1);
    model_object_free(m);
    /* other types are not kept */
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"p\"},\"data\":{}}", "Secret", "v1", &m,
                                 err, sizeof(err)),
                     0);
    assert_null(m);
    /* bad base64, missing key */
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"p\"},\"type\":\"kubernetes.io/tls\","
                                 "\"data\":{\"tls.crt\":\"Y*==\",\"tls.key\":\"YQ==\"}}",
                                 "Secret", "v1", &m, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "base64"));
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"p\"},\"type\":\"kubernetes.io/tls\","
                                 "\"data\":{\"tls.crt\":\"YQ=\",\"tls.key\":\"YQ==\"}}",
                                 "Secret", "v1", &m, err, sizeof(err)),
                     -1);
    assert_int_equal(decode_json("{\"metadata\":{\"name\":\"p\"},\"type\":\"kubernetes.io/tls\","
                                 "\"data\":{\"tls.crt\":\"YQ==\"}}",
                                 "Secret", "v1", &m, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "tls.key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_remove),
        cmocka_unit_test(test_replace_kind),
        cmocka_unit_test(test_decode_typed_list_item),
        cmocka_unit_test(test_decode_secret),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
