/* units: the size syntax of --client-max-body-size and strait.dev/proxy-body-size, as a table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "units.h"

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } rows[] = {
        {"0", 0, 0},
        {"1", 0, 1},
        {"1000", 0, 1000},
        {"8k", 0, 8192},
        {"8K", 0, 8192},
        {"1m", 0, 1048576},
        {"10M", 0, 10485760},
        {"2g", 0, 2147483648ull},
        {"2G", 0, 2147483648ull},
        {"0k", 0, 0},
        {"007", 0, 7},
        {"18446744073709551615", 0, UINT64_MAX},
        {"17179869183G", 0, 17179869183ull << 30}, /* largest whole number of GiB */
        {"18446744073709551616", -1, 0},           /* one past UINT64_MAX */
        {"17179869184G", -1, 0},                   /* 2^34 GiB = 2^64 bytes */
        {"99999999999999999999k", -1, 0},
        {"", -1, 0},
        {"k", -1, 0},
        {"-1", -1, 0},
        {"+1", -1, 0},
        {" 1", -1, 0},
        {"1 ", -1, 0},
        {"1 k", -1, 0},
        {"1kb", -1, 0},
        {"1kk", -1, 0},
        {"1.5m", -1, 0},
        {"1t", -1, 0},
        {"1b", -1, 0},
        {"0x10", -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t v = 12345;
        int rc = units_parse_size(rows[i].in, &v);
        if (rc != rows[i].rc || (rc == 0 && v != rows[i].want))
            fail_msg("\"%s\": rc %d value %llu, want rc %d value %llu", rows[i].in, rc,
                     (unsigned long long)v, rows[i].rc, (unsigned long long)rows[i].want);
        if (rc < 0) assert_int_equal(v, 12345); /* untouched on error */
    }
    assert_int_equal(units_parse_size(NULL, NULL), -1);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } rows[] = {
        {"0", 0, 0},
        {"20", 0, 20000},
        {"20s", 0, 20000},
        {"1m", 0, 60000},
        {"24h", 0, 86400000},
        {"1d", 0, 86400000},
        {"500ms", 0, 500},
        {"1h30m", 0, 5400000},
        {"1m1s1ms", 0, 61001},
        {"18446744073709551s", 0, 18446744073709551000ull},
        {"18446744073709552s", -1, 0}, /* overflows in milliseconds */
        {"18446744073709551616", -1, 0},
        {"", -1, 0},
        {"s", -1, 0},
        {"-1s", -1, 0},
        {"1.5s", -1, 0},
        {"1 s", -1, 0},
        {"1x", -1, 0},
        {"1sm", -1, 0},
        {"1h 2m", -1, 0},
        {"10us", -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t v = 12345;
        int rc = units_parse_duration(rows[i].in, &v);
        if (rc != rows[i].rc || (rc == 0 && v != rows[i].want))
            fail_msg("\"%s\": rc %d value %llu, want rc %d value %llu", rows[i].in, rc,
                     (unsigned long long)v, rows[i].rc, (unsigned long long)rows[i].want);
        if (rc < 0) assert_int_equal(v, 12345);
    }
    assert_int_equal(units_parse_duration(NULL, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
