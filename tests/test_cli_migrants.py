"""What supervisord, honcho and s6 users bring along: autostart, startSeconds,
successCodes, priority, mergeStderr and shell on config entries, finish commands and
entries, a directory of config fragments (issue 13)."""
import json
import signal
import sys

import pytest

from conftest import clean_environ, events, lines_of, records, run, write_config

# Stops on TERM after saying so, a little later, so an order of stops shows.
SLOW_STOP = ("trap 'echo stopping $0; sleep 0.2; exit 0' TERM; echo up; "
             "while :; do sleep 0.05; done")


def sh(name, script, **fields):
    entry = {"name": name, "command": ["sh", "-c", script]}
    entry.update(fields)
    return entry


def test_autostart_false_stays_stopped_is_ready_and_starts_on_ctl(background, tmp_path):
    socket_path = str(tmp_path / "ctl.sock")
    config = write_config(tmp_path, {"processes": [
        sh("web", "echo web up; exec sleep 300"),
        sh("maintenance", "echo maintenance ran", autostart=False, restartPolicy="Never")]})
    procwrap = background("-c", config, "--ctl-socket", socket_path, "--http", "127.0.0.1:0")
    procwrap.expect_event("ready")
    state = json.loads(run("ctl", "--json", "status", env=clean_environ(
        PROCWRAP_CTL_SOCKET=socket_path)).stdout)["processes"]
    assert [(p["name"], p["state"], p["starts"]) for p in state] == [
        ("web", "running", 1), ("maintenance", "stopped", 0)]
    assert not [r for r in records(procwrap.stdout) if r.get("process") == "maintenance"]

    started = run("ctl", "start", "maintenance", env=clean_environ(
        PROCWRAP_CTL_SOCKET=socket_path))
    assert started.returncode == 0, started.stderr
    procwrap.expect('"message":"maintenance ran"')
    procwrap.expect_event("exited", "maintenance")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_start_seconds_retries_a_quick_exit_whatever_the_policy(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("quick", "echo try", restartPolicy="Never", startSeconds=5,
           backoff={"initial": 0.01, "limit": 2})]})
    result = run("-c", config)
    assert lines_of(result.stdout, "quick") == ["try"] * 3
    failed = events(result.stdout, "start-failed")
    assert len(failed) == 3 and "before startSeconds (5 s): a failed start" in failed[0]["message"]
    assert [e["name"] for e in events(result.stdout, "fatal")] == ["quick"]
    assert result.returncode == 1       # it gave up, though each run exited 0


def test_start_seconds_passed_then_restart_policy_applies(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("steady", "sleep 0.3; echo done", restartPolicy="Never", startSeconds=0.1)]})
    result = run("-c", config)
    assert result.returncode == 0, result.stdout
    assert lines_of(result.stdout, "steady") == ["done"]
    assert not events(result.stdout, "start-failed")


def test_success_codes_per_process(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("three", "echo once; exit 3", restartPolicy="OnFailure", successCodes=[0, 3]),
        sh("four", "exit 4", restartPolicy="OnFailure", successCodes=[0, 3],
           backoff={"initial": 0.01, "limit": 1})]})
    result = run("-c", config)
    assert lines_of(result.stdout, "three") == ["once"]
    assert [e["name"] for e in events(result.stdout, "fatal")] == ["four"]
    assert result.returncode == 4


def test_priority_starts_ascending_and_stops_descending(background, tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("c", SLOW_STOP, priority=30), sh("a", SLOW_STOP, priority=10),
        sh("b", SLOW_STOP, priority=20)]})
    procwrap = background("-c", config)
    procwrap.expect('"message":"up"', count=3)
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    # Forked in priority order: their pids rise in that order (exec is
    # confirmed, and `started` logged, in whatever order the kernel runs them).
    started = sorted(events(procwrap.stdout, "started"), key=lambda e: e["pid"])
    assert [e["name"] for e in started] == ["a", "b", "c"]
    # Each stops only once every higher priority has exited.
    order = [(e["event"], e["name"]) for e in events(procwrap.stdout)
             if e.get("event") in ("stopping", "exited")]
    assert order == [("stopping", "c"), ("exited", "c"), ("stopping", "b"), ("exited", "b"),
                     ("stopping", "a"), ("exited", "a")]


def test_merge_stderr_keeps_the_order_of_both_streams(tmp_path):
    script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done"
    config = write_config(tmp_path, {"processes": [
        sh("both", script, restartPolicy="Never", mergeStderr=True)]})
    result = run("-c", config)
    assert result.returncode == 0
    lines = [(r["stream"], r["message"]) for r in records(result.stdout)
             if r.get("process") == "both"]
    expected = []
    for i in range(1, 201):
        expected += [("stdout", "out%d" % i), ("stdout", "err%d" % i)]
    assert lines == expected


def test_shell_true_runs_the_string_through_sh(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "chain", "command": "echo one && echo two | tr a-z A-Z", "shell": True,
         "restartPolicy": "Never"}]})
    result = run("-c", config)
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "chain") == ["one", "TWO"]


def test_shell_syntax_without_shell_is_said_by_check_and_at_start(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "chain", "command": "echo one && echo two", "restartPolicy": "Never"},
        {"name": "plain", "command": "echo $(HOME) fine", "restartPolicy": "Never"},
        {"name": "split", "command": "echo a;b", "shell": False, "restartPolicy": "Never"}]})
    check = run("check", "-c", config)
    assert check.returncode == 0
    assert check.stderr == (
        "procwrap: warning: processes[0].command: uses shell syntax (`&&`) but runs without "
        "a shell, split into words; write shell: true to run it through /bin/sh -c, or "
        "shell: false to keep the words as they are\n")
    result = run("-c", config)
    warning = events(result.stdout, "config-warning")
    assert len(warning) == 1 and warning[0]["level"] == "warning"
    assert lines_of(result.stdout, "chain") == ["one && echo two"]    # as warned: split


def test_bad_values_of_the_new_fields_are_one_line_each(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": ["true"], "shell": True, "autostart": "no",
         "successCodes": [0, 256], "priority": -1, "startSeconds": "soon", "mergeStderr": 1},
        {"name": "b", "command": "true", "shell": True, "args": ["x"]}]})
    result = run("check", "-c", config)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "processes[0].shell", "processes[0].mergeStderr", "processes[0].autostart",
        "processes[0].startSeconds", "processes[0].successCodes", "processes[0].priority",
        "processes[1].args"], result.stderr


def test_finish_command_gets_the_exit_code_and_signal_before_the_restart(tmp_path):
    journal = tmp_path / "journal"
    note = "echo \"$0 $*\" >> %s" % journal
    config = write_config(tmp_path, {"processes": [
        sh("three", "echo run >> %s; exit 3" % journal, restartPolicy="OnFailure",
           backoff={"initial": 0.01, "limit": 1},
           finish=["sh", "-c", "sleep 0.3; " + note, "finished"]),
        sh("killed", "kill -9 $$$$", restartPolicy="Never",     # $$: procwrap's $
           finish={"command": ["sh", "-c", note, "killed-finish"], "timeoutSeconds": 5})]})
    result = run("-c", config)
    assert result.returncode == 3, result.stdout
    lines = journal.read_text().splitlines()
    # The second run starts only once the first run's finish is done.
    assert [line for line in lines if not line.startswith("killed")] == [
        "run", "finished 3 0", "run", "finished 3 0"]
    assert "killed-finish 256 9" in lines
    hooks = [e for e in events(result.stdout, "hook") if e.get("hook") == "finish"]
    assert len(hooks) == 3 and all(e["result"] == "passed" for e in hooks)


def test_finish_command_is_cut_off_at_its_timeout(tmp_path):
    config = write_config(tmp_path, {"processes": [
        sh("app", "exit 0", restartPolicy="Never",
           finish={"command": ["sleep", "30"], "timeoutSeconds": 0.3})]})
    import time
    began = time.monotonic()
    result = run("-c", config)
    assert result.returncode == 0
    assert time.monotonic() - began < 20
    hook = [e for e in events(result.stdout, "hook") if e.get("hook") == "finish"][0]
    assert hook["result"] == "failed" and "timed out" in hook["message"]


def test_top_level_finish_runs_once_everything_stopped(background, tmp_path):
    journal = tmp_path / "journal"
    config = write_config(tmp_path, {
        "processes": [sh("web", "trap 'echo web-stopped >> %s; exit 0' TERM; echo up; "
                                "while :; do sleep 0.05; done" % journal)],
        "finish": [sh("flush", "echo flush >> %s; exit 4" % journal),
                   sh("notify", "echo notify >> %s" % journal)]})
    procwrap = background("-c", config)
    procwrap.expect('"message":"up"')
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0         # a finish entry's failure is said, not the status
    assert journal.read_text().splitlines() == ["web-stopped", "flush", "notify"]
    failed = events(procwrap.stdout, "finish-failed")
    assert [e["name"] for e in failed] == ["flush"]


def test_top_level_finish_after_the_processes_ended_and_its_timeout(tmp_path):
    journal = tmp_path / "journal"
    config = write_config(tmp_path, {
        "finishTimeout": 0.5,
        "processes": [sh("job", "echo job >> %s" % journal, restartPolicy="Never")],
        "finish": [sh("hang", "echo hang >> %s; exec sleep 30" % journal),
                   sh("never", "echo never >> %s" % journal)]})
    result = run("-c", config)
    assert result.returncode == 0
    assert journal.read_text().splitlines() == ["job", "hang"]
    late = events(result.stdout, "finish-timeout")
    assert late and late[0]["message"] == ("finish entries still running after 0.5 s; killing "
                                           "hang; not starting never")


def test_config_directory_of_fragments(tmp_path):
    pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10-base.json").write_text(json.dumps({
        "logs": {"format": "json"},
        "processes": [sh("web", "echo web $MODE", restartPolicy="Never")]}))
    (conf / "20-web-env.json").write_text(json.dumps({
        "logs": {"format": "json"},         # the same value again: no conflict
        "processes": [{"name": "web", "env": {"MODE": "fast"}},
                      sh("worker", "echo worker", restartPolicy="Never")]}))
    (conf / "30-init.toml").write_text(
        '[[init]]\nname = "prepare"\ncommand = ["echo", "prepared"]\n')
    (conf / "README.md").write_text("not a fragment\n")
    result = run("-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "web") == ["web fast"]
    assert lines_of(result.stdout, "worker") == ["worker"]
    assert lines_of(result.stdout, "prepare") == ["prepared"]
    assert run("check", "-c", str(conf)).stdout == (
        "procwrap: %s is valid: 1 init entry, 2 processes\n" % conf)


def test_config_directory_conflicts_and_places_name_the_files(tmp_path):
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "a.json").write_text(json.dumps({"processes": [
        sh("web", "true", restartPolicy="Always")]}))
    (conf / "b.json").write_text(json.dumps({"processes": [
        {"name": "web", "restartPolicy": "Never"}]}))
    result = run("check", "-c", str(conf))
    assert (result.returncode, result.stderr) == (2, (
        "procwrap: error: %s: processes 'web': restartPolicy is also set, differently, in %s; "
        "set it in one file\n" % (conf / "b.json", conf / "a.json")))
    (conf / "b.json").write_text(json.dumps({"processes": [
        sh("api", "true", restartPolcy="Never")]}))
    result = run("check", "-c", str(conf))
    assert result.stderr == ("procwrap: error: %s: processes[0].restartPolcy: unknown field; "
                             "did you mean 'restartPolicy'?\n" % (conf / "b.json"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("check", "-c", str(empty)).stderr == (
        "procwrap: error: -c: %s has no *.json, *.yaml, *.yml or *.toml file; put the config's "
        "fragments there\n" % empty)
