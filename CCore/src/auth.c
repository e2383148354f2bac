/* Authentication: SHA-256, HMAC-SHA256, the cookie challenge-response and the per-connection
 * session keys (HKDF-SHA256), all from OpenSSL's libcrypto.
 *
 * The core once carried its own SHA-256 and HMAC to depend on nothing but libc, zstd and lz4;
 * sealing every frame (session.c) needs AES-GCM, which is not something to write by hand, so the
 * core links libcrypto and takes the hashes from it too. The public names are unchanged (ABI). */
#include "internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sys/random.h>

EF_API void ef_sha256(const uint8_t *data, size_t len, uint8_t out[EF_SHA256_SIZE]) {
    static const uint8_t empty = 0;
    unsigned n = 0;
    /* EVP_Digest with the default provider cannot fail for SHA-256 short of memory; the output is
     * zeroed first so a failure can never leave a stale digest behind. */
    memset(out, 0, EF_SHA256_SIZE);
    (void)EVP_Digest(data ? data : &empty, len, out, &n, EVP_sha256(), NULL);
}

EF_API void ef_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                           uint8_t out[EF_SHA256_SIZE]) {
    static const uint8_t empty = 0;
    unsigned n = 0;
    memset(out, 0, EF_SHA256_SIZE);
    if (key_len > INT32_MAX)
        return;
    (void)HMAC(EVP_sha256(), key ? key : &empty, (int)key_len, data ? data : &empty, len, out, &n);
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
    uint8_t msg[1 + 2 * EF_AUTH_NONCE_SIZE];
    msg[0] = role;
    memcpy(msg + 1, own_nonce, EF_AUTH_NONCE_SIZE);
    memcpy(msg + 1 + EF_AUTH_NONCE_SIZE, peer_nonce, EF_AUTH_NONCE_SIZE);
    ef_hmac_sha256(cookie, cookie_len, msg, sizeof msg, out);
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
    /* Constant time: the time taken does not reveal the first wrong byte. */
    return CRYPTO_memcmp(want, proof, EF_SHA256_SIZE) == 0 ? EF_OK : EF_EAUTH;
}

EF_API int ef_session_derive(const uint8_t *cookie, size_t cookie_len,
                             const uint8_t master_nonce[EF_AUTH_NONCE_SIZE],
                             const uint8_t worker_nonce[EF_AUTH_NONCE_SIZE],
                             ef_session_keys *keys) {
    if (!master_nonce || !worker_nonce || !keys || (!cookie && cookie_len) || cookie_len == 0 ||
        cookie_len > INT32_MAX)
        return EF_EINVAL;
    static const char info[] = EF_SESSION_INFO;
    uint8_t salt[2 * EF_AUTH_NONCE_SIZE];
    memcpy(salt, master_nonce, EF_AUTH_NONCE_SIZE);
    memcpy(salt + EF_AUTH_NONCE_SIZE, worker_nonce, EF_AUTH_NONCE_SIZE);
    uint8_t okm[2 * EF_SESSION_KEY_SIZE];
    size_t okm_len = sizeof okm;
    int rc = EF_ENOMEM;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) > 0 &&
        EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt, (int)sizeof salt) > 0 &&
        EVP_PKEY_CTX_set1_hkdf_key(ctx, cookie, (int)cookie_len) > 0 &&
        EVP_PKEY_CTX_add1_hkdf_info(ctx, (const unsigned char *)info, (int)(sizeof info - 1)) > 0 &&
        EVP_PKEY_derive(ctx, okm, &okm_len) > 0 && okm_len == sizeof okm) {
        memcpy(keys->master_to_worker, okm, EF_SESSION_KEY_SIZE);
        memcpy(keys->worker_to_master, okm + EF_SESSION_KEY_SIZE, EF_SESSION_KEY_SIZE);
        rc = EF_OK;
    }
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_cleanse(okm, sizeof okm);
    return rc;
}
