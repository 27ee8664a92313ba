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
 * patches on the /status subresource (they touch nothing but the addresses). The requests,
 * the rate limit, the in-flight cap and the per-Ingress backoff are stwriter's; this module
 * supplies what an entry holds (the canonical form of its addresses), the patch, and what an
 * answer means, and reads the publish Service itself (through stwriter's pump hook, so its
 * read shares the writer's timer).
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

#include "containerof.h"
#include "jsongen.h"
#include "kobj.h"
#include "kube_client.h"
#include "log.h"
#include "stwriter.h"

#define STATUS_MAGIC 0x53545453u /* "STTS" */

static struct stwriter_counts st_counts;
static int st_enabled;
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

int status_lb_from_service(const char *body, size_t len, struct status_lb *out, char *err,
                           size_t errlen)
{
    struct kobj_docs docs = {0};
    const struct kobj *doc;
    const char *v, *type;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (stwriter_parse_object(body, len, &docs, err, errlen)) goto out;
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
    if (stwriter_parse_object(body, len, &docs, err, errlen)) goto out;
    st_read_lb(kobj_get(docs.docs[0], "status", "loadBalancer", "ingress"), out);
    status_lb_normalize(out);
    rc = 0;
out:
    kobj_docs_free(&docs);
    return rc;
}

char *status_patch_body(const struct status_lb *lb)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    size_t i;

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
    return stwriter_body_take(g);
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

struct st_entry {
    struct stwriter_entry base;
    char *current; /* st_canon of its status when known, else NULL */
};

struct status {
    unsigned magic;
    struct stwriter w; /* the Ingresses */
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
};

static struct st_entry *st_entry_of(struct stwriter_entry *e)
{
    return container_of(e, struct st_entry, base);
}

static struct status *st_of(struct stwriter *w)
{
    return container_of(w, struct status, w);
}

static void st_target_key(const void *t, const char **ns, const char **name)
{
    const struct status_target *target = t;

    *ns = target->ns;
    *name = target->name;
}

static void st_forget(struct stwriter_entry *base)
{
    struct st_entry *e = st_entry_of(base);

    free(e->current);
    e->current = NULL;
}

/* What the cache knows of an Ingress's status replaces ours, unless a request is out. */
static int st_update(struct stwriter_entry *base, const void *t, int fresh)
{
    const struct status_target *target = t;
    char *c;

    (void)fresh;
    if (target->current && !base->req && (c = st_canon(target->current))) {
        st_forget(base);
        st_entry_of(base)->current = c;
    }
    return 0;
}

/* Its status is known to be what we publish (only asked once desired_canon is known). */
static int st_done(struct stwriter_entry *base)
{
    const char *cur = st_entry_of(base)->current;

    return cur && !strcmp(cur, st_of(base->w)->desired_canon);
}

/* A read when its status is unknown, a write when it is known (and differs). */
static enum stwriter_op st_need(struct stwriter_entry *base, double now, double *later, char **body)
{
    if (!st_entry_of(base)->current) return STWRITER_GET;
    if (!(*body = status_patch_body(&st_of(base->w)->desired))) {
        *later = now + STWRITER_BACKOFF_MIN;
        return STWRITER_NONE;
    }
    return STWRITER_PATCH;
}

static int st_answer(struct stwriter_entry *base, enum stwriter_op op, const char *body, size_t len,
                     char *err, size_t errlen)
{
    struct st_entry *e = st_entry_of(base);
    const struct status *s = st_of(base->w);
    struct status_lb lb;
    char addrs[400];

    if (status_lb_from_ingress(body, len, &lb, err, errlen)) return -1;
    st_forget(base);
    e->current = st_canon(&lb);
    if (op != STWRITER_PATCH) return 0;
    log_info("status_updated", "object=%s/%s addresses=%s", base->ns, base->name,
             status_lb_text(&lb, addrs, sizeof(addrs)));
    if (s->desired_canon && e->current && strcmp(e->current, s->desired_canon)) {
        log_warn("status_not_applied", "object=%s/%s addresses=%s", base->ns, base->name,
                 status_lb_text(&lb, addrs, sizeof(addrs)));
        return 1;
    }
    return 0;
}

static void st_on_service_done(void *arg, const struct kube_response *r)
{
    struct status *s = arg;
    struct status_lb lb;
    char err[256], q[600], addrs[400], *canon;
    double now = ev_now(s->w.loop);

    if (s->magic != STATUS_MAGIC) abort();
    s->svc_req = NULL;
    st_counts.reads++;
    if (r->status == 200 && !status_lb_from_service(r->body, r->body_len, &lb, err, sizeof(err))) {
        s->svc_last = now;
        s->svc_backoff = 0;
        if (lb.truncated)
            log_warn("publish_service_truncated", "service=%s/%s kept=%d", s->svc_ns, s->svc_name,
                     STATUS_MAX_ADDRS);
        if (!(canon = st_canon(&lb))) {
            s->svc_next = now + STWRITER_BACKOFF_MIN;
        } else if (!s->desired_canon || strcmp(canon, s->desired_canon)) {
            free(s->desired_canon);
            s->desired_canon = canon;
            s->desired = lb;
            log_info("status_addresses", "service=%s/%s addresses=%s", s->svc_ns, s->svc_name,
                     status_lb_text(&lb, addrs, sizeof(addrs)));
        } else {
            free(canon);
        }
        stwriter_pump(&s->w);
        return;
    }
    /* keep publishing what we had: a Service that vanishes for a moment must not blank
     * every Ingress */
    log_warn("publish_service_unavailable", "service=%s/%s status=%ld reason=%s", s->svc_ns,
             s->svc_name, r->status, stwriter_failure_text(r, err, q, sizeof(q)));
    if (r->status == 404) {
        s->svc_last = now; /* try again at the next change or resync */
        s->svc_backoff = 0;
    } else {
        s->svc_backoff = stwriter_backoff_next(s->svc_backoff);
        s->svc_next =
            stwriter_retry_at(now, s->svc_backoff, stwriter_retry_after(r), 0.5); /* no jitter */
    }
    stwriter_pump(&s->w);
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
    s->svc_req = kube_client_request(s->w.client, "GET", path, NULL, NULL, 0, STWRITER_TIMEOUT,
                                     st_on_service_done, s, err, sizeof(err));
    if (!s->svc_req) {
        log_warn("publish_service_unavailable", "service=%s/%s status=0 reason=\"%s\"", s->svc_ns,
                 s->svc_name, err);
        s->svc_next = ev_now(s->w.loop) + STWRITER_BACKOFF_MAX;
    }
}

/* Each pump: reads the publish Service when due; the Ingresses wait for an address list. */
static int st_prepare(struct stwriter *w, double now, double *next)
{
    struct status *s = st_of(w);
    double due;

    if ((due = st_service_due(s)) <= now) {
        st_read_service(s);
        due = st_service_due(s);
    }
    if (due < *next) *next = due;
    return s->desired_canon != NULL;
}

static const struct stwriter_ops st_ops = {
    .api = "/apis/networking.k8s.io/v1",
    .resource = "ingresses",
    .log_prefix = "",
    .entry_size = sizeof(struct st_entry),
    .target_key = st_target_key,
    .update = st_update,
    .done = st_done,
    .need = st_need,
    .answer = st_answer,
    .forget = st_forget,
    .prepare = st_prepare,
};

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
    stwriter_init(&s->w, &st_ops, &st_counts, loop, client, opts->qps, opts->burst);
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
    st_enabled = 1;
    sm_owner = s;
    return s;
}

int status_sync(struct status *s, const struct status_target *t, size_t n)
{
    if (s->magic != STATUS_MAGIC) abort();
    return stwriter_sync(&s->w, t, n, sizeof(*t));
}

void status_set_leader(struct status *s, int leading)
{
    if (s->magic != STATUS_MAGIC) abort();
    if (leading == s->w.leading) return;
    if (!leading) {
        kube_client_cancel(s->svc_req);
        s->svc_req = NULL;
        if (s->svc_mode) {
            free(s->desired_canon);
            s->desired_canon = NULL;
            s->svc_last = s->svc_next = s->svc_backoff = 0;
        }
    }
    stwriter_set_leader(&s->w, leading);
}

void status_service_changed(struct status *s)
{
    if (s->magic != STATUS_MAGIC) abort();
    if (!s->svc_mode) return;
    s->svc_dirty = 1;
    stwriter_pump(&s->w);
}

void status_free(struct status *s)
{
    if (!s) return;
    if (s->magic != STATUS_MAGIC) abort();
    stwriter_fini(&s->w);
    kube_client_cancel(s->svc_req);
    free(s->desired_canon);
    if (sm_owner == s) sm_owner = NULL;
    s->magic = 0;
    free(s);
}

void status_metrics(struct status_metrics *out)
{
    size_t i;

    memset(out, 0, sizeof(*out));
    out->enabled = st_enabled;
    out->writes = st_counts.writes;
    out->write_errors = st_counts.write_errors;
    out->reads = st_counts.reads;
    if (!sm_owner || !sm_owner->w.leading || !sm_owner->desired_canon) return;
    for (i = 0; i < sm_owner->w.n; i++) {
        const char *cur = st_entry_of(sm_owner->w.e[i])->current;
        if (!cur || strcmp(cur, sm_owner->desired_canon)) out->pending++;
    }
}
