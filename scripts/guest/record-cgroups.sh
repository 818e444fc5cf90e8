#!/bin/sh
# Runs inside the test guest (see `record` in scripts/guest/README.md):
# records a real cgroup v2 tree of a pod for the unit tests of the cgroup
# code, with each of Docker's cgroup drivers:
#
#   systemd    the guest's Docker: a container under the kubelet-style slice
#              kubepods-burstable-podrecorded.slice
#   cgroupfs   a second dockerd with the cgroupfs driver: a container under
#              /kubepods/burstable/podrecorded
#
# Each container is limited (64 MiB, half a CPU), has written 4 MiB with
# fsync and runs a spinner, so every counter has moved. For each driver,
# $1/<driver>/ gets the container's and the pod's cgroup files (under their
# paths from the hierarchy's root), the container's /proc/<pid>/cgroup and
# the cgroup2 line of its mountinfo.
set -eu
out=$1
rm -rf "$out"
mkdir -p "$out"

root=$(mktemp -d)
mkdir -p "$root/bin"
cp /bin/busybox "$root/bin/busybox"
for a in sh dd sleep; do ln -s busybox "$root/bin/$a"; done
tar -C "$root" -c . | docker import - crid-record:1 >/dev/null

copy_cgroup() { # PATH DEST
  src=/sys/fs/cgroup$1
  mkdir -p "$2$1"
  for f in cgroup.procs cgroup.controllers cpu.stat cpu.max cpu.weight cpu.pressure \
           memory.current memory.max memory.low memory.peak memory.stat memory.events \
           memory.swap.current memory.swap.max memory.pressure io.stat io.pressure \
           pids.current pids.max; do
    [ -r "$src/$f" ] && cat "$src/$f" >"$2$1/$f"
  done
  return 0
}

record() { # DRIVER DOCKER_HOST PARENT
  driver=$1; host=$2; parent=$3
  dest=$out/$driver
  id=$(DOCKER_HOST=$host docker run -d --network none --cgroup-parent "$parent" \
         --memory 64m --cpu-period 100000 --cpu-quota 50000 crid-record:1 \
         sh -c 'dd if=/dev/zero of=/written bs=1M count=4 conv=fsync 2>/dev/null; while :; do :; done')
  sleep 8
  pid=$(DOCKER_HOST=$host docker inspect -f '{{.State.Pid}}' "$id")
  path=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
  mkdir -p "$dest"
  cat "/proc/$pid/cgroup" >"$dest/proc-cgroup.txt"
  grep ' - cgroup2 ' /proc/self/mountinfo >"$dest/mountinfo.txt"
  echo "$id" >"$dest/container-id.txt"
  copy_cgroup "$path" "$dest/tree"
  copy_cgroup "${path%/*}" "$dest/tree"
  DOCKER_HOST=$host docker rm -f "$id" >/dev/null
  echo "recorded $driver: $path"
}

record systemd unix:///var/run/docker.sock kubepods-burstable-podrecorded.slice

# A second daemon with the cgroupfs driver, on its own everything.
echo "{}" >/run/crid-rec.json
ip link add crid-rec type bridge && ip addr add 10.77.0.1/24 dev crid-rec && ip link set crid-rec up
dockerd --host=unix:///run/crid-rec.sock --data-root=/var/lib/crid-rec --exec-root=/run/crid-rec \
  --pidfile=/run/crid-rec.pid --bridge=crid-rec --iptables=false --ip-masq=false \
  --config-file=/run/crid-rec.json --exec-opt native.cgroupdriver=cgroupfs >/var/log/crid-rec.log 2>&1 &
for _ in $(seq 1 240); do docker -H unix:///run/crid-rec.sock info >/dev/null 2>&1 && break; sleep 0.5; done
docker -H unix:///run/crid-rec.sock info >/dev/null 2>&1 || { tail -30 /var/log/crid-rec.log; exit 1; }
docker save crid-record:1 | docker -H unix:///run/crid-rec.sock load -q >/dev/null
record cgroupfs unix:///run/crid-rec.sock /kubepods/burstable/podrecorded
kill "$(cat /run/crid-rec.pid)"
