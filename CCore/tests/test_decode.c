/* ef_decoder: every format round-trips (one byte at a time too), concatenated members, every
 * truncation, corruption with its offset, detection of short and plain inputs. The compressed
 * inputs are made here with the same libraries (the Swift tests use the command-line tools). */
#include "ef_test.h"

#include "elasticflow.h"

#include <bzlib.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define TEXT_MAX (256 << 10)

/* Text with some repetition, deterministic. */
static size_t make_text(uint8_t *buf, size_t cap, uint64_t seed) {
    static const char *words[] = {"the", "and", "of", "to", "Lord", "unto", "shall", "thou"};
    size_t n = 0;
    while (n + 8 < cap) {
        const char *w = words[ef_test_rand(&seed) % 8];
        size_t len = strlen(w);
        memcpy(buf + n, w, len);
        n += len;
        buf[n++] = ef_test_rand(&seed) % 9 == 0 ? '\n' : ' ';
    }
    return n;
}

/* Compress src in `format`; returns the compressed size (0 on failure). */
static size_t compress_as(int format, const uint8_t *src, size_t len, uint8_t *dst, size_t cap) {
    switch (format) {
    case EF_FORMAT_ZSTD: {
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        size_t r = ZSTD_compress2(c, dst, cap, src, len);
        ZSTD_freeCCtx(c);
        return ZSTD_isError(r) ? 0 : r;
    }
    case EF_FORMAT_LZ4: {
        LZ4F_preferences_t prefs;
        memset(&prefs, 0, sizeof prefs);
        prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
        size_t r = LZ4F_compressFrame(dst, cap, src, len, &prefs);
        return LZ4F_isError(r) ? 0 : r;
    }
    case EF_FORMAT_GZIP: {
        z_stream z;
        memset(&z, 0, sizeof z);
        if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
        z.next_in = (Bytef *)(uintptr_t)src;
        z.avail_in = (uInt)len;
        z.next_out = dst;
        z.avail_out = (uInt)cap;
        int r = deflate(&z, Z_FINISH);
        size_t n = z.total_out;
        deflateEnd(&z);
        return r == Z_STREAM_END ? n : 0;
    }
    case EF_FORMAT_BZIP2: {
        unsigned n = (unsigned)cap;
        int r = BZ2_bzBuffToBuffCompress((char *)dst, &n, (char *)(uintptr_t)src, (unsigned)len, 9,
                                         0, 0);
        return r == BZ_OK ? n : 0;
    }
    default: return 0;
    }
}

static const int formats[] = {EF_FORMAT_GZIP, EF_FORMAT_ZSTD, EF_FORMAT_LZ4, EF_FORMAT_BZIP2};

/* Decode all of src, feeding at most `in_step` bytes and pulling at most `out_step` at a time.
 * Returns the decoded size, or the error (decode's, or finish's). */
static ptrdiff_t decode_all(ef_decoder *d, int format, const uint8_t *src, size_t len,
                            size_t in_step, size_t out_step, uint8_t *dst, size_t cap) {
    if (ef_decoder_reset(d, format) != EF_OK) return EF_EINVAL;
    size_t pos = 0, out = 0;
    for (;;) {
        size_t give = len - pos < in_step ? len - pos : in_step;
        size_t room = cap - out < out_step ? cap - out : out_step;
        size_t used = 0;
        ptrdiff_t n = ef_decoder_decode(d, src + pos, give, &used, dst + out, room);
        if (n < 0) return n;
        pos += used;
        out += (size_t)n;
        if (n == 0 && used == 0 && pos == len) break;
        if (out == cap) return EF_ESPACE;
    }
    int rc = ef_decoder_finish(d);
    return rc == EF_OK ? (ptrdiff_t)out : rc;
}

static void test_decode_detect(ef_t *t) {
    const uint8_t gz[] = {0x1f, 0x8b, 8, 0}, zs[] = {0x28, 0xb5, 0x2f, 0xfd};
    const uint8_t lz[] = {0x04, 0x22, 0x4d, 0x18}, bz[] = {'B', 'Z', 'h', '9'};
    const uint8_t skip[] = {0x5a, 0x2a, 0x4d, 0x18}, bz0[] = {'B', 'Z', 'h', '0'};
    CHECK_EQ(t, ef_format_detect(gz, 4, 0), EF_FORMAT_GZIP);
    CHECK_EQ(t, ef_format_detect(zs, 4, 0), EF_FORMAT_ZSTD);
    CHECK_EQ(t, ef_format_detect(lz, 4, 0), EF_FORMAT_LZ4);
    CHECK_EQ(t, ef_format_detect(bz, 4, 0), EF_FORMAT_BZIP2);
    CHECK_EQ(t, ef_format_detect(skip, 4, 0), EF_FORMAT_ZSTD);
    CHECK_EQ(t, ef_format_detect(bz0, 4, 0), EF_FORMAT_PLAIN);
    CHECK_EQ(t, ef_format_detect((const uint8_t *)"hello", 5, 0), EF_FORMAT_PLAIN);
    CHECK_EQ(t, ef_format_detect(zs, 2, 0), EF_ENEEDMORE);
    CHECK_EQ(t, ef_format_detect(zs, 2, 1), EF_FORMAT_PLAIN);
    CHECK_EQ(t, ef_format_detect(bz, 3, 0), EF_ENEEDMORE);
    CHECK_EQ(t, ef_format_detect((const uint8_t *)"BZ", 2, 1), EF_FORMAT_PLAIN);
    CHECK_EQ(t, ef_format_detect((const uint8_t *)"ab", 2, 0), EF_FORMAT_PLAIN);
    CHECK_EQ(t, ef_format_detect(NULL, 0, 0), EF_ENEEDMORE);
    CHECK_EQ(t, ef_format_detect(NULL, 0, 1), EF_FORMAT_PLAIN);
    CHECK(t, strcmp(ef_format_name(EF_FORMAT_BZIP2), "bzip2") == 0);
    CHECK(t, ef_format_name(99) == NULL);
}

static void test_decode_roundtrip(ef_t *t) {
    uint8_t *text = malloc(TEXT_MAX), *z = malloc(TEXT_MAX * 2), *out = malloc(TEXT_MAX + 1);
    ef_decoder *d = ef_decoder_create();
    size_t len = make_text(text, TEXT_MAX, 7);
    for (size_t f = 0; f < 4; f++) {
        size_t zlen = compress_as(formats[f], text, len, z, TEXT_MAX * 2);
        CHECK(t, zlen > 0);
        CHECK_EQ(t, ef_format_detect(z, zlen, 1), formats[f]);
        CHECK_EQ(t, decode_all(d, formats[f], z, zlen, zlen, TEXT_MAX + 1, out, TEXT_MAX + 1), len);
        CHECK(t, memcmp(out, text, len) == 0);
        CHECK_EQ(t, ef_decoder_offset(d), zlen);
        /* One byte in, 7 bytes out at a time: same bytes. */
        memset(out, 0, len);
        CHECK_EQ(t, decode_all(d, formats[f], z, zlen, 1, 7, out, TEXT_MAX + 1), len);
        CHECK(t, memcmp(out, text, len) == 0);
    }
    ef_decoder_free(d);
    free(text);
    free(z);
    free(out);
}

static void test_decode_concatenated(ef_t *t) {
    uint8_t *text = malloc(TEXT_MAX), *z = malloc(TEXT_MAX * 4), *out = malloc(TEXT_MAX * 2);
    ef_decoder *d = ef_decoder_create();
    size_t len = make_text(text, TEXT_MAX / 2, 11);
    for (size_t f = 0; f < 4; f++) {
        /* Three members: the text's two halves, then an empty member (gzip, zstd, lz4 allow it). */
        size_t half = len / 2;
        size_t a = compress_as(formats[f], text, half, z, TEXT_MAX * 4);
        size_t b = compress_as(formats[f], text + half, len - half, z + a, TEXT_MAX * 4 - a);
        size_t c = formats[f] == EF_FORMAT_BZIP2 ? 0 : compress_as(formats[f], text, 0, z + a + b, 4096);
        CHECK(t, a > 0 && b > 0);
        size_t zlen = a + b + c;
        CHECK_EQ(t, decode_all(d, formats[f], z, zlen, zlen, TEXT_MAX * 2, out, TEXT_MAX * 2), len);
        CHECK(t, memcmp(out, text, len) == 0);
        CHECK_EQ(t, decode_all(d, formats[f], z, zlen, 3, 1000, out, TEXT_MAX * 2), len);
        CHECK(t, memcmp(out, text, len) == 0);
        /* Cut right after the first member: a whole member, not a truncation. */
        CHECK_EQ(t, decode_all(d, formats[f], z, a, a, TEXT_MAX * 2, out, TEXT_MAX * 2), half);
    }
    ef_decoder_free(d);
    free(text);
    free(z);
    free(out);
}

static void test_decode_truncated(ef_t *t) {
    uint8_t text[3000], z[8192], out[4096];
    ef_decoder *d = ef_decoder_create();
    size_t len = make_text(text, sizeof text, 3);
    for (size_t f = 0; f < 4; f++) {
        size_t zlen = compress_as(formats[f], text, len, z, sizeof z);
        CHECK(t, zlen > 0);
        int wrong = 0, offset_wrong = 0;
        for (size_t cut = 1; cut < zlen; cut++) {
            ptrdiff_t r = decode_all(d, formats[f], z, cut, cut, sizeof out, out, sizeof out);
            if (r != EF_ENEEDMORE) wrong++;
            if (r == EF_ENEEDMORE && ef_decoder_offset(d) != cut) offset_wrong++;
        }
        CHECK_EQ(t, wrong, 0);
        CHECK_EQ(t, offset_wrong, 0);
    }
    ef_decoder_free(d);
}

static void test_decode_corrupt(ef_t *t) {
    uint8_t text[20000], z[40000], out[40000];
    ef_decoder *d = ef_decoder_create();
    size_t len = make_text(text, sizeof text, 5);
    for (size_t f = 0; f < 4; f++) {
        size_t zlen = compress_as(formats[f], text, len, z, sizeof z);
        /* The checksum at the end (bzip2: a byte of its stream CRC) is wrong: corrupt, named. */
        size_t at = formats[f] == EF_FORMAT_BZIP2 ? zlen - 3 : zlen - 2;
        z[at] ^= 0x55;
        ptrdiff_t r = decode_all(d, formats[f], z, zlen, zlen, sizeof out, out, sizeof out);
        CHECK_EQ(t, r, EF_ECORRUPT);
        CHECK(t, ef_decoder_offset(d) <= zlen && ef_decoder_offset(d) > 0);
        CHECK(t, ef_decoder_message(d)[0] != '\0');
        /* After an error only a reset is accepted. */
        size_t used;
        CHECK_EQ(t, ef_decoder_decode(d, z, zlen, &used, out, sizeof out), EF_EINVAL);
        CHECK_EQ(t, ef_decoder_finish(d), EF_EINVAL);
        z[at] ^= 0x55;
        /* Every single-byte flip past the magic: never the original text with success. */
        int silent = 0;
        for (size_t i = 4; i < zlen; i += 1 + zlen / 200) {
            z[i] ^= 0xff;
            r = decode_all(d, formats[f], z, zlen, 1000, sizeof out, out, sizeof out);
            if (r >= 0 && ((size_t)r != len || memcmp(out, text, len) != 0)) silent++;
            z[i] ^= 0xff;
        }
        CHECK_EQ(t, silent, 0);
    }
    /* Garbage after a whole gzip member is not a member. */
    size_t zlen = compress_as(EF_FORMAT_GZIP, text, len, z, sizeof z);
    memcpy(z + zlen, "trailing", 8);
    CHECK_EQ(t, decode_all(d, EF_FORMAT_GZIP, z, zlen + 8, zlen + 8, sizeof out, out, sizeof out),
             EF_ECORRUPT);
    CHECK(t, ef_decoder_offset(d) >= zlen);
    ef_decoder_free(d);
}

/* A bomb comes out a buffer at a time: memory is the caller's buffer, whatever the ratio. */
static void test_decode_bomb_bounded(ef_t *t) {
    size_t big = 32 << 20, zcap = LZ4F_compressFrameBound(big, NULL) + 4096;
    uint8_t *zeros = calloc(1, big), *z = malloc(zcap), out[4096];
    ef_decoder *d = ef_decoder_create();
    for (size_t f = 0; f < 4; f++) {
        size_t zlen = compress_as(formats[f], zeros, big, z, zcap);
        CHECK(t, zlen > 0 && zlen < (1 << 20));
        CHECK_EQ(t, ef_decoder_reset(d, formats[f]), EF_OK);
        size_t pos = 0, total = 0;
        int nonzero = 0;
        for (;;) {
            size_t used;
            ptrdiff_t n = ef_decoder_decode(d, z + pos, zlen - pos, &used, out, sizeof out);
            CHECK(t, n >= 0 && n <= (ptrdiff_t)sizeof out);
            if (n < 0) break;
            for (ptrdiff_t i = 0; i < n; i++) nonzero |= out[i];
            pos += used;
            total += (size_t)n;
            if (n == 0 && used == 0) break;
        }
        CHECK_EQ(t, total, big);
        CHECK_EQ(t, nonzero, 0);
        CHECK_EQ(t, ef_decoder_finish(d), EF_OK);
    }
    ef_decoder_free(d);
    free(zeros);
    free(z);
}

static void test_decode_bad_calls(ef_t *t) {
    ef_decoder *d = ef_decoder_create();
    size_t used;
    uint8_t b[4];
    CHECK_EQ(t, ef_decoder_decode(d, b, 4, &used, b, 4), EF_EINVAL); /* no reset */
    CHECK_EQ(t, ef_decoder_reset(d, EF_FORMAT_PLAIN), EF_EINVAL);
    CHECK_EQ(t, ef_decoder_reset(d, 42), EF_EINVAL);
    CHECK_EQ(t, ef_decoder_reset(NULL, EF_FORMAT_GZIP), EF_EINVAL);
    CHECK_EQ(t, ef_decoder_reset(d, EF_FORMAT_ZSTD), EF_OK);
    CHECK_EQ(t, ef_decoder_decode(d, b, 4, NULL, b, 4), EF_EINVAL);
    CHECK_EQ(t, ef_decoder_finish(d), EF_OK); /* nothing fed: an empty input */
    ef_decoder_free(d);
    ef_decoder_free(NULL);
}

void suite_decode(ef_t *t) {
    RUN(t, test_decode_detect);
    RUN(t, test_decode_roundtrip);
    RUN(t, test_decode_concatenated);
    RUN(t, test_decode_truncated);
    RUN(t, test_decode_corrupt);
    RUN(t, test_decode_bomb_bounded);
    RUN(t, test_decode_bad_calls);
}
