/* meshca: the mesh's certificate authority (workload identities as SPIFFE X.509-SVIDs). */
#ifndef STRAIT_MESHCA_H
#define STRAIT_MESHCA_H

#include <stddef.h>
#include <time.h>

struct meshca;

#define MESHCA_ID_MAX 512 /* longest spiffe://TD/ns/NS/sa/SA, NUL included */

/*
 * The identity URI for a ServiceAccount: spiffe://TD/ns/NS/sa/SA. TD must be a SPIFFE trust
 * domain name (lower-case letters, digits, '.', '-', '_'), NS a namespace name (DNS-1123
 * label), SA a ServiceAccount name (DNS-1123 subdomain). 0, or -1 with err.
 */
int meshca_identity(const char *td, const char *ns, const char *sa, char *out, size_t outlen,
                    char *err, size_t errlen);

/*
 * A CA for trust domain td from a root certificate and its key (PEM; from a Secret or files).
 * The certificate must be a CA (basicConstraints CA:TRUE, keyCertSign), match the key and be
 * valid at now. cert_pem may hold more certificates after the first: further roots (a previous
 * one, during a rotation) that go into the trust bundle but never sign; each must be a CA
 * valid at now too. NULL with err.
 */
struct meshca *meshca_load(const char *td, const char *cert_pem, const char *key_pem, time_t now,
                           char *err, size_t errlen);

/* A new self-signed ECDSA P-256 root for td, valid from now for days. NULL with err. */
struct meshca *meshca_generate(const char *td, unsigned days, time_t now, char *err, size_t errlen);

/*
 * The root as PEM: the signing certificate and its key (to store in a Secret), and the trust
 * bundle (every root given to meshca_load, the signing one first; the signing root alone for a
 * generated CA).
 */
const char *meshca_cert_pem(const struct meshca *ca);
const char *meshca_key_pem(const struct meshca *ca);
const char *meshca_bundle_pem(const struct meshca *ca);

/* The signing root's notAfter (UNIX time). */
time_t meshca_not_after(const struct meshca *ca);

/* The notAfter of the first certificate in pem into *out. 0, or -1 if it does not parse. */
int meshca_pem_not_after(const char *pem, time_t *out);

/* Shortest and longest leaf lifetimes meshca_sign accepts, in seconds. */
#define MESHCA_TTL_MIN 10
#define MESHCA_TTL_MAX (31 * 86400)

/*
 * A TLS server certificate for the controller's own endpoints, signed by the root: a new EC
 * P-256 key, subject O=strait CN=<first DNS name>, SANs the n_dns DNS names and n_ips IP
 * addresses (IPv4 or IPv6 text), CA:FALSE, digitalSignature, serverAuth only, valid from now -
 * 60 s for ttl_s seconds (never past the root's end). At least one name. Returns malloc'd PEMs
 * in *cert_pem and *key_pem, 0; or -1 with err.
 */
int meshca_sign_server(const struct meshca *ca, const char *const *dns, size_t n_dns,
                       const char *const *ips, size_t n_ips, unsigned ttl_s, time_t now,
                       char **cert_pem, char **key_pem, char *err, size_t errlen);

/*
 * Signs a leaf for one ServiceAccount from a CSR (PEM). The CSR proves its key (its
 * signature must verify) and nothing else: its subject and requested extensions are
 * ignored; the leaf's only name is the URI SAN of (ns, sa) in the CA's trust domain
 * (critical, empty subject), CA:FALSE, digitalSignature + keyEncipherment, serverAuth +
 * clientAuth, valid from now - 60 s for ttl_s seconds (MESHCA_TTL_MIN..MESHCA_TTL_MAX;
 * never past the root's end). Keys:
 * EC P-256 or P-384, RSA 2048 bits or more. Returns a malloc'd PEM in *leaf_pem, 0; or -1
 * with err.
 */
int meshca_sign(const struct meshca *ca, const char *csr_pem, const char *ns, const char *sa,
                unsigned ttl_s, time_t now, char **leaf_pem, char *err, size_t errlen);

void meshca_free(struct meshca *ca);

#endif
