/*
 * router: picks the route for a request from a decoded snapshot (Kubernetes Ingress
 * semantics, see docs/contract.md "Host routing").
 */
#ifndef STRAIT_ROUTER_H
#define STRAIT_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "snapwire.h"

#define ROUTER_MAX_HOST 256
#define ROUTER_MAX_PATH 8192 /* longer paths are matched as received, without normalising */

struct router;

/*
 * Builds the lookup index over s (which must outlive the router). Returns NULL with err
 * filled on allocation failure or duplicate vhost hosts.
 */
struct router *router_build(const struct snapwire_snapshot *s, char *err, size_t errlen);
void router_free(struct router *r);

/*
 * Normalises a Host header value into out (size >= ROUTER_MAX_HOST): lower case, port
 * removed, "[v6]:port" -> "[v6]", one trailing dot dropped. Returns the length, or -1 if the
 * value is not a plausible host.
 */
int router_normalize_host(const char *host, size_t len, char *out, size_t outsz);

/*
 * Matches a request: host is the already normalised host (router_normalize_host), target
 * the request target (origin or absolute form; query ignored; the path is normalised as
 * described in router.c before matching). Returns the first matching
 * route of the most specific vhost, or NULL when nothing matches.
 */
const struct snapwire_route *router_match(const struct router *r, const char *host, size_t host_len,
                                          const char *target, size_t target_len);

/* Path rule test: match is enum snapwire_match, rule the rule path, path the request path. */
int router_path_match(uint8_t match, const char *rule, const char *path, size_t path_len);

#endif
