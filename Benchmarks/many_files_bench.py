#!/usr/bin/env python3
"""Many small files: FILES files of about 1.6 KB (8 MB in all, cut from the KJV at line ends) next
to one file holding the same bytes, counted by `elasticflow count` as a directory, as a
`--files-from` list, as `cat DIR/*/* | elasticflow count -`, and on a cluster of two worker
processes on loopback (copy mode, the master counting too). Medians of ROUNDS, every case once per
round (interleaved). Checks that every output is the one file's, byte for byte. Figures:
docs/benchmarks.md, "Many small files".

    Benchmarks/many_files_bench.py ELASTICFLOW [--files 5000] [--bytes 8000000] [--rounds 5] [--kjv PATH]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(command, expected=None, env=None):
    start = time.perf_counter()
    result = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LC_ALL="C", **(env or {})))
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"many_files_bench: '{command}' failed: {result.stderr.decode(errors='replace')}")
    if expected is not None and result.stdout != expected:
        sys.exit(f"many_files_bench: '{command}' printed another count than the one file's")
    return seconds, result.stdout


def corpus_bytes(kjv, size):
    with open(kjv, "rb") as source:
        text = source.read()
    data = (text * (size // len(text) + 1))[:size]
    return data[:data.rfind(b"\n") + 1]


def split_at_lines(data, pieces):
    """`pieces` parts of about equal size, each ending at a newline."""
    parts, start = [], 0
    for index in range(1, pieces + 1):
        end = len(data) if index == pieces else data.find(b"\n", len(data) * index // pieces) + 1
        end = max(end, start)
        parts.append(data[start:end])
        start = end
    return parts


def start_worker(ef, cookie):
    worker = subprocess.Popen([ef, "worker", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=dict(os.environ, ELASTICFLOW_COOKIE=cookie))
    line = worker.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        sys.exit(f"many_files_bench: the worker printed '{line}'")
    return worker, line[len("listening on "):]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("elasticflow")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--bytes", type=int, default=8_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kjv", default=os.path.join(os.path.dirname(__file__), "../../shared/corpora/kjv.txt"))
    args = parser.parse_args()
    ef = os.path.abspath(args.elasticflow)
    cookie = "many-files-bench"
    with tempfile.TemporaryDirectory() as directory:
        data = corpus_bytes(args.kjv, args.bytes)
        one = os.path.join(directory, "one.txt")
        with open(one, "wb") as out:
            out.write(data)
        tree = os.path.join(directory, "tree")
        paths = []
        for index, part in enumerate(split_at_lines(data, args.files)):
            folder = os.path.join(tree, f"{index // 100:03d}")  # 100 files a folder, as corpora often come
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{index:06d}.txt")
            with open(path, "wb") as out:
                out.write(part)
            paths.append(path)
        listing = os.path.join(directory, "list0")
        with open(listing, "wb") as out:
            out.write(b"".join(path.encode() + b"\0" for path in paths))
        workers = [start_worker(ef, cookie) for _ in range(2)]
        try:
            cluster = f"{ef} count --workers {workers[0][1]},{workers[1][1]}"
            _, expected = timed(f"{ef} count {one}")
            cases = [
                ("count one.txt", f"{ef} count {one}"),
                (f"count DIR ({args.files} files)", f"{ef} count {tree}"),
                ("count --files-from LIST (NUL)", f"{ef} count --files-from {listing}"),
                ("cat DIR/*/* | count -", f"cat {tree}/*/* | {ef} count -"),
                ("cluster: count one.txt", f"{cluster} {one}"),
                (f"cluster: count DIR ({args.files} files)", f"{cluster} {tree}"),
                ("cluster --compression none: one.txt", f"{cluster} --compression none {one}"),
                ("cluster --compression none: DIR", f"{cluster} --compression none {tree}"),
            ]
            times = {name: [] for name, _ in cases}
            for _ in range(args.rounds):  # interleaved, so a noisy moment hits every case alike
                for name, command in cases:
                    times[name].append(timed(command, expected, env={"ELASTICFLOW_COOKIE": cookie})[0])
        finally:
            for worker, _ in workers:
                worker.terminate()
                worker.wait()
        print(f"corpus: {len(data) / 1e6:.1f} MB as one file and as {args.files} files "
              f"(mean {len(data) / args.files:.0f} B); {os.cpu_count()} cores; median of {args.rounds}; "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"{'case':42} {'median s':>9} {'MB/s':>8} {'x one file':>11}")
        baseline = {"": statistics.median(times["count one.txt"]),
                    "cluster": statistics.median(times["cluster: count one.txt"]),
                    "none": statistics.median(times["cluster --compression none: one.txt"])}
        for name, _ in cases:
            median = statistics.median(times[name])
            base = baseline["none" if "none" in name else "cluster" if name.startswith("cluster") else ""]
            print(f"{name:42} {median:9.3f} {len(data) / 1e6 / median:8.1f} {median / base:11.2f}")


if __name__ == "__main__":
    main()
