/* consumer.c — a program built against the *installed* libelasticflow, as a user builds one:
 * `cc consumer.c $(pkg-config --cflags --libs elasticflow)` (shared) or with `--static` and
 * `-static`. It includes only <elasticflow.h>, and touches each part of the stable API once: the
 * version check, errors, a word count, a codec round trip per codec, and a frame. check.sh
 * builds and runs it; the last line is `consumer: N passed, N failed`. */
#include <elasticflow.h>

#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "consumer: FAILED: %s\n", what);
    }
}

static void count_words(void) {
    static const char text[] = "the cat and The dog and the bird\n";
    ef_counter_options options = {.flags = EF_COUNT_LOWERCASE};
    ef_counter *counter = ef_counter_create(&options);
    check(counter != NULL, "ef_counter_create");
    if (!counter)
        return;
    check(ef_counter_feed(counter, (const uint8_t *)text, sizeof text - 1) == EF_OK, "feed");
    check(ef_counter_finish(counter) == EF_OK, "finish");
    ef_word_count top[2];
    check(ef_counter_export(counter, top, 2) == 2, "export");
    check(top[0].count == 3 && top[0].word.len == 3 && memcmp(top[0].word.ptr, "the", 3) == 0,
          "most frequent word is 'the' (3)");
    check(top[1].count == 2 && top[1].word.len == 3 && memcmp(top[1].word.ptr, "and", 3) == 0,
          "then 'and' (2)");
    check(ef_counter_total(counter) == 8 && ef_counter_distinct(counter) == 5, "total, distinct");
    ef_counter_free(counter);
}

static void round_trip(ef_codec *codec, int id) {
    uint8_t src[4096], packed[8192], out[4096];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)("elastic flow "[i % 13]);
    check(ef_codec_bound(id, sizeof src) <= sizeof packed, "bound");
    ptrdiff_t n = ef_codec_compress(codec, id, 0, src, sizeof src, packed, sizeof packed);
    check(n > EF_CODEC_HEADER_SIZE, ef_codec_name(id));
    if (n <= 0)
        return;
    ptrdiff_t m = ef_codec_decompress(codec, packed, (size_t)n, out, sizeof out, sizeof out);
    check(m == (ptrdiff_t)sizeof src && memcmp(src, out, sizeof src) == 0, "decompressed equal");
    m = ef_codec_decompress(codec, packed, (size_t)n - 1, out, sizeof out, sizeof out);
    check(m == EF_ECORRUPT, "a truncated buffer is refused");
}

static void frame(void) {
    static const uint8_t payload[] = "parcel";
    uint8_t header[EF_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    int n = ef_frame_encode(header, EF_FRAME_PARCEL, 0, EF_CODEC_NONE, 7, 42, payload,
                            sizeof payload, iov);
    check(n == 2, "ef_frame_encode");
    uint8_t wire[EF_FRAME_HEADER_SIZE + sizeof payload];
    memcpy(wire, header, sizeof header);
    memcpy(wire + sizeof header, payload, sizeof payload);
    ef_frame f;
    size_t max = EF_FRAME_MAX_PAYLOAD_DEFAULT;
    check(ef_frame_parse(wire, sizeof wire - 1, max, &f) == EF_ENEEDMORE, "short frame: need more");
    check(ef_frame_parse(wire, sizeof wire, max, &f) == (ptrdiff_t)sizeof wire, "ef_frame_parse");
    check(f.type == EF_FRAME_PARCEL && f.aux == 7 && f.id == 42 && f.payload.len == sizeof payload,
          "frame fields");
}

int main(void) {
    check(ef_version_number() == EF_VERSION_NUMBER, "library version matches the header");
    check(strcmp(ef_strerror(EF_ECORRUPT), "") != 0, "ef_strerror");
    count_words();
    ef_codec *codec = ef_codec_create();
    check(codec != NULL, "ef_codec_create");
    if (codec) {
        round_trip(codec, EF_CODEC_NONE);
        round_trip(codec, EF_CODEC_LZ4);
        round_trip(codec, EF_CODEC_ZSTD);
    }
    ef_codec_free(codec);
    frame();
    printf("libelasticflow %s\nconsumer: %d passed, %d failed\n", ef_version_string(), passed,
           failed);
    return failed != 0;
}
