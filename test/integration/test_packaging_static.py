"""
Packaging checks that need no root and no installed package: the manual
pages against the source, `make install`, the systemd unit against the shipped
configuration, and packaging.mk's inputs against the Makefile.

The coverage tests derive what must be documented from the source itself, so
a flag, environment variable, exit status, configuration key or file added to
the code without its manual entry fails here:

  svcd(8)       getopt() string of master/main.c, EXIT_* of master/main.c,
                the master's ev_signal_init() signals, every getenv() name of
                the daemon's sources (directly or through a helper that passes
                its argument to getenv), the config environment table, the
                files named in the source and the shipped configuration's paths.
  svc(1)        every "-x"/"--xx" compared with argv[i] in cli/svc.c, every
                command compared with cmd, EXIT_* and _exit() codes, getenv()
                names of cli/.
  svcd.yaml(5)  every key of the directive tables of common/config.c, each
                in its own section (storage.connect.attempts must be listed
                under storage, as connect.attempts), and nothing else.

Test hooks (TEST_HOOKS) are getenv() names that exist for the test suite
only; they must still be documented, in the "Testing hooks" subsection of
svcd(8)'s ENVIRONMENT.
"""
import glob
import os
import re
import subprocess
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DAEMON_DIRS = ("common", "master", "worker", "coordinator", "store")
CLI_DIRS = ("common", "cli")
TEST_HOOKS = {"SVCD_STORE_FAULT", "SVCD_SIO_PING_INTERVAL", "SVCD_SIO_PING_TIMEOUT",
              "SVCD_TEST_SPIN", "SVCD_STORE_FAULT_MS", "SVCD_TEST_JOB_LEASE_MS"}


def src(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return f.read()


def c_sources(dirs):
    out = {}
    for d in dirs:
        for p in sorted(glob.glob(os.path.join(REPO, d, "*.[ch]"))):
            with open(p) as f:
                out[os.path.relpath(p, REPO)] = strip_comments(f.read())
    assert out, dirs
    return out


C_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)


def strip_comments(text):
    """C source without its comments (string and character literals kept intact)."""
    return C_TOKENS.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def run(cmd, **kw):
    # A make of ours must not inherit the caller's (`make SAN=1 integration`).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600, env=env, **kw)
    print("$ %s -> %d\n%s" % (" ".join(cmd), p.returncode, p.stdout.rstrip()))
    return p


# --------------------------------------------------------------------------------------------
# A small mdoc reader: sections, subsections, and the macro arguments of lines.

def page_lines(page):
    with open(os.path.join(REPO, "man", page)) as f:
        return [l.rstrip("\n") for l in f]


def section(page, name, sub=None):
    """Lines of `.Sh name` (and of `.Ss sub` inside it, when given)."""
    lines, inside, insub = [], False, sub is None
    for l in page_lines(page):
        if l.startswith(".Sh "):
            inside = l[4:].strip() == name
            insub = sub is None
            continue
        if inside and l.startswith(".Ss "):
            insub = sub is None or l[4:].strip() == sub
            if sub is not None:
                continue
        if inside and insub:
            lines.append(l)
    assert lines, "%s has no section %s%s" % (page, name, " / " + sub if sub else "")
    return lines


def macro_args(line, macro):
    """Arguments of every `macro` on an mdoc line, up to the next macro."""
    parts = line.split()
    if parts and parts[0].startswith("."):
        parts[0] = parts[0][1:]
    out = []
    for i, w in enumerate(parts):
        if w != macro:
            continue
        for arg in parts[i + 1:]:
            if re.fullmatch(r"[A-Z][a-z]{1,2}", arg):
                break
            if arg not in (",", "|", ".", ";", ":", "(", ")"):
                out.append(arg.rstrip(",.;:"))
    return out


def words(lines, macro):
    return {a for l in lines for a in macro_args(l, macro)}


def items(lines, macro):
    """Arguments of `macro` on `.It` lines only (the entries of tag lists)."""
    return {a for l in lines if l.startswith(".It ") for a in macro_args(l, macro)}


def flags_of(lines):
    """Every flag named by Fl: `Fl dhtv` gives d, h, t, v; `Fl -json` gives --json."""
    out = set()
    for w in words(lines, "Fl"):
        if w.startswith("-"):
            out.add("-" + w)
        else:
            out.update("-" + ch for ch in w)
    return out


# --------------------------------------------------------------------------------------------
# What the source defines.

def getenv_names(dirs):
    """Names passed to getenv(), directly or through a helper function whose
    parameter it passes to getenv (env_seconds("SVCD_SIO_PING_INTERVAL", ...))."""
    names, helpers = set(), set()
    files = c_sources(dirs)
    for text in files.values():
        names.update(re.findall(r'\bgetenv\(\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\)', text))
        for m in re.finditer(r"\b(\w+)\s*\(([^;{)]*)\)\s*\{", text):
            params = [p.split()[-1].lstrip("*") for p in m.group(2).split(",") if p.split()]
            body_end = text.find("\n}", m.end())
            body = text[m.end():body_end]
            for p in params:
                if re.search(r"\bgetenv\(\s*%s\s*\)" % re.escape(p), body):
                    helpers.add(m.group(1))
    for h in helpers:
        for text in files.values():
            names.update(re.findall(r'\b%s\(\s*"([A-Za-z_][A-Za-z0-9_]*)"' % h, text))
    # Each getenv( call is accounted for: a literal, or a helper's parameter.
    for path, text in files.items():
        for m in re.finditer(r"\bgetenv\(\s*([^)]*)\)", text):
            arg = m.group(1).strip()
            assert arg.startswith('"') or re.fullmatch(r"\w+", arg), (path, arg)
    return names


def config_env_table():
    text = "".join(src(os.path.relpath(p, REPO))
                   for p in sorted(glob.glob(os.path.join(REPO, "common", "config*.c"))))
    names = set(re.findall(r'^\s*\{"([A-Z_][A-Z0-9_]*)", apply_\w+', text, re.M))
    assert {"PORT", "NODE_ENV"} <= names, names
    return names


def config_key_paths():
    """Every key path of common/config.c's directive tables, from root_table down:
    {("storage",), ("storage", "connect"), ("storage", "connect", "attempts"), ...}."""
    text = "\n".join(strip_comments(src(os.path.relpath(p, REPO)))
                     for p in sorted(glob.glob(os.path.join(REPO, "common", "config*.c"))))
    tables = {}
    for m in re.finditer(r"static const struct directive (\w+)\[\] = \{(.*?)\n\};", text, re.S):
        entries = []
        for e in re.finditer(r'^\s*\{"(\w+)",\s*(set_\w+),(.*?)\},?\s*$', m.group(2),
                             re.M | re.S):
            refs = re.findall(r"&?(\w+_(?:table|spec))\b", e.group(3))
            entries.append((e.group(1), refs[0] if refs else None))
        tables[m.group(1)] = entries
    specs = {m.group(1): m.group(2) for m in re.finditer(
        r"static const struct list_spec (\w+) = \{\s*(\w+_table)", text)}
    assert "root_table" in tables and specs, (tables.keys(), specs)
    paths = set()

    def walk(table, prefix, seen):
        assert table in tables, table
        for name, ref in tables[table]:
            path = prefix + (name,)
            paths.add(path)
            if ref:
                sub = specs.get(ref, ref)
                if sub in tables and sub not in seen:
                    walk(sub, path, seen | {sub})

    walk("root_table", (), {"root_table"})
    assert ("storage", "connect", "attempts") in paths and ("listen", "address") in paths, paths
    return paths


def documented_key_paths():
    """Key paths of svcd.yaml(5)'s KEYS section, from its nested tag lists:
    `.It Cm connect.attempts` inside the list of `.It Cm storage` is
    storage.connect.attempts; `.It Cm project , owner` documents both."""
    stack, current, paths = [], [()], set()
    for l in section("svcd.yaml.5", "KEYS"):
        if l.startswith(".Bl"):
            stack.append(current)
        elif l.startswith(".El"):
            current = stack.pop()
        elif l.startswith(".It"):
            parent = stack[-1] if stack else [()]
            names = macro_args(l, "Cm") if l.split()[1:2] == ["Cm"] else []
            current = [p + tuple(n.split(".")) for p in parent for n in names]
            paths.update(current)
    assert not stack, "unbalanced .Bl/.El in KEYS"
    out = set()
    for p in paths:  # storage.connect.attempts documents storage.connect too
        out.update(p[:i] for i in range(1, len(p) + 1))
    return out


def exit_codes(text):
    return {int(n) for n in re.findall(r"#define EXIT_\w+\s+(\d+)", text)} | \
        {int(n) for n in re.findall(r"\b_?exit\(\s*(\d+)\s*\)", text)} | \
        {int(n) for n in re.findall(r"\breturn (\d+);", text) if int(n) < 256}


def documented_exit_codes(page):
    return {int(a) for l in section(page, "EXIT STATUS") if l.startswith(".It ")
            for a in l.split()[1:2] if a.isdigit()}


def shipped_config():
    """The shipped packaging/svcd.yaml as flat dotted keys (block style, which is
    what the file uses): {"run_dir": "/run/svcd", "storage.path": ..., ...}."""
    out, stack = {}, []
    for raw in src("packaging", "svcd.yaml").splitlines():
        line = re.sub(r"\s+#.*$", "", raw)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        m = re.match(r"\s*(?:- )?([A-Za-z_]+):\s*(.*)$", line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [m.group(1)])
        if m.group(2):
            out[key] = m.group(2).strip()
        else:
            stack.append((indent, m.group(1)))
    for k in ("run_dir", "storage.path", "log.file", "timeouts.shutdown", "listen.address"):
        assert k in out, (k, out)
    return out


def seconds(duration):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|min)?", duration.strip())
    assert m, duration
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60,
                                "h": 3600}[m.group(2)]


def unit_settings():
    settings = {}
    for line in src("packaging", "svcd.service").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    return settings


def make_var(name, makefile="Makefile"):
    p = run(["make", "-C", REPO, "-s", "-f", makefile, "--eval",
             "print-var: ; @echo $(%s)" % name, "print-var"])
    assert p.returncode == 0, p.stdout
    return p.stdout.split()


# --------------------------------------------------------------------------------------------
# Tests.

def test_man_pages_lint_clean_in_tree():
    p = run(["make", "-C", REPO, "-s", "-f", "packaging/packaging.mk", "man-lint"])
    assert p.returncode == 0 and "man-lint: clean" in p.stdout, p.stdout
    # man-lint itself must catch a defect: a page with an unknown macro.
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.8")
        with open(os.path.join(REPO, "man", "svcd.8")) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace(".Sh DESCRIPTION", ".Sh DESCRIPTION\n.Zz oops", 1))
        p = run(["make", "-C", REPO, "-s", "-f", "packaging/packaging.mk", "man-lint",
                 "MAN_PAGES=" + bad])
        assert p.returncode != 0 and "Zz" in p.stdout, p.stdout


def test_make_install_installs_binaries_and_man_pages():
    with tempfile.TemporaryDirectory() as dest:
        p = run(["make", "-C", REPO, "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr"])
        assert p.returncode == 0, p.stdout
        files = {}
        for root, _, names in os.walk(dest):
            for n in names:
                path = os.path.join(root, n)
                files["/" + os.path.relpath(path, dest)] = os.stat(path).st_mode & 0o777
        print("installed:\n" + "\n".join("%o %s" % (m, f) for f, m in sorted(files.items())))
        assert files == {
            "/usr/sbin/svcd": 0o755, "/usr/bin/svc": 0o755,
            "/usr/share/man/man8/svcd.8": 0o644, "/usr/share/man/man1/svc.1": 0o644,
            "/usr/share/man/man5/svcd.yaml.5": 0o644}, files
        for page in ("man8/svcd.8", "man1/svc.1", "man5/svcd.yaml.5"):
            with open(os.path.join(dest, "usr/share/man", page)) as f, \
                    open(os.path.join(REPO, "man", os.path.basename(page))) as g:
                assert f.read() == g.read(), page


def test_svcd_page_documents_every_flag_signal_and_exit_status():
    main = strip_comments(src("master", "main.c"))
    optstring = re.search(r'getopt\(argc, argv, "([^"]+)"\)', main).group(1)
    flags = {"-" + ch for ch in optstring.replace(":", "")}
    assert {"-c", "-t", "-d"} <= flags
    options = section("svcd.8", "DESCRIPTION")
    listed = {"-" + a for a in items(options, "Fl")}
    assert flags == listed, "svcd.8 options %s, getopt %s" % (sorted(listed), sorted(flags))
    missing = flags - flags_of(section("svcd.8", "SYNOPSIS"))
    assert not missing, "flags missing from the svcd.8 SYNOPSIS: %s" % sorted(missing)

    master = "".join(c_sources(("master",)).values())
    sigs = set(re.findall(r"ev_signal_init\([^,]+,[^,]+,\s*(SIG[A-Z0-9]+)\)", master))
    assert {"SIGTERM", "SIGHUP", "SIGUSR1"} <= sigs
    documented = items(section("svcd.8", "SIGNALS"), "Dv")
    assert sigs <= documented, "signals missing from svcd.8: %s" % sorted(sigs - documented)

    codes = exit_codes(main)
    assert {0, 1, 64, 78} <= codes
    documented = documented_exit_codes("svcd.8")
    assert codes <= documented, "exit statuses missing from svcd.8: %s" % sorted(
        codes - documented)


def test_svc_page_documents_every_flag_command_and_exit_status():
    svc = strip_comments(src("cli", "svc.c"))
    flags = set(re.findall(r'strcmp\(argv\[i\], "(-[-a-z]+)"\) == 0', svc))
    assert {"-c", "-h", "--help", "-v", "--version", "--json", "-f", "-n"} <= flags, flags
    page = page_lines("svc.1")
    documented = flags_of(page)
    assert flags <= documented, "flags missing from svc.1: %s" % sorted(flags - documented)
    synopsis = flags_of(section("svc.1", "SYNOPSIS"))
    assert flags <= synopsis, "flags missing from the svc.1 SYNOPSIS: %s" % sorted(
        flags - synopsis)

    commands = set(re.findall(r'strcmp\(cmd, "([a-z]+)"\) == 0', svc))
    assert {"start", "stop", "status", "reload", "restart", "logs", "check"} <= commands
    listed = items(section("svc.1", "DESCRIPTION"), "Cm")
    assert commands <= listed, "commands missing from svc.1: %s" % sorted(commands - listed)
    assert commands <= words(section("svc.1", "SYNOPSIS"), "Cm")

    codes = exit_codes(svc) | exit_codes(strip_comments(src("cli", "ctl.c")))
    assert {0, 1, 3, 64, 78, 127} <= codes, codes
    documented = documented_exit_codes("svc.1")
    assert codes <= documented, "exit statuses missing from svc.1: %s" % sorted(
        codes - documented)


def test_every_environment_variable_is_documented():
    files = c_sources(DAEMON_DIRS)
    daemon_text = "".join(files.values())
    daemon = getenv_names(DAEMON_DIRS) | config_env_table()
    # Read by libsystemd on svcd's behalf (sd_notify(3), sd_watchdog_enabled(3)).
    if re.search(r"\bsd_notifyf?\(", daemon_text):
        daemon.add("NOTIFY_SOCKET")
    if re.search(r"\bsd_watchdog_enabled\(", daemon_text):
        daemon |= {"WATCHDOG_USEC", "WATCHDOG_PID"}
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "SVCD_STORE_FAULT",
            "SVCD_SIO_PING_INTERVAL", "PORT"} <= daemon, daemon
    assert TEST_HOOKS <= daemon, "stale TEST_HOOKS: %s" % sorted(TEST_HOOKS - daemon)

    env_section = section("svcd.8", "ENVIRONMENT")
    first_ss = next(i for i, l in enumerate(env_section) if l.startswith(".Ss "))
    regular = items(env_section[:first_ss], "Ev")
    missing = (daemon - TEST_HOOKS) - regular
    assert not missing, "environment missing from svcd.8 ENVIRONMENT: %s" % sorted(missing)
    assert not (regular & TEST_HOOKS), "test hooks listed as regular environment"
    stale = regular - daemon
    assert not stale, "svcd.8 documents environment svcd does not read: %s" % sorted(stale)
    hooks = items(section("svcd.8", "ENVIRONMENT", "Testing hooks"), "Ev")
    assert TEST_HOOKS == hooks, "svcd.8 'Testing hooks' lists %s, the source has %s" % (
        sorted(hooks), sorted(TEST_HOOKS))

    # What the master sets and removes for the programs it runs (apps:).
    apps = files["master/apps.c"]
    changed = set(re.findall(r'\b(?:un)?setenv\(\s*"([A-Z_]+)"', apps))
    assert {"PORT", "SVCD_APP_NAME", "NOTIFY_SOCKET", "LISTEN_FDS"} <= changed, changed
    documented = items(section("svcd.8", "ENVIRONMENT", "Environment of managed programs"),
                       "Ev")
    assert changed == documented, "svcd.8 'Environment of managed programs' lists %s, " \
        "master/apps.c changes %s" % (sorted(documented), sorted(changed))

    cli = getenv_names(("cli",))
    assert {"SVCD_CONFIG", "SVCD_BIN"} <= cli, cli
    documented = items(section("svc.1", "ENVIRONMENT"), "Ev")
    assert cli <= documented, "environment missing from svc.1: %s" % sorted(cli - documented)
    # svc loads the configuration too: the names that override it are named.
    passed_on = words(section("svc.1", "ENVIRONMENT"), "Ev")
    assert config_env_table() <= passed_on, sorted(config_env_table() - passed_on)


def test_every_config_key_is_documented_in_its_section():
    keys = config_key_paths()
    documented = documented_key_paths()
    missing = sorted(".".join(p) for p in keys - documented)
    assert not missing, "svcd.yaml.5 KEYS lacks (each in its section): %s" % missing
    stale = sorted(".".join(p) for p in documented - keys)
    assert not stale, "svcd.yaml.5 documents keys svcd does not have: %s" % stale


def test_coverage_checks_detect_a_key_in_the_wrong_section():
    # The per-section check is only as good as the nesting it reads: a key
    # documented under the wrong section must be seen as missing there.
    keys, documented = config_key_paths(), documented_key_paths()
    assert ("storage", "connect", "attempts") in documented
    assert ("storage", "attempts") not in documented and ("attempts",) not in documented
    assert ("timeouts", "shutdown") in documented and ("shutdown",) not in keys
    assert ("proxy", "health", "interval") in documented and ("health",) not in documented


def test_every_file_is_documented():
    daemon = "".join(c_sources(DAEMON_DIRS).values())
    default_conf = re.search(r'#define DEFAULT_CONFIG\s+"([^"]+)"', daemon).group(1)
    run_dir_files = set(re.findall(r'"%s/([\w.]+)",\s*(?:\w+->)*run_dir', daemon))
    assert {"svcd.pid", "svcd.sock"} <= run_dir_files, run_dir_files
    dotenv = re.findall(r'"%s/(\.\w+)"', daemon)
    assert dotenv == [".env"], dotenv
    conf = shipped_config()
    expected = {default_conf, os.path.join(os.path.dirname(default_conf), ".env"),
                conf["run_dir"], conf["storage.path"], conf["log.file"],
                "/etc/default/svcd", "/etc/init.d/svcd", "/lib/systemd/system/svcd.service"}
    expected |= {"<run_dir>/" + f for f in run_dir_files}
    documented = items(section("svcd.8", "FILES"), "Pa")
    missing = expected - documented
    assert not missing, "files missing from svcd.8 FILES: %s" % sorted(missing)

    cli = "".join(c_sources(("cli",)).values())
    cli_files = {"<run_dir>/" + f for f in re.findall(r'"%s/([\w.]+)",\s*(?:\w+->)*run_dir', cli)}
    cli_files |= set(re.findall(r'cfg_path = "(/[^"]+)"', cli))
    assert {"<run_dir>/svcd.sock", "<run_dir>/svcd.pid", default_conf} <= cli_files, cli_files
    documented = items(section("svc.1", "FILES"), "Pa")
    assert cli_files <= documented, sorted(cli_files - documented)
    documented = items(section("svcd.yaml.5", "FILES"), "Pa")
    assert {default_conf, os.path.join(os.path.dirname(default_conf), ".env")} <= documented


def test_unit_stop_timeout_covers_the_shipped_drain():
    # svc stop and the init script wait timeouts.shutdown + 5s for the master
    # to drain, kill what is left and exit; systemd must not SIGKILL it sooner.
    # The rule is stated in svcd.yaml(5) and in the unit.
    unit = unit_settings()
    conf = shipped_config()
    stop = seconds(unit["TimeoutStopSec"][0])
    drain = seconds(conf["timeouts.shutdown"])
    assert stop >= drain + 5, "TimeoutStopSec=%gs < timeouts.shutdown %gs + 5s" % (stop, drain)
    assert unit["KillMode"] == ["mixed"] and unit["KillSignal"] == ["SIGTERM"]
    # svc's wait is the one the rule is about: shutdown_ms + 5000.
    assert re.search(r"timeouts\.shutdown_ms \+ 5000", src("cli", "svc.c"))
    page = " ".join(section("svcd.yaml.5", "KEYS"))
    assert "TimeoutStopSec=" in page and "+ 5s" in page
    assert "timeouts.shutdown + 5s" in src("packaging", "svcd.service")
    # The init script stops through svc (which reads timeouts.shutdown), not
    # with a fixed start-stop-daemon retry of its own.
    init = src("packaging", "svcd.init")
    stop_fn = re.search(r"^do_stop\(\) \{\n(.*?)^\}", init, re.M | re.S).group(1)
    assert re.search(r'"\$SVC" -c "\$CONFIG" stop', stop_fn), stop_fn


def test_unit_read_write_paths_cover_the_shipped_config():
    unit = unit_settings()
    assert unit["ProtectSystem"] == ["strict"]
    writable = [p for v in unit["ReadWritePaths"] for p in v.split()]
    for d in ("RuntimeDirectory", "StateDirectory", "LogsDirectory"):
        base = {"RuntimeDirectory": "/run", "StateDirectory": "/var/lib",
                "LogsDirectory": "/var/log"}[d]
        writable += [os.path.join(base, v) for v in unit.get(d, [])]
    conf = shipped_config()
    need = {"run_dir": conf["run_dir"],
            "storage.path": os.path.dirname(conf["storage.path"]),
            "log.file": os.path.dirname(conf["log.file"])}
    for key, path in need.items():
        assert any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable), (
            "%s (%s) is not writable under ProtectSystem=strict: %s" % (key, path, writable))


def test_unit_security_exposure_is_low():
    unit = os.path.join(REPO, "packaging", "svcd.service")
    p = run(["systemd-analyze", "security", "--offline=yes", "--threshold=25", unit])
    m = re.search(r"Overall exposure level for svcd\.service: (\d+\.\d+)", p.stdout)
    assert m, p.stdout
    print("exposure %s" % m.group(1))
    assert p.returncode == 0 and float(m.group(1)) <= 2.5, p.stdout[-2000:]
    # The threshold is enforced by systemd-analyze itself: a laxer unit fails.
    with tempfile.TemporaryDirectory() as tmp:
        lax = os.path.join(tmp, "svcd.service")
        with open(unit) as f:
            text = f.read()
        text = re.sub(r"^(ProtectSystem|PrivateDevices|ProtectHome|SystemCallFilter|"
                      r"CapabilityBoundingSet|RestrictNamespaces|PrivateTmp)=.*$", "", text,
                      flags=re.M)
        with open(lax, "w") as f:
            f.write(text)
        p = run(["systemd-analyze", "security", "--offline=yes", "--threshold=25", lax])
        assert p.returncode != 0, "a unit without sandboxing passed the threshold"


def test_package_inputs_cover_every_source_directory():
    # A change to any compiled source must rebuild the .deb: packaging.mk's
    # PKG_SRC_DIRS names every directory of the Makefile's SVCD_SRC/SVC_SRC.
    compiled = make_var("SVCD_SRC") + make_var("SVC_SRC")
    dirs = {os.path.dirname(s) for s in compiled}
    assert {"common", "master", "worker", "coordinator", "store", "cli"} <= dirs, dirs
    inputs = set(make_var("PKG_INPUTS", "packaging/packaging.mk"))
    for d in sorted(dirs):
        for f in glob.glob(os.path.join(REPO, d, "*.[ch]")):
            rel = os.path.relpath(f, REPO)
            assert rel in inputs, "%s is not in PKG_INPUTS" % rel
    for f in ("Makefile", "man/svcd.8", "man/svc.1", "man/svcd.yaml.5", "packaging/svcd.init",
              "packaging/svcd.service", "packaging/svcd.logrotate", "packaging/svcd.yaml",
              "packaging/debian/control", "packaging/debian/rules"):
        assert f in inputs, f


def test_logrotate_postrotate_does_not_mask_failures():
    text = src("packaging", "svcd.logrotate")
    post = re.search(r"postrotate\n(.*?)endscript", text, re.S).group(1)
    assert "|| true" not in post and "2>/dev/null" not in post and ">/dev/null" not in post
    assert "--oknodo" in post and "--signal USR1" in post
