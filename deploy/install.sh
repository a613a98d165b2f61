#!/usr/bin/env bash
# Installs the mesh on this host as system services: mesh-agent, mesh-coordinator and meshctl,
# their systemd units, a default configuration under /etc/mesh (never over an existing one),
# state under /var/lib/mesh, meshctl's shell completions and man pages.
#
#   sudo deploy/install.sh [--node NAME] [--coordinator HOST:7443]
#       [--prefix /usr/local] [--from DIR] [--destdir STAGE] [--no-systemctl]
#
# --from DIR     where the built binaries are (default target/release; built with cargo when
#                missing)
# --prefix P     binaries in P/bin, pages in P/share/man (default /usr/local; the .deb uses /usr)
# --destdir D    install into the staging tree D instead of / (packaging); implies --no-systemctl
# --node, --coordinator  fill in agent.toml (otherwise set them there before starting)
#
# Then: join (`sudo mesh-agent --config /etc/mesh/agent.toml join ...`, README "Running on two
# real PCs") and `sudo systemctl enable --now mesh-agent` (and mesh-coordinator on one host).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local from=target/release destdir="" node="" coordinator="" systemctl=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --destdir) destdir=$2; systemctl=0; shift 2 ;;
    --node) node=$2; shift 2 ;;
    --coordinator) coordinator=$2; shift 2 ;;
    --no-systemctl) systemctl=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute, not '$prefix'" >&2; exit 2 ;; esac
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (it writes $prefix, /etc/mesh, /var/lib/mesh), or use --destdir" >&2
  exit 1
fi

bins=(mesh-agent mesh-coordinator meshctl)
missing=0
for b in "${bins[@]}"; do [ -x "$from/$b" ] || missing=1; done
if [ "$missing" = 1 ]; then
  if [ "$from" = target/release ] && command -v cargo >/dev/null; then
    cargo build --release --bin mesh-agent --bin mesh-coordinator --bin meshctl
  else
    echo "install.sh: $from lacks ${bins[*]}; build them (cargo build --release) or pass --from DIR" >&2
    exit 1
  fi
fi

root=${destdir%/}
bindir=$prefix/bin
if [ "$prefix" = /usr ]; then unitdir=/lib/systemd/system; else unitdir=/etc/systemd/system; fi
mandir=$prefix/share/man/man1

install -d -m 0755 "$root$bindir" "$root$unitdir" "$root$mandir" \
  "$root$prefix/share/bash-completion/completions" "$root$prefix/share/zsh/vendor-completions" \
  "$root$prefix/share/fish/vendor_completions.d"
install -d -m 0755 "$root/etc/mesh"
install -d -m 0700 "$root/etc/mesh/certs" "$root/var/lib/mesh"
for b in "${bins[@]}"; do install -m 0755 "$from/$b" "$root$bindir/$b"; done

for unit in mesh-agent mesh-coordinator; do
  sed "s#@BINDIR@#$bindir#g" "deploy/systemd/$unit.service.in" >"$root$unitdir/$unit.service"
  chmod 0644 "$root$unitdir/$unit.service"
done

# The configuration is the user's once written: an existing file is left alone.
fill() {
  local key=$1 value=$2 example=$3
  if [ -n "$value" ]; then
    sed "s#^$key = \"@[A-Z]*@\"#$key = \"$value\"#"
  else
    sed "s#^$key = \"@[A-Z]*@\"#\# $key = \"$example\"  (set this before starting the agent)#"
  fi
}
for conf in agent coordinator; do
  dest="$root/etc/mesh/$conf.toml"
  if [ -e "$dest" ]; then
    echo "kept $dest (it exists; the new default is deploy/etc/$conf.toml)"
  else
    fill node "$node" pc2 <"deploy/etc/$conf.toml" | fill coordinator "$coordinator" 192.168.1.10:7443 >"$dest"
    chmod 0644 "$dest"
  fi
done

"$root$bindir/meshctl" completions bash >"$root$prefix/share/bash-completion/completions/meshctl"
"$root$bindir/meshctl" completions zsh >"$root$prefix/share/zsh/vendor-completions/_meshctl"
"$root$bindir/meshctl" completions fish >"$root$prefix/share/fish/vendor_completions.d/meshctl.fish"
"$root$bindir/meshctl" man --dir "$root$mandir" >/dev/null

if [ "$systemctl" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "installed mesh-agent, mesh-coordinator, meshctl in $root$bindir; units in $root$unitdir"
if [ -z "$destdir" ]; then
  cat <<NEXT
next:
  sudo systemctl enable --now podman.socket
  sudo mesh-agent --config /etc/mesh/agent.toml join COORDINATOR:7443 --token TOKEN --name NAME --no-start
  sudo systemctl enable --now mesh-agent          # and mesh-coordinator on the coordinator's host
  journalctl -u mesh-agent -f
NEXT
fi
