/*
 * filters: Gateway API path modifiers (ReplaceFullPath, ReplacePrefixMatch with its slash
 * rules, query kept), redirect locations (scheme, hostname, port rules, default ports left
 * out), and header edits (set/add/remove, case-insensitive, framing headers untouchable).
 * Table driven: each row is what a user writes in a Gateway and what the client would see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dbuf.h"
#include "filters.h"

static char *str(struct dbuf *b)
{
    dbuf_append(b, "", 1);
    return dbuf_data(b);
}

struct path_row {
    uint8_t route_match;
    const char *route_path;
    uint8_t path_mod;
    const char *mod_path;
    const char *req_path; /* normalised, as matched */
    const char *orig;     /* as received, with query */
    const char *want;
};

static void test_path_modifiers(void **state)
{
    static const struct path_row rows[] = {
        /* ReplacePrefixMatch, Gateway API examples */
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_PREFIX, "/bar", "/foo/baz", "/foo/baz",
         "/bar/baz"},
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_PREFIX, "/bar", "/foo", "/foo", "/bar"},
        {SNAPWIRE_MATCH_PREFIX, "/foo/", SNAPWIRE_PATH_PREFIX, "/bar", "/foo/baz", "/foo/baz",
         "/bar/baz"},
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_PREFIX, "/bar/", "/foo/baz", "/foo/baz",
         "/bar/baz"},
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_PREFIX, "/", "/foo/baz", "/foo/baz", "/baz"},
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_PREFIX, "/", "/foo", "/foo", "/"},
        {SNAPWIRE_MATCH_PREFIX, "/", SNAPWIRE_PATH_PREFIX, "/bar", "/baz", "/baz", "/bar/baz"},
        /* the query goes along, the normalised path is the one rewritten */
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_PREFIX, "/v2", "/foo/x", "/foo/./x?a=1&b",
         "/v2/x?a=1&b"},
        /* ReplaceFullPath */
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_FULL, "/other", "/foo/baz", "/foo/baz?q=1",
         "/other?q=1"},
        {SNAPWIRE_MATCH_EXACT, "/foo", SNAPWIRE_PATH_FULL, "/x", "/foo", "/foo", "/x"},
        /* a prefix modifier on a non-prefix route acts as a full replacement */
        {SNAPWIRE_MATCH_EXACT, "/foo", SNAPWIRE_PATH_PREFIX, "/x", "/foo", "/foo?z", "/x?z"},
        /* keep */
        {SNAPWIRE_MATCH_PREFIX, "/foo", SNAPWIRE_PATH_KEEP, "", "/foo/a", "/foo/a?k", "/foo/a?k"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct path_row *w = &rows[i];
        struct snapwire_route rt = {.path = w->route_path, .match = w->route_match};
        struct snapwire_filter f = {
            .type = SNAPWIRE_FILTER_REWRITE, .path_mod = w->path_mod, .path = w->mod_path};
        struct dbuf b = {0};
        assert_int_equal(
            filter_path(&b, &rt, &f, w->req_path, strlen(w->req_path), w->orig, strlen(w->orig)),
            0);
        if (strcmp(str(&b), w->want)) fail_msg("row %zu: got %s want %s", i, str(&b), w->want);
        dbuf_free(&b);
    }
}

struct loc_row {
    const char *scheme, *hostname;
    uint16_t port;
    int tls;
    const char *host_hdr;
    const char *want;
};

static void test_redirect_location(void **state)
{
    static const struct loc_row rows[] = {
        /* scheme only: that scheme's default port, the Host port dropped */
        {"https", "", 0, 0, "foo.example:8080", "https://foo.example/a?x=1"},
        /* nothing set: same scheme, host and port as the request */
        {"", "", 0, 0, "foo.example:8080", "http://foo.example:8080/a?x=1"},
        {"", "", 0, 1, "foo.example", "https://foo.example/a?x=1"},
        /* hostname replaced, port given */
        {"", "bar.example", 9443, 1, "foo.example", "https://bar.example:9443/a?x=1"},
        /* a given port equal to the scheme's default is left out */
        {"http", "", 80, 1, "foo.example:8443", "http://foo.example/a?x=1"},
        {"https", "", 443, 0, "foo.example", "https://foo.example/a?x=1"},
        {"http", "", 8080, 0, "foo.example", "http://foo.example:8080/a?x=1"},
        /* the request's port equal to the default is left out too */
        {"", "", 0, 0, "foo.example:80", "http://foo.example/a?x=1"},
        /* IPv6 Host */
        {"", "", 0, 0, "[::1]:8080", "http://[::1]:8080/a?x=1"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct loc_row *w = &rows[i];
        struct snapwire_route rt = {.path = "/", .match = SNAPWIRE_MATCH_PREFIX};
        struct snapwire_filter f = {.type = SNAPWIRE_FILTER_REDIRECT,
                                    .scheme = w->scheme,
                                    .hostname = w->hostname,
                                    .port = w->port,
                                    .status = 302,
                                    .path = ""};
        const char *host = w->host_hdr[0] == '[' ? "[::1]" : "foo.example";
        struct dbuf b = {0};
        assert_int_equal(filter_location(&b, &rt, &f, w->tls, host, w->host_hdr,
                                         strlen(w->host_hdr), "/a", 2, "/a?x=1", 6),
                         0);
        if (strcmp(str(&b), w->want)) fail_msg("row %zu: got %s want %s", i, str(&b), w->want);
        dbuf_free(&b);
    }
}

static void test_redirect_path(void **state)
{
    struct snapwire_route rt = {.path = "/old", .match = SNAPWIRE_MATCH_PREFIX};
    struct snapwire_filter f = {.type = SNAPWIRE_FILTER_REDIRECT,
                                .scheme = "",
                                .hostname = "",
                                .status = 301,
                                .path_mod = SNAPWIRE_PATH_PREFIX,
                                .path = "/new"};
    struct dbuf b = {0};

    (void)state;
    assert_int_equal(
        filter_location(&b, &rt, &f, 0, "h.example", NULL, 0, "/old/page", 9, "/old/page?id=7", 14),
        0);
    assert_string_equal(str(&b), "http://h.example/new/page?id=7");
    dbuf_free(&b);
    /* an absolute-form request with an empty path keeps a "/" */
    f.path_mod = SNAPWIRE_PATH_KEEP;
    assert_int_equal(filter_location(&b, &rt, &f, 0, "h.example", NULL, 0, "/", 1, "?q", 2), 0);
    assert_string_equal(str(&b), "http://h.example/?q");
    dbuf_free(&b);
}

static void test_header_edits(void **state)
{
    struct snapwire_hdr_edit edits[] = {
        {SNAPWIRE_HDR_SET, "X-Env", "canary"},
        {SNAPWIRE_HDR_SET, "Content-Length", "0"}, /* framing: ignored */
        {SNAPWIRE_HDR_ADD, "X-Tag", "a"},
        {SNAPWIRE_HDR_ADD, "Transfer-Encoding", "chunked"}, /* framing: ignored */
        {SNAPWIRE_HDR_REMOVE, "X-Secret", ""},
        {SNAPWIRE_HDR_REMOVE, "Host", ""}, /* framing: ignored */
    };
    struct snapwire_snapshot s = {.hdr_edits = edits, .n_hdr_edits = 6};
    struct snapwire_filter f = {
        .type = SNAPWIRE_FILTER_REQUEST_HEADERS, .first_edit = 0, .edit_count = 6};
    struct dbuf b = {0};

    (void)state;
    assert_true(filter_header_dropped(&s, &f, "x-env", 5));    /* set replaces */
    assert_true(filter_header_dropped(&s, &f, "X-SECRET", 8)); /* removed, any case */
    assert_false(filter_header_dropped(&s, &f, "x-tag", 5));   /* add appends */
    assert_false(filter_header_dropped(&s, &f, "content-length", 14));
    assert_false(filter_header_dropped(&s, &f, "host", 4));
    assert_false(filter_header_dropped(&s, &f, "x-other", 7));
    assert_int_equal(filter_header_edits(&b, &s, &f), 0);
    assert_string_equal(str(&b), "X-Env: canary\r\nX-Tag: a\r\n");
    dbuf_free(&b);
    assert_true(filter_header_protected("Keep-Alive", 10));
    assert_false(filter_header_protected("X-Keep-Alive", 12));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_modifiers),
        cmocka_unit_test(test_redirect_location),
        cmocka_unit_test(test_redirect_path),
        cmocka_unit_test(test_header_edits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
