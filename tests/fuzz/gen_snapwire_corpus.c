/*
 * gen_snapwire_corpus: writes the valid seed frames of tests/fuzz/corpus/snapwire/ (one file
 * per shape) with snapwire_encode, so seeds follow the format when it changes. Corrupted and
 * truncated seeds are derived from these by hand (docs/fuzzing.md). Not part of any build.
 *   clang -Icommon tests/fuzz/gen_snapwire_corpus.c common/snapwire.c -lyajl -lz -o gen
 *   ./gen tests/fuzz/corpus/snapwire
 */
#include "snapwire.h"

#include <stdio.h>
#include <stdlib.h>

static void emit(const char *dir, const char *name, const struct snapwire_snapshot *s, uint64_t gen)
{
    uint8_t *buf;
    size_t len;
    char err[256], path[512];
    FILE *f;

    if (snapwire_encode(s, gen, &buf, &len, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    struct snapwire_listener l[] = {{"http", "", 8080, SNAPWIRE_PROTO_HTTP},
                                    {"https", "::", 8443, SNAPWIRE_PROTO_HTTPS}};
    struct snapwire_vhost v[] = {{"", 0, 1}, {"*.foo.com", 1, 2}, {"foo.com", 3, 1}};
    struct snapwire_route r[] = {{.path = "/",
                                  .match = SNAPWIRE_MATCH_PREFIX,
                                  .cluster = 0,
                                  .source = "default/catch-all",
                                  .max_body = SNAPWIRE_BODY_DEFAULT,
                                  .hsts = ""},
                                 {.path = "/api/v1",
                                  .match = SNAPWIRE_MATCH_EXACT,
                                  .cluster = 1,
                                  .source = "ns/api",
                                  .max_body = 1024,
                                  .flags = SNAPWIRE_ROUTE_SSL_REDIRECT,
                                  .hsts = "max-age=31536000; includeSubDomains"},
                                 {.path = "/api",
                                  .match = SNAPWIRE_MATCH_PREFIX,
                                  .cluster = 1,
                                  .source = "ns/api",
                                  .max_body = 10ull << 20,
                                  .hsts = ""},
                                 {.path = "/caf\xc3\xa9",
                                  .match = SNAPWIRE_MATCH_PREFIX,
                                  .cluster = 2,
                                  .source = "ns/\"quoted\"\\",
                                  .max_body = SNAPWIRE_BODY_UNLIMITED,
                                  .hsts = ""}};
    /* version 4: Gateway routes with every new section and route field */
    struct snapwire_vhost gv[] = {{"*.gw.example", 0, 2}, {"gw.example", 2, 2}};
    struct snapwire_route gr[] = {
        {.path = "/shop",
         .match = SNAPWIRE_MATCH_PREFIX,
         .cluster = SNAPWIRE_NONE,
         .source = "ns/gw-route",
         .flags = SNAPWIRE_ROUTE_WILD_ANY | SNAPWIRE_ROUTE_TLS_ONLY,
         .method = SNAPWIRE_METHOD_POST,
         .first_cond = 0,
         .cond_count = 3,
         .first_backend = 0,
         .backend_count = 3,
         .first_filter = 0,
         .filter_count = 3,
         .request_timeout_ms = 10000,
         .backend_timeout_ms = SNAPWIRE_TIMEOUT_NONE,
         .retry_attempts = 2,
         .retry_codes_lo = (1ull << 2) | (1ull << 3),
         .retry_codes_hi = 1ull << 35,
         .retry_backoff_ms = 100},
        {.path = "^/v[0-9]+/items/[^/]+$",
         .match = SNAPWIRE_MATCH_REGEX,
         .cluster = 1,
         .source = "ns/gw-route",
         .flags = SNAPWIRE_ROUTE_PLAIN_ONLY,
         .first_cond = 3,
         .cond_count = 1,
         .first_filter = 3,
         .filter_count = 1},
        {.path = "/old",
         .match = SNAPWIRE_MATCH_EXACT,
         .cluster = SNAPWIRE_NONE,
         .source = "ns/gw-redirect",
         .first_filter = 4,
         .filter_count = 1},
        {.path = "/", .match = SNAPWIRE_MATCH_PREFIX, .cluster = 0, .source = "ns/ingress"}};
    struct snapwire_cond gc[] = {{SNAPWIRE_COND_HEADER_EXACT, "x-env", "canary"},
                                 {SNAPWIRE_COND_HEADER_REGEX, "user-agent", "^curl/.*"},
                                 {SNAPWIRE_COND_QUERY_EXACT, "Debug", "1"},
                                 {SNAPWIRE_COND_HEADER_EXACT, "x-empty", ""}};
    struct snapwire_backend gb[] = {{0, 90}, {1, 10}, {SNAPWIRE_NONE, 0}};
    struct snapwire_filter gf[] = {
        {.type = SNAPWIRE_FILTER_REQUEST_HEADERS, .first_edit = 0, .edit_count = 3},
        {.type = SNAPWIRE_FILTER_RESPONSE_HEADERS, .first_edit = 3, .edit_count = 1},
        {.type = SNAPWIRE_FILTER_MIRROR, .cluster = 2, .mirror_permille = 1000},
        {.type = SNAPWIRE_FILTER_REWRITE,
         .hostname = "internal.ns.svc",
         .path_mod = SNAPWIRE_PATH_FULL,
         .path = "/items"},
        {.type = SNAPWIRE_FILTER_REDIRECT,
         .scheme = "https",
         .hostname = "new.example",
         .port = 8443,
         .status = 301,
         .path_mod = SNAPWIRE_PATH_PREFIX,
         .path = "/new"}};
    struct snapwire_hdr_edit ge[] = {{SNAPWIRE_HDR_SET, "X-Tenant", "acme"},
                                     {SNAPWIRE_HDR_ADD, "x-trace", "on"},
                                     {SNAPWIRE_HDR_REMOVE, "Cookie", ""},
                                     {SNAPWIRE_HDR_SET, "cache-control", "no-store"}};
    struct snapwire_cluster c[] = {{.name = "default/web:80",
                                    .lb = SNAPWIRE_LB_EWMA,
                                    .first_endpoint = 0,
                                    .endpoint_count = 2,
                                    .tls_sni = "",
                                    .tls_ca = SNAPWIRE_NONE,
                                    .hash_name = "",
                                    .affinity_cookie = "",
                                    .hc_path = "/healthz",
                                    .hc_host = "web.default:80",
                                    .hc_interval_ms = 5000,
                                    .hc_timeout_ms = 1000,
                                    .hc_status_lo = 200,
                                    .hc_status_hi = 399,
                                    .hc_healthy = 2,
                                    .hc_unhealthy = 3,
                                    .od_consecutive = 5,
                                    .od_base_ms = 30000,
                                    .od_max_ms = 300000,
                                    .od_max_percent = 50,
                                    .cb_max_connections = 1024,
                                    .cb_max_pending = 64,
                                    .cb_max_requests = 1024,
                                    .rb_percent = 20,
                                    .rb_min_per_sec = 10,
                                    .slow_start_ms = 30000},
                                   {.name = "ns/api:8080+tls",
                                    .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                    .first_endpoint = 2,
                                    .endpoint_count = 1,
                                    .tls = 1,
                                    .tls_sni = "api.ns.svc",
                                    .tls_ca = 1,
                                    .hash_name = "",
                                    .affinity_cookie = ""},
                                   {.name = "ns/empty:1",
                                    .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                    .first_endpoint = 3,
                                    .endpoint_count = 0,
                                    .tls_sni = "",
                                    .tls_ca = SNAPWIRE_NONE,
                                    .hash_name = "",
                                    .affinity_cookie = ""}};
    /* not real keys: the format only carries PEM text, the data plane parses it */
    struct snapwire_cert certs[] = {
        {"ns/foo-tls", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
         "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
         "720f6f46544ffe7ea34c655962012263ea4e0ffb3398f0c2864fe33265982c99", 1798736400},
        {"ns/ca", "-----BEGIN CERTIFICATE-----\r\nMIIC\r\n-----END CERTIFICATE-----\r\n", "", "00",
         1798736400}};
    struct snapwire_tls_host th[] = {
        {"*.foo.com", 0, SNAPWIRE_NONE, SNAPWIRE_NONE, SNAPWIRE_CLIENT_VERIFY_OFF},
        {"foo.com", 0, SNAPWIRE_NONE, 1, SNAPWIRE_CLIENT_VERIFY_REQUIRED}};
    struct snapwire_endpoint e[] = {
        {"10.0.0.1", 80, 1, 3}, {"10.0.0.2", 80, 0, 1}, {"fd00::1:2", 65535, 1, 10000}};
    struct snapwire_mesh_id mi[] = {{"spiffe://cluster.local/ns/default/sa/api"},
                                    {"spiffe://cluster.local/ns/default/sa/web"},
                                    {"spiffe://cluster.local/ns/shop/sa/default"}};
    struct snapwire_mesh_service ms[] = {
        {"default", "api", "10.96.0.10", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 0, 2},
        {"default", "db", "10.96.0.11", 5432, 1, SNAPWIRE_MESH_PROTO_OPAQUE, 0, 0, 0},
        {"shop", "cart", "10.96.0.12", 8080, SNAPWIRE_NONE, SNAPWIRE_MESH_PROTO_DETECT, 0, 0, 0},
        {"default", "api", "fd00::a", 80, 0, SNAPWIRE_MESH_PROTO_HTTP, 1, 2, 1}};
    struct snapwire_snapshot s = {0};

    s.meta.default_cluster = SNAPWIRE_NONE;
    s.meta.default_cert = SNAPWIRE_NONE;
    emit(dir, "empty", &s, 0);
    s.meta.source = "file:/manifests";
    s.listeners = l;
    s.n_listeners = 2;
    emit(dir, "listeners-only", &s, 1);
    s.vhosts = v;
    s.n_vhosts = 3;
    s.routes = r;
    s.n_routes = 4;
    s.clusters = c;
    s.n_clusters = 3;
    s.endpoints = e;
    s.n_endpoints = 3;
    s.certs = certs;
    s.n_certs = 2;
    s.tls_hosts = th;
    s.n_tls_hosts = 2;
    emit(dir, "full", &s, 42);
    s.meta.default_cluster = 2;
    s.meta.default_max_body = 8192;
    s.meta.default_cert = 0;
    emit(dir, "full-default-cluster", &s, 0xffffffffffffffffull);
    s.n_listeners = 0;
    s.n_vhosts = 0;
    s.n_routes = 0;
    s.meta.default_cluster = 0;
    s.meta.default_cert = SNAPWIRE_NONE;
    s.n_tls_hosts = 0;
    s.n_certs = 0;
    c[1].tls_ca = SNAPWIRE_NONE;
    emit(dir, "clusters-only", &s, 7);
    s.vhosts = gv;
    s.n_vhosts = 2;
    s.routes = gr;
    s.n_routes = 4;
    s.conds = gc;
    s.n_conds = 4;
    s.backends = gb;
    s.n_backends = 3;
    s.filters = gf;
    s.n_filters = 5;
    s.hdr_edits = ge;
    s.n_hdr_edits = 4;
    s.meta.default_cluster = SNAPWIRE_NONE;
    emit(dir, "gateway", &s, 43);
    /* v5 balancing: every lb, header / cookie hashing, cookie affinity */
    c[0].lb = SNAPWIRE_LB_RING_HASH;
    c[0].hash_on = SNAPWIRE_HASH_HEADER;
    c[0].hash_name = "x-user";
    c[1].lb = SNAPWIRE_LB_MAGLEV;
    c[1].hash_on = SNAPWIRE_HASH_COOKIE;
    c[1].hash_name = "sid";
    c[1].affinity_cookie = "INGRESSCOOKIE";
    c[2].lb = SNAPWIRE_LB_EWMA;
    c[2].affinity_cookie = "route";
    emit(dir, "balancing", &s, 44);
    c[0].lb = SNAPWIRE_LB_LEAST_REQUEST;
    c[0].hash_on = SNAPWIRE_HASH_NONE;
    c[0].hash_name = "";
    c[1].hash_on = SNAPWIRE_HASH_SOURCE_IP;
    c[1].hash_name = "";
    c[2].lb = SNAPWIRE_LB_RING_HASH;
    c[2].hash_on = SNAPWIRE_HASH_PATH;
    emit(dir, "balancing-2", &s, 45);
    /* v6 resilience, other combinations: checks with the endpoint's Host and at the limits,
     * outlier detection alone, limits and slow start alone; cluster 0 switches checks and
     * detection off with their other fields left set (the encoder writes them as 0) */
    c[0].hc_path = "";
    c[0].od_consecutive = 0;
    c[0].rb_percent = 1000;
    c[0].rb_min_per_sec = 100000;
    c[1].hc_path = "/ready?full=1";
    c[1].hc_host = "[fd00::1]:8443";
    c[1].hc_interval_ms = 3600000;
    c[1].hc_timeout_ms = 10;
    c[1].hc_status_lo = 100;
    c[1].hc_status_hi = 599;
    c[1].hc_healthy = 100;
    c[1].hc_unhealthy = 1;
    c[1].od_consecutive = 1000;
    c[1].od_base_ms = 1000;
    c[1].od_max_ms = 86400000;
    c[1].od_max_percent = 100;
    c[2].hc_path = "/";
    c[2].hc_host = "";
    c[2].hc_interval_ms = 100;
    c[2].hc_timeout_ms = 100;
    c[2].hc_status_lo = 204;
    c[2].hc_status_hi = 204;
    c[2].hc_healthy = 1;
    c[2].hc_unhealthy = 100;
    c[2].cb_max_connections = 1000000;
    c[2].cb_max_pending = 0;
    c[2].cb_max_requests = 1;
    c[2].slow_start_ms = 3600000;
    e[1].weight = 7;
    emit(dir, "resilience", &s, 46);
    /* v7 mesh directory: dual stack, an unmeshed opaque port, a port without endpoints */
    s.meta.trust_domain = "cluster.local";
    s.meta.cluster_domain = "corp.example";
    s.mesh_services = ms;
    s.n_mesh_services = 4;
    s.mesh_ids = mi;
    s.n_mesh_ids = 3;
    emit(dir, "mesh", &s, 47);
    /* v7 authorization: an all-ports Allow, a port Deny, every principal kind, default deny */
    {
        struct snapwire_principal pr[] = {
            {SNAPWIRE_PRINCIPAL_IDENTITY, "spiffe://cluster.local/ns/default/sa/web"},
            {SNAPWIRE_PRINCIPAL_NAMESPACE, "shop"},
            {SNAPWIRE_PRINCIPAL_AUTHENTICATED, ""},
            {SNAPWIRE_PRINCIPAL_UNAUTHENTICATED, ""}};
        struct snapwire_authz az[] = {
            {"default", "api", 0, SNAPWIRE_AUTHZ_ALLOW, "default/allow-web", 0, 2},
            {"default", "api", 80, SNAPWIRE_AUTHZ_DENY, "default/no-plain", 3, 1},
            {"default", "db", 5432, SNAPWIRE_AUTHZ_ALLOW, "default/db", 2, 1}};
        s.meta.authz_default_deny = 1;
        s.authz = az;
        s.n_authz = 3;
        s.principals = pr;
        s.n_principals = 4;
        emit(dir, "authz", &s, 48);
    }
    return 0;
}
