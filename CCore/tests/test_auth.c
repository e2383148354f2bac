/* SHA-256 against FIPS 180-4 / NIST examples, HMAC-SHA256 against RFC 4231, and the cookie
 * challenge-response built on them. */
#include "ef_test.h"

#include "elasticflow.h"

#include <stdlib.h>
#include <string.h>

static void hex_of(const uint8_t *d, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static int sha_is(const void *msg, size_t len, const char *want) {
    uint8_t h[EF_SHA256_SIZE];
    char hex[2 * EF_SHA256_SIZE + 1];
    ef_sha256(msg, len, h);
    hex_of(h, sizeof h, hex);
    if (strcmp(hex, want) != 0) {
        fprintf(stderr, "  sha256 got %s\n  want       %s\n", hex, want);
        return 0;
    }
    return 1;
}

static int hmac_is(const void *key, size_t key_len, const void *msg, size_t len, const char *want) {
    uint8_t h[EF_SHA256_SIZE];
    char hex[2 * EF_SHA256_SIZE + 1];
    ef_hmac_sha256(key, key_len, msg, len, h);
    hex_of(h, sizeof h, hex);
    if (strcmp(hex, want) != 0) {
        fprintf(stderr, "  hmac got %s\n  want     %s\n", hex, want);
        return 0;
    }
    return 1;
}

static void test_sha256_nist(ef_t *t) {
    CHECK(t, sha_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK(t, sha_is(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK(t, sha_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(t, sha_is(m448, strlen(m448),
                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    CHECK(t, sha_is(m896, strlen(m896),
                    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));
    uint8_t *million = malloc(1000000);
    CHECK(t, million != NULL);
    if (million) {
        memset(million, 'a', 1000000);
        CHECK(t, sha_is(million, 1000000,
                        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
        free(million);
    }
}

/* Lengths around the padding boundary (55/56 bytes leave no room for the length field). */
static void test_sha256_padding_edges(ef_t *t) {
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
    };
    uint8_t a[128];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK(t, sha_is(a, v[i].n, v[i].hex));
}

static void test_hmac_rfc4231(ef_t *t) {
    uint8_t k[131], d[50];

    memset(k, 0x0b, 20); /* case 1 */
    CHECK(t, hmac_is(k, 20, "Hi There", 8,
                     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));

    const char *d2 = "what do ya want for nothing?"; /* case 2 */
    CHECK(t, hmac_is("Jefe", 4, d2, strlen(d2),
                     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));

    memset(k, 0xaa, 20); /* case 3 */
    memset(d, 0xdd, 50);
    CHECK(t, hmac_is(k, 20, d, 50,
                     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"));

    for (int i = 0; i < 25; i++) /* case 4 */
        k[i] = (uint8_t)(i + 1);
    memset(d, 0xcd, 50);
    CHECK(t, hmac_is(k, 25, d, 50,
                     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"));

    memset(k, 0xaa, 131); /* case 6: key longer than a block is hashed first */
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK(t, hmac_is(k, 131, d6, strlen(d6),
                     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));

    const char *d7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm."; /* case 7 */
    CHECK(t, hmac_is(k, 131, d7, strlen(d7),
                     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"));
}

static void test_auth_nonce(ef_t *t) {
    uint8_t a[EF_AUTH_NONCE_SIZE], b[EF_AUTH_NONCE_SIZE];
    CHECK_EQ(t, ef_auth_nonce(a), EF_OK);
    CHECK_EQ(t, ef_auth_nonce(b), EF_OK);
    /* 2^-256 chance of a false failure. */
    CHECK(t, memcmp(a, b, sizeof a) != 0);
    CHECK_EQ(t, ef_auth_nonce(NULL), EF_EINVAL);
}

static void test_auth_proof_verify(ef_t *t) {
    const uint8_t cookie[] = "secret-cookie";
    const size_t clen = sizeof cookie - 1;
    uint8_t master_nonce[EF_AUTH_NONCE_SIZE], worker_nonce[EF_AUTH_NONCE_SIZE];
    for (int i = 0; i < EF_AUTH_NONCE_SIZE; i++) {
        master_nonce[i] = (uint8_t)i;
        worker_nonce[i] = (uint8_t)(32 + i);
    }

    /* Known answer (Python hmac): HMAC(cookie, 'M' || master_nonce || worker_nonce). */
    uint8_t proof[EF_SHA256_SIZE];
    char hex[2 * EF_SHA256_SIZE + 1];
    ef_auth_proof(cookie, clen, 'M', master_nonce, worker_nonce, proof);
    hex_of(proof, sizeof proof, hex);
    CHECK(t, strcmp(hex, "a6e2c196f50cf95c719559fd791803c673e2445b280adee9bfe9bb1b5bcafca4") == 0);

    /* The proof is the plain HMAC of the concatenation. */
    uint8_t msg[1 + 2 * EF_AUTH_NONCE_SIZE], direct[EF_SHA256_SIZE];
    msg[0] = 'M';
    memcpy(msg + 1, master_nonce, EF_AUTH_NONCE_SIZE);
    memcpy(msg + 1 + EF_AUTH_NONCE_SIZE, worker_nonce, EF_AUTH_NONCE_SIZE);
    ef_hmac_sha256(cookie, clen, msg, sizeof msg, direct);
    CHECK(t, memcmp(direct, proof, sizeof proof) == 0);

    /* The worker checks the master's proof: own nonce = worker's. */
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'M', master_nonce, worker_nonce, proof), EF_OK);

    const uint8_t wrong[] = "secret-cookiE";
    CHECK_EQ(t, ef_auth_verify(wrong, clen, 'M', master_nonce, worker_nonce, proof), EF_EAUTH);
    CHECK_EQ(t, ef_auth_verify(cookie, clen - 1, 'M', master_nonce, worker_nonce, proof), EF_EAUTH);
    /* A master's proof replayed as a worker's (reflection) fails. */
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'W', master_nonce, worker_nonce, proof), EF_EAUTH);
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'M', worker_nonce, master_nonce, proof), EF_EAUTH);
    for (int bit = 0; bit < 8 * EF_SHA256_SIZE; bit += 37) {
        uint8_t bad[EF_SHA256_SIZE];
        memcpy(bad, proof, sizeof bad);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK_EQ(t, ef_auth_verify(cookie, clen, 'M', master_nonce, worker_nonce, bad), EF_EAUTH);
    }
    uint8_t flipped_nonce[EF_AUTH_NONCE_SIZE];
    memcpy(flipped_nonce, worker_nonce, sizeof flipped_nonce);
    flipped_nonce[31] ^= 0x80;
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'M', master_nonce, flipped_nonce, proof), EF_EAUTH);

    /* Both directions with fresh nonces, as in a real handshake. */
    uint8_t mn[EF_AUTH_NONCE_SIZE], wn[EF_AUTH_NONCE_SIZE], mp[EF_SHA256_SIZE], wp[EF_SHA256_SIZE];
    CHECK_EQ(t, ef_auth_nonce(mn), EF_OK);
    CHECK_EQ(t, ef_auth_nonce(wn), EF_OK);
    ef_auth_proof(cookie, clen, 'M', mn, wn, mp);
    ef_auth_proof(cookie, clen, 'W', wn, mn, wp);
    CHECK(t, memcmp(mp, wp, sizeof mp) != 0);
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'M', mn, wn, mp), EF_OK);
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'W', wn, mn, wp), EF_OK);
    CHECK_EQ(t, ef_auth_verify(cookie, clen, 'W', wn, mn, mp), EF_EAUTH);
}

void suite_auth(ef_t *t) {
    RUN(t, test_sha256_nist);
    RUN(t, test_sha256_padding_edges);
    RUN(t, test_hmac_rfc4231);
    RUN(t, test_auth_nonce);
    RUN(t, test_auth_proof_verify);
}
