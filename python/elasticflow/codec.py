"""Compressed parcel buffers (EFPB): ``Codec`` over ``ef_codec``, and one-shot helpers."""

from __future__ import annotations

import ctypes
from typing import Optional, Tuple, Union

from . import _lib
from ._handle import Handle
from ._lib import C, Buffer
from .errors import check

CODECS = {"none": 0, "lz4": 1, "zstd": 2}
# What decompress accepts unless told otherwise: the largest frame payload the protocol takes
# by default, so a hostile header cannot make it allocate more.
DEFAULT_LIMIT = _lib.FRAME_MAX_PAYLOAD_DEFAULT

CodecName = Union[str, int]


def _codec_id(codec: CodecName) -> int:
    if isinstance(codec, str):
        try:
            return CODECS[codec]
        except KeyError:
            raise ValueError(f"unknown codec {codec!r}: expected one of {', '.join(CODECS)}") from None
    if codec not in CODECS.values():
        raise ValueError(f"unknown codec id {codec}")
    return int(codec)


def peek(data) -> Tuple[str, int]:
    """A compressed buffer's codec name and uncompressed size, from its header alone."""
    buffer = Buffer(data)
    codec, raw_len = ctypes.c_int(), ctypes.c_uint64()
    check(C.ef_codec_peek(buffer.ptr, buffer.len, ctypes.byref(codec), ctypes.byref(raw_len)), "reading a codec header")
    return C.ef_codec_name(codec.value).decode(), raw_len.value


class Codec(Handle):
    """Reusable compression contexts (``ef_codec``: zstd's and lz4's, made once). One object
    serves one thread at a time; calls from several threads take turns."""

    _kind = "codec"

    def __init__(self) -> None:
        handle = C.ef_codec_create()
        if not handle:
            raise MemoryError("ef_codec_create failed (out of memory)")
        self._own(handle, C.ef_codec_free)

    def compress(self, data, codec: CodecName = "zstd", level: int = 0) -> bytes:
        """``data`` as a compressed buffer: the 16-byte EFPB header, then the codec's data.

        ``level``: zstd's level (1..19) or lz4's acceleration (1..65537); 0 is the default.
        """
        codec_id = _codec_id(codec)
        buffer = Buffer(data)
        bound = C.ef_codec_bound(codec_id, buffer.len)
        if bound == 0:
            raise ValueError(f"{buffer.len} bytes are too many for {codec}")
        out = ctypes.create_string_buffer(bound)
        with self._lock:
            written = check(
                C.ef_codec_compress(self._h(), codec_id, level, buffer.ptr, buffer.len, out, bound), "compressing"
            )
        return ctypes.string_at(out, written)

    def decompress(self, data, limit: Optional[int] = DEFAULT_LIMIT) -> bytes:
        """The bytes a compressed buffer holds. Refused (``TOOBIG``) when its header records more
        than ``limit`` bytes (``None``: no limit); ``CORRUPT`` when its data is damaged."""
        buffer = Buffer(data)
        _, raw_len = peek(data)
        if limit is None:
            limit = raw_len
        cap = min(raw_len, limit)
        out = ctypes.create_string_buffer(max(cap, 1))
        with self._lock:
            written = check(
                C.ef_codec_decompress(self._h(), buffer.ptr, buffer.len, out, cap, limit), "decompressing"
            )
        return ctypes.string_at(out, written)


def compress(data, codec: CodecName = "zstd", level: int = 0) -> bytes:
    """``Codec().compress`` with a codec made for the call (make a ``Codec`` to reuse one)."""
    with Codec() as c:
        return c.compress(data, codec, level)


def decompress(data, limit: Optional[int] = DEFAULT_LIMIT) -> bytes:
    """``Codec().decompress`` with a codec made for the call."""
    with Codec() as c:
        return c.decompress(data, limit)
