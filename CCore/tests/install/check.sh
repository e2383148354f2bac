#!/usr/bin/env bash
# The installed C library, used as a user would (`make install-test`, part of `make test`):
#   1. `make install PREFIX=<temporary>`; build consumer.c through pkg-config against the shared
#      library and, with --static and -static, against libelasticflow.a and the libraries of
#      Libs.private; run both. The shared one runs through the SONAME alone (LD_LIBRARY_PATH at
#      the prefix's lib, no rpath) and must record NEEDED libelasticflow.so.MAJOR; the static one
#      must need no shared library at all.
#   2. The installed .so: SONAME libelasticflow.so.MAJOR, the file named with the full version,
#      and exactly the functions the installed header declares exported (so elasticflow_testing.h's
#      calls are not in it).
#   3. `make install DESTDIR=<stage>` puts every file under the stage and `make uninstall` with
#      the same DESTDIR removes every one.
# The last line is `install-test: N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/../../.."
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "install-test: FAILED: $*" >&2; }
expect() { if [ "$1" = "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }

version() { sed -n "s/^#define EF_VERSION_$1 \([0-9][0-9]*\)$/\1/p" CCore/include/elasticflow.h; }
major=$(version MAJOR)
full=$major.$(version MINOR).$(version PATCH)

prefix=$tmp/prefix
if ! make -s install PREFIX="$prefix" LDCONFIG=true >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    bad "make install PREFIX=$prefix"
    echo "install-test: $passed passed, $failed failed"
    exit 1
fi
ok
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
expect "$(pkg-config --modversion elasticflow 2>&1)" "$full" "pkg-config --modversion"

# Strict flags and no feature macros: the installed header must stand on its own.
strict=(-std=c11 -Wall -Wextra -Werror -Wpedantic)
read -ra cflags <<<"$(pkg-config --cflags elasticflow)"
read -ra libs <<<"$(pkg-config --libs elasticflow)"
read -ra static_libs <<<"$(pkg-config --static --libs elasticflow)"
if $CC "${strict[@]}" "${cflags[@]}" CCore/tests/install/consumer.c "${libs[@]}" -o "$tmp/shared" 2>"$tmp/cc.log"; then
    ok
    expect "$(readelf -d "$tmp/shared" | sed -n 's/.*(NEEDED).*\[\(libelasticflow[^]]*\)\]/\1/p')" \
        "libelasticflow.so.$major" "the shared program's NEEDED entry"
    if LD_LIBRARY_PATH=$prefix/lib "$tmp/shared" >"$tmp/shared.out"; then ok; else bad "the shared program failed"; fi
    echo "shared: $(tail -n 1 "$tmp/shared.out")"
    # Loaded through the SONAME from the prefix (pkg-config adds no rpath: the loader's path decides).
    expect "$(LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/shared" | awk '/libelasticflow/ {print $1, $3}')" \
        "libelasticflow.so.$major $prefix/lib/libelasticflow.so.$major" "the library the loader finds"
else
    cat "$tmp/cc.log" >&2
    bad "building against the shared library: cc ${cflags[*]} consumer.c ${libs[*]}"
fi
if $CC "${strict[@]}" "${cflags[@]}" CCore/tests/install/consumer.c -static "${static_libs[@]}" -o "$tmp/static" \
    2>"$tmp/cc.log"; then
    ok
    if readelf -d "$tmp/static" 2>/dev/null | grep -q NEEDED; then bad "the static program needs shared libraries"; else ok; fi
    if "$tmp/static" >"$tmp/static.out"; then ok; else bad "the static program failed"; fi
    echo "static: $(tail -n 1 "$tmp/static.out")"
else
    cat "$tmp/cc.log" >&2
    bad "building statically: cc ${cflags[*]} consumer.c -static ${static_libs[*]}"
fi
# C++ compilers include it too (extern "C", no C-only syntax in declarations).
if command -v c++ >/dev/null; then
    if echo '#include <elasticflow.h>
int main() { return ef_version_number() == EF_VERSION_NUMBER ? 0 : 1; }' |
        c++ -x c++ -std=c++17 -Wall -Wextra -Werror "${cflags[@]}" - "${libs[@]}" -o "$tmp/cxx" 2>"$tmp/cc.log" &&
        LD_LIBRARY_PATH=$prefix/lib "$tmp/cxx"; then ok; else
        cat "$tmp/cc.log" >&2
        bad "a C++ program including elasticflow.h"
    fi
fi

# The installed shared library itself.
lib=$prefix/lib
expect "$(readlink "$lib/libelasticflow.so")" "libelasticflow.so.$major" "libelasticflow.so symlink"
expect "$(readlink "$lib/libelasticflow.so.$major")" "libelasticflow.so.$full" "libelasticflow.so.$major symlink"
expect "$(readelf -d "$lib/libelasticflow.so.$full" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')" \
    "libelasticflow.so.$major" "SONAME"
nm -D --defined-only "$lib/libelasticflow.so.$full" | awk '{print $NF}' | sort >"$tmp/exported"
# Every function the header declares: each declaration starts a line with EF_API, and its name
# is the ef_ word just before the first parenthesis.
grep '^EF_API ' "$prefix/include/elasticflow.h" | sed 's/^[^(]*[ *]\(ef_[a-z0-9_]*\)(.*/\1/' | sort >"$tmp/declared"
if diff "$tmp/declared" "$tmp/exported" >"$tmp/abi.diff"; then ok; else
    bad "exported functions differ from the header's (< declared only, > exported only):"
    cat "$tmp/abi.diff" >&2
fi
expect "$(grep -c . "$tmp/declared")" "$(grep -c . "$tmp/exported")" "declared and exported counts"
if [ -e "$prefix/include/elasticflow_testing.h" ]; then bad "elasticflow_testing.h was installed"; else ok; fi

# A staged install for a package (DESTDIR), then its uninstall.
stage=$tmp/stage
make -s install DESTDIR="$stage" PREFIX=/usr LDCONFIG=true >/dev/null 2>&1 || bad "make install DESTDIR=$stage"
expect "$(cd "$stage" && find . \( -type f -o -type l \) | sort | tr '\n' ' ')" \
    "./usr/include/elasticflow.h ./usr/lib/libelasticflow.a ./usr/lib/libelasticflow.so ./usr/lib/libelasticflow.so.$major ./usr/lib/libelasticflow.so.$full ./usr/lib/pkgconfig/elasticflow.pc " \
    "files a staged install writes"
expect "$(sed -n 's/^prefix=//p' "$stage/usr/lib/pkgconfig/elasticflow.pc")" "/usr" "the staged .pc's prefix (not the stage)"
make -s uninstall DESTDIR="$stage" PREFIX=/usr LDCONFIG=true >/dev/null 2>&1 || bad "make uninstall DESTDIR=$stage"
expect "$(cd "$stage" && find . \( -type f -o -type l \) | wc -l)" "0" "files left after uninstall"
make -s uninstall PREFIX="$prefix" LDCONFIG=true >/dev/null 2>&1 || bad "make uninstall PREFIX=$prefix"
expect "$(cd "$prefix" && find . \( -type f -o -type l \) | wc -l)" "0" "files left in the prefix after uninstall"

echo "install-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
