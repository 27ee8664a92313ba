/*
 * status: the leader writes status.loadBalancer.ingress on the Ingresses it serves, from
 * --publish-service NS/NAME (that Service's load-balancer addresses, else its ClusterIP) or
 * --publish-status-address ADDR[,ADDR]. (Gateway status: gwstatus.h; the requests, rate
 * limit and backoff both share: stwriter.h.)
 */
#ifndef STRAIT_STATUS_H
#define STRAIT_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kube_client;
struct status;

/* Requests: STWRITER_QPS / _BURST / _MAX_INFLIGHT / _TIMEOUT / _BACKOFF_* (stwriter.h). */
#define STATUS_MAX_ADDRS 32        /* addresses kept per list; more are dropped (logged) */
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
    double qps;                    /* 0: STWRITER_QPS */
    unsigned burst;                /* 0: STWRITER_BURST */
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

/* Process-wide figures for health's /metrics. */
struct status_metrics {
    int enabled;
    uint64_t writes;       /* status writes that succeeded */
    uint64_t write_errors; /* failed writes (retried with backoff) */
    uint64_t reads;        /* Ingress and Service GETs */
    unsigned pending;      /* Ingresses whose status is not known to be ours yet */
};
void status_metrics(struct status_metrics *out);

#endif
