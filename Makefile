# Convenience targets around cargo for C users. `make help` lists them.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -std=c99 -Wall -Wextra -Werror -pedantic -O2
BUILD := build
LIBDIR := target/release
EXAMPLES := $(patsubst examples-c/%.c,$(BUILD)/%,$(wildcard examples-c/*.c))

.PHONY: help lib examples demo test header bench clean fuzz

help:
	@echo "make demo      build the library and examples, stream a real reply (starts a local model unless YLOKH_BASE_URL is set)"
	@echo "make test      every test: Rust, C, end-to-end against a local model"
	@echo "make examples  build examples-c/ into $(BUILD)/"
	@echo "make header    regenerate include/ylokh.h"
	@echo "make install   install into PREFIX (default /usr/local); make uninstall removes it"

lib:
	$(CARGO) build --release

# Examples link the shared library with an rpath, so they run from the build tree.
$(BUILD)/%: examples-c/%.c include/ylokh.h lib
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Iinclude $< -o $@ -L$(LIBDIR) -lylokh -lpthread -Wl,-rpath,$(abspath $(LIBDIR))

examples: lib $(EXAMPLES)

# The main job: stream a real reply token by token. Starts the local model server
# (scripts/with-model-server.sh) unless YLOKH_BASE_URL points at a server already.
PROMPT ?= The three primary colors are
demo: examples
	scripts/with-model-server.sh $(BUILD)/chat --max-tokens 48 "$(PROMPT)"

# Every test. The end-to-end tests run one at a time: llama.cpp's batched decoding is
# not bit-identical to decoding alone, and they compare replies byte for byte.
test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
	$(MAKE) fuzz
	scripts/with-model-server.sh $(CARGO) test --test e2e -- --ignored --test-threads=1

# Fuzz each target of fuzz/ for FUZZ_SECONDS (on stable Rust, no sanitizer: the code fuzzed
# has no unsafe; see fuzz/README.md). A crash fails the build; the input is kept in
# fuzz/artifacts/. Needs cargo-fuzz: cargo install cargo-fuzz --locked --version 0.13.2
FUZZ_SECONDS ?= 30
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked --version 0.13.2" >&2; exit 1; }
	$(CARGO) fuzz build -s none
	for t in stream chunk whole_reply setters; do \
	  dict=fuzz/sse.dict; if [ $$t = setters ]; then dict=fuzz/setters.dict; fi; \
	  $(CARGO) fuzz run -s none $$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -dict=$$dict || exit 1; \
	done

header:
	YLOKH_BLESS=1 $(CARGO) test --test header

# The C API from C only: tests/c/*.c and examples-c/*.c, compiled with $(CC) against the
# library cargo builds for the test, run against a scripted local server (also part of
# `make test`, through `cargo test`).
.PHONY: c-test
c-test:
	$(CARGO) test --test c_api

# The streaming benchmark (BENCHMARKS.md): builds what it needs, runs every client on every
# workload, prints the tables and rewrites BENCHMARKS.md and docs/bench.svg. About 8 minutes;
# BENCH_QUICK=1 for a smoke run. Not part of `make test`.
bench:
	python3 bench/run.py

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# ---- Installing like a C library -----------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=]: lib/libylokh.so.X.Y.Z (SONAME libylokh.so.X)
# with the symlinks libylokh.so.X and libylokh.so, lib/libylokh.a, include/ylokh.h (the
# committed header) and include/ylokh.hpp, lib/pkgconfig/ylokh.pc.
#
# The installed library is built with YLOKH_SONAME=1 (see build.rs) into a target directory
# of its own, so that target/release stays what `make examples` links against. `make
# install-lib` builds it; `make install-lib && sudo make install` runs cargo only as you: the
# install step finds the build up to date. `make uninstall` takes the same variables.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_LIBDIR ?= $(PREFIX)/lib
INSTALL_INCLUDEDIR ?= $(PREFIX)/include
INSTALL_PKGCONFIGDIR ?= $(INSTALL_LIBDIR)/pkgconfig
INSTALL_PROFILE ?= release
INSTALL_TARGET_DIR ?= target/install
INSTALL ?= install
RUSTC ?= rustc

YLOKH_VERSION := $(shell awk -F'"' '/^\[/ { p = ($$0 == "[package]") } p && /^version *=/ { print $$2; exit }' Cargo.toml)
YLOKH_MAJOR := $(firstword $(subst ., ,$(YLOKH_VERSION)))
INSTALL_BUILT := $(INSTALL_TARGET_DIR)/$(if $(filter dev test,$(INSTALL_PROFILE)),debug,$(INSTALL_PROFILE))
LIB_SOURCES := Cargo.toml Cargo.lock build.rs cbindgen.toml $(shell find src -name '*.rs')
# ylokh.pc paths relative to ${prefix} when they are under it, so the file can be edited
# for a relocated tree.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

.PHONY: install install-lib uninstall

install-lib: $(INSTALL_BUILT)/libylokh.so $(INSTALL_BUILT)/native-static-libs

$(INSTALL_BUILT)/libylokh.so: $(LIB_SOURCES)
	YLOKH_SONAME=1 $(CARGO) build --lib --profile $(INSTALL_PROFILE) --target-dir $(INSTALL_TARGET_DIR)
	@touch $@ $(INSTALL_BUILT)/libylokh.a

# The system libraries a program linking libylokh.a needs (pkg-config's Libs.private), as
# rustc reports them for a staticlib on this machine.
# (One shell, names unique to it: two installs may run at once.)
$(INSTALL_BUILT)/native-static-libs: $(INSTALL_BUILT)/libylokh.so
	@probe=$(INSTALL_BUILT)/probe.$$$$; mkdir -p $$probe && \
	echo 'pub fn probe() {}' | $(RUSTC) --crate-type staticlib --crate-name ylokh_probe \
	    --print native-static-libs -o $$probe/libprobe.a - 2>&1 \
	    | sed -n 's/^note: native-static-libs: //p' > $$probe/libs; \
	if test -s $$probe/libs; then mv $$probe/libs $@; rm -rf $$probe; \
	else echo "rustc did not report its native-static-libs" >&2; rm -rf $$probe; exit 1; fi
	@echo "Libs.private: $$(cat $@)"

install: install-lib
	@test -n "$(YLOKH_VERSION)" || { echo "could not read the version from Cargo.toml" >&2; exit 1; }
	$(INSTALL) -d $(DESTDIR)$(INSTALL_LIBDIR) $(DESTDIR)$(INSTALL_INCLUDEDIR) $(DESTDIR)$(INSTALL_PKGCONFIGDIR)
	$(INSTALL) -m 755 $(INSTALL_BUILT)/libylokh.so $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_VERSION)
	ln -sfn libylokh.so.$(YLOKH_VERSION) $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_MAJOR)
	ln -sfn libylokh.so.$(YLOKH_MAJOR) $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so
	$(INSTALL) -m 644 $(INSTALL_BUILT)/libylokh.a $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.a
	$(INSTALL) -m 644 include/ylokh.h include/ylokh.hpp $(DESTDIR)$(INSTALL_INCLUDEDIR)/
	@echo "writing $(DESTDIR)$(INSTALL_PKGCONFIGDIR)/ylokh.pc"
	@{ \
	  echo 'prefix=$(PREFIX)'; \
	  echo 'libdir=$(call pc_path,$(INSTALL_LIBDIR))'; \
	  echo 'includedir=$(call pc_path,$(INSTALL_INCLUDEDIR))'; \
	  echo; \
	  echo 'Name: ylokh'; \
	  echo 'Description: Streaming chat-completion client for OpenAI-compatible servers'; \
	  echo 'Version: $(YLOKH_VERSION)'; \
	  echo 'Libs: -L$${libdir} -lylokh'; \
	  echo "Libs.private: $$(cat $(INSTALL_BUILT)/native-static-libs)"; \
	  echo 'Cflags: -I$${includedir}'; \
	} > $(DESTDIR)$(INSTALL_PKGCONFIGDIR)/ylokh.pc
	@chmod 644 $(DESTDIR)$(INSTALL_PKGCONFIGDIR)/ylokh.pc

uninstall:
	rm -f $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_MAJOR) \
	    $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_VERSION) $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.a \
	    $(DESTDIR)$(INSTALL_INCLUDEDIR)/ylokh.h $(DESTDIR)$(INSTALL_INCLUDEDIR)/ylokh.hpp \
	    $(DESTDIR)$(INSTALL_PKGCONFIGDIR)/ylokh.pc
