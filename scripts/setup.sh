#!/usr/bin/env bash
# Installs every Debian package fabrik needs to build, test and run its demo.
# Idempotent: packages already present are skipped, so a second run is fast.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git clang-format
  libcaf-dev libssl-dev
  libpaho-mqtt-dev liblmdb-dev lmdb-utils libzip-dev
  python3-dev python3-numpy python3-sklearn
  libspdlog-dev libfmt-dev catch2 libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev
  libaravis-dev libusb-1.0-0-dev aravis-tools
  mosquitto mosquitto-clients python3-paho-mqtt python3-yaml
  procps openssl
  chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# mosquitto's package starts a system broker on 1883; fabrik's tests and demo start their own.

# npm packages, each folder pinned by its package-lock.json: web/ holds the pages' chart
# library (uPlot; the build copies it), tests/browser/ the browser tests' driver
# (playwright-core, which uses Debian's chromium and downloads nothing), tests/opcua/ the
# OPC UA server the tests and bench/opcua talk to (node-opcua 2.182: later ones need
# Node 22).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
npm_ci() {
  local dir=$1
  if [ -d "$dir/node_modules" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "setup: npm packages of ${dir#"$root"/} present"
    return
  fi
  if ! command -v npm >/dev/null; then
    echo "setup: installing npm"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends npm
  fi
  echo "setup: installing the npm packages of ${dir#"$root"/}"
  (cd "$dir" && npm ci --no-audit --no-fund)
  touch "$dir/node_modules"
}
npm_ci "$root/web"
npm_ci "$root/tests/browser"
npm_ci "$root/tests/opcua"
