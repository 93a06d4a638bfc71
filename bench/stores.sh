#!/usr/bin/env bash
# bench/stores.sh: durable event throughput of ipsrtd on SQLite vs
# PostgreSQL, and with one vs two ipsrtd replicas on one PostgreSQL, in one
# run (see bench/README.md). Starts a throw-away PostgreSQL server (fsync on,
# synchronous_commit on: every acknowledged event is on disk) and the
# ipsrtd processes on free loopback ports, drives SubmitEvent with
# ipsrt_loadgen --rpc=event, stops everything it started and prints a
# markdown summary with the ratios.
#
# Environment (all optional):
#   BUILD_DIR     build tree with the binaries (default: build/default)
#   CONCURRENCY   outstanding calls per load run (default 32)
#   DURATION      measurement window per load run (default 10s)
#   WARMUP        warm-up per load run (default 2s)
#   CHANNELS      client channels (default 2; at least 2 for two replicas)
#   POPULATION    enrollments that receive the events (default 200)
#   PG_POOL       store.postgres.pool_size of each replica (default 8)
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   BENCH_TMPDIR  parent of the temp dir (default: $TMPDIR or /tmp); both
#                 databases live here.
#   WORKFLOWS_DIR workflow templates the servers load (default: workflows/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="${BUILD_DIR:-build/default}"
CONCURRENCY="${CONCURRENCY:-32}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CHANNELS="${CHANNELS:-2}"
POPULATION="${POPULATION:-200}"
PG_POOL="${PG_POOL:-8}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
WORKFLOWS_DIR="${WORKFLOWS_DIR:-$ROOT/workflows}"
if [[ "$CHANNELS" -lt 2 ]]; then CHANNELS=2; fi

IPSRTD="$BUILD_DIR/engine/ipsrtd"
LOADGEN="$BUILD_DIR/bench/ipsrt_loadgen"
BENCH_NAME=stores.sh
source "$ROOT/bench/lib.sh"
bench_need "$IPSRTD" "$LOADGEN" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/psql"

bench_begin ipsrt-bench-stores
bench_pg_user

PG_PORT="$(bench_free_port)"
bench_pg_start "$PG_PORT" -c fsync=on -c synchronous_commit=on -c max_connections=100
psql_q() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$PG_PORT user=postgres dbname=${2:-postgres}" -c "$1"
}
psql_q "CREATE DATABASE one_replica"
psql_q "CREATE DATABASE two_replicas"
PG_SETTINGS="$(psql_q "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'server_version')")"

# write_config NAME STORE_YAML writes $WORK/NAME/ipsrtd.yaml.
write_config() { bench_server_config "$WORK/$1/ipsrtd.yaml" "$2"; }

# start_server NAME: starts ipsrtd with $WORK/NAME/ipsrtd.yaml; sets
# SERVER_ADDR once it serves and keeps the pid in $WORK/NAME/pid.
start_server() {
  bench_server_start "$WORK/$1/ipsrtd.yaml" "$WORK/$1/ipsrtd.log"
  echo "$SERVER_PID" >"$WORK/$1/pid"
}

# stop_server NAME: SIGTERM, and a non-zero exit fails the run.
stop_server() { bench_server_stop "$(cat "$WORK/$1/pid")" "$WORK/$1/ipsrtd.log"; }

load() {
  echo "stores.sh: loadgen --rpc=event --server=$1 ($CONCURRENCY outstanding," \
    "$WARMUP warm-up + $DURATION)" >&2
  "$LOADGEN" --server="$1" --rpc=event --concurrency="$CONCURRENCY" \
    --duration="$DURATION" --warmup="$WARMUP" --channels="$CHANNELS" \
    --get_population="$POPULATION" --json
}

PG_STORE() {
  printf '  kind: postgres\n  postgres:\n    conninfo: "host=127.0.0.1 port=%s user=postgres dbname=%s"\n    pool_size: %s\n' \
    "$PG_PORT" "$1" "$PG_POOL"
}

LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

write_config sqlite "$(printf '  kind: sqlite\n  sqlite:\n    path: db/ipsrt.db\n    synchronous: full\n')"
start_server sqlite
SQLITE_RUN="$(load "$SERVER_ADDR")"
stop_server sqlite

write_config pg1 "$(PG_STORE one_replica)"
start_server pg1
PG1_RUN="$(load "$SERVER_ADDR")"
stop_server pg1

write_config pg2a "$(PG_STORE two_replicas)"
write_config pg2b "$(PG_STORE two_replicas)"
start_server pg2a
ADDR_A="$SERVER_ADDR"
start_server pg2b
PG2_RUN="$(load "$ADDR_A,$SERVER_ADDR")"
stop_server pg2a
stop_server pg2b
LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# What was stored, to check every acknowledged call left one event.
PG1_EVENTS="$(psql_q "SELECT COUNT(*) FROM events" one_replica)"
PG2_EVENTS="$(psql_q "SELECT COUNT(*) FROM events" two_replicas)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
row() {
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" \
    "$(bench_json_field "$2" throughput)" "$(bench_json_field "$2" p50_ms)" \
    "$(bench_json_field "$2" p99_ms)" "$(bench_json_field "$2" max_ms)" \
    "$(bench_json_field "$2" errors)"
}

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
  COMMIT="$COMMIT (+uncommitted changes in the working tree)"
fi

echo
echo "## ipsrtd store benchmark: durable SubmitEvent"
echo
echo "- date (end of run): $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- commit: $COMMIT"
echo "- machine: $(nproc) CPU(s), ${CPU_MODEL:-unknown CPU}, $(uname -sr)"
echo "- load average (1/5/15 min): before $LOADAVG_BEFORE, after $LOADAVG_AFTER"
echo "- databases on: $(df -P "$WORK" | awk 'NR == 2 { print $1 }') ($(stat -f -c %T "$WORK"))"
echo "- PostgreSQL: $PG_SETTINGS; ipsrtd pool_size=$PG_POOL"
echo "- SQLite: WAL, synchronous=FULL, group commit (max_batch 256)"
echo "- load: $CONCURRENCY outstanding SubmitEvent calls (revision-less" \
  "session_held on $POPULATION enrollments), $CHANNELS channel(s), $WARMUP" \
  "warm-up + $DURATION measured; client, servers and PostgreSQL share the CPUs"
echo "- events stored on PostgreSQL (incl. $POPULATION creates + warm-up):" \
  "one replica $PG1_EVENTS, two replicas $PG2_EVENTS"
echo
echo "| store | events/s | p50 ms | p99 ms | max ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
row "SQLite, 1 ipsrtd" "$SQLITE_RUN"
row "PostgreSQL, 1 ipsrtd" "$PG1_RUN"
row "PostgreSQL, 2 ipsrtd replicas" "$PG2_RUN"
echo
S="$(bench_json_field "$SQLITE_RUN" throughput)"
P1="$(bench_json_field "$PG1_RUN" throughput)"
P2="$(bench_json_field "$PG2_RUN" throughput)"
echo "| ratio (events/s) | value |"
echo "|---|---:|"
echo "| PostgreSQL 1 replica / SQLite | $(ratio "$P1" "$S") |"
echo "| PostgreSQL 2 replicas / 1 replica | $(ratio "$P2" "$P1") |"
echo "| PostgreSQL 2 replicas / SQLite | $(ratio "$P2" "$S") |"
