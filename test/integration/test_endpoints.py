"""Health and admin endpoints (SPEC §4): exact JSON shapes, Prometheus text,
admin from loopback and with the bearer token."""
import datetime
import json
import re

import pytest
import requests

from conftest import ADMIN_TOKEN, JWT_SECRET, Server, Workdir, scaled, wait_for


@pytest.fixture(scope="module")
def srv():
    wd = Workdir()
    wd.write_config()
    s = Server(wd)
    s.start()
    yield s
    try:
        s.teardown()
    finally:
        wd.cleanup()


def iso(ts):
    assert isinstance(ts, str), ts
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$", ts), ts
    t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - t).total_seconds()) < 60, "timestamp %s is not now" % ts


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test_health_shape(srv):
    r = requests.get(srv.url("/health"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["status"] == "OK"
    assert doc["service"] == "alive"
    assert number(doc["uptime"]) and doc["uptime"] >= 0
    iso(doc["timestamp"])


def test_health_uptime_grows(srv):
    u1 = requests.get(srv.url("/health"), timeout=5).json()["uptime"]
    wait_for(lambda: requests.get(srv.url("/health"), timeout=5).json()["uptime"] > u1,
             scaled(5), interval=0.1, what="uptime increasing")


def test_health_head_and_wrong_method(srv):
    r = requests.head(srv.url("/health"), timeout=5)
    assert r.status_code == 200
    r = requests.post(srv.url("/health"), timeout=5, data=b"{}")
    assert r.status_code == 405
    assert "error" in r.json()


def test_api_health_shape(srv):
    r = requests.get(srv.url("/api/health"), timeout=5)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "healthy"
    db = doc["database"]
    assert db["connected"] is True and db["responsive"] is True
    assert db["state"] == "connected"
    assert number(doc["uptime"])
    iso(doc["timestamp"])


def test_detailed_from_loopback(srv):
    r = requests.get(srv.url("/api/health/detailed"), timeout=5)
    assert r.status_code == 200, r.text
    doc = r.json()
    text = json.dumps(doc)
    for pid in srv.worker_pids():  # each child's pid is listed
        assert str(pid) in text, "worker pid %d missing from %s" % (pid, text)
    assert "sqlite" in text.lower(), "storage driver missing"
    assert "development" in text, "environment missing"
    assert re.search(r"rss", text, re.I), "memory (rss) missing"
    assert re.search(r"checkTime", text), "database checkTime missing"
    assert JWT_SECRET not in text and ADMIN_TOKEN not in text


def test_admin_with_bearer_token(srv):
    h = {"Authorization": "Bearer " + ADMIN_TOKEN}
    assert requests.get(srv.url("/api/health/detailed"), headers=h, timeout=5).status_code == 200
    assert requests.get(srv.url("/metrics"), headers=h, timeout=5).status_code == 200


def test_wrong_bearer_from_loopback_is_still_admin(srv):
    h = {"Authorization": "Bearer not-the-token"}
    assert requests.get(srv.url("/api/health/detailed"), headers=h, timeout=5).status_code == 200
    assert requests.get(srv.url("/metrics"), headers=h, timeout=5).status_code == 200


def parse_prom(text):
    samples = {}
    types = {}
    for ln in text.splitlines():
        if not ln.strip():
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(None, 3)
            types[name] = typ
            continue
        if ln.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$", ln)
        assert m, "not Prometheus text: %r" % ln
        float(m.group(3))
        samples.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return samples, types


def requests_total(srv):
    samples, _ = parse_prom(requests.get(srv.url("/metrics"), timeout=5).text)
    return sum(v for _, v in samples["svcd_http_requests_total"])


def test_metrics_prometheus_text(srv):
    r = requests.get(srv.url("/metrics"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    samples, types = parse_prom(r.text)
    assert "svcd_http_requests_total" in samples, r.text[:2000]
    assert types.get("svcd_http_requests_total") == "counter"
    before = requests_total(srv)
    for _ in range(10):
        requests.get(srv.url("/health"), timeout=5)
    # scoreboard counters may lag a request behind: wait, don't sleep
    wait_for(lambda: requests_total(srv) >= before + 10, scaled(5),
             what="svcd_http_requests_total to grow by 10")
