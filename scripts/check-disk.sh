#!/usr/bin/env bash
# Refuses to start a build that cannot fit: a cold build of the workspace
# and its tests takes about 4 GB under target/. Failing here names the
# cause; failing later is a linker "Bus error" or "No space left on device"
# halfway through.
set -euo pipefail
cd "$(dirname "$0")/.."
need_gb="${MESH_BUILD_DISK_GB:-6}"
mkdir -p target
free_kb=$(df -Pk target | awk 'NR == 2 { print $4 }')
free_gb=$((free_kb / 1024 / 1024))
used=$(du -sh target 2>/dev/null | cut -f1)
echo "== disk: ${free_gb} GB free for target/ (target/ holds ${used}; a cold build needs about ${need_gb} GB)"
if [ "$free_gb" -lt "$need_gb" ]; then
    echo "error: only ${free_gb} GB free on the disk that holds target/; the build needs about ${need_gb} GB." >&2
    echo "       Free space (for example 'cargo clean', which drops target/) or set MESH_BUILD_DISK_GB to override." >&2
    exit 1
fi
