/* ef_seekable: XXH64 against zstd's own frame checksums, round trips through the seek table (and
 * through ef_decoder, which reads the same file as plain zstd), and hostile tables: sizes that
 * overflow, tables that lie about sizes or checksums, corrupt frames, every truncation, every
 * byte of a table flipped. */
#include "ef_test.h"

#include "elasticflow.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define TEXT_LEN (100000)

static size_t text_of(uint8_t *buf, size_t cap, uint64_t seed) {
    static const char *words[] = {"the", "and", "of", "to", "Lord", "unto", "shall", "thou"};
    size_t n = 0;
    while (n + 8 < cap) {
        const char *w = words[ef_test_rand(&seed) % 8];
        memcpy(buf + n, w, strlen(w));
        n += strlen(w);
        buf[n++] = ef_test_rand(&seed) % 7 == 0 ? '\n' : ' ';
    }
    return n;
}

/* A seekable file of text cut into frames of frame_size bytes: returns its size, fills frames. */
typedef struct file {
    uint8_t *bytes;
    size_t len;
    ef_seek_frame frames[4096];
    size_t count;
    size_t table; /* bytes of the seek table at the end */
} file;

static int make_file(ef_seekable *s, const uint8_t *text, size_t len, size_t frame_size, file *f) {
    size_t cap = ef_seekable_frame_bound(frame_size) * (len / frame_size + 1) + 65536;
    f->bytes = malloc(cap);
    f->len = 0;
    f->count = 0;
    uint64_t d = 0;
    for (size_t at = 0; at < len; at += frame_size) {
        size_t n = len - at < frame_size ? len - at : frame_size;
        ef_seek_frame *fr = &f->frames[f->count++];
        ptrdiff_t r = ef_seekable_compress(s, 3, text + at, n, f->bytes + f->len, cap - f->len, fr);
        if (r <= 0) return -1;
        fr->compressed_offset = f->len;
        fr->decompressed_offset = d;
        f->len += (size_t)r;
        d += n;
    }
    ptrdiff_t t = ef_seekable_table_write(f->frames, f->count, f->bytes + f->len, cap - f->len);
    if (t <= 0) return -1;
    f->table = (size_t)t;
    f->len += (size_t)t;
    return 0;
}

/* Parse the file's table the way a reader does: footer first, then the table. */
static ptrdiff_t parse(const uint8_t *bytes, size_t len, ef_seek_frame *out, size_t cap, int *sums) {
    if (len < EF_SEEKABLE_FOOTER_SIZE) return EF_EBADMAGIC;
    uint32_t frames;
    int64_t size = ef_seekable_footer(bytes + len - EF_SEEKABLE_FOOTER_SIZE,
                                      EF_SEEKABLE_FOOTER_SIZE, len, &frames, sums);
    if (size < 0) return (ptrdiff_t)size;
    return ef_seekable_parse(bytes + len - (size_t)size, (size_t)size, len, out, cap);
}

static void test_xxh64(ef_t *t) {
    CHECK(t, ef__xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    /* zstd's frame checksum is the low 32 bits of XXH64(content): every tail length. */
    uint8_t text[300], frame[1024];
    uint64_t seed = 5;
    for (size_t i = 0; i < sizeof text; i++) text[i] = (uint8_t)ef_test_rand(&seed);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    for (size_t len = 0; len < sizeof text; len += (len < 80 ? 1 : 37)) {
        size_t r = ZSTD_compress2(c, frame, sizeof frame, text, len);
        CHECK(t, !ZSTD_isError(r));
        CHECK_EQ(t, (uint32_t)ef__xxh64(text, len, 0), ef__load32(frame + r - 4));
    }
    ZSTD_freeCCtx(c);
}

static void test_round_trip(ef_t *t) {
    uint8_t *text = malloc(TEXT_LEN), *out = malloc(TEXT_LEN);
    size_t len = text_of(text, TEXT_LEN, 1);
    ef_seekable *s = ef_seekable_create();
    ef_decoder *d = ef_decoder_create();
    /* Frame size and text length: 1-byte frames, odd sizes, one frame for the whole text. */
    static const size_t cases[][2] = {{1, 997}, {7, 20000}, {4096, 0}, {10007, 0}, {1 << 20, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        size_t n = cases[k][1] ? cases[k][1] : len;
        file f;
        CHECK_EQ(t, make_file(s, text, n, cases[k][0], &f), 0);
        static ef_seek_frame parsed[4096];
        int sums = 0;
        ptrdiff_t count = parse(f.bytes, f.len, parsed, 4096, &sums);
        CHECK_EQ(t, count, (ptrdiff_t)f.count);
        CHECK_EQ(t, sums, 1);
        if (count < 0) {
            free(f.bytes);
            continue;
        }
        for (size_t i = 0; i < f.count; i++) {
            CHECK(t, parsed[i].compressed_offset == f.frames[i].compressed_offset &&
                         parsed[i].decompressed_offset == f.frames[i].decompressed_offset &&
                         parsed[i].compressed_size == f.frames[i].compressed_size &&
                         parsed[i].decompressed_size == f.frames[i].decompressed_size &&
                         parsed[i].checksum == f.frames[i].checksum);
        }
        /* Each frame on its own, then every run starting at each of a few frames. */
        for (size_t i = 0; i < (size_t)count; i += 1 + (size_t)count / 50) {
            for (size_t run = 1; i + run <= (size_t)count && run <= 5; run++) {
                size_t clen = 0, dlen = 0;
                for (size_t j = i; j < i + run; j++) {
                    clen += parsed[j].compressed_size;
                    dlen += parsed[j].decompressed_size;
                }
                ptrdiff_t r = ef_seekable_decompress(s, parsed + i, run, 1,
                                                     f.bytes + parsed[i].compressed_offset, clen,
                                                     out, TEXT_LEN);
                CHECK_EQ(t, r, (ptrdiff_t)dlen);
                CHECK(t, r < 0 || memcmp(out, text + parsed[i].decompressed_offset, dlen) == 0);
                /* One byte short of room: refused, nothing assumed. */
                CHECK_EQ(t, ef_seekable_decompress(s, parsed + i, run, 1,
                                                   f.bytes + parsed[i].compressed_offset, clen,
                                                   out, dlen - 1),
                         EF_ESPACE);
            }
        }
        /* The same file is plain zstd to a streaming decoder: the table is skipped. */
        CHECK_EQ(t, ef_decoder_reset(d, EF_FORMAT_ZSTD), EF_OK);
        size_t used = 0;
        ptrdiff_t got = ef_decoder_decode(d, f.bytes, f.len, &used, out, TEXT_LEN);
        CHECK_EQ(t, got, (ptrdiff_t)n);
        CHECK_EQ(t, ef_decoder_finish(d), EF_OK);
        CHECK(t, got < 0 || memcmp(out, text, n) == 0);
        free(f.bytes);
    }
    ef_decoder_free(d);
    ef_seekable_free(s);
    free(text);
    free(out);
}

static void test_hostile_footer(ef_t *t) {
    uint8_t foot[EF_SEEKABLE_FOOTER_SIZE] = {0};
    uint32_t frames = 0;
    int sums = 0;
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, 100, &frames, &sums), EF_EBADMAGIC);
    ef__store32(foot + 5, EF_SEEKABLE_MAGIC);
    ef__store32(foot, 3);
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, 100, &frames, &sums), 8 + 24 + 9);
    CHECK_EQ(t, frames, 3);
    foot[4] = 0x80;
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, 100, &frames, &sums), 8 + 36 + 9);
    CHECK_EQ(t, sums, 1);
    foot[4] = 0x83; /* unused bits are ignored */
    CHECK(t, ef_seekable_footer(foot, sizeof foot, 100, &frames, &sums) > 0);
    foot[4] = 0x04; /* reserved */
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, 100, &frames, &sums), EF_EFORMAT);
    foot[4] = 0x80;
    /* A table larger than the file, and frame counts that would overflow a 32-bit size. */
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, 52, &frames, &sums), EF_EFORMAT);
    ef__store32(foot, 0xFFFFFFFFu);
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, UINT64_MAX, &frames, &sums), EF_EFORMAT);
    ef__store32(foot, EF_SEEKABLE_MAX_FRAMES + 1);
    CHECK_EQ(t, ef_seekable_footer(foot, sizeof foot, UINT64_MAX, &frames, &sums), EF_EFORMAT);
    ef__store32(foot, EF_SEEKABLE_MAX_FRAMES);
    CHECK(t, ef_seekable_footer(foot, sizeof foot, UINT64_MAX, &frames, &sums) > 0);
    CHECK_EQ(t, ef_seekable_footer(foot, 8, 100, &frames, &sums), EF_EINVAL);
    CHECK_EQ(t, ef_seekable_footer(NULL, 9, 100, &frames, &sums), EF_EINVAL);
}

/* Rewrite entry i of f's table (sizes only) and parse again. */
static ptrdiff_t with_entry(file *f, size_t i, uint32_t csize, uint32_t dsize, ef_seek_frame *out) {
    uint8_t *e = f->bytes + f->len - f->table + 8 + i * 12;
    ef__store32(e, csize);
    ef__store32(e + 4, dsize);
    int sums;
    return parse(f->bytes, f->len, out, 4096, &sums);
}

static void test_lying_tables(ef_t *t) {
    uint8_t *text = malloc(TEXT_LEN), *out = malloc(TEXT_LEN);
    size_t len = text_of(text, TEXT_LEN, 2);
    ef_seekable *s = ef_seekable_create();
    file f;
    CHECK_EQ(t, make_file(s, text, len, 10000, &f), 0);
    static ef_seek_frame p[4096];
    uint32_t c0 = f.frames[0].compressed_size, d0 = f.frames[0].decompressed_size;
    uint32_t c1 = f.frames[1].compressed_size, d1 = f.frames[1].decompressed_size;
    /* Sizes that overflow or do not tile the file. */
    CHECK_EQ(t, with_entry(&f, 0, 0xFFFFFFFFu, d0, p), EF_EFORMAT);
    CHECK_EQ(t, with_entry(&f, 0, c0 + 1, d0, p), EF_EFORMAT);
    CHECK_EQ(t, with_entry(&f, 0, c0 - 1, d0, p), EF_EFORMAT);
    CHECK_EQ(t, with_entry(&f, 0, 0, d0, p), EF_EFORMAT);
    /* Sizes moved between two frames: the tiling holds, the frames do not. */
    uint8_t *e1 = f.bytes + f.len - f.table + 8 + 12;
    ef__store32(e1, c1 - 1);
    CHECK(t, with_entry(&f, 0, c0 + 1, d0, p) > 0);
    CHECK_EQ(t, ef_seekable_decompress(s, p, 1, 1, f.bytes, c0 + 1, out, TEXT_LEN), EF_ECORRUPT);
    CHECK_EQ(t, ef_seekable_offset(s), 0);
    CHECK_EQ(t, ef_seekable_decompress(s, p + 1, 1, 1, f.bytes + c0 + 1, c1 - 1, out, TEXT_LEN),
             EF_ECORRUPT);
    CHECK_EQ(t, ef_seekable_offset(s), c0 + 1);
    ef__store32(e1, c1);
    /* One entry covering two frames. */
    ef_seek_frame two = {0, 0, c0 + c1, d0 + d1, 0};
    CHECK_EQ(t, ef_seekable_decompress(s, &two, 1, 0, f.bytes, c0 + c1, out, TEXT_LEN), EF_ECORRUPT);
    CHECK(t, strstr(ef_seekable_message(s), "size differs") != NULL);
    /* Decompressed sizes that lie (the tiling of compressed sizes holds). */
    CHECK(t, with_entry(&f, 0, c0, d0 - 1, p) > 0);
    CHECK_EQ(t, ef_seekable_decompress(s, p, 1, 1, f.bytes, c0, out, TEXT_LEN), EF_ECORRUPT);
    CHECK(t, strstr(ef_seekable_message(s), "content size") != NULL);
    CHECK(t, with_entry(&f, 0, c0, 0xFFFFFFFFu, p) > 0);
    CHECK_EQ(t, ef_seekable_decompress(s, p, 1, 1, f.bytes, c0, out, TEXT_LEN), EF_ESPACE);
    CHECK(t, with_entry(&f, 0, c0, d0, p) > 0);
    /* A checksum that lies. */
    uint8_t *sum0 = f.bytes + f.len - f.table + 8 + 8;
    sum0[0] ^= 1;
    CHECK(t, with_entry(&f, 0, c0, d0, p) > 0);
    CHECK_EQ(t, ef_seekable_decompress(s, p, 2, 1, f.bytes, c0 + c1, out, TEXT_LEN), EF_ECORRUPT);
    CHECK(t, strstr(ef_seekable_message(s), "checksum") != NULL);
    CHECK_EQ(t, ef_seekable_decompress(s, p, 2, 0, f.bytes, c0 + c1, out, TEXT_LEN),
             (ptrdiff_t)(d0 + d1));
    sum0[0] ^= 1;
    /* A corrupt frame: the second of a run, named by its offset. */
    f.bytes[c0 + c1 / 2] ^= 0x55;
    CHECK(t, with_entry(&f, 0, c0, d0, p) > 0);
    CHECK_EQ(t, ef_seekable_decompress(s, p, 3, 1, f.bytes, c0 + c1 + p[2].compressed_size, out,
                                       TEXT_LEN),
             EF_ECORRUPT);
    CHECK_EQ(t, ef_seekable_offset(s), c0);
    f.bytes[c0 + c1 / 2] ^= 0x55;
    /* A run that is not consecutive, or whose bytes are not its frames': a caller's mistake. */
    CHECK_EQ(t, ef_seekable_decompress(s, p, 2, 1, f.bytes, c0, out, TEXT_LEN), EF_EINVAL);
    ef_seek_frame gap[2] = {p[0], p[2]};
    CHECK_EQ(t, ef_seekable_decompress(s, gap, 2, 1, f.bytes, c0 + p[2].compressed_size, out,
                                       TEXT_LEN),
             EF_EINVAL);
    /* A table that is not where the footer says, or has the wrong skippable magic or size. */
    uint8_t *head = f.bytes + f.len - f.table;
    head[0] ^= 1;
    int sums;
    CHECK_EQ(t, parse(f.bytes, f.len, p, 4096, &sums), EF_EBADMAGIC);
    head[0] ^= 1;
    head[4] ^= 1;
    CHECK_EQ(t, parse(f.bytes, f.len, p, 4096, &sums), EF_EFORMAT);
    head[4] ^= 1;
    CHECK_EQ(t, parse(f.bytes, f.len, p, 2, &sums), EF_ESPACE);
    CHECK_EQ(t, parse(f.bytes, f.len, p, 4096, &sums), (ptrdiff_t)f.count);
    free(f.bytes);
    ef_seekable_free(s);
    free(text);
    free(out);
}

/* A frame with no checksum of its own: the table's is checked against XXH64 computed here. */
static void test_checksum_without_frame_checksum(ef_t *t) {
    uint8_t text[5000], out[5000], bytes[8192];
    size_t len = text_of(text, sizeof text, 3);
    size_t r = ZSTD_compress(bytes, sizeof bytes, text, len, 3); /* no checksum flag */
    CHECK(t, !ZSTD_isError(r));
    ef_seek_frame fr = {0, 0, (uint32_t)r, (uint32_t)len, (uint32_t)ef__xxh64(text, len, 0)};
    ptrdiff_t tl = ef_seekable_table_write(&fr, 1, bytes + r, sizeof bytes - r);
    CHECK(t, tl > 0);
    ef_seek_frame p[1];
    int sums;
    CHECK_EQ(t, parse(bytes, r + (size_t)tl, p, 1, &sums), 1);
    ef_seekable *s = ef_seekable_create();
    CHECK_EQ(t, ef_seekable_decompress(s, p, 1, 1, bytes, r, out, sizeof out), (ptrdiff_t)len);
    p[0].checksum ^= 0x10000;
    CHECK_EQ(t, ef_seekable_decompress(s, p, 1, 1, bytes, r, out, sizeof out), EF_ECORRUPT);
    ef_seekable_free(s);
}

/* Every truncation of a file, and every byte of its table flipped: an error or a table whose
 * frames still decode exactly or fail cleanly, never a crash or a read out of bounds. */
static void test_truncated_and_flipped(ef_t *t) {
    uint8_t text[3000], out[3000];
    size_t len = text_of(text, sizeof text, 4);
    ef_seekable *s = ef_seekable_create();
    file f;
    CHECK_EQ(t, make_file(s, text, len, 500, &f), 0);
    static ef_seek_frame p[4096];
    int sums;
    for (size_t cut = 0; cut < f.len; cut++) {
        /* Exact copies, so ASan sees any read past the end. */
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, f.bytes, cut);
        CHECK(t, parse(copy, cut, p, 4096, &sums) < 0);
        free(copy);
    }
    size_t table_at = f.len - f.table;
    for (size_t i = table_at; i < f.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            f.bytes[i] ^= (uint8_t)(1u << bit);
            ptrdiff_t n = parse(f.bytes, f.len, p, 4096, &sums);
            for (ptrdiff_t k = 0; k < n; k++) {
                ptrdiff_t r = ef_seekable_decompress(s, p + k, 1, sums,
                                                     f.bytes + p[k].compressed_offset,
                                                     p[k].compressed_size, out, sizeof out);
                CHECK(t, r == EF_ECORRUPT || r == EF_ESPACE ||
                             (r == (ptrdiff_t)p[k].decompressed_size &&
                              f.frames[k].decompressed_size == (size_t)r &&
                              memcmp(out, text + f.frames[k].decompressed_offset, (size_t)r) == 0));
            }
            f.bytes[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(f.bytes);
    ef_seekable_free(s);
}

void suite_seekable(ef_t *t) {
    RUN(t, test_xxh64);
    RUN(t, test_round_trip);
    RUN(t, test_hostile_footer);
    RUN(t, test_lying_tables);
    RUN(t, test_checksum_without_frame_checksum);
    RUN(t, test_truncated_and_flipped);
}
