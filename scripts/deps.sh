#!/usr/bin/env bash
# Installs every Debian package the build and the tests need, non-interactively and
# idempotently: a package already present is not fetched again, so `make run` and
# `make test` can call this every time. Python test packages go into a venv inside
# the repository (build/venv) so nothing outside the checkout is needed or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(gcc make pkgconf libev-dev libyaml-dev libssl-dev libhttp-parser-dev
  libsystemd-dev libjansson-dev libsqlite3-dev libmongoc-dev libbson-dev libcmocka-dev libwslay-dev libcap-dev clang-format openssl curl procps iproute2 psmisc python3-venv)
# ASan/UBSan runtime comes with gcc (libasan8, libubsan1) on Debian 12.

missing=()
for p in "${BUILD_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
  VENV=build/venv
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  # Reinstall whenever test/requirements.txt is newer than the stamp of the last
  # successful install (a pin added or changed), or an import is missing.
  STAMP="$VENV/.requirements.stamp"
  if [ ! -f "$STAMP" ] || [ test/requirements.txt -nt "$STAMP" ] ||
     ! "$VENV/bin/python" -c 'import pytest, requests, socketio, websocket' 2>/dev/null; then
    echo "deps: pip install -r test/requirements.txt"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r test/requirements.txt
    touch "$STAMP"
  fi

  # Proxy/preview tests (issue 4): Node (Vite 7 needs >= 20.19), Debian's Chromium
  # for headless page checks, and the npm peers pinned in test/integration/package-lock.json
  # (ws, vite, playwright-core), installed with `npm ci` into test/integration/node_modules.
  # libFuzzer targets (test/fuzz, run by `make test` and `make fuzz`): Debian 12's
  # clang 14 and its runtime libraries (libclang_rt.fuzzer, asan, ubsan).
  TEST_PKGS=(chromium clang libclang-rt-14-dev wrk)
  command -v node >/dev/null && command -v npm >/dev/null || TEST_PKGS+=(nodejs npm)
  tmissing=()
  for p in "${TEST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || tmissing+=("$p")
  done
  if [ "${#tmissing[@]}" -gt 0 ]; then
    echo "deps: installing ${tmissing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${tmissing[@]}"
  fi
  IT=test/integration
  if [ -f "$IT/package-lock.json" ] &&
     { [ ! -f "$IT/node_modules/.package-lock.json" ] ||
       [ "$IT/package-lock.json" -nt "$IT/node_modules/.package-lock.json" ]; }; then
    echo "deps: npm ci in $IT"
    (cd "$IT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
