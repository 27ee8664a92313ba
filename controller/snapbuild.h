/*
 * snapbuild: typed object cache → routing snapshot (struct snapwire_snapshot), following the
 * Kubernetes Ingress semantics and, for strait.dev/v1alpha1 Gateways, the Gateway API's
 * HTTPRoute semantics (gwbuild.c), both in one router. Pure apart from log lines: same cache, same
 * snapshot, same rejections.
 */
#ifndef STRAIT_SNAPBUILD_H
#define STRAIT_SNAPBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "authzbuild.h"
#include "model.h"
#include "snapwire.h"

struct snapbuild_arena;

/*
 * An Ingress the build dropped (object_rejected), that lost a route, its default backend or
 * a TLS host to an older one (ingress_conflict, tls_conflict), or whose TLS Secret could not
 * be used as it is (certificate_rejected: the Ingress is still served); or a Service in use
 * with a policy annotation that is not usable (annotation_ignored, reason InvalidAnnotation:
 * the Service is served with that key's default). reason is a CamelCase
 * word for a Kubernetes Event: BackendNotFound (no such Service), PortNotFound (the Service
 * has no such port), Conflict, SecretNotFound (a Secret named by spec.tls or an annotation
 * does not exist), InvalidCertificate (its certificate, key or CA bundle was refused),
 * InvalidAnnotation (Services);
 * message is the text the log line gives.
 */
struct snapbuild_rejection {
    const char *kind; /* "Ingress" or "Service" */
    const char *ns, *name;
    const char *uid, *resource_version; /* the object's, "" when not known (file mode) */
    const char *reason;
    const char *message;
};

/* An object by identity. */
struct snapbuild_object {
    const char *ns, *name;
};

/* A status condition (metav1.Condition without lastTransitionTime: the writer keeps it). */
struct snapbuild_condition {
    const char *type;   /* "Accepted", "Programmed", "ResolvedRefs" */
    const char *status; /* "True", "False" */
    const char *reason; /* CamelCase: Accepted, Invalid, BackendNotFound, InvalidRegex, ... */
    const char *message;
};

#define SNAPBUILD_GW_CONDS 3 /* Accepted, Programmed, ResolvedRefs, in this order */
/* a listener's: the Gateway's three, then Conflicted */
#define SNAPBUILD_GW_LISTENER_CONDS 4

/*
 * Status of one listener of a Gateway. Conflicted (Gateway API listener condition) is True
 * with reason RouteConflict when a route attached through it lost a host + match to an older
 * object (Ingress or Gateway) or HostnameConflict when its certificate lost a TLS host, else
 * False / NoConflicts.
 */
struct snapbuild_gw_listener {
    const char *name;
    uint32_t attached_routes; /* routes[] entries attached to this listener and served */
    struct snapbuild_condition conds[SNAPBUILD_GW_LISTENER_CONDS];
};

/* Status of one strait.dev/v1alpha1 Gateway after a build (every Gateway in the cache). */
struct snapbuild_gateway {
    const char *ns, *name;
    const char *uid, *resource_version; /* "" when not known (file mode) */
    int64_t generation;                 /* metadata.generation: status.observedGeneration */
    struct snapbuild_condition conds[SNAPBUILD_GW_CONDS];
    struct snapbuild_gw_listener *listeners;
    size_t n_listeners;
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
    /* every Gateway of the cache, by namespace/name, with its computed status */
    struct snapbuild_gateway *gateways;
    size_t n_gateways;
    unsigned n_gateways_served;   /* Gateways whose routes are in the snapshot (Programmed) */
    unsigned n_gateways_rejected; /* Gateways refused at build (InvalidRegex; object_rejected) */
    /* --mesh: every AuthorizationPolicy of the cache, by namespace/name, with its status */
    struct authzbuild_policy *authz_policies;
    size_t n_authz_policies;
    unsigned n_authz_rejected; /* policies left out of the snapshot (Accepted=False) */
    struct snapbuild_arena *arena_;
};

struct snapbuild_opts {
    const char *ingress_class;
    const char *source;       /* goes to meta.source */
    const char *default_cert; /* "ns/name" of --default-ssl-certificate, NULL for none */
    int64_t now;              /* Unix seconds certificates are checked at; 0 = time(NULL) */
    /* --mesh: the mesh directory (meshbuild.h) in trust domain trust_domain, and a cluster
     * for every Service port it names; 0: no mesh sections at all */
    int mesh;
    const char *trust_domain;   /* with mesh: a DNS name */
    const char *cluster_domain; /* with mesh; NULL: "cluster.local" */
    int authz_default_deny;     /* with mesh: --mesh-default-policy deny */
};

/*
 * Builds the snapshot for Ingresses of class o->ingress_class found in cache (which must be
 * sealed). Returns 0 with *out filled (free with snapbuild_free), or -1 with err filled on
 * allocation failure. Certificates go through certcheck, whose process-wide memory keeps
 * each Secret's last good certificate: the output depends on the cache, the clock (expiry)
 * and the good contents Secrets had in earlier builds.
 */
int snapbuild_build_opts(const struct model_cache *cache, const struct snapbuild_opts *o,
                         struct snapbuild_result *out, char *err, size_t errlen);

/* snapbuild_build_opts without a default certificate, at the current time. */
int snapbuild_build(const struct model_cache *cache, const char *ingress_class, const char *source,
                    struct snapbuild_result *out, char *err, size_t errlen);

void snapbuild_free(struct snapbuild_result *r);

#endif
