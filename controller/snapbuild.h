/*
 * snapbuild: typed object cache → routing snapshot (struct snapwire_snapshot), following the
 * Kubernetes Ingress semantics. Pure apart from log lines: same cache, same snapshot, same
 * rejections.
 */
#ifndef STRAIT_SNAPBUILD_H
#define STRAIT_SNAPBUILD_H

#include <stddef.h>

#include "model.h"
#include "snapwire.h"

struct snapbuild_arena;

/*
 * An Ingress the build dropped (object_rejected) or that lost a route or its default backend
 * to an older one (ingress_conflict). reason is a CamelCase word for a Kubernetes Event:
 * BackendNotFound (no such Service), PortNotFound (the Service has no such port), Conflict;
 * message is the text the log line gives.
 */
struct snapbuild_rejection {
    const char *kind; /* "Ingress" */
    const char *ns, *name;
    const char *uid, *resource_version; /* the object's, "" when not known (file mode) */
    const char *reason;
    const char *message;
};

/* An object by identity. */
struct snapbuild_object {
    const char *ns, *name;
};

struct snapbuild_result {
    struct snapwire_snapshot snap; /* generation left 0: the publisher stamps it */
    unsigned n_ingresses;          /* Ingresses of our class that made it in */
    unsigned n_rejected;           /* Ingresses of our class dropped with object_rejected */
    unsigned n_conflicts;          /* ingress_conflict lines logged */
    /* in build order (Ingresses by namespace/name, then conflicts by host, path, match) */
    struct snapbuild_rejection *rejections;
    size_t n_rejections;
    /* the Ingresses of our class that made it in (n_ingresses of them), by namespace/name */
    struct snapbuild_object *accepted;
    size_t n_accepted;
    struct snapbuild_arena *arena_;
};

/*
 * Builds the snapshot for Ingresses of class ingress_class found in cache (which must be
 * sealed). source goes to meta.source. Returns 0 with *out filled (free with snapbuild_free),
 * or -1 with err filled on allocation failure.
 */
int snapbuild_build(const struct model_cache *cache, const char *ingress_class, const char *source,
                    struct snapbuild_result *out, char *err, size_t errlen);

void snapbuild_free(struct snapbuild_result *r);

#endif
