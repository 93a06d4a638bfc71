#!/usr/bin/env bash
# Builds the fuzz targets with clang-14 (libFuzzer, ASan, UBSan) in
# build/fuzz and runs each for FUZZ_SECONDS (default 60) on a working
# corpus in build/fuzz/tests/fuzz/corpus/<target>, seeded from
# tests/fuzz/corpus and the repository's fixtures (the directories
# tests/fuzz/CMakeLists.txt gives its ctest entry). A crash
# stops the run with the reproducer in build/fuzz/findings/<target>/; fix
# it and add the input to tests/fuzz/corpus/<target>/.
#   FUZZ_SECONDS=600 FUZZ_TARGETS="condition scenario" scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
if [ ! -f build/fuzz/build.ninja ]; then cmake --preset fuzz; fi
targets="${FUZZ_TARGETS:-}"
if [ -z "$targets" ]; then
  cmake --build --preset fuzz
  targets=$(ls build/fuzz/tests/fuzz/ | sed -n 's/^ipsrt_fuzz_//p')
else
  # Only what the chosen targets need.
  cmake --build --preset fuzz --target $(printf 'ipsrt_fuzz_%s ' $targets)
fi
for t in $targets; do
  bin="build/fuzz/tests/fuzz/ipsrt_fuzz_$t"
  findings="build/fuzz/findings/$t"
  mkdir -p "$findings"
  # The corpus directories of its ctest entry: the working one first, then
  # the checked-in corpus and the fixtures.
  dirs=$(ctest --test-dir build/fuzz -R "^fuzz\.$t\$" --show-only=json-v1 |
    python3 -c 'import json,sys
t = json.load(sys.stdin)["tests"]
print(" ".join(a for a in t[0]["command"][1:] if not a.startswith("-")) if t else "")')
  echo "fuzz: $t for ${seconds}s"
  "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
    -artifact_prefix="$findings/" -print_final_stats=1 $dirs
done
