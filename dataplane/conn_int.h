/*
 * conn_int: what conn.c (the connection state machine) and conn_mesh.c (its sidecar side:
 * the mesh listeners, mTLS hand-off, authorization, the discovery feed's waits) share - the
 * connection and request structures and the few steps of the state machine the sidecar side
 * drives. Not for any other module: they see conn.h.
 */
#ifndef STRAIT_CONN_INT_H
#define STRAIT_CONN_INT_H

#include <arpa/inet.h>
#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conn.h"
#include "dbuf.h"
#include "http1.h"
#include "snapshot.h"
#include "transport.h"
#include "upstream.h"
#include "worker.h"

struct mirror;

#define CONN_MAGIC 0x434f4e4eu /* "CONN" */
#define REQ_MAGIC 0x52455155u  /* "REQU" */
#define CONN_BUF_HIGH (64 * 1024)
#define CONN_READ_MIN 4096          /* a read is attempted only with at least this much room */
#define REQ_POOL_MAX 1024           /* request objects a thread keeps for reuse */
#define CONN_LINGER 2.0             /* seconds a lingering close waits for the client's EOF */
#define CONN_REPLAY_MAX (64 * 1024) /* request bytes kept to retry an idempotent request */
#define CONN_BACKOFF_MAX 10.0       /* seconds: the longest wait between two attempts */
#define CONN_MAX_MIRRORS 4          /* RequestMirror copies of one request */

enum conn_state {
    CS_HEAD,  /* waiting for / parsing a request head */
    CS_PROXY, /* a request is being proxied */
    CS_TUNNEL /* after a 101: raw bytes both ways until either side closes */
};

struct conn_reqlog;

/* The state of one request and its upstream leg; NULL in struct conn between requests. */
struct conn_req {
    uint32_t magic;
    struct conn *c;
    struct conn_req *next_free;
    struct snapshot *snap;
    const char *route_src; /* route's source, in snap (or a literal); NULL: none */
    const char *hsts;      /* the route's Strict-Transport-Security value (in snap), or NULL */
    const struct snapwire_route *rt; /* the matched route (in snap); NULL: default backend */
    /* rt's filters that act while the request is proxied (in snap), or NULL */
    const struct snapwire_filter *req_edit, *resp_edit, *rewrite;
    uint8_t attempt;     /* upstream attempts made for the request (route retries) */
    uint8_t u_backoff;   /* no upstream: waiting (utimer) before the next attempt */
    uint8_t replay_body; /* body bytes go into replay too (an idempotent request with retries) */
    ev_timer dtimer;     /* the route's deadlines (request and backend timeouts) */
    double req_deadline, try_deadline;        /* loop times; 0 = none */
    struct mirror *mirrors[CONN_MAX_MIRRORS]; /* copies still taking the request body */
    uint8_t n_mirrors;
    /* balancer feedback: the endpoint (in snap) of the attempt under way, and its start */
    const struct snapshot_endpoint *bal_ep;
    double bal_t0;
    /* cookie affinity: the cluster has it; the endpoint the request's cookie named (or NULL) */
    uint8_t aff_want;
    const struct snapshot_endpoint *aff_ep;
    uint8_t keep_alive; /* client connection persists after this response */
    uint8_t is_head, client_minor, req_done;
    uint8_t upgrade;    /* request asked for a protocol upgrade (Connection: upgrade + Upgrade) */
    uint8_t idempotent; /* RFC 9110 9.2.2: may be retried automatically */
    uint8_t logged;     /* counted in metrics (and the access log) already */
    enum http1_body_kind req_body;
    uint64_t req_remaining;
    uint64_t max_body; /* route limit for the request body, UINT64_MAX: none */
    uint64_t body_seen;
    struct http1_chunked req_chunk;
    double req_start;           /* loop time (ev_now) when the request head was parsed */
    double req_wall;            /* wall clock at the same moment, for the access log */
    uint64_t out_mark;          /* out_total + cout.len when the request started */
    struct conn_reqlog *reqlog; /* only with --access-log; kept with the object when reused */

    /* upstream leg */
    struct upstream_conn *u;
    ev_timer utimer;
    double u_due;     /* when the upstream phase times out (arm_utimer) */
    double u_fire_at; /* when utimer is set to fire (never after u_due) */
    uint8_t u_connecting, u_eof, u_write_failed;
    uint8_t u_handshaking; /* upstream TLS handshake under way (after the TCP connect) */
    uint32_t ucluster;     /* cluster index in snap: its TLS set-up (tls_upstream) */
    uint8_t u_keep;        /* upstream head asked for a persistent connection */
    uint8_t u_reused;      /* u came from the idle pool */
    uint8_t u_got_bytes;   /* any response byte arrived on u */
    uint8_t cb_req;        /* counted in the cluster's requests in flight (circuit breaking) */
    uint8_t cb_pending;    /* counted in the cluster's pending requests: a new u connecting */
    uint8_t replay_ok;     /* replay holds all that was sent: a failed reuse may be retried */
    uint8_t u_shut;        /* opaque tunnel: our FIN went upstream (the client ended) */
    uint8_t resp_started, resp_done;
    uint8_t resp_close; /* upstream will not keep the connection (Connection: close, 1.0) */
    int resp_status;
    struct sockaddr_storage uaddr; /* endpoint of the request (the pool key) */
    socklen_t uaddrlen;
    struct dbuf replay, uin, uout;
    enum http1_body_kind resp_body;
    uint64_t resp_remaining;
    struct http1_chunked resp_chunk;
};

/* A client connection: all that an idle keep-alive connection costs. */
struct conn {
    uint32_t magic;
    uint8_t state; /* enum conn_state */
    uint8_t dead;
    uint8_t c_eof;             /* client closed its side */
    uint8_t close_after_flush; /* no more requests: close once cout is written */
    uint8_t head_timer;        /* header timer armed for the partial head in cin */
    uint8_t linger;            /* close with client bytes still coming (an unread body) */
    uint8_t lingering;         /* sent FIN; reading and dropping until EOF or CONN_LINGER */
    uint8_t tls;               /* accepted on a TLS listener */
    uint8_t handshaking;       /* TLS handshake not finished: no HTTP yet */
    struct transport tp;       /* the client socket and, on a TLS listener, its session */
    struct worker *w;
    struct conn *prev, *next;
    ev_io rio, wio;
    ev_timer timer; /* idle / header timeout; left running but ignored outside CS_HEAD */
    struct dbuf cin, cout;
    uint64_t out_total; /* bytes sent to the client over the connection */
    struct conn_req *r; /* the request being answered, or NULL */
    /*
     * TLS with client-certificate verification: the header lines telling the upstream who
     * the client is (tls_client_headers), added to every request; NULL otherwise.
     */
    char *client_hdrs;
    char peer[INET6_ADDRSTRLEN];
    /* ---- sidecar (mesh.h) ---- */
    uint8_t mesh;      /* enum mesh_listener of the listener it came from */
    uint8_t opaque;    /* a TCP tunnel with no HTTP: bytes both ways, half-closes passed on */
    uint8_t detect;    /* waiting for the first bytes: HTTP/1 or opaque */
    uint8_t mesh_peek; /* inbound: waiting for the first byte, TLS record or plaintext */
    uint8_t c_shut;    /* opaque tunnel: our FIN went to the client (the upstream ended) */
    char *peer_uri;    /* inbound mTLS: the caller's verified SPIFFE ID; NULL: plaintext */
    /*
     * Discovery feed (meshfeed.h): feed_park is what waits for the destination's answer
     * (FEED_PARK_*), feed_given_up once that wait ran out (then what is known is final for
     * the connection); feed_used, feed_name_used: when the use of the destination, of the
     * Service Host named, was last recorded (ev_now).
     */
    uint8_t feed_park, feed_given_up;
    double feed_used, feed_name_used;
    socklen_t origlen; /* the redirected connection's original destination (SO_ORIGINAL_DST) */
    struct sockaddr_storage orig;
};

/* The transport of the request's upstream connection r->u (it travels with u, pool too). */
static inline struct transport *up_tp(struct conn_req *r)
{
    return &r->u->tp;
}

static inline void io_want(struct ev_loop *loop, ev_io *io, int want)
{
    if (want && !ev_is_active(io))
        ev_io_start(loop, io);
    else if (!want && ev_is_active(io))
        ev_io_stop(loop, io);
}

/* The value of the first header called name (a literal) in hdrs[0..n), or NULL. */
static inline const struct http1_header *header_find(const struct http1_header *hdrs, size_t n,
                                                     const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (http1_name_is(&hdrs[i], name)) return &hdrs[i];
    return NULL;
}

/* ---- conn.c, for conn_mesh.c ---- */

/* (Re)arms the client timer to fire after seconds. */
void conn_arm_timer(struct conn *c, double after);
/* Closes c (marked dead, freed by conn_reap); conn_reset closes with a TCP reset. */
void conn_close(struct conn *c);
void conn_reset(struct conn *c);
/* Runs the state machine and updates the watchers (see conn.c). */
void conn_run(struct conn *c);
/* Reads what a new connection already sent and runs it, or waits for its first bytes. */
void conn_first_read(struct conn *c);
/* Moves the client's TLS handshake on. */
void conn_handshake(struct conn *c);
/* A cleared request object for c, or NULL (out of memory). */
struct conn_req *conn_req_new(struct conn *c);
/* Starts the request's bookkeeping (times, access log); req NULL: not parsed. */
void conn_request_begin(struct conn *c, const struct http1_request *req);
/* What logs call the request's route. */
const char *conn_route_name(const struct conn_req *r);
/* Opens (or, allow_pool, takes from the pool) the upstream connection to r->uaddr. 0 or -1. */
int conn_upstream_open(struct conn *c, int allow_pool);
/* Closes the request's upstream connection (if any) and stops its timer. */
void conn_upstream_release(struct conn *c);
/* Counts the request in metrics and writes its access log line, once; before release. */
void conn_request_log(struct conn *c, int status);
/* Ends the current request: upstream closed, snapshot reference dropped, state freed. */
void conn_request_release(struct conn *c);

/* ---- conn_local.c: answers without an upstream ---- */

/*
 * Answers the current request with status and body (NULL: the default for status) and the
 * header lines extra (each ending in CRLF; NULL: none), ends the request, and closes after
 * the response when close_conn or the request body was not fully read.
 */
void conn_local_response_hdrs(struct conn *c, int status, const char *body, int close_conn,
                              const char *extra);
void conn_local_response(struct conn *c, int status, const char *body, int close_conn);
/* RFC 8555 8.3: target is an ACME HTTP-01 challenge path (kept reachable over plain HTTP). */
int conn_is_acme_challenge(const char *target, size_t len);
/*
 * 308 to https for host (normalised, no port) and target (as received); head_len: the
 * request head's size in cin, consumed once the answer no longer needs it.
 */
void conn_redirect_https(struct conn *c, const char *host, const char *target, size_t tlen,
                         size_t head_len);
/* A RequestRedirect filter f answers the request (host: normalised Host, hl its length). */
void conn_gw_redirect(struct conn *c, const struct snapwire_filter *f, char *host, int hl,
                      const struct http1_request *req, const struct http1_msginfo *info,
                      size_t head_len);
/* Circuit breaking: the cluster is at a limit; 503 with x-strait-overflow: 1. */
void conn_upstream_overflow(struct conn *c);

/* ---- conn_head.c: proxied heads ---- */

/* The current time as an IMF-fixdate, cached per second and thread. */
const char *conn_http_date(struct conn *c);
/* True when a header called name in hdrs[0..n) lists token (comma-separated, any case). */
int conn_header_has_token(const struct http1_header *hdrs, size_t n, const char *name,
                          const char *token);
/* The upstream request head of c's request into r->uout. 0 or -1 (out of memory). */
int conn_build_upstream_head(struct conn *c, const struct http1_request *req,
                             const struct http1_msginfo *info);
/* The response head res for the client into cout. 0 or -1 (out of memory). */
int conn_write_client_head(struct conn *c, const struct http1_response *res);

/* ---- conn_mesh.c, for conn.c ---- */

/*
 * Where a sidecar sends a request (host: the normalised Host, hl its length, hport its port
 * or 0) or, with hl 0, an opaque connection. Inbound: the app, on loopback at the original
 * destination's port. Outbound: the Service the Host names (its port: Host's, else the
 * original destination's), else the Service at the original destination (a ClusterIP),
 * each through its cluster; else straight to the original destination (passthrough: not
 * a Service of the mesh). Returns 0 with *cluster (a cluster of snap), 1 with *ta (direct),
 * -1 when the Service has no cluster (no endpoints). *route: what metrics and logs call it.
 */
int conn_mesh_target(struct conn *c, struct snapshot *snap, const char *host, int hl, int hport,
                     struct sockaddr_storage *ta, socklen_t *tl, const char **route,
                     uint32_t *cluster);
/* Inbound authorization of the caller with snap's policies; http: a request. 1 allowed. */
int conn_mesh_authorized(struct conn *c, struct snapshot *snap, int http);
/* Turns c into an opaque tunnel to its mesh target. 0, or -1 with c closed. */
int conn_mesh_tunnel_start(struct conn *c);
/* Inbound: waits for (timed_out: gave up on) the first byte, TLS or plaintext. */
void conn_mesh_inbound_start(struct conn *c, int timed_out);
/* Inbound mTLS is up: the verified caller to the app, HTTP or opaque by ALPN. */
void conn_mesh_handshake_done(struct conn *c);
/* A connection accepted on a sidecar listener. */
void conn_mesh_accept(struct conn *c);

/*
 * The discovery feed: 1 when c must wait for its destination's (or req's Host's) answer,
 * then parked with conn_feed_park(c, what); conn_feed_resume moves a parked c on (given_up:
 * its wait ran out).
 */
#define FEED_PARK_ACCEPT 1  /* before anything was read: the outbound start again */
#define FEED_PARK_REQUEST 2 /* a request head in cin: conn_run again */
int conn_feed_must_wait(struct conn *c, struct snapshot *snap, const struct http1_request *req);
void conn_feed_park(struct conn *c, uint8_t what);
void conn_feed_resume(struct conn *c, int given_up);

#endif
