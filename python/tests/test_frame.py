"""Wire frames: encode, parse (also one byte at a time), refusals."""

from __future__ import annotations

import pytest

import elasticflow
from elasticflow import ElasticFlowError, ErrorCode, Frame, FrameType


def test_encode_parse_round_trip():
    frame = Frame(FrameType.RESULT, b"payload bytes", flags=1, codec=2, aux=77, id=2**64 - 1)
    wire = frame.encode()
    assert len(wire) == 32 + len(frame.payload)
    assert wire[:4] == b"EFLW"
    assert elasticflow.parse_frame(wire) == (frame, len(wire))
    assert elasticflow.parse_frame(wire + b"next frame...") == (frame, len(wire))
    empty = elasticflow.encode_frame(FrameType.HEARTBEAT)
    assert elasticflow.parse_frame(empty) == (Frame(FrameType.HEARTBEAT), 32)


def test_parse_one_byte_at_a_time():
    wire = elasticflow.encode_frame(FrameType.PARCEL, b"x" * 100, id=5)
    for n in range(len(wire)):
        assert elasticflow.parse_frame(wire[:n]) is None
    frame, used = elasticflow.parse_frame(wire)
    assert used == len(wire) and frame.payload == b"x" * 100 and frame.id == 5


def test_bad_frames():
    wire = bytearray(elasticflow.encode_frame(FrameType.PARCEL, b"data", id=1))
    cases = []
    bad_magic = bytearray(wire)
    bad_magic[0] ^= 1
    cases.append((bad_magic, ErrorCode.BADMAGIC))
    bad_header = bytearray(wire)
    bad_header[12] ^= 1  # aux, under the header checksum
    cases.append((bad_header, ErrorCode.HDRCHECKSUM))
    bad_payload = bytearray(wire)
    bad_payload[-1] ^= 1
    cases.append((bad_payload, ErrorCode.CHECKSUM))
    for data, code in cases:
        with pytest.raises(ElasticFlowError) as caught:
            elasticflow.parse_frame(bytes(data))
        assert caught.value.code == code
    with pytest.raises(ElasticFlowError) as caught:
        elasticflow.parse_frame(bytes(wire), max_payload=3)
    assert caught.value.code == ErrorCode.TOOLONG
    with pytest.raises(ElasticFlowError) as caught:
        elasticflow.encode_frame(99, b"")
    assert caught.value.code == ErrorCode.INVAL
    with pytest.raises(ValueError):
        elasticflow.encode_frame(FrameType.PARCEL, b"", aux=2**32)
