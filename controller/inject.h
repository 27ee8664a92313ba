/*
 * inject: adds the mesh sidecar to pods - `strait-controller inject -f FILE` for manifests and
 * inject_admission for the mutating admission webhook (POST /inject). Both compute the same
 * list of JSON Patch "add" operations for a pod; inject applies them, the webhook sends them.
 */
#ifndef STRAIT_INJECT_H
#define STRAIT_INJECT_H

#include <stddef.h>
#include <stdio.h>

/* The proxy version the annotation strait.dev/proxy-version carries (the chart's appVersion). */
#define INJECT_PROXY_VERSION "0.1.0"
/* The chart's image (image.repository "strait", tag appVersion). */
#define INJECT_DEFAULT_IMAGE "strait:" INJECT_PROXY_VERSION
#define INJECT_DEFAULT_IDENTITY_ADDR "strait-controller.strait-system.svc:8443"

struct inject_opts {
    const char *proxy_image;   /* NULL: INJECT_DEFAULT_IMAGE */
    const char *identity_addr; /* NULL: INJECT_DEFAULT_IDENTITY_ADDR */
    const char
        *trust_anchors; /* PEM for STRAIT_MESH_TRUST_ANCHORS; NULL: the variable is left out */
};

enum inject_format { INJECT_AUTO = 0, INJECT_YAML, INJECT_JSON };

/*
 * Injects every pod (Pod, a workload's pod template, the items of a List) of the YAML or JSON
 * documents in buf[0..len) and writes them to *out (malloc'd, *outlen bytes, NUL-terminated)
 * in format fmt (INJECT_AUTO: the input's). Objects of other kinds pass through unchanged. One
 * line per pod goes to msgs (NULL: none): injected, or why it was skipped. Returns 0, or -1
 * with err filled (unreadable input, an invalid strait.dev/skip-* annotation).
 */
int inject_documents(const char *buf, size_t len, const struct inject_opts *o,
                     enum inject_format fmt, FILE *msgs, char **out, size_t *outlen, char *err,
                     size_t errlen);

/*
 * Answers an AdmissionReview v1 (JSON in body[0..len)) for a Pod: *out (malloc'd, *outlen
 * bytes) is the AdmissionReview response with request.uid echoed, allowed true and, when the
 * pod gets the sidecar, a base64 JSON Patch (patchType JSONPatch) that turns the pod into what
 * inject_documents makes of it. A pod not injected (strait.dev/inject disabled, already
 * injected, hostNetwork) is allowed without a patch (hostNetwork with a warning); one with an
 * invalid strait.dev/skip-* annotation is denied with the reason. Returns 0, or -1 with err
 * filled when body is not an AdmissionReview with a uid and an object (answer 400).
 */
int inject_admission(const char *body, size_t len, const struct inject_opts *o, char **out,
                     size_t *outlen, char *err, size_t errlen);

struct meshid;
struct meshsrv_request;
struct meshsrv_reply;

/* The webhook's state: its options (trust_anchors unused) and the mesh CA for the bundle. */
struct inject_webhook {
    struct inject_opts opts;
    struct meshid *mesh;
};

/*
 * meshsrv handler of POST /inject (arg: a struct inject_webhook): the AdmissionReview answer
 * with the mesh's current trust bundle as the sidecars' anchors; 400 for a body that is not an
 * AdmissionReview, 503 while the mesh root is not loaded.
 */
int inject_webhook_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out);

/* `strait-controller inject ARGS`: argv[0] is "inject". Returns the exit status. */
int inject_main(int argc, char **argv);

#endif
