/* A small test runner: each suite is a function taking an ef_t; CHECK records a failure with
 * its file and line and goes on. main() in test_main.c prints "N passed, N failed". */
#ifndef EF_TEST_H
#define EF_TEST_H

#include <stdio.h>
#include <stdint.h>
#include <stddef.h>

typedef struct ef_t {
    const char *test;   /* current test name */
    int test_failed;    /* failures in the current test */
    int passed, failed; /* tests */
} ef_t;

#define CHECK(t, cond)                                                                           \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            (t)->test_failed++;                                                                  \
            fprintf(stderr, "  FAIL %s: %s:%d: %s\n", (t)->test, __FILE__, __LINE__, #cond);     \
        }                                                                                        \
    } while (0)

#define CHECK_EQ(t, a, b)                                                                        \
    do {                                                                                         \
        long long ef__a = (long long)(a), ef__b = (long long)(b);                                \
        if (ef__a != ef__b) {                                                                    \
            (t)->test_failed++;                                                                  \
            fprintf(stderr, "  FAIL %s: %s:%d: %s == %s (%lld != %lld)\n", (t)->test, __FILE__,  \
                    __LINE__, #a, #b, ef__a, ef__b);                                             \
        }                                                                                        \
    } while (0)

/* Run one test function: RUN(t, test_name) where void test_name(ef_t *t). */
#define RUN(t, fn)                                                                               \
    do {                                                                                         \
        (t)->test = #fn;                                                                         \
        (t)->test_failed = 0;                                                                    \
        fn(t);                                                                                   \
        if ((t)->test_failed) {                                                                  \
            (t)->failed++;                                                                       \
            fprintf(stderr, "not ok %s\n", #fn);                                                 \
        } else {                                                                                 \
            (t)->passed++;                                                                       \
            printf("ok %s\n", #fn);                                                              \
        }                                                                                        \
    } while (0)

/* Deterministic PRNG for tests (xorshift64*), seeded per test. */
static inline uint64_t ef_test_rand(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Suites, one per source file under test. */
void suite_codec(ef_t *t);
void suite_frame(ef_t *t);
void suite_count(ef_t *t);
void suite_auth(ef_t *t);
void suite_loop(ef_t *t);
void suite_decode(ef_t *t);
void suite_seekable(ef_t *t);
void suite_session(ef_t *t);

/* Shared by the loop and session tests (test_loop.c): a blocking client socket connected to
 * 127.0.0.1:port (rcvbuf > 0 shrinks its receive buffer), and a write of all n bytes. */
int raw_connect(uint16_t port, int rcvbuf);
#include <stdbool.h>
bool write_all(int fd, const void *p, size_t n);

#endif
