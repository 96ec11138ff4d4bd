"""Seed 001 end to end: a real Vite dev server run by svcd as a managed app,
served at /preview/demo/alice/, HMR through the proxy checked in headless
Chromium; then the dev server stops (Ctrl+C), the page shows svcd's loading
page instead of proxy errors, and when the dev server is back the page
recovers by itself, HMR included, without restarting anything."""
import json
import os
import select
import shutil
import signal
import subprocess
import struct
import time
import zlib

import pytest
import requests

from conftest import free_port, scaled, wait_for
from helpers.peers import HERE, IT_DIR, NODE_MODULES, need_node_modules

CHROMIUM = "/usr/bin/chromium"
FIXTURE = os.path.join(IT_DIR, "fixtures", "vite-demo")


def status(s):
    return requests.get(s.url("/api/preview-status/demo/alice"), timeout=5).json()


def alice_tunnels(s):
    d = requests.get(s.url("/debug/connections"), timeout=5).json()
    return [c for c in d["connections"] if c["owner"] == "alice"]


def read_png(path):
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into
    (width, height, rows of (r, g, b) tuples); stdlib only."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    rows, i = [], 0
    for _ in range(h):
        ft, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if ft == 1:
                line[x] = (line[x] + a) & 255
            elif ft == 2:
                line[x] = (line[x] + b) & 255
            elif ft == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def check_loading_screenshot(path, viewport):
    """The screenshot shows svcd's loading page: its #fafafa background almost
    everywhere, dark text (#333 heading) centred horizontally, nothing of the app
    (white #fff background)."""
    assert os.path.getsize(path) > 1000, "screenshot file empty"
    w, h, rows = read_png(path)
    assert (w, h) == (viewport["width"], viewport["height"]), (w, h, viewport)
    total = bg = white = 0
    dark = []
    for y in range(0, h, 2):
        for x in range(0, w, 2):
            r, g, b = rows[y][x]
            total += 1
            if all(abs(v - 250) <= 2 for v in (r, g, b)):
                bg += 1
            elif (r, g, b) == (255, 255, 255):
                white += 1
            elif max(r, g, b) < 140:
                dark.append((x, y))
    assert bg > 0.85 * total, "loading page background on %d of %d pixels" % (bg, total)
    assert white < 0.02 * total, "white (app) pixels: %d of %d" % (white, total)
    assert len(dark) > 100, "no text drawn (%d dark pixels): blank screenshot" % len(dark)
    xs = [p[0] for p in dark]
    ys = [p[1] for p in dark]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    assert abs(cx - w / 2) < 0.1 * w and abs(cy - h / 2) < 0.25 * h, (cx, cy, w, h)


class Browser:
    def __init__(self, url, main_js, profile, log_path, shot):
        self.log_path = log_path
        self.err = open(log_path, "wb")
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "browser_hmr.js"), url, main_js,
                                      profile, shot], cwd=IT_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     start_new_session=True)
        self.buf = b""

    def step(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(b"step "):
                    name, _, data = line[5:].decode().partition(" ")
                    if name == "error":
                        pytest.fail("browser: %s\nstderr: %s" % (data, self.stderr()[-3000:]))
                    return name, json.loads(data or "{}")
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("browser step timed out; stderr: %s" % self.stderr()[-3000:])
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    pytest.fail("browser exited (%s); stderr: %s" % (self.proc.poll(),
                                                                     self.stderr()[-3000:]))
                self.buf += chunk

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stderr(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.err.close()


@pytest.fixture
def vite_project(workdir):
    need_node_modules("vite", "playwright-core")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s missing: run `bash scripts/deps.sh --test`" % CHROMIUM, pytrace=False)
    proj = os.path.join(workdir.dir, "vite-demo")
    shutil.copytree(FIXTURE, proj)
    os.symlink(NODE_MODULES, os.path.join(proj, "node_modules"))
    return proj


def test_vite_hmr_through_preview_and_recovery(make_server, vite_project, workdir):
    port = free_port()
    flag = os.path.join(workdir.dir, "vite-stopped")
    vite = os.path.join(NODE_MODULES, "vite", "bin", "vite.js")
    # while the flag exists the "terminal" has no dev server running (seed 001's Ctrl+C)
    command = "while [ -e %s ]; do sleep 0.1; done; exec node %s --port {port}" % (flag, vite)
    s = make_server({
        "proxy": {"health": {"interval": "500ms", "timeout": "300ms"}},
        "apps": [{"name": "web", "cwd": vite_project, "command": command, "port": port,
                  "project": "demo", "owner": "alice", "restart": "always"}],
    })
    wait_for(lambda: status(s)["available"], scaled(60), interval=0.2,
             what="Vite to answer and be registered")
    r = requests.get(s.url("/preview/demo/alice/"), timeout=10)
    assert r.status_code == 200 and "/preview/demo/alice/@vite/client" in r.text

    profile = os.path.join(workdir.dir, "chromium-profile")
    shot = os.path.join(workdir.dir, "loading.png")
    b = Browser("http://127.0.0.1:%d/preview/demo/alice/" % s.wd.port,
                os.path.join(vite_project, "main.js"), profile,
                os.path.join(workdir.dir, "browser.stderr"), shot)
    try:
        name, data = b.step(scaled(90))
        assert name == "loaded", (name, data)
        name, data = b.step(scaled(60))
        assert name == "hmr" and data["updated"] and data["sameDocument"], data
        hmr_urls = data["openSockets"]
        assert hmr_urls and all("/preview/demo/alice/" in u for u in hmr_urls), hmr_urls

        # HMR socket is a tracked proxied WebSocket
        conns = requests.get(s.url("/debug/connections"), timeout=5).json()
        assert conns["totalConnections"] >= 1 and "alice" in conns["owners"], conns
        assert {c["path"].split("?")[0] for c in alice_tunnels(s)} == {"/preview/demo/alice/"}

        # Ctrl+C in the terminal: the dev server's whole group gets SIGINT
        open(flag, "w").close()
        app = [c for c in s.status()["children"] if c["role"] == "app"][0]
        killed_wall, killed = time.time(), time.monotonic()
        os.killpg(app["pid"], signal.SIGINT)
        # down within interval + timeout (0.8 s), loosely: the box is shared
        bound = scaled(0.8 + 4.0)
        wait_for(lambda: not status(s)["available"], bound, interval=0.05, what="preview down")
        wait_for(lambda: not alice_tunnels(s), bound, interval=0.05,
                 what="the HMR tunnel closed and untracked")
        down_after = time.monotonic() - killed
        b.go()
        name, data = b.step(scaled(60))
        assert name == "loading" and data["status"] == 503, data
        assert "Starting preview" in data["title"]
        assert "not running yet" in data["bodyText"] and "svcd preview demo" not in data["bodyText"]
        # the browser saw every HMR socket it had close, soon after the kill
        assert [c["url"] for c in data["closed"]] == hmr_urls, data["closed"]
        for c in data["closed"]:
            assert c["closedAt"] is not None, "HMR socket never closed: %s" % c
            assert c["closedAt"] / 1000.0 - killed_wall < bound, (c, killed_wall)
        check_loading_screenshot(data["screenshot"], data["viewport"])
        assert down_after < bound

        # the dev server comes back: the loading page reloads itself into the app
        os.unlink(flag)
        b.go()
        name, data = b.step(scaled(90))
        assert name == "recovered", (name, data)
    finally:
        b.stop()
    text = s.log_text()
    assert "event previewServerStopped -> room project-demo" in text
    assert text.count("event previewServerStarted -> room project-demo") >= 2
    assert "proxy error" not in text.lower()
