#!/usr/bin/env python3
"""Cluster benchmarks (make bench): master + 2 workers on loopback, side by side with the
single-node count, and the many-parcels round-trip rate. Prints a table; figures are medians of
interleaved rounds. Usage: cluster_bench.py ELASTICFLOW_BINARY CORPUS [ROUNDS]"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

binary, corpus = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else int(os.environ.get("BENCH_ROUNDS", "5"))
env = dict(os.environ, ELASTICFLOW_COOKIE="bench-cookie")


def start_worker():
    process = subprocess.Popen(
        [binary, "worker", "--listen", "127.0.0.1:0", "--quiet"], stdout=subprocess.PIPE, env=env, text=True)
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


workers = [start_worker(), start_worker()]
addresses = ",".join(address for _, address in workers)
try:
    size_mb = os.path.getsize(corpus) / 1e6
    cases = [
        ("single node (count --lowercase)", [binary, "count", "--lowercase", corpus]),
        ("master + 2 workers, lz4", [binary, "count", "--lowercase", "--workers", addresses, "--compression", "lz4", corpus]),
        ("master + 2 workers, lz4:8", [binary, "count", "--lowercase", "--workers", addresses, "--compression", "lz4:8", corpus]),
        ("master + 2 workers, none", [binary, "count", "--lowercase", "--workers", addresses, "--compression", "none", corpus]),
        ("master + 2 workers, zstd:1", [binary, "count", "--lowercase", "--workers", addresses, "--compression", "zstd:1", corpus]),
    ]
    times = {name: [] for name, _ in cases}
    outputs = {}
    for _ in range(1):  # warm-up: page cache, workers' pools
        for name, arguments in cases:
            timed(arguments)
    for round_index in range(rounds):
        order = cases[round_index % len(cases):] + cases[:round_index % len(cases)]
        for name, arguments in order:
            elapsed, output = timed(arguments)
            times[name].append(elapsed)
            outputs[name] = output
    reference = outputs[cases[0][0]]
    single = statistics.median(times[cases[0][0]])
    print(f"corpus: {corpus} ({size_mb:.1f} MB), {rounds} interleaved rounds, medians")
    print(f"{'case':40} {'median s':>9} {'MB/s':>8} {'vs single':>10} {'same output':>12}")
    for name, _ in cases:
        median = statistics.median(times[name])
        print(f"{name:40} {median:9.3f} {size_mb / median:8.1f} {single / median:9.0%} "
              f"{'yes' if outputs[name] == reference else 'NO':>12}")
        if outputs[name] != reference:
            sys.exit("distributed output differs from the single-node output")

    # Many parcels: a trivial task on tiny parcels, every parcel a round trip through the master.
    with tempfile.TemporaryDirectory() as directory:
        small = os.path.join(directory, "small.txt")
        subprocess.run([binary, "generate", "--size", "4MiB", "--seed", "2", "-o", small], check=True)
        config = os.path.join(directory, "cluster.json")
        with open(config, "w") as handle:
            handle.write('{"nodes": []}')
        rates = []
        parcels = 0
        for _ in range(3):
            elapsed, output = timed([
                binary, "run", "--config", config, "--workers", addresses, "--task", "parcel-count",
                "--parcel-size", "64", "--compression", "none", "--no-master-work", "--in-flight", "256", small])
            parcels = int(output.decode().strip())
            rates.append(parcels / elapsed)
        print(f"many parcels: {parcels} parcels of <= 64 bytes (parcel-count task, 2 workers, in-flight 256): "
              f"median {statistics.median(rates):,.0f} round trips/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
finally:
    for process, _ in workers:
        process.terminate()
        process.wait()
