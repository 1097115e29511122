"""A table from a CSV with no Python: train (classification and regression), predict on new rows, export
with the preprocessing inside the graph, all through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli
from tests.table_helpers import SITES, cancer_csv, diabetes_csv, fit_table, raw_rows, read_csv
from trainforge.data.table import TableDataModule
from trainforge.errors import TemplateError
from trainforge.tasks import Binary, Multiclass, Regression

pytestmark = pytest.mark.timeout(900)  # a few short fits; the budget allows for a loaded machine


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """A binary run on the cancer CSV, and its predictions on its val and test splits (id -> P(malignant))."""
    cwd = tmp_path_factory.mktemp("cancer")
    csv = cancer_csv(cwd)
    run_dir, summary = fit_table(
        cwd, "c", f"--data.path={csv}", "--data.target=label", "--data.id_column=patient",
        "--data.missing=median", "--trainer.max_epochs=2",
    )  # fmt: skip
    splits = {}
    for split in ("val", "test"):
        out = cwd / f"{split}.csv"
        run_cli("infer", str(run_dir), "--data", split, "--out", str(out), cwd=cwd)
        splits[split] = {row["patient"]: float(row["prob_malignant"]) for row in read_csv(out)}
    return cwd, csv, run_dir, summary, splits


def test_classification_from_a_csv_fits_preprocessing_on_train_rows_only(cancer):
    cwd, csv, run_dir, summary, splits = cancer
    assert summary["task"].startswith("binary") and summary["metrics"]["test/acc"] >= 0.9
    spec = json.loads((run_dir / "preprocessing.json").read_text())
    assert spec["categorical"] == {"site": SITES} and "site" not in spec["numeric"]
    assert "patient" not in spec["numeric"] and "label" not in spec["numeric"]
    frame = pd.read_csv(csv)
    held_out = set(splits["val"]) | set(splits["test"])
    train = frame[~frame["patient"].isin(held_out)]
    assert len(held_out) == len(splits["val"]) + len(splits["test"]) and 0.65 < len(train) / len(frame) < 0.75
    texture = spec["numeric"].index("mean texture")
    fill = train["mean texture"].median()  # missing: median, over the training rows
    assert spec["fill"][texture] == pytest.approx(fill)
    assert spec["mean"][texture] == pytest.approx(train["mean texture"].fillna(fill).mean(), rel=1e-6)
    area = spec["numeric"].index("mean area")
    assert spec["mean"][area] == pytest.approx(train["mean area"].mean(), rel=1e-6)
    assert spec["mean"][area] != pytest.approx(frame["mean area"].mean(), rel=1e-6)  # not all rows


@pytest.fixture(scope="module")
def new_rows(cancer):
    """The test split's rows given as new data (no label, shuffled, two cells emptied) and their predictions."""
    cwd, csv, run_dir, _, splits = cancer
    frame = pd.read_csv(csv).drop(columns=["label"])
    frame = frame[frame["patient"].isin(splits["test"])].sample(frac=1.0, random_state=0)
    frame.iloc[:2, frame.columns.get_loc("mean texture")] = np.nan  # filled inside, as in training
    path = cwd / "new.csv"
    frame.to_csv(path, index=False)
    out = cwd / "new_predictions.csv"
    result = run_cli("infer", str(run_dir), "--data", str(path), "--out", str(out), cwd=cwd)
    assert f"{len(frame)} predictions" in result.stdout
    return frame, out


def test_predict_on_new_rows_keeps_their_id_column(cancer, new_rows):
    _, _, _, _, splits = cancer
    frame, out = new_rows
    rows = read_csv(out)
    assert list(rows[0])[:1] == ["patient"]  # the input's id column, by name
    assert [r["patient"] for r in rows] == frame["patient"].tolist()  # in the input's order
    for row in rows[2:]:  # the same rows, as the test split, got the same predictions
        assert float(row["prob_malignant"]) == pytest.approx(splits["test"][row["patient"]], abs=1e-5)


@pytest.mark.parametrize(("change", "named"), [("drop", "mean area"), ("add", "notes")])
def test_new_rows_with_missing_or_extra_columns_are_refused_by_name(cancer, new_rows, change, named):
    cwd, _, run_dir, _, _ = cancer
    frame = new_rows[0].drop(columns=[named]) if change == "drop" else new_rows[0].assign(notes="x")
    path = cwd / f"{change}.csv"
    frame.to_csv(path, index=False)
    result = run_cli("infer", str(run_dir), "--data", str(path), cwd=cwd, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{'missing' if change == 'drop' else 'extra'} column(s) '{named}'" in result.stderr
    assert not (run_dir / f"predictions_{change}_single.csv").exists()


def test_export_takes_raw_rows_and_matches_the_checkpoint(cancer, new_rows):
    """Raw rows (empty cells as NaN, text categories as indices) through TorchScript and ONNX give the
    checkpoint's own predictions: fill, standardisation and one-hot are inside the graph."""
    import onnxruntime as ort

    cwd, _, run_dir, _, _ = cancer
    frame, out = new_rows
    run_cli("export", str(run_dir), cwd=cwd)
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert report["input"]["columns"][-1] == "site" and report["input"]["categories"]["site"] == SITES
    x = raw_rows(frame, report["input"])
    assert np.isnan(x).any()  # the empty cells go in as they are
    expected = np.array([float(r["prob_malignant"]) for r in read_csv(out)])
    scripted = torch.jit.load(report["torchscript"]["path"])(torch.from_numpy(x)).detach().numpy()
    session = ort.InferenceSession(report["onnx"]["path"], providers=["CPUExecutionProvider"])
    onnx = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(scripted, expected, atol=1e-4)
    np.testing.assert_allclose(onnx, expected, atol=1e-4)
    assert not np.allclose(expected, expected.mean(), atol=0.05)  # real, varied predictions


@pytest.mark.slow  # a second fit; the classification runs above cover the path in the fast tier
def test_regression_from_a_csv_in_the_targets_units_with_task_aware_diagnosis(tmp_path):
    csv = diabetes_csv(tmp_path)
    run_dir, summary = fit_table(
        tmp_path, "d", f"--data.path={csv}", "--data.target=progression", "--trainer.max_epochs=2"
    )
    assert summary["task"].startswith("regression") and summary["monitor"]["key"] == "val/mae"
    targets = pd.read_csv(csv)["progression"]
    mean_predictor = (targets - targets.mean()).abs().mean()  # about 65
    assert summary["metrics"]["test/mae"] < 0.9 * mean_predictor
    text = json.dumps(summary["diagnosis"])
    assert "label_smoothing" not in text and "data.augment" not in text and "model.backbone" not in text
    for finding in summary["diagnosis"]:
        if finding["kind"] == "still_improving":
            assert "fell" in finding["message"] and "rose" not in finding["message"]


def test_the_task_follows_the_target_and_can_be_overridden(tmp_path):
    frame = pd.DataFrame({"x": np.arange(60.0), "grade": np.arange(60) % 3, "score": np.arange(60) * 1.5})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    for path in ("t.parquet", "t.csv"):
        grade = TableDataModule(path=str(tmp_path / path), target="grade")
        assert isinstance(grade.task, Multiclass) and grade.task.names == ["0", "1", "2"]
        assert grade.input_shape == [2]  # x and score
    assert isinstance(TableDataModule(path=str(tmp_path / "t.csv"), target="score").task, Regression)
    forced = TableDataModule(path=str(tmp_path / "t.csv"), target="grade", kind="regression")
    assert isinstance(forced.task, Regression) and forced.task.mean == [pytest.approx(1.0, abs=0.2)]
    frame.assign(flag=np.where(frame["x"] > 30, "yes", "no")).to_csv(tmp_path / "b.csv", index=False)
    assert isinstance(TableDataModule(path=str(tmp_path / "b.csv"), target="flag").task, Binary)


def test_a_table_too_small_to_split_says_so(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0], "label": ["yes", "no"]}).to_csv(tmp_path / "tiny.csv", index=False)
    with pytest.raises(TemplateError, match=r"tiny.csv: 2 rows are too few to hold out val_fraction=0.15"):
        TableDataModule(path=str(tmp_path / "tiny.csv")).preprocessing  # noqa: B018
