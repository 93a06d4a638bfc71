#!/usr/bin/env bash
# bench/metrics.sh: the cost of metrics on the request path, in one run.
# Starts two throw-away ipsrtd (SQLite in temp dirs): one with metrics off,
# one with `metrics.listen` on and scraped once a second (as Prometheus
# would). The load generator drives `ping` and `create` against each, in
# the order off, on, off, on, and the report gives each throughput and p99
# and the ratio on/off of the summed throughputs.
#
# Environment (all optional): BUILD_DIR (build/default), CONCURRENCY (32),
# DURATION (5s), WARMUP (1s), CHANNELS (2), THREADS (1), BENCH_TMPDIR,
# WORKFLOWS_DIR (workflows/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build/default}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CHANNELS="${CHANNELS:-2}"
THREADS="${THREADS:-1}"
WORKFLOWS_DIR="${WORKFLOWS_DIR:-$ROOT/workflows}"
IPSRTD="$BUILD_DIR/engine/ipsrtd"
LOADGEN="$BUILD_DIR/bench/ipsrt_loadgen"
BENCH_NAME=metrics.sh
source "$ROOT/bench/lib.sh"
bench_need "$IPSRTD" "$LOADGEN"

bench_begin ipsrt-metrics-bench
SCRAPER_PID=""
bench_on_exit() { [[ -z "$SCRAPER_PID" ]] || kill "$SCRAPER_PID" 2>/dev/null; }

# start NAME METRICS_YAML: an ipsrtd in $WORK/NAME (reminders off, logging
# at info for the metrics port line); prints nothing, sets SERVER_ADDR.
start() {
  BENCH_LOG_LEVEL=info bench_server_config "$WORK/$1/ipsrtd.yaml" \
    "$(printf '  sqlite:\n    path: db/ipsrt.db\n    synchronous: full\n')" \
    "$(printf 'reminders:\n  enabled: false\n%s' "$2")"
  bench_server_start "$WORK/$1/ipsrtd.yaml" "$WORK/$1/ipsrtd.log"
}

start off ""
OFF="$SERVER_ADDR"
start on "metrics:
  listen: 127.0.0.1:0"
ON="$SERVER_ADDR"
METRICS_PORT="$(bench_metrics_port "$WORK/on/ipsrtd.log")"
# A scrape a second, as a Prometheus server would (more often than the
# usual 15 s, so the scrape's own cost is included).
( while true; do curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null || true
    sleep 1; done ) &
SCRAPER_PID=$!

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
      t="$(bench_json_field "$j" throughput)"
      SUM[$rpc.$mode]="$(awk -v a="${SUM[$rpc.$mode]:-0}" -v b="$t" 'BEGIN { print a + b }')"
      echo "| $rpc | $round | $mode | $t | $(bench_json_field "$j" p99_ms) | $(bench_json_field "$j" errors) |"
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
