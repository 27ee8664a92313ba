/*
 * readfile: a whole small file into memory (PEM bundles, token maps, key files), for both
 * binaries.
 */
#ifndef STRAIT_READFILE_H
#define STRAIT_READFILE_H

#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>

/*
 * The whole file at path, malloc'd and NUL-terminated, when it holds at most max bytes;
 * NULL with err filled ("path: reason", "larger than N bytes") otherwise.
 */
char *readfile_all(const char *path, size_t max, char *err, size_t errlen);

/* The same, with the file's length in *len (for binary files: snapshot frames). */
char *readfile_len(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* The same from an open stream f (stdin), named name in errors; f is left open. */
char *readfile_stream(FILE *f, const char *name, size_t max, size_t *len, char *err, size_t errlen);

/*
 * Whether a and b (stat results of one path at two times) show the same file content: same
 * inode, size and mtime (to the nanosecond). A rename over the path or a write in place both
 * change one of them. 1 same, 0 changed.
 */
int readfile_stat_same(const struct stat *a, const struct stat *b);

#endif
