/*
 * publisher: the snapshot socket server, driven on a real libev loop with real Unix socket
 * clients. Checks: a newcomer gets the current frame at once, every client gets each new frame,
 * ACK/NACK lines are counted, a slow client gets the frame in flight then only the newest one,
 * a client sending an endless line is dropped, a malformed line is skipped, and close unlinks
 * the socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "publisher.h"

struct fixture {
    struct ev_loop *loop;
    struct publisher *pub;
    char dir[64];
    char path[96];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop without blocking until cond(arg) holds or 5 s pass; returns cond's value. */
static int pump_until(struct fixture *f, int (*cond)(struct fixture *, void *), void *arg)
{
    double end = now_s() + 5;
    while (now_s() < end) {
        ev_run(f->loop, EVRUN_NOWAIT);
        if (cond(f, arg)) return 1;
        poll(NULL, 0, 1);
    }
    return cond(f, arg);
}

static int clients_are(struct fixture *f, void *arg)
{
    return publisher_clients(f->pub) == *(unsigned *)arg;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    log_init("test", LOG_LEVEL_ERROR);
    health_reset();
    snprintf(f->dir, sizeof(f->dir), "/tmp/strait-pub-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/s.sock", f->dir);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->pub = publisher_open(f->loop, f->path, err, sizeof(err));
    assert_non_null(f->pub);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct stat st;

    publisher_close(f->pub);
    assert_int_equal(stat(f->path, &st), -1); /* socket file removed */
    ev_loop_destroy(f->loop);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int client_connect(struct fixture *f, int rcvbuf)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

struct reader {
    int fd;
    unsigned char *buf;
    size_t want, got;
};

static int read_some(struct fixture *f, void *arg)
{
    struct reader *r = arg;
    (void)f;
    while (r->got < r->want) {
        ssize_t n = read(r->fd, r->buf + r->got, r->want - r->got);
        if (n <= 0) break;
        r->got += (size_t)n;
    }
    return r->got == r->want;
}

/* Reads exactly len bytes from fd while the loop runs; fails the test on timeout. */
static void read_exact(struct fixture *f, int fd, void *buf, size_t len)
{
    struct reader r = {fd, buf, len, 0};
    assert_true(pump_until(f, read_some, &r));
}

/* A fake frame: 8-byte generation then a fill byte derived from it. */
static unsigned char *fake_frame(uint64_t gen, size_t len)
{
    unsigned char *b = malloc(len);
    memcpy(b, &gen, sizeof(gen));
    memset(b + sizeof(gen), (int)(gen & 0xff), len - sizeof(gen));
    return b;
}

static void expect_frame(struct fixture *f, int fd, uint64_t gen, size_t len)
{
    unsigned char *want = fake_frame(gen, len), *got = malloc(len);
    read_exact(f, fd, got, len);
    assert_memory_equal(got, want, len);
    free(want);
    free(got);
}

static int counter_in_metrics(const char *name, double *v)
{
    char *m = health_render_metrics(0), *p, key[128];
    int found = 0;

    snprintf(key, sizeof(key), "\n%s ", name);
    if (m && (p = strstr(m, key))) {
        *v = strtod(p + strlen(key), NULL);
        found = 1;
    }
    free(m);
    return found;
}

static int acks_are(struct fixture *f, void *arg)
{
    double v = -1;
    (void)f;
    return counter_in_metrics("strait_controller_acks_total", &v) && v == *(double *)arg;
}

static int nacks_are(struct fixture *f, void *arg)
{
    double v = -1;
    (void)f;
    return counter_in_metrics("strait_controller_nacks_total", &v) && v == *(double *)arg;
}

static void test_newcomer_and_broadcast(void **state)
{
    struct fixture *f = *state;
    unsigned char *fr1 = fake_frame(1, 100), *fr2 = fake_frame(2, 300);
    unsigned one = 1, two = 2;
    double acks = 2, nacks = 1;
    size_t len;
    int a, b;

    assert_null(publisher_current(f->pub, NULL));
    assert_int_equal(publisher_publish(f->pub, fr1, 100, 1), 0);
    assert_memory_equal(publisher_current(f->pub, &len), fr1, 100);
    assert_int_equal(len, 100);
    a = client_connect(f, 0);
    assert_true(pump_until(f, clients_are, &one));
    expect_frame(f, a, 1, 100); /* a newcomer gets the current frame at once */
    b = client_connect(f, 0);
    assert_true(pump_until(f, clients_are, &two));
    expect_frame(f, b, 1, 100);

    assert_int_equal(publisher_publish(f->pub, fr2, 300, 2), 0);
    expect_frame(f, a, 2, 300); /* and every client gets each new frame */
    expect_frame(f, b, 2, 300);

    assert_int_equal(write(a, "ACK 2\n", 6), 6);
    assert_int_equal(write(b, "ACK 2\nNACK 2 bad route\n", 23), 23);
    assert_true(pump_until(f, acks_are, &acks));
    assert_true(pump_until(f, nacks_are, &nacks));
    assert_int_equal(publisher_clients(f->pub), 2);

    close(a);
    assert_true(pump_until(f, clients_are, &one));
    close(b);
    free(fr1);
    free(fr2);
}

/* A client that does not read gets the frame being written, then only the newest one. */
static void test_slow_client_gets_newest(void **state)
{
    struct fixture *f = *state;
    const size_t big = 4u << 20;
    unsigned one = 1;
    int fd = client_connect(f, 4096);

    assert_true(pump_until(f, clients_are, &one));
    for (uint64_t g = 1; g <= 5; g++) {
        unsigned char *fr = fake_frame(g, big);
        assert_int_equal(publisher_publish(f->pub, fr, big, g), 0);
        free(fr);
        for (int i = 0; i < 20; i++)
            ev_run(f->loop, EVRUN_NOWAIT); /* let it write what the socket takes */
    }
    expect_frame(f, fd, 1, big); /* never cut short: the stream would desync */
    expect_frame(f, fd, 5, big); /* 2..4 were superseded */
    {
        unsigned char extra;
        int n;
        for (int i = 0; i < 50; i++)
            ev_run(f->loop, EVRUN_NOWAIT);
        n = (int)read(fd, &extra, 1);
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
    close(fd);
}

static void test_bad_replies(void **state)
{
    struct fixture *f = *state;
    unsigned one = 1, zero = 0;
    double acks = 1, nacks = 0;
    char junk[2048];
    int fd = client_connect(f, 0);

    assert_true(pump_until(f, clients_are, &one));
    memset(junk, 'x', sizeof(junk)); /* a "line" longer than any reply, no newline */
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_true(pump_until(f, clients_are, &zero));
    close(fd);

    /* A malformed but bounded line is logged and skipped; the next reply still counts. */
    fd = client_connect(f, 0);
    assert_true(pump_until(f, clients_are, &one));
    assert_int_equal(write(fd, "HELLO 1\nACK 3\n", 14), 14);
    assert_true(pump_until(f, acks_are, &acks));
    assert_true(pump_until(f, nacks_are, &nacks));
    assert_int_equal(publisher_clients(f->pub), 1);
    close(fd);
    assert_true(pump_until(f, clients_are, &zero));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_newcomer_and_broadcast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_client_gets_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_replies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
