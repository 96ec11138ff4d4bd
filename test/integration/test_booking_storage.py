"""
Storage behaviour around the booking queue that test_booking*.py do not cover
(SPEC §3, §5; issue 3): the job lease is renewed while a slow database runs a job,
storage-backed endpoints fail fast while the database is known to be down, a worker
is ready without waiting for the database, the start-up connect attempts and their
back-off, the background reconnect's back-off cap, the master holding no database
connection after start-up, the `booking:update` push over Socket.IO, and POST
/api/events refused to a non-admin peer.
"""
import concurrent.futures
import datetime
import json
import os
import queue
import re
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import (ADMIN_TOKEN, SLOW, base_env, error_json, free_port, pid_alive, scaled,
                      wait_for)
from ferretdb_fixture import (Api, Backend, backend, collect_final,  # noqa: F401
                              check_views_agree, ferretdb, ferretdb_factory, health_everywhere,
                              job_attempts, token_for)
from helpers.peers import need_node_modules

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_PATH = os.path.join(HERE, "node_modules")
PUSH_CLIENT = os.path.join(HERE, "booking_push_client.js")
LINE = re.compile(r"^(\S+Z) (\w+)\s+\[([^\]]*?) (\d+)\] (.*)$")


def log_lines(srv):
    """[(unix time, level, role, pid, message)] of the server's text log."""
    out = []
    for ln in srv.log_text().splitlines():
        m = LINE.match(ln)
        if m:
            ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            out.append((ts, m.group(2), m.group(3), int(m.group(4)), m.group(5)))
    return out


def dead_port():
    port = free_port()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return port


def mongo_dead(port, **connect):
    be = Backend("mongodb", {"driver": "mongodb", "uri": "mongodb://127.0.0.1:%d/svcd" % port})
    o = be.overrides()
    o["storage"]["connect"].update(connect)
    return o


def debug_log():
    return {"file": "svcd.log", "format": "text", "level": "debug"}


# ------------------------------------------------------------- 1. lease renewal
def test_slow_database_lease_is_renewed(request, make_server, backend):
    """Each job takes 4 s in the database (test fault) while the lease is 1.5 s: the
    processor renews it, so the other worker's idle processor never leases the job
    again — every job is decided on its first lease (attempt 1), none hits
    ATTEMPTS_EXHAUSTED. Without renewal the second worker takes the job over after
    1.5 s (attempt 2) and again every 1.5 s."""
    env = base_env(SVCD_STORE_FAULT="slow-complete", SVCD_STORE_FAULT_MS="4000",
                   SVCD_TEST_JOB_LEASE_MS="1500")
    srv = make_server(backend.overrides(workers=2), env=env)
    api = Api(srv.url(""))
    event = api.create_event("slow-db", seats=["A1", "A2", "A3"])
    ids = {}
    for i, seat in enumerate(["A1", "A2"]):
        r = api.book("slow-%d" % i, event, [seat])
        assert r.status_code == 202, r.text
        ids[r.json()["jobId"]] = "slow-%d" % i
    jobs = collect_final(api, ids, scaled(40))
    assert {j["status"] for j in jobs.values()} == {"success"}, jobs
    check_views_agree(jobs, api.seat_map(event))
    att = job_attempts(request, srv, backend, list(ids))
    assert att == {j: 1 for j in ids}, (
        "a live job was leased again while its processor was still running it "
        "(lease not renewed): %s" % att)


# ---------------------------------------------------- 2. fail fast while down
def test_known_dead_database_answers_503_at_once(ferretdb_factory, make_server):
    """FerretDB is killed; once every worker's check has seen it, 50 concurrent
    storage-backed requests all answer 503 DB_UNAVAILABLE + Retry-After at once —
    none waits for MongoDB server selection (~2 s each, 2 threads per worker, which
    would take ~25 s for 50). /health keeps answering; service resumes after."""
    fd = ferretdb_factory()
    be = Backend("mongodb", {"driver": "mongodb", "uri": fd.uri()})
    srv = make_server(be.overrides(workers=2, timeouts={"shutdown": "5s"}))
    api = Api(srv.url(""))
    event = api.create_event("outage", seats=["A1", "A2"])
    fd.kill()
    wpids = srv.worker_pids()
    wait_for(lambda: all(("%d] database unreachable" % p) in srv.log_text() for p in wpids),
             scaled(20), interval=0.2, what="every worker logs the database as unreachable")

    calls = []
    for i in range(50):
        k = i % 4
        if k == 0:
            calls.append(lambda i=i: api.book("u%d" % i, event, ["A1"], timeout=scaled(30)))
        elif k == 1:
            calls.append(lambda: api.status("u0", "f" * 24, timeout=scaled(30)))
        elif k == 2:
            calls.append(lambda: requests.get(api.base + "/api/events/%s/seats" % event,
                                              timeout=scaled(30)))
        else:
            calls.append(lambda: requests.post(api.base + "/api/events",
                                               json={"name": "x", "seats": ["A1"]},
                                               timeout=scaled(30)))
    health = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t = time.monotonic()
            r = requests.get(api.base + "/health", timeout=scaled(5))
            health.append((r.status_code, time.monotonic() - t))
            time.sleep(0.05)
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        results = list(ex.map(lambda f: (f(), time.monotonic() - t0), calls))
    total = time.monotonic() - t0
    stop.set()
    prober.join(scaled(10))
    slowest = max(dt for _, dt in results)
    print("50 requests during the outage: all answered in %.2fs (slowest %.2fs)" % (
        total, slowest))
    for r, _ in results:
        assert r.status_code == 503, (r.status_code, r.text)
        assert error_json(r.content)["code"] == "DB_UNAVAILABLE"
        assert r.headers.get("Retry-After", "").isdigit(), r.headers
    # one server-selection wait is 2 s: a request that queued behind even one would
    # take that long, and 50 of them on 4 threads ~25 s
    assert total < scaled(3.0), "requests waited for the dead database: %.2fs" % total
    assert health and all(c == 200 for c, _ in health), health[:5]
    assert max(dt for _, dt in health) < scaled(1.5), health
    # it comes back by itself, and bookings work again
    fd.start()
    wait_for(lambda: health_everywhere(srv, api, 200),
             scaled(20), interval=0.2, what="/api/health 200 (every worker) after FerretDB "
             "restarted")
    r = api.book("after", event, ["A2"])
    assert r.status_code == 202, r.text
    jobs = collect_final(api, {r.json()["jobId"]: "after"}, scaled(20))
    assert [j["status"] for j in jobs.values()] == ["success"]


# -------------------------------------------------- 3. ready without the database
def test_worker_ready_without_waiting_for_the_database(make_server):
    """MongoDB down in development: each worker is ready well before one server
    selection (2 s) could have finished — its first ping and index creation run on
    the pool's health thread, not before the event loop starts."""
    port = dead_port()
    srv = make_server(dict(mongo_dead(port, attempts=1), log=debug_log(),
                           timeouts={"shutdown": "5s"}))
    lines = log_lines(srv)
    t_degraded = [t for t, _, role, _, m in lines if "starting DEGRADED" in m]
    assert t_degraded, srv.log_text()[-2000:]
    wait_for(lambda: len([1 for *_, m in log_lines(srv) if ") ready on " in m]) >= 2,
             scaled(10), what="both workers ready")
    ready = [(t, pid) for t, _, _, pid, m in log_lines(srv) if ") ready on " in m]
    delays = [t - t_degraded[0] for t, _ in ready]
    print("workers ready %s s after the storage phase" % ["%.3f" % d for d in delays])
    assert all(d < scaled(1.5) for d in delays), delays
    # and the health thread did check the database after that
    wait_for(lambda: all(any(p == pid and "database check failed" in m
                             for _, _, _, p, m in log_lines(srv)) for _, pid in ready),
             scaled(10), what="each worker's first background check")


# ------------------------------------------------ 4. connect attempts and back-off
@pytest.mark.parametrize("driver", ["sqlite", "mongodb"])
def test_startup_connect_attempts_back_off(make_server, workdir, driver):
    """storage.connect: attempts 5, backoff 200ms, max_backoff 800ms. The start-up
    phase logs attempts 1..4 of 5 as failed with delays 200, 400, 800, 800 ms (doubling,
    capped), really waits that long between attempts, and development then starts
    degraded after the 5th. SQLite (an unopenable path) fails instantly, so the spacing
    of the log lines is the back-off itself; MongoDB adds each try's connect time."""
    if driver == "sqlite":
        blocker = os.path.join(workdir.dir, "not-a-dir")
        open(blocker, "w").close()
        storage = {"driver": "sqlite", "path": os.path.join(blocker, "svcd.db")}
    else:
        storage = {"driver": "mongodb", "uri": "mongodb://127.0.0.1:%d/svcd" % dead_port()}
    storage["connect"] = {"attempts": 5, "backoff": "200ms", "max_backoff": "800ms"}
    srv = make_server({"storage": storage, "timeouts": {"shutdown": "5s"}})
    rx = re.compile(r"phase storage: attempt (\d+) of (\d+) failed: .*; retrying in (\d+) ms")
    seen = [(t, rx.search(m)) for t, _, role, _, m in log_lines(srv) if role == "master"]
    seen = [(t, m) for t, m in seen if m]
    assert [(int(m.group(1)), int(m.group(2))) for _, m in seen] == [(i, 5) for i in
                                                                       range(1, 5)], seen
    delays = [int(m.group(3)) for _, m in seen]
    assert delays == [200, 400, 800, 800], delays
    final = [t for t, _, role, _, m in log_lines(srv)
             if role == "master" and "(after 5 attempts)" in m and "DEGRADED" in m]
    assert final, srv.log_text()[-2000:]
    times = [t for t, _ in seen] + final[:1]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("%s: logged delays %s ms, measured gaps %s s" % (
        driver, delays, ["%.3f" % g for g in gaps]))
    for d, g in zip(delays, gaps):
        assert g >= d / 1000.0 * 0.9, (delays, gaps)
    if driver == "sqlite":  # nothing but the back-off between the lines: it grows
        assert gaps[1] > gaps[0] + 0.1 and gaps[2] > gaps[1] + 0.2, gaps
        assert all(g < d / 1000.0 + scaled(0.5) for d, g in zip(delays, gaps)), gaps


def test_background_reconnect_backoff_capped(make_server):
    """With the database down after start-up each worker keeps checking it with
    back-off 200ms doubling to max_backoff 1s and never longer: the logged delays
    grow, reach 1000 ms and never exceed it; the checks keep coming."""
    port = dead_port()
    srv = make_server(dict(mongo_dead(port, attempts=1, backoff="200ms", max_backoff="1s"),
                           log=debug_log(), timeouts={"shutdown": "5s"}))
    rx = re.compile(r"database check failed \(.*\); next check in (\d+) ms")
    wpids = srv.worker_pids()

    def per_worker():
        out = {p: [] for p in wpids}
        for t, _, _, pid, m in log_lines(srv):
            mm = rx.search(m)
            if mm and pid in out:
                out[pid].append((t, int(mm.group(1))))
        return out
    # each failed check takes up to ~2 s (connect timeout) plus the delay
    wait_for(lambda: all(len(v) >= 5 for v in per_worker().values()), scaled(40),
             interval=0.5, what="5 background checks per worker")
    for pid, checks in per_worker().items():
        delays = [d for _, d in checks]
        print("worker %d: delays %s" % (pid, delays))
        assert delays[:3] == [200, 400, 800], delays
        assert max(delays) == 1000 and all(d <= 1000 for d in delays), delays
        assert delays == sorted(delays), delays
        for (a, d), (b, _) in zip(checks, checks[1:]):
            assert b - a >= d / 1000.0 * 0.9, checks  # it did wait the delay


# ------------------------------------------ 5. no database connection in the master
def _socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            out.add(int(m.group(1)))
    return out


def _open_files(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return out


def _tcp_inodes_to(port):
    """Inodes of TCP sockets whose remote end is 127.0.0.1:port (or ::1 / mapped)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            rport = int(cols[2].rsplit(":", 1)[1], 16)
            if rport == port:
                out.add(int(cols[9]))
    return out


def test_master_holds_no_database_connection(make_server, backend):
    """After start-up the master has no TCP connection to MongoDB and no SQLite file
    open — it closed its start-up handle before forking — while the workers, which
    open their own after fork, do."""
    srv = make_server(backend.overrides(workers=2))
    api = Api(srv.url(""))
    event = api.create_event("fds", seats=["A1"])
    assert api.book("fd-user", event, ["A1"]).status_code == 202
    wpids = srv.worker_pids()
    if backend.name == "mongodb":
        port = int(backend.storage["uri"].split("//", 1)[1].split("/")[0].rsplit(":", 1)[1])

        def db_socks(pid):
            return _socket_inodes(pid) & _tcp_inodes_to(port)
    else:
        dbfile = os.path.realpath(os.path.join(srv.wd.dir, "svcd.db"))

        def db_socks(pid):
            return {f for f in _open_files(pid) if f.startswith(dbfile)}
    wait_for(lambda: all(db_socks(p) for p in wpids), scaled(10),
             what="every worker holds its own database connection")
    assert pid_alive(srv.pid)
    assert not db_socks(srv.pid), "the master holds database connections: %s" % (
        db_socks(srv.pid),)
    coord = [c["pid"] for c in srv.status()["children"] if c["role"] != "worker"]
    print("workers %s hold %s; master %d and %s none" % (
        wpids, [len(db_socks(p)) for p in wpids], srv.pid, coord))


# ------------------------------------------------------- 6. booking:update push
class PushClient:
    def __init__(self, url, token):
        need_node_modules("socket.io-client")
        env = dict(os.environ, NODE_PATH=NODE_PATH)
        self.p = subprocess.Popen(["node", PUSH_CLIENT, url, token, "websocket"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                pass

    def next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)


def test_booking_update_pushed_across_workers(make_server):
    """A socket.io-client logged in with the booking user's JWT receives one
    `booking:update` per job with the final job document (jobId, status success or
    failed with the reason, seats), whichever of the 2 workers decided the job — at
    least one decided by the worker that does not hold the socket."""
    srv = make_server({"workers": 2})
    api = Api(srv.url(""))
    user = "pushed-user"
    c = PushClient(srv.url(""), token_for(user))
    try:
        ev = c.next(scaled(15))
        assert ev and ev["ev"] == "connected", ev
        sock_pid = wait_for(lambda: _socket_owner(srv, c.p.pid), scaled(5), interval=0.1,
                            what="the worker holding the client's WebSocket")
        seats = ["A%d" % i for i in range(1, 41)]
        event = api.create_event("push", seats=seats)
        jobs, got, crossed = {}, {}, 0
        for i in range(40):
            # every 5th job also asks for the previous job's seat: one of them fails
            want = [seats[i], seats[i - 1]] if i and i % 5 == 0 else [seats[i]]
            r = api.book(user, event, want)
            assert r.status_code == 202, r.text
            jobs[r.json()["jobId"]] = want
            time.sleep(0.05)
            if i >= 9:
                crossed = _crossed(srv, jobs, sock_pid)
                if crossed:
                    break
        end = time.monotonic() + scaled(30)
        while len(got) < len(jobs) and time.monotonic() < end:
            ev = c.next(0.5)
            if ev and ev["ev"] == "booking:update":
                d = ev["doc"]
                assert d["jobId"] not in got, "booking:update twice for %s" % d["jobId"]
                got[d["jobId"]] = d
        assert set(got) == set(jobs), "no booking:update for %s" % sorted(set(jobs) - set(got))
        final = collect_final(api, {j: user for j in jobs}, scaled(20))
        for jid, d in got.items():
            assert d["status"] in ("success", "failed"), d
            assert d["seats"] == jobs[jid], d
            assert d["eventId"] == event
            assert d["status"] == final[jid]["status"], (d, final[jid])
            if d["status"] == "failed":
                assert d["error"]["code"] == "SEATS_TAKEN", d
        assert any(d["status"] == "failed" for d in got.values()), "no overlapping job failed"
        crossed = _crossed(srv, jobs, sock_pid)
        print("%d jobs pushed; %d decided on the other worker than the socket's (%d)" % (
            len(got), crossed, sock_pid))
        assert crossed, "every job was decided on the socket's own worker (inconclusive)"
    finally:
        c.close()


def _tcp_rows():
    """[(local port, remote port, inode)] of every TCP socket in this namespace."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for ln in lines:
            cols = ln.split()
            rows.append((int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16),
                         int(cols[9])))
    return rows


def _socket_owner(srv, client_pid):
    """The worker pid holding the server end of client_pid's connection to svcd."""
    port = srv.wd.port
    rows = _tcp_rows()
    mine = _socket_inodes(client_pid)
    cports = {lp for lp, rp, ino in rows if ino in mine and rp == port}
    if len(cports) != 1:
        return None
    cport = cports.pop()
    server_inodes = {ino for lp, rp, ino in rows if lp == port and rp == cport}
    owners = [p for p in srv.worker_pids() if _socket_inodes(p) & server_inodes]
    return owners[0] if len(owners) == 1 else None


def _crossed(srv, jobs, sock_pid):
    n = 0
    for _, _, _, pid, m in log_lines(srv):
        mm = re.search(r"booking job (\w+) for user ", m)
        if mm and mm.group(1) in jobs and pid != sock_pid:
            n += 1
    return n


# -------------------------------------------- 7. admin route from a non-admin peer
def _host_ipv4():
    r = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True)
    for ln in r.stdout.splitlines():
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", ln)
        if m and not m.group(1).startswith("127."):
            return m.group(1)
    return None


def test_post_events_refused_to_non_admin_peer(make_server, workdir):
    """POST /api/events is an admin route: from a non-loopback peer without the admin
    token it is 403 (with a wrong token too), with `Authorization: Bearer
    <admin_token>` it is 201. The server listens on this host's own non-loopback
    IPv4 address only, and the client connects from that address."""
    addr = _host_ipv4()
    assert addr, "this host has no non-loopback IPv4 address (ip -4 addr)"
    srv = make_server({"listen": [{"address": "%s:%d" % (addr, workdir.port)}]}, wait=False)
    base = "http://%s:%d" % (addr, workdir.port)
    wait_for(lambda: requests.get(base + "/health", timeout=scaled(2)).status_code == 200,
             scaled(20), interval=0.1, what="svcd answering on %s" % base)
    body = {"name": "admin-only", "seats": ["A1"]}
    s = requests.Session()
    s.mount("http://", _SourceAdapter(addr))
    r = s.post(base + "/api/events", json=body, timeout=scaled(5))
    assert r.status_code == 403, (r.status_code, r.text)
    assert error_json(r.content)["code"] == "FORBIDDEN", r.text
    r = s.post(base + "/api/events", json=body, timeout=scaled(5),
               headers={"Authorization": "Bearer not-the-admin-token"})
    assert r.status_code == 403, (r.status_code, r.text)
    r = s.post(base + "/api/events", json=body, timeout=scaled(5),
               headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    assert r.status_code == 201, (r.status_code, r.text)
    # the peer really was non-loopback: the access log names it
    assert any(addr in m and "/api/events" in m for *_, m in log_lines(srv)), \
        srv.log_text()[-1500:]


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Bind the client socket to a given source address."""

    def __init__(self, source, **kw):
        self.source = source
        super().__init__(**kw)

    def init_poolmanager(self, *a, **kw):
        kw["source_address"] = (self.source, 0)
        super().init_poolmanager(*a, **kw)



def hold_write_lock(db_path, hog, hold_s, gap_s, running, write=False, locked=None,
                    after=None):
    """Another process's writer (its own sqlite3 connection): while running(), take
    SQLite's write lock (BEGIN IMMEDIATE), optionally insert a row, hold it hold_s,
    commit, wait gap_s. Counts hog["commits"], keeps hog["errors"]; locked() runs
    once the lock is held, after() after each round."""
    import sqlite3
    conn = sqlite3.connect(db_path, timeout=scaled(30), isolation_level=None)
    try:
        while running():
            try:
                conn.execute("BEGIN IMMEDIATE")
                if locked:
                    locked()
                if write:
                    conn.execute("INSERT INTO messages(room, sender, text, ts) "
                                 "VALUES('hog', 'hog', 'x', 0)")
                time.sleep(hold_s)
                conn.execute("COMMIT")
                hog["commits"] += 1
            except sqlite3.Error as e:
                hog["errors"].append(repr(e))
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            time.sleep(gap_s)
            if after:
                after()
    finally:
        conn.close()


def book_round_robin(api, event, seats, i, nthreads, user, deadline, lock, accepted, problems,
                     degraded, stop=None):
    """Client i of nthreads books seats i, i+n, i+2n... one at a time until the deadline
    (or stop). Under `lock`: 202s go to accepted {jobId: user}; on the sanitizer build
    a specified 503 DB_UNAVAILABLE + Retry-After goes to degraded (several times slower
    per write, it can be overloaded by a lock hog and must then degrade as specified);
    anything else, or a transport error, to problems."""
    s = requests.Session()
    for k in range(i, len(seats), nthreads):
        if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
            break
        try:
            r = api.book(user, event, [seats[k]], session=s, timeout=scaled(30))
        except requests.RequestException as e:
            with lock:
                problems.append((seats[k], repr(e)))
            s = requests.Session()
            continue
        with lock:
            if r.status_code == 202:
                accepted[r.json()["jobId"]] = user
            elif (SLOW > 1 and r.status_code == 503 and r.headers.get("Retry-After")
                  and "DB_UNAVAILABLE" in r.text):
                degraded.append(seats[k])
            else:
                problems.append((seats[k], r.status_code, r.text[:200]))


def test_sqlite_write_load_every_booking_202(make_server, workdir):
    """SQLite under write load (the bench's shape: 2 workers, many keep-alive clients
    booking at once, each worker's storage threads and job processor all writing)
    plus a third process holding the write lock in short bursts: every POST
    /api/seats/book answers 202 — never the 503 of a writer that lost the lock race
    for the whole busy timeout — every job is decided (distinct seats: all succeed),
    the seat map agrees, the competing process is not starved either, and the WAL
    stays bounded (checkpoints restart it under steady writes)."""
    srv = make_server(Backend("sqlite", {"driver": "sqlite", "path": "svcd.db"}).overrides(
        workers=2))
    api = Api(srv.url(""))
    rows, cols = 50, 200
    event = api.create_event("write-load", rows=rows, cols=cols)
    seats = list(api.seat_map(event))
    assert len(seats) == rows * cols
    db_path = os.path.join(workdir.dir, "svcd.db")
    nthreads, stop = 16, threading.Event()
    deadline = time.monotonic() + scaled(8)
    lock = threading.Lock()
    accepted, problems, hog = {}, [], {"commits": 0, "errors": []}
    degraded = []
    wal_max = [0]

    def client(i):
        book_round_robin(api, event, seats, i, nthreads, "wl-%d" % i, deadline, lock, accepted,
                         problems, degraded, stop)

    def sample_wal():
        try:
            wal_max[0] = max(wal_max[0], os.path.getsize(db_path + "-wal"))
        except OSError:
            pass

    def hogger():
        # another process's writer: short write transactions back to back
        hold_write_lock(db_path, hog, hold_s=0.002, gap_s=0.003,
                        running=lambda: not stop.is_set() and time.monotonic() < deadline,
                        write=True, after=sample_wal)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(nthreads)]
    threads.append(threading.Thread(target=hogger, daemon=True))
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(scaled(60))
    finally:
        stop.set()
    assert not any(t.is_alive() for t in threads), "load threads did not finish"
    assert not problems, "%d booking(s) not answered 202: %s" % (len(problems), problems[:5])
    assert len(accepted) >= 200, "too little load to mean anything: %d" % len(accepted)
    assert hog["commits"] > 0 and not hog["errors"], hog
    assert "locked by another process" not in srv.log_text()
    jobs = collect_final(api, accepted, scaled(90))
    assert all(j["status"] == "success" for j in jobs.values()), \
        [j for j in jobs.values() if j["status"] != "success"][:3]
    booked = check_views_agree(jobs, api.seat_map(event))
    assert len(booked) == len(accepted)
    # a sanity bound: the checkpoint thread starts the WAL over at 4000 pages (16 MB)
    # plus what is written meanwhile; checkpoints that never catch up let it grow
    # by tens of MB per second under the bench's load
    assert wal_max[0] < 64 * 1024 * 1024, "WAL grew to %d bytes" % wal_max[0]
    print("accepted %d, hog commits %d, WAL max %d bytes" % (
        len(accepted), hog["commits"], wal_max[0]))


def test_sqlite_booking_waits_its_turn_behind_a_lock_hog(make_server, workdir):
    """Another process holds SQLite's write lock almost all the time (40 ms write
    transactions, 1 ms apart) while clients book: each worker's writers queue in
    order and poll the lock often enough to take the short gaps, so every booking
    still gets its 202 within the 5 s bound. (SQLite's own busy timeout sleeps up to
    100 ms between tries: a writer would hit a 1 ms gap only by luck and give up with
    503 after 5 s.)"""
    srv = make_server(Backend("sqlite", {"driver": "sqlite", "path": "svcd.db"}).overrides(
        workers=2))
    api = Api(srv.url(""))
    event = api.create_event("lock-hog", rows=10, cols=50)
    seats = list(api.seat_map(event))
    db_path = os.path.join(workdir.dir, "svcd.db")
    # 8 booking clients (4 under the sanitizer build, several times slower per write)
    nthreads, stop = (4 if SLOW > 1 else 8), threading.Event()
    lock = threading.Lock()
    accepted, problems, hog = {}, [], {"commits": 0, "errors": []}
    degraded = []
    hog_on = threading.Event()

    def hogger():
        # 1 ms gaps (10 ms under the sanitizer build, whose writers are slower to take
        # one); SQLite's own busy handler, sleeping up to 100 ms, would hit either only
        # by luck
        hold_write_lock(db_path, hog, hold_s=0.04, gap_s=0.01 if SLOW > 1 else 0.001,
                        running=lambda: not stop.is_set(), locked=hog_on.set)

    def client(i, deadline):
        book_round_robin(api, event, seats, i, nthreads, "hog-%d" % i, deadline, lock, accepted,
                         problems, degraded)

    h = threading.Thread(target=hogger, daemon=True)
    h.start()
    try:
        assert hog_on.wait(scaled(10)), "the lock hog never got the lock"
        deadline = time.monotonic() + scaled(8)
        threads = [threading.Thread(target=client, args=(i, deadline), daemon=True)
                   for i in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(60))
        assert not any(t.is_alive() for t in threads), "client threads did not finish"
    finally:
        stop.set()
        h.join(scaled(30))
    assert not problems, "%d booking(s) not answered 202: %s" % (len(problems), problems[:5])
    assert len(accepted) >= 2 * nthreads, "too few bookings to mean anything: %d" % len(
        accepted)
    assert len(degraded) <= len(accepted) // 10, (len(degraded), len(accepted))
    # the contention was real: the hog got the lock again and again (under the slower
    # sanitizer build svcd's writers take more of the time, so fewer times: 7 was
    # seen in one fresh-clone run, hence 4 there)
    assert hog["commits"] >= (4 if SLOW > 1 else 20) and not hog["errors"], hog
    jobs = collect_final(api, accepted, scaled(60))
    assert all(j["status"] == "success" for j in jobs.values()), \
        [j for j in jobs.values() if j["status"] != "success"][:3]
    assert len(check_views_agree(jobs, api.seat_map(event))) == len(accepted)
    print("accepted %d behind the hog (%d hog commits)" % (len(accepted), hog["commits"]))
