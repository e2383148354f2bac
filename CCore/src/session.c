/* Sealed frames: AES-256-GCM per direction of a connection (format in elasticflow.h and
 * docs/protocol.md).
 *
 * One EVP_CIPHER_CTX per seal, keyed once at creation: a frame only re-initialises it with its
 * nonce (EVP_CipherInit_ex with no cipher and no key keeps both), so sealing allocates nothing.
 * The frame is fed in pieces (ef__seal_begin / _update / _finish) because the loop's copies live
 * in a ring that may wrap and a file payload is read in chunks. */
#include "session_internal.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>

struct ef_seal {
    EVP_CIPHER_CTX *ctx;
    uint64_t counter;
    uint8_t direction;
    bool encrypt;
    bool opener;
    bool failed; /* a step of the current frame failed: its finish reports it */
};

/* The largest piece handed to one EVP call: its lengths are ints. */
#define EF__SEAL_PIECE ((size_t)1 << 30)

EF_API ef_seal *ef_seal_create(const uint8_t key[EF_SESSION_KEY_SIZE], uint8_t direction,
                               unsigned flags) {
    if (!key || (direction != 'M' && direction != 'W') ||
        (flags & ~(unsigned)(EF_SEAL_ENCRYPT | EF_SEAL_OPENER)))
        return NULL;
    ef_seal *seal = calloc(1, sizeof *seal);
    if (!seal)
        return NULL;
    seal->ctx = EVP_CIPHER_CTX_new();
    seal->direction = direction;
    seal->encrypt = (flags & EF_SEAL_ENCRYPT) != 0;
    seal->opener = (flags & EF_SEAL_OPENER) != 0;
    /* The nonce length is GCM's default, 12 bytes, which is what ef__seal_begin gives. */
    if (!seal->ctx || EVP_CipherInit_ex(seal->ctx, EVP_aes_256_gcm(), NULL, key, NULL,
                                        seal->opener ? 0 : 1) != 1) {
        ef_seal_free(seal);
        return NULL;
    }
    return seal;
}

EF_API void ef_seal_free(ef_seal *seal) {
    if (!seal)
        return;
    EVP_CIPHER_CTX_free(seal->ctx);
    free(seal);
}

EF_API uint64_t ef_seal_counter(const ef_seal *seal) { return seal ? seal->counter : 0; }

bool ef__seal_encrypts(const ef_seal *seal) { return seal->encrypt; }

void ef__seal_begin(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE]) {
    uint8_t iv[12] = {seal->direction, 0, 0, 0};
    ef__store64(iv + 4, seal->counter);
    int n = 0;
    seal->failed = EVP_CipherInit_ex(seal->ctx, NULL, NULL, NULL, iv, -1) != 1 ||
                   EVP_CipherUpdate(seal->ctx, NULL, &n, header, EF_FRAME_HEADER_SIZE) != 1;
}

void ef__seal_update(ef_seal *seal, const uint8_t *in, uint8_t *out, size_t len) {
    while (len && !seal->failed) {
        size_t piece = len < EF__SEAL_PIECE ? len : EF__SEAL_PIECE;
        int n = 0;
        /* MAC only: the payload is more additional data (out NULL); otherwise it is encrypted or
         * decrypted into out, which may be in itself. */
        if (EVP_CipherUpdate(seal->ctx, seal->encrypt ? out : NULL, &n, in, (int)piece) != 1)
            seal->failed = true;
        in += piece;
        if (out)
            out += piece;
        len -= piece;
    }
}

int ef__seal_finish(ef_seal *seal, uint8_t tag[EF_SESSION_TAG_SIZE]) {
    uint8_t last[16];
    int n = 0;
    if (seal->failed || EVP_CipherFinal_ex(seal->ctx, last, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(seal->ctx, EVP_CTRL_GCM_GET_TAG, EF_SESSION_TAG_SIZE, tag) != 1)
        return EF_EINVAL;
    seal->counter++;
    return EF_OK;
}

int ef__seal_verify(ef_seal *seal, const uint8_t tag[EF_SESSION_TAG_SIZE]) {
    uint8_t last[16];
    int n = 0;
    if (seal->failed ||
        EVP_CIPHER_CTX_ctrl(seal->ctx, EVP_CTRL_GCM_SET_TAG, EF_SESSION_TAG_SIZE, (void *)tag) !=
            1 ||
        EVP_CipherFinal_ex(seal->ctx, last, &n) != 1)
        return EF_EFRAMEAUTH;
    seal->counter++;
    return EF_OK;
}

EF_API int ef_seal_frame(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE],
                         uint8_t *payload, size_t len, uint8_t tag[EF_SESSION_TAG_SIZE]) {
    if (!seal || seal->opener || !header || !tag || (!payload && len))
        return EF_EINVAL;
    ef__seal_begin(seal, header);
    ef__seal_update(seal, payload, payload, len);
    return ef__seal_finish(seal, tag);
}

EF_API int ef_seal_open(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t *payload,
                        size_t len, const uint8_t tag[EF_SESSION_TAG_SIZE]) {
    if (!seal || !seal->opener || !header || !tag || (!payload && len))
        return EF_EINVAL;
    ef__seal_begin(seal, header);
    ef__seal_update(seal, payload, payload, len);
    return ef__seal_verify(seal, tag);
}
