"""procwrap in a Kubernetes pod (issue 14): `procwrap wait`, the env probe, ..."""
import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import (PROCWRAP, PYTHON, WAIT, clean_environ, free_port, run, wait_until,
                      write_config)


def test_wait_returns_once_ready_even_if_procwrap_is_not_up_yet(background, tmp_path):
    port = free_port()
    url = "http://127.0.0.1:%d/readiness" % port
    waiter = subprocess.Popen([PYTHON, PROCWRAP, "wait", "--timeout", "60", url],
                              stderr=subprocess.PIPE, universal_newlines=True,
                              env=clean_environ())
    time.sleep(0.3)     # nothing listens yet: the waiter is refused and tries again
    assert waiter.poll() is None
    flag = tmp_path / "ready"
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": ["sleep", "300"],
        "readinessProbe": {"file": {"path": str(flag)}, "periodSeconds": 0.1}}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:%d" % port)
    procwrap.expect_event("started", "app")
    time.sleep(0.5)
    assert waiter.poll() is None        # up, not ready
    flag.write_text("")
    made = time.monotonic()
    assert waiter.wait(WAIT) == 0, waiter.stderr.read()
    assert time.monotonic() - made < 10
    procwrap.kill()


def test_wait_times_out_with_124_and_says_why():
    url = "http://127.0.0.1:%d/readiness" % free_port()
    began = time.monotonic()
    result = run("wait", "--timeout", "0.5", url)
    assert time.monotonic() - began >= 0.5
    assert result.returncode == 124
    assert result.stderr == ("procwrap: error: wait: %s not ready within 0.5 s (Connection "
                             "refused)\n" % url)


def test_wait_against_a_server_that_answers_at_once_does_not_spin():
    """Not a procwrap (no ?wait): 503 at once; tries stay a few a second."""
    asked = []

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), NotReady)
    thread = threading.Thread(target=server.serve_forever)
    thread.daemon = True
    thread.start()
    try:
        url = "http://127.0.0.1:%d/ready" % server.server_address[1]
        result = run("wait", "--timeout", "3", url)
    finally:
        server.shutdown()
    assert result.returncode == 124 and "(HTTP 503)" in result.stderr
    assert 3 <= len(asked) <= 12, asked         # 0.05 s doubling to 1 s: 7 or so
    assert asked[0] == "/ready?wait=3"


def test_wait_usage_mistakes():
    for args, error in [
            (["ftp://x/"], "wait: 'ftp://x/' is not an http:// or https:// URL"),
            (["--timeout", "soon"], "wait --timeout: expected seconds (10, 1.5, 500ms, 2m), "
                                    "got 'soon'"),
            (["http://a/", "http://b/"], "wait: unexpected 'http://b/'; expects [--timeout "
                                         "SECONDS] [URL]")]:
        result = run("wait", *args)
        assert (result.returncode, result.stderr) == (2, "procwrap: error: %s\n" % error), args
    assert "usage: procwrap wait" in run("wait", "--help").stdout


def test_env_probe_reads_the_running_environment_and_prints_no_value(background, tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "good", "command": ["sleep", "300"],
         "env": [{"name": "TOKEN", "valueFrom": {"location": "PLAIN:s3cr3t-t0ken"}}],
         "readinessProbe": {"env": {"name": "TOKEN", "value": "s3cr3t-t0ken"},
                            "periodSeconds": 0.1}},
        {"name": "wrong", "command": ["sleep", "300"], "env": {"MODE": "a"},
         "readinessProbe": {"env": {"name": "MODE", "value": "b"}, "periodSeconds": 0.1,
                            "failureThreshold": 1}},
        # A shell that changes the variable before exec: what runs has the new value.
        {"name": "shell", "command": ["sh", "-c", "export MODE=b; exec sleep 300"],
         "env": {"MODE": "a"},
         "readinessProbe": {"env": {"name": "MODE", "value": "b"}, "periodSeconds": 0.1}},
        {"name": "unset", "command": ["sleep", "300"],
         "readinessProbe": {"env": {"name": "NOPE", "value": "x"}, "periodSeconds": 0.1,
                            "failureThreshold": 1}}]})
    socket_path = str(tmp_path / "ctl.sock")
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    for name in ("good", "wrong", "shell", "unset"):
        procwrap.expect_event("started", name)      # the socket is up before the first
    env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)

    def probes():
        table = json.loads(run("ctl", "--json", "status", env=env).stdout)["processes"]
        return dict((p["name"], (p["probes"][0]["result"], p["probes"][0]["message"]))
                    for p in table)
    wait_until(lambda: all(result != "unknown" and message for result, message
                           in probes().values()), what="every probe checked")
    assert probes() == {
        "good": ("passing", "TOKEN has the value expected"),
        "wrong": ("failing", "MODE differs from the value expected"),
        "shell": ("passing", "MODE has the value expected"),
        "unset": ("failing", "NOPE is not set")}
    assert "s3cr3t" not in procwrap.stdout + procwrap.stderr
    procwrap.kill()


def test_replicas_are_processes_of_their_own_and_ctl_takes_the_entry_name(background,
                                                                          tmp_path):
    socket_path = str(tmp_path / "ctl.sock")
    config = write_config(tmp_path, {"processes": [
        {"name": "worker", "replicas": 3, "env": {"PORT": "80$(PROCWRAP_REPLICA)"},
         "command": ["sh", "-c", "echo replica $PROCWRAP_REPLICA port $PORT; exec sleep 300"],
         "logs": {"file": str(tmp_path / "worker.log")}},
        {"name": "after", "command": ["sleep", "300"],
         "dependsOn": [{"name": "worker", "condition": "Started"}]}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path, "--http", "127.0.0.1:0")
    first = dict((name, procwrap.expect_event("started", name)["pid"])
                 for name in ("worker-0", "worker-1", "worker-2", "after"))
    for index in range(3):
        procwrap.expect('"message":"replica %d port 80%d"' % (index, index))
        log = (tmp_path / ("worker-%d.log" % index)).read_text
        wait_until(lambda: "port 80%d" % index in log(), what="worker-%d's file" % index)
    env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)
    restarted = run("ctl", "restart", "worker", env=env)
    assert restarted.stdout == "worker-0: started\nworker-1: started\nworker-2: started\n"
    table = json.loads(run("ctl", "--json", "status", "worker", env=env).stdout)["processes"]
    assert [(p["name"], p["pid"] != first[p["name"]]) for p in table] == [
        ("worker-0", True), ("worker-1", True), ("worker-2", True)]
    assert run("ctl", "pid", "after", env=env).stdout == "%d\n" % first["after"]
    procwrap.kill()


def test_replicas_mistakes_and_skip(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "web", "replicas": 2, "command": ["true"]},
        {"name": "web-1", "command": ["true"]},
        {"name": "none", "replicas": 0, "command": ["true"]}]})
    result = run("check", "-c", config)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "procwrap: error: processes[2].replicas: expected a whole number >= 1, got 0",
        "procwrap: error: processes[1].name: 'web-1' is also the name of processes[0]; names "
        "must be unique"]
    config = write_config(tmp_path, {"processes": [
        {"name": "web", "replicas": 2, "command": ["sh", "-c", "echo web"],
         "restartPolicy": "Never"},
        {"name": "job", "command": ["sh", "-c", "echo job"], "restartPolicy": "Never",
         "dependsOn": ["web"]}]})
    skipped = run("-c", config, "--skip", "web")
    assert skipped.returncode == 0, skipped.stderr
    assert [r.get("name") for r in json.loads("[%s]" % ",".join(
        skipped.stdout.splitlines())) if r.get("event") == "started"] == ["job"]


GROW = ("import time\nheld = []\nfor _ in range(40):\n    held.append(b'x' * (5 << 20))\n"
        "    time.sleep(0.05)\ntime.sleep(300)\n")


def test_memory_limit_stops_a_group_that_grows_past_it(background, tmp_path):
    """The RSS of the whole group counts: a small shell whose child grows."""
    config = write_config(tmp_path, {"processes": [
        {"name": "hog", "command": ["sh", "-c", "%s -c \"$GROW\"; echo never" % PYTHON],
         "env": {"GROW": GROW}, "memoryLimit": "64Mi", "restartPolicy": "OnFailure",
         "backoff": {"initial": 0.1, "limit": 1}},
        {"name": "calm", "command": ["sleep", "300"], "memoryLimit": "64Mi"}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:0")
    first = procwrap.expect_event("memory-limit", "hog")
    assert first["level"] == "warning"
    assert re.match(r"^hog: its process group's resident memory, [\d.]+ MiB, is over its "
                    r"memoryLimit, 64 MiB; stopping it$", first["message"]), first["message"]
    procwrap.expect_event("memory-limit", "hog", count=2)      # restarted, grew again
    procwrap.expect_event("fatal", "hog")                      # backoff.limit 1
    address = procwrap.expect_event("http")["address"]
    metrics = urllib.request.urlopen("http://%s/metrics" % address, timeout=10).read().decode()
    assert 'procwrap_memory_limit_kills_total{name="hog"} 2' in metrics
    assert 'procwrap_memory_limit_kills_total{name="calm"} 0' in metrics
    assert not [line for line in procwrap.out if '"memory-limit"' in line and '"calm"' in line]
    procwrap.kill()


def test_memory_limit_values(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": ["true"], "memoryLimit": "lots"},
        {"name": "b", "command": ["true"], "memoryLimit": "1.5Gi"},
        {"name": "c", "command": ["true"], "memoryLimit": 1024, "host": "example.com"}]})
    result = run("check", "-c", config)
    assert result.stderr.splitlines() == [
        "procwrap: error: processes[0].memoryLimit: expected bytes: a whole number, or like "
        "50MB, 512Mi, 1Gi, got 'lots'",
        "procwrap: error: processes[2].memoryLimit: looks at this machine's /proc, not at the "
        "process's host; set a limit there (ulimit, a cgroup)"]


def test_events_go_to_a_udp_collector(tmp_path):
    import socket
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(10)
    config = write_config(tmp_path, {"processes": [
        {"name": "job", "command": ["sh", "-c", "exit 3"], "restartPolicy": "OnFailure",
         "backoff": {"initial": 0.05, "limit": 1}, "labels": {"team": "core"}}]})
    result = run("-c", config, "--events-udp", "127.0.0.1:%d" % collector.getsockname()[1])
    assert result.returncode == 3
    got = []
    while not got or got[-1]["event"] != "exit":
        got.append(json.loads(collector.recv(65536).decode()))
    collector.close()
    assert [(e["event"], e.get("name")) for e in got] == [
        ("started", "job"), ("exited", "job"), ("backoff", "job"), ("started", "job"),
        ("exited", "job"), ("fatal", "job"), ("exit", None)]
    assert got[1]["status"] == 3 and got[1]["level"] == "info" and "time" in got[1]
    # Nobody listening: ICMP refusals are counted, the run is as before.
    quiet = run("-c", config, "--events-udp", "127.0.0.1:%d" % free_port())
    assert quiet.returncode == 3 and quiet.stderr == ""
    assert run("-c", config, "--events-udp", "nowhere").stderr == (
        "procwrap: error: --events-udp: expected HOST:PORT, like 127.0.0.1:8125, got "
        "'nowhere'\n")


def test_extra_labels_on_every_record_metric_and_event(background, tmp_path):
    import socket
    podinfo = tmp_path / "labels"
    podinfo.write_text('app.kubernetes.io/name="web"\nenv="file"\npod-template-hash="7f9c"\n'
                       'quote="a\\"b"')
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(10)
    config = write_config(tmp_path, {"labels": {"team": "core", "env": "config"},
                                     "processes": [{"name": "app", "command": [
                                         "sh", "-c", "echo hello; exec sleep 300"],
                                         "labels": {"team": "app-team"}}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:0", "--labels-file", str(podinfo),
                          "--labels-exclude", "pod-template-*", "--labels", '{"env": "prod"}',
                          "--events-udp", "127.0.0.1:%d" % collector.getsockname()[1])
    line = json.loads(procwrap.expect('"message":"hello"'))
    assert {k: line[k] for k in ("app.kubernetes.io/name", "env", "team", "quote")} == {
        "app.kubernetes.io/name": "web", "env": "prod", "team": "app-team", "quote": 'a"b'}
    assert "pod-template-hash" not in line
    own = procwrap.expect_event("started", "app")
    assert own["env"] == "prod" and own["team"] == "core"
    event = json.loads(collector.recv(65536).decode())
    assert event["event"] == "started" and event["env"] == "prod"
    collector.close()
    address = procwrap.expect_event("http")["address"]
    metrics = urllib.request.urlopen("http://%s/metrics" % address, timeout=10).read().decode()
    assert ('procwrap_process_up{app_kubernetes_io_name="web",env="prod",name="app",'
            'quote="a\\"b",team="core"} 1') in metrics
    checked = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
    assert checked.returncode == 0, checked.stdout
    procwrap.kill()


def test_a_bad_labels_file_is_one_line(tmp_path):
    podinfo = tmp_path / "labels"
    podinfo.write_text('app="web"\nbroken\n')
    config = write_config(tmp_path, {"processes": [{"name": "a", "command": ["true"]}]})
    result = run("-c", config, "--labels-file", str(podinfo))
    assert (result.returncode, result.stderr) == (2, (
        'procwrap: error: %s:2: expected key="value"; a Downward API labels file has '
        'key="value" lines\n' % podinfo))
    assert run("-c", config, "--labels", '["x"]').stderr == (
        "procwrap: error: --labels: expected a JSON object of strings, like "
        "{\"team\": \"core\"}, got '[\"x\"]'\n")


def test_per_process_log_format_and_levels_found_in_lines(tmp_path):
    script = ("echo 'ERROR: disk'; echo 'level=warn msg=x'; echo '{\"severity\": \"DEBUG\"}'; "
              "echo plain; echo oops >&2; echo 'INFO on stderr' >&2")
    config = write_config(tmp_path, {"processes": [
        {"name": "app", "restartPolicy": "Never", "command": ["sh", "-c", script],
         "logs": {"level": "auto", "stderrLevel": "error"}},
        {"name": "quiet", "restartPolicy": "Never", "command": ["sh", "-c", "echo ERROR x"]},
        {"name": "lf", "restartPolicy": "Never", "logs": {"format": "logfmt", "level": "auto"},
         "command": ["sh", "-c", "echo 'WARNING: careful'"]}]})
    result = run("-c", config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    app = [json.loads(line) for line in lines if '"process":"app"' in line]
    assert [(r["stream"], r.get("level"), r["message"]) for r in app] == [
        ("stdout", "error", "ERROR: disk"), ("stdout", "warning", "level=warn msg=x"),
        ("stdout", "debug", '{"severity": "DEBUG"}'), ("stdout", None, "plain"),
        ("stderr", "error", "oops"), ("stderr", "info", "INFO on stderr")]
    quiet = [json.loads(line) for line in lines if '"process":"quiet"' in line]
    assert "level" not in quiet[0]          # no logs.level: no level
    assert [line for line in lines if "process=lf" in line][0].endswith(
        'process=lf stream=stdout level=warning msg="WARNING: careful"')
    bad = write_config(tmp_path, {"processes": [{"name": "a", "command": ["true"],
                                                 "logs": {"format": "xml", "level": "on"}}]})
    assert run("check", "-c", bad).stderr.splitlines() == [
        "procwrap: error: processes[0].logs.format: expected json, logfmt or text, got 'xml'",
        "procwrap: error: processes[0].logs.level: expected auto or none, got 'on'"]


def test_sql_probe_and_hook_with_sqlite(background, tmp_path):
    import sqlite3
    database = str(tmp_path / "app.db")
    connection = sqlite3.connect(database)
    connection.execute("create table state (v text)")
    connection.execute("insert into state values ('ready')")
    connection.commit()
    connection.close()
    socket_path = str(tmp_path / "ctl.sock")
    empty = tmp_path / "empty-secret"
    empty.write_text("")
    config = write_config(tmp_path, {"processes": [
        {"name": "app", "command": ["sleep", "300"], "env": {"DB": database},
         "lifecycle": {"postStart": {"sql": {"driver": "sqlite", "dsn": "$(DB)"}}},
         "readinessProbe": {"sql": {"driver": "sqlite", "dsn": "$(DB)", "expect": "ready",
                                    "query": "select v from state"}, "periodSeconds": 0.1}},
        {"name": "wrong", "command": ["sleep", "300"],
         "readinessProbe": {"sql": {"driver": "sqlite", "dsn": database,
                                    "query": "select nope from state"},
                            "periodSeconds": 0.1}},
        {"name": "blank", "command": ["sleep", "300"],      # a secret with no value
         "readinessProbe": {"sql": {"driver": "sqlite", "dsn": "FILE:%s" % empty},
                            "periodSeconds": 0.1}}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    hook = procwrap.expect_event("hook", "app")
    assert hook["result"] == "passed" and hook["hook"] == "postStart"
    assert procwrap.expect_event("probe", "app")["message"] == (
        "app: readiness probe passed (the query ran and gave the value expected)")
    env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)
    wait_until(lambda: json.loads(run("ctl", "--json", "status", "wrong", env=env).stdout)[
        "processes"][0]["probes"][0]["failures"] > 0, what="wrong's probe failing")
    wrong = json.loads(run("ctl", "--json", "status", "wrong", env=env).stdout)
    assert wrong["processes"][0]["probes"][0]["message"] == (
        "OperationalError: no such column: nope")
    # Before: sqlite's in-memory database, so the probe passed.
    wait_until(lambda: probe_messages(socket_path)["blank"][1], what="blank's first check")
    assert probe_messages(socket_path)["blank"] == ("failing", "the dsn is empty")
    procwrap.kill()


SQL_SERVERS = {
    # driver: (its server's fixture, the pip package, the dsn's form, the refusal's words)
    "postgres": ("postgres", "pg8000", "PLAIN:{dsn}",
                 'ProgrammingError: password authentication failed for user "probe"'),
    # before: only the number, 1045
    "mysql": ("mariadb", "pymysql", "$(DSN)", "OperationalError: 1045 Access denied for "
              "user 'probe'@'localhost' (using password: YES)"),
}


@pytest.mark.parametrize("driver", sorted(SQL_SERVERS))
def test_sql_probe_against_a_real_server(background, tmp_path, request, driver):
    """A real PostgreSQL and a real MariaDB (Debian's, started as the test
    user), through pg8000 and PyMySQL: the query's value, from a dsn in a
    location string or in the env; a refusal in the server's words; no
    message holds the dsn or the password."""
    fixture, package, form, refusal = SQL_SERVERS[driver]
    pytest.importorskip(package)
    server = request.getfixturevalue(fixture)
    socket_path = str(tmp_path / "ctl.sock")
    wrong_dsn = server.dsn.replace(server.password, "not-" + server.password)
    config = write_config(tmp_path, {"processes": [
        {"name": "db", "command": ["sleep", "300"], "env": {"DSN": server.dsn},
         "readinessProbe": {"sql": {"driver": driver, "dsn": form.format(dsn=server.dsn),
                                    "query": "select 40 + 2", "expect": 42},
                            "periodSeconds": 0.2, "timeoutSeconds": 5}},
        {"name": "denied", "command": ["sleep", "300"],
         "readinessProbe": {"sql": {"driver": driver, "dsn": "PLAIN:" + wrong_dsn},
                            "periodSeconds": 0.2, "timeoutSeconds": 5}}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    assert procwrap.expect_event("probe", "db")["message"] == (
        "db: readiness probe passed (the query ran and gave the value expected)")
    wait_until(lambda: probe_messages(socket_path)["denied"][1], what="the denied check")
    assert probe_messages(socket_path)["denied"] == ("failing", refusal)
    status = run("ctl", "--json", "status", env=clean_environ(
        PROCWRAP_CTL_SOCKET=socket_path)).stdout
    assert server.password not in status + procwrap.stdout + procwrap.stderr
    procwrap.kill()


def minimal_root(directory):
    """A tree with /bin/sh and the libraries it needs, nothing else."""
    import shutil
    listing = subprocess.run(["ldd", "/bin/sh"], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
    files = ["/bin/sh"] + [word for line in listing.splitlines() for word in line.split()
                           if word.startswith("/")]
    for path in files:
        target = os.path.join(directory, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)
    os.makedirs(os.path.join(directory, "work"))
    return directory


def test_chroot_then_the_user_and_the_command_found_inside(background, tmp_path, test_user):
    root = minimal_root(str(tmp_path / "root"))
    fifo = os.path.join(root, "work", "go")
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    config = write_config(tmp_path, {"processes": [{
        "name": "jailed", "chroot": root, "user": test_user.pw_name, "workingDir": "/work",
        "restartPolicy": "Never",
        "command": ["sh", "-c", "echo in $(pwd); test -e /etc/passwd || echo no-etc; "
                                "read line < /work/go; echo got $line"]}]})
    procwrap = background("-c", config)
    pid = procwrap.expect_event("started", "jailed")["pid"]
    procwrap.expect('"message":"no-etc"')
    assert os.readlink("/proc/%d/root" % pid) == root
    with open("/proc/%d/status" % pid) as stream:
        uid = [line.split()[1] for line in stream if line.startswith("Uid:")][0]
    assert int(uid) == test_user.pw_uid
    with open(fifo, "w") as stream:
        stream.write("hello\n")
    assert procwrap.wait() == 0
    assert [r["message"] for r in map(json.loads, procwrap.out)
            if r.get("process") == "jailed"] == ["in /work", "no-etc", "got hello"]


def test_chroot_mistakes(tmp_path):
    config = write_config(tmp_path, {"processes": [
        {"name": "a", "command": ["true"], "chroot": str(tmp_path / "none")},
        {"name": "b", "command": ["true"], "chroot": str(tmp_path), "workingDir": "/nope"},
        {"name": "c", "command": ["true"], "chroot": str(tmp_path), "host": "example.com"}]})
    result = run("check", "-c", config)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("procwrap: error: processes[0].chroot: ")
    assert lines[1].startswith("procwrap: error: processes[1].workingDir: ")
    assert lines[2] == ("procwrap: error: processes[2].chroot: applies to a process on this "
                        "machine; drop it or the host")
    missing = write_config(tmp_path, {"processes": [
        {"name": "a", "command": ["nothing-here"], "chroot": str(tmp_path),
         "restartPolicy": "Never"}]})
    ran = run("-c", missing)
    assert ran.returncode == 127 and "nothing-here" in ran.stdout


METRICS_SERVER = r"""
import http.server, sys
text = sys.argv[2].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("serving", flush=True)
server.serve_forever()
"""


def test_prommerge_merges_every_target_and_counts_the_failing(background, tmp_path):
    web = ('# HELP requests_total Requests.\n# TYPE requests_total counter\n'
           'requests_total{code="200"} 5\n# HELP latency_seconds Latency.\n'
           '# TYPE latency_seconds histogram\nlatency_seconds_bucket{le="0.1"} 1\n'
           'latency_seconds_bucket{le="+Inf"} 2\nlatency_seconds_sum 0.3\n'
           'latency_seconds_count 2\n')
    api = ('# HELP requests_total Requests served.\n# TYPE requests_total counter\n'
           'requests_total{code="200",process_name="inner"} 9\n')
    ports = [free_port(), free_port()]
    config = write_config(tmp_path, {"processes": [
        {"name": "web", "command": [PYTHON, "-c", METRICS_SERVER, str(ports[0]), web],
         "promTarget": "http://127.0.0.1:%d/metrics" % ports[0]},
        {"name": "api", "command": [PYTHON, "-c", METRICS_SERVER, str(ports[1]), api],
         "promTarget": "http://127.0.0.1:%d/metrics" % ports[1]},
        {"name": "down", "command": ["sleep", "300"],
         "promTarget": "http://127.0.0.1:%d/metrics" % free_port()}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:0")
    address = procwrap.expect_event("http")["address"]
    procwrap.expect('"message":"serving"', count=2)
    body = urllib.request.urlopen("http://%s/prommerge" % address, timeout=30).read().decode()
    assert body.count("# TYPE requests_total counter") == 1
    assert 'requests_total{code="200",process_name="web"} 5' in body
    assert ('requests_total{code="200",exported_process_name="inner",process_name="api"} 9'
            in body)
    assert 'latency_seconds_bucket{le="+Inf",process_name="web"} 2' in body
    assert 'procwrap_prommerge_errors_total{process_name="down"} 1' in body
    assert 'procwrap_prommerge_errors_total{process_name="web"} 0' in body
    checked = subprocess.run(["promtool", "check", "metrics"], input=body,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
    assert checked.returncode == 0, checked.stdout + body
    metrics = urllib.request.urlopen("http://%s/metrics" % address, timeout=10).read().decode()
    assert 'procwrap_prommerge_errors_total{process_name="down"} 1' in metrics
    procwrap.kill()


def test_a_held_answer_reaches_a_client_that_asked_to_close(background, tmp_path):
    """urllib sends Connection: close; a ?wait answer that comes later used
    to find the connection closed (RemoteDisconnected)."""
    flag = tmp_path / "ready"
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": ["sleep", "300"],
        "readinessProbe": {"file": {"path": str(flag)}, "periodSeconds": 0.1}}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:0")
    address = procwrap.expect_event("http")["address"]
    procwrap.expect_event("started", "app")
    timer = threading.Timer(0.5, flag.write_text, args=("",))
    timer.start()
    try:
        request = urllib.request.Request("http://%s/readiness?wait=20" % address,
                                         headers={"Connection": "close"})
        answer = urllib.request.urlopen(request, timeout=30)
        assert answer.status == 200 and answer.headers["Connection"] == "close"
    finally:
        timer.cancel()
    procwrap.kill()


def probe_messages(socket_path):
    """{name: (result, message)} of every process's first probe, from ctl."""
    env = clean_environ(PROCWRAP_CTL_SOCKET=socket_path)
    status = json.loads(run("ctl", "--json", "status", env=env).stdout)
    return {p["name"]: (p["probes"][0]["result"], p["probes"][0]["message"])
            for p in status["processes"]}


def test_amqp_probe_against_rabbitmq(background, tmp_path, rabbitmq):
    """A real RabbitMQ (Debian's): the handshake with a password and a vhost
    that need quoting, from a location string; a wrong password and an
    unknown vhost are the server's own refusals; the server logs a clean
    close, and no message holds the password."""
    socket_path = str(tmp_path / "ctl.sock")
    probe = {"periodSeconds": 0.2, "timeoutSeconds": 5}
    config = write_config(tmp_path, {"processes": [
        {"name": "app", "command": ["sleep", "300"], "env": {"URL": rabbitmq.url()},
         "readinessProbe": dict(probe, amqp={"url": "$(URL)"})},
        {"name": "denied", "command": ["sleep", "300"], "readinessProbe": dict(
            probe, amqp={"url": "PLAIN:" + rabbitmq.url(password="wrong")})},
        {"name": "lost", "command": ["sleep", "300"], "readinessProbe": dict(
            probe, amqp={"url": "PLAIN:" + rabbitmq.url(vhost="nope")})}]})
    procwrap = background("-c", config, "--ctl-socket", socket_path)
    assert procwrap.expect_event("probe", "app")["message"] == (
        "app: readiness probe passed (AMQP connection to vhost app/prod opened "
        "(RabbitMQ %s))" % re.search(r"RabbitMQ ([\d.]+)", "\n".join(rabbitmq.log)).group(1))
    wait_until(lambda: all(message for _, message in probe_messages(socket_path).values()),
               what="every probe to have checked once")
    messages = probe_messages(socket_path)
    assert messages["denied"] == ("failing", "refused: 403 ACCESS_REFUSED - Login was refused "
                                  "using authentication mechanism PLAIN. For details see the "
                                  "broker logfile."), messages
    assert messages["lost"] == ("failing", "refused: 530 NOT_ALLOWED - vhost nope not found")
    status = run("ctl", "--json", "status", env=clean_environ(
        PROCWRAP_CTL_SOCKET=socket_path)).stdout
    procwrap.kill()
    log = "\n".join(rabbitmq.log)
    assert "vhost: 'app/prod', user: 'probe'" in log
    assert "unexpectedly closed" not in log, log        # RabbitMQ's word for a client's bad close
    assert not [line for line in rabbitmq.log if "vhost: 'app/prod'" in line
                and ("[error]" in line or "[warning]" in line)], log
    for secret in (rabbitmq.PASSWORD, rabbitmq.url().split("@")[0]):
        assert secret not in procwrap.stdout + procwrap.stderr + status


class OneAnswer(threading.Thread):
    """A TCP server on a free port that answers every connection with the
    same bytes, then closes it."""

    def __init__(self, answer):
        import socket
        threading.Thread.__init__(self, daemon=True)
        self.answer = answer
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.start()

    def run(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(8)
                connection.sendall(self.answer)


def test_amqp_probe_says_what_answered_instead(background, tmp_path):
    """An AMQP server of another version, an HTTP server, no server, a name
    that does not resolve: each fails with what happened, never a hang."""
    others = {"v010": OneAnswer(b"AMQP\x01\x01\x00\x0a"),
              "web": OneAnswer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
              "quiet": OneAnswer(b""),
              "short": OneAnswer(b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0a\xce")}
    socket_path = str(tmp_path / "ctl.sock")
    empty = tmp_path / "empty-secret"
    empty.write_text("")
    probe = {"periodSeconds": 0.2, "timeoutSeconds": 5}
    entries = [{"name": name, "command": ["sleep", "300"], "readinessProbe": dict(
        probe, amqp={"url": "amqp://127.0.0.1:%d" % server.port})}
        for name, server in others.items()]
    entries += [{"name": "none", "command": ["sleep", "300"], "readinessProbe": dict(
                 probe, amqp={"url": "amqp://127.0.0.1:%d" % free_port()})},
                {"name": "nameless", "command": ["sleep", "300"], "readinessProbe": dict(
                 probe, amqp={"url": "amqp://no-such-host.invalid"})},
                {"name": "empty", "command": ["sleep", "300"], "readinessProbe": dict(
                 probe, amqp={"url": "FILE:%s" % empty})}]
    procwrap = background("-c", write_config(tmp_path, {"processes": entries}),
                          "--ctl-socket", socket_path)
    procwrap.expect_event("started", "empty")
    wait_until(lambda: all(message for _, message in probe_messages(socket_path).values()),
               what="every probe to have checked once")
    messages = {name: message for name, (_, message) in probe_messages(socket_path).items()}
    assert messages["v010"] == "the server speaks AMQP 0-10, not 0-9-1"
    assert messages["web"] == ("not an AMQP server: it answered "
                               "'HTTP/1.1 400 Bad Request'"), messages
    assert messages["quiet"] == "the server ended the handshake: it closed the connection"
    assert messages["short"] == "not an AMQP server: method 10.10 is malformed"
    assert messages["empty"] == "the url is empty"      # before: an internal error, each check
    assert '"event":"bug"' not in procwrap.stdout and "Traceback" not in procwrap.stderr
    assert messages["none"].endswith("Connection refused"), messages
    assert messages["nameless"].startswith("cannot resolve no-such-host.invalid: "), messages
    procwrap.kill()


def test_preemption_fails_readiness_logs_and_drains_without_polling(background, tmp_path):
    """GCE's preemption flag watched with hanging GETs: while FALSE nothing
    but the one hanging request; once TRUE, /readiness is 503, a record and
    an event datagram say so, Envoy gets its drain POST, and the processes
    run on until the kubelet's TERM."""
    import socket
    from fake_pod import Envoy, Metadata
    metadata, envoy = Metadata(), Envoy()
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(WAIT)
    config = write_config(tmp_path, {"processes": [{"name": "web", "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--http", "127.0.0.1:0", "--preemption-url",
                          metadata.url, "--drain-url", envoy.url, "--events-udp",
                          "127.0.0.1:%d" % collector.getsockname()[1])
    address = procwrap.expect_event("http")["address"]
    procwrap.expect_event("ready")
    assert procwrap.expect_event("preemption")["message"] == (
        "preemption: watching %s (now FALSE)" % metadata.url)
    metadata.wait_for(lambda: metadata.hanging == 1, "the hanging GET")
    time.sleep(1)       # a lower bound: a poller would ask again within it
    metadata.set("TRUE")
    record = procwrap.expect_event("preempted")
    assert record["level"] == "warning" and record["message"] == (
        "the node is being preempted: readiness fails from now on; asking %s to drain"
        % envoy.url)
    assert procwrap.expect_event("drain")["message"] == "drain: %s answered 200" % envoy.url
    # The first GET plain, then one hanging GET that answered the change.
    queries = [query for _, _, query, _ in metadata.requests]
    assert queries[0] == {} and len(queries) == 2, queries
    assert queries[1]["wait_for_change"] == ["true"] and queries[1]["last_etag"] == [
        "%016x" % 7919] and all(h["Metadata-Flavor"] == "Google" for *_, h in metadata.requests)
    assert [(method, path) for method, path, _, _ in envoy.requests] == [
        ("POST", "/drain_listeners")]
    assert envoy.requests[0][2] == {} and "inboundonly&graceful" in envoy.url
    import urllib.error
    try:
        urllib.request.urlopen("http://%s/readiness" % address, timeout=WAIT)
        raise AssertionError("/readiness answered 200 after preemption")
    except urllib.error.HTTPError as error:
        assert error.code == 503
    status = json.loads(urllib.request.urlopen("http://%s/status" % address,
                                               timeout=WAIT).read())
    assert status["preempted"] is True and status["processes"][0]["state"] == "running"
    events = []
    while "preempted" not in [e["event"] for e in events]:
        events.append(json.loads(collector.recv(65536).decode()))
    collector.close()
    procwrap.signal(15)
    assert procwrap.wait() == 0
    metadata.close()
    envoy.close()


def test_preemption_off_gce_watches_nothing_and_says_so(background, tmp_path):
    from fake_pod import Metadata
    config = write_config(tmp_path, {"processes": [{"name": "web", "command": ["sleep", "300"]}]})
    nowhere = "http://127.0.0.1:%d/computeMetadata/v1/instance/preempted" % free_port()
    procwrap = background("-c", config, "--preemption-url", nowhere)
    record = procwrap.expect_event("preemption")
    assert record["level"] == "warning" and record["message"].startswith(
        "preemption: cannot read %s: " % nowhere) and record["message"].endswith(
        "; not watching for preemption"), record
    procwrap.expect_event("ready")
    procwrap.kill()
    # A metadata server that refuses the request (no such path): the same.
    metadata = Metadata()
    wrong = metadata.url.replace("preempted", "nope")
    procwrap = background("-c", config, "--preemption-url", wrong)
    assert procwrap.expect_event("preemption")["message"] == (
        "preemption: cannot read %s: HTTP 404: Not Found; not watching for preemption" % wrong)
    procwrap.kill()
    metadata.close()


def test_pod_option_mistakes(tmp_path):
    config = write_config(tmp_path, {"processes": [{"name": "web", "command": ["true"]}]})
    cases = [
        (["--drain-url", "http://127.0.0.1:15000/drain_listeners"],
         "procwrap: error: --drain-url: drains when the node is preempted; give "
         "--preemption-url too (gce on GKE)\n"),
        (["--preemption-url", "metadata"],
         "procwrap: error: --preemption-url: expected an http:// or https:// URL, or gce, "
         "got 'metadata'\n"),
        (["--exit-with-containers", "main"],
         "procwrap: error: --exit-with-containers: KUBERNETES_SERVICE_HOST is not set; it "
         "watches the pod through the Kubernetes API, from inside the pod\n"),
    ]
    for args, expected in cases:
        result = run("-c", config, *args)
        assert (result.returncode, result.stderr) == (2, expected), args


def in_cluster(tmp_path, api, token, namespace="jobs"):
    """The environment of a container of the fake API's pod: the service
    account's files in a directory of the test's, the API's address."""
    import shutil
    account = tmp_path / "serviceaccount"
    account.mkdir(exist_ok=True)
    (account / "token").write_text(token)
    (account / "namespace").write_text(namespace)
    shutil.copy(api.certificate, str(account / "ca.crt"))
    return clean_environ(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT="443",
                         KUBERNETES_SERVICE_PORT_HTTPS=str(api.port), HOSTNAME=api.name,
                         PROCWRAP_SERVICE_ACCOUNT_DIR=str(account))


def kubernetes(tmp_path, containers=("main", "sidecar"), hang=60):
    from conftest import self_signed_cert
    from fake_pod import Kubernetes
    directory = tmp_path / "api"
    directory.mkdir()
    certificate, key = self_signed_cert(directory)
    api = Kubernetes("jobs", "job-7d9xk", containers, "token-2", certificate, key, hang)
    api.certificate = certificate
    return api


def test_exit_with_containers_follows_the_pod_through_the_api(background, tmp_path):
    """A sidecar of a Job: procwrap watches its pod through the Kubernetes
    API (HTTPS verified with the service account's CA, a bearer token read
    again for each request) and, once `main` has terminated, stops its
    processes and exits 0.  A refused token is retried with a backoff; a
    watch from a version too old (410) goes back to a GET."""
    api = kubernetes(tmp_path)
    env = in_cluster(tmp_path, api, "token-1")      # not the one the API takes
    config = write_config(tmp_path, {"processes": [{"name": "proxy",
                                                    "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--exit-with-containers", "main", env=env)
    warning = procwrap.expect_event("exit-with-containers")
    assert (warning["level"], warning["message"]) == ("warning", (
        "exit-with-containers: HTTP 401: Unauthorized; trying again, waiting longer each "
        "time")), warning
    (tmp_path / "serviceaccount" / "token").write_text("token-2")     # the kubelet rotates it
    assert procwrap.expect_event("exit-with-containers", count=2)["message"] == (
        "exit-with-containers: pod jobs/job-7d9xk read again")
    assert procwrap.expect_event("exit-with-containers", count=3)["message"] == (
        "exit-with-containers: watching pod jobs/job-7d9xk for main to terminate")

    def watches():
        return [q for _, path, q, _ in api.requests if path.endswith("/pods")]
    api.wait_for(lambda: api.watching == 1, "the first watch")
    assert watches()[0] == {"watch": ["1"], "fieldSelector": ["metadata.name=job-7d9xk"],
                            "resourceVersion": ["100"], "allowWatchBookmarks": ["true"],
                            "timeoutSeconds": ["300"]}
    api.expire()                # the watch ends; from 100 again: 410, so a GET, then 101
    api.wait_for(lambda: len(watches()) == 3, "the watch after the 410")
    assert [q["resourceVersion"] for q in watches()] == [["100"], ["100"], ["101"]]
    assert [path.rsplit("/", 1)[1] for _, path, _, _ in api.requests] == [
        "job-7d9xk", "job-7d9xk", "pods", "pods", "job-7d9xk", "pods"]
    api.terminate("sidecar", 0)     # not the one named: nothing happens
    api.terminate("main", 0)
    record = procwrap.expect_event("containers-terminated")
    assert record["message"] == "exit-with-containers: main (exit code 0) terminated"
    assert procwrap.expect_event("shutdown")["message"] == (
        "shutting down (the containers it exits with terminated)")
    assert procwrap.wait() == 0
    assert len(watches()) == 3
    assert [h["Authorization"] for *_, h in api.requests] == ["Bearer token-1"] + [
        "Bearer token-2"] * 5
    assert procwrap.stderr.strip() == ""    # PROCWRAP_SERVICE_ACCOUNT_DIR is procwrap's own
    api.close()


def test_exit_with_containers_names_a_container_the_pod_lacks(background, tmp_path):
    api = kubernetes(tmp_path)
    env = in_cluster(tmp_path, api, "token-2")
    config = write_config(tmp_path, {"processes": [{"name": "proxy",
                                                    "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--exit-with-containers", "main,mian", env=env)
    record = procwrap.expect_event("exit-with-containers", count=2)
    assert (record["level"], record["message"]) == ("error", (
        "--exit-with-containers: pod jobs/job-7d9xk has no container named mian (its "
        "containers: main, sidecar)"))
    assert procwrap.wait() == 2
    api.close()


def test_servers_that_do_not_hold_requests_are_paced_not_spun(background, tmp_path):
    """A preemption URL that answers at once (no hanging GETs) and an API
    server that ends every watch at once: procwrap pauses 1 s doubling
    between such requests instead of asking again in a tight loop (before:
    hundreds of requests a second), and still sees the change."""
    from fake_pod import Metadata
    metadata = Metadata(hang=0)
    api = kubernetes(tmp_path, hang=0)
    config = write_config(tmp_path, {"processes": [{"name": "web", "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--preemption-url", metadata.url,
                          "--exit-with-containers", "main",
                          env=in_cluster(tmp_path, api, "token-2"))
    procwrap.expect_event("preemption")
    started = time.monotonic()
    time.sleep(3.5)         # a measured window, not a wait for an event
    window = time.monotonic() - started
    # Paced: 1 + 2 s of pauses fit in 3.5 s; a tight loop makes hundreds.
    for server in (metadata, api):
        assert len(server.requests) <= 4 + window, [r[:3] for r in server.requests]
    metadata.set("TRUE")
    procwrap.expect_event("preempted")
    api.terminate("main")
    procwrap.expect_event("containers-terminated")
    assert procwrap.wait() == 0
    metadata.close()
    api.close()


def test_exit_with_containers_outlives_an_answer_of_another_shape(background, tmp_path):
    """A pod whose spec is not an object (a broken proxy, an API of another
    version): a warning and a retry, not a watch thread dead for good (before:
    an AttributeError ended it, and the sidecar never exited)."""
    api = kubernetes(tmp_path)
    good = api.pod["spec"]
    api.update(lambda pod: pod.update(spec="containers: main"))
    config = write_config(tmp_path, {"processes": [{"name": "proxy",
                                                    "command": ["sleep", "300"]}]})
    procwrap = background("-c", config, "--exit-with-containers", "main",
                          env=in_cluster(tmp_path, api, "token-2"))
    warning = json.loads(procwrap.expect(lambda line: '"level":"warning"' in line))
    assert (warning["event"], warning["message"]) == ("exit-with-containers", (
        "exit-with-containers: 'str' object has no attribute 'get'; trying again, waiting "
        "longer each time"))
    api.update(lambda pod: pod.update(spec=good))
    api.terminate("main")
    assert procwrap.expect_event("containers-terminated")["message"] == (
        "exit-with-containers: main (exit code 0) terminated")
    assert procwrap.wait() == 0
    api.close()
