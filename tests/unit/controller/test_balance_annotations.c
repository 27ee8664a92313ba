/*
 * The balancing policy annotations (kube_decode's kd_policy, model_policy_resolve) as data
 * tables: every key's good values on a Service and on an Ingress, every bad value refusing
 * the Ingress with a reason naming the key and defaulting on the Service (a problem
 * recorded), the defaults, and an Ingress overriding a Service field by field.
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
#include "snapwire.h"

/* the fields a row checks, read from a resolved policy */
enum pf {
    F_LB = 1,
    F_HASH_ON,
    F_HASH_NAME,
    F_AFFINITY,
    F_COOKIE,
    F_HC_PATH,
    F_HC_HOST,
    F_HC_INTERVAL,
    F_HC_TIMEOUT,
    F_HC_LO,
    F_HC_HI,
    F_HC_HEALTHY,
    F_HC_UNHEALTHY,
    F_OD_CONSECUTIVE,
    F_OD_BASE,
    F_OD_MAX,
    F_OD_PERCENT,
    F_CB_CONN,
    F_CB_PENDING,
    F_CB_REQ,
    F_RB_PERCENT,
    F_RB_MIN,
    F_SLOW_START,
};

static uint32_t num_field(const struct model_policy *p, enum pf f)
{
    switch (f) {
    case F_LB:
        return p->lb;
    case F_HASH_ON:
        return p->hash_on;
    case F_AFFINITY:
        return (uint32_t)p->affinity;
    case F_HC_INTERVAL:
        return p->hc_interval_ms;
    case F_HC_TIMEOUT:
        return p->hc_timeout_ms;
    case F_HC_LO:
        return p->hc_status_lo;
    case F_HC_HI:
        return p->hc_status_hi;
    case F_HC_HEALTHY:
        return p->hc_healthy;
    case F_HC_UNHEALTHY:
        return p->hc_unhealthy;
    case F_OD_CONSECUTIVE:
        return p->od_consecutive;
    case F_OD_BASE:
        return p->od_base_ms;
    case F_OD_MAX:
        return p->od_max_ms;
    case F_OD_PERCENT:
        return p->od_max_percent;
    case F_CB_CONN:
        return p->cb_max_connections;
    case F_CB_PENDING:
        return p->cb_max_pending;
    case F_CB_REQ:
        return p->cb_max_requests;
    case F_RB_PERCENT:
        return p->rb_percent;
    case F_RB_MIN:
        return p->rb_min_per_sec;
    case F_SLOW_START:
        return p->slow_start_ms;
    default:
        fail_msg("not a number field: %d", (int)f);
        return 0;
    }
}

static const char *str_field(const struct model_policy *p, enum pf f)
{
    switch (f) {
    case F_HASH_NAME:
        return p->hash_name;
    case F_COOKIE:
        return p->cookie;
    case F_HC_PATH:
        return p->hc_path;
    case F_HC_HOST:
        return p->hc_host;
    default:
        return NULL;
    }
}

/*
 * Decodes a Service (kind 'S') or an Ingress ('I') whose annotations are the JSON members
 * ann. Returns kube_decode's result; *out and err as it fills them.
 */
static int decode(char kind, const char *ann, struct model_meta **out, char *err, size_t errlen)
{
    char json[8192];
    struct kobj_docs docs = {0};
    struct kube_ident id;
    int rc;

    if (kind == 'S')
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\","
                 "\"namespace\":\"default\",\"annotations\":{%s}},\"spec\":{\"ports\":[{\"name\":"
                 "\"http\",\"port\":80}]}}",
                 ann);
    else
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"Ingress\",\"metadata\":{"
                 "\"name\":\"ing\",\"namespace\":\"default\",\"annotations\":{%s}},\"spec\":{"
                 "\"ingressClassName\":\"strait\",\"defaultBackend\":{\"service\":{\"name\":"
                 "\"web\",\"port\":{\"number\":80}}}}}",
                 ann);
    assert_int_equal(kobj_parse_json(json, strlen(json), &docs, err, errlen), 0);
    assert_int_equal(docs.n, 1);
    *out = NULL;
    rc = kube_decode(docs.docs[0], "test", out, &id, err, errlen);
    kobj_docs_free(&docs);
    return rc;
}

/* hc fields are only filled with a path: rows about them get one */
#define HC "\"strait.dev/health-check-path\":\"/hz\""

struct good_case {
    const char *ann; /* JSON members */
    enum pf field;
    uint32_t want;
    const char *want_s; /* for string fields */
};

static const struct good_case good[] = {
    {"\"strait.dev/load-balance\":\"round_robin\"", F_LB, SNAPWIRE_LB_ROUND_ROBIN, NULL},
    {"\"strait.dev/load-balance\":\"least_request\"", F_LB, SNAPWIRE_LB_LEAST_REQUEST, NULL},
    {"\"strait.dev/load-balance\":\"ewma\"", F_LB, SNAPWIRE_LB_EWMA, NULL},
    {"\"strait.dev/load-balance\":\"ring_hash\"", F_LB, SNAPWIRE_LB_RING_HASH, NULL},
    {"\"strait.dev/load-balance\":\"maglev\"", F_LB, SNAPWIRE_LB_MAGLEV, NULL},
    {"\"strait.dev/hash-by\":\"header:X-User\"", F_LB, SNAPWIRE_LB_RING_HASH, NULL},
    {"\"strait.dev/hash-by\":\"header:X-User\"", F_HASH_NAME, 0, "x-user"},
    {"\"strait.dev/hash-by\":\"cookie:Sid\",\"strait.dev/load-balance\":\"maglev\"", F_HASH_NAME, 0,
     "Sid"},
    {"\"strait.dev/hash-by\":\"source-ip\"", F_HASH_ON, SNAPWIRE_HASH_SOURCE_IP, NULL},
    {"\"strait.dev/hash-by\":\"path\"", F_HASH_ON, SNAPWIRE_HASH_PATH, NULL},
    {"\"strait.dev/affinity\":\"cookie\"", F_COOKIE, 0, "INGRESSCOOKIE"},
    {"\"strait.dev/affinity\":\"cookie\",\"strait.dev/session-cookie-name\":\"route\"", F_COOKIE, 0,
     "route"},
    {"\"strait.dev/affinity\":\"none\",\"strait.dev/session-cookie-name\":\"route\"", F_COOKIE, 0,
     ""},
    {"\"strait.dev/health-check-path\":\"/healthz?full=1\"", F_HC_PATH, 0, "/healthz?full=1"},
    {HC ",\"strait.dev/health-check-interval\":\"1m30s\"", F_HC_INTERVAL, 90000, NULL},
    {HC ",\"strait.dev/health-check-interval\":\"100ms\"", F_HC_INTERVAL, 100, NULL},
    {HC ",\"strait.dev/health-check-interval\":\"1h\"", F_HC_INTERVAL, 3600000, NULL},
    {HC ",\"strait.dev/health-check-interval\":\"500ms\"", F_HC_TIMEOUT, 500, NULL},
    {HC ",\"strait.dev/health-check-timeout\":\"10ms\"", F_HC_TIMEOUT, 10, NULL},
    {HC ",\"strait.dev/health-check-timeout\":\"5s\"", F_HC_TIMEOUT, 5000, NULL},
    {HC ",\"strait.dev/health-check-status\":\"200\"", F_HC_HI, 200, NULL},
    {HC ",\"strait.dev/health-check-status\":\"100-599\"", F_HC_LO, 100, NULL},
    {HC ",\"strait.dev/health-check-status\":\"100-599\"", F_HC_HI, 599, NULL},
    {HC ",\"strait.dev/health-check-healthy-threshold\":\"1\"", F_HC_HEALTHY, 1, NULL},
    {HC ",\"strait.dev/health-check-healthy-threshold\":\"100\"", F_HC_HEALTHY, 100, NULL},
    {HC ",\"strait.dev/health-check-unhealthy-threshold\":\"7\"", F_HC_UNHEALTHY, 7, NULL},
    {HC ",\"strait.dev/health-check-host\":\"Example.COM\"", F_HC_HOST, 0, "example.com"},
    {HC ",\"strait.dev/health-check-host\":\"a.example.com:8443\"", F_HC_HOST, 0,
     "a.example.com:8443"},
    {HC ",\"strait.dev/health-check-host\":\"10.0.0.1:80\"", F_HC_HOST, 0, "10.0.0.1:80"},
    {HC ",\"strait.dev/health-check-host\":\"[::1]:8080\"", F_HC_HOST, 0, "[::1]:8080"},
    {"\"strait.dev/outlier-consecutive-failures\":\"0\"", F_OD_CONSECUTIVE, 0, NULL},
    {"\"strait.dev/outlier-consecutive-failures\":\"1000\"", F_OD_CONSECUTIVE, 1000, NULL},
    /* outlier detection off: its other fields are 0 */
    {"\"strait.dev/outlier-consecutive-failures\":\"0\","
     "\"strait.dev/outlier-base-ejection-time\":\"5s\"",
     F_OD_BASE, 0, NULL},
    {"\"strait.dev/outlier-consecutive-failures\":\"0\"", F_OD_MAX, 0, NULL},
    {"\"strait.dev/outlier-consecutive-failures\":\"0\"", F_OD_PERCENT, 0, NULL},
    {"\"strait.dev/outlier-base-ejection-time\":\"1s\"", F_OD_BASE, 1000, NULL},
    {"\"strait.dev/outlier-base-ejection-time\":\"1h\"", F_OD_BASE, 3600000, NULL},
    /* a base past the default max raises the max */
    {"\"strait.dev/outlier-base-ejection-time\":\"10m\"", F_OD_MAX, 600000, NULL},
    {"\"strait.dev/outlier-max-ejection-time\":\"24h\"", F_OD_MAX, 86400000, NULL},
    {"\"strait.dev/outlier-max-ejection-time\":\"30s\"", F_OD_MAX, 30000, NULL},
    {"\"strait.dev/outlier-max-ejection-percent\":\"0\"", F_OD_PERCENT, 0, NULL},
    {"\"strait.dev/outlier-max-ejection-percent\":\"100\"", F_OD_PERCENT, 100, NULL},
    {"\"strait.dev/max-connections\":\"1000000\"", F_CB_CONN, 1000000, NULL},
    {"\"strait.dev/max-pending-requests\":\"5\"", F_CB_PENDING, 5, NULL},
    {"\"strait.dev/max-requests\":\"0\"", F_CB_REQ, 0, NULL},
    {"\"strait.dev/max-requests\":\"64\"", F_CB_REQ, 64, NULL},
    {"\"strait.dev/retry-budget-percent\":\"1000\"", F_RB_PERCENT, 1000, NULL},
    {"\"strait.dev/retry-budget-percent\":\"0\"", F_RB_PERCENT, 0, NULL},
    {"\"strait.dev/retry-budget-min-per-second\":\"100000\"", F_RB_MIN, 100000, NULL},
    {"\"strait.dev/slow-start\":\"0s\"", F_SLOW_START, 0, NULL},
    {"\"strait.dev/slow-start\":\"1h\"", F_SLOW_START, 3600000, NULL},
    {"\"strait.dev/slow-start\":\"30s\"", F_SLOW_START, 30000, NULL},
};

static int check_field(const char *what, const struct model_policy *p, enum pf f, uint32_t want,
                       const char *want_s)
{
    const char *s = str_field(p, f);

    if (s ? strcmp(s, want_s) : num_field(p, f) != want) {
        if (s)
            print_error("%s: field %d is \"%s\", want \"%s\"\n", what, (int)f, s, want_s);
        else
            print_error("%s: field %d is %u, want %u\n", what, (int)f, num_field(p, f), want);
        return 1;
    }
    return 0;
}

/* Every good value, read the same from a Service and from an Ingress. */
static void test_good_values(void **state)
{
    struct model_meta *m;
    struct model_policy r;
    char err[512];
    size_t i;
    int failed = 0;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const struct good_case *c = &good[i];
        assert_int_equal(decode('S', c->ann, &m, err, sizeof(err)), 1);
        if (((struct model_service *)m)->n_problems) {
            print_error("%s: problem %s\n", c->ann,
                        ((struct model_service *)m)->problems[0].message);
            failed++;
        }
        model_policy_resolve(&((struct model_service *)m)->policy, NULL, &r);
        failed += check_field(c->ann, &r, c->field, c->want, c->want_s);
        model_object_free(m);
        if (decode('I', c->ann, &m, err, sizeof(err)) != 1) {
            print_error("%s: Ingress refused: %s\n", c->ann, err);
            failed++;
            continue;
        }
        model_policy_resolve(NULL, &((struct model_ingress *)m)->policy, &r);
        failed += check_field(c->ann, &r, c->field, c->want, c->want_s);
        model_object_free(m);
    }
    assert_int_equal(failed, 0);
}

struct bad_case {
    const char *key, *value;
    const char *msg; /* in the reason, after "annotation KEY " */
    enum pf field;   /* the Service keeps this default */
    uint32_t def;
    const char *def_s;
};

static const struct bad_case bad[] = {
    {"strait.dev/load-balance", "random",
     "\"random\" is not round_robin, least_request, ewma, ring_hash or maglev", F_LB,
     SNAPWIRE_LB_EWMA, NULL},
    {"strait.dev/load-balance", "EWMA", "is not round_robin", F_LB, SNAPWIRE_LB_EWMA, NULL},
    {"strait.dev/hash-by", "uri", "\"uri\" is not header:NAME, cookie:NAME, source-ip or path",
     F_HASH_ON, SNAPWIRE_HASH_NONE, NULL},
    {"strait.dev/hash-by", "header:", "is not a header name", F_HASH_ON, SNAPWIRE_HASH_NONE, NULL},
    {"strait.dev/hash-by", "cookie:a b", "is not a cookie name", F_HASH_ON, SNAPWIRE_HASH_NONE,
     NULL},
    {"strait.dev/affinity", "ip", "\"ip\" is not \"cookie\" or \"none\"", F_AFFINITY, 0, NULL},
    {"strait.dev/session-cookie-name", "a;b", "\"a;b\" is not a cookie name", F_COOKIE, 0, ""},
    {"strait.dev/health-check-path", "healthz", "\"healthz\" is not a path", F_HC_PATH, 0, ""},
    {"strait.dev/health-check-path", "/a b", "is not a path", F_HC_PATH, 0, ""},
    {"strait.dev/health-check-path", "/\\u00e9", "is not a path", F_HC_PATH, 0, ""},
    {"strait.dev/health-check-interval", "99ms", "\"99ms\" is not a duration from 100ms to 1h",
     F_HC_INTERVAL, 5000, NULL},
    {"strait.dev/health-check-interval", "61m", "is not a duration", F_HC_INTERVAL, 5000, NULL},
    {"strait.dev/health-check-interval", "5", "is not a duration", F_HC_INTERVAL, 5000, NULL},
    {"strait.dev/health-check-timeout", "9ms", "is not a duration from 10ms to the interval",
     F_HC_TIMEOUT, 1000, NULL},
    {"strait.dev/health-check-timeout", "6s", "\"6s\" is longer than the interval (5000ms)",
     F_HC_TIMEOUT, 1000, NULL},
    {"strait.dev/health-check-status", "99", "is not a status", F_HC_LO, 200, NULL},
    {"strait.dev/health-check-status", "600", "is not a status", F_HC_HI, 399, NULL},
    {"strait.dev/health-check-status", "400-200", "is not a status", F_HC_LO, 200, NULL},
    {"strait.dev/health-check-status", "2xx", "is not a status", F_HC_LO, 200, NULL},
    {"strait.dev/health-check-status", "200-", "is not a status", F_HC_LO, 200, NULL},
    {"strait.dev/health-check-healthy-threshold", "0", "\"0\" is not a whole number from 1 to 100",
     F_HC_HEALTHY, 2, NULL},
    {"strait.dev/health-check-unhealthy-threshold", "101", "is not a whole number from 1 to 100",
     F_HC_UNHEALTHY, 3, NULL},
    {"strait.dev/health-check-host", "a_b.com", "\"a_b.com\" is not a host", F_HC_HOST, 0, ""},
    {"strait.dev/health-check-host", "a.com:0", "is not a host", F_HC_HOST, 0, ""},
    {"strait.dev/health-check-host", "a.com:99999", "is not a host", F_HC_HOST, 0, ""},
    {"strait.dev/health-check-host", "[zz]:80", "is not a host", F_HC_HOST, 0, ""},
    {"strait.dev/health-check-host", "", "is not a host", F_HC_HOST, 0, ""},
    {"strait.dev/outlier-consecutive-failures", "1001", "is not a whole number from 0 to 1000",
     F_OD_CONSECUTIVE, 5, NULL},
    {"strait.dev/outlier-consecutive-failures", "-1", "is not a whole number", F_OD_CONSECUTIVE, 5,
     NULL},
    {"strait.dev/outlier-base-ejection-time", "999ms", "is not a duration from 1s to 1h", F_OD_BASE,
     30000, NULL},
    {"strait.dev/outlier-max-ejection-time", "25h",
     "is not a duration from the base ejection time to 24h", F_OD_MAX, 300000, NULL},
    {"strait.dev/outlier-max-ejection-time", "10s",
     "\"10s\" is shorter than the base ejection time (30000ms)", F_OD_MAX, 300000, NULL},
    {"strait.dev/outlier-max-ejection-percent", "101", "is not a whole number from 0 to 100",
     F_OD_PERCENT, 50, NULL},
    {"strait.dev/max-connections", "1000001", "is not a whole number from 0 to 1000000", F_CB_CONN,
     0, NULL},
    {"strait.dev/max-pending-requests", "1e3", "is not a whole number", F_CB_PENDING, 0, NULL},
    {"strait.dev/max-requests", " 5", "is not a whole number", F_CB_REQ, 0, NULL},
    {"strait.dev/retry-budget-percent", "1001", "is not a whole number from 0 to 1000",
     F_RB_PERCENT, 20, NULL},
    {"strait.dev/retry-budget-min-per-second", "100001", "is not a whole number from 0 to 100000",
     F_RB_MIN, 10, NULL},
    {"strait.dev/slow-start", "61m", "is not a duration from 0s (off) to 1h", F_SLOW_START, 0,
     NULL},
    {"strait.dev/slow-start", "on", "is not a duration", F_SLOW_START, 0, NULL},
};

/*
 * Every bad value: the Ingress is refused with "annotation KEY ..."; the Service is decoded,
 * the key recorded as a problem with the same reason, and the field keeps its default.
 */
static void test_bad_values(void **state)
{
    struct model_meta *m;
    struct model_service *svc;
    struct model_policy r;
    char ann[1024], err[512], want[600];
    size_t i;
    int failed = 0;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct bad_case *c = &bad[i];
        /* health-check fields exist only with a path (the path rows test that one alone) */
        snprintf(ann, sizeof(ann), "%s\"%s\":\"%s\"",
                 strcmp(c->key, "strait.dev/health-check-path") ? HC "," : "", c->key, c->value);
        snprintf(want, sizeof(want), "annotation %s ", c->key);
        if (decode('I', ann, &m, err, sizeof(err)) != -1 || strncmp(err, want, strlen(want)) ||
            !strstr(err, c->msg)) {
            print_error("%s=%s: Ingress not refused as expected (%s)\n", c->key, c->value,
                        m ? "accepted" : err);
            if (m) model_object_free(m);
            failed++;
        }
        assert_int_equal(decode('S', ann, &m, err, sizeof(err)), 1);
        svc = (struct model_service *)m;
        if (svc->n_problems != 1 || strcmp(svc->problems[0].key, c->key) ||
            strncmp(svc->problems[0].message, want, strlen(want)) ||
            !strstr(svc->problems[0].message, c->msg)) {
            print_error("%s=%s: Service problems %zu (%s)\n", c->key, c->value, svc->n_problems,
                        svc->n_problems ? svc->problems[0].message : "-");
            failed++;
        }
        model_policy_resolve(&svc->policy, NULL, &r);
        failed += check_field(c->key, &r, c->field, c->def, c->def_s);
        model_object_free(m);
    }
    assert_int_equal(failed, 0);
}

/* No annotation: ewma, no hash, no affinity, no active checks, the SNAPWIRE defaults. */
static void test_defaults(void **state)
{
    struct model_meta *m;
    struct model_policy r;
    char err[256];

    (void)state;
    assert_int_equal(decode('S', "", &m, err, sizeof(err)), 1);
    assert_int_equal(((struct model_service *)m)->policy.set, 0);
    model_policy_resolve(&((struct model_service *)m)->policy, NULL, &r);
    assert_int_equal(r.lb, SNAPWIRE_LB_EWMA);
    assert_int_equal(r.hash_on, SNAPWIRE_HASH_NONE);
    assert_string_equal(r.hash_name, "");
    assert_string_equal(r.cookie, "");
    assert_string_equal(r.hc_path, "");
    assert_string_equal(r.hc_host, "");
    assert_int_equal(r.hc_interval_ms, 0);
    assert_int_equal(r.hc_timeout_ms, 0);
    assert_int_equal(r.hc_status_lo, 0);
    assert_int_equal(r.hc_status_hi, 0);
    assert_int_equal(r.hc_healthy, 0);
    assert_int_equal(r.hc_unhealthy, 0);
    assert_int_equal(r.od_consecutive, SNAPWIRE_OD_CONSECUTIVE_DEFAULT);
    assert_int_equal(r.od_base_ms, SNAPWIRE_OD_BASE_MS_DEFAULT);
    assert_int_equal(r.od_max_ms, SNAPWIRE_OD_MAX_MS_DEFAULT);
    assert_int_equal(r.od_max_percent, SNAPWIRE_OD_MAX_PERCENT_DEFAULT);
    assert_int_equal(r.cb_max_connections, 0);
    assert_int_equal(r.cb_max_pending, 0);
    assert_int_equal(r.cb_max_requests, 0);
    assert_int_equal(r.rb_percent, SNAPWIRE_RB_PERCENT_DEFAULT);
    assert_int_equal(r.rb_min_per_sec, SNAPWIRE_RB_MIN_PER_SEC_DEFAULT);
    assert_int_equal(r.slow_start_ms, 0);
    model_object_free(m);
    /* nothing at all is the same as no policy */
    model_policy_resolve(NULL, NULL, &r);
    assert_int_equal(r.lb, SNAPWIRE_LB_EWMA);
    /* a path alone: the health-check defaults */
    assert_int_equal(decode('S', HC, &m, err, sizeof(err)), 1);
    model_policy_resolve(&((struct model_service *)m)->policy, NULL, &r);
    assert_string_equal(r.hc_path, "/hz");
    assert_string_equal(r.hc_host, "");
    assert_int_equal(r.hc_interval_ms, SNAPWIRE_HC_INTERVAL_MS_DEFAULT);
    assert_int_equal(r.hc_timeout_ms, SNAPWIRE_HC_TIMEOUT_MS_DEFAULT);
    assert_int_equal(r.hc_status_lo, 200);
    assert_int_equal(r.hc_status_hi, 399);
    assert_int_equal(r.hc_healthy, SNAPWIRE_HC_HEALTHY_DEFAULT);
    assert_int_equal(r.hc_unhealthy, SNAPWIRE_HC_UNHEALTHY_DEFAULT);
    model_object_free(m);
}

/* Several bad keys on one Service: each is a problem, the good ones still apply. */
static void test_service_several_problems(void **state)
{
    struct model_meta *m;
    struct model_service *svc;
    struct model_policy r;
    char err[256];

    (void)state;
    assert_int_equal(decode('S',
                            "\"strait.dev/load-balance\":\"nope\",\"strait.dev/max-requests\":"
                            "\"7\",\"strait.dev/slow-start\":\"forever\",\"strait.dev/hash-by\":"
                            "\"path\",\"strait.dev/retry-budget-percent\":\"50\"",
                            &m, err, sizeof(err)),
                     1);
    svc = (struct model_service *)m;
    assert_int_equal(svc->n_problems, 2);
    assert_string_equal(svc->problems[0].key, "strait.dev/load-balance");
    assert_string_equal(svc->problems[1].key, "strait.dev/slow-start");
    model_policy_resolve(&svc->policy, NULL, &r);
    assert_int_equal(r.lb, SNAPWIRE_LB_RING_HASH); /* hash-by alone */
    assert_int_equal(r.hash_on, SNAPWIRE_HASH_PATH);
    assert_int_equal(r.cb_max_requests, 7);
    assert_int_equal(r.rb_percent, 50);
    assert_int_equal(r.slow_start_ms, 0);
    model_object_free(m);
    /* hash-by with a non-hashing algorithm: the Ingress is refused, the Service drops hash-by */
    assert_int_equal(decode('I',
                            "\"strait.dev/hash-by\":\"path\",\"strait.dev/load-balance\":"
                            "\"ewma\"",
                            &m, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "annotation strait.dev/hash-by needs strait.dev/load-balance "
                             "ring_hash or maglev, not \"ewma\"");
    assert_int_equal(decode('S',
                            "\"strait.dev/hash-by\":\"path\",\"strait.dev/load-balance\":"
                            "\"least_request\"",
                            &m, err, sizeof(err)),
                     1);
    svc = (struct model_service *)m;
    assert_int_equal(svc->n_problems, 1);
    assert_string_equal(svc->problems[0].key, "strait.dev/hash-by");
    model_policy_resolve(&svc->policy, NULL, &r);
    assert_int_equal(r.lb, SNAPWIRE_LB_LEAST_REQUEST);
    assert_int_equal(r.hash_on, SNAPWIRE_HASH_NONE);
    model_object_free(m);
}

/* An Ingress overrides its Service field by field. */
static void test_ingress_overrides_service(void **state)
{
    struct model_meta *sm, *im;
    struct model_policy r;
    char err[256];

    (void)state;
    assert_int_equal(decode('S',
                            HC ",\"strait.dev/health-check-interval\":\"10s\","
                               "\"strait.dev/health-check-timeout\":\"4s\","
                               "\"strait.dev/health-check-host\":\"svc.local\","
                               "\"strait.dev/outlier-consecutive-failures\":\"9\","
                               "\"strait.dev/outlier-base-ejection-time\":\"2m\","
                               "\"strait.dev/max-connections\":\"100\","
                               "\"strait.dev/retry-budget-percent\":\"5\","
                               "\"strait.dev/load-balance\":\"maglev\","
                               "\"strait.dev/hash-by\":\"source-ip\","
                               "\"strait.dev/affinity\":\"cookie\","
                               "\"strait.dev/session-cookie-name\":\"svc\"",
                            &sm, err, sizeof(err)),
                     1);
    assert_int_equal(((struct model_service *)sm)->n_problems, 0);
    assert_int_equal(decode('I',
                            "\"strait.dev/health-check-path\":\"/ing\","
                            "\"strait.dev/health-check-interval\":\"2s\","
                            "\"strait.dev/outlier-max-ejection-time\":\"1m\","
                            "\"strait.dev/max-connections\":\"0\","
                            "\"strait.dev/hash-by\":\"header:X-Ing\","
                            "\"strait.dev/session-cookie-name\":\"ing\"",
                            &im, err, sizeof(err)),
                     1);
    model_policy_resolve(&((struct model_service *)sm)->policy,
                         &((struct model_ingress *)im)->policy, &r);
    assert_string_equal(r.hc_path, "/ing");      /* Ingress */
    assert_int_equal(r.hc_interval_ms, 2000);    /* Ingress */
    assert_int_equal(r.hc_timeout_ms, 2000);     /* Service's 4s, cut to the interval */
    assert_string_equal(r.hc_host, "svc.local"); /* Service */
    assert_int_equal(r.od_consecutive, 9);       /* Service */
    assert_int_equal(r.od_base_ms, 120000);      /* Service */
    assert_int_equal(r.od_max_ms, 120000);       /* Ingress's 1m, raised to the base */
    assert_int_equal(r.cb_max_connections, 0);   /* Ingress: back to unlimited */
    assert_int_equal(r.rb_percent, 5);           /* Service */
    assert_int_equal(r.lb, SNAPWIRE_LB_MAGLEV);  /* hash-by alone keeps the Service's maglev */
    assert_int_equal(r.hash_on, SNAPWIRE_HASH_HEADER);
    assert_string_equal(r.hash_name, "x-ing");
    assert_string_equal(r.cookie, "ing"); /* Service's affinity, Ingress's cookie name */
    model_object_free(im);
    /* an Ingress's non-hashing algorithm drops the Service's hash-by; affinity none */
    assert_int_equal(decode('I',
                            "\"strait.dev/load-balance\":\"round_robin\","
                            "\"strait.dev/affinity\":\"none\"",
                            &im, err, sizeof(err)),
                     1);
    model_policy_resolve(&((struct model_service *)sm)->policy,
                         &((struct model_ingress *)im)->policy, &r);
    assert_int_equal(r.lb, SNAPWIRE_LB_ROUND_ROBIN);
    assert_int_equal(r.hash_on, SNAPWIRE_HASH_NONE);
    assert_string_equal(r.hash_name, "");
    assert_string_equal(r.cookie, "");
    assert_string_equal(r.hc_path, "/hz");
    assert_int_equal(r.hc_interval_ms, 10000);
    assert_int_equal(r.hc_timeout_ms, 4000);
    model_object_free(im);
    model_object_free(sm);
}

/* endpoint-weights: Services only, parsed and sorted; bad lists default to no weights. */
static void test_endpoint_weights(void **state)
{
    static const struct {
        const char *value;
        const char *msg; /* NULL: good */
    } wbad[] = {
        {"web-0", "\"web-0\" is not NAME=WEIGHT"}, {"web-0=0", "\"web-0=0\" is not NAME=WEIGHT"},
        {"web-0=10001", "is not NAME=WEIGHT"},     {"web-0=1,", "\"\" is not NAME=WEIGHT"},
        {"Web_0=3", "is not NAME=WEIGHT"},         {"=3", "is not NAME=WEIGHT"},
        {"web-0=x", "is not NAME=WEIGHT"},         {"web-0=2,web-0=3", "names \"web-0\" twice"},
    };
    struct model_meta *m;
    struct model_service *svc;
    char err[512], ann[256];
    size_t i;

    (void)state;
    assert_int_equal(decode('S',
                            "\"strait.dev/endpoint-weights\":\" web-1 = 5 ,10.0.0.7=10000,"
                            "fd00::1=2,web-0=1\"",
                            &m, err, sizeof(err)),
                     1);
    svc = (struct model_service *)m;
    assert_int_equal(svc->n_problems, 0);
    assert_int_equal(svc->n_weights, 4);
    assert_string_equal(svc->weights[0].name, "10.0.0.7");
    assert_int_equal(svc->weights[0].weight, 10000);
    assert_string_equal(svc->weights[1].name, "fd00::1");
    assert_int_equal(svc->weights[1].weight, 2);
    assert_string_equal(svc->weights[2].name, "web-0");
    assert_int_equal(svc->weights[2].weight, 1);
    assert_string_equal(svc->weights[3].name, "web-1");
    assert_int_equal(svc->weights[3].weight, 5);
    model_object_free(m);
    for (i = 0; i < sizeof(wbad) / sizeof(wbad[0]); i++) {
        snprintf(ann, sizeof(ann), "\"strait.dev/endpoint-weights\":\"%s\"", wbad[i].value);
        assert_int_equal(decode('S', ann, &m, err, sizeof(err)), 1);
        svc = (struct model_service *)m;
        if (svc->n_problems != 1 || svc->n_weights ||
            !strstr(svc->problems[0].message, wbad[i].msg)) {
            print_error("%s: problems %zu weights %zu (%s)\n", wbad[i].value, svc->n_problems,
                        svc->n_weights, svc->n_problems ? svc->problems[0].message : "-");
            fail();
        }
        model_object_free(m);
    }
    /* on an Ingress it is refused: it names a Service's endpoints */
    assert_int_equal(
        decode('I', "\"strait.dev/endpoint-weights\":\"web-0=2\"", &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "annotation strait.dev/endpoint-weights is for Services"));
}

/* The "+p=" hash is stable (it names clusters across versions and hosts). */
static void test_resilience_hash(void **state)
{
    struct model_policy a, b;

    (void)state;
    model_policy_resolve(NULL, NULL, &a);
    b = a;
    assert_int_equal(model_policy_resilience_hash(&a), model_policy_resilience_hash(&b));
    assert_true(model_policy_same_resilience(&a, &b));
    b.lb = SNAPWIRE_LB_MAGLEV; /* balancing is not resilience */
    assert_true(model_policy_same_resilience(&a, &b));
    assert_int_equal(model_policy_resilience_hash(&a), model_policy_resilience_hash(&b));
    assert_int_not_equal(model_policy_cmp(&a, &b), 0);
    b.slow_start_ms = 1;
    assert_false(model_policy_same_resilience(&a, &b));
    assert_int_not_equal(model_policy_resilience_hash(&a), model_policy_resilience_hash(&b));
    assert_int_equal(model_policy_resilience_hash(&a), 0xce92a2a2u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_values),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_service_several_problems),
        cmocka_unit_test(test_ingress_overrides_service),
        cmocka_unit_test(test_endpoint_weights),
        cmocka_unit_test(test_resilience_hash),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
