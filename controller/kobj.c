/*
 * kobj: generic document tree built from YAML (libyaml event API) or JSON (yajl tree).
 *
 * Does: multi-document YAML streams, line numbers on YAML nodes, typed scalar helpers.
 * Does not: YAML aliases (rejected: Kubernetes manifests do not need them and copying them
 * invites billion-laughs blow-ups), merge keys, tags (ignored), or schema knowledge.
 * Invariants: map keys are unique within a YAML map (a duplicate is a parse error, as in
 * the Go YAML decoder kubectl uses); every node is owned by exactly one parent; nesting is
 * capped at KOBJ_MAX_DEPTH so recursive freeing cannot blow the stack.
 */
#include "kobj.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_tree.h>
#include <yaml.h>

#define KOBJ_MAX_DEPTH 100

struct kobj *kobj_new(enum kobj_type type, unsigned line)
{
    struct kobj *o = calloc(1, sizeof(*o));

    if (o) {
        o->type = type;
        o->line = line;
    }
    return o;
}

void kobj_free(struct kobj *o)
{
    size_t i;

    if (!o) return;
    for (i = 0; i < o->n; i++) {
        if (o->keys) free(o->keys[i]);
        kobj_free(o->items[i]);
    }
    free(o->keys);
    free(o->items);
    free(o->str);
    free(o);
}

void kobj_docs_free(struct kobj_docs *docs)
{
    size_t i;

    for (i = 0; i < docs->n; i++)
        kobj_free(docs->docs[i]);
    free(docs->docs);
    docs->docs = NULL;
    docs->n = 0;
}

int kobj_insert(struct kobj *o, size_t at, char *key, struct kobj *child)
{
    if (at > o->n) goto fail;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4;
        struct kobj **items = realloc(o->items, cap * sizeof(*items));
        if (!items) goto fail;
        o->items = items;
        if (o->type == KOBJ_MAP) {
            char **keys = realloc(o->keys, cap * sizeof(*keys));
            if (!keys) goto fail;
            o->keys = keys;
        }
        o->cap = cap;
    }
    memmove(o->items + at + 1, o->items + at, (o->n - at) * sizeof(*o->items));
    o->items[at] = child;
    if (o->type == KOBJ_MAP) {
        memmove(o->keys + at + 1, o->keys + at, (o->n - at) * sizeof(*o->keys));
        o->keys[at] = key;
    }
    o->n++;
    return 0;
fail:
    free(key);
    kobj_free(child);
    return -1;
}

/* Appends child (and key, for maps) to o; takes ownership of both even on failure. */
static int kobj_append(struct kobj *o, char *key, struct kobj *child)
{
    return kobj_insert(o, o->n, key, child);
}

static int kobj_docs_push(struct kobj_docs *docs, struct kobj *doc)
{
    struct kobj **d = realloc(docs->docs, (docs->n + 1) * sizeof(*d));

    if (!d) {
        kobj_free(doc);
        return -1;
    }
    docs->docs = d;
    docs->docs[docs->n++] = doc;
    return 0;
}

static int kobj_is_null_scalar(const struct kobj *o)
{
    const char *s;

    if (o->type != KOBJ_SCALAR || o->style != KOBJ_PLAIN) return 0;
    s = o->str;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* ---- YAML ---- */

/* Builder state: the open collections from the document root down, plus a pending map key. */
struct kobj_ybuild {
    struct kobj *stack[KOBJ_MAX_DEPTH];
    char *pending_key[KOBJ_MAX_DEPTH]; /* for map frames: key waiting for its value */
    int depth;
    struct kobj *root;
};

/* Attaches a finished node to the open collection (or makes it the root). */
static int kobj_yattach(struct kobj_ybuild *b, struct kobj *node, int is_key_candidate, char *err,
                        size_t errlen)
{
    struct kobj *top;
    char *key;
    size_t i;

    if (b->depth == 0) {
        b->root = node;
        return 0;
    }
    top = b->stack[b->depth - 1];
    if (top->type == KOBJ_SEQ) {
        if (kobj_append(top, NULL, node)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (!b->pending_key[b->depth - 1]) {
        if (!is_key_candidate) {
            snprintf(err, errlen, "line %u: complex mapping keys are not supported", node->line);
            kobj_free(node);
            return -1;
        }
        for (i = 0; i < top->n; i++) {
            if (!strcmp(top->keys[i], node->str)) {
                snprintf(err, errlen, "line %u: duplicate mapping key \"%.80s\"", node->line,
                         node->str);
                kobj_free(node);
                return -1;
            }
        }
        b->pending_key[b->depth - 1] = node->str;
        node->str = NULL;
        kobj_free(node);
        return 0;
    }
    key = b->pending_key[b->depth - 1];
    b->pending_key[b->depth - 1] = NULL;
    if (kobj_append(top, key, node)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void kobj_ybuild_reset(struct kobj_ybuild *b)
{
    int i;

    /* open collections are already attached under root; only pending keys are loose */
    for (i = b->depth - 1; i >= 0; i--)
        free(b->pending_key[i]);
    kobj_free(b->root);
    memset(b, 0, sizeof(*b));
}

int kobj_parse_yaml(const char *buf, size_t len, struct kobj_docs *docs, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct kobj_ybuild b;
    struct kobj *node;
    int done = 0, rc = -1;
    unsigned line;

    memset(&b, 0, sizeof(b));
    docs->docs = NULL;
    docs->n = 0;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "line %lu: %s%s%s", (unsigned long)(parser.problem_mark.line + 1),
                     parser.problem ? parser.problem : "YAML error", parser.context ? " " : "",
                     parser.context ? parser.context : "");
            goto out;
        }
        line = (unsigned)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            kobj_ybuild_reset(&b);
            break;
        case YAML_DOCUMENT_END_EVENT:
            if (b.root && !kobj_is_null_scalar(b.root)) {
                if (kobj_docs_push(docs, b.root)) {
                    b.root = NULL;
                    snprintf(err, errlen, "out of memory");
                    yaml_event_delete(&ev);
                    goto out;
                }
            } else {
                kobj_free(b.root);
            }
            b.root = NULL;
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "line %u: YAML aliases are not supported", line);
            yaml_event_delete(&ev);
            goto out;
        case YAML_SCALAR_EVENT:
            node = kobj_new(KOBJ_SCALAR, line);
            if (!node ||
                !(node->str = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length))) {
                kobj_free(node);
                snprintf(err, errlen, "out of memory");
                yaml_event_delete(&ev);
                goto out;
            }
            node->style =
                ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? KOBJ_PLAIN : KOBJ_QUOTED;
            if (kobj_yattach(&b, node, 1, err, errlen)) {
                yaml_event_delete(&ev);
                goto out;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (b.depth >= KOBJ_MAX_DEPTH) {
                snprintf(err, errlen, "line %u: nesting deeper than %d", line, KOBJ_MAX_DEPTH);
                yaml_event_delete(&ev);
                goto out;
            }
            node = kobj_new(ev.type == YAML_MAPPING_START_EVENT ? KOBJ_MAP : KOBJ_SEQ, line);
            if (!node) {
                snprintf(err, errlen, "out of memory");
                yaml_event_delete(&ev);
                goto out;
            }
            /* attach first so the tree owns it; a map used as a key is refused there */
            if (kobj_yattach(&b, node, 0, err, errlen)) {
                yaml_event_delete(&ev);
                goto out;
            }
            b.stack[b.depth] = node;
            b.pending_key[b.depth] = NULL;
            b.depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            b.depth--;
            free(b.pending_key[b.depth]);
            b.pending_key[b.depth] = NULL;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    rc = 0;
out:
    kobj_ybuild_reset(&b);
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- JSON ---- */

static struct kobj *kobj_from_yajl(yajl_val v, int depth)
{
    struct kobj *o = NULL, *child;
    const char *text = NULL;
    size_t i;

    if (depth > KOBJ_MAX_DEPTH) return NULL;
    if (YAJL_IS_OBJECT(v)) {
        if (!(o = kobj_new(KOBJ_MAP, 0))) return NULL;
        for (i = 0; i < v->u.object.len; i++) {
            char *key = strdup(v->u.object.keys[i]);
            child = kobj_from_yajl(v->u.object.values[i], depth + 1);
            if (!key || !child) {
                free(key);
                kobj_free(child);
                goto fail;
            }
            if (kobj_append(o, key, child)) goto fail;
        }
        return o;
    }
    if (YAJL_IS_ARRAY(v)) {
        if (!(o = kobj_new(KOBJ_SEQ, 0))) return NULL;
        for (i = 0; i < v->u.array.len; i++) {
            child = kobj_from_yajl(v->u.array.values[i], depth + 1);
            if (!child || kobj_append(o, NULL, child)) goto fail;
        }
        return o;
    }
    if (!(o = kobj_new(KOBJ_SCALAR, 0))) return NULL;
    if (YAJL_IS_STRING(v)) {
        text = v->u.string;
        o->style = KOBJ_QUOTED;
    } else if (YAJL_IS_NUMBER(v)) {
        text = v->u.number.r;
    } else if (YAJL_IS_TRUE(v)) {
        text = "true";
    } else if (YAJL_IS_FALSE(v)) {
        text = "false";
    } else {
        text = "null";
    }
    if (!(o->str = strdup(text ? text : ""))) goto fail;
    return o;
fail:
    kobj_free(o);
    return NULL;
}

int kobj_parse_json(const char *buf, size_t len, struct kobj_docs *docs, char *err, size_t errlen)
{
    char yerr[256];
    char *copy;
    yajl_val v;
    struct kobj *root;
    char *nl;

    docs->docs = NULL;
    docs->n = 0;
    /* yajl_tree wants a NUL-terminated string */
    if (!(copy = malloc(len + 1))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (len) memcpy(copy, buf, len);
    copy[len] = '\0';
    yerr[0] = '\0';
    v = yajl_tree_parse(copy, yerr, sizeof(yerr));
    free(copy);
    if (!v) {
        /* yajl's message is multi-line (it draws the context); keep the first line */
        if ((nl = strchr(yerr, '\n'))) *nl = '\0';
        snprintf(err, errlen, "%s", yerr[0] ? yerr : "JSON parse error");
        return -1;
    }
    root = kobj_from_yajl(v, 0);
    yajl_tree_free(v);
    if (!root) {
        snprintf(err, errlen, "out of memory or nesting deeper than %d", KOBJ_MAX_DEPTH);
        return -1;
    }
    if (kobj_is_null_scalar(root)) {
        kobj_free(root);
        return 0;
    }
    if (kobj_docs_push(docs, root)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- lookups ---- */

static struct kobj *kobj_child(const struct kobj *o, const char *key)
{
    size_t i;

    if (!o || o->type != KOBJ_MAP) return NULL;
    for (i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return o->items[i];
    return NULL;
}

static struct kobj *kobj_vget(const struct kobj *o, va_list ap)
{
    const char *key;
    const struct kobj *cur = o;

    while (cur && (key = va_arg(ap, const char *)))
        cur = kobj_child(cur, key);
    return (struct kobj *)cur;
}

struct kobj *kobj_get_(const struct kobj *o, ...)
{
    struct kobj *r;
    va_list ap;

    va_start(ap, o);
    r = kobj_vget(o, ap);
    va_end(ap);
    return r;
}

const char *kobj_text(const struct kobj *o)
{
    if (!o || o->type != KOBJ_SCALAR || kobj_is_null_scalar(o)) return NULL;
    return o->str;
}

const char *kobj_str_(const struct kobj *o, ...)
{
    struct kobj *r;
    va_list ap;

    va_start(ap, o);
    r = kobj_vget(o, ap);
    va_end(ap);
    return kobj_text(r);
}

int kobj_int(const struct kobj *o, long *v)
{
    const char *s = kobj_text(o);
    char *end;
    long x;

    if (!s || !*s) return -1;
    errno = 0;
    x = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *v = x;
    return 0;
}

int kobj_bool(const struct kobj *o)
{
    static const char *yes[] = {"true", "yes", "on", "y"};
    static const char *no[] = {"false", "no", "off", "n"};
    const char *s = kobj_text(o);
    size_t i;

    if (!s) return -1;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcasecmp(s, yes[i])) return 1;
        if (!strcasecmp(s, no[i])) return 0;
    }
    return -1;
}
