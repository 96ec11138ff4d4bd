"""Chat over Socket.IO (SPEC §7, issue 5) driven by a second, independent client
implementation: python-socketio's Client (default transports: long-polling, then
the upgrade to WebSocket, through websocket-client), against svcd with 2 workers.
Connect with auth.token, join with ack, room fan-out exactly once across several
clients spread over both workers, one connection per user (session:replaced,
also across workers), forged JWT and foreign namespaces refused with
CONNECT_ERROR, a storage failure acked as DB_UNAVAILABLE, and a heart-beat kept
alive through many short ping intervals.

Which worker owns an Engine.IO session is read from its id: the first two
characters are the owner's scoreboard slot (worker/eio_server.c)."""
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter

import pytest
import socketio

from conftest import JWT_SECRET, SLOW, base_env, scaled, wait_for

CLIENT_URL = "http://localhost:5173"  # auth.client_url of conftest's default config


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(claims, secret=JWT_SECRET, ttl=3600):
    now = int(time.time())
    body = dict({"iat": now, "exp": now + ttl}, **claims)
    h = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64u(json.dumps(body).encode())
    sig = hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64u(sig)


class Peer:
    """One python-socketio client recording what it receives."""

    def __init__(self, url, user=None, token=None, claims=None, transports=None,
                 namespaces=None, reconnection=False):
        self.url = url
        self.cv = threading.Condition()
        self.events = []  # (event, args)
        # websocket-client sends "Origin: http://<host:port>" by default; send the
        # app's origin (CLIENT_URL) instead, as a browser on the app's page does
        self.sio = socketio.Client(reconnection=reconnection,
                                   websocket_extra_options={"origin": CLIENT_URL})
        if token is None and user is not None:
            token = make_jwt(claims or {"sub": user})
        self.token = token
        self.transports = transports
        self.namespaces = namespaces
        for ns in namespaces or ["/"]:
            self.sio.on("*", self._any, namespace=ns)
            self.sio.on("connect", lambda: self._rec("connect"), namespace=ns)
            self.sio.on("connect_error", lambda *a: self._rec("connect_error", *a),
                        namespace=ns)
            self.sio.on("disconnect", lambda *a: self._rec("disconnect", *a), namespace=ns)

    def _any(self, event, *args):
        self._rec(event, *args)

    def _rec(self, event, *args):
        with self.cv:
            self.events.append((event, args))
            self.cv.notify_all()

    def connect(self):
        auth = {"token": self.token} if self.token is not None else None
        self.sio.connect(self.url, auth=auth, transports=self.transports,
                         namespaces=self.namespaces, wait_timeout=scaled(10))
        self._sid = self.sio.eio.sid  # kept: the client forgets it once disconnected
        return self

    @property
    def sid(self):
        return self._sid

    @property
    def slot(self):
        """The owning worker's scoreboard slot: the sid's first two characters."""
        return self._sid[:2]

    def call(self, event, *args, timeout=10):
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return self.sio.call(event, data, timeout=timeout * SLOW)

    def wait(self, pred, timeout=10, what="event"):
        deadline = time.monotonic() + timeout * SLOW
        with self.cv:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail("timed out waiting for %s; got %r" % (what, self.events[-10:]))
                self.cv.wait(min(left, 0.2))

    def got(self, event):
        with self.cv:
            return [a for (e, a) in self.events if e == event]

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def pyc(make_server):
    s = make_server()
    peers = []

    def peer(user=None, connect=True, **kw):
        p = Peer(s.url(""), user, **kw)
        peers.append(p)
        return p.connect() if connect else p

    s.peer = peer
    yield s
    for p in peers:
        p.close()


def wait_upgraded(p):
    wait_for(lambda: p.sio.transport() == "websocket", scaled(10),
             what="%s to upgrade to websocket" % p.sid)


def test_connect_with_token_polling_then_upgrade_and_join_ack(pyc):
    p = pyc.peer("pyalice")
    assert p.sio.connected and len(p.sid) == 23
    # default transports: the session starts on polling and upgrades by itself
    assert p.sio.eio.transports == ["polling", "websocket"]
    wait_upgraded(p)
    assert p.call("join", "pyroom") == {"ok": True, "room": "pyroom"}
    assert p.call("join", {"room": "pyroom2"}) == {"ok": True, "room": "pyroom2"}
    res = p.call("message", {"room": "pyroom", "text": "hi from python"})
    assert res["ok"] is True and res["id"] and isinstance(res["ts"], int)
    m = p.wait(lambda e: e[0] == "message", what="own message")[1][0]
    assert m == {"id": res["id"], "room": "pyroom", "from": "pyalice",
                 "text": "hi from python", "ts": m["ts"]}
    assert p.call("leave", "pyroom") == {"ok": True, "room": "pyroom"}
    res = p.call("message", {"room": "pyroom", "text": "x"})
    assert res["ok"] is False and res["error"] == "NOT_IN_ROOM"


def test_userid_claim_accepted(pyc):
    p = pyc.peer(token=make_jwt({"userId": "uid-claim-user"}))
    assert p.call("join", "uidroom")["ok"] is True
    p.call("message", {"room": "uidroom", "text": "who am i"})
    m = p.wait(lambda e: e[0] == "message", what="own message")[1][0]
    assert m["from"] == "uid-claim-user"


def test_fanout_python_clients_on_both_workers_exactly_once(pyc):
    peers = []
    slots = Counter()
    # at least 6 clients, more until both workers own some (bounded)
    while len(peers) < 6 or (len(slots) < 2 and len(peers) < 30):
        p = pyc.peer("pyfan%d" % len(peers))
        slots[p.slot] += 1
        assert p.call("join", "pyfan") == {"ok": True, "room": "pyfan"}
        peers.append(p)
    assert len(slots) == 2, "every session landed on one worker: %r" % slots
    for p in peers:
        wait_upgraded(p)
    ids = []
    for k in range(12):
        res = peers[k % 3].call("message", {"room": "pyfan", "text": "fan %d" % k})
        assert res["ok"] is True
        ids.append(res["id"])

    def all_in():
        return all(set(m[0]["id"] for m in p.got("message")) >= set(ids) for p in peers)

    wait_for(all_in, scaled(20), what="every client to receive every message")
    time.sleep(0.5)  # late duplicates would show up now
    for p in peers:
        c = Counter(m[0]["id"] for m in p.got("message"))
        assert all(c[i] == 1 for i in ids), (p.sid, c)
        texts = {m[0]["id"]: m[0]["text"] for m in p.got("message")}
        assert [texts[i] for i in ids] == ["fan %d" % k for k in range(12)]


def test_second_login_kicks_first_also_across_workers(pyc):
    prev = pyc.peer("pydup")
    assert prev.call("join", "dup") == {"ok": True, "room": "dup"}
    cross = same = 0
    for i in range(40):
        nxt = pyc.peer("pydup")
        prev.wait(lambda e: e[0] == "session:replaced", what="session:replaced")
        rep = prev.got("session:replaced")[0][0]
        assert rep["reason"] == "replaced" and rep["message"]
        prev.wait(lambda e: e[0] == "disconnect", what="the replaced one to be disconnected")
        wait_for(lambda: not prev.sio.connected, scaled(5), what="old client closed")
        if prev.slot != nxt.slot:
            cross += 1
        else:
            same += 1
        # the new one works, the old one does not come back
        assert nxt.call("join", "dup") == {"ok": True, "room": "dup"}
        assert not nxt.got("session:replaced")
        prev = nxt
        if cross >= 2 and i >= 3:
            break
    assert cross >= 1, "no kick crossed workers in 40 logins"
    time.sleep(0.5)
    assert prev.sio.connected and not prev.got("session:replaced")


def test_forged_jwt_refused_with_connect_error_reason(pyc):
    good = make_jwt({"sub": "mallory"})
    h, p, _ = good.split(".")
    forged = h + "." + b64u(json.dumps({"sub": "admin", "exp": int(time.time()) + 600})
                            .encode()) + "." + good.split(".")[2]
    cases = [
        (forged, "signature"),
        (make_jwt({"sub": "eve"}, secret="another-secret-another-secret-0123456789"),
         "signature"),
        (make_jwt({"sub": "old"}, ttl=-3600), "expired"),
        ("not-a-jwt", None),
    ]
    for token, word in cases:
        c = pyc.peer(token=token, connect=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            c.connect()
        errs = c.got("connect_error")
        assert errs, c.events
        data = errs[0][0]
        assert data["data"]["code"] == "UNAUTHORIZED", data
        assert data["message"]
        if word:
            assert word in data["message"], data
        assert not c.sio.connected
    c = pyc.peer(connect=False)  # no auth at all
    with pytest.raises(socketio.exceptions.ConnectionError):
        c.connect()
    data = c.got("connect_error")[0][0]
    assert data["data"]["code"] == "UNAUTHORIZED" and "token" in data["message"]


def test_unknown_namespace_gets_connect_error(pyc):
    c = pyc.peer("nsuser", namespaces=["/other"], connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        c.connect()
    data = c.got("connect_error")[0][0]
    assert data["message"] == "Invalid namespace", data
    assert "/other" in c.sio.failed_namespaces


def test_heartbeat_survives_many_short_intervals(make_server):
    """pingInterval 250 ms, pingTimeout 2 s: a real client (python-socketio: websocket after the
    upgrade; and polling only) stays connected through far more than 10 intervals,
    so every ping was answered by a pong the server accepted."""
    s = make_server(env=base_env(SVCD_SIO_PING_INTERVAL=250, SVCD_SIO_PING_TIMEOUT=2000))
    peers = []
    try:
        for tr in (None, ["polling"]):
            p = Peer(s.url(""), "hb%d" % len(peers), transports=tr).connect()
            peers.append(p)
            assert p.sio.eio.ping_interval == 0.25
        wait_upgraded(peers[0])
        assert peers[1].sio.transport() == "polling"
        t0 = time.monotonic()
        time.sleep(max(scaled(5.0), 5.0))  # 20 intervals; without pongs: dropped at 2.25 s
        for p in peers:
            assert p.sio.connected, p.events
            assert not p.got("disconnect"), p.events
            assert p.call("join", "hb") == {"ok": True, "room": "hb"}
        assert time.monotonic() - t0 > 10 * 0.25
    finally:
        for p in peers:
            p.close()
