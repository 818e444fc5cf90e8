# kubelet + cri-dockerd-rs for the Docker-out-of-Docker setup of
# docker-compose.yml (`make up` builds and starts it). Every version is a
# build argument:
#   docker build -t cri-dockerd-rs:local .                         runtime image
#   docker build --target pause -t cri-dockerd-rs/pause:local .    pod infra image
#   docker buildx build --platform linux/amd64,linux/arm64 .       both architectures
#   docker build --build-arg KUBELET_FROM_SOURCE=1 .               kubelet built from source

ARG DEBIAN_RELEASE=bookworm
ARG RUST_VERSION=1.95
ARG GO_VERSION=1.24
ARG KUBE_VERSION=1.34
ARG KUBE_VERSION_PATCH=0
ARG CNI_PLUGINS_VERSION=1.7.1
ARG CRICTL_VERSION=1.33.0
ARG KUBELET_FROM_SOURCE=0

# --- cri-dockerd-rs, its supervisor and the static pause binary --------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# crates/cri-api compiles proto/ (the CRI definition) with protoc at build time.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY crates crates
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    triple="$(uname -m)-unknown-linux-gnu" \
 && cargo build --locked --release -p cri-dockerd-rs -p crid-supervise \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release -p pause \
      --target "$triple" --target-dir target/static \
 && install -D -m 0755 target/release/cri-dockerd-rs /out/cri-dockerd-rs \
 && install -D -m 0755 target/release/crid-supervise /out/crid-supervise \
 && install -D -m 0755 "target/static/$triple/release/pause" /out/pause

# --- downloads, each checked against its published SHA-256 -------------------
FROM debian:${DEBIAN_RELEASE}-slim AS fetch
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY packaging/fetch-verified /usr/local/bin/fetch-verified
# TARGETARCH is set by BuildKit; dpkg's names (amd64, arm64) are the same.
ARG TARGETARCH

FROM fetch AS kubelet-release
ARG KUBE_VERSION
ARG KUBE_VERSION_PATCH
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && fetch-verified "https://dl.k8s.io/release/v${KUBE_VERSION}.${KUBE_VERSION_PATCH}/bin/linux/${arch}/kubelet" /out/kubelet \
 && chmod 0755 /out/kubelet

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS kubelet-source
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG KUBE_VERSION
ARG KUBE_VERSION_PATCH
WORKDIR /go/src/k8s.io/kubernetes
RUN git clone --depth 1 --branch "v${KUBE_VERSION}.${KUBE_VERSION_PATCH}" \
      https://github.com/kubernetes/kubernetes.git .
# Kubernetes vendors its modules: nothing else is downloaded.
RUN --mount=type=cache,target=/root/.cache/go-build \
    version="v${KUBE_VERSION}.${KUBE_VERSION_PATCH}" \
 && CGO_ENABLED=0 go build -trimpath -o /out/kubelet \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#1.} -X k8s.io/component-base/version.gitTreeState=clean" \
      ./cmd/kubelet

FROM kubelet-release AS kubelet-from-source-0
FROM kubelet-source AS kubelet-from-source-1
# hadolint ignore=DL3006
FROM kubelet-from-source-${KUBELET_FROM_SOURCE} AS kubelet

FROM fetch AS crictl
ARG CRICTL_VERSION
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && fetch-verified "https://github.com/kubernetes-sigs/cri-tools/releases/download/v${CRICTL_VERSION}/crictl-v${CRICTL_VERSION}-linux-${arch}.tar.gz" /tmp/crictl.tar.gz \
 && mkdir -p /out \
 && tar -xzf /tmp/crictl.tar.gz -C /out crictl

FROM fetch AS cni-plugins
ARG CNI_PLUGINS_VERSION
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && fetch-verified "https://github.com/containernetworking/plugins/releases/download/v${CNI_PLUGINS_VERSION}/cni-plugins-linux-${arch}-v${CNI_PLUGINS_VERSION}.tgz" /tmp/cni-plugins.tgz \
 && mkdir -p /tmp/cni /out \
 && tar -xzf /tmp/cni-plugins.tgz -C /tmp/cni \
 && install -m 0755 -t /out /tmp/cni/bridge /tmp/cni/host-local /tmp/cni/loopback /tmp/cni/portmap /tmp/cni/firewall

# --- the pod infrastructure image: our pause, from scratch -------------------
FROM scratch AS pause
COPY --from=build /out/pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]

# --- runtime: what the kubelet, the shim and the CNI plugins need ------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# iptables: the bridge plugin's masquerade, portmap and firewall rules and the
# kubelet's own chains; conntrack: flushing stale entries for hostPorts;
# mount/util-linux: the kubelet's volume mounts; ca-certificates: registry TLS;
# curl: `make up` asks the kubelet's health endpoints whether it is ready.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates conntrack curl iproute2 iptables kmod mount util-linux \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/cri-dockerd-rs /usr/local/bin/cri-dockerd-rs
COPY --from=build /out/crid-supervise /usr/local/bin/crid-supervise
COPY --from=kubelet /out/kubelet /usr/local/bin/kubelet
COPY --from=crictl /out/crictl /usr/local/bin/crictl
COPY --from=cni-plugins /out/ /opt/cni/bin/
COPY cni/10-bridge.conflist /etc/cni/net.d/10-bridge.conflist
COPY standalone.yaml /etc/kubernetes/standalone.yaml
COPY packaging/crictl.yaml /etc/crictl.yaml
# The shim's socket lives in the state directory both containers mount; the
# kubelet and crictl find it at the usual path through this link.
RUN mkdir -p /etc/kubernetes/manifests /var/run/cri-dockerd /var/run/kubelet /var/log/pods \
 && ln -s /var/run/cri-dockerd/cri-dockerd.sock /var/run/cri-dockerd.sock
CMD ["cri-dockerd-rs"]
