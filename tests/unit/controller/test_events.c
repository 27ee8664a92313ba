/*
 * events: the deduplication rule as a table, the decoder-reason mapping, then the recorder
 * with its requests answered by the test (fake_kube.h) and the loop clock moved by hand:
 * one Event per (object, reason, message), nothing on repeats within the repeat interval,
 * a count bump after it, a new Event carrying the count on when the old one expired, retries
 * with backoff, forgetting after the TTL, and nothing written while not leading.
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

#include "../../../controller/events.c"

#define EV_PATH "/api/v1/namespaces/default/events"

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

static struct events *new_recorder(void)
{
    struct events_opts o;
    struct events *ev;
    char err[256];

    memset(&o, 0, sizeof(o));
    o.instance = "replica-a";
    o.host = "node-1";
    fake_reset();
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

/* The name of the Event a POST created (from its body). */
static void created_name(long i, char *out, size_t n)
{
    const char *p = strstr(fake_reqs[i].body, "\"name\":\"broken.");

    assert_non_null(p);
    p += strlen("\"name\":\"");
    snprintf(out, n, "%.*s", (int)strcspn(p, "\""), p);
}

static void test_dedup(void **state)
{
    struct events *ev = new_recorder();
    struct events_metrics m0, m;
    char name[300], path[400];
    long i;

    (void)state;
    events_metrics(&m0);
    /* a follower remembers, writes nothing */
    report(ev, &ITEM_A, NULL);
    assert_int_equal(fake_n, 0);
    /* becoming leader writes what the last build reported */
    events_set_leader(ev, 1);
    i = fake_find("POST", EV_PATH);
    assert_true(i >= 0);
    assert_non_null(strstr(fake_reqs[i].body, "\"involvedObject\":{\"apiVersion\":\"networking."
                                              "k8s.io/v1\",\"kind\":\"Ingress\",\"namespace\":"
                                              "\"default\",\"name\":\"broken\",\"uid\":\"u-1\","
                                              "\"resourceVersion\":\"7\"}"));
    assert_non_null(strstr(fake_reqs[i].body, "\"reason\":\"BackendNotFound\",\"message\":"
                                              "\"service default/nosuch not found\",\"type\":"
                                              "\"Warning\",\"count\":1"));
    assert_non_null(strstr(fake_reqs[i].body, "\"source\":{\"component\":\"strait-controller\","
                                              "\"host\":\"node-1\"}"));
    assert_non_null(strstr(fake_reqs[i].body, "\"reportingInstance\":\"replica-a\""));
    created_name(i, name, sizeof(name));
    /* a rebuild while the create is in flight: nothing more */
    report(ev, &ITEM_A, NULL);
    assert_int_equal(fake_n, 1);
    fake_answer(i, 201, "{}");

    /* rebuilds: the same key is not written again; a new key is */
    fake_now_v += 1;
    report(ev, &ITEM_A, NULL);
    report(ev, &ITEM_A, &ITEM_B);
    assert_int_equal(fake_n, 2);
    assert_non_null(strstr(fake_reqs[1].body, "\"reason\":\"PortNotFound\""));
    fake_answer(1, 201, "{}");
    report(ev, &ITEM_B, &ITEM_A);
    assert_int_equal(fake_live(), 0);
    events_metrics(&m);
    assert_int_equal(m.created - m0.created, 2);
    assert_true(m.suppressed - m0.suppressed >= 3);

    /* once the repeat interval passed, the next occurrence bumps count and lastTimestamp */
    fake_now_v += EVENTS_REPEAT;
    report(ev, &ITEM_A, NULL);
    snprintf(path, sizeof(path), EV_PATH "/%s", name);
    i = fake_find("PATCH", path);
    assert_true(i >= 0);
    assert_string_equal(fake_reqs[i].ctype, "application/merge-patch+json");
    assert_non_null(strstr(fake_reqs[i].body, "{\"count\":2,\"lastTimestamp\":\""));
    fake_answer(i, 200, "{}");
    report(ev, &ITEM_A, NULL);
    assert_int_equal(fake_live(), 0);

    /* the Event expired on the server: a new one, count carried on */
    fake_now_v += EVENTS_REPEAT;
    report(ev, &ITEM_A, NULL);
    fake_answer(fake_find("PATCH", path), 404, "{\"kind\":\"Status\",\"code\":404}");
    i = fake_find("POST", EV_PATH);
    assert_true(i >= 0);
    assert_non_null(strstr(fake_reqs[i].body, "\"count\":3"));
    fake_answer(i, 201, "{}");
    events_metrics(&m);
    assert_int_equal(m.updated - m0.updated, 1);
    assert_int_equal(m.created - m0.created, 3);
    events_free(ev);
    fake_reset();
}

static void test_retry_ttl_leadership(void **state)
{
    struct events *ev = new_recorder();
    int k;

    (void)state;
    events_set_leader(ev, 1);
    report(ev, &ITEM_A, NULL);
    /* failures are retried with backoff, then given up */
    for (k = 1; k < EVENTS_MAX_TRIES; k++) {
        fake_answer(fake_find("POST", EV_PATH), 500, "{\"kind\":\"Status\",\"code\":500}");
        assert_int_equal(fake_live(), 0);
        ev_pump(ev);
        assert_int_equal(fake_live(), 0); /* not yet */
        fake_now_v += EVENTS_BACKOFF * (double)(1u << k);
        ev_pump(ev);
        assert_int_equal(fake_live(), 1);
    }
    fake_answer(fake_find("POST", EV_PATH), 500, "{}");
    fake_now_v += 3600;
    ev_pump(ev);
    assert_int_equal(fake_live(), 0); /* dropped */
    /* the next build tries again: never created */
    report(ev, &ITEM_A, NULL);
    assert_int_equal(fake_live(), 1);
    /* losing leadership cancels the write in flight */
    events_set_leader(ev, 0);
    assert_int_equal(fake_live(), 0);
    report(ev, &ITEM_A, NULL);
    assert_int_equal(fake_live(), 0);
    /* a key nobody reported for the TTL is forgotten */
    report(ev, NULL, NULL);
    assert_int_equal(ev->n, 1);
    fake_now_v += EVENTS_TTL;
    report(ev, NULL, NULL);
    assert_int_equal(ev->n, 0);
    events_free(ev);
    fake_reset();
}

/* Many keys at once: the bucket lets a burst through, then about EVENTS_QPS a second. */
static void test_rate_limit(void **state)
{
    struct events_item items[40];
    char names[40][16];
    struct events *ev = new_recorder();
    size_t k;

    (void)state;
    for (k = 0; k < 40; k++) {
        items[k] = ITEM_A;
        snprintf(names[k], sizeof(names[k]), "ing-%02zu", k);
        items[k].name = names[k];
    }
    events_set_leader(ev, 1);
    assert_int_equal(events_report(ev, items, 40), 0);
    while (fake_live()) {
        size_t i;
        for (i = 0; i < fake_n; i++)
            if (fake_reqs[i].live) fake_answer((long)i, 201, "{}");
    }
    assert_int_equal(fake_n, EVENTS_BURST);
    fake_now_v += 1.0;
    ev_pump(ev);
    assert_int_equal(fake_n, EVENTS_BURST + (size_t)EVENTS_MAX_INFLIGHT);
    events_free(ev);
    fake_reset();
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
    fake_now_v += 1;
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
    fake_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),     cmocka_unit_test(test_reasons_and_time),
        cmocka_unit_test(test_dedup),      cmocka_unit_test(test_retry_ttl_leadership),
        cmocka_unit_test(test_rate_limit), cmocka_unit_test(test_key_cap),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
