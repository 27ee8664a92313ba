/*
 * netaddr unit tests: "ADDR:PORT" parsing as a data table, formatting round trips, canonical
 * IP text (a table), and a
 * real listening socket (non-blocking, close-on-exec, port 0 resolved by netaddr_local).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "netaddr.h"

struct parse_case {
    const char *spec;
    const char *want; /* formatted result, NULL = must fail */
};

static const struct parse_case cases[] = {
    {"127.0.0.1:8081", "127.0.0.1:8081"},
    {"localhost:8081", "127.0.0.1:8081"},
    {"[::1]:8081", "[::1]:8081"},
    {"[::]:80", "[::]:80"},
    {":9000", "0.0.0.0:9000"},
    {"0.0.0.0:0", "0.0.0.0:0"},
    {"10.1.2.3:65535", "10.1.2.3:65535"},
    {"127.0.0.1:65536", NULL},
    {"127.0.0.1:-1", NULL},
    {"127.0.0.1:+80", NULL},
    {"127.0.0.1:", NULL},
    {"127.0.0.1", NULL},
    {"127.0.0.1:80x", NULL},
    {"::1:80", NULL},
    {"[::1]80", NULL},
    {"[::1", NULL},
    {"[127.0.0.1]:80", NULL},
    {"[localhost]:80", NULL},
    {"example.com:80", NULL},
    {"", NULL},
};

static void test_parse_table(void **state)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    char err[256], buf[NETADDR_STRLEN];
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        rc = netaddr_parse(cases[i].spec, &ss, &sl, err, sizeof(err));
        if (!cases[i].want) {
            if (rc != -1 || !err[0]) fail_msg("\"%s\" should fail", cases[i].spec);
            continue;
        }
        if (rc != 0) fail_msg("\"%s\": %s", cases[i].spec, err);
        netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf));
        if (strcmp(buf, cases[i].want))
            fail_msg("\"%s\" gave %s, want %s", cases[i].spec, buf, cases[i].want);
    }
}

/* One address, one text: inet_ntop's spelling, IPv4-mapped IPv6 as IPv4, no port. */
static void test_ip_canonical(void **state)
{
    static const struct parse_case rows[] = {
        {"10.0.9.9", "10.0.9.9"},
        {"FD00:0:0::5", "fd00::5"},
        {"::ffff:10.0.9.9", "10.0.9.9"},
        {"::FFFF:a00:909", "10.0.9.9"},
        {"::10.0.9.9", "::10.0.9.9"}, /* IPv4-compatible is not mapped: stays IPv6 */
        {"::1", "::1"},
        {"010.0.9.9", NULL},
        {"10.0.9", NULL},
        {"[::1]", NULL},
        {"10.0.9.9:80", NULL},
        {"fe80::1%eth0", NULL},
        {"", NULL},
    };
    char out[46];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = netaddr_ip_canonical(rows[i].spec, out, sizeof(out));
        if (!rows[i].want) {
            if (rc != -1 || out[0]) fail_msg("\"%s\" accepted as %s", rows[i].spec, out);
            continue;
        }
        if (rc || strcmp(out, rows[i].want))
            fail_msg("\"%s\" gave %d %s, want %s", rows[i].spec, rc, out, rows[i].want);
    }
}

static void test_listen(void **state)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    char err[256], buf[NETADDR_STRLEN];
    int fd, fd2;

    (void)state;
    assert_int_equal(netaddr_parse("127.0.0.1:0", &ss, &sl, err, sizeof(err)), 0);
    fd = netaddr_listen((struct sockaddr *)&ss, sl, err, sizeof(err));
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    netaddr_local(fd, buf, sizeof(buf));
    assert_true(!strncmp(buf, "127.0.0.1:", 10));
    assert_string_not_equal(buf, "127.0.0.1:0");
    /* the same port again fails with an error naming the address */
    assert_int_equal(netaddr_parse(buf, &ss, &sl, err, sizeof(err)), 0);
    fd2 = netaddr_listen((struct sockaddr *)&ss, sl, err, sizeof(err));
    assert_int_equal(fd2, -1);
    assert_non_null(strstr(err, buf));
    close(fd);
}

/* netaddr_unmap: one form per address (v4-mapped IPv6 as IPv4, no flow label), port kept */
static void test_unmap(void **state)
{
    static const struct {
        const char *spec, *want;
        socklen_t len;
    } c[] = {
        {"10.0.0.1:80", "10.0.0.1:80", sizeof(struct sockaddr_in)},
        {"[::ffff:10.0.0.1]:8080", "10.0.0.1:8080", sizeof(struct sockaddr_in)},
        {"[fd00::1]:443", "[fd00::1]:443", sizeof(struct sockaddr_in6)},
        {"[::1]:1", "[::1]:1", sizeof(struct sockaddr_in6)},
    };
    struct sockaddr_storage ss, out, b;
    socklen_t sl, ol, bl;
    char err[256], buf[NETADDR_STRLEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        assert_int_equal(netaddr_parse(c[i].spec, &ss, &sl, err, sizeof(err)), 0);
        if (ss.ss_family == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_flowinfo = htonl(7);
        assert_int_equal(netaddr_unmap((struct sockaddr *)&ss, &out, &ol), 0);
        assert_int_equal(ol, c[i].len);
        assert_string_equal(netaddr_format((struct sockaddr *)&out, buf, sizeof(buf)), c[i].want);
        /* the canonical form compares equal to the address parsed from its text */
        assert_int_equal(netaddr_parse(c[i].want, &b, &bl, err, sizeof(err)), 0);
        assert_true(netaddr_equal((struct sockaddr *)&out, (struct sockaddr *)&b));
        assert_int_equal(memcmp(&out, &b, bl), 0);
    }
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(netaddr_unmap((struct sockaddr *)&ss, &out, &ol), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_ip_canonical),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_unmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
