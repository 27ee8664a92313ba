/*
 * policy: the balancing policy settings (docs/balancing.md) parsed into struct model_policy,
 * one parser per setting, from any source of field values: the strait.dev/... annotations of a
 * Service or an Ingress, or the policy object of a Gateway backendRef.
 */
#ifndef STRAIT_POLICY_H
#define STRAIT_POLICY_H

#include <stddef.h>

#include "kobj.h"
#include "model.h"

/* Every setting, in the order they are parsed (the first bad one is the one reported). */
enum policy_key {
    POLICY_LB,
    POLICY_HASH_BY,
    POLICY_SESSION_COOKIE,
    POLICY_AFFINITY,
    POLICY_HC_PATH,
    POLICY_HC_INTERVAL,
    POLICY_HC_TIMEOUT,
    POLICY_HC_STATUS,
    POLICY_HC_HEALTHY,
    POLICY_HC_UNHEALTHY,
    POLICY_HC_HOST,
    POLICY_OD_CONSECUTIVE,
    POLICY_OD_BASE,
    POLICY_OD_MAX,
    POLICY_OD_PERCENT,
    POLICY_CB_CONNECTIONS,
    POLICY_CB_PENDING,
    POLICY_CB_REQUESTS,
    POLICY_RB_PERCENT,
    POLICY_RB_MIN,
    POLICY_SLOW_START,
    POLICY_ENDPOINT_WEIGHTS, /* Services only; no CRD field */
    POLICY_N_KEYS
};

/*
 * Where the values come from: a field getter and how messages name a field.
 * get: sets *v to key k's text (NULL when absent, "" for a value that is not a scalar);
 * returns 0, or -1 with err filled when the value has the wrong type for the source.
 * name: writes how messages name key k into buf: as the subject of a sentence (subject 1:
 * "annotation strait.dev/hash-by", "spec...policy.loadBalancer.hashBy:") or as a reference
 * inside one (subject 0: "strait.dev/load-balance", "loadBalancer.type").
 */
struct policy_source {
    int (*get)(const struct policy_source *s, enum policy_key k, const char **v, char *err,
               size_t errlen);
    void (*name)(const struct policy_source *s, enum policy_key k, int subject, char *buf,
                 size_t len);
    const void *ctx;
};

/*
 * Parses every key src has into *p (zeroed first; strings in m's pool). svc is the Service the
 * values belong to, NULL otherwise: with a Service a bad value is recorded in svc->problems
 * under the key's annotation name and the key stays unset; without one, it is refused.
 * Returns 0, or -1 with err filled (the first bad value; with svc only out of memory).
 */
int policy_parse(const struct policy_source *src, struct model_meta *m, struct model_policy *p,
                 struct model_service *svc, char *err, size_t errlen);

/* policy_parse over the strait.dev/... annotations of doc (an Ingress or a Service). */
int policy_parse_annotations(const struct kobj *doc, struct model_meta *m, struct model_policy *p,
                             struct model_service *svc, char *err, size_t errlen);

/*
 * policy_parse over a Gateway backendRef's policy object node (NULL: no settings, *p zeroed),
 * at its field path at ("spec.routes[0].rules[1].backendRefs[0].policy"); the CRD's types
 * are checked (objects, integers). Errors start with the field path of the bad value.
 */
int policy_parse_object(const struct kobj *node, const char *at, struct model_meta *m,
                        struct model_policy *p, char *err, size_t errlen);

/* The annotation that sets key k ("strait.dev/load-balance"). */
const char *policy_annotation(enum policy_key k);

#endif
