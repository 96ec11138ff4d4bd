// booking_push_client.js — one socket.io-client@4 peer for test_booking_storage.py:
// logs in with the JWT given on the command line and prints, one JSON line each,
// {"ev":"connected","id":...}, every {"ev":"booking:update","doc":{...}} it receives,
// and {"ev":"connect_error",...}/{"ev":"disconnect",...}. Exits when stdin closes.
//
//   node booking_push_client.js URL TOKEN [websocket|polling]
"use strict";
const { io } = require("socket.io-client");

const [url, token, transport] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const opts = { auth: { token }, reconnection: false };
if (transport) opts.transports = [transport];
const sock = io(url, opts);
sock.on("connect", () => out({ ev: "connected", id: sock.id }));
sock.on("connect_error", (e) => out({ ev: "connect_error", message: String(e && e.message) }));
sock.on("disconnect", (r) => out({ ev: "disconnect", reason: String(r) }));
sock.on("booking:update", (doc) => out({ ev: "booking:update", doc }));
process.stdin.on("data", () => {});
process.stdin.on("end", () => {
  sock.close();
  process.exit(0);
});
