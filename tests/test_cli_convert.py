"""procwrap convert: a supervisord.conf as a procwrap config, compared with
supervisord 4.x itself running the same file (issue 13; SPECS.md 12.8)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import (PYTHON, WAIT, Background, clean_environ, fixture, run,
                      wait_until)

APP = fixture(os.path.join("supervisord", "app.conf"))
DOCKER = fixture(os.path.join("supervisord", "docker.conf"))
#: What runs at the start of each (beat has autostart=false).
RUNNING = {APP: {"gunicorn_1", "gunicorn_2", "celery", "mailer"},
           DOCKER: {"php-fpm", "nginx", "queue_0", "queue_1", "queue_2"}}
#: What only supervisord puts in a child's environment: its XML-RPC address.
THEIRS_ONLY = {"SUPERVISOR_SERVER_URL"}


def probes(directory, names):
    """{name: what it was given} once every probe has written its file."""
    wait_until(lambda: all(os.path.exists(os.path.join(directory, n + ".json")) for n in names),
               what="%s started" % ", ".join(sorted(names)))
    found = {}
    for entry in os.listdir(directory):
        if entry.endswith(".json"):
            with open(os.path.join(directory, entry)) as stream:
                found[entry[:-5]] = json.load(stream)
    return found


@pytest.mark.parametrize("ini", [APP, DOCKER], ids=["django-shaped", "container-shaped"])
def test_convert_runs_what_supervisord_runs(tmp_path, ini):
    supervisord = shutil.which("supervisord", path=os.path.dirname(sys.executable))
    if supervisord is None:
        pytest.skip("supervisord is not installed (pip install supervisor)")
    theirs_dir, ours_dir = tmp_path / "theirs", tmp_path / "ours"
    theirs_dir.mkdir()
    ours_dir.mkdir()
    env = clean_environ(PROBE_PYTHON=PYTHON)

    running = RUNNING[ini]
    started = subprocess.Popen([supervisord, "-n", "-c", ini], cwd=str(tmp_path),
                               env=dict(env, PROBE_DIR=str(theirs_dir)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        theirs = probes(str(theirs_dir), running)
    finally:
        started.send_signal(signal.SIGTERM)
        started.wait(WAIT)

    config = str(tmp_path / "procwrap.json")
    converted = run("convert", ini, "-o", config, env=dict(env, PROBE_DIR=str(ours_dir)))
    assert converted.returncode == 0, converted.stderr
    procwrap = Background(["-c", config], env=dict(env, PROBE_DIR=str(ours_dir)),
                          cwd=str(tmp_path))
    try:
        ours = probes(str(ours_dir), running)
        time.sleep(0.3)         # beat, were it wrongly started, would have written by now
        ours = probes(str(ours_dir), running)
    finally:
        procwrap.signal(signal.SIGTERM)
        assert procwrap.wait() == 0
    assert set(ours) == set(theirs) == running
    for name in running:
        assert ours[name]["argv"] == theirs[name]["argv"], name
        assert ours[name]["cwd"] == theirs[name]["cwd"], name
        mine, their = ours[name]["env"], theirs[name]["env"]
        their["PROBE_DIR"] = mine["PROBE_DIR"]      # each run's own directory
        assert mine == dict((k, v) for k, v in their.items() if k not in THEIRS_ONLY), name
    if ini == APP:
        assert theirs["gunicorn_2"]["env"]["HOSTS"] == "a.example,b.example"
        assert theirs["celery"]["env"]["SUPERVISOR_GROUP_NAME"] == "background"
    else:
        assert theirs["nginx"]["argv"] == ["nginx", "-g", "daemon off;"]


def test_convert_maps_each_option_and_names_what_it_cannot(tmp_path):
    env = clean_environ(PROBE_DIR="/probe", PROBE_PYTHON="/usr/bin/python3", HOME="/home/x")
    result = run("convert", APP, "-o", str(tmp_path / "out.json"), env=env)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "out.json").read_text())
    here = os.path.dirname(APP)
    assert config["ctlSocket"] == "/probe/supervisor.sock"
    by_name = dict((p["name"], p) for p in config["processes"])
    assert list(by_name) == ["gunicorn_1", "gunicorn_2", "celery", "beat", "mailer"]
    gunicorn = by_name["gunicorn_2"]
    assert gunicorn["command"] == ["/usr/bin/python3", here + "/probe.py", "gunicorn_2",
                                   "--bind", "127.0.0.1:8002"]
    assert gunicorn["env"]["PORT"] == "8002" and gunicorn["env"]["HOME_SEEN"] == "/home/x"
    assert gunicorn["env"]["DJANGO_SETTINGS_MODULE"] == "app.settings.production"
    assert dict((k, gunicorn[k]) for k in gunicorn if k not in ("name", "command", "env")) == {
        "workingDir": here, "restartPolicy": "Always", "startSeconds": 2,
        "backoff": {"limit": 3}, "priority": 100, "stopSignal": "QUIT", "stopTimeout": 5,
        "mergeStderr": True, "logs": {"file": "/probe/gunicorn_2.log", "maxBytes": "10MB",
                                      "backups": 3}}
    celery = by_name["celery"]
    assert celery["restartPolicy"] == "OnFailure" and celery["successCodes"] == [0, 2]
    assert celery["backoff"] == {"limit": 5} and celery["startSeconds"] == 1
    assert by_name["beat"]["autostart"] is False
    assert by_name["mailer"]["backoff"] == {"limit": None} and "startSeconds" not in \
        by_name["mailer"]
    assert by_name["mailer"]["env"]["MAIL_DIR"] == os.path.join(here, "conf.d")
    lines = result.stderr.splitlines()[:-1]
    assert all(line.startswith("procwrap: note: ") for line in lines)
    noted = [line.split(" ", 3)[3].split(":")[0] for line in lines]
    assert noted == [
        "[unix_http_server] chmod", "[supervisord] childlogdir", "[supervisord] logfile",
        "[supervisord] pidfile", "[rpcinterface", "[supervisorctl]", "[group",
        "[program", "[program", "[program", "[program", "[program"]
    assert "[program:celery] umask: not carried over; procwrap has no umask field" \
        in result.stderr
    assert "[group:background]: not carried over; procwrap has no groups" in result.stderr
    assert ("[program:gunicorn] stdout_logfile: one file for 2 processes; procwrap gives each "
            "its own, /probe/gunicorn_1.log") in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "procwrap: wrote %s: 5 processes; run procwrap check -c %s"
        % (tmp_path / "out.json", tmp_path / "out.json"))
    assert run("check", "-c", str(tmp_path / "out.json"), env=env).returncode == 0


def test_convert_yaml_on_stdout_reads_back_the_same(tmp_path):
    yaml = pytest.importorskip("yaml")
    env = clean_environ(PROBE_DIR="/probe", PROBE_PYTHON="/usr/bin/python3")
    text = run("convert", APP, env=env)
    assert text.returncode == 0 and text.stdout.startswith("# procwrap config converted from")
    run("convert", APP, "-o", str(tmp_path / "out.json"), env=env)
    assert yaml.safe_load(text.stdout) == json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize("ini, error", [
    ("[program:a]\nautostart=yes\n", "[program:a]: command is missing; supervisord requires it"),
    ("[program:a]\ncommand=x\nnumprocs=2\n", "[program:a] process_name: with numprocs, it "
     "must contain %(process_num)s, as supervisord requires"),
    ("[program:a]\ncommand=x %(ENV_NOPE_NOT_SET)s\n", "[program:a] command: "
     "%(ENV_NOPE_NOT_SET)s names nothing supervisord would know; known: ENV_*, here, "
     "program_name, process_num, group_name, numprocs, host_node_name"),
    ("[program:a]\ncommand=x\nautorestart=maybe\n", "[program:a] autorestart: 'maybe'; write "
     "true, false or unexpected"),
    ("[program:a]\ncommand=x\nenvironment=A=1,B\n", "[program:a] environment: expected "
     "KEY=value pairs separated by commas"),
    ("[supervisord]\n", ": no [program:x] section; nothing to convert"),
    ("[program:a\n", ": File contains no section headers.; fix the ini syntax"),
])
def test_convert_refuses_what_supervisord_refuses(tmp_path, ini, error):
    path = tmp_path / "bad.conf"
    path.write_text(ini)
    result = run("convert", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("procwrap: error: " + str(path)), result.stderr
    assert result.stderr.endswith(error + "\n"), result.stderr


def test_convert_never_writes_over_a_file(tmp_path):
    target = tmp_path / "procwrap.yaml"
    target.write_text("mine\n")
    env = clean_environ(PROBE_DIR="/probe", PROBE_PYTHON="/usr/bin/python3")
    result = run("convert", APP, "-o", str(target), env=env)
    assert result.returncode == 2 and target.read_text() == "mine\n"
    assert "is a file that procwrap did not create" in result.stderr
    assert run("convert", APP, "-o", str(tmp_path / "x.ini"), env=env).stderr == (
        "procwrap: error: convert: -o %s: name it .json, .yaml or .yml\n" % (tmp_path / "x.ini"))
    assert run("convert").returncode == 2
    assert "usage: procwrap convert" in run("convert", "--help").stdout


def test_a_program_named_convert_runs_after_the_dashes(tmp_path):
    """ImageMagick's convert: `procwrap -- convert ...` wraps it; --help says so."""
    program = tmp_path / "convert"
    program.write_text("#!/bin/sh\necho imagemagick \"$@\"\n")
    program.chmod(0o755)
    env = clean_environ(PATH="%s:%s" % (tmp_path, os.environ["PATH"]))
    result = run("--", "convert", "in.png", "out.jpg", env=env)
    assert (result.returncode, result.stdout) == (0, "imagemagick in.png out.jpg\n")
    assert "install, convert, wait; help" in run("--help").stdout


@pytest.mark.parametrize("options, logs, note", [
    ("stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n", None,
     "stdout_logfile: /dev/stdout: procwrap's records of it go to its stdout already"),
    ("stdout_logfile=AUTO\n", None, "stdout_logfile: AUTO, a file in childlogdir; procwrap "
     "writes a file when given its path (logs.file, or the top-level logs.directory)"),
    ("stdout_logfile=NONE\n", None, None),
    ("stdout_logfile=%(here)s/a.log\nstdout_logfile_maxbytes=1GB\nstdout_logfile_backups=0\n",
     {"file": "HERE/a.log", "maxBytes": "1GB", "backups": 0}, None),
    ("stdout_logfile=/l/out.log\nstderr_logfile=/l/err.log\n", {"file": "/l/out.log"},
     "stderr_logfile: procwrap writes one file a process, each record naming its stream: "
     "stderr goes to /l/out.log too"),
    ("stderr_logfile=/l/err.log\n", {"file": "/l/err.log"},
     "stderr_logfile: procwrap writes one file a process: its stdout goes to /l/err.log too"),
    ("redirect_stderr=true\nstdout_logfile=/l/o.log\nstderr_logfile=/l/e.log\n",
     {"file": "/l/o.log"}, "stderr_logfile: ignored with redirect_stderr, as supervisord "
     "ignores it"),
])
def test_convert_log_files(tmp_path, options, logs, note):
    path = tmp_path / "one.conf"
    path.write_text("[program:one]\ncommand=true\n" + options)
    result = run("convert", str(path), "-o", str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stderr
    entry = json.loads((tmp_path / "out.json").read_text())["processes"][0]
    if logs and "HERE" in logs["file"]:
        logs["file"] = logs["file"].replace("HERE", str(tmp_path))
    assert entry.get("logs") == logs
    notes = [line for line in result.stderr.splitlines() if "note:" in line and "stopasgroup"
             not in line]
    assert notes == (["procwrap: note: %s [program:one] %s" % (path, note)] if note else [])
