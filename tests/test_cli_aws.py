"""AWS_SM, AWS_S3 and AWS_SSM locations against moto in server mode on 127.0.0.1.

The secrets, objects and parameters are made with boto3 against the same
server; procwrap finds it through AWS_ENDPOINT_URL, as the AWS SDKs do.
"""
import base64
import json
import subprocess

import boto3        # the README's test command installs boto3 and moto[server]
import pytest

from conftest import PYTHON, WAIT, clean_environ, events, print_env, read_line, run

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
               "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
PRINT_ENV = print_env("|")


@pytest.fixture(scope="module")
def aws():
    """A moto server with a few secrets, objects and parameters; yields its env and ARNs."""
    server = subprocess.Popen([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              universal_newlines=True)
    try:
        line = read_line(server.stderr, "Running on http://")
        endpoint = line.split("Running on ", 1)[1].strip()
        options = dict(endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing-secret")
        sm = boto3.client("secretsmanager", **options)
        made = {}
        made["db"] = sm.create_secret(Name="app/db", SecretString=json.dumps(
            {"username": "app", "password": "sm-password"}))["ARN"]
        made["blob"] = sm.create_secret(Name="app/blob", SecretBinary=b"\x00\xffbinary")["ARN"]
        made["rotated"] = sm.create_secret(Name="app/rotated", SecretString="old")["ARN"]
        sm.put_secret_value(SecretId="app/rotated", SecretString="new")
        s3 = boto3.client("s3", **options)
        s3.create_bucket(Bucket="config")
        s3.put_object(Bucket="config", Key="app/settings.json", Body=b'{"feature": {"on": true}}')
        s3.put_object(Bucket="config", Key="app/settings", Body=b"mode: yaml\n",
                      ContentType="application/x-yaml")
        s3.put_object(Bucket="config", Key="app/vars.env", Body=b"FROM_S3=yes\nLEVEL=3\n")
        ssm = boto3.client("ssm", **options)
        ssm.put_parameter(Name="/app/api-key", Value="ssm-key-1", Type="SecureString")
        ssm.put_parameter(Name="/app/api-key", Value="ssm-key-2", Type="SecureString",
                          Overwrite=True)
        ssm.put_parameter(Name="/app/hosts", Value="a,b,c", Type="StringList")
        ssm.put_parameter(Name="plain-name", Value="plain", Type="String")
        env = dict(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
        yield env, made
    finally:
        server.kill()
        server.wait(WAIT)


def resolve(aws, **locations):
    """Run a child with NAME_FOR_PROCWRAP_TO_RESOLVE=LOCATION; its view of the names."""
    env, _ = aws
    names = sorted(locations)
    environ = clean_environ(**env)
    environ.update(("%s_FOR_PROCWRAP_TO_RESOLVE" % n, v) for n, v in locations.items())
    result = run("--log-format", "json", "--", *PRINT_ENV + names, env=environ)
    assert result.returncode == 0, result.stderr
    line = [r for r in map(json.loads, result.stdout.splitlines())
            if r.get("process") != "procwrap"][0]["message"]
    return dict(zip(names, line.split("|"))), result


def test_secrets_manager(aws):
    _, made = aws
    arn = made["db"]
    partial = arn.rsplit("-", 1)[0]        # without the 6-character suffix
    values, result = resolve(
        aws, BY_ARN=arn + "|JP:$.password", BY_PARTIAL_ARN=partial + "|JP:$.username",
        BY_NAME="AWS_SM:app/db|JP:$.username", WHOLE="AWS_SM:app/db",
        BLOB=made["blob"], CURRENT="AWS_SM:app/rotated",
        PREVIOUS="AWS_SM:app/rotated:AWSPREVIOUS")
    assert values == {"BY_ARN": "sm-password", "BY_PARTIAL_ARN": "app", "BY_NAME": "app",
                      "WHOLE": '{"username": "app", "password": "sm-password"}',
                      "BLOB": base64.b64encode(b"\x00\xffbinary").decode(),
                      "CURRENT": "new", "PREVIOUS": "old"}
    assert events(result.stdout, "secrets-resolved")[0]["fetches"] == 6


def test_s3_objects_with_formats_from_key_and_content_type(aws):
    values, _ = resolve(aws, ON="arn:aws:s3:::config/app/settings.json|JP:$.feature.on",
                        MODE="AWS_S3:config/app/settings|JP:$.mode")
    assert values == {"ON": "TRUE", "MODE": "yaml"}
    env, _ = aws
    result = run("--env-locations", "arn:aws:s3:::config/app/vars.env", "--",
                 *PRINT_ENV + ["FROM_S3", "LEVEL"], env=clean_environ(**env))
    assert result.stdout == "yes|3\n"


def test_parameter_store(aws):
    values, _ = resolve(aws, KEY="ssm:/app/api-key", FIRST="ssm:/app/api-key:1",
                        HOSTS="AWS_SSM:/app/hosts", HOST="AWS_SSM:/app/hosts|JP:$[1]",
                        BY_ARN="arn:aws:ssm:%s:123456789012:parameter/app/api-key" % REGION,
                        PLAIN="arn:aws:ssm:%s:123456789012:parameter/plain-name" % REGION)
    assert values == {"KEY": "ssm-key-2", "FIRST": "ssm-key-1", "HOSTS": '["a","b","c"]',
                      "HOST": "b", "BY_ARN": "ssm-key-2", "PLAIN": "plain"}


def test_aws_credentials_stay_with_procwrap_unless_passed_by_name(aws):
    env, _ = aws
    environ = clean_environ(KEY_FOR_PROCWRAP_TO_RESOLVE="ssm:plain-name", **env)
    shown = PRINT_ENV + ["KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    result = run("--log-format", "json", "--", *shown, env=environ)
    assert '"plain|<unset>|<unset>"' in result.stdout
    assert any(e["message"].startswith("not passing AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                                       "to children") for e in events(result.stdout, "secrets"))
    passed = run("--env-pass", "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY", "--", *shown,
                 env=environ)
    assert passed.stdout == "plain|testing|testing-secret\n"


def test_missing_secret_exits_69_naming_it(aws):
    env, _ = aws
    result = run("--", "true", env=clean_environ(
        DB_FOR_PROCWRAP_TO_RESOLVE="AWS_SM:app/missing|JP:$.password", **env))
    assert result.returncode == 69
    assert result.stderr.startswith(
        "procwrap: error: DB_FOR_PROCWRAP_TO_RESOLVE: cannot resolve "
        "AWS_SM:app/missing|JP:$.password: An error occurred (ResourceNotFoundException) when "
        "calling the GetSecretValue operation")
    assert result.stderr.endswith("; check the name, the region (AWS_REGION) and the "
                                  "credentials\n")
