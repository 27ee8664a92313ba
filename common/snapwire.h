/*
 * snapwire: THE routing snapshot format shared by strait-controller and strait-dataplane.
 *
 * A snapshot travels as one frame: a fixed 32-byte header followed by a payload.
 * Everything is little endian.
 *
 *   header  0  u32  magic "STRT" (0x54525453)
 *           4  u16  format version (SNAPWIRE_VERSION)
 *           6  u16  header size (32)
 *           8  u64  generation (monotonic per controller)
 *          16  u32  payload length
 *          20  u32  CRC-32 (zlib) of the payload
 *          24  u32  section count
 *          28  u32  reserved, 0
 *   payload: section table (count x {u32 type, u32 offset, u32 length}, offsets from payload
 *            start), then the section bodies. Sections are arrays of fixed-size records whose
 *            strings are {u32 offset, u32 length} into the STRINGS section and whose links are
 *            u32 indexes into other sections (SNAPWIRE_NONE for "none").
 *
 * The in-memory form (struct snapwire_snapshot) is both what snapwire_encode() takes and
 * what snapwire_decode() returns: plain arrays with NUL-terminated strings, so the frame
 * buffer can be freed after decoding. snapwire_decode() checks every offset, length, index
 * and enum before returning anything; a snapshot it returns is internally consistent:
 *   - vhost routes [first_route, first_route+route_count) lie inside routes[]
 *   - meta.default_cluster < n_clusters or SNAPWIRE_NONE
 *   - route.match is EXACT or PREFIX with a path starting with '/', or REGEX with a non-empty
 *     pattern; route.flags has only SNAPWIRE_ROUTE_* bits (0x0f), never PLAIN_ONLY and
 *     TLS_ONLY together
 *   - cluster endpoints [first_endpoint, first_endpoint+endpoint_count) lie inside endpoints[]
 *   - cluster.lb is one of SNAPWIRE_LB_* (1..5), cluster.hash_on one of SNAPWIRE_HASH_*
 *     (0..4); cluster.hash_name is a non-empty HTTP token (lower case for HEADER) when
 *     hash_on is HEADER or COOKIE and "" otherwise; cluster.affinity_cookie is "" or a
 *     cookie name (an RFC 6265 token)
 *   - endpoint addresses parse as IPv4 or IPv6 literals; ports are 1..65535; weights are
 *     1..SNAPWIRE_MAX_WEIGHT
 *   - v6 cluster fields are within the ranges their comments in struct snapwire_cluster give:
 *     with hc_path set, hc_path starts with '/' (at most 1024 bytes, no space), hc_host is ""
 *     or host[:port] characters (letters, digits, - . : [ ]; at most 255 bytes),
 *     100 <= hc_interval_ms <= 3600000, 10 <= hc_timeout_ms <= hc_interval_ms,
 *     100 <= hc_status_lo <= hc_status_hi <= 599, hc_healthy and hc_unhealthy 1..100; with
 *     od_consecutive 1..1000, od_base_ms 1000..3600000, od_max_ms od_base_ms..86400000,
 *     od_max_percent 0..100; cb_* at most 1000000; rb_percent 0..1000, rb_min_per_sec
 *     0..100000; slow_start_ms 0..3600000
 *   - without hc_path every other hc_* field is 0 / "", with od_consecutive 0 every other
 *     od_* field is 0: the encoder writes them so whatever the caller left there (a feature
 *     switched off is not refused), the decoder refuses anything else
 *   - strings contain no NUL and no control characters, except PEM fields (certificate
 *     chains and keys), which may hold CR, LF and TAB; strings are at most 64 KiB, PEM
 *     fields at most 1 MiB
 *   - cert indexes (tls_host.cert/cert2/client_ca, meta.default_cert, cluster.tls_ca) are
 *     < n_certs or SNAPWIRE_NONE where allowed; a tls_host's cert and cert2 and
 *     meta.default_cert name certificates with a key; client_ca and tls_ca name CA bundles
 *     (key_pem ""); tls_hosts are sorted by host with no duplicates
 *   - route ranges [first_cond, +cond_count), [first_backend, +backend_count),
 *     [first_filter, +filter_count) lie inside conds[], backends[], filters[]; a filter's
 *     [first_edit, +edit_count) inside hdr_edits[]; every enum (match, method, cond kind,
 *     filter type, path_mod, edit op) is known; route.cluster, backend.cluster and a
 *     mirror's cluster are < n_clusters or SNAPWIRE_NONE; a route's backend weights sum to
 *     at most UINT32_MAX; retry_codes_hi has no bit above 35 (599); retry_attempts <=
 *     SNAPWIRE_MAX_RETRIES; header names (conds, edits) are non-empty HTTP tokens (RFC 9110),
 *     lower case in conds; a QUERY_EXACT name is non-empty; a REGEX route's pattern and a
 *     HEADER_REGEX value are non-empty (the data plane compiles them and NACKs a snapshot
 *     whose pattern does not compile); a REDIRECT's status is 301, 302, 303, 307 or 308 and
 *     its scheme "", "http" or "https"; mirror_permille <= 1000
 *   - a filter's fields that its type does not use are zero / "" / SNAPWIRE_NONE (path ""
 *     when path_mod is KEEP), and a REMOVE edit's value is "": the encoder writes them so
 *     whatever the caller left there, the decoder refuses anything else
 *   - v7 mesh directory: meta.trust_domain is "" (not a mesh snapshot: no mesh_services, no
 *     mesh_ids) or a SPIFFE trust domain (lower-case letters, digits, '.', '-', '_', at most
 *     255 bytes); meta.cluster_domain is a DNS name (lower-case letters, digits, '.', '-', at
 *     most 253 bytes, "cluster.local" when the frame carries none); a mesh_service's ns and
 *     name are non-empty, address is an IP literal in canonical inet_ntop form, port is
 *     1..65535, cluster < n_clusters or SNAPWIRE_NONE, proto is a known
 *     snapwire_mesh_proto, mtls is 0 or 1; with mtls 1, [first_id, +id_count) is a non-empty
 *     range inside mesh_ids[] whose URIs are strictly ascending (strcmp: sorted, no
 *     duplicates); with mtls 0, first_id and id_count are 0; mesh_services are sorted by
 *     (strcmp(address), port) with no duplicate (address, port), so a reader may
 *     binary-search them; every mesh_id is "spiffe://<meta.trust_domain>/<path>" whose path
 *     segments are non-empty, not "." or "..", of letters, digits, '.', '-', '_'
 *   - v7 authorization: only in a mesh snapshot (without a trust domain there are no authz
 *     and principal records and meta.authz_default_deny is 0); meta.authz_default_deny is 0
 *     or 1; an authz record's ns, name and source are non-empty, action is a known
 *     snapwire_authz_action, [first_principal, +principal_count) is a non-empty range inside
 *     principals[] sorted by (kind, strcmp(value)) with no duplicate; authz records are
 *     sorted by (strcmp(ns), strcmp(name), port, strcmp(source)) with no duplicate, so a
 *     reader may binary-search a Service's policies (port 0, "all ports", sorts first); a
 *     principal's kind is a known snapwire_principal_kind; an IDENTITY value is a SPIFFE ID
 *     in the trust domain (as mesh ids), a NAMESPACE value a DNS label (RFC 1123: a-z, 0-9,
 *     '-', at most 63 bytes), AUTHENTICATED and UNAUTHENTICATED values are ""
 * Unknown section types are skipped (forward compatibility).
 *
 * Only this module touches raw snapshot bytes.
 */
#ifndef STRAIT_SNAPWIRE_H
#define STRAIT_SNAPWIRE_H

#include <stddef.h>
#include <stdint.h>

#define SNAPWIRE_MAGIC 0x54525453u /* "STRT" as little-endian bytes */
/*
 * 2: u64 max_body in ROUTES records, default_max_body in META.
 * 3: TLS: CERTS and TLS_HOSTS sections, META default_cert, ROUTES flags + hsts, CLUSTERS
 *    upstream TLS (tls, tls_sni, tls_ca).
 * 4: Gateway routes: MATCH_CONDS, BACKENDS, FILTERS, HDR_EDITS sections; ROUTES gain method,
 *    the ranges into those sections, timeouts and retry policy; match type REGEX; route
 *    flags WILD_ANY, PLAIN_ONLY, TLS_ONLY; route.cluster may be SNAPWIRE_NONE. Route
 *    records grow from 40 to 96 bytes.
 * 5: balancing: CLUSTERS lb takes LEAST_REQUEST, EWMA, RING_HASH, MAGLEV; hash_on,
 *    hash_name, affinity_cookie.
 * 6: resilience: CLUSTERS gain active health checks (hc_*), outlier detection settings
 *    (od_*), circuit breaking limits (cb_*), retry budget (rb_*) and slow_start_ms;
 *    ENDPOINTS gain weight.
 * 7: mesh: MESH_SERVICES and MESH_IDS sections, META trust_domain and cluster_domain;
 *    authorization: AUTHZ and AUTHZ_PRINCIPALS sections, META authz_default_deny.
 *    META is 48 bytes in a mesh snapshot (trust_domain set) and keeps its 24-byte v6 layout
 *    otherwise, so the payload of a snapshot without mesh data is the same as in v6; the
 *    mesh and authz sections are written only in a mesh snapshot.
 */
#define SNAPWIRE_VERSION 7
#define SNAPWIRE_HEADER_SIZE 32
#define SNAPWIRE_MAX_FRAME (64u << 20) /* refuse frames larger than 64 MiB */
#define SNAPWIRE_NONE 0xffffffffu

/*
 * Request body limits (route max_body, meta default_max_body), in bytes. Two values are
 * special: SNAPWIRE_BODY_DEFAULT, "not set here: the data plane's --client-max-body-size
 * applies", and SNAPWIRE_BODY_UNLIMITED, "no limit, whatever the data plane's default".
 * Every other value is a limit: a body of more bytes gets 413.
 */
#define SNAPWIRE_BODY_DEFAULT 0
#define SNAPWIRE_BODY_UNLIMITED UINT64_MAX

enum snapwire_section_type {
    SNAPWIRE_SEC_STRINGS = 1,
    SNAPWIRE_SEC_META = 2,
    SNAPWIRE_SEC_LISTENERS = 3,
    SNAPWIRE_SEC_VHOSTS = 4,
    SNAPWIRE_SEC_ROUTES = 5,
    SNAPWIRE_SEC_CLUSTERS = 6,
    SNAPWIRE_SEC_ENDPOINTS = 7,
    SNAPWIRE_SEC_CERTS = 8,            /* certificates with keys, and CA bundles */
    SNAPWIRE_SEC_FILTERS = 9,          /* route filters (Gateway), in the order they run */
    SNAPWIRE_SEC_TLS_HOSTS = 10,       /* SNI name -> certificate(s), client certificate policy */
    SNAPWIRE_SEC_MATCH_CONDS = 11,     /* header / query conditions of routes */
    SNAPWIRE_SEC_BACKENDS = 12,        /* weighted backends of routes */
    SNAPWIRE_SEC_HDR_EDITS = 13,       /* header edits of filters */
    SNAPWIRE_SEC_MESH_SERVICES = 14,   /* v7: (ClusterIP, port) -> cluster, protocol, mTLS */
    SNAPWIRE_SEC_MESH_IDS = 15,        /* v7: SPIFFE identities of mesh services' pods */
    SNAPWIRE_SEC_AUTHZ = 16,           /* v7: AuthorizationPolicies, one record per policy */
    SNAPWIRE_SEC_AUTHZ_PRINCIPALS = 17 /* v7: the callers ("from") of the policies */
};

enum snapwire_match {
    SNAPWIRE_MATCH_EXACT = 1,
    SNAPWIRE_MATCH_PREFIX = 2, /* element-wise, Kubernetes Ingress semantics */
    SNAPWIRE_MATCH_REGEX = 3,  /* route.path is a PCRE2 pattern matched against the whole
                                  normalised path (anchored at both ends) */
};

/* route.method: the request method a route requires */
enum snapwire_method {
    SNAPWIRE_METHOD_ANY = 0,
    SNAPWIRE_METHOD_GET,
    SNAPWIRE_METHOD_HEAD,
    SNAPWIRE_METHOD_POST,
    SNAPWIRE_METHOD_PUT,
    SNAPWIRE_METHOD_DELETE,
    SNAPWIRE_METHOD_CONNECT,
    SNAPWIRE_METHOD_OPTIONS,
    SNAPWIRE_METHOD_TRACE,
    SNAPWIRE_METHOD_PATCH,
    SNAPWIRE_METHOD_MAX_ = SNAPWIRE_METHOD_PATCH
};

enum snapwire_protocol {
    SNAPWIRE_PROTO_HTTP = 1,
    SNAPWIRE_PROTO_HTTPS = 2,
};

enum snapwire_lb {
    SNAPWIRE_LB_ROUND_ROBIN = 1,   /* smooth weighted round robin */
    SNAPWIRE_LB_LEAST_REQUEST = 2, /* power of two choices over in-flight requests */
    SNAPWIRE_LB_EWMA = 3,          /* P2C over peak-EWMA latency with in-flight penalty */
    SNAPWIRE_LB_RING_HASH = 4,     /* ketama ring over cluster.hash_on */
    SNAPWIRE_LB_MAGLEV = 5,        /* Maglev table over cluster.hash_on */
};

/* cluster.hash_on: what ring_hash / maglev hash (NONE: a random key per request) */
enum snapwire_hash_on {
    SNAPWIRE_HASH_NONE = 0,
    SNAPWIRE_HASH_HEADER = 1,    /* the value of header hash_name (lower case) */
    SNAPWIRE_HASH_COOKIE = 2,    /* the value of cookie hash_name */
    SNAPWIRE_HASH_SOURCE_IP = 3, /* the client's address */
    SNAPWIRE_HASH_PATH = 4,      /* the request path (without query) */
};

struct snapwire_meta {
    uint32_t default_cluster;  /* index into clusters, or SNAPWIRE_NONE */
    const char *source;        /* free text: what produced it, e.g. "file:/path" */
    uint64_t default_max_body; /* body limit of the default backend (SNAPWIRE_BODY_*) */
    /*
     * Certificate (with key) for TLS handshakes whose SNI matches no tls_host (or that send
     * none): the controller's --default-ssl-certificate. SNAPWIRE_NONE: the data plane's own
     * certificate generated at start-up.
     */
    uint32_t default_cert;
    /* ---- v7: mesh ---- */
    /* SPIFFE trust domain of the mesh ("" when this is not a mesh snapshot) */
    const char *trust_domain;
    /* the cluster's DNS domain (Service names are <svc>.<ns>.svc.<cluster_domain>);
     * "cluster.local" by default. NULL or "" encode as the default. */
    const char *cluster_domain;
    /* what a Service port without Allow policies admits (--mesh-default-policy): 0 every
     * caller, 1 none (only what an Allow policy lets in); always 0 outside a mesh snapshot */
    uint8_t authz_default_deny;
};

struct snapwire_listener {
    const char *name;
    const char *address; /* IP literal, may be empty for "any" */
    uint16_t port;
    uint8_t protocol; /* enum snapwire_protocol */
};

/*
 * A virtual host. host is lower case: "foo.com", "*.foo.com" (one extra label; any number
 * for routes flagged SNAPWIRE_ROUTE_WILD_ANY) or "" (any host). The controller sorts vhosts
 * by host and, inside a vhost, routes in match order
 * (longest path first, Exact before Prefix at equal length), so a reader may take the first
 * route that matches.
 */
struct snapwire_vhost {
    const char *host;
    uint32_t first_route;
    uint32_t route_count;
};

/* route.flags */
#define SNAPWIRE_ROUTE_SSL_REDIRECT 0x01 /* plain-HTTP requests get a 308 to https */
/*
 * In a wildcard vhost "*.foo.com", the route also matches hosts more than one label below
 * foo.com ("a.b.foo.com"; Gateway API hostnames), not only one label (Ingress).
 */
#define SNAPWIRE_ROUTE_WILD_ANY 0x02
/* Gateway listeners: the route serves only requests from plain-HTTP (--listen) or only from
 * TLS (--listen-tls) listeners; neither flag: both */
#define SNAPWIRE_ROUTE_PLAIN_ONLY 0x04
#define SNAPWIRE_ROUTE_TLS_ONLY 0x08

/* Route timeouts in milliseconds: two values are special. */
#define SNAPWIRE_TIMEOUT_DEFAULT 0       /* not set: the data plane's own timeouts apply */
#define SNAPWIRE_TIMEOUT_NONE UINT32_MAX /* no limit ("0s" in a Gateway) */
#define SNAPWIRE_MAX_RETRIES 10          /* bound of route.retry_attempts */

struct snapwire_route {
    const char *path;   /* starts with '/' (EXACT, PREFIX); the pattern (REGEX) */
    uint8_t match;      /* enum snapwire_match */
    uint32_t cluster;   /* index into clusters, or SNAPWIRE_NONE (see backend_count) */
    const char *source; /* "namespace/ingress-name", for logs and metrics */
    uint64_t max_body;  /* request body limit in bytes, or SNAPWIRE_BODY_DEFAULT/_UNLIMITED */
    uint8_t flags;      /* SNAPWIRE_ROUTE_* */
    /*
     * Value of the Strict-Transport-Security header added to responses sent over TLS
     * (e.g. "max-age=31536000; includeSubDomains"), "" for none. Never sent over plain HTTP
     * (RFC 6797 7.2).
     */
    const char *hsts;
    /* ---- v4: Gateway routes (all zero for an Ingress route) ---- */
    uint8_t method; /* enum snapwire_method; ANY matches every method */
    /* conditions ANDed with the path and method: conds[first_cond .. +cond_count) */
    uint32_t first_cond, cond_count;
    /*
     * Weighted backends: backends[first_backend .. +backend_count). backend_count 0: the
     * route goes to cluster (SNAPWIRE_NONE: the route answers 500, unless a RequestRedirect
     * filter answers first). With backends, cluster is ignored (SNAPWIRE_NONE).
     */
    uint32_t first_backend, backend_count;
    /* filters[first_filter .. +filter_count), run in this order */
    uint32_t first_filter, filter_count;
    /* SNAPWIRE_TIMEOUT_*: whole exchange (request) and each upstream attempt (backend) */
    uint32_t request_timeout_ms, backend_timeout_ms;
    /*
     * Retries after the first attempt (0 = none, at most SNAPWIRE_MAX_RETRIES), for
     * idempotent requests or any request whose body was not sent yet. A response with a
     * status whose bit is set is retried (bit i of lo = 500 + i, bit i of hi = 564 + i);
     * connect failures and attempts that got no response head always are. backoff: the
     * wait before the first retry (doubling, with jitter), 0 = at once.
     */
    uint8_t retry_attempts;
    uint64_t retry_codes_lo, retry_codes_hi;
    uint32_t retry_backoff_ms;
};

/* A header or query-parameter condition of a route. */
enum snapwire_cond_kind {
    SNAPWIRE_COND_HEADER_EXACT = 1, /* some header called name has exactly value */
    SNAPWIRE_COND_HEADER_REGEX = 2, /* some header called name matches value (PCRE2, whole) */
    SNAPWIRE_COND_QUERY_EXACT = 3,  /* the first query parameter called name (case
                                       sensitive, as sent) has exactly value */
};

struct snapwire_cond {
    uint8_t kind;      /* enum snapwire_cond_kind */
    const char *name;  /* header names lower case */
    const char *value; /* exact value, or the pattern */
};

/*
 * One weighted backend of a route: traffic share weight / (sum of the route's weights).
 * cluster SNAPWIRE_NONE: a backendRef that does not resolve; its share answers 500. Weight 0
 * entries get no traffic; a route whose weights are all 0 answers 500.
 */
struct snapwire_backend {
    uint32_t cluster;
    uint32_t weight;
};

enum snapwire_filter_type {
    SNAPWIRE_FILTER_REQUEST_HEADERS = 1,  /* hdr edits on the request sent upstream */
    SNAPWIRE_FILTER_RESPONSE_HEADERS = 2, /* hdr edits on the response sent to the client */
    SNAPWIRE_FILTER_REDIRECT = 3,         /* answer with a redirect, no upstream */
    SNAPWIRE_FILTER_REWRITE = 4,          /* change Host and/or path before forwarding */
    SNAPWIRE_FILTER_MIRROR = 5,           /* copy the request to another cluster */
};

/* filter.path_mod (REDIRECT, REWRITE) */
enum snapwire_path_mod {
    SNAPWIRE_PATH_KEEP = 0,   /* the request's path */
    SNAPWIRE_PATH_FULL = 1,   /* path replaces the whole path (query kept) */
    SNAPWIRE_PATH_PREFIX = 2, /* path replaces the route's matched prefix (PREFIX routes) */
};

/*
 * A filter; only the fields of its type are meaningful, the others are zero / "" / NONE.
 *   REQUEST_HEADERS, RESPONSE_HEADERS: hdr_edits[first_edit .. +edit_count), applied in
 *     order (the controller orders them set, add, remove as the Gateway API does).
 *   REDIRECT: scheme ("" keeps the request's), hostname ("" keeps it), port (0: none given:
 *     the scheme's default when scheme is set, else the request's Host port), status (301,
 *     302, 303, 307, 308), path_mod + path.
 *   REWRITE: hostname ("" keeps Host), path_mod + path.
 *   MIRROR: cluster (SNAPWIRE_NONE: unresolved, nothing is mirrored), share in
 *     mirror_permille (0..1000) of the requests.
 */
struct snapwire_filter {
    uint8_t type; /* enum snapwire_filter_type */
    uint32_t first_edit, edit_count;
    const char *scheme;
    const char *hostname;
    uint16_t port;
    uint16_t status;
    uint8_t path_mod; /* enum snapwire_path_mod */
    const char *path;
    uint32_t cluster;
    uint32_t mirror_permille;
};

enum snapwire_hdr_op {
    SNAPWIRE_HDR_SET = 1,    /* replace every header called name with one "name: value" */
    SNAPWIRE_HDR_ADD = 2,    /* append "name: value" */
    SNAPWIRE_HDR_REMOVE = 3, /* drop every header called name (value "") */
};

struct snapwire_hdr_edit {
    uint8_t op;       /* enum snapwire_hdr_op */
    const char *name; /* an HTTP token, as the user wrote it (compared case-insensitively) */
    const char *value;
};

#define SNAPWIRE_MAX_WEIGHT 10000 /* endpoint weights are 1..SNAPWIRE_MAX_WEIGHT */

/* Defaults the controller sends when no annotation says otherwise (v6 cluster fields). */
#define SNAPWIRE_OD_CONSECUTIVE_DEFAULT 5
#define SNAPWIRE_OD_BASE_MS_DEFAULT 30000u
#define SNAPWIRE_OD_MAX_MS_DEFAULT 300000u
#define SNAPWIRE_OD_MAX_PERCENT_DEFAULT 50
#define SNAPWIRE_RB_PERCENT_DEFAULT 20
#define SNAPWIRE_RB_MIN_PER_SEC_DEFAULT 10
#define SNAPWIRE_HC_INTERVAL_MS_DEFAULT 5000u
#define SNAPWIRE_HC_TIMEOUT_MS_DEFAULT 1000u
#define SNAPWIRE_HC_HEALTHY_DEFAULT 2
#define SNAPWIRE_HC_UNHEALTHY_DEFAULT 3

struct snapwire_cluster {
    const char *name; /* "namespace/service:port" (TLS clusters: "namespace/service:port+tls") */
    uint8_t lb;       /* enum snapwire_lb */
    uint32_t first_endpoint;
    uint32_t endpoint_count;
    /* upstream TLS: the data plane connects to the endpoints with TLS when tls is 1 */
    uint8_t tls;
    const char *tls_sni; /* server name sent (SNI) and, with tls_ca, verified; "" = none */
    uint32_t tls_ca;     /* CA bundle (cert index) the upstream must chain to, or
                            SNAPWIRE_NONE: the upstream's certificate is not verified */
    /* ---- v5: balancing ---- */
    uint8_t hash_on;       /* enum snapwire_hash_on (ring_hash, maglev) */
    const char *hash_name; /* header name (lower case) or cookie name for HEADER / COOKIE */
    /*
     * Cookie affinity (strait.dev/affinity: cookie, as ingress-nginx): a request carrying
     * cookie affinity_cookie naming a ready endpoint goes there; otherwise the balancer picks
     * and the response sets the cookie. "" = none.
     */
    const char *affinity_cookie;
    /* ---- v6: resilience (docs/contract.md "Balancing and resilience") ---- */
    /*
     * Active health checks: HTTP GET hc_path ("" = no active checks; else starts with '/',
     * at most 1024 bytes) every hc_interval_ms (100..3600000, jittered by the data plane),
     * each probe given hc_timeout_ms (10..hc_interval_ms); a status in
     * [hc_status_lo, hc_status_hi] (100 <= lo <= hi <= 599) passes. hc_healthy passes in a
     * row make an unhealthy endpoint healthy again, hc_unhealthy failures in a row (1..100
     * each) take a healthy one out. hc_host: Host header sent ("" = the endpoint's
     * "address:port"). All zero / "" when hc_path is "".
     */
    const char *hc_path;
    const char *hc_host;
    uint32_t hc_interval_ms, hc_timeout_ms;
    uint16_t hc_status_lo, hc_status_hi;
    uint8_t hc_healthy, hc_unhealthy;
    /*
     * Passive outlier detection: od_consecutive failures in a row (0 = off, else 1..1000)
     * eject for od_base_ms (1000..3600000) times the ejection count, at most od_max_ms
     * (>= od_base_ms, <= 86400000), never more than od_max_percent (0..100) of the endpoints.
     */
    uint32_t od_consecutive;
    uint32_t od_base_ms, od_max_ms;
    uint8_t od_max_percent;
    /* Circuit breaking: limits per cluster over all workers, 0 = unlimited. */
    uint32_t cb_max_connections; /* upstream connections in use (idle pooled ones not) */
    uint32_t cb_max_pending;     /* requests waiting for an upstream connection */
    uint32_t cb_max_requests;    /* requests in flight to the cluster */
    /*
     * Retry budget per cluster (Linkerd): retries may add rb_percent (0..1000) % of the
     * cluster's requests plus rb_min_per_sec (0..100000) per second.
     */
    uint16_t rb_percent;
    uint32_t rb_min_per_sec;
    /* Slow start: a new endpoint's share ramps up linearly over slow_start_ms (0 = off,
     * at most 3600000). */
    uint32_t slow_start_ms;
};

/*
 * A certificate: a server certificate with its key (chain_pem: leaf first, then the
 * intermediates; key_pem: its private key) or a CA bundle (chain_pem: one or more CA
 * certificates; key_pem ""). The controller has checked that a server certificate parses,
 * matches its key and is within its validity period; the data plane still refuses (NACKs)
 * a snapshot whose PEM it cannot load. name is "namespace/secret-name" (logs, /snapshot);
 * fingerprint is the hex SHA-256 of the leaf (first) certificate's DER, not_after its expiry
 * (Unix seconds). The JSON dump never shows key_pem.
 */
struct snapwire_cert {
    const char *name;
    const char *chain_pem;
    const char *key_pem;
    const char *fingerprint;
    uint64_t not_after;
};

/* tls_host.client_verify */
enum snapwire_client_verify {
    SNAPWIRE_CLIENT_VERIFY_OFF = 0,      /* no client certificate asked for */
    SNAPWIRE_CLIENT_VERIFY_REQUIRED = 1, /* handshake fails without a valid one */
    SNAPWIRE_CLIENT_VERIFY_OPTIONAL = 2, /* asked for; none is fine, an invalid one is not */
};

/*
 * A TLS server name: host is lower case, "foo.com" or "*.foo.com" (one label), matched
 * against SNI, exact names before wildcards. cert and cert2 are the certificates served for
 * it (two when one is RSA and one ECDSA: each client gets the one it supports; cert2
 * SNAPWIRE_NONE otherwise). client_ca is the CA bundle client certificates must chain to
 * when client_verify is not OFF (SNAPWIRE_NONE when OFF).
 */
struct snapwire_tls_host {
    const char *host;
    uint32_t cert;
    uint32_t cert2;
    uint32_t client_ca;
    uint8_t client_verify; /* enum snapwire_client_verify */
};

struct snapwire_endpoint {
    const char *address; /* IPv4 or IPv6 literal, no brackets */
    uint16_t port;
    uint8_t ready;   /* 1 = serving; the controller only sends ready endpoints today */
    uint32_t weight; /* v6: 1..SNAPWIRE_MAX_WEIGHT (strait.dev/endpoint-weights; 1 by default) */
};

/*
 * v7 mesh directory: what a sidecar's outbound listener needs to send a connection for a
 * Service's ClusterIP:port to its pods.
 */
enum snapwire_mesh_proto {
    SNAPWIRE_MESH_PROTO_DETECT = 0, /* sniff: HTTP/1 if the first bytes look like a request line */
    SNAPWIRE_MESH_PROTO_HTTP = 1,   /* appProtocol http / kubernetes.io/h1c, or port name http* */
    SNAPWIRE_MESH_PROTO_OPAQUE = 2, /* opaque TCP: strait.dev/opaque-ports, or appProtocol tcp /
                                       other */
};
#define SNAPWIRE_MESH_PROTO_MAX_ SNAPWIRE_MESH_PROTO_OPAQUE

struct snapwire_mesh_service {
    const char *ns, *name; /* the Service */
    const char *address;   /* a ClusterIP (canonical inet_ntop text, IPv4 or IPv6); one record
                              per ClusterIP (dual stack: two) and Service port */
    uint16_t port;         /* the Service port */
    uint32_t cluster;      /* index into clusters: that port's endpoints (pod IP : targetPort),
                              or SNAPWIRE_NONE */
    uint8_t proto;         /* enum snapwire_mesh_proto */
    uint8_t mtls;          /* 1 when every ready endpoint's pod is meshed: the caller's sidecar
                              must use mTLS; 0: plain TCP to the endpoints */
    uint32_t first_id, id_count; /* mesh_ids[first_id, +id_count): SPIFFE URIs the pods run as,
                                    sorted, no duplicates; 0 when mtls is 0 */
};

struct snapwire_mesh_id {
    const char *uri; /* spiffe://<trust-domain>/ns/<ns>/sa/<sa> */
};

/*
 * v7 authorization (AuthorizationPolicy, docs/mesh.md "Authorization"): for a Service port,
 * a DENY policy with a matching principal denies; else, when any ALLOW policy targets the
 * port, the caller must match a principal of one; else meta.authz_default_deny decides.
 */
enum snapwire_authz_action {
    SNAPWIRE_AUTHZ_ALLOW = 1,
    SNAPWIRE_AUTHZ_DENY = 2,
};

enum snapwire_principal_kind {
    SNAPWIRE_PRINCIPAL_IDENTITY = 1,      /* value: a spiffe:// URI, exact */
    SNAPWIRE_PRINCIPAL_NAMESPACE = 2,     /* value: a namespace (spiffe://<td>/ns/<value>/sa/any) */
    SNAPWIRE_PRINCIPAL_AUTHENTICATED = 3, /* value "": any verified identity */
    SNAPWIRE_PRINCIPAL_UNAUTHENTICATED = 4, /* value "": plaintext callers */
};
#define SNAPWIRE_PRINCIPAL_MAX_ SNAPWIRE_PRINCIPAL_UNAUTHENTICATED

struct snapwire_authz {                        /* one policy */
    const char *ns, *name;                     /* the target Service */
    uint16_t port;                             /* Service port, 0 = all */
    uint8_t action;                            /* enum snapwire_authz_action */
    const char *source;                        /* "ns/policy-name", for logs and metrics */
    uint32_t first_principal, principal_count; /* principals[first, +count), count >= 1 */
};

struct snapwire_principal {
    uint8_t kind; /* enum snapwire_principal_kind */
    const char *value;
};

struct snapwire_snapshot {
    uint64_t generation;
    struct snapwire_meta meta;
    uint32_t n_listeners, n_vhosts, n_routes, n_clusters, n_endpoints, n_certs, n_tls_hosts;
    uint32_t n_conds, n_backends, n_filters, n_hdr_edits;
    uint32_t n_mesh_services, n_mesh_ids; /* v7 */
    uint32_t n_authz, n_principals;       /* v7 */
    struct snapwire_listener *listeners;
    struct snapwire_vhost *vhosts;
    struct snapwire_route *routes;
    struct snapwire_cluster *clusters;
    struct snapwire_endpoint *endpoints;
    struct snapwire_cert *certs;
    struct snapwire_tls_host *tls_hosts;
    struct snapwire_cond *conds;
    struct snapwire_backend *backends;
    struct snapwire_filter *filters;
    struct snapwire_hdr_edit *hdr_edits;
    struct snapwire_mesh_service *mesh_services; /* sorted by (address, port) */
    struct snapwire_mesh_id *mesh_ids;
    struct snapwire_authz *authz; /* sorted by (ns, name, port, source) */
    struct snapwire_principal *principals;
    void *arena_; /* owned by snapwire_decode(); NULL for caller-built snapshots */
};

/*
 * Encodes s into a new frame stamped with generation. Returns 0 and sets *out (malloc'd, free
 * with free()) and *out_len; returns -1 with err filled if s is inconsistent (same checks as
 * decode). NULL strings encode as "".
 */
int snapwire_encode(const struct snapwire_snapshot *s, uint64_t generation, uint8_t **out,
                    size_t *out_len, char *err, size_t errlen);

/*
 * Reads the frame header at buf. Returns the total frame size (header + payload) when at
 * least a full header is present and sane, -2 when len < SNAPWIRE_HEADER_SIZE, -1 with err
 * filled when the header is invalid (bad magic, version, size above SNAPWIRE_MAX_FRAME).
 * Lets a stream reader know how many bytes to wait for before calling snapwire_decode().
 */
long snapwire_frame_size(const void *buf, size_t len, char *err, size_t errlen);

/* Generation stamped in a frame header (buf must hold at least a header). */
uint64_t snapwire_frame_generation(const void *buf);

/*
 * Fully validates the frame in buf[0..len) and decodes it into *out (free with
 * snapwire_free). Returns 0, or -1 with err filled and *out untouched.
 */
int snapwire_decode(const void *buf, size_t len, struct snapwire_snapshot *out, char *err,
                    size_t errlen);

void snapwire_free(struct snapwire_snapshot *s);

/*
 * Same-content test for two encoded frames: equal payloads (generation ignored). Lets the
 * controller skip republishing an identical snapshot.
 */
int snapwire_same_payload(const void *a, size_t alen, const void *b, size_t blen);

/*
 * Human-readable JSON dump of a snapshot (for /snapshot and --dump; keys in
 * docs/contract.md). Returns a malloc'd NUL-terminated string, or NULL on allocation failure.
 */
char *snapwire_to_json(const struct snapwire_snapshot *s);

/*
 * Replies from a data plane to the controller, one text line each:
 *   "ACK <generation>\n"  or  "NACK <generation> <reason>\n"
 * snapwire_reply_format writes one into buf (always NUL-terminated, reason sanitised to one
 * line) and returns its length. snapwire_reply_parse parses one line (with or without the
 * trailing newline): returns 1 for ACK, 0 for NACK, -1 if malformed; reason (may be NULL)
 * receives the NACK text.
 */
size_t snapwire_reply_format(char *buf, size_t buflen, int ack, uint64_t generation,
                             const char *reason);
int snapwire_reply_parse(const char *line, size_t len, uint64_t *generation, char *reason,
                         size_t reasonlen);

#endif
