/*
 * balancer: every algorithm behind the ops table. Weighted distributions within tolerance,
 * nginx's smooth WRR sequence, least_request and ewma steering away from loaded or slow
 * endpoints, ring_hash and maglev stability (same key same endpoint, removing 1 of 10 remaps
 * <= 12 % of keys, adding it back restores), EWMA carry-over, and 4 threads picking at once.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "balancer.h"

#define MAXEP 64

struct epset {
    struct balancer_endpoint ep[MAXEP];
    char keys[MAXEP][32];
    struct balancer_endpoints eps;
};

/* endpoints named "10.0.0.<id[i]>:80" with weights w (NULL: all 1) */
static void mkset(struct epset *s, uint32_t n, const uint32_t *id, const uint32_t *w)
{
    uint32_t i;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < n; i++) {
        snprintf(s->keys[i], sizeof(s->keys[i]), "10.0.0.%u:80", id ? id[i] : i + 1);
        s->ep[i].key = s->keys[i];
        s->ep[i].key_len = strlen(s->keys[i]);
        s->ep[i].weight = w ? w[i] : 1;
    }
    s->eps.n = n;
    s->eps.ep = s->ep;
}

static const struct balancer_ops *const all_ops[] = {
    &bal_roundrobin_ops, &bal_leastreq_ops, &bal_ewma_ops, &bal_ringhash_ops, &bal_maglev_ops,
};
#define N_OPS (sizeof(all_ops) / sizeof(all_ops[0]))

/* pick with a fresh key each time (hash algorithms), no feedback */
static uint32_t pick_i(const struct balancer_ops *ops, void *st, uint64_t i)
{
    struct balancer_input in = {.has_hash = 1, .hash = i * 0x9e3779b97f4a7c15ull + 12345};

    return ops->pick(st, &in);
}

static void test_find(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < N_OPS; i++)
        assert_ptr_equal(balancer_find_name(all_ops[i]->name), all_ops[i]);
    assert_null(balancer_find_name("nope"));
    assert_null(balancer_find_name(NULL));
    assert_ptr_equal(balancer_find(1), &bal_roundrobin_ops);
}

static const struct {
    uint32_t n;
    uint32_t w[MAXEP];
} dist_cases[] = {
    {3, {1, 2, 7}},
    {4, {1, 1, 1, 1}},
    {5, {3, 1, 4, 1, 5}},
    {10, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
};

static void test_distribution(void **state)
{
    size_t k, c;
    const uint32_t picks = 100000;

    (void)state;
    for (k = 0; k < N_OPS; k++) {
        for (c = 0; c < sizeof(dist_cases) / sizeof(dist_cases[0]); c++) {
            struct epset s;
            uint32_t cnt[MAXEP] = {0}, i, sum = 0;
            void *st;

            mkset(&s, dist_cases[c].n, NULL, dist_cases[c].w);
            st = all_ops[k]->create(&s.eps, NULL);
            assert_non_null(st);
            for (i = 0; i < s.eps.n; i++)
                sum += dist_cases[c].w[i];
            for (i = 0; i < picks; i++) {
                uint32_t x = pick_i(all_ops[k], st, i);
                assert_true(x < s.eps.n);
                cnt[x]++;
            }
            for (i = 0; i < s.eps.n; i++) {
                double want = (double)dist_cases[c].w[i] / sum, got = (double)cnt[i] / picks;
                if (got < want - 0.015 || got > want + 0.015)
                    fail_msg("%s case %zu endpoint %u: share %.4f, want %.4f", all_ops[k]->name, c,
                             i, got, want);
            }
            all_ops[k]->destroy(st);
        }
    }
}

static void test_smooth_wrr_sequence(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    static const char want[] = "aabacaa"
                               "aabacaa";
    struct epset s;
    char got[sizeof(want)];
    void *st;
    size_t i;

    (void)state;
    mkset(&s, 3, NULL, w);
    st = bal_roundrobin_ops.create(&s.eps, NULL);
    assert_non_null(st);
    for (i = 0; i < sizeof(want) - 1; i++)
        got[i] = (char)('a' + bal_roundrobin_ops.pick(st, NULL));
    got[i] = 0;
    assert_string_equal(got, want);
    bal_roundrobin_ops.destroy(st);

    /* equal weights: plain rotation */
    mkset(&s, 4, NULL, NULL);
    st = bal_roundrobin_ops.create(&s.eps, NULL);
    for (i = 0; i < 12; i++)
        assert_int_equal(bal_roundrobin_ops.pick(st, NULL), i % 4);
    bal_roundrobin_ops.destroy(st);
}

static void test_least_request(void **state)
{
    struct epset s;
    uint32_t i, cnt[4] = {0};
    void *st;

    (void)state;
    mkset(&s, 4, NULL, NULL);
    st = bal_leastreq_ops.create(&s.eps, NULL);
    /* endpoint 0 holds 10 requests: it never wins a pair */
    for (i = 0; i < 10; i++)
        bal_leastreq_ops.start(st, 0);
    for (i = 0; i < 10000; i++)
        cnt[bal_leastreq_ops.pick(st, NULL)]++;
    assert_int_equal(cnt[0], 0);
    /* requests that stay open spread the load evenly */
    for (i = 0; i < 10; i++)
        bal_leastreq_ops.done(st, 0, 0, 1);
    memset(cnt, 0, sizeof(cnt));
    for (i = 0; i < 400; i++) {
        uint32_t x = bal_leastreq_ops.pick(st, NULL);
        bal_leastreq_ops.start(st, x);
        cnt[x]++;
    }
    for (i = 0; i < 4; i++)
        assert_in_range(cnt[i], 90, 110);
    /* done below zero is ignored */
    for (i = 0; i < 1000; i++)
        bal_leastreq_ops.done(st, 1, 0, 1);
    bal_leastreq_ops.destroy(st);
}

/* 10 endpoints, endpoint 9 answers 50 ms slower than the others (1 ms). */
static void test_ewma_avoids_slow(void **state)
{
    struct epset s;
    uint32_t i, slow = 0, n = 100000;
    void *st;

    (void)state;
    mkset(&s, 10, NULL, NULL);
    st = bal_ewma_ops.create(&s.eps, NULL);
    for (i = 0; i < n; i++) {
        uint32_t x = bal_ewma_ops.pick(st, NULL);
        bal_ewma_ops.start(st, x);
        bal_ewma_ops.done(st, x, x == 9 ? 51000000ull : 1000000ull, 1);
        slow += x == 9;
    }
    if (slow * 10 >= n) fail_msg("slow endpoint got %u of %u", slow, n);
    assert_true(bal_ewma_estimate(st, 9) > 40000000ull);
    /* a failure counts as a slow sample at once */
    bal_ewma_ops.done(st, 3, 1000, 0);
    assert_true(bal_ewma_estimate(st, 3) >= 1000000000ull);
    bal_ewma_ops.destroy(st);
}

static void test_ewma_inflight(void **state)
{
    struct epset s;
    uint32_t i, cnt[2] = {0};
    void *st;

    (void)state;
    mkset(&s, 2, NULL, NULL);
    st = bal_ewma_ops.create(&s.eps, NULL);
    for (i = 0; i < 5; i++)
        bal_ewma_ops.start(st, 1);
    for (i = 0; i < 1000; i++)
        cnt[bal_ewma_ops.pick(st, NULL)]++;
    assert_int_equal(cnt[0], 1000);
    bal_ewma_ops.destroy(st);
}

static void test_ewma_carry_over(void **state)
{
    static const uint32_t id1[] = {1, 2, 3, 4}, id2[] = {4, 2, 7};
    struct epset a, b;
    void *s1, *s2;

    (void)state;
    mkset(&a, 4, id1, NULL);
    s1 = bal_ewma_ops.create(&a.eps, NULL);
    bal_ewma_ops.done(s1, 0, 5000000, 1);  /* .1: 5 ms */
    bal_ewma_ops.done(s1, 1, 7000000, 1);  /* .2: 7 ms */
    bal_ewma_ops.done(s1, 3, 20000000, 1); /* .4: 20 ms */
    /* .4 and .2 stay (new order), .7 is new: it starts at the median of the carried (20, 7) */
    mkset(&b, 3, id2, NULL);
    s2 = bal_ewma_ops.create(&b.eps, s1);
    assert_non_null(s2);
    assert_int_equal(bal_ewma_estimate(s2, 0), 20000000);
    assert_int_equal(bal_ewma_estimate(s2, 1), 7000000);
    assert_int_equal(bal_ewma_estimate(s2, 2), 20000000);
    bal_ewma_ops.destroy(s1);
    bal_ewma_ops.destroy(s2);
}

static void test_hash_stability(void **state)
{
    static const uint32_t ids10[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    static const uint32_t ids9[] = {1, 2, 3, 4, 6, 7, 8, 9, 10};  /* without .5 */
    static const uint32_t ids9r[] = {10, 9, 8, 7, 6, 4, 3, 2, 1}; /* other order */
    const struct balancer_ops *ops[] = {&bal_ringhash_ops, &bal_maglev_ops};
    const uint32_t keys = 100000;
    size_t k;

    (void)state;
    for (k = 0; k < 2; k++) {
        struct epset s10, s9, s9r;
        void *a, *b, *c, *d;
        uint32_t i, moved = 0, moved_order = 0;
        char key[32];

        mkset(&s10, 10, ids10, NULL);
        mkset(&s9, 9, ids9, NULL);
        mkset(&s9r, 9, ids9r, NULL);
        a = ops[k]->create(&s10.eps, NULL);
        b = ops[k]->create(&s9.eps, a);
        c = ops[k]->create(&s10.eps, b);
        d = ops[k]->create(&s9r.eps, NULL);
        assert_true(a && b && c && d);
        for (i = 0; i < keys; i++) {
            struct balancer_input in = {0};
            uint32_t xa, xb, xc, xd;

            in.key = key;
            in.key_len = (size_t)snprintf(key, sizeof(key), "user-%u", i);
            xa = ops[k]->pick(a, &in);
            assert_int_equal(ops[k]->pick(a, &in), xa); /* same key, same endpoint */
            xb = ops[k]->pick(b, &in);
            xc = ops[k]->pick(c, &in);
            xd = ops[k]->pick(d, &in);
            if (strcmp(s10.keys[xa], s9.keys[xb]) != 0) moved++;
            if (strcmp(s9.keys[xb], s9r.keys[xd]) != 0) moved_order++;
            assert_int_equal(xc, xa); /* adding it back restores */
        }
        if (moved * 100 > keys * 12)
            fail_msg("%s: removing 1 of 10 moved %u of %u keys", ops[k]->name, moved, keys);
        assert_int_equal(moved_order, 0);
        ops[k]->destroy(a);
        ops[k]->destroy(b);
        ops[k]->destroy(c);
        ops[k]->destroy(d);
    }
}

static void test_empty_and_single(void **state)
{
    struct epset s;
    size_t k;

    (void)state;
    for (k = 0; k < N_OPS; k++) {
        void *st;

        mkset(&s, 0, NULL, NULL);
        st = all_ops[k]->create(&s.eps, NULL);
        assert_non_null(st);
        all_ops[k]->destroy(st);
        mkset(&s, 1, NULL, NULL);
        st = all_ops[k]->create(&s.eps, NULL);
        assert_int_equal(pick_i(all_ops[k], st, 7), 0);
        assert_int_equal(all_ops[k]->pick(st, NULL), 0);
        all_ops[k]->destroy(st);
    }
}

struct thr {
    const struct balancer_ops *ops;
    void *st;
    uint32_t n;
    int bad;
};

static void *picker(void *arg)
{
    struct thr *t = arg;
    uint32_t i;

    for (i = 0; i < 50000; i++) {
        uint32_t x = pick_i(t->ops, t->st, i);
        if (x >= t->n) t->bad++;
        if (t->ops->start) t->ops->start(t->st, x);
        if (t->ops->done) t->ops->done(t->st, x, 1000 + (i & 1023), i % 97 != 0);
    }
    return NULL;
}

static void test_threads(void **state)
{
    static const uint32_t w[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    struct epset s;
    size_t k;
    int i;

    (void)state;
    mkset(&s, 13, NULL, w);
    for (k = 0; k < N_OPS; k++) {
        pthread_t id[4];
        struct thr t[4];
        void *st = all_ops[k]->create(&s.eps, NULL);

        for (i = 0; i < 4; i++) {
            t[i] = (struct thr){.ops = all_ops[k], .st = st, .n = s.eps.n};
            assert_int_equal(pthread_create(&id[i], NULL, picker, &t[i]), 0);
        }
        for (i = 0; i < 4; i++) {
            pthread_join(id[i], NULL);
            assert_int_equal(t[i].bad, 0);
        }
        all_ops[k]->destroy(st);
    }
}

static void test_hash_helpers(void **state)
{
    (void)state;
    assert_true(balancer_hash("abc", 3, 0) != balancer_hash("abd", 3, 0));
    assert_true(balancer_hash("abc", 3, 0) != balancer_hash("abc", 3, 1));
    assert_true(balancer_hash("", 0, 0) != balancer_hash("\0", 1, 0));
    assert_int_equal(balancer_hash("0123456789", 10, 5), balancer_hash("0123456789", 10, 5));
    assert_true(balancer_rand64() != balancer_rand64());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_smooth_wrr_sequence),
        cmocka_unit_test(test_least_request),
        cmocka_unit_test(test_ewma_avoids_slow),
        cmocka_unit_test(test_ewma_inflight),
        cmocka_unit_test(test_ewma_carry_over),
        cmocka_unit_test(test_hash_stability),
        cmocka_unit_test(test_empty_and_single),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_hash_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
