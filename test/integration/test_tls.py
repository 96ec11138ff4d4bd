"""TLS termination (SPEC §8): a `tls: {cert, key}` listener served by the same
workers as the plain one. Real clients only: Python's ssl module (OpenSSL),
curl, and socket.io-client over https (polling requests of one session land on
either worker, so the plaintext hand-off between workers is exercised too).
Every hostile or mistaken client (plain HTTP, garbage, a stalled handshake, an
old protocol version) is refused without harming a worker; a reload picks up a
renewed certificate and refuses a broken one."""
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings

import pytest
import requests

from conftest import JWT_SECRET, Server, Workdir, free_port, scaled, wait_for
from helpers.peers import HERE, Peer, need_node_modules

NODE_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_chat_driver.js")


def make_cert(d, name, cn="localhost"):
    """A self-signed P-256 certificate valid for localhost and 127.0.0.1."""
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=" + cn, "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(cert):
    der = ssl.PEM_cert_to_DER_cert(open(cert).read())
    return fingerprint(der)


def client_ctx(cafile, maxv=None, minv=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if maxv:
        ctx.maximum_version = maxv
    if minv:
        ctx.minimum_version = minv
    return ctx


def tls_connect(port, cafile, **kw):
    raw = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    return client_ctx(cafile, **kw).wrap_socket(raw, server_hostname="localhost")


def read_response(sock):
    """One HTTP/1.1 response with Content-Length from a (TLS) socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response head: %r" % data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed inside a body")
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:n], rest[n:]


@pytest.fixture(scope="module")
def tls():
    up_port = free_port()
    up = Peer([sys.executable, os.path.join(HERE, "upstream.py"), str(up_port)], up_port)
    wd = Workdir()
    wd.tls_port = free_port()
    wd.cert, wd.key = make_cert(wd.dir, "server")
    wd.overrides = {
        "listen": [{"address": "127.0.0.1:%d" % wd.port},
                   {"address": "127.0.0.1:%d" % wd.tls_port,
                    "tls": {"cert": wd.cert, "key": wd.key}}],
        "timeouts": {"headers": "2s", "keepalive": "1500ms", "request": "1s"},
        "limits": {"body": "16MiB"},
        "proxy": {"routes": [{"prefix": "/api/legacy/",
                              "upstream": "http://127.0.0.1:%d" % up_port}]},
    }
    wd.write_config(wd.overrides)
    s = Server(wd)
    try:
        up.wait_listening()
        s.start()
        s.pids_at_start = s.worker_pids()
        s.https = "https://127.0.0.1:%d" % wd.tls_port
        yield s
    finally:
        try:
            s.teardown()
        finally:
            up.stop()
            wd.cleanup()


def workers_intact(s):
    assert s.worker_pids() == s.pids_at_start, "a worker died or was replaced"
    r = requests.get(s.https + "/health", verify=s.wd.cert, timeout=scaled(5))
    assert r.status_code == 200


def test_https_health_and_keepalive(tls):
    r = requests.get(tls.https + "/health", verify=tls.wd.cert, timeout=scaled(5))
    assert r.status_code == 200 and r.json()["status"] == "OK"
    # Two requests pipelined on one TLS connection, then a third on the same
    # connection after the answers: keep-alive and pipelining work over TLS.
    with tls_connect(tls.wd.tls_port, tls.wd.cert) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        assert s.selected_alpn_protocol() in (None, "http/1.1")
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        st1, _, b1, rest = read_response(s)
        assert st1 == 200 and json.loads(b1)["status"] == "OK"
        # the second answer may already be in `rest`
        if rest:
            data = rest
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            assert data.startswith(b"HTTP/1.1 404")
        else:
            st2, _, b2, _ = read_response(s)
            assert st2 == 404 and json.loads(b2)["error"]["code"]
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # skip whatever is left of the 404, then the third answer
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.count(b"HTTP/1.1 200") >= 1, data[:300]


def test_alpn_and_curl(tls):
    ctx = client_ctx(tls.wd.cert)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", tls.wd.tls_port), timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    r = subprocess.run(["curl", "-sS", "--cacert", tls.wd.cert, "-o", "/dev/null", "-w",
                        "%{http_code} %{ssl_verify_result}", tls.https + "/api/health"],
                       capture_output=True, text=True, timeout=scaled(20))
    assert r.returncode == 0, r.stderr
    code, verify = r.stdout.split()
    assert code in ("200", "503") and verify == "0"


def test_both_tls12_and_tls13_work(tls):
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with tls_connect(tls.wd.tls_port, tls.wd.cert, maxv=v, minv=v) as s:
            assert s.version() == v.name.replace("_", ".")
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200


def test_tls11_is_refused(tls):
    """TLS >= 1.2 (SPEC §8): a client that offers at most TLS 1.1 fails the
    handshake. The client is allowed to offer 1.1 (SECLEVEL=0), so the refusal
    is the server's, not the client library's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated on purpose: it is what we refuse
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError) as e:
        pytest.fail("this OpenSSL cannot even offer TLS 1.1 (%s): test cannot tell" % e)
    raw = socket.create_connection(("127.0.0.1", tls.wd.tls_port), timeout=scaled(10))
    with pytest.raises(ssl.SSLError) as ei:
        ctx.wrap_socket(raw, server_hostname="localhost")
    raw.close()
    msg = str(ei.value).lower()
    # the server answers with a protocol_version alert
    assert "protocol version" in msg, msg
    workers_intact(tls)


def test_plain_http_on_tls_port_gets_clear_400(tls):
    with socket.create_connection(("127.0.0.1", tls.wd.tls_port), timeout=scaled(10)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "TLS_REQUIRED" and "https://" in body["error"]["message"]
    workers_intact(tls)


def test_garbage_and_truncated_handshakes_close_cleanly(tls):
    for payload in (b"\x16\x03\x01\x00\x05hello-not-a-handshake" * 4, b"\x00\x01\x02\x03",
                    os.urandom(4096), b"\x16\x03\x01"):
        with socket.create_connection(("127.0.0.1", tls.wd.tls_port),
                                      timeout=scaled(10)) as s:
            s.sendall(payload)
            if payload == b"\x16\x03\x01":
                s.shutdown(socket.SHUT_WR)  # a record header, then EOF
            t0 = time.monotonic()
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            assert time.monotonic() - t0 < scaled(5), "svcd held a broken handshake open"
    workers_intact(tls)


def test_stalled_handshake_is_closed_after_headers_timeout(tls):
    """A client that connects and never starts TLS (slow-loris on the handshake)
    is closed after timeouts.headers (2 s here), not held forever."""
    with socket.create_connection(("127.0.0.1", tls.wd.tls_port), timeout=scaled(15)) as s:
        t0 = time.monotonic()
        try:
            got = s.recv(10)
        except ConnectionResetError:
            got = b""
        took = time.monotonic() - t0
    assert got == b"" and 1.0 <= took < scaled(8), took
    workers_intact(tls)


def test_large_bodies_both_ways_and_forwarded_proto(tls):
    body = os.urandom(8 << 20)
    r = requests.post(tls.https + "/api/legacy/sha", data=body, verify=tls.wd.cert,
                      timeout=scaled(60))
    assert r.status_code == 200, r.text
    assert r.json() == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    r = requests.get(tls.https + "/api/legacy/big?n=%d" % (12 << 20), verify=tls.wd.cert,
                     timeout=scaled(60))
    assert r.status_code == 200 and len(r.content) == 12 << 20
    block = bytes(range(256)) * 256
    assert r.content[: len(block)] == block
    h = requests.get(tls.https + "/api/legacy/hello", verify=tls.wd.cert,
                     timeout=scaled(10)).json()["headers"]
    lower = {k.lower(): v for k, v in h.items()}
    assert lower["x-forwarded-proto"] == "https"
    h = requests.get(tls.url("/api/legacy/hello"), timeout=scaled(10)).json()["headers"]
    assert {k.lower(): v for k, v in h.items()}["x-forwarded-proto"] == "http"


def test_client_reset_mid_response_harms_nothing(tls):
    for _ in range(5):
        s = tls_connect(tls.wd.tls_port, tls.wd.cert)
        s.sendall(b"GET /api/legacy/big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (32 << 20))
        s.recv(1000)
        # SO_LINGER 0: close() sends a TCP reset instead of a FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    workers_intact(tls)


def test_socketio_default_options_over_https_across_workers(tls):
    """socket.io-client with default options (polling, then upgrade) over https
    with 2 workers: polling requests of one session reach either worker, whose
    plaintext socket is handed to the owner; every client gets every message."""
    need_node_modules("socket.io-client")
    env = dict(os.environ, NODE_PATH=NODE_MODULES, NODE_EXTRA_CA_CERTS=tls.wd.cert)
    r = subprocess.run(["node", DRIVER, "fanout", tls.https, JWT_SECRET, "30", "20",
                        "default", "3"], capture_output=True, text=True, env=env,
                       timeout=scaled(120))
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    res = json.loads(lines[-1])
    assert res["dupes"] == 0 and res["missing"] == 0, res
    assert res["delivered"] == 30 * 20, res
    workers_intact(tls)


def test_reload_picks_up_renewed_certificate_and_refuses_a_broken_one(tls):
    wd = tls.wd
    with tls_connect(wd.tls_port, wd.cert) as s:
        old = fingerprint(s.getpeercert(binary_form=True))
    assert old == file_fingerprint(wd.cert)

    # renew: new key and certificate in place, then `svc reload`
    tmp = os.path.join(wd.dir, "renew")
    os.makedirs(tmp, exist_ok=True)
    ncert, nkey = make_cert(tmp, "server", cn="localhost-renewed")
    os.replace(nkey, wd.key)
    os.replace(ncert, wd.cert)
    r = wd.svc("reload")
    assert r.returncode == 0, r.stdout + r.stderr

    def renewed():
        with tls_connect(wd.tls_port, wd.cert) as s:
            return fingerprint(s.getpeercert(binary_form=True)) == file_fingerprint(wd.cert)
    wait_for(renewed, scaled(20), interval=0.2, what="the renewed certificate to be served")
    assert file_fingerprint(wd.cert) != old
    # the old generation drains away (its idle keep-alive connections close)
    wait_for(lambda: len(tls.worker_pids()) == 2, scaled(20), what="old generation gone")
    tls.pids_at_start = tls.worker_pids()

    # broken: a key that does not match the certificate → reload refused, the
    # running workers keep the good certificate
    good_key = open(wd.key).read()
    _, other_key = make_cert(tmp, "other")
    with open(wd.key, "w") as f:
        f.write(open(other_key).read())
    try:
        r = wd.svc("reload")
        assert r.returncode != 0
        assert "key" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
        time.sleep(0.5)
        workers_intact(tls)
    finally:
        with open(wd.key, "w") as f:
            f.write(good_key)


def test_sigterm_while_tls_body_arrives_completes_request(make_server, workdir):
    """The drain (SPEC §3) holds over TLS too: a request whose body is still
    arriving on a TLS connection when SIGTERM comes is answered (Connection:
    close), its connection closed with close_notify, and svcd exits 0."""
    tls_port = free_port()
    cert, key = make_cert(workdir.dir, "srv")
    s = make_server({"listen": [{"address": "127.0.0.1:%d" % workdir.port},
                                {"address": "127.0.0.1:%d" % tls_port,
                                 "tls": {"cert": cert, "key": key}}]})
    body = b"x" * 2000
    c = tls_connect(tls_port, cert)
    c.sendall(b"POST /no-such-upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:1000])

    def held():
        st = s.status() or {"children": []}
        return sum(ch.get("connections", 0) for ch in st["children"]
                   if ch["role"] == "worker") >= 1
    wait_for(held, scaled(10), what="a worker holds the TLS connection")
    os.kill(s.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert s.alive(), "master exited with a TLS request in flight"
    c.sendall(body[1000:])
    status, headers, _, _ = read_response(c)
    assert 400 <= status < 500 and status != 408, status
    assert headers.get("connection", "").lower() == "close"
    t0 = time.monotonic()
    while True:  # EOF after close_notify (Python returns b"" for it)
        if not c.recv(65536):
            break
    assert time.monotonic() - t0 < scaled(10)
    c.close()
    assert s.stop(timeout=scaled(20)) == 0


def test_root_only_key_with_user_drop(make_server, workdir):
    """Started as root with `user: nobody` and a key only root may read (0600): the
    master builds the TLS contexts before it drops privileges and its workers (nobody)
    inherit them, so HTTPS works. A reload runs as nobody and cannot read that key:
    it is refused naming the key, and the running workers keep serving."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    os.chmod(workdir.dir, 0o755)
    data = os.path.join(workdir.dir, "data")
    os.makedirs(data)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    keys = os.path.join(workdir.dir, "keys")
    os.makedirs(keys, mode=0o700)
    cert, key = make_cert(keys, "srv")
    os.chmod(keys, 0o711)  # the certificate's directory is passable, the key 0600 root's
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    tls_port = free_port()
    s = make_server({"user": "nobody", "workers": 2,
                     "storage": {"driver": "sqlite", "path": data + "/svcd.db"},
                     "listen": [{"address": "127.0.0.1:%d" % workdir.port},
                                {"address": "127.0.0.1:%d" % tls_port,
                                 "tls": {"cert": cert, "key": key}}]})
    workers = s.worker_pids()
    assert all(os.stat("/proc/%d" % p).st_uid == nobody.pw_uid for p in workers)
    assert os.stat("/proc/%d" % s.pid).st_uid == nobody.pw_uid
    https = "https://127.0.0.1:%d/health" % tls_port
    for _ in range(4):  # new connections: both workers serve TLS
        assert requests.get(https, verify=cert, timeout=scaled(5)).status_code == 200
    r = s.wd.svc("reload")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert r.returncode == 78 and "cannot read %s: Permission denied" % key in r.stderr, out
    assert s.worker_pids() == workers
    assert requests.get(https, verify=cert, timeout=scaled(5)).status_code == 200
