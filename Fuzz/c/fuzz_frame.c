/* libFuzzer target: the frame parser (ef_frame_parse), what reads every byte from the network.
 *
 * Random bytes rarely get past a CRC32C, so the input is used two ways: as raw bytes for the
 * parser, and as the payload of a frame sealed here with ef_frame_encode, so the success path
 * sees mutated data too. Checked against the parser's contract (elasticflow.h), not a layout:
 * a frame accepted is re-encoded to the same bytes, every shorter prefix asks for more, and a
 * payload over the caller's maximum is never accepted. */
#include "elasticflow.h"
#include "fuzz_check.h"

#include <string.h>

/* A successfully parsed frame re-encodes to the same bytes, and no shorter prefix was complete. */
static void check_raw(const uint8_t *buf, size_t len, size_t max_payload) {
    ef_frame fr;
    ptrdiff_t r = ef_frame_parse(buf, len, max_payload, &fr);
    if (r < 0)
        return;
    FUZZ_CHECK((size_t)r <= len && (size_t)r == EF_FRAME_HEADER_SIZE + fr.payload.len);
    FUZZ_CHECK(fr.payload.len <= max_payload);
    FUZZ_CHECK(fr.payload.ptr == buf + EF_FRAME_HEADER_SIZE);
    FUZZ_CHECK(ef_frame_parse(buf, (size_t)r - 1, max_payload, NULL) == EF_ENEEDMORE);
    uint8_t hdr[EF_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    int n = ef_frame_encode(hdr, fr.type, fr.flags, fr.codec, fr.aux, fr.id, fr.payload.ptr,
                            fr.payload.len, iov);
    FUZZ_CHECK(n == (fr.payload.len ? 2 : 1));
    FUZZ_CHECK(memcmp(hdr, buf, EF_FRAME_HEADER_SIZE) == 0);
}

/* The bytes as a sealed payload: accepted whole, as a view of exactly those bytes; every prefix
 * asks for more; one flipped payload byte is refused. */
static void check_sealed(const uint8_t *data, size_t size) {
    static uint8_t frame[EF_FRAME_HEADER_SIZE + (1u << 16)];
    if (size > sizeof frame - EF_FRAME_HEADER_SIZE)
        return;
    /* Header fields from the input too, so every type, flag and id is encoded and parsed. */
    uint8_t type = (uint8_t)(1 + (size ? data[0] % EF_FRAME_TYPE_MAX : 0));
    uint8_t flags = size > 1 ? data[1] : 0;
    uint32_t aux = size > 2 ? (uint32_t)data[2] * 0x01010101u : 0;
    struct iovec iov[2];
    FUZZ_CHECK(ef_frame_encode(frame, type, flags, 0, aux, size, data, size, iov) >= 1);
    if (size)
        memcpy(frame + EF_FRAME_HEADER_SIZE, data, size);
    size_t total = EF_FRAME_HEADER_SIZE + size;
    ef_frame fr;
    FUZZ_CHECK(ef_frame_parse(frame, total, size, &fr) == (ptrdiff_t)total);
    FUZZ_CHECK(fr.type == type && fr.flags == flags && fr.aux == aux && fr.id == size);
    FUZZ_CHECK(fr.payload.len == size && fr.payload.ptr == frame + EF_FRAME_HEADER_SIZE);
    FUZZ_CHECK(ef_frame_parse(frame, EF_FRAME_HEADER_SIZE + size / 2, size, NULL) ==
               (size ? EF_ENEEDMORE : (ptrdiff_t)EF_FRAME_HEADER_SIZE));
    if (size) {
        FUZZ_CHECK(ef_frame_parse(frame, total, size - 1, NULL) == EF_ETOOLONG);
        frame[EF_FRAME_HEADER_SIZE + size / 2] ^= 0x01;
        FUZZ_CHECK(ef_frame_parse(frame, total, size, NULL) == EF_ECHECKSUM);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_raw(data, size, 1u << 20);
    /* A small maximum as well, picked by the input, so the length check meets every value. */
    check_raw(data, size, size ? data[size - 1] : 0);
    check_sealed(data, size);
    return 0;
}
