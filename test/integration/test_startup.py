"""Startup and the pidfile (SPEC §3): port conflicts named with the owner, nothing
left behind; `svc start` returns only when READY; twice → already running; a
stale pidfile does not block a start; PORT replaces the first listener's port."""
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from conftest import (SVC, SVCD, Server, pids_with_arg, base_env, free_port, pid_alive, pids_in_group, run_cli,
                      scaled, wait_for)

LISTENER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
print("listening", flush=True)
time.sleep(120)
"""


@pytest.fixture
def squatter(workdir):
    """A separate python process listening on the workdir's port."""
    p = subprocess.Popen([sys.executable, "-c", LISTENER, str(workdir.port)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "listening"
        yield p
    finally:
        p.kill()
        p.wait(timeout=10)


def proc_names(pid):
    names = set()
    with open("/proc/%d/comm" % pid) as f:
        names.add(f.read().strip())
    names.add(os.path.basename(os.readlink("/proc/%d/exe" % pid)))
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        names.add(os.path.basename(f.read().split(b"\0")[0].decode()))
    return names


def assert_port_message(text, port, pid):
    m = re.search(r"port %d is already in use by pid (\d+) \(([^)]+)\)" % port, text)
    assert m, "no 'port %d is already in use by pid N (name)' message:\n%s" % (port, text)
    assert int(m.group(1)) == pid, "wrong pid named: %s, listener is %d" % (m.group(1), pid)
    assert m.group(2) in proc_names(pid), "wrong process name %r, expected one of %s" % (
        m.group(2), proc_names(pid))


def test_port_in_use_foreground(workdir, squatter):
    workdir.write_config()
    p = subprocess.Popen([SVCD, "-c", workdir.config_path], env=base_env(), cwd="/",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=scaled(30))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait()
    assert p.returncode == 1, "rc=%s\n%s%s" % (p.returncode, out, err)
    assert_port_message(out + err, workdir.port, squatter.pid)
    wait_for(lambda: not pids_in_group(p.pid), scaled(5), what="no svcd process left")
    assert not os.path.exists(workdir.pidfile), "stale pidfile left after bind failure"
    assert squatter.poll() is None


def test_port_in_use_svc_start(workdir, squatter):
    workdir.write_config()
    r = workdir.svc("start", timeout=scaled(30))
    assert r.returncode == 1, "rc=%d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    assert_port_message(r.stdout + r.stderr, workdir.port, squatter.pid)
    assert not os.path.exists(workdir.pidfile), "stale pidfile left after bind failure"
    r = workdir.svc("status")
    assert r.returncode == 3, "status after failed start: rc=%d %s" % (r.returncode, r.stdout)


def test_svc_start_returns_when_ready_and_twice_says_already_running(make_server, workdir):
    s = make_server(foreground=False, wait=False)
    # `svc start` returned 0: READY already, so the first request must succeed.
    r = requests.get(s.url("/health"), timeout=5)
    assert r.status_code == 200
    pid = s.read_pidfile()
    assert pid and pid_alive(pid)
    s.wait_ready()
    r2 = workdir.svc("start")
    assert r2.returncode != 0, "second start succeeded:\n" + r2.stdout + r2.stderr
    assert "already running (pid %d)" % pid in r2.stdout + r2.stderr, r2.stdout + r2.stderr
    assert s.read_pidfile() == pid and pid_alive(pid)
    # the foreground binary refuses too
    r3 = run_cli([SVCD, "-c", workdir.config_path], timeout=scaled(30))
    assert r3.returncode != 0
    assert "already running (pid %d)" % pid in r3.stdout + r3.stderr, r3.stdout + r3.stderr
    assert s.read_pidfile() == pid and pid_alive(pid)


def test_svc_start_does_not_hold_callers_pipes(workdir):
    """`out=$(svc start)` must return: the daemon and its children may not keep
    the caller's stdout/stderr pipes open after READY."""
    workdir.write_config()
    s = Server(workdir, foreground=False)
    try:
        try:
            r = run_cli([SVC, "-c", workdir.config_path, "start"], timeout=scaled(20))
        except subprocess.TimeoutExpired:
            holders = [p for p in pids_with_arg(workdir.config_path)]
            pytest.fail("`svc start` with piped stdout/stderr never returned: processes %s "
                        "keep the caller's pipes open" % holders)
        assert r.returncode == 0, r.stdout + r.stderr
        s.pid = s.read_pidfile()
        s.remember(s.pid)
    finally:
        s.teardown()


def test_stale_pidfile_does_not_block_start(make_server, workdir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    os.makedirs(workdir.run_dir, exist_ok=True)
    with open(workdir.pidfile, "w") as f:
        f.write("%d\n" % dead.pid)
    assert not pid_alive(dead.pid)
    s = make_server(foreground=False)
    assert s.pid != dead.pid and pid_alive(s.pid)
    assert requests.get(s.url("/health"), timeout=5).status_code == 200


def test_daemon_mode_returns_when_ready(workdir):
    workdir.write_config()
    s = Server(workdir, foreground=False)
    try:
        with open(s.stdout_path, "w+") as out:
            r = subprocess.run([SVCD, "-d", "-c", workdir.config_path], env=base_env(), cwd="/",
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               timeout=scaled(30))
            out.seek(0)
            r.stdout, r.stderr = out.read(), ""
        assert r.returncode == 0, r.stdout + r.stderr
        pid = s.read_pidfile()
        assert pid and pid_alive(pid)
        s.pid = pid
        s.remember(pid)
        assert requests.get(s.url("/health"), timeout=5).status_code == 200
    finally:
        s.teardown()


def test_port_env_replaces_first_listener(make_server, workdir):
    other = free_port()
    s = make_server(env=base_env(PORT=other), wait=False)
    original = s.wd.port
    s.wd.port = other
    s.wait_ready()
    assert requests.get(s.url("/health"), timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:%d/health" % original, timeout=5)
