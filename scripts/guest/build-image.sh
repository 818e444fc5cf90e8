#!/usr/bin/env bash
# Builds the test guest: a Debian 12 system with systemd as PID 1, cgroup v2,
# Docker with its systemd cgroup driver, AppArmor, the CNI plugins and what
# the tests run inside it need. Everything comes from Debian's archive
# (debootstrap; no image from the internet). The result, cached by a hash of
# this script and its inputs, is three files in $CRID_TEST_STATE/guest/<hash>:
#
#   vmlinuz      Debian's kernel (linux-image-amd64)
#   initrd.img   a small busybox initramfs that loads virtio and ext4 and
#                switches to the disk
#   rootfs.img   the root filesystem, an ext4 image made without mounting
#                anything (mkfs.ext4 -d); guests boot it with -snapshot, so
#                it is never changed
#
# Prints the directory. Safe to run again: a complete build is reused.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${CRID_TEST_STATE:-/var/lib/cri-dockerd-rs-test}
suite=${CRID_GUEST_SUITE:-bookworm}
mirror=${CRID_GUEST_MIRROR:-http://deb.debian.org/debian}
size=${CRID_GUEST_DISK:-4G}

log() { printf '[guest-image] %s\n' "$*" >&2; }
die() { printf '[guest-image] ERROR: %s\n' "$*" >&2; exit 1; }

# What the guest runs: systemd and Docker (systemd cgroup driver), the CNI
# plugins, AppArmor, and the tools the tests and the in-guest runner call.
packages=(
  systemd systemd-sysv udev dbus kmod linux-image-amd64
  docker.io containernetworking-plugins apparmor
  iproute2 iptables busybox-static docker-registry apache2-utils
  jq curl ca-certificates procps util-linux e2fsprogs
)

hash=$( { cat "$0" "$here/in-guest.sh"; printf '%s\n' "$suite" "${packages[@]}"; } | sha256sum | cut -c1-16)
out=$state/guest/$hash
if [ -s "$out/rootfs.img" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/test-env.sh installs it)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (e2fsprogs)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (busybox-static)"

work=$state/guest/build-$hash
rm -rf "$work"
mkdir -p "$work"
rootfs=$work/rootfs
log "debootstrap $suite into $rootfs (${#packages[@]} packages and their dependencies)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }

# --- the system -------------------------------------------------------------
echo crid-guest >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost crid-guest\n' >"$rootfs/etc/hosts"
cat >"$rootfs/etc/fstab" <<'FSTAB'
/dev/vda  /  ext4  rw,noatime  0  1
FSTAB
# Docker on cgroup v2 with the systemd cgroup driver, as current
# distributions run it (Docker 20.10 picks it itself there; said anyway).
mkdir -p "$rootfs/etc/docker"
cat >"$rootfs/etc/docker/daemon.json" <<'JSON'
{"exec-opts": ["native.cgroupdriver=systemd"]}
JSON
# The host's shares: the test run (read-write) and the repository with its
# build (read-only, at the host's own path so that the test binaries find
# what they were built against). in-guest.sh mounts them.
install -m 0755 "$here/in-guest.sh" "$rootfs/usr/local/sbin/crid-in-guest"
cat >"$rootfs/etc/systemd/system/crid-guest-tests.service" <<'UNIT'
[Unit]
Description=cri-dockerd-rs guest test run
After=docker.service network.target
Wants=docker.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/crid-in-guest
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
ExecStopPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/crid-guest-tests.service \
  "$rootfs/etc/systemd/system/multi-user.target.wants/crid-guest-tests.service"
# Nothing waits for a network the guest does not have, nor asks for a login.
rm -f "$rootfs/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-networkd-wait-online.service"
ln -sf /dev/null "$rootfs/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$rootfs/etc/systemd/system/apt-daily-upgrade.timer"
ln -sf /dev/null "$rootfs/etc/systemd/system/e2scrub_all.timer"
ln -sf /dev/null "$rootfs/etc/systemd/system/fstrim.timer"
# The image's own apt caches are of no use to a guest without a network.
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*

# --- the kernel and an initramfs of our own ---------------------------------
kernel=$(find "$rootfs/boot" -name 'vmlinuz-*' | sort | tail -1)
[ -n "$kernel" ] || die "no kernel in the image"
version=${kernel##*/vmlinuz-}
modules=$rootfs/lib/modules/$version
cp "$kernel" "$work/vmlinuz"

initrd=$work/initrd
mkdir -p "$initrd/bin" "$initrd/dev" "$initrd/proc" "$initrd/sys" "$initrd/newroot" "$initrd/modules"
cp /bin/busybox "$initrd/bin/busybox"
# The modules the disk needs, in the order modules.dep gives (each after
# what it depends on), decompressed: busybox's insmod takes plain .ko.
wanted=(virtio_pci virtio_blk ext4)
order=()
visit() {
  local name=$1 path dep
  path=$(awk -F: -v m="/$name.ko" 'index($1, m) {print $1; exit}' "$modules/modules.dep")
  [ -n "$path" ] || return 0     # built into the kernel
  for seen in "${order[@]:-}"; do [ "$seen" = "$path" ] && return 0; done
  local deps
  read -ra deps <<<"$(awk -F: -v p="$path" '$1 == p {print $2}' "$modules/modules.dep")"
  for dep in "${deps[@]}"; do
    dep=${dep##*/}; visit "${dep%%.ko*}"
  done
  order+=("$path")
}
for m in "${wanted[@]}" crc32c_generic; do visit "$m"; done
: >"$initrd/modules/order"
for path in "${order[@]}"; do
  base=${path##*/}; plain=${base%%.ko*}.ko
  case $base in
    *.ko.xz) xz -dc "$modules/$path" >"$initrd/modules/$plain" ;;
    *.ko.zst) zstd -qdc "$modules/$path" >"$initrd/modules/$plain" ;;
    *.ko.gz) gzip -dc "$modules/$path" >"$initrd/modules/$plain" ;;
    *) cp "$modules/$path" "$initrd/modules/$plain" ;;
  esac
  echo "$plain" >>"$initrd/modules/order"
done
cat >"$initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/modules/$m" 2>/dev/null || true; done </modules/order
for _ in $(seq 1 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; sleep 5; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
INIT
chmod 0755 "$initrd/init"
(cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img"

# --- the disk -----------------------------------------------------------------
log "making the ext4 image ($size)"
rm -f "$work/rootfs.img"
mkfs.ext4 -q -F -L crid-guest -d "$rootfs" "$work/rootfs.img" "$size" >&2
rm -rf "$rootfs" "$initrd"

rm -rf "$out"
mv "$work" "$out"
# Older builds are of no use once the inputs changed.
find "$state/guest" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" -exec rm -rf {} +
log "built: $out"
echo "$out"
