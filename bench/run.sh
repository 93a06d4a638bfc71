#!/usr/bin/env bash
# bench/run.sh: one benchmark run of ipsrtd on this machine (see
# bench/README.md). Starts a throw-away ipsrtd (SQLite in a temp dir) on a
# free loopback port, drives Ping, CreateEnrollment, GetEnrollment and
# SubmitEvent with ipsrt_loadgen (closed loop), then SubmitEvent and Ping
# paced at half SubmitEvent's peak rate (latency at a load the server can
# carry), measures SQLite's raw insert rate for the same rows on the same
# filesystem, optionally profiles the server (PROFILE=1) and measures scale
# with data (SCALE_ENROLLMENTS), stops every server it started and prints
# one markdown report with the ratios and their targets.
#
# Environment (all optional):
#   BUILD_DIR     build tree with the binaries (default: build/default)
#   CONCURRENCY   outstanding calls per load run (default 32)
#   DURATION      measurement window per load run (default 10s)
#   WARMUP        warm-up per load run (default 2s)
#   CHANNELS      client channels (default 2)
#   THREADS       client polling threads (default 1)
#   SQLITE_DURATION  length of each raw SQLite run (default 5s)
#   MAX_BATCH     batch size for the group-commit ceiling run (default: the
#                 server's store.sqlite.max_batch in the generated config)
#   BENCH_TMPDIR  parent of the temp dir (default: $TMPDIR or /tmp); the
#                 database lives here, so put it on the filesystem to test.
#   WORKFLOWS_DIR workflow templates the server loads (default: workflows/)
#   PROFILE       1: also record `perf record -g` of ipsrtd under SubmitEvent
#                 and GetEnrollment load (extra runs, not the measured ones)
#                 and print the top entries (default 0; needs perf)
#   SCALE_ENROLLMENTS  N > 0: also measure SubmitEvent/s on a store holding
#                 N enrollments against one holding SCALE_SMALL (10000), and
#                 ipsrtd's idle RSS on the N-enrollment store. The stores
#                 are built (or reused) by ipsrt_datagen under
#                 $BENCH_TMPDIR/ipsrt-bench-data; remove them with
#                 `make bench-clean` (default 0: skipped)
#   SCALE_ROUNDS  rounds of the scale section (default 2): each round runs
#                 one SubmitEvent window on each set, alternating the order
#   SCALE_ONLY    1: run the scale section alone (needs SCALE_ENROLLMENTS)
#                 and print its two ratios; the other runs are skipped
#   BENCH_SOURCE  what the binaries were built from, for the report
#                 (default: this checkout's short commit, marked when the
#                 working tree has uncommitted changes)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="${BUILD_DIR:-build/default}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CHANNELS="${CHANNELS:-2}"
THREADS="${THREADS:-1}"
SQLITE_DURATION="${SQLITE_DURATION:-5s}"
WORKFLOWS_DIR="${WORKFLOWS_DIR:-$ROOT/workflows}"
SERVER_MAX_BATCH=256
MAX_BATCH="${MAX_BATCH:-$SERVER_MAX_BATCH}"
PROFILE="${PROFILE:-0}"
SCALE_ENROLLMENTS="${SCALE_ENROLLMENTS:-0}"
SCALE_SMALL="${SCALE_SMALL:-10000}"
SCALE_ONLY="${SCALE_ONLY:-0}"
SCALE_ROUNDS="${SCALE_ROUNDS:-2}"

IPSRTD="$BUILD_DIR/engine/ipsrtd"
LOADGEN="$BUILD_DIR/bench/ipsrt_loadgen"
SQLITE_BENCH="$BUILD_DIR/bench/ipsrt_sqlite_insert_bench"
DATAGEN="$BUILD_DIR/bench/ipsrt_datagen"
for bin in "$IPSRTD" "$LOADGEN" "$SQLITE_BENCH" "$DATAGEN"; do
  if [[ ! -x "$bin" ]]; then
    echo "run.sh: $bin is missing; build first (make build, or cmake --build" \
      "$BUILD_DIR --target ipsrtd ipsrt_loadgen ipsrt_sqlite_insert_bench" \
      "ipsrt_datagen)" >&2
    exit 1
  fi
done

BENCH_NAME=run.sh
source "$ROOT/bench/lib.sh"
bench_begin ipsrt-bench
SERVER_PID=""
PERF_PID=""
# Stops a perf recording still running before the servers stop.
bench_on_exit() {
  if [[ -n "$PERF_PID" ]] && kill -0 "$PERF_PID" 2>/dev/null; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
  fi
}

# write_config FILE DB writes a server config using the SQLite file DB
# (relative to FILE's directory).
write_config() {
  bench_server_config "$1" "$(printf '  kind: sqlite\n  sqlite:\n    path: %s\n    synchronous: full\n    max_batch: %s\n' "$2" "$SERVER_MAX_BATCH")"
}

# start_server CONFIG LOG starts ipsrtd and waits (at most 60 s) for it to
# serve; sets SERVER_PID and TARGET.
start_server() {
  bench_server_start "$1" "$2"
  TARGET="$SERVER_ADDR"
}

# stop_server LOG stops ipsrtd with SIGTERM; a non-zero exit fails the run.
stop_server() {
  bench_server_stop "$SERVER_PID" "$1"
  SERVER_PID=""
}

# load RPC [RATE] runs one loadgen window: closed loop, or paced at RATE
# calls/s (latency from each call's scheduled start).
load() {
  echo "run.sh: loadgen --rpc=$1 --rate=${2:-0} ($CONCURRENCY outstanding," \
    "$WARMUP warm-up + $DURATION)" >&2
  "$LOADGEN" --server="$TARGET" --rpc="$1" --concurrency="$CONCURRENCY" \
    --duration="$DURATION" --warmup="$WARMUP" --channels="$CHANNELS" \
    --threads="$THREADS" --rate="${2:-0}" --json
}

# profile RPC NAME records ipsrtd under one more (unmeasured) load run of
# RPC and prints perf's top entries (self time, by library and symbol).
profile() {
  local data="$WORK/perf-$2.data"
  perf record -q -g -p "$SERVER_PID" -o "$data" >/dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.5
  load "$1" >/dev/null
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  perf report -i "$data" --stdio --no-children -g none \
    --sort dso,symbol 2>/dev/null |
    awk -v n="${PROFILE_TOP:-15}" '/^ +[0-9]/ && c++ < n {
      sub(/[ -]+$/, ""); gsub(/   +/, "  "); print }'  # reads all: no SIGPIPE
}

# scale_section: scale with data. The same SubmitEvent load on a store of
# SCALE_SMALL and one of SCALE_ENROLLMENTS enrollments (sets built or
# reused by ipsrt_datagen outside the repository), and ipsrtd's idle RSS
# on the large one. One server per set, both started before any load; the
# load windows alternate between them in SCALE_ROUNDS rounds (small then
# large, large then small, ...), so that a change in the machine's load
# during the section falls on both alike. Each window adds its load's
# enrollments and events to the set (the small one is rebuilt every run). Sets SCALE_SMALL_RATES and
# SCALE_BIG_RATES (calls/s of each window), SCALE_RSS_KB, SCALE_DB_MB.
SCALE_SMALL_RATES="" SCALE_BIG_RATES="" SCALE_RSS_KB="" SCALE_DB_MB=""
scale_section() {
  [[ "$SCALE_ENROLLMENTS" -gt 0 ]] || return 0
  local n db r which rate small_pid big_pid small_addr big_addr
  for n in "$SCALE_ENROLLMENTS" "$SCALE_SMALL"; do
    echo "run.sh: data set of $n enrollments (ipsrt_datagen)" >&2
    # The small set is built afresh (seconds), so that the events earlier
    # runs added never make the baseline a larger store than it says.
    if [[ "$n" == "$SCALE_SMALL" && "$n" != "$SCALE_ENROLLMENTS" ]]; then
      "$DATAGEN" --enrollments="$n" --clean 2>/dev/null
    fi
    db="$("$DATAGEN" --enrollments="$n" --workflows="$WORKFLOWS_DIR")"
    write_config "$WORK/scale-$n.yaml" "$db"
    start_server "$WORK/scale-$n.yaml" "$WORK/scale-$n.log"
    if [[ "$n" == "$SCALE_ENROLLMENTS" ]]; then
      big_pid="$SERVER_PID" big_addr="$TARGET"
      sleep 3  # idle: started, nothing asked yet
      SCALE_RSS_KB="$(awk '/^VmRSS:/ { print $2 }' "/proc/$big_pid/status")"
      SCALE_DB_MB="$(du -m "$db" | cut -f1)"
    else
      small_pid="$SERVER_PID" small_addr="$TARGET"
    fi
  done
  for ((r = 0; r < SCALE_ROUNDS; r++)); do
    for which in $( ((r % 2 == 0)) && echo small big || echo big small); do
      if [[ "$which" == small ]]; then TARGET="$small_addr"; else TARGET="$big_addr"; fi
      echo "run.sh: scale round $((r + 1)) of $SCALE_ROUNDS, $which set" >&2
      rate="$(bench_json_field "$(load event)" throughput)"
      if [[ "$which" == small ]]; then
        SCALE_SMALL_RATES="${SCALE_SMALL_RATES:+$SCALE_SMALL_RATES }$rate"
      else
        SCALE_BIG_RATES="${SCALE_BIG_RATES:+$SCALE_BIG_RATES }$rate"
      fi
    done
  done
  bench_server_stop "$small_pid" "$WORK/scale-$SCALE_SMALL.log"
  bench_server_stop "$big_pid" "$WORK/scale-$SCALE_ENROLLMENTS.log"
  SERVER_PID=""
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }

# target_row NAME VALUE OP LIMIT prints a ratio with its target and verdict.
target_row() {
  local verdict
  verdict="$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN {
    ok = (op == ">=") ? (v >= l) : (v <= l); print (ok ? "met" : "**missed**") }')"
  echo "| $1 | $2 | $3 $4 | $verdict |"
}

# scale_rows prints the scale section's two ratio rows (nothing without
# it): the mean calls/s of the large set's windows over the small set's.
scale_rows() {
  [[ "$SCALE_ENROLLMENTS" -gt 0 ]] || return 0
  local sb ss
  sb="$(echo "$SCALE_BIG_RATES" | awk '{ for (i = 1; i <= NF; i++) t += $i; printf "%.1f", t / NF }')"
  ss="$(echo "$SCALE_SMALL_RATES" | awk '{ for (i = 1; i <= NF; i++) t += $i; printf "%.1f", t / NF }')"
  target_row "SubmitEvent/s with $SCALE_ENROLLMENTS enrollments / with $SCALE_SMALL, mean of $SCALE_ROUNDS alternating windows each ($sb / $ss; windows: ${SCALE_BIG_RATES// /, } / ${SCALE_SMALL_RATES// /, })" \
    "$(ratio "$sb" "$ss")" ">=" 0.8
  target_row "ipsrtd RSS in MB, idle on $SCALE_ENROLLMENTS enrollments (${SCALE_DB_MB} MB database)" \
    "$(awk -v k="$SCALE_RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')" "<=" 100
}

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
if [[ -n "${BENCH_SOURCE:-}" ]]; then
  COMMIT="$BENCH_SOURCE"
else
  COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
    COMMIT="$COMMIT (+uncommitted changes in the working tree)"
  fi
fi

# SCALE_ONLY=1: the scale section alone, with its own short report.
if [[ "$SCALE_ONLY" == 1 ]]; then
  if [[ "$SCALE_ENROLLMENTS" -le 0 ]]; then
    echo "run.sh: SCALE_ONLY=1 needs SCALE_ENROLLMENTS=N (N > 0)" >&2
    exit 2
  fi
  LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
  scale_section
  echo
  echo "## ipsrtd benchmark: scale with data only (SCALE_ONLY=1)"
  echo
  echo "- date (end of run): $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- commit: $COMMIT"
  echo "- machine: $(nproc) CPU(s), ${CPU_MODEL:-unknown CPU}, $(uname -sr)"
  echo "- load average (1/5/15 min): before $LOADAVG_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- load: $CONCURRENCY outstanding calls, $CHANNELS channel(s)," \
    "$THREADS client thread(s), $WARMUP warm-up + $DURATION measured per run"
  echo
  echo "| ratio (one run) | value | target | |"
  echo "|---|---:|---:|---|"
  scale_rows
  exit 0
fi

write_config "$WORK/ipsrtd.yaml" db/ipsrt.db
start_server "$WORK/ipsrtd.yaml" "$WORK/ipsrtd.log"

LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
PING="$(load ping)"
CREATE="$(load create)"
GET="$(load get)"
EVENT="$(load event)"
# Half of SubmitEvent's peak, for SubmitEvent and Ping alike.
HALF_RATE="$(awk -v t="$(bench_json_field "$EVENT" throughput)" \
  'BEGIN { printf "%.0f", t / 2 }')"
EVENT_HALF="$(load event "$HALF_RATE")"
PING_HALF="$(load ping "$HALF_RATE")"

PROFILE_EVENT="" PROFILE_GET=""
if [[ "$PROFILE" == 1 ]]; then
  if command -v perf >/dev/null; then
    PROFILE_EVENT="$(profile event event)"
    PROFILE_GET="$(profile get get)"
  else
    PROFILE_EVENT="(perf not installed)"
  fi
fi

# Stop the server before the raw SQLite runs so they do not share the CPU
# or the disk with it.
stop_server "$WORK/ipsrtd.log"

# The config logs at warning level, so any server log line is worth a look.
SERVER_LOG_LINES="$(grep -c . "$WORK/ipsrtd.log" || true)"
if [[ "$SERVER_LOG_LINES" -gt 0 ]]; then
  echo "run.sh: ipsrtd logged $SERVER_LOG_LINES line(s) at warning or above" \
    "(first 20):" >&2
  head -20 "$WORK/ipsrtd.log" >&2
fi

# What the server actually stored, to check that the raw SQLite runs below
# write the same rows per enrollment (needs the sqlite3 shell; optional).
SERVER_ROWS="(sqlite3 shell not installed; not checked)"
if command -v sqlite3 >/dev/null; then
  SERVER_ROWS="$(sqlite3 "$WORK/db/ipsrt.db" \
    "SELECT (SELECT COUNT(*) FROM enrollments) || ' enrollments, ' ||
            (SELECT COUNT(*) FROM events) || ' events, ' ||
            (SELECT COUNT(*) FROM requests) || ' requests, ' ||
            (SELECT COUNT(*) FROM outbox) || ' outbox rows'")"
fi

mkdir -p "$WORK/raw"
echo "run.sh: raw SQLite insert, batch=1 ($SQLITE_DURATION)" >&2
RAW1="$("$SQLITE_BENCH" --dir="$WORK/raw" --workflows="$WORKFLOWS_DIR" --batch=1 \
  --duration="$SQLITE_DURATION" --json)"
echo "run.sh: raw SQLite insert, batch=$MAX_BATCH ($SQLITE_DURATION)" >&2
RAWN="$("$SQLITE_BENCH" --dir="$WORK/raw" --workflows="$WORKFLOWS_DIR" --batch="$MAX_BATCH" \
  --duration="$SQLITE_DURATION" --json)"

scale_section
LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

row() {
  local name="$1" j="$2"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
    "$(bench_json_field "$j" throughput)" "$(bench_json_field "$j" p50_ms)" \
    "$(bench_json_field "$j" p90_ms)" "$(bench_json_field "$j" p99_ms)" \
    "$(bench_json_field "$j" max_ms)" "$(bench_json_field "$j" errors)"
}
raw_row() {
  local name="$1" j="$2"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
    "$(bench_json_field "$j" rows_per_s)" "$(bench_json_field "$j" txn_per_s)" \
    "$(bench_json_field "$j" commit_p50_ms)" "$(bench_json_field "$j" commit_p99_ms)" \
    "$(bench_json_field "$j" commit_max_ms)" "$(bench_json_field "$j" rows)"
}

echo
echo "## ipsrtd benchmark"
echo
echo "- date (end of run): $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- commit: $COMMIT"
echo "- machine: $(nproc) CPU(s), ${CPU_MODEL:-unknown CPU}, $(uname -sr)"
echo "- load average (1/5/15 min): before $LOADAVG_BEFORE, after $LOADAVG_AFTER"
echo "- database filesystem: $(df -P "$WORK" | awk 'NR == 2 { print $1 }')" \
  "($(stat -f -c %T "$WORK"))"
echo "- server: ipsrtd $(du -sh "$WORK/db" 2>/dev/null | cut -f1) database after the run," \
  "$SERVER_LOG_LINES log line(s) at warning or above, clean exit on SIGTERM"
echo "- rows in the server's database after the run: $SERVER_ROWS"
echo "- load: $CONCURRENCY outstanding calls, $CHANNELS channel(s)," \
  "$THREADS client thread(s), $WARMUP warm-up + $DURATION measured per RPC;" \
  "client and server share the machine's CPUs"
echo
echo "| RPC | calls/s | p50 ms | p90 ms | p99 ms | max ms | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row "Ping (no-op)" "$PING"
row "CreateEnrollment" "$CREATE"
row "GetEnrollment" "$GET"
row "SubmitEvent" "$EVENT"
row "SubmitEvent at $HALF_RATE/s (half its peak)" "$EVENT_HALF"
row "Ping at $HALF_RATE/s" "$PING_HALF"
echo
echo "| raw SQLite insert (WAL, synchronous=FULL) | enrollments/s | commits/s | COMMIT p50 ms | COMMIT p99 ms | COMMIT max ms | enrollments |"
echo "|---|---:|---:|---:|---:|---:|---:|"
raw_row "batch=1 (one txn per enrollment)" "$RAW1"
raw_row "batch=$MAX_BATCH (group-commit ceiling)" "$RAWN"
echo
PING_T="$(bench_json_field "$PING" throughput)"
CREATE_T="$(bench_json_field "$CREATE" throughput)"
GET_T="$(bench_json_field "$GET" throughput)"
EVENT_T="$(bench_json_field "$EVENT" throughput)"
RAW1_T="$(bench_json_field "$RAW1" rows_per_s)"
RAWN_T="$(bench_json_field "$RAWN" rows_per_s)"
echo "| ratio (one run) | value | target | |"
echo "|---|---:|---:|---|"
target_row "SubmitEvent / Ping (calls/s)" "$(ratio "$EVENT_T" "$PING_T")" ">=" 0.25
target_row "CreateEnrollment / Ping (calls/s)" "$(ratio "$CREATE_T" "$PING_T")" ">=" 0.25
target_row "GetEnrollment / Ping (calls/s)" "$(ratio "$GET_T" "$PING_T")" ">=" 0.5
target_row "p99 SubmitEvent / p99 Ping, both at $HALF_RATE/s" \
  "$(ratio "$(bench_json_field "$EVENT_HALF" p99_ms)" "$(bench_json_field "$PING_HALF" p99_ms)")" "<=" 3
# The part of that ratio the disk takes: every SubmitEvent waits for a
# durable commit, at least a small transaction (this run's batch=1 bench).
echo "| raw SQLite batch=1 transaction p99 / Ping p99 at $HALF_RATE/s (the disk's part of the ratio above) | $(ratio \
  "$(bench_json_field "$RAW1" txn_p99_ms)" "$(bench_json_field "$PING_HALF" p99_ms)") | | |"
scale_rows
echo "| CreateEnrollment / raw SQLite batch=1 | $(ratio "$CREATE_T" "$RAW1_T") | | |"
echo "| CreateEnrollment / raw SQLite batch=$MAX_BATCH | $(ratio "$CREATE_T" "$RAWN_T") | | |"
echo
if [[ -n "$PROFILE_EVENT" ]]; then
  echo "### Profile: ipsrtd under SubmitEvent load (perf, self time, top entries)"
  echo
  echo '```'
  echo "$PROFILE_EVENT"
  echo '```'
  echo
  echo "### Profile: ipsrtd under GetEnrollment load"
  echo
  echo '```'
  echo "$PROFILE_GET"
  echo '```'
  echo
fi
echo "### Plugin call: one ScoreResponse through each transport"
echo
"$BUILD_DIR/bench/ipsrt_plugin_call_bench" \
  --plugin_dir="$BUILD_DIR/lib/ipsrt/plugins" \
  --runner="$BUILD_DIR/engine/ipsrt-plugin-runner" 2>/dev/null
