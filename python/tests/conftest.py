"""Shared fixtures: the repository, the CLI to compare with, sample inputs, a naive reference."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections import Counter as PyCounter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def naive_count(data: bytes, lowercase: bool = False):
    """The reference: split on the six ASCII whitespace bytes, count, sort as the CLI does."""
    if lowercase:
        data = data.translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"))
    words = [w for w in re.split(rb"[ \t\n\v\f\r]+", data) if w]
    return sorted(PyCounter(words).items(), key=lambda item: (-item[1], item[0]))


def render(pairs) -> bytes:
    """The CLI's text format: `word count` per line."""
    return b"".join(word + b" " + str(n).encode() + b"\n" for word, n in pairs)


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `elasticflow` executable: ELASTICFLOW_CLI (make python-test sets it), else a build in
    .build/ of the checkout."""
    given = os.environ.get("ELASTICFLOW_CLI")
    if given:
        path = Path(given)
        assert path.is_file() and os.access(path, os.X_OK), f"ELASTICFLOW_CLI={given} is not an executable"
        return path
    for build in ("release", "debug"):
        path = REPO / ".build" / build / "elasticflow"
        if path.is_file():
            return path
    pytest.skip("no elasticflow executable: set ELASTICFLOW_CLI or run `make release`")


def run_cli(cli: Path, *args) -> bytes:
    done = subprocess.run([str(cli), *map(str, args)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture(scope="session")
def tricky_text() -> bytes:
    """Every byte value, every kind of whitespace, mixed case, long words and lines, seeded."""
    rng = random.Random(10)
    alphabet = [b"the", b"The", b"THE", b"caf\xc3\xa9", b"\xff\xfe", b"a\x00b", b"x", b"A", b"a", b"zz" * 300]
    separators = [b" ", b"\t", b"\n", b"\v", b"\f", b"\r", b"\r\n", b"  \n\n"]
    parts = []
    for _ in range(60_000):
        if rng.random() < 0.1:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
        else:
            parts.append(rng.choice(alphabet))
        parts.append(rng.choice(separators))
    return b"".join(parts) + b"no-newline-at-end"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, cli) -> Path:
    """The CLI's own generated corpus (English-like, 3 MiB)."""
    path = tmp_path_factory.mktemp("corpus") / "generated.txt"
    run_cli(cli, "generate", "--size", "3MiB", "--seed", "7", "-o", path)
    return path


@pytest.fixture(scope="session")
def kjv() -> Path:
    for candidate in (REPO.parent / "shared" / "corpora" / "kjv.txt", REPO / "../shared/corpora/kjv.txt"):
        if candidate.is_file():
            return candidate
    pytest.skip("shared/corpora/kjv.txt is not beside the checkout")


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"`{name}` is not installed")
    return path
