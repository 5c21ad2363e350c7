# Stasis: the one entry point for people and CI.
CARGO    ?= cargo
PREFIX   ?= /usr/local
SHARED   ?= $(abspath ../shared)
FIXTURES := $(SHARED)/fixtures/criu-4.2
export STASIS_SHARED := $(SHARED)

.PHONY: build test demo bench lint install

build:
	$(CARGO) build --workspace --release --bins

# Unit, format-oracle (crit) and end-to-end tests. Needs crit (Debian package criu).
test:
	$(CARGO) build --workspace --bins
	@# The reference CRIU (cross-restore tests) unpacks itself on first use: do it once, here.
	$(SHARED)/tools/criu --version
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# The main job: checkpoint a running workload, kill it, restore it, show it continued.
demo: build
	scripts/demo.sh

# Dump/restore throughput against the machine's floor (see tests/src/bin/stasis-bench.rs).
bench:
	$(CARGO) build --release --workspace --bins
	./target/release/stasis-bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 target/release/stasis target/release/stasis-runc \
		target/release/containerd-shim-stasis-v2 $(DESTDIR)$(PREFIX)/bin/
