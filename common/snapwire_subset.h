/*
 * snapwire_subset: cuts a mesh snapshot down to what one sidecar's data plane needs (the
 * discovery feed, docs/mesh.md "Discovery feed (controller)"): the mesh records of the
 * Services it asked for, their clusters, endpoints and identities, and the authorization
 * policies of the Services the pod itself backs. Nothing else: no listeners, routes, certificates
 * with keys, TLS hosts.
 */
#ifndef STRAIT_SNAPWIRE_SUBSET_H
#define STRAIT_SNAPWIRE_SUBSET_H

#include <stddef.h>
#include <stdint.h>

#include "snapwire.h"

/* One destination a sidecar asks about: a Service by name (every port), or ClusterIP:port. */
struct snapwire_subset_key {
    const char *ns, *name; /* a name key: both set; an address key: both NULL */
    const char *address;   /* an address key: an IPv4 or IPv6 literal, any text form */
    uint16_t port;
};

/*
 * An index of one snapshot (its records by Service name, its endpoints by address) that
 * makes a subset cost what it selects: build it once per snapshot when many subsets are cut
 * from it. It points into the snapshot (free it first). NULL: out of memory.
 */
struct snapwire_subset_index;
struct snapwire_subset_index *snapwire_subset_index_new(const struct snapwire_snapshot *full);
void snapwire_subset_index_free(struct snapwire_subset_index *ix);

struct snapwire_subset_query {
    const struct snapwire_subset_key *keys;
    size_t n_keys;
    const char *const *addresses; /* the pod's own IPs (literals, any text form) */
    size_t n_addresses;
    const struct snapwire_subset_index *index; /* of the snapshot cut; NULL: made per call */
};

/*
 * Fills *out with the subset of the mesh snapshot full that q selects:
 *   - meta copied, default_cluster and default_cert SNAPWIRE_NONE;
 *   - mesh_services (still sorted): a record whose (address, port) is an address key, whose
 *     (ns, name) is a name key, or whose cluster has an endpoint at one of q->addresses (the
 *     pod's own Services);
 *   - the clusters those records reference with their endpoints, and the mesh_ids of their
 *     ranges, re-indexed; a cluster's tls_ca is kept when it names a CA bundle (key_pem ""),
 *     else set to SNAPWIRE_NONE;
 *   - the authz policies (and their principals) whose target is one of the pod's own Services.
 * out's arrays are malloc'd, its strings point into full (encode out before freeing full).
 * Returns 0, or -1 with err filled (an address that is no IP literal, out of memory) and *out
 * zeroed. Free with snapwire_subset_free.
 */
int snapwire_mesh_subset(const struct snapwire_snapshot *full,
                         const struct snapwire_subset_query *q, struct snapwire_snapshot *out,
                         char *err, size_t errlen);

/* Frees the arrays of a snapshot snapwire_mesh_subset filled (not its strings). */
void snapwire_subset_free(struct snapwire_snapshot *s);

#endif
