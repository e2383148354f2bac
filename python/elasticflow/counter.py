"""Word counting: ``Counter`` over ``ef_counter``, and ``count`` / ``count_bytes``."""

from __future__ import annotations

import ctypes
import os
from typing import List, Optional, Tuple, Union

from . import _lib
from ._handle import Handle
from ._lib import C, Buffer
from .errors import ElasticFlowError, ErrorCode, check

WordCounts = List[Tuple[bytes, int]]
_READ_SIZE = 1 << 20  # large enough that the per-call cost of ctypes is noise next to counting


class Counter(Handle):
    """A word counter (``ef_counter``): words are maximal runs of bytes that are not ASCII
    whitespace, counted exactly as ``elasticflow count`` counts them.

    ``feed`` takes the text in pieces of any size: a word may straddle two pieces, so the last
    word of a piece stays pending until the next piece shows it has ended, or until ``finish()``
    (call it after the last piece). ``most_common`` lists words most frequent first, ties by
    their bytes ascending — the CLI's order.

    Args:
        lowercase: fold ASCII ``A``-``Z`` to ``a``-``z`` before counting (``EF_COUNT_LOWERCASE``).
        partitions: hash partitions, 1..1024; 0 means the library's default (16).
        max_word: longest word accepted in bytes (``feed`` raises ``WORDTOOLONG`` past it); 0 = no cap.
        capacity: distinct words expected, to size the tables up front; 0 = the default.
    """

    _kind = "counter"

    def __init__(self, *, lowercase: bool = False, partitions: int = 0, max_word: int = 0, capacity: int = 0) -> None:
        if not 0 <= partitions <= _lib.COUNT_PARTITIONS_MAX:
            raise ValueError(f"partitions must be 0..{_lib.COUNT_PARTITIONS_MAX}, not {partitions}")
        if max_word < 0 or capacity < 0:
            raise ValueError("max_word and capacity must not be negative")
        options = _lib.CounterOptions(
            partitions=partitions,
            flags=_lib.COUNT_LOWERCASE if lowercase else 0,
            initial_capacity=capacity,
            max_word=max_word,
        )
        handle = C.ef_counter_create(ctypes.byref(options))
        if not handle:
            raise MemoryError("ef_counter_create failed (out of memory)")
        self._own(handle, C.ef_counter_free)

    # -- counting -------------------------------------------------------------------------------

    def feed(self, data) -> None:
        """Tokenize and count a piece of text (any bytes-like object)."""
        buffer = Buffer(data)
        with self._lock:
            check(C.ef_counter_feed(self._h(), buffer.ptr, buffer.len), "counting")

    def finish(self) -> None:
        """End of the text: count the word pending from the last ``feed``, if any."""
        with self._lock:
            check(C.ef_counter_finish(self._h()), "counting")

    def add(self, word: bytes, count: int = 1) -> None:
        """Add ``count`` to one word, as given (no tokenizing, no lowercasing)."""
        if not word:
            raise ValueError("a word is at least one byte")
        if count < 0 or count >= 1 << 64:
            raise ValueError("count must be 0..2**64-1")
        buffer = Buffer(word)
        with self._lock:
            check(C.ef_counter_add(self._h(), buffer.ptr, buffer.len, count), "adding a word")

    def clear(self) -> None:
        """Forget every word (and a pending partial word); the capacity stays."""
        with self._lock:
            C.ef_counter_clear(self._h())

    def merge(self, other: "Counter") -> None:
        """Add every count of ``other`` to this counter (``ef_counter_merge``); ``other`` is unchanged."""
        if not isinstance(other, Counter):
            raise TypeError(f"merge takes a Counter, not {type(other).__name__} (merge_serialized takes bytes)")
        if other is self:
            self.merge_serialized(self.serialize())
            return
        first, second = sorted((self, other), key=id)  # one lock order, whichever merges into which
        with first._lock, second._lock:
            check(C.ef_counter_merge(self._h(), other._h()), "merging counters")

    # -- reading --------------------------------------------------------------------------------

    def most_common(self, n: Optional[int] = None) -> WordCounts:
        """The ``n`` most frequent words (all when ``None``) as ``(word, count)`` pairs, count
        descending, then word ascending bytewise."""
        if n is not None and n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            handle = self._h()
            distinct = C.ef_counter_distinct(handle)
            cap = distinct if n is None else min(n, distinct)
            if cap == 0:
                return []
            entries = (_lib.WordCount * cap)()
            written = check(C.ef_counter_export(handle, entries, cap), "exporting counts")
            # The words are views into the counter's memory: copied out before the lock goes.
            return [(ctypes.string_at(e.word.ptr, e.word.len), e.count) for e in entries[:written]]

    def __getitem__(self, word: bytes) -> int:
        """The count of ``word`` (exact bytes), 0 when it was never seen."""
        buffer = Buffer(word)
        with self._lock:
            return C.ef_counter_get(self._h(), buffer.ptr, buffer.len) if buffer.len else 0

    def get(self, word: bytes, default: int = 0) -> int:
        return self[word] or default

    def __contains__(self, word: bytes) -> bool:
        return self[word] > 0

    def __len__(self) -> int:
        """Distinct words."""
        with self._lock:
            return C.ef_counter_distinct(self._h())

    @property
    def total(self) -> int:
        """The sum of all counts (words counted, with repeats)."""
        with self._lock:
            return C.ef_counter_total(self._h())

    @property
    def partitions(self) -> int:
        with self._lock:
            return C.ef_counter_partitions(self._h())

    @property
    def lowercase(self) -> bool:
        with self._lock:
            return bool(C.ef_counter_flags(self._h()) & _lib.COUNT_LOWERCASE)

    def __repr__(self) -> str:
        if self.closed:
            return "<elasticflow.Counter closed>"
        return f"<elasticflow.Counter {len(self)} distinct, {self.total} total>"

    # -- serialized form ------------------------------------------------------------------------

    def serialize(self, partitioned: bool = False) -> bytes:
        """The counts as an EFCT table, or EFCP (one section per partition) when ``partitioned``
        — the formats workers send (docs/protocol.md)."""
        size_of, write = (
            (C.ef_counter_partitioned_size, C.ef_counter_serialize_partitioned)
            if partitioned
            else (C.ef_counter_serialized_size, C.ef_counter_serialize)
        )
        with self._lock:
            handle = self._h()
            out = ctypes.create_string_buffer(size_of(handle))
            written = check(write(handle, out, len(out)), "serializing counts")
            return ctypes.string_at(out, written)

    def merge_serialized(self, data) -> int:
        """Add the counts of a serialized table (EFCT or EFCP) to this counter, after checking
        all of it (on an error the counter is unchanged). Returns the entries it held."""
        buffer = Buffer(data)
        with self._lock:
            return check(C.ef_counter_deserialize(self._h(), buffer.ptr, buffer.len), "reading a count table")

    @classmethod
    def deserialize(cls, data, *, lowercase: bool = False, partitions: int = 0) -> "Counter":
        """A new counter holding a serialized table's counts (``lowercase`` and ``partitions``
        are the new counter's own, for what it is fed next)."""
        counter = cls(lowercase=lowercase, partitions=partitions)
        try:
            counter.merge_serialized(data)
        except BaseException:
            counter.close()
            raise
        return counter


# ---- whole inputs --------------------------------------------------------------------------------


def count_bytes(data, lowercase: bool = False, top: Optional[int] = None) -> WordCounts:
    """Count the words of ``data`` (bytes-like): ``(word, count)`` pairs in the CLI's order."""
    with Counter(lowercase=lowercase) as counter:
        counter.feed(data)
        counter.finish()
        return counter.most_common(top)


def count(
    path: Union[str, bytes, os.PathLike],
    lowercase: bool = False,
    top: Optional[int] = None,
    decompress: str = "auto",
) -> WordCounts:
    """Count the words of a file as ``elasticflow count FILE`` does: ``(word, count)`` pairs,
    most frequent first, ties by the word's bytes ascending, byte for byte the CLI's result.

    Args:
        lowercase: as ``--lowercase``.
        top: only the first ``top`` pairs, as ``--top``.
        decompress: ``"auto"`` (the CLI's default) reads a gzip, zstd, lz4 or bzip2 file,
            recognised by its first bytes, as the text it holds; ``"none"`` counts the bytes as
            they are.

    Raises:
        OSError: the file cannot be read.
        ElasticFlowError: the compressed data is corrupt or truncated (code CORRUPT / NEEDMORE).
    """
    if decompress not in ("auto", "none"):
        raise ValueError(f"decompress must be 'auto' or 'none', not {decompress!r}")
    with Counter(lowercase=lowercase) as counter, open(path, "rb") as file:
        _count_file(counter, file, os.fsdecode(path), decompress == "auto")
        counter.finish()
        return counter.most_common(top)


def _count_file(counter: Counter, file, name: str, detect: bool) -> None:
    raw = bytearray(_READ_SIZE)
    view = memoryview(raw)
    filled = 0
    # Enough of the start to recognise a format (ef_format_detect).
    while detect and filled < _lib.FORMAT_MAGIC_SIZE:
        n = file.readinto(view[filled:])
        if not n:
            break
        filled += n
    fmt = _lib.FORMAT_PLAIN
    if detect:
        head = Buffer(raw)
        fmt = C.ef_format_detect(head.ptr, filled, 1 if filled < _lib.FORMAT_MAGIC_SIZE else 0)
        del head
    if fmt == _lib.FORMAT_PLAIN:
        while True:
            if filled:
                counter.feed(view[:filled])
            filled = file.readinto(raw)
            if not filled:
                return
    _Decoding(counter, file, name, fmt, raw, filled).run()


class _Decoding(Handle):
    """One compressed file streamed through ``ef_decoder`` into a counter."""

    _kind = "decoder"

    def __init__(self, counter: Counter, file, name: str, fmt: int, raw: bytearray, filled: int) -> None:
        handle = C.ef_decoder_create()
        if not handle:
            raise MemoryError("ef_decoder_create failed (out of memory)")
        self._own(handle, C.ef_decoder_free)
        self.counter, self.file, self.name, self.raw, self.filled = counter, file, name, raw, filled
        self.format_name = C.ef_format_name(fmt).decode()
        check(C.ef_decoder_reset(handle, fmt), f"{name}: starting a {self.format_name} decoder")

    def run(self) -> None:
        with self:
            out = bytearray(_READ_SIZE)
            out_array = (ctypes.c_char * len(out)).from_buffer(out)
            in_array = (ctypes.c_char * len(self.raw)).from_buffer(self.raw)
            used = ctypes.c_size_t()
            start, end, at_end = 0, self.filled, False
            while True:
                written = C.ef_decoder_decode(
                    self._handle, ctypes.addressof(in_array) + start, end - start, ctypes.byref(used),
                    out_array, len(out),
                )
                if written < 0:
                    self._fail(written)
                start += used.value
                if written > 0:
                    self.counter.feed(memoryview(out)[:written])
                    continue
                if at_end:
                    break
                # It wants more input: keep what it left, read after it.
                if start:
                    self.raw[: end - start] = self.raw[start:end]
                    end, start = end - start, 0
                n = self.file.readinto(memoryview(self.raw)[end:])
                end += n
                at_end = not n  # then once more with what is left, and finish() judges the end
            del in_array, out_array
            status = C.ef_decoder_finish(self._handle)
            if status == ErrorCode.NEEDMORE:
                raise ElasticFlowError(
                    status,
                    f"{self.name}: truncated {self.format_name} data",
                    f"the input ends at compressed byte {C.ef_decoder_offset(self._handle)}, inside a member",
                )
            check(status, f"{self.name}: {self.format_name} data")

    def _fail(self, code: int) -> None:
        raise ElasticFlowError(
            code,
            f"{self.name}: corrupt {self.format_name} data",
            f"at or before compressed byte {C.ef_decoder_offset(self._handle)}: "
            + C.ef_decoder_message(self._handle).decode("utf-8", "replace"),
        )
