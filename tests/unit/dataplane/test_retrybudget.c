/*
 * retrybudget: 20 % of requests plus 10 per second, capped; shared by threads without
 * losing or inventing retries.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retrybudget.h"

static int drain(struct retry_budget *b, int64_t now)
{
    int n = 0;
    while (retry_budget_take(b, now))
        n++;
    return n;
}

static void test_ratio_and_floor(void **state)
{
    struct retry_budget b = {0};
    int i;

    (void)state;
    /* first use: one second's floor (10) */
    assert_int_equal(drain(&b, 1000), RETRY_BUDGET_MIN_PER_SEC);
    /* 100 requests in the same millisecond earn 20 retries */
    for (i = 0; i < 100; i++)
        retry_budget_deposit(&b, 1000);
    assert_int_equal(drain(&b, 1000), 20);
    /* half a second later: 5 more from the floor */
    assert_int_equal(drain(&b, 1500), 5);
    /* a long quiet time saves up at most the cap */
    assert_int_equal(drain(&b, 1000000), RETRY_BUDGET_CAP_MILLI / 1000);
    /* the clock going backwards adds nothing */
    assert_int_equal(drain(&b, 500), 0);
}

struct th {
    struct retry_budget *b;
    int got;
};

static void *taker(void *arg)
{
    struct th *t = arg;
    int i;
    for (i = 0; i < 10000; i++)
        t->got += retry_budget_take(t->b, 5000);
    return NULL;
}

static void test_threads_share_exactly(void **state)
{
    struct retry_budget b = {0};
    struct th t[4];
    pthread_t id[4];
    int i, total = 0;

    (void)state;
    assert_int_equal(drain(&b, 5000), RETRY_BUDGET_MIN_PER_SEC);
    for (i = 0; i < 250; i++)
        retry_budget_deposit(&b, 5000); /* 50 retries */
    for (i = 0; i < 4; i++) {
        t[i].b = &b;
        t[i].got = 0;
        assert_int_equal(pthread_create(&id[i], NULL, taker, &t[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(id[i], NULL);
        total += t[i].got;
    }
    assert_int_equal(total, 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratio_and_floor),
        cmocka_unit_test(test_threads_share_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
