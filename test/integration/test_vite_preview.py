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
import time

import pytest
import requests

from conftest import free_port, scaled, wait_for
from helpers.peers import HERE, IT_DIR, NODE_MODULES, need_node_modules

CHROMIUM = "/usr/bin/chromium"
FIXTURE = os.path.join(IT_DIR, "fixtures", "vite-demo")


def status(s):
    return requests.get(s.url("/api/preview-status/demo/alice"), timeout=5).json()


class Browser:
    def __init__(self, url, main_js, profile, log_path):
        self.log_path = log_path
        self.err = open(log_path, "wb")
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "browser_hmr.js"), url, main_js,
                                      profile], cwd=IT_DIR, stdin=subprocess.PIPE,
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
    b = Browser("http://127.0.0.1:%d/preview/demo/alice/" % s.wd.port,
                os.path.join(vite_project, "main.js"), profile,
                os.path.join(workdir.dir, "browser.stderr"))
    try:
        name, data = b.step(scaled(90))
        assert name == "loaded", (name, data)
        name, data = b.step(scaled(60))
        assert name == "hmr" and data["updated"] and data["sameDocument"], data

        # HMR socket is a tracked proxied WebSocket
        conns = requests.get(s.url("/debug/connections"), timeout=5).json()
        assert conns["totalConnections"] >= 1 and "alice" in conns["owners"], conns

        # Ctrl+C in the terminal: the dev server's whole group gets SIGINT
        open(flag, "w").close()
        app = [c for c in s.status()["children"] if c["role"] == "app"][0]
        os.killpg(app["pid"], signal.SIGINT)
        wait_for(lambda: not status(s)["available"], scaled(15), what="preview down")
        b.go()
        name, data = b.step(scaled(60))
        assert name == "loading" and data["status"] == 503, data
        assert "Starting preview" in data["title"]

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
