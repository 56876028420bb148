"""`pip install .` gives a `procwrap` console script; `python -m procwrap` works too."""
import os
import shutil
import subprocess
import sys

from conftest import ROOT, WAIT, clean_environ


def test_pip_install_gives_a_console_script(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("procwrap.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), str(source / name))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=WAIT * 2)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--no-deps", str(source)]
    subprocess.run(pip, check=True, timeout=WAIT * 5, env=clean_environ())
    script = str(venv / "bin" / "procwrap")
    assert subprocess.run([script, "--", "sh", "-c", "exit 7"], timeout=WAIT).returncode == 7
    module = subprocess.run([str(venv / "bin" / "python"), "-m", "procwrap", "--version"],
                            stdout=subprocess.PIPE, universal_newlines=True, cwd="/",
                            timeout=WAIT)
    assert module.stdout.startswith("procwrap ")
