"""Reverse proxy, static routes (SPEC §6, issue 4): a real Python upstream and
the npm `ws` server behind svcd; every failure mode of the upstream turns into
a 502/504 JSON answer or a closed connection, never a hang or a dead worker."""
import hashlib
import json
import os
import socket
import sys
import time

import pytest
import requests

from conftest import Server, Workdir, error_json, free_port, scaled, wait_for
from helpers.peers import HERE, Peer, need_node_modules, ws_client


def pattern(n):
    block = bytes(range(256)) * 256
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


@pytest.fixture(scope="module")
def env():
    """One svcd (2 workers) with static routes to a Python upstream, a `ws` echo
    server and a port nobody listens on."""
    up_port, ws_port, dead_port = free_port(), free_port(), free_port()
    up = Peer([sys.executable, os.path.join(HERE, "upstream.py"), str(up_port)], up_port)
    need_node_modules("ws")
    ws = Peer(["node", os.path.join(HERE, "ws_echo_server.js"), str(ws_port)], ws_port)
    wd = Workdir()
    wd.write_config({
        "timeouts": {"headers": "20s", "keepalive": "15s", "request": "2s"},
        "proxy": {"routes": [
            {"prefix": "/api/legacy/", "upstream": "http://127.0.0.1:%d" % up_port},
            {"prefix": "/api/legacy/ws/", "upstream": "http://127.0.0.1:%d" % ws_port},
            {"prefix": "/dead/", "upstream": "http://127.0.0.1:%d" % dead_port},
        ], "health": {"interval": "1s", "timeout": "500ms"}},
    })
    s = Server(wd)
    try:
        up.wait_listening()
        ws.wait_listening()
        s.start()
        s.pids_at_start = s.worker_pids()
        yield s
    finally:
        try:
            s.teardown()
        finally:
            up.stop()
            ws.stop()
            wd.cleanup()


def assert_workers_intact(s):
    assert s.worker_pids() == s.pids_at_start, "a worker died or was replaced"
    assert requests.get(s.url("/health"), timeout=5).status_code == 200


def raw_request(port, data, timeout=10):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.sendall(data)
    return c


def read_all(c):
    buf = b""
    try:
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return buf


def read_to_close(c, bound):
    """Read until svcd closes the connection (EOF or reset). Fails if it is still
    open after `bound` seconds: a hang must not pass as a close."""
    buf = b""
    deadline = time.monotonic() + bound
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail("client connection still open after %.1f s (%d bytes read)"
                        % (bound, len(buf)))
        c.settimeout(left)
        try:
            chunk = c.recv(65536)
        except ConnectionResetError:
            return buf, "reset"
        except socket.timeout:
            continue
        if not chunk:
            return buf, "eof"
        buf += chunk


def parse_head(raw):
    """(status line, [(lower name, value)], body) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        fields.append((k.strip().lower(), v.strip()))
    return lines[0], fields, body


def test_static_route_forwards_and_rewrites_headers(env):
    r = requests.get(env.url("/api/legacy/hello?x=1"), timeout=10, headers={
        "X-Forwarded-For": "10.1.2.3", "Connection": "keep-alive, X-Hop",
        "X-Hop": "secret", "Keep-Alive": "timeout=5", "TE": "trailers", "X-Keep": "yes"})
    assert r.status_code == 200
    seen = r.json()
    h = seen["headers"]
    assert seen["path"] == "/api/legacy/hello?x=1"
    assert h["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "127.0.0.1:%d" % env.wd.port
    assert h["host"].startswith("127.0.0.1:")
    assert h["x-keep"] == "yes"
    for hop in ("x-hop", "keep-alive", "te", "connection"):
        assert hop not in h, "hop-by-hop header %s reached the upstream" % hop
    # our own endpoints still win over the proxy, 404/405 stay exact
    assert requests.get(env.url("/health"), timeout=5).json()["status"] == "OK"
    assert requests.get(env.url("/nothing/here"), timeout=5).status_code == 404
    assert requests.post(env.url("/health"), timeout=5).status_code == 405
    # the bare prefix without its trailing slash is proxied too
    assert requests.get(env.url("/api/legacy"), timeout=5).status_code == 404  # upstream's 404
    assert requests.get(env.url("/api/legacy"), timeout=5).json()["error"] == "no such test path"


def test_upstream_keepalive_pool_reused(env):
    with requests.Session() as sess:
        ports = [sess.get(env.url("/api/legacy/hello"), timeout=10).json()["client_port"]
                 for _ in range(8)]
    # one client connection -> one worker -> its pooled upstream connection every time
    assert len(set(ports)) == 1, ports


def test_large_bodies_stream_both_ways(env):
    """Bodies far above limits.body (64 KiB here) go through in both directions,
    and the workers' peak memory shows nothing was buffered whole."""
    size = 48 * 1024 * 1024
    data = os.urandom(1024 * 1024) * 48

    def gen():
        for i in range(0, size, 256 * 1024):
            yield data[i:i + 256 * 1024]

    r = requests.post(env.url("/api/legacy/sha"), data=gen(), timeout=60)  # chunked upload
    assert r.status_code == 200, r.text
    assert r.json() == {"len": size, "sha256": hashlib.sha256(data).hexdigest()}
    r = requests.post(env.url("/api/legacy/sha"), data=data, timeout=60)  # Content-Length
    assert r.json()["len"] == size
    h = hashlib.sha256()
    n = 0
    with requests.get(env.url("/api/legacy/big?n=%d" % size), stream=True, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
            n += len(chunk)
    assert n == size and h.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
    r = requests.post(env.url("/api/legacy/echo"), data=data[:8 << 20], timeout=60)
    assert r.content == data[:8 << 20]
    for pid in env.worker_pids():
        with open("/proc/%d/status" % pid) as f:
            hwm = [ln for ln in f if ln.startswith("VmHWM")][0]
        kb = int(hwm.split()[1])
        assert kb < 40 * 1024, "worker %d peak RSS %d kB: a body was buffered" % (pid, kb)
    assert_workers_intact(env)


def test_chunked_response_passes_through(env):
    c = raw_request(env.wd.port, b"GET /api/legacy/chunked?n=100000&size=1000 HTTP/1.1\r\n"
                                 b"Host: x\r\nConnection: close\r\n\r\n")
    raw = read_all(c)
    c.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    assert body.startswith(b"3e8\r\n"), body[:20]  # the upstream's own chunk sizes
    assert body.endswith(b"0\r\n\r\n")
    r = requests.get(env.url("/api/legacy/chunked?n=100000&size=777"), timeout=10)
    assert r.content == pattern(100000)


def test_http10_client_gets_dechunked_body(env):
    c = raw_request(env.wd.port, b"GET /api/legacy/chunked?n=5000&size=100 HTTP/1.0\r\n\r\n")
    raw = read_all(c)
    c.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert body == pattern(5000)


def test_eof_delimited_response_rechunked_keepalive(env):
    with requests.Session() as sess:
        r = sess.get(env.url("/api/legacy/eof?n=70000"), timeout=10)
        assert r.content == pattern(70000)
        assert r.headers.get("transfer-encoding") == "chunked"
        assert sess.get(env.url("/health"), timeout=5).status_code == 200


def test_pipelined_proxy_and_local_requests_in_order(env):
    c = raw_request(env.wd.port, b"GET /api/legacy/hello HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b"GET /api/legacy/big?n=10 HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
    raw = read_all(c)
    c.close()
    assert raw.count(b"HTTP/1.1 200") == 3, raw[:600]
    i1, i2, i3 = raw.find(b'"client_port"'), raw.find(b'"service":"alive"'), raw.rfind(
        b"Content-Length: 10")
    assert 0 < i1 < i2 < i3


def test_expect_100_continue_forwarded(env):
    body = b"x" * 200000
    c = raw_request(env.wd.port, b"POST /api/legacy/sha HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: %d\r\nExpect: 100-continue\r\n"
                                 b"Connection: close\r\n\r\n" % len(body))
    first = c.recv(100)
    assert first.startswith(b"HTTP/1.1 100"), first
    c.sendall(body)
    raw = first + read_all(c)
    c.close()
    assert b'"len": 200000' in raw


def test_upstream_refused_is_502_json(env):
    t0 = time.monotonic()
    r = requests.get(env.url("/dead/anything"), timeout=10)
    assert r.status_code == 502
    assert error_json(r.content)["code"] == "UPSTREAM_UNAVAILABLE"
    assert time.monotonic() - t0 < 2
    assert "connection refused" in r.json()["error"]["message"].lower()


def test_upstream_garbage_is_502(env):
    r = requests.get(env.url("/api/legacy/garbage"), timeout=10)
    assert r.status_code == 502
    assert error_json(r.content)["code"] == "UPSTREAM_INVALID_RESPONSE"


def test_upstream_reset_is_502(env):
    r = requests.get(env.url("/api/legacy/reset"), timeout=10)
    assert r.status_code == 502
    error_json(r.content)


def test_upstream_hanging_is_504_within_request_timeout(env):
    t0 = time.monotonic()
    r = requests.get(env.url("/api/legacy/hang"), timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 504
    assert error_json(r.content)["code"] == "UPSTREAM_TIMEOUT"
    assert 1.5 < took < scaled(6), took


def test_upstream_killed_mid_response_closes_client(env):
    """The upstream resets after 1000 of 1000000 bytes: the client connection must
    be closed by svcd because of that (not by the 2 s idle timer, not never)."""
    c = raw_request(env.wd.port, b"GET /api/legacy/die HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, _how = read_to_close(c, scaled(5))
    c.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 1000000" in head
    assert body == pattern(1000)  # what came before the reset, then the close
    wait_for(lambda: "/api/legacy/die" in env.log_text() and
             "in the middle of the response body; closing the client connection"
             in env.log_text(), scaled(5), what="the mid-body loss logged")
    assert_workers_intact(env)


def test_upstream_stalls_after_head_closes_client(env):
    """Head and 1000 bytes, then silence with the connection open: after
    timeouts.request (2 s) without progress svcd closes the client connection."""
    t0 = time.monotonic()
    c = raw_request(env.wd.port, b"GET /api/legacy/stall HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, _how = read_to_close(c, scaled(8))
    took = time.monotonic() - t0
    c.close()
    status, fields, body = parse_head(raw)
    assert status.startswith("HTTP/1.1 200") and ("content-length", "1000000") in fields
    assert body == pattern(1000)
    assert took > 1.5, "closed after %.2f s, before timeouts.request" % took
    wait_for(lambda: "no progress within timeouts.request in the middle of the response"
             in env.log_text(), scaled(5), what="the stall logged")
    assert_workers_intact(env)


def test_malformed_upstream_chunked_body_closes_client(env):
    """A bad chunk size after the head went out: all svcd can do is close the
    client connection, at once (not after the idle timer) and without a hang."""
    c = raw_request(env.wd.port, b"GET /api/legacy/badchunk HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, _how = read_to_close(c, scaled(5))
    c.close()
    status, fields, body = parse_head(raw)
    assert status.startswith("HTTP/1.1 200") and ("transfer-encoding", "chunked") in fields
    assert body.startswith(b"5\r\nhello\r\n") and b"more" not in body
    wait_for(lambda: "malformed chunked body; closing the client connection" in env.log_text(),
             scaled(5), what="the framing error logged")
    assert_workers_intact(env)


def test_upstream_head_too_large_is_502(env):
    r = requests.get(env.url("/api/legacy/bighead?n=40"), timeout=10)  # 40 KiB: fine
    assert r.status_code == 200 and r.content == b"ok" and len(r.headers["x-big-39"]) == 1000
    r = requests.get(env.url("/api/legacy/bighead?n=80"), timeout=10)
    assert r.status_code == 502
    e = error_json(r.content)
    assert e["code"] == "UPSTREAM_INVALID_RESPONSE" and "larger than 64 KiB" in e["message"], e
    assert_workers_intact(env)


def test_response_hop_by_hop_fields_stripped(env):
    """RFC 9110 §7.6.1 on the way back: the upstream's Connection lines (two of
    them), the fields they name, Keep-Alive, Proxy-Connection, Upgrade and TE do
    not reach the client; end-to-end fields do; the connection stays usable."""
    c = raw_request(env.wd.port, b"GET /api/legacy/hopheaders HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = b""
    while b"end-to-end body" not in raw:
        chunk = c.recv(65536)
        assert chunk, raw
        raw += chunk
    status, fields, body = parse_head(raw)
    names = [k for k, _ in fields]
    assert status.startswith("HTTP/1.1 200"), status
    for hop in ("x-foo", "x-bar", "keep-alive", "proxy-connection", "upgrade", "te"):
        assert hop not in names, "%s reached the client: %s" % (hop, fields)
    assert ("x-end-1", "kept1") in fields and ("x-end-2", "kept2") in fields
    assert ("content-type", "text/plain") in fields
    assert [v for k, v in fields if k == "connection"] == ["keep-alive"], fields
    assert body == b"end-to-end body"
    c.sendall(b"GET /api/legacy/big?n=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw, _ = read_to_close(c, scaled(5))
    c.close()
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(pattern(10))


def test_request_multiple_connection_lines_and_xff_lines(env):
    """Several Connection lines all count; several X-Forwarded-For lines are one
    list: combined in order, then this hop appended."""
    c = raw_request(env.wd.port, b"GET /api/legacy/hello HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: X-Hop1\r\nX-Hop1: a\r\n"
                                 b"X-Forwarded-For: 10.0.0.1\r\n"
                                 b"Connection: close, X-Hop2\r\nX-Hop2: b\r\n"
                                 b"X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n"
                                 b"X-Keep: yes\r\n\r\n")
    raw, _ = read_to_close(c, scaled(5))
    c.close()
    _, _, body = parse_head(raw)
    seen = json.loads(body)["header_list"]
    names = [k for k, _ in seen]
    assert "x-hop1" not in names and "x-hop2" not in names and "connection" not in names, seen
    assert ["x-keep", "yes"] in seen
    assert [v for k, v in seen if k == "x-forwarded-for"] == [
        "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"], seen


def test_stale_pooled_connection_retried_once(env):
    """The pooled upstream connection is dropped by the upstream when reused
    (closed without a byte of answer): a bodiless request is retried once on a
    fresh connection and succeeds; a request with a body is not replayed (502)."""
    with requests.Session() as sess:
        r1 = sess.get(env.url("/api/legacy/oncepercon"), timeout=10)
        assert r1.status_code == 200, r1.text
        r2 = sess.get(env.url("/api/legacy/oncepercon"), timeout=10)  # reuses r1's connection
        assert r2.status_code == 200, r2.text
        assert r2.json()["client_port"] != r1.json()["client_port"]
        r3 = sess.post(env.url("/api/legacy/oncepercon"), data=b"x" * 100, timeout=10)
        assert r3.status_code == 502, r3.text
        e = error_json(r3.content)
        assert e["code"] == "UPSTREAM_UNAVAILABLE" and "without answering" in e["message"]
    assert_workers_intact(env)


def test_connect_timeout_is_504(make_server):
    """An upstream whose accept queue is full never completes the handshake
    (the kernel drops the SYNs): after proxy.health.timeout svcd answers 504."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)  # never accepted: one queued connection fills it
    port = lst.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(socket.timeout):
            probe.connect(("127.0.0.1", port))  # the premise: connects now hang
    finally:
        probe.close()
    try:
        s = make_server({"timeouts": {"request": "10s"}, "proxy": {
            "routes": [{"prefix": "/full/", "upstream": "http://127.0.0.1:%d" % port}],
            "health": {"interval": "1s", "timeout": "700ms"}}})
        for _ in range(2):  # both workers, most likely
            t0 = time.monotonic()
            r = requests.get(s.url("/full/x"), timeout=30, headers={"Connection": "close"})
            took = time.monotonic() - t0
            assert r.status_code == 504, r.text
            e = error_json(r.content)
            assert e["code"] == "UPSTREAM_TIMEOUT" and "did not accept a connection" in e["message"]
            assert 0.6 < took < scaled(5), took
    finally:
        filler.close()
        lst.close()


def test_websocket_echo_through_static_route(env):
    url = "ws://127.0.0.1:%d/api/legacy/ws/echo?q=1" % env.wd.port
    events, r = ws_client(url, "echo")
    kinds = [e["event"] for e in events]
    assert kinds == ["open", "hello", "text", "binary", "close"], (events, r.stderr)
    hello = events[1]
    assert hello["path"] == "/api/legacy/ws/echo?q=1"
    assert hello["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert events[2]["ok"] and events[3]["ok"] and events[3]["length"] == 1 << 20
    assert events[4]["code"] == 1000 and events[4]["reason"] == "done"
    events, _ = ws_client(url, "servclose")
    assert events[-1]["event"] == "close" and events[-1]["code"] == 4001
    assert events[-1]["reason"] == "server says bye"


def test_upgrade_refused_by_plain_http_upstream(env):
    events, r = ws_client("ws://127.0.0.1:%d/api/legacy/hello" % env.wd.port, "echo")
    assert r.returncode == 3, (events, r.stderr)
    assert events[-1] == {"event": "unexpected-response", "status": 200}
    assert_workers_intact(env)


def test_proxy_access_log_lines(env):
    """One access line per proxied exchange, with the upstream's status."""
    requests.get(env.url("/api/legacy/status?code=202"), timeout=5)
    wait_for(lambda: '"GET /api/legacy/status" 202' in env.log_text(), scaled(5),
             what="access line of a proxied request")
