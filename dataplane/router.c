/*
 * router: host, path, method and condition matching over one snapshot (Kubernetes Ingress
 * and Gateway routes alike: the router does not know which kind a route came from).
 *
 * Does:
 * - Host: normalise the Host header and pick ONE vhost, the most specific name that has
 *   routes eligible for the request, in this order:
 *     1. the exact host ("a.b.foo.com");
 *     2. the wildcard one label up ("*.b.foo.com"): every route of it is eligible;
 *     3. the wildcards further up ("*.foo.com", then "*.com"): only routes flagged
 *        SNAPWIRE_ROUTE_WILD_ANY are eligible (Gateway API hostnames; an Ingress wildcard
 *        covers exactly one label, so Ingress-only snapshots skip these lookups entirely);
 *     4. the catch-all "".
 *   A vhost counts as present for a request only when it has at least one eligible route
 *   that may serve the request's listener kind (not TLS_ONLY on a plain listener, not
 *   PLAIN_ONLY on a TLS one): a Gateway listener is its own routing table. Once a vhost is
 *   chosen the request is routed within it or not at all: when none of its eligible routes
 *   matches, the answer is NULL, with no fallback to a less specific vhost (ingress-nginx
 *   behaviour); the caller then uses the snapshot's default cluster.
 * - Route: the first eligible route of the vhost (the controller sends them in precedence
 *   order) whose path (Exact, element-wise Prefix, or a REGEX matching the whole path), method
 *   (ANY matches every method; an unknown method only ANY routes), listener kind and every
 *   condition hold. Conditions: HEADER_EXACT, some request header of that name (ASCII case
 *   insensitive) has exactly that value; HEADER_REGEX, some such header's whole value matches;
 *   QUERY_EXACT, the first query parameter with exactly that name (raw bytes, no
 *   percent-decoding; "a" without '=' has value "") has exactly that value.
 * - Paths are matched normalised (RFC 3986 6.2.2: escapes of unreserved characters decoded,
 *   dot segments removed, runs of '/' merged, as nginx does before location matching), so
 *   "/public/../admin" is routed as "/admin" - the backend resolves it the same way. The
 *   request is forwarded as received (rewrite filters use router_request_path).
 * - Index: vhosts are bisected by name. A vhost with more than ROUTER_BUCKET_MIN routes also
 *   gets buckets by first path segment: a bucket holds (in precedence order) the routes that
 *   can only match paths with that first segment (Exact and Prefix paths, and REGEX patterns
 *   that start with a literal "/segment/" or are a literal "/segment"), the vhost's "any" list
 *   the others (Prefix "/", other patterns). A request walks the merge of its bucket and the
 *   any list in route order, so the result is the one a linear scan gives. Bisects compare an
 *   inline 8-byte key prefix first; each bucket's entries and their paths are copied side by
 *   side; a REGEX route's literal prefix is compared before PCRE2 runs.
 * - Weighted backends: one prefix-sum table over the BACKENDS section; router_pick_cluster scales
 * one random draw into [0, sum) (multiply-shift, no modulo bias) and bisects. Regular expressions
 * are compiled once here (regex.h, PCRE2 JIT, bounded); a pattern that does not compile fails
 * router_build, so the snapshot is NACKed. Does not: own the snapshot, rank routes, run filters, or
 * decode escapes of reserved characters ("%2F" stays an escape, never a separator). Invariants: the
 * index is immutable after router_build, so any number of threads may call router_route /
 * router_match / router_pick_cluster concurrently (regex_match uses the calling thread's own match
 * data; workers free it with regex_thread_end).
 */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "regex.h"

#define ROUTER_BUCKET_MIN 32 /* vhosts with more routes get a first-segment index */

/* rvhost.elig: the vhost has routes for (plain | tls) listeners, at (any | WILD_ANY) depth */
#define ELIG_PLAIN 0x1u
#define ELIG_TLS 0x2u
#define ELIG_WILD_SHIFT 2 /* ELIG_PLAIN << 2: a WILD_ANY route for plain listeners, ... */

#define METHOD_UNKNOWN 0xffu

struct rcond {
    uint8_t kind;
    uint32_t name_len, value_len;
    const char *name, *value;
    struct regex *re; /* HEADER_REGEX */
};

/* The hot part of one route, in snapshot route order. */
struct rent {
    const char *path;
    uint32_t plen; /* Exact: strlen(path); Prefix: without trailing '/' */
    uint8_t match, method, flags;
    uint32_t litlen; /* REGEX: the pattern's literal prefix every match starts with */
    uint32_t ncond;
    uint32_t route; /* index in snap->routes */
    const struct rcond *conds;
    struct regex *re; /* REGEX path (owned by the router's ents[] copy) */
};

struct rbucket {
    uint64_t pre;    /* key8(key): most bisect steps never read the key */
    const char *key; /* first path segment, not NUL-terminated */
    uint32_t klen;
    uint32_t first, count; /* entries blist[first .. +count), in route order */
};

struct rvhost {
    uint64_t pre; /* key8(host) */
    const char *host;
    uint32_t first, count; /* its routes */
    uint32_t elig;         /* ELIG_* */
    uint32_t nbuckets, nany;
    const struct rbucket *buckets; /* NULL: scan linearly */
    const struct rent *any;        /* the routes of any first segment, in route order */
};

struct router {
    const struct snapwire_snapshot *snap;
    uint32_t n;
    struct rvhost *vh;        /* by host, strcmp order */
    const struct rvhost *all; /* the catch-all "", or NULL */
    int wild_any;             /* some route is flagged WILD_ANY */
    struct rent *ents;        /* per route */
    struct rcond *conds;      /* per cond */
    uint64_t *cum;            /* n_backends + 1 prefix sums of the backends' weights */
    struct rbucket *buckets;  /* of every indexed vhost */
    struct rent *blist;       /* bucket and any lists: copies of ents[], each bucket's
                                 routes side by side */
    char *strs;               /* copies of the route paths, in ents[] then blist[] order */
    size_t nstrs;
};

/* A copy of e's path next to the previous one (locality for the scans). */
static void own_path(struct router *r, struct rent *e)
{
    size_t n = strlen(e->path) + 1;

    memcpy(r->strs + r->nstrs, e->path, n);
    e->path = r->strs + r->nstrs;
    r->nstrs += n;
}

/*
 * The first 8 bytes of s[0..n), big endian, zero padded: ordering two keys by it agrees with
 * their byte-wise order (strcmp, cmp_key) whenever it differs.
 */
static uint64_t key8(const char *s, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (i < n ? (unsigned char)s[i] : 0);
    return v;
}

static int cmp_rvhost(const void *a, const void *b)
{
    const struct rvhost *x = a, *y = b;
    if (x->pre != y->pre) return x->pre < y->pre ? -1 : 1;
    return strcmp(x->host, y->host);
}

static int cmp_key(const char *a, uint32_t al, const char *b, uint32_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

/* Literal pattern characters that may make up a path segment (no PCRE meaning). */
static int lit_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '~' || c == '%' || c == '!' || c == ',' || c == ';' || c == '=' ||
           c == '@' || c == ':' || c == '&';
}

/* 1 when pattern p has an alternation '|' outside every group (escapes, classes, \Q..\E and
 * (?#..) comments skipped). Errs on the side of "yes". */
static int top_level_alt(const char *p)
{
    int depth = 0;

    while (*p) {
        if (p[0] == '\\') {
            if (p[1] == 'Q') {
                const char *e = strstr(p + 2, "\\E");
                if (!e) return 0; /* quoted to the end: no more syntax */
                p = e + 2;
                continue;
            }
            if (!p[1]) return 1;
            p += 2;
            continue;
        }
        if (p[0] == '[') {
            p++;
            if (*p == '^') p++;
            if (*p == ']') p++; /* a leading ']' is literal */
            while (*p && *p != ']') {
                if (p[0] == '\\' && p[1]) {
                    p += 2;
                } else if (p[0] == '[' && p[1] == ':') {
                    const char *e = strstr(p + 2, ":]");
                    if (!e) return 1;
                    p = e + 2;
                } else {
                    p++;
                }
            }
            if (!*p) return 1;
            p++;
            continue;
        }
        if (p[0] == '(' && p[1] == '?' && p[2] == '#') {
            const char *e = strchr(p, ')');
            if (!e) return 1;
            p = e + 1;
            continue;
        }
        if (p[0] == '(') depth++;
        if (p[0] == ')') depth--;
        if (p[0] == '|' && depth <= 0) return 1;
        p++;
    }
    return 0;
}

/*
 * The literal prefix of pattern p: the leading bytes every subject it matches starts with
 * (segment characters and '/', up to the first other syntax or a character a quantifier
 * applies to). 0 when p has a top-level alternation. Sets *whole when that is all of p.
 */
static uint32_t literal_prefix(const char *p, int *whole)
{
    uint32_t i = 0;

    *whole = 0;
    if (top_level_alt(p)) return 0;
    while (p[i] && (p[i] == '/' || lit_char((unsigned char)p[i]))) {
        char q = p[i + 1];
        if (q == '?' || q == '*' || q == '+' || q == '{') break;
        i++;
    }
    *whole = p[i] == '\0';
    return i;
}

/*
 * The first path segment every path a route can match starts with: sets *key and *klen and
 * returns 1, or returns 0 when the route may match paths of any first segment.
 */
static int route_segment(const struct rent *e, const char **key, uint32_t *klen)
{
    const char *p = e->path;
    uint32_t i, n;
    int whole = 0;

    if (p[0] != '/') return 0;
    if (e->match == SNAPWIRE_MATCH_EXACT || e->match == SNAPWIRE_MATCH_PREFIX) {
        if (e->match == SNAPWIRE_MATCH_PREFIX && e->plen == 0) return 0; /* "/" */
        n = e->plen;
    } else if (e->match == SNAPWIRE_MATCH_REGEX) {
        /* "/seg" alone, or "/seg/..." */
        n = literal_prefix(p, &whole);
        if (n == 0) return 0;
    } else {
        return 0;
    }
    for (i = 1; i < n && p[i] != '/'; i++)
        ;
    if (e->match == SNAPWIRE_MATCH_REGEX && i == n && !whole) return 0;
    *key = p + 1;
    *klen = i - 1;
    return 1;
}

struct seg_sort {
    const char *key;
    uint32_t klen, route;
};

static int cmp_seg(const void *a, const void *b)
{
    const struct seg_sort *x = a, *y = b;
    int c = cmp_key(x->key, x->klen, y->key, y->klen);
    if (c) return c;
    return x->route < y->route ? -1 : x->route > y->route;
}

/* Builds v's first-segment index into r->buckets / r->blist from *nb / *nl on. */
static int index_vhost(struct router *r, struct rvhost *v, uint32_t *nb, uint32_t *nl)
{
    struct seg_sort *tmp = malloc((size_t)v->count * sizeof(*tmp));
    uint32_t i, n = 0, nany = 0;
    struct rent *any;
    struct rbucket *bk = r->buckets + *nb;

    if (!tmp) return -1;
    any = r->blist + *nl;
    for (i = 0; i < v->count; i++) {
        uint32_t ri = v->first + i;
        const char *key;
        uint32_t klen;
        if (route_segment(&r->ents[ri], &key, &klen)) {
            tmp[n++] = (struct seg_sort){key, klen, ri};
        } else {
            any[nany] = r->ents[ri];
            own_path(r, &any[nany++]);
        }
    }
    qsort(tmp, n, sizeof(*tmp), cmp_seg);
    v->any = any;
    v->nany = nany;
    *nl += nany;
    v->buckets = bk;
    v->nbuckets = 0;
    for (i = 0; i < n; i++) {
        if (i == 0 || cmp_key(tmp[i].key, tmp[i].klen, tmp[i - 1].key, tmp[i - 1].klen) != 0) {
            struct rbucket *b = &bk[v->nbuckets++];
            b->pre = key8(tmp[i].key, tmp[i].klen);
            b->klen = tmp[i].klen;
            b->first = *nl;
            b->count = 0;
        }
        r->blist[*nl] = r->ents[tmp[i].route];
        own_path(r, &r->blist[*nl]);
        if (bk[v->nbuckets - 1].count++ == 0) /* every entry's path starts "/key" */
            bk[v->nbuckets - 1].key = r->blist[*nl].path + 1;
        (*nl)++;
    }
    *nb += v->nbuckets;
    free(tmp);
    return 0;
}

static int compile_re(const char *pattern, uint32_t route, const char *source, struct regex **out,
                      char *err, size_t errlen)
{
    char msg[200];

    *out = regex_compile(pattern, msg, sizeof(msg));
    if (*out) return 0;
    snprintf(err, errlen, "route %u (%s): invalid regular expression \"%.200s\": %s", route,
             source ? source : "", pattern, msg);
    return -1;
}

static struct router *build(const struct snapwire_snapshot *s, uint32_t bucket_min, char *err,
                            size_t errlen)
{
    struct router *r;
    uint32_t i, j, nb = 0, nl = 0;
    size_t nstr = 0;

    r = calloc(1, sizeof(*r));
    if (!r) goto fail_oom;
    r->snap = s;
    r->n = s->n_vhosts;
    r->vh = calloc(s->n_vhosts ? s->n_vhosts : 1, sizeof(*r->vh));
    r->ents = calloc(s->n_routes ? s->n_routes : 1, sizeof(*r->ents));
    r->conds = calloc(s->n_conds ? s->n_conds : 1, sizeof(*r->conds));
    if (!r->vh || !r->ents || !r->conds) goto fail_oom;
    for (i = 0; i < s->n_conds; i++) {
        const struct snapwire_cond *c = &s->conds[i];
        struct rcond *rc = &r->conds[i];
        rc->kind = c->kind;
        rc->name = c->name ? c->name : "";
        rc->value = c->value ? c->value : "";
        rc->name_len = (uint32_t)strlen(rc->name);
        rc->value_len = (uint32_t)strlen(rc->value);
    }
    for (i = 0; i < s->n_routes; i++) {
        const struct snapwire_route *rt = &s->routes[i];
        struct rent *e = &r->ents[i];
        const char *src = rt->source ? rt->source : "";

        if ((uint64_t)rt->first_cond + rt->cond_count > s->n_conds ||
            (uint64_t)rt->first_backend + rt->backend_count > s->n_backends) {
            snprintf(err, errlen, "route %u (%s): condition or backend range out of bounds", i,
                     src);
            goto fail;
        }
        e->path = rt->path ? rt->path : "";
        e->plen = (uint32_t)strlen(e->path);
        e->match = rt->match;
        e->method = rt->method;
        e->flags = rt->flags;
        e->ncond = rt->cond_count;
        e->conds = r->conds + rt->first_cond;
        e->route = i;
        if (e->match == SNAPWIRE_MATCH_PREFIX)
            while (e->plen > 0 && e->path[e->plen - 1] == '/')
                e->plen--; /* "/foo/" matches like "/foo"; "/" matches everything */
        if (e->match == SNAPWIRE_MATCH_REGEX) {
            int whole;
            if (compile_re(e->path, i, src, &e->re, err, errlen) < 0) goto fail;
            e->litlen = literal_prefix(e->path, &whole);
        }
        if (rt->flags & SNAPWIRE_ROUTE_WILD_ANY) r->wild_any = 1;
    }
    /*
     * Header patterns: once per condition record, not per route naming it (ranges may
     * overlap). The error names the first route that uses the condition.
     */
    for (j = 0; j < s->n_conds; j++) {
        struct rcond *rc = &r->conds[j];
        if (rc->kind != SNAPWIRE_COND_HEADER_REGEX) continue;
        if (compile_re(rc->value, 0, "", &rc->re, err, errlen) < 0) {
            for (i = 0; i < s->n_routes; i++) {
                const struct snapwire_route *rt = &s->routes[i];
                if (j >= rt->first_cond && j - rt->first_cond < rt->cond_count) {
                    compile_re(rc->value, i, rt->source ? rt->source : "", &rc->re, err, errlen);
                    break;
                }
            }
            goto fail;
        }
    }
    /*
     * One prefix-sum table over the whole BACKENDS section (cum[k] = weights of backends
     * [0, k)), shared by every route: a route's weights are a difference of two entries and
     * its pick a bisect inside its range, so the table costs O(n_backends) whatever the
     * routes' ranges (even overlapping ones of a hostile frame).
     */
    r->cum = calloc((size_t)s->n_backends + 1, sizeof(*r->cum));
    if (!r->cum) goto fail_oom;
    for (j = 0; j < s->n_backends; j++)
        r->cum[j + 1] = r->cum[j] + s->backends[j].weight;
    for (i = 0; i < s->n_routes; i++) {
        const struct snapwire_route *rt = &s->routes[i];
        if (!rt->backend_count) continue;
        if ((uint64_t)rt->first_backend + rt->backend_count > s->n_backends) {
            snprintf(err, errlen, "route %u: backend range out of bounds", i);
            goto fail;
        }
        if (r->cum[rt->first_backend + rt->backend_count] - r->cum[rt->first_backend] >
            UINT32_MAX) {
            snprintf(err, errlen, "route %u (%s): backend weights sum above 2^32-1", i,
                     rt->source ? rt->source : "");
            goto fail;
        }
    }
    for (i = 0; i < s->n_vhosts; i++) {
        const struct snapwire_vhost *sv = &s->vhosts[i];
        struct rvhost *v = &r->vh[i];

        if ((uint64_t)sv->first_route + sv->route_count > s->n_routes) {
            snprintf(err, errlen, "vhost \"%s\": route range out of bounds", sv->host);
            goto fail;
        }
        v->host = sv->host ? sv->host : "";
        v->pre = key8(v->host, strlen(v->host));
        v->first = sv->first_route;
        v->count = sv->route_count;
        for (j = 0; j < v->count; j++) {
            uint8_t f = r->ents[v->first + j].flags;
            uint32_t bits = (f & SNAPWIRE_ROUTE_TLS_ONLY ? 0 : ELIG_PLAIN) |
                            (f & SNAPWIRE_ROUTE_PLAIN_ONLY ? 0 : ELIG_TLS);
            v->elig |= bits;
            if (f & SNAPWIRE_ROUTE_WILD_ANY) v->elig |= bits << ELIG_WILD_SHIFT;
        }
    }
    qsort(r->vh, r->n, sizeof(*r->vh), cmp_rvhost);
    for (i = 0; i < r->n; i++) {
        if (i > 0 && strcmp(r->vh[i - 1].host, r->vh[i].host) == 0) {
            snprintf(err, errlen, "duplicate vhost \"%s\"", r->vh[i].host);
            goto fail;
        }
        if (r->vh[i].host[0] == '\0') r->all = &r->vh[i];
    }
    /*
     * Path copies: every route's in ents[] order, then again for each route of an indexed
     * vhost in blist[] order (bucket and any lists hold each route of such a vhost once).
     */
    for (i = 0; i < s->n_routes; i++)
        nstr += strlen(r->ents[i].path) + 1;
    for (i = 0; i < r->n; i++) {
        if (r->vh[i].count <= bucket_min) continue;
        nl += r->vh[i].count;
        for (j = 0; j < r->vh[i].count; j++)
            nstr += strlen(r->ents[r->vh[i].first + j].path) + 1;
    }
    if (!(r->strs = malloc(nstr ? nstr : 1))) goto fail_oom;
    for (i = 0; i < s->n_routes; i++)
        own_path(r, &r->ents[i]);
    if (nl) {
        r->buckets = calloc(nl, sizeof(*r->buckets));
        r->blist = calloc(nl, sizeof(*r->blist));
        if (!r->buckets || !r->blist) goto fail_oom;
        nl = 0;
    }
    for (i = 0; i < r->n; i++)
        if (r->vh[i].count > bucket_min && index_vhost(r, &r->vh[i], &nb, &nl) < 0) goto fail_oom;
    return r;

fail_oom:
    snprintf(err, errlen, "out of memory");
fail:
    router_free(r);
    return NULL;
}

struct router *router_build(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    return build(s, ROUTER_BUCKET_MIN, err, errlen);
}

void router_free(struct router *r)
{
    uint32_t i;

    if (!r) return;
    if (r->ents)
        for (i = 0; i < r->snap->n_routes; i++)
            regex_free(r->ents[i].re);
    if (r->conds)
        for (i = 0; i < r->snap->n_conds; i++)
            regex_free(r->conds[i].re);
    free(r->vh);
    free(r->ents);
    free(r->conds);
    free(r->cum);
    free(r->buckets);
    free(r->blist);
    free(r->strs);
    free(r);
}

/* The bytes a Host may hold, each mapped to its lower case; 0 for every other byte. */
static const unsigned char host_map[256] = {
    ['a'] = 'a', ['A'] = 'a', ['b'] = 'b', ['B'] = 'b', ['c'] = 'c', ['C'] = 'c', ['d'] = 'd',
    ['D'] = 'd', ['e'] = 'e', ['E'] = 'e', ['f'] = 'f', ['F'] = 'f', ['g'] = 'g', ['G'] = 'g',
    ['h'] = 'h', ['H'] = 'h', ['i'] = 'i', ['I'] = 'i', ['j'] = 'j', ['J'] = 'j', ['k'] = 'k',
    ['K'] = 'k', ['l'] = 'l', ['L'] = 'l', ['m'] = 'm', ['M'] = 'm', ['n'] = 'n', ['N'] = 'n',
    ['o'] = 'o', ['O'] = 'o', ['p'] = 'p', ['P'] = 'p', ['q'] = 'q', ['Q'] = 'q', ['r'] = 'r',
    ['R'] = 'r', ['s'] = 's', ['S'] = 's', ['t'] = 't', ['T'] = 't', ['u'] = 'u', ['U'] = 'u',
    ['v'] = 'v', ['V'] = 'v', ['w'] = 'w', ['W'] = 'w', ['x'] = 'x', ['X'] = 'x', ['y'] = 'y',
    ['Y'] = 'y', ['z'] = 'z', ['Z'] = 'z', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3',
    ['4'] = '4', ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['-'] = '-',
    ['.'] = '.', ['_'] = '_', [':'] = ':', ['['] = '[', [']'] = ']', ['%'] = '%',
};

int router_normalize_host(const char *host, size_t len, char *out, size_t outsz)
{
    size_t i, n = len, colons = 0;

    if (!host) n = 0;
    if (n + 1 > outsz) return -1;
    for (i = 0; i < n; i++) {
        unsigned char c = host_map[(unsigned char)host[i]];
        if (!c) return -1;
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

static const struct rvhost *find_vhost(const struct router *r, const char *host, size_t len)
{
    uint64_t pre = key8(host, len);
    uint32_t lo = 0, hi = r->n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct rvhost *v = &r->vh[mid];
        int c = v->pre != pre ? (v->pre < pre ? -1 : 1) : strcmp(v->host, host);
        if (c == 0) return v;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/*
 * Splits an origin-form or absolute-form target into its path (without query and fragment)
 * and query (after '?', up to a '#'; NULL when there is none), in one pass. Returns 1 when
 * the path may need normalising ('%', "//", "/." in it).
 */
static int split_target(const char *t, size_t n, const char **path, size_t *plen,
                        const char **query, size_t *qlen)
{
    const char *end = t + n;
    size_t i;
    int norm = 0;

    *query = NULL;
    *qlen = 0;
    if (n && t[0] != '/') {
        const char *sch = n >= 3 ? memchr(t, ':', n) : NULL;
        if (sch && (size_t)(sch - t) + 3 <= n && sch[1] == '/' && sch[2] == '/') {
            const char *a = sch + 3;
            while (a < end && *a != '/' && *a != '?' && *a != '#')
                a++; /* the authority */
            if (a == end || *a != '/') {
                *path = "/";
                *plen = 1;
                if (a < end && *a == '?') {
                    const char *h = memchr(a + 1, '#', (size_t)(end - a - 1));
                    *query = a + 1;
                    *qlen = (size_t)((h ? h : end) - *query);
                }
                return 0;
            }
            n = (size_t)(end - a);
            t = a;
        }
    }
    for (i = 0; i < n; i++) {
        char ch = t[i];
        if (ch == '?' || ch == '#') break;
        if (ch == '%' || ((ch == '.' || ch == '/') && i > 0 && t[i - 1] == '/')) norm = 1;
    }
    *path = t;
    *plen = i;
    if (i < n && t[i] == '?') {
        const char *h = memchr(t + i + 1, '#', n - i - 1);
        *query = t + i + 1;
        *qlen = (size_t)((h ? h : end) - *query);
    }
    return norm;
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

/* The path to match: normalised into buf when it needs it. */
static size_t match_path(const char *path, size_t plen, int norm, char *buf, const char **out)
{
    *out = path;
    if (norm && plen && path[0] == '/' && plen <= ROUTER_MAX_PATH) {
        plen = normalize_path(path, plen, buf);
        *out = buf;
    }
    return plen;
}

size_t router_request_path(const char *target, size_t target_len, char *buf, const char **path)
{
    const char *p, *q;
    size_t plen, qlen;
    int norm = split_target(target, target_len, &p, &plen, &q, &qlen);

    return match_path(p, plen, norm, buf, path);
}

/* The request as the route tests need it. */
struct rctx {
    const char *path;
    size_t plen;
    const char *query; /* after '?', NULL when the target has none */
    size_t qlen;
    const struct http1_header *hdrs;
    size_t nh;
    uint8_t method; /* enum snapwire_method, or METHOD_UNKNOWN */
    uint8_t reject; /* route flags that rule a route out (the other listener kind) */
    uint8_t need;   /* route flags a route must have (WILD_ANY deeper than one label) */
};

static uint8_t method_of(const char *m, size_t n)
{
    if (!m) return METHOD_UNKNOWN;
    switch (n) {
    case 3:
        if (!memcmp(m, "GET", 3)) return SNAPWIRE_METHOD_GET;
        if (!memcmp(m, "PUT", 3)) return SNAPWIRE_METHOD_PUT;
        break;
    case 4:
        if (!memcmp(m, "HEAD", 4)) return SNAPWIRE_METHOD_HEAD;
        if (!memcmp(m, "POST", 4)) return SNAPWIRE_METHOD_POST;
        break;
    case 5:
        if (!memcmp(m, "TRACE", 5)) return SNAPWIRE_METHOD_TRACE;
        if (!memcmp(m, "PATCH", 5)) return SNAPWIRE_METHOD_PATCH;
        break;
    case 6:
        if (!memcmp(m, "DELETE", 6)) return SNAPWIRE_METHOD_DELETE;
        break;
    case 7:
        if (!memcmp(m, "CONNECT", 7)) return SNAPWIRE_METHOD_CONNECT;
        if (!memcmp(m, "OPTIONS", 7)) return SNAPWIRE_METHOD_OPTIONS;
        break;
    }
    return METHOD_UNKNOWN;
}

/* The header name at s[0..n) equals the lower-case name lc[0..n), ASCII case-insensitively. */
static int name_eq(const char *s, const char *lc, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + ('a' - 'A'));
        if (c != (unsigned char)lc[i]) return 0;
    }
    return 1;
}

static int query_is(const struct rctx *c, const struct rcond *k)
{
    const char *q = c->query, *end = c->query + c->qlen;

    if (!q) return 0;
    while (q <= end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ne = eq ? eq : pe;
        if ((size_t)(ne - q) == k->name_len && memcmp(q, k->name, k->name_len) == 0) {
            const char *v = eq ? eq + 1 : pe;
            return (size_t)(pe - v) == k->value_len && memcmp(v, k->value, k->value_len) == 0;
        }
        if (!amp) break;
        q = amp + 1;
    }
    return 0;
}

static int cond_holds(const struct rctx *c, const struct rcond *k)
{
    size_t i;

    if (k->kind == SNAPWIRE_COND_QUERY_EXACT) return query_is(c, k);
    for (i = 0; i < c->nh; i++) {
        const struct http1_header *h = &c->hdrs[i];
        if (h->name_len != k->name_len || !name_eq(h->name, k->name, k->name_len)) continue;
        if (k->kind == SNAPWIRE_COND_HEADER_EXACT) {
            if (h->value_len == k->value_len && memcmp(h->value, k->value, k->value_len) == 0)
                return 1;
        } else if (k->kind == SNAPWIRE_COND_HEADER_REGEX) {
            if (regex_match(k->re, h->value, h->value_len)) return 1;
        }
    }
    return 0;
}

static int ent_matches(const struct rent *e, const struct rctx *c)
{
    uint32_t i;

    if ((e->flags & c->reject) || (e->flags & c->need) != c->need) return 0;
    if (e->method != SNAPWIRE_METHOD_ANY && e->method != c->method) return 0;
    switch (e->match) {
    case SNAPWIRE_MATCH_EXACT:
        if (c->plen != e->plen || memcmp(c->path, e->path, e->plen) != 0) return 0;
        break;
    case SNAPWIRE_MATCH_PREFIX:
        if (e->plen && (c->plen < e->plen || memcmp(c->path, e->path, e->plen) != 0 ||
                        (c->plen != e->plen && c->path[e->plen] != '/')))
            return 0;
        break;
    case SNAPWIRE_MATCH_REGEX:
        if (c->plen < e->litlen || memcmp(c->path, e->path, e->litlen) != 0 ||
            !regex_match(e->re, c->path, c->plen))
            return 0;
        break;
    default:
        return 0;
    }
    for (i = 0; i < e->ncond; i++)
        if (!cond_holds(c, &e->conds[i])) return 0;
    return 1;
}

static const struct rbucket *find_bucket(const struct rvhost *v, const char *key, size_t klen)
{
    uint64_t pre = key8(key, klen);
    uint32_t lo = 0, hi = v->nbuckets;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct rbucket *b = &v->buckets[mid];
        int c =
            b->pre != pre ? (b->pre < pre ? -1 : 1) : cmp_key(b->key, b->klen, key, (uint32_t)klen);
        if (c == 0) return b;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const struct snapwire_route *route_in(const struct router *r, const struct rvhost *v,
                                             const struct rctx *c)
{
    const struct rbucket *b = NULL;
    const struct rent *bl = NULL;
    uint32_t i = 0, j = 0, nb = 0;

    if (!v->buckets) {
        for (i = 0; i < v->count; i++)
            if (ent_matches(&r->ents[v->first + i], c)) return &r->snap->routes[v->first + i];
        return NULL;
    }
    if (c->plen && c->path[0] == '/') {
        const char *s = c->path + 1, *sl = memchr(s, '/', c->plen - 1);
        b = find_bucket(v, s, sl ? (size_t)(sl - s) : c->plen - 1);
    }
    if (b) {
        bl = r->blist + b->first;
        nb = b->count;
    }
    /* the bucket's routes and the any list, merged in route order */
    while (i < nb || j < v->nany) {
        const struct rent *e =
            (j >= v->nany || (i < nb && bl[i].route < v->any[j].route)) ? &bl[i++] : &v->any[j++];
        if (ent_matches(e, c)) return &r->snap->routes[e->route];
    }
    return NULL;
}

const struct snapwire_route *router_route(const struct router *r, const struct router_request *req)
{
    const struct rvhost *v = NULL;
    char key[ROUTER_MAX_HOST + 2], norm[ROUTER_MAX_PATH + 1];
    size_t hl = req->host ? req->host_len : 0;
    uint32_t want = req->tls ? ELIG_TLS : ELIG_PLAIN;
    struct rctx c;

    if (hl > ROUTER_MAX_HOST) return NULL;
    c.need = 0;
    if (hl) {
        memcpy(key, req->host, hl);
        key[hl] = '\0';
        v = find_vhost(r, key, hl);
        if (v && !(v->elig & want)) v = NULL;
        if (!v) {
            /* "*" + the suffix from each dot on, written in place before that dot */
            const char *dot = memchr(key, '.', hl);
            int depth = 1;
            while (dot && dot > key && (size_t)(dot - key) + 1 < hl && dot[-1] != '.') {
                uint32_t bits = depth == 1 ? want : want << ELIG_WILD_SHIFT;
                char *star = (char *)dot - 1, save = *star;
                *star = '*';
                v = find_vhost(r, star, hl - (size_t)(star - key));
                *star = save;
                if (v && (v->elig & bits)) break;
                v = NULL;
                if (!r->wild_any) break; /* Ingress only: one label, no deeper lookups */
                depth++;
                dot = memchr(dot + 1, '.', hl - (size_t)(dot + 1 - key));
            }
            if (v && depth > 1) c.need = SNAPWIRE_ROUTE_WILD_ANY;
        }
    }
    if (!v && r->all && (r->all->elig & want)) v = r->all;
    if (!v) return NULL;
    {
        const char *p;
        size_t plen;
        int nn = split_target(req->target, req->target_len, &p, &plen, &c.query, &c.qlen);
        c.plen = match_path(p, plen, nn, norm, &c.path);
    }
    c.hdrs = req->headers;
    c.nh = req->headers ? req->n_headers : 0;
    c.method = method_of(req->method, req->method_len);
    c.reject = req->tls ? SNAPWIRE_ROUTE_PLAIN_ONLY : SNAPWIRE_ROUTE_TLS_ONLY;
    return route_in(r, v, &c);
}

const struct snapwire_route *router_match(const struct router *r, const char *host, size_t host_len,
                                          const char *target, size_t target_len)
{
    struct router_request req = {.host = host,
                                 .host_len = host_len,
                                 .target = target,
                                 .target_len = target_len,
                                 .method = NULL,
                                 .method_len = 0,
                                 .headers = NULL,
                                 .n_headers = 0,
                                 .tls = 0};

    return router_route(r, &req);
}

uint32_t router_pick_cluster(const struct router *r, const struct snapwire_route *rt, uint32_t rnd)
{
    const struct snapwire_snapshot *s = r->snap;
    const uint64_t *cum;
    uint64_t sum, pick;
    uint32_t lo, hi;

    if (!rt) return SNAPWIRE_NONE;
    if (rt->backend_count == 0) return rt->cluster;
    if (rt < s->routes || rt >= s->routes + s->n_routes) return SNAPWIRE_NONE;
    cum = r->cum + rt->first_backend; /* cum[j + 1] - cum[0]: weights of the first j + 1 */
    sum = cum[rt->backend_count] - cum[0];
    if (sum == 0) return SNAPWIRE_NONE;
    pick = cum[0] + (((uint64_t)rnd * sum) >> 32); /* [cum[0], cum[0] + sum) */
    /* the first backend whose cumulative weight exceeds pick (weight 0 ones never are) */
    lo = 0;
    hi = rt->backend_count - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cum[mid + 1] > pick)
            hi = mid;
        else
            lo = mid + 1;
    }
    return s->backends[rt->first_backend + lo].cluster;
}

unsigned router_host_port(const char *h, size_t n)
{
    const char *colon;
    unsigned port = 0;
    size_t i;

    if (n && h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        if (!rb || (size_t)(rb - h) + 1 >= n || rb[1] != ':') return 0;
        colon = rb + 1;
    } else {
        colon = memchr(h, ':', n);
        if (!colon) return 0;
    }
    for (i = (size_t)(colon - h) + 1; i < n; i++) {
        if (h[i] < '0' || h[i] > '9') return 0;
        port = port * 10 + (unsigned)(h[i] - '0');
        if (port > 65535) return 0;
    }
    return port;
}
