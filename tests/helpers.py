"""Running the project's commands as a user would (the Make targets call exactly these)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = "template"
# Small and fast, but every code path of a real run.
QUICK = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--wandb.enabled=false",
]


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m <package> ...` from the project root's configs, writing under `cwd`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRAINFORGE_CONFIGS": str(PROJECT / "configs")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", PACKAGE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def fit(experiment: str, tmp_path: Path, *overrides: str) -> tuple[Path, dict[str, Any]]:
    """Train `experiment` into tmp_path/runs; return the run directory and its summary.json."""
    result = run(
        "fit", "--experiment", experiment, f"--run.root={tmp_path / 'runs'}", *QUICK, *overrides, cwd=tmp_path
    )
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("run directory: "))
    return run_dir, json.loads((run_dir / "summary.json").read_text())
