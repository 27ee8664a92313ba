/*
 * status, gwstatus and the writer they share (stwriter): the pure parts as data tables
 * (address lists, what a Service or an Ingress publishes, normalization and equality, the
 * merge patches, Gateway conditions), and the writers' decisions taken apart from their
 * requests: which request an Ingress or a Gateway needs, the backoff and Retry-After, the
 * token bucket, when the publish Service is read. Nothing here sends or answers a request:
 * the writer's requests are tested end to end against the stand-in API server
 * (tests/e2e/test_status_events_api.py, tests/e2e/test_leader_status_events.py).
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

#include "../../../controller/gwstatus.c"
#include "../../../controller/status.c"
#include "../../../controller/stwriter.c"

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

/* ---- the writer's decisions ---- */

static void test_backoff(void **state)
{
    static const double want[] = {0.5, 1, 2, 4, 8, 16, 30, 30};
    struct kube_response r;
    double b = 0;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        b = stwriter_backoff_next(b);
        if (b != want[i]) fail_msg("failure %zu: backoff %g, want %g", i + 1, b, want[i]);
    }
    /* jittered by +-25 %; u = 0.5 is the backoff itself */
    assert_true(stwriter_retry_at(100, 2, 0, 0) == 101.5);
    assert_true(stwriter_retry_at(100, 2, 0, 0.5) == 102);
    assert_true(stwriter_retry_at(100, 2, 0, 0.999) < 102.5);
    /* a longer Retry-After wins, a shorter one changes nothing */
    assert_true(stwriter_retry_at(100, 0.5, 7, 0.5) == 107);
    assert_true(stwriter_retry_at(100, 4, 1, 0.5) == 104);
    assert_true(stwriter_retry_at(100, 4, -1, 0.5) == 104);
    /* only a 429's Retry-After is honoured */
    memset(&r, 0, sizeof(r));
    r.status = 429;
    r.retry_after = 7;
    assert_true(stwriter_retry_after(&r) == 7);
    r.retry_after = -1; /* no header */
    assert_true(stwriter_retry_after(&r) == 0);
    r.status = 500;
    r.retry_after = 7;
    assert_true(stwriter_retry_after(&r) == 0);
    r.status = 409;
    assert_true(stwriter_retry_after(&r) == 0);
}

static struct status *new_writer(const char *addresses, const char *service, double qps,
                                 unsigned burst)
{
    struct status_opts o;
    struct status *s;
    char err[256];

    memset(&o, 0, sizeof(o));
    o.publish_addresses = addresses;
    o.publish_service = service;
    o.qps = qps;
    o.burst = burst;
    /* no client: a writer that never leads never sends anything */
    s = status_new(EV_DEFAULT, NULL, &o, err, sizeof(err));
    assert_non_null(s);
    return s;
}

#define DESIRED "203.0.113.7|;"

static const struct {
    int busy;            /* a request in flight */
    const char *current; /* what is known of its status */
    double next_try;
    enum stwriter_op want;
    double later; /* HUGE_VAL: not set */
} op_cases[] = {
    {0, NULL, 0, STWRITER_GET, HUGE_VAL},           /* unknown: read it */
    {0, "10.0.0.1|;", 0, STWRITER_PATCH, HUGE_VAL}, /* known and not ours: write */
    {0, "", 0, STWRITER_PATCH, HUGE_VAL},           /* known empty */
    {0, DESIRED, 0, STWRITER_NONE, HUGE_VAL},       /* already right: nothing */
    {0, DESIRED, 200, STWRITER_NONE, HUGE_VAL},     /* right, a retry pending does not matter */
    {1, NULL, 0, STWRITER_NONE, HUGE_VAL},          /* one request at a time */
    {1, "10.0.0.1|;", 0, STWRITER_NONE, HUGE_VAL},
    {0, NULL, 150, STWRITER_NONE, 150},         /* a failure's backoff: not before next_try */
    {0, "10.0.0.1|;", 150, STWRITER_NONE, 150}, /* (a failure forgets current: the retry reads) */
    {0, NULL, 100, STWRITER_GET, HUGE_VAL},     /* next_try reached */
};

static void test_entry_op(void **state)
{
    struct status *s = new_writer("203.0.113.7", NULL, 0, 0);
    struct st_entry e;
    size_t i;

    (void)state;
    assert_string_equal(s->desired_canon, DESIRED);
    for (i = 0; i < sizeof(op_cases) / sizeof(op_cases[0]); i++) {
        double later = HUGE_VAL;
        enum stwriter_op op;
        char *body;

        memset(&e, 0, sizeof(e));
        e.base.w = &s->w;
        e.base.req = op_cases[i].busy ? (struct kube_request *)&e : NULL;
        e.current = (char *)op_cases[i].current;
        e.base.next_try = op_cases[i].next_try;
        op = stw_entry_op(&e.base, 100, &later, &body);
        if (op != op_cases[i].want || later != op_cases[i].later)
            fail_msg("case %zu: op %d later %g", i, (int)op, later);
        /* a write sends the published list, nothing else carries a body */
        if (op == STWRITER_PATCH)
            assert_non_null(strstr(body, "\"ip\":\"203.0.113.7\""));
        else
            assert_null(body);
        free(body);
    }
    status_free(s);
}

/* A burst, then qps a second; idle time refills up to the burst only. */
static void test_token_bucket(void **state)
{
    struct status *s = new_writer("203.0.113.7", NULL, 2, 3);
    double t0 = s->w.tokens_at;
    int k, n;

    (void)state;
    for (k = 0, n = 0; k < 10; k++)
        n += stw_take_token(&s->w, t0);
    assert_int_equal(n, 3);
    assert_int_equal(stw_take_token(&s->w, t0 + 0.4), 0);
    assert_int_equal(stw_take_token(&s->w, t0 + 0.5), 1); /* one token per 1/qps */
    assert_int_equal(stw_take_token(&s->w, t0 + 0.5), 0);
    for (k = 0, n = 0; k < 10; k++)
        n += stw_take_token(&s->w, t0 + 1000);
    assert_int_equal(n, 3);
    status_free(s);
    /* the defaults */
    s = new_writer("203.0.113.7", NULL, 0, 0);
    assert_true(s->w.qps == STWRITER_QPS);
    assert_int_equal(s->w.burst, STWRITER_BURST);
    status_free(s);
}

/* When the publish Service is read: at once, then a second after a change, else every
 * STATUS_SERVICE_RESYNC; never while a read is in flight or during a backoff. */
static void test_service_due(void **state)
{
    struct status *s = new_writer(NULL, "default/strait-lb", 0, 0);
    struct status *fixed = new_writer("203.0.113.7", NULL, 0, 0);

    (void)state;
    assert_null(s->desired_canon); /* nothing to publish before the Service was read */
    assert_true(st_service_due(s) == 0);
    s->svc_last = 100;
    assert_true(st_service_due(s) == 100 + STATUS_SERVICE_RESYNC);
    s->svc_dirty = 1;
    assert_true(st_service_due(s) == 100 + STATUS_SERVICE_MIN_GAP);
    s->svc_next = 130; /* backing off */
    assert_true(st_service_due(s) == 130);
    s->svc_req = (struct kube_request *)s; /* in flight */
    assert_true(st_service_due(s) == HUGE_VAL);
    s->svc_req = NULL;
    /* status_service_changed on a follower only marks it */
    s->svc_dirty = 0;
    status_service_changed(s);
    assert_int_equal(s->svc_dirty, 1);
    /* fixed addresses: never read anything */
    assert_true(st_service_due(fixed) == HUGE_VAL);
    assert_non_null(fixed->desired_canon);
    status_free(s);
    status_free(fixed);
}

/* status_sync keeps one entry per Ingress, sorted, and what the cache says of its status. */
static void test_sync_entries(void **state)
{
    struct status *s = new_writer("203.0.113.7", NULL, 0, 0);
    struct status_lb known;
    char err[256];
    struct status_target t[3] = {
        {"default", "b", NULL}, {"default", "a", &known}, {"default", "b", NULL}};

    (void)state;
    assert_int_equal(status_parse_addresses("203.0.113.7", &known, err, sizeof(err)), 0);
    assert_int_equal(status_sync(s, t, 3), 0);
    assert_int_equal(s->w.n, 2);
    assert_string_equal(s->w.e[0]->name, "a");
    assert_string_equal(st_entry_of(s->w.e[0])->current, s->desired_canon); /* nothing to do */
    assert_string_equal(s->w.e[1]->name, "b");
    assert_null(st_entry_of(s->w.e[1])->current);
    /* a follower sends nothing, and counts nothing as pending */
    assert_null(s->w.e[1]->req);
    {
        struct status_metrics m;
        status_metrics(&m);
        assert_int_equal(m.pending, 0);
    }
    /* b leaves, a stays with what was known */
    assert_int_equal(status_sync(s, t + 1, 1), 0);
    assert_int_equal(s->w.n, 1);
    assert_string_equal(s->w.e[0]->name, "a");
    assert_non_null(st_entry_of(s->w.e[0])->current);
    status_free(s);
}

/* ---- Gateway status ---- */

static const char T0[] = "2025-01-01T00:00:00Z", T1[] = "2025-06-01T12:00:00Z";

/* A build's status for default/NAME at generation gen: Accepted True, Programmed (prog),
 * ResolvedRefs False BackendNotFound; one listener "http" with 2 routes. */
static void gw_fill(struct snapbuild_gateway *g, struct snapbuild_gw_listener *l, const char *name,
                    int64_t gen, const char *prog)
{
    memset(g, 0, sizeof(*g));
    memset(l, 0, sizeof(*l));
    g->ns = "default";
    g->name = name;
    g->uid = "u-1";
    g->resource_version = "5";
    g->generation = gen;
    g->conds[0] = (struct snapbuild_condition){"Accepted", "True", "Accepted", "valid"};
    g->conds[1] = (struct snapbuild_condition){"Programmed", prog, "Programmed", "served"};
    g->conds[2] = (struct snapbuild_condition){"ResolvedRefs", "False", "BackendNotFound",
                                               "service \"nope\" not found"};
    l->name = "http";
    l->attached_routes = 2;
    l->conds[0] = (struct snapbuild_condition){"Accepted", "True", "Accepted", ""};
    g->listeners = l;
    g->n_listeners = 1;
}

static void test_gw_from_build_and_patch(void **state)
{
    struct snapbuild_gateway g;
    struct snapbuild_gw_listener l;
    struct gwstatus want, out;
    char *body, *msg, text[200];

    (void)state;
    gw_fill(&g, &l, "g", 3, "True");
    assert_int_equal(gwstatus_from_build(&g, &want), 0);
    assert_int_equal(want.observed_generation, 3);
    assert_int_equal(want.n_conds, 3);
    assert_int_equal(want.n_listeners, 1);
    assert_int_equal(want.listeners[0].n_conds, 1); /* unset conditions are left out */
    assert_string_equal(want.listeners[0].conds[0].last_transition, "");
    assert_int_equal(gwstatus_stamp(&want, NULL, T0, &out), 0);
    body = gwstatus_patch_body(&out);
    assert_string_equal(
        body, "{\"status\":{\"observedGeneration\":3,\"conditions\":["
              "{\"type\":\"Accepted\",\"status\":\"True\",\"observedGeneration\":3,"
              "\"lastTransitionTime\":\"2025-01-01T00:00:00Z\",\"reason\":\"Accepted\","
              "\"message\":\"valid\"},"
              "{\"type\":\"Programmed\",\"status\":\"True\",\"observedGeneration\":3,"
              "\"lastTransitionTime\":\"2025-01-01T00:00:00Z\",\"reason\":\"Programmed\","
              "\"message\":\"served\"},"
              "{\"type\":\"ResolvedRefs\",\"status\":\"False\",\"observedGeneration\":3,"
              "\"lastTransitionTime\":\"2025-01-01T00:00:00Z\",\"reason\":\"BackendNotFound\","
              "\"message\":\"service \\\"nope\\\" not found\"}],"
              "\"listeners\":[{\"name\":\"http\",\"attachedRoutes\":2,\"conditions\":["
              "{\"type\":\"Accepted\",\"status\":\"True\",\"observedGeneration\":3,"
              "\"lastTransitionTime\":\"2025-01-01T00:00:00Z\",\"reason\":\"Accepted\","
              "\"message\":\"\"}]}]}}");
    assert_string_equal(gwstatus_conds_text(&out, text, sizeof(text)),
                        "Accepted:True,Programmed:True,ResolvedRefs:False/BackendNotFound");
    free(body);
    gwstatus_clear(&out);
    /* an AuthorizationPolicy's status (conds_only): the stamp keeps it, no listeners key */
    want.conds_only = 1;
    assert_int_equal(gwstatus_stamp(&want, NULL, T0, &out), 0);
    assert_int_equal(out.conds_only, 1);
    body = gwstatus_patch_body(&out);
    assert_non_null(strstr(body, "\"reason\":\"BackendNotFound\""));
    assert_null(strstr(body, "listeners"));
    assert_string_equal(body + strlen(body) - 3, "]}}");
    free(body);
    gwstatus_clear(&want);
    gwstatus_clear(&out);

    /* what the schema would refuse is made to fit */
    msg = malloc(40001);
    memset(msg, 'a', 40000);
    msg[40000] = '\0';
    msg[GWSTATUS_MAX_MESSAGE - 1] = (char)0xc3; /* "é" across the cut: cut before it */
    msg[GWSTATUS_MAX_MESSAGE] = (char)0xa9;
    g.conds[0] = (struct snapbuild_condition){"Accepted", "Maybe", "not a reason!", msg};
    g.conds[1] = (struct snapbuild_condition){NULL, NULL, NULL, NULL};
    g.conds[2].reason = "";
    g.generation = -4;
    l.attached_routes = 1000;
    assert_int_equal(gwstatus_from_build(&g, &want), 0);
    assert_int_equal(want.n_conds, 2);
    assert_int_equal(want.observed_generation, 0);
    assert_string_equal(want.conds[0].status, "Unknown");
    assert_string_equal(want.conds[0].reason, "Unknown");
    assert_int_equal(strlen(want.conds[0].message), GWSTATUS_MAX_MESSAGE - 1);
    assert_string_equal(want.conds[1].reason, "Unknown");
    assert_int_equal(want.listeners[0].attached_routes, 64);
    gwstatus_clear(&want);
    free(msg);
    assert_true(gws_reason_ok("BackendNotFound"));
    assert_true(gws_reason_ok("A_b:c,d9"));
    assert_false(gws_reason_ok("9Lives"));
    assert_false(gws_reason_ok("Ends,"));
    assert_false(gws_reason_ok(NULL));
}

static void test_gw_stamp_and_read(void **state)
{
    static const char obj[] =
        "{\"apiVersion\":\"strait.dev/v1alpha1\",\"kind\":\"Gateway\",\"metadata\":{\"name\":\"g\","
        "\"uid\":\"u-1\",\"generation\":4},\"status\":{\"observedGeneration\":3,\"conditions\":["
        "{\"type\":\"Accepted\",\"status\":\"True\",\"observedGeneration\":3,"
        "\"lastTransitionTime\":\"2025-01-01T00:00:00Z\",\"reason\":\"Accepted\","
        "\"message\":\"valid\"},"
        "{\"type\":\"Programmed\",\"status\":\"False\",\"observedGeneration\":3,"
        "\"lastTransitionTime\":\"2025-01-01T00:00:00Z\",\"reason\":\"Pending\",\"message\":\"\"}],"
        "\"listeners\":[{\"name\":\"http\",\"attachedRoutes\":2,\"conditions\":[{\"type\":"
        "\"Accepted\",\"status\":\"True\",\"lastTransitionTime\":\"2025-01-01T00:00:00Z\","
        "\"reason\":\"Accepted\",\"message\":\"\"}]}]}}";
    struct snapbuild_gateway g;
    struct snapbuild_gw_listener l;
    struct gwstatus want, prev, out, back;
    char uid[64], err[128], *body, wrapped[4096];

    (void)state;
    assert_int_equal(
        gwstatus_from_object(obj, strlen(obj), &prev, uid, sizeof(uid), err, sizeof(err)), 0);
    assert_string_equal(uid, "u-1");
    assert_int_equal(prev.observed_generation, 3);
    assert_int_equal(prev.n_conds, 2);
    assert_int_equal(prev.listeners[0].conds[0].observed_generation, -1);
    /* generation 4: Accepted stays True (its time is kept), Programmed turns True (now),
     * ResolvedRefs is new (now); the listener's Accepted is unchanged (kept) */
    gw_fill(&g, &l, "g", 4, "True");
    assert_int_equal(gwstatus_from_build(&g, &want), 0);
    assert_int_equal(gwstatus_stamp(&want, &prev, T1, &out), 0);
    assert_string_equal(out.conds[0].last_transition, T0);
    assert_string_equal(out.conds[1].last_transition, T1);
    assert_string_equal(out.conds[2].last_transition, T1);
    assert_string_equal(out.listeners[0].conds[0].last_transition, T0);
    assert_false(gwstatus_equal(&out, &prev));
    /* what we write reads back the same: stamping again changes nothing (no write) */
    body = gwstatus_patch_body(&out);
    snprintf(wrapped, sizeof(wrapped), "{\"metadata\":{\"uid\":\"u-1\"},%s", body + 1);
    assert_int_equal(
        gwstatus_from_object(wrapped, strlen(wrapped), &back, uid, sizeof(uid), err, sizeof(err)),
        0);
    assert_true(gwstatus_equal(&out, &back));
    gwstatus_clear(&out);
    assert_int_equal(gwstatus_stamp(&want, &back, "2030-01-01T00:00:00Z", &out), 0);
    assert_true(gwstatus_equal(&out, &back));
    free(body);
    gwstatus_clear(&want);
    gwstatus_clear(&out);
    gwstatus_clear(&back);
    gwstatus_clear(&prev);
    /* no status at all; not JSON */
    assert_int_equal(gwstatus_from_object("{}", 2, &prev, uid, sizeof(uid), err, sizeof(err)), 0);
    assert_int_equal(prev.observed_generation, -1);
    assert_int_equal(prev.n_conds + prev.n_listeners, 0);
    gwstatus_clear(&prev);
    assert_int_equal(gwstatus_from_object("[", 1, &prev, uid, sizeof(uid), err, sizeof(err)), -1);
    gwstatus_clear(&prev);
}

/* A Gateway writer's entry i. */
#define GWE(s, i) gws_entry_of((s)->w.e[i])

static void test_gw_writer_decisions(void **state)
{
    struct ev_loop *loop = ev_default_loop(0);
    struct gwstatus_writer *s = gwstatus_writer_new(loop, NULL, 0, 0);
    struct snapbuild_gateway g[2];
    struct snapbuild_gw_listener l[2];
    struct gwstatus_metrics m;
    double later = 0, now = ev_now(loop);
    char *body;

    (void)state;
    gw_fill(&g[0], &l[0], "b", 1, "True");
    gw_fill(&g[1], &l[1], "a", 1, "False");
    assert_int_equal(gwstatus_writer_sync(s, g, 2), 0);
    assert_int_equal(s->w.n, 2);
    assert_string_equal(s->w.e[0]->name, "a"); /* sorted */
    assert_string_equal(GWE(s, 1)->uid, "u-1");
    /* unknown status: read it first */
    assert_int_equal(stw_entry_op(s->w.e[0], now, &later, &body), STWRITER_GET);
    assert_null(body);
    /* known and equal to the build's: nothing to do, and that is remembered */
    GWE(s, 0)->current = calloc(1, sizeof(*GWE(s, 0)->current));
    assert_int_equal(gwstatus_stamp(&GWE(s, 0)->want, NULL, T0, GWE(s, 0)->current), 0);
    assert_int_equal(stw_entry_op(s->w.e[0], now, &later, &body), STWRITER_NONE);
    assert_int_equal(GWE(s, 0)->clean, 1);
    /* a new generation: a patch, the unchanged conditions keep their time */
    gw_fill(&g[1], &l[1], "a", 2, "False");
    assert_int_equal(gwstatus_writer_sync(s, g, 2), 0);
    assert_int_equal(GWE(s, 0)->clean, 0);
    assert_non_null(GWE(s, 0)->current); /* what was known is kept */
    assert_int_equal(stw_entry_op(s->w.e[0], now, &later, &body), STWRITER_PATCH);
    assert_non_null(strstr(body, "\"observedGeneration\":2"));
    assert_non_null(strstr(body, T0));
    free(body);
    /* backoff: not before its retry time */
    s->w.e[0]->next_try = now + 5;
    later = 0;
    assert_int_equal(stw_entry_op(s->w.e[0], now, &later, &body), STWRITER_NONE);
    assert_true(later == now + 5);
    s->w.e[0]->next_try = 0;
    /* the same name with another uid: another object, read afresh */
    g[1].uid = "u-2";
    assert_int_equal(gwstatus_writer_sync(s, g, 2), 0);
    assert_null(GWE(s, 0)->current);
    assert_string_equal(GWE(s, 0)->uid, "u-2");
    assert_string_equal(s->w.e[0]->name, "a");
    /* a follower counts nothing as pending */
    gwstatus_metrics(&m);
    assert_int_equal(m.enabled, 1);
    assert_int_equal(m.pending, 0);
    /* b leaves */
    assert_int_equal(gwstatus_writer_sync(s, g + 1, 1), 0);
    assert_int_equal(s->w.n, 1);
    assert_string_equal(s->w.e[0]->name, "a");
    assert_int_equal(gwstatus_writer_sync(s, NULL, 0), 0);
    assert_int_equal(s->w.n, 0);
    gwstatus_writer_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addresses),
        cmocka_unit_test(test_service_addresses),
        cmocka_unit_test(test_equal_and_patch),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_entry_op),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_service_due),
        cmocka_unit_test(test_sync_entries),
        cmocka_unit_test(test_gw_from_build_and_patch),
        cmocka_unit_test(test_gw_stamp_and_read),
        cmocka_unit_test(test_gw_writer_decisions),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
