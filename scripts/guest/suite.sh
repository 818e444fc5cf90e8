#!/usr/bin/env bash
# The guest suite (`make test-guest`, and part of `make test`): builds what
# the guest runs (the release binary and the Debian package, the test
# binaries), then runs these suites inside the test guest, a systemd host on
# cgroup v2 with Docker's systemd cgroup driver and AppArmor:
#
#   guest          what only such a host shows (tests/guest.rs): the Debian
#                  package under systemd, pods in systemd slices with v2
#                  stats and limits, AppArmor profiles
#   lifecycle, network, containers, streaming, pod_stats, kubelet_stats
#                  the suites of the same names, as on the host
#
# The shim the tests start is the release build (CRID_TEST_SHIM), what
# nodes run. Prints the guest's Docker cgroup version and driver.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo=${CARGO:-cargo}

$cargo build --release --bin cri-dockerd-rs
make -s pause-static >/dev/null
bash scripts/build-deb.sh target/release/cri-dockerd-rs target/deb >/dev/null

# name=test target[:extra arguments]
suites=(
  "guest=guest:--test-threads=1"
  "lifecycle=sandbox_lifecycle"
  "network=sandbox_network"
  "containers=containers"
  "streaming=streaming"
  "pod_stats=pod_stats"
  "kubelet_stats=kubelet_stats"
)
targets=()
for suite in "${suites[@]}"; do
  target=${suite#*=}; targets+=(--test "${target%%:*}")
done
executables=$($cargo test -p cri-dockerd-rs "${targets[@]}" --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.kind == ["test"]) | "\(.target.name) \(.executable)"')

plan=()
for suite in "${suites[@]}"; do
  name=${suite%%=*}; rest=${suite#*=}
  target=${rest%%:*}; args=""
  [ "$rest" != "$target" ] && args=${rest#*:}
  executable=$(awk -v t="$target" '$1 == t {print $2}' <<<"$executables")
  [ -n "$executable" ] || { echo "no test binary for $target" >&2; exit 1; }
  plan+=("$name=${executable#"$PWD"/} $args")
done

CRID_GUEST_RUN_ENV="RUST_BACKTRACE=1 CRID_TEST_SHIM=$PWD/target/release/cri-dockerd-rs" \
  bash scripts/guest/run.sh "${plan[@]}"
