"""Managed apps (SPEC §6, issue 4 step 5; PM2's core): started after the
workers, {port} and PORT, per-app log file, restart policies with back-off,
registered as preview upstreams when their port answers, unregistered when
they exit, stopped with their whole process group on shutdown."""
import os
import signal
import sys
import time

import pytest
import requests

from conftest import free_port, pid_alive, scaled, wait_for
from helpers.peers import HERE

APP = os.path.join(HERE, "app_server.py")
FAST_HEALTH = {"health": {"interval": "500ms", "timeout": "300ms"}}


def app_cfg(port, name="web", extra="", restart="on-failure", project="demo", owner="alice",
            cwd=None):
    a = {"name": name, "cwd": cwd or HERE,
         "command": "exec %s %s {port} %s" % (sys.executable, APP, extra),
         "port": port, "restart": restart}
    if project:
        a["project"] = project
    if owner:
        a["owner"] = owner
    return a


def apps_of(s):
    return [c for c in s.status()["children"] if c["role"] == "app"]


def app_log(s, name="web"):
    try:
        with open(os.path.join(s.wd.dir, "app-%s.log" % name)) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def status(s, project="demo", user="alice"):
    return requests.get(s.url("/api/preview-status/%s/%s" % (project, user)), timeout=5).json()


def test_app_started_registered_and_proxied(make_server):
    port = free_port()
    s = make_server({"proxy": FAST_HEALTH, "apps": [app_cfg(port)]})
    wait_for(lambda: status(s)["available"], scaled(15), what="the app's preview registered")
    srv = status(s)["server"]
    assert srv["port"] == port
    listed = requests.get(s.url("/api/preview-servers"), timeout=5).json()["servers"]
    assert [(x["port"], x["source"]) for x in listed] == [(port, "app:web")]
    r = requests.get(s.url("/preview/demo/alice/hello"), timeout=5)
    assert r.status_code == 200 and r.json()["headers"]["host"] == "127.0.0.1:%d" % port
    apps = apps_of(s)
    assert len(apps) == 1
    a = apps[0]
    assert a["name"] == "web" and a["state"] == "online" and a["port"] == port
    assert a["registered"] is True and a["pid"] > 0 and pid_alive(a["pid"])
    log = app_log(s)
    assert "argv-port=%d PORT=%d BASE=/preview/demo/alice/ NAME=web" % (port, port) in log
    assert "to stderr too" in log and "svcd: starting app web" in log
    assert "cwd=%s" % HERE in log
    table = s.wd.svc("status").stdout
    assert "app:web" in table and "online" in table
    # started after the workers were ready
    text = s.log_text()
    assert text.index("phase ready") < text.index("app web: started")
    # its own process group, not the master's
    assert os.getpgid(a["pid"]) == a["pid"] != os.getpgid(s.pid)


def test_app_restart_on_failure_and_reregistered(make_server):
    port = free_port()
    s = make_server({"proxy": FAST_HEALTH, "apps": [app_cfg(port)]})
    wait_for(lambda: status(s)["available"], scaled(15), what="registered")
    pid = apps_of(s)[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: apps_of(s)[0]["pid"] not in (0, pid) and apps_of(s)[0]["state"] == "online",
             scaled(15), what="the app restarted")
    a = apps_of(s)[0]
    assert a["restarts"] == 1 and "SIGKILL" in a["last_exit"]
    wait_for(lambda: status(s)["available"], scaled(10), what="re-registered")
    assert requests.get(s.url("/preview/demo/alice/hello"), timeout=5).status_code == 200
    text = s.log_text()
    assert "unregistered: app web exited (killed by signal 9 (SIGKILL))" in text
    assert text.count("event previewServerStarted") >= 2
    assert "event previewServerStopped" in text


def test_app_restart_never_unregisters(make_server):
    port = free_port()
    s = make_server({"proxy": FAST_HEALTH,
                     "apps": [app_cfg(port, extra="--exit-after 1.5 3", restart="never")]})
    wait_for(lambda: status(s)["available"], scaled(15), what="registered")
    wait_for(lambda: apps_of(s)[0]["state"] == "stopped", scaled(10), what="app exited")
    a = apps_of(s)[0]
    assert a["pid"] == 0 and a["restarts"] == 0 and a["last_exit"] == "exit status 3"
    wait_for(lambda: status(s) == {"available": False, "server": None}, scaled(5),
             what="unregistered")
    r = requests.get(s.url("/preview/demo/alice/"), headers={"Accept": "text/html"}, timeout=5)
    assert r.status_code == 503 and "Starting preview" in r.text
    assert "not restarted (restart: never)" in s.log_text()


def test_app_on_failure_clean_exit_not_restarted(make_server):
    port = free_port()
    s = make_server({"apps": [app_cfg(port, extra="--exit-after 0.5 0")]})
    wait_for(lambda: apps_of(s)[0]["last_exit"] == "exit status 0", scaled(10), what="exit 0")
    time.sleep(1.0)  # a restart would be immediate: give it the chance to (wrongly) happen
    assert apps_of(s)[0]["state"] == "stopped" and apps_of(s)[0]["restarts"] == 0


def test_app_crash_loop_backs_off(make_server):
    port = free_port()
    s = make_server({"apps": [{"name": "bad", "command": "echo crashing; exit 3", "port": port,
                               "restart": "always"}]})
    wait_for(lambda: apps_of(s)[0]["restarts"] >= 4, scaled(10), what="several restarts")
    time.sleep(1.5)
    n = apps_of(s)[0]["restarts"]
    assert n < 10, "fork storm: %d restarts" % n  # 0, 250, 500, 1000, 2000 ms ...
    text = s.log_text()
    assert "restarting in 250 ms" in text and "restarting in 500 ms" in text
    assert "crashing" in app_log(s, "bad")


def test_app_group_stopped_on_shutdown(make_server):
    """A grandchild that ignores SIGTERM: the whole group is SIGKILLed after
    timeouts.shutdown, svcd says so, nothing is left behind."""
    port = free_port()
    s = make_server({"timeouts": {"shutdown": "2s"},
                     "apps": [app_cfg(port, extra="--grandchild-ignoring-term")]})
    wait_for(lambda: "grandchild-pid=" in app_log(s), scaled(15), what="grandchild started")
    gpid = int(app_log(s).split("grandchild-pid=")[1].split()[0])
    apid = apps_of(s)[0]["pid"]
    assert os.getpgid(gpid) == apid
    s.expect_clean_exit = False
    rc = s.stop()
    assert rc in (0, 1)
    assert not pid_alive(apid) and not pid_alive(gpid)
    text = s.log_text()
    assert "app web: stopping process group %d" % apid in text
    assert ("process group %d" % apid) in text.split("stopping process group")[1]


def test_app_graceful_shutdown_clean_exit(make_server):
    port = free_port()
    s = make_server({"apps": [app_cfg(port)]})
    wait_for(lambda: apps_of(s) and apps_of(s)[0]["state"] == "online", scaled(15),
             what="online")
    apid = apps_of(s)[0]["pid"]
    assert s.stop() == 0
    assert not pid_alive(apid)
    assert "app web (pid %d) stopped: killed by signal 15 (SIGTERM)" % apid in s.log_text()


def test_app_without_preview_is_not_registered(make_server):
    port = free_port()
    s = make_server({"apps": [app_cfg(port, name="api", project="", owner="")]})
    wait_for(lambda: apps_of(s)[0]["state"] == "online", scaled(15), what="online")
    assert apps_of(s)[0]["registered"] is False
    assert requests.get(s.url("/api/preview-servers"), timeout=5).json()["servers"] == []


def test_app_restart_always_restarts_clean_exit(make_server):
    """restart: always also restarts an app that exits 0 (on-failure does not:
    test_app_on_failure_clean_exit_not_restarted), and it is registered again."""
    port = free_port()
    s = make_server({"proxy": FAST_HEALTH,
                     "apps": [app_cfg(port, extra="--exit-after 1.0 0", restart="always")]})
    wait_for(lambda: apps_of(s)[0]["restarts"] >= 1, scaled(15), what="a restart after exit 0")
    a = apps_of(s)[0]
    assert a["last_exit"] == "exit status 0", a
    wait_for(lambda: status(s)["available"], scaled(10), what="registered again after the restart")
    assert app_log(s).count("svcd: starting app web") >= 2
    assert app_log(s).count("exiting with 0") >= 1


def test_app_not_registered_before_its_port_answers(make_server):
    """An app that binds its port only after 3 s is not a preview before that:
    preview-status stays {available: false, server: null} and svc status says
    not registered; once it listens, it is registered and proxied."""
    port = free_port()
    s = make_server({"proxy": FAST_HEALTH,
                     "apps": [app_cfg(port, extra="--listen-after 3")]})
    wait_for(lambda: "app_server argv-port" in app_log(s), scaled(15), what="the app running")
    checks = 0
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        st = status(s)  # first the status, then the log: "binding now" is printed before the
        a = apps_of(s)[0]  # bind, so while it is absent the port could not answer at `st`
        if "binding now" in app_log(s):
            break
        assert st == {"available": False, "server": None}, st
        assert a["registered"] is False and a["state"] != "online", a
        checks += 1
        time.sleep(0.1)
    assert checks >= 5, "too few checks before the app listened (%d)" % checks
    wait_for(lambda: status(s)["available"], scaled(10), what="registered once it listens")
    assert apps_of(s)[0]["registered"] is True
    assert requests.get(s.url("/preview/demo/alice/hello"), timeout=5).status_code == 200
