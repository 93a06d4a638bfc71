#!/usr/bin/env bash
# `ipsrt simulate` at memory speed: cost per event against the course's age
# (1/2/4/8-year courses from bench/simulate_course.py), the year-long course's
# throughput, daily ticks and one long gap, the snapshot size after each
# course, the top of a CPU profile, and the peer (bpmn-engine, bench/peer/bpmn)
# on the same machine in the same run. Prints one markdown section.
#
# Settings (environment): BUILD_DIR (build/default), RUNS (3 runs per figure;
# the median is reported), YEARS ("1 2 4 8"), PEER (1; 0 skips the peer),
# PEER_N (100 courses), PEER_CONCURRENCY (50), PROFILE (1; 0 skips perf),
# BENCH_TMPDIR (parent of the temp dir). Everything is written in one temp
# dir, removed on every exit path (also when interrupted).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build/default}
IPSRT=$BUILD_DIR/engine/ipsrt
TEMPLATE=$ROOT/workflows/ipsrt-standard.yaml
RUNS=${RUNS:-3}
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

# simulate FILE: one run; prints "events ms bytes" from ipsrt's summary line
# ("simulated N events in X ms (...), final snapshot B bytes").
simulate() {
  "$IPSRT" simulate "$TEMPLATE" --scenario="$1" 2>"$TMP/err" >/dev/null ||
    { cat "$TMP/err" >&2; return 1; }
  sed -nE 's/^simulated ([0-9]+) events in ([0-9.]+) ms.*snapshot ([0-9]+) bytes$/\1 \2 \3/p' \
    "$TMP/err"
}

# median FILE: RUNS runs; prints "events median_ms bytes".
median() {
  local i
  for ((i = 0; i < RUNS; i++)); do simulate "$1"; done |
    sort -k2,2 -g | awk -v n="$RUNS" 'NR == int((n + 1) / 2) { print }'
}

echo "## ipsrt simulate (bench/simulate.sh)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "median of $RUNS runs, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo

python3 "$ROOT/bench/simulate_course.py" --years 1 >"$TMP/course-1.yaml"
read -r ev ms _ < <(median "$ROOT/tests/scenarios/year-long.yaml")
year_rate=$(awk -v e="$ev" -v m="$ms" 'BEGIN { printf "%.0f", e * 1000 / m }')
echo "Year-long course (tests/scenarios/year-long.yaml): $ev events in $ms ms," \
  "**$year_rate events/s**."
echo

echo "### Cost per event against the course's age"
echo
echo "| course | events | ms | events/s | µs/event | per-event cost / 1 year | snapshot bytes at end |"
echo "|---|---:|---:|---:|---:|---:|---:|"
base=""
for y in $YEARS; do
  python3 "$ROOT/bench/simulate_course.py" --years "$y" >"$TMP/course-$y.yaml"
  read -r ev ms bytes < <(median "$TMP/course-$y.yaml")
  us=$(awk -v e="$ev" -v m="$ms" 'BEGIN { printf "%.2f", m * 1000 / e }')
  [[ -n $base ]] || base=$us
  awk -v y="$y" -v e="$ev" -v m="$ms" -v u="$us" -v b="$base" -v s="$bytes" \
    'BEGIN { printf "| %s years | %d | %.1f | %.0f | %s | %.2f | %d |\n", y, e, m, e * 1000 / m, u, u / b, s }'
done
echo

echo "### Time passing: daily ticks, one long gap"
echo
echo "| scenario | events | ms | µs/event | snapshot bytes at end |"
echo "|---|---:|---:|---:|---:|"
for y in $YEARS; do
  python3 "$ROOT/bench/simulate_course.py" --years "$y" --ticks >"$TMP/ticks-$y.yaml"
  read -r ev ms bytes < <(median "$TMP/ticks-$y.yaml")
  awk -v y="$y" -v e="$ev" -v m="$ms" -v s="$bytes" \
    'BEGIN { printf "| %s years, daily ticks | %d | %.1f | %.2f | %d |\n", y, e, m, m * 1000 / e, s }'
done
python3 "$ROOT/bench/simulate_course.py" --gap-days 2920 >"$TMP/gap.yaml"
read -r ev ms bytes < <(median "$TMP/gap.yaml")
awk -v e="$ev" -v m="$ms" -v s="$bytes" \
  'BEGIN { printf "| one event after 2,920 days (after a week of diary) | %d | %.1f | %.2f | %d |\n", e, m, m * 1000 / e, s }'
echo

if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
  python3 "$ROOT/bench/simulate_course.py" --years 2 >"$TMP/profile.yaml"
  if perf record -q -g -F 999 -o "$TMP/perf.data" -- "$IPSRT" simulate "$TEMPLATE" \
      --scenario="$TMP/profile.yaml" >/dev/null 2>&1; then
    echo "### Profile: top entries (\`perf record -g\`, 2-year course, self time)"
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
    echo "| mode | courses | events | events/s | ipsrt year-long events/s ÷ peer |"
    echo "|---|---:|---:|---:|---:|"
    for mode in memory sqlite; do
      out=$(cd "$TMP/peer" && node run.js --n "$PEER_N" --concurrency "$PEER_CONCURRENCY" \
        --mode "$mode" --db "$TMP/peer.sqlite")
      python3 -c 'import json, sys
r = json.loads(sys.argv[1]); y = float(sys.argv[2])
print("| %s | %d | %d | %.1f | %.0fx |" % (r["mode"], r["n"], r["events"], r["events_per_s"], y / r["events_per_s"]))' \
        "$out" "$year_rate"
    done
  else
    echo "(npm ci failed; the peer was not run: $(tail -1 "$TMP/npm.log"))"
  fi
  echo
fi
