#!/usr/bin/env python3
"""Many small parcels, two builds side by side: the round-trip rate of `cluster_bench.py`'s
many-parcels case (a 4 MiB generated file in <= 64-byte parcels, the `parcel-count` task,
compression none, --no-master-work, --in-flight 256), with each binary's steps run alternately
on its own two workers, so both see the same machine load. Prints the median rate and the
master's CPU-microseconds per parcel (from wait4).

Usage: many_parcels_ab.py BEFORE_BINARY AFTER_BINARY [ROUNDS]   (default 7, after one warm-up)"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

env = dict(os.environ, ELASTICFLOW_COOKIE="many-parcels-ab")
binaries = sys.argv[1:3]
if len(binaries) != 2:
    sys.exit(__doc__)
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7


def worker(binary):
    process = subprocess.Popen(
        [binary, "worker", "--listen", "127.0.0.1:0", "--quiet"], stdout=subprocess.PIPE, env=env, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        sys.exit(f"worker did not start: {line!r}")
    return process, line[len("listening on "):]


with tempfile.TemporaryDirectory() as directory:
    small = os.path.join(directory, "small.txt")
    config = os.path.join(directory, "cluster.json")
    subprocess.run([binaries[1], "generate", "--size", "4MiB", "--seed", "2", "-o", small], check=True)
    with open(config, "w") as handle:
        handle.write('{"nodes": []}')
    pools = {binary: [worker(binary), worker(binary)] for binary in binaries}
    rates = {binary: [] for binary in binaries}
    cpu = {binary: [] for binary in binaries}
    try:
        for round_index in range(rounds + 1):  # round 0 is the warm-up
            for binary in binaries if round_index % 2 == 0 else binaries[::-1]:
                addresses = ",".join(address for _, address in pools[binary])
                start = time.perf_counter()
                process = subprocess.Popen(
                    [binary, "run", "--config", config, "--workers", addresses, "--task", "parcel-count",
                     "--parcel-size", "64", "--compression", "none", "--no-master-work", "--in-flight", "256", small],
                    stdout=subprocess.PIPE, env=env)
                output = process.stdout.read()
                _, status, usage = os.wait4(process.pid, 0)
                elapsed = time.perf_counter() - start
                if os.waitstatus_to_exitcode(status) != 0:
                    sys.exit(f"{binary} failed")
                parcels = int(output.decode().strip())
                if round_index > 0:
                    rates[binary].append(parcels / elapsed)
                    cpu[binary].append((usage.ru_utime + usage.ru_stime) / parcels * 1e6)
        for binary in binaries:
            print(f"{binary}: median {statistics.median(rates[binary]):,.0f} round trips/s "
                  f"(runs {', '.join(f'{rate:,.0f}' for rate in rates[binary])}); "
                  f"master {statistics.median(cpu[binary]):.2f} CPU-us per parcel")
    finally:
        for pool in pools.values():
            for process, _ in pool:
                process.terminate()
                process.wait()
