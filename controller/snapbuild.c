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
 * Balancing policy: each backend's policy is its Service's annotations with the Ingress's
 * overrides (model_policy_resolve; for a Gateway backendRef, its policy's); it is part of
 * the cluster identity and fills the cluster's v5/v6 fields; endpoint weights come from the
 * Service; the policy annotations a Service in use could not have are reported
 * (annotation_ignored, InvalidAnnotation) while it serves with the defaults.
 * TLS: spec.tls hosts of the routed Ingresses become tls_hosts (oldest Ingress first; a
 * second certificate of the other key type becomes cert2), each Secret's certificate is
 * checked by certcheck (which keeps the last good one), referenced Secrets become certs;
 * upstream TLS makes a cluster of its own ("+tls"). A client-certificate or upstream CA that
 * cannot be used refuses its Ingress (fail closed); a bad server certificate does not (its
 * hosts fall back to the last good or the default certificate, and the Ingress gets an
 * InvalidCertificate/SecretNotFound rejection for Events).
 * Gateways (strait.dev/v1alpha1): gwbuild.c turns each into route candidates (listener
 * attachment, hostname intersection, resolved backendRefs and mirrors) and status notes; here
 * they join the Ingress candidates in one key sort and settle (a conflict needs the same host,
 * path, match, method and conditions and overlapping scope: listener kinds and wildcard depth),
 * one route order (sb_cmp_route), shared clusters, the v4 sections (conds, backends, filters,
 * header edits, shared per rule), HTTPS listeners' certificateRefs as TLS claims next to the
 * Ingresses', and out->gateways (conditions) at the end.
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
#include "gwbuild.h"
#include "log.h"
#include "meshbuild.h"

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

/*
 * Scope of a route candidate, for conflicts: the listener kinds it serves, for hosts one
 * label below a wildcard vhost (or the vhost's own name) and, for Gateway wildcards
 * (SNAPWIRE_ROUTE_WILD_ANY), deeper hosts too. A loser whose scope is not covered by the
 * winners of its key stays behind them (the router takes the first route that holds).
 */
#define SB_SCOPE_PLAIN 1
#define SB_SCOPE_TLS 2
#define SB_SCOPE_DEEP_SHIFT 2
#define SB_SCOPE_INGRESS (SB_SCOPE_PLAIN | SB_SCOPE_TLS)

/* A route (or a default backend, host == NULL) before conflicts are settled. */
struct sb_cand {
    const char *host;
    const char *path;
    uint8_t match;
    const struct model_ingress *ing; /* NULL for a Gateway route */
    const struct model_meta *obj;    /* the Ingress's or the Gateway's: conflict priority */
    struct gwb_route *gr;            /* Gateway routes: the candidate gwbuild made */
    struct gwb_gateway *gst;         /* Gateway routes: its status notes */
    uint8_t method;                  /* enum snapwire_method */
    uint32_t n_hdr, n_query;         /* header and query conditions */
    const char *sig;                 /* the conditions, canonical ("" none) */
    uint8_t scope;                   /* SB_SCOPE_* */
    int vh_regex;                    /* its vhost has REGEX routes (ordering) */
    /*
     * position inside its object: a repeated path keeps its first use (Ingress); Gateway:
     * routes[] index << 16 | rule << 8 | match
     */
    size_t order;
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

/*
 * Reports the policy annotations of svc that were not usable (the Service is served with
 * those keys' defaults): an annotation_ignored line and an InvalidAnnotation rejection (for a
 * Warning Event on the Service) each. Returns 0, or -1 when out of memory.
 */
static int sb_service_problems(struct snapbuild_result *out, const struct model_service *svc)
{
    char id[300], fq[600], q[1200];
    size_t i;

    for (i = 0; i < svc->n_problems; i++) {
        log_warn("annotation_ignored", "file=%s kind=Service object=%s annotation=%s reason=%s",
                 model_log_value(fq, sizeof(fq), svc->meta.source),
                 model_object_id(&svc->meta, id, sizeof(id)), svc->problems[i].key,
                 log_quote(q, sizeof(q), svc->problems[i].message));
        if (sb_add_rejection(out, &svc->meta, "InvalidAnnotation", svc->problems[i].message))
            return -1;
    }
    return 0;
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
        c.obj = &ing->meta;
        c.sig = "";
        c.scope = SB_SCOPE_INGRESS;
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
            c.obj = &ing->meta;
            c.sig = "";
            c.scope = SB_SCOPE_INGRESS;
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

/*
 * Conflict priority of objects (Ingresses and Gateways alike): oldest first (missing
 * timestamp = newest), then namespace/name, then kind (Ingress before Gateway).
 */
static int sb_cmp_obj(const struct model_meta *a, const struct model_meta *b)
{
    int r;

    if (a == b) return 0;
    if (a->has_created != b->has_created) return a->has_created ? -1 : 1;
    if (a->has_created) {
        if (a->created_sec != b->created_sec) return a->created_sec < b->created_sec ? -1 : 1;
        if (a->created_nsec != b->created_nsec) return a->created_nsec < b->created_nsec ? -1 : 1;
    }
    if ((r = strcmp(a->ns, b->ns)) || (r = strcmp(a->name, b->name))) return r;
    return a->kind < b->kind ? -1 : a->kind > b->kind;
}

static int sb_cmp_ingress(const struct model_ingress *a, const struct model_ingress *b)
{
    return sb_cmp_obj(&a->meta, &b->meta);
}

/* Object, then position inside it. */
static int sb_cmp_owner(const struct sb_cand *a, const struct sb_cand *b)
{
    int r = sb_cmp_obj(a->obj, b->obj);

    if (r) return r;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Groups identical (host, path, match, method, conditions) keys, best claimant first. */
static int sb_cmp_key(const void *pa, const void *pb)
{
    const struct sb_cand *a = pa, *b = pb;
    int r;

    if ((r = strcmp(a->host, b->host)) || (r = strcmp(a->path, b->path))) return r;
    if (a->match != b->match) return a->match < b->match ? -1 : 1;
    if (a->method != b->method) return a->method < b->method ? -1 : 1;
    if ((r = strcmp(a->sig, b->sig))) return r;
    return sb_cmp_owner(a, b);
}

static int sb_same_key(const struct sb_cand *a, const struct sb_cand *b)
{
    return !strcmp(a->host, b->host) && !strcmp(a->path, b->path) && a->match == b->match &&
           a->method == b->method && !strcmp(a->sig, b->sig);
}

static size_t sb_match_len(const struct sb_cand *c)
{
    size_t n = strlen(c->path);

    /* "/foo/" matches like "/foo" for Prefix, so it is no more specific */
    if (c->match == SNAPWIRE_MATCH_PREFIX && n > 0 && c->path[n - 1] == '/') n--;
    return n;
}

static int sb_match_rank(uint8_t match)
{
    return match == SNAPWIRE_MATCH_EXACT ? 0 : match == SNAPWIRE_MATCH_REGEX ? 1 : 2;
}

/*
 * Final order: by host, then match order inside the vhost (the first route whose conditions
 * hold wins). Path first: Exact and Prefix by length (longest first, Exact before Prefix at
 * equal length: among the routes that can match one path this puts Exact before every
 * Prefix and longer prefixes first, and it is the order Ingress snapshots always had); in a
 * vhost with REGEX routes Exact, then REGEX, then Prefix, REGEX routes among themselves in
 * object order. Then method before none, more header conditions, more query conditions,
 * then the older object, namespace/name, position.
 */
static int sb_cmp_route(const void *pa, const void *pb)
{
    const struct sb_cand *a = pa, *b = pb;
    size_t la, lb;
    int r;

    if ((r = strcmp(a->host, b->host))) return r;
    if (a->vh_regex && sb_match_rank(a->match) != sb_match_rank(b->match))
        return sb_match_rank(a->match) < sb_match_rank(b->match) ? -1 : 1;
    if (a->match == SNAPWIRE_MATCH_REGEX) {
        if (strcmp(a->path, b->path)) {
            if ((r = sb_cmp_owner(a, b))) return r;
            return strcmp(a->path, b->path);
        }
    } else {
        la = sb_match_len(a);
        lb = sb_match_len(b);
        if (la != lb) return la > lb ? -1 : 1;
        if (a->match != b->match) return a->match == SNAPWIRE_MATCH_EXACT ? -1 : 1;
        if ((r = strcmp(a->path, b->path))) return r;
    }
    if ((a->method != 0) != (b->method != 0)) return a->method ? -1 : 1;
    if (a->n_hdr != b->n_hdr) return a->n_hdr > b->n_hdr ? -1 : 1;
    if (a->n_query != b->n_query) return a->n_query > b->n_query ? -1 : 1;
    if ((r = sb_cmp_owner(a, b))) return r;
    if (a->method != b->method) return a->method < b->method ? -1 : 1;
    return strcmp(a->sig, b->sig);
}

static int sb_cmp_default(const void *pa, const void *pb)
{
    const struct sb_cand *a = pa, *b = pb;

    return sb_cmp_ingress(a->ing, b->ing);
}

static const char *sb_match_name(const struct sb_cand *c)
{
    if (c->match == SNAPWIRE_MATCH_EXACT) return "Exact";
    if (c->match == SNAPWIRE_MATCH_REGEX) return "RegularExpression";
    return c->gr ? "PathPrefix" : "Prefix";
}

/* "spec.routes[R].rules[U].matches[M]" of a Gateway candidate */
static const char *sb_gw_at(const struct sb_cand *c, char *buf, size_t n)
{
    snprintf(buf, n, "spec.routes[%zu].rules[%zu].matches[%zu]", c->gr->rule->route,
             c->gr->rule->rule, c->gr->match);
    return buf;
}

/* Adds a Conflicted note to every listener a Gateway candidate is attached through. */
static void sb_gw_conflict_note(const struct sb_cand *c, const char *reason, const char *msg)
{
    size_t j;

    for (j = 0; j < c->gr->rule->gw->n_listeners && j < 64; j++)
        if (c->gr->listeners & ((uint64_t)1 << j))
            gwb_note_add(&c->gst->listeners[j].conflict, reason, "%s", msg);
}

/*
 * Logs a lost claim and records it against the loser (Ingress: a Conflict rejection; Gateway:
 * a Conflicted note on its listeners); partial: the loser still serves the requests the
 * winner does not take (other listener kinds, deeper hosts). Returns -1 when out of memory.
 */
static int sb_log_conflict(struct snapbuild_result *out, const struct sb_cand *w,
                           const struct sb_cand *l, int partial)
{
    char wid[300], lid[300], hq[600], pq[600], msg[1400], at[120];
    const char *wkind = model_kind_name(w->obj->kind);

    model_object_id(w->obj, wid, sizeof(wid));
    model_object_id(l->obj, lid, sizeof(lid));
    if (w->obj == l->obj) {
        if (l->gr)
            log_debug("gateway_duplicate_route", "object=%s host=%s path=%s route=%s", wid,
                      model_log_value(hq, sizeof(hq), l->host),
                      model_log_value(pq, sizeof(pq), l->path), sb_gw_at(l, at, sizeof(at)));
        else
            log_debug("ingress_duplicate_path", "object=%s host=%s path=%s", wid,
                      model_log_value(hq, sizeof(hq), w->host ? w->host : "-"),
                      model_log_value(pq, sizeof(pq), w->path ? w->path : "-"));
        return 0;
    }
    if (!l->gr) {
        if (!w->gr) {
            log_warn("ingress_conflict", "host=%s path=%s winner=%s loser=%s",
                     model_log_value(hq, sizeof(hq), w->host ? w->host : "-"),
                     model_log_value(pq, sizeof(pq), w->path ? w->path : "-"), wid, lid);
            if (!w->host)
                snprintf(msg, sizeof(msg),
                         "defaultBackend is served by %s (the oldest Ingress wins)", wid);
            else
                snprintf(msg, sizeof(msg),
                         "host %s path %s (%s) is served by %s (the oldest Ingress wins)",
                         w->host[0] ? w->host : "*", w->path,
                         w->match == SNAPWIRE_MATCH_EXACT ? "Exact" : "Prefix", wid);
        } else {
            log_warn("ingress_conflict", "host=%s path=%s winner=%s winner_kind=Gateway loser=%s",
                     model_log_value(hq, sizeof(hq), w->host),
                     model_log_value(pq, sizeof(pq), w->path), wid, lid);
            snprintf(msg, sizeof(msg),
                     "host %s path %s (%s) is served by Gateway %s (the oldest object wins)%s",
                     w->host[0] ? w->host : "*", w->path, sb_match_name(l), wid,
                     partial ? "; this Ingress still serves the requests of the other listener "
                               "kind (plain HTTP or HTTPS)"
                             : "");
        }
        return sb_add_rejection(out, &l->ing->meta, "Conflict", msg);
    }
    log_warn("gateway_conflict",
             "host=%s path=%s match=%s winner=%s winner_kind=%s loser=%s route=%s",
             model_log_value(hq, sizeof(hq), l->host), model_log_value(pq, sizeof(pq), l->path),
             sb_match_name(l), wid, wkind, lid, sb_gw_at(l, at, sizeof(at)));
    snprintf(msg, sizeof(msg),
             "%s: host %s path %s (%s) is served by %s %s (the oldest object wins)%s", at,
             l->host[0] ? l->host : "*", l->path, sb_match_name(l), wkind, wid,
             partial ? "; this route still serves the requests the winner does not take" : "");
    sb_gw_conflict_note(l, "RouteConflict", msg);
    return 0;
}

/*
 * Keeps the first of each run of equal keys (sorted best first) and the later ones whose
 * scope the earlier ones do not cover; returns the new count. Sets *oom when a conflict
 * could not be recorded.
 */
static size_t sb_settle(struct sb_cand *v, size_t n, struct snapbuild_result *res, int *oom)
{
    size_t i, j, out = 0, g0 = 0; /* g0: the first kept candidate of the current key */
    uint8_t covered = 0;

    for (i = 0; i < n; i++) {
        if (out > g0 && sb_same_key(&v[g0], &v[i])) {
            if (v[i].scope & covered) {
                const struct sb_cand *w = &v[g0];
                int partial = (v[i].scope & ~covered) != 0;
                for (j = g0; j < out; j++)
                    if (v[j].scope & v[i].scope) {
                        w = &v[j];
                        break;
                    }
                if (sb_log_conflict(res, w, &v[i], partial)) *oom = 1;
                if (w->obj != v[i].obj && !v[i].gr) res->n_conflicts++;
                if (!partial) continue;
            }
            covered |= v[i].scope;
            v[out++] = v[i];
            continue;
        }
        g0 = out;
        covered = v[i].scope;
        v[out++] = v[i];
    }
    return out;
}

/*
 * A cluster in the making: identity (namespace, service, service port number, then the
 * upstream TLS settings: a TLS backend is another cluster than the plain one; then the
 * resolved balancing policy: two Ingresses overriding one Service port's policy differently
 * get two clusters). has_p: the policy's resilience settings differ from the Service's own
 * (an Ingress or a Gateway backendRef overrode them), so the name gains "+p=" and p_hash.
 */
struct sb_cluster {
    const struct model_service *svc;
    const struct model_service_port *sp;
    int tls;
    const char *sni;       /* NULL without tls */
    struct sb_mat *tls_ca; /* NULL: not verified */
    struct model_policy pol;
    int has_p;
    uint32_t p_hash;
};

/*
 * The cluster of a backend of svc, with over's overrides (an Ingress's annotations or a
 * Gateway backendRef's policy; NULL: the Service's policy as is).
 */
static struct sb_cluster sb_cluster_make(const struct model_service *svc,
                                         const struct model_service_port *sp, int tls,
                                         const char *sni, struct sb_mat *tls_ca,
                                         const struct model_policy *over)
{
    struct sb_cluster k = {svc, sp, tls, sni, tls_ca, {0}, 0, 0};
    struct model_policy own;

    model_policy_resolve(&svc->policy, over, &k.pol);
    if (over && over->set) {
        model_policy_resolve(&svc->policy, NULL, &own);
        if (!model_policy_same_resilience(&own, &k.pol)) {
            k.has_p = 1;
            k.p_hash = model_policy_resilience_hash(&k.pol);
        }
    }
    return k;
}

static struct sb_cluster sb_cluster_of(const struct sb_cand *c)
{
    return sb_cluster_make(c->svc, c->sp, c->tls, c->sni, c->tls_ca,
                           c->ing ? &c->ing->policy : NULL);
}

static int sb_cmp_cluster(const struct sb_cluster *a, const struct sb_cluster *b)
{
    int r;

    if ((r = strcmp(a->svc->meta.ns, b->svc->meta.ns)) ||
        (r = strcmp(a->svc->meta.name, b->svc->meta.name)))
        return r;
    if (a->sp->port != b->sp->port) return a->sp->port < b->sp->port ? -1 : 1;
    if (a->tls != b->tls) return a->tls < b->tls ? -1 : 1;
    if (a->tls) {
        if ((r = strcmp(a->sni, b->sni))) return r;
        if (!a->tls_ca || !b->tls_ca) {
            if (a->tls_ca || b->tls_ca) return a->tls_ca ? 1 : -1;
        } else if ((r = strcmp(a->tls_ca->id, b->tls_ca->id))) {
            return r;
        }
    }
    return model_policy_cmp(&a->pol, &b->pol);
}

static const char *sb_lb_name(uint8_t lb)
{
    switch (lb) {
    case SNAPWIRE_LB_LEAST_REQUEST:
        return "least_request";
    case SNAPWIRE_LB_ROUND_ROBIN:
        return "round_robin";
    case SNAPWIRE_LB_RING_HASH:
        return "ring_hash";
    case SNAPWIRE_LB_MAGLEV:
        return "maglev";
    default:
        return "ewma";
    }
}

/*
 * The cluster's name: "ns/svc:port", "+tls" for upstream TLS, then, when not the default,
 * the balancing: "+round_robin" (any algorithm but ewma), "+hash=header:x-user" (or
 * cookie:NAME, source-ip, path), "+affinity=COOKIE", then "+p=HASH" when the overrides
 * (an Ingress's or a backendRef's) changed the resilience settings. Settings that come from the
 * Service itself do not add "+p=", so editing a Service annotation keeps the name and the data
 * plane carries the cluster's state over. Distinct identities get distinct names, except that two
 * TLS clusters of one port differing only in SNI or CA share one, as before.
 */
static void sb_cluster_name(const struct sb_cluster *k, char *buf, size_t len)
{
    static const char *const hash[] = {"", "header:", "cookie:", "source-ip", "path"};
    int n = snprintf(buf, len, "%s/%s:%ld%s", k->svc->meta.ns, k->svc->meta.name, k->sp->port,
                     k->tls ? "+tls" : "");

    if (n < 0 || (size_t)n >= len) return;
    if (k->pol.lb != SNAPWIRE_LB_EWMA)
        n += snprintf(buf + n, len - (size_t)n, "+%s", sb_lb_name(k->pol.lb));
    if ((size_t)n < len && k->pol.hash_on != SNAPWIRE_HASH_NONE &&
        k->pol.hash_on <= SNAPWIRE_HASH_PATH)
        n += snprintf(buf + n, len - (size_t)n, "+hash=%s%s", hash[k->pol.hash_on],
                      k->pol.hash_name);
    if ((size_t)n < len && k->pol.cookie[0])
        n += snprintf(buf + n, len - (size_t)n, "+affinity=%s", k->pol.cookie);
    if ((size_t)n < len && k->has_p) snprintf(buf + n, len - (size_t)n, "+p=%08x", k->p_hash);
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

/* sb_cmp_endpoint, then the higher weight first: which duplicate survives is deterministic */
static int sb_cmp_endpoint_w(const void *pa, const void *pb)
{
    const struct snapwire_endpoint *a = pa, *b = pb;
    int r = sb_cmp_endpoint(pa, pb);

    return r ? r : (a->weight > b->weight ? -1 : a->weight < b->weight);
}

static int sb_cmp_weight_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct model_weight *)elem)->name);
}

/* An endpoint's strait.dev/endpoint-weights weight: by pod name, else by address, else 1. */
static uint32_t sb_endpoint_weight(const struct model_service *svc, const char *pod,
                                   const char *address)
{
    const struct model_weight *w = NULL;

    if (!svc->n_weights) return 1;
    if (pod && pod[0])
        w = bsearch(pod, svc->weights, svc->n_weights, sizeof(*svc->weights), sb_cmp_weight_key);
    if (!w)
        w = bsearch(address, svc->weights, svc->n_weights, sizeof(*svc->weights),
                    sb_cmp_weight_key);
    return w ? w->weight : 1;
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
                eps->v[eps->n].weight = sb_endpoint_weight(k->svc, s->endpoints[e].target_name,
                                                           s->endpoints[e].addresses[a]);
                eps->n++;
            }
        }
    }
    if (eps->n - start > 1)
        qsort(eps->v + start, eps->n - start, sizeof(*eps->v), sb_cmp_endpoint_w);
    for (i = start, out = start; i < eps->n; i++) {
        if (out > start && !sb_cmp_endpoint(&eps->v[out - 1], &eps->v[i])) continue;
        eps->v[out++] = eps->v[i];
    }
    eps->n = out;
    return 0;
}

/* The v5/v6 policy fields of c from a resolved policy (strings into a); 0 or -1 (memory). */
static int sb_cluster_policy(struct snapbuild_arena *a, const struct model_policy *p,
                             struct snapwire_cluster *c)
{
    c->lb = p->lb;
    c->hash_on = p->hash_on;
    if (!(c->hash_name = sb_strdup(a, p->hash_name)) ||
        !(c->affinity_cookie = sb_strdup(a, p->cookie)) ||
        !(c->hc_path = sb_strdup(a, p->hc_path)) || !(c->hc_host = sb_strdup(a, p->hc_host)))
        return -1;
    c->hc_interval_ms = p->hc_interval_ms;
    c->hc_timeout_ms = p->hc_timeout_ms;
    c->hc_status_lo = p->hc_status_lo;
    c->hc_status_hi = p->hc_status_hi;
    c->hc_healthy = p->hc_healthy;
    c->hc_unhealthy = p->hc_unhealthy;
    c->od_consecutive = p->od_consecutive;
    c->od_base_ms = p->od_base_ms;
    c->od_max_ms = p->od_max_ms;
    c->od_max_percent = p->od_max_percent;
    c->cb_max_connections = p->cb_max_connections;
    c->cb_max_pending = p->cb_max_pending;
    c->cb_max_requests = p->cb_max_requests;
    c->rb_percent = p->rb_percent;
    c->rb_min_per_sec = p->rb_min_per_sec;
    c->slow_start_ms = p->slow_start_ms;
    return 0;
}

/* Index of cluster key in the sorted, unique array cl, or SNAPWIRE_NONE. */
static uint32_t sb_find_key(const struct sb_cluster *cl, size_t n, const struct sb_cluster *key)
{
    size_t lo = 0, hi = n, mid;
    int r;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = sb_cmp_cluster(key, &cl[mid]);
        if (!r) return (uint32_t)mid;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SNAPWIRE_NONE;
}

/* Index of the cluster for c in the sorted, unique array cl. */
static uint32_t sb_find_cluster(const struct sb_cluster *cl, size_t n, const struct sb_cand *c)
{
    struct sb_cluster key = sb_cluster_of(c);

    /* never NONE: every candidate's cluster was inserted */
    return sb_find_key(cl, n, &key);
}

/* ---- the mesh directory (--mesh; meshbuild.c): a plain cluster per Service port ---- */

struct sb_mesh {
    struct sb_cluster *cl;
    size_t n;
};

static int sb_mesh_count(void *arg, const struct model_service *svc,
                         const struct model_service_port *sp)
{
    (void)svc;
    (void)sp;
    (*(size_t *)arg)++;
    return 0;
}

static int sb_mesh_push(void *arg, const struct model_service *svc,
                        const struct model_service_port *sp)
{
    struct sb_mesh *m = arg;

    m->cl[m->n++] = sb_cluster_make(svc, sp, 0, NULL, NULL, NULL);
    return 0;
}

static uint32_t sb_mesh_cluster(void *arg, const struct model_service *svc,
                                const struct model_service_port *sp)
{
    const struct sb_mesh *m = arg;
    struct sb_cluster key = sb_cluster_make(svc, sp, 0, NULL, NULL, NULL);

    return sb_find_key(m->cl, m->n, &key);
}

/* The authorization sections of s and the policies' status, into the arena; 0 or -1. */
static int sb_authz(struct snapbuild_arena *a, const struct model_cache *cache,
                    const struct snapbuild_opts *o, struct snapwire_snapshot *s,
                    struct snapbuild_result *out, char *err, size_t errlen)
{
    struct authzbuild_result r;
    size_t i;
    int rc = -1;

    if (authzbuild_build(cache, o->trust_domain, &r, err, errlen)) return -1;
    s->meta.authz_default_deny = o->authz_default_deny ? 1 : 0;
    s->n_authz = (uint32_t)r.n_authz;
    s->n_principals = (uint32_t)r.n_principals;
    out->n_authz_policies = r.n_policies;
    out->n_authz_rejected = r.n_rejected;
    if (!(s->authz = sb_alloc(a, r.n_authz * sizeof(*s->authz))) ||
        !(s->principals = sb_alloc(a, r.n_principals * sizeof(*s->principals))) ||
        !(out->authz_policies = sb_alloc(a, r.n_policies * sizeof(*out->authz_policies))))
        goto done;
    if (r.n_policies) memcpy(out->authz_policies, r.policies, r.n_policies * sizeof(*r.policies));
    for (i = 0; i < r.n_authz; i++) {
        s->authz[i] = r.authz[i];
        if (!(s->authz[i].ns = sb_strdup(a, r.authz[i].ns)) ||
            !(s->authz[i].name = sb_strdup(a, r.authz[i].name)) ||
            !(s->authz[i].source = sb_strdup(a, r.authz[i].source)))
            goto done;
    }
    for (i = 0; i < r.n_principals; i++) {
        s->principals[i].kind = r.principals[i].kind;
        if (!(s->principals[i].value = sb_strdup(a, r.principals[i].value))) goto done;
    }
    rc = 0;
done:
    authzbuild_free(&r);
    return rc;
}

/* The mesh sections and META fields of s, into the arena; 0 or -1 (memory). */
static int sb_mesh_directory(struct snapbuild_arena *a, const struct model_cache *cache,
                             const struct snapbuild_opts *o, struct sb_cluster *cl, size_t n_cl,
                             struct snapwire_snapshot *s, char *err, size_t errlen)
{
    struct sb_mesh m = {cl, n_cl};
    struct meshbuild_result r;
    size_t i;
    int rc = -1;

    if (!(s->meta.trust_domain = sb_strdup(a, o->trust_domain)) ||
        !(s->meta.cluster_domain =
              sb_strdup(a, o->cluster_domain ? o->cluster_domain : "cluster.local")))
        return -1;
    if (meshbuild_build(cache, o->trust_domain, sb_mesh_cluster, &m, &r, err, errlen)) return -1;
    s->n_mesh_services = (uint32_t)r.n_services;
    s->n_mesh_ids = (uint32_t)r.n_ids;
    if (!(s->mesh_services = sb_alloc(a, r.n_services * sizeof(*s->mesh_services))) ||
        !(s->mesh_ids = sb_alloc(a, r.n_ids * sizeof(*s->mesh_ids))))
        goto done;
    for (i = 0; i < r.n_services; i++) {
        s->mesh_services[i] = r.services[i];
        if (!(s->mesh_services[i].ns = sb_strdup(a, r.services[i].ns)) ||
            !(s->mesh_services[i].name = sb_strdup(a, r.services[i].name)) ||
            !(s->mesh_services[i].address = sb_strdup(a, r.services[i].address)))
            goto done;
    }
    for (i = 0; i < r.n_ids; i++)
        if (!(s->mesh_ids[i].uri = sb_strdup(a, r.ids[i].uri))) goto done;
    rc = 0;
done:
    meshbuild_free(&r);
    return rc;
}

/* ---- TLS ---- */

/*
 * A host some Ingress's spec.tls or some Gateway HTTPS listener names, with the Secret it
 * gives (NULL: the default one).
 */
struct sb_claim {
    const char *host;
    const struct model_meta *obj;
    const struct model_ingress *ing; /* NULL for a Gateway listener's */
    struct gwb_gateway *gst;         /* Gateway: its notes, and the listener */
    size_t listener;
    size_t order; /* position inside its object */
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
    int ingress; /* some Ingress claims it (the ssl-redirect annotation looks at those) */
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
    if ((r = sb_cmp_obj(a->obj, b->obj))) return r;
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
            c = (struct sb_claim){host, &ing->meta, ing, NULL, 0, order++, m};
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

/* Logs a TLS host lost to an older object and records it against the loser. */
static int sb_tls_conflict(struct sb_ctx *x, const struct sb_claim *w, const struct sb_claim *l)
{
    char wid[300], lid[300], msg[1200];

    model_object_id(w->obj, wid, sizeof(wid));
    model_object_id(l->obj, lid, sizeof(lid));
    if (w->ing && l->ing) {
        log_warn("tls_conflict", "host=%s secret=%s winner=%s loser=%s loser_secret=%s", w->host,
                 w->m->id, wid, lid, l->m->id);
        snprintf(msg, sizeof(msg),
                 "TLS host %s is served with the certificate of secret %s from %s (the oldest "
                 "Ingress wins), not with secret %s",
                 w->host, w->m->id, wid, l->m->id);
    } else {
        log_warn("tls_conflict",
                 "host=%s secret=%s winner=%s winner_kind=%s loser=%s loser_kind=%s "
                 "loser_secret=%s",
                 w->host, w->m->id, wid, model_kind_name(w->obj->kind), lid,
                 model_kind_name(l->obj->kind), l->m->id);
        snprintf(msg, sizeof(msg),
                 "TLS host %s is served with the certificate of secret %s from %s %s (the "
                 "oldest object wins), not with secret %s",
                 w->host, w->m->id, model_kind_name(w->obj->kind), wid, l->m->id);
    }
    if (!l->ing) {
        gwb_note_add(&l->gst->listeners[l->listener].conflict, "HostnameConflict",
                     "spec.listeners[%zu]: %s", l->listener, msg);
        return 0;
    }
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
        t->ingress = w->ing != NULL;
        for (j = i + 1; j < cl->n && !strcmp(cl->v[j].host, w->host); j++) {
            const struct sb_claim *o = &cl->v[j];
            if (o->ing) t->ingress = 1;
            if (!t->cert || !sb_usable(o) || o->m == t->cert || o->m == t->cert2) continue;
            if (!t->cert2 && o->m->v.info.key_type != t->cert->v.info.key_type) {
                t->cert2 = o->m;
                continue;
            }
            if (o->obj == w->obj) {
                char id[300];
                log_debug("tls_duplicate_host", "object=%s host=%s secret=%s",
                          model_object_id(w->obj, id, sizeof(id)), o->host, o->m->id);
                continue;
            }
            if (sb_tls_conflict(x, w, o)) return -1;
        }
        i = j;
        if (ing && ing->auth_tls_secret.name[0] && ing->client_verify != MODEL_CLIENT_VERIFY_OFF) {
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

/* Whether an Ingress's spec.tls covers host (the name, else a wildcard of one label). */
static int sb_has_tls(const struct sb_th *th, size_t n, const char *host)
{
    const struct sb_th *t = sb_th_for(th, n, host);
    char wild[300];
    const char *dot;
    size_t lo = 0, hi = n, mid;
    int r;

    if (!t || t->ingress) return t != NULL;
    /* the exact name is only a Gateway's: an Ingress may still have the wildcard */
    if (host[0] == '*' || !(dot = strchr(host, '.'))) return 0;
    snprintf(wild, sizeof(wild), "*%s", dot);
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = strcmp(wild, th[mid].host);
        if (!r) return th[mid].ingress;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
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
        if (!v[i].ing) {
            /* a Gateway route on such a host: dropped too (fail closed), noted once */
            if (!v[i].gst->listeners ||
                (i && v[i - 1].obj == v[i].obj && !strcmp(v[i - 1].host, v[i].host)))
                continue;
            log_warn("routes_dropped", "host=%s object=%s kind=Gateway reason=%s", v[i].host,
                     model_object_id(v[i].obj, id, sizeof(id)), log_quote(q, sizeof(q), msg));
            sb_gw_conflict_note(&v[i], "HostnameConflict", msg);
            continue;
        }
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

/* ---- Gateways ---- */

static struct sb_cluster sb_cluster_of_gwb(const struct gwb_backend *b)
{
    /* a backendRef's policy overrides its Service's as an Ingress's annotations do */
    return sb_cluster_make(b->svc, b->sp, b->sp->app_https, b->sni, NULL, b->policy);
}

/* The cluster index of a resolved reference, SNAPWIRE_NONE for an unresolved one. */
static uint32_t sb_gwb_cluster(const struct sb_cluster *cl, size_t n, const struct gwb_backend *b)
{
    struct sb_cluster key;
    size_t lo = 0, hi = n, mid;
    int r;

    if (!b->svc) return SNAPWIRE_NONE;
    key = sb_cluster_of_gwb(b);
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = sb_cmp_cluster(&key, &cl[mid]);
        if (!r) return (uint32_t)mid;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SNAPWIRE_NONE;
}

/* Gateway route candidates of gwbuild as sb_cand. */
static int sb_gw_cands(struct gwb_set *gws, struct sb_vec *routes)
{
    struct sb_cand c;
    size_t i;

    for (i = 0; i < gws->n_routes; i++) {
        struct gwb_route *g = &gws->routes[i];
        const struct model_gw_match *mt = &g->rule->r->matches[g->match];
        memset(&c, 0, sizeof(c));
        c.host = g->host;
        c.path = mt->path;
        c.match = mt->path_type == MODEL_GW_PATH_EXACT   ? SNAPWIRE_MATCH_EXACT
                  : mt->path_type == MODEL_GW_PATH_REGEX ? SNAPWIRE_MATCH_REGEX
                                                         : SNAPWIRE_MATCH_PREFIX;
        c.obj = &g->rule->gw->meta;
        c.gr = g;
        c.gst = g->rule->st;
        c.method = (uint8_t)mt->method; /* model_gw_method has snapwire_method's order */
        c.n_hdr = (uint32_t)mt->n_headers;
        c.n_query = (uint32_t)mt->n_query;
        c.sig = g->rule->sigs[g->match];
        c.scope = g->kinds;
        if (g->flags & SNAPWIRE_ROUTE_WILD_ANY)
            c.scope |= (uint8_t)(g->kinds << SB_SCOPE_DEEP_SHIFT);
        c.order = g->rule->route << 16 | g->rule->rule << 8 | g->match;
        if (sb_push(routes, &c)) return -1;
    }
    return 0;
}

/*
 * The HTTPS listeners' certificateRefs of a served Gateway as TLS claims: each for the
 * listener's hostname or, without one, the hosts of the routes attached through it. Returns
 * 0, -1 when out of memory.
 */
static int sb_gw_claims(struct sb_ctx *x, struct gwb_gateway *g, struct sb_claims *out)
{
    const struct model_gateway *gw = g->gw;
    size_t j, k, h;
    struct sb_claim c;

    for (j = 0; j < gw->n_listeners; j++) {
        const struct model_gw_listener *l = &gw->listeners[j];
        struct gwb_listener *gl = &g->listeners[j];
        const char *one[1] = {l->hostname};
        const char **hosts = l->hostname[0] ? one : gl->hosts;
        size_t n_hosts = l->hostname[0] ? 1 : gl->n_hosts;
        if (l->protocol != MODEL_GW_HTTPS) continue;
        for (k = 0; k < l->n_cert_refs; k++) {
            const struct model_gw_cert_ref *ref = &l->cert_refs[k];
            struct sb_mat *m;
            if (strcmp(ref->ns, gw->meta.ns)) {
                gwb_note_add(&gl->refs, "RefNotPermitted",
                             "spec.listeners[%zu].tls.certificateRefs[%zu]: secret %s/%s is in "
                             "another namespace than the Gateway (no ReferenceGrant support)",
                             j, k, ref->ns, ref->name);
                continue;
            }
            if (!(m = sb_material(x, ref->ns, ref->name, 0))) return -1;
            if (m->v.bad) {
                if (m->found)
                    gwb_note_add(&gl->refs, "InvalidCertificateRef",
                                 "spec.listeners[%zu].tls.certificateRefs[%zu]: secret %s: %s (%s)",
                                 j, k, m->id, m->v.reason,
                                 m->v.last_good ? "its last good certificate is served"
                                                : "its hosts get the default certificate");
                else
                    gwb_note_add(&gl->refs, "InvalidCertificateRef",
                                 "spec.listeners[%zu].tls.certificateRefs[%zu]: %s (its hosts get "
                                 "the default certificate)",
                                 j, k, m->v.reason);
            }
            for (h = 0; h < n_hosts; h++) {
                c = (struct sb_claim){hosts[h], &gw->meta, NULL, g, j, j << 8 | k, m};
                if (sb_claim_push(out, &c) || sb_mat_host(m, hosts[h])) return -1;
            }
        }
    }
    return 0;
}

/* Growable arrays of the v4 sections. */
struct sb_v4 {
    struct snapwire_cond *conds;
    size_t n_conds, cap_conds;
    struct snapwire_backend *backends;
    size_t n_backends, cap_backends;
    struct snapwire_filter *filters;
    size_t n_filters, cap_filters;
    struct snapwire_hdr_edit *edits;
    size_t n_edits, cap_edits;
};

static void *sb_grow(void *v, size_t *cap, size_t n, size_t size)
{
    size_t c;
    void *p;

    if (n < *cap) return v;
    c = *cap ? *cap * 2 : 32;
    if (!(p = realloc(v, c * size))) return NULL;
    *cap = c;
    return p;
}

#define SB_PUSH(arr, n, cap, val)                                                                  \
    do {                                                                                           \
        void *p_ = sb_grow((arr), &(cap), (n), sizeof(*(arr)));                                    \
        if (!p_) return -1;                                                                        \
        (arr) = p_;                                                                                \
        (arr)[(n)++] = (val);                                                                      \
    } while (0)

static int sb_edits(struct snapbuild_arena *a, struct sb_v4 *v,
                    const struct model_gw_header_mod *hm, struct snapwire_filter *f)
{
    struct snapwire_hdr_edit e;
    size_t i;

    f->first_edit = (uint32_t)v->n_edits;
    for (i = 0; i < hm->n_set; i++) {
        e = (struct snapwire_hdr_edit){SNAPWIRE_HDR_SET, sb_strdup(a, hm->set[i].name),
                                       sb_strdup(a, hm->set[i].value)};
        if (!e.name || !e.value) return -1;
        SB_PUSH(v->edits, v->n_edits, v->cap_edits, e);
    }
    for (i = 0; i < hm->n_add; i++) {
        e = (struct snapwire_hdr_edit){SNAPWIRE_HDR_ADD, sb_strdup(a, hm->add[i].name),
                                       sb_strdup(a, hm->add[i].value)};
        if (!e.name || !e.value) return -1;
        SB_PUSH(v->edits, v->n_edits, v->cap_edits, e);
    }
    for (i = 0; i < hm->n_remove; i++) {
        e = (struct snapwire_hdr_edit){SNAPWIRE_HDR_REMOVE, sb_strdup(a, hm->remove[i]), ""};
        if (!e.name) return -1;
        SB_PUSH(v->edits, v->n_edits, v->cap_edits, e);
    }
    f->edit_count = (uint32_t)(v->n_edits - f->first_edit);
    return 0;
}

static uint8_t sb_path_mod(enum model_gw_path_mod m)
{
    return m == MODEL_GW_PATH_FULL           ? SNAPWIRE_PATH_FULL
           : m == MODEL_GW_PATH_PREFIX_MATCH ? SNAPWIRE_PATH_PREFIX
                                             : SNAPWIRE_PATH_KEEP;
}

/* A Gateway timeout (ms; -1 unset, 0 none) as snapwire's. */
static uint32_t sb_timeout(int64_t ms)
{
    if (ms < 0) return SNAPWIRE_TIMEOUT_DEFAULT;
    if (ms == 0) return SNAPWIRE_TIMEOUT_NONE;
    return ms >= (int64_t)UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)ms;
}

/* Fills the Gateway parts of route r from candidate c. Returns 0, -1 when out of memory. */
static int sb_gw_route(struct snapbuild_arena *a, struct sb_v4 *v, const struct sb_cluster *cl,
                       size_t n_cl, const struct sb_cand *c, struct snapwire_route *r)
{
    struct gwb_rule *gr = c->gr->rule;
    const struct model_gw_rule *rl = gr->r;
    const struct model_gw_match *mt = &rl->matches[c->gr->match];
    char src[400];
    size_t i, k;

    r->flags = c->gr->flags;
    r->method = c->method;
    r->max_body = SNAPWIRE_BODY_DEFAULT;
    r->hsts = "";
    snprintf(src, sizeof(src), "gateway:%s/%s", gr->gw->meta.ns, gr->gw->meta.name);
    if (!(r->source = sb_strdup(a, src))) return -1;
    /* conditions: once per match, shared by its hostnames */
    if (gr->first_cond[c->gr->match] == SNAPWIRE_NONE) {
        gr->first_cond[c->gr->match] = (uint32_t)v->n_conds;
        for (i = 0; i < mt->n_headers; i++) {
            struct snapwire_cond cd;
            char *name = sb_strdup(a, mt->headers[i].name);
            if (!name) return -1;
            for (k = 0; name[k]; k++)
                if (name[k] >= 'A' && name[k] <= 'Z') name[k] = (char)(name[k] - 'A' + 'a');
            cd.kind = mt->headers[i].type == MODEL_GW_VALUE_REGEX ? SNAPWIRE_COND_HEADER_REGEX
                                                                  : SNAPWIRE_COND_HEADER_EXACT;
            cd.name = name;
            if (!(cd.value = sb_strdup(a, mt->headers[i].value))) return -1;
            SB_PUSH(v->conds, v->n_conds, v->cap_conds, cd);
        }
        for (i = 0; i < mt->n_query; i++) {
            struct snapwire_cond cd = {SNAPWIRE_COND_QUERY_EXACT, sb_strdup(a, mt->query[i].name),
                                       sb_strdup(a, mt->query[i].value)};
            if (!cd.name || !cd.value) return -1;
            SB_PUSH(v->conds, v->n_conds, v->cap_conds, cd);
        }
    }
    r->cond_count = (uint32_t)(mt->n_headers + mt->n_query);
    r->first_cond = r->cond_count ? gr->first_cond[c->gr->match] : 0;
    /* backends: one resolved backend that takes traffic goes straight into route.cluster */
    r->cluster = SNAPWIRE_NONE;
    if (rl->n_backends == 1 && gr->backends[0].svc && gr->backends[0].weight > 0) {
        r->cluster = sb_gwb_cluster(cl, n_cl, &gr->backends[0]);
    } else if (rl->n_backends) {
        if (gr->first_backend == SNAPWIRE_NONE) {
            gr->first_backend = (uint32_t)v->n_backends;
            for (i = 0; i < rl->n_backends; i++) {
                struct snapwire_backend b = {sb_gwb_cluster(cl, n_cl, &gr->backends[i]),
                                             gr->backends[i].weight};
                SB_PUSH(v->backends, v->n_backends, v->cap_backends, b);
            }
        }
        r->first_backend = gr->first_backend;
        r->backend_count = (uint32_t)rl->n_backends;
    }
    /* filters, in order; once per rule */
    if (rl->n_filters && gr->first_filter == SNAPWIRE_NONE) {
        gr->first_filter = (uint32_t)v->n_filters;
        for (i = 0; i < rl->n_filters; i++) {
            const struct model_gw_filter *mf = &rl->filters[i];
            struct snapwire_filter f;
            memset(&f, 0, sizeof(f));
            f.scheme = f.hostname = f.path = "";
            f.cluster = SNAPWIRE_NONE;
            switch (mf->type) {
            case MODEL_GW_FILTER_REQUEST_HEADER:
            case MODEL_GW_FILTER_RESPONSE_HEADER:
                f.type = mf->type == MODEL_GW_FILTER_REQUEST_HEADER
                             ? SNAPWIRE_FILTER_REQUEST_HEADERS
                             : SNAPWIRE_FILTER_RESPONSE_HEADERS;
                if (sb_edits(a, v, &mf->headers, &f)) return -1;
                break;
            case MODEL_GW_FILTER_REDIRECT:
                f.type = SNAPWIRE_FILTER_REDIRECT;
                if (!(f.scheme = sb_strdup(a, mf->scheme ? mf->scheme : ""))) return -1;
                f.port = (uint16_t)(mf->port > 0 && mf->port <= 65535 ? mf->port : 0);
                f.status = (uint16_t)mf->status_code;
                /* fall through - hostname and path as for a rewrite */
            case MODEL_GW_FILTER_URL_REWRITE:
                if (mf->type == MODEL_GW_FILTER_URL_REWRITE) f.type = SNAPWIRE_FILTER_REWRITE;
                if (!(f.hostname = sb_strdup(a, mf->hostname ? mf->hostname : "")) ||
                    !(f.path = sb_strdup(a, mf->path ? mf->path : "")))
                    return -1;
                f.path_mod = sb_path_mod(mf->path_mod);
                break;
            case MODEL_GW_FILTER_MIRROR:
                f.type = SNAPWIRE_FILTER_MIRROR;
                f.cluster = sb_gwb_cluster(cl, n_cl, &gr->mirrors[i]);
                f.mirror_permille =
                    (uint32_t)(mf->mirror_percent > 0 ? mf->mirror_percent * 10 : 0);
                break;
            }
            SB_PUSH(v->filters, v->n_filters, v->cap_filters, f);
        }
    }
    r->first_filter = rl->n_filters ? gr->first_filter : 0;
    r->filter_count = (uint32_t)rl->n_filters;
    r->request_timeout_ms = sb_timeout(rl->request_timeout_ms);
    r->backend_timeout_ms = sb_timeout(rl->backend_timeout_ms);
    if (rl->has_retry) {
        r->retry_attempts =
            (uint8_t)(rl->retry_attempts > SNAPWIRE_MAX_RETRIES ? SNAPWIRE_MAX_RETRIES
                      : rl->retry_attempts < 0                  ? 0
                                                                : rl->retry_attempts);
        for (i = 0; i < rl->n_retry_codes; i++) {
            int code = rl->retry_codes[i];
            if (code >= 500 && code < 564) r->retry_codes_lo |= (uint64_t)1 << (code - 500);
            if (code >= 564 && code <= 599) r->retry_codes_hi |= (uint64_t)1 << (code - 564);
        }
        r->retry_backoff_ms = rl->retry_backoff_ms <= 0 ? 0
                              : rl->retry_backoff_ms >= (int64_t)UINT32_MAX
                                  ? UINT32_MAX
                                  : (uint32_t)rl->retry_backoff_ms;
    }
    return 0;
}

static int sb_cond(struct snapbuild_arena *a, struct snapbuild_condition *c, const char *type,
                   int ok, const char *reason, const char *msg)
{
    c->type = type;
    c->status = ok ? "True" : "False";
    return (c->reason = sb_strdup(a, reason)) && (c->message = sb_strdup(a, msg)) ? 0 : -1;
}

/* A note's message with "(and N more)" when it stands for several problems. */
static const char *sb_note_msg(const struct gwb_note *n, char *buf, size_t len)
{
    if (n->n > 1)
        snprintf(buf, len, "%s (and %u more)", n->msg, n->n - 1);
    else
        snprintf(buf, len, "%s", n->msg);
    return buf;
}

/* The status of every Gateway into out->gateways. Returns 0, -1 when out of memory. */
static int sb_gw_status(struct snapbuild_result *out, struct gwb_set *gws)
{
    struct snapbuild_arena *a = out->arena_;
    char msg[1600], src[300], q[800];
    size_t i, j, r;

    if (!gws->n_gws) return 0;
    if (!(out->gateways = sb_alloc(a, gws->n_gws * sizeof(*out->gateways)))) return -1;
    out->n_gateways = gws->n_gws;
    for (i = 0; i < gws->n_gws; i++) {
        struct gwb_gateway *g = &gws->gws[i];
        const struct model_gateway *gw = g->gw;
        struct snapbuild_gateway *st = &out->gateways[i];
        int ok = !g->invalid.reason;
        const struct gwb_note *refs = NULL;
        unsigned n_refs = 0;
        if (!(st->ns = sb_strdup(a, gw->meta.ns)) || !(st->name = sb_strdup(a, gw->meta.name)) ||
            !(st->uid = sb_strdup(a, gw->meta.uid ? gw->meta.uid : "")) ||
            !(st->resource_version =
                  sb_strdup(a, gw->meta.resource_version ? gw->meta.resource_version : "")))
            return -1;
        st->generation = gw->generation;
        if (ok) {
            out->n_gateways_served++;
            if (sb_cond(a, &st->conds[0], "Accepted", 1, "Accepted", "Accepted") ||
                sb_cond(a, &st->conds[1], "Programmed", 1, "Programmed",
                        "its routes are in the snapshot (those that lost a conflict excepted: see "
                        "the listeners' Conflicted conditions)"))
                return -1;
        } else {
            if (!gw->invalid) {
                out->n_gateways_rejected++;
                log_warn("object_rejected", "file=%s kind=Gateway object=%s reason=%s",
                         model_log_value(src, sizeof(src), gw->meta.source),
                         model_object_id(&gw->meta, msg, sizeof(msg)),
                         log_quote(q, sizeof(q), g->invalid.msg));
            }
            snprintf(msg, sizeof(msg), "not served: %s", g->invalid.msg);
            if (sb_cond(a, &st->conds[0], "Accepted", 0, g->invalid.reason, g->invalid.msg) ||
                sb_cond(a, &st->conds[1], "Programmed", 0, "Invalid", msg))
                return -1;
        }
        /* ResolvedRefs: the listeners' problems first (field order), then the routes' */
        for (j = 0; j < gw->n_listeners && g->listeners; j++) {
            if (g->listeners[j].refs.reason && !refs) refs = &g->listeners[j].refs;
            n_refs += g->listeners[j].refs.n;
        }
        if (g->refs.reason && !refs) refs = &g->refs;
        n_refs += g->refs.n;
        if (gw->invalid) {
            if (sb_cond(a, &st->conds[2], "ResolvedRefs", 0, "Invalid",
                        "references not checked: the Gateway is invalid"))
                return -1;
        } else if (refs) {
            struct gwb_note sum = *refs;
            sum.n = n_refs;
            if (sb_cond(a, &st->conds[2], "ResolvedRefs", 0, refs->reason,
                        sb_note_msg(&sum, msg, sizeof(msg))))
                return -1;
        } else if (sb_cond(a, &st->conds[2], "ResolvedRefs", 1, "ResolvedRefs",
                           "every reference resolved")) {
            return -1;
        }
        if (!gw->n_listeners || !g->listeners) continue;
        if (!(st->listeners = sb_alloc(a, gw->n_listeners * sizeof(*st->listeners)))) return -1;
        st->n_listeners = gw->n_listeners;
        for (j = 0; j < gw->n_listeners; j++) {
            const struct model_gw_listener *l = &gw->listeners[j];
            struct gwb_listener *gl = &g->listeners[j];
            struct snapbuild_gw_listener *sl = &st->listeners[j];
            if (!(sl->name = sb_strdup(a, l->name))) return -1;
            for (r = 0; r < gw->n_routes && r < 64; r++)
                if (g->served[r] & ((uint64_t)1 << j)) sl->attached_routes++;
            snprintf(msg, sizeof(msg),
                     "Accepted (port %ld is informational: the data plane's %s listeners serve "
                     "it)",
                     l->port,
                     l->protocol == MODEL_GW_HTTPS ? "TLS (--listen-tls)" : "plain (--listen)");
            if (sb_cond(a, &sl->conds[0], "Accepted", 1, "Accepted", msg)) return -1;
            if (!ok) {
                if (sb_cond(a, &sl->conds[1], "Programmed", 0, "Invalid",
                            "not served: the Gateway is not accepted"))
                    return -1;
            } else {
                if (l->protocol == MODEL_GW_HTTPS && !l->hostname[0] && !gl->n_hosts)
                    snprintf(msg, sizeof(msg),
                             "Programmed (no hostname and no route hostnames: its certificate "
                             "claims no TLS host; TLS clients get the default certificate)");
                else
                    snprintf(msg, sizeof(msg), "Programmed");
                if (sb_cond(a, &sl->conds[1], "Programmed", 1, "Programmed", msg)) return -1;
            }
            if (gl->refs.reason) {
                if (sb_cond(a, &sl->conds[2], "ResolvedRefs", 0, gl->refs.reason,
                            sb_note_msg(&gl->refs, msg, sizeof(msg))))
                    return -1;
            } else if (sb_cond(a, &sl->conds[2], "ResolvedRefs", 1, "ResolvedRefs",
                               "every reference resolved")) {
                return -1;
            }
            if (gl->conflict.reason) {
                if (sb_cond(a, &sl->conds[3], "Conflicted", 1, gl->conflict.reason,
                            sb_note_msg(&gl->conflict, msg, sizeof(msg))))
                    return -1;
            } else if (sb_cond(a, &sl->conds[3], "Conflicted", 0, "NoConflicts", "")) {
                return -1;
            }
        }
    }
    return 0;
}

int snapbuild_build(const struct model_cache *cache, const char *ingress_class, const char *source,
                    struct snapbuild_result *out, char *err, size_t errlen)
{
    struct snapbuild_opts o = {.ingress_class = ingress_class, .source = source};

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
    char name[1024], src[300];
    int oom = 0, rc = -1;
    struct gwb_set gws = {0};
    struct sb_v4 v4 = {0};

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
    /* Gateways: their routes join the Ingresses' in one order */
    if (gwbuild_collect(cache, &gws) || sb_gw_cands(&gws, &routes)) goto nomem;

    sb_sort(routes.v, routes.n, sizeof(*routes.v), sb_cmp_key);
    routes.n = sb_settle(routes.v, routes.n, out, &oom);
    if (oom) goto nomem;
    /* vhosts with REGEX routes order Exact, REGEX, Prefix (the candidates are by host now) */
    for (i = 0; i < routes.n; i = e0) {
        int rx = 0;
        for (e0 = i; e0 < routes.n && !strcmp(routes.v[e0].host, routes.v[i].host); e0++)
            rx |= routes.v[e0].match == SNAPWIRE_MATCH_REGEX;
        for (k = i; k < e0; k++)
            routes.v[k].vh_regex = rx;
    }
    sb_sort(routes.v, routes.n, sizeof(*routes.v), sb_cmp_route);
    sb_sort(defaults.v, defaults.n, sizeof(*defaults.v), sb_cmp_default);
    for (i = 1; i < defaults.n; i++) {
        if (sb_log_conflict(out, &defaults.v[0], &defaults.v[i], 0)) goto nomem;
        out->n_conflicts++;
    }
    if (defaults.n > 1) defaults.n = 1;

    /* TLS hosts: the routed Ingresses' spec.tls, oldest Ingress first */
    sb_sort(acc, out->n_ingresses, sizeof(*acc), sb_cmp_acc);
    for (i = 0; i < out->n_ingresses; i++)
        if (sb_tls_claims(&x, acc[i], &claims)) goto nomem;
    for (i = 0; i < gws.n_gws; i++)
        if (!gws.gws[i].invalid.reason && sb_gw_claims(&x, &gws.gws[i], &claims)) goto nomem;
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
    /* what each Gateway route is served through, for the listeners' attachedRoutes */
    for (i = 0, e0 = routes.n + defaults.n + 1; i < routes.n; i++) {
        const struct gwb_route *g = routes.v[i].gr;
        if (!g) continue;
        if (g->rule->route < 64) routes.v[i].gst->served[g->rule->route] |= g->listeners;
        e0 += g->rule->r->n_backends + g->rule->r->n_filters;
    }

    /* clusters: the distinct service ports the surviving routes (their backends and mirrors)
     * and the default point at, and with --mesh every Service port of the mesh directory */
    if (o->mesh) meshbuild_each_port(cache, sb_mesh_count, &e0);
    if (!(cl = malloc(e0 * sizeof(*cl)))) goto nomem;
    for (i = 0; i < routes.n; i++) {
        const struct gwb_rule *gr = routes.v[i].gr ? routes.v[i].gr->rule : NULL;
        if (!gr) {
            cl[n_cl++] = sb_cluster_of(&routes.v[i]);
            continue;
        }
        for (k = 0; k < gr->r->n_backends; k++)
            if (gr->backends[k].svc) cl[n_cl++] = sb_cluster_of_gwb(&gr->backends[k]);
        for (k = 0; k < gr->r->n_filters; k++)
            if (gr->r->filters[k].type == MODEL_GW_FILTER_MIRROR && gr->mirrors[k].svc)
                cl[n_cl++] = sb_cluster_of_gwb(&gr->mirrors[k]);
    }
    for (i = 0; i < defaults.n; i++)
        cl[n_cl++] = sb_cluster_of(&defaults.v[i]);
    if (o->mesh) {
        struct sb_mesh mp = {cl, n_cl};
        meshbuild_each_port(cache, sb_mesh_push, &mp);
        n_cl = mp.n;
    }
    sb_sort(cl, n_cl, sizeof(*cl), sb_cmp_cluster_q);
    for (i = 0, e0 = 0; i < n_cl; i++)
        if (!e0 || sb_cmp_cluster(&cl[e0 - 1], &cl[i])) cl[e0++] = cl[i];
    n_cl = e0;
    /* each Service in use whose policy annotations were not all usable: once per build */
    for (i = 0; i < n_cl; i++)
        if ((!i || cl[i - 1].svc != cl[i].svc) && sb_service_problems(out, cl[i].svc)) goto nomem;

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
        sb_cluster_name(&cl[i], name, sizeof(name));
        if (!(c->name = sb_strdup(a, name))) goto nomem;
        if (sb_cluster_policy(a, &cl[i].pol, c)) goto nomem;
        c->tls = (uint8_t)cl[i].tls;
        /* a Gateway backend's SNI lives in gwbuild's memory, which goes with the build */
        if (!(c->tls_sni = sb_strdup(a, cl[i].tls ? cl[i].sni : ""))) goto nomem;
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
        if (routes.v[i].gr) {
            if (sb_gw_route(a, &v4, cl, n_cl, &routes.v[i], r) ||
                !(r->path = sb_strdup(a, routes.v[i].path)))
                goto nomem;
            continue;
        }
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
    if (o->mesh && (sb_mesh_directory(a, cache, o, cl, n_cl, s, err, errlen) ||
                    sb_authz(a, cache, o, s, out, err, errlen)))
        goto nomem;
    /* the v4 sections, into the arena */
    s->n_conds = (uint32_t)v4.n_conds;
    s->n_backends = (uint32_t)v4.n_backends;
    s->n_filters = (uint32_t)v4.n_filters;
    s->n_hdr_edits = (uint32_t)v4.n_edits;
    if (!(s->conds = sb_alloc(a, v4.n_conds * sizeof(*s->conds))) ||
        !(s->backends = sb_alloc(a, v4.n_backends * sizeof(*s->backends))) ||
        !(s->filters = sb_alloc(a, v4.n_filters * sizeof(*s->filters))) ||
        !(s->hdr_edits = sb_alloc(a, v4.n_edits * sizeof(*s->hdr_edits))))
        goto nomem;
    if (v4.n_conds) memcpy(s->conds, v4.conds, v4.n_conds * sizeof(*s->conds));
    if (v4.n_backends) memcpy(s->backends, v4.backends, v4.n_backends * sizeof(*s->backends));
    if (v4.n_filters) memcpy(s->filters, v4.filters, v4.n_filters * sizeof(*s->filters));
    if (v4.n_edits) memcpy(s->hdr_edits, v4.edits, v4.n_edits * sizeof(*s->hdr_edits));
    if (sb_gw_status(out, &gws)) goto nomem;
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
    gwbuild_free(&gws);
    free(v4.conds);
    free(v4.backends);
    free(v4.filters);
    free(v4.edits);
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
