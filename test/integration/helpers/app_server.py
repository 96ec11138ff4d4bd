"""A managed-app stand-in for test_apps.py: prints what svcd gave it, then
serves upstream.py's paths on its port.

    python app_server.py PORT [--exit-after SECONDS CODE] [--grandchild-ignoring-term]
                              [--listen-after SECONDS]

--listen-after: sleep first, print "binding now" (before the bind: until that
line is in the log the port cannot answer), then listen.
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import upstream  # noqa: E402

port = int(sys.argv[1])
args = sys.argv[2:]
print("app_server argv-port=%d PORT=%s BASE=%s NAME=%s cwd=%s" % (
    port, os.environ.get("PORT"), os.environ.get("SVCD_PREVIEW_BASE"),
    os.environ.get("SVCD_APP_NAME"), os.getcwd()), flush=True)
print("to stderr too", file=sys.stderr, flush=True)
if "--grandchild-ignoring-term" in args:
    # a process of the same group that ignores SIGTERM: only SIGKILL ends it
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal,time,os\n"
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                              "print('grandchild', os.getpid(), flush=True)\n"
                              "time.sleep(600)\n"])
    print("grandchild-pid=%d" % child.pid, flush=True)
if "--exit-after" in args:
    i = args.index("--exit-after")
    delay, code = float(args[i + 1]), int(args[i + 2])

    def later():
        time.sleep(delay)
        print("exiting with %d" % code, flush=True)
        os._exit(code)
    threading.Thread(target=later, daemon=True).start()
if "--listen-after" in args:
    time.sleep(float(args[args.index("--listen-after") + 1]))
    print("binding now", flush=True)
srv = upstream.Server(("127.0.0.1", port), upstream.Handler)
srv.serve_forever()
