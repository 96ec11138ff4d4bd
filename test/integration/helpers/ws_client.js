// The npm `ws` client, driven by the proxy tests. Prints one JSON line per event.
//   node ws_client.js URL echo      hello + text + 1 MiB binary echoed, then close 1000
//   node ws_client.js URL servclose asks the server to close with 4001
//   node ws_client.js URL hold      stays open until the server or the network ends it
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');
const [url, mode] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const ws = new WebSocket(url, { maxPayload: 16 * 1024 * 1024, handshakeTimeout: 10000 });
const big = crypto.randomBytes(1024 * 1024);
let step = 0;
const deadline = setTimeout(() => { out({ event: 'timeout', step }); process.exit(2); },
  Number(process.env.WS_CLIENT_TIMEOUT_MS || 60000));
ws.on('unexpected-response', (req, res) => {
  out({ event: 'unexpected-response', status: res.statusCode });
  clearTimeout(deadline);
  process.exit(3);
});
ws.on('error', (e) => out({ event: 'error', message: String(e && e.message) }));
ws.on('open', () => out({ event: 'open' }));
ws.on('message', (data, isBinary) => {
  if (step === 0) {
    const hello = JSON.parse(data.toString());
    out({ event: 'hello', path: hello.hello, headers: hello.headers });
    step = 1;
    if (mode === 'echo') ws.send('ping-text');
    else if (mode === 'servclose') ws.send('close:4001');
    return;
  }
  if (mode === 'echo' && step === 1) {
    out({ event: 'text', ok: !isBinary && data.toString() === 'ping-text' });
    step = 2;
    ws.send(big, { binary: true });
    return;
  }
  if (mode === 'echo' && step === 2) {
    out({ event: 'binary', ok: isBinary && Buffer.compare(Buffer.from(data), big) === 0,
          length: data.length });
    step = 3;
    ws.close(1000, 'done');
  }
});
ws.on('close', (code, reason) => {
  out({ event: 'close', code, reason: reason.toString() });
  clearTimeout(deadline);
  process.exit(0);
});
