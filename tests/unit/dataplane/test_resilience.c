/*
 * test_resilience: what a cluster's snapwire v6 settings do in the data plane's snapshot:
 * endpoint weights reach the balancer, slow start holds back an endpoint added to a running
 * cluster (and not the ones a cluster starts with), outlier detection can be switched off
 * and keeps its per-endpoint counters, the circuit breaker's gauges count and refuse above
 * their limit and are shared across a rebuild, the cluster retry budget's rates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "clusterstate.h"
#include "outlier.h"
#include "retrybudget.h"
#include "snapshot.h"

/* Settings of the one cluster "t/svc:80" a test snapshot has. */
struct opts {
    uint8_t lb;
    uint32_t slow_start_ms;
    uint32_t od_consecutive;
    const uint32_t *weights; /* NULL: all 1 */
};

/* One cluster of 127.0.0.1:<ports[i]>, through the codec, built on prev. */
static struct snapshot *make(const unsigned *ports, uint32_t n, const struct opts *o,
                             const struct snapshot *prev)
{
    struct snapwire_endpoint ep[16];
    struct snapwire_cluster cl = {.name = "t/svc:80",
                                  .lb = o->lb ? o->lb : SNAPWIRE_LB_ROUND_ROBIN,
                                  .endpoint_count = n,
                                  .tls_sni = "",
                                  .tls_ca = SNAPWIRE_NONE,
                                  .hash_name = "",
                                  .affinity_cookie = "",
                                  .hc_path = "",
                                  .hc_host = "",
                                  .od_consecutive = o->od_consecutive,
                                  .od_base_ms = o->od_consecutive ? 30000 : 0,
                                  .od_max_ms = o->od_consecutive ? 300000 : 0,
                                  .od_max_percent = o->od_consecutive ? 50 : 0,
                                  .rb_percent = 20,
                                  .rb_min_per_sec = 10,
                                  .slow_start_ms = o->slow_start_ms};
    struct snapwire_route rt = {
        .path = "/", .match = SNAPWIRE_MATCH_PREFIX, .source = "t/r", .cluster = 0, .hsts = ""};
    struct snapwire_vhost vh = {"a", 0, 1};
    struct snapwire_snapshot s = {.meta = {0, "test", SNAPWIRE_BODY_UNLIMITED, SNAPWIRE_NONE},
                                  .n_vhosts = 1,
                                  .n_routes = 1,
                                  .n_clusters = 1,
                                  .n_endpoints = n,
                                  .vhosts = &vh,
                                  .routes = &rt,
                                  .clusters = &cl,
                                  .endpoints = ep};
    struct snapwire_snapshot dec;
    struct snapshot *snap;
    uint8_t *frame;
    size_t len;
    char err[256];
    uint32_t i;

    assert_true(n <= 16);
    for (i = 0; i < n; i++) {
        ep[i] = (struct snapwire_endpoint){.address = "127.0.0.1",
                                           .port = (uint16_t)ports[i],
                                           .ready = 1,
                                           .weight = o->weights ? o->weights[i] : 1};
    }
    if (snapwire_encode(&s, 1, &frame, &len, err, sizeof(err)) != 0) fail_msg("encode: %s", err);
    if (snapwire_decode(frame, len, &dec, err, sizeof(err)) != 0) fail_msg("decode: %s", err);
    free(frame);
    snap = snapshot_build_prev(&dec, prev, err, sizeof(err));
    if (!snap) fail_msg("build: %s", err);
    return snap;
}

/* Picks per port (ports 80..95) over n picks. */
static void count_picks(struct snapshot *s, int n, int *by_port)
{
    int i;

    memset(by_port, 0, 16 * sizeof(*by_port));
    for (i = 0; i < n; i++) {
        struct balancer_input in = {.has_hash = 1, .hash = (uint64_t)i * 0x9e3779b97f4a7c15ull};
        const struct snapshot_endpoint *e = snapshot_pick_ex(s, 0, &in);
        assert_non_null(e);
        assert_true(e->port >= 80 && e->port < 96);
        by_port[e->port - 80]++;
    }
}

static void test_weights_reach_the_balancer(void **state)
{
    static const unsigned ports[] = {80, 81, 82};
    static const uint32_t w[] = {6, 3, 1};
    static const uint8_t lbs[] = {SNAPWIRE_LB_ROUND_ROBIN, SNAPWIRE_LB_LEAST_REQUEST,
                                  SNAPWIRE_LB_EWMA, SNAPWIRE_LB_RING_HASH, SNAPWIRE_LB_MAGLEV};
    int by[16];
    size_t l;

    (void)state;
    for (l = 0; l < sizeof(lbs); l++) {
        struct opts o = {.lb = lbs[l], .weights = w};
        struct snapshot *s = make(ports, 3, &o, NULL);

        assert_int_equal(s->clusters[0].ready[0].weight, 6);
        assert_int_equal(s->clusters[0].ready[2].weight, 1);
        count_picks(s, 10000, by);
        if (lbs[l] == SNAPWIRE_LB_ROUND_ROBIN) {
            /* smooth WRR is exact over whole rounds */
            assert_int_equal(by[0], 6000);
            assert_int_equal(by[1], 3000);
            assert_int_equal(by[2], 1000);
        } else {
            /* within 3 points of 60 / 30 / 10 % */
            if (by[0] < 5700 || by[0] > 6300 || by[1] < 2700 || by[1] > 3300 || by[2] < 700 ||
                by[2] > 1300)
                fail_msg("lb %u: %d / %d / %d", lbs[l], by[0], by[1], by[2]);
        }
        snapshot_unref(s);
    }
}

static uint64_t now_ms(void)
{
    return outlier_now_ms();
}

static void test_slow_start(void **state)
{
    static const unsigned p1[] = {80, 81}, p2[] = {80, 81, 82};
    struct opts o = {.slow_start_ms = 60000};
    struct snapshot *s1 = make(p1, 2, &o, NULL), *s2, *s3;
    int by[16];

    (void)state;
    /* the endpoints a cluster starts with are not held back */
    count_picks(s1, 1000, by);
    assert_int_equal(by[0], 500);
    assert_int_equal(by[1], 500);
    assert_int_equal(outlier_added_ms(s1->clusters[0].outlier, 0), 0);
    /* one added to the running cluster starts at 10 % of its share (a third: ~3.3 %) */
    s2 = make(p2, 3, &o, s1);
    assert_true(outlier_added_ms(s2->clusters[0].outlier, 2) > 0);
    count_picks(s2, 9000, by);
    if (by[2] < 100 || by[2] > 700) fail_msg("new endpoint got %d of 9000", by[2]);
    assert_int_equal(by[0] + by[1] + by[2], 9000);
    /* unchanged endpoints keep their join time: a rebuild does not restart the ramp */
    s3 = make(p2, 3, &o, s2);
    assert_int_equal(outlier_added_ms(s3->clusters[0].outlier, 2),
                     outlier_added_ms(s2->clusters[0].outlier, 2));
    snapshot_unref(s3);
    snapshot_unref(s2);
    snapshot_unref(s1);
}

static void test_slow_start_ends(void **state)
{
    static const unsigned p1[] = {80, 81}, p2[] = {80, 81, 82};
    struct opts o = {.slow_start_ms = 300};
    struct snapshot *s1 = make(p1, 2, &o, NULL), *s2;
    uint64_t added, deadline = now_ms() + 10000;
    int by[16];

    (void)state;
    s2 = make(p2, 3, &o, s1);
    added = outlier_added_ms(s2->clusters[0].outlier, 2);
    /* past the window (polled: the monotonic clock moves on its own) */
    while (now_ms() < added + o.slow_start_ms) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        assert_true(now_ms() < deadline);
        nanosleep(&ts, NULL);
    }
    count_picks(s2, 3000, by);
    assert_int_equal(by[2], 1000); /* a full third under round robin */
    snapshot_unref(s2);
    snapshot_unref(s1);
}

static void test_outlier_off_keeps_counters(void **state)
{
    static const unsigned ports[] = {80, 81};
    struct opts o = {.od_consecutive = 0};
    struct snapshot *s = make(ports, 2, &o, NULL);
    struct outlier_ep_stats st;
    int i;

    (void)state;
    for (i = 0; i < 50; i++)
        snapshot_balancer_done(s, 0, &s->clusters[0].ready[1], 2000000, 0);
    snapshot_balancer_done(s, 0, &s->clusters[0].ready[1], 2000000, 1);
    assert_false(outlier_ejected(s->clusters[0].outlier, 1, 0));
    outlier_stats(s->clusters[0].outlier, 1, &st);
    assert_int_equal(st.requests, 51);
    assert_int_equal(st.errors, 50);
    assert_int_equal(st.latency_ewma_ns, 2000000);
    assert_int_equal(st.ejections, 0);
    outlier_stats(s->clusters[0].outlier, 0, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.latency_ewma_ns, 0);
    snapshot_unref(s);

    /* with detection on (5), the same failures eject */
    o.od_consecutive = 5;
    s = make(ports, 2, &o, NULL);
    for (i = 0; i < 5; i++)
        snapshot_balancer_done(s, 0, &s->clusters[0].ready[1], 2000000, 0);
    assert_true(outlier_ejected(s->clusters[0].outlier, 1, 0));
    snapshot_unref(s);
}

static void test_circuit_breaker_gauges(void **state)
{
    static const unsigned ports[] = {80};
    struct opts o = {0};
    struct snapshot *s1 = make(ports, 1, &o, NULL), *s2;
    struct clusterstate *cs = s1->clusters[0].cs;
    int i;

    (void)state;
    assert_non_null(cs);
    for (i = 0; i < 3; i++)
        assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_REQUESTS, 3), 0);
    assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_REQUESTS, 3), -1);
    assert_int_equal(clusterstate_gauge(cs, CLUSTERSTATE_REQUESTS), 3);
    assert_int_equal(atomic_load(&cs->overflows[CLUSTERSTATE_REQUESTS]), 1);
    /* 0 is unlimited; the other gauges are separate */
    assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_REQUESTS, 0), 0);
    assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_PENDING, 1), 0);
    assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_PENDING, 1), -1);
    assert_int_equal(clusterstate_gauge(cs, CLUSTERSTATE_CONNECTIONS), 0);
    /* a rebuild shares the record: requests started before it end on it */
    s2 = make(ports, 1, &o, s1);
    assert_ptr_equal(s2->clusters[0].cs, cs);
    snapshot_unref(s1);
    clusterstate_release(cs, CLUSTERSTATE_REQUESTS);
    clusterstate_release(cs, CLUSTERSTATE_PENDING);
    assert_int_equal(clusterstate_gauge(s2->clusters[0].cs, CLUSTERSTATE_REQUESTS), 3);
    assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_REQUESTS, 4), 0);
    assert_int_equal(clusterstate_acquire(cs, CLUSTERSTATE_REQUESTS, 4), -1);
    for (i = 0; i < 4; i++)
        clusterstate_release(cs, CLUSTERSTATE_REQUESTS);
    assert_int_equal(clusterstate_gauge(cs, CLUSTERSTATE_REQUESTS), 0);
    assert_string_equal(clusterstate_limit_name(CLUSTERSTATE_PENDING), "pending");
    snapshot_unref(s2);
}

static void test_budget_rates(void **state)
{
    struct retry_budget b = {0}, z = {0}, all = {0};
    int i, got = 0;

    (void)state;
    /* 20 % and 10/s: 100 requests in the first instant earn 10 (time) + 20 (ratio) */
    for (i = 0; i < 100; i++)
        retry_budget_deposit_rate(&b, 1000, 200, 10);
    while (retry_budget_take_rate(&b, 1000, 10))
        got++;
    assert_int_equal(got, 30);
    /* one more second adds 10 */
    for (got = 0; retry_budget_take_rate(&b, 2000, 10); got++)
        ;
    assert_int_equal(got, 10);
    /* 0 % and 0/s: no retry ever */
    for (i = 0; i < 100; i++)
        retry_budget_deposit_rate(&z, 1000 + i * 100, 0, 0);
    assert_int_equal(retry_budget_take_rate(&z, 20000, 0), 0);
    /* 100 %: one retry per request */
    for (i = 0; i < 5; i++)
        retry_budget_deposit_rate(&all, 1000, 1000, 0);
    for (got = 0; retry_budget_take_rate(&all, 1000, 0); got++)
        ;
    assert_int_equal(got, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_reach_the_balancer),
        cmocka_unit_test(test_slow_start),
        cmocka_unit_test(test_slow_start_ends),
        cmocka_unit_test(test_outlier_off_keeps_counters),
        cmocka_unit_test(test_circuit_breaker_gauges),
        cmocka_unit_test(test_budget_rates),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
