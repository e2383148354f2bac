/* Version and error strings. */
#include "internal.h"

EF_API unsigned ef_version_number(void) { return EF_VERSION_NUMBER; }

#define EF__STR2(x) #x
#define EF__STR(x) EF__STR2(x)
EF_API const char *ef_version_string(void) {
    return EF__STR(EF_VERSION_MAJOR) "." EF__STR(EF_VERSION_MINOR) "." EF__STR(EF_VERSION_PATCH);
}

EF_API const char *ef_strerror(int code) {
    switch (code) {
    case EF_OK: return "success";
    case EF_ENEEDMORE: return "incomplete input: more bytes needed";
    case EF_ENOMEM: return "out of memory";
    case EF_EINVAL: return "invalid argument";
    case EF_ETOOBIG: return "decompressed size exceeds the limit";
    case EF_ECORRUPT: return "compressed data is corrupt";
    case EF_EBADMAGIC: return "bad magic number";
    case EF_EVERSION: return "unsupported protocol version";
    case EF_ETOOLONG: return "frame payload longer than allowed";
    case EF_ECHECKSUM: return "payload checksum mismatch";
    case EF_EHDRCHECKSUM: return "frame header checksum mismatch";
    case EF_ECODEC: return "unknown codec";
    case EF_ESPACE: return "destination buffer too small";
    case EF_EFORMAT: return "malformed serialized data";
    case EF_ESYS: return "system call failed";
    case EF_EAUTH: return "authentication failed";
    case EF_ECLOSED: return "connection closed";
    case EF_EBUSY: return "send queue full (back-pressure)";
    case EF_EFRAMETYPE: return "unknown frame type";
    case EF_EWORDTOOLONG: return "a word is longer than the word-size cap";
    case EF_EFRAMEAUTH:
        return "frame authentication failed (wrong session key, or a replayed, reordered or "
               "altered frame)";
    case EF_EOVERFLOW: return "a count would overflow 64 bits";
    default: return "unknown error";
    }
}
