#!/usr/bin/env bash
# Benchmarks/compare.sh — `elasticflow count` next to wc, a sort pipeline and Python, in one run
# on one corpus, and proof that its output is right. Builds nothing: it is given the binary.
#
#   Benchmarks/compare.sh [ELASTICFLOW_BINARY]    (default: .build/release/elasticflow)
#
# Environment: BENCH_ROUNDS (default 5) rounds of timing; BENCH_CORPUS=FILE to time another file
# (the kjv-specific check is then skipped). Exits non-zero when a correctness check fails.
# The figures and what they mean: docs/benchmarks.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

die() {
    echo "compare.sh: $*" >&2
    exit 2
}

binary=${1:-$root/.build/release/elasticflow}
[[ -x $binary ]] || die "no elasticflow binary at '$binary' (build it with: swift build -c release)"
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
rounds=${BENCH_ROUNDS:-5}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$rounds'"
command -v python3 >/dev/null || die "python3 is needed (the timing harness and the reference count)"

# Every tool sees bytes, not characters: the same whitespace (the six ASCII bytes) for tr, wc and
# sort as for elasticflow, and no multibyte slow path in wc.
export LC_ALL=C

# Peak memory comes from GNU time (Debian package `time`): a Python parent would leak its own
# ~14 MB high-water mark into every child's figure. Install it when we can; else timing.py falls
# back to wait4 and marks the figures as upper bounds.
if [[ ! -x /usr/bin/time && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing the Debian package 'time' (for peak memory)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq time || { apt-get update -qq && apt-get install -y -qq time; }; } \
        >/dev/null 2>&1 || echo "compare.sh: could not install 'time'; continuing without it" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/elasticflow-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- corpus ------------------------------------------------------------------------------------
kjv=$root/../shared/corpora/kjv.txt
is_kjv=0
if [[ -n ${BENCH_CORPUS:-} ]]; then
    [[ -f $BENCH_CORPUS ]] || die "BENCH_CORPUS '$BENCH_CORPUS' is not a file"
    corpus=$BENCH_CORPUS
    corpus_name=$BENCH_CORPUS
elif [[ -f $kjv ]]; then
    corpus=$work/kjv_x10.txt
    for _ in 1 2 3 4 5 6 7 8 9 10; do cat "$kjv"; done >"$corpus"
    corpus_name="ten copies of shared/corpora/kjv.txt"
    is_kjv=1
else
    corpus=$work/generated.txt
    "$binary" generate --size 43MiB --seed 1 -o "$corpus"
    corpus_name="elasticflow generate --size 43MiB --seed 1 (shared/corpora/kjv.txt not found)"
fi
bytes=$(wc -c <"$corpus")

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
version=$("$binary" --version 2>/dev/null || echo "version unknown")
if commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
    git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit + uncommitted changes"
else
    commit="no git checkout"
fi
echo "ElasticFlow comparison — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, $ram RAM, $(uname -sr), load $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "binary:  $binary, elasticflow $version"
echo "source:  checkout $root at $commit ('make bench' builds the binary from it)"
echo "corpus:  $corpus_name, $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB)"
echo "rounds:  $rounds, interleaved (round i starts at tool i), warm cache, LC_ALL=C, median"
echo

# --- correctness -------------------------------------------------------------------------------
# The first runs also warm the page cache and the binary for the timed rounds.
failed=0
verdict() { # verdict PASS|FAIL description
    echo "  $1  $2"
    [[ $1 == PASS ]] || failed=1
}
same_bytes() { # same_bytes description ours reference
    if cmp -s "$2" "$3"; then
        verdict PASS "$1"
    else
        verdict FAIL "$1"
        cmp "$2" "$3" | sed 's/^/        /' || true
        diff "$2" "$3" | head -n 8 | sed 's/^/        /' || true
    fi
}

echo "correctness:"
"$binary" count --lowercase "$corpus" >"$work/lower.txt"
"$binary" count --lowercase --threads 1 "$corpus" >"$work/lower-1thread.txt"
"$binary" count "$corpus" >"$work/kept.txt"
python3 "$here/scripts/reference_count.py" "$corpus" >"$work/reference-lower.txt"
python3 "$here/scripts/reference_count.py" --no-lowercase "$corpus" >"$work/reference-kept.txt"

same_bytes "count --lowercase equals the Python reference, byte for byte" \
    "$work/lower.txt" "$work/reference-lower.txt"
same_bytes "count (case kept) equals the Python reference, byte for byte" \
    "$work/kept.txt" "$work/reference-kept.txt"
same_bytes "count --lowercase --threads 1 equals the multi-threaded output" \
    "$work/lower-1thread.txt" "$work/lower.txt"

total=$(awk '{ total += $NF } END { printf "%d", total }' "$work/lower.txt")
words=$(wc -w <"$corpus")
if [[ $total == "$words" ]]; then
    verdict PASS "its counts add up to wc -w ($words words)"
else
    verdict FAIL "its counts add up to $total, wc -w says $words"
fi

if ((is_kjv)); then
    top=$(head -n 3 "$work/lower.txt" | paste -sd ',' -)
    if [[ $top == "the 640010,and 513130,of 346320" ]]; then
        verdict PASS "kjv x10 begins: the 640010, and 513130, of 346320"
    else
        verdict FAIL "kjv x10 should begin 'the 640010, and 513130, of 346320', not '$top'"
    fi
fi
distinct=$(wc -l <"$work/lower.txt")
word_bytes=$(awk '{ n += length($1) } END { printf "%d", n }' "$work/lower.txt")
echo "  ($distinct distinct lowercased words, $word_bytes bytes of words)"
echo

# --- timing ------------------------------------------------------------------------------------
q=$(printf '%q' "$corpus")
ef=$(printf '%q' "$binary")
ours="elasticflow count --lowercase"
counter_py='import collections, sys
c = collections.Counter()
for line in open(sys.argv[1], "rb"):
    c.update(line.lower().split())'

echo "timing (all output to /dev/null; progress: seconds per tool in table order):"
python3 "$here/scripts/timing.py" --corpus "$corpus" --rounds "$rounds" --baseline "$ours" \
    --results "$work/results.tsv" \
    --tool "$ours" "$ef count --lowercase $q" \
    --tool "elasticflow count" "$ef count $q" \
    --tool "elasticflow count --lowercase --threads 1" "$ef count --lowercase --threads 1 $q" \
    --tool "wc -w" "wc -w $q" \
    --tool "tr | tr | sort | uniq -c | sort -rn" \
    "tr -s '[:space:]' '\\n' <$q | tr A-Z a-z | sort | uniq -c | sort -rn" \
    --tool "python3 collections.Counter" "python3 -c $(printf '%q' "$counter_py") $q"
echo

# --- targets -----------------------------------------------------------------------------------
field() { # field TOOL COLUMN  (2 median s, 3 MB/s, 4 peak RSS MB)
    awk -F '\t' -v tool="$1" -v column="$2" '$1 == tool { print $column }' "$work/results.tsv"
}
met() { # met AWK-CONDITION  -> MET / NOT MET
    if awk "BEGIN { exit !($1) }"; then echo "MET"; else echo "NOT MET"; fi
}
ours_s=$(field "$ours" 2)
ours_mbs=$(field "$ours" 3)
ours_rss=$(field "$ours" 4)
wc_s=$(field "wc -w" 2)
# The distinct-word table, generously: 64 bytes of slot and bookkeeping per word plus its bytes.
allowance=$(awk -v d="$distinct" -v w="$word_bytes" 'BEGIN { printf "%.1f", 64 + (d * 64 + w) / 1e6 }')
echo "targets ($ours, median of $rounds):"
printf '  %-8s throughput >= 330 MB/s: %.1f MB/s\n' "$(met "$ours_mbs >= 330")" "$ours_mbs"
printf '  %-8s faster than wc -w: %.3f s vs %.3f s\n' "$(met "$ours_s < $wc_s")" "$ours_s" "$wc_s"
printf '  %-8s peak RSS < 64 MB + table (%d words: %s MB allowed): %.1f MB\n' \
    "$(met "$ours_rss < $allowance")" "$distinct" "$allowance" "$ours_rss"
echo

if ((failed)); then
    echo "compare.sh: correctness FAILED (see above)" >&2
    exit 1
fi
echo "correctness: all PASS"
