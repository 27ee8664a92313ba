/*
 * meshfeed: POST /v1/discovery, the sidecars' on-demand snapshot feed (meshfeed.h).
 *
 * Does: check the caller's workload certificate (meshsrv's peer_uri: a SPIFFE ID of our trust
 * domain), parse its subscription, keep of the addresses it says are its pod's those where a
 * Pod of that identity runs (the pod table of the last build, meshpods.h: another pod's
 * Services and policies are not the caller's to see), cut the current snapshot down to that
 * (snapwire_mesh_subset), encode it and answer with a version; hold a request whose version
 * is current until a publish (a new frame or a new pod table) changes its answer or its wait
 * ends (204); answer held requests on shutdown; count answers and refused addresses for
 * /metrics.
 * Does not: check the services a sidecar subscribes to (a pod may call any Service, and to
 * call one it needs its record, endpoints and identities; policies come only with the pod's
 * own Services), push without a request (the sidecar asks again after each answer), or keep
 * anything per sidecar between requests.
 * Invariants: the decoded snapshot is replaced only on a publish that decodes; a held
 * request keeps the addresses it claimed and is filtered again on every publish, so a pod
 * that shows up later gets its answer; a held request is in f->held exactly until
 * meshsrv_finish is called for it, once.
 */
#include "meshfeed.h"

#include <arpa/inet.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerof.h"
#include "kobj.h"
#include "kube_decode.h"
#include "log.h"
#include "meshsrv.h"
#include "netaddr.h"
#include "snapwire.h"

#define MESHFEED_MAGIC 0x4d464544u      /* "MFED" */
#define MESHFEED_HELD_MAGIC 0x4d46484cu /* "MFHL" */

struct mf_held {
    uint32_t magic;
    struct meshfeed *f;
    struct mf_held *prev, *next;
    struct meshsrv_request *req;
    ev_timer timer;
    struct meshfeed_query q;
};

struct meshfeed {
    uint32_t magic;
    struct ev_loop *loop;
    char *td_prefix; /* "spiffe://<trust-domain>/" */
    int have_snapshot;
    struct snapwire_snapshot snap;       /* the last published frame, decoded */
    struct snapwire_subset_index *index; /* of snap; NULL: each subset makes its own */
    struct meshpods *pods;               /* of the last build; NULL: none yet, no address is own */
    uint64_t generation;
    struct mf_held *held;
};

static struct meshfeed_metrics fm = {0, {200, 204, 400, 403, 500, 503}, {0}, 0, 0};

void meshfeed_metrics(struct meshfeed_metrics *out)
{
    *out = fm;
}

static void mf_count(int status)
{
    int i;

    for (i = 0; i < MESHFEED_CODES; i++)
        if (fm.codes[i] == status) fm.requests[i]++;
}

/* ---- the request body ---- */

void meshfeed_query_free(struct meshfeed_query *q)
{
    size_t i;

    for (i = 0; i < q->n_keys; i++) {
        free(q->key_text[i]);
        free(q->key_part[i]);
    }
    for (i = 0; i < q->n_addresses; i++)
        free(q->addresses[i]);
    free(q->keys);
    free(q->key_text);
    free(q->key_part);
    free(q->addresses);
    memset(q, 0, sizeof(*q));
}

/* A JSON string, or NULL (another type). */
static const char *mf_string(const struct kobj *o)
{
    return o && o->type == KOBJ_SCALAR && o->style == KOBJ_QUOTED ? o->str : NULL;
}

/*
 * One services entry into its canonical text (*text) and the part the subset key points
 * into (*part), filling k. Returns 0, -1 (not a key: err filled), -2 (out of memory).
 */
static int mf_key(const char *s, struct snapwire_subset_key *k, char **text, char **part, char *err,
                  size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    char buf[NETADDR_STRLEN], ip[INET6_ADDRSTRLEN], e[160], q[300];
    const char *slash = strchr(s, '/');

    memset(k, 0, sizeof(*k));
    if (slash && !strchr(slash + 1, '/') && kube_decode_dns_label(s, (size_t)(slash - s)) &&
        kube_decode_dns_label(slash + 1, strlen(slash + 1))) {
        if (!(*text = strdup(s)) || !(*part = strdup(s))) return -2;
        (*part)[slash - s] = '\0';
        k->ns = *part;
        k->name = *part + (slash - s) + 1;
        return 0;
    }
    /* IPv4:PORT or [IPv6]:PORT; netaddr_parse also takes "localhost" and an empty host */
    if (((*s >= '0' && *s <= '9') || *s == '[') && !netaddr_parse(s, &ss, &sl, e, sizeof(e)) &&
        netaddr_port((struct sockaddr *)&ss)) {
        netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf));
        if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        if (!(*text = strdup(buf)) || !(*part = strdup(ip))) return -2;
        k->address = *part;
        k->port = (uint16_t)netaddr_port((struct sockaddr *)&ss);
        return 0;
    }
    snprintf(err, errlen, "services: %s is neither ADDRESS:PORT nor NAMESPACE/NAME",
             log_quote(q, sizeof(q), s));
    return -1;
}

static int mf_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One services entry while parsing: sorted by text, then split into the query's arrays. */
struct mf_entry {
    char *text, *part;
    struct snapwire_subset_key k;
};

static int mf_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct mf_entry *)a)->text, ((const struct mf_entry *)b)->text);
}

/* Fills q's key arrays from e[0..n) (taken): sorted, duplicates freed. 0, or -1 (memory). */
static int mf_set_keys(struct meshfeed_query *q, struct mf_entry *e, size_t n)
{
    size_t i;

    qsort(e, n, sizeof(*e), mf_entry_cmp);
    q->keys = calloc(n + 1, sizeof(*q->keys));
    q->key_text = calloc(n + 1, sizeof(*q->key_text));
    q->key_part = calloc(n + 1, sizeof(*q->key_part));
    for (i = 0; i < n; i++) {
        if (!q->keys || !q->key_text || !q->key_part ||
            (q->n_keys && !strcmp(e[i].text, q->key_text[q->n_keys - 1]))) {
            free(e[i].text);
            free(e[i].part);
            continue;
        }
        q->keys[q->n_keys] = e[i].k;
        q->key_text[q->n_keys] = e[i].text;
        q->key_part[q->n_keys] = e[i].part;
        q->n_keys++;
    }
    return q->keys && q->key_text && q->key_part ? 0 : -1;
}

/* The services array o into q. 0, -1 (err filled), -2 (out of memory). */
static int mf_parse_services(const struct kobj *o, struct meshfeed_query *q, char *err,
                             size_t errlen)
{
    struct mf_entry *e;
    const char *str;
    size_t i, n = 0;
    int rc = 0;

    if (o->type != KOBJ_SEQ) {
        snprintf(err, errlen, "services: want an array of strings");
        return -1;
    }
    if (o->n > MESHFEED_MAX_SERVICES) {
        snprintf(err, errlen, "services: more than %d entries", MESHFEED_MAX_SERVICES);
        return -1;
    }
    if (!(e = calloc(o->n + 1, sizeof(*e)))) return -2;
    for (i = 0; i < o->n && !rc; i++) {
        if (!(str = mf_string(o->items[i]))) {
            snprintf(err, errlen, "services: want an array of strings");
            rc = -1;
            break;
        }
        rc = mf_key(str, &e[n].k, &e[n].text, &e[n].part, err, errlen);
        if (rc) {
            free(e[n].text);
            free(e[n].part);
        } else {
            n++;
        }
    }
    if (rc) {
        for (i = 0; i < n; i++) {
            free(e[i].text);
            free(e[i].part);
        }
    } else if (mf_set_keys(q, e, n)) { /* takes the entries in any case */
        rc = -2;
    }
    free(e);
    return rc;
}

/*
 * The addresses array o into q (canonical, netaddr_ip_canonical: an IPv4-mapped IPv6 address
 * is its IPv4 one; sorted, unique). 0, -1 (err filled), -2.
 */
static int mf_parse_addresses(const struct kobj *o, struct meshfeed_query *q, char *err,
                              size_t errlen)
{
    char ip[INET6_ADDRSTRLEN], qs[300];
    const char *str;
    size_t i;

    if (o->type != KOBJ_SEQ) {
        snprintf(err, errlen, "addresses: want an array of strings");
        return -1;
    }
    if (o->n > MESHFEED_MAX_ADDRESSES) {
        snprintf(err, errlen, "addresses: more than %d entries", MESHFEED_MAX_ADDRESSES);
        return -1;
    }
    if (!(q->addresses = calloc(o->n + 1, sizeof(*q->addresses)))) return -2;
    for (i = 0; i < o->n; i++) {
        if (!(str = mf_string(o->items[i]))) {
            snprintf(err, errlen, "addresses: want an array of strings");
            return -1;
        }
        if (netaddr_ip_canonical(str, ip, sizeof(ip))) {
            snprintf(err, errlen, "addresses: %s is not an IP address",
                     log_quote(qs, sizeof(qs), str));
            return -1;
        }
        if (!(q->addresses[q->n_addresses] = strdup(ip))) return -2;
        q->n_addresses++;
    }
    qsort(q->addresses, q->n_addresses, sizeof(*q->addresses), mf_strcmp);
    for (i = 1; i < q->n_addresses;) {
        if (strcmp(q->addresses[i], q->addresses[i - 1])) {
            i++;
            continue;
        }
        free(q->addresses[i]);
        memmove(&q->addresses[i], &q->addresses[i + 1],
                (q->n_addresses - i - 1) * sizeof(*q->addresses));
        q->n_addresses--;
    }
    return 0;
}

int meshfeed_parse(const char *body, size_t len, struct meshfeed_query *q, char *err, size_t errlen)
{
    struct kobj_docs docs = {0};
    const struct kobj *doc, *o;
    const char *v;
    long wait = 0;
    int rc = -1;

    memset(q, 0, sizeof(*q));
    if (kobj_parse_json(body, len, &docs, err, errlen) || docs.n != 1) {
        if (docs.n != 1) snprintf(err, errlen, "the body is not one JSON object");
        goto out;
    }
    doc = docs.docs[0];
    if (doc->type != KOBJ_MAP) {
        snprintf(err, errlen, "the body is not a JSON object");
        goto out;
    }
    if ((o = kobj_get(doc, "version")) &&
        !(o->type == KOBJ_SCALAR && !kobj_text(o))) { /* null: "" */
        if (!(v = mf_string(o)) || strlen(v) > MESHFEED_VERSION_MAX) {
            snprintf(err, errlen, "version: want a string of at most %d characters",
                     MESHFEED_VERSION_MAX);
            goto out;
        }
        snprintf(q->version, sizeof(q->version), "%s", v);
    }
    if ((o = kobj_get(doc, "wait")) &&
        (o->type != KOBJ_SCALAR || o->style != KOBJ_PLAIN || kobj_int(o, &wait) || wait < 0 ||
         wait > MESHFEED_MAX_WAIT)) {
        snprintf(err, errlen, "wait: want a whole number of seconds from 0 to %d",
                 MESHFEED_MAX_WAIT);
        goto out;
    }
    q->wait = (unsigned)wait;
    if ((o = kobj_get(doc, "addresses")) && (rc = mf_parse_addresses(o, q, err, errlen))) goto out;
    if ((o = kobj_get(doc, "services")) && (rc = mf_parse_services(o, q, err, errlen))) goto out;
    rc = 0;
out:
    if (rc == -2) snprintf(err, errlen, "out of memory");
    kobj_docs_free(&docs);
    if (rc) meshfeed_query_free(q);
    return rc ? -1 : 0;
}

/* ---- answers ---- */

size_t meshfeed_own_addresses(const struct meshpods *pods, const char *identity,
                              const struct meshfeed_query *q, char **own)
{
    size_t i, n = 0;

    for (i = 0; i < q->n_addresses && n < MESHFEED_MAX_ADDRESSES; i++)
        if (meshpods_has(pods, q->addresses[i], identity)) own[n++] = q->addresses[i];
    return n;
}

int meshfeed_own_same(const struct meshpods *a, const struct meshpods *b, const char *identity,
                      const struct meshfeed_query *q)
{
    char *own_a[MESHFEED_MAX_ADDRESSES], *own_b[MESHFEED_MAX_ADDRESSES];
    size_t n = meshfeed_own_addresses(a, identity, q, own_a);

    /* both lists point into q in q's order: equal lists are equal pointers */
    return n == meshfeed_own_addresses(b, identity, q, own_b) &&
           !memcmp(own_a, own_b, n * sizeof(*own_a));
}

static void mf_fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 0x100000001b3ull;
    }
}

void meshfeed_version(const uint8_t *frame, size_t len, const struct meshfeed_query *q,
                      char out[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    if (len > SNAPWIRE_HEADER_SIZE)
        mf_fnv(&h, frame + SNAPWIRE_HEADER_SIZE, len - SNAPWIRE_HEADER_SIZE);
    /* each text NUL-terminated, the two lists apart: no two queries hash the same stream */
    mf_fnv(&h, "\x1ekeys", 5);
    for (i = 0; i < q->n_keys; i++)
        mf_fnv(&h, q->key_text[i], strlen(q->key_text[i]) + 1);
    mf_fnv(&h,
           "\x1e"
           "addresses",
           10);
    for (i = 0; i < q->n_addresses; i++)
        mf_fnv(&h, q->addresses[i], strlen(q->addresses[i]) + 1);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/*
 * The 200 answer to q of the caller identity from the current snapshot into r (frame body,
 * X-Strait-Version) and its version into version: q's addresses count only where they are
 * identity's pod's. Returns 200, or 500 with an error body.
 */
static int mf_answer(struct meshfeed *f, const struct meshfeed_query *q, const char *identity,
                     struct meshsrv_reply *r, char version[17])
{
    char *own[MESHFEED_MAX_ADDRESSES];
    struct meshfeed_query mine = *q;
    struct snapwire_subset_query sq = {q->keys, q->n_keys, (const char *const *)own, 0, f->index};
    struct snapwire_snapshot sub;
    uint8_t *frame;
    size_t len;
    char err[256], qs[300];
    int rc;

    memset(r, 0, sizeof(*r));
    sq.n_addresses = mine.n_addresses = meshfeed_own_addresses(f->pods, identity, q, own);
    mine.addresses = own;
    rc = snapwire_mesh_subset(&f->snap, &sq, &sub, err, sizeof(err));
    if (!rc) {
        rc = snapwire_encode(&sub, f->generation, &frame, &len, err, sizeof(err));
        snapwire_subset_free(&sub);
    }
    if (rc) {
        log_error("mesh_feed_failed", "reason=%s", log_quote(qs, sizeof(qs), err));
        r->status = 500;
        r->body = meshsrv_error_body("cannot build the answer");
        return 500;
    }
    meshfeed_version(frame, len, &mine, version);
    r->status = 200;
    r->content_type = MESHFEED_CONTENT_TYPE;
    r->body = (char *)frame;
    r->body_len = len;
    snprintf(r->headers, sizeof(r->headers), "X-Strait-Version: %s\r\n", version);
    return 200;
}

static void mf_log(const struct meshsrv_request *req, size_t n_services, const char *status)
{
    char q[600];

    log_debug("mesh_feed", "peer=%s identity=%s services=%zu status=%s", req->peer,
              log_quote(q, sizeof(q), req->peer_uri ? req->peer_uri : "-"), n_services, status);
}

static void mf_error(struct meshsrv_request *req, struct meshsrv_reply *out, int status,
                     const char *msg, size_t n_services)
{
    char st[8];

    out->status = status;
    out->body = meshsrv_error_body(msg);
    mf_count(status);
    snprintf(st, sizeof(st), "%d", status);
    mf_log(req, n_services, st);
}

/* ---- held requests ---- */

/* Unlinks h, stops its timer and frees it (its request is finished by the caller). */
static void mf_held_free(struct mf_held *h)
{
    struct meshfeed *f = h->f;

    if (h->prev)
        h->prev->next = h->next;
    else
        f->held = h->next;
    if (h->next) h->next->prev = h->prev;
    ev_timer_stop(f->loop, &h->timer);
    fm.waiting--;
    meshfeed_query_free(&h->q);
    h->magic = 0;
    free(h);
}

/* Answers h with r (taken), frees h. */
static void mf_held_finish(struct mf_held *h, struct meshsrv_reply *r)
{
    struct meshsrv_request *req = h->req;
    char st[8];

    mf_count(r->status);
    snprintf(st, sizeof(st), "%d", r->status);
    mf_log(req, h->q.n_keys, st);
    mf_held_free(h);
    meshsrv_finish_reply(req, r);
}

static void mf_held_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct mf_held *h = container_of(t, struct mf_held, timer);
    struct meshsrv_reply r;

    (void)loop;
    (void)revents;
    if (h->magic != MESHFEED_HELD_MAGIC) abort();
    memset(&r, 0, sizeof(r));
    r.status = 204;
    mf_held_finish(h, &r);
}

/* The sidecar closed the connection of a held request: forget it (no answer is counted). */
static void mf_held_gone(void *arg, struct meshsrv_request *req)
{
    struct mf_held *h = arg;

    if (h->magic != MESHFEED_HELD_MAGIC) abort();
    mf_log(req, h->q.n_keys, "gone");
    mf_held_free(h);
    meshsrv_finish(req, 204, NULL, NULL);
}

/*
 * Holds req with q (taken) until the answer changes or q->wait ends. 0, or -1 (the server
 * holds as many as it may, or out of memory: q and req untouched).
 */
static int mf_hold(struct meshfeed *f, struct meshsrv_request *req, struct meshfeed_query *q)
{
    struct mf_held *h = calloc(1, sizeof(*h));

    if (!h || meshsrv_hold(req, (double)q->wait + MESHFEED_HOLD_SLACK)) {
        free(h);
        return -1;
    }
    h->magic = MESHFEED_HELD_MAGIC;
    h->f = f;
    h->req = req;
    h->q = *q;
    memset(q, 0, sizeof(*q));
    h->next = f->held;
    if (f->held) f->held->prev = h;
    f->held = h;
    fm.waiting++;
    ev_timer_init(&h->timer, mf_held_timeout, (double)h->q.wait, 0.);
    ev_timer_start(f->loop, &h->timer);
    meshsrv_on_gone(req, mf_held_gone, h);
    return 0;
}

/* ---- the handler ---- */

/* Whether uri is a SPIFFE ID of our trust domain, "spiffe://<td>/ns/<ns>/sa/<sa>". */
static int mf_our_identity(const struct meshfeed *f, const char *uri)
{
    size_t n = strlen(f->td_prefix);
    const char *p = uri + n, *sa;

    if (strncmp(uri, f->td_prefix, n) || strncmp(p, "ns/", 3)) return 0;
    if (!(sa = strstr(p + 3, "/sa/")) || sa == p + 3 || !sa[4] || strchr(sa + 4, '/')) return 0;
    return 1;
}

/*
 * Logs (once per request) and counts the addresses of q the caller may not claim: no Pod of
 * its identity has them, or none that the controller has seen yet.
 */
static void mf_log_rejected(const struct meshfeed *f, const struct meshsrv_request *req,
                            const struct meshfeed_query *q)
{
    char *own[MESHFEED_MAX_ADDRESSES], list[MESHFEED_MAX_ADDRESSES * INET6_ADDRSTRLEN];
    char ql[sizeof(list) * 2 + 8], qi[600];
    size_t i, k = 0, n = meshfeed_own_addresses(f->pods, req->peer_uri, q, own), len = 0;

    if (n == q->n_addresses) return;
    list[0] = '\0';
    for (i = 0; i < q->n_addresses; i++) {
        if (k < n && own[k] == q->addresses[i]) {
            k++;
            continue;
        }
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", len ? "," : "",
                                q->addresses[i]);
    }
    fm.addresses_rejected += q->n_addresses - n;
    log_info("mesh_feed_addresses_rejected",
             "peer=%s identity=%s addresses=%s reason=\"no pod of this identity has them\"",
             req->peer, log_quote(qi, sizeof(qi), req->peer_uri), log_quote(ql, sizeof(ql), list));
}

static int mf_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    struct meshfeed *f = arg;
    struct meshfeed_query q;
    char err[400], version[17];
    int status;

    if (f->magic != MESHFEED_MAGIC) abort();
    if (!req->peer_uri) {
        mf_error(req, out, 403, "a workload certificate (client certificate) is required", 0);
        return 0;
    }
    if (!mf_our_identity(f, req->peer_uri)) {
        mf_error(req, out, 403, "the client certificate is not a workload identity of this mesh",
                 0);
        return 0;
    }
    if (meshfeed_parse(req->body, req->body_len, &q, err, sizeof(err))) {
        mf_error(req, out, 400, err, 0);
        return 0;
    }
    if (!f->have_snapshot) { /* nor a pod table: nothing to tell about the addresses */
        mf_error(req, out, 503, "no snapshot yet", q.n_keys);
        meshfeed_query_free(&q);
        return 0;
    }
    mf_log_rejected(f, req, &q);
    status = mf_answer(f, &q, req->peer_uri, out, version);
    if (status == 200 && q.wait && !strcmp(version, q.version)) {
        size_t n = q.n_keys;
        free(out->body);
        memset(out, 0, sizeof(*out));
        if (!mf_hold(f, req, &q)) {
            mf_log(req, n, "held");
            return MESHSRV_ASYNC;
        }
        meshfeed_query_free(&q);
        mf_error(req, out, 503, "too many requests held: ask again later", n);
        return 0;
    }
    mf_count(status);
    mf_log(req, q.n_keys, status == 200 ? "200" : "500");
    meshfeed_query_free(&q);
    return 0;
}

/* ---- the feed ---- */

struct meshfeed *meshfeed_start(struct ev_loop *loop, struct meshsrv *srv, const char *trust_domain,
                                char *err, size_t errlen)
{
    struct meshfeed *f = calloc(1, sizeof(*f));
    size_t n = strlen(trust_domain) + sizeof("spiffe:///");

    if (!f || !(f->td_prefix = malloc(n))) goto oom;
    snprintf(f->td_prefix, n, "spiffe://%s/", trust_domain);
    f->magic = MESHFEED_MAGIC;
    f->loop = loop;
    if (meshsrv_route(srv, "POST", MESHFEED_PATH, mf_handler, f)) goto oom;
    fm.enabled = 1;
    return f;
oom:
    snprintf(err, errlen, "cannot route POST %s: out of memory", MESHFEED_PATH);
    if (f) free(f->td_prefix);
    free(f);
    return NULL;
}

/* Replaces f's snapshot with frame's. 1, or 0 when it does not decode (logged; f unchanged). */
static int mf_set_frame(struct meshfeed *f, const uint8_t *frame, size_t len)
{
    struct snapwire_snapshot snap;
    char err[256], q[300];

    if (snapwire_decode(frame, len, &snap, err, sizeof(err))) {
        log_error("mesh_feed_decode_failed", "reason=%s", log_quote(q, sizeof(q), err));
        return 0;
    }
    snapwire_subset_index_free(f->index);
    if (f->have_snapshot) snapwire_free(&f->snap);
    f->snap = snap;
    f->index = snapwire_subset_index_new(&f->snap); /* NULL (memory) is only slower */
    f->generation = snapwire_frame_generation(frame);
    f->have_snapshot = 1;
    return 1;
}

/*
 * Replaces f's pod table with pods (taken). Returns the table it replaced (free it), NULL
 * when pods holds the same pairs (then freed) or f had none.
 */
static struct meshpods *mf_set_pods(struct meshfeed *f, struct meshpods *pods, int *changed)
{
    struct meshpods *old = f->pods;

    if (meshpods_equal(pods, f->pods)) {
        meshpods_free(pods);
        return NULL;
    }
    f->pods = pods;
    *changed = 1;
    return old;
}

void meshfeed_publish(struct meshfeed *f, const uint8_t *frame, size_t len, struct meshpods *pods)
{
    struct meshsrv_reply r;
    struct mf_held *h, *next;
    struct meshpods *old = NULL;
    char version[17];
    int pods_changed = 0, frame_changed = 0;

    if (!f) {
        meshpods_free(pods);
        return;
    }
    if (pods) old = mf_set_pods(f, pods, &pods_changed);
    if (frame) frame_changed = mf_set_frame(f, frame, len);
    if ((!pods_changed && !frame_changed) || !f->have_snapshot) goto out;
    for (h = f->held; h; h = next) {
        next = h->next;
        /* only the pods changed, and not which of its addresses are the caller's: same answer */
        if (!frame_changed && meshfeed_own_same(old, f->pods, h->req->peer_uri, &h->q)) continue;
        if (mf_answer(f, &h->q, h->req->peer_uri, &r, version) == 200 &&
            !strcmp(version, h->q.version)) {
            free(r.body);
            continue;
        }
        mf_held_finish(h, &r);
    }
out:
    meshpods_free(old);
}

void meshfeed_free(struct meshfeed *f)
{
    struct meshsrv_reply r;

    if (!f) return;
    while (f->held) {
        memset(&r, 0, sizeof(r));
        r.status = 503;
        r.body = meshsrv_error_body("the controller is stopping");
        mf_held_finish(f->held, &r);
    }
    snapwire_subset_index_free(f->index);
    if (f->have_snapshot) snapwire_free(&f->snap);
    meshpods_free(f->pods);
    free(f->td_prefix);
    f->magic = 0;
    free(f);
    memset(&fm.requests, 0, sizeof(fm.requests));
    fm.addresses_rejected = 0;
    fm.enabled = 0;
}
