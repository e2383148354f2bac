/*
 * elasticflow.h — the one public header of the ElasticFlow C core (libelasticflow).
 *
 * Conventions (see docs/architecture.md):
 *   - every symbol starts with ef_ / EF_;
 *   - handles are opaque; ef_x_create() / ef_x_free(), and free accepts NULL;
 *   - functions return >= 0 on success (a count or a byte length) and a negative EF_E* code on
 *     failure; ef_strerror() names it. The core never prints, exits or aborts on bad input;
 *   - the caller owns buffers; views (ef_slice) point into the caller's or the handle's memory and
 *     stay valid until that memory changes;
 *   - no global mutable state: two handles never share anything, so different handles may be used
 *     from different threads at once. A single handle is single-threaded unless its section says
 *     otherwise.
 *
 * Stability. This header is the stable API; the installed shared library's SONAME is
 * libelasticflow.so.EF_VERSION_MAJOR (docs/c-api.md). Within one major version:
 *   - every function declared here keeps its name, signature and meaning, and the library
 *     exports exactly these functions (only ef_ symbols; a test compares the two lists);
 *   - the error codes EF_OK .. EF_EOVERFLOW keep their values and meanings. Minor versions may
 *     add codes (always negative, below the last one): treat any negative return as a failure and
 *     name it with ef_strerror, which knows every code of its library;
 *   - enum values, flag bits and the other macros keep their values; the plain structs
 *     (ef_slice, ef_frame, ef_counter_options, ef_counter_bounds, ef_word_count,
 *     ef_session_keys, ef_loop_config, ef_send) keep their layouts. Minor versions only add
 *     functions, codes, enum values and flags; a change to anything above bumps the major.
 * Not covered: the wire protocol (EF_PROTOCOL_VERSION; both ends of a connection must run the
 * same one) and the serialized formats, which carry their own magic and version and are
 * described in docs/protocol.md; the text of ef_strerror's messages. Calls meant for tests and
 * fault injection only (a tampered send) are in elasticflow_testing.h, which is not installed,
 * and exist only in builds made with EF_TESTING.
 */
#ifndef ELASTICFLOW_H
#define ELASTICFLOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(EF_BUILDING_LIBRARY)
#define EF_API __attribute__((visibility("default")))
#else
#define EF_API
#endif

/* ------------------------------------------------------------------------------------------ */
/* Version                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define EF_VERSION_MAJOR 0
#define EF_VERSION_MINOR 1
#define EF_VERSION_PATCH 0
#define EF_VERSION_NUMBER (EF_VERSION_MAJOR * 10000 + EF_VERSION_MINOR * 100 + EF_VERSION_PATCH)

/* The library's EF_VERSION_NUMBER: compare with the header's to catch a mismatch. */
EF_API unsigned ef_version_number(void);
EF_API const char *ef_version_string(void);

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

enum {
    EF_OK = 0,
    EF_ENEEDMORE = -1,     /* parser: the buffer holds an incomplete frame; call again with more */
    EF_ENOMEM = -2,        /* an allocation failed (only in named slow paths) */
    EF_EINVAL = -3,        /* an argument is out of range (bad codec level, NULL, mismatch) */
    EF_ETOOBIG = -4,       /* decompressed size would exceed the caller's limit */
    EF_ECORRUPT = -5,      /* compressed data is corrupt or its size disagrees with its header */
    EF_EBADMAGIC = -6,     /* frame or buffer does not start with the expected magic */
    EF_EVERSION = -7,      /* frame protocol version is not supported */
    EF_ETOOLONG = -8,      /* frame payload length is over the caller's maximum */
    EF_ECHECKSUM = -9,     /* frame payload checksum mismatch */
    EF_EHDRCHECKSUM = -10, /* frame header checksum mismatch */
    EF_ECODEC = -11,       /* unknown codec id */
    EF_ESPACE = -12,       /* destination buffer too small */
    EF_EFORMAT = -13,      /* serialized data malformed (truncated, out-of-bounds, bad field) */
    EF_ESYS = -14,         /* a system call failed; errno tells more */
    EF_EAUTH = -15,        /* authentication failed */
    EF_ECLOSED = -16,      /* connection closed */
    EF_EBUSY = -17,        /* back-pressure: the peer's send queue is over its limit */
    EF_EFRAMETYPE = -18,   /* frame type unknown */
    EF_EWORDTOOLONG = -19, /* counter: a word is longer than ef_counter_options.max_word */
    EF_EFRAMEAUTH = -20,   /* a sealed frame's tag did not verify (key, replay, order, edit) */
    EF_EOVERFLOW = -21,    /* a count would overflow 64 bits (merges refuse, never saturate) */
};

/* A static, human-readable, one-line description of an EF_E* code (never NULL). */
EF_API const char *ef_strerror(int code);

/* A view of bytes owned by someone else. */
typedef struct ef_slice {
    const uint8_t *ptr;
    size_t len;
} ef_slice;

/* ------------------------------------------------------------------------------------------ */
/* Checksums                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* CRC32C (Castagnoli). Start with crc = 0; pass the previous result to continue a stream.
 * Uses the SSE4.2 instruction where the CPU has it, a table otherwise (same result). */
EF_API uint32_t ef_crc32c(uint32_t crc, const void *data, size_t len);
/* ef_crc32c(crc, data, len), and the number of '\n' bytes in data[0..len) stored in *newlines
 * (set, not added to; newlines may be NULL), in one pass over the data: a parcel's receipt needs
 * both. Chains exactly as ef_crc32c does. */
EF_API uint32_t ef_crc32c_lines(uint32_t crc, const void *data, size_t len, uint64_t *newlines);
/* ef_crc32c_lines(crc, src, len, newlines), and the len bytes copied from src to dst in the same
 * pass (where AVX2 runs it: each byte is loaded once; else a memcpy first). dst and src must
 * not overlap. */
EF_API uint32_t ef_crc32c_lines_copy(uint32_t crc, void *dst, const void *src, size_t len,
                                     uint64_t *newlines);

/* ------------------------------------------------------------------------------------------ */
/* Codecs: compressed parcel buffers (src/codec.c)                                            */
/* ------------------------------------------------------------------------------------------ */
/*
 * A compressed parcel buffer is EF_CODEC_HEADER_SIZE bytes of header followed by the codec's
 * data. Header (little-endian): u32 magic "EFPB", u8 codec, u8 reserved(0), u16 reserved(0),
 * u64 uncompressed size. ef_codec handles hold reusable compression/decompression contexts
 * (zstd CCtx/DCtx, lz4 state) created once; a handle is single-threaded (one per thread).
 */

typedef enum ef_codec_id {
    EF_CODEC_NONE = 0,
    EF_CODEC_LZ4 = 1,
    EF_CODEC_ZSTD = 2,
} ef_codec_id;

#define EF_CODEC_HEADER_SIZE 16
#define EF_CODEC_MAGIC 0x42504645u /* "EFPB" little-endian */
#define EF_ZSTD_LEVEL_MIN 1
#define EF_ZSTD_LEVEL_MAX 19
#define EF_ZSTD_LEVEL_DEFAULT 1
/* lz4's "level" is its acceleration: 1 compresses best; higher trades ratio for speed. */
#define EF_LZ4_ACCELERATION_MAX 65537
#define EF_LZ4_ACCELERATION_DEFAULT 1

typedef struct ef_codec ef_codec;

EF_API ef_codec *ef_codec_create(void);
EF_API void ef_codec_free(ef_codec *codec);

/* "none", "lz4", "zstd", or NULL for an unknown id. */
EF_API const char *ef_codec_name(int codec);

/* Worst-case size of a compressed buffer (header included) for src_len input bytes;
 * 0 when the codec is unknown or src_len is too large for it. */
EF_API size_t ef_codec_bound(int codec, size_t src_len);

/* Compress src into dst (header + data). level: for zstd the level (0 = default; otherwise
 * EF_ZSTD_LEVEL_MIN..MAX, else EF_EINVAL); for lz4 the acceleration (0 = default;
 * 1..EF_LZ4_ACCELERATION_MAX, else EF_EINVAL); ignored by none. Returns the bytes written or EF_E*. */
EF_API ptrdiff_t ef_codec_compress(ef_codec *codec, int codec_id, int level, const uint8_t *src,
                                   size_t src_len, uint8_t *dst, size_t dst_cap);

/* Read a compressed buffer's header without decompressing: its codec and uncompressed size.
 * Returns EF_OK, EF_ENEEDMORE (fewer than EF_CODEC_HEADER_SIZE bytes), EF_EBADMAGIC, EF_ECODEC,
 * EF_EFORMAT (reserved bytes not zero). */
EF_API int ef_codec_peek(const uint8_t *src, size_t src_len, int *codec_id, uint64_t *raw_len);

/* Decompress a compressed buffer into dst. Refuses (EF_ETOOBIG) when the recorded uncompressed
 * size exceeds limit, EF_ESPACE when it exceeds dst_cap, EF_ECORRUPT when the data is corrupt or
 * decodes to a size other than the recorded one (or src is shorter than a header); a bad header
 * gives ef_codec_peek's codes. Returns the bytes written. */
EF_API ptrdiff_t ef_codec_decompress(ef_codec *codec, const uint8_t *src, size_t src_len,
                                     uint8_t *dst, size_t dst_cap, size_t limit);

/* ------------------------------------------------------------------------------------------ */
/* Decoders: compressed input files, streamed (src/decode.c)                                  */
/* ------------------------------------------------------------------------------------------ */
/*
 * An input file is recognised by its first bytes, never its name: gzip (RFC 1952; concatenated
 * members), zstd (every frame, skippable frames included; a file may start with a skippable
 * frame), lz4's frame format (concatenated frames) and bzip2 (concatenated streams). Anything
 * else is plain text. An ef_decoder streams one input at a time: feed compressed bytes, pull
 * decompressed bytes into the caller's buffer. Memory is bounded by the format, not the data
 * (zstd windows over 2^27 bytes are refused as corrupt); contexts are created on the first
 * reset of each format and reused, so no call allocates except bzip2's per-stream setup (the
 * library has no reset). A handle is single-threaded.
 */

typedef enum ef_format {
    EF_FORMAT_PLAIN = 0,
    EF_FORMAT_GZIP = 1,
    EF_FORMAT_ZSTD = 2,
    EF_FORMAT_LZ4 = 3,
    EF_FORMAT_BZIP2 = 4,
} ef_format;

/* Bytes ef_format_detect needs to decide for sure. */
#define EF_FORMAT_MAGIC_SIZE 4

/* The format of an input starting with src[0..len). With fewer than EF_FORMAT_MAGIC_SIZE bytes
 * that begin a magic number: EF_ENEEDMORE, unless at_end (the input is that short: plain). */
EF_API int ef_format_detect(const uint8_t *src, size_t len, int at_end);
/* "plain", "gzip", "zstd", "lz4", "bzip2", or NULL for an unknown value. */
EF_API const char *ef_format_name(int format);

typedef struct ef_decoder ef_decoder;

EF_API ef_decoder *ef_decoder_create(void);
EF_API void ef_decoder_free(ef_decoder *decoder);

/* Start a new input of this format (not EF_FORMAT_PLAIN). EF_OK, EF_EINVAL, EF_ENOMEM. */
EF_API int ef_decoder_reset(ef_decoder *decoder, int format);

/* Decode from src (src_len may be 0: output held back for lack of room still comes out) into
 * dst[0..dst_cap). Sets *consumed to the src bytes used (the rest must be given again). Returns
 * the bytes written, 0 when it needs more input, or EF_ECORRUPT (ef_decoder_message says why,
 * ef_decoder_offset where): after an error only a reset is accepted (EF_EINVAL). */
EF_API ptrdiff_t ef_decoder_decode(ef_decoder *decoder, const uint8_t *src, size_t src_len,
                                   size_t *consumed, uint8_t *dst, size_t dst_cap);

/* At the end of the input: EF_OK when it ended between two members/frames, EF_ENEEDMORE when it
 * ended inside one (a truncated file), EF_EINVAL after an error or without a reset. */
EF_API int ef_decoder_finish(ef_decoder *decoder);

/* Compressed bytes consumed since the reset: after EF_ECORRUPT, where the decoder stood when it
 * found the damage (the damage is at or before it); after finish's EF_ENEEDMORE, the input's size. */
EF_API uint64_t ef_decoder_offset(const ef_decoder *decoder);

/* A static one-line reason for the latest EF_ECORRUPT (from the library), else "". */
EF_API const char *ef_decoder_message(const ef_decoder *decoder);

/* ------------------------------------------------------------------------------------------ */
/* Seekable zstd: frames decompressed on their own (src/seekable.c)                            */
/* ------------------------------------------------------------------------------------------ */
/*
 * zstd's seekable format (facebook/zstd contrib/seekable_format): independent zstd frames, then
 * a skippable frame (magic EF_SEEKABLE_SKIPPABLE_MAGIC) with one entry per frame — u32 compressed
 * size, u32 decompressed size, and with the descriptor's bit 7 a u32 checksum (the low 32 bits
 * of the XXH64 of the frame's content) — ending in a 9-byte footer: u32 frame count, u8
 * descriptor, u32 EF_SEEKABLE_MAGIC. Such a file is also plain zstd (the table is skipped), so
 * ef_decoder reads it in order; these calls read any run of frames on its own.
 *
 * Reading: the last EF_SEEKABLE_FOOTER_SIZE bytes go to ef_seekable_footer (the table's size and
 * frame count), the last `size` bytes to ef_seekable_parse (the frames, with their offsets), and
 * a run of consecutive frames' compressed bytes to ef_seekable_decompress. The table is checked
 * as hostile input: its frames must tile the file exactly up to the table, and each frame is
 * checked again as it is decompressed. An ef_seekable holds reusable zstd contexts (created on
 * first use); it is single-threaded.
 */

#define EF_SEEKABLE_MAGIC 0x8F92EAB1u
#define EF_SEEKABLE_SKIPPABLE_MAGIC 0x184D2A5Eu
#define EF_SEEKABLE_FOOTER_SIZE 9
#define EF_SEEKABLE_MAX_FRAMES 0x8000000u /* zstd's own limit: 2^27 frames */

/* One frame of a seekable file: where it lies in the file and in the decompressed text. */
typedef struct ef_seek_frame {
    uint64_t compressed_offset;
    uint64_t decompressed_offset;
    uint32_t compressed_size;
    uint32_t decompressed_size;
    uint32_t checksum; /* 0 when the table has none */
} ef_seek_frame;

typedef struct ef_seekable ef_seekable;

EF_API ef_seekable *ef_seekable_create(void);
EF_API void ef_seekable_free(ef_seekable *seekable);

/* From a file's last EF_SEEKABLE_FOOTER_SIZE bytes (len must be that) and its size: the size of
 * the seek table's skippable frame (header, entries and footer), with its frame count and whether
 * it has checksums. EF_EBADMAGIC when the file is not seekable (no footer magic), EF_EFORMAT for
 * reserved descriptor bits, more than EF_SEEKABLE_MAX_FRAMES frames or a table larger than the
 * file, EF_EINVAL for NULL arguments. */
EF_API int64_t ef_seekable_footer(const uint8_t *footer, size_t len, uint64_t file_size,
                                  uint32_t *frames, int *checksums);

/* Parse the seek table (src: the file's last len bytes, len as ef_seekable_footer gave) into
 * frames[0..cap). Returns the frame count, or EF_EBADMAGIC (no skippable frame header or footer
 * magic), EF_EFORMAT (a size field that disagrees, a frame shorter than a zstd frame can be, or
 * frames that do not tile the file exactly up to the table), EF_ESPACE (cap too small),
 * EF_EINVAL. */
EF_API ptrdiff_t ef_seekable_parse(const uint8_t *src, size_t len, uint64_t file_size,
                                   ef_seek_frame *frames, size_t cap);

/* Decompress frames[0..count) (consecutive, as parsed) from src, their compressed bytes
 * (src_len must be their compressed sizes' sum), into dst (EF_ESPACE when dst_cap is less than
 * their decompressed sizes' sum). Each must be one zstd frame of exactly its compressed size
 * that decodes to exactly its decompressed size, with the table's checksum when `checksums`;
 * otherwise EF_ECORRUPT, with ef_seekable_offset the frame's compressed offset in the file and
 * ef_seekable_message why. Returns the bytes written. */
EF_API ptrdiff_t ef_seekable_decompress(ef_seekable *seekable, const ef_seek_frame *frames,
                                        size_t count, int checksums, const uint8_t *src,
                                        size_t src_len, uint8_t *dst, size_t dst_cap);

/* Writing: the worst-case compressed size of a frame of src_len bytes (0 if too large). */
EF_API size_t ef_seekable_frame_bound(size_t src_len);
/* Compress src[0..len) (len < 2^32) as one zstd frame with its content size and checksum, at
 * `level` (0: EF_ZSTD_LEVEL_DEFAULT; else EF_ZSTD_LEVEL_MIN..MAX, else EF_EINVAL). Fills
 * *frame's sizes and checksum (not its offsets). Returns the bytes written, EF_ESPACE, EF_ENOMEM. */
EF_API ptrdiff_t ef_seekable_compress(ef_seekable *seekable, int level, const uint8_t *src,
                                      size_t len, uint8_t *dst, size_t cap, ef_seek_frame *frame);
/* Bytes of the seek table (with checksums) for `frames` frames; 0 over EF_SEEKABLE_MAX_FRAMES. */
EF_API size_t ef_seekable_table_size(size_t frames);
/* Write the seek table of frames[0..count), with checksums. Returns its size, EF_ESPACE, EF_EINVAL. */
EF_API ptrdiff_t ef_seekable_table_write(const ef_seek_frame *frames, size_t count, uint8_t *dst,
                                         size_t cap);

/* After EF_ECORRUPT: the compressed offset of the frame at fault, and a static one-line reason. */
EF_API uint64_t ef_seekable_offset(const ef_seekable *seekable);
EF_API const char *ef_seekable_message(const ef_seekable *seekable);

/* ------------------------------------------------------------------------------------------ */
/* Frames: the wire format (src/frame.c, docs/protocol.md)                                    */
/* ------------------------------------------------------------------------------------------ */
/*
 * Header, EF_FRAME_HEADER_SIZE = 32 bytes, little-endian:
 *   0  u32 magic "EFLW"
 *   4  u8  version (EF_PROTOCOL_VERSION)
 *   5  u8  type (EF_FRAME_*)
 *   6  u8  flags (EF_FRAME_F_*)
 *   7  u8  codec of the payload (ef_codec_id; informational, the payload is opaque here)
 *   8  u32 payload length
 *   12 u32 aux (type-specific: e.g. item count, error code)
 *   16 u64 id (receipt / correlation id)
 *   24 u32 CRC32C of the payload
 *   28 u32 CRC32C of header bytes 0..27
 */

#define EF_FRAME_MAGIC 0x574C4645u /* "EFLW" little-endian */
#define EF_PROTOCOL_VERSION 3
#define EF_FRAME_HEADER_SIZE 32
#define EF_FRAME_MAX_PAYLOAD_DEFAULT (256u * 1024u * 1024u)

typedef enum ef_frame_type {
    EF_FRAME_HELLO = 1,     /* handshake: version, codecs, nonce */
    EF_FRAME_AUTH = 2,      /* handshake: HMAC proof */
    EF_FRAME_WELCOME = 3,   /* handshake: accepted */
    EF_FRAME_HEARTBEAT = 4, /* liveness, both ways */
    EF_FRAME_PARCEL = 5,    /* master -> worker: work */
    EF_FRAME_RESULT = 6,    /* worker -> master: result of a parcel */
    EF_FRAME_ERROR = 7,     /* either way: a failure, with a message */
    EF_FRAME_BYE = 8,       /* either way: graceful leave */
    EF_FRAME_STEP = 9,      /* master -> worker: a step's task and options, before its parcels */
} ef_frame_type;
#define EF_FRAME_TYPE_MAX 9

/* Flags are carried as-is; these are the ones the protocol defines. */
#define EF_FRAME_F_COMPRESSED 0x01u /* payload is a compressed parcel buffer */

typedef struct ef_frame {
    uint8_t version;
    uint8_t type;
    uint8_t flags;
    uint8_t codec;
    uint32_t aux;
    uint64_t id;
    ef_slice payload; /* view into the caller's buffer, no copy */
} ef_frame;

/* Parse one frame at the start of buf. Stateless in the picohttpparser way: call again with the
 * same buffer grown by new bytes (one byte at a time works). Returns the bytes the frame occupies
 * (header + payload) with *out filled, EF_ENEEDMORE, or EF_EBADMAGIC / EF_EVERSION /
 * EF_EFRAMETYPE / EF_EHDRCHECKSUM / EF_ETOOLONG (payload length > max_payload, reported as soon as
 * the header is complete) / EF_ECHECKSUM. Bad magic is reported as soon as the bytes present
 * disagree with it. */
EF_API ptrdiff_t ef_frame_parse(const uint8_t *buf, size_t len, size_t max_payload, ef_frame *out);

/* Encode a frame header for payload into header[EF_FRAME_HEADER_SIZE] (checksums included) and
 * fill iov[0] = header, iov[1] = payload for writev. Returns the iovec count (1 when the payload is
 * empty, else 2) or EF_EINVAL / EF_ETOOLONG (payload over UINT32_MAX). */
EF_API int ef_frame_encode(uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t type, uint8_t flags,
                           uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                           size_t payload_len, struct iovec iov[2]);

/* ------------------------------------------------------------------------------------------ */
/* Word counting: tokenizer + hash-partitioned count table (src/count.c)                      */
/* ------------------------------------------------------------------------------------------ */
/*
 * Words are maximal runs of bytes that are not ASCII whitespace (space, \t, \n, \v, \f, \r).
 * Every other byte (non-ASCII, invalid UTF-8, NUL) is part of a word, untouched, except that
 * with EF_COUNT_LOWERCASE the bytes 'A'..'Z' become 'a'..'z'. A word may straddle two
 * ef_counter_feed calls; ef_counter_finish ends the stream.
 *
 * The table is split by key hash into P partitions, each its own open-addressing table with its
 * own key arena. An ef_counter is single-threaded, except that ef_counter_merge_partition and
 * ef_counter_section_merge calls for *different* partitions of the same dst may run on different
 * threads at once, in any mix (with no other call on dst or src in the meantime): each writes
 * only its partition's memory. The hash is fixed (not seeded), so every process of the same
 * build puts a word in the same partition. Functions that only read a serialized buffer
 * (ef_counter_partitioned_check, ef_counter_section_check) share no state and may run on any
 * thread at any time.
 */

#define EF_COUNT_LOWERCASE 0x1u
#define EF_COUNT_PARTITIONS_MAX 1024
#define EF_COUNT_MAGIC 0x54434645u /* "EFCT" little-endian: a serialized count table */
#define EF_COUNT_PART_MAGIC 0x50434645u /* "EFCP" little-endian: a partitioned count table */
#define EF_COUNT_PART_VERSION 1
#define EF_COUNT_PART_HEADER_SIZE 16  /* magic, version, 3 zero bytes, partitions, flags */
#define EF_COUNT_PART_SECTION_SIZE 24 /* per partition: u64 offset, u64 length, u64 entries */

typedef struct ef_counter ef_counter;

typedef struct ef_counter_options {
    uint32_t partitions;       /* 1..EF_COUNT_PARTITIONS_MAX; 0 = default (16) */
    uint32_t flags;            /* EF_COUNT_* */
    size_t initial_capacity;   /* expected distinct words in all; 0 = default */
    size_t max_word;           /* longest word ef_counter_feed accepts, in bytes; 0 = no cap */
} ef_counter_options;

/* NULL options = defaults. Returns NULL on allocation failure or invalid options. */
EF_API ef_counter *ef_counter_create(const ef_counter_options *options);
EF_API void ef_counter_free(ef_counter *counter);

/* Tokenize and count. Returns EF_OK, EF_ENOMEM (table growth failed; counts stay consistent
 * up to the last whole word counted), EF_EWORDTOOLONG (a word longer than max_word: the
 * pending word never grows past the cap, so memory stays bounded; the counter must then be
 * cleared or freed, its counts are partial) or EF_EOVERFLOW (nothing counted) when the
 * counter's total plus len could pass UINT64_MAX.
 *
 * Overflow: a counter's total (the sum of its counts) always fits in 64 bits, so no count can
 * overflow. Every call that adds counts refuses, with EF_EOVERFLOW and dst unchanged, what would
 * break that; it never saturates. The one exception is ef_counter_merge_partition and
 * ef_counter_section_merge, which see one partition only: they keep the partition's total in
 * range, and a caller merging partitions in parallel checks the totals (ef_counter_total,
 * ef_counter_table_bounds) first. */
EF_API int ef_counter_feed(ef_counter *counter, const uint8_t *data, size_t len);
/* End of stream: count the word pending from the last feed, if any (EF_EWORDTOOLONG as feed). */
EF_API int ef_counter_finish(ef_counter *counter);
/* Add count to one whole word, as given (no tokenizing, no lowercasing). EF_EOVERFLOW when the
 * total would pass UINT64_MAX. */
EF_API int ef_counter_add(ef_counter *counter, const uint8_t *word, size_t len, uint64_t count);
/* Slow path: size each partition's table for its share of distinct words in all, with a margin
 * for uneven hashing, so counting that many does not grow the tables (long keys may still grow
 * the key arenas). */
EF_API int ef_counter_reserve(ef_counter *counter, size_t distinct);
/* Forget every word and any pending partial word; keep the capacity. */
EF_API void ef_counter_clear(ef_counter *counter);

EF_API uint32_t ef_counter_partitions(const ef_counter *counter);
EF_API uint32_t ef_counter_flags(const ef_counter *counter);
EF_API size_t ef_counter_distinct(const ef_counter *counter);
/* Sum of all counts, in O(P). UINT64_MAX if partition merges made it overflow (see above). */
EF_API uint64_t ef_counter_total(const ef_counter *counter);
/* Look one word up (exact bytes). Returns its count, 0 when absent. */
EF_API uint64_t ef_counter_get(const ef_counter *counter, const uint8_t *word, size_t len);

/* Merge src's partition p into dst's partition p (sum per word). Both must have the same number
 * of partitions (EF_EINVAL otherwise). See the threading note above. EF_EOVERFLOW (nothing
 * added) when the partition's total would pass UINT64_MAX; the counter-wide total is the
 * caller's to check. On EF_ENOMEM dst holds part of src's counts. */
EF_API int ef_counter_merge_partition(ef_counter *dst, const ef_counter *src, uint32_t partition);
/* Merge every partition of src into dst (any partition counts: keys are re-hashed if they differ).
 * EF_EOVERFLOW (dst unchanged) when the total would pass UINT64_MAX. */
EF_API int ef_counter_merge(ef_counter *dst, const ef_counter *src);

/* Compact serialization for parcels' results (format in docs/protocol.md):
 * u32 magic "EFCT", u32 entry count, then per entry varint length, bytes, varint count. */
EF_API size_t ef_counter_serialized_size(const ef_counter *counter);
EF_API ptrdiff_t ef_counter_serialize(const ef_counter *counter, uint8_t *dst, size_t cap);
/* Bounds-checked: validates the whole buffer first, then adds its counts into dst (so on error
 * dst is unchanged). Accepts EFCT and EFCP (below; every section is checked, then merged in
 * turn), with any partition counts on either side. Returns the number of entries or EF_EFORMAT /
 * EF_EBADMAGIC / EF_EVERSION (EFCP of another version) / EF_ENOMEM / EF_EOVERFLOW (the buffer's
 * counts, or dst's total plus them, pass UINT64_MAX). */
EF_API ptrdiff_t ef_counter_deserialize(ef_counter *dst, const uint8_t *src, size_t len);

/* What a serialized table (EFCT or EFCP) holds, for a receiver to judge it against what the
 * parcels could hold before merging it: read and bounds-checked in full (no hashing). */
typedef struct ef_counter_bounds {
    uint64_t total;   /* sum of the counts */
    uint64_t entries; /* words listed */
    uint64_t longest; /* bytes of the longest word */
} ef_counter_bounds;
/* Returns EF_OK with *out filled, the format codes of ef_counter_deserialize, or EF_EOVERFLOW
 * when the counts sum past UINT64_MAX. */
EF_API int ef_counter_table_bounds(const uint8_t *src, size_t len, ef_counter_bounds *out);

/* Partitioned serialization, so a receiver merges one buffer with a thread per partition and no
 * thread reads entries it does not own (format in docs/protocol.md). EF_COUNT_PART_HEADER_SIZE
 * bytes of header (u32 magic "EFCP", u8 version EF_COUNT_PART_VERSION, 3 zero bytes, u32
 * partitions P, u32 the writer's EF_COUNT_* flags), a table of P sections of
 * EF_COUNT_PART_SECTION_SIZE bytes (u64 offset, u64 length, u64 entries), then the P sections
 * back to back in partition order, each its partition's entries encoded as in EFCT. Every key
 * of section p hashes to partition p of a P-partition table.
 *
 * To merge all or nothing in parallel: ef_counter_partitioned_check once, ef_counter_section_check
 * for every p (in parallel, no state), and only if all pass, ef_counter_section_merge for every
 * p (in parallel, see the threading note above). */
EF_API size_t ef_counter_partitioned_size(const ef_counter *counter);
/* Returns the bytes written, EF_ESPACE when cap is short of ef_counter_partitioned_size, or
 * EF_EINVAL. */
EF_API ptrdiff_t ef_counter_serialize_partitioned(const ef_counter *counter, uint8_t *dst,
                                                  size_t cap);
/* The header and section table only, in O(P): magic, version, zero reserved bytes, 1 <= P <=
 * EF_COUNT_PARTITIONS_MAX, known flags, sections within bounds, in order, without gaps or
 * overlap, ending at len, and entry counts possible for their lengths. Returns P (also stored in
 * *partitions when not NULL), EF_EFORMAT, EF_EBADMAGIC, EF_EVERSION, EF_EINVAL (NULL src). */
EF_API ptrdiff_t ef_counter_partitioned_check(const uint8_t *src, size_t len, uint32_t *partitions);
/* Section `partition` in full, reading nothing else past the header and its table entry: every
 * entry's varints and bounds (length 1..2^32 - 1, count >= 1), exactly the recorded entry count
 * and bytes, and every key hashing to that partition. Returns the section's entry count, the
 * header's codes, EF_EINVAL (partition >= P) or EF_EFORMAT. */
EF_API ptrdiff_t ef_counter_section_check(const uint8_t *src, size_t len, uint32_t partition);
/* Add section `partition`'s counts into dst's same partition. dst must have the
 * buffer's partition count (EF_EINVAL otherwise). The section is validated as section_check does
 * and room is made before the first count is added, so on any error — EF_ENOMEM included — dst
 * is unchanged. EF_EOVERFLOW when the partition's total would pass UINT64_MAX (the
 * counter-wide total is the caller's to check, e.g. with ef_counter_table_bounds). Returns the
 * section's entry count. */
EF_API ptrdiff_t ef_counter_section_merge(ef_counter *dst, const uint8_t *src, size_t len,
                                          uint32_t partition);

typedef struct ef_word_count {
    ef_slice word; /* view into the counter's arena, valid until the counter changes */
    uint64_t count;
} ef_word_count;

/* Export words sorted by count descending, then word ascending bytewise (memcmp, shorter first
 * on a common prefix). Writes min(distinct, cap) entries — the top cap — and returns that number. */
EF_API ptrdiff_t ef_counter_export(const ef_counter *counter, ef_word_count *out, size_t cap);

/* ------------------------------------------------------------------------------------------ */
/* Authentication: SHA-256, HMAC-SHA256, cookie challenge-response (src/auth.c)               */
/* ------------------------------------------------------------------------------------------ */

#define EF_SHA256_SIZE 32
#define EF_AUTH_NONCE_SIZE 32

EF_API void ef_sha256(const uint8_t *data, size_t len, uint8_t out[EF_SHA256_SIZE]);
EF_API void ef_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                           uint8_t out[EF_SHA256_SIZE]);
/* Fill nonce from the kernel's random source (getrandom). EF_OK or EF_ESYS. */
EF_API int ef_auth_nonce(uint8_t nonce[EF_AUTH_NONCE_SIZE]);
/* The proof a node of role ('M' master, 'W' worker) sends: HMAC-SHA256(cookie, role ||
 * own_nonce || peer_nonce). The cookie never crosses the wire. */
EF_API void ef_auth_proof(const uint8_t *cookie, size_t cookie_len, uint8_t role,
                          const uint8_t own_nonce[EF_AUTH_NONCE_SIZE],
                          const uint8_t peer_nonce[EF_AUTH_NONCE_SIZE],
                          uint8_t out[EF_SHA256_SIZE]);
/* Check a peer's proof in constant time: EF_OK or EF_EAUTH. */
EF_API int ef_auth_verify(const uint8_t *cookie, size_t cookie_len, uint8_t peer_role,
                          const uint8_t peer_nonce[EF_AUTH_NONCE_SIZE],
                          const uint8_t own_nonce[EF_AUTH_NONCE_SIZE],
                          const uint8_t proof[EF_SHA256_SIZE]);

/* ------------------------------------------------------------------------------------------ */
/* Sessions: per-connection keys and sealed frames (src/auth.c, src/session.c)                 */
/* ------------------------------------------------------------------------------------------ */
/*
 * After both HELLOs each side derives two keys with HKDF-SHA256 (IKM = the cookie, salt = master
 * nonce || worker nonce, info = EF_SESSION_INFO): one per direction. Every later frame is sealed
 * with AES-256-GCM under its direction's key, the 96-bit nonce being the direction byte ('M' for
 * master -> worker, 'W' for worker -> master), three zero bytes and the direction's 64-bit frame
 * counter (little-endian, from 0). The nonce is never sent: both sides count, so a replayed,
 * reordered, dropped or reflected frame fails its tag. The 32-byte header is additional data;
 * the payload is too (MAC only, GMAC) or is encrypted in place (EF_SEAL_ENCRYPT). The 16-byte
 * tag follows the payload on the wire; the header's payload length does not count it, and its
 * payload CRC field is 0 (the tag makes it redundant). Format in docs/protocol.md.
 */

#define EF_SESSION_KEY_SIZE 32
#define EF_SESSION_TAG_SIZE 16
#define EF_SESSION_INFO "elasticflow protocol 3 session keys"

typedef struct ef_session_keys {
    uint8_t master_to_worker[EF_SESSION_KEY_SIZE];
    uint8_t worker_to_master[EF_SESSION_KEY_SIZE];
} ef_session_keys;

/* HKDF-SHA256 as above into keys (64 bytes of output: master -> worker first). EF_OK, EF_EINVAL
 * (NULL, or an empty cookie), EF_ENOMEM. */
EF_API int ef_session_derive(const uint8_t *cookie, size_t cookie_len,
                             const uint8_t master_nonce[EF_AUTH_NONCE_SIZE],
                             const uint8_t worker_nonce[EF_AUTH_NONCE_SIZE], ef_session_keys *keys);

/* ef_seal_create flags. */
#define EF_SEAL_ENCRYPT 0x1u /* payloads are encrypted, not only authenticated */
#define EF_SEAL_OPENER 0x2u  /* this seal opens (verifies) frames; without it, it seals them */

/* One direction of a session: a preallocated AES-256-GCM context and the frame counter. The
 * event loop keeps two per sealed connection (ef_loop_seal); test code and tools that speak the
 * protocol over raw sockets use them directly. Single-threaded. */
typedef struct ef_seal ef_seal;

/* direction: 'M' (master -> worker) or 'W' (worker -> master). NULL on a bad argument or no
 * memory. */
EF_API ef_seal *ef_seal_create(const uint8_t key[EF_SESSION_KEY_SIZE], uint8_t direction,
                               unsigned flags);
EF_API void ef_seal_free(ef_seal *seal);
/* The counter the next frame will use. */
EF_API uint64_t ef_seal_counter(const ef_seal *seal);

/* Seal one frame: header is its EF_FRAME_HEADER_SIZE bytes as sent; payload is authenticated,
 * or encrypted in place with EF_SEAL_ENCRYPT; tag receives the 16-byte tag. The counter advances.
 * EF_OK, EF_EINVAL (an opener, NULL). */
EF_API int ef_seal_frame(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE],
                         uint8_t *payload, size_t len, uint8_t tag[EF_SESSION_TAG_SIZE]);
/* Open one frame sealed as above: verify the tag (decrypting payload in place with
 * EF_SEAL_ENCRYPT). EF_OK (the counter advances) or EF_EFRAMEAUTH (the counter does not; an
 * encrypted payload is then garbage). */
EF_API int ef_seal_open(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t *payload,
                        size_t len, const uint8_t tag[EF_SESSION_TAG_SIZE]);

/* Encode a sealed frame's header (payload CRC 0) into header: as ef_frame_encode without the
 * iovecs. EF_OK, EF_EINVAL, EF_ETOOLONG. */
EF_API int ef_frame_encode_sealed(uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t type, uint8_t flags,
                                  uint8_t codec, uint32_t aux, uint64_t id, size_t payload_len);
/* Parse a sealed frame at the start of buf, as ef_frame_parse but without the payload CRC (the
 * tag stands for it, and is not checked here): returns header + payload + tag bytes, with
 * out->payload the payload alone and *tag pointing at its tag. */
EF_API ptrdiff_t ef_frame_parse_sealed(const uint8_t *buf, size_t len, size_t max_payload,
                                       ef_frame *out, const uint8_t **tag);

/* ------------------------------------------------------------------------------------------ */
/* Event loop (src/loop.c, src/net.c) — section owned by the loop work; see docs/protocol.md  */
/* ------------------------------------------------------------------------------------------ */
/* EF_LOOP_SECTION_BEGIN */
/*
 * An epoll event loop (Linux) that owns TCP sockets, timers and cross-thread wake-ups, and moves
 * frames: it parses incoming frames in place and queues outgoing ones for writev.
 *
 * Threading. One loop per thread. Every function below must be called on the thread that runs
 * ef_loop_run (from a callback or a posted function), or, while no thread runs the loop, from one
 * thread at a time (set-up before the loop thread starts, clean-up after it returns). The only
 * exceptions are ef_loop_post and ef_loop_stop: they may be called from any thread at any time
 * between ef_loop_create and ef_loop_free. Callbacks run on the loop thread, one at a time, and
 * never from inside an ef_loop_* call — with one exception: a zero-copy or file release() (see
 * ef_loop_send_ref, ef_send). A callback must not call ef_loop_run or ef_loop_free.
 *
 * Ids. Listeners, connections and timers are named by uint64_t ids that one loop never reuses
 * (0 is never an id). A stale id is harmless: calls answer EF_ECLOSED.
 *
 * A connection id's life: on_accept (accepted) or on_connect (ef_loop_connect; exactly once, with
 * EF_OK, or a negative status if it never connected), then any number of on_frame and on_drain,
 * then exactly one on_close, always the last callback for that id. on_close reasons: EF_OK for an
 * orderly end (the peer closed between frames, or ef_loop_close); EF_ECLOSED when the peer closed
 * in the middle of a frame; a frame error (EF_EBADMAGIC, EF_EVERSION, EF_EHDRCHECKSUM,
 * EF_ECHECKSUM, EF_EFRAMETYPE, EF_ETOOLONG) when the peer sent a bad frame — only that
 * connection is closed; EF_ESYS when a socket call failed (ef_loop_last_errno tells why);
 * EF_ENOMEM when a buffer could not grow.
 *
 * Back-pressure. ef_loop_send refuses (EF_EBUSY, nothing queued) while a connection's queued
 * bytes are at or over send_high_water; once they have been there, on_drain fires when the queue
 * falls below send_low_water again. Reading the other way: ef_loop_pause stops reading a
 * connection, so a slow consumer lets TCP push back on the peer.
 *
 * Sockets are written with sendmsg(MSG_NOSIGNAL), and file payloads with sendfile under a
 * SIGPIPE blocked on the loop thread for the call: the process need not ignore SIGPIPE.
 */

typedef struct ef_loop ef_loop;

#define EF_LOOP_SEND_HIGH_WATER_DEFAULT (4u * 1024u * 1024u)
#define EF_LOOP_READ_BUFFER_DEFAULT (64u * 1024u)

/* Plain data: zero-filled means defaults and no callbacks. Every callback may be NULL (the
 * event is then dropped; a NULL on_frame discards frames). Each receives the loop and user. */
typedef struct ef_loop_config {
    void *user;
    /* A listener accepted a connection; conn_id is open and reading. */
    void (*on_accept)(ef_loop *loop, void *user, uint64_t listener_id, uint64_t conn_id);
    /* An ef_loop_connect finished: EF_OK, or EF_ESYS (ef_loop_last_errno: ECONNREFUSED, ...)
     * or EF_ECLOSED (closed before connecting). on_close follows a failure. */
    void (*on_connect)(ef_loop *loop, void *user, uint64_t conn_id, int status);
    /* A whole, checked frame. frame->payload points into the connection's read buffer and is
     * valid only until this callback returns: copy what must outlive it. */
    void (*on_frame)(ef_loop *loop, void *user, uint64_t conn_id, const ef_frame *frame);
    /* The connection is gone (reason above); its pending zero-copy refs are already released. */
    void (*on_close)(ef_loop *loop, void *user, uint64_t conn_id, int reason);
    /* The send queue fell below send_low_water after reaching send_high_water. */
    void (*on_drain)(ef_loop *loop, void *user, uint64_t conn_id);
    void (*on_timer)(ef_loop *loop, void *user, uint64_t timer_id);
    size_t max_payload;     /* largest payload accepted; 0 = EF_FRAME_MAX_PAYLOAD_DEFAULT */
    size_t send_high_water; /* bytes queued per connection; 0 = EF_LOOP_SEND_HIGH_WATER_DEFAULT */
    size_t send_low_water;  /* 1..high (1 = only when empty); 0 = half of send_high_water */
    size_t read_buffer;     /* initial read buffer per connection; 0 = EF_LOOP_READ_BUFFER_DEFAULT.
                               It grows (slow path) for a frame that does not fit, never past
                               max_payload + header + tag, and is shrunk back to this size once
                               what is left after the frames parsed fits it again. */
    /* Largest payload accepted on a connection until one of its sealed frames has passed its tag
     * check (ef_loop_seal): a peer that has not proved it holds the session keys cannot make
     * the loop buffer more. 0 = max_payload (no separate limit). */
    size_t preauth_payload;
} ef_loop_config;

/* NULL config = defaults. Returns NULL on failure with *error (if error is not NULL) set to
 * EF_EINVAL (low water over high), EF_ENOMEM, or EF_ESYS (epoll/eventfd; see errno). */
EF_API ef_loop *ef_loop_create(const ef_loop_config *config, int *error);
/* Closes every listener, connection and timer WITHOUT calling their callbacks, except that each
 * zero-copy ref still queued is released, and posted functions still queued are run first (on
 * the calling thread) so no post is lost. No thread may post once free has started. NULL is ok. */
EF_API void ef_loop_free(ef_loop *loop);

/* Run until ef_loop_stop. Returns EF_OK when stopped, EF_ESYS if epoll fails, EF_EINVAL when
 * the loop is already running. */
EF_API int ef_loop_run(ef_loop *loop);
/* THREAD-SAFE. Makes the running ef_loop_run return after the callback in progress, or the next
 * ef_loop_run return at once if none is running. */
EF_API void ef_loop_stop(ef_loop *loop);
/* THREAD-SAFE. Queue fn(loop, arg) to run on the loop thread soon, in posting order per thread;
 * every queued function runs exactly once (by ef_loop_run, or by ef_loop_free). Returns EF_OK,
 * EF_EINVAL (fn NULL) or EF_ENOMEM (the queue could not grow). */
EF_API int ef_loop_post(ef_loop *loop, void (*fn)(ef_loop *loop, void *arg), void *arg);

/* Listen on host:port (host NULL or "" = every address; port 0 = ephemeral), SO_REUSEADDR.
 * Fills *listener_id and, if not NULL, *bound_port. EF_EINVAL when host does not resolve,
 * EF_ESYS when socket/bind/listen fail. Accepted connections get TCP_NODELAY. */
EF_API int ef_loop_listen(ef_loop *loop, const char *host, uint16_t port, uint64_t *listener_id,
                          uint16_t *bound_port);
/* Stop listening (no callback). Connections accepted from it stay open. EF_OK or EF_ECLOSED. */
EF_API int ef_loop_unlisten(ef_loop *loop, uint64_t listener_id);

/* Start a non-blocking connect to host:port (the first address getaddrinfo returns; give a
 * numeric address to avoid a blocking DNS lookup on the loop thread). Fills *conn_id; the result
 * comes in on_connect, even when the connect fails at once. Frames may be sent before it
 * connects: they are queued. EF_EINVAL when host does not resolve, EF_ESYS when no socket. */
EF_API int ef_loop_connect(ef_loop *loop, const char *host, uint16_t port, uint64_t *conn_id);

/* Queue a frame: the header is encoded with ef_frame_encode and the payload COPIED into the
 * connection's send buffer (reused; it grows only in a slow path). When nothing is queued the
 * frame is written at once and only what the socket did not take is copied — except inside a
 * posted function or an on_frame callback, where frames are gathered and written together in
 * one writev once the batch is over (one system call for many small frames). Returns EF_OK,
 * EF_ECLOSED (unknown id, closing or closed), EF_EBUSY (queue at or over send_high_water:
 * nothing queued, wait for on_drain), EF_EINVAL (bad type, NULL payload with len > 0),
 * EF_ETOOLONG (len over UINT32_MAX) or EF_ENOMEM (if the frame was partly written the
 * connection is closed with EF_ENOMEM). */
EF_API int ef_loop_send(ef_loop *loop, uint64_t conn_id, uint8_t type, uint8_t flags,
                        uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                        size_t len);
/* Zero-copy ef_loop_send: the payload is referenced, not copied, and must stay unchanged until
 * release(ctx) runs. On EF_OK, release(ctx) (if not NULL) is called exactly once on the loop
 * thread: when the payload has been written — possibly before ef_loop_send_ref returns — or when
 * the connection closes first, or by ef_loop_free. On any error nothing is queued and release is
 * NOT called: the caller keeps ownership. */
EF_API int ef_loop_send_ref(ef_loop *loop, uint64_t conn_id, uint8_t type, uint8_t flags,
                            uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                            size_t len, void (*release)(void *ctx), void *ctx);

/* ef_send.options: the payload is len bytes of file_fd from file_offset, sent with sendfile(2). */
#define EF_SEND_FROM_FILE 0x1u

/* One frame to send, for ef_loop_send_with. Plain data: zero-filled fields are "none" (no flags,
 * codec 0, no known CRC, copy the payload, no options), but type must be set. */
typedef struct ef_send {
    uint8_t type, flags, codec; /* as ef_frame_encode takes them */
    uint32_t aux;
    uint64_t id;
    const uint8_t *payload; /* may be NULL when len is 0 */
    size_t len;
    /* Non-zero: payload_crc is the payload's CRC32C (ef_crc32c(0, payload, len)), which the
     * caller already computed, so the payload is not read again to checksum it. Trusted as
     * given: a wrong one makes the peer refuse the frame and close (EF_ECHECKSUM). */
    int has_crc;
    uint32_t payload_crc;
    /* Non-NULL: zero copy, as ef_loop_send_ref — the payload is referenced, must stay unchanged
     * until release(ctx) runs, and release runs exactly once on EF_OK (never on an error).
     * NULL: the payload is copied, as ef_loop_send. */
    void (*release)(void *ctx);
    void *ctx;
    /* EF_SEND_* bits; 0 = none. Unknown bits: EF_EINVAL. */
    unsigned options;
    /* Read only with EF_SEND_FROM_FILE (so zero-filled means "no file", not fd 0): payload is
     * not sent (on a sealed connection, when not NULL, it must hold the same len bytes, which
     * seal the frame without reading the file: see ef_loop_seal) and the payload is the len
     * bytes of file_fd at file_offset, which go from the page cache to the socket with
     * sendfile(2), never through user memory (or, where the file or socket does not support
     * sendfile, pread into the connection's send buffer and sendmsg) — except on a sealed
     * connection without lent bytes, where the tag needs them: there they are read once, a
     * piece at a time, and sent from that piece (ef_loop_seal).
     * The fd's own offset never moves. On a connection not sealed, has_crc is required
     * (EF_EINVAL without it): the loop never reads the bytes, so it cannot checksum them; a
     * sealed frame carries no CRC (its tag covers the payload), so there it may be 0. As for a zero-copy payload, the fd must
     * stay open and those bytes unchanged until release(ctx) runs (release may be NULL), exactly
     * once on EF_OK, on the loop thread: once the bytes are written — possibly before the call
     * returns — or when the connection closes first, or by ef_loop_free. A file that ends before
     * file_offset + len closes the connection when its turn comes: on_close(EF_ESYS) with
     * ef_loop_last_errno EIO. Other sendfile failures close it with EF_ESYS as socket errors
     * do. EF_EINVAL also for file_fd < 0 or a range past INT64_MAX. */
    int file_fd;
    uint64_t file_offset;
} ef_send;

/* The one send that takes every option: ef_loop_send or ef_loop_send_ref (by send->release),
 * with an optional known payload CRC, or a payload from a file (EF_SEND_FROM_FILE). Same returns
 * as those, and EF_EINVAL when send is NULL. send itself is not kept past the call. A file
 * payload counts towards send_high_water and ef_loop_pending like any other. */
EF_API int ef_loop_send_with(ef_loop *loop, uint64_t conn_id, const ef_send *send);

/* Close a connection: at once (flush 0: queued frames are dropped and their refs released), or
 * once its queue is written (flush 1: no more frames are read or may be sent meanwhile; then
 * input still unread is discarded so the close does not reset the peer). on_close(EF_OK) follows
 * either way, from the loop. EF_OK, or EF_ECLOSED when the id is unknown or already closed;
 * flush 0 on a connection already flushing closes it at once. */
EF_API int ef_loop_close(ef_loop *loop, uint64_t conn_id, int flush);
/* Stop (paused 1) or resume (0) reading a connection. A pause called from on_frame takes effect
 * after that frame; frames already read are delivered after the resume. EF_OK or EF_ECLOSED. */
EF_API int ef_loop_pause(ef_loop *loop, uint64_t conn_id, int paused);

/* A timer (one timerfd each) firing on_timer after ms milliseconds (0 = on the next turn of the
 * loop), then every ms if repeat. A one-shot timer's id is gone once it fired. EF_EINVAL for a
 * repeating timer of 0 ms, EF_ESYS, EF_ENOMEM. */
EF_API int ef_loop_timer_add(ef_loop *loop, uint64_t ms, int repeat, uint64_t *timer_id);
/* EF_OK, or EF_ECLOSED when the timer is unknown, cancelled or a one-shot that already fired. */
EF_API int ef_loop_timer_cancel(ef_loop *loop, uint64_t timer_id);

/* Seal a connection with its session keys: from now on every frame sent on it is sealed (in
 * queue order, so frames already queued leave as they were) and every frame received is parsed
 * as sealed and opened before on_frame sees it (decrypted in place), starting with the next frame
 * in the read buffer when called from on_frame. role is this side's: 'M' sends with
 * master_to_worker and opens with worker_to_master, 'W' the other way round. encrypt: payloads
 * are encrypted both ways (EF_SEAL_ENCRYPT), else only authenticated. A frame whose tag fails
 * closes the connection: on_close(EF_EFRAMEAUTH). A file payload (EF_SEND_FROM_FILE) needs its
 * bytes at send time: from ef_send.payload when the caller lends them (the same len bytes, read
 * only during the call), else read once with pread. Lent, MAC only, the tag is computed from them
 * and the payload still goes with sendfile (so a file changed in between fails the peer's tag
 * check). Not lent, MAC only, the bytes are read when the frame's turn comes to be written, a
 * piece at a time into a buffer of the connection, fed to the tag and sent from there (each byte
 * read once; the tag follows them; later frames are sealed meanwhile, in queue order); a file
 * that ends early then closes the connection as unsealed. Encrypted, they are encrypted into
 * the send buffer when queued. EF_OK, EF_ECLOSED, EF_EINVAL (bad role, NULL
 * keys, already sealed), EF_ENOMEM.
 */
EF_API int ef_loop_seal(ef_loop *loop, uint64_t conn_id, const ef_session_keys *keys, uint8_t role,
                        int encrypt);

/* Bytes queued on a connection and not yet written, or EF_ECLOSED. */
EF_API int64_t ef_loop_pending(const ef_loop *loop, uint64_t conn_id);
/* The kernel's latest estimate of a connection's delivery rate (TCP_INFO's tcpi_delivery_rate,
 * bytes per second; Linux 4.9 or later) and whether the sender limited it (*app_limited 1: the
 * link may be faster than that). What --compression auto measures links with. EF_OK, EF_ECLOSED,
 * EF_EINVAL (NULL out-parameter) or EF_ESYS (no such estimate from this kernel). */
EF_API int ef_loop_delivery_rate(const ef_loop *loop, uint64_t conn_id, uint64_t *bytes_per_second,
                                 int *app_limited);
/* The peer's address as "1.2.3.4:5678" or "[::1]:5678", NUL-terminated. Returns its length,
 * EF_ESPACE when cap is too small, or EF_ECLOSED. */
EF_API ptrdiff_t ef_loop_peer(const ef_loop *loop, uint64_t conn_id, char *buf, size_t cap);
/* The errno behind the latest EF_ESYS: inside on_connect / on_close, the one for that event;
 * after an ef_loop_* call returned EF_ESYS, the one for that call. */
EF_API int ef_loop_last_errno(const ef_loop *loop);
/* EF_LOOP_SECTION_END */

#ifdef __cplusplus
}
#endif

#endif /* ELASTICFLOW_H */
