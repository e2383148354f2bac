/* libFuzzer target: ef_decoder over hostile compressed input (gzip, zstd, lz4 frames, bzip2).
 *
 * The first byte picks the format (input that starts with a magic number is also run as detected)
 * and the chunk sizes; the rest is fed in pieces into a small output buffer. Promises: never more
 * output than the room given, never more consumed than given, the offset is what was consumed,
 * an error is sticky until a reset, and the end is either clean or a truncation. */
#include "elasticflow.h"
#include "fuzz_check.h"

#include <string.h>

enum { ROOM = 4096, SLACK = 64, CANARY = 0xA5 };

static void run(ef_decoder *d, int format, const uint8_t *src, size_t len, size_t in_step,
                size_t out_step) {
    static uint8_t out[ROOM + SLACK];
    FUZZ_CHECK(ef_decoder_reset(d, format) == EF_OK);
    size_t pos = 0;
    uint64_t produced = 0;
    for (int idle = 0; idle < 2;) {
        size_t give = len - pos < in_step ? len - pos : in_step;
        size_t used = (size_t)-1;
        memset(out + out_step, CANARY, SLACK);
        ptrdiff_t n = ef_decoder_decode(d, src + pos, give, &used, out, out_step);
        FUZZ_CHECK(used <= give);
        for (size_t i = 0; i < SLACK; i++) FUZZ_CHECK(out[out_step + i] == CANARY);
        pos += used;
        FUZZ_CHECK(ef_decoder_offset(d) == pos || n == EF_ECORRUPT);
        if (n < 0) {
            FUZZ_CHECK(n == EF_ECORRUPT);
            FUZZ_CHECK(ef_decoder_message(d)[0] != '\0');
            FUZZ_CHECK(ef_decoder_offset(d) <= len);
            FUZZ_CHECK(ef_decoder_decode(d, src, len, &used, out, out_step) == EF_EINVAL);
            FUZZ_CHECK(ef_decoder_finish(d) == EF_EINVAL);
            return;
        }
        FUZZ_CHECK((size_t)n <= out_step);
        produced += (uint64_t)n;
        if (produced > (64u << 20)) return; /* a bomb: bounded output per call is what matters */
        idle = (n == 0 && used == 0) ? idle + 1 : 0;
    }
    FUZZ_CHECK(pos == len || ef_decoder_finish(d) != EF_EINVAL);
    int end = ef_decoder_finish(d);
    FUZZ_CHECK(end == EF_OK || end == EF_ENEEDMORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ef_decoder *d;
    if (!d) d = ef_decoder_create();
    FUZZ_CHECK(d != NULL);
    if (size < 1) return 0;
    int format = 1 + data[0] % 4;
    size_t in_step = 1 + (data[0] >> 2) % 7 * 97, out_step = 1 + (size_t)(data[0] >> 5) * 585;
    run(d, format, data + 1, size - 1, in_step, out_step);
    int detected = ef_format_detect(data, size, 1);
    if (detected > EF_FORMAT_PLAIN) run(d, detected, data, size, 65536, ROOM);
    return 0;
}
