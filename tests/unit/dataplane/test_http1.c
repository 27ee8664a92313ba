/*
 * HTTP/1 parser tables. Every input is copied so that its last byte sits right before a
 * PROT_NONE page: any read past the end crashes the test. Valid heads are also fed at every
 * split point to exercise the -2 path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "http1.c"

static char *guard_base;
static size_t guard_span;

/* Copies s[0..n) so that it ends at a guard page; returns the copy. */
static const char *at_guard(const char *s, size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t need = (n + pg - 1) / pg * pg + pg;

    if (guard_base) munmap(guard_base, guard_span);
    guard_span = need ? need : pg;
    guard_base =
        mmap(NULL, guard_span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(guard_base != MAP_FAILED);
    guard_span += pg;
    assert_int_equal(mprotect(guard_base + guard_span - pg, pg, PROT_NONE), 0);
    memcpy(guard_base + guard_span - pg - n, s, n);
    return guard_base + guard_span - pg - n;
}

static int teardown(void **state)
{
    (void)state;
    if (guard_base) munmap(guard_base, guard_span);
    guard_base = NULL;
    return 0;
}

static int parse_req(const char *s, size_t n, struct http1_request *req, int *status)
{
    return http1_parse_request(at_guard(s, n), n, req, status);
}

static const struct {
    const char *in;
    const char *method, *target;
    int minor;
    size_t nh;
    const char *h0name, *h0value;
} good_reqs[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", 1, 1, "Host", "a"},
    {"GET /a?b=c HTTP/1.0\r\n\r\n", "GET", "/a?b=c", 0, 0, NULL, NULL},
    {"POST /x HTTP/1.1\nHost: a\nContent-Length: 3\n\n", "POST", "/x", 1, 2, "Host", "a"},
    {"\r\nGET / HTTP/1.1\r\nHost:   spaced  \t\r\n\r\n", "GET", "/", 1, 1, "Host", "spaced"},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", "OPTIONS", "*", 1, 2, "Host", "a"},
    {"GET http://a/b HTTP/1.1\r\nHost: a\r\nX: \xc3\xa9t\xc3\xa9\r\n\r\n", "GET", "http://a/b", 1,
     2, "Host", "a"},
    /* values longer than one 16-byte scan: HTAB and obs-text inside, OWS trimmed */
    {"GET / HTTP/1.1\r\nX-Long: 0123456789abcdef\t0123456789\xc3\xa9 tail \t\r\nHost: a\r\n\r\n",
     "GET", "/", 1, 2, "X-Long", "0123456789abcdef\t0123456789\xc3\xa9 tail"},
    {"GET / HTTP/1.1\nX-Long: 0123456789abcdef0123456789abcdef\nHost: a\n\n", "GET", "/", 1, 2,
     "X-Long", "0123456789abcdef0123456789abcdef"},
};

static void test_good_requests(void **state)
{
    struct http1_request req;
    size_t i, cut;
    int status, r;

    (void)state;
    for (i = 0; i < sizeof(good_reqs) / sizeof(good_reqs[0]); i++) {
        const char *in = good_reqs[i].in;
        size_t n = strlen(in);

        r = parse_req(in, n, &req, &status);
        if (r != (int)n) fail_msg("case %zu: got %d want %zu", i, r, n);
        assert_int_equal(req.method_len, strlen(good_reqs[i].method));
        assert_memory_equal(req.method, good_reqs[i].method, req.method_len);
        assert_int_equal(req.target_len, strlen(good_reqs[i].target));
        assert_memory_equal(req.target, good_reqs[i].target, req.target_len);
        assert_int_equal(req.minor_version, good_reqs[i].minor);
        assert_int_equal(req.num_headers, good_reqs[i].nh);
        if (good_reqs[i].h0name) {
            assert_true(http1_name_is(&req.headers[0], good_reqs[i].h0name));
            assert_int_equal(req.headers[0].value_len, strlen(good_reqs[i].h0value));
            assert_memory_equal(req.headers[0].value, good_reqs[i].h0value,
                                req.headers[0].value_len);
        }
        for (cut = 0; cut < n; cut++) {
            r = parse_req(in, cut, &req, &status);
            if (r != -2) fail_msg("case %zu cut %zu: got %d want -2", i, cut, r);
        }
        /* trailing bytes (a pipelined request or a body) are not consumed */
        {
            char buf[512];
            snprintf(buf, sizeof(buf), "%sGET /next", in);
            r = parse_req(buf, strlen(buf), &req, &status);
            assert_int_equal(r, (int)n);
        }
    }
}

static const struct {
    const char *in;
    int status;
} bad_reqs[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400}, /* obs-fold */
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400}, /* bare CR */
    {"GET / HTTP/1.1\r\nX Y: a\r\n\r\n", 400},        /* space in name */
    {"GET / HTTP/1.1\r\nX : a\r\n\r\n", 400},         /* space before colon */
    {"GET / HTTP/1.1\r\n: a\r\n\r\n", 400},           /* empty name */
    {"GET / HTTP/1.1\r\nX(: a\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400}, /* control in value */
    {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400},
    {"GET  / HTTP/1.1\r\n\r\n", 400},
    /* RFC 9110 6.2: a well-formed version with major != 1 is 505, anything else 400 */
    {"GET / HTTP/2.0\r\n\r\n", 505},
    {"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
    {"GET / HTTP/0.9\r\n\r\n", 505},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
    {"GET / http/1.1\r\n\r\n", 400},
    {"GET / HTTP/1.10\r\n\r\n", 400},
    {"GET / HTTP/1\r\n\r\n", 400},
    {"GET / HTTP/1.x\r\n\r\n", 400},
    {"GET / HTTP/a.1\r\n\r\n", 400},
    {"GET / HTTP/11.1\r\n\r\n", 400},
    {"GET / HTTP/1.1 \r\n\r\n", 400},
    {"GET /\x01 HTTP/1.1\r\n\r\n", 400},
    {"G(T / HTTP/1.1\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\r\n\r\n", 400},
    {"/ HTTP/1.1\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
    /* control bytes past the first 16 bytes of a value (the vector scan) */
    {"GET / HTTP/1.1\r\nX: 0123456789abcdef0123456789\x01z\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nX: 0123456789abcdef01\x7f"
     "23456789abcdef\r\n\r\n",
     400},
    {"GET / HTTP/1.1\r\nX: 0123456789abcdef0123456789abcdef\rX: b\r\n\r\n", 400},
    /* an invalid byte is refused before its line (or the head) is complete */
    {"GET / HTTP/1.1\r\nX: 0123456789abcdef012\x01", 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb", 400},
};

static void test_bad_requests(void **state)
{
    struct http1_request req;
    size_t i;
    int status, r;

    (void)state;
    for (i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
        status = 0;
        r = parse_req(bad_reqs[i].in, strlen(bad_reqs[i].in), &req, &status);
        if (r != -1 || status != bad_reqs[i].status)
            fail_msg("case %zu: got %d status %d", i, r, status);
    }
}

static void test_limits(void **state)
{
    static char buf[HTTP1_MAX_HEAD + 4096];
    struct http1_request req;
    int status, r;
    size_t n;

    (void)state;
    /* request line over the limit, complete or not: 414 */
    n = (size_t)snprintf(buf, sizeof(buf), "GET /");
    memset(buf + n, 'a', HTTP1_MAX_REQUEST_LINE + 10);
    n += HTTP1_MAX_REQUEST_LINE + 10;
    r = parse_req(buf, n, &req, &status);
    assert_int_equal(r, -1);
    assert_int_equal(status, 414);
    n += (size_t)sprintf(buf + n, " HTTP/1.1\r\n\r\n");
    r = parse_req(buf, n, &req, &status);
    assert_int_equal(r, -1);
    assert_int_equal(status, 414);
    /* a request line of exactly the limit is fine, also when a read ends between CR and LF */
    n = (size_t)snprintf(buf, sizeof(buf), "GET /");
    memset(buf + n, 'a', HTTP1_MAX_REQUEST_LINE - 14);
    n += HTTP1_MAX_REQUEST_LINE - 14;
    n += (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    r = parse_req(buf, n, &req, &status);
    assert_int_equal(r, (int)n);
    r = parse_req(buf, HTTP1_MAX_REQUEST_LINE + 1, &req, &status); /* ends with the CR */
    assert_int_equal(r, -2);
    /* head over 64 KiB: 431 */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nX: ");
    memset(buf + n, 'a', HTTP1_MAX_HEAD);
    n += HTTP1_MAX_HEAD;
    r = parse_req(buf, n, &req, &status);
    assert_int_equal(r, -1);
    assert_int_equal(status, 431);
    /* too many headers: 431 */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
    for (r = 0; r < HTTP1_MAX_HEADERS + 1; r++)
        n += (size_t)sprintf(buf + n, "X%d: y\r\n", r);
    n += (size_t)sprintf(buf + n, "\r\n");
    r = parse_req(buf, n, &req, &status);
    assert_int_equal(r, -1);
    assert_int_equal(status, 431);
}

static const struct {
    const char *in;
    int rc, status;
    enum http1_body_kind body;
    uint64_t cl;
} info_cases[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0, HTTP1_BODY_NONE, 0},
    {"GET / HTTP/1.1\r\n\r\n", -1, 400, 0, 0}, /* no Host */
    {"GET / HTTP/1.0\r\n\r\n", 0, 0, HTTP1_BODY_NONE, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", 0, 0, HTTP1_BODY_LENGTH, 12},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, 0, HTTP1_BODY_NONE, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 0,
     HTTP1_BODY_LENGTH, 5},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, HTTP1_BODY_CHUNKED,
     0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", 0, 0,
     HTTP1_BODY_CHUNKED, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", -1,
     400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", -1,
     400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     -1, 400, 0, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -1, 501, 0, 0},
    /* several Transfer-Encoding lines: the last coding decides */
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     0, 0, HTTP1_BODY_CHUNKED, 0},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     -1, 400, 0, 0},
    /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing */
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -1, 400, 0, 0},
    {"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -1, 400, 0, 0},
    /* RFC 9110 7.6.2: Max-Forwards is checked on OPTIONS and TRACE only */
    {"OPTIONS / HTTP/1.1\r\nHost: a\r\nMax-Forwards: x\r\n\r\n", -1, 400, 0, 0},
    {"TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: \r\n\r\n", -1, 400, 0, 0},
    {"TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 1\r\nMax-Forwards: 1\r\n\r\n", -1, 400, 0, 0},
    {"OPTIONS / HTTP/1.1\r\nHost: a\r\nMax-Forwards: -1\r\n\r\n", -1, 400, 0, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nMax-Forwards: x\r\n\r\n", 0, 0, HTTP1_BODY_NONE, 0},
};

static const struct {
    const char *in;
    int present;
    uint32_t value;
} max_forwards_cases[] = {
    {"OPTIONS / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n", 1, 0},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\nmax-forwards:  7 \r\n\r\n", 1, 7},
    {"TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 00012\r\n\r\n", 1, 12},
    {"TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 999999999\r\n\r\n", 1, 999999999},
    {"TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 99999999999999999999999\r\n\r\n", 1,
     HTTP1_MAX_FORWARDS_CAP},
    {"OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0},
    {"GET / HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n", 0, 0},
};

static void test_max_forwards(void **state)
{
    struct http1_request req;
    struct http1_msginfo info;
    size_t i;
    int status;

    (void)state;
    for (i = 0; i < sizeof(max_forwards_cases) / sizeof(max_forwards_cases[0]); i++) {
        const char *in = max_forwards_cases[i].in;
        assert_true(parse_req(in, strlen(in), &req, &status) > 0);
        assert_int_equal(http1_request_info(&req, &info, &status), 0);
        if ((info.max_forwards != NULL) != max_forwards_cases[i].present ||
            (info.max_forwards && info.max_forwards_value != max_forwards_cases[i].value))
            fail_msg("case %zu: present %d value %u", i, info.max_forwards != NULL,
                     info.max_forwards_value);
    }
}

static void test_request_info(void **state)
{
    struct http1_request req;
    struct http1_msginfo info;
    size_t i;
    int status, r;

    (void)state;
    for (i = 0; i < sizeof(info_cases) / sizeof(info_cases[0]); i++) {
        r = parse_req(info_cases[i].in, strlen(info_cases[i].in), &req, &status);
        assert_true(r > 0);
        status = 0;
        r = http1_request_info(&req, &info, &status);
        if (r != info_cases[i].rc || (r < 0 && status != info_cases[i].status) ||
            (r == 0 &&
             (info.body != info_cases[i].body || info.content_length != info_cases[i].cl)))
            fail_msg("case %zu: rc %d status %d body %d cl %llu", i, r, status, info.body,
                     (unsigned long long)info.content_length);
    }
}

/* Request-target forms, Host grammar and CONNECT (RFC 9112 3.2, RFC 3986 3.2.2). */
static const struct {
    const char *in;
    int rc, status;
    enum http1_target_form form;
    const char *path; /* info.path */
    const char *host; /* info.host, NULL for none */
} target_cases[] = {
    {"GET /a?b HTTP/1.1\r\nHost: a.test\r\n\r\n", 0, 0, HTTP1_TARGET_ORIGIN, "/a?b", "a.test"},
    {"GET http://app.example.com/static/x HTTP/1.1\r\nHost: other\r\n\r\n", 0, 0,
     HTTP1_TARGET_ABSOLUTE, "/static/x", "app.example.com"},
    {"GET HTTP://App.Example.com:8080/s?q HTTP/1.1\r\nHost: other\r\n\r\n", 0, 0,
     HTTP1_TARGET_ABSOLUTE, "/s?q", "App.Example.com:8080"},
    {"GET hTTpS://a.test HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, HTTP1_TARGET_ABSOLUTE, "", "a.test"},
    {"GET http://a.test?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, HTTP1_TARGET_ABSOLUTE, "?q=1",
     "a.test"},
    {"GET http://[::1]:80/ HTTP/1.0\r\n\r\n", 0, 0, HTTP1_TARGET_ABSOLUTE, "/", "[::1]:80"},
    {"GET http://a.test/ HTTP/1.1\r\n\r\n", -1, 400, 0, NULL, NULL}, /* Host still required */
    {"GET ftp://a.test/x HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET httpx://a.test/x HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET http:/a.test/x HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET http://u:p@a.test/x HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET http://a.test:8x/ HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET a.test:80 HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0, HTTP1_TARGET_ASTERISK, "*", "a"},
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"options * HTTP/1.1\r\nHost: a\r\n\r\n", -1, 400, 0, NULL,
     NULL}, /* methods are case-sensitive */
    {"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", -1, 405, 0, NULL, NULL},
    {"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", -1, 405, 0, NULL, NULL},
    /* Host grammar: reg-name / IPv4 / IP-literal, optional all-digit port */
    {"GET / HTTP/1.1\r\nHost: a-b_c~d.test:8080\r\n\r\n", 0, 0, HTTP1_TARGET_ORIGIN, "/",
     "a-b_c~d.test:8080"},
    {"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", 0, 0, HTTP1_TARGET_ORIGIN, "/", "10.0.0.1"},
    {"GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", 0, 0, HTTP1_TARGET_ORIGIN, "/",
     "[2001:db8::1]:443"},
    {"GET / HTTP/1.1\r\nHost: %41.test\r\n\r\n", 0, 0, HTTP1_TARGET_ORIGIN, "/", "%41.test"},
    {"GET / HTTP/1.1\r\nHost: \r\n\r\n", 0, 0, HTTP1_TARGET_ORIGIN, "/", ""},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: []\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a<b>\r\n\r\n", -1, 400, 0, NULL, NULL},
    /* an invalid Host is rejected even when absolute-form makes it irrelevant */
    {"GET http://a.test/ HTTP/1.1\r\nHost: a b\r\n\r\n", -1, 400, 0, NULL, NULL},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", -1, 400, 0, NULL, NULL},
};

static void test_targets(void **state)
{
    struct http1_request req;
    struct http1_msginfo info;
    size_t i;
    int status, r;

    (void)state;
    for (i = 0; i < sizeof(target_cases) / sizeof(target_cases[0]); i++) {
        r = parse_req(target_cases[i].in, strlen(target_cases[i].in), &req, &status);
        if (r <= 0) fail_msg("case %zu: parse %d status %d", i, r, status);
        status = 0;
        r = http1_request_info(&req, &info, &status);
        if (r != target_cases[i].rc || (r < 0 && status != target_cases[i].status))
            fail_msg("case %zu: rc %d status %d", i, r, status);
        if (r < 0) continue;
        if (info.target_form != target_cases[i].form ||
            info.path_len != strlen(target_cases[i].path) ||
            memcmp(info.path, target_cases[i].path, info.path_len) != 0)
            fail_msg("case %zu: form %d path %.*s", i, info.target_form, (int)info.path_len,
                     info.path);
        if (!target_cases[i].host) {
            if (info.host) fail_msg("case %zu: unexpected host", i);
        } else if (!info.host || info.host_len != strlen(target_cases[i].host) ||
                   memcmp(info.host, target_cases[i].host, info.host_len) != 0) {
            fail_msg("case %zu: host %.*s", i, info.host ? (int)info.host_len : 4,
                     info.host ? info.host : "NULL");
        }
    }
}

static void test_hop_headers(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\n"
                             "Keep-Alive: 5\r\nX-Secret: 1\r\nTE: trailers\r\nUpgrade: h2c\r\n"
                             "Proxy-Connection: x\r\nTrailer: y\r\nX-Kept: 1\r\n\r\n";
    /* Trailer is end-to-end (RFC 9110 7.6.1): trailer fields travel with the chunked body */
    static const int hop[] = {0, 1, 1, 1, 1, 1, 1, 0, 0};
    struct http1_request req;
    struct http1_msginfo info;
    struct http1_hop hp;
    int status;
    size_t i;

    (void)state;
    assert_true(parse_req(in, sizeof(in) - 1, &req, &status) > 0);
    assert_int_equal(req.num_headers, 9);
    http1_hop_init(&hp, req.headers, req.num_headers);
    assert_false(hp.overflow);
    for (i = 0; i < req.num_headers; i++) {
        assert_int_equal(http1_is_hop_header(req.headers, req.num_headers, &req.headers[i]),
                         hop[i]);
        assert_int_equal(http1_hop_drop(&hp, &req.headers[i]), hop[i]);
    }
    assert_int_equal(http1_request_info(&req, &info, &status), 0);
    assert_true(info.conn_close);
}

/* More Connection options than struct http1_hop keeps: the answer must not change. */
static void test_hop_headers_many_options(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n"
                             "Connection: a1, a2, a3, a4, a5\r\nConnection: a6,a7 , a8, a9\r\n"
                             "A9: x\r\nA1: x\r\nB1: x\r\nconnection: KEEP-ALIVE, upgrade\r\n\r\n";
    static const int hop[] = {0, 1, 1, 1, 1, 0, 1};
    struct http1_request req;
    struct http1_hop hp;
    int status;
    size_t i;

    (void)state;
    assert_true(parse_req(in, sizeof(in) - 1, &req, &status) > 0);
    assert_int_equal(req.num_headers, 7);
    http1_hop_init(&hp, req.headers, req.num_headers);
    assert_true(hp.overflow);
    for (i = 0; i < req.num_headers; i++)
        assert_int_equal(http1_hop_drop(&hp, &req.headers[i]), hop[i]);
}

static const struct {
    const char *in;
    int head_req;
    int rc;
    int status;
    enum http1_body_kind body;
} resp_cases[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0, 0, 200, HTTP1_BODY_LENGTH},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, 0, 200, HTTP1_BODY_NONE},
    {"HTTP/1.1 204 No Content\r\n\r\n", 0, 0, 204, HTTP1_BODY_NONE},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 0, 0, 304, HTTP1_BODY_NONE},
    {"HTTP/1.1 100 Continue\r\n\r\n", 0, 0, 100, HTTP1_BODY_NONE},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, 200, HTTP1_BODY_CHUNKED},
    {"HTTP/1.0 200 OK\r\n\r\n", 0, 0, 200, HTTP1_BODY_UNTIL_CLOSE},
    {"HTTP/1.1 200\r\n\r\n", 0, 0, 200, HTTP1_BODY_UNTIL_CLOSE},
    {"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0, 0, 200, HTTP1_BODY_NONE},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, -1, 200, 0},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, -1, 200, 0},
    {"HTTP/1.1 20 OK\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 099 OK\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 0, -2, 0, 0},
    {"ICY 200 OK\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/2.0 200 OK\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.10 200 OK\r\n\r\n", 0, -2, 0, 0},
    /* RFC 9110 15: status codes outside 100..599 are invalid */
    {"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 999 Odd\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n", 0, 0, 599, HTTP1_BODY_NONE},
    /* RFC 9112 6.3: a final coding other than chunked is read until close */
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, 0, 200,
     HTTP1_BODY_UNTIL_CLOSE},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0,
     200, HTTP1_BODY_UNTIL_CLOSE},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 0, 200, HTTP1_BODY_UNTIL_CLOSE},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 1\r\n\r\n", 0, -1, 200,
     0},
    /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing */
    {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", 0, -1, 200,
     0},
    /* RFC 9112 5.1: whitespace before the colon is accepted in a response (and dropped) */
    {"HTTP/1.1 200 OK\r\nContent-Length \t: 3\r\n\r\n", 0, 0, 200, HTTP1_BODY_LENGTH},
    {"HTTP/1.1 200 OK\r\nX Y: a\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 200 OK\r\n : a\r\n\r\n", 0, -2, 0, 0},
    {"HTTP/1.1 200 OK\r\nX \r\n\r\n", 0, -2, 0, 0},
};

static void test_responses(void **state)
{
    struct http1_response res;
    struct http1_msginfo info;
    size_t i, n, cut;
    int r, status;

    (void)state;
    for (i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
        n = strlen(resp_cases[i].in);
        r = http1_parse_response(at_guard(resp_cases[i].in, n), n, &res, &status);
        if (resp_cases[i].rc == -2) { /* -2 here means "head rejected" */
            if (r != -1 || status != 502) fail_msg("case %zu: got %d", i, r);
            continue;
        }
        if (r != (int)n) fail_msg("case %zu: got %d want %zu", i, r, n);
        assert_int_equal(res.status, resp_cases[i].status);
        r = http1_response_info(&res, resp_cases[i].head_req, &info);
        assert_int_equal(r, resp_cases[i].rc);
        if (r == 0) assert_int_equal(info.body, resp_cases[i].body);
        for (cut = 0; cut < n; cut++) {
            r = http1_parse_response(at_guard(resp_cases[i].in, cut), cut, &res, &status);
            if (r != -2) fail_msg("case %zu cut %zu: got %d", i, cut, r);
        }
    }
}

static const struct {
    const char *in;
    ssize_t want; /* bytes of body, -1 error */
} chunk_cases[] = {
    {"0\r\n\r\n", 5},
    {"3\r\nabc\r\n0\r\n\r\n", 13},
    {"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1", 13},
    {"A;name=value;x=\"q\"\r\n0123456789\r\n0\r\n\r\n", 37},
    {"3 ;ext\r\nabc\r\n0\r\n\r\n", 18},
    {"1\r\na\r\n0;last\r\nX-Trailer: v\r\nY: w\r\n\r\n", 36},
    {"00010\r\n0123456789abcdef\r\n0\r\n\r\n", 30},
    {"g\r\n", -1},
    {"\r\n", -1},
    {"-1\r\n", -1},
    {"3\r\nabcd\r\n", -1},       /* data longer than size */
    {"3\nabc\r\n0\r\n\r\n", -1}, /* bare LF */
    {"3\r\nabc\n0\r\n\r\n", -1},
    {"3;a\rb\r\nabc\r\n", -1},    /* bare CR in extension */
    {"1000000000000000\r\n", -1}, /* 16 hex digits: overflow guard */
    {"0\r\n folded: x\r\n\r\n", -1},
    {"0\r\nbad trailer\r\n\r\n", -1},
    {"0\r\nX: a\x01\r\n\r\n", -1},
    /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val token / quoted */
    {"1 ; a = b ;c\t=\t\"d e\" ; f\r\nx\r\n0\r\n\r\n", 34},
    {"1;a=\"q\\\"\\\\;\"\r\nx\r\n0\r\n\r\n", 22},
    {"1;a=\"\"\r\nx\r\n0\r\n\r\n", 16},
    {"1;a=\"\xc3\xa9\"\r\nx\r\n0\r\n\r\n", 18},
    {"1;a=\"b\r\nx\r\n0\r\n\r\n", -1}, /* unterminated quoted-string */
    {"1;a=\"b\\\r\nx\r\n0\r\n\r\n", -1},
    {"1;\r\nx\r\n0\r\n\r\n", -1}, /* empty name */
    {"1;;a\r\nx\r\n0\r\n\r\n", -1},
    {"1;a=\r\nx\r\n0\r\n\r\n", -1}, /* empty value */
    {"1;a b\r\nx\r\n0\r\n\r\n", -1},
    {"1;a \r\nx\r\n0\r\n\r\n", -1}, /* BWS only before ';' or '=' */
    {"1;a=b \r\nx\r\n0\r\n\r\n", -1},
    {"1 \r\nx\r\n0\r\n\r\n", -1},
    {"1;a=b=c\r\nx\r\n0\r\n\r\n", -1},
    {"1;a=\"b\"c\r\nx\r\n0\r\n\r\n", -1},
    {"1;a(b\r\nx\r\n0\r\n\r\n", -1},
    {"1;a=\"\x01\"\r\nx\r\n0\r\n\r\n", -1},
    {"1;a=\"\x7f\"\r\nx\r\n0\r\n\r\n", -1},
    {"1;a=\"b\\\x01\"\r\nx\r\n0\r\n\r\n", -1},
    {"1;\xc3\xa9\r\nx\r\n0\r\n\r\n", -1},
    {"0;a=\"b\r\n\r\n", -1},
};

static void test_chunked(void **state)
{
    size_t i, n, cut;
    ssize_t r, r2;
    struct http1_chunked c;

    (void)state;
    for (i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
        const char *in = chunk_cases[i].in;
        n = strlen(in);
        http1_chunked_init(&c);
        r = http1_chunked_feed(&c, at_guard(in, n), n);
        if (chunk_cases[i].want < 0) {
            if (r != -1) fail_msg("case %zu: got %zd want -1", i, r);
            continue;
        }
        if (r != chunk_cases[i].want)
            fail_msg("case %zu: got %zd want %zd", i, r, chunk_cases[i].want);
        /* split in two at every point, then byte by byte */
        for (cut = 0; cut <= (size_t)chunk_cases[i].want; cut++) {
            http1_chunked_init(&c);
            r = http1_chunked_feed(&c, at_guard(in, cut), cut);
            if (cut < (size_t)chunk_cases[i].want) {
                if (r != -2) fail_msg("case %zu cut %zu: got %zd", i, cut, r);
                r2 = http1_chunked_feed(&c, at_guard(in + cut, n - cut), n - cut);
                if (r2 != chunk_cases[i].want - (ssize_t)cut)
                    fail_msg("case %zu cut %zu: second got %zd", i, cut, r2);
            }
        }
        http1_chunked_init(&c);
        for (cut = 0; cut < (size_t)chunk_cases[i].want; cut++) {
            r = http1_chunked_feed(&c, at_guard(in + cut, 1), 1);
            if (r != (cut + 1 == (size_t)chunk_cases[i].want ? 1 : -2))
                fail_msg("case %zu byte %zu: got %zd", i, cut, r);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_good_requests, teardown),
        cmocka_unit_test_teardown(test_bad_requests, teardown),
        cmocka_unit_test_teardown(test_limits, teardown),
        cmocka_unit_test_teardown(test_request_info, teardown),
        cmocka_unit_test_teardown(test_max_forwards, teardown),
        cmocka_unit_test_teardown(test_targets, teardown),
        cmocka_unit_test_teardown(test_hop_headers, teardown),
        cmocka_unit_test_teardown(test_hop_headers_many_options, teardown),
        cmocka_unit_test_teardown(test_responses, teardown),
        cmocka_unit_test_teardown(test_chunked, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
