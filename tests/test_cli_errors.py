"""Bad input: one line per problem naming the place and the fix, exit 2, never a traceback."""
import os
import subprocess
import sys

import pytest

from conftest import PROCWRAP, PYTHON, clean_environ, error_lines, load_table, run, write_config

CASES = load_table("config_errors.json")


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_check_reports_every_problem_with_its_place(tmp_path, case):
    result = run("check", "-c", write_config(tmp_path, case["config"]))
    assert result.returncode == 2
    assert error_lines(result.stderr) == case["errors"]
    # Running it reports the same problems before starting anything.
    running = run("-c", write_config(tmp_path, case["config"]))
    assert running.returncode == 2
    assert error_lines(running.stderr) == case["errors"]
    assert running.stdout == ""


@pytest.mark.parametrize("args, env, message", [
    (["--timout", "3", "--", "true"], {}, "--timout: unknown option; did you mean '--timeout'?; "
                                          "see procwrap --help"),
    (["--timeout", "soon", "--", "true"], {}, "--timeout: expected seconds (10, 1.5, 500ms, 2m), "
                                              "got 'soon'"),
    (["--timeout"], {}, "--timeout: expects a value (SECONDS)"),
    (["--retries", "-1", "--", "true"], {}, "--retries: expected a whole number >= 0, got '-1'"),
    (["--retry-backoff", "0.5", "--", "true"], {}, "--retry-backoff: expected a number >= 1, "
                                                   "got '0.5'"),
    (["--success-codes", "0,x", "--", "true"], {}, "--success-codes: expected exit codes 0-255 "
                                                   "separated by commas, like 0,3, got '0,x'"),
    (["--stop-signal", "FOO", "--", "true"], {}, "--stop-signal: expected a signal name like "
                                                 "TERM or INT, got 'FOO'"),
    (["--log-format", "xml", "--", "true"], {}, "--log-format: expected json, logfmt, text "
                                                "or none, got 'xml'"),
    (["--env", "NOEQUALS", "--", "true"], {}, "--env: expected NAME=VALUE, got 'NOEQUALS'"),
    (["--wait-group=yes", "--", "true"], {}, "--wait-group: takes no value; drop '=yes'"),
    (["--", "true"], {"PROCWRAP_RETRIES": "many"}, "PROCWRAP_RETRIES: expected a whole number "
                                                   ">= 0, got 'many'"),
    (["--", "true"], {"PROCWRAP_WAIT_GROUP": "perhaps"}, "PROCWRAP_WAIT_GROUP: expected "
                                                         "1/true/yes or 0/false/no, got 'perhaps'"),
    ([], {}, "no command and no config; give a command after '--' (wrap mode) or -c FILE "
             "(supervisor mode); see --help"),
    (["--skip", "a", "--", "true"], {}, "--skip: applies to supervise mode only; remove it or "
                                        "use -c FILE"),
    (["-c", "x.json", "--retries", "2"], {}, "--retries: applies to wrap mode only; remove it "
                                             "or give a command"),
    (["-c", "x.json", "--", "true"], {}, "give either a command to wrap or -c FILE to "
                                         "supervise, not both"),
    (["--user", "no-such-user-procwrap", "--", "true"], {}, "--user: no such user "
                                                            "'no-such-user-procwrap'; create it "
                                                            "or fix the name"),
    (["--user", "root:no-such-group", "--", "true"], {}, "--user: no such group "
                                                         "'no-such-group'; create it or fix "
                                                         "the name"),
    (["--workdir", "/no/such/dir", "--", "true"], {}, "--workdir: no such directory "
                                                      "'/no/such/dir'; create it or fix the path"),
    (["--env-file", "/no/such.env", "--", "true"], {}, "--env-file: cannot read env file "
                                                       "'/no/such.env': No such file or "
                                                       "directory; fix the path"),
    (["-c", "/no/such.json"], {}, "-c: cannot read config '/no/such.json': No such file or "
                                  "directory; fix the path"),
    (["-c", "procwrap.ini"], {}, "procwrap.ini: unknown config type '.ini'; name it .json, "
                                 ".toml, .yaml or .yml"),
    (["-c", "{\"processes\": ["], {}, "-c: Expecting value: line 1 column 16 (char 15); fix "
                                      "the JSON syntax"),
    ([], {"PROCWRAP_CONFIG": "{\"processes\": 3}"}, "processes: expected a list of entries, "
                                                    "got a number (3)"),
    (["check"], {}, "check: needs -c FILE (or PROCWRAP_CONFIG)"),
    (["--skip", "nope", "-c", "{\"processes\": [{\"name\": \"nose\", \"command\": [\"x\"]}]}"],
     {}, "--skip: no entry named 'nope'; did you mean 'nose'?"),
])
def test_bad_flags_and_twins(args, env, message):
    result = run(*args, env=clean_environ(**env))
    assert result.returncode == 2
    assert error_lines(result.stderr) == [message]


def test_user_switch_needs_root(test_user, public_copy):
    result = subprocess.run([public_copy.python, public_copy.procwrap, "--user", "root", "--",
                             "true"], cwd="/",
                            preexec_fn=lambda: os.setuid(test_user.pw_uid),
                            stderr=subprocess.PIPE, universal_newlines=True, env=clean_environ())
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "--user: running as another user needs root (procwrap runs as uid %d); run procwrap "
        "as root or drop the setting" % test_user.pw_uid]


def test_bad_dotenv_file_names_file_and_line(tmp_path):
    envfile = tmp_path / "bad.env"
    envfile.write_text("GOOD=1\n# comment\nBAD=\"unclosed\n")
    result = run("--env-file", str(envfile), "--", "true")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "%s:3:5: cannot parse this line; write NAME=value, quote values with spaces or "
        "'#', and close every quote" % envfile]
    assert "unclosed" not in result.stderr      # the line may hold a secret


@pytest.mark.parametrize("module, package, suffix", [("yaml", "PyYAML", "yaml"),
                                                     ("tomli", "tomli", "toml")])
def test_missing_optional_library_names_the_package(tmp_path, module, package, suffix):
    """Run the real CLI with the library made unimportable (as in an image without it)."""
    config = write_config(tmp_path, "", "procwrap." + suffix)
    blocked = [module] + (["tomllib"] if module == "tomli" else [])
    code = ("import sys, runpy\nfor m in %r: sys.modules[m] = None\n"
            "sys.argv = ['procwrap', 'check', '-c', %r]\n"
            "runpy.run_path(%r, run_name='__main__')" % (blocked, config, PROCWRAP))
    result = subprocess.run([PYTHON, "-c", code], stderr=subprocess.PIPE,
                            universal_newlines=True, env=clean_environ())
    assert result.returncode == 2
    assert package in error_lines(result.stderr)[0]
    assert error_lines(result.stderr)[0].endswith("pip install %s" % package)


def test_yaml_and_toml_syntax_errors(tmp_path):
    pytest.importorskip("yaml")
    result = run("check", "-c", write_config(tmp_path, "processes: [\n", "bad.yaml"))
    assert result.returncode == 2
    assert error_lines(result.stderr)[0].endswith("fix the YAML syntax")
    if sys.version_info >= (3, 11):
        result = run("check", "-c", write_config(tmp_path, "processes = [\n", "bad.toml"))
        assert result.returncode == 2
        assert error_lines(result.stderr)[0].endswith("fix the TOML syntax")
