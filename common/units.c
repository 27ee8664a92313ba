/*
 * units: size parsing shared by the controller (annotations) and the data plane (flags).
 *
 * Does: strict parsing of "<digits>[kKmMgG]" into bytes with overflow checks.
 * Does not: decide what 0 means (unlimited for both callers today, but that is their rule),
 * format sizes, or accept anything nginx would not (fractions, "kb", spaces).
 * Invariant: a value it accepts is exactly representable in uint64_t; it never wraps.
 */
#include "units.h"

#include <stddef.h>

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
