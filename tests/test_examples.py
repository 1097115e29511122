"""The project end to end through the commands `make train`, `make predict` and `make export` run."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
from helpers import PROJECT, fit, run


def test_default_experiment_trains_and_reports(tmp_path):
    run_dir, summary = fit(
        "default", tmp_path, "--model.backbone=resnet10t", "--data.image_size=16", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2",
    )  # fmt: skip
    assert summary["task"] == "multiclass (10 classes)" and 0 <= summary["metrics"]["test/acc"] <= 1
    assert (run_dir / "confusion_matrix.png").is_file() and (run_dir / "misclassified.png").is_file()


@pytest.mark.slow
def test_tabular_classification_trains_predicts_and_exports(tmp_path):
    run_dir, summary = fit("tabular", tmp_path, "--trainer.max_epochs=8")
    assert summary["task"] == "binary (2 classes)" and summary["monitor"] == {"key": "val/acc", "mode": "max"}
    assert summary["metrics"]["test/acc"] > 0.85 and summary["metrics"]["test/auroc"] > 0.9
    assert {"train/acc", "val/auroc"} <= set((run_dir / "metrics.csv").read_text().splitlines()[0].split(","))
    with (run_dir / "per_class.csv").open() as f:
        assert [r["class"] for r in csv.DictReader(f)] == ["malignant", "benign"]
    assert (run_dir / "misclassified.csv").is_file() and not (run_dir / "misclassified.png").exists()

    run("infer", str(run_dir), "--data", "test", cwd=tmp_path)
    with (run_dir / "predictions_test_single.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 86 and set(rows[0]) == {"id", "pred", "pred_name", "prob_benign"}
    assert all((float(r["prob_benign"]) >= 0.5) == (r["pred_name"] == "benign") for r in rows)

    run("export", str(run_dir), cwd=tmp_path)
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert (
        report["task"]["init_args"]["names"] == ["malignant", "benign"]
        and len(report["preprocessing"]["mean"]) == 30
    )
    assert report["onnx"]["max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_regression_trains_on_mae_predicts_values_and_exports(tmp_path):
    run_dir, summary = fit("regression", tmp_path, "--trainer.max_epochs=15")
    assert summary["monitor"] == {"key": "val/mae", "mode": "min"}
    assert summary["metrics"]["test/r2"] > 0.2 and 30 < summary["metrics"]["test/mae"] < 70  # diabetes units
    assert "train/mae" in (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert (run_dir / "residuals.png").is_file() and (run_dir / "per_target.csv").is_file()
    assert not (run_dir / "confusion_matrix.png").exists()

    run("infer", str(run_dir), "--data", "test", cwd=tmp_path)
    with (run_dir / "predictions_test_single.csv").open() as f:
        values = [float(r["progression"]) for r in csv.DictReader(f)]
    assert (
        len(values) == 67 and 50 < sum(values) / len(values) < 250
    )  # in the target's units, not standardised

    run("export", str(run_dir), cwd=tmp_path)
    assert json.loads((run_dir / "export" / "export.json").read_text())["onnx"]["max_abs_diff"] <= 1e-3


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("train EXPERIMENT=tabular", "-m template fit --experiment tabular"),
        ("predict CKPT=runs/x DATA=test", "-m template infer runs/x --data test"),
        ("export CKPT=runs/x", "-m template export runs/x"),
        (
            "train EXPERIMENT=table DATA=my.csv TARGET=label",
            "--experiment table  --data.path=my.csv --data.target=label",
        ),
        ("predict CKPT=runs/x DATA=new.csv", "-m template infer runs/x --data new.csv"),
    ],
)
def test_make_targets_run_these_commands(target, expected):
    dry = subprocess.run(["make", "-n", *target.split()], cwd=PROJECT, capture_output=True, text=True)
    assert expected in dry.stdout, dry.stdout + dry.stderr
