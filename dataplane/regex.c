/*
 * regex: PCRE2 regular expressions for route matches, compiled once per snapshot.
 *
 * Does: compile a pattern anchored at both ends (PCRE2_ANCHORED | PCRE2_ENDANCHORED) in UTF
 * mode, JIT-compile it when the platform allows (PCRE2 checks the subject's UTF-8 at each
 * match: request bytes are not trusted, and PCRE2_NO_UTF_CHECK on invalid UTF-8 is
 * undefined behaviour; an invalid subject simply does not match), and match with a per-thread match
 * data block (one ovector pair: only "does it match" is asked) and a match context that bounds the
 * work (match and depth limits), so a catastrophic pattern answers "no match" instead of stalling
 * the worker. Does not: capture groups, replace, or decide what a route's regex applies to.
 * Invariants: a struct regex is immutable after regex_compile; match data is thread-local and
 * only ever used by its thread; the match context is shared read-only.
 */
#include "regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct regex {
    pcre2_code *code;
    pcre2_match_context *mctx;
    int jit;
};

static __thread pcre2_match_data *thread_md;
static atomic_ulong limit_hits;

struct regex *regex_compile(const char *pattern, char *err, size_t errlen)
{
    struct regex *re;
    PCRE2_SIZE erroff;
    int errcode;
    size_t n = strlen(pattern);

    if (n > REGEX_MAX_PATTERN) {
        snprintf(err, errlen, "regular expression longer than %d bytes", REGEX_MAX_PATTERN);
        return NULL;
    }
    if (!(re = calloc(1, sizeof(*re)))) goto nomem;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, n, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF,
                             &errcode, &erroff, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", errcode);
        snprintf(err, errlen, "%s at offset %zu", (const char *)msg, (size_t)erroff);
        free(re);
        return NULL;
    }
    if (!(re->mctx = pcre2_match_context_create(NULL))) goto nomem;
    pcre2_set_match_limit(re->mctx, REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(re->mctx, 1000);
    /* JIT is optional: without it (no JIT support, or W^X denies it) the interpreter runs */
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return re;
nomem:
    snprintf(err, errlen, "out of memory");
    regex_free(re);
    return NULL;
}

void regex_free(struct regex *re)
{
    if (!re) return;
    pcre2_match_context_free(re->mctx);
    pcre2_code_free(re->code);
    free(re);
}

int regex_match(const struct regex *re, const char *s, size_t len)
{
    int rc;

    if (!thread_md && !(thread_md = pcre2_match_data_create(1, NULL))) {
        atomic_fetch_add_explicit(&limit_hits, 1, memory_order_relaxed);
        return 0;
    }
    /* pcre2_match runs the JIT code when there is some, with the same limits */
    rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, thread_md, re->mctx);
    if (rc >= 0) return 1;
    /* no match, or a subject that is not UTF-8 (PCRE2_ERROR_UTF8_*: -3 .. -23) */
    if (rc != PCRE2_ERROR_NOMATCH && !(rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21))
        atomic_fetch_add_explicit(&limit_hits, 1, memory_order_relaxed);
    return 0;
}

int regex_is_jit(const struct regex *re)
{
    return re->jit;
}

unsigned long regex_limit_hits(void)
{
    return atomic_load_explicit(&limit_hits, memory_order_relaxed);
}

void regex_thread_end(void)
{
    pcre2_match_data_free(thread_md);
    thread_md = NULL;
}
