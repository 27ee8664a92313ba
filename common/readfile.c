/*
 * readfile: reads a small file (or stream) whole (readfile.h), growing its buffer as it reads.
 * Does not: follow a file that grows while it is read (what was there up to max + 1 bytes
 * decides).
 */
#include "readfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *readfile_all(const char *path, size_t max, char *err, size_t errlen)
{
    size_t len;

    return readfile_len(path, max, &len, err, errlen);
}

char *readfile_stream(FILE *f, const char *name, size_t max, size_t *len, char *err, size_t errlen)
{
    char *buf = NULL, *nb;
    size_t n = 0, cap = 0, r;

    do {
        if (cap - n < 4096) { /* grows: a kubeconfig of 1 KiB does not cost max */
            cap = cap ? cap * 2 : 16384;
            if (cap > max + 4096) cap = max + 4096; /* n <= max here: room for 4 KiB */
            if (!(nb = realloc(buf, cap + 1))) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            buf = nb;
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n > max) {
            snprintf(err, errlen, "%s: larger than %zu bytes", name, max);
            goto fail;
        }
    } while (r > 0);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", name);
        goto fail;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    return NULL;
}

char *readfile_len(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = readfile_stream(f, path, max, len, err, errlen);
    fclose(f);
    return buf;
}

int readfile_stat_same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}
