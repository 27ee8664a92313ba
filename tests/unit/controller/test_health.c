/*
 * health: the controller's counters rendered as Prometheus text (every family has HELP and
 * TYPE before its samples, values follow the counters), and the rejection counting that
 * feeds strait_controller_objects_rejected (filesource, cache duplicates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filesource.h"
#include "health.h"
#include "log.h"
#include "model.h"

static const char *const families[] = {
    "strait_controller_snapshot_generation",
    "strait_controller_snapshots_published_total",
    "strait_controller_reloads_total",
    "strait_controller_reload_errors_total",
    "strait_controller_objects",
    "strait_controller_objects_rejected",
    "strait_controller_dataplanes_connected",
    "strait_controller_acks_total",
    "strait_controller_nacks_total",
};

/* Value of the sample line starting with "name " (name may carry labels), or -1. */
static long long sample(const char *text, const char *name)
{
    const char *p = text;
    size_t n = strlen(name);

    while (p && *p) {
        if (!strncmp(p, name, n) && p[n] == ' ') return atoll(p + n + 1);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

/* Every sample's family has "# HELP" and "# TYPE" lines before its first sample (a
 * histogram's _bucket, _sum and _count samples belong to their family). */
static void check_exposition(const char *text)
{
    static const char *const hsuf[] = {"_bucket", "_sum", "_count"};
    char seen_help[64][96], seen_type[64][96], hist[64][96], name[96];
    size_t nh = 0, nt = 0, nhist = 0, i, j, len;
    const char *line = text, *end;
    int help_ok, type_ok;

    while (*line) {
        end = strchr(line, '\n');
        assert_non_null(end); /* every line ends with a newline */
        len = (size_t)(end - line);
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
            size_t nl = strcspn(line + 7, " \n");
            assert_true(nl < sizeof(name) && nh < 64 && nt < 64);
            memcpy(name, line + 7, nl);
            name[nl] = '\0';
            if (line[2] == 'H')
                strcpy(seen_help[nh++], name);
            else {
                assert_true(!strncmp(line + 7 + nl, " gauge\n", 7) ||
                            !strncmp(line + 7 + nl, " counter\n", 9) ||
                            !strncmp(line + 7 + nl, " histogram\n", 11));
                if (!strncmp(line + 7 + nl, " histogram\n", 11)) strcpy(hist[nhist++], name);
                strcpy(seen_type[nt++], name);
            }
        } else {
            size_t nl = strcspn(line, "{ ");
            assert_true(nl > 0 && nl < sizeof(name) && nl < len);
            memcpy(name, line, nl);
            name[nl] = '\0';
            for (i = 0; i < nhist; i++) {
                size_t hl = strlen(hist[i]);
                for (j = 0; j < 3; j++)
                    if (!strncmp(name, hist[i], hl) && !strcmp(name + hl, hsuf[j])) name[hl] = '\0';
            }
            help_ok = type_ok = 0;
            for (i = 0; i < nh; i++)
                help_ok |= !strcmp(seen_help[i], name);
            for (i = 0; i < nt; i++)
                type_ok |= !strcmp(seen_type[i], name);
            if (!help_ok || !type_ok) fail_msg("sample %s without HELP/TYPE before it", name);
        }
        line = end + 1;
    }
}

static void test_render_families(void **state)
{
    char *text;
    size_t i;

    (void)state;
    health_reset();
    text = health_render_metrics(0);
    assert_non_null(text);
    check_exposition(text);
    for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "# TYPE %s ", families[i]);
        if (!strstr(text, want)) fail_msg("family %s missing", families[i]);
    }
    assert_int_equal(sample(text, "strait_controller_snapshot_generation"), 0);
    assert_int_equal(sample(text, "strait_controller_objects{kind=\"Ingress\"}"), 0);
    free(text);
}

static void test_counters_move(void **state)
{
    unsigned objects[MODEL_KIND_COUNT] = {0};
    char *text;

    (void)state;
    health_reset();
    health_count_reload(1);
    health_count_published(1);
    health_count_reload(0);
    health_count_reload(1);
    health_count_published(2);
    health_count_ack();
    health_count_ack();
    health_count_nack();
    objects[MODEL_KIND_INGRESS] = 3;
    objects[MODEL_KIND_SERVICE] = 2;
    objects[MODEL_KIND_ENDPOINT_SLICE] = 4;
    health_set_objects(objects, 5);
    text = health_render_metrics(2);
    assert_non_null(text);
    check_exposition(text);
    assert_int_equal(sample(text, "strait_controller_snapshot_generation"), 2);
    assert_int_equal(sample(text, "strait_controller_snapshots_published_total"), 2);
    assert_int_equal(sample(text, "strait_controller_reloads_total"), 3);
    assert_int_equal(sample(text, "strait_controller_reload_errors_total"), 1);
    assert_int_equal(sample(text, "strait_controller_objects{kind=\"Ingress\"}"), 3);
    assert_int_equal(sample(text, "strait_controller_objects{kind=\"Service\"}"), 2);
    assert_int_equal(sample(text, "strait_controller_objects{kind=\"EndpointSlice\"}"), 4);
    assert_int_equal(sample(text, "strait_controller_objects{kind=\"IngressClass\"}"), 0);
    assert_int_equal(sample(text, "strait_controller_objects_rejected"), 5);
    assert_int_equal(sample(text, "strait_controller_dataplanes_connected"), 2);
    assert_int_equal(sample(text, "strait_controller_acks_total"), 2);
    assert_int_equal(sample(text, "strait_controller_nacks_total"), 1);
    free(text);
}

static void test_cluster_families(void **state)
{
    char *text;

    (void)state;
    health_reset();
    text = health_render_metrics(0);
    /* file mode shows none of the watch families */
    assert_null(strstr(text, "strait_controller_watch_events_total"));
    free(text);
    health_count_watch_event(MODEL_KIND_INGRESS, "ADDED");
    health_count_watch_event(MODEL_KIND_INGRESS, "ADDED");
    health_count_watch_event(MODEL_KIND_SERVICE, "BOOKMARK");
    health_count_watch_event(MODEL_KIND_SERVICE, "NOPE");
    health_count_watch_restart(MODEL_KIND_SECRET);
    health_count_relist(MODEL_KIND_ENDPOINT_SLICE);
    health_set_cached(MODEL_KIND_INGRESS, 7, 1);
    health_observe_api("GET", 200, 0.003);
    health_observe_api("GET", 500, 0.2);
    health_observe_api("WATCH", 0, 0.);
    health_observe_api("GET", 500, 20.);
    health_observe_build(0.004, 1234);
    text = health_render_metrics(0);
    assert_non_null(text);
    check_exposition(text);
    assert_int_equal(
        sample(text, "strait_controller_watch_events_total{kind=\"Ingress\",type=\"ADDED\"}"), 2);
    assert_int_equal(
        sample(text, "strait_controller_watch_events_total{kind=\"Service\",type=\"BOOKMARK\"}"),
        1);
    assert_int_equal(sample(text, "strait_controller_watch_restarts_total{kind=\"Secret\"}"), 1);
    assert_int_equal(sample(text, "strait_controller_relists_total{kind=\"EndpointSlice\"}"), 1);
    assert_int_equal(sample(text, "strait_controller_objects_cached{kind=\"Ingress\"}"), 7);
    assert_int_equal(sample(text, "strait_controller_synced{kind=\"Ingress\"}"), 1);
    assert_int_equal(sample(text, "strait_controller_synced{kind=\"Service\"}"), 0);
    assert_int_equal(sample(text, "strait_controller_api_request_duration_seconds_bucket{method="
                                  "\"GET\",le=\"0.005\"}"),
                     1);
    assert_int_equal(sample(text, "strait_controller_api_request_duration_seconds_bucket{method="
                                  "\"GET\",le=\"0.25\"}"),
                     2);
    assert_int_equal(sample(text, "strait_controller_api_request_duration_seconds_bucket{method="
                                  "\"GET\",le=\"+Inf\"}"),
                     3);
    assert_int_equal(
        sample(text, "strait_controller_api_request_duration_seconds_count{method=\"WATCH\"}"), 1);
    assert_int_equal(sample(text, "strait_controller_api_errors_total{code=\"500\"}"), 2);
    assert_int_equal(sample(text, "strait_controller_api_errors_total{code=\"none\"}"), 1);
    assert_int_equal(sample(text, "strait_controller_snapshot_bytes"), 1234);
    assert_int_equal(sample(text, "strait_controller_snapshot_build_duration_seconds_count"), 1);
    free(text);
}

#define SVC(name)                                                                                  \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name "}\nspec: {ports: [{port: "       \
    "80}]}\n"

static void test_rejections_counted(void **state)
{
    /* one good Service, one Service without a name, one Ingress with a bad pathType, then a
     * duplicate of the good Service (dropped by seal) */
    static const char y[] = SVC("web") "---\napiVersion: v1\nkind: Service\nmetadata: {}\n"
                                       "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\n"
                                       "metadata: {name: bad}\nspec:\n  rules:\n  - http:\n"
                                       "      paths:\n      - path: /\n        pathType: Bogus\n"
                                       "        backend: {service: {name: web, port: {number: "
                                       "80}}}\n" SVC("web");
    static const char broken[] = "a: [1, 2\n";
    struct model_cache c;

    (void)state;
    model_cache_init(&c);
    assert_int_equal(filesource_load_buffer("t.yaml", y, strlen(y), &c), 2);
    assert_int_equal(c.n_rejected, 2);
    model_cache_seal(&c);
    assert_int_equal(c.kinds[MODEL_KIND_SERVICE].n, 1);
    assert_int_equal(c.n_rejected, 3);
    assert_int_equal(filesource_load_buffer("b.yaml", broken, strlen(broken), &c), 0);
    assert_int_equal(c.n_rejected, 4);
    model_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_families),
        cmocka_unit_test(test_counters_move),
        cmocka_unit_test(test_cluster_families),
        cmocka_unit_test(test_rejections_counted),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
