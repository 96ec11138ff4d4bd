"""Preview registry, preview proxy, liveness and the loading page (SPEC §6,
seeds 001/002): the seed's "stop Vite, reload, proxy errors forever" scenario
must end in a loading page that recovers by itself."""
import datetime
import os
import signal
import subprocess

import pytest
import requests

from conftest import ADMIN_TOKEN, error_json, free_port, scaled, wait_for
from helpers.peers import HoldClient, peers, ws_client  # noqa: F401 (fixture)

FAST_HEALTH = {"proxy": {"routes": [], "health": {"interval": "500ms", "timeout": "300ms"}}}


def register(s, project, user, port, type_="vite"):
    return requests.post(s.url("/api/preview-servers"), timeout=5,
                         json={"projectId": project, "userId": user, "port": port,
                               "type": type_})


def status(s, project, user):
    r = requests.get(s.url("/api/preview-status/%s/%s" % (project, user)), timeout=5)
    assert r.status_code == 200
    return r.json()


def on_every_worker(s, fn, what, timeout=None):
    """fn() must hold for a burst of fresh connections (they spread over workers)."""
    def ok():
        return all(fn() for _ in range(8))
    wait_for(ok, timeout or scaled(10), interval=0.05, what=what)


def test_register_status_proxy_unregister(make_server, peers):
    s = make_server(FAST_HEALTH)
    up = peers.upstream()
    assert status(s, "demo", "alice") == {"available": False, "server": None}
    r = register(s, "demo", "alice", up.port)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/preview-status/demo/alice"
    on_every_worker(s, lambda: status(s, "demo", "alice")["available"],
                    "every worker to see the new preview")
    st = status(s, "demo", "alice")
    srv = st["server"]
    assert srv["port"] == up.port and srv["type"] == "vite"
    assert srv["url"] == "/preview/demo/alice/" and srv["iframeUrl"].startswith(srv["url"])
    assert srv["startedAt"].endswith("Z")
    r = requests.get(s.url("/preview/demo/alice/hello?a=b"), timeout=5)
    assert r.status_code == 200 and r.json()["path"] == "/preview/demo/alice/hello?a=b"
    lst = requests.get(s.url("/api/preview-servers"), timeout=5).json()["servers"]
    assert [x["port"] for x in lst] == [up.port]
    assert register(s, "demo", "alice", up.port).status_code == 200  # replace
    m = requests.get(s.url("/metrics"), timeout=5).text
    assert 'svcd_preview_up{project="demo",user="alice",port="%d"} 1' % up.port in m
    assert "svcd_proxy_requests_total{worker=" in m
    r = requests.delete(s.url("/api/preview-servers/demo/alice"), timeout=5)
    assert r.status_code == 200 and r.json()["removed"] is True
    on_every_worker(s, lambda: status(s, "demo", "alice") == {"available": False,
                                                               "server": None},
                    "every worker to forget it")
    assert requests.delete(s.url("/api/preview-servers/demo/alice"), timeout=5).status_code == 404
    log = s.log_text()
    assert "event previewServerStarted -> room project-demo" in log
    assert "event previewServerStopped -> room project-demo" in log


@pytest.mark.parametrize("body,needle", [
    ({"userId": "a", "port": 5000}, "projectId"),
    ({"projectId": "p/x", "userId": "a", "port": 5000}, "projectId"),
    ({"projectId": "p", "userId": "", "port": 5000}, "userId"),
    ({"projectId": "p", "userId": "a", "port": 0}, "port"),
    ({"projectId": "p", "userId": "a", "port": "5000"}, "port"),
    ({"projectId": "p", "userId": "a", "port": 5000, "type": 7}, "type"),
])
def test_register_validation(server, body, needle):
    r = requests.post(server.url("/api/preview-servers"), json=body, timeout=5)
    assert r.status_code == 400
    assert needle in error_json(r.content)["message"]


def test_register_rejects_own_port_and_bad_json(server):
    r = register(server, "p", "u", server.wd.port)
    assert r.status_code == 400 and "own listener" in r.json()["error"]["message"]
    r = requests.post(server.url("/api/preview-servers"), data=b"{nope", timeout=5)
    assert r.status_code == 400


def test_unknown_preview_gets_loading_page_or_json(server):
    r = requests.get(server.url("/preview/nope/none/"), headers={"Accept": "text/html"},
                     timeout=5)
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("text/html")
    assert "Starting preview" in r.text and "/api/preview-status/nope/none" in r.text
    assert r.headers.get("retry-after")
    r = requests.get(server.url("/preview/nope/none/api/x"), timeout=5)
    assert r.status_code == 503
    assert error_json(r.content)["code"] == "PREVIEW_UNAVAILABLE"
    assert requests.get(server.url("/preview/bad%20id/u/"), timeout=5).status_code == 400


def test_down_preview_loading_page_then_recovers(make_server, peers):
    """Seed 001: stop the dev server, reload -> loading page, start it again on the
    same port -> traffic flows without restarting anything."""
    s = make_server(FAST_HEALTH)
    up = peers.upstream()
    port = up.port
    assert register(s, "demo", "alice", port).status_code == 201
    on_every_worker(s, lambda: status(s, "demo", "alice")["available"], "preview up")
    up.stop()
    # the first request after the stop sees ECONNREFUSED: passive mark, loading page
    r = requests.get(s.url("/preview/demo/alice/"), headers={"Accept": "text/html"}, timeout=5)
    assert r.status_code == 503 and "Starting preview" in r.text
    on_every_worker(s, lambda: not status(s, "demo", "alice")["available"],
                    "every worker to see the preview down")
    r = requests.get(s.url("/preview/demo/alice/hello"), timeout=5)
    assert r.status_code == 503 and r.json()["error"]["code"] == "PREVIEW_UNAVAILABLE"
    assert status(s, "demo", "alice")["server"]["port"] == port  # still registered
    peers.upstream(port)  # the dev server comes back on its port
    on_every_worker(s, lambda: status(s, "demo", "alice")["available"],
                    "the health check to bring it back", timeout=scaled(10))
    on_every_worker(s, lambda: requests.get(s.url("/preview/demo/alice/hello"),
                                            timeout=5).status_code == 200,
                    "traffic to flow again")
    log = s.log_text()
    assert "passive check" in log and "is up again" in log
    assert log.count("event previewServerStopped") >= 1
    assert log.count("event previewServerStarted") >= 2


def test_down_by_active_check_alone(make_server, peers):
    s = make_server(FAST_HEALTH)
    up = peers.upstream()
    assert register(s, "demo", "carol", up.port).status_code == 201
    on_every_worker(s, lambda: status(s, "demo", "carol")["available"], "preview up")
    up.stop()  # no request reaches it: only the coordinator's probe can notice
    wait_for(lambda: "TCP connect to port %d" % up.port in s.log_text(), scaled(5),
             what="the active check to mark it down")
    on_every_worker(s, lambda: not status(s, "demo", "carol")["available"], "down everywhere")


def test_tracked_websockets_closed_when_preview_goes_down(make_server, peers, tmp_path):
    s = make_server(FAST_HEALTH)
    ws = peers.ws_server()
    assert register(s, "demo", "dave", ws.port).status_code == 201
    on_every_worker(s, lambda: status(s, "demo", "dave")["available"], "preview up")
    url = "ws://127.0.0.1:%d/preview/demo/dave/hmr" % s.wd.port
    holds = [HoldClient(url, str(tmp_path / ("h%d.log" % i))) for i in range(4)]
    try:
        for h in holds:
            wait_for(lambda h=h: h.has("hello"), scaled(10), what="ws client connected")

        def conns():
            return requests.get(s.url("/debug/connections"), timeout=5).json()
        wait_for(lambda: conns()["totalConnections"] == 4, scaled(5), what="4 tracked")
        d = conns()
        assert d["owners"] == ["dave"]
        assert len(d["connections"]) == 4
        assert {c["path"] for c in d["connections"]} == {"/preview/demo/dave/hmr"}
        assert len({c["pid"] for c in d["connections"]}) >= 1
        # the server stops listening but keeps its sockets (a wedged dev server):
        # the health check marks it down and svcd closes the tunnels itself
        subprocess.run(["node", "-e", """
const WebSocket=require('ws');const ws=new WebSocket(process.argv[1]);
ws.on('message',(d)=>{const t=d.toString(); if(t.startsWith('{')){ws.send('unlisten');}
else if(t==='unlistened'){process.exit(0);}});
setTimeout(()=>process.exit(1),10000);""", url], cwd=os.path.dirname(__file__),
                       check=True, timeout=scaled(20))
        for h in holds:
            wait_for(lambda h=h: h.has("close"), scaled(10), what="tunnel closed by svcd")
        assert not status(s, "demo", "dave")["available"]
        wait_for(lambda: conns()["totalConnections"] == 0, scaled(5), what="0 tracked")
        assert "closing WebSocket tunnel" in s.log_text()
    finally:
        for h in holds:
            h.stop()


def test_registry_rebuilt_after_coordinator_restart(make_server, peers, tmp_path):
    s = make_server(FAST_HEALTH)
    up = peers.upstream()
    ws = peers.ws_server()
    assert register(s, "demo", "erin", up.port).status_code == 201
    assert register(s, "proj2", "frank", ws.port).status_code == 201
    on_every_worker(s, lambda: status(s, "proj2", "frank")["available"] and
                    status(s, "demo", "erin")["available"], "both up")
    hold = HoldClient("ws://127.0.0.1:%d/preview/proj2/frank/" % s.wd.port,
                      str(tmp_path / "hold.log"))
    try:
        wait_for(lambda: hold.has("hello"), scaled(10), what="ws connected")
        coord = s.children("coordinator")[0]["pid"]
        os.kill(coord, signal.SIGKILL)
        wait_for(lambda: [c for c in s.children("coordinator")
                          if c["pid"] not in (0, coord) and c["state"] == "online"],
                 scaled(15), what="a new coordinator")
        # a preview registered while or after it restarts, on another worker
        def rebuilt():
            d = requests.get(s.url("/debug/connections"), timeout=5).json()
            return d["totalConnections"] == 1 and "partial" not in d
        wait_for(rebuilt, scaled(10), what="tunnel list rebuilt from the workers")
        on_every_worker(s, lambda: status(s, "demo", "erin")["available"] and
                        status(s, "proj2", "frank")["available"], "registry intact")
        # and it is live again: a down is still noticed
        up.stop()
        on_every_worker(s, lambda: not status(s, "demo", "erin")["available"],
                        "the new coordinator's health check")
        assert not hold.has("close"), "the tunnel did not survive the coordinator restart"
    finally:
        hold.stop()


def test_reload_drains_tunnels_and_keeps_the_registry(make_server, peers, tmp_path):
    """A reload starts a new worker generation: the old one closes its tunnels
    while draining (clients reconnect to the new one), the new workers get the
    whole registry from the coordinator, and proxied traffic never fails."""
    s = make_server(FAST_HEALTH)
    ws = peers.ws_server()
    up = peers.upstream()
    assert register(s, "demo", "gina", ws.port).status_code == 201
    assert register(s, "demo", "hal", up.port).status_code == 201
    on_every_worker(s, lambda: status(s, "demo", "hal")["available"], "up")
    hold = HoldClient("ws://127.0.0.1:%d/preview/demo/gina/" % s.wd.port,
                      str(tmp_path / "hold.log"))
    try:
        wait_for(lambda: hold.has("hello"), scaled(10), what="ws connected")
        old = set(s.worker_pids())
        r = s.wd.svc("reload")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: hold.has("close"), scaled(15), what="old generation closed the tunnel")
        wait_for(lambda: set(s.worker_pids()).isdisjoint(old), scaled(15), what="new workers")
        for _ in range(10):
            r = requests.get(s.url("/preview/demo/hal/hello"), timeout=5,
                             headers={"Connection": "close"})
            assert r.status_code == 200
        events, _ = ws_client("ws://127.0.0.1:%d/preview/demo/gina/x" % s.wd.port, "echo")
        assert [e["event"] for e in events][-1] == "close" and events[-1]["code"] == 1000
    finally:
        hold.stop()


# ---- admin-only endpoints seen from a non-loopback peer -------------------------------

LO_EXTRA = "198.18.0.1"  # benchmark-testing range (RFC 2544), only used when eth has none


@pytest.fixture
def non_loopback_ipv4():
    """A local IPv4 address outside 127/8: connecting to it from this host makes
    the peer address that same (non-loopback) address. The host's own when it has
    one; otherwise LO_EXTRA/32 added to lo for the test (iproute2, root)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    addrs = [ln.split()[3].split("/")[0] for ln in out.splitlines() if " inet " in ln]
    if addrs:
        yield addrs[0]
        return
    subprocess.run(["ip", "addr", "add", LO_EXTRA + "/32", "dev", "lo"], check=True)
    try:
        yield LO_EXTRA
    finally:
        subprocess.run(["ip", "addr", "del", LO_EXTRA + "/32", "dev", "lo"], check=False)


def test_admin_preview_api_refuses_non_loopback_peer(make_server, peers, workdir,
                                                     non_loopback_ipv4):
    """POST/DELETE /api/preview-servers, GET /api/preview-servers and
    /debug/connections are admin: from a non-loopback peer 403 without the admin
    Bearer token (or with a wrong one), accepted with it. preview-status is public."""
    ip = non_loopback_ipv4
    ext_port = free_port()
    # a second listener on that address only for this test (the usual one stays on loopback)
    s = make_server(dict(FAST_HEALTH, listen=[{"address": "127.0.0.1:%d" % workdir.port},
                                              {"address": "%s:%d" % (ip, ext_port)}]))
    up = peers.upstream()
    base = "http://%s:%d" % (ip, ext_port)
    good = {"Authorization": "Bearer " + ADMIN_TOKEN}
    bad = {"Authorization": "Bearer not-" + ADMIN_TOKEN}
    body = {"projectId": "ext", "userId": "ivy", "port": up.port, "type": "vite"}

    r = requests.get(base + "/api/preview-status/ext/ivy", timeout=5)  # public
    assert r.status_code == 200 and r.json() == {"available": False, "server": None}
    wait_for(lambda: 'access %s "GET /api/preview-status/ext/ivy" 200' % ip in s.log_text(),
             scaled(5), what="the request logged with the non-loopback peer address")

    for hdrs in ({}, bad):
        r = requests.post(base + "/api/preview-servers", json=body, headers=hdrs, timeout=5)
        assert r.status_code == 403, r.text
        assert error_json(r.content)["code"] == "FORBIDDEN"
        assert requests.get(base + "/api/preview-servers", headers=hdrs,
                            timeout=5).status_code == 403
        assert requests.get(base + "/debug/connections", headers=hdrs,
                            timeout=5).status_code == 403
    assert status(s, "ext", "ivy") == {"available": False, "server": None}  # nothing registered

    r = requests.post(base + "/api/preview-servers", json=body, headers=good, timeout=5)
    assert r.status_code == 201, r.text
    on_every_worker(s, lambda: status(s, "ext", "ivy")["available"], "registered")
    r = requests.get(base + "/api/preview-servers", headers=good, timeout=5)
    assert r.status_code == 200 and [x["port"] for x in r.json()["servers"]] == [up.port]
    r = requests.get(base + "/debug/connections", headers=good, timeout=5)
    assert r.status_code == 200 and r.json()["totalConnections"] == 0

    for hdrs in ({}, bad):
        r = requests.delete(base + "/api/preview-servers/ext/ivy", headers=hdrs, timeout=5)
        assert r.status_code == 403 and error_json(r.content)["code"] == "FORBIDDEN"
    assert status(s, "ext", "ivy")["available"]  # still there
    r = requests.delete(base + "/api/preview-servers/ext/ivy", headers=good, timeout=5)
    assert r.status_code == 200 and r.json()["removed"] is True
    on_every_worker(s, lambda: status(s, "ext", "ivy") == {"available": False, "server": None},
                    "unregistered")
    assert ADMIN_TOKEN not in s.log_text()


# ---- response shapes (SPEC §6) ---------------------------------------------------------

def iso_utc(v):
    assert isinstance(v, str) and v.endswith("Z"), v
    datetime.datetime.strptime(v[:19], "%Y-%m-%dT%H:%M:%S")
    return v


# /debug/connections may carry these diagnostics next to SPEC's keys (README):
CONNS_EXTRA = {"listed", "partial", "note"}
TUNNEL_KEYS = {"id", "key", "owner", "projectId", "userId", "upstream", "path", "remote",
               "worker", "pid", "since"}


def test_preview_status_and_debug_connections_shapes(make_server, peers, tmp_path):
    s = make_server(FAST_HEALTH)
    ws = peers.ws_server()
    st = status(s, "demo", "jo")
    assert st == {"available": False, "server": None}
    d = requests.get(s.url("/debug/connections"), timeout=5).json()
    assert d == {"totalConnections": 0, "owners": [], "connections": [], "listed": 0}, d
    assert register(s, "demo", "jo", ws.port, "vite").status_code == 201
    on_every_worker(s, lambda: status(s, "demo", "jo")["available"], "up")
    st = status(s, "demo", "jo")
    assert set(st) == {"available", "server"} and st["available"] is True
    srv = st["server"]
    assert set(srv) == {"port", "type", "url", "iframeUrl", "startedAt"}, srv
    assert type(srv["port"]) is int and srv["port"] == ws.port
    assert srv["type"] == "vite"
    assert srv["url"] == "/preview/demo/jo/" and srv["iframeUrl"].startswith(srv["url"])
    iso_utc(srv["startedAt"])

    hold = HoldClient("ws://127.0.0.1:%d/preview/demo/jo/hmr" % s.wd.port,
                      str(tmp_path / "hold.log"))
    try:
        wait_for(lambda: hold.has("hello"), scaled(10), what="ws connected")
        wait_for(lambda: requests.get(s.url("/debug/connections"),
                                      timeout=5).json()["totalConnections"] == 1,
                 scaled(5), what="tracked")
        d = requests.get(s.url("/debug/connections"), timeout=5).json()
        assert {"totalConnections", "owners", "connections"} <= set(d), d
        assert set(d) - {"totalConnections", "owners", "connections"} <= CONNS_EXTRA, d
        assert type(d["totalConnections"]) is int and d["totalConnections"] == 1
        assert d["owners"] == ["jo"]
        assert isinstance(d["connections"], list) and len(d["connections"]) == 1
        c = d["connections"][0]
        assert set(c) == TUNNEL_KEYS, c
        assert c["owner"] == "jo" and c["projectId"] == "demo" and c["userId"] == "jo"
        assert c["key"] == "demo_jo" and c["path"] == "/preview/demo/jo/hmr"
        assert c["upstream"] == "127.0.0.1:%d" % ws.port and c["remote"] == "127.0.0.1"
        assert type(c["worker"]) is int and type(c["pid"]) is int and c["pid"] > 0
        iso_utc(c["since"])
    finally:
        hold.stop()


def test_delete_closes_the_previews_tunnels(make_server, peers, tmp_path):
    """Unregistering a preview (DELETE) closes its tracked WebSockets at once,
    while the upstream is still up; another preview's tunnel stays."""
    s = make_server(FAST_HEALTH)
    ws = peers.ws_server()
    assert register(s, "demo", "kim", ws.port).status_code == 201
    assert register(s, "demo", "lee", ws.port).status_code == 201
    on_every_worker(s, lambda: status(s, "demo", "kim")["available"] and
                    status(s, "demo", "lee")["available"], "up")
    kim = [HoldClient("ws://127.0.0.1:%d/preview/demo/kim/" % s.wd.port,
                      str(tmp_path / ("k%d.log" % i))) for i in range(3)]
    lee = HoldClient("ws://127.0.0.1:%d/preview/demo/lee/" % s.wd.port, str(tmp_path / "l.log"))
    try:
        for h in kim + [lee]:
            wait_for(lambda h=h: h.has("hello"), scaled(10), what="ws connected")

        def conns():
            return requests.get(s.url("/debug/connections"), timeout=5).json()
        wait_for(lambda: conns()["totalConnections"] == 4, scaled(5), what="4 tracked")
        r = requests.delete(s.url("/api/preview-servers/demo/kim"), timeout=5)
        assert r.status_code == 200
        for h in kim:
            wait_for(lambda h=h: h.has("close"), scaled(5), what="kim's tunnel closed")
        wait_for(lambda: conns()["owners"] == ["lee"] and conns()["totalConnections"] == 1,
                 scaled(5), what="only lee's tunnel left")
        assert not lee.has("close")
        assert "preview server unregistered" in s.log_text()
    finally:
        for h in kim + [lee]:
            h.stop()
