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

header:
	YLOKH_BLESS=1 $(CARGO) test --test header

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
