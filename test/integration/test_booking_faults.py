"""
Seat booking under faults (SPEC §3, §5; seeds 002, 003), on SQLite and on MongoDB
(FerretDB): kill -9 of the worker running jobs, kill -9 of the whole server then a
restart, `svc restart`, the database down at start-up (production refuses, development
starts degraded and resumes by itself) and the database lost mid-run.

The invariants checked after every fault: no accepted job is lost (each ends success
or failed within the lease time plus a margin), no seat is booked twice, and the job
view and the seat map agree exactly.
"""
import concurrent.futures
import datetime
import os
import random
import signal
import socket
import time

import pytest
import requests

from conftest import (JWT_SECRET, base_env, error_json, free_port, pid_alive, pids_with_arg,
                      scaled, wait_for)
from ferretdb_fixture import (Api, Backend, BookingLoad, backend,  # noqa: F401
                              check_views_agree, collect_final, ferretdb, ferretdb_factory,
                              health_everywhere, job_leases)

LEASE_S = 10  # the job lease (store_pool.c leases for less; this is the documented bound)
MARGIN_S = 10


def load_pause(backend):
    """Pace the load near what the backend decides per second, so the queue stays
    short (FerretDB decides ~20 jobs/s here, SQLite hundreds)."""
    return scaled(0.2) if backend.name == "mongodb" else 0.02


def lease_window_env(backend):
    """SQLite decides a job within a millisecond of leasing it, too short a window to
    freeze a worker in: the test fault makes each job take 10 ms in the database
    (still far more jobs/s than the load books) so a lease is there to be caught."""
    if backend.name != "sqlite":
        return None
    return base_env(SVCD_STORE_FAULT="slow-complete", SVCD_STORE_FAULT_MS="10")


def final_deadline():
    return scaled(LEASE_S + MARGIN_S)


def iso_s(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def seats_of(rows, cols):
    return ["%s%d" % (chr(ord("A") + r), c) for r in range(rows) for c in range(1, cols + 1)]


def statuses(api, jobs):
    """{jobId: status} of the jobs ({jobId: user}) right now (fresh connections)."""
    out = {}
    for jid, user in jobs.items():
        try:
            r = api.status(user, jid, timeout=scaled(1))
        except requests.RequestException:
            continue
        if r.status_code == 200:
            out[jid] = r.json()["status"]
    return out


def sqlite_leases(path, pid):
    """Jobs the SQLite file says worker `pid` is processing (read-only; a WAL reader
    never waits for a writer, even one that is frozen holding the write lock)."""
    import sqlite3
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=1)
    try:
        rows = c.execute("SELECT id FROM jobs WHERE status = 'processing' AND "
                         "lease_owner LIKE ?", ("%%:%d" % pid,)).fetchall()
    finally:
        c.close()
    return {r[0] for r in rows}


def freeze(pid, timeout=2.0):
    """SIGSTOP pid and wait until every thread of it is really stopped (the signal
    is delivered asynchronously: a thread may still commit right after kill())."""
    os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            states = []
            for t in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                    st = f.read()
                states.append(st[st.rfind(")") + 2:].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
        if states and all(x in ("T", "t") for x in states):
            return
        time.sleep(0.001)
    pytest.fail("pid %d did not stop within %.0fs of SIGSTOP" % (pid, timeout))


def catch_lease_holder(srv, api, load, backend, tries=30):
    """Find a worker while it holds a job lease and freeze it there (SIGSTOP).
    SQLite: sample — freeze W, read the jobs table (read-only): does it name W as the
    lease owner of a job being processed? If not, let W go on and try again a few ms
    later (watching first and freezing on a sighting races the processor: a job
    stays leased only as long as the database takes to run it, see lease_window_env).
    MongoDB: watch the oldest undecided jobs (leased oldest first) until one is
    `processing`, freeze W, check it is still `processing` 0.3 s later while the other
    worker keeps going. A freeze lasts < 2 s (the heart-beat watchdog is 10 s).
    Returns (victim pid, held job ids, tries used) with the victim still stopped."""
    workers = srv.worker_pids()
    dbpath = os.path.join(srv.wd.dir, "svcd.db")
    final = set()
    victim, held = None, set()
    for attempt in range(tries):
        victim = workers[attempt % 2]
        end = time.monotonic() + 2
        seen = set()
        if backend.name == "sqlite":
            while time.monotonic() < end:
                freeze(victim)
                held = sqlite_leases(dbpath, victim)
                if held:
                    return victim, held, attempt + 1
                os.kill(victim, signal.SIGCONT)
                time.sleep(random.uniform(0.005, 0.03))
            continue
        while not seen and time.monotonic() < end:
            with load.lock:
                order = sorted(load.accepted, key=load.accepted_at.get)
                cand = [(j, load.accepted[j]) for j in order if j not in final][:4]
            st = statuses(api, dict(cand))
            final.update(j for j, v in st.items() if v in ("success", "failed"))
            seen = {j: u for j, u in cand if st.get(j) == "processing"}
        if not seen:
            continue
        freeze(victim)
        time.sleep(0.3)
        held = {j for j, v in statuses(api, seen).items() if v == "processing"}
        if held:
            return victim, held, attempt + 1
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pytest.fail("worker %d died while frozen:\n%s" % (victim, "\n".join(
                ln for ln in srv.log_text().splitlines()
                if "master" in ln and "access" not in ln)[-3000:]))
    return victim, held, tries


def check_held(request, srv, backend, jobs, held, kill_t):
    """The jobs a killed worker was processing were decided (collect_final saw them
    final). The database says how (its newest lease), and each way is checked:
    - re-leased: a live processor leased it again after the first lease expired
      (attempt >= 2);
    - own durable commit: the killed processor's decision was already durable but not
      yet visible (finished at the kill, attempt 1);
    - helped (MongoDB only): a live processor whose job needs one of its seats met its
      claims and finished it in place (store_mongo.c claim_seats), which is allowed
      only once the dead lease had expired: finished at or after that lease's end.
    Never more leases than STORE_JOB_MAX_ATTEMPTS (5)."""
    leases = job_leases(request, srv, backend, held)
    for jid in held:
        att, until_ms = leases[jid]
        assert att is not None and 1 <= att <= 5, (jid, att, jobs[jid])
        fin = iso_s(jobs[jid]["finishedAt"])
        own = fin <= kill_t + 0.05
        helped = (backend.name == "mongodb" and att == 1 and until_ms is not None and
                  fin * 1000 >= until_ms - 1)
        assert att >= 2 or own or helped, (jid, att, until_ms, jobs[jid], kill_t)
        print("held job %s: attempt %d, %s" % (
            jid, att, "re-leased after expiry" if att >= 2 else
            "own durable commit" if own else "finished by a live processor after expiry"))


def sigkill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(pids, timeout):
    wait_for(lambda: not [p for p in pids if pid_alive(p)], timeout, what="pids %s gone" % pids)


def verify(api, event, load, held=()):
    accepted = load.stop()
    assert accepted, "no booking was accepted"
    jobs = collect_final(api, accepted, final_deadline())
    owner = check_views_agree(jobs, api.seat_map(event), held)
    return jobs, owner


# ============================================================================ 2. kill -9
def test_kill_worker_running_jobs(request, make_server, backend):
    """Freeze a worker while it holds a job lease (SIGSTOP, lease confirmed), then
    kill -9 it: the master replaces it, its job is decided (leased again after the
    lease expires), bookings go on; nothing lost, nothing double-booked."""
    srv = make_server(backend.overrides(workers=2), env=lease_window_env(backend))
    api = Api(srv.url(""))
    event = api.create_event("kill-worker", rows=6, cols=10)
    load = BookingLoad(api, event, seats_of(6, 10), threads=4, max_requests=3000,
                       pause=load_pause(backend)).start()
    try:
        load.wait_count(15, scaled(30))
        victim, held, tries = catch_lease_holder(srv, api, load, backend)
        kill_t = time.time()
        os.kill(victim, signal.SIGKILL)  # a stopped process dies of SIGKILL too
        print("killed worker %d after %d attempt(s); jobs it held: %s" % (
            victim, tries, sorted(held)))
        wait_gone([victim], scaled(10))

        def replaced():
            pids = srv.worker_pids()
            return len(pids) == 2 and victim not in pids and pids
        wait_for(replaced, scaled(20), interval=0.1, what="worker %d replaced" % victim)
        n = load.count()
        load.wait_count(n + 15, scaled(30), "bookings after the kill")
    finally:
        load.stop_evt.set()
    jobs, _ = verify(api, event, load, held)
    assert held, "the killed worker never held a job lease in %d tries (inconclusive)" % tries
    check_held(request, srv, backend, jobs, held, kill_t)
    assert "signal 9" in srv.log_text() or "SIGKILL" in srv.log_text()


def _kill_all(srv):
    """SIGSTOP then SIGKILL the master and every child (by pid)."""
    pids = [srv.pid] + [c["pid"] for c in srv.status()["children"] if c.get("pid", 0) > 0]
    for p in pids:  # freeze everything first: no process reacts to another's death
        freeze(p)
    sigkill_pids(pids)
    for p in pids:
        try:
            os.kill(p, signal.SIGCONT)
        except ProcessLookupError:
            pass
    wait_gone(pids, scaled(10))
    return pids


def test_kill_whole_server_then_restart(request, make_server, backend):
    """kill -9 of the master and every child mid-run, then start svcd again on the
    same config: the stale pidfile is detected and every accepted job is decided."""
    overrides = backend.overrides(workers=2)
    srv = make_server(overrides, env=lease_window_env(backend))
    api = Api(srv.url(""))
    event = api.create_event("kill-all", rows=6, cols=10)
    load = BookingLoad(api, event, seats_of(6, 10), threads=4, max_requests=3000,
                       pause=load_pause(backend)).start()
    srv2 = None
    try:
        load.wait_count(20, scaled(30))
        # freeze a worker while it holds a lease, then kill everything
        _, held, tries = catch_lease_holder(srv, api, load, backend, tries=30)
        assert held, "no worker was caught holding a job lease in %d tries" % tries
        kill_t = time.time()
        before = load.count()
        pids = _kill_all(srv)
        print("killed %s; a worker held %s (%d tries)" % (pids, sorted(held), tries))
        assert os.path.exists(srv.wd.pidfile), "pidfile should be stale, not removed"
        srv2 = make_server(overrides)
        assert srv2.pid not in pids
        load.wait_count(before + 20, scaled(30), "bookings after the restart")
    finally:
        load.stop_evt.set()
    try:
        jobs, _ = verify(api, event, load, held)
        check_held(request, srv, backend, jobs, held, kill_t)
    finally:
        # stop the second server here: the first one's teardown kills by config path
        if srv2 is not None:
            assert srv2.stop() == 0


def test_svc_restart_mid_run(make_server, backend):
    """`svc restart` (stop + start) under booking traffic: running jobs finish or go
    back to the queue; nothing is lost."""
    srv = make_server(backend.overrides(workers=2), foreground=False)
    api = Api(srv.url(""))
    event = api.create_event("restart", rows=6, cols=10)
    load = BookingLoad(api, event, seats_of(6, 10), threads=4, max_requests=3000,
                       pause=load_pause(backend)).start()
    try:
        load.wait_count(20, scaled(30))
        before = load.count()
        old = srv.pid
        r = srv.wd.svc("restart", env=srv.env, timeout=scaled(60))
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        srv.pid = srv.read_pidfile()
        srv.remember(srv.pid)
        assert srv.pid and srv.pid != old
        assert not pid_alive(old)
        srv.wait_ready()
        load.wait_count(before + 20, scaled(30), "bookings after the restart")
    finally:
        load.stop_evt.set()
    verify(api, event, load)


# ============================================================================ 3. database down
def _mongo_dead_port():
    port = free_port()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return port


def _production(overrides):
    o = dict(overrides)
    o["env"] = "production"
    o["auth"] = {"jwt_secret": JWT_SECRET, "client_url": "https://app.example.com"}
    return o


def test_production_refuses_to_start_without_database(make_server, workdir, backend):
    if backend.name == "mongodb":
        port = _mongo_dead_port()
        be = Backend("mongodb", {"driver": "mongodb", "uri": "mongodb://127.0.0.1:%d/svcd" % port})
        expect = "cannot connect to MongoDB at 127.0.0.1:%d: connection refused" % port
    else:  # an SQLite file that cannot be created: its directory is a regular file
        blocker = os.path.join(workdir.dir, "not-a-dir")
        open(blocker, "w").close()
        be = Backend("sqlite", {"driver": "sqlite", "path": os.path.join(blocker, "svcd.db")})
        expect = "cannot open SQLite database at %s" % os.path.join(blocker, "svcd.db")
    srv = make_server(_production(be.overrides()), wait=False)
    try:
        rc = srv.proc.wait(timeout=scaled(30))
    except Exception:  # noqa: BLE001
        pytest.fail("production svcd did not exit without its database")
    out = srv.stderr_text() + srv.log_text()
    assert rc == 1, (rc, out[-2000:])
    assert expect in out, out[-2000:]
    assert not pids_with_arg(workdir.config_path), "processes left running"
    assert not os.path.exists(workdir.pidfile), "pidfile left behind"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", workdir.port), timeout=1).close()
    # the same through `svc start`: a non-zero exit and the reason on the terminal
    r = workdir.svc("start", timeout=scaled(30))
    assert r.returncode != 0
    assert expect in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert not pids_with_arg(workdir.config_path)
    assert not os.path.exists(workdir.pidfile)


def _expect_503(r):
    print("503 in %.3fs: %s" % (r.elapsed.total_seconds(), r.request.url))
    assert r.status_code == 503, (r.status_code, r.text)
    assert error_json(r.content)["code"] == "DB_UNAVAILABLE"
    assert r.headers.get("Retry-After", "").isdigit(), r.headers


def _assert_degraded(api, event="ffffffffffffffffffffffff", job="f" * 24):
    r = requests.get(api.base + "/api/health", timeout=scaled(5))
    assert r.status_code == 503, r.text
    doc = r.json()
    assert doc["status"] == "unhealthy"
    assert doc["database"]["connected"] is False
    assert doc["database"]["state"] in ("disconnected", "connecting", "not_configured"), doc
    # in parallel: while the database is away each answer waits for its connect timeout
    calls = [lambda: api.book("alice", event, ["A1"], timeout=scaled(15)),
             lambda: api.status("alice", job, timeout=scaled(15)),
             lambda: requests.get(api.base + "/api/events/%s/seats" % event,
                                  timeout=scaled(15)),
             lambda: requests.post(api.base + "/api/events",
                                   json={"name": "x", "seats": ["A1"]}, timeout=scaled(15))]
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as ex:
        for r in list(ex.map(lambda f: f(), calls)):
            _expect_503(r)
    # what needs no database keeps working
    assert requests.get(api.base + "/health", timeout=scaled(5)).status_code == 200


def _healthy_everywhere(srv, api, since=None):
    """Every worker is healthy again. With `since` (a log offset taken while the
    database was down), each worker must also have logged that it reached the
    database again after it: a probe may miss a worker, its own log line does not."""
    if since is not None:
        log = srv.log_text()[since:]
        if not all("%d] database reachable again" % p in log for p in srv.worker_pids()):
            return False
    return health_everywhere(srv, api, 200)


def _health_keeps_answering(srv, api, seconds, expect=503):
    """/api/health must answer at once (it never waits on the database) on every try
    for `seconds`, with `expect`; returns the database states seen, in order."""
    states, slow = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            r = requests.get(api.base + "/api/health", timeout=scaled(2))
        except requests.RequestException as e:
            slow.append("no answer within %.0fs (%s)" % (scaled(2), type(e).__name__))
            continue
        if time.monotonic() - t > scaled(1):
            slow.append("answered in %.1fs" % (time.monotonic() - t))
        assert r.status_code == expect, r.text
        states.append(r.json()["database"]["state"])
        time.sleep(0.2)
    watchdog = [ln for ln in srv.log_text().splitlines() if "heart-beat" in ln]
    assert not slow and not watchdog, (
        "with the database down a worker's loop stopped answering /api/health: %s; "
        "watchdog: %s" % (slow[:3], watchdog[:2]))
    # A wedged worker stops accepting, so the other one answers every request above:
    # look at each worker directly. Idle and waiting for the database, none may spin.
    busy = _worker_cpu(srv, 1.0)
    assert all(v < 0.5 for v in busy.values()), (
        "idle workers burn CPU while the database is down (s of CPU per s): %s" % busy)
    return states


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _worker_cpu(srv, seconds):
    """CPU seconds per second each worker used over `seconds`."""
    hz = os.sysconf("SC_CLK_TCK")
    pids = srv.worker_pids()
    t0 = {p: _cpu_ticks(p) for p in pids}
    time.sleep(seconds)
    return {p: round((_cpu_ticks(p) - t0[p]) / hz / seconds, 2) for p in pids}


def test_development_starts_degraded_and_resumes(ferretdb_factory, make_server, backend,
                                                 workdir):
    """MongoDB: nothing listens on the URI's port until FerretDB is started there.
    SQLite (embedded, so "down" means unopenable): the database path is a
    directory until it is removed, then svcd creates the file by itself."""
    # (ferretdb_factory first: torn down after svcd, which then drains with its database)
    if backend.name == "sqlite":
        blocker = os.path.join(workdir.dir, "svcd.db")
        os.mkdir(blocker)
        be = backend
    else:
        port = _mongo_dead_port()
        be = Backend("mongodb", {"driver": "mongodb",
                                 "uri": "mongodb://127.0.0.1:%d/svcd" % port})
    srv = make_server(be.overrides(timeouts={"shutdown": "5s"}))
    api = Api(srv.url(""))
    assert "starting DEGRADED" in srv.log_text()
    pids = (srv.pid, srv.worker_pids())
    # the first background reconnect rounds (backoff 200ms, 400ms, 800ms, then 1s;
    # each try ~2s while the port refuses)
    states = _health_keeps_answering(srv, api, scaled(8))
    assert states[-1] == "disconnected", states
    _assert_degraded(api)
    assert (srv.pid, srv.worker_pids()) == pids, "a process was replaced while degraded"
    # the database comes up: svcd notices by itself (backoff <= max_backoff 1s)
    down_log = len(srv.log_text())
    if backend.name == "sqlite":
        os.rmdir(blocker)
    else:
        ferretdb_factory(port=port)
    wait_for(lambda: _healthy_everywhere(srv, api, since=down_log), scaled(20), interval=0.2,
             what="/api/health 200 after the database came up")
    event = api.create_event("resumed", seats=["A1", "A2"])
    r = api.book("alice", event, ["A1"])
    assert r.status_code == 202, r.text
    jobs = collect_final(api, {r.json()["jobId"]: "alice"}, final_deadline())
    assert [j["status"] for j in jobs.values()] == ["success"]
    assert (srv.pid, srv.worker_pids()) == pids, "svcd restarted something to resume"


def test_database_lost_mid_run(ferretdb_factory, make_server, backend, workdir):
    """The database goes away under booking traffic: 503 DB_UNAVAILABLE with
    Retry-After while it is away, no process crashes, then everything resumes and
    every accepted job is decided. MongoDB: kill -9 FerretDB, start it again on the
    same port and data. SQLite: another process holds the database's write lock for
    longer than svcd's busy timeout."""
    fd = None
    if backend.name == "mongodb":
        fd = ferretdb_factory()
        be = Backend("mongodb", {"driver": "mongodb", "uri": fd.uri()})
    else:
        be = backend
    srv = make_server(be.overrides(workers=2, timeouts={"shutdown": "5s"}))
    api = Api(srv.url(""))
    event = api.create_event("db-lost", rows=6, cols=10)
    pids = (srv.pid, sorted(c["pid"] for c in srv.status()["children"]))
    # client timeout above SQLite's 5 s busy timeout: the 503 must reach the client
    load = BookingLoad(api, event, seats_of(6, 10), threads=3, max_requests=3000,
                       pause=load_pause(be), timeout=8).start()
    lock_conn = None
    try:
        load.wait_count(15, scaled(30))
        if fd:
            fd.kill()
            wait_for(lambda: health_everywhere(srv, api, 503), scaled(15), interval=0.2,
                     what="/api/health 503 (every worker) after the database died")
            # The kernel may have sent every probe above to one worker: health is each
            # worker's last background check, so wait until every worker has noticed.
            wpids = [c["pid"] for c in srv.status()["children"] if c["role"] == "worker"]
            wait_for(lambda: all(("%d] database unreachable" % p) in srv.log_text()
                                 for p in wpids), scaled(15), interval=0.2,
                     what="every worker logs the database as unreachable")
            _health_keeps_answering(srv, api, scaled(6))
            _assert_degraded(api, event)
        else:
            import sqlite3
            lock_conn = sqlite3.connect(os.path.join(workdir.dir, "svcd.db"), timeout=30,
                                        isolation_level=None)
            lock_conn.execute("BEGIN EXCLUSIVE")
            wait_for(lambda: load.retries["503"] > 0, scaled(30), interval=0.1,
                     what="a 503 while the SQLite write lock is held")
            r = api.book("alice", event, ["A1"], timeout=scaled(30))
            _expect_503(r)
        during = load.count()
        assert (srv.pid, sorted(c["pid"] for c in srv.status()["children"])) == pids, \
            "a process was restarted while the database was away"
        down_log = len(srv.log_text())
        if fd:
            fd.start()
        else:
            lock_conn.execute("ROLLBACK")
            lock_conn.close()
            lock_conn = None
        # MongoDB: every worker logged the loss above, so each must log the return
        wait_for(lambda: _healthy_everywhere(srv, api, since=down_log if fd else None),
                 scaled(20), interval=0.2,
                 what="/api/health 200 after the database came back")
        load.wait_count(during + 15, scaled(30), "bookings after the database came back")
    finally:
        load.stop_evt.set()
        if lock_conn is not None:
            lock_conn.close()
    verify(api, event, load)
    assert load.retries["503"] > 0, "no 503 seen while the database was away"
    assert load.missing_retry_after == 0, "503 without Retry-After"
    assert (srv.pid, sorted(c["pid"] for c in srv.status()["children"])) == pids, \
        "a process crashed or was restarted"
