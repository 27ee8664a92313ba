/*
 * retrybudget: a per-route cap on retries shared by all workers (Linkerd/Finagle style):
 * retries may add at most RETRY_BUDGET_RATIO of the route's requests plus
 * RETRY_BUDGET_MIN_PER_SEC per second, so a failing backend cannot be hammered with
 * attempts multiplied by the retry count.
 */
#ifndef STRAIT_RETRYBUDGET_H
#define STRAIT_RETRYBUDGET_H

#include <stdatomic.h>
#include <stdint.h>

#define RETRY_BUDGET_RATIO_MILLI 200  /* each request earns 0.2 retries */
#define RETRY_BUDGET_MIN_PER_SEC 10   /* and every second earns 10 */
#define RETRY_BUDGET_CAP_MILLI 100000 /* at most 100 retries saved up */

/* Zeroed = empty, nothing earned yet (the first second's allowance comes with time). */
struct retry_budget {
    _Atomic int64_t milli;   /* retries available, in thousandths */
    _Atomic int64_t last_ms; /* when time last added to milli (monotonic ms), 0 = never */
};

/*
 * The same with the rates given: ratio_milli thousandths of a retry per request and
 * per_sec retries per second (a cluster's strait.dev/retry-budget-* settings).
 */
void retry_budget_deposit_rate(struct retry_budget *b, int64_t now_ms, int64_t ratio_milli,
                               int64_t per_sec);
int retry_budget_take_rate(struct retry_budget *b, int64_t now_ms, int64_t per_sec);

/* A request routed to the route: earns RETRY_BUDGET_RATIO of a retry. */
void retry_budget_deposit(struct retry_budget *b, int64_t now_ms);

/* Takes one retry if the budget has it: 1, else 0 (the caller answers without retrying). */
int retry_budget_take(struct retry_budget *b, int64_t now_ms);

#endif
