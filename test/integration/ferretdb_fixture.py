"""
FerretDB (the MongoDB-wire server the tests use, SPEC §9) and the booking test
helpers shared by test_booking*.py: JWT minting (hmac/hashlib only), a small
booking API client, and the storage "backend" parametrization.

FerretDB is installed through scripts/ferretdb.sh (v1.24.2 into build/go, built
once, nothing fetched when present) and started with `scripts/ferretdb.sh start
PORT DIR` on a free loopback port in a temp dir. A FerretDB this module starts
is stopped by its pid (checked against its start time), never by name.
"""
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

from conftest import JWT_SECRET, REPO, free_port, pid_alive, scaled, start_time

FERRETDB_SH = os.path.join(REPO, "scripts", "ferretdb.sh")


# ----------------------------------------------------------------------------- FerretDB
def ferretdb_install():
    """Install FerretDB if missing (idempotent); return the binary's path."""
    r = subprocess.run(["bash", FERRETDB_SH, "path"], capture_output=True, text=True,
                       timeout=900, cwd=REPO)
    if r.returncode != 0:
        pytest.fail("scripts/ferretdb.sh path failed (rc=%d):\n%s%s" % (
            r.returncode, r.stdout[-2000:], r.stderr[-3000:]), pytrace=False)
    return r.stdout.strip().splitlines()[-1]


class FerretDB:
    """One FerretDB process (SQLite handler) on 127.0.0.1:port with data in dir."""

    def __init__(self, port=None, dir=None):
        self.port = port or free_port()
        self.own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="svcd-ferret-", dir="/tmp")
        self.pid = None
        self.t0 = None  # start time of self.pid (clock ticks), guards against pid reuse

    def start(self):
        assert not self.alive(), "FerretDB already running (pid %s)" % self.pid
        r = subprocess.run(["bash", FERRETDB_SH, "start", str(self.port), self.dir],
                           capture_output=True, text=True, timeout=scaled(60), cwd=REPO)
        if r.returncode != 0:
            pytest.fail("cannot start FerretDB on 127.0.0.1:%d: %s\n%s" % (
                self.port, r.stderr[-2000:], self.log_tail()), pytrace=False)
        self.pid = int(r.stdout.strip().splitlines()[-1])
        self.t0 = start_time(self.pid)
        return self

    def alive(self):
        return (self.pid is not None and pid_alive(self.pid)
                and start_time(self.pid) == self.t0)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal it (by pid only) and wait until it is gone and the port is free."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                while self.alive() and time.monotonic() < deadline + 5:
                    time.sleep(0.02)
        self.pid = None

    def kill(self):
        self.stop(sig=signal.SIGKILL)

    def uri(self, db=None):
        return "mongodb://127.0.0.1:%d/%s" % (self.port, db or fresh_db_name())

    def log_tail(self, n=3000):
        try:
            with open(os.path.join(self.dir, "ferretdb.log"), errors="replace") as f:
                return f.read()[-n:]
        except FileNotFoundError:
            return ""

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def fresh_db_name():
    return "bk_" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def ferretdb():
    """A FerretDB for the whole session (tests use a fresh database name each)."""
    ferretdb_install()
    fd = FerretDB().start()
    yield fd
    fd.cleanup()


@pytest.fixture
def ferretdb_factory():
    """FerretDB instances a test controls itself (kill/restart on the same port)."""
    made = []

    def factory(port=None, start=True):
        ferretdb_install()
        fd = FerretDB(port=port)
        made.append(fd)
        if start:
            fd.start()
        return fd

    yield factory
    for fd in made:
        fd.cleanup()


# ----------------------------------------------------------------------------- backends
class Backend:
    def __init__(self, name, storage):
        self.name = name
        self.storage = storage

    def overrides(self, **extra):
        storage = dict(self.storage)
        storage["connect"] = {"attempts": 2, "backoff": "200ms", "max_backoff": "1s"}
        cfg = {"storage": storage}
        cfg.update(extra)
        return cfg


BACKENDS = ["sqlite", "mongodb"]


def make_backend(request, name):
    if name == "sqlite":
        return Backend("sqlite", {"driver": "sqlite", "path": "svcd.db"})
    fd = request.getfixturevalue("ferretdb")
    return Backend("mongodb", {"driver": "mongodb", "uri": fd.uri()})


@pytest.fixture(params=BACKENDS)
def backend(request):
    return make_backend(request, request.param)


# ----------------------------------------------------------------------------- JWT
def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(claims=None, secret=JWT_SECRET, alg="HS256", header=None, sign=True, **kw):
    """An HS256 JWT. `claims` defaults to {sub, iat, exp: +1h}; kw are added."""
    now = int(time.time())
    c = dict(claims) if claims is not None else {"iat": now, "exp": now + 3600}
    c.update(kw)
    h = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = b64u(json.dumps(h, separators=(",", ":"))) + "." + \
        b64u(json.dumps(c, separators=(",", ":")))
    if not sign:
        return signing_input + "."
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64u(sig)


def token_for(user):
    return mint_jwt(sub=user)


def auth(user_or_token):
    tok = user_or_token if user_or_token.count(".") == 2 else token_for(user_or_token)
    return {"Authorization": "Bearer " + tok}


# ----------------------------------------------------------------------------- API client
FINAL = ("success", "failed")


class Api:
    """The four booking endpoints. Every call has a timeout; a Session is optional
    (fresh connection per call without one)."""

    def __init__(self, base, timeout=None):
        self.base = base
        self.timeout = timeout or scaled(10)

    def _s(self, session):
        return session or requests

    def create_event(self, name="show", seats=None, rows=None, cols=None):
        body = {"name": name}
        if seats is not None:
            body["seats"] = seats
        else:
            body["rows"], body["cols"] = rows, cols
        r = requests.post(self.base + "/api/events", json=body, timeout=self.timeout)
        assert r.status_code == 201, (r.status_code, r.text)
        return r.json()["id"]

    def book(self, user, event, seats, key=None, session=None, timeout=None, headers=None):
        h = auth(user)
        if key is not None:
            h["Idempotency-Key"] = key
        if headers:
            h.update(headers)
        return self._s(session).post(self.base + "/api/seats/book",
                                     json={"eventId": event, "seats": seats}, headers=h,
                                     timeout=timeout or self.timeout)

    def status(self, user, job, session=None, timeout=None):
        return self._s(session).get(self.base + "/api/seats/booking-status/" + job,
                                    headers=auth(user), timeout=timeout or self.timeout)

    def seat_map(self, event, session=None):
        r = self._s(session).get(self.base + "/api/events/%s/seats" % event,
                                 timeout=self.timeout)
        assert r.status_code == 200, (r.status_code, r.text)
        doc = r.json()
        return {s["seat"]: s["status"] for s in doc["seats"]}


def check_views_agree(jobs, seat_map, held=()):
    """jobs: {jobId: final status doc}. The seat map and the jobs must tell the same
    story: the seats of successful jobs are exactly the booked seats, no seat is in
    two successful jobs, every failed job says why with a taken seat. Only a job in
    `held` (one whose processor a fault test killed mid-lease) may have failed with
    ATTEMPTS_EXHAUSTED: any other job must never be leased that often."""
    owner = {}
    for jid, j in jobs.items():
        assert j["status"] in FINAL, (jid, j)
        assert j["finishedAt"], (jid, j)
        if j["status"] == "success":
            assert "error" not in j, j
            for s in j["seats"]:
                assert s not in owner, "seat %s is in two successful jobs: %s and %s" % (
                    s, owner[s], jid)
                owner[s] = jid
    booked = {s for s, st in seat_map.items() if st == "booked"}
    assert set(seat_map.values()) <= {"booked", "available"}, seat_map
    assert set(owner) == booked, (
        "seat map and jobs disagree: booked by no successful job %s; successful but "
        "shown available %s" % (sorted(booked - set(owner)), sorted(set(owner) - booked)))
    for jid, j in jobs.items():
        if j["status"] == "failed":
            err = j.get("error") or {}
            assert err.get("code") in ("SEATS_TAKEN", "ATTEMPTS_EXHAUSTED"), (jid, j)
            assert err["code"] != "ATTEMPTS_EXHAUSTED" or jid in held, (
                "job %s failed ATTEMPTS_EXHAUSTED without its processor being killed "
                "(held: %s): %s" % (jid, sorted(held), j))
            if err["code"] == "SEATS_TAKEN":
                # "seats already booked: A1, B2": every seat named is one of the job's
                # and is booked by a successful job
                named = {x.strip() for x in err["message"].rsplit(":", 1)[-1].split(",")}
                assert named and named <= set(j["seats"]), (jid, j)
                assert named <= set(owner), (
                    "job %s failed naming %s as taken, but only %s of them are booked" % (
                        jid, sorted(named), sorted(named & set(owner))))
    return owner


def sqlite_leases(path, ids):
    """{jobId: (attempt, None)} from svcd's SQLite file (read-only). One writer decides
    there, so a job's attempt count is exact; no lease outlives its decision."""
    import sqlite3
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return {i: (c.execute("SELECT attempt FROM jobs WHERE id = ?", (i,)).fetchone()[0],
                    None) for i in ids}
    finally:
        c.close()


def ferret_leases(fd_dir, uri, ids):
    """{jobId: (newest lease attempt, that lease's `until` in ms)} read straight from
    FerretDB's SQLite handler files (read-only): database D is data/D.sqlite, a
    collection a table named in _ferretdb_collections, each document one JSON column.
    The `leases` collection is the truth (one document per attempt, unique _id
    "<job>:<attempt>"); the job document's `attempt` is only a hint (store_mongo.c)."""
    import sqlite3
    db = uri.rsplit("/", 1)[-1].split("?")[0]
    path = os.path.join(fd_dir, "data", db + ".sqlite")
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        table = c.execute("SELECT table_name FROM _ferretdb_collections WHERE name = 'leases'"
                          ).fetchone()[0]
        out = {}
        for i in ids:
            row = c.execute('SELECT json_extract(_ferretdb_sjson, "$.attempt"), '
                            'json_extract(_ferretdb_sjson, "$.until") FROM "%s" '
                            'WHERE json_extract(_ferretdb_sjson, "$.jobId") = ? '
                            'ORDER BY 1 DESC LIMIT 1' % table, (i,)).fetchone()
            out[i] = (row[0], row[1]) if row else (None, None)
        return out
    finally:
        c.close()


def job_leases(request, srv, backend, ids):
    """{jobId: (how many times it was leased, the newest lease's end in ms or None)}."""
    if backend.name == "sqlite":
        return sqlite_leases(os.path.join(srv.wd.dir, "svcd.db"), ids)
    fd = request.getfixturevalue("ferretdb")
    return ferret_leases(fd.dir, backend.storage["uri"], ids)


def job_attempts(request, srv, backend, ids):
    """{jobId: how many times it was leased}, on either backend."""
    return {i: a for i, (a, _) in job_leases(request, srv, backend, ids).items()}


def health_everywhere(srv, api, code, tries=24):
    """Every worker (by pid) reports the database as /api/health would with `code`
    (200: connected, 503: not), read from /api/health/detailed (loopback is admin
    here), which names the answering worker. The kernel picks the worker of each
    fresh connection, so n probes may all reach one worker: this asks until each
    live worker has answered, False if one disagreed or was not reached in `tries`."""
    want = set(srv.worker_pids())
    seen = set()
    for _ in range(tries):
        r = requests.get(api.base + "/api/health/detailed", timeout=scaled(5))
        doc = r.json()
        if doc["database"]["connected"] != (code == 200):
            return False
        seen.add(doc["server"]["pid"])
        if want <= seen:
            return True
    return False


def collect_final(api, owners, deadline_s, threads=4, pause=0.25):
    """Poll every job until success|failed, in rounds over the pending ones (a
    light load: the database is busy processing them). owners: {jobId: user}.
    Returns {jobId: status doc}; fails naming the jobs still pending at the deadline."""
    pending = sorted(owners)
    done = {}
    lock = threading.Lock()
    deadline = time.monotonic() + deadline_s
    bad = []

    def sweep(ids):
        s = requests.Session()
        for jid in ids:
            try:
                r = api.status(owners[jid], jid, session=s, timeout=scaled(5))
            except requests.RequestException:
                s = requests.Session()
                continue
            if r.status_code == 200 and r.json()["status"] in FINAL:
                with lock:
                    done[jid] = r.json()
            elif r.status_code not in (200, 503):
                with lock:
                    bad.append((jid, r.status_code, r.text))

    while pending and time.monotonic() < deadline:
        ts = [threading.Thread(target=sweep, args=(pending[i::threads],), daemon=True)
              for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(deadline_s + 30)
        assert not bad, "status endpoint answered: %s" % bad[:5]
        pending = [j for j in pending if j not in done]
        if pending:
            time.sleep(pause)
    assert not pending, "%d accepted job(s) not decided within %.0fs: %s" % (
        len(pending), deadline_s, pending[:10])
    return done


class BookingLoad:
    """Bounded, continuous booking traffic that behaves like a careful client (seed
    003): each logical request has its own Idempotency-Key and is retried with the
    same key, user and seats after a connection error, a timeout or a 503 until it
    gets its 202 — so every booking the server accepted is known by its jobId even
    when the process that took it died before answering. Fresh connection per try.

    accepted: {jobId: user}; keys: {key: jobId} (one key must never give two jobs)."""

    def __init__(self, api, event, seats, threads=4, max_seconds=90.0, max_requests=2000,
                 per_request=(1, 3), seed=1, pause=0.0, timeout=3.0):
        self.api, self.event, self.seats = api, event, list(seats)
        self.nthreads = threads
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.per_request = per_request
        self.seed = seed
        self.pause = pause
        self.timeout = timeout
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.accepted = {}
        self.accepted_at = {}
        self.keys = {}
        self.problems = []  # answers a correct server never gives
        self.retries = {"conn": 0, "503": 0}
        self.missing_retry_after = 0
        self.started = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, idx):
        rng = random.Random(self.seed * 1000 + idx)
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self.stop_evt.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.started >= self.max_requests:
                    return
                self.started += 1
            n += 1
            user = "load-%d-%d" % (idx, n % 5)
            key = "k-%d-%d-%s" % (idx, n, uuid.uuid4().hex[:8])
            want = rng.sample(self.seats, rng.randint(*self.per_request))
            # retry this one logical request until accepted (bounded by the hard deadline)
            while time.monotonic() < deadline + 60:
                try:
                    r = self.api.book(user, self.event, want, key=key,
                                      headers={"Connection": "close"},
                                      timeout=scaled(self.timeout))
                except requests.RequestException:
                    with self.lock:
                        self.retries["conn"] += 1
                    time.sleep(0.05)
                    continue
                if r.status_code == 503:
                    with self.lock:
                        self.retries["503"] += 1
                        if not r.headers.get("Retry-After", "").isdigit():
                            self.missing_retry_after += 1
                    time.sleep(0.1)
                    continue
                if r.status_code != 202:
                    with self.lock:
                        self.problems.append((r.status_code, r.text[:300]))
                    break
                jid = r.json()["jobId"]
                with self.lock:
                    if key in self.keys and self.keys[key] != jid:
                        self.problems.append(("key %s gave two jobs" % key, jid))
                    self.keys[key] = jid
                    self.accepted[jid] = user
                    self.accepted_at[jid] = time.time()
                break
            if self.pause:
                time.sleep(self.pause)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.accepted)

    def wait_count(self, n, timeout, what="accepted bookings"):
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                pytest.fail("timed out after %.0fs waiting for %d %s (have %d; retries %s; "
                            "problems %s)" % (timeout, n, what, self.count(), self.retries,
                                              self.problems[:3]))
            time.sleep(0.05)

    def recent(self, n):
        with self.lock:
            ids = sorted(self.accepted, key=self.accepted_at.get)[-n:]
            return {j: self.accepted[j] for j in ids}

    def stop(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(scaled(90))
        assert not any(t.is_alive() for t in self.threads), "load threads did not finish"
        assert not self.problems, "unexpected answers: %s" % self.problems[:5]
        return dict(self.accepted)
