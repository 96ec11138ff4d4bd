// test_chat_driver.js — real socket.io-client@4 peers for test_chat*.py (and bench/).
//
//   node test_chat_driver.js interactive URL SECRET
//       JSON commands on stdin, one per line; JSON events on stdout, one per line:
//       {"cmd":"connect","name":"c1","user":"alice","opts":{...},"token":"..."?}
//       {"cmd":"emit","name":"c1","event":"join","args":["lobby"],"tag":"t1"}  (acked)
//       {"cmd":"send","name":"c1","event":"x","args":[...]}                    (no ack)
//       {"cmd":"raw","name":"c1","data":"4garbage"}  (an Engine.IO packet as sent)
//       {"cmd":"close","name":"c1"}   {"cmd":"exit"}
//     binary values in args are written {"$bin": base64} both ways (sent as Buffers;
//     received Buffers/ArrayBuffers are reported so)
//     events: connected, connect_error, disconnect, event, ack, upgrade, error
//
//   node test_chat_driver.js idle URL SECRET N
//       N WebSocket clients connect (waves of 500) and join room "idle", print
//       {"idle":N} once all are in, stay connected and silent until stdin closes,
//       then print {"idle_end":still connected,"dropped":n} (memory per connection).
//
//   node test_chat_driver.js fanout URL SECRET CLIENTS MESSAGES TRANSPORTS [SENDERS]
//       CLIENTS clients join room "fan", SENDERS of them send MESSAGES messages in
//       total; prints {"clients","messages","delivered","dupes","missing","acked",
//       "seconds","rate","slots"} once every client got every message (or after 60 s);
//       slots: how many sessions each worker owns (first two characters of the sid).
//
// Default options unless "opts" says otherwise: long-polling first, then the
// upgrade to WebSocket, exactly as a browser app would.
"use strict";
const { io } = require("socket.io-client");
const crypto = require("crypto");
const readline = require("readline");

function b64u(b) {
  return Buffer.from(b).toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function jwt(sub, secret, ttl = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64u(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const p = b64u(JSON.stringify({ sub, iat: now, exp: now + ttl }));
  const s = crypto.createHmac("sha256", secret).update(h + "." + p).digest("base64")
    .replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  return h + "." + p + "." + s;
}

// Binary values cross the JSON pipe as {"$bin": base64}: revive() turns them into
// Buffers before emitting, tag() marks received binaries (Buffer, ArrayBuffer, views)
// so the test sees that they arrived as binary and not as strings.
function revive(x) {
  if (Array.isArray(x)) return x.map(revive);
  if (x && typeof x === "object") {
    if (typeof x.$bin === "string" && Object.keys(x).length === 1) return Buffer.from(x.$bin, "base64");
    const o = {};
    for (const k of Object.keys(x)) o[k] = revive(x[k]);
    return o;
  }
  return x;
}

function tag(x) {
  if (Buffer.isBuffer(x)) return { $bin: x.toString("base64") };
  if (x instanceof ArrayBuffer) return { $bin: Buffer.from(x).toString("base64") };
  if (ArrayBuffer.isView(x)) return { $bin: Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64") };
  if (Array.isArray(x)) return x.map(tag);
  if (x && typeof x === "object") {
    const o = {};
    for (const k of Object.keys(x)) o[k] = tag(x[k]);
    return o;
  }
  return x;
}

function out(o) {
  process.stdout.write(JSON.stringify(o) + "\n");
}

function interactive(url, secret) {
  const sockets = new Map();
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    let c;
    try {
      c = JSON.parse(line);
    } catch (e) {
      out({ ev: "error", message: "bad command: " + line });
      return;
    }
    const s = sockets.get(c.name);
    switch (c.cmd) {
      case "connect": {
        const token = c.token !== undefined ? c.token : jwt(c.user, secret, c.ttl || 3600);
        const opts = Object.assign({ auth: { token } }, c.opts || {});
        const sock = io(url, opts);
        sockets.set(c.name, sock);
        sock.on("connect", () => {
          const eng = sock.io.engine;
          out({ ev: "connected", name: c.name, id: sock.id, transport: eng.transport.name,
                sid: eng.id });
        });
        // from the engine's open on: the upgrade may finish before the CONNECT ack
        sock.io.on("open", () => sock.io.engine.once("upgrade", (t) =>
          out({ ev: "upgrade", name: c.name, transport: t.name })));
        sock.on("connect_error", (e) => out({ ev: "connect_error", name: c.name,
                                                message: e.message, data: e.data || null,
                                                description: typeof e.description === "number" ?
                                                  e.description : null }));
        sock.on("disconnect", (reason) => out({ ev: "disconnect", name: c.name, reason }));
        sock.onAny((event, ...args) => out({ ev: "event", name: c.name, event, args: tag(args) }));
        break;
      }
      case "emit":
        if (!s) return out({ ev: "error", message: "no socket " + c.name });
        s.timeout(c.timeout || 5000).emit(c.event, ...revive(c.args || []), (err, res) => {
          out({ ev: "ack", name: c.name, tag: c.tag, err: err ? String(err) : null, res });
        });
        break;
      case "send":
        if (!s) return out({ ev: "error", message: "no socket " + c.name });
        s.emit(c.event, ...revive(c.args || []));
        break;
      case "raw": {
        // straight onto the active Engine.IO transport, bypassing the encoder
        const eng = s && s.io.engine;
        if (!eng) return out({ ev: "error", message: "no engine for " + c.name });
        if (eng.transport.name === "websocket") eng.transport.ws.send(c.data);
        else out({ ev: "error", message: "raw needs the websocket transport" });
        break;
      }
      case "close":
        if (s) s.close();
        sockets.delete(c.name);
        out({ ev: "closed", name: c.name });
        break;
      case "exit":
        for (const x of sockets.values()) x.close();
        process.exit(0);
    }
  });
  rl.on("close", () => process.exit(0));
  out({ ev: "ready" });
}

async function fanout(url, secret, nclients, nmsgs, transports, nsenders) {
  const opts = transports === "websocket" ? { transports: ["websocket"] } : {};
  const clients = [];
  const got = [];
  let connected = 0;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("connect timeout: " + connected)), 60000);
    for (let i = 0; i < nclients; i++) {
      const s = io(url, Object.assign({ auth: { token: jwt("fan-" + i, secret) },
                                        forceNew: true }, opts));
      got.push(new Map());
      s.on("message", (m) => got[i].set(m.id, (got[i].get(m.id) || 0) + 1));
      s.once("connect", async () => {
        await s.emitWithAck("join", "fan");
        if (++connected === nclients) {
          clearTimeout(t);
          resolve();
        }
      });
      s.on("connect_error", (e) => out({ ev: "connect_error", i, message: e.message }));
      clients.push(s);
    }
  });
  const t0 = process.hrtime.bigint();
  const ids = [];
  const sends = [];
  for (let k = 0; k < nmsgs; k++) {
    const s = clients[k % nsenders];
    sends.push(s.timeout(30000).emitWithAck("message", { room: "fan", text: "m" + k })
      .then((r) => ids.push(r.id)));
    if (k % 50 === 49) await Promise.all(sends.splice(0));
  }
  await Promise.all(sends);
  const total = nclients * nmsgs;
  const deadline = Date.now() + 60000;
  const count = () => got.reduce((a, m) => a + m.size, 0);
  while (count() < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  let dupes = 0, missing = 0;
  for (const m of got) {
    for (const id of ids) {
      const n = m.get(id) || 0;
      if (n === 0) missing++;
      if (n > 1) dupes += n - 1;
    }
  }
  // sessions per owning worker: an Engine.IO sid starts with its owner's slot
  const slots = {};
  for (const s of clients) {
    const k = s.io.engine && s.io.engine.id ? s.io.engine.id.slice(0, 2) : "?";
    slots[k] = (slots[k] || 0) + 1;
  }
  out({ clients: nclients, messages: nmsgs, acked: ids.length, delivered: count(), dupes, missing,
        seconds: secs, rate: count() / secs, slots });
  for (const s of clients) s.close();
  process.exit(0);
}

// idle: N WebSocket clients connect (in waves of WAVE at a time, so the server sees
// a steady ramp rather than a SYN flood) and each joins room "idle" with an ack;
// once all N are in, prints {"idle":N,"seconds":...}, then they stay connected,
// sending nothing, until stdin closes. Fails ({"error":...}, exit 1) if not all N
// got in within 180 s or one dropped before the end: the caller measures memory
// for exactly N connections or not at all.
async function idle(url, secret, n, wave = 500) {
  const socks = [];
  let dropped = 0;
  const t0 = Date.now();
  const deadline = t0 + 180000;
  for (let base = 0; base < n; base += wave) {
    const batch = [];
    for (let i = base; i < Math.min(n, base + wave); i++) {
      const s = io(url, { auth: { token: jwt("idle-" + i, secret) }, forceNew: true,
                          transports: ["websocket"], reconnection: false });
      socks.push(s);
      batch.push(new Promise((resolve, reject) => {
        s.once("connect", () => s.timeout(60000).emitWithAck("join", "idle").then(resolve, reject));
        s.once("connect_error", (e) => reject(new Error("client " + i + ": " + e.message)));
      }));
      s.on("disconnect", () => dropped++);
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("connect timeout: " + base + " of " + n + " in");
    let timer;
    await Promise.race([Promise.all(batch), new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error("connect timeout: " + base + " of " + n)), left);
    })]);
    clearTimeout(timer);
  }
  if (dropped) throw new Error(dropped + " idle clients dropped while connecting");
  out({ idle: socks.length, seconds: (Date.now() - t0) / 1000 });
  process.stdin.resume();
  process.stdin.on("end", () => {
    out({ idle_end: socks.length - dropped, dropped });
    for (const s of socks) s.close();
    process.exit(0);
  });
}

const [mode, url, secret, ...rest] = process.argv.slice(2);
if (mode === "idle") idle(url, secret, +rest[0], +(rest[1] || 500)).catch((e) => { out({ error: String(e) }); process.exit(1); });
else if (mode === "interactive") interactive(url, secret);
else if (mode === "fanout")
  fanout(url, secret, +rest[0], +rest[1], rest[2] || "default", +(rest[3] || 1))
    .catch((e) => { out({ error: String(e) }); process.exit(1); });
else {
  console.error("usage: test_chat_driver.js interactive|fanout|idle URL SECRET ...");
  process.exit(2);
}
