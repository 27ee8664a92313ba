/*
 * conn_local: the responses a connection answers itself, without an upstream.
 *
 * Does: the short text/plain answers (400/404/405/408/413/414/421/431/501/502/503/504/505,
 * the 200 to OPTIONS with Max-Forwards: 0) with Date, Connection, Allow where RFC 9110 asks
 * for it and the route's HSTS; the 308 of ssl-redirect; a RequestRedirect filter's answer;
 * the 503 of circuit breaking. Each ends the request (access log, metrics) and leaves the
 * connection ready for the next one, or closing when the request body was not read.
 * Does not: decide when to answer so (conn.c), or write proxied heads (conn_head.c).
 * Invariant: called with the request head still in cin when a caller passes head_len; the
 * head's pointers are used before it is consumed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbuf.h"
#include "filters.h"
#include "httpmsg.h"
#include "log.h"
#include "router.h"

#include "conn_int.h"

static const char *status_body(int status)
{
    switch (status) {
    case 400:
        return "bad request\n";
    case 404:
        return "no route\n";
    case 405:
        return "method not allowed\n";
    case 413:
        return "content too large\n";
    case 414:
        return "uri too long\n";
    case 421:
        return "misdirected request\n";
    case 431:
        return "headers too large\n";
    case 501:
        return "not implemented\n";
    case 502:
        return "bad gateway\n";
    case 504:
        return "gateway timeout\n";
    case 505:
        return "http version not supported\n";
    default:
        return "error\n";
    }
}

/*
 * Answers the current request with status and body (NULL: the default for status) and the
 * header lines extra (each ending in CRLF; NULL: none), ends the request, and closes after
 * the response when close_conn or the request body was not fully read.
 */
void conn_local_response_hdrs(struct conn *c, int status, const char *body, int close_conn,
                              const char *extra)
{
    struct conn_req *r = c->r;

    if (!r && !(r = c->r = conn_req_new(c))) {
        conn_close(c);
        return;
    }
    if (!body) body = status_body(status);
    if (!r->req_done || c->c_eof) close_conn = 1;
    if (!r->req_done) c->linger = 1; /* the rest of the body is on its way */
    if (!r->keep_alive || c->w->stopping) close_conn = 1;
    conn_upstream_release(c);
    if (dbuf_printf(&c->cout,
                    "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%s%s%sContent-Type: text/plain\r\n"
                    "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                    status, httpmsg_reason(status), conn_http_date(c), extra ? extra : "",
                    /* a routed request's own errors (413, 502, 503, 504) carry HSTS too */
                    r->hsts ? "Strict-Transport-Security: " : "", r->hsts ? r->hsts : "",
                    r->hsts ? "\r\n" : "",
                    /*
                     * RFC 9110 15.5.6: a 405 lists what is allowed (not CONNECT or TRACE); so
                     * does our only local 200, the answer to OPTIONS with Max-Forwards: 0
                     */
                    status == 405 || status == 200
                        ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
                        : "",
                    strlen(body), close_conn ? "close" : "keep-alive",
                    r->is_head ? "" : body) < 0) {
        conn_close(c);
        return;
    }
    conn_request_log(c, status);
    log_debug("request", "peer=%s status=%d local=1", c->peer, status);
    conn_request_release(c);
    c->state = CS_HEAD;
    c->head_timer = 0;
    if (close_conn) c->close_after_flush = 1;
    conn_arm_timer(
        c, c->w->cfg.client_idle_timeout); /* also bounds the flush of a closing connection */
}

void conn_local_response(struct conn *c, int status, const char *body, int close_conn)
{
    conn_local_response_hdrs(c, status, body, close_conn, NULL);
}

/* RFC 8555 8.3: ACME HTTP-01 challenges must stay reachable over plain HTTP. */
int conn_is_acme_challenge(const char *target, size_t len)
{
    static const char prefix[] = "/.well-known/acme-challenge/";

    return len >= sizeof(prefix) - 1 && memcmp(target, prefix, sizeof(prefix) - 1) == 0;
}

/*
 * 308 to the same host and target over https (strait.dev/ssl-redirect): host is the
 * normalised Host (no port), target the request-target as received (origin-form path and
 * query for an absolute-form request); the port is omitted when it is 443.
 */
void conn_redirect_https(struct conn *c, const char *host, const char *target, size_t tlen,
                         size_t head_len)
{
    char port[8] = "";
    char *hdr = NULL, *body = NULL;
    unsigned p = c->w->cfg.https_port;
    /* an absolute-form target's path may be empty or start with '?' */
    const char *slash = tlen == 0 || target[0] != '/' ? "/" : "";

    if (p != 443) snprintf(port, sizeof(port), ":%u", p);
    if (asprintf(&hdr, "Location: https://%s%s%s%.*s\r\n", host, port, slash, (int)tlen, target) <
        0)
        hdr = NULL;
    if (hdr && asprintf(&body, "redirecting to https://%s%s%s%.*s\n", host, port, slash, (int)tlen,
                        target) < 0)
        body = NULL;
    dbuf_consume(&c->cin, head_len); /* target points into cin: only now */
    if (!hdr || !body) {
        free(hdr);
        conn_close(c);
        return;
    }
    conn_local_response_hdrs(c, 308, body, 0, hdr);
    free(hdr);
    free(body);
}

/*
 * A RequestRedirect filter answers the request: Location per filter_location, the route's
 * response header edits added, no upstream. head_len is the request head's size in cin.
 */
void conn_gw_redirect(struct conn *c, const struct snapwire_filter *f, char *host, int hl,
                      const struct http1_request *req, const struct http1_msginfo *info,
                      size_t head_len)
{
    struct conn_req *r = c->r;
    const struct snapwire_snapshot *sw = &c->w->current->sw;
    struct dbuf loc = {0}, extra = {0};
    char norm[ROUTER_MAX_PATH + 1];
    const char *mpath;
    size_t mlen = router_request_path(req->target, req->target_len, norm, &mpath);
    uint32_t i;
    int status = f->status ? f->status : 302;

    if (hl <= 0 && !(f->hostname && f->hostname[0])) {
        dbuf_consume(&c->cin, head_len); /* HTTP/1.0 without Host: nowhere to send it */
        conn_local_response(c, 400, NULL, 0);
        return;
    }
    host[hl > 0 ? hl : 0] = '\0';
    r->route_src = r->rt->source;
    if (filter_location(&loc, r->rt, f, c->tls, host, info->host, info->host ? info->host_len : 0,
                        mpath, mlen, info->path, info->path_len) < 0 ||
        dbuf_printf(&extra, "Location: %.*s\r\n", (int)loc.len, dbuf_data(&loc)) < 0)
        goto oom;
    for (i = 0; i < r->rt->filter_count; i++) {
        const struct snapwire_filter *e = &sw->filters[r->rt->first_filter + i];
        if (e->type == SNAPWIRE_FILTER_RESPONSE_HEADERS && filter_header_edits(&extra, sw, e) < 0)
            goto oom;
    }
    if (dbuf_append(&extra, "", 1) < 0 || dbuf_printf(&loc, "\n") < 0) goto oom;
    dbuf_consume(&c->cin, head_len); /* req and info point into cin: only now */
    {
        /* the body names the target too (RFC 9110 15.4: for clients that do not follow) */
        char *body = NULL;
        if (asprintf(&body, "redirecting to %.*s", (int)loc.len, dbuf_data(&loc)) < 0) body = NULL;
        if (!body) {
            dbuf_free(&loc);
            dbuf_free(&extra);
            conn_close(c);
            return;
        }
        conn_local_response_hdrs(c, status, body, 0, dbuf_data(&extra));
        free(body);
    }
    dbuf_free(&loc);
    dbuf_free(&extra);
    return;
oom:
    dbuf_free(&loc);
    dbuf_free(&extra);
    conn_close(c);
}

/*
 * Circuit breaking (clusterstate.h): the cluster is at one of its limits; answered 503 at
 * once, with x-strait-overflow: 1 so a client (or a test) tells it from an upstream's 503.
 */
void conn_upstream_overflow(struct conn *c)
{
    log_debug("upstream_overflow", "peer=%s route=%s", c->peer, conn_route_name(c->r));
    conn_local_response_hdrs(c, 503, "upstream overflow\n", 0, "x-strait-overflow: 1\r\n");
}
