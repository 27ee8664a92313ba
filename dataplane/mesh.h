/*
 * mesh: what the sidecar (strait-dataplane --sidecar) knows about the mesh besides TLS - the
 * process-wide sidecar settings, the per-snapshot index of the Service directory (snapwire
 * MESH_SERVICES: ClusterIP:port and name -> cluster), the original destination of an
 * intercepted connection, and protocol detection.
 *
 * Threads: mesh_configure on the main thread before the workers start; the index is built
 * with the snapshot and read-only afterwards; everything else from any thread.
 */
#ifndef STRAIT_MESH_H
#define STRAIT_MESH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "snapwire.h"

/* worker_listen.mesh: what a listening socket is for */
enum mesh_listener {
    MESH_LISTENER_NONE = 0,     /* the edge: HTTP / HTTPS listeners */
    MESH_LISTENER_INBOUND = 1,  /* connections redirected to the pod: mTLS (or permissive) */
    MESH_LISTENER_OUTBOUND = 2, /* connections the pod opens, redirected to the sidecar */
};

/*
 * Pool tag of a sidecar's direct connections (to its app on loopback, or passed through to
 * a destination that is no Service): plain TCP like tag 0, but not an endpoint of any
 * snapshot, so a swap's endpoint filter must not close them (worker.c keep_ready).
 */
#define MESH_DIRECT_TAG 0x6d6573682d646972ull     /* "mesh-dir" */
#define MESH_PEER_HEADER "x-strait-peer-identity" /* the verified caller, to the app */
#define MESH_DETECT_TIMEOUT 10.0 /* seconds to wait for a client's first bytes (detection) */

/*
 * Sidecar settings: ns, the pod's namespace (relative Service names in Host resolve in it;
 * copied, may be NULL); permissive, inbound plaintext accepted besides mTLS.
 */
void mesh_configure(const char *ns, int permissive);
int mesh_permissive(void);

struct mesh_index;

/*
 * The lookup tables of sw's mesh services; NULL (and 0) when sw has none. -1 with err when
 * out of memory or an address does not parse (snapwire checked them: not expected).
 */
int mesh_index_build(const struct snapwire_snapshot *sw, struct mesh_index **out, char *err,
                     size_t errlen);
void mesh_index_free(struct mesh_index *m);

/* The mesh service at ClusterIP:port sa (IPv4, IPv6 or v4-mapped), or NULL. m may be NULL. */
const struct snapwire_mesh_service *mesh_find_addr(const struct mesh_index *m,
                                                   const struct sockaddr *sa);
/*
 * The mesh service a Host names (lower case, without port): "svc" (the pod's namespace),
 * "svc.ns", "svc.ns.svc" or "svc.ns.svc.<cluster domain>", with Service port port; NULL when
 * it names none. m may be NULL.
 */
const struct snapwire_mesh_service *mesh_find_host(const struct mesh_index *m, const char *host,
                                                   size_t len, uint16_t port);

/*
 * The discovery feed's key of the Service a Host names (as mesh_find_host reads it; m may be
 * NULL: cluster domain cluster.local): "ns/name" into out. 0, or -1 when the Host cannot name
 * a Service (not that form, not DNS labels) or out is too small.
 */
int mesh_host_key(const struct mesh_index *m, const char *host, size_t len, char *out,
                  size_t outlen);

/* Whether m has a record (any port) of the Service key names ("ns/name"). m may be NULL. */
int mesh_has_service(const struct mesh_index *m, const char *key);

/*
 * Inbound authorization (AuthorizationPolicy, snapwire AUTHZ): may a caller - uri, its
 * verified SPIFFE identity, or NULL for plaintext - reach dst, the pod's own address and port
 * it dialled (the original destination)? The Services whose endpoints include dst are the
 * targets: a Deny policy of any of them that matches the caller denies; else, when Allow
 * policies target any of them (their port, or all ports), one must match; else the mesh
 * default (meta.authz_default_deny). Returns 1 (allow) or 0 (deny); *policy (never NULL)
 * names what decided: a policy's "ns/name", "no-allow-policy-matched" or "default". m NULL
 * (no mesh snapshot): allowed.
 */
int mesh_authorize(const struct mesh_index *m, const struct sockaddr *dst, const char *uri,
                   const char **policy);

/*
 * The destination a connection redirected by mesh-init's iptables rules was sent to
 * (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST). 0, or -1 when fd was not redirected (or the
 * kernel has no NAT record).
 */
int mesh_original_dst(int fd, struct sockaddr_storage *out, socklen_t *len);

/*
 * Whether buf starts like an HTTP/1 request line ("TOKEN SP"): 1 yes, 0 no, -2 cannot tell
 * yet (too few bytes).
 */
int mesh_looks_http(const char *buf, size_t len);

#endif
