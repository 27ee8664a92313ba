/*
 * snapshot: the effective request body limit (snapshot_route_max_body) as a table: a route's
 * or the default backend's own value wins, SNAPWIRE_BODY_DEFAULT falls back to the data
 * plane's --client-max-body-size, and UINT64_MAX stays "unlimited" whatever the flag says.
 * The snapshot goes through encode, the checked decoder and snapshot_build, as a real one does.
 * And a snapshot whose regular expression does not compile is refused by snapshot_build with
 * the router's message (the NACK reason).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router.h"
#include "snapshot.h"
#include "worker.h"

#define UNL SNAPWIRE_BODY_UNLIMITED

/* Host "a" with /set (1024), /unl (unlimited), /def (default); default backend: dmax. */
static struct snapshot *make_snapshot(uint64_t dmax)
{
    struct snapwire_endpoint ep = {"127.0.0.1", 80, 1, 1};
    struct snapwire_cluster cl = {.name = "t/svc:80",
                                  .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                  .first_endpoint = 0,
                                  .endpoint_count = 1,
                                  .tls = 0,
                                  .tls_sni = "",
                                  .tls_ca = SNAPWIRE_NONE,
                                  .hash_on = SNAPWIRE_HASH_NONE,
                                  .hash_name = "",
                                  .affinity_cookie = ""};
    struct snapwire_route rt[] = {
        {.path = "/set",
         .match = SNAPWIRE_MATCH_PREFIX,
         .source = "t/set",
         .max_body = 1024,
         .hsts = ""},
        {.path = "/unl",
         .match = SNAPWIRE_MATCH_PREFIX,
         .source = "t/unl",
         .max_body = UNL,
         .hsts = ""},
        {.path = "/def", .match = SNAPWIRE_MATCH_PREFIX, .source = "t/def", .hsts = ""}};
    struct snapwire_vhost vh = {"a", 0, 3};
    struct snapwire_snapshot s = {.meta = {0, "test", dmax, SNAPWIRE_NONE},
                                  .n_vhosts = 1,
                                  .n_routes = 3,
                                  .n_clusters = 1,
                                  .n_endpoints = 1,
                                  .vhosts = &vh,
                                  .routes = rt,
                                  .clusters = &cl,
                                  .endpoints = &ep};
    struct snapwire_snapshot dec;
    struct snapshot *snap;
    uint8_t *frame;
    size_t len;
    char err[256];

    assert_int_equal(snapwire_encode(&s, 1, &frame, &len, err, sizeof(err)), 0);
    assert_int_equal(snapwire_decode(frame, len, &dec, err, sizeof(err)), 0);
    free(frame);
    snap = snapshot_build(&dec, err, sizeof(err));
    assert_non_null(snap);
    return snap;
}

static void test_defaults(void **state)
{
    struct worker_config cfg;

    (void)state;
    memset(&cfg, 0xa5, sizeof(cfg));
    worker_config_defaults(&cfg);
    assert_true(cfg.client_max_body == UINT64_MAX); /* no limit unless asked for */
    assert_int_equal(cfg.pool_max_idle, 64);
    assert_true(cfg.pool_idle_timeout == 60.);
}

static void test_route_max_body(void **state)
{
    static const struct {
        const char *target; /* NULL: the default backend */
        uint64_t dmax;      /* meta.default_max_body */
        uint64_t flag;      /* cfg.client_max_body; 0 here means "cfg NULL" */
        uint64_t want;
    } rows[] = {
        {"/set", 0, UNL, 1024}, {"/set", 0, 100, 1024}, {"/set", 0, 0, 1024},
        {"/unl", 0, 100, UNL},  {"/unl", 0, UNL, UNL},  {"/def", 0, 100, 100},
        {"/def", 0, UNL, UNL},  {"/def", 0, 0, UNL},    {"/def", 5, 100, 100},
        {NULL, 0, 2048, 2048},  {NULL, 0, UNL, UNL},    {NULL, 4096, 2048, 4096},
        {NULL, UNL, 2048, UNL}, {NULL, 4096, 0, 4096},  {NULL, 0, 0, UNL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct snapshot *s = make_snapshot(rows[i].dmax);
        const struct snapwire_route *rt = NULL;
        struct worker_config cfg;
        uint64_t got;

        worker_config_defaults(&cfg);
        cfg.client_max_body = rows[i].flag;
        if (rows[i].target) {
            rt = router_match(s->router, "a", 1, rows[i].target, strlen(rows[i].target));
            assert_non_null(rt);
        }
        got = snapshot_route_max_body(s, rt, rows[i].flag ? &cfg : NULL);
        if (got != rows[i].want)
            fail_msg("row %zu (%s, default %llu, flag %llu): got %llu, want %llu", i,
                     rows[i].target ? rows[i].target : "default backend",
                     (unsigned long long)rows[i].dmax, (unsigned long long)rows[i].flag,
                     (unsigned long long)got, (unsigned long long)rows[i].want);
        snapshot_unref(s);
    }
}

static void test_invalid_regex_refused(void **state)
{
    struct snapwire_endpoint ep = {"127.0.0.1", 80, 1, 1};
    struct snapwire_cluster cl = {.name = "t/svc:80",
                                  .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                  .first_endpoint = 0,
                                  .endpoint_count = 1,
                                  .tls = 0,
                                  .tls_sni = "",
                                  .tls_ca = SNAPWIRE_NONE,
                                  .hash_on = SNAPWIRE_HASH_NONE,
                                  .hash_name = "",
                                  .affinity_cookie = ""};
    struct snapwire_route rt[] = {
        {.path = "/ok", .match = SNAPWIRE_MATCH_PREFIX, .source = "t/ok", .hsts = ""},
        {.path = "/v[0-9", .match = SNAPWIRE_MATCH_REGEX, .source = "ns/gw", .hsts = ""}};
    struct snapwire_vhost vh = {"a", 0, 2};
    struct snapwire_snapshot s = {.meta = {SNAPWIRE_NONE, "test", 0, SNAPWIRE_NONE},
                                  .n_vhosts = 1,
                                  .n_routes = 2,
                                  .n_clusters = 1,
                                  .n_endpoints = 1,
                                  .vhosts = &vh,
                                  .routes = rt,
                                  .clusters = &cl,
                                  .endpoints = &ep};
    char err[256] = "";

    (void)state;
    /* caller-built (no arena): snapshot_build takes it over and releases it on failure */
    assert_null(snapshot_build(&s, err, sizeof(err)));
    if (strncmp(err, "route 1 (ns/gw): invalid regular expression \"/v[0-9\": missing", 54))
        fail_msg("err: %s", err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_route_max_body),
        cmocka_unit_test(test_invalid_regex_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
