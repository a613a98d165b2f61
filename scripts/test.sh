#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the
# tests need, checks formatting and lints, builds the binaries the
# multi-host tests run, then runs every test. Run as root: the multi-host
# tests create network namespaces (with CI=true they fail rather than skip
# when they cannot).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# One clean build: incremental compilation state would only cost disk
# (several GB for this workspace) on a machine that builds once.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
scripts/check-disk.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
# The demo service image the topology tests run (in the system image store).
scripts/build-demo-image.sh

# cargo prints one result line per test binary (the last is often an empty
# doc-test run); end with the total so the outcome is one line.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# The bridge crate's tests once more with tunnels dialled over QUIC (the
# default is TLS over TCP; both stay supported).
MESH_TEST_TUNNEL_TRANSPORT=quic cargo test -p mesh-bridge 2>&1 | tee -a "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
