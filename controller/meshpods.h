/*
 * meshpods: which workload identity each pod IP belongs to, from the model's Pods, so the
 * discovery feed (meshfeed.h) can tell whether the addresses a sidecar gives are its pod's.
 * Pure: same cache, same table.
 */
#ifndef STRAIT_MESHPODS_H
#define STRAIT_MESHPODS_H

#include "model.h"

struct meshpods;

/*
 * The table of cache's Pods for trust domain td: (IP, spiffe://<td>/ns/<ns>/sa/<sa>) for each
 * IP of each Pod that has not finished (phase Succeeded or Failed: its IP may be another pod's
 * already) and has its own network (a hostNetwork Pod's IP is its node's, shared by every such
 * Pod there: it proves no identity); IPs canonical (netaddr_ip_canonical), a Pod whose identity
 * meshca_identity refuses left out. Returns the table (free with meshpods_free), or NULL with err
 * filled (out of memory).
 */
struct meshpods *meshpods_build(const struct model_cache *cache, const char *td, char *err,
                                size_t errlen);

/*
 * Whether a Pod at ip (canonical text) runs as identity. Should two live Pods show the same IP
 * (an IP reused before the old Pod's status says it finished), either one's identity is
 * accepted. t NULL: no Pods.
 */
int meshpods_has(const struct meshpods *t, const char *ip, const char *identity);

/* Whether a and b hold the same pairs (NULL is the empty table). */
int meshpods_equal(const struct meshpods *a, const struct meshpods *b);

void meshpods_free(struct meshpods *t);

#endif
