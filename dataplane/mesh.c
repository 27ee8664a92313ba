/*
 * mesh: sidecar settings, the Service directory index of a snapshot, SO_ORIGINAL_DST and
 * HTTP detection (see mesh.h).
 *
 * The index holds two sorted arrays over sw.mesh_services: by address (family, raw bytes,
 * port; IPv4-mapped IPv6 folded to IPv4) and by (name, namespace, port), both
 * binary-searched. It points into the snapwire snapshot it was built from and lives exactly
 * as long (snapshot.c frees it with the snapshot).
 * A third sorted array maps each endpoint (address, port) of a mesh service's cluster to the
 * service, for inbound authorization (mesh_authorize: the policies of snapwire AUTHZ, sorted
 * by Service, found by binary search).
 * Does not: decide what to do with a connection (conn.c) or TLS (tls_mesh).
 */
#include "mesh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

struct mesh_addr_key {
    uint8_t family; /* 4 or 6 */
    uint8_t ip[16];
    uint16_t port;
    const struct snapwire_mesh_service *svc;
};

struct mesh_index {
    uint32_t n;
    struct mesh_addr_key *by_addr;
    const struct snapwire_mesh_service **by_name;
    const char *cluster_domain;
    /* authorization */
    uint32_t n_ep;
    struct mesh_addr_key *by_ep; /* cluster endpoints -> their mesh service */
    const struct snapwire_snapshot *sw;
    uint8_t default_deny;
};

static char mesh_ns[64];
static int mesh_perm;

void mesh_configure(const char *ns, int permissive)
{
    snprintf(mesh_ns, sizeof(mesh_ns), "%s", ns ? ns : "");
    mesh_perm = permissive != 0;
}

int mesh_permissive(void)
{
    return mesh_perm;
}

/* sa as a key (v4-mapped IPv6 becomes IPv4). 0, or -1 for another family. */
static int key_of(const struct sockaddr *sa, struct mesh_addr_key *k)
{
    struct sockaddr_storage u;
    socklen_t ul;

    memset(k, 0, sizeof(*k));
    if (netaddr_unmap(sa, &u, &ul) < 0) return -1;
    k->port = (uint16_t)netaddr_port((const struct sockaddr *)&u);
    if (u.ss_family == AF_INET) {
        k->family = 4;
        memcpy(k->ip, &((const struct sockaddr_in *)&u)->sin_addr, 4);
    } else {
        k->family = 6;
        memcpy(k->ip, &((const struct sockaddr_in6 *)&u)->sin6_addr, 16);
    }
    return 0;
}

static int addr_cmp(const void *a, const void *b)
{
    const struct mesh_addr_key *x = a, *y = b;
    int d;

    if (x->family != y->family) return x->family < y->family ? -1 : 1;
    if ((d = memcmp(x->ip, y->ip, 16)) != 0) return d;
    return x->port < y->port ? -1 : x->port > y->port;
}

/* by_name order: name, namespace, port */
static int svc_cmp3(const char *name, size_t nlen, const char *ns, size_t nslen, uint16_t port,
                    const struct snapwire_mesh_service *s)
{
    size_t sl = strlen(s->name), sns = strlen(s->ns);
    int d = strncmp(name, s->name, nlen < sl ? nlen : sl);

    if (d) return d;
    if (nlen != sl) return nlen < sl ? -1 : 1;
    d = strncmp(ns, s->ns, nslen < sns ? nslen : sns);
    if (d) return d;
    if (nslen != sns) return nslen < sns ? -1 : 1;
    return port < s->port ? -1 : port > s->port;
}

static int name_cmp(const void *a, const void *b)
{
    const struct snapwire_mesh_service *x = *(const struct snapwire_mesh_service *const *)a;
    const struct snapwire_mesh_service *y = *(const struct snapwire_mesh_service *const *)b;

    return svc_cmp3(x->name, strlen(x->name), x->ns, strlen(x->ns), x->port, y);
}

int mesh_index_build(const struct snapwire_snapshot *sw, struct mesh_index **out, char *err,
                     size_t errlen)
{
    struct mesh_index *m;
    uint32_t i;

    *out = NULL;
    /* a mesh snapshot gets an index even without Services: its default policy applies */
    if (sw->n_mesh_services == 0 && !(sw->meta.trust_domain && sw->meta.trust_domain[0])) return 0;
    if (!(m = calloc(1, sizeof(*m)))) goto oom;
    m->n = sw->n_mesh_services;
    m->cluster_domain = sw->meta.cluster_domain;
    m->sw = sw;
    m->default_deny = sw->meta.authz_default_deny;
    m->by_addr = calloc(m->n ? m->n : 1, sizeof(*m->by_addr));
    m->by_name = calloc(m->n ? m->n : 1, sizeof(*m->by_name));
    if (!m->by_addr || !m->by_name) goto free_index;
    for (i = 0; i < m->n; i++) {
        uint32_t c = sw->mesh_services[i].cluster;
        if (c != SNAPWIRE_NONE) m->n_ep += sw->clusters[c].endpoint_count;
    }
    if (!(m->by_ep = calloc(m->n_ep ? m->n_ep : 1, sizeof(*m->by_ep)))) goto free_index;
    m->n_ep = 0;
    for (i = 0; i < m->n; i++) {
        const struct snapwire_mesh_service *s = &sw->mesh_services[i];
        uint32_t e;
        if (s->cluster == SNAPWIRE_NONE) continue;
        for (e = 0; e < sw->clusters[s->cluster].endpoint_count; e++) {
            const struct snapwire_endpoint *ep =
                &sw->endpoints[sw->clusters[s->cluster].first_endpoint + e];
            struct mesh_addr_key *k = &m->by_ep[m->n_ep];
            if (inet_pton(AF_INET, ep->address, k->ip) == 1)
                k->family = 4;
            else if (inet_pton(AF_INET6, ep->address, k->ip) == 1)
                k->family = 6;
            else
                continue; /* snapwire checked it: not expected */
            k->port = ep->port;
            k->svc = s;
            m->n_ep++;
        }
    }
    qsort(m->by_ep, m->n_ep, sizeof(*m->by_ep), addr_cmp);
    for (i = 0; i < m->n; i++) {
        const struct snapwire_mesh_service *s = &sw->mesh_services[i];
        struct mesh_addr_key *k = &m->by_addr[i];
        if (inet_pton(AF_INET, s->address, k->ip) == 1) {
            k->family = 4;
        } else if (inet_pton(AF_INET6, s->address, k->ip) == 1) {
            k->family = 6;
        } else {
            snprintf(err, errlen, "mesh service %s/%s: bad address %s", s->ns, s->name, s->address);
            mesh_index_free(m);
            return -1;
        }
        k->port = s->port;
        k->svc = s;
        m->by_name[i] = s;
    }
    qsort(m->by_addr, m->n, sizeof(*m->by_addr), addr_cmp);
    qsort(m->by_name, m->n, sizeof(*m->by_name), name_cmp);
    *out = m;
    return 0;
free_index:
    mesh_index_free(m);
oom:
    snprintf(err, errlen, "out of memory (mesh index)");
    return -1;
}

void mesh_index_free(struct mesh_index *m)
{
    if (!m) return;
    free(m->by_addr);
    free(m->by_name);
    free(m->by_ep);
    free(m);
}

const struct snapwire_mesh_service *mesh_find_addr(const struct mesh_index *m,
                                                   const struct sockaddr *sa)
{
    struct mesh_addr_key k;
    const struct mesh_addr_key *hit;

    if (!m || key_of(sa, &k) < 0) return NULL;
    hit = bsearch(&k, m->by_addr, m->n, sizeof(*m->by_addr), addr_cmp);
    return hit ? hit->svc : NULL;
}

static const struct snapwire_mesh_service *find_name(const struct mesh_index *m, const char *name,
                                                     size_t nlen, const char *ns, size_t nslen,
                                                     uint16_t port)
{
    size_t lo = 0, hi = m->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = svc_cmp3(name, nlen, ns, nslen, port, m->by_name[mid]);
        if (d == 0) return m->by_name[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/*
 * The Service a Host (lower case, no port) names, as name and namespace (pointers into host
 * or the pod's namespace); 0, or -1 when it names none. cd: the cluster domain.
 */
static int host_service(const char *host, size_t len, const char *cd, const char **name,
                        size_t *nlen, const char **ns, size_t *nslen)
{
    const char *dot, *rest;
    size_t rlen;

    if (len && host[len - 1] == '.') len--; /* an absolute name "svc.ns.svc.cluster.local." */
    if (len == 0) return -1;
    *name = host;
    dot = memchr(host, '.', len);
    if (!dot) {
        /* a bare name: the pod's own namespace, as its resolv.conf search list would */
        if (!mesh_ns[0]) return -1;
        *nlen = len;
        *ns = mesh_ns;
        *nslen = strlen(mesh_ns);
        return 0;
    }
    *nlen = (size_t)(dot - host);
    *ns = dot + 1;
    rest = memchr(*ns, '.', len - *nlen - 1);
    *nslen = rest ? (size_t)(rest - *ns) : len - *nlen - 1;
    if (rest) {
        /* only ".svc" or ".svc.<cluster domain>" may follow: anything else is not a Service */
        rest++;
        rlen = len - (size_t)(rest - host);
        if (!(rlen == 3 && memcmp(rest, "svc", 3) == 0) &&
            !(rlen == 4 + strlen(cd) && memcmp(rest, "svc.", 4) == 0 &&
              memcmp(rest + 4, cd, rlen - 4) == 0))
            return -1;
    }
    return *nlen && *nslen ? 0 : -1;
}

static const char *cluster_domain_of(const struct mesh_index *m)
{
    return m && m->cluster_domain && m->cluster_domain[0] ? m->cluster_domain : "cluster.local";
}

const struct snapwire_mesh_service *mesh_find_host(const struct mesh_index *m, const char *host,
                                                   size_t len, uint16_t port)
{
    const char *name, *ns;
    size_t nlen, nslen;

    if (!m || host_service(host, len, cluster_domain_of(m), &name, &nlen, &ns, &nslen) < 0)
        return NULL;
    return find_name(m, name, nlen, ns, nslen, port);
}

int mesh_host_key(const struct mesh_index *m, const char *host, size_t len, char *out,
                  size_t outlen)
{
    const char *name, *ns;
    size_t nlen, nslen, i;
    int n;

    if (host_service(host, len, cluster_domain_of(m), &name, &nlen, &ns, &nslen) < 0) return -1;
    /* Kubernetes names: DNS labels (RFC 1123), else it cannot be a Service */
    for (i = 0; i < nlen + nslen; i++) {
        char ch = i < nlen ? name[i] : ns[i - nlen];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return -1;
    }
    if (nlen > 63 || nslen > 63) return -1;
    n = snprintf(out, outlen, "%.*s/%.*s", (int)nslen, ns, (int)nlen, name);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

int mesh_has_service(const struct mesh_index *m, const char *key)
{
    const char *slash = strchr(key, '/');
    size_t lo = 0, hi, nslen, nlen;

    if (!m || !slash) return 0;
    nslen = (size_t)(slash - key);
    nlen = strlen(slash + 1);
    hi = m->n;
    while (lo < hi) { /* the first record not before (name, ns, port 0) */
        size_t mid = lo + (hi - lo) / 2;
        if (svc_cmp3(slash + 1, nlen, key, nslen, 0, m->by_name[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && strlen(m->by_name[lo]->name) == nlen &&
           memcmp(m->by_name[lo]->name, slash + 1, nlen) == 0 &&
           strlen(m->by_name[lo]->ns) == nslen && memcmp(m->by_name[lo]->ns, key, nslen) == 0;
}

/* Whether one of policy a's principals matches the caller (uri NULL: plaintext). */
static int authz_matches(const struct snapwire_snapshot *sw, const struct snapwire_authz *a,
                         const char *uri)
{
    const char *td = sw->meta.trust_domain ? sw->meta.trust_domain : "";
    uint32_t i;

    for (i = 0; i < a->principal_count; i++) {
        const struct snapwire_principal *p = &sw->principals[a->first_principal + i];
        switch (p->kind) {
        case SNAPWIRE_PRINCIPAL_IDENTITY:
            if (uri && strcmp(uri, p->value) == 0) return 1;
            break;
        case SNAPWIRE_PRINCIPAL_NAMESPACE: {
            /* spiffe://<td>/ns/<value>/sa/<anything> */
            size_t tl = strlen(td), vl = strlen(p->value);
            if (uri && strncmp(uri, "spiffe://", 9) == 0 && strncmp(uri + 9, td, tl) == 0 &&
                strncmp(uri + 9 + tl, "/ns/", 4) == 0 &&
                strncmp(uri + 13 + tl, p->value, vl) == 0 &&
                strncmp(uri + 13 + tl + vl, "/sa/", 4) == 0)
                return 1;
            break;
        }
        case SNAPWIRE_PRINCIPAL_AUTHENTICATED:
            if (uri) return 1;
            break;
        case SNAPWIRE_PRINCIPAL_UNAUTHENTICATED:
            if (!uri) return 1;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* First policy (index) of Service ns/name in sw->authz (sorted by ns, name), or n_authz. */
static uint32_t authz_first(const struct snapwire_snapshot *sw, const char *ns, const char *name)
{
    uint32_t lo = 0, hi = sw->n_authz;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int d = strcmp(sw->authz[mid].ns, ns);
        if (!d) d = strcmp(sw->authz[mid].name, name);
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int mesh_authorize(const struct mesh_index *m, const struct sockaddr *dst, const char *uri,
                   const char **policy)
{
    const struct snapwire_authz *allow = NULL;
    struct mesh_addr_key k;
    size_t lo = 0, hi;
    int allow_targets = 0;

    *policy = "default";
    if (!m) return 1;
    if (m->sw->n_authz && m->n_ep && key_of(dst, &k) == 0) {
        /* the first endpoint record at dst, then every one after it with the same key */
        hi = m->n_ep;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (addr_cmp(&m->by_ep[mid], &k) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < m->n_ep && addr_cmp(&m->by_ep[lo], &k) == 0; lo++) {
            const struct snapwire_mesh_service *s = m->by_ep[lo].svc;
            uint32_t i;
            for (i = authz_first(m->sw, s->ns, s->name);
                 i < m->sw->n_authz && !strcmp(m->sw->authz[i].ns, s->ns) &&
                 !strcmp(m->sw->authz[i].name, s->name);
                 i++) {
                const struct snapwire_authz *a = &m->sw->authz[i];
                if (a->port && a->port != s->port) continue;
                if (a->action == SNAPWIRE_AUTHZ_DENY) {
                    if (authz_matches(m->sw, a, uri)) {
                        *policy = a->source;
                        return 0;
                    }
                    continue;
                }
                allow_targets = 1;
                if (!allow && authz_matches(m->sw, a, uri)) allow = a;
            }
        }
    }
    if (allow) {
        *policy = allow->source;
        return 1;
    }
    if (allow_targets) {
        *policy = "no-allow-policy-matched";
        return 0;
    }
    return !m->default_deny;
}

int mesh_original_dst(int fd, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_storage local;
    socklen_t ll = sizeof(local);

    if (getsockname(fd, (struct sockaddr *)&local, &ll) < 0) return -1;
    memset(out, 0, sizeof(*out));
    if (local.ss_family == AF_INET6) {
        *len = sizeof(struct sockaddr_in6);
        if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, len) == 0) return 0;
        /* an IPv4 connection on a dual-stack socket keeps its NAT record in the v4 table */
    }
    *len = sizeof(struct sockaddr_in);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, len) == 0) return 0;
    return -1;
}

int mesh_looks_http(const char *buf, size_t len)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t i;

    for (i = 0; i < len && i < 24; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == ' ') return i > 0;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(tchar, ch))))
            return 0;
    }
    return i >= 24 ? 0 : -2;
}
