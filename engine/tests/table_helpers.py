"""Tables written for the table tests: scikit-learn's breast cancer and diabetes as CSV files, as a user
would have them (an id column, text labels, a text column, a few empty cells)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

from tests.conftest import run_cli

QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--wandb.enabled=false",
]
SITES = ["north", "south", "west"]


def cancer_csv(folder: Path) -> Path:
    """569 rows: `patient` ids, 30 measurements (3 empty cells in 'mean texture'), a text column `site`,
    the label as text."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient", [f"p{i:03d}" for i in range(len(frame))])
    frame["site"] = np.random.default_rng(0).choice(SITES, len(frame))
    frame.loc[[5, 40, 300], "mean texture"] = np.nan
    frame["label"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    path = folder / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


def diabetes_csv(folder: Path) -> Path:
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    path = folder / "diabetes.csv"
    frame.to_csv(path, index=False)
    return path


def fit_table(cwd: Path, name: str, *args: str, module: str = "trainforge") -> tuple[Path, dict]:
    result = run_cli(
        "fit", "--experiment", "table", f"--run.root={cwd / 'runs'}", f"--run.name={name}", *QUIET, *args,
        cwd=cwd, module=module,
    )  # fmt: skip
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("run directory: "))
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def one_error_line(stderr: str) -> str:
    """The user-facing error: one `error:` line (and the --debug hint), no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip() and "Seed set to" not in line]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 2 and lines[0].startswith("error:") and "--debug" in lines[1], stderr[-3000:]
    return lines[0]


def raw_rows(frame: pd.DataFrame, contract: dict) -> np.ndarray:
    """Rows as the exported graph takes them (export.json's `input`): raw numbers, NaN where empty, then
    category indices."""
    columns = []
    for name in contract["columns"]:
        if name in contract["categories"]:
            index = {c: i for i, c in enumerate(contract["categories"][name])}
            columns.append(frame[name].astype(str).map(index).to_numpy(dtype=np.float32))
        else:
            columns.append(frame[name].to_numpy(dtype=np.float32))
    return np.stack(columns, axis=1)
