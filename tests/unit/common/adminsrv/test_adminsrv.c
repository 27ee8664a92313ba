/*
 * adminsrv unit tests on a real socket: a server on 127.0.0.1 (port 0) and a client in the
 * same libev loop. Each case writes raw request bytes, runs the loop until the server closes
 * the connection, and checks the status line, headers and body. A 5 s watchdog fails a case
 * instead of hanging it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "adminsrv.h"
#include "log.h"
#include "netaddr.h"

struct fixture {
    struct ev_loop *loop;
    struct adminsrv *srv;
    uint16_t port;
    unsigned calls;
    char last_method[16], last_path[256];
};

struct client {
    ev_io io;
    ev_timer watchdog;
    int fd;
    int done, timed_out;
    char buf[65536];
    size_t len;
};

static int handler(void *arg, const char *method, const char *path, struct adminsrv_reply *r)
{
    struct fixture *f = arg;

    f->calls++;
    snprintf(f->last_method, sizeof(f->last_method), "%s", method);
    snprintf(f->last_path, sizeof(f->last_path), "%s", path);
    if (!strcmp(path, "/hello")) return adminsrv_reply_text(r, 200, "hello\n");
    if (!strcmp(path, "/json"))
        return adminsrv_reply_take(r, 200, "application/json", strdup("{}"));
    if (!strcmp(path, "/down")) return adminsrv_reply_text(r, 503, "down\n");
    if (!strcmp(path, "/fail")) {
        /* a malloc'd body left behind on failure must be freed by adminsrv */
        adminsrv_reply_take(r, 200, "text/plain", strdup("partial"));
        return -1;
    }
    return 1;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct sockaddr_storage ss;
    socklen_t sl;
    char err[256], addr[NETADDR_STRLEN];

    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    assert_int_equal(netaddr_parse("127.0.0.1:0", &ss, &sl, err, sizeof(err)), 0);
    f->srv = adminsrv_start(f->loop, (struct sockaddr *)&ss, sl, handler, f, err, sizeof(err));
    assert_non_null(f->srv);
    adminsrv_address(f->srv, addr, sizeof(addr));
    f->port = (uint16_t)atoi(strrchr(addr, ':') + 1);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    adminsrv_stop(f->srv);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void client_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct client *c = (struct client *)io; /* io is the first member */
    ssize_t n;

    (void)revents;
    n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        return;
    }
    c->done = 1;
    ev_break(loop, EVBREAK_ONE);
}

static void client_watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct client *c = (struct client *)((char *)t - offsetof(struct client, watchdog));

    (void)revents;
    c->timed_out = 1;
    ev_break(loop, EVBREAK_ONE);
}

/* Connects, writes parts (NULL-terminated list, each sent after a loop turn), reads to EOF. */
static struct client *exchange(struct fixture *f, const char *const *parts, size_t first_len)
{
    struct client *c = calloc(1, sizeof(*c));
    struct sockaddr_in sin;
    size_t i, len, off;
    ssize_t n;

    assert_non_null(c);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(f->port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    for (i = 0; parts[i]; i++) {
        len = i == 0 && first_len ? first_len : strlen(parts[i]);
        for (off = 0; off < len; off += (size_t)n) {
            n = write(c->fd, parts[i] + off, len - off);
            assert_true(n > 0);
        }
        ev_run(f->loop, EVRUN_NOWAIT); /* let the server see this part alone */
    }
    ev_io_init(&c->io, client_read_cb, c->fd, EV_READ);
    ev_io_start(f->loop, &c->io);
    ev_timer_init(&c->watchdog, client_watchdog_cb, 5.0, 0.);
    ev_timer_start(f->loop, &c->watchdog);
    while (!c->done && !c->timed_out)
        ev_run(f->loop, 0);
    ev_io_stop(f->loop, &c->io);
    ev_timer_stop(f->loop, &c->watchdog);
    close(c->fd);
    assert_false(c->timed_out);
    return c;
}

static struct client *request(struct fixture *f, const char *req)
{
    const char *parts[] = {req, NULL};

    return exchange(f, parts, 0);
}

static const char *body_of(const struct client *c)
{
    const char *b = strstr(c->buf, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void test_get(void **state)
{
    struct fixture *f = *state;
    struct client *c = request(f, "GET /hello?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n");

    assert_true(!strncmp(c->buf, "HTTP/1.1 200 OK\r\n", 17));
    assert_non_null(strstr(c->buf, "\r\nContent-Length: 6\r\n"));
    assert_non_null(strstr(c->buf, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(c->buf, "\r\nDate: "));
    assert_non_null(strstr(c->buf, " GMT\r\n"));
    assert_non_null(strstr(c->buf, "\r\nContent-Type: text/plain"));
    assert_string_equal(body_of(c), "hello\n");
    assert_string_equal(f->last_method, "GET");
    assert_string_equal(f->last_path, "/hello"); /* query string stripped */
    free(c);
}

static void test_head(void **state)
{
    struct fixture *f = *state;
    struct client *c = request(f, "HEAD /hello HTTP/1.1\r\n\r\n");

    assert_true(!strncmp(c->buf, "HTTP/1.1 200 OK\r\n", 17));
    assert_non_null(strstr(c->buf, "\r\nContent-Length: 6\r\n"));
    assert_string_equal(body_of(c), "");
    assert_string_equal(f->last_method, "HEAD");
    free(c);
}

static void test_malloced_body_and_type(void **state)
{
    struct fixture *f = *state;
    struct client *c = request(f, "GET /json HTTP/1.0\r\n\r\n");

    assert_true(!strncmp(c->buf, "HTTP/1.1 200 OK\r\n", 17));
    assert_non_null(strstr(c->buf, "\r\nContent-Type: application/json\r\n"));
    assert_string_equal(body_of(c), "{}");
    free(c);
}

static void test_handler_status_and_errors(void **state)
{
    struct fixture *f = *state;
    struct client *c = request(f, "GET /down HTTP/1.1\r\n\r\n");

    assert_true(!strncmp(c->buf, "HTTP/1.1 503 Service Unavailable\r\n", 34));
    free(c);
    c = request(f, "GET /fail HTTP/1.1\r\n\r\n");
    assert_true(!strncmp(c->buf, "HTTP/1.1 500 ", 13));
    free(c);
}

static void test_not_found(void **state)
{
    struct fixture *f = *state;
    struct client *c = request(f, "GET /nope HTTP/1.1\r\n\r\n");

    assert_true(!strncmp(c->buf, "HTTP/1.1 404 Not Found\r\n", 24));
    assert_string_equal(body_of(c), "not found\n");
    free(c);
}

static void test_method_not_allowed(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    /* the body is never read; the reply must still arrive intact (no reset) */
    c = request(f, "POST /hello HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(!strncmp(c->buf, "HTTP/1.1 405 Method Not Allowed\r\n", 33));
    assert_non_null(strstr(c->buf, "\r\nAllow: GET, HEAD\r\n"));
    assert_int_equal(f->calls, 0);
    free(c);
    c = request(f, "DELETE / HTTP/1.1\r\n\r\n");
    assert_true(!strncmp(c->buf, "HTTP/1.1 405 ", 13));
    free(c);
}

static void test_bad_request_lines(void **state)
{
    static const char *bad[] = {
        "GET\r\n\r\n",
        "GET /x\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/2.0\r\n\r\n",
        "GET  /x HTTP/1.1\r\n\r\n",
        "G(T /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1 \r\n\r\n",
        "\r\n\r\n",
    };
    struct fixture *f = *state;
    struct client *c;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = request(f, bad[i]);
        if (strncmp(c->buf, "HTTP/1.1 400 Bad Request\r\n", 26))
            fail_msg("case %zu (%s): got %.40s", i, bad[i], c->buf);
        free(c);
    }
    assert_int_equal(f->calls, 0);
}

static void test_split_head(void **state)
{
    struct fixture *f = *state;
    const char *parts[] = {"GET /hel", "lo HTTP/1.1\r\nHost: x\r\n\r", "\n", NULL};
    struct client *c = exchange(f, parts, 0);

    assert_true(!strncmp(c->buf, "HTTP/1.1 200 OK\r\n", 17));
    assert_string_equal(body_of(c), "hello\n");
    free(c);
}

static void test_oversized(void **state)
{
    struct fixture *f = *state;
    size_t n = ADMINSRV_MAX_REQUEST + 4096;
    char *big = malloc(n + 1);
    const char *parts[] = {big, NULL};
    struct client *c;

    assert_non_null(big);
    memcpy(big, "GET /hello HTTP/1.1\r\nX-Fill: ", 29);
    memset(big + 29, 'a', n - 29);
    big[n] = '\0';
    c = exchange(f, parts, n);
    assert_true(!strncmp(c->buf, "HTTP/1.1 431 ", 13));
    assert_int_equal(f->calls, 0);
    free(c);
    free(big);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    const char *parts[] = {"GET /hello HTTP/1.1\r\n", NULL}; /* never finished */
    struct client *c;

    adminsrv_set_timeout(f->srv, 0.2);
    c = exchange(f, parts, 0);
    assert_int_equal(c->len, 0); /* closed without a reply */
    assert_int_equal(f->calls, 0);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malloced_body_and_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_status_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_request_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
    };

    log_init("test", LOG_LEVEL_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
