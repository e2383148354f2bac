// Sealing throughput of the C core on one core: ef_seal_frame / ef_seal_open (AES-256-GCM via
// libcrypto) for 64 KiB and 32 MiB payloads, MAC only (GMAC: the payload is additional data) and
// encrypted, next to CRC32C, what an unsealed frame costs instead.
//
// Build and run (from the repository root; `make seal-bench` does both):
//   cc -O3 -std=c11 -D_GNU_SOURCE -ICCore/include -ICCore/src -o build/seal_bench
//      Benchmarks/c/seal_bench.c CCore/src/*.c -lzstd -llz4 -lcrypto -lpthread     (one line)
//   build/seal_bench
//
// Prints the median of 7 runs of the thread's CPU time per configuration, as MB/s (10^6 bytes).
#include "elasticflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 7

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { SEAL, OPEN, CRC };

/* MB/s of one operation over `total` bytes in frames of `size`. */
static double measure(int op, unsigned mode, uint8_t *buf, size_t size, size_t total) {
    static const uint8_t key[EF_SESSION_KEY_SIZE] = {1, 2, 3};
    double runs[RUNS];
    size_t frames = total / size;
    uint8_t header[EF_FRAME_HEADER_SIZE], tag[EF_SESSION_TAG_SIZE];
    ef_frame_encode_sealed(header, EF_FRAME_PARCEL, 0, 0, 1, 1, size);
    for (int r = 0; r < RUNS; r++) {
        ef_seal *sealer = ef_seal_create(key, 'M', mode);
        ef_seal *opener = ef_seal_create(key, 'M', mode | EF_SEAL_OPENER);
        /* Open needs frames sealed at the same counters: seal each once, then time the opens
         * of a copy. For the timing only the work per byte matters, so one sealed frame at
         * counter c is opened by an opener at counter c: both advance together. */
        volatile uint32_t sink = 0;
        double start = cpu_s(), spent = 0;
        for (size_t f = 0; f < frames; f++) {
            if (op == SEAL) {
                ef_seal_frame(sealer, header, buf, size, tag);
            } else if (op == OPEN) {
                double pause = cpu_s();
                ef_seal_frame(sealer, header, buf, size, tag); /* not timed */
                spent += cpu_s() - pause;
                if (ef_seal_open(opener, header, buf, size, tag) != EF_OK) {
                    fprintf(stderr, "open failed\n");
                    exit(1);
                }
            } else {
                sink ^= ef_crc32c(0, buf, size);
            }
        }
        runs[r] = cpu_s() - start - spent;
        (void)sink;
        ef_seal_free(sealer);
        ef_seal_free(opener);
    }
    qsort(runs, RUNS, sizeof runs[0], by_value);
    return (double)(frames * size) / runs[RUNS / 2] / 1e6;
}

int main(void) {
    const size_t sizes[] = {64u << 10, 32u << 20};
    const size_t total = 512u << 20;
    uint8_t *buf = malloc(32u << 20);
    if (!buf)
        return 1;
    for (size_t i = 0; i < (32u << 20); i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 24);
    printf("%-10s %-10s %12s %12s\n", "payload", "mode", "seal MB/s", "open MB/s");
    for (size_t s = 0; s < 2; s++) {
        const char *name = s == 0 ? "64 KiB" : "32 MiB";
        for (unsigned mode = 0; mode <= EF_SEAL_ENCRYPT; mode++)
            printf("%-10s %-10s %12.0f %12.0f\n", name, mode ? "encrypted" : "MAC only",
                   measure(SEAL, mode, buf, sizes[s], total),
                   measure(OPEN, mode, buf, sizes[s], total));
        printf("%-10s %-10s %12.0f %12s\n", name, "CRC32C", measure(CRC, 0, buf, sizes[s], total),
               "");
    }
    free(buf);
    return 0;
}
