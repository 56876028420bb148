"""The Process state machine against races the CLI cannot pin down deterministically."""
import os

import procwrap


class RecordingLog(procwrap.Log):
    def __init__(self):
        procwrap.Log.__init__(self, "json", fd=os.open(os.devnull, os.O_WRONLY))
        self.events = []

    def event(self, message, level="info", **fields):
        self.events.append(fields.get("event"))


def test_reaped_before_its_exec_report_is_read_still_counts_as_started():
    loop = procwrap.Loop()
    log = RecordingLog()
    changes = []
    spec = procwrap.ProcessSpec(name="t", argv=["true"], env=dict(os.environ),
                                restart="Never", labels={})
    process = procwrap.Process(spec, loop, log, lambda p, old: changes.append(p.state))
    process.start()
    assert process.state == procwrap.State.STARTING
    # Let it exec and exit without reaping it, then reap before the loop has
    # read its exec report: the order a busy loop pass can produce.
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    loop.reap()
    assert changes == [procwrap.State.STARTING, procwrap.State.RUNNING, procwrap.State.EXITED]
    assert log.events == ["started", "exited"]
    assert process.status == 0
    loop.close()


def test_exec_failure_reaped_before_its_report_is_read():
    loop = procwrap.Loop()
    log = RecordingLog()
    spec = procwrap.ProcessSpec(name="t", argv=["no-such-command-procwrap"],
                                env=dict(os.environ), restart="Never", labels={})
    process = procwrap.Process(spec, loop, log, lambda p, old: None)
    process.start()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    loop.reap()
    assert log.events == ["failed", "exited"]
    assert process.state == procwrap.State.EXITED and process.status == 127
    loop.close()


def test_output_read_before_the_exec_report_closes_it_without_a_crash():
    """The pipe's callback reads the exec report first (so `started` precedes output);
    the report's own callback, already picked for the same loop pass, must then be
    skipped, not called on a closed fd (the fuzz test found that crash)."""
    loop = procwrap.Loop()
    log = RecordingLog()
    crashes = []
    loop.on_error = crashes.append
    spec = procwrap.ProcessSpec(name="t", argv=["echo", "hi"], env=dict(os.environ),
                                restart="Never", labels={})
    process = procwrap.Process(spec, loop, log, lambda p, old: None)
    process.start()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)    # report and output both ready
    loop.run_once()
    assert crashes == []
    assert log.events[0] == "started"
    loop.reap()
    loop.close()


def test_a_callback_unregistering_another_fd_of_the_same_pass():
    loop = procwrap.Loop()
    calls = []
    (a_r, a_w), (b_r, b_w) = os.pipe(), os.pipe()
    os.write(a_w, b"x")
    os.write(b_w, b"x")

    def on_a():
        calls.append("a")
        loop.remove_reader(b_r)

    def on_b():
        calls.append("b")
        loop.remove_reader(a_r)
    loop.add_reader(a_r, on_a)
    loop.add_reader(b_r, on_b)
    loop.run_once()
    assert calls in (["a"], ["b"])
    loop.close()
    for fd in (a_r, a_w, b_r, b_w):
        os.close(fd)
