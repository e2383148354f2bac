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

#endif
