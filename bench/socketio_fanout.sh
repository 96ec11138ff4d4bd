#!/usr/bin/env bash
# bench/socketio_fanout.sh — Socket.IO room fan-out and memory per connection,
# svcd (2 workers) vs Node socket.io 4.8.1 (1 process, and 2 processes with
# @socket.io/cluster-adapter, PM2-cluster style), side by side in one run.
#
# The same client (test/integration/test_chat_driver.js, socket.io-client 4.8.1,
# WebSocket transport) drives every server:
#   fan-out  CLIENTS clients join one room, 10 of them send MESSAGES messages with
#            acks; delivered messages/s counted at the clients, and every client
#            must get every message exactly once (dupes/missing printed);
#   idle     IDLE clients connect and stay; RSS growth of the server processes
#            divided by IDLE = memory per idle connection.
# Prints each figure and the svcd/node ratios. Bounded: every step has a timeout;
# loopback only. Not run by `make test`; never asserts.
#
# Usage: bench/socketio_fanout.sh       (IDLE=2000 FANOUT="200:100" for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FANOUT=${FANOUT:-"200:200 2000:50"} # clients:messages pairs
IDLE=${IDLE:-10000}
BUILD=${SVCD_BUILD:-build}
SECRET="bench-Secret-0123456789abcdefghijklmnopqrstuvwxyz"
[ -x "$BUILD/svcd" ] || make -s all
[ -d bench/node_modules/socket.io ] || (cd bench && npm ci --no-audit --no-fund --loglevel=error)
[ -d test/integration/node_modules/socket.io-client ] || bash scripts/deps.sh --test
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export NODE_PATH="$ROOT/test/integration/node_modules:$ROOT/bench/node_modules"
DRIVER="$ROOT/test/integration/test_chat_driver.js"

TMP=$(mktemp -d /tmp/svcd-bench-sio.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; return 1
}
# RSS (kB) of a process and all its descendants
rss_tree() {
  local total=0 p
  for p in $(pstree -p "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()'); do
    total=$((total + $(awk '/^VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)))
  done
  echo "$total"
}

start_svcd() {
  local port=$1
  mkdir -p "$TMP/svcd"
  cat >"$TMP/svcd/svcd.yaml" <<EOF
env: development
listen: [ { address: "127.0.0.1:$port" } ]
workers: 2
run_dir: run
limits: { body: 1MiB, header: 16KiB, ws_message: 1MiB, connections: 30000 }
storage: { driver: sqlite, path: svcd.db }
auth: { jwt_secret: "$SECRET", client_url: "http://localhost:5173" }
log: { file: svcd.log, format: text, level: warn }
EOF
  "$BUILD/svcd" -c "$TMP/svcd/svcd.yaml" >"$TMP/svcd/out.log" 2>&1 &
  PIDS+=($!)
  echo $!
}

start_node() {
  local port=$1 workers=$2
  node "$ROOT/bench/socketio_node_server.js" "$port" "$workers" >"$TMP/node-$workers.log" 2>&1 &
  PIDS+=($!)
  echo $!
}

fanout() { # url clients messages -> "rate dupes missing"
  timeout 300 node "$DRIVER" fanout "$1" "$SECRET" "$2" "$3" websocket 10 |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print("%.0f %d %d" % (r.get("rate",0), r.get("dupes",-1), r.get("missing",-1)))'
}

idle_rss() { # url serverpid -> kB per connection
  local before after
  before=$(rss_tree "$2")
  coproc IDLEC { timeout 600 node "$DRIVER" idle "$1" "$SECRET" "$IDLE"; }
  local line
  read -r line <&"${IDLEC[0]}" || true
  sleep 1
  after=$(rss_tree "$2")
  exec {IDLEC[1]}>&- || true
  wait "$IDLEC_PID" 2>/dev/null || true
  case "$line" in *'"idle"'*) ;; *) echo "n/a"; return ;; esac
  python3 -c "print('%.1f' % (($after - $before) / $IDLE))"
}

declare -A RATE RSS
for server in svcd node1 node2; do
  port=$(free_port)
  case $server in
    svcd) pid=$(start_svcd "$port") ;;
    node1) pid=$(start_node "$port" 1) ;;
    node2) pid=$(start_node "$port" 2) ;;
  esac
  wait_port "$port"
  sleep 0.5
  url="http://127.0.0.1:$port"
  for pair in $FANOUT; do
    c=${pair%%:*} m=${pair##*:}
    read -r rate dupes missing < <(fanout "$url" "$c" "$m")
    RATE[$server:$c]=$rate
    printf '%-6s fan-out %5d clients x %4d msgs: %9s deliveries/s  (dupes %s, missing %s)\n' \
      "$server" "$c" "$m" "$rate" "$dupes" "$missing"
  done
  if [ "$server" != node2 ]; then
    RSS[$server]=$(idle_rss "$url" "$pid")
    printf '%-6s idle: %d connections, %s kB RSS per connection\n' "$server" "$IDLE" "${RSS[$server]}"
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done

echo "---- ratios (svcd / node) ----"
for pair in $FANOUT; do
  c=${pair%%:*}
  python3 -c "
s,n1,n2=${RATE[svcd:$c]:-0},${RATE[node1:$c]:-0},${RATE[node2:$c]:-0}
print('fan-out %5d clients: svcd/node(1 proc) %.2fx   svcd/node(2 procs, cluster-adapter) %.2fx' % ($c, s/max(n1,1), s/max(n2,1)))"
done
python3 -c "
s,n='${RSS[svcd]:-n/a}','${RSS[node1]:-n/a}'
try: print('memory per idle connection: svcd %s kB, node %s kB, node/svcd %.1fx' % (s, n, float(n)/max(float(s),0.01)))
except ValueError: print('memory per idle connection: svcd %s kB, node %s kB' % (s, n))"
