/* Sealed frames: AES-256-GCM per direction of a connection (format in elasticflow.h and
 * docs/protocol.md).
 *
 * One EVP_CIPHER_CTX per seal, keyed once at creation: a frame only re-initialises it with its
 * nonce (EVP_CipherInit_ex with no cipher and no key keeps both), so sealing allocates nothing.
 * The frame is fed in pieces (ef__seal_begin / _update / _finish) because the loop's copies live
 * in a ring that may wrap and a file payload is read in chunks.
 *
 * A MAC-only frame whose payload the loop reads from a file only when its turn comes to be
 * written takes its nonce (and header) when queued, and the seal moves on to the frames after
 * it: its tag is finished later on a context of its own (an ef__tagger, copied once from the
 * seal's keyed one and then reused, so a frame allocates nothing once a few exist). */
#include "session_internal.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>

struct ef__tagger {
    EVP_CIPHER_CTX *ctx; /* keyed as the seal's */
    bool failed;
    ef__tagger *next; /* the seal's spares */
};

struct ef_seal {
    EVP_CIPHER_CTX *ctx;
    ef__tagger *spare; /* taggers whose frames are written, for the next ones */
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
    while (seal->spare) {
        ef__tagger *t = seal->spare;
        seal->spare = t->next;
        EVP_CIPHER_CTX_free(t->ctx);
        free(t);
    }
    EVP_CIPHER_CTX_free(seal->ctx);
    free(seal);
}

EF_API uint64_t ef_seal_counter(const ef_seal *seal) { return seal ? seal->counter : 0; }

bool ef__seal_encrypts(const ef_seal *seal) { return seal->encrypt; }

/* Start a frame on ctx with the nonce of counter: the header is additional data. Returns
 * whether a step failed. */
static bool ef__frame_begin(EVP_CIPHER_CTX *ctx, uint8_t direction, uint64_t counter,
                            const uint8_t header[EF_FRAME_HEADER_SIZE]) {
    uint8_t iv[12] = {direction, 0, 0, 0};
    ef__store64(iv + 4, counter);
    int n = 0;
    return EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) != 1 ||
           EVP_CipherUpdate(ctx, NULL, &n, header, EF_FRAME_HEADER_SIZE) != 1;
}

/* More of a frame on ctx: encrypted or decrypted from in into out, or, with out NULL, more
 * additional data. Returns whether a step failed. */
static bool ef__frame_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, uint8_t *out, size_t len) {
    while (len) {
        size_t piece = len < EF__SEAL_PIECE ? len : EF__SEAL_PIECE;
        int n = 0;
        if (EVP_CipherUpdate(ctx, out, &n, in, (int)piece) != 1)
            return true;
        in += piece;
        if (out)
            out += piece;
        len -= piece;
    }
    return false;
}

/* A sealer's tag for the frame on ctx. EF_OK or EF_EINVAL. */
static int ef__frame_finish(EVP_CIPHER_CTX *ctx, bool failed, uint8_t tag[EF_SESSION_TAG_SIZE]) {
    uint8_t last[16];
    int n = 0;
    if (failed || EVP_CipherFinal_ex(ctx, last, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, EF_SESSION_TAG_SIZE, tag) != 1)
        return EF_EINVAL;
    return EF_OK;
}

void ef__seal_begin(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE]) {
    seal->failed = ef__frame_begin(seal->ctx, seal->direction, seal->counter, header);
}

void ef__seal_update(ef_seal *seal, const uint8_t *in, uint8_t *out, size_t len) {
    /* MAC only: the payload is more additional data (out NULL); otherwise it is encrypted or
     * decrypted into out, which may be in itself. */
    if (!seal->failed)
        seal->failed = ef__frame_update(seal->ctx, in, seal->encrypt ? out : NULL, len);
}

int ef__seal_finish(ef_seal *seal, uint8_t tag[EF_SESSION_TAG_SIZE]) {
    if (ef__frame_finish(seal->ctx, seal->failed, tag) != EF_OK)
        return EF_EINVAL;
    seal->counter++;
    return EF_OK;
}

ef__tagger *ef__tagger_start(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE]) {
    if (seal->encrypt || seal->opener)
        return NULL;
    ef__tagger *t = seal->spare;
    if (t) {
        seal->spare = t->next;
    } else {
        /* The copy carries the key schedule; each frame then only sets its nonce. */
        if (!(t = calloc(1, sizeof *t)))
            return NULL;
        if (!(t->ctx = EVP_CIPHER_CTX_new()) || EVP_CIPHER_CTX_copy(t->ctx, seal->ctx) != 1) {
            EVP_CIPHER_CTX_free(t->ctx);
            free(t);
            return NULL;
        }
    }
    t->next = NULL;
    t->failed = ef__frame_begin(t->ctx, seal->direction, seal->counter, header);
    seal->counter++;
    return t;
}

void ef__tagger_update(ef__tagger *t, const uint8_t *in, size_t len) {
    if (!t->failed)
        t->failed = ef__frame_update(t->ctx, in, NULL, len);
}

int ef__tagger_finish(ef__tagger *t, uint8_t tag[EF_SESSION_TAG_SIZE]) {
    return ef__frame_finish(t->ctx, t->failed, tag);
}

void ef__tagger_release(ef_seal *seal, ef__tagger *t) {
    t->next = seal->spare;
    seal->spare = t;
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
