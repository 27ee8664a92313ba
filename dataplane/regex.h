/*
 * regex: the regular expressions of route matches (Gateway RegularExpression path and header
 * matches), PCRE2 compiled - and JIT-compiled when the platform allows - once when a
 * snapshot is built, never per request.
 *
 * A pattern matches the whole subject (anchored at both ends, as Envoy's safe_regex and the
 * Gateway API conformance tests expect), in UTF-8 mode; a subject that is not valid UTF-8
 * does not match.
 * Matching is bounded: a pattern that backtracks past REGEX_MATCH_LIMIT steps counts as no
 * match, so a hostile pattern or subject cannot stall a worker.
 *
 * Threads: compile/free where snapshots are built; regex_match from any worker at once (the
 * compiled code is read-only; each thread has its own match data).
 */
#ifndef STRAIT_REGEX_H
#define STRAIT_REGEX_H

#include <stddef.h>

#define REGEX_MAX_PATTERN 1024    /* bytes: longer patterns are refused */
#define REGEX_MATCH_LIMIT 100000u /* PCRE2 match() calls per attempt */

struct regex;

/*
 * Compiles pattern (NUL-terminated). Returns the compiled expression, or NULL with err
 * filled ("missing ) at offset 3") when it does not compile or is too long.
 */
struct regex *regex_compile(const char *pattern, char *err, size_t errlen);

void regex_free(struct regex *re);

/*
 * 1 when re matches all of s[0..len), 0 when it does not, or when the match limit was hit
 * or the thread's match data could not be allocated (then it also counts in
 * regex_limit_hits()).
 */
int regex_match(const struct regex *re, const char *s, size_t len);

/* 1 when re runs as JIT-compiled machine code (0: the interpreter). */
int regex_is_jit(const struct regex *re);

/* Matches given up (limit, no memory) since start, all threads. */
unsigned long regex_limit_hits(void);

/* Frees the calling thread's match data (a worker thread, before it exits). */
void regex_thread_end(void);

#endif
