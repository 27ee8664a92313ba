/*
 * meshinit: flag parsing (ports, CIDRs) and the iptables-restore text it builds. Applying the
 * rules and what they do to real connections is tested in network namespaces the test makes
 * (tests/e2e/test_mesh_init.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../controller/meshinit.c"

static void test_ports(void **state)
{
    uint16_t p[MESHINIT_MAX_PORTS];
    unsigned n;
    char err[256], many[512];
    int i;

    (void)state;
    assert_int_equal(meshinit_parse_ports("", p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(meshinit_parse_ports("22,443,22,65535,1", p, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 4); /* the duplicate dropped */
    assert_int_equal(p[0], 22);
    assert_int_equal(p[1], 443);
    assert_int_equal(p[2], 65535);
    assert_int_equal(p[3], 1);
    static const char *bad[] = {"0", "65536", "22,,80", "80,", ",80", "8o", "-1", "123456", " 80"};
    for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
        err[0] = '\0';
        assert_int_equal(meshinit_parse_ports(bad[i], p, &n, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    many[0] = '\0';
    for (i = 1; i <= MESHINIT_MAX_PORTS + 1; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d", i > 1 ? "," : "",
                 1000 + i);
    assert_int_equal(meshinit_parse_ports(many, p, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than"));
}

static void test_cidrs(void **state)
{
    struct meshinit_cfg c;
    char err[256];

    (void)state;
    meshinit_defaults(&c);
    assert_int_equal(
        meshinit_parse_cidrs("10.96.0.0/12,169.254.169.254,0.0.0.0/0", &c, err, sizeof(err)), 0);
    assert_int_equal(c.n_cidrs, 3);
    assert_string_equal(c.cidrs[0].text, "10.96.0.0/12");
    assert_string_equal(c.cidrs[1].text, "169.254.169.254/32");
    assert_string_equal(c.cidrs[2].text, "0.0.0.0/0");
    assert_int_equal(meshinit_parse_cidrs("10.96.0.1/12", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "did you mean 10.96.0.0/12"));
    assert_int_equal(
        meshinit_parse_cidrs("FD00:0:0::/8,2001:db8::1,::/0,10.0.0.0/8", &c, err, sizeof(err)), 0);
    assert_int_equal(c.n_cidrs, 4);
    assert_string_equal(c.cidrs[0].text, "fd00::/8");
    assert_int_equal(c.cidrs[0].family, AF_INET6);
    assert_string_equal(c.cidrs[1].text, "2001:db8::1/128");
    assert_string_equal(c.cidrs[2].text, "::/0");
    assert_int_equal(c.cidrs[3].family, AF_INET);
    assert_int_equal(meshinit_parse_cidrs("2001:db8::1/64", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "did you mean 2001:db8::/64"));
    assert_int_equal(meshinit_parse_cidrs("2001:db8:0:0:8000::/65", &c, err, sizeof(err)), 0);
    assert_int_equal(meshinit_parse_cidrs("2001:db8:0:0:8000::/64", &c, err, sizeof(err)), -1);
    static const char *bad[] = {"10.0.0.0/33", "10.0.0/8", "fd00::/129",  "fd00::1/8",
                                "10.0.0.0/",   "/8",       "10.0.0.0/8,", "10.0.0.0/8x",
                                "host",        "::ffff::1"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(meshinit_parse_cidrs(bad[i], &c, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_rules(void **state)
{
    struct meshinit_cfg c;
    char out[16384], err[256], list[512];
    int n, i;

    (void)state;
    meshinit_defaults(&c);
    n = meshinit_rules(&c, AF_INET, out, sizeof(out), err, sizeof(err));
    assert_true(n > 0);
    assert_int_equal((int)strlen(out), n);
    /* the default table: both jumps, the proxy's UID and loopback left alone, one COMMIT */
    assert_non_null(strstr(out, "*nat\n"));
    assert_non_null(strstr(out, "-A PREROUTING -p tcp -j STRAIT_INBOUND\n"));
    assert_non_null(strstr(out, "-A OUTPUT -p tcp -j STRAIT_OUTBOUND\n"));
    assert_non_null(strstr(out, "-A STRAIT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 4143\n"));
    assert_non_null(strstr(out, "-A STRAIT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 4140\n"));
    assert_non_null(strstr(out, "-A STRAIT_OUTBOUND -m owner --uid-owner 2102 -j RETURN\n"));
    assert_non_null(strstr(out, "-A STRAIT_OUTBOUND -o lo -j RETURN\n"));
    assert_int_equal(count(out, "COMMIT\n"), 1);
    assert_null(strstr(out, "multiport"));
    /* the RETURNs come before the redirect in each chain */
    assert_true(strstr(out, "--uid-owner") < strstr(out, "-A STRAIT_OUTBOUND -p tcp -j"));

    /* 20 excluded ports: two multiport rules (15 + 5) */
    list[0] = '\0';
    for (i = 0; i < 20; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%d", i ? "," : "", 8000 + i);
    assert_int_equal(
        meshinit_parse_ports(list, c.out_excluded, &c.n_out_excluded, err, sizeof(err)), 0);
    assert_int_equal(meshinit_parse_cidrs("10.96.0.0/12", &c, err, sizeof(err)), 0);
    c.proxy_uid = 1337;
    n = meshinit_rules(&c, AF_INET, out, sizeof(out), err, sizeof(err));
    assert_true(n > 0);
    assert_int_equal(count(out, "-A STRAIT_OUTBOUND -p tcp -m multiport --dports "), 2);
    assert_non_null(strstr(out, "--dports 8000,8001,8002,8003,8004,8005,8006,8007,8008,8009,"
                                "8010,8011,8012,8013,8014 -j RETURN\n"));
    assert_non_null(strstr(out, "--dports 8015,8016,8017,8018,8019 -j RETURN\n"));
    assert_non_null(strstr(out, "-A STRAIT_OUTBOUND -d 10.96.0.0/12 -j RETURN\n"));
    assert_non_null(strstr(out, "--uid-owner 1337 "));
    assert_true(strstr(out, "-d 10.96.0.0/12") < strstr(out, "-A STRAIT_OUTBOUND -p tcp -j"));

    /* each family gets its own CIDRs only */
    assert_int_equal(meshinit_parse_cidrs("10.96.0.0/12,fd00:10:96::/112", &c, err, sizeof(err)),
                     0);
    n = meshinit_rules(&c, AF_INET6, out, sizeof(out), err, sizeof(err));
    assert_true(n > 0);
    assert_non_null(strstr(out, "(IPv6)"));
    assert_non_null(strstr(out, "-A STRAIT_OUTBOUND -d fd00:10:96::/112 -j RETURN\n"));
    assert_null(strstr(out, "10.96.0.0/12"));
    assert_non_null(strstr(out, "-A OUTPUT -p tcp -j STRAIT_OUTBOUND\n"));
    n = meshinit_rules(&c, AF_INET, out, sizeof(out), err, sizeof(err));
    assert_true(n > 0);
    assert_null(strstr(out, "fd00:10:96::/112"));
    assert_non_null(strstr(out, "-d 10.96.0.0/12 -j RETURN\n"));

    /* refused: same port twice, the inbound port excluded, no room */
    c.outbound_port = c.inbound_port;
    assert_int_equal(meshinit_rules(&c, AF_INET, out, sizeof(out), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "two different ports"));
    meshinit_defaults(&c);
    assert_int_equal(
        meshinit_parse_ports("4143", c.in_excluded, &c.n_in_excluded, err, sizeof(err)), 0);
    assert_int_equal(meshinit_rules(&c, AF_INET, out, sizeof(out), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot be excluded"));
    meshinit_defaults(&c);
    assert_int_equal(meshinit_rules(&c, AF_INET, out, 64, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "do not fit"));
}

static void test_main_dry_run_and_usage(void **state)
{
    char *ok[] = {"mesh-init", "--dry-run", "--inbound-port", "15006", NULL};
    char *bad[] = {"mesh-init", "--inbound-port", "x", NULL};
    char *badv6[] = {"mesh-init", "--ipv6", "maybe", NULL};
    char *extra[] = {"mesh-init", "--dry-run", "surplus", NULL};

    (void)state;
    assert_int_equal(meshinit_main(4, ok), 0);
    assert_int_equal(meshinit_main(3, bad), 2);
    assert_int_equal(meshinit_main(3, badv6), 2);
    assert_int_equal(meshinit_main(3, extra), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_cidrs),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_main_dry_run_and_usage),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
