/*
 * units: size and duration parsing shared by the controller (annotations, flags) and the data
 * plane (flags).
 *
 * Does: strict parsing of "<digits>[kKmMgG]" into bytes and of "<digits><unit>..." into
 * milliseconds, with overflow checks.
 * Does not: decide what 0 means (unlimited for both callers today, but that is their rule),
 * format sizes, or accept anything nginx would not (fractions, "kb", spaces).
 * Invariant: a value it accepts is exactly representable in uint64_t; it never wraps.
 */
#include "units.h"

#include <stddef.h>
#include <string.h>

int units_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0, mul = 1;
    const char *p = s;

    if (!s || *s < '0' || *s > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mul = 1ull << 10;
        break;
    case 'm':
    case 'M':
        mul = 1ull << 20;
        break;
    case 'g':
    case 'G':
        mul = 1ull << 30;
        break;
    default:
        return -1;
    }
    if (*p && p[1]) return -1;
    if (v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

/* Milliseconds per unit at p (ms, s, m, h, d); *len gets the unit's length. 0 if none. */
static uint64_t units_duration_unit(const char *p, size_t *len)
{
    *len = 1;
    switch (*p) {
    case 'm':
        if (p[1] == 's') {
            *len = 2;
            return 1;
        }
        return 60000;
    case 's':
        return 1000;
    case 'h':
        return 3600000;
    case 'd':
        return 86400000;
    default:
        return 0;
    }
}

int units_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t total = 0, v, mul;
    const char *p = s;
    size_t ulen;

    if (!s || *s < '0' || *s > '9') return -1;
    if (strspn(s, "0123456789") == strlen(s)) { /* a bare number: seconds */
        if (units_parse_size(s, &v) < 0 || v > UINT64_MAX / 1000) return -1;
        *ms = v * 1000;
        return 0;
    }
    while (*p) {
        if (*p < '0' || *p > '9') return -1;
        for (v = 0; *p >= '0' && *p <= '9'; p++) {
            if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return -1;
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (!(mul = units_duration_unit(p, &ulen))) return -1;
        if (v > UINT64_MAX / mul || total > UINT64_MAX - v * mul) return -1;
        total += v * mul;
        p += ulen;
    }
    *ms = total;
    return 0;
}
