"""Signals as dumb-init and tini handle them (issue 8, part 2): every catchable signal is
forwarded, job control stops the child too, the child gets the terminal, ignored signals
stay ignored, blocked ones are still received, and signals can be rewritten."""
import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from conftest import PROCWRAP, PYTHON, WAIT, Background, clean_environ, fixture, wait_until

PRINT_SIGNALS = [PYTHON, fixture("print_signals.py")]

#: dumb-init's list beyond the usual ones: before, each of these killed procwrap (and
#: then, through the parent-death signal, the child).
EXTRA = ["ALRM", "URG", "PWR", "IO", "VTALRM", "PROF", "XCPU", "XFSZ", "SYS", "PIPE",
         "STKFLT", "TRAP", "ABRT"]


def realtime():
    return [signal.SIGRTMIN, signal.SIGRTMIN + 5, signal.SIGRTMAX]


def name_of(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


@pytest.mark.parametrize("mode", ["wrap", "supervise"])
def test_every_catchable_signal_is_forwarded(background, tmp_path, mode):
    signals = [getattr(signal, "SIG" + name) for name in EXTRA] + realtime()
    if mode == "wrap":
        procwrap = background("--", *PRINT_SIGNALS)
    else:
        config = tmp_path / "c.json"
        config.write_text(json.dumps({"processes": [{"name": "app", "command": PRINT_SIGNALS}]}))
        procwrap = background("-c", str(config), "--log-format", "text")
    procwrap.expect("ready (pid:")
    for count, signum in enumerate(signals, 1):
        procwrap.signal(signum)
        procwrap.expect(lambda line, n=name_of(signum): line.endswith(n))
    assert procwrap.proc.poll() is None         # procwrap is alive and well
    procwrap.signal(signal.SIGKILL)
    procwrap.wait()


def state_of(pid):
    with open("/proc/%d/stat" % pid) as stream:
        return stream.read().rsplit(")", 1)[1].split()[0]


def test_tstp_stops_the_child_too_and_cont_resumes_both(background):
    """print_signals handles TSTP and would carry on: dumb-init sends the group SIGSTOP."""
    procwrap = background("--", *PRINT_SIGNALS + ["--exit-on", "TERM"])
    child = int(procwrap.expect("ready (pid:").split(":")[1].strip(" )"))
    procwrap.signal(signal.SIGTSTP)
    wait_until(lambda: state_of(procwrap.pid) == "T" and state_of(child) == "T",
               what="procwrap and its child stopped")
    procwrap.signal(signal.SIGCONT)
    wait_until(lambda: state_of(procwrap.pid) != "T" and state_of(child) != "T",
               what="both running again")
    procwrap.expect("SIGCONT")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0         # print_signals exits 0 on TERM


def test_the_child_gets_the_terminal_when_procwrap_leads_the_session():
    """`docker run -t`: procwrap is session leader with the terminal.  Before, the child's
    TIOCSCTTY failed and a `bash -m` had no job control."""
    probe = ("import os\n"
             "tty = open('/dev/tty')\n"           # ENXIO without a controlling terminal
             "print('ctty', os.tcgetpgrp(tty.fileno()) == os.getpgrp(), flush=True)\n")
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execve(PYTHON, [PYTHON, PROCWRAP, "--", PYTHON, "-c", probe], clean_environ())
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:         # EIO: every end of the terminal is closed
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert b"ctty True" in output, output
    assert os.WEXITSTATUS(status) == 0


def test_signals_ignored_at_start_stay_ignored_in_the_child():
    """tini's rule (`nohup procwrap ...`); CPython ignores PIPE and XFSZ itself, so those
    two are reset to the default, as from a shell."""
    def ignore():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    result = subprocess.run([PYTHON, PROCWRAP, "--", "grep", "^SigIgn", "/proc/self/status"],
                            stdout=subprocess.PIPE, universal_newlines=True, timeout=WAIT,
                            preexec_fn=ignore, env=clean_environ())
    ignored = int(result.stdout.split()[1], 16)
    for name in ("SIGHUP", "SIGUSR1"):
        assert ignored & (1 << (getattr(signal, name) - 1)), name
    for name in ("SIGPIPE", "SIGXFSZ", "SIGTERM", "SIGUSR2"):
        assert not ignored & (1 << (getattr(signal, name) - 1)), name


def test_a_blocked_term_is_still_received():
    """Started with TERM blocked (some launchers do that), procwrap must still stop on it;
    and the child starts with nothing blocked."""
    def block():
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGUSR2])
    procwrap = Background(["--", "sh", "-c", "grep ^SigBlk /proc/self/status; exec sleep 300"],
                          preexec=block)
    try:
        line = procwrap.expect("SigBlk")
        assert int(line.split()[1], 16) == 0
        procwrap.signal(signal.SIGTERM)
        assert procwrap.wait() == 143
    finally:
        procwrap.kill()


@pytest.mark.parametrize("mode", ["wrap", "supervise"])
def test_signal_map_rewrites_and_drops(background, tmp_path, mode):
    args = ["--signal-map", "TERM:INT,HUP:USR1,USR2:"]
    if mode == "wrap":
        procwrap = background(*args + ["--", PYTHON, fixture("print_signals.py"), "--exit-on",
                                       "INT"])
    else:
        config = tmp_path / "c.json"
        config.write_text(json.dumps({"processes": [{"name": "app", "command": [
            PYTHON, fixture("print_signals.py"), "--exit-on", "INT"], "stopSignal": "INT"}]}))
        procwrap = background("-c", str(config), "--log-format", "text", *args)
    procwrap.expect("ready (pid:")
    procwrap.signal(signal.SIGUSR2)             # dropped
    procwrap.signal(signal.SIGHUP)              # arrives as USR1
    procwrap.expect("SIGUSR1")
    procwrap.signal(signal.SIGTERM)             # acts as INT
    assert procwrap.wait() in (0, 130)
    out = procwrap.stdout
    assert "SIGUSR2" not in out and "SIGHUP" not in out and "SIGTERM" not in out
    assert "SIGINT" in out


def test_single_child_signals_the_child_alone(background):
    """The child shell passes USR1 on to its own child by hand; that USR1 is handled
    after any HUP the grandchild got earlier (sh runs pending traps in signal order), so
    its line tells whether a HUP reached the grandchild."""
    grandchild = ("trap 'echo grandchild got HUP' HUP; trap 'echo grandchild got USR1' USR1; "
                  "echo grandchild ready; while :; do sleep 0.05; done")
    script = ("sh -c \"%s\" & child=$!; trap 'echo parent got HUP' HUP; "
              "trap 'kill -USR1 $child' USR1; while :; do sleep 0.05; done" % grandchild)
    for flags, reaches_grandchild in (([], True), (["--single-child"], False)):
        procwrap = background(*flags + ["--", "sh", "-c", script])
        procwrap.expect("grandchild ready")
        procwrap.signal(signal.SIGHUP)
        procwrap.expect("parent got HUP")
        procwrap.signal(signal.SIGUSR1)
        procwrap.expect("grandchild got USR1")
        assert ("grandchild got HUP" in procwrap.stdout) == reaches_grandchild, procwrap.stdout
        procwrap.signal(signal.SIGTERM)
        procwrap.wait()


def test_a_closed_log_reader_is_no_sigpipe_for_the_child(tmp_path):
    """procwrap's own write to a closed stdout raises SIGPIPE at procwrap: that one is not
    forwarded (a SIGPIPE sent with kill is, above)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGPIPE, lambda *a: open(sys.argv[1], 'w').write('got'))\n"
             "for _ in range(20):\n"
             "    print('line', flush=True)\n"
             "    time.sleep(0.01)\n")
    marker = tmp_path / "sigpipe"
    result = subprocess.run([PYTHON, PROCWRAP, "--log-format", "json", "--", PYTHON, "-c",
                             child, str(marker)], stdout=write_end, stderr=subprocess.PIPE,
                            timeout=WAIT, env=clean_environ())
    os.close(write_end)
    assert result.returncode == 0
    assert not marker.exists()
