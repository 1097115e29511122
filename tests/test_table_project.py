"""A user with only a CSV: the project's own `python -m template` (what `make train EXPERIMENT=table DATA=
TARGET=`, `make predict` and `make export` run) trains, predicts on new rows and exports, with no Python."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import fit, run
from sklearn.datasets import load_diabetes


@pytest.mark.slow
def test_a_csv_trains_predicts_new_rows_and_exports_with_no_python(tmp_path):
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    frame.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[400:].drop(columns=["target"]).to_csv(tmp_path / "new.csv", index=False)

    run_dir, summary = fit(
        "table", tmp_path, "--data.path=train.csv", "--data.target=target", "--trainer.max_epochs=3"
    )
    assert summary["task"].startswith("regression") and summary["metrics"]["test/mae"] < 60

    out = tmp_path / "predictions.csv"
    run("infer", str(run_dir), "--data", "new.csv", "--out", str(out), cwd=tmp_path)
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(400, len(frame))]
    assert 50 < sum(float(r["target"]) for r in rows) / len(rows) < 250  # in the target's units

    run("export", str(run_dir), cwd=tmp_path)
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert report["input"]["columns"][0] == "age" and report["onnx"]["max_abs_diff"] <= 1e-4
