#!/usr/bin/env bash
# Boots the test guest (scripts/guest/build-image.sh) under QEMU's software
# emulation and runs test binaries of this repository inside it, against
# the guest's systemd, cgroup v2, Docker (systemd cgroup driver) and
# AppArmor; brings back their output and exits non-zero when any failed or
# the guest did not finish.
#
#   scripts/guest/run.sh NAME=COMMAND...
#
# Each argument is one test run: NAME, then the command the guest runs from
# the repository's root (a test binary of target/, with its arguments). The
# repository is shared read-only at its own path; the guest's view of the
# run (console, results, facts such as `docker info`) is kept in
# $CRID_TEST_STATE/guest-runs/latest.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${CRID_TEST_STATE:-/var/lib/cri-dockerd-rs-test}
timeout=${CRID_GUEST_TIMEOUT:-2400}
memory=${CRID_GUEST_MEMORY:-4096}

log() { printf '[guest] %s\n' "$*"; }
die() { printf '[guest] ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: $0 NAME=COMMAND..."
command -v qemu-system-x86_64 >/dev/null ||
  die "qemu-system-x86_64 is missing: run scripts/test-env.sh (it installs qemu-system-x86 from bookworm-backports)"

image=$(bash "$here/build-image.sh") || die "building the guest image failed"

run=$state/guest-runs/$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$run/results" "$run/facts"
ln -sfn "$run" "$state/guest-runs/latest"
# Keep the last few runs only.
find "$state/guest-runs" -mindepth 1 -maxdepth 1 -type d | sort | head -n -5 | xargs -r rm -rf

{
  printf 'REPO=%q\n' "$repo"
  printf 'RUN_ENV=%q\n' "${CRID_GUEST_RUN_ENV:-RUST_BACKTRACE=1}"
  [ -n "${CRID_GUEST_RECORD_CGROUPS:-}" ] && printf 'RECORD_CGROUPS=%q\n' "$CRID_GUEST_RECORD_CGROUPS"
} >"$run/env"
: >"$run/plan"
for spec in "$@"; do
  name=${spec%%=*}; command=${spec#*=}
  if [ -z "$name" ] || [ "$name" = "$spec" ]; then die "not NAME=COMMAND: $spec"; fi
  printf '%s %s\n' "$name" "$command" >>"$run/plan"
done

log "booting $image (TCG, 2 CPUs, ${memory} MiB) for $# test run(s); console in $run/console.log"
started=$(date +%s)
set +e
timeout --foreground -k 10 "$timeout" qemu-system-x86_64 \
  -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m "$memory" \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "console=ttyS0 root=/dev/vda rw apparmor=1 security=apparmor systemd.unified_cgroup_hierarchy=1 panic=-1 psi=1 systemd.show_status=0" \
  -drive "file=$image/rootfs.img,if=virtio,format=raw" -snapshot \
  -virtfs "local,path=$run,mount_tag=share,security_model=none,id=share" \
  -virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on,id=repo" \
  -nic none -display none -no-reboot -serial "file:$run/console.log" 2>"$run/qemu.log"
qemu=$?
set -e
elapsed=$(( $(date +%s) - started ))
log "the guest ran ${elapsed}s (qemu exit $qemu)"

if [ -s "$run/facts/docker.txt" ]; then
  read -r cgroup driver docker_version <"$run/facts/docker.txt" || true
  log "guest: kernel $(cat "$run/facts/kernel.txt" 2>/dev/null), Docker ${docker_version:-?}, cgroup v${cgroup:-?} with the ${driver:-?} cgroup driver"
fi
failed=0
while read -r name _; do
  status_file=$run/results/$name.status
  if [ ! -s "$status_file" ]; then
    log "$name: did not run"
    failed=1; continue
  fi
  read -r status seconds <"$status_file"
  if [ "$status" = 0 ]; then
    log "$name: passed (${seconds}s)"
  else
    log "$name: FAILED (exit $status, ${seconds}s); its output:"
    cat "$run/results/$name.log"
    failed=1
  fi
done <"$run/plan"
if [ ! -s "$run/done" ]; then
  log "the guest did not finish its run (timeout ${timeout}s, or a failed boot); the console's end:"
  tail -50 "$run/console.log" 2>/dev/null || true
  cat "$run/qemu.log" 2>/dev/null || true
  exit 1
fi
exit $failed
