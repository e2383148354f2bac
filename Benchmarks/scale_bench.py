#!/usr/bin/env python3
"""Scale-out benchmark: what the master and the workers cost in CPU-seconds, on loopback.

Wall time on a shared 2-core machine says little about a cluster, so this measures CPU:
the master (`count`, from its wait4 rusage) and every worker process it used (utime + stime of
the long-running worker from /proc/PID/stat, read before and after each run). Figures are per
GB dispatched (GB = 1e9 bytes of input) and against the single-node count. Wall seconds are
printed as information only.

Cases (all `--no-master-work --lowercase`, 2 workers with --two-worker-threads each, 1 by default:
two single-thread workers use this 2-core machine's two cores as the single-node count's two
threads do; with 2 threads each, four counting threads share two cores and every process's CPU
time swells with the contention):
  copy-none        copy mode, --compression none
  copy-lz4         copy mode, --compression lz4
  copy-none-16m-if8  copy mode, --compression none --parcel-size 16MiB --in-flight 8
  copy-none-encrypt  copy-none with --encrypt (frames encrypted, not only authenticated)
  copy-lz4-encrypt   copy-lz4 with --encrypt
  shared-none      --shared-input --compression none     (skipped if the binary lacks it)
  shared-default   --shared-input, default compression   (skipped if the binary lacks it)
Scaling model (workers with --threads 1, sizes from --workers-list):
  scale-shared     --shared-input --compression none     (skipped if the binary lacks it)
  scale-copy       copy mode, --compression none         (the "before" comparison)

Every distributed output must be byte-identical to the single-node output (exit 1 otherwise).

The master's CPU includes costs that do not grow with the input (process start, connections,
sorting and printing the vocabulary), which on 173 MB are a large share of a small figure. Each
round therefore also runs every distributed case on one copy of kjv (4.3 MB, the same
vocabulary); "marginal" figures are the slope between the two, (CPU(corpus) - CPU(one copy)) /
(GB(corpus) - GB(one copy)): the master's cost per GB actually dispatched.
Medians of N interleaved rounds after one warm-up round.

Usage: scale_bench.py BINARY [--corpus PATH] [--rounds N] [--json PATH]
                             [--workers-list 2,4,8,16] [--cases copy-none,copy-lz4,...]
                             [--kjv PATH] [--parcel-size SIZE]
--corpus: an existing file is used as is; a missing one is written (40 copies of kjv) and kept.
Without it, the corpus is written to a temporary directory and removed at the end.
"""
import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COOKIE_ENV = dict(os.environ, ELASTICFLOW_COOKIE="bench-cookie")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COPIES = 40
TWO_WORKER_CASES = {
    "copy-none": (False, ["--compression", "none"]),
    "copy-lz4": (False, ["--compression", "lz4"]),
    # Copy mode tuned for fewer, larger results: the master holds no parcel buffer when it sends
    # from files (sendfile), so more in flight costs it nothing.
    "copy-none-16m-if8": (False, ["--compression", "none", "--parcel-size", "16MiB", "--in-flight", "8"]),
    # Sessions: every frame sealed (the default, MAC only) vs encrypted (--encrypt).
    "copy-none-encrypt": (False, ["--compression", "none", "--encrypt"]),
    "copy-lz4-encrypt": (False, ["--compression", "lz4", "--encrypt"]),
    "shared-none": (True, ["--shared-input", "--compression", "none"]),
    "shared-default": (True, ["--shared-input"]),
}
SCALING_MODES = {
    "scale-shared": (True, ["--shared-input", "--compression", "none"]),
    "scale-copy": (False, ["--compression", "none"]),
}
ALL_CASES = list(TWO_WORKER_CASES) + list(SCALING_MODES)


class BenchFailure(Exception):
    pass


# ----------------------------------------------------------------------------- setup

def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--corpus", help="corpus file (used if it exists, else written there)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=COPIES,
                        help=f"copies of kjv in a written corpus (default {COPIES}: 173 MB; 400: 1.7 GB, which the "
                             "scaling model needs for 16 workers to all get 32 MiB splits); with an existing "
                             "--corpus, how many copies it holds")
    parser.add_argument("--json", dest="json_path", help="write every figure here")
    parser.add_argument("--workers-list", default="2,4,8,16")
    parser.add_argument("--cases", default=",".join(ALL_CASES),
                        help=f"comma-separated subset of: {', '.join(ALL_CASES)}")
    parser.add_argument("--kjv", help="kjv.txt (default: ../shared/corpora/kjv.txt from the repository)")
    parser.add_argument("--parcel-size", help="passed to every count (default: the binary's)")
    parser.add_argument("--scaling-parcel-size",
                        help="--parcel-size of the scaling model's runs only (e.g. 4MiB, so 16 workers all get "
                             "splits of a 173 MB corpus)")
    parser.add_argument("--two-worker-threads", type=int, default=1,
                        help="--threads of the 2 workers of the two-worker cases (default 1; 0: the worker's default)")
    arguments = parser.parse_args()
    arguments.workers_list = [int(n) for n in arguments.workers_list.split(",") if n]
    arguments.cases = [c for c in arguments.cases.split(",") if c]
    unknown = [c for c in arguments.cases if c not in ALL_CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {ALL_CASES}")
    if arguments.rounds < 1 or any(n < 1 for n in arguments.workers_list):
        parser.error("--rounds and --workers-list entries must be >= 1")
    return arguments


def find_kjv(given):
    candidates = [given] if given else [
        Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "kjv.txt",
        Path("/work/shared/corpora/kjv.txt"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise BenchFailure(f"kjv.txt not found (tried {', '.join(map(str, candidates))}); pass --kjv")


def write_corpus(path, kjv, copies):
    data = kjv.read_bytes()
    with open(path, "wb") as handle:
        for _ in range(copies):
            handle.write(data)


def supports_shared_input(binary):
    result = subprocess.run([binary, "count", "--help"], capture_output=True, text=True)
    return "--shared-input" in result.stdout + result.stderr


def load_average():
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------- workers

def start_worker(binary, threads=None):
    arguments = [binary, "worker", "--listen", "127.0.0.1:0", "--quiet"]
    if threads is not None:
        arguments += ["--threads", str(threads)]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, env=COOKIE_ENV, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        stop_processes([process])
        raise BenchFailure(f"worker did not start: {line!r}")
    process.stdout.close()  # --quiet: nothing more comes on stdout
    return process, line[len("listening on "):]


def stop_processes(processes):
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_cpu_seconds(pid):
    """utime + stime of a live process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def workers_cpu_seconds(pool):
    return sum(process_cpu_seconds(process.pid) for process, _ in pool)


# ----------------------------------------------------------------------------- one run

def run_count(arguments):
    """Run one count; returns (wall s, CPU s of the child from wait4, stdout bytes)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(arguments, stdout=out, stderr=err, env=COOKIE_ENV)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        if process.returncode != 0:
            err.seek(0)
            raise BenchFailure(f"failed ({process.returncode}): {' '.join(arguments)}\n"
                               f"{err.read().decode(errors='replace')}")
        out.seek(0)
        return wall, usage.ru_utime + usage.ru_stime, out.read()


def measure_single(binary, corpus, extra):
    wall, cpu, output = run_count([binary, "count", "--lowercase", *extra, corpus])
    return {"wall_s": wall, "cpu_s": cpu}, output


def measure_distributed(binary, corpus, pool, flags, extra):
    addresses = ",".join(address for _, address in pool)
    arguments = [binary, "count", "--lowercase", "--no-master-work", "--workers", addresses,
                 *flags, *extra, corpus]
    before = workers_cpu_seconds(pool)
    wall, master_cpu, output = run_count(arguments)
    time.sleep(0.05)  # let the workers finish tearing the connection down
    after = workers_cpu_seconds(pool)
    return {"wall_s": wall, "master_cpu_s": master_cpu, "workers_cpu_s": after - before}, output


# ----------------------------------------------------------------------------- figures

def derived(run, gigabytes, single_cpu, fixed_master_cpu, small_gigabytes):
    """Per-run figures; single_cpu is the same round's single-node CPU, fixed_master_cpu the
    master's CPU for the same case on one copy of kjv (small_gigabytes)."""
    master, workers = run["master_cpu_s"], run["workers_cpu_s"]
    figures = dict(run)
    figures["master_cpu_s_per_gb"] = master / gigabytes
    figures["master_fixed_cpu_s"] = fixed_master_cpu
    figures["master_marginal_cpu_s_per_gb"] = max(0.0, master - fixed_master_cpu) / (gigabytes - small_gigabytes)
    figures["workers_cpu_s_per_gb"] = workers / gigabytes
    figures["total_vs_single"] = (master + workers) / single_cpu
    figures["mb_per_worker_cpu_s"] = gigabytes * 1e3 / workers if workers > 0 else float("inf")
    # (1 / master CPU-s per GB) / (per-worker-core GB/s) = workers CPU-s per GB / master CPU-s per GB
    figures["workers_one_master_core_feeds"] = workers / master if master > 0 else float("inf")
    marginal = figures["master_marginal_cpu_s_per_gb"] * gigabytes
    figures["workers_one_master_core_feeds_marginal"] = workers / marginal if marginal > 0 else float("inf")
    return figures


def medians(runs):
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# ----------------------------------------------------------------------------- report

def print_report(meta, single, two_worker, scaling, notes):
    print(f"corpus: {meta['corpus']} ({meta['corpus_bytes'] / 1e6:.1f} MB), binary {meta['binary']}")
    print(f"{meta['rounds']} interleaved rounds after 1 warm-up, medians; CPU = user+sys; "
          f"load average {meta['load_start']} at start, {meta['load_end']} at end")
    for note in notes:
        print(f"note: {note}")
    print()
    print(f"single node (count --lowercase): {single['cpu_s']:.3f} CPU-s "
          f"({single['cpu_s'] / meta['gigabytes']:.3f} CPU-s/GB), wall {single['wall_s']:.3f} s")
    if two_worker:
        print()
        threads = meta["two_worker_threads"] or "default"
        print(f"2 workers (--threads {threads}), --no-master-work --lowercase")
        print(f"{'case':16} {'master CPU-s/GB':>16} {'marginal':>9} {'1 copy s':>8} {'workers CPU-s/GB':>17} "
              f"{'(m+w)/single':>13} {'wall s':>8} {'same output':>12}")
        for name, entry in two_worker.items():
            m = entry["median"]
            print(f"{name:16} {m['master_cpu_s_per_gb']:16.3f} {m['master_marginal_cpu_s_per_gb']:9.3f} "
                  f"{m['master_fixed_cpu_s']:8.3f} {m['workers_cpu_s_per_gb']:17.3f} "
                  f"{m['total_vs_single']:12.2f}x {m['wall_s']:8.3f} {'yes' if entry['same_output'] else 'NO':>12}")
    for mode, sizes in scaling.items():
        print()
        size = f" --parcel-size {meta['scaling_parcel_size']}" if meta.get("scaling_parcel_size") else ""
        print(f"scaling model {mode} ({' '.join(SCALING_MODES[mode][1])}{size}), workers --threads 1, "
              f"--no-master-work --lowercase")
        print(f"{'workers':>7} {'master CPU-s/GB':>16} {'marginal':>9} {'workers CPU-s/GB':>17} "
              f"{'MB/worker-CPU-s':>16} {'1 master core feeds':>20} {'(marginal)':>11} {'(m+w)/single':>13} "
              f"{'wall s':>8} {'same':>5}")
        for count, entry in sizes.items():
            m = entry["median"]
            print(f"{count:7} {m['master_cpu_s_per_gb']:16.3f} {m['master_marginal_cpu_s_per_gb']:9.3f} "
                  f"{m['workers_cpu_s_per_gb']:17.3f} {m['mb_per_worker_cpu_s']:16.1f} "
                  f"{m['workers_one_master_core_feeds']:17.1f} wk {m['workers_one_master_core_feeds_marginal']:8.1f} wk "
                  f"{m['total_vs_single']:12.2f}x {m['wall_s']:8.3f} {'yes' if entry['same_output'] else 'NO':>5}")


# ----------------------------------------------------------------------------- main

def build_plan(arguments, shared_ok, notes):
    """The runs of one round: (key, flags, pool name, worker count); pool None is single-node."""
    plan = [("single", None, None, 0)]
    for name in (c for c in arguments.cases if c in TWO_WORKER_CASES):
        shared, flags = TWO_WORKER_CASES[name]
        if shared and not shared_ok:
            notes.append(f"{name} skipped: the binary has no --shared-input")
            continue
        plan.append((name, flags, "default", 2))
    for mode in (c for c in arguments.cases if c in SCALING_MODES):
        shared, flags = SCALING_MODES[mode]
        if shared and not shared_ok:
            notes.append(f"{mode} skipped: the binary has no --shared-input")
            continue
        if arguments.scaling_parcel_size:
            flags = flags + ["--parcel-size", arguments.scaling_parcel_size]
        for count in arguments.workers_list:
            plan.append(((mode, count), flags, "single-thread", count))
    return plan


def run_benchmark(arguments, corpus, tiny, pools, plan):
    extra = ["--parcel-size", arguments.parcel_size] if arguments.parcel_size else []
    gigabytes = os.path.getsize(corpus) / 1e9
    small_gigabytes = os.path.getsize(tiny) / 1e9
    raw = {key: [] for key, *_ in plan}
    same = {key: True for key, *_ in plan}
    reference = None
    for round_index in range(-1, arguments.rounds):  # round -1 is the warm-up
        shift = max(round_index, 0) % len(plan)
        order = plan[shift:] + plan[:shift]
        results, outputs, fixed = {}, {}, {}
        for key, flags, pool_name, count in order:
            if pool_name is None:
                results[key], outputs[key] = measure_single(arguments.binary, corpus, extra)
            else:
                pool = pools[pool_name][:count]
                results[key], outputs[key] = measure_distributed(arguments.binary, corpus, pool, flags, extra)
                fixed[key] = measure_distributed(arguments.binary, tiny, pool, flags, extra)[0]["master_cpu_s"]
        reference = reference if reference is not None else outputs["single"]
        for key, output in outputs.items():
            same[key] = same[key] and output == reference
        if round_index < 0:
            continue
        single_cpu = results["single"]["cpu_s"]
        for key, result in results.items():
            raw[key].append(
                result if key == "single" else derived(result, gigabytes, single_cpu, fixed[key], small_gigabytes))
        print(f"round {round_index + 1}/{arguments.rounds} done, load {load_average()}", file=sys.stderr)
    return raw, same


def main():
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally blocks run
    notes = []
    processes = []
    temporary = None
    try:
        if arguments.corpus and Path(arguments.corpus).is_file():
            corpus = arguments.corpus
        else:
            kjv = find_kjv(arguments.kjv)
            if arguments.corpus:
                corpus = arguments.corpus
            else:
                temporary = tempfile.TemporaryDirectory(prefix="scale_bench.")
                corpus = os.path.join(temporary.name, f"kjv_x{arguments.copies}.txt")
            write_corpus(corpus, kjv, arguments.copies)
        shared_ok = supports_shared_input(arguments.binary)
        plan = build_plan(arguments, shared_ok, notes)
        load_start = load_average()

        tiny = os.path.join(tempfile.gettempdir(), f"scale_bench_one_copy.{os.getpid()}.txt")
        with open(corpus, "rb") as source, open(tiny, "wb") as handle:
            handle.write(source.read(os.path.getsize(corpus) // arguments.copies))
        pools = {"default": [], "single-thread": []}
        if any(pool == "default" for _, _, pool, _ in plan):
            for _ in range(2):
                pools["default"].append(start_worker(arguments.binary, arguments.two_worker_threads or None))
                processes.append(pools["default"][-1][0])
        needed = max([count for _, _, pool, count in plan if pool == "single-thread"], default=0)
        for _ in range(needed):
            pools["single-thread"].append(start_worker(arguments.binary, threads=1))
            processes.append(pools["single-thread"][-1][0])

        raw, same = run_benchmark(arguments, corpus, tiny, pools, plan)
        os.unlink(tiny)
        meta = {
            "binary": arguments.binary, "corpus": corpus, "corpus_bytes": os.path.getsize(corpus),
            "gigabytes": os.path.getsize(corpus) / 1e9, "rounds": arguments.rounds,
            "shared_input_supported": shared_ok, "parcel_size": arguments.parcel_size,
            "two_worker_threads": arguments.two_worker_threads, "scaling_parcel_size": arguments.scaling_parcel_size,
            "load_start": load_start, "load_end": load_average(), "cpus": os.cpu_count(),
            "clock_ticks_per_s": CLOCK_TICKS,
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        single = medians(raw["single"])
        two_worker = {key: {"median": medians(raw[key]), "runs": raw[key], "same_output": same[key]}
                      for key, _, pool, _ in plan if pool == "default"}
        scaling = {}
        for key, _, pool, _ in plan:
            if pool == "single-thread":
                mode, count = key
                scaling.setdefault(mode, {})[count] = {
                    "median": medians(raw[key]), "runs": raw[key], "same_output": same[key]}
        print_report(meta, single, two_worker, scaling, notes)
        if arguments.json_path:
            document = {"meta": meta, "notes": notes,
                        "single_node": {"median": single, "runs": raw["single"]},
                        "two_workers": two_worker,
                        "scaling": {mode: {str(n): entry for n, entry in sizes.items()}
                                    for mode, sizes in scaling.items()}}
            with open(arguments.json_path, "w") as handle:
                json.dump(document, handle, indent=2)
        if not all(same.values()):
            differing = [str(key) for key, ok in same.items() if not ok]
            print(f"FAIL: output differs from the single-node output: {', '.join(differing)}",
                  file=sys.stderr)
            return 1
        return 0
    except BenchFailure as failure:
        print(f"scale_bench: {failure}", file=sys.stderr)
        return 1
    finally:
        stop_processes(processes)
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    sys.exit(main())
