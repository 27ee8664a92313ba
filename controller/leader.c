/*
 * leader: leader election on a coordination.k8s.io/v1 Lease.
 *
 * Does: client-go's LeaderElector on the libev loop. A candidate tries every retry period
 * (jittered by up to LEADER_JITTER times more): GET the Lease; absent → POST it holding it
 * (409 AlreadyExists: another replica was first); held by another whose record has not
 * changed for its leaseDurationSeconds, as judged by this replica's monotonic clock from when
 * it first saw that record → take it over; else wait. The leader renews every retry period
 * with an optimistic write guarded by the resourceVersion of its last read or write (falling
 * back to GET + write when that fails), and steps down when no renewal has succeeded for the
 * renew deadline. On shutdown (leader_release) the leader writes the record with no holder
 * and a one-second duration, so a follower takes over at its next try. Writes are JSON merge
 * patches carrying metadata.resourceVersion, which the API server treats as a precondition
 * (409 Conflict: someone else wrote first), so fields we do not own (labels, annotations)
 * survive.
 * Does not: fence. As client-go says, two replicas may both believe they lead for a moment
 * when clocks run at very different rates; the renew deadline being shorter than the lease
 * duration leaves a margin for that. Nor does it act on leadership: callers get callbacks.
 * Invariants: at most one request in flight; the record's times are wall-clock text for
 * humans, every decision uses the monotonic clock; `leading` only turns on after a write of
 * a record naming us succeeded, and turns off before the release is sent.
 */
#include "leader.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "jsongen.h"
#include "kobj.h"
#include "kube_client.h"
#include "kube_config.h"
#include "log.h"

#define LEADER_MAGIC 0x4c454144u /* "LEAD" */
#define LEADER_MIN_TIMEOUT 0.05  /* a request gets at least this long */
#define LEADER_PATCH "application/merge-patch+json"

static struct leader_metrics lm;

/* ---- pure part ---- */

static int le_same_record(const struct leader_record *a, const struct leader_record *b)
{
    return !strcmp(a->holder, b->holder) && a->duration == b->duration &&
           !strcmp(a->acquire_time, b->acquire_time) && !strcmp(a->renew_time, b->renew_time) &&
           a->transitions == b->transitions;
}

int leader_observe(struct leader_observed *o, const struct leader_record *r, double now)
{
    if (o->have && le_same_record(&o->rec, r)) return 0;
    o->have = 1;
    o->rec = *r;
    o->time = now;
    return 1;
}

int leader_lease_valid(const struct leader_observed *o, double now)
{
    return o->have && o->time + (double)o->rec.duration > now;
}

int leader_is_holder(const struct leader_observed *o, const char *identity)
{
    return o->have && o->rec.holder[0] && !strcmp(o->rec.holder, identity);
}

enum leader_action leader_decide(const struct leader_observed *o, const char *identity, double now)
{
    if (leader_is_holder(o, identity)) return LEADER_RENEW;
    if (o->have && o->rec.holder[0] && leader_lease_valid(o, now)) return LEADER_WAIT;
    return LEADER_ACQUIRE;
}

void leader_next_record(const struct leader_observed *o, enum leader_action a, const char *identity,
                        long duration, const char *now_text, struct leader_record *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->holder, sizeof(out->holder), "%s", identity);
    out->duration = duration;
    snprintf(out->acquire_time, sizeof(out->acquire_time), "%s", now_text);
    snprintf(out->renew_time, sizeof(out->renew_time), "%s", now_text);
    if (!o || !o->have) return;
    if (a == LEADER_RENEW) {
        memcpy(out->acquire_time, o->rec.acquire_time, sizeof(out->acquire_time));
        out->transitions = o->rec.transitions;
    } else {
        out->transitions = o->rec.transitions + 1;
    }
}

void leader_release_record(const struct leader_observed *o, const char *now_text,
                           struct leader_record *out)
{
    memset(out, 0, sizeof(*out));
    out->duration = 1;
    snprintf(out->acquire_time, sizeof(out->acquire_time), "%s", now_text);
    snprintf(out->renew_time, sizeof(out->renew_time), "%s", now_text);
    out->transitions = o && o->have ? o->rec.transitions : 0;
}

static void le_copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
}

static long le_int(const struct kobj *doc, const char *k1, const char *k2)
{
    long v;

    return kobj_int(kobj_get(doc, k1, k2), &v) ? 0 : v;
}

int leader_parse_lease(const char *body, size_t len, struct leader_record *r, char *rv,
                       size_t rvlen, char *err, size_t errlen)
{
    struct kobj_docs docs = {0};
    const struct kobj *doc;
    const char *v;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    if (kobj_parse_json(body, len, &docs, err, errlen)) goto out;
    if (docs.n != 1 || docs.docs[0]->type != KOBJ_MAP) {
        snprintf(err, errlen, "a Lease must be a JSON object");
        goto out;
    }
    doc = docs.docs[0];
    if (!(v = kobj_str(doc, "metadata", "resourceVersion")) || !*v) {
        snprintf(err, errlen, "Lease without metadata.resourceVersion");
        goto out;
    }
    le_copy(rv, rvlen, v);
    le_copy(r->holder, sizeof(r->holder), kobj_str(doc, "spec", "holderIdentity"));
    le_copy(r->acquire_time, sizeof(r->acquire_time), kobj_str(doc, "spec", "acquireTime"));
    le_copy(r->renew_time, sizeof(r->renew_time), kobj_str(doc, "spec", "renewTime"));
    r->duration = le_int(doc, "spec", "leaseDurationSeconds");
    r->transitions = le_int(doc, "spec", "leaseTransitions");
    rc = 0;
out:
    kobj_docs_free(&docs);
    return rc;
}

/* A time field: null when empty (a Lease never written by a holder). */
static void gen_kv_time(yajl_gen g, const char *k, const char *v)
{
    jsongen_str(g, k);
    if (*v)
        jsongen_str(g, v);
    else
        yajl_gen_null(g);
}

char *leader_lease_body(const char *ns, const char *name, const char *rv,
                        const struct leader_record *r)
{
    const unsigned char *buf;
    yajl_gen g = yajl_gen_alloc(NULL);
    char *out = NULL;
    size_t len;

    if (!g) return NULL;
    yajl_gen_map_open(g);
    if (!rv) {
        jsongen_kv_str(g, "apiVersion", "coordination.k8s.io/v1");
        jsongen_kv_str(g, "kind", "Lease");
    }
    jsongen_str(g, "metadata");
    yajl_gen_map_open(g);
    if (rv) {
        jsongen_kv_str(g, "resourceVersion", rv);
    } else {
        jsongen_kv_str(g, "name", name);
        jsongen_kv_str(g, "namespace", ns);
    }
    yajl_gen_map_close(g);
    jsongen_str(g, "spec");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "holderIdentity", r->holder);
    jsongen_str(g, "leaseDurationSeconds");
    yajl_gen_integer(g, r->duration);
    gen_kv_time(g, "acquireTime", r->acquire_time);
    gen_kv_time(g, "renewTime", r->renew_time);
    jsongen_str(g, "leaseTransitions");
    yajl_gen_integer(g, r->transitions);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 1))) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

void leader_format_time(double t, char *buf, size_t n)
{
    time_t sec = (time_t)t;
    long usec = (long)((t - (double)sec) * 1e6);
    struct tm tm;

    if (usec < 0) usec = 0;
    if (usec > 999999) usec = 999999;
    gmtime_r(&sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

int leader_default_identity(char *buf, size_t n, char *err, size_t errlen)
{
    unsigned char rnd[8];
    char host[256];
    size_t i;
    int w;

    if (gethostname(host, sizeof(host))) {
        snprintf(err, errlen, "gethostname failed");
        return -1;
    }
    host[sizeof(host) - 1] = '\0';
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        snprintf(err, errlen, "getrandom failed");
        return -1;
    }
    w = snprintf(buf, n, "%s_", host);
    for (i = 0; i < sizeof(rnd) && w > 0 && (size_t)w + 2 < n; i++)
        w += snprintf(buf + w, n - (size_t)w, "%02x", rnd[i]);
    if (w < 0 || (size_t)w >= n || i < sizeof(rnd)) {
        snprintf(err, errlen, "identity does not fit");
        return -1;
    }
    return 0;
}

void leader_default_namespace(char *buf, size_t n)
{
    const char *dir = getenv("STRAIT_SERVICEACCOUNT_DIR");
    char path[4096], line[256];
    size_t len;
    FILE *f;

    snprintf(buf, n, "default");
    snprintf(path, sizeof(path), "%s/namespace", dir && *dir ? dir : KUBE_CONFIG_SA_DIR);
    if (!(f = fopen(path, "r"))) return;
    if (fgets(line, sizeof(line), f)) {
        len = strcspn(line, " \t\r\n");
        line[len] = '\0';
        if (len) snprintf(buf, n, "%s", line);
    }
    fclose(f);
}

/* ---- the elector ---- */

enum le_step { LE_IDLE = 0, LE_GET, LE_CREATE, LE_UPDATE, LE_RELEASE };

struct leader {
    unsigned magic;
    struct ev_loop *loop;
    struct kube_client *client;
    char ns[254], name[254], identity[256];
    char coll[600], obj[900]; /* the leases collection and our Lease's paths */
    double lease, deadline, retry;
    struct leader_callbacks cb;
    void *arg;
    struct leader_observed obs;
    char rv[64]; /* resourceVersion of the last read or write, "" when unknown */
    int leading;
    int fast;           /* the write in flight is the leader's optimistic renewal */
    double round_start; /* first try of the current renewal round, 0 outside one */
    enum le_step step;
    struct kube_request *req;
    ev_timer timer;
    int stopping, finished;
    void (*release_done)(void *arg);
    void *release_arg;
    char reported[256]; /* last holder given to new_leader */
    int reported_set;
    long last_err; /* status of the last warned failure, -1 none: repeats go to debug */
    uint64_t rnd;
};

static double le_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void le_wall_text(char *buf, size_t n)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    leader_format_time((double)ts.tv_sec + (double)ts.tv_nsec / 1e9, buf, n);
}

/* xorshift64*: jitter only, no need for quality */
static double le_rand01(struct leader *l)
{
    l->rnd ^= l->rnd >> 12;
    l->rnd ^= l->rnd << 25;
    l->rnd ^= l->rnd >> 27;
    return (double)((l->rnd * 2685821657736338717ull) >> 11) / (double)(1ull << 53);
}

static void le_schedule(struct leader *l, double delay)
{
    ev_timer_stop(l->loop, &l->timer);
    ev_timer_set(&l->timer, delay > 0 ? delay : 0., 0.);
    ev_timer_start(l->loop, &l->timer);
}

static int le_valid_name(const char *s)
{
    size_t i, n = strlen(s);

    if (!n || n > 253) return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.'))
            return 0;
    return 1;
}

static const char *le_q(char *buf, size_t n, const char *s)
{
    return s[0] && !strpbrk(s, " \"=\\") ? s : log_quote(buf, n, s);
}

static void le_report_holder(struct leader *l)
{
    char q[300];

    if (!l->obs.have || (l->reported_set && !strcmp(l->reported, l->obs.rec.holder))) return;
    l->reported_set = 1;
    snprintf(l->reported, sizeof(l->reported), "%s", l->obs.rec.holder);
    log_info("leader_observed", "lease=%s/%s holder=%s", l->ns, l->name,
             le_q(q, sizeof(q), l->reported[0] ? l->reported : "-"));
    if (l->cb.new_leader) l->cb.new_leader(l->arg, l->reported);
}

static void le_step_down(struct leader *l, const char *why)
{
    l->leading = 0;
    l->round_start = 0;
    lm.leading = 0;
    lm.transitions++;
    log_warn("leader_lost", "lease=%s/%s identity=%s reason=\"%s\"", l->ns, l->name, l->identity,
             why);
    if (l->cb.stopped) l->cb.stopped(l->arg);
}

static double le_follower_delay(struct leader *l)
{
    return l->retry * (1. + le_rand01(l) * LEADER_JITTER);
}

static void le_succeeded(struct leader *l)
{
    int became = !l->leading;

    l->step = LE_IDLE;
    l->round_start = 0;
    l->last_err = -1;
    if (became) {
        l->leading = 1;
        lm.leading = 1;
        lm.transitions++;
        log_info("leader_acquired", "lease=%s/%s identity=%s transitions=%ld", l->ns, l->name,
                 l->identity, l->obs.rec.transitions);
    }
    le_schedule(l, l->retry);
    le_report_holder(l);
    if (became && l->cb.started && !l->stopping) l->cb.started(l->arg);
}

/* One try failed (status: the HTTP status, 0 for none, -1 when it is not an error). */
static void le_failed(struct leader *l, long status, const char *why)
{
    char q[400];

    l->step = LE_IDLE;
    if (status >= 0 && status != l->last_err) {
        log_warn("leader_election_error", "lease=%s/%s status=%ld reason=%s", l->ns, l->name,
                 status, log_quote(q, sizeof(q), why));
        l->last_err = status;
    } else {
        log_debug("leader_try_failed", "lease=%s/%s reason=%s", l->ns, l->name,
                  log_quote(q, sizeof(q), why));
    }
    le_report_holder(l);
    if (l->leading) {
        lm.renew_failures++;
        if (le_mono() >= l->round_start + l->deadline) {
            le_step_down(l, "renew deadline passed");
            if (!l->stopping) le_schedule(l, le_follower_delay(l));
            return;
        }
        le_schedule(l, l->retry); /* client-go polls every retry period inside the deadline */
        return;
    }
    le_schedule(l, le_follower_delay(l));
}

static void le_on_done(void *arg, const struct kube_response *r);

/* How long the next request may take: a renewal must not outlive the renew deadline. */
static double le_timeout(struct leader *l)
{
    double t;

    if (!l->leading) return l->deadline;
    t = l->round_start + l->deadline - le_mono();
    return t > LEADER_MIN_TIMEOUT ? t : LEADER_MIN_TIMEOUT;
}

static int le_send(struct leader *l, enum le_step step, const char *method, const char *path,
                   const char *ctype, char *body, double timeout)
{
    char err[256];

    l->step = step;
    l->req = kube_client_request(l->client, method, path, ctype, body, body ? strlen(body) : 0,
                                 timeout, le_on_done, l, err, sizeof(err));
    free(body);
    if (!l->req) {
        l->step = LE_IDLE;
        log_warn("leader_election_error", "lease=%s/%s status=0 reason=\"%s\"", l->ns, l->name,
                 err);
        return -1;
    }
    return 0;
}

/* Writes rec over the observed Lease, guarded by l->rv. */
static int le_write(struct leader *l, enum le_step step, const struct leader_record *rec,
                    double timeout)
{
    char *body = leader_lease_body(l->ns, l->name, l->rv, rec);

    if (!body) return -1;
    return le_send(l, step, "PATCH", l->obj, LEADER_PATCH, body, timeout);
}

static void le_get(struct leader *l)
{
    l->fast = 0;
    if (le_send(l, LE_GET, "GET", l->obj, NULL, NULL, le_timeout(l)))
        le_failed(l, 0, "cannot start request");
}

static void le_try(struct leader *l)
{
    struct leader_record rec;
    char now[40];

    if (l->stopping || l->req) return;
    if (l->leading && !l->round_start) l->round_start = le_mono();
    if (l->leading && l->rv[0] && leader_lease_valid(&l->obs, le_mono())) {
        /* fast path: assume our last write is still the current version */
        le_wall_text(now, sizeof(now));
        leader_next_record(&l->obs, LEADER_RENEW, l->identity, (long)l->lease, now, &rec);
        l->fast = 1;
        if (!le_write(l, LE_UPDATE, &rec, le_timeout(l))) return;
    }
    le_get(l);
}

static void le_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct leader *l = container_of(w, struct leader, timer);

    (void)loop;
    (void)revents;
    if (l->magic != LEADER_MAGIC) abort();
    if (l->stopping) {
        if (!l->finished && l->step == LE_IDLE) {
            l->finished = 1;
            if (l->release_done) l->release_done(l->release_arg);
        }
        return;
    }
    le_try(l);
}

/* Sends the release when we are the observed holder; otherwise finishes from the loop. */
static void le_do_release(struct leader *l)
{
    struct leader_record rec;
    char now[40];

    if (leader_is_holder(&l->obs, l->identity) && l->rv[0]) {
        le_wall_text(now, sizeof(now));
        leader_release_record(&l->obs, now, &rec);
        if (!le_write(l, LE_RELEASE, &rec, LEADER_RELEASE_TIMEOUT)) return;
    }
    l->step = LE_IDLE;
    le_schedule(l, 0.);
}

/* Parses a Lease answer into the observation; a write's answer is always "new". */
static int le_take(struct leader *l, const struct kube_response *r, int written, char *why,
                   size_t whylen)
{
    struct leader_record rec;
    char rv[64];

    if (leader_parse_lease(r->body, r->body_len, &rec, rv, sizeof(rv), why, whylen)) return -1;
    if (written) l->obs.have = 0; /* client-go: a successful write resets observed time */
    leader_observe(&l->obs, &rec, le_mono());
    snprintf(l->rv, sizeof(l->rv), "%s", rv);
    return 0;
}

static void le_on_done(void *arg, const struct kube_response *r)
{
    struct leader *l = arg;
    struct leader_record rec;
    enum leader_action a;
    enum le_step step;
    char why[400], now[40], q[500], *body;
    struct kube_status st;

    if (l->magic != LEADER_MAGIC) abort();
    step = l->step;
    l->req = NULL;
    l->step = LE_IDLE;
    if (kube_client_parse_status(r->body, r->body_len, &st)) st.reason[0] = st.message[0] = '\0';
    if (r->status == 0)
        snprintf(why, sizeof(why), "%s", r->error);
    else
        snprintf(why, sizeof(why), "%s %s: %ld %s", r->method, r->path, r->status,
                 st.message[0] ? st.message : st.reason);

    if (l->stopping) {
        if (step == LE_RELEASE) {
            if (r->status == 200)
                log_info("leader_released", "lease=%s/%s identity=%s", l->ns, l->name, l->identity);
            else
                log_warn("leader_release_failed", "lease=%s/%s reason=%s", l->ns, l->name,
                         log_quote(q, sizeof(q), why));
            le_schedule(l, 0.);
            return;
        }
        /* a try was in flight: learn its outcome (a new resourceVersion), then release */
        if ((step == LE_GET && r->status == 200) || (step == LE_CREATE && r->status == 201) ||
            (step == LE_UPDATE && r->status == 200))
            le_take(l, r, step != LE_GET, why, sizeof(why));
        le_do_release(l);
        return;
    }

    switch (step) {
    case LE_GET:
        if (r->status == 404) {
            le_wall_text(now, sizeof(now));
            leader_next_record(NULL, LEADER_ACQUIRE, l->identity, (long)l->lease, now, &rec);
            body = leader_lease_body(l->ns, l->name, NULL, &rec);
            if (!body || le_send(l, LE_CREATE, "POST", l->coll, NULL, body, le_timeout(l)))
                le_failed(l, 0, "cannot start request");
            return;
        }
        if (r->status != 200) break;
        if (le_take(l, r, 0, why, sizeof(why))) break;
        a = leader_decide(&l->obs, l->identity, le_mono());
        if (a == LEADER_WAIT) {
            snprintf(why, sizeof(why), "held by %s, not expired", l->obs.rec.holder);
            /* someone else holds a valid lease: that is final, no need to wait for the
             * renew deadline (client-go's IsLeader turns false at this point too) */
            if (l->leading) le_step_down(l, "the Lease is held by another replica");
            le_failed(l, -1, why);
            return;
        }
        le_wall_text(now, sizeof(now));
        leader_next_record(&l->obs, a, l->identity, (long)l->lease, now, &rec);
        l->fast = 0;
        if (le_write(l, LE_UPDATE, &rec, le_timeout(l))) le_failed(l, 0, "cannot start request");
        return;
    case LE_CREATE:
        if (r->status == 201 && !le_take(l, r, 1, why, sizeof(why))) {
            le_succeeded(l);
            return;
        }
        if (r->status == 409) {
            le_failed(l, -1, "created by another replica first");
            return;
        }
        break;
    case LE_UPDATE:
        if (r->status == 200 && !le_take(l, r, 1, why, sizeof(why))) {
            le_succeeded(l);
            return;
        }
        if (l->fast) {
            /* client-go falls back to the slow path at once */
            log_debug("leader_fast_renew_failed", "lease=%s/%s status=%ld", l->ns, l->name,
                      r->status);
            le_get(l);
            return;
        }
        if (r->status == 409) {
            le_failed(l, -1, "another replica wrote the Lease first");
            return;
        }
        break;
    default:
        break;
    }
    le_failed(l, r->status, why);
}

static void le_durations(const struct leader_opts *opts, double *lease, double *deadline,
                         double *retry)
{
    *lease = opts->lease_duration > 0 ? opts->lease_duration : LEADER_LEASE_DURATION;
    *deadline = opts->renew_deadline > 0 ? opts->renew_deadline : LEADER_RENEW_DEADLINE;
    *retry = opts->retry_period > 0 ? opts->retry_period : LEADER_RETRY_PERIOD;
}

int leader_check_opts(const struct leader_opts *opts, char *err, size_t errlen)
{
    double lease, deadline, retry;

    le_durations(opts, &lease, &deadline, &retry);
    if (!opts->ns || !le_valid_name(opts->ns) || !opts->name || !le_valid_name(opts->name)) {
        snprintf(err, errlen, "the Lease namespace and name must be DNS names");
        return -1;
    }
    if (!opts->identity || !*opts->identity || strlen(opts->identity) >= 256) {
        snprintf(err, errlen, "the identity must be 1-255 characters");
        return -1;
    }
    if (lease < 1. || lease != (double)(long)lease) {
        snprintf(err, errlen, "the lease duration must be a whole number of seconds");
        return -1;
    }
    if (!(lease > deadline)) {
        snprintf(err, errlen, "the lease duration must be greater than the renew deadline");
        return -1;
    }
    if (!(deadline > LEADER_JITTER * retry)) {
        snprintf(err, errlen, "the renew deadline must be greater than %.1f x the retry period",
                 LEADER_JITTER);
        return -1;
    }
    return 0;
}

struct leader *leader_new(struct ev_loop *loop, struct kube_client *client,
                          const struct leader_opts *opts, const struct leader_callbacks *cb,
                          void *arg, char *err, size_t errlen)
{
    double lease, deadline, retry;
    struct leader *l;

    if (leader_check_opts(opts, err, errlen)) return NULL;
    le_durations(opts, &lease, &deadline, &retry);
    if (!(l = calloc(1, sizeof(*l)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->magic = LEADER_MAGIC;
    l->loop = loop;
    l->client = client;
    snprintf(l->ns, sizeof(l->ns), "%s", opts->ns);
    snprintf(l->name, sizeof(l->name), "%s", opts->name);
    snprintf(l->identity, sizeof(l->identity), "%s", opts->identity);
    snprintf(l->coll, sizeof(l->coll), "/apis/coordination.k8s.io/v1/namespaces/%s/leases", l->ns);
    snprintf(l->obj, sizeof(l->obj), "%s/%s", l->coll, l->name);
    l->lease = lease;
    l->deadline = deadline;
    l->retry = retry;
    if (cb) l->cb = *cb;
    l->arg = arg;
    l->last_err = -1;
    if (getrandom(&l->rnd, sizeof(l->rnd), 0) != (ssize_t)sizeof(l->rnd) || !l->rnd)
        l->rnd = (uint64_t)time(NULL) * 2654435761u + (uint64_t)getpid() + 1;
    ev_timer_init(&l->timer, le_on_timer, 0., 0.);
    lm.enabled = 1;
    return l;
}

void leader_start(struct leader *l)
{
    log_info("leader_election_started",
             "lease=%s/%s identity=%s lease_duration=%g "
             "renew_deadline=%g retry_period=%g",
             l->ns, l->name, l->identity, l->lease, l->deadline, l->retry);
    le_schedule(l, 0.);
}

int leader_is_leader(const struct leader *l)
{
    return l && l->leading;
}

const char *leader_holder(const struct leader *l)
{
    return l && l->obs.have ? l->obs.rec.holder : "";
}

void leader_release(struct leader *l, void (*done)(void *arg), void *arg)
{
    if (l->magic != LEADER_MAGIC) abort();
    if (l->stopping) return;
    l->stopping = 1;
    l->release_done = done;
    l->release_arg = arg;
    ev_timer_stop(l->loop, &l->timer);
    if (l->leading) {
        l->leading = 0;
        lm.leading = 0;
        lm.transitions++;
        log_info("leader_stepping_down", "lease=%s/%s identity=%s reason=shutdown", l->ns, l->name,
                 l->identity);
        if (l->cb.stopped) l->cb.stopped(l->arg);
    }
    if (l->req) return; /* le_on_done goes on with the release */
    le_do_release(l);
}

void leader_free(struct leader *l)
{
    if (!l) return;
    if (l->magic != LEADER_MAGIC) abort();
    kube_client_cancel(l->req);
    ev_timer_stop(l->loop, &l->timer);
    if (l->leading) lm.leading = 0;
    l->magic = 0;
    free(l);
}

void leader_metrics(struct leader_metrics *out)
{
    *out = lm;
}
