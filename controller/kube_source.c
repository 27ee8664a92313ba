/*
 * kube_source: the Kubernetes API as the controller's input.
 *
 * Does: owns the shared cache, the kube_client and one kube_watch per kind (IngressClass,
 * Ingress, Service, EndpointSlice, Secret, Gateway); turns their state into readiness: not ready
 * until every kind has been listed once, nor while the API refuses our credentials (401 or
 * 403; the reason goes to /readyz and an event=api_error line); logs cache_synced once.
 * Does not: build or publish snapshots (main's reload cycle does, when kube_source_synced),
 * or talk HTTP itself.
 * Invariants: the cache is sealed at all times (the reflectors keep it so); the change
 * callback fires for every cache change, before and after the first sync, and main ignores
 * it until kube_source_synced.
 */
#include "kube_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "kube_client.h"
#include "kube_watch.h"
#include "log.h"

#define KS_MAGIC 0x4b535243u /* "KSRC" */

static const enum model_kind ks_kinds[] = {
    MODEL_KIND_INGRESS_CLASS, MODEL_KIND_INGRESS, MODEL_KIND_SERVICE, MODEL_KIND_ENDPOINT_SLICE,
    MODEL_KIND_SECRET,        MODEL_KIND_GATEWAY, MODEL_KIND_POD, /* Pods and ... */
    MODEL_KIND_AUTHZ_POLICY}; /* ... AuthorizationPolicies: only with opts->mesh */
#define KS_N (sizeof(ks_kinds) / sizeof(ks_kinds[0]))

struct kube_source {
    unsigned magic;
    struct ev_loop *loop;
    struct kube_client *client;
    struct model_cache cache;
    struct kube_watch *w[KS_N];
    kube_source_changed_fn changed;
    void *arg;
    int synced;
};

/* Recomputes readiness from the reflectors and hands the reason (or none) to health. */
static void ks_update_ready(struct kube_source *s)
{
    char reason[256], waiting[128];
    const char *msg;
    size_t i, n = 0;
    long code;
    int all = 1;

    reason[0] = waiting[0] = '\0';
    for (i = 0; i < KS_N; i++) {
        if (!s->w[i]) continue;
        if ((code = kube_watch_auth_error(s->w[i], &msg)) && !reason[0])
            snprintf(reason, sizeof(reason), "API server answered %ld %s for %s: %s", code,
                     code == 401 ? "Unauthorized" : "Forbidden",
                     model_kind_name(kube_watch_kind(s->w[i])), msg);
        if (!kube_watch_synced(s->w[i])) {
            all = 0;
            n += (size_t)snprintf(waiting + n, n < sizeof(waiting) ? sizeof(waiting) - n : 0,
                                  "%s%s", n ? ", " : "", model_kind_name(kube_watch_kind(s->w[i])));
            if (n >= sizeof(waiting)) n = sizeof(waiting) - 1;
        }
    }
    if (!reason[0] && !all)
        snprintf(reason, sizeof(reason), "waiting for the first list of %s", waiting);
    health_set_unready(reason);
    if (all && !s->synced) {
        s->synced = 1;
        for (i = 0, n = 0; i < KS_N; i++)
            n += s->w[i] != NULL;
        log_info("cache_synced", "kinds=%zu", n);
        if (s->changed) s->changed(s->arg);
    }
}

static void ks_on_changed(void *arg, struct kube_watch *w)
{
    struct kube_source *s = arg;

    (void)w;
    if (s->magic != KS_MAGIC) abort();
    if (s->changed) s->changed(s->arg);
}

static void ks_on_state(void *arg, struct kube_watch *w)
{
    struct kube_source *s = arg;

    (void)w;
    if (s->magic != KS_MAGIC) abort();
    ks_update_ready(s);
}

struct kube_source *kube_source_start(struct ev_loop *loop, const struct kube_config *cfg,
                                      const struct kube_source_opts *opts,
                                      kube_source_changed_fn changed, void *arg, char *err,
                                      size_t errlen)
{
    static const struct kube_watch_callbacks cb = {ks_on_changed, ks_on_state};
    struct kube_watch_opts wo;
    struct kube_source *s;
    size_t i;

    if (!(s = calloc(1, sizeof(*s)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->magic = KS_MAGIC;
    s->loop = loop;
    s->changed = changed;
    s->arg = arg;
    model_cache_init(&s->cache);
    if (!(s->client = kube_client_new(loop, cfg, err, errlen))) goto free_s;
    memset(&wo, 0, sizeof(wo));
    wo.ns = opts ? opts->watch_ns : NULL;
    wo.watch_timeout = opts ? opts->watch_timeout : 0;
    wo.crd_recheck = opts ? opts->crd_recheck : 0;
    for (i = 0; i < KS_N; i++) {
        if ((ks_kinds[i] == MODEL_KIND_POD || ks_kinds[i] == MODEL_KIND_AUTHZ_POLICY) &&
            !(opts && opts->mesh))
            continue;
        s->w[i] = kube_watch_new(loop, s->client, &s->cache, ks_kinds[i], &wo, &cb, s, err, errlen);
        if (!s->w[i]) goto free_watches;
        health_set_cached(ks_kinds[i], 0, 0);
    }
    ks_update_ready(s);
    for (i = 0; i < KS_N; i++)
        if (s->w[i]) kube_watch_start(s->w[i]);
    return s;

free_watches:
    for (i = 0; i < KS_N; i++)
        if (s->w[i]) kube_watch_free(s->w[i]);
    kube_client_free(s->client);
free_s:
    model_cache_free(&s->cache);
    free(s);
    return NULL;
}

int kube_source_synced(const struct kube_source *s)
{
    return s->synced;
}

const struct model_cache *kube_source_cache(const struct kube_source *s)
{
    return &s->cache;
}

unsigned kube_source_rejected(const struct kube_source *s)
{
    unsigned n = 0;
    size_t i;

    for (i = 0; i < KS_N; i++)
        if (s->w[i]) n += kube_watch_rejected(s->w[i]);
    return n;
}

void kube_source_each_rejected(const struct kube_source *s, kube_watch_rejected_fn fn, void *arg)
{
    size_t i;

    for (i = 0; i < KS_N; i++)
        if (s->w[i]) kube_watch_each_rejected(s->w[i], fn, arg);
}

struct kube_client *kube_source_client(struct kube_source *s)
{
    return s->client;
}

void kube_source_free(struct kube_source *s)
{
    size_t i;

    if (!s) return;
    if (s->magic != KS_MAGIC) abort();
    for (i = 0; i < KS_N; i++)
        if (s->w[i]) kube_watch_free(s->w[i]);
    kube_client_free(s->client);
    model_cache_free(&s->cache);
    s->magic = 0;
    free(s);
}
