/*
 * events: core/v1 Events for rejected objects, written by the leader.
 *
 * Does: remembers each (kind, namespace, name, uid, reason, message) key the snapshot builds
 * report, in a table sorted by key, and turns occurrences into writes like client-go's
 * EventCorrelator: the first occurrence creates an Event (type Warning, named
 * "<object>.<hex nanoseconds>" as client-go names them, source.component and
 * reportingComponent EVENTS_COMPONENT, involvedObject with uid and resourceVersion when
 * known); later occurrences are dropped until `repeat` seconds after the last write, then
 * the next one bumps count and lastTimestamp with a JSON merge patch (a new Event carrying
 * the count on, if the old one expired: 404). Writes share a token bucket (EVENTS_QPS,
 * EVENTS_BURST, EVENTS_MAX_INFLIGHT) and are retried with backoff EVENTS_MAX_TRIES times.
 * Keys not reported for `ttl` seconds are forgotten, and at most EVENTS_MAX_KEYS are kept
 * besides those of the latest report.
 * Does not: decide what is rejected (snapbuild, kube_decode), write while not leading, or
 * aggregate different messages of one object into one Event (client-go's EventAggregator):
 * our messages name the failing backend, so distinct messages are distinct problems.
 * Invariants: at most one write per key in flight; count and timestamps in the table are
 * what the API holds (changed only when a write succeeded); repeat decisions use the
 * monotonic loop clock, Event timestamps the wall clock.
 */
#include "events.h"

#include <ev.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "jsongen.h"
#include "kube_client.h"
#include "log.h"

#define EVENTS_MAGIC 0x45564e54u /* "EVNT" */
#define EVENTS_ENTRY_MAGIC 0x45564e45u
#define EVENTS_PATCH_TYPE "application/merge-patch+json"
#define EVENTS_BACKOFF 0.5 /* first retry; doubles */

static struct events_metrics em;

/* ---- pure part ---- */

enum events_action events_decide(int created, int busy, double last_write, double now,
                                 double repeat)
{
    if (busy) return EVENTS_SKIP;
    if (!created) return EVENTS_CREATE;
    return now - last_write >= repeat ? EVENTS_PATCH : EVENTS_SKIP;
}

const char *events_reason_for_decode(const char *message)
{
    if (message && (strstr(message, ": path \"") || strstr(message, ": pathType") ||
                    strstr(message, "unsupported pathType")))
        return "InvalidPath";
    return "Rejected";
}

void events_format_time(double t, char *buf, size_t n)
{
    time_t sec = (time_t)t;
    struct tm tm;

    gmtime_r(&sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- the table ---- */

/* an item's fields; the first EK_RV are the key, the resourceVersion is just the newest seen */
enum { EK_KIND = 0, EK_NS, EK_NAME, EK_UID, EK_REASON, EK_MESSAGE, EK_RV, EK_N };

struct ev_entry {
    unsigned magic;
    struct events *ev;
    char *f[EK_N];        /* key fields in one allocation (f[0]); f[EK_RV] malloc'd on its own */
    char event_name[256]; /* metadata.name of the Event, "" until one was created */
    long count;           /* as the API holds it */
    double first_wall, last_wall;
    double last_write; /* loop time of the last successful write */
    double last_seen;  /* loop time of the last report naming it */
    int in_latest;     /* named by the most recent report */
    enum events_action want;
    int tries;
    double next_try;
    struct kube_request *req;
    char w_name[256]; /* the write in flight */
    long w_count;
    double w_first, w_last;
};

struct events {
    unsigned magic;
    struct ev_loop *loop;
    struct kube_client *client;
    char component[128], instance[256], host[256];
    double repeat, ttl;
    int leading;
    struct ev_entry **e;
    size_t n, cap;
    unsigned inflight;
    double tokens, tokens_at;
    ev_timer timer;
};

static const char *ev_str(const char *s)
{
    return s ? s : "";
}

/* The item's key field k (messages are cut at EVENTS_MAX_MESSAGE on a UTF-8 boundary). */
static size_t ev_field_len(const char *s, int k)
{
    size_t n = strlen(s);

    if (k == EK_MESSAGE && n > EVENTS_MAX_MESSAGE) {
        n = EVENTS_MAX_MESSAGE;
        while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return n;
}

static void ev_item_fields(const struct events_item *it, const char *f[EK_N])
{
    f[EK_KIND] = ev_str(it->kind);
    f[EK_NS] = ev_str(it->ns);
    f[EK_NAME] = ev_str(it->name);
    f[EK_UID] = ev_str(it->uid);
    f[EK_REASON] = ev_str(it->reason);
    f[EK_MESSAGE] = ev_str(it->message);
    f[EK_RV] = ev_str(it->resource_version);
}

static int ev_cmp_key(struct ev_entry *const e, const char *const f[EK_N])
{
    size_t n;
    int k, r;

    for (k = 0; k < EK_RV; k++) {
        if (k != EK_MESSAGE) {
            if ((r = strcmp(e->f[k], f[k]))) return r;
            continue;
        }
        n = ev_field_len(f[k], k);
        if ((r = strncmp(e->f[k], f[k], n))) return r;
        if (e->f[k][n]) return 1;
    }
    return 0;
}

/* Index of the key, or where it would go (*found 0). */
static size_t ev_find(const struct events *ev, const char *const f[EK_N], int *found)
{
    size_t lo = 0, hi = ev->n, mid;
    int r;

    *found = 0;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = ev_cmp_key(ev->e[mid], f);
        if (!r) {
            *found = 1;
            return mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct ev_entry *ev_entry_new(struct events *ev, const char *const f[EK_N])
{
    size_t len[EK_N], total = 0;
    struct ev_entry *e;
    char *p;
    int k;

    for (k = 0; k < EK_RV; k++)
        total += (len[k] = ev_field_len(f[k], k)) + 1;
    if (!(e = calloc(1, sizeof(*e))) || !(p = malloc(total))) {
        free(e);
        return NULL;
    }
    if (!(e->f[EK_RV] = strdup(f[EK_RV]))) {
        free(p);
        free(e);
        return NULL;
    }
    for (k = 0; k < EK_RV; k++) {
        e->f[k] = p;
        memcpy(p, f[k], len[k]);
        p[len[k]] = '\0';
        p += len[k] + 1;
    }
    e->magic = EVENTS_ENTRY_MAGIC;
    e->ev = ev;
    return e;
}

static void ev_cancel(struct ev_entry *e)
{
    if (!e->req) return;
    kube_client_cancel(e->req);
    e->req = NULL;
    e->ev->inflight--;
}

static void ev_entry_free(struct ev_entry *e)
{
    ev_cancel(e);
    e->magic = 0;
    free(e->f[0]);
    free(e->f[EK_RV]);
    free(e);
}

static void ev_remove_at(struct events *ev, size_t i)
{
    ev_entry_free(ev->e[i]);
    memmove(&ev->e[i], &ev->e[i + 1], (ev->n - i - 1) * sizeof(ev->e[0]));
    ev->n--;
}

/*
 * Forgets keys nobody reported for ttl, then the stalest ones beyond EVENTS_MAX_KEYS. Keys of
 * the latest report are never dropped: forgetting one would make the next build create its
 * Event again, so the current set is kept whatever its size.
 */
static void ev_expire(struct events *ev, double now)
{
    size_t i, oldest;

    for (i = ev->n; i-- > 0;)
        if (!ev->e[i]->in_latest && !ev->e[i]->req && ev->e[i]->last_seen + ev->ttl <= now)
            ev_remove_at(ev, i);
    while (ev->n > EVENTS_MAX_KEYS) {
        for (i = 0, oldest = ev->n; i < ev->n; i++) {
            const struct ev_entry *e = ev->e[i];
            if (e->in_latest || e->req) continue;
            if (oldest == ev->n || e->last_seen < ev->e[oldest]->last_seen) oldest = i;
        }
        if (oldest == ev->n) break;
        ev_remove_at(ev, oldest);
    }
}

/* One occurrence of e at now, while leading. */
static void ev_consider(struct events *ev, struct ev_entry *e, double now)
{
    enum events_action a;

    if (e->want != EVENTS_SKIP) {
        em.suppressed++; /* the write already queued covers it */
        return;
    }
    a = events_decide(e->event_name[0] != '\0', e->req != NULL, e->last_write, now, ev->repeat);
    if (a == EVENTS_SKIP) {
        em.suppressed++;
        return;
    }
    e->want = a;
    e->tries = 0;
    e->next_try = 0;
}

/* ---- writing ---- */

static void ev_pump(struct events *ev);

static const char *ev_api_version(const char *kind)
{
    if (!strcmp(kind, "Ingress") || !strcmp(kind, "IngressClass")) return "networking.k8s.io/v1";
    if (!strcmp(kind, "EndpointSlice")) return "discovery.k8s.io/v1";
    if (!strcmp(kind, "Gateway") || !strcmp(kind, "AuthorizationPolicy"))
        return "strait.dev/v1alpha1";
    return "v1";
}

/* Events about cluster-scoped objects go to "default", as client-go puts them. */
static const char *ev_namespace(const struct ev_entry *e)
{
    return e->f[EK_NS][0] ? e->f[EK_NS] : "default";
}

static char *ev_gen_done(yajl_gen g)
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

static char *ev_create_body(const struct events *ev, const struct ev_entry *e)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char first[40], last[40];

    if (!g) return NULL;
    events_format_time(e->w_first, first, sizeof(first));
    events_format_time(e->w_last, last, sizeof(last));
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "apiVersion", "v1");
    jsongen_kv_str(g, "kind", "Event");
    jsongen_str(g, "metadata");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "name", e->w_name);
    jsongen_kv_str(g, "namespace", ev_namespace(e));
    yajl_gen_map_close(g);
    jsongen_str(g, "involvedObject");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "apiVersion", ev_api_version(e->f[EK_KIND]));
    jsongen_kv_str(g, "kind", e->f[EK_KIND]);
    if (e->f[EK_NS][0]) jsongen_kv_str(g, "namespace", e->f[EK_NS]);
    jsongen_kv_str(g, "name", e->f[EK_NAME]);
    if (e->f[EK_UID][0]) jsongen_kv_str(g, "uid", e->f[EK_UID]);
    if (e->f[EK_RV][0]) jsongen_kv_str(g, "resourceVersion", e->f[EK_RV]);
    yajl_gen_map_close(g);
    jsongen_kv_str(g, "reason", e->f[EK_REASON]);
    jsongen_kv_str(g, "message", e->f[EK_MESSAGE]);
    jsongen_kv_str(g, "type", "Warning");
    jsongen_str(g, "count");
    yajl_gen_integer(g, e->w_count);
    jsongen_kv_str(g, "firstTimestamp", first);
    jsongen_kv_str(g, "lastTimestamp", last);
    jsongen_str(g, "source");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "component", ev->component);
    if (ev->host[0]) jsongen_kv_str(g, "host", ev->host);
    yajl_gen_map_close(g);
    jsongen_kv_str(g, "reportingComponent", ev->component);
    jsongen_kv_str(g, "reportingInstance", ev->instance);
    yajl_gen_map_close(g);
    return ev_gen_done(g);
}

static char *ev_patch_body(const struct ev_entry *e)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char last[40];

    if (!g) return NULL;
    events_format_time(e->w_last, last, sizeof(last));
    yajl_gen_map_open(g);
    jsongen_str(g, "count");
    yajl_gen_integer(g, e->w_count);
    jsongen_kv_str(g, "lastTimestamp", last);
    jsongen_kv_str(g, "message", e->f[EK_MESSAGE]);
    yajl_gen_map_close(g);
    return ev_gen_done(g);
}

static double ev_wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The name of a new Event about object, written at wall (seconds since the epoch), as
 * client-go names them: "<object>.<unix nanoseconds in hex>", the object's name cut so the
 * whole fits in 253 bytes. Into out (n bytes).
 */
static void ev_event_name(const char *object, double wall, char *out, size_t n)
{
    const int room = 253 - 17; /* '.' and up to 16 hex digits */

    snprintf(out, n, "%.*s.%llx", room, object, (unsigned long long)(wall * 1e9));
}

/*
 * How long to wait before try number tries + 1 of a write that failed (tries attempts so
 * far): EVENTS_BACKOFF doubled per try, or the server's Retry-After when that is longer.
 * Returns the delay in seconds, or -1 when the write is to be dropped (EVENTS_MAX_TRIES).
 */
static double ev_retry_delay(int tries, double retry_after)
{
    double d;

    if (tries >= EVENTS_MAX_TRIES) return -1;
    d = EVENTS_BACKOFF * (double)(1u << tries);
    return retry_after > d ? retry_after : d;
}

enum ev_outcome {
    EV_WRITTEN, /* the API holds the write */
    EV_EXPIRED, /* the Event to bump is gone (its TTL): create a new one, count carried on */
    EV_FAILED,  /* anything else: retry with backoff */
};

/* What the answer status (0: none) to a write a (EVENTS_CREATE or _PATCH) means. */
static enum ev_outcome ev_outcome_of(enum events_action a, long status)
{
    if ((a == EVENTS_CREATE && status == 201) || (a == EVENTS_PATCH && status == 200))
        return EV_WRITTEN;
    if (a == EVENTS_PATCH && status == 404) return EV_EXPIRED;
    return EV_FAILED;
}

static void ev_on_done(void *arg, const struct kube_response *r);

static int ev_start(struct events *ev, struct ev_entry *e)
{
    char path[900], err[256], *body;
    double wall = ev_wall();

    e->w_last = wall;
    e->w_count = e->count + 1;
    if (e->want == EVENTS_CREATE) {
        e->w_first = e->count ? e->first_wall : wall;
        ev_event_name(e->f[EK_NAME], wall, e->w_name, sizeof(e->w_name));
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", ev_namespace(e));
        body = ev_create_body(ev, e);
    } else {
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events/%s", ev_namespace(e),
                 e->event_name);
        body = ev_patch_body(e);
    }
    if (!body) return -1;
    e->req = kube_client_request(ev->client, e->want == EVENTS_CREATE ? "POST" : "PATCH", path,
                                 e->want == EVENTS_CREATE ? NULL : EVENTS_PATCH_TYPE, body,
                                 strlen(body), EVENTS_TIMEOUT, ev_on_done, e, err, sizeof(err));
    free(body);
    if (!e->req) {
        log_warn("event_write_failed", "kind=%s object=%s/%s status=0 reason=\"%s\"", e->f[EK_KIND],
                 e->f[EK_NS], e->f[EK_NAME], err);
        return -1;
    }
    ev->inflight++;
    return 0;
}

static void ev_retry(struct events *ev, struct ev_entry *e, double retry_after)
{
    double d = ev_retry_delay(++e->tries, retry_after);

    if (d < 0) {
        log_warn("event_dropped", "kind=%s object=%s/%s reason=%s tries=%d", e->f[EK_KIND],
                 e->f[EK_NS], e->f[EK_NAME], e->f[EK_REASON], e->tries);
        e->want = EVENTS_SKIP;
        return;
    }
    e->next_try = ev_now(ev->loop) + d;
}

static void ev_on_done(void *arg, const struct kube_response *r)
{
    struct ev_entry *e = arg;
    struct events *ev = e->ev;
    struct kube_status st;
    enum events_action a = e->want;
    enum ev_outcome o = ev_outcome_of(a, r->status);
    char q[600];

    if (e->magic != EVENTS_ENTRY_MAGIC) abort();
    e->req = NULL;
    ev->inflight--;
    if (o == EV_WRITTEN) {
        if (a == EVENTS_CREATE) {
            memcpy(e->event_name, e->w_name, sizeof(e->event_name));
            e->first_wall = e->w_first;
            em.created++;
        } else {
            em.updated++;
        }
        e->count = e->w_count;
        e->last_wall = e->w_last;
        e->last_write = ev_now(ev->loop);
        e->want = EVENTS_SKIP;
        log_info(a == EVENTS_CREATE ? "event_created" : "event_updated",
                 "kind=%s object=%s/%s reason=%s name=%s count=%ld", e->f[EK_KIND], e->f[EK_NS],
                 e->f[EK_NAME], e->f[EK_REASON], e->event_name, e->count);
    } else if (o == EV_EXPIRED) {
        e->want = EVENTS_CREATE; /* it expired: a new one carries the count on */
        e->event_name[0] = '\0';
    } else {
        em.errors++;
        if (kube_client_parse_status(r->body, r->body_len, &st)) st.message[0] = '\0';
        log_warn("event_write_failed", "kind=%s object=%s/%s verb=%s status=%ld reason=%s",
                 e->f[EK_KIND], e->f[EK_NS], e->f[EK_NAME], a == EVENTS_CREATE ? "create" : "patch",
                 r->status, log_quote(q, sizeof(q), st.message[0] ? st.message : r->error));
        ev_retry(ev, e, r->status == 429 ? r->retry_after : 0);
    }
    ev_pump(ev);
}

static int ev_take_token(struct events *ev, double now)
{
    ev->tokens += (now - ev->tokens_at) * EVENTS_QPS;
    ev->tokens_at = now;
    if (ev->tokens > EVENTS_BURST) ev->tokens = EVENTS_BURST;
    if (ev->tokens < 1.) return 0;
    ev->tokens -= 1.;
    return 1;
}

static void ev_pump(struct events *ev)
{
    double now = ev_now(ev->loop), next = HUGE_VAL, due;
    size_t i;

    ev_timer_stop(ev->loop, &ev->timer);
    if (!ev->leading) return;
    for (i = 0; i < ev->n && ev->inflight < EVENTS_MAX_INFLIGHT; i++) {
        struct ev_entry *e = ev->e[i];
        if (e->want == EVENTS_SKIP || e->req) continue;
        if (e->next_try > now) {
            if (e->next_try < next) next = e->next_try;
            continue;
        }
        if (!ev_take_token(ev, now)) {
            due = now + (1. - ev->tokens) / EVENTS_QPS;
            if (due < next) next = due;
            break;
        }
        if (ev_start(ev, e)) {
            ev_retry(ev, e, 0);
            if (e->want != EVENTS_SKIP && e->next_try < next) next = e->next_try;
        }
    }
    if (next < HUGE_VAL) {
        ev_timer_set(&ev->timer, next > now ? next - now : 0., 0.);
        ev_timer_start(ev->loop, &ev->timer);
    }
}

static void ev_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct events *ev = container_of(w, struct events, timer);

    (void)loop;
    (void)revents;
    if (ev->magic != EVENTS_MAGIC) abort();
    ev_pump(ev);
}

/* ---- API ---- */

struct events *events_new(struct ev_loop *loop, struct kube_client *client,
                          const struct events_opts *opts, char *err, size_t errlen)
{
    struct events *ev = calloc(1, sizeof(*ev));

    if (!ev) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ev->magic = EVENTS_MAGIC;
    ev->loop = loop;
    ev->client = client;
    snprintf(ev->component, sizeof(ev->component), "%s",
             opts && opts->component ? opts->component : EVENTS_COMPONENT);
    snprintf(ev->instance, sizeof(ev->instance), "%s",
             opts && opts->instance ? opts->instance : "");
    snprintf(ev->host, sizeof(ev->host), "%s", opts && opts->host ? opts->host : "");
    ev->repeat = opts && opts->repeat > 0 ? opts->repeat : EVENTS_REPEAT;
    ev->ttl = opts && opts->ttl > 0 ? opts->ttl : EVENTS_TTL;
    ev->tokens = EVENTS_BURST;
    ev->tokens_at = ev_now(loop);
    ev_timer_init(&ev->timer, ev_on_timer, 0., 0.);
    em.enabled = 1;
    return ev;
}

int events_report(struct events *ev, const struct events_item *items, size_t n)
{
    double now = ev_now(ev->loop);
    const char *f[EK_N];
    struct ev_entry *e, **v;
    size_t i, at;
    int found, rc = 0;

    if (ev->magic != EVENTS_MAGIC) abort();
    for (i = 0; i < ev->n; i++)
        ev->e[i]->in_latest = 0;
    for (i = 0; i < n; i++) {
        ev_item_fields(&items[i], f);
        at = ev_find(ev, f, &found);
        if (found) {
            e = ev->e[at];
            /* the object's resourceVersion is not part of the key: keep the newest */
            char *rv;
            if (strcmp(e->f[EK_RV], f[EK_RV]) && (rv = strdup(f[EK_RV]))) {
                free(e->f[EK_RV]);
                e->f[EK_RV] = rv;
            }
        } else {
            if (ev->n == ev->cap) {
                size_t cap = ev->cap ? ev->cap * 2 : 64;
                if (!(v = realloc(ev->e, cap * sizeof(*v)))) {
                    rc = -1;
                    continue;
                }
                ev->e = v;
                ev->cap = cap;
            }
            if (!(e = ev_entry_new(ev, f))) {
                rc = -1;
                continue;
            }
            memmove(&ev->e[at + 1], &ev->e[at], (ev->n - at) * sizeof(ev->e[0]));
            ev->e[at] = e;
            ev->n++;
        }
        if (e->in_latest) continue; /* the same key twice in one report */
        e->in_latest = 1;
        e->last_seen = now;
        if (ev->leading) ev_consider(ev, e, now);
    }
    ev_expire(ev, now);
    ev_pump(ev);
    return rc;
}

void events_set_leader(struct events *ev, int leading)
{
    double now = ev_now(ev->loop);
    size_t i;

    if (ev->magic != EVENTS_MAGIC) abort();
    if (leading == ev->leading) return;
    ev->leading = leading;
    for (i = 0; i < ev->n; i++) {
        struct ev_entry *e = ev->e[i];
        if (!leading) {
            ev_cancel(e);
            e->want = EVENTS_SKIP;
        } else if (e->in_latest) {
            ev_consider(ev, e, now);
        }
    }
    if (leading) {
        ev->tokens = EVENTS_BURST;
        ev->tokens_at = now;
    }
    ev_pump(ev);
}

void events_free(struct events *ev)
{
    size_t i;

    if (!ev) return;
    if (ev->magic != EVENTS_MAGIC) abort();
    for (i = 0; i < ev->n; i++)
        ev_entry_free(ev->e[i]);
    free(ev->e);
    ev_timer_stop(ev->loop, &ev->timer);
    ev->magic = 0;
    free(ev);
}

void events_metrics(struct events_metrics *out)
{
    *out = em;
}
