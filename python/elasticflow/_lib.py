"""Finding and loading libelasticflow, and the C declarations this package uses.

The library is looked for, in this order:

1. ``ELASTICFLOW_LIB``: the path of the shared library, or of a directory holding it. When it
   is set, nothing else is tried: a wrong value is an error, not a fallback.
2. A source checkout's ``build/`` (``make lib``), when this package is imported from the
   repository's ``python/`` directory rather than installed.
3. ``pkg-config --variable=libdir elasticflow`` (``make install`` writes ``elasticflow.pc``).
4. The dynamic loader's own path (``LD_LIBRARY_PATH``, ``ldconfig``'s cache).

Each candidate is ``libelasticflow.so.MAJOR``, the SONAME, so a library of another major
version (another ABI) is never loaded. Its ``ef_version_number()`` must also be at least the
version these bindings were written against.

The structs below mirror elasticflow.h; tests/test_library.py compiles a C program that prints
their sizes and offsets and compares them with these.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_size_t,
    c_ssize_t,
    c_uint,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import List, Optional, Tuple

VERSION_MAJOR = 0
# The oldest library these bindings work with (EF_VERSION_NUMBER: major*10000 + minor*100 + patch).
VERSION_NUMBER_MIN = 100
SONAME = f"libelasticflow.so.{VERSION_MAJOR}"


class Slice(Structure):
    _fields_ = [("ptr", c_void_p), ("len", c_size_t)]


class WordCount(Structure):
    _fields_ = [("word", Slice), ("count", c_uint64)]


class CounterOptions(Structure):
    _fields_ = [
        ("partitions", c_uint32),
        ("flags", c_uint32),
        ("initial_capacity", c_size_t),
        ("max_word", c_size_t),
    ]


class FrameStruct(Structure):
    _fields_ = [
        ("version", c_uint8),
        ("type", c_uint8),
        ("flags", c_uint8),
        ("codec", c_uint8),
        ("aux", c_uint32),
        ("id", c_uint64),
        ("payload", Slice),
    ]


class IOVec(Structure):
    _fields_ = [("iov_base", c_void_p), ("iov_len", c_size_t)]


# elasticflow.h's macros used here (checked against the header by the tests).
COUNT_LOWERCASE = 0x1
COUNT_PARTITIONS_MAX = 1024
CODEC_HEADER_SIZE = 16
FRAME_HEADER_SIZE = 32
FRAME_MAX_PAYLOAD_DEFAULT = 256 * 1024 * 1024
PROTOCOL_VERSION = 3
FORMAT_MAGIC_SIZE = 4
FORMAT_PLAIN = 0

# name: (restype, argtypes)
_PROTOTYPES = {
    "ef_version_number": (c_uint, []),
    "ef_version_string": (c_char_p, []),
    "ef_strerror": (c_char_p, [c_int]),
    "ef_codec_create": (c_void_p, []),
    "ef_codec_free": (None, [c_void_p]),
    "ef_codec_name": (c_char_p, [c_int]),
    "ef_codec_bound": (c_size_t, [c_int, c_size_t]),
    "ef_codec_compress": (c_ssize_t, [c_void_p, c_int, c_int, c_void_p, c_size_t, c_void_p, c_size_t]),
    "ef_codec_peek": (c_int, [c_void_p, c_size_t, POINTER(c_int), POINTER(c_uint64)]),
    "ef_codec_decompress": (c_ssize_t, [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_size_t]),
    "ef_format_detect": (c_int, [c_void_p, c_size_t, c_int]),
    "ef_format_name": (c_char_p, [c_int]),
    "ef_decoder_create": (c_void_p, []),
    "ef_decoder_free": (None, [c_void_p]),
    "ef_decoder_reset": (c_int, [c_void_p, c_int]),
    "ef_decoder_decode": (c_ssize_t, [c_void_p, c_void_p, c_size_t, POINTER(c_size_t), c_void_p, c_size_t]),
    "ef_decoder_finish": (c_int, [c_void_p]),
    "ef_decoder_offset": (c_uint64, [c_void_p]),
    "ef_decoder_message": (c_char_p, [c_void_p]),
    "ef_frame_parse": (c_ssize_t, [c_void_p, c_size_t, c_size_t, POINTER(FrameStruct)]),
    "ef_frame_encode": (
        c_int,
        [c_void_p, c_uint8, c_uint8, c_uint8, c_uint32, c_uint64, c_void_p, c_size_t, POINTER(IOVec)],
    ),
    "ef_counter_create": (c_void_p, [POINTER(CounterOptions)]),
    "ef_counter_free": (None, [c_void_p]),
    "ef_counter_feed": (c_int, [c_void_p, c_void_p, c_size_t]),
    "ef_counter_finish": (c_int, [c_void_p]),
    "ef_counter_add": (c_int, [c_void_p, c_void_p, c_size_t, c_uint64]),
    "ef_counter_clear": (None, [c_void_p]),
    "ef_counter_partitions": (c_uint32, [c_void_p]),
    "ef_counter_flags": (c_uint32, [c_void_p]),
    "ef_counter_distinct": (c_size_t, [c_void_p]),
    "ef_counter_total": (c_uint64, [c_void_p]),
    "ef_counter_get": (c_uint64, [c_void_p, c_void_p, c_size_t]),
    "ef_counter_merge": (c_int, [c_void_p, c_void_p]),
    "ef_counter_serialized_size": (c_size_t, [c_void_p]),
    "ef_counter_serialize": (c_ssize_t, [c_void_p, c_void_p, c_size_t]),
    "ef_counter_partitioned_size": (c_size_t, [c_void_p]),
    "ef_counter_serialize_partitioned": (c_ssize_t, [c_void_p, c_void_p, c_size_t]),
    "ef_counter_deserialize": (c_ssize_t, [c_void_p, c_void_p, c_size_t]),
    "ef_counter_export": (c_ssize_t, [c_void_p, POINTER(WordCount), c_size_t]),
}


def _in_dir(directory: str) -> List[str]:
    return [os.path.join(directory, SONAME)]


def _pkg_config_libdir() -> Optional[str]:
    if not shutil.which("pkg-config"):
        return None
    try:
        out = subprocess.run(
            ["pkg-config", "--variable=libdir", "elasticflow"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    return libdir if out.returncode == 0 and libdir else None


def _candidates() -> Tuple[List[Tuple[str, str]], bool]:
    """(how it was found, path or name) in search order; True when ELASTICFLOW_LIB decided."""
    forced = os.environ.get("ELASTICFLOW_LIB")
    if forced:
        if os.path.isdir(forced):
            return [("ELASTICFLOW_LIB", p) for p in _in_dir(forced)], True
        return [("ELASTICFLOW_LIB", forced)], True
    found: List[Tuple[str, str]] = []
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(os.path.dirname(here))  # python/elasticflow -> the repository
    if os.path.isfile(os.path.join(checkout, "CCore", "include", "elasticflow.h")):
        found += [("the checkout's build/", p) for p in _in_dir(os.path.join(checkout, "build"))]
    libdir = _pkg_config_libdir()
    if libdir:
        found += [("pkg-config", p) for p in _in_dir(libdir)]
    found.append(("the loader's path", SONAME))
    return found, False


def _load() -> Tuple[ctypes.CDLL, str, str]:
    candidates, forced = _candidates()
    tried = []
    for how, path in candidates:
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} ({how}): no such file")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as error:
            tried.append(f"{path} ({how}): {error}")
            continue
        lib.ef_version_number.restype = c_uint
        number = lib.ef_version_number()
        if number // 10000 != VERSION_MAJOR or number < VERSION_NUMBER_MIN:
            tried.append(f"{path} ({how}): version {number}, these bindings need {VERSION_MAJOR}.x >= {VERSION_NUMBER_MIN}")
            if forced:
                break
            continue
        return lib, path, how
    hint = "set ELASTICFLOW_LIB" if not forced else "check ELASTICFLOW_LIB"
    raise ImportError(
        f"elasticflow: cannot load {SONAME} ({hint}, or `make install` / `make lib`): " + "; ".join(tried)
    )


_cdll, path, found_by = _load()
for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _function = getattr(_cdll, _name)
    _function.restype = _restype
    _function.argtypes = _argtypes


class _Functions:
    """The library's functions by their C names (``C.ef_counter_feed(...)``)."""

    def __getattr__(self, name: str):
        if name not in _PROTOTYPES:
            raise AttributeError(name)
        return getattr(_cdll, name)


C = _Functions()


def strerror(code: int) -> str:
    return _cdll.ef_strerror(code).decode("utf-8", "replace")


def version_string() -> str:
    return _cdll.ef_version_string().decode()


def version_number() -> int:
    return int(_cdll.ef_version_number())


class Buffer:
    """A pointer and length for any bytes-like object, valid while this object lives.

    bytes are passed without a copy; so are writable buffers (bytearray, writable memoryview,
    array, mmap); a read-only buffer other than bytes is copied once.
    """

    __slots__ = ("ptr", "len", "_keep")

    def __init__(self, data) -> None:
        if isinstance(data, bytes):
            self._keep = data
            self.len = len(data)
            self.ptr = ctypes.cast(c_char_p(data), c_void_p).value if data else None
            return
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        self.len = view.nbytes
        if self.len == 0:
            self._keep, self.ptr = view, None
        elif view.readonly:
            copy = view.tobytes()
            self._keep = copy
            self.ptr = ctypes.cast(c_char_p(copy), c_void_p).value
        else:
            array = (ctypes.c_char * self.len).from_buffer(view)
            self._keep = (view, array)
            self.ptr = ctypes.addressof(array)
