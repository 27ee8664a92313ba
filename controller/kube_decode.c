/*
 * kube_decode: turns one kobj document into a typed model object.
 *
 * Does: kind/apiVersion selection (networking.k8s.io/v1 IngressClass and Ingress, v1
 * Service, discovery.k8s.io/v1 EndpointSlice, v1 Secret of type kubernetes.io/tls or of any
 * type holding a ca.crt), strait.dev/v1alpha1 Gateway (its spec in gwdecode.c), the kind of List
 * items that carry none (typed lists), per-object validation following the API server's own rules
 * (hosts, paths, pathTypes, ports, names, addresses), namespace defaulting, Ingress spec.tls,
 * Service port appProtocol, and the Ingress annotations we honour (strait.dev/proxy-body-size, the
 * TLS ones and the balancing policy ones: a bad value rejects the Ingress with a reason naming
 * the annotation and the value). The balancing policy annotations (kd_policy) are read from
 * Services too, with one parser; there a bad value never refuses the Service: the key keeps its
 * default and the problem goes to model_service.problems for snapbuild to report.
 * Certificate content is not looked at here (certcheck, from snapbuild, does that).
 * Does not: look at other objects (service lookups, class selection, conflicts are snapbuild's
 * job), read files, or log: it reports through its return value and err.
 * Invariants: an object it returns satisfies everything snapbuild and snapwire assume about a
 * single object: strings are free of control characters, ports are 1..65535, hosts are lower
 * case valid DNS names or "*." wildcards, paths start with '/', addresses are IP literals.
 */
#include "kube_decode.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gwdecode.h"
#include "snapwire.h"
#include "units.h"

#define SET_ERR(...) snprintf(err, errlen, __VA_ARGS__)

/* Same value syntax as ingress-nginx's nginx.ingress.kubernetes.io/proxy-body-size. */
#define KD_ANNOTATION_BODY_SIZE "strait.dev/proxy-body-size"
#define KD_SECRET_TLS "kubernetes.io/tls"

static int kd_has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 1;
    return 0;
}

/* Makes s safe as an unquoted logfmt value: the identity of a bad object is still logged. */
static void kd_sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '"' || *s == '=' || *s == '\\')
            *s = '?';
}

/* RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters. */
static int kd_dns_label(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return 0;
    for (i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return 0;
    return 1;
}

/* RFC 1123 subdomain: dot-separated labels, at most 253 characters. */
static int kd_dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    const char *p = s, *dot;

    if (n == 0 || n > 253) return 0;
    for (;;) {
        dot = strchr(p, '.');
        if (!kd_dns_label(p, dot ? (size_t)(dot - p) : strlen(p))) return 0;
        if (!dot) return 1;
        p = dot + 1;
    }
}

int kube_decode_host(char *host, char *err, size_t errlen)
{
    unsigned char tmp[16];
    char *p;

    for (p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1) {
        SET_ERR("host \"%.100s\" must be a DNS name, not an IP address", host);
        return -1;
    }
    p = host;
    if (p[0] == '*' && p[1] == '.') p += 2;
    if (!kd_dns_subdomain(p)) {
        SET_ERR("host \"%.100s\" is not a valid DNS name (or *.wildcard)", host);
        return -1;
    }
    return 0;
}

static int kd_two_digits(const char *s, int *v)
{
    if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1])) return -1;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

int kube_decode_time(const char *s, int64_t *sec, long *nsec)
{
    int year = 0, mon, day, hh, mm, ss, oh = 0, om = 0, i, sign = 0;
    long frac = 0, scale = 100000000;
    struct tm tm;
    time_t t;

    for (i = 0; i < 4; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        year = year * 10 + (s[i] - '0');
    }
    s += 4;
    if (*s++ != '-' || kd_two_digits(s, &mon) || s[2] != '-' || kd_two_digits(s + 3, &day))
        return -1;
    s += 5;
    if ((*s != 'T' && *s != 't' && *s != ' ') || kd_two_digits(s + 1, &hh) || s[3] != ':' ||
        kd_two_digits(s + 4, &mm) || s[6] != ':' || kd_two_digits(s + 7, &ss))
        return -1;
    s += 9;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s)) return -1;
        for (; isdigit((unsigned char)*s); s++) {
            frac += (*s - '0') * scale;
            scale /= 10;
        }
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s == '-' ? -1 : 1;
        if (kd_two_digits(s + 1, &oh) || s[3] != ':' || kd_two_digits(s + 4, &om)) return -1;
        s += 6;
    } else {
        return -1;
    }
    if (*s || mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    t = timegm(&tm);
    *sec = (int64_t)t - sign * (int64_t)(oh * 3600 + om * 60);
    *nsec = frac;
    return 0;
}

const struct kobj *kube_decode_list_items(const struct kobj *doc)
{
    const char *kind = kobj_str(doc, "kind");
    const struct kobj *items = kobj_get(doc, "items");
    size_t n;

    if (!kind || !items || items->type != KOBJ_SEQ) return NULL;
    n = strlen(kind);
    if (n < 4 || strcmp(kind + n - 4, "List")) return NULL;
    return items;
}

/* Copies a scalar at a path into obj's pool after checking it is printable. */
static int kd_str(struct model_meta *obj, const struct kobj *node, const char **out,
                  const char *what, char *err, size_t errlen)
{
    const char *s = kobj_text(node);

    if (node && node->type != KOBJ_SCALAR) {
        SET_ERR("%s must be a string", what);
        return -1;
    }
    if (s && kd_has_ctl(s)) {
        SET_ERR("%s contains control characters", what);
        return -1;
    }
    if (!(*out = s ? model_strdup(obj, s) : NULL) && s) {
        SET_ERR("out of memory");
        return -1;
    }
    return 0;
}

static int kd_port(const struct kobj *node, long *port, const char *what, char *err, size_t errlen)
{
    if (kobj_int(node, port) || *port < 1 || *port > 65535) {
        SET_ERR("%s must be a port number 1-65535", what);
        return -1;
    }
    return 0;
}

static int kd_meta(const struct kobj *doc, struct model_meta *m, const char *source, int namespaced,
                   struct kube_ident *id, char *err, size_t errlen)
{
    const char *name = kobj_str(doc, "metadata", "name");
    const char *ns = kobj_str(doc, "metadata", "namespace");
    const char *ts = kobj_str(doc, "metadata", "creationTimestamp");
    const char *uid = kobj_str(doc, "metadata", "uid");
    const char *rv = kobj_str(doc, "metadata", "resourceVersion");

    if (!namespaced)
        ns = "";
    else if (!ns || !*ns)
        ns = "default";
    snprintf(id->object, sizeof(id->object), "%s%s%s", namespaced ? ns : "", namespaced ? "/" : "",
             name ? name : "-");
    kd_sanitize(id->object);
    if (!name || !*name) {
        SET_ERR("metadata.name is missing");
        return -1;
    }
    if (!kd_dns_subdomain(name)) {
        SET_ERR("metadata.name \"%.100s\" is not a valid DNS-1123 subdomain", name);
        return -1;
    }
    if (namespaced && !kd_dns_label(ns, strlen(ns))) {
        SET_ERR("metadata.namespace \"%.100s\" is not a valid DNS-1123 label", ns);
        return -1;
    }
    if (!(m->name = model_strdup(m, name)) || !(m->ns = model_strdup(m, ns)) ||
        !(m->source = model_strdup(m, source)) || !(m->uid = model_strdup(m, uid ? uid : "")) ||
        !(m->resource_version = model_strdup(m, rv ? rv : ""))) {
        SET_ERR("out of memory");
        return -1;
    }
    /* an unparsable timestamp counts as missing: such an object simply loses ties */
    if (ts && !kube_decode_time(ts, &m->created_sec, &m->created_nsec)) m->has_created = 1;
    return 0;
}

static int kd_backend(struct model_meta *m, const struct kobj *node, struct model_backend *b,
                      const char *where, char *err, size_t errlen)
{
    const struct kobj *svc = kobj_get(node, "service");
    const struct kobj *num, *pname;
    const char *name;

    if (kobj_get(node, "resource")) {
        SET_ERR("%s: backend.resource is not supported", where);
        return -1;
    }
    if (!svc || svc->type != KOBJ_MAP) {
        SET_ERR("%s: backend.service is missing", where);
        return -1;
    }
    name = kobj_str(svc, "name");
    if (!name || !kd_dns_subdomain(name)) {
        SET_ERR("%s: backend.service.name is missing or invalid", where);
        return -1;
    }
    if (!(b->service = model_strdup(m, name))) {
        SET_ERR("out of memory");
        return -1;
    }
    num = kobj_get(svc, "port", "number");
    pname = kobj_get(svc, "port", "name");
    if (kobj_text(num) && kobj_text(pname)) {
        SET_ERR("%s: backend.service.port has both name and number", where);
        return -1;
    }
    b->port_name = "";
    if (kobj_text(num))
        return kd_port(num, &b->port_number, "backend.service.port.number", err, errlen);
    if (!kobj_text(pname) || !*kobj_text(pname)) {
        SET_ERR("%s: backend.service.port needs a name or a number", where);
        return -1;
    }
    if (kd_str(m, pname, &b->port_name, "backend.service.port.name", err, errlen)) return -1;
    return 0;
}

static int kd_path(struct model_meta *m, const struct kobj *node, struct model_path *p,
                   const char *where, char *err, size_t errlen)
{
    /* the API server refuses these in Exact/Prefix paths: they would match ambiguously */
    static const char *bad_seq[] = {"//", "/./", "/../", "%2f", "%2F"};
    static const char *bad_suffix[] = {"/..", "/."};
    const char *type = kobj_str(node, "pathType");
    const char *path = kobj_str(node, "path");
    size_t i, n;

    if (!type) {
        SET_ERR("%s: pathType is missing", where);
        return -1;
    }
    if (!strcmp(type, "Exact"))
        p->type = MODEL_PATH_EXACT;
    else if (!strcmp(type, "Prefix"))
        p->type = MODEL_PATH_PREFIX;
    else if (!strcmp(type, "ImplementationSpecific"))
        p->type = MODEL_PATH_IMPL_SPECIFIC;
    else {
        SET_ERR("%s: unsupported pathType \"%.40s\"", where, type);
        return -1;
    }
    if (!path || path[0] != '/') {
        SET_ERR("%s: path \"%.100s\" must start with '/'", where, path ? path : "");
        return -1;
    }
    if (kd_str(m, kobj_get(node, "path"), &p->path, "path", err, errlen)) return -1;
    if (strchr(path, '?') || strchr(path, '#') || strchr(path, ' ')) {
        SET_ERR("%s: path \"%.100s\" must not contain '?', '#' or spaces", where, path);
        return -1;
    }
    if (p->type != MODEL_PATH_IMPL_SPECIFIC) {
        n = strlen(path);
        for (i = 0; i < sizeof(bad_seq) / sizeof(bad_seq[0]); i++) {
            if (strstr(path, bad_seq[i])) {
                SET_ERR("%s: path \"%.100s\" must not contain '%s'", where, path, bad_seq[i]);
                return -1;
            }
        }
        for (i = 0; i < sizeof(bad_suffix) / sizeof(bad_suffix[0]); i++) {
            size_t sl = strlen(bad_suffix[i]);
            if (n >= sl && !strcmp(path + n - sl, bad_suffix[i])) {
                SET_ERR("%s: path \"%.100s\" must not end with '%s'", where, path, bad_suffix[i]);
                return -1;
            }
        }
    }
    return kd_backend(m, kobj_get(node, "backend"), &p->backend, where, err, errlen);
}

/*
 * Reads the body size annotation into *out (snapwire encoding: absent 0, "0" unlimited).
 * Returns 0, or -1 with err filled when the value is not a size: the whole Ingress is then
 * refused, as a silently ignored limit would be worse than a missing route.
 */
static int kd_body_size(const struct kobj *doc, uint64_t *out, char *err, size_t errlen)
{
    const struct kobj *n = kobj_get(doc, "metadata", "annotations", KD_ANNOTATION_BODY_SIZE);
    const char *v = kobj_text(n);
    uint64_t size;

    *out = SNAPWIRE_BODY_DEFAULT;
    if (!n) return 0;
    if (!v || units_parse_size(v, &size) < 0) {
        SET_ERR("annotation " KD_ANNOTATION_BODY_SIZE " \"%.40s\" is not a size (a whole number "
                "of bytes, optionally with a k, m or g suffix; 0 for no limit)",
                v ? v : "");
        return -1;
    }
    *out = size ? size : SNAPWIRE_BODY_UNLIMITED;
    return 0;
}

#define KD_ANN_SSL_REDIRECT "strait.dev/ssl-redirect"
#define KD_ANN_FORCE_SSL_REDIRECT "strait.dev/force-ssl-redirect"
#define KD_ANN_HSTS "strait.dev/hsts"
#define KD_ANN_HSTS_MAX_AGE "strait.dev/hsts-max-age"
#define KD_ANN_HSTS_SUBDOMAINS "strait.dev/hsts-include-subdomains"
#define KD_ANN_HSTS_PRELOAD "strait.dev/hsts-preload"
#define KD_ANN_AUTH_TLS_SECRET "strait.dev/auth-tls-secret"
#define KD_ANN_AUTH_TLS_VERIFY "strait.dev/auth-tls-verify-client"
#define KD_ANN_BACKEND_PROTOCOL "strait.dev/backend-protocol"
#define KD_ANN_PROXY_SSL_SECRET "strait.dev/proxy-ssl-secret"
#define KD_ANN_PROXY_SSL_NAME "strait.dev/proxy-ssl-name"
#define KD_HSTS_MAX_AGE_DEFAULT 31536000ul /* one year, as ingress-nginx */

/* An annotation's node (NULL when absent) and its text ("" for a non-scalar). */
static const char *kd_annotation(const struct kobj *doc, const char *key, int *present)
{
    const struct kobj *n = kobj_get(doc, "metadata", "annotations", key);
    const char *v = kobj_text(n);

    *present = n != NULL;
    return v ? v : "";
}

/*
 * A "true"/"false" annotation into *out (def when absent). Returns 0, or -1 with err naming
 * the annotation and value: anything else rejects the Ingress, as a typo silently read as
 * the default could turn off a redirect the user asked for.
 */
static int kd_bool_annotation(const struct kobj *doc, const char *key, int def, int *out, char *err,
                              size_t errlen)
{
    int present;
    const char *v = kd_annotation(doc, key, &present);

    *out = def;
    if (!present) return 0;
    if (!strcmp(v, "true")) {
        *out = 1;
    } else if (!strcmp(v, "false")) {
        *out = 0;
    } else {
        SET_ERR("annotation %s \"%.40s\" is not \"true\" or \"false\"", key, v);
        return -1;
    }
    return 0;
}

/* A NAME or NS/NAME Secret reference annotation; NAME is in the Ingress's namespace. */
static int kd_secret_ref(struct model_meta *m, const struct kobj *doc, const char *key,
                         struct model_secret_ref *ref, char *err, size_t errlen)
{
    int present;
    const char *v = kd_annotation(doc, key, &present), *slash;
    char ns[64];

    ref->ns = ref->name = "";
    if (!present) return 0;
    slash = strchr(v, '/');
    if (slash && (size_t)(slash - v) < sizeof(ns)) {
        memcpy(ns, v, (size_t)(slash - v));
        ns[slash - v] = '\0';
    }
    if ((slash && ((size_t)(slash - v) >= sizeof(ns) || !kd_dns_label(ns, strlen(ns)) ||
                   !kd_dns_subdomain(slash + 1))) ||
        (!slash && !kd_dns_subdomain(v))) {
        SET_ERR("annotation %s \"%.100s\" is not a Secret name (NAME or NAMESPACE/NAME)", key, v);
        return -1;
    }
    if (!(ref->ns = model_strdup(m, slash ? ns : m->ns)) ||
        !(ref->name = model_strdup(m, slash ? slash + 1 : v))) {
        SET_ERR("out of memory");
        return -1;
    }
    return 0;
}

/* The Strict-Transport-Security value the hsts annotations ask for ("" without hsts). */
static int kd_hsts(struct model_meta *m, const struct kobj *doc, const char **out, char *err,
                   size_t errlen)
{
    int on, sub, preload, present;
    const char *age = kd_annotation(doc, KD_ANN_HSTS_MAX_AGE, &present), *p;
    unsigned long max_age = KD_HSTS_MAX_AGE_DEFAULT;
    char buf[96];

    *out = "";
    if (kd_bool_annotation(doc, KD_ANN_HSTS, 0, &on, err, errlen) ||
        kd_bool_annotation(doc, KD_ANN_HSTS_SUBDOMAINS, 1, &sub, err, errlen) ||
        kd_bool_annotation(doc, KD_ANN_HSTS_PRELOAD, 0, &preload, err, errlen))
        return -1;
    if (present) {
        for (p = age; isdigit((unsigned char)*p); p++)
            ;
        /* RFC 6797 6.1.1: delta-seconds; ten digits are past any sensible policy */
        if (!*age || *p || p - age > 10 || (max_age = strtoul(age, NULL, 10)) > 4294967295ul) {
            SET_ERR("annotation " KD_ANN_HSTS_MAX_AGE " \"%.40s\" is not a number of seconds", age);
            return -1;
        }
    }
    if (!on) return 0;
    snprintf(buf, sizeof(buf), "max-age=%lu%s%s", max_age, sub ? "; includeSubDomains" : "",
             preload ? "; preload" : "");
    if (!(*out = model_strdup(m, buf))) {
        SET_ERR("out of memory");
        return -1;
    }
    return 0;
}

#define KD_ANN_LOAD_BALANCE "strait.dev/load-balance"
#define KD_ANN_HASH_BY "strait.dev/hash-by"
#define KD_ANN_AFFINITY "strait.dev/affinity"
#define KD_ANN_SESSION_COOKIE "strait.dev/session-cookie-name"
#define KD_ANN_HC_INTERVAL "strait.dev/health-check-interval"
#define KD_ANN_HC_TIMEOUT "strait.dev/health-check-timeout"
#define KD_ANN_OD_MAX "strait.dev/outlier-max-ejection-time"
#define KD_ANN_ENDPOINT_WEIGHTS "strait.dev/endpoint-weights"
#define KD_MAX_HASH_NAME 128 /* header and cookie names in the balancing annotations */
#define KD_MAX_HC_PATH 1024
#define KD_MAX_WEIGHT 10000

/* An RFC 9110 token (header names; RFC 6265 cookie names are the same set) of 1..max bytes. */
static int kd_token(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c))) return 0;
    }
    return 1;
}

/*
 * The balancing policy annotations (docs/balancing.md), one parser for Services and
 * Ingresses. Each key has a parser that sets its fields and MODEL_POL_* bit only when the
 * value is good; otherwise it fills err ("annotation KEY \"VALUE\" is not ...").
 */
struct kd_pol {
    struct model_meta *m;
    struct model_policy *p;
    struct model_service *svc; /* NULL for an Ingress */
};

typedef int (*kd_pol_parse_fn)(struct kd_pol *c, const char *key, const char *v, char *err,
                               size_t errlen);

/* A decimal number 0..max (digits only); returns 0 or -1. */
static int kd_num(const char *v, uint32_t max, uint32_t *out)
{
    uint64_t n = 0;
    const char *p;

    if (!*v) return -1;
    for (p = v; *p; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > max) return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

/* A duration ("1m30s", "500ms") from min_ms to max_ms; returns 0 or -1. */
static int kd_duration(const char *v, int64_t min_ms, int64_t max_ms, uint32_t *out)
{
    int64_t ms;

    if (gwdecode_duration(v, &ms) || ms < min_ms || ms > max_ms) return -1;
    *out = (uint32_t)ms;
    return 0;
}

static int kd_pol_lb(struct kd_pol *c, const char *key, const char *v, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint8_t lb;
    } lbs[] = {{"round_robin", SNAPWIRE_LB_ROUND_ROBIN},
               {"least_request", SNAPWIRE_LB_LEAST_REQUEST},
               {"ewma", SNAPWIRE_LB_EWMA},
               {"ring_hash", SNAPWIRE_LB_RING_HASH},
               {"maglev", SNAPWIRE_LB_MAGLEV}};
    size_t i;

    for (i = 0; i < sizeof(lbs) / sizeof(lbs[0]); i++) {
        if (!strcmp(v, lbs[i].name)) {
            c->p->lb = lbs[i].lb;
            c->p->set |= MODEL_POL_LB;
            return 0;
        }
    }
    SET_ERR("annotation %s \"%.40s\" is not round_robin, least_request, ewma, ring_hash or maglev",
            key, v);
    return -1;
}

static int kd_pol_hash(struct kd_pol *c, const char *key, const char *v, char *err, size_t errlen)
{
    const char *arg = NULL;
    char name[KD_MAX_HASH_NAME + 1];
    uint8_t on;
    size_t i;

    if (!strncmp(v, "header:", 7)) {
        on = SNAPWIRE_HASH_HEADER, arg = v + 7;
    } else if (!strncmp(v, "cookie:", 7)) {
        on = SNAPWIRE_HASH_COOKIE, arg = v + 7;
    } else if (!strcmp(v, "source-ip")) {
        on = SNAPWIRE_HASH_SOURCE_IP;
    } else if (!strcmp(v, "path")) {
        on = SNAPWIRE_HASH_PATH;
    } else {
        SET_ERR("annotation %s \"%.60s\" is not header:NAME, cookie:NAME, source-ip or path", key,
                v);
        return -1;
    }
    if (arg && !kd_token(arg, KD_MAX_HASH_NAME)) {
        SET_ERR("annotation %s \"%.60s\": \"%.40s\" is not a %s name (an HTTP token of at most %d "
                "characters)",
                key, v, arg, on == SNAPWIRE_HASH_HEADER ? "header" : "cookie", KD_MAX_HASH_NAME);
        return -1;
    }
    c->p->hash_name = "";
    if (arg) {
        /* header names are case-insensitive: the data plane compares lower case */
        for (i = 0; arg[i]; i++)
            name[i] = on == SNAPWIRE_HASH_HEADER ? (char)tolower((unsigned char)arg[i]) : arg[i];
        name[i] = '\0';
        if (!(c->p->hash_name = model_strdup(c->m, name))) {
            SET_ERR("out of memory");
            return -1;
        }
    }
    c->p->hash_on = on;
    c->p->set |= MODEL_POL_HASH;
    return 0;
}

static int kd_pol_cookie(struct kd_pol *c, const char *key, const char *v, char *err, size_t errlen)
{
    if (!kd_token(v, KD_MAX_HASH_NAME)) {
        SET_ERR("annotation %s \"%.40s\" is not a cookie name (an HTTP token of at most %d "
                "characters)",
                key, v, KD_MAX_HASH_NAME);
        return -1;
    }
    if (!(c->p->cookie = model_strdup(c->m, v))) {
        SET_ERR("out of memory");
        return -1;
    }
    c->p->set |= MODEL_POL_COOKIE;
    return 0;
}

static int kd_pol_affinity(struct kd_pol *c, const char *key, const char *v, char *err,
                           size_t errlen)
{
    if (strcmp(v, "cookie") && strcmp(v, "none")) {
        SET_ERR("annotation %s \"%.40s\" is not \"cookie\" or \"none\"", key, v);
        return -1;
    }
    c->p->affinity = !strcmp(v, "cookie");
    c->p->set |= MODEL_POL_AFFINITY;
    return 0;
}

static int kd_pol_hc_path(struct kd_pol *c, const char *key, const char *v, char *err,
                          size_t errlen)
{
    const char *q;

    for (q = v; *q > 0x20 && *q < 0x7f; q++)
        ;
    if (v[0] != '/' || *q || q - v > KD_MAX_HC_PATH) {
        SET_ERR("annotation %s \"%.100s\" is not a path (\"/\" then at most %d visible ASCII "
                "characters in all, no spaces)",
                key, v, KD_MAX_HC_PATH - 1);
        return -1;
    }
    if (!(c->p->hc_path = model_strdup(c->m, v))) {
        SET_ERR("out of memory");
        return -1;
    }
    c->p->set |= MODEL_POL_HC_PATH;
    return 0;
}

/* host[:port]: an RFC 1123 host name (lower-cased), an IPv4 address or a [bracketed] IPv6 one */
static int kd_pol_hc_host(struct kd_pol *c, const char *key, const char *v, char *err,
                          size_t errlen)
{
    char host[256];
    unsigned char tmp[16];
    const char *colon, *end;
    char *lower, *q;
    uint32_t port;
    size_t n, i;
    int ok;

    if (v[0] == '[') {
        end = strchr(v, ']');
        colon = end && end[1] == ':' ? end + 1 : NULL;
        n = end ? (size_t)(end - v - 1) : 0;
        ok = end && (!end[1] || colon) && n < sizeof(host);
        if (ok) {
            memcpy(host, v + 1, n);
            host[n] = '\0';
            ok = inet_pton(AF_INET6, host, tmp) == 1;
        }
    } else {
        colon = strchr(v, ':');
        n = colon ? (size_t)(colon - v) : strlen(v);
        ok = n < sizeof(host);
        if (ok) {
            for (i = 0; i < n; i++)
                host[i] = (char)tolower((unsigned char)v[i]);
            host[n] = '\0';
            ok = kd_dns_subdomain(host);
        }
    }
    if (ok && colon) ok = !kd_num(colon + 1, 65535, &port) && port > 0;
    if (!ok) {
        SET_ERR("annotation %s \"%.100s\" is not a host (a DNS name, an IPv4 address or an "
                "[IPv6] address, then an optional :PORT)",
                key, v);
        return -1;
    }
    /* Host is case-insensitive: sent lower case */
    if (!(lower = model_alloc(c->m, strlen(v) + 1))) {
        SET_ERR("out of memory");
        return -1;
    }
    for (q = lower; *v; q++, v++)
        *q = (char)tolower((unsigned char)*v);
    c->p->hc_host = lower;
    c->p->set |= MODEL_POL_HC_HOST;
    return 0;
}

/* duration keys: field, bit and range from one table */
static const struct kd_pol_dur {
    const char *key;
    uint32_t bit;
    size_t off; /* offsetof(struct model_policy, field) */
    int64_t min_ms, max_ms;
    const char *range;
} kd_pol_durs[] = {
    {KD_ANN_HC_INTERVAL, MODEL_POL_HC_INTERVAL, offsetof(struct model_policy, hc_interval_ms), 100,
     3600000, "from 100ms to 1h"},
    {KD_ANN_HC_TIMEOUT, MODEL_POL_HC_TIMEOUT, offsetof(struct model_policy, hc_timeout_ms), 10,
     3600000, "from 10ms to the interval"},
    {"strait.dev/outlier-base-ejection-time", MODEL_POL_OD_BASE,
     offsetof(struct model_policy, od_base_ms), 1000, 3600000, "from 1s to 1h"},
    {KD_ANN_OD_MAX, MODEL_POL_OD_MAX, offsetof(struct model_policy, od_max_ms), 1000, 86400000,
     "from the base ejection time to 24h"},
    {"strait.dev/slow-start", MODEL_POL_SLOW_START, offsetof(struct model_policy, slow_start_ms), 0,
     3600000, "from 0s (off) to 1h"},
};

static int kd_pol_duration(struct kd_pol *c, const char *key, const char *v, char *err,
                           size_t errlen)
{
    size_t i;

    for (i = 0; strcmp(kd_pol_durs[i].key, key); i++)
        ;
    if (kd_duration(v, kd_pol_durs[i].min_ms, kd_pol_durs[i].max_ms,
                    (uint32_t *)((char *)c->p + kd_pol_durs[i].off))) {
        SET_ERR("annotation %s \"%.40s\" is not a duration %s (like \"5s\", \"1m30s\", "
                "\"500ms\")",
                key, v, kd_pol_durs[i].range);
        return -1;
    }
    c->p->set |= kd_pol_durs[i].bit;
    return 0;
}

/* whole-number keys */
static const struct kd_pol_num {
    const char *key;
    uint32_t bit;
    uint32_t min, max;
} kd_pol_nums[] = {
    {"strait.dev/health-check-healthy-threshold", MODEL_POL_HC_HEALTHY, 1, 100},
    {"strait.dev/health-check-unhealthy-threshold", MODEL_POL_HC_UNHEALTHY, 1, 100},
    {"strait.dev/outlier-consecutive-failures", MODEL_POL_OD_CONSECUTIVE, 0, 1000},
    {"strait.dev/outlier-max-ejection-percent", MODEL_POL_OD_PERCENT, 0, 100},
    {"strait.dev/max-connections", MODEL_POL_CB_CONNECTIONS, 0, 1000000},
    {"strait.dev/max-pending-requests", MODEL_POL_CB_PENDING, 0, 1000000},
    {"strait.dev/max-requests", MODEL_POL_CB_REQUESTS, 0, 1000000},
    {"strait.dev/retry-budget-percent", MODEL_POL_RB_PERCENT, 0, 1000},
    {"strait.dev/retry-budget-min-per-second", MODEL_POL_RB_MIN, 0, 100000},
};

static int kd_pol_number(struct kd_pol *c, const char *key, const char *v, char *err, size_t errlen)
{
    struct model_policy *p = c->p;
    uint32_t n;
    size_t i;

    for (i = 0; strcmp(kd_pol_nums[i].key, key); i++)
        ;
    if (kd_num(v, kd_pol_nums[i].max, &n) || n < kd_pol_nums[i].min) {
        SET_ERR("annotation %s \"%.40s\" is not a whole number from %u to %u", key, v,
                kd_pol_nums[i].min, kd_pol_nums[i].max);
        return -1;
    }
    switch (kd_pol_nums[i].bit) {
    case MODEL_POL_HC_HEALTHY:
        p->hc_healthy = (uint8_t)n;
        break;
    case MODEL_POL_HC_UNHEALTHY:
        p->hc_unhealthy = (uint8_t)n;
        break;
    case MODEL_POL_OD_CONSECUTIVE:
        p->od_consecutive = n;
        break;
    case MODEL_POL_OD_PERCENT:
        p->od_max_percent = (uint8_t)n;
        break;
    case MODEL_POL_CB_CONNECTIONS:
        p->cb_max_connections = n;
        break;
    case MODEL_POL_CB_PENDING:
        p->cb_max_pending = n;
        break;
    case MODEL_POL_CB_REQUESTS:
        p->cb_max_requests = n;
        break;
    case MODEL_POL_RB_PERCENT:
        p->rb_percent = (uint16_t)n;
        break;
    default:
        p->rb_min_per_sec = n;
        break;
    }
    p->set |= kd_pol_nums[i].bit;
    return 0;
}

/* "200" or "LO-HI", 100 <= LO <= HI <= 599 */
static int kd_pol_status(struct kd_pol *c, const char *key, const char *v, char *err, size_t errlen)
{
    const char *dash = strchr(v, '-');
    char lo_s[8];
    uint32_t lo, hi;
    size_t n = dash ? (size_t)(dash - v) : strlen(v);
    int ok = n < sizeof(lo_s);

    if (ok) {
        memcpy(lo_s, v, n);
        lo_s[n] = '\0';
        ok = !kd_num(lo_s, 599, &lo);
        hi = lo;
    }
    if (ok && dash) ok = !kd_num(dash + 1, 599, &hi);
    if (!ok || lo < 100 || hi < lo) {
        SET_ERR("annotation %s \"%.40s\" is not a status (like \"200\") or a range of statuses "
                "(like \"200-399\") within 100-599",
                key, v);
        return -1;
    }
    c->p->hc_status_lo = (uint16_t)lo;
    c->p->hc_status_hi = (uint16_t)hi;
    c->p->set |= MODEL_POL_HC_STATUS;
    return 0;
}

static int kd_cmp_weight(const void *a, const void *b)
{
    return strcmp(((const struct model_weight *)a)->name, ((const struct model_weight *)b)->name);
}

/* "NAME=W[,NAME=W...]", NAME a pod name or an IP address, W 1..10000 (Services only). */
static int kd_pol_weights(struct kd_pol *c, const char *key, const char *v, char *err,
                          size_t errlen)
{
    struct model_weight *w;
    const char *p, *item, *eq, *end;
    unsigned char tmp[16];
    char name[256], num[16];
    size_t n = 1, k = 0, nl, wl;
    uint32_t weight;

    if (!c->svc) {
        SET_ERR("annotation %s is for Services (it names their endpoints), not Ingresses", key);
        return -1;
    }
    for (p = v; *p; p++)
        n += *p == ',';
    if (!(w = model_alloc(c->m, n * sizeof(*w)))) goto oom;
    for (item = v;; item = end + 1) {
        end = strchr(item, ',');
        if (!end) end = item + strlen(item);
        while (item < end && isspace((unsigned char)*item))
            item++;
        eq = memchr(item, '=', (size_t)(end - item));
        for (nl = eq ? (size_t)(eq - item) : 0; nl && isspace((unsigned char)item[nl - 1]); nl--)
            ;
        p = eq ? eq + 1 : end;
        while (p < end && isspace((unsigned char)*p))
            p++;
        for (wl = (size_t)(end - p); wl && isspace((unsigned char)p[wl - 1]); wl--)
            ;
        if (!eq || !nl || nl >= sizeof(name) || wl >= sizeof(num)) goto bad;
        memcpy(name, item, nl);
        name[nl] = '\0';
        memcpy(num, p, wl);
        num[wl] = '\0';
        if (kd_num(num, KD_MAX_WEIGHT, &weight) || !weight ||
            (!kd_dns_subdomain(name) && inet_pton(AF_INET, name, tmp) != 1 &&
             inet_pton(AF_INET6, name, tmp) != 1))
            goto bad;
        if (!(w[k].name = model_strdup(c->m, name))) goto oom;
        w[k++].weight = weight;
        if (!*end) break;
    }
    qsort(w, k, sizeof(*w), kd_cmp_weight);
    for (n = 1; n < k; n++) {
        if (!strcmp(w[n - 1].name, w[n].name)) {
            SET_ERR("annotation %s \"%.100s\" names \"%.60s\" twice", key, v, w[n].name);
            return -1;
        }
    }
    c->svc->weights = w;
    c->svc->n_weights = k;
    return 0;
bad:
    SET_ERR("annotation %s \"%.100s\": \"%.*s\" is not NAME=WEIGHT (NAME a pod name or an IP "
            "address, WEIGHT a whole number from 1 to %d; items separated by commas)",
            key, v, (int)(end - item > 60 ? 60 : end - item), item, KD_MAX_WEIGHT);
    return -1;
oom:
    SET_ERR("out of memory");
    return -1;
}

static const struct {
    const char *key;
    kd_pol_parse_fn parse;
} kd_pol_keys[] = {
    {KD_ANN_LOAD_BALANCE, kd_pol_lb},
    {KD_ANN_HASH_BY, kd_pol_hash},
    {KD_ANN_SESSION_COOKIE, kd_pol_cookie},
    {KD_ANN_AFFINITY, kd_pol_affinity},
    {"strait.dev/health-check-path", kd_pol_hc_path},
    {KD_ANN_HC_INTERVAL, kd_pol_duration},
    {KD_ANN_HC_TIMEOUT, kd_pol_duration},
    {"strait.dev/health-check-status", kd_pol_status},
    {"strait.dev/health-check-healthy-threshold", kd_pol_number},
    {"strait.dev/health-check-unhealthy-threshold", kd_pol_number},
    {"strait.dev/health-check-host", kd_pol_hc_host},
    {"strait.dev/outlier-consecutive-failures", kd_pol_number},
    {"strait.dev/outlier-base-ejection-time", kd_pol_duration},
    {KD_ANN_OD_MAX, kd_pol_duration},
    {"strait.dev/outlier-max-ejection-percent", kd_pol_number},
    {"strait.dev/max-connections", kd_pol_number},
    {"strait.dev/max-pending-requests", kd_pol_number},
    {"strait.dev/max-requests", kd_pol_number},
    {"strait.dev/retry-budget-percent", kd_pol_number},
    {"strait.dev/retry-budget-min-per-second", kd_pol_number},
    {"strait.dev/slow-start", kd_pol_duration},
    {KD_ANN_ENDPOINT_WEIGHTS, kd_pol_weights},
};

#define KD_POL_KEYS (sizeof(kd_pol_keys) / sizeof(kd_pol_keys[0]))

/*
 * A bad value: an Ingress is refused (returns -1 with err as it is), a Service keeps serving
 * with the key's default and records the problem (returns 0; -1 only when out of memory).
 */
static int kd_pol_problem(struct kd_pol *c, const char *key, char *err, size_t errlen)
{
    struct model_problem *pr;

    if (!c->svc) return -1;
    if (!c->svc->problems &&
        !(c->svc->problems = model_alloc(c->m, (KD_POL_KEYS + 2) * sizeof(*pr))))
        goto oom;
    pr = &c->svc->problems[c->svc->n_problems++];
    pr->key = key;
    if (!(pr->message = model_strdup(c->m, err))) goto oom;
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

/*
 * Reads the policy annotations of doc into *p (zeroed first). svc is the Service being
 * decoded, NULL for an Ingress. Returns 0, or -1 with err filled: for an Ingress the first bad
 * value (the Ingress is refused); for a Service only when out of memory (bad values become
 * svc->problems and their fields stay unset).
 */
static int kd_policy(const struct kobj *doc, struct model_meta *m, struct model_policy *p,
                     struct model_service *svc, char *err, size_t errlen)
{
    struct kd_pol c = {m, p, svc};
    uint32_t interval, base;
    int present;
    size_t i;

    memset(p, 0, sizeof(*p));
    for (i = 0; i < KD_POL_KEYS; i++) {
        const char *v = kd_annotation(doc, kd_pol_keys[i].key, &present);
        if (!present) continue;
        if (kd_pol_keys[i].parse(&c, kd_pol_keys[i].key, v, err, errlen) &&
            kd_pol_problem(&c, kd_pol_keys[i].key, err, errlen))
            return -1;
    }
    /* settings that only make sense together, within this object */
    if ((p->set & MODEL_POL_HASH) && (p->set & MODEL_POL_LB) && p->lb != SNAPWIRE_LB_RING_HASH &&
        p->lb != SNAPWIRE_LB_MAGLEV) {
        SET_ERR("annotation " KD_ANN_HASH_BY " needs " KD_ANN_LOAD_BALANCE
                " ring_hash or maglev, not \"%s\"",
                kd_annotation(doc, KD_ANN_LOAD_BALANCE, &present));
        p->set &= ~(uint32_t)MODEL_POL_HASH;
        if (kd_pol_problem(&c, KD_ANN_HASH_BY, err, errlen)) return -1;
    }
    interval = p->set & MODEL_POL_HC_INTERVAL ? p->hc_interval_ms : SNAPWIRE_HC_INTERVAL_MS_DEFAULT;
    if ((p->set & MODEL_POL_HC_TIMEOUT) && p->hc_timeout_ms > interval) {
        SET_ERR("annotation " KD_ANN_HC_TIMEOUT " \"%.40s\" is longer than the interval (%ums)",
                kd_annotation(doc, KD_ANN_HC_TIMEOUT, &present), interval);
        p->set &= ~(uint32_t)MODEL_POL_HC_TIMEOUT;
        if (kd_pol_problem(&c, KD_ANN_HC_TIMEOUT, err, errlen)) return -1;
    }
    base = p->set & MODEL_POL_OD_BASE ? p->od_base_ms : SNAPWIRE_OD_BASE_MS_DEFAULT;
    if ((p->set & MODEL_POL_OD_MAX) && p->od_max_ms < base) {
        SET_ERR("annotation " KD_ANN_OD_MAX " \"%.40s\" is shorter than the base ejection time "
                "(%ums)",
                kd_annotation(doc, KD_ANN_OD_MAX, &present), base);
        p->set &= ~(uint32_t)MODEL_POL_OD_MAX;
        if (kd_pol_problem(&c, KD_ANN_OD_MAX, err, errlen)) return -1;
    }
    return 0;
}

/* Every TLS annotation of an Ingress (see docs/contract.md "Ingress annotations"). */
static int kd_tls_annotations(const struct kobj *doc, struct model_ingress *ing, char *err,
                              size_t errlen)
{
    struct model_meta *m = &ing->meta;
    const char *v;
    char *name;
    int present;

    if (kd_bool_annotation(doc, KD_ANN_SSL_REDIRECT, 1, &ing->ssl_redirect, err, errlen) ||
        kd_bool_annotation(doc, KD_ANN_FORCE_SSL_REDIRECT, 0, &ing->force_ssl_redirect, err,
                           errlen) ||
        kd_hsts(m, doc, &ing->hsts, err, errlen) ||
        kd_secret_ref(m, doc, KD_ANN_AUTH_TLS_SECRET, &ing->auth_tls_secret, err, errlen) ||
        kd_secret_ref(m, doc, KD_ANN_PROXY_SSL_SECRET, &ing->proxy_ssl_secret, err, errlen))
        return -1;
    ing->client_verify = MODEL_CLIENT_VERIFY_ON;
    v = kd_annotation(doc, KD_ANN_AUTH_TLS_VERIFY, &present);
    if (present) {
        if (!strcmp(v, "on"))
            ing->client_verify = MODEL_CLIENT_VERIFY_ON;
        else if (!strcmp(v, "optional"))
            ing->client_verify = MODEL_CLIENT_VERIFY_OPTIONAL;
        else if (!strcmp(v, "off"))
            ing->client_verify = MODEL_CLIENT_VERIFY_OFF;
        else {
            SET_ERR("annotation " KD_ANN_AUTH_TLS_VERIFY " \"%.40s\" is not on, optional or off",
                    v);
            return -1;
        }
    }
    v = kd_annotation(doc, KD_ANN_BACKEND_PROTOCOL, &present);
    if (present) {
        if (!strcasecmp(v, "HTTPS"))
            ing->backend_https = 1;
        else if (strcasecmp(v, "HTTP")) {
            SET_ERR("annotation " KD_ANN_BACKEND_PROTOCOL " \"%.40s\" is not HTTP or HTTPS", v);
            return -1;
        }
    }
    ing->proxy_ssl_name = "";
    v = kd_annotation(doc, KD_ANN_PROXY_SSL_NAME, &present);
    if (present) {
        if (strlen(v) > 253 || !(name = (char *)model_strdup(m, v))) {
            SET_ERR("annotation " KD_ANN_PROXY_SSL_NAME " \"%.100s\" is not a DNS name", v);
            return -1;
        }
        if (kube_decode_host(name, err, errlen) || name[0] == '*') {
            SET_ERR("annotation " KD_ANN_PROXY_SSL_NAME " \"%.100s\" is not a DNS name", v);
            return -1;
        }
        ing->proxy_ssl_name = name;
    }
    return 0;
}

/* spec.tls: hosts (validated and lower-cased like rule hosts) and secretName. */
static int kd_ingress_tls(const struct kobj *doc, struct model_ingress *ing, char *err,
                          size_t errlen)
{
    struct model_meta *m = &ing->meta;
    const struct kobj *tls = kobj_get(doc, "spec", "tls"), *hosts, *sn;
    char *host;
    size_t i, j;

    if (!tls) return 0;
    if (tls->type != KOBJ_SEQ) {
        SET_ERR("spec.tls must be a list");
        return -1;
    }
    if (!(ing->tls = model_alloc(m, tls->n * sizeof(*ing->tls)))) goto oom;
    ing->n_tls = tls->n;
    for (i = 0; i < tls->n; i++) {
        struct model_tls *t = &ing->tls[i];
        hosts = kobj_get(tls->items[i], "hosts");
        sn = kobj_get(tls->items[i], "secretName");
        t->secret = "";
        if (sn && (!kobj_text(sn) || (*kobj_text(sn) && !kd_dns_subdomain(kobj_text(sn))))) {
            SET_ERR("spec.tls[%zu].secretName \"%.100s\" is not a valid Secret name", i,
                    kobj_text(sn) ? kobj_text(sn) : "");
            return -1;
        }
        if (sn && !(t->secret = model_strdup(m, kobj_text(sn)))) goto oom;
        if (!hosts) continue;
        if (hosts->type != KOBJ_SEQ) {
            SET_ERR("spec.tls[%zu].hosts must be a list", i);
            return -1;
        }
        if (!(t->hosts = model_alloc(m, hosts->n * sizeof(*t->hosts)))) goto oom;
        t->n_hosts = hosts->n;
        for (j = 0; j < hosts->n; j++) {
            const char *h = kobj_text(hosts->items[j]);
            if (!h || !(host = (char *)model_strdup(m, h))) {
                if (!h) {
                    SET_ERR("spec.tls[%zu].hosts[%zu] must be a string", i, j);
                    return -1;
                }
                goto oom;
            }
            if (kube_decode_host(host, err, errlen)) return -1;
            t->hosts[j] = host;
        }
    }
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

static int kd_ingress(const struct kobj *doc, struct model_ingress *ing, char *err, size_t errlen)
{
    struct model_meta *m = &ing->meta;
    const struct kobj *rules = kobj_get(doc, "spec", "rules"), *paths, *db;
    char where[96], *host;
    size_t i, j;

    if (kd_str(m, kobj_get(doc, "spec", "ingressClassName"), &ing->class_name,
               "spec.ingressClassName", err, errlen) ||
        kd_str(m, kobj_get(doc, "metadata", "annotations", "kubernetes.io/ingress.class"),
               &ing->class_annotation, "annotation kubernetes.io/ingress.class", err, errlen) ||
        kd_body_size(doc, &ing->max_body, err, errlen) ||
        kd_tls_annotations(doc, ing, err, errlen) ||
        kd_policy(doc, m, &ing->policy, NULL, err, errlen) || kd_ingress_tls(doc, ing, err, errlen))
        return -1;
    db = kobj_get(doc, "spec", "defaultBackend");
    if (db) {
        if (kd_backend(m, db, &ing->default_backend, "spec.defaultBackend", err, errlen)) return -1;
        ing->has_default_backend = 1;
    }
    if (!rules) return 0;
    if (rules->type != KOBJ_SEQ) {
        SET_ERR("spec.rules must be a list");
        return -1;
    }
    if (!(ing->rules = model_alloc(m, rules->n * sizeof(*ing->rules)))) goto oom;
    ing->n_rules = rules->n;
    for (i = 0; i < rules->n; i++) {
        struct model_rule *r = &ing->rules[i];
        const struct kobj *rn = rules->items[i];
        const char *h = kobj_str(rn, "host");

        if (!(host = (char *)model_strdup(m, h ? h : ""))) goto oom;
        if (*host && kube_decode_host(host, err, errlen)) return -1;
        r->host = host;
        paths = kobj_get(rn, "http", "paths");
        if (!paths) continue;
        if (paths->type != KOBJ_SEQ) {
            SET_ERR("spec.rules[%zu].http.paths must be a list", i);
            return -1;
        }
        if (!(r->paths = model_alloc(m, paths->n * sizeof(*r->paths)))) goto oom;
        r->n_paths = paths->n;
        for (j = 0; j < paths->n; j++) {
            snprintf(where, sizeof(where), "spec.rules[%zu].http.paths[%zu]", i, j);
            if (kd_path(m, paths->items[j], &r->paths[j], where, err, errlen)) return -1;
        }
    }
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

static int kd_ingress_class(const struct kobj *doc, struct model_ingress_class *ic, char *err,
                            size_t errlen)
{
    const char *def =
        kobj_str(doc, "metadata", "annotations", "ingressclass.kubernetes.io/is-default-class");

    ic->is_default = def && !strcmp(def, "true");
    return kd_str(&ic->meta, kobj_get(doc, "spec", "controller"), &ic->controller,
                  "spec.controller", err, errlen);
}

/* A Service's policy annotations: bad ones are kept as svc->problems, never refused. */
static int kd_service_policy(const struct kobj *doc, struct model_service *svc, char *err,
                             size_t errlen)
{
    return kd_policy(doc, &svc->meta, &svc->policy, svc, err, errlen);
}

static int kd_service(const struct kobj *doc, struct model_service *svc, char *err, size_t errlen)
{
    struct model_meta *m = &svc->meta;
    const struct kobj *ports = kobj_get(doc, "spec", "ports");
    const char *app;
    size_t i;

    if (!ports) return kd_service_policy(doc, svc, err, errlen);
    if (ports->type != KOBJ_SEQ) {
        SET_ERR("spec.ports must be a list");
        return -1;
    }
    if (!(svc->ports = model_alloc(m, ports->n * sizeof(*svc->ports)))) {
        SET_ERR("out of memory");
        return -1;
    }
    svc->n_ports = ports->n;
    for (i = 0; i < ports->n; i++) {
        struct model_service_port *p = &svc->ports[i];
        if (kd_str(m, kobj_get(ports->items[i], "name"), &p->name, "spec.ports[].name", err,
                   errlen) ||
            kd_port(kobj_get(ports->items[i], "port"), &p->port, "spec.ports[].port", err, errlen))
            return -1;
        if (!p->name) p->name = "";
        /* Kubernetes' own value for TLS backends is "https" (standard service names) */
        app = kobj_str(ports->items[i], "appProtocol");
        p->app_https = app && !strcasecmp(app, "https");
    }
    return kd_service_policy(doc, svc, err, errlen);
}

static int kd_slice(const struct kobj *doc, struct model_endpoint_slice *es, char *err,
                    size_t errlen)
{
    struct model_meta *m = &es->meta;
    const char *at = kobj_str(doc, "addressType");
    const struct kobj *ports = kobj_get(doc, "ports");
    const struct kobj *eps = kobj_get(doc, "endpoints");
    const char *tn;
    unsigned char tmp[16];
    size_t i, j;
    int af;

    if (!at) {
        SET_ERR("addressType is missing");
        return -1;
    }
    if (!strcmp(at, "IPv4")) {
        es->address_type = MODEL_ADDR_IPV4;
        af = AF_INET;
    } else if (!strcmp(at, "IPv6")) {
        es->address_type = MODEL_ADDR_IPV6;
        af = AF_INET6;
    } else if (!strcmp(at, "FQDN")) {
        SET_ERR("addressType FQDN is not supported");
        return -1;
    } else {
        SET_ERR("unknown addressType \"%.40s\"", at);
        return -1;
    }
    if (kd_str(m, kobj_get(doc, "metadata", "labels", "kubernetes.io/service-name"),
               &es->service_name, "label kubernetes.io/service-name", err, errlen))
        return -1;
    if (!es->service_name) es->service_name = "";
    if (ports && ports->type == KOBJ_SEQ) {
        if (!(es->ports = model_alloc(m, ports->n * sizeof(*es->ports)))) goto oom;
        es->n_ports = ports->n;
        for (i = 0; i < ports->n; i++) {
            const struct kobj *pn = kobj_get(ports->items[i], "port");
            if (kd_str(m, kobj_get(ports->items[i], "name"), &es->ports[i].name, "ports[].name",
                       err, errlen))
                return -1;
            if (!es->ports[i].name) es->ports[i].name = "";
            if (kobj_text(pn) && kd_port(pn, &es->ports[i].port, "ports[].port", err, errlen))
                return -1;
        }
    } else if (ports) {
        SET_ERR("ports must be a list");
        return -1;
    }
    if (!eps) return 0;
    if (eps->type != KOBJ_SEQ) {
        SET_ERR("endpoints must be a list");
        return -1;
    }
    if (!(es->endpoints = model_alloc(m, eps->n * sizeof(*es->endpoints)))) goto oom;
    es->n_endpoints = eps->n;
    for (i = 0; i < eps->n; i++) {
        struct model_slice_endpoint *e = &es->endpoints[i];
        const struct kobj *addrs = kobj_get(eps->items[i], "addresses");
        /* unknown readiness counts as ready, as the EndpointSlice API documents */
        e->ready = kobj_bool(kobj_get(eps->items[i], "conditions", "ready")) != 0;
        /* the pod, for strait.dev/endpoint-weights (an odd one only loses its weight) */
        tn = kobj_str(eps->items[i], "targetRef", "name");
        if (!(e->target_name = model_strdup(m, tn && !kd_has_ctl(tn) ? tn : ""))) goto oom;
        if (!addrs || addrs->type != KOBJ_SEQ) {
            SET_ERR("endpoints[%zu].addresses must be a list", i);
            return -1;
        }
        if (!(e->addresses = model_alloc(m, addrs->n * sizeof(*e->addresses)))) goto oom;
        e->n_addresses = addrs->n;
        for (j = 0; j < addrs->n; j++) {
            const char *a = kobj_text(addrs->items[j]);
            if (!a || inet_pton(af, a, tmp) != 1) {
                SET_ERR("endpoints[%zu].addresses: \"%.60s\" is not an %s address", i, a ? a : "",
                        at);
                return -1;
            }
            if (!(e->addresses[j] = model_strdup(m, a))) goto oom;
        }
    }
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

long kube_decode_base64(const char *in, unsigned char *out)
{
    unsigned acc = 0;
    int bits = 0, pad = 0, v;
    long n = 0;
    size_t chars = 0;

    for (; *in; in++) {
        char ch = *in;
        if (ch == '\r' || ch == '\n') continue;
        chars++;
        if (ch == '=') {
            pad++;
            continue;
        }
        if (pad) return -1; /* data after padding */
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (chars % 4 || pad > 2 || (pad && bits < 2)) return -1;
    return n;
}

/*
 * data[key] (base64), or stringData[key] (plain, as in a manifest file), into the pool.
 * A missing key is an error when required, else leaves *out NULL and *len 0.
 */
static int kd_secret_bytes(struct model_meta *m, const struct kobj *doc, const char *key,
                           int required, const unsigned char **out, size_t *len, char *err,
                           size_t errlen)
{
    const struct kobj *node = kobj_get(doc, "data", key);
    const char *s = kobj_text(node);
    unsigned char *buf;
    long n;

    *out = NULL;
    *len = 0;
    if (node) {
        if (!s) s = "";
        if (!(buf = model_alloc(m, strlen(s) / 4 * 3 + 3))) goto oom;
        if ((n = kube_decode_base64(s, buf)) < 0) {
            SET_ERR("data[\"%s\"] is not valid base64", key);
            return -1;
        }
        *out = buf;
        *len = (size_t)n;
        return 0;
    }
    node = kobj_get(doc, "stringData", key);
    if (!node) {
        if (!required) return 0;
        SET_ERR("data[\"%s\"] is missing (required for type " KD_SECRET_TLS ")", key);
        return -1;
    }
    s = kobj_text(node);
    if (!s) s = "";
    if (!(buf = model_alloc(m, strlen(s) + 1))) goto oom;
    memcpy(buf, s, strlen(s));
    *out = buf;
    *len = strlen(s);
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

static int kd_secret(const struct kobj *doc, struct model_secret *sec, const char *type, char *err,
                     size_t errlen)
{
    struct model_meta *m = &sec->meta;
    int tls = !strcmp(type, KD_SECRET_TLS);

    if (kd_has_ctl(type)) {
        SET_ERR("type contains control characters");
        return -1;
    }
    if (!(sec->type = model_strdup(m, type))) {
        SET_ERR("out of memory");
        return -1;
    }
    if (kd_secret_bytes(m, doc, "tls.crt", tls, &sec->tls_crt, &sec->tls_crt_len, err, errlen) ||
        kd_secret_bytes(m, doc, "tls.key", tls, &sec->tls_key, &sec->tls_key_len, err, errlen) ||
        kd_secret_bytes(m, doc, "ca.crt", 0, &sec->ca_crt, &sec->ca_crt_len, err, errlen))
        return -1;
    return 0;
}

int kube_decode(const struct kobj *doc, const char *source, struct model_meta **out,
                struct kube_ident *id, char *err, size_t errlen)
{
    return kube_decode_as(doc, NULL, NULL, source, out, id, err, errlen);
}

int kube_decode_as(const struct kobj *doc, const char *kind_default, const char *api_default,
                   const char *source, struct model_meta **out, struct kube_ident *id, char *err,
                   size_t errlen)
{
    int rc = kube_decode_keep(doc, kind_default, api_default, source, out, id, err, errlen);

    if (rc == 2) {
        model_object_free(*out);
        *out = NULL;
        return -1;
    }
    return rc;
}

/*
 * A Gateway whose spec gwdecode refused, reduced to its identity, generation and the reason
 * (its pool still holds what the decoder left: harmless, freed with it). Returns 0, -1 when
 * out of memory.
 */
static int kd_keep_invalid_gateway(struct model_gateway *gw, const char *reason)
{
    gw->listeners = NULL;
    gw->n_listeners = 0;
    gw->routes = NULL;
    gw->n_routes = 0;
    return (gw->invalid = model_strdup(&gw->meta, reason)) ? 0 : -1;
}

int kube_decode_keep(const struct kobj *doc, const char *kind_default, const char *api_default,
                     const char *source, struct model_meta **out, struct kube_ident *id, char *err,
                     size_t errlen)
{
    static const struct {
        const char *api, *kind;
        enum model_kind mk;
        size_t size;
    } kinds[] = {
        {"networking.k8s.io/v1", "IngressClass", MODEL_KIND_INGRESS_CLASS,
         sizeof(struct model_ingress_class)},
        {"networking.k8s.io/v1", "Ingress", MODEL_KIND_INGRESS, sizeof(struct model_ingress)},
        {"v1", "Service", MODEL_KIND_SERVICE, sizeof(struct model_service)},
        {"discovery.k8s.io/v1", "EndpointSlice", MODEL_KIND_ENDPOINT_SLICE,
         sizeof(struct model_endpoint_slice)},
        {"v1", "Secret", MODEL_KIND_SECRET, sizeof(struct model_secret)},
        {"strait.dev/v1alpha1", "Gateway", MODEL_KIND_GATEWAY, sizeof(struct model_gateway)},
    };
    const char *api, *kind, *type;
    struct model_meta *m;
    size_t i;
    int rc;

    *out = NULL;
    snprintf(id->kind, sizeof(id->kind), "-");
    snprintf(id->object, sizeof(id->object), "-");
    if (!doc || doc->type != KOBJ_MAP) {
        SET_ERR("document is not a mapping");
        return -1;
    }
    api = kobj_str(doc, "apiVersion");
    kind = kobj_str(doc, "kind");
    if ((!kind || !*kind) && kind_default) {
        kind = kind_default;
        if (!api || !*api) api = api_default;
    }
    if (!kind || !*kind) {
        SET_ERR("kind is missing");
        return -1;
    }
    snprintf(id->kind, sizeof(id->kind), "%s", kind);
    kd_sanitize(id->kind);
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(kind, kinds[i].kind)) break;
    if (i == sizeof(kinds) / sizeof(kinds[0])) {
        SET_ERR("kind %.60s is not used", id->kind);
        return 0;
    }
    if (!api || strcmp(api, kinds[i].api)) {
        SET_ERR("apiVersion %.60s of %s is not supported (want %s)", api ? api : "-", kinds[i].kind,
                kinds[i].api);
        return 0;
    }
    /*
     * only TLS Secrets and CA bundles (any type with a ca.crt, as the auth-tls and proxy-ssl
     * annotations take) matter; the API server defaults a missing type to Opaque
     */
    type = kobj_str(doc, "type");
    if (!type || !*type) type = "Opaque";
    if (kinds[i].mk == MODEL_KIND_SECRET && strcmp(type, KD_SECRET_TLS) &&
        !kobj_get(doc, "data", "ca.crt") && !kobj_get(doc, "stringData", "ca.crt")) {
        SET_ERR("Secret of type %.60s is not used", type);
        return 0;
    }
    if (!(m = model_object_new(kinds[i].size, kinds[i].mk))) {
        SET_ERR("out of memory");
        return -1;
    }
    rc = kd_meta(doc, m, source, kinds[i].mk != MODEL_KIND_INGRESS_CLASS, id, err, errlen);
    if (!rc) {
        switch (kinds[i].mk) {
        case MODEL_KIND_INGRESS_CLASS:
            rc = kd_ingress_class(doc, (struct model_ingress_class *)m, err, errlen);
            break;
        case MODEL_KIND_INGRESS:
            rc = kd_ingress(doc, (struct model_ingress *)m, err, errlen);
            break;
        case MODEL_KIND_SERVICE:
            rc = kd_service(doc, (struct model_service *)m, err, errlen);
            break;
        case MODEL_KIND_ENDPOINT_SLICE:
            rc = kd_slice(doc, (struct model_endpoint_slice *)m, err, errlen);
            break;
        case MODEL_KIND_SECRET:
            rc = kd_secret(doc, (struct model_secret *)m, type, err, errlen);
            break;
        case MODEL_KIND_GATEWAY:
            rc = gwdecode_gateway(doc, (struct model_gateway *)m, err, errlen);
            /* kept with its reason, for its status; the caller still logs the rejection */
            if (rc && !kd_keep_invalid_gateway((struct model_gateway *)m, err)) {
                *out = m;
                return 2;
            }
            break;
        default:
            rc = -1;
        }
    }
    if (rc) {
        model_object_free(m);
        return -1;
    }
    *out = m;
    return 1;
}
