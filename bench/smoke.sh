#!/usr/bin/env bash
# bench/smoke.sh: every bench script once, with the smallest settings, so a
# change that breaks a script or a bench tool fails ctest (bench.ScriptsRun)
# instead of the next `make bench`. The figures are not looked at (far too
# short to mean anything); each script must exit 0 and print its table.
#
# Environment: BUILD_DIR (the build tree, required by ctest), BENCH_TMPDIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$ROOT/build/default}"
OUT="$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/ipsrt-bench-smoke.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

# check NAME TABLE_HEADER ENV... : runs bench/NAME.sh with ENV and fails
# unless it exits 0 and its report holds TABLE_HEADER.
check() {
  local name="$1" header="$2"
  shift 2
  echo "smoke: $name.sh $*" >&2
  if ! env "$@" bash "$ROOT/bench/$name.sh" >"$OUT/$name.out" 2>"$OUT/$name.err"; then
    echo "smoke: $name.sh failed:" >&2
    tail -20 "$OUT/$name.err" >&2
    exit 1
  fi
  if ! grep -qF -- "$header" "$OUT/$name.out"; then
    echo "smoke: $name.sh printed no '$header':" >&2
    cat "$OUT/$name.out" >&2
    exit 1
  fi
}

check run "| SubmitEvent / Ping (calls/s) |" DURATION=1s WARMUP=0s SQLITE_DURATION=1s
# The scale section alone, on tiny sets built in $OUT (removed with it).
check run "| ipsrtd RSS in MB, idle on 300 enrollments" SCALE_ONLY=1 \
  SCALE_ENROLLMENTS=300 SCALE_SMALL=100 SCALE_ROUNDS=1 DURATION=1s WARMUP=0s \
  BENCH_TMPDIR="$OUT"
check stores "| PostgreSQL 1 replica / SQLite |" DURATION=1s WARMUP=0s
check footprint "| bytes per event |" CREATES=20 EVENTS=20 THREADS=2
check metrics "throughput with metrics / without" DURATION=1s WARMUP=0s
check simulate "| course | events |" PEER=0 PROFILE=0 DURATION=0.2s YEARS=1
check diagnose "| RPC | calls/s |" RPCS="ping event" DURATION=1s WARMUP=1s
echo "smoke: every bench script ran" >&2
