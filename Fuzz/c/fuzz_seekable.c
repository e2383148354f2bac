/* libFuzzer target: a hostile file read as zstd's seekable format (ef_seekable_footer,
 * ef_seekable_parse, ef_seekable_decompress).
 *
 * The input is the whole file. Promises: a table accepted has its frames tiling the file exactly
 * up to itself, with cumulative offsets; every frame decompresses to exactly its size or is
 * refused (EF_ECORRUPT with a message and the frame's offset, EF_ESPACE); output never past the
 * room given. */
#include "elasticflow.h"
#include "fuzz_check.h"

#include <string.h>

enum { MAX_FRAMES = 512, ROOM = 1 << 16, SLACK = 64, CANARY = 0xA5 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ef_seekable *s;
    static ef_seek_frame frames[MAX_FRAMES];
    static uint8_t out[ROOM + SLACK];
    if (!s) s = ef_seekable_create();
    FUZZ_CHECK(s != NULL);
    if (size < EF_SEEKABLE_FOOTER_SIZE) return 0;
    uint32_t count = 0;
    int sums = 0;
    int64_t table = ef_seekable_footer(data + size - EF_SEEKABLE_FOOTER_SIZE,
                                       EF_SEEKABLE_FOOTER_SIZE, size, &count, &sums);
    if (table < 0) {
        FUZZ_CHECK(table == EF_EBADMAGIC || table == EF_EFORMAT);
        return 0;
    }
    FUZZ_CHECK((uint64_t)table <= size && count <= EF_SEEKABLE_MAX_FRAMES);
    ptrdiff_t n = ef_seekable_parse(data + size - (size_t)table, (size_t)table, size, frames,
                                    MAX_FRAMES);
    if (n < 0) {
        FUZZ_CHECK(n == EF_EBADMAGIC || n == EF_EFORMAT || n == EF_ESPACE);
        return 0;
    }
    FUZZ_CHECK((uint32_t)n == count);
    uint64_t c = 0, d = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        FUZZ_CHECK(frames[i].compressed_offset == c && frames[i].decompressed_offset == d);
        FUZZ_CHECK(frames[i].checksum == 0 || sums);
        c += frames[i].compressed_size;
        d += frames[i].decompressed_size;
    }
    FUZZ_CHECK(c == size - (uint64_t)table);
    for (ptrdiff_t i = 0; i < n; i++) {
        size_t room = frames[i].decompressed_size < ROOM ? frames[i].decompressed_size : ROOM;
        memset(out + room, CANARY, SLACK);
        ptrdiff_t r = ef_seekable_decompress(s, frames + i, 1, sums,
                                             data + frames[i].compressed_offset,
                                             frames[i].compressed_size, out, room);
        for (size_t k = 0; k < SLACK; k++) FUZZ_CHECK(out[room + k] == CANARY);
        if (r == EF_ECORRUPT) {
            FUZZ_CHECK(ef_seekable_message(s)[0] != '\0');
            FUZZ_CHECK(ef_seekable_offset(s) == frames[i].compressed_offset);
        } else {
            FUZZ_CHECK(r == EF_ESPACE || r == (ptrdiff_t)frames[i].decompressed_size);
        }
    }
    return 0;
}
