/*
 * kube_watch: a reflector for one kind. Keeps that kind's part of a shared model_cache equal
 * to the API server's state, with client-go's list-then-watch protocol.
 */
#ifndef STRAIT_KUBE_WATCH_H
#define STRAIT_KUBE_WATCH_H

#include <stddef.h>

#include "model.h"

struct ev_loop;
struct kube_client;
struct kube_watch;

#define KUBE_WATCH_PAGE 500             /* list page size (limit=) */
#define KUBE_WATCH_TIMEOUT 300          /* timeoutSeconds is random in [this, 2 * this] */
#define KUBE_WATCH_BACKOFF_MIN 0.2      /* seconds; doubles per failure */
#define KUBE_WATCH_BACKOFF_MAX 30.0     /* and stops growing here */
#define KUBE_WATCH_LIST_TIMEOUT 60.0    /* one list page */
#define KUBE_WATCH_MAX_LINE (32u << 20) /* one watch event */
#define KUBE_WATCH_CRD_RECHECK 30.0     /* seconds between lists of a kind whose CRD is missing */

struct kube_watch_callbacks {
    /* The cache content of the reflector's kind changed (an event, a completed list). */
    void (*changed)(void *arg, struct kube_watch *w);
    /* kube_watch_synced or kube_watch_auth_error changed. */
    void (*state)(void *arg, struct kube_watch *w);
};

struct kube_watch_opts {
    const char *ns;      /* namespaced kinds: only this namespace; NULL or "" = all */
    int watch_timeout;   /* seconds, 0 = KUBE_WATCH_TIMEOUT */
    unsigned page_limit; /* 0 = KUBE_WATCH_PAGE */
    double crd_recheck;  /* seconds, 0 = KUBE_WATCH_CRD_RECHECK */
};

/*
 * A reflector for kind (IngressClass, Ingress, Service, EndpointSlice, Secret, Gateway) that fills
 * cache (borrowed; the reflector touches only kind's list, and keeps it sealed) through
 * client (borrowed). Nothing happens before kube_watch_start. Returns it, or NULL with err
 * filled.
 */
struct kube_watch *kube_watch_new(struct ev_loop *loop, struct kube_client *client,
                                  struct model_cache *cache, enum model_kind kind,
                                  const struct kube_watch_opts *opts,
                                  const struct kube_watch_callbacks *cb, void *arg, char *err,
                                  size_t errlen);

/* Starts the first list. */
void kube_watch_start(struct kube_watch *w);

enum model_kind kube_watch_kind(const struct kube_watch *w);

/*
 * Whether the first full list has completed (the kind's cache content is meaningful). A
 * custom resource whose CRD is not installed (the API server answers 404) counts as listed,
 * with no objects; it is listed again every crd_recheck seconds.
 */
int kube_watch_synced(const struct kube_watch *w);

/* Whether w's kind is a custom resource whose CRD the API server does not serve right now. */
int kube_watch_crd_missing(const struct kube_watch *w);

/*
 * 401 or 403 when the last answer of the API server was one of those (with its message in
 * *message when given), else 0.
 */
long kube_watch_auth_error(const struct kube_watch *w, const char **message);

/* Objects of the kind that the API holds but that failed validation (object_rejected). */
unsigned kube_watch_rejected(const struct kube_watch *w);

/*
 * Calls fn for every object of w's kind that is rejected right now (failed validation, so
 * not in the cache - except an invalid Gateway, kept for its status): its identity "ns/name" (or
 * "name" for cluster-scoped kinds), its metadata.uid ("" when absent) and the reason logged with
 * object_rejected. For Kubernetes Events on objects the decoder refused.
 */
typedef void (*kube_watch_rejected_fn)(void *arg, enum model_kind kind, const char *id,
                                       const char *uid, const char *reason);
void kube_watch_each_rejected(const struct kube_watch *w, kube_watch_rejected_fn fn, void *arg);

/* Cancels its requests and timers and frees w; the objects stay in the cache. NULL is fine. */
void kube_watch_free(struct kube_watch *w);

#endif
