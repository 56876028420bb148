"""Wrap mode through the CLI: statuses, signals, groups, time limits, retries, environment."""
import os
import signal
import subprocess

import pytest

from conftest import (PROCWRAP, PYTHON, clean_environ, events, fixture, lines_of, pid_alive,
                      run, wait_until)


@pytest.mark.parametrize("script, status", [
    ("exit 0", 0), ("exit 1", 1), ("exit 3", 3), ("exit 255", 255),
    ("kill -KILL $$", 137), ("kill -TERM $$", 143), ("kill -SEGV $$", 139),
    ("kill -USR1 $$", 138),
])
def test_exit_status_is_the_childs(script, status):
    result = run("--", "sh", "-c", script)
    assert result.returncode == status
    assert result.stderr == ""


def test_command_not_found_is_127():
    result = run("--", "no-such-command-procwrap")
    assert result.returncode == 127
    assert "command not found: 'no-such-command-procwrap'" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_not_executable_is_126(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run("--", str(script))
    assert result.returncode == 126
    assert "Permission denied" in result.stderr


def test_command_without_double_dash():
    assert run("sh", "-c", "exit 4").returncode == 4


def test_output_passes_through_untouched():
    result = run("--", "sh", "-c", "printf 'raw \\033[1mbold\\033[0m'; printf 'err\\n' >&2")
    assert result.stdout == "raw \x1b[1mbold\x1b[0m"
    assert result.stderr == "err\n"


def test_pass_through_inherits_stdin():
    result = run("--", "cat", input="from stdin\n")
    assert result.stdout == "from stdin\n"


@pytest.mark.parametrize("name", ["HUP", "USR1", "USR2", "WINCH", "INT", "QUIT", "TERM"])
def test_signals_are_forwarded(background, name):
    bg = background("--", PYTHON, fixture("print_signals.py"), "--exit-on", name)
    bg.expect("ready (pid:")
    bg.signal(getattr(signal, "SIG" + name))
    bg.expect("SIG" + name)
    assert bg.wait() == 0


def test_signals_reach_the_whole_group(background):
    script = ("%s %s --exit-on TERM & exec %s %s --exit-on TERM"
              % (PYTHON, fixture("print_signals.py"), PYTHON, fixture("print_signals.py")))
    bg = background("--", "sh", "-c", script)
    bg.expect("ready (pid:", count=2)
    bg.signal(signal.SIGUSR1)
    bg.expect("SIGUSR1", count=2)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0


def test_stop_signal_remaps_term(background):
    bg = background("--stop-signal", "INT", "--", PYTHON, fixture("print_signals.py"),
                    "--exit-on", "INT")
    bg.expect("ready (pid:")
    bg.signal(signal.SIGTERM)
    bg.expect("SIGINT")
    assert bg.wait() == 0
    assert "SIGTERM" not in bg.stdout


def test_stop_timeout_escalates_to_sigkill(background):
    bg = background("--stop-timeout", "0.2", "--", PYTHON, fixture("print_signals.py"))
    bg.expect("ready (pid:")
    bg.signal(signal.SIGTERM)
    bg.expect("SIGTERM")
    assert bg.wait() == 128 + signal.SIGKILL
    assert "sending SIGKILL to its group" in bg.stderr


def test_second_term_waits_out_grace_unless_asked(background):
    bg = background("--kill-on-second-signal", "--stop-timeout", "600", "--",
                    PYTHON, fixture("print_signals.py"))
    bg.expect("ready (pid:")
    bg.signal(signal.SIGTERM)
    bg.expect("SIGTERM")
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 137


def test_leftover_group_gets_sigterm_when_child_exits(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    result = run("--", "sh", "-c", "sleep 300 & echo $! > %s; exit 5" % pidfile)
    assert result.returncode == 5
    daemon = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(daemon), what="the background sleep to be gone")


def test_wait_group_waits_for_the_rest_of_the_group(tmp_path):
    marker = tmp_path / "done"
    result = run("--wait-group", "--", "sh", "-c",
                 "(sleep 0.3; touch %s) & exit 6" % marker)
    assert result.returncode == 6
    assert marker.exists()


# The children of the two --timeout tests are shells whose trap is set
# before anything runs (a Python child could still be starting when the
# stop signal came, on a loaded machine, and die of it unhandled).

def test_timeout_stops_the_child_and_exits_124(background):
    result = run("--timeout", "0.3", "--", "sh", "-c",
                 "trap 'echo SIGTERM; exit 0' TERM; sleep 30 & wait")
    assert result.returncode == 124
    assert "SIGTERM" in result.stdout
    assert "timed out after 0.3 s" in result.stderr


def test_timeout_escalates_when_term_is_ignored():
    # trap '' makes TERM ignored, and sleep inherits that: only SIGKILL ends it.
    result = run("--timeout", "0.2", "--stop-timeout", "0.2", "--",
                 "sh", "-c", "trap '' TERM; sleep 30")
    assert result.returncode == 124
    assert "sending SIGKILL" in result.stderr


def test_retries_until_success(tmp_path):
    counter = tmp_path / "count"
    script = ("n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s; "
              "echo attempt $n; [ $n -ge 3 ]" % (counter, counter))
    result = run("--retries", "5", "--retry-delay", "0.01", "--", "sh", "-c", script)
    assert result.returncode == 0
    assert result.stdout.split() == ["attempt", "1", "attempt", "2", "attempt", "3"]
    assert result.stderr.count("retrying in") == 2


def test_retries_exhausted_gives_last_status(tmp_path):
    counter = tmp_path / "count"
    script = ("n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s; exit $((10+n))"
              % (counter, counter))
    result = run("--retries", "2", "--retry-delay", "0.01", "--", "sh", "-c", script)
    assert result.returncode == 13
    assert "attempt 1 of 3 exited with status 11" in result.stderr
    assert "attempt 2 of 3 exited with status 12" in result.stderr


def test_retry_backoff_grows_and_is_capped():
    result = run("--log-format", "json", "--retries", "4", "--retry-delay", "0.01",
                 "--retry-backoff", "3", "--retry-max-delay", "0.1", "--retry-jitter", "0",
                 "--", "sh", "-c", "exit 1")
    assert result.returncode == 1
    delays = [r["delay"] for r in events(result.stdout, "backoff")]
    assert delays == [0.01, 0.03, 0.09, 0.1]


def test_success_codes_are_not_retried():
    result = run("--retries", "3", "--success-codes", "0,3", "--", "sh", "-c",
                 "echo once; exit 3")
    assert result.returncode == 3
    assert result.stdout == "once\n"


def test_term_during_backoff_stops_retrying(background):
    bg = background("--retries", "5", "--retry-delay", "600", "--log-format", "json",
                    "--", "sh", "-c", "exit 7")
    bg.expect_event("backoff")
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 7


def test_workdir(tmp_path):
    result = run("--workdir", str(tmp_path), "--", "pwd")
    assert result.stdout.strip() == str(tmp_path)


def test_env_and_env_file(tmp_path):
    envfile = tmp_path / "app.env"
    envfile.write_text('# settings\nexport GREETING="hello world"\nNAME=${USER_NAME:-anon}\n'
                       "MULTI='line1\nline2'\n")
    env = clean_environ(USER_NAME="ada")
    result = run("--env-file", str(envfile), "--env", "EXTRA=a=b", "--", "sh", "-c",
                 'printf "%s|%s|%s|%s" "$GREETING" "$NAME" "$EXTRA" "$MULTI"', env=env)
    assert result.stdout == "hello world|ada|a=b|line1\nline2"


def test_env_twins_configure_procwrap(tmp_path):
    env = clean_environ(PROCWRAP_TIMEOUT="0.2", PROCWRAP_WORKDIR=str(tmp_path),
                        PROCWRAP_ENV="A=1\nB=2")
    result = run("--", "sh", "-c", 'pwd; echo "$A$B"; env | grep -c ^PROCWRAP_; sleep 30',
                 env=env)
    assert result.returncode == 124
    assert result.stdout.split() == [str(tmp_path), "12", "0"]


def test_command_line_wins_over_env_twin():
    env = clean_environ(PROCWRAP_RETRIES="5")
    result = run("--retries", "0", "--", "sh", "-c", "echo run; exit 1", env=env)
    assert result.stdout == "run\n"


def test_user_switch(test_user):
    result = run("--user", test_user.pw_name, "--", "sh", "-c",
                 'id -u; id -g; echo "$HOME $USER $LOGNAME"; id -G')
    lines = result.stdout.splitlines()
    assert lines[0] == str(test_user.pw_uid)
    assert lines[1] == str(test_user.pw_gid)
    assert lines[2] == "%s %s %s" % (test_user.pw_dir, test_user.pw_name, test_user.pw_name)
    assert "0" not in lines[3].split()        # root's groups were dropped


def test_user_with_group(test_user):
    result = run("--user", "%s:daemon" % test_user.pw_name, "--", "id", "-gn")
    assert result.stdout.strip() == "daemon"


@pytest.mark.parametrize("fmt", ["json", "logfmt", "text"])
def test_log_formats_in_wrap_mode(fmt):
    result = run("--log-format", fmt, "--", "sh", "-c", "echo out; echo err >&2; exit 2")
    assert result.returncode == 2
    if fmt == "json":
        assert lines_of(result.stdout, "sh") == ["out"]
        assert lines_of(result.stdout, "sh", "stderr") == ["err"]
    elif fmt == "logfmt":
        assert 'process=sh stream=stdout msg="out"' in result.stdout
        assert 'process=sh stream=stderr msg="err"' in result.stdout
    else:
        assert "sh | out\n" in result.stdout and "sh ! err\n" in result.stdout


def test_runs_as_main_module_and_from_memory():
    module = subprocess.run([PYTHON, "-m", "procwrap", "--", "sh", "-c", "exit 9"],
                            cwd=os.path.dirname(PROCWRAP), env=clean_environ())
    assert module.returncode == 9
    with open(PROCWRAP) as stream:
        source = stream.read()
    # Piped on stdin: no __file__, no sibling files, as the SSH bootstrap will run it.
    memory = subprocess.run([PYTHON, "-", "--", "sh", "-c", "exit 8"], input=source,
                            universal_newlines=True, cwd="/", env=clean_environ())
    assert memory.returncode == 8


def test_help_documents_every_option_and_twin():
    import procwrap
    result = run("--help")
    assert result.returncode == 0
    for option in procwrap._OPTIONS:
        assert option.flags[-1] in result.stdout
        assert option.env in result.stdout
    assert "124" in result.stdout and "127" in result.stdout


def test_version():
    import procwrap
    assert run("--version").stdout == "procwrap %s\n" % procwrap.__version__
