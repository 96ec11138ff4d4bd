// bench/ws_echo_client.js — bounded WebSocket ping-pong load driver (npm `ws`).
//
//   node ws_echo_client.js URL CONNS SECONDS [SIZE] [PROCS]
//
// Opens CONNS connections (spread over PROCS forked processes, default 1), each
// sending one SIZE-byte text message (default 32) and waiting for its echo
// before sending the next, for SECONDS. The first message of a connection (the
// echo server's JSON hello) is skipped. Prints one JSON line:
//   {"conns":N,"seconds":S,"msgs":M,"rate":M/S,"p50ms":..,"p99ms":..,"errors":E}
// Bounded: every process exits at SECONDS + 15 s at the latest.
'use strict';
const { fork } = require('child_process');
const WebSocket = require('ws');

const [url, connsArg, secsArg, sizeArg, procsArg] = process.argv.slice(2);
const conns = Number(connsArg || 64);
const secs = Number(secsArg || 5);
const size = Number(sizeArg || 32);
const procs = Math.max(1, Math.min(Number(procsArg || 1), conns));

function pct(sorted, p) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

if (process.env.WS_BENCH_CHILD) {
  runChild(Number(process.env.WS_BENCH_CHILD));
} else {
  const results = [];
  let left = procs;
  const hard = setTimeout(() => { console.error('ws bench: children never finished'); process.exit(2); },
    (secs + 20) * 1000);
  for (let i = 0; i < procs; i++) {
    const n = Math.floor(conns / procs) + (i < conns % procs ? 1 : 0);
    const c = fork(__filename, process.argv.slice(2), { env: { ...process.env, WS_BENCH_CHILD: String(n) } });
    c.on('message', (m) => results.push(m));
    c.on('exit', () => {
      if (--left > 0) return;
      clearTimeout(hard);
      const lat = [].concat(...results.map((r) => r.lat)).sort((a, b) => a - b);
      const msgs = results.reduce((a, r) => a + r.msgs, 0);
      const errors = results.reduce((a, r) => a + r.errors, 0) + (procs - results.length);
      const elapsed = Math.max(...results.map((r) => r.elapsed), 0.001);
      console.log(JSON.stringify({ conns, seconds: elapsed, msgs, rate: msgs / elapsed,
        p50ms: pct(lat, 50), p99ms: pct(lat, 99), errors }));
    });
  }
}

function runChild(n) {
  const payload = 'x'.repeat(size);
  let msgs = 0;
  let errors = 0;
  let open = 0;
  let started = null;
  let stopAt = 0;
  const lat = [];
  const sockets = [];
  const bail = setTimeout(() => finish(), (secs + 15) * 1000);
  let finished = false;
  function finish() {
    if (finished) return;
    finished = true;
    clearTimeout(bail);
    for (const ws of sockets) { try { ws.terminate(); } catch (e) { /* gone */ } }
    // keep at most 200k latency samples per process
    const step = Math.max(1, Math.ceil(lat.length / 200000));
    const sample = step === 1 ? lat : lat.filter((_, i) => i % step === 0);
    const elapsed = started ? (Math.min(Date.now(), stopAt) - started) / 1000 : 0;
    process.send({ msgs, errors, elapsed, lat: sample }, () => process.exit(0));
  }
  function begin() {
    started = Date.now();
    stopAt = started + secs * 1000;
    setTimeout(finish, secs * 1000);
    for (const ws of sockets) { ws.t0 = process.hrtime.bigint(); ws.send(payload); }
  }
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10000 });
    sockets.push(ws);
    ws.hello = false;
    ws.on('error', () => { errors++; });
    ws.on('close', () => { if (!finished && started) errors++; });
    ws.on('message', () => {
      if (!ws.hello) {
        ws.hello = true;
        if (++open === n) begin();
        return;
      }
      if (finished) return;
      lat.push(Number(process.hrtime.bigint() - ws.t0) / 1e6);
      msgs++;
      ws.t0 = process.hrtime.bigint();
      ws.send(payload);
    });
  }
}
