#!/usr/bin/env bash
# bench/metrics.sh: the cost of metrics on the request path, in one run.
# Starts two throw-away ipsrtd (SQLite in temp dirs): one with metrics off,
# one with `metrics.listen` on and scraped once a second (as Prometheus
# would). The load generator drives `ping` and `create` against each, in
# the order off, on, off, on, and the report gives each throughput and p99
# and the ratio on/off of the summed throughputs.
#
# Environment (all optional): BUILD_DIR (build/default), CONCURRENCY (32),
# DURATION (5s), WARMUP (1s), CHANNELS (2), THREADS (1), BENCH_TMPDIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build/default}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CHANNELS="${CHANNELS:-2}"
THREADS="${THREADS:-1}"
IPSRTD="$BUILD_DIR/engine/ipsrtd"
LOADGEN="$BUILD_DIR/bench/ipsrt_loadgen"
for bin in "$IPSRTD" "$LOADGEN"; do
  [[ -x "$bin" ]] || { echo "metrics.sh: $bin is missing; build first" >&2; exit 1; }
done

WORK="$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/ipsrt-metrics-bench.XXXXXX")"
PIDS=()
SCRAPER_PID=""
cleanup() {
  local rc=$?
  [[ -n "$SCRAPER_PID" ]] && kill "$SCRAPER_PID" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME METRICS_YAML: an ipsrtd in $WORK/NAME; prints its port.
start() {
  local dir="$WORK/$1"
  mkdir -p "$dir"
  cat >"$dir/ipsrtd.yaml" <<EOF
server:
  listen: 127.0.0.1:0
store:
  sqlite:
    path: db/ipsrt.db
    synchronous: full
workflows:
  directories: ["$ROOT/workflows"]
logging:
  level: info
reminders:
  enabled: false
plugins:
  - path: libipsrt_core_instruments.so
$2
EOF
  "$IPSRTD" --config="$dir/ipsrtd.yaml" --port_file="$dir/port" \
    >"$dir/ipsrtd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 150); do
    [[ -s "$dir/port" ]] && break
    sleep 0.1
  done
  [[ -s "$dir/port" ]] || { cat "$dir/ipsrtd.log" >&2; exit 1; }
}

start off ""
start on "metrics:
  listen: 127.0.0.1:0"
OFF="127.0.0.1:$(cat "$WORK/off/port")"
ON="127.0.0.1:$(cat "$WORK/on/port")"
METRICS_PORT="$(sed -n 's/.*serving \/metrics on 127.0.0.1:\([0-9]*\).*/\1/p' \
  "$WORK/on/ipsrtd.log")"
[[ -n "$METRICS_PORT" ]] || { echo "metrics.sh: no metrics port" >&2; exit 1; }
# A scrape a second, as a Prometheus server would (more often than the
# usual 15 s, so the scrape's own cost is included).
( while true; do curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null || true
    sleep 1; done ) &
SCRAPER_PID=$!

json_field() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" <<<"$1"; }
load() {
  "$LOADGEN" --server="$1" --rpc="$2" --concurrency="$CONCURRENCY" \
    --duration="$DURATION" --warmup="$WARMUP" --channels="$CHANNELS" \
    --threads="$THREADS" --json
}

declare -A SUM
LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "## Metrics overhead"
echo
echo "| rpc | round | metrics | calls/s | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
for rpc in ping create; do
  for round in 1 2; do
    for mode in off on; do
      target="$OFF"; [[ "$mode" == on ]] && target="$ON"
      j="$(load "$target" "$rpc")"
      t="$(json_field "$j" throughput)"
      SUM[$rpc.$mode]="$(awk -v a="${SUM[$rpc.$mode]:-0}" -v b="$t" 'BEGIN { print a + b }')"
      echo "| $rpc | $round | $mode | $t | $(json_field "$j" p99_ms) | $(json_field "$j" errors) |"
    done
  done
done
LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
SAMPLE="$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
  grep -c '^ipsrt_' || true)"
echo
for rpc in ping create; do
  awk -v rpc="$rpc" -v on="${SUM[$rpc.on]}" -v off="${SUM[$rpc.off]}" \
    'BEGIN { printf "- %s: throughput with metrics / without = %.3f\n", rpc, (off > 0 ? on / off : 0) }'
done
echo "- ipsrt_ series lines in the last scrape: $SAMPLE"
echo "- load average (1/5/15 min): before $LOADAVG_BEFORE, after $LOADAVG_AFTER"
echo "- $CONCURRENCY outstanding calls, $WARMUP warm-up + $DURATION per row, $(nproc) CPU(s)"
