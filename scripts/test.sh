#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds, runs every
# test (unit tests, then integration tests against real peers started on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build=${FABRIK_BUILD_DIR:-build}
cd "$build"
ctest --output-on-failure --timeout 900 "$@"
