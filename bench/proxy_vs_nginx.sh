#!/usr/bin/env bash
# bench/proxy_vs_nginx.sh — reverse proxy throughput and latency, svcd vs nginx.
#
# One upstream for both: an nginx instance (2 workers) answering a small fixed
# JSON body. In front of it, side by side in the same run: svcd (2 workers,
# proxy.routes prefix / -> upstream, its per-worker keep-alive pool) and nginx
# (Debian nginx-light, 2 workers, proxy_pass to an upstream block with
# `keepalive 64`, HTTP/1.1, Connection ""). Both proxies write an access log line
# per request. wrk drives each at 64 and 256 connections for DURATION seconds
# (default 5); prints req/s, p50 and p99 for each, and the svcd/nginx ratios.
# Then WebSocket echo through the same two proxies to one upstream, the npm `ws`
# echo server of the integration tests (test/integration/helpers/ws_echo_server.js,
# one Node process): bench/ws_echo_client.js opens WS_CONNS connections (default
# 64) that each ping-pong a WS_SIZE-byte text message (default 32) for DURATION
# seconds; prints messages/s, round-trip p50/p99 for each and the ratios.
# Loopback only; every process started here is stopped by PID at exit; each wrk
# run is bounded by `timeout`. Not run by `make test`; never asserts.
#
# Usage: bench/proxy_vs_nginx.sh        (DURATION=10 CONNS="64 256 512" WS_CONNS="64 256")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
CONNS=${CONNS:-"64 256"}
THREADS=${THREADS:-2}
WS_CONNS=${WS_CONNS:-"64"}
WS_SIZE=${WS_SIZE:-32}
WS_PROCS=${WS_PROCS:-2}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
NODE_MODULES=$ROOT/test/integration/node_modules
if [ ! -d "$NODE_MODULES/ws" ]; then
  (cd test/integration && npm ci --no-audit --no-fund --loglevel=error)
fi
BUILD=${SVCD_BUILD:-build}
[ -x "$BUILD/svcd" ] || make -s all

TMP=$(mktemp -d /tmp/svcd-bench-proxy.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: $1 never answered" >&2; exit 1
}
nginx_conf() { # dir port server-block-body [extra http-level]
  mkdir -p "$1/logs"
  cat >"$1/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log ${5:-off};
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
  $4
  server {
    listen 127.0.0.1:$2;
    $3
  }
}
EOF
}

# --- the upstream (shared)
UP=$(free_port)
nginx_conf "$TMP/up" "$UP" 'location / { default_type application/json; return 200 "{\"ok\":true,\"from\":\"upstream\",\"pad\":\"0123456789abcdef0123456789abcdef\"}"; }' "" "off"
"$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" >"$TMP/up/stdout" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP/x"

# --- the WebSocket echo upstream (shared)
WSUP=$(free_port)
node "$ROOT/test/integration/helpers/ws_echo_server.js" "$WSUP" >"$TMP/ws-up.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$WSUP") 2>/dev/null && break; sleep 0.05; done

# --- svcd as the proxy
SP=$(free_port)
mkdir -p "$TMP/svcd"
cat >"$TMP/svcd/svcd.yaml" <<EOF
env: development
listen:
  - address: 127.0.0.1:$SP
workers: 2
run_dir: run
limits: { connections: 10000 }
storage: { driver: sqlite, path: svcd.db }
proxy:
  routes:
    - { prefix: /, upstream: "http://127.0.0.1:$UP" }
    - { prefix: /ws/, upstream: "http://127.0.0.1:$WSUP" }
log: { file: svcd.log, format: text, level: info }
EOF
env -u PORT -u NODE_ENV -u NOTIFY_SOCKET "$(cd "$ROOT" && realpath "$BUILD")/svcd" -c "$TMP/svcd/svcd.yaml" \
  >"$TMP/svcd/stdout" 2>"$TMP/svcd/stderr" &
PIDS+=($!)
wait_http "http://127.0.0.1:$SP/x"

# --- nginx as the proxy
NP=$(free_port)
nginx_conf "$TMP/px" "$NP" 'location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $proxy_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host; }
    location /ws/ { proxy_pass http://wsup; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; proxy_set_header Host $proxy_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_read_timeout 120s; }' \
  "upstream up { server 127.0.0.1:$UP; keepalive 64; } upstream wsup { server 127.0.0.1:$WSUP; }" "$TMP/px/logs/access.log"
"$NGINX" -p "$TMP/px" -c "$TMP/px/nginx.conf" >"$TMP/px/stdout" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NP/x"

to_ms() {
  python3 -c 'import sys,re
v=sys.argv[1]; m=re.match(r"([\d.]+)(us|ms|s|m)$",v); n=float(m.group(1))
print("%.3f" % (n*{"us":0.001,"ms":1,"s":1000,"m":60000}[m.group(2)]))' "$1"
}
run_wrk() { # url conns -> "rps p50ms p99ms"
  local out rps p50 p99 errs
  out=$(timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$2" -d"${DURATION}s" --latency "$1")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errs" ] && echo "  note ($1, $2 conns): $errs" >&2
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

echo "GET via reverse proxy to one nginx upstream, ${DURATION}s per run, wrk -t$THREADS, $(nproc) CPUs shared by client, proxies and upstream"
printf "%-6s %11s %9s %9s %11s %9s %9s %9s %9s %9s\n" conns "svcd rps" "svcd p50" "svcd p99" \
  "nginx rps" "ngx p50" "ngx p99" "rps x" "p50 x" "p99 x"
for c in $CONNS; do
  timeout 10 wrk -t1 -c8 -d1s "http://127.0.0.1:$SP/x" >/dev/null
  read -r s_rps s_p50 s_p99 < <(run_wrk "http://127.0.0.1:$SP/x" "$c")
  timeout 10 wrk -t1 -c8 -d1s "http://127.0.0.1:$NP/x" >/dev/null
  read -r n_rps n_p50 n_p99 < <(run_wrk "http://127.0.0.1:$NP/x" "$c")
  python3 - "$c" "$s_rps" "$s_p50" "$s_p99" "$n_rps" "$n_p50" "$n_p99" <<'EOF'
import sys
c = sys.argv[1]
s_rps, s_p50, s_p99, n_rps, n_p50, n_p99 = map(float, sys.argv[2:])
print("%-6s %11.0f %9.2f %9.2f %11.0f %9.2f %9.2f %9.2f %9.2f %9.2f" % (
    c, s_rps, s_p50, s_p99, n_rps, n_p50, n_p99, s_rps / n_rps, s_p50 / n_p50, s_p99 / n_p99))
EOF
done
echo "rps x = svcd/nginx (higher is better for svcd); p50 x, p99 x = svcd/nginx (lower is better)"

ws_run() { # url conns -> "rate p50ms p99ms errors"
  local out
  out=$(NODE_PATH="$NODE_MODULES" timeout $((DURATION + 40)) node bench/ws_echo_client.js "$1" "$2" "$DURATION" "$WS_SIZE" "$WS_PROCS")
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.1f %.3f %.3f %d" % (r["rate"], r["p50ms"], r["p99ms"], r["errors"]))' "$out"
}
echo
echo "WebSocket echo via reverse proxy to one ws upstream (Node, npm ws), ${DURATION}s per run, ${WS_SIZE}-byte text messages, one in flight per connection, client in $WS_PROCS processes"
printf "%-6s %11s %9s %9s %11s %9s %9s %9s %9s %9s\n" conns "svcd msg/s" "svcd p50" "svcd p99" \
  "nginx msg/s" "ngx p50" "ngx p99" "msg/s x" "p50 x" "p99 x"
for c in $WS_CONNS; do
  NODE_PATH="$NODE_MODULES" timeout 30 node bench/ws_echo_client.js "ws://127.0.0.1:$SP/ws/warm" 8 1 >/dev/null
  read -r s_rate s_p50 s_p99 s_err < <(ws_run "ws://127.0.0.1:$SP/ws/echo" "$c")
  NODE_PATH="$NODE_MODULES" timeout 30 node bench/ws_echo_client.js "ws://127.0.0.1:$NP/ws/warm" 8 1 >/dev/null
  read -r n_rate n_p50 n_p99 n_err < <(ws_run "ws://127.0.0.1:$NP/ws/echo" "$c")
  [ "$s_err$n_err" = "00" ] || echo "  note ($c conns): connection errors svcd=$s_err nginx=$n_err" >&2
  python3 - "$c" "$s_rate" "$s_p50" "$s_p99" "$n_rate" "$n_p50" "$n_p99" <<'EOF'
import sys
c = sys.argv[1]
s_r, s_p50, s_p99, n_r, n_p50, n_p99 = map(float, sys.argv[2:])
print("%-6s %11.0f %9.2f %9.2f %11.0f %9.2f %9.2f %9.2f %9.2f %9.2f" % (
    c, s_r, s_p50, s_p99, n_r, n_p50, n_p99, s_r / n_r, s_p50 / n_p50, s_p99 / n_p99))
EOF
done
echo "msg/s x = svcd/nginx (higher is better for svcd); p50 x, p99 x = round-trip svcd/nginx (lower is better)"
