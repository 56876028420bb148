"""Paths procwrap writes (issue 8, part 1): created safely, never through a link, never
over what it did not write, and removed at exit only while they are still its own."""
import os
import signal
import stat
import subprocess

import pytest

import conftest
from conftest import (PROCWRAP, PYTHON, WAIT, clean_environ, run, wait_until,
                      write_config)

SLEEP = {"processes": [{"name": "app", "command": ["sleep", "300"]}]}
ONE_SHOT = {"processes": [{"name": "app", "command": ["true"], "restartPolicy": "Never"}]}


def error_lines(stderr):
    return conftest.error_lines(stderr, only_errors=False)


def squatter(tmp_path, kind):
    """Something procwrap did not create, at a path it is told to write; and how to tell
    that it is untouched."""
    path = tmp_path / "target"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    if kind == "file":
        path.write_text("precious\n")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("precious\n")
    elif kind == "fifo":
        os.mkfifo(str(path))
    elif kind == "symlink":
        os.symlink(str(victim), str(path))
    elif kind == "pid file":
        path.write_text("1234\n")     # a daemon's pid file is not procwrap's readiness file

    def untouched():
        assert victim.read_text() == "precious\n"
        if kind in ("file", "pid file"):
            assert path.read_text() == ("precious\n" if kind == "file" else "1234\n")
        elif kind == "directory":
            assert (path / "inside").read_text() == "precious\n"
        elif kind == "fifo":
            assert stat.S_ISFIFO(os.lstat(str(path)).st_mode)
        else:
            assert os.readlink(str(path)) == str(victim)
    return str(path), untouched


KINDS = {"file": "a file", "directory": "a directory", "fifo": "a FIFO",
         "symlink": "a symbolic link", "pid file": "a file"}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("flag", ["--ctl-socket", "--readiness-file", "--env-output-file"])
def test_what_procwrap_did_not_create_is_refused_and_left_alone(tmp_path, flag, kind):
    path, untouched = squatter(tmp_path, kind)
    result = run("-c", write_config(tmp_path, ONE_SHOT), flag, path, cwd=str(tmp_path))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "%s: %r is %s that procwrap did not create; procwrap replaces only its own, so "
        "remove it or pick another path" % (flag, path, KINDS[kind])]
    assert result.stdout == ""          # refused before anything ran
    untouched()


@pytest.mark.parametrize("field, option", [("readinessFile", "--readiness-file"),
                                           ("ctlSocket", "--ctl-socket")])
def test_config_paths_are_checked_the_same_way(tmp_path, field, option):
    path, untouched = squatter(tmp_path, "file")
    config = dict(ONE_SHOT, **{field: path})
    result = run("-c", write_config(tmp_path, config))
    assert result.returncode == 2
    assert error_lines(result.stderr)[0].startswith("%s: %r is a file" % (field, path))
    untouched()


def test_wrap_mode_env_output_file_refuses_too(tmp_path):
    path, untouched = squatter(tmp_path, "symlink")
    result = run("--env-output-file", path, "--", "true",
                 env=clean_environ(X_FOR_PROCWRAP_TO_RESOLVE="PLAIN:hunter2-secret"))
    assert result.returncode == 2
    untouched()


def test_the_temporary_file_is_unpredictable(tmp_path):
    """Before: PATH.<pid>.tmp was opened with O_TRUNC, following a symlink planted there:
    a root procwrap wrote the secrets wherever the link pointed."""
    output = tmp_path / "out.env"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    plant = ("import os, sys\n"
             "os.symlink(sys.argv[1], '%s.%%d.tmp' %% os.getpid())\n"
             "os.execv(sys.executable, [sys.executable] + sys.argv[2:])\n" % output)
    result = subprocess.run(
        [PYTHON, "-c", plant, str(victim), PROCWRAP, "--env-output-file", str(output), "--",
         "cat", str(output)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=WAIT,
        env=clean_environ(X_FOR_PROCWRAP_TO_RESOLVE="PLAIN:hunter2-secret"))
    assert result.returncode == 0, result.stderr
    assert "X='hunter2-secret'" in result.stdout
    assert victim.read_text() == "precious\n"
    assert not output.exists()
    leftovers = [name for name in os.listdir(str(tmp_path)) if name.endswith(".tmp")]
    assert leftovers == ["out.env.%d.tmp" % int(leftovers[0].split(".")[2])]   # only the plant


def test_leftovers_of_a_killed_procwrap_are_replaced(tmp_path, background):
    """SIGKILL leaves the readiness file, the env output file (it holds secrets: the
    README says so) and the ctl socket behind; the next procwrap takes them over."""
    ready, output, ctl = (str(tmp_path / name) for name in ("ready", "out.env", "ctl.sock"))
    env = clean_environ(X_FOR_PROCWRAP_TO_RESOLVE="PLAIN:hunter2-secret")
    config = write_config(tmp_path, SLEEP)
    args = ["-c", config, "--readiness-file", ready, "--env-output-file", output,
            "--ctl-socket", ctl]
    first = background(*args, env=env)
    first.expect_event("ready")
    assert open(ready).read() == "procwrap ready (pid %d)\n" % first.pid
    assert open(output).read().startswith("# written by procwrap (pid %d)" % first.pid)
    first.kill()
    for path in (ready, output, ctl):
        assert os.path.lexists(path)
    second = background(*args, env=env)
    second.expect_event("ready")
    assert open(ready).read() == "procwrap ready (pid %d)\n" % second.pid
    # A live socket is not a leftover.
    third = run(*args, env=env)
    assert third.returncode == 2
    assert error_lines(third.stderr) == ["--ctl-socket: another procwrap is listening on %s; "
                                         "stop it or pick another path" % ctl]
    assert os.path.exists(ready)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    for path in (ready, output, ctl):
        assert not os.path.lexists(path)


def test_only_what_is_still_procwrap_s_own_is_removed_at_exit(tmp_path, background):
    ready = tmp_path / "ready"
    procwrap = background("-c", write_config(tmp_path, SLEEP), "--readiness-file", str(ready))
    procwrap.expect_event("ready")
    replacement = tmp_path / "replacement"
    replacement.write_text("someone else's\n")
    os.rename(str(replacement), str(ready))
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert ready.read_text() == "someone else's\n"
    # The same for the env output file, replaced by the child itself.
    output = tmp_path / "out.env"
    result = run("--env-output-file", str(output), "--", "sh", "-c",
                 'rm "$0" && echo mine > "$0"', str(output))
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "mine\n"


def test_notify_names_cannot_be_squatted_nor_spoofed(tmp_path, background, test_user,
                                                     public_copy):
    """Before: the abstract name @procwrap/<pid>/<name> was predictable, so another user
    who bound it first made procwrap exit 70, and anyone could send READY=1."""
    report = tmp_path / "address"
    app = ("import os, sys, time\nopen(sys.argv[1], 'w').write(os.environ['NOTIFY_SOCKET'])\n"
           "time.sleep(300)\n")
    config = write_config(tmp_path, {"processes": [
        {"name": "web", "command": [PYTHON, "-c", app, str(report)],
         "readinessProbe": {"notify": {}, "periodSeconds": 30}}]})
    squat = ("import os, socket, sys, time\n"
             "pid = os.getpid()\n"
             "r, w = os.pipe()\n"
             "if os.fork() == 0:\n"
             "    os.setgid(%d); os.setuid(%d)\n"
             "    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
             "    s.bind('\\0procwrap/%%d/web' %% pid)\n"
             "    os.write(w, b'x')\n"
             "    time.sleep(60)\n"
             "    os._exit(0)\n"
             "os.read(r, 1)\n"
             "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"
             % (test_user.pw_gid, test_user.pw_uid))
    procwrap = background(command=[PYTHON, "-c", squat, PROCWRAP, "-c", config])
    procwrap.expect_event("started", "web")
    wait_until(lambda: report.exists() and report.read_text(), what="NOTIFY_SOCKET")
    address = report.read_text()
    assert address.startswith("@procwrap/%d/" % procwrap.pid) and address.endswith("/web")
    assert address != "@procwrap/%d/web" % procwrap.pid     # the squatted name
    send = ("import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "s.sendto(b'READY=1', '\\0' + sys.argv[1][1:])\n")
    subprocess.run([public_copy.python, "-c", send, address], check=True, timeout=WAIT, cwd="/",
                   preexec_fn=lambda: (os.setgid(test_user.pw_gid), os.setuid(test_user.pw_uid)))
    refused = procwrap.expect_event("notify-refused", "web")
    assert "uid %d" % test_user.pw_uid in refused["message"]
    assert not [line for line in procwrap.out if '"event":"ready"' in line]
    subprocess.run([PYTHON, "-c", send, address], check=True, timeout=WAIT)    # root: heard
    procwrap.expect_event("ready")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
