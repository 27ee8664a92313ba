/*
 * router: Kubernetes Ingress host and path matching over one snapshot.
 *
 * Does: normalise the Host header, pick the most specific vhost (exact host, then a "*."
 * wildcard covering exactly one extra label, then the catch-all ""), and return the first
 * route of that vhost whose path rule matches. There is no fallback to a less specific vhost
 * when the chosen one has no matching path (ingress-nginx behaviour); the caller then uses
 * the snapshot's default cluster.
 * Matching uses the normalised path (RFC 3986 6.2.2: escapes of unreserved characters
 * decoded, dot segments removed, runs of '/' merged, as nginx does before location matching), so
 * "/public/../admin" is routed as "/admin" - the backend resolves it the same way. The request
 * is forwarded as received.
 * Does not: own the snapshot, rank routes (the controller sends them in match order), or
 * decode escapes of reserved characters ("%2F" stays an escape, never a separator).
 * Invariants: the index is immutable after router_build, so any number of threads may call
 * router_match concurrently.
 */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct router {
    const struct snapwire_snapshot *snap;
    uint32_t n;
    const struct snapwire_vhost **sorted; /* by host, strcmp order */
};

static int cmp_vhost(const void *a, const void *b)
{
    const struct snapwire_vhost *const *x = a, *const *y = b;
    return strcmp((*x)->host, (*y)->host);
}

struct router *router_build(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    struct router *r;
    uint32_t i;

    r = calloc(1, sizeof(*r));
    if (!r) goto fail_alloc;
    r->snap = s;
    r->n = s->n_vhosts;
    r->sorted = calloc(s->n_vhosts ? s->n_vhosts : 1, sizeof(*r->sorted));
    if (!r->sorted) goto free_router;
    for (i = 0; i < s->n_vhosts; i++)
        r->sorted[i] = &s->vhosts[i];
    qsort(r->sorted, r->n, sizeof(*r->sorted), cmp_vhost);
    for (i = 1; i < r->n; i++) {
        if (strcmp(r->sorted[i - 1]->host, r->sorted[i]->host) == 0) {
            snprintf(err, errlen, "duplicate vhost \"%s\"", r->sorted[i]->host);
            goto free_sorted;
        }
    }
    return r;

free_sorted:
    free(r->sorted);
free_router:
    free(r);
    return NULL;
fail_alloc:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void router_free(struct router *r)
{
    if (!r) return;
    free(r->sorted);
    free(r);
}

static int host_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == ':' || c == '[' || c == ']' || c == '%';
}

int router_normalize_host(const char *host, size_t len, char *out, size_t outsz)
{
    size_t i, n = len, colons = 0;

    if (!host) n = 0;
    if (n + 1 > outsz) return -1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        if (!host_char_ok(c)) return -1;
        out[i] = (char)c;
        colons += c == ':';
    }
    out[n] = '\0';
    if (n && out[0] == '[') {
        char *rb = memchr(out, ']', n);
        if (!rb) return -1;
        i = (size_t)(rb - out) + 1;
        if (i < n && out[i] != ':') return -1;
        n = i; /* port (if any) checked below on the original tail */
        for (i++; i < len; i++)
            if (out[i] < '0' || out[i] > '9') return -1;
    } else if (colons == 1) {
        char *c = memchr(out, ':', n);
        for (i = (size_t)(c - out) + 1; i < n; i++)
            if (out[i] < '0' || out[i] > '9') return -1;
        n = (size_t)(c - out);
    } else if (colons > 1) {
        return -1; /* an IPv6 literal must be bracketed in Host */
    }
    if (n && out[n - 1] == '.') n--;
    out[n] = '\0';
    return (int)n;
}

int router_path_match(uint8_t match, const char *rule, const char *path, size_t path_len)
{
    size_t rl = strlen(rule);

    if (match == SNAPWIRE_MATCH_EXACT) return rl == path_len && memcmp(rule, path, rl) == 0;
    if (match != SNAPWIRE_MATCH_PREFIX) return 0;
    while (rl > 0 && rule[rl - 1] == '/')
        rl--; /* "/foo/" matches like "/foo"; "/" matches everything */
    if (rl == 0) return 1;
    if (path_len < rl || memcmp(rule, path, rl) != 0) return 0;
    return path_len == rl || path[rl] == '/';
}

static const struct snapwire_vhost *find_vhost(const struct router *r, const char *host)
{
    struct snapwire_vhost key = {.host = host};
    const struct snapwire_vhost *kp = &key, *const * hit;

    if (r->n == 0) return NULL;
    hit = bsearch(&kp, r->sorted, r->n, sizeof(*r->sorted), cmp_vhost);
    return hit ? *hit : NULL;
}

/* Extracts the path of an origin-form or absolute-form target, without query/fragment. */
static void target_path(const char *t, size_t n, const char **path, size_t *plen)
{
    size_t i = 0;

    if (n && t[0] != '/') {
        const char *sch = n >= 3 ? memchr(t, ':', n) : NULL;
        if (sch && (size_t)(sch - t) + 3 <= n && sch[1] == '/' && sch[2] == '/') {
            const char *p = sch + 3;
            const char *slash = memchr(p, '/', n - (size_t)(p - t));
            if (!slash) {
                *path = "/";
                *plen = 1;
                return;
            }
            n -= (size_t)(slash - t);
            t = slash;
        }
    }
    while (i < n && t[i] != '?' && t[i] != '#')
        i++;
    *path = t;
    *plen = i;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (unsigned char)(c | 0x20);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/*
 * Writes the normalised form of path[0..n) (which starts with '/') into out (size >= n + 1).
 * Returns the new length (at least 1: "/").
 */
static size_t normalize_path(const char *path, size_t n, char *out)
{
    size_t i = 0, o = 0;

    while (i < n) {
        unsigned char c = (unsigned char)path[i];
        int hi, lo;
        if (c == '%' && i + 2 < n && (hi = hexval((unsigned char)path[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)path[i + 2])) >= 0 &&
            unreserved((unsigned char)(hi << 4 | lo))) {
            c = (unsigned char)(hi << 4 | lo);
            i += 3;
        } else {
            i++;
        }
        if (c == '/' && o > 0 && out[o - 1] == '/') continue; /* merge slashes */
        out[o++] = (char)c;
        /* a segment just ended (or the path did): resolve "." and ".." */
        if (i == n || path[i] == '/') {
            if (o >= 2 && out[o - 1] == '.' && out[o - 2] == '/') {
                o--; /* "/." -> "/" */
            } else if (o >= 3 && out[o - 1] == '.' && out[o - 2] == '.' && out[o - 3] == '/') {
                o -= 3; /* drop "/..", then the segment before it */
                while (o > 0 && out[o - 1] != '/')
                    o--;
                if (o == 0) out[o++] = '/';
            }
        }
    }
    if (o == 0) out[o++] = '/';
    return o;
}

static int needs_normalizing(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' || (p[i] == '.' && i > 0 && p[i - 1] == '/') ||
            (p[i] == '/' && i > 0 && p[i - 1] == '/'))
            return 1;
    }
    return 0;
}

const struct snapwire_route *router_match(const struct router *r, const char *host, size_t host_len,
                                          const char *target, size_t target_len)
{
    const struct snapwire_vhost *vh = NULL;
    char key[ROUTER_MAX_HOST + 2], norm[ROUTER_MAX_PATH + 1];
    const char *path;
    size_t plen;
    uint32_t i;

    if (host_len > ROUTER_MAX_HOST) return NULL;
    if (host_len) {
        memcpy(key, host, host_len);
        key[host_len] = '\0';
        vh = find_vhost(r, key);
        if (!vh) {
            const char *dot = memchr(host, '.', host_len);
            if (dot && dot > host && (size_t)(dot - host) + 1 < host_len) {
                size_t rest = host_len - (size_t)(dot - host);
                key[0] = '*';
                memcpy(key + 1, dot, rest);
                key[rest + 1] = '\0';
                vh = find_vhost(r, key);
            }
        }
    }
    if (!vh) vh = find_vhost(r, "");
    if (!vh) return NULL;
    target_path(target, target_len, &path, &plen);
    if (plen && path[0] == '/' && plen <= ROUTER_MAX_PATH && needs_normalizing(path, plen)) {
        plen = normalize_path(path, plen, norm);
        path = norm;
    }
    for (i = 0; i < vh->route_count; i++) {
        const struct snapwire_route *rt = &r->snap->routes[vh->first_route + i];
        if (router_path_match(rt->match, rt->path, path, plen)) return rt;
    }
    return NULL;
}
