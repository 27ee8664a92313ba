/*
 * worker: N proxy threads, each with its own ev_loop and SO_REUSEPORT listening socket, and
 * the hand-off of new snapshots from the main thread to them.
 */
#ifndef STRAIT_WORKER_H
#define STRAIT_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "snapshot.h"

#define WORKER_MAGIC 0x574f524bu /* "WORK" */

struct conn;

/* Shared with conn.c; everything except mu/pending/stop_req is touched by the worker only. */
struct worker {
    uint32_t magic;
    unsigned id;
    pthread_t thread;
    int started;
    struct ev_loop *loop;
    int lfd;
    ev_io accept_w;
    ev_async async_w;
    ev_prepare reap_w;
    ev_timer drain_w;

    pthread_mutex_t mu;
    struct snapshot *pending; /* under mu: newest snapshot not yet picked up */
    int stop_req;             /* under mu */
    double grace;             /* under mu: drain time after stop_req */

    int stopping;
    struct snapshot *current; /* what new requests are routed with; NULL before the first */
    struct conn *conns;       /* live connections */
    struct conn *dead;        /* closed, freed by reap_w before the loop blocks */
    unsigned n_conns;
};

struct worker_pool;

/*
 * Opens n listening sockets on sa (port 0 picks one port for all) and starts n worker
 * threads. Returns 0 and *out, or -1 with err filled (nothing left running).
 */
int worker_pool_start(struct worker_pool **out, unsigned n, const struct sockaddr *sa,
                      socklen_t salen, char *err, size_t errlen);

/* Hands s (borrowed; each worker takes its own reference) to every worker. */
void worker_pool_publish(struct worker_pool *p, struct snapshot *s);

/*
 * Stops accepting, lets in-flight requests finish for up to grace seconds, closes
 * everything, joins the threads and frees the pool.
 */
void worker_pool_stop(struct worker_pool *p, double grace);

/* Called by conn.c when a connection is gone; lets a draining worker finish early. */
void worker_conn_gone(struct worker *w);

#endif
