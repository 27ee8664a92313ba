/*
 * leader: leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics
 * (tools/leaderelection): one replica holds the Lease and renews it; the others wait until
 * the record they observe has not changed for the lease duration, then take it over.
 */
#ifndef STRAIT_LEADER_H
#define STRAIT_LEADER_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kube_client;
struct leader;

/* client-go's defaults (LeaseDuration, RenewDeadline, RetryPeriod), in seconds */
#define LEADER_LEASE_DURATION 15.0
#define LEADER_RENEW_DEADLINE 10.0
#define LEADER_RETRY_PERIOD 2.0
#define LEADER_JITTER 1.2 /* a candidate waits retry * (1 + rand * this) between tries */
#define LEADER_DEFAULT_ID "strait-controller"
#define LEADER_RELEASE_TIMEOUT 5.0 /* bound on the release request at shutdown */

/* ---- the decision logic (pure: no I/O, no clock; unit-tested) ---- */

/* A Lease's spec, as client-go's LeaderElectionRecord. Times are kept as the text read. */
struct leader_record {
    char holder[256]; /* holderIdentity, "" = nobody */
    long duration;    /* leaseDurationSeconds */
    char acquire_time[40];
    char renew_time[40];
    long transitions; /* leaseTransitions */
};

/* What a candidate knows: the last record it saw and when (its monotonic clock) it changed. */
struct leader_observed {
    int have; /* a record was observed (read, created or written) */
    struct leader_record rec;
    double time;
};

enum leader_action {
    LEADER_WAIT = 0, /* another holder's lease is still valid */
    LEADER_ACQUIRE,  /* nobody holds it, or the holder's lease expired: take it */
    LEADER_RENEW,    /* it is ours: renew it */
};

/*
 * Records r (just read at monotonic time now) as observed. observed time only moves when the
 * record differs from the one seen before, so a holder that stopped renewing expires
 * lease-duration seconds after its last renewal was first seen. Returns 1 when it changed.
 */
int leader_observe(struct leader_observed *o, const struct leader_record *r, double now);

/* Whether the observed lease is still valid at now (observed time + its duration > now). */
int leader_lease_valid(const struct leader_observed *o, double now);

/* Whether identity is the observed holder (client-go's IsLeader). */
int leader_is_holder(const struct leader_observed *o, const char *identity);

/* What to do about an existing Lease just observed (leader_observe) at now. */
enum leader_action leader_decide(const struct leader_observed *o, const char *identity, double now);

/*
 * The record to write: for LEADER_RENEW the acquire time and transitions stay; for
 * LEADER_ACQUIRE transitions grow by one and acquire time = renew time = now_text; with
 * o == NULL (the Lease does not exist, create it) transitions are 0. duration in seconds.
 */
void leader_next_record(const struct leader_observed *o, enum leader_action a, const char *identity,
                        long duration, const char *now_text, struct leader_record *out);

/*
 * The record that gives the lease up (client-go's release): no holder, a duration of one
 * second, acquire = renew = now_text, the transitions kept.
 */
void leader_release_record(const struct leader_observed *o, const char *now_text,
                           struct leader_record *out);

/*
 * Parses a Lease object (JSON). Returns 0 with *r and rv (metadata.resourceVersion) filled,
 * or -1 with err filled.
 */
int leader_parse_lease(const char *body, size_t len, struct leader_record *r, char *rv,
                       size_t rvlen, char *err, size_t errlen);

/*
 * The body of a write: with rv NULL a whole Lease ns/name to create (POST), else a JSON merge
 * patch of the spec guarded by metadata.resourceVersion rv (409 when it is stale). Returns a
 * malloc'd NUL-terminated string, or NULL on allocation failure.
 */
char *leader_lease_body(const char *ns, const char *name, const char *rv,
                        const struct leader_record *r);

/* t (seconds since the epoch) as a Kubernetes MicroTime, "2006-01-02T15:04:05.000000Z". */
void leader_format_time(double t, char *buf, size_t n);

/* ---- defaults for the command line ---- */

/* hostname + "_" + 16 random hex digits. Returns 0, or -1 with err filled. */
int leader_default_identity(char *buf, size_t n, char *err, size_t errlen);

/*
 * The pod's namespace (the service account's namespace file, under KUBE_CONFIG_SA_DIR or
 * $STRAIT_SERVICEACCOUNT_DIR), else "default", into buf.
 */
void leader_default_namespace(char *buf, size_t n);

/* ---- the elector (libev loop, kube_client) ---- */

struct leader_opts {
    const char *ns, *name; /* the Lease */
    const char *identity;
    double lease_duration, renew_deadline, retry_period; /* 0: the defaults above */
};

struct leader_callbacks {
    void (*started)(void *arg);                     /* this replica became the leader */
    void (*stopped)(void *arg);                     /* it is not the leader any more */
    void (*new_leader)(void *arg, const char *who); /* the observed holder changed ("" none) */
};

/*
 * Checks opts: DNS names for the Lease, an identity, a whole number of seconds >= 1 for the
 * lease duration, and lease duration > renew deadline > LEADER_JITTER x retry period, as
 * client-go requires (0 means the default). Returns 0, or -1 with err filled.
 */
int leader_check_opts(const struct leader_opts *opts, char *err, size_t errlen);

/*
 * Makes an elector for opts (leader_check_opts) that uses client (borrowed). Nothing is sent
 * before leader_start. Returns it, or NULL with err filled.
 */
struct leader *leader_new(struct ev_loop *loop, struct kube_client *client,
                          const struct leader_opts *opts, const struct leader_callbacks *cb,
                          void *arg, char *err, size_t errlen);

/* Starts trying to acquire the lease (the first try is immediate). */
void leader_start(struct leader *l);

/* Whether this replica leads now. */
int leader_is_leader(const struct leader *l);

/* The last observed holder ("" when none or not known yet). */
const char *leader_holder(const struct leader *l);

/*
 * Stops the elector for shutdown. When this replica leads, stopped is called first (so the
 * caller stops its guarded writes), then the lease is released (holder "" and a one-second
 * duration, so another replica takes over at once instead of after the lease duration).
 * done(arg) is called once, from the loop, when that is over (or at once when there is
 * nothing to release).
 */
void leader_release(struct leader *l, void (*done)(void *arg), void *arg);

/* Cancels requests and timers and frees l; no callback is called. NULL is fine. */
void leader_free(struct leader *l);

/* Process-wide figures for health's /metrics (the controller runs one elector). */
struct leader_metrics {
    int enabled; /* an elector was created */
    int leading;
    uint64_t transitions; /* leader state changes of this replica (to leader and back) */
    uint64_t renew_failures;
};
void leader_metrics(struct leader_metrics *out);

#endif
