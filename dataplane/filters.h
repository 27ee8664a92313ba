/*
 * filters: the string work of Gateway route filters (snapwire_filter) on the request path:
 * rewritten paths, redirect locations, header edits. Pure functions over buffers; conn.c
 * decides when they run and does the I/O.
 */
#ifndef STRAIT_FILTERS_H
#define STRAIT_FILTERS_H

#include <stddef.h>
#include <stdint.h>

#include "dbuf.h"
#include "snapwire.h"

/*
 * Appends to b the origin-form target after f's path modification (REDIRECT or REWRITE):
 *   KEEP   - orig as it is (the path and query as received);
 *   FULL   - f->path, then orig's query;
 *   PREFIX - f->path in place of the part of path (the normalised path the router matched)
 *            that rt's Prefix path covers, the rest of path after it, then orig's query
 *            ("/foo" -> "/bar": "/foo/x" becomes "/bar/x"; "/foo" -> "/": "/x"; never empty).
 * A PREFIX modification on a route that is not a Prefix route acts as FULL. Returns 0 or -1
 * (out of memory).
 */
int filter_path(struct dbuf *b, const struct snapwire_route *rt, const struct snapwire_filter *f,
                const char *path, size_t path_len, const char *orig, size_t orig_len);

/*
 * Appends to b the Location of a REDIRECT filter f (Gateway API RequestRedirect):
 * scheme (f's, else https when tls else http) "://" host (f's hostname, else host: the
 * request's normalised host, "[v6]" bracketed) [":" port] then the target per filter_path.
 * The port is f's when set; else none when f sets a scheme (its default port), else the port
 * of the request's Host header (host_hdr, as received) if it had one; it is left out when it
 * is the scheme's default (80 for http, 443 for https). Returns 0 or -1.
 */
int filter_location(struct dbuf *b, const struct snapwire_route *rt,
                    const struct snapwire_filter *f, int tls, const char *host,
                    const char *host_hdr, size_t host_hdr_len, const char *path, size_t path_len,
                    const char *orig, size_t orig_len);

/*
 * Header edits (REQUEST_HEADERS / RESPONSE_HEADERS filter f of snapshot s).
 * filter_header_dropped: 1 when a header called name[0..len) of the message must not be
 * passed on because f sets or removes it. filter_header_edits appends f's SET and ADD
 * headers as "Name: value\r\n" lines. Neither touches the headers that carry the message's
 * framing or connection (Host, Content-Length, Transfer-Encoding, Connection, Upgrade, TE,
 * Trailer, Keep-Alive, Proxy-Connection): an edit naming one is ignored, so no filter can
 * desynchronise a connection.
 */
int filter_header_dropped(const struct snapwire_snapshot *s, const struct snapwire_filter *f,
                          const char *name, size_t len);
int filter_header_edits(struct dbuf *b, const struct snapwire_snapshot *s,
                        const struct snapwire_filter *f);

/* 1 for the headers filters never edit (see above). */
int filter_header_protected(const char *name, size_t len);

#endif
