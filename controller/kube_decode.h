/*
 * kube_decode: generic document (kobj) → typed model objects, with the Kubernetes API
 * validation rules the controller relies on. Source-agnostic: files today, API JSON later.
 */
#ifndef STRAIT_KUBE_DECODE_H
#define STRAIT_KUBE_DECODE_H

#include <stddef.h>

#include "kobj.h"
#include "model.h"

/* What a document claims to be, for log lines: kind and "ns/name" ("-" when unknown). */
struct kube_ident {
    char kind[64];
    char object[320];
};

/*
 * Decodes one object document. source is recorded in the object (e.g. its file path).
 * Returns 1 with *out set (caller owns it), 0 when the document is a kind we do not keep
 * (err says which, for a debug log), or -1 when the object is invalid (err holds the reason).
 * id is filled in every case, as far as the document allows.
 */
int kube_decode(const struct kobj *doc, const char *source, struct model_meta **out,
                struct kube_ident *id, char *err, size_t errlen);

/*
 * Same, for a document that may lack kind and apiVersion (the items of a typed List, as the
 * API server sends them): when doc has no kind, kind_default and api_default are used.
 */
int kube_decode_as(const struct kobj *doc, const char *kind_default, const char *api_default,
                   const char *source, struct model_meta **out, struct kube_ident *id, char *err,
                   size_t errlen);

/*
 * Same as kube_decode_as, except for a Gateway whose spec is invalid: returns 2 with err
 * holding the reason and *out set to the Gateway (caller owns it) reduced to its identity,
 * metadata.generation and model_gateway.invalid (the reason), no listeners nor routes. The
 * caller logs object_rejected as for -1 and keeps the object, so that snapbuild reports it in
 * the Gateway's status (Accepted False, reason Invalid). kube_decode and kube_decode_as
 * return -1 for it instead.
 */
int kube_decode_keep(const struct kobj *doc, const char *kind_default, const char *api_default,
                     const char *source, struct model_meta **out, struct kube_ident *id, char *err,
                     size_t errlen);

/* The items sequence if doc is a List (kind "List" or "<Kind>List"), else NULL. */
const struct kobj *kube_decode_list_items(const struct kobj *doc);

/*
 * Parses an RFC 3339 timestamp ("2024-01-02T03:04:05Z", optional fraction and offset).
 * Returns 0 and sets *sec / *nsec (UTC), or -1.
 */
int kube_decode_time(const char *s, int64_t *sec, long *nsec);

/*
 * Decodes standard base64 (RFC 4648, padded; CR and LF are skipped, as Go's decoder does for
 * the []byte fields of Kubernetes objects) into out, which needs room for
 * strlen(in) / 4 * 3 + 3 bytes. Returns the decoded length, or -1 if in is not base64.
 */
long kube_decode_base64(const char *in, unsigned char *out);

/* Whether the n bytes at s are an RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63. */
int kube_decode_dns_label(const char *s, size_t n);

/* Whether s is an RFC 1123 subdomain (dot-separated lower-case labels, at most 253). */
int kube_decode_dns_name(const char *s);

/* Validates and lower-cases an Ingress host in place; returns 0 or -1 with err filled. */
int kube_decode_host(char *host, char *err, size_t errlen);

#endif
