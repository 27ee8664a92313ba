/*
 * certcheck: the controller's checks of TLS material from Secrets (OpenSSL), and the
 * process-wide "last good" memory of each Secret's certificate.
 */
#ifndef STRAIT_CERTCHECK_H
#define STRAIT_CERTCHECK_H

#include <stddef.h>
#include <stdint.h>

enum certcheck_key { CERTCHECK_KEY_NONE = 0, CERTCHECK_KEY_RSA, CERTCHECK_KEY_EC };

/* What a check found out about a certificate (the leaf, for a server certificate). */
struct certcheck_info {
    enum certcheck_key key_type;   /* of the leaf's public key; NONE for a CA bundle */
    char fingerprint[65];          /* hex SHA-256 of the first certificate's DER, lower case */
    int64_t not_before, not_after; /* of the first certificate, Unix seconds */
    unsigned n_certs;              /* PEM certificates in the chain or bundle */
};

/*
 * Checks a server certificate: crt holds one or more PEM certificates (leaf first, then its
 * chain), key its private key (RSA or EC, PEM). Every certificate must parse, the key must
 * match the leaf, and the leaf must be valid at now (Unix seconds): notBefore <= now <=
 * notAfter. Returns 0 with *info filled and, when chain_out/key_out are given, the material
 * re-encoded as clean PEM (malloc'd; text outside the PEM blocks dropped); or -1 with err
 * holding a reason for a person ("tls.key does not match the certificate", "certificate
 * expired on 2026-11-30T16:50:14Z", ...). info is filled as far as the parse went (the dates
 * of an expired certificate included).
 */
int certcheck_server(const unsigned char *crt, size_t crt_len, const unsigned char *key,
                     size_t key_len, int64_t now, struct certcheck_info *info, char **chain_out,
                     char **key_out, char *err, size_t errlen);

/*
 * Checks a CA bundle (ca.crt): one or more PEM certificates, each of which parses. Dates are
 * not checked (a bundle may hold an expired CA next to its successor). Returns 0 with *info
 * and (optionally) *pem_out (malloc'd clean PEM), or -1 with err filled.
 */
int certcheck_ca_bundle(const unsigned char *pem, size_t len, struct certcheck_info *info,
                        char **pem_out, char *err, size_t errlen);

/* Formats Unix seconds as RFC 3339 UTC ("2026-11-30T16:50:14Z") into buf. */
void certcheck_format_time(int64_t t, char *buf, size_t n);

/* ---- the last-good memory ---- */

/* What certcheck_get decided for one Secret. Pointers stay valid until the next
 * certcheck_get or certcheck_sweep. */
struct certcheck_verdict {
    int usable;         /* chain (and key) below may be served */
    int last_good;      /* usable, but it is an earlier content: the current one is bad */
    int bad;            /* the current content is bad (or the Secret is missing) */
    int first_report;   /* bad, and this (secret, content, reason) was not reported before */
    const char *reason; /* why the current content is bad; "" when it is not */
    const char *chain;  /* clean PEM to serve (NULL when !usable) */
    const char *key;    /* clean PEM key (NULL for a CA bundle or when !usable) */
    struct certcheck_info info; /* of what is served */
};

/*
 * The material to serve for Secret id ("ns/name") used as a server certificate (ca 0:
 * crt + key) or as a CA bundle (ca 1: crt holds ca.crt, key NULL). crt NULL means the Secret
 * does not exist (or lacks the field): nothing to serve, and its last good content is
 * forgotten. A content checked before is not parsed again (keyed by its SHA-256), but its
 * dates are compared with now on every call. When the current content is bad and an
 * earlier good content is still within its validity, that one is served (last_good).
 * Returns 0, or -1 on allocation failure.
 */
int certcheck_get(const char *id, int ca, const unsigned char *crt, size_t crt_len,
                  const unsigned char *key, size_t key_len, int64_t now,
                  struct certcheck_verdict *out);

/*
 * Marks the start of a build: certcheck_sweep() afterwards forgets every Secret that
 * certcheck_get was not asked about since, so the memory holds only what is in use.
 */
void certcheck_begin(void);
void certcheck_sweep(void);
/* Forgets everything (tests, and the end of the process). */
void certcheck_reset(void);

#endif
