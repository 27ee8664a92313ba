/*
 * upstream pool: keyed by address (family, address, port), LIFO per endpoint, limited per
 * endpoint, and an idle connection that turns readable (peer closed or sent bytes) or
 * outlives the idle timeout is dropped; handing a connection over keeps its read watcher
 * running and moves its callbacks; a prune closes the idle connections its filter refuses and
 * keeps that filter for connections parked later. Real connects to a Unix listener on a real loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

/*
 * A connected pair wrapped as an upstream connection on loop (the way a connect would make
 * one): returns it, *peer gets the other end, *fd its socket.
 */
static struct upstream_conn *pair(struct ev_loop *loop, int *peer, int *fd)
{
    struct sockaddr_un sun;
    struct upstream_conn *u;
    int sv[2], in_progress = 0, lfd;
    char path[] = "/tmp/strait-test-upstream-XXXXXX";

    /* upstream_conn_open connects for real: give it a listening Unix socket to reach */
    assert_non_null(mkdtemp(path));
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", path);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    u = upstream_conn_open(loop, (struct sockaddr *)&sun, sizeof(sun), &in_progress);
    assert_non_null(u);
    sv[1] = accept(lfd, NULL, NULL);
    assert_true(sv[1] >= 0);
    close(lfd);
    unlink(sun.sun_path);
    rmdir(path);
    *peer = sv[1];
    *fd = u->fd;
    return u;
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
    struct upstream_conn *u[3];
    int peers[3], fds[3], i;

    (void)state;
    for (i = 0; i < 3; i++)
        u[i] = pair(loop, &peers[i], &fds[i]);
    assert_null(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0));
    for (i = 0; i < 3; i++)
        upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[i]);
    assert_int_equal(upstream_pool_idle(p), 2);
    assert_false(is_open(fds[2])); /* over the limit: closed */
    assert_null(upstream_pool_take(p, (struct sockaddr *)&b, sizeof(b), 0));
    assert_null(upstream_pool_take(p, (struct sockaddr *)&c, sizeof(c), 0));
    assert_ptr_equal(upstream_pool_take(p, (struct sockaddr *)&a2, sizeof(a2), 0), u[1]);
    /* taken out, its read watcher is still running: no epoll change on the hand-over */
    assert_true(ev_is_active(&u[1]->rio));
    assert_ptr_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0), u[0]);
    assert_null(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0));
    assert_int_equal(upstream_pool_idle(p), 0);
    upstream_pool_put(p, (struct sockaddr *)&b, sizeof(b), u[0]);
    upstream_pool_put(NULL, (struct sockaddr *)&b, sizeof(b), u[1]); /* no pool: closed */
    assert_false(is_open(fds[1]));
    upstream_pool_free(p); /* closes what is parked */
    assert_false(is_open(fds[0]));
    for (i = 0; i < 3; i++)
        close(peers[i]);
    ev_loop_destroy(loop);
}

static void test_no_pooling_when_max_idle_is_zero(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 0, 60.);
    struct sockaddr_in a = addr("127.0.0.1", 80);
    int peer, fd;
    struct upstream_conn *u = pair(loop, &peer, &fd);

    (void)state;
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u);
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd));
    assert_null(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0));
    upstream_pool_free(p);
    close(peer);
    ev_loop_destroy(loop);
}

static int attached_reads;

static void count_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    char buf[16];

    (void)loop;
    (void)revents;
    attached_reads += *(int *)io->data;
    while (read(((struct upstream_conn *)((char *)io - offsetof(struct upstream_conn, rio)))->fd,
                buf, sizeof(buf)) > 0)
        ;
}

static void test_attach_moves_callbacks(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 4, 60.);
    struct sockaddr_in a = addr("127.0.0.1", 80);
    int peer, fd, weight = 7;
    struct upstream_conn *u = pair(loop, &peer, &fd), *t;

    (void)state;
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u);
    t = upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0);
    assert_ptr_equal(t, u);
    upstream_conn_attach(u, count_read_cb, count_read_cb, &weight);
    assert_int_equal(write(peer, "x", 1), 1); /* a response byte reaches the new owner */
    ev_run(loop, EVRUN_ONCE);
    assert_int_equal(attached_reads, 7);
    assert_true(is_open(fd));
    upstream_conn_close(u);
    assert_false(is_open(fd));
    upstream_pool_free(p);
    close(peer);
    ev_loop_destroy(loop);
}

/* A connection parked under a transport tag (a TLS set-up) only goes to the same tag. */
static void test_tags_keep_transports_apart(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 1, 60.);
    struct sockaddr_in a = addr("127.0.0.1", 443);
    struct upstream_conn *plain, *tls;
    int peers[2], fds[2];

    (void)state;
    plain = pair(loop, &peers[0], &fds[0]);
    tls = pair(loop, &peers[1], &fds[1]);
    assert_true(plain->tag == 0 && tls->tag == 0); /* upstream_conn_open: plain */
    tls->tag = 0x1234;
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), plain);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), tls); /* its own entry: kept */
    assert_int_equal(upstream_pool_idle(p), 2);
    assert_true(is_open(fds[0]) && is_open(fds[1]));
    assert_null(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0x9999));
    assert_ptr_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0x1234), tls);
    assert_null(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0x1234));
    assert_ptr_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0), plain);
    upstream_conn_close(plain);
    upstream_conn_close(tls);
    close(peers[0]);
    close(peers[1]);
    upstream_pool_free(p);
    ev_loop_destroy(loop);
}

static void test_readable_or_expired_is_dropped(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 8, 0.05);
    struct sockaddr_in a = addr("10.0.0.1", 8080);
    int peer1, peer2, peer3, fd1, fd2, fd3;
    struct upstream_conn *u1 = pair(loop, &peer1, &fd1), *u2 = pair(loop, &peer2, &fd2),
                         *u3 = pair(loop, &peer3, &fd3);

    (void)state;
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u1);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u2);
    close(peer1);                              /* server closed the idle connection */
    assert_int_equal(write(peer2, "x", 1), 1); /* unsolicited bytes */
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd1));
    assert_false(is_open(fd2));
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u3);
    ev_run(loop, 0); /* only the idle timer is left: returns after it fired */
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd3));
    upstream_pool_free(p);
    close(peer2);
    close(peer3);
    ev_loop_destroy(loop);
}

static void break_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop for about s seconds (what is measured here is the pool's idle timing). */
static void run_for(struct ev_loop *loop, double s)
{
    ev_timer t;

    ev_timer_init(&t, break_cb, s, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

/*
 * Each parked connection gets its own idle time from its parking, though the pool has one
 * timer: the first to expire goes alone, the younger one later; taking the oldest back out
 * does not make the timer drop the next one early.
 */
static void test_idle_timeout_counts_from_each_parking(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 8, 0.3);
    struct sockaddr_in a = addr("10.0.0.1", 8080), b = addr("10.0.0.2", 8080);
    int peer[4], fd[4], i;
    struct upstream_conn *u[4];

    (void)state;
    for (i = 0; i < 4; i++)
        u[i] = pair(loop, &peer[i], &fd[i]);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[0]); /* due at 0.3 */
    run_for(loop, 0.15);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[1]); /* due at 0.45 */
    run_for(loop, 0.225);                                         /* t = 0.375 */
    assert_int_equal(upstream_pool_idle(p), 1);
    assert_false(is_open(fd[0]));
    assert_true(is_open(fd[1]));
    run_for(loop, 0.15); /* t = 0.525 */
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd[1]));

    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[2]); /* due at 0.3 */
    run_for(loop, 0.15);
    upstream_pool_put(p, (struct sockaddr *)&b, sizeof(b), u[3]); /* due at 0.45 */
    assert_ptr_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0), u[2]);
    run_for(loop, 0.225); /* t = 0.375: the timer set for u[2] fired and waits for u[3] */
    assert_int_equal(upstream_pool_idle(p), 1);
    assert_true(is_open(fd[3]));
    run_for(loop, 0.15); /* t = 0.525 */
    assert_int_equal(upstream_pool_idle(p), 0);
    assert_false(is_open(fd[3]));
    assert_true(is_open(fd[2])); /* in use: the pool no longer times it */
    upstream_conn_close(u[2]);
    upstream_pool_free(p);
    for (i = 0; i < 4; i++)
        close(peer[i]);
    ev_loop_destroy(loop);
}

/* keep: only port 80 under tag 0 (arg counts the calls) */
static int keep_port_80(const struct sockaddr *sa, socklen_t salen, uint64_t tag, void *arg)
{
    (void)salen;
    ++*(int *)arg;
    return tag == 0 && ntohs(((const struct sockaddr_in *)sa)->sin_port) == 80;
}

static int freed_args;

static void count_free(void *arg)
{
    (void)arg;
    freed_args++;
}

/*
 * A prune closes the idle connections the filter refuses (every one of the entry), keeps the
 * others, and the filter then also stops a connection that was in use across the prune, or a
 * fresh one, from being parked; one taken out after the prune is not asked again.
 */
static void test_prune_closes_what_left(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct upstream_pool *p = upstream_pool_new(loop, 8, 60.);
    struct sockaddr_in a = addr("127.0.0.1", 80), b = addr("127.0.0.1", 81);
    struct upstream_conn *u[6];
    int peers[6], fds[6], i, calls = 0, calls2 = 0;

    (void)state;
    for (i = 0; i < 6; i++)
        u[i] = pair(loop, &peers[i], &fds[i]);
    u[2]->tag = 0x77; /* a's address, another transport */
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[0]);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[1]);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[2]);
    upstream_pool_put(p, (struct sockaddr *)&b, sizeof(b), u[3]);
    upstream_pool_put(p, (struct sockaddr *)&b, sizeof(b), u[4]);
    /* u[5]: in use on b while the snapshot changes */
    assert_int_equal(upstream_pool_idle(p), 5);
    assert_int_equal(upstream_pool_prune(p, keep_port_80, &calls, count_free), 3);
    assert_int_equal(calls, 3); /* once per (address, tag) entry */
    assert_int_equal(upstream_pool_idle(p), 2);
    assert_true(is_open(fds[0]) && is_open(fds[1]));
    assert_false(is_open(fds[2]) || is_open(fds[3]) || is_open(fds[4]));
    assert_null(upstream_pool_take(p, (struct sockaddr *)&b, sizeof(b), 0));
    assert_null(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0x77));
    assert_true(is_open(fds[5]));
    /* the request on b finishes: closed, not parked */
    upstream_pool_put(p, (struct sockaddr *)&b, sizeof(b), u[5]);
    assert_false(is_open(fds[5]));
    assert_int_equal(upstream_pool_idle(p), 2);
    /* taken after the prune and parked again: the filter is not asked */
    calls = 0;
    assert_ptr_equal(upstream_pool_take(p, (struct sockaddr *)&a, sizeof(a), 0), u[1]);
    upstream_pool_put(p, (struct sockaddr *)&a, sizeof(a), u[1]);
    assert_int_equal(calls, 0);
    assert_int_equal(upstream_pool_idle(p), 2);
    /* a new filter frees the old arg; removing it (NULL) closes nothing */
    assert_int_equal(upstream_pool_prune(p, keep_port_80, &calls2, count_free), 0);
    assert_int_equal(freed_args, 1);
    assert_int_equal(calls2, 1);
    assert_int_equal(upstream_pool_prune(p, NULL, NULL, NULL), 0);
    assert_int_equal(freed_args, 2);
    assert_int_equal(upstream_pool_idle(p), 2);
    assert_int_equal(upstream_pool_prune(NULL, keep_port_80, &calls2, count_free), 0);
    assert_int_equal(freed_args, 3); /* no pool: arg freed at once */
    assert_int_equal(upstream_pool_prune(p, keep_port_80, &calls2, count_free), 0);
    upstream_pool_free(p); /* frees the installed arg too */
    assert_int_equal(freed_args, 4);
    assert_false(is_open(fds[0]) || is_open(fds[1]));
    for (i = 0; i < 6; i++)
        close(peers[i]);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_lifo_and_limit),
        cmocka_unit_test(test_no_pooling_when_max_idle_is_zero),
        cmocka_unit_test(test_attach_moves_callbacks),
        cmocka_unit_test(test_readable_or_expired_is_dropped),
        cmocka_unit_test(test_idle_timeout_counts_from_each_parking),
        cmocka_unit_test(test_tags_keep_transports_apart),
        cmocka_unit_test(test_prune_closes_what_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
