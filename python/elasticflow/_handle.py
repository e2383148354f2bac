"""Ownership of a C handle: freed exactly once, by close(), the context manager or the GC."""

from __future__ import annotations

import threading
import weakref


class Handle:
    """Base of the classes that own one C handle.

    A C handle is single-threaded, and ctypes lets go of the GIL during a call, so every call
    on the handle is made under ``self._lock``: two Python threads sharing an object take turns
    instead of racing in C, and ``close()`` cannot free the handle under a call in progress.
    The handle is freed by ``close()``, by leaving a ``with`` block, or when the object is
    collected (``weakref.finalize``, which also runs at interpreter exit) — whichever is first.
    """

    _kind = "handle"

    def _own(self, handle: int, free) -> None:
        self._handle = handle
        self._lock = threading.RLock()
        self._finalizer = weakref.finalize(self, free, handle)

    def _h(self) -> int:
        """The handle; the caller holds ``self._lock``."""
        if self._handle is None:
            raise ValueError(f"I/O operation on a closed {self._kind}")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Free the C handle now. Calling it again does nothing."""
        with self._lock:
            self._handle = None
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
