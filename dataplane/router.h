/*
 * router: picks the route for a request from a decoded snapshot (Kubernetes Ingress and
 * Gateway routes, see docs/contract.md "Host routing" and router.c for the exact rules).
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
 * Builds the lookup index over s (which must outlive the router), compiling its regular
 * expressions (REGEX paths, HEADER_REGEX conditions) once. Returns NULL with err filled on
 * allocation failure, duplicate vhost hosts, out-of-range links, or a pattern that does not
 * compile ("route 3 (ns/name): invalid regular expression \"...\": <PCRE2 message>").
 */
struct router *router_build(const struct snapwire_snapshot *s, char *err, size_t errlen);
void router_free(struct router *r);

/*
 * Normalises a Host header value into out (size >= ROUTER_MAX_HOST): lower case, port
 * removed, "[v6]:port" -> "[v6]", one trailing dot dropped. Returns the length, or -1 if the
 * value is not a plausible host.
 */
int router_normalize_host(const char *host, size_t len, char *out, size_t outsz);

/* The port of a Host header value ("h:8080", "[v6]:8080"), 0 when it has none (or a bad one). */
unsigned router_host_port(const char *host, size_t len);

/*
 * Matches a request: host is the already normalised host (router_normalize_host), target
 * the request target (origin or absolute form; query ignored; the path is normalised as
 * described in router.c before matching). Returns the first matching
 * route of the most specific vhost, or NULL when nothing matches. Same as router_route with
 * no method (only method-ANY routes), no headers, on a plain-HTTP listener.
 */
const struct snapwire_route *router_match(const struct router *r, const char *host, size_t host_len,
                                          const char *target, size_t target_len);

struct http1_header;

/* A request as the router sees it (router_route). */
struct router_request {
    const char *host; /* normalised (router_normalize_host); "" / 0 when the request had none */
    size_t host_len;
    const char *target; /* request target as received (origin or absolute form) */
    size_t target_len;
    const char *method;
    size_t method_len;
    const struct http1_header *headers; /* the parsed request headers */
    size_t n_headers;
    int tls; /* arrived on a TLS listener (routes flagged PLAIN_ONLY / TLS_ONLY) */
};

/*
 * Full match (Ingress and Gateway routes): the most specific vhost for req->host (exact,
 * then the closest "*." wildcard: one extra label, or more for routes flagged WILD_ANY,
 * then ""), then its first route whose path, method, listener kind and every condition
 * (conds: headers exact / regex, query exact) hold. NULL when none does.
 */
const struct snapwire_route *router_route(const struct router *r, const struct router_request *req);

/*
 * The upstream cluster for one request routed to rt: rt->cluster when the route has no
 * weighted backends, else one backend drawn with probability weight / sum (rnd: a uniform
 * random number). Returns SNAPWIRE_NONE when the draw lands on a backend that does not
 * resolve, when every weight is 0, or when the route has no cluster: the caller answers 500.
 */
uint32_t router_pick_cluster(const struct router *r, const struct snapwire_route *rt, uint32_t rnd);

/*
 * The path of target (query and fragment cut) as the router matches it: normalised (see
 * router.c) into buf (size >= ROUTER_MAX_PATH + 1) when it needs it, else pointing into
 * target. Sets *path; returns its length. Lets filters rewrite the path that was matched.
 */
size_t router_request_path(const char *target, size_t target_len, char *buf, const char **path);

/* Path rule test: match is enum snapwire_match, rule the rule path, path the request path. */
int router_path_match(uint8_t match, const char *rule, const char *path, size_t path_len);

#endif
