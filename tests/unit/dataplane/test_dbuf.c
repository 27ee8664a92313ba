/*
 * dbuf: append/consume/compact, growth past a block, and the per-thread block list: a freed
 * standard block is reused by the next buffer, grown buffers are not kept, the list is
 * capped and released.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dbuf.h"

static void test_append_consume_compact(void **state)
{
    struct dbuf b = {0};
    char *first;

    (void)state;
    assert_int_equal(dbuf_append(&b, "hello ", 6), 0);
    assert_int_equal(dbuf_str(&b, "world"), 0);
    assert_int_equal(b.cap, DBUF_BLOCK);
    assert_memory_equal(dbuf_data(&b), "hello world", 11);
    dbuf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_memory_equal(dbuf_data(&b), "world", 5);
    first = b.p;
    /* room at the end runs out: the data moves to the front before anything grows */
    assert_int_equal(dbuf_reserve(&b, DBUF_BLOCK - 5), 0);
    assert_ptr_equal(b.p, first);
    assert_int_equal(b.off, 0);
    assert_memory_equal(dbuf_data(&b), "world", 5);
    assert_int_equal(dbuf_printf(&b, "-%d", 42), 0);
    assert_memory_equal(dbuf_data(&b), "world-42", 8);
    dbuf_consume(&b, b.len);
    assert_int_equal(b.off, 0); /* empty: back to the start */
    dbuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
    dbuf_pool_release();
}

static void test_blocks_are_reused(void **state)
{
    struct dbuf a = {0}, b = {0};
    char *pa;

    (void)state;
    dbuf_pool_release();
    assert_int_equal(dbuf_reserve(&a, 100), 0);
    pa = a.p;
    dbuf_free(&a);
    assert_int_equal(dbuf_pool_count(), 1);
    assert_int_equal(dbuf_reserve(&b, DBUF_BLOCK), 0); /* a whole block still fits one */
    assert_ptr_equal(b.p, pa);
    assert_int_equal(dbuf_pool_count(), 0);
    /* growth past a block reallocates; such a buffer does not go on the list */
    assert_int_equal(dbuf_reserve(&b, DBUF_BLOCK + 1), 0);
    assert_true(b.cap >= 2 * DBUF_BLOCK);
    dbuf_free(&b);
    assert_int_equal(dbuf_pool_count(), 0);
    dbuf_pool_release();
}

static void test_list_is_capped(void **state)
{
    static struct dbuf bufs[DBUF_POOL_MAX + 8];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        assert_int_equal(dbuf_append(&bufs[i], "x", 1), 0);
    for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        dbuf_free(&bufs[i]);
    assert_int_equal(dbuf_pool_count(), DBUF_POOL_MAX);
    dbuf_pool_release();
    assert_int_equal(dbuf_pool_count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_compact),
        cmocka_unit_test(test_blocks_are_reused),
        cmocka_unit_test(test_list_is_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
