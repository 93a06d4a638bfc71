#!/usr/bin/env bash
# Installs the npm packages of the interop tests (an independent gRPC client)
# from the lock file, once; later runs only check that they are there.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
if [ -f node_modules/.package-lock.json ] && \
   [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
