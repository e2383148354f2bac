/* libFuzzer target: compressed parcel buffers (EFPB), ef_codec_peek and ef_codec_decompress with
 * every codec, and round trips through ef_codec_compress.
 *
 * Raw bytes go to the decoder as a buffer from a peer: it must refuse or decode exactly the
 * recorded size, never write past it, never past the caller's capacity or limit. The same bytes
 * are then compressed with the codec and level the first byte picks, and must come back intact;
 * the compressed buffer cut short, or held to a smaller limit or capacity, must be refused. */
#include "elasticflow.h"
#include "fuzz_check.h"

#include <string.h>

enum { CAP = 1 << 16, SLACK = 64, CANARY = 0xA5 };

static uint8_t out[CAP + SLACK];
static uint8_t canary[CAP + SLACK];

/* Decoding never writes past the recorded size, success or not, and a success fills exactly it. */
static void check_decode(ef_codec *c, const uint8_t *buf, size_t len, size_t cap, size_t limit) {
    memset(out, CANARY, sizeof out);
    uint64_t raw = 0;
    int id = -1;
    int peek = ef_codec_peek(buf, len, &id, &raw);
    ptrdiff_t r = ef_codec_decompress(c, buf, len, out, cap, limit);
    if (r >= 0)
        FUZZ_CHECK(peek == EF_OK && (uint64_t)r == raw && raw <= cap && raw <= limit);
    if (peek == EF_OK && raw > limit)
        FUZZ_CHECK(r == EF_ETOOBIG);
    else if (peek == EF_OK && raw > cap)
        FUZZ_CHECK(r == EF_ESPACE);
    if (peek != EF_OK && peek != EF_ENEEDMORE)
        FUZZ_CHECK(r == peek);
    size_t may_write = peek == EF_OK && raw <= cap && raw <= limit ? (size_t)raw : 0;
    FUZZ_CHECK(memcmp(out + may_write, canary, sizeof out - may_write) == 0);
}

static void check_round_trip(ef_codec *c, const uint8_t *data, size_t size) {
    static uint8_t packed[CAP + 1024];
    if (size < 2 || size - 2 > CAP)
        return;
    int id = data[0] % 3;
    /* Levels 1..3 for zstd keep runs fast; the rest of the byte is lz4's acceleration. */
    int level = id == EF_CODEC_ZSTD ? 1 + data[1] % 3 : id == EF_CODEC_LZ4 ? data[1] : 0;
    const uint8_t *src = data + 2;
    size_t n = size - 2;
    size_t bound = ef_codec_bound(id, n);
    FUZZ_CHECK(bound >= EF_CODEC_HEADER_SIZE && bound <= sizeof packed);
    ptrdiff_t plen = ef_codec_compress(c, id, level, src, n, packed, bound);
    FUZZ_CHECK(plen >= EF_CODEC_HEADER_SIZE && (size_t)plen <= bound);
    int got_id = -1;
    uint64_t raw = 0;
    FUZZ_CHECK(ef_codec_peek(packed, (size_t)plen, &got_id, &raw) == EF_OK);
    FUZZ_CHECK(got_id == id && raw == n);
    memset(out, CANARY, sizeof out);
    FUZZ_CHECK(ef_codec_decompress(c, packed, (size_t)plen, out, CAP, CAP) == (ptrdiff_t)n);
    FUZZ_CHECK(memcmp(out, src, n) == 0);
    FUZZ_CHECK(memcmp(out + n, canary, sizeof out - n) == 0);
    if (n > 0) {
        FUZZ_CHECK(ef_codec_decompress(c, packed, (size_t)plen, out, CAP, n - 1) == EF_ETOOBIG);
        FUZZ_CHECK(ef_codec_decompress(c, packed, (size_t)plen, out, n - 1, CAP) == EF_ESPACE);
    }
    /* Cut short: refused, whatever the codec (a short "none" buffer, a torn lz4 block or zstd
     * frame), and still nothing written past the recorded size. */
    check_decode(c, packed, (size_t)plen - 1, CAP, CAP);
    FUZZ_CHECK(ef_codec_decompress(c, packed, (size_t)plen - 1, out, CAP, CAP) < 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Contexts are costly to build per input; one for the process, and it must survive any
     * input (a failed decode leaves it ready for the next). */
    static ef_codec *codec;
    if (codec == NULL) {
        codec = ef_codec_create();
        memset(canary, CANARY, sizeof canary);
    }
    FUZZ_CHECK(codec != NULL);

    check_decode(codec, data, size, CAP, CAP);
    /* A capacity and a limit picked by the input, so both refusals meet every recorded size. */
    if (size >= 2)
        check_decode(codec, data, size, (size_t)data[size - 1] << 4, (size_t)data[size - 2] << 4);
    check_round_trip(codec, data, size);
    return 0;
}
