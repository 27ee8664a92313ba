/*
 * gwdecode: a strait.dev/v1alpha1 Gateway document (kobj) into struct model_gateway.
 *
 * Does: the CRD's defaults (default match PathPrefix "/", header/query type Exact, weight 1,
 * redirect statusCode 302, mirror percent 100, certificateRef kind Secret / group ""), and the
 * CRD's rules a file-mode user has no API server to check: required fields, types, enums,
 * lengths, patterns, item counts, unique names, the CEL rules (one-of filter config, filters
 * that may not repeat, RequestRedirect never with URLRewrite nor with backendRefs,
 * ReplacePrefixMatch only with a single PathPrefix match, tls required for HTTPS and forbidden
 * for HTTP, backendRequest no longer than request), Durations converted to milliseconds, and
 * each backendRef's balancing policy (policy_parse_object: the annotations' parsers).
 * Does not: compile regular expressions (snapbuild does, so that a bad one is a condition),
 * look at other objects (Services, Secrets), check listenerNames against the listeners (an
 * unknown name is reported in status, the schema cannot see it either), or log.
 * Invariants: on success every string is free of control characters and every count is
 * within the CRD's limits; every error names the field path of the offending value.
 */
#include "gwdecode.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

#define GW_MAX_LISTENERS 64
#define GW_MAX_ROUTES 64
#define GW_MAX_HOSTNAMES 16
#define GW_MAX_RULES 16
#define GW_MAX_MATCHES 8
#define GW_MAX_ITEMS 16 /* filters, backendRefs, headers, queryParams, header edits, codes */
#define GW_MAX_WEIGHT 1000000

#define GW_PATH_MAX 256 /* a field path; the deepest is far shorter */

static int gw_fail(struct gwdecode_ctx *c, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void gw_path(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A field path into buf (vsnprintf: a path cannot reach n, see GW_PATH_MAX). */
static void gw_path(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static int gw_fail(struct gwdecode_ctx *c, const char *at, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, c->errlen, "%s: ", at);

    if (n < 0 || (size_t)n >= c->errlen) return -1;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int gw_oom(struct gwdecode_ctx *c)
{
    c->oom = 1;
    snprintf(c->err, c->errlen, "out of memory");
    return -1;
}

static void *gw_alloc(struct gwdecode_ctx *c, size_t n, size_t size)
{
    void *p = model_alloc(c->m, n * size);

    if (!p) gw_oom(c);
    return p;
}

/* ---- syntax of the CRD's patterns ---- */

/* ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ over s[0..n) */
static int gw_is_label(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || s[0] == '-' || s[n - 1] == '-') return 0;
    for (i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return 0;
    return 1;
}

/* ^(\*\.)?label(\.label)*$, the wildcard only when allowed */
static int gw_is_hostname(const char *s, int wildcard)
{
    const char *dot;

    if (wildcard && s[0] == '*' && s[1] == '.') s += 2;
    for (;;) {
        dot = strchr(s, '.');
        if (!gw_is_label(s, dot ? (size_t)(dot - s) : strlen(s))) return 0;
        if (!dot) return 1;
        s = dot + 1;
    }
}

/* An RFC 9110 token: ^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$ */
static int gw_is_token(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s)) return 0;
    return 1;
}

/* ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$ */
static int gw_is_path_chars(const char *s)
{
    for (; *s; s++) {
        if (isalnum((unsigned char)*s) || strchr("-/._~!$&'()*+,;=:@", *s)) continue;
        if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            s += 2;
            continue;
        }
        return 0;
    }
    return 1;
}

int gwdecode_duration(const char *s, int64_t *ms)
{
    int64_t total = 0, v;
    int groups = 0, digits;

    if (!s || !*s) return -1;
    while (*s) {
        if (++groups > 4) return -1;
        for (v = 0, digits = 0; isdigit((unsigned char)*s); s++, digits++) {
            if (digits == 5) return -1;
            v = v * 10 + (*s - '0');
        }
        if (!digits) return -1;
        if (s[0] == 'm' && s[1] == 's') {
            s += 2;
        } else if (*s == 'h') {
            v *= 3600000;
            s++;
        } else if (*s == 'm') {
            v *= 60000;
            s++;
        } else if (*s == 's') {
            v *= 1000;
            s++;
        } else {
            return -1;
        }
        total += v; /* at most 4 * 99999 h: far inside int64 */
    }
    *ms = total;
    return 0;
}

/* ---- typed field access ---- */

/* node must be absent or a mapping */
static int gw_map(struct gwdecode_ctx *c, const struct kobj *node, const char *at)
{
    if (node && node->type != KOBJ_MAP) return gw_fail(c, at, "must be an object");
    return 0;
}

/*
 * The list under key in parent into *out (NULL when absent). min >= 1 makes it required.
 */
static int gw_list(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                   const char *at, size_t min, size_t max, const struct kobj **out)
{
    const struct kobj *n = kobj_get(parent, key);

    *out = NULL;
    if (!n || (n->type == KOBJ_SCALAR && !kobj_text(n))) {
        if (min) return gw_fail(c, at, "%s is required", key);
        return 0;
    }
    if (n->type != KOBJ_SEQ) return gw_fail(c, at, "%s must be a list", key);
    if (n->n < min) return gw_fail(c, at, "%s must have at least %zu item(s)", key, min);
    if (n->n > max)
        return gw_fail(c, at, "%s must have at most %zu items, not %zu", key, max, n->n);
    *out = n;
    return 0;
}

/*
 * A string scalar node into *out (a pool copy; "" when absent and not required), with its
 * length bounds. Strings with control characters are refused: they would end up in headers.
 */
static int gw_str_node(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                       const char *what, int required, size_t minlen, size_t maxlen,
                       const char **out)
{
    const char *s = n ? kobj_text(n) : NULL;
    size_t len, i;

    *out = "";
    if (!n || (n->type == KOBJ_SCALAR && !s)) {
        if (required) return gw_fail(c, at, "%s is required", what);
        return 0;
    }
    if (n->type != KOBJ_SCALAR) return gw_fail(c, at, "%s must be a string", what);
    len = strlen(s);
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return gw_fail(c, at, "%s contains control characters", what);
    if (len < minlen) return gw_fail(c, at, "%s must not be empty", what);
    if (len > maxlen) return gw_fail(c, at, "%s is longer than %zu characters", what, maxlen);
    if (!(*out = model_strdup(c->m, s))) return gw_oom(c);
    return 0;
}

static int gw_str(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                  const char *at, int required, size_t minlen, size_t maxlen, const char **out)
{
    return gw_str_node(c, kobj_get(parent, key), at, key, required, minlen, maxlen, out);
}

/* An integer field into *out (def when absent and not required), within [min, max]. */
static int gw_int(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                  const char *at, int required, long min, long max, long def, long *out)
{
    const struct kobj *n = kobj_get(parent, key);

    *out = def;
    if (!n || (n->type == KOBJ_SCALAR && !kobj_text(n))) {
        if (required) return gw_fail(c, at, "%s is required", key);
        return 0;
    }
    if (n->type != KOBJ_SCALAR || n->style == KOBJ_QUOTED || kobj_int(n, out))
        return gw_fail(c, at, "%s must be an integer", key);
    if (*out < min || *out > max)
        return gw_fail(c, at, "%s %ld is out of range %ld..%ld", key, *out, min, max);
    return 0;
}

/*
 * An enum string field: *out = index in names + 1, or def when absent (def 0: required).
 */
static int gw_enum(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                   const char *at, const char *const *names, size_t n_names, int def, int *out)
{
    const struct kobj *n = kobj_get(parent, key);
    const char *s = kobj_text(n);
    char list[256];
    size_t i, used = 0;

    *out = def;
    if (!n || (n->type == KOBJ_SCALAR && !s)) {
        if (!def) return gw_fail(c, at, "%s is required", key);
        return 0;
    }
    for (i = 0; s && i < n_names; i++) {
        if (!strcmp(s, names[i])) {
            *out = (int)i + 1;
            return 0;
        }
    }
    list[0] = '\0';
    for (i = 0; i < n_names && used < sizeof(list); i++)
        used +=
            (size_t)snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? ", " : "", names[i]);
    return gw_fail(c, at, "%s \"%.60s\" is not one of %s", key, s ? s : "", list);
}

/* A Duration field into *ms (unset: -1). */
static int gw_duration(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                       const char *at, int64_t *ms)
{
    const char *s;

    *ms = -1;
    if (gw_str(c, parent, key, at, 0, 0, 32, &s)) return -1;
    if (!*s) return 0;
    if (gwdecode_duration(s, ms))
        return gw_fail(c, at,
                       "%s \"%.40s\" is not a duration (1 to 4 groups of up to 5 digits and a "
                       "unit h, m, s or ms, e.g. \"1m30s\")",
                       key, s);
    return 0;
}

/* A DNS-label field (^[a-z0-9]([-a-z0-9]*[a-z0-9])?$) up to maxlen characters. */
static int gw_label(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                    const char *at, int required, size_t maxlen, const char **out)
{
    if (gw_str(c, parent, key, at, required, 1, maxlen, out)) return -1;
    if (**out && !gw_is_label(*out, strlen(*out)))
        return gw_fail(c, at, "%s \"%.100s\" must be lower case letters, digits and '-'", key,
                       *out);
    return 0;
}

static int gw_hostname_node(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                            const char *what, int required, int wildcard, const char **out)
{
    if (gw_str_node(c, n, at, what, required, 1, 253, out)) return -1;
    if (**out && !gw_is_hostname(*out, wildcard))
        return gw_fail(c, at, "%s \"%.100s\" is not a valid lower case DNS name%s", what, *out,
                       wildcard ? " (or *.wildcard)" : "");
    return 0;
}

/* ---- listeners ---- */

static int gw_cert_ref(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                       struct model_gw_cert_ref *r)
{
    static const char *const groups[] = {""}, *const kinds[] = {"Secret"};
    int e;

    if (gw_map(c, n, at) || gw_enum(c, n, "group", at, groups, 1, 1, &e) ||
        gw_enum(c, n, "kind", at, kinds, 1, 1, &e) ||
        gw_str(c, n, "name", at, 1, 1, 253, &r->name) ||
        gw_label(c, n, "namespace", at, 0, 63, &r->ns))
        return -1;
    if (!*r->ns) r->ns = c->m->ns;
    return 0;
}

static int gw_listener(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                       struct model_gw_listener *l)
{
    static const char *const protocols[] = {"HTTP", "HTTPS"};
    const struct kobj *tls = kobj_get(n, "tls"), *refs;
    char sub[GW_PATH_MAX];
    int proto;
    size_t i;

    if (gw_map(c, n, at) || gw_label(c, n, "name", at, 1, 63, &l->name) ||
        gw_int(c, n, "port", at, 1, 1, 65535, 0, &l->port) ||
        gw_enum(c, n, "protocol", at, protocols, 2, 0, &proto) ||
        gw_hostname_node(c, kobj_get(n, "hostname"), at, "hostname", 0, 1, &l->hostname))
        return -1;
    l->protocol = (enum model_gw_protocol)proto;
    if (l->protocol == MODEL_GW_HTTP) {
        if (tls) return gw_fail(c, at, "tls must not be specified for protocol HTTP");
        return 0;
    }
    if (!tls) return gw_fail(c, at, "tls must be specified for protocol HTTPS");
    gw_path(sub, sizeof(sub), "%s.tls", at);
    if (gw_map(c, tls, sub) || gw_list(c, tls, "certificateRefs", sub, 1, 64, &refs)) return -1;
    if (!(l->cert_refs = gw_alloc(c, refs->n, sizeof(*l->cert_refs)))) return -1;
    l->n_cert_refs = refs->n;
    for (i = 0; i < refs->n; i++) {
        gw_path(sub, sizeof(sub), "%s.tls.certificateRefs[%zu]", at, i);
        if (gw_cert_ref(c, refs->items[i], sub, &l->cert_refs[i])) return -1;
    }
    return 0;
}

static int gw_listeners(struct gwdecode_ctx *c, const struct kobj *spec, struct model_gateway *gw)
{
    const struct kobj *ls;
    char at[GW_PATH_MAX];
    size_t i, j;

    if (gw_list(c, spec, "listeners", "spec", 1, GW_MAX_LISTENERS, &ls)) return -1;
    if (!(gw->listeners = gw_alloc(c, ls->n, sizeof(*gw->listeners)))) return -1;
    gw->n_listeners = ls->n;
    for (i = 0; i < ls->n; i++) {
        struct model_gw_listener *l = &gw->listeners[i];
        gw_path(at, sizeof(at), "spec.listeners[%zu]", i);
        if (gw_listener(c, ls->items[i], at, l)) return -1;
        for (j = 0; j < i; j++) {
            const struct model_gw_listener *o = &gw->listeners[j];
            if (!strcmp(o->name, l->name))
                return gw_fail(c, at, "name \"%s\" is also the name of spec.listeners[%zu]",
                               l->name, j);
            if (o->port == l->port && o->protocol == l->protocol &&
                !strcmp(o->hostname, l->hostname))
                return gw_fail(c, at,
                               "port, protocol and hostname are the same as spec.listeners[%zu]'s "
                               "(the combination must be unique)",
                               j);
        }
    }
    return 0;
}

/* ---- matches ---- */

static int gw_path_match(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                         struct model_gw_match *m)
{
    static const char *const types[] = {"Exact", "PathPrefix", "RegularExpression"};
    static const char *const bad_seq[] = {"//", "/./", "/../"};
    static const char *const bad_end[] = {"/.", "/.."};
    char sub[GW_PATH_MAX];
    size_t i, len;
    int t;

    m->path_type = MODEL_GW_PATH_PREFIX;
    m->path = "/";
    if (!n) return 0;
    gw_path(sub, sizeof(sub), "%s.path", at);
    if (gw_map(c, n, sub) || gw_enum(c, n, "type", sub, types, 3, 2, &t) ||
        gw_str(c, n, "value", sub, 0, 1, 1024, &m->path))
        return -1;
    m->path_type = (enum model_gw_path_type)t;
    if (!*m->path) m->path = "/";
    if (m->path_type == MODEL_GW_PATH_REGEX) return 0;
    if (m->path[0] != '/')
        return gw_fail(c, sub, "value \"%.100s\" must be an absolute path and start with '/'",
                       m->path);
    for (i = 0; i < sizeof(bad_seq) / sizeof(bad_seq[0]); i++)
        if (strstr(m->path, bad_seq[i]))
            return gw_fail(c, sub, "value \"%.100s\" must not contain '%s'", m->path, bad_seq[i]);
    len = strlen(m->path);
    for (i = 0; i < sizeof(bad_end) / sizeof(bad_end[0]); i++) {
        size_t bl = strlen(bad_end[i]);
        if (len >= bl && !strcmp(m->path + len - bl, bad_end[i]))
            return gw_fail(c, sub, "value \"%.100s\" must not end with '%s'", m->path, bad_end[i]);
    }
    if (!gw_is_path_chars(m->path))
        return gw_fail(c, sub,
                       "value \"%.100s\" must only contain valid characters (matching "
                       "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%%][0-9a-fA-F]{2})+$)",
                       m->path);
    return 0;
}

/* headers (header != 0) or queryParams of one match */
static int gw_kv_matches(struct gwdecode_ctx *c, const struct kobj *n, const char *at, int header,
                         struct model_gw_kv_match **out, size_t *n_out)
{
    static const char *const htypes[] = {"Exact", "RegularExpression"}, *const qtypes[] = {"Exact"};
    const char *key = header ? "headers" : "queryParams";
    const struct kobj *l;
    char sub[GW_PATH_MAX];
    size_t i, j;
    int t;

    if (gw_list(c, n, key, at, 0, GW_MAX_ITEMS, &l)) return -1;
    if (!l) return 0;
    if (!(*out = gw_alloc(c, l->n, sizeof(**out)))) return -1;
    *n_out = l->n;
    for (i = 0; i < l->n; i++) {
        struct model_gw_kv_match *kv = &(*out)[i];
        const struct kobj *it = l->items[i];
        gw_path(sub, sizeof(sub), "%s.%s[%zu]", at, key, i);
        if (gw_map(c, it, sub) ||
            gw_enum(c, it, "type", sub, header ? htypes : qtypes, header ? 2 : 1, 1, &t) ||
            gw_str(c, it, "name", sub, 1, 1, 256, &kv->name) ||
            gw_str(c, it, "value", sub, 1, 1, header ? 4096 : 1024, &kv->value))
            return -1;
        kv->type = (enum model_gw_value_type)t;
        if (!gw_is_token(kv->name))
            return gw_fail(c, sub, "name \"%.100s\" is not a valid %s name", kv->name,
                           header ? "header" : "query parameter");
        for (j = 0; j < i; j++)
            if (header ? !strcasecmp((*out)[j].name, kv->name) : !strcmp((*out)[j].name, kv->name))
                return gw_fail(c, sub, "name \"%.100s\" is repeated (names must be unique)",
                               kv->name);
    }
    return 0;
}

static int gw_match(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                    struct model_gw_match *m)
{
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    const struct kobj *path = kobj_get(n, "path");
    int meth;

    if (gw_map(c, n, at) || gw_path_match(c, path, at, m) ||
        gw_kv_matches(c, n, at, 1, &m->headers, &m->n_headers) ||
        gw_kv_matches(c, n, at, 0, &m->query, &m->n_query) ||
        gw_enum(c, n, "method", at, methods, sizeof(methods) / sizeof(methods[0]), -1, &meth))
        return -1;
    m->method = meth < 0 ? MODEL_GW_METHOD_ANY : (enum model_gw_method)meth;
    return 0;
}

/* ---- filters ---- */

static int gw_header_list(struct gwdecode_ctx *c, const struct kobj *n, const char *key,
                          const char *at, struct model_gw_header **out, size_t *n_out)
{
    const struct kobj *l;
    char sub[GW_PATH_MAX];
    size_t i, j;

    if (gw_list(c, n, key, at, 0, GW_MAX_ITEMS, &l)) return -1;
    if (!l) return 0;
    if (!(*out = gw_alloc(c, l->n, sizeof(**out)))) return -1;
    *n_out = l->n;
    for (i = 0; i < l->n; i++) {
        struct model_gw_header *h = &(*out)[i];
        gw_path(sub, sizeof(sub), "%s.%s[%zu]", at, key, i);
        if (gw_map(c, l->items[i], sub) ||
            gw_str(c, l->items[i], "name", sub, 1, 1, 256, &h->name) ||
            gw_str(c, l->items[i], "value", sub, 1, 1, 4096, &h->value))
            return -1;
        if (!gw_is_token(h->name))
            return gw_fail(c, sub, "name \"%.100s\" is not a valid header name", h->name);
        for (j = 0; j < i; j++)
            if (!strcasecmp((*out)[j].name, h->name))
                return gw_fail(c, sub, "name \"%.100s\" is repeated (names must be unique)",
                               h->name);
    }
    return 0;
}

static int gw_header_mod(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                         struct model_gw_header_mod *hm)
{
    const struct kobj *rm;
    char sub[GW_PATH_MAX];
    size_t i, j;

    if (gw_map(c, n, at) || gw_header_list(c, n, "set", at, &hm->set, &hm->n_set) ||
        gw_header_list(c, n, "add", at, &hm->add, &hm->n_add) ||
        gw_list(c, n, "remove", at, 0, GW_MAX_ITEMS, &rm))
        return -1;
    if (!rm) return 0;
    if (!(hm->remove = gw_alloc(c, rm->n, sizeof(*hm->remove)))) return -1;
    hm->n_remove = rm->n;
    for (i = 0; i < rm->n; i++) {
        gw_path(sub, sizeof(sub), "%s.remove[%zu]", at, i);
        if (gw_str_node(c, rm->items[i], sub, "the name", 1, 1, 256, &hm->remove[i])) return -1;
        if (!gw_is_token(hm->remove[i]))
            return gw_fail(c, sub, "\"%.100s\" is not a valid header name", hm->remove[i]);
        for (j = 0; j < i; j++)
            if (!strcasecmp(hm->remove[j], hm->remove[i]))
                return gw_fail(c, sub, "\"%.100s\" is repeated (names must be unique)",
                               hm->remove[i]);
    }
    return 0;
}

/* path of a RequestRedirect or URLRewrite */
static int gw_path_mod(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                       struct model_gw_filter *f)
{
    static const char *const types[] = {"ReplaceFullPath", "ReplacePrefixMatch"};
    const struct kobj *full, *prefix;
    char sub[GW_PATH_MAX];
    int t;

    f->path_mod = MODEL_GW_PATH_KEEP;
    f->path = "";
    if (!n) return 0;
    gw_path(sub, sizeof(sub), "%s.path", at);
    if (gw_map(c, n, sub) || gw_enum(c, n, "type", sub, types, 2, 0, &t)) return -1;
    full = kobj_get(n, "replaceFullPath");
    prefix = kobj_get(n, "replacePrefixMatch");
    if (t == 1 && !full)
        return gw_fail(c, sub,
                       "replaceFullPath must be specified when type is set to "
                       "'ReplaceFullPath'");
    if (t == 2 && !prefix)
        return gw_fail(c, sub,
                       "replacePrefixMatch must be specified when type is set to "
                       "'ReplacePrefixMatch'");
    if (full && t != 1)
        return gw_fail(c, sub, "type must be 'ReplaceFullPath' when replaceFullPath is set");
    if (prefix && t != 2)
        return gw_fail(c, sub, "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set");
    if (gw_str_node(c, t == 1 ? full : prefix, sub,
                    t == 1 ? "replaceFullPath" : "replacePrefixMatch", 1, 0, 1024, &f->path))
        return -1;
    f->path_mod = t == 1 ? MODEL_GW_PATH_FULL : MODEL_GW_PATH_PREFIX_MATCH;
    return 0;
}

/*
 * a Service reference (backendRefs[] or a mirror's backendRef); weight and policy (policy.c)
 * only when with_weight
 */
static int gw_backend_ref(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                          int with_weight, struct model_gw_backend_ref *b)
{
    char sub[GW_PATH_MAX];

    if (gw_map(c, n, at) || gw_label(c, n, "name", at, 1, 253, &b->name) ||
        gw_label(c, n, "namespace", at, 0, 63, &b->ns) ||
        gw_int(c, n, "port", at, 1, 1, 65535, 0, &b->port))
        return -1;
    if (!*b->ns) b->ns = c->m->ns;
    b->weight = 1;
    if (!with_weight) return 0;
    gw_path(sub, sizeof(sub), "%s.policy", at);
    if (gw_int(c, n, "weight", at, 0, 0, GW_MAX_WEIGHT, 1, &b->weight) ||
        policy_parse_object(kobj_get(n, "policy"), sub, c->m, &b->policy, c->err, c->errlen))
        return -1;
    return 0;
}

static const char *const gw_filter_types[] = {"RequestHeaderModifier", "ResponseHeaderModifier",
                                              "RequestRedirect", "URLRewrite", "RequestMirror"};
/* the key holding each type's settings, same order */
static const char *const gw_filter_keys[] = {"requestHeaderModifier", "responseHeaderModifier",
                                             "requestRedirect", "urlRewrite", "requestMirror"};

static int gw_filter(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                     struct model_gw_filter *f)
{
    static const char *const schemes[] = {"http", "https"};
    const struct kobj *cfg;
    char sub[GW_PATH_MAX];
    size_t k;
    long v;
    int t, e;

    if (gw_map(c, n, at) || gw_enum(c, n, "type", at, gw_filter_types, 5, 0, &t)) return -1;
    f->type = (enum model_gw_filter_type)t;
    f->scheme = f->hostname = f->path = "";
    for (k = 0; k < 5; k++) {
        if ((int)k + 1 != t && kobj_get(n, gw_filter_keys[k]))
            return gw_fail(c, at, "%s must not be set when type is %s", gw_filter_keys[k],
                           gw_filter_types[t - 1]);
    }
    cfg = kobj_get(n, gw_filter_keys[t - 1]);
    if (!cfg)
        return gw_fail(c, at, "%s must be specified for type %s", gw_filter_keys[t - 1],
                       gw_filter_types[t - 1]);
    gw_path(sub, sizeof(sub), "%s.%s", at, gw_filter_keys[t - 1]);
    if (gw_map(c, cfg, sub)) return -1;
    switch (f->type) {
    case MODEL_GW_FILTER_REQUEST_HEADER:
    case MODEL_GW_FILTER_RESPONSE_HEADER:
        return gw_header_mod(c, cfg, sub, &f->headers);
    case MODEL_GW_FILTER_REDIRECT:
        if (gw_enum(c, cfg, "scheme", sub, schemes, 2, -1, &e) ||
            gw_hostname_node(c, kobj_get(cfg, "hostname"), sub, "hostname", 0, 0, &f->hostname) ||
            gw_int(c, cfg, "port", sub, 0, 1, 65535, 0, &f->port) ||
            gw_path_mod(c, kobj_get(cfg, "path"), sub, f) ||
            gw_int(c, cfg, "statusCode", sub, 0, 0, 999, 302, &v))
            return -1;
        if (e > 0) f->scheme = schemes[e - 1];
        if (v != 301 && v != 302 && v != 303 && v != 307 && v != 308)
            return gw_fail(c, sub, "statusCode %ld is not one of 301, 302, 303, 307, 308", v);
        f->status_code = (int)v;
        return 0;
    case MODEL_GW_FILTER_URL_REWRITE:
        return gw_hostname_node(c, kobj_get(cfg, "hostname"), sub, "hostname", 0, 0,
                                &f->hostname) ||
                       gw_path_mod(c, kobj_get(cfg, "path"), sub, f)
                   ? -1
                   : 0;
    case MODEL_GW_FILTER_MIRROR: {
        const struct kobj *br = kobj_get(cfg, "backendRef");
        char bat[GW_PATH_MAX];
        if (!br) return gw_fail(c, sub, "backendRef is required");
        gw_path(bat, sizeof(bat), "%s.backendRef", sub);
        if (gw_backend_ref(c, br, bat, 0, &f->mirror) ||
            gw_int(c, cfg, "percent", sub, 0, 0, 100, 100, &v))
            return -1;
        f->mirror_percent = (int)v;
        return 0;
    }
    }
    return -1;
}

/* ---- rules, routes ---- */

static int gw_retry(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                    struct model_gw_rule *r)
{
    const struct kobj *codes;
    char sub[GW_PATH_MAX];
    size_t i, j;
    long v;

    r->retry_backoff_ms = 0;
    if (!n) return 0;
    gw_path(sub, sizeof(sub), "%s.retry", at);
    if (gw_map(c, n, sub) || gw_int(c, n, "attempts", sub, 1, 0, 10, 0, &v)) return -1;
    r->has_retry = 1;
    r->retry_attempts = (int)v;
    if (gw_list(c, n, "codes", sub, 0, GW_MAX_ITEMS, &codes) ||
        gw_duration(c, n, "backoff", sub, &r->retry_backoff_ms))
        return -1;
    if (r->retry_backoff_ms < 0) r->retry_backoff_ms = 0;
    for (i = 0; codes && i < codes->n; i++) {
        char cat[GW_PATH_MAX];
        gw_path(cat, sizeof(cat), "%s.codes[%zu]", sub, i);
        if (codes->items[i]->type != KOBJ_SCALAR || codes->items[i]->style == KOBJ_QUOTED ||
            kobj_int(codes->items[i], &v))
            return gw_fail(c, cat, "must be an integer");
        if (v < 500 || v > 599) return gw_fail(c, cat, "%ld is out of range 500..599", v);
        for (j = 0; j < i; j++)
            if (r->retry_codes[j] == v) return gw_fail(c, cat, "%ld is repeated", v);
        r->retry_codes[i] = (int)v;
        r->n_retry_codes = i + 1;
    }
    return 0;
}

static int gw_timeouts(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                       struct model_gw_rule *r)
{
    char sub[GW_PATH_MAX];

    r->request_timeout_ms = r->backend_timeout_ms = -1;
    if (!n) return 0;
    gw_path(sub, sizeof(sub), "%s.timeouts", at);
    if (gw_map(c, n, sub) || gw_duration(c, n, "request", sub, &r->request_timeout_ms) ||
        gw_duration(c, n, "backendRequest", sub, &r->backend_timeout_ms))
        return -1;
    if (r->request_timeout_ms > 0 && r->backend_timeout_ms > r->request_timeout_ms)
        return gw_fail(c, sub, "backendRequest timeout cannot be longer than request timeout");
    return 0;
}

static int gw_rule(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                   struct model_gw_rule *r)
{
    const struct kobj *matches, *filters, *backends;
    int seen[6] = {0}, prefix_rewrite = 0;
    char sub[GW_PATH_MAX];
    size_t i;

    if (gw_map(c, n, at) || gw_list(c, n, "matches", at, 0, GW_MAX_MATCHES, &matches) ||
        gw_list(c, n, "filters", at, 0, GW_MAX_ITEMS, &filters) ||
        gw_list(c, n, "backendRefs", at, 0, GW_MAX_ITEMS, &backends))
        return -1;
    /* unset matches = the CRD's default, one PathPrefix "/" match (so is an empty one) */
    r->n_matches = matches && matches->n ? matches->n : 1;
    if (!(r->matches = gw_alloc(c, r->n_matches, sizeof(*r->matches)))) return -1;
    if (!matches || !matches->n) {
        r->matches[0].path_type = MODEL_GW_PATH_PREFIX;
        r->matches[0].path = "/";
    }
    for (i = 0; matches && i < matches->n; i++) {
        gw_path(sub, sizeof(sub), "%s.matches[%zu]", at, i);
        if (gw_match(c, matches->items[i], sub, &r->matches[i])) return -1;
    }
    if (filters && filters->n) {
        if (!(r->filters = gw_alloc(c, filters->n, sizeof(*r->filters)))) return -1;
        r->n_filters = filters->n;
    }
    for (i = 0; i < r->n_filters; i++) {
        struct model_gw_filter *f = &r->filters[i];
        gw_path(sub, sizeof(sub), "%s.filters[%zu]", at, i);
        if (gw_filter(c, filters->items[i], sub, f)) return -1;
        if (f->type != MODEL_GW_FILTER_MIRROR && seen[f->type])
            return gw_fail(c, sub, "%s filter cannot be repeated (see filters[%d])",
                           gw_filter_types[f->type - 1], seen[f->type] - 1);
        if ((f->type == MODEL_GW_FILTER_REDIRECT && seen[MODEL_GW_FILTER_URL_REWRITE]) ||
            (f->type == MODEL_GW_FILTER_URL_REWRITE && seen[MODEL_GW_FILTER_REDIRECT]))
            return gw_fail(c, sub, "RequestRedirect and URLRewrite cannot be combined");
        if (!seen[f->type]) seen[f->type] = (int)i + 1;
        if (f->path_mod == MODEL_GW_PATH_PREFIX_MATCH) prefix_rewrite = 1;
    }
    if (prefix_rewrite && (r->n_matches != 1 || r->matches[0].path_type != MODEL_GW_PATH_PREFIX))
        return gw_fail(c, at,
                       "ReplacePrefixMatch (filters[%d]) needs exactly one match, of type "
                       "PathPrefix",
                       (seen[MODEL_GW_FILTER_URL_REWRITE] ? seen[MODEL_GW_FILTER_URL_REWRITE]
                                                          : seen[MODEL_GW_FILTER_REDIRECT]) -
                           1);
    if (seen[MODEL_GW_FILTER_REDIRECT] && backends && backends->n)
        return gw_fail(c, at,
                       "a RequestRedirect filter must not be used together with backendRefs");
    if (backends && backends->n) {
        if (!(r->backends = gw_alloc(c, backends->n, sizeof(*r->backends)))) return -1;
        r->n_backends = backends->n;
    }
    for (i = 0; i < r->n_backends; i++) {
        gw_path(sub, sizeof(sub), "%s.backendRefs[%zu]", at, i);
        if (gw_backend_ref(c, backends->items[i], sub, 1, &r->backends[i])) return -1;
    }
    return gw_timeouts(c, kobj_get(n, "timeouts"), at, r) ||
                   gw_retry(c, kobj_get(n, "retry"), at, r)
               ? -1
               : 0;
}

/* a list of strings (hostnames or listener names), each checked by hostname or label rules */
static int gw_names(struct gwdecode_ctx *c, const struct kobj *n, const char *key, const char *at,
                    size_t max, int hostnames, const char ***out, size_t *n_out)
{
    const struct kobj *l;
    char sub[GW_PATH_MAX];
    size_t i, j;

    if (gw_list(c, n, key, at, 0, max, &l)) return -1;
    if (!l || !l->n) return 0;
    if (!(*out = gw_alloc(c, l->n, sizeof(**out)))) return -1;
    *n_out = l->n;
    for (i = 0; i < l->n; i++) {
        const char **s = &(*out)[i];
        gw_path(sub, sizeof(sub), "%s.%s[%zu]", at, key, i);
        if (hostnames) {
            if (gw_hostname_node(c, l->items[i], sub, "the hostname", 1, 1, s)) return -1;
        } else {
            if (gw_str_node(c, l->items[i], sub, "the name", 1, 1, 63, s)) return -1;
            if (!gw_is_label(*s, strlen(*s)))
                return gw_fail(c, sub, "\"%.100s\" must be lower case letters, digits and '-'", *s);
            for (j = 0; j < i; j++)
                if (!strcmp((*out)[j], *s)) return gw_fail(c, sub, "\"%s\" is repeated", *s);
        }
    }
    return 0;
}

static int gw_route(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                    struct model_gw_route *r)
{
    const struct kobj *rules;
    char sub[GW_PATH_MAX];
    size_t i;

    if (gw_map(c, n, at) || gw_label(c, n, "name", at, 0, 63, &r->name) ||
        gw_names(c, n, "listenerNames", at, 64, 0, &r->listener_names, &r->n_listener_names) ||
        gw_names(c, n, "hostnames", at, GW_MAX_HOSTNAMES, 1, &r->hostnames, &r->n_hostnames) ||
        gw_list(c, n, "rules", at, 1, GW_MAX_RULES, &rules))
        return -1;
    if (!(r->rules = gw_alloc(c, rules->n, sizeof(*r->rules)))) return -1;
    r->n_rules = rules->n;
    for (i = 0; i < rules->n; i++) {
        gw_path(sub, sizeof(sub), "%s.rules[%zu]", at, i);
        if (gw_rule(c, rules->items[i], sub, &r->rules[i])) return -1;
    }
    return 0;
}

int gwdecode_gateway(const struct kobj *doc, struct model_gateway *gw, char *err, size_t errlen)
{
    struct gwdecode_ctx c = {&gw->meta, err, errlen, 0};
    const struct kobj *spec = kobj_get(doc, "spec"), *routes, *gen;
    char at[GW_PATH_MAX];
    size_t i, j;
    long g;

    err[0] = '\0';
    gen = kobj_get(doc, "metadata", "generation");
    if (gen && kobj_text(gen)) {
        if (kobj_int(gen, &g) || g < 0)
            return gw_fail(&c, "metadata", "generation must be a non-negative integer");
        gw->generation = g;
    }
    if (!spec || (spec->type == KOBJ_SCALAR && !kobj_text(spec))) {
        snprintf(err, errlen, "spec is required");
        return -1;
    }
    if (gw_map(&c, spec, "spec") || gw_listeners(&c, spec, gw) ||
        gw_list(&c, spec, "routes", "spec", 0, GW_MAX_ROUTES, &routes))
        return -1;
    if (!routes || !routes->n) return 0;
    if (!(gw->routes = gw_alloc(&c, routes->n, sizeof(*gw->routes)))) return -1;
    gw->n_routes = routes->n;
    for (i = 0; i < routes->n; i++) {
        struct model_gw_route *r = &gw->routes[i];
        gw_path(at, sizeof(at), "spec.routes[%zu]", i);
        if (gw_route(&c, routes->items[i], at, r)) return -1;
        for (j = 0; *r->name && j < i; j++)
            if (!strcmp(gw->routes[j].name, r->name))
                return gw_fail(&c, at, "name \"%s\" is also the name of spec.routes[%zu]", r->name,
                               j);
    }
    return 0;
}

/* ---- the typed field helpers, for the other strait.dev decoders (authzdecode) ---- */

int gwdecode_fail(struct gwdecode_ctx *c, const char *at, const char *msg)
{
    return gw_fail(c, at, "%s", msg);
}

int gwdecode_map(struct gwdecode_ctx *c, const struct kobj *node, const char *at)
{
    return gw_map(c, node, at);
}

int gwdecode_list(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                  const char *at, size_t min, size_t max, const struct kobj **out)
{
    return gw_list(c, parent, key, at, min, max, out);
}

int gwdecode_str_node(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                      const char *what, int required, size_t minlen, size_t maxlen,
                      const char **out)
{
    return gw_str_node(c, n, at, what, required, minlen, maxlen, out);
}

int gwdecode_str(struct gwdecode_ctx *c, const struct kobj *parent, const char *key, const char *at,
                 int required, size_t minlen, size_t maxlen, const char **out)
{
    return gw_str(c, parent, key, at, required, minlen, maxlen, out);
}

int gwdecode_int(struct gwdecode_ctx *c, const struct kobj *parent, const char *key, const char *at,
                 int required, long min, long max, long def, long *out)
{
    return gw_int(c, parent, key, at, required, min, max, def, out);
}

int gwdecode_enum(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                  const char *at, const char *const *names, size_t n_names, int def, int *out)
{
    return gw_enum(c, parent, key, at, names, n_names, def, out);
}

void *gwdecode_alloc(struct gwdecode_ctx *c, size_t n, size_t size)
{
    return gw_alloc(c, n, size);
}
