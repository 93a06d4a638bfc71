#!/usr/bin/env bash
# bench/interrupt_check.sh: a bench script stopped in the middle of a run
# leaves nothing behind: no ipsrtd, no PostgreSQL, no load generator, no
# temp dir. Run by ctest (bench.InterruptLeavesNothingBehind).
#
# Each case starts one script with the smallest settings in a process
# group of its own, its temp dirs under a directory of this check's own
# (BENCH_TMPDIR), waits until a process whose command line names that
# directory runs (a server, a load generator, the simulator), then stops
# the script the way a person or a job runner does:
#   - Ctrl-C: SIGINT to the script's whole process group;
#   - `kill` / `timeout`: SIGTERM to the script alone.
# It then requires the script to exit with 130 or 143 within 120 s, no
# process naming the directory to remain, and the directory to be empty.
# PostgreSQL is the hard case: pg_ctl starts it in a session of its own, so
# Ctrl-C never reaches it and only the script's exit trap can stop it.
#
# Environment: BUILD_DIR (the build tree, required by ctest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BUILD_DIR="${BUILD_DIR:-$ROOT/build/default}"
T="$(mktemp -d "${TMPDIR:-/tmp}/ipsrt-bench-interrupt.XXXXXX")"
# PostgreSQL runs as the postgres user when this runs as root: it must be
# able to reach its data directory below T.
chmod 0711 "$T"
cleanup() {
  # Only after a failed case: whatever still runs from this check goes.
  pkill -KILL -f -- "$T/" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

fail() {
  echo "interrupt_check: $*" >&2
  exit 1
}

# running DIR [PREFIX]: true while a process's command line names DIR
# (after PREFIX, a regular expression, when given).
running() {
  pgrep -f -- "${2:-}$1/" >/dev/null 2>&1
}

# interrupt CASE SCRIPT SIGNAL TARGET WAIT_FOR ENV...: runs bench/SCRIPT.sh
# with ENV, waits for a process naming the case's directory after WAIT_FOR
# (a regular expression; empty: any), sends SIGNAL to TARGET (group: the
# script's process group; script: the script alone) and checks what is
# left.
interrupt() {
  local name="$1" script="$2" signal="$3" target="$4" wait_for="$5"
  shift 5
  local dir="$T/$name"
  mkdir -m 0711 "$dir"
  echo "interrupt_check: $name: $script.sh, SIG$signal to the $target" >&2
  # Job control (set -m) gives the script a process group of its own, led
  # by it, as a terminal would: a group signal reaches the script and its
  # children and nothing else. Without it the script would start with
  # SIGINT ignored (POSIX, for background commands of a non-interactive
  # shell), which no trap can undo.
  set -m
  env BENCH_TMPDIR="$dir" "$@" bash "$ROOT/bench/$script.sh" \
    >"$T/$name.out" 2>"$T/$name.err" &
  local pid=$!
  set +m
  local waited=0
  until running "$dir" "$wait_for"; do
    kill -0 "$pid" 2>/dev/null ||
      fail "$name: $script.sh ended before anything ran: $(tail -5 "$T/$name.err")"
    ((waited++ < 1200)) || fail "$name: nothing started within 120 s"
    sleep 0.1
  done
  if [[ "$target" == group ]]; then
    kill "-$signal" -- "-$pid"
  else
    kill "-$signal" "$pid"
  fi
  local rc=0 i
  for i in $(seq 1200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "$name: $script.sh still runs 120 s after SIG$signal"
  wait "$pid" || rc=$?
  [[ "$rc" -eq 130 || "$rc" -eq 143 ]] ||
    fail "$name: $script.sh exited with $rc, not 130 or 143: $(tail -5 "$T/$name.err")"
  if running "$dir"; then
    fail "$name: still running after $script.sh exited: $(pgrep -af -- "$dir/")"
  fi
  local left
  left="$(find "$dir" -mindepth 1 -maxdepth 1)"
  [[ -z "$left" ]] || fail "$name: left behind: $left"
  echo "interrupt_check: $name: exit $rc, no process and no file left" >&2
}

# While ipsrtd serves under load.
interrupt run-ctrl-c run INT group 'ipsrtd .*' \
  DURATION=20s WARMUP=0s SQLITE_DURATION=1s
interrupt run-term run TERM script 'ipsrtd .*' \
  DURATION=2s WARMUP=0s SQLITE_DURATION=1s
# The moment PostgreSQL's postmaster appears, while `pg_ctl start` still
# waits for it; then with PostgreSQL and ipsrtd both serving.
interrupt stores-starting stores INT group 'bin/postgres -D ' \
  DURATION=20s WARMUP=0s
interrupt stores-serving stores INT group 'ipsrtd .*' DURATION=20s WARMUP=0s
# While the simulator runs a course from the script's temp dir.
interrupt simulate-ctrl-c simulate INT group '' \
  PEER=0 PROFILE=0 DURATION=5s YEARS=1
echo "interrupt_check: every case left nothing behind" >&2
