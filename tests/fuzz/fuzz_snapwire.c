/*
 * fuzz_snapwire: libFuzzer target for common/snapwire.c's checked reader, which the data plane
 * runs on frames from a socket (a remote controller over TLS in sidecar mode).
 *
 * Does: decode the input as a frame; decode it again with its length and CRC fields fixed up (a
 * fuzzer cannot forge CRC-32, so without this every mutated frame stops at the checksum); for a
 * frame that
 * decodes, dump it as JSON, re-encode it, decode that and compare field by field, and check
 * the encoder is deterministic. Also feeds the input to the ACK/NACK reply parser.
 * Does not: check snapshot semantics (routing order etc.) - the decoder only promises
 * internal consistency, and that is what is asserted.
 * Invariants checked with abort(): decode(encode(decode(x))) == decode(x) in every field;
 * encoding twice gives the same bytes; the JSON dump is well-formed.
 */
#include "snapwire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_snapwire: invariant failed at line %d: %s\n", __LINE__, #cond);  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int streq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void same_snapshot(const struct snapwire_snapshot *a, const struct snapwire_snapshot *b)
{
    uint32_t i;

    CHECK(a->n_listeners == b->n_listeners && a->n_vhosts == b->n_vhosts);
    CHECK(a->n_routes == b->n_routes && a->n_clusters == b->n_clusters);
    CHECK(a->n_endpoints == b->n_endpoints);
    CHECK(a->meta.default_cluster == b->meta.default_cluster);
    CHECK(streq(a->meta.source, b->meta.source));
    CHECK(a->meta.default_max_body == b->meta.default_max_body);
    CHECK(streq(a->meta.trust_domain, b->meta.trust_domain));
    CHECK(streq(a->meta.cluster_domain, b->meta.cluster_domain));
    CHECK(a->n_mesh_services == b->n_mesh_services && a->n_mesh_ids == b->n_mesh_ids);
    for (i = 0; i < a->n_mesh_services; i++) {
        const struct snapwire_mesh_service *x = &a->mesh_services[i], *y = &b->mesh_services[i];
        CHECK(streq(x->ns, y->ns) && streq(x->name, y->name) && streq(x->address, y->address));
        CHECK(x->port == y->port && x->cluster == y->cluster && x->proto == y->proto);
        CHECK(x->mtls == y->mtls && x->first_id == y->first_id && x->id_count == y->id_count);
    }
    for (i = 0; i < a->n_mesh_ids; i++)
        CHECK(streq(a->mesh_ids[i].uri, b->mesh_ids[i].uri));
    CHECK(a->meta.authz_default_deny == b->meta.authz_default_deny);
    CHECK(a->n_authz == b->n_authz && a->n_principals == b->n_principals);
    for (i = 0; i < a->n_authz; i++) {
        const struct snapwire_authz *x = &a->authz[i], *y = &b->authz[i];
        CHECK(streq(x->ns, y->ns) && streq(x->name, y->name) && streq(x->source, y->source));
        CHECK(x->port == y->port && x->action == y->action);
        CHECK(x->first_principal == y->first_principal);
        CHECK(x->principal_count == y->principal_count);
    }
    for (i = 0; i < a->n_principals; i++)
        CHECK(a->principals[i].kind == b->principals[i].kind &&
              streq(a->principals[i].value, b->principals[i].value));
    for (i = 0; i < a->n_listeners; i++) {
        CHECK(streq(a->listeners[i].name, b->listeners[i].name));
        CHECK(streq(a->listeners[i].address, b->listeners[i].address));
        CHECK(a->listeners[i].port == b->listeners[i].port);
        CHECK(a->listeners[i].protocol == b->listeners[i].protocol);
    }
    for (i = 0; i < a->n_vhosts; i++) {
        CHECK(streq(a->vhosts[i].host, b->vhosts[i].host));
        CHECK(a->vhosts[i].first_route == b->vhosts[i].first_route);
        CHECK(a->vhosts[i].route_count == b->vhosts[i].route_count);
    }
    for (i = 0; i < a->n_routes; i++) {
        CHECK(streq(a->routes[i].path, b->routes[i].path));
        CHECK(streq(a->routes[i].source, b->routes[i].source));
        CHECK(a->routes[i].match == b->routes[i].match);
        CHECK(a->routes[i].cluster == b->routes[i].cluster);
        CHECK(a->routes[i].max_body == b->routes[i].max_body);
        CHECK(a->routes[i].flags == b->routes[i].flags);
        CHECK(streq(a->routes[i].hsts, b->routes[i].hsts));
        CHECK(a->routes[i].method == b->routes[i].method);
        CHECK(a->routes[i].first_cond == b->routes[i].first_cond);
        CHECK(a->routes[i].cond_count == b->routes[i].cond_count);
        CHECK(a->routes[i].first_backend == b->routes[i].first_backend);
        CHECK(a->routes[i].backend_count == b->routes[i].backend_count);
        CHECK(a->routes[i].first_filter == b->routes[i].first_filter);
        CHECK(a->routes[i].filter_count == b->routes[i].filter_count);
        CHECK(a->routes[i].request_timeout_ms == b->routes[i].request_timeout_ms);
        CHECK(a->routes[i].backend_timeout_ms == b->routes[i].backend_timeout_ms);
        CHECK(a->routes[i].retry_attempts == b->routes[i].retry_attempts);
        CHECK(a->routes[i].retry_codes_lo == b->routes[i].retry_codes_lo);
        CHECK(a->routes[i].retry_codes_hi == b->routes[i].retry_codes_hi);
        CHECK(a->routes[i].retry_backoff_ms == b->routes[i].retry_backoff_ms);
    }
    CHECK(a->n_conds == b->n_conds && a->n_backends == b->n_backends);
    CHECK(a->n_filters == b->n_filters && a->n_hdr_edits == b->n_hdr_edits);
    for (i = 0; i < a->n_conds; i++) {
        CHECK(a->conds[i].kind == b->conds[i].kind);
        CHECK(streq(a->conds[i].name, b->conds[i].name));
        CHECK(streq(a->conds[i].value, b->conds[i].value));
    }
    for (i = 0; i < a->n_backends; i++) {
        CHECK(a->backends[i].cluster == b->backends[i].cluster);
        CHECK(a->backends[i].weight == b->backends[i].weight);
    }
    for (i = 0; i < a->n_filters; i++) {
        const struct snapwire_filter *x = &a->filters[i], *y = &b->filters[i];
        CHECK(x->type == y->type && x->first_edit == y->first_edit);
        CHECK(x->edit_count == y->edit_count && x->port == y->port && x->status == y->status);
        CHECK(x->path_mod == y->path_mod && x->cluster == y->cluster);
        CHECK(x->mirror_permille == y->mirror_permille);
        CHECK(streq(x->scheme, y->scheme) && streq(x->hostname, y->hostname));
        CHECK(streq(x->path, y->path));
    }
    for (i = 0; i < a->n_hdr_edits; i++) {
        CHECK(a->hdr_edits[i].op == b->hdr_edits[i].op);
        CHECK(streq(a->hdr_edits[i].name, b->hdr_edits[i].name));
        CHECK(streq(a->hdr_edits[i].value, b->hdr_edits[i].value));
    }
    for (i = 0; i < a->n_clusters; i++) {
        CHECK(streq(a->clusters[i].name, b->clusters[i].name));
        CHECK(a->clusters[i].lb == b->clusters[i].lb);
        CHECK(a->clusters[i].first_endpoint == b->clusters[i].first_endpoint);
        CHECK(a->clusters[i].endpoint_count == b->clusters[i].endpoint_count);
        CHECK(a->clusters[i].hash_on == b->clusters[i].hash_on);
        CHECK(streq(a->clusters[i].hash_name, b->clusters[i].hash_name));
        CHECK(streq(a->clusters[i].affinity_cookie, b->clusters[i].affinity_cookie));
        CHECK(streq(a->clusters[i].hc_path, b->clusters[i].hc_path));
        CHECK(streq(a->clusters[i].hc_host, b->clusters[i].hc_host));
        CHECK(a->clusters[i].hc_interval_ms == b->clusters[i].hc_interval_ms);
        CHECK(a->clusters[i].hc_timeout_ms == b->clusters[i].hc_timeout_ms);
        CHECK(a->clusters[i].hc_status_lo == b->clusters[i].hc_status_lo);
        CHECK(a->clusters[i].hc_status_hi == b->clusters[i].hc_status_hi);
        CHECK(a->clusters[i].hc_healthy == b->clusters[i].hc_healthy);
        CHECK(a->clusters[i].hc_unhealthy == b->clusters[i].hc_unhealthy);
        CHECK(a->clusters[i].od_consecutive == b->clusters[i].od_consecutive);
        CHECK(a->clusters[i].od_base_ms == b->clusters[i].od_base_ms);
        CHECK(a->clusters[i].od_max_ms == b->clusters[i].od_max_ms);
        CHECK(a->clusters[i].od_max_percent == b->clusters[i].od_max_percent);
        CHECK(a->clusters[i].cb_max_connections == b->clusters[i].cb_max_connections);
        CHECK(a->clusters[i].cb_max_pending == b->clusters[i].cb_max_pending);
        CHECK(a->clusters[i].cb_max_requests == b->clusters[i].cb_max_requests);
        CHECK(a->clusters[i].rb_percent == b->clusters[i].rb_percent);
        CHECK(a->clusters[i].rb_min_per_sec == b->clusters[i].rb_min_per_sec);
        CHECK(a->clusters[i].slow_start_ms == b->clusters[i].slow_start_ms);
    }
    for (i = 0; i < a->n_endpoints; i++) {
        CHECK(streq(a->endpoints[i].address, b->endpoints[i].address));
        CHECK(a->endpoints[i].port == b->endpoints[i].port);
        CHECK(a->endpoints[i].ready == b->endpoints[i].ready);
        CHECK(a->endpoints[i].weight == b->endpoints[i].weight);
    }
}

/* The documented promises of a decoded snapshot, checked independently of the decoder. */
static void check_consistent(const struct snapwire_snapshot *s)
{
    uint32_t i;

    CHECK(s->meta.default_cluster == SNAPWIRE_NONE || s->meta.default_cluster < s->n_clusters);
    for (i = 0; i < s->n_vhosts; i++)
        CHECK((uint64_t)s->vhosts[i].first_route + s->vhosts[i].route_count <= s->n_routes);
    for (i = 0; i < s->n_routes; i++) {
        const struct snapwire_route *r = &s->routes[i];
        uint64_t w = 0;
        CHECK(r->cluster == SNAPWIRE_NONE || r->cluster < s->n_clusters);
        CHECK(r->match == SNAPWIRE_MATCH_EXACT || r->match == SNAPWIRE_MATCH_PREFIX ||
              r->match == SNAPWIRE_MATCH_REGEX);
        CHECK(r->match == SNAPWIRE_MATCH_REGEX ? r->path[0] != '\0' : r->path[0] == '/');
        CHECK(r->method <= SNAPWIRE_METHOD_MAX_ && (r->flags & ~0x0f) == 0);
        CHECK((uint64_t)r->first_cond + r->cond_count <= s->n_conds);
        CHECK((uint64_t)r->first_backend + r->backend_count <= s->n_backends);
        CHECK((uint64_t)r->first_filter + r->filter_count <= s->n_filters);
        for (uint32_t k = 0; k < r->backend_count; k++)
            w += s->backends[r->first_backend + k].weight;
        CHECK(w <= UINT32_MAX);
        CHECK(r->retry_attempts <= SNAPWIRE_MAX_RETRIES && r->retry_codes_hi >> 36 == 0);
    }
    for (i = 0; i < s->n_conds; i++)
        CHECK(s->conds[i].kind >= 1 && s->conds[i].kind <= 3 && s->conds[i].name[0]);
    for (i = 0; i < s->n_backends; i++)
        CHECK(s->backends[i].cluster == SNAPWIRE_NONE || s->backends[i].cluster < s->n_clusters);
    for (i = 0; i < s->n_filters; i++) {
        const struct snapwire_filter *f = &s->filters[i];
        CHECK(f->type >= 1 && f->type <= 5 && f->path_mod <= 2 && f->mirror_permille <= 1000);
        CHECK((uint64_t)f->first_edit + f->edit_count <= s->n_hdr_edits);
        CHECK(f->cluster == SNAPWIRE_NONE || f->cluster < s->n_clusters);
    }
    for (i = 0; i < s->n_hdr_edits; i++)
        CHECK(s->hdr_edits[i].op >= 1 && s->hdr_edits[i].op <= 3 && s->hdr_edits[i].name[0]);
    for (i = 0; i < s->n_clusters; i++) {
        const struct snapwire_cluster *c = &s->clusters[i];
        CHECK((uint64_t)c->first_endpoint + c->endpoint_count <= s->n_endpoints);
        /* v6: ranges, and a feature switched off carries zeros only */
        if (c->hc_path[0]) {
            CHECK(c->hc_path[0] == '/' && strlen(c->hc_path) <= 1024 && !strchr(c->hc_path, ' '));
            CHECK(strlen(c->hc_host) <= 255);
            CHECK(c->hc_interval_ms >= 100 && c->hc_interval_ms <= 3600000);
            CHECK(c->hc_timeout_ms >= 10 && c->hc_timeout_ms <= c->hc_interval_ms);
            CHECK(c->hc_status_lo >= 100 && c->hc_status_lo <= c->hc_status_hi &&
                  c->hc_status_hi <= 599);
            CHECK(c->hc_healthy >= 1 && c->hc_healthy <= 100);
            CHECK(c->hc_unhealthy >= 1 && c->hc_unhealthy <= 100);
        } else {
            CHECK(!c->hc_host[0] && !c->hc_interval_ms && !c->hc_timeout_ms && !c->hc_status_lo &&
                  !c->hc_status_hi && !c->hc_healthy && !c->hc_unhealthy);
        }
        if (c->od_consecutive) {
            CHECK(c->od_consecutive <= 1000 && c->od_base_ms >= 1000 && c->od_base_ms <= 3600000);
            CHECK(c->od_max_ms >= c->od_base_ms && c->od_max_ms <= 86400000);
            CHECK(c->od_max_percent <= 100);
        } else {
            CHECK(!c->od_base_ms && !c->od_max_ms && !c->od_max_percent);
        }
        CHECK(c->cb_max_connections <= 1000000 && c->cb_max_pending <= 1000000 &&
              c->cb_max_requests <= 1000000);
        CHECK(c->rb_percent <= 1000 && c->rb_min_per_sec <= 100000);
        CHECK(c->slow_start_ms <= 3600000);
    }
    /* v7: the mesh directory */
    CHECK(s->meta.cluster_domain[0]);
    if (!s->meta.trust_domain[0]) CHECK(!s->n_mesh_services && !s->n_mesh_ids);
    for (i = 0; i < s->n_mesh_ids; i++) {
        size_t tl = strlen(s->meta.trust_domain);
        CHECK(strncmp(s->mesh_ids[i].uri, "spiffe://", 9) == 0);
        CHECK(strncmp(s->mesh_ids[i].uri + 9, s->meta.trust_domain, tl) == 0);
        CHECK(s->mesh_ids[i].uri[9 + tl] == '/' && s->mesh_ids[i].uri[10 + tl]);
    }
    for (i = 0; i < s->n_mesh_services; i++) {
        const struct snapwire_mesh_service *m = &s->mesh_services[i];
        CHECK(m->ns[0] && m->name[0] && m->address[0] && m->port != 0);
        CHECK(m->cluster == SNAPWIRE_NONE || m->cluster < s->n_clusters);
        CHECK(m->proto <= SNAPWIRE_MESH_PROTO_MAX_ && m->mtls <= 1);
        if (m->mtls)
            CHECK(m->id_count && (uint64_t)m->first_id + m->id_count <= s->n_mesh_ids);
        else
            CHECK(!m->first_id && !m->id_count);
        for (uint32_t k = 1; k < m->id_count; k++)
            CHECK(strcmp(s->mesh_ids[m->first_id + k - 1].uri, s->mesh_ids[m->first_id + k].uri) <
                  0);
        if (i > 0) {
            const struct snapwire_mesh_service *p = &s->mesh_services[i - 1];
            int c = strcmp(p->address, m->address);
            CHECK(c < 0 || (c == 0 && p->port < m->port));
        }
    }
    /* v7: authorization */
    CHECK(s->meta.authz_default_deny <= 1);
    if (!s->meta.trust_domain[0])
        CHECK(!s->n_authz && !s->n_principals && !s->meta.authz_default_deny);
    for (i = 0; i < s->n_principals; i++) {
        const struct snapwire_principal *p = &s->principals[i];
        size_t tl = strlen(s->meta.trust_domain);
        CHECK(p->kind >= SNAPWIRE_PRINCIPAL_IDENTITY && p->kind <= SNAPWIRE_PRINCIPAL_MAX_);
        if (p->kind == SNAPWIRE_PRINCIPAL_IDENTITY)
            CHECK(strncmp(p->value, "spiffe://", 9) == 0 &&
                  strncmp(p->value + 9, s->meta.trust_domain, tl) == 0 && p->value[9 + tl] == '/');
        else if (p->kind == SNAPWIRE_PRINCIPAL_NAMESPACE)
            CHECK(p->value[0] && strlen(p->value) <= 63 && !strchr(p->value, '/'));
        else
            CHECK(!p->value[0]);
    }
    for (i = 0; i < s->n_authz; i++) {
        const struct snapwire_authz *a = &s->authz[i];
        CHECK(a->ns[0] && a->name[0] && a->source[0]);
        CHECK(a->action == SNAPWIRE_AUTHZ_ALLOW || a->action == SNAPWIRE_AUTHZ_DENY);
        CHECK(a->principal_count &&
              (uint64_t)a->first_principal + a->principal_count <= s->n_principals);
        for (uint32_t k = 1; k < a->principal_count; k++) {
            const struct snapwire_principal *x = &s->principals[a->first_principal + k - 1],
                                            *y = &s->principals[a->first_principal + k];
            CHECK(x->kind < y->kind || (x->kind == y->kind && strcmp(x->value, y->value) < 0));
        }
        if (i > 0) {
            const struct snapwire_authz *p = &s->authz[i - 1];
            int c = strcmp(p->ns, a->ns);
            if (!c) c = strcmp(p->name, a->name);
            if (!c) c = (p->port > a->port) - (p->port < a->port);
            if (!c) c = strcmp(p->source, a->source);
            CHECK(c < 0);
        }
    }
    for (i = 0; i < s->n_endpoints; i++) {
        CHECK(s->endpoints[i].port != 0 && s->endpoints[i].address[0]);
        CHECK(s->endpoints[i].weight >= 1 && s->endpoints[i].weight <= SNAPWIRE_MAX_WEIGHT);
    }
}

static void check_json(const char *json)
{
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);

    CHECK(h != NULL);
    /* strings are only checked for control characters on the wire, not for UTF-8 */
    yajl_config(h, yajl_dont_validate_strings, 1);
    CHECK(yajl_parse(h, (const unsigned char *)json, strlen(json)) == yajl_status_ok);
    CHECK(yajl_complete_parse(h) == yajl_status_ok);
    yajl_free(h);
}

static void roundtrip(const uint8_t *frame, size_t len)
{
    struct snapwire_snapshot a, b;
    uint8_t *enc1 = NULL, *enc2 = NULL;
    size_t len1 = 0, len2 = 0;
    char err[256], *json;

    if (snapwire_decode(frame, len, &a, err, sizeof(err)) < 0) return;
    CHECK(snapwire_frame_size(frame, len, err, sizeof(err)) == (long)len);
    CHECK(snapwire_frame_generation(frame) == a.generation);
    check_consistent(&a);
    json = snapwire_to_json(&a);
    CHECK(json != NULL);
    check_json(json);
    free(json);

    if (snapwire_encode(&a, a.generation, &enc1, &len1, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_snapwire: re-encode of a decoded frame failed: %s\n", err);
        abort();
    }
    if (snapwire_decode(enc1, len1, &b, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_snapwire: decode of a re-encoded frame failed: %s\n", err);
        abort();
    }
    CHECK(b.generation == a.generation);
    same_snapshot(&a, &b);
    CHECK(snapwire_encode(&b, a.generation + 1, &enc2, &len2, err, sizeof(err)) == 0);
    CHECK(len1 == len2 && snapwire_same_payload(enc1, len1, enc2, len2));
    CHECK(memcmp(enc1, enc2, 8) == 0 && memcmp(enc1 + 16, enc2 + 16, len1 - 16) == 0);
    free(enc1);
    free(enc2);
    snapwire_free(&b);
    snapwire_free(&a);
}

static void fuzz_reply(const uint8_t *data, size_t size)
{
    char reason[64], line[128];
    uint64_t g = 0, g2 = 0;
    int r = snapwire_reply_parse((const char *)data, size, &g, reason, sizeof(reason));

    CHECK(r >= -1 && r <= 1);
    if (r < 0) return;
    size_t n = snapwire_reply_format(line, sizeof(line), r, g, r ? NULL : reason);
    CHECK(n < sizeof(line) && line[n] == '\0');
    CHECK(snapwire_reply_parse(line, n, &g2, NULL, 0) == r && g2 == g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    long fsz = snapwire_frame_size(data, size, err, sizeof(err));

    CHECK(fsz == -1 || fsz == -2 || (fsz >= SNAPWIRE_HEADER_SIZE && fsz <= SNAPWIRE_MAX_FRAME));
    CHECK(fsz != -2 || size < SNAPWIRE_HEADER_SIZE);
    roundtrip(data, size);

    /* Same frame with its payload length and CRC made to match, so mutations reach the body. */
    if (fsz > 0 && size - SNAPWIRE_HEADER_SIZE <= SNAPWIRE_MAX_FRAME - SNAPWIRE_HEADER_SIZE) {
        uint8_t *fixed = malloc(size);
        uint32_t crc, plen = (uint32_t)(size - SNAPWIRE_HEADER_SIZE);

        CHECK(fixed != NULL);
        memcpy(fixed, data, size);
        for (int i = 0; i < 4; i++)
            fixed[16 + i] = (uint8_t)(plen >> (8 * i));
        crc =
            (uint32_t)crc32(0L, fixed + SNAPWIRE_HEADER_SIZE, (uInt)(size - SNAPWIRE_HEADER_SIZE));
        for (int i = 0; i < 4; i++)
            fixed[20 + i] = (uint8_t)(crc >> (8 * i));
        if (memcmp(fixed, data, size) != 0) roundtrip(fixed, size);
        free(fixed);
    }
    fuzz_reply(data, size);
    return 0;
}
