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
