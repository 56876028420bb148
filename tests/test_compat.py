"""Real CLI scenarios under every CPython 3.x that `pyenv versions` lists (3.6 ... 3.13)."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import (PROCWRAP, PYTHON as PYTHON_SUITE, WAIT, Background, clean_environ, fixture,
                      records)

REQUIRED = ["3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
#: CI (.ci/run sets CI=true) has every interpreter, and a missing one fails there;
#: elsewhere (a laptop without pyenv) their scenarios are skipped, saying why.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pyenv_interpreters():
    """{'3.6': '/root/.pyenv/versions/3.6.15/bin/python3', ...} from `pyenv versions`."""
    try:
        out = subprocess.run(["pyenv", "versions", "--bare"], stdout=subprocess.PIPE,
                             universal_newlines=True, timeout=WAIT).stdout
        root = subprocess.run(["pyenv", "root"], stdout=subprocess.PIPE,
                              universal_newlines=True, timeout=WAIT).stdout.strip()
    except OSError:
        return {}
    found = {}
    for version in out.split():
        parts = version.split(".")
        if len(parts) >= 2 and parts[0] == "3" and parts[1].isdigit():
            python = os.path.join(root, "versions", version, "bin", "python3")
            if os.path.exists(python):
                found["3." + parts[1]] = python
    return found


INTERPRETERS = pyenv_interpreters()


def test_every_required_interpreter_is_installed():
    missing = [v for v in REQUIRED if v not in INTERPRETERS]
    if missing and not IN_CI:
        pytest.skip("pyenv lists no CPython %s, so their compatibility scenarios are skipped "
                    "here (CI has them all, and fails without one)" % ", ".join(missing))
    assert not missing, "pyenv lists no CPython %s; install it (pyenv install)" % missing


def run_with(python, *args, **kwargs):
    return subprocess.run([python, PROCWRAP] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=WAIT,
                          env=kwargs.pop("env", clean_environ()), **kwargs)


def interpreter(version):
    """The interpreter of a CPython version; skipped (failed in CI) when absent."""
    if version not in INTERPRETERS:
        if IN_CI:
            pytest.fail("CPython %s is not installed" % version)
        pytest.skip("CPython %s is not installed (pyenv install %s); skipped outside CI"
                    % (version, version))
    return INTERPRETERS[version]


@pytest.fixture(params=REQUIRED)
def python(request):
    return interpreter(request.param)


def test_wrap_exit_statuses(python):
    assert run_with(python, "--", "sh", "-c", "exit 3").returncode == 3
    assert run_with(python, "--", "sh", "-c", "kill -TERM $$").returncode == 143
    assert run_with(python, "--", "no-such-command-procwrap").returncode == 127
    retried = run_with(python, "--retries", "2", "--retry-delay", "0.01", "--", "sh", "-c",
                       "echo x; exit 4")
    assert retried.returncode == 4 and retried.stdout == "x\n" * 3
    timed = run_with(python, "--timeout", "0.2", "--", "sleep", "30")
    assert timed.returncode == 124


def test_wrap_forwards_signals(python):
    bg = Background(["--", python, fixture("print_signals.py"), "--exit-on", "USR1"],
                    python=python)
    try:
        bg.expect("ready (pid:")
        bg.signal(signal.SIGHUP)
        bg.expect("SIGHUP")
        bg.signal(signal.SIGUSR1)
        bg.expect("SIGUSR1")
        assert bg.wait() == 0
    finally:
        bg.kill()


def test_supervisor_json_logs(python, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"init": [{"name": "i", "command": ["echo", "init"]}],
                                  "processes": [
                                      {"name": "srv", "command": ["sleep", "30"]},
                                      {"name": "job", "command": ["sh", "-c", "echo done"],
                                       "restartPolicy": "Never", "essential": True,
                                       "labels": {"k": "v"}}]}))
    result = run_with(python, "-c", str(config))
    assert result.returncode == 0, result.stderr
    got = records(result.stdout)
    assert {"process": "job", "stream": "stdout", "message": "done", "k": "v"}.items() <= \
        [r for r in got if r.get("process") == "job"][0].items()
    assert [r["name"] for r in got if r.get("event") == "stopping"] == ["srv"]


def test_supervisor_shutdown_on_term(python, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"processes": [
        {"name": "a", "command": [python, fixture("print_signals.py"), "--exit-on", "TERM"]}]}))
    bg = Background(["-c", str(config)], python=python)
    try:
        bg.expect("ready (pid:")
        bg.signal(signal.SIGTERM)
        assert bg.wait() == 0
        assert "SIGTERM" in bg.stdout
    finally:
        bg.kill()


def test_config_error(python, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"processes": [{"name": "a", "command": ["x"],
                                                 "restartPolicy": "always"}]}))
    result = run_with(python, "check", "-c", str(config))
    assert result.returncode == 2
    assert result.stderr == ("procwrap: error: processes[0].restartPolicy: expected Always, "
                             "OnFailure or Never, got 'always'\n")


def test_user_switch(python, test_user):
    # The child must not import anything after setuid: the interpreter's
    # library under /root is unreadable to the user (a 3.6/3.7 os.execvpe trap).
    result = run_with(python, "--user", test_user.pw_name, "--", "id", "-un")
    assert result.returncode == 0, result.stderr
    assert result.stdout == test_user.pw_name + "\n"


def test_secrets_resolution(python, tmp_path):
    # Stdlib-only providers, a JSON Path, a template, the output file and a
    # missing location's exit status, on every interpreter.
    (tmp_path / "db.json").write_text('{"db": {"user": "app", "password": "pw"}}')
    output = tmp_path / "out.env"
    env = clean_environ(USER_FOR_PROCWRAP_TO_RESOLVE="%s/db.json|JP:$.db.user" % tmp_path,
                        PASS_FOR_PROC_WRAPPER_TO_RESOLVE="%s/db.json|JP:db.password" % tmp_path,
                        URL_FOR_PROCWRAP_TO_RESOLVE="pg://{{ .USER }}:{{ .PASS }}@db")
    result = run_with(python, "--env-output-file", str(output), "--", "sh", "-c",
                      'echo "$URL"; grep -v "^#" "$0"', str(output), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pg://app:pw@db\nPASS='pw'\nURL='pg://app:pw@db'\nUSER='app'\n"
    assert not output.exists()
    missing = run_with(python, "--", "true", env=clean_environ(X_FOR_PROCWRAP_TO_RESOLVE="ENV:NO"))
    assert missing.returncode == 69


def test_health_endpoints_probes_and_ctl(python, tmp_path, background):
    # An exec probe (posix_spawn, or fork before 3.8), the HTTP endpoint and ctl.
    flag = tmp_path / "ready"
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"processes": [{
        "name": "app", "command": ["sleep", "60"],
        "readinessProbe": {"exec": {"command": ["test", "-e", str(flag)]},
                           "periodSeconds": 0.1}}]}))
    socket_path = str(tmp_path / "ctl.sock")
    procwrap = background("-c", str(config), "--http", "127.0.0.1:0", "--ctl-socket",
                          socket_path, python=python)
    host, port = procwrap.expect_event("http")["address"].rsplit(":", 1)
    flag.touch()
    procwrap.expect_event("ready")
    import urllib.request
    with urllib.request.urlopen("http://%s:%s/readiness" % (host, port), timeout=WAIT) as answer:
        assert json.loads(answer.read().decode())["status"] == "ok"
    status = run_with(python, "ctl", "--socket", socket_path, "status")
    assert status.returncode == 0 and status.stdout.splitlines()[1].split()[:2] == ["app",
                                                                                    "running"]
    assert run_with(python, "ctl", "--socket", socket_path, "shutdown").returncode == 0
    assert procwrap.wait() == 0


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_ctl_tail_of_non_ascii_output(python, tmp_path, background, locale):
    """Before: CPython 3.6 under LC_ALL=C encoded stdout as ASCII, and `ctl tail` of a
    child that printed 'café' died with a UnicodeEncodeError."""
    env = clean_environ(LC_ALL=locale, LANG=locale)
    env.pop("PYTHONIOENCODING", None)
    socket_path = str(tmp_path / "ctl.sock")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"processes": [{"name": "app", "command": [
        "sh", "-c", "printf 'caf\\303\\251 \\342\\234\\223\\n'; exec sleep 300"]}]}))
    procwrap = background("-c", str(config), "--ctl-socket", socket_path, python=python,
                          env=env)
    procwrap.expect(lambda line: "caf" in line)
    tail = subprocess.run([python, PROCWRAP, "ctl", "--socket", socket_path, "tail", "app"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=WAIT)
    assert tail.returncode == 0, tail.stderr.decode("utf-8", "replace")
    assert tail.stdout.decode("utf-8") == "caf\u00e9 \u2713\n"
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_remote_agent_runs_under_every_interpreter_and_from_it(python, sshd):
    """The agent (Part I) on each CPython as the remote interpreter, driven by
    the suite's Python; and each CPython driving it (a 3.6 local may drive a
    3.13 remote and back)."""
    options = sshd.options()
    options[options.index("--python") + 1] = python
    there = run_with(PYTHON_SUITE, "remote", *(options + [
        sshd.host(), "--", "sh", "-c", "echo from agent; exit 4"]))
    assert there.returncode == 4, there.stderr
    assert there.stdout == "127.0.0.1 | from agent\n"
    here = run_with(python, "remote", *(sshd.options() + [
        sshd.host(), "--", "sh", "-c", "printf 'no newline'; exit 5"]))
    assert here.returncode == 5, here.stderr
    assert here.stdout == "127.0.0.1 | no newline\n"


def call_script(local, remote_python, sshd):
    """test_fixtures/remote_call/script.py under `local`, its agent under
    `remote_python`; the JSON it printed last."""
    options = sshd.options()
    settings = {"procwrap": os.path.dirname(PROCWRAP), "host": sshd.host(),
                "python": remote_python,
                "ssh_options": [options[i + 1] for i, arg in enumerate(options)
                                if arg == "--ssh-option"]}
    result = subprocess.run([local, fixture("remote_call/script.py"), json.dumps(settings)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT * 4, env=clean_environ())
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("RESULT "), result.stdout
    return json.loads(last[len("RESULT "):]), result


def test_connect_and_call_under_every_interpreter_and_from_it(python, sshd):
    """procwrap.connect() from each CPython to the suite's, and from the
    suite's to each: a function of the calling script, one of a module
    only the caller has, bytes both ways, a run, a remote exception."""
    version = subprocess.check_output([python, "-c", "import sys; print('%d.%d' % "
                                       "sys.version_info[:2])"], universal_newlines=True).strip()
    for local, remote in ((python, PYTHON_SUITE), (PYTHON_SUITE, python)):
        out, result = call_script(local, remote, sshd)
        assert out["where"]["value"] == [1, "two"]
        assert out["where"]["python"] == (version if remote == python else
                                          "%d.%d" % sys.version_info[:2])
        assert out["where"]["blob"] == [0, 255]
        assert out["double"] == [2, 4, 6]
        assert out["run"] == [3, "out\n", "err\n"]
        assert out["raised"] == ["LookupError", "'no such thing: x'", True, True] or \
            out["raised"] == ["LookupError", "no such thing: x", True, True]
        assert "127.0.0.1 | printed there [1, 'two']" in result.stdout
        assert "127.0.0.1 | doubling [1, 2, 3]" in result.stdout
        assert "doubling 3 items" in result.stderr       # logging's last resort, here


def test_reporting_and_managed_call(python):
    """A reported run whose child sends status updates, and managed_call
    (offline with a timeout, and reported), under each CPython."""
    from fake_api import ApiServer
    api = ApiServer()
    try:
        result = run_with(python, "--api-key", "k-compat", "--api-base-url", api.url,
                          "--task-name", "t", "--status-updates", "--status-update-port", "0",
                          "--", python, fixture("status_child.py"), "2")
        assert result.returncode == 2, result.stderr
        merged = api.merged()
        assert merged["success_count"] == 3 and merged["status"] == "FAILED"
        script = (
            "import sys; sys.path.insert(0, %r); import procwrap\n"
            "def job(n, status_updater): status_updater.send_update(success_count=n); "
            "return n * 2\n"
            "print(procwrap.managed_call(job, 21, timeout=5, status_updater=True))\n"
            "print(procwrap.managed_call(job, 4, status_updater=True, api_key='k',"
            " api_base_url=%r, task_name='t', environ={}))\n" % (os.path.dirname(PROCWRAP),
                                                                 api.url))
        out = subprocess.run([python, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["42", "8"]
        assert api.bodies("PATCH")[-1]["status"] == "SUCCEEDED"
    finally:
        api.stop()


def test_a_lock_through_etcd(python, etcd):
    """--lock on the suite's etcd under each CPython: the slot, the status,
    the slot given back."""
    import uuid
    name = "compat-" + uuid.uuid4().hex[:8]
    result = run_with(python, "--lock", name, "--etcd", etcd.url, "--log-format", "json",
                      "--", "sh", "-c", "exit 3")
    assert result.returncode == 3, result.stderr
    assert '"lock-acquired"' in result.stdout
    assert etcd.keys("/procwrap/locks/%s/" % name) == []


def test_procfile_convert_fragments_and_log_files(python, tmp_path):
    """Issue 13's new paths: a Procfile with formation and PORT, a converted
    supervisord.conf, a directory of fragments, a rotated log file, text
    format with its stderr marker."""
    (tmp_path / "Procfile").write_text("web: echo web $PORT; echo oops >&2; sleep 0.5\n")
    result = run_with(python, "-c", str(tmp_path / "Procfile"), "-m", "web=2",
                      "--log-format", "text")
    assert result.returncode == 0, result.stderr
    assert "web.2    | web 5001\n" in result.stdout and "web.1    ! oops\n" in result.stdout
    (tmp_path / "app.conf").write_text("[program:app]\ncommand=echo converted\n"
                                       "autorestart=false\nstartsecs=0\n")
    converted = run_with(python, "convert", str(tmp_path / "app.conf"), "-o",
                         str(tmp_path / "conf.d.json"))
    assert converted.returncode == 0, converted.stderr
    conf = tmp_path / "conf.d"
    conf.mkdir()
    os.rename(str(tmp_path / "conf.d.json"), str(conf / "10-app.json"))
    (conf / "20-logs.json").write_text(json.dumps({"processes": [{
        "name": "app", "logs": {"file": str(tmp_path / "app.log"), "maxBytes": 100}}]}))
    result = run_with(python, "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "app.log").read_text())["message"] == "converted"


def test_pod_watches_preemption_and_sibling_containers(python, tmp_path, background):
    """A hanging GET, an HTTPS watch stream read line by line (chunked), and
    the amqp probe's frames, on every interpreter."""
    from fake_pod import Metadata
    from test_cli_pod import OneAnswer, in_cluster, kubernetes
    metadata, api = Metadata(), kubernetes(tmp_path)
    broker = OneAnswer(b"AMQP\x00\x00\x09\x02")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"processes": [{
        "name": "app", "command": ["sleep", "60"],
        "readinessProbe": {"amqp": {"url": "amqp://u:p@127.0.0.1:%d" % broker.port},
                           "periodSeconds": 0.2}}]}))
    socket_path = str(tmp_path / "ctl.sock")
    procwrap = background("-c", str(config), "--preemption-url", metadata.url,
                          "--exit-with-containers", "main", "--ctl-socket", socket_path,
                          env=in_cluster(tmp_path, api, "token-2"), python=python)
    metadata.wait_for(lambda: metadata.hanging == 1, "the hanging GET")
    metadata.set("TRUE")
    procwrap.expect_event("preempted")

    def probe_message():
        status = run_with(python, "ctl", "--socket", socket_path, "--json", "status")
        return json.loads(status.stdout)["processes"][0]["probes"][0]["message"]
    from conftest import wait_until
    wait_until(probe_message, what="the amqp probe's first check")
    assert probe_message() == "the server speaks AMQP 0-9-2, not 0-9-1"
    api.wait_for(lambda: any(path.endswith("/pods") for _, path, _, _ in api.requests),
                 "the watch")
    api.terminate("main", 3, "Error")
    assert procwrap.expect_event("containers-terminated")["message"] == (
        "exit-with-containers: main (exit code 3) terminated")
    assert procwrap.wait() == 0
    metadata.close()
    api.close()
