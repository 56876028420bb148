"""`import procwrap` loads only light standard-library modules (DEVELOPERS.md rule 2)."""
import json
import subprocess

from conftest import PYTHON, ROOT, clean_environ

#: What importing procwrap may add on top of a bare interpreter (-S: no site,
#: so nothing a .pth file imported hides a regression).
ALLOWED = {
    "procwrap", "heapq", "_heapq", "select", "selectors", "signal", "errno", "math",
    "re", "sre_compile", "sre_parse", "sre_constants", "_sre", "copyreg", "enum", "types",
    "functools", "_functools", "collections", "_collections", "collections.abc",
    "_collections_abc", "operator", "_operator", "keyword", "itertools", "reprlib",
    "os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_locale", "_weakrefset",
    "re._casefix", "re._compiler", "re._constants", "re._parser", "_signal", "time",
}


def modules_added(code):
    script = ("import sys, json; before = set(sys.modules); %s; "
              "print(json.dumps(sorted(set(sys.modules) - before)))" % code)
    out = subprocess.run([PYTHON, "-S", "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                         universal_newlines=True, env=clean_environ(), check=True).stdout
    return set(json.loads(out)) - {"json", "json.decoder", "json.scanner", "json.encoder",
                                   "_json"}    # json was imported by the probe itself


def test_import_loads_only_light_stdlib():
    added = modules_added("import procwrap")
    assert added <= ALLOWED, "import procwrap pulled in %s" % sorted(added - ALLOWED)


def test_no_optional_or_heavy_module_at_import():
    added = modules_added("import procwrap")
    for heavy in ("ctypes", "subprocess", "threading", "json", "http.server", "ssl",
                  "urllib.request", "yaml", "tomllib", "tomli", "boto3", "hvac", "difflib",
                  "random", "shlex", "argparse"):
        assert heavy not in added
