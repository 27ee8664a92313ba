/*
 * snapbuild: turns the typed cache into a snapshot.
 *
 * Does: IngressClass selection (spec.ingressClassName, then the legacy annotation, then the
 * default IngressClass), backend resolution (Service port by number or name → EndpointSlice
 * port of the same name → ready addresses), conflict resolution between Ingresses (oldest
 * creationTimestamp, then namespace/name), route ordering, defaultBackend, and per-Ingress
 * settings carried onto its routes (body size limit: each route and the default backend
 * take the value of the Ingress that won them), and the list of what was rejected or lost a
 * conflict (with an Event reason) and of the Ingresses served, for Events and status.
 * Does not: encode bytes (snapwire does), keep state between builds, or look at files.
 * Invariants: output depends only on the cache content, never on insertion order: every
 * list is sorted on a total order before it is emitted. vhosts are sorted by host; routes in a
 * vhost are in match order (longest path first, Exact before Prefix at equal length, then path
 * text); clusters are sorted by name; endpoints of a cluster by (address, port), deduplicated.
 * Only clusters referenced by a surviving route or the default backend are emitted.
 * Rejections come in build order (Ingresses in cache order, then conflicts in key order), so
 * they are as deterministic as the snapshot.
 * All snapshot strings are copied into the result's arena, so the cache may go first.
 */
#include "snapbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SB_CHUNK 8192

struct sb_chunk {
    struct sb_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

struct snapbuild_arena {
    struct sb_chunk *head;
    size_t rej_cap; /* allocated entries of the result's rejections */
};

static void *sb_alloc(struct snapbuild_arena *a, size_t size)
{
    struct sb_chunk *c = a->head;
    void *r;

    size = (size + 15) & ~(size_t)15;
    if (!size) size = 16;
    if (!c || c->size - c->used < size) {
        size_t cs = size > SB_CHUNK ? size : SB_CHUNK;
        if (!(c = malloc(sizeof(*c) + cs))) return NULL;
        c->used = 0;
        c->size = cs;
        c->next = a->head;
        a->head = c;
    }
    r = c->data + c->used;
    c->used += size;
    memset(r, 0, size);
    return r;
}

static char *sb_strdup(struct snapbuild_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *r = sb_alloc(a, n);

    if (r) memcpy(r, s, n);
    return r;
}

/* A route (or a default backend, host == NULL) before conflicts are settled. */
struct sb_cand {
    const char *host;
    const char *path;
    uint8_t match;
    const struct model_ingress *ing;
    size_t order; /* position inside its Ingress: a repeated path keeps its first use */
    const struct model_service *svc;
    const struct model_service_port *sp;
    uint32_t cluster;
};

struct sb_vec {
    struct sb_cand *v;
    size_t n, cap;
};

static int sb_push(struct sb_vec *vec, const struct sb_cand *c)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        struct sb_cand *v = realloc(vec->v, cap * sizeof(*v));
        if (!v) return -1;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *c;
    return 0;
}

/* Adds a rejection of m (strings copied into the arena); returns 0, or -1 when out of memory. */
static int sb_add_rejection(struct snapbuild_result *out, const struct model_meta *m,
                            const char *code, const char *message)
{
    struct snapbuild_rejection *r;

    if (out->n_rejections == (size_t)out->arena_->rej_cap) {
        size_t cap = out->arena_->rej_cap ? out->arena_->rej_cap * 2 : 16;
        if (!(r = realloc(out->rejections, cap * sizeof(*r)))) return -1;
        out->rejections = r;
        out->arena_->rej_cap = cap;
    }
    r = &out->rejections[out->n_rejections];
    r->kind = model_kind_name(m->kind);
    if (!(r->ns = sb_strdup(out->arena_, m->ns)) || !(r->name = sb_strdup(out->arena_, m->name)) ||
        !(r->uid = sb_strdup(out->arena_, m->uid ? m->uid : "")) ||
        !(r->resource_version =
              sb_strdup(out->arena_, m->resource_version ? m->resource_version : "")) ||
        !(r->reason = sb_strdup(out->arena_, code)) ||
        !(r->message = sb_strdup(out->arena_, message)))
        return -1;
    out->n_rejections++;
    return 0;
}

static int sb_reject(struct snapbuild_result *out, const struct model_meta *m, const char *code,
                     const char *reason)
{
    char id[300], fq[600], q[600];

    log_warn("object_rejected", "file=%s kind=%s object=%s reason=%s",
             model_log_value(fq, sizeof(fq), m->source), model_kind_name(m->kind),
             model_object_id(m, id, sizeof(id)), log_quote(q, sizeof(q), reason));
    return sb_add_rejection(out, m, code, reason);
}

/* Whether ing belongs to our class; see the module comment for the order of the tests. */
static int sb_is_ours(const struct model_cache *cache, const struct model_ingress *ing,
                      const char *cls)
{
    const struct model_ingress_class *ic;

    if (ing->class_name) return !strcmp(ing->class_name, cls);
    if (ing->class_annotation) return !strcmp(ing->class_annotation, cls);
    ic = (const struct model_ingress_class *)model_cache_find(cache, MODEL_KIND_INGRESS_CLASS, "",
                                                              cls);
    return ic && ic->is_default;
}

/* Resolves a backend to a Service port; returns 0, or -1 with reason and *code filled. */
static int sb_resolve(const struct model_cache *cache, const struct model_ingress *ing,
                      const struct model_backend *b, struct sb_cand *c, char *reason, size_t rlen,
                      const char **code)
{
    const struct model_service *svc;
    size_t i;

    svc = (const struct model_service *)model_cache_find(cache, MODEL_KIND_SERVICE, ing->meta.ns,
                                                         b->service);
    if (!svc) {
        snprintf(reason, rlen, "service %s/%s not found", ing->meta.ns, b->service);
        *code = "BackendNotFound";
        return -1;
    }
    for (i = 0; i < svc->n_ports; i++) {
        const struct model_service_port *sp = &svc->ports[i];
        if (b->port_name[0] ? !strcmp(sp->name, b->port_name) : sp->port == b->port_number) {
            c->svc = svc;
            c->sp = sp;
            return 0;
        }
    }
    *code = "PortNotFound";
    if (b->port_name[0])
        snprintf(reason, rlen, "service %s/%s has no port %s", ing->meta.ns, b->service,
                 b->port_name);
    else
        snprintf(reason, rlen, "service %s/%s has no port %ld", ing->meta.ns, b->service,
                 b->port_number);
    return -1;
}

/* Collects an Ingress's routes and default backend; all or nothing. */
static int sb_collect(const struct model_cache *cache, const struct model_ingress *ing,
                      struct sb_vec *routes, struct sb_vec *defaults, struct snapbuild_result *out,
                      int *oom)
{
    size_t before_r = routes->n, before_d = defaults->n, i, j, order = 0;
    const char *code = "Rejected";
    char reason[512];
    struct sb_cand c;

    if (ing->has_default_backend) {
        memset(&c, 0, sizeof(c));
        c.ing = ing;
        if (sb_resolve(cache, ing, &ing->default_backend, &c, reason, sizeof(reason), &code))
            goto reject;
        if (sb_push(defaults, &c)) goto nomem;
    }
    for (i = 0; i < ing->n_rules; i++) {
        const struct model_rule *r = &ing->rules[i];
        for (j = 0; j < r->n_paths; j++) {
            const struct model_path *p = &r->paths[j];
            memset(&c, 0, sizeof(c));
            c.ing = ing;
            c.host = r->host;
            c.path = p->path;
            /* ImplementationSpecific is documented to behave as Prefix here */
            c.match = p->type == MODEL_PATH_EXACT ? SNAPWIRE_MATCH_EXACT : SNAPWIRE_MATCH_PREFIX;
            c.order = order++;
            if (sb_resolve(cache, ing, &p->backend, &c, reason, sizeof(reason), &code)) goto reject;
            if (sb_push(routes, &c)) goto nomem;
        }
    }
    return 0;
reject:
    routes->n = before_r;
    defaults->n = before_d;
    if (sb_reject(out, &ing->meta, code, reason)) *oom = 1;
    return -1;
nomem:
    *oom = 1;
    return -1;
}

/* Conflict priority: oldest first (missing timestamp = newest), then namespace/name. */
static int sb_cmp_ingress(const struct model_ingress *a, const struct model_ingress *b)
{
    int r;

    if (a == b) return 0;
    if (a->meta.has_created != b->meta.has_created) return a->meta.has_created ? -1 : 1;
    if (a->meta.has_created) {
        if (a->meta.created_sec != b->meta.created_sec)
            return a->meta.created_sec < b->meta.created_sec ? -1 : 1;
        if (a->meta.created_nsec != b->meta.created_nsec)
            return a->meta.created_nsec < b->meta.created_nsec ? -1 : 1;
    }
    r = strcmp(a->meta.ns, b->meta.ns);
    return r ? r : strcmp(a->meta.name, b->meta.name);
}

/* Groups identical (host, path, match) keys, best claimant first. */
static int sb_cmp_key(const void *pa, const void *pb)
{
    const struct sb_cand *a = pa, *b = pb;
    int r;

    if ((r = strcmp(a->host, b->host)) || (r = strcmp(a->path, b->path))) return r;
    if (a->match != b->match) return a->match < b->match ? -1 : 1;
    if ((r = sb_cmp_ingress(a->ing, b->ing))) return r;
    return a->order < b->order ? -1 : a->order > b->order;
}

static size_t sb_match_len(const struct sb_cand *c)
{
    size_t n = strlen(c->path);

    /* "/foo/" matches like "/foo" for Prefix, so it is no more specific */
    if (c->match == SNAPWIRE_MATCH_PREFIX && n > 0 && c->path[n - 1] == '/') n--;
    return n;
}

/* Final order: by host, then match order inside the vhost. */
static int sb_cmp_route(const void *pa, const void *pb)
{
    const struct sb_cand *a = pa, *b = pb;
    size_t la, lb;
    int r;

    if ((r = strcmp(a->host, b->host))) return r;
    la = sb_match_len(a);
    lb = sb_match_len(b);
    if (la != lb) return la > lb ? -1 : 1;
    if (a->match != b->match) return a->match == SNAPWIRE_MATCH_EXACT ? -1 : 1;
    return strcmp(a->path, b->path);
}

static int sb_cmp_default(const void *pa, const void *pb)
{
    const struct sb_cand *a = pa, *b = pb;

    return sb_cmp_ingress(a->ing, b->ing);
}

/* Logs a lost claim and records it against the loser; returns -1 when out of memory. */
static int sb_log_conflict(struct snapbuild_result *out, const struct sb_cand *w,
                           const struct sb_cand *l)
{
    char wid[300], lid[300], hq[600], pq[600], msg[1400];

    if (w->ing == l->ing) {
        log_debug("ingress_duplicate_path", "object=%s host=%s path=%s",
                  model_object_id(&w->ing->meta, wid, sizeof(wid)),
                  model_log_value(hq, sizeof(hq), w->host ? w->host : "-"),
                  model_log_value(pq, sizeof(pq), w->path ? w->path : "-"));
        return 0;
    }
    log_warn("ingress_conflict", "host=%s path=%s winner=%s loser=%s",
             model_log_value(hq, sizeof(hq), w->host ? w->host : "-"),
             model_log_value(pq, sizeof(pq), w->path ? w->path : "-"),
             model_object_id(&w->ing->meta, wid, sizeof(wid)),
             model_object_id(&l->ing->meta, lid, sizeof(lid)));
    if (!w->host)
        snprintf(msg, sizeof(msg), "defaultBackend is served by %s (the oldest Ingress wins)", wid);
    else
        snprintf(msg, sizeof(msg), "host %s path %s (%s) is served by %s (the oldest Ingress wins)",
                 w->host[0] ? w->host : "*", w->path,
                 w->match == SNAPWIRE_MATCH_EXACT ? "Exact" : "Prefix", wid);
    return sb_add_rejection(out, &l->ing->meta, "Conflict", msg);
}

/*
 * Keeps the first of each run of equal keys (sorted best first); returns the new count.
 * Sets *oom when a conflict could not be recorded.
 */
static size_t sb_settle(struct sb_cand *v, size_t n, struct snapbuild_result *res, int *oom)
{
    size_t i, out = 0;

    for (i = 0; i < n; i++) {
        if (out && !strcmp(v[out - 1].host, v[i].host) && !strcmp(v[out - 1].path, v[i].path) &&
            v[out - 1].match == v[i].match) {
            if (sb_log_conflict(res, &v[out - 1], &v[i])) *oom = 1;
            if (v[out - 1].ing != v[i].ing) res->n_conflicts++;
            continue;
        }
        v[out++] = v[i];
    }
    return out;
}

/* A cluster in the making: identity (namespace, service, service port number). */
struct sb_cluster {
    const struct model_service *svc;
    const struct model_service_port *sp;
};

static int sb_cmp_cluster(const struct sb_cluster *a, const struct sb_cluster *b)
{
    int r;

    if ((r = strcmp(a->svc->meta.ns, b->svc->meta.ns)) ||
        (r = strcmp(a->svc->meta.name, b->svc->meta.name)))
        return r;
    return a->sp->port < b->sp->port ? -1 : a->sp->port > b->sp->port;
}

static int sb_cmp_cluster_q(const void *a, const void *b)
{
    return sb_cmp_cluster(a, b);
}

static int sb_cmp_endpoint(const void *pa, const void *pb)
{
    const struct snapwire_endpoint *a = pa, *b = pb;
    int r = strcmp(a->address, b->address);

    return r ? r : (a->port < b->port ? -1 : a->port > b->port);
}

static int sb_cmp_slice_svc(const void *pa, const void *pb)
{
    const struct model_endpoint_slice *a = *(const struct model_endpoint_slice *const *)pa;
    const struct model_endpoint_slice *b = *(const struct model_endpoint_slice *const *)pb;
    int r = strcmp(a->meta.ns, b->meta.ns);

    if (r || (r = strcmp(a->service_name, b->service_name))) return r;
    return strcmp(a->meta.name, b->meta.name);
}

/* qsort that accepts an empty (possibly NULL) array: qsort's pointer must be valid. */
static void sb_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1) qsort(base, n, size, cmp);
}

struct sb_eps {
    struct snapwire_endpoint *v;
    size_t n, cap;
};

/*
 * Appends the ready endpoints of cluster k to eps, sorted and deduplicated. slices is the
 * cache's EndpointSlices sorted by (namespace, service label, name).
 */
static int sb_endpoints(const struct sb_cluster *k, const struct model_endpoint_slice **slices,
                        size_t n_slices, struct sb_eps *eps)
{
    size_t lo = 0, hi = n_slices, mid, i, e, a, p, start = eps->n, out;
    const struct model_endpoint_slice *s;
    int r;

    /* first slice of (namespace, service) */
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        s = slices[mid];
        r = strcmp(s->meta.ns, k->svc->meta.ns);
        if (!r) r = strcmp(s->service_name, k->svc->meta.name);
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (i = lo; i < n_slices; i++) {
        s = slices[i];
        if (strcmp(s->meta.ns, k->svc->meta.ns) || strcmp(s->service_name, k->svc->meta.name))
            break;
        for (p = 0; p < s->n_ports; p++)
            if (!strcmp(s->ports[p].name, k->sp->name)) break;
        if (p == s->n_ports || !s->ports[p].port) continue;
        for (e = 0; e < s->n_endpoints; e++) {
            if (!s->endpoints[e].ready) continue;
            for (a = 0; a < s->endpoints[e].n_addresses; a++) {
                if (eps->n == eps->cap) {
                    size_t cap = eps->cap ? eps->cap * 2 : 64;
                    struct snapwire_endpoint *v = realloc(eps->v, cap * sizeof(*v));
                    if (!v) return -1;
                    eps->v = v;
                    eps->cap = cap;
                }
                eps->v[eps->n].address = s->endpoints[e].addresses[a];
                eps->v[eps->n].port = (uint16_t)s->ports[p].port;
                eps->v[eps->n].ready = 1;
                eps->n++;
            }
        }
    }
    if (eps->n - start > 1) qsort(eps->v + start, eps->n - start, sizeof(*eps->v), sb_cmp_endpoint);
    for (i = start, out = start; i < eps->n; i++) {
        if (out > start && !sb_cmp_endpoint(&eps->v[out - 1], &eps->v[i])) continue;
        eps->v[out++] = eps->v[i];
    }
    eps->n = out;
    return 0;
}

/* Index of the cluster for c in the sorted, unique array cl. */
static uint32_t sb_find_cluster(const struct sb_cluster *cl, size_t n, const struct sb_cand *c)
{
    struct sb_cluster key = {c->svc, c->sp};
    size_t lo = 0, hi = n, mid;
    int r;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = sb_cmp_cluster(&key, &cl[mid]);
        if (!r) return (uint32_t)mid;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SNAPWIRE_NONE; /* unreachable: every candidate's cluster was inserted */
}

int snapbuild_build(const struct model_cache *cache, const char *ingress_class, const char *source,
                    struct snapbuild_result *out, char *err, size_t errlen)
{
    const struct model_list *ings = &cache->kinds[MODEL_KIND_INGRESS];
    const struct model_list *sl = &cache->kinds[MODEL_KIND_ENDPOINT_SLICE];
    struct snapwire_snapshot *s = &out->snap;
    struct sb_vec routes = {0}, defaults = {0};
    struct sb_cluster *cl = NULL;
    const struct model_endpoint_slice **slices = NULL;
    struct sb_eps eps = {0};
    struct snapbuild_arena *a;
    size_t i, n_cl = 0, n_vh = 0, e0;
    char name[600], src[300];
    int oom = 0, rc = -1;

    memset(out, 0, sizeof(*out));
    if (!(a = calloc(1, sizeof(*a)))) goto nomem;
    out->arena_ = a;

    for (i = 0; i < ings->n && !oom; i++) {
        const struct model_ingress *ing = (const struct model_ingress *)ings->items[i];
        char id[300];
        if (!sb_is_ours(cache, ing, ingress_class)) {
            log_debug("ingress_ignored", "object=%s reason=\"other class\"",
                      model_object_id(&ing->meta, id, sizeof(id)));
            continue;
        }
        if (sb_collect(cache, ing, &routes, &defaults, out, &oom)) {
            out->n_rejected += !oom;
            continue;
        }
        out->n_ingresses++;
        /* at most every Ingress: sized once, so a big cluster costs one allocation */
        if (!out->accepted && !(out->accepted = sb_alloc(a, ings->n * sizeof(*out->accepted))))
            goto nomem;
        if (!(out->accepted[out->n_accepted].ns = sb_strdup(a, ing->meta.ns)) ||
            !(out->accepted[out->n_accepted].name = sb_strdup(a, ing->meta.name)))
            goto nomem;
        out->n_accepted++;
    }
    if (oom) goto nomem;

    sb_sort(routes.v, routes.n, sizeof(*routes.v), sb_cmp_key);
    routes.n = sb_settle(routes.v, routes.n, out, &oom);
    if (oom) goto nomem;
    sb_sort(routes.v, routes.n, sizeof(*routes.v), sb_cmp_route);
    sb_sort(defaults.v, defaults.n, sizeof(*defaults.v), sb_cmp_default);
    for (i = 1; i < defaults.n; i++) {
        if (sb_log_conflict(out, &defaults.v[0], &defaults.v[i])) goto nomem;
        out->n_conflicts++;
    }
    if (defaults.n > 1) defaults.n = 1;

    /* clusters: the distinct service ports the surviving routes and default point at */
    if (!(cl = malloc((routes.n + defaults.n + 1) * sizeof(*cl)))) goto nomem;
    for (i = 0; i < routes.n; i++)
        cl[n_cl++] = (struct sb_cluster){routes.v[i].svc, routes.v[i].sp};
    for (i = 0; i < defaults.n; i++)
        cl[n_cl++] = (struct sb_cluster){defaults.v[i].svc, defaults.v[i].sp};
    sb_sort(cl, n_cl, sizeof(*cl), sb_cmp_cluster_q);
    for (i = 0, e0 = 0; i < n_cl; i++)
        if (!e0 || sb_cmp_cluster(&cl[e0 - 1], &cl[i])) cl[e0++] = cl[i];
    n_cl = e0;

    if (sl->n && !(slices = malloc(sl->n * sizeof(*slices)))) goto nomem;
    for (i = 0; i < sl->n; i++)
        slices[i] = (const struct model_endpoint_slice *)sl->items[i];
    if (sl->n) sb_sort(slices, sl->n, sizeof(*slices), sb_cmp_slice_svc);

    s->n_clusters = (uint32_t)n_cl;
    if (!(s->clusters = sb_alloc(a, n_cl * sizeof(*s->clusters)))) goto nomem;
    for (i = 0; i < n_cl; i++) {
        struct snapwire_cluster *c = &s->clusters[i];
        e0 = eps.n;
        if (sb_endpoints(&cl[i], slices, sl->n, &eps)) goto nomem;
        snprintf(name, sizeof(name), "%s/%s:%ld", cl[i].svc->meta.ns, cl[i].svc->meta.name,
                 cl[i].sp->port);
        if (!(c->name = sb_strdup(a, name))) goto nomem;
        c->lb = SNAPWIRE_LB_ROUND_ROBIN;
        c->first_endpoint = (uint32_t)e0;
        c->endpoint_count = (uint32_t)(eps.n - e0);
    }
    s->n_endpoints = (uint32_t)eps.n;
    if (!(s->endpoints = sb_alloc(a, eps.n * sizeof(*s->endpoints)))) goto nomem;
    for (i = 0; i < eps.n; i++) {
        s->endpoints[i] = eps.v[i];
        if (!(s->endpoints[i].address = sb_strdup(a, eps.v[i].address))) goto nomem;
    }

    s->n_routes = (uint32_t)routes.n;
    if (!(s->routes = sb_alloc(a, routes.n * sizeof(*s->routes)))) goto nomem;
    for (i = 0; i < routes.n; i++) {
        struct snapwire_route *r = &s->routes[i];
        if (!i || strcmp(routes.v[i - 1].host, routes.v[i].host)) n_vh++;
        r->match = routes.v[i].match;
        r->cluster = sb_find_cluster(cl, n_cl, &routes.v[i]);
        r->max_body = routes.v[i].ing->max_body; /* the Ingress that won the route */
        if (!(r->path = sb_strdup(a, routes.v[i].path)) ||
            !(r->source = sb_strdup(a, model_object_id(&routes.v[i].ing->meta, src, sizeof(src)))))
            goto nomem;
    }
    s->n_vhosts = (uint32_t)n_vh;
    if (!(s->vhosts = sb_alloc(a, n_vh * sizeof(*s->vhosts)))) goto nomem;
    for (i = 0, n_vh = 0; i < routes.n; i++) {
        if (!i || strcmp(routes.v[i - 1].host, routes.v[i].host)) {
            if (!(s->vhosts[n_vh].host = sb_strdup(a, routes.v[i].host))) goto nomem;
            s->vhosts[n_vh].first_route = (uint32_t)i;
            n_vh++;
        }
        s->vhosts[n_vh - 1].route_count++;
    }

    s->n_listeners = 1;
    if (!(s->listeners = sb_alloc(a, sizeof(*s->listeners)))) goto nomem;
    s->listeners[0].name = "http";
    s->listeners[0].address = "";
    s->listeners[0].port = 0;
    s->listeners[0].protocol = SNAPWIRE_PROTO_HTTP;
    s->meta.default_cluster =
        defaults.n ? sb_find_cluster(cl, n_cl, &defaults.v[0]) : SNAPWIRE_NONE;
    s->meta.default_max_body = defaults.n ? defaults.v[0].ing->max_body : SNAPWIRE_BODY_DEFAULT;
    s->meta.default_cert = SNAPWIRE_NONE;
    if (!(s->meta.source = sb_strdup(a, source ? source : ""))) goto nomem;
    rc = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
    snapbuild_free(out);
out:
    free(routes.v);
    free(defaults.v);
    free(cl);
    free(slices);
    free(eps.v);
    return rc;
}

void snapbuild_free(struct snapbuild_result *r)
{
    struct sb_chunk *c, *next;

    free(r->rejections);
    if (r->arena_) {
        for (c = r->arena_->head; c; c = next) {
            next = c->next;
            free(c);
        }
        free(r->arena_);
    }
    memset(r, 0, sizeof(*r));
}
