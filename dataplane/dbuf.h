/*
 * dbuf: the growable byte buffers of the proxy's connections, backed by a per-thread free
 * list of standard-size blocks so that the request path does not call malloc and free.
 */
#ifndef STRAIT_DBUF_H
#define STRAIT_DBUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DBUF_BLOCK (16 * 1024) /* the size every buffer starts at, and the unit of reuse */
#define DBUF_POOL_MAX 256      /* blocks a thread keeps for reuse; more go back to malloc */

/* Bytes live at p[off .. off+len); cap is the allocation. Zeroed = empty, no memory. */
struct dbuf {
    char *p;
    uint32_t off, len, cap;
};

/* The slow path of dbuf_reserve (compact, take a block, or grow). */
int dbuf_grow(struct dbuf *b, size_t n);

/* Makes room for n more bytes after the data. Returns 0, or -1 when out of memory. */
static inline int dbuf_reserve(struct dbuf *b, size_t n)
{
    return (size_t)b->cap - b->off - b->len >= n ? 0 : dbuf_grow(b, n);
}

/* Appends n bytes (or a NUL-terminated string). Returns 0 or -1 (out of memory). */
static inline int dbuf_append(struct dbuf *b, const void *d, size_t n)
{
    if (n == 0) return 0; /* an empty buffer has no memory yet: memcpy(NULL, ..., 0) is UB */
    if (dbuf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->off + b->len, d, n);
    b->len += (uint32_t)n;
    return 0;
}
static inline int dbuf_str(struct dbuf *b, const char *s)
{
    return dbuf_append(b, s, __builtin_strlen(s));
}

/* printf onto the end of b: for the rare paths (local responses). Returns 0 or -1. */
int dbuf_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first data byte; where the next byte goes (after a dbuf_reserve); how much fits there. */
static inline char *dbuf_data(struct dbuf *b)
{
    return b->p + b->off;
}
static inline char *dbuf_tail(struct dbuf *b)
{
    return b->p + b->off + b->len;
}
static inline size_t dbuf_room(const struct dbuf *b)
{
    return (size_t)b->cap - b->off - b->len;
}

/* Drops n bytes from the front (n <= len). */
void dbuf_consume(struct dbuf *b, size_t n);

/* Gives the memory back (to this thread's free list when it is a standard block). */
void dbuf_free(struct dbuf *b);

/* Blocks held on this thread's free list (for tests and /stats). */
unsigned dbuf_pool_count(void);

/* Frees every block on this thread's free list: call before a worker thread ends. */
void dbuf_pool_release(void);

#endif
