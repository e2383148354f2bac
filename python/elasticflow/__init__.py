"""ElasticFlow from Python: bindings over libelasticflow, the project's C core (ctypes, no
compiled extension). Count words exactly as ``elasticflow count`` does, merge and serialize
count tables, compress and decompress parcel buffers, encode and parse wire frames.

    >>> import elasticflow
    >>> elasticflow.count_bytes(b"to be or not to be")
    [(b'be', 2), (b'to', 2), (b'not', 1), (b'or', 1)]

Errors from the C core raise ``ElasticFlowError`` (``.code``, ``.strerror`` from
``ef_strerror``). See python/README.md.
"""

from . import _lib
from .codec import CODECS, Codec, compress, decompress, peek
from .counter import Counter, count, count_bytes
from .errors import ElasticFlowError, ErrorCode
from .frame import Frame, FrameType, encode_frame, parse_frame

__version__ = "0.1.0"

library_path = _lib.path
"""The shared library these bindings loaded."""
library_found_by = _lib.found_by
"""How it was found: ELASTICFLOW_LIB, the checkout's build/, pkg-config, or the loader's path."""


def library_version() -> str:
    """The loaded library's version (``ef_version_string``)."""
    return _lib.version_string()


__all__ = [
    "CODECS",
    "Codec",
    "Counter",
    "ElasticFlowError",
    "ErrorCode",
    "Frame",
    "FrameType",
    "compress",
    "count",
    "count_bytes",
    "decompress",
    "encode_frame",
    "library_path",
    "library_found_by",
    "library_version",
    "parse_frame",
    "peek",
]
