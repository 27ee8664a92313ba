/*
 * gwstatus: the status of strait.dev/v1alpha1 Gateways, written by the leader.
 *
 * Does: turns what a build computed for each Gateway (snapbuild_gateway) into the status the
 * CRD's schema allows (gwstatus_from_build), stamps lastTransitionTime against the status the
 * object has (gwstatus_stamp: kept while a condition's type and status stay the same), and,
 * while this replica leads, makes each Gateway's status equal to it with a JSON merge patch
 * on .../gateways/NAME/status. A Gateway's status is read with one GET the first time (and
 * when its uid changes: another object of that name), then known from each write's answer;
 * a write is only sent when the stamped result differs from it. The requests, rate limit,
 * in-flight cap and per-Gateway backoff are stwriter's; this module supplies what an entry
 * holds (the build's status, the object's, its uid), the patch and what an answer means.
 * Does not: compute conditions (snapbuild), decide leadership (leader.c), touch a Gateway's
 * spec or metadata, or clear the status of Gateways that left the cache.
 * Invariants: nothing is sent while not leading; at most one request per Gateway in flight;
 * only fields the CRD's status schema has are written.
 */
#include "gwstatus.h"

#include <ctype.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "jsongen.h"
#include "kobj.h"
#include "log.h"
#include "snapbuild.h"
#include "stwriter.h"

#define GWSTATUS_MAGIC 0x53544757u /* "STGW" */

/* ---- pure part ---- */

static void gws_cond_free(struct gwstatus_cond *c)
{
    free(c->type);
    free(c->status);
    free(c->reason);
    free(c->message);
    free(c->last_transition);
    memset(c, 0, sizeof(*c));
}

static void gws_conds_free(struct gwstatus_cond *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        gws_cond_free(&v[i]);
    free(v);
}

void gwstatus_clear(struct gwstatus *s)
{
    size_t i;

    gws_conds_free(s->conds, s->n_conds);
    for (i = 0; i < s->n_listeners; i++) {
        free(s->listeners[i].name);
        gws_conds_free(s->listeners[i].conds, s->listeners[i].n_conds);
    }
    free(s->listeners);
    memset(s, 0, sizeof(*s));
    s->observed_generation = -1;
}

/* strdup of at most max bytes of s (NULL: ""), cut at a UTF-8 character boundary. */
static char *gws_dup_cut(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    char *d;

    if (n > max) {
        n = max;
        while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    if (!(d = malloc(n + 1))) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* The CRD's condition reason pattern: ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, <= 1024. */
static int gws_reason_ok(const char *r)
{
    size_t i, n = r ? strlen(r) : 0;

    if (!n || n > 1024 || !isalpha((unsigned char)r[0])) return 0;
    for (i = 1; i < n; i++)
        if (!isalnum((unsigned char)r[i]) && r[i] != '_' && r[i] != ',' && r[i] != ':') return 0;
    return isalnum((unsigned char)r[n - 1]) || r[n - 1] == '_';
}

/* One condition from a build's, sanitized to the schema. */
static int gws_cond_from(const struct snapbuild_condition *in, int64_t gen,
                         struct gwstatus_cond *out)
{
    const char *status = in->status && (!strcmp(in->status, "True") || !strcmp(in->status, "False"))
                             ? in->status
                             : "Unknown";

    memset(out, 0, sizeof(*out));
    out->observed_generation = gen;
    out->type = gws_dup_cut(in->type, 316);
    out->status = strdup(status);
    out->reason = strdup(gws_reason_ok(in->reason) ? in->reason : "Unknown");
    out->message = gws_dup_cut(in->message, GWSTATUS_MAX_MESSAGE);
    out->last_transition = strdup("");
    if (!out->type || !out->status || !out->reason || !out->message || !out->last_transition) {
        gws_cond_free(out);
        return -1;
    }
    return 0;
}

/* The set conditions of in[0..n) into *out / *n_out. */
static int gws_conds_from(const struct snapbuild_condition *in, size_t n, int64_t gen,
                          struct gwstatus_cond **out, size_t *n_out)
{
    size_t i;

    *out = NULL;
    *n_out = 0;
    if (!n) return 0;
    if (!(*out = calloc(n, sizeof(**out)))) return -1;
    for (i = 0; i < n; i++) {
        if (!in[i].type || !*in[i].type) continue;
        if (gws_cond_from(&in[i], gen, &(*out)[*n_out])) return -1;
        (*n_out)++;
    }
    return 0;
}

int gwstatus_from_build(const struct snapbuild_gateway *g, struct gwstatus *out)
{
    int64_t gen = g->generation > 0 ? g->generation : 0;
    size_t i, n = g->n_listeners > 64 ? 64 : g->n_listeners;

    memset(out, 0, sizeof(*out));
    out->observed_generation = gen;
    if (gws_conds_from(g->conds, SNAPBUILD_GW_CONDS, gen, &out->conds, &out->n_conds)) goto oom;
    if (n && !(out->listeners = calloc(n, sizeof(*out->listeners)))) goto oom;
    for (i = 0; i < n; i++) {
        struct gwstatus_listener *l = &out->listeners[out->n_listeners];
        if (!g->listeners[i].name || !*g->listeners[i].name) continue;
        out->n_listeners++;
        l->attached_routes =
            g->listeners[i].attached_routes > 64 ? 64 : g->listeners[i].attached_routes;
        if (!(l->name = strdup(g->listeners[i].name))) goto oom;
        if (gws_conds_from(g->listeners[i].conds,
                           sizeof(g->listeners[i].conds) / sizeof(g->listeners[i].conds[0]), gen,
                           &l->conds, &l->n_conds))
            goto oom;
    }
    return 0;
oom:
    gwstatus_clear(out);
    return -1;
}

static const struct gwstatus_cond *gws_find_cond(const struct gwstatus_cond *v, size_t n,
                                                 const char *type)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (v[i].type && !strcmp(v[i].type, type)) return &v[i];
    return NULL;
}

/* Copies want's conditions into *out, stamped from prev[0..n_prev). */
static int gws_stamp_conds(const struct gwstatus_cond *want, size_t n,
                           const struct gwstatus_cond *prev, size_t n_prev, const char *now,
                           struct gwstatus_cond **out, size_t *n_out)
{
    const struct gwstatus_cond *p;
    size_t i;

    *out = NULL;
    *n_out = 0;
    if (!n) return 0;
    if (!(*out = calloc(n, sizeof(**out)))) return -1;
    for (i = 0; i < n; i++) {
        struct gwstatus_cond *c = &(*out)[i];
        p = gws_find_cond(prev, n_prev, want[i].type);
        c->observed_generation = want[i].observed_generation;
        c->type = strdup(want[i].type);
        c->status = strdup(want[i].status);
        c->reason = strdup(want[i].reason);
        c->message = strdup(want[i].message);
        c->last_transition = strdup(p && p->status && !strcmp(p->status, want[i].status) &&
                                            p->last_transition && *p->last_transition
                                        ? p->last_transition
                                        : now);
        (*n_out)++;
        if (!c->type || !c->status || !c->reason || !c->message || !c->last_transition) return -1;
    }
    return 0;
}

int gwstatus_stamp(const struct gwstatus *want, const struct gwstatus *prev, const char *now,
                   struct gwstatus *out)
{
    static const struct gwstatus none = {-1, 0, NULL, 0, NULL, 0};
    const struct gwstatus_listener *pl;
    size_t i, j;

    if (!prev) prev = &none;
    memset(out, 0, sizeof(*out));
    out->observed_generation = want->observed_generation;
    out->conds_only = want->conds_only;
    if (gws_stamp_conds(want->conds, want->n_conds, prev->conds, prev->n_conds, now, &out->conds,
                        &out->n_conds))
        goto oom;
    if (want->n_listeners && !(out->listeners = calloc(want->n_listeners, sizeof(*out->listeners))))
        goto oom;
    for (i = 0; i < want->n_listeners; i++) {
        const struct gwstatus_listener *wl = &want->listeners[i];
        struct gwstatus_listener *l = &out->listeners[i];
        out->n_listeners++;
        for (pl = NULL, j = 0; j < prev->n_listeners && !pl; j++)
            if (prev->listeners[j].name && !strcmp(prev->listeners[j].name, wl->name))
                pl = &prev->listeners[j];
        l->attached_routes = wl->attached_routes;
        if (!(l->name = strdup(wl->name))) goto oom;
        if (gws_stamp_conds(wl->conds, wl->n_conds, pl ? pl->conds : NULL, pl ? pl->n_conds : 0,
                            now, &l->conds, &l->n_conds))
            goto oom;
    }
    return 0;
oom:
    gwstatus_clear(out);
    return -1;
}

static int gws_streq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static int gws_conds_equal(const struct gwstatus_cond *a, size_t na, const struct gwstatus_cond *b,
                           size_t nb)
{
    size_t i;

    if (na != nb) return 0;
    for (i = 0; i < na; i++)
        if (!gws_streq(a[i].type, b[i].type) || !gws_streq(a[i].status, b[i].status) ||
            !gws_streq(a[i].reason, b[i].reason) || !gws_streq(a[i].message, b[i].message) ||
            a[i].observed_generation != b[i].observed_generation ||
            !gws_streq(a[i].last_transition, b[i].last_transition))
            return 0;
    return 1;
}

int gwstatus_equal(const struct gwstatus *a, const struct gwstatus *b)
{
    size_t i;

    if (a->observed_generation != b->observed_generation || a->n_listeners != b->n_listeners ||
        !gws_conds_equal(a->conds, a->n_conds, b->conds, b->n_conds))
        return 0;
    for (i = 0; i < a->n_listeners; i++)
        if (!gws_streq(a->listeners[i].name, b->listeners[i].name) ||
            a->listeners[i].attached_routes != b->listeners[i].attached_routes ||
            !gws_conds_equal(a->listeners[i].conds, a->listeners[i].n_conds, b->listeners[i].conds,
                             b->listeners[i].n_conds))
            return 0;
    return 1;
}

/* An int64 scalar; -1 when absent or not a non-negative integer. */
static int64_t gws_int(const struct kobj *o)
{
    long v;

    return o && o->type == KOBJ_SCALAR && !kobj_int(o, &v) && v >= 0 ? (int64_t)v : -1;
}

static char *gws_text(const struct kobj *o, const char *key)
{
    const char *v = kobj_str(o, key);

    return strdup(v ? v : "");
}

static int gws_read_conds(const struct kobj *seq, struct gwstatus_cond **out, size_t *n_out)
{
    size_t i;

    *out = NULL;
    *n_out = 0;
    if (!seq || seq->type != KOBJ_SEQ || !seq->n) return 0;
    if (!(*out = calloc(seq->n, sizeof(**out)))) return -1;
    for (i = 0; i < seq->n; i++) {
        const struct kobj *c = seq->items[i];
        struct gwstatus_cond *d = &(*out)[*n_out];
        if (!c || c->type != KOBJ_MAP) continue;
        (*n_out)++;
        d->type = gws_text(c, "type");
        d->status = gws_text(c, "status");
        d->reason = gws_text(c, "reason");
        d->message = gws_text(c, "message");
        d->last_transition = gws_text(c, "lastTransitionTime");
        d->observed_generation = gws_int(kobj_get(c, "observedGeneration"));
        if (!d->type || !d->status || !d->reason || !d->message || !d->last_transition) return -1;
    }
    return 0;
}

int gwstatus_from_object(const char *body, size_t len, struct gwstatus *out, char *uid,
                         size_t uidlen, char *err, size_t errlen)
{
    struct kobj_docs docs = {0};
    const struct kobj *st, *ls;
    const char *u;
    size_t i;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    out->observed_generation = -1;
    if (uidlen) uid[0] = '\0';
    if (stwriter_parse_object(body, len, &docs, err, errlen)) goto out;
    if ((u = kobj_str(docs.docs[0], "metadata", "uid")) && uidlen) snprintf(uid, uidlen, "%s", u);
    st = kobj_get(docs.docs[0], "status");
    rc = 0;
    if (!st || st->type != KOBJ_MAP) goto out;
    rc = -1;
    out->observed_generation = gws_int(kobj_get(st, "observedGeneration"));
    if (gws_read_conds(kobj_get(st, "conditions"), &out->conds, &out->n_conds)) goto oom;
    ls = kobj_get(st, "listeners");
    if (ls && ls->type == KOBJ_SEQ && ls->n) {
        if (!(out->listeners = calloc(ls->n, sizeof(*out->listeners)))) goto oom;
        for (i = 0; i < ls->n; i++) {
            const struct kobj *l = ls->items[i];
            struct gwstatus_listener *d = &out->listeners[out->n_listeners];
            if (!l || l->type != KOBJ_MAP) continue;
            out->n_listeners++;
            if (!(d->name = gws_text(l, "name"))) goto oom;
            d->attached_routes = (long)gws_int(kobj_get(l, "attachedRoutes"));
            if (gws_read_conds(kobj_get(l, "conditions"), &d->conds, &d->n_conds)) goto oom;
        }
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
    gwstatus_clear(out);
out:
    kobj_docs_free(&docs);
    return rc;
}

static void gws_gen_conds(yajl_gen g, const struct gwstatus_cond *v, size_t n)
{
    size_t i;

    jsongen_str(g, "conditions");
    yajl_gen_array_open(g);
    for (i = 0; i < n; i++) {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "type", v[i].type);
        jsongen_kv_str(g, "status", v[i].status);
        if (v[i].observed_generation >= 0) {
            jsongen_str(g, "observedGeneration");
            yajl_gen_integer(g, (long long)v[i].observed_generation);
        }
        jsongen_kv_str(g, "lastTransitionTime", v[i].last_transition);
        jsongen_kv_str(g, "reason", v[i].reason);
        jsongen_kv_str(g, "message", v[i].message);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

char *gwstatus_patch_body(const struct gwstatus *s)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    size_t i;

    if (!g) return NULL;
    yajl_gen_map_open(g);
    jsongen_str(g, "status");
    yajl_gen_map_open(g);
    if (s->observed_generation >= 0) {
        jsongen_str(g, "observedGeneration");
        yajl_gen_integer(g, (long long)s->observed_generation);
    }
    gws_gen_conds(g, s->conds, s->n_conds);
    if (s->conds_only) goto close;
    jsongen_str(g, "listeners");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_listeners; i++) {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", s->listeners[i].name);
        jsongen_str(g, "attachedRoutes");
        yajl_gen_integer(g, s->listeners[i].attached_routes);
        gws_gen_conds(g, s->listeners[i].conds, s->listeners[i].n_conds);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
close:
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    return stwriter_body_take(g);
}

const char *gwstatus_conds_text(const struct gwstatus *s, char *buf, size_t n)
{
    size_t i, w = 0;
    int k;

    if (!n) return buf;
    snprintf(buf, n, "-");
    for (i = 0; i < s->n_conds && w < n; i++) {
        k = snprintf(buf + w, n - w, "%s%s:%s%s%s", i ? "," : "", s->conds[i].type,
                     s->conds[i].status, strcmp(s->conds[i].status, "True") ? "/" : "",
                     strcmp(s->conds[i].status, "True") ? s->conds[i].reason : "");
        if (k < 0) break;
        w += (size_t)k;
    }
    return buf;
}

/* ---- the writer ---- */

struct gws_entry {
    struct stwriter_entry base;
    char *uid;                /* the build's ("" when unknown); NULL until the first sync */
    struct gwstatus want;     /* what the last build computed (no lastTransitionTime) */
    struct gwstatus *current; /* the object's status as last read or written; NULL: unknown */
    int clean;                /* current is known to be want (stamped): nothing to do */
};

struct gwstatus_writer {
    unsigned magic;
    struct stwriter w;
};

static struct stwriter_counts gws_counts, gws_authz_counts;
static const struct stwriter_ops gws_authz_ops;
static int gws_enabled;
static const struct gwstatus_writer *gws_owner; /* for the pending gauge */

static struct gws_entry *gws_entry_of(struct stwriter_entry *e)
{
    return container_of(e, struct gws_entry, base);
}

static void gws_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void gws_target_key(const void *t, const char **ns, const char **name)
{
    const struct snapbuild_gateway *g = t;

    *ns = g->ns;
    *name = g->name;
}

static void gws_forget(struct stwriter_entry *base)
{
    struct gws_entry *e = gws_entry_of(base);

    if (e->current) {
        gwstatus_clear(e->current);
        free(e->current);
    }
    e->current = NULL;
    e->clean = 0;
}

static void gws_clear(struct stwriter_entry *base)
{
    struct gws_entry *e = gws_entry_of(base);

    gwstatus_clear(&e->want);
    free(e->uid);
    e->uid = NULL;
}

/* Gives e the build's status for g (and its uid). Returns 0 or -1 (OOM; e unchanged). */
static int gws_update(struct stwriter_entry *base, const void *t, int fresh)
{
    const struct snapbuild_gateway *g = t;
    struct gws_entry *e = gws_entry_of(base);
    struct gwstatus want;
    const char *uid = g->uid ? g->uid : "";
    char *nu;

    (void)fresh;
    if (gwstatus_from_build(g, &want)) return -1;
    want.conds_only = base->w->ops == &gws_authz_ops;
    if (!e->uid || strcmp(uid, e->uid)) {
        if (!(nu = strdup(uid))) {
            gwstatus_clear(&want);
            return -1;
        }
        /* another object of the same name (deleted and created again): read it afresh */
        if (e->uid && *e->uid) stwriter_entry_reset(base);
        free(e->uid);
        e->uid = nu;
    }
    gwstatus_clear(&e->want);
    e->want = want;
    e->clean = 0;
    return 0;
}

static int gws_done(struct stwriter_entry *base)
{
    return gws_entry_of(base)->clean;
}

/*
 * want stamped against current into *desired; returns 1 when that differs from current (a
 * write is needed), 0 when it is the same, -1 on allocation failure.
 */
static int gws_desired(const struct gws_entry *e, struct gwstatus *desired)
{
    char now[32];
    int same;

    gws_now(now, sizeof(now));
    if (gwstatus_stamp(&e->want, e->current, now, desired)) return -1;
    same = e->current && gwstatus_equal(desired, e->current);
    return !same;
}

/* A GET while its status is unknown, else the patch when the stamped build's differs. */
static enum stwriter_op gws_need(struct stwriter_entry *base, double now, double *later,
                                 char **body)
{
    struct gws_entry *e = gws_entry_of(base);
    struct gwstatus desired;
    int diff;

    if (!e->current) return STWRITER_GET;
    if ((diff = gws_desired(e, &desired)) < 0) {
        *later = now + STWRITER_BACKOFF_MIN;
        return STWRITER_NONE;
    }
    if (diff) *body = gwstatus_patch_body(&desired);
    gwstatus_clear(&desired);
    if (!diff) {
        e->clean = 1;
        return STWRITER_NONE;
    }
    if (!*body) {
        *later = now + STWRITER_BACKOFF_MIN;
        return STWRITER_NONE;
    }
    return STWRITER_PATCH;
}

static int gws_answer(struct stwriter_entry *base, enum stwriter_op op, const char *body,
                      size_t len, char *err, size_t errlen)
{
    struct gws_entry *e = gws_entry_of(base);
    struct gwstatus got, again;
    char uid[128], conds[300];
    int diff;

    if (gwstatus_from_object(body, len, &got, uid, sizeof(uid), err, errlen)) return -1;
    gws_forget(base);
    if ((e->current = malloc(sizeof(*e->current))))
        *e->current = got;
    else
        gwstatus_clear(&got);
    if (op != STWRITER_PATCH || !e->current) return 0;
    if (e->want.conds_only)
        log_info("authz_status_updated", "object=%s/%s observed_generation=%lld conditions=%s",
                 base->ns, base->name, (long long)e->current->observed_generation,
                 gwstatus_conds_text(e->current, conds, sizeof(conds)));
    else
        log_info("gateway_status_updated",
                 "object=%s/%s observed_generation=%lld conditions=%s listeners=%zu", base->ns,
                 base->name, (long long)e->current->observed_generation,
                 gwstatus_conds_text(e->current, conds, sizeof(conds)), e->current->n_listeners);
    if ((diff = gws_desired(e, &again)) < 0) return 0;
    gwstatus_clear(&again);
    if (!diff) return 0;
    log_warn("status_not_applied", "%sobject=%s/%s", base->w->ops->log_prefix, base->ns,
             base->name);
    return 1;
}

/* The same entries and decisions for both kinds; only the resource differs. */
#define GWS_OPS(res, prefix)                                                                       \
    {                                                                                              \
        .api = "/apis/strait.dev/v1alpha1", .resource = res, .log_prefix = prefix,                 \
        .entry_size = sizeof(struct gws_entry), .target_key = gws_target_key,                      \
        .update = gws_update, .done = gws_done, .need = gws_need, .answer = gws_answer,            \
        .forget = gws_forget, .clear = gws_clear,                                                  \
    }
static const struct stwriter_ops gws_ops = GWS_OPS("gateways", "kind=Gateway ");
static const struct stwriter_ops gws_authz_ops =
    GWS_OPS("authorizationpolicies", "kind=AuthorizationPolicy ");

static struct gwstatus_writer *gws_writer_new(const struct stwriter_ops *ops,
                                              struct stwriter_counts *counts, struct ev_loop *loop,
                                              struct kube_client *client, double qps,
                                              unsigned burst)
{
    struct gwstatus_writer *s = calloc(1, sizeof(*s));

    if (!s) return NULL;
    s->magic = GWSTATUS_MAGIC;
    stwriter_init(&s->w, ops, counts, loop, client, qps, burst);
    return s;
}

struct gwstatus_writer *gwstatus_writer_new_authz(struct ev_loop *loop, struct kube_client *client,
                                                  double qps, unsigned burst)
{
    return gws_writer_new(&gws_authz_ops, &gws_authz_counts, loop, client, qps, burst);
}

struct gwstatus_writer *gwstatus_writer_new(struct ev_loop *loop, struct kube_client *client,
                                            double qps, unsigned burst)
{
    struct gwstatus_writer *s = gws_writer_new(&gws_ops, &gws_counts, loop, client, qps, burst);

    if (!s) return NULL;
    gws_enabled = 1;
    gws_owner = s;
    return s;
}

int gwstatus_writer_sync(struct gwstatus_writer *s, const struct snapbuild_gateway *g, size_t n)
{
    if (s->magic != GWSTATUS_MAGIC) abort();
    return stwriter_sync(&s->w, g, n, sizeof(*g));
}

void gwstatus_writer_set_leader(struct gwstatus_writer *s, int leading)
{
    if (s->magic != GWSTATUS_MAGIC) abort();
    stwriter_set_leader(&s->w, leading);
}

void gwstatus_writer_free(struct gwstatus_writer *s)
{
    if (!s) return;
    if (s->magic != GWSTATUS_MAGIC) abort();
    stwriter_fini(&s->w);
    if (gws_owner == s) gws_owner = NULL;
    s->magic = 0;
    free(s);
}

void gwstatus_metrics(struct gwstatus_metrics *out)
{
    size_t i;

    memset(out, 0, sizeof(*out));
    out->enabled = gws_enabled;
    out->writes = gws_counts.writes;
    out->write_errors = gws_counts.write_errors;
    out->reads = gws_counts.reads;
    for (i = 0; gws_owner && gws_owner->w.leading && i < gws_owner->w.n; i++)
        if (!gws_entry_of(gws_owner->w.e[i])->clean) out->pending++;
}
