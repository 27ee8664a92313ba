/*
 * upstream: non-blocking upstream connects and the per-worker pool of idle keep-alive
 * upstream connections, keyed by endpoint address.
 */
#ifndef STRAIT_UPSTREAM_H
#define STRAIT_UPSTREAM_H

#include <ev.h>
#include <sys/socket.h>

#define UPSTREAM_POOL_MAX_IDLE 64      /* idle connections kept per endpoint address */
#define UPSTREAM_POOL_IDLE_TIMEOUT 60. /* seconds an idle connection is kept */

struct upstream_pool;

/*
 * Creates the idle pool of one worker on loop (owned by that worker's thread: no locks).
 * max_idle is the limit per endpoint address, idle_timeout in seconds. Returns NULL when
 * out of memory.
 */
struct upstream_pool *upstream_pool_new(struct ev_loop *loop, unsigned max_idle,
                                        double idle_timeout);

/* Closes every idle connection and frees p (NULL is fine). */
void upstream_pool_free(struct upstream_pool *p);

/*
 * Takes the most recently parked idle connection to sa out of p. Returns its fd (the
 * caller owns it now), or -1 when there is none.
 */
int upstream_pool_take(struct upstream_pool *p, const struct sockaddr *sa, socklen_t salen);

/*
 * Parks fd, a connection to sa at a message boundary, in p; p owns it from now on. It is
 * closed at once when the endpoint already has max_idle idle connections or on no memory.
 */
void upstream_pool_put(struct upstream_pool *p, const struct sockaddr *sa, socklen_t salen, int fd);

/* Idle connections currently parked in p (all endpoints). */
unsigned upstream_pool_idle(const struct upstream_pool *p);

/*
 * Starts a non-blocking TCP connect to sa (TCP_NODELAY set). Returns the fd with
 * *in_progress 1 when the connect completes later (wait for writability, then check
 * SO_ERROR) or 0 when already connected; -1 with errno on failure.
 */
int upstream_connect(const struct sockaddr *sa, socklen_t salen, int *in_progress);

#endif
