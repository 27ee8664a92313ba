/*
 * admin: the data plane's operator endpoints on top of common/adminsrv.
 *
 * Does: GET|HEAD /ready (200 once a snapshot is applied, else 503), /live, /snapshot (JSON
 * dump of the current snapshot, 503 before one), /metrics (Prometheus text). Everything
 * else (404, 405, limits, timeouts, headers) is adminsrv's.
 * Does not: speak HTTP itself, or take snapshot references.
 * Invariant: runs on the main loop only, so it may read the controller client's current
 * snapshot without a reference (the main loop is also the only one that swaps it).
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adminsrv.h"
#include "metrics.h"

#define ADMIN_MAGIC 0x41444d4eu /* "ADMN" */

struct admin {
    uint32_t magic;
    struct adminsrv *srv;
    admin_current_fn current;
    void *arg;
};

static int admin_handle(void *arg, const char *method, const char *path, struct adminsrv_reply *r)
{
    struct admin *a = arg;
    struct snapshot *s;

    (void)method;
    if (a->magic != ADMIN_MAGIC) abort();
    s = a->current(a->arg);
    if (!strcmp(path, "/ready"))
        return s ? adminsrv_reply_text(r, 200, "ready\n")
                 : adminsrv_reply_text(r, 503, "no snapshot\n");
    if (!strcmp(path, "/live")) return adminsrv_reply_text(r, 200, "live\n");
    if (!strcmp(path, "/snapshot")) {
        if (!s) return adminsrv_reply_text(r, 503, "no snapshot\n");
        return adminsrv_reply_take(r, 200, "application/json", snapwire_to_json(&s->sw));
    }
    if (!strcmp(path, "/metrics"))
        return adminsrv_reply_take(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                                   metrics_render());
    return 1;
}

struct admin *admin_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                          admin_current_fn current, void *arg, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->magic = ADMIN_MAGIC;
    a->current = current;
    a->arg = arg;
    a->srv = adminsrv_start(loop, sa, salen, admin_handle, a, err, errlen);
    if (!a->srv) goto free_admin;
    return a;

free_admin:
    free(a);
    return NULL;
}

void admin_stop(struct admin *a)
{
    if (!a) return;
    adminsrv_stop(a->srv);
    a->magic = 0;
    free(a);
}
