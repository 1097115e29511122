"""Tests run offline and write only into temporary directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Imported before any test captures stderr: Lightning binds its log handlers to the sys.stderr of its first
# import, and a test's closed capture stream there turns later tests' log lines into "Logging error" tracebacks.
import lightning.pytorch  # noqa: F401
import pytest

REPO = Path(__file__).resolve().parent.parent  # engine/: the package under test lives here
CONFIGS = REPO / "trainforge" / "configs"  # the engine's built-in configs

# A small, fast setup on the real digits data: every end-to-end test starts from these overrides.
FAST = [
    "--model.backbone=resnet10t",
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.image_size=16",
    "--trainer.log_every_n_steps=1",
]


@pytest.fixture(autouse=True, scope="session")
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("wandb-home")
    os.environ.setdefault("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[var] = str(home)
    os.environ["WANDB_SILENT"] = "true"


def run_cli(
    *args: str,
    cwd: Path,
    check: bool = True,
    timeout: int = 600,
    module: str = "trainforge",
    **run_kwargs: Any,
) -> subprocess.CompletedProcess:
    """Run `python -m <module> ...` (the CLI by default) as a user would, with configs from this repository.

    `run_kwargs` go to `subprocess.run` (e.g. `preexec_fn` to limit the child's resources).
    """
    # PYTHONPATH: the code under test is this checkout's, whatever checkout the venv was installed from.
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "TRAINFORGE_CONFIGS": str(CONFIGS),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": pythonpath,
    }
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **run_kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-4000:]}\nSTDERR:\n{result.stderr[-4000:]}"
        )
    return result


def last_line(output: str) -> str:
    return [line for line in output.splitlines() if line.strip()][-1]


def lrs_over_steps(schedule, optimizer, steps: int) -> list[float]:
    """The first group's learning rate at each of `steps` optimizer steps."""
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return seen


@pytest.fixture
def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Any:
    """A command that must be refused, run through `trainforge.launch.main` in this process (no start-up of a
    new Python): returns (exit code, stderr)."""
    from trainforge.launch import main

    monkeypatch.setenv("TRAINFORGE_CONFIGS", str(CONFIGS))
    monkeypatch.delenv("TRAINFORGE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, f"--run.root={tmp_path / 'runs'}"])
        return exit_info.value.code, capsys.readouterr().err

    return call
