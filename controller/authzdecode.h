/*
 * authzdecode: the spec of a strait.dev/v1alpha1 AuthorizationPolicy document into struct
 * model_authz_policy, with the CRD's defaults applied and its rules checked (authzdecode.c).
 */
#ifndef STRAIT_AUTHZDECODE_H
#define STRAIT_AUTHZDECODE_H

#include <stddef.h>

#include "kobj.h"
#include "model.h"

#define AUTHZDECODE_MAX_SOURCES 64 /* spec.from items */
#define AUTHZDECODE_MAX_ITEMS 64   /* values of one from[] field */

/*
 * Decodes doc's metadata.generation and spec into pol, whose meta (namespace included) is
 * already filled. Returns 0, or -1 with err holding the reason, prefixed with the field path
 * ("spec.from[1].namespaces[0]: ..."). What pol holds on failure is garbage in its pool.
 */
int authzdecode_policy(const struct kobj *doc, struct model_authz_policy *pol, char *err,
                       size_t errlen);

/*
 * Whether s is a SPIFFE ID: "spiffe://", a trust domain (a-z 0-9 . - _), then a path of
 * non-empty segments (not "." or "..") of letters, digits, '.', '-', '_'; at most 2048 bytes.
 */
int authzdecode_spiffe_id(const char *s);

#endif
