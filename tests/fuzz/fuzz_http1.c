/*
 * fuzz_http1: libFuzzer target for dataplane/http1.c, the parser that sees every byte a client
 * or an upstream sends.
 *
 * Does: treat the input as a client byte stream (request heads, bodies, pipelined requests)
 * and as an upstream stream (response head + body), and as a bare chunked body; check that
 * each parser's answer does not depend on how the bytes were split across reads, and that
 * what it returns points inside the input and obeys the documented contract.
 * Does not: test semantics the unit tables already pin (which status for which input).
 * Invariants checked with abort(), so libFuzzer records the input: results lie inside the
 * buffer; a complete head found in a prefix is the head found in the whole; an error in a
 * prefix is an error in the whole; the chunked tracker gives the same verdict and end fed
 * whole, one byte at a time, or in data-derived pieces; request_info never accepts two
 * framings (the request-smuggling shape).
 * Every parse reads from an allocation that ends where its input ends (libFuzzer's own copy of
 * the input, or an exact-size copy of a prefix or piece), so ASan catches any read past it.
 */
#include "http1.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http1: invariant failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_MESSAGES 8 /* pipelined requests followed per input */

static char *dup_exact(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);

    CHECK(c != NULL);
    if (n) memcpy(c, p, n);
    return c;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int inside(const char *base, size_t n, const char *p, size_t len)
{
    return p >= base && (size_t)(p - base) <= n && len <= n - (size_t)(p - base);
}

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void check_headers(const char *buf, size_t n, const struct http1_header *h, size_t nh)
{
    CHECK(nh <= HTTP1_MAX_HEADERS);
    for (size_t i = 0; i < nh; i++) {
        CHECK(h[i].name_len > 0);
        CHECK(inside(buf, n, h[i].name, h[i].name_len));
        CHECK(inside(buf, n, h[i].value, h[i].value_len));
        CHECK(h[i].value >= h[i].name + h[i].name_len + 1); /* after the ':' */
        for (size_t j = 0; j < h[i].name_len; j++)
            CHECK(is_tchar((unsigned char)h[i].name[j]));
        for (size_t j = 0; j < h[i].value_len; j++) {
            unsigned char c = (unsigned char)h[i].value[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h[i].value_len) {
            CHECK(h[i].value[0] != ' ' && h[i].value[0] != '\t');
            CHECK(h[i].value[h[i].value_len - 1] != ' ' && h[i].value[h[i].value_len - 1] != '\t');
        }
        (void)http1_is_hop_header(h, nh, &h[i]);
    }
}

static void same_headers(const char *a, const struct http1_header *ha, const char *b,
                         const struct http1_header *hb, size_t nh)
{
    for (size_t i = 0; i < nh; i++) {
        CHECK(ha[i].name - a == hb[i].name - b && ha[i].name_len == hb[i].name_len);
        CHECK(ha[i].value - a == hb[i].value - b && ha[i].value_len == hb[i].value_len);
    }
}

/*
 * Chunked tracker on buf[0..len): fed whole, byte by byte, and in pieces whose sizes come
 * from seed. All three must agree on the verdict and, when the body ends, where. Returns the
 * whole-feed result.
 */
static ssize_t check_chunked(const char *buf, size_t len, uint64_t seed)
{
    struct http1_chunked c;
    ssize_t whole, r = -2;
    size_t pos;
    char *copy = dup_exact(buf, len);

    http1_chunked_init(&c);
    whole = http1_chunked_feed(&c, copy, len);
    CHECK(whole == -1 || whole == -2 || (whole > 0 && (size_t)whole <= len));

    /* one byte at a time, from a one-byte allocation */
    http1_chunked_init(&c);
    char *one = dup_exact("", 1);
    for (pos = 0; pos < len; pos++) {
        one[0] = copy[pos];
        r = http1_chunked_feed(&c, one, 1);
        CHECK(r == -1 || r == -2 || r == 1);
        if (r != -2) break;
    }
    free(one);
    if (len == 0)
        CHECK(whole == -2);
    else if (whole == -1)
        CHECK(r == -1);
    else if (whole == -2)
        CHECK(r == -2 && pos == len);
    else
        CHECK(r == 1 && pos + 1 == (size_t)whole);

    /* data-derived pieces of 1..64 bytes */
    http1_chunked_init(&c);
    r = -2;
    for (pos = 0; pos < len && r == -2;) {
        size_t piece = 1 + (size_t)(seed % 64);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        if (piece > len - pos) piece = len - pos;
        char *p = dup_exact(copy + pos, piece);
        r = http1_chunked_feed(&c, p, piece);
        free(p);
        CHECK(r == -1 || r == -2 || (r > 0 && (size_t)r <= piece));
        if (r >= 0) r += (ssize_t)pos;
        pos += piece;
    }
    CHECK(r == whole || (len == 0 && whole == -2));
    free(copy);
    return whole;
}

/*
 * Request head at buf[0..len) (inside libFuzzer's exact-size input, so ASan guards its end):
 * whole, then prefixes (k, and up to the first LF) in their own allocations. Returns the whole
 * result; *req and *status describe it.
 */
static int check_request_head(const char *buf, size_t len, size_t k, struct http1_request *req,
                              int *status)
{
    static struct http1_request pre; /* large: keep off the stack */
    int r, rp, st = 0, stp = 0;
    const char *copy = buf;
    char *pcopy;

    r = http1_parse_request(copy, len, req, &st);
    CHECK(r == -1 || r == -2 || (r > 0 && (size_t)r <= len));
    if (r == -1) CHECK(st == 400 || st == 414 || st == 431 || st == 505);
    if (r > 0) {
        size_t n = (size_t)r;
        CHECK(n <= HTTP1_MAX_HEAD);
        CHECK(copy[n - 1] == '\n');
        CHECK(req->method_len > 0 && req->target_len > 0);
        CHECK(inside(copy, n, req->line, req->line_len));
        CHECK(req->method == req->line && inside(copy, n, req->method, req->method_len));
        CHECK(inside(req->line, req->line_len, req->target, req->target_len));
        CHECK(req->line_len <= HTTP1_MAX_REQUEST_LINE);
        CHECK(req->minor_version >= 0 && req->minor_version <= 9);
        check_headers(copy, n, req->headers, req->num_headers);
    }
    *status = st;

    /*
     * The same bytes arriving in two reads: the first read sees only a prefix - of a
     * data-derived length, and ending just before the first LF (a CR waiting for its LF).
     */
    const char *lf = memchr(copy, '\n', len);
    size_t splits[2] = {k, lf ? (size_t)(lf - copy) : len};
    for (int s = 0; s < 2; s++) {
        k = splits[s] > len ? len : splits[s];
        pcopy = dup_exact(copy, k);
        rp = http1_parse_request(pcopy, k, &pre, &stp);
        CHECK(rp == -1 || rp == -2 || (rp > 0 && (size_t)rp <= k));
        if (rp > 0) {
            /* a head complete in the prefix is the head of the whole */
            CHECK(r == rp);
            CHECK(pre.num_headers == req->num_headers && pre.minor_version == req->minor_version);
            CHECK(pre.method_len == req->method_len && pre.target_len == req->target_len);
            CHECK(pre.target - pcopy == req->target - copy && pre.line_len == req->line_len);
            same_headers(pcopy, pre.headers, copy, req->headers, pre.num_headers);
        } else if (rp == -1) {
            CHECK(r == -1); /* an error stays an error when more bytes arrive */
        }
        if (r > 0 && k < (size_t)r) CHECK(rp == -2);
        if (r == -2) CHECK(rp == -2);
        free(pcopy);
    }

    /* the classic incremental pattern: one byte short of the head must ask for more */
    if (r > 1) {
        pcopy = dup_exact(copy, (size_t)r - 1);
        CHECK(http1_parse_request(pcopy, (size_t)r - 1, &pre, &stp) == -2);
        free(pcopy);
    }
    return r;
}

/* Framing must be unambiguous when request_info accepts: the request-smuggling invariant. */
static void check_request_info(const char *head, size_t n, const struct http1_request *req,
                               uint64_t *body_len, int *chunked)
{
    struct http1_msginfo info;
    int st = 0, r;
    size_t i, n_cl = 0, n_te = 0, n_host = 0;

    r = http1_request_info(req, &info, &st);
    *body_len = 0;
    *chunked = -1; /* unusable */
    if (r < 0) {
        CHECK(r == -1 && (st == 400 || st == 405 || st == 501));
        return;
    }
    CHECK(r == 0);
    for (i = 0; i < req->num_headers; i++) {
        if (http1_name_is(&req->headers[i], "content-length")) n_cl++;
        if (http1_name_is(&req->headers[i], "transfer-encoding")) n_te++;
        if (http1_name_is(&req->headers[i], "host")) n_host++;
    }
    CHECK(!(n_cl && n_te));
    CHECK(n_host <= 1);
    CHECK(!(req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0));
    if (n_te) CHECK(info.body == HTTP1_BODY_CHUNKED && req->minor_version >= 1);
    if (info.body == HTTP1_BODY_CHUNKED) CHECK(n_te > 0);
    if (info.body == HTTP1_BODY_LENGTH) CHECK(n_cl > 0 && info.content_length > 0);
    if (info.body == HTTP1_BODY_NONE) CHECK(n_te == 0 && info.content_length == 0);
    CHECK(info.body != HTTP1_BODY_UNTIL_CLOSE);
    if (req->minor_version >= 1) CHECK(info.host != NULL);
    if (info.host) CHECK(inside(head, n, info.host, info.host_len));
    CHECK(inside(req->target, req->target_len, info.path, info.path_len));
    switch (info.target_form) {
    case HTTP1_TARGET_ORIGIN:
        CHECK(info.path == req->target && info.path_len == req->target_len);
        CHECK(info.path[0] == '/');
        break;
    case HTTP1_TARGET_ASTERISK:
        CHECK(req->target_len == 1 && req->target[0] == '*');
        break;
    case HTTP1_TARGET_ABSOLUTE:
        CHECK(info.host && inside(req->target, req->target_len, info.host, info.host_len));
        CHECK(info.host_len > 0);
        CHECK(info.path_len == 0 || info.path[0] == '/' || info.path[0] == '?');
        for (i = 0; i < info.host_len; i++)
            CHECK(info.host[i] != '@' && info.host[i] != '/');
        break;
    default:
        CHECK(0);
    }
    if (info.body == HTTP1_BODY_LENGTH) *body_len = info.content_length;
    *chunked = info.body == HTTP1_BODY_CHUNKED;
}

/* The input as a client stream: up to MAX_MESSAGES pipelined requests with their bodies. */
static void fuzz_requests(const char *buf, size_t len, uint64_t seed)
{
    static struct http1_request req;
    size_t pos = 0;

    for (int m = 0; m < MAX_MESSAGES && pos < len; m++) {
        size_t rest = len - pos, k = (size_t)(seed % (rest + 1));
        uint64_t body_len;
        int st, chunked, r;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        r = check_request_head(buf + pos, rest, k, &req, &st);
        if (r <= 0) return;
        check_request_info(buf + pos, (size_t)r, &req, &body_len, &chunked);
        if (chunked < 0) return;
        pos += (size_t)r;
        if (chunked) {
            ssize_t b = check_chunked(buf + pos, len - pos, seed);
            if (b < 0) return;
            pos += (size_t)b;
        } else {
            if (body_len > len - pos) return;
            pos += (size_t)body_len;
        }
    }
}

/* The input as an upstream stream: one response head, then its body framing. */
static void fuzz_response(const char *buf, size_t len, uint64_t seed)
{
    static struct http1_response res, pre;
    struct http1_msginfo info;
    size_t k = (size_t)(seed % (len + 1));
    int r, rp, st = 0, stp = 0;
    const char *copy = buf;
    char *pcopy = dup_exact(buf, k);

    r = http1_parse_response(copy, len, &res, &st);
    CHECK(r == -1 || r == -2 || (r > 0 && (size_t)r <= len));
    if (r == -1) CHECK(st == 502);
    rp = http1_parse_response(pcopy, k, &pre, &stp);
    CHECK(rp == -1 || rp == -2 || (rp > 0 && (size_t)rp <= k));
    if (rp > 0) {
        CHECK(r == rp && pre.status == res.status && pre.num_headers == res.num_headers);
        CHECK(pre.reason_len == res.reason_len);
        same_headers(pcopy, pre.headers, copy, res.headers, pre.num_headers);
    } else if (rp == -1) {
        CHECK(r == -1);
    }
    if (r > 0 && k < (size_t)r) CHECK(rp == -2);
    if (r == -2) CHECK(rp == -2);
    free(pcopy);
    if (r > 0) {
        size_t n = (size_t)r;
        CHECK(n <= HTTP1_MAX_HEAD && copy[n - 1] == '\n');
        CHECK(res.status >= 100 && res.status <= 999);
        CHECK(res.minor_version >= 0 && res.minor_version <= 9);
        CHECK(inside(copy, n, res.reason, res.reason_len));
        check_headers(copy, n, res.headers, res.num_headers);
        for (int head = 0; head <= 1; head++) {
            if (http1_response_info(&res, head, &info) < 0) continue;
            if (head || res.status < 200 || res.status == 204 || res.status == 304)
                CHECK(info.body == HTTP1_BODY_NONE);
            if (info.host) CHECK(inside(copy, n, info.host, info.host_len));
            if (info.body == HTTP1_BODY_LENGTH) CHECK(info.content_length > 0);
            if (!head && info.body == HTTP1_BODY_CHUNKED)
                (void)check_chunked(copy + n, len - n, seed);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    uint64_t seed = fnv1a(data, size);

    fuzz_requests(buf, size, seed);
    fuzz_response(buf, size, seed >> 7);
    (void)check_chunked(buf, size, seed >> 13);
    return 0;
}
