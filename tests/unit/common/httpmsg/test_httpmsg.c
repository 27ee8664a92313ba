/* httpmsg: IMF-fixdate formatting and reason phrases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <locale.h>
#include <cmocka.h>

#include "httpmsg.h"

static void test_date(void **state)
{
    (void)state;
    char d[HTTPMSG_DATE_LEN];
    static const struct {
        time_t t;
        const char *want;
    } rows[] = {
        {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"}, /* the RFC 9110 example */
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {951782400, "Tue, 29 Feb 2000 00:00:00 GMT"},
        {1795478399, "Mon, 23 Nov 2026 23:59:59 GMT"},
    };
    setlocale(LC_ALL, "C.UTF-8");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        httpmsg_date(rows[i].t, d);
        assert_string_equal(d, rows[i].want);
    }
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(httpmsg_reason(404), "Not Found");
    assert_string_equal(httpmsg_reason(413), "Content Too Large");
    assert_string_equal(httpmsg_reason(401), "Unauthorized");
    assert_string_equal(httpmsg_reason(411), "Length Required");
    assert_string_equal(httpmsg_reason(505), "HTTP Version Not Supported");
    assert_string_equal(httpmsg_reason(299), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
