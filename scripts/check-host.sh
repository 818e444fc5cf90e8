#!/usr/bin/env bash
# Checks (and where it safely can, prepares) this host for `make up`:
# Docker answers, and the kubelet's root directory /var/run/kubelet is on a
# shared mount, which its rshared bind in docker-compose.yml needs so that
# the volumes the kubelet mounts reach the host's Docker.
set -euo pipefail

say() { printf '[make up] %s\n' "$*"; }
die() { printf '[make up] ERROR: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "Docker does not answer: start it, or run as a user who may use it"

root=/var/run/kubelet
mkdir -p "$root" 2>/dev/null || die "cannot create $root: run make up as root"
propagation=$(findmnt -no PROPAGATION --target "$root" 2>/dev/null || echo unknown)
if [[ $propagation != shared* ]]; then
  # Under systemd / is shared and nothing happens here. Elsewhere (some
  # container hosts) make the kubelet root its own shared mount instead of
  # changing the propagation of the whole host.
  say "$root is on a $propagation mount; making it a shared bind mount of itself"
  if ! mountpoint -q "$root"; then
    mount --bind "$root" "$root" || die "cannot bind-mount $root (run as root, or: mount --make-rshared /)"
  fi
  mount --make-rshared "$root" || die "cannot make $root shared (run as root, or: mount --make-rshared /)"
fi
mkdir -p /var/run/cri-dockerd /var/lib/cni /var/log/pods
