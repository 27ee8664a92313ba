/*
 * meshwebhook: the leader keeps the caBundle of the sidecar injector's
 * MutatingWebhookConfiguration (--mesh-webhook-config NAME) equal to the mesh trust bundle,
 * as istiod does for its own webhook: the webhook's serving certificate is a leaf of the mesh
 * root, so the API server must trust that root, and during a rotation both roots.
 */
#ifndef STRAIT_MESHWEBHOOK_H
#define STRAIT_MESHWEBHOOK_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kube_client;
struct meshid;
struct meshwebhook;

/* How often the leader checks the object again (someone may have re-applied it), seconds. */
#define MESHWEBHOOK_DEFAULT_RESYNC 300.0

/*
 * A keeper for the cluster-scoped MutatingWebhookConfiguration name, with the trust bundle
 * of mesh (both borrowed; it registers for mesh's bundle changes). It does nothing until
 * meshwebhook_set_leader(w, 1). resync: seconds between checks (0: the default). Returns it,
 * or NULL with err filled (out of memory).
 */
struct meshwebhook *meshwebhook_new(struct ev_loop *loop, struct kube_client *client,
                                    struct meshid *mesh, const char *name, double resync, char *err,
                                    size_t errlen);

/* Leading: check now and every resync; not leading: cancel and stop. NULL is fine. */
void meshwebhook_set_leader(struct meshwebhook *w, int leading);

/* Cancels its request and timers, frees w. NULL is fine. */
void meshwebhook_free(struct meshwebhook *w);

/* Figures for the controller's /metrics (process-wide). */
struct meshwebhook_metrics {
    int enabled;
    uint64_t patches;  /* PATCHes that set at least one caBundle */
    uint64_t failures; /* GETs and PATCHes that failed (retried with backoff) */
};
void meshwebhook_metrics(struct meshwebhook_metrics *out);

#endif
