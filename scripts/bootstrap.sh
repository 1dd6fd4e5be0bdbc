#!/usr/bin/env bash
# One command to set up citysplat on a fresh Debian/Ubuntu machine with Python 3.11+, then run
#   bash scripts/bootstrap.sh demo   -> the pipeline on the offline sample city
#   bash scripts/bootstrap.sh test   -> the test suite
# Idempotent: a second run reuses .venv and installs only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
case "$what" in
  demo|test) shift ;;
  *) echo "usage: bash scripts/bootstrap.sh demo|test [arguments for citysplat demo / pytest]" >&2
     exit 2 ;;
esac

# open3d needs libusb and libGL at import time.
missing=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
ldconfig -p | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p | grep -q 'libgomp.so.1' || missing+=(libgomp1)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    echo "Installing system libraries for open3d: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: open3d needs ${missing[*]}; install them with your package manager" >&2
    exit 1
  fi
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: citysplat needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip setuptools wheel
# torch is pinned so that a CPU machine never pulls the multi-gigabyte CUDA wheels by accident;
# set CITYSPLAT_TORCH (e.g. "torch==2.13.0" from a CUDA index via PIP_EXTRA_INDEX_URL) to choose.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  "${pip[@]}" install "${CITYSPLAT_TORCH:-torch==2.13.0}"
fi
"${pip[@]}" install -e ".[test]"

# The Khronos glTF validator (npm gltf-validator, pinned in tests/gltf_validator) for the glTF
# export tests: `npm ci` there unless the pinned version is already installed. Without node/npm
# those tests skip, or fail on CI (CI=true), so only CI stops here.
validator=tests/gltf_validator
validator_missing() {
  local ci="${CI:-}" level=warning
  case "${ci,,}" in true|1|yes) level=error ;; esac
  echo "$level: $1: the glTF validator tests skip without it (and fail on CI); install" \
       "Node.js 18+ and npm, then run: npm ci --prefix $validator" >&2
  [ "$level" = warning ] || exit 1
}
if [ "$what" != test ]; then
  :  # the demo needs no Node.js
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  validator_missing "node or npm not found"
else
  version_of() { node -p "try { $1 } catch (e) { '' }"; }
  wanted=$(version_of "require('./$validator/package.json').dependencies['gltf-validator']")
  installed=$(version_of "require('./$validator/node_modules/gltf-validator/package.json').version")
  if [ "$installed" != "$wanted" ]; then
    echo "Installing the Khronos glTF validator (gltf-validator $wanted) for the tests"
    (cd "$validator" && npm ci --no-audit --no-fund --loglevel=error) \
      || validator_missing "npm ci in $validator failed"
  fi
fi

if [ "$what" = demo ]; then
  exec .venv/bin/citysplat demo "$@"
else
  exec .venv/bin/python -m pytest "$@"
fi
