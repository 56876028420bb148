"""How procwrap starts (issue 8, part 7): script mode re-executes itself from its compiled
code and holds no more memory than module mode; `procwrap install` writes a module, its
bytecode and a launcher.  Speed is a benchmark (tests/bench/run.py); these are behaviours."""
import json
import os
import shutil
import signal
import stat
import subprocess

import pytest

from conftest import PROCWRAP, PYTHON, WAIT, Background, clean_environ

IDLE = {"processes": [{"name": "app", "command": ["sleep", "300"]}]}


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as stream:
        return int([line for line in stream if line.startswith("VmRSS:")][0].split()[1])


def supervisor(tmp_path, argv, **kwargs):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(IDLE))
    procwrap = Background([], command=argv + ["-c", str(config)], **kwargs)
    procwrap.expect_event("started", "app")
    return procwrap


def test_script_mode_holds_no_more_than_module_mode(tmp_path):
    """Before: 30 MB for a script-mode supervisor against 15-19 MB for -m: the compiler's
    leftovers of a 300 KB file, kept for as long as it ran."""
    cached = tmp_path / "cached"
    cached.mkdir()
    shutil.copy(PROCWRAP, str(cached))
    subprocess.check_call([PYTHON, "-m", "py_compile", str(cached / "procwrap.py")])
    env = clean_environ(PYTHONDONTWRITEBYTECODE="1")
    script = supervisor(tmp_path, [PYTHON, PROCWRAP], env=env)
    module = supervisor(tmp_path, [PYTHON, "-m", "procwrap"], env=env, cwd=str(cached))
    try:
        script_rss, module_rss = rss_kb(script.pid), rss_kb(module.pid)
        assert script_rss <= module_rss * 1.1 + 1024, (script_rss, module_rss)
    finally:
        for procwrap in (script, module):
            procwrap.signal(signal.SIGTERM)
            procwrap.wait()


def test_the_reexec_leaves_no_trace_for_children(tmp_path):
    """Same pid, same flags, argv[0] the script again; the memfd is closed and
    PROCWRAP_SCRIPT is not passed on; nothing is written next to the script."""
    copy = tmp_path / "readonly"
    copy.mkdir()
    shutil.copy(PROCWRAP, str(copy))
    os.chmod(str(copy), 0o555)
    show = ("import os, sys\n"
            "print(sorted(os.listdir('/proc/self/fd')))\n"
            "print('PROCWRAP_SCRIPT' in os.environ)\n")
    result = subprocess.run([PYTHON, "-E", str(copy / "procwrap.py"), "--", PYTHON, "-c", show],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT, env=clean_environ())
    os.chmod(str(copy), 0o755)
    assert result.returncode == 0, result.stderr
    fds, leaked = result.stdout.splitlines()
    assert json.loads(fds.replace("'", '"')) == ["0", "1", "2", "3"]     # 3: listdir's own
    assert leaked == "False"
    assert os.listdir(str(copy)) == ["procwrap.py"]
    # The running supervisor: same pid as started, interpreter flags kept.
    procwrap = supervisor(tmp_path, [PYTHON, "-E", PROCWRAP])
    try:
        with open("/proc/%d/cmdline" % procwrap.pid, "rb") as stream:
            argv = stream.read().split(b"\0")
        assert b"-E" in argv and argv[argv.index(b"-S") + 1].startswith(b"/proc/self/fd/")
        assert not [name for name in os.listdir("/proc/%d/fd" % procwrap.pid)
                    if os.readlink("/proc/%d/fd/%s" % (procwrap.pid, name)).startswith(
                        "/memfd:")]
    finally:
        procwrap.signal(signal.SIGTERM)
        procwrap.wait()


def test_optional_libraries_load_after_the_reexec(tmp_path):
    pytest.importorskip("yaml")
    config = tmp_path / "c.yaml"
    config.write_text("processes:\n  - {name: a, command: ['true'], restartPolicy: Never}\n")
    result = subprocess.run([PYTHON, PROCWRAP, "-c", str(config)], stdout=subprocess.PIPE,
                            universal_newlines=True, timeout=WAIT, env=clean_environ())
    assert result.returncode == 0
    assert '"event":"all-ended"' in result.stdout


def test_install_writes_module_bytecode_and_launcher(tmp_path):
    prefix = tmp_path / "prefix"
    result = subprocess.run([PYTHON, PROCWRAP, "install", str(prefix)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=WAIT,
                            env=clean_environ())
    assert result.returncode == 0, result.stderr
    launcher = prefix / "bin" / "procwrap"
    module = prefix / "lib" / "procwrap" / "procwrap.py"
    assert module.read_text() == open(PROCWRAP).read()
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    assert subprocess.run([str(launcher), "--", "sh", "-c", "exit 7"], timeout=WAIT,
                          env=clean_environ()).returncode == 7
    # It starts from the bytecode, as pip's console script does: no compile.
    verbose = subprocess.run([str(launcher), "--version"], stderr=subprocess.PIPE,
                             stdout=subprocess.PIPE, universal_newlines=True, timeout=WAIT,
                             env=clean_environ(PYTHONVERBOSE="1"))
    assert verbose.stdout.startswith("procwrap ")
    assert "code object from '%s" % (prefix / "lib" / "procwrap" / "__pycache__") \
        in verbose.stderr
    # Again: an update replaces its own files; someone else's file stops it.
    again = subprocess.run([PYTHON, PROCWRAP, "install", str(prefix)], timeout=WAIT,
                           stdout=subprocess.PIPE, env=clean_environ())
    assert again.returncode == 0
    other = tmp_path / "other"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "procwrap").write_text("#!/bin/sh\necho mine\n")
    refused = subprocess.run([PYTHON, PROCWRAP, "install", str(other)], timeout=WAIT,
                             stderr=subprocess.PIPE, universal_newlines=True,
                             env=clean_environ())
    assert refused.returncode == 2
    assert "did not create" in refused.stderr
    assert (other / "bin" / "procwrap").read_text() == "#!/bin/sh\necho mine\n"
    assert not (other / "lib").exists()         # checked before anything was written
