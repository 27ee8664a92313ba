/*
 * inject: the mesh sidecar's injection into pods (docs/mesh.md, "Injection").
 *
 * Does: decides whether a pod gets the sidecar (strait.dev/inject, already injected,
 * hostNetwork), computes the JSON Patch "add" operations that inject it (init container
 * strait-init running mesh-init, native sidecar strait-proxy, the token and xtables-lock
 * volumes, two annotations), applies them to YAML/JSON manifests (`inject -f`: Pods, the pod
 * templates of workloads, Lists) or sends them in an AdmissionReview response (the webhook).
 * Does not: talk to the API server, know namespaces' labels (the webhook configuration's
 * selectors choose the pods), or serve HTTP (main.c registers the handler with meshsrv).
 * Invariants: inject -f and the webhook share one list of operations, so the patched pod is
 * exactly the injected manifest; an injected pod is never injected again (idempotent); the
 * rest of every object is kept, in its order (comments and YAML formatting are not).
 */
#include "inject.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <yajl/yajl_gen.h>
#include <yaml.h>

#include "jsongen.h"
#include "kobj.h"
#include "log.h"
#include "meshid.h"
#include "meshinit.h"
#include "meshsrv.h"
#include "readfile.h"

#define IJ_MAX_INPUT (16u << 20)
#define IJ_PROXY_UID 2102
#define IJ_INBOUND_PORT 4143
#define IJ_OUTBOUND_PORT 4140
#define IJ_ADMIN_PORT 4191
#define IJ_TOKEN_DIR "/var/run/secrets/strait.dev/serviceaccount"
#define IJ_CONTROLLER_BIN "/usr/local/bin/strait-controller"
#define IJ_DATAPLANE_BIN "/usr/local/bin/strait-dataplane"

#define IJ_ANN_INJECT "strait.dev/inject"
#define IJ_ANN_INJECTED "strait.dev/injected"
#define IJ_ANN_VERSION "strait.dev/proxy-version"
#define IJ_ANN_SKIP_IN "strait.dev/skip-inbound-ports"
#define IJ_ANN_SKIP_OUT "strait.dev/skip-outbound-ports"
#define IJ_ANN_SKIP_CIDRS "strait.dev/skip-outbound-cidrs"

enum ij_decision { IJ_INJECT = 0, IJ_ALREADY, IJ_DISABLED, IJ_HOSTNET };

static const char *const ij_reason[] = {"injected", "skipped: already injected",
                                        "skipped: strait.dev/inject is disabled",
                                        "skipped: hostNetwork pods share the node's network"};

/* One JSON Patch "add": path is an RFC 6901 pointer from the pod; value is owned. */
struct ij_op {
    char *path;
    struct kobj *value;
};

struct ij_ops {
    struct ij_op *v;
    size_t n, cap;
    int oom; /* an add failed: the list is incomplete */
};

/* ---- scalars: what a plain (unquoted) scalar means ---- */

enum ij_type { IJ_T_STRING = 0, IJ_T_NUMBER, IJ_T_TRUE, IJ_T_FALSE, IJ_T_NULL };

/* Whether s is a number in JSON's grammar (which YAML reads as the same number). */
static int ij_json_number(const char *s)
{
    if (*s == '-') s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return 0;
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static int ij_word(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (!strcmp(s, *words)) return 1;
    return 0;
}

/*
 * The type of plain scalar text s as the YAML decoder kubectl uses reads it (YAML 1.1 booleans
 * yes/no/on/off included, not y/n); numbers only in JSON's spelling (0x1F, +1 or 1_000 stay
 * strings).
 */
static enum ij_type ij_plain_type(const char *s)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
                                        "YES",  "on",   "On",   "ON",  NULL};
    static const char *const falses[] = {"false", "False", "FALSE", "no",  "No",
                                         "NO",    "off",   "Off",   "OFF", NULL};

    if (ij_word(s, nulls)) return IJ_T_NULL;
    if (ij_word(s, trues)) return IJ_T_TRUE;
    if (ij_word(s, falses)) return IJ_T_FALSE;
    return ij_json_number(s) ? IJ_T_NUMBER : IJ_T_STRING;
}

/*
 * Whether string s may be written as a plain YAML scalar without changing its type: not a
 * null or boolean word and nothing a YAML reader could take for a number, a date, an infinity
 * or a merge key (conservative: anything starting like one is quoted).
 */
static int ij_plain_safe(const char *s)
{
    const char *p = s;

    if (ij_plain_type(s) != IJ_T_STRING) return 0;
    if (*p == '+' || *p == '-') p++;
    if (*p == '.' && strchr("0123456789iInN", p[1] ? p[1] : ' ')) return 0; /* .5, .inf, .nan */
    if (*p >= '0' && *p <= '9' && !p[strspn(p, "0123456789._:+-eExXoObB")]) return 0;
    return strcmp(s, "<<") && strcmp(s, "=") && !(strchr("yYnN", *s) && !s[1]);
}

/* ---- building nodes (NULL means out of memory; builders free what they were given) ---- */

static struct kobj *ij_scalar(const char *s, enum kobj_style style)
{
    struct kobj *o = kobj_new(KOBJ_SCALAR, 0);

    if (!o) return NULL;
    o->style = style;
    if (!(o->str = strdup(s))) {
        kobj_free(o);
        return NULL;
    }
    return o;
}

static struct kobj *ij_str(const char *s)
{
    return ij_scalar(s, KOBJ_QUOTED);
}

static struct kobj *ij_num(long v)
{
    char num[24];

    snprintf(num, sizeof(num), "%ld", v);
    return ij_scalar(num, KOBJ_PLAIN);
}

static struct kobj *ij_bool(int v)
{
    return ij_scalar(v ? "true" : "false", KOBJ_PLAIN);
}

/* Appends key: v to map m (either may be NULL: then both are freed and NULL returned). */
static struct kobj *ij_put(struct kobj *m, const char *key, struct kobj *v)
{
    char *k;

    if (!m || !v) goto fail;
    if (!(k = strdup(key))) goto fail;
    if (kobj_insert(m, m->n, k, v)) {
        kobj_free(m);
        return NULL;
    }
    return m;
fail:
    kobj_free(m);
    kobj_free(v);
    return NULL;
}

/* Appends v to sequence s (NULL handling as ij_put). */
static struct kobj *ij_push(struct kobj *s, struct kobj *v)
{
    if (!s || !v) {
        kobj_free(s);
        kobj_free(v);
        return NULL;
    }
    if (kobj_insert(s, s->n, NULL, v)) {
        kobj_free(s);
        return NULL;
    }
    return s;
}

/* A map of key, value pairs ending with a NULL key; every value is consumed. */
static struct kobj *ij_map(const char *key, ...)
{
    struct kobj *m = kobj_new(KOBJ_MAP, 0), *v;
    va_list ap;

    va_start(ap, key);
    for (; key; key = va_arg(ap, const char *)) {
        v = va_arg(ap, struct kobj *);
        if (m)
            m = ij_put(m, key, v);
        else
            kobj_free(v);
    }
    va_end(ap);
    return m;
}

/* A sequence of n items; every item is consumed. */
static struct kobj *ij_seq(int n, ...)
{
    struct kobj *s = kobj_new(KOBJ_SEQ, 0), *v;
    va_list ap;

    va_start(ap, n);
    while (n-- > 0) {
        v = va_arg(ap, struct kobj *);
        if (s)
            s = ij_push(s, v);
        else
            kobj_free(v);
    }
    va_end(ap);
    return s;
}

/* A sequence of strings, the list ending with NULL. */
static struct kobj *ij_strs(const char *s, ...)
{
    struct kobj *seq = kobj_new(KOBJ_SEQ, 0);
    va_list ap;

    va_start(ap, s);
    for (; s && seq; s = va_arg(ap, const char *))
        seq = ij_push(seq, ij_str(s));
    va_end(ap);
    return seq;
}

static struct kobj *ij_field_env(const char *name, const char *path)
{
    return ij_map("name", ij_str(name), "valueFrom",
                  ij_map("fieldRef", ij_map("fieldPath", ij_str(path), NULL), NULL), NULL);
}

static struct kobj *ij_http_probe(const char *path, long period, long failures)
{
    return ij_map("httpGet", ij_map("path", ij_str(path), "port", ij_num(IJ_ADMIN_PORT), NULL),
                  "periodSeconds", ij_num(period), "failureThreshold", ij_num(failures), NULL);
}

/* ---- the pod ---- */

static const char *ij_annotation(const struct kobj *pod, const char *key)
{
    return kobj_str(pod, "metadata", "annotations", key);
}

static int ij_has_container(const struct kobj *spec, const char *list, const char *name)
{
    const struct kobj *l = kobj_get(spec, list);
    const char *n;
    size_t i;

    if (!l || l->type != KOBJ_SEQ) return 0;
    for (i = 0; i < l->n; i++)
        if ((n = kobj_str(l->items[i], "name")) && !strcmp(n, name)) return 1;
    return 0;
}

/*
 * Whether pod gets the sidecar: the pod's annotation strait.dev/inject (enabled or disabled)
 * wins, then its label of the same name; the namespace is the webhook selectors' business.
 */
static enum ij_decision ij_decide(const struct kobj *pod)
{
    const struct kobj *spec = kobj_get(pod, "spec");
    const char *want = ij_annotation(pod, IJ_ANN_INJECT);
    const char *done = ij_annotation(pod, IJ_ANN_INJECTED);

    if (!want) want = kobj_str(pod, "metadata", "labels", IJ_ANN_INJECT);
    if (want && !strcmp(want, "disabled")) return IJ_DISABLED;
    if ((done && !strcmp(done, "true")) ||
        ij_has_container(spec, "initContainers", "strait-proxy") ||
        ij_has_container(spec, "containers", "strait-proxy"))
        return IJ_ALREADY;
    if (kobj_bool(kobj_get(spec, "hostNetwork")) == 1) return IJ_HOSTNET;
    return IJ_INJECT;
}

/*
 * Checks the strait.dev/skip-* annotations the way mesh-init will read them (so a bad one is
 * refused now, not by a pod stuck in Init:Error). 0, or -1 with err.
 */
static int ij_check_skips(const char *in, const char *out, const char *cidrs, char *err,
                          size_t errlen)
{
    struct meshinit_cfg c;
    char e[256], *rules = NULL;
    int rc = -1;

    meshinit_defaults(&c);
    if (meshinit_parse_ports(in, c.in_excluded, &c.n_in_excluded, e, sizeof(e))) {
        snprintf(err, errlen, "%s: %s", IJ_ANN_SKIP_IN, e);
        return -1;
    }
    if (out && meshinit_parse_ports(out, c.out_excluded, &c.n_out_excluded, e, sizeof(e))) {
        snprintf(err, errlen, "%s: %s", IJ_ANN_SKIP_OUT, e);
        return -1;
    }
    if (cidrs && meshinit_parse_cidrs(cidrs, &c, e, sizeof(e))) {
        snprintf(err, errlen, "%s: %s", IJ_ANN_SKIP_CIDRS, e);
        return -1;
    }
    if (!(rules = malloc(1u << 17))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (meshinit_rules(&c, AF_INET, rules, 1u << 17, e, sizeof(e)) < 0)
        snprintf(err, errlen, "%s: %s", IJ_ANN_SKIP_IN, e);
    else
        rc = 0;
    free(rules);
    return rc;
}

/* The strait-init container: mesh-init with NET_ADMIN, as root, in the pod's namespace. */
static struct kobj *ij_init_container(const struct kobj *pod, const struct inject_opts *o,
                                      const char *skip_in)
{
    const char *out = ij_annotation(pod, IJ_ANN_SKIP_OUT);
    const char *cidrs = ij_annotation(pod, IJ_ANN_SKIP_CIDRS);
    struct kobj *args;

    args = ij_strs("mesh-init", "--proxy-uid", "2102", "--inbound-port", "4143", "--outbound-port",
                   "4140", "--exclude-inbound-ports", skip_in, NULL);
    if (out && *out) args = ij_push(ij_push(args, ij_str("--exclude-outbound-ports")), ij_str(out));
    if (cidrs && *cidrs)
        args = ij_push(ij_push(args, ij_str("--exclude-outbound-cidrs")), ij_str(cidrs));
    return ij_map(
        "name", ij_str("strait-init"), "image", ij_str(o->proxy_image), "imagePullPolicy",
        ij_str("IfNotPresent"), "command", ij_strs(IJ_CONTROLLER_BIN, NULL), "args", args,
        "resources",
        ij_map("requests", ij_map("cpu", ij_str("10m"), "memory", ij_str("16Mi"), NULL), "limits",
               ij_map("memory", ij_str("64Mi"), NULL), NULL),
        "securityContext",
        ij_map("capabilities",
               ij_map("add", ij_strs("NET_ADMIN", NULL), "drop", ij_strs("ALL", NULL), NULL),
               "runAsUser", ij_num(0), "runAsNonRoot", ij_bool(0), "allowPrivilegeEscalation",
               ij_bool(0), "readOnlyRootFilesystem", ij_bool(1), NULL),
        "volumeMounts",
        ij_seq(1, ij_map("name", ij_str("strait-xtables-lock"), "mountPath", ij_str("/run"), NULL)),
        NULL);
}

/* The strait-proxy native sidecar: an init container that keeps running (restartPolicy). */
static struct kobj *ij_proxy_container(const struct inject_opts *o)
{
    struct kobj *env;

    env = ij_seq(5, ij_field_env("STRAIT_POD_NAMESPACE", "metadata.namespace"),
                 ij_field_env("STRAIT_POD_NAME", "metadata.name"),
                 ij_field_env("STRAIT_POD_IP", "status.podIP"),
                 ij_field_env("STRAIT_SERVICE_ACCOUNT", "spec.serviceAccountName"),
                 ij_map("name", ij_str("STRAIT_MESH_IDENTITY_ADDR"), "value",
                        ij_str(o->identity_addr), NULL));
    if (o->trust_anchors)
        env = ij_push(env, ij_map("name", ij_str("STRAIT_MESH_TRUST_ANCHORS"), "value",
                                  ij_str(o->trust_anchors), NULL));
    return ij_map(
        "name", ij_str("strait-proxy"), "image", ij_str(o->proxy_image), "imagePullPolicy",
        ij_str("IfNotPresent"), "restartPolicy", ij_str("Always"), "command",
        ij_strs(IJ_DATAPLANE_BIN, NULL), "args", ij_strs("--sidecar", NULL), "env", env, "ports",
        ij_seq(2,
               ij_map("name", ij_str("strait-inbound"), "containerPort", ij_num(IJ_INBOUND_PORT),
                      "protocol", ij_str("TCP"), NULL),
               ij_map("name", ij_str("strait-admin"), "containerPort", ij_num(IJ_ADMIN_PORT),
                      "protocol", ij_str("TCP"), NULL)),
        "startupProbe", ij_http_probe("/ready", 1, 120), "readinessProbe",
        ij_http_probe("/ready", 5, 3), "livenessProbe", ij_http_probe("/live", 10, 3), "resources",
        ij_map("requests", ij_map("cpu", ij_str("10m"), "memory", ij_str("16Mi"), NULL), "limits",
               ij_map("memory", ij_str("64Mi"), NULL), NULL),
        "securityContext",
        ij_map("runAsUser", ij_num(IJ_PROXY_UID), "runAsGroup", ij_num(IJ_PROXY_UID),
               "runAsNonRoot", ij_bool(1), "readOnlyRootFilesystem", ij_bool(1),
               "allowPrivilegeEscalation", ij_bool(0), "capabilities",
               ij_map("drop", ij_strs("ALL", NULL), NULL), NULL),
        "volumeMounts",
        ij_seq(1, ij_map("name", ij_str("strait-identity-token"), "mountPath", ij_str(IJ_TOKEN_DIR),
                         "readOnly", ij_bool(1), NULL)),
        NULL);
}

static struct kobj *ij_token_volume(void)
{
    return ij_map("name", ij_str("strait-identity-token"), "projected",
                  ij_map("sources",
                         ij_seq(1, ij_map("serviceAccountToken",
                                          ij_map("audience", ij_str("strait"), "expirationSeconds",
                                                 ij_num(86400), "path", ij_str("token"), NULL),
                                          NULL)),
                         NULL),
                  NULL);
}

static struct kobj *ij_lock_volume(void)
{
    return ij_map("name", ij_str("strait-xtables-lock"), "emptyDir", kobj_new(KOBJ_MAP, 0), NULL);
}

/* Writes key as an RFC 6901 reference token ("~" -> "~0", "/" -> "~1") at the end of path. */
static void ij_ptr_append(char *path, size_t n, const char *key)
{
    size_t l = strlen(path);

    if (l + 1 < n) path[l++] = '/';
    for (; *key && l + 2 < n; key++) {
        if (*key == '~' || *key == '/') {
            path[l++] = '~';
            path[l++] = *key == '~' ? '0' : '1';
        } else {
            path[l++] = *key;
        }
    }
    path[l] = '\0';
}

/* Adds the operation path: value (value consumed; a failure marks ops->oom). */
static void ij_add(struct ij_ops *ops, const char *path, struct kobj *value)
{
    char *p = value ? strdup(path) : NULL;

    if (p && ops->n == ops->cap) {
        size_t cap = ops->cap ? ops->cap * 2 : 8;
        struct ij_op *v = realloc(ops->v, cap * sizeof(*v));
        if (v) {
            ops->v = v;
            ops->cap = cap;
        }
    }
    if (!p || ops->n == ops->cap) {
        free(p);
        kobj_free(value);
        ops->oom = 1;
        return;
    }
    ops->v[ops->n].path = p;
    ops->v[ops->n].value = value;
    ops->n++;
}

static void ij_ops_free(struct ij_ops *ops)
{
    size_t i;

    for (i = 0; i < ops->n; i++) {
        free(ops->v[i].path);
        kobj_free(ops->v[i].value);
    }
    free(ops->v);
    memset(ops, 0, sizeof(*ops));
}

static int ij_is_map(const struct kobj *o)
{
    return o && o->type == KOBJ_MAP;
}

static int ij_is_seq(const struct kobj *o)
{
    return o && o->type == KOBJ_SEQ;
}

/*
 * The operations that inject pod (a Pod object or a pod template: metadata + spec), paths
 * from the pod. 0, or -1 with err (a bad strait.dev/skip-* annotation, out of memory).
 */
static int ij_plan(const struct kobj *pod, const struct inject_opts *o, struct ij_ops *ops,
                   char *err, size_t errlen)
{
    const struct kobj *meta = kobj_get(pod, "metadata"),
                      *ann = kobj_get(pod, "metadata", "annotations");
    const struct kobj *spec = kobj_get(pod, "spec");
    const char *in = ij_annotation(pod, IJ_ANN_SKIP_IN);
    char skip_in[512], path[128];

    if (!ij_is_map(spec)) {
        snprintf(err, errlen, "the pod has no spec");
        return -1;
    }
    /* the kubelet probes the sidecar's admin port: never redirected */
    snprintf(skip_in, sizeof(skip_in), "%d%s%s", IJ_ADMIN_PORT, in && *in ? "," : "",
             in && *in ? in : "");
    if (strlen(skip_in) >= sizeof(skip_in) - 1) {
        snprintf(err, errlen, "%s: too long", IJ_ANN_SKIP_IN);
        return -1;
    }
    if (ij_check_skips(skip_in, ij_annotation(pod, IJ_ANN_SKIP_OUT),
                       ij_annotation(pod, IJ_ANN_SKIP_CIDRS), err, errlen))
        return -1;

    if (!ij_is_map(meta)) {
        ij_add(ops, "/metadata",
               ij_map("annotations",
                      ij_map(IJ_ANN_VERSION, ij_str(INJECT_PROXY_VERSION), IJ_ANN_INJECTED,
                             ij_str("true"), NULL),
                      NULL));
    } else if (!ij_is_map(ann)) {
        ij_add(ops, "/metadata/annotations",
               ij_map(IJ_ANN_VERSION, ij_str(INJECT_PROXY_VERSION), IJ_ANN_INJECTED, ij_str("true"),
                      NULL));
    } else {
        snprintf(path, sizeof(path), "/metadata/annotations");
        ij_ptr_append(path, sizeof(path), IJ_ANN_VERSION);
        ij_add(ops, path, ij_str(INJECT_PROXY_VERSION));
        snprintf(path, sizeof(path), "/metadata/annotations");
        ij_ptr_append(path, sizeof(path), IJ_ANN_INJECTED);
        ij_add(ops, path, ij_str("true"));
    }
    /* first: mesh-init, then the sidecar; the pod's own init containers after them */
    if (ij_is_seq(kobj_get(spec, "initContainers"))) {
        ij_add(ops, "/spec/initContainers/0", ij_init_container(pod, o, skip_in));
        ij_add(ops, "/spec/initContainers/1", ij_proxy_container(o));
    } else {
        ij_add(ops, "/spec/initContainers",
               ij_seq(2, ij_init_container(pod, o, skip_in), ij_proxy_container(o)));
    }
    if (ij_is_seq(kobj_get(spec, "volumes"))) {
        ij_add(ops, "/spec/volumes/-", ij_token_volume());
        ij_add(ops, "/spec/volumes/-", ij_lock_volume());
    } else {
        ij_add(ops, "/spec/volumes", ij_seq(2, ij_token_volume(), ij_lock_volume()));
    }
    if (ops->oom) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- applying operations (the "add" of RFC 6902 on a kobj tree) ---- */

/* Copies the next reference token of *p (unescaped) into tok; 0, or -1 when too long. */
static int ij_ptr_next(const char **p, char *tok, size_t n)
{
    size_t l = 0;

    for (; **p && **p != '/'; (*p)++) {
        char c = **p;
        if (c == '~') {
            (*p)++;
            c = **p == '1' ? '/' : '~';
        }
        if (l + 1 >= n) return -1;
        tok[l++] = c;
    }
    tok[l] = '\0';
    return 0;
}

static long ij_index(const char *tok)
{
    char *end;
    long i;

    if (!*tok || (tok[0] == '0' && tok[1])) return -1;
    errno = 0;
    i = strtol(tok, &end, 10);
    return errno || *end || i < 0 ? -1 : i;
}

/* Applies op to root, taking its value. 0, or -1 with err. */
static int ij_apply(struct kobj *root, struct ij_op *op, char *err, size_t errlen)
{
    const char *p = op->path;
    struct kobj *cur = root;
    char tok[256], *key;
    size_t i;
    long at;

    while (*p == '/') {
        p++;
        if (ij_ptr_next(&p, tok, sizeof(tok))) goto bad;
        if (*p == '/') { /* not the last token: descend */
            if (ij_is_map(cur)) {
                for (i = 0; i < cur->n && strcmp(cur->keys[i], tok); i++)
                    ;
                if (i == cur->n) goto bad;
                cur = cur->items[i];
            } else if (ij_is_seq(cur) && (at = ij_index(tok)) >= 0 && (size_t)at < cur->n) {
                cur = cur->items[at];
            } else {
                goto bad;
            }
            continue;
        }
        if (ij_is_map(cur)) {
            for (i = 0; i < cur->n; i++) {
                if (!strcmp(cur->keys[i], tok)) { /* add replaces a member */
                    kobj_free(cur->items[i]);
                    cur->items[i] = op->value;
                    op->value = NULL;
                    return 0;
                }
            }
            if (!(key = strdup(tok))) goto oom;
            i = cur->n;
        } else if (ij_is_seq(cur)) {
            at = strcmp(tok, "-") ? ij_index(tok) : (long)cur->n;
            if (at < 0 || (size_t)at > cur->n) goto bad;
            key = NULL;
            i = (size_t)at;
        } else {
            goto bad;
        }
        if (kobj_insert(cur, i, key, op->value)) {
            op->value = NULL;
            goto oom;
        }
        op->value = NULL;
        return 0;
    }
bad:
    snprintf(err, errlen, "cannot apply add %s", op->path);
    return -1;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- writing JSON ---- */

static void ij_gen_json(yajl_gen g, const struct kobj *o)
{
    size_t i;

    switch (o->type) {
    case KOBJ_MAP:
        yajl_gen_map_open(g);
        for (i = 0; i < o->n; i++) {
            jsongen_str(g, o->keys[i]);
            ij_gen_json(g, o->items[i]);
        }
        yajl_gen_map_close(g);
        break;
    case KOBJ_SEQ:
        yajl_gen_array_open(g);
        for (i = 0; i < o->n; i++)
            ij_gen_json(g, o->items[i]);
        yajl_gen_array_close(g);
        break;
    case KOBJ_SCALAR:
        if (o->style == KOBJ_QUOTED) {
            jsongen_str(g, o->str);
            break;
        }
        switch (ij_plain_type(o->str)) {
        case IJ_T_NUMBER:
            yajl_gen_number(g, o->str, strlen(o->str));
            break;
        case IJ_T_TRUE:
            yajl_gen_bool(g, 1);
            break;
        case IJ_T_FALSE:
            yajl_gen_bool(g, 0);
            break;
        case IJ_T_NULL:
            yajl_gen_null(g);
            break;
        default:
            jsongen_str(g, o->str);
        }
        break;
    }
}

/* Copies g's output into a malloc'd NUL-terminated string (*len bytes); NULL when out of memory. */
static char *ij_gen_take(yajl_gen g, size_t *len)
{
    const unsigned char *b;
    size_t n;
    char *s;

    yajl_gen_get_buf(g, &b, &n);
    if (!(s = malloc(n + 1))) return NULL;
    memcpy(s, b, n);
    s[n] = '\0';
    if (len) *len = n;
    return s;
}

/* ---- writing YAML (libyaml's emitter) ---- */

struct ij_buf {
    char *p;
    size_t n, cap;
    int oom;
};

static int ij_buf_write(void *data, unsigned char *b, size_t n)
{
    struct ij_buf *o = data;

    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        char *p;
        while (cap < o->n + n + 1)
            cap *= 2;
        if (!(p = realloc(o->p, cap))) {
            o->oom = 1;
            return 0;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, b, n);
    o->n += n;
    o->p[o->n] = '\0';
    return 1;
}

/* Emits one scalar; quoted says it is a string that must read back as one. */
static int ij_emit_scalar(yaml_emitter_t *e, const char *s, int quoted)
{
    yaml_event_t ev;
    int plain = !quoted || ij_plain_safe(s);
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;

    /* multi-line strings (PEM) read best as literal blocks; the emitter falls back if not */
    if (quoted && strchr(s, '\n')) style = YAML_LITERAL_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), plain, 1,
                                      style))
        return -1;
    return yaml_emitter_emit(e, &ev) ? 0 : -1;
}

static int ij_emit_node(yaml_emitter_t *e, const struct kobj *o)
{
    yaml_event_t ev;
    size_t i;

    switch (o->type) {
    case KOBJ_MAP:
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        for (i = 0; i < o->n; i++)
            if (ij_emit_scalar(e, o->keys[i], 1) || ij_emit_node(e, o->items[i])) return -1;
        if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(e, &ev)) return -1;
        return 0;
    case KOBJ_SEQ:
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return -1;
        for (i = 0; i < o->n; i++)
            if (ij_emit_node(e, o->items[i])) return -1;
        if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(e, &ev)) return -1;
        return 0;
    case KOBJ_SCALAR:
        return ij_emit_scalar(e, o->str, o->style == KOBJ_QUOTED);
    }
    return -1;
}

/* The documents as a YAML stream into *out. 0, or -1 with err. */
static int ij_write_yaml(struct kobj *const *docs, size_t n, char **out, size_t *outlen, char *err,
                         size_t errlen)
{
    struct ij_buf b = {0};
    yaml_emitter_t e;
    yaml_event_t ev;
    size_t i;
    int ok;

    if (!yaml_emitter_initialize(&e)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    yaml_emitter_set_output(&e, ij_buf_write, &b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev);
    for (i = 0; ok && i < n; i++) {
        ok = yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
             yaml_emitter_emit(&e, &ev) && !ij_emit_node(&e, docs[i]) &&
             yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev);
    }
    ok = ok && yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev) &&
         yaml_emitter_flush(&e);
    if (!ok || b.oom) {
        snprintf(err, errlen, "writing YAML: %s",
                 b.oom       ? "out of memory"
                 : e.problem ? e.problem
                             : "emitter error");
        yaml_emitter_delete(&e);
        free(b.p);
        return -1;
    }
    yaml_emitter_delete(&e);
    if (!b.p && !(b.p = strdup(""))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *out = b.p;
    *outlen = b.n;
    return 0;
}

/* The documents as JSON into *out: one document as itself, several as a v1 List. */
static int ij_write_json(struct kobj *const *docs, size_t n, char **out, size_t *outlen, char *err,
                         size_t errlen)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    size_t i;

    if (!g) goto oom;
    yajl_gen_config(g, yajl_gen_beautify, 1);
    yajl_gen_config(g, yajl_gen_indent_string, "  ");
    if (n == 1) {
        ij_gen_json(g, docs[0]);
    } else {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "apiVersion", "v1");
        jsongen_kv_str(g, "kind", "List");
        jsongen_str(g, "items");
        yajl_gen_array_open(g);
        for (i = 0; i < n; i++)
            ij_gen_json(g, docs[i]);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    *out = ij_gen_take(g, outlen);
    yajl_gen_free(g);
    if (*out) return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- manifests ---- */

/* "Kind ns/name" of obj for messages (a pod template says whose). */
static void ij_describe(const struct kobj *obj, char *buf, size_t n)
{
    const char *kind = kobj_str(obj, "kind"), *ns = kobj_str(obj, "metadata", "namespace");
    const char *name = kobj_str(obj, "metadata", "name");

    if (!name) name = kobj_str(obj, "metadata", "generateName");
    snprintf(buf, n, "%s %s%s%s", kind ? kind : "object", ns ? ns : "", ns ? "/" : "",
             name ? name : "(no name)");
}

/* Injects one pod (object or template) in place; 0, or -1 with err. */
static int ij_inject_pod(struct kobj *pod, const struct kobj *owner, const struct inject_opts *o,
                         FILE *msgs, char *err, size_t errlen)
{
    enum ij_decision d = ij_decide(pod);
    struct ij_ops ops = {0};
    char what[300], e[400];
    size_t i;
    int rc = -1;

    ij_describe(owner, what, sizeof(what));
    if (d == IJ_INJECT) {
        if (ij_plan(pod, o, &ops, e, sizeof(e))) {
            snprintf(err, errlen, "%s: %s", what, e);
            goto out;
        }
        for (i = 0; i < ops.n; i++) {
            if (ij_apply(pod, &ops.v[i], e, sizeof(e))) {
                snprintf(err, errlen, "%s: %s", what, e);
                goto out;
            }
        }
    }
    if (msgs) fprintf(msgs, "strait-controller inject: %s: %s\n", what, ij_reason[d]);
    rc = 0;
out:
    ij_ops_free(&ops);
    return rc;
}

/* Injects the pods of obj (a Pod, a workload, a List); other kinds stay as they are. */
static int ij_inject_object(struct kobj *obj, const struct inject_opts *o, FILE *msgs, int depth,
                            char *err, size_t errlen)
{
    static const char *const templated[] = {"Deployment", "StatefulSet", "DaemonSet",
                                            "ReplicaSet", "Job",         NULL};
    const char *kind = kobj_str(obj, "kind");
    struct kobj *items, *pod;
    size_t i;

    if (!ij_is_map(obj) || !kind) return 0;
    items = kobj_get(obj, "items");
    if (strlen(kind) >= 4 && !strcmp(kind + strlen(kind) - 4, "List") && ij_is_seq(items)) {
        if (depth > 4) return 0;
        for (i = 0; i < items->n; i++)
            if (ij_inject_object(items->items[i], o, msgs, depth + 1, err, errlen)) return -1;
        return 0;
    }
    if (!strcmp(kind, "Pod"))
        pod = obj;
    else if (ij_word(kind, templated))
        pod = kobj_get(obj, "spec", "template");
    else if (!strcmp(kind, "CronJob"))
        pod = kobj_get(obj, "spec", "jobTemplate", "spec", "template");
    else
        return 0;
    if (!ij_is_map(pod)) {
        char what[300];
        ij_describe(obj, what, sizeof(what));
        snprintf(err, errlen, "%s: no pod template", what);
        return -1;
    }
    return ij_inject_pod(pod, obj, o, msgs, err, errlen);
}

/* Whether buf holds JSON (its first non-blank character opens an object or an array). */
static int ij_looks_json(const char *buf, size_t len)
{
    size_t i = 0;

    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) i = 3;
    while (i < len && strchr(" \t\r\n", buf[i]))
        i++;
    return i < len && (buf[i] == '{' || buf[i] == '[');
}

static void ij_defaults(const struct inject_opts *in, struct inject_opts *o)
{
    *o = *in;
    if (!o->proxy_image || !*o->proxy_image) o->proxy_image = INJECT_DEFAULT_IMAGE;
    if (!o->identity_addr || !*o->identity_addr) o->identity_addr = INJECT_DEFAULT_IDENTITY_ADDR;
    if (o->trust_anchors && !*o->trust_anchors) o->trust_anchors = NULL;
}

int inject_documents(const char *buf, size_t len, const struct inject_opts *opts,
                     enum inject_format fmt, FILE *msgs, char **out, size_t *outlen, char *err,
                     size_t errlen)
{
    struct kobj_docs docs = {0};
    struct inject_opts o;
    int json = ij_looks_json(buf, len), rc = -1;
    char e[400];
    size_t i;

    ij_defaults(opts, &o);
    if ((json ? kobj_parse_json : kobj_parse_yaml)(buf, len, &docs, e, sizeof(e))) {
        snprintf(err, errlen, "invalid %s: %s", json ? "JSON" : "YAML", e);
        goto out;
    }
    if (docs.n == 0) {
        snprintf(err, errlen, "no objects in the input");
        goto out;
    }
    for (i = 0; i < docs.n; i++) {
        if (!ij_is_map(docs.docs[i])) {
            snprintf(err, errlen, "document %zu is not an object", i + 1);
            goto out;
        }
        if (ij_inject_object(docs.docs[i], &o, msgs, 0, err, errlen)) goto out;
    }
    if (fmt == INJECT_AUTO) fmt = json ? INJECT_JSON : INJECT_YAML;
    rc = fmt == INJECT_JSON ? ij_write_json(docs.docs, docs.n, out, outlen, err, errlen)
                            : ij_write_yaml(docs.docs, docs.n, out, outlen, err, errlen);
out:
    kobj_docs_free(&docs);
    return rc;
}

/* ---- the admission webhook ---- */

/* base64 of the JSON Patch of ops; NULL when out of memory. */
static char *ij_patch_b64(const struct ij_ops *ops)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *b;
    char *out = NULL;
    size_t i, n;

    if (!g) return NULL;
    yajl_gen_array_open(g);
    for (i = 0; i < ops->n; i++) {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "op", "add");
        jsongen_kv_str(g, "path", ops->v[i].path);
        jsongen_str(g, "value");
        ij_gen_json(g, ops->v[i].value);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_get_buf(g, &b, &n);
    if ((out = malloc(4 * ((n + 2) / 3) + 1))) EVP_EncodeBlock((unsigned char *)out, b, (int)n);
    yajl_gen_free(g);
    return out;
}

int inject_admission(const char *body, size_t len, const struct inject_opts *opts, char **out,
                     size_t *outlen, char *err, size_t errlen)
{
    struct kobj_docs docs = {0};
    struct ij_ops ops = {0};
    struct inject_opts o;
    const struct kobj *req, *pod;
    const char *uid, *kind, *op, *ns, *name, *api;
    const char *warning = NULL, *result;
    char deny[512] = "", e[400], q1[300], q2[300];
    char *patch = NULL;
    enum ij_decision d = IJ_INJECT;
    yajl_gen g = NULL;
    int rc = -1;

    ij_defaults(opts, &o);
    *out = NULL;
    if (kobj_parse_json(body, len, &docs, e, sizeof(e)) || docs.n != 1) {
        snprintf(err, errlen, "not JSON: %s", docs.n ? e : "empty body");
        goto out;
    }
    api = kobj_str(docs.docs[0], "apiVersion");
    kind = kobj_str(docs.docs[0], "kind");
    if (!api || strcmp(api, "admission.k8s.io/v1") || !kind || strcmp(kind, "AdmissionReview")) {
        snprintf(err, errlen, "not an admission.k8s.io/v1 AdmissionReview");
        goto out;
    }
    req = kobj_get(docs.docs[0], "request");
    uid = kobj_str(req, "uid");
    pod = kobj_get(req, "object");
    if (!uid || !*uid || !ij_is_map(pod)) {
        snprintf(err, errlen, "the AdmissionReview has no request.uid or request.object");
        goto out;
    }
    kind = kobj_str(req, "kind", "kind");
    op = kobj_str(req, "operation");
    ns = kobj_str(req, "namespace");
    name = kobj_str(pod, "metadata", "name");
    if (!name) name = kobj_str(pod, "metadata", "generateName");
    if ((kind && strcmp(kind, "Pod")) || (op && strcmp(op, "CREATE"))) {
        result = "not_a_pod_create"; /* a webhook configured wider than ours: let it be */
    } else if ((d = ij_decide(pod)) != IJ_INJECT) {
        result = d == IJ_ALREADY    ? "already_injected"
                 : d == IJ_DISABLED ? "disabled"
                                    : "host_network";
        if (d == IJ_HOSTNET)
            warning = "strait: pod not injected with the mesh sidecar: hostNetwork pods share the "
                      "node's network";
    } else if (ij_plan(pod, &o, &ops, deny, sizeof(deny))) {
        if (ops.oom) {
            snprintf(err, errlen, "%s", deny);
            goto out;
        }
        result = "denied";
    } else {
        if (!(patch = ij_patch_b64(&ops))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        result = "injected";
    }
    log_info("mesh_inject", "result=%s namespace=%s pod=%s%s%s", result,
             log_quote(q1, sizeof(q1), ns ? ns : ""), log_quote(q2, sizeof(q2), name ? name : ""),
             *deny ? " reason=" : "", *deny ? log_quote(e, sizeof(e), deny) : "");

    if (!(g = yajl_gen_alloc(NULL))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "apiVersion", "admission.k8s.io/v1");
    jsongen_kv_str(g, "kind", "AdmissionReview");
    jsongen_str(g, "response");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "uid", uid);
    jsongen_str(g, "allowed");
    yajl_gen_bool(g, !*deny);
    if (*deny) {
        char msg[600];
        snprintf(msg, sizeof(msg), "strait: cannot inject the mesh sidecar: %s", deny);
        jsongen_str(g, "status");
        yajl_gen_map_open(g);
        jsongen_str(g, "code");
        yajl_gen_integer(g, 400);
        jsongen_kv_str(g, "message", msg);
        yajl_gen_map_close(g);
    }
    if (patch) {
        jsongen_kv_str(g, "patchType", "JSONPatch");
        jsongen_kv_str(g, "patch", patch);
    }
    if (warning) {
        jsongen_str(g, "warnings");
        yajl_gen_array_open(g);
        jsongen_str(g, warning);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    if (!(*out = ij_gen_take(g, outlen))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (g) yajl_gen_free(g);
    free(patch);
    ij_ops_free(&ops);
    kobj_docs_free(&docs);
    return rc;
}

/* A JSON {"error": msg} body (malloc'd), NULL when out of memory. */
static char *ij_error_body(const char *msg)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char *b;

    if (!g) return NULL;
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "error", msg);
    yajl_gen_map_close(g);
    b = ij_gen_take(g, NULL);
    yajl_gen_free(g);
    return b;
}

int inject_webhook_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    struct inject_webhook *w = arg;
    struct inject_opts o = w->opts;
    char err[400], q[450];
    size_t len;

    o.trust_anchors = meshid_trust_bundle(w->mesh);
    if (!o.trust_anchors) {
        out->status = 503;
        out->body = ij_error_body("the mesh root is not loaded yet");
        return 0;
    }
    if (inject_admission(req->body, req->body_len, &o, &out->body, &len, err, sizeof(err))) {
        log_warn("mesh_inject_bad_request", "peer=%s reason=%s", req->peer,
                 log_quote(q, sizeof(q), err));
        out->status = 400;
        out->body = ij_error_body(err);
    }
    return 0;
}

/* ---- the command ---- */

static char *ij_read_path(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    if (!strcmp(path, "-")) return readfile_stream(stdin, "stdin", max, len, err, errlen);
    return readfile_len(path, max, len, err, errlen);
}

static void ij_usage(FILE *f)
{
    fprintf(
        f,
        "usage: strait-controller inject -f FILE [--proxy-image IMAGE]\n"
        "                         [--identity-addr HOST:PORT] [--trust-anchors FILE]\n"
        "                         [-o yaml|json]\n"
        "  Adds the mesh sidecar to the pods of FILE (YAML or JSON; - for stdin): Pods, the\n"
        "  pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and\n"
        "  CronJobs, and the items of Lists; other objects are copied unchanged. Writes the\n"
        "  result to stdout in the input's format (or -o), one line per pod to stderr.\n"
        "  --proxy-image: the image of strait-init and strait-proxy (default " INJECT_DEFAULT_IMAGE
        ").\n"
        "  --identity-addr: the controller's identity endpoint (default\n"
        "  " INJECT_DEFAULT_IDENTITY_ADDR ").\n"
        "  --trust-anchors: PEM file of the mesh roots, put into STRAIT_MESH_TRUST_ANCHORS.\n"
        "  Pods annotated strait.dev/inject: disabled, already injected or with hostNetwork\n"
        "  are left as they are. Exit 0; 1 for unreadable or invalid input; 2 for bad flags.\n");
}

int inject_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"filename", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"proxy-image", required_argument, NULL, 'i'},
        {"identity-addr", required_argument, NULL, 'a'},
        {"trust-anchors", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct inject_opts o = {0};
    enum inject_format fmt = INJECT_AUTO;
    const char *file = NULL, *anchors_file = NULL;
    char *in = NULL, *anchors = NULL, *out = NULL, err[600];
    size_t len, outlen;
    int opt, rc = 1;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 'o':
            if (!strcmp(optarg, "yaml")) {
                fmt = INJECT_YAML;
            } else if (!strcmp(optarg, "json")) {
                fmt = INJECT_JSON;
            } else {
                fprintf(stderr, "strait-controller inject: -o must be yaml or json\n");
                return 2;
            }
            break;
        case 'i':
            o.proxy_image = optarg;
            break;
        case 'a':
            o.identity_addr = optarg;
            break;
        case 't':
            anchors_file = optarg;
            break;
        case 'h':
            ij_usage(stdout);
            return 0;
        default:
            ij_usage(stderr);
            return 2;
        }
    }
    if (!file || optind != argc) {
        ij_usage(stderr);
        return 2;
    }
    if (anchors_file) {
        if (!(anchors = ij_read_path(anchors_file, 1u << 20, &len, err, sizeof(err)))) {
            fprintf(stderr, "strait-controller inject: --trust-anchors %s\n", err);
            return 1;
        }
        if (!strstr(anchors, "-----BEGIN CERTIFICATE-----")) {
            fprintf(stderr, "strait-controller inject: --trust-anchors %s: no PEM certificate\n",
                    anchors_file);
            goto out;
        }
        o.trust_anchors = anchors;
    } else {
        fprintf(stderr, "strait-controller inject: no --trust-anchors: the sidecars get no "
                        "STRAIT_MESH_TRUST_ANCHORS\n");
    }
    if (!(in = ij_read_path(file, IJ_MAX_INPUT, &len, err, sizeof(err)))) {
        fprintf(stderr, "strait-controller inject: %s\n", err);
        goto out;
    }
    if (inject_documents(in, len, &o, fmt, stderr, &out, &outlen, err, sizeof(err))) {
        fprintf(stderr, "strait-controller inject: %s%s%s\n", strcmp(file, "-") ? file : "stdin",
                ": ", err);
        goto out;
    }
    if (fwrite(out, 1, outlen, stdout) != outlen ||
        (outlen && out[outlen - 1] != '\n' && fputc('\n', stdout) == EOF) || fflush(stdout)) {
        fprintf(stderr, "strait-controller inject: writing stdout: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(in);
    free(anchors);
    free(out);
    return rc;
}
