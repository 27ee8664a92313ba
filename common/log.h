/*
 * log: one line per event on stderr, logfmt style:
 *   time=2026-11-23T14:20:00.123Z level=info comp=controller event=snapshot_published gen=3
 * The caller supplies the event name and the key=value tail. Thread safe: each line is built
 * in a local buffer and written with one write(2).
 */
#ifndef STRAIT_LOG_H
#define STRAIT_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* component appears as comp=...; messages below min_level are dropped. */
void log_init(const char *component, enum log_level min_level);

/* Parses "debug", "info", "warn" or "error" into *out; returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);

void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Quotes s for use as a logfmt value: wraps it in double quotes and escapes '"', '\\' and
 * control characters. Returns buf (always NUL-terminated, truncated to n).
 */
const char *log_quote(char *buf, size_t n, const char *s);

#define log_debug(ev, ...) log_event(LOG_LEVEL_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) log_event(LOG_LEVEL_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_LEVEL_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_event(LOG_LEVEL_ERROR, ev, __VA_ARGS__)

#endif
