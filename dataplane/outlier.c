/*
 * outlier: passive outlier detection (see outlier.h).
 *
 * Does: count failure runs per endpoint, eject under the cluster's cap, restore lazily, share
 * endpoint records across snapshots by identity. Does not: pick endpoints (snapshot.c skips
 * the ejected ones) or run timers.
 * Invariants: a record's until is 0 (not ejected) or the monotonic ms its ejection ends;
 * every ejection counts once in metrics_outlier_ejected and ends once in
 * metrics_outlier_restored (time up, or the record freed while ejected).
 */
#include "outlier.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define KEY_MAX 64

const struct outlier_config outlier_defaults = {
    .consecutive = OUTLIER_CONSECUTIVE,
    .base_ms = OUTLIER_BASE_EJECTION_MS,
    .max_ms = OUTLIER_MAX_EJECTION_MS,
    .max_percent = OUTLIER_MAX_EJECTION_PERCENT,
};

struct outlier_rec {
    atomic_uint refs;
    atomic_uint fails;     /* current run of failures */
    atomic_uint ejections; /* times ejected */
    atomic_uint_fast64_t until;
    /* the endpoint's counters (outlier_observe), kept across snapshots with the record */
    atomic_uint_fast64_t requests, errors, ewma_ns;
    uint64_t added_ms; /* when it joined a cluster that existed before (slow start), 0: at start */
    uint64_t id;
    size_t key_len;
    char key[KEY_MAX];
    char *cluster;
};

struct outlier_state {
    struct outlier_config cfg;
    char *name;
    uint32_t n;
    atomic_flag lock; /* held while an ejection is decided */
    struct outlier_rec **rec;
};

uint64_t outlier_now_ms(void)
{
    struct timespec ts;
    uint64_t ms;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return ms ? ms : 1;
}

static void rec_unref(struct outlier_rec *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
    if (atomic_load_explicit(&r->until, memory_order_relaxed)) {
        log_info("outlier_restored", "cluster=%s endpoint=%s reason=removed", r->cluster, r->key);
        metrics_outlier_restored();
    }
    free(r->cluster);
    free(r);
}

static struct outlier_rec *rec_new(const char *cluster, const char *key, size_t key_len,
                                   uint64_t id)
{
    struct outlier_rec *r = calloc(1, sizeof(*r));

    if (!r) return NULL;
    if (!(r->cluster = strdup(cluster))) {
        free(r);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    atomic_init(&r->fails, 0);
    atomic_init(&r->ejections, 0);
    atomic_init(&r->until, 0);
    atomic_init(&r->requests, 0);
    atomic_init(&r->errors, 0);
    atomic_init(&r->ewma_ns, 0);
    r->id = id;
    r->key_len = key_len < KEY_MAX ? key_len : KEY_MAX - 1;
    memcpy(r->key, key, r->key_len);
    r->key[r->key_len] = '\0';
    return r;
}

/* The record of prev with key (id), or NULL; tab is prev's records hashed by id (mask). */
static struct outlier_rec *prev_find(struct outlier_rec **tab, size_t mask, uint64_t id,
                                     const char *key, size_t key_len)
{
    size_t i;

    for (i = (size_t)id & mask; tab[i]; i = (i + 1) & mask)
        if (tab[i]->id == id && tab[i]->key_len == key_len && !memcmp(tab[i]->key, key, key_len))
            return tab[i];
    return NULL;
}

struct outlier_state *outlier_create(const char *name, const struct balancer_endpoints *eps,
                                     const struct outlier_state *prev,
                                     const struct outlier_config *cfg)
{
    struct outlier_state *st = calloc(1, sizeof(*st));
    struct outlier_rec **tab = NULL;
    size_t mask = 0, slots = 2;
    uint32_t i;

    if (!st) return NULL;
    st->cfg = cfg ? *cfg : outlier_defaults;
    atomic_flag_clear(&st->lock);
    st->name = strdup(name ? name : "");
    st->rec = calloc(eps->n ? eps->n : 1, sizeof(*st->rec));
    if (!st->name || !st->rec) goto fail;
    st->n = eps->n;
    if (prev && prev->n) {
        while (slots < 2 * (size_t)prev->n)
            slots *= 2;
        if (!(tab = calloc(slots, sizeof(*tab)))) goto fail;
        mask = slots - 1;
        for (i = 0; i < prev->n; i++) {
            size_t j = (size_t)prev->rec[i]->id & mask;
            while (tab[j])
                j = (j + 1) & mask;
            tab[j] = prev->rec[i];
        }
    }
    for (i = 0; i < eps->n; i++) {
        const char *key = eps->ep[i].key ? eps->ep[i].key : "";
        size_t kl = eps->ep[i].key_len < KEY_MAX ? eps->ep[i].key_len : KEY_MAX - 1;
        uint64_t id = balancer_hash(key, kl, 0x4f55544c49455221ull);
        struct outlier_rec *r = tab ? prev_find(tab, mask, id, key, kl) : NULL;

        if (r)
            atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
        else if (!(r = rec_new(st->name, key, kl, id)))
            goto fail;
        else if (prev)
            r->added_ms = outlier_now_ms(); /* a new endpoint of a running cluster */
        st->rec[i] = r;
    }
    free(tab);
    return st;

fail:
    free(tab);
    outlier_destroy(st);
    return NULL;
}

void outlier_destroy(struct outlier_state *st)
{
    uint32_t i;

    if (!st) return;
    for (i = 0; st->rec && i < st->n; i++)
        rec_unref(st->rec[i]);
    free(st->rec);
    free(st->name);
    free(st);
}

/* Ends r's ejection (until u, which is up) unless another thread already did. */
static void rec_restore(struct outlier_rec *r, uint_fast64_t u)
{
    if (atomic_compare_exchange_strong_explicit(&r->until, &u, 0, memory_order_relaxed,
                                                memory_order_relaxed)) {
        log_info("outlier_restored", "cluster=%s endpoint=%s ejections=%u", r->cluster, r->key,
                 atomic_load_explicit(&r->ejections, memory_order_relaxed));
        metrics_outlier_restored();
    }
}

/* Endpoints ejected at now, restoring those whose time is up. */
static uint32_t count_ejected(struct outlier_state *st, uint64_t now)
{
    uint32_t i, k = 0;

    for (i = 0; i < st->n; i++) {
        uint_fast64_t u = atomic_load_explicit(&st->rec[i]->until, memory_order_relaxed);
        if (!u) continue;
        if (now >= u)
            rec_restore(st->rec[i], u);
        else
            k++;
    }
    return k;
}

uint32_t outlier_n_ejected(struct outlier_state *st, uint64_t now_ms)
{
    return count_ejected(st, now_ms ? now_ms : outlier_now_ms());
}

int outlier_ejected(struct outlier_state *st, uint32_t idx, uint64_t now_ms)
{
    struct outlier_rec *r;
    uint_fast64_t u;

    if (!st || idx >= st->n) return 0;
    r = st->rec[idx];
    if (!(u = atomic_load_explicit(&r->until, memory_order_relaxed))) return 0;
    if (!now_ms) now_ms = outlier_now_ms();
    if (now_ms < u) return 1;
    rec_restore(r, u);
    return 0;
}

int outlier_report(struct outlier_state *st, uint32_t idx, int ok, uint64_t now_ms)
{
    struct outlier_rec *r;
    uint32_t f, cap, k;
    uint64_t dur;

    if (!st || idx >= st->n) return 0;
    r = st->rec[idx];
    if (outlier_ejected(st, idx, now_ms)) return 0;
    if (ok) {
        if (atomic_load_explicit(&r->fails, memory_order_relaxed))
            atomic_store_explicit(&r->fails, 0, memory_order_relaxed);
        return 0;
    }
    if (!st->cfg.consecutive) return 0; /* detection off: no run is counted */
    f = atomic_fetch_add_explicit(&r->fails, 1, memory_order_relaxed) + 1;
    if (f < st->cfg.consecutive) return 0;
    if (atomic_flag_test_and_set_explicit(&st->lock, memory_order_acquire)) return 0;
    if (!now_ms) now_ms = outlier_now_ms();
    cap = (uint32_t)((uint64_t)st->n * st->cfg.max_percent / 100u);
    if (cap >= st->n) cap = st->n ? st->n - 1 : 0; /* never the last endpoint */
    if (atomic_load_explicit(&r->until, memory_order_relaxed) || count_ejected(st, now_ms) >= cap) {
        atomic_flag_clear_explicit(&st->lock, memory_order_release);
        return 0;
    }
    k = atomic_fetch_add_explicit(&r->ejections, 1, memory_order_relaxed) + 1;
    dur = st->cfg.base_ms * k;
    if (dur > st->cfg.max_ms || dur / k != st->cfg.base_ms) dur = st->cfg.max_ms;
    atomic_store_explicit(&r->until, now_ms + (dur ? dur : 1), memory_order_relaxed);
    atomic_store_explicit(&r->fails, 0, memory_order_relaxed);
    atomic_flag_clear_explicit(&st->lock, memory_order_release);
    log_info("outlier_ejected", "cluster=%s endpoint=%s failures=%u for_s=%.3g ejections=%u",
             st->name, r->key, f, (double)dur / 1000.0, k);
    metrics_outlier_ejected();
    return 1;
}

uint32_t outlier_ejections(const struct outlier_state *st, uint32_t idx)
{
    if (!st || idx >= st->n) return 0;
    return atomic_load_explicit(&st->rec[idx]->ejections, memory_order_relaxed);
}

uint64_t outlier_ejected_until(const struct outlier_state *st, uint32_t idx)
{
    if (!st || idx >= st->n) return 0;
    return atomic_load_explicit(&st->rec[idx]->until, memory_order_relaxed);
}

void outlier_observe(struct outlier_state *st, uint32_t idx, int ok, uint64_t latency_ns)
{
    struct outlier_rec *r;
    uint64_t e;

    if (!st || idx >= st->n) return;
    r = st->rec[idx];
    atomic_fetch_add_explicit(&r->requests, 1, memory_order_relaxed);
    if (!ok) atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
    /* alpha 1/8; concurrent updates may drop a sample, which an average can afford */
    e = atomic_load_explicit(&r->ewma_ns, memory_order_relaxed);
    e = e ? e - (e >> 3) + (latency_ns >> 3) : latency_ns;
    atomic_store_explicit(&r->ewma_ns, e ? e : 1, memory_order_relaxed);
}

void outlier_stats(const struct outlier_state *st, uint32_t idx, struct outlier_ep_stats *out)
{
    const struct outlier_rec *r;

    memset(out, 0, sizeof(*out));
    if (!st || idx >= st->n) return;
    r = st->rec[idx];
    out->requests = atomic_load_explicit(&r->requests, memory_order_relaxed);
    out->errors = atomic_load_explicit(&r->errors, memory_order_relaxed);
    out->latency_ewma_ns = atomic_load_explicit(&r->ewma_ns, memory_order_relaxed);
    out->ejections = atomic_load_explicit(&r->ejections, memory_order_relaxed);
    out->ejected_until_ms = atomic_load_explicit(&r->until, memory_order_relaxed);
    out->added_ms = r->added_ms;
}

uint64_t outlier_added_ms(const struct outlier_state *st, uint32_t idx)
{
    if (!st || idx >= st->n) return 0;
    return st->rec[idx]->added_ms;
}
