/*
 * meshwebhook's pure part as a data table: which webhooks of a MutatingWebhookConfiguration
 * get a caBundle and the JSON Patch that sets them (the resourceVersion test first). The
 * requests, leadership and retries are tested end to end against the stand-in API server
 * (tests/e2e/test_mesh_webhook.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../controller/meshwebhook.c"

static const struct {
    const char *name, *obj;
    unsigned n;       /* webhooks to set */
    const char *want; /* the patch, NULL: none */
} plan_cases[] = {
    {"fresh install: no caBundle anywhere",
     "{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"42\"},\"webhooks\":["
     "{\"name\":\"a\",\"clientConfig\":{\"service\":{\"name\":\"s\"}}},"
     "{\"name\":\"b\",\"clientConfig\":{\"service\":{\"name\":\"s\"}}}]}",
     2,
     "[{\"op\":\"test\",\"path\":\"/metadata/resourceVersion\",\"value\":\"42\"},"
     "{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"Q0E=\"},"
     "{\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"Q0E=\"}]"},
    {"one right, one stale: only the stale one",
     "{\"metadata\":{\"resourceVersion\":\"7\"},\"webhooks\":["
     "{\"clientConfig\":{\"caBundle\":\"Q0E=\"}},{\"clientConfig\":{\"caBundle\":\"b2xk\"}}]}",
     1,
     "[{\"op\":\"test\",\"path\":\"/metadata/resourceVersion\",\"value\":\"7\"},"
     "{\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"Q0E=\"}]"},
    {"all right: nothing to send",
     "{\"metadata\":{\"resourceVersion\":\"7\"},\"webhooks\":["
     "{\"clientConfig\":{\"caBundle\":\"Q0E=\"}},{\"clientConfig\":{\"caBundle\":\"Q0E=\"}}]}",
     0, NULL},
    {"no clientConfig: added whole",
     "{\"metadata\":{\"resourceVersion\":\"1\"},\"webhooks\":[{\"name\":\"a\"}]}", 1,
     "[{\"op\":\"test\",\"path\":\"/metadata/resourceVersion\",\"value\":\"1\"},"
     "{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig\",\"value\":{\"caBundle\":\"Q0E=\"}}]"},
    {"a null caBundle differs", "{\"webhooks\":[{\"clientConfig\":{\"caBundle\":null}}]}", 1,
     "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"Q0E=\"}]"},
    {"no webhooks", "{\"metadata\":{\"resourceVersion\":\"1\"}}", 0, NULL},
    {"webhooks not a list", "{\"webhooks\":{}}", 0, NULL},
    {"empty list", "{\"webhooks\":[]}", 0, NULL},
};

static void test_plan(void **state)
{
    struct kobj_docs docs;
    char err[200], *got;
    unsigned n;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
        memset(&docs, 0, sizeof(docs));
        if (kobj_parse_json(plan_cases[i].obj, strlen(plan_cases[i].obj), &docs, err, sizeof(err)))
            fail_msg("case %s: %s", plan_cases[i].name, err);
        got = mw_patch(docs.docs[0], "Q0E=", &n);
        if (n != plan_cases[i].n) fail_msg("case %s: n %u", plan_cases[i].name, n);
        if (!plan_cases[i].want && got) fail_msg("case %s: patch %s", plan_cases[i].name, got);
        if (plan_cases[i].want) {
            if (!got) fail_msg("case %s: no patch", plan_cases[i].name);
            if (strcmp(got, plan_cases[i].want))
                fail_msg("case %s:\n got %s\nwant %s", plan_cases[i].name, got, plan_cases[i].want);
        }
        free(got);
        kobj_docs_free(&docs);
    }
}

static void test_base64_of_the_bundle(void **state)
{
    char *b = meshid_base64("CA");

    (void)state;
    assert_string_equal(b, "Q0E=");
    free(b);
    b = meshid_base64("");
    assert_string_equal(b, "");
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_base64_of_the_bundle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
