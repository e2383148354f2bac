/* Authentication: SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and the cookie challenge-response.
 *
 * Written here rather than linked from a crypto library so that the core depends on nothing but
 * libc, zstd and lz4; the volume hashed is tiny (a handshake per connection), so a plain portable
 * implementation is all that is needed. */
#include "internal.h"

#include <errno.h>
#include <sys/random.h>

typedef struct ef__sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes fed so far */
    uint8_t block[64];
    size_t used; /* bytes pending in block */
} ef__sha256;

static const uint32_t ef__sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static inline uint32_t ef__rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* SHA-256 is big-endian on the inside while the wire helpers in internal.h are little-endian. */
static inline uint32_t ef__be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void ef__put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void ef__sha256_compress(uint32_t h[8], const uint8_t block[64]) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = ef__be32(block + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ef__rotr(w[i - 15], 7) ^ ef__rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ef__rotr(w[i - 2], 17) ^ ef__rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ef__rotr(e, 6) ^ ef__rotr(e, 11) ^ ef__rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = k + S1 + ch + ef__sha256_k[i] + w[i];
        uint32_t S0 = ef__rotr(a, 2) ^ ef__rotr(a, 13) ^ ef__rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

static void ef__sha256_init(ef__sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, iv, sizeof iv);
    s->total = 0;
    s->used = 0;
}

static void ef__sha256_update(ef__sha256 *s, const uint8_t *data, size_t len) {
    s->total += len;
    if (s->used) {
        size_t take = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->block + s->used, data, take);
        s->used += take;
        data += take;
        len -= take;
        if (s->used < 64)
            return;
        ef__sha256_compress(s->h, s->block);
        s->used = 0;
    }
    /* Whole blocks straight from the input: no copy through the state. */
    for (; len >= 64; data += 64, len -= 64)
        ef__sha256_compress(s->h, data);
    if (len) {
        memcpy(s->block, data, len);
        s->used = len;
    }
}

static void ef__sha256_final(ef__sha256 *s, uint8_t out[EF_SHA256_SIZE]) {
    uint64_t bits = s->total * 8;
    s->block[s->used++] = 0x80;
    if (s->used > 56) {
        memset(s->block + s->used, 0, 64 - s->used);
        ef__sha256_compress(s->h, s->block);
        s->used = 0;
    }
    memset(s->block + s->used, 0, 56 - s->used);
    for (int i = 0; i < 8; i++)
        s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    ef__sha256_compress(s->h, s->block);
    for (int i = 0; i < 8; i++)
        ef__put_be32(out + 4 * i, s->h[i]);
}

EF_API void ef_sha256(const uint8_t *data, size_t len, uint8_t out[EF_SHA256_SIZE]) {
    ef__sha256 s;
    ef__sha256_init(&s);
    if (len)
        ef__sha256_update(&s, data, len);
    ef__sha256_final(&s, out);
}

/* HMAC over the concatenation of parts, so the proof can be computed without assembling
 * role || nonce || nonce in a temporary buffer. */
static void ef__hmac_parts(const uint8_t *key, size_t key_len, const ef_slice *parts, size_t n,
                           uint8_t out[EF_SHA256_SIZE]) {
    uint8_t k[64] = {0};
    if (key_len > 64)
        ef_sha256(key, key_len, k);
    else if (key_len)
        memcpy(k, key, key_len);

    uint8_t pad[64];
    ef__sha256 s;
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    ef__sha256_init(&s);
    ef__sha256_update(&s, pad, 64);
    for (size_t i = 0; i < n; i++)
        if (parts[i].len)
            ef__sha256_update(&s, parts[i].ptr, parts[i].len);
    uint8_t inner[EF_SHA256_SIZE];
    ef__sha256_final(&s, inner);

    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    ef__sha256_init(&s);
    ef__sha256_update(&s, pad, 64);
    ef__sha256_update(&s, inner, sizeof inner);
    ef__sha256_final(&s, out);
}

EF_API void ef_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                           uint8_t out[EF_SHA256_SIZE]) {
    ef_slice part = {data, len};
    ef__hmac_parts(key, key_len, &part, 1, out);
}

EF_API int ef_auth_nonce(uint8_t nonce[EF_AUTH_NONCE_SIZE]) {
    if (!nonce)
        return EF_EINVAL;
    size_t got = 0;
    while (got < EF_AUTH_NONCE_SIZE) {
        /* Blocking mode on purpose: before the pool is seeded a predictable nonce would let a
         * replayed proof through, and 32 bytes never return short once it is. */
        ssize_t n = getrandom(nonce + got, EF_AUTH_NONCE_SIZE - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return EF_ESYS;
        }
        got += (size_t)n;
    }
    return EF_OK;
}

EF_API void ef_auth_proof(const uint8_t *cookie, size_t cookie_len, uint8_t role,
                          const uint8_t own_nonce[EF_AUTH_NONCE_SIZE],
                          const uint8_t peer_nonce[EF_AUTH_NONCE_SIZE],
                          uint8_t out[EF_SHA256_SIZE]) {
    ef_slice parts[3] = {
        {&role, 1},
        {own_nonce, EF_AUTH_NONCE_SIZE},
        {peer_nonce, EF_AUTH_NONCE_SIZE},
    };
    ef__hmac_parts(cookie, cookie_len, parts, 3, out);
}

EF_API int ef_auth_verify(const uint8_t *cookie, size_t cookie_len, uint8_t peer_role,
                          const uint8_t peer_nonce[EF_AUTH_NONCE_SIZE],
                          const uint8_t own_nonce[EF_AUTH_NONCE_SIZE],
                          const uint8_t proof[EF_SHA256_SIZE]) {
    if (!peer_nonce || !own_nonce || !proof || (!cookie && cookie_len))
        return EF_EAUTH;
    uint8_t want[EF_SHA256_SIZE];
    /* The peer computed its proof with its own nonce first. */
    ef_auth_proof(cookie, cookie_len, peer_role, peer_nonce, own_nonce, want);
    /* Accumulate every difference so the time taken does not reveal the first wrong byte. */
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < EF_SHA256_SIZE; i++)
        diff |= (uint8_t)(want[i] ^ proof[i]);
    return diff == 0 ? EF_OK : EF_EAUTH;
}
