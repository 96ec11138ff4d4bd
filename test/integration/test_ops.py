"""Operations (SPEC §8): `svc status` table and JSON, `svc logs`, `svc stop`,
`svc restart`, not-running exit codes, SIGUSR1 log reopening."""
import os
import re
import signal
import subprocess
import time
import uuid

import pytest
import requests

from conftest import is_ready, SVC, SVCD, base_env, pid_alive, run_cli, scaled, wait_for

NOT_RUNNING = 3


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test_status_json_shape(make_server):
    s = make_server({"workers": 2})
    st = s.status()
    assert st is not None
    assert set(st) == {"master", "children"}, st.keys()
    m = st["master"]
    assert isinstance(m["pid"], int) and m["pid"] == s.pid and pid_alive(m["pid"])
    for flag in ("-v", "-V"):
        ver = run_cli([SVCD, flag]).stdout.split()
        assert ver[0] == "svcd" and m["version"] == ver[1], (m, ver)
    assert isinstance(m["version"], str) and re.match(r"^\d+\.\d+", m["version"]), m
    assert number(m["uptime"]) and 0 <= m["uptime"] < 3600, m
    kids = st["children"]
    workers = [c for c in kids if c["role"] == "worker"]
    assert len(workers) == 2, kids
    assert [c["role"] for c in kids].count("coordinator") == 1, kids
    for c in kids:
        for key, types in (("role", str), ("pid", int), ("state", str), ("uptime", (int, float)),
                           ("restarts", int), ("last_exit", str), ("rss", int),
                           ("cpu", (int, float)), ("connections", int)):
            assert key in c, "child lacks %r: %s" % (key, c)
            assert isinstance(c[key], types) and not isinstance(c[key], bool), (key, c)
        assert c["role"] in ("worker", "coordinator"), c
        assert pid_alive(c["pid"]) and c["pid"] != s.pid, c
        assert c["state"] == "online" and is_ready(c), c
        assert 0 <= c["uptime"] <= m["uptime"] + 1, (c, m)
        assert c["restarts"] == 0, c
        assert c["connections"] >= 0, c
        assert 0 <= c["cpu"] <= 100 * os.cpu_count(), c
        assert c["last_exit"] == "", c
        assert c["rss"] > 1024 * 1024, "rss of a live child: %s" % c
        # a child's pid's parent is the master
        with open("/proc/%d/stat" % c["pid"]) as f:
            stat = f.read()
        assert int(stat[stat.rfind(")") + 2:].split()[1]) == s.pid
    # after a crash the same keys keep their types; last_exit says why
    victim = workers[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: all(is_ready(c) and c["pid"] != victim for c in s.children("worker")),
             scaled(10), what="replacement ready")
    new = [c for c in s.children("worker") if c["restarts"] == 1]
    assert len(new) == 1 and isinstance(new[0]["last_exit"], str), s.children("worker")
    assert "signal 9" in new[0]["last_exit"], new


def test_status_connections_counts_open_connections(make_server, raw):
    s = make_server({"workers": 2})
    conns = [raw(s.wd.port) for _ in range(3)]
    for c in conns:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response()[0] == 200

    def total():
        return sum(c["connections"] for c in s.children("worker"))

    wait_for(lambda: total() == 3, scaled(5), what="3 connections in status")
    for c in conns:
        c.close()
    wait_for(lambda: total() == 0, scaled(5), what="0 connections in status")


def test_status_table(make_server):
    s = make_server({"workers": 2})
    r = s.wd.svc("status")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert str(s.pid) in out
    for pid in s.worker_pids():
        row = next((ln for ln in out.splitlines() if re.search(r"\b%d\b" % pid, ln)), None)
        assert row, "worker %d not in table:\n%s" % (pid, out)
        assert "worker" in row and re.search(r"ready|online", row.lower()), row
    header = out.lower()
    for col in ("role", "pid", "state", "uptime", "restarts", "cpu"):
        assert col in header, "column %r missing:\n%s" % (col, out)
    assert re.search(r"rss|mem", header) and "conn" in header, out


def test_logs_n(make_server):
    s = make_server()
    for i in range(10):
        requests.get(s.url("/logs-n-%d" % i), timeout=5)
    wait_for(lambda: "/logs-n-9" in s.log_text(), scaled(5), what="access lines")
    before = s.log_text().splitlines()[-5:]
    r = s.wd.svc("logs", "-n", "5")
    after = s.log_text().splitlines()[-5:]
    assert r.returncode == 0, r.stdout + r.stderr
    got = r.stdout.rstrip("\n").split("\n")
    assert len(got) == 5, r.stdout
    assert got == before or got == after, "svc logs -n 5:\n%s\nlog tail:\n%s" % (
        r.stdout, "\n".join(after))


def test_logs_follow(make_server):
    s = make_server()
    p = subprocess.Popen([SVC, "-c", s.wd.config_path, "logs", "-f", "-n", "1"], env=base_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        tag = "/follow-" + uuid.uuid4().hex
        import threading
        seen = threading.Event()

        def reader():
            for ln in p.stdout:
                if tag in ln:
                    seen.set()
                    return
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        deadline = time.monotonic() + scaled(10)
        while not seen.is_set() and time.monotonic() < deadline:
            requests.get(s.url(tag), timeout=5)
            seen.wait(0.5)
        assert seen.is_set(), "svc logs -f did not show the new access line"
    finally:
        p.kill()
        p.wait(timeout=10)


def test_svc_stop(make_server):
    s = make_server(foreground=False)
    workers = s.worker_pids()
    master = s.pid
    r = s.wd.svc("stop", timeout=scaled(40))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not pid_alive(master), "svc stop returned while the master still runs"
    for p in workers:
        wait_for(lambda: not pid_alive(p), scaled(5), what="worker %d gone" % p)
    assert not os.path.exists(s.wd.pidfile), "pidfile left after svc stop"
    r = s.wd.svc("stop")
    assert r.returncode == NOT_RUNNING, "stop when stopped: rc=%d" % r.returncode
    r = s.wd.svc("status")
    assert r.returncode == NOT_RUNNING, "status when stopped: rc=%d" % r.returncode
    r = s.wd.svc("reload")
    assert r.returncode != 0


def test_svc_stop_foreground_master(make_server):
    s = make_server()
    r = s.wd.svc("stop", timeout=scaled(40))
    assert r.returncode == 0, r.stdout + r.stderr
    assert s.proc.wait(timeout=scaled(10)) == 0
    assert not os.path.exists(s.wd.pidfile)


def test_svc_restart(make_server):
    s = make_server(foreground=False)
    old_master, old_workers = s.pid, s.worker_pids()
    r = s.wd.svc("restart", timeout=scaled(60))
    assert r.returncode == 0, r.stdout + r.stderr
    new_master = s.read_pidfile()
    assert new_master and new_master != old_master and pid_alive(new_master)
    assert not pid_alive(old_master)
    s.pid = new_master
    s.remember(new_master)
    # restart returns when READY
    assert requests.get(s.url("/health"), timeout=5).status_code == 200
    assert set(s.worker_pids()).isdisjoint(old_workers)


def test_status_when_never_started(workdir):
    workdir.write_config()
    r = workdir.svc("status")
    assert r.returncode == NOT_RUNNING, r.stdout + r.stderr
    r = workdir.svc("status", "--json")
    assert r.returncode == NOT_RUNNING, r.stdout + r.stderr


def test_sigusr1_reopens_log(make_server):
    s = make_server({"workers": 2})
    old = s.wd.log_path + ".1"
    os.rename(s.wd.log_path, old)
    os.kill(s.pid, signal.SIGUSR1)
    wait_for(lambda: os.path.exists(s.wd.log_path), scaled(5), what="new log file created")
    tag = "/rotated-" + uuid.uuid4().hex

    def landed(i):
        requests.get(s.url("%s-%d" % (tag, i)), timeout=5, headers={"Connection": "close"})
        return re.search(re.escape("%s-%d" % (tag, i)) + r"\b", s.log_text())

    counter = iter(range(1000))
    wait_for(lambda: landed(next(counter)), scaled(5), interval=0.1,
             what="an access line in the reopened log")
    # now every worker writes to the new file: 10 fresh connections, all land there
    tag2 = "/after-" + uuid.uuid4().hex
    for i in range(10):
        requests.get(s.url("%s-%d" % (tag2, i)), timeout=5, headers={"Connection": "close"})
    wait_for(lambda: s.log_text().count(tag2) >= 10, scaled(5),
             what="all 10 access lines in the new log")
    with open(old) as f:
        old_text = f.read()
    assert tag2 not in old_text, "a worker still writes to the rotated file"
