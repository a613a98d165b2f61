#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the
# tests need, checks formatting and lints, builds the binaries the
# multi-host tests run, then runs every test. Run as root: the multi-host
# tests create network namespaces (with CI=true they fail rather than skip
# when they cannot).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace
