#!/usr/bin/env python3
"""--compression auto against the fixed codecs, per link speed (make bench; docs/benchmarks.md).

One worker in a network namespace of its own, the master in another, joined by a veth pair whose
both ends are shaped with `tc tbf` (100 Mbit/s, 200 Mbit/s, 1 Gbit/s) or left unshaped;
`--no-master-work`, so every parcel crosses the link. For each link the fixed codecs and `auto`
run side by side in interleaved rounds; the table gives medians, whether every output equals the
single-node count byte for byte, and what `auto` chose (its summary lines).
Needs root and iproute2. Usage: autocompression_bench.py ELASTICFLOW CORPUS [--rounds N]
[--links 100mbit,200mbit,1gbit,unshaped] [--codecs none,lz4,zstd:1,zstd:3,auto]"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("corpus")
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--links", default="100mbit,200mbit,1gbit,unshaped")
parser.add_argument("--codecs", default="none,lz4,zstd:1,zstd:3,auto")
parser.add_argument("--port", type=int, default=7861)
options = parser.parse_args()

tag = f"efab-{os.getpid()}"
master_ns, worker_ns = f"{tag}-m", f"{tag}-w"
master_if, worker_if = "efab0", "eth0"
worker_address = "10.214.1.2"


def ip(*arguments, check=True):
    return subprocess.run(["ip", *arguments], check=check, capture_output=True, text=True)


def shape(rate):
    """Both directions at `rate` (tbf on each end's egress), or unshaped (no qdisc)."""
    for namespace, device in ((master_ns, master_if), (worker_ns, worker_if)):
        subprocess.run(
            ["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root"], capture_output=True)
        if rate != "unshaped":
            bits = int(rate.replace("gbit", "000mbit").replace("mbit", "")) * 1_000_000
            burst = max(64 << 10, bits // 8 // 250)  # at least a 4 ms tick's worth of bytes
            subprocess.run(
                ["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", rate,
                 "burst", str(burst), "latency", "50ms"], check=True)


def timed(arguments, env):
    start = time.perf_counter()
    result = subprocess.run(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(arguments)}\n{result.stderr.decode()[-2000:]}")
    return elapsed, result.stdout, result.stderr.decode()


ip("netns", "add", master_ns)
ip("netns", "add", worker_ns)
worker = None
try:
    for namespace in (master_ns, worker_ns):
        ip("-n", namespace, "link", "set", "lo", "up")
    ip("-n", master_ns, "link", "add", "name", master_if, "type", "veth", "peer", "name", worker_if, "netns", worker_ns)
    ip("-n", master_ns, "addr", "add", "10.214.1.1/30", "dev", master_if)
    ip("-n", worker_ns, "addr", "add", f"{worker_address}/30", "dev", worker_if)
    ip("-n", master_ns, "link", "set", master_if, "up")
    ip("-n", worker_ns, "link", "set", worker_if, "up")
    cookie_dir = tempfile.mkdtemp(prefix="efab-")
    cookie = os.path.join(cookie_dir, "cookie")
    with open(cookie, "w") as handle:
        handle.write(f"autocompression-bench-{os.getpid()}\n")
    env = dict(os.environ)
    worker = subprocess.Popen(
        ["ip", "netns", "exec", worker_ns, options.binary, "worker", "--listen", f"{worker_address}:{options.port}",
         "--cookie-file", cookie, "--quiet"], stdout=subprocess.PIPE, text=True)
    line = worker.stdout.readline().strip()
    if not line.startswith("listening on "):
        sys.exit(f"worker did not start: {line!r}")
    reference = subprocess.run([options.binary, "count", options.corpus], stdout=subprocess.PIPE, check=True).stdout
    size_mb = os.path.getsize(options.corpus) / 1e6
    codecs = options.codecs.split(",")
    print(f"corpus: {options.corpus} ({size_mb:.1f} MB); one worker in its own namespace behind veth, "
          f"--no-master-work; {options.rounds} interleaved rounds, medians; {os.cpu_count()} cores")
    print(f"{'link':10} " + " ".join(f"{codec:>9}" for codec in codecs) + "   best fixed  auto/best  same output")
    for link in options.links.split(","):
        shape(link)
        times = {codec: [] for codec in codecs}
        same = True
        chosen = {}

        def command(codec):
            return ["ip", "netns", "exec", master_ns, options.binary, "count", "--workers",
                    f"{worker_address}:{options.port}", "--cookie-file", cookie, "--no-master-work",
                    "--compression", codec, "--summary", options.corpus]

        for codec in codecs:  # warm-up
            timed(command(codec), env)
        for round_index in range(options.rounds):
            order = codecs[round_index % len(codecs):] + codecs[:round_index % len(codecs)]
            for codec in order:
                elapsed, output, errors = timed(command(codec), env)
                times[codec].append(elapsed)
                same = same and output == reference
                if codec == "auto":
                    chosen[round_index] = [line.strip()[len("compression "):] for line in errors.splitlines()
                                           if line.strip().startswith("compression ")]
        medians = {codec: statistics.median(values) for codec, values in times.items()}
        fixed = {codec: value for codec, value in medians.items() if codec != "auto"}
        best = min(fixed, key=fixed.get) if fixed else None
        ratio = medians["auto"] / fixed[best] if best and "auto" in medians else float("nan")
        print(f"{link:10} " + " ".join(f"{medians[codec]:9.3f}" for codec in codecs)
              + f"   {best or '-':>10}  {ratio:9.3f}  {'yes' if same else 'NO'}")
        for round_index, lines in sorted(chosen.items()):
            print(f"  auto, round {round_index + 1}: " + "; ".join(lines))
finally:
    if worker is not None:
        worker.terminate()
        try:
            worker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.kill()
    ip("netns", "del", master_ns, check=False)
    ip("netns", "del", worker_ns, check=False)
