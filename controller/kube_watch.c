/*
 * kube_watch: the reflector. One per kind; list, then watch, forever.
 *
 * Does: paged LIST (limit, continue; a 410 on an expired continue token restarts the list
 * from the first page), then WATCH from the list's resourceVersion with allowWatchBookmarks
 * and a timeoutSeconds drawn from [T, 2T]; every event (bookmarks too) advances the
 * resourceVersion the next watch resumes from. A watch that ends (the server's timeout, a
 * cut connection) is resumed from there; 410 Gone, as a status or as an ERROR event, means
 * the history is gone and the kind is listed again. Errors back off exponentially with
 * jitter (KUBE_WATCH_BACKOFF_MIN doubling to _MAX, reset by a healthy watch: a 2xx that
 * delivered an event or lasted a second); an answer with Retry-After (a 429) waits at least
 * that long. Events are
 * split into lines, parsed (yajl through kobj) and decoded (kube_decode) into the shared
 * cache; an object that fails validation is logged (object_rejected) and removed, as file
 * mode would drop it (an invalid Gateway is logged the same way but kept, reduced to its
 * identity and reason, so that its status says why it is not served). A custom resource (Gateway)
 * whose CRD is not installed answers 404: the kind is then an empty, synced list (logged once,
 * gateway_crd_missing) and is listed again every crd_recheck seconds until the CRD is there. Does
 * not: decide readiness or build snapshots (its callbacks tell kube_source), retry a failed list
 * page from the start (it retries that page, keeping the pages already read), or interpret
 * resourceVersions (opaque strings, only passed back). Invariants: no event is lost or applied
 * twice across restarts: a watch resumes strictly after the last event applied (a partial line of a
 * cut stream was not applied, so it comes again); a relist builds the complete new content aside
 * (staging) and replaces the kind's objects in one step, so objects deleted while no watch was open
 * disappear and readers never see half a list. At most one request is in flight per reflector; a
 * timer or a request, never both.
 */
#include "kube_watch.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerof.h"
#include "health.h"
#include "kobj.h"
#include "kube_client.h"
#include "kube_decode.h"
#include "log.h"

#define KW_MAGIC 0x4b575443u /* "KWTC" */
#define KW_HEALTHY_SECONDS 1.0
#define KW_TIMEOUT_MARGIN 30.0 /* a watch request's own timeout beyond timeoutSeconds */
#define KW_SOURCE "api"

struct kw_kind {
    enum model_kind kind;
    const char *api_version;
    const char *prefix;   /* group/version path */
    const char *resource; /* plural */
    int namespaced;
    const char *field_selector; /* escaped, or NULL */
    /*
     * A custom resource: the CRD's name, and the events logged when the API server answers
     * 404 for the collection (the CRD is not installed) and when it is served again. NULL
     * for built-in kinds.
     */
    const char *crd, *crd_missing_event, *crd_found_event;
};

static const struct kw_kind kw_kinds[] = {
    {MODEL_KIND_INGRESS_CLASS, "networking.k8s.io/v1", "/apis/networking.k8s.io/v1",
     "ingressclasses", 0, NULL, NULL, NULL, NULL},
    {MODEL_KIND_INGRESS, "networking.k8s.io/v1", "/apis/networking.k8s.io/v1", "ingresses", 1, NULL,
     NULL, NULL, NULL},
    {MODEL_KIND_SERVICE, "v1", "/api/v1", "services", 1, NULL, NULL, NULL, NULL},
    {MODEL_KIND_ENDPOINT_SLICE, "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1",
     "endpointslices", 1, NULL, NULL, NULL, NULL},
    /*
     * TLS Secrets and CA bundles (any type with a ca.crt, mostly Opaque) are wanted, so the
     * list cannot ask for one type; it leaves out the two kinds that are numerous and never
     * hold either: type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token
     */
    {MODEL_KIND_SECRET, "v1", "/api/v1", "secrets", 1,
     "type%21%3Dhelm.sh%2Frelease.v1%2Ctype%21%3Dkubernetes.io%2Fservice-account-token", NULL, NULL,
     NULL},
    /* --mesh only (kube_source): who the endpoints' pods run as and whether they are meshed */
    {MODEL_KIND_POD, "v1", "/api/v1", "pods", 1, NULL, NULL, NULL, NULL},
    /* our CRD (crds/strait.dev_gateways.yaml); a cluster without it has no Gateways */
    {MODEL_KIND_GATEWAY, "strait.dev/v1alpha1", "/apis/strait.dev/v1alpha1", "gateways", 1, NULL,
     "gateways.strait.dev", "gateway_crd_missing", "gateway_crd_found"},
    /* --mesh only (kube_source): crds/strait.dev_authorizationpolicies.yaml */
    {MODEL_KIND_AUTHZ_POLICY, "strait.dev/v1alpha1", "/apis/strait.dev/v1alpha1",
     "authorizationpolicies", 1, NULL, "authorizationpolicies.strait.dev", "authz_crd_missing",
     "authz_crd_found"},
};

/* Identities ("ns/name") of objects the API has but validation refused. */
struct kw_names {
    char **v;   /* identities: "ns/name" or "name" */
    char **why; /* the reason each one was rejected, same index */
    char **uid; /* its metadata.uid ("" when absent), same index */
    size_t n, cap;
};

enum kw_next { KW_NEXT_LIST, KW_NEXT_WATCH };

struct kube_watch {
    unsigned magic;
    struct ev_loop *loop;
    struct kube_client *client;
    struct model_cache *cache;
    const struct kw_kind *k;
    const char *name; /* the kind, for logs */
    struct kube_watch_callbacks cb;
    void *arg;
    char base[320]; /* collection path */
    int watch_timeout;
    unsigned page_limit;
    double crd_recheck; /* seconds between lists while the CRD is missing */
    int crd_missing;    /* the last list answered 404: the kind is served as empty */

    struct kube_request *req; /* the one request in flight */
    ev_timer retry;           /* or the one timer armed */
    enum kw_next next;

    /* list */
    struct model_cache staging;
    struct kw_names staging_rejected;
    char *cont; /* continue token for the next page; NULL on the first */
    unsigned pages;
    ev_tstamp list_started;
    int synced;
    int lists; /* completed lists */

    /* watch */
    char *rv; /* last resourceVersion seen (list or event) */
    char *line;
    size_t line_len, line_cap;
    unsigned watch_events; /* events of the current watch, ERROR excluded */
    ev_tstamp watch_started;
    int watch_open;   /* its 2xx head came */
    int gone;         /* an ERROR event with code 410 */
    long event_error; /* another ERROR event's code (or -1 for a bad line) */
    int gone_streak;  /* the last relist came from a 410 and no healthy watch followed */

    double backoff;
    long auth_error; /* 401 / 403 of the last answer, else 0 */
    char auth_message[300];
    struct kw_names rejected;
};

static void kw_start_list(struct kube_watch *w);
static void kw_start_watch(struct kube_watch *w);

/* ---- small helpers ---- */

static int kw_set(char **dst, const char *s)
{
    char *d = strdup(s ? s : "");

    if (!d) return -1;
    free(*dst);
    *dst = d;
    return 0;
}

static void kw_names_clear(struct kw_names *s)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        free(s->v[i]);
        free(s->why[i]);
        free(s->uid[i]);
    }
    free(s->v);
    free(s->why);
    free(s->uid);
    memset(s, 0, sizeof(*s));
}

static size_t kw_names_find(const struct kw_names *s, const char *id)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], id)) return i;
    return (size_t)-1;
}

static void kw_names_remove(struct kw_names *s, const char *id)
{
    size_t i = kw_names_find(s, id);

    if (i == (size_t)-1) return;
    free(s->v[i]);
    free(s->why[i]);
    free(s->uid[i]);
    s->n--;
    s->v[i] = s->v[s->n];
    s->why[i] = s->why[s->n];
    s->uid[i] = s->uid[s->n];
}

/* Records id (metadata.uid uid) as rejected for why, replacing an older record of it. */
static void kw_names_add(struct kw_names *s, const char *id, const char *why, const char *uid)
{
    size_t i = kw_names_find(s, id);
    char *d, *r, *u;

    if (i == (size_t)-1) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 8;
            char **v = realloc(s->v, cap * sizeof(*v)), **w, **x;
            if (!v) return; /* only the rejected gauge is off by one */
            s->v = v;
            if (!(w = realloc(s->why, cap * sizeof(*w)))) return;
            s->why = w;
            if (!(x = realloc(s->uid, cap * sizeof(*x)))) return;
            s->uid = x;
            s->cap = cap;
        }
        if (!(d = strdup(id))) return;
        s->v[s->n] = d;
        s->why[s->n] = s->uid[s->n] = NULL;
        i = s->n++;
    }
    r = strdup(why);
    u = strdup(uid ? uid : "");
    if (!r || !u) {
        free(r);
        free(u);
        if (s->why[i] && s->uid[i]) return; /* keep the older record */
        free(s->v[i]);
        free(s->why[i]);
        free(s->uid[i]);
        s->n--;
        s->v[i] = s->v[s->n];
        s->why[i] = s->why[s->n];
        s->uid[i] = s->uid[s->n];
        return;
    }
    free(s->why[i]);
    free(s->uid[i]);
    s->why[i] = r;
    s->uid[i] = u;
}

/* "ns/name" (or "name") of an API object, as kube_decode names it. */
static const char *kw_ident(const struct kube_watch *w, const struct kobj *obj, char *buf, size_t n,
                            const char **ns, const char **name)
{
    *name = kobj_str(obj, "metadata", "name");
    *ns = w->k->namespaced ? kobj_str(obj, "metadata", "namespace") : "";
    if (!*name) *name = "";
    if (!*ns || (!**ns && w->k->namespaced)) *ns = w->k->namespaced ? "default" : "";
    if (**ns)
        snprintf(buf, n, "%s/%s", *ns, *name);
    else
        snprintf(buf, n, "%s", *name);
    return buf;
}

static void kw_changed(struct kube_watch *w)
{
    health_set_cached(w->k->kind, (unsigned)w->cache->kinds[w->k->kind].n, w->synced);
    if (w->cb.changed) w->cb.changed(w->arg, w);
}

static void kw_set_auth_error(struct kube_watch *w, long code, const char *message)
{
    int changed = w->auth_error != code;

    w->auth_error = code;
    snprintf(w->auth_message, sizeof(w->auth_message), "%s", message ? message : "");
    if (changed && w->cb.state) w->cb.state(w->arg, w);
}

/* ---- applying objects (the pure part: no I/O) ---- */

/*
 * Decodes obj (an item or an event's object) and stores it in cache, or removes its
 * identity when it is invalid or not kept; rejected tracks the invalid ones. Returns 0, or
 * -1 on allocation failure.
 */
static int kw_apply(struct kube_watch *w, const struct kobj *obj, struct model_cache *cache,
                    struct kw_names *rejected, int sealed)
{
    char reason[512], q[700], idbuf[320];
    const char *ns, *name, *id = kw_ident(w, obj, idbuf, sizeof(idbuf), &ns, &name);
    struct kube_ident kid;
    struct model_meta *m;
    int rc;

    rc = kube_decode_keep(obj, model_kind_name(w->k->kind), w->k->api_version, KW_SOURCE, &m, &kid,
                          reason, sizeof(reason));
    if (rc > 0 && m->kind != w->k->kind) {
        snprintf(reason, sizeof(reason), "a %s in the %s watch", model_kind_name(m->kind), w->name);
        model_object_free(m);
        rc = 0;
    }
    if (rc > 0) {
        /* 2: an invalid Gateway, rejected but kept (as file mode does) for its status */
        if (rc == 2) {
            log_warn("object_rejected", "file=" KW_SOURCE " kind=%s object=%s reason=%s", kid.kind,
                     kid.object, log_quote(q, sizeof(q), reason));
            kw_names_add(rejected, id, reason, kobj_str(obj, "metadata", "uid"));
        } else {
            kw_names_remove(rejected, id);
        }
        if (sealed) return model_cache_put(cache, m) < 0 ? -1 : 0;
        return model_cache_add(cache, m);
    }
    if (rc < 0) {
        log_warn("object_rejected", "file=" KW_SOURCE " kind=%s object=%s reason=%s", kid.kind,
                 kid.object, log_quote(q, sizeof(q), reason));
        kw_names_add(rejected, id, reason, kobj_str(obj, "metadata", "uid"));
    } else {
        log_debug("object_ignored", "kind=%s object=%s reason=%s", w->name, id,
                  log_quote(q, sizeof(q), reason));
        kw_names_remove(rejected, id);
    }
    if (sealed) model_cache_remove(cache, w->k->kind, ns, name);
    return 0;
}

/*
 * One list page's body: items go to staging, the continue token to w->cont (NULL when this
 * was the last page) and the list's resourceVersion to w->rv once the list is complete.
 * Returns 0, or -1 with err filled (the page must be fetched again).
 */
static int kw_list_page(struct kube_watch *w, const char *body, size_t len, char *err,
                        size_t errlen)
{
    const struct kobj *doc, *items;
    const char *cont, *rv;
    struct kobj_docs docs;
    size_t i;
    int rc = -1;

    if (kobj_parse_json(body, len, &docs, err, errlen)) return -1;
    if (docs.n != 1 || (doc = docs.docs[0])->type != KOBJ_MAP) {
        snprintf(err, errlen, "list answer is not a JSON object");
        goto out;
    }
    items = kobj_get(doc, "items");
    if (items && items->type != KOBJ_SEQ) {
        snprintf(err, errlen, "list items is not an array");
        goto out;
    }
    rv = kobj_str(doc, "metadata", "resourceVersion");
    if (!rv || !*rv) {
        snprintf(err, errlen, "list has no metadata.resourceVersion");
        goto out;
    }
    for (i = 0; items && i < items->n; i++) {
        if (kw_apply(w, items->items[i], &w->staging, &w->staging_rejected, 0)) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    cont = kobj_str(doc, "metadata", "continue");
    if (kw_set(&w->rv, rv) || (cont && *cont && kw_set(&w->cont, cont))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (!cont || !*cont) {
        free(w->cont);
        w->cont = NULL;
    }
    w->pages++;
    rc = 0;
out:
    kobj_docs_free(&docs);
    return rc;
}

/* Forgets a list in progress (staging and continue token). */
static void kw_list_reset(struct kube_watch *w)
{
    model_cache_free(&w->staging);
    model_cache_init(&w->staging);
    kw_names_clear(&w->staging_rejected);
    free(w->cont);
    w->cont = NULL;
    w->pages = 0;
}

/* The last page arrived: the kind's content becomes the list's, in one step. */
static void kw_list_finish(struct kube_watch *w)
{
    int first = !w->synced;

    model_cache_seal(&w->staging);
    model_cache_replace_kind(w->cache, w->k->kind, &w->staging);
    kw_names_clear(&w->rejected);
    w->rejected = w->staging_rejected;
    memset(&w->staging_rejected, 0, sizeof(w->staging_rejected));
    kw_list_reset(w);
    w->synced = 1;
    w->lists++;
    kw_changed(w);
    if (first && w->cb.state) w->cb.state(w->arg, w);
}

/*
 * One event line (without its '\n'). Returns 0 to go on, -1 to end the watch (w->gone or
 * w->event_error say why).
 */
static int kw_event(struct kube_watch *w, const char *line, size_t len)
{
    const struct kobj *doc, *obj;
    const char *type, *rv, *ns, *name;
    struct kobj_docs docs;
    char err[256], q[400], idbuf[320];
    long code = 0;
    int rc = -1;

    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) /* tolerate CRLF */
        len--;
    if (!len) return 0;
    if (kobj_parse_json(line, len, &docs, err, sizeof(err)) || docs.n != 1) {
        log_warn("watch_bad_event", "kind=%s reason=%s", w->name, log_quote(q, sizeof(q), err));
        w->event_error = -1;
        kobj_docs_free(&docs);
        return -1;
    }
    doc = docs.docs[0];
    type = kobj_str(doc, "type");
    obj = kobj_get(doc, "object");
    if (!type || !obj || obj->type != KOBJ_MAP) {
        log_warn("watch_bad_event", "kind=%s reason=\"no type or object\"", w->name);
        w->event_error = -1;
        goto out;
    }
    health_count_watch_event(w->k->kind, type);
    if (!strcmp(type, "ERROR")) {
        kobj_int(kobj_get(obj, "code"), &code);
        name = kobj_str(obj, "reason");
        ns = kobj_str(obj, "message");
        if (code == 410) {
            w->gone = 1;
        } else {
            w->event_error = code ? code : -1;
        }
        log_warn("watch_error_event", "kind=%s code=%ld reason=%s message=%s", w->name, code,
                 name ? name : "-", log_quote(q, sizeof(q), ns ? ns : ""));
        goto out;
    }
    rv = kobj_str(obj, "metadata", "resourceVersion");
    if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
        if (kw_apply(w, obj, w->cache, &w->rejected, 1)) {
            w->event_error = -1;
            goto out;
        }
        kw_changed(w);
    } else if (!strcmp(type, "DELETED")) {
        kw_ident(w, obj, idbuf, sizeof(idbuf), &ns, &name);
        kw_names_remove(&w->rejected, idbuf);
        if (model_cache_remove(w->cache, w->k->kind, ns, name)) kw_changed(w);
    } else if (strcmp(type, "BOOKMARK")) {
        log_warn("watch_bad_event", "kind=%s reason=\"unknown type %s\"", w->name, type);
    }
    /* only now: an event that could not be applied must come again after a restart */
    if (rv && *rv && kw_set(&w->rv, rv)) {
        w->event_error = -1;
        goto out;
    }
    w->watch_events++;
    rc = 0;
out:
    kobj_docs_free(&docs);
    return rc;
}

/*
 * Appends stream bytes and handles every complete line. Returns 0, or -1 to end the watch.
 */
static int kw_feed(struct kube_watch *w, const char *data, size_t len)
{
    size_t start = 0, i, scan = w->line_len;
    char *nl;

    if (!len) return 0;
    if (w->line_len + len > KUBE_WATCH_MAX_LINE) {
        log_warn("watch_bad_event", "kind=%s reason=\"event larger than %u bytes\"", w->name,
                 KUBE_WATCH_MAX_LINE);
        w->event_error = -1;
        return -1;
    }
    if (w->line_cap - w->line_len < len) {
        size_t cap = w->line_cap ? w->line_cap : 65536;
        while (cap - w->line_len < len)
            cap *= 2;
        if (!(nl = realloc(w->line, cap))) {
            w->event_error = -1;
            return -1;
        }
        w->line = nl;
        w->line_cap = cap;
    }
    memcpy(w->line + w->line_len, data, len);
    w->line_len += len;
    for (i = scan; i < w->line_len; i++) {
        if (w->line[i] != '\n') continue;
        if (kw_event(w, w->line + start, i - start)) return -1;
        start = i + 1;
    }
    if (start) {
        memmove(w->line, w->line + start, w->line_len - start);
        w->line_len -= start;
    }
    return 0;
}

/* ---- scheduling ---- */

static double kw_rand01(void)
{
    return (double)random() / ((double)RAND_MAX + 1.);
}

/* The next error delay (jittered ±25%), and doubles the base for the one after. */
static double kw_backoff(struct kube_watch *w)
{
    double d = w->backoff;

    w->backoff = d * 2 > KUBE_WATCH_BACKOFF_MAX ? KUBE_WATCH_BACKOFF_MAX : d * 2;
    return d * (0.75 + 0.5 * kw_rand01());
}

static void kw_later(struct kube_watch *w, enum kw_next next, double delay)
{
    w->next = next;
    ev_timer_stop(w->loop, &w->retry);
    ev_timer_set(&w->retry, delay > 0 ? delay : 0., 0.);
    ev_timer_start(w->loop, &w->retry);
}

static void kw_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct kube_watch *w = container_of(t, struct kube_watch, retry);

    (void)loop;
    (void)revents;
    if (w->magic != KW_MAGIC) abort();
    if (w->next == KW_NEXT_LIST)
        kw_start_list(w);
    else
        kw_start_watch(w);
}

/* Logs a failed answer, notes 401/403, and schedules next after a backoff (or Retry-After). */
static void kw_failed(struct kube_watch *w, const char *verb, const struct kube_response *r,
                      enum kw_next next)
{
    struct kube_status st;
    char q[400], eq[400];
    double delay = kw_backoff(w);

    /* the server knows best when it is worth asking again (429, also 503 and friends) */
    if (r->retry_after > delay) delay = r->retry_after;
    if (kube_client_parse_status(r->body, r->body_len, &st)) st.reason[0] = st.message[0] = '\0';
    if (r->status == 401 || r->status == 403) {
        log_error("api_error",
                  "kind=%s verb=%s path=%s status=%ld reason=%s message=%s retry_in=%.2f", w->name,
                  verb, r->path, r->status, st.reason[0] ? st.reason : "-",
                  log_quote(q, sizeof(q), st.message), delay);
        kw_set_auth_error(w, r->status, st.message[0] ? st.message : st.reason);
    } else {
        log_warn("api_error",
                 "kind=%s verb=%s path=%s status=%ld reason=%s message=%s error=%s retry_in=%.2f",
                 w->name, verb, r->path, r->status, st.reason[0] ? st.reason : "-",
                 log_quote(q, sizeof(q), st.message), log_quote(eq, sizeof(eq), r->error), delay);
    }
    kw_later(w, next, delay);
}

/* ---- list ---- */

/*
 * The API server answered 404 for a custom resource's collection: its CRD is not installed
 * (or was just removed); or 403: the controller's RBAC rules do not cover it (an install from
 * before the CRD existed). The kind is an empty list - synced, so readiness does not wait for
 * it and Ingresses keep serving - and is listed again every crd_recheck seconds, so
 * installing the CRD (or the rule) later starts the reflector. Logged once per disappearance,
 * with the status that says which.
 */
static void kw_crd_missing(struct kube_watch *w, const struct kube_response *r)
{
    struct kube_status st;
    char q[400];

    kw_set_auth_error(w, 0, NULL);
    kw_list_reset(w);
    if (!w->crd_missing) {
        if (kube_client_parse_status(r->body, r->body_len, &st)) st.message[0] = '\0';
        log_warn(w->k->crd_missing_event,
                 "kind=%s crd=%s path=%s status=%ld reason=%s message=%s recheck_in=%.2f", w->name,
                 w->k->crd, r->path, r->status, r->status == 403 ? "Forbidden" : "NotFound",
                 log_quote(q, sizeof(q), st.message), w->crd_recheck);
    }
    /* an empty kind stays empty: no change to report every recheck */
    if (!w->crd_missing || !w->synced || w->cache->kinds[w->k->kind].n) {
        w->crd_missing = 1;
        kw_list_finish(w);
    }
    w->crd_missing = 1;
    kw_later(w, KW_NEXT_LIST, w->crd_recheck);
}

static void kw_on_list_done(void *arg, const struct kube_response *r)
{
    struct kube_watch *w = arg;
    char err[300], q[400];

    if (w->magic != KW_MAGIC) abort();
    w->req = NULL;
    if ((r->status == 404 || r->status == 403) && w->k->crd) {
        kw_crd_missing(w, r);
        return;
    }
    if (r->status == 410 && w->cont) {
        /* the continue token outlived the history: start again from an up-to-date list */
        log_info("list_expired", "kind=%s pages=%u", w->name, w->pages);
        kw_list_reset(w);
        kw_start_list(w);
        return;
    }
    if (r->status != 200 || !r->complete) {
        kw_failed(w, "list", r, KW_NEXT_LIST);
        return;
    }
    kw_set_auth_error(w, 0, NULL);
    if (kw_list_page(w, r->body, r->body_len, err, sizeof(err))) {
        log_warn("api_error", "kind=%s verb=list path=%s status=200 reason=BadList message=%s",
                 w->name, r->path, log_quote(q, sizeof(q), err));
        kw_later(w, KW_NEXT_LIST, kw_backoff(w));
        return;
    }
    if (w->cont) {
        kw_start_list(w);
        return;
    }
    if (w->crd_missing) {
        w->crd_missing = 0;
        log_info(w->k->crd_found_event, "kind=%s crd=%s", w->name, w->k->crd);
    }
    log_info("list_complete", "kind=%s objects=%zu pages=%u resource_version=%s seconds=%.3f",
             w->name, w->staging.kinds[w->k->kind].n, w->pages, w->rv,
             ev_now(w->loop) - w->list_started);
    kw_list_finish(w);
    kw_start_watch(w);
}

static void kw_start_list(struct kube_watch *w)
{
    char path[4096], cont[3000], err[256];
    struct kube_response fail;
    int n;

    if (w->cont && kube_client_escape(w->cont, cont, sizeof(cont)))
        kw_list_reset(w); /* an absurd token: start over */
    if (!w->cont) w->list_started = ev_now(w->loop);
    n = snprintf(path, sizeof(path), "%s?limit=%u%s%s%s%s", w->base, w->page_limit,
                 w->k->field_selector ? "&fieldSelector=" : "",
                 w->k->field_selector ? w->k->field_selector : "", w->cont ? "&continue=" : "",
                 w->cont ? cont : "");
    if (n < 0 || (size_t)n >= sizeof(path)) abort(); /* bounded by the buffers above */
    w->req = kube_client_request(w->client, "GET", path, NULL, NULL, 0, KUBE_WATCH_LIST_TIMEOUT,
                                 kw_on_list_done, w, err, sizeof(err));
    if (!w->req) {
        memset(&fail, 0, sizeof(fail));
        fail.path = path;
        fail.body = "";
        fail.error = err;
        fail.retry_after = -1;
        kw_failed(w, "list", &fail, KW_NEXT_LIST);
    }
}

/* ---- watch ---- */

static int kw_on_watch_data(void *arg, const char *data, size_t len)
{
    struct kube_watch *w = arg;

    if (w->magic != KW_MAGIC) abort();
    if (!data) {
        w->watch_open = 1;
        kw_set_auth_error(w, 0, NULL);
        return 0;
    }
    return kw_feed(w, data, len);
}

static void kw_relist(struct kube_watch *w, int healthy)
{
    /* a 410 right after a relist would loop: back off then */
    double delay = w->gone_streak && !healthy ? kw_backoff(w) : 0.;

    log_info("watch_expired", "kind=%s resource_version=%s relist_in=%.2f", w->name,
             w->rv ? w->rv : "", delay);
    health_count_relist(w->k->kind);
    w->gone_streak = 1;
    kw_list_reset(w);
    if (delay > 0)
        kw_later(w, KW_NEXT_LIST, delay);
    else
        kw_start_list(w);
}

static void kw_on_watch_done(void *arg, const struct kube_response *r)
{
    struct kube_watch *w = arg;
    double lasted = ev_now(w->loop) - w->watch_started;
    int healthy = w->watch_open && (w->watch_events > 0 || lasted >= KW_HEALTHY_SECONDS);
    char q[400];

    if (w->magic != KW_MAGIC) abort();
    w->req = NULL;
    w->line_len = 0; /* a partial event was not applied; the resumed watch repeats it */
    if (w->gone || r->status == 410) {
        kw_relist(w, healthy);
        return;
    }
    health_count_watch_restart(w->k->kind);
    if (!w->watch_open && (r->status == 404 || r->status == 403) && w->k->crd) {
        /* the CRD went away: the list says so (and empties the kind) */
        kw_list_reset(w);
        kw_start_list(w);
        return;
    }
    if (!w->watch_open) {
        kw_failed(w, "watch", r, KW_NEXT_WATCH);
        return;
    }
    if (w->event_error) {
        log_warn("watch_closed", "kind=%s reason=error_event code=%ld events=%u seconds=%.1f",
                 w->name, w->event_error, w->watch_events, lasted);
        kw_later(w, KW_NEXT_WATCH, kw_backoff(w));
        return;
    }
    log_info("watch_closed", "kind=%s reason=%s events=%u seconds=%.1f resource_version=%s",
             w->name, r->complete ? "\"server ended it\"" : log_quote(q, sizeof(q), r->error),
             w->watch_events, lasted, w->rv ? w->rv : "");
    if (healthy) {
        w->backoff = KUBE_WATCH_BACKOFF_MIN;
        w->gone_streak = 0;
        kw_start_watch(w);
    } else {
        kw_later(w, KW_NEXT_WATCH, kw_backoff(w));
    }
}

static void kw_start_watch(struct kube_watch *w)
{
    char path[1024], rv[300], err[256];
    struct kube_response fail;
    int timeout = w->watch_timeout + (int)(kw_rand01() * (w->watch_timeout + 1));
    int n;

    if (kube_client_escape(w->rv ? w->rv : "", rv, sizeof(rv))) {
        kw_relist(w, 0); /* cannot happen with API server resourceVersions */
        return;
    }
    n = snprintf(path, sizeof(path),
                 "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d%s%s",
                 w->base, rv, timeout, w->k->field_selector ? "&fieldSelector=" : "",
                 w->k->field_selector ? w->k->field_selector : "");
    if (n < 0 || (size_t)n >= sizeof(path)) abort();
    w->watch_events = 0;
    w->watch_open = 0;
    w->gone = 0;
    w->event_error = 0;
    w->line_len = 0;
    if (w->line_cap > (1u << 20)) { /* one huge event must not pin its buffer forever */
        free(w->line);
        w->line = NULL;
        w->line_cap = 0;
    }
    w->watch_started = ev_now(w->loop);
    log_debug("watch_started", "kind=%s resource_version=%s timeout=%d", w->name,
              w->rv ? w->rv : "", timeout);
    w->req = kube_client_stream(w->client, path, timeout + KW_TIMEOUT_MARGIN, kw_on_watch_data,
                                kw_on_watch_done, w, err, sizeof(err));
    if (!w->req) {
        memset(&fail, 0, sizeof(fail));
        fail.path = path;
        fail.body = "";
        fail.error = err;
        fail.retry_after = -1;
        kw_failed(w, "watch", &fail, KW_NEXT_WATCH);
    }
}

/* ---- lifecycle ---- */

struct kube_watch *kube_watch_new(struct ev_loop *loop, struct kube_client *client,
                                  struct model_cache *cache, enum model_kind kind,
                                  const struct kube_watch_opts *opts,
                                  const struct kube_watch_callbacks *cb, void *arg, char *err,
                                  size_t errlen)
{
    const struct kw_kind *k = NULL;
    const char *ns = opts && opts->ns && *opts->ns ? opts->ns : NULL;
    struct kube_watch *w;
    size_t i;
    int n;

    for (i = 0; i < sizeof(kw_kinds) / sizeof(kw_kinds[0]); i++)
        if (kw_kinds[i].kind == kind) k = &kw_kinds[i];
    if (!k) {
        snprintf(err, errlen, "no reflector for kind %s", model_kind_name(kind));
        return NULL;
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->magic = KW_MAGIC;
    w->loop = loop;
    w->client = client;
    w->cache = cache;
    w->k = k;
    w->name = model_kind_name(kind);
    if (cb) w->cb = *cb;
    w->arg = arg;
    w->watch_timeout = opts && opts->watch_timeout > 0 ? opts->watch_timeout : KUBE_WATCH_TIMEOUT;
    w->page_limit = opts && opts->page_limit ? opts->page_limit : KUBE_WATCH_PAGE;
    w->backoff = KUBE_WATCH_BACKOFF_MIN;
    w->crd_recheck = opts && opts->crd_recheck > 0 ? opts->crd_recheck : KUBE_WATCH_CRD_RECHECK;
    model_cache_init(&w->staging);
    if (k->namespaced && ns)
        n = snprintf(w->base, sizeof(w->base), "%s/namespaces/%s/%s", k->prefix, ns, k->resource);
    else
        n = snprintf(w->base, sizeof(w->base), "%s/%s", k->prefix, k->resource);
    if (n < 0 || (size_t)n >= sizeof(w->base)) {
        snprintf(err, errlen, "namespace name too long");
        free(w);
        return NULL;
    }
    ev_timer_init(&w->retry, kw_on_retry, 0., 0.);
    return w;
}

void kube_watch_start(struct kube_watch *w)
{
    if (!w->req && !ev_is_active(&w->retry)) kw_start_list(w);
}

enum model_kind kube_watch_kind(const struct kube_watch *w)
{
    return w->k->kind;
}

int kube_watch_synced(const struct kube_watch *w)
{
    return w->synced;
}

int kube_watch_crd_missing(const struct kube_watch *w)
{
    return w->crd_missing;
}

long kube_watch_auth_error(const struct kube_watch *w, const char **message)
{
    if (message) *message = w->auth_message;
    return w->auth_error;
}

void kube_watch_each_rejected(const struct kube_watch *w, kube_watch_rejected_fn fn, void *arg)
{
    size_t i;

    for (i = 0; i < w->rejected.n; i++)
        fn(arg, w->k->kind, w->rejected.v[i], w->rejected.uid[i], w->rejected.why[i]);
}

unsigned kube_watch_rejected(const struct kube_watch *w)
{
    return (unsigned)w->rejected.n;
}

void kube_watch_free(struct kube_watch *w)
{
    if (!w) return;
    if (w->magic != KW_MAGIC) abort();
    kube_client_cancel(w->req);
    ev_timer_stop(w->loop, &w->retry);
    kw_list_reset(w);
    kw_names_clear(&w->rejected);
    free(w->rv);
    free(w->line);
    w->magic = 0;
    free(w);
}
