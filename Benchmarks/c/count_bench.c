// Word-count throughput of the C core, apart from I/O: the file is read into memory first.
//
// Build and run (from the repository root):
//   cc -O3 -std=c11 -D_GNU_SOURCE -ICCore/include -ICCore/src -o /tmp/count_bench
//      Benchmarks/c/count_bench.c CCore/src/*.c -lzstd -llz4 -lcrypto -lpthread     (one line)
//   /tmp/count_bench /tmp/kjv_x10.txt
//
// Prints the median of 5 runs for each configuration: feed (4 MiB chunks) + finish, with and
// without lowercasing, per partition count and tokenizer; then merge, serialize/deserialize and
// export timings; the two-thread pipeline (each thread counts half, the two merge half the
// partitions each, then a full export); and the top words as a check. Feed figures come in wall
// time and in the thread's CPU time: on a shared machine the second is the one that does not count
// other processes' time slices.
#include "count_internal.h"
#include "elasticflow.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 5
#define CHUNK (4u << 20)

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v) {
    qsort(v, RUNS, sizeof *v, cmp_double);
    return v[RUNS / 2];
}

static void die(const char *what) {
    fprintf(stderr, "count_bench: %s\n", what);
    exit(1);
}

static ef_counter *count_all(const uint8_t *data, size_t len, uint32_t parts, uint32_t flags,
                             int tokenizer, double *seconds, double *cpu_seconds) {
    ef_counter_options o = {.partitions = parts, .flags = flags};
    ef_counter *c = ef_counter_create(&o);
    if (!c || ef__counter_set_tokenizer(c, tokenizer) != EF_OK)
        die("create");
    double t0 = now(), c0 = cpu_now();
    for (size_t off = 0; off < len; off += CHUNK) {
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        if (ef_counter_feed(c, data + off, n) != EF_OK)
            die("feed");
    }
    if (ef_counter_finish(c) != EF_OK)
        die("finish");
    *seconds = now() - t0;
    *cpu_seconds = cpu_now() - c0;
    return c;
}

static void bench_feed(const uint8_t *data, size_t len, uint32_t parts, uint32_t flags,
                       int tokenizer) {
    double t[RUNS], tc[RUNS];
    size_t distinct = 0;
    for (int r = 0; r < RUNS; r++) {
        ef_counter *c = count_all(data, len, parts, flags, tokenizer, &t[r], &tc[r]);
        distinct = ef_counter_distinct(c);
        ef_counter_free(c);
    }
    double m = median(t), mc = median(tc);
    printf("feed  %-9s %-5s P=%-4u wall %7.1f MB/s %6.1f ms | cpu %7.1f MB/s  (%zu distinct)\n",
           tokenizer == EF__TOKENIZER_AVX2 ? "avx2" : "portable",
           flags & EF_COUNT_LOWERCASE ? "lower" : "exact", parts, (double)len / m / 1e6, m * 1e3,
           (double)len / mc / 1e6, distinct);
}

typedef struct job {
    const uint8_t *data;
    size_t len;
    int tokenizer;
    ef_counter *counter;
    ef_counter *dst;
    const ef_counter *src;
    uint32_t first;
} job;

static void *count_job(void *arg) {
    job *j = arg;
    double ignore, ignore_cpu;
    j->counter =
        count_all(j->data, j->len, 16, EF_COUNT_LOWERCASE, j->tokenizer, &ignore, &ignore_cpu);
    return NULL;
}

static void *merge_job(void *arg) {
    job *j = arg;
    for (uint32_t p = j->first; p < 16; p += 2)
        if (ef_counter_merge_partition(j->dst, j->src, p) != EF_OK)
            die("merge_partition");
    return NULL;
}

/* The whole in-memory job on two threads: count halves, merge in parallel, export sorted. */
static void bench_two_threads(const uint8_t *data, size_t len, int tokenizer) {
    size_t cut = len / 2;
    while (cut < len && data[cut] != '\n')
        cut++;
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        job a = {.data = data, .len = cut, .tokenizer = tokenizer};
        job b = {.data = data + cut, .len = len - cut, .tokenizer = tokenizer};
        pthread_t ta, tb;
        double t0 = now();
        pthread_create(&ta, NULL, count_job, &a);
        pthread_create(&tb, NULL, count_job, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        job m0 = {.dst = a.counter, .src = b.counter, .first = 0};
        job m1 = {.dst = a.counter, .src = b.counter, .first = 1};
        pthread_create(&ta, NULL, merge_job, &m0);
        pthread_create(&tb, NULL, merge_job, &m1);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        size_t n = ef_counter_distinct(a.counter);
        ef_word_count *out = malloc(n * sizeof *out);
        if (ef_counter_export(a.counter, out, n) != (ptrdiff_t)n)
            die("export");
        t[r] = now() - t0;
        if (r == 0 && (out[0].count != 640010 || out[1].count != 513130))
            die("two-thread counts differ from the reference figures");
        free(out);
        ef_counter_free(a.counter);
        ef_counter_free(b.counter);
    }
    double m = median(t);
    printf("two threads: count halves + merge + export all, lower, P=16: %.1f ms, %.1f MB/s\n",
           m * 1e3, (double)len / m / 1e6);
}

int main(int argc, char **argv) {
    if (argc != 2)
        die("usage: count_bench FILE");
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die("cannot open the file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size)
        die("cannot read the file");
    fclose(f);
    size_t len = (size_t)size;
    printf("%s: %zu bytes\n", argv[1], len);

    int tokenizers[2] = {EF__TOKENIZER_AVX2, EF__TOKENIZER_PORTABLE};
    {
        ef_counter *probe = ef_counter_create(NULL);
        if (ef__counter_set_tokenizer(probe, EF__TOKENIZER_AVX2) != EF_OK)
            tokenizers[0] = EF__TOKENIZER_PORTABLE;
        ef_counter_free(probe);
    }
    for (int k = 0; k < 2; k++) {
        if (k == 1 && tokenizers[1] == tokenizers[0])
            break;
        for (uint32_t flags = EF_COUNT_LOWERCASE;; flags = 0) {
            uint32_t parts[] = {1, 16, 64};
            for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
                bench_feed(data, len, parts[i], flags, tokenizers[k]);
            if (!flags)
                break;
        }
    }

    /* Two halves, counted apart, then merged: what the master does with two workers' results. */
    double t[RUNS], tp[RUNS], ts[RUNS], td[RUNS], te[RUNS], tk[RUNS];
    size_t cut = len / 2;
    while (cut < len && data[cut] != '\n')
        cut++;
    for (int r = 0; r < RUNS; r++) {
        double ignore, ignore_cpu;
        int tok = tokenizers[0];
        ef_counter *a = count_all(data, cut, 16, EF_COUNT_LOWERCASE, tok, &ignore, &ignore_cpu);
        ef_counter *b = count_all(data + cut, len - cut, 16, 0, tok, &ignore, &ignore_cpu);
        ef_counter *a2 = count_all(data, cut, 16, 0, tok, &ignore, &ignore_cpu);

        double t0 = now();
        if (ef_counter_merge(a, b) != EF_OK)
            die("merge");
        t[r] = now() - t0;

        ef_counter *dst = ef_counter_create(NULL);
        t0 = now();
        for (uint32_t p = 0; p < 16; p++)
            if (ef_counter_merge_partition(dst, a2, p) != EF_OK)
                die("merge_partition");
        tp[r] = now() - t0;

        size_t sz = ef_counter_serialized_size(b);
        uint8_t *buf = malloc(sz);
        t0 = now();
        if (ef_counter_serialize(b, buf, sz) != (ptrdiff_t)sz)
            die("serialize");
        ts[r] = now() - t0;
        ef_counter *back = ef_counter_create(NULL);
        t0 = now();
        if (ef_counter_deserialize(back, buf, sz) < 0)
            die("deserialize");
        td[r] = now() - t0;

        size_t n = ef_counter_distinct(a);
        ef_word_count *out = malloc(n * sizeof *out);
        t0 = now();
        if (ef_counter_export(a, out, n) != (ptrdiff_t)n)
            die("export");
        te[r] = now() - t0;
        t0 = now();
        if (ef_counter_export(a, out, 100) != 100)
            die("export top");
        tk[r] = now() - t0;
        if (r == RUNS - 1) {
            printf("merge (P=16 into P=16): %zu + %zu distinct\n", ef_counter_distinct(b), n);
            printf("serialized: %zu bytes for %zu distinct\n", sz, ef_counter_distinct(b));
            printf("top (%zu distinct after merging, exact second half):", n);
            for (int i = 0; i < 5; i++)
                printf(" %.*s %llu", (int)out[i].word.len, (const char *)out[i].word.ptr,
                       (unsigned long long)out[i].count);
            printf("\n");
        }
        free(out);
        free(buf);
        ef_counter_free(back);
        ef_counter_free(dst);
        ef_counter_free(a);
        ef_counter_free(a2);
        ef_counter_free(b);
    }
    printf("merge           %8.2f ms\n", median(t) * 1e3);
    printf("merge_partition %8.2f ms (16 partitions into an empty counter, one thread)\n",
           median(tp) * 1e3);
    printf("serialize       %8.2f ms\n", median(ts) * 1e3);
    printf("deserialize     %8.2f ms\n", median(td) * 1e3);
    printf("export all      %8.2f ms\n", median(te) * 1e3);
    printf("export top 100  %8.2f ms\n", median(tk) * 1e3);

    bench_two_threads(data, len, tokenizers[0]);

    double ignore, ignore_cpu;
    ef_counter *c =
        count_all(data, len, 16, EF_COUNT_LOWERCASE, tokenizers[0], &ignore, &ignore_cpu);
    ef_word_count top[3];
    ef_counter_export(c, top, 3);
    printf("lowercased top:");
    for (int i = 0; i < 3; i++)
        printf(" %.*s %llu", (int)top[i].word.len, (const char *)top[i].word.ptr,
               (unsigned long long)top[i].count);
    printf("  (total %llu words)\n", (unsigned long long)ef_counter_total(c));
    ef_counter_free(c);
    free(data);
    return 0;
}
