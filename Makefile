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
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# What Stasis does today: inspect real CRIU checkpoints (dump/restore arrive with the next milestone).
demo: build
	@for d in w_tree w_more runc-busybox; do \
		echo "==> stasis show $(FIXTURES)/$$d"; \
		./target/release/stasis show $(FIXTURES)/$$d || exit 1; echo; \
	done
	@echo "==> stasis show --json $(FIXTURES)/w_simple (first lines)"
	@./target/release/stasis show --json $(FIXTURES)/w_simple | head -n 25

bench:
	@echo "bench: no benchmark yet; dump/restore throughput arrives with 'stasis dump'/'stasis restore'." >&2
	@exit 1

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 target/release/stasis target/release/stasis-runc \
		target/release/containerd-shim-stasis-v2 $(DESTDIR)$(PREFIX)/bin/
