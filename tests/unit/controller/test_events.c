/*
 * events: the deduplication rule as a table, the decoder-reason mapping, and the recorder's
 * decisions taken apart from its requests: retry delays and giving up, what an answer means,
 * Event names and bodies, forgetting after the TTL and the key cap. Nothing here sends or
 * answers a request: the recorder's writes are tested end to end against the stand-in API
 * server (tests/e2e/test_status_events_api.py, tests/e2e/test_leader_status_events.py).
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

#include "../../../controller/events.c"

static const struct {
    int created, busy;
    double last, now;
    enum events_action want;
} decide_cases[] = {
    {0, 0, 0, 5, EVENTS_CREATE},    /* first occurrence */
    {0, 1, 0, 5, EVENTS_SKIP},      /* its create is in flight */
    {1, 0, 100, 101, EVENTS_SKIP},  /* a repeat right after */
    {1, 0, 100, 699, EVENTS_SKIP},  /* still within the interval */
    {1, 0, 100, 700, EVENTS_PATCH}, /* once the interval passed */
    {1, 1, 100, 900, EVENTS_SKIP},  /* but not while a write is in flight */
};

static void test_decide(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++)
        if (events_decide(decide_cases[i].created, decide_cases[i].busy, decide_cases[i].last,
                          decide_cases[i].now, 600.) != decide_cases[i].want)
            fail_msg("decide case %zu", i);
}

static void test_reasons_and_time(void **state)
{
    char t[40];

    (void)state;
    assert_string_equal(events_reason_for_decode("spec.rules[0].http.paths[0]: path \"x\" must "
                                                 "start with '/'"),
                        "InvalidPath");
    assert_string_equal(events_reason_for_decode("spec.rules[0].http.paths[1]: pathType is "
                                                 "missing"),
                        "InvalidPath");
    assert_string_equal(events_reason_for_decode("spec.rules[0].http.paths[0]: unsupported "
                                                 "pathType \"Regex\""),
                        "InvalidPath");
    /* "paths" in the location of a backend error is not a path error */
    assert_string_equal(events_reason_for_decode("spec.rules[0].http.paths[0]: backend.service is "
                                                 "missing"),
                        "Rejected");
    assert_string_equal(events_reason_for_decode(NULL), "Rejected");
    events_format_time(86400. + 3723.9, t, sizeof(t));
    assert_string_equal(t, "1970-01-02T01:02:03Z");
}

static void test_retry_delay(void **state)
{
    (void)state;
    /* 0.5 s doubled per failure: 1, 2, 4, 8; the fifth failure drops the write */
    assert_true(ev_retry_delay(1, 0) == 1.0);
    assert_true(ev_retry_delay(2, 0) == 2.0);
    assert_true(ev_retry_delay(3, -1) == 4.0);
    assert_true(ev_retry_delay(4, 0) == 8.0);
    assert_true(ev_retry_delay(EVENTS_MAX_TRIES, 0) < 0);
    assert_true(ev_retry_delay(EVENTS_MAX_TRIES + 1, 0) < 0);
    /* a longer Retry-After wins, a shorter one changes nothing */
    assert_true(ev_retry_delay(1, 3) == 3.0);
    assert_true(ev_retry_delay(3, 3) == 4.0);
    assert_true(ev_retry_delay(EVENTS_MAX_TRIES, 3) < 0);
}

static const struct {
    enum events_action a;
    long status;
    enum ev_outcome want;
} outcome_cases[] = {
    {EVENTS_CREATE, 201, EV_WRITTEN}, /* created */
    {EVENTS_PATCH, 200, EV_WRITTEN},  /* count bumped */
    {EVENTS_PATCH, 404, EV_EXPIRED},  /* the Event expired: a new one carries the count on */
    {EVENTS_CREATE, 404, EV_FAILED},  /* e.g. the namespace is gone */
    {EVENTS_CREATE, 200, EV_FAILED},  /* not what a create answers */
    {EVENTS_CREATE, 409, EV_FAILED},  /* AlreadyExists: the name is taken */
    {EVENTS_CREATE, 429, EV_FAILED},  /* retried, after Retry-After */
    {EVENTS_CREATE, 500, EV_FAILED},  /* retried */
    {EVENTS_CREATE, 0, EV_FAILED},    /* no answer */
    {EVENTS_PATCH, 201, EV_FAILED},   /* not what a patch answers */
    {EVENTS_PATCH, 409, EV_FAILED},   /* conflict */
    {EVENTS_PATCH, 500, EV_FAILED},   /* retried */
};

static void test_outcome(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(outcome_cases) / sizeof(outcome_cases[0]); i++)
        if (ev_outcome_of(outcome_cases[i].a, outcome_cases[i].status) != outcome_cases[i].want)
            fail_msg("outcome case %zu", i);
}

static void test_event_name(void **state)
{
    char name[256], longer[400];

    (void)state;
    ev_event_name("broken", 1.5, name, sizeof(name));
    assert_string_equal(name, "broken.59682f00"); /* 1.5e9 ns */
    ev_event_name("broken", 1700000000.25, name, sizeof(name));
    assert_string_equal(name, "broken.17979cfe4510b200");
    /* a long object name is cut so the Event's name stays a valid one */
    memset(longer, 'a', 300);
    longer[300] = '\0';
    ev_event_name(longer, 1700000000.25, name, sizeof(name));
    assert_true(strlen(name) <= 253);
    assert_string_equal(name + 236, ".17979cfe4510b200");
}

/* A recorder without a client: it never leads here, so it never sends anything. */
static struct events *new_recorder(void)
{
    struct events_opts o;
    struct events *ev;
    char err[256];

    memset(&o, 0, sizeof(o));
    o.instance = "replica-a";
    o.host = "node-1";
    ev = events_new(EV_DEFAULT, NULL, &o, err, sizeof(err));
    assert_non_null(ev);
    return ev;
}

static const struct events_item ITEM_A = {"Ingress",
                                          "default",
                                          "broken",
                                          "u-1",
                                          "7",
                                          "BackendNotFound",
                                          "service default/nosuch not found"};
static const struct events_item ITEM_B = {"Ingress",
                                          "default",
                                          "broken",
                                          "u-1",
                                          "7",
                                          "PortNotFound",
                                          "service default/web has no port 81"};

static void report(struct events *ev, const struct events_item *a, const struct events_item *b)
{
    struct events_item items[2];
    size_t n = 0;

    memset(items, 0, sizeof(items));

    if (a) items[n++] = *a;
    if (b) items[n++] = *b;
    assert_int_equal(events_report(ev, items, n), 0);
}

static struct ev_entry *entry_of(struct events *ev, const struct events_item *it)
{
    const char *f[EK_N];
    int found;
    size_t i;

    ev_item_fields(it, f);
    i = ev_find(ev, f, &found);
    assert_true(found);
    return ev->e[i];
}

/* The POST and PATCH bodies, as the API gets them. */
static void test_bodies(void **state)
{
    static const struct events_item cls = {
        "IngressClass", "", "strait", NULL, NULL, "Rejected", "bad \"controller\""};
    struct events *ev = new_recorder();
    struct ev_entry *e;
    char *body;

    (void)state;
    report(ev, &ITEM_A, &cls);
    e = entry_of(ev, &ITEM_A);
    snprintf(e->w_name, sizeof(e->w_name), "broken.17979cfe4510b200");
    e->w_count = 1;
    e->w_first = e->w_last = 86400. + 3723.9;
    body = ev_create_body(ev, e);
    assert_string_equal(
        body,
        "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"name\":\"broken."
        "17979cfe4510b200\",\"namespace\":\"default\"},\"involvedObject\":{\"apiVersion\":"
        "\"networking.k8s.io/v1\",\"kind\":\"Ingress\",\"namespace\":\"default\",\"name\":"
        "\"broken\",\"uid\":\"u-1\",\"resourceVersion\":\"7\"},\"reason\":\"BackendNotFound\","
        "\"message\":\"service default/nosuch not found\",\"type\":\"Warning\",\"count\":1,"
        "\"firstTimestamp\":\"1970-01-02T01:02:03Z\",\"lastTimestamp\":\"1970-01-02T01:02:03Z\","
        "\"source\":{\"component\":\"strait-controller\",\"host\":\"node-1\"},"
        "\"reportingComponent\":\"strait-controller\",\"reportingInstance\":\"replica-a\"}");
    free(body);
    e->w_count = 2;
    e->w_last = 86400. * 2;
    body = ev_patch_body(e);
    assert_string_equal(body, "{\"count\":2,\"lastTimestamp\":\"1970-01-03T00:00:00Z\","
                              "\"message\":\"service default/nosuch not found\"}");
    free(body);
    /* a cluster-scoped object: the Event goes to "default", involvedObject has no namespace */
    e = entry_of(ev, &cls);
    snprintf(e->w_name, sizeof(e->w_name), "strait.1");
    e->w_count = 1;
    e->w_first = e->w_last = 0;
    body = ev_create_body(ev, e);
    assert_non_null(strstr(body, "\"metadata\":{\"name\":\"strait.1\",\"namespace\":\"default\"}"));
    assert_non_null(strstr(body, "\"involvedObject\":{\"apiVersion\":\"networking.k8s.io/v1\","
                                 "\"kind\":\"IngressClass\",\"name\":\"strait\"}"));
    assert_non_null(strstr(body, "\"message\":\"bad \\\"controller\\\"\""));
    free(body);
    events_free(ev);
}

/* Keys and their table: one per (object, reason, message), the newest resourceVersion kept,
 * forgotten once nobody reported them for the TTL. */
static void test_keys_and_ttl(void **state)
{
    struct events_item newer = ITEM_A;
    struct events *ev = new_recorder();
    double now = ev_now(EV_DEFAULT);

    (void)state;
    report(ev, &ITEM_A, &ITEM_A); /* the same key twice in one report */
    assert_int_equal(ev->n, 1);
    report(ev, &ITEM_A, &ITEM_B);
    assert_int_equal(ev->n, 2);
    newer.resource_version = "9";
    report(ev, &newer, &ITEM_B);
    assert_int_equal(ev->n, 2);
    assert_string_equal(entry_of(ev, &ITEM_A)->f[EK_RV], "9");
    /* nothing was written: a follower only remembers */
    assert_int_equal(ev->inflight, 0);
    assert_int_equal(entry_of(ev, &ITEM_A)->want, EVENTS_SKIP);
    /* a key of the latest report is never forgotten, whatever the time */
    ev_expire(ev, now + 10 * EVENTS_TTL);
    assert_int_equal(ev->n, 2);
    /* B is no longer reported: kept for the TTL, then forgotten */
    report(ev, &ITEM_A, NULL);
    ev_expire(ev, now + EVENTS_TTL - 1);
    assert_int_equal(ev->n, 2);
    ev_expire(ev, now + EVENTS_TTL);
    assert_int_equal(ev->n, 1);
    assert_string_equal(ev->e[0]->f[EK_REASON], "BackendNotFound");
    report(ev, NULL, NULL);
    ev_expire(ev, now + EVENTS_TTL);
    assert_int_equal(ev->n, 0);
    events_free(ev);
}

/* The cap drops stale keys only: the current set is always remembered. */
static void test_key_cap(void **state)
{
    size_t n = EVENTS_MAX_KEYS + 10, k;
    struct events_item *items = calloc(n, sizeof(*items));
    char(*names)[16] = calloc(n, sizeof(*names));
    struct events *ev = new_recorder();

    (void)state;
    assert_non_null(items);
    assert_non_null(names);
    for (k = 0; k < n; k++) {
        items[k] = ITEM_A;
        snprintf(names[k], sizeof(names[k]), "ing-%05zu", k);
        items[k].name = names[k];
    }
    assert_int_equal(events_report(ev, items, n), 0);
    assert_int_equal(ev->n, n);
    assert_int_equal(events_report(ev, items, 100), 0);
    assert_int_equal(ev->n, EVENTS_MAX_KEYS);
    /* every key of the current report is still there */
    for (k = 0; k < 100; k++) {
        const char *f[EK_N];
        int found;
        ev_item_fields(&items[k], f);
        ev_find(ev, f, &found);
        assert_true(found);
    }
    events_free(ev);
    free(items);
    free(names);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),       cmocka_unit_test(test_reasons_and_time),
        cmocka_unit_test(test_retry_delay),  cmocka_unit_test(test_outcome),
        cmocka_unit_test(test_event_name),   cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_keys_and_ttl), cmocka_unit_test(test_key_cap),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
