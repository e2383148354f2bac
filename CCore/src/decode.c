/* Streaming decoders for compressed input files: gzip (zlib), zstd, lz4 frames, bzip2.
 *
 * One handle decodes one input at a time. Every backend runs the same loop: give the library
 * what input and room there is, keep going while either moves, and track two things the caller
 * needs: whether the input stands inside a member/frame (so the end of the input can be told
 * from a truncation) and how many compressed bytes were consumed (the offset an error names). */
#include "internal.h"

#define ZLIB_CONST
#include <bzlib.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

/* zstd's own default; set explicitly because it is what bounds a hostile file's window. */
#define EF__ZSTD_WINDOW_LOG_MAX 27
/* Input handed to a library per call: an error's offset is known to within this many bytes
 * (zstd and lz4 do not say how far into the input they were), at no measurable cost. */
#define EF__DECODE_SLICE (64u << 10)

struct ef_decoder {
    int format;     /* EF_FORMAT_*; EF_FORMAT_PLAIN before the first reset */
    int failed;     /* an error was returned: only a reset is accepted */
    int in_member;  /* bytes of a member/frame were consumed and it has not ended */
    int member_end; /* gzip/bzip2: a member ended; more input starts a new one */
    uint64_t offset;
    const char *message;
    ZSTD_DStream *zstd;
    LZ4F_dctx *lz4;
    z_stream gzip;
    int gzip_ready;
    bz_stream bzip2;
    int bzip2_ready;
};

EF_API int ef_format_detect(const uint8_t *src, size_t len, int at_end) {
    static const uint8_t gzip[] = {0x1f, 0x8b};
    static const uint8_t zstd[] = {0x28, 0xb5, 0x2f, 0xfd};
    static const uint8_t lz4[] = {0x04, 0x22, 0x4d, 0x18};
    static const uint8_t bzip2[] = {'B', 'Z', 'h'};
    if (!src && len) return EF_EINVAL;
    if (len >= 2 && memcmp(src, gzip, 2) == 0) return EF_FORMAT_GZIP;
    if (len >= 4 && memcmp(src, zstd, 4) == 0) return EF_FORMAT_ZSTD;
    /* A skippable frame (0x184D2A50..5F) is zstd's and lz4's: zstd tools (pzstd, the seekable
     * format) start files with one, and libzstd skips them, so it is read as zstd. */
    if (len >= 4 && (src[0] & 0xf0) == 0x50 && src[1] == 0x2a && src[2] == 0x4d && src[3] == 0x18)
        return EF_FORMAT_ZSTD;
    if (len >= 4 && memcmp(src, lz4, 4) == 0) return EF_FORMAT_LZ4;
    if (len >= 4 && memcmp(src, bzip2, 3) == 0 && src[3] >= '1' && src[3] <= '9')
        return EF_FORMAT_BZIP2;
    if (len == 0) return at_end ? EF_FORMAT_PLAIN : EF_ENEEDMORE;
    if (len < EF_FORMAT_MAGIC_SIZE && !at_end) {
        /* Could these few bytes still become a magic number? */
        const uint8_t *magics[] = {gzip, zstd, lz4, bzip2};
        const size_t sizes[] = {2, 4, 4, 3};
        for (size_t m = 0; m < 4; m++) {
            size_t n = len < sizes[m] ? len : sizes[m];
            if (memcmp(src, magics[m], n) == 0) return EF_ENEEDMORE;
        }
        if ((src[0] & 0xf0) == 0x50 && (len < 2 || src[1] == 0x2a) && (len < 3 || src[2] == 0x4d))
            return EF_ENEEDMORE;
    }
    return EF_FORMAT_PLAIN;
}

EF_API const char *ef_format_name(int format) {
    switch (format) {
    case EF_FORMAT_PLAIN: return "plain";
    case EF_FORMAT_GZIP: return "gzip";
    case EF_FORMAT_ZSTD: return "zstd";
    case EF_FORMAT_LZ4: return "lz4";
    case EF_FORMAT_BZIP2: return "bzip2";
    default: return NULL;
    }
}

EF_API ef_decoder *ef_decoder_create(void) { return calloc(1, sizeof(ef_decoder)); }

EF_API void ef_decoder_free(ef_decoder *d) {
    if (!d) return;
    ZSTD_freeDStream(d->zstd);
    LZ4F_freeDecompressionContext(d->lz4);
    if (d->gzip_ready) inflateEnd(&d->gzip);
    if (d->bzip2_ready) BZ2_bzDecompressEnd(&d->bzip2);
    free(d);
}

/* bzip2 has no reset: each stream (a concatenated file has several) is set up anew. */
static int bzip2_begin(ef_decoder *d) {
    if (d->bzip2_ready) BZ2_bzDecompressEnd(&d->bzip2);
    memset(&d->bzip2, 0, sizeof d->bzip2);
    d->bzip2_ready = BZ2_bzDecompressInit(&d->bzip2, 0, 0) == BZ_OK;
    return d->bzip2_ready ? EF_OK : EF_ENOMEM;
}

EF_API int ef_decoder_reset(ef_decoder *d, int format) {
    if (!d) return EF_EINVAL;
    d->failed = 0;
    d->in_member = 0;
    d->member_end = 0;
    d->offset = 0;
    d->message = "";
    d->format = EF_FORMAT_PLAIN;
    switch (format) {
    case EF_FORMAT_ZSTD:
        if (!d->zstd && !(d->zstd = ZSTD_createDStream())) return EF_ENOMEM;
        if (ZSTD_isError(ZSTD_DCtx_reset(d->zstd, ZSTD_reset_session_only)) ||
            ZSTD_isError(
                ZSTD_DCtx_setParameter(d->zstd, ZSTD_d_windowLogMax, EF__ZSTD_WINDOW_LOG_MAX)))
            return EF_ENOMEM;
        break;
    case EF_FORMAT_LZ4:
        if (!d->lz4 && LZ4F_isError(LZ4F_createDecompressionContext(&d->lz4, LZ4F_VERSION))) {
            d->lz4 = NULL;
            return EF_ENOMEM;
        }
        LZ4F_resetDecompressionContext(d->lz4);
        break;
    case EF_FORMAT_GZIP:
        if (!d->gzip_ready) {
            memset(&d->gzip, 0, sizeof d->gzip);
            if (inflateInit2(&d->gzip, 16 + MAX_WBITS) != Z_OK) return EF_ENOMEM;
            d->gzip_ready = 1;
        } else if (inflateReset(&d->gzip) != Z_OK) {
            return EF_ENOMEM;
        }
        break;
    case EF_FORMAT_BZIP2:
        if (bzip2_begin(d) != EF_OK) return EF_ENOMEM;
        break;
    default: return EF_EINVAL;
    }
    d->format = format;
    return EF_OK;
}

static const char *bzip2_reason(int code) {
    switch (code) {
    case BZ_DATA_ERROR_MAGIC: return "bad stream magic";
    case BZ_DATA_ERROR: return "data integrity error (block CRC or structure)";
    case BZ_MEM_ERROR: return "out of memory";
    default: return "bzip2 error";
    }
}

/* One library call per backend. Sets *used and *made; returns EF_OK or EF_ECORRUPT with d->message.
 * Updates in_member when there was progress (a call with nothing to do proves nothing). */
static int decode_step(ef_decoder *d, const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
                       size_t *used, size_t *made) {
    *used = 0;
    *made = 0;
    switch (d->format) {
    case EF_FORMAT_ZSTD: {
        ZSTD_inBuffer in = {src, len, 0};
        ZSTD_outBuffer out = {dst, cap, 0};
        size_t r = ZSTD_decompressStream(d->zstd, &out, &in);
        *used = in.pos;
        *made = out.pos;
        if (ZSTD_isError(r)) {
            d->message = ZSTD_getErrorName(r);
            return EF_ECORRUPT;
        }
        if (in.pos || out.pos) d->in_member = r != 0;
        return EF_OK;
    }
    case EF_FORMAT_LZ4: {
        size_t in_size = len, out_size = cap;
        size_t r = LZ4F_decompress(d->lz4, dst, &out_size, src, &in_size, NULL);
        *used = in_size;
        *made = out_size;
        if (LZ4F_isError(r)) {
            d->message = LZ4F_getErrorName(r);
            return EF_ECORRUPT;
        }
        if (in_size || out_size) d->in_member = r != 0;
        return EF_OK;
    }
    case EF_FORMAT_GZIP: {
        if (d->member_end) {
            if (!len) return EF_OK;
            inflateReset(&d->gzip); /* concatenated members: the next one starts here */
            d->member_end = 0;
        }
        /* avail_in/out are 32-bit: bigger spans are taken in pieces by the caller's loop. */
        d->gzip.next_in = src;
        d->gzip.avail_in = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
        d->gzip.next_out = dst;
        d->gzip.avail_out = cap > UINT32_MAX ? UINT32_MAX : (uInt)cap;
        int r = inflate(&d->gzip, Z_NO_FLUSH);
        *used = (size_t)(d->gzip.next_in - src);
        *made = (size_t)(d->gzip.next_out - dst);
        if (r == Z_STREAM_END) {
            d->in_member = 0;
            d->member_end = 1;
            return EF_OK;
        }
        if (r == Z_OK || (r == Z_BUF_ERROR && !*used && !*made)) {
            if (*used || *made) d->in_member = 1;
            return EF_OK;
        }
        d->message = d->gzip.msg ? d->gzip.msg : (r == Z_NEED_DICT ? "needs a dictionary" : zError(r));
        return EF_ECORRUPT;
    }
    case EF_FORMAT_BZIP2: {
        if (d->member_end) {
            if (!len) return EF_OK;
            if (bzip2_begin(d) != EF_OK) {
                d->message = "out of memory";
                return EF_ECORRUPT;
            }
            d->member_end = 0;
        }
        d->bzip2.next_in = (char *)(uintptr_t)src; /* bzlib's field is not const; it only reads */
        d->bzip2.avail_in = len > UINT32_MAX ? UINT32_MAX : (unsigned)len;
        d->bzip2.next_out = (char *)dst;
        d->bzip2.avail_out = cap > UINT32_MAX ? UINT32_MAX : (unsigned)cap;
        int r = BZ2_bzDecompress(&d->bzip2);
        *used = (size_t)((const uint8_t *)d->bzip2.next_in - src);
        *made = (size_t)((uint8_t *)d->bzip2.next_out - dst);
        if (r == BZ_STREAM_END) {
            d->in_member = 0;
            d->member_end = 1;
            return EF_OK;
        }
        if (r == BZ_OK) {
            if (*used || *made) d->in_member = 1;
            return EF_OK;
        }
        d->message = bzip2_reason(r);
        return EF_ECORRUPT;
    }
    default: return EF_EINVAL;
    }
}

EF_API ptrdiff_t ef_decoder_decode(ef_decoder *d, const uint8_t *src, size_t src_len,
                                   size_t *consumed, uint8_t *dst, size_t dst_cap) {
    if (consumed) *consumed = 0;
    if (!d || !consumed || d->failed || d->format == EF_FORMAT_PLAIN || (!src && src_len) ||
        (!dst && dst_cap) || dst_cap > PTRDIFF_MAX)
        return EF_EINVAL;
    size_t in = 0, out = 0;
    while (out < dst_cap) {
        size_t used, made;
        size_t give = src_len - in < EF__DECODE_SLICE ? src_len - in : EF__DECODE_SLICE;
        int rc = decode_step(d, src + in, give, dst + out, dst_cap - out, &used, &made);
        in += used;
        out += made;
        d->offset += used;
        if (rc != EF_OK) {
            /* zstd and lz4 leave the positions unset on an error: the damage is in this slice. */
            if (!used) d->offset += give;
            d->failed = 1;
            *consumed = in;
            return rc;
        }
        if (!used && !made) break; /* needs input (or, at a member's end, has none to go on) */
    }
    *consumed = in;
    return (ptrdiff_t)out;
}

EF_API int ef_decoder_finish(ef_decoder *d) {
    if (!d || d->failed || d->format == EF_FORMAT_PLAIN) return EF_EINVAL;
    return d->in_member ? EF_ENEEDMORE : EF_OK;
}

EF_API uint64_t ef_decoder_offset(const ef_decoder *d) { return d ? d->offset : 0; }

EF_API const char *ef_decoder_message(const ef_decoder *d) {
    return d && d->message ? d->message : "";
}
