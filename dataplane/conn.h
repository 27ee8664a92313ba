/*
 * conn: one client connection of a worker, proxying HTTP/1.1 requests to upstreams.
 */
#ifndef STRAIT_CONN_H
#define STRAIT_CONN_H

#include "worker.h"

/*
 * Takes ownership of the accepted, non-blocking fd; tls: accepted on an HTTPS listener
 * (the TLS handshake comes first).
 */
void conn_accept(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen, int tls,
                 int mesh);

/* Graceful stop: idle connections close now, busy ones after their current response. */
void conn_shutdown_all(struct worker *w);

/* Forced stop: closes every connection of w at once. */
void conn_close_all(struct worker *w);

/* Frees connections closed since the last call (deferred close). */
void conn_reap(struct worker *w);

/*
 * The worker's current snapshot changed: connections waiting for a destination's answer from
 * the discovery feed (meshfeed.h) move on.
 */
void conn_snapshot_swapped(struct worker *w);

/* Frees the calling worker thread's caches (request objects, buffer blocks); call last. */
void conn_thread_end(void);

#endif
