"""Compressed parcel buffers: round trips per codec, refusals of bad input."""

from __future__ import annotations

import pytest

import elasticflow
from elasticflow import Codec, ElasticFlowError, ErrorCode

DATA = b"".join(b"line %d of some parcel text\n" % i for i in range(5000))


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_round_trip(codec):
    for data in (DATA, b"", b"x", bytes(range(256)) * 10):
        packed = elasticflow.compress(data, codec)
        assert packed[:4] == b"EFPB"
        assert elasticflow.peek(packed) == (codec, len(data))
        assert elasticflow.decompress(packed) == data
    if codec != "none":
        assert len(elasticflow.compress(DATA, codec)) < len(DATA) // 3


def test_levels_and_a_reused_codec():
    with Codec() as c:
        for level in (1, 3, 19):
            assert c.decompress(c.compress(DATA, "zstd", level)) == DATA
        for acceleration in (1, 8, 65537):
            assert c.decompress(c.compress(DATA, "lz4", acceleration)) == DATA
        with pytest.raises(ElasticFlowError) as caught:
            c.compress(DATA, "zstd", 42)
        assert caught.value.code == ErrorCode.INVAL
        assert c.compress(DATA, 2) == c.compress(DATA, "zstd")
    with pytest.raises(ValueError):
        elasticflow.compress(DATA, "brotli")


def test_bad_buffers_are_refused():
    packed = elasticflow.compress(DATA, "zstd")
    cases = {
        b"short": ErrorCode.NEEDMORE,
        b"XXXX" + packed[4:]: ErrorCode.BADMAGIC,
        packed[:4] + b"\x09" + packed[5:]: ErrorCode.CODEC,
        packed[:-5]: ErrorCode.CORRUPT,
    }
    for data, code in cases.items():
        with pytest.raises(ElasticFlowError) as caught:
            elasticflow.decompress(data)
        assert caught.value.code == code
        assert str(caught.value).endswith(caught.value.strerror)


def test_limit():
    packed = elasticflow.compress(DATA, "lz4")
    with pytest.raises(ElasticFlowError) as caught:
        elasticflow.decompress(packed, limit=len(DATA) - 1)
    assert caught.value.code == ErrorCode.TOOBIG
    assert elasticflow.decompress(packed, limit=len(DATA)) == DATA
    assert elasticflow.decompress(packed, limit=None) == DATA


def test_hostile_header_does_not_allocate_its_claim():
    # A header that claims 2**60 bytes is refused by the default limit, not allocated.
    packed = bytearray(elasticflow.compress(b"tiny", "none"))
    packed[8:16] = (2**60).to_bytes(8, "little")
    with pytest.raises(ElasticFlowError) as caught:
        elasticflow.decompress(bytes(packed))
    assert caught.value.code == ErrorCode.TOOBIG
