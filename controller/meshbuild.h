/*
 * meshbuild: the mesh directory of a snapshot (snapwire v7 MESH_SERVICES / MESH_IDS) from the
 * object cache: one record per (ClusterIP, Service port) of every Service that has a ClusterIP,
 * with its protocol, whether its pods are all meshed and the SPIFFE identities they run as.
 * Pure: same cache, same directory. snapbuild calls it with --mesh and owns the clusters.
 */
#ifndef STRAIT_MESHBUILD_H
#define STRAIT_MESHBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "snapwire.h"

/* Calls fn for each (Service, port) that gets mesh records, Services in cache order. */
typedef int (*meshbuild_port_fn)(void *arg, const struct model_service *svc,
                                 const struct model_service_port *sp);
int meshbuild_each_port(const struct model_cache *cache, meshbuild_port_fn fn, void *arg);

/* The snapshot cluster (index) holding the endpoints of svc's port sp, or SNAPWIRE_NONE. */
typedef uint32_t (*meshbuild_cluster_fn)(void *arg, const struct model_service *svc,
                                         const struct model_service_port *sp);

struct meshbuild_result {
    /* sorted by (address, port), unique; ns/name point into the cache, address and the
     * ids' uri into this result */
    struct snapwire_mesh_service *services;
    size_t n_services;
    struct snapwire_mesh_id *ids;
    size_t n_ids;
    char (*addrs_)[46];
};

/*
 * Builds the directory of cache (sealed) for trust domain td. Returns 0 with *out filled (free
 * with meshbuild_free), or -1 with err filled (out of memory).
 */
int meshbuild_build(const struct model_cache *cache, const char *td,
                    meshbuild_cluster_fn cluster_of, void *arg, struct meshbuild_result *out,
                    char *err, size_t errlen);

void meshbuild_free(struct meshbuild_result *r);

/*
 * The protocol of Service port sp (enum snapwire_mesh_proto): OPAQUE for a port listed in
 * strait.dev/opaque-ports; by appProtocol ("http", "kubernetes.io/h1c": HTTP; any other:
 * OPAQUE); by name ("http", "http-..."): HTTP; else DETECT.
 */
uint8_t meshbuild_proto(const struct model_service *svc, const struct model_service_port *sp);

#endif
