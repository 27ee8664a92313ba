/*
 * authzdecode: a strait.dev/v1alpha1 AuthorizationPolicy document (kobj) into struct
 * model_authz_policy.
 *
 * Does: the CRD's defaults (action Allow, a serviceAccount's namespace the policy's) and the
 * CRD's rules a file-mode user has no API server to check: required fields, types, the enums
 * (targetRef kind Service, group ""; action Allow / Deny), ranges (port 1..65535), item
 * counts (1..64 sources, at most 64 values per field), name syntax (Service and namespace
 * names DNS-1123 labels, ServiceAccount names DNS-1123 subdomains, identities spiffe:// URIs)
 * and the CEL rule that each from[] entry names some caller.
 * Does not: look at other objects (a missing target Service is a status condition, not a
 * decode error), check identities against the trust domain (authzbuild knows it), or log.
 * Invariants: on success every string is free of control characters and every count is
 * within the CRD's limits; every error names the field path of the offending value.
 */
#include "authzdecode.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "gwdecode.h"
#include "kube_decode.h"

#define AZ_PATH_MAX 128
#define AZ_ID_MAX 2048 /* SPIFFE ID length limit */

int authzdecode_spiffe_id(const char *s)
{
    const char *p = s, *seg;

    if (strlen(s) > AZ_ID_MAX || strncmp(p, "spiffe://", 9) != 0) return 0;
    for (p += 9, seg = p; *p && *p != '/'; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr(".-_", *p))
            return 0;
    if (p == seg || *p != '/') return 0;
    for (seg = ++p;; p++) {
        if (*p == '/' || !*p) {
            size_t n = (size_t)(p - seg);
            if (!n || (n == 1 && seg[0] == '.') || (n == 2 && !strncmp(seg, "..", 2))) return 0;
            if (!*p) return 1;
            seg = p + 1;
        } else if (!isalnum((unsigned char)*p) && !strchr(".-_", *p)) {
            return 0;
        }
    }
}

/* The list of strings under key of src into *out / *n, each checked by ok (what: its
 * syntax, for the message). */
static int az_strings(struct gwdecode_ctx *c, const struct kobj *src, const char *key,
                      const char *at, int (*ok)(const char *), const char *what, const char ***out,
                      size_t *n)
{
    const struct kobj *l;
    char p[AZ_PATH_MAX + 64], msg[160];
    size_t i;

    if (gwdecode_list(c, src, key, at, 0, AUTHZDECODE_MAX_ITEMS, &l)) return -1;
    if (!l) return 0;
    if (!l->n) {
        snprintf(msg, sizeof(msg), "%s must have at least 1 item(s)", key);
        return gwdecode_fail(c, at, msg);
    }
    if (!(*out = gwdecode_alloc(c, l->n, sizeof(**out)))) return -1;
    *n = l->n;
    for (i = 0; i < l->n; i++) {
        snprintf(p, sizeof(p), "%s.%s[%zu]", at, key, i);
        if (gwdecode_str_node(c, l->items[i], p, "value", 1, 1, AZ_ID_MAX, &(*out)[i])) return -1;
        if (!ok((*out)[i])) {
            snprintf(msg, sizeof(msg), "\"%.80s\" is not %s", (*out)[i], what);
            return gwdecode_fail(c, p, msg);
        }
    }
    return 0;
}

static int az_label(const char *s)
{
    return kube_decode_dns_label(s, strlen(s));
}

/* A boolean field into *out (0 when absent). */
static int az_bool(struct gwdecode_ctx *c, const struct kobj *src, const char *key, const char *at,
                   int *out)
{
    const struct kobj *n = kobj_get(src, key);
    char msg[64];
    int b;

    *out = 0;
    if (!n || (n->type == KOBJ_SCALAR && !kobj_text(n))) return 0;
    if (n->type != KOBJ_SCALAR || n->style == KOBJ_QUOTED || (b = kobj_bool(n)) < 0) {
        snprintf(msg, sizeof(msg), "%s must be a boolean", key);
        return gwdecode_fail(c, at, msg);
    }
    *out = b;
    return 0;
}

static int az_service_accounts(struct gwdecode_ctx *c, const struct kobj *src, const char *at,
                               struct model_authz_policy *pol, struct model_authz_source *s)
{
    const struct kobj *l;
    char p[AZ_PATH_MAX + 64], msg[160];
    size_t i;

    if (gwdecode_list(c, src, "serviceAccounts", at, 0, AUTHZDECODE_MAX_ITEMS, &l)) return -1;
    if (!l) return 0;
    if (!l->n) return gwdecode_fail(c, at, "serviceAccounts must have at least 1 item(s)");
    if (!(s->service_accounts = gwdecode_alloc(c, l->n, sizeof(*s->service_accounts)))) return -1;
    s->n_service_accounts = l->n;
    for (i = 0; i < l->n; i++) {
        struct model_authz_sa *sa = &s->service_accounts[i];
        snprintf(p, sizeof(p), "%s.serviceAccounts[%zu]", at, i);
        if (!l->items[i] || l->items[i]->type != KOBJ_MAP)
            return gwdecode_fail(c, p, "must be an object");
        if (gwdecode_str(c, l->items[i], "name", p, 1, 1, 253, &sa->name) ||
            gwdecode_str(c, l->items[i], "namespace", p, 0, 0, 63, &sa->ns))
            return -1;
        if (!kube_decode_dns_name(sa->name)) {
            snprintf(msg, sizeof(msg), "name \"%.80s\" is not a DNS-1123 subdomain", sa->name);
            return gwdecode_fail(c, p, msg);
        }
        if (!*sa->ns) sa->ns = pol->meta.ns;
        if (!az_label(sa->ns)) {
            snprintf(msg, sizeof(msg), "namespace \"%.80s\" is not a DNS-1123 label", sa->ns);
            return gwdecode_fail(c, p, msg);
        }
    }
    return 0;
}

static int az_source(struct gwdecode_ctx *c, const struct kobj *src, const char *at,
                     struct model_authz_policy *pol, struct model_authz_source *s)
{
    if (!src || src->type != KOBJ_MAP) return gwdecode_fail(c, at, "must be an object");
    if (az_strings(c, src, "identities", at, authzdecode_spiffe_id, "a spiffe:// URI",
                   &s->identities, &s->n_identities) ||
        az_service_accounts(c, src, at, pol, s) ||
        az_strings(c, src, "namespaces", at, az_label, "a namespace name (DNS-1123 label)",
                   &s->namespaces, &s->n_namespaces) ||
        az_bool(c, src, "authenticated", at, &s->authenticated) ||
        az_bool(c, src, "unauthenticated", at, &s->unauthenticated))
        return -1;
    if (!s->n_identities && !s->n_service_accounts && !s->n_namespaces && !s->authenticated &&
        !s->unauthenticated)
        return gwdecode_fail(c, at,
                             "must set identities, serviceAccounts, namespaces, authenticated: "
                             "true or unauthenticated: true");
    return 0;
}

int authzdecode_policy(const struct kobj *doc, struct model_authz_policy *pol, char *err,
                       size_t errlen)
{
    static const char *const actions[] = {"Allow", "Deny"};
    struct gwdecode_ctx c = {&pol->meta, err, errlen, 0};
    const struct kobj *spec = kobj_get(doc, "spec"), *ref, *from, *gen;
    const char *kind, *group;
    char at[AZ_PATH_MAX], msg[160];
    int action;
    size_t i;
    long g;

    err[0] = '\0';
    gen = kobj_get(doc, "metadata", "generation");
    if (gen && kobj_text(gen)) {
        if (kobj_int(gen, &g) || g < 0)
            return gwdecode_fail(&c, "metadata", "generation must be a non-negative integer");
        pol->generation = g;
    }
    if (!spec || (spec->type == KOBJ_SCALAR && !kobj_text(spec))) {
        snprintf(err, errlen, "spec is required");
        return -1;
    }
    if (gwdecode_map(&c, spec, "spec")) return -1;
    ref = kobj_get(spec, "targetRef");
    if (!ref || (ref->type == KOBJ_SCALAR && !kobj_text(ref)))
        return gwdecode_fail(&c, "spec", "targetRef is required");
    if (gwdecode_map(&c, ref, "spec.targetRef") ||
        gwdecode_str(&c, ref, "kind", "spec.targetRef", 1, 1, 63, &kind) ||
        gwdecode_str(&c, ref, "group", "spec.targetRef", 0, 0, 253, &group) ||
        gwdecode_str(&c, ref, "name", "spec.targetRef", 1, 1, 63, &pol->target))
        return -1;
    if (strcmp(kind, "Service") != 0) {
        snprintf(msg, sizeof(msg), "kind \"%.60s\" is not one of \"Service\"", kind);
        return gwdecode_fail(&c, "spec.targetRef", msg);
    }
    if (*group) {
        snprintf(msg, sizeof(msg), "group \"%.60s\" is not \"\" (the core API group)", group);
        return gwdecode_fail(&c, "spec.targetRef", msg);
    }
    if (!az_label(pol->target)) {
        snprintf(msg, sizeof(msg), "name \"%.60s\" is not a Service name (DNS-1123 label)",
                 pol->target);
        return gwdecode_fail(&c, "spec.targetRef", msg);
    }
    if (gwdecode_int(&c, spec, "port", "spec", 0, 1, 65535, 0, &pol->port) ||
        gwdecode_enum(&c, spec, "action", "spec", actions, 2, MODEL_AUTHZ_ALLOW, &action) ||
        gwdecode_list(&c, spec, "from", "spec", 1, AUTHZDECODE_MAX_SOURCES, &from))
        return -1;
    pol->action = action == 2 ? MODEL_AUTHZ_DENY : MODEL_AUTHZ_ALLOW;
    if (!(pol->from = gwdecode_alloc(&c, from->n, sizeof(*pol->from)))) return -1;
    pol->n_from = from->n;
    for (i = 0; i < from->n; i++) {
        snprintf(at, sizeof(at), "spec.from[%zu]", i);
        if (az_source(&c, from->items[i], at, pol, &pol->from[i])) return -1;
    }
    return 0;
}
