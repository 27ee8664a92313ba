/*
 * conn_head: the message heads a connection writes for a proxied exchange.
 *
 * Does: the request head for the upstream (origin-form target or the URLRewrite's path,
 * Host first, hop-by-hop headers dropped, forged X-Forwarded-* and client-certificate
 * headers dropped, the route's header edits, X-Forwarded-For/-Proto/-Host, Via,
 * Max-Forwards less one, the connection options) and the response head for the client
 * (hop-by-hop headers dropped, no length on 1xx/204, header edits, the affinity cookie, Date
 * when missing, HSTS, Connection); header lines already in canonical form are copied in runs.
 * Does not: parse (http1.c), choose the route or the endpoint (conn.c, router.c).
 * Invariant: the parsed head's pointers (into cin or uin) stay valid while a head is built.
 */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dbuf.h"
#include "filters.h"
#include "http1.h"
#include "httpmsg.h"
#include "mesh.h"
#include "router.h"

#include "conn_int.h"

/*
 * The current time as an IMF-fixdate (RFC 9110 5.6.7) for Date headers, formatted at most
 * once per second per worker thread (the cache is thread-local; ev_now is the loop's time).
 */
const char *conn_http_date(struct conn *c)
{
    static __thread time_t cached_sec = -1;
    static __thread char cached[HTTPMSG_DATE_LEN];
    time_t now = (time_t)ev_now(c->w->loop);

    if (now != cached_sec) {
        httpmsg_date(now, cached);
        cached_sec = now;
    }
    return cached;
}

/*
 * Headers the proxy sets itself and a client must not forge: X-Forwarded-*, and the
 * client-certificate ones (stripped on every listener, set only on verified TLS).
 */
static int is_xf_header(const struct http1_header *h)
{
    if (h->name_len < 15 || (h->name[0] | 0x20) != 'x') return 0; /* cheap common case */
    return http1_name_is(h, "x-forwarded-for") || http1_name_is(h, "x-forwarded-proto") ||
           http1_name_is(h, "x-forwarded-host") || http1_name_is(h, "x-client-verify") ||
           http1_name_is(h, "x-client-subject") || http1_name_is(h, "x-client-spiffe") ||
           http1_name_is(h, "x-forwarded-client-cert") || http1_name_is(h, MESH_PEER_HEADER);
}

/*
 * Appends "Name: v1, v2, ..., extra\r\n" to b: the values of every header called name in
 * req (empty ones skipped), then extra. Returns 0 or -1 (out of memory).
 */
static int append_joined(struct dbuf *b, const struct http1_request *req, const char *name,
                         const char *extra)
{
    size_t i, nl = strlen(name);

    if (dbuf_append(b, name, nl) < 0 || dbuf_str(b, ": ") < 0) return -1;
    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];
        if (h->name_len != nl || !http1_lower_eq(h->name, name, nl) || h->value_len == 0) continue;
        if (dbuf_append(b, h->value, h->value_len) < 0 || dbuf_str(b, ", ") < 0) return -1;
    }
    return dbuf_append(b, extra, strlen(extra)) < 0 || dbuf_str(b, "\r\n") < 0 ? -1 : 0;
}

/* True when a header called name in hdrs[0..n) lists token (comma-separated, any case). */
int conn_header_has_token(const struct http1_header *hdrs, size_t n, const char *name,
                          const char *token)
{
    size_t i, p, tl = strlen(token);

    for (i = 0; i < n; i++) {
        const struct http1_header *h = &hdrs[i];
        if (!http1_name_is(h, name)) continue;
        for (p = 0; p < h->value_len;) {
            size_t b, e;
            while (p < h->value_len &&
                   (h->value[p] == ' ' || h->value[p] == '\t' || h->value[p] == ','))
                p++;
            b = p;
            while (p < h->value_len && h->value[p] != ',')
                p++;
            e = p;
            while (e > b && (h->value[e - 1] == ' ' || h->value[e - 1] == '\t'))
                e--;
            if (e - b == tl && strncasecmp(h->value + b, token, tl) == 0) return 1;
        }
    }
    return 0;
}

/*
 * Header lines on their way into a head being built: a line already in the form we write
 * ("Name: value" CRLF) and right after the previous one in the input joins it, and each
 * such run is copied at once (most heads are all canonical: one copy instead of four per
 * header). hrun_flush before appending anything else.
 */
struct hrun {
    const char *p;
    size_t n;
};

static int hrun_flush(struct dbuf *b, struct hrun *run)
{
    int rc = run->n ? dbuf_append(b, run->p, run->n) : 0;

    run->n = 0;
    return rc;
}

/* h is a parsed header of a complete head: its line ending (and more) follows its value. */
static int hrun_add(struct dbuf *b, struct hrun *run, const struct http1_header *h)
{
    const char *end = h->value + h->value_len;
    size_t len = h->name_len + 2 + h->value_len + 2;

    if (h->value == h->name + h->name_len + 2 && h->name[h->name_len] == ':' &&
        h->name[h->name_len + 1] == ' ' && end[0] == '\r' && end[1] == '\n') {
        if (run->n && run->p + run->n == h->name) {
            run->n += len;
            return 0;
        }
        if (hrun_flush(b, run) < 0) return -1;
        run->p = h->name;
        run->n = len;
        return 0;
    }
    if (hrun_flush(b, run) < 0) return -1;
    return dbuf_append(b, h->name, h->name_len) < 0 || dbuf_str(b, ": ") < 0 ||
                   dbuf_append(b, h->value, h->value_len) < 0 || dbuf_str(b, "\r\n") < 0
               ? -1
               : 0;
}

/*
 * Writes the upstream request head into uout: the request line in origin-form with the
 * client's HTTP/1.x version (a 1.0 client must not get a chunked answer relayed), Host
 * first and from info->host (the target's authority for absolute-form, RFC 9112 3.2.2),
 * end-to-end headers, then our own: X-Forwarded-*, Via (RFC 9110 7.6.3: a gateway MUST
 * add it to requests it forwards) and the connection options: none for HTTP/1.1 (persistent
 * by default, so the connection can be pooled), "Connection: close" for 1.0, and for an
 * upgrade request the client's Upgrade with "Connection: upgrade" (RFC 9110 7.8: Upgrade is
 * hop-by-hop, so the proxy re-sends it deliberately). Returns 0 or -1 (out of memory).
 */
int conn_build_upstream_head(struct conn *c, const struct http1_request *req,
                             const struct http1_msginfo *info)
{
    struct conn_req *r = c->r;
    struct dbuf *b = &r->uout;
    struct http1_hop hop;
    const struct snapwire_snapshot *sw = &r->snap->sw;
    const struct snapwire_filter *rw = r->rewrite, *edit = r->req_edit;
    struct hrun run = {NULL, 0};
    size_t i;
    int slash =
        info->target_form == HTTP1_TARGET_ABSOLUTE && (info->path_len == 0 || info->path[0] == '?');

    if (dbuf_append(b, req->method, req->method_len) < 0) return -1;
    if (rw && rw->path_mod != SNAPWIRE_PATH_KEEP) {
        /* URLRewrite: the path the route matched, changed (the query is kept) */
        char norm[ROUTER_MAX_PATH + 1];
        const char *mpath;
        size_t mlen = router_request_path(req->target, req->target_len, norm, &mpath);
        if (dbuf_str(b, " ") < 0 ||
            filter_path(b, r->rt, rw, mpath, mlen, info->path, info->path_len) < 0)
            return -1;
    } else if (dbuf_str(b, slash ? " /" : " ") < 0 ||
               dbuf_append(b, info->path, info->path_len) < 0) {
        return -1;
    }
    if (dbuf_str(b, req->minor_version ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n") < 0) return -1;
    if (rw && rw->hostname && rw->hostname[0]) {
        if (dbuf_str(b, "Host: ") < 0 || dbuf_str(b, rw->hostname) < 0 || dbuf_str(b, "\r\n") < 0)
            return -1;
    } else if (info->host &&
               (dbuf_str(b, "Host: ") < 0 || dbuf_append(b, info->host, info->host_len) < 0 ||
                dbuf_str(b, "\r\n") < 0)) {
        return -1;
    }
    http1_hop_init(&hop, req->headers, req->num_headers);
    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];
        if (http1_hop_drop(&hop, h) || is_xf_header(h) || http1_name_is(h, "host") ||
            http1_name_is(h, "via") || h == info->max_forwards)
            continue;
        if (edit && filter_header_dropped(sw, edit, h->name, h->name_len)) continue;
        if (hrun_add(b, &run, h) < 0) return -1;
    }
    if (hrun_flush(b, &run) < 0) return -1;
    if (edit && filter_header_edits(b, sw, edit) < 0) return -1;
    if (append_joined(b, req, "X-Forwarded-For", c->peer) < 0 ||
        dbuf_str(b, c->tls && !c->mesh ? "X-Forwarded-Proto: https\r\n"
                                       : "X-Forwarded-Proto: http\r\n") < 0)
        return -1;
    if (c->client_hdrs && dbuf_str(b, c->client_hdrs) < 0) return -1;
    if (info->host && (dbuf_str(b, "X-Forwarded-Host: ") < 0 ||
                       dbuf_append(b, info->host, info->host_len) < 0 || dbuf_str(b, "\r\n") < 0))
        return -1;
    if (append_joined(b, req, "Via", req->minor_version ? "1.1 strait" : "1.0 strait") < 0)
        return -1;
    /* RFC 9110 7.6.2: OPTIONS and TRACE pass on one hop less (0 was answered here) */
    if (info->max_forwards &&
        dbuf_printf(b, "Max-Forwards: %u\r\n", info->max_forwards_value - 1) < 0)
        return -1;
    if (r->upgrade) {
        const struct http1_header *up = header_find(req->headers, req->num_headers, "upgrade");
        r->u_keep = 0;
        return dbuf_str(b, "Upgrade: ") < 0 || dbuf_append(b, up->value, up->value_len) < 0 ||
                       dbuf_str(b, "\r\nConnection: upgrade\r\n\r\n") < 0
                   ? -1
                   : 0;
    }
    /* no pool (--upstream-keepalive 0): say so, rather than leave the server waiting */
    r->u_keep = req->minor_version >= 1 && c->w->cfg.pool_max_idle > 0;
    return dbuf_str(b, r->u_keep ? "\r\n" : "Connection: close\r\n\r\n");
}

int conn_write_client_head(struct conn *c, const struct http1_response *res)
{
    struct dbuf *b = &c->cout;
    struct http1_hop hop;
    struct hrun run = {NULL, 0};
    size_t i;
    int have_date = 0, have_sts = 0;
    const char *hsts = c->r->hsts; /* only set on TLS connections */
    const struct snapwire_filter *edit = c->r->resp_edit;
    /* RFC 9110 8.6, RFC 9112 6.1: 1xx and 204 carry neither (nginx drops them too) */
    int no_length = res->status < 200 || res->status == 204;

    /* the parser guarantees a three-digit status; no printf on the hot path */
    char status[14] = "HTTP/1.1 000 ";
    status[9] = (char)('0' + res->status / 100 % 10);
    status[10] = (char)('0' + res->status / 10 % 10);
    status[11] = (char)('0' + res->status % 10);
    if (dbuf_append(b, status, 13) < 0 || dbuf_append(b, res->reason, res->reason_len) < 0 ||
        dbuf_str(b, "\r\n") < 0)
        return -1;
    http1_hop_init(&hop, res->headers, res->num_headers);
    for (i = 0; i < res->num_headers; i++) {
        const struct http1_header *h = &res->headers[i];
        if (http1_hop_drop(&hop, h) || (no_length && (http1_name_is(h, "content-length") ||
                                                      http1_name_is(h, "transfer-encoding"))))
            continue;
        if (edit && filter_header_dropped(&c->r->snap->sw, edit, h->name, h->name_len)) continue;
        have_date |= http1_name_is(h, "date");
        if (hsts) have_sts |= http1_name_is(h, "strict-transport-security");
        if (hrun_add(b, &run, h) < 0) return -1;
    }
    if (hrun_flush(b, &run) < 0) return -1;
    if (edit && res->status >= 200 && filter_header_edits(b, &c->r->snap->sw, edit) < 0) return -1;
    if (c->r->aff_want && res->status >= 200 && c->r->bal_ep && c->r->bal_ep != c->r->aff_ep) {
        /* cookie affinity: remember the endpoint that answers (ingress-nginx's cookie) */
        char val[17];
        snapshot_affinity_value(c->r->bal_ep, val);
        if (dbuf_str(b, "Set-Cookie: ") < 0 ||
            dbuf_str(b, c->r->snap->sw.clusters[c->r->ucluster].affinity_cookie) < 0 ||
            dbuf_str(b, "=") < 0 || dbuf_str(b, val) < 0 ||
            dbuf_str(b, "; Path=/; HttpOnly\r\n") < 0)
            return -1;
    }
    /* RFC 9110 6.6.1: a recipient with a clock MUST add Date to a response it forwards */
    if (res->status >= 200 && !have_date &&
        (dbuf_str(b, "Date: ") < 0 || dbuf_str(b, conn_http_date(c)) < 0 ||
         dbuf_str(b, "\r\n") < 0))
        return -1;
    /* RFC 6797 7.2: over TLS only; an upstream's own header wins */
    if (hsts && res->status >= 200 && !have_sts &&
        (dbuf_str(b, "Strict-Transport-Security: ") < 0 || dbuf_str(b, hsts) < 0 ||
         dbuf_str(b, "\r\n") < 0))
        return -1;
    if (res->status == 101) {
        /* the switch the client asked for: Upgrade and the option travel hop by hop */
        const struct http1_header *up = header_find(res->headers, res->num_headers, "upgrade");
        if (up && (dbuf_str(b, "Upgrade: ") < 0 || dbuf_append(b, up->value, up->value_len) < 0 ||
                   dbuf_str(b, "\r\n") < 0))
            return -1;
        if (dbuf_str(b, "Connection: upgrade\r\n") < 0) return -1;
    } else if (res->status >= 200 && dbuf_str(b, c->r->keep_alive ? "Connection: keep-alive\r\n"
                                                                  : "Connection: close\r\n") < 0)
        return -1;
    return dbuf_str(b, "\r\n");
}
