"""Location strings, the built-in JSON Path subset and env projection (tables in test_fixtures/)."""
import os
import subprocess

import pytest

import procwrap
from conftest import PYTHON, ROOT, clean_environ, load_table

LOCATIONS = load_table("location_cases.json")
JSONPATHS = load_table("jsonpath_cases.json")


@pytest.mark.parametrize("case", LOCATIONS, ids=[c["text"][:40] for c in LOCATIONS])
def test_parse_location(case):
    if "error" in case:
        with pytest.raises(procwrap.ConfigError) as caught:
            procwrap._parse_location(case["text"], "DB_PASSWORD_FOR_PROCWRAP_TO_RESOLVE")
        message = str(caught.value)
        assert message.startswith("DB_PASSWORD_FOR_PROCWRAP_TO_RESOLVE: ")
        assert case["error"] in message
    else:
        assert procwrap._parse_location(case["text"], "x") == procwrap._Location(*case["expect"])


@pytest.mark.parametrize("case", JSONPATHS, ids=[c["path"] for c in JSONPATHS])
def test_builtin_jsonpath(case):
    assert procwrap._jsonpath(case["doc"], case["path"], "x") == case["expect"]


def test_jsonpath_beyond_the_subset_names_jsonpath_ng():
    code = ("import sys; sys.modules['jsonpath_ng'] = None; sys.modules['jsonpath_ng.ext'] = None\n"
            "import procwrap\n"
            "try:\n    procwrap._jsonpath({'a': [1]}, '$..a', 'X_FOR_PROCWRAP_TO_RESOLVE')\n"
            "except procwrap.ConfigError as error:\n    print(error)\n")
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                         universal_newlines=True, env=clean_environ()).stdout
    assert out.startswith("X_FOR_PROCWRAP_TO_RESOLVE: needs the Python package 'jsonpath-ng'")
    assert out.rstrip().endswith("pip install jsonpath-ng")


@pytest.mark.parametrize("value, text", [
    ("s", "s"), (None, ""), (True, "TRUE"), (False, "FALSE"), (3, "3"), (1.5, "1.5"),
    ({"a": [1, "é"]}, '{"a":[1,"é"]}'), ([1, 2], "[1,2]")])
def test_env_string(value, text):
    assert procwrap._env_string(value) == text


MERGE_INPUT = [{"a": {"x": 1, "l": [1]}, "b": 1, "t": "s"},
               {"a": {"y": 2, "l": [2]}, "b": 2, "t": 3}]


@pytest.mark.parametrize("strategy, expect", [
    ("SHALLOW", {"a": {"y": 2, "l": [2]}, "b": 2, "t": 3}),
    ("REPLACE", {"a": {"x": 1, "y": 2, "l": [2]}, "b": 2, "t": 3}),
    ("ADDITIVE", {"a": {"x": 1, "y": 2, "l": [1, 2]}, "b": 2, "t": 3}),
])
def test_merge_strategies(strategy, expect):
    assert procwrap._merge(MERGE_INPUT, strategy, "--env-locations") == expect
    assert MERGE_INPUT[0]["a"] == {"x": 1, "l": [1]}       # inputs untouched


@pytest.mark.parametrize("strategy", ["TYPESAFE_REPLACE", "TYPESAFE_ADDITIVE"])
def test_typesafe_merge_refuses_mixed_types(strategy):
    with pytest.raises(procwrap.ConfigError) as caught:
        procwrap._merge(MERGE_INPUT, strategy, "--env-locations")
    assert str(caught.value) == ("--env-locations: t is str in one document and int in "
                                 "another; make them agree or use merge strategy REPLACE")
    same = [{"a": {"l": [1]}}, {"a": {"l": [2]}}]
    merged = procwrap._merge(same, strategy, "x")
    assert merged == {"a": {"l": [1, 2] if strategy.endswith("ADDITIVE") else [2]}}


def test_unknown_merge_strategy():
    with pytest.raises(procwrap.ConfigError) as caught:
        procwrap._merge([], "ADDITIV", "--merge-strategy")
    assert "unknown merge strategy 'ADDITIV'; did you mean 'ADDITIVE'?" in str(caught.value)


def test_templates():
    values = {"MONGO_USER": "app", "MONGO_PASSWORD": "p@ss", "PORT": 27017}
    text = "mongodb://{{ .MONGO_USER }}:{{.MONGO_PASSWORD}}@db:{{ .PORT }}/app"
    assert procwrap._is_template(text) and not procwrap._is_template("{{ MONGO_USER }}")
    assert procwrap._render_template(text, values, "MONGO_URL") == \
        "mongodb://app:p@ss@db:27017/app"
    with pytest.raises(procwrap.ConfigError) as caught:
        procwrap._render_template("{{ .MONGO_PASWORD }}", values, "MONGO_URL")
    assert str(caught.value) == ("MONGO_URL: the template uses {{ .MONGO_PASWORD }}, which is "
                                 "not set; set MONGO_PASWORD or fix the name; did you mean "
                                 "'MONGO_PASSWORD'?")


RESOLUTIONS = load_table("resolution_cases.json")


def _fill(value, directory):
    if isinstance(value, dict):
        return dict((k, _fill(v, directory)) for k, v in value.items())
    if isinstance(value, list):
        return [_fill(v, directory) for v in value]
    return value.replace("{dir}", directory) if isinstance(value, str) else value


@pytest.mark.parametrize("case", RESOLUTIONS, ids=[c["id"] for c in RESOLUTIONS])
def test_resolution(case, tmp_path):
    directory = str(tmp_path)
    for name, text in case.get("files", {}).items():
        (tmp_path / name).write_text(_fill(text, directory))
    environ = _fill(case.get("environ", {}), directory)
    locations = _fill(case.get("locations", []), directory)
    if "error" in case:
        with pytest.raises(procwrap.ProcwrapError) as caught:
            procwrap._resolve_environment(environ, locations=locations)
        assert str(caught.value).startswith(_fill(case["error"], directory))
        return
    base, _ = procwrap._resolve_environment(environ, locations=locations)
    assert dict((k, base.get(k)) for k in case["expect"]) == case["expect"]
    assert not any(k.endswith("_TO_RESOLVE") for k in base)


def test_each_document_is_fetched_once_per_pass(tmp_path):
    # The closing note's figure: 50 variables from 5 locations are 5 fetches.
    import json
    environ = {}
    for n in range(5):
        (tmp_path / ("doc%d.json" % n)).write_text(json.dumps(
            dict(("key%d" % k, "value-%d-%d" % (n, k)) for k in range(10))))
        for k in range(10):
            environ["V%d_%d_FOR_PROCWRAP_TO_RESOLVE" % (n, k)] = "%s/doc%d.json|JP:$.key%d" % (
                tmp_path, n, k)
    base, secrets = procwrap._resolve_environment(environ)
    assert base["V3_7"] == "value-3-7"
    assert len(secrets.resolved) == 50
    assert secrets.fetches == 5
    # a new pass (a restart after --secrets-ttl) fetches again
    procwrap._resolve_environment(environ, secrets=secrets)
    assert secrets.fetches == 10


def test_secret_repr_and_redaction():
    value = procwrap.Secret("hunter2-value")
    assert repr(value) == "[secret]" and "%r" % value == "[secret]"
    assert value == "hunter2-value" and str(value) == "hunter2-value"
    redact = procwrap._Redactor()
    redact.add({"a": "hunter2-value", "b": ["line one\nsecond-line", "no"]})
    assert redact("x hunter2-value y second-line no") == "x [secret] y [secret] no"
    redact.enabled = False
    assert redact("hunter2-value") == "hunter2-value"


def test_resolve_config(tmp_path):
    (tmp_path / "base.json").write_text('{"db": {"host": "db", "port": 1}, "mode": "base"}')
    (tmp_path / "creds.json").write_text('{"user": "u", "password": "p"}')
    config = {
        "mode": "local",
        "db": {"port": 5432, "password__to_resolve": "ENV:DB_PASSWORD",
               "__to_resolve": str(tmp_path / "creds.json"),
               "user": "explicit"},
        "items": [{"token__to_resolve": "PLAIN:t"}],
        "copy__to_resolve": "CONFIG:$.db.host",
    }
    result = procwrap.resolve_config(config, locations=[str(tmp_path / "base.json")],
                                     environ={"DB_PASSWORD": "pw"}, merge_strategy="REPLACE")
    assert result == {"mode": "local", "copy": "db", "items": [{"token": "t"}],
                      "db": {"host": "db", "port": 5432, "password": "pw", "user": "explicit"}}
    assert isinstance(result["db"]["password"], procwrap.Secret)
    assert "password__to_resolve" in config["db"]          # the input is untouched
    deep = {"a": {"b": {"c": {"d": {"e": {"x__to_resolve": "PLAIN:1"}}}}}}
    with pytest.raises(procwrap.ConfigError) as caught:
        procwrap.resolve_config(deep)
    assert str(caught.value).startswith("config.a.b.c.d.e.x__to_resolve: deeper than max_depth=5")
    assert procwrap.resolve_config(deep, max_depth=6)["a"]["b"]["c"]["d"]["e"] == {"x": "1"}
    custom = procwrap.resolve_config({"k_RESOLVE": "PLAIN:v"}, suffix="_RESOLVE")
    assert custom == {"k": "v"}


def test_env_output_file_round_trips_through_dotenv(tmp_path):
    values = {"A": "it's \\ \"quoted\" #not a comment", "B": "line1\nline2", "C": ""}
    path = str(tmp_path / "out.env")
    procwrap._write_env_file(procwrap._env_output(path), values)
    with open(path) as stream:
        parsed = dict(procwrap._parse_dotenv(stream.read(), path, {}))
    assert parsed == values
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_jsonpath_beyond_the_subset_uses_jsonpath_ng():
    document = {"users": [{"name": "a", "role": "admin"}, {"name": "b", "role": "dev"}]}
    assert procwrap._jsonpath(document, "$..name", "x") == ["a", "b"]
    assert procwrap._jsonpath(document, "$.users[?(@.role == 'admin')].name", "x") == ["a"]
