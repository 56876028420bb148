"""Secrets through the CLI: location strings resolved into children's environments."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import (PRINT_ENV, PROCWRAP, PYTHON, clean_environ, cmdline_of, environ_of, events,
                      lines_of, run, write_config)

CANARY = "canary-7f3a9c-secret"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "db.json"
    path.write_text(json.dumps({"db": {"user": "app", "password": CANARY}}))
    return str(path)


def test_wrap_resolves_variables_and_hides_the_requests(secret_file):
    env = clean_environ(DB_PASSWORD_FOR_PROCWRAP_TO_RESOLVE=secret_file + "|JP:$.db.password",
                        DB_USER_FOR_PROC_WRAPPER_TO_RESOLVE=secret_file + "|JP:$.db.user")
    result = run("--log-format", "json", "--", *PRINT_ENV + [
        "DB_PASSWORD", "DB_USER", "DB_PASSWORD_FOR_PROCWRAP_TO_RESOLVE",
        "DB_USER_FOR_PROC_WRAPPER_TO_RESOLVE"], env=env)
    assert result.returncode == 0, result.stderr
    name = os.path.basename(PYTHON)
    assert lines_of(result.stdout, name) == [CANARY + " app <unset> <unset>"]
    resolved = events(result.stdout, "secrets-resolved")
    assert resolved[0]["names"] == ["DB_PASSWORD", "DB_USER"]
    assert resolved[0]["fetches"] == 1       # one document, read once for both


def test_env_locations_merge_in_order(tmp_path):
    (tmp_path / "base.env").write_text("A=from-base\nB=from-base\n")
    (tmp_path / "override.json").write_text('{"B": "from-json", "C": {"nested": true}}')
    result = run("--env-locations", str(tmp_path / "base.env"),
                 "--env-locations", str(tmp_path / "override.json"),
                 "--", *PRINT_ENV + ["A", "B", "C"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'from-base from-json {"nested":true}\n'
    twin = run("--", *PRINT_ENV + ["A", "B"], env=clean_environ(
        PROCWRAP_ENV_LOCATIONS="%s,%s" % (tmp_path / "base.env", tmp_path / "override.json")))
    assert twin.stdout == "from-base from-json\n"


def test_merge_strategy_applies_to_env_locations(tmp_path):
    (tmp_path / "a.json").write_text('{"CONF": {"a": 1, "list": [1]}}')
    (tmp_path / "b.json").write_text('{"CONF": {"b": 2, "list": [2]}}')
    locations = ["--env-locations", str(tmp_path / "a.json"),
                 "--env-locations", str(tmp_path / "b.json")]
    shown = {}
    for strategy in ("SHALLOW", "ADDITIVE"):
        result = run(*locations + ["--merge-strategy", strategy, "--"] + PRINT_ENV + ["CONF"])
        shown[strategy] = result.stdout
    assert shown == {"SHALLOW": '{"b":2,"list":[2]}\n',
                     "ADDITIVE": '{"a":1,"list":[1,2],"b":2}\n'}
    bad = run("--merge-strategy", "DEEP", "--", "true")
    assert bad.returncode == 2
    assert bad.stderr == ("procwrap: error: --merge-strategy: expected SHALLOW, REPLACE, "
                          "ADDITIVE, TYPESAFE_REPLACE or TYPESAFE_ADDITIVE, got 'DEEP'\n")


def test_unfetchable_location_stops_before_the_child_starts(tmp_path):
    marker = tmp_path / "ran"
    env = clean_environ(API_KEY_FOR_PROCWRAP_TO_RESOLVE="/no/such/file.json|JP:$.key")
    result = run("--", "touch", str(marker), env=env)
    assert result.returncode == 69
    assert result.stderr == ("procwrap: error: API_KEY_FOR_PROCWRAP_TO_RESOLVE: cannot resolve "
                             "FILE:/no/such/file.json|JP:$.key: cannot read '/no/such/file.json': "
                             "No such file or directory; fix the path\n")
    assert not marker.exists()


def test_malformed_location_is_a_usage_error():
    result = run("--", "true", env=clean_environ(X_FOR_PROCWRAP_TO_RESOLVE="VAULTT:kv/app"))
    assert result.returncode == 2
    assert result.stderr.startswith("procwrap: error: X_FOR_PROCWRAP_TO_RESOLVE: unknown "
                                    "provider 'VAULTT'; did you mean 'VAULT'?")
    bad_flag = run("--env-locations", "PLAINN:x", "--", "true")
    assert bad_flag.returncode == 2 and "--env-locations: unknown provider 'PLAINN'" in \
        bad_flag.stderr


def test_allow_unresolved_starts_without_the_variable(secret_file):
    env = clean_environ(GOOD_FOR_PROCWRAP_TO_RESOLVE=secret_file + "|JP:$.db.user",
                        GONE_FOR_PROCWRAP_TO_RESOLVE="ENV:NOT_SET_ANYWHERE")
    result = run("--allow-unresolved", "--", *PRINT_ENV + ["GOOD", "GONE"], env=env)
    assert result.returncode == 0
    assert result.stdout == "app <unset>\n"
    assert result.stderr == ("procwrap: GONE: left out (--allow-unresolved): "
                             "GONE_FOR_PROCWRAP_TO_RESOLVE: cannot resolve ENV:NOT_SET_ANYWHERE: "
                             "procwrap's environment has no variable NOT_SET_ANYWHERE; "
                             "set it or fix the name\n")


@pytest.mark.parametrize("name", ["resolved.env", "resolved.json"])
def test_env_output_file_exists_only_while_procwrap_runs(tmp_path, secret_file, name):
    output = tmp_path / name
    reader = ("import os, stat, sys; p = sys.argv[1]; "
              "print(oct(stat.S_IMODE(os.stat(p).st_mode))); print(open(p).read(), end='')")
    env = clean_environ(DB_PASSWORD_FOR_PROCWRAP_TO_RESOLVE=secret_file + "|JP:$.db.password",
                        NOT_RESOLVED="plain")
    result = run("--env-output-file", str(output), "--", PYTHON, "-c", reader, str(output),
                 env=env)
    assert result.returncode == 0, result.stderr
    mode, content = result.stdout.split("\n", 1)
    assert mode == "0o600"
    if name.endswith(".json"):
        assert json.loads(content) == {"DB_PASSWORD": CANARY}
    else:
        marker, content = content.split("\n", 1)
        assert marker.startswith("# written by procwrap (pid ")
        assert content == "DB_PASSWORD='%s'\n" % CANARY
    assert not output.exists()


def test_secrets_ttl_resolves_again_before_a_retry(tmp_path):
    # The child fails while it sees v1 and rotates the secret to v2; only a
    # retry that resolves again sees v2 and succeeds.
    secret = tmp_path / "token.txt"
    script = ("import os, sys; v = os.environ['TOKEN']; print(v); "
              "open(sys.argv[1], 'w').write('v2'); sys.exit(0 if v == 'v2' else 1)")
    env = clean_environ(TOKEN_FOR_PROCWRAP_TO_RESOLVE=str(secret))
    for ttl, expect_status, expect_out in ((None, 1, "v1\nv1\n"), ("0", 0, "v1\nv2\n")):
        secret.write_text("v1")
        args = ["--retries", "1", "--retry-delay", "0"]
        if ttl is not None:
            args += ["--secrets-ttl", ttl]
        result = run(*args + ["--", PYTHON, "-c", script, str(secret)], env=env)
        assert (result.returncode, result.stdout) == (expect_status, expect_out), result.stderr


def _supervise_config(tmp_path, secret_file, args=("30",)):
    (tmp_path / "vars.json").write_text('{"USER": "app", "HOST": "db"}')
    return write_config(tmp_path, {"processes": [{
        "name": "app",
        "command": ["sleep"] + list(args),
        "env": [
            {"name": "DB_PASSWORD", "valueFrom": {"location": secret_file + "|JP:$.db.password"}},
            {"name": "DB_URL", "valueFrom": {
                "template": "postgres://{{ .DB_USER }}:{{ .DB_PASSWORD }}@db/app"}},
            {"name": "GREETING", "value": "hello $(DB_USER)"},
        ],
        "envFrom": [{"location": str(tmp_path / "vars.json"), "prefix": "DB_"}],
    }]})


def test_canary_reaches_the_child_and_nothing_else(tmp_path, secret_file, background):
    config = _supervise_config(tmp_path, secret_file)
    procwrap = background("-c", config)
    started = procwrap.expect_event("started", "app")
    child = started["pid"]
    env = environ_of(child)
    assert env["DB_PASSWORD"] == CANARY
    assert env["DB_USER"] == "app"
    assert env["DB_URL"] == "postgres://app:%s@db/app" % CANARY
    assert env["GREETING"] == "hello app"
    for pid in (procwrap.pid, child):
        assert CANARY not in cmdline_of(pid)
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert CANARY not in procwrap.stdout and CANARY not in procwrap.stderr
    assert events(procwrap.stdout, "secrets-resolved")[0]["fetches"] == 2


def test_a_procwrap_record_that_would_hold_a_secret_shows_the_placeholder(tmp_path,
                                                                          secret_file):
    # A contrived command whose name is the secret: the exec error names
    # the command, and must not name the secret.
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": ["/no/such/dir/" + CANARY], "restartPolicy": "Never",
        "env": [{"name": "P", "valueFrom": {"location": secret_file + "|JP:$.db.password"}}]}]})
    result = run("-c", config)
    assert result.returncode == 127
    assert CANARY not in result.stdout + result.stderr
    assert "/no/such/dir/[secret]" in result.stdout
    shown = run("-c", config, "--log-secrets")
    assert "--log-secrets: resolved secret values will be written" in shown.stdout
    assert "P=" + CANARY in shown.stdout


def test_secret_in_argv_is_refused(tmp_path, secret_file):
    config = _supervise_config(tmp_path, secret_file, args=["--password=$(DB_PASSWORD)"])
    result = run("-c", config)
    assert result.returncode == 2
    assert result.stderr == ("procwrap: error: processes[0].command: $(DB_PASSWORD) would put a "
                             "resolved secret on the command line, where /proc/PID/cmdline shows "
                             "it to every user; let the program read $DB_PASSWORD from its "
                             "environment\n")


def test_check_parses_locations_without_fetching(tmp_path):
    good = write_config(tmp_path, {"processes": [{"name": "a", "command": "true", "env": [
        {"name": "X", "valueFrom": {"location": "/not/fetched/in/check.json|JP:$.x"}}]}]})
    assert run("check", "-c", good).returncode == 0
    bad = write_config(tmp_path, {"processes": [{"name": "a", "command": "true", "env": [
        {"name": "X", "valueFrom": {"location": "AWS_SMM:db|JP:$.x"}},
        {"name": "Y", "valueFrom": {"location": "x", "template": "y"}}],
        "envFrom": [{"location": "FILE:", "prefx": "A_"}]}]}, "bad.json")
    result = run("check", "-c", bad)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "procwrap: error: processes[0].envFrom[0].prefx: unknown field; did you mean 'prefix'?",
        "procwrap: error: processes[0].envFrom[0].location: FILE location has no address; "
        "write FILE:ADDRESS",
        "procwrap: error: processes[0].env[1]: give value, valueFrom.location or "
        "valueFrom.template; exactly one",
        "procwrap: error: processes[0].env[0].valueFrom.location: unknown provider 'AWS_SMM'; "
        "did you mean 'AWS_SM'?; expected one of FILE, ENV, PLAIN, CONFIG, AWS_SM, AWS_S3, "
        "AWS_SSM, VAULT",
    ]


def test_missing_boto3_names_the_package(tmp_path):
    # python -S: no site-packages, so no boto3, as on a minimal image.
    result = subprocess.run(
        [sys.executable, "-S", PROCWRAP, "--", "true"],
        env=clean_environ(DB_FOR_PROCWRAP_TO_RESOLVE="arn:aws:secretsmanager:us-east-1:1:"
                          "secret:db|JP:$.password"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        "procwrap: error: AWS_SM:arn:aws:secretsmanager:us-east-1:1:secret:db|JP:$.password: "
        "needs the Python package 'boto3' (for AWS_* locations); pip install boto3\n")


def test_supervisor_restart_after_the_ttl_resolves_again(tmp_path):
    secret = tmp_path / "token.txt"
    secret.write_text("v1")
    script = ("import os, sys; v = os.environ['TOKEN']; print(v); "
              "open(sys.argv[1], 'w').write('v2'); sys.exit(0 if v == 'v2' else 1)")
    config = write_config(tmp_path, {"processes": [{
        "name": "app", "command": [PYTHON, "-c", script, str(secret)],
        "restartPolicy": "OnFailure", "backoff": {"initial": 0},
        "env": [{"name": "TOKEN", "valueFrom": {"location": str(secret)}}]}]})
    result = run("-c", config, "--secrets-ttl", "0")
    assert result.returncode == 0, result.stderr
    assert lines_of(result.stdout, "app") == ["v1", "v2"]
    assert events(result.stdout, "secrets-refreshed")[0]["name"] == "app"


@pytest.mark.parametrize("how", ["env", "envFile"])
def test_a_variable_built_from_a_secret_is_refused_in_argv_too(tmp_path, secret_file, how):
    """Before: URL holding $(PASSWORD) passed, and the password reached /proc/PID/cmdline."""
    password = {"name": "PASSWORD", "valueFrom": {"location": secret_file + "|JP:$.db.password"}}
    entry = {"name": "app", "command": ["psql", "$(URL)"], "restartPolicy": "Never"}
    if how == "env":
        entry["env"] = [password, {"name": "URL", "value": "postgres://app:$(PASSWORD)@db/app"}]
    else:
        (tmp_path / "url.env").write_text("URL=postgres://app:${PASSWORD}@db/app\n")
        entry["env"] = [password]
        entry["envFrom"] = [{"location": str(tmp_path / "url.env")}]
    result = run("-c", write_config(tmp_path, {"processes": [entry]}))
    assert result.returncode == 2
    assert result.stderr == ("procwrap: error: processes[0].command: $(URL) would put a "
                             "resolved secret on the command line, where /proc/PID/cmdline shows "
                             "it to every user; let the program read $URL from its "
                             "environment\n")
    assert CANARY not in result.stdout + result.stderr


def test_suffixed_keys_inside_env_locations_are_resolved(tmp_path, secret_file):
    """As proc_wrapper does; before, the child got DB_PASSWORD_FOR_PROC_WRAPPER_TO_RESOLVE raw."""
    document = tmp_path / "app.env"
    document.write_text("PLAIN=1\nDB_PASSWORD_FOR_PROC_WRAPPER_TO_RESOLVE=%s|JP:$.db.password\n"
                        "DB_USER_FOR_PROCWRAP_TO_RESOLVE=%s|JP:$.db.user\n"
                        % (secret_file, secret_file))
    result = run("--env-locations", str(document), "--", *PRINT_ENV + [
        "PLAIN", "DB_PASSWORD", "DB_USER", "DB_PASSWORD_FOR_PROC_WRAPPER_TO_RESOLVE",
        "DB_USER_FOR_PROCWRAP_TO_RESOLVE"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 %s app <unset> <unset>\n" % CANARY


def test_redaction_leaves_process_names_alone(tmp_path):
    """A password that happens to be 'postgres' must not turn the process named postgres
    into [secret] in every record."""
    config = write_config(tmp_path, {"processes": [
        {"name": "postgres", "command": ["true"], "restartPolicy": "Never",
         "env": [{"name": "PGPASSWORD", "valueFrom": {"location": "PLAIN:postgres"}},
                 {"name": "OTHER", "valueFrom": {"location": "PLAIN:" + CANARY}}]},
        {"name": "web", "command": ["/no/such/" + CANARY], "restartPolicy": "Never"}]})
    result = run("-c", config)
    started = events(result.stdout, "started")
    assert [(e["name"], e["message"].split(" (")[0]) for e in started] == [
        ("postgres", "postgres started")]
    assert sorted(e["name"] for e in events(result.stdout, "exited")) == ["postgres", "web"]
    assert CANARY not in result.stdout
