/* libFuzzer target: the handshake's proof check (ef_auth_verify), which runs on bytes a peer
 * sent before it is authenticated. The input is split into a role, two nonces, a proof and a
 * cookie; the check must accept exactly the proof ef_auth_proof makes for them, and nothing else
 * (one flipped bit, another role, swapped nonces). */
#include "elasticflow.h"
#include "fuzz_check.h"

#include <string.h>

enum { N = EF_AUTH_NONCE_SIZE, P = EF_SHA256_SIZE, FIXED = 1 + 2 * N + P };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t fields[FIXED] = {0};
    memcpy(fields, data, size < FIXED ? size : FIXED);
    const uint8_t *cookie = size > FIXED ? data + FIXED : NULL;
    size_t cookie_len = size > FIXED ? size - FIXED : 0;
    uint8_t role = fields[0];
    const uint8_t *peer = fields + 1, *own = fields + 1 + N, *proof = fields + 1 + 2 * N;

    uint8_t expected[P];
    ef_auth_proof(cookie, cookie_len, role, peer, own, expected);
    int matches = memcmp(expected, proof, P) == 0;
    FUZZ_CHECK(ef_auth_verify(cookie, cookie_len, role, peer, own, proof) ==
               (matches ? EF_OK : EF_EAUTH));
    FUZZ_CHECK(ef_auth_verify(cookie, cookie_len, role, peer, own, expected) == EF_OK);

    uint8_t flipped[P];
    memcpy(flipped, expected, P);
    flipped[(size ? data[size - 1] : 0) % P] ^= (uint8_t)(1u << (size % 8));
    FUZZ_CHECK(ef_auth_verify(cookie, cookie_len, role, peer, own, flipped) == EF_EAUTH);
    FUZZ_CHECK(ef_auth_verify(cookie, cookie_len, (uint8_t)(role ^ 1), peer, own, expected) ==
               EF_EAUTH);
    if (memcmp(peer, own, N) != 0)
        FUZZ_CHECK(ef_auth_verify(cookie, cookie_len, role, own, peer, expected) == EF_EAUTH);
    return 0;
}
