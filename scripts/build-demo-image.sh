#!/usr/bin/env bash
# Builds the demo service image: `mesh-demo-service` linked statically,
# alone in a FROM scratch image at /mesh-demo-service (its ENTRYPOINT).
#
#   scripts/build-demo-image.sh [TAG]      (default localhost/mesh-demo:latest)
#
# The binary is built into target/static (its own target dir, so the normal
# build is not invalidated by the different RUSTFLAGS). Podman settings:
# CONTAINERS_CONF and CONTAINERS_STORAGE_CONF are honoured when set; with no
# CONTAINERS_CONF, a containers.conf written to target/static/ is used, with
# runc and ulimits the sandbox allows (see ENVIRONMENT.md: crun fails on
# cgroups v1 hybrid hosts, and Podman's default ulimits are refused here).
# Re-running it is safe: same binary, same image; a replaced image is removed.
#
# Run the image:  podman run --rm -d -p 5555:5555 localhost/mesh-demo:latest
# Modes and settings through the environment: -e DEMO_MODE=memory
# -e DEMO_NAME=memory-a -v DIR:/data (memory mode keeps its log in /data;
# -e DEMO_MODE=sqlite keeps a SQLite database there instead).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TAG=${1:-localhost/mesh-demo:latest}
TARGET=x86_64-unknown-linux-gnu
STATIC_DIR="$ROOT/target/static"
BIN="$STATIC_DIR/$TARGET/release/mesh-demo-service"

mkdir -p "$STATIC_DIR"
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF="$STATIC_DIR/containers.conf"
  cat >"$CONTAINERS_CONF.tmp" <<'EOF'
# Written by scripts/build-demo-image.sh (used only when CONTAINERS_CONF is unset).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
EOF
  mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
fi
echo "== podman settings: CONTAINERS_CONF=$CONTAINERS_CONF${CONTAINERS_STORAGE_CONF:+ CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF}"

echo "== building mesh-demo-service statically ($TARGET, release) into $STATIC_DIR"
# --target keeps crt-static off build scripts and proc macros (host code).
# No debug info and stripped: the image holds nothing but this file.
CARGO_TARGET_DIR="$STATIC_DIR" \
  CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_STRIP=true \
  RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --target "$TARGET" -p mesh-demo-service

echo "== static check"
if command -v file >/dev/null 2>&1; then
  check=$(file -L "$BIN")
  echo "$check"
  case "$check" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "error: $BIN is not statically linked" >&2; exit 1 ;;
  esac
else
  check=$(ldd "$BIN" 2>&1 || true)
  echo "ldd: $check"
  case "$check" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) echo "error: $BIN is not statically linked" >&2; exit 1 ;;
  esac
fi

echo "== podman build $TAG (FROM scratch)"
context=$(mktemp -d "${TMPDIR:-/tmp}/mesh-demo-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
cp "$BIN" "$context/mesh-demo-service"
cat >"$context/Containerfile" <<'EOF'
FROM scratch
COPY mesh-demo-service /mesh-demo-service
EXPOSE 5555
ENTRYPOINT ["/mesh-demo-service"]
EOF
old_id=$(podman image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
# The binary's build time as the image's: rebuilding an unchanged binary
# (cargo leaves it untouched) gives the same image ID, not a new one.
podman build --quiet --layers=false --timestamp "$(stat -c %Y "$BIN")" --label org.opencontainers.image.title=mesh-demo-service \
  --tag "$TAG" --file "$context/Containerfile" "$context" >/dev/null
new_id=$(podman image inspect --format '{{.Id}}' "$TAG")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  # The previous build under this tag, unless something still uses it.
  podman rmi "$old_id" >/dev/null 2>&1 || true
fi

size=$(podman image inspect --format '{{.Size}}' "$TAG")
echo "== image $TAG"
echo "id:   ${new_id:0:12}"
echo "size: $size bytes ($(( (size + 1023) / 1024 )) KiB); binary $(stat -c %s "$BIN") bytes"
