/*
 * status: the pure parts as data tables (address lists, what a Service or an Ingress
 * publishes, normalization and equality, the merge patch), then the writer's decisions with
 * the requests answered by the test (fake_kube.h): an Ingress whose status is already right
 * costs one read the first time and nothing after; a wrong one is written once; failures
 * are retried after a backoff, with a read first; losing leadership cancels everything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "kube_client.h"
#include "fake_kube.h"

#include "../../../controller/status.c"

#define ING_PATH "/apis/networking.k8s.io/v1/namespaces/default/ingresses/"

/* ---- pure part ---- */

static const struct {
    const char *in;
    int ok;
    const char *want; /* status_lb_text */
} address_cases[] = {
    {"203.0.113.7", 1, "203.0.113.7"},
    {"LB.Example.com", 1, "lb.example.com"},
    {"::1", 1, "::1"},
    {"b.example.com, 10.0.0.2,10.0.0.1", 1, "b.example.com,10.0.0.1,10.0.0.2"},
    {"10.0.0.1,10.0.0.1", 1, "10.0.0.1"},
    {"", 0, NULL},
    {"10.0.0.1,,x.com", 0, NULL},
    {"under_score.com", 0, NULL},
    {"-bad.com", 0, NULL},
    {"a..b", 0, NULL},
    {"10.0.0.1,", 0, NULL},
};

static void test_parse_addresses(void **state)
{
    struct status_lb lb;
    char err[256], text[400];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(address_cases) / sizeof(address_cases[0]); i++) {
        int rc = status_parse_addresses(address_cases[i].in, &lb, err, sizeof(err));
        if (address_cases[i].ok != !rc)
            fail_msg("case %zu (%s): rc %d", i, address_cases[i].in, rc);
        if (!rc)
            assert_string_equal(status_lb_text(&lb, text, sizeof(text)), address_cases[i].want);
    }
    /* an IP goes to "ip", a name to "hostname" */
    assert_int_equal(status_parse_addresses("10.0.0.1,a.com", &lb, err, sizeof(err)), 0);
    assert_string_equal(lb.v[0].hostname, "a.com");
    assert_string_equal(lb.v[0].ip, "");
    assert_string_equal(lb.v[1].ip, "10.0.0.1");
}

static const struct {
    const char *json;
    const char *want;
} service_cases[] = {
    {"{\"spec\":{\"clusterIP\":\"10.96.0.5\"},\"status\":{\"loadBalancer\":{\"ingress\":["
     "{\"ip\":\"198.51.100.2\"},{\"hostname\":\"lb.example.com\"},{\"ip\":\"198.51.100.1\"}]}}}",
     "lb.example.com,198.51.100.1,198.51.100.2"},
    {"{\"spec\":{\"clusterIP\":\"10.96.0.5\"},\"status\":{\"loadBalancer\":{}}}", "10.96.0.5"},
    {"{\"spec\":{\"clusterIP\":\"None\"}}", "-"},
    {"{\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"db.example.com\"}}",
     "db.example.com"},
    {"{\"spec\":{\"clusterIP\":\"10.96.0.5\"},\"status\":{\"loadBalancer\":{\"ingress\":["
     "{\"ip\":\"\"}]}}}",
     "10.96.0.5"},
};

static void test_service_addresses(void **state)
{
    struct status_lb lb;
    char err[256], text[400];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(service_cases) / sizeof(service_cases[0]); i++) {
        const char *j = service_cases[i].json;
        assert_int_equal(status_lb_from_service(j, strlen(j), &lb, err, sizeof(err)), 0);
        assert_string_equal(status_lb_text(&lb, text, sizeof(text)), service_cases[i].want);
    }
    assert_int_equal(status_lb_from_service("[1]", 3, &lb, err, sizeof(err)), -1);
    assert_int_equal(status_lb_from_service("{", 1, &lb, err, sizeof(err)), -1);
}

/* The no-op test: the order the API lists addresses in never makes a write. */
static void test_equal_and_patch(void **state)
{
    static const char *ing = "{\"metadata\":{\"name\":\"a\"},\"status\":{\"loadBalancer\":{"
                             "\"ingress\":[{\"ip\":\"203.0.113.7\"},{\"hostname\":\"lb.example."
                             "com\"}]}}}";
    struct status_lb cur, want, other, none;
    char err[256], *body;

    (void)state;
    assert_int_equal(status_lb_from_ingress(ing, strlen(ing), &cur, err, sizeof(err)), 0);
    assert_int_equal(status_parse_addresses("lb.example.com,203.0.113.7", &want, err, sizeof(err)),
                     0);
    assert_true(status_lb_equal(&cur, &want));
    assert_int_equal(status_parse_addresses("203.0.113.7", &other, err, sizeof(err)), 0);
    assert_false(status_lb_equal(&cur, &other));
    assert_int_equal(status_lb_from_ingress("{}", 2, &none, err, sizeof(err)), 0);
    assert_int_equal(none.n, 0);
    assert_false(status_lb_equal(&none, &other));

    body = status_patch_body(&want);
    assert_string_equal(body, "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"hostname\":\"lb."
                              "example.com\"},{\"ip\":\"203.0.113.7\"}]}}}");
    free(body);
    body = status_patch_body(&none);
    assert_string_equal(body, "{\"status\":{\"loadBalancer\":{\"ingress\":null}}}");
    free(body);
}

/* ---- the writer, requests answered by the test ---- */

static const char *ING_OK =
    "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"203.0.113.7\"}]}}}";
static const char *ING_NONE = "{\"status\":{}}";

static struct status *new_writer(const char *addresses, const char *service)
{
    struct status_opts o;
    struct status *s;
    char err[256];

    memset(&o, 0, sizeof(o));
    o.publish_addresses = addresses;
    o.publish_service = service;
    fake_reset();
    s = status_new(EV_DEFAULT, NULL, &o, err, sizeof(err));
    assert_non_null(s);
    return s;
}

static void sync2(struct status *s, const char *a, const char *b)
{
    struct status_target t[2] = {{"default", a, NULL}, {"default", b, NULL}};

    assert_int_equal(status_sync(s, t, b ? 2 : 1), 0);
}

static void test_writer_noop_and_write(void **state)
{
    struct status *s = new_writer("203.0.113.7", NULL);
    struct status_metrics m;
    long i;

    (void)state;
    sync2(s, "right", "wrong");
    assert_int_equal(fake_n, 0); /* a follower sends nothing */
    status_set_leader(s, 1);
    /* unknown status: one read each */
    assert_int_equal(fake_live(), 2);
    assert_true(fake_find("GET", ING_PATH "right") >= 0);
    fake_answer(fake_find("GET", ING_PATH "right"), 200, ING_OK);
    fake_answer(fake_find("GET", ING_PATH "wrong"), 200, ING_NONE);
    /* only the wrong one is written, with a merge patch on /status */
    assert_int_equal(fake_live(), 1);
    i = fake_find("PATCH", ING_PATH "wrong/status");
    assert_true(i >= 0);
    assert_string_equal(fake_reqs[i].ctype, "application/merge-patch+json");
    assert_string_equal(fake_reqs[i].body,
                        "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"203.0.113.7\"}]}}}");
    fake_answer(i, 200, ING_OK);
    status_metrics(&m);
    assert_int_equal(m.writes, 1);
    assert_int_equal(m.pending, 0);

    /* the next builds: same set, nothing at all */
    sync2(s, "right", "wrong");
    sync2(s, "wrong", "right");
    assert_int_equal(fake_live(), 0);
    assert_int_equal(fake_n, 3);

    /* the cache says one was changed behind our back: written again, without a read */
    {
        struct status_lb other;
        char err[256];
        struct status_target t[2] = {{"default", "right", &other}, {"default", "wrong", NULL}};
        assert_int_equal(status_parse_addresses("10.9.9.9", &other, err, sizeof(err)), 0);
        assert_int_equal(status_sync(s, t, 2), 0);
        assert_int_equal(fake_live(), 1);
        assert_true(fake_find("PATCH", ING_PATH "right/status") >= 0);
        fake_answer(fake_find("PATCH", ING_PATH "right/status"), 200, ING_OK);
    }

    /* an Ingress that left the set is forgotten: coming back costs a read again */
    sync2(s, "right", NULL);
    sync2(s, "right", "wrong");
    assert_true(fake_find("GET", ING_PATH "wrong") >= 0);
    fake_answer(fake_find("GET", ING_PATH "wrong"), 200, ING_OK);
    assert_int_equal(fake_live(), 0);
    status_free(s);
    fake_reset();
}

static void test_writer_failures_and_leadership(void **state)
{
    struct status *s = new_writer("203.0.113.7", NULL);
    struct status_metrics m;
    long i;

    (void)state;
    sync2(s, "a", NULL);
    status_set_leader(s, 1);
    fake_answer(fake_find("GET", ING_PATH "a"), 200, ING_NONE);
    /* a conflict: forget what we knew, retry after the backoff, reading first */
    fake_answer(fake_find("PATCH", ING_PATH "a/status"), 409,
                "{\"kind\":\"Status\",\"code\":409,\"reason\":\"Conflict\",\"message\":\"x\"}");
    status_metrics(&m);
    assert_int_equal(m.write_errors, 1);
    assert_int_equal(fake_live(), 0);
    st_pump(s); /* too early */
    assert_int_equal(fake_live(), 0);
    fake_now_v += STATUS_BACKOFF_MIN * 2;
    st_pump(s);
    assert_true(fake_find("GET", ING_PATH "a") >= 0);
    /* 429 with Retry-After: not before it */
    fake_answer_ra(fake_find("GET", ING_PATH "a"), 429, "", 7.);
    fake_now_v += 5;
    st_pump(s);
    assert_int_equal(fake_live(), 0);
    fake_now_v += 3;
    st_pump(s);
    i = fake_find("GET", ING_PATH "a");
    assert_true(i >= 0);
    /* leadership lost: the read in flight is cancelled, nothing more is sent */
    status_set_leader(s, 0);
    assert_int_equal(fake_live(), 0);
    sync2(s, "a", "b");
    assert_int_equal(fake_live(), 0);
    /* and regained: what was known was forgotten, so everything is read again */
    status_set_leader(s, 1);
    assert_int_equal(fake_live(), 2);
    status_free(s);
    fake_reset();
}

static void test_writer_rate_limited(void **state)
{
    struct status_opts o;
    struct status_target t[20];
    char names[20][8], err[256];
    struct status *s;
    size_t k;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.publish_addresses = "203.0.113.7";
    o.qps = 2;
    o.burst = 3;
    fake_reset();
    assert_non_null(s = status_new(EV_DEFAULT, NULL, &o, err, sizeof(err)));
    for (k = 0; k < 20; k++) {
        snprintf(names[k], sizeof(names[k]), "i%02zu", k);
        t[k].ns = "default";
        t[k].name = names[k];
        t[k].current = NULL;
    }
    assert_int_equal(status_sync(s, t, 20), 0);
    status_set_leader(s, 1);
    assert_int_equal(fake_n, 3); /* the burst */
    while (fake_live())
        fake_answer(fake_find("GET", fake_reqs[fake_n - fake_live()].path), 200, ING_OK);
    assert_int_equal(fake_n, 3); /* no token left */
    fake_now_v += 1.0;           /* two more */
    st_pump(s);
    assert_int_equal(fake_n, 5);
    status_free(s);
    fake_reset();
}

static void test_writer_publish_service(void **state)
{
    struct status *s = new_writer(NULL, "default/strait-lb");
    long i;

    (void)state;
    sync2(s, "a", NULL);
    status_set_leader(s, 1);
    /* nothing to publish before the Service was read */
    assert_int_equal(fake_live(), 1);
    i = fake_find("GET", "/api/v1/namespaces/default/services/strait-lb");
    assert_true(i >= 0);
    fake_answer(i, 200, "{\"spec\":{\"clusterIP\":\"10.96.0.9\"}}");
    fake_answer(fake_find("GET", ING_PATH "a"), 200, ING_NONE);
    i = fake_find("PATCH", ING_PATH "a/status");
    assert_true(i >= 0);
    assert_string_equal(fake_reqs[i].body,
                        "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.96.0.9\"}]}}}");
    fake_answer(i, 200, "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"10.96.0.9\"}]}}}");
    /* told the Services changed: read again, but not more than once a second */
    status_service_changed(s);
    assert_int_equal(fake_live(), 0);
    fake_now_v += STATUS_SERVICE_MIN_GAP;
    st_pump(s);
    i = fake_find("GET", "/api/v1/namespaces/default/services/strait-lb");
    assert_true(i >= 0);
    /* gone for a moment: keep publishing what we had */
    fake_answer(i, 404, "{\"kind\":\"Status\",\"code\":404,\"reason\":\"NotFound\"}");
    assert_int_equal(fake_live(), 0);
    assert_non_null(s->desired_canon);
    /* the resync finds the load balancer's address */
    fake_now_v += STATUS_SERVICE_RESYNC;
    st_pump(s);
    i = fake_find("GET", "/api/v1/namespaces/default/services/strait-lb");
    assert_true(i >= 0);
    fake_answer(i, 200,
                "{\"spec\":{\"clusterIP\":\"10.96.0.9\"},\"status\":{\"loadBalancer\":{"
                "\"ingress\":[{\"ip\":\"198.51.100.1\"}]}}}");
    assert_true(fake_find("PATCH", ING_PATH "a/status") >= 0);
    status_free(s);
    fake_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addresses),
        cmocka_unit_test(test_service_addresses),
        cmocka_unit_test(test_equal_and_patch),
        cmocka_unit_test(test_writer_noop_and_write),
        cmocka_unit_test(test_writer_failures_and_leadership),
        cmocka_unit_test(test_writer_rate_limited),
        cmocka_unit_test(test_writer_publish_service),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
