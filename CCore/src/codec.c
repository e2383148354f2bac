/* Compressed parcel buffers: a 16-byte header (magic, codec, uncompressed size) and the codec's
 * data, for none, lz4 (block format) and zstd (one frame).
 *
 * The header records the uncompressed size so a receiver can refuse a decompression bomb, or size
 * its buffer, before decoding a single byte. Integrity is not this layer's job: lz4 blocks carry no
 * checksum and zstd frames are written without one, because every buffer travels inside a frame
 * whose CRC32C already covers it (src/frame.c). Corrupt data is still always caught when it would
 * make a decoder misbehave, and output never exceeds the recorded size. */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>

#include <lz4.h>
#include <zstd.h>
#include <zstd_errors.h>

struct ef_codec {
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    void *lz4_state; /* LZ4_sizeofState() bytes; malloc's alignment is what lz4 asks for */
};

/* The header as laid out on the wire, for the compiler to check; fields go through offsets. */
struct ef__codec_wire {
    uint32_t magic;
    uint8_t codec;
    uint8_t reserved8;
    uint16_t reserved16;
    uint64_t raw_len;
};

#define OFF(field) offsetof(struct ef__codec_wire, field)

_Static_assert(sizeof(struct ef__codec_wire) == EF_CODEC_HEADER_SIZE, "codec header is 16 bytes");
_Static_assert(OFF(codec) == 4 && OFF(reserved8) == 5 && OFF(reserved16) == 6 && OFF(raw_len) == 8,
               "codec header layout");
_Static_assert(EF_CODEC_MAGIC ==
                   ((uint32_t)'E' | (uint32_t)'F' << 8 | (uint32_t)'P' << 16 | (uint32_t)'B' << 24),
               "the magic reads \"EFPB\" on the wire");

/* Compressors are handed a real pointer even for empty input: NULL with a zero length is allowed
 * by our API, but not promised to work by every library version. */
static const uint8_t empty_input[1];

EF_API ef_codec *ef_codec_create(void) {
    ef_codec *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    /* All three are made here, once, so the compress and decompress calls never allocate on our
     * behalf (zstd still sizes its workspace on first use at a given level, then keeps it). */
    c->zc = ZSTD_createCCtx();
    c->zd = ZSTD_createDCtx();
    c->lz4_state = malloc((size_t)LZ4_sizeofState());
    if (c->zc == NULL || c->zd == NULL || c->lz4_state == NULL) {
        ef_codec_free(c);
        return NULL;
    }
    return c;
}

EF_API void ef_codec_free(ef_codec *codec) {
    if (codec == NULL)
        return;
    ZSTD_freeCCtx(codec->zc);
    ZSTD_freeDCtx(codec->zd);
    free(codec->lz4_state);
    free(codec);
}

EF_API const char *ef_codec_name(int codec) {
    switch (codec) {
    case EF_CODEC_NONE: return "none";
    case EF_CODEC_LZ4: return "lz4";
    case EF_CODEC_ZSTD: return "zstd";
    default: return NULL;
    }
}

/* Worst case of the codec's data alone; 0 = unknown codec or input too large for it. */
static size_t data_bound(int codec, size_t src_len) {
    switch (codec) {
    case EF_CODEC_NONE: return src_len;
    case EF_CODEC_LZ4:
        if (src_len > LZ4_MAX_INPUT_SIZE)
            return 0;
        return (size_t)LZ4_compressBound((int)src_len);
    case EF_CODEC_ZSTD: {
        size_t b = ZSTD_compressBound(src_len);
        return ZSTD_isError(b) ? 0 : b;
    }
    default: return 0;
    }
}

EF_API size_t ef_codec_bound(int codec, size_t src_len) {
    size_t b = data_bound(codec, src_len);
    if (b == 0 && !(codec == EF_CODEC_NONE && src_len == 0))
        return 0;
    /* Results must fit the ptrdiff_t that compress returns. */
    if (b > (size_t)PTRDIFF_MAX - EF_CODEC_HEADER_SIZE)
        return 0;
    return EF_CODEC_HEADER_SIZE + b;
}

static ptrdiff_t zstd_error(size_t r) {
    switch (ZSTD_getErrorCode(r)) {
    case ZSTD_error_dstSize_tooSmall: return EF_ESPACE;
    case ZSTD_error_memory_allocation: return EF_ENOMEM;
    default: return EF_EINVAL;
    }
}

EF_API ptrdiff_t ef_codec_compress(ef_codec *codec, int codec_id, int level, const uint8_t *src,
                                   size_t src_len, uint8_t *dst, size_t dst_cap) {
    if ((src == NULL && src_len > 0) || (dst == NULL && dst_cap > 0))
        return EF_EINVAL;
    if (ef_codec_name(codec_id) == NULL)
        return EF_ECODEC;
    if (codec_id != EF_CODEC_NONE && codec == NULL)
        return EF_EINVAL;
    /* For zstd, level is the compression level; for lz4, its acceleration (higher: faster, less
     * compression); codec none ignores it, so one setting can follow the choice of codec around. */
    if (codec_id == EF_CODEC_ZSTD && level != 0 &&
        (level < EF_ZSTD_LEVEL_MIN || level > EF_ZSTD_LEVEL_MAX))
        return EF_EINVAL;
    if (codec_id == EF_CODEC_LZ4 && (level < 0 || level > EF_LZ4_ACCELERATION_MAX))
        return EF_EINVAL;
    if (src == NULL)
        src = empty_input;
    if (dst_cap < EF_CODEC_HEADER_SIZE)
        return EF_ESPACE;
    /* Keeps every written size representable in the return type. */
    if (dst_cap > (size_t)PTRDIFF_MAX)
        dst_cap = (size_t)PTRDIFF_MAX;

    uint8_t *data = dst + EF_CODEC_HEADER_SIZE;
    size_t data_cap = dst_cap - EF_CODEC_HEADER_SIZE;
    size_t n;
    switch (codec_id) {
    case EF_CODEC_NONE:
        if (src_len > data_cap)
            return EF_ESPACE;
        if (src_len > 0)
            memcpy(data, src, src_len);
        n = src_len;
        break;
    case EF_CODEC_LZ4: {
        if (src_len > LZ4_MAX_INPUT_SIZE)
            return EF_EINVAL;
        if (data_cap == 0)
            return EF_ESPACE; /* lz4 needs at least one byte, even for empty input */
        int cap = data_cap > INT_MAX ? INT_MAX : (int)data_cap;
        int r = LZ4_compress_fast_extState(codec->lz4_state, (const char *)src, (char *)data,
                                           (int)src_len, cap,
                                           level == 0 ? EF_LZ4_ACCELERATION_DEFAULT : level);
        if (r <= 0)
            return EF_ESPACE; /* lz4's only failure for valid input: the output did not fit */
        n = (size_t)r;
        break;
    }
    default: { /* EF_CODEC_ZSTD */
        size_t r = ZSTD_compressCCtx(codec->zc, data, data_cap, src, src_len,
                                     level == 0 ? EF_ZSTD_LEVEL_DEFAULT : level);
        if (ZSTD_isError(r))
            return zstd_error(r);
        n = r;
        break;
    }
    }

    ef__store32(dst + OFF(magic), EF_CODEC_MAGIC);
    dst[OFF(codec)] = (uint8_t)codec_id;
    dst[OFF(reserved8)] = 0;
    memset(dst + OFF(reserved16), 0, 2);
    ef__store64(dst + OFF(raw_len), (uint64_t)src_len);
    return (ptrdiff_t)(EF_CODEC_HEADER_SIZE + n);
}

EF_API int ef_codec_peek(const uint8_t *src, size_t src_len, int *codec_id, uint64_t *raw_len) {
    if (src_len < EF_CODEC_HEADER_SIZE)
        return EF_ENEEDMORE;
    if (src == NULL)
        return EF_EINVAL;
    if (ef__load32(src + OFF(magic)) != EF_CODEC_MAGIC)
        return EF_EBADMAGIC;
    if (ef_codec_name(src[OFF(codec)]) == NULL)
        return EF_ECODEC;
    /* Reserved bytes are refused, not ignored, so that giving them a meaning later cannot be
     * misread by a reader that predates it. */
    if (src[OFF(reserved8)] != 0 || src[OFF(reserved16)] != 0 || src[OFF(reserved16) + 1] != 0)
        return EF_EFORMAT;
    if (codec_id)
        *codec_id = src[OFF(codec)];
    if (raw_len)
        *raw_len = ef__load64(src + OFF(raw_len));
    return EF_OK;
}

EF_API ptrdiff_t ef_codec_decompress(ef_codec *codec, const uint8_t *src, size_t src_len,
                                     uint8_t *dst, size_t dst_cap, size_t limit) {
    if (dst == NULL && dst_cap > 0)
        return EF_EINVAL;
    int id;
    uint64_t raw;
    int rc = ef_codec_peek(src, src_len, &id, &raw);
    if (rc == EF_ENEEDMORE)
        return EF_ECORRUPT; /* a whole buffer was promised; a short one is a damaged one */
    if (rc < 0)
        return rc;
    if (id != EF_CODEC_NONE && codec == NULL)
        return EF_EINVAL;
    /* Both refusals come from the header alone, before any decoding work or any write to dst. */
    if (raw > limit || raw > (uint64_t)PTRDIFF_MAX)
        return EF_ETOOBIG;
    if (raw > dst_cap)
        return EF_ESPACE;

    const uint8_t *data = src + EF_CODEC_HEADER_SIZE;
    size_t data_len = src_len - EF_CODEC_HEADER_SIZE;
    size_t want = (size_t)raw;
    uint8_t unused; /* a real pointer for decoders when the caller gave none (want is 0 then) */
    if (dst == NULL)
        dst = &unused;
    switch (id) {
    case EF_CODEC_NONE:
        if (data_len != want)
            return EF_ECORRUPT;
        if (want > 0)
            memcpy(dst, data, want);
        return (ptrdiff_t)want;
    case EF_CODEC_LZ4: {
        /* We never write more than lz4 accepts, so larger sizes can only be damage. */
        if (want > LZ4_MAX_INPUT_SIZE || data_len > INT_MAX)
            return EF_ECORRUPT;
        /* Capacity is the recorded size, not dst_cap: decoding stops rather than run past it. */
        int r = LZ4_decompress_safe((const char *)data, (char *)dst, (int)data_len, (int)want);
        if (r < 0 || (size_t)r != want)
            return EF_ECORRUPT;
        return (ptrdiff_t)want;
    }
    default: { /* EF_CODEC_ZSTD; peek admitted no other id */
        size_t r = ZSTD_decompressDCtx(codec->zd, dst, want, data, data_len);
        if (ZSTD_isError(r)) {
            if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
                return EF_ENOMEM;
            return EF_ECORRUPT;
        }
        if (r != want)
            return EF_ECORRUPT;
        return (ptrdiff_t)want;
    }
    }
}
