/*
 * status: the leader writes status.loadBalancer.ingress on the Ingresses it serves, from
 * --publish-service NS/NAME (that Service's load-balancer addresses, else its ClusterIP) or
 * --publish-status-address ADDR[,ADDR]; and the conditions of every strait.dev/v1alpha1
 * Gateway (status_gateways_*).
 */
#ifndef STRAIT_STATUS_H
#define STRAIT_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kube_client;
struct status;

#define STATUS_MAX_ADDRS 32    /* addresses kept per list; more are dropped (logged) */
#define STATUS_QPS 20.0        /* API requests per second, on average ... */
#define STATUS_BURST 100       /* ... with bursts up to this many */
#define STATUS_MAX_INFLIGHT 8  /* requests in flight at once */
#define STATUS_TIMEOUT 10.0    /* one request */
#define STATUS_BACKOFF_MIN 0.5 /* seconds; doubles per failure of the same Ingress */
#define STATUS_BACKOFF_MAX 30.0
#define STATUS_SERVICE_RESYNC 60.0 /* the publish Service is read again this often */
#define STATUS_SERVICE_MIN_GAP 1.0 /* and at most this often when told it changed */

/* ---- pure part (unit-tested) ---- */

/* One status.loadBalancer.ingress entry; exactly one of ip and hostname is set for ours. */
struct status_addr {
    char ip[64];        /* "" when absent */
    char hostname[254]; /* "" when absent */
};

/* A list of addresses, sorted and without duplicates once status_lb_normalize ran. */
struct status_lb {
    struct status_addr v[STATUS_MAX_ADDRS];
    size_t n;
    int truncated; /* more than STATUS_MAX_ADDRS were given */
};

/*
 * Parses "ADDR[,ADDR...]" (--publish-status-address): an IPv4 or IPv6 literal becomes
 * {"ip"}, a DNS name {"hostname"}. Returns 0 with *out filled and normalized, or -1 with err
 * filled.
 */
int status_parse_addresses(const char *list, struct status_lb *out, char *err, size_t errlen);

/*
 * The addresses a Service (JSON object) publishes: status.loadBalancer.ingress when it has
 * entries, else an ExternalName's spec.externalName, else spec.clusterIP (not "None"); an
 * empty list when it has none of those. Returns 0 with *out normalized, or -1 with err filled.
 */
int status_lb_from_service(const char *body, size_t len, struct status_lb *out, char *err,
                           size_t errlen);

/* status.loadBalancer.ingress of an Ingress (JSON object). Returns 0 or -1 as above. */
int status_lb_from_ingress(const char *body, size_t len, struct status_lb *out, char *err,
                           size_t errlen);

/* Sorts by (ip, hostname) and drops duplicates, so equal sets compare equal. */
void status_lb_normalize(struct status_lb *lb);

/* Whether two normalized lists are the same (the write would change nothing). */
int status_lb_equal(const struct status_lb *a, const struct status_lb *b);

/*
 * The JSON merge patch that sets an Ingress's status.loadBalancer.ingress to lb (an empty
 * list removes the field). Returns a malloc'd string, or NULL on allocation failure.
 */
char *status_patch_body(const struct status_lb *lb);

/* "ip1,host2" (for log lines; "-" when empty) into buf; returns buf. */
const char *status_lb_text(const struct status_lb *lb, char *buf, size_t n);

/* ---- the writer (libev loop, kube_client) ---- */

struct status_opts {
    const char *publish_service;   /* "NS/NAME", or NULL */
    const char *publish_addresses; /* "ADDR[,ADDR]", or NULL; exactly one of the two */
    double qps;                    /* 0: STATUS_QPS */
    unsigned burst;                /* 0: STATUS_BURST */
};

/* An Ingress to keep up to date. */
struct status_target {
    const char *ns, *name;
    /* its status as a cache knows it (normalized), or NULL: then it is read once (GET) */
    const struct status_lb *current;
};

/* Checks opts (one publish source, a valid NS/NAME or address list). Returns 0 or -1. */
int status_check_opts(const struct status_opts *opts, char *err, size_t errlen);

/*
 * Checks opts and makes a writer that uses client (borrowed). It writes nothing until
 * status_set_leader(s, 1). Returns it, or NULL with err filled (a bad address, a bad
 * NS/NAME).
 */
struct status *status_new(struct ev_loop *loop, struct kube_client *client,
                          const struct status_opts *opts, char *err, size_t errlen);

/*
 * The Ingresses of our class in the snapshot just built (copied). Each one whose status is
 * not what we publish gets written, rate-limited; the others cost nothing. Ingresses that
 * left the set are forgotten (their status is left as it is). Returns 0, or -1 on allocation
 * failure (the previous set is kept).
 */
int status_sync(struct status *s, const struct status_target *t, size_t n);

/* Leadership changed: only a leader reads the publish Service and writes; losing it cancels
 * the requests in flight and forgets what was learnt of the Ingresses' status. */
void status_set_leader(struct status *s, int leading);

/* The Services changed (a watch event): the publish Service is read again (rate-limited). */
void status_service_changed(struct status *s);

/* Cancels requests and timers, frees s. NULL is fine. */
void status_free(struct status *s);

/* ---- Gateway status (strait.dev/v1alpha1; pure part, unit-tested) ---- */

/*
 * One metav1.Condition as crds/strait.dev_gateways.yaml allows it in status.conditions[] and
 * status.listeners[].conditions[]: type, status, reason, message, observedGeneration,
 * lastTransitionTime (all required by the schema except observedGeneration).
 */
struct status_gw_cond {
    char *type, *status, *reason, *message;
    int64_t observed_generation; /* -1: absent */
    char *last_transition;       /* RFC 3339, "" when absent */
};

struct status_gw_listener {
    char *name;
    long attached_routes;
    struct status_gw_cond *conds;
    size_t n_conds;
};

/* A Gateway's status: observedGeneration, conditions[], listeners[]. Strings are malloc'd. */
struct status_gw {
    int64_t observed_generation; /* -1: absent */
    struct status_gw_cond *conds;
    size_t n_conds;
    struct status_gw_listener *listeners;
    size_t n_listeners;
};

#define STATUS_GW_MAX_MESSAGE 32768 /* the CRD's maxLength of a condition message */

struct snapbuild_gateway;

/*
 * The status a build computed for g, without lastTransitionTime: observedGeneration (here and
 * in each condition) = g->generation, the conditions whose type is set, attachedRoutes within
 * the schema's 0..64; a status other than True/False becomes Unknown, a reason the schema's
 * pattern refuses becomes "Unknown", a message is cut (at a UTF-8 boundary) to the schema's
 * maximum. Returns 0, or -1 on allocation failure (*out is then empty).
 */
int status_gw_from_build(const struct snapbuild_gateway *g, struct status_gw *out);

/*
 * want with every lastTransitionTime filled in: prev's time (prev: the status the object has
 * or had when we last wrote it; NULL = none) for a condition whose type and status are
 * unchanged (listener conditions matched by listener name), else now. Returns 0 or -1 (OOM).
 */
int status_gw_stamp(const struct status_gw *want, const struct status_gw *prev, const char *now,
                    struct status_gw *out);

/* Whether a and b are the same status, field by field, in order. */
int status_gw_equal(const struct status_gw *a, const struct status_gw *b);

/*
 * Reads a Gateway (JSON object, e.g. a GET or PATCH answer): its status into *out (absent
 * fields: empty / -1) and metadata.uid into uid. Returns 0, or -1 with err filled.
 */
int status_gw_from_object(const char *body, size_t len, struct status_gw *out, char *uid,
                          size_t uidlen, char *err, size_t errlen);

/* The merge patch {"status":{"observedGeneration","conditions","listeners"}}; malloc'd. */
char *status_gw_patch_body(const struct status_gw *s);

/* "Accepted:True,Programmed:False/Pending,..." for log lines, into buf. */
const char *status_gw_conds_text(const struct status_gw *s, char *buf, size_t n);

/* Frees the strings and arrays; leaves *s empty. */
void status_gw_clear(struct status_gw *s);

/* ---- the Gateway status writer ---- */

struct status_gateways;

/*
 * A writer of the status of strait.dev/v1alpha1 Gateways through client (borrowed): while
 * leading, each Gateway's status (read once with GET, then known from each write's answer)
 * is made equal to what the last build computed, with a merge patch on
 * .../gateways/NAME/status; no-op writes are never sent. Same rate limit, in-flight cap and
 * per-object backoff as the Ingress writer. qps/burst 0: STATUS_QPS / STATUS_BURST.
 */
struct status_gateways *status_gateways_new(struct ev_loop *loop, struct kube_client *client,
                                            double qps, unsigned burst);

/*
 * Every Gateway of the build just done (copied). Gateways that left the set are forgotten.
 * Returns 0, or -1 on allocation failure (the previous set is kept).
 */
int status_gateways_sync(struct status_gateways *s, const struct snapbuild_gateway *g, size_t n);

/* Leadership changed (as status_set_leader). */
void status_gateways_set_leader(struct status_gateways *s, int leading);

/* Cancels requests and timers, frees s. NULL is fine. */
void status_gateways_free(struct status_gateways *s);

/* Process-wide figures for health's /metrics. */
struct status_metrics {
    int enabled;
    uint64_t writes;       /* status writes that succeeded */
    uint64_t write_errors; /* failed writes (retried with backoff) */
    uint64_t reads;        /* Ingress and Service GETs */
    unsigned pending;      /* Ingresses whose status is not known to be ours yet */
    /* the Gateway writer (cluster mode, whatever the --publish-* flags) */
    int gw_enabled;
    uint64_t gw_writes, gw_write_errors, gw_reads;
    unsigned gw_pending; /* Gateways whose status is not known to be the build's yet */
};
void status_metrics(struct status_metrics *out);

#endif
