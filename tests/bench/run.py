#!/usr/bin/env python3
"""procwrap benchmarks: ratios against the floor and the peers, measured in the same run.

usage: python3 tests/bench/run.py [--quick] [--only NAME[,NAME]] [--peers DIR]
                                 [--compare PROCWRAP.PY]

  wrap      wall time of wrapping /bin/true (median of interleaved runs)
  logs      lines/s for one child writing 1,000,000 lines of 100 bytes
  logfiles  the same into a log file rotated at 50 MB: procwrap's logs.file against
            supervisord's stdout_logfile and the writer writing the file itself
  idle      RSS, CPU and wake-ups of a supervisor of 50 idle sleeps
  term      SIGTERM with 50 children: time from the last child's exit to procwrap's
  many      500 children: time to all running, RSS, time to stop
  health    /readiness requests/s (4 keep-alive clients) while 50 chatty children log,
            and no line lost
  probes    procwrap's CPU with 50 children, each with a 1 s exec liveness probe
  memory    procwrap's CPU with 100 children, each with a memoryLimit, against none
  prommerge GET /prommerge over 10 targets of 1,000 samples, against one target's answer
  podwatch  wake-ups (every thread) of a supervisor of 50 sleeps watching preemption and
            the pod's containers through servers answering as GCE's and Kubernetes' do
  remote    `procwrap remote HOST -- true` against `ssh HOST true` (paired, a private
            sshd on loopback), the bootstrap's bytes, the agent's RSS, 16 hosts against 1

Peers come from a virtualenv (--peers, default /tmp/procwrap-bench-peers, made and filled
with supervisor, honcho, circus and cloudreactor-procwrapper when missing) and from PATH
(tini and dumb-init: apt-get install tini dumb-init).  A peer that is missing is reported,
not fatal.  This machine is shared and noisy: read the ratios, not the absolute numbers.

--compare adds rows for another procwrap.py (an earlier commit's: `git show
REV:procwrap.py > /tmp/old.py`) to `wrap`, `logs` and `idle`, measured in the
same run (interleaved for `wrap`), and to `probes`, so a refactor's cost shows
beside the noise.
"""
import json
import os
import py_compile
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROCWRAP = os.path.join(ROOT, "procwrap.py")
PYTHON = os.path.realpath(sys.executable)        # the real interpreter, never a pyenv shim
COMPARE = None      #: another procwrap.py to measure beside this one (--compare)
LINE = b"x" * 99 + b"\n"
WRITER = ("import os, sys\nn = int(sys.argv[1])\nblock = %r * 1000\n"
          "for _ in range(n // 1000):\n    os.write(1, block)\n" % LINE)


def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def peers_venv(path):
    """A virtualenv holding the Python peers; created on first use."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(os.path.join(path, "bin", "supervisord")):
        log("installing peers into %s ..." % path)
        subprocess.check_call([PYTHON, "-m", "venv", path])
        subprocess.check_call([python, "-m", "pip", "install", "-q", "supervisor", "honcho",
                               "circus", "cloudreactor-procwrapper"])
    return os.path.join(path, "bin")


def environ(**extra):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PROCWRAP_"))
    env.update(extra)
    return env


# -- process inspection from /proc ---------------------------------------------

def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as stream:
        for line in stream:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def rss_mb(pid):
    return int(proc_status(pid)["VmRSS"].split()[0]) / 1024.0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as stream:
        parts = stream.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / float(os.sysconf("SC_CLK_TCK"))


def wakeups(pid):
    status = proc_status(pid)
    return int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])


def children_of(pid):
    """Live (not zombie) children of pid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as stream:
                parts = stream.read().rsplit(")", 1)[1].split()
        except (IOError, OSError):
            continue
        if int(parts[1]) == pid and parts[0] != "Z":
            found.append(int(name))
    return found


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (IOError, OSError):
        return False


def wait_for(predicate, timeout, poll=0.005):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def stop(proc, timeout=30):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- supervisors under test -------------------------------------------------------

class Setup(object):
    """Writes the config files each supervisor needs for a list of commands."""

    def __init__(self, peers):
        self.peers = peers
        self.dir = tempfile.mkdtemp(prefix="procwrap-bench-")

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as stream:
            stream.write(text)
        return self.path(name)

    def procwrap(self, commands, fmt="json", module=False, installed=False):
        """procwrap.py as a script (compiled each run, then re-exec'd from its
        bytecode), `python -m procwrap` from a copy with its bytecode cached (as pip
        installs it), or the launcher of `procwrap install`."""
        config = {"logs": {"format": fmt}, "processes": [
            {"name": "p%d" % i, "command": command, "restartPolicy": "Never"}
            for i, command in enumerate(commands)]}
        path = self.write("procwrap.json", json.dumps(config))
        if installed:
            return [self.installed(), "-c", path]
        if module:
            return [PYTHON, "-m", "procwrap", "-c", path]
        return [PYTHON, PROCWRAP, "-c", path]

    def installed(self):
        """The launcher that `python3 procwrap.py install PREFIX` writes."""
        prefix = os.path.join(self.dir, "prefix")
        launcher = os.path.join(prefix, "bin", "procwrap")
        if not os.path.exists(launcher):
            subprocess.check_call([PYTHON, PROCWRAP, "install", prefix], stdout=subprocess.DEVNULL)
        return launcher

    def cached_copy(self):
        """A directory holding procwrap.py and its .pyc, for `python -m procwrap`."""
        target = os.path.join(self.dir, "procwrap.py")
        if not os.path.exists(target):
            shutil.copy(PROCWRAP, target)
            py_compile.compile(target, doraise=True)
        return self.dir

    def supervisord(self, commands):
        text = ("[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\n"
                "pidfile=%s\n[unix_http_server]\nfile=%s\n" % (
                    self.path("supervisord.pid"), self.path("supervisor.sock")))
        for i, command in enumerate(commands):
            text += ("[program:p%d]\ncommand=%s\nautorestart=false\nstartsecs=0\n"
                     "stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n"
                     "stderr_logfile=/dev/stderr\nstderr_logfile_maxbytes=0\n"
                     % (i, " ".join(command)))
        return [os.path.join(self.peers, "supervisord"), "-c",
                self.write("supervisord.conf", text)]

    def honcho(self, commands):
        text = "".join("p%d: %s\n" % (i, " ".join(c)) for i, c in enumerate(commands))
        return [os.path.join(self.peers, "honcho"), "-f", self.write("Procfile", text),
                "-d", self.dir, "start"]

    def circus(self, commands):
        text = "[circus]\ncheck_delay = 5\n"
        text += "endpoint = ipc://%s\npubsub_endpoint = ipc://%s\n" % (
            self.path("circus.sock"), self.path("circus-pub.sock"))
        for i, command in enumerate(commands):
            text += ("[watcher:p%d]\ncmd = %s\nargs = %s\nnumprocesses = 1\nrespawn = False\n"
                     "stdout_stream.class = StdoutStream\n" % (
                         i, command[0], " ".join(command[1:])))
        return [os.path.join(self.peers, "circusd"), self.write("circus.ini", text)]

    def minimal(self, commands):
        """The floor: a minimal Python supervisor (Popen each, then os.wait)."""
        script = ("import subprocess, os, sys, json\n"
                  "procs = [subprocess.Popen(c) for c in json.loads(sys.argv[1])]\n"
                  "for _ in procs:\n    os.wait()\n")
        return [PYTHON, "-c", script, json.dumps(commands)]


# -- benchmarks ---------------------------------------------------------------------

def cached_dir(source):
    """A new directory holding procwrap.py (from `source`) and its cached .pyc."""
    cached = tempfile.mkdtemp(prefix="procwrap-pyc-")
    shutil.copy(source, os.path.join(cached, "procwrap.py"))
    py_compile.compile(os.path.join(cached, "procwrap.py"), doraise=True)
    return cached


def bench_wrap(setup, runs):
    """Median wall time of wrapping /bin/true, interleaved so noise hits all alike."""
    cached = cached_dir(PROCWRAP)
    commands = [
        ("floor: python -c subprocess.call", [PYTHON, "-c", "import subprocess,sys; "
                                              "sys.exit(subprocess.call(sys.argv[1:]))",
                                              "/bin/true"], None),
        ("procwrap: python -m procwrap (pyc cached)", [PYTHON, "-m", "procwrap", "--",
                                                      "/bin/true"], cached),
        ("procwrap: python procwrap.py (compiled each run)", [PYTHON, PROCWRAP, "--",
                                                              "/bin/true"], None),
        ("procwrap: procwrap install's launcher", [setup.installed(), "--", "/bin/true"],
         None),
        ("cloudreactor proc_wrapper --offline-mode", [os.path.join(setup.peers, "proc_wrapper"),
                                                      "--offline-mode", "/bin/true"], None),
        ("honcho run", [os.path.join(setup.peers, "honcho"), "run", "/bin/true"], None),
        ("tini", ["tini", "-s", "--", "/bin/true"], None),
        ("dumb-init", ["dumb-init", "/bin/true"], None),
    ]
    if COMPARE:
        commands[3:3] = [
            ("compared: python -m procwrap (pyc cached)",
             [PYTHON, "-m", "procwrap", "--", "/bin/true"], cached_dir(COMPARE)),
            ("compared: python procwrap.py", [PYTHON, COMPARE, "--", "/bin/true"], None)]
    commands = [c for c in commands if shutil.which(c[1][0]) or os.path.exists(c[1][0])]
    times = dict((name, []) for name, _, _ in commands)
    devnull = open(os.devnull, "w")
    for _ in range(runs):
        for name, argv, cwd in commands:
            start = time.perf_counter()
            subprocess.call(argv, stdout=devnull, stderr=devnull, cwd=cwd, env=environ())
            times[name].append(time.perf_counter() - start)
    floor = statistics.median(times[commands[0][0]])
    rows = []
    for name, _, _ in commands:
        median = statistics.median(times[name])
        rows.append((name, "%.1f ms" % (median * 1000), "%.2fx floor" % (median / floor)))
    return rows


def count_lines(proc, expected, timeout):
    """Read proc's stdout until `expected` payload lines arrived; (seconds, count)."""
    import select
    start = time.perf_counter()
    fd = proc.stdout.fileno()
    partial, count = b"", 0
    deadline = time.monotonic() + timeout
    while count < expected and time.monotonic() < deadline:
        if not select.select([fd], [], [], 20)[0]:
            break       # 20 s without a byte: the rest is lost
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        data = partial + chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            count += data.count(b"x" * 99, 0, cut)
            partial = data[cut + 1:]
        else:
            partial = data
    return time.perf_counter() - start, count


def bench_logs(setup, lines):
    """Lines/s through each relay, every payload line counted on its stdout."""
    writer = setup.write("writer.py", WRITER)
    child = [PYTHON, writer, str(lines)]
    naive = ("import subprocess, sys, json\n"
             "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n"
             "out = sys.stdout\n"
             "for line in p.stdout:\n"
             "    out.write(json.dumps({'time': '2026-11-22T00:00:00.000Z', 'process': 'w', "
             "'stream': 'stdout', 'message': line.decode('utf-8', 'replace').rstrip('\\n')})"
             " + '\\n')\n")
    plain = ("import subprocess, sys\n"
             "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n"
             "out = sys.stdout.buffer\n"
             "for line in p.stdout:\n    out.write(line)\n")
    relays = [
        ("naive Python json.dumps relay", [PYTHON, "-c", naive] + child),
        ("plain Python line relay", [PYTHON, "-c", plain] + child),
        ("procwrap wrap --log-format json", [PYTHON, PROCWRAP, "--log-format", "json", "--"]
         + child),
        ("procwrap wrap --log-format text", [PYTHON, PROCWRAP, "--log-format", "text", "--"]
         + child),
        ("compared: wrap --log-format json", [PYTHON, COMPARE, "--log-format", "json", "--"]
         + child if COMPARE else None),
        ("compared: wrap --log-format text", [PYTHON, COMPARE, "--log-format", "text", "--"]
         + child if COMPARE else None),
        ("procwrap supervisor json", setup.procwrap([child])),
        ("procwrap supervisor logfmt", setup.procwrap([child], "logfmt")),
        ("honcho start", setup.honcho([child])),
        ("supervisord (stdout_logfile=/dev/stdout)", setup.supervisord([child])),
        ("circus (StdoutStream)", setup.circus([child])),
    ]
    rows = []
    rates = {}
    for name, argv in relays:
        if argv is None:
            continue
        if not os.path.exists(argv[0]):
            rows.append((name, "not installed", ""))
            continue
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=environ(), cwd=setup.dir)
        seconds, count = count_lines(proc, lines, timeout=600)
        stop(proc)
        rates[name] = lines / seconds if count == lines else 0
        rows.append((name, "%d lines/s" % rates[name] if count == lines else
                     "%d of %d lines not delivered within 20 s" % (lines - count, lines), ""))
    # procwrap's stdout straight to /dev/null, as the issue states the target.
    for fmt in ("json", "text"):
        start = time.perf_counter()
        with open(os.devnull, "w") as devnull:
            subprocess.call([PYTHON, PROCWRAP, "--log-format", fmt, "--"] + child,
                            stdout=devnull, env=environ())
        seconds = time.perf_counter() - start
        rates["devnull " + fmt] = lines / seconds
        rows.append(("procwrap wrap %s > /dev/null" % fmt, "%d lines/s" % (lines / seconds),
                     ""))
    naive_rate = rates.get("naive Python json.dumps relay") or 1
    plain_rate = rates.get("plain Python line relay") or 1
    final = []
    for name, value, _ in rows:
        key = name if name in rates else ("devnull json" if "json > /dev/null" in name else
                                          "devnull text" if "text > /dev/null" in name else None)
        rate = rates.get(key)
        note = ""
        if rate:
            note = "%.2fx naive json, %.2fx plain relay" % (rate / naive_rate, rate / plain_rate)
        final.append((name, value, note))
    return final


def bench_logfiles(setup, lines):
    """Lines/s of one child's 100-byte lines into a log file rotated at 50 MB (10
    kept): the child writing the file itself (the floor), supervisord's
    stdout_logfile, procwrap's logs.file (its stdout to /dev/null)."""
    writer = setup.write("writer.py", WRITER)
    child = [PYTHON, writer, str(lines)]
    rows, rates = [], {}

    def files(path):
        return [path] + ["%s.%d" % (path, n) for n in range(1, 11)]

    def total(path):
        return sum(os.path.getsize(name) for name in files(path) if os.path.exists(name))

    def clean(path):
        for name in files(path):
            if os.path.exists(name):
                os.unlink(name)

    # The floor: the writer's stdout is the file (no relay, no rotation).
    path = setup.path("floor.log")
    clean(path)
    start = time.perf_counter()
    with open(path, "wb") as stream:
        subprocess.call(child, stdout=stream)
    rates["floor"] = lines / (time.perf_counter() - start)
    rows.append(("the writer > file (floor)", "%d lines/s" % rates["floor"], ""))
    clean(path)
    # supervisord: its stdout_logfile, rotated; done once every byte is in the files.
    supervisord = os.path.join(setup.peers, "supervisord")
    if os.path.exists(supervisord):
        path = setup.path("supervisord-p0.log")
        clean(path)
        text = ("[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\n"
                "pidfile=%s\n[unix_http_server]\nfile=%s\n[program:p0]\ncommand=%s\n"
                "autorestart=false\nstartsecs=0\nstdout_logfile=%s\n"
                "stdout_logfile_maxbytes=50MB\nstdout_logfile_backups=10\n" % (
                    setup.path("supervisord.pid"), setup.path("supervisor.sock"),
                    " ".join(child), path))
        argv = [supervisord, "-c", setup.write("supervisord-files.conf", text)]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=environ(), cwd=setup.dir)
        done = wait_for(lambda: total(path) >= lines * len(LINE), 600, poll=0.02)
        seconds = time.perf_counter() - start
        stop(proc)
        rates["supervisord"] = lines / seconds if done else 0
        rows.append(("supervisord stdout_logfile (50MB x 10)", "%d lines/s" % rates[
            "supervisord"] if done else "not all delivered in 600 s", ""))
        clean(path)
    else:
        rows.append(("supervisord stdout_logfile (50MB x 10)", "not installed", ""))
    # procwrap: logs.file, in text (the lines with a name) and json records.
    for fmt in ("text", "json"):
        path = setup.path("procwrap-%s.log" % fmt)
        clean(path)
        config = {"logs": {"format": fmt}, "processes": [{
            "name": "p0", "command": child, "restartPolicy": "Never",
            "logs": {"file": path, "maxBytes": "50MB", "backups": 10}}]}
        argv = [PYTHON, PROCWRAP, "-c", setup.write("procwrap-files.json", json.dumps(config))]
        start = time.perf_counter()
        with open(os.devnull, "w") as devnull:
            subprocess.call(argv, stdout=devnull, env=environ())
        seconds = time.perf_counter() - start
        kept = sum(1 for name in files(path) if os.path.exists(name))
        rates[fmt] = lines / seconds
        rows.append(("procwrap logs.file, %s records (50MB x 10)" % fmt, "%d lines/s"
                     % rates[fmt], "%d files, %.0f MB" % (kept, total(path) / 1e6)))
        clean(path)
    final = []
    for name, value, note in rows:
        key = ("floor" if "floor" in name else "supervisord" if "supervisord" in name
               else "text" if "text" in name else "json")
        if rates.get(key):
            note = ("%s; " % note if note else "") + "%.2fx floor" % (rates[key] / rates["floor"])
            if rates.get("supervisord") and key in ("text", "json"):
                note += ", %.2fx supervisord" % (rates[key] / rates["supervisord"])
        final.append((name, value, note))
    return final


def idle_sample(argv, count, window, cwd):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=environ(), cwd=cwd)
    try:
        if not wait_for(lambda: len(children_of(proc.pid)) >= count, 60, poll=0.05):
            return None
        time.sleep(2)      # let start-up work settle; this is a measurement, not a sync
        cpu0, wake0 = cpu_seconds(proc.pid), wakeups(proc.pid)
        time.sleep(window)
        cpu1, wake1 = cpu_seconds(proc.pid), wakeups(proc.pid)
        return rss_mb(proc.pid), (cpu1 - cpu0) * 60000.0 / window, (wake1 - wake0) * 60.0 / window
    finally:
        stop(proc)
        for child in children_of(proc.pid):
            os.kill(child, signal.SIGKILL)


def bench_idle(setup, window):
    commands = [["sleep", "3600"]] * 50
    rows = []
    floor = None
    setup.cached_copy()
    for name, argv in (("minimal Python supervisor (floor)", setup.minimal(commands)),
                       ("procwrap -m (pyc cached)", setup.procwrap(commands, module=True)),
                       ("procwrap procwrap.py (script)", setup.procwrap(commands)),
                       ("procwrap install's launcher", setup.procwrap(commands,
                                                                       installed=True)),
                       ("compared: -m (pyc cached)", setup.procwrap(commands, module=True)
                        if COMPARE else None),
                       ("compared: procwrap.py (script)",
                        setup.procwrap(commands)[:1] + [COMPARE] + setup.procwrap(commands)[2:]
                        if COMPARE else None),
                       ("supervisord", setup.supervisord(commands)),
                       ("honcho", setup.honcho(commands)),
                       ("circus", setup.circus(commands))):
        if argv is None:
            continue
        if not os.path.exists(argv[0]):
            rows.append((name, "not installed", ""))
            continue
        cwd = setup.dir
        if name.startswith("compared: -m"):
            cwd = cached_dir(COMPARE)
        sample = idle_sample(argv, 50, window, cwd)
        if sample is None:
            rows.append((name, "did not start 50 children", ""))
            continue
        rss, cpu, wake = sample
        floor = floor or rss
        rows.append((name, "RSS %.1f MB (%.2fx floor)" % (rss, rss / floor),
                     "%.1f ms CPU/min, %.0f wake-ups/min" % (cpu, wake)))
    return rows


def bench_term(setup, count):
    """SIGTERM with `count` children: procwrap's exit after the slowest child's exit."""
    commands = [["sleep", "3600"]] * count
    rows = []
    for name, argv in (("procwrap", setup.procwrap(commands)),
                       ("supervisord", setup.supervisord(commands))):
        if not os.path.exists(argv[0]):
            rows.append((name, "not installed", ""))
            continue
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=environ(), cwd=setup.dir)
        if not wait_for(lambda: len(children_of(proc.pid)) >= count, 60, poll=0.01):
            rows.append((name, "did not start", ""))
            stop(proc)
            continue
        time.sleep(1)
        pids = children_of(proc.pid)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        last_child = None
        while proc.poll() is None:
            if last_child is None and not any(alive(p) for p in pids):
                last_child = time.perf_counter()
            time.sleep(0.0005)
        gone = time.perf_counter()
        if last_child is None:
            last_child = gone
        orphans = [p for p in pids if alive(p)]
        rows.append((name, "exit %.1f ms after the last child (%.1f ms after TERM)" % (
            (gone - last_child) * 1000, (gone - sent) * 1000),
            "orphans: %d" % len(orphans)))
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
    return rows


def bench_many(setup, count):
    """`count` children: time to all running, RSS then, time from TERM to exit."""
    commands = [["sleep", "3600"]] * count
    rows = []
    setup.cached_copy()
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    for name, argv in (("minimal Python supervisor (Popen, vfork)", setup.minimal(commands)),
                       ("procwrap -m (pyc cached)", setup.procwrap(commands, module=True)),
                       ("procwrap procwrap.py (script)", setup.procwrap(commands)),
                       ("procwrap -m as PID 1 (unshare --pid)",
                        unshare + setup.procwrap(commands, module=True)),
                       ("supervisord", setup.supervisord(commands))):
        if not shutil.which(argv[0]):
            rows.append((name, "not installed", ""))
            continue
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=environ(), cwd=setup.dir)
        supervisor = proc.pid
        if argv[0] == "unshare":       # the supervisor is unshare's child, PID 1 inside
            wait_for(lambda: children_of(proc.pid), 60)
            supervisor = children_of(proc.pid)[0]
        ok = wait_for(lambda: len(children_of(supervisor)) >= count, 120, poll=0.01)
        running = time.perf_counter() - start
        rss = rss_mb(supervisor)
        pids = children_of(supervisor)
        sent = time.perf_counter()
        os.kill(supervisor, signal.SIGTERM)
        proc.wait(120)
        stopped = time.perf_counter() - sent
        orphans = [p for p in pids if alive(p)]
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        rows.append((name, "%s %d running in %.2f s, RSS %.1f MB" % (
            "all" if ok else "NOT all", count, running, rss),
            "stopped in %.2f s, orphans: %d" % (stopped, len(orphans))))
    return rows


#: A child logging 100 lines/s.  One write a line: print() under
#: PYTHONUNBUFFERED writes each piece on its own, and a child stopped between
#: two would leave half a line, which procwrap rightly logs as a line.
CHATTY = ("import os, sys, time\nname = sys.argv[1]\ni = 0\nwhile True:\n"
          "    os.write(1, ('%s %d\\n' % (name, i)).encode())\n    i += 1\n"
          "    time.sleep(0.01)\n")
CLIENT = ("import http.client, sys, time\nhost, port, seconds = sys.argv[1], int(sys.argv[2]), "
          "float(sys.argv[3])\nc = http.client.HTTPConnection(host, port)\nn = ok = 0\n"
          "end = time.monotonic() + seconds\nwhile time.monotonic() < end:\n"
          "    c.request('GET', '/readiness')\n    r = c.getresponse()\n    r.read()\n"
          "    n += 1\n    ok += r.status == 200\nprint(n, ok)\n")


def free_port():
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def bench_health(setup, seconds, count=50, clients=4):
    port = free_port()
    config = {"processes": [{"name": "p%d" % i, "command": [PYTHON, "-c", CHATTY, "p%d" % i]}
                            for i in range(count)]}
    path = os.path.join(setup.dir, "health.json")
    with open(path, "w") as stream:
        json.dump(config, stream)
    out_path = os.path.join(setup.dir, "health.out")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([PYTHON, PROCWRAP, "-c", path, "--http", "127.0.0.1:%d" % port],
                                stdout=out, env=environ())
    wait_for(lambda: b'"event":"ready"' in open(out_path, "rb").read(), 60)
    started = time.monotonic()
    cpu_before = cpu_seconds(proc.pid)
    runners = [subprocess.Popen([PYTHON, "-c", CLIENT, "127.0.0.1", str(port), str(seconds)],
                                stdout=subprocess.PIPE, universal_newlines=True)
               for _ in range(clients)]
    results = [tuple(map(int, r.communicate()[0].split())) for r in runners]
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(proc.pid) - cpu_before
    stop(proc)
    total = sum(n for n, _ in results)
    ok = sum(o for _, o in results)
    # No line lost: every child's numbers run 0..last without a gap.
    seen = {}
    with open(out_path, "rb") as stream:
        for raw in stream:
            record = json.loads(raw)
            if record.get("stream") == "stdout":
                name, number = record["message"].split()
                seen.setdefault(name, []).append(int(number))
    gaps = sum(1 for numbers in seen.values() if numbers != list(range(len(numbers))))
    lines = sum(len(v) for v in seen.values())
    rate = total / elapsed
    return [("/readiness with %d children logging" % count,
             "%.0f requests/s (%d of them 200)" % (rate, ok),
             "%.1fx the 2,000/s target" % (rate / 2000.0)),
            ("their log lines meanwhile", "%d lines, %d children with a gap" % (lines, gaps),
             "%.0f lines/s" % (lines / elapsed)),
            ("procwrap CPU while serving", "%.0f%% of one core" % (100 * cpu / elapsed), "")]


def bench_probes(setup, seconds, count=50):
    """procwrap's CPU with `count` children, each with a 1 s exec liveness probe.  Not PID
    1, probes are forked so that they get the parent-death signal; as PID 1 (the
    namespace's end takes them anyway) they are started with posix_spawn."""
    rows = []
    measured = {}
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    runs = [(False, False, PROCWRAP), (True, False, PROCWRAP), (True, True, PROCWRAP)]
    if COMPARE:
        runs += [(True, False, COMPARE), (True, True, COMPARE)]
    for probes, pid1, script in runs:
        if pid1 and not shutil.which("unshare"):
            continue
        entry = lambda i: dict(  # noqa: E731
            {"name": "s%d" % i, "command": ["sleep", "100000"]},
            **({"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}
               if probes else {}))
        path = os.path.join(setup.dir, "probes%d.json" % probes)
        with open(path, "w") as stream:
            json.dump({"processes": [entry(i) for i in range(count)]}, stream)
        proc = subprocess.Popen((unshare if pid1 else []) + [PYTHON, script, "-c", path],
                                stdout=subprocess.DEVNULL, env=environ())
        pid = proc.pid
        if pid1:
            wait_for(lambda: children_of(proc.pid), 60)
            pid = children_of(proc.pid)[0]      # procwrap, PID 1 inside
        wait_for(lambda: len(children_of(pid)) >= count, 60)
        time.sleep(2)       # the first round of probes is staggered by start times
        before, started = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        measured[probes, pid1, script] = ((cpu_seconds(pid) - before)
                                          / (time.monotonic() - started))
        if pid1:
            os.kill(pid, signal.SIGTERM)
        stop(proc)
    rows.append(("%d children, no probes (floor)" % count, "%.2f%% of one core"
                 % (100 * measured[False, False, PROCWRAP]), ""))
    for label, script in (("", PROCWRAP), ("compared: ", COMPARE)):
        if (True, False, script) in measured:
            rows.append(("%s%d children, 1 s exec probe each (fork)" % (label, count),
                         "%.2f%% of one core" % (100 * measured[True, False, script]),
                         "target < 5%%; %d probes/s" % count))
        if (True, True, script) in measured:
            rows.append(("%sthe same as PID 1 (posix_spawn)" % label, "%.2f%% of one core"
                         % (100 * measured[True, True, script]), ""))
    return rows


def bench_memory(setup, seconds, count=100):
    """procwrap's CPU and wake-ups with `count` sleeping children, each with a
    memoryLimit (one /proc pass a second for all), against the same without."""
    rows, measured = [], {}
    for limited in (False, True):
        entry = lambda i: dict(  # noqa: E731
            {"name": "s%d" % i, "command": ["sleep", "100000"]},
            **({"memoryLimit": "1Gi"} if limited else {}))
        path = setup.write("memory%d.json" % limited, json.dumps(
            {"processes": [entry(i) for i in range(count)]}))
        proc = subprocess.Popen([PYTHON, PROCWRAP, "-c", path], stdout=subprocess.DEVNULL,
                                env=environ())
        wait_for(lambda: len(children_of(proc.pid)) >= count, 60)
        time.sleep(1)
        before, woken, started = cpu_seconds(proc.pid), wakeups(proc.pid), time.monotonic()
        time.sleep(seconds)
        spent = time.monotonic() - started
        measured[limited] = ((cpu_seconds(proc.pid) - before) / spent,
                             (wakeups(proc.pid) - woken) * 60.0 / spent)
        stop(proc)
    for limited, label in ((False, "%d children, no memoryLimit (floor)" % count),
                           (True, "%d children, memoryLimit each (1 s checks)" % count)):
        cpu, wake = measured[limited]
        rows.append((label, "%.2f%% of one core" % (100 * cpu), "%.0f wake-ups/min" % wake))
    return rows


def all_wakeups(pid):
    """Context switches of every thread of pid (the watch threads too)."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, task)) as stream:
            for line in stream:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def bench_podwatch(setup, seconds, count=50):
    """Wake-ups of every procwrap thread with `count` sleeping children, with
    no watch (the floor), watching preemption (a hanging GET on a metadata
    server that answers as GCE's), and also the pod's containers (a watch
    stream on an API server that answers as Kubernetes'); and the requests
    those servers got in the window."""
    sys.path.insert(0, os.path.dirname(HERE))
    from fake_pod import Kubernetes, Metadata
    metadata = Metadata(hang=3600)         # as GCE's: held until timeout_sec (300 s)
    cert, key = setup.path("k8s.crt"), setup.path("k8s.key")
    subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                           "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                           "-keyout", key, "-out", cert], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    api = Kubernetes("bench", "pod", ["main"], "token", cert, key, hang=3600)
    account = setup.path("serviceaccount")
    os.makedirs(account, exist_ok=True)
    for name, text in (("token", "token"), ("namespace", "bench")):
        setup.write(os.path.join("serviceaccount", name), text)
    shutil.copy(cert, os.path.join(account, "ca.crt"))
    env = environ(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT_HTTPS=str(
        api.port), HOSTNAME="pod", PROCWRAP_SERVICE_ACCOUNT_DIR=account)
    path = setup.write("podwatch.json", json.dumps({"processes": [
        {"name": "s%d" % i, "command": ["sleep", "100000"]} for i in range(count)]}))
    rows = []
    for label, extra in (
            ("%d children, no watch (floor)" % count, []),
            ("... --preemption-url (hanging GET)", ["--preemption-url", metadata.url]),
            ("... and --exit-with-containers (watch)", ["--preemption-url", metadata.url,
                                                        "--exit-with-containers", "main"])):
        asked = len(metadata.requests) + len(api.requests)
        proc = subprocess.Popen([PYTHON, PROCWRAP, "-c", path] + extra,
                                stdout=subprocess.DEVNULL, env=env)
        wait_for(lambda: len(children_of(proc.pid)) >= count, 60)
        time.sleep(2)       # start-up settles; a measurement, not a sync
        before, woken, started = cpu_seconds(proc.pid), all_wakeups(proc.pid), time.monotonic()
        asked = len(metadata.requests) + len(api.requests)
        time.sleep(seconds)
        spent = time.monotonic() - started
        cpu, wake = cpu_seconds(proc.pid) - before, all_wakeups(proc.pid) - woken
        requests = len(metadata.requests) + len(api.requests) - asked
        stop(proc)
        rows.append((label, "%.0f wake-ups/min, %.2f ms CPU/min" % (
            wake * 60.0 / spent, cpu * 60000.0 / spent), "%d requests in %.0f s" % (
                requests, spent)))
    metadata.close()
    api.close()
    return rows


PROM_SERVER = r"""
import http.server, sys
text = "".join("# HELP m%d A metric.\n# TYPE m%d gauge\n" % (f, f) + "".join(
    'm%d{i="%d"} %d\n' % (f, i, i) for i in range(100)) for f in range(10)).encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def bench_prommerge(setup, requests, count=10):
    """GET /prommerge latency with `count` targets of 1,000 samples each,
    beside one target's own answer (the floor)."""
    import urllib.request
    ports = [free_port() for _ in range(count)]
    http_port = free_port()
    config = {"processes": [{"name": "t%d" % i, "command": [PYTHON, "-c", PROM_SERVER,
                                                             str(port)],
                             "promTarget": "http://127.0.0.1:%d/metrics" % port}
                            for i, port in enumerate(ports)]}
    path = setup.write("prommerge.json", json.dumps(config))
    proc = subprocess.Popen([PYTHON, PROCWRAP, "-c", path, "--http", "127.0.0.1:%d"
                             % http_port], stdout=subprocess.DEVNULL, env=environ())

    def fetch(url):
        started = time.perf_counter()
        body = urllib.request.urlopen(url, timeout=30).read()
        return time.perf_counter() - started, body
    wait_for(lambda: all(_listening(port) for port in ports + [http_port]), 60, poll=0.05)
    fetch("http://127.0.0.1:%d/prommerge" % http_port)
    merged = [fetch("http://127.0.0.1:%d/prommerge" % http_port) for _ in range(requests)]
    single = [fetch("http://127.0.0.1:%d/metrics" % ports[0]) for _ in range(requests)]
    stop(proc)
    samples = merged[-1][1].count(b"\n") - merged[-1][1].count(b"# ")
    floor = statistics.median(t for t, _ in single)
    median = statistics.median(t for t, _ in merged)
    return [("one target's own /metrics (floor)", "%.1f ms median" % (floor * 1000), ""),
            ("/prommerge over %d targets x 1,000 samples" % count, "%.1f ms median" % (
                median * 1000), "%.1fx floor; %d samples merged" % (median / floor, samples))]


def _listening(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def bench_remote(setup, runs):
    """procwrap remote against plain ssh, paired runs on one private sshd."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import conftest
    if not os.path.exists("/usr/sbin/sshd") or not os.path.isdir("/run/sshd"):
        return [("remote", "needs openssh-server and /run/sshd", "")]
    sshd = conftest.Sshd(tempfile.mkdtemp(prefix="procwrap-bench-sshd-"))
    sshd.start()
    try:
        ssh = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
        for option in sshd.options()[1:-2:2]:
            ssh += ["-o", option]
        ssh += ["-p", str(sshd.port), "root@127.0.0.1"]
        procwrap = [PYTHON, "-m", "procwrap", "remote"] + sshd.options() + [sshd.host(), "--"]
        cached = cached_dir(PROCWRAP)
        pairs = []
        for _ in range(runs):
            times = []
            for argv in (ssh + ["true"], procwrap + ["true"]):
                start = time.perf_counter()
                subprocess.call(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=cached, env=environ())
                times.append(time.perf_counter() - start)
            pairs.append(times)
        ssh_median = statistics.median(p[0] for p in pairs)
        ours = statistics.median(p[1] for p in pairs)
        ratio = statistics.median(p[1] / p[0] for p in pairs)
        sys.path.insert(0, cached)
        import procwrap as module
        payload = module._Remote("x").payload()
        # The agent's RSS: a command that reports its parent's (the agent's) VmRSS.
        rss = subprocess.run(procwrap + ["sh", "-c", "grep VmRSS /proc/$PPID/status"],
                             stdout=subprocess.PIPE, universal_newlines=True, cwd=cached,
                             env=environ()).stdout.split()
        hosts16 = ",".join("root@%s:%d" % (name, sshd.port) for name in
                           ["127.0.0.%d" % i for i in range(1, 17)])
        start = time.perf_counter()
        subprocess.call(procwrap[:-2] + [hosts16, "--", "true"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, cwd=cached, env=environ())
        many = time.perf_counter() - start
        api = _bench_connect(module, sshd, ssh, runs)
        return [("ssh HOST true (floor)", "%.0f ms" % (ssh_median * 1000), "1.00x"),
                ("procwrap remote HOST -- true", "%.0f ms" % (ours * 1000),
                 "%.2fx ssh, paired (goal <= 1.2x)" % ratio)] + api + [
                ("bootstrap payload (Part I, zlib -6)", "%d bytes" % len(payload), ""),
                ("agent RSS on the remote", " ".join(rss[3:5]) if len(rss) > 4 else "?", ""),
                ("16 hosts (loopback aliases) at once", "%.0f ms" % (many * 1000),
                 "%.2fx one host (goal <= 2x)" % (many / ours)),
                _bench_cut(module, sshd, conftest)]
    finally:
        sshd.stop()


def _bench_connect(module, sshd, ssh, runs):
    """From a running Python (the way the prototype measured): connect() and
    run(['true']) against `ssh HOST true`, paired; then call() round trips
    of a trivial function on the open context."""
    options = sshd.options()[1:-2:2]
    pairs = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.call(ssh + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        middle = time.perf_counter()
        with module.connect(sshd.host(), ssh_options=options, python=PYTHON) as host:
            host.run(["true"])
        pairs.append((middle - start, time.perf_counter() - middle))
    with module.connect(sshd.host(), ssh_options=options, python=PYTHON) as host:
        host.call(os.getpid)
        rounds = []
        for _ in range(2000):
            start = time.perf_counter()
            host.call(os.getpid)
            rounds.append(time.perf_counter() - start)
    return [("connect() + run(['true']) in a running Python",
             "%.0f ms" % (statistics.median(p[1] for p in pairs) * 1000),
             "%.2fx ssh, paired" % statistics.median(p[1] / p[0] for p in pairs)),
            ("call(os.getpid) round trip, open context", "%.3f ms" % (
                statistics.median(rounds) * 1000), "median of 2000 (goal < 1 ms); p99 %.3f ms"
             % (sorted(rounds)[int(len(rounds) * 0.99)] * 1000))]


def _bench_cut(module, sshd, conftest):
    """A silent cut (the bastion's link down) to the remote command gone,
    with the default keepalive."""
    import uuid
    marker = "procwrap-bench-cut-" + uuid.uuid4().hex
    with conftest.hidden_network(sshd) as network:
        bastion, hidden = network
        procwrap = subprocess.Popen(
            [PYTHON, PROCWRAP, "remote"] + sshd.options() + [
                "--via", bastion, hidden, "--", "sh", "-c", "echo up; sleep 300 # " + marker],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procwrap.stdout.readline()
        started = time.perf_counter()
        network.cut()
        while _pids_with(marker) and time.perf_counter() - started < 60:
            time.sleep(0.05)
        gone = time.perf_counter() - started
        procwrap.wait(30)
    return ("silent link cut to remote command gone", "%.1f s" % gone,
            "keepalive %s s (goal < 10 s)" % module.REMOTE_KEEPALIVE)


def _pids_with(marker):
    """Pids whose command line holds `marker` (the remote is this machine)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as stream:
                    if marker.encode() in stream.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


def bench_reporting(setup, seconds):
    """Status updates coalesced into API requests; managed_call's overhead;
    a 409 heartbeat to the command's group gone."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sys.path.insert(0, cached_dir(PROCWRAP))     # never a __pycache__ in the repository
    from fake_api import ApiServer
    import procwrap as module
    rows = []
    api = ApiServer()
    try:
        flood = ("import procwrap, time\n"
                 "u = procwrap.StatusUpdater()\n"
                 "end = time.monotonic() + %r\n"
                 "n = 0\n"
                 "while time.monotonic() < end:\n"
                 "    n += 1\n"
                 "    u.send_update(success_count=n)\n"
                 "    if n %% 100 == 0: time.sleep(0.01)\n"
                 "print(n)\n" % seconds)
        argv = [PYTHON, PROCWRAP, "--api-key", "k", "--api-base-url", api.url, "--task-name",
                "bench", "--status-updates", "--status-update-port", "0",
                "--status-update-interval", "5", "--log-format", "json", "--",
                PYTHON, "-c", flood]
        env = dict(environ(), PYTHONPATH=ROOT)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = 0.0
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout))
        reader.start()
        while process.poll() is None:       # procwrap's own CPU, sampled to its end
            try:
                with open("/proc/%d/stat" % process.pid) as stream:
                    fields = stream.read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / float(ticks)
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        reader.join()
        out = b"".join(lines).decode()
        sent = []
        for line in out.splitlines():
            try:
                message = json.loads(line).get("message", "")
            except ValueError:
                continue
            if message.isdigit() and json.loads(line).get("stream") == "stdout":
                sent.append(message)
        updates = int(sent[-1]) if sent else 0
        requests = len(api.requests)
        rows.append(("status updates sent by the child", "%d in %d s" % (updates, seconds),
                     "%.0f/s" % (updates / float(seconds))))
        rows.append(("API requests for them (interval 5 s)", "%d (start, updates, final)"
                     % requests, "%.1f per minute" % (requests * 60.0 / seconds)))
        rows.append(("procwrap's CPU during it", "%.2f s user+sys" % cpu,
                     "%.1f %% of one core" % (cpu * 100.0 / seconds)))
    finally:
        api.stop()
    # managed_call offline, against a bare call
    def noop(x):
        return x
    rounds = 20000
    start = time.perf_counter()
    for i in range(rounds):
        noop(i)
    bare = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for i in range(rounds):
        module.managed_call(noop, i)
    managed = (time.perf_counter() - start) / rounds
    rows.append(("managed_call(f) offline, per call", "%.1f us" % (managed * 1e6),
                 "%.1f us beyond the call (goal < 1 ms)" % ((managed - bare) * 1e6)))
    start = time.perf_counter()
    for i in range(200):
        module.managed_call(noop, i, timeout=5)
    timed = (time.perf_counter() - start) / 200
    rows.append(("managed_call(f, timeout=5) offline", "%.0f us" % (timed * 1e6),
                 "a thread and a private loop per call"))
    # 409 on a heartbeat to the command's group gone
    api = ApiServer()
    try:
        marker = "procwrap-bench-409-%d" % os.getpid()
        process = subprocess.Popen(
            [PYTHON, PROCWRAP, "--api-key", "k", "--api-base-url", api.url, "--task-name",
             "bench", "--api-heartbeat-interval", "1", "--", "sh", "-c",
             "sleep 300 # " + marker], env=environ())
        api.wait_for(lambda r: len(r) >= 1, what="the start")
        api.plan("PATCH", 409)
        api.wait_for(lambda r: len(r) >= 2, what="the heartbeat")
        started = time.perf_counter()
        while _pids_with(marker) and time.perf_counter() - started < 30:
            time.sleep(0.005)
        gone = time.perf_counter() - started
        process.wait(30)
        rows.append(("409 on a heartbeat to the command's group gone", "%.0f ms" % (
            gone * 1000), "stop signal TERM; exit %d" % process.returncode))
    finally:
        api.stop()
    return rows


def bench_fleet(setup, seconds):
    """--lock on a private etcd: acquire latency, take-over after a SIGKILLed
    holder, and many contenders for a few slots."""
    import shutil
    if not shutil.which("etcd"):
        return [("fleet", "needs etcd (apt-get install etcd-server)", "")]
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import conftest
    etcd = conftest.Etcd()
    rows = []
    try:
        def locked(name, *args):
            return [PYTHON, PROCWRAP, "--lock", name, "--etcd", etcd.url, "--lock-ttl", "3",
                    "--log-format", "json"] + list(args)
        waits = []
        for i in range(50):
            out = subprocess.run(locked("lat") + ["--", "true"], stdout=subprocess.PIPE,
                                 env=environ()).stdout.decode()
            for line in out.splitlines():
                record = json.loads(line)
                if record.get("event") == "lock-acquired":
                    waits.append(record["seconds"])
        waits.sort()
        rows.append(("acquire, uncontended (50 runs)", "%.1f ms median" % (
            statistics.median(waits) * 1000), "p99 %.1f ms" % (waits[-1] * 1000)))
        holder = subprocess.Popen(locked("kill") + ["--", "sleep", "300"],
                                  stdout=subprocess.PIPE, env=environ())
        holder.stdout.readline()
        holder.stdout.readline()
        waiter = subprocess.Popen(locked("kill") + ["--", "true"], stdout=subprocess.PIPE,
                                  env=environ())
        waiter.stdout.readline()            # waiting
        killed = time.perf_counter()
        holder.kill()
        for line in waiter.stdout:
            if b'"lock-acquired"' in line:
                break
        rows.append(("take-over after the holder is SIGKILLed", "%.2f s" % (
            time.perf_counter() - killed), "TTL 3 s"))
        waiter.wait(30)
        holder.wait(30)
        # many contenders, each a loop of short runs, for N = 5
        spans = os.path.join(setup.dir, "spans")
        os.makedirs(spans, exist_ok=True)
        record = ("import sys, time, os; s = time.time(); time.sleep(0.2); "
                  "open(os.path.join(sys.argv[1], '%f' % s), 'w').write(repr(time.time()))")
        import shlex
        loop = ("end=$(( $(date +%%s) + %d )); while [ $(date +%%s) -lt $end ]; do %s; done"
                % (seconds, " ".join(shlex.quote(a) for a in locked(
                    "many", "--max-concurrency", "5") + ["--", PYTHON, "-c", record, spans])))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        contenders = [subprocess.Popen(["sh", "-c", loop], stdout=subprocess.DEVNULL,
                                       env=environ()) for _ in range(50)]
        for process in contenders:
            process.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        intervals = []
        for name in os.listdir(spans):
            with open(os.path.join(spans, name)) as stream:
                intervals.append((float(name), float(stream.read())))
        most = max([sum(1 for s, e in intervals if s <= t < e) for t, _ in intervals] or [0])
        rows.append(("50 contenders for 5 slots, %d s" % seconds, "%d runs, %.1f per second"
                     % (len(intervals), len(intervals) / float(seconds)),
                     "never more than %d at once (goal: 5)" % most))
        rows.append(("CPU per run (procwrap + python child + sh)", "%.0f ms" % (
            (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000.0
            / max(1, len(intervals))), ""))
    finally:
        etcd.stop()
    return rows


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    only = None
    if "--only" in args:
        only = set(args[args.index("--only") + 1].split(","))
    peers = peers_venv(args[args.index("--peers") + 1] if "--peers" in args
                       else "/tmp/procwrap-bench-peers")
    setup = Setup(peers)
    global COMPARE
    if "--compare" in args:
        COMPARE = os.path.abspath(args[args.index("--compare") + 1])
    benches = [
        ("wrap", "wrapping /bin/true", lambda: bench_wrap(setup, 10 if quick else 40)),
        ("logs", "log throughput, 1,000,000 lines of 100 bytes",
         lambda: bench_logs(setup, 100000 if quick else 1000000)),
        ("logfiles", "log files rotated at 50 MB, 1,000,000 lines of 100 bytes",
         lambda: bench_logfiles(setup, 100000 if quick else 1000000)),
        ("idle", "50 idle sleep children", lambda: bench_idle(setup, 5 if quick else 30)),
        ("term", "SIGTERM with 50 children", lambda: bench_term(setup, 50)),
        ("many", "500 children", lambda: bench_many(setup, 100 if quick else 500)),
        ("health", "/readiness under load", lambda: bench_health(setup, 3 if quick else 10)),
        ("probes", "50 exec probes at 1 s", lambda: bench_probes(setup, 5 if quick else 20)),
        ("memory", "memoryLimit on 100 children", lambda: bench_memory(setup, 5 if quick else 30)),
        ("prommerge", "GET /prommerge", lambda: bench_prommerge(setup, 5 if quick else 30)),
        ("podwatch", "preemption and container watches, idle",
         lambda: bench_podwatch(setup, 10 if quick else 60)),
        ("remote", "procwrap remote over ssh", lambda: bench_remote(setup, 5 if quick else 20)),
        ("reporting", "status updates, the API server, managed_call",
         lambda: bench_reporting(setup, 5 if quick else 20)),
        ("fleet", "--lock through etcd", lambda: bench_fleet(setup, 10 if quick else 30)),
    ]
    print("procwrap benchmarks, %s, Python %s" % (time.strftime("%Y-%m-%d"),
                                                  sys.version.split()[0]))
    for key, title, func in benches:
        if only and key not in only:
            continue
        log("running %s ..." % key)
        print("\n## %s" % title)
        for row in func():
            print("  %-48s %-44s %s" % row)
        sys.stdout.flush()
    shutil.rmtree(setup.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
