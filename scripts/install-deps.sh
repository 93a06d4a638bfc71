#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, and only the
# ones that are missing, so a second run costs a few dpkg look-ups.
# Runs as root (as on the project's machines) or through sudo when available.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache tzdata
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libyaml-cpp-dev libgtest-dev libgmock-dev libsqlite3-dev
  libssl-dev libcurl4-openssl-dev nlohmann-json3-dev libpq-dev
  nodejs npm sqlite3 openssl
  # zstd and zlib: the stores compress their blobs with zstd and read the
  # older deflated ones (engine/store/blob_codec.h).
  libzstd-dev zlib1g-dev
  # Server binaries for the PostgreSQL tests (/usr/lib/postgresql/15/bin),
  # which start throw-away servers of their own.
  postgresql-15
  # Course reports: Graphviz draws the workflow graph; the browser tests run
  # headless Chromium and check screenshots (ImageMagick) and PDFs
  # (poppler's pdfinfo).
  graphviz chromium fonts-dejavu-core imagemagick poppler-utils
  # Metrics (prometheus-cpp) and the operations tests: a real Prometheus
  # server and promtool, dpkg-dev for CPack's dependency scan of the .deb.
  prometheus-cpp-dev prometheus dpkg-dev curl
  # make fuzz: clang with libFuzzer and the sanitizer runtimes.
  clang-14 libclang-rt-14-dev
  # pgrep and pkill: the bench scripts stop a PostgreSQL start cut short,
  # and bench/interrupt_check.sh looks for what an interrupted run left.
  procps
)

missing=()
for p in "${packages[@]}"; do
  # A package counts as present when dpkg reports it installed; node and npm
  # may also come from outside Debian (as on the CI image), so a working
  # binary on PATH is enough for those two.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
