/*
 * snapbuild: turns the typed cache into a snapshot.
 *
 * Does: IngressClass selection (spec.ingressClassName, then the legacy annotation, then the
 * default IngressClass), backend resolution (Service port by number or name → EndpointSlice
 * port of the same name → ready addresses), conflict resolution between Ingresses (oldest
 * creationTimestamp, then namespace/name), route ordering, defaultBackend, and per-Ingress
 * settings carried onto its routes (body size limit, HSTS value, and the ssl-redirect flag:
 * each route and the default backend take the value of the Ingress that won them), and the
 * list of what was rejected or lost a conflict (with an Event reason) and of the Ingresses
 * served, for Events and status.
 * TLS: spec.tls hosts of the routed Ingresses become tls_hosts (oldest Ingress first; a
 * second certificate of the other key type becomes cert2), each Secret's certificate is
 * checked by certcheck (which keeps the last good one), referenced Secrets become certs;
 * upstream TLS makes a cluster of its own ("+tls"). A client-certificate or upstream CA that
 * cannot be used refuses its Ingress (fail closed); a bad server certificate does not (its
 * hosts fall back to the last good or the default certificate, and the Ingress gets an
 * InvalidCertificate/SecretNotFound rejection for Events).
 * Does not: encode bytes (snapwire does), keep state between builds (apart from certcheck's
 * last-good memory), or look at files.
 * Invariants: output depends only on the cache content, never on insertion order: every
 * list is sorted on a total order before it is emitted. vhosts are sorted by host; routes in a
 * vhost are in match order (longest path first, Exact before Prefix at equal length, then path
 * text); clusters are sorted by name; endpoints of a cluster by (address, port), deduplicated.
 * Only clusters referenced by a surviving route or the default backend are emitted; only
 * certificates referenced by a tls_host, a cluster or meta, in Secret order (ns/name, server
 * use before CA use). tls_hosts are sorted by host, unique.
 * Rejections come in build order (Ingresses in cache order, then conflicts in key order), so
 * they are as deterministic as the snapshot.
 * All snapshot strings are copied into the result's arena, so the cache may go first.
 */
#include "snapbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certcheck.h"
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
    /* upstream TLS (strait.dev/backend-protocol, appProtocol https) */
    int tls;
    const char *sni;       /* arena; NULL without tls */
    struct sb_mat *tls_ca; /* strait.dev/proxy-ssl-secret, NULL for "do not verify" */
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

/*
 * One Secret in one usage (server certificate, or CA bundle), checked once per build through
 * certcheck. Strings live in the arena; hosts (for the certificate_rejected line) is malloc'd
 * as ",h1,h2," and freed with the build.
 */
struct sb_mat {
    const char *id; /* "ns/name" */
    int ca;
    int found;                  /* the Secret exists */
    struct certcheck_verdict v; /* reason, chain, key point into the arena */
    int emit;                   /* the snapshot references it */
    uint32_t index;             /* in snap.certs, once emitted */
    char *hosts;
    size_t hlen, hcap;
    struct sb_mat *next; /* every material of the build, in creation order */
};

/* What a build carries around besides its result. */
struct sb_ctx {
    const struct model_cache *cache;
    struct snapbuild_result *out;
    int64_t now;
    struct sb_mat **mats[2]; /* per usage, by position in the cache's Secret list */
    struct sb_mat *all, **tail;
};

/* Position of ns/name in the cache's (sorted) Secret list, or -1. */
static long sb_secret_pos(const struct model_cache *cache, const char *ns, const char *name)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_SECRET];
    size_t lo = 0, hi = l->n, mid;
    int r;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = strcmp(ns, l->items[mid]->ns);
        if (!r) r = strcmp(name, l->items[mid]->name);
        if (!r) return (long)mid;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/*
 * The checked material of Secret ns/name in usage ca (0 server certificate, 1 CA bundle);
 * NULL when out of memory. A missing field counts as empty content (its reason says which),
 * a missing Secret as not found.
 */
static struct sb_mat *sb_material(struct sb_ctx *x, const char *ns, const char *name, int ca)
{
    long pos = sb_secret_pos(x->cache, ns, name);
    const struct model_secret *sec = NULL;
    const unsigned char *crt = NULL, *key = NULL;
    size_t crt_len = 0, key_len = 0;
    struct snapbuild_arena *a = x->out->arena_;
    struct sb_mat *m;
    char id[300];

    if (pos >= 0 && x->mats[ca][pos]) return x->mats[ca][pos];
    /* a missing Secret is looked up again on each use: rare, and it has no slot */
    snprintf(id, sizeof(id), "%s/%s", ns, name);
    for (m = x->all; pos < 0 && m; m = m->next)
        if (!m->found && m->ca == ca && !strcmp(m->id, id)) return m;
    if (!(m = sb_alloc(a, sizeof(*m))) || !(m->id = sb_strdup(a, id))) return NULL;
    m->ca = ca;
    if (pos >= 0) {
        sec = (const struct model_secret *)x->cache->kinds[MODEL_KIND_SECRET].items[pos];
        m->found = 1;
        /* "" with length 0: certcheck names the empty field */
        crt = ca ? sec->ca_crt : sec->tls_crt;
        crt_len = ca ? sec->ca_crt_len : sec->tls_crt_len;
        if (!crt) crt = (const unsigned char *)"";
        key = ca ? NULL : sec->tls_key;
        key_len = ca ? 0 : sec->tls_key_len;
        if (!ca && !key) key = (const unsigned char *)"";
    }
    if (certcheck_get(id, ca, crt, crt_len, key, key_len, x->now, &m->v)) return NULL;
    /* certcheck's strings last until its next call: the build keeps its own copies */
    if (!(m->v.reason = sb_strdup(a, m->v.reason)) ||
        (m->v.chain && !(m->v.chain = sb_strdup(a, m->v.chain))) ||
        (m->v.key && !(m->v.key = sb_strdup(a, m->v.key))))
        return NULL;
    *x->tail = m;
    x->tail = &m->next;
    if (pos >= 0) x->mats[ca][pos] = m;
    return m;
}

/* Adds host to m's list for the log line (once). Returns 0, -1 when out of memory. */
static int sb_mat_host(struct sb_mat *m, const char *host)
{
    size_t hl = strlen(host);
    char *p;

    if (m->hosts) {
        for (p = strstr(m->hosts, host); p; p = strstr(p + 1, host))
            if (p[-1] == ',' && p[hl] == ',') return 0;
    }
    if (m->hlen + hl + 3 > m->hcap) {
        size_t cap = (m->hcap ? m->hcap * 2 : 64) + hl;
        if (!(p = realloc(m->hosts, cap))) return -1;
        m->hosts = p;
        m->hcap = cap;
    }
    if (!m->hlen) m->hosts[m->hlen++] = ',';
    memcpy(m->hosts + m->hlen, host, hl);
    m->hlen += hl;
    m->hosts[m->hlen++] = ',';
    m->hosts[m->hlen] = '\0';
    return 0;
}

/* The Event reason for a material that is bad. */
static const char *sb_mat_code(const struct sb_mat *m)
{
    return m->found ? "InvalidCertificate" : "SecretNotFound";
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

/*
 * The CA bundle an annotation of ing names (ref), which must be usable: a client-certificate
 * or upstream check without its CA would let everyone through, so the Ingress is refused
 * instead (fail closed). Returns 0 with *out set, -1 with reason and *code filled, -2 when
 * out of memory.
 */
static int sb_ca_ref(struct sb_ctx *x, const char *annotation, const struct model_secret_ref *ref,
                     struct sb_mat **out, char *reason, size_t rlen, const char **code)
{
    struct sb_mat *m = sb_material(x, ref->ns, ref->name, 1);

    if (!m) return -2;
    *out = m;
    if (m->v.usable) return 0;
    *code = sb_mat_code(m);
    /* certcheck's reason names the field (ca.crt) or says "secret NS/NAME not found" */
    if (m->found)
        snprintf(reason, rlen, "annotation %s: secret %s: %s", annotation, m->id, m->v.reason);
    else
        snprintf(reason, rlen, "annotation %s: %s", annotation, m->v.reason);
    return -1;
}

/* Upstream TLS settings of a resolved candidate. Returns 0, -1 (reason, *code), -2 (oom). */
static int sb_upstream_tls(struct sb_ctx *x, const struct model_ingress *ing, struct sb_cand *c,
                           char *reason, size_t rlen, const char **code)
{
    char sni[600];
    int rc;

    c->tls = ing->backend_https || c->sp->app_https;
    if (!c->tls) return 0;
    if (ing->proxy_ssl_name[0])
        snprintf(sni, sizeof(sni), "%s", ing->proxy_ssl_name);
    else
        snprintf(sni, sizeof(sni), "%s.%s.svc", c->svc->meta.name, c->svc->meta.ns);
    if (!(c->sni = sb_strdup(x->out->arena_, sni))) return -2;
    if (!ing->proxy_ssl_secret.name[0]) return 0;
    rc = sb_ca_ref(x, "strait.dev/proxy-ssl-secret", &ing->proxy_ssl_secret, &c->tls_ca, reason,
                   rlen, code);
    return rc;
}

/* Collects an Ingress's routes and default backend; all or nothing. */
static int sb_collect(struct sb_ctx *x, const struct model_ingress *ing, struct sb_vec *routes,
                      struct sb_vec *defaults, int *oom)
{
    const struct model_cache *cache = x->cache;
    struct snapbuild_result *out = x->out;
    size_t before_r = routes->n, before_d = defaults->n, i, j, order = 0;
    const char *code = "Rejected";
    char reason[512];
    struct sb_cand c;
    struct sb_mat *client_ca;
    int rc;

    if (ing->auth_tls_secret.name[0] && ing->client_verify != MODEL_CLIENT_VERIFY_OFF) {
        rc = sb_ca_ref(x, "strait.dev/auth-tls-secret", &ing->auth_tls_secret, &client_ca, reason,
                       sizeof(reason), &code);
        if (rc == -2) goto nomem;
        if (rc) goto reject;
    }
    if (ing->has_default_backend) {
        memset(&c, 0, sizeof(c));
        c.ing = ing;
        if (sb_resolve(cache, ing, &ing->default_backend, &c, reason, sizeof(reason), &code))
            goto reject;
        if ((rc = sb_upstream_tls(x, ing, &c, reason, sizeof(reason), &code)) == -2) goto nomem;
        if (rc) goto reject;
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
            if ((rc = sb_upstream_tls(x, ing, &c, reason, sizeof(reason), &code)) == -2) goto nomem;
            if (rc) goto reject;
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

/*
 * A cluster in the making: identity (namespace, service, service port number, then the
 * upstream TLS settings: a TLS backend is another cluster than the plain one).
 */
struct sb_cluster {
    const struct model_service *svc;
    const struct model_service_port *sp;
    int tls;
    const char *sni;       /* NULL without tls */
    struct sb_mat *tls_ca; /* NULL: not verified */
};

static struct sb_cluster sb_cluster_of(const struct sb_cand *c)
{
    return (struct sb_cluster){c->svc, c->sp, c->tls, c->sni, c->tls_ca};
}

static int sb_cmp_cluster(const struct sb_cluster *a, const struct sb_cluster *b)
{
    int r;

    if ((r = strcmp(a->svc->meta.ns, b->svc->meta.ns)) ||
        (r = strcmp(a->svc->meta.name, b->svc->meta.name)))
        return r;
    if (a->sp->port != b->sp->port) return a->sp->port < b->sp->port ? -1 : 1;
    if (a->tls != b->tls) return a->tls < b->tls ? -1 : 1;
    if (!a->tls) return 0;
    if ((r = strcmp(a->sni, b->sni))) return r;
    if (!a->tls_ca || !b->tls_ca) return a->tls_ca ? 1 : b->tls_ca ? -1 : 0;
    return strcmp(a->tls_ca->id, b->tls_ca->id);
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
    struct sb_cluster key = sb_cluster_of(c);
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

/* ---- TLS ---- */

/* A host some Ingress's spec.tls names, with the Secret it gives (NULL: the default one). */
struct sb_claim {
    const char *host;
    const struct model_ingress *ing;
    size_t order; /* position inside its Ingress */
    struct sb_mat *m;
};

struct sb_claims {
    struct sb_claim *v;
    size_t n, cap;
};

/* A tls_host before indexes are known; cert NULL: the default certificate. */
struct sb_th {
    const char *host;
    struct sb_mat *cert, *cert2, *client_ca;
    uint8_t verify;
};

static int sb_claim_push(struct sb_claims *c, const struct sb_claim *cl)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        struct sb_claim *v = realloc(c->v, cap * sizeof(*v));
        if (!v) return -1;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *cl;
    return 0;
}

static int sb_usable(const struct sb_claim *c)
{
    return c->m && c->m->v.usable;
}

/* By host; then claims with a certificate to serve first, oldest Ingress first. */
static int sb_cmp_claim(const void *pa, const void *pb)
{
    const struct sb_claim *a = pa, *b = pb;
    int r;

    if ((r = strcmp(a->host, b->host))) return r;
    if (sb_usable(a) != sb_usable(b)) return sb_usable(a) ? -1 : 1;
    if ((r = sb_cmp_ingress(a->ing, b->ing))) return r;
    return a->order < b->order ? -1 : a->order > b->order;
}

/*
 * An Ingress's spec.tls as claims; a Secret that cannot be used as it is gets a rejection
 * (InvalidCertificate / SecretNotFound) against the Ingress, which is still served. Returns
 * 0, -1 when out of memory.
 */
static int sb_tls_claims(struct sb_ctx *x, const struct model_ingress *ing, struct sb_claims *out)
{
    char msg[800];
    size_t t, t2, h, order = 0;
    struct sb_claim c;

    for (t = 0; t < ing->n_tls; t++) {
        const struct model_tls *e = &ing->tls[t];
        struct sb_mat *m = NULL;
        size_t n = e->n_hosts ? e->n_hosts : ing->n_rules;
        if (e->secret[0] && !(m = sb_material(x, ing->meta.ns, e->secret, 0))) return -1;
        for (h = 0; h < n; h++) {
            /* an entry without hosts covers the hosts of the Ingress's rules */
            const char *host = e->n_hosts ? e->hosts[h] : ing->rules[h].host;
            if (!host[0]) continue;
            c = (struct sb_claim){host, ing, order++, m};
            if (sb_claim_push(out, &c) || (m && sb_mat_host(m, host))) return -1;
        }
        if (!m || !m->v.bad) continue;
        for (t2 = 0; t2 < t; t2++)
            if (!strcmp(ing->tls[t2].secret, e->secret)) break;
        if (t2 < t) continue; /* one report per Ingress and Secret */
        if (m->found)
            snprintf(msg, sizeof(msg), "secret %s: %s (%s)", m->id, m->v.reason,
                     m->v.last_good ? "its last good certificate is served"
                                    : "its hosts get the default certificate");
        else
            snprintf(msg, sizeof(msg), "%s (its hosts get the default certificate)", m->v.reason);
        if (sb_add_rejection(x->out, &ing->meta, sb_mat_code(m), msg)) return -1;
    }
    return 0;
}

/* Logs a TLS host lost to an older Ingress and records it against the loser. */
static int sb_tls_conflict(struct sb_ctx *x, const struct sb_claim *w, const struct sb_claim *l)
{
    char wid[300], lid[300], msg[1200];

    log_warn("tls_conflict", "host=%s secret=%s winner=%s loser=%s loser_secret=%s", w->host,
             w->m->id, model_object_id(&w->ing->meta, wid, sizeof(wid)),
             model_object_id(&l->ing->meta, lid, sizeof(lid)), l->m->id);
    snprintf(msg, sizeof(msg),
             "TLS host %s is served with the certificate of secret %s from %s (the oldest "
             "Ingress wins), not with secret %s",
             w->host, w->m->id, wid, l->m->id);
    x->out->n_conflicts++;
    return sb_add_rejection(x->out, &l->ing->meta, "Conflict", msg);
}

/*
 * Settles the sorted claims into tls_hosts (one per host): the first claim wins; a later one
 * whose certificate has the other key type (RSA / ECDSA) becomes cert2; any other certificate
 * from another Ingress is a conflict. Client-certificate settings come from the winner's
 * Ingress. Returns the count in *n_out, or -1 when out of memory.
 */
static int sb_tls_settle(struct sb_ctx *x, const struct sb_claims *cl, struct sb_th *th,
                         size_t *n_out)
{
    size_t i = 0, j, n = 0;

    while (i < cl->n) {
        const struct sb_claim *w = &cl->v[i];
        const struct model_ingress *ing = w->ing;
        struct sb_th *t = &th[n++];
        memset(t, 0, sizeof(*t));
        t->host = w->host;
        t->cert = sb_usable(w) ? w->m : NULL;
        for (j = i + 1; j < cl->n && !strcmp(cl->v[j].host, w->host); j++) {
            const struct sb_claim *o = &cl->v[j];
            if (!t->cert || !sb_usable(o) || o->m == t->cert || o->m == t->cert2) continue;
            if (!t->cert2 && o->m->v.info.key_type != t->cert->v.info.key_type) {
                t->cert2 = o->m;
                continue;
            }
            if (o->ing == w->ing) {
                char id[300];
                log_debug("tls_duplicate_host", "object=%s host=%s secret=%s",
                          model_object_id(&ing->meta, id, sizeof(id)), o->host, o->m->id);
                continue;
            }
            if (sb_tls_conflict(x, w, o)) return -1;
        }
        i = j;
        if (ing->auth_tls_secret.name[0] && ing->client_verify != MODEL_CLIENT_VERIFY_OFF) {
            /* sb_collect refused the Ingress if this CA were not usable */
            if (!(t->client_ca =
                      sb_material(x, ing->auth_tls_secret.ns, ing->auth_tls_secret.name, 1)))
                return -1;
            t->verify = ing->client_verify == MODEL_CLIENT_VERIFY_OPTIONAL
                            ? SNAPWIRE_CLIENT_VERIFY_OPTIONAL
                            : SNAPWIRE_CLIENT_VERIFY_REQUIRED;
        }
    }
    *n_out = n;
    return 0;
}

/*
 * The tls_host whose policy applies to host: the same name, else a wildcard covering it (one
 * label), as SNI picks them; NULL when none.
 */
static const struct sb_th *sb_th_for(const struct sb_th *th, size_t n, const char *host)
{
    char wild[300];
    const char *dot;
    size_t lo, hi, mid;
    int pass, r;

    if (!host[0]) return NULL;
    for (pass = 0; pass < 2; pass++) {
        const char *key = host;
        if (pass) {
            if (host[0] == '*' || !(dot = strchr(host, '.'))) return NULL;
            snprintf(wild, sizeof(wild), "*%s", dot);
            key = wild;
        }
        lo = 0;
        hi = n;
        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            r = strcmp(key, th[mid].host);
            if (!r) return &th[mid];
            if (r < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
    }
    return NULL;
}

static int sb_has_tls(const struct sb_th *th, size_t n, const char *host)
{
    return sb_th_for(th, n, host) != NULL;
}

/*
 * Drops the routes of hosts that ask for client certificates but have no certificate to
 * serve at all (neither their own nor a default one): the data plane would answer them with
 * its own certificate and no client check, letting every client through. Each Ingress that
 * loses routes gets one rejection per host. Returns the new count, *oom on failure.
 */
static size_t sb_drop_unprotected(struct sb_ctx *x, struct sb_cand *v, size_t n,
                                  const struct sb_th *th, size_t n_th, int *oom)
{
    size_t first = x->out->n_rejections, i, j, out = 0;
    char id[300], q[600], msg[700];

    for (i = 0; i < n; i++) {
        const struct sb_th *t = sb_th_for(th, n_th, v[i].host);
        if (!t || t->cert || !t->client_ca) {
            v[out++] = v[i];
            continue;
        }
        snprintf(msg, sizeof(msg),
                 "TLS host %s asks for client certificates but has no usable certificate and "
                 "there is no default certificate: its routes are not served",
                 v[i].host);
        /* one report per Ingress and host (a host's routes of several Ingresses interleave) */
        for (j = first; j < x->out->n_rejections; j++) {
            const struct snapbuild_rejection *r = &x->out->rejections[j];
            if (!strcmp(r->ns, v[i].ing->meta.ns) && !strcmp(r->name, v[i].ing->meta.name) &&
                !strcmp(r->message, msg))
                break;
        }
        if (j < x->out->n_rejections) continue;
        log_warn("routes_dropped", "host=%s object=%s reason=%s", v[i].host,
                 model_object_id(&v[i].ing->meta, id, sizeof(id)), log_quote(q, sizeof(q), msg));
        if (sb_add_rejection(x->out, &v[i].ing->meta, "InvalidCertificate", msg)) *oom = 1;
    }
    return out;
}

/* certificate_rejected, once per (Secret, content, reason): certcheck remembers. */
static void sb_log_materials(const struct sb_ctx *x)
{
    const struct sb_mat *m;
    char q[700], h[1200];
    size_t hl;

    for (m = x->all; m; m = m->next) {
        if (!m->v.bad || !m->v.first_report) continue;
        if (m->hlen > 2) {
            hl = m->hlen - 2 < sizeof(h) - 1 ? m->hlen - 2 : sizeof(h) - 1;
            memcpy(h, m->hosts + 1, hl);
            h[hl] = '\0';
        } else {
            snprintf(h, sizeof(h), "-");
        }
        log_warn("certificate_rejected", "secret=%s usage=%s reason=%s kept=%s hosts=%s", m->id,
                 m->ca ? "ca" : "server", log_quote(q, sizeof(q), m->v.reason),
                 m->v.last_good ? "last-good" : "none", h);
    }
}

static int sb_cmp_acc(const void *pa, const void *pb)
{
    return sb_cmp_ingress(*(const struct model_ingress *const *)pa,
                          *(const struct model_ingress *const *)pb);
}

static uint32_t sb_mat_index(const struct sb_mat *m)
{
    return m ? m->index : SNAPWIRE_NONE;
}

static void sb_emit(struct sb_mat *m)
{
    if (m) m->emit = 1;
}

int snapbuild_build(const struct model_cache *cache, const char *ingress_class, const char *source,
                    struct snapbuild_result *out, char *err, size_t errlen)
{
    struct snapbuild_opts o = {ingress_class, source, NULL, 0};

    return snapbuild_build_opts(cache, &o, out, err, errlen);
}

int snapbuild_build_opts(const struct model_cache *cache, const struct snapbuild_opts *o,
                         struct snapbuild_result *out, char *err, size_t errlen)
{
    const char *ingress_class = o->ingress_class, *source = o->source;
    const struct model_list *secrets = &cache->kinds[MODEL_KIND_SECRET];
    const struct model_ingress **acc = NULL;
    struct sb_claims claims = {0};
    struct sb_th *th = NULL;
    struct sb_mat *def = NULL, *m;
    struct sb_ctx x;
    size_t n_th = 0, k;
    uint32_t n_certs = 0;
    int u;
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
    memset(&x, 0, sizeof(x));
    x.cache = cache;
    x.out = out;
    x.now = o->now ? o->now : (int64_t)time(NULL);
    x.tail = &x.all;
    certcheck_begin();
    if (!(a = calloc(1, sizeof(*a)))) goto nomem;
    out->arena_ = a;
    if (secrets->n && (!(x.mats[0] = calloc(secrets->n, sizeof(*x.mats[0]))) ||
                       !(x.mats[1] = calloc(secrets->n, sizeof(*x.mats[1])))))
        goto nomem;
    if (ings->n && !(acc = malloc(ings->n * sizeof(*acc)))) goto nomem;

    for (i = 0; i < ings->n && !oom; i++) {
        const struct model_ingress *ing = (const struct model_ingress *)ings->items[i];
        char id[300];
        if (!sb_is_ours(cache, ing, ingress_class)) {
            log_debug("ingress_ignored", "object=%s reason=\"other class\"",
                      model_object_id(&ing->meta, id, sizeof(id)));
            continue;
        }
        if (sb_collect(&x, ing, &routes, &defaults, &oom)) {
            out->n_rejected += !oom;
            continue;
        }
        out->n_ingresses++;
        acc[out->n_ingresses - 1] = ing;
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

    /* TLS hosts: the routed Ingresses' spec.tls, oldest Ingress first */
    sb_sort(acc, out->n_ingresses, sizeof(*acc), sb_cmp_acc);
    for (i = 0; i < out->n_ingresses; i++)
        if (sb_tls_claims(&x, acc[i], &claims)) goto nomem;
    sb_sort(claims.v, claims.n, sizeof(*claims.v), sb_cmp_claim);
    if (claims.n && !(th = malloc(claims.n * sizeof(*th)))) goto nomem;
    if (sb_tls_settle(&x, &claims, th, &n_th)) goto nomem;
    if (o->default_cert && strchr(o->default_cert, '/')) {
        const char *slash = strchr(o->default_cert, '/');
        char dns[256];
        snprintf(dns, sizeof(dns), "%.*s", (int)(slash - o->default_cert), o->default_cert);
        if (!(def = sb_material(&x, dns, slash + 1, 0))) goto nomem;
        if (!def->v.usable) def = NULL; /* logged below; the data plane's own one serves */
    }
    if (!def) {
        routes.n = sb_drop_unprotected(&x, routes.v, routes.n, th, n_th, &oom);
        if (oom) goto nomem;
    }

    /* clusters: the distinct service ports the surviving routes and default point at */
    if (!(cl = malloc((routes.n + defaults.n + 1) * sizeof(*cl)))) goto nomem;
    for (i = 0; i < routes.n; i++)
        cl[n_cl++] = sb_cluster_of(&routes.v[i]);
    for (i = 0; i < defaults.n; i++)
        cl[n_cl++] = sb_cluster_of(&defaults.v[i]);
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
        snprintf(name, sizeof(name), "%s/%s:%ld%s", cl[i].svc->meta.ns, cl[i].svc->meta.name,
                 cl[i].sp->port, cl[i].tls ? "+tls" : "");
        if (!(c->name = sb_strdup(a, name))) goto nomem;
        c->lb = SNAPWIRE_LB_ROUND_ROBIN;
        c->tls = (uint8_t)cl[i].tls;
        c->tls_sni = cl[i].tls ? cl[i].sni : "";
        sb_emit(cl[i].tls_ca);
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
        if (!(r->hsts = sb_strdup(a, routes.v[i].ing->hsts))) goto nomem;
        /* forced, or the host has TLS somewhere (any Ingress) and the winner did not opt out */
        if (routes.v[i].ing->force_ssl_redirect ||
            (routes.v[i].ing->ssl_redirect && sb_has_tls(th, n_th, routes.v[i].host)))
            r->flags |= SNAPWIRE_ROUTE_SSL_REDIRECT;
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

    /* certificates: the ones referenced, in Secret order (server use before CA use) */
    for (i = 0; i < n_th; i++) {
        if (!th[i].cert) th[i].cert = def;
        if (!th[i].cert) continue; /* not emitted: see below */
        sb_emit(th[i].cert);
        sb_emit(th[i].cert2);
        sb_emit(th[i].client_ca);
    }
    sb_emit(def);
    for (k = 0; k < secrets->n; k++)
        for (u = 0; u < 2; u++)
            if ((m = x.mats[u][k]) && m->emit) m->index = n_certs++;
    s->n_certs = n_certs;
    if (!(s->certs = sb_alloc(a, n_certs * sizeof(*s->certs)))) goto nomem;
    for (k = 0; k < secrets->n; k++) {
        for (u = 0; u < 2; u++) {
            struct snapwire_cert *sc;
            if (!(m = x.mats[u][k]) || !m->emit) continue;
            sc = &s->certs[m->index];
            sc->name = m->id;
            sc->chain_pem = m->v.chain;
            sc->key_pem = u ? "" : m->v.key;
            if (!(sc->fingerprint = sb_strdup(a, m->v.info.fingerprint))) goto nomem;
            sc->not_after = m->v.info.not_after > 0 ? (uint64_t)m->v.info.not_after : 0;
        }
    }
    /* a host with neither its own nor a default certificate is left to the data plane's */
    for (i = 0, k = 0; i < n_th; i++)
        if (th[i].cert) k++;
    s->n_tls_hosts = (uint32_t)k;
    if (!(s->tls_hosts = sb_alloc(a, k * sizeof(*s->tls_hosts)))) goto nomem;
    for (i = 0, k = 0; i < n_th; i++) {
        struct snapwire_tls_host *t;
        if (!th[i].cert) continue;
        t = &s->tls_hosts[k++];
        if (!(t->host = sb_strdup(a, th[i].host))) goto nomem;
        t->cert = sb_mat_index(th[i].cert);
        t->cert2 = sb_mat_index(th[i].cert2);
        t->client_ca = sb_mat_index(th[i].client_ca);
        t->client_verify = th[i].client_ca ? th[i].verify : SNAPWIRE_CLIENT_VERIFY_OFF;
    }
    for (i = 0; i < n_cl; i++)
        s->clusters[i].tls_ca = sb_mat_index(cl[i].tls_ca);
    s->meta.default_cert = sb_mat_index(def);
    sb_log_materials(&x);
    s->meta.default_max_body = defaults.n ? defaults.v[0].ing->max_body : SNAPWIRE_BODY_DEFAULT;
    if (!(s->meta.source = sb_strdup(a, source ? source : ""))) goto nomem;
    rc = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    certcheck_sweep();
    /* the materials live in the arena: their host lists go before it does */
    for (m = x.all; m; m = m->next)
        free(m->hosts);
    if (rc) snapbuild_free(out);
    free(x.mats[0]);
    free(x.mats[1]);
    free(acc);
    free(claims.v);
    free(th);
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
