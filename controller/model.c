/*
 * model: per-object bump pools and the typed object cache.
 *
 * Does: allocation of decoded objects, identity (kind/namespace/name) de-duplication, sorted
 * lookup, and the incremental put/remove/replace-kind that cluster mode's reflectors use on a
 * sealed cache; the merge of a Service's and an Ingress's balancing policies (precedence and
 * defaults, in one place for snapbuild and the tests). Does not: validate or interpret
 * objects (kube_decode and snapbuild do).
 * Invariants: an object and all its strings/arrays live in its own pool; after
 * model_cache_seal() each kind list is strictly increasing by (namespace, name), and the
 * incremental operations keep it so.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "snapwire.h"

#define MODEL_CHUNK 2048

struct model_pool {
    struct model_pool *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

static struct model_pool *model_pool_chunk(size_t need)
{
    size_t size = need > MODEL_CHUNK ? need : MODEL_CHUNK;
    struct model_pool *p = malloc(sizeof(*p) + size);

    if (p) {
        p->next = NULL;
        p->used = 0;
        p->size = size;
    }
    return p;
}

static void *model_pool_alloc(struct model_pool **head, size_t size)
{
    struct model_pool *p = *head, *c;
    void *r;

    size = (size + 15) & ~(size_t)15;
    if (!p || p->size - p->used < size) {
        if (!(c = model_pool_chunk(size))) return NULL;
        /* a big odd-sized chunk goes behind the head so the head keeps its free space */
        if (p && size > MODEL_CHUNK) {
            c->next = p->next;
            p->next = c;
        } else {
            c->next = p;
            *head = c;
        }
        p = c;
    }
    r = p->data + p->used;
    p->used += size;
    memset(r, 0, size);
    return r;
}

void *model_object_new(size_t size, enum model_kind kind)
{
    struct model_pool *pool = NULL;
    struct model_meta *m = model_pool_alloc(&pool, size);

    if (!m) return NULL;
    m->pool = pool;
    m->kind = kind;
    m->ns = m->name = m->source = "";
    return m;
}

void *model_alloc(struct model_meta *obj, size_t size)
{
    return model_pool_alloc(&obj->pool, size ? size : 1);
}

const char *model_strdup(struct model_meta *obj, const char *s)
{
    size_t n;
    char *r;

    if (!s) s = "";
    n = strlen(s) + 1;
    if (!(r = model_alloc(obj, n))) return NULL;
    memcpy(r, s, n);
    return r;
}

void model_object_free(struct model_meta *obj)
{
    struct model_pool *p, *next;

    if (!obj) return;
    /* obj itself lives in the pool: read the head before releasing anything */
    for (p = obj->pool; p; p = next) {
        next = p->next;
        free(p);
    }
}

const char *model_kind_name(enum model_kind kind)
{
    static const char *names[MODEL_KIND_COUNT] = {
        "IngressClass", "Ingress", "Service", "EndpointSlice",
        "Secret",       "Gateway", "Pod",     "AuthorizationPolicy"};
    return (unsigned)kind < MODEL_KIND_COUNT ? names[kind] : "-";
}

const char *model_object_id(const struct model_meta *m, char *buf, size_t n)
{
    if (m->ns[0])
        snprintf(buf, n, "%s/%s", m->ns, m->name);
    else
        snprintf(buf, n, "%s", m->name);
    return buf;
}

const char *model_log_value(char *buf, size_t n, const char *s)
{
    const char *p;

    if (!s) s = "";
    for (p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '=' || *p == '\\') break;
    if (*s && !*p) return s;
    return log_quote(buf, n, s);
}

void model_cache_init(struct model_cache *c)
{
    memset(c, 0, sizeof(*c));
}

int model_cache_add(struct model_cache *c, struct model_meta *obj)
{
    struct model_list *l = &c->kinds[obj->kind];

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct model_meta **items = realloc(l->items, cap * sizeof(*items));
        if (!items) {
            model_object_free(obj);
            return -1;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = obj;
    return 0;
}

static int model_cmp_id(const struct model_meta *a, const struct model_meta *b)
{
    int r = strcmp(a->ns, b->ns);

    return r ? r : strcmp(a->name, b->name);
}

/* Merge sort on pointers: stable, so the first-added duplicate stays first. */
static void model_sort(struct model_meta **v, struct model_meta **tmp, size_t n)
{
    size_t mid = n / 2, i = 0, j = mid, k = 0;

    if (n < 2) return;
    model_sort(v, tmp, mid);
    model_sort(v + mid, tmp, n - mid);
    while (i < mid && j < n)
        tmp[k++] = model_cmp_id(v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < mid)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(*v));
}

void model_cache_seal(struct model_cache *c)
{
    char id[300], reason[600], q[700], fq[600];
    struct model_meta **tmp;
    struct model_list *l;
    size_t i, out;
    int k;

    for (k = 0; k < MODEL_KIND_COUNT; k++) {
        l = &c->kinds[k];
        if (l->n < 2) continue;
        tmp = malloc(l->n * sizeof(*tmp));
        if (tmp) {
            model_sort(l->items, tmp, l->n);
            free(tmp);
        } else {
            /* no memory for the merge buffer: a stable in-place insertion sort still works */
            for (i = 1; i < l->n; i++) {
                struct model_meta *x = l->items[i];
                size_t j = i;
                for (; j > 0 && model_cmp_id(x, l->items[j - 1]) < 0; j--)
                    l->items[j] = l->items[j - 1];
                l->items[j] = x;
            }
        }
        for (i = 1, out = 1; i < l->n; i++) {
            if (!model_cmp_id(l->items[out - 1], l->items[i])) {
                snprintf(reason, sizeof(reason), "duplicate of the object in %s",
                         l->items[out - 1]->source);
                c->n_rejected++;
                log_warn("object_rejected", "file=%s kind=%s object=%s reason=%s",
                         model_log_value(fq, sizeof(fq), l->items[i]->source),
                         model_kind_name(l->items[i]->kind),
                         model_object_id(l->items[i], id, sizeof(id)),
                         log_quote(q, sizeof(q), reason));
                model_object_free(l->items[i]);
                continue;
            }
            l->items[out++] = l->items[i];
        }
        l->n = out;
    }
}

/* Bisects kind's list of a sealed cache: the index of ns/name, or where it would go. */
static size_t model_cache_bisect(const struct model_list *l, const char *ns, const char *name,
                                 int *found)
{
    struct model_meta key = {.ns = ns, .name = name};
    size_t lo = 0, hi = l->n, mid;
    int r;

    *found = 0;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = model_cmp_id(&key, l->items[mid]);
        if (!r) {
            *found = 1;
            return mid;
        }
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

struct model_meta *model_cache_find(const struct model_cache *c, enum model_kind kind,
                                    const char *ns, const char *name)
{
    const struct model_list *l = &c->kinds[kind];
    int found;
    size_t i = model_cache_bisect(l, ns, name, &found);

    return found ? l->items[i] : NULL;
}

int model_cache_put(struct model_cache *c, struct model_meta *obj)
{
    struct model_list *l = &c->kinds[obj->kind];
    int found;
    size_t i = model_cache_bisect(l, obj->ns, obj->name, &found);

    if (found) {
        model_object_free(l->items[i]);
        l->items[i] = obj;
        return 1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct model_meta **items = realloc(l->items, cap * sizeof(*items));
        if (!items) {
            model_object_free(obj);
            return -1;
        }
        l->items = items;
        l->cap = cap;
    }
    memmove(l->items + i + 1, l->items + i, (l->n - i) * sizeof(*l->items));
    l->items[i] = obj;
    l->n++;
    return 0;
}

int model_cache_remove(struct model_cache *c, enum model_kind kind, const char *ns,
                       const char *name)
{
    struct model_list *l = &c->kinds[kind];
    int found;
    size_t i = model_cache_bisect(l, ns, name, &found);

    if (!found) return 0;
    model_object_free(l->items[i]);
    memmove(l->items + i, l->items + i + 1, (l->n - i - 1) * sizeof(*l->items));
    l->n--;
    return 1;
}

void model_cache_replace_kind(struct model_cache *c, enum model_kind kind, struct model_cache *from)
{
    struct model_list *l = &c->kinds[kind];
    size_t i;

    for (i = 0; i < l->n; i++)
        model_object_free(l->items[i]);
    free(l->items);
    *l = from->kinds[kind];
    memset(&from->kinds[kind], 0, sizeof(from->kinds[kind]));
}

void model_cache_free(struct model_cache *c)
{
    size_t i;
    int k;

    for (k = 0; k < MODEL_KIND_COUNT; k++) {
        for (i = 0; i < c->kinds[k].n; i++)
            model_object_free(c->kinds[k].items[i]);
        free(c->kinds[k].items);
    }
    memset(c, 0, sizeof(*c));
}

/* ---- balancing policies ---- */

/* The policy (ing first, then svc) that sets bit, or NULL. */
static const struct model_policy *model_pol_from(const struct model_policy *svc,
                                                 const struct model_policy *ing, uint32_t bit)
{
    if (ing && (ing->set & bit)) return ing;
    if (svc && (svc->set & bit)) return svc;
    return NULL;
}

static int model_pol_hashes(uint8_t lb)
{
    return lb == SNAPWIRE_LB_RING_HASH || lb == SNAPWIRE_LB_MAGLEV;
}

void model_policy_resolve(const struct model_policy *svc, const struct model_policy *ing,
                          struct model_policy *out)
{
    const struct model_policy *f;

    memset(out, 0, sizeof(*out));
    out->set = ~0u;
    /* balancing: an Ingress's hash-by without its own load-balance means a hashing one */
    if (ing && (ing->set & MODEL_POL_LB))
        out->lb = ing->lb;
    else if (ing && (ing->set & MODEL_POL_HASH))
        out->lb = svc && (svc->set & MODEL_POL_LB) && model_pol_hashes(svc->lb)
                      ? svc->lb
                      : SNAPWIRE_LB_RING_HASH;
    else if (svc && (svc->set & MODEL_POL_LB))
        out->lb = svc->lb;
    else if (svc && (svc->set & MODEL_POL_HASH))
        out->lb = SNAPWIRE_LB_RING_HASH;
    else
        out->lb = SNAPWIRE_LB_EWMA;
    out->hash_on = SNAPWIRE_HASH_NONE;
    out->hash_name = "";
    if (model_pol_hashes(out->lb) && (f = model_pol_from(svc, ing, MODEL_POL_HASH))) {
        out->hash_on = f->hash_on;
        out->hash_name = f->hash_name ? f->hash_name : "";
    }
    out->affinity = (f = model_pol_from(svc, ing, MODEL_POL_AFFINITY)) ? f->affinity : 0;
    out->cookie = "";
    if (out->affinity)
        out->cookie = (f = model_pol_from(svc, ing, MODEL_POL_COOKIE)) && f->cookie
                          ? f->cookie
                          : MODEL_SESSION_COOKIE_DEFAULT;

#define MODEL_POL_TAKE(bit, field, def)                                                            \
    out->field = (f = model_pol_from(svc, ing, bit)) ? f->field : (def)
    out->hc_path = "";
    out->hc_host = "";
    if ((f = model_pol_from(svc, ing, MODEL_POL_HC_PATH)) && f->hc_path && f->hc_path[0]) {
        out->hc_path = f->hc_path;
        if ((f = model_pol_from(svc, ing, MODEL_POL_HC_HOST)) && f->hc_host)
            out->hc_host = f->hc_host;
        MODEL_POL_TAKE(MODEL_POL_HC_INTERVAL, hc_interval_ms, SNAPWIRE_HC_INTERVAL_MS_DEFAULT);
        MODEL_POL_TAKE(MODEL_POL_HC_TIMEOUT, hc_timeout_ms, SNAPWIRE_HC_TIMEOUT_MS_DEFAULT);
        if (out->hc_timeout_ms > out->hc_interval_ms) out->hc_timeout_ms = out->hc_interval_ms;
        MODEL_POL_TAKE(MODEL_POL_HC_STATUS, hc_status_lo, 200);
        MODEL_POL_TAKE(MODEL_POL_HC_STATUS, hc_status_hi, 399);
        MODEL_POL_TAKE(MODEL_POL_HC_HEALTHY, hc_healthy, SNAPWIRE_HC_HEALTHY_DEFAULT);
        MODEL_POL_TAKE(MODEL_POL_HC_UNHEALTHY, hc_unhealthy, SNAPWIRE_HC_UNHEALTHY_DEFAULT);
    }
    MODEL_POL_TAKE(MODEL_POL_OD_CONSECUTIVE, od_consecutive, SNAPWIRE_OD_CONSECUTIVE_DEFAULT);
    MODEL_POL_TAKE(MODEL_POL_OD_BASE, od_base_ms, SNAPWIRE_OD_BASE_MS_DEFAULT);
    MODEL_POL_TAKE(MODEL_POL_OD_MAX, od_max_ms, SNAPWIRE_OD_MAX_MS_DEFAULT);
    if (out->od_max_ms < out->od_base_ms) out->od_max_ms = out->od_base_ms;
    MODEL_POL_TAKE(MODEL_POL_OD_PERCENT, od_max_percent, SNAPWIRE_OD_MAX_PERCENT_DEFAULT);
    if (!out->od_consecutive) out->od_base_ms = out->od_max_ms = out->od_max_percent = 0;
    MODEL_POL_TAKE(MODEL_POL_CB_CONNECTIONS, cb_max_connections, 0);
    MODEL_POL_TAKE(MODEL_POL_CB_PENDING, cb_max_pending, 0);
    MODEL_POL_TAKE(MODEL_POL_CB_REQUESTS, cb_max_requests, 0);
    MODEL_POL_TAKE(MODEL_POL_RB_PERCENT, rb_percent, SNAPWIRE_RB_PERCENT_DEFAULT);
    MODEL_POL_TAKE(MODEL_POL_RB_MIN, rb_min_per_sec, SNAPWIRE_RB_MIN_PER_SEC_DEFAULT);
    MODEL_POL_TAKE(MODEL_POL_SLOW_START, slow_start_ms, 0);
#undef MODEL_POL_TAKE
}

#define MODEL_CMP(x)                                                                               \
    do {                                                                                           \
        if (a->x != b->x) return a->x < b->x ? -1 : 1;                                             \
    } while (0)
#define MODEL_CMP_STR(x)                                                                           \
    do {                                                                                           \
        int r_ = strcmp(a->x, b->x);                                                               \
        if (r_) return r_;                                                                         \
    } while (0)

static int model_cmp_resilience(const struct model_policy *a, const struct model_policy *b)
{
    MODEL_CMP_STR(hc_path);
    MODEL_CMP_STR(hc_host);
    MODEL_CMP(hc_interval_ms);
    MODEL_CMP(hc_timeout_ms);
    MODEL_CMP(hc_status_lo);
    MODEL_CMP(hc_status_hi);
    MODEL_CMP(hc_healthy);
    MODEL_CMP(hc_unhealthy);
    MODEL_CMP(od_consecutive);
    MODEL_CMP(od_base_ms);
    MODEL_CMP(od_max_ms);
    MODEL_CMP(od_max_percent);
    MODEL_CMP(cb_max_connections);
    MODEL_CMP(cb_max_pending);
    MODEL_CMP(cb_max_requests);
    MODEL_CMP(rb_percent);
    MODEL_CMP(rb_min_per_sec);
    MODEL_CMP(slow_start_ms);
    return 0;
}

int model_policy_same_resilience(const struct model_policy *a, const struct model_policy *b)
{
    return !model_cmp_resilience(a, b);
}

int model_policy_cmp(const struct model_policy *a, const struct model_policy *b)
{
    MODEL_CMP(lb);
    MODEL_CMP(hash_on);
    MODEL_CMP_STR(hash_name);
    MODEL_CMP(affinity);
    MODEL_CMP_STR(cookie);
    return model_cmp_resilience(a, b);
}
#undef MODEL_CMP_STR
#undef MODEL_CMP

static uint32_t model_fnv_bytes(uint32_t h, const void *p, size_t n)
{
    const unsigned char *c = p;

    while (n--) {
        h ^= *c++;
        h *= 16777619u;
    }
    return h;
}

/* A number as 4 little-endian bytes, so the hash does not depend on the host. */
static uint32_t model_fnv_u32(uint32_t h, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};

    return model_fnv_bytes(h, b, sizeof(b));
}

uint32_t model_policy_resilience_hash(const struct model_policy *p)
{
    uint32_t h = 2166136261u;

    h = model_fnv_bytes(h, p->hc_path, strlen(p->hc_path) + 1);
    h = model_fnv_bytes(h, p->hc_host, strlen(p->hc_host) + 1);
    h = model_fnv_u32(h, p->hc_interval_ms);
    h = model_fnv_u32(h, p->hc_timeout_ms);
    h = model_fnv_u32(h, p->hc_status_lo);
    h = model_fnv_u32(h, p->hc_status_hi);
    h = model_fnv_u32(h, p->hc_healthy);
    h = model_fnv_u32(h, p->hc_unhealthy);
    h = model_fnv_u32(h, p->od_consecutive);
    h = model_fnv_u32(h, p->od_base_ms);
    h = model_fnv_u32(h, p->od_max_ms);
    h = model_fnv_u32(h, p->od_max_percent);
    h = model_fnv_u32(h, p->cb_max_connections);
    h = model_fnv_u32(h, p->cb_max_pending);
    h = model_fnv_u32(h, p->cb_max_requests);
    h = model_fnv_u32(h, p->rb_percent);
    h = model_fnv_u32(h, p->rb_min_per_sec);
    return model_fnv_u32(h, p->slow_start_ms);
}

int model_pod_finished(const struct model_pod *pod)
{
    return !strcmp(pod->phase, "Succeeded") || !strcmp(pod->phase, "Failed");
}
