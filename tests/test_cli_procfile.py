"""Procfile mode, against what foreman and honcho do (SPECS.md 12.9) and
against honcho itself, run on the same Procfile (issue 13)."""
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import WAIT, clean_environ, events, in_a_terminal, lines_of, records, run

# honcho's observed run (SPECS.md 12.9): two web copies that outlive a worker that exits 3.
PROCFILE = ("web: echo web $PORT $MODE; sleep 30\n"
            "worker: echo worker $PORT $MODE; sleep 0.5; exit 3\n"
            "# a comment\n"
            "\n")


def procfile(tmp_path, text=PROCFILE, name="Procfile", dotenv="MODE=fast\n"):
    path = tmp_path / name
    path.write_text(text)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return str(path)


def said(stdout):
    """{process: [lines]} of a JSON run."""
    found = {}
    for record in records(stdout):
        if record.get("stream") == "stdout":
            found.setdefault(record["process"], []).append(record["message"])
    return found


def test_ports_env_formation_and_the_first_exit_stops_the_rest(tmp_path):
    path = procfile(tmp_path, PROCFILE + "bad line without colon\n")
    result = run("-c", path, "-m", "web=2", cwd=str(tmp_path))
    assert result.returncode == 3, result.stdout
    assert said(result.stdout) == {"web.1": ["web 5000 fast"], "web.2": ["web 5001 fast"],
                                   "worker.1": ["worker 5100 fast"]}
    assert result.stderr == ("procwrap: warning: %s:5: not `name: command`, skipped (as foreman "
                             "and honcho do); make it a comment with #\n" % path)
    stopped = [e["name"] for e in events(result.stdout, "stopping")]
    assert sorted(stopped) == ["web.1", "web.2"]


def test_the_same_procfile_under_honcho(tmp_path):
    """honcho 2.0 (from PyPI) and procwrap on one Procfile: the same
    processes, with the same PORT and .env, and the same exit status."""
    honcho = shutil.which("honcho", path=os.path.dirname(sys.executable)) or shutil.which("honcho")
    if honcho is None:
        pytest.skip("honcho is not installed (pip install honcho)")
    path = procfile(tmp_path)
    theirs = subprocess.run([honcho, "-f", path, "start", "-c", "web=2"], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=WAIT, env=clean_environ())
    ours = run("-c", path, "-m", "web=2", cwd=str(tmp_path))
    honcho_lines = {}
    for line in theirs.stdout.splitlines():
        match = re.match(r"^\S+ (\S+)\s+\| (web|worker) (.*)$", line)
        if match:
            honcho_lines[match.group(1)] = [match.group(2) + " " + match.group(3)]
    assert honcho_lines == said(ours.stdout), theirs.stdout
    assert theirs.returncode == ours.returncode == 3


def test_port_option_env_file_option_and_port_from_the_env_file(tmp_path):
    path = procfile(tmp_path, "web: echo $PORT $MODE $PS\n", dotenv="MODE=dotenv\nPORT=6000\n")
    (tmp_path / "other.env").write_text("MODE=other\n")
    from_file = run("-c", path, env=clean_environ(PORT="8000"))
    assert said(from_file.stdout) == {"web.1": ["6000 dotenv web.1"]}
    (tmp_path / "other.env").write_text("MODE=other\n")
    from_environment = run("-c", path, "--env-file", str(tmp_path / "other.env"),
                           env=clean_environ(PORT="8000"))
    assert said(from_environment.stdout) == {"web.1": ["8000 other web.1"]}
    flagged = run("-c", path, "--port", "7000", "--env-file", str(tmp_path / "other.env"))
    assert said(flagged.stdout) == {"web.1": ["7000 other web.1"]}


def test_keep_going_restarts_instead_of_stopping(background, tmp_path):
    path = procfile(tmp_path, "web: echo serving; exec sleep 30\nworker: echo job; exit 1\n",
                    dotenv=None)
    procwrap = background("-c", path, "--keep-going", "--log-format", "json")
    procwrap.expect('"message":"job"', count=2)     # restarted after its backoff
    assert not events(procwrap.stdout, "shutdown")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert lines_of(procwrap.stdout, "web.1") == ["serving"]


def test_shell_text_is_passed_as_written(tmp_path):
    """$$ is the shell's pid and $(...) a command substitution, not procwrap's
    $(VAR) expansion: a Procfile line reaches /bin/sh as written."""
    path = procfile(tmp_path, "pid: echo $$ $(echo sub) '$PORT' \"$PORT\"\n", dotenv=None,
                    name="Procfile.dev")
    result = run("-c", path)
    line = said(result.stdout)["pid.1"][0].split()
    assert line[0].isdigit() and line[1:] == ["sub", "$PORT", "5000"]


def test_procfile_option_check_and_mistakes(tmp_path):
    path = procfile(tmp_path, "web: sleep 1\nworker: sleep 1\n", name="services.txt")
    assert run("check", "--procfile", path, "-m", "all=2").stdout == (
        "procwrap: %s is valid: 0 init entries, 4 processes\n" % path)
    mistakes = [
        (["--procfile", path, "-m", "wbe=2"], "procwrap: error: --formation: no process type "
         "'wbe' in %s; did you mean 'web'?" % path),
        (["--procfile", path, "-m", "web"], "procwrap: error: -m: expected TYPE=N pairs "
         "separated by commas, like web=2,worker=1 (all=N: each), got 'web'"),
        (["-c", path, "--procfile", path], "procwrap: error: --procfile: give -c FILE or "
         "--procfile FILE, not both"),
        (["--procfile", str(tmp_path / "none")], "procwrap: error: --procfile: cannot read "
         "Procfile '%s': No such file or directory; fix the path" % (tmp_path / "none")),
    ]
    (tmp_path / "c.json").write_text('{"processes": [{"name": "a", "command": ["true"]}]}')
    mistakes.append((["-c", str(tmp_path / "c.json"), "--port", "5000"],
                     "procwrap: error: --port: applies to a Procfile; a config sets it on "
                     "each entry"))
    twice = procfile(tmp_path, "web: a\nweb: b\n", name="Procfile.twice")
    mistakes.append((["-c", twice], "procwrap: error: %s:2: process type 'web' is also on line "
                     "1; give each a line of its own name" % twice))
    for args, error in mistakes:
        result = run("check", *args)
        assert (result.returncode, result.stderr) == (2, error + "\n"), args


def test_text_output_on_a_terminal(tmp_path):
    """On a terminal a Procfile's output is text, as honcho's is."""
    path = procfile(tmp_path, "web: echo hello\n", dotenv=None)
    status, output = in_a_terminal(["-c", path])
    assert status == 0
    text = re.sub("\x1b\\[[0-9;]*m", "", output)
    assert "web.1    | hello" in text and not text.lstrip().startswith("{")
