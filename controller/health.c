/*
 * health: what an operator or a probe asks the controller.
 *
 * Does: keep the controller's counters (reloads, publications, objects accepted and
 * rejected, ACKs and NACKs; in cluster mode watch events, restarts, relists, cached objects,
 * API latency and errors, build time and size), render them as Prometheus text (with the
 * figures leader, status and events keep for their own work), and answer
 * GET|HEAD /healthz (200 while the loop runs), /readyz (200 once a first snapshot was
 * published on the listening socket and nothing blocks readiness, else 503 with the reason),
 * /metrics and /snapshot (JSON of the frame being served, decoded on demand: admin is not
 * the hot path) on top of common/adminsrv.
 * Does not: build snapshots or talk to data planes; it only reads the publisher.
 * Invariants: the controller is single-threaded, so the counters are plain integers touched
 * on the main loop only; *_total counters only grow.
 */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adminsrv.h"
#include "events.h"
#include "gwstatus.h"
#include "leader.h"
#include "meshfeed.h"
#include "meshid.h"
#include "meshwebhook.h"
#include "publisher.h"
#include "snapwire.h"
#include "status.h"

#define HEALTH_MAGIC 0x484c5448u /* "HLTH" */
#define HEALTH_PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define HEALTH_N_BUCKETS 12
#define HEALTH_MAX_CODES 32

static const double health_buckets[HEALTH_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                        0.5,   1.,   2.5,   5.,   10., 30.};
static const char *const health_ev_types[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
static const char *const health_methods[] = {"GET",    "POST",  "PUT",  "PATCH",
                                             "DELETE", "WATCH", "other"};
#define HEALTH_N_EV (sizeof(health_ev_types) / sizeof(health_ev_types[0]))
#define HEALTH_N_METHODS (sizeof(health_methods) / sizeof(health_methods[0]))

struct health_hist {
    uint64_t buckets[HEALTH_N_BUCKETS]; /* not cumulative: rendered as running sums */
    uint64_t count;
    double sum;
};

struct health {
    uint32_t magic;
    struct adminsrv *srv;
    struct publisher *pub;
};

static struct {
    uint64_t generation;
    uint64_t published, reloads, reload_errors, acks, nacks;
    unsigned objects[MODEL_KIND_COUNT];
    unsigned rejected;
    /* cluster mode */
    uint64_t watch_events[MODEL_KIND_COUNT][HEALTH_N_EV];
    uint64_t watch_restarts[MODEL_KIND_COUNT], relists[MODEL_KIND_COUNT];
    unsigned cached[MODEL_KIND_COUNT];
    int synced[MODEL_KIND_COUNT];
    int watched[MODEL_KIND_COUNT]; /* a reflector reported for the kind: render its rows */
    int cluster;                   /* any cluster-mode figure was set: render those families */
    struct health_hist api[HEALTH_N_METHODS];
    struct {
        long code;
        uint64_t n;
    } errors[HEALTH_MAX_CODES];
    unsigned n_errors;
    struct health_hist build;
    size_t snapshot_bytes;
    char unready[256];
} hc;

static void health_hist_add(struct health_hist *h, double v)
{
    size_t i;

    for (i = 0; i < HEALTH_N_BUCKETS; i++) {
        if (v <= health_buckets[i]) {
            h->buckets[i]++;
            break;
        }
    }
    h->count++;
    h->sum += v;
}

void health_count_watch_event(enum model_kind kind, const char *type)
{
    size_t i;

    if ((unsigned)kind >= MODEL_KIND_COUNT) return;
    hc.cluster = 1;
    hc.watched[kind] = 1;
    for (i = 0; i < HEALTH_N_EV; i++)
        if (!strcmp(type, health_ev_types[i])) hc.watch_events[kind][i]++;
}

void health_count_watch_restart(enum model_kind kind)
{
    if ((unsigned)kind >= MODEL_KIND_COUNT) return;
    hc.cluster = 1;
    hc.watched[kind] = 1;
    hc.watch_restarts[kind]++;
}

void health_count_relist(enum model_kind kind)
{
    if ((unsigned)kind >= MODEL_KIND_COUNT) return;
    hc.cluster = 1;
    hc.watched[kind] = 1;
    hc.relists[kind]++;
}

void health_set_cached(enum model_kind kind, unsigned n, int synced)
{
    if ((unsigned)kind >= MODEL_KIND_COUNT) return;
    hc.cluster = 1;
    hc.watched[kind] = 1;
    hc.cached[kind] = n;
    hc.synced[kind] = synced;
}

void health_observe_api(const char *method, long status, double seconds)
{
    size_t m, i;

    hc.cluster = 1;
    for (m = 0; m < HEALTH_N_METHODS - 1; m++)
        if (!strcmp(method, health_methods[m])) break;
    health_hist_add(&hc.api[m], seconds);
    if (status && status < 400) return;
    for (i = 0; i < hc.n_errors; i++)
        if (hc.errors[i].code == status) break;
    if (i == hc.n_errors) {
        if (hc.n_errors == HEALTH_MAX_CODES) return; /* ~every status already has a slot */
        hc.errors[hc.n_errors++].code = status;
    }
    hc.errors[i].n++;
}

void health_observe_build(double seconds, size_t bytes)
{
    health_hist_add(&hc.build, seconds);
    hc.snapshot_bytes = bytes;
}

void health_set_unready(const char *reason)
{
    snprintf(hc.unready, sizeof(hc.unready), "%s", reason ? reason : "");
}

void health_count_reload(int ok)
{
    hc.reloads++;
    if (!ok) hc.reload_errors++;
}

void health_count_published(uint64_t generation)
{
    hc.generation = generation;
    hc.published++;
}

void health_set_objects(const unsigned objects[MODEL_KIND_COUNT], unsigned rejected)
{
    memcpy(hc.objects, objects, sizeof(hc.objects));
    hc.rejected = rejected;
}

void health_count_ack(void)
{
    hc.acks++;
}

void health_count_nack(void)
{
    hc.nacks++;
}

void health_reset(void)
{
    memset(&hc, 0, sizeof(hc));
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* An unlabelled counter: its family lines, then its value. */
static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    family(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void health_hist_render(FILE *f, const char *name, const char *labels,
                               const struct health_hist *h)
{
    uint64_t run = 0;
    size_t i;

    for (i = 0; i < HEALTH_N_BUCKETS; i++) {
        run += h->buckets[i];
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "",
                health_buckets[i], (unsigned long long)run);
    }
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "",
            (unsigned long long)h->count);
    fprintf(f, "%s_sum%s%s%s %.6f\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", h->sum);
    fprintf(f, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
            (unsigned long long)h->count);
}

/* The families only cluster mode moves; per kind, for the kinds a reflector watches. */
static void health_render_cluster(FILE *f)
{
    char labels[64];
    size_t i, m;
    int k;

    family(f, "strait_controller_watch_events_total", "counter",
           "Watch events handled, by kind and event type.");
    for (k = 0; k < MODEL_KIND_COUNT; k++)
        for (i = 0; hc.watched[k] && i < HEALTH_N_EV; i++)
            fprintf(f, "strait_controller_watch_events_total{kind=\"%s\",type=\"%s\"} %llu\n",
                    model_kind_name((enum model_kind)k), health_ev_types[i],
                    (unsigned long long)hc.watch_events[k][i]);
    family(f, "strait_controller_watch_restarts_total", "counter",
           "Watches started again after an end, a cut or an error, by kind.");
    for (k = 0; k < MODEL_KIND_COUNT; k++)
        if (hc.watched[k])
            fprintf(f, "strait_controller_watch_restarts_total{kind=\"%s\"} %llu\n",
                    model_kind_name((enum model_kind)k), (unsigned long long)hc.watch_restarts[k]);
    family(f, "strait_controller_relists_total", "counter",
           "Full lists after the first one (410 Gone, errors), by kind.");
    for (k = 0; k < MODEL_KIND_COUNT; k++)
        if (hc.watched[k])
            fprintf(f, "strait_controller_relists_total{kind=\"%s\"} %llu\n",
                    model_kind_name((enum model_kind)k), (unsigned long long)hc.relists[k]);
    family(f, "strait_controller_objects_cached", "gauge",
           "Objects in the watch cache, by kind (before the snapshot builder's checks).");
    for (k = 0; k < MODEL_KIND_COUNT; k++)
        if (hc.watched[k])
            fprintf(f, "strait_controller_objects_cached{kind=\"%s\"} %u\n",
                    model_kind_name((enum model_kind)k), hc.cached[k]);
    family(f, "strait_controller_synced", "gauge",
           "1 once the first list of a kind completed, by kind.");
    for (k = 0; k < MODEL_KIND_COUNT; k++)
        if (hc.watched[k])
            fprintf(f, "strait_controller_synced{kind=\"%s\"} %d\n",
                    model_kind_name((enum model_kind)k), hc.synced[k]);
    family(f, "strait_controller_api_request_duration_seconds", "histogram",
           "Kubernetes API request latency by method (WATCH: to the first byte).");
    for (m = 0; m < HEALTH_N_METHODS; m++) {
        snprintf(labels, sizeof(labels), "method=\"%s\"", health_methods[m]);
        health_hist_render(f, "strait_controller_api_request_duration_seconds", labels, &hc.api[m]);
    }
    family(f, "strait_controller_api_errors_total", "counter",
           "Kubernetes API answers with status >= 400, by status (\"none\": no answer).");
    for (i = 0; i < hc.n_errors; i++) {
        if (hc.errors[i].code)
            fprintf(f, "strait_controller_api_errors_total{code=\"%ld\"} %llu\n", hc.errors[i].code,
                    (unsigned long long)hc.errors[i].n);
        else
            fprintf(f, "strait_controller_api_errors_total{code=\"none\"} %llu\n",
                    (unsigned long long)hc.errors[i].n);
    }
}

/* The sidecars' discovery feed (meshfeed.c keeps the figures). */
static void health_render_feed(FILE *f)
{
    struct meshfeed_metrics fm;
    int i;

    meshfeed_metrics(&fm);
    if (!fm.enabled) return;
    family(f, "strait_mesh_feed_requests_total", "counter",
           "Discovery feed answers (POST /v1/discovery) by status code (held requests count "
           "when answered; one whose sidecar left is not counted).");
    for (i = 0; i < MESHFEED_CODES; i++)
        fprintf(f, "strait_mesh_feed_requests_total{code=\"%d\"} %llu\n", fm.codes[i],
                (unsigned long long)fm.requests[i]);
    family(f, "strait_mesh_feed_waiting", "gauge",
           "Discovery feed requests held until the answer changes or their wait ends.");
    fprintf(f, "strait_mesh_feed_waiting %u\n", fm.waiting);
    family(f, "strait_mesh_feed_addresses_rejected_total", "counter",
           "Pod addresses discovery requests claimed that no Pod of the caller's identity has "
           "(left out of the answer; see event=mesh_feed_addresses_rejected).");
    fprintf(f, "strait_mesh_feed_addresses_rejected_total %llu\n",
            (unsigned long long)fm.addresses_rejected);
}

/* Leader election, Ingress status and Events: their modules keep the figures. */
static void health_render_leader(FILE *f)
{
    struct leader_metrics lm;
    struct status_metrics sm;
    struct gwstatus_metrics gm;
    struct events_metrics em;
    struct meshid_metrics mi;
    struct meshwebhook_metrics mw;

    meshid_metrics(&mi);
    meshwebhook_metrics(&mw);
    if (mi.enabled) {
        family(f, "strait_mesh_certificates_issued_total", "counter",
               "Identity requests (POST /v1/identity) by result: ok (a leaf issued), denied (401: "
               "no or unknown token), invalid (400: body or CSR refused).");
        fprintf(f, "strait_mesh_certificates_issued_total{result=\"ok\"} %llu\n",
                (unsigned long long)mi.issued);
        fprintf(f, "strait_mesh_certificates_issued_total{result=\"denied\"} %llu\n",
                (unsigned long long)mi.denied);
        fprintf(f, "strait_mesh_certificates_issued_total{result=\"invalid\"} %llu\n",
                (unsigned long long)mi.invalid);
        family(f, "strait_mesh_root_expiry_seconds", "gauge",
               "notAfter of the mesh root that signs (UNIX time; 0 while none is loaded).");
        fprintf(f, "strait_mesh_root_expiry_seconds %lld\n", (long long)mi.root_not_after);
        counter(f, "strait_mesh_root_reloads_total",
                "Changed mesh roots (files or Secret, re-checked every --mesh-root-resync) "
                "swapped in without a restart.",
                mi.root_reloads);
        counter(f, "strait_mesh_root_reload_failures_total",
                "Changed mesh roots refused (bad PEM, key not matching, not a CA, expired, a "
                "half-written pair; once per change): the current root stays.",
                mi.root_reload_failures);
    }
    if (mw.enabled) {
        counter(f, "strait_mesh_webhook_ca_patches_total",
                "PATCHes that set the injector MutatingWebhookConfiguration's caBundles to the "
                "trust bundle (leader; --mesh-webhook-config).",
                mw.patches);
        counter(f, "strait_mesh_webhook_ca_failures_total",
                "Reads and PATCHes of the injector MutatingWebhookConfiguration that failed "
                "(retried with backoff; a missing object is not counted).",
                mw.failures);
    }
    health_render_feed(f);
    leader_metrics(&lm);
    status_metrics(&sm);
    gwstatus_metrics(&gm);
    events_metrics(&em);
    if (lm.enabled) {
        family(f, "strait_controller_leader", "gauge",
               "1 while this replica holds the leader election Lease, else 0.");
        fprintf(f, "strait_controller_leader %d\n", lm.leading);
        family(f, "strait_controller_leader_transitions_total", "counter",
               "Changes of this replica's leader state (became leader, stopped leading).");
        fprintf(f, "strait_controller_leader_transitions_total %llu\n",
                (unsigned long long)lm.transitions);
        family(f, "strait_controller_leader_renew_failures_total", "counter",
               "Lease renewals that failed while leading (after renew-deadline: step down).");
        fprintf(f, "strait_controller_leader_renew_failures_total %llu\n",
                (unsigned long long)lm.renew_failures);
    }
    if (sm.enabled) {
        family(f, "strait_controller_status_writes_total", "counter",
               "Ingress status writes, by result.");
        fprintf(f, "strait_controller_status_writes_total{result=\"ok\"} %llu\n",
                (unsigned long long)sm.writes);
        fprintf(f, "strait_controller_status_writes_total{result=\"error\"} %llu\n",
                (unsigned long long)sm.write_errors);
        family(f, "strait_controller_status_reads_total", "counter",
               "Ingress and publish Service reads made for status.");
        fprintf(f, "strait_controller_status_reads_total %llu\n", (unsigned long long)sm.reads);
        family(f, "strait_controller_status_pending", "gauge",
               "Served Ingresses whose status is not known to hold the published addresses "
               "(leader only).");
        fprintf(f, "strait_controller_status_pending %u\n", sm.pending);
    }
    if (gm.enabled) {
        family(f, "strait_controller_gateway_status_writes_total", "counter",
               "Gateway status writes, by result.");
        fprintf(f, "strait_controller_gateway_status_writes_total{result=\"ok\"} %llu\n",
                (unsigned long long)gm.writes);
        fprintf(f, "strait_controller_gateway_status_writes_total{result=\"error\"} %llu\n",
                (unsigned long long)gm.write_errors);
        family(f, "strait_controller_gateway_status_reads_total", "counter",
               "Gateway reads made for status.");
        fprintf(f, "strait_controller_gateway_status_reads_total %llu\n",
                (unsigned long long)gm.reads);
        family(f, "strait_controller_gateway_status_pending", "gauge",
               "Gateways whose status is not known to be the last build's (leader only).");
        fprintf(f, "strait_controller_gateway_status_pending %u\n", gm.pending);
    }
    if (em.enabled) {
        family(f, "strait_controller_k8s_events_total", "counter",
               "Kubernetes Events about rejected objects: created, updated (count bumped), "
               "suppressed (deduplicated), failed writes.");
        fprintf(f, "strait_controller_k8s_events_total{result=\"created\"} %llu\n",
                (unsigned long long)em.created);
        fprintf(f, "strait_controller_k8s_events_total{result=\"updated\"} %llu\n",
                (unsigned long long)em.updated);
        fprintf(f, "strait_controller_k8s_events_total{result=\"suppressed\"} %llu\n",
                (unsigned long long)em.suppressed);
        fprintf(f, "strait_controller_k8s_events_total{result=\"error\"} %llu\n",
                (unsigned long long)em.errors);
    }
}

char *health_render_metrics(unsigned dataplanes)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    int k;

    if (!f) return NULL;
    family(f, "strait_controller_snapshot_generation", "gauge",
           "Generation of the last published snapshot (0 before the first).");
    fprintf(f, "strait_controller_snapshot_generation %llu\n", (unsigned long long)hc.generation);
    family(f, "strait_controller_snapshots_published_total", "counter",
           "Snapshots handed to the publisher.");
    fprintf(f, "strait_controller_snapshots_published_total %llu\n",
            (unsigned long long)hc.published);
    family(f, "strait_controller_reloads_total", "counter",
           "Reload cycles (load, build, compare, publish), including failed ones.");
    fprintf(f, "strait_controller_reloads_total %llu\n", (unsigned long long)hc.reloads);
    family(f, "strait_controller_reload_errors_total", "counter",
           "Reload cycles that failed and kept the previous snapshot.");
    fprintf(f, "strait_controller_reload_errors_total %llu\n",
            (unsigned long long)hc.reload_errors);
    family(f, "strait_controller_objects", "gauge",
           "Objects accepted by the last build, by kind (Ingress: of our class, routed).");
    for (k = 0; k < MODEL_KIND_COUNT; k++)
        fprintf(f, "strait_controller_objects{kind=\"%s\"} %u\n",
                model_kind_name((enum model_kind)k), hc.objects[k]);
    family(f, "strait_controller_objects_rejected", "gauge",
           "Files and objects rejected by the last build (see event=object_rejected).");
    fprintf(f, "strait_controller_objects_rejected %u\n", hc.rejected);
    family(f, "strait_controller_dataplanes_connected", "gauge",
           "Data planes connected to the snapshot socket.");
    fprintf(f, "strait_controller_dataplanes_connected %u\n", dataplanes);
    family(f, "strait_controller_acks_total", "counter", "ACK replies from data planes.");
    fprintf(f, "strait_controller_acks_total %llu\n", (unsigned long long)hc.acks);
    family(f, "strait_controller_nacks_total", "counter", "NACK replies from data planes.");
    fprintf(f, "strait_controller_nacks_total %llu\n", (unsigned long long)hc.nacks);
    family(f, "strait_controller_snapshot_build_duration_seconds", "histogram",
           "Time to build and encode a snapshot from the cache.");
    health_hist_render(f, "strait_controller_snapshot_build_duration_seconds", "", &hc.build);
    family(f, "strait_controller_snapshot_bytes", "gauge",
           "Size of the last built snapshot frame.");
    fprintf(f, "strait_controller_snapshot_bytes %zu\n", hc.snapshot_bytes);
    if (hc.cluster) health_render_cluster(f);
    health_render_leader(f);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* JSON of the frame the publisher serves, or NULL (none yet, or out of memory). */
static char *health_snapshot_json(struct publisher *pub)
{
    struct snapwire_snapshot s;
    const void *frame;
    char err[256], *json;
    size_t len;

    if (!(frame = publisher_current(pub, &len))) return NULL;
    if (snapwire_decode(frame, len, &s, err, sizeof(err))) return NULL;
    json = snapwire_to_json(&s);
    snapwire_free(&s);
    return json;
}

static int health_handle(void *arg, const char *method, const char *path, struct adminsrv_reply *r)
{
    struct health *h = arg;

    (void)method;
    if (h->magic != HEALTH_MAGIC) abort();
    if (!strcmp(path, "/healthz")) return adminsrv_reply_text(r, 200, "ok\n");
    if (!strcmp(path, "/readyz")) {
        char *text;
        if (hc.unready[0]) {
            if (asprintf(&text, "%s\n", hc.unready) < 0) text = NULL;
            return adminsrv_reply_take(r, 503, NULL, text);
        }
        return hc.generation ? adminsrv_reply_text(r, 200, "ready\n")
                             : adminsrv_reply_text(r, 503, "no snapshot yet\n");
    }
    if (!strcmp(path, "/metrics"))
        return adminsrv_reply_take(r, 200, HEALTH_PROM_TYPE,
                                   health_render_metrics(publisher_clients(h->pub)));
    if (!strcmp(path, "/snapshot")) {
        if (!publisher_current(h->pub, NULL))
            return adminsrv_reply_text(r, 503, "no snapshot yet\n");
        return adminsrv_reply_take(r, 200, "application/json", health_snapshot_json(h->pub));
    }
    return 1;
}

struct health *health_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                            struct publisher *pub, char *err, size_t errlen)
{
    struct health *h = calloc(1, sizeof(*h));

    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->magic = HEALTH_MAGIC;
    h->pub = pub;
    h->srv = adminsrv_start(loop, sa, salen, health_handle, h, err, errlen);
    if (!h->srv) goto free_h;
    return h;

free_h:
    free(h);
    return NULL;
}

void health_stop(struct health *h)
{
    if (!h) return;
    adminsrv_stop(h->srv);
    h->magic = 0;
    free(h);
}
