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
#define WORKER_MAX_LISTENERS 16  /* --listen and --listen-tls addresses together */

struct conn;
struct upstream_pool;

/* Engine settings, the same for every worker; seconds may be fractional. */
struct worker_config {
    double client_header_timeout;     /* whole request head, from its first byte: 408 */
    double client_idle_timeout;       /* keep-alive idle between requests: silent close */
    double upstream_connect_timeout;  /* TCP connect to an endpoint: 504 */
    double upstream_response_timeout; /* request sent, no response head yet: 504 */
    double idle_body_timeout;         /* no progress either way during a body/tunnel: close */
    unsigned pool_max_idle;           /* idle upstream connections kept per endpoint; 0: none */
    double pool_idle_timeout;         /* how long an idle upstream connection is kept */
    /*
     * Request body limit in bytes for routes (and the default backend) whose snapshot entry
     * says SNAPWIRE_BODY_DEFAULT; a longer body gets 413. UINT64_MAX means unlimited and is
     * the default; --client-max-body-size 0 also maps to UINT64_MAX, so 0 is never stored.
     * Read it through snapshot_route_max_body(), which applies the per-route value first.
     */
    uint64_t client_max_body;
    /* port in the Location of plain-HTTP to HTTPS redirects (omitted there when 443) */
    unsigned https_port;
};

/*
 * Fills cfg with the documented defaults (10, 60, 5, 60, 60 s; 64 idle for 60 s; no body
 * limit; redirects to port 443).
 */
void worker_config_defaults(struct worker_config *cfg);

/* One listening address of the pool: plain HTTP or HTTPS. */
struct worker_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int tls;
    int mesh; /* enum mesh_listener: a sidecar's inbound or outbound listener */
};

struct worker;

/* A worker's own SO_REUSEPORT socket for one worker_listen. */
struct worker_lsn {
    ev_io io;
    int fd;
    int tls;
    int mesh; /* enum mesh_listener */
    struct worker *w;
};

/* Shared with conn.c; everything except mu/pending/stop_req is touched by the worker only. */
struct worker {
    uint32_t magic;
    unsigned id;
    pthread_t thread;
    int started;
    struct ev_loop *loop;
    unsigned n_lsn;
    struct worker_lsn lsn[WORKER_MAX_LISTENERS];
    ev_async async_w;
    ev_prepare reap_w;
    ev_timer drain_w;

    pthread_mutex_t mu;
    struct snapshot *pending; /* under mu: newest snapshot not yet picked up */
    int stop_req;             /* under mu */
    double grace;             /* under mu: drain time after stop_req */

    struct worker_config cfg;   /* read-only after start */
    struct upstream_pool *pool; /* idle upstream connections of this worker */
    int stopping;
    struct snapshot *current; /* what new requests are routed with; NULL before the first */
    struct conn *conns;       /* live connections */
    struct conn *dead;        /* closed, freed by reap_w before the loop blocks */
    unsigned n_conns;
};

struct worker_pool;

/*
 * Opens n listening sockets on sa (port 0 picks one port for all) and starts n worker
 * threads with settings cfg (copied; NULL: defaults). Returns 0 and *out, or -1 with err
 * filled (nothing left running).
 */
int worker_pool_start(struct worker_pool **out, unsigned n, const struct sockaddr *sa,
                      socklen_t salen, const struct worker_config *cfg, char *err, size_t errlen);

/*
 * The same with nls listening addresses (1..WORKER_MAX_LISTENERS), each plain or TLS; a
 * port 0 is resolved once and shared by all workers (ls[i].addr is updated to the bound
 * address).
 */
int worker_pool_start_listeners(struct worker_pool **out, unsigned n, struct worker_listen *ls,
                                unsigned nls, const struct worker_config *cfg, char *err,
                                size_t errlen);

/* Hands s (borrowed; each worker takes its own reference) to every worker. */
void worker_pool_publish(struct worker_pool *p, struct snapshot *s);

/*
 * Graceful drain: every worker closes its listener at once, closes idle client connections,
 * lets busy ones finish their current response (sent with Connection: close) for up to
 * grace seconds, then closes everything; joins the threads and frees the pool.
 */
void worker_pool_stop(struct worker_pool *p, double grace);

/* Called by conn.c when a connection is gone; lets a draining worker finish early. */
void worker_conn_gone(struct worker *w);

#endif
