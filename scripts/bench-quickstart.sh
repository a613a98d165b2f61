#!/usr/bin/env bash
# Times the README's quick start as a new user meets it: a fresh clone of
# this repository's HEAD, a cold cargo cache (its own CARGO_HOME: every
# crate downloaded from crates.io and built), then
#   1. scripts/demo.sh (DEMO_HOLD=0): time until the demo mesh is up (the
#      users' system applied, 14 containers healthy) and until it is done;
#   2. scripts/test.sh: the whole test command, in the same clone (the demo
#      built release binaries; the tests build debug ones).
# Prints each phase's wall time and keeps the logs. Run as root on an idle
# machine; the timings are meaningless while other builds share the CPU.
#
#   scripts/bench-quickstart.sh [--demo-only]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
demo_only=${1:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/mesh-quickstart.XXXXXX")
echo "== fresh clone of $(git -C "$src" rev-parse --short HEAD) in $work/mesh; cold CARGO_HOME $work/cargo"
git clone -q "$src" "$work/mesh"
export CARGO_HOME="$work/cargo"
cd "$work/mesh"

now_us() { echo "${EPOCHREALTIME/./}"; }
# Seconds since $1 (microseconds), with one decimal.
since() { local d=$(( ($(now_us) - $1) / 100000 )); printf '%d.%d' $((d / 10)) $((d % 10)); }
# Each line of a command's output, stamped with seconds since $1.
stamp() {
  local start=$1 line
  while IFS= read -r line; do
    printf '%7s %s\n' "$(since "$start")" "$line"
  done
}

start=$(now_us)
set +e
DEMO_HOLD=0 scripts/demo.sh 2>&1 | stamp "$start" >"$work/demo.log"
demo_status=${PIPESTATUS[0]}
set -e
demo_end=$(since "$start")
# The mesh is up once the apply has finished: the next step is its status.
up=$(awk '/== meshctl place --apply/ { applying = 1; next } applying && /== meshctl status/ { print $1; exit }' "$work/demo.log")
echo "demo: exit $demo_status; mesh up at ${up:-?} s; done at $demo_end s (log $work/demo.log)"
[ "$demo_status" = 0 ] || { tail -30 "$work/demo.log"; exit 1; }
[ "$demo_only" = "--demo-only" ] && exit 0

start=$(now_us)
set +e
scripts/test.sh 2>&1 | stamp "$start" >"$work/test.log"
test_status=${PIPESTATUS[0]}
set -e
test_end=$(since "$start")
echo "tests: exit $test_status in $test_end s: $(grep -E '^ *[0-9.]+ tests: ' "$work/test.log" | tail -1 | cut -c9-) (log $work/test.log)"
exit "$test_status"
