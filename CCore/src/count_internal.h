/* Word counting internals that the tests reach (ef__ prefix). Not installed. */
#ifndef EF_COUNT_INTERNAL_H
#define EF_COUNT_INTERNAL_H

#include "elasticflow.h"

/* Tokenizers: each finds word boundaries its own way and every one must count alike. */
enum {
    EF__TOKENIZER_PORTABLE = 0, /* SWAR on 8-byte words: any little-endian 64-bit-capable CPU */
    EF__TOKENIZER_AVX2 = 1,     /* x86-64 with AVX2, chosen at ef_counter_create when present */
};

/* Pin a counter to one tokenizer so tests can prove the paths agree.
 * Returns EF_OK, or EF_EINVAL when this build or CPU lacks that tokenizer. */
int ef__counter_set_tokenizer(ef_counter *counter, int tokenizer);

#endif
