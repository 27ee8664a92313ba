/*
 * readfile: reads a small file whole (readfile.h). Does not: stream, or follow a file that
 * grows while it is read (what was there up to max + 1 bytes decides).
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

char *readfile_len(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!(buf = malloc(max + 1))) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, max, f);
    if (ferror(f) || (n == max && fgetc(f) != EOF)) {
        if (ferror(f))
            snprintf(err, errlen, "%s: read error", path);
        else
            snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}
