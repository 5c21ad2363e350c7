# Stasis: the one entry point for people and CI.
CARGO    ?= cargo
PREFIX   ?= /usr/local

.PHONY: build test demo bench lint install fixtures

build:
	$(CARGO) build --workspace --release --bins

# Unit, format-oracle (crit) and end-to-end tests. What they need is installed first when
# missing (Debian packages, the reference CRIU and checkpointctl): see scripts/test-deps.sh.
test:
	scripts/test-deps.sh
	$(CARGO) build --workspace --bins
	@# Tests fork, trace and reap children: nextest gives each its own process; without it,
	@# one test at a time.
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast -- --test-threads=1; \
	fi

# The main job: checkpoint a running workload, kill it, restore it, show it continued.
demo: build
	scripts/demo.sh

# Dump/restore throughput against the machine's floor (see tests/src/bin/stasis-bench.rs).
bench:
	$(CARGO) build --release --workspace --bins
	./target/release/stasis-bench

# Makes the CRIU fixture dumps again (tests/fixtures/README.md); commit what changed.
fixtures:
	tests/fixtures/make-fixtures.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 target/release/stasis target/release/stasis-runc \
		target/release/containerd-shim-stasis-v2 $(DESTDIR)$(PREFIX)/bin/
