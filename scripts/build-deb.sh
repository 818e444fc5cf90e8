#!/bin/bash
# Builds the Debian package from a built binary, offline, with dpkg-deb:
#   scripts/build-deb.sh BINARY OUT_DIR
# The package holds /usr/bin/cri-dockerd-rs, the systemd units of
# packaging/systemd/ under /lib/systemd/system/, the maintainer scripts of
# packaging/debian/ and the copyright file. It prints the .deb's path.
set -euo pipefail

binary=${1:?usage: build-deb.sh BINARY OUT_DIR}
out=${2:?usage: build-deb.sh BINARY OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)
[ -x "$binary" ] || { echo "build-deb.sh: $binary is not an executable" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
  "$stage/usr/share/doc/cri-dockerd-rs"
# Debug info stays in the build tree; the node gets the stripped binary.
install -m 0755 "$binary" "$stage/usr/bin/cri-dockerd-rs"
strip --strip-unneeded "$stage/usr/bin/cri-dockerd-rs"
install -m 0644 "$repo/packaging/systemd/cri-docker.service" \
  "$repo/packaging/systemd/cri-docker.socket" "$stage/lib/systemd/system/"
install -m 0644 "$repo/packaging/debian/copyright" "$stage/usr/share/doc/cri-dockerd-rs/"
for script in postinst prerm postrm; do
  install -m 0755 "$repo/packaging/debian/$script" "$stage/DEBIAN/$script"
done

# The newest glibc symbol version the binary needs, as dpkg-shlibdeps
# would state it (that tool needs a source package around it).
glibc=$(objdump -T "$stage/usr/bin/cri-dockerd-rs" | grep -o 'GLIBC_[0-9][0-9.]*' \
  | sed 's/GLIBC_//' | sort -u -V | tail -n1)
[ -n "$glibc" ] || { echo "build-deb.sh: no glibc symbol versions in $binary" >&2; exit 1; }
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
  -e "s/@LIBC@/libc6 (>= $glibc)/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
  "$repo/packaging/debian/control.in" > "$stage/DEBIAN/control"

mkdir -p "$out"
deb="$out/cri-dockerd-rs_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
