/*
 * authzbuild: AuthorizationPolicies (model_authz_policy) into snapwire's AUTHZ records.
 *
 * Does: one record per valid policy, its callers the union of its from[] entries as
 * principals (identities as written, serviceAccounts as spiffe://<td>/ns/<ns>/sa/<name>,
 * namespaces, authenticated, unauthenticated), sorted by (kind, value) without duplicates;
 * records sorted by (target namespace, target name, port, "ns/policy"); each policy's
 * Accepted and ResolvedRefs conditions.
 * Does not: decode (authzdecode), enforce (the data plane), write status (the status writer
 * takes the conditions).
 * Invariants: the records pass snapwire's checks for trust domain td (identities in td);
 * a policy whose target Service is missing is still served, so it applies as soon as the
 * Service exists.
 */
#include "authzbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "meshca.h"

static void ab_cond(struct authzbuild_cond *c, const char *type, int ok, const char *reason,
                    const char *msg)
{
    c->type = type;
    c->status = ok ? "True" : "False";
    c->reason = reason;
    snprintf(c->message, sizeof(c->message), "%s", msg);
}

static int ab_principal_cmp(const void *a, const void *b)
{
    const struct snapwire_principal *x = a, *y = b;

    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    return strcmp(x->value, y->value);
}

static int ab_authz_cmp(const void *a, const void *b)
{
    const struct snapwire_authz *x = a, *y = b;
    int c = strcmp(x->ns, y->ns);

    if (!c) c = strcmp(x->name, y->name);
    if (!c) c = (x->port > y->port) - (x->port < y->port);
    if (!c) c = strcmp(x->source, y->source);
    return c;
}

/* How many principals pol can give (before duplicates are dropped). */
static size_t ab_count(const struct model_authz_policy *pol)
{
    size_t n = 0, i;

    for (i = 0; i < pol->n_from; i++) {
        const struct model_authz_source *s = &pol->from[i];
        n += s->n_identities + s->n_service_accounts + s->n_namespaces +
             (size_t)(s->authenticated != 0) + (size_t)(s->unauthenticated != 0);
    }
    return n;
}

static void ab_push(struct authzbuild_result *r, uint8_t kind, const char *value)
{
    r->principals[r->n_principals].kind = kind;
    r->principals[r->n_principals].value = value;
    r->n_principals++;
}

/*
 * Appends pol's principals (sorted, unique) to r. Returns 0, or 1 with why filled when an
 * identity is outside td or a ServiceAccount makes no identity.
 */
static int ab_principals(struct authzbuild_result *r, const struct model_authz_policy *pol,
                         const char *td, char *why, size_t whylen)
{
    size_t first = r->n_principals, i, k, out;
    size_t tl = strlen(td);
    char err[160];

    for (i = 0; i < pol->n_from; i++) {
        const struct model_authz_source *s = &pol->from[i];
        for (k = 0; k < s->n_identities; k++) {
            const char *id = s->identities[k];
            if (strncmp(id, "spiffe://", 9) || strncmp(id + 9, td, tl) || id[9 + tl] != '/') {
                snprintf(why, whylen,
                         "spec.from[%zu].identities[%zu]: \"%.100s\" is not in the trust "
                         "domain %s",
                         i, k, id, td);
                return 1;
            }
            ab_push(r, SNAPWIRE_PRINCIPAL_IDENTITY, id);
        }
        for (k = 0; k < s->n_service_accounts; k++) {
            char *uri = r->uris_[r->n_uris_++]; /* never reused: principals point here */
            if (meshca_identity(td, s->service_accounts[k].ns, s->service_accounts[k].name, uri,
                                sizeof(r->uris_[0]), err, sizeof(err))) {
                snprintf(why, whylen, "spec.from[%zu].serviceAccounts[%zu]: %s", i, k, err);
                return 1;
            }
            ab_push(r, SNAPWIRE_PRINCIPAL_IDENTITY, uri);
        }
        for (k = 0; k < s->n_namespaces; k++)
            ab_push(r, SNAPWIRE_PRINCIPAL_NAMESPACE, s->namespaces[k]);
        if (s->authenticated) ab_push(r, SNAPWIRE_PRINCIPAL_AUTHENTICATED, "");
        if (s->unauthenticated) ab_push(r, SNAPWIRE_PRINCIPAL_UNAUTHENTICATED, "");
    }
    qsort(r->principals + first, r->n_principals - first, sizeof(*r->principals), ab_principal_cmp);
    for (i = first, out = first; i < r->n_principals; i++)
        if (out == first || ab_principal_cmp(&r->principals[out - 1], &r->principals[i]))
            r->principals[out++] = r->principals[i];
    r->n_principals = out;
    return 0;
}

/* Whether svc has port number port. */
static int ab_has_port(const struct model_service *svc, long port)
{
    size_t i;

    for (i = 0; i < svc->n_ports; i++)
        if (svc->ports[i].port == port) return 1;
    return 0;
}

/* Fills st for pol and, when it is valid, appends its record to r. */
static void ab_policy(struct authzbuild_result *r, const struct model_cache *cache,
                      const struct model_authz_policy *pol, const char *td,
                      struct authzbuild_policy *st)
{
    const struct model_service *svc;
    struct snapwire_authz *a;
    char why[sizeof(st->conds[0].message)], id[320], fq[600], q[700];
    size_t first = r->n_principals;

    snprintf(st->ns, sizeof(st->ns), "%s", pol->meta.ns);
    snprintf(st->name, sizeof(st->name), "%s", pol->meta.name);
    snprintf(st->uid, sizeof(st->uid), "%s", pol->meta.uid ? pol->meta.uid : "");
    snprintf(st->resource_version, sizeof(st->resource_version), "%s",
             pol->meta.resource_version ? pol->meta.resource_version : "");
    st->generation = pol->generation;
    if (pol->invalid) {
        /* already logged (object_rejected) by whoever decoded it */
        ab_cond(&st->conds[0], "Accepted", 0, "Invalid", pol->invalid);
        ab_cond(&st->conds[1], "ResolvedRefs", 0, "Invalid", "the policy is not valid");
        r->n_rejected++;
        return;
    }
    if (ab_principals(r, pol, td, why, sizeof(why))) {
        r->n_principals = first;
        log_warn("object_rejected", "file=%s kind=AuthorizationPolicy object=%s reason=%s",
                 model_log_value(fq, sizeof(fq), pol->meta.source),
                 model_object_id(&pol->meta, id, sizeof(id)), log_quote(q, sizeof(q), why));
        ab_cond(&st->conds[0], "Accepted", 0, "Invalid", why);
        ab_cond(&st->conds[1], "ResolvedRefs", 0, "Invalid", "the policy is not valid");
        r->n_rejected++;
        return;
    }
    st->served = 1;
    ab_cond(&st->conds[0], "Accepted", 1, "Accepted", "the policy is valid");
    svc = (const struct model_service *)model_cache_find(cache, MODEL_KIND_SERVICE, pol->meta.ns,
                                                         pol->target);
    if (!svc) {
        snprintf(why, sizeof(why), "Service %s/%s not found: the policy applies once it exists",
                 pol->meta.ns, pol->target);
        ab_cond(&st->conds[1], "ResolvedRefs", 0, "TargetNotFound", why);
    } else if (pol->port && !ab_has_port(svc, pol->port)) {
        snprintf(why, sizeof(why), "Service %s/%s has no port %ld: the policy applies once it has",
                 pol->meta.ns, pol->target, pol->port);
        ab_cond(&st->conds[1], "ResolvedRefs", 0, "PortNotFound", why);
    } else {
        ab_cond(&st->conds[1], "ResolvedRefs", 1, "ResolvedRefs", "the target Service exists");
    }
    a = &r->authz[r->n_authz];
    snprintf(r->sources_[r->n_authz], sizeof(r->sources_[0]), "%s/%s", pol->meta.ns,
             pol->meta.name);
    a->ns = pol->meta.ns;
    a->name = pol->target;
    a->port = (uint16_t)pol->port;
    a->action = pol->action == MODEL_AUTHZ_DENY ? SNAPWIRE_AUTHZ_DENY : SNAPWIRE_AUTHZ_ALLOW;
    a->source = r->sources_[r->n_authz];
    a->first_principal = (uint32_t)first;
    a->principal_count = (uint32_t)(r->n_principals - first);
    r->n_authz++;
}

int authzbuild_build(const struct model_cache *cache, const char *td, struct authzbuild_result *out,
                     char *err, size_t errlen)
{
    const struct model_list *l = &cache->kinds[MODEL_KIND_AUTHZ_POLICY];
    size_t n_pr = 0, i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < l->n; i++)
        n_pr += ab_count((const struct model_authz_policy *)l->items[i]);
    /* calloc(0) may be NULL: ask for at least one of each */
    out->policies = calloc(l->n + 1, sizeof(*out->policies));
    out->authz = calloc(l->n + 1, sizeof(*out->authz));
    out->sources_ = calloc(l->n + 1, sizeof(*out->sources_));
    out->principals = calloc(n_pr + 1, sizeof(*out->principals));
    out->uris_ = calloc(n_pr + 1, sizeof(*out->uris_));
    if (!out->policies || !out->authz || !out->sources_ || !out->principals || !out->uris_) {
        authzbuild_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    out->n_policies = l->n;
    for (i = 0; i < l->n; i++)
        ab_policy(out, cache, (const struct model_authz_policy *)l->items[i], td,
                  &out->policies[i]);
    qsort(out->authz, out->n_authz, sizeof(*out->authz), ab_authz_cmp);
    return 0;
}

void authzbuild_free(struct authzbuild_result *r)
{
    if (!r) return;
    free(r->policies);
    free(r->authz);
    free(r->sources_);
    free(r->principals);
    free(r->uris_);
    memset(r, 0, sizeof(*r));
}
