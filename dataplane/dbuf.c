/*
 * dbuf: connection buffers with a per-thread block free list.
 *
 * Does: grow a buffer on demand (a first allocation of up to DBUF_BLOCK bytes takes a
 * standard block, larger ones and growth go to realloc), compact before growing, and put
 * standard blocks back on the calling thread's free list when a buffer is freed, up to
 * DBUF_POOL_MAX of them. A worker's requests therefore reuse the same few blocks instead of
 * making glibc allocate, coalesce and trim (madvise) 16 KiB chunks on every request.
 * Does not: share blocks across threads (a buffer is freed on the thread of its worker;
 * a block freed elsewhere just joins that thread's list, which is still correct).
 * Invariants: off + len <= cap; cap == 0 iff p == NULL; every block on a free list is a
 * malloc'd chunk of exactly DBUF_BLOCK usable bytes.
 */
#include "dbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DBUF_MAX_CAP (1u << 30) /* far above any bound the proxy sets; keeps uint32_t safe */

struct block {
    struct block *next;
};

static __thread struct block *free_blocks;
static __thread unsigned n_free;

static char *block_get(void)
{
    struct block *b = free_blocks;

    if (!b) return malloc(DBUF_BLOCK);
    free_blocks = b->next;
    n_free--;
    return (char *)b;
}

static void block_put(char *p)
{
    struct block *b = (struct block *)p;

    if (n_free >= DBUF_POOL_MAX) {
        free(p);
        return;
    }
    b->next = free_blocks;
    free_blocks = b;
    n_free++;
}

int dbuf_grow(struct dbuf *b, size_t n)
{
    size_t want;
    char *np;

    if (dbuf_room(b) >= n) return 0;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
        if (dbuf_room(b) >= n) return 0;
    }
    if (n > DBUF_MAX_CAP - b->len) return -1;
    if (!b->p && n <= DBUF_BLOCK) {
        if (!(b->p = block_get())) return -1;
        b->cap = DBUF_BLOCK;
        return 0;
    }
    want = b->cap ? b->cap : DBUF_BLOCK;
    while (want - b->len < n)
        want *= 2;
    if (want > DBUF_MAX_CAP) return -1;
    np = realloc(b->p, want);
    if (!np) return -1;
    b->p = np;
    b->cap = (uint32_t)want;
    return 0;
}

int dbuf_printf(struct dbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || dbuf_reserve(b, (size_t)n + 1) < 0) return -1;
    va_start(ap, fmt);
    vsnprintf(dbuf_tail(b), (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (uint32_t)n;
    return 0;
}

void dbuf_consume(struct dbuf *b, size_t n)
{
    b->off += (uint32_t)n;
    b->len -= (uint32_t)n;
    if (b->len == 0) b->off = 0;
}

void dbuf_free(struct dbuf *b)
{
    if (b->p) {
        if (b->cap == DBUF_BLOCK)
            block_put(b->p);
        else
            free(b->p);
    }
    memset(b, 0, sizeof(*b));
}

unsigned dbuf_pool_count(void)
{
    return n_free;
}

void dbuf_pool_release(void)
{
    while (free_blocks) {
        struct block *b = free_blocks;
        free_blocks = b->next;
        free(b);
    }
    n_free = 0;
}
