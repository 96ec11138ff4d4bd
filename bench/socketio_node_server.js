// socketio_node_server.js — the Node anchor for socketio_fanout.sh: the same chat
// events as svcd (join with ack; message {room,text} broadcast to the room as
// {id,room,from,text,ts} and acked with the id), in-memory, no auth check.
//   node socketio_node_server.js PORT [WORKERS]
// WORKERS > 1: Node's cluster module + @socket.io/cluster-adapter (PM2-cluster style).
"use strict";
const cluster = require("cluster");
const http = require("http");
const { Server } = require("socket.io");
const port = +process.argv[2];
const workers = +(process.argv[3] || 1);

function serve(adapter) {
  const server = http.createServer();
  const io = new Server(server, adapter ? { adapter } : {});
  let seq = 0;
  io.on("connection", (socket) => {
    const user = "u" + socket.id;
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack({ ok: true, room });
    });
    socket.on("message", (m, ack) => {
      const id = process.pid + "-" + ++seq;
      io.to(m.room).emit("message", { id, room: m.room, from: user, text: m.text, ts: Date.now() });
      if (typeof ack === "function") ack({ ok: true, id });
    });
  });
  server.listen(port, "127.0.0.1");
}

if (workers <= 1) {
  serve(null);
  console.log("ready");
} else if (cluster.isPrimary) {
  const { setupPrimary } = require("@socket.io/cluster-adapter");
  setupPrimary();
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on("listening", () => {
      if (++ready === workers) console.log("ready");
    });
  }
  process.on("SIGTERM", () => {
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exit(0);
  });
} else {
  const { createAdapter } = require("@socket.io/cluster-adapter");
  serve(createAdapter());
}
