#!/usr/bin/env bash
# ferretdb.sh — the MongoDB-wire server the tests and benchmarks use (MongoDB itself
# cannot be installed here). FerretDB v1 with its SQLite handler needs no other
# service, so one process per test run in a temporary directory is enough.
#
#   scripts/ferretdb.sh install           build FerretDB v1.24.2 from the Go module proxy
#                                          into build/go/bin
#                                          (idempotent: nothing is fetched when present)
#   scripts/ferretdb.sh path              print the binary's path (installing first)
#   scripts/ferretdb.sh start PORT DIR    start it on 127.0.0.1:PORT with its data and
#                                          log in DIR; wait until the port answers;
#                                          print its pid (stop it with `kill PID`)
#   scripts/ferretdb.sh free-port         print a free loopback TCP port
#
# GOPATH, GOMODCACHE, GOCACHE and GOBIN all live under build/go so nothing outside the
# checkout is touched and `make clean` removes it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION=v1.24.2
GODIR="${FERRETDB_GODIR:-$ROOT/build/go}"
BIN="$GODIR/bin/ferretdb"

# FerretDB v1.24.2's go.mod says `go 1.24`; Debian's golang-go is 1.19, which can
# neither build it nor switch toolchains by itself (GOTOOLCHAIN is Go >= 1.21). Any
# Go can fetch the official toolchain as a module from the Go module proxy, though:
# golang.org/toolchain@v0.0.1-goX.linux-ARCH is the release's GOROOT (files arrive
# read-only without exec bits, hence the chmod). Nothing is fetched when the Go on
# PATH is new enough.
GO_MIN=1.24
GO_TOOLCHAIN=go1.24.13
ensure_go_toolchain() {
  local have
  have="$(go env GOVERSION 2>/dev/null || go version | awk '{print $3}')"
  have="${have#go}"
  if [ "$(printf '%s\n%s\n' "$GO_MIN" "$have" | sort -V | head -1)" = "$GO_MIN" ]; then
    return 0
  fi
  local mod="golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.$(go env GOOS)-$(go env GOARCH)"
  echo "ferretdb: Go $have is older than $GO_MIN; fetching $mod from the module proxy" >&2
  local root
  root="$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$root/bin" ] || { echo "ferretdb: go mod download $mod failed" >&2; return 1; }
  chmod -R u+w "$root"
  chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
  export GOROOT="$root" PATH="$root/bin:$PATH"
  echo "ferretdb: using $(go version)" >&2
}

install_ferretdb() {
  if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "${VERSION#v}"; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
      [ -x "$g" ] && PATH="$(dirname "$g"):$PATH" && break
    done
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "ferretdb: installing golang-go (Debian)" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends golang-go >&2
  fi
  mkdir -p "$GODIR/bin" "$GODIR/src"
  export GOPATH="$GODIR" GOMODCACHE="$GODIR/pkg/mod" GOCACHE="$GODIR/cache" GOBIN="$GODIR/bin" \
    GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=0
  ensure_go_toolchain
  local t0=$SECONDS mod="github.com/FerretDB/FerretDB"
  echo "ferretdb: building $mod/cmd/ferretdb@$VERSION (first time: about 2 minutes)" >&2
  # Plain `go install $mod/cmd/ferretdb@$VERSION` builds (checked 2026-12 with Go
  # 1.26 and proxy.golang.org, whose version list answers 200), but the binary is
  # unusable: the module zip lacks the generated build/version/version.txt, which
  # FerretDB embeds, so it panics at start ("Invalid build/version/version.txt file
  # content. Please run `bin/task gen-version`"). So: download exactly that version,
  # copy its source, write the version file that FerretDB's own `task gen-version`
  # would, and build with the module's own go.sum (every dependency pinned and
  # checksum-verified).
  local dir
  dir="$(go mod download -json "$mod@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir" ] || { echo "ferretdb: go mod download $mod@$VERSION failed" >&2; return 1; }
  local src="$GODIR/src/FerretDB-$VERSION"
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  echo "$VERSION" >"$src/build/version/version.txt"
  echo "svcd-source-build" >"$src/build/version/package.txt"
  (cd "$src" && go build -o "$BIN.tmp" ./cmd/ferretdb) >&2
  mv "$BIN.tmp" "$BIN"
  echo "ferretdb: installed $("$BIN" --version | head -1) in $((SECONDS - t0))s at $BIN" >&2
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

start_ferretdb() {
  local port="$1" dir="$2"
  install_ferretdb
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  # --debug-addr=- : no debug HTTP listener (it would otherwise take 127.0.0.1:8088
  # and collide between parallel runs).
  "$BIN" --listen-addr="127.0.0.1:$port" --handler=sqlite --sqlite-url="file:$dir/data/" \
    --state-dir="$dir" --telemetry=disable --debug-addr=- --log-level=warn \
    >"$dir/ferretdb.log" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ferretdb: exited at start-up; log $dir/ferretdb.log:" >&2
      tail -20 "$dir/ferretdb.log" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$pid"
      return 0
    fi
    sleep 0.1
  done
  echo "ferretdb: port $port did not open within 10s; log $dir/ferretdb.log" >&2
  kill "$pid" 2>/dev/null || true
  return 1
}

case "${1:-}" in
  install) install_ferretdb ;;
  path) install_ferretdb && echo "$BIN" ;;
  start) [ $# -eq 3 ] || { echo "usage: $0 start PORT DIR" >&2; exit 2; }; start_ferretdb "$2" "$3" ;;
  free-port) free_port ;;
  *) echo "usage: $0 install | path | start PORT DIR | free-port" >&2; exit 2 ;;
esac
