"""Per-process log files (logs.file, logs.directory) with rotation and
`procwrap ctl reopen-logs` (issue 13)."""
import json
import os

from conftest import PYTHON, clean_environ, events, records, run, wait_until, write_config

FLOOD = [PYTHON, "-c", "import sys\nfor i in range(%d):\n"
         "    sys.stdout.write('line %%07d %%s\\n' %% (i, 'x' * 80))\n"]


def rotated(path, backups):
    """The files of one rotation set, oldest first."""
    names = ["%s.%d" % (path, n) for n in range(backups, 0, -1)] + [path]
    return [name for name in names if os.path.exists(name)]


def messages(paths):
    found = []
    for path in paths:
        with open(path, "rb") as stream:
            data = stream.read()
        assert data.endswith(b"\n"), path          # whole records only
        found.extend(json.loads(line)["message"] for line in data.splitlines())
    return found


def test_a_flood_rotates_without_losing_or_splitting_a_line(tmp_path):
    path = str(tmp_path / "flood.log")
    count = 100000
    config = write_config(tmp_path, {"processes": [{
        "name": "flood", "command": FLOOD[:2] + [FLOOD[2] % count], "restartPolicy": "Never",
        "logs": {"file": path, "maxBytes": "1MB", "backups": 40}}]})
    result = run("-c", config)
    assert result.returncode == 0, result.stderr
    files = rotated(path, 40)
    assert len(files) > 10
    assert all(os.path.getsize(name) <= 1 << 20 for name in files)
    expected = ["line %07d %s" % (i, "x" * 80) for i in range(count)]
    assert messages(files) == expected
    # procwrap's stdout stays as it is: every record there too.
    assert [r["message"] for r in records(result.stdout) if r.get("process") == "flood"] \
        == expected


def test_backups_bound_the_files_kept(tmp_path):
    path = str(tmp_path / "app.log")
    stale = tmp_path / "app.log.3"
    stale.write_text("not in the rotation\n")
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": FLOOD[:2] + [FLOOD[2] % 20000], "restartPolicy": "Never",
        "logs": {"file": path, "maxBytes": 200000, "backups": 2}}]})
    assert run("-c", config).returncode == 0
    assert sorted(os.listdir(str(tmp_path))) == ["app.log", "app.log.1", "app.log.2",
                                                 "app.log.3", "procwrap.json"]
    assert stale.read_text() == "not in the rotation\n"
    last = messages(rotated(path, 2))
    assert last[-1].startswith("line 0019999") and len(last) < 20000
    assert [int(m.split()[1]) for m in last] == list(range(20000 - len(last), 20000))


def test_directory_default_text_format_both_streams_and_init(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    config = write_config(tmp_path, {
        "logs": {"directory": str(logs), "format": "text"},
        "init": [{"name": "prep", "command": ["sh", "-c", "echo prepared"]}],
        "processes": [{"name": "app", "restartPolicy": "Never",
                       "command": ["sh", "-c", "echo out; echo err >&2"]}]})
    result = run("-c", config)
    assert result.returncode == 0, result.stderr
    # The file's records are as stdout's (names padded), without colour.
    assert (logs / "prep.log").read_text() == "prep     | prepared\n"
    assert sorted((logs / "app.log").read_text().splitlines()) == ["app      ! err",
                                                                   "app      | out"]
    assert "app      | out" in result.stdout


def test_reopen_logs_after_logrotate_moved_the_file(background, tmp_path):
    path = tmp_path / "ticker.log"
    socket_path = str(tmp_path / "ctl.sock")
    ticker = ("import sys, time\nfor i in range(100000):\n    print(i, flush=True)\n"
              "    time.sleep(0.002)\n")
    config = write_config(tmp_path, {"processes": [{
        "name": "ticker", "command": [PYTHON, "-c", ticker], "restartPolicy": "Never",
        "logs": {"file": str(path)}}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    procwrap.expect('"message":"50"')
    os.rename(str(path), str(tmp_path / "ticker.log.moved"))    # what logrotate does
    procwrap.expect('"message":"100"')
    env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)
    reopened = run("ctl", "reopen-logs", env=env)
    assert (reopened.returncode, reopened.stdout) == (0, "reopened 1 log file\n")
    wait_until(lambda: path.exists() and path.stat().st_size > 100, what="the new file")
    run("ctl", "shutdown", env=env)
    assert procwrap.wait() == 0
    numbers = [int(m) for m in messages([str(tmp_path / "ticker.log.moved"), str(path)])]
    assert numbers == list(range(len(numbers))) and numbers[-1] > 100


def test_what_is_not_procwraps_is_never_written(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "app.log"
    link.symlink_to(target)
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": ["echo", "hi"], "restartPolicy": "Never",
        "logs": {"file": str(link)}}]})
    result = run("-c", config)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "procwrap: error: processes[0].logs.file: cannot open %r: " % str(link))
    assert target.read_text() == "keep me\n"

    # A backup name that is a symlink: the file is not rotated over it.
    link.unlink()
    (tmp_path / "app.log.1").symlink_to(target)
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": FLOOD[:2] + [FLOOD[2] % 3000], "restartPolicy": "Never",
        "logs": {"file": str(link), "maxBytes": 100000, "backups": 1}}]})
    result = run("-c", config)
    assert result.returncode == 0
    failures = events(result.stdout, "log-file")
    assert failures and "app.log.1 is not a file of procwrap's; not rotating over it" \
        in failures[0]["message"]
    assert target.read_text() == "keep me\n" and os.path.islink(str(tmp_path / "app.log.1"))


def test_bad_log_file_settings(tmp_path):
    config = write_config(tmp_path, {"logs": {"maxBytes": "lots", "backups": -1},
                                     "processes": [{"name": "a", "command": ["true"],
                                                    "logs": {"file": 3, "size": 1}}]})
    result = run("check", "-c", config)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "procwrap: error: logs.maxBytes: expected bytes: a whole number, or like 50MB, 512Mi, "
        "1Gi, got 'lots'",
        "procwrap: error: logs.backups: expected a whole number >= 0, got -1",
        "procwrap: error: processes[0].logs.size: unknown field; known: backups, file, format, "
        "level, maxBytes, stderrLevel",
        "procwrap: error: processes[0].logs.file: expected a string, got a number (3)"]
