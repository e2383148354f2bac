#!/usr/bin/env python3
"""The status server's cost (make bench, docs/benchmarks.md): the single-node count and a master
with 2 workers on loopback, each with `--status` (and the workers with `--metrics`) and without,
side by side. Interleaved rounds, medians; the outputs must be byte-identical.
Usage: status_bench.py ELASTICFLOW_BINARY CORPUS [ROUNDS]"""
import os
import statistics
import subprocess
import sys
import time

binary, corpus = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else int(os.environ.get("BENCH_ROUNDS", "7"))
env = dict(os.environ, ELASTICFLOW_COOKIE="bench-cookie")


def start_worker(metrics):
    arguments = [binary, "worker", "--listen", "127.0.0.1:0", "--quiet"]
    if metrics:
        arguments += ["--metrics", "127.0.0.1:0"]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        sys.exit(f"worker did not start: {line!r}")
    return process, line[len("listening on "):]


def timed(arguments):
    start = time.perf_counter()
    result = subprocess.run(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(arguments)}\n{result.stderr.decode()}")
    return elapsed, result.stdout


plain = [start_worker(False), start_worker(False)]
watched = [start_worker(True), start_worker(True)]
try:
    off = ",".join(address for _, address in plain)
    on = ",".join(address for _, address in watched)
    status = ["--status", "127.0.0.1:0"]
    cases = [
        ("single node, no --status", [binary, "count", "--lowercase", corpus]),
        ("single node, --status", [binary, "count", "--lowercase", *status, corpus]),
        ("master + 2 workers, no --status", [binary, "count", "--lowercase", "--workers", off, corpus]),
        ("master + 2 workers, --status/--metrics", [binary, "count", "--lowercase", "--workers", on, *status, corpus]),
    ]
    times = {name: [] for name, _ in cases}
    outputs = {}
    for name, arguments in cases:  # warm-up: page cache, workers' pools
        timed(arguments)
    for index in range(rounds):
        for name, arguments in cases[index % len(cases):] + cases[:index % len(cases)]:
            elapsed, output = timed(arguments)
            times[name].append(elapsed)
            outputs[name] = output
    size_mb = os.path.getsize(corpus) / 1e6
    reference = outputs[cases[0][0]]
    print(f"corpus: {corpus} ({size_mb:.1f} MB), {rounds} interleaved rounds, medians (min-max)")
    print(f"{'case':40} {'median s':>9} {'MB/s':>8} {'range s':>15} {'same output':>12}")
    for name, _ in cases:
        median = statistics.median(times[name])
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        same = "yes" if outputs[name] == reference else "NO"
        print(f"{name:40} {median:9.3f} {size_mb / median:8.1f} {spread:>15} {same:>12}")
    if any(outputs[name] != reference for name, _ in cases):
        sys.exit("outputs differ")
finally:
    for process, _ in plain + watched:
        process.terminate()
        process.wait()
