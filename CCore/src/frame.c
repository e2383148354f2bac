/* Wire frames: a fixed 32-byte header, then the payload (layout in elasticflow.h and
 * docs/protocol.md).
 *
 * The parser is stateless in the picohttpparser way: the loop appends bytes to its buffer and
 * asks again, so nothing here remembers a half-read frame and nothing is copied: the payload comes
 * back as a view into the caller's buffer. */
#include "internal.h"

#include <stdbool.h>
#include <stddef.h>

/* The header as laid out on the wire. Fields are read and written one by one at these offsets (the
 * buffer is never cast to the struct): the struct only lets the compiler check the layout. */
struct ef__frame_wire {
    uint32_t magic;
    uint8_t version;
    uint8_t type;
    uint8_t flags;
    uint8_t codec;
    uint32_t payload_len;
    uint32_t aux;
    uint64_t id;
    uint32_t payload_crc;
    uint32_t header_crc;
};

#define OFF(field) offsetof(struct ef__frame_wire, field)

_Static_assert(sizeof(struct ef__frame_wire) == EF_FRAME_HEADER_SIZE, "frame header is 32 bytes");
_Static_assert(OFF(version) == 4 && OFF(type) == 5 && OFF(flags) == 6 && OFF(codec) == 7,
               "frame header byte fields at 4..7");
_Static_assert(OFF(payload_len) == 8 && OFF(aux) == 12 && OFF(id) == 16, "frame header words");
_Static_assert(OFF(payload_crc) == 24 && OFF(header_crc) == 28, "checksums close the header");
_Static_assert(EF_FRAME_MAGIC ==
                   ((uint32_t)'E' | (uint32_t)'F' << 8 | (uint32_t)'L' << 16 | (uint32_t)'W' << 24),
               "the magic reads \"EFLW\" on the wire");
_Static_assert(EF_FRAME_TYPE_MAX == EF_FRAME_STEP, "EF_FRAME_TYPE_MAX names the last type");
_Static_assert(EF_PROTOCOL_VERSION >= 1 && EF_PROTOCOL_VERSION <= 255, "version fits its byte");
/* The fields are stored with memcpy in host order, which is wire order only here. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host");

static const uint8_t frame_magic[4] = {'E', 'F', 'L', 'W'};

static ptrdiff_t ef__frame_parse(const uint8_t *buf, size_t len, size_t max_payload, bool sealed,
                                 ef_frame *out, const uint8_t **tag) {
    if (buf == NULL)
        return len == 0 ? EF_ENEEDMORE : EF_EINVAL;

    /* Magic and version decide how the rest is read, so they are judged on the bytes present:
     * a peer speaking something else is turned away after its first wrong byte, not 32 later. */
    size_t have = len < sizeof frame_magic ? len : sizeof frame_magic;
    if (memcmp(buf, frame_magic, have) != 0)
        return EF_EBADMAGIC;
    if (len > OFF(version) && buf[OFF(version)] != EF_PROTOCOL_VERSION)
        return EF_EVERSION;
    if (len < EF_FRAME_HEADER_SIZE)
        return EF_ENEEDMORE;

    /* Before the checksum, a wrong type or length may be a flipped bit: check the checksum first
     * so the error names the real cause. */
    if (ef_crc32c(0, buf, OFF(header_crc)) != ef__load32(buf + OFF(header_crc)))
        return EF_EHDRCHECKSUM;
    uint8_t type = buf[OFF(type)];
    if (type < EF_FRAME_HELLO || type > EF_FRAME_TYPE_MAX)
        return EF_EFRAMETYPE;
    uint32_t payload_len = ef__load32(buf + OFF(payload_len));
    /* Reported now, before the payload arrives, so nobody buffers 4 GiB to learn it is refused. */
    if (payload_len > max_payload)
        return EF_ETOOLONG;
#if SIZE_MAX <= UINT32_MAX
    if (payload_len > SIZE_MAX - EF_FRAME_HEADER_SIZE) /* the total would not fit a size_t */
        return EF_ETOOLONG;
#endif
    size_t total = EF_FRAME_HEADER_SIZE + (size_t)payload_len + (sealed ? EF_SESSION_TAG_SIZE : 0);
    if (len < total)
        return EF_ENEEDMORE;

    const uint8_t *payload = buf + EF_FRAME_HEADER_SIZE;
    /* A sealed frame's tag covers the payload, checked by whoever holds the key: a CRC pass on
     * top would only cost time. */
    if (!sealed && ef_crc32c(0, payload, payload_len) != ef__load32(buf + OFF(payload_crc)))
        return EF_ECHECKSUM;
    if (tag)
        *tag = payload + payload_len;

    if (out) {
        out->version = buf[OFF(version)];
        out->type = type;
        out->flags = buf[OFF(flags)];
        out->codec = buf[OFF(codec)];
        out->aux = ef__load32(buf + OFF(aux));
        out->id = ef__load64(buf + OFF(id));
        out->payload.ptr = payload;
        out->payload.len = payload_len;
    }
    return (ptrdiff_t)total;
}

EF_API ptrdiff_t ef_frame_parse(const uint8_t *buf, size_t len, size_t max_payload, ef_frame *out) {
    return ef__frame_parse(buf, len, max_payload, false, out, NULL);
}

EF_API ptrdiff_t ef_frame_parse_sealed(const uint8_t *buf, size_t len, size_t max_payload,
                                       ef_frame *out, const uint8_t **tag) {
    return ef__frame_parse(buf, len, max_payload, true, out, tag);
}

EF_API int ef_frame_encode_sealed(uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t type, uint8_t flags,
                                  uint8_t codec, uint32_t aux, uint64_t id, size_t payload_len) {
    static const uint32_t no_crc = 0;
    struct iovec iov[2];
    /* The payload is not read with a known CRC: the header stands in for a non-NULL pointer. */
    int n =
        ef__frame_encode(header, type, flags, codec, aux, id, header, payload_len, &no_crc, iov);
    return n < 0 ? n : EF_OK;
}

EF_API int ef_frame_encode(uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t type, uint8_t flags,
                           uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                           size_t payload_len, struct iovec iov[2]) {
    return ef__frame_encode(header, type, flags, codec, aux, id, payload, payload_len, NULL, iov);
}

int ef__frame_encode(uint8_t header[EF_FRAME_HEADER_SIZE], uint8_t type, uint8_t flags,
                     uint8_t codec, uint32_t aux, uint64_t id, const uint8_t *payload,
                     size_t payload_len, const uint32_t *payload_crc, struct iovec iov[2]) {
    if (header == NULL || iov == NULL || (payload == NULL && payload_len > 0))
        return EF_EINVAL;
    /* A frame our own parser would refuse is a bug in the sender: say so here, not at the peer. */
    if (type < EF_FRAME_HELLO || type > EF_FRAME_TYPE_MAX)
        return EF_EINVAL;
    if (payload_len > UINT32_MAX)
        return EF_ETOOLONG;

    ef__store32(header + OFF(magic), EF_FRAME_MAGIC);
    header[OFF(version)] = EF_PROTOCOL_VERSION;
    header[OFF(type)] = type;
    header[OFF(flags)] = flags;
    header[OFF(codec)] = codec;
    ef__store32(header + OFF(payload_len), (uint32_t)payload_len);
    ef__store32(header + OFF(aux), aux);
    ef__store64(header + OFF(id), id);
    /* A known CRC spares a second pass over a payload its sender has just checksummed. */
    ef__store32(header + OFF(payload_crc),
                payload_crc ? *payload_crc : ef_crc32c(0, payload, payload_len));
    ef__store32(header + OFF(header_crc), ef_crc32c(0, header, OFF(header_crc)));

    iov[0].iov_base = header;
    iov[0].iov_len = EF_FRAME_HEADER_SIZE;
    if (payload_len == 0) {
        iov[1].iov_base = NULL;
        iov[1].iov_len = 0;
        return 1;
    }
    iov[1].iov_base = (void *)payload; /* writev only reads it; struct iovec has no const */
    iov[1].iov_len = payload_len;
    return 2;
}
