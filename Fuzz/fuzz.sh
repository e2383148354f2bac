#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (Fuzz/README.md).
#
#   Fuzz/fuzz.sh build              build every target into build/fuzz/bin
#   Fuzz/fuzz.sh smoke [RUNS]       each target over its seed corpus plus RUNS new inputs (make test)
#   Fuzz/fuzz.sh campaign [T...]    each target (or the ones named) for FUZZ_RUNS executions
#                                   (default 10^7), one after another at nice 19 (make fuzz);
#                                   FUZZ_MAX_TIME=S stops each after S seconds at the latest
#
# Every run fails on a crash, a leak, undefined behaviour, a timeout or a broken promise; the
# input that caused it is kept in build/fuzz/crashes/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang}
SWIFTC=${SWIFTC:-swiftc}
if ! command -v "$CLANG" >/dev/null && [ -x /opt/swift/usr/bin/clang ]; then CLANG=/opt/swift/usr/bin/clang; fi
if ! command -v "$SWIFTC" >/dev/null && [ -x /opt/swift/usr/bin/swiftc ]; then SWIFTC=/opt/swift/usr/bin/swiftc; fi
OUT=build/fuzz
# Campaigns want speed (-O); a smoke run wants a short build (-Onone, its own directory).
SWIFTOPT=-O
C_TARGETS="frame codec count auth decode seekable"
SWIFT_TARGETS="hello result_envelope flow_value checkpoint receipts_log step_record"
# Inputs longer than this are not tried: the parsers' interesting states are all reachable well
# below it, and short inputs keep executions fast enough for 10^7 of them.
MAX_LEN=${FUZZ_MAX_LEN:-4096}

# What the build needs: clang's libFuzzer runtime, and the C libraries the core links against.
need() {
    if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
        "$CLANG" -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then
        echo "installing clang (libFuzzer)"
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang >/dev/null
        CLANG=clang
    fi
    make -s deps
}

CSAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# EF_TESTING: the Swift library compiled below calls elasticflow_testing.h (its chaos mode).
CFLAGS="-std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -DEF_BUILDING_LIBRARY -DEF_TESTING -ICCore/include -ICCore/src"
# The libraries the core links against: the Makefile passes its CLIBS.
LIBS=${FUZZ_LIBS:--lzstd -llz4 -lz -lbz2 -lcrypto -lpthread}
LDFLAGS="-fuse-ld=lld $LIBS"

build_c() {
    mkdir -p "$OUT/bin" "$OUT/obj"
    # The core once, instrumented, for the C targets and the Swift ones alike.
    local objs=() changed=0
    for src in CCore/src/*.c; do
        local obj=$OUT/obj/$(basename "${src%.c}").o
        if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find CCore/include -name '*.h' -newer "$obj")" ] ||
            [ -n "$(find CCore/src -name '*.h' -newer "$obj")" ]; then
            $CLANG $CFLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
                -c "$src" -o "$obj"
            changed=1
        fi
        objs+=("$obj")
    done
    if [ $changed = 1 ] || [ ! -f "$OUT/libcore.a" ]; then
        rm -f "$OUT/libcore.a"
        ar rcs "$OUT/libcore.a" "${objs[@]}"
    fi
    for t in $C_TARGETS; do
        local exe=$OUT/bin/fuzz_$t
        if [ ! -f "$exe" ] || [ "$OUT/libcore.a" -nt "$exe" ] || [ "Fuzz/c/fuzz_$t.c" -nt "$exe" ] ||
            [ Fuzz/c/fuzz_check.h -nt "$exe" ]; then
            $CLANG $CFLAGS $CSAN "Fuzz/c/fuzz_$t.c" "$OUT/libcore.a" $LDFLAGS -o "$exe"
        fi
    done
}

# Swift: ElasticFlow compiled once as a static library with -enable-testing, so each target's
# `@testable import` reaches the internal decoders without widening the public API; the targets
# link it with the instrumented C core. Swift has no -sanitize=undefined: its own checks
# (overflow, bounds, unwrap) trap, and the C core under it keeps UBSan.
build_swift() {
    local SWIFTFLAGS="$SWIFTOPT -parse-as-library -sanitize=fuzzer,address -Xcc -D_GNU_SOURCE"
    local mod=$OUT/swift
    mkdir -p "$mod/include"
    printf 'module CElasticFlow {\n    header "%s"\n    header "%s"\n    export *\n}\n' \
        "$PWD/CCore/include/elasticflow.h" "$PWD/CCore/include/elasticflow_testing.h" >"$mod/include/module.modulemap"
    # ElasticFlow imports swift-log's Logging: built the same way from the package's checkout
    # (resolved first when this runs before any `swift build`).
    local logsrc=.build/checkouts/swift-log/Sources/Logging loglib=$mod/libLogging.a
    if [ ! -d "$logsrc" ]; then "$(dirname "$(command -v "$SWIFTC")")/swift" package resolve >/dev/null; fi
    if [ ! -f "$loglib" ] || [ -n "$(find "$logsrc" -newer "$loglib" -type f)" ]; then
        $SWIFTC $SWIFTFLAGS -module-name Logging -package-name swift_log -emit-library -static -emit-module \
            -emit-module-path "$mod/Logging.swiftmodule" $(find "$logsrc" -name '*.swift' | sort) -o "$loglib"
    fi
    local lib=$mod/libElasticFlow.a
    if [ ! -f "$lib" ] || [ "$loglib" -nt "$lib" ] ||
        [ -n "$(find Sources/ElasticFlow CCore/include -newer "$lib" -type f)" ]; then
        echo "building ElasticFlow for fuzzing ($SWIFTOPT)"
        $SWIFTC $SWIFTFLAGS -module-name ElasticFlow -enable-testing -emit-library -static -emit-module \
            -emit-module-path "$mod/ElasticFlow.swiftmodule" -I "$mod" -I "$mod/include" \
            $(find Sources/ElasticFlow -name '*.swift' | sort) -o "$lib"
    fi
    for t in $SWIFT_TARGETS; do
        local src=Fuzz/swift/$(swift_file "$t") exe=$OUT/bin/fuzz_$t
        if [ ! -f "$exe" ] || [ "$lib" -nt "$exe" ] || [ "$src" -nt "$exe" ] || [ Fuzz/swift/FuzzCheck.swift -nt "$exe" ]; then
            $SWIFTC $SWIFTFLAGS -I "$mod" -I "$mod/include" Fuzz/swift/FuzzCheck.swift "$src" \
                -use-ld=lld "$lib" "$loglib" "$OUT/libcore.a" $LIBS -o "$exe"
        fi
    done
}

# hello -> FuzzHello.swift, result_envelope -> FuzzResultEnvelope.swift
swift_file() {
    local name=""
    for part in $(echo "$1" | tr '_' ' '); do name+=$(echo "${part:0:1}" | tr a-z A-Z)${part:1}; done
    echo "Fuzz$name.swift"
}

build() {
    need
    build_c
    build_swift
}

# One target: TARGET RUNS [extra libFuzzer flags]. New inputs go to a scratch corpus, so the
# committed seeds stay as generated. Prints one summary line; fails on any finding.
run() {
    local t=$1 runs=$2
    shift 2
    local seeds=Fuzz/corpus/$t work=${WORK:-$OUT/corpus}/$t crashes=$OUT/crashes/$t log=$OUT/logs/${MODE:-run}-$t.log
    mkdir -p "$seeds" "$work" "$crashes" "$OUT/logs"
    local start=$(date +%s.%N) rc=0
    local cap=()
    [ -n "${FUZZ_MAX_TIME:-}" ] && cap=(-max_total_time="$FUZZ_MAX_TIME")
    # The Swift runtime's backtracer would run under ASan on a trap and report itself: off.
    SWIFT_BACKTRACE=enable=no ${NICE:-} "$OUT/bin/fuzz_$t" -runs="$runs" "${cap[@]}" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$@" "$work" "$seeds" >"$log" 2>&1 || rc=$?
    local end=$(date +%s.%N)
    local execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    local rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    local secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    if [ $rc -ne 0 ]; then
        echo "FAIL fuzz_$t after ${execs:-?} executions (exit $rc); log $log, inputs in $crashes/:"
        grep -E 'ERROR|broken promise|runtime error|Fatal error|SUMMARY' "$log" | head -5 | sed 's/^/    /'
        return 1
    fi
    printf '%-22s %12s executions %9s exec/s %7ss\n' "fuzz_$t" "${execs:-?}" "${rate:-?}" "$secs"
}

targets() { echo $C_TARGETS $SWIFT_TARGETS; }

# All in a function, called on the last line: bash has then read the whole file before running
# any of it, so editing the script during a long campaign cannot change what the campaign runs.
main() {
    cmd=${1:-smoke}
    shift || true
    case $cmd in
    build) build ;;
    smoke)
        OUT=build/fuzz-smoke
        SWIFTOPT=-Onone
        build
        runs=${1:-2000}
        # A corpus of its own, thrown away: a smoke run must not disturb a campaign's.
        WORK=$(mktemp -d)
        trap 'rm -rf "$WORK"' EXIT
        MODE=smoke
        failed=0
        for t in $(targets); do run "$t" "$runs" || failed=1; done
        exit $failed
        ;;
    campaign)
        build
        failed=0
        # Low priority, one target at a time: the machine is shared.
        NICE="nice -n 19"
        MODE=campaign
        for t in ${@:-$(targets)}; do run "$t" "${FUZZ_RUNS:-10000000}" || failed=1; done
        exit $failed
        ;;
    *)
        echo "usage: $0 build | smoke [RUNS] | campaign [TARGET...]" >&2
        exit 2
        ;;
    esac
}

main "$@"; exit $?
