/*
 * snapwire unit tests: round trip, determinism, and truncated, corrupted and hostile frames.
 * Hostile frames get a recomputed CRC so they reach the structural checks, and every decode
 * reads from a buffer whose end touches a PROT_NONE page, so an over-read crashes the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "snapwire.h"

static struct snapwire_listener L[] = {{"http", "", 8080, SNAPWIRE_PROTO_HTTP}};
static struct snapwire_route R[] = {
    {"/api", SNAPWIRE_MATCH_EXACT, 0, "default/a", SNAPWIRE_BODY_DEFAULT,
     SNAPWIRE_ROUTE_SSL_REDIRECT, "max-age=600; includeSubDomains"},
    {"/", SNAPWIRE_MATCH_PREFIX, 1, "default/a", 1024, 0, ""},
    {"/", SNAPWIRE_MATCH_PREFIX, 1, "default/b", SNAPWIRE_BODY_UNLIMITED, 0, ""},
};
#define DEFAULT_MAX_BODY 0x0102030405060708ull /* every byte distinct: catches order and width */
static struct snapwire_vhost V[] = {{"foo.com", 0, 2}, {"*.bar.com", 2, 1}};
static struct snapwire_cluster C[] = {
    {"default/api:80", SNAPWIRE_LB_ROUND_ROBIN, 0, 2, 0, "", SNAPWIRE_NONE},
    {"default/web:http+tls", SNAPWIRE_LB_ROUND_ROBIN, 2, 1, 1, "web.default.svc", 1},
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
    {"127.0.0.1", 9001, 1}, {"::1", 9002, 1}, {"10.0.0.7", 80, 1}};

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
    struct snapwire_endpoint bad_ep[] = {{"not-an-ip", 80, 1}};
    struct snapwire_route bad_rt[] = {{"nope", SNAPWIRE_MATCH_PREFIX, 0, "", 0, 0, ""}};
    uint8_t *f;
    size_t len;
    char err[256];

    s = sample();
    s.meta.default_cluster = 9;
    assert_int_equal(snapwire_encode(&s, 1, &f, &len, err, sizeof(err)), -1);
    s = sample();
    s.endpoints = bad_ep, s.n_endpoints = 1;
    s.clusters =
        (struct snapwire_cluster[]){{"x", SNAPWIRE_LB_ROUND_ROBIN, 0, 1, 0, "", SNAPWIRE_NONE},
                                    {"y", SNAPWIRE_LB_ROUND_ROBIN, 0, 0, 0, "", SNAPWIRE_NONE}};
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
    assert_non_null(strstr(err, "whole number"));
    free(f);

    /* nonzero route padding after the flags (route records are 40 bytes) */
    f = encode_sample(&len);
    p = section(f, SNAPWIRE_SEC_ROUTES, NULL);
    p[40 + 15] = 1;
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
 * for its version, as must its version 2 form (20-byte meta record); in the version 3 layout
 * (24-byte meta record) it must decode.
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
    static const uint8_t frame[] = {
        0x53, 0x54, 0x52, 0x54, 0x03, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0xc4, 0x1f, 0xcd, 0x9d, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x18, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff};
    struct snapwire_snapshot d;
    char err[256];

    assert_int_equal(guarded_decode(frame_v1, sizeof(frame_v1), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 1"));
    assert_int_equal(guarded_decode(frame_v2, sizeof(frame_v2), &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported version 2"));
    assert_int_equal(guarded_decode(frame, sizeof(frame), &d, err, sizeof(err)), 0);
    assert_string_equal(d.meta.source, "");
    assert_int_equal(d.meta.default_cluster, SNAPWIRE_NONE);
    assert_true(d.meta.default_max_body == SNAPWIRE_BODY_DEFAULT);
    assert_int_equal(d.meta.default_cert, SNAPWIRE_NONE);
    assert_int_equal(d.n_routes, 0);
    snapwire_free(&d);
}

/* Random bit flips with the CRC fixed: the decoder must never crash, only accept or refuse. */
static void test_random_mutations(void **state)
{
    (void)state;
    size_t len;
    uint8_t *orig = encode_sample(&len), *f = malloc(len);
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
            for (uint32_t i = 0; i < d.n_routes; i++)
                assert_true(d.routes[i].cluster < d.n_clusters && d.routes[i].path[0] == '/');
            for (uint32_t i = 0; i < d.n_vhosts; i++)
                assert_true((uint64_t)d.vhosts[i].first_route + d.vhosts[i].route_count <=
                            d.n_routes);
            for (uint32_t i = 0; i < d.n_tls_hosts; i++)
                assert_true(d.tls_hosts[i].cert < d.n_certs &&
                            d.certs[d.tls_hosts[i].cert].key_pem[0] != '\0');
            assert_true(d.meta.default_cert == SNAPWIRE_NONE || d.meta.default_cert < d.n_certs);
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
        cmocka_unit_test(test_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
