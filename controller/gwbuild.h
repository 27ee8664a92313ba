/*
 * gwbuild: strait.dev/v1alpha1 Gateways -> route candidates for snapbuild (internal to the
 * build: snapbuild.c merges them with the Ingress routes, settles conflicts, resolves
 * certificates and emits the snapshot and the status).
 *
 * Per Gateway: regular expressions compiled (PCRE2, the data plane's options) so a bad one is
 * a status condition; routes attached to listeners (listenerNames, hostname intersection);
 * each rule's backendRefs and RequestMirror refs resolved to Service ports of the Gateway's
 * namespace; one candidate per (effective hostname, rule, match). Problems are collected as
 * notes with field paths, for the conditions.
 */
#ifndef STRAIT_GWBUILD_H
#define STRAIT_GWBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* A condition in the making: the first problem gives reason and message, n counts them. */
struct gwb_note {
    const char *reason; /* NULL: no problem */
    char msg[700];
    unsigned n;
};

void gwb_note_add(struct gwb_note *n, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A resolved (or not) Service port reference. */
struct gwb_backend {
    const struct model_service *svc; /* NULL: not resolved (cluster SNAPWIRE_NONE) */
    const struct model_service_port *sp;
    const char *sni; /* "svc.ns.svc" when the port's appProtocol is https, else NULL */
    uint32_t weight;
    /* the backendRef's policy overrides (the Gateway's memory), NULL: the Service's as is */
    const struct model_policy *policy;
};

/* One rule of one routes[] entry, with its references resolved. */
struct gwb_gateway;

struct gwb_rule {
    const struct model_gateway *gw;
    struct gwb_gateway *st; /* its Gateway's notes */
    const struct model_gw_rule *r;
    size_t route, rule;           /* indexes in the Gateway */
    struct gwb_backend *backends; /* r->n_backends */
    struct gwb_backend *mirrors;  /* r->n_filters: set for MIRROR filters */
    const char **sigs;            /* per match: canonical conditions ("" none) */
    /* emission state (snapbuild): SNAPWIRE_NONE until emitted */
    uint32_t first_backend, first_filter;
    uint32_t *first_cond; /* per match */
};

/* One snapshot route candidate: a match of a rule under one effective hostname. */
struct gwb_route {
    const char *host; /* lower case; "" = any host */
    struct gwb_rule *rule;
    size_t match;
    uint8_t flags;      /* SNAPWIRE_ROUTE_WILD_ANY, _PLAIN_ONLY, _TLS_ONLY */
    uint8_t kinds;      /* GWB_PLAIN | GWB_TLS: the listener kinds it serves */
    uint64_t listeners; /* the listeners (bit = index) it is attached through */
};

#define GWB_PLAIN 1
#define GWB_TLS 2

/* Listener status notes. */
struct gwb_listener {
    struct gwb_note refs;     /* ResolvedRefs False when set */
    struct gwb_note conflict; /* Conflicted True when set */
    struct gwb_note note;     /* Accepted / Programmed remarks */
    const char **hosts;       /* hostless HTTPS listener: the hosts its certificate claims */
    size_t n_hosts;
};

/* Status notes of one Gateway. */
struct gwb_gateway {
    const struct model_gateway *gw;
    struct gwb_note invalid;        /* Accepted False: Invalid (decoder) or InvalidRegex */
    struct gwb_note refs;           /* ResolvedRefs False (routes' references and listeners') */
    struct gwb_listener *listeners; /* gw->n_listeners */
    uint64_t served[64];            /* per routes[] entry: listeners it is served through */
};

struct gwb_chunk;

/* Everything gwbuild made for one build. */
struct gwb_set {
    struct gwb_gateway *gws; /* one per cache Gateway, in cache order */
    size_t n_gws;
    struct gwb_route *routes;
    size_t n_routes, cap_routes;
    struct gwb_chunk *mem;
};

/*
 * Builds the candidates and notes of every Gateway in cache (sealed). Returns 0, or -1 when
 * out of memory (free the set anyway).
 */
int gwbuild_collect(const struct model_cache *cache, struct gwb_set *set);

void gwbuild_free(struct gwb_set *set);

/*
 * Intersection of a route hostname and a listener hostname (Gateway API): into out (room for
 * 254 bytes); "" arguments mean "any". Returns 1 when they overlap, 0 when not.
 */
int gwbuild_intersect(const char *route_host, const char *listener_host, char *out, size_t n);

/* Whether pattern compiles as the data plane compiles it; err gets PCRE2's message. */
int gwbuild_regex_ok(const char *pattern, char *err, size_t errlen);

#endif
