"""The Process state machine against races the CLI cannot pin down deterministically."""
import json
import os
import socket

import procwrap


class RecordingLog(procwrap._Log):
    def __init__(self):
        procwrap._Log.__init__(self, "json", fd=os.open(os.devnull, os.O_WRONLY))
        self.events = []

    def event(self, message, level="info", **fields):
        self.events.append(fields.get("event"))


def test_reaped_before_its_exec_report_is_read_still_counts_as_started():
    loop = procwrap._Loop()
    log = RecordingLog()
    changes = []
    spec = procwrap._ProcessSpec(name="t", argv=["true"], env=dict(os.environ),
                                 restart="Never", labels={})
    process = procwrap._Process(spec, loop, log, lambda p, old: changes.append(p.state))
    process.start()
    assert process.state == procwrap._State.STARTING
    # Let it exec and exit without reaping it, then reap before the loop has
    # read its exec report: the order a busy loop pass can produce.
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    loop.reap()
    assert changes == [procwrap._State.STARTING, procwrap._State.RUNNING, procwrap._State.EXITED]
    assert log.events == ["started", "exited"]
    assert process.status == 0
    loop.close()


def test_exec_failure_reaped_before_its_report_is_read():
    loop = procwrap._Loop()
    log = RecordingLog()
    spec = procwrap._ProcessSpec(name="t", argv=["no-such-command-procwrap"],
                                 env=dict(os.environ), restart="Never", labels={})
    process = procwrap._Process(spec, loop, log, lambda p, old: None)
    process.start()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    loop.reap()
    assert log.events == ["failed", "exited"]
    assert process.state == procwrap._State.EXITED and process.status == 127
    loop.close()


def test_output_read_before_the_exec_report_closes_it_without_a_crash():
    """The pipe's callback reads the exec report first (so `started` precedes output);
    the report's own callback, already picked for the same loop pass, must then be
    skipped, not called on a closed fd (the fuzz test found that crash)."""
    loop = procwrap._Loop()
    log = RecordingLog()
    crashes = []
    loop.on_error = crashes.append
    spec = procwrap._ProcessSpec(name="t", argv=["echo", "hi"], env=dict(os.environ),
                                 restart="Never", labels={})
    process = procwrap._Process(spec, loop, log, lambda p, old: None)
    process.start()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)    # report and output both ready
    loop.run_once()
    assert crashes == []
    assert log.events[0] == "started"
    loop.reap()
    loop.close()


def test_a_callback_unregistering_another_fd_of_the_same_pass():
    loop = procwrap._Loop()
    calls = []
    (a_r, a_w), (b_r, b_w) = os.pipe(), os.pipe()
    os.write(a_w, b"x")
    os.write(b_w, b"x")

    def on_a():
        calls.append("a")
        loop.watch(b_r, 0)

    def on_b():
        calls.append("b")
        loop.watch(a_r, 0)
    loop.watch(a_r, procwrap._READ, on_a)
    loop.watch(b_r, procwrap._READ, on_b)
    loop.run_once()
    assert calls in (["a"], ["b"])
    loop.close()
    for fd in (a_r, a_w, b_r, b_w):
        os.close(fd)


class _Clock(object):
    now = 1000.0

    def __call__(self):
        return self.now


class _Listener(object):
    """What a connection needs of its listener."""

    def __init__(self, loop, handler):
        self.loop, self.handler, self.connections = loop, handler, set()


def test_the_idle_timeout_starts_over_with_each_request():
    """A keep-alive client asking every 5 s must not be cut off 10 s after it connected;
    one that stops asking is, 10 s after its last request (with an injected clock)."""
    clock = _Clock()
    loop = procwrap._Loop(clock=clock)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    theirs = socket.create_connection(server.getsockname(), timeout=5)
    ours, _ = server.accept()
    server.close()
    listener = _Listener(loop, lambda connection, target: connection.respond(200, {"ok": 1}))
    connection = procwrap._HttpConnection(listener, ours)
    for _ in range(3):
        clock.now += 6                          # each pass runs the timers due by now
        theirs.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        loop.run_once()
        assert connection.sock is not None, "closed %s s after its last request" % 6
        assert theirs.recv(65536).startswith(b"HTTP/1.1 200 OK")
    clock.now += 10.5
    loop.run_once()
    assert connection.sock is None and theirs.recv(1) == b""
    theirs.close()
    loop.close()


def test_records_dropped_on_a_full_disk_are_counted_and_said(monkeypatch, capfd):
    """Past LOG_STALL, records are dropped, counted; the first write that works again
    ends the record cut short, then says how many were lost."""
    monkeypatch.setattr(procwrap, "LOG_STALL", 0.0)
    full = os.open("/dev/full", os.O_WRONLY)
    read_end, write_end = os.pipe()
    log = procwrap._Log("json", fd=full)
    log.event("one")                        # ENOSPC: dropped at once (no stall allowed)
    log.event("two")
    assert log.lost == 2 and log.failing
    log.midline = True                      # as if the last write had stopped mid-record
    log.fd = write_end
    log.event("three")
    os.close(write_end)
    written = os.read(read_end, 65536)
    os.close(read_end)
    os.close(full)
    assert written.startswith(b'\n{"time"')
    records = [json.loads(line) for line in written.split(b"\n") if line]
    assert [r["message"] for r in records] == ["three", "2 records lost: No space left on device"]
    assert records[1]["lost"] == 2 and log.lost == 0 and log.failing is None
    err = capfd.readouterr().err
    assert "dropping them, counted" in err and "2 records lost" in err


def test_a_loop_run_off_the_main_thread_says_why_and_takes_nothing():
    """Embedded in a program that calls it from a thread: a clear error, and
    no signal handler of procwrap's left behind."""
    import signal
    import threading
    spec = procwrap._ProcessSpec(name="t", argv=["true"], env=dict(os.environ),
                                 restart="Never", labels={})
    before = signal.getsignal(signal.SIGTERM)
    caught = []

    def run():
        owner = procwrap._Wrapper(spec, RecordingLog())
        try:
            owner.run()
        except RuntimeError as error:
            caught.append(str(error))
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert caught == [procwrap.MAIN_THREAD_MSG]
    assert signal.getsignal(signal.SIGTERM) is before


def test_memory_trimming_loads_the_c_library_itself():
    """As PID 1 nothing else loads libc (children start through vfork), and
    trimming the heap must not depend on something else having done so."""
    import subprocess
    import sys
    script = ("import procwrap; procwrap._trim_memory(); "
              "print(bool(procwrap._libc) and hasattr(procwrap._libc, 'malloc_trim'))")
    out = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, timeout=60,
                         universal_newlines=True, cwd=os.path.dirname(procwrap.__file__)).stdout
    assert out.strip() == "True"


def test_a_supervisor_that_cannot_begin_leaves_the_callers_children_alone():
    """Off the main thread the run never begins: the final sweep, which
    SIGKILLs every child of the process, must not run for it (an embedding
    program's own children would go)."""
    import subprocess
    import threading
    mine = subprocess.Popen(["sleep", "60"])
    spec = procwrap._ProcessSpec(name="t", argv=["true"], env=dict(os.environ),
                                 restart="Never", labels={})
    caught = []

    def run():
        try:
            procwrap._Supervisor([], [spec], RecordingLog()).run()
        except RuntimeError as error:
            caught.append(str(error))
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    try:
        assert caught == [procwrap.MAIN_THREAD_MSG]
        assert mine.poll() is None, "the caller's child was killed"
    finally:
        mine.kill()
        mine.wait(30)


def test_a_socket_check_tries_each_address_of_a_name_in_turn():
    """A host name whose first address refuses (localhost as ::1 where the
    server listens on 127.0.0.1 only) still passes on the next address, as
    the kubelet's dialer does; with none left, the last refusal is said."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    refused = socket.socket(socket.AF_INET6)
    refused.bind(("::1", 0))        # bound, not listening: a connect is refused
    closed_port = refused.getsockname()[1]
    loop = procwrap._Loop()
    outcomes = []

    class Probe(object):
        spec = procwrap._ProbeSpec(handler="tcpSocket", options={"host": "localhost",
                                                                 "port": port})
        check = None

        def done(self, ok, message):
            outcomes.append((ok, message))
            loop.stopped = True
    probe = Probe()
    probe.loop = loop
    first = [(socket.AF_INET6, ("::1", port, 0, 0)), (socket.AF_INET, ("127.0.0.1", port))]
    for addresses in (first, [(socket.AF_INET6, ("::1", closed_port, 0, 0))]):
        probe.check = procwrap._SocketCheck(probe)
        loop.stopped = False
        probe.check.on_resolved(addresses, None)
        while not loop.stopped:
            loop.run_once()
    assert outcomes == [(True, "connected"),
                        (False, "cannot connect to localhost:%d: Connection refused" % port)]
    loop.close()
    server.close()
    refused.close()
