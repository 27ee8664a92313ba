/*
 * retrybudget: token bucket in thousandths of a retry (see retrybudget.h).
 *
 * Does: add the ratio (RETRY_BUDGET_RATIO_MILLI by default) per request and the per-second
 * rate (RETRY_BUDGET_MIN_PER_SEC by default) * 1000 per elapsed second (lazily, when the
 * bucket is touched), capped; a retry costs 1000.
 * Invariants: lock-free; any number of threads may deposit and take at once (the time
 * refill is claimed with a compare-and-swap on last_ms, so it is added exactly once).
 */
#include "retrybudget.h"

static void add_capped(struct retry_budget *b, int64_t add)
{
    int64_t cur = atomic_load_explicit(&b->milli, memory_order_relaxed), next;

    do {
        next = cur + add;
        if (next > RETRY_BUDGET_CAP_MILLI) next = RETRY_BUDGET_CAP_MILLI;
        if (next == cur) return;
    } while (!atomic_compare_exchange_weak_explicit(&b->milli, &cur, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static void refill(struct retry_budget *b, int64_t now_ms, int64_t per_sec)
{
    int64_t last = atomic_load_explicit(&b->last_ms, memory_order_relaxed);

    if (last == 0) {
        /* first use: start the clock with one second's allowance */
        if (atomic_compare_exchange_strong(&b->last_ms, &last, now_ms))
            add_capped(b, per_sec * 1000);
        return;
    }
    if (now_ms <= last) return;
    if (atomic_compare_exchange_strong(&b->last_ms, &last, now_ms))
        add_capped(b, (now_ms - last) * per_sec);
}

void retry_budget_deposit_rate(struct retry_budget *b, int64_t now_ms, int64_t ratio_milli,
                               int64_t per_sec)
{
    refill(b, now_ms, per_sec);
    if (ratio_milli) add_capped(b, ratio_milli);
}

void retry_budget_deposit(struct retry_budget *b, int64_t now_ms)
{
    retry_budget_deposit_rate(b, now_ms, RETRY_BUDGET_RATIO_MILLI, RETRY_BUDGET_MIN_PER_SEC);
}

int retry_budget_take(struct retry_budget *b, int64_t now_ms)
{
    return retry_budget_take_rate(b, now_ms, RETRY_BUDGET_MIN_PER_SEC);
}

int retry_budget_take_rate(struct retry_budget *b, int64_t now_ms, int64_t per_sec)
{
    int64_t cur;

    refill(b, now_ms, per_sec);
    cur = atomic_load_explicit(&b->milli, memory_order_relaxed);
    while (cur >= 1000) {
        if (atomic_compare_exchange_weak_explicit(&b->milli, &cur, cur - 1000, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 1;
    }
    return 0;
}
