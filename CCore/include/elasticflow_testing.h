/*
 * elasticflow_testing.h — calls for fault injection and tests. NOT part of the stable API:
 * `make install` does not install this header, and the library it installs does not contain
 * these functions. They exist only where the core is compiled with EF_TESTING defined: the
 * SwiftPM build (the Swift library's chaos mode uses them), the C tests and the fuzz build.
 * They may change or go in any release.
 */
#ifndef ELASTICFLOW_TESTING_H
#define ELASTICFLOW_TESTING_H

#include "elasticflow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fault injection (chaos testing): like ef_loop_send, but the header's checksums are computed
 * over payload while the bytes written are sent[0..len) — a frame corrupted in flight, which the
 * peer's parser must reject (EF_ECHECKSUM). On a sealed connection the tag is that of payload.
 * Same returns as ef_loop_send. */
EF_API int ef_loop_send_tampered(ef_loop *loop, uint64_t conn_id, uint8_t type, uint8_t flags,
                                 uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                                 const uint8_t *sent, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* ELASTICFLOW_TESTING_H */
