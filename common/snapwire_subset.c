/*
 * snapwire_subset: the per-sidecar cut of a mesh snapshot (snapwire_subset.h).
 *
 * Does: select mesh records by ClusterIP:port (binary search: the records are sorted by
 * (address text, port) and their addresses are canonical inet_ntop text, so a key is
 * canonicalised the same way first), by Service name, and by the pod's own addresses (an
 * endpoint of the record's cluster), both through an index built once per snapshot (the
 * records by name, the endpoints by binary address), so selecting costs what is asked for,
 * not the size of the mesh; then keep what those records reference.
 * Does not: encode, allocate strings, or look at listeners, routes and certificates with
 * keys (a subset never has any).
 * Invariant: every kept array is a compaction of the full one in its original order, so the
 * full snapshot's sort orders (mesh records, authz) hold, and a range [first, +count) whose
 * elements are all kept stays one contiguous range: re-indexing a range is mapping its first
 * element.
 */
#include "snapwire_subset.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An IP literal in binary form, for comparisons that do not depend on the text. */
struct sub_ip {
    int family;
    unsigned char a[16];
};

static int sub_ip_parse(const char *s, struct sub_ip *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (s && inet_pton(AF_INET, s, ip->a) == 1) {
        ip->family = AF_INET;
        return 0;
    }
    if (s && inet_pton(AF_INET6, s, ip->a) == 1) {
        ip->family = AF_INET6;
        return 0;
    }
    return -1;
}

/* Index of the mesh record at (address, port), or SNAPWIRE_NONE. */
static uint32_t sub_find_record(const struct snapwire_snapshot *s, const char *address,
                                uint16_t port)
{
    uint32_t lo = 0, hi = s->n_mesh_services;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct snapwire_mesh_service *m = &s->mesh_services[mid];
        int c = strcmp(m->address, address);
        if (!c) c = (int)m->port - (int)port;
        if (!c) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SNAPWIRE_NONE;
}

/* ---- the index: endpoints by address, records by name ---- */

struct sub_ep {
    struct sub_ip ip;
    uint32_t cluster;
};

struct snapwire_subset_index {
    const struct snapwire_snapshot *snap;
    struct sub_ep *eps; /* every endpoint that parses, sorted by address */
    uint32_t n_eps;
    const struct snapwire_mesh_service **by_name; /* the records sorted by (ns, name) */
};

static int sub_ip_cmp(const struct sub_ip *a, const struct sub_ip *b)
{
    if (a->family != b->family) return a->family < b->family ? -1 : 1;
    return memcmp(a->a, b->a, sizeof(a->a));
}

static int sub_ep_cmp(const void *a, const void *b)
{
    return sub_ip_cmp(&((const struct sub_ep *)a)->ip, &((const struct sub_ep *)b)->ip);
}

static int sub_rec_cmp(const void *a, const void *b)
{
    const struct snapwire_mesh_service *x = *(const struct snapwire_mesh_service *const *)a;
    const struct snapwire_mesh_service *y = *(const struct snapwire_mesh_service *const *)b;
    int c = strcmp(x->ns, y->ns);

    return c ? c : strcmp(x->name, y->name);
}

struct snapwire_subset_index *snapwire_subset_index_new(const struct snapwire_snapshot *s)
{
    struct snapwire_subset_index *ix = calloc(1, sizeof(*ix));
    uint32_t c, e, r;

    if (!ix || !(ix->eps = calloc(s->n_endpoints + 1, sizeof(*ix->eps))) ||
        !(ix->by_name = calloc(s->n_mesh_services + 1, sizeof(*ix->by_name)))) {
        snapwire_subset_index_free(ix);
        return NULL;
    }
    ix->snap = s;
    for (c = 0; c < s->n_clusters; c++) {
        const struct snapwire_cluster *cl = &s->clusters[c];
        for (e = cl->first_endpoint; e < cl->first_endpoint + cl->endpoint_count; e++) {
            if (sub_ip_parse(s->endpoints[e].address, &ix->eps[ix->n_eps].ip)) continue;
            ix->eps[ix->n_eps++].cluster = c;
        }
    }
    qsort(ix->eps, ix->n_eps, sizeof(*ix->eps), sub_ep_cmp);
    for (r = 0; r < s->n_mesh_services; r++)
        ix->by_name[r] = &s->mesh_services[r];
    qsort(ix->by_name, s->n_mesh_services, sizeof(*ix->by_name), sub_rec_cmp);
    return ix;
}

void snapwire_subset_index_free(struct snapwire_subset_index *ix)
{
    if (!ix) return;
    free(ix->eps);
    free(ix->by_name);
    free(ix);
}

/*
 * Marks in own[] the clusters with an endpoint at one of the pod's addresses. Returns 0, or
 * -1 with err (an address that is no IP literal).
 */
static int sub_own_clusters(const struct snapwire_subset_index *ix,
                            const struct snapwire_subset_query *q, unsigned char *own, char *err,
                            size_t errlen)
{
    struct sub_ip mine;
    uint32_t lo, hi, mid;
    size_t i;

    for (i = 0; i < q->n_addresses; i++) {
        if (sub_ip_parse(q->addresses[i], &mine)) {
            snprintf(err, errlen, "address \"%s\" is not an IP literal",
                     q->addresses[i] ? q->addresses[i] : "");
            return -1;
        }
        for (lo = 0, hi = ix->n_eps; lo < hi;) { /* the first endpoint >= mine */
            mid = lo + (hi - lo) / 2;
            if (sub_ip_cmp(&ix->eps[mid].ip, &mine) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < ix->n_eps && !sub_ip_cmp(&ix->eps[lo].ip, &mine); lo++)
            own[ix->eps[lo].cluster] = 1;
    }
    return 0;
}

/* Marks in keep[] the records of Service (ns, name). */
static void sub_mark_name(const struct snapwire_subset_index *ix, const char *ns, const char *name,
                          unsigned char *keep)
{
    const struct snapwire_snapshot *s = ix->snap;
    struct snapwire_mesh_service k = {0};
    const struct snapwire_mesh_service *kp = &k;
    uint32_t lo = 0, hi = s->n_mesh_services, mid;

    k.ns = ns;
    k.name = name;
    while (lo < hi) { /* the first record >= (ns, name) */
        mid = lo + (hi - lo) / 2;
        if (sub_rec_cmp(&ix->by_name[mid], &kp) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < s->n_mesh_services && !sub_rec_cmp(&ix->by_name[lo], &kp); lo++)
        keep[ix->by_name[lo] - s->mesh_services] = 1;
}

/*
 * Marks in keep[] the records q asks for by address key and by name key. Returns 0, or -1
 * with err.
 */
static int sub_keyed_records(const struct snapwire_subset_index *ix,
                             const struct snapwire_subset_query *q, unsigned char *keep, char *err,
                             size_t errlen)
{
    char canon[INET6_ADDRSTRLEN];
    struct sub_ip ip;
    size_t i;
    uint32_t r;

    for (i = 0; i < q->n_keys; i++) {
        const struct snapwire_subset_key *k = &q->keys[i];
        if (k->ns && k->name) {
            sub_mark_name(ix, k->ns, k->name, keep);
            continue;
        }
        if (sub_ip_parse(k->address, &ip) || !inet_ntop(ip.family, ip.a, canon, sizeof(canon))) {
            snprintf(err, errlen, "key address \"%s\" is not an IP literal",
                     k->address ? k->address : "");
            return -1;
        }
        if ((r = sub_find_record(ix->snap, canon, k->port)) != SNAPWIRE_NONE) keep[r] = 1;
    }
    return 0;
}

/*
 * Turns the marks in used[0..n) into old -> new indexes in map[] (SNAPWIRE_NONE for dropped
 * elements); returns how many are kept.
 */
static uint32_t sub_compact(const unsigned char *used, uint32_t n, uint32_t *map)
{
    uint32_t i, k = 0;

    for (i = 0; i < n; i++)
        map[i] = used[i] ? k++ : SNAPWIRE_NONE;
    return k;
}

/* Marks [first, first + count) in used. */
static void sub_mark(unsigned char *used, uint32_t first, uint32_t count)
{
    uint32_t i;

    for (i = 0; i < count; i++)
        used[first + i] = 1;
}

void snapwire_subset_free(struct snapwire_snapshot *s)
{
    if (!s) return;
    free(s->mesh_services);
    free(s->mesh_ids);
    free(s->clusters);
    free(s->endpoints);
    free(s->certs);
    free(s->authz);
    free(s->principals);
    memset(s, 0, sizeof(*s));
}

/* The scratch arrays of one subset: marks and maps per full section. */
struct sub_work {
    unsigned char *keep, *own, *used_c, *used_e, *used_id, *used_cert, *used_p;
    uint32_t *own_svc, n_own_svc; /* the pod's own records (indexes) */
    uint32_t *map_c, *map_e, *map_id, *map_cert, *map_p;
};

static void sub_work_free(struct sub_work *w)
{
    free(w->keep);
    free(w->own);
    free(w->used_c);
    free(w->used_e);
    free(w->used_id);
    free(w->used_cert);
    free(w->own_svc);
    free(w->used_p);
    free(w->map_c);
    free(w->map_e);
    free(w->map_id);
    free(w->map_cert);
    free(w->map_p);
}

static int sub_work_alloc(struct sub_work *w, const struct snapwire_snapshot *s)
{
    memset(w, 0, sizeof(*w));
    /* + 1: calloc(0) may give NULL */
    w->keep = calloc(s->n_mesh_services + 1, 1);
    w->own = calloc(s->n_clusters + 1, 1);
    w->used_c = calloc(s->n_clusters + 1, 1);
    w->used_e = calloc(s->n_endpoints + 1, 1);
    w->used_id = calloc(s->n_mesh_ids + 1, 1);
    w->used_cert = calloc(s->n_certs + 1, 1);
    w->own_svc = calloc(s->n_mesh_services + 1, sizeof(uint32_t));
    w->used_p = calloc(s->n_principals + 1, 1);
    w->map_c = calloc(s->n_clusters + 1, sizeof(uint32_t));
    w->map_e = calloc(s->n_endpoints + 1, sizeof(uint32_t));
    w->map_id = calloc(s->n_mesh_ids + 1, sizeof(uint32_t));
    w->map_cert = calloc(s->n_certs + 1, sizeof(uint32_t));
    w->map_p = calloc(s->n_principals + 1, sizeof(uint32_t));
    return w->keep && w->own && w->used_c && w->used_e && w->used_id && w->used_cert &&
                   w->own_svc && w->used_p && w->map_c && w->map_e && w->map_id && w->map_cert &&
                   w->map_p
               ? 0
               : -1;
}

/* Whether the policy's target is the Service of one of the pod's own records own[0..n). */
static int sub_own_target(const struct snapwire_snapshot *s, const uint32_t *own, uint32_t n,
                          const struct snapwire_authz *a)
{
    uint32_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(s->mesh_services[own[i]].ns, a->ns) &&
            !strcmp(s->mesh_services[own[i]].name, a->name))
            return 1;
    return 0;
}

/* Copies the kept elements of every section into out, re-indexed (w holds the marks). */
static int sub_copy(const struct snapwire_snapshot *s, struct sub_work *w, unsigned char *keep_a,
                    struct snapwire_snapshot *out)
{
    uint32_t i, k;

    out->n_mesh_services = 0;
    for (i = 0; i < s->n_mesh_services; i++)
        out->n_mesh_services += w->keep[i];
    out->n_clusters = sub_compact(w->used_c, s->n_clusters, w->map_c);
    out->n_endpoints = sub_compact(w->used_e, s->n_endpoints, w->map_e);
    out->n_mesh_ids = sub_compact(w->used_id, s->n_mesh_ids, w->map_id);
    out->n_certs = sub_compact(w->used_cert, s->n_certs, w->map_cert);
    out->n_principals = sub_compact(w->used_p, s->n_principals, w->map_p);
    out->n_authz = 0;
    for (i = 0; i < s->n_authz; i++)
        out->n_authz += keep_a[i];
    out->mesh_services = calloc(out->n_mesh_services + 1, sizeof(*out->mesh_services));
    out->clusters = calloc(out->n_clusters + 1, sizeof(*out->clusters));
    out->endpoints = calloc(out->n_endpoints + 1, sizeof(*out->endpoints));
    out->mesh_ids = calloc(out->n_mesh_ids + 1, sizeof(*out->mesh_ids));
    out->certs = calloc(out->n_certs + 1, sizeof(*out->certs));
    out->authz = calloc(out->n_authz + 1, sizeof(*out->authz));
    out->principals = calloc(out->n_principals + 1, sizeof(*out->principals));
    if (!out->mesh_services || !out->clusters || !out->endpoints || !out->mesh_ids || !out->certs ||
        !out->authz || !out->principals)
        return -1;
    for (i = 0, k = 0; i < s->n_mesh_services; i++) {
        struct snapwire_mesh_service m = s->mesh_services[i];
        if (!w->keep[i]) continue;
        if (m.cluster != SNAPWIRE_NONE) m.cluster = w->map_c[m.cluster];
        if (m.id_count) m.first_id = w->map_id[m.first_id];
        out->mesh_services[k++] = m;
    }
    for (i = 0; i < s->n_clusters; i++) {
        struct snapwire_cluster c = s->clusters[i];
        if (!w->used_c[i]) continue;
        c.first_endpoint = c.endpoint_count ? w->map_e[c.first_endpoint] : 0;
        if (c.tls_ca != SNAPWIRE_NONE) c.tls_ca = w->map_cert[c.tls_ca];
        out->clusters[w->map_c[i]] = c;
    }
    for (i = 0; i < s->n_endpoints; i++)
        if (w->used_e[i]) out->endpoints[w->map_e[i]] = s->endpoints[i];
    for (i = 0; i < s->n_mesh_ids; i++)
        if (w->used_id[i]) out->mesh_ids[w->map_id[i]] = s->mesh_ids[i];
    for (i = 0; i < s->n_certs; i++)
        if (w->used_cert[i]) out->certs[w->map_cert[i]] = s->certs[i];
    for (i = 0; i < s->n_principals; i++)
        if (w->used_p[i]) out->principals[w->map_p[i]] = s->principals[i];
    for (i = 0, k = 0; i < s->n_authz; i++) {
        struct snapwire_authz a = s->authz[i];
        if (!keep_a[i]) continue;
        a.first_principal = w->map_p[a.first_principal];
        out->authz[k++] = a;
    }
    return 0;
}

int snapwire_mesh_subset(const struct snapwire_snapshot *s, const struct snapwire_subset_query *q,
                         struct snapwire_snapshot *out, char *err, size_t errlen)
{
    struct sub_work w;
    struct snapwire_subset_index *own_ix = NULL;
    const struct snapwire_subset_index *ix;
    unsigned char *keep_a = NULL;
    uint32_t i;

    memset(out, 0, sizeof(*out));
    if (sub_work_alloc(&w, s) || !(keep_a = calloc(s->n_authz + 1, 1))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!(ix = q->index) && !(ix = own_ix = snapwire_subset_index_new(s))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (ix->snap != s) abort(); /* an index of another snapshot: a caller's bug */
    if (sub_keyed_records(ix, q, w.keep, err, errlen) ||
        sub_own_clusters(ix, q, w.own, err, errlen))
        goto fail;
    for (i = 0; i < s->n_mesh_services; i++) {
        uint32_t c = s->mesh_services[i].cluster;
        if (c == SNAPWIRE_NONE || !w.own[c]) continue;
        w.keep[i] = 1;
        w.own_svc[w.n_own_svc++] = i;
    }
    for (i = 0; i < s->n_mesh_services; i++) {
        const struct snapwire_mesh_service *m = &s->mesh_services[i];
        if (!w.keep[i]) continue;
        sub_mark(w.used_id, m->first_id, m->id_count);
        if (m->cluster == SNAPWIRE_NONE || w.used_c[m->cluster]) continue;
        w.used_c[m->cluster] = 1;
        sub_mark(w.used_e, s->clusters[m->cluster].first_endpoint,
                 s->clusters[m->cluster].endpoint_count);
    }
    for (i = 0; i < s->n_clusters; i++) {
        uint32_t ca = s->clusters[i].tls_ca;
        if (!w.used_c[i] || ca == SNAPWIRE_NONE) continue;
        if (s->certs[ca].key_pem && *s->certs[ca].key_pem) continue; /* never a key */
        w.used_cert[ca] = 1;
    }
    for (i = 0; i < s->n_authz; i++) {
        if (!sub_own_target(s, w.own_svc, w.n_own_svc, &s->authz[i])) continue;
        keep_a[i] = 1;
        sub_mark(w.used_p, s->authz[i].first_principal, s->authz[i].principal_count);
    }
    if (sub_copy(s, &w, keep_a, out)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    out->meta = s->meta;
    out->meta.default_cluster = SNAPWIRE_NONE;
    out->meta.default_cert = SNAPWIRE_NONE;
    out->generation = s->generation;
    free(keep_a);
    sub_work_free(&w);
    snapwire_subset_index_free(own_ix);
    return 0;

fail:
    snapwire_subset_index_free(own_ix);
    free(keep_a);
    sub_work_free(&w);
    snapwire_subset_free(out);
    return -1;
}
