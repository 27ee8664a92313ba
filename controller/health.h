/*
 * health: the controller's operational counters and its optional --admin / --health
 * endpoints (/healthz, /readyz, /metrics, /snapshot), served by common/adminsrv.
 */
#ifndef STRAIT_HEALTH_H
#define STRAIT_HEALTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "model.h"

struct ev_loop;
struct publisher;
struct health;

/* ---- counters (main loop only) ---- */

/* One reload cycle finished; ok 0 means it failed (folder unreadable, encode, publish). */
void health_count_reload(int ok);
/* A snapshot with this generation went to the publisher. */
void health_count_published(uint64_t generation);
/*
 * Result of the last successful build: objects[kind] accepted per kind and how many
 * objects were rejected (object_rejected lines) while loading and building.
 */
void health_set_objects(const unsigned objects[MODEL_KIND_COUNT], unsigned rejected);
void health_count_ack(void);
void health_count_nack(void);

/* ---- cluster mode (kube_client, kube_watch, kube_source) ---- */

/* One watch event of type ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR") for kind. */
void health_count_watch_event(enum model_kind kind, const char *type);
/* A watch of kind was started again (after an end, a cut or an error). */
void health_count_watch_restart(enum model_kind kind);
/* kind was listed again after its first list (410 Gone, or errors). */
void health_count_relist(enum model_kind kind);
/* Objects of kind in the cache, and whether its first list completed. */
void health_set_cached(enum model_kind kind, unsigned n, int synced);
/*
 * One API answer: method ("GET", ..., "WATCH" for streams), HTTP status (0: no answer) and
 * latency in seconds (for a watch: to its first byte). Statuses >= 400 and 0 count as errors.
 */
void health_observe_api(const char *method, long status, double seconds);
/* A snapshot build (from cache to encoded frame) took seconds and made a frame of bytes. */
void health_observe_build(double seconds, size_t bytes);
/*
 * Why the controller is not ready regardless of snapshots (waiting for a first list, API
 * answering 401/403), copied; NULL or "" clears it. /readyz answers 503 with it.
 */
void health_set_unready(const char *reason);

/*
 * Prometheus text for every controller family; dataplanes is the connected-client gauge.
 * Returns a malloc'd NUL-terminated string, or NULL on allocation failure.
 */
char *health_render_metrics(unsigned dataplanes);

/* Forgets every counter (unit tests). */
void health_reset(void);

/* ---- admin endpoints ---- */

/*
 * Serves the admin endpoints on sa from loop; pub (borrowed, must outlive the server) gives
 * the connected data planes and the current frame. Returns the server, or NULL with err
 * filled.
 */
struct health *health_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                            struct publisher *pub, char *err, size_t errlen);

/* Closes the admin listener and its connections, frees h. NULL is fine. */
void health_stop(struct health *h);

#endif
