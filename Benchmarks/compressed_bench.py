#!/usr/bin/env python3
"""Compressed input: `elasticflow count F.zst` / `F.gz` next to the pipes that decompress first
(`zstd -dc F | elasticflow count -`, `zcat F | elasticflow count -`, `zstd -dc F | wc -w`), and a
seekable .zst (`elasticflow compress --seekable`, level 3, 1 MiB frames) counted on every core
next to its own pipe and the plain file, in one run on one corpus (COPIES copies of the KJV),
medians of ROUNDS. Checks that every elasticflow output is the plain file's, byte for byte.
Figures: docs/benchmarks.md, "Compressed input".

    Benchmarks/compressed_bench.py ELASTICFLOW [--copies 20] [--rounds 3] [--kjv PATH]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command, expected=None):
    """Wall seconds and CPU seconds (user + system of every process of the command)."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    result = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LC_ALL="C"))
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    if result.returncode != 0:
        sys.exit(f"compressed_bench: '{command}' failed: {result.stderr.decode(errors='replace')}")
    if expected is not None and result.stdout != expected:
        sys.exit(f"compressed_bench: '{command}' printed another count than the plain file's")
    return (seconds, cpu), result.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("elasticflow")
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kjv", default=os.path.join(os.path.dirname(__file__), "../../shared/corpora/kjv.txt"))
    args = parser.parse_args()
    for tool in ("zstd", "gzip", "wc"):
        if not shutil.which(tool):
            sys.exit(f"compressed_bench: '{tool}' is needed (make deps installs it)")
    ef = os.path.abspath(args.elasticflow)
    with tempfile.TemporaryDirectory() as directory:
        plain = os.path.join(directory, "corpus.txt")
        with open(args.kjv, "rb") as source:
            text = source.read()
        with open(plain, "wb") as out:
            for _ in range(args.copies):
                out.write(text)
        subprocess.run(["zstd", "-q", "-k", plain], check=True)      # level 3, the tool's default
        subprocess.run(["gzip", "-k", plain], check=True)             # level 6, the tool's default
        seekable = os.path.join(directory, "corpus.seekable.zst")
        subprocess.run([ef, "compress", "--seekable", "--level", "3", "-o", seekable, plain], check=True)
        _, expected = timed(f"{ef} count {plain}")
        cases = [
            ("elasticflow count corpus.txt (plain)", f"{ef} count {plain}", expected),
            ("elasticflow count corpus.txt.zst", f"{ef} count {plain}.zst", expected),
            ("zstd -dc corpus.txt.zst | elasticflow count -", f"zstd -dc {plain}.zst | {ef} count -", expected),
            ("zstd -dc corpus.txt.zst | wc -w", f"zstd -dc {plain}.zst | wc -w", None),
            ("elasticflow count corpus.txt.gz", f"{ef} count {plain}.gz", expected),
            ("zcat corpus.txt.gz | elasticflow count -", f"zcat {plain}.gz | {ef} count -", expected),
            ("elasticflow count corpus.seekable.zst", f"{ef} count {seekable}", expected),
            ("zstd -dc corpus.seekable.zst | elasticflow count -", f"zstd -dc {seekable} | {ef} count -", expected),
        ]
        sizes = {suffix: os.path.getsize(plain + suffix) for suffix in ("", ".zst", ".gz")}
        sizes["seekable"] = os.path.getsize(seekable)
        print(f"corpus: {args.copies} x kjv.txt = {sizes[''] / 1e6:.1f} MB plain, "
              f"{sizes['.zst'] / 1e6:.1f} MB .zst, {sizes['.gz'] / 1e6:.1f} MB .gz, "
              f"{sizes['seekable'] / 1e6:.1f} MB seekable .zst; {os.cpu_count()} cores; "
              f"median of {args.rounds}")
        times = {name: [] for name, _, _ in cases}
        cpus = {name: [] for name, _, _ in cases}
        for _ in range(args.rounds):  # interleaved, so a noisy moment hits every case alike
            for name, command, want in cases:
                (wall, cpu), _ = timed(command, want)
                times[name].append(wall)
                cpus[name].append(cpu)
        # CPU seconds are the work done whatever the machine's load; wall seconds, on a shared
        # machine, also measure how much of it the command got.
        print(f"{'case':50} {'median s':>9} {'MB/s (plain)':>13} {'CPU s':>7}")
        for name, _, _ in cases:
            median = statistics.median(times[name])
            print(f"{name:50} {median:9.3f} {sizes[''] / 1e6 / median:13.1f} {statistics.median(cpus[name]):7.3f}")


if __name__ == "__main__":
    main()
