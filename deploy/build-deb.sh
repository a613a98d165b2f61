#!/usr/bin/env bash
# Builds a Debian/Ubuntu package of the mesh (binaries in /usr/bin, systemd units, default
# configuration in /etc/mesh as conffiles, completions, man pages) with dpkg-deb, staged by
# install.sh, so the package and a direct install are the same files.
#
#   deploy/build-deb.sh [--from DIR] [--out DIR]
#
# --from DIR  the built binaries (default target/release, built with cargo when missing)
# --out DIR   where the .deb goes (default target/deb); prints its path
# Install it with `sudo apt install ./target/deb/mesh_VERSION_ARCH.deb`.
set -euo pipefail
cd "$(dirname "$0")/.."

from=target/release out=target/deb
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb is missing (apt install dpkg)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d -t mesh-deb.XXXXXX)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT

deploy/install.sh --destdir "$stage" --prefix /usr --from "$from" >/dev/null
install -d -m 0755 "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: mesh
Version: $version
Architecture: $arch
Maintainer: mesh developers <mesh@localhost>
Section: admin
Priority: optional
Depends: podman, fuse3, e2fsprogs, iproute2
Recommends: runc
Installed-Size: $(du -sk "$stage" | cut -f1)
Description: container mesh for AI systems across several PCs
 A node agent per host (Podman containers, health, GPUs via NVML, ZeroMQ
 bridges over mutual TLS, replicated volumes), a coordinator (placement,
 rollouts, automatic failover) and meshctl, as systemd services.
CONTROL
printf '/etc/mesh/agent.toml\n/etc/mesh/coordinator.toml\n' >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
echo "mesh: join this host (mesh-agent --config /etc/mesh/agent.toml join ...), then systemctl enable --now mesh-agent"
POSTINST
cat >"$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/mesh_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
