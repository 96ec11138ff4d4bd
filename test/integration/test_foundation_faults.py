"""Foundation faults (issue 2 audit): control-socket permissions, EACCES on a
privileged port, secrets never shown by a running server, admin endpoints from a
non-loopback peer, the phase log, privilege drop (master and children), a worker stuck
in a busy loop, kill -9 accounting, start-up signals, `svc logs -n` validation.

Tests that need another user run the client (or svcd) as `nobody` with
setpriv(1); tests that need a non-loopback peer or a fresh port policy run svcd in
a private network namespace (unshare -n), so nothing listens outside loopback of
the host."""
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import uuid

import pytest
import requests

from conftest import (ADMIN_TOKEN, JWT_SECRET, SVC, SVCD, Server, base_env, free_port, is_ready,
                      pid_alive, pids_with_arg, run_cli, scaled, wait_for)

NOBODY = pwd.getpwnam("nobody")
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=%d" % NOBODY.pw_gid, "--clear-groups"]
EXIT_NOPERM = 4


def open_to_others(wd):
    """mkdtemp makes 0700 dirs: let another user read the config and reach run_dir."""
    os.chmod(wd.dir, 0o755)
    os.chmod(wd.config_path, 0o644)
    if os.path.isdir(wd.run_dir):
        os.chmod(wd.run_dir, 0o755)


def ready_for_nobody(wd):
    """What `user: nobody` needs of a test workdir (a 0700 root mkdtemp): the config
    readable, and the SQLite database in a directory nobody may create files in.
    Returns the config overrides that go with it."""
    os.chmod(wd.dir, 0o755)
    data = os.path.join(wd.dir, "data")
    os.makedirs(data, exist_ok=True)
    os.chown(data, NOBODY.pw_uid, NOBODY.pw_gid)
    return {"user": "nobody", "storage": {"driver": "sqlite", "path": data + "/svcd.db"}}


def caps(pid):
    """{CapInh, CapPrm, CapEff, CapBnd, CapAmb} of a live process, as ints."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k.startswith("Cap"):
                out[k] = int(v.strip(), 16)
    return out


CAP_NET_BIND_SERVICE = 1 << 10


def svc_as(wd, prefix, *args):
    return run_cli(prefix + [SVC, "-c", wd.config_path] + list(args))


def proc_ids(pid):
    """(uids, gids, groups) of a live process, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out["Uid"], out["Gid"], out["Groups"]


# ----------------------------------------------------------------------------- 1. control socket
def test_control_socket_mode_and_peer_check(make_server):
    s = make_server({"workers": 1})
    wd = s.wd
    st = os.stat(wd.sockfile)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, "control socket mode %o" % stat.S_IMODE(st.st_mode)
    assert st.st_uid == 0 and st.st_gid == os.getegid(), (st.st_uid, st.st_gid)
    open_to_others(wd)

    # nobody: the 0660 mode keeps it out; svc says who may get in, not "not running"
    r = svc_as(wd, AS_NOBODY, "status")
    assert r.returncode == EXIT_NOPERM, (r.returncode, r.stdout, r.stderr)
    assert "permission denied" in r.stderr and "member of group 'root'" in r.stderr, r.stderr
    assert "not running" not in r.stderr + r.stdout
    r = svc_as(wd, AS_NOBODY, "stop")
    assert r.returncode == EXIT_NOPERM and "permission denied" in r.stderr, (r.returncode, r.stderr)
    r = svc_as(wd, AS_NOBODY, "reload")
    assert r.returncode == EXIT_NOPERM, (r.returncode, r.stderr)
    assert s.alive() and s.status() is not None

    # a member of the socket's group (supplementary, not primary) is let in: the
    # group bit of 0660 means something, and the master's peer check agrees
    member = ["setpriv", "--reuid=nobody", "--regid=%d" % NOBODY.pw_gid, "--groups=%d" % st.st_gid]
    r = svc_as(wd, member, "status", "--json")
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert json.loads(r.stdout)["master"]["pid"] == s.pid

    # the mode widened by mistake: the master itself still refuses nobody
    log_len = len(s.log_text())
    os.chmod(wd.sockfile, 0o666)
    try:
        r = svc_as(wd, AS_NOBODY, "status", "--json")
        assert r.returncode == EXIT_NOPERM, (r.returncode, r.stdout, r.stderr)
        assert "svcd refused this user" in r.stderr and "members of group 'root'" in r.stderr, \
            r.stderr
        r = svc_as(wd, AS_NOBODY, "stop")
        assert r.returncode == EXIT_NOPERM, (r.returncode, r.stderr)
    finally:
        os.chmod(wd.sockfile, 0o660)
    wait_for(lambda: re.search(r"control socket: refused pid \d+ uid %d" % NOBODY.pw_uid,
                               s.log_text()[log_len:]), scaled(5), what="refusal logged")
    assert s.alive(), "a refused `svc stop` stopped svcd"


def test_control_socket_group_is_the_users(make_server, workdir):
    """With `user: nobody` the socket belongs to nobody's group, so the children's
    user can run svc."""
    s = make_server(dict(ready_for_nobody(workdir), workers=1))
    st = os.stat(s.wd.sockfile)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY.pw_gid, st
    open_to_others(s.wd)
    r = svc_as(s.wd, AS_NOBODY, "status", "--json")
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert json.loads(r.stdout)["master"]["pid"] == s.pid


# ----------------------------------------------------------------------------- 2. EACCES
def test_privileged_port_as_nobody_explains_eacces(workdir):
    wd = workdir
    # a private network namespace: its port policy is the default (below 1024 is
    # privileged) whatever the host's sysctl says, and port 80 is surely free there
    wd.write_config({"listen": [{"address": "127.0.0.1:80"}], "run_dir": wd.run_dir,
                     "log": {"file": wd.log_path}, "storage": {"path": wd.dir + "/svcd.db"}})
    shutil.chown(wd.dir, NOBODY.pw_uid, NOBODY.pw_gid)
    open_to_others(wd)
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host_policy = int(f.read())
    script = ("ip link set lo up && test $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) "
              "-gt 80 && exec " + " ".join(AS_NOBODY) + " %s -c %s" % (SVCD, wd.config_path))
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], env=base_env(), cwd="/",
                       capture_output=True, text=True, timeout=scaled(30))
    assert host_policy > 0
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "cannot listen on 127.0.0.1:80: permission denied; ports below 1024 need root or " \
           "CAP_NET_BIND_SERVICE" in r.stderr, r.stderr
    assert "use a port of 1024 or more" in r.stderr
    assert "nothing was started" in r.stderr
    assert not os.path.exists(wd.pidfile), "pidfile left after a failed start"
    assert not os.path.exists(wd.sockfile)
    left = pids_with_arg(wd.config_path)
    assert not left, "processes left running: %s" % left


# ----------------------------------------------------------------------------- 3. secrets
def secret_config(wd, env):
    pw = "PW_SECRET_" + uuid.uuid4().hex[:12]
    jwt = "JWT_SECRET_" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    adm = "ADM_TOKEN_" + uuid.uuid4().hex
    wd.write_config({"env": env, "workers": 1,
                     "storage": {"driver": "mongodb",
                                 "uri": "mongodb://u:%s@127.0.0.1:%d/svcd" % (pw, free_port()),
                                 "connect": {"attempts": 2, "backoff": "100ms",
                                             "max_backoff": "200ms"}},
                     "auth": {"jwt_secret": jwt, "admin_token": adm,
                              "client_url": "http://localhost:5173"}})
    return pw, jwt, adm


def assert_no_secret(where, text, secrets):
    for sec in secrets:
        assert sec not in text, "secret %s... shown in %s: %r" % (
            sec[:10], where, text[max(0, text.find(sec) - 200):text.find(sec) + 50])


def test_secrets_never_shown_development_degraded(workdir):
    wd = workdir
    secrets = secret_config(wd, "development")
    pw, _, adm = secrets
    s = Server(wd)
    try:
        s.start()
        assert "DEGRADED" in s.log_text()
        outputs = {}
        st = wd.svc("status", "--json")
        assert st.returncode == 0, st.stderr
        outputs["svc status --json"] = st.stdout + st.stderr
        tab = wd.svc("status")
        outputs["svc status"] = tab.stdout + tab.stderr
        r = requests.get(s.url("/api/health/detailed"), timeout=scaled(10))
        assert r.status_code == 200 and "mongodb" in r.text, r.text
        outputs["/api/health/detailed"] = r.text
        r = requests.get(s.url("/metrics"), timeout=scaled(10),
                         headers={"Authorization": "Bearer " + adm})
        assert r.status_code == 200 and "svcd_connections" in r.text
        outputs["/metrics"] = r.text
        r = requests.get(s.url("/api/health"), timeout=scaled(10))
        outputs["/api/health"] = r.text
        # the password is redacted but the rest of the target is there
        det = json.loads(outputs["/api/health/detailed"])
        assert det["database"]["target"].startswith("mongodb://u:***@127.0.0.1:"), det["database"]
        lg = wd.svc("logs", "-n", "500")
        outputs["svc logs"] = lg.stdout
        # every line the workers logged so far is in the file: wait for the access log
        wait_for(lambda: "/metrics" in s.log_text(), scaled(5), what="access log of /metrics")
        outputs["log file"] = s.log_text()
        outputs["stderr"] = s.stderr_text()
        assert "phase storage" in outputs["log file"]
        for where, text in outputs.items():
            assert_no_secret(where, text, secrets)
    finally:
        s.teardown()


def test_secrets_never_shown_production_refuses(workdir):
    wd = workdir
    secrets = secret_config(wd, "production")
    r = run_cli([SVCD, "-c", wd.config_path], timeout=scaled(30))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "production does not start without its database" in r.stderr, r.stderr
    assert_no_secret("stderr", r.stdout + r.stderr, secrets)
    assert_no_secret("log file", wd.log_text(), secrets)
    assert "phase storage" in wd.log_text()
    assert not os.path.exists(wd.pidfile)
    # svc start reports the same, without the secrets
    r = wd.svc("start")
    assert r.returncode == 1 and "production does not start" in r.stderr, r.stderr
    assert_no_secret("svc start", r.stdout + r.stderr, secrets)
    assert_no_secret("svc check", wd.svc("check").stdout, secrets)


# ----------------------------------------------------------------------------- 4. non-loopback admin
NETNS_ADDR = "10.213.0.1"


class NetnsServer(Server):
    """svcd in its own network namespace whose loopback device also carries a
    non-loopback address (NETNS_ADDR): peers from that address are "remote"."""

    def start(self, wait=True):
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        script = ("ip link set lo up && ip addr add %s/24 dev lo && exec %s -c %s" %
                  (NETNS_ADDR, SVCD, self.wd.config_path))
        self.proc = subprocess.Popen(["unshare", "-n", "sh", "-c", script], env=self.env, cwd="/",
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, start_new_session=True)
        self.pid = self.proc.pid
        self.remember(self.pid)
        if wait:
            def ready():
                assert self.alive(), "svcd exited: %s" % self.stderr_text()[-2000:]
                st = self.status()
                ws = [c for c in (st or {}).get("children", []) if c["role"] == "worker"]
                return ws and all(is_ready(c) for c in ws)
            wait_for(ready, scaled(20), interval=0.05, what="netns svcd ready")
        return self

    def http(self, src_addr, path, token=None):
        """GET from inside the namespace to NETNS_ADDR, from `src_addr`."""
        code = (
            "import json,socket,sys\n"
            "s=socket.socket();s.settimeout(10);s.bind((%r,0));s.connect((%r,%d))\n"
            "h='GET %s HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n'\n"
            "t=%r\n"
            "h+=('Authorization: Bearer '+t+'\\r\\n') if t else ''\n"
            "s.sendall((h+'\\r\\n').encode());d=b''\n"
            "while True:\n c=s.recv(65536)\n if not c: break\n d+=c\n"
            "hd,_,b=d.partition(b'\\r\\n\\r\\n')\n"
            "print(json.dumps({'status':int(hd.split()[1]),'head':hd.decode('latin-1'),"
            "'body':b.decode('utf-8','replace')}))\n"
        ) % (src_addr, NETNS_ADDR if src_addr != "127.0.0.1" else "127.0.0.1", self.wd.port, path,
             token)
        r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % self.pid, "python3", "-c", code],
                           capture_output=True, text=True, timeout=scaled(20))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


def admin_get_from_remote(srv, path, token=None):
    """Reusable: an admin route fetched by a non-loopback peer (NetnsServer)."""
    return srv.http(NETNS_ADDR, path, token)


def test_admin_forbidden_from_non_loopback_peer(workdir):
    wd = workdir
    wd.write_config({"workers": 1, "listen": [{"address": "0.0.0.0:%d" % wd.port}]})
    s = NetnsServer(wd)
    try:
        s.start()
        # the namespace really has a non-loopback address, or this test proves nothing
        r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % s.pid, "ip", "-4", "-o", "addr"],
                           capture_output=True, text=True, timeout=scaled(10))
        assert NETNS_ADDR in r.stdout, r.stdout
        for path in ("/metrics", "/api/health/detailed"):
            resp = admin_get_from_remote(s, path)
            assert resp["status"] == 403, (path, resp)
            assert "application/json" in resp["head"].lower(), resp["head"]
            err = json.loads(resp["body"])["error"]
            assert isinstance(err["code"], str) and err["code"] and err["message"], err
            assert ADMIN_TOKEN not in resp["body"]
            bad = admin_get_from_remote(s, path, token=ADMIN_TOKEN[:-1] + "x")
            assert bad["status"] == 403, (path, bad["status"])
            ok = admin_get_from_remote(s, path, token=ADMIN_TOKEN)
            assert ok["status"] == 200, (path, ok)
            # loopback inside the same namespace needs no token
            lo = s.http("127.0.0.1", path)
            assert lo["status"] == 200, (path, lo["status"])
        assert json.loads(ok["body"])["children"], ok["body"]
        assert admin_get_from_remote(s, "/health")["status"] == 200
    finally:
        s.teardown()


# ----------------------------------------------------------------------------- 6. phase log
def test_startup_phase_lines_in_order(make_server):
    s = make_server({"workers": 2})
    log = s.log_text()
    st = s.status()
    kids = st["children"]
    expected = [
        ("config", r"phase config: OK — %s \(env development, 2 worker\(s\), pid %d\)" % (
            re.escape(s.wd.config_path), s.pid)),
        ("storage", r"phase storage: sqlite at .* answered in [0-9.]+ ms"),
        ("bind", r"phase bind: listening on 127\.0\.0\.1:%d" % s.wd.port),
        ("privileges", r"phase privileges: no user configured; running as uid 0"),
        ("fork", r"phase fork: starting the coordinator and 2 worker\(s\)"),
    ]
    for c in kids:
        expected.append(("%s %d ready" % (c["role"], c["index"]),
                         r"%s %d \(pid %d\) ready" % (c["role"], c["index"], c["pid"])))
    expected.append(("READY", r"phase ready: READY — 2 worker\(s\) and the coordinator serve; "
                              r"pid %d" % s.pid))
    lines = log.splitlines()
    pos = []
    for name, pat in expected:
        idx = next((i for i, ln in enumerate(lines) if re.search(pat, ln)), None)
        assert idx is not None, "no %s phase line /%s/ in log:\n%s" % (name, pat, log[-3000:])
        pos.append((idx, name))
    fixed = [p for p in pos if not p[1].endswith(" ready")]
    assert [n for _, n in sorted(fixed)] == [n for _, n in fixed], sorted(pos)
    fork_i = dict((n, i) for i, n in pos)["fork"]
    ready_i = dict((n, i) for i, n in pos)["READY"]
    for i, n in pos:
        if n.endswith(" ready"):
            assert fork_i < i < ready_i, (n, sorted(pos))
    assert len([n for _, n in pos if n.endswith(" ready")]) == 3  # 2 workers + coordinator
    assert "phase" not in "".join(ln for ln in lines if re.search(r"\b(ERROR|error)\b", ln))


# ----------------------------------------------------------------------------- 7. privilege drop
def free_privileged_port():
    """A port below 1024 that nothing listens on at 127.0.0.1 (we are root here)."""
    for port in random.sample(range(700, 1000), 300):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.fail("no free port below 1024 on 127.0.0.1")


def test_master_and_children_drop_to_configured_user(make_server, workdir):
    """SPEC §1: the master binds, then drops privileges. Started as root with
    `user: nobody`, the master runs as nobody keeping only CAP_NET_BIND_SERVICE
    (a reload can still bind a port below 1024), the children keep no capability at
    all, the files root created are nobody's (SQLite bookings work), a reload adds a
    privileged listener, and stop removes pidfile and socket."""
    s = make_server(dict(ready_for_nobody(workdir), workers=2))
    assert "phase privileges: running as user 'nobody' (uid %d), keeping only " \
        "CAP_NET_BIND_SERVICE" % NOBODY.pw_uid in s.log_text()
    uids, gids, groups = proc_ids(s.pid)
    assert uids == [NOBODY.pw_uid] * 4 and gids == [NOBODY.pw_gid] * 4, (uids, gids)
    assert set(groups) <= {NOBODY.pw_gid}, groups
    c = caps(s.pid)
    assert c["CapPrm"] == c["CapEff"] == CAP_NET_BIND_SERVICE, c
    assert c["CapInh"] == 0 and c.get("CapAmb", 0) == 0, c
    kids = s.status()["children"]
    assert len(kids) == 3 and {k["role"] for k in kids} == {"worker", "coordinator"}, kids
    for k in kids:
        uids, gids, groups = proc_ids(k["pid"])
        assert uids == [NOBODY.pw_uid] * 4, (k["role"], uids)
        assert gids == [NOBODY.pw_gid] * 4, (k["role"], gids)
        assert set(groups) <= {NOBODY.pw_gid}, (k["role"], groups)
        kc = caps(k["pid"])
        assert kc["CapPrm"] == kc["CapEff"] == 0, (k["role"], kc)
    for path in (s.wd.run_dir, s.wd.pidfile, s.wd.sockfile, s.wd.log_path):
        assert os.stat(path).st_uid == NOBODY.pw_uid, path
    # the database root's storage phase created is nobody's: bookings are written
    r = requests.post(s.url("/api/events"), json={"name": "drop", "rows": 1, "cols": 2},
                      timeout=scaled(10))
    assert r.status_code == 201, r.text
    # a reload binds a new listener below 1024 with the one capability kept
    low = free_privileged_port()
    text = open(s.wd.config_path).read()
    text = text.replace("listen:\n", "listen:\n  - address: 127.0.0.1:%d\n" % low, 1)
    with open(s.wd.config_path, "w") as f:
        f.write(text)
    r = s.wd.svc("reload")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert requests.get("http://127.0.0.1:%d/health" % low, timeout=scaled(5)).status_code == 200

    def new_generation_only():
        ks = s.status()["children"]
        ws = [k for k in ks if k["role"] == "worker"]
        return ks if len(ws) == 2 and all(k["generation"] == 2 and is_ready(k) for k in ws) \
            else None

    for k in wait_for(new_generation_only, scaled(20), what="old generation drained"):
        assert proc_ids(k["pid"])[0] == [NOBODY.pw_uid] * 4, k
        assert caps(k["pid"])["CapEff"] == 0, k
    assert s.stop() == 0
    assert not os.path.exists(s.wd.pidfile) and not os.path.exists(s.wd.sockfile)


def test_user_that_cannot_reach_its_files_is_refused_at_start(make_server, workdir):
    """`user: nobody` with the SQLite database in root's 0700 directory: the master
    says which path nobody cannot use, exits 1 before forking, and leaves nothing."""
    os.chmod(workdir.dir, 0o711)  # the config is readable, the directory not writable
    srv = make_server({"user": "nobody"}, wait=False)
    rc = srv.proc.wait(timeout=scaled(30))
    out = srv.stderr_text() + srv.log_text()
    assert rc == 1, (rc, out[-2000:])
    assert "phase privileges: user 'nobody' cannot create the SQLite -wal/-shm files: " \
        "%s: Permission denied" % workdir.dir in out, out[-2000:]
    assert "nothing was started" in out
    assert not pids_with_arg(workdir.config_path), "processes left running"
    assert not os.path.exists(workdir.pidfile)
    srv.expect_clean_exit = False


def test_existing_root_run_dir_is_not_taken_over(make_server, workdir):
    """A run_dir that was already there (here root's 0755, as /run would be) is never
    chowned to the user: the master refuses to start, naming it, still as root —
    so it removes its own pidfile from there — and leaves the directory root's."""
    over = ready_for_nobody(workdir)
    os.makedirs(workdir.run_dir, mode=0o755)
    srv = make_server(dict(over, workers=1), wait=False)
    rc = srv.proc.wait(timeout=scaled(30))
    out = srv.stderr_text() + srv.log_text()
    assert rc == 1, (rc, out[-2000:])
    assert "phase privileges: user 'nobody' cannot remove its pidfile and socket: %s: " \
        "Permission denied" % workdir.run_dir in out, out[-2000:]
    st = os.stat(workdir.run_dir)
    assert st.st_uid == 0, "an existing run_dir was chowned to uid %d" % st.st_uid
    assert not os.path.exists(workdir.pidfile), "pidfile left behind"
    assert not pids_with_arg(workdir.config_path)
    srv.expect_clean_exit = False


# ----------------------------------------------------------------------------- 8. busy loop
def test_worker_busy_looping_is_killed_by_watchdog(make_server, workdir):
    spin = os.path.join(workdir.dir, "spin")
    env = base_env(SVCD_TEST_SPIN=spin)
    s = make_server({"workers": 2, "timeouts": {"worker": "2s"}}, env=env)
    before = s.worker_pids()
    victim, survivor = before
    log_len = len(s.log_text())
    with open(spin, "w") as f:
        f.write("%d\n" % victim)
    served = []
    stop = threading.Event()

    def load():
        deadline = time.monotonic() + scaled(30)
        while not stop.is_set() and time.monotonic() < deadline and len(served) < 100000:
            t_req = time.monotonic()  # when the request started, not when it ended
            try:
                r = requests.get(s.url("/health"), timeout=scaled(5),
                                 headers={"Connection": "close"})
                served.append((t_req, r.status_code))
            except requests.RequestException as e:
                served.append((t_req, repr(e)))
            time.sleep(0.01)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        # the victim spins (running, burning CPU) rather than being stopped
        wait_for(lambda: "SVCD_TEST_SPIN" in s.log_text()[log_len:], scaled(5),
                 what="the victim enters its busy loop")
        t_spin = time.monotonic()

        def cpu(pid):
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            fl = st[st.rfind(")") + 2:].split()
            return int(fl[11]) + int(fl[12])
        c0 = cpu(victim)
        time.sleep(0.3)
        assert cpu(victim) > c0, "the victim is not busy"

        def replaced():
            ws = {c["pid"]: c for c in s.children("worker") if is_ready(c)}
            new = [p for p in ws if p not in before]
            return (new[0], ws[new[0]]) if new and survivor in ws else None

        new_pid, new_c = wait_for(replaced, scaled(15), interval=0.1, what="spinning worker "
                                                                               "replaced")
        wait_for(lambda: not pid_alive(victim), scaled(5), what="victim gone")
    finally:
        stop.set()
        t.join(timeout=scaled(20))
        with open(spin, "w") as f:
            f.write("0\n")
    log = s.log_text()[log_len:]
    line = next((ln for ln in log.splitlines() if "missed its heart-beat" in ln), None)
    assert line and ("pid %d" % victim) in line and "timeouts.worker" in line, log[-2000:]
    assert "killed by watchdog" in new_c["last_exit"], new_c
    assert new_c["restarts"] == 1, new_c
    st = {c["pid"]: c for c in s.children("worker")}
    assert st[survivor]["restarts"] == 0
    # the other worker kept serving while the victim spun
    during = [x for x in served if x[0] >= t_spin]
    assert sum(1 for x in during if x[1] == 200) >= 5, during[:10]
    assert all(x[1] == 200 for x in during), [x for x in during if x[1] != 200][:5]


# ----------------------------------------------------------------------------- 9. kill -9 accounting
def metric_values(text, name):
    out = {}
    for ln in text.splitlines():
        m = re.match(r"^%s(\{[^}]*\})? ([0-9.eE+-]+)$" % re.escape(name), ln)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def test_kill9_restarts_and_connection_counts(make_server, raw):
    s = make_server({"workers": 2})
    victim, survivor = s.worker_pids()
    vslot = next(c for c in s.children() if c["pid"] == victim)["index"]
    os.kill(victim, signal.SIGKILL)

    def replaced():
        ws = [c for c in s.children() if is_ready(c)]
        new = [c for c in ws if c["pid"] not in (victim, survivor)]
        return new[0] if new and len(ws) == 2 else None

    new = wait_for(replaced, scaled(10), what="replacement ready")
    assert new["index"] == vslot and new["restarts"] == 1, new
    assert "signal 9" in new["last_exit"], new
    # two idle keep-alive connections, counted wherever they landed
    conns = [raw(s.wd.port) for _ in range(2)]
    for c in conns:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response()[0] == 200

    def detailed():
        r = requests.get(s.url("/api/health/detailed"), timeout=scaled(5))
        assert r.status_code == 200
        return r.json()

    def counted():
        d = detailed()
        ws = [c for c in d["children"] if c["role"] == "worker" and c["pid"] > 0]
        # the request doing the asking holds one more connection
        return d if len(ws) == 2 and sum(c["connections"] for c in ws) >= 3 else None

    d = wait_for(counted, scaled(10), what="connections counted in /api/health/detailed")
    by_pid = {c["pid"]: c for c in d["children"]}
    assert by_pid[new["pid"]]["restarts"] == 1 and by_pid[survivor]["restarts"] == 0, by_pid
    assert "signal 9" in by_pid[new["pid"]]["lastExit"]
    for c in d["children"]:
        assert isinstance(c["connections"], int) and 0 <= c["connections"] <= 3 + 1, c
    assert victim not in by_pid
    m = requests.get(s.url("/metrics"), timeout=scaled(5)).text
    live = metric_values(m, "svcd_connections")
    assert live, m[:2000]
    assert all(v >= 0 for v in live.values()), live
    assert sum(v for k, v in live.items() if 'worker="%d"' % vslot in k or
               'worker="%d"' % (1 - vslot) in k) >= 2, live
    restarts = metric_values(m, "svcd_child_restarts_total")
    assert restarts['{role="worker",index="%d",generation="1"}' % vslot] == 1, restarts
    assert restarts['{role="worker",index="%d",generation="1"}' % (1 - vslot)] == 0, restarts
    assert metric_values(m, "svcd_connections_accepted_total")[""] >= 3
    for c in conns:
        c.close()
    wait_for(lambda: sum(c["connections"] for c in s.children()) == 0, scaled(10),
             what="closed connections no longer counted")


# ----------------------------------------------------------------------------- 10. signals at start-up
def test_signals_during_storage_phase_do_not_kill_master(workdir):
    wd = workdir
    wd.write_config({"workers": 1,
                     "storage": {"driver": "mongodb",
                                 "uri": "mongodb://127.0.0.1:%d/svcd" % free_port(),
                                 "connect": {"attempts": 6, "backoff": "1s",
                                             "max_backoff": "1s"}}})
    s = Server(wd)
    try:
        s.start(wait=False)
        wait_for(lambda: "phase storage: attempt 1 of 6 failed" in wd.log_text(), scaled(15),
                 what="first storage attempt failed")
        # logrotate: move the file away, then SIGUSR1 while still connecting
        os.rename(wd.log_path, wd.log_path + ".1")
        os.kill(s.pid, signal.SIGUSR1)
        wait_for(lambda: "log file reopened" in wd.log_text(), scaled(5),
                 what="log reopened during start-up")
        assert "phase fork" not in wd.log_text(), "already past the storage phase"
        os.kill(s.pid, signal.SIGHUP)
        wait_for(lambda: "SIGHUP during start-up ignored" in wd.log_text(), scaled(5),
                 what="SIGHUP noted")
        assert s.alive(), "master died of a start-up signal: %s" % s.stderr_text()
        s.wait_ready(timeout=scaled(30))
        assert "DEGRADED" in wd.log_text()
        assert "phase ready: READY" in wd.log_text()
    finally:
        s.teardown()


def test_sigterm_during_storage_phase_stops_cleanly(workdir):
    wd = workdir
    wd.write_config({"workers": 1,
                     "storage": {"driver": "mongodb",
                                 "uri": "mongodb://127.0.0.1:%d/svcd" % free_port(),
                                 "connect": {"attempts": 10, "backoff": "2s",
                                             "max_backoff": "10s"}}})
    s = Server(wd)
    try:
        s.start(wait=False)
        wait_for(lambda: "phase storage: attempt 1 of 10 failed" in wd.log_text(), scaled(15),
                 what="first storage attempt failed")
        t0 = time.monotonic()
        os.kill(s.pid, signal.SIGTERM)
        rc = s.proc.wait(timeout=scaled(10))
        assert time.monotonic() - t0 < scaled(5), "SIGTERM waited for the back-off"
        assert rc == 0, rc
        assert "start-up interrupted by SIGTERM; nothing was started" in wd.log_text()
        assert not os.path.exists(wd.pidfile)
        assert not pids_with_arg(wd.config_path)
    finally:
        s.teardown()


@pytest.mark.parametrize("arg", ["abc", "-5", "10x", "", "99999999999999999999"])
def test_svc_logs_n_is_validated(workdir, arg):
    workdir.write_config()
    r = workdir.svc("logs", "-n", arg)
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    assert "logs -n needs a whole number of lines" in r.stderr and repr(arg)[1:-1] in r.stderr
    assert r.stdout == ""


def test_svc_logs_n_missing_value(workdir):
    workdir.write_config()
    r = workdir.svc("logs", "-n")
    assert r.returncode == 64 and "logs -n needs" in r.stderr, (r.returncode, r.stderr)


# ----------------------------------------------------------------------------- 5. status rendering
def test_status_table_never_prints_null(workdir):
    """A reply lacking string members (an older or newer master) renders with
    placeholders: svc never hands printf a NULL string."""
    wd = workdir
    wd.write_config()
    os.makedirs(wd.run_dir, exist_ok=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(wd.sockfile)
    srv.listen(4)
    reply = json.dumps({"ok": True, "master": {"pid": 1},
                        "children": [{"pid": 7, "restarts": 0}, {"role": 3, "state": None}]})

    def answer():
        for _ in range(2):
            c, _ = srv.accept()
            c.recv(256)
            c.sendall(reply.encode() + b"\n")
            c.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        r = wd.svc("status")
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert "(null)" not in r.stdout, r.stdout
        assert r.stdout.count("\n") == 4, r.stdout  # header, column names, 2 children
        r = wd.svc("status", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["master"] == {"pid": 1}, r.stdout
    finally:
        t.join(timeout=5)
        srv.close()
