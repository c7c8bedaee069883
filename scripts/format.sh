#!/usr/bin/env bash
# Applies .clang-format to every C++ file of the project (--check: changes nothing, lists
# the files that differ and fails if any does; the test suite runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -co --exclude-standard '*.cpp' '*.hpp' | grep -v node_modules)
if [ "${1:-}" = --check ]; then
  bad=0
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run --Werror "$f" 2>/dev/null; then
      echo "not formatted: $f (scripts/format.sh formats it)"
      bad=1
    fi
  done
  exit $bad
fi
clang-format -i "${files[@]}"
