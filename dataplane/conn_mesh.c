/*
 * conn_mesh: the sidecar side of the connection state machine (conn_int.h): connections on
 * the mesh listeners - only redirected ones, by their original destination; inbound, the
 * first byte tells mTLS from plaintext (permissive), the verified caller reaches the app in
 * X-Strait-Peer-Identity and AuthorizationPolicies are enforced (403 / reset); outbound, the
 * Service directory picks HTTP, opaque or detection, and a destination the discovery feed has
 * not answered yet waits for it (parked: no reads) until the worker's next snapshot or
 * MESHFEED_PARK seconds.
 * Does not: parse or proxy HTTP (conn.c), TLS (tls_mesh.c), or the directory (mesh.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clusterstate.h"
#include "conn_int.h"
#include "log.h"
#include "mesh.h"
#include "meshfeed.h"
#include "metrics.h"
#include "netaddr.h"
#include "router.h"
#include "tls_mesh.h"

static void mesh_outbound_start(struct conn *c);

/* Loopback of sa's family with sa's port: where the inbound side hands off to the app. */
static void loopback_of(const struct sockaddr_storage *sa, struct sockaddr_storage *out,
                        socklen_t *len)
{
    uint16_t port = (uint16_t)netaddr_port((const struct sockaddr *)sa);

    memset(out, 0, sizeof(*out));
    if (sa->ss_family == AF_INET6 &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
    }
}

/*
 * Where a sidecar sends a request (host: the normalised Host, hl its length, hport its port
 * or 0) or, with hl 0, an opaque connection. Inbound: the app, on loopback at the original
 * destination's port. Outbound: the Service the Host names (its port: Host's, else the
 * original destination's), else the Service at the original destination (a ClusterIP),
 * each through its cluster; else straight to the original destination (passthrough: not
 * a Service of the mesh). Returns 0 with *cluster (a cluster of snap), 1 with *ta (direct),
 * -1 when the Service has no cluster (no endpoints). *route: what metrics and logs call it.
 */
int conn_mesh_target(struct conn *c, struct snapshot *snap, const char *host, int hl, int hport,
                     struct sockaddr_storage *ta, socklen_t *tl, const char **route,
                     uint32_t *cluster)
{
    const struct snapwire_mesh_service *svc = NULL;

    *cluster = SNAPWIRE_NONE;
    if (c->mesh == MESH_LISTENER_INBOUND) {
        loopback_of(&c->orig, ta, tl);
        *route = "mesh:inbound";
        return 1;
    }
    if (hl > 0)
        svc = mesh_find_host(snap->mesh, host, (size_t)hl,
                             hport ? (uint16_t)hport
                                   : (uint16_t)netaddr_port((const struct sockaddr *)&c->orig));
    if (!svc) svc = mesh_find_addr(snap->mesh, (const struct sockaddr *)&c->orig);
    if (!svc) {
        memcpy(ta, &c->orig, c->origlen);
        *tl = c->origlen;
        *route = "mesh:passthrough";
        return 1;
    }
    if (svc->cluster == SNAPWIRE_NONE) {
        *route = "mesh:no-endpoints";
        return -1;
    }
    *cluster = svc->cluster;
    *route = snap->sw.clusters[svc->cluster].name;
    return 0;
}

/*
 * Inbound authorization of the connection's caller with snap's policies (mesh_authorize),
 * counted and, when refused, logged. http: a request (else a TCP connection). 1 allowed.
 */
int conn_mesh_authorized(struct conn *c, struct snapshot *snap, int http)
{
    const char *policy;
    int ok = mesh_authorize(snap->mesh, (const struct sockaddr *)&c->orig, c->peer_uri, &policy);

    metrics_mesh_authz(http, ok);
    if (!ok)
        log_info("mesh_authz_denied", "peer=%s identity=%s protocol=%s policy=%s", c->peer,
                 c->peer_uri ? c->peer_uri : "-", http ? "http" : "tcp", policy);
    return ok;
}

/*
 * Turns the connection into an opaque TCP tunnel to its mesh target (what was read
 * already goes first). Returns 0, or -1 with c closed.
 */
int conn_mesh_tunnel_start(struct conn *c)
{
    struct snapshot *snap = c->w->current;
    const struct snapshot_endpoint *ep;
    struct conn_req *r;
    uint32_t cluster;
    int rc;

    c->opaque = 1;
    c->detect = 0;
    if (!snap) {
        log_warn("mesh_refused", "peer=%s reason=\"no snapshot yet\"", c->peer);
        goto close;
    }
    if (c->mesh == MESH_LISTENER_INBOUND && !conn_mesh_authorized(c, snap, 0)) {
        conn_reset(c); /* a refused TCP caller must not take a clean end for an answer */
        return -1;
    }
    if (!(r = c->r = conn_req_new(c))) goto close;
    conn_request_begin(c, NULL);
    rc = conn_mesh_target(c, snap, NULL, 0, 0, &r->uaddr, &r->uaddrlen, &r->route_src, &cluster);
    if (rc < 0) {
        log_warn("upstream_error", "peer=%s route=%s reason=\"no endpoint\"", c->peer,
                 conn_route_name(r));
        goto close;
    }
    if (rc == 0) {
        if (!(ep = snapshot_pick(snap, cluster))) {
            log_warn("upstream_error", "peer=%s route=%s reason=\"no healthy endpoint\"", c->peer,
                     conn_route_name(r));
            goto close;
        }
        if (clusterstate_acquire(snap->clusters[cluster].cs, CLUSTERSTATE_REQUESTS,
                                 snap->sw.clusters[cluster].cb_max_requests) < 0) {
            log_warn("upstream_overflow", "peer=%s route=%s", c->peer, conn_route_name(r));
            goto close;
        }
        r->cb_req = 1;
        memcpy(&r->uaddr, &ep->addr, ep->addrlen);
        r->uaddrlen = ep->addrlen;
    }
    r->snap = snapshot_ref(snap);
    r->ucluster = cluster;
    c->state = CS_TUNNEL;
    if (conn_upstream_open(c, 0) < 0) {
        metrics_upstream_connect_error();
        log_warn("upstream_error", "peer=%s route=%s reason=\"%s\"", c->peer, conn_route_name(r),
                 strerror(errno));
        goto close;
    }
    return 0;
close:
    conn_close(c);
    return -1;
}

/* Plaintext on the inbound side: only in permissive mode (then HTTP or opaque, detected). */
static void mesh_plain_inbound(struct conn *c)
{
    if (!mesh_permissive()) {
        metrics_mesh_conn(METRICS_MESH_IN_REFUSED);
        log_info("mesh_plaintext_refused", "peer=%s", c->peer);
        conn_close(c);
        return;
    }
    metrics_mesh_conn(METRICS_MESH_IN_PLAIN);
    c->detect = 1;
    conn_arm_timer(c, MESH_DETECT_TIMEOUT);
    conn_first_read(c);
}

/*
 * Inbound: the first byte tells a TLS record (0x16, a ClientHello: mTLS) from plaintext.
 * Waits for it (mesh_peek) until it comes or the timer runs out (timed_out: nothing came).
 */
void conn_mesh_inbound_start(struct conn *c, int timed_out)
{
    unsigned char b;
    ssize_t n = recv(c->tp.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && !timed_out) {
        if (!c->mesh_peek) conn_arm_timer(c, MESH_DETECT_TIMEOUT);
        c->mesh_peek = 1;
        io_want(c->w->loop, &c->rio, 1);
        return;
    }
    c->mesh_peek = 0;
    if (n < 0 && timed_out) {
        mesh_plain_inbound(c); /* a client waiting for the server to speak first */
        return;
    }
    if (n <= 0) {
        conn_close(c);
        return;
    }
    if (b != 0x16) {
        mesh_plain_inbound(c);
        return;
    }
    if (tls_mesh_accept(&c->tp, c->tp.fd) < 0) {
        metrics_mesh_conn(METRICS_MESH_IN_REFUSED);
        log_warn("mesh_refused", "peer=%s reason=\"no workload certificate yet\"", c->peer);
        conn_close(c);
        return;
    }
    c->tls = c->handshaking = 1;
    conn_arm_timer(c, c->w->cfg.client_header_timeout);
    conn_handshake(c);
}

/*
 * Inbound mTLS is up: the verified caller goes to the app in X-Strait-Peer-Identity (a
 * header stripped from whatever a client sends), and ALPN says HTTP or opaque.
 */
void conn_mesh_handshake_done(struct conn *c)
{
    char uri[1024];
    int kind = tls_mesh_peer(&c->tp, uri, sizeof(uri));
    size_t i;

    for (i = 0; kind >= 0 && uri[i]; i++)
        if ((unsigned char)uri[i] <= ' ' || uri[i] == 0x7f) kind = -1; /* never into a header */
    if (kind < 0) {
        metrics_mesh_conn(METRICS_MESH_IN_REFUSED);
        log_warn("mesh_refused", "peer=%s reason=\"no verified peer identity\"", c->peer);
        conn_close(c);
        return;
    }
    metrics_mesh_conn(METRICS_MESH_IN_MTLS);
    log_debug("mesh_peer", "peer=%s identity=%s", c->peer, uri);
    c->client_hdrs = malloc(sizeof("X-Strait-Peer-Identity: \r\n") + strlen(uri));
    if (!c->client_hdrs) {
        conn_close(c);
        return;
    }
    sprintf(c->client_hdrs, "X-Strait-Peer-Identity: %s\r\n", uri);
    if (!(c->peer_uri = strdup(uri))) {
        conn_close(c);
        return;
    }
    if (kind == TLS_MESH_PEER_OPAQUE) {
        if (conn_mesh_tunnel_start(c) == 0) conn_first_read(c);
        return;
    }
    if (kind == TLS_MESH_PEER_UNKNOWN) {
        c->detect = 1;
        conn_arm_timer(c, MESH_DETECT_TIMEOUT);
    } else {
        conn_arm_timer(c, c->w->cfg.client_idle_timeout);
    }
    conn_first_read(c);
}

/*
 * The discovery feed (meshfeed.h) and an outbound connection: 1 when its destination, or the
 * Service the Host of req (NULL: no request yet) names, is not in snap but may be a Service
 * (asked, answer not here yet): the caller parks it (feed_park); else 0, having recorded the
 * uses (each at most once a second per connection while known).
 */
int conn_feed_must_wait(struct conn *c, struct snapshot *snap, const struct http1_request *req)
{
    const struct http1_header *h = req ? header_find(req->headers, req->num_headers, "host") : NULL;
    char host[ROUTER_MAX_HOST], key[MESH_KEY_MAX];
    double now = ev_now(c->w->loop);
    int known, named = 0, name_known = 0, hl, wait = 0;

    if (c->mesh != MESH_LISTENER_OUTBOUND || !meshfeed_on()) return 0;
    known = snap && mesh_find_addr(snap->mesh, (const struct sockaddr *)&c->orig) != NULL;
    if (h && (hl = router_normalize_host(h->value, h->value_len, host, sizeof(host))) > 0 &&
        mesh_host_key(snap ? snap->mesh : NULL, host, (size_t)hl, key, sizeof(key)) == 0) {
        named = 1;
        name_known = snap && mesh_has_service(snap->mesh, key);
    }
    if (!known || now - c->feed_used >= 1.0) {
        c->feed_used = now;
        if (meshfeed_want((const struct sockaddr *)&c->orig) != MESHFEED_NONE && !known) wait = 1;
    }
    if (named && (!name_known || now - c->feed_name_used >= 1.0)) {
        c->feed_name_used = now;
        if (meshfeed_want_name(key) != MESHFEED_NONE && !name_known) wait = 1;
    }
    return wait && !c->feed_given_up;
}

/* Parks c until a swap or MESHFEED_PARK seconds (client_timer_cb gives up then). */
void conn_feed_park(struct conn *c, uint8_t what)
{
    if (!c->feed_park) {
        conn_arm_timer(c, MESHFEED_PARK);
        io_want(c->w->loop, &c->rio, 0);
        log_debug("mesh_feed_park", "peer=%s", c->peer);
    }
    c->feed_park = what;
}

/* Moves a parked connection on: after a swap, or given_up when its wait ran out. */
void conn_feed_resume(struct conn *c, int given_up)
{
    uint8_t what = c->feed_park;

    c->feed_park = 0;
    if (given_up) {
        char dst[NETADDR_STRLEN];
        c->feed_given_up = 1;
        log_warn("mesh_feed_timeout", "peer=%s destination=%s reason=\"no answer in %.0f s\"",
                 c->peer, netaddr_format((const struct sockaddr *)&c->orig, dst, sizeof(dst)),
                 MESHFEED_PARK);
    }
    conn_arm_timer(c, c->w->cfg.client_idle_timeout);
    if (what == FEED_PARK_ACCEPT)
        mesh_outbound_start(c);
    else
        conn_run(c);                                     /* the head is in cin */
    if (!c->feed_park) metrics_mesh_feed_wait(given_up); /* c is freed only by the reaper */
}

void conn_snapshot_swapped(struct worker *w)
{
    struct conn *c, *next;

    for (c = w->conns; c; c = next) {
        next = c->next;
        if (c->feed_park && !c->dead) conn_feed_resume(c, 0);
    }
}

/*
 * A connection on a sidecar listener: only redirected ones (their original destination is
 * what they are for; one made to the listener itself would loop), then by side and by what
 * the directory says of the destination: opaque at once, HTTP, or detected.
 */
void conn_mesh_accept(struct conn *c)
{
    struct sockaddr_storage local;
    socklen_t ll = sizeof(local);

    c->origlen = sizeof(c->orig);
    if (mesh_original_dst(c->tp.fd, &c->orig, &c->origlen) < 0 ||
        (getsockname(c->tp.fd, (struct sockaddr *)&local, &ll) == 0 &&
         netaddr_equal((const struct sockaddr *)&local, (const struct sockaddr *)&c->orig))) {
        log_info("mesh_refused", "peer=%s reason=\"not a redirected connection\"", c->peer);
        conn_close(c);
        return;
    }
    if (c->mesh == MESH_LISTENER_INBOUND) {
        conn_mesh_inbound_start(c, 0);
        return;
    }
    mesh_outbound_start(c);
}

/* An outbound connection by what the directory says of its destination (see mesh_accept). */
static void mesh_outbound_start(struct conn *c)
{
    const struct snapwire_mesh_service *svc;

    if (conn_feed_must_wait(c, c->w->current, NULL)) {
        conn_feed_park(c, FEED_PARK_ACCEPT);
        return;
    }
    svc = c->w->current ? mesh_find_addr(c->w->current->mesh, (const struct sockaddr *)&c->orig)
                        : NULL;
    if (svc && svc->proto == SNAPWIRE_MESH_PROTO_OPAQUE) {
        if (conn_mesh_tunnel_start(c) == 0) conn_first_read(c);
        return;
    }
    if (!svc || svc->proto != SNAPWIRE_MESH_PROTO_HTTP) {
        c->detect = 1;
        conn_arm_timer(c, MESH_DETECT_TIMEOUT);
    }
    conn_first_read(c);
}
