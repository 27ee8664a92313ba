/*
 * status: Ingress status.loadBalancer.ingress, written by the leader.
 *
 * Does: keeps the set of Ingresses the last snapshot serves (status_sync) and, while this
 * replica leads, makes each one's status.loadBalancer.ingress equal to the published
 * addresses: a fixed list (--publish-status-address) or the publish Service's (read with GET
 * when leadership starts, when told the Services changed, and every STATUS_SERVICE_RESYNC
 * seconds: ingress-nginx reads it live too). An Ingress whose status is already right costs
 * nothing: its status is known from the cache (status_target.current) or from one GET, then
 * from each write's answer, and a write is only sent when it differs. Writes are JSON merge
 * patches on the /status subresource (they touch nothing but the addresses); failures
 * (conflict, 429, 5xx, no answer) forget what was known of that Ingress and retry with an
 * exponential backoff per Ingress (Retry-After honoured); all requests share one token
 * bucket (STATUS_QPS, STATUS_BURST) and STATUS_MAX_INFLIGHT slots.
 * Does not: decide leadership (leader.c), clear the status of Ingresses that stop being
 * ours or on shutdown, or watch Ingresses itself.
 * Invariants: nothing is sent while not leading; at most one request per Ingress in flight;
 * address lists are compared in their normalized (sorted, deduplicated) form, so the order
 * a Service lists them in never causes a write.
 */
#include "status.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ev.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "jsongen.h"
#include "kobj.h"
#include "kube_client.h"
#include "log.h"
#include "snapbuild.h"

#define STATUS_MAGIC 0x53545453u /* "STTS" */
#define STATUS_ENTRY_MAGIC 0x53544e45u
#define STATUS_PATCH "application/merge-patch+json"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static struct status_metrics sm;
static const struct status *sm_owner; /* for the pending gauge */

/* ---- pure part ---- */

static int st_cmp_addr(const void *pa, const void *pb)
{
    const struct status_addr *a = pa, *b = pb;
    int r = strcmp(a->ip, b->ip);

    return r ? r : strcmp(a->hostname, b->hostname);
}

void status_lb_normalize(struct status_lb *lb)
{
    size_t i, out = 0;

    if (lb->n > 1) qsort(lb->v, lb->n, sizeof(lb->v[0]), st_cmp_addr);
    for (i = 0; i < lb->n; i++) {
        if (out && !st_cmp_addr(&lb->v[out - 1], &lb->v[i])) continue;
        lb->v[out++] = lb->v[i];
    }
    lb->n = out;
}

int status_lb_equal(const struct status_lb *a, const struct status_lb *b)
{
    size_t i;

    if (a->n != b->n) return 0;
    for (i = 0; i < a->n; i++)
        if (st_cmp_addr(&a->v[i], &b->v[i])) return 0;
    return 1;
}

static int st_is_ip(const char *s)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* DNS-1123 subdomain, lower-cased in place. */
static int st_dns_name(char *s)
{
    size_t i, n = strlen(s), label = 0;

    if (!n || n > 253) return 0;
    for (i = 0; i < n; i++) {
        s[i] = (char)tolower((unsigned char)s[i]);
        if (s[i] == '.') {
            if (!label || s[i - 1] == '-') return 0;
            label = 0;
            continue;
        }
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
        if (s[i] == '-' && !label) return 0;
        if (++label > 63) return 0;
    }
    return label && s[n - 1] != '-';
}

static void st_copy(char *dst, size_t n, const char *src)
{
    size_t len = src ? strnlen(src, n - 1) : 0;

    if (len) memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Appends one entry; returns 0, or 1 when the list is full (counted as truncated). */
static int st_push(struct status_lb *lb, const char *ip, const char *hostname)
{
    struct status_addr *a;

    if (lb->n == STATUS_MAX_ADDRS) {
        lb->truncated = 1;
        return 1;
    }
    a = &lb->v[lb->n++];
    st_copy(a->ip, sizeof(a->ip), ip);
    st_copy(a->hostname, sizeof(a->hostname), hostname);
    return 0;
}

int status_parse_addresses(const char *list, struct status_lb *out, char *err, size_t errlen)
{
    char item[300];
    const char *p = list, *end;
    size_t len;

    memset(out, 0, sizeof(*out));
    if (!list || !*list) {
        snprintf(err, errlen, "no address given");
        return -1;
    }
    for (;;) {
        end = strchr(p, ',');
        len = end ? (size_t)(end - p) : strlen(p);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (!len || len >= sizeof(item) - 1) {
            snprintf(err, errlen, "empty or overlong address in \"%.100s\"", list);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (st_is_ip(item)) {
            st_push(out, item, NULL);
        } else if (st_dns_name(item)) {
            st_push(out, NULL, item);
        } else {
            snprintf(err, errlen, "\"%.100s\" is neither an IP address nor a DNS name", item);
            return -1;
        }
        if (!end) break;
        p = end + 1;
    }
    if (out->truncated) {
        snprintf(err, errlen, "more than %d addresses", STATUS_MAX_ADDRS);
        return -1;
    }
    status_lb_normalize(out);
    return 0;
}

/* Reads a loadBalancer.ingress sequence (entries with ip and/or hostname). */
static void st_read_lb(const struct kobj *seq, struct status_lb *out)
{
    size_t i;

    if (!seq || seq->type != KOBJ_SEQ) return;
    for (i = 0; i < seq->n; i++) {
        const char *ip = kobj_str(seq->items[i], "ip");
        const char *host = kobj_str(seq->items[i], "hostname");
        if ((ip && *ip) || (host && *host)) st_push(out, ip, host);
    }
}

static int st_parse(const char *body, size_t len, struct kobj_docs *docs, char *err, size_t errlen)
{
    if (kobj_parse_json(body, len, docs, err, errlen)) return -1;
    if (docs->n != 1 || docs->docs[0]->type != KOBJ_MAP) {
        snprintf(err, errlen, "not a JSON object");
        return -1;
    }
    return 0;
}

int status_lb_from_service(const char *body, size_t len, struct status_lb *out, char *err,
                           size_t errlen)
{
    struct kobj_docs docs = {0};
    const struct kobj *doc;
    const char *v, *type;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (st_parse(body, len, &docs, err, errlen)) goto out;
    doc = docs.docs[0];
    st_read_lb(kobj_get(doc, "status", "loadBalancer", "ingress"), out);
    type = kobj_str(doc, "spec", "type");
    if (!out->n && type && !strcmp(type, "ExternalName")) {
        if ((v = kobj_str(doc, "spec", "externalName")) && *v) st_push(out, NULL, v);
    } else if (!out->n && (v = kobj_str(doc, "spec", "clusterIP")) && *v && strcmp(v, "None")) {
        st_push(out, v, NULL);
    }
    status_lb_normalize(out);
    rc = 0;
out:
    kobj_docs_free(&docs);
    return rc;
}

int status_lb_from_ingress(const char *body, size_t len, struct status_lb *out, char *err,
                           size_t errlen)
{
    struct kobj_docs docs = {0};
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (st_parse(body, len, &docs, err, errlen)) goto out;
    st_read_lb(kobj_get(docs.docs[0], "status", "loadBalancer", "ingress"), out);
    status_lb_normalize(out);
    rc = 0;
out:
    kobj_docs_free(&docs);
    return rc;
}

char *status_patch_body(const struct status_lb *lb)
{
    const unsigned char *buf;
    yajl_gen g = yajl_gen_alloc(NULL);
    char *out = NULL;
    size_t i, len;

    if (!g) return NULL;
    yajl_gen_map_open(g);
    jsongen_str(g, "status");
    yajl_gen_map_open(g);
    jsongen_str(g, "loadBalancer");
    yajl_gen_map_open(g);
    jsongen_str(g, "ingress");
    if (!lb->n) {
        yajl_gen_null(g); /* merge patch: null removes the field */
    } else {
        yajl_gen_array_open(g);
        for (i = 0; i < lb->n; i++) {
            yajl_gen_map_open(g);
            if (lb->v[i].ip[0]) {
                jsongen_str(g, "ip");
                jsongen_str(g, lb->v[i].ip);
            }
            if (lb->v[i].hostname[0]) {
                jsongen_str(g, "hostname");
                jsongen_str(g, lb->v[i].hostname);
            }
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 1))) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

const char *status_lb_text(const struct status_lb *lb, char *buf, size_t n)
{
    size_t i, w = 0;
    int k;

    if (!n) return buf;
    buf[0] = '\0';
    if (!lb->n) snprintf(buf, n, "-");
    for (i = 0; i < lb->n && w < n; i++) {
        k = snprintf(buf + w, n - w, "%s%s%s%s", i ? "," : "", lb->v[i].ip,
                     lb->v[i].ip[0] && lb->v[i].hostname[0] ? "/" : "", lb->v[i].hostname);
        if (k < 0) break;
        w += (size_t)k;
    }
    return buf;
}

/* A compact canonical form of a normalized list, to remember per Ingress. */
static char *st_canon(const struct status_lb *lb)
{
    size_t i, len = 1;
    char *s, *p;

    for (i = 0; i < lb->n; i++)
        len += strlen(lb->v[i].ip) + strlen(lb->v[i].hostname) + 2;
    if (!(p = s = malloc(len))) return NULL;
    for (i = 0; i < lb->n; i++)
        p += sprintf(p, "%s|%s;", lb->v[i].ip, lb->v[i].hostname);
    *p = '\0';
    return s;
}

/* ---- the writer ---- */

enum st_op { ST_NONE = 0, ST_GET, ST_PATCH };

struct st_entry {
    unsigned magic;
    struct status *s;
    char *ns, *name; /* one allocation: ns, then name */
    char *current;   /* st_canon of its status when known, else NULL */
    enum st_op op;
    struct kube_request *req;
    double next_try; /* ev_now time before which it is not tried again */
    double backoff;
    int seen; /* in the latest sync (merge bookkeeping) */
};

struct status {
    unsigned magic;
    struct ev_loop *loop;
    struct kube_client *client;
    int leading;
    /* what we publish */
    int svc_mode;
    char svc_ns[254], svc_name[254];
    struct status_lb desired;
    char *desired_canon; /* NULL while unknown */
    struct kube_request *svc_req;
    double svc_last; /* ev_now of the last Service read that got an answer, 0 never */
    double svc_next; /* not before this (backoff after errors) */
    double svc_backoff;
    int svc_dirty; /* told the Services changed since the last read */
    /* the Ingresses */
    struct st_entry **e;
    size_t n, cursor;
    unsigned inflight;
    double qps, tokens, tokens_at;
    unsigned burst;
    ev_timer timer;
};

static void st_pump(struct status *s);

static int st_cmp_entry(const struct st_entry *e, const char *ns, const char *name)
{
    int r = strcmp(e->ns, ns);

    return r ? r : strcmp(e->name, name);
}

static void st_forget(struct st_entry *e)
{
    free(e->current);
    e->current = NULL;
}

static void st_cancel(struct st_entry *e)
{
    if (!e->req) return;
    kube_client_cancel(e->req);
    e->req = NULL;
    e->op = ST_NONE;
    e->s->inflight--;
}

static void st_entry_free(struct st_entry *e)
{
    st_cancel(e);
    st_forget(e);
    e->magic = 0;
    free(e->ns);
    free(e);
}

/* The backoff after one more failure: STATUS_BACKOFF_MIN, then doubled up to _MAX. */
static double st_backoff_next(double backoff)
{
    backoff = backoff ? backoff * 2 : STATUS_BACKOFF_MIN;
    return backoff > STATUS_BACKOFF_MAX ? STATUS_BACKOFF_MAX : backoff;
}

/*
 * When to try again after a failure at now: backoff scaled by 0.75 + 0.5 u (u in [0, 1): the
 * jitter; 0.5 gives backoff itself), but never before a Retry-After of retry_after seconds
 * (<= 0: none).
 */
static double st_retry_at(double now, double backoff, double retry_after, double u)
{
    double t = now + backoff * (0.75 + 0.5 * u);

    return retry_after > 0 && now + retry_after > t ? now + retry_after : t;
}

/* The Retry-After a failed answer asks us to honour: only a 429's counts, 0 when none. */
static double st_retry_after(const struct kube_response *r)
{
    return r->status == 429 && r->retry_after > 0 ? r->retry_after : 0;
}

/*
 * The request an Ingress needs at now while we publish desired (a st_canon): none while one
 * is in flight or when its status is known to be desired; none before its retry time either
 * (*later is then set to that time); else a read when its status is unknown, a write when it
 * is known and differs.
 */
static enum st_op st_entry_op(const struct st_entry *e, const char *desired, double now,
                              double *later)
{
    if (e->req || (e->current && !strcmp(e->current, desired))) return ST_NONE;
    if (e->next_try > now) {
        *later = e->next_try;
        return ST_NONE;
    }
    return e->current ? ST_PATCH : ST_GET;
}

static void st_retry_later(struct st_entry *e, double retry_after)
{
    e->backoff = st_backoff_next(e->backoff);
    e->next_try = st_retry_at(ev_now(e->s->loop), e->backoff, retry_after, drand48());
}

static void st_on_entry_done(void *arg, const struct kube_response *r)
{
    struct st_entry *e = arg;
    struct status *s = e->s;
    struct status_lb lb;
    struct kube_status st;
    char err[256], q[600], addrs[400];
    enum st_op op = e->op;

    if (e->magic != STATUS_ENTRY_MAGIC) abort();
    e->req = NULL;
    e->op = ST_NONE;
    s->inflight--;
    if (r->status == 200 && !status_lb_from_ingress(r->body, r->body_len, &lb, err, sizeof(err))) {
        st_forget(e);
        e->current = st_canon(&lb);
        if (op == ST_PATCH) {
            sm.writes++;
            e->backoff = 0;
            log_info("status_updated", "object=%s/%s addresses=%s", e->ns, e->name,
                     status_lb_text(&lb, addrs, sizeof(addrs)));
            if (s->desired_canon && e->current && strcmp(e->current, s->desired_canon)) {
                /* the server kept something else: do not write again at once */
                log_warn("status_not_applied", "object=%s/%s addresses=%s", e->ns, e->name,
                         status_lb_text(&lb, addrs, sizeof(addrs)));
                st_retry_later(e, 0);
            }
        } else {
            sm.reads++;
        }
        st_pump(s);
        return;
    }
    if (op == ST_PATCH) sm.write_errors++;
    if (op == ST_GET) sm.reads++;
    if (kube_client_parse_status(r->body, r->body_len, &st)) st.message[0] = '\0';
    if (r->status == 200) snprintf(st.message, sizeof(st.message), "bad answer: %s", err);
    log_warn("status_update_failed", "object=%s/%s verb=%s status=%ld reason=%s", e->ns, e->name,
             op == ST_PATCH ? "patch" : "get", r->status,
             log_quote(q, sizeof(q), st.message[0] ? st.message : r->error));
    st_forget(e); /* read it again before the next write */
    st_retry_later(e, st_retry_after(r));
    st_pump(s);
}

static int st_take_token(struct status *s, double now)
{
    s->tokens += (now - s->tokens_at) * s->qps;
    s->tokens_at = now;
    if (s->tokens > (double)s->burst) s->tokens = (double)s->burst;
    if (s->tokens < 1.) return 0;
    s->tokens -= 1.;
    return 1;
}

/* Starts op (ST_GET or ST_PATCH) for e. Returns 0, or -1 (logged) when it could not. */
static int st_start(struct status *s, struct st_entry *e, enum st_op op)
{
    char path[700], err[256], *body = NULL;

    snprintf(path, sizeof(path), "/apis/networking.k8s.io/v1/namespaces/%s/ingresses/%s%s", e->ns,
             e->name, op == ST_PATCH ? "/status" : "");
    if (op == ST_PATCH && !(body = status_patch_body(&s->desired))) return -1;
    e->op = op;
    e->req = kube_client_request(s->client, body ? "PATCH" : "GET", path,
                                 body ? STATUS_PATCH : NULL, body, body ? strlen(body) : 0,
                                 STATUS_TIMEOUT, st_on_entry_done, e, err, sizeof(err));
    free(body);
    if (!e->req) {
        e->op = ST_NONE;
        log_warn("status_update_failed", "object=%s/%s status=0 reason=\"%s\"", e->ns, e->name,
                 err);
        return -1;
    }
    s->inflight++;
    return 0;
}

static void st_on_service_done(void *arg, const struct kube_response *r)
{
    struct status *s = arg;
    struct status_lb lb;
    struct kube_status st;
    char err[256], q[600], addrs[400], *canon;
    double now = ev_now(s->loop);

    if (s->magic != STATUS_MAGIC) abort();
    s->svc_req = NULL;
    sm.reads++;
    if (r->status == 200 && !status_lb_from_service(r->body, r->body_len, &lb, err, sizeof(err))) {
        s->svc_last = now;
        s->svc_backoff = 0;
        if (lb.truncated)
            log_warn("publish_service_truncated", "service=%s/%s kept=%d", s->svc_ns, s->svc_name,
                     STATUS_MAX_ADDRS);
        if (!(canon = st_canon(&lb))) {
            s->svc_next = now + STATUS_BACKOFF_MIN;
        } else if (!s->desired_canon || strcmp(canon, s->desired_canon)) {
            free(s->desired_canon);
            s->desired_canon = canon;
            s->desired = lb;
            log_info("status_addresses", "service=%s/%s addresses=%s", s->svc_ns, s->svc_name,
                     status_lb_text(&lb, addrs, sizeof(addrs)));
        } else {
            free(canon);
        }
        st_pump(s);
        return;
    }
    if (kube_client_parse_status(r->body, r->body_len, &st)) st.message[0] = '\0';
    if (r->status == 200) snprintf(st.message, sizeof(st.message), "bad answer: %s", err);
    /* keep publishing what we had: a Service that vanishes for a moment must not blank
     * every Ingress */
    log_warn("publish_service_unavailable", "service=%s/%s status=%ld reason=%s", s->svc_ns,
             s->svc_name, r->status,
             log_quote(q, sizeof(q), st.message[0] ? st.message : r->error));
    if (r->status == 404) {
        s->svc_last = now; /* try again at the next change or resync */
        s->svc_backoff = 0;
    } else {
        s->svc_backoff = st_backoff_next(s->svc_backoff);
        s->svc_next = st_retry_at(now, s->svc_backoff, st_retry_after(r), 0.5); /* no jitter */
    }
    st_pump(s);
}

/* When the publish Service should be read next (0: now), or HUGE_VAL. */
static double st_service_due(const struct status *s)
{
    double due;

    if (!s->svc_mode || s->svc_req) return HUGE_VAL;
    if (!s->svc_last)
        due = 0;
    else if (s->svc_dirty)
        due = s->svc_last + STATUS_SERVICE_MIN_GAP;
    else
        due = s->svc_last + STATUS_SERVICE_RESYNC;
    return due > s->svc_next ? due : s->svc_next;
}

static void st_read_service(struct status *s)
{
    char path[600], err[256];

    s->svc_dirty = 0;
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", s->svc_ns, s->svc_name);
    s->svc_req = kube_client_request(s->client, "GET", path, NULL, NULL, 0, STATUS_TIMEOUT,
                                     st_on_service_done, s, err, sizeof(err));
    if (!s->svc_req) {
        log_warn("publish_service_unavailable", "service=%s/%s status=0 reason=\"%s\"", s->svc_ns,
                 s->svc_name, err);
        s->svc_next = ev_now(s->loop) + STATUS_BACKOFF_MAX;
    }
}

/* Starts what may start now and arms the timer for the next thing that will be due. */
static void st_pump(struct status *s)
{
    double now = ev_now(s->loop), next = HUGE_VAL, due;
    size_t scanned;

    ev_timer_stop(s->loop, &s->timer);
    if (!s->leading) return;
    if ((due = st_service_due(s)) <= now) {
        st_read_service(s);
        due = st_service_due(s);
    }
    if (due < next) next = due;
    if (s->desired_canon) {
        for (scanned = 0; scanned < s->n && s->inflight < STATUS_MAX_INFLIGHT; scanned++) {
            struct st_entry *e = s->e[s->cursor];
            double later = HUGE_VAL;
            enum st_op op = st_entry_op(e, s->desired_canon, now, &later);
            if (op == ST_NONE) {
                if (later < next) next = later;
                goto skip;
            }
            if (!st_take_token(s, now)) {
                due = now + (1. - s->tokens) / s->qps;
                if (due < next) next = due;
                break; /* this entry goes first next time */
            }
            if (st_start(s, e, op)) {
                st_retry_later(e, 0);
                if (e->next_try < next) next = e->next_try;
            }
        skip:
            s->cursor = (s->cursor + 1) % s->n;
        }
    }
    if (next < HUGE_VAL) {
        ev_timer_set(&s->timer, next > now ? next - now : 0., 0.);
        ev_timer_start(s->loop, &s->timer);
    }
}

static void st_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct status *s = container_of(w, struct status, timer);

    (void)loop;
    (void)revents;
    if (s->magic != STATUS_MAGIC) abort();
    st_pump(s);
}

/* Splits "NS/NAME" into ns and name (each 254 bytes); returns 0, or -1 with err filled. */
static int st_split_service(const char *v, char *ns, char *name, char *err, size_t errlen)
{
    const char *slash = strchr(v, '/');

    if (!slash || slash == v || (size_t)(slash - v) >= 254 || strlen(slash + 1) >= 254) {
        snprintf(err, errlen, "--publish-service wants NAMESPACE/NAME");
        return -1;
    }
    memcpy(ns, v, (size_t)(slash - v));
    ns[slash - v] = '\0';
    snprintf(name, 254, "%s", slash + 1);
    if (!st_dns_name(ns) || !st_dns_name(name) || strchr(ns, '.')) {
        snprintf(err, errlen, "--publish-service wants NAMESPACE/NAME (DNS names)");
        return -1;
    }
    return 0;
}

int status_check_opts(const struct status_opts *opts, char *err, size_t errlen)
{
    char ns[254], name[254], e2[256];
    struct status_lb lb;

    if (!!opts->publish_service == !!opts->publish_addresses) {
        snprintf(err, errlen, "give one of --publish-service and --publish-status-address");
        return -1;
    }
    if (opts->publish_service)
        return st_split_service(opts->publish_service, ns, name, err, errlen);
    if (status_parse_addresses(opts->publish_addresses, &lb, e2, sizeof(e2))) {
        snprintf(err, errlen, "--publish-status-address: %s", e2);
        return -1;
    }
    return 0;
}

struct status *status_new(struct ev_loop *loop, struct kube_client *client,
                          const struct status_opts *opts, char *err, size_t errlen)
{
    struct status *s;

    if (status_check_opts(opts, err, errlen)) return NULL;
    if (!(s = calloc(1, sizeof(*s)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->magic = STATUS_MAGIC;
    s->loop = loop;
    s->client = client;
    s->qps = opts->qps > 0 ? opts->qps : STATUS_QPS;
    s->burst = opts->burst ? opts->burst : STATUS_BURST;
    s->tokens = (double)s->burst;
    s->tokens_at = ev_now(loop);
    ev_timer_init(&s->timer, st_on_timer, 0., 0.);
    if (opts->publish_service) {
        st_split_service(opts->publish_service, s->svc_ns, s->svc_name, err, errlen);
        s->svc_mode = 1;
    } else {
        status_parse_addresses(opts->publish_addresses, &s->desired, err, errlen);
        if (!(s->desired_canon = st_canon(&s->desired))) {
            snprintf(err, errlen, "out of memory");
            free(s);
            return NULL;
        }
    }
    sm.enabled = 1;
    sm_owner = s;
    return s;
}

static struct st_entry *st_entry_new(struct status *s, const char *ns, const char *name)
{
    size_t ln = strlen(ns) + 1, lm = strlen(name) + 1;
    struct st_entry *e = calloc(1, sizeof(*e));

    if (!e || !(e->ns = malloc(ln + lm))) {
        free(e);
        return NULL;
    }
    memcpy(e->ns, ns, ln);
    e->name = e->ns + ln;
    memcpy(e->name, name, lm);
    e->magic = STATUS_ENTRY_MAGIC;
    e->s = s;
    return e;
}

static int st_cmp_target(const void *pa, const void *pb)
{
    const struct status_target *a = *(const struct status_target *const *)pa;
    const struct status_target *b = *(const struct status_target *const *)pb;
    int r = strcmp(a->ns, b->ns);

    return r ? r : strcmp(a->name, b->name);
}

int status_sync(struct status *s, const struct status_target *t, size_t n)
{
    const struct status_target **sorted = NULL;
    struct st_entry **next = NULL, *e;
    size_t i, j = 0, out = 0;
    int r = 1;

    if (s->magic != STATUS_MAGIC) abort();
    if (n && (!(sorted = malloc(n * sizeof(*sorted))) || !(next = calloc(n, sizeof(*next)))))
        goto oom;
    for (i = 0; i < n; i++)
        sorted[i] = &t[i];
    if (n > 1) qsort(sorted, n, sizeof(*sorted), st_cmp_target);
    /* merge two sorted lists: keep known entries, make new ones, drop the rest */
    for (i = 0; i < n; i++) {
        if (out && !st_cmp_entry(next[out - 1], sorted[i]->ns, sorted[i]->name)) continue;
        while (j < s->n && (r = st_cmp_entry(s->e[j], sorted[i]->ns, sorted[i]->name)) < 0)
            j++;
        if (j < s->n && !r) {
            e = s->e[j];
            e->seen = 1;
            j++;
        } else if (!(e = st_entry_new(s, sorted[i]->ns, sorted[i]->name))) {
            goto oom_next;
        }
        if (sorted[i]->current && !e->req) {
            char *c = st_canon(sorted[i]->current);
            if (c) {
                st_forget(e);
                e->current = c;
            }
        }
        next[out++] = e;
    }
    for (j = 0; j < s->n; j++) {
        if (s->e[j]->seen)
            s->e[j]->seen = 0;
        else
            st_entry_free(s->e[j]);
    }
    free(s->e);
    s->e = next;
    s->n = out;
    s->cursor = 0;
    free(sorted);
    st_pump(s);
    return 0;

oom_next:
    for (i = 0; i < out; i++)
        if (next[i]->seen)
            next[i]->seen = 0;
        else
            st_entry_free(next[i]);
oom:
    free(next);
    free(sorted);
    return -1;
}

void status_set_leader(struct status *s, int leading)
{
    size_t i;

    if (s->magic != STATUS_MAGIC) abort();
    if (leading == s->leading) return;
    s->leading = leading;
    if (!leading) {
        for (i = 0; i < s->n; i++) {
            st_cancel(s->e[i]);
            st_forget(s->e[i]);
            s->e[i]->next_try = 0;
            s->e[i]->backoff = 0;
        }
        kube_client_cancel(s->svc_req);
        s->svc_req = NULL;
        if (s->svc_mode) {
            free(s->desired_canon);
            s->desired_canon = NULL;
            s->svc_last = s->svc_next = s->svc_backoff = 0;
        }
        ev_timer_stop(s->loop, &s->timer);
        return;
    }
    s->tokens = (double)s->burst;
    s->tokens_at = ev_now(s->loop);
    st_pump(s);
}

void status_service_changed(struct status *s)
{
    if (s->magic != STATUS_MAGIC) abort();
    if (!s->svc_mode) return;
    s->svc_dirty = 1;
    st_pump(s);
}

void status_free(struct status *s)
{
    size_t i;

    if (!s) return;
    if (s->magic != STATUS_MAGIC) abort();
    for (i = 0; i < s->n; i++)
        st_entry_free(s->e[i]);
    free(s->e);
    kube_client_cancel(s->svc_req);
    ev_timer_stop(s->loop, &s->timer);
    free(s->desired_canon);
    if (sm_owner == s) sm_owner = NULL;
    s->magic = 0;
    free(s);
}

/* ---- Gateway status: pure part ---- */

static void st_gw_cond_free(struct status_gw_cond *c)
{
    free(c->type);
    free(c->status);
    free(c->reason);
    free(c->message);
    free(c->last_transition);
    memset(c, 0, sizeof(*c));
}

static void st_gw_conds_free(struct status_gw_cond *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        st_gw_cond_free(&v[i]);
    free(v);
}

void status_gw_clear(struct status_gw *s)
{
    size_t i;

    st_gw_conds_free(s->conds, s->n_conds);
    for (i = 0; i < s->n_listeners; i++) {
        free(s->listeners[i].name);
        st_gw_conds_free(s->listeners[i].conds, s->listeners[i].n_conds);
    }
    free(s->listeners);
    memset(s, 0, sizeof(*s));
    s->observed_generation = -1;
}

/* strdup of at most max bytes of s (NULL: ""), cut at a UTF-8 character boundary. */
static char *st_dup_cut(const char *s, size_t max)
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
static int st_gw_reason_ok(const char *r)
{
    size_t i, n = r ? strlen(r) : 0;

    if (!n || n > 1024 || !isalpha((unsigned char)r[0])) return 0;
    for (i = 1; i < n; i++)
        if (!isalnum((unsigned char)r[i]) && r[i] != '_' && r[i] != ',' && r[i] != ':') return 0;
    return isalnum((unsigned char)r[n - 1]) || r[n - 1] == '_';
}

/* One condition from a build's, sanitized to the schema. */
static int st_gw_cond_from(const struct snapbuild_condition *in, int64_t gen,
                           struct status_gw_cond *out)
{
    const char *status = in->status && (!strcmp(in->status, "True") || !strcmp(in->status, "False"))
                             ? in->status
                             : "Unknown";

    memset(out, 0, sizeof(*out));
    out->observed_generation = gen;
    out->type = st_dup_cut(in->type, 316);
    out->status = strdup(status);
    out->reason = strdup(st_gw_reason_ok(in->reason) ? in->reason : "Unknown");
    out->message = st_dup_cut(in->message, STATUS_GW_MAX_MESSAGE);
    out->last_transition = strdup("");
    if (!out->type || !out->status || !out->reason || !out->message || !out->last_transition) {
        st_gw_cond_free(out);
        return -1;
    }
    return 0;
}

/* The set conditions of in[0..n) into *out / *n_out. */
static int st_gw_conds_from(const struct snapbuild_condition *in, size_t n, int64_t gen,
                            struct status_gw_cond **out, size_t *n_out)
{
    size_t i;

    *out = NULL;
    *n_out = 0;
    if (!n) return 0;
    if (!(*out = calloc(n, sizeof(**out)))) return -1;
    for (i = 0; i < n; i++) {
        if (!in[i].type || !*in[i].type) continue;
        if (st_gw_cond_from(&in[i], gen, &(*out)[*n_out])) return -1;
        (*n_out)++;
    }
    return 0;
}

int status_gw_from_build(const struct snapbuild_gateway *g, struct status_gw *out)
{
    int64_t gen = g->generation > 0 ? g->generation : 0;
    size_t i, n = g->n_listeners > 64 ? 64 : g->n_listeners;

    memset(out, 0, sizeof(*out));
    out->observed_generation = gen;
    if (st_gw_conds_from(g->conds, SNAPBUILD_GW_CONDS, gen, &out->conds, &out->n_conds)) goto oom;
    if (n && !(out->listeners = calloc(n, sizeof(*out->listeners)))) goto oom;
    for (i = 0; i < n; i++) {
        struct status_gw_listener *l = &out->listeners[out->n_listeners];
        if (!g->listeners[i].name || !*g->listeners[i].name) continue;
        out->n_listeners++;
        l->attached_routes =
            g->listeners[i].attached_routes > 64 ? 64 : g->listeners[i].attached_routes;
        if (!(l->name = strdup(g->listeners[i].name))) goto oom;
        if (st_gw_conds_from(g->listeners[i].conds,
                             sizeof(g->listeners[i].conds) / sizeof(g->listeners[i].conds[0]), gen,
                             &l->conds, &l->n_conds))
            goto oom;
    }
    return 0;
oom:
    status_gw_clear(out);
    return -1;
}

static const struct status_gw_cond *st_gw_find_cond(const struct status_gw_cond *v, size_t n,
                                                    const char *type)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (v[i].type && !strcmp(v[i].type, type)) return &v[i];
    return NULL;
}

/* Copies want's conditions into *out, stamped from prev[0..n_prev). */
static int st_gw_stamp_conds(const struct status_gw_cond *want, size_t n,
                             const struct status_gw_cond *prev, size_t n_prev, const char *now,
                             struct status_gw_cond **out, size_t *n_out)
{
    const struct status_gw_cond *p;
    size_t i;

    *out = NULL;
    *n_out = 0;
    if (!n) return 0;
    if (!(*out = calloc(n, sizeof(**out)))) return -1;
    for (i = 0; i < n; i++) {
        struct status_gw_cond *c = &(*out)[i];
        p = st_gw_find_cond(prev, n_prev, want[i].type);
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

int status_gw_stamp(const struct status_gw *want, const struct status_gw *prev, const char *now,
                    struct status_gw *out)
{
    static const struct status_gw none = {-1, NULL, 0, NULL, 0};
    const struct status_gw_listener *pl;
    size_t i, j;

    if (!prev) prev = &none;
    memset(out, 0, sizeof(*out));
    out->observed_generation = want->observed_generation;
    if (st_gw_stamp_conds(want->conds, want->n_conds, prev->conds, prev->n_conds, now, &out->conds,
                          &out->n_conds))
        goto oom;
    if (want->n_listeners && !(out->listeners = calloc(want->n_listeners, sizeof(*out->listeners))))
        goto oom;
    for (i = 0; i < want->n_listeners; i++) {
        const struct status_gw_listener *wl = &want->listeners[i];
        struct status_gw_listener *l = &out->listeners[i];
        out->n_listeners++;
        for (pl = NULL, j = 0; j < prev->n_listeners && !pl; j++)
            if (prev->listeners[j].name && !strcmp(prev->listeners[j].name, wl->name))
                pl = &prev->listeners[j];
        l->attached_routes = wl->attached_routes;
        if (!(l->name = strdup(wl->name))) goto oom;
        if (st_gw_stamp_conds(wl->conds, wl->n_conds, pl ? pl->conds : NULL, pl ? pl->n_conds : 0,
                              now, &l->conds, &l->n_conds))
            goto oom;
    }
    return 0;
oom:
    status_gw_clear(out);
    return -1;
}

static int st_streq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static int st_gw_conds_equal(const struct status_gw_cond *a, size_t na,
                             const struct status_gw_cond *b, size_t nb)
{
    size_t i;

    if (na != nb) return 0;
    for (i = 0; i < na; i++)
        if (!st_streq(a[i].type, b[i].type) || !st_streq(a[i].status, b[i].status) ||
            !st_streq(a[i].reason, b[i].reason) || !st_streq(a[i].message, b[i].message) ||
            a[i].observed_generation != b[i].observed_generation ||
            !st_streq(a[i].last_transition, b[i].last_transition))
            return 0;
    return 1;
}

int status_gw_equal(const struct status_gw *a, const struct status_gw *b)
{
    size_t i;

    if (a->observed_generation != b->observed_generation || a->n_listeners != b->n_listeners ||
        !st_gw_conds_equal(a->conds, a->n_conds, b->conds, b->n_conds))
        return 0;
    for (i = 0; i < a->n_listeners; i++)
        if (!st_streq(a->listeners[i].name, b->listeners[i].name) ||
            a->listeners[i].attached_routes != b->listeners[i].attached_routes ||
            !st_gw_conds_equal(a->listeners[i].conds, a->listeners[i].n_conds,
                               b->listeners[i].conds, b->listeners[i].n_conds))
            return 0;
    return 1;
}

/* An int64 scalar; -1 when absent or not a non-negative integer. */
static int64_t st_gw_int(const struct kobj *o)
{
    long v;

    return o && o->type == KOBJ_SCALAR && !kobj_int(o, &v) && v >= 0 ? (int64_t)v : -1;
}

static char *st_gw_text(const struct kobj *o, const char *key)
{
    const char *v = kobj_str(o, key);

    return strdup(v ? v : "");
}

static int st_gw_read_conds(const struct kobj *seq, struct status_gw_cond **out, size_t *n_out)
{
    size_t i;

    *out = NULL;
    *n_out = 0;
    if (!seq || seq->type != KOBJ_SEQ || !seq->n) return 0;
    if (!(*out = calloc(seq->n, sizeof(**out)))) return -1;
    for (i = 0; i < seq->n; i++) {
        const struct kobj *c = seq->items[i];
        struct status_gw_cond *d = &(*out)[*n_out];
        if (!c || c->type != KOBJ_MAP) continue;
        (*n_out)++;
        d->type = st_gw_text(c, "type");
        d->status = st_gw_text(c, "status");
        d->reason = st_gw_text(c, "reason");
        d->message = st_gw_text(c, "message");
        d->last_transition = st_gw_text(c, "lastTransitionTime");
        d->observed_generation = st_gw_int(kobj_get(c, "observedGeneration"));
        if (!d->type || !d->status || !d->reason || !d->message || !d->last_transition) return -1;
    }
    return 0;
}

int status_gw_from_object(const char *body, size_t len, struct status_gw *out, char *uid,
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
    if (st_parse(body, len, &docs, err, errlen)) goto out;
    if ((u = kobj_str(docs.docs[0], "metadata", "uid")) && uidlen) snprintf(uid, uidlen, "%s", u);
    st = kobj_get(docs.docs[0], "status");
    rc = 0;
    if (!st || st->type != KOBJ_MAP) goto out;
    rc = -1;
    out->observed_generation = st_gw_int(kobj_get(st, "observedGeneration"));
    if (st_gw_read_conds(kobj_get(st, "conditions"), &out->conds, &out->n_conds)) goto oom;
    ls = kobj_get(st, "listeners");
    if (ls && ls->type == KOBJ_SEQ && ls->n) {
        if (!(out->listeners = calloc(ls->n, sizeof(*out->listeners)))) goto oom;
        for (i = 0; i < ls->n; i++) {
            const struct kobj *l = ls->items[i];
            struct status_gw_listener *d = &out->listeners[out->n_listeners];
            if (!l || l->type != KOBJ_MAP) continue;
            out->n_listeners++;
            if (!(d->name = st_gw_text(l, "name"))) goto oom;
            d->attached_routes = (long)st_gw_int(kobj_get(l, "attachedRoutes"));
            if (st_gw_read_conds(kobj_get(l, "conditions"), &d->conds, &d->n_conds)) goto oom;
        }
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
    status_gw_clear(out);
out:
    kobj_docs_free(&docs);
    return rc;
}

static void st_gw_gen_conds(yajl_gen g, const struct status_gw_cond *v, size_t n)
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

char *status_gw_patch_body(const struct status_gw *s)
{
    const unsigned char *buf;
    yajl_gen g = yajl_gen_alloc(NULL);
    char *out = NULL;
    size_t i, len;

    if (!g) return NULL;
    yajl_gen_map_open(g);
    jsongen_str(g, "status");
    yajl_gen_map_open(g);
    if (s->observed_generation >= 0) {
        jsongen_str(g, "observedGeneration");
        yajl_gen_integer(g, (long long)s->observed_generation);
    }
    st_gw_gen_conds(g, s->conds, s->n_conds);
    jsongen_str(g, "listeners");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_listeners; i++) {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", s->listeners[i].name);
        jsongen_str(g, "attachedRoutes");
        yajl_gen_integer(g, s->listeners[i].attached_routes);
        st_gw_gen_conds(g, s->listeners[i].conds, s->listeners[i].n_conds);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 1))) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

const char *status_gw_conds_text(const struct status_gw *s, char *buf, size_t n)
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

/* ---- the Gateway status writer ---- */

#define STATUS_GW_MAGIC 0x53544757u       /* "STGW" */
#define STATUS_GW_ENTRY_MAGIC 0x53544745u /* "STGE" */

struct st_gw_entry {
    unsigned magic;
    struct status_gateways *s;
    char *ns, *name, *uid;     /* uid: the build's ("" when unknown) */
    struct status_gw want;     /* what the last build computed (no lastTransitionTime) */
    struct status_gw *current; /* the object's status as last read or written; NULL: unknown */
    int clean;                 /* current is known to be want (stamped): nothing to do */
    enum st_op op;
    struct kube_request *req;
    double next_try, backoff;
    int seen;
};

struct status_gateways {
    unsigned magic;
    struct ev_loop *loop;
    struct kube_client *client;
    int leading;
    struct st_gw_entry **e;
    size_t n, cursor;
    unsigned inflight;
    double qps, tokens, tokens_at;
    unsigned burst;
    ev_timer timer;
};

static struct status_gateways *sgm_owner; /* for the pending gauge */

static void st_gw_pump(struct status_gateways *s);

static void st_gw_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void st_gw_forget(struct st_gw_entry *e)
{
    if (e->current) {
        status_gw_clear(e->current);
        free(e->current);
    }
    e->current = NULL;
    e->clean = 0;
}

static void st_gw_cancel(struct st_gw_entry *e)
{
    if (!e->req) return;
    kube_client_cancel(e->req);
    e->req = NULL;
    e->op = ST_NONE;
    e->s->inflight--;
}

static void st_gw_entry_free(struct st_gw_entry *e)
{
    st_gw_cancel(e);
    st_gw_forget(e);
    status_gw_clear(&e->want);
    e->magic = 0;
    free(e->ns);
    free(e);
}

static void st_gw_retry_later(struct st_gw_entry *e, double retry_after)
{
    e->backoff = st_backoff_next(e->backoff);
    e->next_try = st_retry_at(ev_now(e->s->loop), e->backoff, retry_after, drand48());
}

/*
 * want stamped against current into *desired; returns 1 when that differs from current (a
 * write is needed), 0 when it is the same, -1 on allocation failure.
 */
static int st_gw_desired(const struct st_gw_entry *e, struct status_gw *desired)
{
    char now[32];
    int same;

    st_gw_now(now, sizeof(now));
    if (status_gw_stamp(&e->want, e->current, now, desired)) return -1;
    same = e->current && status_gw_equal(desired, e->current);
    return !same;
}

static void st_gw_on_done(void *arg, const struct kube_response *r)
{
    struct st_gw_entry *e = arg;
    struct status_gateways *s = e->s;
    struct status_gw got, again;
    struct kube_status st;
    char err[256], q[600], uid[128], conds[300];
    enum st_op op = e->op;
    int diff;

    if (e->magic != STATUS_GW_ENTRY_MAGIC) abort();
    e->req = NULL;
    e->op = ST_NONE;
    s->inflight--;
    if (r->status == 200 &&
        !status_gw_from_object(r->body, r->body_len, &got, uid, sizeof(uid), err, sizeof(err))) {
        st_gw_forget(e);
        if ((e->current = malloc(sizeof(*e->current))))
            *e->current = got;
        else
            status_gw_clear(&got);
        if (op == ST_PATCH) {
            sm.gw_writes++;
            e->backoff = 0;
            if (e->current)
                log_info("gateway_status_updated",
                         "object=%s/%s observed_generation=%lld conditions=%s listeners=%zu", e->ns,
                         e->name, (long long)e->current->observed_generation,
                         status_gw_conds_text(e->current, conds, sizeof(conds)),
                         e->current->n_listeners);
            if (e->current && (diff = st_gw_desired(e, &again)) >= 0) {
                status_gw_clear(&again);
                if (diff) {
                    /* the server kept something else: do not write again at once */
                    log_warn("status_not_applied", "kind=Gateway object=%s/%s", e->ns, e->name);
                    st_gw_retry_later(e, 0);
                }
            }
        } else {
            sm.gw_reads++;
        }
        st_gw_pump(s);
        return;
    }
    if (op == ST_PATCH) sm.gw_write_errors++;
    if (op == ST_GET) sm.gw_reads++;
    if (kube_client_parse_status(r->body, r->body_len, &st)) st.message[0] = '\0';
    if (r->status == 200) snprintf(st.message, sizeof(st.message), "bad answer: %s", err);
    log_warn("status_update_failed", "kind=Gateway object=%s/%s verb=%s status=%ld reason=%s",
             e->ns, e->name, op == ST_PATCH ? "patch" : "get", r->status,
             log_quote(q, sizeof(q), st.message[0] ? st.message : r->error));
    st_gw_forget(e); /* read it again before the next write */
    st_gw_retry_later(e, st_retry_after(r));
    st_gw_pump(s);
}

static int st_gw_take_token(struct status_gateways *s, double now)
{
    s->tokens += (now - s->tokens_at) * s->qps;
    s->tokens_at = now;
    if (s->tokens > (double)s->burst) s->tokens = (double)s->burst;
    if (s->tokens < 1.) return 0;
    s->tokens -= 1.;
    return 1;
}

/* Starts a GET (body NULL) or the PATCH of body for e. Returns 0, or -1 (logged). */
static int st_gw_start(struct status_gateways *s, struct st_gw_entry *e, const char *body)
{
    char path[700], err[256];

    snprintf(path, sizeof(path), "/apis/strait.dev/v1alpha1/namespaces/%s/gateways/%s%s", e->ns,
             e->name, body ? "/status" : "");
    e->op = body ? ST_PATCH : ST_GET;
    e->req = kube_client_request(s->client, body ? "PATCH" : "GET", path,
                                 body ? STATUS_PATCH : NULL, body, body ? strlen(body) : 0,
                                 STATUS_TIMEOUT, st_gw_on_done, e, err, sizeof(err));
    if (!e->req) {
        e->op = ST_NONE;
        log_warn("status_update_failed", "kind=Gateway object=%s/%s status=0 reason=\"%s\"", e->ns,
                 e->name, err);
        return -1;
    }
    s->inflight++;
    return 0;
}

/*
 * What e needs now: ST_NONE (nothing, or not before *later), ST_GET (its status is unknown)
 * or ST_PATCH with *body (malloc'd) to send.
 */
static enum st_op st_gw_entry_op(struct st_gw_entry *e, double now, double *later, char **body)
{
    struct status_gw desired;
    int diff;

    *body = NULL;
    if (e->req || e->clean) return ST_NONE;
    if (e->next_try > now) {
        *later = e->next_try;
        return ST_NONE;
    }
    if (!e->current) return ST_GET;
    if ((diff = st_gw_desired(e, &desired)) < 0) {
        *later = now + STATUS_BACKOFF_MIN;
        return ST_NONE;
    }
    if (diff) *body = status_gw_patch_body(&desired);
    status_gw_clear(&desired);
    if (!diff) {
        e->clean = 1;
        return ST_NONE;
    }
    if (!*body) {
        *later = now + STATUS_BACKOFF_MIN;
        return ST_NONE;
    }
    return ST_PATCH;
}

static void st_gw_pump(struct status_gateways *s)
{
    double now = ev_now(s->loop), next = HUGE_VAL, due;
    size_t scanned;
    char *body;

    ev_timer_stop(s->loop, &s->timer);
    if (!s->leading) return;
    for (scanned = 0; scanned < s->n && s->inflight < STATUS_MAX_INFLIGHT; scanned++) {
        struct st_gw_entry *e = s->e[s->cursor];
        double later = HUGE_VAL;
        enum st_op op = st_gw_entry_op(e, now, &later, &body);
        if (op == ST_NONE) {
            if (later < next) next = later;
            goto skip;
        }
        if (!st_gw_take_token(s, now)) {
            free(body);
            due = now + (1. - s->tokens) / s->qps;
            if (due < next) next = due;
            break; /* this entry goes first next time */
        }
        if (st_gw_start(s, e, body)) {
            st_gw_retry_later(e, 0);
            if (e->next_try < next) next = e->next_try;
        }
        free(body);
    skip:
        s->cursor = (s->cursor + 1) % s->n;
    }
    if (next < HUGE_VAL) {
        ev_timer_set(&s->timer, next > now ? next - now : 0., 0.);
        ev_timer_start(s->loop, &s->timer);
    }
}

static void st_gw_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct status_gateways *s = container_of(w, struct status_gateways, timer);

    (void)loop;
    (void)revents;
    if (s->magic != STATUS_GW_MAGIC) abort();
    st_gw_pump(s);
}

struct status_gateways *status_gateways_new(struct ev_loop *loop, struct kube_client *client,
                                            double qps, unsigned burst)
{
    struct status_gateways *s = calloc(1, sizeof(*s));

    if (!s) return NULL;
    s->magic = STATUS_GW_MAGIC;
    s->loop = loop;
    s->client = client;
    s->qps = qps > 0 ? qps : STATUS_QPS;
    s->burst = burst ? burst : STATUS_BURST;
    s->tokens = (double)s->burst;
    s->tokens_at = ev_now(loop);
    ev_timer_init(&s->timer, st_gw_on_timer, 0., 0.);
    sm.gw_enabled = 1;
    sgm_owner = s;
    return s;
}

static struct st_gw_entry *st_gw_entry_new(struct status_gateways *s, const char *ns,
                                           const char *name)
{
    size_t ln = strlen(ns) + 1, lm = strlen(name) + 1;
    struct st_gw_entry *e = calloc(1, sizeof(*e));

    if (!e || !(e->ns = malloc(ln + lm + 1))) {
        free(e);
        return NULL;
    }
    memcpy(e->ns, ns, ln);
    e->name = e->ns + ln;
    memcpy(e->name, name, lm);
    e->uid = e->name + lm;
    e->uid[0] = '\0';
    e->magic = STATUS_GW_ENTRY_MAGIC;
    e->s = s;
    e->want.observed_generation = -1;
    return e;
}

static int st_gw_cmp(const void *pa, const void *pb)
{
    const struct snapbuild_gateway *a = *(const struct snapbuild_gateway *const *)pa;
    const struct snapbuild_gateway *b = *(const struct snapbuild_gateway *const *)pb;
    int r = strcmp(a->ns, b->ns);

    return r ? r : strcmp(a->name, b->name);
}

static int st_gw_cmp_entry(const struct st_gw_entry *e, const struct snapbuild_gateway *g)
{
    int r = strcmp(e->ns, g->ns);

    return r ? r : strcmp(e->name, g->name);
}

/* Gives e the build's status for g (and its uid). Returns 0 or -1 (OOM; e unchanged). */
static int st_gw_entry_set(struct st_gw_entry *e, const struct snapbuild_gateway *g)
{
    struct status_gw want;
    const char *uid = g->uid ? g->uid : "";
    char *nu = NULL;

    if (status_gw_from_build(g, &want)) return -1;
    if (strcmp(uid, e->uid)) {
        size_t ln = strlen(e->ns) + 1, lm = strlen(e->name) + 1, lu = strlen(uid) + 1;
        if (!(nu = malloc(ln + lm + lu))) {
            status_gw_clear(&want);
            return -1;
        }
        memcpy(nu, e->ns, ln);
        memcpy(nu + ln, e->name, lm);
        memcpy(nu + ln + lm, uid, lu);
        /* another object of the same name (deleted and created again): read it afresh */
        if (*e->uid) {
            st_gw_cancel(e);
            st_gw_forget(e);
            e->next_try = e->backoff = 0;
        }
        free(e->ns);
        e->ns = nu;
        e->name = nu + ln;
        e->uid = nu + ln + lm;
    }
    status_gw_clear(&e->want);
    e->want = want;
    e->clean = 0;
    return 0;
}

int status_gateways_sync(struct status_gateways *s, const struct snapbuild_gateway *g, size_t n)
{
    const struct snapbuild_gateway **sorted = NULL;
    struct st_gw_entry **next = NULL, *e;
    size_t i, j = 0, out = 0;
    int r = 1, fresh;

    if (s->magic != STATUS_GW_MAGIC) abort();
    if (n && (!(sorted = malloc(n * sizeof(*sorted))) || !(next = calloc(n, sizeof(*next)))))
        goto oom;
    for (i = 0; i < n; i++)
        sorted[i] = &g[i];
    if (n > 1) qsort(sorted, n, sizeof(*sorted), st_gw_cmp);
    for (i = 0; i < n; i++) {
        if (!sorted[i]->ns || !sorted[i]->name) continue;
        if (out && !st_gw_cmp_entry(next[out - 1], sorted[i])) continue;
        while (j < s->n && (r = st_gw_cmp_entry(s->e[j], sorted[i])) < 0)
            j++;
        fresh = 0;
        if (j < s->n && !r) {
            e = s->e[j];
            e->seen = 1;
            j++;
        } else if (!(e = st_gw_entry_new(s, sorted[i]->ns, sorted[i]->name))) {
            goto oom_next;
        } else {
            fresh = 1;
        }
        if (st_gw_entry_set(e, sorted[i])) {
            if (fresh) st_gw_entry_free(e);
            goto oom_next;
        }
        next[out++] = e;
    }
    for (j = 0; j < s->n; j++) {
        if (s->e[j]->seen)
            s->e[j]->seen = 0;
        else
            st_gw_entry_free(s->e[j]);
    }
    free(s->e);
    s->e = next;
    s->n = out;
    s->cursor = 0;
    free(sorted);
    st_gw_pump(s);
    return 0;

oom_next:
    for (i = 0; i < out; i++)
        if (next[i]->seen)
            next[i]->seen = 0;
        else
            st_gw_entry_free(next[i]);
    for (j = 0; j < s->n; j++)
        s->e[j]->seen = 0;
oom:
    free(next);
    free(sorted);
    return -1;
}

void status_gateways_set_leader(struct status_gateways *s, int leading)
{
    size_t i;

    if (s->magic != STATUS_GW_MAGIC) abort();
    if (leading == s->leading) return;
    s->leading = leading;
    if (!leading) {
        for (i = 0; i < s->n; i++) {
            st_gw_cancel(s->e[i]);
            st_gw_forget(s->e[i]);
            s->e[i]->next_try = 0;
            s->e[i]->backoff = 0;
        }
        ev_timer_stop(s->loop, &s->timer);
        return;
    }
    s->tokens = (double)s->burst;
    s->tokens_at = ev_now(s->loop);
    st_gw_pump(s);
}

void status_gateways_free(struct status_gateways *s)
{
    size_t i;

    if (!s) return;
    if (s->magic != STATUS_GW_MAGIC) abort();
    for (i = 0; i < s->n; i++)
        st_gw_entry_free(s->e[i]);
    free(s->e);
    ev_timer_stop(s->loop, &s->timer);
    if (sgm_owner == s) sgm_owner = NULL;
    s->magic = 0;
    free(s);
}

void status_metrics(struct status_metrics *out)
{
    size_t i;

    *out = sm;
    out->pending = 0;
    out->gw_pending = 0;
    for (i = 0; sgm_owner && sgm_owner->leading && i < sgm_owner->n; i++)
        if (!sgm_owner->e[i]->clean) out->gw_pending++;
    if (!sm_owner || !sm_owner->leading || !sm_owner->desired_canon) return;
    for (i = 0; i < sm_owner->n; i++)
        if (!sm_owner->e[i]->current || strcmp(sm_owner->e[i]->current, sm_owner->desired_canon))
            out->pending++;
}
