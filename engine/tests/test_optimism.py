"""summary.json puts the chosen model's selection-split score beside the reported one (optimism.py)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST, run_cli
from trainforge.optimism import selection_vs_reported


def test_optimism_is_selection_minus_reported_for_a_score_and_the_reverse_for_a_loss():
    acc = selection_vs_reported({"val/acc": 0.95, "test/acc": 0.90}, "val/acc", "max", "15% of train", "test")
    assert acc["selection"] == {
        "split": "val",
        "metric": "val/acc",
        "value": 0.95,
        "described": "15% of train",
    }
    assert acc["reported"] == {"split": "test", "metric": "test/acc", "value": 0.9, "described": "test"}
    assert acc["optimism"] == pytest.approx(0.05)
    # A loss the selection split rated lower (better) than the test split: positive optimism too.
    mae = selection_vs_reported({"val/mae": 1.0, "test/mae": 1.5}, "val/mae", "min")
    assert mae["optimism"] == pytest.approx(0.5)


def test_without_a_test_split_optimism_is_not_measurable_rather_than_zero():
    same = selection_vs_reported({"val/acc": 0.9}, "val/acc", "max")
    assert same["optimism"] is None and "not measurable" in same["optimism_note"]
    assert same["reported"]["value"] == same["selection"]["value"] == 0.9
    assert selection_vs_reported({"train/loss": 1.0}, "train/loss", "min") == {}  # nothing chose on val


def test_a_fit_through_the_cli_reports_selection_reported_and_optimism(tmp_path):
    run_cli(
        "fit",
        "--experiment",
        "default",
        "--run.name=o",
        f"--run.root={tmp_path / 'runs'}",
        *FAST,
        cwd=tmp_path,
    )
    summary = json.loads((tmp_path / "runs" / "default" / "o" / "summary.json").read_text())
    metrics = summary["metrics"]
    assert summary["selection"]["split"] == "val" and summary["selection"]["metric"] == "val/acc"
    assert summary["reported"]["split"] == "test" and summary["reported"]["metric"] == "test/acc"
    # The figures are the reported checkpoint's own final evaluation, not copies of a training log.
    assert summary["selection"]["value"] == pytest.approx(metrics["val/acc"], abs=1e-6)
    assert summary["reported"]["value"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert summary["optimism"] == pytest.approx(
        summary["selection"]["value"] - summary["reported"]["value"], abs=1e-6
    )
