/*
 * meshfeed: the sidecars' discovery feed, POST /v1/discovery on the mesh HTTPS server
 * (meshsrv): a sidecar authenticated by its workload certificate names the destinations it
 * uses and gets the cut of the current snapshot that serves them (snapwire_subset.h), as a
 * long poll: an unchanged answer is held until a publish changes it or the wait runs out. The
 * pod's own addresses it gives count only where a Pod of its identity runs (meshpods.h).
 * Protocol: docs/mesh.md "Discovery feed (controller)".
 */
#ifndef STRAIT_MESHFEED_H
#define STRAIT_MESHFEED_H

#include <stddef.h>
#include <stdint.h>

#include "meshpods.h"
#include "snapwire_subset.h"

struct ev_loop;
struct meshsrv;
struct meshfeed;

#define MESHFEED_PATH "/v1/discovery"
#define MESHFEED_CONTENT_TYPE "application/vnd.strait.snapshot"
#define MESHFEED_MAX_SERVICES 1024
#define MESHFEED_MAX_ADDRESSES 16
#define MESHFEED_MAX_WAIT 300   /* seconds */
#define MESHFEED_VERSION_MAX 64 /* characters of a version a client may send back */
#define MESHFEED_HOLD_SLACK 5.0 /* the connection outlives the wait by this much */

/*
 * A parsed request body. keys and key_text are in the same order: sorted by key_text (the
 * canonical text: "10.96.0.10:80", "[fd00:10::1]:80", "shop/backend"), no duplicates;
 * addresses canonical (inet_ntop), sorted, no duplicates. Every string is malloc'd.
 */
struct meshfeed_query {
    char version[MESHFEED_VERSION_MAX + 1];
    unsigned wait;
    struct snapwire_subset_key *keys;
    char **key_text, **key_part; /* key_part: "ns\0name" or the IP text the key points into */
    size_t n_keys;
    char **addresses;
    size_t n_addresses;
};

/*
 * Parses the JSON body[0..len): {"version": S, "wait": N, "addresses": [IP...], "services":
 * ["IP:PORT" | "[IPv6]:PORT" | "ns/name" ...]} (unknown keys ignored; every key optional).
 * Returns 0, or -1 with err filled (the reason a 400 gives) and *q empty.
 */
int meshfeed_parse(const char *body, size_t len, struct meshfeed_query *q, char *err,
                   size_t errlen);
void meshfeed_query_free(struct meshfeed_query *q);

/*
 * The addresses of q (parsed) where pods says a Pod running as identity has that IP, into
 * own[0..MESHFEED_MAX_ADDRESSES) (pointers into q, in q's order). Returns how many; the
 * others are the ones the caller may not claim.
 */
size_t meshfeed_own_addresses(const struct meshpods *pods, const char *identity,
                              const struct meshfeed_query *q, char **own);

/*
 * Whether identity owns the same addresses of q under pod tables a and b: then, on the same
 * snapshot, its answer is the same too (a pod change need not rebuild it). 1 or 0.
 */
int meshfeed_own_same(const struct meshpods *a, const struct meshpods *b, const char *identity,
                      const struct meshfeed_query *q);

/*
 * The version of a subset answer: 64-bit FNV-1a over the frame's payload (generation
 * excluded) and q's canonical keys and addresses (the caller's own ones only), as 16 lower-case hex
 * digits into out[17].
 */
void meshfeed_version(const uint8_t *frame, size_t len, const struct meshfeed_query *q,
                      char out[17]);

/*
 * Registers POST /v1/discovery on srv (borrowed; it must outlive the feed). Only identities
 * of trust_domain (copied) are served. Returns the feed, or NULL with err filled.
 */
struct meshfeed *meshfeed_start(struct ev_loop *loop, struct meshsrv *srv, const char *trust_domain,
                                char *err, size_t errlen);

/*
 * A build happened: frame (borrowed) is the snapshot published, NULL when it did not change;
 * pods (taken; NULL: keep the current table) the pod table of the same build. A new frame is
 * decoded once and kept; when it or the table changed, every held request whose answer
 * changed is answered now. A frame that does not decode is logged and ignored.
 */
void meshfeed_publish(struct meshfeed *f, const uint8_t *frame, size_t len, struct meshpods *pods);

/* Answers every held request (503: the controller is stopping) and frees f. NULL is fine. */
void meshfeed_free(struct meshfeed *f);

/* Figures for the controller's /metrics. */
#define MESHFEED_CODES 6 /* 200 204 400 403 500 503 */
struct meshfeed_metrics {
    int enabled;
    int codes[MESHFEED_CODES];
    uint64_t requests[MESHFEED_CODES];
    unsigned waiting;            /* held requests */
    uint64_t addresses_rejected; /* addresses claimed that are not the caller's pod's */
};
void meshfeed_metrics(struct meshfeed_metrics *out);

#endif
