"""What the scaffold and update tests share: generating a project, giving it its vendored engine, running
its commands. (Template-only: the scaffold does not copy this file into projects.)

A project's engine is installed with `pip install --no-deps --target <tmp>/site <vendor wheel>` and put on
PYTHONPATH with the project root: the dependencies (torch, lightning, ...) come from this interpreter, so
every test does not need a fresh 5 GB virtual environment, and the engine it runs is the wheel's, not ./engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "engine"
# Tiny but real: every code path of a fit, seconds on a CPU.
FAST = [
    "--model.backbone=resnet10t",
    "--data.image_size=16",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--wandb.enabled=false",
]
# What a project may hold at its top level: the user's surface, the vendored engine and the record.
SURFACE = {
    "configs", "tests", "vendor", ".ci", ".github", "slurm", "Makefile", "pyproject.toml", "constraints.txt",
    ".gitignore", ".pre-commit-config.yaml", "LICENSE", "README.md", ".template.json",
}  # fmt: skip
JUNK = (".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist", "*.egg-info")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the test run's own engine paths and TRAINFORGE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_") and k != "PYTHONPATH"}
    return {**env, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **extra}


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def cookiecutter_project(out: Path, template: Path = REPO, **answers: str) -> Path:
    return Path(cookiecutter(str(template), no_input=True, output_dir=str(out), extra_context=answers))


def new_project(template: Path, dest: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m template new <dest> ...` run by the given template checkout's own engine."""
    env = clean_env(PYTHONPATH=os.pathsep.join([str(template / "engine"), str(template)]))
    command = [sys.executable, "-m", "template", "new", str(dest), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def vendored(project: Path) -> list[Path]:
    return sorted((project / "vendor").glob("*"))


def install_engine(project: Path, site: Path) -> Path:
    """The project's vendored wheel (there must be exactly one) installed into `site`."""
    wheels = vendored(project)
    assert len(wheels) == 1 and wheels[0].name.startswith("trainforge-"), wheels
    shutil.rmtree(site, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--quiet",
        "--target",
        str(site),
        str(wheels[0]),
    ]
    check(subprocess.run(command, capture_output=True, text=True, timeout=600))
    return site


def run_in(project: Path, site: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """`python <args>` in the project root with the project and the engine in `site` importable."""
    env = clean_env(PYTHONPATH=os.pathsep.join([str(project), str(site)]))
    result = subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )
    return check(result) if ok else result


def engine_seen(project: Path, site: Path) -> dict:
    """Which trainforge the project imports: version, file, and the test marker an old build carries."""
    code = (
        "import json, trainforge; print(json.dumps({'version': trainforge.__version__, "
        "'file': trainforge.__file__, 'marker': getattr(trainforge, 'OLD_ENGINE_MARKER', None)}))"
    )
    return json.loads(run_in(project, site, "-c", code).stdout.strip().splitlines()[-1])


def project_tests(project: Path, site: Path, *selection: str) -> subprocess.CompletedProcess:
    """The project's own tests, as `make test` selects them (not slow), optionally only `selection`."""
    return run_in(project, site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *selection)


def quick_tests(project: Path) -> list[str]:
    """The project's hook tests (fast, no training runs) when it has them, else its whole suite."""
    hooks = project / "tests" / "test_hooks.py"
    return ["tests/test_hooks.py"] if hooks.is_file() else []


def short_fit(project: Path, site: Path, package: str, *args: str) -> Path:
    """A tiny `python -m <package> fit` in the project root; returns its run directory."""
    fit = run_in(project, site, "-m", package, "fit", *FAST, *args)
    run_dir = Path(fit.stdout.strip().splitlines()[-1].removeprefix("run directory: "))
    assert run_dir.parent == project / "runs" / "default", fit.stdout[-2000:]
    assert "test/acc" in json.loads((run_dir / "summary.json").read_text())["metrics"]
    return run_dir


def files(root: Path, skip: tuple[str, ...] = ("runs", "__pycache__", ".pytest_cache")) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), runs and caches left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def template_copy(dest: Path, version: str | None = None) -> Path:
    """A copy of this checkout (no .git: the scaffold takes every file on disk); with `version`, its engine
    says that version and carries OLD_ENGINE_MARKER, so a test can tell which engine a project imports."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*JUNK))
    if version is not None:
        init = dest / "engine" / "trainforge" / "__init__.py"
        text, found = re.subn(
            r"^__version__ = .*$", f'__version__ = "{version}"', init.read_text(), flags=re.M
        )
        assert found == 1, f"no __version__ line in {init}"
        init.write_text(text + f'\nOLD_ENGINE_MARKER = "{version}"\n')
    return dest
