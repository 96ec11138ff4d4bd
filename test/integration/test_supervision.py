"""Child supervision (SPEC §3): a worker killed with SIGKILL under load is logged
with its reason and replaced at once while the others keep serving; a worker
whose loop stops (SIGSTOP) is killed and replaced after timeouts.worker."""
import os
import signal
import time

import pytest
import requests

from conftest import is_ready, LoadLoop, pid_alive, pid_state, scaled, wait_for


def ready_workers(s):
    return {c["pid"]: c for c in s.children("worker") if is_ready(c)}


def only_new_worker_serves(s, new_pid, others, attempts=8):
    """Stop every other worker for a moment so only `new_pid` can accept, then
    require a successful request: proof the replacement serves, not just exists."""
    for p in others:
        os.kill(p, signal.SIGSTOP)
    try:
        ok = 0
        for _ in range(attempts):
            try:
                r = requests.get(s.url("/health"), timeout=0.5 * scaled(1),
                                 headers={"Connection": "close"})
                ok += r.status_code == 200
            except requests.RequestException:
                pass
            if ok:
                break
        return ok
    finally:
        for p in others:
            os.kill(p, signal.SIGCONT)


def test_kill9_worker_under_load_is_replaced(make_server):
    s = make_server({"workers": 2})
    before = s.worker_pids()
    assert len(before) == 2
    victim, survivor = before
    load = LoadLoop(s.url("/health"), threads=4, max_seconds=scaled(30)).start()
    try:
        wait_for(lambda: len(load.snapshot()) >= 20, scaled(10), what="load started")
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        def replaced():
            ws = ready_workers(s)
            new = [p for p in ws if p not in before]
            return new[0] if new and survivor in ws else None

        new_pid = wait_for(replaced, scaled(10), interval=0.01, what="replacement READY")
        took = time.monotonic() - t_kill
        assert took < scaled(1.0), "replacement READY after %.2fs (> 1s)" % took
        # the survivor kept serving through it
        wait_for(lambda: load.successes_after(t_kill) >= 20, scaled(10),
                 what="requests served after the kill")
    finally:
        load.stop()
    fails = load.failures()
    # only requests in flight on the killed worker may fail
    assert len(fails) <= 2 * load.nthreads, "too many failures: %d %s" % (
        len(fails), fails[:5])
    assert only_new_worker_serves(s, new_pid, [survivor]), "replacement %d does not serve" % new_pid

    st = s.status()
    by_pid = {c["pid"]: c for c in st["children"]}
    assert by_pid[new_pid]["restarts"] == 1, by_pid[new_pid]
    assert "signal 9" in str(by_pid[new_pid]["last_exit"]), by_pid[new_pid]
    assert by_pid[survivor]["restarts"] == 0, by_pid[survivor]
    wait_for(lambda: "killed by signal 9" in s.log_text(), scaled(5),
             what="'killed by signal 9' in the log")
    log = s.log_text()
    line = next(ln for ln in log.splitlines() if "killed by signal 9" in ln)
    assert str(victim) in line, "exit line does not name the pid %d: %r" % (victim, line)
    assert s.alive()


def test_stuck_worker_is_killed_and_replaced(make_server):
    s = make_server({"workers": 2, "timeouts": {"worker": "2s"}})
    before = s.worker_pids()
    victim = before[0]
    log_len = len(s.log_text())
    t0 = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    try:
        def replaced():
            ws = ready_workers(s)
            return [p for p in ws if p not in before]

        new = wait_for(replaced, 2 + scaled(8), interval=0.1, what="stuck worker replaced")
        took = time.monotonic() - t0
        assert took >= 1.5, "worker replaced after %.2fs, before timeouts.worker (2s)" % took
        wait_for(lambda: not pid_alive(victim), scaled(5), what="stuck worker %d gone" % victim)
        assert set(s.worker_pids()) == {before[1], new[0]}
        wait_for(lambda: str(victim) in s.log_text()[log_len:], scaled(5),
                 what="a log line about the stuck worker %d" % victim)
        assert requests.get(s.url("/health"), timeout=5).status_code == 200
        st = {c["pid"]: c for c in s.status()["children"]}
        assert st[new[0]]["restarts"] == 1, st[new[0]]
    finally:
        if pid_state(victim) == "T":
            os.kill(victim, signal.SIGCONT)


def test_master_survives_repeated_worker_crashes(make_server):
    """A crash loop is throttled, the master never exits because a child did."""
    s = make_server({"workers": 2})
    for _ in range(4):
        pids = s.worker_pids()
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: pids[0] not in s.worker_pids() and len(ready_workers(s)) == 2,
                 scaled(15), interval=0.05, what="worker replaced after crash")
    assert s.alive()
    assert requests.get(s.url("/health"), timeout=5).status_code == 200


def test_crash_loop_is_throttled(make_server):
    """Quick successive deaths are respawned with growing delays, not a fork storm."""
    s = make_server({"workers": 1})
    delays = []
    seen = set(s.worker_pids())
    for _ in range(5):
        pid = s.worker_pids()[0]
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        new = wait_for(lambda: [p for p in ready_workers(s) if p not in seen], scaled(20),
                       interval=0.01, what="respawn in the crash loop")
        delays.append(time.monotonic() - t0)
        seen.update(new)
    assert len(seen) == 6, "forked %d workers for 5 deaths" % (len(seen) - 1)
    assert delays[-1] > 0.3 and delays[-1] > 2 * delays[0], \
        "no growing backoff in a crash loop: %s" % ["%.2f" % d for d in delays]
    assert s.alive()
    assert requests.get(s.url("/health"), timeout=5).status_code == 200
