"""Errors: the C core's negative EF_E* codes as one exception type."""

from __future__ import annotations

import enum
from typing import Optional

from . import _lib


class ErrorCode(enum.IntEnum):
    """The EF_E* codes of elasticflow.h (tests/test_library.py checks them against the header)."""

    OK = 0
    NEEDMORE = -1
    NOMEM = -2
    INVAL = -3
    TOOBIG = -4
    CORRUPT = -5
    BADMAGIC = -6
    VERSION = -7
    TOOLONG = -8
    CHECKSUM = -9
    HDRCHECKSUM = -10
    CODEC = -11
    SPACE = -12
    FORMAT = -13
    SYS = -14
    AUTH = -15
    CLOSED = -16
    BUSY = -17
    FRAMETYPE = -18
    WORDTOOLONG = -19
    FRAMEAUTH = -20
    OVERFLOW = -21


class ElasticFlowError(Exception):
    """A call into libelasticflow failed.

    ``code`` is the ``ErrorCode`` (or the bare int for a code newer than this package),
    ``strerror`` is ``ef_strerror(code)``, and ``str(error)`` reads ``"<what>: <strerror>"``.
    """

    def __init__(self, code: int, what: str, detail: Optional[str] = None) -> None:
        try:
            self.code: int = ErrorCode(code)
        except ValueError:
            self.code = code
        self.strerror: str = _lib.strerror(code)
        self.what = what
        message = f"{what}: {self.strerror}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


def check(result: int, what: str) -> int:
    """``result`` when it is >= 0, else raises ``ElasticFlowError`` for it."""
    if result < 0:
        raise ElasticFlowError(result, what)
    return result
