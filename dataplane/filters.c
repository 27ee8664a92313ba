/*
 * filters: the string work of Gateway route filters (see filters.h).
 *
 * Does: compute rewritten targets and redirect locations per the Gateway API's
 * HTTPPathModifier / HTTPRequestRedirectFilter, and the header lines a header modifier drops
 * and adds.
 * Does not: decide which filters run (conn.c, in the route's order), allocate outside the
 * caller's buffer, or edit the headers that frame a message (filter_header_protected).
 * Invariants: every function is pure over its arguments and safe from any thread.
 */
#include "filters.h"

#include <string.h>
#include <strings.h>

#include "router.h"

int filter_header_protected(const char *name, size_t len)
{
    static const char *const prot[] = {"host",       "content-length", "transfer-encoding",
                                       "connection", "upgrade",        "te",
                                       "trailer",    "keep-alive",     "proxy-connection"};
    size_t i;

    for (i = 0; i < sizeof(prot) / sizeof(prot[0]); i++)
        if (strlen(prot[i]) == len && strncasecmp(prot[i], name, len) == 0) return 1;
    return 0;
}

/* The query part of orig ("?..." up to a fragment), or an empty tail. */
static void query_of(const char *orig, size_t orig_len, const char **q, size_t *qlen)
{
    const char *p = memchr(orig, '?', orig_len);
    size_t n;

    if (!p) {
        *q = orig + orig_len;
        *qlen = 0;
        return;
    }
    n = orig_len - (size_t)(p - orig);
    {
        const char *hash = memchr(p, '#', n);
        if (hash) n = (size_t)(hash - p);
    }
    *q = p;
    *qlen = n;
}

int filter_path(struct dbuf *b, const struct snapwire_route *rt, const struct snapwire_filter *f,
                const char *path, size_t path_len, const char *orig, size_t orig_len)
{
    const char *q;
    size_t qlen, pl, rl, start = b->len;

    if (f->path_mod == SNAPWIRE_PATH_KEEP) return dbuf_append(b, orig, orig_len);
    query_of(orig, orig_len, &q, &qlen);
    if (f->path_mod == SNAPWIRE_PATH_PREFIX && rt->match == SNAPWIRE_MATCH_PREFIX) {
        /* the matched prefix as the router compares it: trailing slashes do not count */
        pl = strlen(rt->path);
        while (pl > 0 && rt->path[pl - 1] == '/')
            pl--;
        if (pl > path_len) pl = path_len; /* cannot happen for a matched route */
        rl = strlen(f->path);
        while (rl > 0 && f->path[rl - 1] == '/')
            rl--;
        if (dbuf_append(b, f->path, rl) < 0 || dbuf_append(b, path + pl, path_len - pl) < 0)
            return -1;
        if (b->len == start && dbuf_str(b, "/") < 0) return -1;
    } else {
        if (dbuf_str(b, f->path && f->path[0] ? f->path : "/") < 0) return -1;
    }
    return dbuf_append(b, q, qlen);
}

int filter_location(struct dbuf *b, const struct snapwire_route *rt,
                    const struct snapwire_filter *f, int tls, const char *host,
                    const char *host_hdr, size_t host_hdr_len, const char *path, size_t path_len,
                    const char *orig, size_t orig_len)
{
    const char *scheme = f->scheme && f->scheme[0] ? f->scheme : tls ? "https" : "http";
    unsigned port = f->port;

    if (!port && !(f->scheme && f->scheme[0]) && host_hdr)
        port = router_host_port(host_hdr, host_hdr_len);
    if ((port == 80 && !strcmp(scheme, "http")) || (port == 443 && !strcmp(scheme, "https")))
        port = 0;
    if (dbuf_str(b, scheme) < 0 || dbuf_str(b, "://") < 0 ||
        dbuf_str(b, f->hostname && f->hostname[0] ? f->hostname : host) < 0)
        return -1;
    if (port && dbuf_printf(b, ":%u", port) < 0) return -1;
    /* an absolute-form request's path may be empty or start with '?' */
    if ((orig_len == 0 || orig[0] != '/') && f->path_mod == SNAPWIRE_PATH_KEEP &&
        dbuf_str(b, "/") < 0)
        return -1;
    return filter_path(b, rt, f, path, path_len, orig, orig_len);
}

int filter_header_dropped(const struct snapwire_snapshot *s, const struct snapwire_filter *f,
                          const char *name, size_t len)
{
    uint32_t i;

    if (filter_header_protected(name, len)) return 0;
    for (i = 0; i < f->edit_count; i++) {
        const struct snapwire_hdr_edit *e = &s->hdr_edits[f->first_edit + i];
        if (e->op != SNAPWIRE_HDR_ADD && strlen(e->name) == len &&
            strncasecmp(e->name, name, len) == 0)
            return 1;
    }
    return 0;
}

int filter_header_edits(struct dbuf *b, const struct snapwire_snapshot *s,
                        const struct snapwire_filter *f)
{
    uint32_t i;

    for (i = 0; i < f->edit_count; i++) {
        const struct snapwire_hdr_edit *e = &s->hdr_edits[f->first_edit + i];
        if (e->op == SNAPWIRE_HDR_REMOVE || filter_header_protected(e->name, strlen(e->name)))
            continue;
        if (dbuf_str(b, e->name) < 0 || dbuf_str(b, ": ") < 0 || dbuf_str(b, e->value) < 0 ||
            dbuf_str(b, "\r\n") < 0)
            return -1;
    }
    return 0;
}
