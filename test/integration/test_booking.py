"""
Seat booking (SPEC §5, seed 003) under concurrency and bad input, on both storage
backends: SQLite (embedded) and MongoDB (FerretDB started by ferretdb_fixture).

Proofs: 200 concurrent clients never double-book and every accepted job is decided
exactly once, with the job view and the seat map agreeing exactly; every bad request
is refused at once with a precise 4xx; JWTs are verified (forged, expired, alg none);
Idempotency-Key replays return the same job.
"""
import json
import random
import threading
import time

import pytest
import requests

from conftest import RawHTTP, Server, Workdir, error_json, scaled, wait_for
from ferretdb_fixture import (BACKENDS, Api, backend, check_views_agree,  # noqa: F401
                              collect_final, ferretdb, make_backend, mint_jwt, token_for)


# ============================================================================ 1. concurrency
def assert_mongo_agrees(uri, event, jobs, owner):
    """The database's own view, read with pymongo (a third client, not svcd's API):
    every seat of the event has at most one claim, every claim belongs to a job
    that succeeded, and those are exactly the seats the API says are booked."""
    import pymongo
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database()
        claims = list(db.claims.find({"eventId": event}))
        by_seat = {}
        for c in claims:
            by_seat.setdefault(c["seat"], []).append(c["jobId"])
        stored = {d["_id"]: d for d in db.jobs.find({"_id": {"$in": list(jobs)}})}
    finally:
        client.close()
    assert len(stored) == len(jobs), "jobs missing from the database"
    live = {}
    for seat, jids in by_seat.items():
        ok = [j for j in jids if jobs.get(j, {}).get("status") == "success"]
        assert len(ok) <= 1, "seat %s claimed by %d succeeded jobs: %s" % (seat, len(ok), ok)
        if ok:
            live[seat] = ok[0]
    assert set(live) == set(owner), (sorted(live), sorted(owner))
    for seat, jid in live.items():
        assert jobs[jid]["status"] == "success" and seat in jobs[jid]["seats"]


def test_concurrent_overlapping_bookings(make_server, backend):
    """200 clients at once (one thread each, released together by a barrier) book
    1-4 overlapping seats of a 40-seat event on svcd with 2 workers."""
    srv = make_server(backend.overrides(workers=2))
    api = Api(srv.url(""))
    event = api.create_event("concurrency", rows=4, cols=10)
    seats = ["%s%d" % (r, c) for r in "ABCD" for c in range(1, 11)]
    rng = random.Random(20240501)
    nclients = 200
    wants = [rng.sample(seats, rng.randint(1, 4)) for _ in range(nclients)]
    barrier = threading.Barrier(nclients)
    accepted, problems = {}, []
    lock = threading.Lock()

    def client(i):
        user = "user-%03d" % i
        try:
            barrier.wait(timeout=scaled(30))
            r = api.book(user, event, wants[i], timeout=scaled(30))
        except Exception as e:  # noqa: BLE001
            with lock:
                problems.append((i, repr(e)))
            return
        with lock:
            if r.status_code != 202:
                problems.append((i, r.status_code, r.text))
                return
            doc = r.json()
            accepted[doc["jobId"]] = (user, doc, r.headers.get("Location"))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    assert not problems, "bookings not accepted with 202: %s" % problems[:5]
    assert len(accepted) == nclients, "job ids not unique: %d for %d requests" % (
        len(accepted), nclients)
    for jid, (user, doc, loc) in accepted.items():
        assert doc["status"] in ("queued", "processing", "success", "failed"), doc
        assert loc == "/api/seats/booking-status/" + jid, loc
        assert doc["eventId"] == event

    jobs = collect_final(api, {j: v[0] for j, v in accepted.items()}, scaled(60))
    for jid, j in jobs.items():
        assert j["seats"] == accepted[jid][1]["seats"], "job seats changed: %s" % jid
    owner = check_views_agree(jobs, api.seat_map(event))
    assert owner, "no booking succeeded"
    if backend.name == "mongodb":
        assert_mongo_agrees(backend.storage["uri"], event, jobs, owner)
    # the seat map reads the same through either worker (fresh connections)
    maps = {json.dumps(sorted(api.seat_map(event).items())) for _ in range(6)}
    assert len(maps) == 1
    # a 2-seat request that overlaps nothing booked still succeeds afterwards
    free = [s for s in seats if s not in owner]
    if free:
        r = api.book("late", event, free[:1])
        assert r.status_code == 202
        j = collect_final(api, {r.json()["jobId"]: "late"}, scaled(20))
        assert list(j.values())[0]["status"] == "success"


# ============================================================================ 4. bad input
class BSrv:
    pass


@pytest.fixture(scope="module", params=BACKENDS)
def bsrv(request):
    """One svcd per backend for the bad-input tests, with an 80-seat event."""
    be = make_backend(request, request.param)
    wd = Workdir()
    wd.write_config(be.overrides())
    s = Server(wd)
    try:
        s.start()
        b = BSrv()
        b.srv, b.backend, b.api = s, be.name, Api(s.url(""))
        b.event = b.api.create_event("bad-input", rows=2, cols=40)
        yield b
    finally:
        try:
            s.teardown()
        finally:
            wd.cleanup()


def post_book(b, body, token=None, headers=None, raw=False):
    h = {"Authorization": "Bearer " + (token or token_for("alice"))}
    h.update(headers or {})
    if raw:
        h["Content-Type"] = "application/json"
        return requests.post(b.api.base + "/api/seats/book", data=body, headers=h,
                             timeout=scaled(10))
    return requests.post(b.api.base + "/api/seats/book", json=body, headers=h,
                         timeout=scaled(10))


def expect_error(r, status, code=None, mentions=()):
    assert r.status_code == status, (r.status_code, r.text)
    err = error_json(r.content)
    if code:
        assert err["code"] == code, err
    for m in mentions:
        assert m in err["message"], (m, err)
    return err


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"eventId": "x", "seats": ["A1"]',
                                  b'{"eventId":"x","eventId":"y","seats":["A1"]}',
                                  b"\xff\xfe", b"[1, 2]", b'"A1"', b""])
def test_malformed_json_400(bsrv, body):
    expect_error(post_book(bsrv, body, raw=True), 400, "BAD_JSON")


def test_unknown_event_404(bsrv):
    for ev in ("ffffffffffffffffffffffff", "no-such-event", "0" * 39):
        expect_error(post_book(bsrv, {"eventId": ev, "seats": ["A1"]}), 404, "NOT_FOUND")
        r = requests.get(bsrv.api.base + "/api/events/%s/seats" % ev, timeout=scaled(10))
        expect_error(r, 404, "NOT_FOUND")
    expect_error(post_book(bsrv, {"eventId": "f" * 60, "seats": ["A1"]}), 400, "BAD_REQUEST")


@pytest.mark.parametrize("seats,status,mentions", [
    (["A1", "Z99"], 400, ["Z99"]),                   # unknown seat, named
    (["A1", "B2", "A1"], 400, ["A1", "twice"]),     # duplicate
    ([], 400, ["empty"]),                           # empty list
    (["A%d" % i for i in range(1, 41)] + ["B%d" % i for i in range(1, 26)], 400, ["65", "64"]),
    (["A 1"], 400, ["#1"]),                         # not a label
    (["A1", ""], 400, ["#2"]),
    (["A1", 7], 400, ["#2"]),
    (["X" * 32], 400, []),
    ("A1", 400, ["array"]),
    (None, 400, ["array"]),
])
def test_bad_seats_400(bsrv, seats, status, mentions):
    body = {"eventId": bsrv.event}
    if seats is not None:
        body["seats"] = seats
    expect_error(post_book(bsrv, body), status, "BAD_REQUEST", mentions)


def test_bad_event_id_field_400(bsrv):
    for body in ({"seats": ["A1"]}, {"eventId": 5, "seats": ["A1"]},
                 {"eventId": "", "seats": ["A1"]}):
        expect_error(post_book(bsrv, body), 400, "BAD_REQUEST", ["eventId"])


def test_max_seats_64_accepted(bsrv):
    ev = bsrv.api.create_event("max", rows=1, cols=64)
    seats = ["A%d" % i for i in range(1, 65)]
    r = bsrv.api.book("max-user", ev, seats)
    assert r.status_code == 202, r.text
    j = collect_final(bsrv.api, {r.json()["jobId"]: "max-user"}, scaled(30))
    assert list(j.values())[0]["status"] == "success"
    assert set(bsrv.api.seat_map(ev).values()) == {"booked"}


def _exp_past():
    now = int(time.time())
    return {"sub": "alice", "iat": now - 7200, "exp": now - 3600}


@pytest.mark.parametrize("token,why", [
    (None, "missing"),
    ("", "empty"),
    ("garbage", "malformed"),
    ("a.b.c", "malformed"),
    (mint_jwt(sub="alice", secret="not-the-server-secret-0123456789abcdef"), "forged"),
    (mint_jwt(_exp_past()), "expired"),
    (mint_jwt(sub="alice", alg="none", sign=False), "alg none, no signature"),
    (mint_jwt(sub="alice", alg="none"), "alg none, HS256 signature"),
    (mint_jwt(sub="alice", alg="None", sign=False), "alg None"),
    (mint_jwt(sub="alice", header={"typ": "JWT"}), "no alg"),
    (mint_jwt(sub="alice", alg="HS512"), "alg HS512"),
    (mint_jwt(sub="alice").rsplit(".", 1)[0] + ".", "signature stripped"),
    (mint_jwt(sub="alice")[:-2] + ("AA" if not mint_jwt(sub="alice").endswith("AA") else "BB"),
     "signature altered"),
    (mint_jwt({"iat": int(time.time()), "exp": int(time.time()) + 600}), "no sub/userId"),
    (mint_jwt(sub="alice", nbf=int(time.time()) + 3600), "not yet valid"),
    (mint_jwt(sub="alice", exp="tomorrow"), "exp not a number"),
    (mint_jwt(sub="", userId=""), "empty subject"),
])
def test_jwt_refused_401(bsrv, token, why):
    body = {"eventId": bsrv.event, "seats": ["A1"]}
    h = {} if token is None else {"Authorization": "Bearer " + token}
    for r in (requests.post(bsrv.api.base + "/api/seats/book", json=body, headers=h,
                            timeout=scaled(10)),
              requests.get(bsrv.api.base + "/api/seats/booking-status/" + "a" * 24,
                           headers=h, timeout=scaled(10))):
        expect_error(r, 401, "UNAUTHORIZED")
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (why, r.headers)


def test_jwt_other_schemes_401(bsrv):
    body = {"eventId": bsrv.event, "seats": ["A1"]}
    for h in ({"Authorization": "Basic YWxpY2U6cHc="},
              {"Authorization": "Bearer"},
              {"Authorization": token_for("alice")}):
        r = requests.post(bsrv.api.base + "/api/seats/book", json=body, headers=h,
                          timeout=scaled(10))
        expect_error(r, 401, "UNAUTHORIZED")


def test_jwt_userId_claim_and_status_owner_only(bsrv):
    ev = bsrv.api.create_event("owner", seats=["S1", "S2"])
    # the seeds' Express apps sign {userId}
    tok = mint_jwt(userId="carol-42")
    r = bsrv.api.book(tok, ev, ["S1"])
    assert r.status_code == 202, r.text
    jid = r.json()["jobId"]
    assert r.headers["Location"] == "/api/seats/booking-status/" + jid
    # the same user through `sub`
    r = bsrv.api.status(mint_jwt(sub="carol-42"), jid)
    assert r.status_code == 200 and r.json()["jobId"] == jid, r.text
    # someone else: indistinguishable from an unknown job
    other = bsrv.api.status("mallory", jid)
    unknown = bsrv.api.status("mallory", "f" * 24)
    e1 = expect_error(other, 404, "NOT_FOUND")
    e2 = expect_error(unknown, 404, "NOT_FOUND")
    assert e1["message"].replace(jid, "X") == e2["message"].replace("f" * 24, "X"), (
        "someone else's job is distinguishable from a missing one: %r vs %r" % (
            e1["message"], e2["message"]))
    expect_error(bsrv.api.status("carol-42", "x" * 80), 404, "NOT_FOUND")
    # a job other than one's own can't be read by guessing the user through userId=number
    expect_error(bsrv.api.status(mint_jwt(userId=42), jid), 404, "NOT_FOUND")


def test_oversize_body_413(bsrv):
    c = RawHTTP(bsrv.srv.wd.port, timeout=scaled(10))
    try:
        c.send(("POST /api/seats/book HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
                    token_for("alice"), 2 * 1024 * 1024)).encode())
        status, _, body = c.read_response()
        assert status == 413, (status, body)
        assert error_json(body)["code"]
    finally:
        c.close()
    # a body actually sent, just over the 64KiB limit
    big = json.dumps({"eventId": bsrv.event, "seats": ["A1"], "pad": "x" * (65 * 1024)})
    try:
        r = post_book(bsrv, big.encode(), raw=True)
        assert r.status_code == 413, r.status_code
    except requests.ConnectionError:
        pass  # the server may close while the client is still sending; never a 2xx


def test_idempotency_key_replay_and_conflict(bsrv):
    ev = bsrv.api.create_event("idem", seats=["I1", "I2", "I3"])
    key = "retry-after-ECONNRESET-1"
    r1 = bsrv.api.book("dave", ev, ["I1"], key=key)
    assert r1.status_code == 202, r1.text
    jid = r1.json()["jobId"]
    r2 = bsrv.api.book("dave", ev, ["I1"], key=key)
    assert r2.status_code == 202 and r2.json()["jobId"] == jid, r2.text
    assert r2.headers.get("Location") == r1.headers.get("Location")
    collect_final(bsrv.api, {jid: "dave"}, scaled(30))
    r3 = bsrv.api.book("dave", ev, ["I1"], key=key)  # after it was decided
    assert r3.status_code == 202 and r3.json()["jobId"] == jid, r3.text
    assert r3.json()["status"] == "success", r3.text
    # same key, different booking -> 409 (seats, order of seats aside, or event)
    expect_error(bsrv.api.book("dave", ev, ["I2"], key=key), 409, "CONFLICT")
    expect_error(bsrv.api.book("dave", ev, ["I1", "I2"], key=key), 409, "CONFLICT")
    expect_error(bsrv.api.book("dave", bsrv.event, ["I1"], key=key), 409)
    # the key is per user: another user's request with it is a new job
    r4 = bsrv.api.book("erin", ev, ["I2"], key=key)
    assert r4.status_code == 202 and r4.json()["jobId"] != jid
    # a bad key is refused at once
    for bad in ("x" * 256, "has space", "tab\there"):
        expect_error(bsrv.api.book("dave", ev, ["I3"], key=bad), 400, "BAD_REQUEST",
                     ["Idempotency-Key"])
    # ... and the seat map shows exactly one booking of I1 (dave's) and I2 (erin's)
    jobs = collect_final(bsrv.api, {jid: "dave", r4.json()["jobId"]: "erin"}, scaled(30))
    check_views_agree(jobs, bsrv.api.seat_map(ev))


def test_idempotency_key_concurrent_replays(bsrv):
    """20 simultaneous retries of one request (same user and key) -> one job."""
    ev = bsrv.api.create_event("idem-race", seats=["R1", "R2"])
    n = 20
    barrier = threading.Barrier(n)
    out, lock = [], threading.Lock()

    def go():
        barrier.wait(timeout=scaled(20))
        r = bsrv.api.book("frank", ev, ["R1", "R2"], key="race-key")
        with lock:
            out.append((r.status_code, r.json().get("jobId") if r.status_code == 202 else r.text))

    ts = [threading.Thread(target=go, daemon=True) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(scaled(30))
    assert len(out) == n
    assert all(s == 202 for s, _ in out), out
    ids = {j for _, j in out}
    assert len(ids) == 1, "one Idempotency-Key gave %d jobs: %s" % (len(ids), ids)
    jobs = collect_final(bsrv.api, {ids.pop(): "frank"}, scaled(30))
    check_views_agree(jobs, bsrv.api.seat_map(ev))


def test_event_create_bad_input_400(bsrv):
    url = bsrv.api.base + "/api/events"
    for body in ({"seats": ["A1"]}, {"name": "", "seats": ["A1"]}, {"name": "x"},
                 {"name": "x", "rows": 0, "cols": 5}, {"name": "x", "rows": 2, "cols": 201},
                 {"name": "x", "rows": "2", "cols": 2}, {"name": "x", "seats": []},
                 {"name": "x", "seats": ["A1", "A1"]}, {"name": "x", "seats": ["A 1"]},
                 {"name": "n" * 300, "seats": ["A1"]}):
        expect_error(requests.post(url, json=body, timeout=scaled(10)), 400)
    expect_error(requests.post(url, data=b"{", timeout=scaled(10)), 400, "BAD_JSON")


def test_wrong_methods_405(bsrv):
    r = requests.get(bsrv.api.base + "/api/seats/book", timeout=scaled(10))
    expect_error(r, 405)
    assert "POST" in r.headers.get("Allow", "")
    r = requests.post(bsrv.api.base + "/api/seats/booking-status/abc", timeout=scaled(10))
    expect_error(r, 405)


# ============================================================================ metrics
def _job_metrics(url):
    text = requests.get(url + "/metrics", timeout=scaled(10)).text
    got = {}
    for ln in text.splitlines():
        if ln.startswith("svcd_booking_jobs_total{"):
            ev = ln.split('event="', 1)[1].split('"', 1)[0]
            got[ev] = int(ln.rsplit(" ", 1)[1])
        elif ln.startswith("svcd_database_up{"):
            got["db_up"] = int(ln.rsplit(" ", 1)[1])
    return got


def test_metrics_count_jobs_and_database_state(bsrv):
    """/metrics (SPEC §4) counts booking jobs accepted and decided on every worker,
    and says whether the database answers."""
    before = _job_metrics(bsrv.api.base)
    assert before["db_up"] == 1, before
    ev = bsrv.api.create_event("metrics", seats=["M1", "M2", "M3"])
    owners = {}
    for user, seats in (("mia", ["M1"]), ("max", ["M1"]), ("moe", ["M2", "M3"])):
        r = bsrv.api.book(user, ev, seats)
        assert r.status_code == 202, r.text
        owners[r.json()["jobId"]] = user
    jobs = collect_final(bsrv.api, owners, scaled(30))
    ok = sum(1 for j in jobs.values() if j["status"] == "success")
    bad = sum(1 for j in jobs.values() if j["status"] == "failed")
    assert (ok, bad) == (2, 1), jobs

    def counted():
        now = _job_metrics(bsrv.api.base)
        return (now["accepted"] - before["accepted"] == 3
                and now["success"] - before["success"] == 2
                and now["failed"] - before["failed"] == 1)
    wait_for(counted, scaled(10), interval=0.1, what="the job counters in /metrics")
