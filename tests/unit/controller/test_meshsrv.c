/*
 * meshsrv: request heads parsed as a table (what is accepted, which 4xx the rest gets), and
 * header lookup; meshid: the token map file's syntax and lookups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>

#include "../../../controller/meshid.c"
#include "../../../controller/meshsrv.c"

static struct msrv_conn *conn_with(const char *raw)
{
    struct msrv_conn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    assert_non_null(c->in = malloc(MESHSRV_MAX_REQUEST + 1));
    c->in_len = strlen(raw);
    memcpy(c->in, raw, c->in_len);
    c->head_len = msrv_head_end(c->in, c->in_len);
    return c;
}

static void test_heads(void **state)
{
    static const struct {
        const char *raw;
        int status;
        size_t body_len;
    } rows[] = {
        {"POST /v1/identity HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", 0, 12},
        {"POST /v1/identity?x=1 HTTP/1.1\nContent-Length: 0\n\n", 0, 0},
        {"GET / HTTP/1.0\r\n\r\n", 0, 0},
        {"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 5},
        {"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413, 0},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, 0},
        {"POST a HTTP/1.1\r\n\r\n", 400, 0},
        {"POST /a HTTP/2.0\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1 x\r\n\r\n", 400, 0},
        {"PO ST /a HTTP/1.1\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\nNoColon\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, 0},
        {"POST /a HTTP/1.1\r\n: empty\r\n\r\n", 400, 0},
    };
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct msrv_conn *c = conn_with(rows[i].raw);
        int st = msrv_parse_head(c, &why);
        if (st != rows[i].status || (st == 0 && c->body_len != rows[i].body_len))
            fail_msg("row %zu: status %d body %zu, want %d %zu", i, st, c->body_len, rows[i].status,
                     rows[i].body_len);
        free(c->in);
        free(c);
    }
}

static void test_header_lookup(void **state)
{
    struct msrv_conn *c =
        conn_with("POST /v1/identity?q HTTP/1.1\r\nauthorization:   Bearer abc  \r\nX: 1\r\n\r\n");
    const char *why;

    (void)state;
    assert_int_equal(msrv_parse_head(c, &why), 0);
    assert_string_equal(c->req.method, "POST");
    assert_string_equal(c->req.path, "/v1/identity");
    assert_string_equal(meshsrv_header(&c->req, "Authorization"), "Bearer abc");
    assert_string_equal(meshsrv_header(&c->req, "x"), "1");
    assert_null(meshsrv_header(&c->req, "Content-Length"));
    free(c->in);
    free(c);
    /* a NUL byte in the head */
    c = conn_with("POST /a HTTP/1.1\r\nA: b\r\n\r\n");
    c->in[10] = '\0';
    assert_int_equal(msrv_parse_head(c, &why), 400);
    free(c->in);
    free(c);
}

static void test_tokens(void **state)
{
    struct meshid_tokens t;
    char err[300];
    static const char *bad[] = {
        "s3cr3t default\n",           /* two fields */
        "s3cr3t default web extra\n", /* four */
        "s3cr3t Default web\n",       /* namespace not a label */
        "s3cr3t default we/b\n",      /* account not a name */
    };

    (void)state;
    assert_int_equal(tokens_parse("# comment\n\n  tok-a\tdefault  web # trailing\r\n"
                                  "tok-b shop db",
                                  &t, err, sizeof(err)),
                     0);
    assert_int_equal(t.n, 2);
    assert_string_equal(tokens_find(&t, "tok-a")->sa, "web");
    assert_string_equal(tokens_find(&t, "tok-b")->ns, "shop");
    assert_null(tokens_find(&t, "tok-"));
    assert_null(tokens_find(&t, "tok-ab"));
    assert_null(tokens_find(&t, ""));
    tokens_free(&t);
    assert_int_equal(tokens_parse("", &t, err, sizeof(err)), 0);
    assert_int_equal(t.n, 0);
    tokens_free(&t);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(tokens_parse(bad[i], &t, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "line 1"));
        assert_null(strstr(err, "s3cr3t")); /* the token is never in a message */
    }
    assert_int_equal(tokens_parse("a default web\n\nb x y/z\n", &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 3"));
}

static void test_default_names(void **state)
{
    char buf[300], dir[] = "/tmp/test_meshsrv_XXXXXX", path[400];
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    setenv("STRAIT_SERVICEACCOUNT_DIR", dir, 1);
    meshid_default_server_names(buf, sizeof(buf));
    assert_string_equal(buf, "strait-controller,strait-controller.strait-system.svc,localhost");
    snprintf(path, sizeof(path), "%s/namespace", dir);
    f = fopen(path, "w");
    fputs("mesh-ns\n", f);
    fclose(f);
    meshid_default_server_names(buf, sizeof(buf));
    assert_string_equal(buf, "strait-controller,strait-controller.mesh-ns.svc,localhost");
    unlink(path);
    rmdir(dir);
}

/* ---- the server on a loop, a TLS client in a thread ---- */

struct live {
    struct ev_loop *loop;
    struct meshsrv *srv;
    int port;
    ev_async done;
    ev_timer later;
    struct meshsrv_request *held; /* an MESHSRV_ASYNC request being answered later */
    int async_calls;
    char results[8][600];
};

static int sync_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    (void)arg;
    out->status = 201;
    out->content_type = "text/plain";
    assert_true(asprintf(&out->body, "got %zu bytes, x=%s", req->body_len,
                         meshsrv_header(req, "X") ? meshsrv_header(req, "X") : "-") > 0);
    return 0;
}

static void later_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct live *l = container_of(t, struct live, later);

    (void)loop;
    (void)revents;
    meshsrv_finish(l->held, 202, NULL, strdup("{\"late\": true}"));
    l->held = NULL;
}

static int async_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    struct live *l = arg;

    (void)out;
    l->async_calls++;
    l->held = req;
    ev_timer_set(&l->later, 0.2, 0.);
    ev_timer_start(l->loop, &l->later);
    return MESHSRV_ASYNC;
}

static void done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)a;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* One request over TLS (no verification: the test checks HTTP); the answer's first line. */
static void exchange(struct live *l, const char *req, char *out, size_t n, int close_early)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), k;
    size_t got = 0;
    SSL *ssl;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
    out[0] = '\0';
    if (!close_early)
        while (got + 1 < n && (k = SSL_read(ssl, out + got, (int)(n - 1 - got))) > 0)
            got += (size_t)k;
    out[got] = '\0';
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
}

static void *client_main(void *arg)
{
    struct live *l = arg;

    exchange(l, "POST /s HTTP/1.1\r\nX: 7\r\nContent-Length: 3\r\n\r\nabc", l->results[0], 600, 0);
    exchange(l, "POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", l->results[1], 600, 0);
    exchange(l, "GET /s HTTP/1.1\r\n\r\n", l->results[2], 600, 0);
    exchange(l, "GET /none HTTP/1.1\r\n\r\n", l->results[3], 600, 0);
    exchange(l, "BAD\r\n\r\n", l->results[4], 600, 0);
    /* the client goes away while its asynchronous answer is pending */
    exchange(l, "POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", l->results[5], 600, 1);
    usleep(400000); /* the late answer finds the connection gone */
    ev_async_send(l->loop, &l->done);
    return NULL;
}

static void test_live(void **state)
{
    struct live l;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char err[300], *cert, *key, addr[64];
    static const char *const ip[] = {"127.0.0.1"};
    struct meshca *ca = meshca_generate("cluster.local", 1, time(NULL), err, sizeof(err));
    pthread_t th;

    (void)state;
    memset(&l, 0, sizeof(l));
    log_init("test", LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN); /* as the controller does: a late answer to a closed socket */
    assert_non_null(ca);
    assert_int_equal(
        meshca_sign_server(ca, NULL, 0, ip, 1, 3600, time(NULL), &cert, &key, err, sizeof(err)), 0);
    l.loop = ev_loop_new(EVFLAG_AUTO);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_non_null(l.srv = meshsrv_start(l.loop, (struct sockaddr *)&sa, sizeof(sa), cert, key,
                                          err, sizeof(err)));
    assert_int_equal(meshsrv_route(l.srv, "POST", "/s", sync_handler, &l), 0);
    assert_int_equal(meshsrv_route(l.srv, "POST", "/a", async_handler, &l), 0);
    meshsrv_address(l.srv, addr, sizeof(addr));
    l.port = atoi(strrchr(addr, ':') + 1);
    ev_async_init(&l.done, done_cb);
    ev_async_start(l.loop, &l.done);
    ev_timer_init(&l.later, later_cb, 0.2, 0.);
    assert_int_equal(pthread_create(&th, NULL, client_main, &l), 0);
    ev_run(l.loop, 0);
    pthread_join(th, NULL);
    assert_non_null(strstr(l.results[0], "HTTP/1.1 201 Created\r\n"));
    assert_non_null(strstr(l.results[0], "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(l.results[0], "\r\n\r\ngot 3 bytes, x=7"));
    assert_non_null(strstr(l.results[1], "HTTP/1.1 202 Accepted\r\n"));
    assert_non_null(strstr(l.results[1], "{\"late\": true}"));
    assert_non_null(strstr(l.results[2], "HTTP/1.1 405 "));
    assert_non_null(strstr(l.results[2], "Allow: POST\r\n"));
    assert_non_null(strstr(l.results[3], "HTTP/1.1 404 "));
    assert_non_null(strstr(l.results[4], "HTTP/1.1 400 "));
    assert_non_null(strstr(l.results[4], "{\"error\":"));
    assert_int_equal(l.async_calls, 2);
    assert_null(l.held);
    meshsrv_stop(l.srv);
    ev_loop_destroy(l.loop);
    free(cert);
    free(key);
    meshca_free(ca);
}

/* ---- client certificates and held requests ---- */

/* A fresh P-256 key and a CSR for it (PEM, malloc'd). */
static EVP_PKEY *new_key_csr(char **csr_pem)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *r = X509_REQ_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;

    assert_non_null(k);
    assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
    assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509_REQ(b, r), 1);
    n = BIO_get_mem_data(b, &p);
    *csr_pem = strndup(p, (size_t)n);
    BIO_free(b);
    X509_REQ_free(r);
    return k;
}

/*
 * A certificate for key with the URI SANs uris (comma list), signed by issuer_key: the
 * mesh root's (a leaf meshca would never make) or key itself (self-signed).
 */
static X509 *cert_with_uris(EVP_PKEY *key, const char *uris, const char *issuer_pem,
                            EVP_PKEY *issuer_key)
{
    X509 *x = X509_new(), *issuer = NULL;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    BIO *b;

    if (issuer_pem) {
        b = BIO_new_mem_buf(issuer_pem, -1);
        issuer = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        assert_non_null(issuer);
    }
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, uris));
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    X509_free(issuer);
    return x;
}

struct certs_live {
    struct ev_loop *loop;
    int port;
    ev_async done;
    X509 *leaf, *two_uris, *stranger;
    EVP_PKEY *key, *stranger_key;
    int gone;
    char results[5][600];
};

static int id_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    (void)arg;
    out->content_type = "text/plain";
    out->body = strdup(req->peer_uri ? req->peer_uri : "-");
    return 0;
}

static void gone_cb(void *arg, struct meshsrv_request *req)
{
    struct certs_live *l = arg;

    l->gone++;
    meshsrv_finish(req, 204, NULL, NULL); /* the client is gone: nothing is sent */
}

static int hold_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    (void)out;
    assert_int_equal(meshsrv_hold(req, 30.0), 0);
    assert_string_equal(req->path, "/hold"); /* kept; the body and headers are released */
    assert_null(meshsrv_header(req, "Content-Length"));
    meshsrv_on_gone(req, gone_cb, arg);
    return MESHSRV_ASYNC;
}

static void certs_done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)a;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* One request with a client certificate (x, k) or none; the answer (what could be read). */
static void exchange_cert(int port, X509 *x, EVP_PKEY *k, const char *req, char *out, size_t n,
                          int close_early)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), kk;
    size_t got = 0;
    SSL *ssl;

    if (x) {
        assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    out[0] = '\0';
    /* TLS 1.3: a refused client certificate shows as a failed read, after the handshake */
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, req, (int)strlen(req)) > 0 && !close_early)
        while (got + 1 < n && (kk = SSL_read(ssl, out + got, (int)(n - 1 - got))) > 0)
            got += (size_t)kk;
    out[got] = '\0';
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
}

static void *certs_client(void *arg)
{
    struct certs_live *l = arg;
    static const char id[] = "POST /id HTTP/1.1\r\nContent-Length: 0\r\n\r\n";

    exchange_cert(l->port, NULL, NULL, id, l->results[0], 600, 0);
    exchange_cert(l->port, l->leaf, l->key, id, l->results[1], 600, 0);
    exchange_cert(l->port, l->two_uris, l->key, id, l->results[2], 600, 0);
    exchange_cert(l->port, l->stranger, l->stranger_key, id, l->results[3], 600, 0);
    /* a held request whose client leaves: the handler is told at once */
    exchange_cert(l->port, NULL, NULL, "POST /hold HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
                  l->results[4], 600, 1);
    for (int i = 0; i < 100 && !__atomic_load_n(&l->gone, __ATOMIC_SEQ_CST); i++)
        usleep(10000);
    ev_async_send(l->loop, &l->done);
    return NULL;
}

static void test_client_certs_and_hold(void **state)
{
    struct certs_live l;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char err[300], *cert, *key, *csr, *leaf_pem, addr[64];
    static const char *const ip[] = {"127.0.0.1"};
    struct meshca *ca = meshca_generate("cluster.local", 1, time(NULL), err, sizeof(err));
    struct meshsrv *srv;
    EVP_PKEY *ca_key;
    pthread_t th;
    BIO *b;

    (void)state;
    memset(&l, 0, sizeof(l));
    log_init("test", LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN);
    assert_non_null(ca);
    assert_int_equal(
        meshca_sign_server(ca, NULL, 0, ip, 1, 3600, time(NULL), &cert, &key, err, sizeof(err)), 0);
    l.key = new_key_csr(&csr);
    assert_int_equal(
        meshca_sign(ca, csr, "default", "web", 3600, time(NULL), &leaf_pem, err, sizeof(err)), 0);
    b = BIO_new_mem_buf(leaf_pem, -1);
    l.leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(meshca_key_pem(ca), -1);
    ca_key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    l.two_uris = cert_with_uris(l.key,
                                "URI:spiffe://cluster.local/ns/a/sa/b,"
                                "URI:spiffe://cluster.local/ns/c/sa/d",
                                meshca_cert_pem(ca), ca_key);
    l.stranger_key = EVP_EC_gen("P-256");
    l.stranger = cert_with_uris(l.stranger_key, "URI:spiffe://cluster.local/ns/default/sa/web",
                                NULL, l.stranger_key);
    l.loop = ev_loop_new(EVFLAG_AUTO);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_non_null(srv = meshsrv_start(l.loop, (struct sockaddr *)&sa, sizeof(sa), cert, key, err,
                                        sizeof(err)));
    assert_int_equal(meshsrv_set_client_ca(srv, "not PEM", err, sizeof(err)), -1);
    assert_int_equal(meshsrv_set_client_ca(srv, meshca_bundle_pem(ca), err, sizeof(err)), 0);
    /* a new server certificate keeps asking for client certificates */
    assert_int_equal(meshsrv_set_cert(srv, cert, key, err, sizeof(err)), 0);
    assert_int_equal(meshsrv_route(srv, "POST", "/id", id_handler, &l), 0);
    assert_int_equal(meshsrv_route(srv, "POST", "/hold", hold_handler, &l), 0);
    meshsrv_address(srv, addr, sizeof(addr));
    l.port = atoi(strrchr(addr, ':') + 1);
    ev_async_init(&l.done, certs_done_cb);
    ev_async_start(l.loop, &l.done);
    assert_int_equal(pthread_create(&th, NULL, certs_client, &l), 0);
    ev_run(l.loop, 0);
    pthread_join(th, NULL);
    assert_non_null(strstr(l.results[0], "\r\n\r\n-")); /* none: reached */
    assert_non_null(strstr(l.results[1], "\r\n\r\nspiffe://cluster.local/ns/default/sa/web"));
    assert_non_null(strstr(l.results[2], "\r\n\r\n-")); /* two URIs: none */
    assert_null(strstr(l.results[3], "HTTP/1.1"));      /* not our root */
    assert_int_equal(l.gone, 1);
    meshsrv_stop(srv);
    ev_loop_destroy(l.loop);
    X509_free(l.leaf);
    X509_free(l.two_uris);
    X509_free(l.stranger);
    EVP_PKEY_free(l.key);
    EVP_PKEY_free(l.stranger_key);
    EVP_PKEY_free(ca_key);
    free(csr);
    free(leaf_pem);
    free(cert);
    free(key);
    meshca_free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads),  cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_tokens), cmocka_unit_test(test_default_names),
        cmocka_unit_test(test_live),   cmocka_unit_test(test_client_certs_and_hold),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
