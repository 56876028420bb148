"""Pure functions: parsers, validators, backoff, formatting.  Tables live in test_fixtures/."""
import signal

import pytest

import procwrap
from conftest import load_table

DOTENV = load_table("dotenv_cases.json")
LOGFMT = load_table("logfmt_cases.json")


@pytest.mark.parametrize("case", DOTENV, ids=[c["input"][:30] for c in DOTENV])
def test_dotenv(case):
    if "error" in case:
        with pytest.raises(procwrap.ConfigError) as caught:
            procwrap._parse_dotenv(case["input"], "t.env", case.get("env", {}))
        assert str(caught.value) == ("t.env:%s: cannot parse this line; write NAME=value, quote "
                                     "values with spaces or '#', and close every quote"
                                     % case["error"])
    else:
        got = procwrap._parse_dotenv(case["input"], "t.env", case.get("env", {}))
        assert [list(pair) for pair in got] == case["expect"]


@pytest.mark.parametrize("case", LOGFMT, ids=[c["id"] for c in LOGFMT])
def test_logfmt_value(case):
    assert procwrap._logfmt_value(case["value"]) == case["expect"]


def test_logfmt_key_drops_bad_runes():
    assert procwrap._logfmt_key("k\x7f") == "k"
    assert procwrap._logfmt_key("a b=c\"") == "abc"


@pytest.mark.parametrize("text, seconds", [
    ("10", 10.0), ("1.5", 1.5), (".5", 0.5), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0),
    (" 3s ", 3.0), (7, 7.0), (0.25, 0.25)])
def test_parse_duration(text, seconds):
    assert procwrap._parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "1d", "1.2.3", True, -3, float("nan")])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        procwrap._parse_duration(text)


@pytest.mark.parametrize("text, number", [
    ("TERM", signal.SIGTERM), ("SIGINT", signal.SIGINT), ("hup", signal.SIGHUP),
    ("9", signal.SIGKILL), ("SIGRTMIN", signal.SIGRTMIN)])
def test_parse_signal(text, number):
    assert procwrap._parse_signal(text) == number


@pytest.mark.parametrize("text", ["TERMINATE", "SIG_DFL", "0", "999", ""])
def test_parse_signal_rejects(text):
    with pytest.raises(ValueError):
        procwrap._parse_signal(text)


def test_describe_wait():
    assert procwrap._describe_wait(0) == "exited with status 0"
    assert procwrap._describe_wait(signal.SIGKILL) == "terminated by SIGKILL (status 137)"
    assert procwrap._describe_wait(3 << 8) == "exited with status 3"
    assert procwrap._describe_wait(137 << 8) == "exited with status 137"   # not a signal


def test_backoff_sequence_is_exponential_and_capped():
    delays = [procwrap._backoff_delay(n, 1.0, 2.0, 60.0) for n in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_backoff_jitter_only_shortens():
    assert procwrap._backoff_delay(3, 1.0, 2.0, 60.0, 0.1, rand=lambda: 0.0) == 4.0
    assert procwrap._backoff_delay(3, 1.0, 2.0, 60.0, 0.1, rand=lambda: 1.0) == pytest.approx(3.6)
    assert procwrap._backoff_delay(10 ** 6, 1.0, 2.0, 60.0) == 60.0     # no overflow


def test_kubernetes_default_backoff_is_reproducible():
    # The kubelet's numbers, as a check that the knobs mean what Kubernetes means.
    assert [procwrap._backoff_delay(n, 10, 2, 300) for n in range(1, 8)] == \
        [10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize("text, expect", [
    ("$(A)-$(B)", "1-$(B)"), ("$$(A)", "$(A)"), ("$$", "$"), ("no vars", "no vars"),
    ("$A ${A}", "$A ${A}"), ("$(A)$(A)", "11")])
def test_kubernetes_var_expansion(text, expect):
    assert procwrap._expand_vars(text, {"A": "1"}) == expect


def test_rfc3339():
    assert procwrap._rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert procwrap._rfc3339(1790000000.1234) == "2026-09-21T14:13:20.123Z"


def test_utf8_cut_backs_off_continuation_bytes():
    data = "aé".encode() * 10          # a, then a 2-byte character
    cut = procwrap._utf8_cut(data, 2)
    assert cut == 1
    assert data[:cut].decode() == "a"


def test_did_you_mean():
    assert procwrap._did_you_mean("restartPolcy", ["restartPolicy", "name"]) == \
        "; did you mean 'restartPolicy'?"
    assert procwrap._did_you_mean("zzz", ["restartPolicy"]) == ""


def test_spawn_error_statuses():
    import errno
    assert procwrap._SpawnError("exec", errno.ENOENT).status == 127
    assert procwrap._SpawnError("exec", errno.EACCES).status == 126
    assert procwrap._SpawnError("chdir", errno.ENOENT).status == 126


class FakeClock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_loop_timers_fire_in_order_and_cancel():
    clock = FakeClock()
    loop = procwrap._Loop(clock=clock)
    fired = []
    loop.call_later(3, fired.append, "c")
    loop.call_later(1, fired.append, "a")
    cancelled = loop.call_later(2, fired.append, "b")
    cancelled.cancel()
    clock.now += 5
    loop.run_once()
    assert fired == ["a", "c"]
    loop.close()


def test_loop_survives_a_crashing_callback():
    clock = FakeClock()
    loop = procwrap._Loop(clock=clock)
    errors, fired = [], []
    loop.on_error = errors.append
    loop.call_later(0, lambda: 1 / 0)
    loop.call_later(0, fired.append, "after")
    loop.run_once()
    assert fired == ["after"] and "ZeroDivisionError" in errors[0]
    loop.close()


def test_process_state_table_is_closed():
    states = set(procwrap._TRANSITIONS)
    for targets in procwrap._TRANSITIONS.values():
        assert set(targets) <= states
    # Stopped for good, or an attempt ended (a failed probe or hook, a timeout), after
    # which its restartPolicy decides as after any exit.
    assert set(procwrap._TRANSITIONS[procwrap._State.STOPPING]) == set(
        [procwrap._State.STOPPED, procwrap._State.BACKOFF, procwrap._State.EXITED,
         procwrap._State.FATAL])


@pytest.mark.parametrize("success, failure, initial, results, flips", [
    # Kubernetes: the result flips only when a run of identical results reaches its threshold.
    (1, 3, True, "FFSFFF", [None, None, None, None, None, False]),
    (1, 3, False, "SFS", [True, None, None]),
    (2, 1, False, "SFSSF", [None, None, None, True, False]),
    (1, 1, None, "FS", [False, True]),
    (3, 2, True, "FFSSS", [None, False, None, None, True]),
])
def test_probe_thresholds(success, failure, initial, results, flips):
    thresholds = procwrap._Thresholds(success, failure, initial)
    seen = []
    for letter in results:
        flipped = thresholds.record(letter == "S")
        seen.append(thresholds.result if flipped else None)
    assert seen == flips


SHELL_SYNTAX = load_table("shell_syntax_cases.json")


@pytest.mark.parametrize("case", SHELL_SYNTAX, ids=[c["command"] for c in SHELL_SYNTAX])
def test_shell_syntax(case):
    assert procwrap._shell_syntax(case["command"]) == case["expect"]


LABELS = load_table("labels_cases.json")


@pytest.mark.parametrize("case", LABELS, ids=[c["file"][:30] for c in LABELS])
def test_downward_api_labels_file(case):
    if "error" in case:
        with pytest.raises(procwrap.ConfigError) as caught:
            procwrap._parse_labels_file(case["file"], "t")
        assert str(caught.value) == case["error"]
    else:
        assert procwrap._parse_labels_file(case["file"], "t") == case["expect"]


SEVERITY = load_table("severity_cases.json")


@pytest.mark.parametrize("case", SEVERITY, ids=[c["line"][:30] for c in SEVERITY])
def test_severity_detection(case):
    assert procwrap._detect_severity(case["line"]) == case["expect"]
