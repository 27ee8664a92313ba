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

#include "../../../controller/meshid.c"
#include "../../../controller/meshsrv.c"

static struct msrv_conn *conn_with(const char *raw)
{
    struct msrv_conn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
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
    free(c);
    /* a NUL byte in the head */
    c = conn_with("POST /a HTTP/1.1\r\nA: b\r\n\r\n");
    c->in[10] = '\0';
    assert_int_equal(msrv_parse_head(c, &why), 400);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_default_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
