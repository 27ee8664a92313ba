/*
 * tlsmod_export: the table strait-tls.so exports (tlsmod.h), the only symbol the module
 * makes visible. Linked into the module only; the binary's side is tlsmod.c.
 */
#include "snapshot.h"
#include "tls.h"
#include "tls_mesh.h"
#include "tls_upstream.h"
#include "tlsmod.h"

__attribute__((visibility("default"))) extern const struct tls_module strait_tls_module;

const struct tls_module strait_tls_module = {
    .abi = TLSMOD_ABI,
    .size = sizeof(struct tls_module),
    .snapshot_size = sizeof(struct snapshot),
    .transport_size = sizeof(struct transport),
    .init = tls_init,
    .cleanup = tls_cleanup,
    .ticket_rotate = tls_ticket_rotate,
    .ticket_key_file = tls_ticket_key_file,
    .default_fingerprint = tls_default_fingerprint,
    .snap_build = tls_snap_build,
    .snap_free = tls_snap_free,
    .transport_accept = tls_transport_accept,
    .client_headers = tls_client_headers,
    .policy_allows = tls_policy_allows,
    .upstream_build = tls_upstream_build,
    .upstream_free = tls_upstream_free,
    .upstream_tag = tls_upstream_tag,
    .upstream_start = tls_upstream_start,
    .upstream_cleanup = tls_upstream_cleanup,
    .upstream_error = tls_upstream_error,
    .client_get = tls_upstream_client_get,
    .client_start = tls_upstream_client_start,
    .client_release = tls_upstream_client_release,
    .upstream_mesh_cluster = tls_upstream_mesh_cluster,
    .upstream_start_mesh = tls_upstream_start_mesh,
    .mesh_start = tls_mesh_start,
    .mesh_stop = tls_mesh_stop,
    .mesh_status = tls_mesh_status,
    .mesh_accept = tls_mesh_accept,
    .mesh_peer = tls_mesh_peer,
    .mesh_feed_post = tls_mesh_feed_post,
};
