/* Internals shared between the core's source files (ef__ prefix). Not installed. */
#ifndef EF_INTERNAL_H
#define EF_INTERNAL_H

#include "elasticflow.h"

#include <string.h>

static inline uint32_t ef__load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v; /* little-endian hosts only: see the _Static_assert in frame.c */
}
static inline uint64_t ef__load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void ef__store32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void ef__store64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ElasticFlow's core assumes a little-endian host (wire format is little-endian)"
/* seekable.c: XXH64 of data (the seekable format's frame checksum is its low 32 bits). */
uint64_t ef__xxh64(const void *data, size_t len, uint64_t seed);

#endif

/* crc32c.c: the portable table path of ef_crc32c, always compiled, so tests can hold the hardware
 * path to it. */
uint32_t ef__crc32c_sw(uint32_t crc, const void *data, size_t len);

/* frame.c: ef_frame_encode, with the payload's CRC32C taken from *payload_crc when not NULL
 * (trusted as given: a wrong one makes the peer refuse the frame with EF_ECHECKSUM). */
int ef__frame_encode(uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t type, uint8_t flags,
                     uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                     size_t payload_len, const uint32_t *payload_crc, struct iovec iov[2]);

/* crc32c.c: ef_crc32c_lines and ef_crc32c pinned to one implementation, so tests can prove they
 * agree. Update *crc (and set *newlines); EF_EINVAL when this build or CPU lacks that one. */
enum {
    EF__CRC_PORTABLE = 0, /* the table, a byte at a time */
    EF__CRC_SSE42 = 1,    /* crc32 instruction, one chain; SSE2 compares */
    EF__CRC_CLMUL = 2,    /* crc32 instruction, three chains joined by PCLMULQDQ; SSE2 compares */
    EF__CRC_AVX2 = 3,     /* as EF__CRC_CLMUL, AVX2 compares (ef_crc32c_lines only) */
};
int ef__crc32c_lines_with(int impl, uint32_t *crc, const void *data, size_t len,
                          uint64_t *newlines);
int ef__crc32c_with(int impl, uint32_t *crc, const void *data, size_t len);

/* seekable.c: XXH64 of data (the seekable format's frame checksum is its low 32 bits). */
uint64_t ef__xxh64(const void *data, size_t len, uint64_t seed);

#endif
