/*
 * snapwire: encoder, checked decoder and JSON dump of the routing snapshot frame
 * (layout in snapwire.h).
 *
 * The decoder trusts nothing: every section offset/length, string reference, index, enum and
 * padding byte is checked before any record is exposed, and all arithmetic is done in 64 bits
 * so hostile lengths cannot wrap. Decoding is two passes over the validated frame: the first
 * checks and sizes, the second copies into one arena (one malloc, one free). The encoder runs
 * the same consistency checks on its input, so a frame it produces always decodes.
 * Not here: socket I/O, routing decisions, anything libev/OpenSSL.
 */
#include "snapwire.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <zlib.h>

#include "jsongen.h"

/* Record sizes on the wire. A string reference is {u32 offset, u32 length}. */
#define REC_META 24 /* u32 default_cluster, str source, u64 default_max_body, u32 default_cert */
/*
 * v7, mesh snapshots only: REC_META, then 24 str trust_domain, 32 str cluster_domain,
 * 40 u8 authz_default_deny, 41 u8 pad[7]
 */
#define REC_META_MESH 48
#define REC_LISTENER 20 /* str name, str address, u16 port, u8 protocol, u8 pad */
#define REC_VHOST 16    /* str host, u32 first_route, u32 route_count */
/*
 *  0 str path, 8 u32 cluster, 12 u8 match, 13 u8 flags, 14 u8 method, 15 u8 retry_attempts,
 * 16 str source, 24 u64 max_body, 32 str hsts, 40 u32 first_cond, 44 u32 cond_count,
 * 48 u32 first_backend, 52 u32 backend_count, 56 u32 first_filter, 60 u32 filter_count,
 * 64 u32 request_timeout_ms, 68 u32 backend_timeout_ms, 72 u64 retry_codes_lo,
 * 80 u64 retry_codes_hi, 88 u32 retry_backoff_ms, 92 u8 pad[4]
 */
#define REC_ROUTE 96
/*
 *  0 str name, 8 u32 first_endpoint, 12 u32 endpoint_count, 16 u8 lb, 17 u8 tls,
 * 18 u8 hash_on, 19 u8 pad, 20 str tls_sni, 28 u32 tls_ca, 32 str hash_name,
 * 40 str affinity_cookie (v5: 48 bytes, was 32),
 * 48 str hc_path, 56 str hc_host, 64 u32 hc_interval_ms, 68 u32 hc_timeout_ms,
 * 72 u16 hc_status_lo, 74 u16 hc_status_hi, 76 u8 hc_healthy, 77 u8 hc_unhealthy,
 * 78 u8 od_max_percent, 79 u8 pad, 80 u32 od_consecutive, 84 u32 od_base_ms, 88 u32 od_max_ms,
 * 92 u32 cb_max_connections, 96 u32 cb_max_pending, 100 u32 cb_max_requests,
 * 104 u16 rb_percent, 106 u8 pad[2], 108 u32 rb_min_per_sec, 112 u32 slow_start_ms,
 * 116 u8 pad[4] (v6: 120 bytes, was 48)
 */
#define REC_CLUSTER 120
#define REC_ENDPOINT 16 /* str address, u16 port, u8 ready, u8 pad, u32 weight (v6, was 12) */
/* str name, str chain_pem, str key_pem, str fingerprint, u64 not_after */
#define REC_CERT 40
/* str host, u32 cert, u32 cert2, u32 client_ca, u8 client_verify, u8 pad[3] */
#define REC_TLS_HOST 24
#define REC_COND 20   /* str name, str value, u8 kind, u8 pad[3] */
#define REC_BACKEND 8 /* u32 cluster, u32 weight */
/*
 *  0 str scheme, 8 str hostname, 16 str path, 24 u32 first_edit, 28 u32 edit_count,
 * 32 u32 cluster, 36 u32 mirror_permille, 40 u16 port, 42 u16 status, 44 u8 type,
 * 45 u8 path_mod, 46 u8 pad[2]. Fields the filter's type does not use are zero ("" for
 * strings, SNAPWIRE_NONE for cluster): the encoder writes them so, the decoder refuses others.
 */
#define REC_FILTER 48
#define REC_HDR_EDIT 20 /* str name, str value, u8 op, u8 pad[3]; value "" for REMOVE */
/*
 *  0 str ns, 8 str name, 16 str address, 24 u32 cluster, 28 u32 first_id, 32 u32 id_count,
 * 36 u16 port, 38 u8 proto, 39 u8 mtls
 */
#define REC_MESH_SERVICE 40
#define REC_MESH_ID 8 /* str uri */
/*
 *  0 str ns, 8 str name, 16 str source, 24 u32 first_principal, 28 u32 principal_count,
 * 32 u16 port, 34 u8 action, 35 u8 pad[5]
 */
#define REC_AUTHZ 40
#define REC_PRINCIPAL 12 /* str value, u8 kind, u8 pad[3] */
#define SECTION_ENTRY 12 /* u32 type, u32 offset, u32 length */
#define MAX_SECTIONS 64
#define MAX_STRING (64u << 10)
#define MAX_PEM (1u << 20)
#define SEC_MAX SNAPWIRE_SEC_AUTHZ_PRINCIPALS /* highest section type this reader knows */
#define CLUSTER_DOMAIN_DEFAULT "cluster.local"
#define SPIFFE_SCHEME "spiffe://"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static int valid_text(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return 0;
    }
    return 1;
}

/* PEM text: printable plus the line breaks and tabs PEM files carry; never NUL. */
static int valid_pem(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

/* A server certificate (with a key) or a CA bundle (without), by index. */
static int cert_has_key(const struct snapwire_snapshot *s, uint32_t i)
{
    return s->certs[i].key_pem && s->certs[i].key_pem[0];
}

static int valid_ip(const char *s)
{
    unsigned char tmp[16];

    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static void decode_cluster_v6(const uint8_t *p, struct snapwire_cluster *c)
{
    c->hc_interval_ms = get32(p + 64);
    c->hc_timeout_ms = get32(p + 68);
    c->hc_status_lo = get16(p + 72);
    c->hc_status_hi = get16(p + 74);
    c->hc_healthy = p[76];
    c->hc_unhealthy = p[77];
    c->od_max_percent = p[78];
    c->od_consecutive = get32(p + 80);
    c->od_base_ms = get32(p + 84);
    c->od_max_ms = get32(p + 88);
    c->cb_max_connections = get32(p + 92);
    c->cb_max_pending = get32(p + 96);
    c->cb_max_requests = get32(p + 100);
    c->rb_percent = get16(p + 104);
    c->rb_min_per_sec = get32(p + 108);
    c->slow_start_ms = get32(p + 112);
}

/* hc_host: "" or host[:port] characters only (letters, digits, - . : [ ]), <= 255 bytes. */
static int valid_hc_host(const char *h)
{
    size_t n = strlen(h);

    if (n > 255) return 0;
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && !strchr("-.:[]", *h)) return 0;
    return 1;
}

/* hc_path: '/' then no space or control character, <= 1024 bytes. */
static int valid_hc_path(const char *p)
{
    size_t n = strlen(p);

    if (n == 0 || n > 1024 || p[0] != '/') return 0;
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) return 0;
    return 1;
}

/* The v6 resilience fields of cluster i (see snapwire.h). */
static int check_cluster_v6(const struct snapwire_cluster *c, uint32_t i, char *err, size_t errlen)
{
    const char *why = NULL;

    if (!*nz(c->hc_path)) {
        /* checks off: the encoder writes the other hc_* fields as 0 / "", the decoder
         * refuses anything else (check_canonical) */
    } else if (!valid_hc_path(c->hc_path)) {
        why = "hc_path is not a path (/..., no spaces, at most 1024 bytes)";
    } else if (!valid_hc_host(nz(c->hc_host))) {
        why = "hc_host is not a host[:port]";
    } else if (c->hc_interval_ms < 100 || c->hc_interval_ms > 3600000) {
        why = "hc_interval_ms out of 100..3600000";
    } else if (c->hc_timeout_ms < 10 || c->hc_timeout_ms > c->hc_interval_ms) {
        why = "hc_timeout_ms out of 10..hc_interval_ms";
    } else if (c->hc_status_lo < 100 || c->hc_status_lo > 599) {
        why = "hc_status_lo out of 100..599";
    } else if (c->hc_status_hi < c->hc_status_lo || c->hc_status_hi > 599) {
        why = "hc_status_hi out of hc_status_lo..599";
    } else if (c->hc_healthy < 1 || c->hc_healthy > 100) {
        why = "hc_healthy out of 1..100";
    } else if (c->hc_unhealthy < 1 || c->hc_unhealthy > 100) {
        why = "hc_unhealthy out of 1..100";
    }
    if (!why) {
        if (c->od_consecutive > 1000) {
            why = "od_consecutive above 1000";
        } else if (!c->od_consecutive) {
            /* detection off: the encoder writes the other od_* fields as 0, the decoder
             * refuses anything else (check_canonical) */
        } else if (c->od_base_ms < 1000 || c->od_base_ms > 3600000) {
            why = "od_base_ms out of 1000..3600000";
        } else if (c->od_max_ms < c->od_base_ms || c->od_max_ms > 86400000) {
            why = "od_max_ms out of od_base_ms..86400000";
        } else if (c->od_max_percent > 100) {
            why = "od_max_percent above 100";
        }
    }
    if (!why && c->cb_max_connections > 1000000) why = "cb_max_connections above 1000000";
    if (!why && c->cb_max_pending > 1000000) why = "cb_max_pending above 1000000";
    if (!why && c->cb_max_requests > 1000000) why = "cb_max_requests above 1000000";
    if (!why && c->rb_percent > 1000) why = "rb_percent above 1000";
    if (!why && c->rb_min_per_sec > 100000) why = "rb_min_per_sec above 100000";
    if (!why && c->slow_start_ms > 3600000) why = "slow_start_ms above 3600000";
    if (!why) return 0;
    set_err(err, errlen, "cluster %u: %s", i, why);
    return -1;
}

/* A non-empty RFC 9110 token (a header name); lower: no upper-case letters either. */
static int valid_token(const char *s, int lower)
{
    if (!s || !*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c))
            continue;
        if (c >= 'A' && c <= 'Z' && !lower) continue;
        return 0;
    }
    return 1;
}

static int valid_redirect_status(uint16_t st)
{
    return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

/*
 * f with the fields its type does not use set to zero / "" / SNAPWIRE_NONE: what the encoder
 * writes, and what the decoder requires on the wire.
 */
static struct snapwire_filter filter_norm(const struct snapwire_filter *f)
{
    struct snapwire_filter n = {
        .type = f->type, .scheme = "", .hostname = "", .path = "", .cluster = SNAPWIRE_NONE};

    switch (f->type) {
    case SNAPWIRE_FILTER_REQUEST_HEADERS:
    case SNAPWIRE_FILTER_RESPONSE_HEADERS:
        n.first_edit = f->first_edit;
        n.edit_count = f->edit_count;
        break;
    case SNAPWIRE_FILTER_REDIRECT:
        n.scheme = nz(f->scheme);
        n.port = f->port;
        n.status = f->status;
        /* fall through - hostname and path as a rewrite */
    case SNAPWIRE_FILTER_REWRITE:
        n.hostname = nz(f->hostname);
        n.path_mod = f->path_mod;
        n.path = f->path_mod == SNAPWIRE_PATH_KEEP ? "" : nz(f->path);
        break;
    case SNAPWIRE_FILTER_MIRROR:
        n.cluster = f->cluster;
        n.mirror_permille = f->mirror_permille;
        break;
    }
    return n;
}

/* e as the encoder writes it: a REMOVE carries no value. */
static struct snapwire_hdr_edit hdr_edit_norm(const struct snapwire_hdr_edit *e)
{
    struct snapwire_hdr_edit n = {.op = e->op,
                                  .name = nz(e->name),
                                  .value = e->op == SNAPWIRE_HDR_REMOVE ? "" : nz(e->value)};
    return n;
}

/* The v4 route fields (Gateway routes), after the checks every route gets. */
static int check_route_v4(const struct snapwire_snapshot *s, const struct snapwire_route *r,
                          uint32_t i, const uint64_t *wsum, char *err, size_t errlen)
{
    if (r->method > SNAPWIRE_METHOD_MAX_) {
        set_err(err, errlen, "route %u: bad method %u", i, r->method);
        return -1;
    }
    if ((uint64_t)r->first_cond + r->cond_count > s->n_conds) {
        set_err(err, errlen, "route %u: conds [%u,+%u) out of range", i, r->first_cond,
                r->cond_count);
        return -1;
    }
    if ((uint64_t)r->first_backend + r->backend_count > s->n_backends) {
        set_err(err, errlen, "route %u: backends [%u,+%u) out of range", i, r->first_backend,
                r->backend_count);
        return -1;
    }
    if ((uint64_t)r->first_filter + r->filter_count > s->n_filters) {
        set_err(err, errlen, "route %u: filters [%u,+%u) out of range", i, r->first_filter,
                r->filter_count);
        return -1;
    }
    if (r->backend_count &&
        wsum[r->first_backend + r->backend_count] - wsum[r->first_backend] > UINT32_MAX) {
        set_err(err, errlen, "route %u: backend weights sum above 2^32-1", i);
        return -1;
    }
    if (r->retry_attempts > SNAPWIRE_MAX_RETRIES) {
        set_err(err, errlen, "route %u: retry attempts %u above %u", i, r->retry_attempts,
                SNAPWIRE_MAX_RETRIES);
        return -1;
    }
    if (r->retry_codes_hi >> 36) {
        set_err(err, errlen, "route %u: retry codes above 599", i);
        return -1;
    }
    return 0;
}

/* The v4 sections: conds, backends, filters, header edits (each record on its own). */
static int check_v4_sections(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    uint32_t i;

    for (i = 0; i < s->n_conds; i++) {
        const struct snapwire_cond *c = &s->conds[i];
        switch (c->kind) {
        case SNAPWIRE_COND_HEADER_EXACT:
        case SNAPWIRE_COND_HEADER_REGEX:
            if (!valid_token(c->name, 1)) {
                set_err(err, errlen, "cond %u: header name is not a lower-case token", i);
                return -1;
            }
            if (c->kind == SNAPWIRE_COND_HEADER_REGEX && !nz(c->value)[0]) {
                set_err(err, errlen, "cond %u: empty regex", i);
                return -1;
            }
            break;
        case SNAPWIRE_COND_QUERY_EXACT:
            if (!nz(c->name)[0]) {
                set_err(err, errlen, "cond %u: empty query parameter name", i);
                return -1;
            }
            break;
        default:
            set_err(err, errlen, "cond %u: bad kind %u", i, c->kind);
            return -1;
        }
    }
    for (i = 0; i < s->n_backends; i++) {
        const struct snapwire_backend *b = &s->backends[i];
        if (b->cluster != SNAPWIRE_NONE && b->cluster >= s->n_clusters) {
            set_err(err, errlen, "backend %u: cluster %u out of range", i, b->cluster);
            return -1;
        }
    }
    for (i = 0; i < s->n_filters; i++) {
        struct snapwire_filter f = filter_norm(&s->filters[i]);
        if (f.type < SNAPWIRE_FILTER_REQUEST_HEADERS || f.type > SNAPWIRE_FILTER_MIRROR) {
            set_err(err, errlen, "filter %u: bad type %u", i, f.type);
            return -1;
        }
        if ((uint64_t)f.first_edit + f.edit_count > s->n_hdr_edits) {
            set_err(err, errlen, "filter %u: edits [%u,+%u) out of range", i, f.first_edit,
                    f.edit_count);
            return -1;
        }
        if (f.type == SNAPWIRE_FILTER_REDIRECT && !valid_redirect_status(f.status)) {
            set_err(err, errlen, "filter %u: bad redirect status %u", i, f.status);
            return -1;
        }
        if (f.scheme[0] && strcmp(f.scheme, "http") != 0 && strcmp(f.scheme, "https") != 0) {
            set_err(err, errlen, "filter %u: bad scheme", i);
            return -1;
        }
        if (f.path_mod > SNAPWIRE_PATH_PREFIX) {
            set_err(err, errlen, "filter %u: bad path_mod %u", i, f.path_mod);
            return -1;
        }
        if (f.cluster != SNAPWIRE_NONE && f.cluster >= s->n_clusters) {
            set_err(err, errlen, "filter %u: mirror cluster %u out of range", i, f.cluster);
            return -1;
        }
        if (f.mirror_permille > 1000) {
            set_err(err, errlen, "filter %u: mirror permille %u above 1000", i, f.mirror_permille);
            return -1;
        }
    }
    for (i = 0; i < s->n_hdr_edits; i++) {
        const struct snapwire_hdr_edit *e = &s->hdr_edits[i];
        if (e->op < SNAPWIRE_HDR_SET || e->op > SNAPWIRE_HDR_REMOVE) {
            set_err(err, errlen, "hdr edit %u: bad op %u", i, e->op);
            return -1;
        }
        if (!valid_token(e->name, 0)) {
            set_err(err, errlen, "hdr edit %u: name is not a token", i);
            return -1;
        }
    }
    return 0;
}

/* A DNS name (RFC 1123 characters, lower case) or, with underscore, a SPIFFE trust domain:
 * non-empty labels of a-z 0-9 '-' ('_'), at most max bytes. */
static int valid_domain(const char *s, size_t max, int underscore)
{
    size_t n = strlen(s);

    if (n == 0 || n > max || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..")) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            (underscore && c == '_'))
            continue;
        return 0;
    }
    return 1;
}

/* An IP literal spelled as inet_ntop spells it, so that readers can compare text. */
static int canonical_ip(const char *s)
{
    unsigned char a[16];
    char back[INET6_ADDRSTRLEN];
    int af = strchr(s, ':') ? AF_INET6 : AF_INET;

    if (inet_pton(af, s, a) != 1 || !inet_ntop(af, a, back, sizeof(back))) return 0;
    return strcmp(s, back) == 0;
}

/*
 * uri is "spiffe://<td>/<path>" (SPIFFE ID spec): at most 2048 bytes, path segments
 * non-empty, not "." or "..", of letters, digits, '.', '-', '_'.
 */
static int valid_spiffe_id(const char *uri, const char *td)
{
    size_t scheme = strlen(SPIFFE_SCHEME), tl = strlen(td);
    const char *p, *seg;

    if (strlen(uri) > 2048 || strncmp(uri, SPIFFE_SCHEME, scheme) != 0) return 0;
    uri += scheme;
    if (strncmp(uri, td, tl) != 0 || uri[tl] != '/') return 0;
    for (seg = p = uri + tl + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (!*p) return 1;
            seg = p + 1;
        } else if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_') {
            return 0;
        }
    }
}

/* Order of mesh services: strcmp of the address text, then the port. */
static int mesh_service_cmp(const struct snapwire_mesh_service *a,
                            const struct snapwire_mesh_service *b)
{
    int c = strcmp(a->address, b->address);

    if (c) return c;
    return (a->port > b->port) - (a->port < b->port);
}

/* What is wrong with mesh service m on its own, or NULL. */
static const char *check_mesh_service(const struct snapwire_snapshot *s,
                                      const struct snapwire_mesh_service *m)
{
    uint32_t k;

    if (!*nz(m->ns) || !*nz(m->name)) return "empty namespace or name";
    if (!m->address || !canonical_ip(m->address))
        return "address is not an IP literal in canonical form";
    if (m->port == 0) return "port 0";
    if (m->cluster != SNAPWIRE_NONE && m->cluster >= s->n_clusters) return "cluster out of range";
    if (m->proto > SNAPWIRE_MESH_PROTO_MAX_) return "bad proto";
    if (m->mtls > 1) return "bad mtls flag";
    if (!m->mtls) return m->first_id || m->id_count ? "identities without mtls" : NULL;
    if (!m->id_count) return "mtls without identities";
    if ((uint64_t)m->first_id + m->id_count > s->n_mesh_ids) return "ids out of range";
    for (k = 1; k < m->id_count; k++)
        if (strcmp(nz(s->mesh_ids[m->first_id + k - 1].uri),
                   nz(s->mesh_ids[m->first_id + k].uri)) >= 0)
            return "ids not sorted or duplicate";
    return NULL;
}

/* The v7 mesh directory and the META fields that go with it (see snapwire.h). */
static int check_mesh(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    const char *td = nz(s->meta.trust_domain), *cd = nz(s->meta.cluster_domain), *why;
    uint32_t i;

    if (!*td) {
        if (!s->n_mesh_services && !s->n_mesh_ids) return 0;
        set_err(err, errlen, "meta: mesh records without a trust domain");
        return -1;
    }
    if (!valid_domain(td, 255, 1)) {
        set_err(err, errlen, "meta: trust domain is not a SPIFFE trust domain");
        return -1;
    }
    if (*cd && !valid_domain(cd, 253, 0)) {
        set_err(err, errlen, "meta: cluster domain is not a DNS name");
        return -1;
    }
    for (i = 0; i < s->n_mesh_ids; i++) {
        if (!valid_spiffe_id(nz(s->mesh_ids[i].uri), td)) {
            set_err(err, errlen, "mesh id %u: not a spiffe:// URI in the trust domain", i);
            return -1;
        }
    }
    for (i = 0; i < s->n_mesh_services; i++) {
        why = check_mesh_service(s, &s->mesh_services[i]);
        if (!why && i > 0 && mesh_service_cmp(&s->mesh_services[i - 1], &s->mesh_services[i]) >= 0)
            why = "not sorted by (address, port) or duplicate";
        if (why) {
            set_err(err, errlen, "mesh service %u: %s", i, why);
            return -1;
        }
    }
    return 0;
}

/* Order of principals inside a policy: kind, then strcmp of the value. */
static int principal_cmp(const struct snapwire_principal *a, const struct snapwire_principal *b)
{
    if (a->kind != b->kind) return (a->kind > b->kind) - (a->kind < b->kind);
    return strcmp(nz(a->value), nz(b->value));
}

/* Order of policies: target Service (ns, name), port, then source. */
static int authz_cmp(const struct snapwire_authz *a, const struct snapwire_authz *b)
{
    int c = strcmp(nz(a->ns), nz(b->ns));

    if (!c) c = strcmp(nz(a->name), nz(b->name));
    if (!c) c = (a->port > b->port) - (a->port < b->port);
    if (!c) c = strcmp(nz(a->source), nz(b->source));
    return c;
}

/* A namespace name: an RFC 1123 label (a-z, 0-9, '-', not at either end, 1..63 bytes). */
static int valid_label(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return 0;
    return valid_domain(s, 63, 0) && !strchr(s, '.');
}

/* What is wrong with principal p of a snapshot whose trust domain is td, or NULL. */
static const char *check_principal(const struct snapwire_principal *p, const char *td)
{
    const char *v = nz(p->value);

    switch (p->kind) {
    case SNAPWIRE_PRINCIPAL_IDENTITY:
        return valid_spiffe_id(v, td) ? NULL : "not a spiffe:// URI in the trust domain";
    case SNAPWIRE_PRINCIPAL_NAMESPACE:
        return valid_label(v) ? NULL : "not a namespace name";
    case SNAPWIRE_PRINCIPAL_AUTHENTICATED:
    case SNAPWIRE_PRINCIPAL_UNAUTHENTICATED:
        return *v ? "value set" : NULL;
    default:
        return "bad kind";
    }
}

/* What is wrong with policy a on its own, or NULL. */
static const char *check_authz(const struct snapwire_snapshot *s, const struct snapwire_authz *a)
{
    uint32_t k;

    if (!*nz(a->ns) || !*nz(a->name)) return "empty namespace or name";
    if (!*nz(a->source)) return "empty source";
    if (a->action != SNAPWIRE_AUTHZ_ALLOW && a->action != SNAPWIRE_AUTHZ_DENY) return "bad action";
    if (!a->principal_count) return "no principals";
    if ((uint64_t)a->first_principal + a->principal_count > s->n_principals)
        return "principals out of range";
    for (k = 1; k < a->principal_count; k++)
        if (principal_cmp(&s->principals[a->first_principal + k - 1],
                          &s->principals[a->first_principal + k]) >= 0)
            return "principals not sorted or duplicate";
    return NULL;
}

/* The v7 authorization records and META authz_default_deny (see snapwire.h). */
static int check_authz_sections(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    const char *td = nz(s->meta.trust_domain), *why;
    uint32_t i;

    if (!*td) {
        if (!s->n_authz && !s->n_principals && !s->meta.authz_default_deny) return 0;
        set_err(err, errlen, "meta: authorization records without a trust domain");
        return -1;
    }
    if (s->meta.authz_default_deny > 1) {
        set_err(err, errlen, "meta: bad authz_default_deny %u", s->meta.authz_default_deny);
        return -1;
    }
    for (i = 0; i < s->n_principals; i++) {
        why = check_principal(&s->principals[i], td);
        if (why) {
            set_err(err, errlen, "principal %u: %s", i, why);
            return -1;
        }
    }
    for (i = 0; i < s->n_authz; i++) {
        why = check_authz(s, &s->authz[i]);
        if (!why && i > 0 && authz_cmp(&s->authz[i - 1], &s->authz[i]) >= 0)
            why = "not sorted by (ns, name, port, source) or duplicate";
        if (why) {
            set_err(err, errlen, "authz %u: %s", i, why);
            return -1;
        }
    }
    return 0;
}

/*
 * Consistency rules shared by encoder and decoder, applied to the in-memory form. Returns 0 or
 * -1 with err filled.
 */
static int check_snapshot(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    uint64_t *wsum;
    uint32_t i;

    if (s->meta.default_cluster != SNAPWIRE_NONE && s->meta.default_cluster >= s->n_clusters) {
        set_err(err, errlen, "meta: default cluster %u out of range", s->meta.default_cluster);
        return -1;
    }
    if (s->meta.default_cert != SNAPWIRE_NONE &&
        (s->meta.default_cert >= s->n_certs || !cert_has_key(s, s->meta.default_cert))) {
        set_err(err, errlen, "meta: default cert %u is not a certificate with a key",
                s->meta.default_cert);
        return -1;
    }
    for (i = 0; i < s->n_certs; i++) {
        const struct snapwire_cert *c = &s->certs[i];
        if (!c->chain_pem || !c->chain_pem[0]) {
            set_err(err, errlen, "cert %u: empty certificate", i);
            return -1;
        }
    }
    for (i = 0; i < s->n_tls_hosts; i++) {
        const struct snapwire_tls_host *h = &s->tls_hosts[i];
        if (!h->host || !h->host[0]) {
            set_err(err, errlen, "tls host %u: empty name", i);
            return -1;
        }
        if (i > 0 && strcmp(s->tls_hosts[i - 1].host, h->host) >= 0) {
            set_err(err, errlen, "tls host %u: not sorted or duplicate", i);
            return -1;
        }
        if (h->cert >= s->n_certs || !cert_has_key(s, h->cert) ||
            (h->cert2 != SNAPWIRE_NONE &&
             (h->cert2 >= s->n_certs || !cert_has_key(s, h->cert2) || h->cert2 == h->cert))) {
            set_err(err, errlen, "tls host %u: cert out of range or without a key", i);
            return -1;
        }
        if (h->client_verify > SNAPWIRE_CLIENT_VERIFY_OPTIONAL) {
            set_err(err, errlen, "tls host %u: bad client_verify %u", i, h->client_verify);
            return -1;
        }
        if (h->client_verify != SNAPWIRE_CLIENT_VERIFY_OFF &&
            (h->client_ca >= s->n_certs || cert_has_key(s, h->client_ca))) {
            set_err(err, errlen, "tls host %u: client CA is not a CA bundle", i);
            return -1;
        }
    }
    for (i = 0; i < s->n_listeners; i++) {
        const struct snapwire_listener *l = &s->listeners[i];
        if (l->protocol != SNAPWIRE_PROTO_HTTP && l->protocol != SNAPWIRE_PROTO_HTTPS) {
            set_err(err, errlen, "listener %u: bad protocol %u", i, l->protocol);
            return -1;
        }
        if (l->address && *l->address && !valid_ip(l->address)) {
            set_err(err, errlen, "listener %u: bad address", i);
            return -1;
        }
    }
    for (i = 0; i < s->n_vhosts; i++) {
        const struct snapwire_vhost *v = &s->vhosts[i];
        if ((uint64_t)v->first_route + v->route_count > s->n_routes) {
            set_err(err, errlen, "vhost %u: routes [%u,+%u) out of range", i, v->first_route,
                    v->route_count);
            return -1;
        }
    }
    if (check_v4_sections(s, err, errlen) < 0) return -1;
    if (check_mesh(s, err, errlen) < 0 || check_authz_sections(s, err, errlen) < 0) return -1;
    /* wsum[k]: the sum of the first k backend weights, so that a route's sum costs O(1)
     * however many routes share a range */
    wsum = malloc(((size_t)s->n_backends + 1) * sizeof(*wsum));
    if (!wsum) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    wsum[0] = 0;
    for (i = 0; i < s->n_backends; i++)
        wsum[i + 1] = wsum[i] + s->backends[i].weight;
    for (i = 0; i < s->n_routes; i++) {
        const struct snapwire_route *r = &s->routes[i];
        if (r->match == SNAPWIRE_MATCH_REGEX) {
            if (!nz(r->path)[0]) {
                set_err(err, errlen, "route %u: empty regex", i);
                goto fail;
            }
        } else if (r->match != SNAPWIRE_MATCH_EXACT && r->match != SNAPWIRE_MATCH_PREFIX) {
            set_err(err, errlen, "route %u: bad match type %u", i, r->match);
            goto fail;
        } else if (nz(r->path)[0] != '/') {
            set_err(err, errlen, "route %u: path must start with '/'", i);
            goto fail;
        }
        if (r->flags & ~(SNAPWIRE_ROUTE_SSL_REDIRECT | SNAPWIRE_ROUTE_WILD_ANY |
                         SNAPWIRE_ROUTE_PLAIN_ONLY | SNAPWIRE_ROUTE_TLS_ONLY)) {
            set_err(err, errlen, "route %u: unknown flags 0x%x", i, r->flags);
            goto fail;
        }
        if ((r->flags & SNAPWIRE_ROUTE_PLAIN_ONLY) && (r->flags & SNAPWIRE_ROUTE_TLS_ONLY)) {
            set_err(err, errlen, "route %u: both plain-only and tls-only", i);
            goto fail;
        }
        if (r->cluster != SNAPWIRE_NONE && r->cluster >= s->n_clusters) {
            set_err(err, errlen, "route %u: cluster %u out of range", i, r->cluster);
            goto fail;
        }
        if (check_route_v4(s, r, i, wsum, err, errlen) < 0) goto fail;
    }
    free(wsum);
    for (i = 0; i < s->n_clusters; i++) {
        const struct snapwire_cluster *c = &s->clusters[i];
        if (c->lb < SNAPWIRE_LB_ROUND_ROBIN || c->lb > SNAPWIRE_LB_MAGLEV) {
            set_err(err, errlen, "cluster %u: bad lb policy %u", i, c->lb);
            return -1;
        }
        if (c->hash_on > SNAPWIRE_HASH_PATH) {
            set_err(err, errlen, "cluster %u: bad hash_on %u", i, c->hash_on);
            return -1;
        }
        if (c->hash_on == SNAPWIRE_HASH_HEADER || c->hash_on == SNAPWIRE_HASH_COOKIE) {
            if (!valid_token(c->hash_name, c->hash_on == SNAPWIRE_HASH_HEADER)) {
                set_err(err, errlen, "cluster %u: hash_name is not a %stoken", i,
                        c->hash_on == SNAPWIRE_HASH_HEADER ? "lower-case " : "");
                return -1;
            }
        } else if (*nz(c->hash_name)) {
            set_err(err, errlen, "cluster %u: hash_name set without header or cookie hashing", i);
            return -1;
        }
        /* a cookie name is an RFC 6265 token: the same character set as an RFC 9110 token */
        if (*nz(c->affinity_cookie) && !valid_token(c->affinity_cookie, 0)) {
            set_err(err, errlen, "cluster %u: affinity cookie name is not a token", i);
            return -1;
        }
        if ((uint64_t)c->first_endpoint + c->endpoint_count > s->n_endpoints) {
            set_err(err, errlen, "cluster %u: endpoints [%u,+%u) out of range", i,
                    c->first_endpoint, c->endpoint_count);
            return -1;
        }
        if (check_cluster_v6(c, i, err, errlen) < 0) return -1;
        if (c->tls > 1) {
            set_err(err, errlen, "cluster %u: bad tls flag", i);
            return -1;
        }
        if (c->tls && c->tls_ca != SNAPWIRE_NONE &&
            (c->tls_ca >= s->n_certs || cert_has_key(s, c->tls_ca))) {
            set_err(err, errlen, "cluster %u: tls CA is not a CA bundle", i);
            return -1;
        }
    }
    for (i = 0; i < s->n_endpoints; i++) {
        const struct snapwire_endpoint *e = &s->endpoints[i];
        if (!e->address || !valid_ip(e->address)) {
            set_err(err, errlen, "endpoint %u: address is not an IP literal", i);
            return -1;
        }
        if (e->port == 0) {
            set_err(err, errlen, "endpoint %u: port 0", i);
            return -1;
        }
        if (e->ready > 1) {
            set_err(err, errlen, "endpoint %u: bad ready flag", i);
            return -1;
        }
        if (e->weight < 1 || e->weight > SNAPWIRE_MAX_WEIGHT) {
            set_err(err, errlen, "endpoint %u: weight %u out of 1..%u", i, e->weight,
                    SNAPWIRE_MAX_WEIGHT);
            return -1;
        }
    }
    return 0;
fail:
    free(wsum);
    return -1;
}

/* ---- encoder ---- */

struct strtab {
    uint8_t *data;
    size_t len, cap;
    /* open-addressing dedup index: slot holds offset+1 (0 = empty) */
    uint32_t *slots_off, *slots_len;
    size_t nslots, used;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int strtab_grow_index(struct strtab *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 256;
    uint32_t *off = calloc(n, sizeof(*off)), *len = calloc(n, sizeof(*len));

    if (!off || !len) {
        free(off);
        free(len);
        return -1;
    }
    for (size_t i = 0; i < t->nslots; i++) {
        if (!t->slots_off[i]) continue;
        const char *s = (const char *)t->data + t->slots_off[i] - 1;
        size_t j = fnv1a(s, t->slots_len[i]) & (n - 1);
        while (off[j])
            j = (j + 1) & (n - 1);
        off[j] = t->slots_off[i];
        len[j] = t->slots_len[i];
    }
    free(t->slots_off);
    free(t->slots_len);
    t->slots_off = off;
    t->slots_len = len;
    t->nslots = n;
    return 0;
}

/*
 * Adds s (deduplicated); writes its {offset,length} reference at ref. pem allows PEM text (line
 * breaks, up to MAX_PEM). Returns 0 or -1.
 */
static int strtab_put(struct strtab *t, const char *s, uint8_t *ref, int pem, char *err,
                      size_t errlen)
{
    size_t n = s ? strlen(s) : 0;
    size_t j;

    if (n > (pem ? MAX_PEM : MAX_STRING) ||
        !(pem ? valid_pem(s ? s : "", n) : valid_text(s ? s : "", n))) {
        set_err(err, errlen, "%s too long or with control characters", pem ? "PEM" : "string");
        return -1;
    }
    if (n == 0) {
        put32(ref, 0);
        put32(ref + 4, 0);
        return 0;
    }
    if ((t->used + 1) * 2 > t->nslots && strtab_grow_index(t) < 0) goto oom;
    j = fnv1a(s, n) & (t->nslots - 1);
    for (; t->slots_off[j]; j = (j + 1) & (t->nslots - 1)) {
        if (t->slots_len[j] == n && memcmp(t->data + t->slots_off[j] - 1, s, n) == 0) {
            put32(ref, t->slots_off[j] - 1);
            put32(ref + 4, (uint32_t)n);
            return 0;
        }
    }
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n)
            cap *= 2;
        uint8_t *d = realloc(t->data, cap);
        if (!d) goto oom;
        t->data = d;
        t->cap = cap;
    }
    if (t->len + n > SNAPWIRE_MAX_FRAME) {
        set_err(err, errlen, "string table too large");
        return -1;
    }
    memcpy(t->data + t->len, s, n);
    t->slots_off[j] = (uint32_t)t->len + 1;
    t->slots_len[j] = (uint32_t)n;
    t->used++;
    put32(ref, (uint32_t)t->len);
    put32(ref + 4, (uint32_t)n);
    t->len += n;
    return 0;
oom:
    set_err(err, errlen, "out of memory");
    return -1;
}

static int strtab_add(struct strtab *t, const char *s, uint8_t *ref, char *err, size_t errlen)
{
    return strtab_put(t, s, ref, 0, err, errlen);
}

/* v6 cluster fields into record p (see REC_CLUSTER); -1 when the string table is full. */
static int encode_cluster_v6(struct strtab *st, const struct snapwire_cluster *c, uint8_t *p,
                             char *err, size_t errlen)
{
    /* without checks (hc_path "") or detection (od_consecutive 0) the settings of that
     * feature are written as 0 / "", whatever the caller left there */
    int hc = *nz(c->hc_path) != '\0', od = c->od_consecutive != 0;

    if (strtab_add(st, nz(c->hc_path), p + 48, err, errlen) < 0 ||
        strtab_add(st, hc ? nz(c->hc_host) : "", p + 56, err, errlen) < 0)
        return -1;
    if (hc) {
        put32(p + 64, c->hc_interval_ms);
        put32(p + 68, c->hc_timeout_ms);
        put16(p + 72, c->hc_status_lo);
        put16(p + 74, c->hc_status_hi);
        p[76] = c->hc_healthy;
        p[77] = c->hc_unhealthy;
    }
    if (od) {
        p[78] = c->od_max_percent;
        put32(p + 80, c->od_consecutive);
        put32(p + 84, c->od_base_ms);
        put32(p + 88, c->od_max_ms);
    }
    put32(p + 92, c->cb_max_connections);
    put32(p + 96, c->cb_max_pending);
    put32(p + 100, c->cb_max_requests);
    put16(p + 104, c->rb_percent);
    put32(p + 108, c->rb_min_per_sec);
    put32(p + 112, c->slow_start_ms);
    return 0;
}

static void strtab_free(struct strtab *t)
{
    free(t->data);
    free(t->slots_off);
    free(t->slots_len);
}

int snapwire_encode(const struct snapwire_snapshot *s, uint64_t generation, uint8_t **out,
                    size_t *out_len, char *err, size_t errlen)
{
    enum { NSEC_MAX = 17, NSEC_PLAIN = 13 };
    struct strtab st = {0};
    uint8_t *recs[NSEC_MAX] = {0};
    size_t rlen[NSEC_MAX] = {0};
    static const uint32_t types[NSEC_MAX] = {
        SNAPWIRE_SEC_STRINGS,         SNAPWIRE_SEC_META,
        SNAPWIRE_SEC_LISTENERS,       SNAPWIRE_SEC_VHOSTS,
        SNAPWIRE_SEC_ROUTES,          SNAPWIRE_SEC_CLUSTERS,
        SNAPWIRE_SEC_ENDPOINTS,       SNAPWIRE_SEC_CERTS,
        SNAPWIRE_SEC_TLS_HOSTS,       SNAPWIRE_SEC_MATCH_CONDS,
        SNAPWIRE_SEC_BACKENDS,        SNAPWIRE_SEC_FILTERS,
        SNAPWIRE_SEC_HDR_EDITS,       SNAPWIRE_SEC_MESH_SERVICES,
        SNAPWIRE_SEC_MESH_IDS,        SNAPWIRE_SEC_AUTHZ,
        SNAPWIRE_SEC_AUTHZ_PRINCIPALS};
    /* a snapshot without a trust domain is written exactly as v6 wrote it (snapwire.h) */
    int mesh = *nz(s->meta.trust_domain) != '\0', nsec = mesh ? NSEC_MAX : NSEC_PLAIN;
    uint8_t *frame = NULL, *p;
    uint64_t payload, off;
    uint32_t i;
    int k;

    if (check_snapshot(s, err, errlen) < 0) return -1;
    rlen[1] = mesh ? REC_META_MESH : REC_META;
    rlen[2] = (size_t)s->n_listeners * REC_LISTENER;
    rlen[3] = (size_t)s->n_vhosts * REC_VHOST;
    rlen[4] = (size_t)s->n_routes * REC_ROUTE;
    rlen[5] = (size_t)s->n_clusters * REC_CLUSTER;
    rlen[6] = (size_t)s->n_endpoints * REC_ENDPOINT;
    rlen[7] = (size_t)s->n_certs * REC_CERT;
    rlen[8] = (size_t)s->n_tls_hosts * REC_TLS_HOST;
    rlen[9] = (size_t)s->n_conds * REC_COND;
    rlen[10] = (size_t)s->n_backends * REC_BACKEND;
    rlen[11] = (size_t)s->n_filters * REC_FILTER;
    rlen[12] = (size_t)s->n_hdr_edits * REC_HDR_EDIT;
    rlen[13] = (size_t)s->n_mesh_services * REC_MESH_SERVICE;
    rlen[14] = (size_t)s->n_mesh_ids * REC_MESH_ID;
    rlen[15] = (size_t)s->n_authz * REC_AUTHZ;
    rlen[16] = (size_t)s->n_principals * REC_PRINCIPAL;
    for (k = 1; k < nsec; k++) {
        if (rlen[k] > SNAPWIRE_MAX_FRAME) {
            set_err(err, errlen, "snapshot too large");
            goto fail;
        }
        recs[k] = calloc(1, rlen[k] ? rlen[k] : 1);
        if (!recs[k]) goto oom;
    }

    p = recs[1];
    put32(p, s->meta.default_cluster);
    if (strtab_add(&st, s->meta.source, p + 4, err, errlen) < 0) goto fail;
    put64(p + 12, s->meta.default_max_body);
    put32(p + 20, s->meta.default_cert);
    if (mesh &&
        (strtab_add(&st, s->meta.trust_domain, p + 24, err, errlen) < 0 ||
         strtab_add(&st,
                    *nz(s->meta.cluster_domain) ? s->meta.cluster_domain : CLUSTER_DOMAIN_DEFAULT,
                    p + 32, err, errlen) < 0))
        goto fail;
    if (mesh) p[40] = s->meta.authz_default_deny;
    for (i = 0; i < s->n_listeners; i++) {
        p = recs[2] + (size_t)i * REC_LISTENER;
        if (strtab_add(&st, s->listeners[i].name, p, err, errlen) < 0 ||
            strtab_add(&st, s->listeners[i].address, p + 8, err, errlen) < 0)
            goto fail;
        put16(p + 16, s->listeners[i].port);
        p[18] = s->listeners[i].protocol;
    }
    for (i = 0; i < s->n_vhosts; i++) {
        p = recs[3] + (size_t)i * REC_VHOST;
        if (strtab_add(&st, s->vhosts[i].host, p, err, errlen) < 0) goto fail;
        put32(p + 8, s->vhosts[i].first_route);
        put32(p + 12, s->vhosts[i].route_count);
    }
    for (i = 0; i < s->n_routes; i++) {
        const struct snapwire_route *r = &s->routes[i];
        p = recs[4] + (size_t)i * REC_ROUTE;
        if (strtab_add(&st, r->path, p, err, errlen) < 0 ||
            strtab_add(&st, r->source, p + 16, err, errlen) < 0)
            goto fail;
        put32(p + 8, r->cluster);
        p[12] = r->match;
        p[13] = r->flags;
        p[14] = r->method;
        p[15] = r->retry_attempts;
        put64(p + 24, r->max_body);
        if (strtab_add(&st, r->hsts, p + 32, err, errlen) < 0) goto fail;
        put32(p + 40, r->first_cond);
        put32(p + 44, r->cond_count);
        put32(p + 48, r->first_backend);
        put32(p + 52, r->backend_count);
        put32(p + 56, r->first_filter);
        put32(p + 60, r->filter_count);
        put32(p + 64, r->request_timeout_ms);
        put32(p + 68, r->backend_timeout_ms);
        put64(p + 72, r->retry_codes_lo);
        put64(p + 80, r->retry_codes_hi);
        put32(p + 88, r->retry_backoff_ms);
    }
    for (i = 0; i < s->n_clusters; i++) {
        p = recs[5] + (size_t)i * REC_CLUSTER;
        if (strtab_add(&st, s->clusters[i].name, p, err, errlen) < 0) goto fail;
        put32(p + 8, s->clusters[i].first_endpoint);
        put32(p + 12, s->clusters[i].endpoint_count);
        p[16] = s->clusters[i].lb;
        /* a plain cluster's TLS fields are written as "none", whatever the caller left there */
        p[17] = s->clusters[i].tls;
        if (strtab_add(&st, s->clusters[i].tls ? s->clusters[i].tls_sni : "", p + 20, err, errlen) <
            0)
            goto fail;
        put32(p + 28, s->clusters[i].tls ? s->clusters[i].tls_ca : SNAPWIRE_NONE);
        p[18] = s->clusters[i].hash_on;
        if (strtab_add(&st, nz(s->clusters[i].hash_name), p + 32, err, errlen) < 0 ||
            strtab_add(&st, nz(s->clusters[i].affinity_cookie), p + 40, err, errlen) < 0)
            goto fail;
        if (encode_cluster_v6(&st, &s->clusters[i], p, err, errlen) < 0) goto fail;
    }
    for (i = 0; i < s->n_endpoints; i++) {
        p = recs[6] + (size_t)i * REC_ENDPOINT;
        if (strtab_add(&st, s->endpoints[i].address, p, err, errlen) < 0) goto fail;
        put16(p + 8, s->endpoints[i].port);
        p[10] = s->endpoints[i].ready;
        put32(p + 12, s->endpoints[i].weight);
    }
    for (i = 0; i < s->n_certs; i++) {
        const struct snapwire_cert *c = &s->certs[i];
        p = recs[7] + (size_t)i * REC_CERT;
        if (strtab_add(&st, c->name, p, err, errlen) < 0 ||
            strtab_put(&st, c->chain_pem, p + 8, 1, err, errlen) < 0 ||
            strtab_put(&st, c->key_pem, p + 16, 1, err, errlen) < 0 ||
            strtab_add(&st, c->fingerprint, p + 24, err, errlen) < 0)
            goto fail;
        put64(p + 32, c->not_after);
    }
    for (i = 0; i < s->n_tls_hosts; i++) {
        const struct snapwire_tls_host *h = &s->tls_hosts[i];
        p = recs[8] + (size_t)i * REC_TLS_HOST;
        if (strtab_add(&st, h->host, p, err, errlen) < 0) goto fail;
        put32(p + 8, h->cert);
        put32(p + 12, h->cert2);
        put32(p + 16, h->client_verify ? h->client_ca : SNAPWIRE_NONE);
        p[20] = h->client_verify;
    }
    for (i = 0; i < s->n_conds; i++) {
        const struct snapwire_cond *c = &s->conds[i];
        p = recs[9] + (size_t)i * REC_COND;
        if (strtab_add(&st, c->name, p, err, errlen) < 0 ||
            strtab_add(&st, c->value, p + 8, err, errlen) < 0)
            goto fail;
        p[16] = c->kind;
    }
    for (i = 0; i < s->n_backends; i++) {
        p = recs[10] + (size_t)i * REC_BACKEND;
        put32(p, s->backends[i].cluster);
        put32(p + 4, s->backends[i].weight);
    }
    for (i = 0; i < s->n_filters; i++) {
        /* only the fields of the filter's type go out; the others as zero / "" / NONE */
        struct snapwire_filter f = filter_norm(&s->filters[i]);
        p = recs[11] + (size_t)i * REC_FILTER;
        if (strtab_add(&st, f.scheme, p, err, errlen) < 0 ||
            strtab_add(&st, f.hostname, p + 8, err, errlen) < 0 ||
            strtab_add(&st, f.path, p + 16, err, errlen) < 0)
            goto fail;
        put32(p + 24, f.first_edit);
        put32(p + 28, f.edit_count);
        put32(p + 32, f.cluster);
        put32(p + 36, f.mirror_permille);
        put16(p + 40, f.port);
        put16(p + 42, f.status);
        p[44] = f.type;
        p[45] = f.path_mod;
    }
    for (i = 0; i < s->n_hdr_edits; i++) {
        struct snapwire_hdr_edit e = hdr_edit_norm(&s->hdr_edits[i]);
        p = recs[12] + (size_t)i * REC_HDR_EDIT;
        if (strtab_add(&st, e.name, p, err, errlen) < 0 ||
            strtab_add(&st, e.value, p + 8, err, errlen) < 0)
            goto fail;
        p[16] = e.op;
    }
    for (i = 0; i < s->n_mesh_services; i++) {
        const struct snapwire_mesh_service *m = &s->mesh_services[i];
        p = recs[13] + (size_t)i * REC_MESH_SERVICE;
        if (strtab_add(&st, m->ns, p, err, errlen) < 0 ||
            strtab_add(&st, m->name, p + 8, err, errlen) < 0 ||
            strtab_add(&st, m->address, p + 16, err, errlen) < 0)
            goto fail;
        put32(p + 24, m->cluster);
        put32(p + 28, m->first_id);
        put32(p + 32, m->id_count);
        put16(p + 36, m->port);
        p[38] = m->proto;
        p[39] = m->mtls;
    }
    for (i = 0; i < s->n_mesh_ids; i++)
        if (strtab_add(&st, s->mesh_ids[i].uri, recs[14] + (size_t)i * REC_MESH_ID, err, errlen) <
            0)
            goto fail;
    for (i = 0; i < s->n_authz; i++) {
        const struct snapwire_authz *a = &s->authz[i];
        p = recs[15] + (size_t)i * REC_AUTHZ;
        if (strtab_add(&st, a->ns, p, err, errlen) < 0 ||
            strtab_add(&st, a->name, p + 8, err, errlen) < 0 ||
            strtab_add(&st, a->source, p + 16, err, errlen) < 0)
            goto fail;
        put32(p + 24, a->first_principal);
        put32(p + 28, a->principal_count);
        put16(p + 32, a->port);
        p[34] = a->action;
    }
    for (i = 0; i < s->n_principals; i++) {
        p = recs[16] + (size_t)i * REC_PRINCIPAL;
        if (strtab_add(&st, s->principals[i].value, p, err, errlen) < 0) goto fail;
        p[8] = s->principals[i].kind;
    }
    recs[0] = st.data;
    rlen[0] = st.len;

    payload = (uint64_t)nsec * SECTION_ENTRY;
    for (k = 0; k < nsec; k++)
        payload += rlen[k];
    if (payload + SNAPWIRE_HEADER_SIZE > SNAPWIRE_MAX_FRAME) {
        set_err(err, errlen, "snapshot too large (%llu bytes)", (unsigned long long)payload);
        goto fail;
    }
    frame = malloc(SNAPWIRE_HEADER_SIZE + payload);
    if (!frame) goto oom;
    p = frame + SNAPWIRE_HEADER_SIZE;
    off = (uint64_t)nsec * SECTION_ENTRY;
    for (k = 0; k < nsec; k++) {
        put32(p + k * SECTION_ENTRY, types[k]);
        put32(p + k * SECTION_ENTRY + 4, (uint32_t)off);
        put32(p + k * SECTION_ENTRY + 8, (uint32_t)rlen[k]);
        if (rlen[k]) memcpy(p + off, recs[k], rlen[k]);
        off += rlen[k];
    }
    put32(frame, SNAPWIRE_MAGIC);
    put16(frame + 4, SNAPWIRE_VERSION);
    put16(frame + 6, SNAPWIRE_HEADER_SIZE);
    put64(frame + 8, generation);
    put32(frame + 16, (uint32_t)payload);
    put32(frame + 20, (uint32_t)crc32(0L, p, (uInt)payload));
    put32(frame + 24, (uint32_t)nsec);
    put32(frame + 28, 0);

    for (k = 1; k < NSEC_MAX; k++)
        free(recs[k]);
    strtab_free(&st);
    *out = frame;
    *out_len = SNAPWIRE_HEADER_SIZE + payload;
    return 0;
oom:
    set_err(err, errlen, "out of memory");
fail:
    for (k = 1; k < NSEC_MAX; k++)
        free(recs[k]);
    strtab_free(&st);
    free(frame);
    return -1;
}

/* ---- decoder ---- */

long snapwire_frame_size(const void *buf, size_t len, char *err, size_t errlen)
{
    const uint8_t *p = buf;
    uint32_t payload;

    if (len < SNAPWIRE_HEADER_SIZE) return -2;
    if (get32(p) != SNAPWIRE_MAGIC) {
        set_err(err, errlen, "bad magic");
        return -1;
    }
    if (get16(p + 4) != SNAPWIRE_VERSION) {
        set_err(err, errlen, "unsupported version %u", get16(p + 4));
        return -1;
    }
    if (get16(p + 6) != SNAPWIRE_HEADER_SIZE) {
        set_err(err, errlen, "bad header size %u", get16(p + 6));
        return -1;
    }
    payload = get32(p + 16);
    if ((uint64_t)payload + SNAPWIRE_HEADER_SIZE > SNAPWIRE_MAX_FRAME) {
        set_err(err, errlen, "frame too large (%u bytes)", payload);
        return -1;
    }
    return (long)payload + SNAPWIRE_HEADER_SIZE;
}

uint64_t snapwire_frame_generation(const void *buf)
{
    return get64((const uint8_t *)buf + 8);
}

struct section {
    const uint8_t *p;
    uint32_t len;
    int present;
};

struct reader {
    const uint8_t *strings;
    uint32_t strings_len;
    char *pool;     /* second pass: where copied strings go */
    size_t pool_sz; /* first pass: bytes needed */
    char *err;
    size_t errlen;
};

/*
 * Checks the string reference at ref (PEM text when pem); in the second pass copies it and
 * sets *out.
 */
static int read_str(struct reader *r, const uint8_t *ref, const char **out, const char *what,
                    int pem)
{
    uint32_t off = get32(ref), len = get32(ref + 4);

    if ((uint64_t)off + len > r->strings_len || len > (pem ? MAX_PEM : MAX_STRING)) {
        set_err(r->err, r->errlen, "%s: string reference out of bounds", what);
        return -1;
    }
    if (!(pem ? valid_pem : valid_text)((const char *)r->strings + off, len)) {
        set_err(r->err, r->errlen, "%s: string has control characters", what);
        return -1;
    }
    if (!r->pool) {
        r->pool_sz += (size_t)len + 1;
        return 0;
    }
    memcpy(r->pool, r->strings + off, len);
    r->pool[len] = '\0';
    *out = r->pool;
    r->pool += len + 1;
    return 0;
}

static int zero_pad(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/*
 * The first v6 field of c that a switched-off feature leaves set (the encoder writes them as
 * 0 / ""), or NULL: without hc_path every other hc_* field, with od_consecutive 0 every
 * other od_* field.
 */
static const char *cluster_stray_field(const struct snapwire_cluster *c)
{
    if (!*nz(c->hc_path)) {
        if (*nz(c->hc_host)) return "hc_host set without hc_path";
        if (c->hc_interval_ms) return "hc_interval_ms set without hc_path";
        if (c->hc_timeout_ms) return "hc_timeout_ms set without hc_path";
        if (c->hc_status_lo) return "hc_status_lo set without hc_path";
        if (c->hc_status_hi) return "hc_status_hi set without hc_path";
        if (c->hc_healthy) return "hc_healthy set without hc_path";
        if (c->hc_unhealthy) return "hc_unhealthy set without hc_path";
    }
    if (!c->od_consecutive) {
        if (c->od_base_ms) return "od_base_ms set with od_consecutive 0";
        if (c->od_max_ms) return "od_max_ms set with od_consecutive 0";
        if (c->od_max_percent) return "od_max_percent set with od_consecutive 0";
    }
    return NULL;
}

/*
 * Decoder only: the fields a filter's type does not use are zero / "" / NONE, a REMOVE
 * edit has no value and a cluster's switched-off health check / outlier settings are zero,
 * as the encoder writes them (so a decoded filter never carries a stray index, and
 * decode(encode(x)) == x for a decoded x). Runs after check_snapshot (types and ops are
 * known).
 */
static int check_canonical(const struct snapwire_snapshot *s, char *err, size_t errlen)
{
    uint32_t i;

    for (i = 0; i < s->n_clusters; i++) {
        const char *why = cluster_stray_field(&s->clusters[i]);
        if (why) {
            set_err(err, errlen, "cluster %u: %s", i, why);
            return -1;
        }
    }

    for (i = 0; i < s->n_filters; i++) {
        const struct snapwire_filter *f = &s->filters[i];
        struct snapwire_filter n = filter_norm(f);
        if (f->first_edit != n.first_edit || f->edit_count != n.edit_count ||
            strcmp(f->scheme, n.scheme) != 0 || strcmp(f->hostname, n.hostname) != 0 ||
            f->port != n.port || f->status != n.status || f->path_mod != n.path_mod ||
            strcmp(f->path, n.path) != 0 || f->cluster != n.cluster ||
            f->mirror_permille != n.mirror_permille) {
            set_err(err, errlen, "filter %u: field not used by type %u is set", i, f->type);
            return -1;
        }
    }
    for (i = 0; i < s->n_hdr_edits; i++) {
        if (s->hdr_edits[i].op == SNAPWIRE_HDR_REMOVE && s->hdr_edits[i].value[0]) {
            set_err(err, errlen, "hdr edit %u: remove with a value", i);
            return -1;
        }
    }
    return 0;
}

/*
 * One pass over the records. With r->pool NULL it only validates and sizes strings; with a
 * pool it fills s (whose arrays are already allocated).
 */
static int read_records(struct reader *r, const struct section *sec, struct snapwire_snapshot *s)
{
    const char *dummy;
    uint32_t i;
    char what[48];
    int fill = r->pool != NULL;

#define STRX(pem, ref, dst, ...)                                                                   \
    do {                                                                                           \
        snprintf(what, sizeof(what), __VA_ARGS__);                                                 \
        if (read_str(r, ref, fill ? (dst) : &dummy, what, pem) < 0) return -1;                     \
    } while (0)
#define STR(ref, dst, ...) STRX(0, ref, dst, __VA_ARGS__)
#define PEM(ref, dst, ...) STRX(1, ref, dst, __VA_ARGS__)

    if (sec[SNAPWIRE_SEC_META].present && sec[SNAPWIRE_SEC_META].len) {
        const uint8_t *p = sec[SNAPWIRE_SEC_META].p;
        STR(p + 4, &s->meta.source, "meta");
        if (fill) {
            s->meta.default_cluster = get32(p);
            s->meta.default_max_body = get64(p + 12);
            s->meta.default_cert = get32(p + 20);
            s->meta.trust_domain = "";
            s->meta.cluster_domain = CLUSTER_DOMAIN_DEFAULT;
        }
        if (sec[SNAPWIRE_SEC_META].len == REC_META_MESH) {
            STR(p + 24, &s->meta.trust_domain, "meta trust_domain");
            STR(p + 32, &s->meta.cluster_domain, "meta cluster_domain");
            if (!zero_pad(p + 41, 7)) {
                set_err(r->err, r->errlen, "meta: nonzero padding");
                return -1;
            }
            if (fill) s->meta.authz_default_deny = p[40];
        }
    } else if (fill) {
        s->meta.default_cluster = SNAPWIRE_NONE;
        s->meta.source = "";
        s->meta.default_max_body = SNAPWIRE_BODY_DEFAULT;
        s->meta.default_cert = SNAPWIRE_NONE;
        s->meta.trust_domain = "";
        s->meta.cluster_domain = CLUSTER_DOMAIN_DEFAULT;
    }
    for (i = 0; i < s->n_listeners; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_LISTENERS].p + (size_t)i * REC_LISTENER;
        STR(p, &s->listeners[i].name, "listener %u name", i);
        STR(p + 8, &s->listeners[i].address, "listener %u address", i);
        if (!zero_pad(p + 19, 1)) {
            set_err(r->err, r->errlen, "listener %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            s->listeners[i].port = get16(p + 16);
            s->listeners[i].protocol = p[18];
        }
    }
    for (i = 0; i < s->n_vhosts; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_VHOSTS].p + (size_t)i * REC_VHOST;
        STR(p, &s->vhosts[i].host, "vhost %u host", i);
        if (fill) {
            s->vhosts[i].first_route = get32(p + 8);
            s->vhosts[i].route_count = get32(p + 12);
        }
    }
    for (i = 0; i < s->n_routes; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_ROUTES].p + (size_t)i * REC_ROUTE;
        STR(p, &s->routes[i].path, "route %u path", i);
        STR(p + 16, &s->routes[i].source, "route %u source", i);
        STR(p + 32, &s->routes[i].hsts, "route %u hsts", i);
        if (!zero_pad(p + 92, 4)) {
            set_err(r->err, r->errlen, "route %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            struct snapwire_route *rt = &s->routes[i];
            rt->cluster = get32(p + 8);
            rt->match = p[12];
            rt->flags = p[13];
            rt->method = p[14];
            rt->retry_attempts = p[15];
            rt->max_body = get64(p + 24);
            rt->first_cond = get32(p + 40);
            rt->cond_count = get32(p + 44);
            rt->first_backend = get32(p + 48);
            rt->backend_count = get32(p + 52);
            rt->first_filter = get32(p + 56);
            rt->filter_count = get32(p + 60);
            rt->request_timeout_ms = get32(p + 64);
            rt->backend_timeout_ms = get32(p + 68);
            rt->retry_codes_lo = get64(p + 72);
            rt->retry_codes_hi = get64(p + 80);
            rt->retry_backoff_ms = get32(p + 88);
        }
    }
    for (i = 0; i < s->n_clusters; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_CLUSTERS].p + (size_t)i * REC_CLUSTER;
        STR(p, &s->clusters[i].name, "cluster %u name", i);
        STR(p + 20, &s->clusters[i].tls_sni, "cluster %u tls_sni", i);
        STR(p + 32, &s->clusters[i].hash_name, "cluster %u hash_name", i);
        STR(p + 40, &s->clusters[i].affinity_cookie, "cluster %u affinity_cookie", i);
        STR(p + 48, &s->clusters[i].hc_path, "cluster %u hc_path", i);
        STR(p + 56, &s->clusters[i].hc_host, "cluster %u hc_host", i);
        if (!zero_pad(p + 19, 1) || !zero_pad(p + 79, 1) || !zero_pad(p + 106, 2) ||
            !zero_pad(p + 116, 4)) {
            set_err(r->err, r->errlen, "cluster %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            s->clusters[i].first_endpoint = get32(p + 8);
            s->clusters[i].endpoint_count = get32(p + 12);
            s->clusters[i].lb = p[16];
            s->clusters[i].tls = p[17];
            s->clusters[i].hash_on = p[18];
            s->clusters[i].tls_ca = get32(p + 28);
            decode_cluster_v6(p, &s->clusters[i]);
        }
    }
    for (i = 0; i < s->n_endpoints; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_ENDPOINTS].p + (size_t)i * REC_ENDPOINT;
        STR(p, &s->endpoints[i].address, "endpoint %u address", i);
        if (!zero_pad(p + 11, 1)) {
            set_err(r->err, r->errlen, "endpoint %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            s->endpoints[i].port = get16(p + 8);
            s->endpoints[i].ready = p[10];
            s->endpoints[i].weight = get32(p + 12);
        }
    }
    for (i = 0; i < s->n_certs; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_CERTS].p + (size_t)i * REC_CERT;
        STR(p, &s->certs[i].name, "cert %u name", i);
        PEM(p + 8, &s->certs[i].chain_pem, "cert %u chain", i);
        PEM(p + 16, &s->certs[i].key_pem, "cert %u key", i);
        STR(p + 24, &s->certs[i].fingerprint, "cert %u fingerprint", i);
        if (fill) s->certs[i].not_after = get64(p + 32);
    }
    for (i = 0; i < s->n_tls_hosts; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_TLS_HOSTS].p + (size_t)i * REC_TLS_HOST;
        STR(p, &s->tls_hosts[i].host, "tls host %u", i);
        if (!zero_pad(p + 21, 3)) {
            set_err(r->err, r->errlen, "tls host %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            s->tls_hosts[i].cert = get32(p + 8);
            s->tls_hosts[i].cert2 = get32(p + 12);
            s->tls_hosts[i].client_ca = get32(p + 16);
            s->tls_hosts[i].client_verify = p[20];
        }
    }
    for (i = 0; i < s->n_conds; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_MATCH_CONDS].p + (size_t)i * REC_COND;
        STR(p, &s->conds[i].name, "cond %u name", i);
        STR(p + 8, &s->conds[i].value, "cond %u value", i);
        if (!zero_pad(p + 17, 3)) {
            set_err(r->err, r->errlen, "cond %u: nonzero padding", i);
            return -1;
        }
        if (fill) s->conds[i].kind = p[16];
    }
    for (i = 0; i < s->n_backends && fill; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_BACKENDS].p + (size_t)i * REC_BACKEND;
        s->backends[i].cluster = get32(p);
        s->backends[i].weight = get32(p + 4);
    }
    for (i = 0; i < s->n_filters; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_FILTERS].p + (size_t)i * REC_FILTER;
        STR(p, &s->filters[i].scheme, "filter %u scheme", i);
        STR(p + 8, &s->filters[i].hostname, "filter %u hostname", i);
        STR(p + 16, &s->filters[i].path, "filter %u path", i);
        if (!zero_pad(p + 46, 2)) {
            set_err(r->err, r->errlen, "filter %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            struct snapwire_filter *f = &s->filters[i];
            f->first_edit = get32(p + 24);
            f->edit_count = get32(p + 28);
            f->cluster = get32(p + 32);
            f->mirror_permille = get32(p + 36);
            f->port = get16(p + 40);
            f->status = get16(p + 42);
            f->type = p[44];
            f->path_mod = p[45];
        }
    }
    for (i = 0; i < s->n_hdr_edits; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_HDR_EDITS].p + (size_t)i * REC_HDR_EDIT;
        STR(p, &s->hdr_edits[i].name, "hdr edit %u name", i);
        STR(p + 8, &s->hdr_edits[i].value, "hdr edit %u value", i);
        if (!zero_pad(p + 17, 3)) {
            set_err(r->err, r->errlen, "hdr edit %u: nonzero padding", i);
            return -1;
        }
        if (fill) s->hdr_edits[i].op = p[16];
    }
    for (i = 0; i < s->n_mesh_services; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_MESH_SERVICES].p + (size_t)i * REC_MESH_SERVICE;
        /* the first pass has no arrays yet: s->mesh_services is only touched when filling */
        STR(p, &s->mesh_services[i].ns, "mesh service %u namespace", i);
        STR(p + 8, &s->mesh_services[i].name, "mesh service %u name", i);
        STR(p + 16, &s->mesh_services[i].address, "mesh service %u address", i);
        if (fill) {
            struct snapwire_mesh_service *m = &s->mesh_services[i];
            m->cluster = get32(p + 24);
            m->first_id = get32(p + 28);
            m->id_count = get32(p + 32);
            m->port = get16(p + 36);
            m->proto = p[38];
            m->mtls = p[39];
        }
    }
    for (i = 0; i < s->n_mesh_ids; i++)
        STR(sec[SNAPWIRE_SEC_MESH_IDS].p + (size_t)i * REC_MESH_ID, &s->mesh_ids[i].uri,
            "mesh id %u", i);
    for (i = 0; i < s->n_authz; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_AUTHZ].p + (size_t)i * REC_AUTHZ;
        STR(p, &s->authz[i].ns, "authz %u namespace", i);
        STR(p + 8, &s->authz[i].name, "authz %u name", i);
        STR(p + 16, &s->authz[i].source, "authz %u source", i);
        if (!zero_pad(p + 35, 5)) {
            set_err(r->err, r->errlen, "authz %u: nonzero padding", i);
            return -1;
        }
        if (fill) {
            struct snapwire_authz *a = &s->authz[i];
            a->first_principal = get32(p + 24);
            a->principal_count = get32(p + 28);
            a->port = get16(p + 32);
            a->action = p[34];
        }
    }
    for (i = 0; i < s->n_principals; i++) {
        const uint8_t *p = sec[SNAPWIRE_SEC_AUTHZ_PRINCIPALS].p + (size_t)i * REC_PRINCIPAL;
        STR(p, &s->principals[i].value, "principal %u", i);
        if (!zero_pad(p + 9, 3)) {
            set_err(r->err, r->errlen, "principal %u: nonzero padding", i);
            return -1;
        }
        if (fill) s->principals[i].kind = p[8];
    }
#undef PEM
#undef STR
#undef STRX
    return 0;
}

int snapwire_decode(const void *buf, size_t len, struct snapwire_snapshot *out, char *err,
                    size_t errlen)
{
    static const uint32_t recsize[] = {
        [SNAPWIRE_SEC_META] = REC_META,
        [SNAPWIRE_SEC_LISTENERS] = REC_LISTENER,
        [SNAPWIRE_SEC_VHOSTS] = REC_VHOST,
        [SNAPWIRE_SEC_ROUTES] = REC_ROUTE,
        [SNAPWIRE_SEC_CLUSTERS] = REC_CLUSTER,
        [SNAPWIRE_SEC_ENDPOINTS] = REC_ENDPOINT,
        [SNAPWIRE_SEC_CERTS] = REC_CERT,
        [SNAPWIRE_SEC_TLS_HOSTS] = REC_TLS_HOST,
        [SNAPWIRE_SEC_MATCH_CONDS] = REC_COND,
        [SNAPWIRE_SEC_BACKENDS] = REC_BACKEND,
        [SNAPWIRE_SEC_FILTERS] = REC_FILTER,
        [SNAPWIRE_SEC_HDR_EDITS] = REC_HDR_EDIT,
        [SNAPWIRE_SEC_MESH_SERVICES] = REC_MESH_SERVICE,
        [SNAPWIRE_SEC_MESH_IDS] = REC_MESH_ID,
        [SNAPWIRE_SEC_AUTHZ] = REC_AUTHZ,
        [SNAPWIRE_SEC_AUTHZ_PRINCIPALS] = REC_PRINCIPAL,
    };
    struct section sec[SEC_MAX + 1];
    struct snapwire_snapshot s;
    struct reader r;
    const uint8_t *p = buf, *pl;
    uint32_t payload, nsec, i;
    size_t arrays, sz;
    long fsz;
    char *arena;

    memset(sec, 0, sizeof(sec));
    memset(&s, 0, sizeof(s));
    fsz = snapwire_frame_size(buf, len, err, errlen);
    if (fsz == -2) {
        set_err(err, errlen, "truncated header (%zu bytes)", len);
        return -1;
    }
    if (fsz < 0) return -1;
    if ((size_t)fsz != len) {
        set_err(err, errlen, "frame length %zu does not match header (%ld)", len, fsz);
        return -1;
    }
    pl = p + SNAPWIRE_HEADER_SIZE;
    payload = get32(p + 16);
    if ((uint32_t)crc32(0L, pl, payload) != get32(p + 20)) {
        set_err(err, errlen, "checksum mismatch");
        return -1;
    }
    nsec = get32(p + 24);
    if (nsec > MAX_SECTIONS || (uint64_t)nsec * SECTION_ENTRY > payload) {
        set_err(err, errlen, "bad section count %u", nsec);
        return -1;
    }
    for (i = 0; i < nsec; i++) {
        const uint8_t *e = pl + (size_t)i * SECTION_ENTRY;
        uint32_t type = get32(e), off = get32(e + 4), slen = get32(e + 8);
        if (off < nsec * SECTION_ENTRY || (uint64_t)off + slen > payload) {
            set_err(err, errlen, "section %u (type %u) out of bounds", i, type);
            return -1;
        }
        if (type < SNAPWIRE_SEC_STRINGS || type > SEC_MAX)
            continue; /* unknown (newer writer): skip */
        if (sec[type].present) {
            set_err(err, errlen, "duplicate section type %u", type);
            return -1;
        }
        /* META: one record, 24 bytes (v6 layout) or 48 (mesh), checked below */
        if (type != SNAPWIRE_SEC_STRINGS && type != SNAPWIRE_SEC_META &&
            slen % recsize[type] != 0) {
            set_err(err, errlen, "section type %u length %u is not a whole number of records", type,
                    slen);
            return -1;
        }
        sec[type].p = pl + off;
        sec[type].len = slen;
        sec[type].present = 1;
    }
    if (sec[SNAPWIRE_SEC_META].len != 0 && sec[SNAPWIRE_SEC_META].len != REC_META &&
        sec[SNAPWIRE_SEC_META].len != REC_META_MESH) {
        set_err(err, errlen, "meta section length %u is not one record of %u or %u bytes",
                sec[SNAPWIRE_SEC_META].len, REC_META, REC_META_MESH);
        return -1;
    }
    s.generation = get64(p + 8);
    s.n_listeners = sec[SNAPWIRE_SEC_LISTENERS].len / REC_LISTENER;
    s.n_vhosts = sec[SNAPWIRE_SEC_VHOSTS].len / REC_VHOST;
    s.n_routes = sec[SNAPWIRE_SEC_ROUTES].len / REC_ROUTE;
    s.n_clusters = sec[SNAPWIRE_SEC_CLUSTERS].len / REC_CLUSTER;
    s.n_endpoints = sec[SNAPWIRE_SEC_ENDPOINTS].len / REC_ENDPOINT;
    s.n_certs = sec[SNAPWIRE_SEC_CERTS].len / REC_CERT;
    s.n_tls_hosts = sec[SNAPWIRE_SEC_TLS_HOSTS].len / REC_TLS_HOST;
    s.n_conds = sec[SNAPWIRE_SEC_MATCH_CONDS].len / REC_COND;
    s.n_backends = sec[SNAPWIRE_SEC_BACKENDS].len / REC_BACKEND;
    s.n_filters = sec[SNAPWIRE_SEC_FILTERS].len / REC_FILTER;
    s.n_hdr_edits = sec[SNAPWIRE_SEC_HDR_EDITS].len / REC_HDR_EDIT;
    s.n_mesh_services = sec[SNAPWIRE_SEC_MESH_SERVICES].len / REC_MESH_SERVICE;
    s.n_mesh_ids = sec[SNAPWIRE_SEC_MESH_IDS].len / REC_MESH_ID;
    s.n_authz = sec[SNAPWIRE_SEC_AUTHZ].len / REC_AUTHZ;
    s.n_principals = sec[SNAPWIRE_SEC_AUTHZ_PRINCIPALS].len / REC_PRINCIPAL;

    memset(&r, 0, sizeof(r));
    /* no STRINGS section: only empty strings are valid, and they must not touch NULL */
    r.strings =
        sec[SNAPWIRE_SEC_STRINGS].present ? sec[SNAPWIRE_SEC_STRINGS].p : (const uint8_t *)"";
    r.strings_len = sec[SNAPWIRE_SEC_STRINGS].len;
    r.err = err;
    r.errlen = errlen;
    if (read_records(&r, sec, &s) < 0) return -1;

    arrays =
        (size_t)s.n_listeners * sizeof(*s.listeners) + (size_t)s.n_vhosts * sizeof(*s.vhosts) +
        (size_t)s.n_routes * sizeof(*s.routes) + (size_t)s.n_clusters * sizeof(*s.clusters) +
        (size_t)s.n_endpoints * sizeof(*s.endpoints) + (size_t)s.n_certs * sizeof(*s.certs) +
        (size_t)s.n_tls_hosts * sizeof(*s.tls_hosts) + (size_t)s.n_conds * sizeof(*s.conds) +
        (size_t)s.n_filters * sizeof(*s.filters) + (size_t)s.n_hdr_edits * sizeof(*s.hdr_edits) +
        (size_t)s.n_mesh_services * sizeof(*s.mesh_services) +
        (size_t)s.n_mesh_ids * sizeof(*s.mesh_ids) + (size_t)s.n_authz * sizeof(*s.authz) +
        (size_t)s.n_principals * sizeof(*s.principals) + (size_t)s.n_backends * sizeof(*s.backends);
    sz = arrays + r.pool_sz + 1;
    arena = malloc(sz);
    if (!arena) {
        set_err(err, errlen, "out of memory (%zu bytes)", sz);
        return -1;
    }
    /*
     * Routes and certs (the only records with a u64; both sizes are multiples of 8) go first,
     * at malloc's alignment; every other record struct holds only pointers and smaller
     * integers, so the arrays after them stay aligned; backends (two u32) go last.
     */
    s.routes = (void *)arena;
    s.certs = (void *)(s.routes + s.n_routes);
    s.listeners = (void *)(s.certs + s.n_certs);
    s.vhosts = (void *)(s.listeners + s.n_listeners);
    s.clusters = (void *)(s.vhosts + s.n_vhosts);
    s.endpoints = (void *)(s.clusters + s.n_clusters);
    s.tls_hosts = (void *)(s.endpoints + s.n_endpoints);
    s.conds = (void *)(s.tls_hosts + s.n_tls_hosts);
    s.filters = (void *)(s.conds + s.n_conds);
    s.hdr_edits = (void *)(s.filters + s.n_filters);
    s.mesh_services = (void *)(s.hdr_edits + s.n_hdr_edits);
    s.mesh_ids = (void *)(s.mesh_services + s.n_mesh_services);
    s.authz = (void *)(s.mesh_ids + s.n_mesh_ids);
    s.principals = (void *)(s.authz + s.n_authz);
    s.backends = (void *)(s.principals + s.n_principals);
    r.pool = arena + arrays;
    r.pool_sz = 0;
    if (read_records(&r, sec, &s) < 0 || check_snapshot(&s, err, errlen) < 0 ||
        check_canonical(&s, err, errlen) < 0) {
        free(arena);
        return -1;
    }
    for (i = 0; i < s.n_endpoints; i++) {
        if (!s.endpoints[i].address[0]) {
            set_err(err, errlen, "endpoint %u: empty address", i);
            free(arena);
            return -1;
        }
    }
    /* the encoder writes the 48-byte META only in a mesh snapshot */
    if (sec[SNAPWIRE_SEC_META].len == REC_META_MESH &&
        (!s.meta.trust_domain[0] || !s.meta.cluster_domain[0])) {
        set_err(err, errlen, "meta: mesh record without a trust domain or cluster domain");
        free(arena);
        return -1;
    }
    s.arena_ = arena;
    *out = s;
    return 0;
}

void snapwire_free(struct snapwire_snapshot *s)
{
    if (!s) return;
    free(s->arena_);
    memset(s, 0, sizeof(*s));
}

int snapwire_same_payload(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen || alen < SNAPWIRE_HEADER_SIZE) return 0;
    return memcmp((const uint8_t *)a + 16, (const uint8_t *)b + 16, alen - 16) == 0;
}

/* ---- JSON dump ---- */

static const char *lb_name(uint8_t lb)
{
    switch (lb) {
    case SNAPWIRE_LB_ROUND_ROBIN:
        return "round_robin";
    case SNAPWIRE_LB_LEAST_REQUEST:
        return "least_request";
    case SNAPWIRE_LB_EWMA:
        return "ewma";
    case SNAPWIRE_LB_RING_HASH:
        return "ring_hash";
    case SNAPWIRE_LB_MAGLEV:
        return "maglev";
    default:
        return "?";
    }
}

static const char *hash_on_name(uint8_t h)
{
    switch (h) {
    case SNAPWIRE_HASH_NONE:
        return "none";
    case SNAPWIRE_HASH_HEADER:
        return "header";
    case SNAPWIRE_HASH_COOKIE:
        return "cookie";
    case SNAPWIRE_HASH_SOURCE_IP:
        return "source_ip";
    case SNAPWIRE_HASH_PATH:
        return "path";
    default:
        return "?";
    }
}

static void gen_kv_int(yajl_gen g, const char *k, long long v)
{
    jsongen_str(g, k);
    yajl_gen_integer(g, v);
}

/* A cluster's v6 settings, and its endpoint weights when any is not 1. */
static void gen_cluster_v6(yajl_gen g, const struct snapwire_snapshot *s,
                           const struct snapwire_cluster *c)
{
    uint32_t j;
    int weighted = 0;

    if (*nz(c->hc_path)) {
        jsongen_str(g, "health_check");
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "path", c->hc_path);
        if (*nz(c->hc_host)) jsongen_kv_str(g, "host", c->hc_host);
        gen_kv_int(g, "interval_ms", c->hc_interval_ms);
        gen_kv_int(g, "timeout_ms", c->hc_timeout_ms);
        gen_kv_int(g, "status_lo", c->hc_status_lo);
        gen_kv_int(g, "status_hi", c->hc_status_hi);
        gen_kv_int(g, "healthy_threshold", c->hc_healthy);
        gen_kv_int(g, "unhealthy_threshold", c->hc_unhealthy);
        yajl_gen_map_close(g);
    }
    jsongen_str(g, "outlier");
    yajl_gen_map_open(g);
    gen_kv_int(g, "consecutive", c->od_consecutive);
    gen_kv_int(g, "base_ms", c->od_base_ms);
    gen_kv_int(g, "max_ms", c->od_max_ms);
    gen_kv_int(g, "max_percent", c->od_max_percent);
    yajl_gen_map_close(g);
    jsongen_str(g, "circuit_breaker");
    yajl_gen_map_open(g);
    gen_kv_int(g, "max_connections", c->cb_max_connections);
    gen_kv_int(g, "max_pending", c->cb_max_pending);
    gen_kv_int(g, "max_requests", c->cb_max_requests);
    yajl_gen_map_close(g);
    jsongen_str(g, "retry_budget");
    yajl_gen_map_open(g);
    gen_kv_int(g, "percent", c->rb_percent);
    gen_kv_int(g, "min_per_sec", c->rb_min_per_sec);
    yajl_gen_map_close(g);
    gen_kv_int(g, "slow_start_ms", c->slow_start_ms);
    for (j = 0; j < c->endpoint_count; j++)
        if (s->endpoints[c->first_endpoint + j].weight != 1) weighted = 1;
    if (!weighted) return;
    jsongen_str(g, "weights"); /* in the order of "endpoints" */
    yajl_gen_array_open(g);
    for (j = 0; j < c->endpoint_count; j++)
        yajl_gen_integer(g, s->endpoints[c->first_endpoint + j].weight);
    yajl_gen_array_close(g);
}

/* A body limit: null for "data plane default", "unlimited", or the byte count. */
static void gen_kv_body(yajl_gen g, const char *k, uint64_t v)
{
    char num[24];

    jsongen_str(g, k);
    if (v == SNAPWIRE_BODY_DEFAULT) {
        yajl_gen_null(g);
    } else if (v == SNAPWIRE_BODY_UNLIMITED) {
        jsongen_str(g, "unlimited");
    } else {
        /* yajl_gen_integer takes a long long: print it ourselves to keep all 64 bits */
        snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
        yajl_gen_number(g, num, strlen(num));
    }
}

/* A certificate reference: its name, or null for SNAPWIRE_NONE. */
static void gen_kv_cert(yajl_gen g, const struct snapwire_snapshot *s, const char *k, uint32_t i)
{
    jsongen_str(g, k);
    if (i == SNAPWIRE_NONE)
        yajl_gen_null(g);
    else
        jsongen_str(g, s->certs[i].name);
}

/* A cluster reference: its name, or null for SNAPWIRE_NONE. */
static void gen_cluster(yajl_gen g, const struct snapwire_snapshot *s, uint32_t i)
{
    if (i == SNAPWIRE_NONE)
        yajl_gen_null(g);
    else
        jsongen_str(g, s->clusters[i].name);
}

/* A route timeout, omitted when DEFAULT: "none" for no limit, else milliseconds. */
static void gen_kv_timeout(yajl_gen g, const char *k, uint32_t v)
{
    if (v == SNAPWIRE_TIMEOUT_DEFAULT) return;
    jsongen_str(g, k);
    if (v == SNAPWIRE_TIMEOUT_NONE)
        jsongen_str(g, "none");
    else
        yajl_gen_integer(g, v);
}

static void gen_kv_flag(yajl_gen g, const char *k, int on)
{
    if (!on) return;
    jsongen_str(g, k);
    yajl_gen_bool(g, 1);
}

static void gen_filter(yajl_gen g, const struct snapwire_snapshot *s,
                       const struct snapwire_filter *f)
{
    static const char *type_names[] = {
        "",           "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect",
        "URLRewrite", "RequestMirror"};
    static const char *path_mod_names[] = {"", "ReplaceFullPath", "ReplacePrefixMatch"};
    static const char *op_names[] = {"", "set", "add", "remove"};
    uint32_t k;

    yajl_gen_map_open(g);
    jsongen_kv_str(g, "type", type_names[f->type]);
    switch (f->type) {
    case SNAPWIRE_FILTER_REQUEST_HEADERS:
    case SNAPWIRE_FILTER_RESPONSE_HEADERS:
        jsongen_str(g, "edits");
        yajl_gen_array_open(g);
        for (k = 0; k < f->edit_count; k++) {
            const struct snapwire_hdr_edit *e = &s->hdr_edits[f->first_edit + k];
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "op", op_names[e->op]);
            jsongen_kv_str(g, "name", e->name);
            if (e->op != SNAPWIRE_HDR_REMOVE) jsongen_kv_str(g, "value", e->value);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        break;
    case SNAPWIRE_FILTER_REDIRECT:
    case SNAPWIRE_FILTER_REWRITE:
        if (f->type == SNAPWIRE_FILTER_REDIRECT) {
            if (f->scheme[0]) jsongen_kv_str(g, "scheme", f->scheme);
            if (f->port) gen_kv_int(g, "port", f->port);
            gen_kv_int(g, "status", f->status);
        }
        if (f->hostname[0]) jsongen_kv_str(g, "hostname", f->hostname);
        if (f->path_mod != SNAPWIRE_PATH_KEEP) {
            jsongen_kv_str(g, "path_mod", path_mod_names[f->path_mod]);
            jsongen_kv_str(g, "path", f->path);
        }
        break;
    case SNAPWIRE_FILTER_MIRROR:
        jsongen_str(g, "cluster");
        gen_cluster(g, s, f->cluster);
        gen_kv_int(g, "permille", f->mirror_permille);
        break;
    }
    yajl_gen_map_close(g);
}

/* The v4 (Gateway) fields of a route; nothing for an Ingress route (all of them zero). */
static void gen_route_v4(yajl_gen g, const struct snapwire_snapshot *s,
                         const struct snapwire_route *r)
{
    static const char *method_names[] = {"",       "GET",     "HEAD",    "POST",  "PUT",
                                         "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    static const char *kind_names[] = {"", "HeaderExact", "HeaderRegex", "QueryExact"};
    uint32_t k;

    if (r->method != SNAPWIRE_METHOD_ANY) jsongen_kv_str(g, "method", method_names[r->method]);
    gen_kv_flag(g, "wild_any", r->flags & SNAPWIRE_ROUTE_WILD_ANY);
    gen_kv_flag(g, "plain_only", r->flags & SNAPWIRE_ROUTE_PLAIN_ONLY);
    gen_kv_flag(g, "tls_only", r->flags & SNAPWIRE_ROUTE_TLS_ONLY);
    if (r->cond_count) {
        jsongen_str(g, "conds");
        yajl_gen_array_open(g);
        for (k = 0; k < r->cond_count; k++) {
            const struct snapwire_cond *c = &s->conds[r->first_cond + k];
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "kind", kind_names[c->kind]);
            jsongen_kv_str(g, "name", c->name);
            jsongen_kv_str(g, "value", c->value);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    if (r->backend_count) {
        jsongen_str(g, "backends");
        yajl_gen_array_open(g);
        for (k = 0; k < r->backend_count; k++) {
            const struct snapwire_backend *b = &s->backends[r->first_backend + k];
            yajl_gen_map_open(g);
            jsongen_str(g, "cluster");
            gen_cluster(g, s, b->cluster);
            gen_kv_int(g, "weight", b->weight);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    if (r->filter_count) {
        jsongen_str(g, "filters");
        yajl_gen_array_open(g);
        for (k = 0; k < r->filter_count; k++)
            gen_filter(g, s, &s->filters[r->first_filter + k]);
        yajl_gen_array_close(g);
    }
    gen_kv_timeout(g, "request_timeout_ms", r->request_timeout_ms);
    gen_kv_timeout(g, "backend_timeout_ms", r->backend_timeout_ms);
    if (r->retry_attempts) {
        jsongen_str(g, "retry");
        yajl_gen_map_open(g);
        gen_kv_int(g, "attempts", r->retry_attempts);
        jsongen_str(g, "codes");
        yajl_gen_array_open(g);
        for (k = 0; k < 100; k++)
            if ((k < 64 ? r->retry_codes_lo >> k : r->retry_codes_hi >> (k - 64)) & 1)
                yajl_gen_integer(g, 500 + k);
        yajl_gen_array_close(g);
        gen_kv_int(g, "backoff_ms", r->retry_backoff_ms);
        yajl_gen_map_close(g);
    }
}

/* The v7 authorization policies (part of the mesh part of the dump). */
static void gen_authz(yajl_gen g, const struct snapwire_snapshot *s)
{
    static const char *kind_names[] = {"", "identity", "namespace", "authenticated",
                                       "unauthenticated"};
    uint32_t i, k;

    jsongen_kv_str(g, "authz_default", s->meta.authz_default_deny ? "deny" : "allow");
    jsongen_str(g, "authz");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_authz; i++) {
        const struct snapwire_authz *a = &s->authz[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "namespace", a->ns);
        jsongen_kv_str(g, "name", a->name);
        gen_kv_int(g, "port", a->port);
        jsongen_kv_str(g, "action", a->action == SNAPWIRE_AUTHZ_DENY ? "deny" : "allow");
        jsongen_kv_str(g, "source", a->source);
        jsongen_str(g, "from");
        yajl_gen_array_open(g);
        for (k = 0; k < a->principal_count; k++) {
            const struct snapwire_principal *p = &s->principals[a->first_principal + k];
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "kind", kind_names[p->kind]);
            jsongen_kv_str(g, "value", p->value);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

/* The v7 mesh directory; nothing for a snapshot without a trust domain. */
static void gen_mesh(yajl_gen g, const struct snapwire_snapshot *s)
{
    static const char *proto_names[] = {"detect", "http", "opaque"};
    uint32_t i, k;

    if (!*nz(s->meta.trust_domain)) return;
    jsongen_kv_str(g, "trust_domain", s->meta.trust_domain);
    jsongen_kv_str(g, "cluster_domain", s->meta.cluster_domain);
    jsongen_str(g, "mesh_services");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_mesh_services; i++) {
        const struct snapwire_mesh_service *m = &s->mesh_services[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "namespace", m->ns);
        jsongen_kv_str(g, "name", m->name);
        jsongen_kv_str(g, "address", m->address);
        gen_kv_int(g, "port", m->port);
        jsongen_str(g, "cluster");
        gen_cluster(g, s, m->cluster);
        jsongen_kv_str(g, "protocol", proto_names[m->proto]);
        jsongen_str(g, "mtls");
        yajl_gen_bool(g, m->mtls);
        jsongen_str(g, "identities");
        yajl_gen_array_open(g);
        for (k = 0; k < m->id_count; k++)
            jsongen_str(g, s->mesh_ids[m->first_id + k].uri);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gen_authz(g, s);
}

char *snapwire_to_json(const struct snapwire_snapshot *s)
{
    static const char *match_names[] = {"", "Exact", "Prefix", "RegularExpression"};
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;
    char *out;
    uint32_t i, j;

    if (!g) return NULL;
    yajl_gen_config(g, yajl_gen_beautify, 1);
    yajl_gen_map_open(g);
    gen_kv_int(g, "generation", (long long)s->generation);
    jsongen_kv_str(g, "source", s->meta.source);
    jsongen_str(g, "default_cluster");
    if (s->meta.default_cluster == SNAPWIRE_NONE)
        yajl_gen_null(g);
    else
        jsongen_str(g, s->clusters[s->meta.default_cluster].name);
    gen_kv_body(g, "default_max_body", s->meta.default_max_body);
    gen_kv_cert(g, s, "default_cert", s->meta.default_cert);

    jsongen_str(g, "listeners");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_listeners; i++) {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", s->listeners[i].name);
        jsongen_kv_str(g, "address", s->listeners[i].address);
        gen_kv_int(g, "port", s->listeners[i].port);
        jsongen_kv_str(g, "protocol",
                       s->listeners[i].protocol == SNAPWIRE_PROTO_HTTPS ? "https" : "http");
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);

    jsongen_str(g, "vhosts");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_vhosts; i++) {
        const struct snapwire_vhost *v = &s->vhosts[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "host", v->host[0] ? v->host : "*");
        jsongen_str(g, "routes");
        yajl_gen_array_open(g);
        for (j = 0; j < v->route_count; j++) {
            const struct snapwire_route *r = &s->routes[v->first_route + j];
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "path", r->path);
            jsongen_kv_str(g, "pathType", match_names[r->match]);
            jsongen_str(g, "cluster");
            gen_cluster(g, s, r->cluster);
            jsongen_kv_str(g, "source", r->source);
            gen_kv_body(g, "max_body", r->max_body);
            jsongen_str(g, "ssl_redirect");
            yajl_gen_bool(g, (r->flags & SNAPWIRE_ROUTE_SSL_REDIRECT) != 0);
            jsongen_str(g, "hsts");
            if (r->hsts && r->hsts[0])
                jsongen_str(g, r->hsts);
            else
                yajl_gen_null(g);
            gen_route_v4(g, s, r);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);

    jsongen_str(g, "clusters");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_clusters; i++) {
        const struct snapwire_cluster *c = &s->clusters[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", c->name);
        jsongen_kv_str(g, "lb", lb_name(c->lb));
        if (c->hash_on != SNAPWIRE_HASH_NONE) {
            jsongen_kv_str(g, "hash_on", hash_on_name(c->hash_on));
            if (*nz(c->hash_name)) jsongen_kv_str(g, "hash_name", c->hash_name);
        }
        if (*nz(c->affinity_cookie)) jsongen_kv_str(g, "affinity_cookie", c->affinity_cookie);
        jsongen_str(g, "tls");
        yajl_gen_bool(g, c->tls);
        if (c->tls) {
            jsongen_kv_str(g, "tls_sni", c->tls_sni);
            gen_kv_cert(g, s, "tls_ca", c->tls_ca);
        }
        gen_cluster_v6(g, s, c);
        jsongen_str(g, "endpoints");
        yajl_gen_array_open(g);
        for (j = 0; j < c->endpoint_count; j++) {
            const struct snapwire_endpoint *e = &s->endpoints[c->first_endpoint + j];
            char addr[80];
            snprintf(addr, sizeof(addr), strchr(e->address, ':') ? "[%s]:%u" : "%s:%u", e->address,
                     e->port);
            jsongen_str(g, addr);
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);

    /* certificates by name and fingerprint only: key_pem is never shown */
    jsongen_str(g, "certs");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_certs; i++) {
        const struct snapwire_cert *c = &s->certs[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", c->name);
        jsongen_kv_str(g, "fingerprint", c->fingerprint);
        gen_kv_int(g, "not_after", (long long)c->not_after);
        jsongen_str(g, "has_key");
        yajl_gen_bool(g, cert_has_key(s, i));
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);

    jsongen_str(g, "tls_hosts");
    yajl_gen_array_open(g);
    for (i = 0; i < s->n_tls_hosts; i++) {
        static const char *verify_names[] = {"off", "required", "optional"};
        const struct snapwire_tls_host *h = &s->tls_hosts[i];
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "host", h->host);
        jsongen_str(g, "certs");
        yajl_gen_array_open(g);
        jsongen_str(g, s->certs[h->cert].name);
        if (h->cert2 != SNAPWIRE_NONE) jsongen_str(g, s->certs[h->cert2].name);
        yajl_gen_array_close(g);
        jsongen_kv_str(g, "client_verify", verify_names[h->client_verify]);
        gen_kv_cert(g, s, "client_ca", h->client_verify ? h->client_ca : SNAPWIRE_NONE);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gen_mesh(g, s);
    yajl_gen_map_close(g);

    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        yajl_gen_free(g);
        return NULL;
    }
    out = malloc(len + 1);
    if (out) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

/* ---- replies ---- */

size_t snapwire_reply_format(char *buf, size_t buflen, int ack, uint64_t generation,
                             const char *reason)
{
    int n;

    if (!buflen) return 0;
    if (ack) {
        n = snprintf(buf, buflen, "ACK %llu\n", (unsigned long long)generation);
    } else {
        n = snprintf(buf, buflen, "NACK %llu ", (unsigned long long)generation);
        if (n < 0) n = 0;
        for (const char *r = reason ? reason : "invalid"; *r && (size_t)n + 2 < buflen; r++)
            buf[n++] = ((unsigned char)*r < 0x20 || *r == 0x7f) ? ' ' : *r;
        if ((size_t)n + 1 < buflen) buf[n++] = '\n';
        buf[n < (int)buflen ? n : (int)buflen - 1] = '\0';
    }
    if (n < 0) return 0;
    return (size_t)n < buflen ? (size_t)n : buflen - 1;
}

int snapwire_reply_parse(const char *line, size_t len, uint64_t *generation, char *reason,
                         size_t reasonlen)
{
    int ack;
    size_t i, start;
    uint64_t g = 0;

    if (len && line[len - 1] == '\n') len--;
    if (len >= 4 && memcmp(line, "ACK ", 4) == 0) {
        ack = 1;
        i = 4;
    } else if (len >= 5 && memcmp(line, "NACK ", 5) == 0) {
        ack = 0;
        i = 5;
    } else {
        return -1;
    }
    start = i;
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
        if (g > (UINT64_MAX - 9) / 10) return -1;
        g = g * 10 + (uint64_t)(line[i] - '0');
    }
    if (i == start) return -1;
    if (ack && i != len) return -1;
    if (!ack) {
        if (i < len && line[i] != ' ') return -1;
        if (i < len) i++;
        if (reason && reasonlen) {
            size_t n = len - i < reasonlen - 1 ? len - i : reasonlen - 1;
            memcpy(reason, line + i, n);
            reason[n] = '\0';
        }
    }
    if (generation) *generation = g;
    return ack;
}
