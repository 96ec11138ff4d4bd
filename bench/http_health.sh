#!/usr/bin/env bash
# bench/http_health.sh — GET /health throughput and p99 latency, svcd vs nginx.
#
# Both servers run side by side in the same run, on loopback, with 2 worker
# processes each: svcd answers its real /health JSON; nginx (Debian nginx-light)
# answers a fixed JSON body with `return 200`. Both write an access log line per
# request to a file, as a production setup would. wrk drives each at 64 and 256
# connections for DURATION seconds (default 10). Prints requests/s and p99 for
# each and the svcd/nginx ratios. Not run by `make test`; never asserts.
#
# TLS=1 runs the same over TLS on both (one P-256 certificate, TLS 1.3, new
# connections are rare since wrk keeps them alive: it measures the record layer
# and, for svcd, its plaintext shuttle — see worker/tls.c).
#
# Usage: bench/http_health.sh            (DURATION=5 bench/http_health.sh for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
CONNS=${CONNS:-"64 256"}
THREADS=${THREADS:-2}
TLS=${TLS:-0}

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
BUILD=${SVCD_BUILD:-build}   # binaries: $BUILD/svcd (override to bench another build)
[ -x "$BUILD/svcd" ] || make -s all

TMP=$(mktemp -d /tmp/svcd-bench-http.XXXXXX)
SVCD_PID=""; NGINX_PID=""
cleanup() {
  [ -n "$SVCD_PID" ] && kill -TERM "$SVCD_PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null || true
  for pid in $SVCD_PID $NGINX_PID; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

if [ "$TLS" = 1 ]; then
  SCHEME=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
  SVCD_TLS="
    tls: { cert: $TMP/cert.pem, key: $TMP/key.pem }"
  NGINX_TLS=" ssl;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3"
else
  SCHEME=http; SVCD_TLS=""; NGINX_TLS=""
fi
CURL_K=""; [ "$TLS" = 1 ] && CURL_K="-k"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 200); do curl $CURL_K -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: $1 never answered" >&2; exit 1
}

# --- svcd
SP=$(free_port)
mkdir -p "$TMP/svcd"
cat >"$TMP/svcd/svcd.yaml" <<EOF
env: development
listen:
  - address: 127.0.0.1:$SP$SVCD_TLS
workers: 2
run_dir: run
limits: { connections: 10000 }
storage: { driver: sqlite, path: svcd.db }
log: { file: svcd.log, format: text, level: info }
EOF
env -u PORT -u NODE_ENV -u NOTIFY_SOCKET "$(cd "$ROOT" && realpath "$BUILD")/svcd" -c "$TMP/svcd/svcd.yaml" \
  >"$TMP/svcd/stdout" 2>"$TMP/svcd/stderr" &
SVCD_PID=$!
wait_http "$SCHEME://127.0.0.1:$SP/health"

# --- nginx
NP=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log $TMP/nginx/logs/access.log;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NP$NGINX_TLS;
    location = /health {
      default_type application/json;
      return 200 '{"status":"OK","service":"alive","uptime":1.0,"timestamp":"2025-01-01T00:00:00.000Z"}';
    }
  }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout" 2>&1 &
NGINX_PID=$!
wait_http "$SCHEME://127.0.0.1:$NP/health"

# wrk --latency prints "Requests/sec: N" and a percentile table with "99%  1.23ms".
to_ms() { # 1.23ms | 456.00us | 1.2s
  python3 -c 'import sys,re
v=sys.argv[1]; m=re.match(r"([\d.]+)(us|ms|s|m)$",v); n=float(m.group(1))
print("%.3f" % (n*{"us":0.001,"ms":1,"s":1000,"m":60000}[m.group(2)]))' "$1"
}
run_wrk() { # url conns -> "rps p99ms"
  local out
  out=$(timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$2" -d"${DURATION}s" --latency "$1")
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local errs
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errs" ] && echo "  note: $errs" >&2
  echo "$rps $(to_ms "$p99")"
}

echo "GET $SCHEME /health, ${DURATION}s per run, wrk -t$THREADS, $(nproc) CPUs (client and servers share them)"
printf "%-6s %14s %12s %14s %12s %10s %10s\n" conns "svcd req/s" "svcd p99ms" "nginx req/s" "nginx p99ms" "rps ratio" "p99 ratio"
for c in $CONNS; do
  # warm-up, then measure; alternate so neither gets a cold or hot machine only
  timeout 10 wrk -t1 -c8 -d1s "$SCHEME://127.0.0.1:$SP/health" >/dev/null
  read -r s_rps s_p99 < <(run_wrk "$SCHEME://127.0.0.1:$SP/health" "$c")
  timeout 10 wrk -t1 -c8 -d1s "$SCHEME://127.0.0.1:$NP/health" >/dev/null
  read -r n_rps n_p99 < <(run_wrk "$SCHEME://127.0.0.1:$NP/health" "$c")
  python3 - "$c" "$s_rps" "$s_p99" "$n_rps" "$n_p99" <<'EOF'
import sys
c, s_rps, s_p99, n_rps, n_p99 = sys.argv[1], *map(float, sys.argv[2:])
print("%-6s %14.0f %12.2f %14.0f %12.2f %10.2f %10.2f" % (
    c, s_rps, s_p99, n_rps, n_p99, s_rps / n_rps, s_p99 / n_p99))
EOF
done
echo "rps ratio = svcd/nginx (higher is better for svcd); p99 ratio = svcd/nginx (lower is better)"
