/*
 * http1: incremental, zero-copy HTTP/1.1 head parser and chunked-body framing tracker.
 * picohttpparser-style: the caller owns the bytes, results point into them.
 */
#ifndef STRAIT_HTTP1_H
#define STRAIT_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define HTTP1_MAX_HEADERS 100
#define HTTP1_MAX_REQUEST_LINE 8192 /* longer request line: 414 */
#define HTTP1_MAX_HEAD (64 * 1024)  /* longer head (request or response): 431 / 502 */

struct http1_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
};

struct http1_request {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    const char *line; /* the whole request line, without its line ending */
    size_t line_len;
    int minor_version; /* HTTP/1.<minor> */
    struct http1_header headers[HTTP1_MAX_HEADERS];
    size_t num_headers;
};

struct http1_response {
    int minor_version;
    int status;
    const char *reason;
    size_t reason_len;
    struct http1_header headers[HTTP1_MAX_HEADERS];
    size_t num_headers;
};

/*
 * Parses a request head at buf[0..len). Returns the head length (up to and including the
 * empty line) when complete, -2 when more bytes are needed, -1 on error with *status set to
 * the HTTP status to answer (400, 414, 431). Never reads past buf[len-1].
 */
int http1_parse_request(const char *buf, size_t len, struct http1_request *req, int *status);

/* Same for a response head; errors set *status to 502. */
int http1_parse_response(const char *buf, size_t len, struct http1_response *res, int *status);

/* How the body of a message is delimited. */
enum http1_body_kind {
    HTTP1_BODY_NONE = 0,   /* no body */
    HTTP1_BODY_LENGTH,     /* Content-Length bytes */
    HTTP1_BODY_CHUNKED,    /* chunked transfer coding */
    HTTP1_BODY_UNTIL_CLOSE /* responses only: until the connection closes */
};

/* Request-target forms a reverse proxy accepts (RFC 9112 3.2); authority-form is CONNECT's. */
enum http1_target_form {
    HTTP1_TARGET_ORIGIN = 0, /* "/path?query" */
    HTTP1_TARGET_ABSOLUTE,   /* "http://authority/path?query" (http or https, any case) */
    HTTP1_TARGET_ASTERISK,   /* "*", OPTIONS only */
};

/* What the proxy needs to know about a message beyond its head syntax. */
struct http1_msginfo {
    enum http1_body_kind body;
    uint64_t content_length;
    int conn_close;      /* Connection: close present */
    int conn_keep_alive; /* Connection: keep-alive present */
    /*
     * Requests: the authority to route on and to send as Host upstream - the target's
     * authority for absolute-form (RFC 9112 3.2.2: Host is then ignored), else the Host
     * header value; NULL without either. Responses: the first Host header, or NULL.
     */
    const char *host;
    size_t host_len;
    /* requests only */
    enum http1_target_form target_form;
    /*
     * The target to forward in origin-form: "/..." or "*". For absolute-form it is what
     * follows the authority, which may be empty or start with '?': send a '/' before it then.
     */
    const char *path;
    size_t path_len;
    /*
     * OPTIONS and TRACE only (RFC 9110 7.6.2): their Max-Forwards header, or NULL, and its
     * value (saturated at HTTP1_MAX_FORWARDS_CAP).
     */
    const struct http1_header *max_forwards;
    uint32_t max_forwards_value;
};

#define HTTP1_MAX_FORWARDS_CAP 999999999u /* the largest Max-Forwards we pass on */

/*
 * Derives framing and target for a request. Returns 0, or -1 with *status set:
 * 405 for CONNECT (we are a reverse proxy, not a tunnel);
 * 400 for a target that is not origin-form ("/..."), absolute-form with scheme http/https
 * and a valid authority without userinfo, or "*" with OPTIONS; for both Content-Length and
 * Transfer-Encoding, differing or malformed Content-Length, any Transfer-Encoding on
 * HTTP/1.0 (RFC 9112 6.1), a coding after chunked, several Host headers, a missing Host on
 * HTTP/1.1, a Host outside the RFC 3986 host [":" port] grammar, a Max-Forwards on OPTIONS or
 * TRACE that is not one run of digits (or appears twice);
 * 501 for a Transfer-Encoding whose last coding is not chunked.
 */
int http1_request_info(const struct http1_request *req, struct http1_msginfo *info, int *status);

/*
 * Derives framing for a response to a request with method head_request (1 if HEAD).
 * Returns 0, or -1 for ambiguous framing (the proxy answers 502): Content-Length with
 * Transfer-Encoding, differing or malformed Content-Lengths, Transfer-Encoding in an
 * HTTP/1.0 response (RFC 9112 6.1). A Transfer-Encoding whose last coding is not chunked
 * means "until close" (RFC 9112 6.3).
 */
int http1_response_info(const struct http1_response *res, int head_request,
                        struct http1_msginfo *info);

/*
 * True when header h must not be forwarded: hop-by-hop names (Connection, Keep-Alive,
 * Proxy-Connection, TE, Upgrade; RFC 9110 7.6.1) or a name listed in any Connection header
 * among hdrs[0..n). Transfer-Encoding and Trailer are not: bodies are forwarded verbatim,
 * chunked framing and trailer fields included.
 */
int http1_is_hop_header(const struct http1_header *hdrs, size_t n, const struct http1_header *h);

/*
 * The same test for every header of one message, with the message's Connection options
 * collected once (http1_hop_init) instead of re-scanned for each header: forwarding a head
 * costs one pass over its Connection headers, not one per header.
 */
#define HTTP1_HOP_TOKENS 8
struct http1_hop {
    const struct http1_header *hdrs;
    size_t n_hdrs;
    unsigned n;   /* options in tok[] */
    int overflow; /* more options than tok[] holds: http1_hop_drop scans hdrs */
    struct {
        const char *p;
        size_t len;
    } tok[HTTP1_HOP_TOKENS];
};
void http1_hop_init(struct http1_hop *hp, const struct http1_header *hdrs, size_t n);
int http1_hop_drop(const struct http1_hop *hp, const struct http1_header *h);

/*
 * True when the n bytes at s equal name, ignoring ASCII case. name holds letters, digits and
 * '-' only, and s is a validated token (no control characters): for such pairs OR-ing 0x20
 * into both bytes is an exact case fold, and much cheaper than strncasecmp.
 */
static inline int http1_lower_eq(const char *s, const char *name, size_t n)
{
    const uint64_t fold = 0x2020202020202020ull;
    uint64_t a, b;
    size_t i;

    if (n >= 8) {
        /* eight bytes at a time, the last word overlapping the one before */
        for (i = 0; i + 8 <= n; i += 8) {
            memcpy(&a, s + i, 8);
            memcpy(&b, name + i, 8);
            if ((a | fold) != (b | fold)) return 0;
        }
        if (i == n) return 1;
        memcpy(&a, s + n - 8, 8);
        memcpy(&b, name + n - 8, 8);
        return (a | fold) == (b | fold);
    }
    for (i = 0; i < n; i++)
        if (((unsigned char)s[i] | 0x20) != ((unsigned char)name[i] | 0x20)) return 0;
    return 1;
}

/*
 * Case-insensitive header name comparison with a NUL-terminated name of letters, digits and
 * '-' (a literal, so inlining folds its strlen).
 */
static inline int http1_name_is(const struct http1_header *h, const char *name)
{
    size_t n = __builtin_strlen(name);

    return h->name_len == n && http1_lower_eq(h->name, name, n);
}

/*
 * Chunked body tracker: walks chunk-size lines, extensions, data, and trailers so the raw
 * bytes can be forwarded verbatim. Zero-initialise (or http1_chunked_init) before use.
 */
struct http1_chunked {
    int state;
    uint64_t remaining; /* data bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size/trailer line so far */
    size_t trailer_len; /* total trailer bytes so far */
    int digits;
    uint64_t data_total; /* sum of the chunk sizes announced so far (counted at each size line) */
};

void http1_chunked_init(struct http1_chunked *c);

/*
 * Feeds buf[0..len). Returns the number of bytes that belong to the body when the message
 * ended inside buf (the rest is the next message), -2 when all len bytes were consumed and
 * more are needed, -1 on a framing error.
 */
ssize_t http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len);

#endif
