#!/usr/bin/env bash
# bench/booking_bench.sh — seat booking throughput (SPEC §5, §9): accepted bookings/s
# with the 202 latency p50/p99, and completed (decided) bookings/s, for
#   svcd on SQLite, svcd on FerretDB, and the Node.js anchor (bench/booking-node:
#   express + the official mongodb driver + an in-process queue, node:cluster) on
#   the same FerretDB,
# side by side in one run, driven by one client (bench/booking_client.py), 2 server
# workers each. Prints each result and the svcd/Node ratios. Not run by `make test`;
# never asserts. Bounded: DURATION s of load per target (default 8) plus at most
# DRAIN s (default 60) waiting for the queue; MAX_JOBS caps the bookings per target on
# FerretDB (default 1500) so its slower queue drains in the bound.
#
# svcd runs its production defaults (access log line per request to a file, SQLite
# WAL with synchronous=NORMAL: durable against kill -9, not power loss — see
# store/store_sqlite.c); the anchor logs nothing.
#
# Usage: bench/booking_bench.sh          (DURATION=4 DRAIN=30 for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-8}
DRAIN=${DRAIN:-60}
MAX_JOBS=${MAX_JOBS:-1500}
PROCS=${PROCS:-2}
THREADS=${THREADS:-16}
BUILD=${SVCD_BUILD:-build}
SECRET="bench-jwt-secret-0123456789abcdefghijklmnop"

[ -x "$BUILD/svcd" ] || make -s all
bash scripts/ferretdb.sh install
command -v node >/dev/null || { echo "bench: node is required for the anchor" >&2; exit 1; }
if [ ! -d bench/booking-node/node_modules/express ] || [ ! -d bench/booking-node/node_modules/mongodb ]; then
  (cd bench/booking-node && npm ci --no-audit --no-fund)
fi

TMP=$(mktemp -d /tmp/svcd-bench-booking.XXXXXX)
FERRET_PID=""; SVCD_PID=""; NODE_PID=""
stop_pid() { # pid: SIGTERM, wait up to 10 s, then SIGKILL (that pid only)
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$SVCD_PID"; stop_pid "$NODE_PID"; stop_pid "$FERRET_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() { bash scripts/ferretdb.sh free-port; }
wait_http() { # url
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: $1 never answered" >&2; exit 1
}

FPORT=$(free_port)
FERRET_PID=$(bash scripts/ferretdb.sh start "$FPORT" "$TMP/ferretdb")
echo "FerretDB pid $FERRET_PID on 127.0.0.1:$FPORT"

start_svcd() { # name driver
  local dir="$TMP/$1" port
  port=$(free_port)
  mkdir -p "$dir"
  local storage="  driver: sqlite
  path: $dir/svcd.db"
  [ "$2" = mongodb ] && storage="  driver: mongodb
  uri: mongodb://127.0.0.1:$FPORT/svcd_bench"
  cat >"$dir/svcd.yaml" <<EOF
env: development
listen:
  - address: 127.0.0.1:$port
workers: 2
run_dir: $dir/run
limits: { connections: 4000 }
storage:
$storage
auth: { jwt_secret: $SECRET, client_url: http://localhost:5173 }
log: { file: $dir/svcd.log, level: info }
EOF
  "$BUILD/svcd" -c "$dir/svcd.yaml" >"$dir/stdout" 2>&1 </dev/null &
  SVCD_PID=$!
  wait_http "http://127.0.0.1:$port/api/health"
  PORT=$port
}

run_client() { # label
  python3 bench/booking_client.py --port "$PORT" --secret "$SECRET" --duration "$DURATION" \
    --drain "$DRAIN" --procs "$PROCS" --threads "$THREADS" --max-jobs "$1" --label "$2"
}

RESULTS=()
echo "== svcd on SQLite"
start_svcd sqlite sqlite
RESULTS+=("$(run_client 40000 svcd-sqlite)"); echo "${RESULTS[-1]}"
stop_pid "$SVCD_PID"; SVCD_PID=""

echo "== svcd on FerretDB"
start_svcd ferret mongodb
RESULTS+=("$(run_client "$MAX_JOBS" svcd-ferretdb)"); echo "${RESULTS[-1]}"
stop_pid "$SVCD_PID"; SVCD_PID=""

echo "== Node (express + mongodb driver, in-process queue) on FerretDB"
PORT=$(free_port)
PORT=$PORT WORKERS=2 MONGODB_URI="mongodb://127.0.0.1:$FPORT/node_bench" JWT_SECRET=$SECRET \
  node bench/booking-node/server.js >"$TMP/node.log" 2>&1 </dev/null &
NODE_PID=$!
for _ in $(seq 300); do grep -q "^ready" "$TMP/node.log" && break; sleep 0.05; done
grep -q "^ready" "$TMP/node.log" || { echo "bench: the Node anchor did not start:" >&2; cat "$TMP/node.log" >&2; exit 1; }
RESULTS+=("$(run_client "$MAX_JOBS" node-ferretdb)"); echo "${RESULTS[-1]}"
stop_pid "$NODE_PID"; NODE_PID=""

printf '%s\n' "${RESULTS[@]}" | python3 -c '
import json, sys
rows = {r["label"]: r for r in map(json.loads, sys.stdin)}
print()
print("%-15s %10s %12s %9s %9s %13s %8s" % ("target", "accepted", "accepted/s", "p50 ms",
                                             "p99 ms", "completed/s", "drained"))
for k, r in rows.items():
    print("%-15s %10d %12.1f %9s %9s %13.1f %8s" % (k, r["accepted"], r["accepted_per_s"],
          r["p50_ms"], r["p99_ms"], r["completed_per_s"], r["drained"]))
    if r["errors"]:
        print("   non-202 answers / errors: %s" % r["errors"])
n = rows.get("node-ferretdb")
if n:
    for k in ("svcd-ferretdb", "svcd-sqlite"):
        s = rows.get(k)
        if not s:
            continue
        f = lambda a, b: ("%.2fx" % (a / b)) if a and b else "n/a"
        print("%s / node-ferretdb: accepted/s %s, p99 %s (lower is better), completed/s %s" % (
            k, f(s["accepted_per_s"], n["accepted_per_s"]), f(s["p99_ms"], n["p99_ms"]),
            f(s["completed_per_s"], n["completed_per_s"])))
'
