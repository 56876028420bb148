"""Load and faults (issue 8, part 6): pipelined and idle HTTP clients, and a stdout that
fills up or goes away."""
import json
import os
import signal
import socket
import subprocess
import textwrap

import pytest

from conftest import PROCWRAP, PYTHON, WAIT, clean_environ, write_config


def serve(background, tmp_path):
    config = write_config(tmp_path, {"processes": [{"name": "app", "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:0")
    host, port = procwrap.expect_event("http")["address"].rsplit(":", 1)
    procwrap.expect_event("ready")
    return procwrap, (host, int(port))


def get_readiness(address, timeout=WAIT):
    client = socket.create_connection(address, timeout=timeout)
    client.sendall(b"GET /readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        answer += chunk
    client.close()
    return answer


def test_five_hundred_pipelined_requests_on_one_connection(background, tmp_path):
    """Before: each answer sent led straight into the next request, 500 deep: a
    RecursionError, a leaked connection, and after 256 of them no /readiness at all."""
    procwrap, address = serve(background, tmp_path)
    for _ in range(3):
        client = socket.create_connection(address, timeout=WAIT)
        client.sendall(b"GET /liveness HTTP/1.1\r\nHost: x\r\n\r\n" * 500)
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 500:
            chunk = client.recv(1 << 20)
            assert chunk, "the connection closed after %d answers" % answers.count(b"HTTP/1.1")
            answers += chunk
        client.close()
    assert get_readiness(address).startswith(b"HTTP/1.1 200 OK")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert "Traceback" not in procwrap.stderr and "internal error" not in procwrap.stdout


def test_idle_connections_make_room_for_a_probe(background, tmp_path):
    """Before: 256 idle connections, and every new one was closed at once for 10 s."""
    procwrap, address = serve(background, tmp_path)
    idle = [socket.create_connection(address, timeout=WAIT) for _ in range(300)]
    for _ in range(5):
        assert get_readiness(address, timeout=5).startswith(b"HTTP/1.1 200 OK")
    # The ones closed to make room were the oldest.
    idle[0].settimeout(WAIT)
    assert idle[0].recv(1) == b""
    for client in idle:
        client.close()
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


FILL_AND_FREE = textwrap.dedent("""\
    import json, os, subprocess, sys
    directory, procwrap, python = sys.argv[1:4]
    out = open(os.path.join(directory, "out.log"), "wb")
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        os.close(fd)
    child = ("import sys\\n"
             "for n in range(2000):\\n"
             "    sys.stdout.write('line %d\\\\n' % n)\\n"
             "    sys.stdout.flush()\\n")
    procwrap = subprocess.Popen([python, procwrap, "--log-format", "json", "--", python, "-c",
                                 child], stdout=out, stderr=subprocess.PIPE)
    first = procwrap.stderr.readline().decode()
    os.unlink(filler)                    # the disk has room again
    status = procwrap.wait(60)
    rest = procwrap.stderr.read().decode()
    lines = [json.loads(line)["message"] for line in open(os.path.join(directory, "out.log"))
             if '"stream":"stdout"' in line]
    print(json.dumps({"status": status, "stderr": first + rest, "lines": lines}))
""")


def test_a_full_disk_holds_records_back_and_loses_none(tmp_path):
    """Before: one ENOSPC on stdout and every later record was dropped, silently."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private tmpfs")
    directory = tmp_path / "small"
    directory.mkdir()
    helper = tmp_path / "helper.py"
    helper.write_text(FILL_AND_FREE)
    script = 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" "$3" "$1" "$4" "$2"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(directory), PYTHON, str(helper), PROCWRAP], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, timeout=WAIT * 2, env=clean_environ())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == 0
    assert report["lines"] == ["line %d" % n for n in range(2000)]
    assert report["stderr"].startswith("procwrap: cannot write records: No space left on "
                                       "device; waiting for room")
    assert "records flow again after" in report["stderr"]


def test_a_closed_stdout_is_said_and_counted():
    read_end, write_end = os.pipe()
    os.close(read_end)
    result = subprocess.run([PYTHON, PROCWRAP, "--log-format", "json", "--", "sh", "-c",
                             "echo one; echo two; exit 3"], stdout=write_end,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=WAIT,
                            env=clean_environ())
    os.close(write_end)
    assert result.returncode == 3               # the child's status, as ever
    lines = result.stderr.splitlines()
    assert lines[0] == ("procwrap: cannot write records: Broken pipe; the ones that follow are "
                        "lost (counted)")
    assert lines[-1].startswith("procwrap: ") and lines[-1].endswith(" records lost: Broken pipe")
    assert int(lines[-1].split()[1]) >= 4       # started, two lines, exited
