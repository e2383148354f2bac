"""elasticflow.count and count_bytes against the CLI (byte for byte) and a naive reference."""

from __future__ import annotations

import base64
import bz2
import gzip
import random
import subprocess

import pytest

import elasticflow
from conftest import naive_count, render, run_cli, tool


@pytest.mark.parametrize("lowercase", [False, True])
def test_tricky_file_equals_cli_and_reference(tmp_path, cli, tricky_text, lowercase):
    path = tmp_path / "tricky.txt"
    path.write_bytes(tricky_text)
    flags = ["--lowercase"] if lowercase else []
    expected = run_cli(cli, "count", *flags, path)
    got = elasticflow.count(path, lowercase=lowercase)
    assert render(got) == expected
    assert got == naive_count(tricky_text, lowercase)
    assert elasticflow.count_bytes(tricky_text, lowercase=lowercase) == got


def test_generated_corpus_equals_cli(cli, corpus):
    assert render(elasticflow.count(corpus)) == run_cli(cli, "count", corpus)
    assert render(elasticflow.count(str(corpus), lowercase=True)) == run_cli(cli, "count", "--lowercase", corpus)


def test_kjv_equals_cli_and_reference(cli, kjv):
    got = elasticflow.count(kjv, lowercase=True)
    assert render(got) == run_cli(cli, "count", "--lowercase", kjv)
    assert got == naive_count(kjv.read_bytes(), lowercase=True)


def test_top_equals_cli(cli, corpus):
    assert render(elasticflow.count(corpus, top=25)) == run_cli(cli, "count", "--top", "25", corpus)
    assert elasticflow.count(corpus, top=25) == elasticflow.count(corpus)[:25]


def test_larger_than_one_read(tmp_path, cli):
    # Several 1 MiB reads, with words straddling every read boundary.
    data = b"".join(b"w%d " % (i % 977) for i in range(700_000))
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    assert len(data) > 3 * (1 << 20)
    assert render(elasticflow.count(path)) == run_cli(cli, "count", path)
    assert elasticflow.count(path) == naive_count(data)


def _compressed(tmp_path, text: bytes):
    files = {}
    (tmp_path / "t.gz").write_bytes(gzip.compress(text[: len(text) // 2]) + gzip.compress(text[len(text) // 2 :]))
    files["gzip"] = tmp_path / "t.gz"
    (tmp_path / "t.bz2").write_bytes(bz2.compress(text))
    files["bzip2"] = tmp_path / "t.bz2"
    plain = tmp_path / "t.txt"
    plain.write_bytes(text)
    subprocess.run([tool("zstd"), "-q", "-f", str(plain), "-o", str(tmp_path / "t.zst")], check=True)
    files["zstd"] = tmp_path / "t.zst"
    subprocess.run([tool("lz4"), "-q", "-f", str(plain), str(tmp_path / "t.lz4")], check=True)
    files["lz4"] = tmp_path / "t.lz4"
    return files


def test_compressed_files_equal_cli(tmp_path, cli, tricky_text):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(tricky_text)
    expected = run_cli(cli, "count", "--lowercase", plain)
    for fmt, path in _compressed(tmp_path, tricky_text).items():
        assert render(elasticflow.count(path, lowercase=True)) == expected, fmt
        assert run_cli(cli, "count", "--lowercase", path) == expected, fmt
        # decompress="none" counts the compressed bytes themselves, as --decompress none does.
        assert elasticflow.count(path, decompress="none") == naive_count(path.read_bytes()), fmt


def test_compressed_input_larger_than_one_read(tmp_path, cli):
    # Compressed bytes that take several 1 MiB reads (random text compresses poorly), decoded
    # output that takes several buffers.
    rng = random.Random(3)
    text = base64.encodebytes(rng.randbytes(3 << 19)).replace(b"+", b" ")
    path = tmp_path / "random.gz"
    path.write_bytes(gzip.compress(text, compresslevel=1))
    assert path.stat().st_size > 1 << 20
    assert render(elasticflow.count(path)) == run_cli(cli, "count", path)
    assert elasticflow.count(path) == naive_count(text)


def test_empty_and_whitespace_only(tmp_path, cli):
    for name, data in (("empty", b""), ("blank", b" \t\n\r\n\v\f  ")):
        path = tmp_path / name
        path.write_bytes(data)
        assert elasticflow.count(path) == []
        assert run_cli(cli, "count", path) == b""
    assert elasticflow.count_bytes(b"") == []


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(b"some words " * 1000)[:-12])
    with pytest.raises(elasticflow.ElasticFlowError) as caught:
        elasticflow.count(path)
    assert caught.value.code == elasticflow.ErrorCode.NEEDMORE
    assert "cut.gz" in str(caught.value) and "truncated gzip" in str(caught.value)
    assert caught.value.strerror in str(caught.value)


def test_corrupt_zstd_is_an_error(tmp_path):
    path = tmp_path / "bad.zst"
    data = bytearray(b"\x28\xb5\x2f\xfd" + bytes(range(200)) * 4)
    path.write_bytes(bytes(data))
    with pytest.raises(elasticflow.ElasticFlowError) as caught:
        elasticflow.count(path)
    assert caught.value.code == elasticflow.ErrorCode.CORRUPT
    assert "bad.zst: corrupt zstd data" in str(caught.value)


def test_bad_arguments():
    with pytest.raises(FileNotFoundError):
        elasticflow.count("/nonexistent/file.txt")
    with pytest.raises(ValueError):
        elasticflow.count("/dev/null", decompress="maybe")
    with pytest.raises(TypeError):
        elasticflow.count_bytes("text, not bytes")
