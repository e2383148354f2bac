#!/usr/bin/env python3
"""The Python package's word count next to the CLI and plain Python, on one corpus (COPIES
copies of the KJV), all cases interleaved in one run, medians of ROUNDS. Every result is checked
against the first one, pair for pair. Figures: docs/benchmarks.md, "Python".

    PYTHONPATH=python python3 Benchmarks/python_bench.py [--cli .build/release/elasticflow]
        [--copies 10] [--rounds 5] [--kjv PATH]

Cases: elasticflow.count(path) (one thread: the C counter fed 1 MiB reads through ctypes);
elasticflow.count_bytes(data) on the corpus already in memory; a Counter fed 64 KiB pieces;
the naive reference of python/tests (re.split and collections.Counter); and, with --cli,
`elasticflow count --threads 1` and `elasticflow count` (every core), whose text output is
parsed back into pairs.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter as PyCounter

import elasticflow


def naive(data):
    words = [w for w in re.split(rb"[ \t\n\v\f\r]+", data) if w]
    return sorted(PyCounter(words).items(), key=lambda item: (-item[1], item[0]))


def cli_count(cli, path, *flags):
    out = subprocess.run([cli, "count", *flags, path], stdout=subprocess.PIPE, check=True).stdout
    return [(w, int(n)) for w, n in (line.rsplit(b" ", 1) for line in out.splitlines())]


def fed(data, piece=64 << 10):
    with elasticflow.Counter() as c:
        for i in range(0, len(data), piece):
            c.feed(memoryview(data)[i : i + piece])
        c.finish()
        return c.most_common()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kjv", default=os.path.join(os.path.dirname(__file__), "../../shared/corpora/kjv.txt"))
    args = parser.parse_args()
    kjv = open(args.kjv, "rb").read()
    data = kjv * args.copies
    with tempfile.NamedTemporaryFile(suffix=".txt") as corpus:
        corpus.write(data)
        corpus.flush()
        cases = [
            ("elasticflow.count(path)", lambda: elasticflow.count(corpus.name)),
            ("elasticflow.count_bytes(data)", lambda: elasticflow.count_bytes(data)),
            ("Counter.feed, 64 KiB pieces", lambda: fed(data)),
            ("naive Python (re.split + Counter)", lambda: naive(data)),
        ]
        if args.cli:
            cases.append(("elasticflow count --threads 1 (CLI)", lambda: cli_count(args.cli, corpus.name, "--threads", "1")))
            cases.append(("elasticflow count (CLI, every core)", lambda: cli_count(args.cli, corpus.name)))
        times = {name: [] for name, _ in cases}
        expected = None
        for _ in range(args.rounds):
            for name, run in cases:
                start = time.perf_counter()
                result = run()
                times[name].append(time.perf_counter() - start)
                if expected is None:
                    expected = result
                elif result != expected:
                    sys.exit(f"python_bench: {name} gave another count")
    mb = len(data) / 1e6
    print(f"corpus: {args.copies} x kjv.txt = {mb:.1f} MB; {os.cpu_count()} cores; median of {args.rounds}")
    print(f"{'case':<42}{'median s':>10}{'MB/s':>10}")
    for name, _ in cases:
        median = statistics.median(times[name])
        print(f"{name:<42}{median:>10.3f}{mb / median:>10.1f}")
    print(f"library: {elasticflow.library_path} ({elasticflow.library_found_by})")


if __name__ == "__main__":
    main()
