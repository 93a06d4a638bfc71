#!/usr/bin/env bash
# `ipsrt simulate` at memory speed: cost per event against the course's age
# (1/2/4/8-year courses from bench/simulate_course.py), the year-long course's
# throughput, daily ticks and one long gap, the snapshot size after each
# course, the top of a CPU profile, and the peer (bpmn-engine, bench/peer/bpmn)
# on the same machine in the same run. Prints one markdown section.
#
# Settings (environment): BUILD_DIR (build/default), DURATION (2s per figure),
# YEARS ("1 2 4 8"), PEER (1; 0 skips the peer),
# PEER_N (100 courses), PEER_CONCURRENCY (50), PROFILE (1; 0 skips perf),
# BENCH_TMPDIR (parent of the temp dir). Everything is written in one temp
# dir, removed on every exit path (also when interrupted).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build/default}
IPSRT=$BUILD_DIR/engine/ipsrt
TEMPLATE=$ROOT/workflows/ipsrt-standard.yaml
DURATION=${DURATION:-2s}
YEARS=${YEARS:-"1 2 4 8"}
PEER=${PEER:-1}
PEER_N=${PEER_N:-100}
PEER_CONCURRENCY=${PEER_CONCURRENCY:-50}
PROFILE=${PROFILE:-1}

[[ -x $IPSRT ]] || { echo "simulate.sh: no $IPSRT; build first" >&2; exit 1; }
TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/ipsrt-simulate.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BENCH=$BUILD_DIR/bench/ipsrt_simulate_bench
[[ -x $BENCH ]] || { echo "simulate.sh: no $BENCH; build first" >&2; exit 1; }

# measure FILE [SEAL]: repeats the course in one process for DURATION,
# then times hashing its events alone for SEAL (default 0s: not at all);
# prints
# "events_per_run wall_us_per_event cpu_us_per_event snapshot_bytes
# unbounded_bytes hash_us serialize_us sha256_us hash_matches" (the last
# four: hashing the course's events alone, see ipsrt_simulate_bench).
measure() {
  "$BENCH" --template_file="$TEMPLATE" --scenario="$1" --duration="$DURATION" \
    --seal_duration="${2:-0s}" --json |
    python3 -c 'import json, sys
r = json.loads(sys.stdin.read())
e = r["events"]
print(e // r["runs"], "%.2f" % (r["wall_s"] * 1e6 / e), "%.2f" % (r["cpu_s"] * 1e6 / e),
      r["snapshot_bytes"], r["unbounded_snapshot_bytes"],
      "%.2f" % r["seal_hash_cpu_us_per_event"], "%.2f" % r["seal_serialize_cpu_us_per_event"],
      "%.2f" % r["seal_sha256_cpu_us_per_event"], str(r["seal_hash_matches"]).lower())'
}

echo "## ipsrt simulate (bench/simulate.sh)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); each figure repeats the" \
  "course in one process (ipsrt_simulate_bench, the code of \`ipsrt simulate\`) for $DURATION;" \
  "per-event cost from CPU time (wall time in brackets: other processes share the cores)."
echo

read -r ev wall cpu bytes _ hash_us ser_us sha_us hash_ok < <(measure "$ROOT/tests/scenarios/year-long.yaml" 1s)
year_rate=$(awk -v c="$cpu" 'BEGIN { printf "%.0f", 1e6 / c }')
year_wall=$(awk -v c="$wall" 'BEGIN { printf "%.0f", 1e6 / c }')
echo "Year-long course (tests/scenarios/year-long.yaml, $ev events): **$year_rate events/s**" \
  "CPU ($year_wall events/s wall); \`ipsrt simulate\` once: $(
    "$IPSRT" simulate "$TEMPLATE" --scenario="$ROOT/tests/scenarios/year-long.yaml" 2>&1 >/dev/null | tail -1)."
echo
echo "Hashing alone, the part of sealing that chains the log (\`EventHash\`: each" \
  "event's deterministic bytes, then SHA-256 after the previous event's hash;" \
  "the course's events each 16 times in a row, so in the cache as a freshly" \
  "built event is): **$hash_us µs/event** CPU (the bytes $ser_us, SHA-256" \
  "$sha_us; recomputed hashes equal the sealed ones: $hash_ok), so at most" \
  "$(awk -v h="$hash_us" 'BEGIN { printf "%.0f", 1e6 / h }') events/s for a" \
  "simulation that seals its events as the server does, before any of Step's" \
  "work; 250,000 events/s would leave 4 µs per event for all of it."
echo
if [[ $hash_ok != true ]]; then
  echo "simulate.sh: a hash recomputed from a simulated event differs from the one it was sealed with" >&2
  exit 1
fi

echo "### Cost per event against the course's age"
echo
echo "The courses are measured in one process, interleaved (each in turn for" \
  "0.1 s until each has had $DURATION), and compared by the median over those" \
  "slices of the CPU time per event, so that a change in the machine's load" \
  "during the run weighs on every course alike."
echo
echo "| course | events | µs/event CPU, median of slices (mean; wall) | events/s CPU | per-event cost / 1 year | of which freeing the log, µs/event | snapshot bytes at end | unbounded shape (closed tasks kept) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
files=()
for y in $YEARS; do
  python3 "$ROOT/bench/simulate_course.py" --years "$y" >"$TMP/course-$y.yaml"
  files+=("$TMP/course-$y.yaml")
done
"$BENCH" --template_file="$TEMPLATE" --scenario="$(IFS=,; echo "${files[*]}")" \
  --duration="$DURATION" --seal_duration=0s --json | python3 -c 'import json, sys
years = sys.argv[1].split()
base = None
for y, line in zip(years, sys.stdin):
    r = json.loads(line)
    e = r["events"]
    median = r["median_cpu_us_per_event"]
    base = base or median
    print("| %s years | %d | %.2f (%.2f; %.2f) | %.0f | %.2f | %.2f | %d | %d |" % (
        y, e // r["runs"], median, r["cpu_s"] * 1e6 / e, r["wall_s"] * 1e6 / e,
        1e6 / median, median / base, r["destroy_cpu_s"] * 1e6 / e,
        r["snapshot_bytes"], r["unbounded_snapshot_bytes"]))' "$YEARS"
echo

echo "### Time passing: daily ticks, one long gap"
echo
echo "| scenario | events | µs/event CPU (wall) | snapshot bytes at end |"
echo "|---|---:|---:|---:|"
for y in $YEARS; do
  python3 "$ROOT/bench/simulate_course.py" --years "$y" --ticks >"$TMP/ticks-$y.yaml"
  read -r ev wall cpu bytes _ < <(measure "$TMP/ticks-$y.yaml")
  echo "| $y years, daily ticks | $ev | $cpu ($wall) | $bytes |"
done
python3 "$ROOT/bench/simulate_course.py" --gap-days 2920 >"$TMP/gap.yaml"
read -r ev wall cpu bytes _ < <(measure "$TMP/gap.yaml")
gap_ms=$(awk -v c="$cpu" -v e="$ev" 'BEGIN { printf "%.1f", c * e / 1000 }')
echo "| a week of diary, then one event 2,920 days later | $ev | $cpu ($wall); the whole course $gap_ms ms CPU | $bytes |"
echo

if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
  python3 "$ROOT/bench/simulate_course.py" --years 2 >"$TMP/profile.yaml"
  if perf record -q -g -F 999 -o "$TMP/perf.data" -- "$BENCH" --template_file="$TEMPLATE" \
      --scenario="$TMP/profile.yaml" --duration="$DURATION" >/dev/null 2>&1; then
    echo "### Profile: top entries (\`perf record -g\`, ipsrt_simulate_bench on the 2-year course, self time)"
    echo
    echo '```'
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --percent-limit 2 \
      2>/dev/null | grep -E '^ +[0-9]' | head -12 | cut -c1-110
    echo '```'
    echo
  fi
fi

if [[ $PEER == 1 ]]; then
  echo "### Peer: bpmn-engine (bench/peer/bpmn), same machine, same run"
  echo
  cp -r "$ROOT/bench/peer/bpmn" "$TMP/peer"
  rm -rf "$TMP/peer/node_modules"
  if (cd "$TMP/peer" && npm ci --no-audit --no-fund --loglevel=error >"$TMP/npm.log" 2>&1); then
    echo "| mode | courses | events | events/s (wall) | ipsrt year-long ÷ peer, both wall | ipsrt CPU rate ÷ peer |"
    echo "|---|---:|---:|---:|---:|---:|"
    for mode in memory sqlite; do
      out=$(cd "$TMP/peer" && node run.js --n "$PEER_N" --concurrency "$PEER_CONCURRENCY" \
        --mode "$mode" --db "$TMP/peer.sqlite")
      python3 -c 'import json, sys
r = json.loads(sys.argv[1]); y = float(sys.argv[2]); w = float(sys.argv[3])
p = r["events_per_s"]
print("| %s | %d | %d | %.1f | %.0fx | %.0fx |" % (r["mode"], r["n"], r["events"], p, w / p, y / p))' \
        "$out" "$year_rate" "$year_wall"
    done
  else
    echo "(npm ci failed; the peer was not run: $(tail -1 "$TMP/npm.log"))"
  fi
  echo
fi
