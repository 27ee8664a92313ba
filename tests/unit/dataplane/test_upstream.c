/*
 * upstream pool: keyed by address (family, address, port), LIFO per endpoint, limited per
 * endpoint, and an idle connection that turns readable (peer closed or sent bytes) or
 * outlives the idle timeout is dropped. Uses socketpairs as "connections" on a real loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "upstream.h"

static struct sockaddr_in addr(const char *ip, uint16_t port)
{
    struct sockaddr_in sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    return sin;
}

/* A connected pair: returns our end, *peer gets the other. */
static int pair(int *peer)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    *peer = sv[1];
    return sv[0];
}

static int is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void test_key_lifo_and_limit(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 2, 60.);
    struct sockaddr_in a = addr("127.0.0.1", 80), a2 = addr("127.0.0.1", 80),
                       b = addr("127.0.0.1", 81), c = addr("127.0.0.2", 80);
    int peers[3], fds[3], i;

    (void)state;
    for (i = 0; i < 3; i++)
        fds[i] = pair(&peers[i]);
    assert_int_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a)), -1);
    for (i = 0; i < 3; i++)
        upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), fds[i]);
    assert_int_equal(upstream_pool_idle(p), 2);
    assert_false(is_open(fds[2])); /* over the limit: closed */
    assert_int_equal(upstream_pool_take(p, (struct sockaddr *)&b, sizeof(b)), -1);
    assert_int_equal(upstream_pool_take(p, (struct sockaddr *)&c, sizeof(c)), -1);
    assert_int_equal(upstream_pool_take(p, (struct sockaddr *)&a2, sizeof(a2)), fds[1]);
    assert_int_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a)), fds[0]);
    assert_int_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a)), -1);
    assert_int_equal(upstream_pool_idle(p), 0);
    upstream_pool_put(p, (struct sockaddr *)&b, sizeof(b), fds[0]);
    upstream_pool_free(p); /* closes what is parked */
    assert_false(is_open(fds[0]));
    close(fds[1]);
    for (i = 0; i < 3; i++)
        close(peers[i]);
    ev_loop_destroy(loop);
}

static void test_readable_or_expired_is_dropped(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 8, 0.05);
    struct sockaddr_in a = addr("10.0.0.1", 8080);
    int peer1, peer2, peer3, fd1 = pair(&peer1), fd2 = pair(&peer2), fd3 = pair(&peer3);

    (void)state;
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), fd1);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), fd2);
    close(peer1);                              /* server closed the idle connection */
    assert_int_equal(write(peer2, "x", 1), 1); /* unsolicited bytes */
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd1));
    assert_false(is_open(fd2));
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), fd3);
    ev_run(loop, 0); /* only the idle timer is left: returns after it fired */
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd3));
    upstream_pool_free(p);
    close(peer2);
    close(peer3);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_lifo_and_limit),
        cmocka_unit_test(test_readable_or_expired_is_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
