"""Configuration validation from the outside: `svcd -t -c FILE` and `svc check`
(SPEC §2). Every error at once, each located, exit 78; secrets never printed."""
import os
import re

from conftest import (ADMIN_TOKEN, JWT_SECRET, SVC, SVCD, Workdir, base_env, run_cli, to_yaml,
                      default_config, deep_merge, DELETE)

import pytest

EX_CONFIG = 78

PASSWORD = "Hunter2-MongoPw-77"
SHORT_JWT = "short-jwt-XYZ123"  # < 32 chars: invalid in production
TOKEN = "adm-Token-Zz91-secret"

# Line numbers matter below: each bad item sits on a known line.
BAD_MANY = """\
env: production
listen:
  - address: 127.0.0.1:70000
workers: lots
timeouts:
  headers: 10s
  keepalive: 5s
  request: soon
  shutdown: 10s
  worker: 30s
limits:
  body: 1MiB
  hedaer: 16KiB
storage:
  driver: mongodb
  uri: mongodb://admin:{pw}@127.0.0.1:27017/svcd
auth:
  jwt_secret: {jwt}
  admin_token: {tok}
log:
  file: svcd.log
  levle: info
""".format(pw=PASSWORD, jwt=SHORT_JWT, tok=TOKEN)

LINE_RE = re.compile(r"^svcd: (?P<where>.+?:(?P<line>\d+):(?P<col>\d+)|env \w+|\w+): (?P<msg>.+)$")


def check(wd, *extra_args, env=None):
    return run_cli([SVCD, "-t", "-c", wd.config_path] + list(extra_args), env=env)


def located(stderr, path):
    """{line: [messages]} of the `svcd: FILE:LINE:COL: message` lines for `path`."""
    out = {}
    pat = re.compile(r"svcd: (?:%s|%s):(\d+):(\d+): (.+)" % (
        re.escape(path), re.escape(os.path.basename(path))))
    for ln in stderr.splitlines():
        m = pat.search(ln)
        if m:
            assert int(m.group(2)) >= 1, "column must be 1-based: %r" % ln
            out.setdefault(int(m.group(1)), []).append(m.group(3))
    return out


@pytest.fixture
def wd():
    w = Workdir()
    yield w
    w.cleanup()


def assert_no_secrets(text, *secrets):
    for s in secrets:
        assert s not in text, "secret %r leaked in output:\n%s" % (s, text)


def test_many_errors_reported_at_once_with_locations(wd):
    wd.write_config(text=BAD_MANY)
    r = check(wd)
    out = r.stdout + r.stderr
    assert r.returncode == EX_CONFIG, "rc=%d\n%s" % (r.returncode, out)
    assert "configuration OK" not in out
    at = located(r.stderr, wd.config_path)
    # port out of range, wrong type, bad duration, two unknown keys with suggestions
    assert 3 in at, "no error located at line 3 (port 70000):\n" + r.stderr
    assert 4 in at, "no error located at line 4 (workers: lots):\n" + r.stderr
    assert 8 in at, "no error located at line 8 (request: soon):\n" + r.stderr
    assert 13 in at, "no error located at line 13 (unknown key hedaer):\n" + r.stderr
    assert 22 in at, "no error located at line 22 (unknown key levle):\n" + r.stderr
    assert any("did you mean" in m and "header" in m for m in at[13]), at[13]
    assert any("did you mean" in m and "level" in m for m in at[22]), at[22]
    located_count = sum(len(v) for v in at.values())
    assert located_count >= 5, r.stderr
    # production rules: JWT secret too short, CLIENT_URL missing
    low = r.stderr.lower()
    assert re.search(r"jwt_secret|jwt secret", low), "no JWT secret error:\n" + r.stderr
    assert "client_url" in low, "no CLIENT_URL error:\n" + r.stderr
    # every error line has the documented shape: located, or naming its env variable
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("svcd: ")
                 and not re.match(r"svcd: \d+ configuration error", ln)]
    assert len(err_lines) >= 7, r.stderr
    where = re.compile(r"^svcd: (%s:\d+:\d+|env [A-Z_][A-Z0-9_]*): \S" % re.escape(wd.config_path))
    unlocated = [ln for ln in err_lines if not where.match(ln)]
    assert not unlocated, "errors without FILE:LINE:COL or env name:\n" + "\n".join(unlocated)
    assert_no_secrets(out, PASSWORD, SHORT_JWT, TOKEN)


def test_bad_yaml_syntax_is_located(wd):
    wd.write_config(text="env: development\nlisten:\n  - address: [127.0.0.1:8080\nworkers: 2\n")
    r = check(wd)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    at = located(r.stderr, wd.config_path)
    assert at, "YAML syntax error without FILE:LINE:COL:\n" + r.stderr
    assert min(at) >= 3, at


def test_wrong_types_and_ranges(wd):
    text = to_yaml(deep_merge(default_config(8080), {
        "workers": -3,
        "timeouts": {"shutdown": "ten seconds"},
        "limits": {"body": "lots", "connections": "many"},
        "log": {"level": "chatty", "format": "xml"},
    })) + "\n"
    wd.write_config(text=text)
    lines = text.splitlines()

    def lineno(prefix):
        return next(i + 1 for i, ln in enumerate(lines) if ln.strip().startswith(prefix))

    r = check(wd)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    at = located(r.stderr, wd.config_path)
    for key in ("workers:", "shutdown:", "body:", "connections:", "level:", "format:"):
        assert lineno(key) in at, "no located error for %s (line %d):\n%s" % (
            key, lineno(key), r.stderr)


def test_timeout_order_rule(wd):
    wd.write_config({"timeouts": {"headers": "5s", "keepalive": "10s", "request": "20s"}})
    r = check(wd)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert re.search(r"keepalive|headers|request", r.stderr), r.stderr
    assert located(r.stderr, wd.config_path) or "timeouts" in r.stderr, r.stderr


def test_env_var_errors_are_named(wd):
    wd.write_config({"env": "production", "auth": {"jwt_secret": DELETE}})
    r = check(wd, env=base_env(PORT="99999", JWT_SECRET="tooShort-envSecret"))
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert "PORT" in r.stderr, "env PORT error not named:\n" + r.stderr
    assert "JWT_SECRET" in r.stderr, "env JWT_SECRET error not named:\n" + r.stderr
    assert_no_secrets(r.stdout + r.stderr, "tooShort-envSecret")


def test_production_requires_secrets(wd):
    wd.write_config({"env": "production", "auth": {"jwt_secret": DELETE,
                                                   "client_url": DELETE}})
    r = check(wd)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    low = r.stderr.lower()
    assert "jwt_secret" in low or "jwt secret" in low, r.stderr
    assert "client_url" in low, r.stderr


def test_mongodb_driver_requires_uri(wd):
    wd.write_config({"env": "production", "storage": {"driver": "mongodb", "path": DELETE}})
    r = check(wd)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert "uri" in r.stderr.lower() or "MONGODB_URI" in r.stderr, r.stderr


def test_valid_config_ok_and_no_secrets(wd):
    wd.write_config({"env": "production", "storage": {
        "driver": "mongodb", "uri": "mongodb://svc:%s@127.0.0.1:27017/svcd" % PASSWORD}})
    r = check(wd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration OK" in r.stdout
    assert_no_secrets(r.stdout + r.stderr, PASSWORD, JWT_SECRET, ADMIN_TOKEN)


def test_dotenv_beside_yaml_is_read(wd):
    wd.write_config({"env": "production", "auth": {"jwt_secret": DELETE,
                                                   "client_url": DELETE}})
    with open(os.path.join(wd.dir, ".env"), "w") as f:
        f.write("# MERN-style .env\nJWT_SECRET=%s\nCLIENT_URL=http://localhost:5173\n" %
                JWT_SECRET)
    r = check(wd)
    assert r.returncode == 0, ".env beside the YAML not honoured:\n" + r.stdout + r.stderr
    assert "configuration OK" in r.stdout
    assert_no_secrets(r.stdout + r.stderr, JWT_SECRET)


def test_svc_check_equals_svcd_t(wd):
    wd.write_config()
    r = run_cli([SVC, "-c", wd.config_path, "check"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration OK" in r.stdout
    wd.write_config(text=BAD_MANY)
    r = run_cli([SVC, "-c", wd.config_path, "check"])
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    at = located(r.stdout + r.stderr, wd.config_path)
    assert 13 in at and any("did you mean" in m for m in at[13]), r.stdout + r.stderr
    assert_no_secrets(r.stdout + r.stderr, PASSWORD, SHORT_JWT, TOKEN)
    # SVCD_CONFIG selects the file when -c is absent
    r = run_cli([SVC, "check"], env=base_env(SVCD_CONFIG=wd.config_path))
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr


def test_svcd_start_with_invalid_config_exits_78(wd):
    wd.write_config(text=BAD_MANY)
    r = run_cli([SVCD, "-c", wd.config_path], timeout=30)
    assert r.returncode == EX_CONFIG, r.stdout + r.stderr
    assert not os.path.exists(os.path.join(wd.dir, "run", "svcd.pid"))
    assert_no_secrets(r.stdout + r.stderr, PASSWORD, SHORT_JWT, TOKEN)


def test_version_and_usage():
    r = run_cli([SVCD, "-v"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr), r.stdout + r.stderr
    r = run_cli([SVCD, "--no-such-option"])
    assert r.returncode == 64, "usage error must exit 64, got %d" % r.returncode
