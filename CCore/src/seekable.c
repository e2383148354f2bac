/* zstd's seekable format (facebook/zstd contrib/seekable_format): independent zstd frames, then a
 * skippable frame (magic 0x184D2A5E) holding one entry per frame (compressed size, decompressed
 * size, optionally the low 32 bits of the XXH64 of the frame's content) and a 9-byte footer
 * (frame count, descriptor, magic 0x8F92EAB1).
 *
 * The table is checked as hostile input: it must describe frames that tile the file exactly up
 * to itself, so a frame run found from it is always inside the file, and every frame is checked
 * again when it is decompressed (one zstd frame of exactly its compressed size, decoding to
 * exactly its decompressed size, with the table's checksum). */
#include "internal.h"

#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define EF__ZSTD_FRAME_MAGIC 0xFD2FB528u
/* A zstd frame: 4-byte magic, at least a 1-byte descriptor and 1-byte window, a 3-byte block header. */
#define EF__ZSTD_FRAME_MIN 9u
#define EF__SKIPPABLE_HEADER 8u

struct ef_seekable {
    ZSTD_DCtx *dctx;
    ZSTD_CCtx *cctx;
    int cctx_level;
    uint64_t offset;
    const char *message;
};

EF_API ef_seekable *ef_seekable_create(void) {
    ef_seekable *s = calloc(1, sizeof(ef_seekable));
    if (s) s->message = "";
    return s;
}

EF_API void ef_seekable_free(ef_seekable *s) {
    if (!s) return;
    ZSTD_freeDCtx(s->dctx);
    ZSTD_freeCCtx(s->cctx);
    free(s);
}

EF_API int64_t ef_seekable_footer(const uint8_t *footer, size_t len, uint64_t file_size,
                                  uint32_t *frames, int *checksums) {
    if (!footer || !frames || !checksums || len != EF_SEEKABLE_FOOTER_SIZE) return EF_EINVAL;
    if (ef__load32(footer + 5) != EF_SEEKABLE_MAGIC) return EF_EBADMAGIC;
    uint32_t count = ef__load32(footer);
    uint8_t descriptor = footer[4];
    /* Bits 6..2 are reserved and must be zero; bits 1..0 are unused (ignored, as zstd does). */
    if (descriptor & 0x7c) return EF_EFORMAT;
    if (count > EF_SEEKABLE_MAX_FRAMES) return EF_EFORMAT;
    int with = (descriptor >> 7) & 1;
    /* At most 2^27 entries of 12 bytes: no overflow in 64 bits. */
    uint64_t size = EF__SKIPPABLE_HEADER + (uint64_t)count * (with ? 12u : 8u) + EF_SEEKABLE_FOOTER_SIZE;
    if (size > file_size || size - EF__SKIPPABLE_HEADER > UINT32_MAX) return EF_EFORMAT;
    *frames = count;
    *checksums = with;
    return (int64_t)size;
}

EF_API ptrdiff_t ef_seekable_parse(const uint8_t *src, size_t len, uint64_t file_size,
                                   ef_seek_frame *frames, size_t cap) {
    if (!src || len < EF__SKIPPABLE_HEADER + EF_SEEKABLE_FOOTER_SIZE || (!frames && cap))
        return EF_EINVAL;
    uint32_t count;
    int checksums;
    int64_t size = ef_seekable_footer(src + len - EF_SEEKABLE_FOOTER_SIZE,
                                      EF_SEEKABLE_FOOTER_SIZE, file_size, &count, &checksums);
    if (size < 0) return (ptrdiff_t)size;
    if ((uint64_t)size != len) return EF_EFORMAT;
    if (ef__load32(src) != EF_SEEKABLE_SKIPPABLE_MAGIC) return EF_EBADMAGIC;
    if (ef__load32(src + 4) != len - EF__SKIPPABLE_HEADER) return EF_EFORMAT;
    if (count > cap) return EF_ESPACE;
    const size_t entry = checksums ? 12 : 8;
    const uint64_t before_table = file_size - len;
    uint64_t c = 0, d = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = src + EF__SKIPPABLE_HEADER + (size_t)i * entry;
        uint32_t csize = ef__load32(e), dsize = ef__load32(e + 4);
        /* Every frame is a real zstd frame: a skippable or empty entry would let a table of
         * 2^27 entries describe a file of a few bytes. */
        if (csize < EF__ZSTD_FRAME_MIN || csize > before_table - c) return EF_EFORMAT;
        frames[i].compressed_offset = c;
        frames[i].decompressed_offset = d;
        frames[i].compressed_size = csize;
        frames[i].decompressed_size = dsize;
        frames[i].checksum = checksums ? ef__load32(e + 8) : 0;
        c += csize;
        d += dsize; /* < 2^27 * 2^32: never overflows */
    }
    /* The frames must tile the file up to the table: nothing hidden before it, nothing missing. */
    if (c != before_table) return EF_EFORMAT;
    return (ptrdiff_t)count;
}

static int corrupt(ef_seekable *s, uint64_t offset, const char *message) {
    s->offset = offset;
    s->message = message;
    return EF_ECORRUPT;
}

EF_API ptrdiff_t ef_seekable_decompress(ef_seekable *s, const ef_seek_frame *frames, size_t count,
                                        int checksums, const uint8_t *src, size_t src_len,
                                        uint8_t *dst, size_t dst_cap) {
    if (!s || (!frames && count) || (!src && src_len) || (!dst && dst_cap) ||
        dst_cap > PTRDIFF_MAX)
        return EF_EINVAL;
    s->message = "";
    s->offset = 0;
    if (count == 0) return 0;
    uint64_t c_total = 0, d_total = 0;
    for (size_t i = 0; i < count; i++) {
        /* The run must be consecutive frames, as ef_seekable_parse lays them out. */
        if (i > 0 && (frames[i].compressed_offset !=
                          frames[i - 1].compressed_offset + frames[i - 1].compressed_size ||
                      frames[i].decompressed_offset !=
                          frames[i - 1].decompressed_offset + frames[i - 1].decompressed_size))
            return EF_EINVAL;
        c_total += frames[i].compressed_size;
        d_total += frames[i].decompressed_size;
    }
    if (c_total != src_len) return EF_EINVAL;
    if (d_total > dst_cap) return EF_ESPACE;
    if (!s->dctx && !(s->dctx = ZSTD_createDCtx())) return EF_ENOMEM;
    size_t in = 0, out = 0;
    for (size_t i = 0; i < count; i++) {
        const ef_seek_frame *f = &frames[i];
        const uint8_t *frame = src + in;
        uint64_t at = f->compressed_offset;
        if (ef__load32(frame) != EF__ZSTD_FRAME_MAGIC)
            return corrupt(s, at, "the seek table points at something other than a zstd frame");
        /* ZSTD_decompressDCtx would go on into a following frame: exactly one is allowed. */
        size_t found = ZSTD_findFrameCompressedSize(frame, f->compressed_size);
        if (ZSTD_isError(found) || found != f->compressed_size)
            return corrupt(s, at, "the frame's size differs from its seek table entry");
        unsigned long long declared = ZSTD_getFrameContentSize(frame, f->compressed_size);
        if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != f->decompressed_size)
            return corrupt(s, at, "the frame's content size differs from its seek table entry");
        size_t r = ZSTD_decompressDCtx(s->dctx, dst ? dst + out : dst, f->decompressed_size, frame,
                                       f->compressed_size);
        if (ZSTD_isError(r)) {
            if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
                return corrupt(s, at, "the frame decompresses to more than its seek table entry says");
            return corrupt(s, at, ZSTD_getErrorName(r));
        }
        if (r != f->decompressed_size)
            return corrupt(s, at, "the frame decompresses to less than its seek table entry says");
        if (checksums) {
            /* Frame header descriptor bit 2: the frame ends with the low 32 bits of its content's
             * XXH64, which libzstd has just verified; otherwise hash the content here. */
            int has_own = (frame[4] >> 2) & 1;
            uint32_t sum = has_own ? ef__load32(frame + f->compressed_size - 4)
                                   : (uint32_t)ef__xxh64(dst + out, r, 0);
            if (sum != f->checksum)
                return corrupt(s, at, "the frame's checksum differs from its seek table entry");
        }
        in += f->compressed_size;
        out += r;
    }
    return (ptrdiff_t)out;
}

EF_API size_t ef_seekable_frame_bound(size_t src_len) {
    size_t b = ZSTD_compressBound(src_len);
    return ZSTD_isError(b) ? 0 : b;
}

EF_API ptrdiff_t ef_seekable_compress(ef_seekable *s, int level, const uint8_t *src, size_t len,
                                      uint8_t *dst, size_t cap, ef_seek_frame *frame) {
    if (!s || !frame || (!src && len) || !dst || len > UINT32_MAX || cap > PTRDIFF_MAX)
        return EF_EINVAL;
    if (level == 0) level = EF_ZSTD_LEVEL_DEFAULT;
    if (level < EF_ZSTD_LEVEL_MIN || level > EF_ZSTD_LEVEL_MAX) return EF_EINVAL;
    if (!s->cctx && !(s->cctx = ZSTD_createCCtx())) return EF_ENOMEM;
    if (s->cctx_level != level) {
        if (ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 1)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_contentSizeFlag, 1)))
            return EF_ENOMEM;
        s->cctx_level = level;
    }
    size_t r = ZSTD_compress2(s->cctx, dst, cap, src, len);
    if (ZSTD_isError(r))
        return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? EF_ESPACE : EF_ENOMEM;
    if (r > UINT32_MAX) return EF_ETOOBIG;
    frame->compressed_size = (uint32_t)r;
    frame->decompressed_size = (uint32_t)len;
    /* With the checksum flag the frame's last 4 bytes are its content's XXH64, low 32 bits: the
     * seek table's checksum by definition. */
    frame->checksum = ef__load32(dst + r - 4);
    return (ptrdiff_t)r;
}

EF_API size_t ef_seekable_table_size(size_t frames) {
    if (frames > EF_SEEKABLE_MAX_FRAMES) return 0;
    return EF__SKIPPABLE_HEADER + frames * 12 + EF_SEEKABLE_FOOTER_SIZE;
}

EF_API ptrdiff_t ef_seekable_table_write(const ef_seek_frame *frames, size_t count, uint8_t *dst,
                                         size_t cap) {
    if ((!frames && count) || !dst || count > EF_SEEKABLE_MAX_FRAMES) return EF_EINVAL;
    size_t size = ef_seekable_table_size(count);
    if (cap < size) return EF_ESPACE;
    ef__store32(dst, EF_SEEKABLE_SKIPPABLE_MAGIC);
    ef__store32(dst + 4, (uint32_t)(size - EF__SKIPPABLE_HEADER));
    uint8_t *e = dst + EF__SKIPPABLE_HEADER;
    for (size_t i = 0; i < count; i++, e += 12) {
        ef__store32(e, frames[i].compressed_size);
        ef__store32(e + 4, frames[i].decompressed_size);
        ef__store32(e + 8, frames[i].checksum);
    }
    ef__store32(e, (uint32_t)count);
    e[4] = 0x80; /* checksums present */
    ef__store32(e + 5, EF_SEEKABLE_MAGIC);
    return (ptrdiff_t)size;
}

EF_API uint64_t ef_seekable_offset(const ef_seekable *s) { return s ? s->offset : 0; }

EF_API const char *ef_seekable_message(const ef_seekable *s) {
    return s && s->message ? s->message : "";
}

/* XXH64 (Yann Collet's xxHash, 64-bit variant), written from its specification: the seekable
 * format's checksum for frames that do not carry their own. */
#define EF__P1 0x9E3779B185EBCA87ull
#define EF__P2 0xC2B2AE3D27D4EB4Full
#define EF__P3 0x165667B19E3779F9ull
#define EF__P4 0x85EBCA77C2B2AE63ull
#define EF__P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xxh_round(uint64_t acc, uint64_t lane) {
    acc += lane * EF__P2;
    return rotl64(acc, 31) * EF__P1;
}
static inline uint64_t xxh_merge(uint64_t acc, uint64_t v) {
    acc ^= xxh_round(0, v);
    return acc * EF__P1 + EF__P4;
}

uint64_t ef__xxh64(const void *data, size_t len, uint64_t seed) {
    const uint8_t *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + EF__P1 + EF__P2, v2 = seed + EF__P2, v3 = seed, v4 = seed - EF__P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = xxh_round(v1, ef__load64(p));
            v2 = xxh_round(v2, ef__load64(p + 8));
            v3 = xxh_round(v3, ef__load64(p + 16));
            v4 = xxh_round(v4, ef__load64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + EF__P5;
    }
    h += (uint64_t)len;
    while (p + 8 <= end) {
        h ^= xxh_round(0, ef__load64(p));
        h = rotl64(h, 27) * EF__P1 + EF__P4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)ef__load32(p) * EF__P1;
        h = rotl64(h, 23) * EF__P2 + EF__P3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p++) * EF__P5;
        h = rotl64(h, 11) * EF__P1;
    }
    h ^= h >> 33;
    h *= EF__P2;
    h ^= h >> 29;
    h *= EF__P3;
    h ^= h >> 32;
    return h;
}
