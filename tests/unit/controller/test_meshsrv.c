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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads),  cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_tokens), cmocka_unit_test(test_default_names),
        cmocka_unit_test(test_live),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
