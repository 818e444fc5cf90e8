#!/bin/sh
# Runs inside the test guest at boot (crid-guest-tests.service), then the
# guest powers off. The host shares two directories over virtio-9p:
#
#   share   the run: `env` (the repository's path and settings), `plan`
#           (one test a line: name, then the command), and where the
#           results go (`results/<name>.log` and `.status`, `facts/`, `done`)
#   repo    the repository with its build, read-only, mounted at the host's
#           own path so the test binaries find what they were built against
#
# Output goes to the console (the host keeps it) and the share.
set -u

log() { echo "[in-guest] $*"; }

mkdir -p /mnt/share
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 share /mnt/share; then
  log "cannot mount the share; nothing to run"
  exit 1
fi
share=/mnt/share
# shellcheck disable=SC1091
. "$share/env"
mkdir -p "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,ro repo "$REPO" ||
  { log "cannot mount the repository"; echo 1 >"$share/done"; exit 1; }
mkdir -p "$share/results" "$share/facts"

for _ in $(seq 1 120); do
  docker info >/dev/null 2>&1 && break
  sleep 1
done
docker info >"$share/facts/docker-info.txt" 2>&1
docker info --format '{{.CgroupVersion}} {{.CgroupDriver}} {{.ServerVersion}}' >"$share/facts/docker.txt" 2>&1
log "docker: $(cat "$share/facts/docker.txt")"
uname -r >"$share/facts/kernel.txt"
cat /sys/kernel/security/apparmor/profiles >"$share/facts/apparmor-profiles.txt" 2>/dev/null || true

# The test registries, as scripts/test-env.sh starts them on the host.
state=/var/lib/cri-dockerd-rs-test
mkdir -p "$state"
start_registry() {
  name=$1; port=$2; auth=$3
  mkdir -p "$state/$name"
  cat >"$state/$name.yml" <<YAML
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
    htpasswd -Bbn crid crid-secret >"$state/$name/htpasswd"
    cat >>"$state/$name.yml" <<YAML
auth:
  htpasswd:
    realm: cri-dockerd-rs-test
    path: $state/$name/htpasswd
YAML
  fi
  docker-registry serve "$state/$name.yml" >"$state/$name.log" 2>&1 &
}
start_registry registry-plain 5000 0
start_registry registry-auth 5001 1
for _ in $(seq 1 60); do
  curl -s -o /dev/null http://127.0.0.1:5000/v2/ && curl -s -o /dev/null http://127.0.0.1:5001/v2/ && break
  sleep 0.5
done

# The plan: "name command..." a line; each test run in turn.
overall=0
while read -r name command; do
  [ -n "$name" ] || continue
  log "running $name"
  started=$(date +%s)
  # RUN_ENV is a list of NAME=VALUE words.
  # shellcheck disable=SC2086
  (cd "$REPO" && env $RUN_ENV sh -c "$command") >"$share/results/$name.log" 2>&1
  status=$?
  echo "$status $(( $(date +%s) - started ))" >"$share/results/$name.status"
  log "$name: exit $status after $(( $(date +%s) - started ))s"
  [ "$status" = 0 ] || overall=1
done <"$share/plan"

# The cgroup v2 tree as the tests left it (for recorded test data).
if [ -n "${RECORD_CGROUPS:-}" ]; then
  sh -c "$RECORD_CGROUPS" >"$share/facts/cgroups.log" 2>&1 || true
fi
journalctl -b --no-pager >"$share/facts/journal.txt" 2>&1 || true
echo "$overall" >"$share/done"
log "done: $overall"
