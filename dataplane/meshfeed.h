/*
 * meshfeed: a sidecar's snapshot from the controller's discovery feed (docs/mesh.md,
 * "On-demand discovery"): only the Services the pod uses - asked for on first use, kept up
 * to date while used, dropped when idle - plus the pod's own Services and their
 * AuthorizationPolicies.
 *
 * Does: a table of the destinations (ClusterIP:port) the pod's connections went to and of
 * the Services its HTTP requests named in Host ("ns/name"), each
 * pending (asked, no answer yet), a Service, or not a Service; a thread that POSTs
 * {"version", "wait", "addresses", "services"} to the controller's /v1/discovery with the
 * workload certificate (tls_mesh_feed_post) - a long poll the controller holds while the
 * answer would not change - and hands each new frame to the loop, which decodes it, builds the
 * snapshot (state carried over from the current one), resolves the destinations that request
 * named, and calls apply, as snapclient does for the Unix socket. A destination seen for the
 * first time wakes the thread, which abandons a held request and asks again at once; one not
 * used for `idle` seconds is left out of the next request (the controller's answer then drops
 * it). Failures retry with backoff 1 s, 2 s, ... 30 s; the last good snapshot stays.
 * Does not: park or resume connections (conn.c does, on meshfeed_want's answer and on every
 * snapshot swap).
 * Threads: meshfeed_start/current/stop on the loop's thread; meshfeed_want from any thread.
 */
#ifndef STRAIT_MESHFEED_H
#define STRAIT_MESHFEED_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>

#include "snapshot.h"

#define MESHFEED_PATH "/v1/discovery"
#define MESHFEED_WAIT 60.0     /* seconds the controller may hold a request (long poll) */
#define MESHFEED_IDLE 300.0    /* default: seconds unused before a destination is dropped */
#define MESHFEED_PARK 5.0      /* seconds a connection to a new destination waits for the answer */
#define MESHFEED_MAX_KEYS 1024 /* destinations asked for at once (the controller's limit) */

struct meshfeed;

/*
 * Starts the feed thread (the workload identity must be started: tls_mesh_start); apply is
 * called on loop for every snapshot applied. idle: seconds (>= 1). NULL with err.
 * Once per process.
 */
struct meshfeed *meshfeed_start(struct ev_loop *loop, double idle, snapclient_apply_fn apply,
                                void *arg, char *err, size_t errlen);

/* The last good snapshot (borrowed), or NULL before the first. */
struct snapshot *meshfeed_current(struct meshfeed *f);

/* Stops and joins the thread, drops the current snapshot and frees f. NULL is fine. */
void meshfeed_stop(struct meshfeed *f);

/* Whether a feed runs (else every destination is final: the snapshot has it or not). */
int meshfeed_on(void);

#define MESHFEED_NONE 0    /* not a Service of the mesh (or no feed): go where it was sent */
#define MESHFEED_PENDING 1 /* asked, or just answered and not yet in this worker's snapshot */

/*
 * A connection goes to sa (an original destination): records the use and returns what is
 * known. A destination new to the table is added and asked for (MESHFEED_PENDING); a
 * Service already resolved answers MESHFEED_PENDING too when the caller's snapshot lacks it
 * (the next swap brings it), so callers ask only for destinations their snapshot does not
 * have, or to mark a use (the answer is then ignored). A full table answers MESHFEED_NONE.
 */
int meshfeed_want(const struct sockaddr *sa);

/* The same for a Service by name, key "ns/name" (mesh_host_key): a Host the pod sends. */
#define MESH_KEY_MAX 130
int meshfeed_want_name(const char *key);

#endif
