/*
 * meshpods: the pod IP -> workload identity table (meshpods.h).
 *
 * Does: list every IP of every live Pod that has its own network (not hostNetwork) with the
 * identity its workload certificate carries (meshca_identity, the function the CA names
 * certificates with, so the two cannot disagree), sorted for binary search and comparison. Does
 * not: look at Services or EndpointSlices (meshbuild), or keep the cache: the table owns its
 * strings, so it outlives a file-mode build's cache. Invariant: pairs sorted by (IP text,
 * identity), no duplicate.
 */
#include "meshpods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshca.h"
#include "netaddr.h"

#define MP_ADDR 46 /* INET6_ADDRSTRLEN */

struct mp_pair {
    char ip[MP_ADDR];
    char *id;
};

struct meshpods {
    struct mp_pair *v;
    size_t n;
};

static int mp_cmp(const void *pa, const void *pb)
{
    const struct mp_pair *a = pa, *b = pb;
    int r = strcmp(a->ip, b->ip);

    return r ? r : strcmp(a->id, b->id);
}

/* Appends pod's IPs to t (room for them is there). 0, or -1 when out of memory. */
static int mp_add_pod(struct meshpods *t, const struct model_pod *pod, const char *td)
{
    char id[MESHCA_ID_MAX], err[200];
    size_t k;

    if (meshca_identity(td, pod->meta.ns, pod->service_account, id, sizeof(id), err, sizeof(err)))
        return 0; /* no certificate can carry it: no caller can claim these IPs */
    for (k = 0; k < pod->n_ips; k++) {
        struct mp_pair *p = &t->v[t->n];
        if (netaddr_ip_canonical(pod->ips[k], p->ip, sizeof(p->ip))) continue;
        if (!(p->id = strdup(id))) return -1;
        t->n++;
    }
    return 0;
}

struct meshpods *meshpods_build(const struct model_cache *cache, const char *td, char *err,
                                size_t errlen)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_POD];
    struct meshpods *t = calloc(1, sizeof(*t));
    size_t i, n_ips = 0, kept;

    for (i = 0; i < l->n; i++)
        n_ips += ((const struct model_pod *)l->items[i])->n_ips;
    if (!t || !(t->v = calloc(n_ips + 1, sizeof(*t->v)))) goto oom;
    for (i = 0; i < l->n; i++) {
        const struct model_pod *pod = (const struct model_pod *)l->items[i];
        /* finished: its IP may be another pod's; hostNetwork: the node's, every such pod's */
        if (model_pod_finished(pod) || pod->host_network) continue;
        if (mp_add_pod(t, pod, td)) goto oom;
    }
    if (t->n > 1) qsort(t->v, t->n, sizeof(*t->v), mp_cmp);
    for (i = 0, kept = 0; i < t->n; i++) {
        if (kept && !mp_cmp(&t->v[kept - 1], &t->v[i])) {
            free(t->v[i].id);
            continue;
        }
        t->v[kept++] = t->v[i];
    }
    t->n = kept;
    return t;
oom:
    snprintf(err, errlen, "out of memory");
    meshpods_free(t);
    return NULL;
}

int meshpods_has(const struct meshpods *t, const char *ip, const char *identity)
{
    struct mp_pair key;

    if (!t || !t->n || strlen(ip) >= sizeof(key.ip)) return 0;
    memcpy(key.ip, ip, strlen(ip) + 1);
    key.id = (char *)identity;
    return bsearch(&key, t->v, t->n, sizeof(*t->v), mp_cmp) != NULL;
}

int meshpods_equal(const struct meshpods *a, const struct meshpods *b)
{
    size_t na = a ? a->n : 0, nb = b ? b->n : 0, i;

    if (na != nb) return 0;
    for (i = 0; i < na; i++)
        if (mp_cmp(&a->v[i], &b->v[i])) return 0;
    return 1;
}

void meshpods_free(struct meshpods *t)
{
    size_t i;

    if (!t) return;
    for (i = 0; i < t->n; i++)
        free(t->v[i].id);
    free(t->v);
    free(t);
}
