"""State that tells the truth (issue 8, part 5): what /status, /readiness, the readiness
file, sd_notify and the log say is what is really happening."""
import http.client
import json
import os
import signal
import socket
import subprocess

import pytest

from conftest import (PROCWRAP as PROCWRAP_PATH, PYTHON, WAIT, clean_environ, events, fixture,
                      pid_alive, run, wait_until, write_config)

STUBBORN = [PYTHON, fixture("print_signals.py")]      # prints signals, ignores TERM
#: Ignores TERM from its first millisecond (a probe may fail that early).
DEAF = ["sh", "-c", "trap '' TERM; echo 'ready (pid: 0)'; exec sleep 300"]


def start(background, tmp_path, config, *args, **kwargs):
    procwrap = background("-c", write_config(tmp_path, config), "--http", "127.0.0.1:0", *args,
                          **kwargs)
    host, port = procwrap.expect_event("http")["address"].rsplit(":", 1)

    def get(path):
        connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        connection.request("GET", path)
        answer = connection.getresponse()
        body = json.loads(answer.read().decode())
        connection.close()
        return answer.status, body
    return procwrap, get


def state_of(get, name):
    return [p for p in get("/status")[1]["processes"] if p["name"] == name][0]


@pytest.mark.parametrize("reason", ["liveness", "timeout", "postStart"])
def test_a_process_being_stopped_is_stopping_and_not_ready(background, tmp_path, reason):
    """Before: a failed probe, hook or timeout sent the stop signal but left the
    process `running` and ready through its grace period."""
    entry = {"name": "app", "command": DEAF, "stopTimeout": 60, "restartPolicy": "Never"}
    if reason == "liveness":
        entry["livenessProbe"] = {"exec": {"command": ["sh", "-c", "echo sick >&2; exit 1"]},
                                  "periodSeconds": 0.2, "failureThreshold": 1,
                                  "initialDelaySeconds": 0.3}
    elif reason == "timeout":
        entry["timeout"] = 0.5
    else:
        entry["lifecycle"] = {"postStart": {"exec": {"command": [
            "sh", "-c", "sleep 0.3; echo hook broke; exit 1"]}}}
    procwrap, get = start(background, tmp_path, {"processes": [entry]},
                          "--kill-on-second-signal")
    procwrap.expect("ready (pid:")
    procwrap.expect_event({"liveness": "unhealthy", "timeout": "timeout",
                           "postStart": "hook"}[reason])
    procwrap.expect_event("stopping")
    app = state_of(get, "app")
    assert (app["state"], app["ready"]) == ("stopping", False)
    assert get("/readiness")[0] == 503
    if reason == "liveness":
        failed = [e for e in events(procwrap.stdout, "probe") if e["result"] == "failed"][0]
        assert failed["message"] == "app: liveness probe failed 1 time (exit status 1: sick)"
    procwrap.signal(signal.SIGTERM)
    procwrap.expect_event("shutdown")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_after_a_failed_post_start_hook_nothing_says_ready(background, tmp_path):
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify.sock"))
    manager.setblocking(False)
    ready_file = tmp_path / "ready"
    config = {"readinessFile": str(ready_file), "processes": [
        {"name": "app", "command": DEAF, "stopTimeout": 1, "restartPolicy": "Never",
         "lifecycle": {"postStart": {"exec": {"command": [
             "sh", "-c", "sleep 0.3; echo the hook broke; exit 1"]}}}}]}
    procwrap, get = start(background, tmp_path, config,
                          env=clean_environ(NOTIFY_SOCKET=str(tmp_path / "notify.sock")))
    hook = procwrap.expect_event("hook")
    assert hook["message"] == "app: postStart hook failed (exit status 1: the hook broke)"
    assert procwrap.wait() == 137                     # killed after its whole grace period
    assert not events(procwrap.stdout, "ready")
    assert not ready_file.exists()
    received = []
    while True:
        try:
            received.append(manager.recv(4096).decode())
        except BlockingIOError:
            break
    assert not [m for m in received if "READY=1" in m], received


def test_depends_on_waits_for_readiness(background, tmp_path):
    flag = tmp_path / "db-ready"
    config = {"processes": [
        {"name": "db", "command": ["sleep", "300"],
         "readinessProbe": {"file": {"path": str(flag)}, "periodSeconds": 0.1}},
        {"name": "web", "command": ["sleep", "300"], "dependsOn": ["db"]},
        {"name": "sidecar", "command": ["sleep", "300"],
         "dependsOn": [{"name": "db", "condition": "Started"}]}]}
    procwrap, get = start(background, tmp_path, config)
    procwrap.expect_event("started", "db")
    procwrap.expect_event("started", "sidecar")       # Started: running is enough
    wait_until(lambda: state_of(get, "db")["probes"][0]["failures"] >= 2,
               what="db's readiness probe to have failed twice")
    assert state_of(get, "web")["state"] == "waiting"
    flag.touch()
    procwrap.expect_event("started", "web")
    started = [e["name"] for e in events(procwrap.stdout, "started")]
    assert started.index("web") > started.index("db")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


@pytest.mark.parametrize("status", [0, 3])
def test_depends_on_succeeded_waits_for_a_one_shot(tmp_path, status):
    config = write_config(tmp_path, {"processes": [
        {"name": "migrate", "command": ["sh", "-c", "sleep 0.2; exit %d" % status],
         "restartPolicy": "Never"},
        {"name": "app", "command": ["true"], "restartPolicy": "Never",
         "dependsOn": [{"name": "migrate", "condition": "Succeeded"}]}]})
    result = run("-c", config)
    out = result.stdout
    assert [e["name"] for e in events(out, "started")] == (["migrate", "app"] if status == 0
                                                           else ["migrate"])
    if status:
        assert result.returncode == 3
        assert events(out, "fatal")[0]["message"] == ("app: not starting, its dependency "
                                                      "migrate exited with status 3")
    else:
        assert result.returncode == 0
    assert len(events(out, "all-ended")) == 1


def test_ctl_start_in_backoff_keeps_the_restart_policy(background, tmp_path):
    """Before: `ctl start` of a process waiting out its backoff made it exited for good."""
    socket_path = str(tmp_path / "ctl.sock")
    config = write_config(tmp_path, {"processes": [
        {"name": "flaky", "command": ["sh", "-c", "echo up; exit 1"],
         "backoff": {"initial": 300}},
        {"name": "other", "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    procwrap.expect_event("backoff", "flaky")
    answer = run("ctl", "--socket", socket_path, "start", "flaky")
    assert answer.returncode == 0, answer.stderr
    procwrap.expect_event("started", "flaky", count=2)
    procwrap.expect_event("backoff", "flaky", count=2)     # its restartPolicy still applies
    status = json.loads(run("ctl", "--socket", socket_path, "--json", "status").stdout)
    assert status["processes"][0]["state"] == "backoff"
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_second_signal_logs_the_real_grace(tmp_path, background):
    procwrap = background("--kill-on-second-signal", "--stop-timeout", "60", "--log-format",
                          "json", "--", *STUBBORN)
    procwrap.expect("ready (pid:")
    procwrap.signal(signal.SIGTERM)
    procwrap.expect('"message":"SIGTERM"')
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 137
    killing = events(procwrap.stdout, "killing")[0]["message"]
    seconds = float(killing.split(" s after ")[0].rsplit(" ", 1)[1])
    assert seconds < 60, killing
    assert killing.endswith("; sending SIGKILL to its group (a second SIGTERM came)")


def test_started_comes_before_the_first_line_of_output(tmp_path):
    """Before: with many children starting at once, a pipe was sometimes read before the
    exec report, and a child's first line came before its `started` record."""
    config = write_config(tmp_path, {"processes": [
        {"name": "p%d" % i, "command": ["sh", "-c", "echo first"], "restartPolicy": "Never"}
        for i in range(60)]})
    for _ in range(3):
        result = run("-c", config)
        started = set()
        for record in map(json.loads, result.stdout.splitlines()):
            if record.get("event") == "started":
                started.add(record["name"])
            elif record.get("message") == "first":
                assert record["process"] in started, record


def test_counts_are_english(tmp_path):
    config = write_config(tmp_path, {"init": [{"name": "i", "command": ["true"]}],
                                     "processes": [{"name": "p", "command": ["true"],
                                                    "restartPolicy": "Never"}]})
    assert run("check", "-c", config).stdout.endswith("is valid: 1 init entry, 1 process\n")
    assert "supervising 1 init entry and 1 process" in run("-c", config).stdout


def test_no_probe_or_hook_command_outlives_a_killed_procwrap(tmp_path, background):
    config = {"processes": [{
        "name": "app", "command": ["sleep", "300"],
        "readinessProbe": {"exec": {"command": ["sleep", "301.25"]}, "timeoutSeconds": 600},
        "lifecycle": {"postStart": {"exec": {"command": ["sleep", "302.25"]},
                                    "timeoutSeconds": 600}}}]}
    procwrap = background("-c", write_config(tmp_path, config))
    procwrap.expect_event("started", "app")

    def find(argument):
        """procwrap's children running `sleep ARGUMENT`."""
        found = []
        for name in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % name, "rb") as stream:
                    if stream.read().split(b"\0")[1:2] != [argument]:
                        continue
                with open("/proc/%s/stat" % name) as stream:
                    if int(stream.read().rsplit(")", 1)[1].split()[1]) == procwrap.pid:
                        found.append(int(name))
            except (OSError, ValueError):
                pass
        return found
    wait_until(lambda: find(b"301.25") and find(b"302.25"), what="the probe and the hook")
    commands = find(b"301.25") + find(b"302.25")
    procwrap.kill()
    wait_until(lambda: not any(pid_alive(pid) for pid in commands),
               what="the probe and hook commands to die with procwrap")


def test_every_process_has_ended_is_said_once(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": ["/no/such/command"], "restartPolicy": "Never"},
        {"name": "b", "command": ["true"], "restartPolicy": "Never", "dependsOn": ["a"]}]})
    result = run("-c", config)
    assert result.returncode == 127
    assert len(events(result.stdout, "all-ended")) == 1


def test_the_last_sweep_spares_the_group_procwrap_was_started_in(tmp_path):
    """A child procwrap did not start (forked by whatever exec'd into procwrap) shares our
    parent's process group: sweeping it must not SIGKILL that whole group (it killed the
    test runner once)."""
    config = write_config(tmp_path, {"processes": [{"name": "a", "command": ["true"],
                                                    "restartPolicy": "Never"}]})
    script = ("import os, subprocess, sys, time\n"
              "sibling = subprocess.Popen(['sleep', '300'])\n"     # our group, not procwrap's
              "if os.fork() == 0:\n"
              "    os.execv(sys.executable, [sys.executable, %r, '-c', %r])\n"
              "os.wait()\n"
              "print('sibling alive' if sibling.poll() is None else 'sibling killed')\n"
              "sibling.kill()\n" % (PROCWRAP_PATH, config))
    # The forked child keeps a stray grandchild in the same group, then becomes procwrap.
    script = script.replace("    os.execv", "    subprocess.Popen(['sleep', '300'])\n    os.execv")
    result = subprocess.run([PYTHON, "-c", script], stdout=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT, start_new_session=True)
    assert result.stdout.splitlines()[-1] == "sibling alive"


def test_status_lines_lose_their_control_characters(background, tmp_path):
    send = ("import json, os, socket\n"
            "host, port = os.environ['PROCWRAP_STATUS_ADDRESS'].split(':')\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.sendto(json.dumps({'name': 'app', 'status': 'warm\\x1b[31m\\nred'}).encode(),"
            " (host, int(port)))\n"
            "import time; time.sleep(300)\n")
    procwrap = background("-c", write_config(tmp_path, {"processes": [
        {"name": "app", "command": [PYTHON, "-c", send]}]}), "--status-port", "0",
        "--log-format", "text")
    line = procwrap.expect("procwrap | app: warm")
    assert line == "procwrap | app: warm[31mred"
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_probe_output_in_records_and_status_hides_secrets(background, tmp_path):
    config = {"processes": [{
        "name": "app", "command": DEAF, "stopTimeout": 60,
        "env": [{"name": "TOKEN", "valueFrom": {"location": "PLAIN:tok-3141592653"}}],
        "livenessProbe": {"exec": {"command": ["sh", "-c", "echo token $TOKEN refused; "
                                                           "exit 1"]},
                          "periodSeconds": 0.2, "failureThreshold": 1}}]}
    procwrap, get = start(background, tmp_path, config)
    failed = procwrap.expect_event("probe")
    assert failed["message"] == ("app: liveness probe failed 1 time (exit status 1: token "
                                 "[secret] refused)")
    assert state_of(get, "app")["probes"][0]["message"] == "exit status 1: token [secret] refused"
    assert "3141592653" not in procwrap.stdout
    procwrap.kill()
