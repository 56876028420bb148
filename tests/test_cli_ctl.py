"""procwrap ctl against a running supervisor, end to end over its control socket."""
import json
import os
import signal
import stat
import subprocess

from conftest import PROCWRAP, PYTHON, Background, clean_environ, run, wait_until, write_config

TICKER = [PYTHON, "-u", "-c", "import time\nn = 0\nwhile True:\n    print('tick', n)\n"
          "    n += 1\n    time.sleep(0.05)\n"]


def start(background, tmp_path, processes, **top):
    socket_path = str(tmp_path / "ctl.sock")
    top["processes"] = processes
    config = write_config(tmp_path, top)
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    for entry in processes:
        procwrap.expect_event("started", entry["name"])

    def ctl(*args, **kwargs):
        env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)
        return run("ctl", *args, env=env, **kwargs)
    return procwrap, ctl, config


def test_status_stop_start_restart_signal(background, tmp_path):
    procwrap, ctl, _ = start(background, tmp_path, [
        {"name": "web", "command": ["sleep", "300"]},
        {"name": "printer", "command": [PYTHON, "-c", "import signal, sys, time\n"
                                        "signal.signal(signal.SIGHUP, lambda *a: print('HUP', "
                                        "flush=True))\nprint('ready', flush=True)\n"
                                        "while True: time.sleep(1)\n"]}])
    assert stat.S_IMODE(os.stat(str(tmp_path / "ctl.sock")).st_mode) == 0o600
    table = ctl("status")
    assert table.returncode == 0
    header, web, printer = table.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT"]
    assert web.split()[:2] == ["web", "running"] and web.split()[4] == "0"

    assert ctl("stop", "web").stdout == "web: stopped\n"     # once it has
    assert json.loads(ctl("--json", "status").stdout)["processes"][0]["state"] == "stopped"
    assert ctl("start", "web").stdout == "web: started\n"
    procwrap.expect_event("started", "web", count=2)
    again = ctl("start", "web")
    assert again.returncode == 1
    assert again.stderr == "procwrap: error: ctl start: web is already running\n"

    first = procwrap.expect_event("started", "web", count=2)["pid"]
    assert ctl("restart", "web").returncode == 0
    assert procwrap.expect_event("started", "web", count=3)["pid"] != first

    procwrap.expect('"message":"ready"')
    assert ctl("signal", "HUP", "printer").returncode == 0
    procwrap.expect('"message":"HUP"')

    assert ctl("shutdown").stdout == "shutting down\n"
    assert procwrap.wait() == 0
    assert not os.path.exists(str(tmp_path / "ctl.sock"))


def test_tail_and_follow(background, tmp_path):
    procwrap, ctl, _ = start(background, tmp_path, [{"name": "ticker", "command": TICKER}])
    procwrap.expect('"message":"tick 20"')
    tail = ctl("tail", "-n", "3", "ticker")
    lines = tail.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("tick ") for line in lines)
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    # -f: the recent lines, then new ones as they come; stop after a few.
    follower = Background([], env=clean_environ(PROCWRAP_CTL_SOCKET=str(tmp_path / "ctl.sock")),
                          command=[PYTHON, PROCWRAP, "ctl", "tail", "-f", "-n", "1", "ticker"])
    try:
        first = int(follower.expect("tick").split()[1])
        later = int(follower.expect("tick", count=5).split()[1])
        assert later >= first + 4
    finally:
        follower.kill()
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_errors_name_the_thing(background, tmp_path):
    procwrap, ctl, _ = start(background, tmp_path, [{"name": "web", "command": ["sleep", "300"]}])
    wrong = ctl("stop", "wbe")
    assert (wrong.returncode, wrong.stderr) == (
        2, "procwrap: error: ctl stop: no process named 'wbe'; did you mean 'web'?\n")
    bad = ctl("stpo", "web")
    assert (bad.returncode, bad.stderr) == (
        2, "procwrap: error: ctl: unknown command 'stpo'; did you mean 'stop'?; see procwrap "
           "ctl --help\n")
    arity = ctl("signal", "web")
    assert (arity.returncode, arity.stderr) == (
        2, "procwrap: error: ctl signal: expects SIGNAL NAME...; see procwrap ctl --help\n")
    signal_name = ctl("signal", "HUPP", "web")
    assert signal_name.returncode == 2 and "expected a signal name" in signal_name.stderr
    procwrap.signal(signal.SIGTERM)
    procwrap.wait()
    gone = ctl("status")
    assert gone.returncode == 69
    assert gone.stderr.startswith("procwrap: error: ctl: cannot connect to ")
    nowhere = run("ctl", "status")
    assert (nowhere.returncode, nowhere.stderr) == (
        2, "procwrap: error: ctl: no socket; give --socket PATH, -c FILE (its ctlSocket) or set "
           "PROCWRAP_CTL_SOCKET to the supervisor's --ctl-socket\n")


def test_reload_adds_removes_and_restarts_what_changed(background, tmp_path):
    processes = [{"name": "keep", "command": ["sleep", "300"]},
                 {"name": "change", "command": ["sleep", "300"]},
                 {"name": "drop", "command": ["sleep", "300"]}]
    procwrap, ctl, config = start(background, tmp_path, processes)
    pids = dict((name, procwrap.expect_event("started", name)["pid"])
                for name in ("keep", "change", "drop"))
    with open(config, "w") as stream:
        json.dump({"processes": [
            {"name": "keep", "command": ["sleep", "300"]},
            {"name": "change", "command": ["sleep", "301"]},
            {"name": "new", "command": ["sleep", "300"]}]}, stream)
    answer = ctl("reload")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == "reloaded: added new; removed drop; changed change\n"
    procwrap.expect_event("started", "new")
    changed = procwrap.expect_event("started", "change", count=2)["pid"]
    assert changed != pids["change"]
    status = json.loads(ctl("--json", "status").stdout)["processes"]
    assert sorted(p["name"] for p in status) == ["change", "keep", "new"]
    assert [p["pid"] for p in status if p["name"] == "keep"] == [pids["keep"]]
    with open(config, "w") as stream:
        stream.write('{"processes": [{"name": "x", "command": ["true"], "restartPolcy": "Never"}]}')
    broken = ctl("reload")
    assert broken.returncode == 1
    assert "restartPolcy: unknown field; did you mean 'restartPolicy'?" in broken.stderr
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_pid_as_supervisorctl_gives_it(background, tmp_path):
    procwrap, ctl, _ = start(background, tmp_path, [
        {"name": "web", "command": ["sleep", "300"]}])
    pid = procwrap.expect_event("started", "web")["pid"]
    answer = ctl("pid", "web")
    assert (answer.returncode, answer.stdout) == (0, "%d\n" % pid)
    assert json.loads(ctl("--json", "pid", "web").stdout)["pid"] == pid
    assert ctl("stop", "web").returncode == 0
    wait_until(lambda: ctl("pid", "web").returncode == 1, what="web stopped")
    assert ctl("pid", "web").stderr.startswith("procwrap: error: ctl pid: web has no pid here")
    assert ctl("pid").returncode == 2
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_names_patterns_and_all_as_supervisorctl_takes_them(background, tmp_path):
    procwrap, ctl, _ = start(background, tmp_path, [
        {"name": "web_1", "command": ["sleep", "300"]},
        {"name": "web_2", "command": ["sleep", "300"]},
        {"name": "worker", "command": ["sleep", "300"]}])
    stopped = ctl("stop", "web_*")
    assert (stopped.returncode, stopped.stdout) == (0, "web_1: stopped\nweb_2: stopped\n")
    rows = ctl("status", "web_*", "worker").stdout.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [["web_1", "stopped"], ["web_2", "stopped"],
                                                 ["worker", "running"]]
    again = ctl("stop", "web_1")
    assert (again.returncode, again.stderr) == (
        1, "procwrap: error: ctl stop: web_1 is not running (stopped)\n")
    every = ctl("start", "all")
    assert every.returncode == 1        # worker was running: refused, the rest started
    assert every.stdout == "web_1: started\nweb_2: started\n"
    assert every.stderr == "procwrap: error: ctl start: worker is already running\n"
    signalled = ctl("signal", "TERM", "web_1", "worker")
    assert signalled.stdout == "web_1: sent SIGTERM\nworker: sent SIGTERM\n"
    none = ctl("stop", "db*")
    assert (none.returncode, none.stderr) == (
        2, "procwrap: error: ctl stop: no process named 'db*'; known: web_1, web_2, worker\n")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_restart_waits_for_start_seconds_and_says_when_it_fails(background, tmp_path):
    flag = tmp_path / "healthy"
    flag.write_text("")
    script = "test -e %s && exec sleep 300; echo broken; exit 3" % flag
    procwrap, ctl, _ = start(background, tmp_path, [
        {"name": "app", "command": ["sh", "-c", script], "startSeconds": 1,
         "backoff": {"initial": 0.1, "limit": 1}}])
    import time
    began = time.monotonic()
    restarted = ctl("restart", "app")
    assert (restarted.returncode, restarted.stdout) == (0, "app: started\n")
    assert time.monotonic() - began >= 1.0          # it ran for its startSeconds first
    flag.unlink()
    failed = ctl("restart", "app")
    assert failed.returncode == 1
    assert failed.stderr == ("procwrap: error: ctl restart: app did not start: exited with "
                             "status 3\n")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_tail_of_one_stream_and_maintail(background, tmp_path):
    script = "echo to-out; echo to-err >&2; exec sleep 300"
    procwrap, ctl, _ = start(background, tmp_path, [
        {"name": "app", "command": ["sh", "-c", script]}])
    procwrap.expect('"to-err"')
    procwrap.expect('"to-out"')
    assert ctl("tail", "app", "stderr").stdout == "to-err\n"
    assert ctl("tail", "app", "stdout").stdout == "to-out\n"
    assert ctl("tail", "app", "both").returncode == 2
    own = ctl("maintail", "-n", "2").stdout.splitlines()
    assert len(own) == 2 and all(json.loads(line)["process"] == "procwrap" for line in own)
    assert json.loads(own[-1])["event"] in ("ready", "started")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_ctl_config_finds_the_socket(background, tmp_path):
    socket_path = str(tmp_path / "ctl.sock")
    config = write_config(tmp_path, {"ctlSocket": socket_path, "processes": [
        {"name": "web", "command": ["sleep", "300"]}]})
    procwrap = background("-c", config)
    procwrap.expect_event("started", "web")
    assert run("ctl", "-c", config, "pid", "web").returncode == 0
    plain = write_config(tmp_path, {"processes": [{"name": "a", "command": ["true"]}]},
                         "plain.json")
    assert run("ctl", "-c", plain, "status").stderr == (
        "procwrap: error: ctl -c %s: it has no ctlSocket; give --socket PATH (the --ctl-socket "
        "procwrap was started with)\n" % plain)
    assert run("ctl", "-c", config, "--socket", socket_path, "status").stderr == (
        "procwrap: error: ctl: give --socket PATH or -c FILE, not both\n")
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: sleep 1\n")
    assert "a Procfile has no ctlSocket" in run("ctl", "-c", str(procfile), "status").stderr
    run("ctl", "-c", config, "shutdown")
    assert procwrap.wait() == 0


def test_reload_of_a_config_from_stdin_says_it_needs_a_file(tmp_path):
    socket_path = str(tmp_path / "ctl.sock")
    config = json.dumps({"processes": [{"name": "web", "command": ["sleep", "300"]}]})
    child = subprocess.Popen([PYTHON, PROCWRAP, "-c", "-", "--ctl-socket", socket_path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_environ())
    child.stdin.write(config.encode())
    child.stdin.close()
    env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)
    try:
        wait_until(lambda: run("ctl", "pid", "web", env=env).returncode == 0, what="web up")
        answer = run("ctl", "reload", env=env)
        assert (answer.returncode, answer.stderr) == (
            1, "procwrap: error: ctl reload: reload: the config was read from stdin, which "
               "cannot be read again; start procwrap with -c FILE to reload it\n")
    finally:
        run("ctl", "shutdown", env=env)
        assert child.wait(60) == 0
