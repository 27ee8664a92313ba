/*
 * kube_source: cluster mode's input. One API client and one reflector per kind, filling the
 * same kind of sealed model_cache that file mode builds from a folder.
 */
#ifndef STRAIT_KUBE_SOURCE_H
#define STRAIT_KUBE_SOURCE_H

#include <stddef.h>

#include "kube_config.h"
#include "kube_watch.h"
#include "model.h"

struct ev_loop;
struct kube_client;
struct kube_source;

struct kube_source_opts {
    const char *watch_ns; /* --watch-namespace: namespaced kinds only there; NULL = all */
    int watch_timeout;    /* 0 = default (see kube_watch.h) */
    double crd_recheck;   /* seconds between lists of a missing CRD; 0 = default */
    int mesh;             /* --mesh: also list/watch Pods (the mesh directory) */
};

/* Called when the cache changed (an event, a list); debounce there. */
typedef void (*kube_source_changed_fn)(void *arg);

/*
 * Connects the client for cfg and starts every reflector. Returns the source, or NULL with
 * err filled (client settings).
 */
struct kube_source *kube_source_start(struct ev_loop *loop, const struct kube_config *cfg,
                                      const struct kube_source_opts *opts,
                                      kube_source_changed_fn changed, void *arg, char *err,
                                      size_t errlen);

/* Whether every kind completed its first list: only then may a snapshot be built. */
int kube_source_synced(const struct kube_source *s);

/* The cache (sealed, valid until the next event) and its rejected-object count. */
const struct model_cache *kube_source_cache(const struct kube_source *s);
unsigned kube_source_rejected(const struct kube_source *s);

/* Calls fn for each object any reflector holds as rejected (kube_watch_each_rejected). */
void kube_source_each_rejected(const struct kube_source *s, kube_watch_rejected_fn fn, void *arg);

/* The API client, for other users of the same connection pool (leader election, status). */
struct kube_client *kube_source_client(struct kube_source *s);

/* Cancels every request, frees the reflectors, the cache and the client. NULL is fine. */
void kube_source_free(struct kube_source *s);

#endif
