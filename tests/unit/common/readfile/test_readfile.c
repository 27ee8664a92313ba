/*
 * readfile: whole files up to the limit (exactly max included), one byte more refused, a
 * missing file named in the error, an empty file as "".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "readfile.h"

static char path[64];

static void write_bytes(size_t n)
{
    FILE *f = fopen(path, "wb");
    size_t i;

    assert_non_null(f);
    for (i = 0; i < n; i++)
        fputc('a' + (int)(i % 26), f);
    fclose(f);
}

static void test_limits(void **state)
{
    char err[256], *s;
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/strait-readfile-XXXXXX");
    assert_true((fd = mkstemp(path)) >= 0);
    close(fd);
    write_bytes(0);
    assert_non_null(s = readfile_all(path, 16, err, sizeof(err)));
    assert_string_equal(s, "");
    free(s);
    write_bytes(16);
    assert_non_null(s = readfile_all(path, 16, err, sizeof(err)));
    assert_int_equal(strlen(s), 16);
    assert_memory_equal(s, "abcdefghijklmnop", 16);
    free(s);
    write_bytes(17);
    assert_null(readfile_all(path, 16, err, sizeof(err)));
    assert_non_null(strstr(err, "larger than 16 bytes"));
    unlink(path);
    assert_null(readfile_all(path, 16, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_limits)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
