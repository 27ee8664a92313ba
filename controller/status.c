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
#include <yajl/yajl_gen.h>

#include "jsongen.h"
#include "kobj.h"
#include "kube_client.h"
#include "log.h"

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

void status_metrics(struct status_metrics *out)
{
    size_t i;

    *out = sm;
    out->pending = 0;
    if (!sm_owner || !sm_owner->leading || !sm_owner->desired_canon) return;
    for (i = 0; i < sm_owner->n; i++)
        if (!sm_owner->e[i]->current || strcmp(sm_owner->e[i]->current, sm_owner->desired_canon))
            out->pending++;
}
