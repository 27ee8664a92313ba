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
#include <sys/stat.h>
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

/* A stream (stdin for `inject -f -`) larger than the first buffer: read whole, limit kept. */
static void test_stream(void **state)
{
    const size_t big = 100000; /* several growths of the buffer */
    char err[256], *s;
    size_t len, i;
    FILE *f;
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/strait-readfile-XXXXXX");
    assert_true((fd = mkstemp(path)) >= 0);
    close(fd);
    write_bytes(big);
    assert_non_null(f = fopen(path, "rb"));
    assert_non_null(s = readfile_stream(f, "stdin", big, &len, err, sizeof(err)));
    assert_int_equal(len, big);
    for (i = 0; i < big; i++)
        if (s[i] != 'a' + (int)(i % 26)) fail_msg("byte %zu differs", i);
    assert_int_equal(s[big], '\0');
    free(s);
    rewind(f);
    assert_null(readfile_stream(f, "stdin", big - 1, &len, err, sizeof(err)));
    assert_string_equal(err, "stdin: larger than 99999 bytes");
    fclose(f);
    /* readfile_len goes through the same reader */
    assert_non_null(s = readfile_len(path, big, &len, err, sizeof(err)));
    assert_int_equal(len, big);
    free(s);
    unlink(path);
}

/* readfile_stat_same: any of inode, size, mtime seconds or nanoseconds differing is a change */
static void test_stat_same(void **state)
{
    struct stat a, b;
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/strait-readfile-XXXXXX");
    assert_true((fd = mkstemp(path)) >= 0);
    close(fd);
    write_bytes(10);
    assert_int_equal(stat(path, &a), 0);
    b = a;
    assert_int_equal(readfile_stat_same(&a, &b), 1);
    b.st_ino++;
    assert_int_equal(readfile_stat_same(&a, &b), 0);
    b = a;
    b.st_size++;
    assert_int_equal(readfile_stat_same(&a, &b), 0);
    b = a;
    b.st_mtim.tv_sec++;
    assert_int_equal(readfile_stat_same(&a, &b), 0);
    b = a;
    b.st_mtim.tv_nsec = (b.st_mtim.tv_nsec + 1) % 1000000000;
    assert_int_equal(readfile_stat_same(&a, &b), 0);
    b = a;
    b.st_atim.tv_sec++; /* reading the file is not a change */
    assert_int_equal(readfile_stat_same(&a, &b), 1);
    /* rewritten with another size: changed */
    write_bytes(11);
    assert_int_equal(stat(path, &b), 0);
    assert_int_equal(readfile_stat_same(&a, &b), 0);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_limits), cmocka_unit_test(test_stream),
                                       cmocka_unit_test(test_stat_same)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
