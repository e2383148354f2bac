/* libFuzzer target for what reads bytes from the network: the frame parser and, behind it, the
 * codec's decompressor. Not run by `make ctest` (which only compiles it, so it keeps building);
 * run it with a clang that ships libFuzzer:
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -DEF_BUILDING_LIBRARY \
 *     -ICCore/include -ICCore/src CCore/src/frame.c CCore/src/crc32c.c CCore/src/codec.c \
 *     CCore/src/error.c CCore/tests/fuzz_frame.c -lzstd -llz4 -o build/fuzz_frame
 *   mkdir -p build/fuzz_corpus && ./build/fuzz_frame build/fuzz_corpus
 *
 * Random bytes rarely get past a CRC32C, so the input is used two ways: as raw bytes for the
 * parser and the decompressor, and as the payload of a frame sealed here, so that the parser's
 * success path and the decoders see mutated data too. */
#include "elasticflow.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* A successfully parsed frame re-encodes to the same bytes, and no shorter prefix was complete. */
static void check_frame(const uint8_t *buf, size_t len) {
    ef_frame fr;
    ptrdiff_t r = ef_frame_parse(buf, len, 1u << 20, &fr);
    if (r == EF_ENEEDMORE || r < 0)
        return;
    EXPECT((size_t)r <= len && (size_t)r == EF_FRAME_HEADER_SIZE + fr.payload.len);
    EXPECT(fr.payload.ptr == buf + EF_FRAME_HEADER_SIZE);
    EXPECT(ef_frame_parse(buf, (size_t)r - 1, 1u << 20, NULL) == EF_ENEEDMORE);
    uint8_t hdr[EF_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    int n = ef_frame_encode(hdr, fr.type, fr.flags, fr.codec, fr.aux, fr.id, fr.payload.ptr,
                            fr.payload.len, iov);
    EXPECT(n == (fr.payload.len ? 2 : 1));
    EXPECT(memcmp(hdr, buf, EF_FRAME_HEADER_SIZE) == 0);
}

/* Decoding never writes past the recorded size, success or not, and a success fills exactly it. */
static void check_decompress(ef_codec *c, const uint8_t *buf, size_t len) {
    enum { CAP = 1 << 16, SLACK = 16 };
    uint8_t *dst = malloc(CAP + SLACK);
    memset(dst, 0xA5, CAP + SLACK);
    uint64_t raw = 0;
    int peek = ef_codec_peek(buf, len, NULL, &raw);
    ptrdiff_t r = ef_codec_decompress(c, buf, len, dst, CAP, CAP);
    EXPECT(r < 0 || (peek == EF_OK && (uint64_t)r == raw));
    size_t may_write = peek == EF_OK && raw <= CAP ? (size_t)raw : 0;
    for (size_t i = may_write; i < CAP + SLACK; i++)
        EXPECT(dst[i] == 0xA5);
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Contexts are costly to build per input; one for the process is the fuzzer's business. */
    static ef_codec *codec;
    if (codec == NULL)
        codec = ef_codec_create();
    if (codec == NULL)
        return 0;

    check_frame(data, size);
    check_decompress(codec, data, size);

    /* The same bytes as a sealed payload: the parser must accept it whole and hand back a view
     * of exactly those bytes, and every prefix must ask for more. */
    if (size <= (1u << 20)) {
        uint8_t hdr[EF_FRAME_HEADER_SIZE];
        struct iovec iov[2];
        if (ef_frame_encode(hdr, EF_FRAME_PARCEL, EF_FRAME_F_COMPRESSED, 0, 0, 1, data, size, iov) <
            1)
            abort();
        uint8_t *f = malloc(EF_FRAME_HEADER_SIZE + size);
        memcpy(f, hdr, EF_FRAME_HEADER_SIZE);
        if (size)
            memcpy(f + EF_FRAME_HEADER_SIZE, data, size);
        ef_frame fr;
        EXPECT(ef_frame_parse(f, EF_FRAME_HEADER_SIZE + size, 1u << 20, &fr) ==
               (ptrdiff_t)(EF_FRAME_HEADER_SIZE + size));
        EXPECT(fr.payload.len == size && fr.payload.ptr == f + EF_FRAME_HEADER_SIZE);
        EXPECT(ef_frame_parse(f, EF_FRAME_HEADER_SIZE + size / 2, 1u << 20, NULL) ==
               (size ? EF_ENEEDMORE : (ptrdiff_t)EF_FRAME_HEADER_SIZE));
        check_decompress(codec, fr.payload.ptr, fr.payload.len);
        free(f);
    }
    return 0;
}
