"""procwrap.managed_call() (issue 11, part 3): retries, timeouts, config
resolution and its TTL, status updates and reporting, in-process, with no
signal handler installed; against tests/fake_api.py for the reporting."""
import signal
import sys
import threading
import time

import pytest

from conftest import ROOT
from fake_api import ApiServer

sys.path.insert(0, ROOT)
import procwrap  # noqa: E402


class Flaky(object):
    """Fails `failures` times, then returns what it was given."""

    def __init__(self, failures, error=ValueError):
        self.failures, self.error, self.calls = failures, error, []

    def __call__(self, *args, **kwargs):
        self.calls.append((time.monotonic(), args, kwargs))
        if len(self.calls) <= self.failures:
            raise self.error("attempt %d failed" % len(self.calls))
        return ("ok", args, kwargs)


def test_the_result_after_retries_with_backoff():
    flaky = Flaky(2)
    result = procwrap.managed_call(flaky, 1, retries=2, retry_delay=0.1, retry_backoff=2,
                                   key="v")
    assert result == ("ok", (1,), {"key": "v"})
    times = [t for t, _, _ in flaky.calls]
    assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2


def test_the_last_exception_is_raised():
    flaky = Flaky(5, KeyError)
    with pytest.raises(KeyError) as raised:
        procwrap.managed_call(flaky, retries=1, retry_delay=0)
    assert "attempt 2 failed" in str(raised.value) and len(flaky.calls) == 2


def test_config_is_resolved_and_resolved_again_after_its_ttl():
    environ = {"DB_PASSWORD": "first"}
    seen = []

    def job(config):
        seen.append(str(config["db"]["password"]))
        environ["DB_PASSWORD"] = "second"
        time.sleep(0.15)
        if len(seen) < 2:
            raise RuntimeError("again")
        return len(seen)
    assert procwrap.managed_call(job, config={"db": {"password__to_resolve": "ENV:DB_PASSWORD"}},
                                 config_ttl=0.1, retries=1, retry_delay=0,
                                 environ=environ) == 2
    assert seen == ["first", "second"]


def test_a_timeout_abandons_the_attempt():
    began = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        procwrap.managed_call(time.sleep, 5, timeout=0.2, retries=1, retry_delay=0)
    assert "did not return within 0.2 s" in str(raised.value)
    assert 0.4 <= time.monotonic() - began < 3


def test_no_signal_handler_and_any_thread():
    watched = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
    before = dict((s, signal.getsignal(s)) for s in watched)
    out = []
    thread = threading.Thread(target=lambda: out.append(
        procwrap.managed_call(lambda: 42, timeout=5)))
    thread.start()
    thread.join(10)
    assert out == [42]
    assert procwrap.managed_call(abs, -3, timeout=5) == 3
    after = dict((s, signal.getsignal(s)) for s in before)
    assert before == after


def test_a_reported_call_with_status_updates():
    api = ApiServer()
    try:
        def job(n, status_updater):
            status_updater.send_update(expected_count=n, last_status_message="go")
            status_updater.send_update(success_count=n)
            return n * 2
        assert procwrap.managed_call(job, 3, status_updater=True, api_key="k-1",
                                     api_base_url=api.url, task_name="etl",
                                     environ={}) == 6
        start, final = api.requests[0], api.requests[-1]
        assert start["method"] == "POST" and start["body"]["embedded_mode"] is True
        assert start["body"]["task"] == {"name": "etl"}
        merged = api.merged()
        assert (merged["expected_count"], merged["success_count"]) == (3, 3)
        assert final["body"]["status"] == "SUCCEEDED"

        failing = Flaky(9)
        with pytest.raises(ValueError):
            procwrap.managed_call(failing, retries=1, retry_delay=0, api_key="k-1",
                                  api_base_url=api.url, task_name="etl", environ={})
        bodies = api.bodies("PATCH")
        assert bodies[-1]["status"] == "FAILED" and bodies[-1]["failed_attempts"] == 1
        assert "attempt 2 failed" in bodies[-1]["error_log_tail"]

        api.plan("POST", 409, times=5)
        called = []
        with pytest.raises(procwrap.UnavailableError):
            procwrap.managed_call(called.append, 1, api_key="k-1", api_base_url=api.url,
                                  task_name="etl", api_conflict_timeout=0.5,
                                  api_conflict_retry_delay=0.2, environ={})
        assert called == []
    finally:
        api.stop()


def test_an_abandoned_attempt_writes_nowhere_when_it_ends():
    """The timed-out attempt's thread ends after managed_call returned: it
    must not write into the loop's closed wake-up pipe, whose fd number
    may belong to someone else by then (a bug found by this test)."""
    import os
    release = threading.Event()
    with pytest.raises(TimeoutError):
        procwrap.managed_call(release.wait, 10, timeout=0.1)
    pipes = [os.pipe() for _ in range(20)]      # take the freed fd numbers
    try:
        for read_end, _ in pipes:
            os.set_blocking(read_end, False)
        errors = []
        hook, threading.excepthook = getattr(threading, "excepthook", None), errors.append
        try:
            release.set()
            for thread in threading.enumerate():
                if thread.name == "procwrap-managed-call":
                    thread.join(5)
        finally:
            if hook is not None:
                threading.excepthook = hook
        assert not errors
        for read_end, _ in pipes:
            with pytest.raises(BlockingIOError):
                os.read(read_end, 10)
    finally:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)


def test_a_call_the_server_stops_raises_unavailable():
    """409 on a heartbeat while the function runs: the attempt is abandoned,
    the final status is ABORTED, UnavailableError names why."""
    api = ApiServer()
    release = threading.Event()
    try:
        api.plan("PATCH", 409)
        began = time.monotonic()
        with pytest.raises(procwrap.UnavailableError) as raised:
            procwrap.managed_call(release.wait, 30, api_key="k-1", api_base_url=api.url,
                                  task_name="etl", api_heartbeat_interval=0.2, environ={})
        assert "stopped this execution" in str(raised.value)
        assert time.monotonic() - began < 10
        assert api.requests[-1]["body"]["status"] == "ABORTED"
    finally:
        release.set()
        api.stop()
