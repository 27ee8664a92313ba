/*
 * accesslog: one JSON line per finished request, to a file or standard output.
 *
 * Does: format an entry with yajl_gen (so quoting and control characters are escaped by
 * the JSON rules) and append it with a single write(2) on an O_APPEND descriptor.
 * Does not: buffer, rotate or reopen on SIGHUP, or block a worker on anything but that one
 * write.
 * Invariants:
 *   - one line = one write(2) call: with O_APPEND (files) or a line under PIPE_BUF
 *     (pipes, every field being capped at ACCESSLOG_MAX_FIELD) concurrent lines never
 *     interleave; a short write is completed by further writes (rare: signals, full disk);
 *   - the descriptor changes only in accesslog_open/close, before the workers start and
 *     after they stop; workers only read it.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_gen.h>

static atomic_int log_fd = -1;

int accesslog_open(const char *path, char *err, size_t errlen)
{
    int fd;

    if (!strcmp(path, "-"))
        fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "access log %s: %s", path, strerror(errno));
        return -1;
    }
    accesslog_close();
    atomic_store(&log_fd, fd);
    return 0;
}

void accesslog_close(void)
{
    int fd = atomic_exchange(&log_fd, -1);

    if (fd >= 0) close(fd);
}

int accesslog_enabled(void)
{
    return atomic_load_explicit(&log_fd, memory_order_relaxed) >= 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else
        return 0;
    if (n < len) return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Writes s (capped, invalid UTF-8 bytes as '?') as a JSON string, NULL as null. */
static void gen_str(yajl_gen g, const char *s)
{
    unsigned char buf[ACCESSLOG_MAX_FIELD];
    size_t n, i = 0, k;

    if (!s) {
        yajl_gen_null(g);
        return;
    }
    n = strnlen(s, sizeof(buf));
    while (i < n) {
        k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) {
            buf[i++] = '?';
            continue;
        }
        memcpy(buf + i, s + i, k);
        i += k;
    }
    yajl_gen_string(g, buf, n);
}

static void gen_key(yajl_gen g, const char *k)
{
    yajl_gen_string(g, (const unsigned char *)k, strlen(k));
}

static void gen_num(yajl_gen g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gen_num(yajl_gen g, const char *fmt, ...)
{
    char num[40];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(num, sizeof(num), fmt, ap);
    va_end(ap);
    yajl_gen_number(g, num, (size_t)n);
}

/* RFC 3339 UTC with milliseconds: "2025-01-31T12:00:00.123Z". */
static void format_time(double t, char *out, size_t n)
{
    time_t sec = (time_t)t;
    int ms = (int)((t - (double)sec) * 1000.0);
    struct tm tm;
    size_t l;

    if (ms < 0) ms = 0;
    if (ms > 999) ms = 999;
    gmtime_r(&sec, &tm);
    l = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + l, n - l, ".%03dZ", ms);
}

char *accesslog_format(const struct accesslog_entry *e, size_t *len)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    char when[48], *out = NULL;
    size_t blen;

    if (!g) return NULL;
    format_time(e->time, when, sizeof(when));
    yajl_gen_map_open(g);
    gen_key(g, "time");
    gen_str(g, when);
    gen_key(g, "client");
    gen_str(g, e->client);
    gen_key(g, "method");
    gen_str(g, e->method);
    gen_key(g, "target");
    gen_str(g, e->target);
    gen_key(g, "host");
    gen_str(g, e->host);
    gen_key(g, "protocol");
    gen_str(g, e->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
    gen_key(g, "status");
    gen_num(g, "%d", e->status);
    gen_key(g, "bytes_sent");
    gen_num(g, "%llu", (unsigned long long)e->bytes_sent);
    gen_key(g, "duration");
    gen_num(g, "%.6f", e->duration >= 0 ? e->duration : 0.0);
    gen_key(g, "upstream");
    gen_str(g, e->upstream);
    gen_key(g, "route");
    gen_str(g, e->route);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &buf, &blen) == yajl_gen_status_ok && (out = malloc(blen + 2))) {
        memcpy(out, buf, blen);
        out[blen] = '\n';
        out[blen + 1] = '\0';
        *len = blen + 1;
    }
    yajl_gen_free(g);
    return out;
}

void accesslog_write(const struct accesslog_entry *e)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    size_t len, off = 0;
    ssize_t n;
    char *line;

    if (fd < 0) return;
    line = accesslog_format(e, &len);
    if (!line) return;
    while (off < len) {
        n = write(fd, line + off, len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            break; /* a log must not stop the proxy: drop the line */
        }
        off += (size_t)n;
    }
    free(line);
}
