"""
The Debian package, end to end, as an administrator meets it.

Builds build/svcd_<version>_<arch>.deb with `make -f packaging/packaging.mk deb`,
checks it with lintian (no errors, warnings listed), the installed manual pages
with `mandoc -Tlint`, the systemd unit with `systemd-analyze verify`, then
installs it with dpkg and
drives the installed daemon: the postinst start, the SysV init script, `svc`,
logrotate with the shipped file, a reinstall over an edited conffile, `dpkg -r`
(which keeps the user, the data and the conffiles) and finally `dpkg --purge`,
which must leave no process, user or directory behind. The checks that need no
root (manual page coverage and lint, `make install`, the unit against the
shipped configuration) are in test_packaging_static.py.

Self-contained on purpose (no conftest helpers): it needs root (or
passwordless sudo, through which it reruns itself), installs the
Debian tools it uses when they are missing, and whatever happens it purges the
package and restores the files it touched. The daemon listens on a free
loopback port, given through /etc/default/svcd (PORT), which the init script
exports to svcd.

This container may carry Docker's /usr/sbin/policy-rc.d, which forbids
invoke-rc.d to start or stop anything, so maintainer scripts would never run
the init script. For the duration of the module it is wrapped by one that
allows svcd only and defers to the original for every other service; the
original is put back at teardown (and at the next run if a run was killed).
"""
import contextlib
import fcntl
import gzip
import json
import os
import pwd
import glob
import grp
import ipaddress
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

# Not root: every test runs in one `sudo -n` pytest run of this file when sudo
# allows it, else fails saying why (a package test that does not run must not
# pass, in CI or anywhere). See _run_as_root() at the end.

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONF = "/etc/svcd/svcd.yaml"
DEFAULTS = "/etc/default/svcd"
INIT = "/etc/init.d/svcd"
PIDFILE = "/run/svcd/svcd.pid"
LOG = "/var/log/svcd/svcd.log"
UNIT = "/lib/systemd/system/svcd.service"
MAN_PAGES = ("/usr/share/man/man8/svcd.8.gz", "/usr/share/man/man1/svc.1.gz",
             "/usr/share/man/man5/svcd.yaml.5.gz")
MARK = "# written by test/integration/test_packaging.py"
LOCKFILE = "/run/lock/svcd-test-packaging.lock"
POLICY = "/usr/sbin/policy-rc.d"
POLICY_ORIG = "/usr/sbin/policy-rc.d.svcd-test-orig"

# Debian packages this module runs (tool -> package).
TOOLS = {"dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "lintian": "lintian",
         "mandoc": "mandoc", "makewhatis": "mandoc", "logrotate": "logrotate",
         "systemd-analyze": "systemd", "man": "man-db", "adduser": "adduser",
         "make": "make", "gcc": "gcc"}

ENV_SCRUB = ("NODE_ENV", "PORT", "MONGODB_URI", "JWT_SECRET", "CLIENT_URL", "SVCD_CONFIG",
             "SVCD_BIN", "SVCD_ADMIN_TOKEN", "NOTIFY_SOCKET", "WATCHDOG_USEC")


def env(**extra):
    e = {k: v for k, v in os.environ.items() if k not in ENV_SCRUB}
    e["DEBIAN_FRONTEND"] = "noninteractive"
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run(cmd, check=True, timeout=600, **kw):
    """Run a command (list), print it with its output, return CompletedProcess.

    Output goes through a file, not a pipe: a daemon that the command starts
    and that keeps the inherited descriptor open must not hang the test (that
    is checked on its own by test_daemon_detaches_from_the_callers_output).
    """
    kw.setdefault("env", env())
    with tempfile.TemporaryFile(mode="w+") as out:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout, **kw)
        out.seek(0)
        p.stdout = out.read()
    print("$ %s -> %d\n%s" % (" ".join(cmd), p.returncode, p.stdout.rstrip()))
    if check and p.returncode != 0:
        pytest.fail("%s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stdout))
    return p


def returns_eof(cmd, env_=None):
    """Run cmd with stdout/stderr on a pipe; True when EOF comes soon after it exits,
    i.e. nothing it started kept the caller's output open."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env_ or env())
    fd = p.stdout.fileno()
    os.set_blocking(fd, False)
    chunks, deadline, eof = [], None, False
    while True:
        if deadline is None and p.poll() is not None:
            deadline = time.monotonic() + 5
        if deadline is not None and time.monotonic() > deadline:
            break
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            data = os.read(fd, 65536)
            if not data:
                eof = True
                break
            chunks.append(data)
    p.wait(timeout=60)
    p.stdout.close()
    print("$ %s -> %s, EOF %s\n%s" % (" ".join(cmd), p.returncode, eof,
                                      b"".join(chunks).decode(errors="replace")))
    return p.returncode, eof


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - not ready yet
            last = e
        time.sleep(0.05)
    pytest.fail("timed out after %ss waiting for %s (last error: %r)" % (timeout, what, last))


def dpkg(*args, check=True, timeout=300):
    """dpkg, waiting while another dpkg/apt holds its lock (never breaking it)."""
    deadline = time.monotonic() + timeout
    while True:
        p = run(["dpkg"] + list(args), check=False, timeout=timeout)
        locked = p.returncode != 0 and "lock" in p.stdout and "locked" in p.stdout
        if not locked or time.monotonic() > deadline:
            break
        time.sleep(2)
    if check and p.returncode != 0:
        pytest.fail("dpkg %s exited %d:\n%s" % (" ".join(args), p.returncode, p.stdout))
    return p


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/health", timeout=2):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, r.read().decode()


def poke(port, path):
    """One request whose path shows up in the access log (any status)."""
    try:
        http_get(port, path)
    except urllib.error.HTTPError:
        pass


def serving(port):
    try:
        return http_get(port)[0] == 200
    except OSError:
        return False


def master_pid():
    try:
        with open(PIDFILE) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 and os.path.exists("/proc/%d" % pid) else 0


def svcd_processes():
    """PIDs of every process running the installed /usr/sbin/svcd (even if deleted)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % d)
        except OSError:
            continue
        if exe == "/usr/sbin/svcd" or exe == "/usr/sbin/svcd (deleted)":
            pids.append(int(d))
    return pids


def status_json():
    p = run(["svc", "-c", CONF, "status", "--json"], check=False)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def worker_pids():
    st = status_json() or {"children": []}
    return sorted(c["pid"] for c in st["children"] if c.get("role") == "worker" and c.get("pid"))


# --------------------------------------------------------------------------------------------
# Tools, the .deb, and a policy-rc.d that lets maintainer scripts run svcd's init script.

def apt_install(pkgs):
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    run(["apt-get"] + lock + ["update", "-qq"], timeout=900)
    run(["apt-get"] + lock + ["install", "-y", "-qq", "--no-install-recommends"] + pkgs,
        timeout=1800)


def ensure_tools():
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)}
                     | {pkg for pkg in ("man-db",) if not installed(pkg)})
    if missing:
        apt_install(missing)
    # The package's Build-Depends, as dpkg-buildpackage will check them.
    p = run(["dpkg-checkbuilddeps", os.path.join(REPO, "packaging/debian/control")],
            check=False)
    if p.returncode != 0:
        m = re.search(r"Unmet build dependencies: (.*)", p.stdout)
        assert m, p.stdout
        deps = [re.sub(r"\s*\(.*?\)", "", d).strip() for d in m.group(1).split()]
        deps = [d for d in " ".join(deps).split() if d and not d.startswith("(")]
        apt_install(deps)


def restore_policy():
    if os.path.exists(POLICY_ORIG):
        os.replace(POLICY_ORIG, POLICY)


def allow_svcd_in_policy():
    if not os.path.exists(POLICY):
        return  # no policy: invoke-rc.d runs every init script already
    os.replace(POLICY, POLICY_ORIG)
    with open(POLICY + ".tmp", "w") as f:
        f.write("""#!/bin/sh
%s (temporary; the original is %s)
# Allow svcd; ask the original policy about every other service.
for a in "$@"; do
  case "$a" in -*) continue ;; svcd) exit 0 ;; *) break ;; esac
done
exec %s "$@"
""" % (MARK, POLICY_ORIG, POLICY_ORIG))
    os.chmod(POLICY + ".tmp", 0o755)
    os.replace(POLICY + ".tmp", POLICY)


def purge(port=None):
    """Remove the package and everything it left; stop only svcd processes."""
    if installed("svcd") or subprocess.run(["dpkg-query", "-W", "svcd"],
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL).returncode == 0:
        if os.path.exists(INIT):
            # sh: after `dpkg -r` the script is a conffile without its x bit.
            run(["sh", INIT, "stop"], check=False, timeout=60)
        dpkg("--purge", "svcd", check=False)
    for pid in svcd_processes():  # only ever the installed svcd binary
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def machine_lock():
    """One run of this module per machine at a time: it installs a system package."""
    with open(LOCKFILE, "w") as f:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("another run of test_packaging.py holds %s" % LOCKFILE)
                time.sleep(1)
        yield
        fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def deb(machine_lock):
    ensure_tools()
    t0 = time.monotonic()
    run(["make", "-C", REPO, "-f", "packaging/packaging.mk", "deb"], timeout=1800)
    print("deb built in %.1fs" % (time.monotonic() - t0))
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    version = run(["dpkg-parsechangelog", "-l",
                   os.path.join(REPO, "packaging/debian/changelog"), "-S", "Version"]
                  ).stdout.strip()
    path = os.path.join(REPO, "build", "svcd_%s_%s.deb" % (version, arch))
    assert os.path.isfile(path), path
    return path


@pytest.fixture(scope="module")
def pkg(deb):
    """Install the .deb with PORT preseeded in /etc/default/svcd; purge at the end."""
    restore_policy()  # a killed earlier run may have left the wrapper in place
    if installed("svcd") or os.path.exists(DEFAULTS):
        with open(DEFAULTS) as f:
            ours = MARK in f.read()
        if not ours:
            pytest.fail("a svcd package not installed by this test is present: refusing "
                        "to replace it (dpkg --purge svcd to run this test)")
        purge()
    port = free_port()
    makewhatis_db = "/usr/share/man/mandoc.db"
    had_db = os.path.exists(makewhatis_db)
    allow_svcd_in_policy()
    try:
        os.makedirs("/etc/default", exist_ok=True)
        with open(DEFAULTS, "w") as f:
            f.write("%s\nPORT=%d\n" % (MARK, port))
        dpkg("--force-confold", "--force-confdef", "-i", deb)
        yield {"port": port, "deb": deb}
    finally:
        try:
            purge()
        finally:
            restore_policy()
        if not had_db:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(makewhatis_db)


# --------------------------------------------------------------------------------------------
# Static checks.

def lintian(deb):
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.run(["lintian", "--pedantic", "--display-info", "--fail-on", "error",
                            deb], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=err, text=True, timeout=600, env=env())
        err.seek(0)
        return p, err.read()


def test_lintian_reports_no_errors(deb):
    # lintian's exit status: 0 normal, 1 a run-time error (lintian itself
    # failed: nothing was checked), 2 a tag of the --fail-on level (error).
    # First, on a package known to be wrong, that lintian here works as read.
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "root", "DEBIAN"))
        with open(os.path.join(tmp, "root", "DEBIAN", "control"), "w") as f:
            f.write("Package: svcd-lintian-probe\nVersion: 1\nArchitecture: all\n"
                    "Maintainer: probe <probe@example.com>\nDescription: probe\n")
        probe = os.path.join(tmp, "probe.deb")
        run(["dpkg-deb", "--root-owner-group", "--build", os.path.join(tmp, "root"), probe])
        p, _ = lintian(probe)
        assert p.returncode == 2 and re.search(
            r"^E: svcd-lintian-probe: no-copyright-file", p.stdout, re.M), p.stdout
    p, stderr = lintian(deb)
    tags = [l for l in p.stdout.splitlines() if re.match(r"^[EWIPXO]: ", l)]
    print("lintian exited %d: %d tag(s)\n%s\nstderr:\n%s" % (
        p.returncode, len(tags), "\n".join(tags), stderr))
    for kind in "WIPX":
        listed = [l for l in tags if l.startswith(kind + ": ")]
        print("lintian %s: %d\n%s" % (kind, len(listed), "\n".join(listed)))
    assert p.returncode != 1, "lintian failed to run (exit 1):\n" + stderr + p.stdout
    errors = [l for l in tags if l.startswith("E: ")]
    assert not errors, "lintian errors:\n" + "\n".join(errors)
    assert p.returncode == 0, "lintian exited %d without listing an error:\n%s%s" % (
        p.returncode, p.stdout, stderr)
    # Every tag names the package: lintian looked at this .deb, not at nothing.
    assert all(re.match(r"^[EWIPXO]: svcd[: ]", l) for l in tags), tags


def test_daemontools_relation(deb):
    # /usr/bin/svc is daemontools' too (another program): Conflicts, never Replaces.
    fields = run(["dpkg-deb", "-f", deb]).stdout
    conflicts = run(["dpkg-deb", "-f", deb, "Conflicts"]).stdout
    assert re.search(r"(^|,)\s*daemontools\s*(,|$)", conflicts.strip()), fields
    assert not re.search(r"^(Replaces|Breaks|Provides):", fields, re.M), fields
    contents = run(["dpkg-deb", "-c", deb]).stdout
    assert re.search(r" \./usr/bin/svc$", contents, re.M), contents


def test_deb_is_rebuilt_after_any_source_change(deb):
    # `make deb` is up to date right after the build, and out of date once any
    # input changes (make -W pretends a file is new without touching it).
    mk = ["make", "-C", REPO, "-s", "-f", "packaging/packaging.mk", "-q",
          os.path.relpath(deb, REPO)]
    assert run(mk, check=False).returncode == 0, "deb not up to date right after `make deb`"
    probes = ["Makefile", "man/svcd.8", "packaging/svcd.init", "packaging/debian/control"]
    for d in ("common", "master", "worker", "coordinator", "store", "cli"):
        probes += sorted(glob.glob(os.path.join(REPO, d, "*.c")))[:1]
        probes += sorted(glob.glob(os.path.join(REPO, d, "*.h")))[:1]
    for f in probes:
        p = run(mk + ["-W", os.path.relpath(f, REPO)], check=False)
        assert p.returncode == 1, "a change to %s would not rebuild the .deb" % f


def test_build_depends_cover_every_library_the_makefile_links(deb):
    # Each -lNAME of the Makefile's LDLIBS resolves to a lib*.so owned by a
    # -dev package that debian/control's Build-Depends lists (libc's are
    # build-essential). Catches a library added to the build but not to the
    # package, which only breaks on a clean build machine.
    p = run(["make", "-C", REPO, "-pn", "all"], check=False)
    m = re.search(r"^LDLIBS :?= (.*)$", p.stdout, re.M)
    assert m, "no LDLIBS in the Makefile"
    with open(os.path.join(REPO, "packaging/debian/control")) as f:
        control = f.read()
    bd = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S).group(1)
    declared = {re.sub(r"[\s(].*", "", d.strip()) for d in bd.split(",") if d.strip()}
    missing = []
    for lib in re.findall(r"(?:^|\s)-l(\S+)", m.group(1)):
        so = run(["gcc", "-print-file-name=lib%s.so" % lib]).stdout.strip()
        if not os.path.isabs(so):
            continue  # merged into libc (e.g. -lpthread)
        owner = run(["dpkg", "-S", os.path.normpath(so)], check=False).stdout
        pkg_ = owner.split(":")[0].strip() if ":" in owner else "?"
        if pkg_ not in declared and pkg_ not in ("libc6-dev",):
            missing.append("-l%s (%s)" % (lib, pkg_))
    assert not missing, "Build-Depends lacks: %s" % ", ".join(missing)


def test_package_contents_and_user(pkg):
    for path in ("/usr/sbin/svcd", "/usr/bin/svc", INIT):
        assert os.access(path, os.X_OK), path
    for path in (CONF, DEFAULTS, UNIT, "/etc/logrotate.d/svcd") + MAN_PAGES:
        assert os.path.isfile(path), path
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "svcd"]).stdout
    for path in (CONF, DEFAULTS, INIT, "/etc/logrotate.d/svcd"):
        assert path + " " in conffiles, (path, conffiles)
    user = pwd.getpwnam("svcd")
    assert user.pw_uid < 1000 and user.pw_shell.endswith("nologin"), user
    assert grp.getgrgid(user.pw_gid).gr_name == "svcd"
    for d in ("/var/lib/svcd", "/var/log/svcd"):
        st = os.stat(d)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), d
    p = run(["/usr/sbin/svcd", "-t", "-c", CONF])
    assert "configuration OK" in p.stdout
    p = run(["svc", "-c", CONF, "check"])
    assert "configuration OK" in p.stdout
    # The shipped conffile listens on loopback only: every address it lists
    # (block or flow style, comments aside) ...
    addresses = conf_addresses()
    for a in addresses:
        host = a.rsplit(":", 1)[0].strip("[]")
        assert ipaddress.ip_address(host).is_loopback, "listens on %s" % a
    # ... and the daemon it starts binds nothing else (checked in
    # test_postinst_started_the_daemon_on_the_preseeded_port with ss).


def conf_addresses():
    """Every listen address of the installed conffile, block or flow style."""
    with open(CONF) as f:
        text = "\n".join(re.sub(r"(^|\s)#.*$", "", l) for l in f)
    addresses = re.findall(r"(?:^|[\s{,-])address:\s*[\"']?([^\s,}\"']+)", text, re.M)
    assert addresses, text
    return addresses


def test_installed_man_pages_fully_lint_clean(pkg):
    # With a mandoc.db indexing the installed manuals, mandoc resolves every .Xr
    # and must print nothing at all (STYLE level included).
    # mandoc -Tlint does not read gzip: lint uncompressed copies of the pages.
    run(["makewhatis", "/usr/share/man"], timeout=600)
    with tempfile.TemporaryDirectory() as tmp:
        pages = []
        for page in MAN_PAGES:
            with gzip.open(page, "rt") as f:
                text = f.read()
            assert ".Os" in text
            pages.append(os.path.join(tmp, os.path.basename(page)[:-3]))
            with open(pages[-1], "w") as f:
                f.write(text)
        p = run(["mandoc", "-Tlint", "-W", "all"] + pages, check=False)
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout


def test_systemd_unit_verifies(pkg):
    # Offline: systemd-analyze loads the unit files without a running systemd.
    for unit in (UNIT, os.path.join(REPO, "packaging/svcd.service")):
        p = run(["systemd-analyze", "verify", unit], check=False, timeout=120)
        assert p.returncode == 0 and p.stdout.strip() == "", p.stdout
    with open(UNIT) as f:
        unit = f.read()
    for line in ("Type=notify", "ExecStart=/usr/sbin/svcd -c /etc/svcd/svcd.yaml",
                 "KillMode=mixed", "WatchdogSec=", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "RuntimeDirectory=svcd", "StateDirectory=svcd",
                 "LogsDirectory=svcd", "ExecReload="):
        assert line in unit, line


def unit_settings(path=UNIT):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
    return settings


def read_env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


class NotifySocket:
    """The systemd side of sd_notify(3): a datagram socket svcd reports to."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.messages = []

    def expect(self, field, timeout):
        """Wait for a datagram with the line `field` (e.g. READY=1)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                msg = self.sock.recv(65536).decode()
                self.messages.append(msg)
                if field in msg.split("\n"):
                    return msg
        pytest.fail("no %s from svcd within %ss; got %r" % (field, timeout, self.messages))

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------------------------
# The installed daemon.

def test_postinst_started_the_daemon_on_the_preseeded_port(pkg):
    port = pkg["port"]
    wait_for(lambda: serving(port), 20, "svcd started by postinst on port %d" % port)
    assert master_pid() > 0
    # Started as root by the init script, the master became svcd after binding (keeping
    # only CAP_NET_BIND_SERVICE) and so did every child (keeping nothing).
    uid = pwd.getpwnam("svcd").pw_uid
    kids = [pid for pid in svcd_processes() if pid != master_pid()]
    assert kids and all(os.stat("/proc/%d" % pid).st_uid == uid for pid in kids)
    assert os.stat("/proc/%d" % master_pid()).st_uid == uid

    def cap_eff(pid):
        with open("/proc/%d/status" % pid) as f:
            return int(next(ln for ln in f if ln.startswith("CapEff:")).split()[1], 16)
    assert cap_eff(master_pid()) == 1 << 10, hex(cap_eff(master_pid()))
    assert all(cap_eff(pid) == 0 for pid in kids)
    # Every socket svcd listens on is on loopback, one per configured address.
    pids = set(svcd_processes())
    out = run(["ss", "-Hltnup"]).stdout
    bound = set()
    for line in out.splitlines():
        owners = {int(x) for x in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            local = line.split()[4]
            bound.add(local)
    print("svcd listens on %s" % sorted(bound))
    assert bound, out
    for local in bound:
        host = local.rsplit(":", 1)[0].strip("[]").split("%")[0]
        assert ipaddress.ip_address(host).is_loopback, "svcd listens on %s" % local
    assert len(bound) == len(conf_addresses()), (bound, conf_addresses())


def test_daemon_detaches_from_the_callers_output(pkg):
    # `svcd -d` returns at READY; the daemon (master and children) must not keep
    # the caller's stdout/stderr, or `dpkg -i ... | tee`, `svc start | cat`
    # and the init script called from a pipe wait until svcd stops.
    port = pkg["port"]
    run([INIT, "stop"])
    try:
        rc, eof = returns_eof([INIT, "start"])
        assert rc == 0 and serving(port)
        assert eof, "svcd started by the init script holds the caller's stdout/stderr open"
        run([INIT, "stop"])
        rc, eof = returns_eof(["svc", "-c", CONF, "start"], env(PORT=port))
        assert rc == 0 and serving(port)
        assert eof, "svcd started by `svc start` holds the caller's stdout/stderr open"
    finally:
        run([INIT, "stop"], check=False)


def test_unit_commands_run_as_systemd_would_run_them(pkg):
    # No systemd runs here, so play its part for the shipped unit: its User=
    # and Group=, its EnvironmentFile=, the RuntimeDirectory= it would create,
    # NOTIFY_SOCKET and WATCHDOG_USEC (from WatchdogSec=), its ExecStart= in
    # the foreground, its ExecReload= as that user, KillSignal= to stop.
    port = pkg["port"]
    unit = unit_settings()
    assert unit["Type"] == ["notify"]
    user, group = unit["User"][0], unit["Group"][0]
    assert float(unit["WatchdogSec"][0].rstrip("s")) > 0
    stop_s = float(unit["TimeoutStopSec"][0].rstrip("s"))
    p = run(["/usr/sbin/svcd", "-t", "-c", CONF])  # the installed conffile is valid
    m = re.search(r"^\s*shutdown:\s*(\d+)s\b", open(CONF).read(), re.M)
    assert m and stop_s >= int(m.group(1)) + 5, "TimeoutStopSec < timeouts.shutdown + 5s"
    run([INIT, "stop"])
    run(["install", "-d", "-o", user, "-g", group, "-m", unit["RuntimeDirectoryMode"][0],
         "/run/" + unit["RuntimeDirectory"][0]])
    as_user = ["setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups",
               "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
               "--no-new-privs", "--"]
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        notify = NotifySocket(tmp)
        e = env(**read_env_file(DEFAULTS))
        # A shorter watchdog than WatchdogSec= only to keep the test quick.
        e.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
        log = open(os.path.join(tmp, "stderr"), "w+")
        proc = subprocess.Popen(as_user + unit["ExecStart"][0].split(), env=e,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            ready = notify.expect("READY=1", 30)
            assert "MAINPID=%d" % proc.pid in ready.split("\n") or "MAINPID" not in ready
            assert serving(port)
            assert os.stat("/proc/%d" % proc.pid).st_uid == pwd.getpwnam(user).pw_uid
            assert master_pid() == proc.pid
            notify.expect("WATCHDOG=1", 3)  # sent every WATCHDOG_USEC/2
            before = worker_pids()
            # ExecReload=, run as the unit's user, like systemd does.
            reload_cmd = unit["ExecReload"][0].split()
            e_reload = dict(e, MAINPID=str(proc.pid))
            reload_cmd = [a.replace("$MAINPID", str(proc.pid)) for a in reload_cmd]
            run(as_user + reload_cmd, env=e_reload)
            notify.expect("RELOADING=1", 10)
            notify.expect("READY=1", 30)
            wait_for(lambda: worker_pids() and not set(worker_pids()) & set(before), 30,
                     "a new worker generation after ExecReload")
            # KillSignal= to the main process (KillMode=mixed): graceful drain.
            sig = getattr(signal, unit["KillSignal"][0])
            proc.send_signal(sig)
            notify.expect("STOPPING=1", 10)
            assert proc.wait(timeout=stop_s) == 0
            assert not svcd_processes()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            notify.close()
            log.seek(0)
            print("svcd (as %s) output:\n%s" % (user, log.read()))
            log.close()


def test_init_script_lifecycle(pkg):
    port = pkg["port"]
    run([INIT, "stop"])
    wait_for(lambda: not svcd_processes(), 20, "every svcd process gone after stop")
    assert run([INIT, "status"], check=False).returncode == 3
    assert not os.path.exists(PIDFILE)
    assert run([INIT, "stop"], check=False).returncode == 0  # stopping a stopped service

    run([INIT, "start"])
    assert serving(port)  # start returns only once svcd is ready
    pid = master_pid()
    assert pid > 0
    assert run([INIT, "start"], check=False).returncode == 0  # already running
    assert master_pid() == pid
    p = run([INIT, "status"], check=False)
    assert p.returncode == 0 and str(pid) in p.stdout

    before = worker_pids()
    assert before
    run([INIT, "reload"])
    wait_for(lambda: worker_pids() and not set(worker_pids()) & set(before), 30,
             "a new worker generation after reload")
    assert master_pid() == pid and serving(port)

    run([INIT, "force-reload"])
    assert master_pid() == pid and serving(port)

    run([INIT, "restart"])
    assert serving(port)
    assert master_pid() not in (0, pid)

    assert run([INIT, "frobnicate"], check=False).returncode == 2

    run([INIT, "stop"])
    wait_for(lambda: not svcd_processes(), 20, "every svcd process gone after stop")
    assert run([INIT, "status"], check=False).returncode == 3
    assert run([INIT, "reload"], check=False).returncode == 7
    assert not serving(port)


def test_init_script_reports_an_invalid_configuration(pkg):
    port = pkg["port"]
    with open(CONF) as f:
        good = f.read()
    try:
        run([INIT, "start"])
        pid = master_pid()
        with open(CONF, "w") as f:
            f.write(good.replace("workers: auto", "workers: auto\nwrokers: 2"))
        p = run([INIT, "reload"], check=False)
        assert p.returncode != 0 and "wrokers" in p.stdout, p.stdout
        assert master_pid() == pid and serving(port)  # still running, old config
        run([INIT, "stop"])
        p = run([INIT, "start"], check=False)
        assert p.returncode == 6 and "wrokers" in p.stdout, p.stdout
        assert not svcd_processes()
    finally:
        with open(CONF, "w") as f:
            f.write(good)
        run([INIT, "stop"], check=False)


def as_nobody(cmd):
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] + cmd


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_init_script_status_codes(pkg):
    port = pkg["port"]
    run([INIT, "stop"])
    assert run([INIT, "status"], check=False).returncode == 3
    try:
        # 1: a pidfile whose process is dead.
        os.makedirs(os.path.dirname(PIDFILE), exist_ok=True)
        with open(PIDFILE, "w") as f:
            f.write("%d\n" % dead_pid())
        p = run([INIT, "status"], check=False)
        assert p.returncode == 1, p.stdout
        run([INIT, "start"])  # the stale pidfile is taken over
        assert serving(port) and master_pid() > 0
        # 4: a user who cannot see the pidfile or the control socket cannot tell.
        p = run(as_nobody([INIT, "status"]), check=False)
        assert p.returncode == 4, p.stdout
        assert run([INIT, "status"], check=False).returncode == 0
        # 1: svcd killed outright leaves its pidfile behind.
        master = master_pid()
        for pid in [master] + svcd_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not svcd_processes(), 20, "every svcd process gone after SIGKILL")
        # Until its parent (init) reaps it, the master is a zombie that still
        # has a /proc entry named svcd, which start-stop-daemon counts as running.
        wait_for(lambda: not os.path.exists("/proc/%d" % master), 30, "the master reaped")
        assert os.path.exists(PIDFILE)
        p = run([INIT, "status"], check=False)
        assert p.returncode == 1, p.stdout
        # stop succeeds on a dead service and clears the stale pidfile.
        assert run([INIT, "stop"], check=False).returncode == 0
        assert not os.path.exists(PIDFILE)
        assert run([INIT, "status"], check=False).returncode == 3
        # Actions other than status need root: 4.
        assert run(as_nobody([INIT, "start"]), check=False).returncode == 4
        assert not svcd_processes()
    finally:
        run([INIT, "stop"], check=False)


def test_init_script_try_restart(pkg):
    port = pkg["port"]
    run([INIT, "stop"])
    assert run([INIT, "try-restart"], check=False).returncode == 0
    assert not svcd_processes() and not serving(port)  # stopped stays stopped
    run([INIT, "start"])
    pid = master_pid()
    try:
        assert run([INIT, "try-restart"], check=False).returncode == 0
        assert serving(port) and master_pid() not in (0, pid)
    finally:
        run([INIT, "stop"], check=False)


def test_init_script_restart_keeps_the_daemon_when_the_config_is_invalid(pkg):
    port = pkg["port"]
    with open(CONF) as f:
        good = f.read()
    run([INIT, "start"])
    pid = master_pid()
    try:
        with open(CONF, "w") as f:
            f.write(good.replace("workers: auto", "workers: auto\nwrokers: 2"))
        for action in ("restart", "try-restart"):
            p = run([INIT, action], check=False)
            assert p.returncode == 6 and "wrokers" in p.stdout, p.stdout
            assert master_pid() == pid and serving(port), "%s stopped svcd" % action
    finally:
        with open(CONF, "w") as f:
            f.write(good)
        run([INIT, "stop"], check=False)


def test_init_script_stop_waits_for_the_configured_drain(pkg):
    # The init script stops through `svc stop`, which waits timeouts.shutdown
    # + 5s from the configuration, then kills a master that has not exited.
    # A frozen master (SIGSTOP) never drains: with shutdown: 20s, stop must
    # wait at least 20 + 5s before it kills it (a fixed 15s retry would kill
    # it sooner), and then exit 0.
    with open(CONF) as f:
        good = f.read()
    assert "shutdown: 10s" in good
    try:
        with open(CONF, "w") as f:
            f.write(good.replace("shutdown: 10s", "shutdown: 20s"))
        run([INIT, "start"])
        pid = master_pid()
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        p = run([INIT, "stop"], check=False, timeout=180)
        took = time.monotonic() - t0
        print("stop of a frozen master took %.1fs" % took)
        assert p.returncode == 0, p.stdout
        assert not os.path.exists("/proc/%d" % pid) or _state(pid) == "Z"
        assert took >= 25, "stop killed svcd before timeouts.shutdown + 5s"
        wait_for(lambda: not svcd_processes(), 30, "children gone after the master was killed")
    finally:
        with open(CONF, "w") as f:
            f.write(good)
        for pid in svcd_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run([INIT, "stop"], check=False)


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_svc_lifecycle(pkg):
    port = pkg["port"]
    e = env(PORT=port)
    assert run(["svc", "-c", CONF, "status"], check=False, env=e).returncode == 3
    run(["svc", "-c", CONF, "start"], env=e)
    assert serving(port)
    pid = master_pid()
    st = status_json()
    assert st["master"]["pid"] == pid and st["master"]["version"]
    assert {"role", "pid", "state", "uptime", "restarts", "last_exit", "rss", "cpu",
            "connections"} <= set(st["children"][0])
    p = run(["svc", "-c", CONF, "status"], env=e)
    assert str(pid) in p.stdout
    before = worker_pids()
    run(["svc", "-c", CONF, "reload"], env=e)
    wait_for(lambda: worker_pids() and not set(worker_pids()) & set(before), 30,
             "a new worker generation after svc reload")
    assert master_pid() == pid and serving(port)
    p = run(["svc", "-c", CONF, "logs", "-n", "5"], env=e)
    assert len(p.stdout.strip().splitlines()) == 5
    # The init script sees the daemon svc started, and the other way round.
    assert run([INIT, "status"], check=False).returncode == 0
    run(["svc", "-c", CONF, "stop"], env=e)
    assert not svcd_processes() and not serving(port)
    assert run(["svc", "-c", CONF, "status"], check=False, env=e).returncode == 3
    assert run([INIT, "status"], check=False).returncode == 3


def logrotate(tmp):
    return run(["logrotate", "-v", "-f", "-s", os.path.join(tmp, "state"),
                "/etc/logrotate.d/svcd"], check=False)


def test_logrotate_with_the_shipped_file(pkg):
    port = pkg["port"]
    run([INIT, "start"])
    try:
        poke(port, "/before-rotation")
        wait_for(lambda: "before-rotation" in open(LOG).read(), 10, "access line logged")
        with tempfile.TemporaryDirectory() as tmp:
            assert logrotate(tmp).returncode == 0
        assert os.path.exists(LOG + ".1"), os.listdir("/var/log/svcd")
        st = os.stat(LOG)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (
            pwd.getpwnam("svcd").pw_uid, grp.getgrnam("adm").gr_gid, 0o640)
        assert "before-rotation" in open(LOG + ".1").read()
        # postrotate's SIGUSR1 reached the master: it says so in the new file,
        # with no reload or restart in between.
        pid = master_pid()
        wait_for(lambda: "log file reopened" in open(LOG).read(), 10,
                 "the master's 'log file reopened' line in the new log file")
        assert "log file reopened" not in open(LOG + ".1").read()
        # ... and the workers write their access lines there too.
        poke(port, "/after-rotation")
        wait_for(lambda: "after-rotation" in open(LOG).read(), 10,
                 "the access line in the new log file")
        assert "after-rotation" not in open(LOG + ".1").read()
        assert master_pid() == pid and serving(port)
        # svcd not running: postrotate has nothing to signal and succeeds.
        run([INIT, "stop"])
        poke_log = open(LOG).read()
        assert poke_log
        with tempfile.TemporaryDirectory() as tmp:
            p = logrotate(tmp)
        assert p.returncode == 0 and "error:" not in p.stdout, p.stdout
    finally:
        run([INIT, "stop"], check=False)


def test_reinstall_keeps_a_modified_conffile_and_restarts(pkg):
    port = pkg["port"]
    run([INIT, "start"])
    pid = master_pid()
    with open(CONF) as f:
        text = f.read()
    edited = text.replace("level: info ", "level: debug") + "# edited by the administrator\n"
    with open(CONF, "w") as f:
        f.write(edited)
    dpkg("-i", pkg["deb"])
    with open(CONF) as f:
        assert f.read() == edited
    with open(DEFAULTS) as f:
        assert "PORT=%d" % port in f.read()
    # postinst restarted the daemon after the upgrade, with the kept configuration.
    wait_for(lambda: serving(port), 20, "svcd restarted by postinst")
    assert master_pid() not in (0, pid)
    run(["svcd", "-t", "-c", CONF])


def test_remove_keeps_user_data_and_conffiles(pkg):
    port = pkg["port"]
    if not master_pid():
        run([INIT, "start"])
    assert serving(port)
    with open(CONF) as f:
        conf = f.read()
    marker = "/var/lib/svcd/kept-by-remove"
    with open(marker, "w") as f:
        f.write("data\n")
    dpkg("-r", "svcd")
    status = run(["dpkg-query", "-W", "-f=${Status}", "svcd"]).stdout
    assert status == "deinstall ok config-files", status
    assert not svcd_processes() and not serving(port)
    assert pwd.getpwnam("svcd") and grp.getgrnam("svcd")
    assert os.path.isfile(marker) and os.path.isdir("/var/log/svcd")
    with open(CONF) as f:
        assert f.read() == conf
    for path in (DEFAULTS, INIT, "/etc/logrotate.d/svcd"):
        assert os.path.isfile(path), path
    for path in ("/usr/sbin/svcd", "/usr/bin/svc"):
        assert not os.path.exists(path), path
    # The init script, a conffile, outlives the binaries (dh_installinit's
    # postrm takes its x bit away, so no rc link runs it): run by hand, stop
    # is a success and status says not running.
    assert not os.access(INIT, os.X_OK)
    assert run(["sh", INIT, "stop"], check=False).returncode == 0
    assert run(["sh", INIT, "status"], check=False).returncode == 3
    assert run(["sh", INIT, "start"], check=False).returncode == 5  # not installed
    # Installing again brings the daemon back on the kept configuration.
    dpkg("-i", pkg["deb"])
    wait_for(lambda: serving(port), 20, "svcd started by postinst after reinstall")
    assert os.access(INIT, os.X_OK)
    assert os.path.isfile(marker)
    os.unlink(marker)


def test_purge_removes_everything_and_stops_the_daemon(pkg):
    port = pkg["port"]
    if not master_pid():
        run([INIT, "start"])
    assert serving(port)
    uid = pwd.getpwnam("svcd").pw_uid
    dpkg("--purge", "svcd")
    assert not installed("svcd")
    assert not svcd_processes() and not serving(port)
    left = [d for d in os.listdir("/proc") if d.isdigit() and
            os.path.exists("/proc/" + d) and _uid_of(d) == uid]
    assert not left, "processes of the svcd user left: %s" % left
    with pytest.raises(KeyError):
        pwd.getpwnam("svcd")
    with pytest.raises(KeyError):
        grp.getgrnam("svcd")
    for path in ("/etc/svcd", DEFAULTS, INIT, "/var/lib/svcd", "/var/log/svcd", "/run/svcd",
                 "/usr/sbin/svcd", "/usr/bin/svc", UNIT):
        assert not os.path.exists(path), path
    assert not [f for f in os.listdir("/etc/rc2.d") if f.endswith("svcd")]


def _uid_of(pid):
    try:
        return os.stat("/proc/" + pid).st_uid
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# Not root: rerun this file under `sudo -n` once and report each test's result
# from that run, or fail every test saying what is missing.

_ROOT_RUN = {}


def _root_results():
    if "results" in _ROOT_RUN:
        return _ROOT_RUN["results"]
    sudo = shutil.which("sudo")
    ok = sudo and subprocess.run([sudo, "-n", "true"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).returncode == 0
    if not ok:
        _ROOT_RUN["results"] = None
        return None
    import xml.etree.ElementTree as ET
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        os.chmod(tmp, 0o777)
        keep = ["%s=%s" % (k, v) for k, v in os.environ.items()
                if k in ("CI", "SVCD_BUILD", "PATH", "SLOW")]
        p = run([sudo, "-n", "env"] + keep + [sys.executable, "-m", "pytest", "-q",
                "-p", "no:cacheprovider", "--junitxml=" + xml, os.path.abspath(__file__)],
                check=False, timeout=7200, env=os.environ.copy())
        results = {}
        if os.path.exists(xml):
            for case in ET.parse(xml).getroot().iter("testcase"):
                bad = case.find("failure")
                if bad is None:
                    bad = case.find("error")
                if bad is None and case.find("skipped") is not None:
                    bad = case.find("skipped")
                results[case.get("name")] = None if bad is None else (
                    (bad.get("message") or "") + "\n" + (bad.text or ""))
        results["__output__"] = p.stdout
    _ROOT_RUN["results"] = results
    return results


def _run_as_root(name):
    def proxy():
        results = _root_results()
        if results is None:
            pytest.fail("test_packaging.py installs a Debian package and needs root: run it "
                        "as root, or as a user allowed passwordless `sudo -n` (uid %d is "
                        "neither)" % os.geteuid())
        if name not in results:
            pytest.fail("%s did not run under sudo:\n%s" % (name, results["__output__"][-4000:]))
        if results[name] is not None:
            pytest.fail("%s failed under sudo:\n%s" % (name, results[name]))
    proxy.__name__ = name
    proxy.__doc__ = "%s, run as root through sudo -n" % name
    return proxy


if os.geteuid() != 0:
    for _name in [n for n in list(globals()) if n.startswith("test_")]:
        globals()[_name] = _run_as_root(_name)
