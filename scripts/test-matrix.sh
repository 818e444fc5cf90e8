#!/usr/bin/env bash
# Runs the test suite against each Docker Engine of the matrix that
# scripts/test-env.sh starts, then the load test; `make test` calls it.
#
#   host              the machine's daemon (Debian 12: docker.io 20.10, API 1.41):
#                     the whole suite, packaging included
#   26.1, 28.5,       Debian trixie's and sid's docker.io, and sid's with the
#   28.5-containerd   containerd image store: every test that drives Docker
#   guest             a Debian 12 guest under QEMU (scripts/guest/): systemd,
#                     cgroup v2, Docker's systemd cgroup driver, AppArmor
#
# Each pass sets CRID_TEST_ENGINE (the tests connect to that engine and
# print it in their output) and DOCKER_HOST (for the docker CLI calls of
# the tests). Every pass runs even when an earlier one failed; the summary
# at the end names each engine's outcome, and the script fails if any did.
# CRID_TEST_ENGINES (as test-env.sh reads it) narrows the matrix.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

state=${CRID_TEST_STATE:-/var/lib/cri-dockerd-rs-test}
engines=${CRID_TEST_ENGINES-26.1 28.5 28.5-containerd}
cargo=${CARGO:-cargo}

# What the engine passes leave out: tests of the packaging (no Docker, or
# the machine's daemon through the compose file), and the guest's own.
engine_filter='kind(test) and not binary(load) and not binary(deb_package) and not binary(packaging)
  and not binary(dood) and not package(crid-supervise) and not package(cri-dockerd-api)
  and not binary(guest)'
# tests/guest.rs needs the guest: it runs there, not on this host.
host_filter='not binary(load) and not binary(guest)'

declare -a summary
failed=0

describe() {
  DOCKER_HOST=$1 docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null
}

run_pass() {
  local engine=$1 host=$2 filter=$3 started rc
  local daemon
  daemon=$(describe "$host")
  printf '\n=== engine %s: Docker %s at %s ===\n\n' "$engine" "${daemon:-(not answering)}" "$host"
  started=$(date +%s)
  CRID_TEST_ENGINE=$engine DOCKER_HOST=$host \
    $cargo nextest run --workspace --no-fail-fast -E "$filter"
  rc=$?
  local outcome=passed
  if [ $rc -ne 0 ]; then outcome="FAILED (exit $rc)"; failed=1; fi
  summary+=("$(printf '%-16s %-32s %-18s %4ss' "$engine" "${daemon:-?}" "$outcome" $(( $(date +%s) - started )))")
}

run_pass host unix:///var/run/docker.sock "$host_filter"
for engine in $engines; do
  run_pass "$engine" "unix://$state/engines/$engine/docker.sock" "$engine_filter"
done

if [ "${CRID_TEST_GUEST:-1}" = 1 ]; then
  printf '\n=== guest: systemd, cgroup v2, Docker systemd cgroup driver, AppArmor (QEMU) ===\n\n'
  started=$(date +%s)
  if CARGO=$cargo bash scripts/guest/suite.sh; then outcome=passed; else outcome=FAILED; failed=1; fi
  guest_docker=$(cat "$state/guest-runs/latest/facts/docker.txt" 2>/dev/null || true)
  summary+=("$(printf '%-16s %-32s %-18s %4ss' guest "cgroup v${guest_docker:-?}" "$outcome" $(( $(date +%s) - started )))")
fi

# Last, on a machine the suite no longer loads: the load test, which
# measures the release build (what nodes run), on the machine's daemon.
printf '\n=== load test (release build, machine daemon) ===\n\n'
started=$(date +%s)
if CRID_RELEASE_BIN=$PWD/target/release/cri-dockerd-rs \
    $cargo nextest run -p cri-dockerd-rs --test load --no-capture; then
  outcome=passed
else
  outcome=FAILED; failed=1
fi
summary+=("$(printf '%-16s %-32s %-18s %4ss' load "release build" "$outcome" $(( $(date +%s) - started )))")

printf '\n=== summary ===\n'
printf '%s\n' "${summary[@]}"
exit $failed
