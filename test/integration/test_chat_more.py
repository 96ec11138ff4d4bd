"""More chat proofs (SPEC §7, issue 5) with svcd running 2 workers: the polling
hand-off between workers shown on the connection itself, the heart-beat of a real
socket.io-client through many short ping intervals (polling and WebSocket), a
storage failure acked as DB_UNAVAILABLE with nothing broadcast, random connect
after a coordinator crash, and default-option (polling) clients surviving a
kill -9 of their worker."""
import http.client
import json
import os
import signal
import time

import pytest

from conftest import base_env, scaled, wait_for
from test_chat import Driver, _connect_room, chat  # noqa: F401  (fixture)
from test_chat_python import make_jwt


def serving_pid(conn):
    """pid of the worker answering on this keep-alive connection."""
    conn.request("GET", "/api/health/detailed")
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, body
    return json.loads(body)["server"]["pid"]


def eio(conn, method, sid=None, body=None):
    q = "/socket.io/?EIO=4&transport=polling" + ("&sid=" + sid if sid else "")
    conn.request(method, q, body=body,
                 headers={"Content-Type": "text/plain;charset=UTF-8"} if body else {})
    r = conn.getresponse()
    return r.status, r.read().decode()


def test_polling_request_on_the_other_worker_is_handed_to_the_owner(chat):  # noqa: F811
    """A keep-alive connection accepted by worker B carries a request for a session
    owned by worker A: A answers it (the session state is only there), and the
    connection itself now belongs to A (its next /api/health/detailed is A's)."""
    port = chat.wd.port
    home = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    owner = serving_pid(home)
    st, txt = eio(home, "GET")
    assert st == 200 and txt.startswith("0{"), txt
    sid = json.loads(txt[1:])["sid"]
    assert home.sock is not None
    # find connections the kernel gave to the other worker (bounded)
    handed = 0
    for attempt in range(60):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        first = serving_pid(c)
        if first == owner:
            c.close()
            continue
        local = c.sock.getsockname()
        if handed == 0:
            st, txt = eio(c, "POST", sid, '40{"token":"%s"}' % make_jwt({"sub": "handme"}))
            assert (st, txt) == (200, "ok")
        else:
            st, txt = eio(c, "GET", sid)
            assert st == 200 and txt.startswith('40{"sid":'), txt
        # same TCP connection (no reconnect by http.client), now served by the owner
        assert c.sock is not None and c.sock.getsockname() == local
        assert serving_pid(c) == owner, "the connection did not move to the owner"
        c.close()
        handed += 1
        if handed == 2:
            break
    assert handed == 2, "no connection landed on the other worker in 60 tries"
    assert set(chat.worker_pids()) >= {owner, first}
    home.close()


@pytest.mark.parametrize("opts", [{"transports": ["polling"]}, {}],
                         ids=["polling", "default-upgraded"])
def test_socketio_client_heartbeat_through_many_intervals(make_server, opts):
    s = make_server(env=base_env(SVCD_SIO_PING_INTERVAL=250, SVCD_SIO_PING_TIMEOUT=2000))
    d = Driver(s.url(""))
    try:
        e = d.connect("hb", "hb", opts=dict(opts, reconnection=False))
        assert e["ev"] == "connected"
        if opts.get("transports") != ["polling"]:
            d.expect(lambda e: e.get("name") == "hb" and e["ev"] == "upgrade", 10, "upgrade")
        # 20 intervals: a client that did not answer pings would be gone after 2.25 s
        time.sleep(max(scaled(5.0), 5.0))
        d.drain(0.2)
        assert not [x for x in d.seen if x["ev"] == "disconnect"], d.seen
        assert d.call("hb", "join", "hb") == {"ok": True, "room": "hb"}
    finally:
        d.close()


def test_storage_failure_acks_db_unavailable_and_broadcasts_nothing(make_server):
    s = make_server(env=base_env(SVCD_STORE_FAULT="message-add-unavailable"))
    d = Driver(s.url(""))
    try:
        for n in ("dba", "dbb"):
            assert d.connect(n, n)["ev"] == "connected"
            d.call(n, "join", "dbroom")
        res = d.call("dba", "message", {"room": "dbroom", "text": "lost"})
        assert res["ok"] is False and res["error"] == "DB_UNAVAILABLE", res
        assert res["message"]
        d.drain(0.5)
        assert not [e for e in d.seen if e.get("event") == "message"], d.seen
        assert "cannot store a message to room dbroom" in s.log_text()
        # the connection stays usable
        assert d.call("dba", "join", "other") == {"ok": True, "room": "other"}
    finally:
        d.close()


def test_random_connect_after_coordinator_crash(chat):  # noqa: F811
    """Pairs and the waiting queue live in the coordinator; after its kill -9 the
    workers re-announce them: a pair made before still relays signals only between
    its partners, a user who was waiting is matched with a newcomer, and leaving
    still notifies the partner."""
    d = chat.driver()
    for n in ("rp1", "rp2", "rw"):
        assert d.connect(n, n, opts={"transports": ["websocket"]})["ev"] == "connected"
    d.call("rp1", "random:join")
    d.call("rp2", "random:join")
    d.expect(lambda e: e.get("name") == "rp1" and e.get("event") == "random:matched")
    d.expect(lambda e: e.get("name") == "rp2" and e.get("event") == "random:matched")
    assert d.call("rw", "random:join")["status"] == "waiting"
    coord = chat.children("coordinator")[0]["pid"]
    os.kill(coord, signal.SIGKILL)
    wait_for(lambda: any(c["pid"] not in (0, coord) and c.get("state") in ("ready", "online")
                         for c in chat.children("coordinator")), scaled(20),
             what="a new coordinator")
    # the old pair relays again (the coordinator checks pairs for cross-worker signals)
    deadline = time.monotonic() + scaled(10)
    k = 0
    while True:
        k += 1
        assert d.call("rp1", "signal", {"to": "rp2", "data": {"n": k}}) == {"ok": True}
        d.drain(0.3)
        if [e for e in d.events("rp2", "signal") if e["args"][0]["data"] == {"n": k}]:
            break
        assert time.monotonic() < deadline, "the pair did not relay after the restart"
    # the waiting user is still queued: a newcomer is matched with them
    assert d.connect("rnew", "rnew", opts={"transports": ["websocket"]})["ev"] == "connected"
    d.call("rnew", "random:join")
    m = d.expect(lambda e: e.get("name") == "rnew" and e.get("event") == "random:matched", 15,
                 "the newcomer to be matched")
    assert m["args"][0]["partnerId"] == "rw"
    m = d.expect(lambda e: e.get("name") == "rw" and e.get("event") == "random:matched")
    assert m["args"][0]["partnerId"] == "rnew"
    assert d.call("rw", "signal", {"to": "rnew", "data": "hi"}) == {"ok": True}
    d.expect(lambda e: e.get("name") == "rnew" and e.get("event") == "signal"
             and e["args"][0] == {"from": "rw", "data": "hi"})
    # strangers are still refused, partners leaving still notify
    res = d.call("rnew", "signal", {"to": "rp1", "data": "x"})
    assert res["ok"] is False and res["error"] == "NOT_PARTNER"
    d.call("rp2", "random:leave")
    d.expect(lambda e: e.get("name") == "rp1" and e.get("event") == "random:partner-left")
    assert not [e for e in d.seen if e["ev"] == "disconnect"]


def test_worker_kill9_default_option_polling_clients_reconnect(chat):  # noqa: F811
    """Clients with polling only (the phase every default-option client starts in)
    on the killed worker reconnect to a live one and get later messages; those on
    the other worker are not disturbed."""
    d = chat.driver()
    names = _connect_room(d, ["kp%d" % i for i in range(6)], "kpr",
                          {"transports": ["polling"]})
    victim = chat.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    dropped = d.expect(lambda e: e["ev"] == "disconnect", 15, "a client to drop")["name"]
    d.expect(lambda e: e["ev"] == "connected" and e["name"] == dropped, 30, "reconnect")
    wait_for(lambda: len(chat.worker_pids()) == 2 and victim not in chat.worker_pids(),
             scaled(20), what="the worker to be replaced")
    d.drain(1.0)
    lost = {dropped} | {e["name"] for e in d.seen if e["ev"] == "disconnect"}
    assert lost != set(names), lost  # only the victim's clients dropped
    for n in lost - {dropped}:
        d.expect(lambda e: e["ev"] == "connected" and e["name"] == n, 30, "%s back" % n)
    for n in names:
        d.call(n, "join", "kpr")
    res = d.call(names[0], "message", {"room": "kpr", "text": "after kill polling"})
    assert res["ok"]
    for n in names:
        d.expect(lambda e: e.get("name") == n and e.get("event") == "message"
                 and e["args"][0]["text"] == "after kill polling", 15, "%s to get it" % n)
