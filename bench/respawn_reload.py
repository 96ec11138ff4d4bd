#!/usr/bin/env python3
"""
bench/respawn_reload.py — crash respawn latency and reload safety, svcd vs PM2.

Same run, same machine, same load generator, both with 2 workers on loopback:

  respawn  kill -9 one worker while a small load runs; time until the replacement
           accepts. svcd: the master reports the new worker online (its accept
           watchers are armed) on the control socket, and, separately, until the
           new worker has served a request (its scoreboard request counter).
           PM2 (cluster mode, 2 instances of bench/trivial_http.js): until a
           response carries the new instance's pid.
  reload   `svc reload` vs `pm2 reload` (graceful, wait_ready) RELOADS times under
           a load of fresh-connection GETs; counts failed requests.

Prints both and the ratios. Installs PM2 (pinned in bench/package.json) into
bench/node_modules with npm; starts and stops only its own processes; bounded
in time (every wait has a deadline). Never run by `make test`.

Usage: python3 bench/respawn_reload.py [--trials 5] [--reloads 3]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(ROOT, "bench")
BUILD = os.path.join(ROOT, os.environ.get("SVCD_BUILD", "build"))  # override: another build
SVCD = os.path.join(BUILD, "svcd")
SVC = os.path.join(BUILD, "svc")
PM2 = os.path.join(BENCH, "node_modules", ".bin", "pm2")
MIN_AGE = 6.0  # seconds a victim has been up: past svcd's 5 s crash-loop window and PM2's min_uptime
SCRUB = ("PORT", "NODE_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC", "SVCD_CONFIG", "JWT_SECRET",
         "MONGODB_URI", "CLIENT_URL")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_until(cond, timeout, what, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(interval)
    raise RuntimeError("timed out waiting for " + what)


def get(port, path="/health", timeout=5.0):
    """One GET on a fresh connection; returns (status, body) or raises."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Load:
    """threads x fresh-connection GETs, bounded by max_seconds; records
    (t_start, ok, body-or-error)."""

    def __init__(self, port, threads=4, max_seconds=60.0):
        self.port, self.max_seconds = port, max_seconds
        self.stop_evt = threading.Event()
        self.lock = threading.Lock()
        self.events = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_evt.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                st, body = get(self.port)
                ev = (t, st == 200, body)
            except Exception as e:  # noqa: BLE001 - a failed request is the measurement
                ev = (t, False, repr(e))
            with self.lock:
                self.events.append(ev)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop_evt.set()
        for t in self.threads:
            t.join(timeout=15)

    def snapshot(self):
        with self.lock:
            return list(self.events)


# ----------------------------------------------------------------------------- svcd
class Svcd:
    name = "svcd"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "svcd")
        os.makedirs(self.dir)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "svcd.yaml")
        with open(self.conf, "w") as f:
            f.write("env: development\nlisten:\n  - address: 127.0.0.1:%d\nworkers: 2\n"
                    "run_dir: run\nstorage: { driver: sqlite, path: svcd.db }\n"
                    "log: { file: svcd.log, format: text, level: info }\n" % self.port)
        self.sock = os.path.join(self.dir, "run", "svcd.sock")
        self.proc = None

    def start(self):
        self.err = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen([SVCD, "-c", self.conf], env=clean_env(), cwd="/",
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err,
                                     start_new_session=True)
        wait_until(lambda: len(self.online()) == 2, 30, "svcd ready")

    def control(self, cmd, timeout=30.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.sock)
            s.sendall(cmd.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return json.loads(data)
        finally:
            s.close()

    def workers(self):
        return [c for c in self.control("status")["children"]
                if c["role"] == "worker" and c["pid"] > 0]

    def online(self):
        return {c["pid"]: c for c in self.workers()
                if c["state"] in ("online", "ready")}

    def respawn_trial(self):
        before = self.online()
        # the oldest worker, up for longer than svcd's crash-loop window (5 s): a
        # quicker death is throttled with backoff on purpose, not a respawn
        victim = max(before, key=lambda p: before[p]["uptime"])
        time.sleep(max(0.0, MIN_AGE - before[victim]["uptime"]))
        before = self.online()
        with Load(self.port, threads=2, max_seconds=20):
            time.sleep(0.2)
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            new = wait_until(lambda: [p for p in self.online() if p not in before], 10,
                             "svcd replacement online", interval=0.001)[0]
            t_ready = time.monotonic() - t0
            try:
                wait_until(lambda: self.online().get(new, {}).get("requests", 0) > 0, 5,
                           "new worker serves", interval=0.001)
                t_serve = time.monotonic() - t0
            except RuntimeError:
                t_serve = None
        wait_until(lambda: len(self.online()) == 2, 10, "svcd steady")
        return t_ready, t_serve

    def reload(self):
        r = self.control("reload", timeout=60)
        if not r.get("ok"):
            raise RuntimeError("svc reload failed: %s" % r)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


# ----------------------------------------------------------------------------- PM2
class Pm2:
    name = "PM2"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pm2")
        os.makedirs(self.dir)
        self.port = free_port()
        self.env = clean_env(PM2_HOME=os.path.join(self.dir, "home"), PORT=self.port)
        self.eco = os.path.join(self.dir, "ecosystem.config.js")
        with open(self.eco, "w") as f:
            f.write("module.exports = { apps: [{ name: 'bench', script: %s, instances: 2,\n"
                    "  exec_mode: 'cluster', wait_ready: true, listen_timeout: 5000,\n"
                    "  kill_timeout: 5000, autorestart: true, env: { PORT: '%d' } }] };\n"
                    % (json.dumps(os.path.join(BENCH, "trivial_http.js")), self.port))
        self.started = False

    def pm2(self, *args, timeout=60):
        return subprocess.run([PM2] + list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self):
        r = self.pm2("start", self.eco)
        if r.returncode != 0:
            raise RuntimeError("pm2 start failed: %s %s" % (r.stdout, r.stderr))
        self.started = True
        wait_until(lambda: len(self.serving_pids(20)) == 2, 30, "PM2 instances serving")

    def instances(self):
        """{pid: started (epoch s)} of the online instances."""
        r = self.pm2("jlist")
        return {p["pid"]: p["pm2_env"]["pm_uptime"] / 1000.0 for p in json.loads(r.stdout)
                if p["pid"] and p["pm2_env"]["status"] == "online"}

    def instance_pids(self):
        return sorted(self.instances())

    def serving_pids(self, n):
        return {json.loads(get(self.port)[1])["pid"] for _ in range(n)}

    def respawn_trial(self):
        inst = self.instances()
        victim = min(inst, key=lambda p: inst[p])  # the oldest, as for svcd
        time.sleep(max(0.0, MIN_AGE - (time.time() - inst[victim])))
        before = set(inst)
        with Load(self.port, threads=2, max_seconds=20) as load:
            time.sleep(0.2)
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)

            def new_served():
                for t, ok, body in load.snapshot():
                    if ok and t >= t0 and json.loads(body)["pid"] not in before:
                        return t
                return None
            t_new = wait_until(new_served, 10, "PM2 replacement serving", interval=0.002)
            # the response's send time is when the new instance was reachable
            t_serve = t_new - t0
        wait_until(lambda: len(self.serving_pids(20)) == 2, 15, "PM2 steady")
        return t_serve, t_serve

    def reload(self):
        r = self.pm2("reload", "bench", timeout=120)
        if r.returncode != 0:
            raise RuntimeError("pm2 reload failed: %s %s" % (r.stdout, r.stderr))

    def stop(self):
        if self.started:
            self.pm2("kill", timeout=60)


# ----------------------------------------------------------------------------- runs
def reload_run(srv, reloads):
    with Load(srv.port, threads=4, max_seconds=60 + 30 * reloads) as load:
        time.sleep(1.0)
        for _ in range(reloads):
            srv.reload()
            time.sleep(0.5)
        time.sleep(1.0)
    ev = load.snapshot()
    fails = [e for e in ev if not e[1]]
    return len(ev), fails


def ms(v):
    return "%.1f ms" % (v * 1000) if v is not None else "n/a"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--reloads", type=int, default=3)
    a = ap.parse_args()

    if not os.access(SVCD, os.X_OK) or not os.access(SVC, os.X_OK):
        subprocess.run(["make", "-s", "-C", ROOT, "all"], check=True)
    if not os.access(PM2, os.X_OK):
        log("bench: installing pm2 (pinned in bench/package.json) into bench/node_modules")
        subprocess.run(["npm", "install", "--prefix", BENCH, "--no-audit", "--no-fund",
                        "--loglevel=error"], check=True, timeout=600)

    tmp = tempfile.mkdtemp(prefix="svcd-bench-rr.", dir="/tmp")
    results = {}
    try:
        for cls in (Svcd, Pm2):
            srv = cls(tmp)
            try:
                srv.start()
                ready, serve = [], []
                for _ in range(a.trials):
                    r, s = srv.respawn_trial()
                    ready.append(r)
                    if s is not None:
                        serve.append(s)
                total, fails = reload_run(srv, a.reloads)
                results[srv.name] = dict(
                    ready=statistics.median(ready),
                    serve=statistics.median(serve) if serve else None,
                    total=total, fails=fails)
            finally:
                srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    s, p = results["svcd"], results["PM2"]
    print("respawn after kill -9 (median of %d, 2 workers, light load)" % a.trials)
    print("  svcd: new worker online %s, first request served by it %s" % (
        ms(s["ready"]), ms(s["serve"])))
    print("  PM2 : new instance answering %s" % ms(p["serve"]))
    print("  ratio svcd/PM2 (online vs answering): %.3f" % (s["ready"] / p["serve"]))
    if s["serve"]:
        print("  ratio svcd/PM2 (served vs answering): %.3f" % (s["serve"] / p["serve"]))
    print("reload x%d under load (4 threads, fresh connection per request)" % a.reloads)
    for name, r in (("svcd", s), ("PM2 ", p)):
        print("  %s: %d failed of %d requests (%.3f%%)%s" % (
            name, len(r["fails"]), r["total"], 100.0 * len(r["fails"]) / max(1, r["total"]),
            "  e.g. %s" % (r["fails"][0][2],) if r["fails"] else ""))
    print("  failed-request ratio svcd/PM2: %s" % (
        "%.3f" % (len(s["fails"]) / len(p["fails"])) if p["fails"] else
        ("0/0" if not s["fails"] else "inf (PM2 had none)")))


if __name__ == "__main__":
    main()
