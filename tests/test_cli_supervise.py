"""Supervisor mode through the CLI: configs, init, restarts, essential, dependsOn, shutdown,
PID 1."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import (IN_PID_NAMESPACE, PROCWRAP, PYTHON, WAIT, clean_environ, events, fixture,
                      lines_of, pid_alive, records, run, wait_until, write_config)


def sh(name, script, **fields):
    entry = {"name": name, "command": ["sh", "-c", script]}
    entry.update(fields)
    return entry


def test_demo_config_runs_to_the_end():
    result = run("-c", fixture("demo.json"))
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "prepare") == ["preparing the demo"]
    assert lines_of(result.stdout, "ticker") == ["tick 1", "tick 2", "tick 3"]
    assert lines_of(result.stdout, "flaky") == ["flaky run"] * 3
    worker = [r for r in records(result.stdout) if r.get("process") == "worker"]
    assert worker[0]["tier"] == "back"
    assert [e["name"] for e in events(result.stdout, "fatal")] == ["flaky"]


def test_json_records_have_the_documented_fields(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("app", "echo hello", restartPolicy="Never", labels={"team": "core"})]})
    result = run("-c", config)
    line = [r for r in records(result.stdout) if r.get("process") == "app"][0]
    assert set(line) == {"time", "process", "stream", "message", "team"}
    assert line["stream"] == "stdout" and line["message"] == "hello"
    # RFC 3339, UTC, milliseconds
    import re
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["time"])


@pytest.mark.parametrize("kind", ["json", "toml", "yaml", "stdin", "env"])
def test_config_formats(tmp_path, kind):
    config = {"processes": [sh("one", "echo from-one", restartPolicy="Never")]}
    env = clean_environ()
    if kind == "json":
        args = ["-c", write_config(tmp_path, config)]
    elif kind == "toml":
        args = ["-c", write_config(tmp_path, textwrap.dedent('''
            [[processes]]
            name = "one"
            command = ["sh", "-c", "echo from-one"]
            restartPolicy = "Never"
            '''), "procwrap.toml")]
        pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    elif kind == "yaml":
        pytest.importorskip("yaml")
        args = ["-c", write_config(tmp_path, textwrap.dedent('''
            processes:
              - name: one
                command: [sh, -c, echo from-one]
                restartPolicy: Never
            '''), "procwrap.yaml")]
    elif kind == "stdin":
        args = ["-c", "-"]
    else:
        args = []
        env["PROCWRAP_CONFIG"] = json.dumps(config)
    result = run(*args, env=env, input=json.dumps(config) if kind == "stdin" else None)
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "one") == ["from-one"]


def test_init_runs_in_order_before_processes(tmp_path):
    config = write_config(tmp_path, {
        "init": [sh("first", "echo 1"), sh("second", "echo 2")],
        "processes": [sh("main", "echo 3", restartPolicy="Never")]})
    result = run("-c", config)
    assert result.returncode == 0
    order = [r["message"] for r in records(result.stdout) if r.get("stream") == "stdout"]
    assert order == ["1", "2", "3"]


def test_failed_init_stops_everything(tmp_path):
    config = write_config(tmp_path, {
        "init": [sh("migrate", "echo migrating; exit 4"), sh("never", "echo no")],
        "processes": [sh("main", "echo no")]})
    result = run("-c", config)
    assert result.returncode == 4
    assert lines_of(result.stdout, "never") == [] and lines_of(result.stdout, "main") == []
    assert events(result.stdout, "init-failed")[0]["name"] == "migrate"


@pytest.mark.parametrize("policy, status, runs", [
    ("Never", 0, 1), ("Never", 3, 1), ("OnFailure", 0, 1), ("OnFailure", 3, 3),
    ("Always", 0, 3), ("Always", 3, 3)])
def test_restart_policies(tmp_path, policy, status, runs):
    config = write_config(tmp_path, {"processes": [
        sh("job", "echo run; exit %d" % status, restartPolicy=policy,
           backoff={"initial": 0.01, "limit": 2})]})
    result = run("-c", config)
    assert lines_of(result.stdout, "job") == ["run"] * runs
    assert result.returncode == status


def test_backoff_doubles_and_caps(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("job", "exit 1", backoff={"initial": 0.01, "factor": 3, "max": 0.05, "limit": 4})]})
    result = run("-c", config)
    assert [e["delay"] for e in events(result.stdout, "backoff")] == [0.01, 0.03, 0.05, 0.05]
    assert events(result.stdout, "fatal")[0]["message"] == "job: giving up after 4 restarts"
    assert result.returncode == 1


def test_essential_process_ends_the_run_with_its_status(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "server", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"]},
        sh("job", "echo working; exit 5", restartPolicy="Never", essential=True,
           dependsOn=["server"])]})
    result = run("-c", config)
    assert result.returncode == 5
    assert [e["name"] for e in events(result.stdout, "stopping")] == ["server"]
    assert [e["status"] for e in events(result.stdout, "exited") if e["name"] == "server"] \
        in ([0], [143])      # it may be stopped before its handlers are in place
    assert "shutting down (essential process job ended)" in result.stdout


def test_essential_with_always_ends_when_it_gives_up(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("other", "exec sleep 300"),
        sh("core", "exit 9", essential=True, backoff={"initial": 0.01, "limit": 1})]})
    result = run("-c", config)
    assert result.returncode == 9
    assert "essential process core gave up" in result.stdout


def test_depends_on_starts_after_running(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("app", "echo app; exit 0", restartPolicy="Never", dependsOn=["db", "cache"]),
        sh("db", "echo db; exec sleep 300", stopTimeout=1),
        sh("cache", "echo cache; exec sleep 300"),
        sh("end", "exit 0", restartPolicy="Never", essential=True, dependsOn=["app"])]})
    result = run("-c", config)
    assert result.returncode == 0
    started = [e["name"] for e in events(result.stdout, "started")]
    assert started.index("app") > started.index("db")
    assert started.index("app") > started.index("cache")
    assert started.index("end") > started.index("app")      # a one-shot that finished well


def test_dependency_that_fails_for_good_abandons_dependents(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "db", "command": ["no-such-db-procwrap"], "restartPolicy": "Never"},
        sh("app", "echo never", dependsOn=["db"])]})
    result = run("-c", config)
    assert lines_of(result.stdout, "app") == []
    assert result.returncode == 127
    assert "app: not starting, its dependency db exited with status 127" in result.stdout


def test_skip_leaves_entries_out(tmp_path):
    config = write_config(tmp_path, {
        "init": [sh("seed", "echo seed")],
        "processes": [sh("a", "echo a", restartPolicy="Never"),
                      sh("b", "echo b", restartPolicy="Never", dependsOn=["c"]),
                      sh("c", "echo c", restartPolicy="Never")]})
    result = run("-c", config, "--skip", "seed,c")
    assert result.returncode == 0, result.stderr
    assert [r["message"] for r in records(result.stdout) if r.get("stream")] == ["a", "b"] or \
        sorted(r["message"] for r in records(result.stdout) if r.get("stream")) == ["a", "b"]
    assert lines_of(result.stdout, "seed") == [] and lines_of(result.stdout, "c") == []


def test_env_pass_policy_keeps_procwrap_secrets_from_children(tmp_path):
    config = write_config(tmp_path, {
        "env": {"pass": ["PATH", "KEEP_*"]},
        "processes": [sh("show", "env | sort | grep -v '^PWD=\\|^SHLVL=\\|^_='",
                         restartPolicy="Never", env={"OWN": "1"})]})
    env = clean_environ(KEEP_ME="yes", SECRET_TOKEN="s3cr3t", PROCWRAP_LOG_FORMAT="json")
    result = run("-c", config, env=env)
    seen = dict(line.split("=", 1) for line in lines_of(result.stdout, "show"))
    assert set(seen) == {"PATH", "KEEP_ME", "OWN"}
    assert "s3cr3t" not in result.stdout


def test_env_forms_and_expansion(tmp_path):
    envfile = tmp_path / "x.env"
    envfile.write_text("FROM_FILE=file\nBASE=from-file\n")
    config = write_config(tmp_path, {"processes": [
        {"name": "show", "command": ["sh", "-c", "echo $A $B $C $(GREETING)"],
         "args": ["ignored-by-sh"], "restartPolicy": "Never", "envFile": str(envfile),
         "env": [{"name": "A", "value": "$(BASE)-a"}, {"name": "B", "value": "$$(BASE)"},
                 {"name": "C", "value": 3}, {"name": "GREETING", "value": "hi"}]}]})
    result = run("-c", config)
    assert lines_of(result.stdout, "show") == ["from-file-a $(BASE) 3 hi"]


def test_shutdown_on_term_stops_each_with_its_signal(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"]},
        {"name": "b", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "INT"],
         "stopSignal": "INT"},
        {"name": "stubborn", "command": [PYTHON, fixture("print_signals.py")],
         "stopTimeout": 0.3}]})
    bg = background("-c", config)
    bg.expect("ready (pid:", count=3)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    out = bg.stdout
    assert lines_of(out, "a")[-1] == "SIGTERM"
    assert lines_of(out, "b")[-1] == "SIGINT"
    killing = events(out, "killing")[0]["message"]
    match = re.match(r"stubborn: still running ([0-9.]+) s after SIGTERM; sending SIGKILL "
                     r"to its group$", killing)
    assert match and float(match.group(1)) >= 0.3, killing    # the grace, as it really was
    assert events(out, "exit")[0]["status"] == 0


def test_shutdown_stops_dependents_first(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "db", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"]},
        {"name": "app", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"],
         "dependsOn": ["db"]}]})
    bg = background("-c", config)
    bg.expect("ready (pid:", count=2)
    bg.signal(signal.SIGINT)
    assert bg.wait() == 0
    stops = [e["name"] for e in events(bg.stdout, "stopping")]
    assert stops == ["app", "db"]


def test_second_signal_does_not_cut_the_grace(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "slow", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "USR1"],
         "stopTimeout": 600}]})
    bg = background("-c", config)
    bg.expect("ready (pid:")
    bg.signal(signal.SIGTERM)
    bg.expect("SIGTERM")
    bg.signal(signal.SIGTERM)
    bg.expect("waiting out the grace period")
    assert bg.proc.poll() is None
    bg.signal(signal.SIGUSR1)           # forwarded; it exits on USR1
    assert bg.wait() == 0


def test_kill_on_second_signal(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "slow", "command": [PYTHON, fixture("print_signals.py")], "stopTimeout": 600}]})
    bg = background("-c", config, "--kill-on-second-signal")
    bg.expect("ready (pid:")
    bg.signal(signal.SIGTERM)
    bg.expect("SIGTERM")
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    assert events(bg.stdout, "exited")[0]["status"] == 137


def test_hup_is_forwarded_to_every_process(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"]},
        {"name": "b", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"]}]})
    bg = background("-c", config)
    bg.expect("ready (pid:", count=2)
    bg.signal(signal.SIGHUP)
    bg.expect("SIGHUP", count=2)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0


def test_each_child_has_its_own_session(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("a", "ps -o pid=,pgid=,sid= -p $$$$", restartPolicy="Never")]})
    result = run("-c", config)
    pid, pgid, sid = lines_of(result.stdout, "a")[0].split()
    assert pid == pgid == sid


def test_user_per_process(tmp_path, test_user):
    config = write_config(tmp_path, {"processes": [
        sh("as-user", "id -un; echo $HOME", restartPolicy="Never", user=test_user.pw_name)]})
    result = run("-c", config)
    assert lines_of(result.stdout, "as-user") == [test_user.pw_name, test_user.pw_dir]


def test_orphans_are_reaped_as_subreaper(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "spawner", "command": [PYTHON, fixture("spawn_orphans.py"), "3"],
         "restartPolicy": "Never"}]})
    result = run("-c", config)
    orphans = sorted(int(line.split()[1]) for line in lines_of(result.stdout, "spawner")
                     if line.startswith("orphan"))
    reaped = sorted(e["pid"] for e in events(result.stdout, "reaped"))
    assert len(orphans) == 3
    assert set(orphans) <= set(reaped)


def test_pid1_in_a_pid_namespace_leaves_no_zombie_or_orphan(tmp_path):
    # The spawner leaves 4 lingering orphans and ends the run (essential); each
    # orphan must be reaped by procwrap and nothing may be left once it exits.
    config = write_config(tmp_path, {"processes": [
        {"name": "spawner", "command": [PYTHON, fixture("spawn_orphans.py"), "4", "linger"],
         "restartPolicy": "Never", "essential": True},
        sh("other", "exec sleep 300")]})
    script = ("%s %s -c %s; echo status=$?; echo left=$(ps -eo comm= | grep -c -e sleep -e python)"
              % (PYTHON, PROCWRAP, config))
    result = subprocess.run(IN_PID_NAMESPACE + ["sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT, env=clean_environ())
    lines = result.stdout.splitlines()
    tail = lines[-2:]
    assert tail[0] == "status=0", result.stdout + result.stderr
    # No sleep and no python left in the namespace: no orphan survived.
    assert tail[1] == "left=0", result.stdout
    log = "\n".join(lines[:-2])
    orphans = set(int(line.split()[1]) for line in lines_of(log, "spawner")
                  if line.startswith("orphan"))
    assert len(orphans) == 4
    assert orphans <= set(e["pid"] for e in events(log, "reaped"))     # no zombie left


def test_procwrap_as_pid1_reaps_orphans_in_wrap_mode():
    # The orphans exit at once; wait (bounded) for the zombie count to reach 0.
    script = ("%s %s 3; i=0; while [ $(ps -eo stat= | grep -c ^Z) != 0 ] && [ $i -lt 200 ]; "
              "do sleep 0.05; i=$((i+1)); done; ps -eo stat= | grep -c ^Z || true"
              % (PYTHON, fixture("spawn_orphans.py")))
    result = subprocess.run(IN_PID_NAMESPACE + [PYTHON, PROCWRAP, "--", "sh", "-c", script],
                            stdout=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT, env=clean_environ())
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == "0"


def test_sigkilled_procwrap_leaves_no_child(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        sh("a", "echo pid $$$$; exec sleep 300"), sh("b", "echo pid $$$$; exec sleep 300")]})
    bg = background("-c", config)
    bg.expect("pid ", count=2)
    pids = [int(r["message"].split()[1]) for r in records(bg.stdout) if r.get("stream")]
    bg.proc.kill()
    bg.wait()
    for pid in pids:
        wait_until(lambda: not pid_alive(pid), what="child %d to die with procwrap" % pid)


def test_check_accepts_a_valid_config():
    result = run("check", "-c", fixture("demo.json"))
    assert result.returncode == 0
    assert "is valid: 1 init entry, 3 processes" in result.stdout


def test_group_member_that_ignores_term_is_killed_at_exit(tmp_path, background):
    # The background sleep ignores TERM; its parent (the main child) does not.
    config = write_config(tmp_path, {"processes": [
        sh("app", "(trap '' TERM; exec sleep 300) & echo stubborn $!; exec sleep 301")]})
    bg = background("-c", config)
    line = bg.expect("stubborn ")
    stubborn = int(json.loads(line)["message"].split()[1])
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    wait_until(lambda: not pid_alive(stubborn), what="the TERM-ignoring member to be killed")


def test_exit_description_tells_signal_from_exit_code(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("code", "exit 137", restartPolicy="Never"),
        sh("killed", "kill -KILL $$$$", restartPolicy="Never")]})
    result = run("-c", config)
    said = dict((e["name"], e["message"]) for e in events(result.stdout, "exited"))
    assert said == {"code": "code exited with status 137",
                    "killed": "killed terminated by SIGKILL (status 137)"}


def in_pid_namespace(*args):
    return IN_PID_NAMESPACE + [PYTHON, PROCWRAP] + list(args)


def test_pid1_spawn_path_reports_statuses_sessions_and_workdir(tmp_path):
    # As PID 1 procwrap spawns through subprocess (vfork): the same behaviour is due.
    config = write_config(tmp_path, {"processes": [
        {"name": "missing", "command": ["no-such-procwrap"], "restartPolicy": "Never"},
        {"name": "here", "command": ["pwd"], "workingDir": str(tmp_path),
         "restartPolicy": "Never"},
        sh("sess", "ps -o pid=,pgid=,sid= -p $$$$", restartPolicy="Never"),
        sh("fail", "exit 3", restartPolicy="OnFailure", backoff={"initial": 0.01, "limit": 1})]})
    result = subprocess.run(in_pid_namespace("-c", config), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=WAIT,
                            env=clean_environ())
    assert "missing: command not found: 'no-such-procwrap'" in result.stdout
    assert lines_of(result.stdout, "here") == [str(tmp_path)]
    pid, pgid, sid = lines_of(result.stdout, "sess")[0].split()
    assert pid == pgid == sid
    statuses = dict((e["name"], e["status"]) for e in events(result.stdout, "exited"))
    assert statuses["fail"] == 3 and statuses["here"] == 0
    assert result.returncode in (3, 127)        # the last failure, whichever ended last


def test_pid1_shutdown_on_term(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"]},
        {"name": "b", "command": ["sleep", "300"], "stopTimeout": 0.2}]})
    bg = background(command=in_pid_namespace("-c", config))
    bg.expect("ready (pid:")
    with open("/proc/%d/task/%d/children" % (bg.pid, bg.pid)) as stream:
        pid1 = int(stream.read().split()[0])     # procwrap, PID 1 inside
    os.kill(pid1, signal.SIGTERM)
    assert bg.wait() == 0
    assert lines_of(bg.stdout, "a")[-1] == "SIGTERM"
    assert events(bg.stdout, "exit")[0]["status"] == 0


def test_log_format_none_passes_output_through(tmp_path):
    config = write_config(tmp_path, {"logs": {"format": "none"}, "init": [
        sh("prep", "echo raw-out; echo raw-err >&2")], "processes": []})
    result = run("-c", config)
    assert result.returncode == 0
    assert result.stdout == "raw-out\n"
    assert result.stderr == "raw-err\n"


def test_fast_exiting_processes_are_logged_as_started(tmp_path):
    # Children that exec and exit at once, each started from the previous one's
    # state change (so inside a loop pass that may also reap): every one must
    # still be 'started' (its exec report may be read only when it is reaped)
    # and free its dependent.
    entries = [{"name": "p%d" % i, "command": ["true"], "restartPolicy": "Never",
                "dependsOn": ["p%d" % (i - 1)] if i else []} for i in range(60)]
    entries += [{"name": "q%d" % i, "command": ["true"], "restartPolicy": "Never"}
                for i in range(40)]
    result = run("-c", write_config(tmp_path, {"processes": entries}))
    assert result.returncode == 0
    started = [e["name"] for e in events(result.stdout, "started")]
    assert len(started) == 100
    chain = [name for name in started if name.startswith("p")]
    assert chain == ["p%d" % i for i in range(60)]
