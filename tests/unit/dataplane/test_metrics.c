/*
 * metrics: shards summed at scrape time, histogram bucket placement, the bounded route
 * table ("other" overflow, duplicate slots merged under concurrent inserts), the text
 * format (HELP and TYPE before every sample, label escaping), and the /stats JSON built
 * from the same totals. Includes metrics.c and admin.c to reset state and reach statics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>
#include <yajl/yajl_tree.h>

#include "../../../dataplane/metrics.c"
#include "../../../dataplane/admin.c"

static int reset(void **state)
{
    (void)state;
    memset(shards, 0, sizeof(shards));
    memset(routes, 0, sizeof(routes));
    atomic_store(&n_shards_used, 0);
    atomic_store(&n_workers, 0);
    atomic_store(&m_generation, 0);
    atomic_store(&m_swaps, 0);
    atomic_store(&m_nacks, 0);
    my_shard = NULL;
    return 0;
}

/* The value of the sample line that starts with "key " in text; fails if absent. */
static double sample(const char *text, const char *key)
{
    size_t kl = strlen(key);
    const char *p = text;

    while (p && *p) {
        if (!strncmp(p, key, kl) && p[kl] == ' ') return strtod(p + kl + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    fail_msg("no sample %s in:\n%s", key, text);
    return -1;
}

static const struct metrics_route *find_route(const struct metrics_totals *t, const char *name)
{
    size_t i;

    for (i = 0; i < t->n_routes; i++)
        if (!strcmp(t->routes[i].name, name)) return &t->routes[i];
    return NULL;
}

#define N_THREADS 8
#define PER_THREAD 5000

static void *worker_thread(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    int i;

    metrics_worker_init(id);
    metrics_conn_opened();
    for (i = 0; i < PER_THREAD; i++) {
        metrics_request_done(i % 2 ? "ns/a" : "ns/b", i % 10 ? 200 : 503, 0.002);
        metrics_upstream_connected();
    }
    metrics_pool_reused();
    metrics_upstream_timeout();
    metrics_upstream_connect_error();
    if (id % 2) metrics_conn_closed();
    return NULL;
}

static void test_sums_across_workers(void **state)
{
    pthread_t th[N_THREADS];
    struct metrics_totals *t = malloc(sizeof(*t));
    const struct metrics_route *a, *b;
    char *text;
    unsigned i;

    (void)state;
    for (i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_thread, (void *)(uintptr_t)i), 0);
    for (i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    metrics_request_done("default", 404, 0.5); /* this thread: the shared shard */
    metrics_collect(t);
    assert_int_equal(t->workers, N_THREADS);
    assert_int_equal(t->conns_total, N_THREADS);
    assert_int_equal(t->conns_active, N_THREADS / 2);
    assert_int_equal(t->upstream_connections, N_THREADS * PER_THREAD);
    assert_int_equal(t->pool_reused, N_THREADS);
    assert_int_equal(t->upstream_timeouts, N_THREADS);
    assert_int_equal(t->upstream_connect_errors, N_THREADS);
    assert_int_equal(t->requests_by_class[1], N_THREADS * PER_THREAD * 9 / 10);
    assert_int_equal(t->requests_by_class[4], N_THREADS * PER_THREAD / 10);
    assert_int_equal(t->requests_by_class[3], 1);
    assert_int_equal(t->duration_count, N_THREADS * PER_THREAD + 1);
    a = find_route(t, "ns/a");
    b = find_route(t, "ns/b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->by_class[1] + a->by_class[4], N_THREADS * PER_THREAD / 2);
    assert_int_equal(b->by_class[1] + b->by_class[4], N_THREADS * PER_THREAD / 2);
    assert_int_equal(t->n_routes, 3); /* ns/a, ns/b, default; sorted */
    assert_string_equal(t->routes[0].name, "default");
    assert_string_equal(t->routes[1].name, "ns/a");

    text = metrics_render();
    assert_non_null(text);
    assert_int_equal(sample(text, "strait_requests_total{route=\"default\",code=\"4xx\"}"), 1);
    assert_int_equal(sample(text, "strait_requests_total{route=\"ns/a\",code=\"5xx\"}") +
                         sample(text, "strait_requests_total{route=\"ns/a\",code=\"2xx\"}"),
                     N_THREADS * PER_THREAD / 2);
    assert_int_equal(sample(text, "strait_connections_active"), N_THREADS / 2);
    assert_int_equal(sample(text, "strait_upstream_connections_total"), N_THREADS * PER_THREAD);
    assert_int_equal(sample(text, "strait_request_duration_seconds_count"),
                     N_THREADS * PER_THREAD + 1);
    free(text);
    free(t);
}

static void test_histogram_buckets(void **state)
{
    static const double obs[] = {0.0005, 0.001, 0.0011, 0.003, 0.2, 0.25, 9.9, 20, 0};
    char *text;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        metrics_request_done("r", 200, obs[i]);
    metrics_request_done("r", 200, -1); /* counted as a request, not observed */
    text = metrics_render();
    assert_non_null(text);
    /* cumulative: le is an inclusive upper bound */
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"0.001\"}"), 3);
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"0.005\"}"), 5);
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"0.1\"}"), 5);
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"0.25\"}"), 7);
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"5\"}"), 7);
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"10\"}"), 8);
    assert_int_equal(sample(text, "strait_request_duration_seconds_bucket{le=\"+Inf\"}"), 9);
    assert_int_equal(sample(text, "strait_request_duration_seconds_count"), 9);
    {
        const char *p = text;
        int lines = 0;
        while ((p = strstr(p, "strait_request_duration_seconds_bucket{"))) {
            lines++;
            p++;
        }
        assert_int_equal(lines, 13); /* 12 finite bounds and +Inf */
        assert_null(strstr(text, "le=\"0\""));
    }
    assert_true(sample(text, "strait_request_duration_seconds_sum") > 30.3555);
    assert_true(sample(text, "strait_request_duration_seconds_sum") < 30.3557);
    assert_int_equal(sample(text, "strait_requests_total{route=\"r\",code=\"2xx\"}"), 10);
    free(text);
}

static void test_route_overflow(void **state)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    const struct metrics_route *other;
    char name[32];
    int i;

    (void)state;
    for (i = 0; i < METRICS_MAX_ROUTES + 6; i++) {
        snprintf(name, sizeof(name), "ns/r%d", i);
        metrics_request_done(name, 200, 0.01);
        metrics_request_done(name, 500, 0.01);
    }
    metrics_request_done(NULL, 404, 0.01);   /* table full: "none" is an overflow too */
    metrics_request_done("ns/r0", 200, 0.1); /* an early label keeps its slot */
    metrics_collect(t);
    assert_int_equal(t->n_routes, METRICS_MAX_ROUTES + 1);
    other = find_route(t, "other");
    assert_non_null(other);
    assert_int_equal(other->by_class[1], 6);
    assert_int_equal(other->by_class[4], 6);
    assert_int_equal(other->by_class[3], 1);
    assert_int_equal(find_route(t, "ns/r0")->by_class[1], 2);
    assert_null(find_route(t, "none"));
    free(t);
}

static void test_long_and_odd_labels(void **state)
{
    char longname[300], *text;
    struct metrics_totals *t = malloc(sizeof(*t));

    (void)state;
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    metrics_request_done(longname, 200, 0.01);
    metrics_request_done(longname, 200, 0.01); /* same truncated label, same slot */
    metrics_request_done("we\"ird\\ns/x\ny", 302, 0.01);
    metrics_request_done("", 404, 0.01);
    metrics_collect(t);
    assert_int_equal(t->n_routes, 3);
    assert_int_equal(strlen(t->routes[2].name), METRICS_ROUTE_LEN - 1);
    assert_int_equal(t->routes[2].by_class[1], 2);
    text = metrics_render();
    assert_non_null(strstr(text, "{route=\"we\\\"ird\\\\ns/x\\ny\",code=\"3xx\"} 1\n"));
    assert_non_null(strstr(text, "{route=\"none\",code=\"4xx\"} 1\n"));
    free(text);
    free(t);
}

#define RACE_THREADS 8
static pthread_barrier_t race_barrier;

static void *race_thread(void *arg)
{
    char name[16];
    int i;

    metrics_worker_init((unsigned)(uintptr_t)arg);
    pthread_barrier_wait(&race_barrier);
    for (i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "ns/%d", i);
        metrics_request_done(name, 200, 0.01);
    }
    return NULL;
}

/* Racing first uses of the same labels may claim two slots; totals must merge them. */
static void test_concurrent_inserts_merge(void **state)
{
    pthread_t th[RACE_THREADS];
    struct metrics_totals *t = malloc(sizeof(*t));
    size_t i;
    unsigned k;

    (void)state;
    pthread_barrier_init(&race_barrier, NULL, RACE_THREADS);
    for (k = 0; k < RACE_THREADS; k++)
        pthread_create(&th[k], NULL, race_thread, (void *)(uintptr_t)k);
    for (k = 0; k < RACE_THREADS; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&race_barrier);
    metrics_collect(t);
    assert_int_equal(t->n_routes, 40);
    for (i = 0; i < t->n_routes; i++) {
        assert_int_equal(t->routes[i].by_class[1], RACE_THREADS);
        if (i) assert_true(strcmp(t->routes[i - 1].name, t->routes[i].name) < 0);
    }
    free(t);
}

/* The family a sample belongs to: its name without labels and histogram suffixes. */
static void family_of(const char *line, char *out, size_t n, int histogram_names)
{
    static const char *suffixes[] = {"_bucket", "_sum", "_count"};
    size_t l = strcspn(line, "{ "), i, sl;

    snprintf(out, n, "%.*s", (int)l, line);
    if (!histogram_names) return;
    for (i = 0; i < 3; i++) {
        sl = strlen(suffixes[i]);
        if (l > sl && !strcmp(out + l - sl, suffixes[i])) out[l - sl] = '\0';
    }
}

static void test_help_type_before_samples(void **state)
{
    char *text, *line, *save = NULL, fam[128], seen_help[4096] = " ", seen_type[4096] = " ";
    char key[140];
    int samples = 0, histograms = 0;

    (void)state;
    metrics_snapshot_applied(7);
    metrics_snapshot_nacked();
    metrics_request_done("ns/a", 200, 0.01);
    text = metrics_render();
    assert_non_null(text);
    assert_int_equal(sample(text, "strait_snapshot_generation"), 7);
    assert_int_equal(sample(text, "strait_snapshot_swaps_total"), 1);
    assert_int_equal(sample(text, "strait_snapshot_nacks_total"), 1);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "# HELP ", 7)) {
            family_of(line + 7, fam, sizeof(fam), 0);
            snprintf(key, sizeof(key), " %s ", fam);
            assert_null(strstr(seen_help, key)); /* one HELP per family */
            strncat(seen_help, key + 1, sizeof(seen_help) - strlen(seen_help) - 1);
        } else if (!strncmp(line, "# TYPE ", 7)) {
            family_of(line + 7, fam, sizeof(fam), 0);
            snprintf(key, sizeof(key), " %s ", fam);
            assert_null(strstr(seen_type, key));
            strncat(seen_type, key + 1, sizeof(seen_type) - strlen(seen_type) - 1);
            if (strstr(line, " histogram")) histograms++;
        } else {
            family_of(line, fam, sizeof(fam), 1);
            snprintf(key, sizeof(key), " %s ", fam);
            if (!strstr(seen_help, key) || !strstr(seen_type, key))
                fail_msg("sample before HELP/TYPE: %s", line);
            samples++;
        }
    }
    assert_int_equal(histograms, 1);
    assert_true(samples > 20);
    free(text);
}

static void test_stats_json(void **state)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    char *body, errbuf[256];
    yajl_val root, v;
    const char *p_gen[] = {"snapshot", "generation", NULL};
    const char *p_ready[] = {"snapshot", "ready", NULL};
    const char *p_2xx[] = {"requests", "2xx", NULL};
    const char *p_total[] = {"requests", "total", NULL};
    const char *p_count[] = {"duration_seconds", "count", NULL};
    const char *p_inf[] = {"duration_seconds", "buckets", "+Inf", NULL};
    const char *p_le[] = {"duration_seconds", "buckets", "0.001", NULL};
    const char *p_route[] = {"routes", "ns/a", "5xx", NULL};
    const char *p_workers[] = {"workers", NULL};
    const char *p_uptime[] = {"uptime_seconds", NULL};
    const char *p_reused[] = {"upstream", "pool_reused", NULL};

    (void)state;
    metrics_snapshot_applied(3);
    metrics_request_done("ns/a", 200, 0.0001);
    metrics_request_done("ns/a", 502, 0.3);
    metrics_request_done("default", 200, 0.02);
    metrics_pool_reused();
    metrics_collect(t);
    body = stats_json(t, 12.5, 1, NULL);
    free(t);
    assert_non_null(body);
    root = yajl_tree_parse(body, errbuf, sizeof(errbuf));
    if (!root) fail_msg("bad JSON (%s): %s", errbuf, body);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_gen, yajl_t_number)), 3);
    assert_true(YAJL_IS_TRUE(yajl_tree_get(root, p_ready, yajl_t_any)));
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_2xx, yajl_t_number)), 2);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_total, yajl_t_number)), 3);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_count, yajl_t_number)), 3);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_inf, yajl_t_number)), 3);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_le, yajl_t_number)), 1);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_route, yajl_t_number)), 1);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_workers, yajl_t_number)), 0);
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(root, p_reused, yajl_t_number)), 1);
    v = yajl_tree_get(root, p_uptime, yajl_t_number);
    assert_non_null(v);
    assert_true(YAJL_GET_DOUBLE(v) == 12.5);
    yajl_tree_free(root);
    free(body);
}

/* Mirrors by result, retries, exhausted budgets and route timeouts by kind: totals and text. */
static void test_mirror_retry_timeout_counters(void **state)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    char *text;
    int i;

    (void)state;
    for (i = 0; i < 3; i++)
        metrics_mirror(METRICS_MIRROR_COMPLETED);
    metrics_mirror(METRICS_MIRROR_CUT);
    metrics_mirror(METRICS_MIRROR_FAILED);
    metrics_mirror(METRICS_MIRROR_FAILED);
    metrics_mirror(METRICS_MIRROR_SKIPPED);
    metrics_mirror(-1); /* out of range: nothing */
    metrics_mirror(METRICS_MIRROR_N);
    metrics_retry();
    metrics_retry();
    metrics_retry_budget_exhausted();
    metrics_route_timeout(0);
    metrics_route_timeout(1);
    metrics_route_timeout(7); /* any non-zero is "backend" */
    metrics_worker_init(3);   /* a worker shard adds to the shared one */
    metrics_retry();
    metrics_mirror(METRICS_MIRROR_CUT);
    metrics_collect(t);
    assert_int_equal(t->mirror[METRICS_MIRROR_COMPLETED], 3);
    assert_int_equal(t->mirror[METRICS_MIRROR_CUT], 2);
    assert_int_equal(t->mirror[METRICS_MIRROR_FAILED], 2);
    assert_int_equal(t->mirror[METRICS_MIRROR_SKIPPED], 1);
    assert_int_equal(t->retries, 3);
    assert_int_equal(t->retry_budget_exhausted, 1);
    assert_int_equal(t->route_timeouts[0], 1);
    assert_int_equal(t->route_timeouts[1], 2);
    free(t);
    text = metrics_render();
    assert_non_null(text);
    assert_int_equal(sample(text, "strait_mirror_requests_total{result=\"completed\"}"), 3);
    assert_int_equal(sample(text, "strait_mirror_requests_total{result=\"cut\"}"), 2);
    assert_int_equal(sample(text, "strait_mirror_requests_total{result=\"failed\"}"), 2);
    assert_int_equal(sample(text, "strait_mirror_requests_total{result=\"skipped\"}"), 1);
    assert_int_equal(sample(text, "strait_retries_total"), 3);
    assert_int_equal(sample(text, "strait_retry_budget_exhausted_total"), 1);
    assert_int_equal(sample(text, "strait_route_timeouts_total{kind=\"request\"}"), 1);
    assert_int_equal(sample(text, "strait_route_timeouts_total{kind=\"backend\"}"), 2);
    assert_non_null(strstr(text, "# TYPE strait_mirror_requests_total counter\n"));
    assert_non_null(strstr(text, "# TYPE strait_retries_total counter\n"));
    assert_non_null(strstr(text, "# TYPE strait_route_timeouts_total counter\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sums_across_workers, reset),
        cmocka_unit_test_setup(test_histogram_buckets, reset),
        cmocka_unit_test_setup(test_route_overflow, reset),
        cmocka_unit_test_setup(test_long_and_odd_labels, reset),
        cmocka_unit_test_setup(test_concurrent_inserts_merge, reset),
        cmocka_unit_test_setup(test_help_type_before_samples, reset),
        cmocka_unit_test_setup(test_stats_json, reset),
        cmocka_unit_test_setup(test_mirror_retry_timeout_counters, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
