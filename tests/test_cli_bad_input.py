"""Hostile and careless input (issue 8, part 3): one line naming the place, exit 2 (or 69
for a secret), never a traceback, a hang or a silent default."""
import json
import signal
import socket
import subprocess

import pytest

from conftest import (IN_PID_NAMESPACE, PROCWRAP as PROCWRAP_PATH, PYTHON, WAIT, clean_environ,
                      error_lines, fixture, run, write_config)


@pytest.mark.parametrize("args, env, message", [
    (["--retries", "\u00b2", "--", "true"], {},
     "--retries: expected a whole number >= 0, got '\u00b2'"),
    (["--", "true"], {"PROCWRAP_RETRIES": "\u0663"},
     "PROCWRAP_RETRIES: expected a whole number >= 0, got '\u0663'"),
    (["--user", "99999999999", "--", "true"], {},
     "--user: 99999999999 is not a user or group id (at most 4294967294); fix the number"),
    (["--user", "root:4294967296", "--", "true"], {},
     "--user: 4294967296 is not a user or group id (at most 4294967294); fix the number"),
    (["--timeout", "99999999999", "--", "true"], {},
     "--timeout: expected at most 315360000 seconds (10 years), got '99999999999'"),
    (["--timeout", "1" + "0" * 400, "--", "true"], {},
     "--timeout: expected at most 315360000 seconds (10 years), got '1%s'" % ("0" * 400)),
    (["-c", "a.json", "--status-port", "70000"], {},
     "--status-port: expected a port from 0 to 65535, got '70000'"),
    (["-c", "a.json", "-c", "b.json"], {}, "-c: given twice; give it once (the two would "
                                           "not merge)"),
    (["--timeout", "1", "--timeout=2", "--", "true"], {},
     "--timeout: given twice; give it once (the two would not merge)"),
    (["ctl", "--socket", "/nonexistent", "tail", "-n", "\u00b2", "web"], {},
     "ctl tail -n: expected a number of lines, got '\u00b2'"),
    (["--env-file", "/dev/zero", "--", "true"], {},
     "--env-file: cannot read env file '/dev/zero': larger than 16 MiB; fix the path"),
    (["--resolve-suffix", "", "--", "true"], {},     # every variable would be a location
     "--resolve-suffix: expected letters, digits and '_', like _FOR_PROCWRAP_TO_RESOLVE, "
     "got ''"),
    (["check", "-c", "-"], {}, None),     # stdin: /dev/zero, see below
], ids=lambda value: str(value)[:40] if isinstance(value, (list, str)) else None)
def test_bad_numbers_ids_and_repeats(args, env, message):
    if message is None:
        with open("/dev/zero", "rb") as zero:
            result = run(*args, env=clean_environ(**env), stdin=zero)
        assert result.returncode == 2
        assert error_lines(result.stderr) == ["stdin: larger than 16 MiB; a config is smaller"]
        return
    result = run(*args, env=clean_environ(**env))
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [message]


def test_durations_beyond_the_loops_timers_run(tmp_path):
    """--timeout 2147484 (24.8 days, past epoll's int of milliseconds) used to exit 70."""
    assert run("--timeout", "2147484", "--", "true").returncode == 0
    assert run("--timeout", "315360000", "--retries", "1", "--retry-delay", "3000000",
               "--", "true").returncode == 0


def test_a_long_stop_timeout_survives_sigterm(tmp_path, background):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": [PYTHON, fixture("print_signals.py"), "--exit-on", "TERM"],
         "stopTimeout": 3000000}]})
    procwrap = background("-c", config)
    procwrap.expect("ready (pid:")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert "Traceback" not in procwrap.stderr


def test_a_thousand_long_dependency_chain(tmp_path):
    chain = [{"name": "p%d" % i, "command": ["true"], "restartPolicy": "Never",
              "dependsOn": ["p%d" % (i + 1)] if i < 1199 else []} for i in range(1200)]
    config = write_config(tmp_path, {"processes": chain})
    result = run("check", "-c", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("0 init entries, 1200 processes\n")


def test_a_long_dependency_chain_runs_as_pid_1(tmp_path):
    """As PID 1 a child's exec is known at once, and each start used to start its
    dependents from within: a RecursionError some 200 links down."""
    chain = [{"name": "p%d" % i, "command": ["true"], "restartPolicy": "Never",
              "dependsOn": ["p%d" % (i + 1)] if i < 399 else []} for i in range(400)]
    config = write_config(tmp_path, {"processes": chain})
    result = subprocess.run(IN_PID_NAMESPACE + [PYTHON, PROCWRAP_PATH, "-c", config],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT * 2, env=clean_environ())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count('"event":"started"') == 400


@pytest.mark.parametrize("name, text, message", [
    ("deep.json", "{\"processes\": %s}" % ("[" * 20000 + "]" * 20000),
     "deep.json: nested deeper than 64 levels; flatten it"),
    ("deep.toml", "processes = %s\n" % ("[" * 5000 + "]" * 5000),
     "deep.toml: nested deeper than 64 levels; flatten it"),
    ("deep.yaml", "processes: %s\n" % ("[" * 5000 + "]" * 5000),
     "deep.yaml: nested deeper than 64 levels; flatten it"),
    ("date.yaml", "processes: [{name: a, command: [x], labels: {d: 2024-13-45}}]\n",
     "date.yaml: month must be in 1..12; fix the YAML syntax"),
    # Nine levels of nine aliases: 400 bytes that expand to 387 million nodes.
    ("bomb.yaml", "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        "%s: &%s [%s]\n" % (c, c, ",".join(["*" + p] * 9))
        for p, c in zip("abcdefgh", "bcdefghi")) + "processes: [*i]\n",
     "bomb.yaml: more than 200000 values (a YAML alias bomb?); make it smaller"),
], ids=["json", "toml", "yaml", "date", "bomb"])
def test_deep_and_exploding_configs(tmp_path, name, text, message):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    if name.endswith(".toml"):
        pytest.importorskip("tomllib" if __import__("sys").version_info >= (3, 11) else "tomli")
    config = write_config(tmp_path, text, name)
    result = run("check", "-c", config, cwd=str(tmp_path))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [message.replace(name, config)]


def test_deep_json_in_the_config_twin_and_in_a_secret(tmp_path):
    deep = "[" * 20000 + "]" * 20000     # an environment string holds up to 128 KiB
    result = run(env=clean_environ(PROCWRAP_CONFIG='{"processes": %s}' % deep))
    assert result.returncode == 2
    assert error_lines(result.stderr) == ["PROCWRAP_CONFIG: nested deeper than 64 levels; "
                                          "flatten it"]
    document = tmp_path / "deep.json"
    document.write_text('{"a": %s}' % deep)
    result = run("--", "true", env=clean_environ(
        A_FOR_PROCWRAP_TO_RESOLVE="FILE:%s|JP:$.a" % document))
    assert result.returncode == 69
    assert error_lines(result.stderr) == [
        "A_FOR_PROCWRAP_TO_RESOLVE: cannot resolve FILE:%s|JP:$.a: nested deeper than 64 "
        "levels; flatten it" % document]


def test_endless_files_are_read_with_a_bound():
    result = run("--", "true", env=clean_environ(X_FOR_PROCWRAP_TO_RESOLVE="FILE:/dev/zero"))
    assert result.returncode == 69
    assert error_lines(result.stderr) == [
        "X_FOR_PROCWRAP_TO_RESOLVE: cannot resolve FILE:/dev/zero: cannot read '/dev/zero': "
        "larger than 16 MiB; fix the path"]


def test_nul_in_a_dotenv_value_is_refused_before_an_endless_restart_loop(tmp_path):
    envfile = tmp_path / "nul.env"
    envfile.write_bytes(b"TOKEN=a\x00b\n")
    result = run("--env-file", str(envfile), "--", "true")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "--env: the value of TOKEN holds a NUL byte, which no argument, path or variable can; "
        "remove it (a \\u0000 in the config?)"]
    config = write_config(tmp_path, {"processes": [{"name": "a", "command": ["true"],
                                                    "envFile": str(envfile)}]})
    result = run("-c", config)
    assert result.returncode == 2
    assert error_lines(result.stderr)[0].startswith("processes[0].env: the value of TOKEN "
                                                    "holds a NUL byte")


def test_a_misspelled_twin_is_named_with_a_suggestion():
    result = run("--", "sh", "-c", "exit 3", env=clean_environ(PROCWRAP_TIMOUT="1"))
    assert result.returncode == 3
    assert result.stderr == ("procwrap: warning: PROCWRAP_TIMOUT: not a procwrap variable, so "
                             "it is ignored; did you mean 'PROCWRAP_TIMEOUT'?\n")


def test_a_comma_inside_a_json_location_does_not_split_it():
    result = run("--", "sh", "-c", 'echo "$A $B"', env=clean_environ(
        PROCWRAP_ENV_LOCATIONS='PLAIN:{"A": "1", "B": "2"}!json,PLAIN:{"C": [1, 2]}!json'))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 2\n"


def test_malformed_ctl_requests_get_an_error_answer(background, tmp_path):
    socket_path = str(tmp_path / "ctl.sock")
    config = write_config(tmp_path, {"processes": [{"name": "web", "command": ["sleep", "60"]}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    procwrap.expect_event("started", "web")
    answers = []
    for line in [b"not json", b"[1]", b'{"command": 3}', b'{"command": "tail", "args": "web"}',
                 b'{"command": "tail", "args": [1]}',
                 b'{"command": "tail", "args": ["web"], "lines": "ten"}',
                 b'{"command": "tail", "args": ["web"], "lines": -1}',
                 b'{"command": "stop", "args": [["web"]]}', b"[" * 50000 + b"]" * 50000]:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(WAIT)
        client.connect(socket_path)
        client.sendall(line + b"\n")
        answers.append(json.loads(client.makefile("rb").readline().decode()))
        client.close()
    assert [a["ok"] for a in answers] == [False] * len(answers)
    assert [a["error"] for a in answers] == [
        "not a JSON request", "not a JSON object", "command: expected a string",
        "args: expected a list of strings", "args: expected a list of strings",
        "lines: expected a whole number >= 0", "lines: expected a whole number >= 0",
        "args: expected a list of strings", "not a JSON request"]
    # The supervisor is unharmed and printed no traceback.
    assert run("ctl", "--socket", socket_path, "stop", "web").returncode == 0
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert procwrap.stderr.strip() == ""


def test_a_slip_for_a_subcommand_gets_a_hint_not_a_program_run(tmp_path):
    """`procwrap status` means `procwrap ctl status` far more often than a
    program named status: one line saying so, exit 2; after `--` the program
    runs whatever its name (issue 13)."""
    for word, meant in (("help", "--help"), ("version", "--version"),
                        ("status", "ctl status"), ("restart", "ctl restart")):
        result = run(word, "web")
        assert result.returncode == 2, (word, result.stderr)
        assert result.stderr == ("procwrap: error: %s: did you mean `procwrap %s`?  To run a "
                                 "program named %s, write `procwrap -- %s web`\n"
                                 % (word, meant, word, word))
    program = tmp_path / "status"
    program.write_text("#!/bin/sh\necho the status program\n")
    program.chmod(0o755)
    ran = run("--", str(program))
    assert ran.returncode == 0 and ran.stdout == "the status program\n"
    assert "always runs the program NAME" in run("--help").stdout
