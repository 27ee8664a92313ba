/*
 * strait-controller: objects (a manifests folder, or the Kubernetes API) → snapshot → data
 * planes on a Unix socket.
 *
 * Does: CLI, the libev loop (inotify watcher in file mode, debounce timer, signal watchers),
 * the reload cycle (cache → build → encode → compare → publish, counted in health), the
 * optional --admin / --health endpoints, --dump and --frame-out one-shots. Cluster mode
 * (--kubeconfig, or in-cluster by default when KUBERNETES_SERVICE_HOST is set) takes its
 * cache from kube_source; file mode (--manifests) loads the folder on every reload. Both feed
 * the same snapshot builder. In cluster mode every replica also runs leader election
 * (leader) and hands each build's served Ingresses and rejections to status and events,
 * which write only while this replica leads; SIGTERM releases the lease before the exit.
 * Does not: parse, validate or route (filesource, kube_*, snapbuild), speak the socket
 * protocol (publisher) or HTTP (health, adminsrv, kube_client).
 * Invariants: a failed reload keeps the last published snapshot (build the new one completely,
 * then swap); the generation grows by exactly one per published snapshot and an identical
 * payload is never republished; a change is published at most ~150 ms after its first event
 * (100 ms quiet period, capped) so bursts of writes and of watch events coalesce; in cluster
 * mode nothing is published before every kind's first list completed.
 */
#include <ev.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certcheck.h"
#include "containerof.h"
#include "events.h"
#include "filesource.h"
#include "gwstatus.h"
#include "health.h"
#include "inject.h"
#include "kube_decode.h"
#include "kube_config.h"
#include "kube_source.h"
#include "leader.h"
#include "log.h"
#include "meshca.h"
#include "meshfeed.h"
#include "meshid.h"
#include "meshinit.h"
#include "meshsrv.h"
#include "meshwebhook.h"
#include "model.h"
#include "netaddr.h"
#include "publisher.h"
#include "readfile.h"
#include "snapbuild.h"
#include "snapwire.h"
#include "status.h"
#include "units.h"

#define CTL_MAGIC 0x43544c31u
#define CTL_DEBOUNCE 0.100     /* quiet period after the last event */
#define CTL_DEBOUNCE_MAX 0.150 /* but never later than this after the first one */
#define CTL_RETRY 1.0          /* retry a folder that could not be read */

struct ctl {
    unsigned magic;
    struct ev_loop *loop;
    const char *dir;        /* file mode */
    struct kube_source *ks; /* cluster mode */
    const char *ingress_class;
    const char *default_cert; /* --default-ssl-certificate NS/NAME, NULL without */
    char source[PATH_MAX + 8];
    int inotify_fd;
    ev_io inotify_io;
    ev_timer debounce;
    ev_signal sigterm, sigint;
    int pending;
    ev_tstamp first_event;
    struct publisher *pub;
    struct health *health; /* --admin endpoints, NULL without --admin */
    uint8_t *last;         /* last published frame */
    size_t last_len;
    uint64_t generation;
    /* cluster mode */
    struct leader *leader;
    struct status *status; /* NULL without --publish-service / --publish-status-address */
    struct gwstatus_writer *gw_status;    /* Gateway conditions, always in cluster mode */
    struct gwstatus_writer *authz_status; /* AuthorizationPolicy conditions, with --mesh */
    struct events *events;
    int stopping;                /* SIGTERM seen: releasing the lease */
    struct meshid *mesh;         /* --mesh: the identity endpoint, NULL without */
    struct meshfeed *feed;       /* --mesh: the sidecars' discovery feed on its server */
    struct meshwebhook *webhook; /* --mesh-webhook-config: the injector's caBundle */
    /* --mesh: the mesh directory in every snapshot (meshbuild.h) */
    int mesh_dir;
    const char *trust_domain, *cluster_domain;
    int authz_default_deny; /* --mesh-default-policy deny */
};

static void usage(FILE *f)
{
    fprintf(
        f, "usage: strait-controller --manifests DIR --socket PATH [--ingress-class NAME]\n"
           "                         [--health ADDR:PORT] [--dump] [--frame-out FILE]\n"
           "                         [--default-ssl-certificate NS/NAME]\n"
           "                         [--log-level debug|info|warn|error]\n"
           "       strait-controller [--kubeconfig PATH] --socket PATH [--watch-namespace NS]\n"
           "                         [--ingress-class NAME] [--health ADDR:PORT]\n"
           "                         [--default-ssl-certificate NS/NAME]\n"
           "                         [--publish-service NS/NAME]\n"
           "                         [--publish-status-address ADDR[,ADDR]]\n"
           "                         [--election-namespace NS] [--election-id NAME]\n"
           "                         [--election-identity ID] [--election-lease-duration S]\n"
           "                         [--election-renew-deadline S] [--election-retry-period S]\n"
           "                         [--log-level debug|info|warn|error]\n"
           "  mesh identities (either mode): --mesh [--trust-domain TD] [--mesh-listen ADDR:PORT]\n"
           "                         [--mesh-leaf-ttl DURATION] [--mesh-root-file CERT,KEY |\n"
           "                         --mesh-root-dir DIR | --mesh-root-secret NS/NAME]\n"
           "                         [--mesh-root-resync S]\n"
           "                         [--mesh-trust-bundle-out FILE] [--mesh-token-file FILE]\n"
           "                         [--mesh-server-names NAME,NAME] [--cluster-domain DOMAIN]\n"
           "                         [--mesh-default-policy allow|deny]\n"
           "                         [--mesh-proxy-image IMAGE] [--mesh-identity-addr HOST:PORT]\n"
           "                         [--mesh-webhook-config NAME [--mesh-webhook-resync S]]\n"
           "       strait-controller mesh-init ...   the mesh sidecar's interception\n"
           "                         (init container; strait-controller mesh-init --help)\n"
           "       strait-controller snapshot-dump FILE   a snapshot frame (--frame-out, the\n"
           "                         discovery feed's answers) as the --dump JSON\n"
           "       strait-controller inject -f FILE ...   adds the mesh sidecar to manifests\n"
           "                         (strait-controller inject --help)\n"
           "  Without --manifests or --kubeconfig the in-cluster service account is used\n"
           "  (KUBERNETES_SERVICE_HOST). --admin is another name for --health.\n");
}

/* What a build accepted and rejected, for health's gauges. */
struct ctl_counts {
    unsigned objects[MODEL_KIND_COUNT]; /* Ingress: of our class and routed */
    unsigned rejected;                  /* object_rejected while loading and building */
};

/*
 * Builds and encodes the snapshot of cache (sealed) stamped with generation. Returns 0 with
 * *frame and *len set (malloc'd), or -1 with err filled. *snap_out, when given, receives the
 * built snapshot (free with snapbuild_free); *counts, when given, what the build accepted and
 * rejected, on top of the rejected objects the source already counted (pre_rejected); *pods,
 * when given, the discovery feed's pod table (meshpods.h; NULL when out of memory: logged).
 */
static int ctl_build_cache(const struct model_cache *cache, unsigned pre_rejected,
                           const struct snapbuild_opts *bo, uint64_t generation, uint8_t **frame,
                           size_t *len, struct snapbuild_result *snap_out,
                           struct ctl_counts *counts, struct meshpods **pods, char *err,
                           size_t errlen)
{
    struct snapbuild_result r;
    ev_tstamp t0 = ev_time();
    char perr[128];
    int k;

    if (snapbuild_build_opts(cache, bo, &r, err, errlen)) return -1;
    r.snap.generation = generation;
    if (snapwire_encode(&r.snap, generation, frame, len, err, errlen)) {
        snapbuild_free(&r);
        return -1;
    }
    if (pods && !(*pods = meshpods_build(cache, bo->trust_domain, perr, sizeof(perr))))
        log_error("mesh_pods_failed", "reason=\"%s\"", perr);
    health_observe_build(ev_time() - t0, *len);
    if (counts) {
        for (k = 0; k < MODEL_KIND_COUNT; k++)
            counts->objects[k] = (unsigned)cache->kinds[k].n;
        counts->objects[MODEL_KIND_INGRESS] = r.n_ingresses;
        counts->objects[MODEL_KIND_GATEWAY] = r.n_gateways_served;
        counts->rejected = pre_rejected + r.n_rejected + r.n_gateways_rejected;
    }
    if (snap_out)
        *snap_out = r;
    else
        snapbuild_free(&r);
    return 0;
}

/*
 * File mode's Gateway status: there is no API server to write it to, so each build logs one
 * gateway_status line per Gateway whose status differs from the previous build's (all of them
 * after the first build). ctl_gw_last keeps "ns/name\tdigest" of the previous build, sorted.
 */
static struct {
    char **v;
    size_t n;
} ctl_gw_last;

/* The first condition of g that is not as it should be (listeners after the Gateway's). */
static const struct snapbuild_condition *ctl_gw_problem(const struct snapbuild_gateway *g)
{
    size_t i, k;

    for (k = 0; k < SNAPBUILD_GW_CONDS; k++)
        if (g->conds[k].status && strcmp(g->conds[k].status, "True")) return &g->conds[k];
    for (i = 0; i < g->n_listeners; i++)
        for (k = 0; k < SNAPBUILD_GW_LISTENER_CONDS; k++) {
            const struct snapbuild_condition *c = &g->listeners[i].conds[k];
            int want = strcmp(c->type ? c->type : "", "Conflicted") != 0;
            if (c->status && (strcmp(c->status, "True") == 0) != want) return c;
        }
    return NULL;
}

static const char *ctl_gw_status_of(const struct snapbuild_gateway *g, size_t k)
{
    return g->conds[k].status ? g->conds[k].status : "Unknown";
}

/* Every field of g's status as one string (malloc'd), to see changes. */
static char *ctl_gw_digest(const struct snapbuild_gateway *g)
{
    char *buf = NULL;
    size_t len = 0, i, k;
    FILE *f = open_memstream(&buf, &len);

    if (!f) return NULL;
    fprintf(f, "%s/%s\t%lld", g->ns, g->name, (long long)g->generation);
    for (k = 0; k < SNAPBUILD_GW_CONDS; k++)
        fprintf(f, "\t%s|%s|%s", ctl_gw_status_of(g, k),
                g->conds[k].reason ? g->conds[k].reason : "",
                g->conds[k].message ? g->conds[k].message : "");
    for (i = 0; i < g->n_listeners; i++) {
        fprintf(f, "\t%s:%u", g->listeners[i].name, g->listeners[i].attached_routes);
        for (k = 0; k < SNAPBUILD_GW_LISTENER_CONDS; k++) {
            const struct snapbuild_condition *c = &g->listeners[i].conds[k];
            fprintf(f, "|%s|%s|%s", c->status ? c->status : "", c->reason ? c->reason : "",
                    c->message ? c->message : "");
        }
    }
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int ctl_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ctl_log_gateways(const struct snapbuild_result *r)
{
    char **now = r->n_gateways ? calloc(r->n_gateways, sizeof(*now)) : NULL;
    char id[300], q[1800];
    size_t i;

    if (r->n_gateways && !now) {
        log_error("gateway_status_failed", "reason=\"out of memory\"");
        return;
    }
    for (i = 0; i < r->n_gateways; i++) {
        const struct snapbuild_gateway *g = &r->gateways[i];
        const struct snapbuild_condition *p;
        size_t k;
        int conflicted = 0;
        if (!(now[i] = ctl_gw_digest(g))) {
            log_error("gateway_status_failed", "reason=\"out of memory\"");
            continue;
        }
        if (ctl_gw_last.n &&
            bsearch(&now[i], ctl_gw_last.v, ctl_gw_last.n, sizeof(char *), ctl_cmp_str))
            continue;
        for (k = 0; k < g->n_listeners; k++)
            if (g->listeners[k].conds[3].status && !strcmp(g->listeners[k].conds[3].status, "True"))
                conflicted = 1;
        p = ctl_gw_problem(g);
        snprintf(id, sizeof(id), "%s/%s", g->ns, g->name);
        log_info("gateway_status",
                 "object=%s accepted=%s programmed=%s resolved_refs=%s conflicted=%s reason=%s "
                 "message=%s",
                 id, ctl_gw_status_of(g, 0), ctl_gw_status_of(g, 1), ctl_gw_status_of(g, 2),
                 conflicted ? "True" : "False", p ? p->reason : "Accepted",
                 log_quote(q, sizeof(q), p ? p->message : "Accepted"));
    }
    for (i = 0; i < ctl_gw_last.n; i++)
        free(ctl_gw_last.v[i]);
    free(ctl_gw_last.v);
    ctl_gw_last.v = now;
    ctl_gw_last.n = r->n_gateways;
    /* a NULL digest (out of memory) sorts first and is logged again next time */
    for (i = 0; i < ctl_gw_last.n; i++)
        if (!now[i] && !(now[i] = strdup(""))) ctl_gw_last.n = i;
    if (ctl_gw_last.n > 1) qsort(ctl_gw_last.v, ctl_gw_last.n, sizeof(char *), ctl_cmp_str);
}

/* File mode: loads dir, then as ctl_build_cache. */
static int ctl_build_frame(const char *dir, int watch_fd, const struct snapbuild_opts *bo,
                           uint64_t generation, uint8_t **frame, size_t *len,
                           struct snapbuild_result *snap_out, struct ctl_counts *counts,
                           struct meshpods **pods, char *err, size_t errlen)
{
    struct model_cache cache;
    int rc;

    if (filesource_load(dir, watch_fd, &cache, err, errlen)) return -1;
    rc = ctl_build_cache(&cache, cache.n_rejected, bo, generation, frame, len, snap_out, counts,
                         pods, err, errlen);
    model_cache_free(&cache);
    return rc;
}

/* Ingresses the reflectors refused to decode, collected for events_report. */
struct ctl_decode_rejects {
    struct events_item *it;
    size_t n, cap;
    char **ids; /* "ns" and "name" copies, freed with the list */
    int oom;
};

static void ctl_collect_decode_reject(void *arg, enum model_kind kind, const char *id,
                                      const char *uid, const char *reason)
{
    struct ctl_decode_rejects *d = arg;
    const char *slash = strchr(id, '/');
    char *ns, *name;

    if (kind != MODEL_KIND_INGRESS || !slash || d->oom) return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct events_item *it = realloc(d->it, cap * sizeof(*it));
        char **ids = it ? realloc(d->ids, 2 * cap * sizeof(*ids)) : NULL;
        if (it) d->it = it;
        if (!ids) {
            d->oom = 1;
            return;
        }
        d->ids = ids;
        d->cap = cap;
    }
    ns = strndup(id, (size_t)(slash - id));
    name = strdup(slash + 1);
    d->ids[2 * d->n] = ns;
    d->ids[2 * d->n + 1] = name;
    if (!ns || !name) {
        free(ns);
        free(name);
        d->oom = 1;
        return;
    }
    memset(&d->it[d->n], 0, sizeof(d->it[d->n]));
    d->it[d->n].kind = "Ingress";
    d->it[d->n].ns = ns;
    d->it[d->n].name = name;
    d->it[d->n].uid = uid; /* like reason: lives in the reflector until its next change */
    d->it[d->n].reason = events_reason_for_decode(reason);
    d->it[d->n].message = reason; /* lives in the reflector until its next change */
    d->n++;
}

/*
 * --mesh: the AuthorizationPolicies' conditions to their status writer (as Gateways without
 * listeners) and the invalid ones to it (events items, appended at it[*n]). 0 or -1 (OOM).
 */
static int ctl_feed_authz(struct ctl *c, const struct snapbuild_result *r, struct events_item *it,
                          size_t *n)
{
    struct snapbuild_gateway *g;
    size_t i, k;
    int rc;

    if (!(g = calloc(r->n_authz_policies + 1, sizeof(*g)))) return -1;
    for (i = 0; i < r->n_authz_policies; i++) {
        const struct authzbuild_policy *p = &r->authz_policies[i];
        g[i].ns = p->ns;
        g[i].name = p->name;
        g[i].uid = p->uid;
        g[i].resource_version = p->resource_version;
        g[i].generation = p->generation;
        for (k = 0; k < AUTHZBUILD_CONDS; k++) {
            g[i].conds[k].type = p->conds[k].type;
            g[i].conds[k].status = p->conds[k].status;
            g[i].conds[k].reason = p->conds[k].reason;
            g[i].conds[k].message = p->conds[k].message;
        }
        if (p->served) continue;
        memset(&it[*n], 0, sizeof(it[*n]));
        it[*n].kind = "AuthorizationPolicy";
        it[*n].ns = p->ns;
        it[*n].name = p->name;
        it[*n].uid = p->uid;
        it[*n].resource_version = p->resource_version;
        it[*n].reason = "Invalid";
        it[*n].message = p->conds[0].message;
        (*n)++;
    }
    rc = gwstatus_writer_sync(c->authz_status, g, r->n_authz_policies);
    free(g);
    return rc;
}

/*
 * Cluster mode, after each good build: the Ingresses served go to status; the rejections -
 * the builder's and the Ingresses the decoder refused (bad paths and the like, which never
 * reach the builder) - to events (both write only while this replica leads).
 */
static void ctl_feed_cluster(struct ctl *c, const struct snapbuild_result *r)
{
    struct status_target *t = NULL;
    struct events_item *it = NULL;
    struct ctl_decode_rejects dr = {0};
    size_t i, n;

    if (c->status) {
        if (r->n_accepted && !(t = calloc(r->n_accepted, sizeof(*t)))) goto oom;
        for (i = 0; i < r->n_accepted; i++) {
            t[i].ns = r->accepted[i].ns;
            t[i].name = r->accepted[i].name;
        }
        if (status_sync(c->status, t, r->n_accepted)) goto oom;
        status_service_changed(c->status); /* the publish Service may be what changed */
    }
    if (c->gw_status && gwstatus_writer_sync(c->gw_status, r->gateways, r->n_gateways)) goto oom;
    kube_source_each_rejected(c->ks, ctl_collect_decode_reject, &dr);
    if (dr.oom) goto oom;
    n = r->n_rejections + dr.n;
    if (!(it = calloc(n + r->n_authz_policies + 1, sizeof(*it)))) goto oom;
    for (i = 0; i < r->n_rejections; i++) {
        it[i].kind = r->rejections[i].kind;
        it[i].ns = r->rejections[i].ns;
        it[i].name = r->rejections[i].name;
        it[i].uid = r->rejections[i].uid;
        it[i].resource_version = r->rejections[i].resource_version;
        it[i].reason = r->rejections[i].reason;
        it[i].message = r->rejections[i].message;
    }
    for (i = 0; i < dr.n; i++)
        it[r->n_rejections + i] = dr.it[i];
    if (c->authz_status && ctl_feed_authz(c, r, it, &n)) goto oom;
    if (events_report(c->events, it, n)) goto oom;
    goto out;
oom:
    log_error("cluster_feed_failed", "reason=\"out of memory\"");
out:
    for (i = 0; i < 2 * dr.n; i++)
        free(dr.ids[i]);
    free(dr.ids);
    free(dr.it);
    free(t);
    free(it);
}

static void ctl_reload(struct ctl *c)
{
    struct snapbuild_opts bo = {
        c->ingress_class, c->source,       c->default_cert,   0,
        c->mesh_dir,      c->trust_domain, c->cluster_domain, c->authz_default_deny};
    struct ctl_counts counts;
    struct snapbuild_result r;
    struct meshpods *pods = NULL, **want_pods = c->feed ? &pods : NULL;
    char err[512], q[600];
    uint8_t *frame;
    size_t len;

    int rc;

    if (c->ks) {
        if (!kube_source_synced(c->ks)) {
            log_debug("snapshot_deferred", "reason=\"waiting for the first list of every kind\"");
            return;
        }
        rc = ctl_build_cache(kube_source_cache(c->ks), kube_source_rejected(c->ks), &bo,
                             c->generation + 1, &frame, &len, &r, &counts, want_pods, err,
                             sizeof(err));
        if (!rc) {
            ctl_feed_cluster(c, &r);
            snapbuild_free(&r);
        }
    } else {
        rc = ctl_build_frame(c->dir, c->inotify_fd, &bo, c->generation + 1, &frame, &len, &r,
                             &counts, want_pods, err, sizeof(err));
        if (!rc) {
            ctl_log_gateways(&r);
            snapbuild_free(&r);
        }
    }
    if (rc) {
        health_count_reload(0);
        log_error("reload_failed", "reason=%s", log_quote(q, sizeof(q), err));
        /* the folder may come back without an event we can see (it was our watch root); a
         * cluster-mode build fails only for lack of memory, also worth another try */
        ev_timer_stop(c->loop, &c->debounce);
        ev_timer_set(&c->debounce, CTL_RETRY, 0.);
        ev_timer_start(c->loop, &c->debounce);
        return;
    }
    /* an unchanged snapshot may still hide a new broken object: count every good build */
    health_set_objects(counts.objects, counts.rejected);
    if (c->last && snapwire_same_payload(c->last, c->last_len, frame, len)) {
        health_count_reload(1);
        log_debug("snapshot_unchanged", "generation=%llu", (unsigned long long)c->generation);
        free(frame);
        /* the Pods may have changed all the same (a new pod behind no Service yet) */
        meshfeed_publish(c->feed, NULL, 0, pods);
        return;
    }
    if (publisher_publish(c->pub, frame, len, c->generation + 1)) {
        health_count_reload(0);
        log_error("publish_failed", "reason=\"out of memory\"");
        free(frame);
        meshfeed_publish(c->feed, NULL, 0, pods);
        return;
    }
    c->generation++;
    health_count_reload(1);
    health_count_published(c->generation);
    free(c->last);
    c->last = frame;
    c->last_len = len;
    meshfeed_publish(c->feed, frame, len, pods);
    log_info("snapshot_published", "generation=%llu bytes=%zu clients=%u",
             (unsigned long long)c->generation, len, publisher_clients(c->pub));
}

static void ctl_on_debounce(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ctl *c = container_of(w, struct ctl, debounce);

    (void)loop;
    (void)revents;
    if (c->magic != CTL_MAGIC) abort();
    c->pending = 0;
    ctl_reload(c);
}

/* Something changed: publish after the quiet period, but no later than the cap. */
static void ctl_arm_debounce(struct ctl *c)
{
    ev_tstamp now = ev_now(c->loop), due;

    if (!c->pending) {
        c->pending = 1;
        c->first_event = now;
    }
    due = now + CTL_DEBOUNCE;
    if (due > c->first_event + CTL_DEBOUNCE_MAX) due = c->first_event + CTL_DEBOUNCE_MAX;
    ev_timer_stop(c->loop, &c->debounce);
    ev_timer_set(&c->debounce, due > now ? due - now : 0., 0.);
    ev_timer_start(c->loop, &c->debounce);
}

static void ctl_on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl *c = container_of(w, struct ctl, inotify_io);
    int n;

    (void)loop;
    (void)revents;
    if (c->magic != CTL_MAGIC) abort();
    n = filesource_watch_drain(c->inotify_fd);
    if (n < 0) log_warn("watch_read_failed", "reason=\"read error\"");
    if (n <= 0) return;
    ctl_arm_debounce(c);
}

static void ctl_on_kube_change(void *arg)
{
    struct ctl *c = arg;

    if (c->magic != CTL_MAGIC) abort();
    ctl_arm_debounce(c);
}

static void ctl_on_released(void *arg)
{
    struct ctl *c = arg;

    if (c->magic != CTL_MAGIC) abort();
    ev_break(c->loop, EVBREAK_ALL);
}

static void ctl_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct ctl *c = w->signum == SIGINT ? container_of(w, struct ctl, sigint)
                                        : container_of(w, struct ctl, sigterm);

    (void)revents;
    if (c->magic != CTL_MAGIC) abort();
    log_info("shutdown", "signal=%d", w->signum);
    /* the leader gives the lease up first, so another replica takes over at once; a second
     * signal does not wait for that */
    if (c->leader && !c->stopping) {
        c->stopping = 1;
        leader_release(c->leader, ctl_on_released, c);
        return;
    }
    ev_break(loop, EVBREAK_ALL);
}

static void ctl_on_started_leading(void *arg)
{
    struct ctl *c = arg;

    if (c->magic != CTL_MAGIC) abort();
    if (c->status) status_set_leader(c->status, 1);
    if (c->gw_status) gwstatus_writer_set_leader(c->gw_status, 1);
    if (c->authz_status) gwstatus_writer_set_leader(c->authz_status, 1);
    events_set_leader(c->events, 1);
    meshid_set_leader(c->mesh, 1);
    meshwebhook_set_leader(c->webhook, 1);
}

static void ctl_on_stopped_leading(void *arg)
{
    struct ctl *c = arg;

    if (c->magic != CTL_MAGIC) abort();
    if (c->status) status_set_leader(c->status, 0);
    if (c->gw_status) gwstatus_writer_set_leader(c->gw_status, 0);
    if (c->authz_status) gwstatus_writer_set_leader(c->authz_status, 0);
    events_set_leader(c->events, 0);
    meshid_set_leader(c->mesh, 0);
    meshwebhook_set_leader(c->webhook, 0);
}

/* A positive number of seconds for --election-*; returns 0, or -1. */
static int ctl_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end || !(v > 0) || v > 86400.) return -1;
    *out = v;
    return 0;
}

/* What cluster mode runs besides the reflectors. Returns 0, or -1 (logged). */
static int ctl_start_cluster(struct ctl *c, const struct leader_opts *lo,
                             const struct status_opts *so)
{
    static const struct leader_callbacks cb = {ctl_on_started_leading, ctl_on_stopped_leading,
                                               NULL};
    struct kube_client *client = kube_source_client(c->ks);
    struct events_opts eo;
    char err[512], q[600], host[256];
    const char *env;

    if (gethostname(host, sizeof(host))) host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    memset(&eo, 0, sizeof(eo));
    eo.instance = lo->identity;
    eo.host = host;
    /* tests shorten the repeat interval to see a persisting rejection's count go up */
    if ((env = getenv("STRAIT_EVENTS_REPEAT")) && atof(env) > 0) eo.repeat = atof(env);
    if (!(c->events = events_new(c->loop, client, &eo, err, sizeof(err)))) goto fail;
    if ((so->publish_service || so->publish_addresses) &&
        !(c->status = status_new(c->loop, client, so, err, sizeof(err))))
        goto fail;
    if (!(c->gw_status = gwstatus_writer_new(c->loop, client, 0, 0)) ||
        (c->mesh_dir && !(c->authz_status = gwstatus_writer_new_authz(c->loop, client, 0, 0)))) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (!(c->leader = leader_new(c->loop, client, lo, &cb, c, err, sizeof(err)))) goto fail;
    leader_start(c->leader);
    return 0;
fail:
    log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
    return -1;
}

static int ctl_one_shot(const char *dir, const struct snapbuild_opts *bo, int dump,
                        const char *frame_out)
{
    struct snapbuild_result r;
    char err[512], q[600];
    uint8_t *frame = NULL;
    size_t len = 0;
    char *json;
    FILE *f;
    int rc = 1;

    if (ctl_build_frame(dir, -1, bo, 1, &frame, &len, &r, NULL, NULL, err, sizeof(err))) {
        log_error("load_failed", "reason=%s", log_quote(q, sizeof(q), err));
        return 1;
    }
    ctl_log_gateways(&r);
    if (frame_out) {
        if (!(f = fopen(frame_out, "wb"))) {
            log_error("write_failed", "file=%s reason=\"cannot open\"", frame_out);
            goto out;
        }
        if (fwrite(frame, 1, len, f) != len) {
            fclose(f);
            log_error("write_failed", "file=%s reason=\"short write\"", frame_out);
            goto out;
        }
        if (fclose(f)) {
            log_error("write_failed", "file=%s reason=\"close failed\"", frame_out);
            goto out;
        }
    }
    if (dump) {
        if (!(json = snapwire_to_json(&r.snap))) {
            log_error("dump_failed", "reason=\"out of memory\"");
            goto out;
        }
        fputs(json, stdout);
        if (*json && json[strlen(json) - 1] != '\n') fputc('\n', stdout);
        free(json);
        fflush(stdout);
    }
    rc = 0;
out:
    snapbuild_free(&r);
    free(frame);
    return rc;
}

/* Cluster mode's settings: kubeconfig or in-cluster. Returns 0, or -1 (logged). */
static int ctl_kube_config(const char *kubeconfig, struct kube_config *cfg)
{
    char err[600], q[700];
    const char *auth;

    if (kubeconfig ? kube_config_load(kubeconfig, NULL, cfg, err, sizeof(err))
                   : kube_config_in_cluster(cfg, err, sizeof(err))) {
        log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
        return -1;
    }
    if (cfg->token_file)
        auth = "token-file";
    else if (cfg->token)
        auth = "token";
    else
        auth = "none";
    log_info("kube_config", "source=%s context=%s server=%s token=%s client_cert=%s tls=%s",
             kubeconfig ? kubeconfig : "in-cluster", model_log_value(q, sizeof(q), cfg->context),
             cfg->server, auth, cfg->cert_file || cfg->cert_data ? "yes" : "no",
             cfg->insecure                  ? "insecure-skip-verify"
             : cfg->ca_file || cfg->ca_data ? "ca"
                                            : "system-roots");
    return 0;
}

/*
 * The mesh HTTPS server's other routes: the admission webhook (POST /inject: with --mesh it
 * is always there; the MutatingWebhookConfiguration decides whether the API server calls it)
 * and the sidecars' discovery feed (POST /v1/discovery).
 */
static int ctl_mesh_routes(struct ctl *c, struct inject_webhook *w, char *err, size_t errlen)
{
    w->mesh = c->mesh;
    if (meshsrv_route(meshid_server(c->mesh), "POST", "/inject", inject_webhook_handler, w)) {
        snprintf(err, errlen, "cannot route POST /inject: out of memory");
        return -1;
    }
    c->feed = meshfeed_start(c->loop, meshid_server(c->mesh), c->trust_domain, err, errlen);
    return c->feed ? 0 : -1;
}

/* strait-controller snapshot-dump FILE: decodes a frame file, prints its JSON dump. */
static int ctl_snapshot_dump(int argc, char **argv)
{
    struct snapwire_snapshot s;
    char err[300], *buf, *json;
    size_t len;

    if (argc != 2) {
        fprintf(stderr, "usage: strait-controller snapshot-dump FILE\n");
        return 2;
    }
    if (!(buf = readfile_len(argv[1], SNAPWIRE_MAX_FRAME, &len, err, sizeof(err))) ||
        snapwire_decode(buf, len, &s, err, sizeof(err))) {
        fprintf(stderr, "strait-controller: snapshot-dump: %s\n", err);
        free(buf);
        return 1;
    }
    free(buf);
    if (!(json = snapwire_to_json(&s))) {
        fprintf(stderr, "strait-controller: snapshot-dump: out of memory\n");
        snapwire_free(&s);
        return 1;
    }
    fputs(json, stdout);
    if (*json && json[strlen(json) - 1] != '\n') fputc('\n', stdout);
    free(json);
    snapwire_free(&s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "mesh-init") == 0) return meshinit_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "inject") == 0) return inject_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "snapshot-dump") == 0)
        return ctl_snapshot_dump(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"manifests", required_argument, NULL, 'm'},
        {"kubeconfig", required_argument, NULL, 'k'},
        {"watch-namespace", required_argument, NULL, 'n'},
        {"socket", required_argument, NULL, 's'},
        {"ingress-class", required_argument, NULL, 'c'},
        {"dump", no_argument, NULL, 'd'},
        {"frame-out", required_argument, NULL, 'f'},
        {"admin", required_argument, NULL, 'a'},
        {"health", required_argument, NULL, 'a'},
        {"log-level", required_argument, NULL, 'l'},
        {"publish-service", required_argument, NULL, 'P'},
        {"publish-status-address", required_argument, NULL, 'A'},
        {"election-namespace", required_argument, NULL, 'N'},
        {"election-id", required_argument, NULL, 'I'},
        {"election-identity", required_argument, NULL, 'i'},
        {"election-lease-duration", required_argument, NULL, 'L'},
        {"election-renew-deadline", required_argument, NULL, 'R'},
        {"election-retry-period", required_argument, NULL, 'T'},
        {"default-ssl-certificate", required_argument, NULL, 'C'},
        {"mesh", no_argument, NULL, 0x100},
        {"trust-domain", required_argument, NULL, 0x101},
        {"mesh-listen", required_argument, NULL, 0x102},
        {"mesh-leaf-ttl", required_argument, NULL, 0x103},
        {"mesh-root-file", required_argument, NULL, 0x104},
        {"mesh-root-dir", required_argument, NULL, 0x105},
        {"mesh-root-secret", required_argument, NULL, 0x106},
        {"mesh-trust-bundle-out", required_argument, NULL, 0x107},
        {"mesh-token-file", required_argument, NULL, 0x108},
        {"mesh-server-names", required_argument, NULL, 0x109},
        {"cluster-domain", required_argument, NULL, 0x10a},
        {"mesh-default-policy", required_argument, NULL, 0x10b},
        {"mesh-proxy-image", required_argument, NULL, 0x10c},
        {"mesh-identity-addr", required_argument, NULL, 0x10d},
        {"mesh-webhook-config", required_argument, NULL, 0x10e},
        {"mesh-webhook-resync", required_argument, NULL, 0x10f},
        {"mesh-root-resync", required_argument, NULL, 0x110},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *sock = NULL, *cls = "strait", *frame_out = NULL, *admin = NULL;
    const char *kubeconfig = NULL, *watch_ns = NULL, *env, *default_cert = NULL, *slash;
    const char *td, *cluster_domain = "cluster.local", *webhook_config = NULL;
    double webhook_resync = 0;
    struct kube_source_opts ko;
    struct kube_config kcfg;
    struct leader_opts lo;
    struct status_opts so;
    char election_ns[256], identity[320];
    int cluster_only = 0;
    struct sockaddr_storage ass;
    socklen_t asl = 0;
    enum log_level level = LOG_LEVEL_INFO;
    char err[512], q[600];
    struct ctl c;
    int opt, dump = 0, rc = 1, cluster, mesh = 0, mesh_flags = 0, authz_deny = 0;
    struct meshid_opts mo;
    struct inject_webhook webhook = {{NULL, NULL, NULL}, NULL};
    char mesh_cert[4096], mesh_ns[256];
    uint64_t ms;

    memset(&lo, 0, sizeof(lo));
    memset(&so, 0, sizeof(so));
    memset(&mo, 0, sizeof(mo));
    lo.name = LEADER_DEFAULT_ID;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt > 0x100) mesh_flags = 1;
        switch (opt) {
        case 0x100:
            mesh = 1;
            break;
        case 0x101:
            mo.trust_domain = optarg;
            break;
        case 0x102:
            mo.listen = optarg;
            break;
        case 0x103:
            if (units_parse_duration(optarg, &ms) < 0 || ms % 1000 || ms / 1000 < MESHCA_TTL_MIN ||
                ms / 1000 > MESHCA_TTL_MAX) {
                fprintf(stderr,
                        "strait-controller: --mesh-leaf-ttl %s: want whole seconds from %ds to "
                        "%dd (e.g. 24h, 20s)\n",
                        optarg, MESHCA_TTL_MIN, MESHCA_TTL_MAX / 86400);
                return 2;
            }
            mo.leaf_ttl = (unsigned)(ms / 1000);
            break;
        case 0x104:
            slash = strchr(optarg, ',');
            if (!slash || slash == optarg || !slash[1] ||
                (size_t)(slash - optarg) >= sizeof(mesh_cert)) {
                fprintf(stderr, "strait-controller: --mesh-root-file %s is not CERT,KEY\n", optarg);
                return 2;
            }
            snprintf(mesh_cert, sizeof(mesh_cert), "%.*s", (int)(slash - optarg), optarg);
            mo.root_cert = mesh_cert;
            mo.root_key = slash + 1;
            break;
        case 0x105:
            mo.root_dir = optarg;
            break;
        case 0x106:
            mo.root_secret = optarg;
            break;
        case 0x107:
            mo.bundle_out = optarg;
            break;
        case 0x108:
            mo.token_file = optarg;
            break;
        case 0x109:
            mo.server_names = optarg;
            break;
        case 0x10a:
            cluster_domain = optarg;
            break;
        case 0x10c:
            webhook.opts.proxy_image = optarg;
            break;
        case 0x10d:
            webhook.opts.identity_addr = optarg;
            break;
        case 0x10e:
            if (!kube_decode_dns_name(optarg)) {
                fprintf(stderr,
                        "strait-controller: --mesh-webhook-config %s: want the name of a "
                        "MutatingWebhookConfiguration (a lower-case DNS name)\n",
                        optarg);
                return 2;
            }
            webhook_config = optarg;
            break;
        case 0x10f:
            if (ctl_seconds(optarg, &webhook_resync)) {
                fprintf(stderr,
                        "strait-controller: --mesh-webhook-resync %s: want positive seconds\n",
                        optarg);
                return 2;
            }
            break;
        case 0x110:
            if (ctl_seconds(optarg, &mo.root_resync)) {
                fprintf(stderr, "strait-controller: --mesh-root-resync %s: want positive seconds\n",
                        optarg);
                return 2;
            }
            break;
        case 0x10b:
            if (strcmp(optarg, "allow") && strcmp(optarg, "deny")) {
                fprintf(stderr, "strait-controller: --mesh-default-policy %s: want allow or deny\n",
                        optarg);
                return 2;
            }
            authz_deny = !strcmp(optarg, "deny");
            break;
        case 'P':
            so.publish_service = optarg;
            cluster_only = 1;
            break;
        case 'A':
            so.publish_addresses = optarg;
            cluster_only = 1;
            break;
        case 'N':
            lo.ns = optarg;
            cluster_only = 1;
            break;
        case 'I':
            lo.name = optarg;
            cluster_only = 1;
            break;
        case 'i':
            lo.identity = optarg;
            cluster_only = 1;
            break;
        case 'L':
        case 'R':
        case 'T':
            if (ctl_seconds(optarg, opt == 'L'   ? &lo.lease_duration
                                    : opt == 'R' ? &lo.renew_deadline
                                                 : &lo.retry_period)) {
                fprintf(stderr, "strait-controller: bad duration %s (positive seconds)\n", optarg);
                return 2;
            }
            cluster_only = 1;
            break;
        case 'C':
            /* NS/NAME of a kubernetes.io/tls Secret: exactly one '/', a name on each side */
            slash = strchr(optarg, '/');
            if (!slash || slash == optarg || !slash[1] || strchr(slash + 1, '/')) {
                fprintf(stderr,
                        "strait-controller: --default-ssl-certificate %s is not NAMESPACE/NAME\n",
                        optarg);
                return 2;
            }
            default_cert = optarg;
            break;
        case 'm':
            dir = optarg;
            break;
        case 'k':
            kubeconfig = optarg;
            break;
        case 'n':
            watch_ns = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'c':
            cls = optarg;
            break;
        case 'd':
            dump = 1;
            break;
        case 'f':
            frame_out = optarg;
            break;
        case 'a':
            admin = optarg;
            break;
        case 'l':
            if (log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "strait-controller: unknown log level %s\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    cluster = !dir && (kubeconfig || kube_config_in_cluster_available());
    if (optind != argc || !*cls || (dir && kubeconfig) || (!dir && !cluster) ||
        (!sock && !dump && !frame_out) || (cluster && (dump || frame_out || !sock)) ||
        ((watch_ns || cluster_only) && !cluster) || (so.publish_service && so.publish_addresses)) {
        if (!dir && !kubeconfig && !cluster)
            fprintf(stderr, "strait-controller: give --manifests DIR or --kubeconfig PATH (or run "
                            "in a pod: KUBERNETES_SERVICE_HOST is not set)\n");
        else if (cluster && (dump || frame_out))
            fprintf(stderr, "strait-controller: --dump and --frame-out need --manifests\n");
        else if (so.publish_service && so.publish_addresses)
            fprintf(stderr, "strait-controller: give --publish-service or "
                            "--publish-status-address, not both\n");
        else if (cluster_only && !cluster)
            fprintf(stderr, "strait-controller: --publish-* and --election-* need cluster mode\n");
        usage(stderr);
        return 2;
    }
    if (mesh_flags && !mesh) {
        fprintf(stderr, "strait-controller: --trust-domain and --mesh-* need --mesh\n");
        return 2;
    }
    if (webhook_config && !cluster) {
        fprintf(stderr, "strait-controller: --mesh-webhook-config needs cluster mode (the "
                        "MutatingWebhookConfiguration is in the API server)\n");
        return 2;
    }
    if (webhook_resync > 0 && !webhook_config) {
        fprintf(stderr, "strait-controller: --mesh-webhook-resync needs --mesh-webhook-config\n");
        return 2;
    }
    if ((mo.root_cert && mo.root_dir) || ((mo.root_cert || mo.root_dir) && mo.root_secret) ||
        (mo.root_secret && !cluster)) {
        fprintf(stderr, "strait-controller: give one of --mesh-root-file, --mesh-root-dir and "
                        "--mesh-root-secret (the Secret needs cluster mode)\n");
        return 2;
    }
    td = mo.trust_domain ? mo.trust_domain : MESHID_DEFAULT_TD;
    if (mesh && (!kube_decode_dns_name(td) || !kube_decode_dns_name(cluster_domain))) {
        fprintf(stderr,
                "strait-controller: --trust-domain %s / --cluster-domain %s: want DNS "
                "names (lower case)\n",
                td, cluster_domain);
        return 2;
    }
    /* --dump and --frame-out only build one snapshot: no identity endpoint */
    if (mesh && !cluster && !mo.token_file && !dump && !frame_out) {
        fprintf(stderr, "strait-controller: --mesh without a cluster needs --mesh-token-file\n");
        return 2;
    }
    if (admin && netaddr_parse(admin, &ass, &asl, err, sizeof(err))) {
        fprintf(stderr, "strait-controller: --health: %s\n", err);
        return 2;
    }
    if (cluster) {
        if (!lo.ns) {
            leader_default_namespace(election_ns, sizeof(election_ns));
            lo.ns = election_ns;
        }
        if (!lo.identity) {
            if (leader_default_identity(identity, sizeof(identity), err, sizeof(err))) {
                fprintf(stderr, "strait-controller: election identity: %s\n", err);
                return 1;
            }
            lo.identity = identity;
        }
        if (leader_check_opts(&lo, err, sizeof(err)) ||
            ((so.publish_service || so.publish_addresses) &&
             status_check_opts(&so, err, sizeof(err)))) {
            fprintf(stderr, "strait-controller: %s\n", err);
            return 2;
        }
    }
    log_init("controller", level);
    signal(SIGPIPE, SIG_IGN);

    memset(&c, 0, sizeof(c));
    c.magic = CTL_MAGIC;
    c.dir = dir;
    c.ingress_class = cls;
    c.default_cert = default_cert;
    c.mesh_dir = mesh;
    c.trust_domain = td;
    c.cluster_domain = cluster_domain;
    c.authz_default_deny = authz_deny;
    c.inotify_fd = -1;
    if (!cluster) {
        struct snapbuild_opts bo = {cls,  c.source, default_cert,   0,
                                    mesh, td,       cluster_domain, authz_deny};
        snprintf(c.source, sizeof(c.source), "file:%s", dir);
        if (dump || frame_out) {
            rc = ctl_one_shot(dir, &bo, dump, frame_out);
            certcheck_reset();
            return rc;
        }
    }

    memset(&kcfg, 0, sizeof(kcfg));
    if (cluster && ctl_kube_config(kubeconfig, &kcfg)) return 1;
    if (cluster) snprintf(c.source, sizeof(c.source), "kube:%.*s", PATH_MAX, kcfg.server);
    if (!(c.loop = ev_default_loop(EVFLAG_AUTO))) {
        log_error("startup_failed", "reason=\"cannot create event loop\"");
        goto free_config;
    }
    /* jitter for backoffs and watch timeouts: replicas must not move in lockstep */
    srandom((unsigned)getpid() ^ (unsigned)(ev_time() * 1e6));
    if (!cluster && (c.inotify_fd = filesource_watch_open(err, sizeof(err))) < 0) {
        log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
        goto destroy_loop;
    }
    if (!(c.pub = publisher_open(c.loop, sock, err, sizeof(err)))) {
        log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
        goto close_inotify;
    }
    log_info("listening", "socket=%s", sock);
    if (admin &&
        !(c.health = health_start(c.loop, (struct sockaddr *)&ass, asl, c.pub, err, sizeof(err)))) {
        log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
        goto close_publisher;
    }
    ev_timer_init(&c.debounce, ctl_on_debounce, CTL_DEBOUNCE, 0.);
    ev_signal_init(&c.sigterm, ctl_on_signal, SIGTERM);
    ev_signal_init(&c.sigint, ctl_on_signal, SIGINT);
    ev_signal_start(c.loop, &c.sigterm);
    ev_signal_start(c.loop, &c.sigint);
    if (cluster) {
        memset(&ko, 0, sizeof(ko));
        ko.watch_ns = watch_ns;
        ko.mesh = mesh;
        /* tests shorten the watch timeout to see watches end and resume */
        if ((env = getenv("STRAIT_WATCH_TIMEOUT")) && atoi(env) > 0) ko.watch_timeout = atoi(env);
        /* and the interval at which a missing CRD is looked for again */
        if ((env = getenv("STRAIT_CRD_RECHECK")) && atof(env) > 0) ko.crd_recheck = atof(env);
        if (!(c.ks = kube_source_start(c.loop, &kcfg, &ko, ctl_on_kube_change, &c, err,
                                       sizeof(err)))) {
            log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
            goto stop_watchers;
        }
        log_info("cluster_mode", "server=%s namespace=%s class=%s", kcfg.server,
                 watch_ns && *watch_ns ? watch_ns : "*", cls);
        if (mesh) {
            leader_default_namespace(mesh_ns, sizeof(mesh_ns));
            mo.ns = mesh_ns;
            if (!(c.mesh = meshid_start(c.loop, kube_source_client(c.ks), &mo, err, sizeof(err))) ||
                ctl_mesh_routes(&c, &webhook, err, sizeof(err)) ||
                (webhook_config && !(c.webhook = meshwebhook_new(
                                         c.loop, kube_source_client(c.ks), c.mesh, webhook_config,
                                         webhook_resync, err, sizeof(err))))) {
                log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
                goto free_cluster;
            }
        }
        if (ctl_start_cluster(&c, &lo, &so)) goto free_cluster;
    } else {
        if (mesh && (!(c.mesh = meshid_start(c.loop, NULL, &mo, err, sizeof(err))) ||
                     ctl_mesh_routes(&c, &webhook, err, sizeof(err)))) {
            log_error("startup_failed", "reason=%s", log_quote(q, sizeof(q), err));
            goto stop_watchers;
        }
        ev_io_init(&c.inotify_io, ctl_on_inotify, c.inotify_fd, EV_READ);
        ev_io_start(c.loop, &c.inotify_io);
        ctl_reload(&c);
    }
    ev_run(c.loop, 0);
    rc = 0;

free_cluster:
    /* before the client goes: they cancel their requests on it; held feed requests are
     * answered before their server stops */
    meshwebhook_free(c.webhook);
    c.webhook = NULL;
    meshfeed_free(c.feed);
    c.feed = NULL;
    meshid_free(c.mesh);
    c.mesh = NULL;
    leader_free(c.leader);
    status_free(c.status);
    gwstatus_writer_free(c.gw_status);
    gwstatus_writer_free(c.authz_status);
    events_free(c.events);
    kube_source_free(c.ks);
stop_watchers:
    meshfeed_free(c.feed);
    meshid_free(c.mesh);
    ev_signal_stop(c.loop, &c.sigterm);
    ev_signal_stop(c.loop, &c.sigint);
    ev_timer_stop(c.loop, &c.debounce);
    if (!cluster) ev_io_stop(c.loop, &c.inotify_io);
    health_stop(c.health);
close_publisher:
    publisher_close(c.pub);
    free(c.last);
close_inotify:
    if (c.inotify_fd >= 0) close(c.inotify_fd);
destroy_loop:
    ev_loop_destroy(c.loop);
free_config:
    kube_config_free(&kcfg);
    certcheck_reset();
    return rc;
}
