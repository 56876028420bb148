"""Location strings, the built-in JSON Path subset and env projection (tables in test_fixtures/)."""
import subprocess
import sys

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
