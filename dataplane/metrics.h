/*
 * metrics: the data plane's counters, summed at scrape time and rendered as Prometheus text
 * (GET /metrics) or read as totals (GET /stats).
 *
 * Every recording function is lock-free and may be called from any thread. A worker thread
 * that calls metrics_worker_init(id) once records into its own cache-line-aligned shard;
 * any other thread records into a shared shard. Both are correct (relaxed atomics), the
 * first only avoids cache-line ping-pong between workers.
 */
#ifndef STRAIT_METRICS_H
#define STRAIT_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_WORKERS 256 /* shards; a worker id beyond this uses the shared shard */
#define METRICS_MAX_ROUTES 64   /* distinct route labels; later ones count as "other" */
#define METRICS_ROUTE_LEN 128   /* longer route labels are truncated */
#define METRICS_N_BUCKETS 12    /* finite histogram upper bounds, +Inf not included */

/* Upper bounds (seconds) of strait_request_duration_seconds, ascending. */
extern const double metrics_bucket_bounds[METRICS_N_BUCKETS];

/* Binds the calling thread to shard id (the worker's index, 0-based). Call once per thread. */
void metrics_worker_init(unsigned id);

void metrics_snapshot_applied(uint64_t generation);
void metrics_snapshot_nacked(void);

/*
 * One request answered: route is the route's source ("namespace/name"), "default" for the
 * default backend, or NULL/"" when nothing routed it ("none"); status the status sent to
 * the client (outside 100..599: nothing is counted); seconds the request's duration
 * (< 0: count the request but observe no duration).
 */
void metrics_request_done(const char *route, int status, double seconds);

/* One accepted client connection: counts it and raises the active gauge. */
void metrics_conn_opened(void);
void metrics_conn_closed(void);
/* One failed upstream connect (refused, unreachable, connect timeout). */
void metrics_upstream_connect_error(void);
/* An established upstream connection timed out waiting for the upstream (not connect). */
void metrics_upstream_timeout(void);
/* A request was sent on a pooled (reused) upstream connection. */
void metrics_pool_reused(void);
/* n idle pooled upstream connections were closed on a snapshot swap (endpoint not ready). */
void metrics_pool_pruned(unsigned n);
/* A new upstream connection was established (connect completed). */
void metrics_upstream_connected(void);

/* A TLS handshake ended: METRICS_TLS_* (strait_tls_handshakes_total{result}). */
enum { METRICS_TLS_FULL, METRICS_TLS_RESUMED, METRICS_TLS_FAILED, METRICS_TLS_N };
void metrics_tls_handshake(int result);

/* The TLS module (tlsmod.h) was loaded (strait_tls_module_loaded 1). */
void metrics_tls_module_loaded(void);

/*
 * Sidecar identity (tls_mesh.h): a request to the identity endpoint ended, ok or not
 * (strait_mesh_identity_requests_total{result}); the installed certificate's notAfter as UNIX
 * time (strait_mesh_identity_expiry_seconds; 0 before the first). Both families are rendered
 * once either was called (tls_mesh_start sets the expiry to 0).
 */
void metrics_mesh_identity_request(int ok);
void metrics_mesh_identity_expiry(double not_after);

/*
 * Sidecar discovery feed (meshfeed.h), rendered once metrics_mesh_feed_destinations was
 * called (meshfeed_start does): a request to /v1/discovery ended
 * (strait_mesh_feed_requests_total{result}: UPDATE a new snapshot came, UNCHANGED the long
 * poll ran out, ERROR no answer or another status); the destinations asked for by state
 * (strait_mesh_feed_destinations{state}); a connection waiting for its destination's answer
 * went on (strait_mesh_feed_waits_total{outcome}: answered, or timed out).
 */
enum { METRICS_FEED_UPDATE, METRICS_FEED_UNCHANGED, METRICS_FEED_ERROR, METRICS_FEED_N };
void metrics_mesh_feed_request(int result);
void metrics_mesh_feed_destinations(unsigned service, unsigned none, unsigned pending);
void metrics_mesh_feed_wait(int timed_out);

/*
 * A request mirror ended (strait_mirror_requests_total{result}): COMPLETED the mirror's
 * response was read to its end; CUT closed by us (could not keep up, total timeout once
 * connected, the primary gave up, worker shutdown); FAILED could not connect or start (a
 * timeout while connecting included), TLS failed, or the connection ended before a complete
 * response; SKIPPED the caller did not start one.
 */
enum {
    METRICS_MIRROR_COMPLETED,
    METRICS_MIRROR_CUT,
    METRICS_MIRROR_FAILED,
    METRICS_MIRROR_SKIPPED,
    METRICS_MIRROR_N
};
void metrics_mirror(int result);

/* A request was retried on another attempt (strait_retries_total). */
void metrics_retry(void);
/* A retry was wanted but the route's retry budget had none left. */
void metrics_retry_budget_exhausted(void);
/* A route timeout fired: backend 0 the whole-request one, 1 the per-backend-attempt one. */
void metrics_route_timeout(int backend);
/* Outlier detection ejected an endpoint / ended an ejection (time up, or endpoint removed). */
void metrics_outlier_ejected(void);
void metrics_outlier_restored(void);

/*
 * Active health checks (healthcheck.c, and snapshot picks for fail-open). One probe ended
 * (strait_health_checks_total{result="pass"|"fail"}); a target turned healthy (to_healthy 1)
 * or unhealthy (strait_health_transitions_total{to}); a target freed while unhealthy. The
 * gauge strait_health_unhealthy_endpoints is to="unhealthy" - to="healthy" - freed unhealthy.
 * metrics_health_fail_open: a pick made while every endpoint of the cluster was unhealthy, so
 * all of them were used (strait_health_fail_open_total).
 */
void metrics_health_check(int pass);
void metrics_health_transition(int to_healthy);
void metrics_health_freed_unhealthy(void);
void metrics_health_fail_open(void);
/* Sidecar connections (strait_mesh_connections_total{kind}), by METRICS_MESH_*. */
enum {
    METRICS_MESH_IN_MTLS,         /* inbound, mTLS with a verified peer */
    METRICS_MESH_IN_PLAIN,        /* inbound plaintext (permissive) */
    METRICS_MESH_IN_REFUSED,      /* inbound refused: plaintext when strict, no identity */
    METRICS_MESH_OUT_MTLS,        /* outbound connection opened with mTLS to a peer */
    METRICS_MESH_OUT_PLAIN,       /* outbound to a Service whose pods are not meshed */
    METRICS_MESH_OUT_PASSTHROUGH, /* outbound to a destination that is no mesh Service */
    METRICS_MESH_N
};
void metrics_mesh_conn(int kind);
/* An inbound authorization decision (strait_mesh_authz_total{protocol,decision}). */
void metrics_mesh_authz(int http, int allowed);

/* One route label with its requests by status class (index 0..4 = 1xx..5xx). */
struct metrics_route {
    char name[METRICS_ROUTE_LEN];
    uint64_t by_class[5];
};

/* Everything, summed over shards. */
struct metrics_totals {
    uint64_t generation, swaps, nacks;
    uint64_t tls_module; /* 1 once strait-tls.so is loaded */
    /* sidecar identity: mesh_identity set once in use; requests [0] error, [1] ok */
    uint64_t mesh_identity, mesh_identity_requests[2], mesh_identity_expiry;
    /* discovery feed: mesh_feed set once in use; destinations [0] service [1] none [2] pending */
    uint64_t mesh_feed, mesh_feed_requests[METRICS_FEED_N], mesh_feed_dest[3], mesh_feed_waits[2];
    uint64_t conns_total, conns_active;
    uint64_t upstream_connections, upstream_connect_errors, upstream_timeouts, pool_reused;
    uint64_t tls_handshakes[METRICS_TLS_N]; /* by METRICS_TLS_* */
    uint64_t mirror[METRICS_MIRROR_N];      /* by METRICS_MIRROR_* */
    uint64_t retries, retry_budget_exhausted;
    uint64_t route_timeouts[2];                       /* [0] request, [1] backend */
    uint64_t pool_pruned;                             /* idle pooled connections closed on swaps */
    uint64_t outlier_ejections, outlier_restorations; /* ejected now: the difference */
    /* active health checks: [0] fail / to unhealthy, [1] pass / to healthy */
    uint64_t health_checks[2], health_transitions[2];
    uint64_t health_unhealthy; /* targets unhealthy now */
    uint64_t health_fail_open;
    uint64_t mesh_conns[METRICS_MESH_N];     /* by METRICS_MESH_* */
    uint64_t mesh_authz[2][2];               /* [http][allowed] */
    uint64_t requests_by_class[5];           /* over all routes */
    uint64_t buckets[METRICS_N_BUCKETS + 1]; /* cumulative, like Prometheus; last is +Inf */
    uint64_t duration_count;                 /* requests with a duration observed */
    double duration_sum;                     /* seconds */
    unsigned workers;                        /* threads that called metrics_worker_init */
    size_t n_routes;                         /* routes[] sorted by name, "other" included */
    struct metrics_route routes[METRICS_MAX_ROUTES + 1];
};

/* Fills t (large: allocate it) with the current totals. */
void metrics_collect(struct metrics_totals *t);

/* Prometheus text exposition; returns a malloc'd NUL-terminated string or NULL. */
char *metrics_render(void);

struct snapwire_snapshot;

/*
 * The same, plus strait_tls_certificate_expiry_seconds{cert} for the server certificates
 * (those with a key) of sw (NULL: none).
 */
char *metrics_render_snapshot(const struct snapwire_snapshot *sw);

/* Text format pieces for other renderers (clusterstats.c): a family's HELP and TYPE lines; a
 * label value with \, " and newline escaped. */
void metrics_family(FILE *f, const char *name, const char *type, const char *help);
void metrics_label_value(FILE *f, const char *s);

#endif
