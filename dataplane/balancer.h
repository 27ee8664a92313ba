/*
 * balancer: endpoint selection behind a const ops table, one file per algorithm (bal_*.c).
 * State is created per cluster when a snapshot is built and shared by all workers, so pick
 * must be thread safe.
 */
#ifndef STRAIT_BALANCER_H
#define STRAIT_BALANCER_H

#include <stdint.h>

struct balancer_ops {
    const char *name;
    /* Returns state for a cluster of n endpoints, or NULL on allocation failure. */
    void *(*create)(uint32_t n);
    /* Returns an index in [0, n). n > 0. */
    uint32_t (*pick)(void *state, uint32_t n);
    void (*destroy)(void *state);
};

extern const struct balancer_ops bal_roundrobin_ops;

/* Ops for an enum snapwire_lb value, or NULL if unknown. */
const struct balancer_ops *balancer_find(uint8_t lb);

#endif
