/*
 * gwbuild: Gateways -> route candidates and status notes (see gwbuild.h).
 *
 * Does: the Gateway API's attachment rules (routes[].listenerNames, else every listener; a
 * listener attaches a route when their hostnames intersect: "*.example.com" and
 * "foo.example.com" give "foo.example.com", no hostname on either side means the other's, none
 * on both the catch-all ""), the listener kinds of each effective hostname (HTTP listeners are
 * the data plane's plain ones, HTTPS its TLS ones), regular expression checks with PCRE2 (the
 * data plane's compile options: anchored, UTF), backendRef / mirror resolution to Service
 * ports of the Gateway's namespace (other namespaces: RefNotPermitted, no ReferenceGrant yet).
 * Does not: order or settle routes, check certificates, or emit anything (snapbuild does).
 * Invariants: candidates come out in cache order (Gateways by namespace/name, then routes[],
 * hostnames in first-seen order, rules, matches); notes keep the first problem in that order.
 */
#include "gwbuild.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapwire.h"

#define GWB_CHUNK 16384
#define GWB_MAX_PATTERN 1024 /* dataplane/regex.h REGEX_MAX_PATTERN */

struct gwb_chunk {
    struct gwb_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

static void *gwb_alloc(struct gwb_set *s, size_t size)
{
    struct gwb_chunk *c = s->mem;
    void *r;

    size = (size + 15) & ~(size_t)15;
    if (!size) size = 16;
    if (!c || c->size - c->used < size) {
        size_t cs = size > GWB_CHUNK ? size : GWB_CHUNK;
        if (!(c = malloc(sizeof(*c) + cs))) return NULL;
        c->used = 0;
        c->size = cs;
        c->next = s->mem;
        s->mem = c;
    }
    r = c->data + c->used;
    c->used += size;
    memset(r, 0, size);
    return r;
}

static char *gwb_strdup(struct gwb_set *s, const char *str)
{
    size_t n = strlen(str) + 1;
    char *r = gwb_alloc(s, n);

    if (r) memcpy(r, str, n);
    return r;
}

void gwb_note_add(struct gwb_note *n, const char *reason, const char *fmt, ...)
{
    va_list ap;

    if (n->n++) return;
    n->reason = reason;
    va_start(ap, fmt);
    vsnprintf(n->msg, sizeof(n->msg), fmt, ap);
    va_end(ap);
}

int gwbuild_regex_ok(const char *pattern, char *err, size_t errlen)
{
    PCRE2_SIZE erroff;
    pcre2_code *code;
    size_t n = strlen(pattern);
    int errcode;

    if (n > GWB_MAX_PATTERN) {
        snprintf(err, errlen, "longer than %d bytes", GWB_MAX_PATTERN);
        return 0;
    }
    code = pcre2_compile((PCRE2_SPTR)pattern, n, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF,
                         &errcode, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", errcode);
        snprintf(err, errlen, "%s at offset %zu", (const char *)msg, (size_t)erroff);
        return 0;
    }
    pcre2_code_free(code);
    return 1;
}

/* name has at least one label before suffix (which starts with '.') */
static int gwb_below(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);

    return n > s && !strcmp(name + n - s, suffix);
}

static int gwb_put(char *out, size_t n, const char *h)
{
    snprintf(out, n, "%s", h);
    return 1;
}

int gwbuild_intersect(const char *rh, const char *lh, char *out, size_t n)
{
    int rw = rh[0] == '*', lw = lh[0] == '*';

    if (!lh[0]) return gwb_put(out, n, rh);
    if (!rh[0]) return gwb_put(out, n, lh);
    if (!strcmp(rh, lh)) return gwb_put(out, n, rh);
    if (lw && !rw) return gwb_below(rh, lh + 1) ? gwb_put(out, n, rh) : 0;
    if (rw && !lw) return gwb_below(lh, rh + 1) ? gwb_put(out, n, lh) : 0;
    if (rw && lw) {
        /* the narrower wildcard: "*.a.example.com" within "*.example.com" */
        if (gwb_below(rh + 1, lh + 1)) return gwb_put(out, n, rh);
        if (gwb_below(lh + 1, rh + 1)) return gwb_put(out, n, lh);
    }
    return 0;
}

static int gwb_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The conditions of m as one canonical string (sorted entries), "" when none. */
static const char *gwb_sig(struct gwb_set *s, const struct model_gw_match *m)
{
    const char *ent[32];
    size_t n = 0, i, len = 0, k;
    char *buf, *p;

    if (!m->n_headers && !m->n_query) return "";
    for (i = 0; i < m->n_headers && n < 32; i++) {
        const struct model_gw_kv_match *h = &m->headers[i];
        size_t l = strlen(h->name) + strlen(h->value) + 3;
        if (!(p = gwb_alloc(s, l))) return NULL;
        p[0] = h->type == MODEL_GW_VALUE_REGEX ? 'R' : 'H';
        for (k = 0; h->name[k]; k++)
            p[1 + k] = (char)tolower((unsigned char)h->name[k]);
        p[1 + k] = '\x1f';
        strcpy(p + 2 + k, h->value);
        ent[n++] = p;
    }
    for (i = 0; i < m->n_query && n < 32; i++) {
        const struct model_gw_kv_match *q = &m->query[i];
        size_t l = strlen(q->name) + strlen(q->value) + 3;
        if (!(p = gwb_alloc(s, l))) return NULL;
        snprintf(p, l, "Q%s\x1f%s", q->name, q->value);
        ent[n++] = p;
    }
    qsort(ent, n, sizeof(*ent), gwb_cmp_str);
    for (i = 0; i < n; i++)
        len += strlen(ent[i]) + 1;
    if (!(buf = gwb_alloc(s, len + 1))) return NULL;
    for (i = 0, p = buf; i < n; i++) {
        size_t l = strlen(ent[i]);
        memcpy(p, ent[i], l);
        p += l;
        *p++ = '\x1e';
    }
    *p = '\0';
    return buf;
}

/* Resolves a backendRef (or a mirror's) at field path at; notes problems in g->refs. */
static int gwb_resolve(struct gwb_set *s, const struct model_cache *cache, struct gwb_gateway *g,
                       const struct model_gw_backend_ref *ref, const char *at,
                       struct gwb_backend *out)
{
    const struct model_gateway *gw = g->gw;
    const struct model_service *svc;
    char sni[600];
    size_t i;

    out->weight = ref->weight < 0 ? 0 : (uint32_t)ref->weight;
    out->policy = ref->policy.set ? &ref->policy : NULL;
    if (strcmp(ref->ns, gw->meta.ns)) {
        gwb_note_add(&g->refs, "RefNotPermitted",
                     "%s: service %s/%s is in another namespace than the Gateway (no "
                     "ReferenceGrant support): its share answers 500",
                     at, ref->ns, ref->name);
        return 0;
    }
    svc = (const struct model_service *)model_cache_find(cache, MODEL_KIND_SERVICE, ref->ns,
                                                         ref->name);
    if (!svc) {
        gwb_note_add(&g->refs, "BackendNotFound",
                     "%s: service %s/%s not found: its share answers 500", at, ref->ns, ref->name);
        return 0;
    }
    for (i = 0; i < svc->n_ports; i++)
        if (svc->ports[i].port == ref->port) break;
    if (i == svc->n_ports) {
        gwb_note_add(&g->refs, "BackendNotFound",
                     "%s: service %s/%s has no port %ld: its share answers 500", at, ref->ns,
                     ref->name, ref->port);
        return 0;
    }
    out->svc = svc;
    out->sp = &svc->ports[i];
    if (out->sp->app_https) {
        snprintf(sni, sizeof(sni), "%s.%s.svc", svc->meta.name, svc->meta.ns);
        if (!(out->sni = gwb_strdup(s, sni))) return -1;
    }
    return 0;
}

/* Compiles the regular expressions of gw; the first bad one makes it invalid. */
static void gwb_check_regexes(struct gwb_gateway *g)
{
    const struct model_gateway *gw = g->gw;
    char err[300];
    size_t r, u, m, h;

    for (r = 0; r < gw->n_routes; r++) {
        for (u = 0; u < gw->routes[r].n_rules; u++) {
            const struct model_gw_rule *rule = &gw->routes[r].rules[u];
            for (m = 0; m < rule->n_matches; m++) {
                const struct model_gw_match *mt = &rule->matches[m];
                if (mt->path_type == MODEL_GW_PATH_REGEX &&
                    !gwbuild_regex_ok(mt->path, err, sizeof(err)))
                    gwb_note_add(&g->invalid, "InvalidRegex",
                                 "spec.routes[%zu].rules[%zu].matches[%zu].path.value: regular "
                                 "expression \"%.200s\" does not compile: %s",
                                 r, u, m, mt->path, err);
                for (h = 0; h < mt->n_headers; h++)
                    if (mt->headers[h].type == MODEL_GW_VALUE_REGEX &&
                        !gwbuild_regex_ok(mt->headers[h].value, err, sizeof(err)))
                        gwb_note_add(&g->invalid, "InvalidRegex",
                                     "spec.routes[%zu].rules[%zu].matches[%zu].headers[%zu].value: "
                                     "regular expression \"%.200s\" does not compile: %s",
                                     r, u, m, h, mt->headers[h].value, err);
            }
        }
    }
}

/* An effective hostname of a route: the kinds and listeners it comes through. */
struct gwb_host {
    char host[256];
    uint8_t kinds;
    uint64_t listeners;
};

static int gwb_push_route(struct gwb_set *s, const struct gwb_route *r)
{
    if (s->n_routes == s->cap_routes) {
        size_t cap = s->cap_routes ? s->cap_routes * 2 : 64;
        struct gwb_route *v = realloc(s->routes, cap * sizeof(*v));
        if (!v) return -1;
        s->routes = v;
        s->cap_routes = cap;
    }
    s->routes[s->n_routes++] = *r;
    return 0;
}

/* Adds host h (through listener li of kind k) to the route's hosts; 0, or -1 if full. */
static void gwb_add_host(struct gwb_host *hs, size_t *n, const char *h, uint8_t k, size_t li)
{
    size_t i;

    for (i = 0; i < *n; i++)
        if (!strcmp(hs[i].host, h)) break;
    if (i == *n) {
        snprintf(hs[i].host, sizeof(hs[i].host), "%s", h);
        hs[i].kinds = 0;
        hs[i].listeners = 0;
        (*n)++;
    }
    hs[i].kinds |= k;
    hs[i].listeners |= (uint64_t)1 << li;
}

/* Adds h to a hostless HTTPS listener's certificate hosts (once). */
static int gwb_listener_host(struct gwb_set *s, struct gwb_listener *l, const char *h)
{
    size_t i;
    const char **v;

    if (!h[0]) return 0;
    for (i = 0; i < l->n_hosts; i++)
        if (!strcmp(l->hosts[i], h)) return 0;
    /* at most routes x hostnames (64 x 16): grown in the set's memory, old copies left */
    if (!(v = gwb_alloc(s, (l->n_hosts + 1) * sizeof(*v)))) return -1;
    if (l->n_hosts) memcpy(v, l->hosts, l->n_hosts * sizeof(*v));
    if (!(v[l->n_hosts] = gwb_strdup(s, h))) return -1;
    l->hosts = v;
    l->n_hosts++;
    return 0;
}

static int gwb_gateway(struct gwb_set *s, const struct model_cache *cache, struct gwb_gateway *g)
{
    const struct model_gateway *gw = g->gw;
    static struct gwb_host hs[64 * 16 + 1];
    char at[300], h[256];
    size_t r, i, j, u, m, n_hs;

    if (gw->invalid) {
        gwb_note_add(&g->invalid, "Invalid", "%s", gw->invalid);
        return 0;
    }
    if (gw->n_listeners && !(g->listeners = gwb_alloc(s, gw->n_listeners * sizeof(*g->listeners))))
        return -1;
    gwb_check_regexes(g);
    for (r = 0; r < gw->n_routes; r++) {
        const struct model_gw_route *rt = &gw->routes[r];
        uint64_t cand = 0;
        int attached = 0;
        n_hs = 0;
        /* the listeners it may attach to */
        if (rt->n_listener_names) {
            for (i = 0; i < rt->n_listener_names; i++) {
                for (j = 0; j < gw->n_listeners; j++)
                    if (!strcmp(gw->listeners[j].name, rt->listener_names[i])) break;
                if (j == gw->n_listeners)
                    gwb_note_add(&g->refs, "NoMatchingParent",
                                 "spec.routes[%zu].listenerNames[%zu]: no listener named %s", r, i,
                                 rt->listener_names[i]);
                else
                    cand |= (uint64_t)1 << j;
            }
        } else {
            cand = gw->n_listeners >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << gw->n_listeners) - 1);
        }
        for (j = 0; j < gw->n_listeners; j++) {
            const struct model_gw_listener *l = &gw->listeners[j];
            uint8_t k = l->protocol == MODEL_GW_HTTPS ? GWB_TLS : GWB_PLAIN;
            if (!(cand & ((uint64_t)1 << j))) continue;
            if (!rt->n_hostnames) {
                gwb_add_host(hs, &n_hs, l->hostname, k, j);
                attached = 1;
                continue;
            }
            for (i = 0; i < rt->n_hostnames; i++) {
                if (!gwbuild_intersect(rt->hostnames[i], l->hostname, h, sizeof(h))) continue;
                gwb_add_host(hs, &n_hs, h, k, j);
                attached = 1;
            }
        }
        if (!attached && cand)
            gwb_note_add(&g->refs, "NoMatchingListenerHostname",
                         "spec.routes[%zu]: its hostnames match no hostname of %s", r,
                         rt->n_listener_names ? "the listeners it names" : "any listener");
        /* hostless HTTPS listeners: their certificate claims the hosts attached through them */
        for (i = 0; i < n_hs; i++)
            for (j = 0; j < gw->n_listeners; j++)
                if ((hs[i].listeners & ((uint64_t)1 << j)) &&
                    gw->listeners[j].protocol == MODEL_GW_HTTPS && !gw->listeners[j].hostname[0] &&
                    gwb_listener_host(s, &g->listeners[j], hs[i].host))
                    return -1;
        for (u = 0; u < rt->n_rules; u++) {
            const struct model_gw_rule *rl = &rt->rules[u];
            struct gwb_rule *gr = gwb_alloc(s, sizeof(*gr));
            if (!gr) return -1;
            gr->gw = gw;
            gr->st = g;
            gr->r = rl;
            gr->route = r;
            gr->rule = u;
            gr->first_backend = gr->first_filter = SNAPWIRE_NONE;
            if ((rl->n_backends &&
                 !(gr->backends = gwb_alloc(s, rl->n_backends * sizeof(*gr->backends)))) ||
                (rl->n_filters &&
                 !(gr->mirrors = gwb_alloc(s, rl->n_filters * sizeof(*gr->mirrors)))) ||
                !(gr->sigs = gwb_alloc(s, rl->n_matches * sizeof(*gr->sigs))) ||
                !(gr->first_cond = gwb_alloc(s, rl->n_matches * sizeof(*gr->first_cond))))
                return -1;
            for (i = 0; i < rl->n_backends; i++) {
                snprintf(at, sizeof(at), "spec.routes[%zu].rules[%zu].backendRefs[%zu]", r, u, i);
                if (gwb_resolve(s, cache, g, &rl->backends[i], at, &gr->backends[i])) return -1;
            }
            for (i = 0; i < rl->n_filters; i++) {
                if (rl->filters[i].type != MODEL_GW_FILTER_MIRROR) continue;
                snprintf(at, sizeof(at),
                         "spec.routes[%zu].rules[%zu].filters[%zu].requestMirror.backendRef", r, u,
                         i);
                if (gwb_resolve(s, cache, g, &rl->filters[i].mirror, at, &gr->mirrors[i]))
                    return -1;
            }
            for (m = 0; m < rl->n_matches; m++) {
                gr->first_cond[m] = SNAPWIRE_NONE;
                if (!(gr->sigs[m] = gwb_sig(s, &rl->matches[m]))) return -1;
            }
            for (i = 0; i < n_hs; i++) {
                struct gwb_route cr;
                const char *host = gwb_strdup(s, hs[i].host);
                if (!host) return -1;
                for (m = 0; m < rl->n_matches; m++) {
                    memset(&cr, 0, sizeof(cr));
                    cr.host = host;
                    cr.rule = gr;
                    cr.match = m;
                    cr.kinds = hs[i].kinds;
                    cr.listeners = hs[i].listeners;
                    if (host[0] == '*') cr.flags |= SNAPWIRE_ROUTE_WILD_ANY;
                    if (hs[i].kinds == GWB_PLAIN) cr.flags |= SNAPWIRE_ROUTE_PLAIN_ONLY;
                    if (hs[i].kinds == GWB_TLS) cr.flags |= SNAPWIRE_ROUTE_TLS_ONLY;
                    if (gwb_push_route(s, &cr)) return -1;
                }
            }
        }
    }
    return 0;
}

int gwbuild_collect(const struct model_cache *cache, struct gwb_set *set)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_GATEWAY];
    size_t i, first;

    memset(set, 0, sizeof(*set));
    if (!l->n) return 0;
    if (!(set->gws = gwb_alloc(set, l->n * sizeof(*set->gws)))) return -1;
    set->n_gws = l->n;
    for (i = 0; i < l->n; i++) {
        struct gwb_gateway *g = &set->gws[i];
        g->gw = (const struct model_gateway *)l->items[i];
        first = set->n_routes;
        if (gwb_gateway(set, cache, g)) return -1;
        /* an invalid regular expression: the whole Gateway is not served */
        if (g->invalid.reason) set->n_routes = first;
    }
    return 0;
}

void gwbuild_free(struct gwb_set *set)
{
    struct gwb_chunk *c, *next;

    for (c = set->mem; c; c = next) {
        next = c->next;
        free(c);
    }
    free(set->routes);
    memset(set, 0, sizeof(*set));
}
