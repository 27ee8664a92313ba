/*
 * clusterstats: each cluster's and each endpoint's numbers from the snapshot in use, for the
 * admin endpoints: Prometheus families appended to /metrics and the "clusters" array of
 * /stats (balancer, circuit breaker gauges and overflows, retry budget, and per endpoint its
 * weight, state, requests, errors, latency EWMA, ejections and health checks).
 */
#ifndef STRAIT_CLUSTERSTATS_H
#define STRAIT_CLUSTERSTATS_H

#include <yajl/yajl_gen.h>

struct snapshot;

/*
 * metrics (malloc'd Prometheus text, taken over; NULL passes through) followed by the
 * cluster and endpoint families of s (NULL: none). Returns the new text (malloc'd), or
 * NULL when out of memory.
 */
char *clusterstats_append(char *metrics, struct snapshot *s);

/* Writes s's clusters as one JSON array ([] for NULL). */
void clusterstats_json(yajl_gen g, struct snapshot *s);

#endif
