/* Sealing a frame in pieces (session.c), for the loop's send and read paths (net.c). */
#ifndef EF_SESSION_INTERNAL_H
#define EF_SESSION_INTERNAL_H

#include "internal.h"

#include <stdbool.h>

bool ef__seal_encrypts(const ef_seal *seal);
/* Start a frame with the current counter: the header is additional data. */
void ef__seal_begin(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE]);
/* More of the payload: additional data (MAC only; out is ignored), or encrypted / decrypted
 * from in into out (out may equal in). */
void ef__seal_update(ef_seal *seal, const uint8_t *in, uint8_t *out, size_t len);
/* Sealer: the tag; the counter advances. EF_OK or EF_EINVAL. */
int ef__seal_finish(ef_seal *seal, uint8_t tag[EF_SESSION_TAG_SIZE]);
/* Opener: check the tag; the counter advances only when it matches. EF_OK or EF_EFRAMEAUTH. */
int ef__seal_verify(ef_seal *seal, const uint8_t tag[EF_SESSION_TAG_SIZE]);

/* A MAC-only frame whose tag is finished after later frames were sealed: it takes the current
 * counter (which advances at once) and the header now, its payload later, in order. */
typedef struct ef__tagger ef__tagger;
/* NULL when the seal encrypts or opens, or on ENOMEM (the counter then has not moved). */
ef__tagger *ef__tagger_start(ef_seal *seal, const uint8_t header[EF_FRAME_HEADER_SIZE]);
void ef__tagger_update(ef__tagger *t, const uint8_t *in, size_t len);
/* The tag. EF_OK or EF_EINVAL. */
int ef__tagger_finish(ef__tagger *t, uint8_t tag[EF_SESSION_TAG_SIZE]);
/* Back to the seal it started from, for a later frame (freed with the seal). */
void ef__tagger_release(ef_seal *seal, ef__tagger *t);

#endif
