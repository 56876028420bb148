"""procwrap.connect() (issue 10, part 3) against the suite's real sshd: run,
call with modules fetched from here, exceptions, timeouts, threads, and
close() leaving nothing behind.  (Every CPython both ways: test_compat.)"""
import logging
import os
import sys
import threading
import time
import uuid

import pytest

from conftest import ROOT, wait_until
from test_cli_remote import remote_pids

sys.path.insert(0, ROOT)
import procwrap  # noqa: E402


def options_of(sshd):
    """The ssh options of the suite's sshd, as connect() takes them."""
    args = sshd.options()
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--ssh-option"]


@pytest.fixture
def host(sshd):
    with procwrap.connect(sshd.host(), ssh_options=options_of(sshd),
                          python=sys.executable) as context:
        yield context


@pytest.fixture
def local_only(tmp_path, monkeypatch):
    """A package that exists only here: on this side's sys.path, nowhere the
    agent (python -I, in /) would look."""
    package = tmp_path / ("pw_only_" + uuid.uuid4().hex[:8])
    package.mkdir()
    (package / "__init__.py").write_text("from .inner import shout\nTAG = 'pkg'\n")
    (package / "inner.py").write_text(
        "import os\n\n"
        "def shout(text):\n    return [text.upper(), os.getpid()]\n\n"
        "def broken(n):\n    return {'n': n} [1]\n\n"
        "def slow(seconds):\n    import time\n    time.sleep(seconds)\n    return seconds\n\n"
        "def chatty(n):\n    import logging\n    for i in range(n):\n"
        "        print('line', i)\n"
        "    logging.getLogger('chatty').warning('logged %d', n)\n    return n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(package.name + ".inner")
    yield sys.modules[package.name + ".inner"]
    for name in list(sys.modules):
        if name.startswith(package.name):
            del sys.modules[name]


def test_run_gives_status_and_output(host):
    result = host.run(["sh", "-c", "echo out; printf 'err' >&2; exit 3"])
    assert (result.status, result.stdout, result.stderr) == (3, b"out\n", b"err")
    assert host.run(["sh", "-c", "kill -TERM $$"]).status == 143
    assert host.run(["no-such-command-procwrap"]).status == 127
    assert host.run(["sh", "-c", "echo $A"], env={"A": "given"}).stdout == b"given\n"
    assert host.run(["pwd"], workdir="/tmp").stdout == b"/tmp\n"
    with pytest.raises(TypeError):
        host.run("echo a string")


def test_run_timeout_is_124_and_the_command_is_gone(host):
    marker = "procwrap-api-timeout-" + uuid.uuid4().hex
    began = time.monotonic()
    result = host.run(["sh", "-c", "sleep 300 # " + marker], timeout=0.5)
    assert result.status == 124
    assert 0.5 <= time.monotonic() - began < 30
    wait_until(lambda: not remote_pids(marker), what="the timed-out command to be gone")


def test_call_fetches_a_package_that_exists_only_here(host, local_only):
    shouted, pid = host.call(local_only.shout, "quiet")
    assert shouted == "QUIET"
    assert pid == host.call(os.getpid)          # the agent's own process
    assert pid != os.getpid()


def test_arguments_and_results_are_json_and_bytes(host, local_only):
    value = {"bytes": b"\x00\xff", "list": [1, 2.5, None, True], "nested": {"t": (1, 2)}}
    assert host.call(local_only.shout.__globals__["os"].path.join, "a", "b") == "a/b"
    echoed = host.call(_identity, value)
    assert echoed == {"bytes": b"\x00\xff", "list": [1, 2.5, None, True], "nested": {"t": [1, 2]}}
    with pytest.raises(TypeError):
        host.call(_identity, object())          # said here, before anything is sent
    with pytest.raises(TypeError):
        host.call(lambda: 1)


def _identity(value):
    return value


def test_a_remote_exception_is_a_remote_error(host, local_only):
    with pytest.raises(procwrap.RemoteError) as raised:
        host.call(local_only.broken, 4)
    error = raised.value
    assert error.type == "KeyError" and error.message == "1"
    assert error.host == "127.0.0.1"
    assert "return {'n': n} [1]" in error.remote_traceback      # its source, from here
    assert host.call(_identity, "still usable") == "still usable"


def test_a_call_timeout_abandons_the_call_and_keeps_the_context(host, local_only):
    began = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        host.call(local_only.slow, 5, timeout=0.3)
    assert "slow() did not return within 0.3 s" in str(raised.value)
    assert time.monotonic() - began < 4
    assert host.call(local_only.slow, 0) == 0


def test_prints_and_log_records_come_back_tagged_with_the_host(
        host, local_only, capsys, caplog):
    caplog.set_level(logging.INFO)
    assert host.call(local_only.chatty, 3) == 3
    assert capsys.readouterr().out == "".join("127.0.0.1 | line %d\n" % i for i in range(3))
    [record] = [r for r in caplog.records if r.name == "chatty"]
    assert (record.getMessage(), record.levelno, record.host) == (
        "logged 3", logging.WARNING, "127.0.0.1")


def test_concurrent_calls_from_threads(host, local_only):
    results, errors = {}, []

    def worker(n):
        try:
            results[n] = host.call(local_only.shout, "t%d" % n)[0]
        except Exception as error:     # reported below
            errors.append(error)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert results == dict((n, "T%d" % n) for n in range(16))


def test_close_ends_everything_the_context_started(sshd):
    marker = "procwrap-api-close-" + uuid.uuid4().hex
    context = procwrap.connect(sshd.host(), ssh_options=options_of(sshd), python=sys.executable)
    outcome = []

    def runner():
        try:
            outcome.append(context.run(["sh", "-c", "sleep 300 # " + marker]))
        except procwrap.UnavailableError as error:
            outcome.append(error)
    thread = threading.Thread(target=runner)
    thread.start()
    wait_until(lambda: remote_pids(marker), what="the remote command to start")
    context.close()
    thread.join(30)
    assert isinstance(outcome[0], procwrap.UnavailableError), outcome
    wait_until(lambda: not remote_pids(marker), what="the remote command to be gone")
    with pytest.raises(procwrap.UnavailableError):
        context.call(_identity, 1)
    context.close()                             # again: nothing happens


def test_a_host_without_that_python_is_unavailable_127(sshd):
    with pytest.raises(procwrap.UnavailableError) as raised:
        procwrap.connect(sshd.host(), ssh_options=options_of(sshd),
                         python="/nonexistent/python3")
    assert raised.value.status == 127
    assert "/nonexistent/python3 not found on the remote host" in str(raised.value)


def test_sudo_and_via_are_the_command_lines(sshd, test_user, hidden_host):
    """Through the bastion, as the unprivileged user (Debian's python3: pyenv's
    under /root is not theirs to run)."""
    bastion, hidden = hidden_host
    with procwrap.connect(hidden, via=bastion, sudo=test_user.pw_name,
                          ssh_options=options_of(sshd), python="/usr/bin/python3") as context:
        assert context.run(["id", "-un"]).stdout.decode().strip() == test_user.pw_name
        assert context.call(os.getuid) == test_user.pw_uid
