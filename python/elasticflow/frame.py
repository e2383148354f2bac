"""Wire frames (docs/protocol.md): ``encode_frame`` and ``parse_frame`` over ``ef_frame_*``."""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import Optional, Tuple

from . import _lib
from ._lib import C, Buffer
from .errors import ErrorCode, check

HEADER_SIZE = _lib.FRAME_HEADER_SIZE
PROTOCOL_VERSION = _lib.PROTOCOL_VERSION
MAX_PAYLOAD_DEFAULT = _lib.FRAME_MAX_PAYLOAD_DEFAULT
FLAG_COMPRESSED = 0x01


class FrameType(enum.IntEnum):
    """EF_FRAME_* of elasticflow.h."""

    HELLO = 1
    AUTH = 2
    WELCOME = 3
    HEARTBEAT = 4
    PARCEL = 5
    RESULT = 6
    ERROR = 7
    BYE = 8
    STEP = 9


@dataclass(frozen=True)
class Frame:
    """One frame: its header fields and its payload (a copy, independent of the parsed buffer)."""

    type: FrameType
    payload: bytes = b""
    flags: int = 0
    codec: int = 0
    aux: int = 0
    id: int = 0
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """The frame as sent: 32-byte header (checksums included), then the payload."""
        return encode_frame(self.type, self.payload, flags=self.flags, codec=self.codec, aux=self.aux, id=self.id)


def encode_frame(type: int, payload=b"", *, flags: int = 0, codec: int = 0, aux: int = 0, id: int = 0) -> bytes:
    """Header and payload of one frame, ready to write to a socket (``ef_frame_encode``)."""
    for name, value, bits in (("flags", flags, 8), ("codec", codec, 8), ("aux", aux, 32), ("id", id, 64)):
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{name} must fit in {bits} bits, not {value}")
    if not 0 <= type < 256:
        raise ValueError(f"type must fit in 8 bits, not {type}")
    buffer = Buffer(payload)
    header = (ctypes.c_uint8 * HEADER_SIZE)()
    iov = (_lib.IOVec * 2)()
    check(C.ef_frame_encode(header, type, flags, codec, aux, id, buffer.ptr, buffer.len, iov), "encoding a frame")
    return bytes(header) + ctypes.string_at(buffer.ptr, buffer.len) if buffer.len else bytes(header)


def parse_frame(data, max_payload: int = MAX_PAYLOAD_DEFAULT) -> Optional[Tuple[Frame, int]]:
    """The frame at the start of ``data`` and the bytes it takes, or ``None`` when ``data``
    holds only part of one (call again with more bytes: the picohttpparser way, as
    ``ef_frame_parse``). Raises ``ElasticFlowError`` for a bad frame: BADMAGIC, VERSION,
    FRAMETYPE, HDRCHECKSUM, TOOLONG (payload over ``max_payload``), CHECKSUM."""
    buffer = Buffer(data)
    out = _lib.FrameStruct()
    n = C.ef_frame_parse(buffer.ptr, buffer.len, max_payload, ctypes.byref(out))
    if n == ErrorCode.NEEDMORE:
        return None
    check(n, "parsing a frame")
    payload = ctypes.string_at(out.payload.ptr, out.payload.len) if out.payload.len else b""
    frame = Frame(
        type=FrameType(out.type),
        payload=payload,
        flags=out.flags,
        codec=out.codec,
        aux=out.aux,
        id=out.id,
        version=out.version,
    )
    return frame, n
