/*
 * tls_mesh: the sidecar's identity client against a small HTTPS identity endpoint run in a
 * thread of the test (its own CA, made here with OpenSSL, signs the CSRs it receives): the
 * issued identity is installed and reported, renewed before it expires, kept while the
 * endpoint fails and dropped at its notAfter; a controller certificate for another name and a
 * leaf of a foreign trust domain are refused; a mesh server transport and a mesh cluster's
 * client transport handshake mTLS over a socketpair, the server seeing the client's URI and
 * ALPN (opaque or HTTP), and the client refuses a peer whose URI is not one of the cluster's.
 * Includes tls_mesh.c to reach its statics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <signal.h>

#include "../../../dataplane/tls_mesh.c"
#include "tls_upstream.h"

#define SERVER_NAME "identity.strait.test"
#define IDENTITY "spiffe://cluster.local/ns/default/sa/web"

static EVP_PKEY *ca_key;
static X509 *ca_cert;
static char *ca_pem;

static char *pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    n = BIO_get_mem_data(b, &data);
    out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, ca_cert ? ca_cert : x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for pub signed by the test CA (self-signed CA when ca_cert is NULL). */
static X509 *sign(EVP_PKEY *pub, const char *cn, const char *san, long lifetime, int ca)
{
    X509 *x = X509_new();
    static long serial = 1;

    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), lifetime);
    if (cn)
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca_cert ? X509_get_subject_name(ca_cert) : X509_get_subject_name(x));
    X509_set_pubkey(x, pub);
    add_ext(x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (ca)
        add_ext(x, NID_key_usage, "critical,keyCertSign,cRLSign");
    else
        add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth");
    if (san) add_ext(x, NID_subject_alt_name, san);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    return x;
}

/* ---- the identity endpoint ---- */

static struct {
    int lfd, port;
    SSL_CTX *ctx;
    pthread_t th;
    /* fail: 1 answers 503, 2 closes every connection at once; bad: a request not as specified */
    atomic_int stop, fail, requests, lifetime, bad;
    char identity[256];
} srv;

static int read_request(SSL *s, char *buf, size_t cap, char **body)
{
    size_t have = 0;
    char *h;
    long clen;

    for (;;) {
        int n = SSL_read(s, buf + have, (int)(cap - 1 - have));
        if (n <= 0) return -1;
        have += (size_t)n;
        buf[have] = '\0';
        if (!(h = strstr(buf, "\r\n\r\n"))) continue;
        char *cl = strcasestr(buf, "content-length:");
        clen = cl ? strtol(cl + 15, NULL, 10) : 0;
        if ((long)(have - (size_t)(h + 4 - buf)) >= clen) {
            *body = h + 4;
            return 0;
        }
    }
}

static void respond(SSL *s, int status, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n\r\n",
                     status, strlen(body));

    SSL_write(s, head, n);
    SSL_write(s, body, (int)strlen(body));
}

/* Signs the CSR of a request body; the answer JSON, malloc'd. */
static char *issue(const char *body)
{
    const char *path[] = {"csr", NULL};
    yajl_val root = yajl_tree_parse(body, NULL, 0);
    const char *csr = YAJL_GET_STRING(yajl_tree_get(root, path, yajl_t_string));
    BIO *b = BIO_new_mem_buf(csr, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    char san[300], *leaf_pem, *out;
    const unsigned char *gb;
    size_t glen;
    yajl_gen g = yajl_gen_alloc(NULL);
    X509 *leaf;

    if (!req || X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
        atomic_store(&srv.bad, 1);
        X509_REQ_free(req);
        BIO_free(b);
        yajl_gen_free(g);
        yajl_tree_free(root);
        return strdup("{}");
    }
    snprintf(san, sizeof(san), "critical,URI:%s", srv.identity);
    leaf = sign(X509_REQ_get0_pubkey(req), NULL, san, atomic_load(&srv.lifetime), 0);
    leaf_pem = pem_of(leaf);
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "certificate", leaf_pem);
    jsongen_kv_str(g, "trustBundle", ca_pem);
    jsongen_kv_str(g, "identity", srv.identity);
    jsongen_kv_str(g, "notAfter", "2030-01-01T00:00:00Z");
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &gb, &glen);
    out = strndup((const char *)gb, glen);
    yajl_gen_free(g);
    free(leaf_pem);
    X509_free(leaf);
    X509_REQ_free(req);
    BIO_free(b);
    yajl_tree_free(root);
    return out;
}

static void *server_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct timeval tv = {5, 0};
        char buf[16384], *body;
        int c = accept(srv.lfd, NULL, NULL);
        SSL *s;
        if (c < 0) continue;
        if (atomic_load(&srv.fail) == 2) { /* down: the connection closes at once */
            atomic_fetch_add(&srv.requests, 1);
            close(c);
            continue;
        }
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        s = SSL_new(srv.ctx);
        SSL_set_fd(s, c);
        if (SSL_accept(s) == 1 && read_request(s, buf, sizeof(buf), &body) == 0) {
            atomic_fetch_add(&srv.requests, 1);
            if (!strstr(buf, "POST /v1/identity HTTP/1.1\r\n") ||
                !strstr(buf, "Authorization: Bearer tok-123\r\n") ||
                !strstr(buf, "Content-Type: application/json\r\n"))
                atomic_store(&srv.bad, 1);
            if (atomic_load(&srv.fail)) {
                respond(s, 503, "{\"error\":\"down\"}");
            } else {
                char *answer = issue(body);
                respond(s, 200, answer);
                free(answer);
            }
            SSL_shutdown(s);
        }
        SSL_free(s);
        close(c);
        ERR_clear_error();
    }
    return NULL;
}

static char token_path[] = "/tmp/strait-test-token-XXXXXX";

static int group_setup(void **state)
{
    EVP_PKEY *sk = EVP_EC_gen("P-256");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    X509 *scert;
    int fd;

    (void)state;
    ca_key = EVP_EC_gen("P-256");
    ca_cert = sign(ca_key, "test mesh root", "URI:spiffe://cluster.local", 3600, 1);
    ca_pem = pem_of(ca_cert);
    scert = sign(sk, SERVER_NAME, "DNS:" SERVER_NAME ",IP:127.0.0.1", 3600, 0);
    srv.ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(srv.ctx, scert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(srv.ctx, sk), 1);
    X509_free(scert);
    EVP_PKEY_free(sk);
    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(srv.lfd, 16), 0);
    getsockname(srv.lfd, (struct sockaddr *)&sa, &sl);
    srv.port = ntohs(sa.sin_port);
    atomic_store(&srv.lifetime, 3600);
    snprintf(srv.identity, sizeof(srv.identity), "%s", IDENTITY);
    assert_int_equal(pthread_create(&srv.th, NULL, server_main, NULL), 0);
    fd = mkstemp(token_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "  tok-123\n", 10), 10);
    close(fd);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    atomic_store(&srv.stop, 1);
    shutdown(srv.lfd, SHUT_RDWR);
    pthread_join(srv.th, NULL);
    close(srv.lfd);
    SSL_CTX_free(srv.ctx);
    unlink(token_path);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    free(ca_pem);
    return atomic_load(&srv.bad) ? -1 : 0;
}

/* Resets the endpoint's behaviour and starts the client against it with name. */
static void start(const char *name, const char *identity, int lifetime)
{
    char addr[32], err[256];
    struct tls_mesh_config cfg = {addr, name, "cluster.local", ca_pem, token_path, 1};

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", srv.port);
    snprintf(srv.identity, sizeof(srv.identity), "%s", identity);
    atomic_store(&srv.lifetime, lifetime);
    atomic_store(&srv.fail, 0);
    atomic_store(&srv.requests, 0);
    assert_int_equal(tls_mesh_start(&cfg, err, sizeof(err)), 0);
}

static uint64_t request_count(int ok)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    uint64_t v;

    metrics_collect(t);
    v = t->mesh_identity_requests[ok ? 1 : 0];
    free(t);
    return v;
}

/* Polls (up to secs) for the status to be have; returns the last not_after. */
static double wait_status(int have, double secs, char *id, size_t len)
{
    double na = 0, end = mono_now() + secs;

    while (mono_now() < end) {
        if (tls_mesh_status(id, len, &na) == have) return na;
        usleep(20000);
    }
    fail_msg("status did not become %d", have);
    return 0;
}

static void test_issued_installed(void **state)
{
    char id[256];
    double na;
    uint64_t ok0 = request_count(1);

    (void)state;
    start(SERVER_NAME, IDENTITY, 3600);
    na = wait_status(1, 5, id, sizeof(id));
    assert_string_equal(id, IDENTITY);
    assert_true(fabs(na - (wall_now() + 3600)) < 10);
    assert_int_equal(request_count(1), ok0 + 1);
    {
        char *text = metrics_render(), line[128];
        assert_non_null(text);
        snprintf(line, sizeof(line), "strait_mesh_identity_expiry_seconds %llu\n",
                 (unsigned long long)na);
        assert_non_null(strstr(text, line));
        assert_non_null(strstr(text, "strait_mesh_identity_requests_total{result=\"ok\"} "));
        assert_non_null(strstr(text, "strait_mesh_identity_requests_total{result=\"error\"} "));
        free(text);
    }
    tls_mesh_stop();
    assert_int_equal(tls_mesh_status(NULL, 0, NULL), 0);
}

static void test_ip_name_accepted(void **state)
{
    (void)state;
    start("127.0.0.1", IDENTITY, 3600);
    wait_status(1, 5, NULL, 0);
    tls_mesh_stop();
}

static void test_renewal_and_outage(void **state)
{
    double na1, na2, na, end;
    uint64_t err0;
    int got = 0, req0;

    (void)state;
    start(SERVER_NAME, IDENTITY, 7); /* notAfter now + 7 s: renewal at 5 s (the minimum) */
    na1 = wait_status(1, 5, NULL, 0);
    atomic_store(&srv.lifetime, 14); /* the renewed one: next renewal 7 s after it */
    for (end = mono_now() + 8; mono_now() < end && !got;) {
        usleep(50000);
        got = tls_mesh_status(NULL, 0, &na2) && na2 > na1;
    }
    assert_true(got);
    /* the controller fails: the current certificate stays until its notAfter */
    atomic_store(&srv.fail, 1);
    err0 = request_count(0);
    for (end = mono_now() + 10; mono_now() < end && request_count(0) < err0 + 2;)
        usleep(50000);
    assert_true(request_count(0) >= err0 + 2); /* retried (backoff capped at 1 s) */
    /* then it is down (connections close at once): still retried, still the same certificate */
    atomic_store(&srv.fail, 2);
    req0 = atomic_load(&srv.requests);
    for (end = mono_now() + 4; mono_now() < end && atomic_load(&srv.requests) < req0 + 2;)
        usleep(50000);
    assert_true(atomic_load(&srv.requests) >= req0 + 2);
    assert_true(wall_now() < na2 - 0.5);
    assert_int_equal(tls_mesh_status(NULL, 0, &na), 1);
    assert_true(na == na2);
    wait_status(0, 8, NULL, 0); /* past notAfter: uninstalled */
    /* back: a new one is installed at the next retry */
    atomic_store(&srv.fail, 0);
    wait_status(1, 4, NULL, 0);
    tls_mesh_stop();
}

static void test_wrong_server_name(void **state)
{
    uint64_t err0 = request_count(0);
    double end;

    (void)state;
    start("other.strait.test", IDENTITY, 3600);
    for (end = mono_now() + 5; mono_now() < end && request_count(0) == err0;)
        usleep(20000);
    assert_true(request_count(0) > err0);
    assert_int_equal(tls_mesh_status(NULL, 0, NULL), 0);
    assert_int_equal(atomic_load(&srv.requests), 0); /* never sent the token */
    tls_mesh_stop();
}

static void test_foreign_trust_domain(void **state)
{
    uint64_t err0 = request_count(0);
    double end;

    (void)state;
    start(SERVER_NAME, "spiffe://evil.example/ns/default/sa/web", 3600);
    for (end = mono_now() + 5; mono_now() < end && request_count(0) == err0;)
        usleep(20000);
    assert_true(request_count(0) > err0);
    assert_true(atomic_load(&srv.requests) >= 1);
    assert_int_equal(tls_mesh_status(NULL, 0, NULL), 0);
    tls_mesh_stop();
}

/* Drives both handshakes over the socketpair; returns the client's result (1 or -1). */
static int handshake_pair(struct transport *s, struct transport *c, int *srv_rc)
{
    int rs = 0, rc = 0;

    for (int i = 0; i < 1000 && (rs == 0 || rc == 0); i++) {
        if (rc == 0) rc = c->ops->handshake(c);
        if (rs == 0) rs = s->ops->handshake(s);
        if (rc == -1 && rs == 0) rs = s->ops->handshake(s);
        if (rc == -1 || rs == -1) break;
    }
    *srv_rc = rs;
    return rc;
}

static void mtls_case(const char *allowed, int opaque, int want_ok)
{
    struct snapwire_cluster cl = {.name = "default/web:80", .tls_sni = ""};
    struct snapwire_mesh_id mid = {allowed};
    struct snapwire_mesh_service ms = {.ns = "default",
                                       .name = "web",
                                       .address = "10.96.0.10",
                                       .port = 80,
                                       .cluster = 0,
                                       .proto = 2,
                                       .mtls = 1,
                                       .first_id = 0,
                                       .id_count = 1};
    struct snapwire_snapshot sw;
    struct tls_upstream *up = NULL;
    struct transport ts, tc;
    char err[256], uri[256];
    int sv[2], srv_rc, rc;

    memset(&sw, 0, sizeof(sw));
    sw.meta.default_cluster = sw.meta.default_cert = SNAPWIRE_NONE;
    sw.n_clusters = 1;
    sw.clusters = &cl;
    sw.n_mesh_services = 1;
    sw.mesh_services = &ms;
    sw.n_mesh_ids = 1;
    sw.mesh_ids = &mid;
    assert_true(tls_upstream_wanted(&sw));
    assert_int_equal(tls_upstream_build(&sw, &up, err, sizeof(err)), 0);
    assert_non_null(up);
    assert_int_equal(tls_upstream_mesh_cluster(up, 0), 1);
    assert_int_not_equal(tls_upstream_tag(up, 0), 0);
    assert_null(tls_upstream_client_get(up, 0)); /* no health probes through mTLS */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(tls_mesh_accept(&ts, sv[0]), 0);
    transport_plain_init(&tc, -1);
    assert_int_equal(tls_upstream_start_mesh(up, 0, &tc, sv[1], opaque), 0);
    rc = handshake_pair(&ts, &tc, &srv_rc);
    if (want_ok) {
        assert_int_equal(rc, 1);
        assert_int_equal(srv_rc, 1);
        assert_int_equal(tls_mesh_peer(&ts, uri, sizeof(uri)),
                         opaque ? TLS_MESH_PEER_OPAQUE : TLS_MESH_PEER_HTTP);
        assert_string_equal(uri, IDENTITY);
        assert_int_equal(SSL_version(ts.sess), TLS1_3_VERSION);
        assert_int_equal(transport_send(&tc, "ping", 4, 0), 4);
        for (int i = 0; i < 100 && (rc = (int)transport_recv(&ts, uri, sizeof(uri))) < 0; i++)
            ;
        assert_int_equal(rc, 4);
        assert_memory_equal(uri, "ping", 4);
    } else {
        assert_int_equal(rc, -1);
        assert_int_not_equal(srv_rc, 1);
        assert_int_equal(tls_mesh_peer(&ts, uri, sizeof(uri)), -1);
        assert_non_null(strstr(tls_upstream_error(&tc, err, sizeof(err)), "peer identity refused"));
    }
    ts.ops->close(&ts);
    tc.ops->close(&tc);
    tls_upstream_free(up);
}

static void test_mtls_socketpair(void **state)
{
    struct transport t;
    int sv[2];

    (void)state;
    start(SERVER_NAME, IDENTITY, 3600);
    wait_status(1, 5, NULL, 0);
    mtls_case(IDENTITY, 1, 1);
    mtls_case(IDENTITY, 0, 1);
    mtls_case("spiffe://cluster.local/ns/default/sa/other", 0, 0);
    tls_mesh_stop();
    /* no identity: no mesh transport */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(tls_mesh_accept(&t, sv[0]), -1);
    close(sv[0]);
    close(sv[1]);
}

/* Clusters: the ids of every mtls record using one are its ids; other clusters are not mesh. */
static void test_mesh_cluster_union(void **state)
{
    struct snapwire_cluster cl[3] = {{.name = "default/web:80", .tls_sni = ""},
                                     {.name = "default/db:5432", .tls_sni = ""},
                                     {.name = "default/ext:443+tls",
                                      .tls = 1,
                                      .tls_sni = "ext.example",
                                      .tls_ca = SNAPWIRE_NONE}};
    struct snapwire_mesh_id mid[2] = {{"spiffe://cluster.local/ns/default/sa/other"}, {IDENTITY}};
    struct snapwire_mesh_service ms[3] = {
        {.ns = "default",
         .name = "web",
         .address = "10.96.0.10",
         .port = 80,
         .cluster = 0,
         .mtls = 1,
         .first_id = 0,
         .id_count = 1},
        {.ns = "default",
         .name = "web",
         .address = "fd00::10",
         .port = 80,
         .cluster = 0,
         .mtls = 1,
         .first_id = 1,
         .id_count = 1},
        {.ns = "default", .name = "db", .address = "10.96.0.11", .port = 5432, .cluster = 1}};
    struct snapwire_snapshot sw;
    struct tls_upstream *up = NULL;
    struct transport ts, tc;
    char err[256], uri[256];
    int sv[2], srv_rc;

    (void)state;
    memset(&sw, 0, sizeof(sw));
    sw.meta.default_cluster = sw.meta.default_cert = SNAPWIRE_NONE;
    sw.n_clusters = 3;
    sw.clusters = cl;
    sw.n_mesh_services = 3;
    sw.mesh_services = ms;
    sw.n_mesh_ids = 2;
    sw.mesh_ids = mid;
    assert_int_equal(tls_upstream_build(&sw, &up, err, sizeof(err)), 0);
    assert_int_equal(tls_upstream_mesh_cluster(up, 0), 1);
    assert_int_equal(tls_upstream_mesh_cluster(up, 1), 0); /* mtls 0: plain */
    assert_int_equal(tls_upstream_mesh_cluster(up, 2), 0);
    assert_int_equal(tls_upstream_tag(up, 1), 0);
    assert_int_not_equal(tls_upstream_tag(up, 0), tls_upstream_tag(up, 2));
    assert_int_equal(tls_upstream_start_mesh(up, 1, &tc, 0, 0), -1);
    start(SERVER_NAME, IDENTITY, 3600);
    wait_status(1, 5, NULL, 0);
    /* our identity is the second record's: allowed through the union; via tls_upstream_start */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(tls_mesh_accept(&ts, sv[0]), 0);
    transport_plain_init(&tc, sv[1]);
    assert_int_equal(tls_upstream_start(up, 0, &tc, NULL, 0), 0);
    assert_int_equal(handshake_pair(&ts, &tc, &srv_rc), 1);
    assert_int_equal(tls_mesh_peer(&ts, uri, sizeof(uri)), TLS_MESH_PEER_HTTP);
    assert_int_equal(tls_mesh_peer(&ts, uri, 10), -1); /* does not fit: never cut */
    ts.ops->close(&ts);
    tc.ops->close(&tc);
    tls_mesh_stop();
    tls_upstream_free(up);
}

static void test_start_refuses_bad_config(void **state)
{
    char err[256];
    struct tls_mesh_config cfg = {"127.0.0.1:1", SERVER_NAME, "cluster.local",
                                  "junk",        token_path,  1};

    (void)state;
    assert_int_equal(tls_mesh_start(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "anchors"));
    cfg.anchors_pem = ca_pem;
    cfg.identity_addr = "nohostport";
    assert_int_equal(tls_mesh_start(&cfg, err, sizeof(err)), -1);
    cfg.identity_addr = "127.0.0.1:1";
    cfg.trust_domain = "a/b";
    assert_int_equal(tls_mesh_start(&cfg, err, sizeof(err)), -1);
}

static void test_http_response_parsing(void **state)
{
    char a[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    char b[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n1\r\n}\r\n0\r\n\r\n";
    char c[] = "HTTP/1.1 401 No\r\n\r\nnope";
    char d[] = "HTTP/1.1 200 OK\r\nX-Strait-Versionx: no\r\nx-strait-version:  \t0123abcd \r\n"
               "Content-Length: 0\r\n\r\n";
    char e[] = "HTTP/1.1 204 No Content\r\n\r\n";
    char *body, ver[8];
    size_t blen;
    int status;

    (void)state;
    assert_int_equal(http_response(a, strlen(a) - 1, 0, &status, &body, &blen, NULL, NULL, 0), 0);
    assert_int_equal(http_response(a, strlen(a), 0, &status, &body, &blen, NULL, NULL, 0), 1);
    assert_int_equal(status, 200);
    assert_string_equal(body, "{}");
    assert_int_equal(http_response(b, strlen(b) - 9, 0, &status, &body, &blen, NULL, NULL, 0), 0);
    assert_int_equal(http_response(b, strlen(b), 0, &status, &body, &blen, NULL, NULL, 0), 1);
    assert_string_equal(body, "{\"}");
    assert_int_equal(http_response(c, strlen(c), 0, &status, &body, &blen, NULL, NULL, 0), 0);
    assert_int_equal(http_response(c, strlen(c), 1, &status, &body, &blen, NULL, NULL, 0), 1);
    assert_int_equal(status, 401);
    assert_string_equal(body, "nope");
    /* a header's value, trimmed and cut to the buffer; a longer name is another header */
    assert_int_equal(
        http_response(d, strlen(d), 0, &status, &body, &blen, "x-strait-version", ver, sizeof(ver)),
        1);
    assert_string_equal(ver, "0123abc");
    assert_int_equal(blen, 0);
    /* absent: "" (a 204 has no body: complete at the head, no EOF or length needed) */
    strcpy(ver, "stale");
    assert_int_equal(
        http_response(e, strlen(e), 0, &status, &body, &blen, "x-strait-version", ver, sizeof(ver)),
        1);
    assert_int_equal(status, 204);
    assert_string_equal(ver, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_response_parsing),
        cmocka_unit_test(test_start_refuses_bad_config),
        cmocka_unit_test(test_issued_installed),
        cmocka_unit_test(test_ip_name_accepted),
        cmocka_unit_test(test_wrong_server_name),
        cmocka_unit_test(test_foreign_trust_domain),
        cmocka_unit_test(test_mtls_socketpair),
        cmocka_unit_test(test_mesh_cluster_union),
        cmocka_unit_test(test_renewal_and_outage),
    };

    signal(SIGPIPE, SIG_IGN); /* as the data plane (main.c) */
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
