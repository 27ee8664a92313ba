/*
 * tls_upstream: client-side TLS to upstream endpoints (clusters with tls set in the
 * snapshot): one client context per distinct CA bundle (plus one that does not verify),
 * built with the snapshot, and the per-connection session set-up (SNI, host name check).
 *
 * Threads: tls_upstream_build/free where snapshots are built and freed; the rest from any
 * worker (contexts are shared read-only; OpenSSL reference-counts them, so a pooled
 * connection keeps its context alive after the snapshot that made it is gone).
 */
#ifndef STRAIT_TLS_UPSTREAM_H
#define STRAIT_TLS_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "snapwire.h"
#include "transport.h"

struct tls_upstream;

/*
 * Builds the client contexts of sw's TLS clusters, and the settings of its mesh clusters:
 * those a mesh_service with mtls refers to (mTLS with the sidecar's identity, tls_mesh.h; a
 * cluster both TLS and mesh is a mesh cluster). *out is NULL when no cluster uses TLS.
 * Returns 0, or -1 with err filled (naming the cluster and its CA) when a CA bundle does not
 * load.
 */
/* Whether sw has a cluster with upstream TLS (tls_upstream_build makes a table). */
static inline int tls_upstream_wanted(const struct snapwire_snapshot *sw)
{
    for (uint32_t i = 0; i < sw->n_clusters; i++)
        if (sw->clusters[i].tls) return 1;
    for (uint32_t i = 0; i < sw->n_mesh_services; i++)
        if (sw->mesh_services[i].mtls) return 1;
    return 0;
}

int tls_upstream_build(const struct snapwire_snapshot *sw, struct tls_upstream **out, char *err,
                       size_t errlen);
void tls_upstream_free(struct tls_upstream *t);

/*
 * The pool tag of cluster i: 0 for a plain cluster (or t NULL), else a non-zero hash of
 * what a TLS connection to it was set up with (server name, CA; a mesh cluster: its name and
 * identities, hashed apart from any TLS tag), so that an idle connection
 * is only reused by requests that would have opened the same kind of connection.
 */
uint64_t tls_upstream_tag(const struct tls_upstream *t, uint32_t cluster);

/*
 * Turns tp (a plain transport on a socket connected, or connecting, to sa) into a TLS client
 * session for cluster i: SNI = the cluster's tls_sni (not sent when it is an IP literal or
 * empty), and with a CA the peer must chain to it and match that name (DNS name or IP
 * address). The last session that endpoint gave under the same tag is offered for
 * resumption. Returns 0, or -1 (out of memory, or i is not a TLS cluster) with tp unchanged.
 */
int tls_upstream_start(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                       const struct sockaddr *sa, socklen_t salen);

/* 1 when cluster i is a mesh cluster of t (t may be NULL: 0). */
int tls_upstream_mesh_cluster(const struct tls_upstream *t, uint32_t cluster);

/*
 * Turns tp into a mesh mTLS client session on the socket fd (connected or connecting) for
 * mesh cluster i: the sidecar's current workload certificate and key, TLS 1.3 only, ALPN
 * "strait-opaque" when opaque else "http/1.1", no SNI, and the peer accepted only when it
 * chains to the mesh trust anchors and its one URI SAN is one of the cluster's identities
 * (the union of the ids of the mesh services using the cluster); else the handshake fails
 * (tls_upstream_error: "upstream certificate: peer identity refused by the mesh") and event
 * mesh_peer_refused names the URI and the cluster. tls_upstream_start on a mesh cluster is
 * this with opaque 0 on tp->fd. Returns 0, or -1 with tp unchanged (not a mesh cluster, no
 * identity installed yet, out of memory).
 */
int tls_upstream_start_mesh(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                            int fd, int opaque);

/*
 * One TLS cluster's client settings (context, SNI, verification, tag) on their own, for a
 * user that outlives the snapshot: the health checker's targets. Any thread; the copy holds
 * its own reference on the context, so it stays valid after tls_upstream_free(t).
 */
struct tls_upstream_client;

/* A copy of cluster i's settings; NULL when i is not a TLS cluster of t (or t NULL), or OOM.
 * Mesh clusters get NULL too: no health probes through the mesh's mTLS. */
struct tls_upstream_client *tls_upstream_client_get(const struct tls_upstream *t, uint32_t cluster);

/*
 * tls_upstream_start with c's settings: the same SNI, verification, name check and session
 * resumption (the cache is keyed by the same tag) as the cluster's traffic. 0, or -1 with
 * tp unchanged (out of memory, c NULL).
 */
int tls_upstream_client_start(const struct tls_upstream_client *c, struct transport *tp,
                              const struct sockaddr *sa, socklen_t salen);

/* Frees c (NULL is a no-op) and its context reference. */
void tls_upstream_client_release(struct tls_upstream_client *c);

/* Frees the process-wide session cache (at exit, after the workers stopped). */
void tls_upstream_cleanup(void);

/*
 * Why the last handshake of tp failed, for logs and the 502 reason: the certificate
 * verification error when there was one, else the OpenSSL error or "handshake failed".
 */
const char *tls_upstream_error(const struct transport *tp, char *buf, size_t len);

#endif
