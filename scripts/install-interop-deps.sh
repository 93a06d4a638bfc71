#!/usr/bin/env bash
# Installs the npm packages of the tests that use independent tools (the
# grpc-js client, the ajv JSON Schema validator, the FHIR and HL7 v2
# validators) from their lock files, once;
# later runs only check that they are there and newer than the lock file.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Every test directory with a package-lock.json has its own packages.
for lock in "$root"/tests/*/package-lock.json; do
  cd "$(dirname "$lock")"
  if [ -f node_modules/.package-lock.json ] && \
     [ node_modules/.package-lock.json -nt package-lock.json ]; then
    continue
  fi
  npm ci --no-audit --no-fund --loglevel=error
done
