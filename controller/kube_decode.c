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
 * the annotation and the value). The balancing policy annotations are parsed by policy.c, for
 * Services too; there a bad value never refuses the Service: the key keeps its default and the
 * problem goes to model_service.problems for snapbuild to report.
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

#include "authzdecode.h"
#include "gwdecode.h"
#include "policy.h"
#include "snapwire.h"
#include "units.h"

#define SET_ERR(...) snprintf(err, errlen, __VA_ARGS__)
#define KD_MESH_SIDECAR "strait-proxy" /* the injected sidecar's container name */

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

int kube_decode_dns_label(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return 0;
    for (i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return 0;
    return 1;
}

int kube_decode_dns_name(const char *s)
{
    size_t n = strlen(s);
    const char *p = s, *dot;

    if (n == 0 || n > 253) return 0;
    for (;;) {
        dot = strchr(p, '.');
        if (!kube_decode_dns_label(p, dot ? (size_t)(dot - p) : strlen(p))) return 0;
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
    if (!kube_decode_dns_name(p)) {
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
    if (!kube_decode_dns_name(name)) {
        SET_ERR("metadata.name \"%.100s\" is not a valid DNS-1123 subdomain", name);
        return -1;
    }
    if (namespaced && !kube_decode_dns_label(ns, strlen(ns))) {
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
    if (!name || !kube_decode_dns_name(name)) {
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
    if ((slash && ((size_t)(slash - v) >= sizeof(ns) || !kube_decode_dns_label(ns, strlen(ns)) ||
                   !kube_decode_dns_name(slash + 1))) ||
        (!slash && !kube_decode_dns_name(v))) {
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
        if (sn && (!kobj_text(sn) || (*kobj_text(sn) && !kube_decode_dns_name(kobj_text(sn))))) {
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
        policy_parse_annotations(doc, m, &ing->policy, NULL, err, errlen) ||
        kd_ingress_tls(doc, ing, err, errlen))
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
    return policy_parse_annotations(doc, &svc->meta, &svc->policy, svc, err, errlen);
}

/*
 * A list of IP strings: the items of seq (each a string, or with key, a mapping's key, as
 * status.podIPs[].ip), else the single scalar one. Items that are not IP literals are
 * skipped (a Service's "None" is kept: the mesh directory skips headless Services).
 */
static int kd_ip_list(struct model_meta *m, const struct kobj *seq, const char *key,
                      const struct kobj *one, const char ***out, size_t *n, char *err,
                      size_t errlen)
{
    size_t i, cnt = seq && seq->type == KOBJ_SEQ ? seq->n : 0;
    const char *s;

    *out = NULL;
    *n = 0;
    if (!cnt && !kobj_text(one)) return 0;
    if (!(*out = model_alloc(m, (cnt ? cnt : 1) * sizeof(**out)))) goto oom;
    if (!cnt) {
        s = kobj_text(one);
        if (!kd_has_ctl(s) && !((*out)[(*n)++] = model_strdup(m, s))) goto oom;
        return 0;
    }
    for (i = 0; i < cnt; i++) {
        s = key ? kobj_str(seq->items[i], key) : kobj_text(seq->items[i]);
        if (!s || kd_has_ctl(s)) continue;
        if (!((*out)[(*n)++] = model_strdup(m, s))) goto oom;
    }
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

static int kd_service(const struct kobj *doc, struct model_service *svc, char *err, size_t errlen)
{
    struct model_meta *m = &svc->meta;
    const struct kobj *ports = kobj_get(doc, "spec", "ports");
    const char *app;
    size_t i;

    if (kd_ip_list(m, kobj_get(doc, "spec", "clusterIPs"), NULL, kobj_get(doc, "spec", "clusterIP"),
                   &svc->cluster_ips, &svc->n_cluster_ips, err, errlen) ||
        kd_str(m, kobj_get(doc, "metadata", "annotations", "strait.dev/opaque-ports"),
               &svc->opaque_ports, "annotation strait.dev/opaque-ports", err, errlen))
        return -1;
    if (!svc->opaque_ports) svc->opaque_ports = "";
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
        app = kobj_str(ports->items[i], "protocol");
        p->not_tcp = app && *app && strcmp(app, "TCP");
        app = kobj_str(ports->items[i], "appProtocol");
        if (!(p->app_protocol = model_strdup(m, app && !kd_has_ctl(app) ? app : ""))) {
            SET_ERR("out of memory");
            return -1;
        }
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
        tn = kobj_str(eps->items[i], "targetRef", "kind");
        e->target_pod = tn && !strcmp(tn, "Pod");
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

/* A container list (spec.containers / spec.initContainers) holds the mesh sidecar. */
static int kd_has_sidecar(const struct kobj *list)
{
    const char *n;
    size_t i;

    if (!list || list->type != KOBJ_SEQ) return 0;
    for (i = 0; i < list->n; i++)
        if ((n = kobj_str(list->items[i], "name")) && !strcmp(n, KD_MESH_SIDECAR)) return 1;
    return 0;
}

static int kd_pod(const struct kobj *doc, struct model_pod *pod, char *err, size_t errlen)
{
    struct model_meta *m = &pod->meta;
    const char *inj = kobj_str(doc, "metadata", "annotations", "strait.dev/inject");

    if (kd_str(m, kobj_get(doc, "spec", "serviceAccountName"), &pod->service_account,
               "spec.serviceAccountName", err, errlen) ||
        kd_str(m, kobj_get(doc, "status", "phase"), &pod->phase, "status.phase", err, errlen) ||
        kd_ip_list(m, kobj_get(doc, "status", "podIPs"), "ip", kobj_get(doc, "status", "podIP"),
                   &pod->ips, &pod->n_ips, err, errlen))
        return -1;
    if (!pod->service_account || !*pod->service_account) pod->service_account = "default";
    if (!pod->phase) pod->phase = "";
    pod->host_network = kobj_bool(kobj_get(doc, "spec", "hostNetwork")) == 1;
    /* a hostNetwork pod is never injected (inject.c), whatever it is annotated with */
    pod->meshed = !pod->host_network && ((inj && !strcmp(inj, "enabled")) ||
                                         kd_has_sidecar(kobj_get(doc, "spec", "containers")) ||
                                         kd_has_sidecar(kobj_get(doc, "spec", "initContainers")));
    return 0;
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
        {"v1", "Pod", MODEL_KIND_POD, sizeof(struct model_pod)},
        {"strait.dev/v1alpha1", "AuthorizationPolicy", MODEL_KIND_AUTHZ_POLICY,
         sizeof(struct model_authz_policy)},
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
        case MODEL_KIND_POD:
            rc = kd_pod(doc, (struct model_pod *)m, err, errlen);
            break;
        case MODEL_KIND_AUTHZ_POLICY: {
            struct model_authz_policy *pol = (struct model_authz_policy *)m;
            rc = authzdecode_policy(doc, pol, err, errlen);
            /* kept with its reason, for its status, as an invalid Gateway */
            if (rc) {
                pol->target = "";
                pol->from = NULL;
                pol->n_from = 0;
                if ((pol->invalid = model_strdup(m, err))) {
                    *out = m;
                    return 2;
                }
            }
            break;
        }
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
