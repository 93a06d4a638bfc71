#!/usr/bin/env bash
# bench/diagnose.sh: where a durable call's time goes, per RPC, before a
# profile. For each RPC it starts a fresh throw-away ipsrtd (SQLite,
# synchronous=FULL, metrics on), warms it up, then runs one closed-loop
# load window and reads, over exactly that window:
#   - the load generator's calls/s and latency;
#   - ipsrtd's CPU per call (/proc/PID/stat utime+stime) and the bytes it
#     wrote per call (/proc/PID/io wchar: WAL frames, checkpoint copies,
#     temp files);
#   - how idle the whole machine was (/proc/stat; the load generator
#     shares it);
#   - the group commits (ipsrt_store_commit_batch_size and
#     ipsrt_store_commit_seconds from /metrics): commits/s, mean group,
#     mean commit time (its SQL, COMMIT and the WAL's fsync);
#   - each named thread's share of the window on a CPU and waiting for one
#     (/proc/PID/task/TID/schedstat), the store's writer first: a writer
#     near 100 % on-CPU plus waiting is the bottleneck; gRPC's threads are
#     summed as "other".
# One markdown table per run. Nothing is timed against a target. The
# counters span the load generator's whole run, set-up included (for get
# and event it first creates its 200 enrollments): a few per cent of a
# 5 s window's calls.
#
# Environment (all optional):
#   BUILD_DIR    build tree (default build/default)
#   IPSRTD       the server binary (default BUILD_DIR/engine/ipsrtd); a
#                variant to compare must sit in the same directory, where
#                it finds its plugins
#   RPCS         RPCs to drive (default "ping get event create")
#   CONCURRENCY  outstanding calls (32), CHANNELS (2)
#   DURATION     measured window (5s), WARMUP (2s, its own run)
#   BENCH_TMPDIR parent of the temp dir (default $TMPDIR or /tmp)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build/default}"
IPSRTD="${IPSRTD:-$BUILD_DIR/engine/ipsrtd}"
LOADGEN="$BUILD_DIR/bench/ipsrt_loadgen"
WORKFLOWS_DIR="${WORKFLOWS_DIR:-$ROOT/workflows}"
RPCS="${RPCS:-ping get event create}"
CONCURRENCY="${CONCURRENCY:-32}"
CHANNELS="${CHANNELS:-2}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-2s}"

BENCH_NAME=diagnose.sh
source "$ROOT/bench/lib.sh"
bench_need "$IPSRTD" "$LOADGEN"
bench_begin ipsrt-diagnose

# snapshot PID METRICS_PORT: one line of counters, then one line per
# thread "tid name run_ns wait_ns".
snapshot() {
  local pid="$1" port="$2" t
  local cpu wchar idle total
  cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wchar=$(awk '/^wchar/ {print $2}' "/proc/$pid/io")
  read -r _ u n s i w x y z _ </proc/stat
  idle=$((i + w))
  total=$((u + n + s + i + w + x + y + z))
  local m
  m=$(curl -sf "http://127.0.0.1:$port/metrics")
  local batch_sum batch_n secs_sum
  batch_sum=$(awk '/^ipsrt_store_commit_batch_size_sum/ {print $2}' <<<"$m")
  batch_n=$(awk '/^ipsrt_store_commit_batch_size_count/ {print $2}' <<<"$m")
  secs_sum=$(awk '/^ipsrt_store_commit_seconds_sum/ {print $2}' <<<"$m")
  echo "totals $cpu $wchar $idle $total ${batch_sum:-0} ${batch_n:-0} ${secs_sum:-0}"
  for t in /proc/"$pid"/task/*; do
    local name run wait
    name=$(tr ' ' '_' <"$t/comm" 2>/dev/null) || continue
    read -r run wait _ <"$t/schedstat" 2>/dev/null || continue
    echo "thread ${t##*/} $name $run $wait"
  done
}

echo "## Where the time goes (bench/diagnose.sh)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $IPSRTD;" \
  "$CONCURRENCY outstanding calls on $CHANNELS channels, $WARMUP warm-up run, then a" \
  "$DURATION window; SQLite, synchronous=FULL, a fresh server per RPC."
echo
echo "| RPC | calls/s | p50 ms | p99 ms | server CPU µs/call | server cores | KB written/call | machine idle | commits/s | mean group | mean commit ms | store-writer on CPU / waiting | store-answers on CPU / waiting | other threads on CPU / waiting |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for rpc in $RPCS; do
  BENCH_LOG_LEVEL=info bench_server_config "$WORK/$rpc.yaml" \
    "$(printf '  kind: sqlite\n  sqlite:\n    path: %s\n    synchronous: full\n' "$WORK/$rpc.db")" \
    "$(printf 'metrics:\n  listen: 127.0.0.1:0')"
  bench_server_start "$WORK/$rpc.yaml" "$WORK/$rpc.log"
  pid=$SERVER_PID
  port="$(bench_metrics_port "$WORK/$rpc.log")"
  "$LOADGEN" --server="$SERVER_ADDR" --rpc="$rpc" --concurrency="$CONCURRENCY" \
    --channels="$CHANNELS" --duration="$WARMUP" --warmup=0s --json >/dev/null
  snapshot "$pid" "$port" >"$WORK/before"
  load="$("$LOADGEN" --server="$SERVER_ADDR" --rpc="$rpc" --concurrency="$CONCURRENCY" \
    --channels="$CHANNELS" --duration="$DURATION" --warmup=0s --json)"
  snapshot "$pid" "$port" >"$WORK/after"
  bench_server_stop "$pid" "$WORK/$rpc.log"
  SERVER_PID=""
  python3 - "$rpc" "$load" "$WORK/before" "$WORK/after" "$(getconf CLK_TCK)" <<'PY'
import json, sys
rpc, load, before, after, hz = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def read(path):
    totals, threads = None, {}
    for line in open(path):
        f = line.split()
        if f[0] == "totals":
            totals = [float(x) for x in f[1:]]
        else:
            threads[f[1]] = (f[2], int(f[3]), int(f[4]))
    return totals, threads
(t0, th0), (t1, th1) = read(before), read(after)
window = load["duration_s"]
calls = load["completed"]
cpu_s = (t1[0] - t0[0]) / hz
idle = (t1[2] - t0[2]) / max(t1[3] - t0[3], 1)
commits = t1[5] - t0[5]
group = (t1[4] - t0[4]) / commits if commits else 0
commit_ms = 1000 * (t1[6] - t0[6]) / commits if commits else 0
share = {}
for tid, (name, run, wait) in th1.items():
    r0, w0 = th0.get(tid, (name, 0, 0))[1:]
    key = name if name in ("store-writer", "store-answers") else "other"
    a = share.setdefault(key, [0.0, 0.0])
    a[0] += (run - r0) / 1e9 / window
    a[1] += (wait - w0) / 1e9 / window
def pair(key):
    if key not in share:
        return "n/a"
    run, wait = share[key]
    return "%.0f %% / %.0f %%" % (100 * run, 100 * wait)
print("| %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.1f | %.0f %% | %.0f | %.1f | %.2f | %s | %s | %s |" % (
    rpc, load["throughput"], load["p50_ms"], load["p99_ms"],
    1e6 * cpu_s / max(calls, 1), cpu_s / window,
    (t1[1] - t0[1]) / 1024 / max(calls, 1), 100 * idle,
    commits / window, group, commit_ms,
    pair("store-writer"), pair("store-answers"), pair("other")))
PY
done
echo
echo "On CPU / waiting: the share of the window each thread (summed for" \
  "\"other\": gRPC's, the checkpointer, the probes) spent running and runnable" \
  "but waiting for a CPU. Commits and groups count audit-only commits too" \
  "(every read appends its audit record before it is answered)."
