"""`pip install .` gives a `procwrap` console script under every CPython 3.6-3.13 (through
flit_core); `python -m procwrap` works too."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, WAIT, clean_environ
from test_compat import REQUIRED, interpreter


@pytest.mark.parametrize("version", REQUIRED)
def test_pip_install_gives_a_console_script(tmp_path, version):
    python = interpreter(version)
    source = tmp_path / "src"
    source.mkdir()
    for name in ("procwrap.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), str(source / name))
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=WAIT * 2)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    version_line = subprocess.run(pip + ["--version"], stdout=subprocess.PIPE, check=True,
                                  universal_newlines=True, timeout=WAIT).stdout
    if int(version_line.split()[1].split(".")[0]) < 19:
        # 3.6 bundles pip 18.1, which predates pyproject builds (PEP 517): the README
        # says to upgrade it first, to the last pip for 3.6.
        subprocess.run(pip + ["install", "--quiet", "--upgrade", "pip>=19,<22"], check=True,
                       timeout=WAIT * 5, env=clean_environ())
    subprocess.run(pip + ["install", "--quiet", "--no-deps", str(source)], check=True,
                   timeout=WAIT * 5, env=clean_environ())
    script = str(venv / "bin" / "procwrap")
    assert subprocess.run([script, "--", "sh", "-c", "exit 7"], timeout=WAIT).returncode == 7
    module = subprocess.run([str(venv / "bin" / "python"), "-m", "procwrap", "--version"],
                            stdout=subprocess.PIPE, universal_newlines=True, cwd="/",
                            timeout=WAIT)
    assert module.stdout.startswith("procwrap ")
