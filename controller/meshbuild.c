/*
 * meshbuild: the mesh directory (see meshbuild.h). For every Service with a ClusterIP (not
 * headless, not ExternalName) and every port: one record per ClusterIP (canonical text, so the
 * data plane can compare strings), the port's cluster from the caller, the protocol, and the
 * pods behind the port's ready EndpointSlice endpoints (by targetRef to a Pod, else by pod IP):
 * mtls is 1 when there is at least one and every one is meshed, with their identities
 * spiffe://<td>/ns/<ns>/sa/<serviceaccount>, sorted and unique.
 * Not here: clusters and endpoints (snapbuild), the flags (main.c).
 * Invariants: output sorted by (address, port) with no duplicate (a ClusterIP claimed twice
 * goes to the first Service by namespace/name); deterministic.
 */
#include "meshbuild.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "meshca.h"

#define MB_ADDR 46 /* INET6_ADDRSTRLEN */

/* A pod IP, for endpoints without a targetRef. */
struct mb_ip {
    const char *ns, *ip;
    const struct model_pod *pod;
};

struct mb_vec {
    void *v;
    size_t n, cap, size;
};

static void *mb_push(struct mb_vec *vec)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 32;
        void *v = realloc(vec->v, cap * vec->size);
        if (!v) return NULL;
        vec->v = v;
        vec->cap = cap;
    }
    return (char *)vec->v + vec->size * vec->n++;
}

/* ip as inet_ntop spells it into out (MB_ADDR bytes); 0, or -1 when it is not an IP. */
static int mb_canonical(const char *ip, char *out)
{
    unsigned char a[16];
    int af = strchr(ip, ':') ? AF_INET6 : AF_INET;

    if (inet_pton(af, ip, a) != 1 || !inet_ntop(af, a, out, MB_ADDR)) return -1;
    return 0;
}

/* The usable ClusterIPs of svc (none for a headless or ExternalName Service). */
static size_t mb_cluster_ips(const struct model_service *svc, char out[][MB_ADDR], size_t max)
{
    size_t i, n = 0;

    for (i = 0; i < svc->n_cluster_ips && n < max; i++)
        if (!mb_canonical(svc->cluster_ips[i], out[n])) n++;
    return n;
}

int meshbuild_each_port(const struct model_cache *cache, meshbuild_port_fn fn, void *arg)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_SERVICE];
    char ips[2][MB_ADDR];
    size_t i, p;

    for (i = 0; i < l->n; i++) {
        const struct model_service *svc = (const struct model_service *)l->items[i];
        if (!mb_cluster_ips(svc, ips, 2)) continue;
        for (p = 0; p < svc->n_ports; p++)
            if (!svc->ports[p].not_tcp && fn(arg, svc, &svc->ports[p])) return -1;
    }
    return 0;
}

/* Whether port is in the strait.dev/opaque-ports list ("5432,6379", ranges "4000-4010"). */
static int mb_opaque(const char *list, long port)
{
    const char *p = list;
    char *end;
    long lo, hi;

    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p) break;
        lo = strtol(p, &end, 10);
        hi = lo;
        if (end != p && *end == '-') {
            p = end + 1;
            hi = strtol(p, &end, 10);
        }
        if (end == p) { /* not a number: skip the entry */
            while (*p && *p != ',')
                p++;
            continue;
        }
        if (port >= lo && port <= hi) return 1;
        p = end;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

uint8_t meshbuild_proto(const struct model_service *svc, const struct model_service_port *sp)
{
    const char *app = sp->app_protocol ? sp->app_protocol : "";

    if (svc->opaque_ports && mb_opaque(svc->opaque_ports, sp->port))
        return SNAPWIRE_MESH_PROTO_OPAQUE;
    if (*app) {
        if (!strcasecmp(app, "http") || !strcmp(app, "kubernetes.io/h1c"))
            return SNAPWIRE_MESH_PROTO_HTTP;
        return SNAPWIRE_MESH_PROTO_OPAQUE;
    }
    if (!strcmp(sp->name, "http") || !strncmp(sp->name, "http-", 5))
        return SNAPWIRE_MESH_PROTO_HTTP;
    return SNAPWIRE_MESH_PROTO_DETECT;
}

static int mb_cmp_ip(const void *pa, const void *pb)
{
    const struct mb_ip *a = pa, *b = pb;
    int r = strcmp(a->ns, b->ns);

    if (r || (r = strcmp(a->ip, b->ip))) return r;
    /* one IP, two pods (a finished one and its successor): the running one first */
    r = !strcmp(a->pod->phase, "Running") - !strcmp(b->pod->phase, "Running");
    if (r) return -r;
    return strcmp(a->pod->meta.name, b->pod->meta.name);
}

/* The pod of endpoint e of a slice in namespace ns, or NULL. */
static const struct model_pod *mb_pod_of(const struct model_cache *cache, const struct mb_ip *ips,
                                         size_t n_ips, const char *ns,
                                         const struct model_slice_endpoint *e)
{
    struct mb_ip key = {ns, NULL, NULL};
    size_t lo, hi, mid;
    int r;

    if (e->target_pod && e->target_name[0])
        return (const struct model_pod *)model_cache_find(cache, MODEL_KIND_POD, ns,
                                                          e->target_name);
    if (!e->n_addresses) return NULL;
    key.ip = e->addresses[0];
    for (lo = 0, hi = n_ips; lo < hi;) {
        mid = lo + (hi - lo) / 2;
        r = strcmp(ips[mid].ns, key.ns);
        if (!r) r = strcmp(ips[mid].ip, key.ip);
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n_ips && !strcmp(ips[lo].ns, ns) && !strcmp(ips[lo].ip, key.ip)) return ips[lo].pod;
    return NULL;
}

static int mb_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct mb_svc {
    struct snapwire_mesh_service s;
    char **ids; /* sorted, unique, malloc'd */
    size_t n_ids;
    size_t order; /* position in the Service's ports: ties sort stably */
};

static int mb_cmp_svc(const void *pa, const void *pb)
{
    const struct snapwire_mesh_service *a = &((const struct mb_svc *)pa)->s;
    const struct snapwire_mesh_service *b = &((const struct mb_svc *)pb)->s;
    int r = strcmp(a->address, b->address);

    if (r) return r;
    if (a->port != b->port) return a->port < b->port ? -1 : 1;
    if ((r = strcmp(a->ns, b->ns)) || (r = strcmp(a->name, b->name))) return r;
    size_t oa = ((const struct mb_svc *)pa)->order, ob = ((const struct mb_svc *)pb)->order;
    return (oa > ob) - (oa < ob);
}

/* The cache's EndpointSlices sorted by (namespace, service label, name). */
struct mb_slices {
    const struct model_endpoint_slice **v;
    size_t n;
};

static int mb_cmp_slice(const void *pa, const void *pb)
{
    const struct model_endpoint_slice *a = *(const struct model_endpoint_slice *const *)pa;
    const struct model_endpoint_slice *b = *(const struct model_endpoint_slice *const *)pb;
    int r = strcmp(a->meta.ns, b->meta.ns);

    if (r || (r = strcmp(a->service_name, b->service_name))) return r;
    return strcmp(a->meta.name, b->meta.name);
}

/* Index of the first slice of svc in sl (sl->n when it has none). */
static size_t mb_first_slice(const struct mb_slices *sl, const struct model_service *svc)
{
    size_t lo = 0, hi = sl->n, mid;
    int r;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = strcmp(sl->v[mid]->meta.ns, svc->meta.ns);
        if (!r) r = strcmp(sl->v[mid]->service_name, svc->meta.name);
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * mtls and identities of svc's port sp into *ms: the pods behind the ready endpoints of the
 * Service's EndpointSlices for that port. 0, or -1 when out of memory.
 */
static int mb_identities(const struct model_cache *cache, const struct mb_ip *ips, size_t n_ips,
                         const struct mb_slices *sl, const char *td,
                         const struct model_service *svc, const struct model_service_port *sp,
                         struct mb_svc *ms)
{
    struct mb_vec ids = {.size = sizeof(char *)};
    size_t i, e, p, out;
    int ready = 0, all = 1;
    char **slot, id[MESHCA_ID_MAX], err[200];

    for (i = mb_first_slice(sl, svc); i < sl->n && all; i++) {
        const struct model_endpoint_slice *s = sl->v[i];
        if (strcmp(s->meta.ns, svc->meta.ns) || strcmp(s->service_name, svc->meta.name)) break;
        for (p = 0; p < s->n_ports; p++)
            if (!strcmp(s->ports[p].name, sp->name)) break;
        if (p == s->n_ports || !s->ports[p].port) continue;
        for (e = 0; e < s->n_endpoints && all; e++) {
            const struct model_pod *pod;
            if (!s->endpoints[e].ready) continue;
            ready = 1;
            pod = mb_pod_of(cache, ips, n_ips, s->meta.ns, &s->endpoints[e]);
            /* no certificate can carry a name meshca_identity refuses: nothing to verify */
            if (!pod || !pod->meshed ||
                meshca_identity(td, pod->meta.ns, pod->service_account, id, sizeof(id), err,
                                sizeof(err))) {
                all = 0;
                break;
            }
            if (!(slot = mb_push(&ids))) goto oom;
            if (!(*slot = strdup(id))) {
                ids.n--;
                goto oom;
            }
        }
    }
    ms->s.mtls = (uint8_t)(ready && all);
    slot = ids.v;
    if (!ms->s.mtls) {
        for (i = 0; i < ids.n; i++)
            free(slot[i]);
        free(ids.v);
        return 0;
    }
    if (ids.n > 1) qsort(slot, ids.n, sizeof(*slot), mb_cmp_str);
    for (i = 0, out = 0; i < ids.n; i++) {
        if (out && !strcmp(slot[out - 1], slot[i])) {
            free(slot[i]);
            continue;
        }
        slot[out++] = slot[i];
    }
    ms->ids = slot;
    ms->n_ids = out;
    return 0;
oom:
    slot = ids.v;
    for (i = 0; i < ids.n; i++)
        free(slot[i]);
    free(ids.v);
    return -1;
}

static void mb_svcs_free(struct mb_vec *v)
{
    struct mb_svc *ms = v->v;
    size_t i, k;

    for (i = 0; i < v->n; i++) {
        for (k = 0; k < ms[i].n_ids; k++)
            free(ms[i].ids[k]);
        free(ms[i].ids);
    }
    free(v->v);
}

/* Whether a's identities are the range ids[first, +count) already written. */
static int mb_same_ids(const struct mb_svc *a, const struct snapwire_mesh_id *ids, uint32_t first,
                       uint32_t count)
{
    size_t k;

    if (a->n_ids != count) return 0;
    for (k = 0; k < count; k++)
        if (strcmp(a->ids[k], ids[first + k].uri)) return 0;
    return 1;
}

/* The pod IPs of the cache, sorted by (namespace, IP), for endpoints without a targetRef. */
static int mb_pod_ips(const struct model_cache *cache, struct mb_vec *ips)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_POD];
    size_t i, k;

    for (i = 0; i < l->n; i++) {
        const struct model_pod *pod = (const struct model_pod *)l->items[i];
        if (model_pod_finished(pod)) continue;
        for (k = 0; k < pod->n_ips; k++) {
            struct mb_ip *ip = mb_push(ips);
            if (!ip) return -1;
            *ip = (struct mb_ip){pod->meta.ns, pod->ips[k], pod};
        }
    }
    if (ips->n > 1) qsort(ips->v, ips->n, sizeof(struct mb_ip), mb_cmp_ip);
    return 0;
}

int meshbuild_build(const struct model_cache *cache, const char *td,
                    meshbuild_cluster_fn cluster_of, void *arg, struct meshbuild_result *out,
                    char *err, size_t errlen)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_SERVICE];
    struct mb_vec ips = {.size = sizeof(struct mb_ip)}, svcs = {.size = sizeof(struct mb_svc)};
    struct mb_slices sl = {NULL, 0};
    struct mb_svc *ms, *v;
    char addrs[2][MB_ADDR];
    size_t i, p, a, n_addr, k, n_ids = 0, kept;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (mb_pod_ips(cache, &ips)) goto nomem;
    sl.n = cache->kinds[MODEL_KIND_ENDPOINT_SLICE].n;
    if (sl.n && !(sl.v = malloc(sl.n * sizeof(*sl.v)))) goto nomem;
    for (i = 0; i < sl.n; i++)
        sl.v[i] =
            (const struct model_endpoint_slice *)cache->kinds[MODEL_KIND_ENDPOINT_SLICE].items[i];
    if (sl.n > 1) qsort(sl.v, sl.n, sizeof(*sl.v), mb_cmp_slice);
    for (i = 0; i < l->n; i++) {
        const struct model_service *svc = (const struct model_service *)l->items[i];
        if (!(n_addr = mb_cluster_ips(svc, addrs, 2))) continue;
        for (p = 0; p < svc->n_ports; p++) {
            const struct model_service_port *sp = &svc->ports[p];
            struct mb_svc one = {{0}, NULL, 0, 0};
            if (sp->not_tcp) continue; /* the sidecar intercepts TCP only */
            one.s.ns = svc->meta.ns;
            one.s.name = svc->meta.name;
            one.s.port = (uint16_t)sp->port;
            one.s.cluster = cluster_of(arg, svc, sp);
            one.s.proto = meshbuild_proto(svc, sp);
            one.order = p;
            if (mb_identities(cache, ips.v, ips.n, &sl, td, svc, sp, &one)) goto nomem;
            for (a = 0; a < n_addr; a++) {
                if (!(ms = mb_push(&svcs))) {
                    /* the first record owns one's identities once pushed */
                    for (k = 0; !a && k < one.n_ids; k++)
                        free(one.ids[k]);
                    if (!a) free(one.ids);
                    goto nomem;
                }
                *ms = one;
                ms->s.address = NULL; /* set below, once the array stops moving */
                if (a > 0) {          /* the second ClusterIP owns a copy of the identities */
                    ms->ids = NULL;
                    ms->n_ids = 0;
                    if (one.n_ids && !(ms->ids = calloc(one.n_ids, sizeof(*ms->ids)))) goto nomem;
                    for (k = 0; k < one.n_ids; k++, ms->n_ids++)
                        if (!(ms->ids[k] = strdup(one.ids[k]))) goto nomem;
                }
            }
        }
    }
    /* addresses: one slot per record, then sort and drop a ClusterIP:port claimed twice */
    if (svcs.n && !(out->addrs_ = calloc(svcs.n, sizeof(*out->addrs_)))) goto nomem;
    v = svcs.v;
    for (i = 0, k = 0; i < l->n; i++) {
        const struct model_service *svc = (const struct model_service *)l->items[i];
        if (!(n_addr = mb_cluster_ips(svc, addrs, 2))) continue;
        for (p = 0; p < svc->n_ports; p++)
            for (a = 0; a < n_addr && !svc->ports[p].not_tcp; a++, k++) {
                memcpy(out->addrs_[k], addrs[a], MB_ADDR);
                v[k].s.address = out->addrs_[k];
            }
    }
    if (svcs.n > 1) qsort(svcs.v, svcs.n, sizeof(struct mb_svc), mb_cmp_svc);
    for (i = 0, kept = 0; i < svcs.n; i++) {
        if (kept && !strcmp(v[kept - 1].s.address, v[i].s.address) &&
            v[kept - 1].s.port == v[i].s.port) {
            for (k = 0; k < v[i].n_ids; k++)
                free(v[i].ids[k]);
            free(v[i].ids);
            continue;
        }
        v[kept++] = v[i];
    }
    svcs.n = kept;
    for (i = 0; i < svcs.n; i++)
        n_ids += v[i].n_ids;
    if (svcs.n && !(out->services = calloc(svcs.n, sizeof(*out->services)))) goto nomem;
    if (n_ids && !(out->ids = calloc(n_ids, sizeof(*out->ids)))) goto nomem;
    /* identities: a record with the same list as the one before shares its range */
    for (i = 0; i < svcs.n; i++) {
        struct snapwire_mesh_service *s = &out->services[out->n_services++];
        *s = v[i].s;
        s->first_id = s->id_count = 0;
        if (!v[i].n_ids) continue;
        if (i > 0 && out->services[i - 1].id_count &&
            mb_same_ids(&v[i], out->ids, out->services[i - 1].first_id,
                        out->services[i - 1].id_count)) {
            s->first_id = out->services[i - 1].first_id;
            s->id_count = out->services[i - 1].id_count;
            continue;
        }
        s->first_id = (uint32_t)out->n_ids;
        s->id_count = (uint32_t)v[i].n_ids;
        for (k = 0; k < v[i].n_ids; k++) {
            out->ids[out->n_ids++].uri = v[i].ids[k];
            v[i].ids[k] = NULL;
        }
    }
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "out of memory");
    meshbuild_free(out);
done:
    mb_svcs_free(&svcs);
    free(ips.v);
    free(sl.v);
    return rc;
}

void meshbuild_free(struct meshbuild_result *r)
{
    size_t i;

    for (i = 0; i < r->n_ids; i++)
        free((char *)r->ids[i].uri);
    free(r->ids);
    free(r->services);
    free(r->addrs_);
    memset(r, 0, sizeof(*r));
}
