/*
 * balbench: ns per pick among 1,000 endpoints for every balancer (issue 9's target: < 100 ns).
 * Equal weights and mixed weights (1..10); the hash balancers get a fresh 64-bit key per pick,
 * ewma and least_request get start/done feedback outside the timed loop's pick count (reported
 * separately as pick+feedback). Run pinned: taskset -c 0 build/balbench
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balancer.h"

#define N_EP 1000
#define PICKS 5000000u

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint32_t sink;

static double bench(const struct balancer_ops *ops, void *st, int feedback)
{
    struct balancer_input in = {.has_hash = 1};
    uint32_t i, acc = 0;
    double t0 = now_s();

    for (i = 0; i < PICKS; i++) {
        uint32_t x;

        in.hash = (uint64_t)i * 0x9e3779b97f4a7c15ull;
        x = ops->pick(st, &in);
        acc += x;
        if (feedback) {
            balancer_start(ops, st, x);
            balancer_done(ops, st, x, 1000000 + (i & 0xffff), 1);
        }
    }
    sink = acc;
    return (now_s() - t0) * 1e9 / PICKS;
}

int main(void)
{
    static const struct balancer_ops *const all[] = {
        &bal_roundrobin_ops, &bal_leastreq_ops, &bal_ewma_ops, &bal_ringhash_ops, &bal_maglev_ops};
    static struct balancer_endpoint ep[N_EP];
    static char keys[N_EP][32];
    struct balancer_endpoints eps = {.n = N_EP, .ep = ep};
    size_t k;
    int weighted;

    printf("%-14s %-8s %10s %12s %12s\n", "balancer", "weights", "create_ms", "ns/pick",
           "ns/pick+fb");
    for (weighted = 0; weighted < 2; weighted++) {
        uint32_t i;

        for (i = 0; i < N_EP; i++) {
            snprintf(keys[i], sizeof(keys[i]), "10.%u.%u.%u:8080", i >> 16, (i >> 8) & 255,
                     i & 255);
            ep[i].key = keys[i];
            ep[i].key_len = strlen(keys[i]);
            ep[i].weight = weighted ? 1 + i % 10 : 1;
        }
        for (k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
            double t0 = now_s(), create_ms, ns, nsfb = 0;
            void *st = all[k]->create(&eps, NULL);

            if (!st) {
                fprintf(stderr, "%s: create failed\n", all[k]->name);
                return 1;
            }
            create_ms = (now_s() - t0) * 1e3;
            bench(all[k], st, 0); /* warm up */
            ns = bench(all[k], st, 0);
            if (all[k]->done) nsfb = bench(all[k], st, 1);
            if (all[k]->done)
                printf("%-14s %-8s %10.2f %12.1f %12.1f\n", all[k]->name,
                       weighted ? "1..10" : "equal", create_ms, ns, nsfb);
            else
                printf("%-14s %-8s %10.2f %12.1f %12s\n", all[k]->name,
                       weighted ? "1..10" : "equal", create_ms, ns, "-");
            all[k]->destroy(st);
        }
    }
    return 0;
}
