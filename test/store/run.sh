#!/usr/bin/env bash
# test/store/run.sh — the storage contract suite against both backends.
#
# Builds test/store/contract.c with store/ (into $B, default build/store-test),
# runs it on SQLite, then installs FerretDB v1.24.2 if missing (scripts/ferretdb.sh),
# starts it on a free loopback port with its SQLite handler in a temporary directory,
# runs the same binary against it, and stops it by pid. Exits non-zero if any run
# fails. Options (environment):
#   SAN=1                 build with ASan+UBSan
#   STORE_BACKENDS="sqlite mongodb"   which backends to run (default both)
#   SVCD_TEST_MONGODB_URI use that server instead of starting FerretDB
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BACKENDS="${STORE_BACKENDS:-sqlite mongodb}"
if [ "${SAN:-0}" = 1 ]; then B="${B:-build-asan/store-test}"; else B="${B:-build/store-test}"; fi
mkdir -p "$B"

# Debian packages the build needs: the one list in scripts/deps.sh.
bash "$ROOT/scripts/deps.sh"

PKGS="yaml-0.1 libsystemd openssl jansson sqlite3 libmongoc-1.0"
CFLAGS="-O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -fno-strict-aliasing"
LDFLAGS=""
if [ "${SAN:-0}" = 1 ]; then
  CFLAGS="$CFLAGS -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  LDFLAGS="-fsanitize=address,undefined"
fi
# shellcheck disable=SC2046,SC2086
${CC:-gcc} $CFLAGS $(pkg-config --cflags $PKGS) $LDFLAGS -o "$B/contract" \
  store/*.c common/config.c common/units.c common/buf.c test/store/contract.c \
  $(pkg-config --libs $PKGS) -lcmocka -lm -lpthread

TMP="$(mktemp -d /tmp/svcd-store-test.XXXXXX)"
FERRET_PID=""
cleanup() {
  if [ -n "$FERRET_PID" ] && kill -0 "$FERRET_PID" 2>/dev/null; then
    kill "$FERRET_PID" 2>/dev/null || true
    wait "$FERRET_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

status=0
for backend in $BACKENDS; do
  case "$backend" in
    sqlite)
      echo "== store contract: sqlite"
      SVCD_TEST_STORE=sqlite SVCD_TEST_DIR="$TMP/sqlite" "$B/contract" || status=1
      ;;
    mongodb)
      uri="${SVCD_TEST_MONGODB_URI:-}"
      if [ -z "$uri" ]; then
        t0=$SECONDS
        bash scripts/ferretdb.sh install
        port="$(bash scripts/ferretdb.sh free-port)"
        FERRET_PID="$(bash scripts/ferretdb.sh start "$port" "$TMP/ferretdb")"
        uri="mongodb://127.0.0.1:$port"
        echo "== FerretDB pid $FERRET_PID on 127.0.0.1:$port (ready after $((SECONDS - t0))s)"
      fi
      echo "== store contract: mongodb ($uri)"
      SVCD_TEST_STORE=mongodb SVCD_TEST_MONGODB_URI="$uri" "$B/contract" || status=1
      if [ -n "$FERRET_PID" ]; then
        kill "$FERRET_PID" 2>/dev/null || true
        wait "$FERRET_PID" 2>/dev/null || true
        FERRET_PID=""
      fi
      ;;
    *) echo "store-test: unknown backend '$backend'" >&2; status=1 ;;
  esac
done
exit "$status"
