/*
 * regex unit tests: whole-subject matching, compile errors with their offset, invalid UTF-8
 * subjects, the backtracking bound on a catastrophic pattern, and matching from several
 * threads at once. Cases are a data table.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "regex.h"

static const struct {
    const char *pattern, *subject;
    int want;
} cases[] = {
    {"/api/v[0-9]+/users", "/api/v2/users", 1},
    {"/api/v[0-9]+/users", "/api/v2/users/7", 0}, /* anchored at the end */
    {"/api/v[0-9]+/users", "x/api/v2/users", 0},  /* and at the start */
    {"/api/v[0-9]+/users.*", "/api/v2/users/7", 1},
    {"(?i)/Shop", "/shop", 1},
    {"/caf\xc3\xa9", "/caf\xc3\xa9", 1}, /* UTF-8 pattern and subject */
    {"/caf.", "/caf\xc3\xa9", 1},        /* '.' is one character, not one byte */
    {"/caf.", "/caf\xe9", 0},            /* not UTF-8: no match (and no crash) */
    {"[a-z]+", "", 0},
    {".*", "", 1},
    {"Mozilla/5\\.0 .*Firefox/[0-9.]+", "Mozilla/5.0 (X11; Linux) Firefox/121.0", 1},
    {"a|b", "ab", 0},
};

static void test_table(void **state)
{
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct regex *re = regex_compile(cases[i].pattern, err, sizeof(err));
        if (!re) fail_msg("case %zu: %s", i, err);
        if (regex_match(re, cases[i].subject, strlen(cases[i].subject)) != cases[i].want)
            fail_msg("case %zu: /%s/ on \"%s\" should give %d", i, cases[i].pattern,
                     cases[i].subject, cases[i].want);
        regex_free(re);
    }
}

static void test_compile_errors(void **state)
{
    char err[256], big[REGEX_MAX_PATTERN + 2];

    (void)state;
    assert_null(regex_compile("/a(b", err, sizeof(err)));
    assert_non_null(strstr(err, "missing closing parenthesis"));
    assert_non_null(strstr(err, "at offset 4"));
    assert_null(regex_compile("[z-a]", err, sizeof(err)));
    assert_non_null(strstr(err, "range out of order"));
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_null(regex_compile(big, err, sizeof(err)));
    assert_non_null(strstr(err, "longer than"));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * (x+x+)+[^x] against "xxx...x": exponential backtracking without a limit (a literal at
 * the end, as in (a+)+b, lets PCRE2 see at once that it cannot match)
 */
static void test_catastrophic_pattern_is_bounded(void **state)
{
    char err[256], subject[64];
    struct regex *re = regex_compile("(x+x+)+[^x]", err, sizeof(err));
    unsigned long before = regex_limit_hits();
    double t0;

    (void)state;
    assert_non_null(re);
    memset(subject, 'x', sizeof(subject) - 1);
    subject[sizeof(subject) - 1] = '\0';
    t0 = now();
    assert_int_equal(regex_match(re, subject, strlen(subject)), 0);
    /* 2^63 steps unbounded; the limit stops it long before a second (generous for ASan) */
    assert_true(now() - t0 < 1.0);
    assert_true(regex_limit_hits() == before + 1);
    /* a plain non-match and an invalid subject are not limit hits */
    assert_int_equal(regex_match(re, "xxy", 3), 1);
    assert_int_equal(regex_match(re, "yy", 2), 0);
    assert_int_equal(regex_match(re, "\xff", 1), 0);
    assert_true(regex_limit_hits() == before + 1);
    regex_free(re);
}

struct job {
    const struct regex *re;
    int hits;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    char path[32];

    for (int i = 0; i < 20000; i++) {
        int n = snprintf(path, sizeof(path), "/item/%d", i);
        j->hits += regex_match(j->re, path, (size_t)n);
    }
    regex_thread_end();
    return NULL;
}

static void test_threads_share_the_compiled_code(void **state)
{
    char err[256];
    struct regex *re = regex_compile("/item/[0-9]*7", err, sizeof(err));
    struct job jobs[4];
    pthread_t t[4];

    (void)state;
    assert_non_null(re);
    for (int i = 0; i < 4; i++) {
        jobs[i].re = re;
        jobs[i].hits = 0;
        assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(jobs[i].hits, 2000); /* every number ending in 7 below 20000 */
    }
    regex_free(re);
}

static void test_jit_when_available(void **state)
{
    char err[256];
    struct regex *re = regex_compile("/x", err, sizeof(err));

    (void)state;
    assert_non_null(re);
    /* x86-64 Debian's PCRE2 has JIT: the snapshot build compiles machine code */
#if defined(__x86_64__)
    assert_int_equal(regex_is_jit(re), 1);
#endif
    assert_int_equal(regex_match(re, "/x", 2), 1);
    regex_free(re);
    regex_thread_end();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_catastrophic_pattern_is_bounded),
        cmocka_unit_test(test_threads_share_the_compiled_code),
        cmocka_unit_test(test_jit_when_available),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
