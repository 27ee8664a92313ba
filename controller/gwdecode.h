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

#endif
