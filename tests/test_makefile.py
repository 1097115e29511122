"""`make install` rebuilds a broken .venv instead of trusting its stamp; fakes stand in for Python and pip.

The Makefile's rule: a `.venv` whose python cannot `import pip` loses its `.venv/.installed` stamp when the
Makefile is read, so the stamp's recipe runs and recreates the venv (`rm -rf .venv && $(PYTHON) -m venv`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import PACKAGE

REPO = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def recording_python(tmp_path: Path) -> tuple[Path, Path]:
    """A `python` that logs its arguments; `-m venv DIR` makes DIR/bin/python, which logs and succeeds."""
    log = tmp_path / "calls.log"
    fake = executable(
        tmp_path / "fake" / "python",
        f'echo "python $*" >> "{log}"\n'
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        '  mkdir -p "$3/bin"\n'
        f'  printf \'#!/bin/sh\\necho "venv-python $*" >> "{log}"\\n\' > "$3/bin/python"\n'
        '  chmod +x "$3/bin/python"\n'
        "fi\n",
    )
    return fake, log


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, root / name)
    return root


def fresh_stamp(venv: Path) -> Path:
    """A stamp newer than every prerequisite: only the venv's health can make `make` rebuild it."""
    stamp = venv / ".installed"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    later = time.time() + 60
    os.utime(stamp, (later, later))
    return stamp


def make(root: Path, *args: str, python: Path) -> subprocess.CompletedProcess:
    # An outer make (`make test`) must not lend its flags or variables; PYTHONPATH could lend a pip.
    skip = (
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
        "VENV",
        "PYTHON",
        "PYTHONPATH",
        "VIRTUAL_ENV",
    )
    env = {k: v for k, v in os.environ.items() if k not in skip}
    return subprocess.run(
        [MAKE, "--no-print-directory", *args, f"PYTHON={python}"],  # type: ignore[list-item]
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def python_exits_1(venv: Path) -> None:
    executable(venv / "bin" / "python", "exit 1\n")


def python_is_a_dangling_link(venv: Path) -> None:  # the base interpreter was removed or upgraded
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(venv / "gone" / "python3")


def venv_without_pip(venv: Path) -> None:  # an interrupted `python -m venv`, or pip deleted
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)


BROKEN = [
    pytest.param(python_exits_1, id="python-exits-1"),
    pytest.param(python_is_a_dangling_link, id="dangling-python"),
    pytest.param(venv_without_pip, id="no-pip"),
]


@pytest.mark.parametrize("break_venv", BROKEN)
def test_dry_run_rebuilds_a_broken_venv_despite_its_stamp(tmp_path: Path, break_venv: Callable) -> None:
    root = project(tmp_path)
    fake, log = recording_python(tmp_path)
    break_venv(root / ".venv")
    fresh_stamp(root / ".venv")
    result = make(root, "-n", "install", python=fake)
    assert result.returncode == 0, result.stderr
    planned = result.stdout
    assert f"rm -rf .venv && {fake} -m venv .venv" in planned, planned
    assert ".venv/bin/python -m pip install --quiet -c constraints.txt" in planned, planned
    assert planned.rstrip().endswith("touch .venv/.installed"), planned
    assert not log.exists()  # a dry run calls no Python (only the Makefile's own health check)


def test_a_healthy_venv_with_its_stamp_is_trusted(tmp_path: Path) -> None:
    root = project(tmp_path)
    fake, log = recording_python(tmp_path)
    executable(root / ".venv" / "bin" / "python", "exit 0\n")  # `import pip` works
    stamp = fresh_stamp(root / ".venv")
    result = make(root, "-n", "install", python=fake)
    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stdout and "Nothing to be done" in result.stdout, result.stdout
    assert stamp.exists()


def test_install_replaces_the_broken_venv_then_stamps_it(tmp_path: Path) -> None:
    """A real `make install` with the fakes: the broken venv is deleted, recreated, installed into, stamped."""
    root = project(tmp_path)
    fake, log = recording_python(tmp_path)
    python_exits_1(root / ".venv")
    (root / ".venv" / "leftover").write_text("from the broken venv")
    stamp = fresh_stamp(root / ".venv")
    result = make(root, "install", python=fake)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "python -m venv .venv", calls
    assert calls[1] == "venv-python -m pip install --quiet --upgrade pip", calls
    assert (
        calls[2].startswith("venv-python -m pip install --quiet -c constraints.txt")
        and "-e .[dev]" in calls[2]
    )
    assert calls[3] == f"venv-python -c import trainforge, {PACKAGE}", calls
    assert stamp.exists() and not (root / ".venv" / "leftover").exists()
