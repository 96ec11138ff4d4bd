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
#   idle     IDLE WebSocket clients (default 10,000) connect in waves of 500, each
#            joins a room, and stay silent; RSS growth of all the server's processes
#            (svcd: master, coordinator, workers; node: the primary and its workers)
#            divided by IDLE = memory per idle connection. Measured first, on a fresh
#            server, and only if all IDLE clients got in and none dropped.
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
# RSS (kB) of a process and all its descendant processes (not threads: pstree -p
# lists threads too, and each thread's /proc status repeats the process's RSS)
rss_tree() {
  ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
    { rss[$1] = $3; kids[$2] = kids[$2] " " $1 }
    function sum(p,   n, i, a, t) { t = rss[p]; n = split(kids[p], a, " ");
      for (i = 1; i <= n; i++) t += sum(a[i]); return t }
    END { print sum(root) + 0 }'
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
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

start_node() {
  local port=$1 workers=$2
  node "$ROOT/bench/socketio_node_server.js" "$port" "$workers" >"$TMP/node-$workers.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

fanout() { # url clients messages -> "rate dupes missing"
  timeout 300 node "$DRIVER" fanout "$1" "$SECRET" "$2" "$3" websocket 10 |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print("%.0f %d %d" % (r.get("rate",0), r.get("dupes",-1), r.get("missing",-1)))'
}

# idle_rss URL SERVERPID -> "kB-per-connection total-growth-MB" for exactly $IDLE
# clients, or "n/a reason". The driver connects $IDLE WebSocket clients (waves of
# 500, each joins room "idle"), says {"idle":N} once all are in, and keeps them
# connected while its stdin (a fifo held open here) stays open.
idle_rss() {
  local before after fifo="$TMP/idle.fifo" outf="$TMP/idle.out" dpid ok=0
  rm -f "$fifo" "$outf"
  mkfifo "$fifo"
  sleep 1
  before=$(rss_tree "$2")
  timeout 400 node "$DRIVER" idle "$1" "$SECRET" "$IDLE" <"$fifo" >"$outf" 2>"$TMP/idle.err" &
  dpid=$!
  exec 7>"$fifo"
  for _ in $(seq 2400); do # <= 240 s
    grep -q '"idle"\|"error"' "$outf" 2>/dev/null && break
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "\"idle\":$IDLE[,}]" "$outf" 2>/dev/null && ok=1
  if [ "$ok" = 1 ]; then
    sleep 3 # let the servers settle (no traffic: heart-beats only)
    after=$(rss_tree "$2")
  fi
  exec 7>&-
  wait "$dpid" 2>/dev/null || true
  # every client must still have been connected when the measurement ended
  grep -q "\"idle_end\":$IDLE,\"dropped\":0" "$outf" 2>/dev/null || ok=0
  if [ "$ok" != 1 ]; then
    echo "n/a ($(tr -d '\n' <"$outf" | tail -c 200) $(tail -c 200 "$TMP/idle.err" | tr -d '\n'))"
    return
  fi
  python3 -c "print('%.1f %.1f' % (($after - $before) / $IDLE, ($after - $before) / 1024))"
}

declare -A RATE RSS
for server in svcd node1 node2; do
  port=$(free_port)
  case $server in
    svcd) start_svcd "$port" ;;
    node1) start_node "$port" 1 ;;
    node2) start_node "$port" 2 ;;
  esac
  pid=$SERVER_PID
  wait_port "$port"
  sleep 0.5
  url="http://127.0.0.1:$port"
  # idle first, on a fresh server: heap grown by the fan-out runs would hide growth
  read -r per total rest < <(idle_rss "$url" "$pid")
  RSS[$server]=$per
  if [ "$per" = n/a ]; then
    printf '%-6s idle: %d connections: not measured %s %s\n' "$server" "$IDLE" "$total" "$rest"
  else
    printf '%-6s idle: %d connections (all in, none dropped): %s kB RSS per connection (+%s MB, all processes)\n' \
      "$server" "$IDLE" "$per" "$total"
  fi
  for pair in $FANOUT; do
    c=${pair%%:*} m=${pair##*:}
    read -r rate dupes missing < <(fanout "$url" "$c" "$m")
    RATE[$server:$c]=$rate
    printf '%-6s fan-out %5d clients x %4d msgs: %9s deliveries/s  (dupes %s, missing %s)\n' \
      "$server" "$c" "$m" "$rate" "$dupes" "$missing"
  done
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
s,n1,n2='${RSS[svcd]:-n/a}','${RSS[node1]:-n/a}','${RSS[node2]:-n/a}'
def r(n):
    try: return '%.1fx' % (float(n) / max(float(s), 0.01))
    except ValueError: return 'n/a'
print('memory per idle connection ($IDLE clients): svcd %s kB, node(1 proc) %s kB, node(2 procs) %s kB; node/svcd %s (1 proc), %s (2 procs)' % (s, n1, n2, r(n1), r(n2)))"
