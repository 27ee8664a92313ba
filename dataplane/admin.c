/*
 * admin: the data plane's operator endpoints on top of common/adminsrv.
 *
 * Does: GET|HEAD /ready (200 once a snapshot is applied and any extra check set with
 * admin_set_ready_check passes, else 503), /live, /snapshot (JSON
 * dump of the current snapshot, 503 before one), /metrics (Prometheus text), /stats (the
 * same numbers as JSON, plus uptime, per-route counts and each cluster's endpoints:
 * clusterstats.c renders those, in /metrics too). Everything else (404, 405,
 * limits, timeouts, headers) is adminsrv's.
 * Does not: speak HTTP itself, or take snapshot references.
 * Invariant: runs on the main loop only, so it may read the controller client's current
 * snapshot without a reference (the main loop is also the only one that swaps it).
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "adminsrv.h"
#include "clusterstats.h"
#include "jsongen.h"
#include "metrics.h"

#define ADMIN_MAGIC 0x41444d4eu /* "ADMN" */

struct admin {
    uint32_t magic;
    struct adminsrv *srv;
    admin_current_fn current;
    void *arg;
    struct ev_loop *loop;
    ev_tstamp started;
    admin_not_ready_fn not_ready; /* NULL: a snapshot is all /ready needs */
    void *not_ready_arg;
};

static void gen_classes(yajl_gen g, const uint64_t by_class[5])
{
    static const char *names[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    uint64_t sum = 0;
    int k;

    for (k = 0; k < 5; k++)
        sum += by_class[k];
    jsongen_kv_uint(g, "total", sum);
    for (k = 0; k < 5; k++)
        jsongen_kv_uint(g, names[k], by_class[k]);
}

/*
 * The /stats body: t rendered as one JSON object, ready tells whether a snapshot is in
 * use, s (NULL: none) gives the clusters. Returns a malloc'd NUL-terminated string or NULL.
 */
static char *stats_json(const struct metrics_totals *t, double uptime, int ready,
                        struct snapshot *s)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    char *out = NULL, le[32];
    size_t len, i;

    if (!g) return NULL;
    yajl_gen_config(g, yajl_gen_beautify, 1);
    yajl_gen_map_open(g);
    jsongen_kv_double(g, "uptime_seconds", uptime);
    jsongen_kv_uint(g, "workers", t->workers);

    jsongen_str(g, "snapshot");
    yajl_gen_map_open(g);
    jsongen_str(g, "ready");
    yajl_gen_bool(g, ready);
    jsongen_kv_uint(g, "generation", t->generation);
    jsongen_kv_uint(g, "swaps", t->swaps);
    jsongen_kv_uint(g, "nacks", t->nacks);
    yajl_gen_map_close(g);

    jsongen_str(g, "connections");
    yajl_gen_map_open(g);
    jsongen_kv_uint(g, "active", t->conns_active);
    jsongen_kv_uint(g, "total", t->conns_total);
    yajl_gen_map_close(g);

    jsongen_str(g, "requests");
    yajl_gen_map_open(g);
    gen_classes(g, t->requests_by_class);
    yajl_gen_map_close(g);

    jsongen_str(g, "duration_seconds");
    yajl_gen_map_open(g);
    jsongen_kv_uint(g, "count", t->duration_count);
    jsongen_kv_double(g, "sum", t->duration_sum);
    jsongen_str(g, "buckets"); /* cumulative, keyed by upper bound as in /metrics */
    yajl_gen_map_open(g);
    for (i = 0; i < METRICS_N_BUCKETS; i++) {
        snprintf(le, sizeof(le), "%g", metrics_bucket_bounds[i]);
        jsongen_kv_uint(g, le, t->buckets[i]);
    }
    jsongen_kv_uint(g, "+Inf", t->buckets[METRICS_N_BUCKETS]);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);

    jsongen_str(g, "upstream");
    yajl_gen_map_open(g);
    jsongen_kv_uint(g, "connections", t->upstream_connections);
    jsongen_kv_uint(g, "connect_errors", t->upstream_connect_errors);
    jsongen_kv_uint(g, "timeouts", t->upstream_timeouts);
    jsongen_kv_uint(g, "pool_reused", t->pool_reused);
    yajl_gen_map_close(g);

    jsongen_str(g, "tls_handshakes");
    yajl_gen_map_open(g);
    jsongen_kv_uint(g, "full", t->tls_handshakes[METRICS_TLS_FULL]);
    jsongen_kv_uint(g, "resumed", t->tls_handshakes[METRICS_TLS_RESUMED]);
    jsongen_kv_uint(g, "failed", t->tls_handshakes[METRICS_TLS_FAILED]);
    yajl_gen_map_close(g);

    jsongen_str(g, "routes");
    yajl_gen_map_open(g);
    for (i = 0; i < t->n_routes; i++) {
        jsongen_str(g, t->routes[i].name);
        yajl_gen_map_open(g);
        gen_classes(g, t->routes[i].by_class);
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);

    jsongen_str(g, "clusters"); /* each cluster's endpoints and their state */
    clusterstats_json(g, s);
    yajl_gen_map_close(g);

    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 1))) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

static int admin_stats(struct admin *a, struct snapshot *s, struct adminsrv_reply *r)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    char *body;

    if (!t) return -1;
    metrics_collect(t);
    body = stats_json(t, ev_now(a->loop) - a->started, s != NULL, s);
    free(t);
    return adminsrv_reply_take(r, 200, "application/json", body);
}

static int admin_handle(void *arg, const char *method, const char *path, struct adminsrv_reply *r)
{
    struct admin *a = arg;
    struct snapshot *s;

    (void)method;
    if (a->magic != ADMIN_MAGIC) abort();
    s = a->current(a->arg);
    if (!strcmp(path, "/ready")) {
        const char *why = !s             ? "no snapshot\n"
                          : a->not_ready ? a->not_ready(a->not_ready_arg)
                                         : NULL;
        return why ? adminsrv_reply_text(r, 503, why) : adminsrv_reply_text(r, 200, "ready\n");
    }
    if (!strcmp(path, "/live")) return adminsrv_reply_text(r, 200, "live\n");
    if (!strcmp(path, "/snapshot")) {
        if (!s) return adminsrv_reply_text(r, 503, "no snapshot\n");
        return adminsrv_reply_take(r, 200, "application/json", snapwire_to_json(&s->sw));
    }
    if (!strcmp(path, "/metrics"))
        return adminsrv_reply_take(
            r, 200, "text/plain; version=0.0.4; charset=utf-8",
            clusterstats_append(metrics_render_snapshot(s ? &s->sw : NULL), s));
    if (!strcmp(path, "/stats")) return admin_stats(a, s, r);
    return 1;
}

struct admin *admin_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                          admin_current_fn current, void *arg, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->magic = ADMIN_MAGIC;
    a->current = current;
    a->arg = arg;
    a->loop = loop;
    a->started = ev_now(loop);
    a->srv = adminsrv_start(loop, sa, salen, admin_handle, a, err, errlen);
    if (!a->srv) goto free_admin;
    return a;

free_admin:
    free(a);
    return NULL;
}

void admin_set_ready_check(struct admin *a, admin_not_ready_fn fn, void *arg)
{
    a->not_ready = fn;
    a->not_ready_arg = arg;
}

void admin_stop(struct admin *a)
{
    if (!a) return;
    adminsrv_stop(a->srv);
    a->magic = 0;
    free(a);
}
