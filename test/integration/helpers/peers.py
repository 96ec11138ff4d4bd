"""Real peer processes for the proxy/preview tests: the Python upstream
(upstream.py), the npm `ws` echo server and client. Every process a test starts
is stopped at teardown by its PID (SIGTERM, then SIGKILL of its own group)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import free_port, scaled, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
IT_DIR = os.path.dirname(HERE)
NODE_MODULES = os.path.join(IT_DIR, "node_modules")
NODE = "node"


def need_node_modules(*names):
    missing = [n for n in names if not os.path.isdir(os.path.join(NODE_MODULES, n))]
    if missing:
        pytest.fail("missing npm packages %s in %s: run `bash scripts/deps.sh --test`"
                    % (missing, NODE_MODULES), pytrace=False)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Peer:
    def __init__(self, argv, port, cwd=None, env=None, log=None):
        self.argv = argv
        self.port = port
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, cwd=cwd or IT_DIR, env=env or os.environ.copy(),
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        if log:
            out.close()

    def wait_listening(self, timeout=None):
        def ok():
            if self.proc.poll() is not None:
                pytest.fail("peer %s exited with %s" % (self.argv, self.proc.returncode))
            return port_open(self.port)
        wait_for(ok, timeout or scaled(15), interval=0.05, what="peer on port %d" % self.port)
        return self

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)


@pytest.fixture
def peers():
    started = []

    class Factory:
        def upstream(self, port=None):
            port = port or free_port()
            p = Peer([sys.executable, os.path.join(HERE, "upstream.py"), str(port)], port)
            started.append(p)
            return p.wait_listening()

        def ws_server(self, port=None):
            need_node_modules("ws")
            port = port or free_port()
            p = Peer([NODE, os.path.join(HERE, "ws_echo_server.js"), str(port)], port)
            started.append(p)
            return p.wait_listening()

        def spawn(self, argv, port, **kw):
            p = Peer(argv, port, **kw)
            started.append(p)
            return p

    yield Factory()
    for p in started:
        p.stop()


def ws_client(url, mode, timeout=60):
    """Run the npm `ws` client to completion; returns its events (list of dicts)."""
    need_node_modules("ws")
    r = subprocess.run([NODE, os.path.join(HERE, "ws_client.js"), url, mode], cwd=IT_DIR,
                       capture_output=True, text=True, timeout=scaled(timeout))
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    return events, r


class HoldClient:
    """A `ws` client left open (mode hold); read its events later."""

    def __init__(self, url, log_path):
        need_node_modules("ws")
        self.log_path = log_path
        self.out = open(log_path, "wb")
        self.proc = subprocess.Popen([NODE, os.path.join(HERE, "ws_client.js"), url, "hold"],
                                     cwd=IT_DIR, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def events(self):
        with open(self.log_path) as f:
            return [json.loads(ln) for ln in f.read().splitlines() if ln.startswith("{")]

    def has(self, name):
        return any(e.get("event") == name for e in self.events())

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=5)
        self.out.close()
