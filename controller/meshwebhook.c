/*
 * meshwebhook: the caBundle of the sidecar injector's MutatingWebhookConfiguration, kept by
 * the leader. Without it a fresh install has a webhook the API server cannot call (the chart's
 * Helm lookup of the root Secret runs before the controller has generated the root), and with
 * failurePolicy Ignore pods silently start without sidecars.
 *
 * Does: while leading, GETs /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/
 * NAME when leadership starts, when the trust bundle changes (meshid_on_bundle) and every
 * resync seconds; when some webhooks[i].clientConfig.caBundle is not base64 of the trust
 * bundle, sends one JSON Patch (RFC 6902): a test of /metadata/resourceVersion, then an add
 * of each differing caBundle. A concurrent change makes the test fail (422) or the write
 * conflict (409): the object is read again at once (a few times, then with backoff), never
 * overwritten blindly. A missing object (404: not installed yet) is looked for at the next
 * resync; other failures are retried with stwriter's backoff and jitter.
 * Does not: create or delete the object, touch anything but the caBundles, or decide
 * leadership (leader.c).
 * Invariants: nothing is sent while not leading or while no root is loaded; at most one
 * request in flight; a caBundle that already matches is never written.
 */
#include "meshwebhook.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "jsongen.h"
#include "kobj.h"
#include "kube_client.h"
#include "log.h"
#include "meshid.h"
#include "stwriter.h"

#define MESHWEBHOOK_MAGIC 0x4d535748u /* "MSWH" */
#define MESHWEBHOOK_PATH "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
#define MESHWEBHOOK_JSON_PATCH "application/json-patch+json"
#define MESHWEBHOOK_CONFLICTS 3 /* re-reads at once after a conflict, then with backoff */

struct meshwebhook {
    uint32_t magic;
    struct ev_loop *loop;
    struct kube_client *client;
    struct meshid *mesh;
    char name[254];
    char path[sizeof(MESHWEBHOOK_PATH) + 254];
    double resync;
    int leading;
    int again;          /* the bundle changed while a request was in flight */
    unsigned conflicts; /* in a row */
    unsigned patching;  /* webhooks the PATCH in flight sets (0: the request is a GET) */
    double backoff;
    struct kube_request *req;
    ev_timer timer; /* the next check: resync, or a retry */
};

static struct meshwebhook_metrics mw_counts;

void meshwebhook_metrics(struct meshwebhook_metrics *out)
{
    *out = mw_counts;
}

static void mw_check(struct meshwebhook *w);

static void mw_later(struct meshwebhook *w, double after)
{
    ev_timer_stop(w->loop, &w->timer);
    ev_timer_set(&w->timer, after, 0.);
    ev_timer_start(w->loop, &w->timer);
}

/* A failed request (r, or no answer with err): warn, count, back off. */
static void mw_failed(struct meshwebhook *w, const char *step, const struct kube_response *r,
                      const char *err)
{
    double now = ev_now(w->loop), u = (double)random() / ((double)RAND_MAX + 1.), at;
    char q[400];

    mw_counts.failures++;
    w->backoff = stwriter_backoff_next(w->backoff);
    at = stwriter_retry_at(now, w->backoff, r ? stwriter_retry_after(r) : 0, u);
    log_warn("mesh_webhook_ca_retry", "name=%s step=%s status=%ld reason=%s retry_in=%.1f", w->name,
             step, r ? r->status : 0L,
             r ? stwriter_failure_text(r, err, q, sizeof(q)) : log_quote(q, sizeof(q), err),
             at - now);
    mw_later(w, at - now);
}

/* The request is done: a bundle change meanwhile is checked at once, else at the resync. */
static void mw_settled(struct meshwebhook *w)
{
    w->backoff = 0;
    w->conflicts = 0;
    if (w->again) {
        mw_check(w);
        return;
    }
    mw_later(w, w->resync);
}

/* Someone changed the object between our GET and PATCH: read it again. */
static void mw_conflict(struct meshwebhook *w, const struct kube_response *r)
{
    if (++w->conflicts > MESHWEBHOOK_CONFLICTS) {
        mw_failed(w, "patch", r, "");
        return;
    }
    log_info("mesh_webhook_conflict", "name=%s status=%ld", w->name, r->status);
    mw_check(w);
}

static void mw_absent(struct meshwebhook *w)
{
    log_info("mesh_webhook_absent", "name=%s retry_in=%.0f", w->name, w->resync);
    w->backoff = 0;
    w->conflicts = 0;
    mw_later(w, w->again ? 0. : w->resync);
    w->again = 0;
}

static void mw_patched(void *arg, const struct kube_response *r)
{
    struct meshwebhook *w = arg;
    unsigned n = w->patching;

    if (w->magic != MESHWEBHOOK_MAGIC) abort();
    w->req = NULL;
    w->patching = 0;
    if (r->status == 200) {
        log_info("mesh_webhook_ca_patched", "name=%s webhooks=%u", w->name, n);
        mw_counts.patches++; /* after the line: whoever sees the count finds the line */
        mw_settled(w);
    } else if (r->status == 409 || r->status == 422) {
        mw_conflict(w, r);
    } else if (r->status == 404) {
        mw_absent(w);
    } else {
        mw_failed(w, "patch", r, "");
    }
}

/*
 * The JSON Patch that makes every caBundle of the object doc equal to b64: a test of the
 * resourceVersion, then one add per differing webhook (*n of them). Returns the body
 * (malloc'd), or NULL with *n == 0 when nothing differs (or out of memory: *n != 0).
 */
static char *mw_patch(const struct kobj *doc, const char *b64, unsigned *n)
{
    const struct kobj *hooks = kobj_get(doc, "webhooks"), *cc;
    const char *rv = kobj_str(doc, "metadata", "resourceVersion"), *have;
    yajl_gen g = NULL;
    char path[64];
    size_t i;

    *n = 0;
    if (!hooks || hooks->type != KOBJ_SEQ) return NULL;
    for (i = 0; i < hooks->n; i++) {
        cc = kobj_get(hooks->items[i], "clientConfig");
        have = cc ? kobj_str(cc, "caBundle") : NULL;
        if (have && !strcmp(have, b64)) continue;
        if (!g) {
            if (!(g = yajl_gen_alloc(NULL))) {
                *n = 1;
                return NULL;
            }
            yajl_gen_array_open(g);
            if (rv) {
                yajl_gen_map_open(g);
                jsongen_kv_str(g, "op", "test");
                jsongen_kv_str(g, "path", "/metadata/resourceVersion");
                jsongen_kv_str(g, "value", rv);
                yajl_gen_map_close(g);
            }
        }
        (*n)++;
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "op", "add");
        /* clientConfig is required, but an add needs its parent: add it whole if missing */
        snprintf(path, sizeof(path),
                 cc && cc->type == KOBJ_MAP ? "/webhooks/%zu/clientConfig/caBundle"
                                            : "/webhooks/%zu/clientConfig",
                 i);
        jsongen_kv_str(g, "path", path);
        jsongen_str(g, "value");
        if (cc && cc->type == KOBJ_MAP) {
            jsongen_str(g, b64);
        } else {
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "caBundle", b64);
            yajl_gen_map_close(g);
        }
        yajl_gen_map_close(g);
    }
    if (!g) return NULL;
    yajl_gen_array_close(g);
    return stwriter_body_take(g);
}

static void mw_got(void *arg, const struct kube_response *r)
{
    struct meshwebhook *w = arg;
    struct kobj_docs docs = {0};
    const char *bundle = meshid_trust_bundle(w->mesh);
    char err[300], *b64 = NULL, *body = NULL;
    unsigned n;

    if (w->magic != MESHWEBHOOK_MAGIC) abort();
    w->req = NULL;
    w->again = 0;
    if (r->status == 404) {
        mw_absent(w);
        return;
    }
    if (r->status != 200 || stwriter_parse_object(r->body, r->body_len, &docs, err, sizeof(err))) {
        mw_failed(w, "get", r, r->status == 200 ? err : "");
        goto out;
    }
    if (!bundle) { /* cannot happen: no check is started without a root */
        mw_later(w, w->resync);
        goto out;
    }
    if (!(b64 = meshid_base64(bundle))) {
        mw_failed(w, "get", NULL, "out of memory");
        goto out;
    }
    if (!(body = mw_patch(docs.docs[0], b64, &n))) {
        if (n) {
            mw_failed(w, "get", NULL, "out of memory");
        } else {
            log_debug("mesh_webhook_ca_current", "name=%s", w->name);
            mw_settled(w);
        }
        goto out;
    }
    w->patching = n;
    if (!(w->req = kube_client_request(w->client, "PATCH", w->path, MESHWEBHOOK_JSON_PATCH, body,
                                       strlen(body), STWRITER_TIMEOUT, mw_patched, w, err,
                                       sizeof(err)))) {
        w->patching = 0;
        mw_failed(w, "patch", NULL, err);
    }
out:
    free(body);
    free(b64);
    kobj_docs_free(&docs);
}

/* Reads the object now (unless a request is in flight: then again once it is done). */
static void mw_check(struct meshwebhook *w)
{
    char err[300];

    if (!w->leading || !meshid_trust_bundle(w->mesh)) return;
    if (w->req) {
        w->again = 1;
        return;
    }
    ev_timer_stop(w->loop, &w->timer);
    w->again = 0;
    if (!(w->req = kube_client_request(w->client, "GET", w->path, NULL, NULL, 0, STWRITER_TIMEOUT,
                                       mw_got, w, err, sizeof(err))))
        mw_failed(w, "get", NULL, err);
}

static void mw_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct meshwebhook *w = container_of(t, struct meshwebhook, timer);

    (void)loop;
    (void)revents;
    if (w->magic != MESHWEBHOOK_MAGIC) abort();
    mw_check(w);
}

/* meshid's trust bundle changed (the root was loaded). */
static void mw_bundle_cb(void *arg)
{
    struct meshwebhook *w = arg;

    if (w->magic != MESHWEBHOOK_MAGIC) abort();
    w->backoff = 0;
    mw_check(w);
}

struct meshwebhook *meshwebhook_new(struct ev_loop *loop, struct kube_client *client,
                                    struct meshid *mesh, const char *name, double resync, char *err,
                                    size_t errlen)
{
    struct meshwebhook *w;

    if (strlen(name) >= sizeof(w->name)) {
        snprintf(err, errlen, "--mesh-webhook-config: the name is longer than %zu bytes",
                 sizeof(w->name) - 1);
        return NULL;
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->magic = MESHWEBHOOK_MAGIC;
    w->loop = loop;
    w->client = client;
    w->mesh = mesh;
    w->resync = resync > 0 ? resync : MESHWEBHOOK_DEFAULT_RESYNC;
    snprintf(w->name, sizeof(w->name), "%s", name);
    snprintf(w->path, sizeof(w->path), "%s%s", MESHWEBHOOK_PATH, name);
    ev_timer_init(&w->timer, mw_timer_cb, w->resync, 0.);
    meshid_on_bundle(mesh, mw_bundle_cb, w);
    mw_counts.enabled = 1;
    return w;
}

void meshwebhook_set_leader(struct meshwebhook *w, int leading)
{
    if (!w) return;
    w->leading = leading;
    w->backoff = 0;
    w->conflicts = 0;
    if (leading) {
        mw_check(w);
        return;
    }
    kube_client_cancel(w->req);
    w->req = NULL;
    w->patching = 0;
    w->again = 0;
    ev_timer_stop(w->loop, &w->timer);
}

void meshwebhook_free(struct meshwebhook *w)
{
    if (!w) return;
    meshwebhook_set_leader(w, 0);
    meshid_on_bundle(w->mesh, NULL, NULL);
    w->magic = 0;
    free(w);
    memset(&mw_counts, 0, sizeof(mw_counts));
}
