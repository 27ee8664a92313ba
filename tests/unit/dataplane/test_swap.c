/*
 * Snapshot swap under load: a request routed with snapshot A is held in flight by a
 * backend that has not answered yet; snapshot B (no endpoint) is published; the in-flight
 * request still completes through A, A lives exactly as long as that request, and a new
 * request is routed with B. Runs a real worker thread on loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot.h"
#include "worker.h"

static int backend_fd;
static int release_pipe[2];

static uint16_t bound_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);

    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    return ntohs(sin.sin_port);
}

static int listen_any(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

/* Answers one request once a byte arrives on release_pipe. */
static void *backend_main(void *arg)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    char buf[4096], b;
    size_t got = 0;
    int c;

    (void)arg;
    c = accept(backend_fd, NULL, NULL);
    while (got < sizeof(buf) - 1) {
        ssize_t n = read(c, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n")) break;
    }
    if (read(release_pipe[0], &b, 1) == 1) (void)!write(c, resp, sizeof(resp) - 1);
    close(c);
    return NULL;
}

static struct snapshot *make_snapshot(uint64_t gen, uint16_t port)
{
    struct snapwire_endpoint ep = {"127.0.0.1", port, 1, 1};
    struct snapwire_cluster cl = {.name = "t/svc:80",
                                  .lb = SNAPWIRE_LB_ROUND_ROBIN,
                                  .first_endpoint = 0,
                                  .endpoint_count = port ? 1 : 0,
                                  .tls = 0,
                                  .tls_sni = "",
                                  .tls_ca = SNAPWIRE_NONE,
                                  .hash_on = SNAPWIRE_HASH_NONE,
                                  .hash_name = "",
                                  .affinity_cookie = ""};
    struct snapwire_route rt = {
        .path = "/", .match = SNAPWIRE_MATCH_PREFIX, .cluster = 0, .source = "t/ing", .hsts = ""};
    struct snapwire_vhost vh = {"", 0, 1};
    struct snapwire_snapshot s = {.meta = {SNAPWIRE_NONE, "test", 0, SNAPWIRE_NONE},
                                  .n_vhosts = 1,
                                  .n_routes = 1,
                                  .n_clusters = 1,
                                  .n_endpoints = port ? 1 : 0,
                                  .vhosts = &vh,
                                  .routes = &rt,
                                  .clusters = &cl,
                                  .endpoints = &ep};
    struct snapwire_snapshot dec;
    uint8_t *frame;
    size_t len;
    char err[256];
    struct snapshot *snap;

    assert_int_equal(snapwire_encode(&s, gen, &frame, &len, err, sizeof(err)), 0);
    assert_int_equal(snapwire_decode(frame, len, &dec, err, sizeof(err)), 0);
    free(frame);
    snap = snapshot_build(&dec, err, sizeof(err));
    assert_non_null(snap);
    return snap;
}

static int client_connect(uint16_t port)
{
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;

    while (got < cap - 1 && (n = read(fd, buf + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
}

static void wait_refs(struct snapshot *s, int want)
{
    int i;

    for (i = 0; i < 400 && atomic_load(&s->refs) != want; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&s->refs), want);
}

static void test_inflight_survives_swap(void **state)
{
    static const char req[] = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    struct worker_pool *pool;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct snapshot *a, *b;
    pthread_t bt;
    char err[256], resp[4096];
    uint16_t port;
    int tmp, c1, c2;

    (void)state;
    backend_fd = listen_any();
    assert_int_equal(pipe(release_pipe), 0);
    assert_int_equal(pthread_create(&bt, NULL, backend_main, NULL), 0);
    tmp = listen_any(); /* find a free port for the proxy */
    port = bound_port(tmp);
    close(tmp);
    sin.sin_port = htons(port);
    assert_int_equal(
        worker_pool_start(&pool, 1, (struct sockaddr *)&sin, sizeof(sin), NULL, err, sizeof(err)),
        0);

    a = make_snapshot(1, bound_port(backend_fd));
    worker_pool_publish(pool, a);
    wait_refs(a, 2); /* ours + the worker's current */

    c1 = client_connect(port);
    assert_int_equal(write(c1, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    wait_refs(a, 3); /* + the in-flight request */

    b = make_snapshot(2, 0); /* no endpoint: new requests get 503 */
    worker_pool_publish(pool, b);
    wait_refs(a, 2); /* worker dropped A as current; the request still holds it */

    c2 = client_connect(port);
    assert_int_equal(write(c2, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    read_all(c2, resp, sizeof(resp));
    assert_non_null(strstr(resp, "HTTP/1.1 503"));
    assert_non_null(strstr(resp, "no healthy endpoint\n"));
    close(c2);

    assert_int_equal(write(release_pipe[1], "x", 1), 1);
    read_all(c1, resp, sizeof(resp));
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(resp, "\r\n\r\nhello"));
    close(c1);
    wait_refs(a, 1); /* request over: only ours is left */

    snapshot_unref(a);
    snapshot_unref(b);
    worker_pool_stop(pool, 1.0);
    pthread_join(bt, NULL);
    close(backend_fd);
    close(release_pipe[0]);
    close(release_pipe[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inflight_survives_swap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
