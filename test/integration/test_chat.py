"""Chat over Socket.IO (SPEC §7, issue 5), driven by the real npm socket.io-client@4
(test_chat_driver.js) against svcd with 2 workers: default options (long-polling,
then the upgrade to WebSocket, polling requests landing on either worker) and
WebSocket only; room fan-out exactly once, acks, history, one connection per user,
random connect, JWT and Origin checks, bad clients, and the failure of a worker,
the coordinator, and a SIGTERM drain."""
import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import JWT_SECRET, SLOW, scaled, wait_for
from helpers.peers import need_node_modules

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_chat_driver.js")
NODE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules")


class Driver:
    """One node process holding named socket.io-client sockets (interactive mode)."""

    def __init__(self, url, secret=JWT_SECRET):
        need_node_modules("socket.io-client")
        env = dict(os.environ, NODE_PATH=NODE_PATH)
        self.p = subprocess.Popen(["node", DRIVER, "interactive", url, secret],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.q = queue.Queue()
        self.seen = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.expect(lambda e: e["ev"] == "ready", 15, "driver ready")
        self.tags = 0

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                pass

    def cmd(self, **c):
        self.p.stdin.write(json.dumps(c) + "\n")
        self.p.stdin.flush()

    def expect(self, pred, timeout=10, what="event"):
        """Wait for (and consume) the first event, seen or new, matching pred."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            for i, e in enumerate(self.seen):
                if pred(e):
                    return self.seen.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("timed out waiting for %s; events so far: %s" % (
                    what, json.dumps(self.seen[-20:])))
            try:
                self.seen.append(self.q.get(timeout=min(left, 0.2)))
            except queue.Empty:
                pass

    def drain(self, secs=0.3):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            try:
                self.seen.append(self.q.get(timeout=0.05))
            except queue.Empty:
                pass

    def events(self, name, event=None):
        self.drain(0.05)
        return [e for e in self.seen if e.get("name") == name and e["ev"] == "event"
                and (event is None or e["event"] == event)]

    def connect(self, name, user, **kw):
        self.cmd(cmd="connect", name=name, user=user, **kw)
        return self.expect(lambda e: e.get("name") == name and e["ev"] in (
            "connected", "connect_error"), 15, "%s to connect" % name)

    def call(self, name, event, *args, timeout=10):
        self.tags += 1
        tag = "t%d" % self.tags
        self.cmd(cmd="emit", name=name, event=event, args=list(args), tag=tag)
        e = self.expect(lambda e: e["ev"] == "ack" and e.get("tag") == tag, timeout,
                        "ack of %s %s" % (name, event))
        assert e["err"] is None, e
        return e["res"]

    def close(self):
        try:
            self.cmd(cmd="exit")
            self.p.wait(timeout=5)
        except Exception:  # noqa: BLE001
            self.p.kill()
            self.p.wait(timeout=5)


@pytest.fixture
def chat(make_server):
    s = make_server()
    drivers = []

    def driver():
        d = Driver(s.url(""))
        drivers.append(d)
        return d

    s.driver = driver
    yield s
    for d in drivers:
        d.close()


def fanout(url, clients, messages, transports, senders):
    need_node_modules("socket.io-client")
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    r = subprocess.run(["node", DRIVER, "fanout", url, JWT_SECRET, str(clients), str(messages),
                        transports, str(senders)], capture_output=True, text=True,
                       env=env, timeout=scaled(120))
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    return json.loads(lines[-1])


def worker_served_socketio(s):
    """Which worker indexes logged a /socket.io/ request."""
    seen = set()
    for line in s.log_text().splitlines():
        if '"GET /socket.io/"' in line or '"POST /socket.io/"' in line:
            seen.add(line.split("[worker ")[1].split()[0] if "[worker " in line else "?")
    return seen


# ---------------------------------------------------------------------------- fan-out
@pytest.mark.parametrize("transports", ["default", "websocket"])
def test_room_fanout_100_clients_exactly_once(chat, transports):
    res = fanout(chat.url(""), 100, 20, transports, 5)
    assert res["acked"] == 20
    assert res["dupes"] == 0 and res["missing"] == 0, res
    assert res["delivered"] == 100 * 20
    # the sessions are owned by both workers (sid prefix = owner's slot), fairly spread
    assert len(res["slots"]) == 2 and "?" not in res["slots"], res["slots"]
    assert min(res["slots"].values()) >= 10, res["slots"]
    if transports == "default":
        # long-polling requests of the sessions were served by both workers
        assert len(worker_served_socketio(chat)) == 2


def test_polling_session_across_workers_by_hand(chat):
    """Raw Engine.IO long-polling, every request on a new connection: whichever
    worker accepts it, the session's owner answers (hand-off through the
    coordinator)."""
    url = chat.url("/socket.io/")
    r = requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=5)
    assert r.status_code == 200 and r.text.startswith("0{")
    sid = json.loads(r.text[1:])["sid"]
    token = subprocess.run(["node", "-e", """
        const c=require('crypto');const b=x=>Buffer.from(x).toString('base64url');
        const h=b(JSON.stringify({alg:'HS256',typ:'JWT'}));
        const p=b(JSON.stringify({sub:'raw',exp:Math.floor(Date.now()/1000)+600}));
        console.log(h+'.'+p+'.'+c.createHmac('sha256',process.argv[1]).update(h+'.'+p)
          .digest('base64url'))""", JWT_SECRET], capture_output=True, text=True).stdout.strip()
    for i in range(6):  # new TCP connection every time: both workers get some
        with requests.Session() as sess:
            if i == 0:
                body = '40{"token":"%s"}' % token
            else:
                body = '42%d["join","r%d"]' % (i, i)
            p = sess.post(url, params={"EIO": "4", "transport": "polling", "sid": sid},
                          data=body, timeout=5)
            assert p.status_code == 200 and p.text == "ok", p.text
        with requests.Session() as sess:
            g = sess.get(url, params={"EIO": "4", "transport": "polling", "sid": sid},
                         timeout=5)
            assert g.status_code == 200, g.text
            if i == 0:
                assert g.text.startswith("40{\"sid\":"), g.text
            else:
                assert g.text == '43%d[{"ok":true,"room":"r%d"}]' % (i, i), g.text
    # an unknown session is refused the way Engine.IO clients understand
    bad = requests.get(url, params={"EIO": "4", "transport": "polling",
                                    "sid": sid[:2] + "x" * (len(sid) - 2)}, timeout=5)
    assert bad.status_code == 400 and bad.json()["code"] == 1


# ----------------------------------------------------------------- acks, history, rooms
def test_acks_broadcast_and_history(chat):
    d = chat.driver()
    assert d.connect("a", "alice")["ev"] == "connected"
    assert d.connect("b", "bob", opts={"transports": ["websocket"]})["ev"] == "connected"
    assert d.call("a", "join", "lobby") == {"ok": True, "room": "lobby"}
    assert d.call("b", "join", {"room": "lobby"}) == {"ok": True, "room": "lobby"}
    ids = []
    for i in range(3):
        res = d.call("a", "message", {"room": "lobby", "text": "hello %d" % i})
        assert res["ok"] is True and res["id"]
        ids.append(res["id"])
    for i, mid in enumerate(ids):
        e = d.expect(lambda e: e.get("name") == "b" and e.get("event") == "message"
                     and e["args"][0]["id"] == mid, 10, "b to receive %s" % mid)
        m = e["args"][0]
        assert m["room"] == "lobby" and m["from"] == "alice" and m["text"] == "hello %d" % i
        assert isinstance(m["ts"], int)
    # sending to a room you did not join is refused, with a reason
    res = d.call("b", "message", {"room": "elsewhere", "text": "x"})
    assert res["ok"] is False and res["error"] == "NOT_IN_ROOM"
    res = d.call("b", "message", {"room": "lobby"})
    assert res["ok"] is False and res["error"] == "BAD_REQUEST"
    # history, oldest first, with before= and limit=
    h = requests.get(chat.url("/api/rooms/lobby/messages"), timeout=5).json()
    assert [m["id"] for m in h["messages"]] == ids
    h = requests.get(chat.url("/api/rooms/lobby/messages"),
                     params={"before": ids[2], "limit": 1}, timeout=5).json()
    assert [m["id"] for m in h["messages"]] == [ids[1]]
    r = requests.get(chat.url("/api/rooms/lobby/messages"), params={"limit": "x"}, timeout=5)
    assert r.status_code == 400
    # leave: no more deliveries
    assert d.call("b", "leave", "lobby") == {"ok": True, "room": "lobby"}
    d.call("a", "message", {"room": "lobby", "text": "after leave"})
    d.drain(0.5)
    assert not [e for e in d.events("b", "message") if e["args"][0]["text"] == "after leave"]


def test_second_login_replaces_the_first(chat):
    d = chat.driver()
    assert d.connect("first", "carol")["ev"] == "connected"
    d.call("first", "join", "x")
    # the second connection lands on either worker; repeat to cover both cases
    for i in range(4):
        name = "second%d" % i
        assert d.connect(name, "carol")["ev"] == "connected"
        prev = "first" if i == 0 else "second%d" % (i - 1)
        d.expect(lambda e: e.get("name") == prev and e.get("event") == "session:replaced",
                 10, "%s to get session:replaced" % prev)
        d.expect(lambda e: e.get("name") == prev and e["ev"] == "disconnect"
                 and e["reason"] == "io server disconnect", 10, "%s disconnected" % prev)
    # the replaced ones do not come back (no reconnect war), the last one works
    d.drain(1.0)
    assert not [e for e in d.seen if e["ev"] == "connected"], d.seen
    assert d.call("second3", "join", "x") == {"ok": True, "room": "x"}


def test_random_connect_pairs_and_relays_signals_between_partners_only(chat):
    d = chat.driver()
    for n in ("ann", "ben", "cat"):
        assert d.connect(n, n)["ev"] == "connected"
    assert d.call("ann", "random:join")["status"] == "waiting"
    d.call("ben", "random:join")
    ma = d.expect(lambda e: e.get("name") == "ann" and e.get("event") == "random:matched")
    mb = d.expect(lambda e: e.get("name") == "ben" and e.get("event") == "random:matched")
    assert ma["args"][0]["partnerId"] == "ben" and mb["args"][0]["partnerId"] == "ann"
    assert ma["args"][0]["room"] == mb["args"][0]["room"]
    # partners relay; a stranger cannot reach them
    assert d.call("ann", "signal", {"to": "ben", "data": {"sdp": "offer-1"}}) == {"ok": True}
    s = d.expect(lambda e: e.get("name") == "ben" and e.get("event") == "signal")
    assert s["args"][0] == {"from": "ann", "data": {"sdp": "offer-1"}}
    res = d.call("cat", "signal", {"to": "ann", "data": "evil"})
    assert res["ok"] is False and res["error"] == "NOT_PARTNER"
    d.drain(0.3)
    assert not d.events("ann", "signal")
    # next: ann's partner is told, ann waits again and gets cat
    d.call("cat", "random:join")
    d.call("ann", "random:next")
    d.expect(lambda e: e.get("name") == "ben" and e.get("event") == "random:partner-left")
    mc = d.expect(lambda e: e.get("name") == "cat" and e.get("event") == "random:matched")
    assert mc["args"][0]["partnerId"] == "ann"
    # a partner disconnecting is a partner leaving
    d.cmd(cmd="close", name="cat")
    d.expect(lambda e: e.get("name") == "ann" and e.get("event") == "random:partner-left")


# ---------------------------------------------------------------------- auth and origin
def test_forged_expired_and_missing_jwt_refused(chat):
    d = chat.driver()
    e = d.connect("f", "mallory", token="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.forged")
    assert e["ev"] == "connect_error" and e["message"]
    assert e["data"] == {"code": "UNAUTHORIZED"}, e
    e = d.connect("x", "old", ttl=-3600)
    assert e["ev"] == "connect_error" and "expired" in e["message"]
    assert e["data"] == {"code": "UNAUTHORIZED"}, e
    d2 = Driver(chat.url(""), secret="another-secret-another-secret-0123456789")
    try:
        e = d2.connect("w", "eve")
        assert e["ev"] == "connect_error" and "signature" in e["message"]
        assert e["data"] == {"code": "UNAUTHORIZED"}, e
    finally:
        d2.close()
    e = d.connect("n", "nobody", token=None)
    assert e["ev"] == "connect_error" and "token" in e["message"]
    assert e["data"] == {"code": "UNAUTHORIZED"}, e


def test_origin_checked_against_client_url(chat):
    url = chat.url("/socket.io/")
    q = {"EIO": "4", "transport": "polling"}
    r = requests.get(url, params=q, headers={"Origin": "http://evil.example"}, timeout=5)
    assert r.status_code == 403
    assert "CLIENT_URL" in r.json()["error"]["message"]
    r = requests.get(url, params=q, headers={"Origin": "http://localhost:5173"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    d = chat.driver()
    e = d.connect("o", "olga", opts={"transports": ["websocket"], "reconnection": False,
                                     "extraHeaders": {"Origin": "http://evil.example"}})
    assert e["ev"] == "connect_error"
    # over polling the client sees the HTTP status of the refused handshake
    e = d.connect("o2", "olga", opts={"transports": ["polling"], "reconnection": False,
                                      "extraHeaders": {"Origin": "http://evil.example"}})
    assert e["ev"] == "connect_error" and e["description"] == 403, e
    # the same client from the app's origin gets in
    e = d.connect("o3", "olga", opts={"extraHeaders": {"Origin": "http://localhost:5173"}})
    assert e["ev"] == "connected", e
    # and the refusals were logged as such
    assert "refused Origin http://evil.example" in chat.log_text()


# ------------------------------------------------------------------------ bad clients
def test_malformed_packets_and_oversize_message_cut_only_that_client(chat):
    pids = chat.worker_pids()
    d = chat.driver()
    ws = {"transports": ["websocket"]}
    assert d.connect("good", "good", opts=ws)["ev"] == "connected"
    d.call("good", "join", "r")
    for i, raw in enumerate(["4garbage", "9", "42[", "46[]", "4" + "\xff"]):
        name = "bad%d" % i
        assert d.connect(name, name, opts=dict(ws, reconnection=False))["ev"] == "connected"
        d.cmd(cmd="raw", name=name, data=raw)
        d.expect(lambda e: e.get("name") == name and e["ev"] == "disconnect", 10,
                 "%s cut off" % name)
    big = "x" * (10 * 1024 * 1024)
    assert d.connect("huge", "huge", opts=dict(ws, reconnection=False))["ev"] == "connected"
    d.call("huge", "join", "r")
    d.cmd(cmd="send", name="huge", event="message", args=[{"room": "r", "text": big}])
    d.expect(lambda e: e.get("name") == "huge" and e["ev"] == "disconnect", 20, "huge cut off")
    # the good client never noticed
    assert d.call("good", "message", {"room": "r", "text": "still here"})["ok"] is True
    d.expect(lambda e: e.get("name") == "good" and e.get("event") == "message"
             and e["args"][0]["text"] == "still here")
    assert not [e for e in d.seen if e.get("name") == "good" and e["ev"] == "disconnect"]
    assert chat.worker_pids() == pids


def test_flood_is_disconnected(chat):
    d = chat.driver()
    ws = {"transports": ["websocket"], "reconnection": False}
    assert d.connect("flood", "flood", opts=ws)["ev"] == "connected"
    assert d.connect("calm", "calm", opts=ws)["ev"] == "connected"
    for _ in range(600):
        d.cmd(cmd="send", name="flood", event="join", args=["r"])
    d.expect(lambda e: e.get("name") == "flood" and e["ev"] == "disconnect", 10, "flood cut")
    assert d.call("calm", "join", "r") == {"ok": True, "room": "r"}


# ------------------------------------------------------------------------ failures
def _connect_room(d, names, room, opts=None):
    """Connect and join; more clients are added until both workers hold some (the
    session id starts with its owner's slot). Returns every name connected."""
    names = list(names)
    slots = set()
    i = 0
    while i < len(names) or (len(slots) < 2 and len(names) < 40):
        if i >= len(names):
            names.append("%s-extra%d" % (room, i))
        e = d.connect(names[i], names[i], opts=opts or {})
        assert e["ev"] == "connected", e
        slots.add(e["sid"][:2])
        d.call(names[i], "join", room)
        i += 1
    assert len(slots) == 2, "every client landed on one worker"
    return names


def test_worker_kill9_clients_reconnect_and_get_later_messages(chat):
    d = chat.driver()
    names = _connect_room(d, ["k%d" % i for i in range(8)], "kr", {"transports": ["websocket"]})
    victim = chat.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # some clients lose their connection and reconnect (to either worker)
    dropped = d.expect(lambda e: e["ev"] == "disconnect", 10, "a client to drop")["name"]
    d.expect(lambda e: e["ev"] == "connected" and e["name"] == dropped, 20, "reconnect")
    wait_for(lambda: len(chat.worker_pids()) == 2 and victim not in chat.worker_pids(),
             scaled(20), what="the worker to be replaced")
    d.drain(1.0)
    # rejoin (a reconnect is a new Socket.IO session) and talk
    for n in names:
        d.call(n, "join", "kr")
    res = d.call(names[-1], "message", {"room": "kr", "text": "after kill"})
    assert res["ok"]
    for n in names:
        d.expect(lambda e: e.get("name") == n and e.get("event") == "message"
                 and e["args"][0]["text"] == "after kill", 10, "%s to get it" % n)


def test_coordinator_kill9_chat_recovers(chat):
    d = chat.driver()
    names = _connect_room(d, ["c%d" % i for i in range(6)], "cr", {"transports": ["websocket"]})
    coord = chat.children("coordinator")[0]["pid"]
    os.kill(coord, signal.SIGKILL)
    wait_for(lambda: any(c["pid"] not in (0, coord) and c.get("state") in ("ready", "online")
                         for c in chat.children("coordinator")), scaled(20),
             what="a new coordinator")
    # within seconds, a message reaches every member on both workers again
    deadline = time.monotonic() + scaled(10)
    ok = False
    k = 0
    while time.monotonic() < deadline and not ok:
        k += 1
        text = "after coord %d" % k
        d.call(names[0], "message", {"room": "cr", "text": text})
        d.drain(0.3)
        got = {e["name"] for e in d.seen if e["ev"] == "event" and e["event"] == "message"
               and e["args"][0]["text"] == text}
        ok = got == set(names)
    assert ok, "members did not all receive a message after the coordinator restart"
    # nobody was disconnected by the coordinator's death
    assert not [e for e in d.seen if e["ev"] == "disconnect"]
    # one connection per user still holds after the re-announcement
    e = d.connect("c0bis", "c0")
    assert e["ev"] == "connected"
    d.expect(lambda e: e.get("name") == "c0" and e.get("event") == "session:replaced")


def test_sigterm_disconnects_clients_cleanly(make_server):
    s = make_server()
    d = Driver(s.url(""))
    try:
        for i, opts in enumerate([{"transports": ["websocket"]}, {}, {"transports": ["polling"]}]):
            assert d.connect("t%d" % i, "t%d" % i, opts=dict(opts, reconnection=False))[
                "ev"] == "connected"
        t0 = time.monotonic()
        rc = s.stop()
        assert rc == 0
        assert time.monotonic() - t0 < scaled(8), "drain took too long"
        for i in range(3):
            e = d.expect(lambda e: e.get("name") == "t%d" % i and e["ev"] == "disconnect", 10)
            assert e["reason"] in ("transport close", "transport error"), e
        assert "ping timeout" not in json.dumps(d.seen)
    finally:
        d.close()


def test_reload_moves_clients_to_the_new_generation(make_server):
    s = make_server()
    d = Driver(s.url(""))
    try:
        first = {}
        for i, opts in enumerate([{"transports": ["websocket"]}, {}]):
            e = d.connect("r%d" % i, "r%d" % i, opts=opts)
            first["r%d" % i] = e["sid"][:2]
        old = s.worker_pids()
        os.kill(s.pid, signal.SIGHUP)
        for n in first:
            e = d.expect(lambda e: e.get("name") == n and e["ev"] == "disconnect", 20)
            assert e["reason"] in ("transport close", "transport error"), e
            e = d.expect(lambda e: e.get("name") == n and e["ev"] == "connected", 20)
        wait_for(lambda: not set(s.worker_pids()) & set(old), scaled(20),
                 what="the old generation to exit")
        for n in first:
            d.call(n, "join", "after-reload")
        res = d.call("r0", "message", {"room": "after-reload", "text": "new gen"})
        assert res["ok"]
        d.expect(lambda e: e.get("name") == "r1" and e.get("event") == "message"
                 and e["args"][0]["text"] == "new gen")
    finally:
        d.close()


def test_dead_peer_detected_by_ping_timeout(make_server):
    """A WebSocket client that stops answering pings is dropped after
    pingInterval + pingTimeout (shortened through the environment here)."""
    import socket as so
    from conftest import base_env
    s = make_server(env=base_env(SVCD_SIO_PING_INTERVAL=300, SVCD_SIO_PING_TIMEOUT=300))
    c = so.create_connection(("127.0.0.1", s.wd.port), timeout=5)
    c.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    data = b""
    t0 = time.monotonic()
    closed_at = None
    c.settimeout(scaled(8))
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
        if closed_at is None and b"\x88" in data.split(b"\r\n\r\n", 1)[-1]:
            closed_at = time.monotonic() - t0
    elapsed = closed_at if closed_at is not None else 99
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' in data
    assert b'0{"sid":' in data and b'"pingInterval":300' in data
    assert b"\x81\x012" in data  # the ping text frame "2"
    assert b"\x88" in data  # then a close frame
    assert elapsed < scaled(3), elapsed
    c.close()


def test_preview_room_events_reach_socketio_clients(chat):
    """previewServerStarted / previewServerStopped (preview registry, coordinator)
    arrive at the members of room project-<id> on every worker."""
    import socket as so
    lst = so.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    port = lst.getsockname()[1]
    try:
        d = chat.driver()
        names = _connect_room(d, ["p0", "p1"], "project-demo", {"transports": ["websocket"]})
        assert d.connect("pout", "pout")["ev"] == "connected"
        d.call("pout", "join", "project-other")
        r = requests.post(chat.url("/api/preview-servers"), timeout=5,
                          json={"projectId": "demo", "userId": "alice", "port": port,
                                "type": "vite"})
        assert r.status_code in (200, 201), r.text
        want = {"serverKey": "demo_alice", "projectId": "demo", "userId": "alice",
                "port": port, "type": "vite", "url": "/preview/demo/alice/"}
        for n in names:
            e = d.expect(lambda e: e.get("name") == n
                         and e.get("event") == "previewServerStarted", 15, "%s started" % n)
            a = e["args"][0]
            assert {k: a.get(k) for k in want} == want, a
            assert isinstance(a["message"], str) and a["message"]
        r = requests.delete(chat.url("/api/preview-servers/demo/alice"), timeout=5)
        assert r.status_code == 200
        for n in names:
            e = d.expect(lambda e: e.get("name") == n
                         and e.get("event") == "previewServerStopped", 15, "%s stopped" % n)
            a = e["args"][0]
            assert {k: a.get(k) for k in want} == want, a
            assert isinstance(a["message"], str) and a["message"]
        # members of other rooms hear nothing of it
        d.drain(0.3)
        assert not [e for e in d.seen if e.get("event", "").startswith("previewServer")]
    finally:
        lst.close()
