# cri-dockerd-rs: `make up` runs the kubelet + shim on this host's Docker,
# `make test` runs the whole test suite (root, Debian/Ubuntu).

SHELL := /bin/bash
CARGO ?= cargo
ARCH := $(shell uname -m)
STATIC_TARGET := $(ARCH)-unknown-linux-gnu

# --- packaging knobs (see README, "Changing versions") ----------------------
IMAGE ?= cri-dockerd-rs:local
PAUSE_IMAGE ?= cri-dockerd-rs/pause:local
KUBE_VERSION ?= 1.34
KUBE_VERSION_PATCH ?= 0
CNI_PLUGINS_VERSION ?= 1.7.1
CRICTL_VERSION ?= 1.33.0
KUBELET_FROM_SOURCE ?= 0
BUILD_ARGS := --build-arg KUBE_VERSION=$(KUBE_VERSION) \
	--build-arg KUBE_VERSION_PATCH=$(KUBE_VERSION_PATCH) \
	--build-arg CNI_PLUGINS_VERSION=$(CNI_PLUGINS_VERSION) \
	--build-arg CRICTL_VERSION=$(CRICTL_VERSION) \
	--build-arg KUBELET_FROM_SOURCE=$(KUBELET_FROM_SOURCE)
UP_TIMEOUT ?= 180

# Compose v2: the plugin, else a v2 standalone docker-compose. The compose
# file uses keys (uts, cgroup) that the old Python Compose v1 rejects.
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif docker-compose version --short 2>/dev/null | grep -qv '^1\.'; then echo docker-compose; fi)
# What docker-compose.yml reads from the environment; the kubelet's cgroup
# driver is the host Docker's.
COMPOSE_ENV = CRID_IMAGE=$(IMAGE) PAUSE_IMAGE=$(PAUSE_IMAGE) \
	CGROUP_DRIVER=$$(docker info --format '{{.CgroupDriver}}' 2>/dev/null)

.PHONY: all binary build up down clean clean-state logs crictl pause-static test test-env test-guest unit lint fmt check-compose deb print-build-args

all: binary

binary:
	$(CARGO) build --release -p cri-dockerd-rs
	$(MAKE) pause-static

# The pause binary must link statically: it runs in an image built from scratch.
pause-static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p pause \
		--target $(STATIC_TARGET) --target-dir target/static

# --- packaging ----------------------------------------------------------------
DEB_DIR ?= target/deb

# The Debian package for nodes (binary, systemd units, maintainer scripts),
# built offline with dpkg-deb: target/deb/cri-dockerd-rs_<version>_<arch>.deb.
deb:
	$(CARGO) build --release -p cri-dockerd-rs
	bash scripts/build-deb.sh target/release/cri-dockerd-rs $(DEB_DIR)

# The image's version build arguments, one KEY=VALUE a line (the release
# workflow passes them to Buildx).
print-build-args:
	@printf '%s\n' KUBE_VERSION=$(KUBE_VERSION) KUBE_VERSION_PATCH=$(KUBE_VERSION_PATCH) \
	  CNI_PLUGINS_VERSION=$(CNI_PLUGINS_VERSION) CRICTL_VERSION=$(CRICTL_VERSION) \
	  KUBELET_FROM_SOURCE=$(KUBELET_FROM_SOURCE)

check-compose:
	@[ -n "$(COMPOSE)" ] || { echo "Docker Compose v2 is required (docker compose plugin or a v2 docker-compose)" >&2; exit 1; }

# The runtime image (kubelet, cri-dockerd-rs, crictl, CNI plugins) and the
# pod infrastructure image from our pause binary.
build:
	DOCKER_BUILDKIT=1 docker build $(BUILD_ARGS) --target pause -t $(PAUSE_IMAGE) .
	DOCKER_BUILDKIT=1 docker build $(BUILD_ARGS) --target runtime -t $(IMAGE) .

up: check-compose build
	bash scripts/check-host.sh
	$(COMPOSE_ENV) $(COMPOSE) up --detach --no-build
	$(COMPOSE_ENV) COMPOSE="$(COMPOSE)" UP_TIMEOUT=$(UP_TIMEOUT) bash scripts/wait-ready.sh

logs: check-compose
	$(COMPOSE_ENV) $(COMPOSE) logs --follow --tail=200

# make crictl ARGS="pods"
crictl: check-compose
	$(COMPOSE_ENV) $(COMPOSE) exec $$([ -t 0 ] || echo -T) kubelet crictl $(ARGS)

# Stops the kubelet first (else it restarts its static pods), removes every
# pod through the shim, then the two containers. State under /var/run stays.
down clean: check-compose
	-$(COMPOSE_ENV) $(COMPOSE) stop kubelet
	-$(COMPOSE_ENV) $(COMPOSE) exec -T cri-dockerd crictl rmp --all --force
	$(COMPOSE_ENV) $(COMPOSE) down --remove-orphans

# Also forgets every pod, checkpoint and kubelet state.
clean-state: clean
	-findmnt -rn -o TARGET | grep -E '^/(var/)?run/kubelet(/|$$)' | sort -r | xargs -r umount
	rm -rf --one-file-system /var/run/kubelet /var/run/cri-dockerd

# --- tests --------------------------------------------------------------------
# Installs and starts what the integration tests need (Docker, Compose v2,
# CNI plugins, registries on 127.0.0.1, hadolint). Idempotent.
test-env:
	bash scripts/test-env.sh

# Everything, against each Docker Engine of the matrix (the machine's 20.10,
# Debian's 26.1 and 28.5, and 28.5 with the containerd image store) and in
# the test guest (systemd, cgroup v2, Docker's systemd cgroup driver,
# AppArmor); then, on a machine the rest of the suite no longer loads, the
# load test, which measures the release build (what nodes run). See
# scripts/test-matrix.sh.
test: test-env pause-static
	$(CARGO) build --release --bin cri-dockerd-rs
	CARGO=$(CARGO) bash scripts/test-matrix.sh

# The guest suite alone (scripts/guest/): builds the guest image when its
# inputs changed, boots it under QEMU and runs the suites inside.
test-guest: test-env
	CARGO=$(CARGO) bash scripts/guest/suite.sh

unit:
	$(CARGO) nextest run --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	hadolint Dockerfile
	$(COMPOSE_ENV) $(COMPOSE) config --quiet

fmt:
	$(CARGO) fmt --all
