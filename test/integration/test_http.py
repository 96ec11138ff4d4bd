"""HTTP/1.1 edge cases on a real socket (SPEC §4): malformed requests, limits,
timeouts, pipelining, chunked bodies, keep-alive, one access line per request."""
import json
import re
import socket
import subprocess
import time
import uuid

import pytest
import requests

from conftest import error_json, scaled, wait_for

GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
GET_API_HEALTH = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# headers > keepalive > request, all small so timeout tests stay short
SHORT_TIMEOUTS = {"timeouts": {"headers": "2s", "keepalive": "1500ms", "request": "1s"}}


@pytest.fixture(scope="module")
def shared_server():
    """One server for the read-only request tests of this module."""
    from conftest import Server, Workdir
    wd = Workdir()
    wd.write_config()
    s = Server(wd)
    s.start()
    yield s
    try:
        s.teardown()
    finally:
        wd.cleanup()


@pytest.fixture
def short_server(make_server):
    return make_server(SHORT_TIMEOUTS)


def test_garbage_is_400_json(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"\x16\x03\x01 this is not http at all\r\n\r\n")
    status, headers, body = c.read_response()
    assert status == 400
    assert headers.get("content-type", "").startswith("application/json")
    error_json(body)
    assert c.closed_by_peer(scaled(5)) is not None, "connection kept open after 400"


def test_bad_request_line_is_400(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"GET /health HTTP/9.9 extra\r\nHost: x\r\n\r\n")
    status, _, body = c.read_response()
    assert status in (400, 505)
    error_json(body)


def test_oversize_headers_431(shared_server, raw):
    c = raw(shared_server.wd.port)
    big = b"X-Big: " + b"a" * (16 * 1024) + b"\r\n"  # limits.header is 8KiB
    try:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body = c.read_response()
    assert status == 431
    error_json(body)


def test_oversize_body_413(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"POST /api/anything HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % (10 * 1024 * 1024))  # limits.body is 64KiB
    status, _, body = c.read_response()
    assert status == 413
    error_json(body)


def test_oversize_chunked_body_413(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"POST /api/anything HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b"y" * 32 * 1024)
    try:
        for _ in range(4):  # 128KiB > 64KiB
            c.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body = c.read_response()
    assert status == 413
    error_json(body)


def test_not_found_is_json(shared_server):
    r = requests.get(shared_server.url("/no/such/path"), timeout=5)
    assert r.status_code == 404
    error_json(r.content)


def test_pipelining_two_responses_in_order(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(GET_HEALTH + GET_API_HEALTH)
    s1, _, b1 = c.read_response()
    s2, _, b2 = c.read_response()
    assert s1 == 200 and json.loads(b1).get("service") == "alive", b1
    assert s2 in (200, 503) and "database" in json.loads(b2), b2


def test_pipelining_many(shared_server, raw):
    c = raw(shared_server.wd.port)
    reqs = b""
    for i in range(10):
        reqs += b"GET /nope-%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
    c.send(reqs + GET_HEALTH)
    for i in range(10):
        status, _, _ = c.read_response()
        assert status == 404
    status, _, body = c.read_response()
    assert status == 200 and json.loads(body)["status"] == "OK"


def test_keepalive_reuse(shared_server, raw):
    c = raw(shared_server.wd.port)
    for _ in range(5):
        c.send(GET_HEALTH)
        status, headers, body = c.read_response()
        assert status == 200
        assert headers.get("connection", "keep-alive").lower() != "close"
    # requests' pool reuses one connection too
    with requests.Session() as sess:
        ports = set()
        for _ in range(5):
            r = sess.get(shared_server.url("/health"), timeout=5, stream=True)
            ports.add(r.raw._connection.sock.getsockname()[1])
            r.content
        assert len(ports) == 1, "keep-alive not reused: %s" % ports


def test_connection_close_honoured(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, _ = c.read_response()
    assert status == 200
    assert c.closed_by_peer(scaled(5)) is not None


def test_http10_without_keepalive_closes(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"GET /health HTTP/1.0\r\n\r\n")
    status, _, _ = c.read_response()
    assert status == 200
    assert c.closed_by_peer(scaled(5)) is not None


def test_chunked_request_body_is_consumed(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"POST /no-such-endpoint HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")
    c.send(b"5\r\nhello\r\n")
    c.send(b"7;ext=1\r\n, world\r\n")
    c.send(b"0\r\nX-Trailer: t\r\n\r\n" + GET_HEALTH)
    s1, h1, b1 = c.read_response()
    assert 400 <= s1 < 500 and s1 != 400, (s1, b1)  # 404/405: parsed, then routed
    error_json(b1)
    assert h1.get("connection", "").lower() != "close", "closed after a normal 4xx"
    s2, _, b2 = c.read_response()
    assert s2 == 200 and json.loads(b2)["service"] == "alive", \
        "the request after a chunked body was misparsed"


def test_content_length_body_is_consumed(shared_server, raw):
    c = raw(shared_server.wd.port)
    body = b'{"a": "GET /health HTTP/1.1"}'
    c.send(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body) + GET_HEALTH)
    s1, _, b1 = c.read_response()
    assert s1 == 405, (s1, b1)
    error_json(b1)
    s2, _, b2 = c.read_response()
    assert s2 == 200 and json.loads(b2)["service"] == "alive"


def test_bad_chunk_size_is_400(shared_server, raw):
    c = raw(shared_server.wd.port)
    c.send(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
    status, _, body = c.read_response()
    assert status == 400
    error_json(body)


def test_slowloris_headers_408(short_server, raw):
    c = raw(short_server.wd.port, timeout=scaled(15))
    t0 = time.monotonic()
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    # trickle one header line every 300ms: each read must not reset the deadline
    got = None
    for i in range(int(scaled(12) / 0.3)):
        try:
            c.send(b"X-Slow-%d: y\r\n" % i)
        except (BrokenPipeError, ConnectionResetError):
            break
        c.sock.settimeout(0.3)
        try:
            chunk = c.sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        c.buf += chunk
        if b"\r\n\r\n" in c.buf:
            break
    elapsed = time.monotonic() - t0
    c.sock.settimeout(scaled(5))
    status, _, body = c.read_response()
    assert status == 408, status
    error_json(body)
    assert 1.5 <= elapsed <= 2 + scaled(2), "408 after %.2fs, headers timeout is 2s" % elapsed


def test_idle_keepalive_closed_after_timeout(short_server, raw):
    c = raw(short_server.wd.port, timeout=scaled(10))
    c.send(GET_HEALTH)
    status, _, _ = c.read_response()
    assert status == 200
    t = c.closed_by_peer(scaled(10))
    assert t is not None, "idle keep-alive connection never closed"
    assert 1.0 <= t <= 1.5 + scaled(2), "idle connection closed after %.2fs (keepalive 1.5s)" % t


def test_idle_keepalive_not_closed_early(short_server, raw):
    c = raw(short_server.wd.port, timeout=scaled(10))
    for _ in range(3):  # activity within keepalive keeps it open
        c.send(GET_HEALTH)
        status, _, _ = c.read_response()
        assert status == 200
        assert c.closed_by_peer(0.8) is None


def test_access_log_one_line_per_request(shared_server):
    tag = "/acc-" + uuid.uuid4().hex
    n = 7
    for i in range(n):
        requests.get(shared_server.url("%s-%d" % (tag, i)), timeout=5)
    with requests.Session() as sess:  # keep-alive requests are logged too
        for i in range(n, 2 * n):
            sess.get(shared_server.url("%s-%d" % (tag, i)), timeout=5)

    def count():
        return len([ln for ln in shared_server.log_text().splitlines() if tag in ln])

    wait_for(lambda: count() >= 2 * n, scaled(5), what="access lines in the log")
    lines = [ln for ln in shared_server.log_text().splitlines() if tag in ln]
    assert len(lines) == 2 * n, "expected exactly %d access lines, got %d:\n%s" % (
        2 * n, len(lines), "\n".join(lines))
    for i in range(2 * n):
        mine = [ln for ln in lines if re.search(r"%s-%d\b" % (re.escape(tag), i), ln)]
        assert len(mine) == 1 and "404" in mine[0] and "GET" in mine[0], mine


def test_connection_burst_is_shared_between_workers(server):
    """200 keep-alive connections opened at once and kept busy (wrk, as a load
    test or a proxy in front would) spread over both workers. Without balancing,
    the first worker woken takes most of the burst (seen: 221 of 256) while the
    other idles; a worker holding clearly more than another now leaves new
    connections to it."""
    wrk = subprocess.Popen(["wrk", "-t2", "-c200", "-d%ds" % int(scaled(4)),
                            server.url("/health")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        def per_worker():
            st = server.status()
            return sorted(int(c.get("connections") or 0) for c in st["children"]
                          if c["role"] == "worker")
        counts = wait_for(lambda: (lambda c: c if sum(c) >= 200 else None)(per_worker()),
                          scaled(10), interval=0.05, what="200 connections held")
        # balanced within the slack (8) plus what is in flight; unbalanced runs
        # measured here split 85/115 (200 connections) and 36/221 (256)
        assert len(counts) == 2 and counts[1] - counts[0] <= 20, counts
    finally:
        out = wrk.communicate(timeout=scaled(30))[0]
    assert "Requests/sec" in out, out
