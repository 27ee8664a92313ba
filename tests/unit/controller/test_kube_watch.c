/*
 * kube_watch's pure parts, without a server: splitting a watch stream into lines at any byte
 * boundary, handling ADDED/MODIFIED/DELETED/BOOKMARK/ERROR (resourceVersion bookkeeping,
 * invalid objects, 410), and a paged relist replacing a kind's content (objects deleted while
 * no watch was open disappear). The HTTP side is covered end to end against the stand-in
 * API server (tests/e2e/test_cluster_mode.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../controller/kube_watch.c"

static unsigned n_changed, n_state;

static void on_changed(void *arg, struct kube_watch *w)
{
    (void)arg;
    (void)w;
    n_changed++;
}

static void on_state(void *arg, struct kube_watch *w)
{
    (void)arg;
    (void)w;
    n_state++;
}

static struct model_cache cache;

static struct kube_watch *new_watch(enum model_kind kind)
{
    static const struct kube_watch_callbacks cb = {on_changed, on_state};
    char err[128];
    struct kube_watch *w;

    model_cache_init(&cache);
    n_changed = n_state = 0;
    w = kube_watch_new(ev_default_loop(0), NULL, &cache, kind, NULL, &cb, NULL, err, sizeof(err));
    assert_non_null(w);
    return w;
}

static void free_watch(struct kube_watch *w)
{
    kube_watch_free(w);
    model_cache_free(&cache);
}

/* A Service event line with one port. */
static char *svc_event(char *buf, size_t n, const char *type, const char *name, const char *rv,
                       int port)
{
    snprintf(buf, n,
             "{\"type\":\"%s\",\"object\":{\"kind\":\"Service\",\"apiVersion\":\"v1\","
             "\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\",\"resourceVersion\":"
             "\"%s\"},\"spec\":{\"ports\":[{\"port\":%d}]}}}\n",
             type, name, rv, port);
    return buf;
}

/* Formats one Service event and feeds it; returns kw_feed's result. */
static int feed(struct kube_watch *w, const char *type, const char *name, const char *rv, int port)
{
    char e[512];

    svc_event(e, sizeof(e), type, name, rv, port);
    return kw_feed(w, e, strlen(e));
}

static long port_of(const char *name)
{
    const struct model_service *s =
        (const struct model_service *)model_cache_find(&cache, MODEL_KIND_SERVICE, "default", name);
    return s ? s->ports[0].port : -1;
}

static void test_split_anywhere(void **state)
{
    char a[512], b[512], stream[1100];
    size_t len, cut, cut2;

    (void)state;
    svc_event(a, sizeof(a), "ADDED", "web", "11", 80);
    svc_event(b, sizeof(b), "MODIFIED", "web", "12", 8080);
    len = (size_t)snprintf(stream, sizeof(stream), "%s%s", a, b);
    /* every pair of split points: three writes of any size, lines straddling them */
    for (cut = 0; cut <= len; cut += 7) {
        for (cut2 = cut; cut2 <= len; cut2 += 13) {
            struct kube_watch *w = new_watch(MODEL_KIND_SERVICE);
            assert_int_equal(kw_feed(w, stream, cut), 0);
            assert_int_equal(kw_feed(w, stream + cut, cut2 - cut), 0);
            assert_int_equal(kw_feed(w, stream + cut2, len - cut2), 0);
            assert_int_equal(port_of("web"), 8080);
            assert_string_equal(w->rv, "12");
            assert_int_equal(w->watch_events, 2);
            assert_int_equal(w->line_len, 0);
            free_watch(w);
        }
    }
}

static void test_partial_line_not_applied(void **state)
{
    struct kube_watch *w = new_watch(MODEL_KIND_SERVICE);
    char a[512];

    (void)state;
    w->rv = strdup("10");
    svc_event(a, sizeof(a), "ADDED", "web", "11", 80);
    assert_int_equal(kw_feed(w, a, strlen(a) - 1), 0); /* no '\n' yet */
    assert_int_equal(port_of("web"), -1);
    assert_string_equal(w->rv, "10"); /* a resumed watch starts before it */
    assert_int_equal(n_changed, 0);
    /* CRLF and blank lines are fine */
    assert_int_equal(kw_feed(w, "\r\n\n", 3), 0);
    assert_int_equal(port_of("web"), 80);
    assert_string_equal(w->rv, "11");
    free_watch(w);
}

static void test_event_types(void **state)
{
    struct kube_watch *w = new_watch(MODEL_KIND_SERVICE);

    (void)state;
    assert_int_equal(feed(w, "ADDED", "a", "5", 80), 0);
    assert_int_equal(feed(w, "ADDED", "b", "6", 81), 0);
    assert_int_equal(cache.kinds[MODEL_KIND_SERVICE].n, 2);
    /* modified replaces */
    assert_int_equal(feed(w, "MODIFIED", "a", "7", 90), 0);
    assert_int_equal(port_of("a"), 90);
    assert_int_equal(cache.kinds[MODEL_KIND_SERVICE].n, 2);
    /* deleted removes; deleting what is not there is harmless */
    assert_int_equal(feed(w, "DELETED", "b", "8", 81), 0);
    assert_int_equal(port_of("b"), -1);
    assert_int_equal(feed(w, "DELETED", "zz", "9", 81), 0);
    assert_string_equal(w->rv, "9");
    assert_int_equal(n_changed, 4); /* the second delete changed nothing */
    /* a bookmark moves the resourceVersion only */
    static const char bm[] =
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Service\",\"apiVersion\":"
        "\"v1\",\"metadata\":{\"resourceVersion\":\"42\"}}}\n";
    assert_int_equal(kw_feed(w, bm, strlen(bm)), 0);
    assert_string_equal(w->rv, "42");
    assert_int_equal(n_changed, 4);
    assert_int_equal(cache.kinds[MODEL_KIND_SERVICE].n, 1);
    /* an object turning invalid leaves the cache (as file mode would drop it), counted */
    assert_int_equal(feed(w, "MODIFIED", "a", "43", 0), 0);
    assert_int_equal(port_of("a"), -1);
    assert_int_equal(kube_watch_rejected(w), 1);
    assert_int_equal(feed(w, "MODIFIED", "a", "44", 80), 0);
    assert_int_equal(kube_watch_rejected(w), 0);
    assert_int_equal(feed(w, "MODIFIED", "a", "45", 0), 0);
    assert_int_equal(feed(w, "DELETED", "a", "46", 0), 0);
    assert_int_equal(kube_watch_rejected(w), 0);
    assert_string_equal(w->rv, "46");
    free_watch(w);
}

static void test_error_events(void **state)
{
    static const char gone[] =
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
        "\"status\":\"Failure\",\"message\":\"too old resource version: 5 (9)\",\"reason\":"
        "\"Expired\",\"code\":410}}\n";
    static const char other[] = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":500,"
                                "\"reason\":\"InternalError\"}}\n";
    struct kube_watch *w = new_watch(MODEL_KIND_SERVICE);
    char e[512];

    (void)state;
    w->rv = strdup("5");
    /* the events after the ERROR in the same write are not applied */
    snprintf(e, sizeof(e), "%s%s", gone, "{\"type\":\"ADDED\"");
    assert_int_equal(kw_feed(w, e, strlen(e)), -1);
    assert_int_equal(w->gone, 1);
    assert_string_equal(w->rv, "5");
    assert_int_equal(w->watch_events, 0);
    free_watch(w);

    w = new_watch(MODEL_KIND_SERVICE);
    assert_int_equal(kw_feed(w, other, strlen(other)), -1);
    assert_int_equal(w->gone, 0);
    assert_int_equal(w->event_error, 500);
    free_watch(w);

    w = new_watch(MODEL_KIND_SERVICE);
    assert_int_equal(kw_feed(w, "not json\n", 9), -1);
    assert_int_equal(w->event_error, -1);
    free_watch(w);

    w = new_watch(MODEL_KIND_SERVICE);
    assert_int_equal(kw_feed(w, "{\"type\":\"ADDED\"}\n", 17), -1); /* no object */
    free_watch(w);
}

static void test_relist_replaces(void **state)
{
    static const char page1[] =
        "{\"kind\":\"ServiceList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"20\","
        "\"continue\":\"tok\"},\"items\":[{\"metadata\":{\"name\":\"kept\",\"namespace\":"
        "\"default\",\"resourceVersion\":\"15\"},\"spec\":{\"ports\":[{\"port\":8080}]}},"
        "{\"metadata\":{\"name\":\"bad\",\"namespace\":\"default\"},\"spec\":{\"ports\":"
        "[{\"port\":0}]}}]}";
    static const char page2[] =
        "{\"kind\":\"ServiceList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"20\"},"
        "\"items\":[{\"metadata\":{\"name\":\"new\",\"namespace\":\"default\"},\"spec\":"
        "{\"ports\":[{\"port\":82}]}}]}";
    struct kube_watch *w = new_watch(MODEL_KIND_SERVICE);
    char err[256];

    (void)state;
    /* state before the gap: gone and kept from a first list / watch */
    assert_int_equal(feed(w, "ADDED", "gone", "3", 80), 0);
    assert_int_equal(feed(w, "ADDED", "kept", "4", 81), 0);
    assert_int_equal(feed(w, "MODIFIED", "a", "5", 0), 0);
    assert_int_equal(kube_watch_rejected(w), 1);
    w->synced = 1;
    n_changed = 0;
    /* page 1: the old content still serves meanwhile */
    assert_int_equal(kw_list_page(w, page1, strlen(page1), err, sizeof(err)), 0);
    assert_string_equal(w->cont, "tok");
    assert_int_equal(port_of("gone"), 80);
    assert_int_equal(n_changed, 0);
    assert_int_equal(kw_list_page(w, page2, strlen(page2), err, sizeof(err)), 0);
    assert_null(w->cont);
    kw_list_finish(w);
    assert_int_equal(n_changed, 1);
    assert_int_equal(port_of("gone"), -1); /* deleted during the gap: noticed */
    assert_int_equal(port_of("kept"), 8080);
    assert_int_equal(port_of("new"), 82);
    assert_int_equal(cache.kinds[MODEL_KIND_SERVICE].n, 2);
    assert_string_equal(w->rv, "20");
    assert_int_equal(kube_watch_rejected(w), 1); /* "bad"; "a" is no longer there */
    assert_int_equal(kw_names_find(&w->rejected, "default/bad"), 0);
    free_watch(w);
}

static void test_first_list_and_bad_pages(void **state)
{
    static const char empty[] =
        "{\"kind\":\"IngressClassList\",\"metadata\":{\"resourceVersion\":\"7\"},\"items\":[]}";
    static const char cls[] =
        "{\"kind\":\"IngressClassList\",\"metadata\":{\"resourceVersion\":\"8\"},\"items\":["
        "{\"metadata\":{\"name\":\"strait\",\"annotations\":{\"ingressclass.kubernetes.io/"
        "is-default-class\":\"true\"}},\"spec\":{\"controller\":\"x\"}}]}";
    struct kube_watch *w = new_watch(MODEL_KIND_INGRESS_CLASS);
    const struct model_ingress_class *ic;
    char err[256];

    (void)state;
    assert_int_equal(kube_watch_synced(w), 0);
    assert_int_equal(kw_list_page(w, "[]", 2, err, sizeof(err)), -1);
    assert_int_equal(kw_list_page(w, "{\"items\":[]}", 12, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "resourceVersion"));
    assert_int_equal(kw_list_page(w, empty, strlen(empty), err, sizeof(err)), 0);
    kw_list_finish(w);
    assert_int_equal(kube_watch_synced(w), 1);
    assert_int_equal(n_state, 1); /* first sync reported */
    assert_int_equal(kw_list_page(w, cls, strlen(cls), err, sizeof(err)), 0);
    kw_list_finish(w);
    assert_int_equal(n_state, 1);
    /* typed-list items carry no kind: the reflector's kind is used */
    ic = (const struct model_ingress_class *)model_cache_find(&cache, MODEL_KIND_INGRESS_CLASS, "",
                                                              "strait");
    assert_non_null(ic);
    assert_int_equal(ic->is_default, 1);
    free_watch(w);
}

static void test_backoff(void **state)
{
    struct kube_watch *w = new_watch(MODEL_KIND_SERVICE);
    double d, prev = 0;
    int i;

    (void)state;
    for (i = 0; i < 12; i++) {
        double base = w->backoff;
        d = kw_backoff(w);
        assert_true(d >= base * 0.75 && d <= base * 1.25);
        assert_true(base >= prev);
        prev = base;
    }
    assert_true(w->backoff == KUBE_WATCH_BACKOFF_MAX);
    free_watch(w);
}

static void test_paths(void **state)
{
    static const struct kube_watch_opts ns = {.ns = "team"};
    char err[128];
    struct kube_watch *w;

    (void)state;
    w = kube_watch_new(ev_default_loop(0), NULL, &cache, MODEL_KIND_SECRET, &ns, NULL, NULL, err,
                       sizeof(err));
    assert_string_equal(w->base, "/api/v1/namespaces/team/secrets");
    kube_watch_free(w);
    /* cluster-scoped kinds ignore the namespace */
    w = kube_watch_new(ev_default_loop(0), NULL, &cache, MODEL_KIND_INGRESS_CLASS, &ns, NULL, NULL,
                       err, sizeof(err));
    assert_string_equal(w->base, "/apis/networking.k8s.io/v1/ingressclasses");
    kube_watch_free(w);
    w = kube_watch_new(ev_default_loop(0), NULL, &cache, MODEL_KIND_ENDPOINT_SLICE, NULL, NULL,
                       NULL, err, sizeof(err));
    assert_string_equal(w->base, "/apis/discovery.k8s.io/v1/endpointslices");
    kube_watch_free(w);
}

/* A 404 on a custom resource's list: the CRD is not installed. */
static void list_404(struct kube_watch *w)
{
    static const char body[] =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"the server could not find the requested resource\",\"reason\":"
        "\"NotFound\",\"details\":{},\"code\":404}";
    struct kube_response r;

    memset(&r, 0, sizeof(r));
    r.status = 404;
    r.body = body;
    r.body_len = strlen(body);
    r.retry_after = -1;
    r.complete = 1;
    r.error = "";
    r.method = "GET";
    r.path = w->base;
    kw_on_list_done(w, &r);
}

static void test_crd_missing(void **state)
{
    static const struct kube_watch_opts opts = {.crd_recheck = 45};
    static const char gw[] =
        "{\"type\":\"ADDED\",\"object\":{\"apiVersion\":\"strait.dev/v1alpha1\",\"kind\":"
        "\"Gateway\",\"metadata\":{\"name\":\"g\",\"namespace\":\"default\",\"generation\":"
        "2,\"resourceVersion\":\"9\"},\"spec\":{\"listeners\":[{\"name\":\"http\",\"port\":80,"
        "\"protocol\":\"HTTP\"}]}}}\n";
    static const char list[] =
        "{\"kind\":\"GatewayList\",\"apiVersion\":\"strait.dev/v1alpha1\",\"metadata\":"
        "{\"resourceVersion\":\"7\"},\"items\":[]}";
    static const struct kube_watch_callbacks cb = {on_changed, on_state};
    const struct model_gateway *g;
    struct kube_watch *w;
    char err[256];

    (void)state;
    model_cache_init(&cache);
    n_changed = n_state = 0;
    w = kube_watch_new(ev_default_loop(0), NULL, &cache, MODEL_KIND_GATEWAY, &opts, &cb, NULL, err,
                       sizeof(err));
    assert_non_null(w);
    assert_string_equal(w->base, "/apis/strait.dev/v1alpha1/gateways");
    /* the first list: 404 makes the kind an empty, synced list, listed again in 45 s */
    list_404(w);
    assert_int_equal(kube_watch_synced(w), 1);
    assert_int_equal(kube_watch_crd_missing(w), 1);
    assert_int_equal(kube_watch_auth_error(w, NULL), 0);
    assert_int_equal(n_state, 1);
    assert_int_equal(n_changed, 1);
    assert_true(ev_is_active(&w->retry));
    assert_true(w->next == KW_NEXT_LIST);
    assert_true(ev_timer_remaining(ev_default_loop(0), &w->retry) > 44. &&
                ev_timer_remaining(ev_default_loop(0), &w->retry) <= 45.);
    /* again: nothing changed, nothing reported */
    list_404(w);
    assert_int_equal(n_changed, 1);
    assert_int_equal(n_state, 1);
    /* the CRD came: a list, then a Gateway from the watch (decoded with its generation) */
    assert_int_equal(kw_list_page(w, list, strlen(list), err, sizeof(err)), 0);
    kw_list_finish(w);
    w->crd_missing = 0;
    assert_int_equal(kw_feed(w, gw, strlen(gw)), 0);
    g = (const struct model_gateway *)model_cache_find(&cache, MODEL_KIND_GATEWAY, "default", "g");
    assert_non_null(g);
    assert_int_equal(g->generation, 2);
    assert_string_equal(w->rv, "9");
    assert_null(g->invalid);
    /* an invalid Gateway is rejected (counted, logged) but kept, for its status */
    {
        static const char bad[] =
            "{\"type\":\"MODIFIED\",\"object\":{\"apiVersion\":\"strait.dev/v1alpha1\","
            "\"kind\":\"Gateway\",\"metadata\":{\"name\":\"g\",\"namespace\":\"default\","
            "\"uid\":\"u-9\",\"generation\":3,\"resourceVersion\":\"10\"},\"spec\":{"
            "\"listeners\":[]}}}\n";
        assert_int_equal(kw_feed(w, bad, strlen(bad)), 0);
        g = (const struct model_gateway *)model_cache_find(&cache, MODEL_KIND_GATEWAY, "default",
                                                           "g");
        assert_non_null(g);
        assert_non_null(g->invalid);
        assert_int_equal(g->generation, 3);
        assert_int_equal(kube_watch_rejected(w), 1);
        assert_int_equal(kw_feed(w, gw, strlen(gw)), 0);
        assert_int_equal(kube_watch_rejected(w), 0);
    }
    /* the CRD went away: its objects go with it */
    list_404(w);
    assert_int_equal(cache.kinds[MODEL_KIND_GATEWAY].n, 0);
    assert_int_equal(kube_watch_crd_missing(w), 1);
    assert_int_equal(kube_watch_synced(w), 1);
    free_watch(w);
    /* a built-in kind's 404 is an ordinary error: not synced */
    w = new_watch(MODEL_KIND_SERVICE);
    list_404(w);
    assert_int_equal(kube_watch_synced(w), 0);
    assert_int_equal(kube_watch_crd_missing(w), 0);
    free_watch(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_anywhere),  cmocka_unit_test(test_partial_line_not_applied),
        cmocka_unit_test(test_event_types),     cmocka_unit_test(test_error_events),
        cmocka_unit_test(test_relist_replaces), cmocka_unit_test(test_first_list_and_bad_pages),
        cmocka_unit_test(test_backoff),         cmocka_unit_test(test_paths),
        cmocka_unit_test(test_crd_missing),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
