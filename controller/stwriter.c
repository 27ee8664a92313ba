/*
 * stwriter: the per-object status writer shared by the Ingress (status.c) and Gateway
 * (gwstatus.c) status modules.
 *
 * Does: keeps the set of objects the last sync named, sorted by (namespace, name); while
 * leading, gives each the request it needs (the module's ops decide which: a GET while its
 * status is unknown, a merge patch of .../NAME/status when it differs, nothing when it is
 * right), at most STWRITER_MAX_INFLIGHT at once, through a token bucket (qps, burst), round
 * robin from a cursor so that a bucket that runs dry serves the next entry first. A failure
 * (conflict, 429, 5xx, no answer, an answer that does not parse) forgets what was known of
 * the object and retries it after an exponential backoff with jitter, never before a 429's
 * Retry-After; a success resets the backoff. Counts writes, write errors and reads.
 * Does not: know what a status is (the ops table), decide leadership, or send anything of
 * its own accord while not leading.
 * Invariants: nothing is sent while not leading; at most one request per object in flight;
 * inflight is the number of entries with a request; losing leadership cancels every request
 * and forgets every status and backoff.
 */
#include "stwriter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerof.h"
#include "kobj.h"
#include "kube_client.h"
#include "log.h"

#define STWRITER_MAGIC 0x53545752u       /* "STWR" */
#define STWRITER_ENTRY_MAGIC 0x53545745u /* "STWE" */
#define STWRITER_MERGE_PATCH "application/merge-patch+json"

/* ---- shared decisions ---- */

double stwriter_backoff_next(double backoff)
{
    backoff = backoff ? backoff * 2 : STWRITER_BACKOFF_MIN;
    return backoff > STWRITER_BACKOFF_MAX ? STWRITER_BACKOFF_MAX : backoff;
}

double stwriter_retry_at(double now, double backoff, double retry_after, double u)
{
    double t = now + backoff * (0.75 + 0.5 * u);

    return retry_after > 0 && now + retry_after > t ? now + retry_after : t;
}

double stwriter_retry_after(const struct kube_response *r)
{
    return r->status == 429 && r->retry_after > 0 ? r->retry_after : 0;
}

int stwriter_parse_object(const char *body, size_t len, struct kobj_docs *docs, char *err,
                          size_t errlen)
{
    if (kobj_parse_json(body, len, docs, err, errlen)) return -1;
    if (docs->n != 1 || docs->docs[0]->type != KOBJ_MAP) {
        snprintf(err, errlen, "not a JSON object");
        return -1;
    }
    return 0;
}

char *stwriter_body_take(yajl_gen g)
{
    const unsigned char *buf;
    char *out = NULL;
    size_t len;

    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 1))) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

const char *stwriter_failure_text(const struct kube_response *r, const char *err, char *q, size_t n)
{
    struct kube_status st;

    if (kube_client_parse_status(r->body, r->body_len, &st)) st.message[0] = '\0';
    if (r->status == 200) snprintf(st.message, sizeof(st.message), "bad answer: %s", err);
    return log_quote(q, n, st.message[0] ? st.message : r->error);
}

/*
 * The request e needs at now: none while one is in flight or when its status is known to be
 * right; none before its retry time either (*later is then set to that time); else what the
 * module says (ops->need).
 */
static enum stwriter_op stw_entry_op(struct stwriter_entry *e, double now, double *later,
                                     char **body)
{
    *body = NULL;
    if (e->req || e->w->ops->done(e)) return STWRITER_NONE;
    if (e->next_try > now) {
        *later = e->next_try;
        return STWRITER_NONE;
    }
    return e->w->ops->need(e, now, later, body);
}

static int stw_take_token(struct stwriter *w, double now)
{
    w->tokens += (now - w->tokens_at) * w->qps;
    w->tokens_at = now;
    if (w->tokens > (double)w->burst) w->tokens = (double)w->burst;
    if (w->tokens < 1.) return 0;
    w->tokens -= 1.;
    return 1;
}

/* ---- entries ---- */

static void stw_cancel(struct stwriter_entry *e)
{
    if (!e->req) return;
    kube_client_cancel(e->req);
    e->req = NULL;
    e->op = STWRITER_NONE;
    e->w->inflight--;
}

void stwriter_entry_reset(struct stwriter_entry *e)
{
    stw_cancel(e);
    e->w->ops->forget(e);
    e->next_try = 0;
    e->backoff = 0;
}

static struct stwriter_entry *stw_entry_new(struct stwriter *w, const char *ns, const char *name)
{
    size_t ln = strlen(ns) + 1, lm = strlen(name) + 1;
    struct stwriter_entry *e = calloc(1, w->ops->entry_size);

    if (!e || !(e->ns = malloc(ln + lm))) {
        free(e);
        return NULL;
    }
    memcpy(e->ns, ns, ln);
    e->name = e->ns + ln;
    memcpy(e->name, name, lm);
    e->magic = STWRITER_ENTRY_MAGIC;
    e->w = w;
    return e;
}

static void stw_entry_free(struct stwriter_entry *e)
{
    stw_cancel(e);
    e->w->ops->forget(e);
    if (e->w->ops->clear) e->w->ops->clear(e);
    e->magic = 0;
    free(e->ns);
    free(e);
}

static void stw_retry_later(struct stwriter_entry *e, double retry_after)
{
    e->backoff = stwriter_backoff_next(e->backoff);
    e->next_try = stwriter_retry_at(ev_now(e->w->loop), e->backoff, retry_after, drand48());
}

/* ---- requests ---- */

static void stw_on_done(void *arg, const struct kube_response *r)
{
    struct stwriter_entry *e = arg;
    struct stwriter *w = e->w;
    char err[256], q[600];
    enum stwriter_op op = e->op;
    int kept;

    if (e->magic != STWRITER_ENTRY_MAGIC) abort();
    e->req = NULL;
    e->op = STWRITER_NONE;
    w->inflight--;
    if (r->status == 200 &&
        (kept = w->ops->answer(e, op, r->body, r->body_len, err, sizeof(err))) >= 0) {
        if (op == STWRITER_PATCH) {
            w->counts->writes++;
            e->backoff = 0;
            /* the server kept something else: do not write again at once */
            if (kept) stw_retry_later(e, 0);
        } else {
            w->counts->reads++;
        }
        stwriter_pump(w);
        return;
    }
    if (op == STWRITER_PATCH) w->counts->write_errors++;
    if (op == STWRITER_GET) w->counts->reads++;
    log_warn("status_update_failed", "%sobject=%s/%s verb=%s status=%ld reason=%s",
             w->ops->log_prefix, e->ns, e->name, op == STWRITER_PATCH ? "patch" : "get", r->status,
             stwriter_failure_text(r, err, q, sizeof(q)));
    w->ops->forget(e); /* read it again before the next write */
    stw_retry_later(e, stwriter_retry_after(r));
    stwriter_pump(w);
}

/* Starts a GET (body NULL) or the PATCH of body for e. Returns 0, or -1 (logged). */
static int stw_start(struct stwriter *w, struct stwriter_entry *e, const char *body)
{
    char path[700], err[256];

    snprintf(path, sizeof(path), "%s/namespaces/%s/%s/%s%s", w->ops->api, e->ns, w->ops->resource,
             e->name, body ? "/status" : "");
    e->op = body ? STWRITER_PATCH : STWRITER_GET;
    e->req = kube_client_request(w->client, body ? "PATCH" : "GET", path,
                                 body ? STWRITER_MERGE_PATCH : NULL, body, body ? strlen(body) : 0,
                                 STWRITER_TIMEOUT, stw_on_done, e, err, sizeof(err));
    if (!e->req) {
        e->op = STWRITER_NONE;
        log_warn("status_update_failed", "%sobject=%s/%s status=0 reason=\"%s\"",
                 w->ops->log_prefix, e->ns, e->name, err);
        return -1;
    }
    w->inflight++;
    return 0;
}

void stwriter_pump(struct stwriter *w)
{
    double now = ev_now(w->loop), next = HUGE_VAL, due;
    size_t scanned;
    char *body;

    ev_timer_stop(w->loop, &w->timer);
    if (!w->leading) return;
    if (w->ops->prepare && !w->ops->prepare(w, now, &next)) goto arm;
    for (scanned = 0; scanned < w->n && w->inflight < STWRITER_MAX_INFLIGHT; scanned++) {
        struct stwriter_entry *e = w->e[w->cursor];
        double later = HUGE_VAL;
        enum stwriter_op op = stw_entry_op(e, now, &later, &body);
        if (op == STWRITER_NONE) {
            if (later < next) next = later;
            goto skip;
        }
        if (!stw_take_token(w, now)) {
            free(body);
            due = now + (1. - w->tokens) / w->qps;
            if (due < next) next = due;
            break; /* this entry goes first next time */
        }
        if (stw_start(w, e, body)) {
            stw_retry_later(e, 0);
            if (e->next_try < next) next = e->next_try;
        }
        free(body);
    skip:
        w->cursor = (w->cursor + 1) % w->n;
    }
arm:
    if (next < HUGE_VAL) {
        ev_timer_set(&w->timer, next > now ? next - now : 0., 0.);
        ev_timer_start(w->loop, &w->timer);
    }
}

static void stw_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct stwriter *w = container_of(t, struct stwriter, timer);

    (void)loop;
    (void)revents;
    if (w->magic != STWRITER_MAGIC) abort();
    stwriter_pump(w);
}

/* ---- the set ---- */

void stwriter_init(struct stwriter *w, const struct stwriter_ops *ops,
                   struct stwriter_counts *counts, struct ev_loop *loop, struct kube_client *client,
                   double qps, unsigned burst)
{
    memset(w, 0, sizeof(*w));
    w->magic = STWRITER_MAGIC;
    w->ops = ops;
    w->counts = counts;
    w->loop = loop;
    w->client = client;
    w->qps = qps > 0 ? qps : STWRITER_QPS;
    w->burst = burst ? burst : STWRITER_BURST;
    w->tokens = (double)w->burst;
    w->tokens_at = ev_now(loop);
    ev_timer_init(&w->timer, stw_on_timer, 0., 0.);
}

struct stw_key {
    const char *ns, *name;
    const void *target;
};

static int stw_cmp_key(const void *pa, const void *pb)
{
    const struct stw_key *a = pa, *b = pb;
    int r = strcmp(a->ns, b->ns);

    return r ? r : strcmp(a->name, b->name);
}

static int stw_cmp_entry(const struct stwriter_entry *e, const struct stw_key *k)
{
    int r = strcmp(e->ns, k->ns);

    return r ? r : strcmp(e->name, k->name);
}

int stwriter_sync(struct stwriter *w, const void *targets, size_t n, size_t stride)
{
    struct stw_key *keys = NULL;
    struct stwriter_entry **next = NULL, *e;
    size_t i, j = 0, k = 0, out = 0;
    int r = 1, fresh;

    if (w->magic != STWRITER_MAGIC) abort();
    if (n && (!(keys = malloc(n * sizeof(*keys))) || !(next = calloc(n, sizeof(*next))))) goto oom;
    for (i = 0; i < n; i++) {
        const void *t = (const char *)targets + i * stride;
        w->ops->target_key(t, &keys[k].ns, &keys[k].name);
        keys[k].target = t;
        if (keys[k].ns && keys[k].name) k++;
    }
    if (k > 1) qsort(keys, k, sizeof(*keys), stw_cmp_key);
    /* merge two sorted lists: keep known entries, make new ones, drop the rest */
    for (i = 0; i < k; i++) {
        if (out && !stw_cmp_entry(next[out - 1], &keys[i])) continue;
        while (j < w->n && (r = stw_cmp_entry(w->e[j], &keys[i])) < 0)
            j++;
        fresh = 0;
        if (j < w->n && !r) {
            e = w->e[j];
            e->seen = 1;
            j++;
        } else if (!(e = stw_entry_new(w, keys[i].ns, keys[i].name))) {
            goto oom_next;
        } else {
            fresh = 1;
        }
        if (w->ops->update(e, keys[i].target, fresh)) {
            if (fresh) stw_entry_free(e);
            goto oom_next;
        }
        next[out++] = e;
    }
    for (j = 0; j < w->n; j++) {
        if (w->e[j]->seen)
            w->e[j]->seen = 0;
        else
            stw_entry_free(w->e[j]);
    }
    free(w->e);
    w->e = next;
    w->n = out;
    w->cursor = 0;
    free(keys);
    stwriter_pump(w);
    return 0;

oom_next:
    for (i = 0; i < out; i++)
        if (next[i]->seen)
            next[i]->seen = 0;
        else
            stw_entry_free(next[i]);
    for (j = 0; j < w->n; j++)
        w->e[j]->seen = 0;
oom:
    free(next);
    free(keys);
    return -1;
}

void stwriter_set_leader(struct stwriter *w, int leading)
{
    size_t i;

    if (w->magic != STWRITER_MAGIC) abort();
    if (leading == w->leading) return;
    w->leading = leading;
    if (!leading) {
        for (i = 0; i < w->n; i++)
            stwriter_entry_reset(w->e[i]);
        ev_timer_stop(w->loop, &w->timer);
        return;
    }
    w->tokens = (double)w->burst;
    w->tokens_at = ev_now(w->loop);
    stwriter_pump(w);
}

void stwriter_fini(struct stwriter *w)
{
    size_t i;

    if (w->magic != STWRITER_MAGIC) abort();
    for (i = 0; i < w->n; i++)
        stw_entry_free(w->e[i]);
    free(w->e);
    w->e = NULL;
    w->n = 0;
    ev_timer_stop(w->loop, &w->timer);
    w->magic = 0;
}
