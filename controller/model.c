/*
 * model: per-object bump pools and the typed object cache.
 *
 * Does: allocation of decoded objects, identity (kind/namespace/name) de-duplication, sorted
 * lookup, and the incremental put/remove/replace-kind that cluster mode's reflectors use on a
 * sealed cache. Does not: validate or interpret objects (kube_decode and snapbuild do).
 * Invariants: an object and all its strings/arrays live in its own pool; after
 * model_cache_seal() each kind list is strictly increasing by (namespace, name), and the
 * incremental operations keep it so.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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
    static const char *names[MODEL_KIND_COUNT] = {"IngressClass",  "Ingress", "Service",
                                                  "EndpointSlice", "Secret",  "Gateway"};
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
