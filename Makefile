# libumcast: top-level commands.
#   make         build libumcast.so and the C programs
#   make demo    build and run the demo (one group, 3 receivers, 2 senders)
#   make test    cargo tests, then the C suite under LD_PRELOAD (3 builds each)
#   make bench   benchmarks; writes a markdown table under bench-results/
CARGO ?= cargo
LIB := $(CURDIR)/target/release/libumcast.so

.PHONY: all lib ctests demo test test-rs test-c bench clean
all: lib ctests

lib:
	$(CARGO) build --release --workspace

ctests: lib
	$(MAKE) -C tests-c

demo: lib
	$(MAKE) -C scripts demo
	UMCAST_LIB=$(LIB) scripts/demo.sh

test: lib test-rs test-c

test-rs: lib
	UMCAST_LIB=$(LIB) $(CARGO) test --release --workspace

test-c: ctests
	UMCAST_LIB=$(LIB) $(MAKE) -C tests-c run

bench: lib
	UMCAST_LIB=$(LIB) scripts/bench.sh

clean:
	$(CARGO) clean
	$(MAKE) -C tests-c clean
	$(MAKE) -C scripts clean
