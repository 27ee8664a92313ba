/*
 * jsongen: the two yajl_gen helpers every JSON writer of ours needs (strings and string
 * pairs), in one place for the snapshot dump and the controller's API bodies.
 */
#ifndef STRAIT_JSONGEN_H
#define STRAIT_JSONGEN_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <yajl/yajl_gen.h>

/* Writes s as a JSON string (NULL as ""). */
static inline void jsongen_str(yajl_gen g, const char *s)
{
    s = s ? s : "";
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* Writes the object member "k": "v". */
static inline void jsongen_kv_str(yajl_gen g, const char *k, const char *v)
{
    jsongen_str(g, k);
    jsongen_str(g, v);
}

/* Writes the object member "k": v, all 64 bits (yajl_gen_integer is signed). */
static inline void jsongen_kv_uint(yajl_gen g, const char *k, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);

    jsongen_str(g, k);
    yajl_gen_number(g, num, (size_t)n);
}

/* Writes the object member "k": v with 6 decimals. */
static inline void jsongen_kv_double(yajl_gen g, const char *k, double v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%.6f", v);

    jsongen_str(g, k);
    yajl_gen_number(g, num, (size_t)n);
}

#endif
