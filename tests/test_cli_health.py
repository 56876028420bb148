"""Probes, /liveness /readiness /metrics /status, the readiness file and sd_notify, end to end."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from conftest import (PYTHON, WAIT, clean_environ, events, read_line, run, self_signed_cert,
                      wait_until, write_config)

FAST = {"periodSeconds": 0.2, "timeoutSeconds": 5}


def probe(handler, **fields):
    """A probe object: FAST timing unless overridden."""
    result = dict(FAST)
    result.update(handler)
    result.update(fields)
    return result


def start(background, tmp_path, processes, *args, **config):
    """procwrap with an HTTP endpoint on a free port; returns (procwrap, get)."""
    config["processes"] = processes
    procwrap = background("-c", write_config(tmp_path, config), "--http", "127.0.0.1:0", *args)
    host, port = procwrap.expect_event("http")["address"].rsplit(":", 1)

    def get(path, method="GET"):
        connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        connection.request(method, path)
        answer = connection.getresponse()
        body = answer.read().decode()
        connection.close()
        return answer.status, (json.loads(body) if body.startswith("{") else body), answer
    return procwrap, get


def sleeper(name="app", **fields):
    entry = {"name": name, "command": ["sleep", "300"]}
    entry.update(fields)
    return entry


def test_readiness_follows_an_exec_probe_and_wait_blocks_until_ready(background, tmp_path):
    flag = tmp_path / "ready"
    procwrap, get = start(background, tmp_path, [sleeper(readinessProbe=probe(
        {"exec": {"command": ["test", "-e", str(flag)]}}))])
    procwrap.expect_event("started", "app")
    status, body, _ = get("/readiness")
    assert status == 503 and body["processes"]["app"] == {"ok": False, "state": "running"}
    assert get("/liveness")[0] == 200
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(get("/readiness?wait=60")))
    waiter.start()
    flag.touch()
    waiter.join(WAIT)
    assert answers[0][0] == 200 and answers[0][1]["status"] == "ok"
    assert get("/readiness")[0] == 200
    assert get("/readiness?wait=0.1")[0] == 200
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    probe_events = events(procwrap.stdout, "probe")
    assert [(e["probe"], e["result"]) for e in probe_events] == [("readiness", "passed")]


def test_wait_times_out_with_503(background, tmp_path):
    procwrap, get = start(background, tmp_path, [sleeper(readinessProbe=probe(
        {"exec": {"command": ["false"]}}))])
    procwrap.expect_event("started", "app")
    status, body, _ = get("/readiness?wait=0.5")
    assert status == 503 and body["status"] == "fail"


def test_failing_liveness_probe_kills_and_restarts_after_exact_threshold(background, tmp_path):
    flag = tmp_path / "healthy"
    procwrap, get = start(background, tmp_path, [sleeper(
        backoff={"initial": 0}, livenessProbe=probe(
            {"exec": {"command": ["test", "-e", str(flag)]}}, failureThreshold=3))])
    first = procwrap.expect_event("started", "app")["pid"]
    unhealthy = procwrap.expect_event("unhealthy", "app")
    assert unhealthy["message"] == "app: liveness probe failed; stopping it"
    assert unhealthy["pid"] == first
    flag.touch()        # the next instance is healthy
    second = procwrap.expect_event("started", "app", count=2)["pid"]
    assert second != first
    status = get("/status")[1]["processes"][0]
    assert status["probes"][0]["failures"] == 3      # exactly the threshold, then on hold
    assert status["restarts"] == 1 and status["lastExit"] == 143
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    failed = [e for e in events(procwrap.stdout, "probe") if e["result"] == "failed"]
    assert len(failed) == 1     # one record for the flip, not one per failed check


def test_startup_probe_gates_the_others(background, tmp_path):
    started = tmp_path / "started"
    procwrap, get = start(background, tmp_path, [sleeper(
        startupProbe=probe({"file": {"path": str(started)}}, failureThreshold=1000),
        readinessProbe=probe({"exec": {"command": ["true"]}}),
        livenessProbe=probe({"exec": {"command": ["true"]}}))])
    procwrap.expect_event("started", "app")
    probes = dict((p["probe"], p) for p in get("/status")[1]["processes"][0]["probes"])
    assert probes["startup"]["result"] == "unknown" and probes["startup"]["failures"] >= 0
    assert probes["readiness"]["message"] == "" and probes["liveness"]["message"] == ""
    assert get("/readiness")[0] == 503
    started.touch()
    procwrap.expect_event("ready")
    assert get("/readiness")[0] == 200
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    # Liveness starts out passing, so only startup and readiness flip (and say so).
    kinds = [e["probe"] for e in events(procwrap.stdout, "probe")]
    assert kinds == ["startup", "readiness"]


def test_failing_startup_probe_kills(background, tmp_path):
    procwrap, _ = start(background, tmp_path, [sleeper(restartPolicy="Never", startupProbe=probe(
        {"file": {"path": str(tmp_path / "never")}}, failureThreshold=2))])
    assert procwrap.expect_event("unhealthy", "app")["message"] == \
        "app: startup probe failed; stopping it"
    assert procwrap.wait() == 143


def test_http_and_tcp_probes_against_real_servers(background, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    tcp_port = listener.getsockname()[1]
    server = subprocess.Popen([PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
                              cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
    try:
        http_port = int(read_line(server.stdout, " port ").split(" port ")[1].split()[0])
        (tmp_path / "healthz").write_text("ok")
        procwrap, get = start(background, tmp_path, [
            sleeper("web", readinessProbe=probe({"httpGet": {
                "port": http_port, "path": "/healthz",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}]}})),
            sleeper("missing", readinessProbe=probe({"httpGet": {"port": http_port,
                                                                 "path": "/nope"}})),
            sleeper("db", readinessProbe=probe({"tcpSocket": {"port": tcp_port}})),
            sleeper("closed", readinessProbe=probe({"tcpSocket": {"port": 1}}))])
        for name in ("web", "db"):
            record = procwrap.expect(lambda line: '"probe"' in line and '"%s"' % name in line)
            assert json.loads(record)["result"] == "passed"
        status = dict((p["name"], p) for p in get("/status")[1]["processes"])
        assert status["web"]["probes"][0]["message"] == "HTTP 200"
        assert status["missing"]["probes"][0]["message"] == "HTTP 404"
        assert status["missing"]["ready"] is False
        assert status["closed"]["probes"][0]["message"].startswith("cannot connect to "
                                                                   "127.0.0.1:1")
        procwrap.signal(signal.SIGTERM)
        assert procwrap.wait() == 0
    finally:
        server.kill()
        server.wait(WAIT)
        listener.close()


HEARTBEAT = ("import json, os, socket, sys, time\n"
             "host, port = os.environ['PROCWRAP_STATUS_ADDRESS'].split(':')\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "message = {'name': os.environ['PROCWRAP_PROCESS'], 'status': 'warming up'}\n"
             "s.sendto(json.dumps(message).encode(), (host, int(port)))\n"
             "s.sendto(b'not json', (host, int(port)))\n"
             "time.sleep(300)\n")

NOTIFY = ("import os, socket, time\n"
          "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
          "address = os.environ['NOTIFY_SOCKET']\n"
          "s.sendto(b'READY=1\\nSTATUS=serving', '\\0' + address[1:])\n"
          "time.sleep(300)\n")


def test_heartbeat_and_notify_probes(background, tmp_path):
    procwrap, get = start(background, tmp_path, [
        {"name": "beat", "command": [PYTHON, "-c", HEARTBEAT],
         "readinessProbe": probe({"heartbeat": {"maxAgeSeconds": 60}}, periodSeconds=30)},
        {"name": "notifier", "command": [PYTHON, "-c", NOTIFY],
         "readinessProbe": probe({"notify": {}}, periodSeconds=30)}])
    # A period of 30 s: readiness comes from the datagram itself, not the next period.
    procwrap.expect_event("ready")
    status = dict((p["name"], p) for p in get("/status")[1]["processes"])
    assert status["beat"]["status"] == "warming up"
    assert status["notifier"]["status"] == "serving"
    # The child's 'not json' datagram was counted, not logged.
    wait_until(lambda: "procwrap_status_datagrams_rejected_total 1" in get("/metrics")[1],
               what="the bad datagram counted")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_pid_file_probe(background, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    # The daemon outlives its parent shell's interest in it: the shell execs
    # into something else, so the pid file is all that tells of the daemon.
    script = "sleep 300 & echo $! > %s; exec sleep 300" % pid_file
    procwrap, get = start(background, tmp_path, [
        {"name": "daemon", "command": ["sh", "-c", script],
         "readinessProbe": probe({"pidFile": {"path": str(pid_file)}})}])
    procwrap.expect_event("ready")
    daemon = int(pid_file.read_text())
    os.kill(daemon, signal.SIGKILL)
    procwrap.expect_event("not-ready")
    message = get("/status")[1]["processes"][0]["probes"][0]["message"]
    assert message in ("pid %d from %s is gone" % (daemon, pid_file),
                       "pid %d from %s has exited" % (daemon, pid_file))
    procwrap.signal(signal.SIGTERM)
    procwrap.wait()


def test_readiness_file(background, tmp_path):
    ready_file = tmp_path / "started"
    flag = tmp_path / "flag"
    procwrap, _ = start(background, tmp_path, [sleeper(readinessProbe=probe(
        {"exec": {"command": ["test", "-e", str(flag)]}}))], "--readiness-file",
        str(ready_file))
    procwrap.expect_event("started", "app")
    assert not ready_file.exists()
    flag.touch()
    procwrap.expect_event("ready")
    assert ready_file.read_text() == "procwrap ready (pid %d)\n" % procwrap.pid
    flag.unlink()
    procwrap.expect_event("not-ready")
    assert not ready_file.exists()
    flag.touch()
    procwrap.expect_event("ready", count=2)
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert not ready_file.exists()


def test_endpoint_errors_keep_alive_and_head(background, tmp_path):
    procwrap, get = start(background, tmp_path, [sleeper()])
    procwrap.expect_event("ready")
    assert get("/nope")[0] == 404
    status, body, answer = get("/status", method="POST")
    assert status == 405 and answer.getheader("Allow") == "GET, HEAD"
    status, body, answer = get("/readiness", method="HEAD")
    assert status == 200 and body == "" and int(answer.getheader("Content-Length")) > 0
    host, port = procwrap.expect_event("http")["address"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    for _ in range(3):      # one connection, three requests
        connection.request("GET", "/liveness")
        assert connection.getresponse().read().startswith(b'{"processes"')
    connection.close()
    huge = socket.create_connection((host, int(port)), timeout=WAIT)
    huge.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert huge.recv(100).startswith(b"HTTP/1.1 431 ")
    huge.close()


def test_slow_clients_do_not_stall_the_supervisor(background, tmp_path):
    procwrap, get = start(background, tmp_path, [sleeper()])
    procwrap.expect_event("ready")
    host, port = procwrap.expect_event("http")["address"].rsplit(":", 1)
    stalled = []
    for _ in range(50):     # slowloris: half a request head each, never finished
        sock = socket.create_connection((host, int(port)), timeout=WAIT)
        sock.sendall(b"GET /readiness HTTP/1.1\r\nHost: x\r\n")
        stalled.append(sock)
    for _ in range(5):
        assert get("/readiness")[0] == 200
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    for sock in stalled:
        sock.close()


@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="promtool (Debian package prometheus) is not installed; .ci/run "
                           "installs it")
def test_metrics_pass_promtool(background, tmp_path):
    procwrap, get = start(background, tmp_path, [
        sleeper("web", readinessProbe=probe({"exec": {"command": ["false"]}})),
        {"name": "once", "command": ["true"], "restartPolicy": "OnFailure"}])
    procwrap.expect_event("exited", "once")
    wait_until(lambda: get("/status")[1]["processes"][0]["probes"][0]["failures"] > 0,
               what="a failed readiness check")
    status, text, answer = get("/metrics")
    assert status == 200
    assert answer.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    lines = text.splitlines()
    assert 'procwrap_process_up{name="web"} 1' in lines
    assert 'procwrap_process_state{name="once",state="exited"} 1' in lines
    assert 'procwrap_process_last_exit_status{name="once"} 0' in lines
    assert 'procwrap_process_starts_total{name="web"} 1' in lines
    assert any(line.startswith('procwrap_probe_failures_total{name="web",probe="readiness"} ')
               for line in lines)
    assert any(line.startswith('procwrap_process_resident_memory_bytes{name="web"} ')
               for line in lines)
    samples = [line.split(" ")[0] for line in lines if not line.startswith("#")]
    assert len(samples) == len(set(samples))        # promtool does not catch duplicates
    check = subprocess.run(["promtool", "check", "metrics"], input=text, timeout=WAIT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
    assert check.returncode == 0, check.stdout
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_sd_notify_to_systemd(background, tmp_path):
    address = str(tmp_path / "notify.sock")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(address)
    manager.settimeout(WAIT)
    show = [PYTHON, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET', '<unset>')); "
                          "import sys; sys.stdin.read()"]
    config = write_config(tmp_path, {"processes": [{"name": "app", "command": show}]})
    procwrap = background("-c", config, env=clean_environ(
        NOTIFY_SOCKET=address, WATCHDOG_USEC="200000"))
    received = []

    def until(text):
        while not any(text in message for message in received):
            received.append(manager.recv(4096).decode())
    until("READY=1")
    assert [m for m in received if "READY=1" in m][0] == "READY=1\nSTATUS=1 of 1 process ready"
    until("WATCHDOG=1")
    procwrap.expect('"message":"<unset>"')      # systemd's socket is procwrap's, not the child's
    procwrap.signal(signal.SIGTERM)
    until("STOPPING=1")
    assert procwrap.wait() == 0
    manager.close()


def test_lifecycle_hooks_and_top_level_post_start(background, tmp_path):
    marks = tmp_path / "marks"
    procwrap, get = start(background, tmp_path, [
        sleeper(stopTimeout=10, lifecycle={
            "postStart": {"exec": {"command": ["sh", "-c", "echo post-start >> %s" % marks]}},
            "preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop >> %s; sleep 0.2"
                                             % marks]}}})],
        postStart=[{"name": "migrate", "command": ["sh", "-c", "echo migrate >> %s" % marks]}])
    procwrap.expect_event("exited", "migrate")
    assert marks.read_text() == "post-start\nmigrate\n"
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert marks.read_text() == "post-start\nmigrate\npre-stop\n"
    hooks = [(e["hook"], e["result"]) for e in events(procwrap.stdout, "hook")]
    assert hooks == [("postStart", "passed"), ("preStop", "passed")]
    # The stop signal came only after the preStop hook had finished.
    order = [e["event"] for e in events(procwrap.stdout)
             if e["event"] in ("hook", "stopping")]
    assert order == ["hook", "hook", "stopping"]


def test_failing_post_start_hook_kills_and_failing_post_start_entry_stops_all(background,
                                                                              tmp_path):
    procwrap, _ = start(background, tmp_path, [sleeper(restartPolicy="Never", lifecycle={
        "postStart": {"exec": {"command": ["false"]}}})])
    assert procwrap.expect_event("unhealthy", "app")["message"] == \
        "app: postStart hook failed; stopping it"
    assert procwrap.wait() == 143
    other = tmp_path / "second"
    other.mkdir()
    second, _ = start(background, other, [sleeper()], postStart=[
        {"name": "migrate", "command": ["sh", "-c", "exit 7"]}])
    assert second.expect_event("post-start-failed")["status"] == 7
    assert second.wait() == 7


def test_a_daemon_that_forks_away_is_followed_through_its_pid_file(background, tmp_path):
    # The floating pid: the command starts a daemon in its own session and
    # exits 0.  procwrap (subreaper) follows the pid in the pid file.
    pid_file = tmp_path / "daemon.pid"
    script = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > %s" % pid_file
    procwrap, get = start(background, tmp_path, [
        {"name": "daemon", "command": ["sh", "-c", script], "restartPolicy": "Never",
         "readinessProbe": probe({"pidFile": {"path": str(pid_file)}})}])
    adopted = procwrap.expect_event("adopted", "daemon")
    assert adopted["pid"] == int(pid_file.read_text())
    procwrap.expect_event("ready")
    status = get("/status")[1]["processes"][0]
    assert (status["state"], status["pid"]) == ("running", adopted["pid"])
    os.kill(adopted["pid"], signal.SIGKILL)
    assert procwrap.expect_event("exited", "daemon", count=2)["pid"] == adopted["pid"]
    assert procwrap.wait() == 137


HTTPS_SERVER = ("import http.server, ssl, sys\n"
                "server = http.server.HTTPServer(('127.0.0.1', 0), "
                "http.server.SimpleHTTPRequestHandler)\n"
                "context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
                "context.load_cert_chain(sys.argv[1], sys.argv[2])\n"
                "server.socket = context.wrap_socket(server.socket, server_side=True)\n"
                "print(server.server_address[1], flush=True)\n"
                "server.serve_forever()\n")


def test_https_probe_does_not_verify_the_certificate(background, tmp_path, server):
    cert, key = self_signed_cert(tmp_path, "elsewhere")
    _, line = server([PYTHON, "-c", HTTPS_SERVER, cert, key], cwd=str(tmp_path))
    procwrap, get = start(background, tmp_path, [sleeper(readinessProbe=probe(
        {"httpGet": {"port": int(line), "path": "/cert.pem", "scheme": "HTTPS"}}))])
    procwrap.expect_event("ready")
    assert get("/status")[1]["processes"][0]["probes"][0]["message"] == "HTTP 200"
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_no_secret_in_status_metrics_or_ctl(background, tmp_path):
    canary = "canary-status-9d2e1f"
    (tmp_path / "s.json").write_text(json.dumps({"password": canary}))
    socket_path = str(tmp_path / "ctl.sock")
    procwrap, get = start(background, tmp_path, [sleeper(env=[
        {"name": "PASSWORD", "valueFrom": {"location": "%s/s.json|JP:$.password" % tmp_path}}],
        readinessProbe=probe({"exec": {"command": ["sh", "-c", "test -n \"$PASSWORD\""]}}))],
        "--ctl-socket", socket_path)
    procwrap.expect_event("ready")      # the probe saw the secret in its environment
    seen = [json.dumps(get("/status")[1]), get("/metrics")[1], json.dumps(get("/readiness")[1])]
    seen.append(run("ctl", "--socket", socket_path, "status").stdout)
    seen.append(run("ctl", "--socket", socket_path, "--json", "status").stdout)
    assert not any(canary in text for text in seen)
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert canary not in procwrap.stdout + procwrap.stderr


def test_exec_probe_is_killed_at_its_timeout(background, tmp_path):
    marker = tmp_path / "probe-pids"
    slow = ["sh", "-c", "echo $$ >> %s; exec sleep 30" % marker]
    procwrap, get = start(background, tmp_path, [sleeper(readinessProbe=probe(
        {"exec": {"command": slow}}, timeoutSeconds=0.3, periodSeconds=0.5))])
    wait_until(lambda: get("/status")[1]["processes"][0]["probes"][0]["failures"] >= 2,
               what="two timed-out checks")
    message = get("/status")[1]["processes"][0]["probes"][0]["message"]
    assert message == "timed out after 0.3 s"
    first = int(marker.read_text().split()[0])
    wait_until(lambda: not os.path.exists("/proc/%d" % first), what="the probe killed")
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0


def test_pre_stop_hook_is_bounded_by_the_stop_timeout(background, tmp_path):
    procwrap, _ = start(background, tmp_path, [sleeper(stopTimeout=0.5, lifecycle={
        "preStop": {"exec": {"command": ["sleep", "30"]}}})])
    procwrap.expect_event("started", "app")
    procwrap.signal(signal.SIGTERM)
    # A 30 s hook does not hold the shutdown past the 0.5 s grace: the hook
    # times out, or the grace's SIGKILL ends the process first (same instant).
    assert procwrap.wait() == 0
    assert events(procwrap.stdout, "exited")[0]["status"] in (143, 137)
    for hook in events(procwrap.stdout, "hook"):
        assert hook["message"] == "app: preStop hook failed (timed out after 0.5 s)"
    assert any(e["event"] in ("hook", "killing") for e in events(procwrap.stdout))
