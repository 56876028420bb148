"""VAULT: locations against a server that answers Vault's documented HTTP API.

No Vault server is installable here, so test_fixtures/vault_server.py
plays one (auth, KV v1/v2, database credentials with leases, renewals).
"""
import json
import signal
import urllib.request

import pytest

from conftest import (PRINT_ENV, PYTHON, WAIT, clean_environ, environ_of, events, fixture, run,
                      self_signed_cert, write_config)

DATA = {"kv/app": {"api_key": "kv1-key", "region": "eu"},
        "secret/app": {"password": "kv2-password", "user": "app"}}
for n in range(5):
    DATA["secret/many%d" % n] = dict(("key%d" % k, "v%d-%d" % (n, k)) for k in range(10))


@pytest.fixture
def vault(tmp_path, server):
    """Start the fake Vault with options; returns (address, requests())."""
    def start(*options):
        data = tmp_path / "vault-data.json"
        data.write_text(json.dumps(DATA))
        _, line = server([PYTHON, fixture("vault_server.py"), str(data)] + list(options),
                         "ready ", stderr=None)
        address = "http://127.0.0.1:%d" % int(line.split()[1])

        def requests():
            with urllib.request.urlopen(address + "/_test/requests", timeout=WAIT) as answer:
                return [r for r in json.loads(answer.read().decode())
                        if not r.startswith("GET /_test/")]
        return address, requests
    return start


def test_kv_v1_and_v2_with_a_token(vault):
    address, requests = vault()
    env = clean_environ(VAULT_ADDR=address, VAULT_TOKEN="root-token", VAULT_NAMESPACE="team/",
                        KEY_FOR_PROCWRAP_TO_RESOLVE="VAULT:kv/app|JP:$.api_key",
                        PASSWORD_FOR_PROCWRAP_TO_RESOLVE="VAULT:secret/data/app|JP:$.password",
                        ALL_FOR_PROCWRAP_TO_RESOLVE="VAULT:secret/data/app")
    result = run("--", *PRINT_ENV + ["KEY", "PASSWORD", "ALL", "VAULT_TOKEN", "VAULT_ADDR"],
                 env=env)
    assert result.returncode == 0, result.stderr
    # procwrap's own Vault credentials stay with procwrap.
    assert result.stdout == ('kv1-key kv2-password {"password":"kv2-password","user":"app"} '
                             '<unset> <unset>\n')
    # Each document once; then the token's TTL, to know when to renew it.
    assert sorted(requests()) == ["GET /v1/auth/token/lookup-self root-token team/",
                                  "GET /v1/kv/app root-token team/",
                                  "GET /v1/secret/data/app root-token team/"]
    passed = run("--env-pass", "PATH,VAULT_TOKEN", "--", *PRINT_ENV + ["VAULT_TOKEN", "HOME"],
                 env=env)
    assert passed.stdout == "root-token <unset>\n"


def test_approle_login(vault):
    address, requests = vault()
    env = clean_environ(VAULT_ADDR=address, VAULT_ROLE_ID="app-role",
                        VAULT_SECRET_ID="app-secret",
                        KEY_FOR_PROCWRAP_TO_RESOLVE="VAULT:kv/app|JP:$.api_key")
    result = run("--", *PRINT_ENV + ["KEY", "VAULT_SECRET_ID"], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kv1-key <unset>\n"
    assert requests() == ["POST /v1/auth/approle/login None None",
                          "GET /v1/kv/app approle-token-1 None"]


@pytest.mark.parametrize("environ, reason", [
    ({"VAULT_TOKEN": "wrong"}, "Vault answered 403 to GET /v1/kv/app: permission denied; "
                               "invalid token"),
    ({"VAULT_TOKEN": "root-token", "PATH_PART": "nope"},
     "Vault answered 404 to GET /v1/kv/nope: Not Found"),
    ({"VAULT_ROLE_ID": "app-role", "VAULT_SECRET_ID": "bad"},
     "Vault answered 400 to POST /v1/auth/approle/login: invalid role or secret ID"),
    ({}, "no Vault token: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID to log in "
         "with AppRole"),
])
def test_vault_failures_name_the_variable_and_the_reason(vault, environ, reason):
    address, _ = vault()
    path = environ.pop("PATH_PART", "app")
    env = clean_environ(VAULT_ADDR=address, KEY_FOR_PROCWRAP_TO_RESOLVE="VAULT:kv/" + path,
                        **environ)
    result = run("--", "true", env=env)
    assert result.returncode == 69
    assert result.stderr == ("procwrap: error: KEY_FOR_PROCWRAP_TO_RESOLVE: cannot resolve "
                             "VAULT:kv/%s: %s\n" % (path, reason))


def test_unreachable_vault(tmp_path):
    env = clean_environ(VAULT_ADDR="http://127.0.0.1:9", VAULT_TOKEN="t",
                        KEY_FOR_PROCWRAP_TO_RESOLVE="VAULT:kv/app")
    result = run("--", "true", env=env)
    assert result.returncode == 69
    assert result.stderr.startswith("procwrap: error: KEY_FOR_PROCWRAP_TO_RESOLVE: cannot "
                                    "resolve VAULT:kv/app: cannot reach Vault at "
                                    "http://127.0.0.1:9: ")


def test_fifty_variables_from_five_paths_are_five_requests(vault, tmp_path):
    address, requests = vault()
    env = [{"name": "V%d_%d" % (n, k),
            "valueFrom": {"location": "VAULT:secret/data/many%d|JP:$.key%d" % (n, k)}}
           for n in range(5) for k in range(10)]
    config = write_config(tmp_path, {"init": [{"name": "show", "command": PRINT_ENV + [
        "V0_0", "V4_9"], "env": env}]})
    result = run("-c", config, env=clean_environ(VAULT_ADDR=address, VAULT_TOKEN="root-token"))
    assert result.returncode == 0, result.stderr
    assert [r["message"] for r in map(json.loads, result.stdout.splitlines())
            if r.get("process") == "show"] == ["v0-0 v4-9"]
    reads = [r for r in requests() if r.startswith("GET /v1/secret/")]
    assert len(reads) == 5
    assert events(result.stdout, "secrets-resolved")[0]["fetches"] == 5


def _two_processes(tmp_path):
    location = "VAULT:database/creds/app"
    return write_config(tmp_path, {"processes": [
        {"name": name, "command": ["sleep", "60"], "env": [
            {"name": "DB_USER", "valueFrom": {"location": location + "|JP:$.username"}},
            {"name": "DB_PASS", "valueFrom": {"location": location + "|JP:$.password"}}]}
        for name in ("web", "worker")]})


def test_dynamic_credentials_are_shared_and_their_lease_renewed(vault, tmp_path, background):
    address, requests = vault("--lease-ttl", "3")
    procwrap = background("-c", _two_processes(tmp_path), env=clean_environ(
        VAULT_ADDR=address, VAULT_TOKEN="root-token"))
    web = procwrap.expect_event("started", "web")["pid"]
    worker = procwrap.expect_event("started", "worker")["pid"]
    assert environ_of(web)["DB_USER"] == environ_of(worker)["DB_USER"] == "v-app-1"
    renewed = procwrap.expect_event("vault-renewed", count=2)
    assert renewed["lease"] == "database/creds/app/lease-1" and renewed["ttl"] == 3
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    made = [r for r in requests() if r.startswith("GET /v1/database/")]
    assert made == ["GET /v1/database/creds/app root-token None"]
    assert "db-pass-1" not in procwrap.stdout + procwrap.stderr


def test_approle_token_is_renewed(vault, tmp_path, background):
    address, requests = vault("--token-ttl", "3")
    value = {"location": "VAULT:kv/app|JP:$.region"}
    config = write_config(tmp_path, {"processes": [{"name": "app", "command": ["sleep", "60"],
                                                    "env": [{"name": "K", "valueFrom": value}]}]})
    procwrap = background("-c", config, env=clean_environ(
        VAULT_ADDR=address, VAULT_ROLE_ID="app-role", VAULT_SECRET_ID="app-secret"))
    assert procwrap.expect_event("vault-renewed")["lease"] == "token"
    procwrap.signal(signal.SIGTERM)
    assert procwrap.wait() == 0
    assert "POST /v1/auth/token/renew-self approle-token-1 None" in requests()


@pytest.mark.parametrize("policy", ["stop", "continue"])
def test_renewal_that_finally_fails_follows_the_policy(vault, tmp_path, background, policy):
    address, _ = vault("--lease-ttl", "3", "--fail-renew-after", "0")
    procwrap = background("-c", _two_processes(tmp_path), "--vault-renew-failure", policy,
                          env=clean_environ(VAULT_ADDR=address, VAULT_TOKEN="root-token"))
    expired = procwrap.expect_event("vault-expired")
    assert expired["lease"] == "database/creds/app/lease-1"
    assert "Vault answered 503 to POST /v1/sys/leases/renew: Vault is sealed" in \
        expired["message"]
    if policy == "stop":
        assert procwrap.wait() == 69
    else:
        procwrap.signal(signal.SIGTERM)
        assert procwrap.wait() == 0
        assert not events(procwrap.stdout, "shutdown")[0]["message"].startswith(
            "shutting down (vault")


def test_aws_credentials_engine_and_tls_with_vault_cacert(vault, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    address, requests = vault("--tls", cert, key)
    address = address.replace("http:", "https:")
    env = clean_environ(VAULT_ADDR=address, VAULT_TOKEN="root-token",
                        AWS_ACCESS_KEY_ID_FOR_PROCWRAP_TO_RESOLVE="VAULT:aws/creds/deploy"
                                                                  "|JP:$.access_key")
    untrusted = run("--", "true", env=env)
    assert untrusted.returncode == 69
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    trusted = run("--", *PRINT_ENV + ["AWS_ACCESS_KEY_ID"], env=dict(env, VAULT_CACERT=cert))
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout == "AKIAFAKE1\n"
    skipped = run("--", "true", env=dict(env, VAULT_SKIP_VERIFY="true"))
    assert skipped.returncode == 0, skipped.stderr
