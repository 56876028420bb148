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
