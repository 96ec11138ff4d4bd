"""A real HTTP/1.1 upstream for the proxy tests (stdlib only, threaded).

    python upstream.py PORT

Paths (any prefix before the last segment is ignored, so /api/legacy/echo and
/echo are the same):
  /hello           200 JSON: method, path, headers seen (a dict, and every line in
                   order in header_list), the client port (tells which upstream
                   connection served: keep-alive reuse)
  /echo            the request body back (Content-Length or chunked in), same length
  /sha             JSON {len, sha256} of the request body (large uploads)
  /big?n=N         N bytes of a known pattern, Content-Length, written in 64 KiB pieces
  /chunked?n=N&size=S   N bytes of the pattern as S-byte chunks (Transfer-Encoding: chunked)
  /eof?n=N         N bytes, no length: the body ends when the connection closes
  /die             promises 1 MB, sends 1000 bytes, then drops the connection
  /hang            reads the request and never answers (until the client goes)
  /garbage         answers with something that is not HTTP
  /reset           closes the connection with a TCP reset, no answer
  /status?code=C   an empty answer with that status
  /stall           the head and 1000 of the 1 MB it promises, then nothing (the
                   connection stays open until the client goes)
  /hopheaders      a response carrying hop-by-hop fields (two Connection lines
                   naming X-Foo and X-Bar, Keep-Alive, Proxy-Connection, Upgrade,
                   TE) next to end-to-end ones (X-End-1, X-End-2)
  /badchunk        a chunked response whose second chunk size is not hex, then
                   nothing (connection left open)
  /oncepercon      answers (like /hello) only as the first request of its
                   connection; a later request on the same connection is read and
                   the connection closed without an answer (a keep-alive connection
                   the upstream dropped just as the proxy reused it)
  /bighead?n=N     a response head of N (default 80) headers of 1 KiB each
"""
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def pattern(n):
    block = bytes(range(256)) * 256  # 64 KiB
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # -- bodies
    def read_body_chunks(self):
        """Yield the request body in pieces (Content-Length or chunked)."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, 65536))
                    if not piece:
                        return
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                piece = self.rfile.read(min(left, 65536))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        name = u.path.rstrip("/").rsplit("/", 1)[-1]
        self.nreq = getattr(self, "nreq", 0) + 1  # requests on this connection
        if name == "oncepercon" and self.nreq > 1:
            for _ in self.read_body_chunks():
                pass
            self.close_connection = True
            return
        if name in ("hello", "oncepercon"):
            for _ in self.read_body_chunks():
                pass
            self.send_json(200, {"method": self.command, "path": self.path,
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "header_list": [[k.lower(), v] for k, v in
                                                 self.headers.items()],
                                 "client_port": self.client_address[1]})
        elif name == "echo":
            body = b"".join(self.read_body_chunks())
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif name == "sha":
            h = hashlib.sha256()
            n = 0
            for piece in self.read_body_chunks():
                h.update(piece)
                n += len(piece)
            self.send_json(200, {"len": n, "sha256": h.hexdigest()})
        elif name == "big":
            n = int(q.get("n", ["1048576"])[0])
            data = pattern(n)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for i in range(0, n, 65536):
                self.wfile.write(data[i:i + 65536])
        elif name == "chunked":
            n = int(q.get("n", ["100000"])[0])
            size = int(q.get("size", ["1000"])[0])
            data = pattern(n)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, n, size):
                piece = data[i:i + size]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif name == "eof":
            n = int(q.get("n", ["5000"])[0])
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Connection: close\r\n\r\n" + pattern(n))
            self.close_connection = True
        elif name == "die":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + pattern(1000))
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
        elif name == "hang":
            deadline = time.monotonic() + 60
            self.connection.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            self.close_connection = True
        elif name == "garbage":
            self.wfile.write(b"SURPRISE this is not an HTTP response\r\n\r\n")
            self.close_connection = True
        elif name == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
        elif name == "status":
            code = int(q.get("code", ["204"])[0])
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
        elif name == "stall":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + pattern(1000))
            self.wfile.flush()
            self.wait_client_gone()
        elif name == "hopheaders":
            body = b"end-to-end body"
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Connection: X-Foo\r\nX-Foo: hop1\r\nX-End-1: kept1\r\n"
                             b"Keep-Alive: timeout=5, max=100\r\n"
                             b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n"
                             b"Connection: keep-alive, X-Bar\r\nX-Bar: hop2\r\n"
                             b"X-End-2: kept2\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif name == "badchunk":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\nzz-not-hex\r\nmore\r\n")
            self.wfile.flush()
            self.wait_client_gone()
        elif name == "bighead":
            head = b"HTTP/1.1 200 OK\r\n" + b"".join(
                b"X-Big-%d: %s\r\n" % (i, b"v" * 1000) for i in range(int(q.get("n", ["80"])[0])))
            self.wfile.write(head + b"Content-Length: 2\r\n\r\nok")
            self.close_connection = True
        else:
            self.send_json(404, {"error": "no such test path", "path": self.path})

    def wait_client_gone(self, limit=60):
        deadline = time.monotonic() + limit
        self.connection.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
