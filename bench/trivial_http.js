// The PM2 anchor of bench/respawn_reload.py: the smallest Node HTTP server,
// run in PM2 cluster mode. It answers /health with its pid so the bench can
// tell when a respawned instance is accepting. Handles SIGINT (PM2's stop and
// reload signal) by closing the listener and letting in-flight requests finish.
'use strict';
const http = require('http');
const port = parseInt(process.env.PORT || '3000', 10);
const server = http.createServer((req, res) => {
  const body = JSON.stringify({ status: 'OK', service: 'alive', pid: process.pid,
    uptime: process.uptime(), timestamp: new Date().toISOString() });
  res.writeHead(200, { 'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 65000;
server.listen(port, '127.0.0.1', () => {
  if (process.send) process.send('ready');
});
process.on('SIGINT', () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
});
