#include "ef_test.h"

#include "elasticflow.h"

static void test_version(ef_t *t) {
    CHECK_EQ(t, ef_version_number(), EF_VERSION_NUMBER);
    CHECK(t, ef_strerror(EF_ECHECKSUM)[0] != '\0');
    CHECK(t, ef_strerror(-12345)[0] != '\0');
}

int main(void) {
    ef_t t = {0};
    RUN(&t, test_version);
    suite_codec(&t);
    suite_frame(&t);
    suite_count(&t);
    suite_auth(&t);
    suite_loop(&t);
    suite_decode(&t);
    suite_seekable(&t);
    suite_session(&t);
    printf("%d passed, %d failed\n", t.passed, t.failed);
    return t.failed ? 1 : 0;
}
