#!/usr/bin/env bash
# Configures and builds fabrik into build/ (Ninja, ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FABRIK_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  # Debian's python3.11 has numpy and scikit-learn; another python3 may come first on PATH.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPython3_EXECUTABLE=/usr/bin/python3.11
fi
cmake --build "$build" -j "$(nproc)"
