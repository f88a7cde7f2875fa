# Convenience targets around cargo for C users. `make help` lists them.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -std=c99 -Wall -Wextra -Werror -pedantic -O2
BUILD := build
LIBDIR := target/release
EXAMPLES := $(patsubst examples-c/%.c,$(BUILD)/%,$(wildcard examples-c/*.c))

.PHONY: help lib examples demo test deps header docs abi-check abi-baseline bench clean fuzz

help:
	@echo "make demo      build the library and examples, stream a real reply (starts a local model unless YLOKH_BASE_URL is set)"
	@echo "make test      every test: Rust, C, end-to-end against a local model"
	@echo "make examples  build examples-c/ into $(BUILD)/"
	@echo "make header    regenerate include/ylokh.h"
	@echo "make docs      regenerate docs/reference.md, the man pages and THIRD-PARTY-NOTICES (tools/gen)"
	@echo "make abi-baseline  record the ABI in abi/ after adding functions (abidw; see README, ABI policy)"
	@echo "make install   install into PREFIX (default /usr/local); make uninstall removes it"
	@echo "make windows   cross-build ylokh.dll, import libraries and headers into $(BUILD)/windows/"
	@echo "make deps      install what make test needs and this machine lacks (make test does it first)"

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
# What a fresh Debian 12 machine lacks (apt packages, rustfmt/clippy, cargo-fuzz); quick when
# nothing is missing. YLOKH_SKIP_DEPS=1 skips it.
deps:
	scripts/install-deps.sh

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p ylokh-gen --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps
	$(CARGO) test
	$(MAKE) fuzz
	scripts/with-model-server.sh $(CARGO) test --test e2e -- --ignored --test-threads=1
	scripts/with-model-server.sh scripts/with-litellm.sh \
		$(CARGO) test --test e2e -- --ignored --test-threads=1

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

# The Go module carries a copy of the header (go/ylokh_vendored.h; tests/ecosystem.rs checks it).
header:
	YLOKH_BLESS=1 $(CARGO) test --test header
	cp include/ylokh.h go/ylokh_vendored.h

# The generated documentation and notices: docs/reference.md and docs/man/man3/*.3 from the
# header and docs/examples/, THIRD-PARTY-NOTICES from the dependency tree. tests/generated.rs
# (part of `cargo test`) fails when they are stale.
docs:
	$(CARGO) run -q -p ylokh-gen -- write

# The ABI against abi/ (abidw/abidiff, tests/abi.rs; part of `cargo test`). abi-baseline
# records it again; it refuses an incompatible change under the same SONAME unless ABI_FORCE=1.
abi-check:
	$(CARGO) test --test abi

abi-baseline:
	YLOKH_ABI_BLESS=1 $(CARGO) test --test abi

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

# ---- Windows (cross-built with MinGW-w64) ---------------------------------------------------
# make windows: $(WINDOWS_DIST)/, a folder to zip and hand to Windows developers:
#   bin/ylokh.dll          the library (stripped; needs only DLLs Windows 10+ has)
#   lib/libylokh.dll.a     import library for MinGW-w64 (gcc, clang)
#   lib/ylokh.def          its exports, for MSVC: lib /def:ylokh.def /machine:x64 /out:ylokh.lib
#   include/ylokh.h, include/ylokh.hpp, and the license and notice files of the repository.
# Needs `rustup target add x86_64-pc-windows-gnu` and Debian's gcc-mingw-w64-x86-64-posix
# (scripts/install-deps.sh installs both). tests/windows.rs runs the result under Wine.
WINDOWS_TARGET ?= x86_64-pc-windows-gnu
WINDOWS_PROFILE ?= release
WINDOWS_TARGET_DIR ?= target
MINGW ?= x86_64-w64-mingw32
WINDOWS_DIST ?= $(BUILD)/windows/ylokh-$(YLOKH_VERSION)-x86_64-windows
WINDOWS_BUILT = $(WINDOWS_TARGET_DIR)/$(WINDOWS_TARGET)/$(if $(filter dev test,$(WINDOWS_PROFILE)),debug,$(WINDOWS_PROFILE))

.PHONY: windows
windows:
	@command -v $(MINGW)-gcc >/dev/null || { echo "$(MINGW)-gcc is missing: apt-get install gcc-mingw-w64-x86-64-posix (or run scripts/install-deps.sh)" >&2; exit 1; }
	$(CARGO) build --lib --profile $(WINDOWS_PROFILE) --target $(WINDOWS_TARGET) --target-dir $(WINDOWS_TARGET_DIR)
	rm -rf $(WINDOWS_DIST)
	mkdir -p $(WINDOWS_DIST)/bin $(WINDOWS_DIST)/lib $(WINDOWS_DIST)/include
	$(MINGW)-strip --strip-all -o $(WINDOWS_DIST)/bin/ylokh.dll $(WINDOWS_BUILT)/ylokh.dll
	cp $(WINDOWS_BUILT)/libylokh.dll.a $(WINDOWS_DIST)/lib/
	@# The .def lists what the DLL exports, read back from its export table.
	{ echo 'LIBRARY ylokh.dll'; echo 'EXPORTS'; \
	  $(MINGW)-objdump -p $(WINDOWS_DIST)/bin/ylokh.dll \
	    | sed -n '/^\[Ordinal\/Name Pointer\] Table/,/^$$/s/^[[:space:]]*\[ *[0-9]*\] /    /p'; \
	} > $(WINDOWS_DIST)/lib/ylokh.def
	@grep -q '^    ylokh_' $(WINDOWS_DIST)/lib/ylokh.def || { echo "no exports found for ylokh.def" >&2; exit 1; }
	cp include/ylokh.h include/ylokh.hpp $(WINDOWS_DIST)/include/
	for f in LICENSE* NOTICE* THIRD-PARTY* third-party*; do if test -f "$$f"; then cp "$$f" $(WINDOWS_DIST)/; fi; done
	@echo "Windows package: $(WINDOWS_DIST)"

# ---- Installing like a C library -----------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=] installs:
#   lib/libylokh.so.X.Y.Z (SONAME libylokh.so.0.Y while 0.x, libylokh.so.X from 1.0: the ABI
#     policy in the README) with the symlinks libylokh.so.<SONAME version> and libylokh.so,
#   lib/libylokh.a, include/ylokh.h (the committed header) and include/ylokh.hpp,
#   lib/pkgconfig/ylokh.pc, lib/cmake/ylokh/ylokhConfig.cmake and ylokhConfigVersion.cmake,
#   share/man/man3/*.3 (man 3 ylokh, man 3 ylokh_chat, ...),
#   share/doc/ylokh/: LICENSE-MIT, LICENSE-APACHE, THIRD-PARTY-NOTICES, README.md, CHANGELOG.md.
#
# Stripped by default: the debug info goes to lib/.debug/libylokh.so.X.Y.Z.debug (gdb finds
# it through the library's .gnu_debuglink) when INSTALL_DEBUG=1; INSTALL_STRIP=0 installs
# the libraries as built, debug info included.
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
INSTALL_CMAKEDIR ?= $(INSTALL_LIBDIR)/cmake/ylokh
INSTALL_DATAROOTDIR ?= $(PREFIX)/share
INSTALL_MANDIR ?= $(INSTALL_DATAROOTDIR)/man
INSTALL_DOCDIR ?= $(INSTALL_DATAROOTDIR)/doc/ylokh
INSTALL_PROFILE ?= release
INSTALL_TARGET_DIR ?= target/install
INSTALL_STRIP ?= 1
INSTALL_DEBUG ?= 0
INSTALL ?= install
RUSTC ?= rustc
STRIP ?= strip
OBJCOPY ?= objcopy

YLOKH_VERSION := $(shell awk -F'"' '/^\[/ { p = ($$0 == "[package]") } p && /^version *=/ { print $$2; exit }' Cargo.toml)
YLOKH_MAJOR := $(word 1,$(subst ., ,$(YLOKH_VERSION)))
YLOKH_MINOR := $(word 2,$(subst ., ,$(YLOKH_VERSION)))
# The ABI version in the SONAME: 0.MINOR while 0.x, MAJOR after (build.rs sets the same).
YLOKH_SOVERSION := $(if $(filter 0,$(YLOKH_MAJOR)),$(YLOKH_MAJOR).$(YLOKH_MINOR),$(YLOKH_MAJOR))
INSTALL_BUILT := $(INSTALL_TARGET_DIR)/$(if $(filter dev test,$(INSTALL_PROFILE)),debug,$(INSTALL_PROFILE))
# What is installed: stripped copies (and their debug info) or the build itself.
INSTALL_FILES := $(if $(filter 1,$(INSTALL_STRIP)),$(INSTALL_BUILT)/stripped,$(INSTALL_BUILT))
LIB_SOURCES := Cargo.toml Cargo.lock build.rs cbindgen.toml $(shell find src -name '*.rs')
MAN_PAGES := $(wildcard docs/man/man3/*.3)
DOC_FILES := LICENSE-MIT LICENSE-APACHE THIRD-PARTY-NOTICES README.md CHANGELOG.md
# ylokh.pc paths relative to ${prefix} when they are under it, so the file can be edited
# for a relocated tree.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
# ylokhConfig.cmake paths: relative to the file's own directory when every directory is
# under PREFIX (the tree can be moved), else absolute.
cmake_rel = $(patsubst $(PREFIX)/%,%,$(1))
cmake_up = $(subst $(eval) ,/,$(foreach d,$(subst /, ,$(call cmake_rel,$(INSTALL_CMAKEDIR))),..))
cmake_relocatable = $(and $(filter $(PREFIX)/%,$(INSTALL_CMAKEDIR)),$(filter $(PREFIX)/%,$(INSTALL_LIBDIR)),$(filter $(PREFIX)/%,$(INSTALL_INCLUDEDIR)))
cmake_path = $(if $(cmake_relocatable),$${_ylokh_prefix}/$(call cmake_rel,$(1)),$(1))
cmake_prefix_line = $(if $(cmake_relocatable),get_filename_component(_ylokh_prefix "$${CMAKE_CURRENT_LIST_DIR}/$(cmake_up)" ABSOLUTE),)

.PHONY: install install-lib uninstall

install-lib: $(INSTALL_BUILT)/libylokh.so $(INSTALL_BUILT)/native-static-libs \
    $(if $(filter 1,$(INSTALL_STRIP)),$(INSTALL_BUILT)/stripped/libylokh.so)

$(INSTALL_BUILT)/libylokh.so: $(LIB_SOURCES)
	YLOKH_SONAME=1 $(CARGO) build --lib --profile $(INSTALL_PROFILE) --target-dir $(INSTALL_TARGET_DIR)
	@touch $@ $(INSTALL_BUILT)/libylokh.a

# Stripped copies: the shared library keeps only its dynamic symbols and points to its debug
# info (libylokh.so.X.Y.Z.debug) with a .gnu_debuglink; the archive loses its debug sections
# and the LLVM bitcode rustc embeds for its own link-time optimisation (no C linker reads
# it), and keeps the symbols a linker needs.
$(INSTALL_BUILT)/stripped/libylokh.so: $(INSTALL_BUILT)/libylokh.so
	@mkdir -p $(@D)
	$(OBJCOPY) --only-keep-debug $(INSTALL_BUILT)/libylokh.so $(@D)/libylokh.so.$(YLOKH_VERSION).debug
	$(STRIP) --strip-unneeded -o $@.tmp $(INSTALL_BUILT)/libylokh.so
	cd $(@D) && $(OBJCOPY) --add-gnu-debuglink=libylokh.so.$(YLOKH_VERSION).debug libylokh.so.tmp
	$(STRIP) --strip-debug --remove-section=.llvmbc --remove-section=.llvmcmd \
	    -o $(@D)/libylokh.a $(INSTALL_BUILT)/libylokh.a
	mv $@.tmp $@

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
	$(INSTALL) -d $(DESTDIR)$(INSTALL_LIBDIR) $(DESTDIR)$(INSTALL_INCLUDEDIR) $(DESTDIR)$(INSTALL_PKGCONFIGDIR) \
	    $(DESTDIR)$(INSTALL_CMAKEDIR) $(DESTDIR)$(INSTALL_MANDIR)/man3 $(DESTDIR)$(INSTALL_DOCDIR)
	$(INSTALL) -m 755 $(INSTALL_FILES)/libylokh.so $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_VERSION)
	ln -sfn libylokh.so.$(YLOKH_VERSION) $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_SOVERSION)
	ln -sfn libylokh.so.$(YLOKH_SOVERSION) $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so
	$(INSTALL) -m 644 $(INSTALL_FILES)/libylokh.a $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.a
	$(if $(filter 1,$(INSTALL_STRIP)),$(if $(filter 1,$(INSTALL_DEBUG)),\
	    $(INSTALL) -d $(DESTDIR)$(INSTALL_LIBDIR)/.debug && \
	    $(INSTALL) -m 644 $(INSTALL_FILES)/libylokh.so.$(YLOKH_VERSION).debug $(DESTDIR)$(INSTALL_LIBDIR)/.debug/))
	$(INSTALL) -m 644 include/ylokh.h include/ylokh.hpp $(DESTDIR)$(INSTALL_INCLUDEDIR)/
	$(INSTALL) -m 644 $(MAN_PAGES) $(DESTDIR)$(INSTALL_MANDIR)/man3/
	$(INSTALL) -m 644 $(DOC_FILES) $(DESTDIR)$(INSTALL_DOCDIR)/
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
	@echo "writing $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfig.cmake and ylokhConfigVersion.cmake"
	@sed -e 's|@VERSION@|$(YLOKH_VERSION)|g' -e 's|@SONAME@|libylokh.so.$(YLOKH_SOVERSION)|g' \
	    -e 's|@PREFIX_LINE@|$(cmake_prefix_line)|' \
	    -e 's|@LIBDIR@|$(call cmake_path,$(INSTALL_LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call cmake_path,$(INSTALL_INCLUDEDIR))|' \
	    -e "s|@STATIC_LIBS@|$$(sed -e 's/^-l//' -e 's/ -l/;/g' $(INSTALL_BUILT)/native-static-libs)|" \
	    cmake/ylokhConfig.cmake.in > $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfig.cmake
	@sed -e 's|@VERSION@|$(YLOKH_VERSION)|g' -e 's|@MAJOR@|$(YLOKH_MAJOR)|g' -e 's|@MINOR@|$(YLOKH_MINOR)|g' \
	    -e "s|@SIZEOF_VOID_P@|$$(getconf LONG_BIT | awk '{ print $$1 / 8 }')|g" \
	    cmake/ylokhConfigVersion.cmake.in > $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfigVersion.cmake
	@chmod 644 $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfig.cmake $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfigVersion.cmake

uninstall:
	rm -f $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_SOVERSION) \
	    $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.so.$(YLOKH_VERSION) $(DESTDIR)$(INSTALL_LIBDIR)/libylokh.a \
	    $(DESTDIR)$(INSTALL_LIBDIR)/.debug/libylokh.so.$(YLOKH_VERSION).debug \
	    $(DESTDIR)$(INSTALL_INCLUDEDIR)/ylokh.h $(DESTDIR)$(INSTALL_INCLUDEDIR)/ylokh.hpp \
	    $(DESTDIR)$(INSTALL_PKGCONFIGDIR)/ylokh.pc \
	    $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfig.cmake $(DESTDIR)$(INSTALL_CMAKEDIR)/ylokhConfigVersion.cmake \
	    $(addprefix $(DESTDIR)$(INSTALL_MANDIR)/man3/,$(notdir $(MAN_PAGES))) \
	    $(addprefix $(DESTDIR)$(INSTALL_DOCDIR)/,$(DOC_FILES))
	-rmdir $(DESTDIR)$(INSTALL_LIBDIR)/.debug $(DESTDIR)$(INSTALL_CMAKEDIR) $(DESTDIR)$(INSTALL_DOCDIR) 2>/dev/null
