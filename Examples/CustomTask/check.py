#!/usr/bin/env python3
"""Runs the CustomTask example as a 2-worker cluster on loopback and checks its result.

    Examples/CustomTask/check.py BINARY

Starts two `BINARY worker --listen 127.0.0.1:0` processes (a random cookie in their environment),
runs `BINARY run --workers A,B --no-master-work FILE` on a generated file (upper and lower case
letters, digits, punctuation, non-ASCII bytes), and compares its output with a naive count of the
same bytes. Then checks that the workers stopped gracefully on SIGTERM, that each ran parcels of
the task, and that a bad command line is one line and a non-zero exit. Exits 1 on any difference.
"""
import collections
import os
import random
import secrets
import subprocess
import sys
import tempfile


def naive(data):
    """`letter count` lines, a to z, for the ASCII letters of `data`, case folded."""
    counts = collections.Counter(chr(b) for b in data.lower() if ord("a") <= b <= ord("z"))
    return "".join(f"{letter} {counts[letter]}\n" for letter in sorted(counts))


def start_worker(binary, environment):
    process = subprocess.Popen([binary, "worker", "--listen", "127.0.0.1:0", "--threads", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    line = process.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        process.kill()
        sys.exit(f"check.py: the worker said {line!r}: {process.stderr.read().decode()}")
    return process, line[len("listening on "):]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    binary = sys.argv[1]
    environment = dict(os.environ, ELASTICFLOW_COOKIE=secrets.token_hex(16), CUSTOM_TASK_LOG_LEVEL="info")
    generator = random.Random(7)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;-" + "éßÆ".encode()
    lines = [bytes(generator.choice(alphabet) for _ in range(generator.randint(0, 120))) for _ in range(12000)]
    data = b"\n".join(lines) + b"\n"
    failures, checks = [], 0
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "letters.txt")
        with open(path, "wb") as file:
            file.write(data)
        workers = [start_worker(binary, environment) for _ in range(2)]
        try:
            addresses = ",".join(address for _, address in workers)
            result = subprocess.run([binary, "run", "--workers", addresses, "--no-master-work", path],
                                    capture_output=True, env=environment, timeout=120)
            expected = naive(data)
            checks += 1
            if result.returncode != 0 or result.stdout.decode() != expected:
                failures.append(f"run: exit {result.returncode}, output differs from the naive count:\n"
                                f"{result.stdout.decode()[:400]}\nexpected:\n{expected[:400]}\n{result.stderr.decode()}")
            # The master logs each closed receipt (info) with the node that ran it: both workers did.
            for _, address in workers:
                checks += 1
                if f"on {address} in " not in result.stderr.decode():
                    failures.append(f"worker {address} ran no parcel: {result.stderr.decode()[-2000:]}")
            bad = subprocess.run([binary, "run", "--workers", addresses], capture_output=True, env=environment,
                                 timeout=30)
            checks += 1
            if bad.returncode == 0 or len(bad.stderr.decode().strip().splitlines()) != 1:
                failures.append(f"a bad command line: exit {bad.returncode}, {bad.stderr.decode()!r}")
        finally:
            logs = []
            for process, _ in workers:
                checks += 1
                process.terminate()
                try:
                    _, errors = process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    _, errors = process.communicate()
                    failures.append("a worker did not stop within 30 s of SIGTERM")
                logs.append(errors.decode())
                if process.returncode != 0:
                    failures.append(f"a worker exited {process.returncode} after SIGTERM: {errors.decode()}")
        for log in logs:
            checks += 1
            if "connected" not in log or "shutting down" not in log:
                failures.append(f"a worker's log lacks its connection or its graceful stop: {log}")
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"custom-task example: {checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
