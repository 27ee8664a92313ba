/*
 * events: Kubernetes Events (core/v1) for objects the controller rejects, written by the
 * leader and deduplicated the way client-go's event correlator does it.
 */
#ifndef STRAIT_EVENTS_H
#define STRAIT_EVENTS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kube_client;
struct events;

#define EVENTS_COMPONENT "strait-controller"
#define EVENTS_REPEAT 600.0   /* a persisting rejection is written again at most this often */
#define EVENTS_TTL 3600.0     /* forget keys not reported for this long (the API's event TTL) */
#define EVENTS_MAX_KEYS 4096  /* remembered (object, reason, message) keys, as client-go */
#define EVENTS_QPS 5.0        /* writes per second on average ... */
#define EVENTS_BURST 25       /* ... with bursts of this many */
#define EVENTS_MAX_INFLIGHT 4 /* writes in flight */
#define EVENTS_MAX_TRIES 5    /* a write that keeps failing is dropped after this many */
#define EVENTS_TIMEOUT 10.0
#define EVENTS_MAX_MESSAGE 1024 /* bytes of message kept */

/* One rejection, as the snapshot builder (or a decoder) reports it. Strings are borrowed. */
struct events_item {
    const char *kind;             /* "Ingress" */
    const char *ns, *name;        /* ns "" for cluster-scoped objects */
    const char *uid;              /* NULL or "" when not known */
    const char *resource_version; /* NULL or "" when not known */
    const char *reason;           /* CamelCase, e.g. "BackendNotFound" */
    const char *message;          /* the same text as the log line's reason */
};

/* ---- the deduplication rule (pure; unit-tested) ---- */

enum events_action {
    EVENTS_SKIP = 0, /* already told, recently enough (or a write is in flight) */
    EVENTS_CREATE,   /* never written: POST a new Event */
    EVENTS_PATCH,    /* written before, long enough ago: bump count and lastTimestamp */
};

/*
 * What to do for an occurrence at now (seconds, any monotonic clock) of a key whose Event
 * was created (created != 0) and last written at last_write, with a write in flight or not.
 */
enum events_action events_decide(int created, int busy, double last_write, double now,
                                 double repeat);

/* The reason a decoder's error message falls under: "InvalidPath" for path errors, else
 * "Rejected". */
const char *events_reason_for_decode(const char *message);

/* t (seconds since the epoch) as a Kubernetes Time, "2006-01-02T15:04:05Z". */
void events_format_time(double t, char *buf, size_t n);

/* ---- the recorder (libev loop, kube_client) ---- */

struct events_opts {
    const char *component; /* source.component / reportingComponent; NULL: EVENTS_COMPONENT */
    const char *instance;  /* reportingInstance (the leader election identity), or NULL */
    const char *host;      /* source.host, or NULL */
    double repeat;         /* 0: EVENTS_REPEAT */
    double ttl;            /* 0: EVENTS_TTL */
};

/* A recorder that writes through client (borrowed). Returns it, or NULL with err filled. */
struct events *events_new(struct ev_loop *loop, struct kube_client *client,
                          const struct events_opts *opts, char *err, size_t errlen);

/*
 * The rejections of the build that just finished: the full current set, not a delta. A key
 * (kind, namespace, name, uid, reason, message) reported for the first time gets an Event;
 * one reported again gets nothing, unless its Event was last written `repeat` seconds ago or
 * more, then its count and lastTimestamp go up (PATCH; a new Event if that one expired).
 * Remembered while not leading; written only while leading. Returns 0, or -1 on allocation
 * failure (some items were not recorded).
 */
int events_report(struct events *ev, const struct events_item *items, size_t n);

/* Leadership changed: the leader writes what the last report holds; a follower cancels. */
void events_set_leader(struct events *ev, int leading);

/* Cancels requests and timers, frees ev. NULL is fine. */
void events_free(struct events *ev);

/* Process-wide figures for health's /metrics. */
struct events_metrics {
    int enabled;
    uint64_t created;    /* Events created (POST) */
    uint64_t updated;    /* Events whose count was bumped (PATCH) */
    uint64_t suppressed; /* occurrences deduplicated away */
    uint64_t errors;     /* failed writes */
};
void events_metrics(struct events_metrics *out);

#endif
