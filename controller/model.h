/*
 * model: typed Kubernetes objects the controller cares about, and the cache that holds them.
 *
 * Every object starts with struct model_meta and lives entirely in its own pool (one
 * allocation chain), so dropping an object is one model_object_free() call. Strings are never
 * NULL unless documented; "" means absent.
 */
#ifndef STRAIT_MODEL_H
#define STRAIT_MODEL_H

#include <stddef.h>
#include <stdint.h>

enum model_kind {
    MODEL_KIND_INGRESS_CLASS = 0,
    MODEL_KIND_INGRESS,
    MODEL_KIND_SERVICE,
    MODEL_KIND_ENDPOINT_SLICE,
    MODEL_KIND_SECRET,
    MODEL_KIND_GATEWAY,      /* strait.dev/v1alpha1; routed by snapbuild (gwbuild) */
    MODEL_KIND_POD,          /* only with --mesh in cluster mode: the mesh directory (meshbuild) */
    MODEL_KIND_AUTHZ_POLICY, /* strait.dev/v1alpha1 AuthorizationPolicy; used with --mesh */
    MODEL_KIND_COUNT
};

struct model_pool;

struct model_meta {
    struct model_pool *pool; /* owns this object and everything it points to */
    enum model_kind kind;
    const char *ns; /* "" for cluster-scoped kinds (IngressClass) */
    const char *name;
    const char *source;           /* where it came from, e.g. the file path; used in logs */
    const char *uid;              /* metadata.uid, "" when absent (file mode); for Events */
    const char *resource_version; /* metadata.resourceVersion, "" when absent */
    int has_created;              /* metadata.creationTimestamp present and parsed */
    int64_t created_sec;
    long created_nsec;
};

struct model_ingress_class {
    struct model_meta meta;
    const char *controller;
    int is_default; /* annotation ingressclass.kubernetes.io/is-default-class == "true" */
};

struct model_backend {
    const char *service;   /* service.name */
    long port_number;      /* service.port.number, 0 when a name is used */
    const char *port_name; /* service.port.name, "" when a number is used */
};

enum model_path_type { MODEL_PATH_EXACT = 1, MODEL_PATH_PREFIX, MODEL_PATH_IMPL_SPECIFIC };

struct model_path {
    const char *path;
    enum model_path_type type;
    struct model_backend backend;
};

struct model_rule {
    const char *host; /* lower case, "" = any host */
    struct model_path *paths;
    size_t n_paths;
};

/* One spec.tls entry. hosts are lower case; an entry listing none covers the hosts of the
 * Ingress's rules. secret "" (no secretName) means "TLS for these hosts with the default
 * certificate". */
struct model_tls {
    const char **hosts;
    size_t n_hosts;
    const char *secret;
};

/* Annotation strait.dev/auth-tls-verify-client (snapwire's enum snapwire_client_verify). */
enum model_client_verify {
    MODEL_CLIENT_VERIFY_OFF = 0,
    MODEL_CLIENT_VERIFY_ON = 1,
    MODEL_CLIENT_VERIFY_OPTIONAL = 2,
};

/* A Secret reference from an annotation: NAME (the Ingress's namespace) or NS/NAME. */
struct model_secret_ref {
    const char *ns;   /* "" when the annotation is absent */
    const char *name; /* "" when the annotation is absent */
};

/*
 * A balancing policy as one object's annotations give it (docs/balancing.md): the balancing
 * (strait.dev/load-balance, hash-by, affinity, session-cookie-name) and resilience settings
 * (health checks, outlier detection, circuit breaking, retry budget, slow start) of a
 * Service, or an Ingress's overrides of them. Only the fields whose MODEL_POL_* bit is in
 * set were given (and are valid); model_policy_resolve merges a Service's and an Ingress's
 * and fills in the defaults. Values use snapwire's enums and units (milliseconds).
 */
enum model_policy_field {
    MODEL_POL_LB = 1u << 0,            /* lb */
    MODEL_POL_HASH = 1u << 1,          /* hash_on, hash_name */
    MODEL_POL_AFFINITY = 1u << 2,      /* affinity */
    MODEL_POL_COOKIE = 1u << 3,        /* cookie */
    MODEL_POL_HC_PATH = 1u << 4,       /* hc_path */
    MODEL_POL_HC_HOST = 1u << 5,       /* hc_host */
    MODEL_POL_HC_INTERVAL = 1u << 6,   /* hc_interval_ms */
    MODEL_POL_HC_TIMEOUT = 1u << 7,    /* hc_timeout_ms */
    MODEL_POL_HC_STATUS = 1u << 8,     /* hc_status_lo, hc_status_hi */
    MODEL_POL_HC_HEALTHY = 1u << 9,    /* hc_healthy */
    MODEL_POL_HC_UNHEALTHY = 1u << 10, /* hc_unhealthy */
    MODEL_POL_OD_CONSECUTIVE = 1u << 11,
    MODEL_POL_OD_BASE = 1u << 12,
    MODEL_POL_OD_MAX = 1u << 13,
    MODEL_POL_OD_PERCENT = 1u << 14,
    MODEL_POL_CB_CONNECTIONS = 1u << 15,
    MODEL_POL_CB_PENDING = 1u << 16,
    MODEL_POL_CB_REQUESTS = 1u << 17,
    MODEL_POL_RB_PERCENT = 1u << 18,
    MODEL_POL_RB_MIN = 1u << 19,
    MODEL_POL_SLOW_START = 1u << 20,
};

#define MODEL_SESSION_COOKIE_DEFAULT "INGRESSCOOKIE" /* as ingress-nginx */

struct model_policy {
    uint32_t set;          /* MODEL_POL_* bits; resolved policies have every bit */
    uint8_t lb;            /* enum snapwire_lb */
    uint8_t hash_on;       /* enum snapwire_hash_on */
    const char *hash_name; /* lower-case header or cookie name, "" otherwise; never NULL when
                              MODEL_POL_HASH is set */
    int affinity;          /* strait.dev/affinity: cookie (1) or none (0) */
    const char *cookie;    /* strait.dev/session-cookie-name; resolved: "" without affinity */
    const char *hc_path;   /* "" = no active health checks */
    const char *hc_host;   /* "" = the endpoint's address:port */
    uint32_t hc_interval_ms, hc_timeout_ms;
    uint16_t hc_status_lo, hc_status_hi;
    uint8_t hc_healthy, hc_unhealthy;
    uint32_t od_consecutive, od_base_ms, od_max_ms;
    uint8_t od_max_percent;
    uint32_t cb_max_connections, cb_max_pending, cb_max_requests;
    uint16_t rb_percent;
    uint32_t rb_min_per_sec;
    uint32_t slow_start_ms;
};

/*
 * The policy a backend gets: each field from ing (an Ingress's overrides, may be NULL) when
 * it sets it, else from svc (the Service's, may be NULL), else the default (ewma, no hash, no
 * affinity, no active checks, SNAPWIRE_*_DEFAULT). hash-by is kept only for ring_hash and
 * maglev; hash-by without load-balance at the same or a higher level means ring_hash (or the
 * Service's maglev). Combinations that only a merge can make are made consistent: the
 * health-check timeout is cut to the interval and the max ejection time raised to the base.
 * Health-check fields are all 0 / "" without a path, outlier fields all 0 with
 * outlier-consecutive-failures "0" (as snapwire wants them). Strings point into svc's or ing's
 * pools (or are literals). Every field is set in *out, and out->set has every bit.
 */
void model_policy_resolve(const struct model_policy *svc, const struct model_policy *ing,
                          struct model_policy *out);

/* Whether a and b (resolved) have the same resilience settings (hc, od, cb, rb, slow start). */
int model_policy_same_resilience(const struct model_policy *a, const struct model_policy *b);

/* Total order on resolved policies (every field). */
int model_policy_cmp(const struct model_policy *a, const struct model_policy *b);

/* Stable FNV-1a hash of a resolved policy's resilience settings (the "+p=" of cluster names). */
uint32_t model_policy_resilience_hash(const struct model_policy *p);

/* strait.dev/endpoint-weights entry: an endpoint's pod name or IP address and its weight. */
struct model_weight {
    const char *name;
    uint32_t weight; /* 1..10000 */
};

/* A Service annotation that was not usable: the Service is served with the key's default. */
struct model_problem {
    const char *key;     /* the annotation */
    const char *message; /* "annotation KEY \"VALUE\" is not ..." */
};

struct model_ingress {
    struct model_meta meta;
    const char *class_name;       /* spec.ingressClassName, NULL if unset */
    const char *class_annotation; /* kubernetes.io/ingress.class, NULL if unset */
    /*
     * Annotation strait.dev/proxy-body-size, with snapwire's encoding (SNAPWIRE_BODY_*): 0 when
     * absent (the data plane's default applies), UINT64_MAX for "0" (unlimited), else bytes.
     * Applies to every route of the Ingress and to its defaultBackend.
     */
    uint64_t max_body;
    int has_default_backend;
    struct model_backend default_backend;
    struct model_rule *rules;
    size_t n_rules;
    struct model_tls *tls; /* spec.tls */
    size_t n_tls;
    /* TLS annotations (see docs/contract.md "Ingress annotations") */
    int ssl_redirect;       /* strait.dev/ssl-redirect, default 1 */
    int force_ssl_redirect; /* strait.dev/force-ssl-redirect, default 0 */
    const char *hsts;       /* Strict-Transport-Security value, "" without strait.dev/hsts */
    struct model_secret_ref auth_tls_secret;  /* strait.dev/auth-tls-secret (a ca.crt) */
    enum model_client_verify client_verify;   /* strait.dev/auth-tls-verify-client, default on */
    int backend_https;                        /* strait.dev/backend-protocol: HTTPS */
    struct model_secret_ref proxy_ssl_secret; /* strait.dev/proxy-ssl-secret (a ca.crt) */
    const char *proxy_ssl_name;               /* strait.dev/proxy-ssl-name, "" for the default */
    /* strait.dev/load-balance, health checks, ... (docs/balancing.md): overrides the
     * Service's policy field by field for this Ingress's backends */
    struct model_policy policy;
};

struct model_service_port {
    const char *name; /* "" when unnamed */
    long port;
    int app_https;            /* appProtocol is "https" (any case): the backend speaks TLS */
    const char *app_protocol; /* spec.ports[].appProtocol as written, "" when absent */
    int not_tcp;              /* spec.ports[].protocol is set and not TCP (UDP, SCTP) */
};

struct model_service {
    struct model_meta meta;
    struct model_service_port *ports;
    size_t n_ports;
    struct model_policy policy;   /* from its annotations, bad ones left unset */
    struct model_weight *weights; /* strait.dev/endpoint-weights, sorted by name, unique */
    size_t n_weights;
    struct model_problem *problems; /* the annotations that were not usable, in key order */
    size_t n_problems;
    /* spec.clusterIPs (else spec.clusterIP) as written: "None" for a headless Service */
    const char **cluster_ips;
    size_t n_cluster_ips;
    const char *opaque_ports; /* annotation strait.dev/opaque-ports, "" when absent */
};

struct model_slice_port {
    const char *name; /* "" when unnamed */
    long port;        /* 0 when unset ("all ports"), which we cannot route to */
};

struct model_slice_endpoint {
    const char **addresses;
    size_t n_addresses;
    int ready;               /* conditions.ready != false */
    const char *target_name; /* targetRef.name (the pod), "" when absent */
    int target_pod;          /* targetRef.kind is Pod */
};

enum model_address_type { MODEL_ADDR_IPV4 = 1, MODEL_ADDR_IPV6, MODEL_ADDR_FQDN };

struct model_endpoint_slice {
    struct model_meta meta;
    const char *service_name; /* label kubernetes.io/service-name, "" if missing */
    enum model_address_type address_type;
    struct model_slice_port *ports;
    size_t n_ports;
    struct model_slice_endpoint *endpoints;
    size_t n_endpoints;
};

/*
 * A Secret of type kubernetes.io/tls, or of any other type holding a ca.crt (a CA bundle);
 * other Secrets are not kept. The fields are the decoded bytes of data["tls.crt"],
 * data["tls.key"] and data["ca.crt"] (PEM text, not NUL-terminated: use the lengths); NULL
 * with length 0 when absent (a kubernetes.io/tls Secret always has the first two). What the
 * bytes hold is checked by snapbuild (certcheck), not here: a bad certificate must not make
 * the object vanish, or a host could not keep its last good one.
 */
/*
 * A Pod, for the mesh directory: who it runs as and whether it carries the sidecar. meshed:
 * annotation strait.dev/inject "enabled", or a container or initContainer named
 * "strait-proxy" (the injected sidecar); never for a hostNetwork pod (not injected).
 */
struct model_pod {
    struct model_meta meta;
    const char *service_account; /* spec.serviceAccountName, "default" when unset */
    const char **ips;            /* status.podIPs (else status.podIP) */
    size_t n_ips;
    int meshed;
    int host_network;  /* spec.hostNetwork true: its IPs are its node's */
    const char *phase; /* status.phase, "" when absent */
};

/* Whether pod has finished (phase Succeeded or Failed): its IP may be another pod's already. */
int model_pod_finished(const struct model_pod *pod);

struct model_secret {
    struct model_meta meta;
    const char *type;
    const unsigned char *tls_crt;
    size_t tls_crt_len;
    const unsigned char *tls_key;
    size_t tls_key_len;
    const unsigned char *ca_crt;
    size_t ca_crt_len;
};

/*
 * A strait.dev/v1alpha1 Gateway (crds/strait.dev_gateways.yaml), decoded by gwdecode with the
 * CRD's defaults applied and its rules checked again (file mode has no API server to run the
 * schema). What it does not check: regular expressions (snapbuild compiles them), references
 * to other objects (Services, Secrets, listenerNames against the listeners).
 * Limits from the CRD hold, so counts fit the sizes below. Names and hostnames are lower case.
 */
enum model_gw_protocol { MODEL_GW_HTTP = 1, MODEL_GW_HTTPS };

/* A listener's tls.certificateRefs[] entry; group is "" and kind "Secret" (the only ones). */
struct model_gw_cert_ref {
    const char *ns; /* resolved: the Gateway's namespace when unset */
    const char *name;
};

struct model_gw_listener {
    const char *name;
    long port;
    enum model_gw_protocol protocol;
    const char *hostname; /* "" = every host; may start with "*." (one or more labels) */
    struct model_gw_cert_ref *cert_refs; /* HTTPS only (at least one), none for HTTP */
    size_t n_cert_refs;
};

enum model_gw_path_type { MODEL_GW_PATH_EXACT = 1, MODEL_GW_PATH_PREFIX, MODEL_GW_PATH_REGEX };
enum model_gw_value_type { MODEL_GW_VALUE_EXACT = 1, MODEL_GW_VALUE_REGEX };
/* 0 = any method; the others in the CRD's enum order */
enum model_gw_method {
    MODEL_GW_METHOD_ANY = 0,
    MODEL_GW_METHOD_GET,
    MODEL_GW_METHOD_HEAD,
    MODEL_GW_METHOD_POST,
    MODEL_GW_METHOD_PUT,
    MODEL_GW_METHOD_DELETE,
    MODEL_GW_METHOD_CONNECT,
    MODEL_GW_METHOD_OPTIONS,
    MODEL_GW_METHOD_TRACE,
    MODEL_GW_METHOD_PATCH,
};

/* A header or query parameter condition (query parameters are always EXACT). */
struct model_gw_kv_match {
    enum model_gw_value_type type;
    const char *name; /* headers: as written (compare case-insensitively) */
    const char *value;
};

/* One match (its conditions ANDed). A match without path has PathPrefix "/". */
struct model_gw_match {
    enum model_gw_path_type path_type;
    const char *path; /* Exact/PathPrefix: starts with '/'; REGEX: the pattern, unchecked */
    struct model_gw_kv_match *headers;
    size_t n_headers;
    struct model_gw_kv_match *query;
    size_t n_query;
    enum model_gw_method method;
};

struct model_gw_header {
    const char *name;
    const char *value;
};

struct model_gw_header_mod {
    struct model_gw_header *set;
    size_t n_set;
    struct model_gw_header *add;
    size_t n_add;
    const char **remove;
    size_t n_remove;
};

enum model_gw_filter_type {
    MODEL_GW_FILTER_REQUEST_HEADER = 1, /* RequestHeaderModifier */
    MODEL_GW_FILTER_RESPONSE_HEADER,    /* ResponseHeaderModifier */
    MODEL_GW_FILTER_REDIRECT,           /* RequestRedirect */
    MODEL_GW_FILTER_URL_REWRITE,        /* URLRewrite */
    MODEL_GW_FILTER_MIRROR,             /* RequestMirror */
};

/* path of RequestRedirect / URLRewrite: KEEP keeps the request's path */
enum model_gw_path_mod { MODEL_GW_PATH_KEEP = 0, MODEL_GW_PATH_FULL, MODEL_GW_PATH_PREFIX_MATCH };

struct model_gw_backend_ref {
    const char *name; /* Service name */
    const char *ns;   /* resolved: the Gateway's namespace when unset */
    long port;
    long weight; /* 0..1000000, default 1; unused for a mirror */
    /* backendRefs[].policy: overrides of the Service's policy, field by field, as an
     * Ingress's annotations (set 0: none; always so for a mirror) */
    struct model_policy policy;
};

/* One filter; only the fields of its type are set. */
struct model_gw_filter {
    enum model_gw_filter_type type;
    struct model_gw_header_mod headers; /* REQUEST_HEADER, RESPONSE_HEADER */
    /* REDIRECT: scheme ("" keeps it), hostname ("" keeps it), port (0: none given), status */
    const char *scheme;
    const char *hostname; /* also URL_REWRITE's new Host ("" keeps it) */
    long port;
    int status_code; /* 301 302 303 307 308, default 302 */
    /* REDIRECT, URL_REWRITE */
    enum model_gw_path_mod path_mod;
    const char *path; /* the new path or prefix; "" with MODEL_GW_PATH_KEEP */
    /* MIRROR */
    struct model_gw_backend_ref mirror;
    int mirror_percent; /* 0..100, default 100 */
};

struct model_gw_rule {
    struct model_gw_match *matches; /* at least one (the default match when unset) */
    size_t n_matches;
    struct model_gw_filter *filters; /* in the order given */
    size_t n_filters;
    struct model_gw_backend_ref *backends;
    size_t n_backends;
    /* milliseconds; -1 = unset (the data plane's default), 0 = no limit ("0s") */
    int64_t request_timeout_ms;
    int64_t backend_timeout_ms;
    int has_retry;
    int retry_attempts;  /* 0..10 */
    int retry_codes[16]; /* 500..599, unique; none = connect failures and no response head */
    size_t n_retry_codes;
    int64_t retry_backoff_ms; /* 0 when unset: retries start at once */
};

struct model_gw_route {
    const char *name; /* "" when unset */
    const char **hostnames;
    size_t n_hostnames;
    const char **listener_names; /* none = every listener whose hostname fits */
    size_t n_listener_names;
    struct model_gw_rule *rules;
    size_t n_rules;
};

struct model_gateway {
    struct model_meta meta;
    int64_t generation; /* metadata.generation, 0 when absent (file mode) */
    /*
     * NULL for a Gateway gwdecode accepted. Otherwise the decoder's reason (with its field
     * path): the Gateway is kept (kube_decode_keep) only so that its status can say why it is
     * not served; it has no listeners and no routes.
     */
    const char *invalid;
    struct model_gw_listener *listeners;
    size_t n_listeners;
    struct model_gw_route *routes;
    size_t n_routes;
};

/*
 * A strait.dev/v1alpha1 AuthorizationPolicy (crds/strait.dev_authorizationpolicies.yaml),
 * decoded by authzdecode with the CRD's defaults and rules (docs/mesh.md "Authorization").
 * The callers it names are the union of its from[] entries: serviceAccounts are kept as
 * (namespace, name) and become SPIFFE IDs when the trust domain is known (authzbuild).
 */
enum model_authz_action { MODEL_AUTHZ_ALLOW = 1, MODEL_AUTHZ_DENY = 2 };

struct model_authz_sa {
    const char *ns; /* resolved: the policy's namespace when unset */
    const char *name;
};

/* One from[] entry: it matches when any of its fields does. */
struct model_authz_source {
    const char **identities; /* spiffe:// URIs */
    size_t n_identities;
    struct model_authz_sa *service_accounts;
    size_t n_service_accounts;
    const char **namespaces;
    size_t n_namespaces;
    int authenticated;   /* any verified mesh identity */
    int unauthenticated; /* plaintext callers */
};

struct model_authz_policy {
    struct model_meta meta;
    int64_t generation; /* metadata.generation, 0 when absent (file mode) */
    /* NULL when valid; else the decoder's reason with its field path (kept for its status:
     * it has no target and no sources) */
    const char *invalid;
    const char *target; /* spec.targetRef.name: a Service in the policy's namespace */
    long port;          /* spec.port, 0 = every port */
    enum model_authz_action action;
    struct model_authz_source *from;
    size_t n_from;
};

/* ---- pools ---- */

/* Creates a pool holding a zeroed object of size bytes; returns the object or NULL. */
void *model_object_new(size_t size, enum model_kind kind);
/* Zeroed memory from obj's pool, NULL on allocation failure. */
void *model_alloc(struct model_meta *obj, size_t size);
/* Copy of s (NULL → "") in obj's pool. */
const char *model_strdup(struct model_meta *obj, const char *s);
void model_object_free(struct model_meta *obj);

/* Name of a kind as Kubernetes spells it ("Ingress"). */
const char *model_kind_name(enum model_kind kind);

/* "ns/name", or "name" for cluster-scoped objects, into buf; returns buf. */
const char *model_object_id(const struct model_meta *m, char *buf, size_t n);

/*
 * A logfmt value for s: s itself when it needs no quoting, else log_quote(s) in buf; empty
 * strings become "". Returns a pointer valid while buf is.
 */
const char *model_log_value(char *buf, size_t n, const char *s);

/* ---- cache ---- */

struct model_list {
    struct model_meta **items;
    size_t n, cap;
};

/* The set of known objects per kind. After model_cache_seal() each list is sorted by
 * namespace/name with no duplicates, so lookups can bisect. */
struct model_cache {
    struct model_list kinds[MODEL_KIND_COUNT];
    unsigned n_rejected; /* object_rejected lines logged while filling and sealing it */
};

void model_cache_init(struct model_cache *c);
/* Takes ownership of obj (freed on failure). Returns 0, -1 on allocation failure. */
int model_cache_add(struct model_cache *c, struct model_meta *obj);
/*
 * Sorts every kind by namespace/name and drops later duplicates of the same identity (the
 * first added wins, so callers add in a deterministic order), logging object_rejected for
 * each one dropped.
 */
void model_cache_seal(struct model_cache *c);
/* Bisects a sealed cache; NULL when absent. */
struct model_meta *model_cache_find(const struct model_cache *c, enum model_kind kind,
                                    const char *ns, const char *name);

/*
 * Incremental updates of a sealed cache (cluster mode), which stays sealed.
 * model_cache_put takes ownership of obj (freed on failure) and stores it in place of the
 * object with the same kind/namespace/name, freeing that one. Returns 1 when it replaced an
 * object, 0 when it inserted a new one, -1 on allocation failure (the cache is unchanged).
 */
int model_cache_put(struct model_cache *c, struct model_meta *obj);
/* Removes and frees one object. Returns 1 if it was there, 0 if not. */
int model_cache_remove(struct model_cache *c, enum model_kind kind, const char *ns,
                       const char *name);
/*
 * Replaces every object of kind in c with the objects of that kind in from (sealed; other
 * kinds of from are ignored). The objects move: from's list of that kind is left empty.
 */
void model_cache_replace_kind(struct model_cache *c, enum model_kind kind,
                              struct model_cache *from);
void model_cache_free(struct model_cache *c);

#endif
