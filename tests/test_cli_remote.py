"""procwrap remote (issue 10, part 1) against a real sshd on loopback: the
bootstrap, exit statuses, output, signals and no process left behind."""
import json
import os
import signal
import uuid

import pytest

from conftest import clean_environ, cmdline_of, free_port, parent_of, records, run, wait_until


def remote(sshd, *args, **kwargs):
    """Run `procwrap remote` with the test sshd's keys; a CompletedProcess."""
    return run("remote", *(sshd.options() + list(args)), **kwargs)


def remote_pids(marker):
    """Pids (other than ours) whose command line holds `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                if marker in cmdline_of(int(name)):
                    found.append(int(name))
            except OSError:
                pass
    return found


def test_status_output_and_the_last_unterminated_line(sshd):
    result = remote(sshd, sshd.host(), "--", "sh", "-c",
                    "echo one; echo two >&2; echo three; printf tail; exit 3")
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    # stdout's lines in their order (stderr's, marked !, may come between them)
    assert [line for line in lines if "two" not in line] == [
        "127.0.0.1 | one", "127.0.0.1 | three", "127.0.0.1 | tail"]
    assert "127.0.0.1 ! two" in lines and len(lines) == 4
    assert result.stderr == ""


def test_json_records_carry_the_host_and_keep_order_per_stream(sshd):
    script = "for i in $(seq 1 2000); do echo out $i; echo err $i >&2; done; printf last"
    result = remote(sshd, "--log-format", "json", sshd.host(), "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = [r for r in records(result.stdout) if r.get("process") != "procwrap"]
    assert all(r["host"] == "127.0.0.1" for r in lines)
    out = [r["message"] for r in lines if r["stream"] == "stdout"]
    err = [r["message"] for r in lines if r["stream"] == "stderr"]
    assert out == ["out %d" % i for i in range(1, 2001)] + ["last"]
    assert err == ["err %d" % i for i in range(1, 2001)]


def test_exit_statuses_follow_the_core_rules(sshd):
    assert remote(sshd, sshd.host(), "--", "sh", "-c", "kill -TERM $$").returncode == 143
    missing = remote(sshd, sshd.host(), "--", "no-such-command-procwrap")
    assert missing.returncode == 127
    assert "no-such-command-procwrap" in missing.stderr
    timed = remote(sshd, "--timeout", "1", sshd.host(), "--", "sleep", "30")
    assert timed.returncode == 124


def test_several_hosts_run_in_parallel_and_the_highest_status_wins(sshd):
    hosts = "%s,root@localhost:%d" % (sshd.host(), sshd.port)
    result = remote(sshd, hosts, "--", "sh", "-c", "echo hi; exit 5")
    assert result.returncode == 5, result.stderr
    assert sorted(result.stdout.splitlines()) == ["127.0.0.1 | hi", "localhost | hi"]
    summary = [line for line in result.stderr.splitlines() if "status" in line]
    assert len(summary) == 2 and all("status 5" in line for line in summary)


def test_a_missing_remote_python_is_127_naming_the_host(sshd):
    options = sshd.options()
    options[options.index("--python") + 1] = "/nonexistent/python3"
    result = run("remote", *(options + [sshd.host(), "--", "true"]))
    assert result.returncode == 127
    assert result.stderr.startswith("procwrap: 127.0.0.1: /nonexistent/python3 not found")
    assert len(result.stderr.splitlines()) == 1


def test_an_unreachable_host_is_255_with_ssh_s_reason(sshd):
    closed = "root@127.0.0.1:1"
    result = remote(sshd, closed, "--", "true")
    assert result.returncode == 255
    assert result.stderr.startswith("procwrap: 127.0.0.1: ssh: ")
    assert "refused" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_retries_connect_again_and_back_off(sshd, tmp_path):
    counter = tmp_path / "count"
    script = ("n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s; echo try $n; "
              "[ $n -ge 3 ]" % (counter, counter))
    result = remote(sshd, "--retries", "4", "--retry-delay", "0.01", sshd.host(), "--",
                    "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["127.0.0.1 | try 1", "127.0.0.1 | try 2",
                                          "127.0.0.1 | try 3"]


def test_signals_reach_the_remote_command(sshd, background):
    marker = "procwrap-signal-" + uuid.uuid4().hex
    script = ("trap 'echo got USR1' USR1; trap 'echo got TERM; exit 7' TERM; echo ready; "
              "while :; do sleep 0.05; done # %s" % marker)
    bg = background(*(["remote"] + sshd.options() + [sshd.host(), "--", "sh", "-c", script]))
    bg.expect("127.0.0.1 | ready")
    bg.signal(signal.SIGUSR1)
    bg.expect("127.0.0.1 | got USR1")
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 7
    assert "127.0.0.1 | got TERM" in bg.stdout
    wait_until(lambda: not remote_pids(marker), what="the remote command to be gone")


def test_a_killed_procwrap_leaves_no_remote_process(sshd, background):
    """SIGKILL: procwrap cannot say anything, but its ssh dies with it
    (parent-death signal), the agent sees EOF and ends the command's group."""
    marker = "procwrap-orphan-" + uuid.uuid4().hex
    bg = background(*(["remote"] + sshd.options() + [
        sshd.host(), "--", "sh", "-c", "sleep 300 & echo ready; wait # " + marker]))
    bg.expect("127.0.0.1 | ready")
    assert remote_pids(marker)
    bg.signal(signal.SIGKILL)
    bg.wait()
    wait_until(lambda: not remote_pids(marker) and not remote_pids("sleep 300"),
               what="no remote process left")


def test_secrets_travel_in_the_channel_not_in_argv(sshd, tmp_path, background):
    (tmp_path / "s.json").write_text(json.dumps({"token": "canary-remote-5e1f"}))
    env = clean_environ(TOKEN_FOR_PROCWRAP_TO_RESOLVE="%s/s.json|JP:$.token" % tmp_path)
    marker = "procwrap-secret-" + uuid.uuid4().hex
    bg = background(*(["remote"] + sshd.options() + [
        sshd.host(), "--", "sh", "-c", 'echo "$TOKEN" | tr a-z A-Z; sleep 30 # ' + marker]),
        env=env)
    bg.expect("127.0.0.1 | CANARY-REMOTE-5E1F")
    for pid in remote_pids(marker) + remote_pids("ssh"):
        try:
            assert "canary-remote-5e1f" not in cmdline_of(pid)
        except OSError:
            pass
    bg.signal(signal.SIGTERM)
    bg.wait()
    assert "canary-remote-5e1f" not in bg.stderr


def test_bad_input_is_one_line_and_status_2(sshd):
    for args, text in ((["remote"], "no host"), (["remote", "h1"], "no command"),
                       (["remote", "h1,h1", "--", "true"], "named twice"),
                       (["remote", "a;b", "--", "true"], "remote: HOST"),
                       (["remote", "--wait-group", "h1", "--", "true"],
                        "--wait-group: applies to wrap mode only")):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and text in result.stderr, result.stderr


def test_python_2_on_the_remote_is_126_saying_so(sshd):
    import glob
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python2")))
    if not found:
        if os.environ.get("CI"):
            raise AssertionError("no Python 2 under pyenv; CI has 2.7.18")
        import pytest
        pytest.skip("no Python 2 under pyenv; skipped outside CI")
    options = sshd.options()
    options[options.index("--python") + 1] = found[-1]
    result = run("remote", *(options + [sshd.host(), "--", "true"]))
    assert result.returncode == 126
    assert result.stderr == ("procwrap: 127.0.0.1: %s is Python 2; procwrap needs Python 3.6+ "
                             "(give --python PATH)\n" % found[-1])


def test_hosts_that_differ_only_by_port_or_user_keep_their_own_names(sshd):
    hosts = "%s,127.0.0.1:%d" % (sshd.host(), sshd.port)
    result = remote(sshd, hosts, "--", "echo", "x")
    assert result.returncode == 0, result.stderr
    names = [sshd.host(), "127.0.0.1:%d" % sshd.port]
    width = max(len(name) for name in names)       # hosts padded to the longest
    assert sorted(result.stdout.splitlines()) == sorted(
        "%s | x" % name.ljust(width) for name in names)


def test_a_silent_link_is_noticed_at_both_ends(sshd, background):
    """ssh stopped (SIGSTOP): no EOF anywhere, only silence.  procwrap takes
    the link for dead after --keepalive (255, saying so), and the agent, no
    longer hearing procwrap, ends the remote command."""
    marker = "procwrap-silent-" + uuid.uuid4().hex
    bg = background(*(["remote", "--keepalive", "2"] + sshd.options() + [
        sshd.host(), "--", "sh", "-c", "echo ready; sleep 300 # " + marker]))
    bg.expect("127.0.0.1 | ready")
    ssh = [pid for pid in remote_pids("ssh\0") if parent_of(pid) == bg.pid
           and cmdline_of(pid).startswith("ssh\0")]
    assert len(ssh) == 1, ssh
    os.kill(ssh[0], signal.SIGSTOP)
    assert bg.wait() == 255
    assert "127.0.0.1: the link was silent for 2 s; taken for dead" in bg.stderr
    wait_until(lambda: not remote_pids(marker), what="the agent to end the remote command")


def test_sudo_runs_the_remote_side_as_another_user(sshd, test_user):
    """sudo -n to the real unprivileged user: the agent and the command are
    that user's (Debian's python3: pyenv's under /root is not theirs to run)."""
    options = sshd.options()
    options[options.index("--python") + 1] = "/usr/bin/python3"
    result = run("remote", *(options + ["--sudo", test_user.pw_name, sshd.host(), "--",
                                        "sh", "-c", "id -un; echo $HOME; exit 6"]))
    assert result.returncode == 6, result.stderr
    assert result.stdout.splitlines()[0] == "127.0.0.1 | %s" % test_user.pw_name


def test_sudo_failures_are_one_line_naming_the_host(sshd):
    options = sshd.options()
    options[options.index("--python") + 1] = "/usr/bin/python3"
    unknown = run("remote", *(options + ["--sudo", "no-such-user-procwrap", sshd.host(), "--",
                                         "true"]))
    assert unknown.returncode == 126
    assert unknown.stderr.startswith("procwrap: 127.0.0.1: sudo: ")
    assert "no-such-user-procwrap" in unknown.stderr and len(unknown.stderr.splitlines()) == 1


def test_sudo_that_wants_a_password_says_so(sshd, test_user):
    """As the unprivileged user, sudo wants a password (no NOPASSWD rule):
    `sudo -n` refuses at once, and procwrap says what to do."""
    options = sshd.options()
    options[options.index("--python") + 1] = "/usr/bin/python3"
    result = run("remote", *(options + ["--sudo", "root", sshd.host(test_user.pw_name), "--",
                                        "true"]))
    assert result.returncode == 126, result.stderr
    assert result.stderr == ("procwrap: 127.0.0.1: sudo needs a password to run as root; give "
                             "it with --sudo-password-env VAR, or let %s@127.0.0.1 run the "
                             "Python without one (NOPASSWD in sudoers)\n" % test_user.pw_name)


def test_via_a_bastion_reaches_a_host_only_it_can_reach(sshd, hidden_host):
    bastion, hidden = hidden_host
    direct = remote(sshd, "--timeout", "20", "--ssh-option", "ConnectTimeout=2", hidden, "--",
                    "true")
    assert direct.returncode == 255, direct.stderr       # no route from here
    result = remote(sshd, "--via", bastion, hidden, "--", "sh", "-c",
                    "echo $SSH_CONNECTION; exit 9")
    assert result.returncode == 9, result.stderr
    host = hidden.split("@")[1]
    client, _, server, _ = result.stdout.split(" | ")[1].split()
    assert (client, server) == (bastion.split("@")[1].rsplit(".", 2)[0] + ".2.1", host)
    assert result.stdout.startswith(host + " | ")


def test_via_two_bastions_nests_the_hops(sshd, hidden_host):
    """The loopback sshd, then the bastion, then the hidden host: each hop's
    options and %h:%p survive the nesting."""
    bastion, hidden = hidden_host
    result = remote(sshd, "--via", "%s,%s" % (sshd.host(), bastion), hidden, "--",
                    "echo", "two hops")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "%s | two hops\n" % hidden.split("@")[1]


def test_a_cut_link_leaves_no_remote_process(sshd, hidden_host, background):
    """The link to the bastion goes down (no FIN, no RST): procwrap gives the
    host up after --keepalive (255), and the agent behind the bastion, no
    longer hearing it, ends its command within about the same time."""
    bastion, hidden = hidden_host
    marker = "procwrap-cut-" + uuid.uuid4().hex
    bg = background(*(["remote", "--keepalive", "3"] + sshd.options() + [
        "--via", bastion, hidden, "--", "sh", "-c", "echo ready; sleep 300 # " + marker]))
    bg.expect(" | ready")
    assert remote_pids(marker)
    hidden_host.cut()
    try:
        assert bg.wait() == 255
        assert "the link was silent for 3 s; taken for dead" in bg.stderr
        wait_until(lambda: not remote_pids(marker), what="the remote command to be gone")
    finally:
        hidden_host.mend()


def test_int_is_passed_on_as_in_wrap_mode(sshd, background):
    """INT is the command's to handle (no retry after it), as in wrap mode."""
    bg = background(*(["remote", "--retries", "3"] + sshd.options() + [
        sshd.host(), "--", "sh", "-c",
        "trap 'echo got INT; exit 3' INT; echo ready; while :; do sleep 0.05; done"]))
    bg.expect("127.0.0.1 | ready")
    bg.signal(signal.SIGINT)
    assert bg.wait() == 3
    assert bg.stdout.count("127.0.0.1 | ready") == 1       # no retry after INT


def test_no_ssh_here_is_127_naming_ssh(sshd):
    result = remote(sshd, sshd.host(), "--", "true", env=clean_environ(PATH="/nonexistent"))
    assert result.returncode == 127
    assert result.stderr == ("procwrap: 127.0.0.1: cannot run ssh: No such file or directory; "
                             "install openssh-client, or put ssh on PATH\n")


def test_user_on_the_remote_host(sshd, test_user):
    """--user is resolved there and switched to by the agent (root there)."""
    result = remote(sshd, "--user", test_user.pw_name, sshd.host(), "--", "sh", "-c",
                    "id -un; echo $HOME")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["127.0.0.1 | " + test_user.pw_name,
                                          "127.0.0.1 | " + test_user.pw_dir]
    unknown = remote(sshd, "--user", "no-such-user-procwrap", sshd.host(), "--", "true")
    assert unknown.returncode == 126
    assert unknown.stderr == ("procwrap: 127.0.0.1: --user: no such user "
                              "'no-such-user-procwrap'; create it or fix the name\n")


def on_host(sshd, host=None, **fields):
    """Fields that put a config entry on the suite's sshd (or `host`)."""
    options = sshd.options()
    entry = {"host": host or sshd.host(), "python": options[options.index("--python") + 1],
             "sshOptions": [options[i + 1] for i, arg in enumerate(options)
                            if arg == "--ssh-option"]}
    entry.update(fields)
    return entry


def ssh_children(pid):
    """The ssh processes procwrap (pid) runs: one per link."""
    from conftest import children_of
    return [child for child in children_of(pid) if cmdline_of(child).startswith("ssh\0")]


def test_config_entries_on_a_host_share_one_link(sshd, background, tmp_path):
    """Two processes and an init entry on one host: one ssh; records, /status
    and /metrics name the host; an exec probe runs there (it sees the sshd
    session's SSH_CONNECTION, which procwrap's own environment lacks)."""
    import http.client
    from conftest import write_config
    config = {"init": [dict(on_host(sshd), name="prepare", command=["echo", "prepared"])],
              "processes": [
                  dict(on_host(sshd), name="one", command=["sh", "-c", "echo one; sleep 300"],
                       readinessProbe={"exec": {"command": [
                           "sh", "-c", 'test -n "$SSH_CONNECTION"']}, "periodSeconds": 0.2}),
                  dict(on_host(sshd), name="two", command=["sleep", "300"]),
                  {"name": "here", "command": ["sleep", "300"]}]}
    environ = dict((k, v) for k, v in os.environ.items() if not k.startswith("SSH_"))
    bg = background("-c", write_config(tmp_path, config), "--http", "127.0.0.1:0",
                    "--log-format", "json", env=environ)
    address = bg.expect_event("http")["address"]
    bg.expect_event("ready")
    assert len(ssh_children(bg.pid)) == 1
    prepared = [r for r in records("\n".join(bg.out)) if r.get("process") == "prepare"]
    assert [(r["message"], r["host"]) for r in prepared] == [("prepared", "127.0.0.1")]

    def get(path):
        host, port = address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    status = json.loads(get("/status"))
    hosts = dict((p["name"], p["host"]) for p in status["processes"])
    assert hosts == {"prepare": "127.0.0.1", "one": "127.0.0.1", "two": "127.0.0.1",
                     "here": None}
    metrics = get("/metrics")
    assert 'procwrap_process_up{host="127.0.0.1",name="one"} 1' in metrics
    assert 'procwrap_process_up{name="here"} 1' in metrics
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    assert not [r for r in records("\n".join(bg.out)) if r.get("event") == "reaped"]


def test_config_host_restarts_after_a_cut_link(sshd, hidden_host, background, tmp_path):
    """A cut link is a failed run (255) of the process on that host; its
    restart policy reconnects once the link is back, and the command of the
    lost run is gone there."""
    from conftest import write_config
    bastion, hidden = hidden_host
    marker = "procwrap-config-cut-" + uuid.uuid4().hex
    config = {"processes": [dict(
        on_host(sshd, hidden, via=bastion, keepalive=2), name="far",
        command=["sh", "-c", "echo is-up; sleep 300 # " + marker],
        backoff={"initial": 0.5, "max": 1})]}
    bg = background("-c", write_config(tmp_path, config), "--log-format", "json")
    bg.expect('"is-up"')
    first = remote_pids(marker)
    assert first
    hidden_host.cut()
    try:
        lost = bg.expect_event("exited", "far")
        assert lost["status"] == 255
        bg.expect("the link was silent for 2 s; taken for dead")
        wait_until(lambda: not [pid for pid in first if pid in remote_pids(marker)],
                   what="the lost run's command to be gone")
    finally:
        hidden_host.mend()
    bg.expect('"is-up"', count=2, timeout=60)
    assert remote_pids(marker)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    wait_until(lambda: not remote_pids(marker), what="the command to be gone after shutdown")


def test_config_remote_fields_are_checked(tmp_path):
    from conftest import write_config
    config = {"processes": [
        {"name": "a", "command": ["true"], "via": "bastion"},
        {"name": "b", "command": ["true"], "host": "a;b"},
        {"name": "c", "command": ["true"], "host": "h1,h2"},
        {"name": "d", "command": ["true"], "host": "h", "keepalive": "soon"},
        {"name": "e", "command": ["true"], "host": "h",
         "livenessProbe": {"file": {"path": "/run/e.ok"}}}]}
    result = run("check", "-c", write_config(tmp_path, config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "procwrap: error: processes[0].via: applies to a process on another host; give `host` too, "
        "or remove it",
        "procwrap: error: processes[1].host: expected [user@]host[:port], or several "
        "comma-separated, got 'a;b'",
        "procwrap: error: processes[2].host: names one host; give each host an entry",
        "procwrap: error: processes[3].keepalive: expected seconds (10, 1.5, 500ms, 2m), got "
        "'soon'",
        "procwrap: error: processes[4].livenessProbe.file: looks at this machine, not at the "
        "process's host; use an exec probe there (test -e, kill -0 $(cat PIDFILE))"]


def test_read_only_tmp_and_home_on_the_remote(sshd, locked_host, test_user):
    """Nothing is written there: the agent starts, runs a command and the
    user's calls with /tmp and $HOME read-only (as root, and as the user)."""
    options = sshd.options()
    options[options.index("--python") + 1] = "/usr/bin/python3"
    for user in ("root", test_user.pw_name):
        result = run("remote", *(options + [locked_host.host(user), "--", "sh", "-c",
                                            "touch /tmp/x $HOME/x 2>/dev/null || echo read-only"]))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "127.0.0.1 | read-only\n"


def test_sudo_password_from_a_variable(sshd, locked_host, test_user, background):
    """sudo -S answered with the password from --sudo-password-env: in no
    process's argv while it runs, nor in the output; a wrong one is 126
    saying so."""
    options = sshd.options()
    options[options.index("--python") + 1] = "/usr/bin/python3"
    args = options + ["--sudo", "root", "--sudo-password-env", "PW",
                      locked_host.host(test_user.pw_name), "--"]
    bg = background(*(["remote"] + args + ["sh", "-c", "echo started; sleep 30"]),
                    env=clean_environ(PW=locked_host.password))
    bg.expect("127.0.0.1 | started")
    assert remote_pids("sleep\x0030") and not remote_pids(locked_host.password)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 143
    good = run("remote", *(args + ["sh", "-c", "id -un; echo $PW"]),
               env=clean_environ(PW=locked_host.password))
    assert good.returncode == 0, good.stderr
    assert good.stdout == "127.0.0.1 | root\n127.0.0.1 | \n"
    assert locked_host.password not in good.stderr
    wrong = run("remote", *(args + ["true"]), env=clean_environ(PW="not-the-password"))
    assert wrong.returncode == 126
    assert wrong.stderr == ("procwrap: 127.0.0.1: sudo refused the password given for root; "
                            "check the variable --sudo-password-env names\n")
    none = run("remote", *(options + ["--sudo", "root", locked_host.host(test_user.pw_name),
                                      "--", "true"]))
    assert none.returncode == 126
    assert "give it with --sudo-password-env VAR" in none.stderr


@pytest.mark.parametrize("shell", ["sh", "bash", "dash", "zsh", "fish"])
def test_any_login_shell_with_noisy_rc_files(sshd, shell, tmp_path):
    """root's login shell is `shell` (a passwd copy bind-mounted in the sshd's
    own mount namespace) and its home holds rc files that print and read
    stdin: the loader still arrives whole, and none of the noise is output."""
    import shutil
    path = shutil.which(shell)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("%s is missing; .ci/run installs it" % shell)
        pytest.skip("%s is not installed (apt-get install %s)" % (shell, shell))
    with open("/etc/passwd") as stream:
        lines = [line.split(":") for line in stream.read().splitlines() if line]
    for fields in lines:
        if fields[0] == "root":
            fields[6] = path
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(":".join(fields) + "\n" for fields in lines))
    home = tmp_path / "home"
    (home / ".config" / "fish").mkdir(parents=True)
    noise = "echo rc-noise; echo rc-noise-err >&2; read -t 1 line || true\n"
    for name in (".bashrc", ".profile", ".zshenv", ".zshrc"):
        (home / name).write_text(noise)
    (home / ".config" / "fish" / "config.fish").write_text(
        "echo rc-noise; echo rc-noise-err >&2; timeout 1 cat >/dev/null; or true\n")
    port = free_port()
    process = sshd.spawn("127.0.0.1", port, setup=[
        "mount --bind %s /etc/passwd" % passwd, "mount --bind %s /root" % home])
    try:
        options = sshd.options()
        options[options.index("--python") + 1] = "/usr/bin/python3"
        result = run("remote", *(options + ["root@127.0.0.1:%d" % port, "--", "sh", "-c",
                                            "echo ok; echo $SHELL"]))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "127.0.0.1 | ok\n127.0.0.1 | %s\n" % path
    finally:
        from conftest import _kill_tree
        _kill_tree(process)


def test_a_slow_reader_here_slows_the_remote_command(sshd):
    """Back-pressure across the link: while nobody reads procwrap's stdout,
    the agent stops reading its command's output past a bounded backlog
    instead of holding it all; every line still arrives, in order."""
    import subprocess
    import time
    lines = 400000           # 40 MB of 100-byte lines
    script = ("seq -f '%%099g' %d; grep VmHWM /proc/$PPID/status" % lines)
    argv = ["remote"] + sshd.options() + [sshd.host(), "--", "sh", "-c", script]
    from conftest import PROCWRAP, PYTHON
    process = subprocess.Popen([PYTHON, PROCWRAP] + argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=clean_environ())
    time.sleep(3)           # the slow reader: nothing is read for a while
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    got = out.decode().splitlines()
    assert len(got) == lines + 1
    assert got[0] == "127.0.0.1 | %099d" % 1 and got[lines - 1] == "127.0.0.1 | %099d" % lines
    peak_kb = int(got[-1].split()[-2])
    assert peak_kb < 40 * 1024, "the agent held %d kB" % peak_kb


def test_config_merge_stderr_on_a_host(sshd, tmp_path):
    """mergeStderr on a remote entry: the agent gives both streams one pipe there."""
    from conftest import write_config
    script = "for i in $(seq 1 50); do echo out$i; echo err$i >&2; done"
    config = {"processes": [dict(on_host(sshd), name="both", command=["sh", "-c", script],
                                 restartPolicy="Never", mergeStderr=True)]}
    result = run("-c", write_config(tmp_path, config), "--log-format", "json")
    assert result.returncode == 0, result.stderr
    lines = [(r["stream"], r["message"]) for r in records(result.stdout)
             if r.get("process") == "both"]
    assert lines == [("stdout", "%s%d" % (kind, i)) for i in range(1, 51)
                     for kind in ("out", "err")]
