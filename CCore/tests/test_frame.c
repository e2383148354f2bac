/* Frames (src/frame.c) and CRC32C (src/crc32c.c), which exists for them. */
#include "ef_test.h"

#include "elasticflow.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- CRC32C ---- */

static void test_crc32c_known_answers(ef_t *t) {
    static const uint8_t check[] = "123456789";
    CHECK_EQ(t, ef_crc32c(0, check, 9), 0xE3069283u);
    CHECK_EQ(t, ef__crc32c_sw(0, check, 9), 0xE3069283u);
    CHECK_EQ(t, ef_crc32c(0, NULL, 0), 0);
    CHECK_EQ(t, ef_crc32c(0x12345678u, NULL, 0), 0x12345678u);

    /* RFC 3720 (iSCSI) B.4 vectors, 32 bytes each. */
    uint8_t v[32];
    memset(v, 0, sizeof v);
    CHECK_EQ(t, ef_crc32c(0, v, 32), 0x8A9136AAu);
    CHECK_EQ(t, ef__crc32c_sw(0, v, 32), 0x8A9136AAu);
    memset(v, 0xFF, sizeof v);
    CHECK_EQ(t, ef_crc32c(0, v, 32), 0x62A8AB43u);
    CHECK_EQ(t, ef__crc32c_sw(0, v, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        v[i] = (uint8_t)i;
    CHECK_EQ(t, ef_crc32c(0, v, 32), 0x46DD794Eu);
    CHECK_EQ(t, ef__crc32c_sw(0, v, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        v[i] = (uint8_t)(31 - i);
    CHECK_EQ(t, ef_crc32c(0, v, 32), 0x113FDB5Cu);
    CHECK_EQ(t, ef__crc32c_sw(0, v, 32), 0x113FDB5Cu);
}

/* ef_crc32c takes the SSE4.2 path on any x86-64 this runs on, so comparing it with the table
 * path compares the two implementations; odd lengths and offsets exercise the hardware path's
 * 8-byte body and byte tail at every alignment. */
static void test_crc32c_hw_matches_sw(ef_t *t) {
    enum { N = 4096 + 64 };
    uint8_t *buf = malloc(N);
    uint64_t s = 0xC0FFEE;
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)ef_test_rand(&s);
    for (int round = 0; round < 2000; round++) {
        size_t off = ef_test_rand(&s) % 16;
        size_t len = round < 64 ? (size_t)round : ef_test_rand(&s) % (N - 16);
        uint32_t seed = round % 3 == 0 ? 0 : (uint32_t)ef_test_rand(&s);
        uint32_t hw = ef_crc32c(seed, buf + off, len);
        uint32_t sw = ef__crc32c_sw(seed, buf + off, len);
        CHECK_EQ(t, hw, sw);
        if (hw != sw)
            break;
    }
    free(buf);
}

/* A stream checksummed in pieces, split anywhere, equals the checksum of the whole, whichever
 * implementation computes each piece. */
static void test_crc32c_streaming(ef_t *t) {
    enum { N = 10000 };
    uint8_t *buf = malloc(N);
    uint64_t s = 42;
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)ef_test_rand(&s);
    for (int round = 0; round < 500; round++) {
        size_t len = ef_test_rand(&s) % N;
        uint32_t whole = ef_crc32c(0, buf, len);
        size_t a = len ? ef_test_rand(&s) % (len + 1) : 0;
        size_t b = a + (len - a ? ef_test_rand(&s) % (len - a + 1) : 0);
        uint32_t hw = ef_crc32c(ef_crc32c(ef_crc32c(0, buf, a), buf + a, b - a), buf + b, len - b);
        uint32_t sw = ef__crc32c_sw(ef__crc32c_sw(ef__crc32c_sw(0, buf, a), buf + a, b - a),
                                    buf + b, len - b);
        uint32_t mixed = ef__crc32c_sw(ef_crc32c(0, buf, a), buf + a, len - a);
        CHECK_EQ(t, hw, whole);
        CHECK_EQ(t, sw, whole);
        CHECK_EQ(t, mixed, whole);
    }
    /* One byte at a time, the way nobody should, still agrees. */
    uint32_t c = 0;
    for (size_t i = 0; i < 1000; i++)
        c = ef_crc32c(c, buf + i, 1);
    CHECK_EQ(t, c, ef_crc32c(0, buf, 1000));
    free(buf);
}

/* ---- frame helpers ---- */

/* Encodes a frame and lays it out contiguously in a fresh heap block of exactly its size, so ASan
 * flags any read past the end. Returns the block; *len gets its size. */
static uint8_t *make_frame(uint8_t type, uint8_t flags, uint8_t codec, uint32_t aux, uint64_t id,
                           const uint8_t *payload, size_t payload_len, size_t *len) {
    uint8_t hdr[EF_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    int n = ef_frame_encode(hdr, type, flags, codec, aux, id, payload, payload_len, iov);
    if (n < 1)
        return NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    uint8_t *buf = malloc(total ? total : 1);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(buf + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    *len = total;
    return buf;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)ef_test_rand(&seed);
}

/* Rewrites the header checksum after a test has edited the header on purpose, so the parser
 * judges the edited field itself rather than the checksum. */
static void reseal(uint8_t *frame) { ef__store32(frame + 28, ef_crc32c(0, frame, 28)); }

/* Parses a copy of buf[0..len) held in a heap block of exactly len bytes. */
static ptrdiff_t parse_exact(const uint8_t *buf, size_t len, size_t max, ef_frame *out) {
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, buf, len);
    ptrdiff_t r = ef_frame_parse(len ? copy : NULL, len, max, out);
    if (r > 0 && out)
        out->payload.ptr = buf + (out->payload.ptr - copy); /* keep the view meaningful */
    free(copy);
    return r;
}

/* ---- frames ---- */

static void test_frame_layout(ef_t *t) {
    static const uint8_t payload[] = "hello";
    uint8_t hdr[EF_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    int n = ef_frame_encode(hdr, EF_FRAME_PARCEL, EF_FRAME_F_COMPRESSED, EF_CODEC_ZSTD, 0xA1B2C3D4u,
                            0x0102030405060708ull, payload, 5, iov);
    CHECK_EQ(t, n, 2);
    CHECK(t, memcmp(hdr, "EFLW", 4) == 0);
    CHECK_EQ(t, hdr[4], EF_PROTOCOL_VERSION);
    CHECK_EQ(t, hdr[5], EF_FRAME_PARCEL);
    CHECK_EQ(t, hdr[6], EF_FRAME_F_COMPRESSED);
    CHECK_EQ(t, hdr[7], EF_CODEC_ZSTD);
    static const uint8_t len_le[4] = {5, 0, 0, 0};
    static const uint8_t aux_le[4] = {0xD4, 0xC3, 0xB2, 0xA1};
    static const uint8_t id_le[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    CHECK(t, memcmp(hdr + 8, len_le, 4) == 0);
    CHECK(t, memcmp(hdr + 12, aux_le, 4) == 0);
    CHECK(t, memcmp(hdr + 16, id_le, 8) == 0);
    uint32_t pcrc = ef_crc32c(0, payload, 5), hcrc = ef_crc32c(0, hdr, 28);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(t, hdr[24 + i], (pcrc >> (8 * i)) & 0xFF);
        CHECK_EQ(t, hdr[28 + i], (hcrc >> (8 * i)) & 0xFF);
    }
    CHECK(t, iov[0].iov_base == hdr);
    CHECK_EQ(t, iov[0].iov_len, EF_FRAME_HEADER_SIZE);
    CHECK(t, iov[1].iov_base == payload);
    CHECK_EQ(t, iov[1].iov_len, 5);

    /* Empty payload: one iovec, and the payload checksum is that of nothing (0). */
    n = ef_frame_encode(hdr, EF_FRAME_HEARTBEAT, 0, 0, 0, 0, NULL, 0, iov);
    CHECK_EQ(t, n, 1);
    CHECK_EQ(t, ef__load32(hdr + 8), 0);
    CHECK_EQ(t, ef__load32(hdr + 24), 0);
}

static void test_frame_encode_errors(ef_t *t) {
    uint8_t hdr[EF_FRAME_HEADER_SIZE], p[4] = {0};
    struct iovec iov[2];
    CHECK_EQ(t, ef_frame_encode(hdr, 0, 0, 0, 0, 0, p, 4, iov), EF_EINVAL);
    CHECK_EQ(t, ef_frame_encode(hdr, EF_FRAME_TYPE_MAX + 1, 0, 0, 0, 0, p, 4, iov), EF_EINVAL);
    CHECK_EQ(t, ef_frame_encode(hdr, 255, 0, 0, 0, 0, p, 4, iov), EF_EINVAL);
    CHECK_EQ(t, ef_frame_encode(NULL, EF_FRAME_BYE, 0, 0, 0, 0, p, 4, iov), EF_EINVAL);
    CHECK_EQ(t, ef_frame_encode(hdr, EF_FRAME_BYE, 0, 0, 0, 0, p, 4, NULL), EF_EINVAL);
    CHECK_EQ(t, ef_frame_encode(hdr, EF_FRAME_BYE, 0, 0, 0, 0, NULL, 4, iov), EF_EINVAL);
#if SIZE_MAX > UINT32_MAX
    /* Refused on the length alone: the 4-byte buffer is never read past. */
    CHECK_EQ(t, ef_frame_encode(hdr, EF_FRAME_PARCEL, 0, 0, 0, 0, p, (size_t)UINT32_MAX + 1, iov),
             EF_ETOOLONG);
#endif
}

static void test_frame_round_trip_each_type(ef_t *t) {
    static const size_t sizes[] = {0, 1, 31, 32, 33, 1000, 70000};
    uint8_t *payload = malloc(70000);
    fill_random(payload, 70000, 7);
    for (uint8_t type = EF_FRAME_HELLO; type <= EF_FRAME_TYPE_MAX; type++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t plen = sizes[k], len = 0;
            uint8_t flags = (uint8_t)(type * 17), codec = (uint8_t)(k % 3);
            uint32_t aux = 0xFFFFFFF0u + type;
            uint64_t id = 0x8000000000000000ull | ((uint64_t)type << 32) | k;
            uint8_t *f = make_frame(type, flags, codec, aux, id, payload, plen, &len);
            CHECK(t, f != NULL);
            if (!f)
                continue;
            CHECK_EQ(t, len, EF_FRAME_HEADER_SIZE + plen);
            ef_frame fr;
            memset(&fr, 0xAA, sizeof fr);
            ptrdiff_t r = ef_frame_parse(f, len, EF_FRAME_MAX_PAYLOAD_DEFAULT, &fr);
            CHECK_EQ(t, r, (ptrdiff_t)len);
            if (r < 0) {
                free(f);
                continue;
            }
            CHECK_EQ(t, fr.version, EF_PROTOCOL_VERSION);
            CHECK_EQ(t, fr.type, type);
            CHECK_EQ(t, fr.flags, flags);
            CHECK_EQ(t, fr.codec, codec);
            CHECK_EQ(t, fr.aux, aux);
            CHECK(t, fr.id == id);
            CHECK(t, fr.payload.ptr == f + EF_FRAME_HEADER_SIZE); /* a view, not a copy */
            CHECK_EQ(t, fr.payload.len, plen);
            CHECK(t, plen == 0 || memcmp(fr.payload.ptr, payload, plen) == 0);
            /* max_payload is inclusive, and a NULL out only measures. */
            CHECK_EQ(t, ef_frame_parse(f, len, plen, NULL), (ptrdiff_t)len);
            free(f);
        }
    }
    free(payload);
}

/* The way the loop uses it: the buffer grows a byte at a time and every call restarts. */
static void test_frame_byte_at_a_time(ef_t *t) {
    uint8_t payload[300];
    fill_random(payload, sizeof payload, 11);
    static const size_t sizes[] = {0, 1, 300};
    for (size_t k = 0; k < 3; k++) {
        size_t len = 0;
        uint8_t *f = make_frame(EF_FRAME_RESULT, 0, 0, 9, 99, payload, sizes[k], &len);
        for (size_t i = 0; i < len; i++) {
            ptrdiff_t r = parse_exact(f, i, EF_FRAME_MAX_PAYLOAD_DEFAULT, NULL);
            CHECK_EQ(t, r, EF_ENEEDMORE);
            if (r != EF_ENEEDMORE)
                break;
        }
        ef_frame fr;
        CHECK_EQ(t, parse_exact(f, len, EF_FRAME_MAX_PAYLOAD_DEFAULT, &fr), (ptrdiff_t)len);
        CHECK_EQ(t, fr.payload.len, sizes[k]);
        CHECK_EQ(t, fr.aux, 9);
        free(f);
    }
}

static void test_frame_back_to_back(ef_t *t) {
    uint8_t p1[100], p2[7];
    fill_random(p1, sizeof p1, 1);
    fill_random(p2, sizeof p2, 2);
    size_t l1, l2, l3;
    uint8_t *f1 = make_frame(EF_FRAME_PARCEL, 0, 1, 1, 1001, p1, sizeof p1, &l1);
    uint8_t *f2 = make_frame(EF_FRAME_HEARTBEAT, 0, 0, 0, 1002, NULL, 0, &l2);
    uint8_t *f3 = make_frame(EF_FRAME_RESULT, 0, 2, 3, 1003, p2, sizeof p2, &l3);
    uint8_t *buf = malloc(l1 + l2 + l3);
    memcpy(buf, f1, l1);
    memcpy(buf + l1, f2, l2);
    memcpy(buf + l1 + l2, f3, l3);
    /* The last frame arrives only in part: the first two still parse, the third asks for more. */
    size_t have = l1 + l2 + l3 - 3, at = 0;
    ef_frame fr;
    ptrdiff_t r = ef_frame_parse(buf, have, 1000, &fr);
    CHECK_EQ(t, r, (ptrdiff_t)l1);
    CHECK(t, fr.id == 1001 && fr.payload.ptr == buf + 32 && fr.payload.len == sizeof p1);
    at += (size_t)(r > 0 ? r : 0);
    r = ef_frame_parse(buf + at, have - at, 1000, &fr);
    CHECK_EQ(t, r, (ptrdiff_t)l2);
    CHECK(t, fr.id == 1002 && fr.type == EF_FRAME_HEARTBEAT && fr.payload.len == 0);
    at += (size_t)(r > 0 ? r : 0);
    CHECK_EQ(t, ef_frame_parse(buf + at, have - at, 1000, &fr), EF_ENEEDMORE);
    r = ef_frame_parse(buf + at, l3, 1000, &fr);
    CHECK_EQ(t, r, (ptrdiff_t)l3);
    CHECK(t, r > 0 && fr.id == 1003 && memcmp(fr.payload.ptr, p2, sizeof p2) == 0);
    free(buf);
    free(f1);
    free(f2);
    free(f3);
}

static void test_frame_bad_magic_early(ef_t *t) {
    size_t len;
    uint8_t p[50];
    fill_random(p, sizeof p, 3);
    uint8_t *f = make_frame(EF_FRAME_HELLO, 0, 0, 0, 5, p, sizeof p, &len);
    for (size_t pos = 0; pos < 4; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            f[pos] ^= (uint8_t)(1u << bit);
            for (size_t n = 0; n <= len; n++) {
                ptrdiff_t want = n <= pos ? EF_ENEEDMORE : EF_EBADMAGIC;
                ptrdiff_t r = parse_exact(f, n, EF_FRAME_MAX_PAYLOAD_DEFAULT, NULL);
                CHECK_EQ(t, r, want);
                if (r != want)
                    break;
            }
            f[pos] ^= (uint8_t)(1u << bit);
        }
    }
    /* Some other protocol's first bytes. */
    static const uint8_t http[] = "GET / HTTP/1.1\r\n\r\n";
    CHECK_EQ(t, ef_frame_parse(http, 1, 1000, NULL), EF_EBADMAGIC);
    CHECK_EQ(t, ef_frame_parse(http, sizeof http - 1, 1000, NULL), EF_EBADMAGIC);
    CHECK_EQ(t, ef_frame_parse(NULL, 0, 1000, NULL), EF_ENEEDMORE);
    free(f);
}

static void test_frame_bad_version(ef_t *t) {
    size_t len;
    uint8_t *f = make_frame(EF_FRAME_HELLO, 0, 0, 0, 5, NULL, 0, &len);
    static const uint8_t versions[] = {0, EF_PROTOCOL_VERSION + 1, 255};
    for (size_t k = 0; k < sizeof versions; k++) {
        f[4] = versions[k];
        reseal(f);
        /* Known from byte 5 on: a peer of another version is refused before its header is in. */
        for (size_t n = 0; n <= len; n++)
            CHECK_EQ(t, parse_exact(f, n, 1000, NULL), n < 5 ? EF_ENEEDMORE : EF_EVERSION);
        /* The version outranks the header checksum: another version may lay the header out
         * differently, checksum included. */
        f[28] ^= 1;
        CHECK_EQ(t, ef_frame_parse(f, len, 1000, NULL), EF_EVERSION);
    }
    free(f);
}

static void test_frame_unknown_type(ef_t *t) {
    size_t len;
    uint8_t p[10] = {0};
    uint8_t *f = make_frame(EF_FRAME_HELLO, 0, 0, 0, 5, p, sizeof p, &len);
    static const uint8_t types[] = {0, EF_FRAME_TYPE_MAX + 1, 0x80, 255};
    for (size_t k = 0; k < sizeof types; k++) {
        f[5] = types[k];
        reseal(f);
        for (size_t n = 0; n < EF_FRAME_HEADER_SIZE; n++)
            CHECK_EQ(t, parse_exact(f, n, 1000, NULL), EF_ENEEDMORE);
        /* Known with the header alone, payload not yet arrived. */
        CHECK_EQ(t, parse_exact(f, EF_FRAME_HEADER_SIZE, 1000, NULL), EF_EFRAMETYPE);
        CHECK_EQ(t, parse_exact(f, len, 1000, NULL), EF_EFRAMETYPE);
    }
    free(f);
}

static void test_frame_header_checksum(ef_t *t) {
    size_t len;
    uint8_t p[64];
    fill_random(p, sizeof p, 4);
    uint8_t *f = make_frame(EF_FRAME_ERROR, 1, 2, 3, 4, p, sizeof p, &len);
    /* Every bit after magic and version, checksums included, is covered. */
    for (size_t pos = 5; pos < EF_FRAME_HEADER_SIZE; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            f[pos] ^= (uint8_t)(1u << bit);
            CHECK_EQ(t, parse_exact(f, EF_FRAME_HEADER_SIZE, EF_FRAME_MAX_PAYLOAD_DEFAULT, NULL),
                     EF_EHDRCHECKSUM);
            CHECK_EQ(t, ef_frame_parse(f, len, EF_FRAME_MAX_PAYLOAD_DEFAULT, NULL),
                     EF_EHDRCHECKSUM);
            f[pos] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK_EQ(t, ef_frame_parse(f, len, EF_FRAME_MAX_PAYLOAD_DEFAULT, NULL), (ptrdiff_t)len);
    free(f);
}

static void test_frame_too_long(ef_t *t) {
    size_t len;
    uint8_t p[1000] = {0};
    uint8_t *f = make_frame(EF_FRAME_PARCEL, 0, 0, 0, 5, p, sizeof p, &len);
    /* Refused on the 32 header bytes alone; below that, nothing is known yet. */
    CHECK_EQ(t, parse_exact(f, EF_FRAME_HEADER_SIZE - 1, 999, NULL), EF_ENEEDMORE);
    CHECK_EQ(t, parse_exact(f, EF_FRAME_HEADER_SIZE, 999, NULL), EF_ETOOLONG);
    CHECK_EQ(t, parse_exact(f, len, 999, NULL), EF_ETOOLONG);
    CHECK_EQ(t, parse_exact(f, EF_FRAME_HEADER_SIZE, 1000, NULL), EF_ENEEDMORE);
    CHECK_EQ(t, parse_exact(f, len, 1000, NULL), (ptrdiff_t)len);
    CHECK_EQ(t, parse_exact(f, len, 0, NULL), EF_ETOOLONG);

    /* A 4 GiB claim, correctly sealed, against the default limit. */
    ef__store32(f + 8, UINT32_MAX);
    reseal(f);
    CHECK_EQ(t, parse_exact(f, EF_FRAME_HEADER_SIZE, EF_FRAME_MAX_PAYLOAD_DEFAULT, NULL),
             EF_ETOOLONG);
    /* Allowed by the limit, it is merely incomplete. */
    CHECK_EQ(t, parse_exact(f, len, SIZE_MAX, NULL), EF_ENEEDMORE);
    free(f);

    /* max_payload 0 still admits frames without payload. */
    f = make_frame(EF_FRAME_BYE, 0, 0, 0, 5, NULL, 0, &len);
    CHECK_EQ(t, parse_exact(f, len, 0, NULL), (ptrdiff_t)len);
    free(f);
}

static void test_frame_payload_checksum(ef_t *t) {
    size_t len;
    uint8_t p[100];
    fill_random(p, sizeof p, 5);
    uint8_t *f = make_frame(EF_FRAME_PARCEL, 0, 0, 0, 5, p, sizeof p, &len);
    for (size_t pos = EF_FRAME_HEADER_SIZE; pos < len; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            f[pos] ^= (uint8_t)(1u << bit);
            /* Only once the payload is whole can its checksum be judged. */
            CHECK_EQ(t, ef_frame_parse(f, len - 1, 1000, NULL), EF_ENEEDMORE);
            CHECK_EQ(t, ef_frame_parse(f, len, 1000, NULL), EF_ECHECKSUM);
            f[pos] ^= (uint8_t)(1u << bit);
        }
    }
    /* Two flips at random places in a large payload. */
    uint8_t *big = malloc(1 << 20);
    fill_random(big, 1 << 20, 6);
    size_t blen;
    uint8_t *g = make_frame(EF_FRAME_PARCEL, 0, 0, 0, 5, big, 1 << 20, &blen);
    uint64_t s = 77;
    for (int i = 0; i < 20; i++) {
        size_t a = EF_FRAME_HEADER_SIZE + ef_test_rand(&s) % (1 << 20);
        size_t b = EF_FRAME_HEADER_SIZE + ef_test_rand(&s) % (1 << 20);
        uint8_t ma = (uint8_t)(1u << (i % 8)), mb = (uint8_t)(0x80u >> (i % 8));
        g[a] ^= ma;
        if (b != a)
            g[b] ^= mb;
        CHECK_EQ(t, ef_frame_parse(g, blen, 1 << 20, NULL), EF_ECHECKSUM);
        g[a] ^= ma;
        if (b != a)
            g[b] ^= mb;
    }
    CHECK_EQ(t, ef_frame_parse(g, blen, 1 << 20, NULL), (ptrdiff_t)blen);
    free(g);
    free(big);
    free(f);
}

/* ASan guards heap blocks; a PROT_NONE page proves the same for any build, with a real fault:
 * the frame ends on the last readable byte, and every prefix of it ends there too. */
static void test_frame_guard_page(ef_t *t) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t, map != MAP_FAILED);
    if (map == MAP_FAILED)
        return;
    CHECK_EQ(t, mprotect(map + page, page, PROT_NONE), 0);
    uint8_t *end = map + page;

    static const size_t sizes[] = {0, 1, 13, 1000};
    uint8_t p[1000];
    fill_random(p, sizeof p, 8);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len;
        uint8_t *f = make_frame(EF_FRAME_RESULT, 0, 0, 0, k, p, sizes[k], &len);
        uint8_t *at = end - len;
        memcpy(at, f, len);
        ef_frame fr;
        ptrdiff_t r = ef_frame_parse(at, len, 4096, &fr);
        CHECK_EQ(t, r, (ptrdiff_t)len);
        CHECK(t,
              r > 0 && fr.payload.ptr == at + EF_FRAME_HEADER_SIZE && fr.payload.len == sizes[k]);
        /* Each prefix placed so that it, too, ends against the guard. */
        for (size_t n = 0; n < len; n++) {
            memcpy(end - n, f, n);
            CHECK_EQ(t, ef_frame_parse(end - n, n, 4096, NULL), EF_ENEEDMORE);
        }
        /* Errors found at the very end of the buffer: a bad payload, a bad magic byte. */
        memcpy(at, f, len);
        if (sizes[k] > 0) {
            end[-1] ^= 1;
            CHECK_EQ(t, ef_frame_parse(at, len, 4096, NULL), EF_ECHECKSUM);
        }
        for (size_t n = 1; n <= 4; n++) {
            memcpy(end - n, f, n);
            end[-1] ^= 0x20;
            CHECK_EQ(t, ef_frame_parse(end - n, n, 4096, NULL), EF_EBADMAGIC);
        }
        free(f);
    }
    munmap(map, 2 * page);
}

/* The layering the codec relies on: a compressed buffer cannot always tell a damaged literal
 * (src/codec.c), the frame around it always can. Any byte of a PARCEL frame carrying each codec's
 * buffer, flipped, is refused by the parser. */
static void test_frame_guards_compressed_payload(ef_t *t) {
    uint8_t src[2000];
    fill_random(src, 1000, 10);
    memset(src + 1000, 'x', 1000);
    ef_codec *c = ef_codec_create();
    for (int id = EF_CODEC_NONE; id <= EF_CODEC_ZSTD; id++) {
        size_t cap = ef_codec_bound(id, sizeof src);
        uint8_t *buf = malloc(cap);
        ptrdiff_t n = ef_codec_compress(c, id, 0, src, sizeof src, buf, cap);
        CHECK(t, n > 0);
        size_t len;
        uint8_t *f = n > 0 ? make_frame(EF_FRAME_PARCEL, EF_FRAME_F_COMPRESSED, (uint8_t)id, 0, 1,
                                        buf, (size_t)n, &len)
                           : NULL;
        for (size_t pos = 0; f && pos < len; pos++) {
            for (int bit = 0; bit < 8; bit += 3) {
                f[pos] ^= (uint8_t)(1u << bit);
                CHECK(t, ef_frame_parse(f, len, 1 << 20, NULL) < 0);
                f[pos] ^= (uint8_t)(1u << bit);
            }
        }
        ef_frame fr;
        uint8_t out[2000];
        ptrdiff_t r = f ? ef_frame_parse(f, len, 1 << 20, &fr) : EF_EINVAL;
        CHECK(t, r == (ptrdiff_t)len);
        if (r > 0) {
            CHECK(t, ef_codec_decompress(c, fr.payload.ptr, fr.payload.len, out, sizeof out,
                                         sizeof out) == (ptrdiff_t)sizeof src);
            CHECK(t, memcmp(out, src, sizeof src) == 0);
        }
        free(f);
        free(buf);
    }
    ef_codec_free(c);
}

/* Arbitrary bytes, and a valid frame mutated at random: the parser answers with an error, a need
 * for more, or a frame that fits the buffer, and never reads outside it (ASan watches). */
static void test_frame_garbage(ef_t *t) {
    uint64_t s = 1234;
    uint8_t p[200];
    fill_random(p, sizeof p, 9);
    size_t len;
    uint8_t *f = make_frame(EF_FRAME_PARCEL, 0, 0, 0, 5, p, sizeof p, &len);
    uint8_t *m = malloc(len);
    int ok = 1;
    for (int round = 0; round < 20000 && ok; round++) {
        memcpy(m, f, len);
        if (round % 2) {
            for (size_t i = 0; i < len; i++)
                m[i] = (uint8_t)ef_test_rand(&s);
            if (round % 4 == 1) /* half of them get past magic and version */
                memcpy(m, "EFLW\x01", 5);
        } else {
            int flips = 1 + (int)(ef_test_rand(&s) % 4);
            for (int i = 0; i < flips; i++)
                m[ef_test_rand(&s) % len] ^= (uint8_t)(1u << (ef_test_rand(&s) % 8));
        }
        size_t n = ef_test_rand(&s) % (len + 1);
        ef_frame fr;
        ptrdiff_t r = parse_exact(m, n, 1 << 20, &fr);
        if (r >= 0)
            ok = r >= EF_FRAME_HEADER_SIZE && (size_t)r <= n &&
                 fr.payload.len == (size_t)r - EF_FRAME_HEADER_SIZE;
        else
            ok = r == EF_ENEEDMORE || r == EF_EBADMAGIC || r == EF_EVERSION || r == EF_EFRAMETYPE ||
                 r == EF_EHDRCHECKSUM || r == EF_ETOOLONG || r == EF_ECHECKSUM;
        CHECK(t, ok);
    }
    free(m);
    free(f);
}

/* ---- CRC32C and line count in one pass ---- */

static uint64_t naive_newlines(const uint8_t *p, size_t n) {
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k;
}

/* Bytes where newlines are common, and runs of them, and bytes one bit from '\n' (0x0a): 0x0b,
 * 0x08, 0x8a, 0x1a, and 0x89 whose low 7 bits plus 0x7f carry in the SWAR test. */
static void fill_lines(uint8_t *p, size_t n, uint64_t *s) {
    static const uint8_t pick[] = {'\n', '\n', '\n', 0x0b, 0x08, 0x8a, 0x1a, 0x89, 0x0e,
                                   0x00, 0xff, 'a',  ' ',  0x7f, 0x80, 0x0a, 0x2a, 0x4a};
    int dense = (int)(ef_test_rand(s) % 4);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = ef_test_rand(s);
        p[i] = dense == 0 ? (uint8_t)r : dense == 3 ? '\n' : pick[r % sizeof pick];
    }
}

/* Every implementation this CPU has, against ef_crc32c and a naive count: each length 0..300 at
 * each of 8 offsets, a chained continuation, and NULL newlines. */
static void test_crc32c_lines_small(ef_t *t) {
    uint64_t s = 404;
    uint8_t buf[320 + 8];
    for (size_t len = 0; len <= 300; len++) {
        for (size_t off = 0; off < 8; off++) {
            fill_lines(buf + off, len, &s);
            const uint8_t *p = buf + off;
            uint32_t seed = (uint32_t)ef_test_rand(&s) & (len % 3 ? ~0u : 0u);
            uint32_t want = ef_crc32c(seed, p, len);
            uint64_t want_nl = naive_newlines(p, len), nl = 99;
            CHECK_EQ(t, ef_crc32c_lines(seed, p, len, &nl), want);
            CHECK_EQ(t, nl, want_nl);
            for (int impl = EF__CRC_PORTABLE; impl <= EF__CRC_AVX2; impl++) {
                uint32_t c = seed;
                nl = 99;
                if (ef__crc32c_lines_with(impl, &c, p, len, &nl) != EF_OK)
                    continue; /* not on this CPU */
                if (c != want || nl != want_nl)
                    fprintf(stderr, "    impl %d len %zu off %zu\n", impl, len, off);
                CHECK_EQ(t, c, want);
                CHECK_EQ(t, nl, want_nl);
            }
        }
    }
    /* the portable path always exists; the vector ones are there on any x86-64 with them */
    uint32_t c = 0;
    uint64_t nl = 0;
    CHECK_EQ(t, ef__crc32c_lines_with(EF__CRC_PORTABLE, &c, "a\nb", 3, &nl), EF_OK);
    CHECK_EQ(t, nl, 1);
    CHECK_EQ(t, ef__crc32c_lines_with(99, &c, "a", 1, &nl), EF_EINVAL);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2"))
        CHECK_EQ(t, ef__crc32c_lines_with(EF__CRC_AVX2, &c, "a", 1, &nl), EF_OK);
#endif
    /* known answer, empty input, NULL data when empty, NULL newlines */
    static const uint8_t check[] = "123456789";
    nl = 7;
    CHECK_EQ(t, ef_crc32c_lines(0, check, 9, &nl), 0xE3069283u);
    CHECK_EQ(t, nl, 0);
    nl = 7;
    CHECK_EQ(t, ef_crc32c_lines(0x12345678u, NULL, 0, &nl), 0x12345678u);
    CHECK_EQ(t, nl, 0);
    CHECK_EQ(t, ef_crc32c_lines(0, "\n\n", 2, NULL), ef_crc32c(0, "\n\n", 2));
    /* chaining: two calls equal one, the counts add up */
    uint8_t text[200];
    fill_lines(text, sizeof text, &s);
    for (size_t cut = 0; cut <= sizeof text; cut += 7) {
        uint64_t a = 0, b = 0;
        uint32_t r =
            ef_crc32c_lines(ef_crc32c_lines(0, text, cut, &a), text + cut, sizeof text - cut, &b);
        CHECK_EQ(t, r, ef_crc32c(0, text, sizeof text));
        CHECK_EQ(t, a + b, naive_newlines(text, sizeof text));
    }
}

/* ef_crc32c_lines_copy: the checksum and count of ef_crc32c_lines, and an exact copy, at every
 * length up to a few runs and at large ones, source and destination at odd offsets; not a byte
 * written past the copy. */
static void test_crc32c_lines_copy(ef_t *t) {
    uint64_t s = 406;
    size_t cap = (1u << 20) + 4096;
    uint8_t *src = malloc(cap), *dst = malloc(cap + 64);
    CHECK(t, src && dst);
    if (!src || !dst)
        goto out;
    fill_lines(src, cap, &s);
    for (size_t n = 0; n <= 3 * 8192 + 300; n += n < 1600 ? 1 : 97) {
        const uint8_t *p = src + n % 29;
        uint8_t *d = dst + n % 31;
        memset(dst, 0xAB, cap + 64);
        uint64_t nl = 0, want_nl = 0;
        uint32_t want = ef_crc32c_lines(7, p, n, &want_nl);
        CHECK_EQ(t, ef_crc32c_lines_copy(7, d, p, n, &nl), want);
        CHECK_EQ(t, nl, want_nl);
        CHECK(t, memcmp(d, p, n) == 0);
        CHECK_EQ(t, d[n], 0xAB);
    }
    uint64_t nl = 0, want_nl = 0;
    CHECK_EQ(t, ef_crc32c_lines_copy(0, dst, src, cap, &nl), ef_crc32c_lines(0, src, cap, &want_nl));
    CHECK_EQ(t, nl, want_nl);
    CHECK(t, memcmp(dst, src, cap) == 0);
    CHECK_EQ(t, ef_crc32c_lines_copy(0, dst, src, cap, NULL), ef_crc32c(0, src, cap));
out:
    free(src);
    free(dst);
}

/* Large buffers (every implementation, odd lengths and offsets), and a buffer that ends against
 * a PROT_NONE page: no vector load may read past the data. */
static void test_crc32c_lines_large(ef_t *t) {
    uint64_t s = 405;
    size_t cap = (3u << 20) + 64;
    uint8_t *buf = malloc(cap);
    static const size_t sizes[] = {4096, 65536 + 13, 1u << 20, (3u << 20) + 31};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t off = k * 3 % 32;
        fill_lines(buf + off, sizes[k], &s);
        const uint8_t *p = buf + off;
        uint32_t want = ef__crc32c_sw(0, p, sizes[k]);
        uint64_t want_nl = naive_newlines(p, sizes[k]), nl = 0;
        CHECK_EQ(t, ef_crc32c_lines(0, p, sizes[k], &nl), want);
        CHECK_EQ(t, nl, want_nl);
        for (int impl = EF__CRC_PORTABLE; impl <= EF__CRC_AVX2; impl++) {
            uint32_t c = 0;
            if (ef__crc32c_lines_with(impl, &c, p, sizes[k], &nl) != EF_OK)
                continue;
            CHECK_EQ(t, c, want);
            CHECK_EQ(t, nl, want_nl);
        }
    }
    free(buf);

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t, map != MAP_FAILED);
    if (map == MAP_FAILED)
        return;
    CHECK_EQ(t, mprotect(map + page, page, PROT_NONE), 0);
    fill_lines(map, page, &s);
    for (size_t n = 0; n <= 200; n++) {
        const uint8_t *p = map + page - n;
        for (int impl = EF__CRC_PORTABLE; impl <= EF__CRC_AVX2; impl++) {
            uint32_t c = 0;
            uint64_t nl = 0;
            if (ef__crc32c_lines_with(impl, &c, p, n, &nl) != EF_OK)
                continue;
            CHECK_EQ(t, c, ef_crc32c(0, p, n));
            CHECK_EQ(t, nl, naive_newlines(p, n));
        }
    }
    munmap(map, 2 * page);
}

/* ---- three interleaved chains (ef_crc32c and ef_crc32c_lines on large buffers) ---- */

/* Every implementation of both calls, on one piece, against the table and a naive count; names
 * each disagreement so a failure says which path and where. Non-zero when all agree. */
static int crc_all_agree(ef_t *t, uint32_t seed, const uint8_t *p, size_t len, uint32_t want,
                         uint64_t want_nl) {
    int ok = 1;
    uint32_t c = ef_crc32c(seed, p, len);
    uint64_t nl = 99;
    if (c != want || ef_crc32c_lines(seed, p, len, &nl) != want || nl != want_nl) {
        fprintf(stderr, "    public calls, len %zu seed %08x\n", len, seed);
        ok = 0;
    }
    for (int impl = EF__CRC_SSE42; impl <= EF__CRC_AVX2; impl++) {
        c = seed;
        if (ef__crc32c_with(impl, &c, p, len) == EF_OK && c != want) {
            fprintf(stderr, "    ef__crc32c_with impl %d len %zu seed %08x\n", impl, len, seed);
            ok = 0;
        }
        c = seed;
        nl = 99;
        if (ef__crc32c_lines_with(impl, &c, p, len, &nl) == EF_OK && (c != want || nl != want_nl)) {
            fprintf(stderr, "    ef__crc32c_lines_with impl %d len %zu seed %08x\n", impl, len,
                    seed);
            ok = 0;
        }
    }
    CHECK(t, ok);
    return ok;
}

/* Each length 0..5000 at each offset 0..15, seeded with 0 and with a random CRC: every way the
 * three-chain paths split a buffer (long runs, short runs, the single-chain tail) at every
 * alignment. The table's answer grows a byte at a time, so the reference costs O(n), not O(n^2). */
static void test_crc32c_3way_every_length(ef_t *t) {
    enum { N = 5000 };
    uint64_t s = 0x3A7;
    uint8_t *buf = malloc(N + 16);
    for (size_t i = 0; i < N + 16; i += 50)
        fill_lines(buf + i, i + 50 <= N + 16 ? 50 : N + 16 - i, &s);
    int ok = 1;
    for (size_t off = 0; off < 16 && ok; off++) {
        const uint8_t *p = buf + off;
        for (int k = 0; k < 2 && ok; k++) {
            uint32_t seed = k ? (uint32_t)ef_test_rand(&s) : 0, want = seed;
            uint64_t want_nl = 0;
            for (size_t len = 0; len <= N && ok; len++) {
                ok = crc_all_agree(t, seed, p, len, want, want_nl);
                if (len < N) {
                    want = ef__crc32c_sw(want, p + len, 1);
                    want_nl += p[len] == '\n';
                }
            }
        }
    }
    free(buf);
}

/* Sizes around each block edge (768 = three 256-byte runs, 24576 = three 8 KiB runs) and large
 * odd ones up to 8 MiB, at odd offsets, each against the table. */
static void test_crc32c_3way_large(ef_t *t) {
    static const size_t sizes[] = {767,
                                   768,
                                   769,
                                   24575,
                                   24576,
                                   24577,
                                   24576 + 767,
                                   24576 + 768 + 5,
                                   2 * 24576,
                                   (1u << 20) + 1,
                                   3000001,
                                   (5u << 20) + 333,
                                   (8u << 20) - 1,
                                   8u << 20};
    size_t cap = (8u << 20) + 16;
    uint8_t *buf = malloc(cap);
    uint64_t s = 0x3A8;
    for (size_t i = 0; i < cap; i += 4096)
        fill_lines(buf + i, i + 4096 <= cap ? 4096 : cap - i, &s);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t off = (k * 5) % 16;
        if (sizes[k] + off > cap)
            off = 0;
        const uint8_t *p = buf + off;
        uint32_t seed = k % 2 ? (uint32_t)ef_test_rand(&s) : 0;
        crc_all_agree(t, seed, p, sizes[k], ef__crc32c_sw(seed, p, sizes[k]),
                      naive_newlines(p, sizes[k]));
    }
    free(buf);
}

/* A buffer cut at random points into up to 9 pieces (so pieces land on either side of every
 * block edge), chained through each implementation: equals the whole, and the counts add up. */
static void test_crc32c_3way_chained(ef_t *t) {
    enum { N = 200000 };
    uint8_t *buf = malloc(N);
    uint64_t s = 0x3A9;
    for (size_t i = 0; i < N; i += 1000)
        fill_lines(buf + i, 1000, &s);
    uint32_t whole = ef__crc32c_sw(0, buf, N);
    uint64_t whole_nl = naive_newlines(buf, N);
    for (int round = 0; round < 60; round++) {
        size_t cuts[10], ncut = 1 + ef_test_rand(&s) % 8;
        cuts[0] = 0;
        for (size_t i = 1; i <= ncut; i++) {
            /* mostly small pieces now and then, so short runs and tails are exercised too */
            size_t span = round % 3 ? N : 3000;
            cuts[i] = cuts[i - 1] + ef_test_rand(&s) % span;
            if (cuts[i] > N)
                cuts[i] = N;
        }
        cuts[ncut + 1] = N;
        for (int impl = -1; impl <= EF__CRC_AVX2; impl++) { /* -1: the public calls */
            uint32_t c = 0, cl = 0;
            uint64_t total = 0;
            int have = 1, have_lines = 1;
            for (size_t i = 0; i <= ncut; i++) {
                const uint8_t *p = buf + cuts[i];
                size_t len = cuts[i + 1] - cuts[i];
                uint64_t nl = 0;
                if (impl < 0) {
                    c = ef_crc32c(c, p, len);
                    cl = ef_crc32c_lines(cl, p, len, &nl);
                } else {
                    have = have && ef__crc32c_with(impl, &c, p, len) == EF_OK;
                    have_lines =
                        have_lines && ef__crc32c_lines_with(impl, &cl, p, len, &nl) == EF_OK;
                }
                total += nl;
            }
            if (have)
                CHECK_EQ(t, c, whole);
            if (have_lines) {
                CHECK_EQ(t, cl, whole);
                CHECK_EQ(t, total, whole_nl);
            }
        }
    }
    free(buf);
}

/* The paths this test run relies on exist here: on the machines we run (x86-64 with AVX2) a test
 * that quietly skipped the three-chain code would prove nothing. */
static void test_crc32c_3way_present(ef_t *t) {
    uint32_t c = 0;
    uint64_t nl = 0;
    CHECK_EQ(t, ef__crc32c_with(EF__CRC_PORTABLE, &c, "a", 1), EF_OK);
    CHECK_EQ(t, ef__crc32c_with(99, &c, "a", 1), EF_EINVAL);
    CHECK_EQ(t, ef__crc32c_with(EF__CRC_AVX2, &c, "a", 1), EF_EINVAL);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul")) {
        CHECK_EQ(t, ef__crc32c_with(EF__CRC_CLMUL, &c, "a", 1), EF_OK);
        CHECK_EQ(t, ef__crc32c_lines_with(EF__CRC_CLMUL, &c, "a", 1, &nl), EF_OK);
    }
#endif
}

/* ef__frame_encode with a known payload CRC: written as given, so a right one parses and a
 * wrong one is the peer's EF_ECHECKSUM; the header is otherwise ef_frame_encode's. */
static void test_frame_encode_known_crc(ef_t *t) {
    static const uint8_t p[] = "payload";
    uint8_t a[EF_FRAME_HEADER_SIZE + sizeof p], b[EF_FRAME_HEADER_SIZE + sizeof p];
    struct iovec iov[2];
    uint32_t crc = ef_crc32c(0, p, sizeof p), wrong = crc ^ 0x80u;
    CHECK_EQ(t, ef_frame_encode(a, EF_FRAME_RESULT, 1, 2, 3, 4, p, sizeof p, iov), 2);
    CHECK_EQ(t, ef__frame_encode(b, EF_FRAME_RESULT, 1, 2, 3, 4, p, sizeof p, &crc, iov), 2);
    CHECK(t, memcmp(a, b, EF_FRAME_HEADER_SIZE) == 0);
    memcpy(b + EF_FRAME_HEADER_SIZE, p, sizeof p);
    ef_frame f;
    CHECK_EQ(t, ef_frame_parse(b, sizeof b, 4096, &f), (ptrdiff_t)sizeof b);
    CHECK_EQ(t, ef__frame_encode(b, EF_FRAME_RESULT, 1, 2, 3, 4, p, sizeof p, &wrong, iov), 2);
    CHECK_EQ(t, ef_frame_parse(b, sizeof b, 4096, &f), EF_ECHECKSUM);
    /* the header checksum still holds: only the payload is blamed */
    CHECK_EQ(t, ef_frame_parse(b, EF_FRAME_HEADER_SIZE, 4096, &f), EF_ENEEDMORE);
    CHECK_EQ(t, ef__frame_encode(b, 0, 0, 0, 0, 0, p, sizeof p, &crc, iov), EF_EINVAL);
}

void suite_frame(ef_t *t) {
    RUN(t, test_crc32c_known_answers);
    RUN(t, test_crc32c_hw_matches_sw);
    RUN(t, test_crc32c_streaming);
    RUN(t, test_crc32c_lines_small);
    RUN(t, test_crc32c_lines_large);
    RUN(t, test_crc32c_lines_copy);
    RUN(t, test_crc32c_3way_present);
    RUN(t, test_crc32c_3way_every_length);
    RUN(t, test_crc32c_3way_large);
    RUN(t, test_crc32c_3way_chained);
    RUN(t, test_frame_layout);
    RUN(t, test_frame_encode_errors);
    RUN(t, test_frame_encode_known_crc);
    RUN(t, test_frame_round_trip_each_type);
    RUN(t, test_frame_byte_at_a_time);
    RUN(t, test_frame_back_to_back);
    RUN(t, test_frame_bad_magic_early);
    RUN(t, test_frame_bad_version);
    RUN(t, test_frame_unknown_type);
    RUN(t, test_frame_header_checksum);
    RUN(t, test_frame_too_long);
    RUN(t, test_frame_payload_checksum);
    RUN(t, test_frame_guard_page);
    RUN(t, test_frame_guards_compressed_payload);
    RUN(t, test_frame_garbage);
}
