/*
 * http1: HTTP/1.1 message heads and chunked framing, parsed in place.
 *
 * Does: parse request and response heads into pointer+length views of the caller's buffer
 * (re-parsing from the start on each call, like picohttpparser without last_len), derive body
 * framing and the request-target form (origin, absolute http/https, asterisk; CONNECT is
 * refused), check Host against the RFC 3986 host/port grammar, find the Max-Forwards of
 * OPTIONS/TRACE, recognise hop-by-hop headers, and track chunked bodies byte by byte (chunk
 * extensions checked against their grammar) so they can be forwarded verbatim.
 * Does not: allocate, copy, decode bodies, percent-decode or normalise paths.
 * Invariants: never reads at or past buf[len] (tests put len at a guard page); a bare CR, an
 * obs-fold line, a control character in a value or a non-token header name is an error, so
 * what we forward is unambiguous to any downstream parser (the one leniency: whitespace before
 * a response header's colon, which RFC 9112 5.1 has a proxy remove; the name excludes it). Line
 * endings in heads may be CRLF or LF; inside chunked bodies only CRLF is accepted.
 */
#include "http1.h"

#include <string.h>
#include <strings.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/*
 * Byte classes, one table lookup per byte on the hot path (every header byte of every
 * request and response goes through it): RFC 9110 5.6.2 tchar, RFC 3986 reg-name bytes
 * (unreserved / sub-delims, pct-encoding aside) and hex digits.
 */
enum { CL_TCHAR = 1, CL_REGNAME = 2, CL_HEX = 4 };
#define CL_ALNUM (CL_TCHAR | CL_REGNAME)
static const unsigned char char_class[256] = {
    ['0' ... '9'] = CL_ALNUM | CL_HEX,
    ['a' ... 'f'] = CL_ALNUM | CL_HEX,
    ['A' ... 'F'] = CL_ALNUM | CL_HEX,
    ['g' ... 'z'] = CL_ALNUM,
    ['G' ... 'Z'] = CL_ALNUM,
    ['!'] = CL_TCHAR | CL_REGNAME,
    ['#'] = CL_TCHAR,
    ['$'] = CL_TCHAR | CL_REGNAME,
    ['%'] = CL_TCHAR,
    ['&'] = CL_TCHAR | CL_REGNAME,
    ['\''] = CL_TCHAR | CL_REGNAME,
    ['*'] = CL_TCHAR | CL_REGNAME,
    ['+'] = CL_TCHAR | CL_REGNAME,
    ['-'] = CL_TCHAR | CL_REGNAME,
    ['.'] = CL_TCHAR | CL_REGNAME,
    ['^'] = CL_TCHAR,
    ['_'] = CL_TCHAR | CL_REGNAME,
    ['`'] = CL_TCHAR,
    ['|'] = CL_TCHAR,
    ['~'] = CL_TCHAR | CL_REGNAME,
    ['('] = CL_REGNAME,
    [')'] = CL_REGNAME,
    [','] = CL_REGNAME,
    [';'] = CL_REGNAME,
    ['='] = CL_REGNAME,
};

static int is_tchar(unsigned char c)
{
    return char_class[c] & CL_TCHAR;
}

/* Field-value / reason-phrase bytes: HTAB, SP, VCHAR, obs-text. */
static int is_vchar_ws(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Index of the first control byte (below 0x20, HTAB included) or DEL in p[0..n), or n. Sixteen
 * bytes at a time where SSE2 is there (every x86-64), never reading at or past p[n].
 */
static size_t find_ctl(const char *p, size_t n)
{
    size_t i = 0;

#if defined(__SSE2__)
    const __m128i lim = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i m = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, lim), x), _mm_cmpeq_epi8(x, del));
        int bits = _mm_movemask_epi8(m);
        if (bits) return i + (size_t)__builtin_ctz((unsigned)bits);
    }
#endif
    for (; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return i;
    return n;
}

/*
 * Finds the line starting at pos. Returns 0 and sets *end (content end, line ending excluded)
 * and *next (first byte of the following line), or -2 if no LF yet.
 */
static int next_line(const char *buf, size_t len, size_t pos, size_t *end, size_t *next)
{
    const char *lf = memchr(buf + pos, '\n', len - pos);
    size_t e;

    if (!lf) return -2;
    e = (size_t)(lf - buf);
    *next = e + 1;
    if (e > pos && buf[e - 1] == '\r') e--;
    *end = e;
    return 0;
}

/*
 * Parses header lines from pos up to and including the empty line. Returns the offset after
 * the empty line, -2 for more, -1 with *status. One pass: each line's end is found by the
 * same scan that checks its value's bytes, so an invalid byte is an error even before its
 * line is complete (the whole message would be refused for it anyway).
 */
static int parse_headers(const char *buf, size_t len, size_t pos, struct http1_header *hdrs,
                         size_t *num, int response, int *status)
{
    size_t end, i, name_end, vstart, n = 0;

    for (;;) {
        if (pos >= len) return -2;
        /* the empty line (a CR that no LF follows is garbage, refused below) */
        if (buf[pos] == '\n') {
            *num = n;
            return (int)(pos + 1);
        }
        if (buf[pos] == '\r') {
            if (pos + 1 == len) return -2;
            if (buf[pos + 1] == '\n') {
                *num = n;
                return (int)(pos + 2);
            }
        }
        if (is_ows(buf[pos])) goto bad; /* obs-fold or whitespace before the first header */
        if (n == HTTP1_MAX_HEADERS) {
            *status = 431;
            return -1;
        }
        for (i = pos; i < len && is_tchar((unsigned char)buf[i]); i++)
            ;
        name_end = i;
        /*
         * RFC 9112 5.1: whitespace between name and colon is a 400 in a request; in a response
         * a proxy MUST remove it before forwarding - the name we keep ends before it
         */
        if (response)
            while (i < len && is_ows(buf[i]))
                i++;
        if (i == len) return -2;
        if (name_end == pos || buf[i] != ':') goto bad;
        hdrs[n].name = buf + pos;
        hdrs[n].name_len = name_end - pos;
        for (i++; i < len && is_ows(buf[i]); i++)
            ;
        vstart = i;
        /* the value runs to the first control byte other than HTAB: CRLF or LF, else bad */
        for (;;) {
            i += find_ctl(buf + i, len - i);
            if (i == len) return -2;
            if (buf[i] != '\t') break;
            i++;
        }
        end = i;
        if (buf[i] == '\r') {
            if (++i == len) return -2;
        }
        if (buf[i] != '\n') goto bad; /* a bare CR or another control character */
        while (end > vstart && is_ows(buf[end - 1]))
            end--;
        hdrs[n].value = buf + vstart;
        hdrs[n].value_len = end - vstart;
        n++;
        pos = i + 1;
    }
bad:
    *status = 400;
    return -1;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Parses "HTTP/d.d" at p (8 bytes available). Returns the minor digit for major 1, -2 for a
 * well-formed version with another major (RFC 9110 6.2: answer 505), -1 if malformed.
 */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7])) return -1;
    return p[5] == '1' ? p[7] - '0' : -2;
}

int http1_parse_request(const char *buf, size_t len, struct http1_request *req, int *status)
{
    size_t pos = 0, end, next, i, sp1, sp2;
    int r;

    /* RFC 9112 2.2: ignore a few empty lines before the request line. */
    while (pos < len && pos < 4 && (buf[pos] == '\r' || buf[pos] == '\n'))
        pos++;
    if (next_line(buf, len, pos, &end, &next) < 0) {
        /* a CR at the end may be the first half of the line's CRLF: not over the limit yet */
        if (len - pos > HTTP1_MAX_REQUEST_LINE + (size_t)(len > pos && buf[len - 1] == '\r')) {
            *status = 414;
            return -1;
        }
        return -2;
    }
    *status = 400;
    if (end - pos > HTTP1_MAX_REQUEST_LINE) {
        *status = 414;
        return -1;
    }
    for (i = pos; i < end && is_tchar((unsigned char)buf[i]); i++)
        ;
    if (i == pos || i == end || buf[i] != ' ') return -1;
    sp1 = i;
    for (i = sp1 + 1; i < end && (unsigned char)buf[i] > 0x20 && buf[i] != 0x7f; i++)
        ;
    if (i == sp1 + 1 || i == end || buf[i] != ' ') return -1;
    sp2 = i;
    if (end - sp2 - 1 != 8 || (r = parse_version(buf + sp2 + 1)) == -1) return -1;
    if (r == -2) {
        *status = 505;
        return -1;
    }
    req->method = buf + pos;
    req->method_len = sp1 - pos;
    req->target = buf + sp1 + 1;
    req->target_len = sp2 - sp1 - 1;
    req->line = buf + pos;
    req->line_len = end - pos;
    req->minor_version = r;
    r = parse_headers(buf, len, next, req->headers, &req->num_headers, 0, status);
    if (r == -2 && len > HTTP1_MAX_HEAD) {
        *status = 431;
        return -1;
    }
    if (r > HTTP1_MAX_HEAD) {
        *status = 431;
        return -1;
    }
    return r;
}

int http1_parse_response(const char *buf, size_t len, struct http1_response *res, int *status)
{
    size_t end, next, i;
    int r;

    *status = 502;
    if (next_line(buf, len, 0, &end, &next) < 0) return len > HTTP1_MAX_HEAD ? -1 : -2;
    if (end < 12 || (r = parse_version(buf)) < 0 || buf[8] != ' ') return -1;
    for (i = 9; i < 12; i++)
        if (buf[i] < '0' || buf[i] > '9') return -1;
    /* RFC 9110 15: codes outside 100..599 are invalid; what the client cannot trust is a 502 */
    if (buf[9] == '0' || buf[9] > '5') return -1;
    res->minor_version = r;
    res->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (end > 12 && buf[12] != ' ') return -1;
    res->reason = buf + (end > 12 ? 13 : 12);
    res->reason_len = end > 12 ? end - 13 : 0;
    for (i = 0; i < res->reason_len; i++)
        if (!is_vchar_ws((unsigned char)res->reason[i])) return -1;
    r = parse_headers(buf, len, next, res->headers, &res->num_headers, 1, status);
    if (r == -1 || (r == -2 && len > HTTP1_MAX_HEAD) || r > HTTP1_MAX_HEAD) {
        *status = 502;
        return -1;
    }
    return r;
}

/*
 * Iterates comma-separated tokens of a header value. *pos is the cursor; returns 1 and sets
 * tok/toklen (OWS trimmed, may be empty), or 0 at the end.
 */
static int next_token(const struct http1_header *h, size_t *pos, const char **tok, size_t *toklen)
{
    size_t i = *pos, s, e;

    if (i > h->value_len) return 0;
    while (i < h->value_len && is_ows(h->value[i]))
        i++;
    s = i;
    while (i < h->value_len && h->value[i] != ',')
        i++;
    e = i;
    while (e > s && is_ows(h->value[e - 1]))
        e--;
    *tok = h->value + s;
    *toklen = e - s;
    *pos = i + 1;
    return 1;
}

/*
 * Case-insensitive token comparison with a literal word of letters and '-': tok lies in a
 * validated field value (no control characters), so http1_lower_eq's fold is exact.
 */
static int tok_is(const char *tok, size_t n, const char *word)
{
    return __builtin_strlen(word) == n && http1_lower_eq(tok, word, n);
}

/* Strict Content-Length: 1..18 digits. Returns 0 or -1. */
static int parse_length(const struct http1_header *h, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (h->value_len == 0 || h->value_len > 18) return -1;
    for (i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9') return -1;
        v = v * 10 + (uint64_t)(h->value[i] - '0');
    }
    *out = v;
    return 0;
}

/*
 * Common framing scan. Returns 0, or -1 on ambiguity. te_state: 0 no TE, 1 TE ends in
 * chunked, 2 TE present but not ending in chunked. A coding after chunked (chunked not
 * last, or applied twice) is -1 in a request and 2 in a response (RFC 9112 6.3: a response
 * whose final coding is not chunked is read until the server closes).
 */
static int scan_framing(const struct http1_header *hdrs, size_t n, int response,
                        struct http1_msginfo *info, int *have_cl, int *te_state, int *n_host)
{
    size_t i, p;
    const char *tok;
    size_t tl;
    uint64_t cl;
    int te_seen = 0, chunked_seen = 0, after_chunked = 0;

    memset(info, 0, sizeof(*info));
    *have_cl = 0;
    *te_state = 0;
    *n_host = 0;
    for (i = 0; i < n; i++) {
        const struct http1_header *h = &hdrs[i];
        /* dispatched on the name's length: this runs for every header of every message */
        switch (h->name_len) {
        case 14:
            if (!http1_name_is(h, "content-length")) break;
            if (parse_length(h, &cl) < 0) return -1;
            if (*have_cl && cl != info->content_length) return -1;
            *have_cl = 1;
            info->content_length = cl;
            break;
        case 17:
            if (!http1_name_is(h, "transfer-encoding")) break;
            te_seen = 1; /* an empty Transfer-Encoding counts: no final chunked */
            p = 0;
            while (next_token(h, &p, &tok, &tl)) {
                if (tl == 0) continue;
                after_chunked |= chunked_seen;
                if (tok_is(tok, tl, "chunked")) chunked_seen = 1;
            }
            break;
        case 10:
            if (!http1_name_is(h, "connection")) break;
            p = 0;
            while (next_token(h, &p, &tok, &tl)) {
                if (tok_is(tok, tl, "close"))
                    info->conn_close = 1;
                else if (tok_is(tok, tl, "keep-alive"))
                    info->conn_keep_alive = 1;
            }
            break;
        case 4:
            if (!http1_name_is(h, "host")) break;
            if (++*n_host == 1) {
                info->host = h->value;
                info->host_len = h->value_len;
            }
            break;
        default:
            break;
        }
    }
    if (te_seen) {
        if (after_chunked && !response) return -1;
        *te_state = chunked_seen && !after_chunked ? 1 : 2;
    }
    if (*te_state && *have_cl) return -1;
    return 0;
}

static int is_hex(char c)
{
    return char_class[(unsigned char)c] & CL_HEX;
}

/* RFC 3986 unreserved / sub-delims: the reg-name bytes besides pct-encoding. */
static int is_regname_char(char c)
{
    return char_class[(unsigned char)c] & CL_REGNAME;
}

/*
 * True when s[0..n) is an RFC 3986 host [":" port]: an IP-literal of hex digits, ':' and
 * '.', or a reg-name / IPv4 address (pct-encoding checked), then an all-digit port. No
 * userinfo, no IPvFuture or zone id. Empty is accepted (an empty Host field).
 */
static int is_authority(const char *s, size_t n)
{
    size_t i = 0;

    if (n && s[0] == '[') {
        for (i = 1; i < n && s[i] != ']'; i++)
            if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.') return 0;
        if (i == n || i == 1) return 0;
        i++;
    } else {
        for (; i < n && s[i] != ':'; i++) {
            if (s[i] == '%') {
                if (i + 2 >= n || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return 0;
                i += 2;
            } else if (!is_regname_char(s[i])) {
                return 0;
            }
        }
    }
    if (i == n) return 1;
    if (s[i] != ':') return 0;
    for (i++; i < n; i++)
        if (!is_digit(s[i])) return 0;
    return 1;
}

static int method_is(const struct http1_request *req, const char *m)
{
    return req->method_len == strlen(m) && memcmp(req->method, m, req->method_len) == 0;
}

/* Classifies the request-target into info (form, path, authority). Returns 0 or -1 (400). */
static int parse_target(const struct http1_request *req, struct http1_msginfo *info,
                        const char **auth, size_t *auth_len)
{
    const char *t = req->target;
    size_t n = req->target_len, i, a;

    *auth = NULL;
    if (t[0] == '/') {
        info->target_form = HTTP1_TARGET_ORIGIN;
        info->path = t;
        info->path_len = n;
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (!method_is(req, "OPTIONS")) return -1;
        info->target_form = HTTP1_TARGET_ASTERISK;
        info->path = t;
        info->path_len = n;
        return 0;
    }
    /* absolute-form: only the schemes a gateway to http origins serves (RFC 9110 4.2) */
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
        i = 7;
    else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
        i = 8;
    else
        return -1;
    for (a = i; a < n && t[a] != '/' && t[a] != '?'; a++)
        ;
    /* an empty host is invalid in an http(s) URI (RFC 9110 4.2.1); '@' fails is_authority */
    if (a == i || t[i] == ':' || !is_authority(t + i, a - i)) return -1;
    info->target_form = HTTP1_TARGET_ABSOLUTE;
    info->path = t + a;
    info->path_len = n - a;
    *auth = t + i;
    *auth_len = a - i;
    return 0;
}

/*
 * RFC 9110 7.6.2: finds the Max-Forwards of an OPTIONS or TRACE request into info. Returns
 * 0 (info->max_forwards NULL when absent), -1 when it is not 1*DIGIT or appears twice.
 */
static int find_max_forwards(const struct http1_request *req, struct http1_msginfo *info)
{
    size_t i, k;

    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];
        uint64_t v = 0; /* below 10 * the cap: no overflow */
        if (!http1_name_is(h, "max-forwards")) continue;
        if (info->max_forwards || h->value_len == 0) return -1;
        for (k = 0; k < h->value_len; k++) {
            if (!is_digit(h->value[k])) return -1;
            if (v < HTTP1_MAX_FORWARDS_CAP) v = v * 10 + (uint64_t)(h->value[k] - '0');
        }
        info->max_forwards = h;
        info->max_forwards_value =
            v < HTTP1_MAX_FORWARDS_CAP ? (uint32_t)v : HTTP1_MAX_FORWARDS_CAP;
    }
    return 0;
}

int http1_request_info(const struct http1_request *req, struct http1_msginfo *info, int *status)
{
    int have_cl, te, n_host;
    const char *auth;
    size_t auth_len = 0;

    *status = 400;
    if (scan_framing(req->headers, req->num_headers, 0, info, &have_cl, &te, &n_host) < 0)
        return -1;
    if (method_is(req, "CONNECT")) {
        *status = 405;
        return -1;
    }
    if (parse_target(req, info, &auth, &auth_len) < 0) return -1;
    if (n_host > 1 || (n_host == 0 && req->minor_version >= 1)) return -1;
    if (info->host && !is_authority(info->host, info->host_len)) return -1;
    if (auth) {
        info->host = auth;
        info->host_len = auth_len;
    }
    if ((method_is(req, "OPTIONS") || method_is(req, "TRACE")) && find_max_forwards(req, info) < 0)
        return -1;
    if (te && req->minor_version == 0) return -1; /* faulty framing: the caller closes */
    if (te == 2) {
        *status = 501;
        return -1;
    }
    if (te == 1)
        info->body = HTTP1_BODY_CHUNKED;
    else if (have_cl && info->content_length > 0)
        info->body = HTTP1_BODY_LENGTH;
    else
        info->body = HTTP1_BODY_NONE;
    return 0;
}

int http1_response_info(const struct http1_response *res, int head_request,
                        struct http1_msginfo *info)
{
    int have_cl, te, n_host;

    if (scan_framing(res->headers, res->num_headers, 1, info, &have_cl, &te, &n_host) < 0)
        return -1;
    /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing */
    if (te && res->minor_version == 0) return -1;
    if (head_request || res->status < 200 || res->status == 204 || res->status == 304)
        info->body = HTTP1_BODY_NONE;
    else if (te == 1)
        info->body = HTTP1_BODY_CHUNKED;
    else if (te == 2)
        info->body = HTTP1_BODY_UNTIL_CLOSE;
    else if (have_cl)
        info->body = info->content_length ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    else
        info->body = HTTP1_BODY_UNTIL_CLOSE;
    return 0;
}

/* True for the names RFC 9110 7.6.1 makes hop-by-hop whatever Connection says. */
static int fixed_hop_name(const struct http1_header *h)
{
    /* dispatched on length: this runs for every forwarded header */
    switch (h->name_len) {
    case 2:
        return http1_lower_eq(h->name, "te", 2);
    case 7:
        return http1_lower_eq(h->name, "upgrade", 7);
    case 10:
        return http1_lower_eq(h->name, "connection", 10) ||
               http1_lower_eq(h->name, "keep-alive", 10);
    case 16:
        return http1_lower_eq(h->name, "proxy-connection", 16);
    default:
        return 0;
    }
}

/* True when a Connection header among hdrs[0..n) lists h's name. */
static int listed_in_connection(const struct http1_header *hdrs, size_t n,
                                const struct http1_header *h)
{
    size_t i, p, tl;
    const char *tok;

    for (i = 0; i < n; i++) {
        if (!http1_name_is(&hdrs[i], "connection")) continue;
        p = 0;
        while (next_token(&hdrs[i], &p, &tok, &tl))
            if (tl == h->name_len && strncasecmp(tok, h->name, tl) == 0) return 1;
    }
    return 0;
}

int http1_is_hop_header(const struct http1_header *hdrs, size_t n, const struct http1_header *h)
{
    return fixed_hop_name(h) || listed_in_connection(hdrs, n, h);
}

void http1_hop_init(struct http1_hop *hp, const struct http1_header *hdrs, size_t n)
{
    size_t i, p, tl;
    const char *tok;

    hp->hdrs = hdrs;
    hp->n_hdrs = n;
    hp->n = 0;
    hp->overflow = 0;
    for (i = 0; i < n; i++) {
        if (!http1_name_is(&hdrs[i], "connection")) continue;
        p = 0;
        while (next_token(&hdrs[i], &p, &tok, &tl)) {
            /* empty, "close", or a name that is dropped anyway: nothing to remember */
            struct http1_header name = {.name = tok, .name_len = tl};
            if (tl == 0 || (tl == 5 && strncasecmp(tok, "close", 5) == 0) || fixed_hop_name(&name))
                continue;
            if (hp->n == HTTP1_HOP_TOKENS) {
                hp->overflow = 1;
                return;
            }
            hp->tok[hp->n].p = tok;
            hp->tok[hp->n].len = tl;
            hp->n++;
        }
    }
}

int http1_hop_drop(const struct http1_hop *hp, const struct http1_header *h)
{
    unsigned i;

    if (fixed_hop_name(h)) return 1;
    if (hp->overflow) return listed_in_connection(hp->hdrs, hp->n_hdrs, h);
    for (i = 0; i < hp->n; i++)
        if (hp->tok[i].len == h->name_len && strncasecmp(hp->tok[i].p, h->name, h->name_len) == 0)
            return 1;
    return 0;
}

enum {
    CK_SIZE = 0, /* zero-initialised tracker starts here */
    CK_SIZE_WS,  /* BWS after the size: only ';' may follow */
    CK_EXT_PRE_NAME,
    CK_EXT_NAME,
    CK_EXT_POST_NAME, /* BWS after a name: ';' or '=' */
    CK_EXT_PRE_VAL,
    CK_EXT_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QPAIR,
    CK_EXT_AFTER_VAL, /* a value ended: BWS, ';' or CR */
    CK_EXT_POST_VAL,  /* BWS after a value: only ';' */
    CK_SIZE_LF,       /* every state above is part of the size line */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START,
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
};

#define CK_MAX_LINE 4096
#define CK_MAX_TRAILERS (64 * 1024)

void http1_chunked_init(struct http1_chunked *c)
{
    memset(c, 0, sizeof(*c));
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

ssize_t http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char ch = (unsigned char)buf[i];
        int v;

        if (c->state == CK_DATA) {
            size_t take = len - i;
            if (take > c->remaining) take = (size_t)c->remaining;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0) c->state = CK_DATA_CR;
            continue;
        }
        if (c->state == CK_DONE) return (ssize_t)i;
        i++;
        if (c->state < CK_SIZE_LF && ++c->line_len > CK_MAX_LINE) return -1;
        if (c->state >= CK_TRAILER_START && c->state <= CK_TRAILER_LF &&
            ++c->trailer_len > CK_MAX_TRAILERS)
            return -1;
        switch (c->state) {
        case CK_SIZE:
            if ((v = hexval(ch)) >= 0) {
                if (++c->digits > 15) return -1;
                c->remaining = c->remaining * 16 + (uint64_t)v;
                break;
            }
            if (c->digits == 0) return -1;
            if (ch == ';')
                c->state = CK_EXT_PRE_NAME;
            else if (ch == ' ' || ch == '\t')
                c->state = CK_SIZE_WS;
            else if (ch == '\r')
                c->state = CK_SIZE_LF;
            else
                return -1;
            break;
        case CK_SIZE_WS:
        case CK_EXT_POST_VAL:
            if (ch == ';')
                c->state = CK_EXT_PRE_NAME;
            else if (ch != ' ' && ch != '\t')
                return -1;
            break;
        case CK_EXT_PRE_NAME:
            if (is_tchar(ch))
                c->state = CK_EXT_NAME;
            else if (ch != ' ' && ch != '\t')
                return -1;
            break;
        case CK_EXT_NAME:
        case CK_EXT_POST_NAME:
            if (c->state == CK_EXT_NAME && is_tchar(ch))
                break;
            else if (ch == ' ' || ch == '\t')
                c->state = CK_EXT_POST_NAME;
            else if (ch == ';')
                c->state = CK_EXT_PRE_NAME;
            else if (ch == '=')
                c->state = CK_EXT_PRE_VAL;
            else if (ch == '\r' && c->state == CK_EXT_NAME)
                c->state = CK_SIZE_LF;
            else
                return -1;
            break;
        case CK_EXT_PRE_VAL:
            if (ch == '"')
                c->state = CK_EXT_QUOTED;
            else if (is_tchar(ch))
                c->state = CK_EXT_TOKEN;
            else if (ch != ' ' && ch != '\t')
                return -1;
            break;
        case CK_EXT_QUOTED: /* qdtext: HTAB, SP, VCHAR except '"' and '\\', obs-text */
            if (ch == '"')
                c->state = CK_EXT_AFTER_VAL;
            else if (ch == '\\')
                c->state = CK_EXT_QPAIR;
            else if (!is_vchar_ws(ch))
                return -1; /* CR included: an unterminated quoted-string */
            break;
        case CK_EXT_QPAIR:
            if (!is_vchar_ws(ch)) return -1;
            c->state = CK_EXT_QUOTED;
            break;
        case CK_EXT_TOKEN:
        case CK_EXT_AFTER_VAL:
            if (c->state == CK_EXT_TOKEN && is_tchar(ch))
                break;
            else if (ch == ' ' || ch == '\t')
                c->state = CK_EXT_POST_VAL;
            else if (ch == ';')
                c->state = CK_EXT_PRE_NAME;
            else if (ch == '\r')
                c->state = CK_SIZE_LF;
            else
                return -1;
            break;
        case CK_SIZE_LF:
            if (ch != '\n') return -1;
            c->data_total = c->remaining > UINT64_MAX - c->data_total
                                ? UINT64_MAX
                                : c->data_total + c->remaining;
            c->state = c->remaining ? CK_DATA : CK_TRAILER_START;
            break;
        case CK_DATA_CR:
            if (ch != '\r') return -1;
            c->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n') return -1;
            c->state = CK_SIZE;
            c->digits = 0;
            c->line_len = 0;
            c->remaining = 0;
            break;
        case CK_TRAILER_START:
            if (ch == '\r')
                c->state = CK_END_LF;
            else if (is_tchar(ch))
                c->state = CK_TRAILER_NAME;
            else
                return -1; /* obs-fold or garbage */
            break;
        case CK_TRAILER_NAME:
            if (ch == ':')
                c->state = CK_TRAILER_VALUE;
            else if (!is_tchar(ch))
                return -1;
            break;
        case CK_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CK_TRAILER_LF;
            else if (!is_vchar_ws(ch))
                return -1;
            break;
        case CK_TRAILER_LF:
            if (ch != '\n') return -1;
            c->state = CK_TRAILER_START;
            break;
        case CK_END_LF:
            if (ch != '\n') return -1;
            c->state = CK_DONE;
            return (ssize_t)i;
        default:
            return -1;
        }
    }
    return c->state == CK_DONE ? (ssize_t)i : -2;
}
