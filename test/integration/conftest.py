"""
Integration harness: starts real svcd processes from the outside and talks to
them the way users and operators do (HTTP on loopback, `svc`, signals, files).

Binaries are $SVCD_BUILD/svcd and $SVCD_BUILD/svc relative to the repository
root (default build/; the ASan+UBSan run uses build-asan/). Every server a test
starts is stopped at teardown, by PID only: SIGTERM, then SIGKILL of its own
process group when it does not go. Nothing here sleeps as proof: every wait is a
poll for a condition with a deadline, and deadlines are scaled for the slower
sanitizer build. Performance is never asserted.
"""
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SVCD_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(REPO, BUILD)
SVCD = os.path.join(BUILD_DIR, "svcd")
SVC = os.path.join(BUILD_DIR, "svc")
ASAN = "asan" in os.path.basename(os.path.normpath(BUILD_DIR))
# Deadline multiplier: the sanitizer build is several times slower.
SLOW = 3.0 if ASAN else 1.0

# Environment variables svcd honours; a test never inherits them by accident.
SCRUB_ENV = ("NODE_ENV", "PORT", "MONGODB_URI", "JWT_SECRET", "CLIENT_URL", "SVCD_CONFIG",
             "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
             "LISTEN_FDNAMES")

# A child's state when it serves ("online" is the PM2 word the status shows).
READY_STATES = ("ready", "online")


def is_ready(child):
    return str(child.get("state", "")).lower() in READY_STATES and child.get("pid", 0) > 0


JWT_SECRET = "jwt-Secret-0123456789abcdefghijklmnopqrstuvwxyz"
ADMIN_TOKEN = "adm-Token-9f8e7d6c5b4a39281706"


def scaled(seconds):
    return seconds * SLOW


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB_ENV}
    if ASAN:
        env.setdefault("ASAN_OPTIONS",
                       "detect_leaks=1:abort_on_error=0:log_path=%s/asan" % BUILD_DIR)
        env.setdefault("UBSAN_OPTIONS",
                       "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % BUILD_DIR)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def wait_for(cond, timeout, interval=0.02, what="condition"):
    """Poll cond() until it returns a truthy value; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - conditions may raise while not ready
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            pytest.fail(msg)
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rfind(")") + 2:].split()[0]
    return state not in ("Z", "X")


def pid_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def start_time(pid):
    """Process start time in clock ticks since boot, None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat[stat.rfind(")") + 2:].split()[19])


def pids_with_arg(arg):
    """Live processes whose command line contains `arg` (a test's unique temp path)."""
    out = []
    needle = arg.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if needle in cmd and pid_alive(int(d)):
            out.append(int(d))
    return out


def pids_in_group(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] in ("Z", "X"):
            continue
        if int(fields[2]) == pgid:
            out.append(int(d))
    return out


# ----------------------------------------------------------------------------- YAML
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-][A-Za-z0-9_./:@+ -]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED and not s.endswith(" ") \
            and ": " not in s and " #" not in s:
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts/lists of scalars (enough for svcd.yaml)."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if not v:
                    lines.append("%s%s: {}" % (pad, k))
                else:
                    lines.append("%s%s:" % (pad, k))
                    lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                if not v:
                    lines.append("%s%s: []" % (pad, k))
                else:
                    lines.append("%s%s:" % (pad, k))
                    lines.append(to_yaml(v, indent + 2))
            else:
                lines.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 2).split("\n")
                sub[0] = pad + "- " + sub[0][indent + 2:]
                lines.extend(sub)
            else:
                lines.append("%s- %s" % (pad, _scalar(item)))
    return "\n".join(lines)


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


DELETE = object()


def default_config(port):
    return {
        "env": "development",
        "listen": [{"address": "127.0.0.1:%d" % port}],
        "workers": 2,
        "run_dir": "run",
        "timeouts": {"headers": "20s", "keepalive": "15s", "request": "10s",
                     "shutdown": "15s", "worker": "10s"},
        "limits": {"body": "64KiB", "header": "8KiB", "ws_message": "1MiB",
                   "connections": 1000},
        "storage": {"driver": "sqlite", "path": "svcd.db"},
        "auth": {"jwt_secret": JWT_SECRET, "client_url": "http://localhost:5173",
                 "admin_token": ADMIN_TOKEN},
        "log": {"file": "svcd.log", "format": "text", "level": "info"},
    }


# ----------------------------------------------------------------------------- CLI
def run_cli(args, env=None, timeout=None, cwd="/"):
    """Run `svc`/`svcd` to completion; returns CompletedProcess (text)."""
    return subprocess.run(args, env=env or base_env(), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout or scaled(30))


class Workdir:
    """A short temp dir (unix socket paths must stay < 108 bytes) holding one config."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="svcd-it-", dir="/tmp")
        self.port = free_port()
        self.config_path = os.path.join(self.dir, "svcd.yaml")
        self.run_dir = os.path.join(self.dir, "run")
        self.log_path = os.path.join(self.dir, "svcd.log")
        self.pidfile = os.path.join(self.run_dir, "svcd.pid")
        self.sockfile = os.path.join(self.run_dir, "svcd.sock")

    def write_config(self, overrides=None, text=None):
        if text is None:
            cfg = deep_merge(default_config(self.port), overrides or {})
            text = to_yaml(cfg) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)
        return text

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def svc(self, *args, env=None, timeout=None):
        return run_cli([SVC, "-c", self.config_path] + list(args), env=env, timeout=timeout)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Server:
    """One svcd master started by a test, in the foreground (Popen) or via `svc start`."""

    def __init__(self, wd, env=None, foreground=True):
        self.wd = wd
        self.env = env or base_env()
        self.foreground = foreground
        self.proc = None
        self.pid = None
        self.returncode = None
        self.stderr_path = os.path.join(wd.dir, "svcd.stderr")
        self.stdout_path = os.path.join(wd.dir, "svcd.stdout")
        self.seen = {}  # pid -> start time (clock ticks since boot)
        self.expect_clean_exit = True

    # -- lifecycle
    def start(self, wait=True):
        if self.foreground:
            self._err = open(self.stderr_path, "wb")
            self._out = open(self.stdout_path, "wb")
            self.proc = subprocess.Popen([SVCD, "-c", self.wd.config_path], env=self.env,
                                         cwd="/", stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=self._err, start_new_session=True)
            self.pid = self.proc.pid
            self.remember(self.pid)
        else:
            # Output to files, not pipes: holding the caller's pipes open is tested
            # on its own (test_startup), it must not hang every daemon test.
            try:
                with open(self.stdout_path, "w+") as out, open(self.stderr_path, "w+") as err:
                    rc = subprocess.run([SVC, "-c", self.wd.config_path, "start"],
                                        env=self.env, cwd="/", stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, timeout=scaled(30)).returncode
                    out.seek(0)
                    err.seek(0)
                    r = subprocess.CompletedProcess([], rc, out.read(), err.read())
            except subprocess.TimeoutExpired as e:
                self.pid = self.read_pidfile()
                self.remember(self.pid)
                pytest.fail("`svc start` did not return within %ss (daemon pid %s)" % (
                    e.timeout, self.pid))
            self.pid = self.read_pidfile()
            self.remember(self.pid)
            assert r.returncode == 0, "svc start failed rc=%d\n%s%s" % (
                r.returncode, r.stdout, r.stderr)
            assert self.pid, "no pidfile after svc start"
            self.remember(self.pid)
        if wait:
            self.wait_ready()
        return self

    def read_pidfile(self):
        try:
            with open(self.wd.pidfile) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def wait_ready(self, timeout=None):
        timeout = timeout or scaled(20)

        def ready():
            if not self.alive():
                pytest.fail("svcd exited during startup (rc=%s)\nstderr:\n%s" % (
                    self.proc.returncode if self.proc else "?", self.stderr_text()[-4000:]))
            r = requests.get(self.url("/health"), timeout=2)
            if r.status_code != 200:
                return False
            st = self.status()
            if st is None:
                return False
            workers = [c for c in st["children"] if c["role"] == "worker"]
            return workers and all(is_ready(c) for c in workers)

        wait_for(ready, timeout, interval=0.05, what="svcd READY (/health 200 and workers ready)")

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal the master and wait for it; returns its exit code (None for daemons)."""
        timeout = timeout or scaled(30)
        self._remember_children()
        if not self.alive():
            return self._reap()
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive():
            self.kill_all()
            pytest.fail("svcd master %d did not exit within %.0fs of signal %d" % (
                self.pid, timeout, sig))
        return self._reap()

    def _reap(self):
        if self.proc is not None:
            self.returncode = self.proc.wait(timeout=5)
        return self.returncode

    def remember(self, pid):
        """Track a pid this server spawned, with its start time, so a later kill
        never hits an unrelated process that reused the number."""
        if pid and pid > 0 and pid not in self.seen:
            st = start_time(pid)
            if st is not None:
                self.seen[pid] = st

    @property
    def seen_pids(self):
        return set(self.seen)

    def ours_alive(self):
        return [p for p, st in self.seen.items() if pid_alive(p) and start_time(p) == st]

    def kill_all(self):
        """Last resort: SIGKILL every process this server spawned (by pid, checked
        against its start time) and the members of the master's own process group."""
        victims = set(self.ours_alive())
        # anything still running with this test's unique config path is ours
        victims.update(p for p in pids_with_arg(self.wd.config_path) if p != os.getpid())
        if self.pid is not None and self.pid in self.seen:
            t0 = self.seen[self.pid]
            victims.update(p for p in pids_in_group(self.pid)
                           if (start_time(p) or 0) >= t0)
        for p in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGCONT)
                os.kill(p, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)

    def _remember_children(self):
        with contextlib.suppress(Exception):
            st = self.status(timeout=scaled(5))
            if st:
                for c in st["children"]:
                    if isinstance(c.get("pid"), int):
                        self.remember(c["pid"])

    def leftover_pids(self):
        left = set(p for p in self.ours_alive() if p != self.pid)
        if self.pid in self.seen:
            t0 = self.seen[self.pid]
            left.update(p for p in pids_in_group(self.pid) if (start_time(p) or 0) >= t0)
        return sorted(left)

    # -- observation
    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.wd.port, path)

    def status(self, timeout=None):
        r = self.wd.svc("status", "--json", env=self.env, timeout=timeout)
        if r.returncode != 0:
            return None
        st = json.loads(r.stdout)
        for c in st.get("children", []):
            if isinstance(c.get("pid"), int):
                self.remember(c["pid"])
        return st

    def children(self, role="worker"):
        st = self.status()
        assert st is not None, "svc status --json failed"
        return [c for c in st["children"] if c["role"] == role]

    def worker_pids(self):
        return sorted(c["pid"] for c in self.children("worker") if c["pid"] > 0)

    def log_text(self):
        return self.wd.log_text()

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def teardown(self):
        """Always stop; assert a clean exit (0) when the test left it running."""
        try:
            if self.pid is None:
                self.pid = self.read_pidfile()
                self.remember(self.pid)
            if self.pid is None:
                return
            was_running = self.alive()
            rc = self.stop() if was_running else self._reap()
            if was_running and self.expect_clean_exit:
                if self.foreground:
                    assert rc == 0, "svcd exited %s on SIGTERM at teardown" % rc
                deadline = time.monotonic() + scaled(10)
                while self.leftover_pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
                left = self.leftover_pids()
                assert not left, "processes left after svcd stopped: %s" % left
                assert not os.path.exists(self.wd.pidfile), "pidfile left after stop"
        finally:
            self.kill_all()
            for fh in ("_err", "_out"):
                with contextlib.suppress(Exception):
                    getattr(self, fh).close()
            tail = self.log_text()[-3000:]
            if tail:
                print("---- svcd log (tail) ----\n" + tail)
            err = self.stderr_text()[-3000:]
            if err:
                print("---- svcd stderr (tail) ----\n" + err)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session", autouse=True)
def _binaries():
    for b in (SVCD, SVC):
        if not os.access(b, os.X_OK):
            pytest.fail("missing binary %s (run `make` / `make asan` first)" % b, pytrace=False)


def _sanitizer_reports():
    return set(glob.glob(os.path.join(BUILD_DIR, "asan.*")) +
               glob.glob(os.path.join(BUILD_DIR, "ubsan.*")))


@pytest.fixture(scope="session", autouse=True)
def session_sanitizer_guard():
    """Catches reports from module-scoped servers stopped after their last test."""
    before = _sanitizer_reports()
    yield
    new = sorted(_sanitizer_reports() - before - _REPORTED)
    if new:
        pytest.fail("sanitizer report(s) appeared at session end: %s" % new, pytrace=False)


_REPORTED = set()


@pytest.fixture(autouse=True)
def sanitizer_guard():
    """Fail the test when a new ASan/UBSan/LSan report file appears while it runs
    (including servers stopped in its teardown: this fixture is torn down last)."""
    before = _sanitizer_reports()
    yield
    new = sorted(_sanitizer_reports() - before)
    if new:
        _REPORTED.update(new)
        texts = []
        for p in new[:3]:
            with open(p, errors="replace") as f:
                texts.append("== %s\n%s" % (p, f.read()[:4000]))
        pytest.fail("sanitizer report(s) appeared:\n" + "\n".join(texts), pytrace=False)


@pytest.fixture
def workdir():
    wd = Workdir()
    yield wd
    wd.cleanup()


@pytest.fixture
def make_server(workdir):
    """Factory: make_server(overrides=None, env=None, foreground=True, wait=True)."""
    servers = []

    def factory(overrides=None, env=None, foreground=True, wait=True, text=None):
        workdir.write_config(overrides, text=text)
        s = Server(workdir, env=env, foreground=foreground)
        servers.append(s)
        s.start(wait=wait)
        return s

    yield factory
    errors = []
    for s in servers:
        try:
            s.teardown()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("teardown: " + "; ".join(errors), pytrace=False)


@pytest.fixture
def server(make_server):
    """A running svcd (2 workers, foreground) with the default test config."""
    return make_server()


# ----------------------------------------------------------------------------- raw HTTP
class RawHTTP:
    """A raw TCP client for what `requests` cannot express (pipelining, partial
    writes, malformed input) with a small response parser."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk

    def read_response(self):
        """Parse one response: returns (status, headers{lower: value}, body bytes)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        assert m, "bad status line %r" % lines[0]
        status = int(m.group(1))
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        else:
            body = b""
            if status not in (204, 304) and status >= 200:
                # read until close
                with contextlib.suppress(EOFError):
                    while True:
                        self._fill()
                body, self.buf = self.buf, b""
        return status, headers, body

    def closed_by_peer(self, timeout):
        """Wait up to timeout for EOF/RST; returns elapsed seconds or None if still open."""
        t0 = time.monotonic()
        old = self.sock.gettimeout()
        deadline = t0 + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return time.monotonic() - t0
                self.buf += chunk
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        finally:
            self.sock.settimeout(old)

    def close(self):
        with contextlib.suppress(Exception):
            self.sock.close()


@pytest.fixture
def raw():
    conns = []

    def factory(port, timeout=10.0):
        c = RawHTTP(port, timeout=timeout)
        conns.append(c)
        return c

    yield factory
    for c in conns:
        c.close()


def error_json(body):
    """Assert the SPEC §4 error shape and return the error object."""
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), doc
    assert isinstance(doc["error"].get("code"), str) and doc["error"]["code"], doc
    assert isinstance(doc["error"].get("message"), str) and doc["error"]["message"], doc
    return doc["error"]


class LoadLoop:
    """A bounded request loop in threads: each request on a fresh connection
    (Connection: close), so a failure means the server refused/reset/failed a
    request, not a client keep-alive race. Bounded by max_seconds and max_requests."""

    def __init__(self, url, threads=4, max_seconds=60.0, max_requests=200000):
        import threading
        self.url = url
        self.nthreads = threads
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.events = []  # (monotonic time, ok bool, detail)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_evt.is_set() and time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= self.max_requests:
                    return
            t = time.monotonic()
            try:
                r = requests.get(self.url, timeout=10, headers={"Connection": "close"})
                ok = r.status_code == 200
                detail = r.status_code
            except requests.RequestException as e:
                ok, detail = False, repr(e)
            with self.lock:
                self.events.append((t, ok, detail))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(timeout=30)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def failures(self):
        return [e for e in self.snapshot() if not e[1]]

    def successes_after(self, t):
        return sum(1 for e in self.snapshot() if e[1] and e[0] >= t)
