"""Chat across hosts (SPEC §1 multi-host, §7 "on all workers and hosts"): two
svcd instances — two "hosts", each with its own master, coordinator and 2
workers, its own port and run_dir — share one MongoDB (FerretDB) and nothing
else. Real socket.io-client peers on each: room messages reach members on the
other host exactly once, a second login on the other host replaces the first,
a booking's result reaches its user wherever the user is connected, and a
database outage delays cross-host chat without breaking local chat."""
import contextlib
import time

import pytest
import requests

from conftest import Server, Workdir, scaled, wait_for
from ferretdb_fixture import Api, ferretdb, ferretdb_factory, fresh_db_name  # noqa: F401
from test_chat import Driver


def start_host(uri):
    wd = Workdir()
    wd.write_config({"storage": {"driver": "mongodb", "uri": uri,
                                 "connect": {"attempts": 3, "backoff": "200ms",
                                             "max_backoff": "1s"}}})
    s = Server(wd)
    s.start()
    return s


def wait_cluster_up(s):
    wait_for(lambda: "chat events shared with the other hosts" in s.log_text(), scaled(15),
             what="the coordinator to join the MongoDB bus")


@contextlib.contextmanager
def two_hosts(uri):
    """Two svcd "hosts" on one MongoDB URI, both on the bus; yields (hosts, driver)
    where driver(host) gives a socket.io-client Driver on that host."""
    made, drivers = [], []
    try:
        for _ in range(2):
            made.append(start_host(uri))
        for s in made:
            wait_cluster_up(s)

        def driver(s):
            d = Driver(s.url(""))
            drivers.append(d)
            return d
        yield made, driver
    finally:
        for d in drivers:
            d.close()
        for s in made:
            try:
                s.teardown()
            finally:
                s.wd.cleanup()


@pytest.fixture
def hosts(ferretdb):  # noqa: F811
    with two_hosts(ferretdb.uri(fresh_db_name())) as h:
        yield h


def messages_for(d, name, mid):
    d.drain(0.05)
    return [e for e in d.seen if e.get("name") == name and e.get("event") == "message"
            and e["args"][0].get("id") == mid]


def test_room_messages_cross_hosts_exactly_once(hosts):
    (h1, h2), driver = hosts
    d1, d2 = driver(h1), driver(h2)
    assert d1.connect("a", "alice")["ev"] == "connected"
    assert d1.connect("c", "carol", opts={"transports": ["websocket"]})["ev"] == "connected"
    assert d2.connect("b", "bob")["ev"] == "connected"
    assert d2.connect("e", "erin", opts={"transports": ["websocket"]})["ev"] == "connected"
    for d, n in ((d1, "a"), (d1, "c"), (d2, "b"), (d2, "e")):
        assert d.call(n, "join", "lobby") == {"ok": True, "room": "lobby"}
    sent = []
    for i in range(5):
        sender = (d1, "a") if i % 2 == 0 else (d2, "b")
        res = sender[0].call(sender[1], "message", {"room": "lobby", "text": "m%d" % i})
        assert res["ok"] is True and res["id"]
        sent.append((res["id"], "m%d" % i, "alice" if i % 2 == 0 else "bob"))
    for mid, text, frm in sent:
        for d, n in ((d1, "c"), (d2, "b"), (d2, "e"), (d1, "a")):
            e = d.expect(lambda e: e.get("name") == n and e.get("event") == "message"
                         and e["args"][0].get("id") == mid, 10, "%s to receive %s" % (n, text))
            assert e["args"][0]["text"] == text and e["args"][0]["from"] == frm
    # exactly once: no echo back through the bus, no double delivery
    time.sleep(1.0)
    for mid, _, _ in sent:
        for d, n in ((d1, "c"), (d2, "b"), (d2, "e"), (d1, "a")):
            assert messages_for(d, n, mid) == [], "%s got %s twice" % (n, mid)
    # history is the shared database's: both hosts return the same page
    p1 = requests.get(h1.url("/api/rooms/lobby/messages"), timeout=10).json()["messages"]
    p2 = requests.get(h2.url("/api/rooms/lobby/messages"), timeout=10).json()["messages"]
    assert [m["id"] for m in p1] == [m["id"] for m in p2] == [s[0] for s in sent]


def test_second_login_on_another_host_replaces_the_first(hosts):
    (h1, h2), driver = hosts
    d1, d2 = driver(h1), driver(h2)
    assert d1.connect("first", "dana")["ev"] == "connected"
    time.sleep(0.05)  # a later login: the wall clock orders logins across hosts
    assert d2.connect("second", "dana")["ev"] == "connected"
    d1.expect(lambda e: e.get("name") == "first" and e.get("event") == "session:replaced",
              10, "the first login (host 1) to get session:replaced")
    d1.expect(lambda e: e.get("name") == "first" and e["ev"] == "disconnect"
              and e["reason"] == "io server disconnect", 10, "the first login disconnected")
    # the newer one stays (no kick war between the hosts)
    d2.drain(1.5)
    assert not [e for e in d2.seen if e.get("name") == "second" and e["ev"] == "disconnect"]
    assert d2.call("second", "join", "x") == {"ok": True, "room": "x"}
    # and back: a login on host 1 now replaces the one on host 2
    time.sleep(0.05)
    assert d1.connect("third", "dana")["ev"] == "connected"
    d2.expect(lambda e: e.get("name") == "second" and e.get("event") == "session:replaced",
              10, "the host-2 login to be replaced by the newer host-1 login")


def test_booking_update_reaches_the_user_on_the_other_host(hosts):
    (h1, h2), driver = hosts
    d2 = driver(h2)
    assert d2.connect("u", "frank")["ev"] == "connected"
    api = Api(h1.url(""))
    ev = api.create_event(name="show", seats=["A1", "A2", "A3"])
    jobs = []
    for seats in (["A1"], ["A2", "A3"]):
        r = api.book("frank", ev, seats)
        assert r.status_code == 202, r.text
        jobs.append(r.json()["jobId"])
    for job in jobs:
        e = d2.expect(lambda e: e.get("name") == "u" and e.get("event") == "booking:update"
                      and e["args"][0].get("jobId") == job, 20,
                      "booking:update for %s on host 2" % job)
        assert e["args"][0]["status"] in ("success", "failed")


def host_id(s):
    for ln in s.log_text().splitlines():
        if "chat events shared with the other hosts" in ln:
            return ln.rsplit("host id ", 1)[1].rstrip(")")
    return None


def wait_one_leader(h1, h2):
    """Both hosts heard each other's heart-beat: both now take the smaller host id
    as the matchmaker (the leader)."""
    wait_for(lambda: ("host %s is on the bus" % host_id(h2)) in h1.log_text()
             and ("host %s is on the bus" % host_id(h1)) in h2.log_text(),
             scaled(15), interval=0.2, what="the hosts to hear each other")


def test_random_connect_pairs_users_on_different_hosts(hosts):
    (h1, h2), driver = hosts
    wait_one_leader(h1, h2)
    d1, d2 = driver(h1), driver(h2)
    assert d1.connect("ann", "ann")["ev"] == "connected"
    assert d2.connect("ben", "ben", opts={"transports": ["websocket"]})["ev"] == "connected"
    assert d2.connect("cat", "cat")["ev"] == "connected"
    assert d1.call("ann", "random:join")["status"] == "waiting"
    d2.call("ben", "random:join")
    ma = d1.expect(lambda e: e.get("name") == "ann" and e.get("event") == "random:matched",
                   15, "ann (host 1) matched")
    mb = d2.expect(lambda e: e.get("name") == "ben" and e.get("event") == "random:matched",
                   15, "ben (host 2) matched")
    assert ma["args"][0]["partnerId"] == "ben" and mb["args"][0]["partnerId"] == "ann"
    assert ma["args"][0]["room"] == mb["args"][0]["room"]
    # signals cross hosts between partners only
    assert d1.call("ann", "signal", {"to": "ben", "data": {"sdp": "offer-1"}}) == {"ok": True}
    sig = d2.expect(lambda e: e.get("name") == "ben" and e.get("event") == "signal", 10,
                    "ben to get ann's offer across hosts")
    assert sig["args"][0] == {"from": "ann", "data": {"sdp": "offer-1"}}
    assert d2.call("ben", "signal", {"to": "ann", "data": {"sdp": "answer-1"}}) == {"ok": True}
    sig = d1.expect(lambda e: e.get("name") == "ann" and e.get("event") == "signal", 10,
                    "ann to get ben's answer across hosts")
    assert sig["args"][0] == {"from": "ben", "data": {"sdp": "answer-1"}}
    res = d2.call("cat", "signal", {"to": "ann", "data": "evil"})
    assert res["ok"] is False and res["error"] == "NOT_PARTNER"
    d1.drain(0.5)
    assert not d1.events("ann", "signal")
    # next on host 2: ann (host 1) is told, ben waits again and gets cat (host 2)
    d2.call("ben", "random:next")
    d1.expect(lambda e: e.get("name") == "ann" and e.get("event") == "random:partner-left",
              10, "ann told that ben left")
    d2.call("cat", "random:join")
    mc = d2.expect(lambda e: e.get("name") == "cat" and e.get("event") == "random:matched",
                   10, "cat matched")
    assert mc["args"][0]["partnerId"] == "ben"
    # ann waits again; a partner disconnecting on the other host is a partner leaving
    d1.call("ann", "random:join")
    d2.cmd(cmd="close", name="cat")
    d2.expect(lambda e: e.get("name") == "ben" and e.get("event") == "random:partner-left",
              10, "ben told that cat left")
    d2.call("ben", "random:join")
    m = d1.expect(lambda e: e.get("name") == "ann" and e.get("event") == "random:matched",
                  10, "ann matched again across hosts")
    assert m["args"][0]["partnerId"] == "ben"


def test_random_connect_survives_the_leader_host_going_away(ferretdb):  # noqa: F811
    """The host that keeps the waiting queue stops (SIGTERM, all its clients go):
    the other takes over within the heart-beat TTL and matches its own users."""
    with two_hosts(ferretdb.uri(fresh_db_name())) as (made, driver):
        wait_one_leader(*made)
        leader = min(made, key=host_id)
        other = made[1] if leader is made[0] else made[0]
        d = driver(other)
        assert d.connect("x", "xena")["ev"] == "connected"
        assert d.call("x", "random:join")["status"] == "waiting"
        assert leader.stop() == 0
        wait_for(lambda: "went silent" in other.log_text(), scaled(15),
                 what="the survivor to notice the leader is gone")
        assert d.connect("y", "yuri")["ev"] == "connected"
        d.call("y", "random:join")
        m = d.expect(lambda e: e.get("name") == "y" and e.get("event") == "random:matched",
                     15, "yuri matched by the new leader")
        assert m["args"][0]["partnerId"] == "xena"


def test_database_outage_delays_cross_host_chat_but_not_local_chat(ferretdb_factory):  # noqa: F811
    fd = ferretdb_factory()
    with two_hosts(fd.uri(fresh_db_name())) as ((h1, h2), driver):
        d1, d2 = driver(h1), driver(h2)
        assert d1.connect("a", "gina")["ev"] == "connected"
        assert d1.connect("b", "hank")["ev"] == "connected"
        assert d2.connect("c", "ivan")["ev"] == "connected"
        for d, n in ((d1, "a"), (d1, "b"), (d2, "c")):
            d.call(n, "join", "ops")
        fd.kill()
        wait_for(lambda: "unreachable for chat events" in h1.log_text(), scaled(20),
                 what="host 1 to notice the database is gone")
        # local chat goes on: storing fails (the ack says so) but nothing hangs or dies
        d1.cmd(cmd="emit", name="a", event="message", args=[{"room": "ops", "text": "x"}],
               tag="out1")
        e = d1.expect(lambda e: e["ev"] == "ack" and e.get("tag") == "out1", 20,
                      "an ack while the database is down")
        assert e["res"]["ok"] is False and e["res"]["error"] == "DB_UNAVAILABLE", e
        assert requests.get(h1.url("/health"), timeout=5).status_code == 200
        # the database comes back: cross-host chat resumes without a restart
        fd.start()
        # both coordinators rejoin the bus by themselves (h1 logged the outage)
        wait_for(lambda: h1.log_text().count("chat events shared with the other hosts") >= 2,
                 scaled(45), what="host 1 back on the bus")
        sent = []

        def delivered():
            # one message per try (storing may still fail while the pool reconnects);
            # any of them reaching ivan on host 2 proves cross-host chat is back
            res = d1.call("a", "message", {"room": "ops", "text": "back"}, timeout=20)
            if res.get("ok"):
                sent.append(res["id"])
            d2.drain(0.5)
            return any(e.get("name") == "c" and e.get("event") == "message"
                       and e["args"][0].get("id") in sent for e in d2.seen)
        wait_for(delivered, scaled(60), interval=0.5, what="a message across hosts again")
