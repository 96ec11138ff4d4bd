"""WebSocket close codes of svcd's Socket.IO endpoint (SPEC §7, issue 5), read from
the close frame itself by a raw RFC 6455 client (websocket-client at the frame
level, the Engine.IO/Socket.IO packets written by hand): 1002 for malformed
Engine.IO and Socket.IO packets, 1007 for invalid UTF-8 in a text frame, 1008
for a flood, 1009 for a message over limits.ws_message, 1001 on SIGTERM and on
reload. A member of the same room, on the same connection setup, keeps
receiving through all of it. Also: a malformed polling POST is a 400."""
import json
import os
import signal
import struct
import threading

import requests
import websocket

from conftest import scaled, wait_for
from test_chat_python import CLIENT_URL, make_jwt


class RawWS:
    """An Engine.IO v4 WebSocket session with a Socket.IO connection on '/'."""

    def __init__(self, port, user, connect=True):
        self.ws = websocket.create_connection(
            "ws://127.0.0.1:%d/socket.io/?EIO=4&transport=websocket" % port,
            origin=CLIENT_URL, timeout=scaled(10))
        op = self.recv_text()
        assert op.startswith("0{"), op
        self.sid = json.loads(op[1:])["sid"]
        self.acks = 0
        if connect:
            self.ws.send('40{"token":"%s"}' % make_jwt({"sub": user}))
            r = self.recv_text()
            assert r.startswith('40{"sid":'), r

    def recv_frame(self):
        return self.ws.recv_data_frame(control_frame=True)

    def recv_text(self):
        """Next text message, answering pings; fails on a close frame."""
        while True:
            op, fr = self.recv_frame()
            if op == websocket.ABNF.OPCODE_TEXT:
                t = fr.data.decode()
                if t == "2":
                    self.ws.send("3")
                    continue
                return t
            assert op != websocket.ABNF.OPCODE_CLOSE, ("closed", fr.data)

    def call(self, event, arg):
        self.acks += 1
        self.ws.send("42%d%s" % (self.acks, json.dumps([event, arg])))
        want = "43%d" % self.acks
        while True:
            t = self.recv_text()
            if t.startswith(want + "["):
                return json.loads(t[len(want):])[0]

    def wait_event(self, event, pred=lambda a: True):
        while True:
            t = self.recv_text()
            if t.startswith("42["):
                a = json.loads(t[2:])
                if a[0] == event and pred(a[1]):
                    return a[1]

    def close_code(self, timeout=10):
        """Read frames until the server's close frame; return its status code."""
        self.ws.settimeout(scaled(timeout))
        while True:
            fr = self.ws.recv_frame()  # raw frames: no automatic close reply
            if fr.opcode == websocket.ABNF.OPCODE_CLOSE:
                assert len(fr.data) >= 2, fr.data
                return struct.unpack("!H", fr.data[:2])[0]

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001
            pass


def send_quietly(ws, data, opcode):
    try:
        ws.send(data, opcode=opcode)
    except (OSError, websocket.WebSocketException):
        pass  # the server closed first: expected for an oversize message


def still_receives(good, sender, room, text):
    res = sender.call("message", {"room": room, "text": text})
    assert res["ok"] is True, res
    m = good.wait_event("message", lambda m: m["text"] == text)
    assert m["id"] == res["id"] and m["room"] == room


def test_close_codes_for_bad_clients_and_the_room_keeps_working(server):
    port = server.wd.port
    pids = server.worker_pids()
    good = RawWS(port, "good")
    sender = RawWS(port, "sender")
    assert good.call("join", "cc") == {"ok": True, "room": "cc"}
    assert sender.call("join", "cc") == {"ok": True, "room": "cc"}
    cases = [
        ("eio garbage", "4garbage".encode(), websocket.ABNF.OPCODE_TEXT, 1002),
        ("unknown eio type", b"9", websocket.ABNF.OPCODE_TEXT, 1002),
        ("truncated sio event", b"42[", websocket.ABNF.OPCODE_TEXT, 1002),
        ("bad sio type", b"47[]", websocket.ABNF.OPCODE_TEXT, 1002),
        ("unannounced attachment", b"\x01\x02", websocket.ABNF.OPCODE_BINARY, 1002),
        ("invalid utf-8", b'42["join","r\xff\xfe"]', websocket.ABNF.OPCODE_TEXT, 1007),
        ("10 MiB", ("42" + json.dumps(["message", {"room": "cc", "text": "x" * (10 << 20)}]))
         .encode(), websocket.ABNF.OPCODE_TEXT, 1009),
    ]
    for i, (what, data, opcode, code) in enumerate(cases):
        bad = RawWS(port, "bad%d" % i)
        assert bad.call("join", "cc")["ok"] is True
        # sent from a thread: the server may close mid-message (1009) while the
        # rest is still going out; the close frame is read here meanwhile
        t = threading.Thread(target=send_quietly, args=(bad.ws, data, opcode), daemon=True)
        t.start()
        got = bad.close_code(timeout=20)
        t.join(scaled(20))
        assert got == code, "%s: close code %d, want %d" % (what, got, code)
        bad.close()
        still_receives(good, sender, "cc", "after %s" % what)
    # flood: hundreds of packets at once (limit: 100/s sustained, burst 200)
    bad = RawWS(port, "flooder")
    for _ in range(600):
        try:
            bad.ws.send('42["join","cc"]')
        except (BrokenPipeError, ConnectionResetError, websocket.WebSocketException):
            break
    assert bad.close_code() == 1008
    bad.close()
    still_receives(good, sender, "cc", "after flood")
    assert server.worker_pids() == pids, "a worker died"
    good.close()
    sender.close()


def test_close_1001_on_sigterm(make_server):
    s = make_server()
    clients = [RawWS(s.wd.port, "term%d" % i) for i in range(4)]
    rc = {}
    t = threading.Thread(target=lambda: rc.setdefault("rc", s.stop()))
    t.start()
    try:
        for c in clients:
            assert c.close_code() == 1001
    finally:
        t.join(scaled(30))
    assert rc.get("rc") == 0


def test_close_1001_on_reload_and_new_generation_serves(make_server):
    s = make_server()
    old = s.worker_pids()
    clients = [RawWS(s.wd.port, "rel%d" % i) for i in range(4)]
    os.kill(s.pid, signal.SIGHUP)
    for c in clients:
        assert c.close_code(timeout=20) == 1001
        c.close()
    wait_for(lambda: len(s.worker_pids()) == 2 and not set(s.worker_pids()) & set(old),
             scaled(20), what="the new generation")
    a = RawWS(s.wd.port, "rel0")
    b = RawWS(s.wd.port, "rel1")
    assert a.call("join", "nr")["ok"] and b.call("join", "nr")["ok"]
    still_receives(b, a, "nr", "new generation")
    a.close()
    b.close()


def test_malformed_polling_post_is_400(server):
    url = server.url("/socket.io/")
    for body in ("4garbage", "9", "42[", "b!!!notbase64", "40\x1e"):
        r = requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=5)
        sid = json.loads(r.text[1:])["sid"]
        p = requests.post(url, params={"EIO": "4", "transport": "polling", "sid": sid},
                          data=body.encode(), timeout=5)
        assert p.status_code == 400, (body, p.status_code, p.text)
        assert p.json()["code"] == 3, p.text
        # the session is over: a later poll is refused as unknown
        g = requests.get(url, params={"EIO": "4", "transport": "polling", "sid": sid},
                         timeout=5)
        assert g.status_code == 400 and g.json()["code"] == 1, g.text


NODE_WS = r"""
// close codes as the npm `ws` client (what socket.io-client uses in Node) sees them
const WebSocket = require("ws");
const [port, kind] = process.argv.slice(1);
const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`,
                         { origin: "http://localhost:5173" });
ws.on("error", () => {});
ws.on("message", (m) => {
  m = String(m);
  if (m.startsWith("0{")) ws.send('40{"token":"' + process.env.TOKEN + '"}');
  if (!m.startsWith("40{")) return;
  if (kind === "big") ws.send("42" + JSON.stringify(["message", {room: "r", text: "x".repeat(10 << 20)}]));
  if (kind === "flood") for (let i = 0; i < 2000; i++) ws.send('42["join","r"]');
  if (kind === "malformed") ws.send("4garbage");
  if (kind === "utf8") ws.send(Buffer.from('42["join","\xff"]', "latin1"), { binary: false });
});
ws.on("close", (code) => { console.log(JSON.stringify({ code })); process.exit(0); });
setTimeout(() => { console.log(JSON.stringify({ code: "timeout" })); process.exit(1); }, 30000);
"""


def test_close_codes_seen_by_the_node_ws_client(server):
    """The npm `ws` client, which keeps sending while the server closes (the rest
    of a 10 MiB message, a flood), still reads the close frame: svcd lingers
    instead of resetting the connection (a RST would make it 1006)."""
    import subprocess
    from helpers.peers import need_node_modules
    need_node_modules("ws")
    env = dict(os.environ, NODE_PATH=os.path.join(os.path.dirname(__file__), "node_modules"))
    for kind, code in (("big", 1009), ("flood", 1008), ("malformed", 1002), ("utf8", 1007)):
        for i in range(3):
            env["TOKEN"] = make_jwt({"sub": "nodews-%s-%d" % (kind, i)})
            r = subprocess.run(["node", "-e", NODE_WS, str(server.wd.port), kind],
                               capture_output=True, text=True, env=env, timeout=scaled(60))
            got = json.loads(r.stdout.strip().splitlines()[-1])["code"]
            assert got == code, (kind, got, r.stderr[-500:])
