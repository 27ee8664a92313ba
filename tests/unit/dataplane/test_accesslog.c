/*
 * accesslog: one JSON object per line with every field, escaping of quotes, control
 * characters and invalid UTF-8, null for absent strings; many threads appending at once
 * to one file never interleave lines (every line parses, the count matches); closed means
 * silent; open failures fill err.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <yajl/yajl_tree.h>

#include "accesslog.h"

static char tmpdir[] = "/tmp/strait-accesslog-XXXXXX";
static char path[256];

static yajl_val parse_line(const char *line)
{
    char err[256];
    yajl_val v = yajl_tree_parse(line, err, sizeof(err));

    if (!v) fail_msg("not JSON (%s): %s", err, line);
    if (!YAJL_IS_OBJECT(v)) fail_msg("not an object: %s", line);
    return v;
}

static const char *str_at(yajl_val root, const char *key)
{
    const char *p[] = {key, NULL};
    yajl_val v = yajl_tree_get(root, p, yajl_t_any);

    assert_non_null(v);
    return YAJL_IS_NULL(v) ? NULL : YAJL_GET_STRING(v);
}

static double num_at(yajl_val root, const char *key)
{
    const char *p[] = {key, NULL};
    yajl_val v = yajl_tree_get(root, p, yajl_t_number);

    assert_non_null(v);
    return YAJL_GET_DOUBLE(v);
}

static void test_format_fields(void **state)
{
    struct accesslog_entry e = {
        .time = 1700000000.25,
        .client = "127.0.0.1",
        .method = "GET",
        .target = "/a?b=\"c\"&d=\\e\x01",
        .host = "x.test",
        .http_minor = 1,
        .status = 200,
        .bytes_sent = 1234,
        .duration = 0.0125,
        .upstream = "10.0.0.1:8080",
        .route = "default/site",
    };
    size_t len;
    char *line;
    yajl_val v;

    (void)state;
    line = accesslog_format(&e, &len);
    assert_non_null(line);
    assert_int_equal(strlen(line), len);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', len - 1));
    line[len - 1] = '\0';
    v = parse_line(line);
    assert_string_equal(str_at(v, "time"), "2023-11-14T22:13:20.250Z");
    assert_string_equal(str_at(v, "client"), "127.0.0.1");
    assert_string_equal(str_at(v, "method"), "GET");
    assert_string_equal(str_at(v, "target"), "/a?b=\"c\"&d=\\e\x01");
    assert_string_equal(str_at(v, "host"), "x.test");
    assert_string_equal(str_at(v, "protocol"), "HTTP/1.1");
    assert_int_equal(num_at(v, "status"), 200);
    assert_int_equal(num_at(v, "bytes_sent"), 1234);
    assert_true(num_at(v, "duration") == 0.0125);
    assert_string_equal(str_at(v, "upstream"), "10.0.0.1:8080");
    assert_string_equal(str_at(v, "route"), "default/site");
    yajl_tree_free(v);
    free(line);
}

static void test_format_nulls_and_bad_utf8(void **state)
{
    char longtarget[ACCESSLOG_MAX_FIELD + 100];
    struct accesslog_entry e = {
        .time = 0,
        .client = "::1",
        .method = "GET",
        .target = longtarget,
        .host = "caf\xc3\xa9\xff\xc3.test", /* é is kept, a stray byte and a cut one become ? */
        .http_minor = 0,
        .status = 404,
    };
    size_t len;
    char *line;
    yajl_val v;

    (void)state;
    memset(longtarget, 'a', sizeof(longtarget) - 1);
    longtarget[sizeof(longtarget) - 1] = '\0';
    line = accesslog_format(&e, &len);
    assert_non_null(line);
    line[len - 1] = '\0';
    v = parse_line(line);
    assert_null(str_at(v, "upstream"));
    assert_null(str_at(v, "route"));
    assert_string_equal(str_at(v, "protocol"), "HTTP/1.0");
    assert_string_equal(str_at(v, "host"), "caf\xc3\xa9??.test");
    assert_int_equal(strlen(str_at(v, "target")), ACCESSLOG_MAX_FIELD);
    assert_true(len < 4096);
    yajl_tree_free(v);
    free(line);
}

#define THREADS 8
#define LINES 2000

static void *writer(void *arg)
{
    char target[600], client[32];
    struct accesslog_entry e = {.method = "POST",
                                .host = "h.test",
                                .http_minor = 1,
                                .status = 201,
                                .route = "ns/r",
                                .client = client,
                                .target = target,
                                .time = 1.5};
    int i, id = (int)(intptr_t)arg;

    snprintf(client, sizeof(client), "10.0.0.%d", id);
    for (i = 0; i < LINES; i++) {
        /* long-ish lines make a torn or interleaved write likely if it could happen */
        snprintf(target, sizeof(target), "/t%d/%d/%0500d", id, i, i);
        e.bytes_sent = (uint64_t)i;
        e.duration = i / 1000.0;
        accesslog_write(&e);
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    pthread_t th[THREADS];
    int per_thread[THREADS] = {0};
    char err[256], *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int i, total = 0;
    FILE *f;

    (void)state;
    assert_int_equal(accesslog_open(path, err, sizeof(err)), 0);
    assert_true(accesslog_enabled());
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    accesslog_close();
    assert_false(accesslog_enabled());

    f = fopen(path, "r");
    assert_non_null(f);
    while ((n = getline(&line, &cap, f)) > 0) {
        yajl_val v;
        const char *client;
        assert_int_equal(line[n - 1], '\n');
        line[n - 1] = '\0';
        v = parse_line(line);
        client = str_at(v, "client");
        assert_non_null(client);
        i = atoi(client + strlen("10.0.0."));
        assert_true(i >= 0 && i < THREADS);
        per_thread[i]++;
        total++;
        yajl_tree_free(v);
    }
    free(line);
    fclose(f);
    assert_int_equal(total, THREADS * LINES);
    for (i = 0; i < THREADS; i++)
        assert_int_equal(per_thread[i], LINES);
}

static void test_closed_is_silent_and_reopen_appends(void **state)
{
    struct accesslog_entry e = {.method = "GET", .target = "/", .status = 200};
    char err[256], buf[4096];
    ssize_t n;
    FILE *f;

    (void)state;
    unlink(path);
    accesslog_write(&e); /* closed: nothing happens */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(accesslog_open(path, err, sizeof(err)), 0);
    accesslog_write(&e);
    accesslog_close();
    assert_int_equal(accesslog_open(path, err, sizeof(err)), 0);
    accesslog_write(&e);
    accesslog_close();
    f = fopen(path, "r");
    assert_non_null(f);
    n = (ssize_t)fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n > 0 ? n : 0] = '\0';
    assert_non_null(strchr(buf, '\n'));
    assert_non_null(strchr(strchr(buf, '\n') + 1, '\n'));
    assert_null(strchr(strchr(strchr(buf, '\n') + 1, '\n') + 1, '\n'));
}

static void test_open_failure(void **state)
{
    char err[256] = "";

    (void)state;
    assert_int_equal(accesslog_open("/nonexistent-dir/x/access.log", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent-dir/x/access.log"));
    assert_false(accesslog_enabled());
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(path, sizeof(path), "%s/access.log", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_fields),
        cmocka_unit_test(test_format_nulls_and_bad_utf8),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_closed_is_silent_and_reopen_appends),
        cmocka_unit_test(test_open_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
