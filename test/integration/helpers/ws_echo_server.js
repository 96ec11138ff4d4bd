// A WebSocket echo upstream for the proxy tests (npm `ws`).
//   node ws_echo_server.js PORT
// Echoes every message (text or binary) as it came. Text "close:CODE" makes the
// server close with that code; each connection's request path and headers are
// sent first as a JSON text message {"hello":path,"headers":{...}}. Text
// "unlisten" closes the listening socket but keeps open connections.
'use strict';
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2]);
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws, req) => {
  ws.send(JSON.stringify({ hello: req.url, headers: req.headers }));
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'unlisten') {
      // stop accepting new connections, keep the open ones (a "half-dead" server)
      wss._server.close();
      ws.send('unlistened');
      return;
    }
    if (!isBinary && data.toString().startsWith('close:')) {
      ws.close(Number(data.toString().slice(6)), 'server says bye');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});
wss.on('listening', () => console.log('listening ' + port));
