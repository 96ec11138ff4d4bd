#!/usr/bin/env python3
"""
bench/booking_client.py — the one load client of bench/booking_bench.sh (svcd and
the Node anchor are driven by exactly this code).

Phase 1 (accept): PROCS processes x THREADS threads, each on one keep-alive
connection, POST /api/seats/book for DURATION seconds (or until MAX_JOBS), one seat
per booking, every seat distinct (so every job should succeed): accepted/s and the
202 latency p50/p99.
Phase 2 (complete): wait until the accepted jobs are decided (the newest ones and a
random sample are polled; the queues are FIFO) within DRAIN seconds; completed/s =
accepted jobs / (last finishedAt - first request), from the servers' own timestamps.

Prints one JSON line. Standard library only.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import multiprocessing
import random
import threading
import time


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(user, secret):
    now = int(time.time())
    h = b64u(b'{"alg":"HS256","typ":"JWT"}')
    c = b64u(json.dumps({"sub": user, "iat": now, "exp": now + 3600}).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (h, c)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, c, b64u(sig))


def request(conn, method, path, body=None, headers=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def seat_labels(rows, cols):
    out = []
    for r in range(rows):
        row = chr(65 + r) if r < 26 else "A" + chr(65 + r - 26)
        out.extend("%s%d" % (row, c) for c in range(1, cols + 1))
    return out


def proc_main(args, pidx, events, seats, out_q):
    """One client process: THREADS threads; seat k of the flat (event, seat) list
    goes to global thread k % total, so no two requests ask for the same seat."""
    total = args.procs * args.threads
    per_proc_cap = args.max_jobs // args.procs
    lock = threading.Lock()
    res = {"lat": [], "jobs": [], "errors": {}, "t0": None}
    count = [0]
    start_at = args.start_at

    def thread_main(tidx):
        g = pidx * args.threads + tidx
        user = "bench-%d" % g
        tok = {"Authorization": "Bearer " + jwt(user, args.secret)}
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        k = g
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + args.duration
        while time.time() < deadline:
            with lock:
                if count[0] >= per_proc_cap:
                    break
                count[0] += 1
            ev = events[(k // len(seats)) % len(events)]
            seat = seats[k % len(seats)]
            k += total
            t = time.time()
            try:
                st, data = request(conn, "POST", "/api/seats/book",
                                   {"eventId": ev, "seats": [seat]}, tok)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                with lock:
                    res["errors"][type(e).__name__] = res["errors"].get(type(e).__name__, 0) + 1
                continue
            dt = time.time() - t
            with lock:
                if st == 202:
                    res["lat"].append(dt)
                    res["jobs"].append((json.loads(data)["jobId"], user, t))
                else:
                    res["errors"][str(st)] = res["errors"].get(str(st), 0) + 1
        conn.close()

    ts = [threading.Thread(target=thread_main, args=(i,)) for i in range(args.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out_q.put(res)


def iso(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--max-jobs", type=int, default=40000)
    ap.add_argument("--drain", type=float, default=60)
    ap.add_argument("--events", type=int, default=4)
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
    events = []
    for i in range(args.events):
        st, data = request(conn, "POST", "/api/events",
                           {"name": "bench-%d" % i, "rows": 50, "cols": 200})
        assert st == 201, (st, data)
        events.append(json.loads(data)["id"])
    seats = seat_labels(50, 200)
    args.max_jobs = min(args.max_jobs, len(events) * len(seats))
    args.start_at = time.time() + 0.5

    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=proc_main, args=(args, i, events, seats, q))
          for i in range(args.procs)]
    for p in ps:
        p.start()
    parts = [q.get() for _ in ps]
    for p in ps:
        p.join()
    lat = [x for r in parts for x in r["lat"]]
    jobs = [x for r in parts for x in r["jobs"]]
    errors = {}
    for r in parts:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    t_first = args.start_at
    t_last_send = max((j[2] for j in jobs), default=t_first)
    accept_window = max(t_last_send - t_first, 1e-6)

    # ---- phase 2: drain
    jobs.sort(key=lambda j: j[2])
    watch = jobs[-20:] + random.Random(1).sample(jobs, min(200, len(jobs)))
    watch = list({j[0]: j for j in watch}.values())
    final, status = {}, {}
    deadline = time.time() + args.drain
    while time.time() < deadline and len(final) < len(watch):
        for jid, user, _ in watch:
            if jid in final:
                continue
            st, data = request(conn, "GET", "/api/seats/booking-status/" + jid,
                               headers={"Authorization": "Bearer " + jwt(user, args.secret)})
            if st == 200:
                doc = json.loads(data)
                if doc["status"] in ("success", "failed"):
                    final[jid] = doc
                    status[doc["status"]] = status.get(doc["status"], 0) + 1
        if len(final) < len(watch):
            time.sleep(0.2)
    drained = len(final) == len(watch)
    if final:
        t_end = max(iso(d["finishedAt"]) for d in final.values())
    else:
        t_end = time.time()
    if drained:
        completed = len(jobs) / max(t_end - t_first, 1e-6)
    else:  # estimate from the sampled fraction decided by the deadline
        completed = len(jobs) * len(final) / len(watch) / max(time.time() - t_first, 1e-6)
    print(json.dumps({
        "label": args.label,
        "accepted": len(jobs),
        "accepted_per_s": round(len(jobs) / accept_window, 1),
        "p50_ms": round(pct(lat, 50) * 1000, 2) if lat else None,
        "p99_ms": round(pct(lat, 99) * 1000, 2) if lat else None,
        "errors": errors,
        "completed_per_s": round(completed, 1),
        "drained": drained,
        "sample_status": status,
        "drain_s": round(max(t_end - t_last_send, 0), 1),
    }))


if __name__ == "__main__":
    main()
