/*
 * snapwire unit tests: round trip, determinism, and truncated, corrupted and hostile frames.
 * Hostile frames get a recomputed CRC so they reach the structural checks, and every decode
 * reads from a buffer whose end touches a PROT_NONE page, so an over-read crashes the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "snapwire.h"

static struct snapwire_listener L[] = {{"http", "", 8080, SNAPWIRE_PROTO_HTTP}};
static struct snapwire_route R[] = {
    {.path = "/api",
     .match = SNAPWIRE_MATCH_EXACT,
     .cluster = 0,
     .source = "default/a",
     .max_body = SNAPWIRE_BODY_DEFAULT,
     .flags = SNAPWIRE_ROUTE_SSL_REDIRECT,
     .hsts = "max-age=600; includeSubDomains"},
    {.path = "/",
     .match = SNAPWIRE_MATCH_PREFIX,
     .cluster = 1,
     .source = "default/a",
     .max_body = 1024,
     .hsts = ""},
    {.path = "/",
     .match = SNAPWIRE_MATCH_PREFIX,
     .cluster = 1,
     .source = "default/b",
     .max_body = SNAPWIRE_BODY_UNLIMITED,
     .hsts = ""},
};
#define DEFAULT_MAX_BODY 0x0102030405060708ull /* every byte distinct: catches order and width */
static struct snapwire_vhost V[] = {{"foo.com", 0, 2}, {"*.bar.com", 2, 1}};
static struct snapwire_cluster C[] = {
    {.name = "default/api:80",
     .lb = SNAPWIRE_LB_ROUND_ROBIN,
     .first_endpoint = 0,
     .endpoint_count = 2,
     .tls = 0,
     .tls_sni = "",
     .tls_ca = SNAPWIRE_NONE,
     .hash_name = "",
     .affinity_cookie = ""},
    {.name = "default/web:http+tls",
     .lb = SNAPWIRE_LB_ROUND_ROBIN,
     .first_endpoint = 2,
     .endpoint_count = 1,
     .tls = 1,
     .tls_sni = "web.default.svc",
     .tls_ca = 1,
     .hash_name = "",
     .affinity_cookie = ""},
};
/* PEM-shaped text only: the format carries it, the data plane parses it */
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nsecret-key-bytes\n-----END PRIVATE KEY-----\n"
static struct snapwire_cert K[] = {
    {"default/foo-tls", "-----BEGIN CERTIFICATE-----\r\nleaf\r\n-----END CERTIFICATE-----\r\n",
     KEY_PEM, "ab01", 1798736400},
    {"default/client-ca", "-----BEGIN CERTIFICATE-----\n\tca\n-----END CERTIFICATE-----\n", "",
     "cd02", 0xfedcba9876543210ull},
    {"default/foo-rsa", "-----BEGIN CERTIFICATE-----\nrsa\n-----END CERTIFICATE-----\n", KEY_PEM,
     "ef03", 1},
};
static struct snapwire_tls_host T[] = {
    {"*.bar.com", 0, SNAPWIRE_NONE, SNAPWIRE_NONE, SNAPWIRE_CLIENT_VERIFY_OFF},
    {"foo.com", 0, 2, 1, SNAPWIRE_CLIENT_VERIFY_REQUIRED},
};
static struct snapwire_endpoint E[] = {
    {"127.0.0.1", 9001, 1, 1}, {"::1", 9002, 1, 3}, {"10.0.0.7", 80, 1, 1}};

static struct snapwire_snapshot sample(void)
{
    struct snapwire_snapshot s = {0};
    s.meta.default_cluster = 1;
    s.meta.source = "file:/tmp/x";
    s.meta.default_max_body = DEFAULT_MAX_BODY;
    s.n_listeners = 1, s.listeners = L;
    s.n_vhosts = 2, s.vhosts = V;
    s.n_routes = 3, s.routes = R;
    s.n_clusters = 2, s.clusters = C;
    s.n_endpoints = 3, s.endpoints = E;
    s.n_certs = 3, s.certs = K;
    s.n_tls_hosts = 2, s.tls_hosts = T;
    s.meta.default_cert = 2;
    return s;
}

static uint8_t *encode_sample(size_t *len)
{
    struct snapwire_snapshot s = sample();
    uint8_t *f = NULL;
    char err[256];
    assert_int_equal(snapwire_encode(&s, 7, &f, len, err, sizeof(err)), 0);
    return f;
}

/*
 * Version 4: a Gateway-shaped sample using every new section and route field, on the
 * clusters, endpoints and certificates of sample(). Route 2 is an Ingress route (new fields 0).
 */
#define RETRY_LO ((1ull << 2) | (1ull << 3) | (1ull << 4)) /* 502, 503, 504 */
#define RETRY_HI (1ull << 35)                              /* 599 */
static struct snapwire_route GR[] = {
    {.path = "/api",
     .match = SNAPWIRE_MATCH_EXACT,
     .cluster = SNAPWIRE_NONE,
     .source = "default/gw",
     .max_body = 77,
     .flags = SNAPWIRE_ROUTE_WILD_ANY | SNAPWIRE_ROUTE_TLS_ONLY,
     .hsts = "",
     .method = SNAPWIRE_METHOD_GET,
     .first_cond = 0,
     .cond_count = 3,
     .first_backend = 0,
     .backend_count = 3,
     .first_filter = 0,
     .filter_count = 3,
     .request_timeout_ms = 1500,
     .backend_timeout_ms = SNAPWIRE_TIMEOUT_NONE,
     .retry_attempts = 3,
     .retry_codes_lo = RETRY_LO,
     .retry_codes_hi = RETRY_HI,
     .retry_backoff_ms = 25},
    {.path = "^/v[0-9]+/.*$",
     .match = SNAPWIRE_MATCH_REGEX,
     .cluster = 1,
     .source = "default/gw",
     .flags = SNAPWIRE_ROUTE_PLAIN_ONLY,
     .method = SNAPWIRE_METHOD_PATCH,
     .first_cond = 3,
     .cond_count = 1,
     .first_filter = 3,
     .filter_count = 2,
     .retry_attempts = SNAPWIRE_MAX_RETRIES},
    {.path = "/", .match = SNAPWIRE_MATCH_PREFIX, .cluster = 0, .source = "default/ing"},
};
static struct snapwire_vhost GV[] = {{"*.gw.com", 0, 2}, {"gw.com", 2, 1}};
static struct snapwire_cond GC[] = {
    {SNAPWIRE_COND_HEADER_EXACT, "x-env", "canary"},
    {SNAPWIRE_COND_HEADER_REGEX, "x-user", "^a.*"},
    {SNAPWIRE_COND_QUERY_EXACT, "Debug", "1"},
    {SNAPWIRE_COND_HEADER_EXACT, "x-empty", ""},
};
static struct snapwire_backend GB[] = {{0, 80}, {SNAPWIRE_NONE, 20}, {1, 0}};
static struct snapwire_filter GF[] = {
    {.type = SNAPWIRE_FILTER_REQUEST_HEADERS,
     .first_edit = 0,
     .edit_count = 3,
     .cluster = SNAPWIRE_NONE},
    {.type = SNAPWIRE_FILTER_RESPONSE_HEADERS,
     .first_edit = 3,
     .edit_count = 1,
     .cluster = SNAPWIRE_NONE},
    {.type = SNAPWIRE_FILTER_MIRROR, .cluster = 1, .mirror_permille = 250},
    {.type = SNAPWIRE_FILTER_REDIRECT,
     .scheme = "https",
     .hostname = "example.com",
     .port = 8443,
     .status = 301,
     .path_mod = SNAPWIRE_PATH_PREFIX,
     .path = "/new",
     .cluster = SNAPWIRE_NONE},
    {.type = SNAPWIRE_FILTER_REWRITE,
     .hostname = "internal",
     .path_mod = SNAPWIRE_PATH_FULL,
     .path = "/x",
     .cluster = SNAPWIRE_NONE},
};
static struct snapwire_hdr_edit GE[] = {
    {SNAPWIRE_HDR_SET, "X-Tenant", "a b"},
    {SNAPWIRE_HDR_ADD, "x-trace", "1"},
    {SNAPWIRE_HDR_REMOVE, "Cookie", ""},
    {SNAPWIRE_HDR_SET, "cache-control", "no-store"},
};
/* wire record sizes and offsets the tests patch (snapwire.c REC_*) */
#define W_ROUTE 96
#define W_COND 20
#define W_BACKEND 8
#define W_FILTER 48
#define W_EDIT 20

static struct snapwire_snapshot sample_gw(void)
{
    struct snapwire_snapshot s = sample();
    s.n_vhosts = 2, s.vhosts = GV;
    s.n_routes = 3, s.routes = GR;
    s.n_conds = 4, s.conds = GC;
    s.n_backends = 3, s.backends = GB;
    s.n_filters = 5, s.filters = GF;
    s.n_hdr_edits = 4, s.hdr_edits = GE;
    return s;
}

static uint8_t *encode_gw(size_t *len)
{
    struct snapwire_snapshot s = sample_gw();
    uint8_t *f = NULL;
    char err[256] = "";
    if (snapwire_encode(&s, 9, &f, len, err, sizeof(err)) != 0) fail_msg("encode: %s", err);
    return f;
}

/* Copies buf so that its last byte sits right before a PROT_NONE page. */
struct guarded {
    uint8_t *map;
    size_t maplen;
    uint8_t *data;
};

static struct guarded guard(const void *buf, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + pg - 1) / pg + 1;
    struct guarded g;
    g.maplen = (pages + 1) * pg;
    g.map = mmap(NULL, g.maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g.map != MAP_FAILED);
    assert_int_equal(mprotect(g.map + pages * pg, pg, PROT_NONE), 0);
    g.data = g.map + pages * pg - len;
    if (len) memcpy(g.data, buf, len);
    return g;
}

static int guarded_decode(const void *buf, size_t len, struct snapwire_snapshot *out, char *err,
                          size_t errlen)
{
    struct guarded g = guard(buf, len);
    int rc = snapwire_decode(g.data, len, out, err, errlen);
    munmap(g.map, g.maplen);
    return rc;
}

static void fix_crc(uint8_t *f, size_t len)
{
    uint32_t c = (uint32_t)crc32(0L, f + 32, (uInt)(len - 32));
    f[20] = (uint8_t)c, f[21] = (uint8_t)(c >> 8), f[22] = (uint8_t)(c >> 16),
    f[23] = (uint8_t)(c >> 24);
}

static void put32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Payload offset of the section of the given type (from the section table). */
static uint8_t *section(uint8_t *f, uint32_t type, uint32_t *len)
{
    uint32_t n = get32le(f + 24);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = f + 32 + i * 12;
        if (get32le(e) == type) {
            if (len) *len = get32le(e + 8);
            return f + 32 + get32le(e + 4);
        }
    }
    fail_msg("section %u not found", type);
    return NULL;
}

static void test_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256] = "";

    assert_int_equal(snapwire_frame_size(f, len, err, sizeof(err)), (long)len);
    assert_int_equal(snapwire_frame_generation(f), 7);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.generation, 7);
    assert_int_equal(d.n_vhosts, 2);
    assert_string_equal(d.vhosts[1].host, "*.bar.com");
    assert_int_equal(d.vhosts[1].first_route, 2);
    assert_int_equal(d.n_routes, 3);
    assert_string_equal(d.routes[0].path, "/api");
    assert_int_equal(d.routes[0].match, SNAPWIRE_MATCH_EXACT);
    assert_string_equal(d.routes[2].source, "default/b");
    assert_int_equal(d.routes[2].cluster, 1);
    assert_true(d.routes[0].max_body == SNAPWIRE_BODY_DEFAULT);
    assert_true(d.routes[1].max_body == 1024);
    assert_true(d.routes[2].max_body == SNAPWIRE_BODY_UNLIMITED);
    assert_true(d.meta.default_max_body == DEFAULT_MAX_BODY);
    assert_string_equal(d.clusters[1].name, "default/web:http+tls");
    assert_int_equal(d.clusters[0].endpoint_count, 2);
    assert_string_equal(d.endpoints[1].address, "::1");
    assert_int_equal(d.endpoints[1].port, 9002);
    assert_int_equal(d.meta.default_cluster, 1);
    assert_string_equal(d.meta.source, "file:/tmp/x");
    assert_int_equal(d.n_listeners, 1);
    assert_int_equal(d.listeners[0].port, 8080);
    /* TLS (version 3) */
    assert_int_equal(d.routes[0].flags, SNAPWIRE_ROUTE_SSL_REDIRECT);
    assert_string_equal(d.routes[0].hsts, "max-age=600; includeSubDomains");
    assert_int_equal(d.routes[1].flags, 0);
    assert_string_equal(d.routes[1].hsts, "");
    assert_int_equal(d.clusters[0].tls, 0);
    assert_int_equal(d.clusters[0].tls_ca, SNAPWIRE_NONE);
    assert_int_equal(d.clusters[1].tls, 1);
    assert_string_equal(d.clusters[1].tls_sni, "web.default.svc");
    assert_int_equal(d.clusters[1].tls_ca, 1);
    assert_int_equal(d.meta.default_cert, 2);
    assert_int_equal(d.n_certs, 3);
    assert_string_equal(d.certs[0].name, "default/foo-tls");
    assert_string_equal(d.certs[0].chain_pem, K[0].chain_pem); /* CR LF kept */
    assert_string_equal(d.certs[0].key_pem, KEY_PEM);
    assert_string_equal(d.certs[1].key_pem, "");
    assert_string_equal(d.certs[1].chain_pem, K[1].chain_pem); /* TAB kept */
    assert_string_equal(d.certs[2].fingerprint, "ef03");
    assert_true(d.certs[1].not_after == 0xfedcba9876543210ull);
    assert_int_equal(d.n_tls_hosts, 2);
    assert_string_equal(d.tls_hosts[1].host, "foo.com");
    assert_int_equal(d.tls_hosts[1].cert, 0);
    assert_int_equal(d.tls_hosts[1].cert2, 2);
    assert_int_equal(d.tls_hosts[1].client_ca, 1);
    assert_int_equal(d.tls_hosts[1].client_verify, SNAPWIRE_CLIENT_VERIFY_REQUIRED);
    assert_int_equal(d.tls_hosts[0].cert2, SNAPWIRE_NONE);
    assert_int_equal(d.tls_hosts[0].client_ca, SNAPWIRE_NONE);
    snapwire_free(&d);
    free(f);
}

/* The TLS consistency rules: each broken in turn on the sample, each refused by the encoder. */
static void test_tls_rules(void **state)
{
    (void)state;
    struct snapwire_snapshot s;
    struct snapwire_cluster cl[2];
    struct snapwire_route rt[3];
    struct snapwire_cert ct[3];
    struct snapwire_tls_host th[2];
    uint8_t *f;
    size_t len;
    char err[256];
    static const struct {
        const char *what; /* expected in the error */
        int which;        /* which mutation */
    } cases[] = {
        {"default cert", 0},  {"default cert", 1},   {"not sorted", 2},
        {"not sorted", 3},    {"without a key", 4},  {"without a key", 5},
        {"without a key", 6}, {"client CA", 7},      {"client CA", 8},
        {"client_verify", 9}, {"unknown flags", 10}, {"tls flag", 11},
        {"tls CA", 12},       {"tls CA", 13},        {"empty name", 14},
        {"control", 15},      {"control", 16},       {"empty certificate", 17},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s = sample();
        memcpy(cl, C, sizeof(cl));
        memcpy(rt, R, sizeof(rt));
        memcpy(ct, K, sizeof(ct));
        memcpy(th, T, sizeof(th));
        s.clusters = cl, s.routes = rt, s.certs = ct, s.tls_hosts = th;
        switch (cases[i].which) {
        case 0:
            s.meta.default_cert = 3;
            break; /* out of range */
        case 1:
            s.meta.default_cert = 1;
            break; /* a CA bundle */
        case 2:
            th[0].host = "foo.com";
            break; /* duplicate */
        case 3:
            th[0].host = "zzz.com";
            break; /* unsorted */
        case 4:
            th[0].cert = 1;
            break; /* CA as server cert */
        case 5:
            th[1].cert2 = 0;
            break; /* same as cert */
        case 6:
            th[1].cert2 = 7;
            break; /* out of range */
        case 7:
            th[1].client_ca = 2;
            break; /* has a key */
        case 8:
            th[1].client_ca = SNAPWIRE_NONE;
            break; /* verify without a CA */
        case 9:
            th[1].client_verify = 3;
            break;
        case 10:
            rt[1].flags = 0x80;
            break;
        case 11:
            cl[1].tls = 2;
            break;
        case 12:
            cl[1].tls_ca = 0;
            break; /* has a key */
        case 13:
            cl[1].tls_ca = 3;
            break; /* out of range */
        case 14:
            th[0].host = "";
            break;
        case 15:
            ct[0].name = "a\nb";
            break; /* a line break outside PEM */
        case 16:
            ct[0].key_pem = "key\x01";
            break; /* other controls in PEM */
        case 17:
            ct[2].chain_pem = "";
            break;
        }
        err[0] = '\0';
        assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].what)) fail_msg("case %d: error \"%s\"", cases[i].which, err);
    }
    /* the TLS fields of a plain cluster and of a host without client certs are not checked
     * (zeroed structs are fine) and go out as "none" */
    s = sample();
    memcpy(cl, C, sizeof(cl));
    memcpy(th, T, sizeof(th));
    cl[0].tls_ca = 0;
    th[0].client_ca = 0;
    s.clusters = cl, s.tls_hosts = th;
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
    {
        struct snapwire_snapshot d;
        assert_int_equal(snapwire_decode(f, len, &d, err, sizeof(err)), 0);
        assert_int_equal(d.clusters[0].tls_ca, SNAPWIRE_NONE);
        assert_int_equal(d.tls_hosts[0].client_ca, SNAPWIRE_NONE);
        snapwire_free(&d);
    }
    free(f);
}

static void test_empty_snapshot(void **state)
{
    (void)state;
    struct snapwire_snapshot s = {0}, d;
    uint8_t *f;
    size_t len;
    char err[256];

    s.meta.default_cluster = SNAPWIRE_NONE;
    s.meta.default_cert = SNAPWIRE_NONE;
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_routes + d.n_vhosts + d.n_clusters + d.n_endpoints, 0);
    assert_int_equal(d.meta.default_cluster, SNAPWIRE_NONE);
    assert_int_equal(d.meta.default_cert, SNAPWIRE_NONE);
    assert_int_equal(d.n_certs + d.n_tls_hosts, 0);
    assert_true(d.meta.default_max_body == SNAPWIRE_BODY_DEFAULT);
    snapwire_free(&d);
    free(f);
}

static void test_deterministic_and_same_payload(void **state)
{
    (void)state;
    struct snapwire_snapshot s = sample();
    uint8_t *a, *b;
    size_t alen, blen;
    char err[256];

    assert_int_equal(snapwire_encode(&s, 1, &a, &alen, err, sizeof(err)), 0);
    assert_int_equal(snapwire_encode(&s, 2, &b, &blen, err, sizeof(err)), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(a + 16, b + 16, alen - 16); /* only the generation differs */
    assert_true(snapwire_same_payload(a, alen, b, blen));
    free(b);
    s.n_routes = 2; /* vhost 1 now points past the routes: refused */
    assert_int_equal(snapwire_encode(&s, 2, &b, &blen, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "vhost 1"));
    s = sample();
    s.vhosts = (struct snapwire_vhost[]){{"foo.com", 0, 1}, {"*.bar.com", 2, 1}};
    assert_int_equal(snapwire_encode(&s, 2, &b, &blen, err, sizeof(err)), 0);
    assert_false(snapwire_same_payload(a, alen, b, blen));
    free(a);
    free(b);
}

static void test_encoder_refuses_inconsistent(void **state)
{
    (void)state;
    struct snapwire_snapshot s;
    struct snapwire_endpoint bad_ep[] = {{"not-an-ip", 80, 1, 1}};
    struct snapwire_route bad_rt[] = {{.path = "nope", .match = SNAPWIRE_MATCH_PREFIX}};
    uint8_t *f;
    size_t len;
    char err[256];

    s = sample();
    s.meta.default_cluster = 9;
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
    s = sample();
    s.endpoints = bad_ep, s.n_endpoints = 1;
    s.clusters = (struct snapwire_cluster[]){{.name = "x",
                                              .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                              .first_endpoint = 0,
                                              .endpoint_count = 1,
                                              .tls_sni = "",
                                              .tls_ca = SNAPWIRE_NONE,
                                              .hash_name = "",
                                              .affinity_cookie = ""},
                                             {.name = "y",
                                              .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                              .first_endpoint = 0,
                                              .endpoint_count = 0,
                                              .tls_sni = "",
                                              .tls_ca = SNAPWIRE_NONE,
                                              .hash_name = "",
                                              .affinity_cookie = ""}};
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "endpoint 0"));
    s = sample();
    s.routes = bad_rt, s.n_routes = 1, s.n_vhosts = 1;
    s.vhosts = (struct snapwire_vhost[]){{"a", 0, 1}};
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "path"));
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256];

    for (size_t n = 0; n < len; n++) {
        err[0] = '\0';
        assert_int_equal(guarded_decode(f, n, &d, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        if (n < 32) assert_int_equal(snapwire_frame_size(f, n, NULL, 0), -2);
    }
    free(f);
}

static void test_bad_header(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256];

    f[0] ^= 1; /* magic */
    assert_int_equal(snapwire_frame_size(f, len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "magic"));
    f[0] ^= 1;
    f[4] = SNAPWIRE_VERSION + 1; /* version */
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    f[4] = SNAPWIRE_VERSION - 1; /* the previous layout (24-byte routes) is not read either */
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    f[4] = SNAPWIRE_VERSION;
    put32le(f + 16, 0xfffffff0u); /* huge payload */
    assert_int_equal(snapwire_frame_size(f, len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too large"));
    free(f);
}

static void test_corrupt_payload_fails_crc(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256];

    for (size_t i = 32; i < len; i++) {
        f[i] ^= 0x40;
        assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "checksum"));
        f[i] ^= 0x40;
    }
    free(f);
}

/* Structural lies with a valid checksum. */
static void test_hostile_with_valid_crc(void **state)
{
    (void)state;
    size_t len;
    struct snapwire_snapshot d;
    char err[256];
    uint8_t *f, *p;
    uint32_t slen;

    /* route cluster index out of range */
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_ROUTES, NULL);
    put32le(p + 8, 99);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cluster 99"));
    free(f);

    /* string reference past the string table */
    f = encode_sample(&len);
    section(f, SNAPWIRE_SEC_STRINGS, &slen);
    p = section(f, SNAPWIRE_SEC_VHOSTS, NULL);
    put32le(p, slen - 2);
    put32le(p + 4, 3);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of bounds"));
    free(f);

    /* huge string length designed to wrap 32-bit arithmetic */
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_VHOSTS, NULL);
    put32le(p, 4);
    put32le(p + 4, 0xfffffffeu);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    free(f);

    /* vhost route range that wraps */
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_VHOSTS, NULL);
    put32le(p + 8, 0xffffffffu);
    put32le(p + 12, 2);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "vhost 0"));
    free(f);

    /* section pointing past the payload, and into the section table */
    f = encode_sample(&len);
    put32le(f + 32 + 4, (uint32_t)len);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of bounds"));
    put32le(f + 32 + 4, 0);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    free(f);

    /* section count larger than the payload can hold */
    f = encode_sample(&len);
    put32le(f + 24, 1000000);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "section count"));
    free(f);

    /* duplicate section type */
    f = encode_sample(&len);
    put32le(f + 32 + 12, SNAPWIRE_SEC_STRINGS);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate"));
    free(f);

    /* bad enum, bad endpoint port, control character in a string */
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_ROUTES, NULL);
    p[12] = 9;
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "match"));
    free(f);
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_ENDPOINTS, NULL);
    p[8] = 0, p[9] = 0;
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "port 0"));
    free(f);
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_STRINGS, NULL);
    p[0] = '\n';
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "control"));
    free(f);

    /* record section whose length is not a multiple of the record size */
    f = encode_sample(&len);
    for (uint32_t i = 0; i < get32le(f + 24); i++)
        if (get32le(f + 32 + i * 12) == SNAPWIRE_SEC_ROUTES)
            put32le(f + 32 + i * 12 + 8, get32le(f + 32 + i * 12 + 8) - 1);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "whole number"));
    free(f);

    /* a meta section of the version 1 size (12 bytes) inside a version 2 frame */
    f = encode_sample(&len);
    for (uint32_t i = 0; i < get32le(f + 24); i++)
        if (get32le(f + 32 + i * 12) == SNAPWIRE_SEC_META) put32le(f + 32 + i * 12 + 8, 12);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "meta section length 12 is not one record of 24 or 48 bytes"));
    free(f);

    /* nonzero route padding at the end of the record (route records are 96 bytes) */
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_ROUTES, NULL);
    p[96 + 95] = 1;
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "route 1: nonzero padding"));
    free(f);
}

/* Every u64 body limit is meaningful: the decoder passes them through untouched. */
static void test_body_limits_any_value(void **state)
{
    (void)state;
    static const uint64_t values[] = {0,         1, 0xffffffffull, 0x100000000ull, UINT64_MAX - 1,
                                      UINT64_MAX};
    size_t len;
    struct snapwire_snapshot d;
    char err[256];
    uint8_t *f, *p;
    uint32_t mlen;

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        f = encode_sample(&len);
        p = section(f, SNAPWIRE_SEC_ROUTES, NULL);
        for (int b = 0; b < 8; b++)
            p[24 + b] = (uint8_t)(values[i] >> (8 * b));
        p = section(f, SNAPWIRE_SEC_META, &mlen);
        assert_int_equal(mlen, 24);
        for (int b = 0; b < 8; b++)
            p[12 + b] = (uint8_t)(values[i] >> (8 * b));
        fix_crc(f, len);
        assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
        assert_true(d.routes[0].max_body == values[i]);
        assert_true(d.meta.default_max_body == values[i]);
        snapwire_free(&d);
        free(f);
    }
}

/* Unknown section types are skipped so newer controllers can add sections. */
static void test_unknown_section_skipped(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256];

    /* Turn the LISTENERS entry into an unknown type: still decodes, with no listeners. */
    for (uint32_t i = 0; i < get32le(f + 24); i++)
        if (get32le(f + 32 + i * 12) == SNAPWIRE_SEC_LISTENERS) put32le(f + 32 + i * 12, 4242);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_listeners, 0);
    assert_int_equal(d.n_routes, 3);
    snapwire_free(&d);
    free(f);
}

/*
 * Found by fuzzing: a frame without a STRINGS section whose only string is empty. The frame
 * was found in version 1 (12-byte meta record); it is kept as found, and must now be refused
 * for its version, as must its version 2 form (20-byte meta record) and its version 3 form
 * (24-byte meta record); with the current version in the header (same payload: the 24-byte
 * meta record is still valid) it must decode.
 */
static void test_no_strings_section(void **state)
{
    (void)state;
    static const uint8_t frame_v1[] = {
        0x53, 0x54, 0x52, 0x54, 0x01, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x9c, 0xd1, 0xc4, 0x8a, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x0c, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t frame_v2[] = {
        0x53, 0x54, 0x52, 0x54, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x34, 0xc1, 0xf0, 0xcc, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00,
        0x00, 0x14, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t frame_v3[] = {
        0x53, 0x54, 0x52, 0x54, 0x03, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0xc4, 0x1f, 0xcd, 0x9d, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x18, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff};
    uint8_t frame[sizeof(frame_v3)];
    struct snapwire_snapshot d;
    char err[256];

    memcpy(frame, frame_v3, sizeof(frame));
    frame[4] = 4;
    assert_int_equal(guarded_decode(frame, sizeof(frame), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 4"));
    frame[4] = 5;
    assert_int_equal(guarded_decode(frame, sizeof(frame), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 5"));
    frame[4] = 6;
    assert_int_equal(guarded_decode(frame, sizeof(frame), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 6"));
    frame[4] = 7;
    assert_int_equal(guarded_decode(frame_v3, sizeof(frame_v3), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 3"));
    assert_int_equal(guarded_decode(frame_v1, sizeof(frame_v1), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 1"));
    assert_int_equal(guarded_decode(frame_v2, sizeof(frame_v2), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 2"));
    assert_int_equal(guarded_decode(frame, sizeof(frame), &d, err, sizeof(err)), 0);
    assert_string_equal(d.meta.source, "");
    assert_int_equal(d.meta.default_cluster, SNAPWIRE_NONE);
    assert_true(d.meta.default_max_body == SNAPWIRE_BODY_DEFAULT);
    assert_int_equal(d.meta.default_cert, SNAPWIRE_NONE);
    assert_string_equal(d.meta.trust_domain, "");
    assert_string_equal(d.meta.cluster_domain, "cluster.local");
    assert_int_equal(d.n_routes, 0);
    assert_int_equal(d.n_mesh_services, 0);
    snapwire_free(&d);
}

/* The documented promises of a decoded snapshot, checked independently of the decoder. */
static void check_invariants(const struct snapwire_snapshot *d)
{
    for (uint32_t i = 0; i < d->n_routes; i++) {
        const struct snapwire_route *r = &d->routes[i];
        uint64_t w = 0;
        assert_true(r->cluster == SNAPWIRE_NONE || r->cluster < d->n_clusters);
        assert_true(r->match >= SNAPWIRE_MATCH_EXACT && r->match <= SNAPWIRE_MATCH_REGEX);
        assert_true(r->match == SNAPWIRE_MATCH_REGEX ? r->path[0] != '\0' : r->path[0] == '/');
        assert_true(r->method <= SNAPWIRE_METHOD_MAX_ && (r->flags & ~0x0f) == 0);
        assert_true((uint64_t)r->first_cond + r->cond_count <= d->n_conds);
        assert_true((uint64_t)r->first_backend + r->backend_count <= d->n_backends);
        assert_true((uint64_t)r->first_filter + r->filter_count <= d->n_filters);
        for (uint32_t k = 0; k < r->backend_count; k++)
            w += d->backends[r->first_backend + k].weight;
        assert_true(w <= UINT32_MAX);
        assert_true(r->retry_attempts <= SNAPWIRE_MAX_RETRIES && r->retry_codes_hi >> 36 == 0);
    }
    for (uint32_t i = 0; i < d->n_conds; i++)
        assert_true(d->conds[i].kind >= 1 && d->conds[i].kind <= 3 && d->conds[i].name[0]);
    for (uint32_t i = 0; i < d->n_backends; i++)
        assert_true(d->backends[i].cluster == SNAPWIRE_NONE ||
                    d->backends[i].cluster < d->n_clusters);
    for (uint32_t i = 0; i < d->n_filters; i++) {
        const struct snapwire_filter *f = &d->filters[i];
        assert_true(f->type >= 1 && f->type <= 5 && f->path_mod <= 2);
        assert_true((uint64_t)f->first_edit + f->edit_count <= d->n_hdr_edits);
        assert_true(f->cluster == SNAPWIRE_NONE || f->cluster < d->n_clusters);
        assert_true(f->mirror_permille <= 1000);
    }
    for (uint32_t i = 0; i < d->n_hdr_edits; i++)
        assert_true(d->hdr_edits[i].op >= 1 && d->hdr_edits[i].op <= 3 && d->hdr_edits[i].name[0]);
}

/* Random bit flips with the CRC fixed: the decoder must never crash, only accept or refuse. */
static void random_mutations(uint8_t *orig, size_t len)
{
    uint8_t *f = malloc(len);
    struct snapwire_snapshot d;
    char err[256];
    unsigned seed = 12345;
    int accepted = 0, refused = 0;

    for (int it = 0; it < 20000; it++) {
        memcpy(f, orig, len);
        int flips = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < flips; k++)
            f[32 + (size_t)rand_r(&seed) % (len - 32)] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
        fix_crc(f, len);
        if (snapwire_decode(f, len, &d, err, sizeof(err)) == 0) {
            accepted++;
            /* Whatever got through must satisfy the documented invariants. */
            check_invariants(&d);
            for (uint32_t i = 0; i < d.n_vhosts; i++)
                assert_true((uint64_t)d.vhosts[i].first_route + d.vhosts[i].route_count <=
                            d.n_routes);
            for (uint32_t i = 0; i < d.n_tls_hosts; i++)
                assert_true(d.tls_hosts[i].cert < d.n_certs &&
                            d.certs[d.tls_hosts[i].cert].key_pem[0] != '\0');
            assert_true(d.meta.default_cert == SNAPWIRE_NONE || d.meta.default_cert < d.n_certs);
            free(snapwire_to_json(&d));
            snapwire_free(&d);
        } else {
            refused++;
        }
    }
    assert_true(refused > 0);
    assert_true(accepted + refused == 20000);
    free(f);
    free(orig);
}

static void test_random_mutations(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    random_mutations(f, len);
    f = encode_gw(&len);
    random_mutations(f, len);
}

static void test_json_dump(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256];
    char *js;

    assert_int_equal(snapwire_decode(f, len, &d, err, sizeof(err)), 0);
    js = snapwire_to_json(&d);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"generation\": 7"));
    assert_non_null(strstr(js, "\"host\": \"*.bar.com\""));
    assert_non_null(strstr(js, "\"pathType\": \"Exact\""));
    assert_non_null(strstr(js, "\"[::1]:9002\""));
    assert_non_null(strstr(js, "\"default_cluster\": \"default/web:http+tls\""));
    assert_non_null(strstr(js, "\"default_max_body\": 72623859790382856")); /* 0x0102...08 */
    assert_non_null(strstr(js, "\"max_body\": null"));
    assert_non_null(strstr(js, "\"max_body\": 1024"));
    assert_non_null(strstr(js, "\"max_body\": \"unlimited\""));
    assert_non_null(strstr(js, "\"ssl_redirect\": true"));
    assert_non_null(strstr(js, "\"hsts\": \"max-age=600; includeSubDomains\""));
    assert_non_null(strstr(js, "\"hsts\": null"));
    assert_non_null(strstr(js, "\"tls_sni\": \"web.default.svc\""));
    assert_non_null(strstr(js, "\"tls_ca\": \"default/client-ca\""));
    assert_non_null(strstr(js, "\"default_cert\": \"default/foo-rsa\""));
    assert_non_null(strstr(js, "\"fingerprint\": \"ab01\""));
    assert_non_null(strstr(js, "\"has_key\": false"));
    assert_non_null(strstr(js, "\"client_verify\": \"required\""));
    assert_non_null(strstr(js, "\"client_ca\": \"default/client-ca\""));
    /* private keys never appear, nor does the PEM of the certificates */
    assert_null(strstr(js, "PRIVATE KEY"));
    assert_null(strstr(js, "secret-key-bytes"));
    assert_null(strstr(js, "BEGIN CERTIFICATE"));
    free(js);
    snapwire_free(&d);
    free(f);
}

/* ---- version 4: Gateway routes ---- */

static void test_v4_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_gw(&len);
    struct snapwire_snapshot d;
    char err[256] = "";

    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_routes, 3);
    assert_int_equal(d.n_conds, 4);
    assert_int_equal(d.n_backends, 3);
    assert_int_equal(d.n_filters, 5);
    assert_int_equal(d.n_hdr_edits, 4);
    for (uint32_t i = 0; i < 3; i++) {
        const struct snapwire_route *a = &GR[i], *b = &d.routes[i];
        assert_string_equal(b->path, a->path);
        assert_string_equal(b->source, a->source);
        assert_int_equal(b->match, a->match);
        assert_int_equal(b->cluster, a->cluster);
        assert_true(b->max_body == a->max_body);
        assert_int_equal(b->flags, a->flags);
        assert_string_equal(b->hsts, a->hsts ? a->hsts : "");
        assert_int_equal(b->method, a->method);
        assert_int_equal(b->first_cond, a->first_cond);
        assert_int_equal(b->cond_count, a->cond_count);
        assert_int_equal(b->first_backend, a->first_backend);
        assert_int_equal(b->backend_count, a->backend_count);
        assert_int_equal(b->first_filter, a->first_filter);
        assert_int_equal(b->filter_count, a->filter_count);
        assert_int_equal(b->request_timeout_ms, a->request_timeout_ms);
        assert_int_equal(b->backend_timeout_ms, a->backend_timeout_ms);
        assert_int_equal(b->retry_attempts, a->retry_attempts);
        assert_true(b->retry_codes_lo == a->retry_codes_lo);
        assert_true(b->retry_codes_hi == a->retry_codes_hi);
        assert_int_equal(b->retry_backoff_ms, a->retry_backoff_ms);
    }
    assert_int_equal(d.routes[0].cluster, SNAPWIRE_NONE);
    assert_int_equal(d.routes[0].backend_timeout_ms, SNAPWIRE_TIMEOUT_NONE);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(d.conds[i].kind, GC[i].kind);
        assert_string_equal(d.conds[i].name, GC[i].name);
        assert_string_equal(d.conds[i].value, GC[i].value);
        assert_int_equal(d.hdr_edits[i].op, GE[i].op);
        assert_string_equal(d.hdr_edits[i].name, GE[i].name);
        assert_string_equal(d.hdr_edits[i].value, GE[i].value);
    }
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(d.backends[i].cluster, GB[i].cluster);
        assert_int_equal(d.backends[i].weight, GB[i].weight);
    }
    for (uint32_t i = 0; i < 5; i++) {
        const struct snapwire_filter *a = &GF[i], *b = &d.filters[i];
        assert_int_equal(b->type, a->type);
        assert_int_equal(b->first_edit, a->first_edit);
        assert_int_equal(b->edit_count, a->edit_count);
        assert_string_equal(b->scheme, a->scheme ? a->scheme : "");
        assert_string_equal(b->hostname, a->hostname ? a->hostname : "");
        assert_int_equal(b->port, a->port);
        assert_int_equal(b->status, a->status);
        assert_int_equal(b->path_mod, a->path_mod);
        assert_string_equal(b->path, a->path ? a->path : "");
        assert_int_equal(b->cluster, a->cluster);
        assert_int_equal(b->mirror_permille, a->mirror_permille);
    }
    check_invariants(&d);
    /* re-encoding the decoded form gives the same payload */
    {
        uint8_t *f2;
        size_t len2;
        assert_int_equal(snapwire_encode(&d, 9, &f2, &len2, err, sizeof(err)), 0);
        assert_true(snapwire_same_payload(f, len, f2, len2));
        free(f2);
    }
    snapwire_free(&d);
    free(f);
}

static void test_v4_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_gw(&len);
    struct snapwire_snapshot d;
    char err[256];

    for (size_t n = 0; n < len; n++) {
        err[0] = '\0';
        assert_int_equal(guarded_decode(f, n, &d, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    free(f);
}

/*
 * One corruption of the Gateway sample's frame: in section sec, record rec (of recsize bytes),
 * at byte off, write val (width 1, 2, 4 or 8 bytes) or, with width 0, a string reference to
 * the first occurrence of str in STRINGS ("" = the empty string).
 */
struct patch {
    uint32_t sec, rec, recsize, off, width;
    uint64_t val;
    const char *str;
    const char *want; /* expected in the error */
};

static void apply_patch(uint8_t *f, const struct patch *pt)
{
    uint32_t slen, stlen;
    uint8_t *p = section(f, pt->sec, &slen), *st;

    assert_true((uint64_t)(pt->rec + 1) * pt->recsize <= slen);
    p += (size_t)pt->rec * pt->recsize + pt->off;
    if (pt->width == 0) {
        size_t n = strlen(pt->str);
        uint32_t off = 0;
        st = section(f, SNAPWIRE_SEC_STRINGS, &stlen);
        if (n) {
            uint8_t *hit = memmem(st, stlen, pt->str, n);
            if (!hit) fail_msg("string \"%s\" not in the frame", pt->str);
            off = (uint32_t)(hit - st);
        }
        put32le(p, off);
        put32le(p + 4, (uint32_t)n);
        return;
    }
    for (uint32_t b = 0; b < pt->width; b++)
        p[b] = (uint8_t)(pt->val >> (8 * b));
}

#define RT(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_ROUTES, rec, W_ROUTE, off, w, v, NULL, want                                   \
    }
#define RTS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_ROUTES, rec, W_ROUTE, off, 0, 0, str, want                                    \
    }
#define CD(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_MATCH_CONDS, rec, W_COND, off, w, v, NULL, want                               \
    }
#define CDS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_MATCH_CONDS, rec, W_COND, off, 0, 0, str, want                                \
    }
#define BK(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_BACKENDS, rec, W_BACKEND, off, w, v, NULL, want                               \
    }
#define FL(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_FILTERS, rec, W_FILTER, off, w, v, NULL, want                                 \
    }
#define FLS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_FILTERS, rec, W_FILTER, off, 0, 0, str, want                                  \
    }
#define ED(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_HDR_EDITS, rec, W_EDIT, off, w, v, NULL, want                                 \
    }
#define EDS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_HDR_EDITS, rec, W_EDIT, off, 0, 0, str, want                                  \
    }

/* Every decoder check of version 4, each on its own, with a valid CRC. */
static void test_v4_decoder_rejects(void **state)
{
    (void)state;
    static const struct patch cases[] = {
        /* routes: enums, flags, paths */
        RT(0, 12, 1, 0, "route 0: bad match type 0"),
        RT(0, 12, 1, 4, "route 0: bad match type 4"),
        RT(0, 14, 1, SNAPWIRE_METHOD_MAX_ + 1, "route 0: bad method 10"),
        RT(0, 13, 1, 0x10, "route 0: unknown flags 0x10"),
        RT(0, 13, 1, 0x80, "route 0: unknown flags 0x80"),
        RT(0, 13, 1, SNAPWIRE_ROUTE_PLAIN_ONLY | SNAPWIRE_ROUTE_TLS_ONLY,
           "route 0: both plain-only and tls-only"),
        RTS(1, 0, "", "route 1: empty regex"),
        RTS(2, 0, "canary", "route 2: path must start with '/'"),
        RT(2, 12, 1, SNAPWIRE_MATCH_EXACT, NULL), /* still fine: "/" */
        /* route.cluster: NONE is fine (route 0), n_clusters is not */
        RT(1, 8, 4, 2, "route 1: cluster 2 out of range"),
        RT(1, 8, 4, 0xfffffffe, "route 1: cluster 4294967294 out of range"),
        /* ranges, including ones whose end wraps 32 bits */
        RT(0, 44, 4, 5, "route 0: conds [0,+5) out of range"),
        RT(0, 40, 4, 0xffffffff, "route 0: conds [4294967295,+3) out of range"),
        RT(0, 48, 4, 1, "route 0: backends [1,+3) out of range"),
        RT(0, 48, 4, 0xfffffffe, "route 0: backends"),
        RT(1, 60, 4, 3, "route 1: filters [3,+3) out of range"),
        RT(1, 56, 4, 0xffffffff, "route 1: filters"),
        /* weights: sum above 2^32-1 (80 + 20 + 0 with weight 0 raised) */
        BK(2, 4, 4, 0xffffffffu - 99, "route 0: backend weights sum above 2^32-1"),
        BK(2, 4, 4, 0xffffffffu - 100, NULL), /* exactly UINT32_MAX */
        /* retry policy */
        RT(0, 15, 1, SNAPWIRE_MAX_RETRIES + 1, "route 0: retry attempts 11 above 10"),
        RT(0, 15, 1, 255, "route 0: retry attempts 255"),
        RT(0, 80, 8, 1ull << 36, "route 0: retry codes above 599"),
        RT(0, 80, 8, 1ull << 63, "route 0: retry codes above 599"),
        RT(0, 72, 8, UINT64_MAX, NULL), /* every code 500..563 */
        RT(0, 64, 4, 0xffffffff, NULL), /* timeouts: any value */
        RT(0, 92, 1, 1, "route 0: nonzero padding"),
        RT(2, 95, 1, 1, "route 2: nonzero padding"),
        /* conditions */
        CD(0, 16, 1, 0, "cond 0: bad kind 0"),
        CD(3, 16, 1, 4, "cond 3: bad kind 4"),
        CDS(0, 0, "X-Tenant", "cond 0: header name is not a lower-case token"),
        CDS(1, 0, "", "cond 1: header name is not a lower-case token"),
        CDS(0, 0, "a b", "cond 0: header name is not a lower-case token"),
        CDS(0, 0, "example.com", NULL), /* '.' is a tchar */
        CDS(2, 0, "X-Tenant", NULL),    /* query names: any case */
        CDS(2, 0, "", "cond 2: empty query parameter name"),
        CDS(1, 8, "", "cond 1: empty regex"),
        CDS(0, 8, "", NULL), /* an exact value may be empty */
        CD(1, 17, 1, 1, "cond 1: nonzero padding"),
        CD(1, 19, 1, 1, "cond 1: nonzero padding"),
        /* backends */
        BK(0, 0, 4, 2, "backend 0: cluster 2 out of range"),
        BK(2, 0, 4, SNAPWIRE_NONE, NULL),
        /* filters */
        FL(0, 44, 1, 0, "filter 0: bad type 0"),
        FL(4, 44, 1, 6, "filter 4: bad type 6"),
        FL(0, 28, 4, 5, "filter 0: edits [0,+5) out of range"),
        FL(1, 24, 4, 0xffffffff, "filter 1: edits [4294967295,+1) out of range"),
        FL(3, 42, 2, 300, "filter 3: bad redirect status 300"),
        FL(3, 42, 2, 0, "filter 3: bad redirect status 0"),
        FL(3, 42, 2, 200, "filter 3: bad redirect status 200"),
        FL(3, 42, 2, 308, NULL),
        FLS(3, 0, "internal", "filter 3: bad scheme"),
        FLS(3, 0, "http", NULL),
        FLS(3, 0, "", NULL),
        FL(3, 45, 1, 3, "filter 3: bad path_mod 3"),
        FL(4, 45, 1, 0xff, "filter 4: bad path_mod 255"),
        FL(2, 32, 4, 2, "filter 2: mirror cluster 2 out of range"),
        FL(2, 32, 4, SNAPWIRE_NONE, NULL),
        FL(2, 36, 4, 1001, "filter 2: mirror permille 1001 above 1000"),
        FL(2, 36, 4, 1000, NULL),
        FL(2, 46, 1, 1, "filter 2: nonzero padding"),
        /* fields a filter's type does not use must be zero / "" / NONE */
        FL(0, 42, 2, 301, "filter 0: field not used by type 1 is set"),
        FL(0, 32, 4, 0, "filter 0: field not used by type 1 is set"),
        FL(2, 28, 4, 1, "filter 2: field not used by type 5 is set"),
        FL(4, 40, 2, 80, "filter 4: field not used by type 4 is set"),
        FLS(4, 0, "https", "filter 4: field not used by type 4 is set"),
        FL(3, 45, 1, SNAPWIRE_PATH_KEEP, "filter 3: field not used by type 3 is set"),
        FL(1, 36, 4, 5, "filter 1: field not used by type 2 is set"),
        FLS(2, 8, "internal", "filter 2: field not used by type 5 is set"),
        /* header edits */
        ED(0, 16, 1, 0, "hdr edit 0: bad op 0"),
        ED(3, 16, 1, 4, "hdr edit 3: bad op 4"),
        EDS(1, 0, "", "hdr edit 1: name is not a token"),
        EDS(1, 0, "a b", "hdr edit 1: name is not a token"),
        EDS(1, 0, "X-Tenant", NULL), /* edits keep the user's case */
        EDS(2, 8, "canary", "hdr edit 2: remove with a value"),
        ED(2, 16, 1, SNAPWIRE_HDR_ADD, NULL), /* an ADD with an empty value is fine */
        ED(0, 18, 1, 1, "hdr edit 0: nonzero padding"),
    };
    size_t len;
    struct snapwire_snapshot d;
    char err[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *f = encode_gw(&len);
        apply_patch(f, &cases[i]);
        fix_crc(f, len);
        err[0] = '\0';
        int rc = guarded_decode(f, len, &d, err, sizeof(err));
        if (!cases[i].want) {
            if (rc != 0) fail_msg("case %zu: refused: %s", i, err);
            check_invariants(&d);
            snapwire_free(&d);
        } else if (rc != -1 || !strstr(err, cases[i].want)) {
            fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err, cases[i].want);
        }
        free(f);
    }
}

/* New sections must hold whole records, like the others. */
static void test_v4_section_sizes(void **state)
{
    (void)state;
    static const uint32_t types[] = {SNAPWIRE_SEC_MATCH_CONDS, SNAPWIRE_SEC_BACKENDS,
                                     SNAPWIRE_SEC_FILTERS, SNAPWIRE_SEC_HDR_EDITS};
    size_t len;
    struct snapwire_snapshot d;
    char err[256];

    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        uint8_t *f = encode_gw(&len);
        for (uint32_t i = 0; i < get32le(f + 24); i++)
            if (get32le(f + 32 + i * 12) == types[t])
                put32le(f + 32 + i * 12 + 8, get32le(f + 32 + i * 12 + 8) - 1);
        fix_crc(f, len);
        assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "whole number"));
        free(f);
    }
    /* a frame without the new sections decodes: no conds, backends, filters or edits */
    {
        uint8_t *f = encode_sample(&len);
        for (uint32_t i = 0; i < get32le(f + 24); i++)
            if (get32le(f + 32 + i * 12) >= SNAPWIRE_SEC_MATCH_CONDS ||
                get32le(f + 32 + i * 12) == SNAPWIRE_SEC_FILTERS)
                put32le(f + 32 + i * 12, 4000 + i);
        fix_crc(f, len);
        assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
        assert_int_equal(d.n_conds + d.n_backends + d.n_filters + d.n_hdr_edits, 0);
        assert_int_equal(d.n_routes, 3);
        snapwire_free(&d);
        free(f);
    }
}

/* The same checks in the encoder: each broken in turn on the Gateway sample, each refused. */
static void test_v4_encoder_refuses(void **state)
{
    (void)state;
    static const char *want[] = {
        "route 0: bad match type 4",
        "route 0: bad method 10",
        "route 0: unknown flags 0x1a", /* 0x10 on WILD_ANY | TLS_ONLY */
        "route 0: both plain-only and tls-only",
        "route 1: empty regex",
        "route 1: empty regex", /* NULL path */
        "route 2: path must start with '/'",
        "route 1: cluster 2 out of range",
        "route 0: conds [2,+3) out of range",
        "route 0: backends [4294967295,+3) out of range",
        "route 1: filters [3,+3) out of range",
        "route 0: backend weights sum above 2^32-1",
        "route 0: retry attempts 11 above 10",
        "route 0: retry codes above 599",
        "cond 0: bad kind 0",
        "cond 0: header name is not a lower-case token",
        "cond 1: header name is not a lower-case token", /* NULL */
        "cond 2: empty query parameter name",
        "cond 1: empty regex",
        "backend 0: cluster 2 out of range",
        "filter 0: bad type 6",
        "filter 0: edits [2,+3) out of range",
        "filter 3: bad redirect status 304",
        "filter 3: bad scheme",
        "filter 4: bad path_mod 3",
        "filter 2: mirror cluster 2 out of range",
        "filter 2: mirror permille 1001 above 1000",
        "hdr edit 0: bad op 4",
        "hdr edit 1: name is not a token",
        "hdr edit 1: name is not a token", /* NULL */
        "control",                         /* edit values are ordinary strings */
    };
    struct snapwire_route rt[3];
    struct snapwire_cond cd[4];
    struct snapwire_backend bk[3];
    struct snapwire_filter fl[5];
    struct snapwire_hdr_edit ed[4];
    uint8_t *f;
    size_t len;
    char err[256];

    for (int c = 0; c < (int)(sizeof(want) / sizeof(want[0])); c++) {
        struct snapwire_snapshot s = sample_gw();
        memcpy(rt, GR, sizeof(rt));
        memcpy(cd, GC, sizeof(cd));
        memcpy(bk, GB, sizeof(bk));
        memcpy(fl, GF, sizeof(fl));
        memcpy(ed, GE, sizeof(ed));
        s.routes = rt, s.conds = cd, s.backends = bk, s.filters = fl, s.hdr_edits = ed;
        switch (c) {
        case 0:
            rt[0].match = 4;
            break;
        case 1:
            rt[0].method = SNAPWIRE_METHOD_MAX_ + 1;
            break;
        case 2:
            rt[0].flags |= 0x10;
            break;
        case 3:
            rt[0].flags |= SNAPWIRE_ROUTE_PLAIN_ONLY;
            break;
        case 4:
            rt[1].path = "";
            break;
        case 5:
            rt[1].path = NULL;
            break;
        case 6:
            rt[2].path = "x";
            break;
        case 7:
            rt[1].cluster = 2;
            break;
        case 8:
            rt[0].first_cond = 2;
            break;
        case 9:
            rt[0].first_backend = 0xffffffff;
            break;
        case 10:
            rt[1].filter_count = 3;
            break;
        case 11:
            bk[2].weight = 0xffffffffu - 99;
            break;
        case 12:
            rt[0].retry_attempts = SNAPWIRE_MAX_RETRIES + 1;
            break;
        case 13:
            rt[0].retry_codes_hi = 1ull << 36;
            break;
        case 14:
            cd[0].kind = 0;
            break;
        case 15:
            cd[0].name = "X-Env";
            break;
        case 16:
            cd[1].name = NULL;
            break;
        case 17:
            cd[2].name = "";
            break;
        case 18:
            cd[1].value = "";
            break;
        case 19:
            bk[0].cluster = 2;
            break;
        case 20:
            fl[0].type = 6;
            break;
        case 21:
            fl[0].first_edit = 2;
            break;
        case 22:
            fl[3].status = 304;
            break;
        case 23:
            fl[3].scheme = "ftp";
            break;
        case 24:
            fl[4].path_mod = 3;
            break;
        case 25:
            fl[2].cluster = 2;
            break;
        case 26:
            fl[2].mirror_permille = 1001;
            break;
        case 27:
            ed[0].op = 4;
            break;
        case 28:
            ed[1].name = "x trace";
            break;
        case 29:
            ed[1].name = NULL;
            break;
        case 30:
            ed[0].value = "a\r\nb";
            break;
        }
        err[0] = '\0';
        f = NULL;
        assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
        assert_null(f);
        if (!strstr(err, want[c])) fail_msg("case %d: error \"%s\", want \"%s\"", c, err, want[c]);
    }
}

/*
 * The encoder writes only the fields of a filter's type (and no value for a REMOVE edit),
 * whatever the caller left in the others; it does not check those fields either.
 */
static void test_v4_encoder_writes_canonical(void **state)
{
    (void)state;
    struct snapwire_filter fl[5];
    struct snapwire_hdr_edit ed[4];
    struct snapwire_snapshot s = sample_gw(), d;
    uint8_t *f, *g;
    size_t len, glen;
    char err[256];

    memcpy(fl, GF, sizeof(fl));
    memcpy(ed, GE, sizeof(ed));
    s.filters = fl, s.hdr_edits = ed;
    fl[0].cluster = 0;       /* zero-initialised: not NONE */
    fl[0].status = 999;      /* not checked: not a redirect */
    fl[0].scheme = "gopher"; /* idem */
    fl[1].mirror_permille = 5000;
    fl[2].first_edit = 77; /* out of range, but a mirror has no edits */
    fl[2].path = "/ignored";
    fl[3].cluster = 12345;
    fl[4].port = 80;
    fl[4].status = 302;
    fl[4].scheme = "https";
    fl[4].path_mod = SNAPWIRE_PATH_FULL;
    ed[2].value = "dropped"; /* REMOVE */
    assert_int_equal(snapwire_encode(&s, 9, &f, &len, err, sizeof(err)), 0);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.filters[0].cluster, SNAPWIRE_NONE);
    assert_int_equal(d.filters[0].status, 0);
    assert_string_equal(d.filters[0].scheme, "");
    assert_int_equal(d.filters[1].mirror_permille, 0);
    assert_int_equal(d.filters[2].first_edit, 0);
    assert_string_equal(d.filters[2].path, "");
    assert_int_equal(d.filters[3].cluster, SNAPWIRE_NONE);
    assert_int_equal(d.filters[4].port, 0);
    assert_int_equal(d.filters[4].status, 0);
    assert_string_equal(d.filters[4].scheme, "");
    assert_string_equal(d.hdr_edits[2].value, "");
    snapwire_free(&d);
    /* ...so the frame is the one the clean sample gives */
    g = encode_gw(&glen);
    assert_true(snapwire_same_payload(f, len, g, glen));
    free(g);
    free(f);
    /* a REDIRECT or REWRITE that keeps the path sends no path */
    fl[3].path_mod = SNAPWIRE_PATH_KEEP;
    assert_int_equal(snapwire_encode(&s, 9, &f, &len, err, sizeof(err)), 0);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.filters[3].path, "");
    snapwire_free(&d);
    free(f);
}

static void test_v4_json_dump(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_gw(&len);
    struct snapwire_snapshot d;
    char err[256];
    char *js;

    assert_int_equal(snapwire_decode(f, len, &d, err, sizeof(err)), 0);
    js = snapwire_to_json(&d);
    assert_non_null(js);
    static const char *want[] = {
        "\"cluster\": null",
        "\"pathType\": \"RegularExpression\"",
        "\"path\": \"^/v[0-9]+/.*$\"",
        "\"method\": \"GET\"",
        "\"method\": \"PATCH\"",
        "\"wild_any\": true",
        "\"tls_only\": true",
        "\"plain_only\": true",
        "\"kind\": \"HeaderExact\"",
        "\"kind\": \"HeaderRegex\"",
        "\"kind\": \"QueryExact\"",
        "\"name\": \"x-env\"",
        "\"value\": \"canary\"",
        "\"weight\": 80",
        "\"weight\": 0",
        "\"type\": \"RequestHeaderModifier\"",
        "\"type\": \"ResponseHeaderModifier\"",
        "\"type\": \"RequestRedirect\"",
        "\"type\": \"URLRewrite\"",
        "\"type\": \"RequestMirror\"",
        "\"op\": \"set\"",
        "\"op\": \"add\"",
        "\"op\": \"remove\"",
        "\"name\": \"X-Tenant\"",
        "\"value\": \"a b\"",
        "\"scheme\": \"https\"",
        "\"hostname\": \"example.com\"",
        "\"port\": 8443",
        "\"status\": 301",
        "\"path_mod\": \"ReplacePrefixMatch\"",
        "\"path_mod\": \"ReplaceFullPath\"",
        "\"path\": \"/new\"",
        "\"permille\": 250",
        "\"request_timeout_ms\": 1500",
        "\"backend_timeout_ms\": \"none\"",
        "\"attempts\": 3",
        "\"backoff_ms\": 25",
        "\"attempts\": 10",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(js, want[i])) fail_msg("JSON lacks %s:\n%s", want[i], js);
    /* the retry codes as a list: 502, 503, 504, 599 */
    {
        const char *c = strstr(js, "\"codes\"");
        assert_non_null(c);
        const char *a = strstr(c, "502"), *b = strstr(c, "503"), *e = strstr(c, "504"),
                   *z = strstr(c, "599"), *end = strchr(c, ']');
        assert_true(a && b && e && z && a < b && b < e && e < z && z < end);
    }
    /* a REMOVE edit shows no value; the Ingress route (routes[2]) no v4 key */
    {
        const char *c = strstr(js, "\"name\": \"Cookie\"");
        assert_non_null(c);
        c += strlen("\"name\": \"Cookie\"");
        while (*c == ' ' || *c == '\n')
            c++;
        assert_int_equal(*c, '}');
    }
    {
        const char *ing = strstr(js, "\"source\": \"default/ing\"");
        assert_non_null(ing);
        const char *end = strchr(ing, '}');
        static const char *v4keys[] = {"method",   "conds",    "backends",   "filters", "retry",
                                       "_timeout", "wild_any", "plain_only", "tls_only"};
        for (size_t i = 0; i < sizeof(v4keys) / sizeof(v4keys[0]); i++) {
            const char *k = strstr(ing, v4keys[i]);
            assert_true(!k || k > end);
        }
    }
    free(js);
    snapwire_free(&d);
    free(f);
}

/* An Ingress-only snapshot dumps as before version 4: no new key at all. */
static void test_ingress_json_has_no_v4_keys(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = encode_sample(&len);
    struct snapwire_snapshot d;
    char err[256];
    char *js;
    static const char *v4keys[] = {"\"method\"",   "\"conds\"",      "\"backends\"",
                                   "\"filters\"",  "\"retry\"",      "_timeout_ms\"",
                                   "\"wild_any\"", "\"plain_only\"", "\"tls_only\""};

    assert_int_equal(snapwire_decode(f, len, &d, err, sizeof(err)), 0);
    js = snapwire_to_json(&d);
    assert_non_null(js);
    for (size_t i = 0; i < sizeof(v4keys) / sizeof(v4keys[0]); i++)
        if (strstr(js, v4keys[i])) fail_msg("Ingress JSON has %s", v4keys[i]);
    assert_non_null(strstr(js, "\"cluster\": \"default/api:80\""));
    free(js);
    snapwire_free(&d);
    free(f);
}

/* ---- version 5: balancing ---- */

#define W_CLUSTER 120
#define CL(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_CLUSTERS, rec, W_CLUSTER, off, w, v, NULL, want                               \
    }
#define CLS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_CLUSTERS, rec, W_CLUSTER, off, 0, 0, str, want                                \
    }

static struct snapwire_cluster C5[] = {
    {.name = "default/api:80+ring_hash",
     .lb = SNAPWIRE_LB_RING_HASH,
     .first_endpoint = 0,
     .endpoint_count = 2,
     .tls_sni = "",
     .tls_ca = SNAPWIRE_NONE,
     .hash_on = SNAPWIRE_HASH_HEADER,
     .hash_name = "x-user",
     .affinity_cookie = ""},
    {.name = "default/web:http+tls+maglev",
     .lb = SNAPWIRE_LB_MAGLEV,
     .first_endpoint = 2,
     .endpoint_count = 1,
     .tls = 1,
     .tls_sni = "web.default.svc",
     .tls_ca = 1,
     .hash_on = SNAPWIRE_HASH_COOKIE,
     .hash_name = "Session-ID",
     .affinity_cookie = "INGRESSCOOKIE"},
};

static uint8_t *encode_v5(const struct snapwire_cluster *cl, size_t *len, char *err, size_t errlen)
{
    struct snapwire_snapshot s = sample();
    struct snapwire_cluster c[2];
    uint8_t *f = NULL;

    memcpy(c, cl, sizeof(c));
    s.clusters = c;
    if (snapwire_encode(&s, 9, &f, len, err, errlen) < 0) return NULL;
    return f;
}

static void test_v5_round_trip(void **state)
{
    (void)state;
    static const uint8_t lbs[] = {SNAPWIRE_LB_ROUND_ROBIN, SNAPWIRE_LB_LEAST_REQUEST,
                                  SNAPWIRE_LB_EWMA, SNAPWIRE_LB_RING_HASH, SNAPWIRE_LB_MAGLEV};
    static const uint8_t hashes[] = {SNAPWIRE_HASH_NONE, SNAPWIRE_HASH_SOURCE_IP,
                                     SNAPWIRE_HASH_PATH};
    struct snapwire_cluster c[2];
    struct snapwire_snapshot d;
    char err[256] = "";
    size_t len;
    uint8_t *f = encode_v5(C5, &len, err, sizeof(err));

    assert_non_null(f);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_clusters, 2);
    assert_int_equal(d.clusters[0].lb, SNAPWIRE_LB_RING_HASH);
    assert_int_equal(d.clusters[0].hash_on, SNAPWIRE_HASH_HEADER);
    assert_string_equal(d.clusters[0].hash_name, "x-user");
    assert_string_equal(d.clusters[0].affinity_cookie, "");
    assert_int_equal(d.clusters[1].lb, SNAPWIRE_LB_MAGLEV);
    assert_int_equal(d.clusters[1].hash_on, SNAPWIRE_HASH_COOKIE);
    assert_string_equal(d.clusters[1].hash_name, "Session-ID");
    assert_string_equal(d.clusters[1].affinity_cookie, "INGRESSCOOKIE");
    assert_string_equal(d.clusters[1].tls_sni, "web.default.svc");
    assert_int_equal(d.clusters[1].tls_ca, 1);
    assert_int_equal(d.clusters[1].first_endpoint, 2);
    snapwire_free(&d);
    free(f);
    /* every lb and every hash_on without a name */
    for (size_t i = 0; i < sizeof(lbs); i++)
        for (size_t j = 0; j < sizeof(hashes); j++) {
            memcpy(c, C5, sizeof(c));
            c[0].lb = lbs[i];
            c[0].hash_on = hashes[j];
            c[0].hash_name = NULL; /* NULL is written as "" */
            c[0].affinity_cookie = j ? "a" : NULL;
            f = encode_v5(c, &len, err, sizeof(err));
            if (!f) fail_msg("lb %u hash %u: %s", lbs[i], hashes[j], err);
            assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
            assert_int_equal(d.clusters[0].lb, lbs[i]);
            assert_int_equal(d.clusters[0].hash_on, hashes[j]);
            assert_string_equal(d.clusters[0].hash_name, "");
            assert_string_equal(d.clusters[0].affinity_cookie, j ? "a" : "");
            snapwire_free(&d);
            free(f);
        }
}

/* Each v5 check, broken in turn on the encoder side. */
static void test_v5_encoder_refuses(void **state)
{
    (void)state;
    struct snapwire_cluster c[2];
    char err[256];
    size_t len;

#define REFUSE(mod, want)                                                                          \
    do {                                                                                           \
        memcpy(c, C5, sizeof(c));                                                                  \
        mod;                                                                                       \
        err[0] = '\0';                                                                             \
        assert_null(encode_v5(c, &len, err, sizeof(err)));                                         \
        if (!strstr(err, want)) fail_msg("error \"%s\", want \"%s\"", err, want);                  \
    } while (0)
    REFUSE(c[0].lb = 0, "cluster 0: bad lb policy 0");
    REFUSE(c[1].lb = 6, "cluster 1: bad lb policy 6");
    REFUSE(c[0].hash_on = 5, "cluster 0: bad hash_on 5");
    REFUSE(c[0].hash_name = "X-User", "cluster 0: hash_name is not a lower-case token");
    REFUSE(c[0].hash_name = "", "cluster 0: hash_name is not a lower-case token");
    REFUSE(c[0].hash_name = NULL, "cluster 0: hash_name is not a lower-case token");
    REFUSE(c[1].hash_name = "a=b", "cluster 1: hash_name is not a token");
    REFUSE(c[1].hash_name = "", "cluster 1: hash_name is not a token");
    REFUSE(c[0].hash_on = SNAPWIRE_HASH_PATH, "cluster 0: hash_name set without");
    REFUSE((c[0].hash_on = SNAPWIRE_HASH_NONE, c[0].hash_name = "x"), "cluster 0: hash_name set");
    REFUSE(c[1].affinity_cookie = "a b", "cluster 1: affinity cookie name is not a token");
    REFUSE(c[1].affinity_cookie = "a;b", "cluster 1: affinity cookie name is not a token");
#undef REFUSE
}

/* The same checks in the decoder, on the wire with a valid CRC. */
static void test_v5_decoder_rejects(void **state)
{
    (void)state;
    static const struct patch cases[] = {
        CL(0, 16, 1, 0, "cluster 0: bad lb policy 0"),
        CL(1, 16, 1, 6, "cluster 1: bad lb policy 6"),
        CL(0, 16, 1, SNAPWIRE_LB_EWMA, NULL),
        CL(0, 18, 1, 5, "cluster 0: bad hash_on 5"),
        CL(0, 18, 1, SNAPWIRE_HASH_SOURCE_IP, "cluster 0: hash_name set without"),
        CL(0, 18, 1, SNAPWIRE_HASH_COOKIE, NULL), /* x-user is a cookie name too */
        CLS(1, 32, "", "cluster 1: hash_name is not a token"),
        CLS(0, 32, "Session-ID", "cluster 0: hash_name is not a lower-case token"),
        CLS(0, 32, "web.default.svc", NULL),
        CLS(0, 40, "default/api", "cluster 0: affinity cookie name is not a token"),
        CLS(0, 40, "INGRESSCOOKIE", NULL),
        CLS(1, 40, "", NULL),
        CL(1, 19, 1, 1, "cluster 1: nonzero padding"),
        CL(0, 44, 4, 0xffff, "cluster 0 affinity_cookie: string reference out of bounds"),
    };
    struct snapwire_snapshot d;
    char err[256];
    size_t len;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *f = encode_v5(C5, &len, err, sizeof(err));
        assert_non_null(f);
        apply_patch(f, &cases[i]);
        fix_crc(f, len);
        err[0] = '\0';
        int rc = guarded_decode(f, len, &d, err, sizeof(err));
        if (!cases[i].want) {
            if (rc != 0) fail_msg("case %zu: refused: %s", i, err);
            check_invariants(&d);
            snapwire_free(&d);
        } else if (rc != -1 || !strstr(err, cases[i].want)) {
            fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err, cases[i].want);
        }
        free(f);
    }
}

static void test_v5_json_dump(void **state)
{
    (void)state;
    static const char *names[] = {"round_robin", "least_request", "ewma", "ring_hash", "maglev"};
    struct snapwire_cluster c[2];
    struct snapwire_snapshot d;
    char err[256] = "", *js;
    size_t len;
    uint8_t *f = encode_v5(C5, &len, err, sizeof(err));

    assert_non_null(f);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    js = snapwire_to_json(&d);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"lb\": \"ring_hash\""));
    assert_non_null(strstr(js, "\"lb\": \"maglev\""));
    assert_non_null(strstr(js, "\"hash_on\": \"header\""));
    assert_non_null(strstr(js, "\"hash_name\": \"x-user\""));
    assert_non_null(strstr(js, "\"hash_on\": \"cookie\""));
    assert_non_null(strstr(js, "\"hash_name\": \"Session-ID\""));
    assert_non_null(strstr(js, "\"affinity_cookie\": \"INGRESSCOOKIE\""));
    free(js);
    snapwire_free(&d);
    free(f);
    for (uint8_t lb = 1; lb <= 5; lb++) {
        char want[64];
        memcpy(c, C, sizeof(c));
        c[0].lb = c[1].lb = lb;
        f = encode_v5(c, &len, err, sizeof(err));
        assert_non_null(f);
        assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
        js = snapwire_to_json(&d);
        snprintf(want, sizeof(want), "\"lb\": \"%s\"", names[lb - 1]);
        assert_non_null(strstr(js, want));
        /* unset fields stay out of the dump */
        assert_null(strstr(js, "hash_on"));
        assert_null(strstr(js, "hash_name"));
        assert_null(strstr(js, "affinity_cookie"));
        free(js);
        snapwire_free(&d);
        free(f);
    }
}

static void test_replies(void **state)
{
    (void)state;
    char buf[64], reason[32];
    uint64_t g = 0;
    size_t n;

    n = snapwire_reply_format(buf, sizeof(buf), 1, 42, NULL);
    assert_string_equal(buf, "ACK 42\n");
    assert_int_equal(n, 7);
    assert_int_equal(snapwire_reply_parse(buf, n, &g, NULL, 0), 1);
    assert_int_equal(g, 42);
    n = snapwire_reply_format(buf, sizeof(buf), 0, 43, "bad\nthing");
    assert_string_equal(buf, "NACK 43 bad thing\n");
    assert_int_equal(snapwire_reply_parse(buf, n, &g, reason, sizeof(reason)), 0);
    assert_int_equal(g, 43);
    assert_string_equal(reason, "bad thing");
    n = snapwire_reply_format(buf, 12, 0, 43, "a very long reason that is cut");
    assert_true(n < 12 && strlen(buf) == n);
    assert_int_equal(snapwire_reply_parse("ACK", 3, &g, NULL, 0), -1);
    assert_int_equal(snapwire_reply_parse("ACK x", 5, &g, NULL, 0), -1);
    assert_int_equal(snapwire_reply_parse("ACK 1 2", 7, &g, NULL, 0), -1);
    assert_int_equal(snapwire_reply_parse("HELLO 1", 7, &g, NULL, 0), -1);
    assert_int_equal(snapwire_reply_parse("ACK 99999999999999999999999", 27, &g, NULL, 0), -1);
}

/* ---- version 6: resilience ---- */

/* C5 with every v6 field set on cluster 0. */
static void c6(struct snapwire_cluster c[2])
{
    memcpy(c, C5, 2 * sizeof(*c));
    c[0].hc_path = "/healthz?deep=1";
    c[0].hc_host = "api.internal:8080";
    c[0].hc_interval_ms = 2000;
    c[0].hc_timeout_ms = 500;
    c[0].hc_status_lo = 200;
    c[0].hc_status_hi = 299;
    c[0].hc_healthy = 2;
    c[0].hc_unhealthy = 3;
    c[0].od_consecutive = 7;
    c[0].od_base_ms = 10000;
    c[0].od_max_ms = 60000;
    c[0].od_max_percent = 30;
    c[0].cb_max_connections = 100;
    c[0].cb_max_pending = 10;
    c[0].cb_max_requests = 1000;
    c[0].rb_percent = 25;
    c[0].rb_min_per_sec = 5;
    c[0].slow_start_ms = 30000;
}

static void test_v6_round_trip(void **state)
{
    (void)state;
    struct snapwire_cluster c[2];
    struct snapwire_snapshot d;
    char err[256] = "", *json;
    size_t len;
    uint8_t *f;

    c6(c);
    f = encode_v5(c, &len, err, sizeof(err));
    if (!f) fail_msg("encode: %s", err);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.clusters[0].hc_path, "/healthz?deep=1");
    assert_string_equal(d.clusters[0].hc_host, "api.internal:8080");
    assert_int_equal(d.clusters[0].hc_interval_ms, 2000);
    assert_int_equal(d.clusters[0].hc_timeout_ms, 500);
    assert_int_equal(d.clusters[0].hc_status_lo, 200);
    assert_int_equal(d.clusters[0].hc_status_hi, 299);
    assert_int_equal(d.clusters[0].hc_healthy, 2);
    assert_int_equal(d.clusters[0].hc_unhealthy, 3);
    assert_int_equal(d.clusters[0].od_consecutive, 7);
    assert_int_equal(d.clusters[0].od_base_ms, 10000);
    assert_int_equal(d.clusters[0].od_max_ms, 60000);
    assert_int_equal(d.clusters[0].od_max_percent, 30);
    assert_int_equal(d.clusters[0].cb_max_connections, 100);
    assert_int_equal(d.clusters[0].cb_max_pending, 10);
    assert_int_equal(d.clusters[0].cb_max_requests, 1000);
    assert_int_equal(d.clusters[0].rb_percent, 25);
    assert_int_equal(d.clusters[0].rb_min_per_sec, 5);
    assert_int_equal(d.clusters[0].slow_start_ms, 30000);
    /* cluster 1 left everything zero: no checks, detection off, unlimited */
    assert_string_equal(d.clusters[1].hc_path, "");
    assert_int_equal(d.clusters[1].od_consecutive, 0);
    assert_int_equal(d.endpoints[0].weight, 1);
    assert_int_equal(d.endpoints[1].weight, 3);
    json = snapwire_to_json(&d);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"health_check\""));
    assert_non_null(strstr(json, "\"/healthz?deep=1\""));
    assert_non_null(strstr(json, "\"max_pending\": 10"));
    assert_non_null(strstr(json, "\"slow_start_ms\": 30000"));
    assert_non_null(strstr(json, "\"weights\""));
    assert_non_null(strstr(json, "\"host\": \"api.internal:8080\""));
    assert_non_null(strstr(json, "\"unhealthy_threshold\": 3"));
    assert_non_null(strstr(json, "\"outlier\""));
    assert_non_null(strstr(json, "\"consecutive\": 7"));
    assert_non_null(strstr(json, "\"max_percent\": 30"));
    assert_non_null(strstr(json, "\"circuit_breaker\""));
    assert_non_null(strstr(json, "\"max_requests\": 1000"));
    assert_non_null(strstr(json, "\"retry_budget\""));
    assert_non_null(strstr(json, "\"percent\": 25"));
    assert_non_null(strstr(json, "\"min_per_sec\": 5"));
    /* only cluster 0 has checks: one "health_check" */
    assert_null(strstr(strstr(json, "\"health_check\"") + 1, "\"health_check\""));
    free(json);
    snapwire_free(&d);
    free(f);
    /* a feature switched off travels as zeros, whatever else its fields held */
    c6(c);
    c[0].hc_path = "";
    c[0].hc_interval_ms = 5; /* out of range, but meaningless without hc_path */
    c[0].od_consecutive = 0;
    c[0].od_base_ms = 1;
    f = encode_v5(c, &len, err, sizeof(err));
    if (!f) fail_msg("encode: %s", err);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.clusters[0].hc_host, "");
    assert_int_equal(d.clusters[0].hc_interval_ms, 0);
    assert_int_equal(d.clusters[0].hc_unhealthy, 0);
    assert_int_equal(d.clusters[0].od_base_ms, 0);
    assert_int_equal(d.clusters[0].od_max_percent, 0);
    assert_int_equal(d.clusters[0].cb_max_pending, 10);
    snapwire_free(&d);
    free(f);
}

#define W_ENDPOINT 16
#define EP(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_ENDPOINTS, rec, W_ENDPOINT, off, w, v, NULL, want                             \
    }

/*
 * Every v6 decoder check, each on its own, with a valid CRC: cluster 0 of c6() has every
 * feature on, cluster 1 every feature off.
 */
static void test_v6_decoder_rejects(void **state)
{
    (void)state;
    static const struct patch cases[] = {
        /* health checks */
        CLS(0, 48, "x-user", "cluster 0: hc_path is not a path"),
        CLS(0, 48, "/healthz?deep=1", NULL),
        CLS(0, 56, "default/api:80+ring_hash", "cluster 0: hc_host is not a host"),
        CLS(0, 56, "web.default.svc", NULL),
        CLS(0, 56, "", NULL),
        CL(0, 64, 4, 99, "cluster 0: hc_interval_ms out of 100..3600000"),
        CL(0, 64, 4, 3600001, "cluster 0: hc_interval_ms out of 100..3600000"),
        CL(0, 64, 4, 499, "cluster 0: hc_timeout_ms out of 10..hc_interval_ms"),
        CL(0, 64, 4, 500, NULL),
        CL(0, 68, 4, 9, "cluster 0: hc_timeout_ms out of 10..hc_interval_ms"),
        CL(0, 68, 4, 2001, "cluster 0: hc_timeout_ms out of 10..hc_interval_ms"),
        CL(0, 68, 4, 10, NULL),
        CL(0, 72, 2, 99, "cluster 0: hc_status_lo out of 100..599"),
        CL(0, 72, 2, 300, "cluster 0: hc_status_hi out of hc_status_lo..599"),
        CL(0, 72, 2, 299, NULL),
        CL(0, 74, 2, 600, "cluster 0: hc_status_hi out of hc_status_lo..599"),
        CL(0, 74, 2, 599, NULL),
        CL(0, 76, 1, 0, "cluster 0: hc_healthy out of 1..100"),
        CL(0, 76, 1, 101, "cluster 0: hc_healthy out of 1..100"),
        CL(0, 77, 1, 0, "cluster 0: hc_unhealthy out of 1..100"),
        CL(0, 77, 1, 255, "cluster 0: hc_unhealthy out of 1..100"),
        CL(0, 77, 1, 100, NULL),
        /* checks off: every other hc_* field 0 / "" */
        CLS(0, 48, "", "cluster 0: hc_host set without hc_path"),
        CLS(1, 56, "web.default.svc", "cluster 1: hc_host set without hc_path"),
        CL(1, 64, 4, 1000, "cluster 1: hc_interval_ms set without hc_path"),
        CL(1, 68, 4, 100, "cluster 1: hc_timeout_ms set without hc_path"),
        CL(1, 72, 2, 200, "cluster 1: hc_status_lo set without hc_path"),
        CL(1, 74, 2, 299, "cluster 1: hc_status_hi set without hc_path"),
        CL(1, 76, 1, 1, "cluster 1: hc_healthy set without hc_path"),
        CL(1, 77, 1, 1, "cluster 1: hc_unhealthy set without hc_path"),
        /* outlier detection */
        CL(0, 80, 4, 1001, "cluster 0: od_consecutive above 1000"),
        CL(0, 80, 4, 1000, NULL),
        CL(0, 84, 4, 999, "cluster 0: od_base_ms out of 1000..3600000"),
        CL(0, 84, 4, 3600001, "cluster 0: od_base_ms out of 1000..3600000"),
        CL(0, 84, 4, 60000, NULL),
        CL(0, 88, 4, 9999, "cluster 0: od_max_ms out of od_base_ms..86400000"),
        CL(0, 88, 4, 86400001, "cluster 0: od_max_ms out of od_base_ms..86400000"),
        CL(0, 88, 4, 86400000, NULL),
        CL(0, 78, 1, 101, "cluster 0: od_max_percent above 100"),
        CL(0, 78, 1, 0, NULL),
        /* detection off: every other od_* field 0 */
        CL(0, 80, 4, 0, "cluster 0: od_base_ms set with od_consecutive 0"),
        CL(1, 84, 4, 1000, "cluster 1: od_base_ms set with od_consecutive 0"),
        CL(1, 88, 4, 1000, "cluster 1: od_max_ms set with od_consecutive 0"),
        CL(1, 78, 1, 1, "cluster 1: od_max_percent set with od_consecutive 0"),
        /* circuit breaking, retry budget, slow start (whatever the other features) */
        CL(0, 92, 4, 1000001, "cluster 0: cb_max_connections above 1000000"),
        CL(1, 96, 4, 1000001, "cluster 1: cb_max_pending above 1000000"),
        CL(0, 100, 4, UINT32_MAX, "cluster 0: cb_max_requests above 1000000"),
        CL(1, 100, 4, 1000000, NULL),
        CL(0, 104, 2, 1001, "cluster 0: rb_percent above 1000"),
        CL(1, 104, 2, 1000, NULL),
        CL(1, 108, 4, 100001, "cluster 1: rb_min_per_sec above 100000"),
        CL(1, 108, 4, 100000, NULL),
        CL(0, 112, 4, 3600001, "cluster 0: slow_start_ms above 3600000"),
        CL(1, 112, 4, 3600000, NULL),
        /* padding */
        CL(0, 79, 1, 1, "cluster 0: nonzero padding"),
        CL(1, 107, 1, 1, "cluster 1: nonzero padding"),
        CL(1, 119, 1, 1, "cluster 1: nonzero padding"),
        /* endpoint weights */
        EP(0, 12, 4, 0, "endpoint 0: weight 0 out of 1..10000"),
        EP(2, 12, 4, 10001, "endpoint 2: weight 10001 out of 1..10000"),
        EP(1, 12, 4, 10000, NULL),
        EP(1, 11, 1, 1, "endpoint 1: nonzero padding"),
    };
    struct snapwire_cluster c[2];
    struct snapwire_snapshot d;
    char err[256];
    size_t len;

    c6(c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *f = encode_v5(c, &len, err, sizeof(err));
        assert_non_null(f);
        apply_patch(f, &cases[i]);
        fix_crc(f, len);
        err[0] = '\0';
        int rc = guarded_decode(f, len, &d, err, sizeof(err));
        if (!cases[i].want) {
            if (rc != 0) fail_msg("case %zu: refused: %s", i, err);
            check_invariants(&d);
            snapwire_free(&d);
        } else if (rc != -1 || !strstr(err, cases[i].want)) {
            fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err, cases[i].want);
        }
        free(f);
    }
}

/* Each v6 check, broken in turn (the encoder runs the decoder's checks). */
static void test_v6_refused(void **state)
{
    (void)state;
    struct snapwire_cluster c[2];
    struct snapwire_snapshot s;
    struct snapwire_endpoint e[3];
    uint8_t *f = NULL;
    char err[256], long_path[1026], long_host[257];
    size_t len;

    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[1025] = '\0'; /* 1025 bytes */
    memset(long_host, 'h', sizeof(long_host) - 1);
    long_host[256] = '\0'; /* 256 bytes */
#define REFUSE6(mod, want)                                                                         \
    do {                                                                                           \
        c6(c);                                                                                     \
        mod;                                                                                       \
        err[0] = '\0';                                                                             \
        assert_null(encode_v5(c, &len, err, sizeof(err)));                                         \
        if (!strstr(err, want)) fail_msg("error \"%s\", want \"%s\"", err, want);                  \
    } while (0)
    REFUSE6(c[0].hc_path = "healthz", "cluster 0: hc_path is not a path");
    REFUSE6(c[0].hc_path = "/a b", "cluster 0: hc_path is not a path");
    REFUSE6(c[0].hc_host = "a b", "cluster 0: hc_host is not a host");
    REFUSE6(c[0].hc_host = "a/b", "cluster 0: hc_host is not a host");
    REFUSE6(c[0].hc_interval_ms = 99, "hc_interval_ms out of");
    REFUSE6(c[0].hc_interval_ms = 3600001, "hc_interval_ms out of");
    REFUSE6(c[0].hc_timeout_ms = 9, "hc_timeout_ms out of");
    REFUSE6(c[0].hc_timeout_ms = 2001, "hc_timeout_ms out of");
    REFUSE6(c[0].hc_path = "/a\tb", "cluster 0: hc_path is not a path");
    REFUSE6(c[0].hc_path = long_path, "cluster 0: hc_path is not a path");
    REFUSE6(c[0].hc_host = long_host, "cluster 0: hc_host is not a host");
    REFUSE6(c[0].hc_status_lo = 99, "cluster 0: hc_status_lo out of 100..599");
    REFUSE6(c[0].hc_status_hi = 600, "cluster 0: hc_status_hi out of");
    REFUSE6((c[0].hc_status_lo = 300, c[0].hc_status_hi = 299), "cluster 0: hc_status_hi out of");
    REFUSE6(c[0].hc_healthy = 0, "cluster 0: hc_healthy out of 1..100");
    REFUSE6(c[0].hc_healthy = 101, "cluster 0: hc_healthy out of 1..100");
    REFUSE6(c[0].hc_unhealthy = 0, "cluster 0: hc_unhealthy out of 1..100");
    REFUSE6(c[0].hc_unhealthy = 101, "cluster 0: hc_unhealthy out of 1..100");
    REFUSE6(c[0].od_consecutive = 1001, "od_consecutive above 1000");
    REFUSE6(c[0].od_base_ms = 999, "od_base_ms out of");
    REFUSE6(c[0].od_max_ms = 9999, "od_max_ms out of");
    REFUSE6(c[0].od_max_ms = 86400001, "od_max_ms out of");
    REFUSE6(c[0].od_max_percent = 101, "od_max_percent above 100");
    REFUSE6(c[0].cb_max_connections = 1000001, "cluster 0: cb_max_connections above 1000000");
    REFUSE6(c[0].cb_max_pending = 1000001, "cluster 0: cb_max_pending above 1000000");
    REFUSE6(c[1].cb_max_requests = UINT32_MAX, "cluster 1: cb_max_requests above 1000000");
    REFUSE6(c[0].rb_percent = 1001, "rb_percent above 1000");
    REFUSE6(c[0].rb_min_per_sec = 100001, "rb_min_per_sec above");
    REFUSE6(c[0].slow_start_ms = 3600001, "slow_start_ms above");
#undef REFUSE6
    /* the limits themselves pass */
    c6(c);
    long_path[1024] = '\0'; /* 1024 bytes */
    long_host[255] = '\0';
    c[0].hc_path = long_path;
    c[0].hc_host = long_host;
    f = encode_v5(c, &len, err, sizeof(err));
    if (!f) fail_msg("1024-byte path, 255-byte host refused: %s", err);
    free(f);
    c[0].hc_path = "/";
    c[0].hc_host = "[::1]:8080";
    c[0].cb_max_connections = c[0].cb_max_pending = c[0].cb_max_requests = 1000000;
    c[0].rb_min_per_sec = 100000;
    c[0].od_consecutive = 1000;
    c[0].od_base_ms = 3600000;
    c[0].hc_healthy = c[0].hc_unhealthy = 100;
    c[0].hc_interval_ms = c[0].hc_timeout_ms = 3600000;
    c[0].hc_status_lo = 100;
    c[0].hc_status_hi = 599;
    c[0].od_max_ms = 86400000;
    c[0].od_max_percent = 100;
    c[0].rb_percent = 1000;
    c[0].slow_start_ms = 3600000;
    f = encode_v5(c, &len, err, sizeof(err));
    if (!f) fail_msg("limits refused: %s", err);
    free(f);
    /* endpoint weights: 1..10000 */
    s = sample();
    memcpy(e, s.endpoints, sizeof(e));
    s.endpoints = e;
    e[2].weight = 0;
    assert_int_equal(snapwire_encode(&s, 9, &f, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "endpoint 2: weight 0 out of 1..10000"));
    e[2].weight = 10001;
    assert_int_equal(snapwire_encode(&s, 9, &f, &len, err, sizeof(err)), -1);
    e[2].weight = 10000;
    assert_int_equal(snapwire_encode(&s, 9, &f, &len, err, sizeof(err)), 0);
    free(f);
}

/* ---- version 7: the mesh directory ---- */

#define W_MESH_SERVICE 40
#define W_MESH_ID 8
#define ID_API "spiffe://cluster.local/ns/default/sa/api"
#define ID_WEB "spiffe://cluster.local/ns/default/sa/web"
static struct snapwire_mesh_id MI[] = {{ID_API}, {ID_WEB}};

/* Three records in (address, port) order: dual stack on port 80, a plain opaque port. */
static void mesh_services(struct snapwire_mesh_service m[3])
{
    m[0] = (struct snapwire_mesh_service){
        "default", "api", "10.96.0.10", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 0, 2};
    m[1] = (struct snapwire_mesh_service){
        "default", "api", "10.96.0.10", 5432, SNAPWIRE_NONE, SNAPWIRE_MESH_PROTO_OPAQUE, 0, 0, 0};
    m[2] = (struct snapwire_mesh_service){
        "default", "api", "fd00::a", 80, 1, SNAPWIRE_MESH_PROTO_DETECT, 1, 1, 1};
}

static struct snapwire_snapshot mesh_sample(struct snapwire_mesh_service m[3])
{
    struct snapwire_snapshot s = sample();

    mesh_services(m);
    s.meta.trust_domain = "cluster.local";
    s.meta.cluster_domain = "corp.example";
    s.n_mesh_services = 3, s.mesh_services = m;
    s.n_mesh_ids = 2, s.mesh_ids = MI;
    return s;
}

static uint8_t *encode_mesh(size_t *len)
{
    struct snapwire_mesh_service m[3];
    struct snapwire_snapshot s = mesh_sample(m);
    uint8_t *f = NULL;
    char err[256];

    if (snapwire_encode(&s, 7, &f, len, err, sizeof(err)) < 0) fail_msg("encode: %s", err);
    return f;
}

static void test_v7_round_trip(void **state)
{
    (void)state;
    struct snapwire_mesh_service m[3];
    struct snapwire_snapshot s = mesh_sample(m), d;
    uint8_t *f, *f2 = NULL;
    size_t len, len2;
    uint32_t slen;
    char err[256], *json;

    f = encode_mesh(&len);
    assert_int_equal(get32le(f + 24), 17);
    section(f, SNAPWIRE_SEC_META, &slen);
    assert_int_equal(slen, 48);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.meta.trust_domain, "cluster.local");
    assert_string_equal(d.meta.cluster_domain, "corp.example");
    assert_int_equal(d.meta.default_cluster, 1); /* the v6 meta fields are where they were */
    assert_int_equal(d.meta.default_cert, 2);
    assert_true(d.meta.default_max_body == DEFAULT_MAX_BODY);
    assert_int_equal(d.n_mesh_services, 3);
    assert_int_equal(d.n_mesh_ids, 2);
    for (uint32_t i = 0; i < 3; i++) {
        assert_string_equal(d.mesh_services[i].ns, m[i].ns);
        assert_string_equal(d.mesh_services[i].name, m[i].name);
        assert_string_equal(d.mesh_services[i].address, m[i].address);
        assert_int_equal(d.mesh_services[i].port, m[i].port);
        assert_int_equal(d.mesh_services[i].cluster, m[i].cluster);
        assert_int_equal(d.mesh_services[i].proto, m[i].proto);
        assert_int_equal(d.mesh_services[i].mtls, m[i].mtls);
        assert_int_equal(d.mesh_services[i].first_id, m[i].first_id);
        assert_int_equal(d.mesh_services[i].id_count, m[i].id_count);
    }
    assert_string_equal(d.mesh_ids[0].uri, ID_API);
    assert_string_equal(d.mesh_ids[1].uri, ID_WEB);
    /* decode(encode(decode(x))) == x, byte for byte */
    assert_int_equal(snapwire_encode(&d, 7, &f2, &len2, err, sizeof(err)), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(f, f2, len);
    json = snapwire_to_json(&d);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"trust_domain\": \"cluster.local\""));
    assert_non_null(strstr(json, "\"cluster_domain\": \"corp.example\""));
    assert_non_null(strstr(json, "\"address\": \"fd00::a\""));
    assert_non_null(strstr(json, "\"protocol\": \"opaque\""));
    assert_non_null(strstr(json, "\"protocol\": \"detect\""));
    assert_non_null(strstr(json, "\"cluster\": \"default/web:http+tls\""));
    assert_non_null(strstr(json, "\"mtls\": true"));
    assert_non_null(strstr(json, "\"identities\": [\n                \"" ID_API));
    free(json);
    snapwire_free(&d);
    free(f);
    free(f2);
    /* a mesh snapshot without a cluster domain gets the default; one with no services too */
    s.meta.cluster_domain = NULL;
    s.n_mesh_services = s.n_mesh_ids = 0;
    assert_int_equal(snapwire_encode(&s, 7, &f, &len, err, sizeof(err)), 0);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.meta.cluster_domain, "cluster.local");
    assert_int_equal(d.n_mesh_services, 0);
    json = snapwire_to_json(&d);
    assert_non_null(strstr(json, "\"mesh_services\": ["));
    free(json);
    snapwire_free(&d);
    free(f);
}

/* Without a trust domain the payload is the v6 one: 13 sections, 24-byte META, no mesh keys. */
static void test_v7_plain_snapshot_unchanged(void **state)
{
    (void)state;
    struct snapwire_snapshot s = sample(), d;
    uint8_t *f, *f2 = NULL;
    size_t len, len2;
    uint32_t slen;
    char err[256], *json;

    f = encode_sample(&len);
    assert_int_equal(get32le(f + 24), 13);
    section(f, SNAPWIRE_SEC_META, &slen);
    assert_int_equal(slen, 24);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_string_equal(d.meta.trust_domain, "");
    assert_string_equal(d.meta.cluster_domain, "cluster.local");
    json = snapwire_to_json(&d);
    assert_null(strstr(json, "mesh"));
    assert_null(strstr(json, "trust_domain"));
    free(json);
    snapwire_free(&d);
    /* a cluster domain alone is not carried: same bytes */
    s.meta.cluster_domain = "corp.example";
    assert_int_equal(snapwire_encode(&s, 7, &f2, &len2, err, sizeof(err)), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(f, f2, len);
    free(f);
    free(f2);
}

static void test_v7_encoder_refuses(void **state)
{
    (void)state;
    struct snapwire_mesh_service m[3];
    struct snapwire_mesh_id ids[2];
    struct snapwire_snapshot s;
    uint8_t *f = NULL;
    size_t len;
    char err[256], long_td[257];

    memset(long_td, 'a', sizeof(long_td) - 1);
    long_td[256] = '\0';
#define REFUSE7(mod, want)                                                                         \
    do {                                                                                           \
        s = mesh_sample(m);                                                                        \
        memcpy(ids, MI, sizeof(ids));                                                              \
        s.mesh_ids = ids;                                                                          \
        mod;                                                                                       \
        err[0] = '\0';                                                                             \
        f = NULL;                                                                                  \
        assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);                  \
        assert_null(f);                                                                            \
        if (!strstr(err, want)) fail_msg("error \"%s\", want \"%s\"", err, want);                  \
    } while (0)
    REFUSE7(s.meta.trust_domain = "", "meta: mesh records without a trust domain");
    REFUSE7((s.meta.trust_domain = NULL, s.n_mesh_services = 0),
            "meta: mesh records without a trust domain");
    REFUSE7(s.meta.trust_domain = "Cluster.local", "meta: trust domain is not a SPIFFE");
    REFUSE7(s.meta.trust_domain = "a..b", "meta: trust domain is not a SPIFFE");
    REFUSE7(s.meta.trust_domain = "a/b", "meta: trust domain is not a SPIFFE");
    REFUSE7(s.meta.trust_domain = long_td, "meta: trust domain is not a SPIFFE");
    REFUSE7(s.meta.cluster_domain = "corp_example", "meta: cluster domain is not a DNS name");
    REFUSE7(s.meta.cluster_domain = ".corp", "meta: cluster domain is not a DNS name");
    REFUSE7(ids[0].uri = "spiffe://other.local/ns/default/sa/api", "mesh id 0: not a spiffe://");
    REFUSE7(ids[0].uri = "https://cluster.local/ns/default/sa/api", "mesh id 0: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local/", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local/ns//sa/web", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local/ns/../sa/web", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local/ns/./sa", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local/ns/a b", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.local/ns/web/", "mesh id 1: not a spiffe://");
    REFUSE7(ids[1].uri = "spiffe://cluster.localx/ns/web", "mesh id 1: not a spiffe://");
    REFUSE7(m[0].ns = "", "mesh service 0: empty namespace or name");
    REFUSE7(m[1].name = NULL, "mesh service 1: empty namespace or name");
    REFUSE7(m[0].address = "api", "mesh service 0: address is not an IP literal");
    REFUSE7(m[0].address = NULL, "mesh service 0: address is not an IP literal");
    REFUSE7(m[2].address = "FD00::A", "mesh service 2: address is not an IP literal in canonical");
    REFUSE7(m[2].address = "fd00:0::a",
            "mesh service 2: address is not an IP literal in canonical");
    REFUSE7(m[0].address = "010.96.0.10", "mesh service 0: address is not an IP literal");
    REFUSE7(m[0].port = 0, "mesh service 0: port 0");
    REFUSE7(m[0].cluster = 2, "mesh service 0: cluster out of range");
    REFUSE7(m[0].proto = 3, "mesh service 0: bad proto");
    REFUSE7(m[0].mtls = 2, "mesh service 0: bad mtls flag");
    REFUSE7(m[1].id_count = 1, "mesh service 1: identities without mtls");
    REFUSE7(m[1].first_id = 1, "mesh service 1: identities without mtls");
    REFUSE7(m[0].id_count = 0, "mesh service 0: mtls without identities");
    REFUSE7(m[0].id_count = 3, "mesh service 0: ids out of range");
    REFUSE7(m[2].first_id = UINT32_MAX, "mesh service 2: ids out of range");
    REFUSE7((ids[0].uri = ID_WEB, ids[1].uri = ID_API), "mesh service 0: ids not sorted");
    REFUSE7(ids[1].uri = ID_API, "mesh service 0: ids not sorted or duplicate");
    REFUSE7(m[1].port = 80, "mesh service 1: not sorted by (address, port) or duplicate");
    REFUSE7(m[1].port = 79, "mesh service 1: not sorted by (address, port)");
    REFUSE7(m[2].address = "10.96.0.1", "mesh service 2: not sorted by (address, port)");
#undef REFUSE7
    /* the bounds themselves pass: a 255-byte trust domain, '_' in it, port 65535 */
    long_td[255] = '\0';
    s = mesh_sample(m);
    s.meta.trust_domain = long_td;
    s.n_mesh_ids = 0;
    m[0].mtls = m[2].mtls = 0;
    m[0].id_count = m[2].id_count = m[2].first_id = 0;
    m[1].port = 65535;
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
    free(f);
    s.meta.trust_domain = "my_mesh.example";
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
    free(f);
}

#define MS(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_MESH_SERVICES, rec, W_MESH_SERVICE, off, w, v, NULL, want                     \
    }
#define MSS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_MESH_SERVICES, rec, W_MESH_SERVICE, off, 0, 0, str, want                      \
    }
#define MID(rec, str, want)                                                                        \
    {                                                                                              \
        SNAPWIRE_SEC_MESH_IDS, rec, W_MESH_ID, 0, 0, 0, str, want                                  \
    }
#define MT(off, str, want)                                                                         \
    {                                                                                              \
        SNAPWIRE_SEC_META, 0, 48, off, 0, 0, str, want                                             \
    }

/* Each case patched on its own into a fresh frame of encode (CRC fixed up) is refused with
 * its error. */
static void refuse_patched(const struct patch *cases, size_t n, uint8_t *(*encode)(size_t *))
{
    struct snapwire_snapshot d;
    char err[256];
    size_t len;
    uint8_t *f;

    for (size_t i = 0; i < n; i++) {
        f = encode(&len);
        apply_patch(f, &cases[i]);
        fix_crc(f, len);
        err[0] = '\0';
        if (guarded_decode(f, len, &d, err, sizeof(err)) == 0) {
            snapwire_free(&d);
            fail_msg("case %zu decoded; want \"%s\"", i, cases[i].want);
        }
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: error \"%s\", want \"%s\"", i, err, cases[i].want);
        free(f);
    }
}

/* Frame f (freed here) with section type's length set to slen (CRC fixed up) is refused with
 * want. */
static void refuse_section_len(uint8_t *f, size_t len, uint32_t type, uint32_t slen,
                               const char *want)
{
    struct snapwire_snapshot d;
    char err[256];

    for (uint32_t i = 0; i < get32le(f + 24); i++)
        if (get32le(f + 32 + i * 12) == type) put32le(f + 32 + i * 12 + 8, slen);
    fix_crc(f, len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
    if (!strstr(err, want)) fail_msg("error \"%s\", want \"%s\"", err, want);
    free(f);
}

/* Every truncation of encode's frame is refused (guard page: no over-read). */
static void refuse_truncations(uint8_t *(*encode)(size_t *))
{
    struct snapwire_snapshot d;
    char err[256];
    size_t len;
    uint8_t *f = encode(&len);

    for (size_t n = 0; n < len; n++)
        assert_int_equal(guarded_decode(f, n, &d, err, sizeof(err)), -1);
    free(f);
}

/* Every decoder check of version 7, each on its own, with a valid CRC. */
static void test_v7_decoder_rejects(void **state)
{
    (void)state;
    static const struct patch cases[] = {
        MSS(0, 0, "", "mesh service 0: empty namespace or name"),
        MSS(2, 8, "", "mesh service 2: empty namespace or name"),
        MSS(0, 16, "api", "mesh service 0: address is not an IP literal"),
        MSS(0, 16, "", "mesh service 0: address is not an IP literal"),
        MS(0, 24, 4, 2, "mesh service 0: cluster out of range"),
        MS(0, 24, 4, 0xfffffffe, "mesh service 0: cluster out of range"),
        MS(1, 28, 4, 1, "mesh service 1: identities without mtls"),
        MS(1, 32, 4, 1, "mesh service 1: identities without mtls"),
        MS(0, 32, 4, 0, "mesh service 0: mtls without identities"),
        MS(0, 32, 4, 3, "mesh service 0: ids out of range"),
        MS(2, 28, 4, 0xffffffff, "mesh service 2: ids out of range"),
        MS(0, 36, 2, 0, "mesh service 0: port 0"),
        MS(1, 36, 2, 80, "mesh service 1: not sorted by (address, port) or duplicate"),
        MS(0, 36, 2, 5433, "mesh service 1: not sorted by (address, port)"),
        MS(0, 38, 1, 3, "mesh service 0: bad proto"),
        MS(0, 38, 1, 0xff, "mesh service 0: bad proto"),
        MS(0, 39, 1, 2, "mesh service 0: bad mtls flag"),
        MID(0, ID_WEB, "mesh service 0: ids not sorted or duplicate"),
        MID(1, "default", "mesh id 1: not a spiffe:// URI in the trust domain"),
        MID(0, "", "mesh id 0: not a spiffe:// URI"),
        MT(24, "", "meta: mesh records without a trust domain"),
        MT(32, "", "meta: mesh record without a trust domain or cluster domain"),
        MT(24, "default", "mesh id 0: not a spiffe:// URI in the trust domain"),
        MT(24, "fd00::a", "meta: trust domain is not a SPIFFE trust domain"),
        MT(32, "fd00::a", "meta: cluster domain is not a DNS name"),
    };
    struct snapwire_snapshot d;
    char err[256];
    size_t len;
    uint8_t *f;

    refuse_patched(cases, sizeof(cases) / sizeof(cases[0]), encode_mesh);
    /* a 48-byte META without a trust domain, in a snapshot with no mesh records */
    {
        struct snapwire_mesh_service m[3];
        struct snapwire_snapshot s = mesh_sample(m);
        static const struct patch td = MT(24, "", "");
        s.n_mesh_services = s.n_mesh_ids = 0;
        assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
        apply_patch(f, &td);
        fix_crc(f, len);
        assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "meta: mesh record without a trust domain or cluster domain"));
        free(f);
    }
    /* mesh records behind a 24-byte (plain) META */
    f = encode_mesh(&len);
    refuse_section_len(f, len, SNAPWIRE_SEC_META, 24, "meta: mesh records without a trust domain");
    /* mesh sections of a size that is not a whole number of records */
    f = encode_mesh(&len);
    refuse_section_len(f, len, SNAPWIRE_SEC_MESH_SERVICES, 39,
                       "type 14 length 39 is not a whole number");
    refuse_truncations(encode_mesh);
}

/* ---- version 7: authorization policies ---- */

#define W_AUTHZ 40
#define W_PRINCIPAL 12
static const struct snapwire_principal PR[] = {{SNAPWIRE_PRINCIPAL_IDENTITY, ID_API},
                                               {SNAPWIRE_PRINCIPAL_IDENTITY, ID_WEB},
                                               {SNAPWIRE_PRINCIPAL_NAMESPACE, "shop"},
                                               {SNAPWIRE_PRINCIPAL_AUTHENTICATED, ""},
                                               {SNAPWIRE_PRINCIPAL_UNAUTHENTICATED, ""}};

/* Three policies in (ns, name, port, source) order; the last two share principals. */
static void authz_records(struct snapwire_authz a[3])
{
    a[0] = (struct snapwire_authz){"default",           "api", 0, SNAPWIRE_AUTHZ_ALLOW,
                                   "default/allow-web", 0,     3};
    a[1] = (struct snapwire_authz){"default",          "api", 80, SNAPWIRE_AUTHZ_DENY,
                                   "default/no-plain", 4,     1};
    a[2] = (struct snapwire_authz){"shop", "db", 5432, SNAPWIRE_AUTHZ_ALLOW, "shop/db", 2, 2};
}

static struct snapwire_snapshot authz_sample(struct snapwire_mesh_service m[3],
                                             struct snapwire_authz a[3],
                                             struct snapwire_principal p[5])
{
    struct snapwire_snapshot s = mesh_sample(m);

    authz_records(a);
    memcpy(p, PR, sizeof(PR));
    s.meta.authz_default_deny = 1;
    s.n_authz = 3, s.authz = a;
    s.n_principals = 5, s.principals = p;
    return s;
}

static uint8_t *encode_authz(size_t *len)
{
    struct snapwire_mesh_service m[3];
    struct snapwire_authz a[3];
    struct snapwire_principal p[5];
    struct snapwire_snapshot s = authz_sample(m, a, p);
    uint8_t *f = NULL;
    char err[256];

    if (snapwire_encode(&s, 7, &f, len, err, sizeof(err)) < 0) fail_msg("encode: %s", err);
    return f;
}

static void test_v7_authz_round_trip(void **state)
{
    (void)state;
    struct snapwire_mesh_service m[3];
    struct snapwire_authz a[3];
    struct snapwire_principal p[5];
    struct snapwire_snapshot s = authz_sample(m, a, p), d;
    uint8_t *f, *f2 = NULL;
    size_t len, len2;
    uint32_t slen;
    char err[256], *json;

    f = encode_authz(&len);
    section(f, SNAPWIRE_SEC_AUTHZ, &slen);
    assert_int_equal(slen, 3 * W_AUTHZ);
    section(f, SNAPWIRE_SEC_AUTHZ_PRINCIPALS, &slen);
    assert_int_equal(slen, 5 * W_PRINCIPAL);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.meta.authz_default_deny, 1);
    assert_int_equal(d.n_authz, 3);
    assert_int_equal(d.n_principals, 5);
    for (uint32_t i = 0; i < 3; i++) {
        assert_string_equal(d.authz[i].ns, a[i].ns);
        assert_string_equal(d.authz[i].name, a[i].name);
        assert_string_equal(d.authz[i].source, a[i].source);
        assert_int_equal(d.authz[i].port, a[i].port);
        assert_int_equal(d.authz[i].action, a[i].action);
        assert_int_equal(d.authz[i].first_principal, a[i].first_principal);
        assert_int_equal(d.authz[i].principal_count, a[i].principal_count);
    }
    for (uint32_t i = 0; i < 5; i++) {
        assert_int_equal(d.principals[i].kind, p[i].kind);
        assert_string_equal(d.principals[i].value, p[i].value);
    }
    assert_int_equal(snapwire_encode(&d, 7, &f2, &len2, err, sizeof(err)), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(f, f2, len);
    json = snapwire_to_json(&d);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"authz_default\": \"deny\""));
    assert_non_null(strstr(json, "\"action\": \"deny\""));
    assert_non_null(strstr(json, "\"source\": \"shop/db\""));
    assert_non_null(strstr(json, "\"kind\": \"unauthenticated\""));
    assert_non_null(strstr(json, "\"kind\": \"namespace\",\n"));
    assert_non_null(strstr(json, "\"value\": \"" ID_WEB "\""));
    free(json);
    snapwire_free(&d);
    free(f);
    free(f2);
    /* a mesh snapshot without policies: default allow, empty list */
    s.n_authz = s.n_principals = 0;
    s.meta.authz_default_deny = 0;
    assert_int_equal(snapwire_encode(&s, 7, &f, &len, err, sizeof(err)), 0);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_authz, 0);
    json = snapwire_to_json(&d);
    assert_non_null(strstr(json, "\"authz_default\": \"allow\""));
    assert_non_null(strstr(json, "\"authz\": ["));
    assert_null(strstr(json, "\"action\""));
    free(json);
    snapwire_free(&d);
    free(f);
    /* outside the mesh there is no authz key at all */
    f = encode_sample(&len);
    assert_int_equal(guarded_decode(f, len, &d, err, sizeof(err)), 0);
    json = snapwire_to_json(&d);
    assert_null(strstr(json, "authz"));
    free(json);
    snapwire_free(&d);
    free(f);
}

static void test_v7_authz_encoder_refuses(void **state)
{
    (void)state;
    struct snapwire_mesh_service m[3];
    struct snapwire_authz a[3];
    struct snapwire_principal p[5];
    struct snapwire_snapshot s;
    uint8_t *f = NULL;
    size_t len;
    char err[256];

#define REFUSEA(mod, want)                                                                         \
    do {                                                                                           \
        s = authz_sample(m, a, p);                                                                 \
        mod;                                                                                       \
        err[0] = '\0';                                                                             \
        f = NULL;                                                                                  \
        assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);                  \
        assert_null(f);                                                                            \
        if (!strstr(err, want)) fail_msg("error \"%s\", want \"%s\"", err, want);                  \
    } while (0)
    REFUSEA((s.meta.trust_domain = "", s.n_mesh_services = s.n_mesh_ids = 0),
            "meta: authorization records without a trust domain");
    REFUSEA((s.meta.trust_domain = NULL, s.n_mesh_services = s.n_mesh_ids = s.n_authz = 0),
            "meta: authorization records without a trust domain");
    REFUSEA((s.meta.trust_domain = NULL, s.n_mesh_services = s.n_mesh_ids = s.n_authz = 0,
             s.n_principals = 0),
            "meta: authorization records without a trust domain"); /* default deny alone */
    REFUSEA(s.meta.authz_default_deny = 2, "meta: bad authz_default_deny 2");
    REFUSEA(p[0].kind = 0, "principal 0: bad kind");
    REFUSEA(p[0].kind = 5, "principal 0: bad kind");
    REFUSEA(p[0].value = "spiffe://other.local/ns/default/sa/api", "principal 0: not a spiffe://");
    REFUSEA(p[1].value = "", "principal 1: not a spiffe://");
    REFUSEA(p[2].value = "", "principal 2: not a namespace name");
    REFUSEA(p[2].value = "Shop", "principal 2: not a namespace name");
    REFUSEA(p[2].value = "a.b", "principal 2: not a namespace name");
    REFUSEA(p[2].value = "-shop", "principal 2: not a namespace name");
    REFUSEA(p[2].value = "shop/sa", "principal 2: not a namespace name");
    REFUSEA(p[3].value = "x", "principal 3: value set");
    REFUSEA(p[4].value = "x", "principal 4: value set");
    REFUSEA(a[0].ns = "", "authz 0: empty namespace or name");
    REFUSEA(a[1].name = NULL, "authz 1: empty namespace or name");
    REFUSEA(a[2].source = "", "authz 2: empty source");
    REFUSEA(a[0].action = 0, "authz 0: bad action");
    REFUSEA(a[0].action = 3, "authz 0: bad action");
    REFUSEA(a[0].principal_count = 0, "authz 0: no principals");
    REFUSEA(a[0].principal_count = 6, "authz 0: principals out of range");
    REFUSEA(a[1].first_principal = UINT32_MAX, "authz 1: principals out of range");
    REFUSEA((p[0].value = ID_WEB, p[1].value = ID_API), "authz 0: principals not sorted");
    REFUSEA(p[1].value = ID_API, "authz 0: principals not sorted or duplicate");
    REFUSEA(a[0].port = 81, "authz 1: not sorted by (ns, name, port, source)");
    REFUSEA((a[1].port = 0, a[1].source = "default/allow-web"),
            "authz 1: not sorted by (ns, name, port, source) or duplicate");
    REFUSEA(a[2].ns = "alpha", "authz 2: not sorted");
    REFUSEA(a[1].name = "ap", "authz 1: not sorted");
#undef REFUSEA
    /* shared and overlapping ranges, port 65535, a namespace of 63 bytes are fine */
    s = authz_sample(m, a, p);
    a[2].port = 65535;
    a[2].first_principal = 0;
    a[2].principal_count = 5;
    p[2].value = "a23456789012345678901234567890123456789012345678901234567890123";
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
    free(f);
    p[2].value = "a234567890123456789012345678901234567890123456789012345678901234";
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
}

#define AZ(rec, off, w, v, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_AUTHZ, rec, W_AUTHZ, off, w, v, NULL, want                                    \
    }
#define AZS(rec, off, str, want)                                                                   \
    {                                                                                              \
        SNAPWIRE_SEC_AUTHZ, rec, W_AUTHZ, off, 0, 0, str, want                                     \
    }
#define PRV(rec, off, w, v, want)                                                                  \
    {                                                                                              \
        SNAPWIRE_SEC_AUTHZ_PRINCIPALS, rec, W_PRINCIPAL, off, w, v, NULL, want                     \
    }
#define PRS(rec, str, want)                                                                        \
    {                                                                                              \
        SNAPWIRE_SEC_AUTHZ_PRINCIPALS, rec, W_PRINCIPAL, 0, 0, 0, str, want                        \
    }
#define MTV(off, w, v, want)                                                                       \
    {                                                                                              \
        SNAPWIRE_SEC_META, 0, 48, off, w, v, NULL, want                                            \
    }

/* Every decoder check of the authz sections, each on its own, with a valid CRC. */
static void test_v7_authz_decoder_rejects(void **state)
{
    (void)state;
    static const struct patch cases[] = {
        AZS(0, 0, "", "authz 0: empty namespace or name"),
        AZS(2, 8, "", "authz 2: empty namespace or name"),
        AZS(1, 16, "", "authz 1: empty source"),
        AZ(0, 32, 2, 81, "authz 1: not sorted"),
        AZS(0, 0, "shop", "authz 1: not sorted"),
        AZ(0, 24, 4, 3, "authz 0: principals out of range"),
        AZ(0, 24, 4, 0xffffffff, "authz 0: principals out of range"),
        AZ(0, 28, 4, 0, "authz 0: no principals"),
        AZ(0, 28, 4, 6, "authz 0: principals out of range"),
        AZ(0, 34, 1, 0, "authz 0: bad action"),
        AZ(0, 34, 1, 3, "authz 0: bad action"),
        AZ(0, 35, 1, 1, "authz 0: nonzero padding"),
        AZ(2, 39, 1, 1, "authz 2: nonzero padding"),
        PRV(0, 8, 1, 0, "principal 0: bad kind"),
        PRV(0, 8, 1, 9, "principal 0: bad kind"),
        PRV(3, 8, 1, 1, "principal 3: not a spiffe://"),
        PRV(2, 8, 1, 4, "principal 2: value set"),
        PRV(1, 8, 1, 2, "principal 1: not a namespace name"),
        PRV(4, 9, 1, 1, "principal 4: nonzero padding"),
        PRV(4, 11, 1, 1, "principal 4: nonzero padding"),
        PRS(1, ID_API, "authz 0: principals not sorted or duplicate"),
        PRS(0, ID_WEB, "authz 0: principals not sorted or duplicate"),
        PRS(3, "shop", "principal 3: value set"),
        MTV(40, 1, 2, "meta: bad authz_default_deny 2"),
        MTV(41, 1, 1, "meta: nonzero padding"),
        MTV(47, 1, 1, "meta: nonzero padding"),
    };
    char err[256];
    size_t len;
    uint8_t *f;

    refuse_patched(cases, sizeof(cases) / sizeof(cases[0]), encode_authz);
    /* authz sections behind a 24-byte (plain) META, without any mesh service */
    {
        struct snapwire_mesh_service m[3];
        struct snapwire_authz a[3];
        struct snapwire_principal p[5];
        struct snapwire_snapshot s = authz_sample(m, a, p);
        s.n_mesh_services = s.n_mesh_ids = 0;
        s.meta.authz_default_deny = 0;
        assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), 0);
        refuse_section_len(f, len, SNAPWIRE_SEC_META, 24,
                           "meta: authorization records without a trust domain");
    }
    /* sections of a size that is not a whole number of records */
    f = encode_authz(&len);
    refuse_section_len(f, len, SNAPWIRE_SEC_AUTHZ_PRINCIPALS, 11,
                       "type 17 length 11 is not a whole number");
    refuse_truncations(encode_authz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tls_rules),
        cmocka_unit_test(test_empty_snapshot),
        cmocka_unit_test(test_deterministic_and_same_payload),
        cmocka_unit_test(test_encoder_refuses_inconsistent),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_corrupt_payload_fails_crc),
        cmocka_unit_test(test_hostile_with_valid_crc),
        cmocka_unit_test(test_body_limits_any_value),
        cmocka_unit_test(test_unknown_section_skipped),
        cmocka_unit_test(test_no_strings_section),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_json_dump),
        cmocka_unit_test(test_v4_round_trip),
        cmocka_unit_test(test_v4_truncated_everywhere),
        cmocka_unit_test(test_v4_decoder_rejects),
        cmocka_unit_test(test_v4_section_sizes),
        cmocka_unit_test(test_v4_encoder_refuses),
        cmocka_unit_test(test_v4_encoder_writes_canonical),
        cmocka_unit_test(test_v4_json_dump),
        cmocka_unit_test(test_ingress_json_has_no_v4_keys),
        cmocka_unit_test(test_v5_round_trip),
        cmocka_unit_test(test_v5_encoder_refuses),
        cmocka_unit_test(test_v5_decoder_rejects),
        cmocka_unit_test(test_v5_json_dump),
        cmocka_unit_test(test_v6_round_trip),
        cmocka_unit_test(test_v6_refused),
        cmocka_unit_test(test_v6_decoder_rejects),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_v7_round_trip),
        cmocka_unit_test(test_v7_plain_snapshot_unchanged),
        cmocka_unit_test(test_v7_encoder_refuses),
        cmocka_unit_test(test_v7_decoder_rejects),
        cmocka_unit_test(test_v7_authz_round_trip),
        cmocka_unit_test(test_v7_authz_encoder_refuses),
        cmocka_unit_test(test_v7_authz_decoder_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
