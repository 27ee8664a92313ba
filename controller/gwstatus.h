/*
 * gwstatus: the leader writes the status of every strait.dev/v1alpha1 Gateway the last build
 * saw: observedGeneration, the conditions the build computed (Accepted, Programmed,
 * ResolvedRefs) and per listener its name, attachedRoutes and conditions, with
 * lastTransitionTime kept while a condition's status stays the same.
 */
#ifndef STRAIT_GWSTATUS_H
#define STRAIT_GWSTATUS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kube_client;

/* ---- pure part (unit-tested) ---- */

/*
 * One metav1.Condition as crds/strait.dev_gateways.yaml allows it in status.conditions[] and
 * status.listeners[].conditions[]: type, status, reason, message, observedGeneration,
 * lastTransitionTime (all required by the schema except observedGeneration).
 */
struct gwstatus_cond {
    char *type, *status, *reason, *message;
    int64_t observed_generation; /* -1: absent */
    char *last_transition;       /* RFC 3339, "" when absent */
};

struct gwstatus_listener {
    char *name;
    long attached_routes;
    struct gwstatus_cond *conds;
    size_t n_conds;
};

/* A Gateway's status: observedGeneration, conditions[], listeners[]. Strings are malloc'd. */
struct gwstatus {
    int64_t observed_generation; /* -1: absent */
    int conds_only; /* an AuthorizationPolicy's: no listeners, and the patch has no key for them */
    struct gwstatus_cond *conds;
    size_t n_conds;
    struct gwstatus_listener *listeners;
    size_t n_listeners;
};

#define GWSTATUS_MAX_MESSAGE 32768 /* the CRD's maxLength of a condition message */

struct snapbuild_gateway;

/*
 * The status a build computed for g, without lastTransitionTime: observedGeneration (here and
 * in each condition) = g->generation, the conditions whose type is set, attachedRoutes within
 * the schema's 0..64; a status other than True/False becomes Unknown, a reason the schema's
 * pattern refuses becomes "Unknown", a message is cut (at a UTF-8 boundary) to the schema's
 * maximum. Returns 0, or -1 on allocation failure (*out is then empty).
 */
int gwstatus_from_build(const struct snapbuild_gateway *g, struct gwstatus *out);

/*
 * want with every lastTransitionTime filled in: prev's time (prev: the status the object has
 * or had when we last wrote it; NULL = none) for a condition whose type and status are
 * unchanged (listener conditions matched by listener name), else now. Returns 0 or -1 (OOM).
 */
int gwstatus_stamp(const struct gwstatus *want, const struct gwstatus *prev, const char *now,
                   struct gwstatus *out);

/* Whether a and b are the same status, field by field, in order. */
int gwstatus_equal(const struct gwstatus *a, const struct gwstatus *b);

/*
 * Reads a Gateway (JSON object, e.g. a GET or PATCH answer): its status into *out (absent
 * fields: empty / -1) and metadata.uid into uid. Returns 0, or -1 with err filled.
 */
int gwstatus_from_object(const char *body, size_t len, struct gwstatus *out, char *uid,
                         size_t uidlen, char *err, size_t errlen);

/* The merge patch {"status":{"observedGeneration","conditions","listeners"}}; malloc'd. */
char *gwstatus_patch_body(const struct gwstatus *s);

/* "Accepted:True,Programmed:False/Pending,..." for log lines, into buf. */
const char *gwstatus_conds_text(const struct gwstatus *s, char *buf, size_t n);

/* Frees the strings and arrays; leaves *s empty. */
void gwstatus_clear(struct gwstatus *s);

/* ---- the Gateway status writer ---- */

struct gwstatus_writer;

/*
 * A writer of the status of strait.dev/v1alpha1 Gateways through client (borrowed): while
 * leading, each Gateway's status (read once with GET, then known from each write's answer)
 * is made equal to what the last build computed, with a merge patch on
 * .../gateways/NAME/status; no-op writes are never sent. Same rate limit, in-flight cap and
 * per-object backoff as the Ingress writer (stwriter), with a token bucket of its own.
 * qps/burst 0: STWRITER_QPS / STWRITER_BURST.
 */
struct gwstatus_writer *gwstatus_writer_new(struct ev_loop *loop, struct kube_client *client,
                                            double qps, unsigned burst);

/*
 * Every Gateway of the build just done (copied). Gateways that left the set are forgotten.
 * Returns 0, or -1 on allocation failure (the previous set is kept).
 */
int gwstatus_writer_sync(struct gwstatus_writer *s, const struct snapbuild_gateway *g, size_t n);

/* Leadership changed: only a leader reads and writes; losing it cancels the requests in
 * flight and forgets what was learnt of the Gateways' status. */
void gwstatus_writer_set_leader(struct gwstatus_writer *s, int leading);

/* Cancels requests and timers, frees s. NULL is fine. */
void gwstatus_writer_free(struct gwstatus_writer *s);

/*
 * The same writer for strait.dev/v1alpha1 AuthorizationPolicies (.../authorizationpolicies/
 * NAME/status: observedGeneration and conditions, no listeners), fed with the same
 * struct snapbuild_gateway (conds set, no listeners) by gwstatus_writer_sync. Not in
 * gwstatus_metrics.
 */
struct gwstatus_writer *gwstatus_writer_new_authz(struct ev_loop *loop, struct kube_client *client,
                                                  double qps, unsigned burst);

/* Process-wide figures for health's /metrics (cluster mode, whatever the --publish-* flags). */
struct gwstatus_metrics {
    int enabled;
    uint64_t writes;       /* status writes that succeeded */
    uint64_t write_errors; /* failed writes (retried with backoff) */
    uint64_t reads;        /* Gateway GETs */
    unsigned pending;      /* Gateways whose status is not known to be the build's yet */
};
void gwstatus_metrics(struct gwstatus_metrics *out);

#endif
