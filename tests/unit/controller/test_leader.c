/*
 * leader: client-go's decision logic as data tables. Given what a candidate observed (and
 * when, on its own clock) and the record it reads now: wait, acquire or renew; the record it
 * writes for each; the release record; Lease parsing and the bodies it sends; the checks on
 * the timings. The elector's requests are covered end to end (tests/e2e/
 * test_leader_status_events.py: two replicas, kill, SIGTERM).
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

#include "leader.h"
#include "log.h"

#define ME "me_1"

static struct leader_record rec(const char *holder, long duration, const char *renew,
                                long transitions)
{
    struct leader_record r;

    memset(&r, 0, sizeof(r));
    snprintf(r.holder, sizeof(r.holder), "%s", holder);
    r.duration = duration;
    snprintf(r.acquire_time, sizeof(r.acquire_time), "2026-01-01T00:00:00.000000Z");
    snprintf(r.renew_time, sizeof(r.renew_time), "%s", renew);
    r.transitions = transitions;
    return r;
}

/*
 * A candidate reads the Lease at each time in reads[] (the record held then); the last
 * read's decision must be want. Expiry counts from when a record was first seen to change.
 */
struct read {
    double at;
    const char *holder;
    const char *renew;
};

static const struct {
    const char *name;
    struct read reads[4];
    size_t n;
    enum leader_action want;
} decide_cases[] = {
    {"held by another, just seen", {{0, "other", "t1"}}, 1, LEADER_WAIT},
    {"held, not changed for less than the duration",
     {{0, "other", "t1"}, {14.9, "other", "t1"}},
     2,
     LEADER_WAIT},
    {"held, not changed for the duration: expired",
     {{0, "other", "t1"}, {15, "other", "t1"}},
     2,
     LEADER_ACQUIRE},
    {"renewed in between: expiry counts from when the change was seen",
     {{0, "other", "t1"}, {10, "other", "t2"}, {24.9, "other", "t2"}},
     3,
     LEADER_WAIT},
    {"renewed, then silent for the duration",
     {{0, "other", "t1"}, {10, "other", "t2"}, {25, "other", "t2"}},
     3,
     LEADER_ACQUIRE},
    {"the holder's own clock does not matter, only changes do",
     {{0, "other", "1999-01-01T00:00:00Z"}, {5, "other", "1999-01-01T00:00:00Z"}},
     2,
     LEADER_WAIT},
    {"nobody holds it (released): take it at once", {{0, "", "t1"}}, 1, LEADER_ACQUIRE},
    {"ours: renew", {{0, ME, "t1"}}, 1, LEADER_RENEW},
    {"ours even after a long silence: renew (nobody else wrote)",
     {{0, ME, "t1"}, {100, ME, "t1"}},
     2,
     LEADER_RENEW},
    {"another took it from us", {{0, ME, "t1"}, {3, "other", "t2"}}, 2, LEADER_WAIT},
};

static void test_decide(void **state)
{
    struct leader_observed o;
    struct leader_record r;
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        memset(&o, 0, sizeof(o));
        for (j = 0; j < decide_cases[i].n; j++) {
            const struct read *rd = &decide_cases[i].reads[j];
            r = rec(rd->holder, 15, rd->renew, 0);
            leader_observe(&o, &r, rd->at);
        }
        if (leader_decide(&o, ME, decide_cases[i].reads[decide_cases[i].n - 1].at) !=
            decide_cases[i].want)
            fail_msg("case \"%s\"", decide_cases[i].name);
    }
}

static void test_observe_and_validity(void **state)
{
    struct leader_observed o;
    struct leader_record r = rec("other", 15, "t1", 2);

    (void)state;
    memset(&o, 0, sizeof(o));
    assert_false(leader_lease_valid(&o, 0));
    assert_int_equal(leader_observe(&o, &r, 100), 1);
    assert_int_equal(leader_observe(&o, &r, 105), 0); /* same record: time stays */
    assert_true(o.time == 100);
    assert_true(leader_lease_valid(&o, 114.99));
    assert_false(leader_lease_valid(&o, 115));
    r.transitions = 3; /* any field counts as a change */
    assert_int_equal(leader_observe(&o, &r, 106), 1);
    assert_true(o.time == 106);
    /* the record's own duration decides (a released lease says 1 s) */
    r = rec("other", 1, "t9", 3);
    leader_observe(&o, &r, 200);
    assert_int_equal(leader_decide(&o, ME, 200.5), LEADER_WAIT);
    assert_int_equal(leader_decide(&o, ME, 201), LEADER_ACQUIRE);
    assert_false(leader_is_holder(&o, ME));
    assert_true(leader_is_holder(&o, "other"));
}

static void test_records(void **state)
{
    struct leader_observed o;
    struct leader_record r = rec("other", 15, "t1", 4), out;

    (void)state;
    /* create: nothing observed */
    leader_next_record(NULL, LEADER_ACQUIRE, ME, 15, "NOW", &out);
    assert_string_equal(out.holder, ME);
    assert_int_equal(out.duration, 15);
    assert_string_equal(out.acquire_time, "NOW");
    assert_string_equal(out.renew_time, "NOW");
    assert_int_equal(out.transitions, 0);
    /* acquire from another holder: one more transition */
    memset(&o, 0, sizeof(o));
    leader_observe(&o, &r, 0);
    leader_next_record(&o, LEADER_ACQUIRE, ME, 15, "NOW", &out);
    assert_int_equal(out.transitions, 5);
    assert_string_equal(out.acquire_time, "NOW");
    /* renew: acquire time and transitions kept */
    r = rec(ME, 15, "t2", 5);
    leader_observe(&o, &r, 1);
    leader_next_record(&o, LEADER_RENEW, ME, 15, "LATER", &out);
    assert_int_equal(out.transitions, 5);
    assert_string_equal(out.acquire_time, "2026-01-01T00:00:00.000000Z");
    assert_string_equal(out.renew_time, "LATER");
    /* release: no holder, one second, transitions kept */
    leader_release_record(&o, "END", &out);
    assert_string_equal(out.holder, "");
    assert_int_equal(out.duration, 1);
    assert_int_equal(out.transitions, 5);
    assert_string_equal(out.acquire_time, "END");
    assert_string_equal(out.renew_time, "END");
}

static void test_parse_and_bodies(void **state)
{
    static const char *lease =
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":"
        "\"strait-controller\",\"namespace\":\"default\",\"resourceVersion\":\"42\"},\"spec\":{"
        "\"holderIdentity\":\"a_1\",\"leaseDurationSeconds\":15,\"acquireTime\":\"2026-01-01T00:"
        "00:00.000000Z\",\"renewTime\":\"2026-01-01T00:00:05.000000Z\",\"leaseTransitions\":3}}";
    struct leader_record r;
    char rv[64], err[256], *body;

    (void)state;
    assert_int_equal(leader_parse_lease(lease, strlen(lease), &r, rv, sizeof(rv), err, sizeof(err)),
                     0);
    assert_string_equal(rv, "42");
    assert_string_equal(r.holder, "a_1");
    assert_int_equal(r.duration, 15);
    assert_int_equal(r.transitions, 3);
    assert_string_equal(r.renew_time, "2026-01-01T00:00:05.000000Z");
    /* a Lease without spec (made by kubectl) is an empty record */
    assert_int_equal(leader_parse_lease("{\"metadata\":{\"resourceVersion\":\"1\"}}", 36, &r, rv,
                                        sizeof(rv), err, sizeof(err)),
                     0);
    assert_string_equal(r.holder, "");
    assert_int_equal(r.duration, 0);
    assert_int_equal(leader_parse_lease("{\"spec\":{}}", 11, &r, rv, sizeof(rv), err, sizeof(err)),
                     -1);
    assert_int_equal(leader_parse_lease("[]", 2, &r, rv, sizeof(rv), err, sizeof(err)), -1);

    r = rec("me", 15, "2026-01-01T00:00:05.000000Z", 3);
    body = leader_lease_body("default", "strait-controller", NULL, &r);
    assert_string_equal(body, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                              "\"metadata\":{\"name\":\"strait-controller\",\"namespace\":"
                              "\"default\"},\"spec\":{\"holderIdentity\":\"me\","
                              "\"leaseDurationSeconds\":15,\"acquireTime\":\"2026-01-01T00:00:"
                              "00.000000Z\",\"renewTime\":\"2026-01-01T00:00:05.000000Z\","
                              "\"leaseTransitions\":3}}");
    free(body);
    /* an update is a merge patch guarded by the resourceVersion it read */
    body = leader_lease_body("default", "strait-controller", "42", &r);
    assert_non_null(strstr(body, "{\"metadata\":{\"resourceVersion\":\"42\"},\"spec\":{"));
    assert_null(strstr(body, "\"kind\""));
    free(body);
}

static void test_time_and_defaults(void **state)
{
    char buf[320], err[256], dir[] = "/tmp/strait-sa-XXXXXX", path[300], host[256];
    FILE *f;
    size_t n;

    (void)state;
    leader_format_time(86400. + 3723.25, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-02T01:02:03.250000Z");

    assert_int_equal(leader_default_identity(buf, sizeof(buf), err, sizeof(err)), 0);
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    n = strlen(host);
    assert_memory_equal(buf, host, n);
    assert_int_equal(buf[n], '_');
    assert_int_equal(strlen(buf + n + 1), 16);
    assert_int_equal(strspn(buf + n + 1, "0123456789abcdef"), 16);

    assert_non_null(mkdtemp(dir));
    setenv("STRAIT_SERVICEACCOUNT_DIR", dir, 1);
    leader_default_namespace(buf, sizeof(buf));
    assert_string_equal(buf, "default"); /* no namespace file */
    snprintf(path, sizeof(path), "%s/namespace", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs("ingress-system\n", f);
    fclose(f);
    leader_default_namespace(buf, sizeof(buf));
    assert_string_equal(buf, "ingress-system");
    unlink(path);
    rmdir(dir);
    unsetenv("STRAIT_SERVICEACCOUNT_DIR");
}

static const struct {
    double lease, renew, retry;
    const char *ns, *name, *identity;
    int ok;
} opt_cases[] = {
    {0, 0, 0, "default", "strait-controller", "a", 1}, /* client-go's 15/10/2 */
    {3, 2, 0.5, "default", "x", "a", 1},
    {3, 2, 2, "default", "x", "a", 0},     /* renew <= 1.2 x retry */
    {10, 10, 2, "default", "x", "a", 0},   /* lease <= renew */
    {2.5, 2, 0.5, "default", "x", "a", 0}, /* whole seconds */
    {0, 0, 0, "Default", "x", "a", 0},     /* not a DNS name */
    {0, 0, 0, "default", "a/b", "a", 0},
    {0, 0, 0, "default", "x", "", 0},
};

static void test_check_opts(void **state)
{
    struct leader_opts o;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(opt_cases) / sizeof(opt_cases[0]); i++) {
        memset(&o, 0, sizeof(o));
        o.lease_duration = opt_cases[i].lease;
        o.renew_deadline = opt_cases[i].renew;
        o.retry_period = opt_cases[i].retry;
        o.ns = opt_cases[i].ns;
        o.name = opt_cases[i].name;
        o.identity = opt_cases[i].identity;
        if ((leader_check_opts(&o, err, sizeof(err)) == 0) != opt_cases[i].ok)
            fail_msg("options case %zu: %s", i, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_observe_and_validity),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_parse_and_bodies),
        cmocka_unit_test(test_time_and_defaults),
        cmocka_unit_test(test_check_opts),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
