#!/usr/bin/env bash
# Benchmarks/run-micro.sh — the microbenchmarks (ordo-one/benchmark): codecs, the word counter,
# count-table (de)serialization, frames and CRC32C. Builds the Benchmarks package in release mode
# (the first build compiles the benchmark tooling: a few minutes) and prints one table per benchmark.
#
#   Benchmarks/run-micro.sh [PLUGIN OPTIONS]    e.g. --target Codecs, --filter 'Count', --format markdown
#
# benchmark 1.38 needs no jemalloc: its allocation counts come from the malloc-interposer package,
# which SwiftPM builds like any other dependency, so there is nothing to install here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
swift=${SWIFT:-swift}

# SwiftPM notices a source file added to the parent package (a path dependency here) only when it
# re-plans the build: without this, a new file under ../Sources is left out and the build fails.
rm -f "$here/.build/release.yaml" "$here"/.build/*/release/description.json

# For MB/s, a larger-is-better metric, the percentile columns run from best (p0) to worst (p100):
# p50 is the median either way.
exec "$swift" package --package-path "$here" benchmark --no-progress "$@"
