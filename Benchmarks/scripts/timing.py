#!/usr/bin/env python3
"""Runs shell commands side by side and prints their median wall time, throughput and peak memory.

Round r runs every command once, starting at the r-th (a rotating order), so a slow drift of the
machine (frequency, a neighbour's load, the page cache) spreads over all the tools instead of
landing on one. Each command runs under `bash -c`, its output thrown away; wall time is taken
around the whole process. Peak resident memory is GNU time's %M, the largest single process of
the command (for a pipeline, its biggest stage: the kernel keeps the maximum over the tree, not
the sum). Without /usr/bin/time it falls back to wait4(2) here, which cannot tell the command's
peak from this Python process's own (exec keeps the spawner's high-water mark): those figures
then have a floor of about 14 MB and are marked so.

usage: timing.py --corpus FILE --rounds N --baseline NAME [--results TSV]
                 --tool NAME COMMAND [--tool NAME COMMAND ...]
Prints the table (and writes `name, median s, MB/s, peak RSS MB` rows to TSV when asked); exits
non-zero when a command fails.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


GNU_TIME = "/usr/bin/time"


def run_once(command, rss_file):
    """Wall seconds and peak RSS in MB (10^6 bytes) of one run of `bash -c command`."""
    argv = ["bash", "-c", command]
    if rss_file:
        # /usr/bin/time is a small process: what its child inherits at fork is about 1 MB.
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file] + argv
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting
    if process.returncode != 0:
        sys.exit(f"timing.py: command failed with status {process.returncode}: {command}")
    if rss_file:
        with open(rss_file) as f:
            kibibytes = int(f.read().split()[-1])
    else:
        kibibytes = usage.ru_maxrss  # KiB on Linux
    return elapsed, kibibytes * 1024 / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", required=True, help="the NAME of the tool ratios are taken against")
    parser.add_argument("--results", help="also write the figures here, tab-separated")
    parser.add_argument("--tool", nargs=2, action="append", metavar=("NAME", "COMMAND"), required=True)
    options = parser.parse_args()
    names = [name for name, _ in options.tool]
    if options.baseline not in names:
        parser.error(f"--baseline {options.baseline!r} is not one of the tools")
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")

    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        descriptor, rss_file = tempfile.mkstemp(prefix="elasticflow-rss.")
        os.close(descriptor)
    else:
        print("timing.py: no /usr/bin/time; peak RSS from wait4 includes this harness's own (marked >=)",
              file=sys.stderr)
    try:
        report(options, rss_file)
    finally:
        if rss_file:
            os.unlink(rss_file)


def report(options, rss_file):
    names = [name for name, _ in options.tool]
    megabytes = os.path.getsize(options.corpus) / 1e6
    times = {name: [] for name in names}
    peaks = {name: 0.0 for name in names}
    for r in range(options.rounds):
        order = options.tool[r % len(names):] + options.tool[: r % len(names)]
        for name, command in order:
            seconds, peak = run_once(command, rss_file)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
        # Progress on stderr, in the table's row order.
        print(f"  round {r + 1}/{options.rounds}: " + " ".join(f"{times[name][-1]:.3f}" for name in names),
              file=sys.stderr, flush=True)

    medians = {name: statistics.median(times[name]) for name in names}
    ours = medians[options.baseline]
    width = max(len(name) for name in names)
    print(f"{'tool':<{width}}  {'median s':>9}  {'min-max s':>13}  {'MB/s':>7}  "
          f"{'peak RSS MB':>11}  {'time / ours':>11}")
    for name in names:
        median = medians[name]
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        peak = f"{'' if rss_file else '>='}{peaks[name]:.1f}"
        print(f"{name:<{width}}  {median:>9.3f}  {spread:>13}  {megabytes / median:>7.1f}  "
              f"{peak:>11}  {median / ours:>10.2f}x")
    if options.results:
        with open(options.results, "w") as results:
            for name in names:
                results.write(f"{name}\t{medians[name]:.6f}\t{megabytes / medians[name]:.3f}\t{peaks[name]:.3f}\n")


if __name__ == "__main__":
    main()
