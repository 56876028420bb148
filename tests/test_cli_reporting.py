"""Status updates and reporting to a CloudReactor-style API server (issue 11),
through the command line, against the protocol server of tests/fake_api.py."""
import json
import os
import signal
import time

import pytest

from conftest import PYTHON, clean_environ, fixture, records, run, wait_until
from fake_api import ApiServer

KEY = "key-0f3c9a-procwrap-test"
CHILD = [PYTHON, fixture("status_child.py")]


@pytest.fixture
def api():
    server = ApiServer()
    yield server
    server.stop()


def reported(api, *args, **kwargs):
    """procwrap reporting to `api` (status updates on a free port, JSON logs)."""
    return run("--api-key", KEY, "--api-base-url", api.url, "--task-name", "etl",
               "--status-updates", "--status-update-port", "0", "--log-format", "json",
               *args, **kwargs)


def test_a_run_is_reported_with_its_status_updates(api):
    result = reported(api, "--send-hostname", "--", *(CHILD + ["3"]))
    assert result.returncode == 3, result.stderr
    requests = api.requests
    start = requests[0]
    assert (start["method"], start["path"]) == ("POST", "/api/v1/task_executions/")
    assert start["headers"]["Authorization"] == "Bearer " + KEY
    assert start["body"]["status"] == "RUNNING" and start["body"]["task"] == {"name": "etl"}
    assert start["body"]["hostname"] and start["body"]["wrapper_family"] == "procwrap"
    final = requests[-1]
    assert final["method"] == "PATCH" and final["path"] == (
        "/api/v1/task_executions/exec-1/?content=false")
    assert final["body"]["status"] == "FAILED" and final["body"]["exit_code"] == 3
    assert "credentials in my environment: none" in final["body"]["error_log_tail"]
    merged = api.merged()
    assert (merged["expected_count"], merged["success_count"]) == (3, 3)
    assert merged["last_status_message"] == "finishing"
    assert merged["other_runtime_metadata"] == {"step": 3}
    assert merged["last_app_heartbeat_at"].endswith("Z")
    # the first update went at once, before the final one (no heartbeat in 300 s)
    assert len([r for r in requests if r["body"].get("status") == "RUNNING"]) >= 2
    said = [r["status_message"] for r in records(result.stdout)
            if r.get("event") == "status-update"]
    assert said == ["starting", "finishing"]
    assert KEY not in result.stdout + result.stderr


def test_success_and_a_pre_created_execution(api):
    result = reported(api, "--task-execution-uuid", "given-7", "--", *(CHILD + ["0"]))
    assert result.returncode == 0, result.stderr
    assert [r["method"] for r in api.requests][0] == "PATCH"
    assert api.requests[0]["path"] == "/api/v1/task_executions/given-7/"
    assert api.requests[-1]["body"]["status"] == "SUCCEEDED"
    assert "error_log_tail" not in api.requests[-1]["body"]


def test_the_api_key_never_reaches_the_child_nor_any_output(api, tmp_path):
    """Given the proc_wrapper way (PROC_WRAPPER_API_KEY in the environment)."""
    env = clean_environ(PROC_WRAPPER_API_KEY=KEY, PROC_WRAPPER_API_BASE_URL=api.url,
                        PROC_WRAPPER_TASK_NAME="etl")
    result = run("--log-format", "json", "--", *(CHILD + ["0"]), env=env)
    assert result.returncode == 0, result.stderr
    assert "credentials in my environment: none" in result.stdout
    assert KEY not in result.stdout + result.stderr
    assert api.requests[0]["headers"]["Authorization"] == "Bearer " + KEY
    assert KEY not in json.dumps(api.bodies())


def test_a_proc_wrapper_environment_runs_unchanged(api):
    """Only PROC_WRAPPER_* variables, as a proc_wrapper deployment sets them:
    the listener, retries, the task; the child's own StatusUpdater finds the
    port through proc_wrapper's variables."""
    env = clean_environ(PROC_WRAPPER_API_KEY=KEY, PROC_WRAPPER_API_BASE_URL=api.url,
                        PROC_WRAPPER_TASK_NAME="etl", PROC_WRAPPER_TASK_MAX_RETRIES="1",
                        PROC_WRAPPER_PROCESS_RETRY_DELAY_SECONDS="0",
                        PROC_WRAPPER_ENABLE_STATUS_UPDATE_LISTENER="TRUE",
                        PROC_WRAPPER_STATUS_UPDATE_SOCKET_PORT="0",
                        PROC_WRAPPER_API_HEARTBEAT_INTERVAL_SECONDS="-1",
                        PROC_WRAPPER_TASK_MAX_CONCURRENCY="-1", PROC_WRAPPER_SCHEDULE="@daily",
                        PROC_WRAPPER_TASK_IS_SERVICE="FALSE",
                        PROC_WRAPPER_TASK_INSTANCE_METADATA='{"zone": "a"}',
                        PROC_WRAPPER_BUILD_TASK_EXECUTION_UUID="build-9")
    result = run("--log-format", "json", "--", *(CHILD + ["4"]), env=env)
    assert result.returncode == 4, result.stderr
    bodies = api.bodies("PATCH")
    assert any(b.get("failed_attempts") == 1 and b["status"] == "RUNNING" for b in bodies)
    assert bodies[-1]["status"] == "FAILED" and bodies[-1]["failed_attempts"] == 1
    assert any(b.get("success_count") == 3 for b in bodies)
    start = api.requests[0]["body"]
    assert start["task"] == {"name": "etl", "max_concurrency": -1}
    assert (start["schedule"], start["is_service"], start["task_max_concurrency"]) == (
        "@daily", False, -1)
    assert start["other_instance_metadata"] == {"zone": "a"}
    assert start["build"] == {"task_execution": {"uuid": "build-9"}}


def test_a_conflict_at_the_start_is_retried_then_75_without_the_command(api, tmp_path):
    marker = tmp_path / "ran"
    api.plan("POST", 409, times=10)
    began = time.monotonic()
    result = reported(api, "--api-conflict-timeout", "1", "--api-conflict-retry-delay", "0.3",
                      "--", "touch", str(marker))
    assert result.returncode == 75, result.stderr
    assert not marker.exists()
    assert 3 <= len(api.requests) <= 5          # 0, 0.3, 0.6, 0.9 s
    assert time.monotonic() - began < 20
    assert "409: its concurrency limit" in result.stdout


def test_a_conflict_on_a_heartbeat_stops_the_command_properly(api, background):
    """The server stopped the execution: the command's group gets its stop
    signal (then SIGKILL after the grace), the final status is ABORTED, exit 75."""
    bg = background("--api-key", KEY, "--api-base-url", api.url, "--task-name", "etl",
                    "--api-heartbeat-interval", "0.5", "--stop-timeout", "2",
                    "--log-format", "json", "--", "sh", "-c",
                    "trap 'echo got TERM; exit 9' TERM; echo up; sleep 300 & wait")
    bg.expect('"up"')
    api.plan("PATCH", 409)
    assert bg.wait(30) == 75
    assert any("got TERM" in line for line in bg.out)
    final = api.requests[-1]["body"]
    assert final["status"] == "ABORTED"


def test_retry_after_is_honoured_within_bounds(api):
    """429 with Retry-After: 1 at the start: waited 5 s (proc_wrapper's floor), then on."""
    api.plan("POST", 429, headers={"Retry-After": "1"})
    began = time.monotonic()
    result = reported(api, "--", "true")
    assert result.returncode == 0, result.stderr
    posts = [r for r in api.requests if r["method"] == "POST"]
    assert len(posts) == 2
    assert posts[1]["time"] - posts[0]["time"] >= 4.9
    assert time.monotonic() - began < 30


def test_an_unusable_server_means_offline_unless_prevented(api, tmp_path):
    api.plan("POST", 500)
    result = reported(api, "--", "sh", "-c", "echo ran")
    assert result.returncode == 0, result.stderr
    assert "carrying on without reporting" in result.stdout
    assert len(api.requests) == 1              # nothing more once offline
    for status, code in ((500, 69), (403, 77)):
        marker = tmp_path / ("ran-%d" % status)
        api.plan("POST", status)
        result = reported(api, "--prevent-offline-execution", "--", "touch", str(marker))
        assert result.returncode == code, result.stderr
        assert not marker.exists()


def test_network_errors_are_retried_until_the_error_timeout(api):
    """A server that drops connections: retried every --api-retry-delay until
    --api-creation-timeout, then offline; the command still runs."""
    api.plan("POST", "drop", times=100)
    result = reported(api, "--api-retry-delay", "0.2", "--api-creation-timeout", "1", "--",
                      "sh", "-c", "echo ran")
    assert result.returncode == 0, result.stderr
    assert 3 <= len(api.requests) <= 7
    assert '"ran"' in result.stdout


def test_the_final_update_is_retried(api):
    api.plan("PATCH", 503, times=2)
    result = reported(api, "--api-heartbeat-interval", "0", "--api-retry-delay", "0.2", "--",
                      "true")
    assert result.returncode == 0, result.stderr
    finals = [r for r in api.requests if r["body"].get("status") == "SUCCEEDED"]
    assert len(finals) == 3


def test_a_failure_goes_to_the_webhook_and_rollbar(api):
    hook = ApiServer()
    try:
        result = run("--failure-webhook", hook.url + "/hook", "--rollbar-access-token",
                     "rb-token-1", "--rollbar-url", hook.url + "/api/1/item/",
                     "--task-name", "etl", "--", "sh", "-c", "exit 5")
        assert result.returncode == 5, result.stderr
        by_path = dict((r["path"], r) for r in hook.requests)
        summary = by_path["/hook"]["body"]
        assert (summary["status"], summary["exit_code"], summary["task"]) == ("FAILED", 5, "etl")
        item = by_path["/api/1/item/"]
        assert item["headers"]["X-Rollbar-Access-Token"] == "rb-token-1"
        assert item["body"]["data"]["level"] == "error"
        assert "FAILED" in item["body"]["data"]["body"]["message"]["body"]
        assert "rb-token-1" not in result.stdout + result.stderr
        assert api.requests == []               # no API key: nothing sent there
    finally:
        hook.stop()


def test_status_updates_without_a_server_are_logged(tmp_path):
    result = run("--status-updates", "--status-update-port", "0", "--log-format", "json",
                 "--", *(CHILD + ["0"]))
    assert result.returncode == 0, result.stderr
    said = [r["status_message"] for r in records(result.stdout)
            if r.get("event") == "status-update"]
    assert said == ["starting", "finishing"]


def test_bad_datagrams_are_dropped_not_fatal(api):
    """Garbage, an oversize message (two datagrams past the 64 KiB held for
    one: dropped) and split messages on the listener: the good ones count."""
    script = (
        "import socket, os, json\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "a = ('127.0.0.1', int(os.environ['PROCWRAP_STATUS_UPDATE_PORT']))\n"
        "for d in [b'\\xff\\xfe\\n', b'not json\\n', b'[1,2]\\n', b'x' * 40000, b'x' * 40000,"
        " b'{\"success_count\": 7,', b' \"last_status_message\": \"split\"}\\n',"
        " b'{\"error_count\": 1}\\n{\"skipped_count\": 2}\\n']:\n"
        "    s.sendto(d, a)\n"
        "import time; time.sleep(0.5)\n")
    result = reported(api, "--", PYTHON, "-c", script)
    assert result.returncode == 0, result.stderr
    merged = api.merged()
    assert (merged["success_count"], merged["error_count"], merged["skipped_count"]) == (7, 1, 2)
    assert merged["last_status_message"] == "split"
    [rejected] = [r for r in records(result.stdout) if r.get("event") == "status-rejected"]
    assert rejected["count"] == 5


def test_a_supervised_process_sends_status_updates(background, tmp_path):
    """statusUpdates: true: the child's StatusUpdater reaches the supervisor's
    status socket; /status and /metrics show what it said."""
    import http.client
    from conftest import write_config
    config = {"processes": [
        {"name": "etl", "command": CHILD + ["0", "300"], "statusUpdates": True},
        {"name": "other", "command": ["sleep", "300"]}]}
    bg = background("-c", write_config(tmp_path, config), "--http", "127.0.0.1:0")
    host, port = bg.expect_event("http")["address"].rsplit(":", 1)
    bg.expect('"waiting"')

    def get(path):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    wait_until(lambda: 'procwrap_status_count{kind="success",name="etl"} 3' in get("/metrics"),
               what="the success count in /metrics")
    status = dict((p["name"], p) for p in json.loads(get("/status"))["processes"])
    assert status["etl"]["statusUpdate"]["last_status_message"] == "finishing"
    assert status["etl"]["statusUpdate"]["expected_count"] == 3
    assert status["other"]["statusUpdate"] is None
    assert any('"status_message":"finishing"' in line for line in bg.out)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0


def supervised(api, tmp_path, processes, *args, **kwargs):
    from conftest import write_config
    return run("-c", write_config(tmp_path, {"processes": processes}), "--api-key", KEY,
               "--api-base-url", api.url, *args, **kwargs)


def test_a_supervisor_reports_each_run_of_a_process_that_names_a_task(api, tmp_path):
    result = supervised(api, tmp_path, [
        {"name": "job", "command": CHILD + ["0"], "taskName": "nightly", "statusUpdates": True,
         "restartPolicy": "OnFailure"},
        {"name": "plain", "command": ["true"], "restartPolicy": "Never"}])
    assert result.returncode == 0, result.stderr
    posts = [r for r in api.requests if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["body"]["task"] == {"name": "nightly"}
    merged = api.merged()
    assert merged["success_count"] == 3 and merged["status"] == "SUCCEEDED"
    assert KEY not in result.stdout + result.stderr


def test_a_supervised_run_refused_by_the_server_fails_its_start(api, tmp_path):
    api.plan("POST", 409, times=10)
    result = supervised(api, tmp_path, [
        {"name": "job", "command": ["touch", str(tmp_path / "ran")], "taskName": "nightly",
         "restartPolicy": "Never"}],
        "--api-conflict-timeout", "0.5", "--api-conflict-retry-delay", "0.2")
    assert result.returncode == 75, result.stderr
    assert not (tmp_path / "ran").exists()
    assert "job: the API server would not start another execution" in result.stdout


def test_a_supervised_run_the_server_stops_is_stopped_and_stays_so(api, tmp_path, background):
    from conftest import write_config
    config = {"processes": [
        {"name": "job", "command": ["sh", "-c", "echo up; exec sleep 300"],
         "taskName": "nightly"},
        {"name": "other", "command": ["sleep", "300"]}]}
    bg = background("-c", write_config(tmp_path, config), "--api-key", KEY, "--api-base-url",
                    api.url, "--api-heartbeat-interval", "0.3")
    bg.expect('"up"')
    api.plan("PATCH", 409)
    bg.expect("the API server stopped this execution (409); stopping it")
    api.wait_for(lambda r: r[-1]["body"].get("status") == "ABORTED", what="the final ABORTED")
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    assert len([r for r in api.requests if r["method"] == "POST"]) == 1    # not restarted


def test_a_supervisor_waits_for_the_final_update_at_shutdown(api, tmp_path, background):
    """TERM: the reported process stops; its final update (ABORTED), refused
    twice with 503, is retried, and procwrap exits only after it went."""
    from conftest import write_config
    config = {"processes": [{"name": "job", "command": ["sh", "-c", "echo up; exec sleep 300"],
                             "taskName": "nightly"}]}
    bg = background("-c", write_config(tmp_path, config), "--api-key", KEY, "--api-base-url",
                    api.url, "--api-retry-delay", "0.3", "--api-heartbeat-interval", "0")
    bg.expect('"up"')
    api.plan("PATCH", 503, times=2)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 0
    finals = [r for r in api.requests if r["body"] and r["body"].get("status") == "ABORTED"]
    assert len(finals) == 3                   # two refused, the third taken
    assert finals[-1]["time"] - finals[0]["time"] >= 0.5


def test_a_slow_server_times_out_and_a_term_meanwhile_is_heard(api, tmp_path, background):
    """Answers slower than --api-request-timeout are failures, retried until
    the creation deadline, then offline; and a TERM while the start is
    pending ends procwrap at once (143), the command never started."""
    api.plan("POST", 201, times=10, delay=3, body={"uuid": "late"})
    began = time.monotonic()
    result = reported(api, "--api-request-timeout", "0.5", "--api-retry-delay", "0.2",
                      "--api-creation-timeout", "1", "--", "sh", "-c", "echo ran")
    assert result.returncode == 0, result.stderr
    assert '"ran"' in result.stdout and "carrying on without reporting" in result.stdout
    assert time.monotonic() - began < 15
    marker = tmp_path / "ran"
    api.plan("POST", 201, times=1, delay=20, body={"uuid": "late"})
    before = len(api.requests)
    bg = background("--api-key", KEY, "--api-base-url", api.url, "--task-name", "etl",
                    "--log-format", "json", "--", "touch", str(marker))
    api.wait_for(lambda r: len(r) > before, what="the slow start")
    began = time.monotonic()
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 143
    assert time.monotonic() - began < 5
    assert not marker.exists()


def test_proc_wrapper_s_own_status_updater_works_unchanged(api):
    """The child uses cloudreactor-procwrapper's StatusUpdater (the peer's
    client, installed by the README's test command): it finds procwrap's
    listener through the variables procwrap sets for it."""
    import subprocess
    try:
        subprocess.check_call([PYTHON, "-c", "import proc_wrapper"], stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        if os.environ.get("CI"):
            pytest.fail("cloudreactor-procwrapper is not installed; the README's command does")
        pytest.skip("cloudreactor-procwrapper is not installed (pip install "
                    "cloudreactor-procwrapper)")
    child = ("import os\n"
             "for name in [n for n in os.environ if n.startswith('PROCWRAP_')]:\n"
             "    del os.environ[name]\n"          # proc_wrapper's variables only
             "from proc_wrapper import StatusUpdater\n"
             "u = StatusUpdater()\n"
             "u.send_update(expected_count=2, last_status_message='peer says hi')\n"
             "u.send_update(success_count=2, extra_props={'peer': True})\n"
             "import time; time.sleep(0.3)\n")
    result = reported(api, "--", PYTHON, "-c", child)
    assert result.returncode == 0, result.stderr
    merged = api.merged()
    assert (merged["expected_count"], merged["success_count"]) == (2, 2)
    assert merged["last_status_message"] == "peer says hi"
    assert merged["other_runtime_metadata"] == {"peer": True}
