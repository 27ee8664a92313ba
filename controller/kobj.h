/*
 * kobj: a small generic document tree (maps, sequences, scalars) that both YAML (libyaml) and
 * JSON (yajl) parse into, so the Kubernetes decoders see one shape whatever the source.
 */
#ifndef STRAIT_KOBJ_H
#define STRAIT_KOBJ_H

#include <stddef.h>

enum kobj_type { KOBJ_MAP = 1, KOBJ_SEQ, KOBJ_SCALAR };

/* How a scalar was written: plain YAML / JSON number, bool or null, or a quoted string. */
enum kobj_style { KOBJ_PLAIN = 0, KOBJ_QUOTED };

struct kobj {
    enum kobj_type type;
    enum kobj_style style; /* scalars only */
    unsigned line;         /* 1-based source line, 0 when unknown (JSON) */
    char *str;             /* scalars: NUL-terminated text; NULL for map/seq */
    size_t n;              /* number of children (map: pairs) */
    size_t cap;
    char **keys;         /* map keys, n of them */
    struct kobj **items; /* map values or sequence items */
};

/* A parsed file: its documents in order (a YAML stream may hold several). */
struct kobj_docs {
    struct kobj **docs;
    size_t n;
};

/*
 * Parses a YAML stream buf[0..len) into docs (empty documents are dropped). Returns 0, or -1
 * with err filled ("line N: message"); on -1 docs still holds the documents completed before
 * the error. Free docs with kobj_docs_free in both cases.
 */
int kobj_parse_yaml(const char *buf, size_t len, struct kobj_docs *docs, char *err, size_t errlen);

/* Same for one JSON value (one document). */
int kobj_parse_json(const char *buf, size_t len, struct kobj_docs *docs, char *err, size_t errlen);

void kobj_docs_free(struct kobj_docs *docs);

/* A new empty node (scalars get their str set by the caller), NULL when out of memory. */
struct kobj *kobj_new(enum kobj_type type, unsigned line);

/*
 * Inserts child at index at (0..o->n) of map or sequence o, with key (malloc'd; maps only,
 * NULL for sequences). Takes ownership of key and child even on failure. 0, or -1 (out of
 * memory, at out of range).
 */
int kobj_insert(struct kobj *o, size_t at, char *key, struct kobj *child);
void kobj_free(struct kobj *o);

/* Looks up a path of map keys from o; NULL if any step is missing or not a map. */
struct kobj *kobj_get_(const struct kobj *o, ...);
#define kobj_get(o, ...) kobj_get_((o), __VA_ARGS__, (const char *)NULL)

/* Text of a scalar at a path, NULL if absent, not a scalar, or a plain null ("null", "~"). */
const char *kobj_str_(const struct kobj *o, ...);
#define kobj_str(o, ...) kobj_str_((o), __VA_ARGS__, (const char *)NULL)

/* Scalar text of o itself (same null rules as kobj_str), NULL for maps/sequences. */
const char *kobj_text(const struct kobj *o);

/*
 * Integer value of scalar o. Returns 0 and sets *v, -1 if o is not a decimal integer that
 * fits in a long.
 */
int kobj_int(const struct kobj *o, long *v);

/* Boolean value of scalar o: 1 true, 0 false, -1 neither (YAML 1.1 spellings accepted). */
int kobj_bool(const struct kobj *o);

#endif
