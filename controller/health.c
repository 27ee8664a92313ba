/*
 * health: what an operator or a probe asks the controller.
 *
 * Does: keep the controller's counters (reloads, publications, objects accepted and
 * rejected, ACKs and NACKs), render them as Prometheus text, and answer GET|HEAD /healthz
 * (200 while the loop runs), /readyz (200 once a first snapshot was published on the
 * listening socket, else 503), /metrics and /snapshot (JSON of the frame being served,
 * decoded on demand: admin is not the hot path) on top of common/adminsrv.
 * Does not: build snapshots or talk to data planes; it only reads the publisher.
 * Invariants: the controller is single-threaded, so the counters are plain integers touched
 * on the main loop only; *_total counters only grow.
 */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adminsrv.h"
#include "publisher.h"
#include "snapwire.h"

#define HEALTH_MAGIC 0x484c5448u /* "HLTH" */
#define HEALTH_PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"

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
} hc;

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
    if (!strcmp(path, "/readyz"))
        return hc.generation ? adminsrv_reply_text(r, 200, "ready\n")
                             : adminsrv_reply_text(r, 503, "no snapshot yet\n");
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
