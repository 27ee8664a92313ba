/*
 * tls_mesh: the sidecar's workload identity and its mTLS contexts - a thread that asks the
 * controller's identity endpoint for a certificate (CSR of a key made in memory, the pod's
 * ServiceAccount token as proof), installs it in a server and a client SSL_CTX, and renews it
 * at half its lifetime; inbound mTLS transports made from the current server context and the
 * peer identity they verified. The outbound side (mesh clusters, the allowed peer identities)
 * is in tls_upstream.h.
 *
 * Threads: tls_mesh_start/tls_mesh_stop on the main thread; the rest from any thread (the
 * current contexts are swapped under a mutex, each connection holds its own reference).
 */
#ifndef STRAIT_TLS_MESH_H
#define STRAIT_TLS_MESH_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct tls_mesh_config {
    const char
        *identity_addr; /* "host:port" of the controller's identity endpoint (IPv4/IPv6/name) */
    const char *identity_name; /* DNS name (or IP) the controller's certificate must carry */
    const char *trust_domain;  /* e.g. "cluster.local" */
    const char *anchors_pem;   /* PEM roots: verify the controller and every peer */
    const char *token_path;    /* projected ServiceAccount token file, re-read at every request */
    double retry_max;          /* seconds: cap of the exponential backoff (from 1 s) */
};

/*
 * Loads the TLS module (binary side), checks cfg (anchors load, fields set), copies it and
 * starts the identity thread, which asks at once. 0, or -1 with err. Once only per process
 * (until tls_mesh_stop).
 */
int tls_mesh_start(const struct tls_mesh_config *cfg, char *err, size_t errlen);

/* Wakes and joins the identity thread; the current contexts are dropped (connections that
 * hold one keep it). A no-op when not started. */
void tls_mesh_stop(void);

/*
 * 1 when a certificate is installed (its identity URI into identity, its notAfter as UNIX time
 * into *not_after; either may be NULL), else 0. A certificate past its notAfter is uninstalled.
 */
int tls_mesh_status(char *identity, size_t len, double *not_after);

/*
 * Inbound: turns t into a TLS server transport on fd with the current mesh server context
 * (TLS 1.3 only, peer certificate required and verified against the trust anchors, its leaf
 * carrying a spiffe:// URI of our trust domain; ALPN "strait-opaque" or "http/1.1"). -1 when
 * there is no identity yet or out of memory (fd untouched). The handshake then runs through
 * the usual transport ops (handshake op).
 */
int tls_mesh_accept(struct transport *t, int fd);

/* An answer of the controller (tls_mesh_feed_post). */
struct tls_mesh_answer {
    int status;
    char *body; /* malloc'd (free it), NUL-terminated after len bytes; NULL on failure */
    size_t len;
    char version[128]; /* its X-Strait-Version header, "" when absent */
};

/*
 * POSTs json to the controller's mesh endpoint at path (the identity endpoint's address and
 * name) with the workload certificate as client certificate (mTLS): the discovery feed.
 * budget: seconds from connect to the answer's last byte; intr: -1 or a descriptor whose
 * becoming readable abandons the request; max: the largest answer accepted. 0 with *a filled
 * (any status), -2 when intr became readable, -1 with why (no certificate yet, connect, TLS,
 * a malformed or too large answer, timeout, tls_mesh_stop). Blocks: call it from a thread
 * of its own. Safe from any thread while the identity runs.
 */
int tls_mesh_feed_post(const char *path, const char *json, double budget, int intr, size_t max,
                       struct tls_mesh_answer *a, char *why, size_t len);

#define TLS_MESH_PEER_UNKNOWN 0
#define TLS_MESH_PEER_HTTP 1
#define TLS_MESH_PEER_OPAQUE 2

/*
 * After the handshake of a tls_mesh_accept transport: the peer's verified SPIFFE URI into uri
 * (len bytes; a URI that does not fit is -1, never cut); returns TLS_MESH_PEER_HTTP (ALPN
 * "http/1.1"), TLS_MESH_PEER_OPAQUE (ALPN "strait-opaque") or TLS_MESH_PEER_UNKNOWN (no ALPN), -1
 * when there is no verified peer identity (plain transport, handshake not done, no certificate).
 */
int tls_mesh_peer(const struct transport *t, char *uri, size_t len);

#define TLS_MESH_ALPN_HTTP "http/1.1"
#define TLS_MESH_ALPN_OPAQUE "strait-opaque"

/* ---- module side only (tls_upstream.c) ---- */
struct ssl_st;

/*
 * A client session (connect state) on fd with the current mesh client context: ALPN
 * "strait-opaque" when opaque, else "http/1.1"; the peer must chain to the trust set and its
 * URI be one of ids[0..n_ids) (else event mesh_peer_refused naming cluster). NULL when there
 * is no identity yet or out of memory.
 */
struct ssl_st *tls_mesh_client_new(int fd, int opaque, const char *const *ids, uint32_t n_ids,
                                   const char *cluster);

#endif
