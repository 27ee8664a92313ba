/*
 * kube_client's helpers: Retry-After (seconds and HTTP-date), query escaping, meta/v1 Status
 * bodies; and that a client refuses bad settings. Requests themselves run end to end against
 * the stand-in API server (tests/e2e/test_cluster_mode.py): no HTTP layer is stubbed here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../controller/kube_client.c"

static void test_retry_after(void **state)
{
    time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */

    (void)state;
    assert_true(kc_parse_retry_after("3", now) == 3.);
    assert_true(kc_parse_retry_after(" 120\r\n", now) == 120.);
    assert_true(kc_parse_retry_after("0", now) == 0.);
    assert_true(kc_parse_retry_after("Tue, 14 Nov 2023 22:13:25 GMT\r\n", now) == 5.);
    assert_true(kc_parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now) == 0.); /* past */
    assert_true(kc_parse_retry_after("soon", now) == -1.);
    assert_true(kc_parse_retry_after("3s", now) == -1.);
    assert_true(kc_parse_retry_after("", now) == -1.);
}

static void test_escape(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(kube_client_escape("type=kubernetes.io/tls", out, sizeof(out)), 0);
    assert_string_equal(out, "type%3Dkubernetes.io%2Ftls");
    assert_int_equal(kube_client_escape("eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ==", out, sizeof(out)), 0);
    assert_string_equal(out, "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ%3D%3D");
    assert_int_equal(kube_client_escape("a b&c", out, sizeof(out)), 0);
    assert_string_equal(out, "a%20b%26c");
    assert_int_equal(kube_client_escape("abcd", out, 5), 0);
    assert_int_equal(kube_client_escape("abcde", out, 5), -1);
    assert_int_equal(kube_client_escape("ab/", out, 5), -1);
}

static void test_status(void **state)
{
    static const char gone[] =
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
        "\"message\":\"The provided continue parameter is too old\",\"reason\":\"Expired\","
        "\"code\":410}";
    struct kube_status st;

    (void)state;
    assert_int_equal(kube_client_parse_status(gone, strlen(gone), &st), 0);
    assert_int_equal(st.code, 410);
    assert_string_equal(st.reason, "Expired");
    assert_string_equal(st.message, "The provided continue parameter is too old");
    assert_int_equal(kube_client_parse_status("{\"kind\":\"Service\"}", 18, &st), -1);
    assert_int_equal(kube_client_parse_status("<html>", 6, &st), -1);
    assert_int_equal(kube_client_parse_status("", 0, &st), -1);
    assert_int_equal(st.code, 0);
}

static void test_bad_settings(void **state)
{
    struct kube_config cfg;
    char err[256];

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_null(kube_client_new(ev_default_loop(0), &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "server"));
    cfg.server = "https://127.0.0.1:1";
    cfg.token_file = "/nonexistent/token";
    assert_null(kube_client_new(ev_default_loop(0), &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/token"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_bad_settings),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
