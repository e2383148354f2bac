/* CRC32C (Castagnoli): the checksum of frames (src/frame.c) and anything else that wants one.
 *
 * Implementations that must agree bit for bit: the SSE4.2 crc32 instruction in three interleaved
 * chains joined with PCLMULQDQ (large buffers), the same instruction in one chain (small buffers,
 * and CPUs without PCLMULQDQ), and a byte-wise table for other CPUs. The table and the join
 * constants are in the source rather than built at start-up because the core has no global
 * mutable state (and so no "initialised yet?" race to get wrong). */
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>
#endif

/* Reflected polynomial 0x82F63B78: entry i is the CRC register after shifting byte i through it. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xF26B8303u, 0xE13B70F7u, 0x1350F3F4u, 0xC79A971Fu, 0x35F1141Cu, 0x26A1E7E8u,
    0xD4CA64EBu, 0x8AD958CFu, 0x78B2DBCCu, 0x6BE22838u, 0x9989AB3Bu, 0x4D43CFD0u, 0xBF284CD3u,
    0xAC78BF27u, 0x5E133C24u, 0x105EC76Fu, 0xE235446Cu, 0xF165B798u, 0x030E349Bu, 0xD7C45070u,
    0x25AFD373u, 0x36FF2087u, 0xC494A384u, 0x9A879FA0u, 0x68EC1CA3u, 0x7BBCEF57u, 0x89D76C54u,
    0x5D1D08BFu, 0xAF768BBCu, 0xBC267848u, 0x4E4DFB4Bu, 0x20BD8EDEu, 0xD2D60DDDu, 0xC186FE29u,
    0x33ED7D2Au, 0xE72719C1u, 0x154C9AC2u, 0x061C6936u, 0xF477EA35u, 0xAA64D611u, 0x580F5512u,
    0x4B5FA6E6u, 0xB93425E5u, 0x6DFE410Eu, 0x9F95C20Du, 0x8CC531F9u, 0x7EAEB2FAu, 0x30E349B1u,
    0xC288CAB2u, 0xD1D83946u, 0x23B3BA45u, 0xF779DEAEu, 0x05125DADu, 0x1642AE59u, 0xE4292D5Au,
    0xBA3A117Eu, 0x4851927Du, 0x5B016189u, 0xA96AE28Au, 0x7DA08661u, 0x8FCB0562u, 0x9C9BF696u,
    0x6EF07595u, 0x417B1DBCu, 0xB3109EBFu, 0xA0406D4Bu, 0x522BEE48u, 0x86E18AA3u, 0x748A09A0u,
    0x67DAFA54u, 0x95B17957u, 0xCBA24573u, 0x39C9C670u, 0x2A993584u, 0xD8F2B687u, 0x0C38D26Cu,
    0xFE53516Fu, 0xED03A29Bu, 0x1F682198u, 0x5125DAD3u, 0xA34E59D0u, 0xB01EAA24u, 0x42752927u,
    0x96BF4DCCu, 0x64D4CECFu, 0x77843D3Bu, 0x85EFBE38u, 0xDBFC821Cu, 0x2997011Fu, 0x3AC7F2EBu,
    0xC8AC71E8u, 0x1C661503u, 0xEE0D9600u, 0xFD5D65F4u, 0x0F36E6F7u, 0x61C69362u, 0x93AD1061u,
    0x80FDE395u, 0x72966096u, 0xA65C047Du, 0x5437877Eu, 0x4767748Au, 0xB50CF789u, 0xEB1FCBADu,
    0x197448AEu, 0x0A24BB5Au, 0xF84F3859u, 0x2C855CB2u, 0xDEEEDFB1u, 0xCDBE2C45u, 0x3FD5AF46u,
    0x7198540Du, 0x83F3D70Eu, 0x90A324FAu, 0x62C8A7F9u, 0xB602C312u, 0x44694011u, 0x5739B3E5u,
    0xA55230E6u, 0xFB410CC2u, 0x092A8FC1u, 0x1A7A7C35u, 0xE811FF36u, 0x3CDB9BDDu, 0xCEB018DEu,
    0xDDE0EB2Au, 0x2F8B6829u, 0x82F63B78u, 0x709DB87Bu, 0x63CD4B8Fu, 0x91A6C88Cu, 0x456CAC67u,
    0xB7072F64u, 0xA457DC90u, 0x563C5F93u, 0x082F63B7u, 0xFA44E0B4u, 0xE9141340u, 0x1B7F9043u,
    0xCFB5F4A8u, 0x3DDE77ABu, 0x2E8E845Fu, 0xDCE5075Cu, 0x92A8FC17u, 0x60C37F14u, 0x73938CE0u,
    0x81F80FE3u, 0x55326B08u, 0xA759E80Bu, 0xB4091BFFu, 0x466298FCu, 0x1871A4D8u, 0xEA1A27DBu,
    0xF94AD42Fu, 0x0B21572Cu, 0xDFEB33C7u, 0x2D80B0C4u, 0x3ED04330u, 0xCCBBC033u, 0xA24BB5A6u,
    0x502036A5u, 0x4370C551u, 0xB11B4652u, 0x65D122B9u, 0x97BAA1BAu, 0x84EA524Eu, 0x7681D14Du,
    0x2892ED69u, 0xDAF96E6Au, 0xC9A99D9Eu, 0x3BC21E9Du, 0xEF087A76u, 0x1D63F975u, 0x0E330A81u,
    0xFC588982u, 0xB21572C9u, 0x407EF1CAu, 0x532E023Eu, 0xA145813Du, 0x758FE5D6u, 0x87E466D5u,
    0x94B49521u, 0x66DF1622u, 0x38CC2A06u, 0xCAA7A905u, 0xD9F75AF1u, 0x2B9CD9F2u, 0xFF56BD19u,
    0x0D3D3E1Au, 0x1E6DCDEEu, 0xEC064EEDu, 0xC38D26C4u, 0x31E6A5C7u, 0x22B65633u, 0xD0DDD530u,
    0x0417B1DBu, 0xF67C32D8u, 0xE52CC12Cu, 0x1747422Fu, 0x49547E0Bu, 0xBB3FFD08u, 0xA86F0EFCu,
    0x5A048DFFu, 0x8ECEE914u, 0x7CA56A17u, 0x6FF599E3u, 0x9D9E1AE0u, 0xD3D3E1ABu, 0x21B862A8u,
    0x32E8915Cu, 0xC083125Fu, 0x144976B4u, 0xE622F5B7u, 0xF5720643u, 0x07198540u, 0x590AB964u,
    0xAB613A67u, 0xB831C993u, 0x4A5A4A90u, 0x9E902E7Bu, 0x6CFBAD78u, 0x7FAB5E8Cu, 0x8DC0DD8Fu,
    0xE330A81Au, 0x115B2B19u, 0x020BD8EDu, 0xF0605BEEu, 0x24AA3F05u, 0xD6C1BC06u, 0xC5914FF2u,
    0x37FACCF1u, 0x69E9F0D5u, 0x9B8273D6u, 0x88D28022u, 0x7AB90321u, 0xAE7367CAu, 0x5C18E4C9u,
    0x4F48173Du, 0xBD23943Eu, 0xF36E6F75u, 0x0105EC76u, 0x12551F82u, 0xE03E9C81u, 0x34F4F86Au,
    0xC69F7B69u, 0xD5CF889Du, 0x27A40B9Eu, 0x79B737BAu, 0x8BDCB4B9u, 0x988C474Du, 0x6AE7C44Eu,
    0xBE2DA0A5u, 0x4C4623A6u, 0x5F16D052u, 0xAD7D5351u,
};

/* A byte at a time is slow (~1 byte/cycle at best) but it is only the fallback: every x86-64 CPU
 * since 2008 takes the hardware path. Exposed so tests can prove both paths agree. */
uint32_t ef__crc32c_sw(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    /* The stored CRC is the register inverted; undo that so a previous result continues a stream.
     */
    uint32_t c = ~crc;
    while (len--)
        c = crc32c_table[(c ^ *p++) & 0xFFu] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)
/* ------------------------------------------------------------------------------------------ */
/* Three interleaved streams                                                                  */
/* ------------------------------------------------------------------------------------------ */
/*
 * One crc32 chain is bound by the instruction's latency (3 cycles per 8 bytes) while the CPU can
 * start one every cycle. So a block of 3 * n bytes is cut into three runs of n bytes, each its
 * own chain (the first seeded with the running CRC, the other two with 0), and joined at the end:
 * the CRC register is linear, so the register after a|b|c is
 *     shift(a, 2n) ^ shift(b, n) ^ c,   shift(r, n) = r * x^(8n) mod P (n zero bytes fed to r).
 * PCLMULQDQ does a shift in two instructions: the carry-less product of r and x^(8n-33) mod P,
 * fed to crc32 as one 64-bit word, is r * x^(8n-33) * x^33 mod P (the reflected product carries
 * one factor of x, crc32 on a word another x^32), fully reduced. The constants are fixed because
 * the block sizes are: 8 KiB runs (24 KiB blocks stay in L1 and make the join cost nothing),
 * then 256-byte runs for what is left of a buffer, then one chain for the last < 768 bytes, which
 * is also all that small buffers ever see, so they run the same code as before.
 *
 * Constants are x^(8n-33) mod P bit-reflected (P = 0x1EDC6F41 with x^32), made by
 *     P=0x11EDC6F41; r=1; (e times: r<<=1; if r>>32: r^=P); bit-reverse the low 32 bits
 * and proven by the tests, which compare every block size with the byte-wise table.
 */
enum { LONG_RUN = 8192, SHORT_RUN = 256 };
#define K_LONG1 0x54A86326u  /* x^(8*8192-33) */
#define K_LONG2 0x1DC403CCu  /* x^(16*8192-33) */
#define K_SHORT1 0xB9E02B86u /* x^(8*256-33) */
#define K_SHORT2 0xDD7E3B0Cu /* x^(16*256-33) */

/* shift(a, 2n) ^ shift(b, n), given k2 = x^(16n-33) and k1 = x^(8n-33). */
__attribute__((target("sse4.2,pclmul"))) static inline uint64_t join2(uint64_t a, uint64_t b,
                                                                      uint32_t k2, uint32_t k1) {
    __m128i pa =
        _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)a), _mm_cvtsi32_si128((int)k2), 0x00);
    __m128i pb =
        _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)b), _mm_cvtsi32_si128((int)k1), 0x00);
    /* crc32 is linear in its word, so one instruction reduces both products */
    return _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(_mm_xor_si128(pa, pb)));
}

/* The register c continued over 3 * n bytes at p, as three chains. Inlined with n constant. */
__attribute__((target("sse4.2,pclmul"), always_inline)) static inline uint64_t
crc3_block(uint64_t c, const uint8_t *p, size_t n, uint32_t k2, uint32_t k1) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < n; i += 8) {
        c = _mm_crc32_u64(c, ef__load64(p + i));
        c1 = _mm_crc32_u64(c1, ef__load64(p + n + i));
        c2 = _mm_crc32_u64(c2, ef__load64(p + 2 * n + i));
    }
    return join2(c, c1, k2, k1) ^ c2;
}

/* One chain: the whole of a buffer without PCLMULQDQ, the last < 768 bytes with it. */
__attribute__((target("sse4.2"))) static uint32_t crc1_tail(uint64_t c, const uint8_t *p,
                                                            size_t len) {
    for (; len >= 8; p += 8, len -= 8)
        c = _mm_crc32_u64(c, ef__load64(p)); /* the instruction accepts any alignment */
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw1(uint32_t crc, const void *data,
                                                             size_t len) {
    return crc1_tail(~crc, data, len);
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc32c_hw3(uint32_t crc, const void *data,
                                                                    size_t len) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    for (; len >= 3 * LONG_RUN; p += 3 * LONG_RUN, len -= 3 * LONG_RUN)
        c = crc3_block(c, p, LONG_RUN, K_LONG2, K_LONG1);
    for (; len >= 3 * SHORT_RUN; p += 3 * SHORT_RUN, len -= 3 * SHORT_RUN)
        c = crc3_block(c, p, SHORT_RUN, K_SHORT2, K_SHORT1);
    return crc1_tail(c, p, len);
}

static int have_clmul(void) {
    return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
}
#endif

EF_API uint32_t ef_crc32c(uint32_t crc, const void *data, size_t len) {
    if (len == 0)
        return crc; /* also makes data == NULL harmless for empty input */
#if defined(__x86_64__)
    /* Reads a word libgcc/compiler-rt fills before main: cheap enough to ask on every call, and
     * it keeps the choice out of any state of our own. */
    if (__builtin_cpu_supports("sse4.2")) {
        /* under one short block there is only the single chain: go straight to it */
        if (len >= 3 * SHORT_RUN && __builtin_cpu_supports("pclmul"))
            return crc32c_hw3(crc, data, len);
        return crc32c_hw1(crc, data, len);
    }
#endif
    return ef__crc32c_sw(crc, data, len);
}

/* ------------------------------------------------------------------------------------------ */
/* CRC32C and line count in one pass                                                          */
/* ------------------------------------------------------------------------------------------ */
/*
 * A parcel's bytes are read once for its receipt: the CRC and the lines it holds. The crc32
 * chains leave the vector ports idle, so the compares ride along for free, where a second pass
 * (memchr or a count) would read the buffer again. The CRC is made exactly as ef_crc32c makes it
 * (the same blocks, chains and joins) so the two can never disagree.
 *
 * Measured with a throwaway program (not kept): a buffer of generated text, a newline every ~37
 * bytes, best of 5 passes (64 calls on 4 MiB, 4 on 64 MiB), gcc 12 -O3, on 2 shared vCPUs of an
 * AMD EPYC (AVX2, SSE4.2, PCLMULQDQ); MB/s before -> after three chains, the range over 10 runs
 * alternating the old and new library (the shared machine spreads them widely; typical in []):
 *                    4 MiB                              64 MiB
 *   ef_crc32c        5200-7800 [7600] -> 11700-22000 [20700]  4300-6800 [5500] -> 5400-11100 [8400]
 *   ef_crc32c_lines  5200-7700 [7400] -> 15500-22400 [20600]  3600-6800 [5600] -> 6700-10300 [8300]
 * The count is still free. 64 MiB is DRAM-bound: a plain summing loop reads 7300-9600 MB/s there
 * (28000-49000 from cache at 4 MiB). Small buffers run the old single-chain code: 8..700 bytes
 * per call as before, within noise (+-6%, the sign changing between runs; best of 54 passes of
 * 2M calls), 1000 bytes 124 -> 67 ns. Unrolling the three-chain loop 4x measured the same, so
 * it is left to the compiler. From before, with one chain (MB/s, 64 MiB):
 *   ef_crc32c, then a memchr loop         ~1800 (memchr restarts every line)
 *   ef_crc32c_lines, portable table       250-340
 */

#define ONES 0x0101010101010101ull
#define LOW7S 0x7f7f7f7f7f7f7f7full
#define HIGHS 0x8080808080808080ull

/* '\n' bytes among the 8 in x: the high bit of each byte of z is set exactly where x has one
 * (adding to the low 7 bits cannot carry across bytes, so no byte disturbs another). */
static inline uint64_t newlines8(uint64_t x) {
    uint64_t t = x ^ (ONES * '\n');
    uint64_t z = ~(((t & LOW7S) + LOW7S) | t) & HIGHS;
    return (uint64_t)__builtin_popcountll(z);
}

static uint32_t crc32c_lines_sw(uint32_t crc, const uint8_t *p, size_t len, uint64_t *newlines) {
    uint32_t c = ~crc;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        c = crc32c_table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
        n += p[i] == '\n';
    }
    *newlines = n;
    return ~c;
}

#if defined(__x86_64__)
/* The last len < 32 bytes of the vector paths: words, then bytes. */
__attribute__((target("sse4.2,popcnt"))) static inline uint32_t
lines_tail(uint64_t c, const uint8_t *p, size_t len, uint64_t *n) {
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        *n += newlines8(w);
    }
    uint32_t c32 = (uint32_t)c;
    for (; len; p++, len--) {
        c32 = _mm_crc32_u8(c32, *p);
        *n += *p == '\n';
    }
    return ~c32;
}

/* One chain, 32 bytes a turn: all of a buffer without PCLMULQDQ, the last < 768 bytes with it.
 * Takes the register c (the CRC inverted) so the three-chain path can end with it; adds to *n. */
__attribute__((target("sse4.2,popcnt"))) static uint32_t lines1_sse42(uint64_t c, const uint8_t *p,
                                                                      size_t len, uint64_t *n) {
    const __m128i nl = _mm_set1_epi8('\n');
    uint64_t k = *n; /* a local: stores through n might alias the bytes read, so keep it out */
    for (; len >= 32; p += 32, len -= 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)p);
        __m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
        uint32_t m = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, nl)) |
                     (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, nl)) << 16;
        k += (uint64_t)__builtin_popcount(m);
        uint64_t w[4];
        memcpy(w, p, 32); /* the instruction accepts any alignment; memcpy keeps C from caring */
        c = _mm_crc32_u64(c, w[0]);
        c = _mm_crc32_u64(c, w[1]);
        c = _mm_crc32_u64(c, w[2]);
        c = _mm_crc32_u64(c, w[3]);
    }
    uint32_t r = lines_tail(c, p, len, &k);
    *n = k;
    return r;
}

/* One chain, 64 bytes a turn: the last < 768 bytes of the AVX2 path, so all that small buffers
 * see. */
__attribute__((target("avx2,sse4.2,popcnt"))) static uint32_t
lines1_avx2(uint64_t c, const uint8_t *p, size_t len, uint64_t *n) {
    const __m256i nl = _mm256_set1_epi8('\n');
    uint64_t k = *n; /* as in lines1_sse42 */
    for (; len >= 64; p += 64, len -= 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)p);
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + 32));
        uint64_t m = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, nl)) |
                     (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, nl)) << 32;
        k += (uint64_t)__builtin_popcountll(m);
        uint64_t w[8];
        memcpy(w, p, 64);
        for (int i = 0; i < 8; i++)
            c = _mm_crc32_u64(c, w[i]);
    }
    uint32_t r = lines_tail(c, p, len, &k);
    *n = k;
    return r;
}

/*
 * Three chains (as crc3_block) with the count riding along. The count stays in vector registers:
 * the three compares are summed per byte (at most 3), and psadbw folds them into 64-bit lanes,
 * so no movemask or popcnt competes with crc32 for the scalar ports. n is a multiple of the
 * vector width; *acc holds the count in its 64-bit lanes.
 */
__attribute__((target("sse4.2,pclmul"), always_inline)) static inline uint64_t
lines3_block_sse2(uint64_t c, const uint8_t *p, size_t n, uint32_t k2, uint32_t k1, __m128i *acc) {
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < n; i += 16) {
        __m128i e0 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), nl);
        __m128i e1 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + n + i)), nl);
        __m128i e2 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 2 * n + i)), nl);
        __m128i k = _mm_sub_epi8(zero, _mm_add_epi8(_mm_add_epi8(e0, e1), e2));
        *acc = _mm_add_epi64(*acc, _mm_sad_epu8(k, zero));
        for (size_t j = i; j < i + 16; j += 8) {
            c = _mm_crc32_u64(c, ef__load64(p + j));
            c1 = _mm_crc32_u64(c1, ef__load64(p + n + j));
            c2 = _mm_crc32_u64(c2, ef__load64(p + 2 * n + j));
        }
    }
    return join2(c, c1, k2, k1) ^ c2;
}

/* d: when not NULL, the 3n bytes are also stored there (a copy in the same pass: the loads
 * serve the compares, the stores and, from L1, the crc32s). */
__attribute__((target("avx2,sse4.2,pclmul"), always_inline)) static inline uint64_t
lines3_block_avx2(uint64_t c, const uint8_t *p, uint8_t *d, size_t n, uint32_t k2, uint32_t k1,
                  __m256i *acc) {
    const __m256i nl = _mm256_set1_epi8('\n'), zero = _mm256_setzero_si256();
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < n; i += 32) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(p + n + i));
        __m256i v2 = _mm256_loadu_si256((const __m256i *)(p + 2 * n + i));
        if (d) {
            _mm256_storeu_si256((__m256i *)(d + i), v0);
            _mm256_storeu_si256((__m256i *)(d + n + i), v1);
            _mm256_storeu_si256((__m256i *)(d + 2 * n + i), v2);
        }
        __m256i e0 = _mm256_cmpeq_epi8(v0, nl);
        __m256i e1 = _mm256_cmpeq_epi8(v1, nl);
        __m256i e2 = _mm256_cmpeq_epi8(v2, nl);
        __m256i k = _mm256_sub_epi8(zero, _mm256_add_epi8(_mm256_add_epi8(e0, e1), e2));
        *acc = _mm256_add_epi64(*acc, _mm256_sad_epu8(k, zero));
        for (size_t j = i; j < i + 32; j += 8) {
            c = _mm_crc32_u64(c, ef__load64(p + j));
            c1 = _mm_crc32_u64(c1, ef__load64(p + n + j));
            c2 = _mm_crc32_u64(c2, ef__load64(p + 2 * n + j));
        }
    }
    return join2(c, c1, k2, k1) ^ c2;
}

__attribute__((target("sse4.2,pclmul,popcnt"))) static uint32_t
crc32c_lines_clmul(uint32_t crc, const uint8_t *p, size_t len, uint64_t *newlines) {
    uint64_t c = ~crc, n = 0;
    __m128i acc = _mm_setzero_si128();
    for (; len >= 3 * LONG_RUN; p += 3 * LONG_RUN, len -= 3 * LONG_RUN)
        c = lines3_block_sse2(c, p, LONG_RUN, K_LONG2, K_LONG1, &acc);
    for (; len >= 3 * SHORT_RUN; p += 3 * SHORT_RUN, len -= 3 * SHORT_RUN)
        c = lines3_block_sse2(c, p, SHORT_RUN, K_SHORT2, K_SHORT1, &acc);
    n = (uint64_t)_mm_cvtsi128_si64(acc) + (uint64_t)_mm_extract_epi64(acc, 1);
    uint32_t r = lines1_sse42(c, p, len, &n);
    *newlines = n;
    return r;
}

/* d: NULL, or where the bytes are copied in the same pass (ef_crc32c_lines_copy). */
__attribute__((target("avx2,sse4.2,pclmul,popcnt"), always_inline)) static inline uint32_t
crc32c_lines_avx2_to(uint32_t crc, const uint8_t *p, uint8_t *d, size_t len, uint64_t *newlines) {
    uint64_t c = ~crc, n = 0;
    __m256i acc = _mm256_setzero_si256();
    for (; len >= 3 * LONG_RUN; p += 3 * LONG_RUN, len -= 3 * LONG_RUN, d = d ? d + 3 * LONG_RUN : d)
        c = lines3_block_avx2(c, p, d, LONG_RUN, K_LONG2, K_LONG1, &acc);
    for (; len >= 3 * SHORT_RUN; p += 3 * SHORT_RUN, len -= 3 * SHORT_RUN, d = d ? d + 3 * SHORT_RUN : d)
        c = lines3_block_avx2(c, p, d, SHORT_RUN, K_SHORT2, K_SHORT1, &acc);
    __m128i a2 = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    n = (uint64_t)_mm_cvtsi128_si64(a2) + (uint64_t)_mm_extract_epi64(a2, 1);
    if (d && len)
        memcpy(d, p, len);
    uint32_t r = lines1_avx2(c, p, len, &n);
    *newlines = n;
    return r;
}

__attribute__((target("avx2,sse4.2,pclmul,popcnt"))) static uint32_t
crc32c_lines_avx2(uint32_t crc, const uint8_t *p, size_t len, uint64_t *newlines) {
    return crc32c_lines_avx2_to(crc, p, NULL, len, newlines);
}

__attribute__((target("avx2,sse4.2,pclmul,popcnt"))) static uint32_t
crc32c_lines_copy_avx2(uint32_t crc, uint8_t *d, const uint8_t *p, size_t len, uint64_t *newlines) {
    return crc32c_lines_avx2_to(crc, p, d, len, newlines);
}

static int have_sse42(void) {
    return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
}
static int have_lines_clmul(void) { return have_sse42() && __builtin_cpu_supports("pclmul"); }
/* Every AVX2 CPU has PCLMULQDQ; asking costs nothing and keeps a masked-off VM honest. */
static int have_avx2(void) { return have_lines_clmul() && __builtin_cpu_supports("avx2"); }
#endif

int ef__crc32c_lines_with(int impl, uint32_t *crc, const void *data, size_t len,
                          uint64_t *newlines) {
    switch (impl) {
    case EF__CRC_PORTABLE: *crc = crc32c_lines_sw(*crc, data, len, newlines); return EF_OK;
#if defined(__x86_64__)
    case EF__CRC_SSE42:
        if (!have_sse42())
            return EF_EINVAL;
        *newlines = 0;
        *crc = lines1_sse42(~*crc, data, len, newlines);
        return EF_OK;
    case EF__CRC_CLMUL:
        if (!have_lines_clmul())
            return EF_EINVAL;
        *crc = crc32c_lines_clmul(*crc, data, len, newlines);
        return EF_OK;
    case EF__CRC_AVX2:
        if (!have_avx2())
            return EF_EINVAL;
        *crc = crc32c_lines_avx2(*crc, data, len, newlines);
        return EF_OK;
#endif
    default: return EF_EINVAL;
    }
}

int ef__crc32c_with(int impl, uint32_t *crc, const void *data, size_t len) {
    switch (impl) {
    case EF__CRC_PORTABLE: *crc = ef__crc32c_sw(*crc, data, len); return EF_OK;
#if defined(__x86_64__)
    case EF__CRC_SSE42:
        if (!__builtin_cpu_supports("sse4.2"))
            return EF_EINVAL;
        *crc = crc32c_hw1(*crc, data, len);
        return EF_OK;
    case EF__CRC_CLMUL:
        if (!have_clmul())
            return EF_EINVAL;
        *crc = crc32c_hw3(*crc, data, len);
        return EF_OK;
#endif
    default: return EF_EINVAL; /* EF__CRC_AVX2 is the count's; the CRC alone has no use for it */
    }
}

EF_API uint32_t ef_crc32c_lines_copy(uint32_t crc, void *dst, const void *src, size_t len,
                                     uint64_t *newlines) {
#if defined(__x86_64__)
    if (len >= 3 * SHORT_RUN && have_avx2()) {
        uint64_t n = 0;
        crc = crc32c_lines_copy_avx2(crc, dst, src, len, &n);
        if (newlines)
            *newlines = n;
        return crc;
    }
#endif
    if (len)
        memcpy(dst, src, len);
    return ef_crc32c_lines(crc, src, len, newlines);
}

EF_API uint32_t ef_crc32c_lines(uint32_t crc, const void *data, size_t len, uint64_t *newlines) {
    uint64_t n = 0;
    if (len) {
#if defined(__x86_64__)
        /* asked on every call, as ef_crc32c does: no state of our own */
        if (have_avx2())
            crc = len >= 3 * SHORT_RUN ? crc32c_lines_avx2(crc, data, len, &n)
                                       : lines1_avx2(~crc, data, len, &n);
        else if (have_lines_clmul())
            crc = crc32c_lines_clmul(crc, data, len, &n);
        else if (have_sse42())
            crc = lines1_sse42(~crc, data, len, &n);
        else
#endif
            crc = crc32c_lines_sw(crc, data, len, &n);
    }
    if (newlines)
        *newlines = n;
    return crc;
}
