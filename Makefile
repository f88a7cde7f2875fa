# Convenience targets around cargo for C users. `make help` lists them.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -std=c99 -Wall -Wextra -Werror -pedantic -O2
BUILD := build
LIBDIR := target/release
EXAMPLES := $(patsubst examples-c/%.c,$(BUILD)/%,$(wildcard examples-c/*.c))

.PHONY: help lib examples demo test header bench clean

help:
	@echo "make demo      build the library and examples, stream a real reply (starts a local model unless YLOKH_BASE_URL is set)"
	@echo "make test      every test: Rust, C, end-to-end against a local model"
	@echo "make examples  build examples-c/ into $(BUILD)/"
	@echo "make header    regenerate include/ylokh.h"

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
	scripts/with-model-server.sh $(CARGO) test --test e2e -- --ignored --test-threads=1

header:
	YLOKH_BLESS=1 $(CARGO) test --test header

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
