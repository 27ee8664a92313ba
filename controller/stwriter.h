/*
 * stwriter: the per-object status writer the leader's status modules share (status.c for
 * Ingresses, gwstatus.c for Gateways). A writer keeps a sorted set of objects (namespace/
 * name) and, while leading, brings each one's status to what its module wants: a GET while
 * the status is unknown, a JSON merge patch on .../NAME/status when it differs, nothing when
 * it is known to be right. What an entry holds, how its patch is built and what an answer
 * means come from the module's const ops table.
 */
#ifndef STRAIT_STWRITER_H
#define STRAIT_STWRITER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>

struct kobj_docs;
struct kube_client;
struct kube_request;
struct kube_response;

#define STWRITER_QPS 20.0        /* API requests per second, on average ... */
#define STWRITER_BURST 100       /* ... with bursts up to this many (a bucket per writer) */
#define STWRITER_MAX_INFLIGHT 8  /* requests in flight at once, per writer */
#define STWRITER_TIMEOUT 10.0    /* one request */
#define STWRITER_BACKOFF_MIN 0.5 /* seconds; doubles per failure of the same object */
#define STWRITER_BACKOFF_MAX 30.0

enum stwriter_op { STWRITER_NONE = 0, STWRITER_GET, STWRITER_PATCH };

struct stwriter;

/* One object. A module's entry type starts with it; the writer allocates ops->entry_size
 * zeroed bytes and owns ns/name (one allocation). */
struct stwriter_entry {
    unsigned magic;
    struct stwriter *w;
    char *ns, *name;
    enum stwriter_op op; /* of the request in flight */
    struct kube_request *req;
    double next_try; /* ev_now time before which it is not tried again */
    double backoff;
    int seen; /* in the latest sync (merge bookkeeping) */
};

/* Figures a writer counts into (the module's, process-wide). */
struct stwriter_counts {
    uint64_t writes;       /* PATCHes that succeeded */
    uint64_t write_errors; /* failed PATCHes (retried with backoff) */
    uint64_t reads;        /* GETs, whatever their result */
};

struct stwriter_ops {
    const char *api;        /* the API group's path, e.g. "/apis/networking.k8s.io/v1" */
    const char *resource;   /* e.g. "ingresses" */
    const char *log_prefix; /* before "object=" in log lines: "" or e.g. "kind=Gateway " */
    size_t entry_size;      /* of the module's entry type */
    /* The namespace and name of targets[i] given to stwriter_sync (NULL: skipped). */
    void (*target_key)(const void *target, const char **ns, const char **name);
    /* What the sync says of e (fresh: just made). Returns 0, or -1 (OOM: the sync fails). */
    int (*update)(struct stwriter_entry *e, const void *target, int fresh);
    /* Whether e's status is known to be the wanted one (checked before the backoff). */
    int (*done)(struct stwriter_entry *e);
    /*
     * e is idle, not done and past its retry time: STWRITER_GET (status unknown),
     * STWRITER_PATCH with *body (malloc'd) to send, or STWRITER_NONE (then *later may be
     * lowered to when to look again).
     */
    enum stwriter_op (*need)(struct stwriter_entry *e, double now, double *later, char **body);
    /*
     * A 200 answer to op: e's status is now the one in its body (and a PATCH's is logged).
     * Returns 0; 1 when a PATCH's answer holds something else than was sent (the server kept
     * it: e is retried later, not at once); or -1 with err filled (not understood).
     */
    int (*answer)(struct stwriter_entry *e, enum stwriter_op op, const char *body, size_t len,
                  char *err, size_t errlen);
    /* Forgets what is known of e's status. */
    void (*forget)(struct stwriter_entry *e);
    /* Frees the rest of what e owns (after forget), or NULL. */
    void (*clear)(struct stwriter_entry *e);
    /* Called by each pump while leading, before the entries: may start the module's own
     * requests and lower *next; returns whether the entries may be served now. NULL: yes. */
    int (*prepare)(struct stwriter *w, double now, double *next);
};

/* Embedded in the module's writer (recover it with container_of); fields read-only there. */
struct stwriter {
    unsigned magic;
    const struct stwriter_ops *ops;
    struct stwriter_counts *counts;
    struct ev_loop *loop;
    struct kube_client *client; /* borrowed */
    int leading;
    struct stwriter_entry **e; /* sorted by (ns, name) */
    size_t n, cursor;
    unsigned inflight;
    double qps, tokens, tokens_at;
    unsigned burst;
    ev_timer timer;
};

/* Sets w up (nothing is sent until stwriter_set_leader(w, 1)); qps/burst 0: the defaults. */
void stwriter_init(struct stwriter *w, const struct stwriter_ops *ops,
                   struct stwriter_counts *counts, struct ev_loop *loop, struct kube_client *client,
                   double qps, unsigned burst);

/*
 * The objects to keep up to date: n targets, stride bytes apart (copied through ops->update).
 * Known entries are kept, new ones made, those that left are forgotten. Returns 0, or -1 on
 * allocation failure (the previous set is kept).
 */
int stwriter_sync(struct stwriter *w, const void *targets, size_t n, size_t stride);

/* Leadership changed: losing it cancels the requests and forgets every entry's status. */
void stwriter_set_leader(struct stwriter *w, int leading);

/* Starts what may start now and arms the timer for the next thing that will be due. */
void stwriter_pump(struct stwriter *w);

/* Cancels e's request and forgets its status and backoff (another object of that name). */
void stwriter_entry_reset(struct stwriter_entry *e);

/* Cancels requests and the timer, frees the entries (not w). */
void stwriter_fini(struct stwriter *w);

/* ---- shared decisions (also for a module's own requests) ---- */

/* The backoff after one more failure: STWRITER_BACKOFF_MIN, then doubled up to _MAX. */
double stwriter_backoff_next(double backoff);

/*
 * When to try again after a failure at now: backoff scaled by 0.75 + 0.5 u (u in [0, 1): the
 * jitter; 0.5 gives backoff itself), but never before a Retry-After of retry_after seconds
 * (<= 0: none).
 */
double stwriter_retry_at(double now, double backoff, double retry_after, double u);

/* The Retry-After a failed answer asks us to honour: only a 429's counts, 0 when none. */
double stwriter_retry_after(const struct kube_response *r);

/* Parses an answer that must be one JSON object into docs. Returns 0, or -1 with err. */
int stwriter_parse_object(const char *body, size_t len, struct kobj_docs *docs, char *err,
                          size_t errlen);

/* What g generated, as a malloc'd NUL-terminated request body (NULL on failure); frees g. */
char *stwriter_body_take(yajl_gen g);

/* The reason of a failed answer for a log line (quoted), into q: the API's Status message,
 * "bad answer: ERR" for a 200 that did not parse, else the transport error. */
const char *stwriter_failure_text(const struct kube_response *r, const char *err, char *q,
                                  size_t n);

#endif
