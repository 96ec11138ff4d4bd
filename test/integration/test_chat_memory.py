"""test_chat_memory.py — behaviour kept by the per-connection memory savings:

* request header arrays are allocated as headers arrive (16 slots, doubled up to
  HTTP_MAX_HEADERS) and freed between keep-alive requests after a large head;
* an established Socket.IO WebSocket drops its parsed request head
  (http_conn_compact), yet the access line written when it closes still names the
  path and the User-Agent.
"""
import json
import os
import socket
import struct

from conftest import scaled, wait_for

ORIGIN = "http://localhost:5173"  # auth.client_url of the default config


def _options_request(n_pad, origin_at):
    """An Engine.IO CORS preflight with n_pad filler headers and Origin placed after
    origin_at of them: the answer echoes Origin only if that header was found."""
    lines = [b"OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1", b"Host: x"]
    for i in range(n_pad):
        if i == origin_at:
            lines.append(b"Origin: " + ORIGIN.encode())
        lines.append(b"X-Pad-%d: v%d" % (i, i))
    if origin_at >= n_pad:
        lines.append(b"Origin: " + ORIGIN.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_header_arrays_grow_and_shrink_across_keepalive_requests(server, raw):
    c = raw(server.wd.port)
    # 90 headers (past the first allocation of 16, and after two doublings), a
    # small request, then a large one again, all on one keep-alive connection
    for n_pad, origin_at in ((90, 85), (3, 3), (70, 40), (15, 15), (16, 16), (17, 17)):
        c.send(_options_request(n_pad, origin_at))
        status, headers, _ = c.read_response()
        assert status == 204, (n_pad, status)
        assert headers.get("access-control-allow-origin") == ORIGIN, (n_pad, headers)
        assert headers.get("access-control-allow-methods") == "GET, POST", headers
        assert headers.get("connection", "").lower() != "close"


def _ws_close_frame(code=1000):
    payload = struct.pack("!H", code)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + mask + masked


def test_websocket_access_line_names_path_and_user_agent(make_server):
    s = make_server({"log": {"format": "json"}})
    ua = "svcd-memtest/1.0 (compact head)"
    c = socket.create_connection(("127.0.0.1", s.wd.port), timeout=scaled(5))
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 40) for i in range(40))
    c.sendall(b"GET /socket.io/?EIO=4&transport=websocket&tag=mem1 HTTP/1.1\r\nHost: x\r\n"
              + pad + b"User-Agent: " + ua.encode() + b"\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    data = b""
    while b'0{"sid":' not in data:
        chunk = c.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 101 ")
    c.sendall(_ws_close_frame())
    while True:  # the server answers the close and ends the connection
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    c.close()
    assert b"\x88" in data.split(b"\r\n\r\n", 1)[1]

    def access_line():
        for ln in s.wd.log_text().splitlines():
            try:
                o = json.loads(ln)
            except ValueError:
                continue
            if o.get("kind") == "access" and o.get("status") == 101:
                return o
        return None

    o = wait_for(access_line, scaled(10), what="the WebSocket's access line")
    assert o["method"] == "GET", o
    assert o["path"] == "/socket.io/", o
    assert o["ua"] == ua, o
    assert o["bytes"] > 0, o
