#!/usr/bin/env bash
# `make reliability`: kill -9 cycles under write load (20 by default) and the
# store fault suite, each printed as a table (docs/durability.md).
#   CYCLES=20 EVENTS=60 BUILD_DIR=build/default bash scripts/reliability.sh
set -euo pipefail
BUILD_DIR=${BUILD_DIR:-build/default}
CYCLES=${CYCLES:-20}
EVENTS=${EVENTS:-60}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

status=0
IPSRT_RELIABILITY_CYCLES=$CYCLES IPSRT_RELIABILITY_EVENTS=$EVENTS \
  "$BUILD_DIR/tests/reliability/ipsrt_reliability_test" \
  --gtest_brief=1 | grep -v '^\[\|^Running main' || status=1

"$BUILD_DIR/tests/e2e/ipsrt_e2e_test" --gtest_filter='StoreFaultsTest.*' \
  --gtest_output="json:$out/faults.json" >"$out/faults.log" 2>&1 || status=1

python3 - "$out/faults.json" <<'PY'
import json, sys
faults = {
  "EmptiedDatabaseIsRefusedNotServedEmpty":
    ("database file emptied (: > ipsrt.db)", "start refused FAILED_PRECONDITION naming the identity file"),
  "StoreInitCreatesWhatProductionRefusesToCreate":
    ("missing database, create: false", "start refused; `ipsrt store init` creates it"),
  "SecondServerOnOnePortFailsToBind":
    ("second ipsrtd on the same port", "second exits: address in use; first serves every call"),
  "SecondServerOnOneDatabaseIsRefused":
    ("second ipsrtd on the same SQLite file", "second exits: lock file held (pid)"),
  "ZeroedLeafPageOfEachTableStopsWritesAndIsAccounted":
    ("zeroed leaf page: enrollments, events, requests, audit", "read-only for safety: writes FAILED_PRECONDITION, reads served or DATA_LOSS, store check accounts for every row"),
  "DiskFillingRefusesChangesBeforeItIsFullAndKeepsReads":
    ("disk filling (12 MB tmpfs, watermark 2 MiB)", "writes RESOURCE_EXHAUSTED at the watermark, reads continue, start refused below it, nothing lost"),
  "PostgresRestartUnderLoadLosesNothingAndSaysWhy":
    ("PostgreSQL stopped and restarted under load", "every failure UNAVAILABLE with the store's cause; retried creates land once"),
  "FullDiskFailuresCarryTheStoresCode":
    ("disk full (8 MB tmpfs, no watermark)", "RESOURCE_EXHAUSTED (never the audit layer's UNAVAILABLE); retry succeeds once space is freed"),
}
report = json.load(open(sys.argv[1]))
print("store faults")
print("| fault | expected | result |")
print("|---|---|---|")
for suite in report.get("testsuites", []):
  for t in suite.get("testsuite", []):
    fault, expected = faults.get(t["name"], (t["name"], ""))
    if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
      result = "skipped"
    else:
      result = "FAILED" if t.get("failures") else "passed"
    print(f"| {fault} | {expected} | {result} ({t.get('time', '')}) |")
PY
if [ "$status" -ne 0 ]; then
  echo "reliability: FAILED (see $BUILD_DIR test output)" >&2
  cat "$out/faults.log" | grep -A20 'Failure' | head -80 >&2 || true
fi
exit $status
