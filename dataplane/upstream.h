/*
 * upstream: upstream TCP connections (non-blocking connect, watchers and transport that
 * travel with the connection) and the per-worker pool of idle keep-alive ones, keyed by
 * endpoint address and transport tag (plain, or which TLS set-up).
 */
#ifndef STRAIT_UPSTREAM_H
#define STRAIT_UPSTREAM_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "clusterstate.h"
#include "transport.h"

#define UPSTREAM_POOL_MAX_IDLE 64      /* idle connections kept per endpoint address */
#define UPSTREAM_POOL_IDLE_TIMEOUT 60. /* seconds an idle connection is kept */

struct upstream_pool;
struct upstream_ep;

/*
 * One upstream connection. Its two watchers live here and move with it between the pool
 * and the request using it, so handing a connection over changes a callback pointer, not
 * the epoll set. While a request holds it, rio/wio call the callbacks given to
 * upstream_conn_attach with data set to that request's owner.
 */
struct upstream_conn {
    uint32_t magic;
    int fd;
    struct ev_loop *loop; /* the worker's: a connection never changes thread */
    ev_io rio, wio;
    struct upstream_pool *pool;
    struct upstream_ep *ep;                    /* while parked */
    struct upstream_conn *prev, *next;         /* its endpoint's parked connections */
    struct upstream_conn *lru_prev, *lru_next; /* all parked ones of the pool, newest first */
    double parked_at; /* ev_now when parked: the idle timeout counts from it */
    /*
     * How its bytes move: plain from upstream_conn_open; a TLS session once the owner
     * started one (tls_upstream_start), which then stays with the connection in the pool.
     * tag says which (0 plain, else tls_upstream_tag): the pool only hands a connection to
     * a request asking for the same tag.
     */
    struct transport tp;
    uint64_t tag;
    unsigned epoch; /* the pool's filter last known to keep it (0: none yet) */
    /*
     * The cluster it counts against while a request uses it (circuit breaking: one of the
     * cluster's connections in use); NULL while idle in the pool and for connections nobody
     * counts (mirrors, tests). Borrowed: the request using it holds the snapshot that holds
     * the record, and parks (upstream_pool_put) or closes (upstream_conn_close, which
     * release the count) the connection before letting the snapshot go.
     */
    struct clusterstate *cs;
};

typedef void (*upstream_io_cb)(struct ev_loop *loop, ev_io *io, int revents);

/*
 * Creates the idle pool of one worker on loop (owned by that worker's thread: no locks).
 * max_idle is the limit per endpoint address (0: never keep one), idle_timeout in seconds.
 * Returns NULL when out of memory.
 */
struct upstream_pool *upstream_pool_new(struct ev_loop *loop, unsigned max_idle,
                                        double idle_timeout);

/* Closes every idle connection and frees p (NULL is fine). */
void upstream_pool_free(struct upstream_pool *p);

/*
 * Takes the most recently parked idle connection to sa with transport tag out of p, or
 * NULL when there is none. Its read watcher is still active: attach it
 * (upstream_conn_attach) before the loop runs again.
 */
struct upstream_conn *upstream_pool_take(struct upstream_pool *p, const struct sockaddr *sa,
                                         socklen_t salen, uint64_t tag);

/*
 * Parks u, a connection to sa at a message boundary, in p (NULL: closes it) under u->tag;
 * p owns it from now on. It is closed at once when the endpoint already has max_idle idle
 * connections of that tag, or on no memory.
 */
void upstream_pool_put(struct upstream_pool *p, const struct sockaddr *sa, socklen_t salen,
                       struct upstream_conn *u);

/*
 * Says whether idle connections to sa under transport tag may stay pooled (non-zero) or
 * are to be closed (0).
 */
typedef int (*upstream_keep_fn)(const struct sockaddr *sa, socklen_t salen, uint64_t tag,
                                void *arg);

/*
 * Installs keep (with arg) as p's filter and closes every idle connection in p whose
 * (endpoint address, tag) it says not to keep: once per endpoint entry, so O(entries +
 * closed). Connections held by a request are not in the pool and are untouched, but from now
 * on upstream_pool_put closes instead of parking one that keep refuses (checked once per
 * connection per filter: a fresh one, or one taken out before this call). p owns arg from
 * now: free_arg(arg) (if not NULL) when the next call replaces it or p is freed. keep NULL
 * removes the filter and closes nothing. Returns how many were closed (NULL p: 0, and arg is
 * freed).
 */
unsigned upstream_pool_prune(struct upstream_pool *p, upstream_keep_fn keep, void *arg,
                             void (*free_arg)(void *arg));

/* Idle connections currently parked in p (all endpoints). */
unsigned upstream_pool_idle(const struct upstream_pool *p);

/*
 * Starts a non-blocking TCP connect to sa (TCP_NODELAY set) on loop. Returns a new
 * connection with *in_progress 1 when the connect completes later (wait for writability,
 * then check SO_ERROR) or 0 when already connected; NULL with errno on failure. Its
 * watchers are set up but not started.
 */
struct upstream_conn *upstream_conn_open(struct ev_loop *loop, const struct sockaddr *sa,
                                         socklen_t salen, int *in_progress);

/* Points u's watchers at a new owner: rcb/wcb with ev_io data = data. */
void upstream_conn_attach(struct upstream_conn *u, upstream_io_cb rcb, upstream_io_cb wcb,
                          void *data);

/* Stops u's watchers, ends its transport (a TLS session sends close_notify), closes its
 * socket and frees it. */
void upstream_conn_close(struct upstream_conn *u);

#endif
