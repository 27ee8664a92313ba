/*
 * gwdecode: the spec of a strait.dev/v1alpha1 Gateway document into struct model_gateway,
 * with the CRD's defaults applied and its rules checked (see gwdecode.c).
 */
#ifndef STRAIT_GWDECODE_H
#define STRAIT_GWDECODE_H

#include <stddef.h>
#include <stdint.h>

#include "kobj.h"
#include "model.h"

/*
 * Decodes doc's metadata.generation and spec into gw, whose meta (namespace included) is
 * already filled. Returns 0, or -1 with err holding the reason, prefixed with the field path
 * ("spec.routes[0].rules[1].filters[0]: ..."). What gw holds on failure is garbage in its pool.
 */
int gwdecode_gateway(const struct kobj *doc, struct model_gateway *gw, char *err, size_t errlen);

/*
 * Parses a Gateway API Duration (^([0-9]{1,5}(h|m|s|ms)){1,4}$, e.g. "1h30m", "100ms") into
 * milliseconds. Returns 0, or -1 when s does not have that syntax.
 */
int gwdecode_duration(const char *s, int64_t *ms);

/*
 * The typed field helpers gwdecode uses, for the other strait.dev/v1alpha1 decoders. Each
 * returns 0, or -1 with c->err set to "<at>: <reason>" (c->oom set when memory ran out).
 * Strings are copies in c->m's pool; absent optional fields give "" / def / NULL.
 */
struct gwdecode_ctx {
    struct model_meta *m; /* the object being decoded: its pool */
    char *err;
    size_t errlen;
    int oom;
};

int gwdecode_fail(struct gwdecode_ctx *c, const char *at, const char *msg);
/* node must be absent or a mapping */
int gwdecode_map(struct gwdecode_ctx *c, const struct kobj *node, const char *at);
/* the list under key (NULL when absent) with min..max items; min >= 1 makes it required */
int gwdecode_list(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                  const char *at, size_t min, size_t max, const struct kobj **out);
/* a string scalar of minlen..maxlen bytes without control characters */
int gwdecode_str_node(struct gwdecode_ctx *c, const struct kobj *n, const char *at,
                      const char *what, int required, size_t minlen, size_t maxlen,
                      const char **out);
int gwdecode_str(struct gwdecode_ctx *c, const struct kobj *parent, const char *key, const char *at,
                 int required, size_t minlen, size_t maxlen, const char **out);
/* an unquoted integer in [min, max] */
int gwdecode_int(struct gwdecode_ctx *c, const struct kobj *parent, const char *key, const char *at,
                 int required, long min, long max, long def, long *out);
/* *out = index in names + 1, def when absent (def 0: required) */
int gwdecode_enum(struct gwdecode_ctx *c, const struct kobj *parent, const char *key,
                  const char *at, const char *const *names, size_t n_names, int def, int *out);
void *gwdecode_alloc(struct gwdecode_ctx *c, size_t n, size_t size);

#endif
