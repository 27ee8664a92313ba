/*
 * snapshot: the runtime form of a routing snapshot (decoded snapwire data + router index +
 * resolved endpoint addresses + balancer state), refcounted and shared by all threads, and
 * the controller client that receives, validates, ACKs/NACKs and applies snapshots.
 */
#ifndef STRAIT_SNAPSHOT_H
#define STRAIT_SNAPSHOT_H

#include <ev.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "balancer.h"
#include "router.h"
#include "snapwire.h"

struct tls_snap;
struct retry_budget;
struct outlier_state;
struct clusterstate;
struct hc_target;

#define SNAPSHOT_MAGIC 0x534e4150u /* "SNAP" */

struct snapshot_endpoint {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *address; /* points into the snapwire snapshot */
    uint16_t port;
    uint64_t affinity_id; /* cookie affinity value: a hash of "address:port", never 0 */
    uint32_t weight;      /* 1..10000 (snapwire endpoint weight; 0 there counts as 1) */
};

struct snapshot_cluster {
    const struct snapwire_cluster *sw;
    uint32_t n_ready;
    struct snapshot_endpoint *ready; /* ready endpoints only */
    const struct balancer_ops *bal;
    void *bal_state;
    struct outlier_state *outlier; /* outlier detection over ready (outlier.h) */
    struct clusterstate *cs;       /* circuit breaker gauges, retry budget (clusterstate.h) */
    /*
     * Active health checks: one target per ready endpoint (healthcheck.h), or NULL when the
     * cluster has none (hc_path "", an upstream TLS cluster, or no checker running).
     */
    struct hc_target **hc;
};

struct tls_upstream;

struct mesh_index;

struct snapshot {
    uint32_t magic;
    atomic_int refs;
    struct snapwire_snapshot sw;
    struct router *router;
    struct snapshot_cluster *clusters;
    struct tls_snap *tls;        /* certificate contexts + SNI table (tls.h); NULL: no TLS data */
    struct tls_upstream *tls_up; /* client TLS of the clusters with tls set; NULL: none */
    /* per route (index in sw.routes) retry budgets; NULL when no route retries */
    struct retry_budget *budgets;
    struct mesh_index *mesh; /* the Service directory (mesh.h); NULL: none */
};

/*
 * Builds a runtime snapshot from a decoded one. Takes ownership of *sw in every case (it is
 * freed on failure). Returns the snapshot with one reference, or NULL with err filled.
 */
struct snapshot *snapshot_build(struct snapwire_snapshot *sw, char *err, size_t errlen);

/*
 * snapshot_build carrying state over from prev (NULL: none), cluster by name: balancer state
 * (same lb) and outlier detection records of unchanged endpoints (what the controller client
 * does on every new snapshot).
 */
struct snapshot *snapshot_build_prev(struct snapwire_snapshot *sw, const struct snapshot *prev,
                                     char *err, size_t errlen);

/*
 * Decodes and validates the frame buf[0..len), builds it carrying state over from prev (may
 * be NULL), counts it and logs event snapshot_applied (or snapshot_rejected with the reason):
 * what a data plane does with every frame it receives, whatever brought it. The snapshot
 * (one reference), or NULL with err.
 */
struct snapshot *snapshot_from_frame(const void *buf, size_t len, const struct snapshot *prev,
                                     char *err, size_t errlen);

/* Reference counting; safe from any thread. unref frees on the last reference. */
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_unref(struct snapshot *s);

/*
 * The retry budget of route rt (a route of s) shared by every worker while s is current, or
 * NULL when rt has no retries. A new snapshot starts its budgets afresh.
 */
struct retry_budget *snapshot_route_budget(struct snapshot *s, const struct snapwire_route *rt);

/*
 * Picks an endpoint of cluster idx with its balancer; NULL when it has none ready. An
 * endpoint ejected by outlier detection or failing its active health checks is skipped, and
 * one in slow start (added less than the cluster's slow_start_ms ago to a running cluster)
 * is taken only with probability age / slow_start_ms (at least 10 %, as Envoy's default
 * min_weight_percent): the balancer picks again (up to SNAPSHOT_PICK_TRIES picks in all),
 * then the first endpoint from its pick on that is neither ejected nor unhealthy. When every
 * endpoint is unhealthy the cluster fails open (health is ignored, counted in
 * strait_health_fail_open_total); only when every endpoint is ejected (outlier.h's cap
 * prevents it) the balancer's pick stands.
 */
#define SNAPSHOT_PICK_TRIES 3
const struct snapshot_endpoint *snapshot_pick(struct snapshot *s, uint32_t idx);

/*
 * snapshot_pick with the request's balancer input (the hash key of ring_hash and maglev:
 * header, cookie, source ip or path bytes the caller extracted); in may be NULL.
 */
const struct snapshot_endpoint *snapshot_pick_ex(struct snapshot *s, uint32_t idx,
                                                 const struct balancer_input *in);

/*
 * Balancer feedback for ep, an endpoint snapshot_pick(_ex) returned for cluster idx of this same
 * snapshot s: start when the request is sent to it, done when it completes (latency from send
 * to response end, ok 0 for a failure: connect error, reset, 5xx). least_request and ewma use
 * them; the others ignore them. done also feeds outlier detection (outlier_report). Any ep that
 * is not one of the cluster's is ignored.
 */
void snapshot_balancer_start(struct snapshot *s, uint32_t idx, const struct snapshot_endpoint *ep);
/* done also counts the attempt in the endpoint's counters (outlier_observe). */
void snapshot_balancer_done(struct snapshot *s, uint32_t idx, const struct snapshot_endpoint *ep,
                            uint64_t latency_ns, int ok);

/*
 * Cookie affinity: the ready endpoint of cluster idx whose affinity_id is the hex value
 * val[0..len) (as snapshot_affinity_value writes it), or NULL (absent, malformed, or that
 * endpoint is no longer ready or is ejected by outlier detection: the caller picks and sets a
 * new cookie).
 */
const struct snapshot_endpoint *snapshot_affinity_find(struct snapshot *s, uint32_t idx,
                                                       const char *val, size_t len);

/* Writes ep's affinity cookie value (16 lower-case hex digits and a NUL) into out[17]. */
void snapshot_affinity_value(const struct snapshot_endpoint *ep, char out[17]);

struct worker_config;

/*
 * Effective request body limit, in bytes, for a request routed to rt (a route of s, as
 * router_match returned it), or to s's default backend when rt is NULL: the route's (or
 * meta's) max_body when the snapshot sets one, else cfg->client_max_body (the
 * --client-max-body-size default, never 0; cfg NULL counts as unlimited). UINT64_MAX means
 * unlimited; any other value is a limit, and 0 is never returned. A request whose
 * Content-Length, or chunked body so far, is larger than the result gets 413.
 */
uint64_t snapshot_route_max_body(const struct snapshot *s, const struct snapwire_route *rt,
                                 const struct worker_config *cfg);

/* Controller client. */
struct snapclient;

/*
 * Called on the client's loop after a snapshot is applied. s is borrowed: take a reference
 * to keep it.
 */
typedef void (*snapclient_apply_fn)(struct snapshot *s, void *arg);

/*
 * Starts connecting to the controller's Unix socket at path on loop (retrying with backoff
 * forever). Returns NULL with err filled on a setup error (path too long, no memory).
 */
struct snapclient *snapclient_start(struct ev_loop *loop, const char *path, snapclient_apply_fn fn,
                                    void *arg, char *err, size_t errlen);

/* The last good snapshot (borrowed), or NULL before the first. */
struct snapshot *snapclient_current(struct snapclient *sc);

/* Stops all watchers, closes the socket, drops the current snapshot and frees sc. */
void snapclient_stop(struct snapclient *sc);

/*
 * The set of (endpoint address, pool tag) pairs of s's ready endpoints over all its clusters,
 * the tag being tls_upstream_tag of the endpoint's cluster: what a worker's idle upstream
 * connections may stay pooled for once s is current. Built in O(endpoints); NULL when out of
 * memory. The set is a copy: it outlives s.
 */
struct snapshot_epset;
struct snapshot_epset *snapshot_epset_new(const struct snapshot *s);
/* Whether (sa, tag) is in set: same family, address and port (and IPv6 scope). */
int snapshot_epset_has(const struct snapshot_epset *set, const struct sockaddr *sa, uint64_t tag);
void snapshot_epset_free(struct snapshot_epset *set);

#endif
