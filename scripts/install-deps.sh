#!/usr/bin/env bash
# Installs what the mesh's build, tests and demo need on a fresh Debian 12
# machine (run as root). Safe to run again: it installs only what is missing.
#   iproute2    - `ip netns`, veth and bridges for the simulated hosts
#   util-linux  - nsenter, to run processes inside a host's namespace
#   gcc, pkg-config - C parts of ring (TLS crypto)
#   podman, runc - the container runtime the agents drive (crun, Debian's
#                  default, fails on this cgroups-v1 hybrid setup; the
#                  runtime stays configurable for real machines)
#   busybox-static - a static userland for tiny test images (no registry here)
#   procps      - pkill, used by the test harness to reap Podman helpers
#   fuse3       - fusermount3, to unmount a volume's FUSE server by hand
#                 (the agent, as root, mounts and unmounts without it)
#   e2fsprogs   - mkfs.ext4 and e2fsck for the ext4 on a volume's image
#   libfaketime - steps one agent's wall clock in the lease test
#   curl        - scrapes the coordinator's /metrics in the tests
#   prometheus  - the real Prometheus server scrapes a test mesh
#   chromium    - headless, loads the coordinator's web dashboard in a test
#   socat       - the demo forwards its dashboard from mainpc's namespace to
#                 this machine's localhost
#   python3-zmq - libzmq itself (pyzmq), talking to the bridge's own ZMTP in
#                 a test
#   systemd     - systemd-analyze verifies the units deploy/install.sh
#                 installs; systemd-socket-activate starts Podman the way
#                 podman.socket does in a test
#   dpkg        - dpkg-deb builds and reads the .deb (deploy/build-deb.sh)
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v pkill >/dev/null 2>&1 || need+=(procps)
command -v tar >/dev/null 2>&1 || need+=(tar)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || need+=(e2fsprogs)
compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null || need+=(libfaketime)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v socat >/dev/null 2>&1 || need+=(socat)
/usr/bin/python3 -c 'import zmq' >/dev/null 2>&1 || need+=(python3-zmq)
{ command -v systemd-analyze && command -v systemd-socket-activate; } >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # With recommends, as verified on these machines: podman's network
  # stack (netavark) is only a recommendation of its dependencies.
  apt-get install -y -q "${need[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
echo "install-deps: ok"
