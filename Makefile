# cri-dockerd-rs: `make up` runs the kubelet + shim on this host's Docker,
# `make test` runs the whole test suite (root, Debian/Ubuntu).

SHELL := /bin/bash
CARGO ?= cargo
ARCH := $(shell uname -m)
STATIC_TARGET := $(ARCH)-unknown-linux-gnu

.PHONY: all build pause-static test test-env unit lint fmt

all: build

build:
	$(CARGO) build --release -p cri-dockerd-rs
	$(MAKE) pause-static

# The pause binary must link statically: it runs in an image built from scratch.
pause-static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p pause \
		--target $(STATIC_TARGET) --target-dir target/static

# Installs and starts what the integration tests need (Docker, CNI plugins,
# registries on 127.0.0.1). Idempotent.
test-env:
	bash scripts/test-env.sh

test: test-env pause-static
	$(CARGO) nextest run --workspace --no-fail-fast

unit:
	$(CARGO) nextest run --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
