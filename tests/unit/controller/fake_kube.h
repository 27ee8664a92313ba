/*
 * fake_kube.h: lets a unit test that includes a controller .c (status.c, events.c) see the
 * requests that module starts and answer them itself, at a time the test chooses.
 *
 * Include order: <ev.h> and "kube_client.h" first (the real declarations), then this file,
 * then the .c under test: from here on kube_client_request/kube_client_cancel and ev_now
 * name the fakes below. Nothing goes over a network; the HTTP layer itself is tested by the
 * end-to-end suite against the stand-in API server.
 */
#ifndef STRAIT_TEST_FAKE_KUBE_H
#define STRAIT_TEST_FAKE_KUBE_H

#include <stdlib.h>
#include <string.h>

#define FAKE_MAX_REQS 256

struct fake_req {
    char method[8];
    char path[1024];
    char ctype[64];
    char *body;
    kube_done_fn done;
    void *arg;
    int live; /* started, neither answered nor cancelled */
};

static struct fake_req fake_reqs[FAKE_MAX_REQS];
static size_t fake_n;
static double fake_now_v = 1000.;

#define kube_client_request fake_kube_request
#define kube_client_cancel fake_kube_cancel
#define ev_now(loop) ((void)(loop), fake_now_v)

static struct kube_request *fake_kube_request(struct kube_client *c, const char *method,
                                              const char *path, const char *content_type,
                                              const void *body, size_t body_len, double timeout,
                                              kube_done_fn done, void *arg, char *err,
                                              size_t errlen)
{
    struct fake_req *r;

    (void)c;
    (void)timeout;
    if (fake_n == FAKE_MAX_REQS) {
        snprintf(err, errlen, "too many fake requests");
        return NULL;
    }
    r = &fake_reqs[fake_n++];
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->path, sizeof(r->path), "%s", path);
    snprintf(r->ctype, sizeof(r->ctype), "%s", content_type ? content_type : "");
    r->body = NULL;
    if (body && (r->body = malloc(body_len + 1))) {
        memcpy(r->body, body, body_len);
        r->body[body_len] = '\0';
    }
    r->done = done;
    r->arg = arg;
    r->live = 1;
    return (struct kube_request *)r;
}

static void fake_kube_cancel(struct kube_request *req)
{
    if (req) ((struct fake_req *)req)->live = 0;
}

/* Requests started and still open. */
static size_t fake_live(void)
{
    size_t i, n = 0;

    for (i = 0; i < fake_n; i++)
        n += fake_reqs[i].live;
    return n;
}

/* Index of the first open request with method and path, or -1. */
static long fake_find(const char *method, const char *path)
{
    size_t i;

    for (i = 0; i < fake_n; i++)
        if (fake_reqs[i].live && !strcmp(fake_reqs[i].method, method) &&
            !strcmp(fake_reqs[i].path, path))
            return (long)i;
    return -1;
}

/* Answers open request i with status and body (retry_after -1: no header). */
static void fake_answer_ra(long i, long status, const char *body, double retry_after)
{
    struct fake_req *r = &fake_reqs[i];
    struct kube_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    resp.body = body ? body : "";
    resp.body_len = strlen(resp.body);
    resp.retry_after = retry_after;
    resp.complete = status != 0;
    resp.error = status ? "" : "Connection refused";
    resp.method = r->method;
    resp.path = r->path;
    r->live = 0;
    r->done(r->arg, &resp);
}

static void fake_answer(long i, long status, const char *body)
{
    fake_answer_ra(i, status, body, -1);
}

static void fake_reset(void)
{
    size_t i;

    for (i = 0; i < fake_n; i++)
        free(fake_reqs[i].body);
    memset(fake_reqs, 0, sizeof(fake_reqs));
    fake_n = 0;
}

#endif
