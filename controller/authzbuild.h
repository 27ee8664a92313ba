/*
 * authzbuild: the authorization records of a mesh snapshot (snapwire v7 AUTHZ /
 * AUTHZ_PRINCIPALS) from the AuthorizationPolicies of the object cache, and each policy's
 * status (Accepted, ResolvedRefs). Pure: same cache, same records. snapbuild calls it with
 * --mesh.
 */
#ifndef STRAIT_AUTHZBUILD_H
#define STRAIT_AUTHZBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "snapwire.h"

#define AUTHZBUILD_CONDS 2 /* Accepted, ResolvedRefs, in this order */

struct authzbuild_cond {
    const char *type;   /* "Accepted", "ResolvedRefs" */
    const char *status; /* "True", "False" */
    const char *reason; /* Accepted, Invalid; ResolvedRefs, TargetNotFound, PortNotFound */
    char message[320];
};

/* Status of one AuthorizationPolicy of the cache. */
struct authzbuild_policy {
    char ns[64], name[254];
    char uid[64], resource_version[64]; /* "" when not known (file mode) */
    int64_t generation;                 /* metadata.generation: observedGeneration */
    int served;                         /* its record is in the snapshot */
    struct authzbuild_cond conds[AUTHZBUILD_CONDS];
};

struct authzbuild_result {
    /* sorted by (ns, name, port, source); every string points into this result */
    struct snapwire_authz *authz;
    size_t n_authz;
    struct snapwire_principal *principals; /* each policy's range sorted by (kind, value) */
    size_t n_principals;
    /* every policy of the cache, by namespace/name */
    struct authzbuild_policy *policies;
    size_t n_policies;
    unsigned n_rejected; /* policies not served (invalid) */
    char (*uris_)[512];  /* ServiceAccounts' SPIFFE IDs */
    size_t n_uris_;
    char (*sources_)[320];
};

/*
 * Builds the records of cache (sealed) for trust domain td; default_deny goes to
 * meta.authz_default_deny (snapbuild's business). Invalid policies (decoder, or an identity
 * outside td) are left out with Accepted=False / Invalid and an object_rejected log line
 * (file: source); a policy whose target Service (or port) does not exist is served, with
 * ResolvedRefs=False. Returns 0 with *out filled (free with authzbuild_free), or -1 with err
 * filled (out of memory).
 */
int authzbuild_build(const struct model_cache *cache, const char *td, struct authzbuild_result *out,
                     char *err, size_t errlen);

void authzbuild_free(struct authzbuild_result *r);

#endif
