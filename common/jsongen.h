/*
 * jsongen: the two yajl_gen helpers every JSON writer of ours needs (strings and string
 * pairs), in one place for the snapshot dump and the controller's API bodies.
 */
#ifndef STRAIT_JSONGEN_H
#define STRAIT_JSONGEN_H

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

#endif
