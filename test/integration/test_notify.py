"""systemd notify protocol (SPEC §3): READY=1 + STATUS=, RELOADING=1 then READY=1
on SIGHUP, STOPPING=1 on SIGTERM, WATCHDOG=1 when WATCHDOG_USEC is set."""
import os
import signal
import socket
import time

import pytest

from conftest import base_env, scaled


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # list of dicts, one per datagram

    def wait(self, key, value=None, timeout=10.0, after=0):
        """Wait for a datagram (index >= after) holding KEY[=value]; returns its index."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                m = self.messages[i]
                if key in m and (value is None or m[key] == value):
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("no %s%s notification within %.0fs; got %s" % (
                    key, "" if value is None else "=" + value, timeout, self.messages))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            d = {}
            for ln in data.decode().split("\n"):
                if "=" in ln:
                    k, _, v = ln.partition("=")
                    d[k] = v
            self.messages.append(d)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(workdir):
    n = NotifySocket(os.path.join(workdir.dir, "notify.sock"))
    yield n
    n.close()


def test_ready_reloading_stopping(make_server, notify):
    s = make_server(env=base_env(NOTIFY_SOCKET=notify.path), wait=False)
    i = notify.wait("READY", "1", timeout=scaled(20))
    s.wait_ready()  # READY means serving
    assert any("STATUS" in m for m in notify.messages), notify.messages
    os.kill(s.pid, signal.SIGHUP)
    j = notify.wait("RELOADING", "1", timeout=scaled(10), after=i + 1)
    notify.wait("READY", "1", timeout=scaled(20), after=j + 1)
    assert s.alive()
    os.kill(s.pid, signal.SIGTERM)
    notify.wait("STOPPING", "1", timeout=scaled(10), after=j)
    assert s.stop(timeout=scaled(20)) == 0


def test_watchdog_pings(make_server, notify):
    s = make_server(env=base_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000"), wait=False)
    i = notify.wait("READY", "1", timeout=scaled(20))
    first = notify.wait("WATCHDOG", "1", timeout=scaled(5))
    notify.wait("WATCHDOG", "1", timeout=scaled(5), after=max(first, i) + 1)
    s.wait_ready()
