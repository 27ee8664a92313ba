/*
 * test_outlier: passive outlier detection (outlier.c) and its use by snapshot.c: consecutive
 * failures eject, a success resets the run, each ejection lasts longer (up to the cap), the
 * 50 % cap, never the last endpoint, restoration when the time is up, picks skip ejected
 * endpoints, and ejections survive a snapshot rebuild for unchanged endpoints.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "outlier.h"
#include "snapshot.h"

#define T0 1000000u /* a monotonic ms, far from 0 */

static char keybuf[16][32];
static struct balancer_endpoint epv[16];

/* n endpoints "10.0.0.1:<first + i>". */
static struct balancer_endpoints eps_of(uint32_t n, unsigned first)
{
    struct balancer_endpoints e = {.n = n, .ep = epv};
    uint32_t i;

    for (i = 0; i < n; i++) {
        int l = snprintf(keybuf[i], sizeof(keybuf[i]), "10.0.0.1:%u", first + i);
        epv[i].key = keybuf[i];
        epv[i].key_len = (size_t)l;
        epv[i].weight = 1;
    }
    return e;
}

static void fail_n(struct outlier_state *st, uint32_t idx, int n, uint64_t now)
{
    while (n-- > 0)
        outlier_report(st, idx, 0, now);
}

static struct metrics_totals *totals(void)
{
    struct metrics_totals *t = malloc(sizeof(*t));

    assert_non_null(t);
    metrics_collect(t);
    return t;
}

static void test_consecutive_failures_eject(void **state)
{
    struct balancer_endpoints e = eps_of(4, 80);
    struct outlier_state *st = outlier_create("t/svc:80", &e, NULL, NULL);
    struct metrics_totals *a = totals(), *b;
    int i;

    (void)state;
    assert_non_null(st);
    for (i = 0; i < OUTLIER_CONSECUTIVE - 1; i++)
        assert_int_equal(outlier_report(st, 1, 0, T0), 0);
    assert_false(outlier_ejected(st, 1, T0));
    assert_int_equal(outlier_report(st, 1, 0, T0), 1);
    assert_true(outlier_ejected(st, 1, T0));
    assert_false(outlier_ejected(st, 0, T0));
    assert_int_equal(outlier_ejected_until(st, 1), T0 + OUTLIER_BASE_EJECTION_MS);
    assert_int_equal(outlier_ejections(st, 1), 1);
    assert_int_equal(outlier_n_ejected(st, T0), 1);
    /* reports for an ejected endpoint (requests already in flight) change nothing */
    fail_n(st, 1, 20, T0 + 1);
    assert_int_equal(outlier_ejections(st, 1), 1);
    b = totals();
    assert_int_equal(b->outlier_ejections - a->outlier_ejections, 1);
    free(a);
    free(b);
    outlier_destroy(st);
}

static void test_success_resets_the_run(void **state)
{
    struct balancer_endpoints e = eps_of(4, 80);
    struct outlier_state *st = outlier_create("t/svc:80", &e, NULL, NULL);

    (void)state;
    fail_n(st, 2, OUTLIER_CONSECUTIVE - 1, T0);
    outlier_report(st, 2, 1, T0);
    fail_n(st, 2, OUTLIER_CONSECUTIVE - 1, T0);
    assert_false(outlier_ejected(st, 2, T0));
    /* failures on other endpoints do not add up either */
    fail_n(st, 3, OUTLIER_CONSECUTIVE - 1, T0);
    assert_false(outlier_ejected(st, 3, T0));
    assert_int_equal(outlier_report(st, 2, 0, T0), 1);
    outlier_destroy(st);
}

static void test_ejection_time_grows_and_is_capped(void **state)
{
    struct balancer_endpoints e = eps_of(2, 80);
    struct outlier_config cfg = {
        .consecutive = 2, .base_ms = 1000, .max_ms = 2500, .max_percent = 50};
    struct outlier_state *st = outlier_create("t/svc:80", &e, NULL, NULL);
    struct outlier_state *sc = outlier_create("t/svc:80", &e, NULL, &cfg);
    uint64_t now = T0;

    (void)state;
    /* defaults: 30 s, then 60 s, then 90 s */
    for (int k = 1; k <= 3; k++) {
        fail_n(st, 0, OUTLIER_CONSECUTIVE, now);
        assert_int_equal(outlier_ejected_until(st, 0),
                         now + (uint64_t)k * OUTLIER_BASE_EJECTION_MS);
        now += (uint64_t)k * OUTLIER_BASE_EJECTION_MS;
        assert_false(outlier_ejected(st, 0, now));
    }
    /* a custom config: 1 s, 2 s, then the 2.5 s cap */
    now = T0;
    fail_n(sc, 1, 2, now);
    assert_int_equal(outlier_ejected_until(sc, 1), now + 1000);
    now += 1000;
    fail_n(sc, 1, 2, now);
    assert_int_equal(outlier_ejected_until(sc, 1), now + 2000);
    now += 2000;
    fail_n(sc, 1, 2, now);
    assert_int_equal(outlier_ejected_until(sc, 1), now + 2500);
    now += 2500;
    fail_n(sc, 1, 2, now);
    assert_int_equal(outlier_ejected_until(sc, 1), now + 2500);
    assert_int_equal(outlier_ejections(sc, 1), 4);
    /* the default cap: 300 s */
    assert_int_equal(OUTLIER_MAX_EJECTION_MS, 300000u);
    outlier_destroy(st);
    outlier_destroy(sc);
}

static void test_half_at_most(void **state)
{
    struct balancer_endpoints e = eps_of(4, 80);
    struct outlier_state *st = outlier_create("t/svc:80", &e, NULL, NULL);
    struct balancer_endpoints e3 = eps_of(3, 80);
    struct outlier_state *s3 = outlier_create("t/svc:80", &e3, NULL, NULL);

    (void)state;
    fail_n(st, 0, OUTLIER_CONSECUTIVE, T0);
    fail_n(st, 1, OUTLIER_CONSECUTIVE, T0);
    fail_n(st, 2, OUTLIER_CONSECUTIVE * 3, T0);
    assert_true(outlier_ejected(st, 0, T0));
    assert_true(outlier_ejected(st, 1, T0));
    assert_false(outlier_ejected(st, 2, T0)); /* 3 of 4 would be 75 % */
    assert_int_equal(outlier_n_ejected(st, T0), 2);
    /* once one is back, the next failure of the one still failing ejects it */
    assert_int_equal(outlier_report(st, 2, 0, T0 + OUTLIER_BASE_EJECTION_MS), 1);
    assert_false(outlier_ejected(st, 0, T0 + OUTLIER_BASE_EJECTION_MS));
    assert_true(outlier_ejected(st, 2, T0 + OUTLIER_BASE_EJECTION_MS));
    /* 3 endpoints: 1 (50 % rounds down) */
    fail_n(s3, 0, OUTLIER_CONSECUTIVE, T0);
    fail_n(s3, 1, OUTLIER_CONSECUTIVE, T0);
    assert_int_equal(outlier_n_ejected(s3, T0), 1);
    outlier_destroy(st);
    outlier_destroy(s3);
}

static void test_never_the_last(void **state)
{
    struct balancer_endpoints e1 = eps_of(1, 80);
    struct outlier_state *s1 = outlier_create("t/svc:80", &e1, NULL, NULL);
    struct outlier_config all = outlier_defaults;
    struct balancer_endpoints e2 = eps_of(2, 80);
    struct outlier_state *s2;

    (void)state;
    fail_n(s1, 0, 100, T0);
    assert_false(outlier_ejected(s1, 0, T0));
    all.max_percent = 100;
    s2 = outlier_create("t/svc:80", &e2, NULL, &all);
    fail_n(s2, 0, OUTLIER_CONSECUTIVE, T0);
    fail_n(s2, 1, OUTLIER_CONSECUTIVE, T0);
    assert_int_equal(outlier_n_ejected(s2, T0), 1);
    /* an empty cluster is harmless */
    outlier_destroy(s1);
    outlier_destroy(s2);
    e1.n = 0;
    s1 = outlier_create("t/svc:80", &e1, NULL, NULL);
    assert_non_null(s1);
    assert_int_equal(outlier_report(s1, 0, 0, T0), 0);
    assert_false(outlier_ejected(s1, 0, T0));
    outlier_destroy(s1);
}

static void test_restored_after_the_time(void **state)
{
    struct balancer_endpoints e = eps_of(2, 80);
    struct outlier_state *st = outlier_create("t/svc:80", &e, NULL, NULL);
    struct metrics_totals *a = totals(), *b;

    (void)state;
    fail_n(st, 0, OUTLIER_CONSECUTIVE, T0);
    assert_true(outlier_ejected(st, 0, T0 + OUTLIER_BASE_EJECTION_MS - 1));
    assert_false(outlier_ejected(st, 0, T0 + OUTLIER_BASE_EJECTION_MS));
    assert_int_equal(outlier_ejected_until(st, 0), 0);
    assert_false(outlier_ejected(st, 0, T0 + OUTLIER_BASE_EJECTION_MS + 1));
    b = totals();
    assert_int_equal(b->outlier_ejections - a->outlier_ejections, 1);
    assert_int_equal(b->outlier_restorations - a->outlier_restorations, 1);
    /* back in: one failure is not enough to eject again */
    outlier_report(st, 0, 0, T0 + OUTLIER_BASE_EJECTION_MS + 2);
    assert_false(outlier_ejected(st, 0, T0 + OUTLIER_BASE_EJECTION_MS + 2));
    free(a);
    free(b);
    outlier_destroy(st);
}

/* ---- through snapshot.c ---- */

/* One cluster "t/svc:80" (lb) of 127.0.0.1:<ports[i]>, built with prev's state. */
static struct snapshot *make_snapshot(const unsigned *ports, uint32_t n, uint8_t lb,
                                      const struct snapshot *prev)
{
    struct snapwire_endpoint ep[8];
    struct snapwire_cluster cl = {.name = "t/svc:80",
                                  .lb = lb,
                                  .first_endpoint = 0,
                                  .endpoint_count = n,
                                  .tls_sni = "",
                                  .tls_ca = SNAPWIRE_NONE,
                                  .hash_on = SNAPWIRE_HASH_NONE,
                                  .hash_name = "",
                                  .affinity_cookie = "",
                                  .hc_path = "",
                                  .hc_host = "",
                                  .od_consecutive = OUTLIER_CONSECUTIVE,
                                  .od_base_ms = OUTLIER_BASE_EJECTION_MS,
                                  .od_max_ms = OUTLIER_MAX_EJECTION_MS,
                                  .od_max_percent = OUTLIER_MAX_EJECTION_PERCENT};
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

    for (i = 0; i < n; i++) {
        ep[i].address = "127.0.0.1";
        ep[i].port = (uint16_t)ports[i];
        ep[i].ready = 1;
        ep[i].weight = 1;
    }
    assert_int_equal(snapwire_encode(&s, 1, &frame, &len, err, sizeof(err)), 0);
    assert_int_equal(snapwire_decode(frame, len, &dec, err, sizeof(err)), 0);
    free(frame);
    snap = snapshot_build_prev(&dec, prev, err, sizeof(err));
    assert_non_null(snap);
    return snap;
}

static const struct snapshot_endpoint *ep_port(struct snapshot *s, unsigned port)
{
    uint32_t i;

    for (i = 0; i < s->clusters[0].n_ready; i++)
        if (s->clusters[0].ready[i].port == port) return &s->clusters[0].ready[i];
    fail();
    return NULL;
}

/* How many of n picks (snapshot_pick, snapshot_pick_ex with a key) went to port. */
static int picks_of(struct snapshot *s, unsigned port, int n)
{
    int k = 0, i;

    for (i = 0; i < n; i++) {
        struct balancer_input in = {.key = &i, .key_len = sizeof(i)};
        if (snapshot_pick(s, 0)->port == port) k++;
        if (snapshot_pick_ex(s, 0, &in)->port == port) k++;
    }
    return k;
}

static void eject_port(struct snapshot *s, unsigned port)
{
    int i;

    for (i = 0; i < OUTLIER_CONSECUTIVE; i++)
        snapshot_balancer_done(s, 0, ep_port(s, port), 1000000, 0);
}

static void test_picks_skip_ejected(void **state)
{
    static const unsigned ports[] = {81, 82, 83};
    static const uint8_t lbs[] = {SNAPWIRE_LB_ROUND_ROBIN, SNAPWIRE_LB_LEAST_REQUEST,
                                  SNAPWIRE_LB_EWMA, SNAPWIRE_LB_RING_HASH, SNAPWIRE_LB_MAGLEV};
    size_t l;

    (void)state;
    for (l = 0; l < sizeof(lbs); l++) {
        struct snapshot *s = make_snapshot(ports, 3, lbs[l], NULL);
        char v[17];

        assert_true(picks_of(s, 82, 60) > 0);
        eject_port(s, 82);
        assert_int_equal(picks_of(s, 82, 200), 0);
        assert_true(picks_of(s, 81, 200) > 0);
        assert_true(picks_of(s, 83, 200) > 0);
        /* the affinity cookie of an ejected endpoint names none */
        snapshot_affinity_value(ep_port(s, 82), v);
        assert_null(snapshot_affinity_find(s, 0, v, 16));
        snapshot_affinity_value(ep_port(s, 81), v);
        assert_ptr_equal(snapshot_affinity_find(s, 0, v, 16), ep_port(s, 81));
        snapshot_unref(s);
    }
}

static void test_carry_over_across_rebuild(void **state)
{
    static const unsigned p1[] = {81, 82, 83}, p2[] = {82, 83, 84, 85}, p3[] = {83, 84, 85};
    struct snapshot *s1 = make_snapshot(p1, 3, SNAPWIRE_LB_ROUND_ROBIN, NULL), *s2, *s3;
    struct metrics_totals *a, *b;

    (void)state;
    eject_port(s1, 82);
    /* a partial run on 83 carries over too */
    snapshot_balancer_done(s1, 0, ep_port(s1, 83), 1000, 0);
    s2 = make_snapshot(p2, 4, SNAPWIRE_LB_EWMA, s1); /* another lb: outlier state still kept */
    assert_int_equal(picks_of(s2, 82, 200), 0);
    assert_int_equal(outlier_ejections(s2->clusters[0].outlier, 0), 1);
    assert_int_equal(outlier_ejections(s2->clusters[0].outlier, 2), 0);
    /* the old snapshot's workers and the new one's share the records */
    assert_int_equal(picks_of(s1, 82, 60), 0);
    snapshot_unref(s1);
    assert_int_equal(picks_of(s2, 82, 200), 0);
    {
        int i;
        for (i = 0; i < OUTLIER_CONSECUTIVE - 1; i++)
            assert_int_equal(outlier_report(s2->clusters[0].outlier, 1, 0, 0), i == 3);
    }
    assert_true(outlier_ejected(s2->clusters[0].outlier, 1, 0));
    /* 82 leaves the cluster still ejected: its ejection ends in the metrics */
    a = totals();
    s3 = make_snapshot(p3, 3, SNAPWIRE_LB_EWMA, s2);
    snapshot_unref(s2);
    b = totals();
    assert_int_equal(b->outlier_restorations - a->outlier_restorations, 1);
    assert_true(outlier_ejected(s3->clusters[0].outlier, 0, 0)); /* 83 */
    assert_int_equal(picks_of(s3, 83, 200), 0);
    free(a);
    free(b);
    snapshot_unref(s3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive_failures_eject),
        cmocka_unit_test(test_success_resets_the_run),
        cmocka_unit_test(test_ejection_time_grows_and_is_capped),
        cmocka_unit_test(test_half_at_most),
        cmocka_unit_test(test_never_the_last),
        cmocka_unit_test(test_restored_after_the_time),
        cmocka_unit_test(test_picks_skip_ejected),
        cmocka_unit_test(test_carry_over_across_rebuild),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
